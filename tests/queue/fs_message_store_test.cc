// FsMessageStore: durability order, fault injection, group commit, ids, recovery, and
// a real ENOSPC on a tiny tmpfs.

#include "queue/fs_message_store.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>

#include "queue/queue_file.h"
#include "tests/queue/queue_test_util.h"

namespace bh::queue {
namespace {

using testing::count;
using testing::slurp;
using testing::spit;
using testing::TempDir;
namespace fs = std::filesystem;

class ModeTest : public ::testing::TestWithParam<SyncMode> {};

TEST_P(ModeTest, CallbackRunsOnlyAfterTheRenamedFileIsDurable) {
  TempDir t;
  std::vector<std::string> steps;
  std::mutex mu;
  bool in_queue_at_callback = false;
  testing::Store s(
      t.path(),
      [&](std::string_view step, std::string_view) {
        std::lock_guard l(mu);
        steps.emplace_back(step);
        return 0;
      },
      GetParam());
  auto w = s.store.begin();
  ASSERT_TRUE(w.ok());
  std::string id = (*w)->id();
  ASSERT_TRUE((*w)->write("hello\r\n").ok());
  EXPECT_EQ((*w)->bytes_written(), 7u);
  std::promise<Result<std::string>> p;
  s.store.commit(std::move(w.value()), testing::sample(), [&](Result<std::string> r) {
    std::lock_guard l(mu);
    steps.emplace_back("callback");
    in_queue_at_callback = fs::exists(s.store.path_of(id));
    p.set_value(std::move(r));
  });
  auto r = p.get_future().get();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, id);
  // syncfs: the renames first, then one syncfs covers the data and both directories;
  // fdatasync: the data, the renames, one fsync of queue/. The callback always last.
  std::vector<std::string> want = GetParam() == SyncMode::kSyncfs
                                      ? std::vector<std::string>{"write", "rename", "syncfs", "callback"}
                                      : std::vector<std::string>{"write", "fdatasync", "rename", "fsync_dir", "callback"};
  EXPECT_EQ(steps, want);
  EXPECT_TRUE(in_queue_at_callback);
  EXPECT_EQ(count(t.path() + "/tmp"), 0u);
  auto m = read_queue_file(s.store.path_of(id));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->envelope.body_size, 7u);
}

TEST_P(ModeTest, ConcurrentCommitsFrom8ThreadsAreBatched) {
  TempDir t;
  std::atomic<int> syncs{0};
  testing::Store s(
      t.path(),
      [&](std::string_view step, std::string_view) {
        if (step == "syncfs" || step == "fdatasync") {
          ++syncs;
        }
        if (step == "fsync_dir" || step == "syncfs") {
          std::this_thread::sleep_for(std::chrono::milliseconds(3));  // a slow disk
        }
        return 0;
      },
      GetParam());
  constexpr int kThreads = 8, kEach = 25, kTotal = kThreads * kEach;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < kEach; ++j) {
        if (s.put("m\r\n").ok()) {
          ++ok;
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(ok.load(), kTotal);
  EXPECT_EQ(count(t.path() + "/queue"), static_cast<std::size_t>(kTotal));
  auto c = s.store.counters();
  EXPECT_EQ(c.commits, static_cast<std::uint64_t>(kTotal));
  EXPECT_LT(c.batches, static_cast<std::uint64_t>(kTotal / 2)) << "group commit should batch";
  EXPECT_EQ(c.syncs, static_cast<std::uint64_t>(syncs.load()));
  if (GetParam() == SyncMode::kSyncfs) {
    EXPECT_LT(syncs.load(), kTotal / 2);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, ModeTest, ::testing::Values(SyncMode::kSyncfs, SyncMode::kFdatasync),
                         [](const auto& p) {
                           return std::string(p.param == SyncMode::kSyncfs ? "syncfs" : "fdatasync");
                         });

struct FailCase {
  SyncMode mode;
  const char* step;
  int err;
  const char* enhanced;
};

class FailAt : public ::testing::TestWithParam<FailCase> {};

TEST_P(FailAt, FailedStepIsTransientAndLeavesNothing) {
  TempDir t;
  const FailCase fc = GetParam();
  std::atomic<bool> called_after_failure{false};
  testing::Store s(
      t.path(), [&](std::string_view step, std::string_view) { return step == fc.step ? fc.err : 0; },
      fc.mode);
  auto r = s.put("body\r\n");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().transient());
  EXPECT_EQ(r.error().enhanced, fc.enhanced);
  EXPECT_EQ(count(t.path() + "/queue"), 0u);
  EXPECT_EQ(count(t.path() + "/tmp"), 0u);
  EXPECT_EQ(s.store.counters().failures, 1u);
  EXPECT_EQ(s.store.counters().commits, 0u);
  EXPECT_FALSE(called_after_failure.load());
}

INSTANTIATE_TEST_SUITE_P(
    Steps, FailAt,
    ::testing::Values(FailCase{SyncMode::kSyncfs, "write", EIO, "4.3.0"},
                      FailCase{SyncMode::kSyncfs, "syncfs", EIO, "4.3.0"},
                      FailCase{SyncMode::kSyncfs, "rename", EIO, "4.3.0"},
                      FailCase{SyncMode::kFdatasync, "fsync_dir", EIO, "4.3.0"},
                      FailCase{SyncMode::kFdatasync, "fdatasync", EIO, "4.3.0"},
                      FailCase{SyncMode::kFdatasync, "rename", EEXIST, "4.3.0"},
                      FailCase{SyncMode::kSyncfs, "write", ENOSPC, "4.3.1"},
                      FailCase{SyncMode::kSyncfs, "syncfs", ENOSPC, "4.3.1"},
                      FailCase{SyncMode::kFdatasync, "fdatasync", EDQUOT, "4.3.1"}),
    [](const auto& p) {
      std::string n = std::string(p.param.mode == SyncMode::kSyncfs ? "syncfs_" : "fdatasync_") +
                      p.param.step + "_" + std::to_string(p.param.err);
      return n;
    });

TEST(FsMessageStore, WriteFailingOnTheNthCallIsStickyAndFailsTheCommit) {
  TempDir t;
  std::atomic<int> writes{0};
  testing::Store s(t.path(), [&](std::string_view step, std::string_view) {
    return (step == "write" && ++writes == 2) ? EIO : 0;
  });
  auto w = s.store.begin();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->write(std::string(64u << 10, 'a')).ok());  // first flush
  EXPECT_FALSE((*w)->write(std::string(64u << 10, 'b')).ok());  // second flush fails
  EXPECT_FALSE((*w)->write("more").ok());                        // sticky
  std::promise<Result<std::string>> p;
  s.store.commit(std::move(w.value()), testing::sample(),
                 [&](Result<std::string> r) { p.set_value(std::move(r)); });
  auto r = p.get_future().get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().enhanced, "4.3.0");
  EXPECT_EQ(count(t.path() + "/tmp"), 0u);
  EXPECT_EQ(count(t.path() + "/queue"), 0u);
}

