#include "routing/route_table.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "tests/routing/routing_test_util.h"

namespace bh::routing {
namespace {

using testing::mx_connector;
using testing::SeededRandom;
using testing::smarthost_connector;

std::shared_ptr<const RouteTable> table(std::vector<Connector> connectors) {
  auto t = RouteTable::build(std::move(connectors));
  BH_CHECK(t.ok());
  return *t;
}

// One organization's connectors, used by the selection table below.
std::shared_ptr<const RouteTable> org() {
  return table({
      smarthost_connector("internet", "192.0.2.10", {{"*", 10}}),
      mx_connector("internet-mx", {{"*", 20}}),
      // specific beats cheaper general: cost 90 here still beats "*" at 10
      mx_connector("partner", {{"*.partner.example", 90}, {"partner.example", 90}}),
      // two connectors for one space at different costs: the cheaper wins
      smarthost_connector("contoso-cheap", "192.0.2.20:2525", {{"contoso.example", 5}}),
      smarthost_connector("contoso-dear", "192.0.2.21", {{"contoso.example", 50}}),
      // an exact subdomain beats the wildcard over its parent
      smarthost_connector("eu-partner", "[2001:db8::1]:25", {{"eu.partner.example", 100}}),
      // equal cost: load shared
      smarthost_connector("lb-a", "192.0.2.30", {{"*.fabrikam.example", 7}}),
      smarthost_connector("lb-b", "192.0.2.31", {{"*.fabrikam.example", 7}}),
      smarthost_connector("lb-c", "192.0.2.32", {{"*.fabrikam.example", 8}}),
  });
}

struct SelectCase {
  std::string domain;
  std::vector<std::string> connectors;  // candidates, in order; empty: no route
  std::string next_hop;                 // of the first candidate
};

void PrintTo(const SelectCase& c, std::ostream* os) { *os << c.domain; }

class RouteSelection : public ::testing::TestWithParam<SelectCase> {};

TEST_P(RouteSelection, Table) {
  const SelectCase& c = GetParam();
  auto t = org();
  auto routes = t->candidates(c.domain);
  std::vector<std::string> names;
  for (const auto& r : routes) {
    names.push_back(r.connector->name);
  }
  EXPECT_EQ(names, c.connectors);
  if (!routes.empty()) {
    EXPECT_EQ(routes.front().next_hop, c.next_hop);
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, RouteSelection,
    ::testing::Values(
        // "*" is the fallback only where nothing else matches; the cheaper "*" wins
        SelectCase{"example.org", {"internet"}, "smarthost:internet"},
        SelectCase{"Example.ORG.", {"internet"}, "smarthost:internet"},
        // specific beats cheaper general, both forms of the partner spaces
        SelectCase{"partner.example", {"partner"}, "mx:partner:partner.example"},
        SelectCase{"mail.partner.example", {"partner"}, "mx:partner:mail.partner.example"},
        SelectCase{"MAIL.Partner.Example.", {"partner"}, "mx:partner:mail.partner.example"},
        SelectCase{"x.eu.partner.example", {"partner"}, "mx:partner:x.eu.partner.example"},
        SelectCase{"eu.partner.example", {"eu-partner"}, "smarthost:eu-partner"},
        // lowest cost among equally specific
        SelectCase{"contoso.example", {"contoso-cheap"}, "smarthost:contoso-cheap"},
        SelectCase{"CONTOSO.example.", {"contoso-cheap"}, "smarthost:contoso-cheap"},
        // "contoso.example" is exact: its subdomains go out through "*"
        SelectCase{"sub.contoso.example", {"internet"}, "smarthost:internet"},
        // equal cost: both, in configuration order; the dearer one is not a candidate
        SelectCase{"mx.fabrikam.example", {"lb-a", "lb-b"}, "smarthost:lb-a"},
        // "*.fabrikam.example" does not cover fabrikam.example itself
        SelectCase{"fabrikam.example", {"internet"}, "smarthost:internet"},
        // address literals are not routed by address space
        SelectCase{"[192.0.2.1]", {}, ""}),
    [](const ::testing::TestParamInfo<SelectCase>& i) { return "Case" + std::to_string(i.index); });

TEST(RouteTable, NoMatchIsPermanent544) {
  auto t = table({mx_connector("partner", {{"partner.example", 1}})});
  SeededRandom random(1);
  auto r = t->select("example.org", random);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().transient());
  EXPECT_EQ(r.error().enhanced, "5.4.4");
  EXPECT_NE(r.error().message.find("example.org"), std::string::npos);
  EXPECT_TRUE(t->candidates("example.org").empty());
}

TEST(RouteTable, EmptyTableRoutesNothing) {
  auto t = table({});
  SeededRandom random(1);
  auto r = t->select("example.org", random);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().enhanced, "5.4.4");
}

TEST(RouteTable, NoFallbackToLessSpecificEvenWhenCheaper) {
  // The specific connector is the only answer, however expensive; "*" is never offered
  // as an alternative for the specific domain.
  auto t = table({smarthost_connector("all", "192.0.2.1", {{"*", 1}}),
                  smarthost_connector("specific", "192.0.2.2", {{"*.example.com", 100}})});
  auto routes = t->candidates("a.example.com");
  ASSERT_EQ(routes.size(), 1u);
  EXPECT_EQ(routes[0].connector->name, "specific");
  EXPECT_EQ(routes[0].cost, 100);
  EXPECT_EQ(routes[0].address_space.str(), "*.example.com");
}

TEST(RouteTable, EqualCostLoadSharingHitsEveryCandidate) {
  auto t = org();
  SeededRandom random(42);
  std::map<std::string, int> hits;
  constexpr int kPicks = 1000;
  for (int i = 0; i < kPicks; ++i) {
    auto r = t->select("mx.fabrikam.example", random);
    ASSERT_TRUE(r.ok());
    hits[r->connector->name]++;
  }
  ASSERT_EQ(hits.size(), 2u);  // lb-c costs more: never picked
  EXPECT_GT(hits["lb-a"], kPicks / 3);
  EXPECT_GT(hits["lb-b"], kPicks / 3);
  EXPECT_EQ(hits["lb-a"] + hits["lb-b"], kPicks);
}

TEST(RouteTable, SelectionIsDeterministicForASeed) {
  auto t = org();
  auto picks = [&](std::uint64_t seed) {
    SeededRandom random(seed);
    std::string s;
    for (int i = 0; i < 32; ++i) {
      s += t->select("a.fabrikam.example", random)->connector->name.back();
    }
    return s;
  };
  EXPECT_EQ(picks(7), picks(7));
}

TEST(RouteTable, SingleCandidateUsesNoRandomness) {
  class Forbidden final : public Random {
   public:
    std::uint64_t next() override {
      ADD_FAILURE() << "randomness used for a single candidate";
      return 0;
    }
  } random;
  auto r = org()->select("contoso.example", random);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->connector->name, "contoso-cheap");
}

