#pragma once
// LinkStateService: the running link-state engine of a node (DESIGN.md §4.2, §4.3;
// docs/linkstate-protocol.md §3, §5): the Asio/TLS adapter for TCP 691 around the sans-I/O
// core of linkstate/ (LinkStateDb, PeerSession, elect_master, compute_routes).
//
// What it does:
//  - Seeds the LinkStateDb from the `link_state` config (every routing group with its
//    members, configured master and connectors; set_config as the directory would).
//  - Listens on link_state.listen and accepts mutual TLS 1.2/1.3 with the cluster CA:
//    a peer whose certificate does not verify, or whose certificate names (CN, SAN DNS)
//    are not exactly one configured node of this routing group, is dropped and counted.
//    Accepted sessions take the master role (PeerSession, expected_peer = that node).
//  - Election: the candidates are this group's nodes in elect_master's order (the
//    configured master, then by id). A node connects, as member, to the first candidate
//    that answers; reaching itself, it is the master (set_config with itself as master,
//    reasserted whenever a merge says otherwise). Every reconnect_min_ms it probes the
//    candidates ahead of its current master and moves to the first one that answers
//    (fail-back); when its master's session ends (dead peer, error) it starts over
//    (fail-over). elect_master(configured, members, live) makes the decision, with live
//    = this node and the nodes that answered.
//  - Everything of one node's link state runs on one thread (its own io_context): the
//    database, every PeerSession, the timers (session deadlines, db.tick()).
//  - Publishes: when the snapshot's generation moves, every session is told
//    (table_changed), and compute_routes() of the new snapshot replaces routes()
//    atomically.
//
// Threading: start()/stop() from the owner's thread; routes(), snapshot() and the
// *_json() calls from any thread (the JSON ones post to the link-state thread and wait
// at most 2 s).
// Errors: create() and open() fail permanently naming the config key and the file.

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "linkstate/database.h"
#include "linkstate/shortest_path.h"
#include "proto/config.pb.h"

namespace bh::node {

// The link_state topology as linkstate::RoutingGroup entries (normalized), one per group
// named in link_state.nodes; `masters` overrides the master per group (else the
// configured one, else the lowest id).
Result<std::vector<linkstate::RoutingGroup>> link_state_topology(const bh::proto::LinkState& ls);

class LinkStateService {
 public:
  // `config_path` only names the file in errors. Loads the TLS files and seeds the db.
  static Result<std::unique_ptr<LinkStateService>> create(const bh::proto::Config& config,
                                                          const std::string& config_path);
  ~LinkStateService();

  // Called on the link-state thread after every new routes() is published (before
  // start(); must not block): the queue routes waiting mail again.
  void on_routes(std::function<void()> callback);
  // Binds link_state.listen (fails naming the key), then runs the link-state thread.
  Result<void> start();
  void stop();
  // SIGHUP: link_state.tls's files (CA, certificate chain, key) read again. New 691
  // sessions, in and out, use them; sessions already up keep the ones they began with.
  // Files that do not load or do not match keep the current ones: the error names the
  // config file, the key and the file. Counted in peers_json() (tls_reloads,
  // tls_reload_failures). Any thread.
  Result<void> reload_tls();

  std::shared_ptr<const linkstate::Snapshot> snapshot() const;
  // Null until the first snapshot has been computed.
  std::shared_ptr<const linkstate::Routes> routes() const;

  nlohmann::json lsdb_json() const;
  nlohmann::json peers_json() const;
  nlohmann::json routes_json() const;
  // This node's source bridgehead of `connector` (of its own routing group) is up or
  // down: what delivery results and probes report (DESIGN.md §4.2); damped by
  // hold_down. The master reports into its database; a member sends a StateChange to its
  // master. Permanent error: not a connector of this group, or this node is none of its
  // source bridgeheads; transient: no session to the master right now.
  Result<nlohmann::json> report(const std::string& connector, bool up);

  // The directory's configuration role (directory/topology_reader.h) read this node's
  // routing group anew (any thread): its connectors (costs, bridgeheads, address spaces)
  // replace the configured ones; the master writes them into the table (a major bump when
  // they changed) and floods them. Members, masters and node addresses stay those of
  // link_state.nodes (the 691 mesh and its certificates are configured per node).
  // Entries of other groups are ignored here: their own masters publish them.
  void set_directory_group(linkstate::RoutingGroup group);

  // X-LINK2STATE (docs/linkstate-protocol.md §4), between bridgeheads of different
  // routing groups over their SMTP sessions:
  //  - link2state_table(): our whole table as the payload a relaying bridgehead sends
  //    (any thread; "" before the first snapshot);
  //  - exchange_link2state(): a payload a peer sent us (server side): applied (newer
  //    entries win), and `done` (on the link-state thread) gets our table when the peer
  //    is behind, else none; a payload that does not decode changes nothing (none);
  //  - apply_link2state(): the table a peer sent back in its 250 (client side).
  // Each exchange is listed by peers_json() under "x_link2state".
  std::string link2state_table() const;
  void exchange_link2state(const std::string& peer, std::string payload,
                           std::function<void(std::optional<std::string>)> done);
  void apply_link2state(const std::string& peer, std::string payload);

  // The link-state decision for an external domain, from the published routes (any
  // thread): nullopt when no link-state address space matches it (the static routing
  // table decides); a transient 4.4.4 when its most specific address space has no live
  // path (DESIGN.md §4.3: the mail stays queued and is retried until expiry, never
  // bounced for that); else the connector chosen among the equal least-cost routes
  // (`pick` chooses) and whether it starts in this node's routing group.
  struct DomainDecision {
    std::string connector;
    std::string group;
    bool local = false;
  };
  std::optional<Result<DomainDecision>> route_domain(std::string_view domain,
                                                     std::uint64_t pick) const;

  struct Impl;

 private:
  explicit LinkStateService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bh::node
