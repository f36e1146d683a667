#pragma once
// RouteTable: an immutable snapshot of the SMTP connectors and the answer to "which
// connector carries mail for this external domain?" (DESIGN.md §3 step 5, §4.3).
//
// Selection rules for a recipient domain (compared case-insensitively, trailing dot
// ignored):
//  1. Only address spaces that match the domain count (routing/address_space.h).
//  2. The most specific of them wins regardless of cost. There is no fallback to a less
//     specific space: when the connector of "*.example.com" is down, mail for
//     a.example.com waits for it; it never leaks out through "*".
//  3. Among the matches of that specificity (the same pattern on several connectors)
//     the lowest cost wins.
//  4. Equal lowest costs share the load: select() picks one of them uniformly with the
//     injected Random on every call. candidates() returns all of them, in configuration
//     order, for callers that fail over or pick by other means. A caller that wants all
//     recipients of one message and domain on one connector calls select() once per
//     (message, domain), not once per recipient.
// No matching address space: a permanent "5.4.4" error (RFC 3463 "unable to route").
// That is a fact of the configuration, not a fault: no connector is meant to carry the
// domain. Local domains are not routed here; the caller checks them first. Address
// literals ("[192.0.2.1]") match no address space, not even "*", and get 5.4.4.
//
// Next hop: every Route names the queue its recipients share (DESIGN.md §3 step 6):
//   smart host connector  "smarthost:<connector>"        (all domains through it share)
//   DNS MX connector      "mx:<connector>:<domain>"      (one queue per destination domain;
//                                                         the connector is part of the key
//                                                         because its TLS/auth/port
//                                                         settings are part of the hop)
// Connector names cannot contain ':' and domains cannot either, so the key splits back.
//
// Ownership and threading: build() returns a std::shared_ptr<const RouteTable>; the owner
// (node/ today, linkstate/ later) swaps the whole pointer to publish a new table and
// readers keep theirs alive while they use it. Every const method is safe from any
// thread; the Random passed to select() must not be shared with another thread.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "routing/address_space.h"
#include "routing/connector.h"

namespace bh::routing {

struct Route {
  std::shared_ptr<const Connector> connector;
  AddressSpace address_space;  // the pattern that matched
  int cost = 0;
  std::string next_hop;        // see above
};

class RouteTable {
 public:
  // Validates and freezes `connectors`. Permanent errors (empty enhanced code) name the
  // connector: invalid or duplicate names (case-insensitive), a smart host connector
  // without smart hosts, a DNS MX connector with smart hosts, no address spaces, a cost
  // outside 1..100, the same pattern twice on one connector.
  static Result<std::shared_ptr<const RouteTable>> build(std::vector<Connector> connectors);

  // All equally good routes for `domain` (rules 1-3), in configuration order; empty
  // when no address space matches.
  std::vector<Route> candidates(std::string_view domain) const;

  // One route for `domain` (rules 1-4), or permanent 5.4.4 when there is none.
  Result<Route> select(std::string_view domain, Random& random) const;

  const std::vector<std::shared_ptr<const Connector>>& connectors() const { return connectors_; }
  // nullptr when no connector has that name (case-insensitive).
  std::shared_ptr<const Connector> find(std::string_view name) const;

  // The next-hop key of `connector` for `domain` (normalized here).
  static std::string next_hop(const Connector& connector, std::string_view domain);

 private:
  struct Entry {
    const AddressSpace* space;  // points into connectors_[connector]->address_spaces
    int cost;
    std::size_t connector;
  };

  explicit RouteTable(std::vector<std::shared_ptr<const Connector>> connectors);

  std::vector<std::shared_ptr<const Connector>> connectors_;
  std::vector<Entry> entries_;  // most specific first, then cheapest, then config order
};

}  // namespace bh::routing
