#pragma once
// QueueManager: the sole owner of envelope state (STYLE.md principle 5).
//
// Takes committed queue ids (enqueue, or the recovery list at start), delivers one copy
// per distinct local mailbox through MaildirDeliverer, removes the queue file when every
// recipient is done, and retries transient failures with exponential backoff. Its one
// delivery thread works in batches: stage all copies, one sync, publish all, one sync,
// then remove the finished queue files and sync the queue directory.
// Recipients without a local mailbox cannot be delivered by a standalone node (relay is
// not built yet); they are marked failed and logged, and no DSN is sent yet.
// Threading: enqueue(), list(), show(), counters() from any thread.

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

namespace bh::queue {

struct QueueManagerOptions {
  std::chrono::milliseconds retry_initial{1000};
  std::chrono::milliseconds retry_max{std::chrono::minutes(5)};
  std::size_t batch = 128;
};

enum class MessageState { kQueued, kDelivering, kRetry };

struct MessageSummary {
  std::string id;
  std::string sender;
  std::size_t recipients = 0;
  std::uint64_t size = 0;
  std::int64_t received_unix = 0;
  MessageState state = MessageState::kQueued;
  std::uint32_t attempts = 0;
  std::string last_error;
  std::int64_t next_attempt_unix = 0;
};

struct MessageDetail {
  MessageSummary summary;
  Envelope envelope;  // with per-recipient state and last result
};

struct QueueCounters {
  std::uint64_t enqueued = 0, delivered_messages = 0, delivered_copies = 0, deferred = 0,
                failed_recipients = 0, in_queue = 0;
};

class QueueManager {
 public:
  using DeliveredHook = std::function<void(const std::string& id, const std::string& mailbox,
                                           const std::string& path)>;

  QueueManager(FsMessageStore& store, MaildirDeliverer& maildir, const Clock& clock,
               QueueManagerOptions options = {});
  ~QueueManager();

  void start(const std::vector<std::string>& recovered_ids);
  void stop();  // finishes the batch in flight, then joins
  void enqueue(const std::string& id);
  void set_delivered_hook(DeliveredHook hook) { hook_ = std::move(hook); }

  std::vector<MessageSummary> list() const;
  std::optional<MessageDetail> show(const std::string& id) const;
  QueueCounters counters() const;

 private:
  struct Entry {
    MessageSummary summary;
    std::optional<Envelope> envelope;  // loaded on first attempt
    Clock::time_point next_attempt{};
  };
  void run();
  void deliver_batch(std::vector<std::string> ids);
  std::chrono::milliseconds backoff(std::uint32_t attempts) const;

  FsMessageStore& store_;
  MaildirDeliverer& maildir_;
  const Clock& clock_;
  QueueManagerOptions opt_;
  DeliveredHook hook_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Entry> entries_;
  std::deque<std::string> ready_;
  bool stop_ = false;
  QueueCounters counters_;
  std::thread thread_;
};

}  // namespace bh::queue
