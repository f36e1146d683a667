#pragma once
// Validation of the `link_state` section of the node's config (proto/config.proto
// `LinkState`; docs/configuration.md "link_state"). Called by node/config.cc's loader
// after the structural pass, when the section is written in the file.
//
// Checks: organization, routing_group and node ids are names (1-128 of [A-Za-z0-9._-]);
// listen and every node address are "IP:port"; nodes unique, node.name among them in
// routing_group, at most one configured master per group; connectors unique, their
// groups known, source and target groups different, bridgeheads nodes of the right
// group, address spaces valid and unique (target_group or address_spaces required);
// tls files absolute; dead_after_ms > keepalive_ms, reconnect_min_ms <=
// reconnect_max_ms. Normalizes: address spaces and endpoints to canonical form, empty
// source_bridgeheads to every node of the source group.
//
// Threading: a pure function. Errors: the dotted key and the message, for the loader to
// prefix with file and line.

#include <optional>
#include <string>
#include <string_view>

#include "proto/config.pb.h"

namespace bh::node {

struct KeyError {
  std::string key;  // e.g. "link_state.nodes[2].address"
  std::string message;
};

std::optional<KeyError> validate_link_state(bh::proto::Config& config);

// 1-128 of [A-Za-z0-9._-] (the link-state table's names, linkstate::is_valid_name).
bool is_link_state_name(std::string_view name);

}  // namespace bh::node
