#include "tests/linkstate/topology_file.h"

#include <fstream>
#include <map>
#include <sstream>

#include "common/clock.h"
#include "linkstate/database.h"
#include "linkstate/shortest_path.h"

namespace bh::linkstate::testing {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) {
    if (!cur.empty()) {
      out.push_back(cur);
    }
  }
  return out;
}

std::string join_ids(const std::vector<const Connector*>& hops, const char* sep) {
  if (hops.empty()) {
    return "-";
  }
  std::string out;
  for (const auto* c : hops) {
    out += (out.empty() ? "" : sep) + c->id;
  }
  return out;
}

struct Parsed {
  std::string verb;
  std::vector<std::string> words;
  std::map<std::string, std::string> attrs;
};

Parsed parse_line(const std::string& line) {
  Parsed p;
  for (const auto& tok : split(line, ' ')) {
    const auto eq = tok.find('=');
    if (p.verb.empty()) {
      p.verb = tok;
    } else if (eq == std::string::npos) {
      p.words.push_back(tok);
    } else {
      p.attrs[tok.substr(0, eq)] = tok.substr(eq + 1);
    }
  }
  return p;
}

class Runner {
 public:
  explicit Runner(std::string path) : path_(std::move(path)), db_(clock_, DbOptions{{}, {}}) {}

  std::vector<std::string> run() {
    std::ifstream in(path_);
    if (!in) {
      return {path_ + ": cannot open"};
    }
    std::string line;
    while (std::getline(in, line)) {
      ++lineno_;
      if (auto hash = line.find('#'); hash != std::string::npos) {
        line.erase(hash);
      }
      for (auto& c : line) {
        if (c == '\t') {
          c = ' ';
        }
      }
      const Parsed p = parse_line(line);
      if (p.verb.empty()) {
        continue;
      }
      // The expected text as written, single-spaced, for the comparison.
      std::string written;
      for (const auto& w : split(line, ' ')) {
        written += (written.empty() ? "" : " ") + w;
      }
      step(p, written);
    }
    return std::move(errors_);
  }

 private:
  void fail(const std::string& what) {
    errors_.push_back(path_ + ":" + std::to_string(lineno_) + ": " + what);
  }

  void commit_topology() {
    if (committed_) {
      return;
    }
    committed_ = true;
    for (auto& [name, g] : groups_) {
      auto r = db_.set_config(g);
      if (!r) {
        fail(r.error().message);
      }
    }
    for (const auto& [key, node] : down_) {
      auto r = db_.report(key.first, key.second, node, false);
      if (!r) {
        fail(r.error().message);
      }
    }
  }

  void step(const Parsed& p, const std::string& written) {
    if (p.verb == "group") {
      if (committed_ || p.words.size() != 1) {
        return fail("group: one name, before any expectation");
      }
      RoutingGroup& g = groups_[p.words[0]];
      g.name = p.words[0];
      if (p.attrs.count("members")) {
        g.members = split(p.attrs.at("members"), ',');
      }
      if (p.attrs.count("master")) {
        g.master = p.attrs.at("master");
      }
    } else if (p.verb == "connector") {
      if (committed_ || p.words.size() != 1 || !p.attrs.count("from") ||
          !groups_.count(p.attrs.at("from")) || !p.attrs.count("src")) {
        return fail("connector: ID from=<known group> src=... before any expectation");
      }
      Connector c;
      c.id = p.words[0];
      c.target_group = p.attrs.count("to") ? p.attrs.at("to") : "";
      c.cost = p.attrs.count("cost") ? std::stoi(p.attrs.at("cost")) : 1;
      for (const auto& n : split(p.attrs.at("src"), ',')) {
        c.sources.push_back({n, true});
      }
      if (p.attrs.count("tgt")) {
        c.target_bridgeheads = split(p.attrs.at("tgt"), ',');
      }
      if (p.attrs.count("spaces")) {
        for (const auto& sc : split(p.attrs.at("spaces"), ',')) {
          const auto colon = sc.rfind(':');
          auto space = routing::AddressSpace::parse(sc.substr(0, colon));
          if (!space) {
            return fail(space.error().message);
          }
          c.address_spaces.push_back(
              {*space, colon == std::string::npos ? 1 : std::stoi(sc.substr(colon + 1))});
        }
      }
      if (p.attrs.count("down")) {
        for (const auto& n : split(p.attrs.at("down"), ',')) {
          down_.emplace_back(std::make_pair(p.attrs.at("from"), c.id), n);
        }
      }
      groups_[p.attrs.at("from")].connectors.push_back(std::move(c));
    } else if (p.verb == "from") {
      commit_topology();
      if (p.words.size() != 1) {
        return fail("from: one routing group");
      }
      local_ = p.words[0];
    } else if (p.verb == "report") {
      // report GROUP CONNECTOR NODE up|down
      commit_topology();
      if (p.words.size() != 4 || (p.words[3] != "up" && p.words[3] != "down")) {
        return fail("report GROUP CONNECTOR NODE up|down");
      }
      auto r = db_.report(p.words[0], p.words[1], p.words[2], p.words[3] == "up");
      if (!r) {
        fail(r.error().message);
      }
    } else if (p.verb == "route" || p.verb == "domain") {
      commit_topology();
      auto routes = compute_routes(db_.snapshot(), local_);
      if (!routes) {
        return fail(routes.error().message);
      }
      if (p.words.empty()) {
        return fail(p.verb + ": a target");
      }
      const std::string actual = p.verb == "route" ? render_route(*routes, p.words[0])
                                                   : render_domain(*routes, p.words[0]);
      if (actual != written) {
        fail("from " + local_ + ": expected \"" + written + "\", got \"" + actual + "\"");
      }
    } else {
      fail("unknown line \"" + p.verb + "\"");
    }
  }

  static std::string render_route(const Routes& routes, const std::string& group) {
    const GroupRoute r = routes.to_group(group);
    if (!r.reachable) {
      return "route " + group + " unreachable";
    }
    return "route " + group + " cost=" + std::to_string(r.cost) +
           " via=" + join_ids(r.first_hops, ",");
  }

  static std::string render_domain(const Routes& routes, const std::string& domain) {
    const DomainRoute r = routes.for_domain(domain);
    if (r.status == DomainStatus::kNoAddressSpace) {
      return "domain " + domain + " none";
    }
    if (r.status == DomainStatus::kUnreachable) {
      return "domain " + domain + " unreachable";
    }
    std::string use;
    for (const auto& x : r.routes) {
      use += (use.empty() ? "" : ",") + x.connector->id + "/" + join_ids(x.first_hops, "+");
    }
    return "domain " + domain + " cost=" + std::to_string(r.routes.front().cost) +
           " space=" + r.routes.front().space.str() + " use=" + use;
  }

  std::string path_;
  ManualClock clock_;
  LinkStateDb db_;
  std::map<std::string, RoutingGroup> groups_;
  std::vector<std::pair<std::pair<std::string, std::string>, std::string>> down_;
  bool committed_ = false;
  std::string local_;
  int lineno_ = 0;
  std::vector<std::string> errors_;
};

}  // namespace

std::vector<std::string> run_topology(const std::string& path) { return Runner(path).run(); }

}  // namespace bh::linkstate::testing
