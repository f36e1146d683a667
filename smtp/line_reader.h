#pragma once
// LineReader: the command-mode input buffer of the SMTP server session, sans I/O.
//
// Splits a byte stream into CRLF-terminated command lines (RFC 5321 §2.3.8). A bare CR
// or a bare LF is NOT a line end: it stays inside the line, so
// "MAIL FROM:<a@b>\rRCPT TO:<c@d>\r\n" is one (malformed) command, never two
// (hostile-inputs #7). "Need more input" is a normal result.
//
// Limits: a line longer than max_line octets (CRLF included, RFC 5321 §4.5.3.1.4) is
// reported once as kTooLong when its CRLF finally arrives; its octets are discarded as
// they come, so the buffer stays capped near max_line (hostile #35). Past max_discard
// octets without any CRLF, next() reports kOverflow and the caller ends the session.
//
// The same buffer also holds DATA/BDAT octets that follow a command in one read: the
// session reads them through peek()/consume() when it switches to a body reader.
// Consumed octets are dropped lazily (an offset, compacted on append), so pipelined
// input costs O(n), not O(n^2).

#include <cstdint>
#include <string>
#include <string_view>

namespace bh::smtp {

class LineReader {
 public:
  explicit LineReader(std::size_t max_line = 512, std::uint64_t max_discard = 1u << 20);

  void append(std::string_view bytes);
  // Unconsumed octets (a partial line, pipelined commands, body octets).
  std::string_view peek() const { return std::string_view(buf_).substr(head_); }
  std::size_t buffered() const { return buf_.size() - head_; }
  void consume(std::size_t n);

  enum class Kind {
    kNeedMore,  // no complete line yet
    kLine,      // `line` holds the command without its CRLF
    kTooLong,   // a line over max_line ended; its octets are gone (500 5.5.2)
    kOverflow,  // max_discard octets without CRLF: answer 500 + 421 and close
  };
  struct Next {
    Kind kind = Kind::kNeedMore;
    std::string_view line;  // valid until the next append()
  };
  Next next();

  bool discarding() const { return discarding_; }

 private:
  std::string buf_;
  std::size_t head_ = 0;
  std::size_t max_line_;
  std::uint64_t max_discard_;
  bool discarding_ = false;
  std::uint64_t discarded_ = 0;
};

}  // namespace bh::smtp
