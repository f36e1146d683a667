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
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "queue/delivery_state.h"
#include "queue/dsn.h"
#include "queue/envelope.h"
#include "queue/etrn_request.h"
#include "queue/fs_message_store.h"
#include "queue/maildir.h"
#include "queue/queue_events.h"
#include "queue/remote_deliverer.h"

namespace bh::queue {

struct QueueManagerOptions {
  std::chrono::milliseconds retry_initial{1000};
  std::chrono::milliseconds retry_max{std::chrono::minutes(5)};
  std::size_t batch = 128;  // messages per delivery batch (one set of syncs)
  // A batch that is not full waits up to this long (real time, not the injected clock:
  // it trades latency for fewer syncs) for more mail before it starts.
  std::chrono::milliseconds batch_window{10};

  // Remote delivery (RFC 5321 4.5.4.1): after a failed attempt, `glitch_retries` quick
  // retries `glitch_interval` apart, then the doubling backoff from retry_initial up to
  // retry_max. A message still undelivered after `expire_after` fails for its pending
  // recipients (5.4.7, with a DSN); after `delay_notice_after` (0: never) the sender gets
  // one delay notice.
  std::uint32_t glitch_retries = 3;
  std::chrono::milliseconds glitch_interval{std::chrono::seconds(60)};
  std::chrono::milliseconds expire_after{std::chrono::hours(48)};
  std::chrono::milliseconds delay_notice_after{std::chrono::hours(12)};
  std::size_t max_per_hop = 10;   // jobs in flight per next hop
  std::size_t max_remote = 100;   // jobs in flight in total
};

// Where mail for a domain goes (routing::RouteTable through node/): the scheduler's
// queue key and what the RemoteDeliverer needs to reach it.
struct RouteChoice {
  std::string next_hop;   // e.g. "smarthost:relay", "mx:internet:example.com"
  std::string connector;
  std::string domain;
  std::size_t max_connections = 0;  // the connector's own limit; 0: only max_per_hop
};
// Permanent errors bounce the recipient (5.4.4 no route); transient ones retry.
using Router = std::function<Result<RouteChoice>(std::string_view domain)>;
using ServerRouter = std::function<Result<RouteChoice>(std::string_view home_server)>;

struct DsnSetup {
  std::string reporting_mta;  // this node's host name
  Random* random = nullptr;   // Message-ID and MIME boundary of the reports
  // With a directory categorizer (LDAP): true for an address the categorizer must
  // resolve (one of a local domain). Such a report recipient is queued for the
  // categorizer hop, like a group at RCPT: it is resolved asynchronously (its mailbox and
  // folder, its alternate recipient, in a cluster the node it is homed on), and waits in
  // that hop (4.4.3) while the directory is down instead of being misrouted. Unset or
  // false: local_mailbox below.
  std::function<bool(const std::string& address)> categorize;
  // The local mailbox of an address, "" when it is not local (so a report to a local
  // sender is delivered here and one to a remote sender is relayed). Called on the
  // delivery thread: it must answer at once (the file directory does).
  std::function<std::string(const std::string& address)> local_mailbox;
};

// An address the node adds as a recipient itself (a report's, a journal's), by the rule
// of DsnSetup: with `categorize` set when d.categorize says so, else with the mailbox
// d.local_mailbox gives (none: routed onward).
Recipient added_recipient(const DsnSetup& d, const std::string& address);

enum class MessageState { kQueued, kDelivering, kRetry, kFrozen };

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
  std::vector<std::string> hops;      // next hops of its remote recipients (last attempt)
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
  std::uint64_t relayed_recipients = 0; // accepted by a remote server
  std::uint64_t remote_jobs = 0;        // remote delivery attempts started
  std::uint64_t expired = 0;            // messages expired (pending recipients bounced)
  std::uint64_t dsns = 0;               // delivery status notifications queued
  std::uint64_t deleted = 0;            // removed by the operator
  std::uint64_t in_queue = 0;
  std::uint64_t expanded_recipients = 0;  // recipients expanded by the categorizer
  std::uint64_t added_recipients = 0;     // recipients they became
};

