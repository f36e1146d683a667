#pragma once
// ReplyParser: strict incremental parser of SMTP server replies (RFC 5321 §4.2), sans I/O.
//
// Input is the byte stream read from a server; output is one complete Reply at a time.
// "Need more input" is a normal result. A reply is one or more lines
//   Reply-line = *( Reply-code "-" [ textstring ] CRLF )
//                Reply-code [ SP textstring ] CRLF
// and the parser checks, as each octet arrives:
//   - the code is three digits, first 2..5, second 0..5 (RFC 5321 §4.2: 1yz is not SMTP);
//   - every line of a multi-line reply carries the same code;
//   - the separator is '-' (more lines follow) or ' ' (last line); a bare "250" is a
//     last line;
//   - lines end with CRLF only: a bare LF or a CR not followed by LF is an error, never
//     a line end; the text holds no NUL and no control octet except HTAB (8-bit octets
//     are allowed: RFC 6531 servers may send UTF-8 text).
// Limits (ReplyLimits) close the CVE-2020-8794 class, a hostile server that sends endless
// or overlong multi-line replies: per-line length, lines per reply, octets per reply. A
// breach is reported as soon as it is certain, so the parser never holds more than
// max_reply octets whatever the server sends.
//
// Errors: any violation is Error{transient, "4.5.0"} (RFC 3463 X.5.0, "other or undefined
// protocol status") and is sticky: the connection is unusable and every later feed()
// returns the same error. Transient because a broken or hostile server must not bounce
// mail; the queue retries, possibly through another MX.
//
// Owns only the partial line and the reply under construction. Threading: one thread at a
// time.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace bh::smtp {

struct ReplyLimits {
  // One line including CRLF. RFC 5321 §4.5.3.1.5 says 512, but real EHLO replies with
  // long AUTH or SIZE lists exceed it; 4096 stays lenient and still capped.
  std::size_t max_line = 4096;
  std::size_t max_lines = 100;           // lines in one reply
  std::size_t max_reply = 64u << 10;     // octets in one reply, CRLFs included
};

struct Reply {
  int code = 0;                    // 200..559
  std::string enhanced;            // RFC 3463 code on the first line, "" when absent
  std::vector<std::string> lines;  // the text after "NNN-" / "NNN ", one per line

  bool positive() const { return code / 100 == 2; }
  bool intermediate() const { return code / 100 == 3; }
  bool transient() const { return code / 100 == 4; }
  bool permanent() const { return code / 100 == 5; }
  // The enhanced code, or the generic "2.0.0" / "4.0.0" / "5.0.0" when the server sent
  // none (for 3xx: "").
  std::string enhanced_or_generic() const;
  // All lines joined by one space, each without a leading copy of the enhanced code
  // (servers often repeat it on every line). Safe for logs and DSNs: no CR/LF.
  std::string text() const;
  // "550 5.1.1 text..." for diagnostics.
  std::string summary() const;
};

// Parses "class.subject.detail" (RFC 3463 §2: class 2/4/5, subject and detail 1..3 digits)
// at the start of `text`, followed by a space or the end. nullopt when absent.
std::optional<std::string> parse_enhanced_code(std::string_view text);

class ReplyParser {
 public:
  explicit ReplyParser(ReplyLimits limits = {});

  struct Step {
    std::size_t consumed = 0;    // octets of `in` used
    std::optional<Reply> reply;  // set when a reply ended at in[consumed - 1]
  };
  // Parses at most one reply from `in`. Without a reply every octet was consumed (need
  // more); with one, the octets after it are left for the next call (pipelined replies).
  Result<Step> feed(std::string_view in);

  // True when no part of a reply is buffered (between replies).
  bool idle() const { return line_len_ == 0 && reply_.lines.empty() && !failed_; }
  bool failed() const { return failed_.has_value(); }

 private:
  Result<Step> fail(std::string message);
  Result<void> line_done();

  ReplyLimits limits_;
  Reply reply_;             // lines completed so far
  std::string text_;        // text of the current line
  std::size_t line_len_ = 0;  // octets of the current line, CR included
  int line_code_ = 0;
  char separator_ = 0;      // of the current line: '-', ' ' or 0 (none yet)
  bool saw_cr_ = false;
  std::size_t reply_octets_ = 0;
  std::optional<Error> failed_;
};

}  // namespace bh::smtp
