// bhctl: the operator's client for a node's admin endpoint (DESIGN.md §5).
//
//   bhctl [--config FILE | --admin IP:PORT [--token-file F]] [--json] NOUN VERB...
//   nouns: status | queue list [filters] | queue show ID | queue hops |
//          queue retry ID | queue retry --hop H | queue freeze|thaw ID | queue freeze|thaw --hop H |
//          queue delete ID [--ndr] |
//          track [--message-id X] [--sender X] [--recipient X] [--queue-id X] [--limit N] |
//          resolve ADDRESS | lsdb | peers | routes
// Exit codes: 0 ok, 1 the node said no or could not be reached, 2 usage.

#include <algorithm>
#include <boost/asio.hpp>
#include <cctype>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "admin/join.h"
#include "node/config.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: bhctl [--config FILE | --admin IP:PORT [--token-file FILE]] [--json] COMMAND\n"
               "commands:\n"
               "  status            node, listeners, queue and session counters\n"
               "  queue list [--sender A] [--recipient A] [--hop H] [--older-than SECONDS]\n"
               "                    messages in the queue\n"
               "  queue show ID     one message: envelope and per-recipient state\n"
               "  queue hops        next hops: state, messages, oldest, next retry, last error\n"
               "  queue retry ID | queue retry --hop H   try now\n"
               "  queue freeze ID | queue thaw ID        hold / release (kept across restarts)\n"
               "  queue freeze --hop H | queue thaw --hop H   suspend / resume a next hop\n"
               "  queue delete ID [--ndr]                remove; --ndr tells the sender\n"
               "  track [--message-id X] [--sender X] [--recipient X] [--queue-id X] [--limit N]\n"
               "                    search the message tracking log (newest N events, default 100)\n"
               "  resolve ADDRESS   the categorizer's decision tree for ADDRESS: entry, matched\n"
               "                    attribute, groups expanded, forwards, home servers\n"
               "  join --ldap URI --bind-dn DN --password-file F --base-dn DN --config-dn DN\n"
               "       --routing-group NAME [--gc URI] [...]   (needs --config FILE; see admin/join.h)\n"
               "                    check both directory roles, register this node, write the\n"
               "                    directory section of FILE\n"
               "  lsdb              link state: routing groups, versions, masters, connectors\n"
               "  peers             TCP 691 sessions: peer, state, last exchange; refusals; X-LINK2STATE peers\n"
               "  routes            least-cost routes per routing group and address space\n"
               "  link down|up CONNECTOR   report this node's source bridgehead of CONNECTOR\n");
  return 2;
}

struct Reply {
  int status = 0;
  json body;
};

bool call(const bh::node::Endpoint& ep, const std::string& token, http::verb verb,
          const std::string& target, Reply& out, std::string& err) {
  try {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(10));
    stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address(ep.address), ep.port));
    http::request<http::empty_body> req{verb, target, 11};
    req.set(http::field::host, ep.str());
    req.set(http::field::authorization, "Bearer " + token);
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    http::read(stream, buf, parser);
    auto res = parser.release();
    out.status = static_cast<int>(res.result_int());
    out.body = json::parse(res.body(), nullptr, false);
    if (out.body.is_discarded()) {
      err = "the node sent a reply that is not JSON";
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    err = "cannot reach the admin endpoint " + ep.str() + ": " + e.what();
    return false;
  }
}

// A member of a JSON object, or null: a reply from an older or newer node may lack a
// field, and the table shows "-" rather than failing.
const json& at(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object()) {
    return kNull;
  }
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

std::string when(const json& j) {
  if (!j.is_number_integer() || j.get<std::int64_t>() == 0) {
    return "-";
  }
  std::time_t t = j.get<std::int64_t>();
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%d %H:%M:%SZ", &tm);
  return b;
}

