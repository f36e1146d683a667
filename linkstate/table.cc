#include "linkstate/table.h"

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "common/text.h"

namespace bh::linkstate {

namespace {

Error bad(const RoutingGroup& g, const std::string& why) {
  return permanent_error("", "routing group \"" + printable(g.name) + "\": " + why);
}

template <class T>
bool has_adjacent_duplicates(const std::vector<T>& sorted) {
  return std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end();
}

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}
void put_str(std::string& out, std::string_view s) {
  put_u64(out, s.size());
  out.append(s);
}

}  // namespace

std::string Version::str() const {
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(user);
}

bool Connector::up() const {
  return std::any_of(sources.begin(), sources.end(), [](const auto& s) { return s.up; });
}

bool operator==(const Connector& a, const Connector& b) {
  if (a.id != b.id || a.target_group != b.target_group || a.cost != b.cost ||
      a.sources != b.sources || a.target_bridgeheads != b.target_bridgeheads ||
      a.changed_at != b.changed_at || a.address_spaces.size() != b.address_spaces.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.address_spaces.size(); ++i) {
    if (!(a.address_spaces[i].space == b.address_spaces[i].space) ||
        a.address_spaces[i].cost != b.address_spaces[i].cost) {
      return false;
    }
  }
  return true;
}

const Connector* RoutingGroup::find(std::string_view connector_id) const {
  auto it = std::lower_bound(connectors.begin(), connectors.end(), connector_id,
                             [](const Connector& c, std::string_view id) { return c.id < id; });
  return it != connectors.end() && it->id == connector_id ? &*it : nullptr;
}

bool is_valid_name(std::string_view name) { return is_node_name(name); }

std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 64)) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-' || c == '*';
    out.push_back(ok ? c : '?');
  }
  if (text.size() > 64) {
    out += "...";
  }
  return out;
}

Result<RoutingGroup> normalize(RoutingGroup g, const TableLimits& limits) {
  if (!is_valid_name(g.name)) {
    return bad(g, "invalid routing group name");
  }
  if (g.members.size() > limits.max_members) {
    return bad(g, "more than " + std::to_string(limits.max_members) + " members");
  }
  if (g.connectors.size() > limits.max_connectors) {
    return bad(g, "more than " + std::to_string(limits.max_connectors) + " connectors");
  }
  std::sort(g.members.begin(), g.members.end());
  if (has_adjacent_duplicates(g.members)) {
    return bad(g, "a member is listed twice");
  }
  for (const auto& m : g.members) {
    if (!is_valid_name(m)) {
      return bad(g, "invalid member node id");
    }
  }
  if (g.members.empty() ? !g.master.empty()
                        : !std::binary_search(g.members.begin(), g.members.end(), g.master)) {
    return bad(g, "master \"" + printable(g.master) + "\" is not a member");
  }
  std::sort(g.connectors.begin(), g.connectors.end(),
            [](const Connector& a, const Connector& b) { return a.id < b.id; });
  for (std::size_t i = 0; i < g.connectors.size(); ++i) {
    Connector& c = g.connectors[i];
    const std::string what = "connector \"" + printable(c.id) + "\": ";
    if (!is_valid_name(c.id)) {
      return bad(g, "invalid connector id");
    }
    if (i > 0 && g.connectors[i - 1].id == c.id) {
      return bad(g, what + "listed twice");
    }
    if (c.cost < routing::kMinCost || c.cost > routing::kMaxCost) {
      return bad(g, what + "cost outside 1..100");
    }
    if (!c.target_group.empty() && !is_valid_name(c.target_group)) {
      return bad(g, what + "invalid target routing group");
    }
    if (c.target_group == g.name) {
      return bad(g, what + "targets its own routing group");
    }
    if (c.target_group.empty() && c.address_spaces.empty()) {
      return bad(g, what + "neither a target routing group nor an address space");
    }
    if (c.sources.empty()) {
      return bad(g, what + "no source bridgehead");
    }
    if (c.sources.size() > limits.max_bridgeheads ||
        c.target_bridgeheads.size() > limits.max_bridgeheads) {
      return bad(g, what + "too many bridgeheads");
    }
    if (c.address_spaces.size() > limits.max_address_spaces) {
      return bad(g, what + "too many address spaces");
    }
    std::sort(c.sources.begin(), c.sources.end(),
              [](const auto& a, const auto& b) { return a.node < b.node; });
    for (std::size_t j = 0; j < c.sources.size(); ++j) {
      if (!is_valid_name(c.sources[j].node) ||
          (j > 0 && c.sources[j - 1].node == c.sources[j].node)) {
        return bad(g, what + "invalid or duplicate source bridgehead");
      }
    }
    std::sort(c.target_bridgeheads.begin(), c.target_bridgeheads.end());
    if (has_adjacent_duplicates(c.target_bridgeheads) ||
        !std::all_of(c.target_bridgeheads.begin(), c.target_bridgeheads.end(),
                     [](const std::string& n) { return is_valid_name(n); })) {
      return bad(g, what + "invalid or duplicate target bridgehead");
    }
    std::sort(c.address_spaces.begin(), c.address_spaces.end(),
              [](const auto& a, const auto& b) { return a.space.str() < b.space.str(); });
    for (std::size_t j = 0; j < c.address_spaces.size(); ++j) {
      const auto& s = c.address_spaces[j];
      if (s.cost < routing::kMinCost || s.cost > routing::kMaxCost) {
        return bad(g, what + "address space \"" + s.space.str() + "\" cost outside 1..100");
      }
      if (j > 0 && c.address_spaces[j - 1].space == s.space) {
        return bad(g, what + "address space \"" + s.space.str() + "\" listed twice");
      }
    }
    // The wire and the digest carry milliseconds.
    c.changed_at = std::chrono::time_point_cast<std::chrono::milliseconds>(c.changed_at);
  }
  return g;
}

std::string canonical_encoding(const RoutingGroup& g) {
  std::string out;
  out.reserve(128 + 96 * g.connectors.size());
  put_str(out, "bh-ls-group-v1");
  put_str(out, g.name);
  put_str(out, g.master);
  put_u64(out, g.version.major);
  put_u64(out, g.version.minor);
  put_u64(out, g.version.user);
  put_u64(out, g.members.size());
  for (const auto& m : g.members) {
    put_str(out, m);
  }
  put_u64(out, g.connectors.size());
  for (const auto& c : g.connectors) {
    put_str(out, c.id);
    put_str(out, c.target_group);
    put_u64(out, static_cast<std::uint64_t>(c.cost));
    put_u64(out, static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                c.changed_at.time_since_epoch())
                                                .count()));
    put_u64(out, c.sources.size());
    for (const auto& s : c.sources) {
      put_str(out, s.node);
      out.push_back(s.up ? '\1' : '\0');
    }
    put_u64(out, c.target_bridgeheads.size());
    for (const auto& t : c.target_bridgeheads) {
      put_str(out, t);
    }
    put_u64(out, c.address_spaces.size());
    for (const auto& s : c.address_spaces) {
      put_str(out, s.space.str());
      put_u64(out, static_cast<std::uint64_t>(s.cost));
    }
  }
  return out;
}

Hash sha256(std::string_view data) {
  Hash h{};
  unsigned int len = 0;
  BH_CHECK(EVP_Digest(data.data(), data.size(), h.data(), &len, EVP_sha256(), nullptr) == 1);
  BH_CHECK(len == h.size());
  return h;
}

std::string hex(const Hash& hash) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (auto b : hash) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 15]);
  }
  return out;
}

}  // namespace bh::linkstate
