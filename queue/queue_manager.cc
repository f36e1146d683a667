#include "queue/queue_manager.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <tuple>
#include <cerrno>

#include "common/log.h"
#include "common/text.h"
#include "common/thread_name.h"
#include "queue/queue_file.h"

namespace bh::queue {

namespace {

constexpr const char* kLmtpHop = "lmtp";
constexpr const char* kCategorizeHop = "categorizer";

std::int64_t unix_seconds(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::string describe(const Error& e) { return e.enhanced + " " + e.message; }

Clock::time_point from_unix(std::int64_t t) { return Clock::time_point(std::chrono::seconds(t)); }

bool any_pending(const Envelope& env) {
  return std::any_of(env.recipients.begin(), env.recipients.end(),
                     [](const Recipient& r) { return r.state == RecipientState::kPending; });
}

std::string_view domain_of(const std::string& address) {
  auto at = address.rfind('@');
  return at == std::string::npos ? std::string_view{} : std::string_view(address).substr(at + 1);
}

// A status for a DSN action: the reply's own enhanced code when it has the right class.
std::string status_for(const std::string& enhanced, char cls, const char* fallback) {
  if (enhanced.size() >= 5 && enhanced[0] == cls && enhanced[1] == '.') {
    return enhanced;
  }
  return fallback;
}

// "<enhanced> <reply>", without saying the code twice when the text (our own diagnostic,
// no server having answered) already starts with it.
std::string with_code(const std::string& code, const std::string& reply) {
  if (reply.rfind(code + " ", 0) == 0) {
    return reply;
  }
  return code + " " + reply;
}

// RFC 3464 2.3.6: "smtp;" only for an SMTP server's reply ("550 ..."), our own
// diagnostics otherwise.
std::string diagnostic(const std::string& reply) {
  const bool smtp = reply.size() >= 4 && std::isdigit(static_cast<unsigned char>(reply[0])) &&
                    std::isdigit(static_cast<unsigned char>(reply[1])) &&
                    std::isdigit(static_cast<unsigned char>(reply[2])) && (reply[3] == ' ' || reply[3] == '-');
  return (smtp ? "smtp; " : "x-bridgehead; ") + reply;
}

// The leading enhanced code of a "<code> <text>" last_result.
std::string code_of(const std::string& result) { return result.substr(0, result.find(' ')); }

// The body of a queue file, for the report's returned content.
class QueueFileOriginal final : public OriginalMessage {
 public:
  QueueFileOriginal(std::string path, std::uint64_t body_length) : path_(std::move(path)) {
    m_.body_offset = kQueueFileHeader.size();
    m_.body_length = body_length;
  }
  Result<void> read(const ChunkSink& sink) const override {
    bool stopped = false;
    auto r = read_queue_body(path_, m_, [&](std::string_view c) -> Result<void> {
      if (!stopped && !sink(c)) {
        stopped = true;
        return transient_error("4.0.0", "stop");
      }
      return Ok{};
    });
    return stopped ? Result<void>(Ok{}) : r;
  }

 private:
  std::string path_;
  StoredMessage m_;
};

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
  // A recipient with no route right now (4.4.4 unreachable, ...): it stays pending and
  // the message is retried, but the other recipients' copies and jobs still go.
  std::optional<Error> route_error;
  std::vector<Copy> copies;        // one per distinct mailbox of a pending recipient
  std::map<std::string, RemoteJob> jobs;  // next hop -> recipients bound for it
  std::map<std::string, std::size_t> hop_limits;  // next hop -> its connector's limit
  std::vector<DsnOutcome> report;  // outcomes of this attempt to report
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

void QueueManager::set_remote(RemoteDeliverer* remote, Router router) {
  std::lock_guard lock(mu_);
  BH_CHECK(!started_);
  remote_ = remote;
  router_ = std::move(router);
}

void QueueManager::set_server_router(ServerRouter router) {
  std::lock_guard lock(mu_);
  BH_CHECK(!started_);
  server_router_ = std::move(router);
}

void QueueManager::set_categorizer(RemoteDeliverer* categorizer) {
  std::lock_guard lock(mu_);
  BH_CHECK(!started_);
  categorizer_ = categorizer;
}

void QueueManager::set_local_remote(RemoteDeliverer* lmtp) {
  std::lock_guard lock(mu_);
  BH_CHECK(!started_);
  local_remote_ = lmtp;
}

void QueueManager::fill_job(RemoteJob& job, const Work& w, const std::string& next_hop,
                            const std::string& connector, const std::string& domain) {
  job.queue_id = w.id;
  job.next_hop = next_hop;
  job.connector = connector;
  job.domain = domain;
  job.sender = w.env.sender;
  job.body = w.env.body;
  job.ret = w.env.ret;
  job.envid = w.env.envid;
  job.smtputf8 = w.env.smtputf8;
  job.xexch50 = w.env.xexch50;
  job.path = w.path;
  job.body_offset = w.msg.body_offset;
  job.body_length = w.msg.body_length;
}

void QueueManager::set_dsn(DsnSetup dsn) {
  std::lock_guard lock(mu_);
  BH_CHECK(!started_ && dsn.random != nullptr);
  dsn_ = std::move(dsn);
}

Clock::time_point QueueManager::next_retry_time(std::uint32_t attempts) const {
  auto now = clock_.now();
  if (attempts <= opt_.glitch_retries) {
    return now + opt_.glitch_interval;
  }
  return now + backoff(attempts - opt_.glitch_retries);
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
  {
    auto frozen = store_.load_frozen_hops();
    std::lock_guard lock(mu_);
    frozen_hops_ = std::move(frozen);
  }
  for (const auto& id : recovered_ids) {
    add(id, true);
  }
  thread_ = std::thread([this] {
    name_this_thread("bh-queue");
    run();
  });
}

void QueueManager::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  const bool was_running = thread_.joinable();
  if (was_running) {
    thread_.join();
    sync_removals_now();
    flush_events();  // once: a second stop() (the destructor's) may outlive the observer
  }
  std::lock_guard lock(mu_);
  for (auto& c : commands_) {
    c.done->set_value(transient_error("4.3.0", "the queue is stopping"));
  }
  commands_.clear();
}

Recipient added_recipient(const DsnSetup& d, const std::string& address) {
  Recipient r;
  r.address = address;
  if (d.categorize && d.categorize(address)) {
    r.categorize = true;
  } else if (d.local_mailbox) {
    r.mailbox = d.local_mailbox(address);
  }
  return r;
}

bool QueueManager::drain(std::chrono::milliseconds limit) {
  std::unique_lock lock(mu_);
  draining_ = true;
  if (!thread_.joinable()) {
    return remote_in_flight_ == 0;
  }
  cv_.notify_all();
  auto idle = [&] { return !busy_ && remote_in_flight_ == 0 && remote_done_.empty(); };
  return idle_cv_.wait_for(lock, limit, [&] { return drain_cut_ || idle(); }) && idle();
}

void QueueManager::cut_drain() {
  {
    std::lock_guard lock(mu_);
    drain_cut_ = true;
  }
  idle_cv_.notify_all();
}

void QueueManager::enqueue(const std::string& id) { add(id, false); }

void QueueManager::enqueue_frozen(const std::string& id) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = entries_.try_emplace(id);
  if (!inserted) {
    return;
  }
  auto& e = it->second;
  e.summary.id = id;
  e.next_attempt = clock_.now();
  e.state.frozen = true;
  e.summary.state = MessageState::kFrozen;  // not in ready_: nothing is tried until a thaw
  ++counters_.enqueued;
  counters_.in_queue = entries_.size();
  log::info("queue", id + ": held at acceptance (frozen)");
}

Result<void> QueueManager::act(const std::string& id, Action action, std::chrono::milliseconds wait) {
  auto done = std::make_shared<std::promise<Result<void>>>();
  auto result = done->get_future();
  {
    std::lock_guard lock(mu_);
    if (stop_ || !started_) {
      return transient_error("4.3.0", "the queue is not running");
    }
    commands_.push_back({id, action, done});
  }
  cv_.notify_one();
  if (result.wait_for(wait) != std::future_status::ready) {
    return transient_error("4.3.0", "the delivery thread did not answer in time; the action may still happen");
  }
  return result.get();
}

std::size_t QueueManager::retry_hop(const std::string& hop) {
  std::size_t n = 0;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, e] : entries_) {
      if (e.summary.state == MessageState::kRetry && e.hops.count(hop) > 0) {
        e.summary.state = MessageState::kQueued;  // its retry_ entry is skipped when it comes up
        ready_.push_back(id);
        ++n;
      }
    }
    if (auto it = hops_.find(hop); it != hops_.end()) {
      it->second.failures = 0;
    }
  }
  cv_.notify_one();
  return n;
}

