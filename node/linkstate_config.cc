#include "node/linkstate_config.h"

#include <cctype>
#include <map>
#include <set>

#include "common/text.h"
#include "node/config.h"
#include "routing/address_space.h"

namespace bh::node {

namespace {

std::string quoted(const std::string& s) { return "\"" + s + "\""; }
std::string index(const std::string& k, int i) { return k + "[" + std::to_string(i) + "]"; }

std::optional<KeyError> err(std::string key, std::string message) {
  return KeyError{std::move(key), std::move(message)};
}

std::optional<KeyError> check_name(const std::string& key, const std::string& value,
                                   const char* what) {
  if (value.empty()) {
    return err(key, std::string("missing or empty (") + what + ")");
  }
  if (!is_link_state_name(value)) {
    return err(key, quoted(value) + ": use 1-128 letters, digits, '.', '_' or '-'");
  }
  return std::nullopt;
}

std::optional<KeyError> check_file(const std::string& key, const std::string& value) {
  if (value.empty()) {
    return err(key, "required (mutual TLS with the cluster CA)");
  }
  if (value.front() != '/') {
    return err(key, "must be an absolute path");
  }
  return std::nullopt;
}

}  // namespace

bool is_link_state_name(std::string_view name) { return is_node_name(name); }

std::optional<KeyError> validate_link_state(bh::proto::Config& config) {
  auto& ls = *config.mutable_link_state();
  const std::string k = "link_state";
  if (auto e = check_name(k + ".organization", ls.organization(), "the organization's name")) {
    return e;
  }
  if (auto e = check_name(k + ".routing_group", ls.routing_group(), "this node's routing group")) {
    return e;
  }
  if (ls.listen().empty()) {
    return err(k + ".listen", "required: the TCP 691 listen address, \"IP:port\"");
  }
  if (auto ep = parse_endpoint(ls.listen()); !ep.ok()) {
    return err(k + ".listen", ep.error().message);
  } else {
    ls.set_listen(ep->str());
  }

  std::map<std::string, std::string> node_group;  // id -> routing group
  std::map<std::string, std::string> masters;     // group -> key that named it
  std::map<std::string, std::string> addresses;   // address -> key
  for (int i = 0; i < ls.nodes_size(); ++i) {
    auto& n = *ls.mutable_nodes(i);
    const std::string key = index(k + ".nodes", i);
    if (auto e = check_name(key + ".id", n.id(), "the node's id, as its certificate names it")) {
      return e;
    }
    if (auto e =
            check_name(key + ".routing_group", n.routing_group(), "the node's routing group")) {
      return e;
    }
    if (!node_group.emplace(n.id(), n.routing_group()).second) {
      return err(key + ".id", quoted(n.id()) + " is listed twice");
    }
    if (n.address().empty()) {
      return err(key + ".address", "required: the node's 691 listener, \"IP:port\"");
    }
    auto ep = parse_endpoint(n.address());
    if (!ep.ok()) {
      return err(key + ".address", ep.error().message);
    }
    n.set_address(ep->str());
    if (auto [it, fresh] = addresses.emplace(n.address(), key + ".address"); !fresh) {
      return err(key + ".address",
                 quoted(n.address()) + " is already the address of " + it->second);
    }
    if (!n.smtp().empty()) {
      auto sep = parse_endpoint(n.smtp());
      if (!sep.ok()) {
        return err(key + ".smtp", sep.error().message);
      }
      n.set_smtp(sep->str());
    }
    if (n.master()) {
      if (auto [it, fresh] = masters.emplace(n.routing_group(), key + ".master"); !fresh) {
        return err(key + ".master", "routing group " + quoted(n.routing_group()) +
                                        " has a configured master already (" + it->second + ")");
      }
    }
  }
  const std::string& self = config.node().name();
  auto me = node_group.find(self);
  if (me == node_group.end()) {
    return err(k + ".nodes", "node.name " + quoted(self) + " is not one of the nodes");
  }
  if (me->second != ls.routing_group()) {
    return err(k + ".routing_group", quoted(ls.routing_group()) + " but link_state.nodes lists " +
                                         quoted(self) + " in " + quoted(me->second));
  }
  if (ls.has_relay()) {
    auto& r = *ls.mutable_relay();
    const std::string rk = k + ".relay";
    std::string m = r.auth_mechanism();
    for (char& ch : m) {
      ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    }
    if (m != "LOGIN" && m != "GSSAPI") {
      return err(rk + ".auth_mechanism", quoted(r.auth_mechanism()) + " is not LOGIN or GSSAPI");
    }
    r.set_auth_mechanism(m);
    const bool login = !r.auth_username().empty() || !r.auth_password_file().empty();
    if (m == "LOGIN" && login) {  // neither: the nodes relay to each other without a login
      if (r.auth_username().empty()) {
        return err(rk + ".auth_username", "required with auth_mechanism LOGIN (the cluster's user)");
      }
      if (r.auth_password_file().empty() || r.auth_password_file().front() != '/') {
        return err(rk + ".auth_password_file", "must be an absolute path");
      }
      if (r.tls() == bh::proto::TLS_MODE_NONE) {
        return err(rk + ".tls", "none: credentials never travel in clear text");
      }
    } else if (m == "GSSAPI" && login) {
      return err(rk + ".auth_mechanism", "GSSAPI uses auth.client_keytab, no username or password file");
    }
    if (r.tls() == bh::proto::TLS_MODE_NONE && r.tls_verify()) {
      return err(rk + ".tls_verify", "true needs tls: opportunistic or required");
    }
  }
  std::set<std::string> groups;
  for (const auto& [id, g] : node_group) {
    groups.insert(g);
  }

  std::set<std::string> connector_ids;
  for (int i = 0; i < ls.connectors_size(); ++i) {
    auto& c = *ls.mutable_connectors(i);
    const std::string key = index(k + ".connectors", i);
    if (auto e = check_name(key + ".id", c.id(), "the connector's id")) {
      return e;
    }
    if (!connector_ids.insert(c.id()).second) {
      return err(key + ".id", quoted(c.id()) + " is listed twice");
    }
    if (auto e = check_name(key + ".source_group", c.source_group(),
                            "the routing group that holds it")) {
      return e;
    }
    if (!groups.count(c.source_group())) {
      return err(key + ".source_group",
                 quoted(c.source_group()) + " has no nodes in link_state.nodes");
    }
    if (c.target_group().empty() && c.address_spaces_size() == 0) {
      return err(key, "needs target_group or address_spaces");
    }
    if (!c.target_group().empty()) {
      if (!groups.count(c.target_group())) {
        return err(key + ".target_group",
                   quoted(c.target_group()) + " has no nodes in link_state.nodes");
      }
      if (c.target_group() == c.source_group()) {
        return err(key + ".target_group", "must differ from source_group");
      }
    }
    std::set<std::string> seen;
    for (int j = 0; j < c.source_bridgeheads_size(); ++j) {
      const std::string& b = c.source_bridgeheads(j);
      const std::string bkey = index(key + ".source_bridgeheads", j);
      auto it = node_group.find(b);
      if (it == node_group.end() || it->second != c.source_group()) {
        return err(bkey, quoted(b) + " is not a node of routing group " + quoted(c.source_group()));
      }
      if (!seen.insert(b).second) {
        return err(bkey, quoted(b) + " is listed twice");
      }
    }
    if (c.source_bridgeheads_size() == 0) {
      for (const auto& [id, g] : node_group) {
        if (g == c.source_group()) {
          c.add_source_bridgeheads(id);
        }
      }
    }
    seen.clear();
    for (int j = 0; j < c.target_bridgeheads_size(); ++j) {
      const std::string& b = c.target_bridgeheads(j);
      const std::string bkey = index(key + ".target_bridgeheads", j);
      auto it = node_group.find(b);
      if (it == node_group.end() || c.target_group().empty() || it->second != c.target_group()) {
        return err(bkey, quoted(b) + " is not a node of target_group " + quoted(c.target_group()));
      }
      if (!seen.insert(b).second) {
        return err(bkey, quoted(b) + " is listed twice");
      }
    }
    seen.clear();
    for (int j = 0; j < c.address_spaces_size(); ++j) {
      auto& as = *c.mutable_address_spaces(j);
      const std::string pkey = index(key + ".address_spaces", j) + ".pattern";
      auto space = bh::routing::AddressSpace::parse(as.pattern());
      if (!space.ok()) {
        return err(pkey, space.error().message);
      }
      if (!seen.insert(space->str()).second) {
        return err(pkey, quoted(space->str()) + " is listed twice in this connector");
      }
      as.set_pattern(space->str());
    }
  }

  if (auto e = check_file(k + ".tls.ca_file", ls.tls().ca_file())) {
    return e;
  }
  if (auto e = check_file(k + ".tls.cert_file", ls.tls().cert_file())) {
    return e;
  }
  if (auto e = check_file(k + ".tls.key_file", ls.tls().key_file())) {
    return e;
  }
  if (ls.dead_after_ms() <= ls.keepalive_ms()) {
    return err(k + ".dead_after_ms",
               "must exceed link_state.keepalive_ms (" + std::to_string(ls.keepalive_ms()) + ")");
  }
  if (ls.reconnect_min_ms() > ls.reconnect_max_ms()) {
    return err(k + ".reconnect_min_ms", "must not exceed link_state.reconnect_max_ms (" +
                                            std::to_string(ls.reconnect_max_ms()) + ")");
  }
  return std::nullopt;
}

}  // namespace bh::node
