#include "node/cluster_routing.h"

#include <algorithm>

#include "common/text.h"

namespace bh::node {

namespace {

bool same(std::string_view a, std::string_view b) { return ascii_lower(a) == ascii_lower(b); }

bool contains(const std::vector<std::string>& v, std::string_view x) {
  return std::any_of(v.begin(), v.end(), [&](const std::string& y) { return same(x, y); });
}

std::string choose(std::vector<std::string> candidates, std::uint64_t pick) {
  std::sort(candidates.begin(), candidates.end());
  return candidates[pick % candidates.size()];
}

std::vector<std::string> without(const std::vector<std::string>& v, std::string_view self) {
  std::vector<std::string> out;
  for (const auto& x : v) {
    if (!same(x, self)) {
      out.push_back(x);
    }
  }
  return out;
}

}  // namespace

std::string node_connector_name(std::string_view node_id) {
  return std::string(kNodeConnectorPrefix) + std::string(node_id);
}

std::string node_of_connector(std::string_view connector) {
  if (connector.size() <= kNodeConnectorPrefix.size() ||
      connector.substr(0, kNodeConnectorPrefix.size()) != kNodeConnectorPrefix) {
    return {};
  }
  return std::string(connector.substr(kNodeConnectorPrefix.size()));
}

Result<NodeHop> hop_towards(const linkstate::Routes& routes, std::string_view self,
                            std::string_view group, const std::vector<std::string>& finals,
                            std::uint64_t pick) {
  const std::vector<std::string> others = without(finals, self);
  if (others.empty()) {
    return permanent_error("5.4.6", "routing loop: the next hop would be this node");
  }
  if (group == routes.local_group()) {
    return NodeHop{choose(others, pick), ""};
  }
  const linkstate::GroupRoute gr = routes.to_group(group);
  if (!gr.reachable || gr.first_hops.empty()) {
    return transient_error("4.4.4", "no live route to routing group " + std::string(group) +
                                        " (link state: every path is down)");
  }
  const linkstate::Connector& c = *gr.first_hops[pick % gr.first_hops.size()];
  const bool self_source = std::any_of(c.sources.begin(), c.sources.end(),
                                       [&](const auto& s) { return s.up && same(s.node, self); });
  if (self_source) {
    std::vector<std::string> targets = c.target_bridgeheads;
    if (targets.empty()) {
      if (const auto* tg = routes.snapshot().find(c.target_group)) {
        targets = tg->members;
      }
    }
    if (c.target_group == group) {
      std::vector<std::string> preferred;
      for (const auto& t : targets) {
        if (contains(others, t)) {
          preferred.push_back(t);
        }
      }
      if (!preferred.empty()) {
        return NodeHop{choose(preferred, pick), c.id};
      }
    }
    targets = without(targets, self);
    if (targets.empty()) {
      return transient_error(
          "4.4.4", "connector " + c.id + " names no target bridgehead in " + c.target_group);
    }
    return NodeHop{choose(targets, pick), c.id};
  }
  std::vector<std::string> sources;
  for (const auto& s : c.sources) {
    if (s.up && !same(s.node, self)) {
      sources.push_back(s.node);
    }
  }
  if (sources.empty()) {
    return transient_error("4.4.4", "connector " + c.id + " has no live source bridgehead");
  }
  return NodeHop{choose(sources, pick), ""};
}

Result<NodeHop> hop_to_server(const linkstate::Routes& routes, std::string_view self,
                              std::string_view home, std::uint64_t pick) {
  if (same(home, self)) {
    return permanent_error("5.4.6", "routing loop: " + std::string(home) + " is this node");
  }
  for (const auto& [name, g] : routes.snapshot().groups()) {
    for (const auto& m : g->members) {
      if (same(m, home)) {
        return hop_towards(routes, self, name, {m}, pick);
      }
    }
  }
  return transient_error(
      "4.4.4", "server " + std::string(home) + " is in no routing group of the link-state table");
}

bool is_source_bridgehead(const linkstate::Routes& routes, std::string_view group,
                          std::string_view connector_id, std::string_view node) {
  const auto* g = routes.snapshot().find(group);
  const auto* c = g ? g->find(connector_id) : nullptr;
  return c != nullptr && std::any_of(c->sources.begin(), c->sources.end(),
                                     [&](const auto& s) { return same(s.node, node); });
}

Result<NodeHop> hop_to_connector(const linkstate::Routes& routes, std::string_view self,
                                 std::string_view connector_group, std::string_view connector_id,
                                 std::uint64_t pick) {
  const auto* g = routes.snapshot().find(connector_group);
  const auto* c = g ? g->find(connector_id) : nullptr;
  if (c == nullptr) {
    return transient_error(
        "4.4.4", "connector " + std::string(connector_id) + " is not in the link-state table");
  }
  std::vector<std::string> sources;
  for (const auto& s : c->sources) {
    if (s.up) {
      sources.push_back(s.node);
    }
  }
  if (sources.empty()) {
    return transient_error("4.4.4", "connector " + c->id + " has no live source bridgehead");
  }
  return hop_towards(routes, self, connector_group, sources, pick);
}

}  // namespace bh::node