// One next hop as the operator sees it (Get-Queue): state "active" (a job in flight),
// "retry" (the last attempt failed and mail waits for its next retry), "ready" (mail
// waits for a free connection).
struct HopSummary {
  std::string next_hop;
  std::string state;
  std::size_t messages = 0;        // messages with recipients pending for this hop
  std::size_t in_flight = 0;
  std::int64_t oldest_unix = 0;    // arrival of the oldest of them
  std::string last_error;
  std::int64_t next_retry_unix = 0;
  std::uint64_t failures = 0;      // consecutive failed attempts
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
  // Before stop(), at shutdown: no new delivery starts (nor retry, nor job of a waiting
  // message); the jobs in flight (relay, LMTP, categorizer) are waited for, at most
  // `limit`, and their answers applied (delivered recipients recorded, reports queued),
  // so a message a next hop took in the last moments is not sent again after the
  // restart. True when nothing was left in flight. Commands are still performed.
  bool drain(std::chrono::milliseconds limit);
  // From any thread, during or before drain(): drain() stops waiting and returns false at
  // once (the operator's second SIGTERM). What is still in flight stays queued.
  void cut_drain();
  // Finishes the batch in flight, then joins. Messages stay in queue/ for the next start.
  void stop();
  // A committed queue id (after MessageStore::commit reported success). Idempotent.
  void enqueue(const std::string& id);
  // A committed queue id held at acceptance (an arrival sink quarantined it): it is
  // frozen from the start, as after act(kFreeze), until an operator thaws it. The caller
  // has already recorded the frozen state in state/<id> (so it stays held across a
  // restart). Idempotent.
  void enqueue_frozen(const std::string& id);
  void set_delivered_hook(DeliveredHook hook);
  // Before start(): without them recipients with no local mailbox fail (5.4.4) and no
  // reports are sent. `remote` must outlive the manager.
  void set_remote(RemoteDeliverer* remote, Router router);
  // Recipients with a Recipient::home_server (a mailbox of the organization homed on
  // another node) are routed by `router` (given the home server) instead of by domain,
  // and delivered through set_remote's deliverer. Without it they wait (4.4.4).
  void set_server_router(ServerRouter router);
  void set_dsn(DsnSetup dsn);
  // Local mailboxes handed over by LMTP instead of written as Maildir: recipients with a
  // mailbox go to `lmtp` as one job of next hop "lmtp" (one recipient per mailbox).
  void set_local_remote(RemoteDeliverer* lmtp);
  // Recipients marked Recipient::categorize go first to `categorizer` as one job of next
  // hop "categorizer" (the node adapts directory::Categorizer to RemoteDeliverer): a
  // recipient it expands is done ("2.1.5 expanded") and the recipients it became are
  // appended to the message (Recipient::added, kept in state/<id> before any of them is
  // tried) and delivered at once; 5xx fails it with a report; 4xx (directory down)
  // keeps the message queued and retries on the usual schedule. Without one, such
  // recipients wait (4.3.5) until a node with a categorizer picks the message up.
  void set_categorizer(RemoteDeliverer* categorizer);
  // Observer of received/delivered/deferred/failed (queue/queue_events.h); must outlive
  // the manager; set before start().
  void set_events(QueueEvents* events);

  std::vector<MessageSummary> list() const;  // sorted by id (= by arrival)
  std::optional<MessageDetail> show(const std::string& id) const;
  QueueCounters counters() const;
  std::vector<HopSummary> hops() const;

  // Operator actions (Exchange's Retry-Queue, Suspend/Resume-Message, Remove-Message).
  // Carried out by the delivery thread (the owner of the state); the caller waits for
  // the outcome. Freezing is recorded in state/<id>, so it survives a restart.
  // Errors: permanent 5.1.0 "no such message"; transient 4.0.0 when the message is in
  // delivery right now or the action does not fit its state (thaw of a message that is
  // not frozen); the delivery thread not answering within `wait` is transient too.
  enum class Action { kRetry, kFreeze, kThaw, kDelete, kDeleteWithReport };
  Result<void> act(const std::string& id, Action action,
                   std::chrono::milliseconds wait = std::chrono::seconds(10));
  // Every message waiting for a retry of next hop `hop` is due now; returns how many.
  std::size_t retry_hop(const std::string& hop);
  // A new routing table was published (link state): every message waiting for a retry
  // that had no route (last error 4.4.4, "unreachable"), or that waits for a hop to
  // another node of the organization ("smarthost:node.<id>"), is due now and routed
  // again with the new table. Returns how many.
  std::size_t reroute();
  // Suspend-Queue / Resume-Queue: nothing is sent to a frozen next hop (its mail waits,
  // retry times pass) until it is thawed; kept in <queue>/frozen-hops across restarts.
  Result<void> freeze_hop(const std::string& hop, bool frozen);

  // RFC 1985 ETRN: a remote client asks for a queue run (smtp/etrn.h parses the command
  // and words the reply). Every message with a pending remote recipient in the domain
  // (kDomain: exactly that domain; kSubdomains: it or any domain below it), or with a
  // next hop of that name (kQueue, ignoring case), that waits for a retry is due now, as
  // with retry_hop(), and the failure counts of its next hops are reset. Frozen messages
  // are never touched. Outcome:
  //   kNotAllowed    the ETRN policy refuses the node (459)
  //   kUnable        the queue is not running, or every matching message waits on next
  //                  hops frozen by the operator (458)
  //   kStarted       matching mail was made due, or is already on its way: queued,
  //                  waiting for a free connection, in delivery (250)
  //   kNothingQueued none matches (251)
  // Any thread; takes the lock once for a scan of the queued messages (O(messages):
  // callers rate-limit ETRN per client, smtp::EtrnRateLimiter); never waits for the
  // delivery thread. Limit: a message is known by its recipients and next hops only
  // once its queue file was read in this run, so mail recovered at start that still
  // waits for its first retry of this run is not matched (it keeps its schedule).
  EtrnResult etrn(const EtrnRequest& request);
  // Which ETRN nodes this node queues for (RFC 1985 459 for the others). Called on the
  // ETRN caller's thread outside the manager's lock, so it must be thread-safe. Without
  // one: every node when remote delivery is configured (set_remote), none otherwise.
  using EtrnPolicy = std::function<bool(const EtrnRequest&)>;
  void set_etrn_policy(EtrnPolicy policy);  // before start()

