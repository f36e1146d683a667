// Shortest-path time against topology size (issue 6, DESIGN.md §6). Not a test: it
// measures and prints a table. Usage: linkstate_spf_bench [groups...] (default 100 1000
// 10000). Build it in the release preset:
//   cmake --preset release && cmake --build build/release --target linkstate_spf_bench
//   build/release/tests/bench/linkstate_spf_bench
//
// Topology per size N (deterministic, fixed seed): N routing groups on a two-way ring
// plus two two-way chords per group to random groups, costs 1..100, so about 6N
// routing-group connectors; every 10th group also has an SMTP connector ("*" or a
// "*.dK.example" space). One connector in 20 is down. The timed part is
// compute_routes() from group 0 over a prepared snapshot (median and worst of the runs).
// Shown too: building a snapshot from scratch (every digest, graph index), loading the
// whole table into a LinkStateDb (apply_all: validation, merge, one publish), one state
// change (report(): minor bump and a publish that reuses the unchanged entries' hashes),
// and one for_domain() lookup.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/clock.h"
#include "linkstate/database.h"
#include "linkstate/shortest_path.h"

namespace {

using namespace bh::linkstate;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string gname(int i) { return "rg" + std::to_string(i); }

Snapshot::Groups make_topology(int n) {
  std::mt19937 rng(6);
  std::vector<RoutingGroup> groups(static_cast<std::size_t>(n));
  int next_id = 0;
  auto link = [&](int a, int b) {
    if (a == b) {
      return;
    }
    const int cost = 1 + static_cast<int>(rng() % 100);
    for (auto [from, to] : {std::pair{a, b}, std::pair{b, a}}) {
      Connector c;
      c.id = "c" + std::to_string(next_id++);
      c.target_group = gname(to);
      c.cost = cost;
      c.sources = {{"n" + std::to_string(from), rng() % 20 != 0}};
      c.target_bridgeheads = {"n" + std::to_string(to)};
      groups[static_cast<std::size_t>(from)].connectors.push_back(std::move(c));
    }
  };
  for (int i = 0; i < n; ++i) {
    groups[static_cast<std::size_t>(i)].name = gname(i);
    groups[static_cast<std::size_t>(i)].master = "n" + std::to_string(i);
    groups[static_cast<std::size_t>(i)].members = {"n" + std::to_string(i)};
    groups[static_cast<std::size_t>(i)].version = {1, 0, 0};
  }
  for (int i = 0; i < n; ++i) {
    link(i, (i + 1) % n);
    link(i, static_cast<int>(rng() % static_cast<unsigned>(n)));
    link(i, static_cast<int>(rng() % static_cast<unsigned>(n)));
    if (i % 10 == 0) {
      Connector c;
      c.id = "smtp" + std::to_string(i);
      c.sources = {{"n" + std::to_string(i), true}};
      const std::string pattern = i % 20 == 0 ? "*" : "*.d" + std::to_string(i % 7) + ".example";
      c.address_spaces = {
          {bh::routing::AddressSpace::parse(pattern).value(), 1 + static_cast<int>(rng() % 100)}};
      groups[static_cast<std::size_t>(i)].connectors.push_back(std::move(c));
    }
  }
  Snapshot::Groups out;
  for (auto& g : groups) {
    auto norm = normalize(std::move(g));
    if (!norm) {
      std::fprintf(stderr, "bad topology: %s\n", norm.error().message.c_str());
      std::exit(1);
    }
    std::string name = norm->name;
    out.emplace(std::move(name), std::make_shared<const RoutingGroup>(std::move(norm).value()));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes;
  for (int i = 1; i < argc; ++i) {
    sizes.push_back(std::atoi(argv[i]));
  }
  if (sizes.empty()) {
    sizes = {100, 1000, 10000};
  }
  std::printf("%8s %8s %8s %14s %14s %10s %12s %10s %10s %10s\n", "groups", "edges", "runs",
              "spf median ms", "spf worst ms", "target ms", "snapshot ms", "load ms", "change ms",
              "domain us");
  for (int n : sizes) {
    auto groups = make_topology(n);
    // The database path: a whole table from a peer (apply_all, one publish), then one
    // bridgehead state change (report with no hold-down: one minor bump, one publish).
    bh::ManualClock manual;
    LinkStateDb db(manual, DbOptions{std::chrono::milliseconds(0), {}});
    std::vector<RoutingGroup> entries;
    for (const auto& [name, g] : groups) {
      entries.push_back(*g);
    }
    auto t0 = Clock::now();
    const auto loaded = db.apply_all(std::move(entries));
    const double load_ms = ms_since(t0);
    const Connector& first = groups.begin()->second->connectors.front();
    t0 = Clock::now();
    const auto changed = db.report(groups.begin()->first, first.id, first.sources.front().node,
                                   !first.sources.front().up);
    const double change_ms = ms_since(t0);
    if (loaded.applied != groups.size() || !changed.ok() || !*changed) {
      std::fprintf(stderr, "database path failed\n");
      return 1;
    }
    t0 = Clock::now();
    auto snap = Snapshot::build(std::move(groups), 1);
    const double build_ms = ms_since(t0);
    std::size_t edges = 0;
    for (int v = 0; v < snap->vertex_count(); ++v) {
      edges += static_cast<std::size_t>(snap->edges_end(v) - snap->edges_begin(v));
    }
    const int runs = n <= 1000 ? 200 : 30;
    std::vector<double> times;
    std::size_t reachable = 0;
    double domain_us = 0;
    for (int r = 0; r < runs; ++r) {
      t0 = Clock::now();
      auto routes = compute_routes(snap, gname(0));
      times.push_back(ms_since(t0));
      if (!routes) {
        std::fprintf(stderr, "%s\n", routes.error().message.c_str());
        return 1;
      }
      if (r == 0) {
        for (int v = 0; v < n; ++v) {
          reachable += routes->to_group(gname(v)).reachable ? 1 : 0;
        }
        t0 = Clock::now();
        auto d = routes->for_domain("host.d3.example");
        domain_us = ms_since(t0) * 1000.0;
        if (d.status != DomainStatus::kRouted) {
          std::fprintf(stderr, "lookup: %s\n", to_string(d.status));
        }
      }
    }
    std::sort(times.begin(), times.end());
    const double target = n <= 100 ? 1 : n <= 1000 ? 5 : 50;
    std::printf("%8d %8zu %8d %14.3f %14.3f %10.0f %12.2f %10.2f %10.2f %10.1f\n", n, edges, runs,
                times[times.size() / 2], times.back(), target, build_ms, load_ms, change_ms,
                domain_us);
    if (reachable < static_cast<std::size_t>(n) / 2) {
      std::fprintf(stderr, "only %zu of %d groups reachable: topology too sparse\n", reachable, n);
    }
  }
  return 0;
}