std::size_t QueueManager::reroute() {
  std::size_t n = 0;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, e] : entries_) {
      if (e.summary.state != MessageState::kRetry) {
        continue;
      }
      const bool unrouted =
          e.summary.last_error.rfind("4.4.4", 0) == 0 ||
          (e.envelope && std::any_of(e.envelope->recipients.begin(), e.envelope->recipients.end(),
                                     [](const Recipient& r) {
                                       return r.state == RecipientState::kPending &&
                                              r.last_result.rfind("4.4.4", 0) == 0;
                                     }));
      const bool to_a_node = std::any_of(e.hops.begin(), e.hops.end(), [](const std::string& h) {
        return h.rfind("smarthost:node.", 0) == 0;
      });
      if (unrouted || to_a_node) {
        e.summary.state = MessageState::kQueued;  // its retry_ entry is skipped when it comes up
        ready_.push_back(id);
        ++n;
      }
    }
  }
  if (n > 0) {
    log::info("queue", "routing table changed: " + std::to_string(n) + " waiting message(s) routed again");
    cv_.notify_one();
  }
  return n;
}

Result<void> QueueManager::freeze_hop(const std::string& hop, bool frozen) {
  if (hop.empty() || hop.size() > 1024 || hop.find_first_of("\r\n") != std::string::npos) {
    return permanent_error("5.1.0", "not a next hop name");
  }
  std::set<std::string> all;
  {
    std::lock_guard lock(mu_);
    auto before = frozen_hops_;
    if (frozen) {
      frozen_hops_.insert(hop);
    } else if (frozen_hops_.erase(hop) == 0) {
      return transient_error("4.0.0", hop + " is not frozen");
    }
    all = frozen_hops_;
    if (auto r = store_.save_frozen_hops(all); !r.ok()) {
      frozen_hops_ = std::move(before);
      return r;
    }
    if (!frozen) {
      // Thawed: its waiting mail gets the hop's free connections.
      Hop& h = hops_[hop];
      std::size_t released = 0;
      while (!h.waiting.empty() && h.in_flight + released < std::max<std::size_t>(h.limit, opt_.max_per_hop)) {
        auto w = entries_.find(h.waiting.front());
        h.waiting.pop_front();
        if (w != entries_.end() && w->second.summary.state == MessageState::kQueued && w->second.in_flight == 0) {
          ready_.push_back(w->first);
          ++released;
        }
      }
    }
  }
  log::info("queue", "next hop " + hop + (frozen ? " frozen" : " thawed") + " by the operator");
  cv_.notify_one();
  return Ok{};
}

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// RFC 1985: "example.com" names that domain; "@example.com" it and every domain below
// it ("a.example.com", never "xexample.com").
bool etrn_domain_matches(std::string_view domain, const EtrnRequest& req) {
  if (!domain.empty() && domain.back() == '.') {
    domain.remove_suffix(1);
  }
  if (iequals(domain, req.name)) {
    return true;
  }
  return req.kind == EtrnRequest::Kind::kSubdomains && domain.size() > req.name.size() &&
         domain[domain.size() - req.name.size() - 1] == '.' &&
         iequals(domain.substr(domain.size() - req.name.size()), req.name);
}

}  // namespace

void QueueManager::set_etrn_policy(EtrnPolicy policy) {
  std::lock_guard lock(mu_);
  BH_CHECK(!started_);
  etrn_policy_ = std::move(policy);
}

