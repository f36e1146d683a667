// QueueManager end to end with temp directories: store -> manager -> Maildir.

#include "queue/queue_manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "queue/queue_file.h"
#include "tests/queue/queue_test_util.h"

namespace bh::queue {
namespace {

using testing::count;
using testing::slurp;
using testing::TempDir;
namespace fs = std::filesystem;

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

Recipient rcpt(const std::string& address, const std::string& mailbox) {
  Recipient r;
  r.address = address;
  r.mailbox = mailbox;
  return r;
}

Envelope to(std::initializer_list<Recipient> rs) {
  Envelope e = testing::sample(0);
  e.recipients = rs;
  return e;
}

struct Node {
  explicit Node(const std::string& dir, QueueManagerOptions o = {})
      : s(dir + "/q"), md(dir + "/mb", "h"), qm(s.store, md, s.clock, o), mb(dir + "/mb") {}
  testing::Store s;
  MaildirDeliverer md;
  QueueManager qm;
  std::string mb;
};

TEST(QueueManager, DeliversOneCopyPerMailboxAndRemovesTheQueueFile) {
  TempDir t;
  Node n(t.path());
  std::string body = "Received: from x\r\nSubject: t\r\n\r\nbody";
  body += std::string("\0\xff\r\n", 4);
  auto id = n.s.put(body, to({rcpt("alice@example.org", "alice"), rcpt("bob@example.org", "bob"),
                               rcpt("Alice@example.org", "alice")}))
                .value();
  std::atomic<int> delivered{0};
  std::mutex mu;
  std::vector<std::string> paths;
  n.qm.set_delivered_hook([&](const std::string& qid, const std::string&, const std::string& path) {
    EXPECT_EQ(qid, id);
    std::lock_guard l(mu);
    paths.push_back(path);
    ++delivered;
  });
  n.qm.start({});
  n.qm.enqueue(id);
  n.qm.enqueue(id);  // idempotent
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 1; }));
  n.qm.stop();
  EXPECT_EQ(delivered.load(), 2);
  EXPECT_EQ(count(n.mb + "/alice/new"), 1u);
  EXPECT_EQ(count(n.mb + "/bob/new"), 1u);
  for (const auto& p : paths) {
    EXPECT_EQ(slurp(p), body);
  }
  EXPECT_FALSE(fs::exists(n.s.store.path_of(id)));
  EXPECT_TRUE(n.qm.list().empty());
  EXPECT_FALSE(n.qm.show(id).has_value());
  auto c = n.qm.counters();
  EXPECT_EQ(c.enqueued, 1u);
  EXPECT_EQ(c.delivered_copies, 2u);
  EXPECT_EQ(c.in_queue, 0u);
  EXPECT_EQ(c.deferred, 0u);
}

TEST(QueueManager, RecipientsWithoutAMailboxFailPermanently) {
  TempDir t;
  Node n(t.path());
  auto id = n.s.put("x\r\n", to({rcpt("alice@example.org", "alice"), rcpt("far@remote.example", "")}))
                .value();
  n.qm.start({id});
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 1; }));
  n.qm.stop();
  EXPECT_EQ(count(n.mb + "/alice/new"), 1u);
  EXPECT_EQ(n.qm.counters().failed_recipients, 1u);
  EXPECT_EQ(n.qm.counters().deferred, 0u);
  EXPECT_FALSE(fs::exists(n.s.store.path_of(id)));
}

TEST(QueueManager, InvalidMailboxNameFailsWithoutRetry) {
  TempDir t;
  Node n(t.path());
  auto id = n.s.put("x\r\n", to({rcpt("evil@example.org", "../../etc")})).value();
  n.qm.start({id});
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 1; }));
  n.qm.stop();
  EXPECT_EQ(n.qm.counters().failed_recipients, 1u);
  EXPECT_EQ(n.qm.counters().deferred, 0u);
  EXPECT_FALSE(fs::exists(t.path() + "/etc"));
}

