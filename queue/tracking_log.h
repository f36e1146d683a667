#pragma once
// The message tracking log (DESIGN.md §5): one JSON object per line per event in
// <data_dir>/log/tracking.jsonl, and the search behind `bhctl track`.
// Format and search rules: docs/message-tracking.md.
//
// TrackingLog (writer)
//   State it owns: tracking.jsonl and its rotated copies tracking.jsonl.1 .. .<keep>
//   (.1 the newest) in the directory it is given.
//   Threading: record() from any thread; a mutex orders writers in this process, and
//   each line is one write(2) on an O_APPEND descriptor, so lines from several threads
//   or processes never interleave.
//   Errors: record() never fails and never blocks on anything but its own write(2): a
//   write or open failure is counted (counters().failures) and logged as a warning on
//   the first failure and then once per `warn_every` failures. Mail flow never waits for
//   or depends on the tracking log.
//   Rotation: when the file reaches max_bytes the writer that passed the cap renames
//   .<keep-1> -> .<keep> ... .1 -> .2, the file -> .1, and opens a new file (the oldest
//   copy is replaced). A writer that finds the file already rotated by another process
//   just reopens it.
//   Field values: each string is cut at kTrackingFieldMax octets; bytes that are not
//   UTF-8 become U+FFFD and control characters are \u-escaped, so every line is valid
//   JSON (RFC 8259) whatever a peer put in an address or a Message-ID.
//
// search_tracking (reader): streams the rotated files oldest first, then the current
// one, one line at a time (memory: one line of at most kTrackingLineMax octets plus the
// results), skipping and counting lines that are too long, not JSON, or not an event
// (a truncated last line after a crash is one of those).
//
// QueueTracker: the QueueEvents observer (queue/queue_events.h) that turns the queue
// manager's events into tracking events (received, delivered, deferred, bounced).

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "queue/queue_events.h"

namespace bh::queue {

inline constexpr std::size_t kTrackingFieldMax = 2048;      // octets per string field
inline constexpr std::size_t kTrackingLineMax = 64u << 10;  // longer lines are skipped on read

enum class TrackingEventType {
  kReceived,
  kCategorized,
  kRouted,
  kDeferred,
  kDelivered,
  kRelayed,
  kBounced,
  kExpired,
  kDeleted,
  kDsnSent,
  kQuarantined,  // held (frozen) by an arrival sink at acceptance; reply: the reason
};

// "received", "categorized", ... "dsn_sent".
std::string_view event_name(TrackingEventType t);
std::optional<TrackingEventType> parse_event_name(std::string_view name);

struct TrackingEvent {
  Clock::time_point time{};  // set by TrackingLog::record from its clock
  std::string node;          // set by TrackingLog::record
  TrackingEventType event = TrackingEventType::kReceived;
  std::string queue_id;
  std::string message_id;      // the Message-ID header field as written (may be empty)
  std::string sender;          // reverse-path without <>; empty for the null sender
  std::string recipient;       // per-recipient events; empty for message events
  std::string next_hop;        // "maildir:<mailbox>", a connector/host, ...
  std::string reply;           // remote reply or local diagnostic
  std::uint64_t size = 0;      // body octets
  std::string client_address;  // where the message came from
};

// "2023-11-14T22:13:20.123Z" (UTC, milliseconds) and back; nullopt if malformed.
std::string iso8601_ms(Clock::time_point t);
std::optional<Clock::time_point> parse_iso8601_ms(std::string_view s);

// One line of the log, with its final '\n'; always valid UTF-8 JSON.
std::string to_json_line(const TrackingEvent& e);
// One line (without '\n'); nullopt when it is not a tracking event.
std::optional<TrackingEvent> parse_json_line(std::string_view line);

struct TrackingLogOptions {
  std::string dir;            // <data_dir>/log; created (0750) if missing
  std::string node;           // this node's name, in every line
  std::uint64_t max_bytes = 100ull << 20;
  unsigned keep = 5;          // rotated files kept (at least 1)
  std::uint64_t warn_every = 1000;  // failures between two warnings
  std::size_t buffer_bytes = 0;     // see flush(); the node uses 64 KiB
};

struct TrackingLogCounters {
  std::uint64_t written = 0;
  std::uint64_t failures = 0;   // events lost: open or write failed
  std::uint64_t rotations = 0;
};

class TrackingLog {
 public:
  TrackingLog(TrackingLogOptions options, const Clock& clock);
  ~TrackingLog();
  TrackingLog(const TrackingLog&) = delete;
  TrackingLog& operator=(const TrackingLog&) = delete;

  // Creates the directory and opens the file. A failure is reported (permanent, names
  // the path) but the log stays usable: record() retries the open now and then.
  Result<void> open();
  // Stamps time and node, then appends one line. Never fails (see above).
  void record(TrackingEvent event);
  // With buffer_bytes > 0, record() collects whole lines and writes them together (one
  // write(2) of whole lines: still never interleaved) once buffer_bytes are held or at
  // flush(); a crash loses at most what was not flushed. 0: one write per event.
  void flush();
  TrackingLogCounters counters() const;
  std::string path() const;  // <dir>/tracking.jsonl

 private:
  bool open_locked(std::string* error);
  void rotate_locked();
  void failed_locked(const std::string& why);

  TrackingLogOptions opt_;
  const Clock& clock_;
  mutable std::mutex mu_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::string buf_;             // whole lines not yet written (buffer_bytes > 0)
  std::uint64_t buf_events_ = 0;
  void write_locked(const std::string& lines, std::uint64_t events);
  std::uint64_t since_open_attempt_ = 0;
  TrackingLogCounters counters_;
};

struct TrackingQuery {
  std::string message_id;  // exact; "<a@b>" and "a@b" both match either form
  std::string sender;      // address, case-insensitive; "<>" matches the null sender
  std::string recipient;   // address, case-insensitive
  std::string queue_id;    // exact
  std::optional<Clock::time_point> since, until;  // inclusive
  std::size_t limit = 100;  // the newest `limit` matches are returned
};

struct TrackingSearchResult {
  std::vector<TrackingEvent> events;  // oldest first
  bool truncated = false;             // more matched than `limit`
  std::uint64_t skipped_lines = 0;    // too long, not JSON, not an event
  std::uint64_t files = 0;            // files read
};

// Reads <dir>/tracking.jsonl.<n> (highest n first) then <dir>/tracking.jsonl. Files
// that cannot be opened are skipped. With a recipient filter, message-level events
// (empty recipient) of a queue id already matched by that recipient are included too.
TrackingSearchResult search_tracking(const std::string& dir, const TrackingQuery& query);

// The QueueEvents observer that records the queue manager's events in a TrackingLog:
// kReceived -> one "received" per recipient, kDelivered -> "delivered" (next hop
// "maildir:<mailbox>" or the event's next hop), kDeferred -> "deferred", kFailed ->
// "bounced", kRelayed -> "relayed", kExpired -> "expired", kDeleted -> "deleted",
// kReported -> "dsn_sent". The Message-ID is read from the start of the spooled message
// once per queue id and remembered for the message's later events (at most 4096 ids).
// Thread-safe (a report's event comes from the store's committer thread).
class QueueTracker final : public QueueEvents {
 public:
  explicit QueueTracker(TrackingLog& log) : log_(log) {}
  void on_event(const QueueEvent& event) override;
  void flush() override { log_.flush(); }

 private:
  std::string message_id_of(const QueueEvent& event);
  TrackingLog& log_;
  std::mutex mu_;
  std::map<std::string, std::string, std::less<>> ids_;  // queue id -> Message-ID
};

}  // namespace bh::queue
