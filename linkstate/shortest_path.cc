#include "linkstate/shortest_path.h"

#include <algorithm>
#include <climits>
#include <functional>
#include <queue>
#include <utility>

namespace bh::linkstate {

namespace {

constexpr int kNoPath = INT_MAX;

bool by_id(const Connector* a, const Connector* b) { return a->id < b->id; }

}  // namespace

const char* to_string(DomainStatus s) {
  switch (s) {
    case DomainStatus::kRouted:
      return "routed";
    case DomainStatus::kUnreachable:
      return "unreachable";
    case DomainStatus::kNoAddressSpace:
      return "no-address-space";
  }
  return "?";
}

Result<Routes> compute_routes(std::shared_ptr<const Snapshot> snapshot,
                              std::string_view local_group) {
  const Snapshot& s = *snapshot;
  const int src = s.vertex(local_group);
  if (src < 0) {
    return permanent_error("", "local routing group \"" + printable(local_group) +
                                   "\" is not in the link-state table");
  }
  Routes r;
  const auto n = static_cast<std::size_t>(s.vertex_count());
  r.dist_.assign(n, kNoPath);
  r.hop_set_.assign(n, -1);
  r.dist_[static_cast<std::size_t>(src)] = 0;

  using Item = std::pair<int, int>;  // (distance, vertex)
  std::priority_queue<Item, std::vector<Item>, std::greater<>> queue;
  queue.emplace(0, src);
  while (!queue.empty()) {
    const auto [d, u] = queue.top();
    queue.pop();
    const auto ui = static_cast<std::size_t>(u);
    if (d != r.dist_[ui]) {
      continue;  // a stale entry: u was settled with a smaller distance
    }
    for (const auto* e = s.edges_begin(u); e != s.edges_end(u); ++e) {
      const auto vi = static_cast<std::size_t>(e->to);
      const int nd = d + e->cost;
      int hs = r.hop_set_[ui];
      if (u == src) {
        r.hop_sets_.push_back({e->connector});
        hs = static_cast<int>(r.hop_sets_.size()) - 1;
      }
      if (nd < r.dist_[vi]) {
        r.dist_[vi] = nd;
        r.hop_set_[vi] = hs;
        queue.emplace(nd, e->to);
      } else if (nd == r.dist_[vi] && e->to != src && r.hop_set_[vi] != hs) {
        // Another least-cost path: its first hops join (costs are >= 1, so every
        // predecessor on a least-cost path is settled before v is).
        const auto& a = r.hop_sets_[static_cast<std::size_t>(r.hop_set_[vi])];
        const auto& b = r.hop_sets_[static_cast<std::size_t>(hs)];
        std::vector<const Connector*> merged;
        merged.reserve(a.size() + b.size());
        std::set_union(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(merged), by_id);
        if (merged.size() != a.size()) {
          r.hop_sets_.push_back(std::move(merged));
          r.hop_set_[vi] = static_cast<int>(r.hop_sets_.size()) - 1;
        }
      }
    }
  }
  r.snapshot_ = std::move(snapshot);
  r.local_ = std::string(local_group);
  return r;
}

GroupRoute Routes::to_group(std::string_view group) const {
  GroupRoute out;
  const int v = snapshot_->vertex(group);
  if (v < 0 || dist_[static_cast<std::size_t>(v)] == kNoPath) {
    return out;
  }
  out.reachable = true;
  out.cost = dist_[static_cast<std::size_t>(v)];
  const int hs = hop_set_[static_cast<std::size_t>(v)];
  if (hs >= 0) {
    out.first_hops = hop_sets_[static_cast<std::size_t>(hs)];
  }
  return out;
}

DomainRoute Routes::for_domain(std::string_view domain) const {
  DomainRoute out;
  const auto& ext = snapshot_->externals();  // most specific first
  int best_specificity = -1;
  int best_cost = kNoPath;
  for (const auto& x : ext) {
    const int spec = x.space->space.specificity();
    if (best_specificity >= 0 && spec < best_specificity) {
      break;  // rule 2: nothing less specific counts once something matched
    }
    if (!x.space->space.matches(domain)) {
      continue;
    }
    best_specificity = spec;
    out.status = DomainStatus::kUnreachable;
    const int d = dist_[static_cast<std::size_t>(x.group)];
    if (d == kNoPath || !x.connector->up()) {
      continue;
    }
    const int total = d + x.space->cost;
    if (total > best_cost) {
      continue;
    }
    if (total < best_cost) {
      best_cost = total;
      out.routes.clear();
    }
    ExternalRoute route{x.connector, snapshot_->name(x.group), x.space->space, total, {}};
    const int hs = hop_set_[static_cast<std::size_t>(x.group)];
    if (hs >= 0) {
      route.first_hops = hop_sets_[static_cast<std::size_t>(hs)];
    }
    out.routes.push_back(std::move(route));
  }
  if (!out.routes.empty()) {
    out.status = DomainStatus::kRouted;
    std::sort(out.routes.begin(), out.routes.end(),
              [](const ExternalRoute& a, const ExternalRoute& b) {
                return a.connector->id < b.connector->id;
              });
  }
  return out;
}

}  // namespace bh::linkstate
