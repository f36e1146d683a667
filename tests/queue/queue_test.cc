#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "queue/fs_message_store.h"
#include "queue/maildir.h"
#include "queue/queue_file.h"
#include "queue/queue_manager.h"

namespace bh::queue {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/bh-queue-test.XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::size_t count(const std::string& dir) {
  if (!fs::exists(dir)) return 0;
  return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}));
}

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class FixedRandom : public Random {
 public:
  std::uint64_t next() override { return n_++; }

 private:
  std::uint64_t n_ = 7;
};

Envelope sample(std::size_t rcpts = 2) {
  Envelope e;
  e.sender = "s@example.net";
  for (std::size_t i = 0; i < rcpts; ++i) {
    Recipient r;
    r.address = "user" + std::to_string(i) + "@example.org";
    r.mailbox = "user" + std::to_string(i);
    r.orcpt = "rfc822;" + r.address;
    r.notify = kNotifyFailure | kNotifyDelay;
    e.recipients.push_back(r);
  }
  e.body = BodyType::kBinaryMime;
  e.ret = DsnRet::kHeaders;
  e.envid = "ENV1";
  e.smtputf8 = true;
  e.declared_size = 99;
  e.client_address = "192.0.2.1";
  e.client_helo = "client.example";
  e.protocol = "ESMTP";
  e.received_unix = 1700000000;
  return e;
}

struct Store {
  explicit Store(const std::string& root, std::function<int(std::string_view, std::string_view)> fault = {})
      : store(FsStoreOptions{root, 0, std::move(fault)}, clock, random) {
    EXPECT_TRUE(store.open().ok());
  }
  Result<std::string> put(std::string_view body, Envelope env = sample()) {
    auto w = store.begin();
    if (!w.ok()) return w.error();
    EXPECT_TRUE((*w)->write(body).ok());
    std::promise<Result<std::string>> p;
    store.commit(std::move(w.value()), std::move(env), [&](Result<std::string> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  ManualClock clock;
  FixedRandom random;
  FsMessageStore store;
};

TEST(QueueFile, EnvelopeRoundTrip) {
  Envelope e = sample(3);
  e.id = "ABC";
  e.body_size = 1234;
  auto d = decode_envelope(encode_envelope(e));
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->id, "ABC");
  EXPECT_EQ(d->sender, e.sender);
  ASSERT_EQ(d->recipients.size(), 3u);
  EXPECT_EQ(d->recipients[2].orcpt, e.recipients[2].orcpt);
  EXPECT_EQ(d->recipients[1].notify, e.recipients[1].notify);
  EXPECT_EQ(d->body, BodyType::kBinaryMime);
  EXPECT_EQ(d->ret, DsnRet::kHeaders);
  EXPECT_EQ(d->envid, "ENV1");
  EXPECT_TRUE(d->smtputf8);
  EXPECT_EQ(d->body_size, 1234u);
  EXPECT_EQ(d->received_unix, 1700000000);
}

TEST(QueueFile, EveryTruncationAndFlipIsRejected) {
  TempDir t;
  Store s(t.path());
  std::string body = std::string("Subject: x\r\n\r\n") + std::string(3000, 'b') + std::string(1, '\0');
  auto id = s.put(body);
  ASSERT_TRUE(id.ok());
  std::string path = s.store.path_of(*id);
  std::string good = slurp(path);
  ASSERT_TRUE(read_queue_file(path).ok());
  std::string bad = t.path() + "/bad";
  for (std::size_t n = 0; n < good.size(); n += (n < 100 || n > good.size() - 200) ? 1 : 97) {
    std::ofstream(bad, std::ios::binary | std::ios::trunc) << good.substr(0, n);
    ASSERT_FALSE(read_queue_file(bad).ok()) << "truncated at " << n;
  }
  for (std::size_t pos : {std::size_t{2}, std::size_t{100}, good.size() - 60, good.size() - 30, good.size() - 5}) {
    std::string flipped = good;
    flipped[pos] ^= 0x40;
    std::ofstream(bad, std::ios::binary | std::ios::trunc) << flipped;
    ASSERT_FALSE(read_queue_file(bad).ok()) << "flipped at " << pos;
  }
  auto m = read_queue_file(path);
  EXPECT_EQ(m->body_length, body.size());
  EXPECT_EQ(good.substr(m->body_offset, m->body_length), body);
}

TEST(QueueFile, HostileRecordsAreRejected) {
  std::string huge;
  huge.push_back(2);
  huge += std::string("\xff\xff\xff\xff", 4);
  EXPECT_FALSE(decode_envelope(huge).ok());
  Envelope e = sample();
  e.id = "X";
  std::string recs = encode_envelope(e);
  EXPECT_FALSE(decode_envelope(recs.substr(0, recs.size() - 5)).ok());  // no END
  EXPECT_FALSE(decode_envelope(recs + recs).ok());                      // data after END
  e.sender = "a\r\nX-Injected: 1";
  EXPECT_FALSE(decode_envelope(encode_envelope(e)).ok());
}

TEST(FsMessageStore, CommitIsDurableBeforeTheCallback) {
  TempDir t;
  std::vector<std::string> steps;
  std::mutex mu;
  Store s(t.path(), [&](std::string_view step, std::string_view) {
    std::lock_guard l(mu);
    steps.emplace_back(step);
    return 0;
  });
  auto id = s.put("hello\r\n");
  ASSERT_TRUE(id.ok());
  // The callback ran after syncfs, rename and the directory fsync, in that order.
  std::vector<std::string> want = {"write", "syncfs", "rename", "fsync_dir"};
  EXPECT_EQ(steps, want);
  EXPECT_TRUE(fs::exists(s.store.path_of(*id)));
  EXPECT_EQ(count(t.path() + "/tmp"), 0u);
}

class FailAt : public ::testing::TestWithParam<const char*> {};

TEST_P(FailAt, FailedStepAnswers430AndLeavesNothing) {
  TempDir t;
  std::string failing = GetParam();
  Store s(t.path(), [&](std::string_view step, std::string_view) { return step == failing ? EIO : 0; });
  auto r = s.put("body\r\n");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().transient());
  EXPECT_EQ(r.error().enhanced, "4.3.0");
  EXPECT_EQ(count(t.path() + "/queue"), 0u);
  EXPECT_EQ(count(t.path() + "/tmp"), 0u);
  EXPECT_EQ(s.store.counters().failures, 1u);
}
INSTANTIATE_TEST_SUITE_P(Steps, FailAt, ::testing::Values("write", "syncfs", "rename", "fsync_dir"));

TEST(FsMessageStore, NoSpaceIs431) {
  TempDir t;
  Store s(t.path(), [](std::string_view step, std::string_view) { return step == "write" ? ENOSPC : 0; });
  auto r = s.put("body");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().enhanced, "4.3.1");
  FsMessageStore floor(FsStoreOptions{t.path(), ~0ull >> 1, {}}, s.clock, s.random);
  auto c = floor.check_space();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().enhanced, "4.3.1");
  EXPECT_TRUE(s.store.check_space().ok());
}

