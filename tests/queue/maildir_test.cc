// MaildirDeliverer: byte-exact copies, deterministic names, idempotent redelivery
// (new/ and cur/ with flags), hostile mailbox names, full mailbox.

#include "queue/maildir.h"

#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cstring>

#include "queue/queue_file.h"
#include "tests/queue/queue_test_util.h"

namespace bh::queue {
namespace {

using testing::count;
using testing::slurp;
using testing::TempDir;
namespace fs = std::filesystem;

struct Spooled {
  std::string id, path;
  StoredMessage m;
};

Spooled spool(testing::Store& s, std::string_view body) {
  Spooled out;
  out.id = s.put(body).value();
  out.path = s.store.path_of(out.id);
  out.m = read_queue_file(out.path).value();
  return out;
}

std::string hostile_body() {
  std::string body;
  for (int i = 0; i < 256; ++i) {
    body.push_back(static_cast<char>(i));  // NUL and 8-bit octets
  }
  body += "\r\n.\r\n..leading dot\r\nbare LF\nbare CR\r" + std::string(100000, 'L') + "\n\r";
  body += std::string(3, '\0');
  return body;
}

TEST(Maildir, CopyIsByteExactAndNamedDeterministically) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  std::string body = hostile_body();
  auto sp = spool(s, body);
  MaildirDeliverer md(t.path() + "/mb", "host/x:y");
  auto c = md.stage(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "alice");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_FALSE(c->already_delivered);
  EXPECT_EQ(count(t.path() + "/mb/alice/new"), 0u);  // not visible before publish
  ASSERT_TRUE(md.sync().ok());
  ASSERT_TRUE(md.publish(*c).ok());
  ASSERT_TRUE(md.sync().ok());
  EXPECT_EQ(slurp(c->new_path), body);
  EXPECT_EQ(c->new_path, t.path() + "/mb/alice/new/" + md.name_for(sp.id, "alice"));
  EXPECT_EQ(md.name_for(sp.id, "alice"), md.name_for(sp.id, "alice"));
  EXPECT_NE(md.name_for(sp.id, "alice"), md.name_for(sp.id, "bob"));
  EXPECT_EQ(md.name_for(sp.id, "alice").find_first_of("/:"), std::string::npos);
  EXPECT_EQ(count(t.path() + "/mb/alice/tmp"), 0u);
  EXPECT_TRUE(fs::is_directory(t.path() + "/mb/alice/cur"));
  EXPECT_EQ(fs::status(c->new_path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

TEST(Maildir, SmallBodyIsKeptByTheReaderAndStagedFromMemory) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  std::string body = "Subject: small\r\n\r\n\x01\xff binary\r\n.\r\n";
  auto sp = spool(s, body);
  EXPECT_FALSE(sp.m.body.has_value());  // not asked for
  auto kept = read_queue_file(sp.path, kQueueReadChunk);
  ASSERT_TRUE(kept.ok());
  ASSERT_TRUE(kept->body.has_value());
  EXPECT_EQ(*kept->body, body);
  EXPECT_FALSE(read_queue_file(sp.path, body.size() - 1)->body.has_value());  // over the cap
  auto big = spool(s, hostile_body());  // over 64 KiB: streamed, never kept
  auto big_kept = read_queue_file(big.path, 1u << 30);
  ASSERT_TRUE(big_kept.ok());
  EXPECT_FALSE(big_kept->body.has_value());
  EXPECT_EQ(big_kept->body_length, hostile_body().size());

  MaildirDeliverer md(t.path() + "/mb", "h");
  auto c = md.stage_bytes(*kept->body, sp.id, "alice", /*may_exist=*/false);
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_TRUE(md.sync().ok());
  ASSERT_TRUE(md.publish(*c).ok());
  EXPECT_EQ(slurp(c->new_path), body);
  EXPECT_EQ(count(t.path() + "/mb/alice/tmp"), 0u);
}

TEST(Maildir, FoldersRemovedBetweenDeliveriesAreMadeAgain) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  auto a = spool(s, "one\r\n");
  auto b = spool(s, "two\r\n");
  MaildirDeliverer md(t.path() + "/mb", "h");
  ASSERT_TRUE(md.deliver(a.path, a.m.body_offset, a.m.body_length, a.id, "alice").ok());
  fs::remove_all(t.path() + "/mb/alice");  // an operator wipes the mailbox
  auto c = md.deliver(b.path, b.m.body_offset, b.m.body_length, b.id, "alice");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(slurp(c->new_path), "two\r\n");
  EXPECT_TRUE(fs::is_directory(t.path() + "/mb/alice/cur"));
}

TEST(Maildir, PublishNeverReplacesAnExistingCopy) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  auto sp = spool(s, "fresh\r\n");
  MaildirDeliverer md(t.path() + "/mb", "h");
  // Staged as a first attempt (no look in new/), but a copy of that name is already
  // there: publishing keeps it, counts the copy as delivered and leaves no temp file.
  auto c = md.stage(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "alice", false);
  ASSERT_TRUE(c.ok());
  testing::spit(c->new_path, "the earlier copy");
  ASSERT_TRUE(md.publish(*c).ok());
  EXPECT_EQ(slurp(c->new_path), "the earlier copy");
  EXPECT_EQ(count(t.path() + "/mb/alice/tmp"), 0u);
  EXPECT_EQ(count(t.path() + "/mb/alice/new"), 1u);
}

TEST(Maildir, EmptyBodyIsDelivered) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  auto sp = spool(s, "");
  MaildirDeliverer md(t.path() + "/mb", "h");
  auto c = md.deliver(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "alice");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(slurp(c->new_path), "");
}

