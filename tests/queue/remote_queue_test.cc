// The queue manager's remote half with an in-memory RemoteDeliverer: one job per next
// hop, per-recipient results, reports (DSNs) from the null sender, glitch retry then
// backoff, the durable schedule across a restart, expiry, delay notices, per-hop limits.

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>

#include <algorithm>
#include <set>
#include <thread>

#include "queue/queue_file.h"
#include "queue/queue_manager.h"
#include "tests/queue/queue_test_util.h"

namespace bh::queue {
namespace {

using testing::count;
using testing::slurp;
using testing::TempDir;
namespace fs = std::filesystem;
using std::chrono::seconds;

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// Holds every job until the test answers it.
class FakeRemote final : public RemoteDeliverer {
 public:
  void deliver(RemoteJob job, Done done) override {
    std::lock_guard lock(mu_);
    jobs_.push_back({std::move(job), std::move(done)});
  }
  std::size_t size() {
    std::lock_guard lock(mu_);
    return jobs_.size();
  }
  RemoteJob job(std::size_t i) {
    std::lock_guard lock(mu_);
    return jobs_.at(i).first;
  }
  // Answers job i: one status per recipient, in job order ("250", "450", "550", ...).
  void answer_with(std::size_t i, RemoteResult r) {
    Done done;
    {
      std::lock_guard lock(mu_);
      done = std::move(jobs_.at(i).second);
    }
    done(std::move(r));
  }
  void answer(std::size_t i, const std::vector<std::string>& codes, std::optional<Error> hop = {}) {
    Done done;
    RemoteResult r;
    {
      std::lock_guard lock(mu_);
      auto& [job, d] = jobs_.at(i);
      done = std::move(d);
      r.remote_mta = "mx.example.com [192.0.2.25]";
      r.hop_error = hop;
      for (std::size_t k = 0; k < job.recipients.size(); ++k) {
        RemoteRecipientResult rr;
        rr.index = job.recipients[k].index;
        const std::string& c = codes.at(k);
        rr.status = c[0] == '2' ? RemoteStatus::kDelivered
                                : c[0] == '4' ? RemoteStatus::kTransient : RemoteStatus::kPermanent;
        rr.enhanced = std::string(1, c[0]) + ".1.1";
        rr.reply = c + " " + rr.enhanced + " answer for " + job.recipients[k].address;
        r.recipients.push_back(rr);
      }
    }
    done(std::move(r));
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<RemoteJob, Done>> jobs_;
};

Recipient rcpt(const std::string& address, const std::string& mailbox = "",
               std::uint8_t notify = kNotifyUnspecified) {
  Recipient r;
  r.address = address;
  r.mailbox = mailbox;
  r.notify = notify;
  return r;
}

Envelope from(const std::string& sender, std::initializer_list<Recipient> rs) {
  Envelope e = testing::sample(0);
  e.sender = sender;
  e.recipients = rs;
  e.ret = DsnRet::kFull;
  return e;
}

Router domain_router() {
  return [](std::string_view domain) -> Result<RouteChoice> {
    if (domain == "nowhere.test") {
      return permanent_error("5.4.4", "no route to nowhere.test");
    }
    RouteChoice c;
    c.connector = "internet";
    c.domain = std::string(domain);
    c.next_hop = "mx:internet:" + c.domain;
    return c;
  };
}

struct Node {
  Node(const std::string& dir, QueueManagerOptions o)
      : s(dir + "/q"), md(dir + "/mb", "h"), qm(s.store, md, s.clock, o), mb(dir + "/mb") {
    qm.set_remote(&remote, domain_router());
    DsnSetup d;
    d.reporting_mta = "bh.example.org";
    d.random = &s.random;
    d.local_mailbox = [](const std::string& a) {
      return a.ends_with("@example.org") ? a.substr(0, a.find('@')) : std::string();
    };
    qm.set_dsn(d);
  }
  // Reports land in the sender's Maildir (the senders of these tests are local).
  std::vector<std::string> reports(const std::string& mailbox) {
    std::vector<std::string> out;
    std::string dir = mb + "/" + mailbox + "/new";
    if (fs::exists(dir)) {
      for (const auto& e : fs::directory_iterator(dir)) {
        out.push_back(slurp(e.path()));
      }
    }
    return out;
  }
  testing::Store s;
  MaildirDeliverer md;
  FakeRemote remote;
  QueueManager qm;
  std::string mb;
};

QueueManagerOptions fast() {
  QueueManagerOptions o;
  o.batch_window = std::chrono::milliseconds(0);
  o.glitch_retries = 2;
  o.glitch_interval = seconds(60);
  o.retry_initial = seconds(600);
  o.retry_max = seconds(3600);
  o.delay_notice_after = std::chrono::hours(4);
  o.expire_after = std::chrono::hours(8);
  return o;
}

TEST(RemoteQueue, OneJobPerNextHopCarriesAllItsRecipientsAndLocalCopiesStillGo) {
  TempDir t;
  Node n(t.path(), fast());
  auto id = n.s.put("Subject: hi\r\n\r\nbody\r\n",
                    from("alice@example.org", {rcpt("a@one.test"), rcpt("bob@example.org", "bob"),
                                               rcpt("b@one.test"), rcpt("c@two.test")}))
                .value();
  n.qm.start({id});
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 2; }));
  auto j0 = n.remote.job(0), j1 = n.remote.job(1);
  if (j0.next_hop != "mx:internet:one.test") {
    std::swap(j0, j1);
  }
  EXPECT_EQ(j0.next_hop, "mx:internet:one.test");
  ASSERT_EQ(j0.recipients.size(), 2u);
  EXPECT_EQ(j0.recipients[0].address, "a@one.test");
  EXPECT_EQ(j0.recipients[1].address, "b@one.test");
  EXPECT_EQ(j0.recipients[1].index, 2u);
  EXPECT_EQ(j1.recipients.size(), 1u);
  EXPECT_EQ(j0.sender, "alice@example.org");
  EXPECT_EQ(j0.path, n.s.store.path_of(id));
  EXPECT_EQ(j0.body_length, 21u);
  // The local copy does not wait for the remote hops.
  ASSERT_TRUE(wait_until([&] { return count(n.mb + "/bob/new") == 1; }));
  EXPECT_TRUE(fs::exists(n.s.store.path_of(id)));
  n.remote.answer(0, std::vector<std::string>(n.remote.job(0).recipients.size(), "250"));
  n.remote.answer(1, std::vector<std::string>(n.remote.job(1).recipients.size(), "250"));
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 1; }));
  EXPECT_EQ(n.qm.counters().relayed_recipients, 3u);
  EXPECT_FALSE(fs::exists(n.s.store.path_of(id)));
  EXPECT_TRUE(n.reports("alice").empty());  // no NOTIFY=SUCCESS: nothing to report
  n.qm.stop();
}

