#include "linkstate/database.h"

#include <algorithm>
#include <utility>

namespace bh::linkstate {

namespace {

Error unknown(std::string what) { return permanent_error("", std::move(what)); }

// Everything set_config() owns: the topology without versions and without state.
bool same_topology(const RoutingGroup& a, const RoutingGroup& b) {
  if (a.connectors.size() != b.connectors.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.connectors.size(); ++i) {
    Connector x = a.connectors[i];
    Connector y = b.connectors[i];
    x.changed_at = y.changed_at = {};
    for (auto& s : x.sources) {
      s.up = true;
    }
    for (auto& s : y.sources) {
      s.up = true;
    }
    if (!(x == y)) {
      return false;
    }
  }
  return true;
}

}  // namespace

const char* to_string(ApplyOutcome o) {
  switch (o) {
    case ApplyOutcome::kApplied:
      return "applied";
    case ApplyOutcome::kTieWon:
      return "tie-won";
    case ApplyOutcome::kSame:
      return "same";
    case ApplyOutcome::kTieLost:
      return "tie-lost";
    case ApplyOutcome::kStale:
      return "stale";
  }
  return "?";
}

std::shared_ptr<const Snapshot> Snapshot::build(Groups groups, std::uint64_t generation,
                                                const Snapshot* previous) {
  std::shared_ptr<Snapshot> s(new Snapshot());
  s->groups_ = std::move(groups);
  s->generation_ = generation;
  s->names_.reserve(s->groups_.size());
  s->index_.reserve(s->groups_.size());
  s->hashes_.reserve(s->groups_.size());
  // The same digest as table_digest(), reusing the hash of every entry that is still
  // the very same object as in the previous snapshot (entries are immutable).
  std::string hashes = "bh-ls-table-v1";
  hashes.reserve(hashes.size() + 32 * s->groups_.size());
  for (const auto& [name, group] : s->groups_) {
    const int pv = previous != nullptr ? previous->vertex(name) : -1;
    const Hash h = pv >= 0 && previous->find(name) == group.get()
                       ? previous->hashes_[static_cast<std::size_t>(pv)]
                       : sha256(canonical_encoding(*group));
    hashes.append(reinterpret_cast<const char*>(h.data()), h.size());
    s->hashes_.push_back(h);
    s->index_.emplace(std::string_view(name), static_cast<int>(s->names_.size()));
    s->names_.push_back(&name);
  }
  s->digest_ = sha256(hashes);

  s->offsets_.reserve(s->names_.size() + 1);
  s->offsets_.push_back(0);
  int v = 0;
  for (const auto& [name, group] : s->groups_) {
    for (const auto& c : group->connectors) {
      for (const auto& space : c.address_spaces) {
        s->externals_.push_back(External{v, &c, &space});
      }
      if (c.target_group.empty() || !c.up()) {
        continue;
      }
      const int to = s->vertex(c.target_group);
      if (to >= 0) {
        s->edges_.push_back(Edge{to, c.cost, &c});
      }
    }
    s->offsets_.push_back(s->edges_.size());
    ++v;
  }
  std::stable_sort(s->externals_.begin(), s->externals_.end(),
                   [](const External& a, const External& b) {
                     return a.space->space.specificity() > b.space->space.specificity();
                   });
  return s;
}

bool has_news_for(const Snapshot& ours, const std::vector<RoutingGroup>& theirs) {
  for (const auto& [name, mine] : ours.groups()) {
    auto it =
        std::lower_bound(theirs.begin(), theirs.end(), name,
                         [](const RoutingGroup& g, const std::string& n) { return g.name < n; });
    if (it == theirs.end() || it->name != name || it->version < mine->version) {
      return true;
    }
    if (it->version == mine->version && !(*it == *mine) &&
        sha256(canonical_encoding(*it)) < sha256(canonical_encoding(*mine))) {
      return true;
    }
  }
  return false;
}

const RoutingGroup* Snapshot::find(std::string_view group) const {
  auto it = groups_.find(group);
  return it == groups_.end() ? nullptr : it->second.get();
}

int Snapshot::vertex(std::string_view group) const {
  auto it = index_.find(group);
  return it == index_.end() ? -1 : it->second;
}

LinkStateDb::LinkStateDb(const Clock& clock, DbOptions options)
    : clock_(clock), options_(std::move(options)) {
  publish();
}

const RoutingGroup* LinkStateDb::find(std::string_view group) const {
  auto it = groups_.find(group);
  return it == groups_.end() ? nullptr : it->second.get();
}

void LinkStateDb::publish() {
  const auto previous = published_.load();
  published_.store(Snapshot::build(groups_, ++generation_, previous.get()));
}

Result<ApplyOutcome> LinkStateDb::apply(RoutingGroup incoming) {
  auto r = merge(std::move(incoming));
  if (r.ok() && (*r == ApplyOutcome::kApplied || *r == ApplyOutcome::kTieWon)) {
    publish();
  }
  return r;
}

LinkStateDb::ApplySummary LinkStateDb::apply_all(std::vector<RoutingGroup> entries) {
  ApplySummary sum;
  for (auto& g : entries) {
    auto r = merge(std::move(g));
    if (!r) {
      ++sum.refused;
    } else if (*r == ApplyOutcome::kApplied || *r == ApplyOutcome::kTieWon) {
      ++sum.applied;
    } else if (*r == ApplyOutcome::kStale) {
      ++sum.stale;
    }
  }
  if (sum.applied > 0) {
    publish();
  }
  return sum;
}

Result<ApplyOutcome> LinkStateDb::merge(RoutingGroup incoming) {
  auto norm = normalize(std::move(incoming), options_.limits);
  if (!norm) {
    return norm.error();
  }
  RoutingGroup g = std::move(norm).value();
  auto it = groups_.find(g.name);
  ApplyOutcome outcome = ApplyOutcome::kApplied;
  if (it == groups_.end()) {
    if (groups_.size() >= options_.limits.max_groups) {
      return unknown("link-state table full: more than " +
                     std::to_string(options_.limits.max_groups) + " routing groups");
    }
  } else {
    const RoutingGroup& ours = *it->second;
    if (g.version < ours.version) {
      return ApplyOutcome::kStale;
    }
    if (g.version == ours.version) {
      if (g == ours) {
        return ApplyOutcome::kSame;
      }
      if (sha256(canonical_encoding(g)) < sha256(canonical_encoding(ours))) {
        return ApplyOutcome::kTieLost;
      }
      outcome = ApplyOutcome::kTieWon;
    }
  }
  // Pending reports against the old entry no longer describe it; the authority for the
  // group is whoever produced the newer entry.
  std::erase_if(pending_, [&](const auto& p) { return p.first.group == g.name; });
  std::string name = g.name;
  groups_[name] = std::make_shared<const RoutingGroup>(std::move(g));
  return outcome;
}

Result<bool> LinkStateDb::set_config(RoutingGroup config) {
  auto norm = normalize(std::move(config), options_.limits);
  if (!norm) {
    return norm.error();
  }
  RoutingGroup g = std::move(norm).value();
  auto it = groups_.find(g.name);
  if (it == groups_.end()) {
    if (groups_.size() >= options_.limits.max_groups) {
      return unknown("link-state table full");
    }
    g.version = Version{1, 0, 0};
    std::string name = g.name;
    groups_.emplace(std::move(name), std::make_shared<const RoutingGroup>(std::move(g)));
    publish();
    return true;
  }
  const RoutingGroup& old = *it->second;
  // Keep what the network taught us about sources that are still there.
  for (auto& c : g.connectors) {
    const Connector* prev = old.find(c.id);
    if (prev == nullptr) {
      continue;
    }
    c.changed_at = prev->changed_at;
    for (auto& s : c.sources) {
      for (const auto& ps : prev->sources) {
        if (ps.node == s.node) {
          s.up = ps.up;
        }
      }
    }
  }
  g.version = old.version;
  if (!same_topology(g, old)) {
    ++g.version.major;
  } else if (g.master != old.master || g.members != old.members) {
    ++g.version.user;
  } else {
    return false;
  }
  std::erase_if(pending_, [&](const auto& p) {
    const Connector* c = p.first.group == g.name ? g.find(p.first.connector) : nullptr;
    return p.first.group == g.name &&
           (c == nullptr || std::none_of(c->sources.begin(), c->sources.end(),
                                         [&](const auto& s) { return s.node == p.first.node; }));
  });
  it->second = std::make_shared<const RoutingGroup>(std::move(g));
  publish();
  return true;
}

bool LinkStateDb::remove_group(std::string_view group) {
  auto it = groups_.find(group);
  if (it == groups_.end()) {
    return false;
  }
  std::erase_if(pending_, [&](const auto& p) { return p.first.group == group; });
  groups_.erase(it);
  publish();
  return true;
}

Result<bool> LinkStateDb::report(std::string_view group, std::string_view connector,
                                 std::string_view node, bool up) {
  const RoutingGroup* g = find(group);
  if (g == nullptr) {
    return unknown("unknown routing group \"" + printable(group) + "\"");
  }
  const Connector* c = g->find(connector);
  if (c == nullptr) {
    return unknown("unknown connector \"" + printable(connector) + "\" in routing group \"" +
                   printable(group) + "\"");
  }
  auto s = std::find_if(c->sources.begin(), c->sources.end(),
                        [&](const auto& x) { return x.node == node; });
  if (s == c->sources.end()) {
    return unknown("\"" + printable(node) + "\" is not a source bridgehead of connector \"" +
                   printable(connector) + "\"");
  }
  PendingKey key{std::string(group), std::string(connector), std::string(node)};
  if (s->up == up) {
    pending_.erase(key);  // it flapped back within the hold-down: nothing happened
    return false;
  }
  // Already pending in this direction: the hold-down keeps running from the first report.
  pending_.try_emplace(std::move(key), Pending{up, clock_.now()});
  return tick();
}

bool LinkStateDb::tick() {
  const Clock::time_point now = clock_.now();
  std::map<std::string, RoutingGroup> touched;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.since + options_.hold_down > now) {
      ++it;
      continue;
    }
    const auto& key = it->first;
    auto [t, fresh] = touched.try_emplace(key.group);
    if (fresh) {
      t->second = *groups_.at(key.group);
    }
    for (auto& c : t->second.connectors) {
      if (c.id != key.connector) {
        continue;
      }
      for (auto& s : c.sources) {
        if (s.node == key.node) {
          s.up = it->second.up;
        }
      }
      c.changed_at = std::chrono::time_point_cast<std::chrono::milliseconds>(now);
    }
    it = pending_.erase(it);
  }
  if (touched.empty()) {
    return false;
  }
  for (auto& [name, g] : touched) {
    ++g.version.minor;
    groups_[name] = std::make_shared<const RoutingGroup>(std::move(g));
  }
  publish();
  return true;
}

std::optional<Clock::time_point> LinkStateDb::next_deadline() const {
  std::optional<Clock::time_point> next;
  for (const auto& [key, p] : pending_) {
    const auto due = p.since + options_.hold_down;
    if (!next || due < *next) {
      next = due;
    }
  }
  return next;
}

}  // namespace bh::linkstate
