#pragma once
// X-LINK2STATE chunk machine (DESIGN.md §4.1, exchange-notes §3), sans I/O: the server
// side reassembles one link-state payload from a sequence of command arguments, and the
// client side splits a payload into such commands. What the payload holds (a protobuf
// link-state message, digest first) is linkstate/'s business, not this file's.
//
// Grammar of the argument (everything after "X-LINK2STATE "; keywords in any case):
//   arg    = [ marker SP ] "CHUNK=" data
//   marker = "FIRST" / "NEXT" / "LAST"
//   data   = base64 (RFC 4648 §4, strict and canonical: common/base64.h), possibly empty
// Each chunk's data is a complete base64 text of its own (padded), decoded on arrival.
// Nothing may follow the data: Exchange's "{0000006d} MULTI (5) ({00000000051}" extras
// and brace-wrapped hex lengths are syntax errors, and a declared length is never read
// (hostile-inputs #24).
//
// Sequence (MS05-021, hostile-inputs #23): FIRST opens a sequence, NEXT continues it,
// LAST ends it and yields the payload. An unmarked chunk is never part of a sequence:
//   - by default (DESIGN.md §4.1) it is a sequence error, like NEXT/LAST without FIRST;
//   - with Link2StateLimits::accept_lone_chunk it is a complete one-chunk payload, legal
//     only while no sequence is open.
// FIRST while a sequence is open, NEXT/LAST without one, and an unmarked chunk while one
// is open are sequence errors.
//
// Checks, in this order, each a reset of the machine (the partial payload is dropped):
//   kTooLong     the argument over its share of the 1024-octet line -> 500 5.5.2
//   kSyntax      not the grammar above, bad base64, anything after the data -> 501 5.5.4
//   kBadSequence out of sequence (above) -> 503 5.5.1
//   kTooLarge    the reassembled decoded payload over max_payload octets, or more than
//                max_chunks chunks -> 552 5.3.4 (checked from the encoded length before
//                anything is decoded or appended)
// Syntax comes before sequence so a malformed line is always 501 (#24) and a well-formed
// chunk out of order always 503 (#23); either way nothing of it is kept.
//
// Trust: every argument is hostile wire data from a peer node (the session admits the
// verb only after X-EXPS). Owns the partial payload only, at most max_payload octets.
// Threading: one session, one thread at a time.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace bh::smtp {

inline constexpr std::string_view kLink2StateVerb = "X-LINK2STATE";

struct Link2StateLimits {
  // The whole command line, "X-LINK2STATE " and CRLF included (Microsoft: at most 1024).
  // The session's LineReader must admit lines this long for this verb.
  std::size_t max_line = 1024;
  std::size_t max_payload = 256u << 10;  // reassembled, decoded octets
  std::size_t max_chunks = 1024;         // chunks in one sequence (empty chunks cost too)
  bool accept_lone_chunk = false;        // see the header comment
  // The longest argument within max_line: max_line - "X-LINK2STATE " - CRLF.
  std::size_t max_argument() const;
};

enum class Link2StateStatus {
  kAccepted,     // FIRST/NEXT taken, more to come: 250 2.0.0
  kComplete,     // LAST (or a lone chunk) ended the sequence: Step::payload holds it
  kTooLong,      // 500 5.5.2, reset
  kSyntax,       // 501 5.5.4, reset
  kBadSequence,  // 503 5.5.1, reset
  kTooLarge,     // 552 5.3.4, reset
};
// The reply the session sends: code and enhanced code ("250", "2.0.0", ... as above).
int reply_code(Link2StateStatus s);
const char* enhanced_code(Link2StateStatus s);
const char* to_string(Link2StateStatus s);

class Link2StateReceiver {
 public:
  explicit Link2StateReceiver(Link2StateLimits limits = {});

  struct Step {
    Link2StateStatus status = Link2StateStatus::kAccepted;
    std::string payload;  // kComplete only: the decoded, reassembled payload
  };
  // `arg` is everything after "X-LINK2STATE " on the command line, without CRLF.
  Step feed(std::string_view arg);

  // Drops a partial payload (the session calls it on STARTTLS, a new EHLO, or when the
  // peer's authentication changes).
  void reset();
  bool in_sequence() const { return open_; }
  std::size_t buffered() const { return payload_.size(); }
  std::size_t chunks() const { return chunks_; }

 private:
  Step fail(Link2StateStatus s);

  Link2StateLimits limits_;
  bool open_ = false;
  std::size_t chunks_ = 0;
  std::string payload_;
};

// The client side: the command lines (without CRLF) that carry `payload`, each at most
// limits.max_line - 2 octets: "X-LINK2STATE FIRST CHUNK=...", NEXT..., "... LAST CHUNK=...";
// with accept_lone_chunk, a payload that fits one line goes as "X-LINK2STATE CHUNK=...".
// Without it there are always at least two lines (the LAST one may carry no data).
// Errors: permanent 5.3.4 when the payload is over max_payload or needs more than
// max_chunks lines (the peer would refuse it); 5.3.0 when max_line leaves no room for data.
Result<std::vector<std::string>> split_link2state(std::string_view payload,
                                                  const Link2StateLimits& limits = {});

// A reply to the LAST chunk may carry the server's own payload back in at most this many
// "250-X-LINK2STATE ..." continuation lines (the client's reply parser holds 100 lines
// of a reply and 64 KiB: 60 lines of 1024 octets stay inside both).
inline constexpr std::size_t kMaxLink2StateReplyLines = 60;

}  // namespace bh::smtp
