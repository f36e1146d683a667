#pragma once
// DSN generation: delivery status notifications (RFC 3461 §6, RFC 6522 multipart/report,
// RFC 3464 message/delivery-status, RFC 3463 status codes). docs/dsn.md has the policy
// and the format with an example.
//
// Contract
// - Pure and I/O-free: the caller passes the original envelope, the outcomes to report,
//   the options, the clock and the randomness; the original message is pulled through
//   the OriginalMessage interface (streamed in chunks, never required whole in memory)
//   and the DSN is pushed out through a byte sink (write_dsn) or collected into a string
//   (make_dsn). Memory use is bounded by the options' caps, not by the message size.
// - "No DSN" is a normal answer (std::nullopt): the original sender is null (<>: never
//   report on a report, RFC 3461 §6.2 / RFC 5321 §4.5.5), or no outcome passes the
//   NOTIFY policy (dsn_requested()).
// - The result is a complete message: CRLF line ends only, no line over 998 octets
//   (RFC 5322 §2.1.1), plus the envelope to send it with: MAIL FROM:<> and one RCPT TO
//   the original sender (NOTIFY=NEVER).
// - Errors: permanent 5.3.0 when the request is inconsistent (an outcome names no
//   recipient, a status does not fit its action, a name holds CR/LF); any error from
//   OriginalMessage::read or from the sink is returned as is (the caller retries later
//   on a transient one; nothing was committed).
// Threading: plain functions; Random is used from the calling thread only.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/date.h"
#include "common/result.h"
#include "queue/envelope.h"

namespace bh::queue {

// RFC 3464 §2.3.3 action-value.
enum class DsnAction : std::uint8_t { kFailed, kDelayed, kDelivered, kRelayed, kExpanded };
std::string_view dsn_action_name(DsnAction action);

// What happened to one recipient of the original envelope.
struct DsnOutcome {
  std::size_t recipient = 0;  // index into Envelope::recipients
  DsnAction action = DsnAction::kFailed;
  std::string status;          // RFC 3463 "5.1.1"; class must fit the action
  std::string remote_mta;      // DNS name of the remote MTA, empty when none was reached
  std::string diagnostic;      // "smtp; 550 5.1.1 user unknown", empty when none
  std::optional<Clock::time_point> last_attempt;      // Last-Attempt-Date
  std::optional<Clock::time_point> will_retry_until;  // Will-Retry-Until (delayed only)
};

// Default caps (docs/dsn.md). The full original is returned only up to the content cap;
// above it, or when RET=HDRS, only the header, itself cut at the header cap.
inline constexpr std::uint64_t kDefaultDsnMaxContent = 1u << 20;
inline constexpr std::uint64_t kDefaultDsnMaxHeader = 64u << 10;

struct DsnOptions {
  std::string reporting_mta;  // this node's host name: From, Reporting-MTA, Message-ID
  std::uint64_t max_returned_content = kDefaultDsnMaxContent;
  std::uint64_t max_returned_header = kDefaultDsnMaxHeader;
  // RFC 3461 §4.1: without NOTIFY, "NOTIFY=FAILURE" or "NOTIFY=FAILURE,DELAY" is assumed
  // at the MTA's discretion. We send delay notices by default; off gives FAILURE only.
  bool delay_notices_without_notify = true;
};

// RFC 3461 §4.1 / §6.1 for one recipient and one action:
// - NOTIFY=NEVER: nothing, ever.
// - failed: NOTIFY absent or containing FAILURE.
// - delayed: NOTIFY containing DELAY, or absent when delay_notices_without_notify.
// - delivered, relayed (to a server without DSN, §6.2.6.2), expanded (§6.2.7.3): only
//   with NOTIFY containing SUCCESS.
bool dsn_requested(std::uint8_t notify, DsnAction action, const DsnOptions& options);

// The outcomes that are reported, in the order given; empty when the sender is null.
std::vector<DsnOutcome> reportable_outcomes(const Envelope& original,
                                            std::span<const DsnOutcome> outcomes,
                                            const DsnOptions& options);

// The original message (header and body as spooled, our Received field first).
// read() streams it from its first octet and may be called more than once (the
// generator looks at it once to decide what to return, then copies it). The sink
// returns false to stop early; that is not an error.
class OriginalMessage {
 public:
  using ChunkSink = std::function<bool(std::string_view chunk)>;
  virtual ~OriginalMessage() = default;
  virtual Result<void> read(const ChunkSink& sink) const = 0;
};

// An original held in memory (tests, small messages); chunk size is for tests.
class StringOriginalMessage final : public OriginalMessage {
 public:
  explicit StringOriginalMessage(std::string_view text, std::size_t chunk = 64u << 10)
      : text_(text), chunk_(chunk == 0 ? 1 : chunk) {}
  Result<void> read(const ChunkSink& sink) const override;

 private:
  std::string_view text_;
  std::size_t chunk_;
};

enum class DsnKind : std::uint8_t { kFailure, kDelay, kSuccess };
enum class DsnReturned : std::uint8_t {
  kFull,             // message/rfc822, the whole original
  kHeader,           // text/rfc822-headers, the whole header
  kHeaderTruncated,  // text/rfc822-headers, cut at max_returned_header
};

struct DsnInfo {
  Envelope envelope;   // MAIL FROM:<>, RCPT TO:<original sender> NOTIFY=NEVER
  DsnKind kind = DsnKind::kFailure;
  DsnReturned returned = DsnReturned::kHeader;
  std::vector<std::size_t> reported;  // recipient indexes, in report order
  std::string message_id;             // "<...@reporting-mta>"
  std::uint64_t size = 0;             // octets written to the sink
};

using DsnSink = std::function<Result<void>(std::string_view bytes)>;

// Writes the DSN through `out` (e.g. a SpoolWriter) and returns what was written.
Result<std::optional<DsnInfo>> write_dsn(const Envelope& original,
                                         std::span<const DsnOutcome> outcomes,
                                         const OriginalMessage& content,
                                         const DsnOptions& options, const Clock& clock,
                                         Random& random, const DsnSink& out);

struct DsnMessage {
  DsnInfo info;
  std::string bytes;
};
// write_dsn into a string.
Result<std::optional<DsnMessage>> make_dsn(const Envelope& original,
                                           std::span<const DsnOutcome> outcomes,
                                           const OriginalMessage& content,
                                           const DsnOptions& options, const Clock& clock,
                                           Random& random);

// Helpers, public for tests and for other report writers.
// RFC 5322 §3.3 date-time in UTC: "Tue, 14 Nov 2023 22:13:20 +0000".
using bh::rfc5322_date;  // common/date.h
// RFC 3461 §4 xtext: "+" and "=" and octets outside 33..126 as "+XX".
std::string xtext_encode(std::string_view in);

}  // namespace bh::queue
