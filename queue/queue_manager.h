#pragma once
// QueueManager: the sole owner of envelope state (STYLE.md principle 5).
//
// Role: takes committed queue ids (enqueue() after a successful commit, or the recovery
// list at start()), delivers one copy per distinct local mailbox through
// MaildirDeliverer, removes the queue file when every recipient is done, and retries
// transient failures with exponential backoff (retry_initial doubling up to retry_max,
// on the injected clock).
// State it owns: the in-memory table of queued messages (per-recipient state, attempts,
// last error, next attempt). Nothing else changes envelope state; the admin endpoint
// reads copies through list()/show().
// Crash safety: per-recipient progress is not rewritten into the queue file; it is
// carried by the file system instead - a copy's Maildir name is deterministic, so after
// a restart every recipient is attempted again and copies already in new/ or cur/ are
// recognised and not written twice.
// Batching: one delivery thread takes up to `batch` due messages at a time (waiting up
// to `batch_window` for a batch to fill, so a burst shares its syncs): stage every
// copy, one sync, publish every copy, one sync, then remove the finished queue files
// and fsync the queue directory once.
// Recipients without a local mailbox cannot be delivered by a standalone node (relay is
// not built yet): they are marked failed permanently (5.4.4) and logged; no DSN is
// sent yet. A corrupt queue file met at run time is moved to quarantine/.
// Threading: enqueue(), list(), show(), counters() from any thread; the delivered hook
// and the QueueEvents observer run on the delivery thread and must be set before start().

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "queue/envelope.h"
#include "queue/fs_message_store.h"
#include "queue/maildir.h"
#include "queue/queue_events.h"

namespace bh::queue {

struct QueueManagerOptions {
  std::chrono::milliseconds retry_initial{1000};
  std::chrono::milliseconds retry_max{std::chrono::minutes(5)};
  std::size_t batch = 128;  // messages per delivery batch (one set of syncs)
  // A batch that is not full waits up to this long (real time, not the injected clock:
  // it trades latency for fewer syncs) for more mail before it starts.
  std::chrono::milliseconds batch_window{10};
};

enum class MessageState { kQueued, kDelivering, kRetry };

struct MessageSummary {
  std::string id;
  std::string sender;                 // empty until the file was first read
  std::size_t recipients = 0;
  std::uint64_t size = 0;             // body octets
  std::int64_t received_unix = 0;
  MessageState state = MessageState::kQueued;
  std::uint32_t attempts = 0;
  std::string last_error;             // "<enhanced> <text>" of the last transient failure
  std::int64_t next_attempt_unix = 0; // for kRetry
};

struct MessageDetail {
  MessageSummary summary;
  Envelope envelope;  // with per-recipient state and last result, DSN fields (ret, envid,
                      // notify, orcpt)
};

struct QueueCounters {
  std::uint64_t enqueued = 0;           // accepted into the manager
  std::uint64_t delivered_messages = 0; // queue file removed, every recipient done
  std::uint64_t delivered_copies = 0;   // Maildir copies written
  std::uint64_t batches = 0;            // delivery batches run (each one set of syncs)
  std::uint64_t deferred = 0;           // attempts that ended in a retry
  std::uint64_t failed_recipients = 0;  // recipients failed permanently
  std::uint64_t quarantined = 0;        // corrupt queue files met at run time
  std::uint64_t in_queue = 0;
};

class QueueManager {
 public:
  using DeliveredHook = std::function<void(const std::string& id, const std::string& mailbox,
                                           const std::string& path)>;

  // All references must outlive the manager. The store must be open().
  QueueManager(FsMessageStore& store, MaildirDeliverer& maildir, const Clock& clock,
               QueueManagerOptions options = {});
  ~QueueManager();  // stop()
  QueueManager(const QueueManager&) = delete;
  QueueManager& operator=(const QueueManager&) = delete;

  // Queues the recovered ids (RecoveryReport::ready) and starts the delivery thread.
  // Call once.
  void start(const std::vector<std::string>& recovered_ids);
  // Finishes the batch in flight, then joins. Messages stay in queue/ for the next start.
  void stop();
  // A committed queue id (after MessageStore::commit reported success). Idempotent.
  void enqueue(const std::string& id);
  void set_delivered_hook(DeliveredHook hook);
  // Observer of received/delivered/deferred/failed (queue/queue_events.h); must outlive
  // the manager; set before start().
  void set_events(QueueEvents* events);

  std::vector<MessageSummary> list() const;  // sorted by id (= by arrival)
  std::optional<MessageDetail> show(const std::string& id) const;
  QueueCounters counters() const;

 private:
  struct Entry {
    MessageSummary summary;
    std::optional<Envelope> envelope;  // after the first attempt: authoritative state
    Clock::time_point next_attempt{};
    bool recovered = false;            // from a previous run: copies may already exist
    // A copy of this message may be in a Maildir already (so cur/ must be searched).
    bool recipients_may_exist() const { return recovered || summary.attempts > 1; }
  };
  struct Work;
  void run();
  void deliver_batch(const std::vector<std::string>& ids);
  void prepare(Work& w);
  void finish(Work& w, bool queue_file_removed);
  void track(const Work& w, QueueEvent::Kind kind, const Recipient& r, std::string_view mailbox = {},
             std::string_view new_path = {}) const;
  std::chrono::milliseconds backoff(std::uint32_t attempts) const;
  void add(const std::string& id, bool recovered);

  FsMessageStore& store_;
  MaildirDeliverer& maildir_;
  const Clock& clock_;
  QueueManagerOptions opt_;
  DeliveredHook hook_;
  QueueEvents* events_ = nullptr;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Entry> entries_;
  std::deque<std::string> ready_;
  std::multimap<Clock::time_point, std::string> retry_;  // next attempt -> id
  bool stop_ = false;
  bool started_ = false;
  QueueCounters counters_;
  std::thread thread_;
};

}  // namespace bh::queue