TEST(FsMessageStore, AbandonedWriterLeavesNothing) {
  TempDir t;
  Store s(t.path());
  {
    auto w = s.store.begin();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->write(std::string(200000, 'x')).ok());
    EXPECT_EQ(count(t.path() + "/tmp"), 1u);
  }
  EXPECT_EQ(count(t.path() + "/tmp"), 0u);
}

TEST(FsMessageStore, ConcurrentCommitsShareSyncs) {
  TempDir t;
  std::atomic<int> syncs{0};
  Store s(t.path(), [&](std::string_view step, std::string_view) {
    if (step == "syncfs") {
      ++syncs;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a slow disk
    }
    return 0;
  });
  constexpr int kThreads = 8, kEach = 25;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < kEach; ++j) {
        if (s.put("m\r\n").ok()) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads * kEach);
  EXPECT_EQ(count(t.path() + "/queue"), static_cast<std::size_t>(kThreads * kEach));
  EXPECT_LT(syncs.load(), kThreads * kEach / 2) << "group commit should batch the syncs";
  EXPECT_EQ(s.store.counters().commits, static_cast<std::uint64_t>(kThreads * kEach));
}

TEST(FsMessageStore, RecoveryRemovesTempKeepsCompleteQuarantinesGarbage) {
  TempDir t;
  std::string good_id;
  {
    Store s(t.path());
    good_id = s.put("keep me\r\n").value();
    auto w = s.store.begin();  // an unacknowledged message, as after a crash
    ASSERT_TRUE((*w)->write("partial").ok());
    std::ofstream(t.path() + "/tmp/LEFTOVER") << "x";
    std::ofstream(t.path() + "/queue/GARBAGE") << "not a queue file";
    std::string good = slurp(s.store.path_of(good_id));
    std::ofstream(t.path() + "/queue/TRUNCATED", std::ios::binary) << good.substr(0, good.size() - 3);
    std::ofstream(t.path() + "/queue/RENAMED", std::ios::binary) << good;  // id mismatch
    (void)w.value().release();  // simulate the crash: the destructor never runs
  }
  Store s2(t.path());
  auto rep = s2.store.recover();
  EXPECT_EQ(rep.ready, std::vector<std::string>{good_id});
  EXPECT_EQ(rep.removed_temp, 2u);
  EXPECT_EQ(rep.quarantined, 3u);
  EXPECT_EQ(count(t.path() + "/tmp"), 0u);
  EXPECT_TRUE(fs::exists(t.path() + "/quarantine/GARBAGE"));
  EXPECT_TRUE(fs::exists(t.path() + "/quarantine/TRUNCATED"));
}

