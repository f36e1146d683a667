#include "directory/file_directory.h"

#include <gtest/gtest.h>

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
  EXPECT_TRUE(called);
  return out;
}

TEST(FileDirectory, LocalPartIsCaseInsensitive) {
  FileDirectory d({"alice@example.org", "bob@example.org"});
  EXPECT_EQ(resolve(d, "alice@example.org").mailbox, "alice");
  EXPECT_EQ(resolve(d, "ALICE@example.org").kind, RecipientKind::kLocalMailbox);
  EXPECT_EQ(resolve(d, "carol@example.org").kind, RecipientKind::kUnknown);
  EXPECT_EQ(resolve(d, "*@example.org").kind, RecipientKind::kUnknown);
}

TEST(FileDirectory, SharedLocalPartsGetDistinctMailboxes) {
  FileDirectory d({"info@a.example", "info@b.example", "bob@a.example"});
  EXPECT_EQ(resolve(d, "info@a.example").mailbox, "info@a.example");
  EXPECT_EQ(resolve(d, "info@b.example").mailbox, "info@b.example");
  EXPECT_EQ(resolve(d, "bob@a.example").mailbox, "bob");
}

}  // namespace
}  // namespace bh::directory
