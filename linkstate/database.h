#pragma once
// LinkStateDb: the link-state database of one node (DESIGN.md §4.2, exchange-notes §4).
//
// State it owns: one entry per routing group (linkstate/table.h), the pending (damped)
// bridgehead state changes, and the published snapshot. Nothing else changes it
// (STYLE.md principle 5); readers take snapshot() and keep it as long as they like.
//
// Two ways in:
//  - apply(): an entry from a peer (691 OrgInfo, X-LINK2STATE). Merge rule per group:
//    a newer version (major, then minor, then user) replaces the entry; an older one is
//    refused as stale (a replay cannot roll the table back); the same version with the
//    same content changes nothing; the same version with different content (two masters
//    bumped independently, e.g. during a failover) is resolved deterministically: the
//    entry whose canonical encoding has the greater SHA-256 wins, on every node alike.
//  - the authority calls (the routing group's master; the caller decides who that is):
//    set_config() (topology from directory/config: major, or user when only the master
//    or the members changed), report() (a source bridgehead up/down: minor, damped).
//
// Damping (exchange-notes §4.5, "toggling"): report() never changes the table at once
// unless hold_down is zero. It records a pending change; tick() commits the changes
// that have been pending for hold_down, and a report of the current state before then
// cancels the pending one, so a connector that flaps faster than hold_down never moves.
// Every committed batch bumps the minor version of each group it touches once. The
// owner arms a timer for next_deadline() and calls tick(); tests move a ManualClock.
//
// Snapshots: every change publishes a new std::shared_ptr<const Snapshot> atomically;
// snapshot() may be called from any thread. All other methods belong to the owner's
// strand. Errors are permanent with an empty enhanced code (a fault of the input, never
// of the mail): they name the group and the item.

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "linkstate/table.h"

namespace bh::linkstate {

// An immutable view of the whole table plus the graph index that shortest_path.h walks.
// Built once per change; never modified afterwards; safe to read from any thread.
class Snapshot {
 public:
  using Groups = std::map<std::string, std::shared_ptr<const RoutingGroup>, std::less<>>;

  // `previous` (optional) lends the hashes of entries it shares with `groups`.
  static std::shared_ptr<const Snapshot> build(Groups groups, std::uint64_t generation,
                                               const Snapshot* previous = nullptr);

  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  const Groups& groups() const { return groups_; }
  const RoutingGroup* find(std::string_view group) const;
  // SHA-256 over the canonical encodings of every entry in name order.
  const Hash& digest() const { return digest_; }
  std::uint64_t generation() const { return generation_; }

  // The graph: vertices are routing groups in name order; edges are the live
  // routing-group connectors whose target group is in the table (CSR layout).
  struct Edge {
    int to;
    int cost;
    const Connector* connector;
  };
  struct External {
    int group;  // the vertex whose connector carries the address space
    const Connector* connector;
    const routing::CostedAddressSpace* space;
  };
  int vertex_count() const { return static_cast<int>(names_.size()); }
  int vertex(std::string_view group) const;  // -1 when unknown
  const std::string& name(int vertex) const { return *names_[static_cast<std::size_t>(vertex)]; }
  const Edge* edges_begin(int v) const {
    return edges_.data() + offsets_[static_cast<std::size_t>(v)];
  }
  const Edge* edges_end(int v) const {
    return edges_.data() + offsets_[static_cast<std::size_t>(v) + 1];
  }
  // Every address space of every connector, live or not, most specific first.
  const std::vector<External>& externals() const { return externals_; }

 private:
  Snapshot() = default;

  Groups groups_;
  std::uint64_t generation_ = 0;
  Hash digest_{};
  std::vector<Hash> hashes_;  // per vertex: SHA-256 of the entry's canonical encoding
  std::vector<const std::string*> names_;
  std::unordered_map<std::string_view, int> index_;
  std::vector<std::size_t> offsets_;
  std::vector<Edge> edges_;
  std::vector<External> externals_;
};

// Whether `ours` holds an entry that a peer holding `theirs` (sorted by name, as
// from_org_info() returns it) would take: one it lacks, a newer one, or the winner of an
// equal-version tie. Decides whether to answer a peer's table with ours: comparing
// digests instead would ping-pong forever between two nodes whose limits differ.
bool has_news_for(const Snapshot& ours, const std::vector<RoutingGroup>& theirs);

enum class ApplyOutcome {
  kApplied,  // newer (or new): replaced
  kTieWon,   // same version, different content, the incoming entry won: replaced
  kSame,     // same version and content: nothing to do
  kTieLost,  // same version, different content, ours won: the peer should take ours
  kStale,    // older than ours: refused (replay or a peer behind us)
};
const char* to_string(ApplyOutcome o);

struct DbOptions {
  std::chrono::milliseconds hold_down{std::chrono::minutes(10)};  // Exchange's default
  TableLimits limits;
};

class LinkStateDb {
 public:
  LinkStateDb(const Clock& clock, DbOptions options);

  // A peer's entry. Validated (normalize()) before anything else; invalid entries are
  // permanent errors and change nothing.
  Result<ApplyOutcome> apply(RoutingGroup incoming);
  // A whole table from a peer (OrgInfo): every entry as apply(), one snapshot published
  // at the end (publishing costs O(table), so entry by entry would be quadratic).
  struct ApplySummary {
    std::size_t applied = 0;  // kApplied or kTieWon
    std::size_t stale = 0;
    std::size_t refused = 0;  // invalid, or the table full
  };
  ApplySummary apply_all(std::vector<RoutingGroup> entries);

  // The routing group's topology from the directory or the config. Existing source
  // bridgehead states (and changed_at) are kept for connectors and sources that remain;
  // new sources start up. Bumps major when connectors changed, else user when master or
  // members changed, else nothing; the version fields of `config` are ignored.
  // A new group starts at 1.0.0. Returns whether the table changed.
  Result<bool> set_config(RoutingGroup config);
  // Removes a group that left the configuration. Returns whether it was there.
  bool remove_group(std::string_view group);

  // A source bridgehead `node` of connector `connector` in `group` is up or down (from
  // delivery results and probes). Damped, see the header comment. Returns whether the
  // table changed now (only possible with a zero hold_down).
  Result<bool> report(std::string_view group, std::string_view connector, std::string_view node,
                      bool up);
  // Commits every pending change due by now. Returns whether the table changed.
  bool tick();
  // When tick() next has something to do; nullopt when nothing is pending.
  std::optional<Clock::time_point> next_deadline() const;
  std::size_t pending() const { return pending_.size(); }

  std::shared_ptr<const Snapshot> snapshot() const { return published_.load(); }
  const RoutingGroup* find(std::string_view group) const;

 private:
  struct PendingKey {
    std::string group, connector, node;
    friend auto operator<=>(const PendingKey&, const PendingKey&) = default;
  };
  struct Pending {
    bool up;
    Clock::time_point since;
  };

  Result<ApplyOutcome> merge(RoutingGroup incoming);  // apply() without publishing
  void publish();

  const Clock& clock_;
  DbOptions options_;
  Snapshot::Groups groups_;
  std::map<PendingKey, Pending> pending_;
  std::uint64_t generation_ = 0;
  std::atomic<std::shared_ptr<const Snapshot>> published_;
};

}  // namespace bh::linkstate
