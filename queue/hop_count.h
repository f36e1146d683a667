#pragma once
// Hop counting for mail-loop detection (DESIGN.md §4.3, RFC 5321 §6.3): the number of
// "Received:" trace fields in a message's header block.
//
// Contract
// - Pure, no I/O, no allocation. The counter is incremental (feed() any split of the
//   bytes, byte by byte if need be) and gives the same answer as count_received() over
//   the whole text; both stop at the end of the header block (the first empty line, CRLF
//   or bare LF), so nothing in the body is ever counted.
// - A field counts when its name is "Received" in any case, optionally followed by
//   spaces or tabs before the colon (RFC 5322 §4.5.3 obsolete syntax). Folded
//   continuation lines (starting with SP or HTAB) never start a field.
// - Work is bounded by the caller: the counter stops after `max_octets` octets of
//   header (reported as `truncated`) or as soon as the count exceeds `stop_after`
//   (nothing more needs to be known to refuse the message). Each octet is looked at
//   once, so the cost is linear in min(input, max_octets) whatever the input.
// Threading: a ReceivedCounter is a plain value; one per message.
// Errors: none; hop_limit_check() returns the permanent 5.4.6 that ends the message.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/result.h"

namespace bh::queue {

// DESIGN.md §4.3. RFC 5321 §6.3 recommends a threshold of at least 100; the cluster
// default is lower because paths inside one organization are short; it is configurable.
inline constexpr std::size_t kDefaultMaxHops = 30;
// More than any legitimate header block holds; a hostile one is not read past this.
inline constexpr std::size_t kDefaultHopScanOctets = 256u << 10;

struct HopCountLimits {
  std::size_t max_octets = kDefaultHopScanOctets;
  std::size_t stop_after = static_cast<std::size_t>(-1);  // count at which to stop
};

struct HopCount {
  std::size_t received = 0;   // "Received:" fields seen
  bool end_of_headers = false;  // the empty line that ends the header block was seen
  bool truncated = false;       // stopped at max_octets before the end of the header
  bool stopped = false;         // stopped because received reached stop_after
};

class ReceivedCounter {
 public:
  explicit ReceivedCounter(HopCountLimits limits = {}) : limits_(limits) {}

  // Consumes bytes; returns true while more input could still change the result.
  bool feed(std::string_view bytes);
  // True once the header block ended or a limit was reached.
  bool done() const { return state_ == State::kDone; }
  const HopCount& result() const { return count_; }

 private:
  enum class State : std::uint8_t {
    kLineStart,  // first octet of a line
    kName,       // matching "received" (matched_ octets so far)
    kBeforeColon,  // "received" matched, optional WSP before ':'
    kSkipLine,   // rest of a line that is not a new Received field
    kCr,         // CR at the start of a line: the empty line, if LF follows
    kDone,
  };
  void step(char c);

  HopCountLimits limits_;
  HopCount count_;
  State state_ = State::kLineStart;
  std::size_t matched_ = 0;
  std::size_t seen_ = 0;
};

// The count over `message` (a header block, or a whole message: the body is not read).
HopCount count_received(std::string_view message, HopCountLimits limits = {});

// Permanent 5.4.6 ("Too many hops", RFC 3463) when `received` exceeds `max_hops`.
Result<void> hop_limit_check(std::size_t received, std::size_t max_hops = kDefaultMaxHops);

}  // namespace bh::queue
