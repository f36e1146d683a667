#pragma once
// Result<T>: the error model of every data path in bridgehead (STYLE.md principle 7).
//
// A failure is either transient (the peer may retry: SMTP 4xx) or permanent (5xx); an
// impossible state is a bug and aborts with a reason (BH_CHECK). Every Error carries an
// RFC 3463 enhanced status code so the SMTP reply falls out of the error itself.
// Header-only, no exceptions, no allocation beyond the message text.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace bh {

enum class FailureClass { kTransient, kPermanent };

struct Error {
  FailureClass cls = FailureClass::kPermanent;
  std::string enhanced;  // "4.3.0", "5.1.1", ...
  std::string message;   // human text, safe to put on the wire (no CR/LF)
  // The basic SMTP reply code to use instead of the default one for the command (an
  // event sink's chosen code: sinks/); 0: the default. Must agree with `cls`.
  int reply_code = 0;

  bool transient() const { return cls == FailureClass::kTransient; }
  // Basic SMTP reply code for this error when it ends a command that has no more
  // specific code of its own (451 for transient, 554 for permanent).
  int default_code() const { return transient() ? 451 : 554; }
};

inline Error transient_error(std::string enhanced, std::string message) {
  return Error{FailureClass::kTransient, std::move(enhanced), std::move(message), 0};
}
inline Error permanent_error(std::string enhanced, std::string message) {
  return Error{FailureClass::kPermanent, std::move(enhanced), std::move(message), 0};
}

[[noreturn]] inline void bug(const char* what, const char* file, int line) {
  std::fprintf(stderr, "bridgehead: internal error: %s (%s:%d)\n", what, file, line);
  std::abort();
}
#define BH_CHECK(cond)                                   \
  do {                                                   \
    if (!(cond)) ::bh::bug(#cond, __FILE__, __LINE__);   \
  } while (0)

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}            // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}        // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    BH_CHECK(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    BH_CHECK(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    BH_CHECK(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const {
    BH_CHECK(!ok());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Ok) {}                                         // NOLINT(google-explicit-constructor)
  Result(Error error) : err_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    BH_CHECK(!ok_);
    return err_;
  }

 private:
  Error err_;
  bool ok_ = true;
};

}  // namespace bh