 private:
  struct Entry {
    MessageSummary summary;
    std::optional<Envelope> envelope;  // after the first attempt: authoritative state
    Clock::time_point next_attempt{};
    bool recovered = false;            // from a previous run: copies may already exist
    DeliveryState state;               // persisted in state/<id> when it matters
    bool state_applied = false;        // state.recipients copied into the envelope
    std::size_t in_flight = 0;         // remote jobs not yet answered
    std::set<std::string> hops;        // next hops with recipients pending
    std::vector<DsnOutcome> report;    // outcomes to report when the message settles
    // A copy of this message may be in a Maildir already (so cur/ must be searched).
    bool recipients_may_exist() const { return recovered || summary.attempts > 1; }
  };
  struct Work;
  struct Command {
    std::string id;
    Action action;
    std::shared_ptr<std::promise<Result<void>>> done;
  };
  Result<void> perform(const std::string& id, Action action);
  struct RemoteDone {
    std::string id;
    RemoteJob job;
    RemoteResult result;
  };
  struct Hop {
    std::size_t in_flight = 0;
    std::size_t limit = 0;            // min(max_per_hop, the connector's max_connections)
    std::deque<std::string> waiting;  // ids held back by the concurrency limit
    std::string last_error;
    Clock::time_point next_retry{};
    std::uint64_t failures = 0;
  };
  void run();
  void apply_remote(std::vector<RemoteDone> done);
  void dispatch(Work& w);
  static void fill_job(RemoteJob& job, const Work& w, const std::string& next_hop,
                       const std::string& connector, const std::string& domain);
  // Final bookkeeping of one message on the delivery thread: reports, then removal or
  // a durable retry schedule.
  // True when the message is done and its queue file removed (the caller then calls
  // sync_removals() once for all of them).
  bool settle(const std::string& id, Envelope env, std::vector<DsnOutcome> report,
              const std::string& path);
  void sync_removals();
  void sync_removals_now();
  static constexpr std::chrono::milliseconds kRemovalSyncEvery{5};
  // Delivery thread only.
  bool removals_unsynced_ = false;
  std::chrono::steady_clock::time_point last_removal_sync_{};
  void send_report(const Envelope& env, const std::vector<DsnOutcome>& outcomes,
                   const std::string& path);
  Clock::time_point next_retry_time(std::uint32_t attempts) const;
  // Tells the observer about recipients of a message known only by its envelope (remote
  // answers, expiry, deletion); outside the lock.
  struct Note {
    QueueEvent::Kind kind;
    std::size_t index;
    std::string reply, next_hop;
  };
  void notify(const std::string& id, const Envelope& env, const std::vector<Note>& notes) const;
  void expand(const RemoteDone& d, Envelope& env, std::vector<Note>& notes);
  void flush_events() const;
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
  RemoteDeliverer* remote_ = nullptr;
  RemoteDeliverer* local_remote_ = nullptr;
  RemoteDeliverer* categorizer_ = nullptr;
  Router router_;
  ServerRouter server_router_;
  std::optional<DsnSetup> dsn_;
  QueueEvents* events_ = nullptr;
  EtrnPolicy etrn_policy_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Entry> entries_;
  std::deque<std::string> ready_;
  std::multimap<Clock::time_point, std::string> retry_;  // next attempt -> id
  std::vector<RemoteDone> remote_done_;                   // answers for the delivery thread
  std::vector<Command> commands_;                         // operator actions, likewise
  std::map<std::string, Hop> hops_;
  std::size_t remote_in_flight_ = 0;
  std::size_t arrived_ = 0;        // new mail since the last batch: only it waits for batch_window
  std::size_t gather_until_ = 0;   // while gathering a batch: ready_ size that wakes it
  std::set<std::string> frozen_hops_;
  bool stop_ = false;
  bool started_ = false;
  bool draining_ = false;          // drain(): nothing new starts
  bool drain_cut_ = false;         // cut_drain(): drain() waits no longer
  bool busy_ = false;              // the delivery thread works on what it took (under mu_)
  std::condition_variable idle_cv_;  // drain(): the delivery thread went idle
  QueueCounters counters_;
  std::thread thread_;
};

}  // namespace bh::queue