TEST(RemoteQueue, MixedResultsAreHonouredOneByOne) {
  TempDir t;
  Node n(t.path(), fast());
  auto id = n.s.put("Subject: mixed\r\n\r\nbody\r\n",
                    from("alice@example.org", {rcpt("ok@one.test"), rcpt("later@one.test"),
                                               rcpt("gone@one.test")}))
                .value();
  auto t0 = n.s.clock.now();
  n.qm.start({id});
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 1; }));
  n.remote.answer(0, {"250", "450", "550"});
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 1; }));
  // The 550 is reported at once, from the null sender, with the remote reply in it.
  ASSERT_TRUE(wait_until([&] { return n.reports("alice").size() == 1; }));
  std::string dsn = n.reports("alice")[0];
  EXPECT_NE(dsn.find("Content-Type: multipart/report; report-type=delivery-status"), std::string::npos);
  EXPECT_NE(dsn.find("Final-Recipient: rfc822; gone@one.test"), std::string::npos);
  EXPECT_NE(dsn.find("Action: failed"), std::string::npos);
  EXPECT_NE(dsn.find("550 5.1.1 answer for gone@one.test"), std::string::npos);
  EXPECT_EQ(dsn.find("later@one.test"), std::string::npos);
  EXPECT_EQ(dsn.find("ok@one.test"), std::string::npos);
  auto d = n.qm.show(id);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->envelope.recipients[0].state, RecipientState::kDelivered);
  EXPECT_EQ(d->envelope.recipients[1].state, RecipientState::kPending);
  EXPECT_EQ(d->envelope.recipients[2].state, RecipientState::kFailed);
  EXPECT_EQ(d->summary.state, MessageState::kRetry);
  auto secs = [](Clock::time_point tp) {
    return std::chrono::duration_cast<std::chrono::seconds>(tp.time_since_epoch()).count();
  };
  EXPECT_EQ(d->summary.next_attempt_unix, secs(t0) + 60);  // a glitch retry
  // The retry carries only the recipient still pending.
  n.s.clock.advance(seconds(60));
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 2; }));
  ASSERT_EQ(n.remote.job(1).recipients.size(), 1u);
  EXPECT_EQ(n.remote.job(1).recipients[0].address, "later@one.test");
  n.remote.answer(1, {"250"});
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 1; }));
  EXPECT_EQ(n.reports("alice").size(), 1u);
  n.qm.stop();
}

TEST(RemoteQueue, OurOwnDiagnosticsAreNotLabelledSmtpNorCodedTwice) {
  TempDir t;
  Node n(t.path(), fast());
  auto id = n.s.put("x\r\n", from("alice@example.org", {rcpt("a@nxdomain.test"), rcpt("b@servfail.test")}))
                .value();
  n.qm.start({id});
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 2; }));
  for (std::size_t i = 0; i < 2; ++i) {
    auto job = n.remote.job(i);
    RemoteResult r;
    RemoteRecipientResult rr;
    rr.index = job.recipients[0].index;
    bool nx = job.domain == "nxdomain.test";
    rr.status = nx ? RemoteStatus::kPermanent : RemoteStatus::kTransient;
    rr.enhanced = nx ? "5.1.2" : "4.4.3";
    rr.reply = rr.enhanced + (nx ? " domain nxdomain.test does not exist" : " MX lookup failed");
    r.recipients.push_back(rr);
    r.hop_error = nx ? permanent_error("5.1.2", "no such domain") : transient_error("4.4.3", "dns");
    // Answer through the fake's stored callback by replaying its contract.
    n.remote.answer_with(i, std::move(r));
  }
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 1; }));
  ASSERT_TRUE(wait_until([&] { return n.reports("alice").size() == 1; }));
  auto dsn = n.reports("alice")[0];
  EXPECT_NE(dsn.find("Diagnostic-Code: x-bridgehead; 5.1.2 domain nxdomain.test does not exist"), std::string::npos) << dsn;
  auto d = n.qm.show(id);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->envelope.recipients[1].last_result, "4.4.3 MX lookup failed");
  n.qm.stop();
}

TEST(RemoteQueue, AHopThatIsDownGetsGlitchRetriesThenBackoffAndShowsInTheHopList) {
  TempDir t;
  Node n(t.path(), fast());
  auto id = n.s.put("x\r\n", from("alice@example.org", {rcpt("a@down.test")})).value();
  auto t0 = n.s.clock.now();
  auto secs = [](Clock::time_point tp) {
    return std::chrono::duration_cast<std::chrono::seconds>(tp.time_since_epoch()).count();
  };
  n.qm.start({id});
  // Attempts 1 and 2 are glitch retries (60 s); attempt 3 starts the backoff (600 s).
  std::int64_t expect = secs(t0);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    ASSERT_TRUE(wait_until([&] { return n.remote.size() == static_cast<std::size_t>(attempt); }));
    n.remote.answer(attempt - 1, {"421"}, transient_error("4.4.1", "connection refused by 192.0.2.25"));
    ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == static_cast<std::uint64_t>(attempt); }));
    expect += attempt <= 2 ? 60 : 600;
    EXPECT_EQ(n.qm.list()[0].next_attempt_unix, expect) << "attempt " << attempt;
    auto hops = n.qm.hops();
    ASSERT_EQ(hops.size(), 1u);
    EXPECT_EQ(hops[0].next_hop, "mx:internet:down.test");
    EXPECT_EQ(hops[0].state, "retry");
    EXPECT_EQ(hops[0].messages, 1u);
    EXPECT_EQ(hops[0].failures, static_cast<std::uint64_t>(attempt));
    EXPECT_NE(hops[0].last_error.find("connection refused"), std::string::npos);
    n.s.clock.advance(seconds(attempt <= 2 ? 60 : 600));
  }
  n.qm.stop();
  EXPECT_TRUE(fs::exists(n.s.store.path_of(id)));
}

