#include "directory/topology_reader.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <set>

#include "common/log.h"
#include "common/text.h"
#include "directory/ldap_filter.h"
#include "routing/connector.h"

namespace bh::directory {

namespace {

const std::string& first(const LdapEntry& e, const char* attr) {
  static const std::string kEmpty;
  const auto& v = e.values(attr);
  return v.empty() ? kEmpty : v.front();
}

bool has_class(const LdapEntry& e, std::string_view cls) {
  for (const auto& v : e.values("objectClass")) {
    if (ascii_lower(v) == ascii_lower(cls)) {
      return true;
    }
  }
  return false;
}

std::vector<std::string> sorted_unique(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

std::string fnv_hex(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (char c : s) {
    h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int shift = 60; shift >= 0; shift -= 4) {
    out.push_back(kHex[(h >> shift) & 0xf]);
  }
  return out;
}

// What the poller compares: the topology, and the objects it had to skip (a new broken
// object changes no route, but the operator must hear of it).
std::string signature(const Topology& t) {
  std::string s = t.digest;
  for (const auto& w : t.warnings) {
    s += "\n" + w;
  }
  return s;
}

}  // namespace

TopologyReader::TopologyReader(LdapSearcher& searcher, TopologyReaderOptions options)
    : searcher_(searcher), options_(std::move(options)) {}

LdapSearch TopologyReader::request() const {
  LdapSearch s;
  s.base = options_.config_dn;
  s.scope = LdapScope::kSubtree;
  s.filter = filter_or({filter_equals("objectClass", "bhRoutingGroup"),
                        filter_equals("objectClass", "bhServer"),
                        filter_equals("objectClass", "bhConnector")});
  s.attributes = {"objectClass",        "cn",
                  "bhMaster",           "bhRoutingGroupName",
                  "bhSmtpAddress",      "bhLinkStateAddress",
                  "bhTargetGroup",      "bhCost",
                  "bhSourceBridgehead", "bhTargetBridgehead",
                  "bhAddressSpace"};
  s.page_size = 500;
  s.strict_size = true;
  s.max_entries = 20000;
  return s;
}

void TopologyReader::read(std::function<void(Result<Topology>)> done) {
  searcher_.search(request(), [done = std::move(done)](Result<std::vector<LdapEntry>> r) {
    if (!r.ok()) {
      done(r.error());
      return;
    }
    done(build(*r));
  });
}

Topology TopologyReader::build(const std::vector<LdapEntry>& entries) {
  Topology t;
  std::map<std::string, linkstate::RoutingGroup> groups;  // by lower-cased name
  std::map<std::string, ServerObject> servers;
  std::vector<const LdapEntry*> connectors;
  auto warn = [&](const LdapEntry& e, const std::string& why) {
    t.warnings.push_back(e.dn + ": " + why);
  };
  for (const auto& e : entries) {
    const std::string& cn = first(e, "cn");
    if (cn.empty()) {
      warn(e, "no cn");
    } else if (has_class(e, "bhRoutingGroup")) {
      linkstate::RoutingGroup g;
      g.name = cn;
      g.master = first(e, "bhMaster");
      if (!groups.emplace(ascii_lower(cn), std::move(g)).second) {
        warn(e, "a second routing group named " + cn);
      }
    } else if (has_class(e, "bhServer")) {
      ServerObject s{cn, first(e, "bhRoutingGroupName"), first(e, "bhSmtpAddress"),
                     first(e, "bhLinkStateAddress")};
      if (!servers.emplace(ascii_lower(cn), std::move(s)).second) {
        warn(e, "a second server named " + cn);
      }
    } else if (has_class(e, "bhConnector")) {
      connectors.push_back(&e);
    }
  }
  for (auto& [key, s] : servers) {
    auto g = groups.find(ascii_lower(s.routing_group));
    if (g == groups.end()) {
      t.warnings.push_back("server " + s.name + ": unknown routing group " + s.routing_group +
                           ", skipped");
      continue;
    }
    s.routing_group = g->second.name;
    g->second.members.push_back(s.name);
    t.servers.push_back(s);
  }
  for (const LdapEntry* e : connectors) {
    linkstate::Connector c;
    c.id = first(*e, "cn");
    auto g = groups.find(ascii_lower(first(*e, "bhRoutingGroupName")));
    if (g == groups.end()) {
      warn(*e,
           "connector from unknown routing group " + first(*e, "bhRoutingGroupName") + ", skipped");
      continue;
    }
    const std::string& target = first(*e, "bhTargetGroup");
    if (!target.empty()) {
      auto tg = groups.find(ascii_lower(target));
      if (tg == groups.end() || tg == g) {
        warn(*e, std::string("connector to ") + (tg == g ? "its own" : "an unknown") +
                     " routing group " + target + ", skipped");
        continue;
      }
      c.target_group = tg->second.name;
    }
    const std::string& cost = first(*e, "bhCost");
    auto [p, ec] = std::from_chars(cost.data(), cost.data() + cost.size(), c.cost);
    if (ec != std::errc() || p != cost.data() + cost.size() || c.cost < routing::kMinCost ||
        c.cost > routing::kMaxCost) {
      warn(*e, "cost " + cost + " is not 1-100, skipped");
      continue;
    }
    bool ok = true;
    for (const auto& node : sorted_unique(e->values("bhSourceBridgehead"))) {
      auto s = servers.find(ascii_lower(node));
      if (s == servers.end() ||
          ascii_lower(s->second.routing_group) != ascii_lower(g->second.name)) {
        warn(*e,
             "source bridgehead " + node + " is not a server of " + g->second.name + ", skipped");
        ok = false;
        break;
      }
      c.sources.push_back({s->second.name, true});
    }
    c.target_bridgeheads = sorted_unique(e->values("bhTargetBridgehead"));
    for (const auto& v : e->values("bhAddressSpace")) {
      auto semi = v.rfind(';');
      int space_cost = 1;
      std::string pattern = v.substr(0, semi);
      if (semi != std::string::npos) {
        auto [q, ec2] = std::from_chars(v.data() + semi + 1, v.data() + v.size(), space_cost);
        if (ec2 != std::errc() || q != v.data() + v.size() || space_cost < routing::kMinCost ||
            space_cost > routing::kMaxCost) {
          warn(*e, "address space cost in \"" + v + "\" is not 1-100, skipped");
          ok = false;
          break;
        }
      }
      auto space = routing::AddressSpace::parse(pattern);
      if (!space.ok()) {
        warn(*e, "address space \"" + pattern + "\": " + space.error().message + ", skipped");
        ok = false;
        break;
      }
      c.address_spaces.push_back({*space, space_cost});
    }
    if (!ok) {
      continue;
    }
    if (c.sources.empty() || (c.target_group.empty() && c.address_spaces.empty())) {
      warn(*e, c.sources.empty() ? "no source bridgehead, skipped"
                                 : "no target group and no address space, skipped");
      continue;
    }
    std::sort(c.address_spaces.begin(), c.address_spaces.end(),
              [](const auto& a, const auto& b) { return a.space.str() < b.space.str(); });
    g->second.connectors.push_back(std::move(c));
  }
  std::string canon;
  for (auto& [key, g] : groups) {
    g.members = sorted_unique(g.members);
    std::sort(g.connectors.begin(), g.connectors.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
    canon += "g " + g.name + " " + g.master + "\n";
    for (const auto& m : g.members) {
      canon += " m " + m + "\n";
    }
    for (const auto& c : g.connectors) {
      canon += " c " + c.id + " " + c.target_group + " " + std::to_string(c.cost) + "\n";
      for (const auto& s : c.sources) {
        canon += "  s " + s.node + "\n";
      }
      for (const auto& b : c.target_bridgeheads) {
        canon += "  t " + b + "\n";
      }
      for (const auto& a : c.address_spaces) {
        canon += "  a " + a.space.str() + " " + std::to_string(a.cost) + "\n";
      }
    }
    t.groups.push_back(std::move(g));
  }
  for (const auto& s : t.servers) {
    canon += "s " + s.name + " " + s.routing_group + " " + s.smtp_address + " " +
             s.link_state_address + "\n";
  }
  t.digest = fnv_hex(canon);
  return t;
}

std::shared_ptr<TopologyPoller> TopologyPoller::create(boost::asio::io_context& io,
                                                       TopologyReader& reader,
                                                       std::chrono::milliseconds interval,
                                                       OnChange on_change) {
  return std::shared_ptr<TopologyPoller>(
      new TopologyPoller(io, reader, interval, std::move(on_change)));
}

TopologyPoller::TopologyPoller(boost::asio::io_context& io, TopologyReader& reader,
                               std::chrono::milliseconds interval, OnChange on_change)
    : io_(io), reader_(reader), interval_(interval), on_change_(std::move(on_change)), timer_(io) {}

void TopologyPoller::start() {
  boost::asio::post(io_, [self = shared_from_this()] { self->poll(); });
}

void TopologyPoller::stop() {
  boost::asio::post(io_, [self = shared_from_this()] {
    self->stopped_ = true;
    self->timer_.cancel();
  });
}

void TopologyPoller::poll() {
  if (stopped_) {
    return;
  }
  reader_.read([self = shared_from_this()](Result<Topology> t) {
    boost::asio::post(self->io_, [self, t = std::move(t)]() mutable {
      if (self->stopped_) {
        return;
      }
      self->reads_++;
      if (!t.ok()) {
        log::warn("directory",
                  "configuration read failed, keeping the last topology: " + t.error().message);
      } else if (std::string sig = signature(*t); sig != self->last_digest_) {
        for (const auto& w : t->warnings) {
          log::warn("directory", "configuration: " + w);
        }
        self->last_digest_ = std::move(sig);
        self->changes_++;
        log::info("directory", "configuration: " + std::to_string(t->groups.size()) +
                                   " routing group(s), " + std::to_string(t->servers.size()) +
                                   " server(s), digest " + t->digest);
        self->on_change_(*t);
      }
      self->timer_.expires_after(self->interval_);
      self->timer_.async_wait([self](boost::system::error_code ec) {
        if (!ec) {
          self->poll();
        }
      });
    });
  });
}

}  // namespace bh::directory