EtrnResult QueueManager::etrn(const EtrnRequest& request) {
  EtrnResult res;
  bool allowed = false;
  // smtp::parse_etrn() only makes printable names; anything else is refused here too
  // (the name reaches the log).
  const bool printable = std::all_of(request.name.begin(), request.name.end(), [](char c) {
    return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
  });
  if (!request.name.empty() && request.name.size() <= 255 && printable) {
    if (etrn_policy_) {  // set before start(), read-only afterwards
      allowed = etrn_policy_(request);
    } else {
      std::lock_guard lock(mu_);
      allowed = remote_ != nullptr;
    }
  }
  if (!allowed) {
    res.outcome = EtrnOutcome::kNotAllowed;
    res.reason = "not a node we queue for";
    return res;
  }
  std::size_t made_due = 0, on_its_way = 0, held = 0;
  {
    std::lock_guard lock(mu_);
    if (!started_ || stop_) {
      res.outcome = EtrnOutcome::kUnable;
      res.reason = "the queue is not running";
      return res;
    }
    for (auto& [id, e] : entries_) {
      const MessageState state = e.summary.state;
      if (state == MessageState::kFrozen) {
        continue;
      }
      bool match = false;
      if (request.kind == EtrnRequest::Kind::kQueue) {
        match = std::any_of(e.hops.begin(), e.hops.end(),
                            [&](const std::string& h) { return iequals(h, request.name); });
      } else if (e.envelope) {
        match = std::any_of(e.envelope->recipients.begin(), e.envelope->recipients.end(),
                            [&](const Recipient& r) {
                              return r.state == RecipientState::kPending && r.mailbox.empty() &&
                                     etrn_domain_matches(domain_of(r.address), request);
                            });
      }
      if (!match) {
        continue;
      }
      const bool can_go =
          e.hops.empty() || std::any_of(e.hops.begin(), e.hops.end(), [&](const std::string& h) {
            return frozen_hops_.count(h) == 0;
          });
      if (!can_go) {
        ++held;
        continue;
      }
      if (state == MessageState::kRetry) {
        e.summary.state = MessageState::kQueued;  // its retry_ entry is skipped when it comes up
        ready_.push_back(id);
        for (const auto& h : e.hops) {
          if (auto it = hops_.find(h); it != hops_.end()) {
            it->second.failures = 0;
          }
        }
        ++made_due;
      } else {
        ++on_its_way;
      }
    }
  }
  res.messages = made_due + on_its_way;
  if (made_due > 0) {
    cv_.notify_one();
  }
  if (res.messages > 0) {
    res.outcome = EtrnOutcome::kStarted;
  } else if (held > 0) {
    res.outcome = EtrnOutcome::kUnable;
    res.reason = "its next hop is suspended";
  } else {
    res.outcome = EtrnOutcome::kNothingQueued;
  }
  log::info("queue", "ETRN " + request.node() + ": " + std::to_string(made_due) + " made due, " +
                         std::to_string(on_its_way) + " on their way, " + std::to_string(held) +
                         " held");
  return res;
}