TEST(RemoteQueue, ARestartInTheMiddleOfTheScheduleKeepsStateAndNextRetry) {
  TempDir t;
  std::string id;
  std::int64_t next = 0;
  {
    Node n(t.path(), fast());
    id = n.s.put("x\r\n", from("alice@example.org", {rcpt("done@one.test"), rcpt("later@one.test")}))
             .value();
    n.qm.start({id});
    ASSERT_TRUE(wait_until([&] { return n.remote.size() == 1; }));
    n.remote.answer(0, {"250", "451"});
    ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 1; }));
    next = n.qm.list()[0].next_attempt_unix;
    n.qm.stop();
  }
  Node n(t.path(), fast());
  auto rep = n.s.store.recover();
  ASSERT_EQ(rep.ready, std::vector<std::string>{id});
  n.qm.start(rep.ready);
  // Not due yet: nothing is sent at start.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(n.remote.size(), 0u);
  auto l = n.qm.list();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].state, MessageState::kRetry);
  EXPECT_EQ(l[0].next_attempt_unix, next);
  EXPECT_EQ(l[0].attempts, 1u);
  n.s.clock.advance(seconds(60));
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 1; }));
  ASSERT_EQ(n.remote.job(0).recipients.size(), 1u);  // the accepted one is not sent again
  EXPECT_EQ(n.remote.job(0).recipients[0].address, "later@one.test");
  n.remote.answer(0, {"250"});
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 1; }));
  n.qm.stop();
  EXPECT_EQ(count(t.path() + "/q/state"), 0u);
}

TEST(RemoteQueue, DelayNoticeOnceThenExpiryBouncesWhatIsLeft) {
  TempDir t;
  Node n(t.path(), fast());
  auto id = n.s.put("x\r\n", from("alice@example.org", {rcpt("slow@one.test")})).value();
  n.qm.start({id});
  std::size_t answered = 0;
  auto queued = [&] { return fs::exists(n.s.store.path_of(id)); };
  // Keep failing softly; the clock moves 1 h per attempt. Expiry comes at 8 h.
  for (int hour = 0; hour < 12 && queued(); ++hour) {
    ASSERT_TRUE(wait_until([&] { return n.remote.size() > answered || !queued(); }));
    if (n.remote.size() > answered) {
      n.remote.answer(answered++, {"451"});
    }
    ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == answered || !queued(); }));
    n.s.clock.advance(std::chrono::hours(1));
  }
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().expired == 1; }));
  EXPECT_EQ(answered, 9u);  // attempts at 0 h .. 8 h; the one at 8 h finds it expired
  ASSERT_TRUE(wait_until([&] { return n.reports("alice").size() == 2; }));
  auto reports = n.reports("alice");
  int delays = 0, failures = 0;
  for (const auto& r : reports) {
    delays += r.find("Action: delayed") != std::string::npos ? 1 : 0;
    failures += r.find("Action: failed") != std::string::npos &&
                r.find("Status: 5.4.7") != std::string::npos ? 1 : 0;
  }
  EXPECT_EQ(delays, 1);
  EXPECT_EQ(failures, 1);
  EXPECT_FALSE(fs::exists(n.s.store.path_of(id)));
  n.qm.stop();
}

TEST(RemoteQueue, NoRouteBouncesAndTheNullSenderNeverGetsAReport) {
  TempDir t;
  Node n(t.path(), fast());
  auto a = n.s.put("x\r\n", from("alice@example.org", {rcpt("x@nowhere.test")})).value();
  auto b = n.s.put("x\r\n", from("", {rcpt("y@nowhere.test"), rcpt("z@one.test")})).value();
  n.qm.start({a, b});
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 1; }));
  n.remote.answer(0, {"550"});
  ASSERT_TRUE(wait_until([&] { return !fs::exists(n.s.store.path_of(a)) && !fs::exists(n.s.store.path_of(b)); }));
  ASSERT_TRUE(wait_until([&] { return n.reports("alice").size() == 1; }));
  EXPECT_NE(n.reports("alice")[0].find("Status: 5.4.4"), std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(n.qm.counters().dsns, 1u);  // none for the message from <>
  n.qm.stop();
}

TEST(RemoteQueue, PerHopConcurrencyHoldsTheRestUntilAConnectionFrees) {
  TempDir t;
  auto o = fast();
  o.max_per_hop = 1;
  Node n(t.path(), o);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(n.s.put("x\r\n", from("alice@example.org", {rcpt("a@one.test")})).value());
  }
  ids.push_back(n.s.put("x\r\n", from("alice@example.org", {rcpt("a@two.test")})).value());
  n.qm.start(ids);
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 2; }));  // one per hop
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(n.remote.size(), 2u);
  auto hops = n.qm.hops();
  ASSERT_EQ(hops.size(), 2u);
  EXPECT_EQ(hops[0].state, "active");
  EXPECT_EQ(hops[0].in_flight, 1u);
  for (std::size_t done = 0; done < 4; ++done) {
    ASSERT_TRUE(wait_until([&] { return n.remote.size() > done; }));
    n.remote.answer(done, {"250"});
  }
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 4; }));
  EXPECT_EQ(n.remote.size(), 4u);
  n.qm.stop();
}

// A freed connection releases one waiting message, not the whole waiting list: each
// release is another read of the queue file and another attempt in the summary (the
// relay benchmark read every queued message about 20 times).
TEST(RemoteQueue, AFreedConnectionReleasesOneWaitingMessageNotAll) {
  TempDir t;
  auto o = fast();
  o.max_per_hop = 2;
  Node n(t.path(), o);
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) {
    ids.push_back(n.s.put("x\r\n", from("alice@example.org", {rcpt("a@one.test")})).value());
  }
  n.qm.start(ids);
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 2; }));
  for (std::size_t done = 0; done < 6; ++done) {
    n.remote.answer(done, {"250"});
    ASSERT_TRUE(wait_until([&] { return n.remote.size() == done + 3; }));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(n.remote.size(), 8u);  // never more than max_per_hop in flight
  auto list = n.qm.list();
  ASSERT_EQ(list.size(), 6u);  // 6 delivered, 2 in flight, 4 waiting
  for (const auto& m : list) {
    EXPECT_LE(m.attempts, 2u) << m.id;  // read when first held, then once when released
  }
  for (std::size_t done = 6; done < 12; ++done) {
    ASSERT_TRUE(wait_until([&] { return n.remote.size() > done; }));
    n.remote.answer(done, {"250"});
  }
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 12; }));
  EXPECT_EQ(n.remote.size(), 12u);
  n.qm.stop();
}

