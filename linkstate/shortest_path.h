#pragma once
// Shortest paths over a link-state snapshot (DESIGN.md §4.3, exchange-notes §4.6): a pure
// function, no I/O, no clock, no state besides its result.
//
// Graph: routing groups are vertices; a routing-group connector is a directed edge from
// the group that holds it to its target group, weighted by its cost (1..100). Down
// connectors (all source bridgeheads down) and connectors to groups not in the table are
// not edges. Least total cost wins (Dijkstra from the local group); every first hop that
// starts a least-cost path is kept (equal-cost load sharing), sorted by connector id.
//
// External destinations (recipient domains outside the organization) hang off connectors
// with address spaces:
//  1. Only address spaces matching the domain count (routing/address_space.h rules).
//  2. The most specific match wins regardless of cost or state; there is no fallback to
//     a less specific space. If none of the connectors with the most specific match is
//     live (connector up, its group reachable), the domain is kUnreachable: the mail
//     stays queued as "unreachable" and is retried, never bounced for that reason.
//  3. Among the live ones, least total cost = path cost to the connector's group +
//     the address space's cost; equal totals all stay (load sharing).
//  No match at all: kNoAddressSpace (the caller answers 5.4.4, as routing::RouteTable).
//
// Threading: Routes is immutable; it keeps its snapshot alive (its pointers point into
// it) and may be shared between threads like the snapshot.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "linkstate/database.h"
#include "routing/address_space.h"

namespace bh::linkstate {

struct GroupRoute {
  bool reachable = false;
  int cost = 0;                              // total; 0 for the local group
  std::vector<const Connector*> first_hops;  // empty for the local group and when unreachable
};

enum class DomainStatus { kRouted, kUnreachable, kNoAddressSpace };
const char* to_string(DomainStatus s);

struct ExternalRoute {
  const Connector* connector = nullptr;      // the connector whose address space matched
  std::string group;                         // the routing group that holds it
  routing::AddressSpace space;               // the pattern that matched
  int cost = 0;                              // path to `group` + the address space's cost
  std::vector<const Connector*> first_hops;  // towards `group`; empty when it is local
};

struct DomainRoute {
  DomainStatus status = DomainStatus::kNoAddressSpace;
  std::vector<ExternalRoute> routes;  // kRouted: the equal least-cost ones, by connector id
};

class Routes {
 public:
  const std::string& local_group() const { return local_; }
  const Snapshot& snapshot() const { return *snapshot_; }

  // Unknown groups are unreachable.
  GroupRoute to_group(std::string_view group) const;
  DomainRoute for_domain(std::string_view domain) const;

 private:
  friend Result<Routes> compute_routes(std::shared_ptr<const Snapshot> snapshot,
                                       std::string_view local_group);
  Routes() = default;

  std::shared_ptr<const Snapshot> snapshot_;
  std::string local_;
  std::vector<int> dist_;     // per vertex; kUnreachable when no live path
  std::vector<int> hop_set_;  // per vertex: index into hop_sets_, -1 for none (local)
  std::vector<std::vector<const Connector*>> hop_sets_;
};

// Permanent error (empty enhanced code) when local_group is not in the snapshot.
Result<Routes> compute_routes(std::shared_ptr<const Snapshot> snapshot,
                              std::string_view local_group);

}  // namespace bh::linkstate
