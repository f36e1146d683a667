#include "directory/file_directory.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace bh::directory {
namespace {

Resolution resolve(FileDirectory& d, const std::string& a) {
  Resolution out;
  bool called = false;
  d.resolve(a, [&](Result<Resolution> r) {
    called = true;
    ASSERT_TRUE(r.ok());
    out = *r;
  });
  EXPECT_TRUE(called) << "FileDirectory answers before resolve() returns";
  return out;
}

TEST(FileDirectory, KnownAddressIsALocalMailbox) {
  FileDirectory d({"alice@example.org", "bob@example.org"}, {"example.org"});
  auto r = resolve(d, "alice@example.org");
  EXPECT_EQ(r.kind, RecipientKind::kLocalMailbox);
  EXPECT_EQ(r.mailbox, "alice");
  EXPECT_EQ(r.canonical, "alice@example.org");
  EXPECT_EQ(resolve(d, "bob@example.org").mailbox, "bob");
  EXPECT_EQ(d.size(), 2u);
}

TEST(FileDirectory, LocalPartIsCaseInsensitive) {
  FileDirectory d({"alice@example.org", "Bob@example.org"}, {"example.org"});
  EXPECT_EQ(resolve(d, "ALICE@example.org").kind, RecipientKind::kLocalMailbox);
  EXPECT_EQ(resolve(d, "ALICE@example.org").mailbox, "alice");
  EXPECT_EQ(resolve(d, "aLiCe@example.org").mailbox, "alice");
  // Configured with capitals: folder still lower-case, canonical as configured.
  EXPECT_EQ(resolve(d, "bob@example.org").mailbox, "bob");
  EXPECT_EQ(resolve(d, "bob@example.org").canonical, "Bob@example.org");
}

TEST(FileDirectory, UnknownAddressesAreUnknown) {
  FileDirectory d({"alice@example.org"}, {"example.org", "example.net"});
  EXPECT_EQ(resolve(d, "carol@example.org").kind, RecipientKind::kUnknown);
  EXPECT_EQ(resolve(d, "alice@example.net").kind, RecipientKind::kUnknown);
  EXPECT_EQ(resolve(d, "alice@sub.example.org").kind, RecipientKind::kUnknown);
  EXPECT_EQ(resolve(d, "alice").kind, RecipientKind::kUnknown);
  EXPECT_EQ(resolve(d, "*@example.org").kind, RecipientKind::kUnknown);
  EXPECT_EQ(resolve(d, "").kind, RecipientKind::kUnknown);
  EXPECT_TRUE(resolve(d, "carol@example.org").mailbox.empty());
}

TEST(FileDirectory, SharedLocalPartsGetDistinctMailboxes) {
  FileDirectory d({"info@a.example", "Info@b.example", "bob@a.example"}, {"a.example", "b.example"});
  EXPECT_EQ(resolve(d, "info@a.example").mailbox, "info@a.example");
  EXPECT_EQ(resolve(d, "INFO@b.example").mailbox, "info@b.example");
  EXPECT_EQ(resolve(d, "bob@a.example").mailbox, "bob");
}

TEST(FileDirectory, LocalDomains) {
  FileDirectory d({"alice@example.org"}, {"example.org", "example.net"});
  EXPECT_TRUE(d.is_local_domain("example.org"));
  EXPECT_TRUE(d.is_local_domain("example.net"));  // a local domain with no mailbox yet
  EXPECT_FALSE(d.is_local_domain("example.com"));
  EXPECT_FALSE(d.is_local_domain("sub.example.org"));
  EXPECT_FALSE(d.is_local_domain(""));
}

TEST(FileDirectory, LocalDomainsDefaultToTheMailboxDomains) {
  FileDirectory d({"alice@example.org", "bob@example.net"});
  EXPECT_TRUE(d.is_local_domain("example.org"));
  EXPECT_TRUE(d.is_local_domain("example.net"));
  EXPECT_FALSE(d.is_local_domain("example.com"));
}

TEST(FileDirectory, EmptyDirectoryKnowsNobody) {
  FileDirectory d({}, {"example.org"});
  EXPECT_EQ(resolve(d, "alice@example.org").kind, RecipientKind::kUnknown);
  EXPECT_TRUE(d.is_local_domain("example.org"));
}

TEST(FileDirectory, ConcurrentLookups) {
  FileDirectory d({"alice@example.org", "bob@example.org"}, {"example.org"});
  std::vector<std::thread> threads;
  std::atomic<int> found{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        d.resolve(i % 2 ? "ALICE@example.org" : "nobody@example.org", [&](Result<Resolution> r) {
          if (r.ok() && r->kind == RecipientKind::kLocalMailbox) {
            found++;
          }
        });
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(found.load(), 2000);
}

}  // namespace
}  // namespace bh::directory
