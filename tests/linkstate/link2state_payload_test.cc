// The X-LINK2STATE payload between two routing groups' bridgeheads, carried through the
// real chunk machine of smtp/link2state.h (split on one side, reassembled on the other).
#include "linkstate/link2state_payload.h"

#include <gtest/gtest.h>

#include <chrono>

#include "smtp/link2state.h"

namespace bh::linkstate {
namespace {

using namespace std::chrono_literals;

RoutingGroup group(std::string name, Version v, std::string target = "") {
  RoutingGroup g;
  g.name = std::move(name);
  g.version = v;
  if (!target.empty()) {
    Connector c;
    c.id = g.name + "-" + target;
    c.target_group = std::move(target);
    c.cost = 3;
    c.sources = {{"n-" + g.name, true}};
    g.connectors = {c};
  }
  return g;
}

// One X-LINK2STATE transfer: split into command lines, fed to a receiver, reassembled.
std::string over_smtp(const std::string& payload) {
  auto lines = smtp::split_link2state(payload);
  EXPECT_TRUE(lines.ok());
  smtp::Link2StateReceiver receiver;
  smtp::Link2StateReceiver::Step step;
  for (const auto& l : *lines) {
    EXPECT_LE(l.size() + 2, 1024u);
    step = receiver.feed(std::string_view(l).substr(smtp::kLink2StateVerb.size() + 1));
  }
  EXPECT_EQ(step.status, smtp::Link2StateStatus::kComplete);
  return step.payload;
}

struct TwoGroups {
  ManualClock clock;
  LinkStateDb client{clock, DbOptions{0ms, {}}};
  LinkStateDb server{clock, DbOptions{0ms, {}}};

  // The client opens with its digest; replies go back and forth until neither side has
  // anything to add. Returns the number of payloads that travelled.
  int exchange() {
    std::string payload = link2state_digest(*client.snapshot(), "org");
    int n = 0;
    bool to_server = true;
    while (n < 10) {
      ++n;
      auto r = handle_link2state(to_server ? server : client, over_smtp(payload), "org");
      EXPECT_TRUE(r.ok()) << r.error().message;
      if (!r.ok() || !r->reply) {
        break;
      }
      payload = *r->reply;
      to_server = !to_server;
    }
    return n;
  }
};

TEST(Link2StatePayload, EqualTablesExchangeOnlyTheDigest) {
  TwoGroups t;
  ASSERT_TRUE(t.client.apply(group("A", {1, 0, 0}, "B")).ok());
  ASSERT_TRUE(t.server.apply(group("A", {1, 0, 0}, "B")).ok());
  EXPECT_EQ(t.exchange(), 1);
}

TEST(Link2StatePayload, OneExchangeUpdatesBothSides) {
  TwoGroups t;
  ASSERT_TRUE(t.client.apply(group("A", {2, 0, 0}, "B")).ok());
  ASSERT_TRUE(t.client.apply(group("C", {1, 0, 0})).ok());
  ASSERT_TRUE(t.server.apply(group("A", {1, 0, 0}, "B")).ok());
  ASSERT_TRUE(t.server.apply(group("B", {5, 1, 0}, "A")).ok());
  // digest ->, server's table <-, client's merged table ->, nothing back.
  EXPECT_EQ(t.exchange(), 3);
  EXPECT_EQ(t.client.snapshot()->digest(), t.server.snapshot()->digest());
  EXPECT_EQ(t.server.find("A")->version, (Version{2, 0, 0}));
  EXPECT_NE(t.client.find("B"), nullptr);
  EXPECT_NE(t.server.find("C"), nullptr);
}

TEST(Link2StatePayload, AThousandGroupsFitTheDefaultChunkLimits) {
  TwoGroups t;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(t.server
                    .apply(group("rg" + std::to_string(i), {1, 0, 0},
                                 "rg" + std::to_string((i + 1) % 1000)))
                    .ok());
  }
  EXPECT_EQ(t.exchange(), 2);
  EXPECT_EQ(t.client.snapshot()->digest(), t.server.snapshot()->digest());
}

TEST(Link2StatePayload, ASmallerTableLimitEndsTheExchange) {
  ManualClock clock;
  TableLimits one;
  one.max_groups = 1;
  LinkStateDb small(clock, DbOptions{0ms, one});
  LinkStateDb big(clock, DbOptions{0ms, {}});
  ASSERT_TRUE(big.apply(group("A", {1, 0, 0})).ok());
  ASSERT_TRUE(big.apply(group("B", {1, 0, 0})).ok());
  auto r = handle_link2state(small, link2state_table(*big.snapshot(), "org"), "org");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->applied, 1u);
  EXPECT_FALSE(r->reply.has_value());  // nothing the big side lacks: no answer
}

TEST(Link2StatePayload, HostilePayloadsChangeNothing) {
  ManualClock clock;
  LinkStateDb db(clock, DbOptions{0ms, {}});
  ASSERT_TRUE(db.apply(group("A", {1, 0, 0})).ok());
  const Hash before = db.snapshot()->digest();

  LinkStateDb other(clock, DbOptions{0ms, {}});
  ASSERT_TRUE(other.apply(group("A", {9, 0, 0}, "B")).ok());
  ASSERT_TRUE(other.apply(group("B", {9, 0, 0})).ok());
  const std::string good = link2state_table(*other.snapshot(), "org");

  proto::LsLink2State altered;
  ASSERT_TRUE(altered.ParseFromString(good));
  altered.mutable_org_info()->mutable_groups(0)->mutable_connectors(0)->set_cost(7);
  proto::LsLink2State invalid;
  ASSERT_TRUE(invalid.ParseFromString(good));
  invalid.mutable_org_info()->mutable_groups(0)->mutable_connectors(0)->set_cost(0);
  proto::LsLink2State v2;
  ASSERT_TRUE(v2.ParseFromString(good));
  v2.set_protocol(static_cast<proto::LsProtocol>(2));
  proto::LsLink2State empty;
  empty.set_protocol(proto::LS_PROTOCOL_V1);
  empty.set_organization("org");

  for (const std::string& payload :
       {std::string("\xff\xff\xff", 3), altered.SerializeAsString(), invalid.SerializeAsString(),
        v2.SerializeAsString(), empty.SerializeAsString(),
        link2state_table(*other.snapshot(), "another-org")}) {
    auto r = handle_link2state(db, payload, "org");
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(db.snapshot()->digest(), before);
  }
  // The untouched payload is accepted.
  auto r = handle_link2state(db, good, "org");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->applied, 2u);
  EXPECT_FALSE(r->reply.has_value());
}

TEST(Link2StatePayload, StaleTableIsIgnoredAndAnsweredWithOurs) {
  ManualClock clock;
  LinkStateDb db(clock, DbOptions{0ms, {}});
  ASSERT_TRUE(db.apply(group("A", {5, 0, 0})).ok());
  LinkStateDb old(clock, DbOptions{0ms, {}});
  ASSERT_TRUE(old.apply(group("A", {4, 0, 0}, "B")).ok());
  auto r = handle_link2state(db, link2state_table(*old.snapshot(), "org"), "org");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->applied, 0u);
  ASSERT_TRUE(r->reply.has_value());
  EXPECT_EQ(db.find("A")->version, (Version{5, 0, 0}));
}

}  // namespace
}  // namespace bh::linkstate