TEST(Maildir, DeliveringTwiceWritesOneFile) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  auto sp = spool(s, "Subject: once\r\n\r\nx\r\n");
  MaildirDeliverer md(t.path() + "/mb", "h");
  auto first = md.deliver(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "alice");
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->already_delivered);
  auto second = md.deliver(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "alice");
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->already_delivered);
  EXPECT_EQ(count(t.path() + "/mb/alice/new"), 1u);
  EXPECT_EQ(count(t.path() + "/mb/alice/tmp"), 0u);
  // A second, unrelated mailbox gets its own copy.
  ASSERT_TRUE(md.deliver(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "bob").ok());
  EXPECT_EQ(count(t.path() + "/mb/bob/new"), 1u);
}

TEST(Maildir, CopyAlreadyReadByTheUserCountsAsDelivered) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  auto sp = spool(s, "x\r\n");
  MaildirDeliverer md(t.path() + "/mb", "h");
  auto c = md.deliver(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "alice");
  ASSERT_TRUE(c.ok());
  std::string name = md.name_for(sp.id, "alice");
  std::string current = c->new_path;
  for (const char* info : {":2,", ":2,S", ":2,RS"}) {
    std::string cur = t.path() + "/mb/alice/cur/" + name + info;
    fs::rename(current, cur);  // what an IMAP server does when the user reads it
    current = cur;
    auto again = md.stage(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "alice");
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(again->already_delivered) << info;
  }
  EXPECT_EQ(count(t.path() + "/mb/alice/new"), 0u);
  EXPECT_EQ(count(t.path() + "/mb/alice/cur"), 1u);
  // A name that merely starts with ours (another id) is not a match.
  fs::rename(current, t.path() + "/mb/alice/cur/" + name + "X:2,S");
  auto other = md.stage(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "alice");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->already_delivered);
}

TEST(Maildir, LeftoverTempFromACrashedAttemptIsOverwritten) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  auto sp = spool(s, "the real body\r\n");
  MaildirDeliverer md(t.path() + "/mb", "h");
  fs::create_directories(t.path() + "/mb/alice/tmp");
  testing::spit(t.path() + "/mb/alice/tmp/" + md.name_for(sp.id, "alice"),
                "half of an older attempt that was much longer than the body");
  auto c = md.deliver(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "alice");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(slurp(c->new_path), "the real body\r\n");
}