TEST(FsMessageStore, FailureOfOneFileDoesNotFailTheOthersInFdatasyncMode) {
  TempDir t;
  std::string victim;
  std::mutex mu;
  testing::Store s(
      t.path(),
      [&](std::string_view step, std::string_view id) {
        std::lock_guard l(mu);
        return (step == "fdatasync" && id == victim) ? EIO : 0;
      },
      SyncMode::kFdatasync);
  auto a = s.store.begin();
  auto b = s.store.begin();
  ASSERT_TRUE(a.ok() && b.ok());
  {
    std::lock_guard l(mu);
    victim = (*a)->id();
  }
  std::promise<Result<std::string>> pa, pb;
  s.store.commit(std::move(a.value()), testing::sample(), [&](Result<std::string> r) { pa.set_value(r); });
  s.store.commit(std::move(b.value()), testing::sample(), [&](Result<std::string> r) { pb.set_value(r); });
  EXPECT_FALSE(pa.get_future().get().ok());
  EXPECT_TRUE(pb.get_future().get().ok());
  EXPECT_EQ(count(t.path() + "/queue"), 1u);
}

TEST(FsMessageStore, EnvelopeTheReaderWouldRejectIsRefusedBeforeTheAck) {
  TempDir t;
  testing::Store s(t.path());
  Envelope e = testing::sample();
  e.sender = "a\r\nb@example.net";
  auto r = s.put("x", e);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().transient());
  auto none = s.put("x", testing::sample(0));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(count(t.path() + "/queue"), 0u);
  EXPECT_EQ(count(t.path() + "/tmp"), 0u);
}

TEST(FsMessageStore, NoSpaceFloorIs431) {
  TempDir t;
  testing::Store s(t.path());
  FsMessageStore floor(FsStoreOptions{t.path(), ~0ull >> 1, {}}, s.clock, s.random);
  auto c = floor.check_space();
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.error().transient());
  EXPECT_EQ(c.error().enhanced, "4.3.1");
  EXPECT_EQ(c.error().message, "Insufficient system storage");
  EXPECT_TRUE(s.store.check_space().ok());
}

