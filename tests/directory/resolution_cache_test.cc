// ResolutionCache: TTL per kind, LRU bound, counters, on a ManualClock.
#include "directory/resolution_cache.h"

#include <gtest/gtest.h>

namespace bh::directory {
namespace {

using std::chrono::seconds;

Resolution found(const std::string& box) {
  Resolution r;
  r.kind = RecipientKind::kLocalMailbox;
  r.canonical = box + "@example.test";
  r.mailbox = box;
  return r;
}

TEST(ResolutionCache, HitWithinTtlMissAfter) {
  ManualClock clock;
  ResolutionCache c(clock, {seconds(300), seconds(60), 100});
  EXPECT_FALSE(c.get("a@example.test"));
  c.put("a@example.test", found("a"));
  clock.advance(seconds(299));
  auto hit = c.get("a@example.test");
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->mailbox, "a");
  clock.advance(seconds(1));
  EXPECT_FALSE(c.get("a@example.test"));
  auto n = c.counters();
  EXPECT_EQ(n.hits, 1u);
  EXPECT_EQ(n.misses, 2u);
  EXPECT_EQ(n.expired, 1u);
  EXPECT_EQ(n.size, 0u);
}

TEST(ResolutionCache, NegativeEntriesUseTheirOwnTtl) {
  ManualClock clock;
  ResolutionCache c(clock, {seconds(300), seconds(60), 100});
  c.put("nobody@example.test", Resolution{});
  clock.advance(seconds(59));
  ASSERT_TRUE(c.get("nobody@example.test"));
  EXPECT_EQ(c.get("nobody@example.test")->kind, RecipientKind::kUnknown);
  clock.advance(seconds(1));
  EXPECT_FALSE(c.get("nobody@example.test"));
}

TEST(ResolutionCache, ZeroTtlOrSizeDisables) {
  ManualClock clock;
  ResolutionCache no_negative(clock, {seconds(300), seconds(0), 100});
  no_negative.put("x@example.test", Resolution{});
  EXPECT_FALSE(no_negative.get("x@example.test"));
  no_negative.put("y@example.test", found("y"));
  EXPECT_TRUE(no_negative.get("y@example.test"));
  ResolutionCache off(clock, {seconds(300), seconds(60), 0});
  off.put("y@example.test", found("y"));
  EXPECT_FALSE(off.get("y@example.test"));
  EXPECT_EQ(off.counters().size, 0u);
}

TEST(ResolutionCache, SizeBoundEvictsLeastRecentlyUsed) {
  ManualClock clock;
  ResolutionCache c(clock, {seconds(300), seconds(60), 3});
  c.put("a", found("a"));
  c.put("b", found("b"));
  c.put("c", found("c"));
  ASSERT_TRUE(c.get("a"));  // a is now the most recent; b the least
  c.put("d", found("d"));
  EXPECT_FALSE(c.get("b"));
  EXPECT_TRUE(c.get("a"));
  EXPECT_TRUE(c.get("c"));
  EXPECT_TRUE(c.get("d"));
  auto n = c.counters();
  EXPECT_EQ(n.evictions, 1u);
  EXPECT_EQ(n.size, 3u);
  // A flood of distinct keys never grows it past the bound.
  for (int i = 0; i < 1000; ++i) {
    c.put("flood" + std::to_string(i) + "@example.test", Resolution{});
  }
  EXPECT_EQ(c.counters().size, 3u);
}

TEST(ResolutionCache, PutRefreshesTtlAndValue) {
  ManualClock clock;
  ResolutionCache c(clock, {seconds(100), seconds(100), 10});
  c.put("a", Resolution{});
  clock.advance(seconds(90));
  c.put("a", found("a"));
  clock.advance(seconds(90));
  auto hit = c.get("a");
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->kind, RecipientKind::kLocalMailbox);
  EXPECT_EQ(c.counters().size, 1u);
}

}  // namespace
}  // namespace bh::directory
