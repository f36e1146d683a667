#pragma once
// AuthBackend: what the SMTP adapter asks to run AUTH / X-EXPS exchanges (RFC 4954).
//
// The session (server_session.h) parses the verbs, decodes base64 and keeps the rules
// of RFC 4954; the backend runs the SASL mechanism itself (auth/sasl_backend.h: Cyrus
// SASL, a password source, the list of peer servers). An Exchange is one AUTH attempt;
// its steps run on an auth worker thread, one at a time, because a password check may
// wait for the directory. AuthFailureLimiter counts failures per client address across
// sessions (hostile-inputs #46).

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "smtp/server_session.h"

namespace bh::smtp {

class AuthBackend {
 public:
  class Exchange {
   public:
    virtual ~Exchange() = default;
    virtual AuthVerdict step(const AuthStep& step) = 0;
  };
  virtual ~AuthBackend() = default;
  // A new exchange; `tls`: the connection is encrypted. Null: SASL is unavailable (454).
  virtual std::unique_ptr<Exchange> begin(bool tls) = 0;
};

// At most `max_failures` failed logins per client address within `window`; past that
// the address is refused (421 4.7.0) until its oldest failure leaves the window.
// Thread-safe; the clock is injected.
class AuthFailureLimiter {
 public:
  AuthFailureLimiter(const Clock& clock, std::size_t max_failures,
                     std::chrono::seconds window = std::chrono::seconds(60))
      : clock_(clock), max_(max_failures), window_(window) {}

  bool blocked(const std::string& ip) {
    std::lock_guard lock(mu_);
    auto it = failures_.find(ip);
    if (it == failures_.end()) {
      return false;
    }
    expire(it->second);
    if (it->second.empty()) {
      failures_.erase(it);
      return false;
    }
    return it->second.size() >= max_;
  }
  void failed(const std::string& ip) {
    std::lock_guard lock(mu_);
    auto& q = failures_[ip];
    expire(q);
    q.push_back(clock_.now());
    while (q.size() > max_) {
      q.pop_front();  // only the newest max_ matter
    }
    if (failures_.size() > kMaxAddresses) {
      // Memory stays bounded under a spray of addresses: forget the quietest ones.
      for (auto i = failures_.begin(); i != failures_.end();) {
        expire(i->second);
        i = i->second.empty() ? failures_.erase(i) : std::next(i);
      }
    }
  }

 private:
  static constexpr std::size_t kMaxAddresses = 100000;
  void expire(std::deque<Clock::time_point>& q) {
    auto now = clock_.now();
    while (!q.empty() && now - q.front() >= window_) {
      q.pop_front();
    }
  }
  const Clock& clock_;
  std::size_t max_;
  std::chrono::seconds window_;
  std::mutex mu_;
  std::map<std::string, std::deque<Clock::time_point>> failures_;
};

}  // namespace bh::smtp