TEST(RemoteQueue, AFrozenNextHopHoldsItsMailAcrossARestartUntilThawed) {
  TempDir t;
  std::string a, b;
  {
    Node n(t.path(), fast());
    n.qm.start({});
    ASSERT_TRUE(n.qm.freeze_hop("mx:internet:one.test", true).ok());
    EXPECT_FALSE(n.qm.freeze_hop("bad\nname", true).ok());
    a = n.s.put("a\r\n", from("alice@example.org", {rcpt("a@one.test")})).value();
    b = n.s.put("b\r\n", from("alice@example.org", {rcpt("b@two.test")})).value();
    n.qm.enqueue(a);
    n.qm.enqueue(b);
    ASSERT_TRUE(wait_until([&] { return n.remote.size() == 1; }));  // two.test only
    EXPECT_EQ(n.remote.job(0).queue_id, b);
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    EXPECT_EQ(n.remote.size(), 1u);
    auto hops = n.qm.hops();
    auto frozen = std::find_if(hops.begin(), hops.end(), [](const HopSummary& h) { return h.next_hop == "mx:internet:one.test"; });
    ASSERT_NE(frozen, hops.end());
    EXPECT_EQ(frozen->state, "frozen");
    EXPECT_EQ(frozen->messages, 1u);
    n.remote.answer(0, {"250"});
    ASSERT_TRUE(wait_until([&] { return !fs::exists(n.s.store.path_of(b)); }));
    n.qm.stop();
  }
  Node n(t.path(), fast());
  auto rep = n.s.store.recover();
  ASSERT_EQ(rep.ready, std::vector<std::string>{a});
  n.qm.start(rep.ready);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(n.remote.size(), 0u);  // still frozen after the restart
  EXPECT_FALSE(n.qm.freeze_hop("mx:internet:two.test", false).ok());  // was never frozen
  ASSERT_TRUE(n.qm.freeze_hop("mx:internet:one.test", false).ok());
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 1; }));
  EXPECT_EQ(n.remote.job(0).queue_id, a);
  n.remote.answer(0, {"250"});
  ASSERT_TRUE(wait_until([&] { return !fs::exists(n.s.store.path_of(a)); }));
  n.qm.stop();
}

// Mailboxes homed on other nodes (Recipient::home_server) are routed by the server
// router, not by their (local) domain; without a route they wait, and a new routing
// table (reroute) sends them at once, with their home server and the XEXCH50 blob the
// message arrived with in the job.
TEST(RemoteQueue, HomeServerRecipientsWaitForARouteAndGoWhenTheTableChanges) {
  TempDir t;
  Node n(t.path(), fast());
  std::atomic<bool> reachable{false};
  std::vector<std::string> asked;
  std::mutex asked_mu;
  n.qm.set_server_router([&](std::string_view home) -> Result<RouteChoice> {
    {
      std::lock_guard lock(asked_mu);
      asked.emplace_back(home);
    }
    if (!reachable) {
      return transient_error("4.4.4", "no live route to routing group rg2");
    }
    RouteChoice c;
    c.connector = "node." + std::string(home);
    c.next_hop = "smarthost:" + c.connector;
    return c;
  });
  Recipient carol = rcpt("carol@example.org");
  carol.home_server = "node3";
  Envelope e = from("alice@example.org", {carol, rcpt("bob@one.test")});
  e.xexch50 = std::string("\0\0\0\0\0\0\0\0\0\0\0\0", 12);
  auto id = n.s.put("x\r\n", e).value();
  n.qm.start({id});
  // bob goes at once by his domain; carol has no route yet.
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 1; }));
  EXPECT_EQ(n.remote.job(0).next_hop, "mx:internet:one.test");
  n.remote.answer(0, {"250"});
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 1; }));
  {
    std::lock_guard lock(asked_mu);
    EXPECT_EQ(asked, std::vector<std::string>{"node3"});
  }
  EXPECT_EQ(n.qm.list().at(0).last_error.rfind("4.4.4", 0), 0u) << n.qm.list().at(0).last_error;
  // A new table with a route: due now, no clock advance.
  reachable = true;
  EXPECT_EQ(n.qm.reroute(), 1u);
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 2; }));
  RemoteJob j = n.remote.job(1);
  EXPECT_EQ(j.next_hop, "smarthost:node.node3");
  ASSERT_EQ(j.recipients.size(), 1u);
  EXPECT_EQ(j.recipients[0].address, "carol@example.org");
  EXPECT_EQ(j.recipients[0].home_server, "node3");
  EXPECT_FALSE(j.recipients[0].expanded);
  EXPECT_EQ(j.xexch50, e.xexch50);
  n.remote.answer(1, {"250"});
  ASSERT_TRUE(wait_until([&] { return !fs::exists(n.s.store.path_of(id)); }));
  EXPECT_EQ(n.qm.reroute(), 0u);  // nothing waits any more
  n.qm.stop();
}

