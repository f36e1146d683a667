#include "queue/queue_manager.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/log.h"
#include "queue/queue_file.h"

namespace bh::queue {

namespace {

std::int64_t unix_seconds(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::string describe(const Error& e) { return e.enhanced + " " + e.message; }

}  // namespace

// One message of a delivery batch, worked on outside the lock.
struct QueueManager::Work {
  struct Copy {
    std::string mailbox;
    StagedCopy staged;
    std::optional<Error> error;
  };
  std::string id, path;
  StoredMessage msg;
  Envelope env;  // working copy of the entry's envelope
  bool may_exist = true;
  bool drop = false;               // file gone or quarantined: forget the entry
  std::optional<Error> error;      // message-level transient failure: retry
  std::vector<Copy> copies;        // one per distinct mailbox of a pending recipient
  std::uint64_t newly_failed = 0;
  std::uint64_t fresh_copies = 0;
  bool done = false;               // every recipient delivered or failed; file removed
};

QueueManager::QueueManager(FsMessageStore& store, MaildirDeliverer& maildir, const Clock& clock,
                           QueueManagerOptions options)
    : store_(store), maildir_(maildir), clock_(clock), opt_(options) {
  opt_.batch = std::max<std::size_t>(opt_.batch, 1);
}

QueueManager::~QueueManager() { stop(); }

void QueueManager::set_delivered_hook(DeliveredHook hook) {
  std::lock_guard lock(mu_);
  BH_CHECK(!started_);  // the delivery thread reads it without the lock
  hook_ = std::move(hook);
}

void QueueManager::set_events(QueueEvents* events) {
  std::lock_guard lock(mu_);
  BH_CHECK(!started_);
  events_ = events;
}

void QueueManager::start(const std::vector<std::string>& recovered_ids) {
  {
    std::lock_guard lock(mu_);
    BH_CHECK(!started_);
    started_ = true;
  }
  for (const auto& id : recovered_ids) {
    add(id, true);
  }
  thread_ = std::thread([this] { run(); });
}

void QueueManager::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void QueueManager::enqueue(const std::string& id) { add(id, false); }

void QueueManager::add(const std::string& id, bool recovered) {
  {
    std::lock_guard lock(mu_);
    auto [it, inserted] = entries_.try_emplace(id);
    if (!inserted) {
      return;
    }
    it->second.summary.id = id;
    it->second.next_attempt = clock_.now();
    it->second.recovered = recovered;
    ready_.push_back(id);
    ++counters_.enqueued;
    counters_.in_queue = entries_.size();
  }
  cv_.notify_one();
}

std::chrono::milliseconds QueueManager::backoff(std::uint32_t attempts) const {
  auto d = opt_.retry_initial;
  for (std::uint32_t i = 1; i < attempts && d < opt_.retry_max; ++i) {
    d *= 2;
  }
  return std::min(d, opt_.retry_max);
}

void QueueManager::run() {
  for (;;) {
    std::vector<std::string> batch;
    bool gathered = false;
    {
      std::unique_lock lock(mu_);
      for (;;) {
        if (stop_) {
          return;
        }
        auto now = clock_.now();
        while (!retry_.empty() && retry_.begin()->first <= now) {
          auto it = entries_.find(retry_.begin()->second);
          if (it != entries_.end() && it->second.summary.state == MessageState::kRetry) {
            it->second.summary.state = MessageState::kQueued;
            ready_.push_back(it->first);
          }
          retry_.erase(retry_.begin());
        }
        while (!ready_.empty() && batch.size() < opt_.batch) {
          std::string id = std::move(ready_.front());
          ready_.pop_front();
          auto it = entries_.find(id);
          if (it != entries_.end() && it->second.summary.state == MessageState::kQueued) {
            it->second.summary.state = MessageState::kDelivering;
            batch.push_back(std::move(id));
          }
        }
        if (!batch.empty() && batch.size() < opt_.batch && !gathered && opt_.batch_window.count() > 0) {
          // Let more mail gather, once per batch: syncs are shared by the whole batch.
          gathered = true;
          const std::size_t want = opt_.batch - batch.size();
          cv_.wait_for(lock, opt_.batch_window, [&] { return stop_ || ready_.size() >= want; });
          continue;
        }
        if (!batch.empty()) {
          break;
        }
        // Wake for new mail, stop, or the next retry; polled at least every 200 ms so an
        // injected clock that jumps is noticed.
        auto wait = std::chrono::milliseconds(200);
        if (!retry_.empty()) {
          wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(
                                    retry_.begin()->first - now));
        }
        cv_.wait_for(lock, std::max(wait, std::chrono::milliseconds(1)));
      }
    }
    deliver_batch(batch);
  }
}

// Reads the queue file, decides the recipients that cannot be delivered locally, and
// stages one copy per distinct mailbox.
void QueueManager::prepare(Work& w) {
  w.path = store_.path_of(w.id);
  auto m = read_queue_file(w.path, kQueueReadChunk);
  if (!m.ok()) {
    if (!m.error().transient()) {
      // Corrupt: retrying cannot help. Keep it for the operator.
      log::error("queue", w.id + ": unreadable queue file: " + m.error().message);
      if (auto q = store_.quarantine(w.id); q.ok()) {
        w.drop = true;
        std::lock_guard lock(mu_);
        ++counters_.quarantined;
      } else {
        w.error = q.error();
      }
    } else if (::access(w.path.c_str(), F_OK) != 0 && errno == ENOENT) {
      log::warn("queue", w.id + ": queue file vanished; forgetting it");
      w.drop = true;
    } else {
      w.error = m.error();
    }
    return;
  }
  w.msg = std::move(m.value());
  bool first_read = false, recovered = false;
  {
    std::lock_guard lock(mu_);
    auto& e = entries_[w.id];
    recovered = e.recovered;
    if (!e.envelope) {
      first_read = true;
      e.envelope = w.msg.envelope;
    }
    w.env = *e.envelope;
    auto& s = e.summary;
    s.sender = w.env.sender;
    s.recipients = w.env.recipients.size();
    s.size = w.msg.body_length;
    s.received_unix = w.env.received_unix;
    ++s.attempts;
    w.may_exist = e.recipients_may_exist();
  }
  if (events_ && first_read) {
    QueueEvent ev;
    ev.queue_id = w.id;
    ev.message = &w.msg;
    ev.queue_path = w.path;
    ev.recovered = recovered;
    events_->on_event(ev);
  }
  for (auto& r : w.env.recipients) {
    if (r.state != RecipientState::kPending) {
      continue;
    }
    if (r.mailbox.empty()) {
      r.state = RecipientState::kFailed;
      r.last_result = "5.4.4 no route to a non-local recipient (relay not configured)";
      log::warn("queue", w.id + ": " + r.address + ": failed: " + r.last_result);
      ++w.newly_failed;
      track(w, QueueEvent::Kind::kFailed, r);
      continue;
    }
    auto same = [&](const Work::Copy& c) { return c.mailbox == r.mailbox; };
    if (std::none_of(w.copies.begin(), w.copies.end(), same)) {
      w.copies.push_back(Work::Copy{r.mailbox, {}, std::nullopt});
    }
  }
  for (auto& c : w.copies) {
    auto s = w.msg.body ? maildir_.stage_bytes(*w.msg.body, w.id, c.mailbox, w.may_exist)
                        : maildir_.stage(w.path, w.msg.body_offset, w.msg.body_length, w.id,
                                         c.mailbox, w.may_exist);
    if (s.ok()) {
      c.staged = std::move(s.value());
    } else {
      c.error = s.error();
    }
  }
}

void QueueManager::track(const Work& w, QueueEvent::Kind kind, const Recipient& r,
                         std::string_view mailbox, std::string_view new_path) const {
  if (events_) {
    QueueEvent ev;
    ev.kind = kind;
    ev.queue_id = w.id;
    ev.message = &w.msg;
    ev.queue_path = w.path;
    ev.recipient = &r;
    ev.mailbox = mailbox;
    ev.delivered_path = new_path;
    ev.reply = r.last_result;
    events_->on_event(ev);
  }
}

void QueueManager::deliver_batch(const std::vector<std::string>& ids) {
  {
    std::lock_guard lock(mu_);
    ++counters_.batches;
  }
  std::vector<Work> work(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    work[i].id = ids[i];
    prepare(work[i]);
  }
  auto each_ok_copy = [&](auto fn) {
    for (auto& w : work) {
      if (w.drop || w.error) {
        continue;
      }
      for (auto& c : w.copies) {
        if (!c.error) {
          fn(w, c);
        }
      }
    }
  };
  // 1. One sync for the data of every staged copy.
  bool any_staged = false;
  each_ok_copy([&](Work&, Work::Copy& c) { any_staged = any_staged || !c.staged.already_delivered; });
  if (any_staged) {
    if (auto r = maildir_.sync(); !r.ok()) {
      each_ok_copy([&](Work&, Work::Copy& c) {
        if (!c.staged.already_delivered) {
          c.error = r.error();
        }
      });
    }
  }
  // 2. Publish into new/, then one sync for the names (also when every copy already
  // existed: an earlier attempt may have published without a successful sync).
  bool any_ok = false;
  each_ok_copy([&](Work&, Work::Copy& c) {
    if (auto r = maildir_.publish(c.staged); !r.ok()) {
      c.error = r.error();
    } else {
      any_ok = true;
    }
  });
  if (any_ok) {
    if (auto r = maildir_.sync(); !r.ok()) {
      each_ok_copy([&](Work&, Work::Copy& c) { c.error = r.error(); });
    }
  }
  // 3. Recipient outcomes; finished queue files go, with one fsync of queue/.
  bool removed_any = false;
  for (auto& w : work) {
    if (w.drop || w.error) {
      continue;
    }
    for (auto& c : w.copies) {
      for (auto& r : w.env.recipients) {
        if (r.state != RecipientState::kPending || r.mailbox != c.mailbox) {
          continue;
        }
        if (!c.error) {
          r.state = RecipientState::kDelivered;
          r.last_result = "2.0.0 delivered to maildir " + c.mailbox;
          track(w, QueueEvent::Kind::kDelivered, r, c.mailbox,
                c.staged.already_delivered ? std::string_view{} : c.staged.new_path);
        } else if (!c.error->transient()) {
          r.state = RecipientState::kFailed;
          r.last_result = describe(*c.error);
          ++w.newly_failed;
          log::warn("queue", w.id + ": " + r.address + ": failed: " + r.last_result);
          track(w, QueueEvent::Kind::kFailed, r, c.mailbox);
        } else {
          r.last_result = describe(*c.error);
          w.error = c.error;  // the message is retried for this recipient
          track(w, QueueEvent::Kind::kDeferred, r, c.mailbox);
        }
      }
      if (!c.error && !c.staged.already_delivered) {
        ++w.fresh_copies;
        if (hook_) {
          hook_(w.id, c.mailbox, c.staged.new_path);
        }
      }
    }
    bool pending = std::any_of(w.env.recipients.begin(), w.env.recipients.end(),
                               [](const Recipient& r) { return r.state == RecipientState::kPending; });
    if (!pending) {
      if (auto r = store_.remove(w.id); r.ok()) {
        w.done = true;
        removed_any = true;
      } else {
        w.error = r.error();
      }
    }
  }
  if (removed_any) {
    // A lost unlink only means the message is read again after a crash, and every copy
    // is then found in the Maildir: no duplicate.
    if (auto r = store_.sync_queue_dir(); !r.ok()) {
      log::warn("queue", "fsync of queue directory after removal failed: " + r.error().message);
    }
  }
  for (auto& w : work) {
    finish(w, w.done);
  }
}

void QueueManager::finish(Work& w, bool queue_file_removed) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(w.id);
  if (it == entries_.end()) {
    return;
  }
  counters_.failed_recipients += w.newly_failed;
  counters_.delivered_copies += w.fresh_copies;
  if (w.drop || queue_file_removed) {
    if (queue_file_removed) {
      ++counters_.delivered_messages;
      log::info("queue", w.id + ": done, " + std::to_string(w.fresh_copies) + " new copies");
    }
    entries_.erase(it);
    counters_.in_queue = entries_.size();
    return;
  }
  auto& e = it->second;
  if (!w.env.id.empty()) {
    e.envelope = std::move(w.env);
  }
  auto& s = e.summary;
  Error err = w.error ? *w.error : transient_error("4.3.0", "delivery incomplete");
  s.last_error = describe(err);
  e.next_attempt = clock_.now() + backoff(std::max<std::uint32_t>(s.attempts, 1));
  s.next_attempt_unix = unix_seconds(e.next_attempt);
  s.state = MessageState::kRetry;
  retry_.emplace(e.next_attempt, w.id);
  ++counters_.deferred;
  log::warn("queue", w.id + ": deferred (attempt " + std::to_string(s.attempts) + "): " + s.last_error);
}

std::vector<MessageSummary> QueueManager::list() const {
  std::lock_guard lock(mu_);
  std::vector<MessageSummary> out;
  out.reserve(entries_.size());
  for (const auto& [id, e] : entries_) {
    out.push_back(e.summary);
  }
  return out;
}

std::optional<MessageDetail> QueueManager::show(const std::string& id) const {
  MessageDetail d;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) {
      return std::nullopt;
    }
    d.summary = it->second.summary;
    if (it->second.envelope) {
      d.envelope = *it->second.envelope;
      return d;
    }
  }
  // Not attempted yet: the file is the whole truth (read outside the lock).
  auto m = read_queue_file(store_.path_of(id));
  if (m.ok()) {
    d.envelope = std::move(m->envelope);
    d.summary.sender = d.envelope.sender;
    d.summary.recipients = d.envelope.recipients.size();
    d.summary.size = m->body_length;
    d.summary.received_unix = d.envelope.received_unix;
  }
  return d;
}

QueueCounters QueueManager::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

}  // namespace bh::queue
