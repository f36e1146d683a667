// TopologyReader::build over hand-made entries: groups, members from their servers,
// connectors with costs, bridgeheads and address spaces; bad objects skipped with a
// reason naming their DN; a digest that changes with the topology and only with it.
// Against a real slapd: tests/integration/test_topology.py.
#include "directory/topology_reader.h"

#include <gtest/gtest.h>

namespace bh::directory {
namespace {

LdapEntry obj(const std::string& dn, const std::string& cls,
              std::vector<std::pair<std::string, std::vector<std::string>>> attrs) {
  LdapEntry e;
  e.dn = dn;
  e.attributes["objectclass"] = {"top", cls};
  for (auto& [k, v] : attrs) {
    e.attributes[k] = v;
  }
  return e;
}

std::vector<LdapEntry> org() {
  return {
      obj("cn=rg1,ou=config", "bhRoutingGroup", {{"cn", {"rg1"}}, {"bhmaster", {"node1"}}}),
      obj("cn=rg2,ou=config", "bhRoutingGroup", {{"cn", {"rg2"}}}),
      obj("cn=node1,cn=rg1", "bhServer",
          {{"cn", {"node1"}},
           {"bhroutinggroupname", {"RG1"}},
           {"bhsmtpaddress", {"127.0.0.11:25"}}}),
      obj("cn=node2,cn=rg1", "bhServer", {{"cn", {"node2"}}, {"bhroutinggroupname", {"rg1"}}}),
      obj("cn=node3,cn=rg2", "bhServer", {{"cn", {"node3"}}, {"bhroutinggroupname", {"rg2"}}}),
      obj("cn=rg1-rg2,cn=rg1", "bhConnector",
          {{"cn", {"rg1-rg2"}},
           {"bhroutinggroupname", {"rg1"}},
           {"bhtargetgroup", {"rg2"}},
           {"bhcost", {"10"}},
           {"bhsourcebridgehead", {"node2", "node1"}},
           {"bhtargetbridgehead", {"node3"}}}),
      obj("cn=internet,cn=rg2", "bhConnector",
          {{"cn", {"internet"}},
           {"bhroutinggroupname", {"rg2"}},
           {"bhcost", {"5"}},
           {"bhsourcebridgehead", {"node3"}},
           {"bhaddressspace", {"*;20", "*.partner.example;1"}}}),
  };
}

TEST(TopologyReader, GroupsMembersAndConnectors) {
  auto t = TopologyReader::build(org());
  EXPECT_TRUE(t.warnings.empty()) << t.warnings.front();
  ASSERT_EQ(t.groups.size(), 2u);
  const auto& rg1 = t.groups[0];
  EXPECT_EQ(rg1.name, "rg1");
  EXPECT_EQ(rg1.master, "node1");
  EXPECT_EQ(rg1.members, (std::vector<std::string>{"node1", "node2"}));
  ASSERT_EQ(rg1.connectors.size(), 1u);
  EXPECT_EQ(rg1.connectors[0].target_group, "rg2");
  EXPECT_EQ(rg1.connectors[0].cost, 10);
  ASSERT_EQ(rg1.connectors[0].sources.size(), 2u);
  EXPECT_EQ(rg1.connectors[0].sources[0].node, "node1");
  EXPECT_EQ(rg1.connectors[0].target_bridgeheads, std::vector<std::string>{"node3"});
  const auto& rg2 = t.groups[1];
  EXPECT_TRUE(rg2.master.empty());  // elected among the live members
  ASSERT_EQ(rg2.connectors.size(), 1u);
  ASSERT_EQ(rg2.connectors[0].address_spaces.size(), 2u);
  EXPECT_EQ(rg2.connectors[0].address_spaces[0].space.str(), "*");
  EXPECT_EQ(rg2.connectors[0].address_spaces[0].cost, 20);
  EXPECT_EQ(rg2.connectors[0].address_spaces[1].space.str(), "*.partner.example");
  ASSERT_EQ(t.servers.size(), 3u);
  EXPECT_EQ(t.servers[0].smtp_address, "127.0.0.11:25");
  EXPECT_EQ(t.servers[0].routing_group, "rg1");  // the group's own spelling
}

TEST(TopologyReader, BadObjectsAreSkippedWithTheirDn) {
  auto entries = org();
  entries.push_back(obj("cn=bad-cost", "bhConnector",
                        {{"cn", {"bad-cost"}},
                         {"bhroutinggroupname", {"rg1"}},
                         {"bhtargetgroup", {"rg2"}},
                         {"bhcost", {"0"}},
                         {"bhsourcebridgehead", {"node1"}}}));
  entries.push_back(obj("cn=foreign-source", "bhConnector",
                        {{"cn", {"foreign-source"}},
                         {"bhroutinggroupname", {"rg1"}},
                         {"bhtargetgroup", {"rg2"}},
                         {"bhcost", {"3"}},
                         {"bhsourcebridgehead", {"node3"}}}));
  entries.push_back(obj("cn=to-nowhere", "bhConnector",
                        {{"cn", {"to-nowhere"}},
                         {"bhroutinggroupname", {"rg1"}},
                         {"bhtargetgroup", {"rg9"}},
                         {"bhcost", {"3"}},
                         {"bhsourcebridgehead", {"node1"}}}));
  entries.push_back(obj("cn=bad-space", "bhConnector",
                        {{"cn", {"bad-space"}},
                         {"bhroutinggroupname", {"rg2"}},
                         {"bhcost", {"3"}},
                         {"bhsourcebridgehead", {"node3"}},
                         {"bhaddressspace", {"exa mple.com"}}}));
  entries.push_back(
      obj("cn=lost", "bhServer", {{"cn", {"lost"}}, {"bhroutinggroupname", {"rg7"}}}));
  auto t = TopologyReader::build(entries);
  ASSERT_EQ(t.warnings.size(), 5u);
  std::string all;
  for (const auto& w : t.warnings) {
    all += w + "\n";
  }
  EXPECT_NE(all.find("cn=bad-cost: cost 0 is not 1-100"), std::string::npos) << all;
  EXPECT_NE(all.find("cn=foreign-source: source bridgehead node3 is not a server of rg1"),
            std::string::npos);
  EXPECT_NE(all.find("cn=to-nowhere: connector to an unknown routing group rg9"),
            std::string::npos);
  EXPECT_NE(all.find("cn=bad-space: address space"), std::string::npos);
  EXPECT_NE(all.find("server lost: unknown routing group rg7"), std::string::npos);
  EXPECT_EQ(t.groups[0].connectors.size(), 1u);              // the good ones stay
  EXPECT_EQ(t.digest, TopologyReader::build(org()).digest);  // skipped objects change nothing
}

TEST(TopologyReader, TheDigestFollowsTheTopologyNotTheEntryOrder) {
  auto a = org();
  auto b = org();
  std::reverse(b.begin(), b.end());
  EXPECT_EQ(TopologyReader::build(a).digest, TopologyReader::build(b).digest);
  b[1].attributes["bhcost"] = {"11"};  // rg1-rg2 after the reverse is at index 1
  EXPECT_NE(TopologyReader::build(a).digest, TopologyReader::build(b).digest);
  auto c = org();
  c.pop_back();  // the internet connector deleted
  EXPECT_NE(TopologyReader::build(a).digest, TopologyReader::build(c).digest);
}

}  // namespace
}  // namespace bh::directory