TEST(RemoteQueue, OperatorRetryFreezeThawAndDeleteSurviveARestart) {
  TempDir t;
  std::string a, b, c;
  {
    Node n(t.path(), fast());
    a = n.s.put("a\r\n", from("alice@example.org", {rcpt("a@one.test")})).value();
    b = n.s.put("b\r\n", from("alice@example.org", {rcpt("b@one.test")})).value();
    c = n.s.put("c\r\n", from("alice@example.org", {rcpt("c@two.test")})).value();
    n.qm.start({a, b, c});
    ASSERT_TRUE(wait_until([&] { return n.remote.size() == 3; }));
    for (std::size_t i = 0; i < 3; ++i) {
      n.remote.answer(i, {"451"});
    }
    ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 3; }));
    // Retry now: no clock advance needed.
    ASSERT_TRUE(n.qm.act(a, QueueManager::Action::kRetry).ok());
    ASSERT_TRUE(wait_until([&] { return n.remote.size() == 4; }));
    EXPECT_EQ(n.remote.job(3).queue_id, a);
    EXPECT_FALSE(n.qm.act(a, QueueManager::Action::kFreeze).ok());  // in delivery right now
    n.remote.answer(3, {"451"});
    ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 4; }));
    // A whole hop: everything waiting for two.test.
    EXPECT_EQ(n.qm.retry_hop("mx:internet:two.test"), 1u);
    ASSERT_TRUE(wait_until([&] { return n.remote.size() == 5; }));
    EXPECT_EQ(n.remote.job(4).queue_id, c);
    n.remote.answer(4, {"451"});
    ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 5; }));
    ASSERT_TRUE(n.qm.act(b, QueueManager::Action::kFreeze).ok());
    EXPECT_FALSE(n.qm.act(b, QueueManager::Action::kRetry).ok());  // frozen: thaw first
    EXPECT_FALSE(n.qm.act("NOSUCHID", QueueManager::Action::kFreeze).ok());
    EXPECT_FALSE(n.qm.act("NOSUCHID", QueueManager::Action::kFreeze).error().transient());
    ASSERT_TRUE(n.qm.act(c, QueueManager::Action::kDeleteWithReport).ok());
    EXPECT_FALSE(fs::exists(n.s.store.path_of(c)));
    ASSERT_TRUE(wait_until([&] { return n.reports("alice").size() == 1; }));
    EXPECT_NE(n.reports("alice")[0].find("deleted from the queue by the administrator"), std::string::npos);
    ASSERT_TRUE(n.qm.act(a, QueueManager::Action::kDelete).ok());
    EXPECT_EQ(n.qm.counters().deleted, 2u);
    n.qm.stop();
  }
  // After a restart b is still frozen: far past its retry time nothing is sent.
  Node n(t.path(), fast());
  auto rep = n.s.store.recover();
  ASSERT_EQ(rep.ready, std::vector<std::string>{b});
  n.qm.start(rep.ready);
  n.s.clock.advance(std::chrono::hours(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(n.remote.size(), 0u);
  ASSERT_EQ(n.qm.list().size(), 1u);
  EXPECT_EQ(n.qm.list()[0].state, MessageState::kFrozen);
  ASSERT_TRUE(n.qm.act(b, QueueManager::Action::kThaw).ok());
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 1; }));
  n.remote.answer(0, {"250"});
  ASSERT_TRUE(wait_until([&] { return !fs::exists(n.s.store.path_of(b)); }));
  n.qm.stop();
}

TEST(RemoteQueue, TheConnectorsOwnConnectionLimitIsHonoured) {
  TempDir t;
  auto o = fast();
  o.max_per_hop = 10;
  Node n(t.path(), o);
  n.qm.set_remote(&n.remote, [](std::string_view domain) -> Result<RouteChoice> {
    RouteChoice c;
    c.connector = "narrow";
    c.domain = std::string(domain);
    c.next_hop = "smarthost:narrow";
    c.max_connections = 2;
    return c;
  });
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(n.s.put("x\r\n", from("alice@example.org", {rcpt("a@one.test")})).value());
  }
  n.qm.start(ids);
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(n.remote.size(), 2u);
  for (std::size_t done = 0; done < 5; ++done) {
    ASSERT_TRUE(wait_until([&] { return n.remote.size() > done; }));
    n.remote.answer(done, {"250"});
  }
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().relayed_recipients == 5; }));
  n.qm.stop();
}

TEST(RemoteQueue, LocalMailboxesGoByLmtpOneRecipientPerMailbox) {
  TempDir t;
  auto o = fast();
  testing::Store s(t.path() + "/q");
  MaildirDeliverer md(t.path() + "/mb", "h");
  FakeRemote lmtp;
  QueueManager qm(s.store, md, s.clock, o);
  qm.set_local_remote(&lmtp);
  auto id = s.put("x\r\n", from("s@example.net", {rcpt("bob@example.org", "bob"),
                                                    rcpt("Bob.Alias@example.org", "bob"),
                                                    rcpt("alice@example.org", "alice")}))
                .value();
  qm.start({id});
  ASSERT_TRUE(wait_until([&] { return lmtp.size() == 1; }));
  auto job = lmtp.job(0);
  EXPECT_EQ(job.next_hop, "lmtp");
  ASSERT_EQ(job.recipients.size(), 2u);  // bob once, alice
  EXPECT_EQ(job.recipients[0].address, "bob@example.org");
  EXPECT_EQ(job.recipients[1].address, "alice@example.org");
  lmtp.answer(0, {"250", "452"});
  ASSERT_TRUE(wait_until([&] { return qm.counters().deferred == 1; }));
  auto d = qm.show(id);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->envelope.recipients[0].state, RecipientState::kDelivered);
  EXPECT_EQ(d->envelope.recipients[1].state, RecipientState::kDelivered);  // shares bob's copy
  EXPECT_EQ(d->envelope.recipients[2].state, RecipientState::kPending);
  EXPECT_EQ(count(t.path() + "/mb"), 0u);  // nothing written as Maildir
  s.clock.advance(seconds(60));
  ASSERT_TRUE(wait_until([&] { return lmtp.size() == 2; }));
  ASSERT_EQ(lmtp.job(1).recipients.size(), 1u);
  EXPECT_EQ(lmtp.job(1).recipients[0].address, "alice@example.org");
  lmtp.answer(1, {"250"});
  ASSERT_TRUE(wait_until([&] { return !fs::exists(s.store.path_of(id)); }));
  qm.stop();
}

Recipient to_categorize(const std::string& address, std::uint8_t notify = kNotifyUnspecified) {
  Recipient r = rcpt(address, "", notify);
  r.categorize = true;
  return r;
}

RemoteResult expanded(std::size_t index, std::vector<std::pair<std::string, std::string>> to) {
  RemoteResult r;
  RemoteRecipientResult rr;
  rr.index = index;
  rr.status = RemoteStatus::kDelivered;
  rr.enhanced = "2.1.5";
  for (auto& [address, mailbox] : to) {
    Recipient n;
    n.address = address;
    n.mailbox = mailbox;
    rr.expanded.push_back(n);
  }
  r.recipients.push_back(rr);
  return r;
}