// A real full file system: a 256 KiB tmpfs. Needs CAP_SYS_ADMIN; skipped otherwise.
TEST(FsMessageStore, RealEnospcOnATinyTmpfsIs431AndLeavesNothing) {
  TempDir t;
  std::string mnt = t.path() + "/mnt";
  fs::create_directory(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=256k,mode=0700") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno)
                 << "); needs root / CAP_SYS_ADMIN";
  }
  struct Unmount {
    std::string p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  {
    testing::Store s(mnt);
    auto small = s.put("fits\r\n");
    ASSERT_TRUE(small.ok()) << small.error().message;
    auto big = s.put(std::string(1u << 20, 'x'));
    ASSERT_FALSE(big.ok());
    EXPECT_TRUE(big.error().transient());
    EXPECT_EQ(big.error().enhanced, "4.3.1");
    EXPECT_EQ(count(mnt + "/tmp"), 0u);
    EXPECT_EQ(count(mnt + "/queue"), 1u);  // the one that fit, untouched
    EXPECT_TRUE(read_queue_file(s.store.path_of(*small)).ok());
    FsMessageStore floor(FsStoreOptions{mnt, 1u << 20, {}}, s.clock, s.random);
    auto c = floor.check_space();
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.error().enhanced, "4.3.1");
  }
}

TEST(FsMessageStore, AbandonedWriterLeavesNothing) {
  TempDir t;
  testing::Store s(t.path());
  {
    auto w = s.store.begin();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->write(std::string(200000, 'x')).ok());
    EXPECT_EQ(count(t.path() + "/tmp"), 1u);
  }
  EXPECT_EQ(count(t.path() + "/tmp"), 0u);
}

TEST(FsMessageStore, CommitAfterCloseIsTransient) {
  TempDir t;
  testing::Store s(t.path());
  auto w = s.store.begin();
  ASSERT_TRUE(w.ok());
  s.store.close();
  std::optional<Result<std::string>> got;
  s.store.commit(std::move(w.value()), testing::sample(), [&](Result<std::string> r) { got = r; });
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->ok());
  EXPECT_EQ(got->error().enhanced, "4.3.0");
  EXPECT_EQ(count(t.path() + "/tmp"), 0u);
}

TEST(FsMessageStore, IdsAreShortSafeUniqueAndTimeOrdered) {
  TempDir t;
  testing::Store s(t.path());
  std::set<std::string> ids;
  std::string last;
  for (int i = 0; i < 50; ++i) {
    auto w = s.store.begin();
    ASSERT_TRUE(w.ok());
    const std::string& id = (*w)->id();
    EXPECT_EQ(id.size(), 20u);
    EXPECT_EQ(id.find_first_not_of("0123456789ABCDEF"), std::string::npos) << id;
    EXPECT_GT(id, last);
    last = id;
    ids.insert(id);
    s.clock.advance(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(ids.size(), 50u);
}

TEST(FsMessageStore, IdCollisionAfterRestartNeverOverwrites) {
  TempDir t;
  std::string first;
  {
    testing::Store s(t.path());
    first = s.put("first\r\n").value();
  }
  // Same clock, same sequence, same random part: the same id would come out again.
  testing::Store s2(t.path());
  auto second = s2.put("second\r\n");
  ASSERT_TRUE(second.ok());
  EXPECT_NE(*second, first);
  auto m = read_queue_file(s2.store.path_of(first));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->body_length, 7u);
}

TEST(FsMessageStore, RecoveryRemovesTempKeepsCompleteQuarantinesGarbage) {
  TempDir t;
  std::string good_id;
  std::unique_ptr<SpoolWriter> crashed;  // outlives its store, as a crashed process would
  {
    testing::Store s(t.path());
    good_id = s.put("keep me\r\n").value();
    auto w = s.store.begin();  // an unacknowledged message, as after a crash
    ASSERT_TRUE((*w)->write("partial").ok());
    spit(t.path() + "/tmp/LEFTOVER", "x");
    spit(t.path() + "/queue/GARBAGE", "not a queue file");
    spit(t.path() + "/quarantine/GARBAGE", "an older one of the same name");
    std::string good = slurp(s.store.path_of(good_id));
    spit(t.path() + "/queue/TRUNCATED", good.substr(0, good.size() - 3));
    spit(t.path() + "/queue/RENAMED", good);  // id mismatch
    crashed = std::move(w.value());           // the crash: no commit, no cleanup yet
  }
  testing::Store s2(t.path());
  auto rep = s2.store.recover();
  crashed.reset();
  EXPECT_EQ(rep.ready, std::vector<std::string>{good_id});
  EXPECT_EQ(rep.removed_temp, 2u);
  EXPECT_EQ(rep.quarantined, 3u);
  EXPECT_EQ(count(t.path() + "/tmp"), 0u);
  EXPECT_EQ(count(t.path() + "/queue"), 1u);
  EXPECT_EQ(slurp(t.path() + "/quarantine/GARBAGE"), "an older one of the same name");
  EXPECT_EQ(slurp(t.path() + "/quarantine/GARBAGE.1"), "not a queue file");
  EXPECT_TRUE(fs::exists(t.path() + "/quarantine/TRUNCATED"));
  EXPECT_TRUE(fs::exists(t.path() + "/quarantine/RENAMED"));
  // Quarantine of a committed message at run time keeps it too.
  ASSERT_TRUE(s2.store.quarantine(good_id).ok());
  EXPECT_TRUE(fs::exists(t.path() + "/quarantine/" + good_id));
  EXPECT_EQ(count(t.path() + "/queue"), 0u);
}

}  // namespace
}  // namespace bh::queue