TEST(QueueManager, TransientFailureIsRetriedWithBackoffOnTheInjectedClock) {
  TempDir t;
  QueueManagerOptions o;
  o.retry_initial = std::chrono::seconds(1);
  o.retry_max = std::chrono::seconds(3);
  Node n(t.path(), o);
  auto id = n.s.put("x\r\n").value();
  testing::spit(n.mb, "a file in the way of the mailbox root");
  auto t0 = n.s.clock.now();
  n.qm.start({id});
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 1; }));
  auto l = n.qm.list();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].id, id);
  EXPECT_EQ(l[0].state, MessageState::kRetry);
  EXPECT_EQ(l[0].attempts, 1u);
  EXPECT_EQ(l[0].sender, "s@example.net");
  EXPECT_EQ(l[0].size, 3u);
  EXPECT_EQ(l[0].last_error.substr(0, 5), "4.3.0");
  auto secs = [](Clock::time_point tp) {
    return std::chrono::duration_cast<std::chrono::seconds>(tp.time_since_epoch()).count();
  };
  EXPECT_EQ(l[0].next_attempt_unix, secs(t0) + 1);
  auto d = n.qm.show(id);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->envelope.recipients[0].state, RecipientState::kPending);
  EXPECT_FALSE(d->envelope.recipients[0].last_result.empty());
  EXPECT_EQ(d->envelope.envid, "ENV1");
  // Nothing happens until the injected clock passes the retry time.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(n.qm.counters().deferred, 1u);
  // Second failure: the delay doubles; third: capped at retry_max.
  n.s.clock.advance(std::chrono::seconds(1));
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 2; }));
  EXPECT_EQ(n.qm.list()[0].next_attempt_unix, secs(t0) + 1 + 2);
  n.s.clock.advance(std::chrono::seconds(2));
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 3; }));
  EXPECT_EQ(n.qm.list()[0].next_attempt_unix, secs(t0) + 3 + 3);
  EXPECT_EQ(n.qm.list()[0].attempts, 3u);
  EXPECT_TRUE(fs::exists(n.s.store.path_of(id)));  // stays queued meanwhile
  fs::remove(n.mb);
  n.s.clock.advance(std::chrono::seconds(3));
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 1; }));
  n.qm.stop();
  EXPECT_EQ(count(n.mb + "/user0/new"), 1u);
  EXPECT_EQ(count(n.mb + "/user1/new"), 1u);
  EXPECT_FALSE(fs::exists(n.s.store.path_of(id)));
}

TEST(QueueManager, PartialFailureDeliversTheOthersOnceAndRetriesOnlyTheRest) {
  TempDir t;
  QueueManagerOptions o;
  o.retry_initial = std::chrono::seconds(1);
  Node n(t.path(), o);
  auto id = n.s.put("x\r\n", to({rcpt("alice@example.org", "alice"), rcpt("bob@example.org", "bob")}))
                .value();
  fs::create_directories(n.mb);
  testing::spit(n.mb + "/bob", "a file where bob's Maildir should be");
  std::atomic<int> hooks{0};
  n.qm.set_delivered_hook([&](const std::string&, const std::string&, const std::string&) { ++hooks; });
  n.qm.start({id});
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 1; }));
  EXPECT_EQ(count(n.mb + "/alice/new"), 1u);
  auto d = n.qm.show(id);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->envelope.recipients[0].state, RecipientState::kDelivered);
  EXPECT_EQ(d->envelope.recipients[1].state, RecipientState::kPending);
  EXPECT_NE(d->envelope.recipients[1].last_result.find("4.3.0"), std::string::npos);
  fs::remove(n.mb + "/bob");
  n.s.clock.advance(std::chrono::seconds(2));
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 1; }));
  n.qm.stop();
  EXPECT_EQ(count(n.mb + "/alice/new"), 1u);
  EXPECT_EQ(count(n.mb + "/bob/new"), 1u);
  EXPECT_EQ(hooks.load(), 2);
  EXPECT_EQ(n.qm.counters().delivered_copies, 2u);
}

