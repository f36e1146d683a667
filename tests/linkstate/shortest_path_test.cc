#include "linkstate/shortest_path.h"

#include <gtest/gtest.h>

#include <chrono>
#include <climits>
#include <random>
#include <set>

#include "common/clock.h"

namespace bh::linkstate {
namespace {

using namespace std::chrono_literals;

Connector rgc(std::string id, std::string to, int cost, std::string src, bool up = true) {
  Connector c;
  c.id = std::move(id);
  c.target_group = std::move(to);
  c.cost = cost;
  c.sources = {{std::move(src), up}};
  return c;
}

TEST(ComputeRoutes, UnknownLocalGroupIsAnError) {
  ManualClock clock;
  LinkStateDb db(clock, DbOptions{0ms, {}});
  auto r = compute_routes(db.snapshot(), "A");
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().transient());
}

TEST(ComputeRoutes, ConnectorToAGroupNotInTheTableIsNoEdge) {
  ManualClock clock;
  LinkStateDb db(clock, DbOptions{0ms, {}});
  RoutingGroup a;
  a.name = "A";
  a.connectors = {rgc("ax", "X", 1, "a1")};
  ASSERT_TRUE(db.set_config(a).ok());
  auto r = compute_routes(db.snapshot(), "A");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->to_group("X").reachable);
  EXPECT_TRUE(r->to_group("A").reachable);
}

TEST(ComputeRoutes, RoutesKeepTheirSnapshotAlive) {
  ManualClock clock;
  auto db = std::make_unique<LinkStateDb>(clock, DbOptions{0ms, {}});
  RoutingGroup a, b;
  a.name = "A";
  b.name = "B";
  a.connectors = {rgc("ab", "B", 7, "a1")};
  ASSERT_TRUE(db->set_config(a).ok());
  ASSERT_TRUE(db->set_config(b).ok());
  auto r = compute_routes(db->snapshot(), "A");
  ASSERT_TRUE(r.ok());
  db.reset();  // the database and its later snapshots are gone
  const GroupRoute to_b = r->to_group("B");
  ASSERT_TRUE(to_b.reachable);
  ASSERT_EQ(to_b.first_hops.size(), 1u);
  EXPECT_EQ(to_b.first_hops[0]->id, "ab");
  EXPECT_EQ(to_b.cost, 7);
}

// Random graphs against a brute-force reference: Bellman-Ford for the distances, and
// "first hop h is on a least-cost path" iff cost(h) + dist(target(h), v) == dist(v).
TEST(ComputeRoutes, MatchesABruteForceReferenceOnRandomGraphs) {
  std::mt19937 rng(20261129);  // fixed seed: deterministic
  for (int round = 0; round < 40; ++round) {
    const int n = 2 + static_cast<int>(rng() % 12);
    const int m = static_cast<int>(rng() % (3 * n));
    ManualClock clock;
    LinkStateDb db(clock, DbOptions{0ms, {}});
    std::vector<RoutingGroup> groups(static_cast<std::size_t>(n));
    struct E {
      int from, to, cost;
      bool up;
      std::string id;
    };
    std::vector<E> edges;
    for (int i = 0; i < n; ++i) {
      groups[static_cast<std::size_t>(i)].name = "g" + std::to_string(i);
    }
    for (int k = 0; k < m; ++k) {
      const int from = static_cast<int>(rng() % n);
      int to = static_cast<int>(rng() % n);
      if (to == from) {
        to = (to + 1) % n;
      }
      const int cost = 1 + static_cast<int>(rng() % 4);  // small costs: many ties
      const bool up = rng() % 5 != 0;
      E e{from, to, cost, up, "c" + std::to_string(k)};
      groups[static_cast<std::size_t>(from)].connectors.push_back(
          rgc(e.id, "g" + std::to_string(to), cost, "n" + std::to_string(from), up));
      edges.push_back(e);
    }
    for (auto& g : groups) {
      ASSERT_TRUE(db.set_config(g).ok());
    }
    // dist[s][v] by Bellman-Ford over the live edges.
    auto distances = [&](int s) {
      std::vector<long> d(static_cast<std::size_t>(n), LONG_MAX);
      d[static_cast<std::size_t>(s)] = 0;
      for (int it = 0; it < n; ++it) {
        for (const auto& e : edges) {
          if (e.up && d[static_cast<std::size_t>(e.from)] != LONG_MAX) {
            d[static_cast<std::size_t>(e.to)] = std::min(
                d[static_cast<std::size_t>(e.to)], d[static_cast<std::size_t>(e.from)] + e.cost);
          }
        }
      }
      return d;
    };
    std::vector<std::vector<long>> dist;
    for (int s = 0; s < n; ++s) {
      dist.push_back(distances(s));
    }
    for (int s = 0; s < n; ++s) {
      auto routes = compute_routes(db.snapshot(), "g" + std::to_string(s));
      ASSERT_TRUE(routes.ok());
      for (int v = 0; v < n; ++v) {
        const long want = dist[static_cast<std::size_t>(s)][static_cast<std::size_t>(v)];
        const GroupRoute got = routes->to_group("g" + std::to_string(v));
        SCOPED_TRACE("round " + std::to_string(round) + " g" + std::to_string(s) + " -> g" +
                     std::to_string(v));
        ASSERT_EQ(got.reachable, want != LONG_MAX);
        if (!got.reachable) {
          continue;
        }
        ASSERT_EQ(got.cost, want);
        std::set<std::string> expected_hops;
        if (v != s) {
          for (const auto& e : edges) {
            const long rest = dist[static_cast<std::size_t>(e.to)][static_cast<std::size_t>(v)];
            if (e.from == s && e.up && rest != LONG_MAX && e.cost + rest == want) {
              expected_hops.insert(e.id);
            }
          }
        }
        std::set<std::string> got_hops;
        for (const auto* c : got.first_hops) {
          got_hops.insert(c->id);
        }
        EXPECT_EQ(got_hops, expected_hops);
        EXPECT_EQ(got_hops.size(), got.first_hops.size());  // no duplicates
      }
    }
  }
}

}  // namespace
}  // namespace bh::linkstate