void print_table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> w(head.size());
  for (std::size_t i = 0; i < head.size(); ++i) {
    w[i] = head[i].size();
    for (const auto& r : rows) {
      w[i] = std::max(w[i], r[i].size());
    }
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string s;
    for (std::size_t i = 0; i < r.size(); ++i) {
      s += r[i];
      if (i + 1 < r.size()) {
        s += std::string(w[i] - r[i].size() + 2, ' ');
      }
    }
    std::cout << s << "\n";
  };
  line(head);
  for (const auto& r : rows) {
    line(r);
  }
}

// RFC 3986 §2.1: everything but the unreserved characters is percent-encoded (so a
// '+' in an address survives).
std::string percent_encode(const std::string& v) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// Peer-supplied text on an operator's terminal: control characters shown as '?'.
std::string printable(std::string s) {
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      c = '?';
    }
  }
  return s;
}

std::string str(const json& j) {
  return j.is_string() ? j.get<std::string>() : j.is_null() ? "-" : j.dump();
}

std::string join(const json& list, const char* sep = ",") {
  std::string out;
  if (list.is_array()) {
    for (const auto& x : list) {
      out += (out.empty() ? "" : sep) + printable(str(x));
    }
  }
  return out.empty() ? "-" : out;
}

std::string when_ms(const json& ms) {
  if (!ms.is_number() || ms.get<std::int64_t>() <= 0) {
    return "-";
  }
  return when(json(ms.get<std::int64_t>() / 1000));
}

