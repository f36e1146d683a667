#pragma once
// The node's configuration: one YAML file mapped onto the protobuf schema
// `bh::proto::Config` (proto/config.proto), typed and validated before anything starts
// (DESIGN.md §5, STYLE.md principle 8).
//
// Loading is two passes over one file:
//  1. Structure, generic through the proto descriptors: a YAML mapping is a message, a
//     key a field name, a list a repeated field; scalars are parsed by the field's type
//     (string, integers with range checks, bool, enum) and checked against the field's
//     `(bh.proto.rules)` (default, min, max). Unknown keys, duplicate keys and wrong
//     types are errors.
//  2. Meaning: required keys, absolute data_dir, "IP:port" listen addresses (no host
//     names: nothing here resolves names), domain syntax, mailboxes inside local_domains,
//     cross-key limits.
// Every error is one line naming the file, the 1-based line and the dotted key path:
//   /etc/bh.yaml:5: listen.smtp[0]: "127.0.0.1:99999": port out of range (1-65535)
// The loaded message holds the effective value of every key: documented defaults are
// stored explicitly, node.hostname defaults to node.name, node.workers 0 becomes the
// number of hardware threads, domains are lower-cased, data_dir loses trailing slashes.
//
// Threading: pure functions, no shared state. Error class: always permanent.

#include <cstdint>
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "proto/config.pb.h"
#include "routing/connector.h"

namespace bh::node {

// An "IP:port" listen or connect address. IPv6 is written "[::1]:25"; `address` holds
// it without brackets, ready for boost::asio::ip::make_address.
struct Endpoint {
  std::string address;
  std::uint16_t port = 0;
  std::string str() const;  // back to "IP:port" / "[IPv6]:port"
};

// "127.0.0.1:25" or "[::1]:25"; port 1-65535; IP literals only.
Result<Endpoint> parse_endpoint(const std::string& text);

// An IP network in CIDR notation ("127.0.0.0/8", "::1/128"; a bare address is a /32 or
// /128) for the relay policy.
struct Network {
  int family = 0;                    // AF_INET or AF_INET6
  std::array<unsigned char, 16> addr{};
  int prefix = 0;
  bool contains(std::string_view ip) const;  // false for anything not an IP literal
  std::string str() const;
};
Result<Network> parse_network(const std::string& text);

Result<bh::proto::Config> load_config_file(const std::string& path);
// `filename` only names the source in error messages.
Result<bh::proto::Config> load_config_string(const std::string& text, const std::string& filename);

// routing.smtp_connectors of a loaded (validated) config, ready for
// routing::RouteTable::build.
std::vector<bh::routing::Connector> smtp_connectors(const bh::proto::Config& config);

// One internal connector "node.<id>" per other node of link_state.nodes with an SMTP
// address (node/cluster_routing.h), with link_state.relay's TLS and login (X-EXPS).
std::vector<bh::routing::Connector> node_connectors(const bh::proto::Config& config);

// admin.token_file, or <data_dir>/admin.token when it is not set.
std::string admin_token_path(const bh::proto::Config& config);

}  // namespace bh::node