TEST(QueueManager, RestartAfterDeliveryBeforeRemovalWritesNoDuplicate) {
  TempDir t;
  std::string id;
  {
    Node n(t.path());
    id = n.s.put("x\r\n", to({rcpt("alice@example.org", "alice"), rcpt("bob@example.org", "bob")}))
             .value();
    // The previous run delivered both copies and crashed before removing the queue file;
    // alice has since read hers (moved to cur/ with flags).
    auto m = read_queue_file(n.s.store.path_of(id)).value();
    auto a = n.md.deliver(n.s.store.path_of(id), m.body_offset, m.body_length, id, "alice");
    auto b = n.md.deliver(n.s.store.path_of(id), m.body_offset, m.body_length, id, "bob");
    ASSERT_TRUE(a.ok() && b.ok());
    fs::rename(a->new_path, n.mb + "/alice/cur/" + n.md.name_for(id, "alice") + ":2,S");
  }
  Node n(t.path());
  auto rep = n.s.store.recover();
  ASSERT_EQ(rep.ready, std::vector<std::string>{id});
  std::atomic<int> hooks{0};
  n.qm.set_delivered_hook([&](const std::string&, const std::string&, const std::string&) { ++hooks; });
  n.qm.start(rep.ready);
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 1; }));
  n.qm.stop();
  EXPECT_EQ(hooks.load(), 0);
  EXPECT_EQ(n.qm.counters().delivered_copies, 0u);
  EXPECT_EQ(count(n.mb + "/alice/new") + count(n.mb + "/alice/cur"), 1u);
  EXPECT_EQ(count(n.mb + "/bob/new"), 1u);
  EXPECT_FALSE(fs::exists(n.s.store.path_of(id)));
}

// A message held at acceptance (an arrival sink quarantined it): frozen from the start,
// still frozen after a restart, delivered only after a thaw.
TEST(QueueManager, EnqueueFrozenHoldsUntilThawedAcrossARestart) {
  TempDir t;
  std::string id;
  {
    Node n(t.path());
    id = n.s.put("x\r\n", to({rcpt("alice@example.org", "alice")})).value();
    DeliveryState st;
    st.frozen = true;
    ASSERT_TRUE(n.s.store.save_state(id, st).ok());  // what SinkSetup::holder does first
    n.qm.start({});
    n.qm.enqueue_frozen(id);
    n.qm.enqueue(id);  // already known: stays frozen
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ASSERT_EQ(n.qm.list().size(), 1u);
    EXPECT_EQ(n.qm.list()[0].state, MessageState::kFrozen);
    EXPECT_EQ(n.qm.counters().delivered_messages, 0u);
    EXPECT_EQ(count(n.mb + "/alice/new"), 0u);
    n.qm.stop();
  }
  Node n(t.path());
  auto rep = n.s.store.recover();
  ASSERT_EQ(rep.ready, std::vector<std::string>{id});
  n.qm.start(rep.ready);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(n.qm.list().size(), 1u);
  EXPECT_EQ(n.qm.list()[0].state, MessageState::kFrozen);
  EXPECT_EQ(count(n.mb + "/alice/new"), 0u);
  ASSERT_TRUE(n.qm.act(id, QueueManager::Action::kThaw).ok());
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 1; }));
  n.qm.stop();
  EXPECT_EQ(count(n.mb + "/alice/new"), 1u);
}

TEST(QueueManager, CorruptQueueFileAtRunTimeIsQuarantined) {
  TempDir t;
  Node n(t.path());
  auto id = n.s.put("x\r\n").value();
  std::string good = slurp(n.s.store.path_of(id));
  testing::spit(n.s.store.path_of(id), good.substr(0, good.size() - 1));
  n.qm.start({});
  n.qm.enqueue(id);
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().quarantined == 1; }));
  n.qm.stop();
  EXPECT_TRUE(fs::exists(t.path() + "/q/quarantine/" + id));
  EXPECT_TRUE(n.qm.list().empty());
  EXPECT_EQ(count(n.mb), 0u);
}