void print_link_state(const std::string& view, const json& b) {
  std::vector<std::vector<std::string>> rows;
  if (view == "lsdb") {
    std::cout << "node " << printable(str(at(b, "node"))) << " in " << printable(str(at(b, "routing_group")))
              << ", master " << printable(str(at(b, "master"))) << "; digest " << str(at(b, "digest"))
              << " (generation " << str(at(b, "generation")) << ")\n\n";
    const json& groups = at(b, "groups");
    std::vector<std::vector<std::string>> conns;
    if (groups.is_array()) {
      for (const auto& g : groups) {
        rows.push_back({printable(str(at(g, "name"))), str(at(g, "version")), printable(str(at(g, "master"))),
                        join(at(g, "members"))});
        const json& cs = at(g, "connectors");
        if (cs.is_array()) {
          for (const auto& c : cs) {
            std::string down;
            for (const auto& s : at(c, "sources")) {
              if (!at(s, "up").get<bool>()) {
                down += (down.empty() ? "" : ",") + printable(str(at(s, "node")));
              }
            }
            conns.push_back({printable(str(at(g, "name"))), printable(str(at(c, "id"))),
                             printable(str(at(c, "target_group"))), str(at(c, "cost")), str(at(c, "state")),
                             when_ms(at(c, "changed_at_ms")), down.empty() ? "-" : down});
          }
        }
      }
    }
    print_table({"GROUP", "VERSION", "MASTER", "MEMBERS"}, rows);
    std::cout << "\n";
    print_table({"GROUP", "CONNECTOR", "TARGET", "COST", "STATE", "CHANGED", "SOURCES DOWN"}, conns);
  } else if (view == "peers") {
    const json& list = at(b, "sessions");
    if (list.is_array()) {
      for (const auto& x : list) {
        rows.push_back({printable(str(at(x, "peer"))), printable(str(at(x, "remote"))), str(at(x, "direction")),
                        str(at(x, "role")), str(at(x, "state")), when_ms(at(x, "since_ms")),
                        when_ms(at(x, "last_exchange_ms")), str(at(x, "frames_in")), str(at(x, "frames_out"))});
      }
    }
    std::cout << "node " << printable(str(at(b, "node"))) << ", master " << printable(str(at(b, "master")))
              << ", 691 on " << printable(str(at(b, "listen"))) << "\n\n";
    print_table({"PEER", "REMOTE", "DIR", "OUR ROLE", "STATE", "SINCE", "LAST EXCHANGE", "IN", "OUT"}, rows);
    std::cout << rows.size() << " session(s)";
    const json& c = at(b, "counters");
    if (c.is_object()) {
      std::cout << "; refused: " << str(at(c, "tls_refused")) << " TLS, " << str(at(c, "identity_refused"))
                << " identity";
    }
    std::cout << "\n";
    // X-LINK2STATE over SMTP, with the bridgeheads of other routing groups.
    const json& l2s = at(b, "x_link2state");
    if (l2s.is_array() && !l2s.empty()) {
      std::vector<std::vector<std::string>> xs;
      for (const auto& x : l2s) {
        xs.push_back({printable(str(at(x, "peer"))), str(at(x, "direction")), when_ms(at(x, "last_exchange_ms")),
                      str(at(x, "exchanges")), str(at(x, "applied")), printable(str(at(x, "error")))});
      }
      std::cout << "\nX-LINK2STATE\n";
      print_table({"PEER", "DIR", "LAST EXCHANGE", "EXCHANGES", "APPLIED", "ERROR"}, xs);
    }
  } else {
    std::vector<std::vector<std::string>> spaces;
    const json& groups = at(b, "groups");
    if (groups.is_array()) {
      for (const auto& g : groups) {
        const json& hops = at(g, "next_hops");
        std::string first = "-", next = "-", alt = "-", state = "-";
        if (hops.is_array() && !hops.empty()) {
          first = printable(str(at(hops[0], "connector")));
          next = printable(str(at(hops[0], "next_hop")));
          state = str(at(hops[0], "state"));
          std::string more;
          for (std::size_t i = 1; i < hops.size(); ++i) {
            more += (more.empty() ? "" : ",") + printable(str(at(hops[i], "connector")));
          }
          alt = more.empty() ? "-" : more;
        }
        const bool local = at(g, "local").is_boolean() && at(g, "local").get<bool>();
        const bool reach = at(g, "reachable").is_boolean() && at(g, "reachable").get<bool>();
        rows.push_back({printable(str(at(g, "group"))), local ? "(local)" : first, local ? "-" : next,
                        reach ? str(at(g, "cost")) : "-", local ? "-" : alt,
                        local ? "local" : reach ? state : "unreachable"});
      }
    }
    const json& as = at(b, "address_spaces");
    if (as.is_array()) {
      for (const auto& a : as) {
        const json& rs = at(a, "routes");
        std::string conn = "-", group = "-", cost = "-", alt = "-";
        if (rs.is_array() && !rs.empty()) {
          conn = printable(str(at(rs[0], "connector")));
          group = printable(str(at(rs[0], "group")));
          cost = str(at(rs[0], "cost"));
          std::string more;
          for (std::size_t i = 1; i < rs.size(); ++i) {
            more += (more.empty() ? "" : ",") + printable(str(at(rs[i], "connector")));
          }
          alt = more.empty() ? "-" : more;
        }
        spaces.push_back({printable(str(at(a, "pattern"))), conn, group, cost, alt, str(at(a, "status"))});
      }
    }
    print_table({"GROUP", "CONNECTOR", "NEXT HOP", "COST", "ALTERNATIVES", "STATE"}, rows);
    std::cout << "\n";
    print_table({"ADDRESS SPACE", "CONNECTOR", "IN GROUP", "COST", "ALTERNATIVES", "STATE"}, spaces);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string config, admin, token_file;
  bool as_json = false;
  std::vector<std::string> words;
  std::vector<std::pair<std::string, std::string>> track_params;
  bool ndr = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "join") {  // its own options (admin/join.h); talks to the directory, not the node
      return bh::admin::run_join(config, std::vector<std::string>(argv + i + 1, argv + argc));
    }
    if (a == "--config" && i + 1 < argc) {
      config = argv[++i];
    } else if (a == "--admin" && i + 1 < argc) {
      admin = argv[++i];
    } else if (a == "--token-file" && i + 1 < argc) {
      token_file = argv[++i];
    } else if (a == "--json") {
      as_json = true;
    } else if (a == "--ndr") {
      ndr = true;
    } else if ((a == "--message-id" || a == "--sender" || a == "--recipient" || a == "--queue-id" ||
                a == "--limit" || a == "--hop" || a == "--older-than") &&
               i + 1 < argc) {
      std::string key = a.substr(2);
      std::replace(key.begin(), key.end(), '-', '_');
      track_params.emplace_back(key, argv[++i]);
    } else if (a.rfind("--", 0) == 0) {
      return usage();
    } else {
      words.push_back(a);
    }
  }
  bh::node::Endpoint ep;
  if (!config.empty()) {
    auto c = bh::node::load_config_file(config);
    if (!c.ok()) {
      std::fprintf(stderr, "bhctl: %s\n", c.error().message.c_str());
      return 1;
    }
    if (c->listen().admin().empty()) {
      std::fprintf(stderr, "bhctl: %s: listen.admin is not set; the node has no admin endpoint\n",
                   config.c_str());
      return 1;
    }
    auto e = bh::node::parse_endpoint(c->listen().admin());
    if (!e.ok()) {  // the loader has checked it already
      std::fprintf(stderr, "bhctl: %s: listen.admin: %s\n", config.c_str(), e.error().message.c_str());
      return 1;
    }
    ep = *e;
    if (token_file.empty()) {
      token_file = bh::node::admin_token_path(*c);
    }
  } else if (!admin.empty()) {
    auto e = bh::node::parse_endpoint(admin);
    if (!e.ok()) {
      std::fprintf(stderr, "bhctl: --admin %s\n", e.error().message.c_str());
      return 2;
    }
    ep = *e;
  } else {
    return usage();
  }
  std::string token;
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    if (!in || !std::getline(in, token)) {
      std::fprintf(stderr, "bhctl: cannot read the admin token from %s\n", token_file.c_str());
      return 1;
    }
  }

  std::string target;
  http::verb verb = http::verb::get;
  auto query = [&](const std::vector<std::string>& allowed) {
    std::string q;
    char sep = '?';
    for (const auto& [k, v] : track_params) {
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
        return false;
      }
      q += sep + k + "=" + percent_encode(v);
      sep = '&';
    }
    target += q;
    return true;
  };
  bool options_ok = true;
  const bool is_queue = words.size() >= 2 && words[0] == "queue";
  const std::string id = words.size() == 3 ? words[2] : "";
  if (ndr && !(is_queue && words[1] == "delete")) {
    return usage();
  }
  if (words == std::vector<std::string>{"status"}) {
    target = "/v1/status";
    options_ok = track_params.empty();
  } else if (words == std::vector<std::string>{"queue", "list"}) {
    target = "/v1/queue";
    options_ok = query({"sender", "recipient", "hop", "older_than"});
  } else if (words == std::vector<std::string>{"queue", "hops"}) {
    target = "/v1/queues";
    options_ok = track_params.empty();
  } else if (is_queue && words.size() == 3 && words[1] == "show") {
    target = "/v1/queue/" + id;
    options_ok = track_params.empty();
  } else if (is_queue && words.size() == 3 &&
             (words[1] == "retry" || words[1] == "freeze" || words[1] == "thaw")) {
    verb = http::verb::post;
    target = "/v1/queue/" + id + "/" + words[1];
    options_ok = track_params.empty();
  } else if (words.size() == 2 && words[0] == "queue" &&
             (words[1] == "retry" || words[1] == "freeze" || words[1] == "thaw") &&
             track_params.size() == 1 && track_params[0].first == "hop") {
    verb = http::verb::post;
    target = "/v1/queues/" + words[1];
    options_ok = query({"hop"});
  } else if (is_queue && words.size() == 3 && words[1] == "delete") {
    verb = http::verb::delete_;
    target = "/v1/queue/" + id + (ndr ? "?ndr=1" : "");
    options_ok = track_params.empty();
  } else if (words.size() == 2 && words[0] == "resolve") {
    target = "/v1/resolve?address=" + percent_encode(words[1]);
    options_ok = track_params.empty();
  } else if (words.size() == 1 && (words[0] == "lsdb" || words[0] == "peers" || words[0] == "routes")) {
    target = "/v1/linkstate/" + words[0];
    options_ok = track_params.empty();
  } else if (words.size() == 3 && words[0] == "link" && (words[1] == "down" || words[1] == "up")) {
    verb = http::verb::post;
    target = "/v1/linkstate/report?connector=" + percent_encode(words[2]) + "&state=" + words[1];
    options_ok = track_params.empty();
  } else if (words == std::vector<std::string>{"track"}) {
    target = "/v1/track";
    options_ok = query({"message_id", "sender", "recipient", "queue_id", "limit"});
  } else {
    return usage();
  }
  if (!options_ok) {
    return usage();
  }
  Reply r;
  std::string err;
  if (!call(ep, token, verb, target, r, err)) {
    std::fprintf(stderr, "bhctl: %s\n", err.c_str());
    return 1;
  }
  if (r.status != 200) {
    std::fprintf(stderr, "bhctl: %s (HTTP %d)\n",
                 at(r.body, "error").is_string() ? str(at(r.body, "error")).c_str() : "request failed",
                 r.status);
    return 1;
  }
  if (as_json) {
    std::cout << r.body.dump(2) << "\n";
    return 0;
  }
  const json& b = r.body;
  if (target == "/v1/status") {
    std::vector<std::vector<std::string>> rows;
    for (const auto& [section, values] : b.items()) {
      if (values.is_object()) {
        for (const auto& [k, v] : values.items()) {
          rows.push_back({section, k, str(v)});
        }
      } else if (values.is_array()) {
        // A list of named items (sinks): one row per counter, keyed "name.counter".
        for (const auto& item : values) {
          const std::string n = item.is_object() ? str(at(item, "name")) : str(item);
          if (!item.is_object()) {
            rows.push_back({section, "", n});
            continue;
          }
          for (const auto& [k, v] : item.items()) {
            if (k != "name") {
              rows.push_back({section, n + "." + k, str(v)});
            }
          }
        }
      } else {
        rows.push_back({section, "", str(values)});
      }
    }
    print_table({"SECTION", "KEY", "VALUE"}, rows);
  } else if (words[0] == "resolve") {
    const json& trace = at(b, "trace");
    if (trace.is_array()) {
      for (const auto& line : trace) {
        std::cout << printable(str(line)) << "\n";
      }
    }
    std::vector<std::vector<std::string>> rows;
    const json& list = at(b, "recipients");
    if (list.is_array()) {
      for (const auto& x : list) {
        rows.push_back({printable(str(at(x, "address"))), printable(str(at(x, "mailbox"))),
                        printable(str(at(x, "home_server"))), printable(str(at(x, "routing_group"))),
                        printable(str(at(x, "expansion_server")))});
      }
    }
    std::cout << "\n";
    print_table({"RECIPIENT", "MAILBOX", "HOME SERVER", "ROUTING GROUP", "EXPANSION SERVER"}, rows);
    std::cout << rows.size() << " recipient(s)";
    if (at(b, "error").is_string()) {
      std::cout << "; not deliverable: " << printable(str(at(b, "error")));
    }
    std::cout << "\n";
  } else if (words[0] == "link") {
    std::cout << str(at(b, "connector")) << ": " << str(at(b, "state")) << " reported by " << str(at(b, "node"))
              << " (master " << str(at(b, "master")) << ", hold-down " << str(at(b, "hold_down_ms")) << " ms)\n";
  } else if (target.rfind("/v1/linkstate/", 0) == 0) {
    print_link_state(words[0], b);
  } else if (words[0] == "track") {
    std::vector<std::vector<std::string>> rows;
    const json& list = at(b, "events");
    if (list.is_array()) {
      for (const auto& e : list) {
        const json& sender = at(e, "sender");
        rows.push_back({str(at(e, "time")), str(at(e, "event")), str(at(e, "queue_id")),
                        sender.is_string() && sender.get<std::string>().empty() ? "<>" : printable(str(sender)),
                        printable(str(at(e, "recipient"))), printable(str(at(e, "next_hop"))),
                        printable(str(at(e, "reply")))});
      }
    }
    print_table({"TIME", "EVENT", "QUEUE ID", "SENDER", "RECIPIENT", "NEXT HOP", "REPLY"}, rows);
    std::cout << rows.size() << " event(s)";
    if (at(b, "truncated").is_boolean() && at(b, "truncated").get<bool>()) {
      std::cout << " (the newest; more matched: raise --limit)";
    }
    std::cout << "\n";
  } else if (verb != http::verb::get) {
    std::cout << (at(b, "retried").is_number()
                      ? str(at(b, "retried")) + " message(s) of " + str(at(b, "next_hop")) + " due now"
                      : (at(b, "id").is_string() ? str(at(b, "id")) : str(at(b, "next_hop"))) + ": " +
                            str(at(b, "done")) + " done")
              << "\n";
  } else if (target == "/v1/queues") {
    std::vector<std::vector<std::string>> rows;
    const json& list = at(b, "queues");
    if (list.is_array()) {
      for (const auto& q : list) {
        rows.push_back({printable(str(at(q, "next_hop"))), str(at(q, "state")), str(at(q, "messages")),
                        str(at(q, "in_flight")), when(at(q, "oldest")), when(at(q, "next_retry")),
                        str(at(q, "failures")), printable(str(at(q, "last_error")))});
      }
    }
    print_table({"NEXT HOP", "STATE", "MSGS", "ACTIVE", "OLDEST", "NEXT RETRY", "FAILS", "LAST ERROR"}, rows);
    std::cout << rows.size() << " queue(s)\n";
  } else if (target.rfind("/v1/queue", 0) == 0 && words[1] == "list") {
    std::vector<std::vector<std::string>> rows;
    const json& list = at(b, "messages");
    if (list.is_array()) {
      for (const auto& m : list) {
        const json& sender = at(m, "sender");
        rows.push_back({str(at(m, "id")), str(at(m, "state")),
                        sender.is_string() && sender.get<std::string>().empty() ? "<>" : str(sender),
                        str(at(m, "recipients")), str(at(m, "size")), when(at(m, "received")),
                        str(at(m, "attempts")), str(at(m, "last_error"))});
      }
    }
    print_table({"ID", "STATE", "SENDER", "RCPTS", "SIZE", "RECEIVED", "TRIES", "LAST ERROR"}, rows);
    std::cout << rows.size() << " message(s)\n";
  } else {
    std::cout << "id:        " << str(at(b, "id")) << "\n"
              << "state:     " << str(at(b, "state")) << "\n"
              << "sender:    <" << (at(b, "sender").is_string() ? str(at(b, "sender")) : "") << ">\n"
              << "size:      " << str(at(b, "size")) << "\n"
              << "received:  " << when(at(b, "received")) << " from " << str(at(b, "client_helo"))
              << " [" << str(at(b, "client_address")) << "]\n"
              << "body:      " << str(at(b, "body")) << "   ret: " << str(at(b, "ret"))
              << "   envid: " << str(at(b, "envid")) << "\n"
              << "attempts:  " << str(at(b, "attempts")) << "   last error: " << str(at(b, "last_error"))
              << "\n";
    std::vector<std::vector<std::string>> rows;
    const json& rcpts = at(b, "recipients");
    if (rcpts.is_array()) {
      for (const auto& rc : rcpts) {
        std::string home = str(at(rc, "home_server"));
        rows.push_back({str(at(rc, "address")), home.empty() ? str(at(rc, "mailbox")) : "@" + home, str(at(rc, "state")),
                        str(at(rc, "notify")), str(at(rc, "orcpt")), str(at(rc, "last_result"))});
      }
    }
    print_table({"RECIPIENT", "MAILBOX", "STATE", "NOTIFY", "ORCPT", "LAST RESULT"}, rows);
  }
  return 0;
}