namespace bh::queue {
namespace {

TEST(FsMessageStore, RemovedFilesAreReusedInPlaceAndCutToTheNewLength) {
  testing::TempDir t;
  ino_t big_inode = 0;
  {
    testing::Store s(t.path());
    auto big = s.put(std::string(100000, 'B'));
    ASSERT_TRUE(big.ok());
    struct stat st{};
    ASSERT_EQ(::stat(s.store.path_of(*big).c_str(), &st), 0);
    big_inode = st.st_ino;
    ASSERT_TRUE(s.store.remove(*big).ok());
    EXPECT_FALSE(std::filesystem::exists(s.store.path_of(*big)));
    // Prepared for the next message: open, in tmp/ under a name no queue id can have.
    EXPECT_TRUE(std::filesystem::exists(t.path() + "/tmp/.next-" + *big));
    EXPECT_EQ(testing::count(t.path() + "/spare"), 0u);
  }
  // Closed with it still prepared: it went back to spare/ under its old id.
  EXPECT_EQ(testing::count(t.path() + "/tmp"), 0u);
  EXPECT_EQ(testing::count(t.path() + "/spare"), 1u);
  // After a restart the spare file is still known and is taken for the next message.
  testing::Store s(t.path());
  auto small = s.put("short\r\n");
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(testing::count(t.path() + "/spare"), 0u);
  struct stat st{};
  ASSERT_EQ(::stat(s.store.path_of(*small).c_str(), &st), 0);
  EXPECT_EQ(st.st_ino, big_inode);
  auto m = read_queue_file(s.store.path_of(*small));
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->body_length, 7u);
  EXPECT_LT(static_cast<std::size_t>(st.st_size), 1000u);
  EXPECT_EQ(testing::slurp(s.store.path_of(*small)).substr(m->body_offset, m->body_length), "short\r\n");

  // A prepared file is taken by the next message with no rename of its own: the commit
  // renames it from tmp/.next-<old id> to queue/<new id>, cut to the new length.
  ASSERT_TRUE(s.store.remove(*small).ok());
  auto next = s.put(std::string(3000, 'n'));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(testing::count(t.path() + "/tmp"), 0u);
  ASSERT_EQ(::stat(s.store.path_of(*next).c_str(), &st), 0);
  EXPECT_EQ(st.st_ino, big_inode);
  auto n = read_queue_file(s.store.path_of(*next));
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(n->envelope.id, *next);
  EXPECT_EQ(n->body_length, 3000u);

  // A prepared file longer than the next message (its length is known): cut to it.
  const auto long_size = static_cast<std::size_t>(st.st_size);
  ASSERT_TRUE(s.store.remove(*next).ok());
  auto shorter = s.put("tiny\r\n");
  ASSERT_TRUE(shorter.ok());
  ASSERT_EQ(::stat(s.store.path_of(*shorter).c_str(), &st), 0);
  EXPECT_EQ(st.st_ino, big_inode);
  EXPECT_LT(static_cast<std::size_t>(st.st_size), long_size - 2900);
  auto sh = read_queue_file(s.store.path_of(*shorter));
  ASSERT_TRUE(sh.ok()) << sh.error().message;
  EXPECT_EQ(sh->body_length, 6u);
  EXPECT_EQ(testing::slurp(s.store.path_of(*shorter)).substr(sh->body_offset, sh->body_length), "tiny\r\n");
}

TEST(FsMessageStore, APreparedFileLeftByACrashIsRemovedByRecovery) {
  testing::TempDir t;
  {
    testing::Store s(t.path());
    auto id = s.put("x\r\n");
    ASSERT_TRUE(id.ok());
    ASSERT_TRUE(s.store.remove(*id).ok());
    // What a SIGKILL leaves: the prepared file in tmp/ (copied aside before close()).
    std::filesystem::copy_file(t.path() + "/tmp/.next-" + *id, t.path() + "/tmp/.next-CRASHED");
  }
  testing::Store s(t.path());
  auto rep = s.store.recover();
  EXPECT_EQ(rep.removed_temp, 1u);
  EXPECT_TRUE(rep.ready.empty());
  EXPECT_EQ(testing::count(t.path() + "/tmp"), 0u);
  EXPECT_EQ(testing::count(t.path() + "/queue"), 0u);
}

}  // namespace
}  // namespace bh::queue