TEST(RouteTable, MostSpecificWinsRegardlessOfOrderAndCost) {
  // Same connectors as data, both orders: the result does not depend on the order.
  std::vector<Connector> cs = {mx_connector("wild", {{"*.b.example", 1}}),
                               mx_connector("deeper", {{"*.a.b.example", 99}}),
                               mx_connector("exact", {{"x.a.b.example", 100}})};
  for (int order = 0; order < 2; ++order) {
    auto t = table(cs);
    EXPECT_EQ(t->candidates("x.a.b.example")[0].connector->name, "exact");
    EXPECT_EQ(t->candidates("y.a.b.example")[0].connector->name, "deeper");
    EXPECT_EQ(t->candidates("a.b.example")[0].connector->name, "wild");
    EXPECT_TRUE(t->candidates("b.example").empty());
    std::reverse(cs.begin(), cs.end());
  }
}

TEST(RouteTable, FindIsCaseInsensitive) {
  auto t = org();
  ASSERT_NE(t->find("INTERNET"), nullptr);
  EXPECT_EQ(t->find("Internet")->name, "internet");
  EXPECT_EQ(t->find("nope"), nullptr);
  EXPECT_EQ(t->connectors().size(), 9u);
}

TEST(RouteTable, NextHopKeys) {
  auto mx = mx_connector("out", {{"*", 1}});
  auto sh = smarthost_connector("relay", "192.0.2.1", {{"*", 1}});
  EXPECT_EQ(RouteTable::next_hop(mx, "Example.COM."), "mx:out:example.com");
  EXPECT_EQ(RouteTable::next_hop(sh, "Example.COM."), "smarthost:relay");
  EXPECT_EQ(RouteTable::next_hop(sh, "other.example"), "smarthost:relay");
}

struct BuildError {
  std::string name;
  std::vector<Connector> connectors;
  std::string why;
};

void PrintTo(const BuildError& b, std::ostream* os) { *os << b.name; }

class RouteTableBuild : public ::testing::TestWithParam<BuildError> {};

TEST_P(RouteTableBuild, RefusedWithReason) {
  const BuildError& b = GetParam();
  auto t = RouteTable::build(b.connectors);
  ASSERT_FALSE(t.ok());
  EXPECT_FALSE(t.error().transient());
  EXPECT_NE(t.error().message.find(b.why), std::string::npos) << t.error().message;
}

Connector with(Connector c, void (*edit)(Connector&)) {
  edit(c);
  return c;
}

