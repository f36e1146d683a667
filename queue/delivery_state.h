#pragma once
// DeliveryState: what the queue manager learned about one message after it was spooled -
// attempts, the next retry, whether a delay notice went out, and each recipient's state
// and last reply. The queue file itself is never rewritten (it is written once and only
// read afterwards); this small record sits beside it as state/<id> and is replaced
// whole (write, fdatasync, rename, fsync of state/) after every attempt that changed
// something, so a restart resumes each message where it was, with its retry schedule.
// A message with no state file has had no attempt that needed recording.
//
// Encoding: text, one item per line, strings percent-escaped so no field can contain a
// line break. The decoder rejects anything malformed or over its caps (it reads a file
// from disk, which may be truncated or damaged): the caller then falls back to the
// queue file alone (every pending recipient is tried again).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "queue/envelope.h"

namespace bh::queue {

struct DeliveryState {
  std::uint32_t attempts = 0;
  std::int64_t first_attempt_unix = 0;
  std::int64_t next_attempt_unix = 0;  // 0: due now
  bool delay_notice_sent = false;
  bool frozen = false;                 // held by the operator
  struct Rcpt {
    std::size_t index = 0;
    RecipientState state = RecipientState::kPending;
    std::string last_result;
  };
  std::vector<Rcpt> recipients;        // only those that differ from "pending, no result"
  // Recipients the categorizer added after spool (Recipient::added), in envelope order
  // after the queue file's own: address, orcpt, mailbox, notify.
  std::vector<Recipient> added;
};

inline constexpr std::size_t kMaxDeliveryStateBytes = 16u << 20;
inline constexpr std::size_t kMaxAddedRecipients = 100000;

std::string encode_delivery_state(const DeliveryState& s);
// Errors: permanent 5.3.0 on anything malformed.
Result<DeliveryState> decode_delivery_state(std::string_view text);

// Appends the added recipients of `s` to `env` (when it has none yet), then copies the
// recipient states (indexes beyond the envelope are an error).
Result<void> apply_delivery_state(const DeliveryState& s, Envelope& env);
// The recipient part of a DeliveryState from an envelope.
std::vector<DeliveryState::Rcpt> recipient_states(const Envelope& env);
// The recipients of `env` the categorizer added (Recipient::added).
std::vector<Recipient> added_recipients(const Envelope& env);

}  // namespace bh::queue