TEST(Maildir, StagedCopiesAreUnnamedUntilPublished) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  auto sp = spool(s, "the body\r\n");
  MaildirDeliverer md(t.path() + "/mb", "h");
  {
    auto c = md.stage(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "alice");
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_GE(c->unnamed.fd(), 0);  // O_TMPFILE, as on ext4 and tmpfs
    EXPECT_TRUE(c->tmp_path.empty());
    EXPECT_EQ(md.unnamed_open(), 1u);
    EXPECT_EQ(count(t.path() + "/mb/alice/tmp"), 0u);
    EXPECT_EQ(count(t.path() + "/mb/alice/new"), 0u);
    // Never published (a crash, a failed sync): nothing is left with a name.
  }
  EXPECT_EQ(md.unnamed_open(), 0u);
  EXPECT_EQ(count(t.path() + "/mb/alice/new"), 0u);
  // A copy already in new/ under the same name: PublishNeverReplacesAnExistingCopy, which
  // goes through this same unnamed path.
}

TEST(Maildir, BeyondTheCapOfOpenUnnamedCopiesTheyAreStagedAsNamedTempFiles) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  auto sp = spool(s, "to many mailboxes\r\n");
  MaildirDeliverer md(t.path() + "/mb", "h");
  std::vector<StagedCopy> copies;
  const std::size_t n = 140;  // kMaxUnnamed is 128
  for (std::size_t i = 0; i < n; ++i) {
    auto c = md.stage(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "u" + std::to_string(i), false);
    ASSERT_TRUE(c.ok()) << c.error().message;
    copies.push_back(std::move(c.value()));
  }
  EXPECT_EQ(md.unnamed_open(), 128u);
  std::size_t named = 0;
  for (const auto& c : copies) {
    named += c.tmp_path.empty() ? 0 : 1;
  }
  EXPECT_EQ(named, n - 128);
  ASSERT_TRUE(md.sync().ok());
  for (const auto& c : copies) {
    ASSERT_TRUE(md.publish(c).ok());
  }
  ASSERT_TRUE(md.sync().ok());
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_EQ(slurp(copies[i].new_path), "to many mailboxes\r\n") << i;
    EXPECT_EQ(count(t.path() + "/mb/u" + std::to_string(i) + "/tmp"), 0u) << i;
  }
  copies.clear();
  EXPECT_EQ(md.unnamed_open(), 0u);
}

TEST(Maildir, HostileMailboxNamesArePermanentErrors) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  auto sp = spool(s, "x");
  MaildirDeliverer md(t.path() + "/mb", "h");
  for (const char* bad : {"", ".", "..", "../etc", "a/b", ".hidden"}) {
    auto r = md.stage(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_FALSE(r.error().transient()) << bad;
  }
  EXPECT_FALSE(fs::exists(t.path() + "/etc"));
}

TEST(Maildir, UnwritableRootIsTransient) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  auto sp = spool(s, "x");
  testing::spit(t.path() + "/mb", "a file in the way");
  MaildirDeliverer md(t.path() + "/mb", "h");
  auto r = md.stage(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "alice");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().transient());
}

TEST(Maildir, FullMailboxFileSystemIsTransient422) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  auto sp = spool(s, std::string(1u << 20, 'z'));
  std::string mnt = t.path() + "/mb";
  fs::create_directory(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=256k,mode=0700") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << ")";
  }
  struct Unmount {
    std::string p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  MaildirDeliverer md(mnt, "h");
  auto r = md.stage(sp.path, sp.m.body_offset, sp.m.body_length, sp.id, "alice");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().transient());
  EXPECT_EQ(r.error().enhanced, "4.2.2");
  EXPECT_EQ(count(mnt + "/alice/tmp"), 0u);
  EXPECT_EQ(count(mnt + "/alice/new"), 0u);
}

}  // namespace
}  // namespace bh::queue