TEST(QueueManager, ManyMessagesAreDeliveredInBatches) {
  TempDir t;
  QueueManagerOptions o;
  o.batch = 16;
  Node n(t.path(), o);
  n.qm.start({});
  constexpr int kMessages = 200;
  for (int i = 0; i < kMessages; ++i) {
    n.qm.enqueue(n.s.put("m" + std::to_string(i) + "\r\n", to({rcpt("a@example.org", "alice")})).value());
  }
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == kMessages; }));
  n.qm.stop();
  EXPECT_EQ(count(n.mb + "/alice/new"), static_cast<std::size_t>(kMessages));
  EXPECT_EQ(count(t.path() + "/q/queue"), 0u);
}

TEST(QueueManager, MailArrivingWithinTheBatchWindowSharesOneBatch) {
  TempDir t;
  QueueManagerOptions o;
  o.batch = 4;
  o.batch_window = std::chrono::seconds(30);  // only a full batch can end the wait early
  Node n(t.path(), o);
  n.qm.start({});
  for (int i = 0; i < 4; ++i) {
    n.qm.enqueue(n.s.put("m" + std::to_string(i) + "\r\n", to({rcpt("a@example.org", "alice")})).value());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (i < 3) {
      EXPECT_EQ(n.qm.counters().delivered_messages, 0u) << "started before the batch filled";
    }
  }
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 4; }));
  EXPECT_EQ(n.qm.counters().batches, 1u);
  n.qm.stop();
  EXPECT_EQ(count(n.mb + "/alice/new"), 4u);
}

TEST(QueueManager, APartialBatchStartsWhenTheWindowEnds) {
  TempDir t;
  QueueManagerOptions o;
  o.batch_window = std::chrono::milliseconds(50);
  Node n(t.path(), o);
  n.qm.start({});
  n.qm.enqueue(n.s.put("lonely\r\n", to({rcpt("a@example.org", "alice")})).value());
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 1; }));
  EXPECT_EQ(n.qm.counters().batches, 1u);
  // Without a window every message that arrives alone is its own batch.
  o.batch_window = std::chrono::milliseconds(0);
  TempDir t2;
  Node m(t2.path(), o);
  m.qm.start({});
  for (int i = 0; i < 3; ++i) {
    m.qm.enqueue(m.s.put("m\r\n", to({rcpt("a@example.org", "alice")})).value());
    ASSERT_TRUE(wait_until([&] { return m.qm.counters().delivered_messages == static_cast<std::uint64_t>(i + 1); }));
  }
  EXPECT_EQ(m.qm.counters().batches, 3u);
  m.qm.stop();
  n.qm.stop();
}

TEST(QueueManager, StopLeavesQueuedMailForTheNextStart) {
  TempDir t;
  std::string id;
  {
    QueueManagerOptions o;
    o.retry_initial = std::chrono::hours(1);
    Node n(t.path(), o);
    id = n.s.put("x\r\n").value();
    testing::spit(n.mb, "in the way");
    n.qm.start({id});
    ASSERT_TRUE(wait_until([&] { return n.qm.counters().deferred == 1; }));
    auto before = std::chrono::steady_clock::now();
    n.qm.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::seconds(2));
    EXPECT_TRUE(fs::exists(n.s.store.path_of(id)));
    fs::remove(n.mb);
  }
  Node n(t.path());
  auto rep = n.s.store.recover();
  n.qm.start(rep.ready);
  ASSERT_TRUE(wait_until([&] { return n.qm.counters().delivered_messages == 1; }));
  n.qm.stop();
  EXPECT_EQ(count(n.mb + "/user0/new"), 1u);
}

}  // namespace
}  // namespace bh::queue
