#include "queue/hop_count.h"

#include <string>

namespace bh::queue {
namespace {

constexpr std::string_view kReceived = "received";

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

void ReceivedCounter::step(char c) {
  switch (state_) {
    case State::kLineStart:
      if (c == '\n') {
        // RFC 5322 §2.1: the header ends at the first empty line (a bare LF is taken as
        // a line end too: what a lenient reader would see).
        count_.end_of_headers = true;
        state_ = State::kDone;
      } else if (c == '\r') {
        state_ = State::kCr;
      } else if (c == ' ' || c == '\t') {
        state_ = State::kSkipLine;  // RFC 5322 §2.2.3: a folded continuation line
      } else if (lower(c) == kReceived[0]) {
        matched_ = 1;
        state_ = State::kName;
      } else {
        state_ = State::kSkipLine;
      }
      return;
    case State::kCr:
      if (c == '\n') {
        count_.end_of_headers = true;
        state_ = State::kDone;
      } else {
        // A lone CR at the start of a line: not an empty line; the line is junk.
        state_ = c == '\r' ? State::kCr : State::kSkipLine;
      }
      return;
    case State::kName:
      if (matched_ < kReceived.size() && lower(c) == kReceived[matched_]) {
        ++matched_;
        if (matched_ == kReceived.size()) {
          state_ = State::kBeforeColon;
        }
      } else {
        state_ = c == '\n' ? State::kLineStart : State::kSkipLine;
      }
      return;
    case State::kBeforeColon:
      if (c == ':') {
        ++count_.received;
        if (count_.received >= limits_.stop_after) {
          count_.stopped = true;
          state_ = State::kDone;
          return;
        }
        state_ = State::kSkipLine;
      } else if (c == ' ' || c == '\t') {
        // RFC 5322 §4.5.3: obs-optional allows WSP between the name and the colon.
      } else {
        state_ = c == '\n' ? State::kLineStart : State::kSkipLine;
      }
      return;
    case State::kSkipLine:
      if (c == '\n') {
        state_ = State::kLineStart;
      }
      return;
    case State::kDone:
      return;
  }
}

bool ReceivedCounter::feed(std::string_view bytes) {
  for (char c : bytes) {
    if (state_ == State::kDone) {
      break;
    }
    if (seen_ >= limits_.max_octets) {
      count_.truncated = true;
      state_ = State::kDone;
      break;
    }
    ++seen_;
    step(c);
  }
  return state_ != State::kDone;
}

HopCount count_received(std::string_view message, HopCountLimits limits) {
  ReceivedCounter counter(limits);
  counter.feed(message);
  return counter.result();
}

Result<void> hop_limit_check(std::size_t received, std::size_t max_hops) {
  if (received > max_hops) {
    return permanent_error("5.4.6", "Too many hops (" + std::to_string(received) +
                                        " Received fields, limit " + std::to_string(max_hops) +
                                        "): mail loop?");
  }
  return Ok{};
}

}  // namespace bh::queue