// On the delivery thread.
Result<void> QueueManager::perform(const std::string& id, Action action) {
  std::optional<Envelope> env;
  DeliveryState st;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) {
      return permanent_error("5.1.0", "no message " + id);
    }
    auto& e = it->second;
    const MessageState s = e.summary.state;
    if (s == MessageState::kDelivering || e.in_flight > 0) {
      return transient_error("4.0.0", id + " is being delivered right now; try again");
    }
    switch (action) {
      case Action::kRetry:
        if (s == MessageState::kFrozen) {
          return transient_error("4.0.0", id + " is frozen; thaw it first");
        }
        if (s == MessageState::kRetry) {
          e.summary.state = MessageState::kQueued;
          ready_.push_back(id);
        }
        return Ok{};
      case Action::kFreeze:
        if (s == MessageState::kFrozen) {
          return Ok{};
        }
        e.summary.state = MessageState::kFrozen;  // ready_/retry_ entries are skipped now
        e.state.frozen = true;
        break;
      case Action::kThaw:
        if (s != MessageState::kFrozen) {
          return transient_error("4.0.0", id + " is not frozen");
        }
        e.state.frozen = false;
        break;
      case Action::kDelete:
      case Action::kDeleteWithReport:
        e.summary.state = MessageState::kFrozen;  // out of reach of the scheduler
        break;
    }
    st = e.state;
    env = e.envelope;
    if (env) {
      st.recipients = recipient_states(*env);
    }
  }
  const std::string path = store_.path_of(id);
  if (action == Action::kFreeze || action == Action::kThaw) {
    if (auto r = store_.save_state(id, st); !r.ok()) {
      std::lock_guard lock(mu_);
      auto& e = entries_[id];
      e.state.frozen = action == Action::kThaw;
      e.summary.state = action == Action::kThaw ? MessageState::kFrozen : MessageState::kQueued;
      if (action == Action::kFreeze) {
        ready_.push_back(id);
      }
      return r;
    }
    std::lock_guard lock(mu_);
    if (action == Action::kThaw) {
      auto& e = entries_[id];
      e.summary.state = MessageState::kQueued;
      ready_.push_back(id);
      log::info("queue", id + ": thawed by the operator");
    } else {
      log::info("queue", id + ": frozen by the operator");
    }
    return Ok{};
  }
  // Delete, with a report to the sender for every recipient not yet done if asked.
  if (action == Action::kDeleteWithReport) {
    if (!env) {
      if (auto m = read_queue_file(path); m.ok()) {
        env = std::move(m->envelope);
        (void)apply_delivery_state(st, *env);
      }
    }
    if (env) {
      std::vector<DsnOutcome> report;
      const auto now = clock_.now();
      for (std::size_t i = 0; i < env->recipients.size(); ++i) {
        if (env->recipients[i].state == RecipientState::kPending) {
          report.push_back({i, DsnAction::kFailed, "5.3.0", "",
                            "x-bridgehead; 5.3.0 deleted from the queue by the administrator", now,
                            std::nullopt});
        }
      }
      send_report(*env, report, path);
    }
  }
  if (env) {
    std::vector<Note> notes;
    for (std::size_t i = 0; i < env->recipients.size(); ++i) {
      if (env->recipients[i].state == RecipientState::kPending) {
        notes.push_back({QueueEvent::Kind::kDeleted, i,
                         action == Action::kDeleteWithReport ? "deleted by the administrator, sender notified"
                                                             : "deleted by the administrator",
                         ""});
      }
    }
    notify(id, *env, notes);
    flush_events();
  }
  if (auto r = store_.remove(id); !r.ok()) {
    std::lock_guard lock(mu_);
    entries_[id].summary.state = MessageState::kQueued;
    ready_.push_back(id);
    return r;
  }
  (void)store_.sync_queue_dir();
  std::lock_guard lock(mu_);
  entries_.erase(id);
  ++counters_.deleted;
  counters_.in_queue = entries_.size();
  log::info("queue", id + ": deleted by the operator" +
                         std::string(action == Action::kDeleteWithReport ? ", sender notified" : ""));
  return Ok{};
}

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
    if (recovered) {
      // A schedule from the previous run is kept: attempts, next retry, notices sent.
      auto st = store_.load_state(id);
      if (!st.ok()) {
        log::warn("queue", id + ": unreadable delivery state, every pending recipient is tried again: " +
                               st.error().message);
      } else if (*st) {
        auto& e = it->second;
        e.state = **st;
        e.summary.attempts = e.state.attempts;
        if (e.state.frozen || e.state.next_attempt_unix > unix_seconds(clock_.now())) {
          e.next_attempt = from_unix(e.state.next_attempt_unix);
          e.summary.next_attempt_unix = e.state.next_attempt_unix;
          e.summary.state = e.state.frozen ? MessageState::kFrozen : MessageState::kRetry;
          if (!e.state.frozen) {
            retry_.emplace(e.next_attempt, id);
          }
          ++counters_.enqueued;
          counters_.in_queue = entries_.size();
          return;
        }
      }
    }
    ready_.push_back(id);
    ++arrived_;
    ++counters_.enqueued;
    counters_.in_queue = entries_.size();
    // While the delivery thread lets a batch gather, each arrival would only wake it to
    // find the batch still short: wake it when the batch is full (or the window ends).
    if (gather_until_ != 0 && ready_.size() < gather_until_) {
      return;
    }
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
    std::vector<RemoteDone> answers;
    std::vector<Command> commands;
    bool gathered = false, idle_sync = false;
    {
      std::unique_lock lock(mu_);
      busy_ = false;
      if (draining_) {
        idle_cv_.notify_all();
      }
      for (;;) {
        if (stop_) {
          return;
        }
        if (!commands_.empty() && batch.empty()) {
          commands.swap(commands_);
          break;
        }
        if (!remote_done_.empty() && batch.empty()) {
          answers.swap(remote_done_);
          break;
        }
        auto now = clock_.now();
        while (!draining_ && !retry_.empty() && retry_.begin()->first <= now) {
          auto it = entries_.find(retry_.begin()->second);
          if (it != entries_.end() && it->second.summary.state == MessageState::kRetry) {
            it->second.summary.state = MessageState::kQueued;
            ready_.push_back(it->first);
          }
          retry_.erase(retry_.begin());
        }
        while (!draining_ && !ready_.empty() && batch.size() < opt_.batch) {
          std::string id = std::move(ready_.front());
          ready_.pop_front();
          auto it = entries_.find(id);
          if (it != entries_.end() && it->second.summary.state == MessageState::kQueued) {
            it->second.summary.state = MessageState::kDelivering;
            batch.push_back(std::move(id));
          }
        }
        if (!batch.empty() && batch.size() < opt_.batch && !gathered && opt_.batch_window.count() > 0 &&
            arrived_ > 0) {
          // Let more mail gather, once per batch: syncs are shared by the whole batch.
          gathered = true;
          const std::size_t want = opt_.batch - batch.size();
          gather_until_ = want;
          cv_.wait_for(lock, opt_.batch_window, [&] { return stop_ || ready_.size() >= want; });
          gather_until_ = 0;
          continue;
        }
        if (!batch.empty()) {
          arrived_ = 0;
          break;
        }
        if (removals_unsynced_) {
          idle_sync = true;  // nothing else to do: make the removals durable now
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
      busy_ = true;
    }
    if (idle_sync) {
      sync_removals_now();
      continue;
    }
    if (!commands.empty()) {
      for (auto& c : commands) {
        c.done->set_value(perform(c.id, c.action));
      }
      continue;
    }
    if (!answers.empty()) {
      apply_remote(std::move(answers));
      continue;
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
    if (!e.state.recipients.empty() && !e.state_applied) {
      // Recovered with a delivery state: recipients already done stay done.
      if (auto r = apply_delivery_state(e.state, *e.envelope); !r.ok()) {
        log::warn("queue", w.id + ": " + r.error().message);
      }
    }
    e.state_applied = true;
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
    if (r.categorize) {
      const auto index = static_cast<std::size_t>(&r - w.env.recipients.data());
      if (categorizer_ == nullptr) {
        r.last_result = "4.3.5 waiting for categorization: no directory categorizer configured";
        w.error = transient_error("4.3.5", "no directory categorizer configured");
        continue;
      }
      auto [it, fresh] = w.jobs.try_emplace(kCategorizeHop);
      if (fresh) {
        fill_job(it->second, w, kCategorizeHop, "categorizer", "");
      }
      it->second.recipients.push_back({index, r.address, r.notify, r.orcpt, {}, false});
      continue;
    }
    if (r.mailbox.empty()) {
      const auto index = static_cast<std::size_t>(&r - w.env.recipients.data());
      Result<RouteChoice> route = permanent_error("5.4.4", "no route to a non-local recipient (relay not configured)");
      if (!r.home_server.empty()) {
        route = remote_ != nullptr && server_router_
                    ? server_router_(r.home_server)
                    : Result<RouteChoice>(transient_error(
                          "4.4.4", "no route to home server " + r.home_server + " (no cluster routing)"));
      } else if (remote_ != nullptr && router_) {
        route = router_(domain_of(r.address));
      }
      if (!route.ok()) {
        if (route.error().transient()) {
          r.last_result = describe(route.error());
          w.route_error = route.error();
          continue;
        }
        r.state = RecipientState::kFailed;
        r.last_result = describe(route.error());
        log::warn("queue", w.id + ": " + r.address + ": failed: " + r.last_result);
        ++w.newly_failed;
        track(w, QueueEvent::Kind::kFailed, r);
        w.report.push_back({index, DsnAction::kFailed, status_for(route.error().enhanced, '5', "5.4.4"),
                            "", "x-bridgehead; " + r.last_result, clock_.now(), std::nullopt});
        continue;
      }
      auto [it, fresh] = w.jobs.try_emplace(route->next_hop);
      RemoteJob& job = it->second;
      if (fresh) {
        fill_job(job, w, route->next_hop, route->connector, route->domain);
        if (route->max_connections > 0) {
          w.hop_limits[route->next_hop] = route->max_connections;
        }
      }
      job.recipients.push_back({index, r.address, r.notify, r.orcpt, r.home_server, r.added});
      continue;
    }
    if (local_remote_ != nullptr) {
      // Local delivery handed over by LMTP: one recipient per mailbox in the job; the
      // others of that mailbox share its outcome (apply_remote).
      auto [it, fresh] = w.jobs.try_emplace(kLmtpHop);
      RemoteJob& job = it->second;
      if (fresh) {
        fill_job(job, w, kLmtpHop, "lmtp", "");
      }
      const auto index = static_cast<std::size_t>(&r - w.env.recipients.data());
      bool dup = std::any_of(job.recipients.begin(), job.recipients.end(), [&](const RemoteJob::Rcpt& x) {
        return w.env.recipients[x.index].mailbox == r.mailbox;
      });
      if (!dup) {
        job.recipients.push_back({index, r.address, r.notify, r.orcpt, {}, false});
      }
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

void QueueManager::flush_events() const {
  if (events_ != nullptr) {
    events_->flush();
  }
}

void QueueManager::notify(const std::string& id, const Envelope& env, const std::vector<Note>& notes) const {
  if (events_ == nullptr || notes.empty()) {
    return;
  }
  StoredMessage m;
  m.envelope = env;
  m.body_offset = kQueueFileHeader.size();
  m.body_length = env.body_size;
  const std::string path = store_.path_of(id);
  for (const auto& n : notes) {
    QueueEvent ev;
    ev.kind = n.kind;
    ev.queue_id = id;
    ev.message = &m;
    ev.queue_path = path;
    ev.recipient = n.index < env.recipients.size() ? &env.recipients[n.index] : nullptr;
    ev.reply = n.reply;
    ev.next_hop = n.next_hop;
    events_->on_event(ev);
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
          if ((r.notify & kNotifySuccess) != 0) {
            w.report.push_back({static_cast<std::size_t>(&r - w.env.recipients.data()),
                                DsnAction::kDelivered, "2.0.0", "", "", clock_.now(), std::nullopt});
          }
          track(w, QueueEvent::Kind::kDelivered, r, c.mailbox,
                c.staged.already_delivered ? std::string_view{} : c.staged.new_path);
        } else if (!c.error->transient()) {
          r.state = RecipientState::kFailed;
          r.last_result = describe(*c.error);
          ++w.newly_failed;
          log::warn("queue", w.id + ": " + r.address + ": failed: " + r.last_result);
          w.report.push_back({static_cast<std::size_t>(&r - w.env.recipients.data()), DsnAction::kFailed,
                              status_for(c.error->enhanced, '5', "5.0.0"), "",
                              "x-bridgehead; " + r.last_result, clock_.now(), std::nullopt});
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
  }
  // The tracking lines of the whole batch go out before any queue file goes away.
  flush_events();
  for (auto& w : work) {
    if (w.drop || w.error || !w.jobs.empty()) {
      continue;  // remote work settles when its answers are in (dispatch below)
    }
    bool pending = any_pending(w.env);
    if (!pending) {
      send_report(w.env, w.report, w.path);
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
    if (!w.drop && !w.error && !w.jobs.empty()) {
      dispatch(w);
    } else {
      finish(w, w.done);
    }
  }
}

void QueueManager::finish(Work& w, bool queue_file_removed) {
  std::unique_lock lock(mu_);
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
  if (!w.env.id.empty() && !w.error) {
    // Recipients still pending after a complete attempt: reports, expiry, the durable
    // retry schedule.
    e.envelope = w.env;
    lock.unlock();
    if (settle(w.id, std::move(w.env), std::move(w.report), w.path)) {
      sync_removals();  // expired
    }
    return;
  }
  if (!w.env.id.empty()) {
    e.envelope = std::move(w.env);
  }
  auto& s = e.summary;
  Error err = w.error         ? *w.error
              : w.route_error ? *w.route_error
                              : transient_error("4.3.0", "delivery incomplete");
  s.last_error = describe(err);
  e.next_attempt = clock_.now() + backoff(std::max<std::uint32_t>(s.attempts, 1));
  s.next_attempt_unix = unix_seconds(e.next_attempt);
  s.state = MessageState::kRetry;
  retry_.emplace(e.next_attempt, w.id);
  ++counters_.deferred;
  log::warn("queue", w.id + ": deferred (attempt " + std::to_string(s.attempts) + "): " + s.last_error);
}

// Hands each hop's job of a message to the remote deliverer, within the concurrency
// limits; a job over a limit waits in its hop's queue and the message is picked up
// again when a connection of that hop frees up. Runs on the delivery thread.
void QueueManager::dispatch(Work& w) {
  std::vector<RemoteJob> go;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(w.id);
    if (it == entries_.end()) {
      return;
    }
    auto& e = it->second;
    counters_.failed_recipients += w.newly_failed;
    counters_.delivered_copies += w.fresh_copies;
    e.envelope = w.env;
    e.report.insert(e.report.end(), w.report.begin(), w.report.end());
    e.hops.clear();
    bool held = false;
    for (auto& [key, job] : w.jobs) {
      e.hops.insert(key);
      Hop& hop = hops_[key];
      hop.limit = opt_.max_per_hop;
      if (auto l = w.hop_limits.find(key); l != w.hop_limits.end()) {
        hop.limit = std::min(hop.limit, l->second);
      }
      if (frozen_hops_.count(key) > 0 || hop.in_flight >= hop.limit || remote_in_flight_ >= opt_.max_remote) {
        if (std::find(hop.waiting.begin(), hop.waiting.end(), w.id) == hop.waiting.end()) {
          hop.waiting.push_back(w.id);
        }
        held = true;
        continue;
      }
      ++hop.in_flight;
      ++remote_in_flight_;
      ++e.in_flight;
      ++counters_.remote_jobs;
      go.push_back(std::move(job));
    }
    if (e.in_flight == 0 && held) {
      e.summary.state = MessageState::kQueued;  // waits for a connection of its hop
      if (e.summary.attempts > 0 && w.copies.empty()) {
        --e.summary.attempts;  // nothing was tried: not an attempt
      }
    }
  }
  for (auto& job : go) {
    log::info("queue", w.id + ": to " + job.next_hop + ", " + std::to_string(job.recipients.size()) +
                           " recipient(s)");
    std::string id = w.id;
    RemoteJob copy = job;
    RemoteDeliverer* to = job.next_hop == kLmtpHop          ? local_remote_
                          : job.next_hop == kCategorizeHop ? categorizer_
                                                           : remote_;
    to->deliver(std::move(job), [this, id, copy = std::move(copy)](RemoteResult r) mutable {
      {
        std::lock_guard lock(mu_);
        remote_done_.push_back({std::move(id), std::move(copy), std::move(r)});
      }
      cv_.notify_one();
    });
  }
}

// Applies remote answers to the envelopes (the delivery thread is their only writer).
void QueueManager::apply_remote(std::vector<RemoteDone> done) {
  struct ToSettle {
    std::string id, path;
    Envelope env;
    std::vector<DsnOutcome> report;
  };
  std::vector<ToSettle> settled;
  std::vector<std::tuple<std::string, Envelope, std::vector<Note>>> told;
  std::map<std::string, std::size_t> released_now;  // per hop, in this call
  {
    std::lock_guard lock(mu_);
    for (auto& d : done) {
      Hop& hop = hops_[d.job.next_hop];
      --hop.in_flight;
      --remote_in_flight_;
      if (d.result.hop_error) {
        ++hop.failures;
        hop.last_error = describe(*d.result.hop_error);
        hop.next_retry = next_retry_time(static_cast<std::uint32_t>(hop.failures));
      } else {
        hop.failures = 0;
        hop.last_error.clear();
      }
      // Freed connections go to as many messages waiting for this hop as there are free
      // slots (releasing all of them would read every waiting queue file again).
      std::size_t& released = released_now[d.job.next_hop];
      while (frozen_hops_.count(d.job.next_hop) == 0 && !hop.waiting.empty() &&
             hop.in_flight + released < std::max<std::size_t>(hop.limit, 1)) {
        auto w = entries_.find(hop.waiting.front());
        hop.waiting.pop_front();
        if (w != entries_.end() && w->second.summary.state == MessageState::kQueued &&
            w->second.in_flight == 0) {
          ready_.push_back(w->first);
          ++released;
        }
      }
      auto it = entries_.find(d.id);
      if (it == entries_.end() || !it->second.envelope) {
        continue;
      }
      auto& e = it->second;
      Envelope& env = *e.envelope;
      const auto now = clock_.now();
      std::vector<Note> notes;
      if (d.job.next_hop == kCategorizeHop) {
        expand(d, env, notes);
        told.emplace_back(d.id, env, std::move(notes));
        if (--e.in_flight == 0) {
          settled.push_back({d.id, store_.path_of(d.id), env, std::move(e.report)});
          e.report.clear();
        }
        continue;
      }
      for (const auto& r : d.result.recipients) {
        if (r.index >= env.recipients.size()) {
          continue;
        }
        Recipient& rcpt = env.recipients[r.index];
        notes.push_back({r.status == RemoteStatus::kDelivered
                             ? (d.job.next_hop == kLmtpHop ? QueueEvent::Kind::kDelivered : QueueEvent::Kind::kRelayed)
                             : r.status == RemoteStatus::kPermanent ? QueueEvent::Kind::kFailed
                                                                    : QueueEvent::Kind::kDeferred,
                         r.index, r.reply, d.job.next_hop});
        const bool lmtp = d.job.next_hop == kLmtpHop;
        // Remote-MTA is a DNS name: "mx.example.com [192.0.2.1]" reports as the name.
        const std::string mta = d.result.remote_mta.substr(0, d.result.remote_mta.find(' '));
        switch (r.status) {
          case RemoteStatus::kDelivered:
            rcpt.state = RecipientState::kDelivered;
            rcpt.last_result = status_for(r.enhanced, '2', "2.0.0") + (lmtp ? " delivered by LMTP to " : " relayed to ") +
                               mta + ": " + r.reply;
            if (lmtp) {
              ++counters_.delivered_copies;
            } else {
              ++counters_.relayed_recipients;
            }
            if ((rcpt.notify & kNotifySuccess) != 0 && (lmtp || !d.result.dsn_passed)) {
              e.report.push_back({r.index, lmtp ? DsnAction::kDelivered : DsnAction::kRelayed, "2.0.0", mta,
                                  (lmtp ? "lmtp; " : "smtp; ") + r.reply, now, std::nullopt});
            }
            break;
          case RemoteStatus::kPermanent:
            rcpt.state = RecipientState::kFailed;
            rcpt.last_result = with_code(status_for(r.enhanced, '5', "5.0.0"), r.reply);
            ++counters_.failed_recipients;
            log::warn("queue", d.id + ": " + rcpt.address + ": failed: " + r.reply);
            e.report.push_back({r.index, DsnAction::kFailed, status_for(r.enhanced, '5', "5.0.0"), mta,
                                diagnostic(r.reply), now, std::nullopt});
            break;
          case RemoteStatus::kTransient:
            rcpt.last_result = with_code(status_for(r.enhanced, '4', "4.0.0"), r.reply);
            break;
        }
      }
      if (d.job.next_hop == kLmtpHop) {
        // One LMTP recipient stood for every recipient of its mailbox.
        for (const auto& r : d.result.recipients) {
          if (r.index >= env.recipients.size()) {
            continue;
          }
          const Recipient& done_one = env.recipients[r.index];
          for (auto& other : env.recipients) {
            if (&other != &done_one && other.state == RecipientState::kPending &&
                !other.mailbox.empty() && other.mailbox == done_one.mailbox) {
              other.state = done_one.state;
              other.last_result = done_one.last_result;
            }
          }
        }
      }
      told.emplace_back(d.id, env, std::move(notes));
      if (--e.in_flight == 0) {
        settled.push_back({d.id, store_.path_of(d.id), env, std::move(e.report)});
        e.report.clear();
      }
    }
  }
  for (const auto& [id, env, notes] : told) {
    notify(id, env, notes);
  }
  flush_events();
  bool removed = false;
  for (auto& t : settled) {
    removed = settle(t.id, std::move(t.env), std::move(t.report), t.path) || removed;
  }
  if (removed) {
    sync_removals();
  }
}

// The categorizer's answers for one message (with mu_ held): expanded recipients are
// done and the recipients they became are appended, once each (case-insensitive
// address; a mailbox already in the message is not added again); 5xx fails the
// recipient with a report; 4xx leaves it pending for the next attempt.
void QueueManager::expand(const RemoteDone& d, Envelope& env, std::vector<Note>& notes) {
  const auto now = clock_.now();
  auto& e = entries_[d.id];
  std::set<std::string> have_address, have_mailbox;
  for (const auto& r : env.recipients) {
    if (!r.categorize) {
      have_address.insert(ascii_lower(r.address));
      if (!r.mailbox.empty()) {
        have_mailbox.insert(r.mailbox);
      }
    }
  }
  std::vector<Recipient> added;
  for (const auto& r : d.result.recipients) {
    if (r.index >= env.recipients.size() || !env.recipients[r.index].categorize ||
        env.recipients[r.index].state != RecipientState::kPending) {
      continue;
    }
    Recipient& rcpt = env.recipients[r.index];
    switch (r.status) {
      case RemoteStatus::kDelivered: {
        std::size_t fresh = 0;
        for (const auto& x : r.expanded) {
          if (x.address.empty() || !have_address.insert(ascii_lower(x.address)).second ||
              (!x.mailbox.empty() && !have_mailbox.insert(x.mailbox).second)) {
            continue;  // already a recipient of this message
          }
          if (env.recipients.size() + added.size() >= kMaxAddedRecipients) {
            break;  // the categorizer's own cap is lower; this only bounds the state file
          }
          Recipient n;
          n.address = x.address;
          n.mailbox = x.mailbox;
          n.home_server = x.mailbox.empty() ? x.home_server : std::string();
          n.notify = rcpt.notify;
          n.orcpt = rcpt.orcpt.empty() ? "rfc822;" + rcpt.address : rcpt.orcpt;
          n.added = true;
          added.push_back(std::move(n));
          ++fresh;
        }
        rcpt.state = RecipientState::kDelivered;
        rcpt.last_result = "2.1.5 expanded by the categorizer into " + std::to_string(fresh) +
                           " new recipient(s)" + (r.reply.empty() ? "" : ": " + r.reply);
        ++counters_.expanded_recipients;
        counters_.added_recipients += fresh;
        notes.push_back({QueueEvent::Kind::kExpanded, r.index, rcpt.last_result, kCategorizeHop});
        break;
      }
      case RemoteStatus::kPermanent:
        rcpt.state = RecipientState::kFailed;
        rcpt.last_result = with_code(status_for(r.enhanced, '5', "5.1.1"), r.reply);
        ++counters_.failed_recipients;
        log::warn("queue", d.id + ": " + rcpt.address + ": categorizer: " + r.reply);
        e.report.push_back({r.index, DsnAction::kFailed, status_for(r.enhanced, '5', "5.1.1"), "",
                            "x-bridgehead; " + r.reply, now, std::nullopt});
        notes.push_back({QueueEvent::Kind::kFailed, r.index, rcpt.last_result, kCategorizeHop});
        break;
      case RemoteStatus::kTransient:
        rcpt.last_result = with_code(status_for(r.enhanced, '4', "4.4.3"), r.reply);
        notes.push_back({QueueEvent::Kind::kDeferred, r.index, rcpt.last_result, kCategorizeHop});
        break;
    }
  }
  env.recipients.insert(env.recipients.end(), std::make_move_iterator(added.begin()),
                        std::make_move_iterator(added.end()));
}

bool QueueManager::settle(const std::string& id, Envelope env, std::vector<DsnOutcome> report,
                          const std::string& path) {
  const auto now = clock_.now();
  DeliveryState st;
  std::uint32_t attempts = 1;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) {
      return false;
    }
    st = it->second.state;
    attempts = std::max<std::uint32_t>(it->second.summary.attempts, 1);
  }
  if (st.first_attempt_unix == 0) {
    st.first_attempt_unix = unix_seconds(now);
  }
  const auto received = from_unix(env.received_unix);
  bool pending = any_pending(env);
  bool expired = false;
  std::vector<Note> expired_notes;
  if (pending && now - received >= opt_.expire_after) {
    // RFC 5321 4.5.4.1: give up, and tell the sender about every recipient left.
    expired = true;
    for (std::size_t i = 0; i < env.recipients.size(); ++i) {
      auto& r = env.recipients[i];
      if (r.state != RecipientState::kPending) {
        continue;
      }
      r.state = RecipientState::kFailed;
      std::string last = r.last_result.empty() ? "no attempt succeeded" : r.last_result;
      r.last_result = "5.4.7 delivery time expired; last error: " + last;
      expired_notes.push_back({QueueEvent::Kind::kExpired, i, r.last_result, ""});
      report.push_back({i, DsnAction::kFailed, "5.4.7", "", "x-bridgehead; " + r.last_result, now,
                        std::nullopt});
    }
    pending = false;
    notify(id, env, expired_notes);
    flush_events();
    log::warn("queue", id + ": expired after " +
                           std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - received).count()) +
                           " s in the queue");
  }
  if (pending && !st.delay_notice_sent && opt_.delay_notice_after.count() > 0 &&
      now - received >= opt_.delay_notice_after) {
    std::vector<DsnOutcome> delays;
    for (std::size_t i = 0; i < env.recipients.size(); ++i) {
      const auto& r = env.recipients[i];
      if (r.state == RecipientState::kPending) {
        delays.push_back({i, DsnAction::kDelayed, status_for(code_of(r.last_result), '4', "4.4.7"), "",
                          r.last_result.empty() ? "" : "x-bridgehead; " + r.last_result, now,
                          received + opt_.expire_after});
      }
    }
    send_report(env, delays, path);
    st.delay_notice_sent = true;
  }
  send_report(env, report, path);
  if (!pending) {
    auto r = store_.remove(id);
    if (r.ok()) {
      // The caller fsyncs queue/ once for all it settled: a lost unlink only means the
      // message is read again after a crash, and every recipient is then done already.
      std::lock_guard lock(mu_);
      entries_.erase(id);
      ++counters_.delivered_messages;
      counters_.expired += expired ? 1 : 0;
      counters_.in_queue = entries_.size();
      log::info("queue", id + (expired ? ": expired, removed" : ": done"));
      return true;
    }
    log::error("queue", id + ": cannot remove finished message: " + r.error().message);
  }
  // Still pending: a durable schedule, so a restart keeps it. Recipients the categorizer
  // added are written here, before any of them is tried; while one was never tried, the
  // message is due at once (whichever job of the attempt answered last).
  const bool expanded_now = std::any_of(env.recipients.begin(), env.recipients.end(), [](const Recipient& r) {
    return r.added && r.state == RecipientState::kPending && r.last_result.empty();
  });
  const auto next = expanded_now ? now : next_retry_time(attempts);
  st.attempts = attempts;
  st.next_attempt_unix = expanded_now ? 0 : unix_seconds(next);
  st.recipients = recipient_states(env);
  st.added = added_recipients(env);
  if (auto r = store_.save_state(id, st); !r.ok()) {
    log::warn("queue", id + ": cannot save delivery state: " + r.error().message);
  }
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    return false;
  }
  auto& e = it->second;
  e.envelope = std::move(env);
  e.state = st;
  e.state_applied = true;
  e.next_attempt = next;
  auto& s = e.summary;
  s.last_error.clear();
  for (const auto& r : e.envelope->recipients) {
    if (r.state == RecipientState::kPending && !r.last_result.empty()) {
      s.last_error = r.last_result;
      break;
    }
  }
  s.next_attempt_unix = st.next_attempt_unix;
  s.state = MessageState::kRetry;
  retry_.emplace(next, id);
  if (expanded_now) {
    log::info("queue", id + ": categorized; the expanded recipients are due now");
    cv_.notify_one();
    return false;
  }
  ++counters_.deferred;
  log::warn("queue", id + ": deferred (attempt " + std::to_string(attempts) + "): " + s.last_error);
  return false;
}