// A group goes to the categorizer first; what it becomes is kept in state/<id> before any
// of it is tried, delivered at once (local copies and relayed addresses), once each.
TEST(RemoteQueue, AGroupIsExpandedByTheCategorizerThenDeliveredOnceEachAcrossARestart) {
  TempDir t;
  std::string id;
  {
    Node n(t.path(), fast());
    FakeRemote cat;
    n.qm.set_categorizer(&cat);
    id = n.s.put("x\r\n", from("s@example.net", {rcpt("bob@example.org", "bob"),
                                                   to_categorize("staff@example.org", kNotifyFailure)}))
             .value();
    n.qm.start({id});
    ASSERT_TRUE(wait_until([&] { return cat.size() == 1; }));
    auto job = cat.job(0);
    EXPECT_EQ(job.next_hop, "categorizer");
    ASSERT_EQ(job.recipients.size(), 1u);
    EXPECT_EQ(job.recipients[0].address, "staff@example.org");
    ASSERT_TRUE(wait_until([&] { return count(t.path() + "/mb/bob/new") == 1; }));  // not held back
    cat.answer_with(0, expanded(1, {{"carol@example.org", "carol"},
                                    {"BOB@example.org", "bob"},  // already a recipient
                                    {"x@partner.example", ""},
                                    {"X@Partner.example", ""}}));
    ASSERT_TRUE(wait_until([&] { return n.remote.size() == 1; }));
    EXPECT_EQ(n.remote.job(0).next_hop, "mx:internet:partner.example");
    ASSERT_EQ(n.remote.job(0).recipients.size(), 1u);
    EXPECT_EQ(n.remote.job(0).recipients[0].orcpt, "rfc822;staff@example.org");
    EXPECT_EQ(n.remote.job(0).recipients[0].notify, kNotifyFailure);
    ASSERT_TRUE(wait_until([&] { return count(t.path() + "/mb/carol/new") == 1; }));
    auto d = n.qm.show(id);
    ASSERT_TRUE(d.has_value());
    ASSERT_EQ(d->envelope.recipients.size(), 4u);
    EXPECT_EQ(d->envelope.recipients[1].state, RecipientState::kDelivered);
    EXPECT_EQ(d->envelope.recipients[1].last_result.rfind("2.1.5 expanded by the categorizer into 2", 0), 0u)
        << d->envelope.recipients[1].last_result;
    auto st = n.s.store.load_state(id);
    ASSERT_TRUE(st.ok() && st->has_value());
    EXPECT_EQ((*st)->added.size(), 2u);
    EXPECT_EQ(n.qm.counters().expanded_recipients, 1u);
    n.qm.stop();  // the relayed recipient is still out
  }
  // Restart: the expansion is not run again; only the relayed recipient is left.
  Node n(t.path(), fast());
  FakeRemote cat;
  n.qm.set_categorizer(&cat);
  n.qm.start({id});
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 1; }));
  EXPECT_EQ(cat.size(), 0u);
  ASSERT_EQ(n.remote.job(0).recipients.size(), 1u);
  EXPECT_EQ(n.remote.job(0).recipients[0].address, "x@partner.example");
  n.remote.answer(0, {"250"});
  ASSERT_TRUE(wait_until([&] { return !fs::exists(n.s.store.path_of(id)); }));
  EXPECT_EQ(count(t.path() + "/mb/carol/new"), 1u);
  EXPECT_EQ(count(t.path() + "/mb/bob/new"), 1u);
  n.qm.stop();
}

// A group and a relayed recipient in one attempt: whichever job answers last, the members
// are tried at once (no clock advance here: a retry would never come).
TEST(RemoteQueue, ExpandedRecipientsAreDueAtOnceWhenARelayJobAnswersLast) {
  TempDir t;
  Node n(t.path(), fast());
  FakeRemote cat;
  n.qm.set_categorizer(&cat);
  auto id = n.s.put("x\r\n", from("s@example.net", {to_categorize("staff@example.org"),
                                                    rcpt("x@remote.example")}))
                .value();
  n.qm.start({id});
  ASSERT_TRUE(wait_until([&] { return cat.size() == 1 && n.remote.size() == 1; }));
  cat.answer_with(0, expanded(0, {{"carol@example.org", "carol"}}));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the categorizer answers first
  n.remote.answer(0, {"250"});
  ASSERT_TRUE(wait_until([&] { return count(t.path() + "/mb/carol/new") == 1; }));
  ASSERT_TRUE(wait_until([&] { return !fs::exists(n.s.store.path_of(id)); }));
  n.qm.stop();
}

// The directory down: the group waits and is categorized again on the retry schedule; a
// permanent answer bounces it with a report.
TEST(RemoteQueue, ACategorizerFaultKeepsTheGroupQueuedAndAPermanentOneBounces) {
  TempDir t;
  Node n(t.path(), fast());
  FakeRemote cat;
  n.qm.set_categorizer(&cat);
  auto id = n.s.put("x\r\n", from("sender@example.org", {to_categorize("staff@example.org"),
                                                          to_categorize("gone@example.org")}))
                .value();
  n.qm.start({id});
  ASSERT_TRUE(wait_until([&] { return cat.size() == 1; }));
  cat.answer(0, {"450", "450"});
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 1; }));
  EXPECT_TRUE(fs::exists(n.s.store.path_of(id)));
  n.s.clock.advance(seconds(60));
  ASSERT_TRUE(wait_until([&] { return cat.size() == 2; }));
  ASSERT_EQ(cat.job(1).recipients.size(), 2u);
  RemoteResult r = expanded(0, {{"carol@example.org", "carol"}});
  RemoteRecipientResult gone;
  gone.index = 1;
  gone.status = RemoteStatus::kPermanent;
  gone.enhanced = "5.1.1";
  gone.reply = "no such recipient";
  r.recipients.push_back(gone);
  cat.answer_with(1, r);
  ASSERT_TRUE(wait_until([&] { return !fs::exists(n.s.store.path_of(id)); }));
  EXPECT_EQ(count(t.path() + "/mb/carol/new"), 1u);
  ASSERT_TRUE(wait_until([&] { return n.reports("sender").size() == 1; }));
  auto reports = n.reports("sender");
  EXPECT_NE(reports[0].find("gone@example.org"), std::string::npos);
  EXPECT_NE(reports[0].find("5.1.1"), std::string::npos);
  n.qm.stop();
}

// Shutdown tests: a node with one message whose job (to one.test) is out, never answered
// unless the test does. Returns its queue id.
std::string start_with_one_job_out(Node& n) {
  auto id = n.s.put("x\r\n", from("s@example.net", {rcpt("a@one.test")})).value();
  n.qm.start({id});
  EXPECT_TRUE(wait_until([&] { return n.remote.size() == 1; }));
  return id;
}

