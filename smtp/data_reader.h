#pragma once
// DataReader: the DATA body state machine (RFC 5321 §4.1.1.4, §4.5.2), sans I/O.
//
// Only CRLF "." CRLF ends the body. A bare LF or bare CR is never a line end, so every
// smuggling variant of hostile-inputs #1-4 stays content and exactly one message is
// queued. Lines starting with "." are unstuffed. NUL and 8-bit octets and lines of any
// length pass through intact (#5, #37). The body size and the header section size are
// counted while streaming; past a cap the reader stops producing output but keeps
// scanning for the end, so the session can answer 552 after the dot (#30, #38, #39).
// Memory: no more than the caller's output buffer; no look-back over input.

#include <cstdint>
#include <string>
#include <string_view>

namespace bh::smtp {

class DataReader {
 public:
  DataReader(std::uint64_t max_body, std::uint64_t max_header);

  struct Step {
    std::size_t consumed = 0;  // input octets used; the rest belongs to the next command
    bool done = false;         // end-of-data seen (the terminator is consumed)
    std::size_t lines = 0;     // complete CRLF lines seen in this step (per-line deadline)
  };
  // Appends unstuffed body octets to `out` (until a cap is passed).
  Step feed(std::string_view in, std::string& out);

  std::uint64_t body_size() const { return body_; }
  bool too_big() const { return body_ > max_body_; }
  bool header_too_big() const { return header_too_big_; }
  // LF octets not preceded by CR (kept as content; counted for the operator).
  std::uint64_t bare_lf() const { return bare_lf_; }

 private:
  enum class State { kLineStart, kDot, kDotCr, kMid, kCr };
  void emit(char c, std::string& out);

  std::uint64_t max_body_, max_header_;
  State state_ = State::kLineStart;
  std::uint64_t body_ = 0, header_ = 0;
  std::uint64_t bare_lf_ = 0;
  bool in_header_ = true, header_too_big_ = false;
  char last1_ = 0, last2_ = 0, last3_ = 0;  // the last octets emitted: end of headers
};

}  // namespace bh::smtp
