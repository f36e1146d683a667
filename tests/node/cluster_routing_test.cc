#include "node/cluster_routing.h"

#include <gtest/gtest.h>

#include <chrono>

#include "common/clock.h"
#include "linkstate/database.h"

namespace bh::node {
namespace {

using namespace std::chrono_literals;
using linkstate::Connector;
using linkstate::RoutingGroup;

Connector rgc(std::string id, std::string to, int cost, std::vector<std::string> sources,
              std::vector<std::string> targets) {
  Connector c;
  c.id = std::move(id);
  c.target_group = std::move(to);
  c.cost = cost;
  for (auto& s : sources) {
    c.sources.push_back({std::move(s), true});
  }
  c.target_bridgeheads = std::move(targets);
  return c;
}

// The sample organization of deploy/ldap/sample-organization.ldif: three routing groups
// of two nodes; rg1-rg2 and rg2-rg3 cost 10, rg1-rg3 cost 30; node2, node4 and node6
// are the bridgeheads.
class ClusterRouting : public ::testing::Test {
 protected:
  ClusterRouting() : db_(clock_, linkstate::DbOptions{0ms, {}}) {
    add("rg1", {"node1", "node2"},
        {rgc("rg1-rg2", "rg2", 10, {"node2"}, {"node4"}),
         rgc("rg1-rg3", "rg3", 30, {"node2"}, {"node6"})});
    add("rg2", {"node3", "node4"},
        {rgc("rg2-rg1", "rg1", 10, {"node4"}, {"node2"}),
         rgc("rg2-rg3", "rg3", 10, {"node4"}, {"node6"})});
    add("rg3", {"node5", "node6"},
        {rgc("rg3-rg1", "rg1", 30, {"node6"}, {"node2"}),
         rgc("rg3-rg2", "rg2", 10, {"node6"}, {"node4"})});
  }
  void add(std::string name, std::vector<std::string> members, std::vector<Connector> connectors) {
    RoutingGroup g;
    g.name = std::move(name);
    g.members = std::move(members);
    g.master = g.members.front();
    g.connectors = std::move(connectors);
    ASSERT_TRUE(db_.set_config(g).ok());
  }
  linkstate::Routes routes(const std::string& group) {
    auto r = linkstate::compute_routes(db_.snapshot(), group);
    EXPECT_TRUE(r.ok());
    return std::move(r.value());
  }
  void down(const std::string& group, const std::string& connector, const std::string& node) {
    ASSERT_TRUE(db_.report(group, connector, node, false).ok());
    db_.tick();
  }

  ManualClock clock_;
  linkstate::LinkStateDb db_;
};

TEST_F(ClusterRouting, NodeConnectorNamesRoundTrip) {
  EXPECT_EQ(node_connector_name("node4"), "node.node4");
  EXPECT_EQ(node_of_connector("node.node4"), "node4");
  EXPECT_EQ(node_of_connector("node."), "");
  EXPECT_EQ(node_of_connector("internet"), "");
}

TEST_F(ClusterRouting, SameGroupGoesStraightToTheHomeServer) {
  auto r = routes("rg1");
  auto h = hop_to_server(r, "node1", "node2", 0);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->node, "node2");
  EXPECT_EQ(h->connector, "");
  auto upper = hop_to_server(r, "node1", "NODE2", 0);  // directories differ in case
  ASSERT_TRUE(upper.ok());
  EXPECT_EQ(upper->node, "node2");
}

TEST_F(ClusterRouting, ANonBridgeheadHandsMailForAnotherGroupToItsBridgehead) {
  auto r = routes("rg1");
  auto h = hop_to_server(r, "node1", "node3", 7);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->node, "node2");  // the source bridgehead of rg1-rg2
  EXPECT_EQ(h->connector, "");  // no connector crossed yet
}

TEST_F(ClusterRouting, TheSourceBridgeheadCrossesToTheTargetBridgehead) {
  auto r = routes("rg1");
  auto h = hop_to_server(r, "node2", "node3", 0);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->node, "node4");
  EXPECT_EQ(h->connector, "rg1-rg2");
  // The home server is the target bridgehead itself: one hop.
  auto direct = hop_to_server(r, "node2", "node4", 0);
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(direct->node, "node4");
  EXPECT_EQ(direct->connector, "rg1-rg2");
}

