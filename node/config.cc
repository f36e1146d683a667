#include "node/config.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "common/address.h"
#include "smtp/esmtp_params.h"

namespace bh::node {

std::string Endpoint::str() const {
  return address.find(':') != std::string::npos ? "[" + address + "]:" + std::to_string(port)
                                                : address + ":" + std::to_string(port);
}

Result<Endpoint> parse_endpoint(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Result<Endpoint>(permanent_error("", "\"" + text + "\": " + why));
  };
  std::string host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find("]:");
    if (close == std::string::npos) {
      return bad("expected [IPv6]:port");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) {
      return bad("expected IP:port");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return bad("write IPv6 addresses in brackets: [::1]:25");
    }
  }
  unsigned char buf[16];
  bool v4 = inet_pton(AF_INET, host.c_str(), buf) == 1;
  bool v6 = inet_pton(AF_INET6, host.c_str(), buf) == 1;
  if (!v4 && !v6) {
    return bad("address must be an IP literal (host names are not resolved)");
  }
  auto p = smtp::parse_decimal(port);
  if (!p || *p == 0 || *p > 65535) {
    return bad("port out of range (1-65535)");
  }
  return Endpoint{host, static_cast<std::uint16_t>(*p)};
}

namespace {

// A failed check, carrying where in the file it was.
struct ConfigError {
  int line;
  std::string key, message;
};

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  Result<Config> load(const std::string& text) {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
      return fail(e.mark.line + 1, "", std::string("YAML syntax error: ") + e.msg);
    }
    Config c;
    c.source = file_;
    try {
      if (!root.IsMap()) {
        throw ConfigError{line(root), "", "the top level must be a mapping"};
      }
      walk(root, "", {
        {"node", [&](const YAML::Node& n, const std::string& k) { node(n, k, c); }},
        {"listen", [&](const YAML::Node& n, const std::string& k) { listen(n, k, c); }},
        {"local_domains", [&](const YAML::Node& n, const std::string& k) {
           c.local_domains = strings(n, k);
           for (std::size_t i = 0; i < c.local_domains.size(); ++i) {
             auto& d = c.local_domains[i];
             d = normalize_domain(d);
             if (!is_valid_domain(d)) {
               throw ConfigError{line(n[i]), idx(k, i), "\"" + d + "\" is not a domain name"};
             }
           }
         }},
        {"directory", [&](const YAML::Node& n, const std::string& k) {
           walk(n, k, {{"file", [&](const YAML::Node& f, const std::string& fk) {
                         walk(f, fk, {{"mailboxes", [&](const YAML::Node& m, const std::string& mk) {
                                         c.mailboxes = strings(m, mk);
                                         mailbox_lines_ = m;
                                       }}});
                       }}});
         }},
        {"smtp", [&](const YAML::Node& n, const std::string& k) { smtp(n, k, c.smtp); }},
        {"queue", [&](const YAML::Node& n, const std::string& k) {
           walk(n, k, {
             {"free_space_floor_mb", num(c.queue.free_space_floor_mb, 0, 1ull << 30)},
             {"retry_initial_s", num(c.queue.retry_initial_s, 1, 86400)},
             {"retry_max_s", num(c.queue.retry_max_s, 1, 7 * 86400)},
           });
         }},
      });
      validate(root, c);
    } catch (const ConfigError& e) {
      return fail(e.line, e.key, e.message);
    } catch (const YAML::Exception& e) {
      return fail(e.mark.line + 1, "", std::string("unexpected structure: ") + e.msg);
    }
    return c;
  }

 private:
  using Handler = std::function<void(const YAML::Node&, const std::string&)>;

  Result<Config> fail(int ln, const std::string& key, const std::string& msg) {
    std::string m = file_ + ":" + std::to_string(ln) + ": ";
    if (!key.empty()) {
      m += key + ": ";
    }
    return Result<Config>(permanent_error("", m + msg));
  }
  static int line(const YAML::Node& n) { return n.Mark().line + 1; }
  static std::string join(const std::string& a, const std::string& b) {
    return a.empty() ? b : a + "." + b;
  }
  static std::string idx(const std::string& k, std::size_t i) {
    return k + "[" + std::to_string(i) + "]";
  }

  // Every key of a mapping must be known: unknown keys are errors (DESIGN.md §5).
  void walk(const YAML::Node& map, const std::string& prefix, const std::map<std::string, Handler>& keys) {
    if (!map.IsMap()) {
      throw ConfigError{line(map), prefix, "expected a mapping"};
    }
    for (const auto& kv : map) {
      std::string k = kv.first.as<std::string>();
      auto it = keys.find(k);
      if (it == keys.end()) {
        std::string known;
        for (const auto& [name, h] : keys) {
          known += (known.empty() ? "" : ", ") + name;
        }
        throw ConfigError{line(kv.first), join(prefix, k), "unknown key (known: " + known + ")"};
      }
      it->second(kv.second, join(prefix, k));
    }
  }

  static std::string scalar(const YAML::Node& n, const std::string& k) {
    if (!n.IsScalar()) {
      throw ConfigError{line(n), k, "expected a single value"};
    }
    return n.Scalar();
  }
  static std::vector<std::string> strings(const YAML::Node& n, const std::string& k) {
    if (!n.IsSequence()) {
      throw ConfigError{line(n), k, "expected a list"};
    }
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n.size(); ++i) {
      out.push_back(scalar(n[i], idx(k, i)));
    }
    return out;
  }
  template <class T>
  static Handler num(T& field, std::uint64_t min, std::uint64_t max) {
    return [&field, min, max](const YAML::Node& n, const std::string& k) {
      std::string s = scalar(n, k);
      auto v = smtp::parse_decimal(s);
      if (!v) {
        throw ConfigError{line(n), k, "\"" + s + "\" is not a non-negative whole number"};
      }
      if (*v < min || *v > max) {
        throw ConfigError{line(n), k, std::to_string(*v) + " is out of range (" +
                                          std::to_string(min) + "-" + std::to_string(max) + ")"};
      }
      field = static_cast<T>(*v);
    };
  }
  static Handler flag(bool& field) {
    return [&field](const YAML::Node& n, const std::string& k) {
      std::string s = scalar(n, k);
      if (s == "true" || s == "yes" || s == "on") {
        field = true;
      } else if (s == "false" || s == "no" || s == "off") {
        field = false;
      } else {
        throw ConfigError{line(n), k, "\"" + s + "\" is not true or false"};
      }
    };
  }
  static Handler text(std::string& field) {
    return [&field](const YAML::Node& n, const std::string& k) { field = scalar(n, k); };
  }

  void node(const YAML::Node& n, const std::string& k, Config& c) {
    walk(n, k, {
      {"name", text(c.name)},
      {"hostname", text(c.hostname)},
      {"data_dir", [&](const YAML::Node& v, const std::string& vk) {
         c.data_dir = scalar(v, vk);
         if (c.data_dir.empty() || c.data_dir.front() != '/') {
           throw ConfigError{line(v), vk, "must be an absolute path"};
         }
         while (c.data_dir.size() > 1 && c.data_dir.back() == '/') {
           c.data_dir.pop_back();
         }
       }},
      {"workers", num(c.workers, 0, 64)},
    });
  }

  void listen(const YAML::Node& n, const std::string& k, Config& c) {
    walk(n, k, {
      {"smtp", [&](const YAML::Node& v, const std::string& vk) {
         auto list = strings(v, vk);
         for (std::size_t i = 0; i < list.size(); ++i) {
           auto ep = parse_endpoint(list[i]);
           if (!ep.ok()) {
             throw ConfigError{line(v[i]), idx(vk, i), ep.error().message};
           }
           c.smtp_listen.push_back(*ep);
         }
       }},
      {"admin", [&](const YAML::Node& v, const std::string& vk) {
         auto ep = parse_endpoint(scalar(v, vk));
         if (!ep.ok()) {
           throw ConfigError{line(v), vk, ep.error().message};
         }
         c.admin_listen = *ep;
         c.has_admin = true;
       }},
      {"admin_token_file", [&](const YAML::Node& v, const std::string& vk) {
         c.admin_token_file = scalar(v, vk);
         if (c.admin_token_file.empty() || c.admin_token_file.front() != '/') {
           throw ConfigError{line(v), vk, "must be an absolute path"};
         }
       }},
    });
  }

  void smtp(const YAML::Node& n, const std::string& k, SmtpConfig& s) {
    walk(n, k, {
      {"max_message_size", num(s.max_message_size, 1024, 1ull << 40)},
      {"max_recipients", num(s.max_recipients, 100, 100000)},  // RFC 5321 §4.5.3.1.8
      {"max_command_line", num(s.max_command_line, 512, 16384)},
      {"max_header_bytes", num(s.max_header_bytes, 1024, 64u << 20)},
      {"max_errors", num(s.max_errors, 1, 100000)},
      {"max_junk_commands", num(s.max_junk_commands, 1, 100000)},
      {"vrfy", flag(s.vrfy)},
      {"pregreet_wait_ms", num(s.pregreet_wait_ms, 0, 60000)},
      {"max_sessions", num(s.max_sessions, 1, 100000)},
      {"max_sessions_per_ip", num(s.max_sessions_per_ip, 1, 100000)},
      {"timeouts", [&](const YAML::Node& t, const std::string& tk) {
         walk(t, tk, {
           {"greeting_s", num(s.greeting_timeout_s, 1, 3600)},
           {"mail_s", num(s.mail_timeout_s, 1, 3600)},
           {"rcpt_s", num(s.rcpt_timeout_s, 1, 3600)},
           {"data_init_s", num(s.data_init_timeout_s, 1, 3600)},
           {"data_block_s", num(s.data_block_timeout_s, 1, 3600)},
           {"data_term_s", num(s.data_term_timeout_s, 1, 3600)},
           {"write_s", num(s.write_timeout_s, 1, 3600)},
         });
       }},
      {"extensions", [&](const YAML::Node& t, const std::string& tk) {
         walk(t, tk, {
           {"pipelining", flag(s.pipelining)}, {"size", flag(s.size)},
           {"eightbitmime", flag(s.eightbitmime)}, {"binarymime", flag(s.binarymime)},
           {"chunking", flag(s.chunking)}, {"dsn", flag(s.dsn)},
           {"enhancedstatuscodes", flag(s.enhancedstatuscodes)}, {"smtputf8", flag(s.smtputf8)},
         });
       }},
    });
  }

  void validate(const YAML::Node& root, Config& c) {
    if (!root["node"]) {
      throw ConfigError{1, "node", "missing (node.name and node.data_dir are required)"};
    }
    if (c.name.empty()) {
      throw ConfigError{line(root["node"]), "node.name", "missing or empty"};
    }
    for (char ch : c.name) {
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.') {
        throw ConfigError{line(root["node"]["name"]), "node.name", "use letters, digits, '-', '_' or '.'"};
      }
    }
    if (c.data_dir.empty()) {
      throw ConfigError{line(root["node"]), "node.data_dir", "missing"};
    }
    if (c.hostname.empty()) {
      c.hostname = c.name;
    }
    if (c.smtp_listen.empty()) {
      throw ConfigError{root["listen"] ? line(root["listen"]) : 1, "listen.smtp",
                        "at least one SMTP listen address is required"};
    }
    if (c.local_domains.empty()) {
      throw ConfigError{1, "local_domains", "at least one local domain is required"};
    }
    std::set<std::string> domains(c.local_domains.begin(), c.local_domains.end());
    for (std::size_t i = 0; i < c.mailboxes.size(); ++i) {
      auto p = parse_path("<" + c.mailboxes[i] + ">", false, false, "5.1.3");
      std::string key = "directory.file.mailboxes[" + std::to_string(i) + "]";
      int ln = line(mailbox_lines_[i]);
      if (!p.ok() || p->mailbox.domain.front() == '[') {
        throw ConfigError{ln, key, "\"" + c.mailboxes[i] + "\" is not a mailbox address"};
      }
      if (!domains.count(p->mailbox.domain)) {
        throw ConfigError{ln, key, "domain of \"" + c.mailboxes[i] + "\" is not in local_domains"};
      }
      c.mailboxes[i] = p->mailbox.str();
    }
    if (c.queue.retry_initial_s > c.queue.retry_max_s) {
      throw ConfigError{1, "queue.retry_initial_s", "must not exceed queue.retry_max_s"};
    }
  }

  std::string file_;
  YAML::Node mailbox_lines_;
};

}  // namespace

Result<Config> load_config_string(const std::string& text, const std::string& filename) {
  return Loader(filename).load(text);
}

Result<Config> load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return permanent_error("", path + ": cannot read the config file");
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (ss.str().size() > (1u << 20)) {
    return permanent_error("", path + ": config file larger than 1 MiB");
  }
  return load_config_string(ss.str(), path);
}

}  // namespace bh::node