// Removals of settled remote messages share their directory fsync: at most one every
// kRemovalSyncEvery under load, and one as soon as the delivery thread is idle. Until it,
// a crash can bring a removed queue file back (its recipients were done: the message is
// read again, and a relayed one could be sent twice - the window Postfix, which never
// syncs an unlink, leaves open for as long as writeback takes).
void QueueManager::sync_removals() {
  removals_unsynced_ = true;
  if (std::chrono::steady_clock::now() - last_removal_sync_ >= kRemovalSyncEvery) {
    sync_removals_now();
  }
}

void QueueManager::sync_removals_now() {
  if (!removals_unsynced_) {
    return;
  }
  removals_unsynced_ = false;
  last_removal_sync_ = std::chrono::steady_clock::now();
  if (auto d = store_.sync_queue_dir(); !d.ok()) {
    log::warn("queue", "fsync of queue directory after removal failed: " + d.error().message);
  }
}

// Spools one report from the null sender (never for a message that itself came from the
// null sender: write_dsn returns nothing then) and queues it like any other message.
void QueueManager::send_report(const Envelope& env, const std::vector<DsnOutcome>& outcomes,
                               const std::string& path) {
  if (!dsn_ || outcomes.empty() || env.sender.empty()) {
    return;
  }
  auto writer = store_.begin();
  if (!writer.ok()) {
    log::error("queue", env.id + ": cannot spool a delivery report: " + writer.error().message);
    return;
  }
  DsnOptions o;
  o.reporting_mta = dsn_->reporting_mta;
  QueueFileOriginal original(path, env.body_size);
  auto info = write_dsn(env, outcomes, original, o, clock_, *dsn_->random,
                        [&](std::string_view b) { return (*writer)->write(b); });
  if (!info.ok()) {
    log::error("queue", env.id + ": cannot write a delivery report: " + info.error().message);
    return;
  }
  if (!*info) {
    return;  // nothing the sender asked for (NOTIFY)
  }
  Envelope denv = (*info)->envelope;
  for (auto& r : denv.recipients) {
    const Recipient added = added_recipient(*dsn_, r.address);
    r.categorize = added.categorize;  // resolved by the categorizer hop, off this thread
    r.mailbox = added.mailbox;
  }
  denv.received_unix = unix_seconds(clock_.now());
  denv.protocol = "local";
  const std::string of = env.id;
  store_.commit(std::move(writer.value()), std::move(denv), [this, of, original = env](Result<std::string> id) {
    if (!id.ok()) {
      log::error("queue", of + ": delivery report not queued: " + id.error().message);
      return;
    }
    log::info("queue", of + ": delivery report queued as " + *id);
    notify(of, original, {{QueueEvent::Kind::kReported, original.recipients.size(), "report queued as " + *id, ""}});
    flush_events();
    {
      std::lock_guard lock(mu_);
      ++counters_.dsns;
    }
    enqueue(*id);
  });
}

