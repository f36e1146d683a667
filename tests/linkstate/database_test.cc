#include "linkstate/database.h"

#include <gtest/gtest.h>

#include <chrono>

#include "common/clock.h"

namespace bh::linkstate {
namespace {

using namespace std::chrono_literals;

routing::AddressSpace space(const char* p) { return routing::AddressSpace::parse(p).value(); }

RoutingGroup group_a() {
  RoutingGroup g;
  g.name = "A";
  g.master = "a1";
  g.members = {"a2", "a1"};
  Connector ab;
  ab.id = "ab";
  ab.target_group = "B";
  ab.cost = 10;
  ab.sources = {{"a2", true}, {"a1", true}};
  ab.target_bridgeheads = {"b1"};
  Connector inet;
  inet.id = "inet";
  inet.cost = 1;
  inet.sources = {{"a1", true}};
  inet.address_spaces = {{space("*"), 5}, {space("*.example.com"), 1}};
  g.connectors = {inet, ab};
  return g;
}

RoutingGroup group_b() {
  RoutingGroup g;
  g.name = "B";
  g.master = "b1";
  g.members = {"b1"};
  return g;
}

TEST(Version, ComparesMajorThenMinorThenUser) {
  EXPECT_LT((Version{1, 9, 9}), (Version{2, 0, 0}));
  EXPECT_LT((Version{1, 1, 9}), (Version{1, 2, 0}));
  EXPECT_LT((Version{1, 1, 1}), (Version{1, 1, 2}));
  EXPECT_EQ((Version{3, 2, 1}).str(), "3.2.1");
}

TEST(Normalize, SortsAndRefusesBadEntries) {
  auto ok = normalize(group_a());
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->members, (std::vector<std::string>{"a1", "a2"}));
  EXPECT_EQ(ok->connectors[0].id, "ab");
  EXPECT_EQ(ok->connectors[0].sources[0].node, "a1");
  EXPECT_EQ(ok->connectors[1].address_spaces[0].space.str(), "*");

