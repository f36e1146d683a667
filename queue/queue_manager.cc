#include "queue/queue_manager.h"

#include <set>

#include "common/log.h"
#include "queue/queue_file.h"

namespace bh::queue {

namespace {
std::int64_t unix_seconds(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}
}  // namespace

QueueManager::QueueManager(FsMessageStore& store, MaildirDeliverer& maildir, const Clock& clock,
                           QueueManagerOptions options)
    : store_(store), maildir_(maildir), clock_(clock), opt_(options) {}

QueueManager::~QueueManager() { stop(); }

void QueueManager::start(const std::vector<std::string>& recovered_ids) {
  for (const auto& id : recovered_ids) {
    enqueue(id);
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

void QueueManager::enqueue(const std::string& id) {
  {
    std::lock_guard lock(mu_);
    auto [it, inserted] = entries_.try_emplace(id);
    if (!inserted) {
      return;
    }
    it->second.summary.id = id;
    it->second.next_attempt = clock_.now();
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
    {
      std::unique_lock lock(mu_);
      for (;;) {
        if (stop_) {
          return;
        }
        auto now = clock_.now();
        // Retries whose time has come join the ready list.
        std::optional<Clock::time_point> earliest;
        for (auto& [id, e] : entries_) {
          if (e.summary.state == MessageState::kRetry) {
            if (e.next_attempt <= now) {
              e.summary.state = MessageState::kQueued;
              ready_.push_back(id);
            } else if (!earliest || e.next_attempt < *earliest) {
              earliest = e.next_attempt;
            }
          }
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
        if (!batch.empty()) {
          break;
        }
        // Wake for new mail, stop, or the next retry (polled at most every 200 ms so an
        // injected clock that jumps is noticed).
        auto wait = std::chrono::milliseconds(200);
        if (earliest) {
          wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(*earliest - now));
        }
        cv_.wait_for(lock, std::max(wait, std::chrono::milliseconds(1)));
      }
    }
    deliver_batch(std::move(batch));
  }
}

void QueueManager::deliver_batch(std::vector<std::string> ids) {
  struct Work {
    std::string id;
    Envelope env;
    std::vector<std::pair<std::size_t, StagedCopy>> copies;  // recipient index -> copy
    std::optional<Error> error;
  };
  std::vector<Work> work;
  work.reserve(ids.size());
  bool any_staged = false;
  // 1. Stage one copy per distinct mailbox of every message.
  for (auto& id : ids) {
    Work w;
    w.id = id;
    auto m = read_queue_file(store_.path_of(id));
    if (!m.ok()) {
      w.error = m.error();
      work.push_back(std::move(w));
      continue;
    }
    w.env = std::move(m->envelope);
    {
      std::lock_guard lock(mu_);
      auto& s = entries_[id].summary;
      s.sender = w.env.sender;
      s.recipients = w.env.recipients.size();
      s.size = m->body_length;
      s.received_unix = w.env.received_unix;
      s.attempts++;
    }
    std::set<std::string> seen;
    for (std::size_t i = 0; i < w.env.recipients.size(); ++i) {
      auto& r = w.env.recipients[i];
      if (r.state != RecipientState::kPending) {
        continue;
      }
      if (r.mailbox.empty()) {
        r.state = RecipientState::kFailed;
        r.last_result = "5.4.4 no route to a non-local recipient (relay not configured)";
        log::warn("queue", id + ": " + r.address + ": " + r.last_result);
        std::lock_guard lock(mu_);
        ++counters_.failed_recipients;
        continue;
      }
      if (!seen.insert(r.mailbox).second) {
        continue;  // one copy per mailbox even when a recipient is given twice
      }
      auto c = maildir_.stage(store_.path_of(id), m->body_offset, m->body_length, id, r.mailbox);
      if (!c.ok()) {
        w.error = c.error();
        break;
      }
      any_staged = any_staged || !c->already_delivered;
      w.copies.emplace_back(i, std::move(c.value()));
    }
    work.push_back(std::move(w));
  }
  // 2. One sync for the data of every staged copy, then publish them all.
  std::optional<Error> sync_error;
  if (any_staged) {
    if (auto r = maildir_.sync(); !r.ok()) {
      sync_error = r.error();
    }
  }
  bool any_published = false;
  for (auto& w : work) {
    if (w.error || sync_error) {
      continue;
    }
    for (auto& [i, c] : w.copies) {
      if (auto r = maildir_.publish(c); !r.ok()) {
        w.error = r.error();
        break;
      }
      any_published = any_published || !c.already_delivered;
    }
  }
  // 3. One sync for the new/ entries; then the queue files may go.
  if (any_published && !sync_error) {
    if (auto r = maildir_.sync(); !r.ok()) {
      sync_error = r.error();
    }
  }
  bool removed_any = false;
  for (auto& w : work) {
    if (!w.error && !sync_error) {
      for (auto& [i, c] : w.copies) {
        for (auto& r : w.env.recipients) {
          if (r.mailbox == w.env.recipients[i].mailbox && r.state == RecipientState::kPending) {
            r.state = RecipientState::kDelivered;
            r.last_result = "2.0.0 delivered to maildir";
          }
        }
        if (hook_ && !c.already_delivered) {
          hook_(w.id, w.env.recipients[i].mailbox, c.new_path);
        }
      }
      if (auto r = store_.remove(w.id); !r.ok()) {
        w.error = r.error();
      } else {
        removed_any = true;
      }
    }
  }
  if (removed_any) {
    (void)store_.sync_queue_dir();  // a lost unlink only means a harmless re-delivery check
  }
  // 4. Bookkeeping.
  std::lock_guard lock(mu_);
  for (auto& w : work) {
    auto it = entries_.find(w.id);
    if (it == entries_.end()) {
      continue;
    }
    std::optional<Error> e = w.error ? w.error : sync_error;
    if (!e) {
      ++counters_.delivered_messages;
      counters_.delivered_copies += w.copies.size();
      log::info("queue", w.id + ": delivered, " + std::to_string(w.copies.size()) + " copies");
      entries_.erase(it);
      continue;
    }
    auto& s = it->second.summary;
    s.last_error = e->enhanced + " " + e->message;
    it->second.envelope = std::move(w.env);
    auto delay = backoff(s.attempts);
    it->second.next_attempt = clock_.now() + delay;
    s.next_attempt_unix = unix_seconds(it->second.next_attempt);
    s.state = MessageState::kRetry;
    ++counters_.deferred;
    log::warn("queue", w.id + ": deferred: " + s.last_error);
  }
  counters_.in_queue = entries_.size();
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