TEST_F(ClusterRouting, TheCheapestPathToAFarGroupGoesThroughTheMiddleGroup) {
  // rg1 -> rg3: through rg2 (10 + 10) rather than direct (30).
  auto r = routes("rg1");
  auto h = hop_to_server(r, "node2", "node5", 0);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->node, "node4");
  EXPECT_EQ(h->connector, "rg1-rg2");
  // node4 then takes it on to rg3's target bridgehead.
  auto r2 = routes("rg2");
  auto next = hop_to_server(r2, "node4", "node5", 0);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->node, "node6");
  EXPECT_EQ(next->connector, "rg2-rg3");
  // And node6 to the home server inside rg3.
  auto last = hop_to_server(routes("rg3"), "node6", "node5", 0);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->node, "node5");
  EXPECT_EQ(last->connector, "");
}

TEST_F(ClusterRouting, ADownConnectorReroutesThroughTheOtherPath) {
  down("rg1", "rg1-rg2", "node2");
  auto r = routes("rg1");
  auto h = hop_to_server(r, "node2", "node5", 0);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->node, "node6");
  EXPECT_EQ(h->connector, "rg1-rg3");
  // rg2 is still reachable the long way round (rg1 -> rg3 -> rg2).
  auto far = hop_to_server(r, "node2", "node3", 0);
  ASSERT_TRUE(far.ok());
  EXPECT_EQ(far->node, "node6");
  EXPECT_EQ(far->connector, "rg1-rg3");
}

TEST_F(ClusterRouting, NoLivePathIsTransientNeverABounce) {
  down("rg1", "rg1-rg2", "node2");
  down("rg1", "rg1-rg3", "node2");
  auto h = hop_to_server(routes("rg1"), "node1", "node5", 0);
  ASSERT_FALSE(h.ok());
  EXPECT_TRUE(h.error().transient());
  EXPECT_EQ(h.error().enhanced, "4.4.4");
}

TEST_F(ClusterRouting, AnUnknownServerWaitsAndThisNodeIsALoop) {
  auto r = routes("rg1");
  auto unknown = hop_to_server(r, "node1", "node9", 0);
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(unknown.error().transient());
  EXPECT_EQ(unknown.error().enhanced, "4.4.4");
  auto self = hop_to_server(r, "node1", "node1", 0);
  ASSERT_FALSE(self.ok());
  EXPECT_FALSE(self.error().transient());
  EXPECT_EQ(self.error().enhanced, "5.4.6");
}

TEST_F(ClusterRouting, EqualChoicesAreSharedByPick) {
  // Two source bridgeheads and two target bridgeheads on a new rg1 -> rg2 connector.
  add("rg1", {"node1", "node2"},
      {rgc("rg1-rg2", "rg2", 10, {"node1", "node2"}, {"node3", "node4"})});
  auto r = routes("rg1");
  auto a = hop_to_server(r, "node1", "node3", 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->node, "node3");  // a target bridgehead that is the home server wins
  std::set<std::string> seen;
  for (std::uint64_t pick = 0; pick < 4; ++pick) {
    auto t = hop_towards(r, "node1", "rg2", {"node3", "node4"}, pick);
    ASSERT_TRUE(t.ok());
    seen.insert(t->node);
  }
  EXPECT_EQ(seen, (std::set<std::string>{"node3", "node4"}));
}

TEST_F(ClusterRouting, ExternalMailLeavesThroughAnotherGroupsConnector) {
  // An SMTP connector "internet" in rg3 with node5 as its source bridgehead.
  Connector inet;
  inet.id = "internet";
  inet.cost = 5;
  inet.sources = {{"node5", true}};
  inet.address_spaces = {{*routing::AddressSpace::parse("*"), 20}};
  add("rg3", {"node5", "node6"},
      {rgc("rg3-rg1", "rg1", 30, {"node6"}, {"node2"}),
       rgc("rg3-rg2", "rg2", 10, {"node6"}, {"node4"}), inet});
  auto from_rg3 = hop_to_connector(routes("rg3"), "node6", "rg3", "internet", 0);
  ASSERT_TRUE(from_rg3.ok());
  EXPECT_EQ(from_rg3->node, "node5");
  auto from_rg1 = hop_to_connector(routes("rg1"), "node1", "rg3", "internet", 0);
  ASSERT_TRUE(from_rg1.ok());
  EXPECT_EQ(from_rg1->node, "node2");
  EXPECT_TRUE(is_source_bridgehead(routes("rg1"), "rg3", "internet", "NODE5"));
  EXPECT_FALSE(is_source_bridgehead(routes("rg1"), "rg3", "internet", "node6"));
  EXPECT_FALSE(is_source_bridgehead(routes("rg1"), "rg3", "nope", "node5"));
  auto missing = hop_to_connector(routes("rg1"), "node1", "rg3", "nope", 0);
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.error().transient());
}

}  // namespace
}  // namespace bh::node