  auto broken = [](auto edit) {
    RoutingGroup g = group_a();
    edit(g);
    return normalize(std::move(g));
  };
  EXPECT_FALSE(broken([](RoutingGroup& g) { g.connectors[1].cost = 0; }).ok());
  EXPECT_FALSE(broken([](RoutingGroup& g) { g.connectors[1].cost = 101; }).ok());
  EXPECT_FALSE(broken([](RoutingGroup& g) { g.connectors[0].address_spaces[0].cost = 0; }).ok());
  EXPECT_FALSE(broken([](RoutingGroup& g) { g.master = "b1"; }).ok());
  EXPECT_FALSE(broken([](RoutingGroup& g) { g.members.push_back("a1"); }).ok());
  EXPECT_FALSE(broken([](RoutingGroup& g) { g.name = "has space"; }).ok());
  EXPECT_FALSE(broken([](RoutingGroup& g) { g.name = std::string(129, 'x'); }).ok());
  EXPECT_FALSE(broken([](RoutingGroup& g) { g.connectors[1].id = "inet"; }).ok());
  EXPECT_FALSE(broken([](RoutingGroup& g) { g.connectors[1].sources.clear(); }).ok());
  EXPECT_FALSE(broken([](RoutingGroup& g) { g.connectors[1].target_group = "A"; }).ok());
  EXPECT_FALSE(broken([](RoutingGroup& g) { g.connectors[0].address_spaces.clear(); }).ok());
  EXPECT_FALSE(broken([](RoutingGroup& g) {
                 g.connectors[0].address_spaces.push_back({space("*"), 3});
               }).ok());
  TableLimits small;
  small.max_members = 1;
  EXPECT_FALSE(normalize(group_a(), small).ok());
}

TEST(Digest, StableAcrossInsertionOrderAndChangesWithContent) {
  ManualClock clock;
  LinkStateDb one(clock, DbOptions{0ms, {}});
  LinkStateDb two(clock, DbOptions{0ms, {}});
  RoutingGroup a = group_a();
  a.version = {1, 0, 0};
  RoutingGroup b = group_b();
  b.version = {1, 0, 0};
  ASSERT_EQ(one.apply(a).value(), ApplyOutcome::kApplied);
  ASSERT_EQ(one.apply(b).value(), ApplyOutcome::kApplied);
  ASSERT_EQ(two.apply(b).value(), ApplyOutcome::kApplied);
  std::reverse(a.members.begin(), a.members.end());  // order on input does not matter
  ASSERT_EQ(two.apply(a).value(), ApplyOutcome::kApplied);
  EXPECT_EQ(one.snapshot()->digest(), two.snapshot()->digest());
  EXPECT_EQ(hex(one.snapshot()->digest()).size(), 64u);

  const Hash before = one.snapshot()->digest();
  ASSERT_TRUE(one.report("A", "ab", "a1", false).ok());
  EXPECT_NE(one.snapshot()->digest(), before);
}

TEST(Digest, IncrementalDigestEqualsAFullRecomputation) {
  ManualClock clock;
  LinkStateDb db(clock, DbOptions{0ms, {}});
  ASSERT_TRUE(db.set_config(group_a()).ok());
  ASSERT_TRUE(db.set_config(group_b()).ok());
  ASSERT_TRUE(db.report("A", "ab", "a1", false).ok());
  RoutingGroup c = group_b();
  c.name = "C";
  ASSERT_TRUE(db.set_config(c).ok());
  ASSERT_TRUE(db.report("A", "ab", "a1", true).ok());
  auto snap = db.snapshot();
  auto fresh = Snapshot::build(snap->groups(), 0);  // no previous: every hash computed
  EXPECT_EQ(fresh->digest(), snap->digest());
  EXPECT_EQ(table_digest(snap->groups(),
                         [](const auto& item) -> const RoutingGroup& { return *item.second; }),
            snap->digest());
}

TEST(Apply, NewerWinsOlderIsStaleSameIsNoop) {
  ManualClock clock;
  LinkStateDb db(clock, DbOptions{0ms, {}});
  RoutingGroup a = group_a();
  a.version = {2, 5, 1};
  ASSERT_EQ(db.apply(a).value(), ApplyOutcome::kApplied);
  const auto gen = db.snapshot()->generation();
  EXPECT_EQ(db.apply(a).value(), ApplyOutcome::kSame);
  EXPECT_EQ(db.snapshot()->generation(), gen);  // nothing published

  RoutingGroup older = group_a();
  older.version = {2, 4, 9};
  older.connectors[0].cost = 99;
  EXPECT_EQ(db.apply(older).value(), ApplyOutcome::kStale);
  EXPECT_EQ(db.find("A")->version, (Version{2, 5, 1}));

  RoutingGroup newer = group_a();
  newer.version = {3, 0, 0};
  newer.connectors[0].cost = 99;
  EXPECT_EQ(db.apply(newer).value(), ApplyOutcome::kApplied);
  EXPECT_EQ(db.find("A")->find("inet")->cost, 99);

  RoutingGroup invalid = group_a();
  invalid.version = {9, 0, 0};
  invalid.connectors[0].cost = 0;
  EXPECT_FALSE(db.apply(invalid).ok());
  EXPECT_EQ(db.find("A")->version, (Version{3, 0, 0}));
}

TEST(Apply, EqualVersionsWithDifferentContentConvergeEverywhere) {
  ManualClock clock;
  RoutingGroup x = group_a();
  x.version = {4, 0, 0};
  RoutingGroup y = x;
  y.connectors[0].cost = 42;  // two masters bumped to the same version independently
  LinkStateDb one(clock, DbOptions{0ms, {}});
  LinkStateDb two(clock, DbOptions{0ms, {}});
  ASSERT_TRUE(one.apply(x).ok());
  ASSERT_TRUE(two.apply(y).ok());
  const ApplyOutcome o1 = one.apply(y).value();
  const ApplyOutcome o2 = two.apply(x).value();
  // Exactly one side takes the other's entry; both end with the same table.
  EXPECT_TRUE((o1 == ApplyOutcome::kTieWon && o2 == ApplyOutcome::kTieLost) ||
              (o1 == ApplyOutcome::kTieLost && o2 == ApplyOutcome::kTieWon));
  EXPECT_EQ(one.snapshot()->digest(), two.snapshot()->digest());
}

TEST(Apply, AWholeTableIsMergedAndPublishedOnce) {
  ManualClock clock;
  LinkStateDb db(clock, DbOptions{0ms, {}});
  RoutingGroup a = group_a();
  a.version = {2, 0, 0};
  ASSERT_TRUE(db.apply(a).ok());
  const auto gen = db.snapshot()->generation();

  RoutingGroup old_a = group_a();
  old_a.version = {1, 0, 0};
  RoutingGroup b = group_b();
  b.version = {1, 0, 0};
  RoutingGroup bad = group_b();
  bad.name = "C";
  bad.master = "nobody";
  RoutingGroup d = group_b();
  d.name = "D";
  const auto sum = db.apply_all({old_a, b, bad, d});
  EXPECT_EQ(sum.applied, 2u);
  EXPECT_EQ(sum.stale, 1u);
  EXPECT_EQ(sum.refused, 1u);
  EXPECT_EQ(db.snapshot()->generation(), gen + 1);
  EXPECT_EQ(db.snapshot()->groups().size(), 3u);
  EXPECT_EQ(db.find("A")->version, (Version{2, 0, 0}));
  // Nothing new: nothing published.
  EXPECT_EQ(db.apply_all({old_a, b}).applied, 0u);
  EXPECT_EQ(db.snapshot()->generation(), gen + 1);
}

TEST(Apply, TableLimitRefusesNewGroups) {
  ManualClock clock;
  DbOptions opts{0ms, {}};
  opts.limits.max_groups = 1;
  LinkStateDb db(clock, opts);
  ASSERT_TRUE(db.apply(group_a()).ok());
  EXPECT_FALSE(db.apply(group_b()).ok());
  EXPECT_EQ(db.snapshot()->groups().size(), 1u);
}

TEST(Snapshot, OldSnapshotsStayAsTheyWere) {
  ManualClock clock;
  LinkStateDb db(clock, DbOptions{0ms, {}});
  ASSERT_TRUE(db.set_config(group_a()).ok());
  auto old = db.snapshot();
  ASSERT_TRUE(db.report("A", "ab", "a1", false).ok());
  ASSERT_TRUE(db.report("A", "ab", "a2", false).ok());
  EXPECT_TRUE(old->find("A")->find("ab")->up());
  EXPECT_FALSE(db.snapshot()->find("A")->find("ab")->up());
  EXPECT_GT(db.snapshot()->generation(), old->generation());
}

TEST(SetConfig, MajorForTopologyUserForMembershipStateKept) {
  ManualClock clock;
  LinkStateDb db(clock, DbOptions{0ms, {}});
  EXPECT_TRUE(db.set_config(group_a()).value());
  EXPECT_EQ(db.find("A")->version, (Version{1, 0, 0}));
  EXPECT_FALSE(db.set_config(group_a()).value());  // nothing new

  ASSERT_TRUE(db.report("A", "ab", "a1", false).ok());
  EXPECT_EQ(db.find("A")->version, (Version{1, 1, 0}));

  RoutingGroup members = group_a();
  members.members.push_back("a3");
  EXPECT_TRUE(db.set_config(members).value());
  EXPECT_EQ(db.find("A")->version, (Version{1, 1, 1}));
  // a1's reported state survives a configuration that still has it.
  EXPECT_FALSE(db.find("A")->find("ab")->sources[0].up);

  RoutingGroup costs = members;
  costs.connectors[1].cost = 20;
  EXPECT_TRUE(db.set_config(costs).value());
  EXPECT_EQ(db.find("A")->version, (Version{2, 1, 1}));
  EXPECT_FALSE(db.find("A")->find("ab")->sources[0].up);
  EXPECT_EQ(db.find("A")->find("ab")->cost, 20);

  EXPECT_TRUE(db.remove_group("A"));
  EXPECT_FALSE(db.remove_group("A"));
  EXPECT_EQ(db.snapshot()->find("A"), nullptr);
}

TEST(Report, UnknownGroupConnectorOrSourceIsAnError) {
  ManualClock clock;
  LinkStateDb db(clock, DbOptions{0ms, {}});
  ASSERT_TRUE(db.set_config(group_a()).ok());
  EXPECT_FALSE(db.report("Z", "ab", "a1", false).ok());
  EXPECT_FALSE(db.report("A", "zz", "a1", false).ok());
  EXPECT_FALSE(db.report("A", "ab", "b1", false).ok());
  EXPECT_FALSE(db.report("A", "ab", "a1", true).value());  // already up: no change
}

TEST(Damping, ChangeWaitsForHoldDownAndFlapsAreSuppressed) {
  ManualClock clock;
  LinkStateDb db(clock, DbOptions{30s, {}});
  ASSERT_TRUE(db.set_config(group_a()).ok());
  const auto t0 = clock.now();

  EXPECT_FALSE(db.report("A", "inet", "a1", false).value());
  EXPECT_EQ(db.pending(), 1u);
  EXPECT_EQ(db.next_deadline(), t0 + 30s);
  clock.advance(29s);
  EXPECT_FALSE(db.tick());
  EXPECT_TRUE(db.find("A")->find("inet")->up());

  // Back up before the hold-down ran out: the flap never reaches the table.
  EXPECT_FALSE(db.report("A", "inet", "a1", true).value());
  EXPECT_EQ(db.pending(), 0u);
  EXPECT_EQ(db.next_deadline(), std::nullopt);
  clock.advance(60s);
  EXPECT_FALSE(db.tick());
  EXPECT_EQ(db.find("A")->version, (Version{1, 0, 0}));

  // Down and staying down: one minor bump after the hold-down; repeated reports of the
  // same state do not restart the hold-down.
  const auto t1 = clock.now();
  EXPECT_FALSE(db.report("A", "inet", "a1", false).value());
  clock.advance(20s);
  EXPECT_FALSE(db.report("A", "inet", "a1", false).value());
  EXPECT_FALSE(db.report("A", "ab", "a1", false).value());
  EXPECT_EQ(db.next_deadline(), t1 + 30s);
  clock.advance(10s);
  EXPECT_TRUE(db.tick());
  EXPECT_FALSE(db.find("A")->find("inet")->up());
  EXPECT_TRUE(db.find("A")->find("ab")->sources[0].up);  // its own hold-down still runs
  EXPECT_EQ(db.find("A")->version, (Version{1, 1, 0}));
  EXPECT_EQ(db.find("A")->find("inet")->changed_at,
            std::chrono::time_point_cast<std::chrono::milliseconds>(clock.now()));
  clock.advance(20s);
  EXPECT_TRUE(db.tick());
  EXPECT_FALSE(db.find("A")->find("ab")->sources[0].up);
  EXPECT_TRUE(db.find("A")->find("ab")->up());  // a2 still sends
  EXPECT_EQ(db.find("A")->version, (Version{1, 2, 0}));
}

TEST(Damping, ApplyingANewerEntryDropsPendingReports) {
  ManualClock clock;
  LinkStateDb db(clock, DbOptions{30s, {}});
  ASSERT_TRUE(db.set_config(group_a()).ok());
  EXPECT_FALSE(db.report("A", "inet", "a1", false).value());
  RoutingGroup newer = group_a();
  newer.version = {5, 0, 0};
  ASSERT_EQ(db.apply(newer).value(), ApplyOutcome::kApplied);
  EXPECT_EQ(db.pending(), 0u);
}

}  // namespace
}  // namespace bh::linkstate