// Shutdown: drain() starts nothing new, waits for the job in flight and records its
// answer (the message is done, not sent again after a restart); one never answered makes
// it give up after its limit.
TEST(RemoteQueue, DrainWaitsForTheJobsInFlightAndStartsNoNewOne) {
  TempDir t;
  Node n(t.path(), fast());
  auto first = start_with_one_job_out(n);
  ASSERT_EQ(n.remote.size(), 1u);
  auto drained = std::async(std::launch::async, [&] { return n.qm.drain(std::chrono::seconds(20)); });
  // New mail while draining: queued, not started.
  auto second = n.s.put("y\r\n", from("s@example.net", {rcpt("b@two.test")})).value();
  n.qm.enqueue(second);
  EXPECT_EQ(drained.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  n.remote.answer(0, {"250"});
  ASSERT_EQ(drained.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(drained.get());
  // The answer is recorded before drain() returns: the first message is gone.
  EXPECT_FALSE(fs::exists(n.s.store.path_of(first)));
  EXPECT_EQ(n.qm.counters().delivered_messages, 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(n.remote.size(), 1u);  // the second never started
  EXPECT_TRUE(fs::exists(n.s.store.path_of(second)));
  n.qm.stop();
}

TEST(RemoteQueue, DrainGivesUpAfterItsLimitWhenAJobIsNeverAnswered) {
  TempDir t;
  Node n(t.path(), fast());
  auto id = start_with_one_job_out(n);
  ASSERT_EQ(n.remote.size(), 1u);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(n.qm.drain(std::chrono::milliseconds(200)));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(200));
  n.qm.stop();
  EXPECT_TRUE(fs::exists(n.s.store.path_of(id)));  // stays queued for the next start
}

// The operator's second SIGTERM: cut_drain() ends the wait at once, long before the
// limit; the job still out stays queued.
TEST(RemoteQueue, ACutDrainReturnsAtOnceAndTheMessageStaysQueued) {
  TempDir t;
  Node n(t.path(), fast());
  auto id = start_with_one_job_out(n);
  ASSERT_EQ(n.remote.size(), 1u);
  auto drained = std::async(std::launch::async, [&] { return n.qm.drain(std::chrono::seconds(60)); });
  EXPECT_EQ(drained.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  n.qm.cut_drain();
  ASSERT_EQ(drained.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_FALSE(drained.get());
  n.qm.stop();
  EXPECT_TRUE(fs::exists(n.s.store.path_of(id)));
}

// With a directory categorizer, a report to a sender of a local domain is not looked up
// on the delivery thread (DsnSetup::local_mailbox is never asked): it is queued for the
// categorizer hop, waits there while the directory is down, and is delivered to what the
// categorizer resolves the address to.
TEST(RemoteQueue, AReportToALocalSenderIsResolvedByTheCategorizerAndWaitsForIt) {
  TempDir t;
  Node n(t.path(), fast());
  FakeRemote cat;
  n.qm.set_categorizer(&cat);
  std::atomic<int> sync_lookups{0};
  DsnSetup d;
  d.reporting_mta = "bh.example.org";
  d.random = &n.s.random;
  d.categorize = [](const std::string& a) { return a.ends_with("@example.org"); };
  d.local_mailbox = [&sync_lookups](const std::string&) {
    ++sync_lookups;
    return std::string("wrong");
  };
  n.qm.set_dsn(d);
  auto id = n.s.put("Subject: bounce me\r\n\r\nx\r\n",
                    from("sender@example.org", {rcpt("x@remote.example")}))
                .value();
  n.qm.start({id});
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 1; }));
  n.remote.answer(0, {"550"});
  // The report: spooled, then handed to the categorizer with its one recipient.
  ASSERT_TRUE(wait_until([&] { return cat.size() == 1; }));
  EXPECT_EQ(cat.job(0).next_hop, "categorizer");
  EXPECT_EQ(cat.job(0).sender, "");
  ASSERT_EQ(cat.job(0).recipients.size(), 1u);
  EXPECT_EQ(cat.job(0).recipients[0].address, "sender@example.org");
  // The directory is down: the report waits in the queue.
  cat.answer(0, {"450"});
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred >= 1; }));
  EXPECT_TRUE(n.reports("sender").empty());
  EXPECT_EQ(n.qm.counters().dsns, 1u);
  n.s.clock.advance(seconds(60));
  ASSERT_TRUE(wait_until([&] { return cat.size() == 2; }));
  // Back: the address is a mailbox (here with another folder name, as an alternate
  // recipient would be); the report lands there.
  cat.answer_with(1, expanded(0, {{"sender@example.org", "sender-folder"}}));
  ASSERT_TRUE(wait_until([&] { return count(t.path() + "/mb/sender-folder/new") == 1; }));
  std::string report;
  for (const auto& e : fs::directory_iterator(t.path() + "/mb/sender-folder/new")) {
    report = slurp(e.path());
  }
  EXPECT_NE(report.find("multipart/report"), std::string::npos);
  EXPECT_NE(report.find("x@remote.example"), std::string::npos);
  EXPECT_EQ(sync_lookups.load(), 0);
  EXPECT_FALSE(fs::exists(t.path() + "/mb/wrong"));
  n.qm.stop();
}

// Without a categorizer (a node whose directory section was removed) the group waits.
TEST(RemoteQueue, WithoutACategorizerTheGroupWaitsAndIsNotRoutedByItsDomain) {
  TempDir t;
  Node n(t.path(), fast());
  auto id = n.s.put("x\r\n", from("s@example.net", {to_categorize("staff@example.org")})).value();
  n.qm.start({id});
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 1; }));
  EXPECT_EQ(n.remote.size(), 0u);
  auto d = n.qm.show(id);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->summary.last_error.rfind("4.3.5", 0), 0u) << d->summary.last_error;
  n.qm.stop();
}

EtrnRequest etrn_req(EtrnRequest::Kind kind, std::string name) {
  EtrnRequest r;
  r.kind = kind;
  r.name = std::move(name);
  return r;
}

