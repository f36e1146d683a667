#include "sinks/route_sink.h"

#include <gtest/gtest.h>

namespace bh::sinks {
namespace {

TEST(RouteSinkTest, DomainPatterns) {
  EXPECT_TRUE(domain_matches("example.net", "Example.NET"));
  EXPECT_FALSE(domain_matches("example.net", "a.example.net"));
  EXPECT_TRUE(domain_matches("*.example.net", "a.example.net"));
  EXPECT_FALSE(domain_matches("*.example.net", "example.net"));
  EXPECT_FALSE(domain_matches("*.example.net", "aexample.net"));
  EXPECT_TRUE(domain_matches("*", "anything.example"));
}

TEST(RouteSinkTest, FirstOverrideWinsInOrder) {
  RouteEntry a, b;
  a.name = "a";
  a.sink =
      std::make_shared<RouteOverrideSink>(std::vector<std::string>{"*.partner.example"}, "partner");
  b.name = "b";
  b.sink = std::make_shared<RouteOverrideSink>(std::vector<std::string>{"*"}, "backup");
  RouteChain chain({a, b});
  EXPECT_EQ(chain.on_route({"mx.partner.example", "internet"}), "partner");
  EXPECT_EQ(chain.on_route({"other.example", "internet"}), "backup");
  EXPECT_EQ(chain.entries()[0].counters->calls.load(), 2u);
  EXPECT_EQ(chain.entries()[1].counters->calls.load(), 1u);
  RouteChain only_a({a});
  EXPECT_EQ(only_a.on_route({"other.example", "internet"}), std::nullopt);
  EXPECT_EQ(only_a.on_route({"x.partner.example", ""}), "partner");  // even without a route
}

}  // namespace
}  // namespace bh::sinks
