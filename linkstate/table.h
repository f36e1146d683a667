#pragma once
// The link-state table's values (DESIGN.md §4.2, §4.3; exchange-notes §4): routing
// groups with their master, members, versions and connectors, plus the canonical
// encoding that the digest and the equal-version tie-break are computed over.
//
// Plain values, no I/O, safe to share between threads once built. validate() is the one
// gate for entries that come from a peer or the configuration: everything in a table
// has passed it.

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "routing/connector.h"

namespace bh::linkstate {

// Compared major, then minor, then user (exchange-notes §4.4):
//   major  topology/config (connectors, costs, address spaces); only the master bumps it
//   minor  connector up/down (damped against flapping, see database.h)
//   user   membership and master changes
struct Version {
  std::uint64_t major = 0;
  std::uint64_t minor = 0;
  std::uint64_t user = 0;
  friend auto operator<=>(const Version&, const Version&) = default;  // member order
  std::string str() const;                                            // "major.minor.user"
};

// A source bridgehead of a connector and whether it can currently send over it.
struct SourceBridgehead {
  std::string node;
  bool up = true;
  friend bool operator==(const SourceBridgehead&, const SourceBridgehead&) = default;
};

// A connector that starts in the routing group that holds it. Either a routing-group
// connector (target_group set: an edge of the group graph) or an SMTP connector to
// external destinations (target_group empty, address_spaces set). A routing-group
// connector may carry address spaces too; they are then reached through its group.
struct Connector {
  std::string id;                               // unique in the organization
  std::string target_group;                     // empty: SMTP connector to external address spaces
  int cost = 1;                                 // routing::kMinCost..kMaxCost
  std::vector<SourceBridgehead> sources;        // at least one; sorted by node
  std::vector<std::string> target_bridgeheads;  // sorted; may be empty (DNS MX)
  std::vector<routing::CostedAddressSpace> address_spaces;  // sorted by pattern
  Clock::time_point changed_at{};  // last up/down change of any source (ms resolution)

  // "A connector is down only when all its source bridgeheads are down."
  bool up() const;
  // routing::CostedAddressSpace has no operator== of its own.
  friend bool operator==(const Connector& a, const Connector& b);
};

struct RoutingGroup {
  std::string name;
  std::string master;                // a node id, one of members
  std::vector<std::string> members;  // sorted, unique
  Version version;
  std::vector<Connector> connectors;  // sorted by id
  friend bool operator==(const RoutingGroup&, const RoutingGroup&) = default;

  const Connector* find(std::string_view connector_id) const;
};

// Caps on what one entry may hold (hostile-inputs #26: "a frame claiming 10^6 nodes").
struct TableLimits {
  std::size_t max_groups = 20000;
  std::size_t max_members = 256;
  std::size_t max_connectors = 256;  // per group
  std::size_t max_bridgeheads = 64;  // sources or targets, per connector
  std::size_t max_address_spaces = 64;
};

// Names of groups, nodes and connectors: 1-128 of [A-Za-z0-9._-] (they end up in
// next-hop keys, log lines and bhctl tables).
bool is_valid_name(std::string_view name);
// `text` fit for an error message and a log line whatever a peer put in it: at most 64
// octets, anything outside [A-Za-z0-9._*-] as '?', "..." when cut.
std::string printable(std::string_view text);

// Sorts the lists into canonical order, then checks: valid names, master among members
// (or empty when there are no members), no duplicate members, connector ids, sources,
// targets or patterns, cost 1..100 on connectors and address spaces, at least one source,
// an SMTP connector with at least one address space, a connector not targeting its own
// group, and the limits. Permanent error (empty enhanced code) naming the group and item.
Result<RoutingGroup> normalize(RoutingGroup group, const TableLimits& limits = {});

// The canonical encoding: fixed field order, length-prefixed strings, big-endian
// integers, lists in their sorted order. Two equal groups always encode equally.
std::string canonical_encoding(const RoutingGroup& group);

using Hash = std::array<std::uint8_t, 32>;
Hash sha256(std::string_view data);
// The digest of a whole table: SHA-256 over the SHA-256 of each entry's canonical
// encoding, entries in name order (`groups` must be sorted by name and normalized).
template <class Range, class Get>
Hash table_digest(const Range& groups, Get get_group);
std::string hex(const Hash& hash);

template <class Range, class Get>
Hash table_digest(const Range& groups, Get get_group) {
  std::string hashes = "bh-ls-table-v1";
  for (const auto& item : groups) {
    const Hash h = sha256(canonical_encoding(get_group(item)));
    hashes.append(reinterpret_cast<const char*>(h.data()), h.size());
  }
  return sha256(hashes);
}

}  // namespace bh::linkstate