TEST(Maildir, ByteExactAndIdempotent) {
  TempDir t;
  Store s(t.path() + "/q");
  std::string body;
  for (int i = 0; i < 256; ++i) body.push_back(static_cast<char>(i));
  body += "\r\n.\r\n" + std::string(100000, 'L') + "\n\r";
  auto id = s.put(body).value();
  auto m = read_queue_file(s.store.path_of(id)).value();
  MaildirDeliverer md(t.path() + "/mb", "host/x:y");
  auto c = md.stage(s.store.path_of(id), m.body_offset, m.body_length, id, "alice");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_FALSE(c->already_delivered);
  ASSERT_TRUE(md.sync().ok());
  ASSERT_TRUE(md.publish(*c).ok());
  EXPECT_EQ(slurp(c->new_path), body);
  EXPECT_EQ(c->new_path.find("host/x"), std::string::npos);  // no '/' or ':' from the host name
  EXPECT_EQ(count(t.path() + "/mb/alice/tmp"), 0u);
  // Delivering the same copy again writes nothing new, also after the user read it.
  auto again = md.stage(s.store.path_of(id), m.body_offset, m.body_length, id, "alice");
  EXPECT_TRUE(again->already_delivered);
  fs::rename(c->new_path, t.path() + "/mb/alice/cur/" + md.name_for(id, "alice") + ":2,");
  EXPECT_TRUE(md.stage(s.store.path_of(id), m.body_offset, m.body_length, id, "alice")->already_delivered);
  EXPECT_FALSE(md.stage(s.store.path_of(id), m.body_offset, m.body_length, id, "../etc").ok());
}

TEST(QueueManager, DeliversOneCopyPerMailboxAndRemovesTheQueueFile) {
  TempDir t;
  Store s(t.path() + "/q");
  Envelope e = sample(0);
  for (const char* a : {"alice", "bob", "alice"}) {
    Recipient r;
    r.address = std::string(a) + "@example.org";
    r.mailbox = a;
    e.recipients.push_back(r);
  }
  auto id = s.put("Subject: t\r\n\r\nbody\r\n", e).value();
  MaildirDeliverer md(t.path() + "/mb", "h");
  QueueManager qm(s.store, md, s.clock, QueueManagerOptions{});
  std::atomic<int> delivered{0};
  qm.set_delivered_hook([&](const std::string&, const std::string&, const std::string&) { ++delivered; });
  qm.start({});
  qm.enqueue(id);
  for (int i = 0; i < 500 && qm.counters().delivered_messages == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  qm.stop();
  EXPECT_EQ(delivered.load(), 2);
  EXPECT_EQ(count(t.path() + "/mb/alice/new"), 1u);
  EXPECT_EQ(count(t.path() + "/mb/bob/new"), 1u);
  EXPECT_FALSE(fs::exists(s.store.path_of(id)));
  EXPECT_TRUE(qm.list().empty());
}

TEST(QueueManager, TransientFailureIsRetriedWithBackoff) {
  TempDir t;
  Store s(t.path() + "/q");
  auto id = s.put("x\r\n").value();
  // The mailbox root is a file: delivery fails until it is fixed.
  std::ofstream(t.path() + "/mb") << "in the way";
  MaildirDeliverer md(t.path() + "/mb", "h");
  QueueManagerOptions o;
  o.retry_initial = std::chrono::milliseconds(1000);
  QueueManager qm(s.store, md, s.clock, o);
  qm.start({id});
  for (int i = 0; i < 500 && qm.counters().deferred == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(qm.counters().deferred, 1u);
  auto l = qm.list();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].state, MessageState::kRetry);
  EXPECT_EQ(l[0].attempts, 1u);
  EXPECT_FALSE(l[0].last_error.empty());
  auto d = qm.show(id);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->envelope.sender, "s@example.net");
  // Nothing happens until the injected clock passes the retry time.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(qm.counters().deferred, 1u);
  fs::remove(t.path() + "/mb");
  s.clock.advance(std::chrono::seconds(2));
  for (int i = 0; i < 500 && qm.counters().delivered_messages == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  qm.stop();
  EXPECT_EQ(qm.counters().delivered_messages, 1u);
  EXPECT_EQ(count(t.path() + "/mb/user0/new"), 1u);
  EXPECT_EQ(count(t.path() + "/mb/user1/new"), 1u);
}

}  // namespace
}  // namespace bh::queue