INSTANTIATE_TEST_SUITE_P(
    All, RouteTableBuild,
    ::testing::Values(
        BuildError{"DuplicateName", {mx_connector("a", {{"*", 1}}), mx_connector("A", {{"x.example", 1}})}, "\"A\": name used twice"},
        BuildError{"BadName", {mx_connector("a:b", {{"*", 1}})}, "name must be"},
        BuildError{"EmptyName", {mx_connector("", {{"*", 1}})}, "name must be"},
        BuildError{"NoSpaces", {mx_connector("a", {})}, "no address spaces"},
        BuildError{"CostZero", {mx_connector("a", {{"*", 0}})}, "cost 0 of address space \"*\" is out of range"},
        BuildError{"CostAbove100", {mx_connector("a", {{"*", 101}})}, "out of range (1-100)"},
        BuildError{"SameSpaceTwice", {mx_connector("a", {{"*.x.example", 1}, {"*.X.example.", 2}})}, "\"*.x.example\" listed twice"},
        BuildError{"SmartHostWithoutHosts", {with(mx_connector("a", {{"*", 1}}), [](Connector& c) { c.kind = ConnectorKind::kSmartHost; })}, "at least one smart host"},
        BuildError{"MxWithHosts", {with(smarthost_connector("a", "192.0.2.1", {{"*", 1}}), [](Connector& c) { c.kind = ConnectorKind::kDnsMx; })}, "has no smart hosts"},
        BuildError{"PortZero", {with(mx_connector("a", {{"*", 1}}), [](Connector& c) { c.settings.port = 0; })}, "port 0"},
        BuildError{"NoConnections", {with(mx_connector("a", {{"*", 1}}), [](Connector& c) { c.settings.max_connections = 0; })}, "max_connections 0"}),
    [](const ::testing::TestParamInfo<BuildError>& i) { return i.param.name; });

struct HostCase {
  std::string text;
  std::string host;  // empty: refused
  bool is_ip;
  int port;
  std::string str;
};

TEST(SmartHost, Parsing) {
  const std::vector<HostCase> cases = {
      {"192.0.2.1", "192.0.2.1", true, 0, "192.0.2.1"},
      {"192.0.2.1:2525", "192.0.2.1", true, 2525, "192.0.2.1:2525"},
      {"[192.0.2.1]", "192.0.2.1", true, 0, "192.0.2.1"},
      {"[192.0.2.1]:25", "192.0.2.1", true, 25, "192.0.2.1:25"},
      {"[2001:db8::1]", "2001:db8::1", true, 0, "[2001:db8::1]"},
      {"[::1]:587", "::1", true, 587, "[::1]:587"},
      {"Relay.Example.NET.", "relay.example.net", false, 0, "relay.example.net"},
      {"relay.example.net:65535", "relay.example.net", false, 65535, "relay.example.net:65535"},
      {"localhost", "localhost", false, 0, "localhost"},
      // refused
      {"", "", false, 0, ""},
      {"::1", "", false, 0, ""},
      {"2001:db8::1:25", "", false, 0, ""},
      {"[::1", "", false, 0, ""},
      {"[::1]25", "", false, 0, ""},
      {"[relay.example.net]", "", false, 0, ""},
      {"192.0.2.1:0", "", false, 0, ""},
      {"192.0.2.1:65536", "", false, 0, ""},
      {"192.0.2.1:", "", false, 0, ""},
      {"192.0.2.1:+25", "", false, 0, ""},
      {"192.0.2.256", "", false, 0, ""},
      {"1.2.3", "", false, 0, ""},
      {"relay..example", "", false, 0, ""},
      {"relay example", "", false, 0, ""},
      {"user@relay.example", "", false, 0, ""},
  };
  for (const auto& c : cases) {
    auto h = parse_smart_host(c.text);
    if (c.host.empty()) {
      ASSERT_FALSE(h.ok()) << c.text;
      EXPECT_NE(h.error().message.find("smart host \"" + c.text + "\""), std::string::npos)
          << h.error().message;
      continue;
    }
    ASSERT_TRUE(h.ok()) << c.text << ": " << h.error().message;
    EXPECT_EQ(h->host, c.host) << c.text;
    EXPECT_EQ(h->is_ip, c.is_ip) << c.text;
    EXPECT_EQ(h->port, c.port) << c.text;
    EXPECT_EQ(h->str(), c.str) << c.text;
  }
}

TEST(ConnectorName, Syntax) {
  EXPECT_TRUE(is_valid_connector_name("internet-out_1.eu"));
  EXPECT_FALSE(is_valid_connector_name(""));
  EXPECT_FALSE(is_valid_connector_name("a b"));
  EXPECT_FALSE(is_valid_connector_name("a:b"));
  EXPECT_FALSE(is_valid_connector_name("a/b"));
  EXPECT_FALSE(is_valid_connector_name(std::string(65, 'a')));
  EXPECT_TRUE(is_valid_connector_name(std::string(64, 'a')));
}

}  // namespace
}  // namespace bh::routing