std::vector<HopSummary> QueueManager::hops() const {
  std::lock_guard lock(mu_);
  std::map<std::string, HopSummary> out;
  for (const auto& [key, hop] : hops_) {
    auto& h = out[key];
    h.next_hop = key;
    h.in_flight = hop.in_flight;
    h.last_error = hop.last_error;
    h.failures = hop.failures;
    h.next_retry_unix = hop.failures > 0 ? unix_seconds(hop.next_retry) : 0;
  }
  for (const auto& [id, e] : entries_) {
    for (const auto& k : e.hops) {  // the hops of its last attempt
      auto& h = out[k];
      h.next_hop = k;
      ++h.messages;
      if (h.oldest_unix == 0 || e.summary.received_unix < h.oldest_unix) {
        h.oldest_unix = e.summary.received_unix;
      }
    }
  }
  for (const auto& k : frozen_hops_) {
    out[k].next_hop = k;
  }
  std::vector<HopSummary> v;
  for (auto& [k, h] : out) {
    h.state = frozen_hops_.count(k) > 0 ? "frozen"
              : h.in_flight > 0       ? "active"
              : h.failures > 0        ? "retry"
                                      : "ready";
    v.push_back(std::move(h));
  }
  return v;
}

std::vector<MessageSummary> QueueManager::list() const {
  std::lock_guard lock(mu_);
  std::vector<MessageSummary> out;
  out.reserve(entries_.size());
  for (const auto& [id, e] : entries_) {
    out.push_back(e.summary);
    out.back().hops.assign(e.hops.begin(), e.hops.end());
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