// RFC 1985 ETRN: mail waiting for a retry in the named domain, its subdomains or the
// named next hop is sent now; the rest keeps its schedule.
TEST(RemoteQueue, EtrnMakesTheMatchingDomainsMailDueNow) {
  TempDir t;
  Node n(t.path(), fast());
  using K = EtrnRequest::Kind;
  auto a = n.s.put("a\r\n", from("alice@example.org", {rcpt("a@one.test")})).value();
  auto b = n.s.put("b\r\n", from("alice@example.org", {rcpt("b@Sub.One.Test")})).value();
  auto c = n.s.put("c\r\n", from("alice@example.org", {rcpt("c@two.test")})).value();
  auto d = n.s.put("d\r\n", from("alice@example.org", {rcpt("d@xone.test")})).value();
  n.qm.start({a, b, c, d});
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 4; }));
  for (std::size_t i = 0; i < 4; ++i) {
    n.remote.answer(i, {"451"});
  }
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 4; }));
  auto ids_from = [&](std::size_t first) {
    std::set<std::string> ids;
    for (std::size_t i = first; i < n.remote.size(); ++i) {
      ids.insert(n.remote.job(i).queue_id);
    }
    return ids;
  };

  // Exactly one.test: only a (not sub.one.test, not xone.test). No clock advance needed.
  auto r = n.qm.etrn(etrn_req(K::kDomain, "one.test"));
  EXPECT_EQ(r.outcome, EtrnOutcome::kStarted);
  EXPECT_EQ(r.messages, 1u);
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 5; }));
  EXPECT_EQ(ids_from(4), std::set<std::string>{a});
  // While a is in delivery, a second ETRN finds it on its way: still "started".
  EXPECT_EQ(n.qm.etrn(etrn_req(K::kDomain, "one.test")).outcome, EtrnOutcome::kStarted);
  n.remote.answer(4, {"451"});
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 5; }));

  // @one.test: one.test and below it, never xone.test.
  r = n.qm.etrn(etrn_req(K::kSubdomains, "one.test"));
  EXPECT_EQ(r.outcome, EtrnOutcome::kStarted);
  EXPECT_EQ(r.messages, 2u);
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 7; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(n.remote.size(), 7u);
  EXPECT_EQ(ids_from(5), (std::set<std::string>{a, b}));
  n.remote.answer(5, {"451"});
  n.remote.answer(6, {"451"});
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 7; }));

  // #queue: a next hop by name, in any case.
  r = n.qm.etrn(etrn_req(K::kQueue, "mx:internet:two.test"));
  EXPECT_EQ(r.outcome, EtrnOutcome::kStarted);
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 8; }));
  EXPECT_EQ(n.remote.job(7).queue_id, c);
  n.remote.answer(7, {"250"});
  ASSERT_TRUE(wait_until([&] { return !fs::exists(n.s.store.path_of(c)); }));

  // Nothing queued: a domain without mail, a delivered one, an unknown queue.
  EXPECT_EQ(n.qm.etrn(etrn_req(K::kDomain, "three.test")).outcome, EtrnOutcome::kNothingQueued);
  EXPECT_EQ(n.qm.etrn(etrn_req(K::kDomain, "two.test")).outcome, EtrnOutcome::kNothingQueued);
  EXPECT_EQ(n.qm.etrn(etrn_req(K::kSubdomains, "test")).outcome, EtrnOutcome::kStarted);
  ASSERT_TRUE(wait_until([&] { return n.remote.size() == 11; }));  // a, b, d
  for (std::size_t i = 8; i < 11; ++i) {
    n.remote.answer(i, {"451"});
  }
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 10; }));
  EXPECT_EQ(n.qm.etrn(etrn_req(K::kQueue, "mx:internet:nowhere.test")).outcome,
            EtrnOutcome::kNothingQueued);

  // A frozen message is never touched; a frozen next hop makes its mail "unable" (458).
  ASSERT_TRUE(n.qm.act(b, QueueManager::Action::kFreeze).ok());
  EXPECT_EQ(n.qm.etrn(etrn_req(K::kDomain, "sub.one.test")).outcome, EtrnOutcome::kNothingQueued);
  ASSERT_TRUE(n.qm.freeze_hop("mx:internet:xone.test", true).ok());
  r = n.qm.etrn(etrn_req(K::kQueue, "MX:Internet:XONE.test"));
  EXPECT_EQ(r.outcome, EtrnOutcome::kUnable);
  EXPECT_FALSE(r.reason.empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(n.remote.size(), 11u);
  // Out-of-range names are refused whatever the policy.
  EXPECT_EQ(n.qm.etrn(etrn_req(K::kDomain, "")).outcome, EtrnOutcome::kNotAllowed);
  EXPECT_EQ(n.qm.etrn(etrn_req(K::kDomain, "a\nb")).outcome, EtrnOutcome::kNotAllowed);
  n.qm.stop();
  EXPECT_EQ(n.qm.etrn(etrn_req(K::kDomain, "one.test")).outcome, EtrnOutcome::kUnable);
}

TEST(RemoteQueue, EtrnPolicyDecidesWhichNodesWeQueueFor) {
  TempDir t;
  using K = EtrnRequest::Kind;
  fs::create_directories(t.path() + "/1");
  fs::create_directories(t.path() + "/2");
  {
    Node n(t.path() + "/1", fast());
    n.qm.set_etrn_policy(
        [](const EtrnRequest& r) { return r.kind != K::kQueue && r.name == "one.test"; });
    n.qm.start({});
    auto r = n.qm.etrn(etrn_req(K::kDomain, "two.test"));
    EXPECT_EQ(r.outcome, EtrnOutcome::kNotAllowed);
    EXPECT_FALSE(r.reason.empty());
    EXPECT_EQ(n.qm.etrn(etrn_req(K::kQueue, "one.test")).outcome, EtrnOutcome::kNotAllowed);
    EXPECT_EQ(n.qm.etrn(etrn_req(K::kDomain, "one.test")).outcome, EtrnOutcome::kNothingQueued);
    n.qm.stop();
  }
  // Without a policy and without remote delivery, a node queues for nobody.
  testing::Store s(t.path() + "/2/q");
  MaildirDeliverer md(t.path() + "/2/mb", "h");
  QueueManager qm(s.store, md, s.clock, fast());
  qm.start({});
  EXPECT_EQ(qm.etrn(etrn_req(K::kDomain, "one.test")).outcome, EtrnOutcome::kNotAllowed);
  qm.stop();
}

}  // namespace
}  // namespace bh::queue
