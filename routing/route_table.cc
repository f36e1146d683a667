#include "routing/route_table.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "common/address.h"
#include "common/text.h"

namespace bh::routing {

namespace {

Error bad(const std::string& connector, const std::string& why) {
  return permanent_error("", "connector \"" + connector + "\": " + why);
}

}  // namespace

RouteTable::RouteTable(std::vector<std::shared_ptr<const Connector>> connectors)
    : connectors_(std::move(connectors)) {
  for (std::size_t i = 0; i < connectors_.size(); ++i) {
    for (const auto& cs : connectors_[i]->address_spaces) {
      entries_.push_back(Entry{&cs.space, cs.cost, i});
    }
  }
  std::stable_sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
    if (a.space->specificity() != b.space->specificity()) {
      return a.space->specificity() > b.space->specificity();
    }
    return a.cost < b.cost;
  });
}

Result<std::shared_ptr<const RouteTable>> RouteTable::build(std::vector<Connector> connectors) {
  std::set<std::string> names;
  std::vector<std::shared_ptr<const Connector>> frozen;
  frozen.reserve(connectors.size());
  for (auto& c : connectors) {
    if (!is_valid_connector_name(c.name)) {
      return bad(c.name, "name must be 1-64 letters, digits, '-', '_' or '.'");
    }
    if (!names.insert(ascii_lower(c.name)).second) {
      return bad(c.name, "name used twice");
    }
    if (c.kind == ConnectorKind::kSmartHost && c.smart_hosts.empty()) {
      return bad(c.name, "a smart host connector needs at least one smart host");
    }
    if (c.kind == ConnectorKind::kDnsMx && !c.smart_hosts.empty()) {
      return bad(c.name, "a DNS MX connector has no smart hosts");
    }
    if (c.internal != c.address_spaces.empty()) {
      return bad(c.name, c.internal ? "a connector to a node has no address spaces" : "no address spaces");
    }
    std::vector<AddressSpace> seen;
    for (const auto& cs : c.address_spaces) {
      if (cs.cost < kMinCost || cs.cost > kMaxCost) {
        return bad(c.name, "cost " + std::to_string(cs.cost) + " of address space \"" +
                               cs.space.str() + "\" is out of range (1-100)");
      }
      if (std::find(seen.begin(), seen.end(), cs.space) != seen.end()) {
        return bad(c.name, "address space \"" + cs.space.str() + "\" listed twice");
      }
      seen.push_back(cs.space);
    }
    if (c.settings.port == 0) {
      return bad(c.name, "port 0");
    }
    if (c.settings.max_connections == 0) {
      return bad(c.name, "max_connections 0");
    }
    frozen.push_back(std::make_shared<const Connector>(std::move(c)));
  }
  return std::shared_ptr<const RouteTable>(new RouteTable(std::move(frozen)));
}

std::vector<Route> RouteTable::candidates(std::string_view domain) const {
  std::vector<Route> out;
  const std::string d = normalize_domain(domain);
  const Entry* best = nullptr;
  for (const Entry& e : entries_) {
    if (best != nullptr &&
        (e.space->specificity() != best->space->specificity() || e.cost != best->cost)) {
      break;  // entries_ is ordered: nothing after this is as good
    }
    if (!e.space->matches(d)) {
      continue;
    }
    if (best == nullptr) {
      best = &e;
    }
    // Equals stay in configuration order: the constructor's sort is stable.
    out.push_back(Route{connectors_[e.connector], *e.space, e.cost, next_hop(*connectors_[e.connector], d)});
  }
  return out;
}

Result<Route> RouteTable::select(std::string_view domain, Random& random) const {
  std::vector<Route> all = candidates(domain);
  if (all.empty()) {
    return permanent_error("5.4.4", "no route to " + normalize_domain(domain) +
                                        ": no connector's address space matches it");
  }
  if (all.size() == 1) {
    return std::move(all.front());
  }
  return std::move(all[random.next() % all.size()]);
}

std::shared_ptr<const Connector> RouteTable::find(std::string_view name) const {
  const std::string n = ascii_lower(name);
  for (const auto& c : connectors_) {
    if (ascii_lower(c->name) == n) {
      return c;
    }
  }
  return nullptr;
}

std::string RouteTable::next_hop(const Connector& connector, std::string_view domain) {
  if (connector.kind == ConnectorKind::kSmartHost) {
    return "smarthost:" + connector.name;
  }
  return "mx:" + connector.name + ":" + normalize_domain(domain);
}

}  // namespace bh::routing
