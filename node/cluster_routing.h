#pragma once
// Cluster routing: which node of the organization a message goes to next (DESIGN.md §3
// step 5, §4.3; issue 7). Pure functions over a link-state Routes (linkstate/
// shortest_path.h); the node (node/main.cc) turns a NodeHop into a queue next hop
// "smarthost:node.<id>" through an internal connector (routing::Connector::internal)
// whose one smart host is that node's SMTP address (link_state.nodes[].smtp).
//
// hop_towards(routes, self, group, finals): one step towards any node of `finals`
// (nodes of routing group `group`, e.g. a mailbox's home server, or the source
// bridgeheads of an SMTP connector that starts in `group`):
//  - `group` is this node's group: straight to one of `finals` (inside a routing group
//    every node talks to every other; DESIGN.md §4.2). No connector is crossed.
//  - another group with no live path: transient 4.4.4 (the mail waits as "unreachable",
//    is retried and never bounced for it before expiry).
//  - else the first connector C of a least-cost path (equal-cost first hops shared by
//    `pick`). This node an up source bridgehead of C: to a target bridgehead of C,
//    preferring one of `finals` when C ends in `group` (a target bridgehead that is the
//    home server itself saves a hop); with no target bridgeheads configured, any node of
//    C's target group (one of `finals` when it is `group`). This node not an up source
//    of C: to one of C's up source bridgeheads (inside our group).
//  Every choice among several candidates is `pick` modulo their number (sorted), so a
//  caller spreads the load with a random `pick` and a test chooses deterministically.
// hop_to_server(routes, self, home): the hop towards the node `home` (a mailbox's home
// server or a group's expansion server): transient 4.4.4 when no routing group of the
// table lists it (a server the topology does not know yet), permanent 5.4.6 when it is
// this node (a routing loop: the caller should have delivered locally).
// hop_to_connector(routes, self, connector_group, connector_id): towards the up source
// bridgeheads of an SMTP connector of another group (external mail leaving there).
//
// Threading: pure, any thread; the Routes must stay alive for the call.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "linkstate/shortest_path.h"

namespace bh::node {

struct NodeHop {
  std::string node;       // the node to relay to
  std::string connector;  // the routing-group connector crossed; "" inside the group
};

inline constexpr std::string_view kNodeConnectorPrefix = "node.";
// The internal routing::Connector name of a node: "node.<id>".
std::string node_connector_name(std::string_view node_id);
// The node id of an internal connector name; "" when it is not one.
std::string node_of_connector(std::string_view connector);

Result<NodeHop> hop_towards(const linkstate::Routes& routes, std::string_view self,
                            std::string_view group, const std::vector<std::string>& finals,
                            std::uint64_t pick);

Result<NodeHop> hop_to_server(const linkstate::Routes& routes, std::string_view self,
                              std::string_view home, std::uint64_t pick);

// Whether `node` is a source bridgehead (up or down) of `connector_id` in `group`.
bool is_source_bridgehead(const linkstate::Routes& routes, std::string_view group,
                          std::string_view connector_id, std::string_view node);

Result<NodeHop> hop_to_connector(const linkstate::Routes& routes, std::string_view self,
                                 std::string_view connector_group, std::string_view connector_id,
                                 std::uint64_t pick);

}  // namespace bh::node
