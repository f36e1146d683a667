#include "admin/join.h"

#include <ldap.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "common/text.h"
#include "node/config.h"

namespace bh::admin {

namespace {

struct Options {
  std::string ldap, gc, bind_dn, password_file, base_dn, config_dn, routing_group, smtp_address,
      link_state_address, home_server = "msExchHomeServerName", ca_file;
  bool start_tls = false;
};

int fail(const std::string& what) {
  std::fprintf(stderr, "bhctl join: %s\n", what.c_str());
  return 1;
}

void ok(const std::string& what) { std::printf("ok    %s\n", what.c_str()); }

// A DN value or name in a filter: RFC 4515 escaping of the few bytes that matter.
std::string esc(const std::string& v) {
  std::string out;
  for (unsigned char c : v) {
    if (c == '*' || c == '(' || c == ')' || c == '\\' || c < 0x20 || c >= 0x7f) {
      char b[4];
      std::snprintf(b, sizeof b, "\\%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// RFC 4514 escaping of an RDN value.
std::string rdn_value(const std::string& v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (c == ',' || c == '+' || c == '"' || c == '\\' || c == '<' || c == '>' || c == ';' ||
        c == '=' || (i == 0 && (c == ' ' || c == '#')) || (i + 1 == v.size() && c == ' ')) {
      out += '\\';
    }
    out += c;
  }
  return out;
}

struct Ldap {
  LDAP* ld = nullptr;
  ~Ldap() {
    if (ld != nullptr) {
      ldap_unbind_ext_s(ld, nullptr, nullptr);
    }
  }
};

std::string connect(Ldap& l, const std::string& uri, const Options& o,
                    const std::string& password) {
  if (int rc = ldap_initialize(&l.ld, uri.c_str()); rc != LDAP_SUCCESS) {
    return uri + ": " + ldap_err2string(rc);
  }
  int v3 = LDAP_VERSION3;
  ldap_set_option(l.ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
  ldap_set_option(l.ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
  timeval tv{5, 0};
  ldap_set_option(l.ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
  ldap_set_option(l.ld, LDAP_OPT_TIMEOUT, &tv);
  const bool tls = uri.rfind("ldaps://", 0) == 0 || o.start_tls;
  if (tls) {
    if (!o.ca_file.empty()) {
      ldap_set_option(l.ld, LDAP_OPT_X_TLS_CACERTFILE, o.ca_file.c_str());
    }
    int demand = LDAP_OPT_X_TLS_DEMAND;
    ldap_set_option(l.ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
    int is_server = 0;
    ldap_set_option(l.ld, LDAP_OPT_X_TLS_NEWCTX, &is_server);
  }
  if (o.start_tls && uri.rfind("ldap://", 0) == 0) {
    if (int rc = ldap_start_tls_s(l.ld, nullptr, nullptr); rc != LDAP_SUCCESS) {
      return uri + ": StartTLS: " + ldap_err2string(rc);
    }
  }
  berval cred{static_cast<ber_len_t>(password.size()), const_cast<char*>(password.data())};
  if (int rc = ldap_sasl_bind_s(l.ld, o.bind_dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr,
                                nullptr);
      rc != LDAP_SUCCESS) {
    return uri + ": bind as " + o.bind_dn + ": " + ldap_err2string(rc);
  }
  return "";
}

// Entries of a search: dn -> attribute (lower-cased) -> values.
using Entries =
    std::vector<std::pair<std::string, std::map<std::string, std::vector<std::string>>>>;

std::string search(LDAP* ld, const std::string& base, int scope, const std::string& filter,
                   std::vector<std::string> attrs, Entries& out) {
  std::vector<char*> a;
  for (auto& s : attrs) {
    a.push_back(s.data());
  }
  a.push_back(nullptr);
  LDAPMessage* res = nullptr;
  timeval tv{10, 0};
  int rc = ldap_search_ext_s(ld, base.c_str(), scope, filter.c_str(), a.data(), 0, nullptr, nullptr,
                             &tv, 1000, &res);
  std::unique_ptr<LDAPMessage, int (*)(LDAPMessage*)> owned(res, ldap_msgfree);
  if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) {
    return "search under \"" + base + "\" for " + filter + ": " + ldap_err2string(rc);
  }
  for (LDAPMessage* e = ldap_first_entry(ld, res); e != nullptr; e = ldap_next_entry(ld, e)) {
    char* dn = ldap_get_dn(ld, e);
    out.push_back({dn != nullptr ? dn : "", {}});
    ldap_memfree(dn);
    BerElement* ber = nullptr;
    for (char* at = ldap_first_attribute(ld, e, &ber); at != nullptr;
         at = ldap_next_attribute(ld, e, ber)) {
      auto& vals = out.back().second[ascii_lower(at)];
      if (berval** bv = ldap_get_values_len(ld, e, at)) {
        for (int i = 0; bv[i] != nullptr; ++i) {
          vals.emplace_back(bv[i]->bv_val, bv[i]->bv_len);
        }
        ldap_value_free_len(bv);
      }
      ldap_memfree(at);
    }
    if (ber != nullptr) {
      ber_free(ber, 0);
    }
  }
  return "";
}

// Names (lower-cased) defined by the server's subschema: attribute types or object classes.
std::string schema_names(LDAP* ld, std::set<std::string>& attributes,
                         std::set<std::string>& classes) {
  Entries root;
  if (auto e = search(ld, "", LDAP_SCOPE_BASE, "(objectClass=*)", {"subschemaSubentry"}, root);
      !e.empty()) {
    return e;
  }
  if (root.empty() || root[0].second["subschemasubentry"].empty()) {
    return "the server names no subschemaSubentry";
  }
  Entries sub;
  if (auto e = search(ld, root[0].second["subschemasubentry"][0], LDAP_SCOPE_BASE,
                      "(objectClass=*)", {"attributeTypes", "objectClasses"}, sub);
      !e.empty()) {
    return e;
  }
  if (sub.empty()) {
    return "the subschema entry cannot be read";
  }
  // "( 1.2.3 NAME 'a' ..." or "NAME ( 'a' 'b' )": every quoted name after NAME.
  auto names = [](const std::vector<std::string>& defs, std::set<std::string>& into) {
    for (const auto& d : defs) {
      auto n = d.find(" NAME ");
      if (n == std::string::npos) {
        continue;
      }
      std::size_t p = n + 6;
      const bool list = p < d.size() && d[p] == '(';
      for (;;) {
        auto q1 = d.find('\'', p);
        if (q1 == std::string::npos) {
          break;
        }
        auto q2 = d.find('\'', q1 + 1);
        if (q2 == std::string::npos) {
          break;
        }
        into.insert(ascii_lower(d.substr(q1 + 1, q2 - q1 - 1)));
        p = q2 + 1;
        auto close = d.find(')', p);
        auto next = d.find('\'', p);
        if (!list || next == std::string::npos || (close != std::string::npos && close < next)) {
          break;
        }
      }
    }
  };
  names(sub[0].second["attributetypes"], attributes);
  names(sub[0].second["objectclasses"], classes);
  return "";
}

std::string read_password(const std::string& file, std::string& pw) {
  std::ifstream in(file);
  if (!in || !std::getline(in, pw)) {
    return "cannot read --password-file " + file;
  }
  if (!pw.empty() && pw.back() == '\r') {
    pw.pop_back();
  }
  if (pw.empty()) {
    return "--password-file " + file +
           ": the first line is empty (that would be an anonymous bind)";
  }
  return "";
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string replace_directory_section(const std::string& text, const std::string& block) {
  std::istringstream in(text);
  std::string line, out;
  bool skipping = false, replaced = false;
  while (std::getline(in, line)) {
    if (skipping) {
      const bool continues = line.empty() || line[0] == ' ' || line[0] == '\t' || line[0] == '#';
      if (continues) {
        continue;
      }
      skipping = false;
    }
    if (!replaced && line.rfind("directory:", 0) == 0) {
      out += block;
      skipping = true;
      replaced = true;
      continue;
    }
    out += line + "\n";
  }
  if (!replaced) {
    out += block;
  }
  return out;
}

int run_join(const std::string& config_path, const std::vector<std::string>& args) {
  Options o;
  std::map<std::string, std::string*> value_flags = {
      {"--ldap", &o.ldap},
      {"--gc", &o.gc},
      {"--bind-dn", &o.bind_dn},
      {"--password-file", &o.password_file},
      {"--base-dn", &o.base_dn},
      {"--config-dn", &o.config_dn},
      {"--routing-group", &o.routing_group},
      {"--smtp-address", &o.smtp_address},
      {"--link-state-address", &o.link_state_address},
      {"--home-server-attribute", &o.home_server},
      {"--ca-file", &o.ca_file}};
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--start-tls") {
      o.start_tls = true;
    } else if (auto f = value_flags.find(args[i]); f != value_flags.end() && i + 1 < args.size()) {
      *f->second = args[++i];
    } else {
      std::fprintf(stderr, "bhctl join: unexpected argument %s\n", args[i].c_str());
      return 2;
    }
  }
  if (config_path.empty() || o.ldap.empty() || o.bind_dn.empty() || o.password_file.empty() ||
      o.base_dn.empty() || o.config_dn.empty() || o.routing_group.empty()) {
    std::fprintf(
        stderr,
        "usage: bhctl --config FILE join --ldap URI --bind-dn DN --password-file F --base-dn DN\n"
        "         --config-dn DN --routing-group NAME [--gc URI] [--smtp-address HOST:PORT]\n"
        "         [--link-state-address HOST:PORT] [--home-server-attribute NAME] [--ca-file PEM]\n"
        "         [--start-tls]\n");
    return 2;
  }
  if (o.gc.empty()) {
    o.gc = o.ldap;
  }
  auto cfg = bh::node::load_config_file(config_path);
  if (!cfg.ok()) {
    return fail(cfg.error().message);
  }
  const std::string node = cfg->node().name();
  if (o.smtp_address.empty() && cfg->listen().smtp_size() > 0) {
    o.smtp_address = cfg->listen().smtp(0);
  }
  if (o.password_file.front() != '/') {
    return fail("--password-file must be an absolute path (it goes into the config)");
  }
  std::string pw;
  if (auto e = read_password(o.password_file, pw); !e.empty()) {
    return fail(e);
  }

  // 1. Both roles answer and accept the bind.
  Ldap dc, gc;
  if (auto e = connect(dc, o.ldap, o, pw); !e.empty()) {
    return fail("domain controller: " + e);
  }
  ok("domain controller " + o.ldap + ": bound as " + o.bind_dn);
  if (auto e = connect(gc, o.gc, o, pw); !e.empty()) {
    return fail("global catalog: " + e);
  }
  ok("global catalog " + o.gc + ": bound as " + o.bind_dn);

  // 2. The global catalog has the recipient attributes, and the base DN answers.
  std::set<std::string> attrs, classes;
  if (auto e = schema_names(gc.ld, attrs, classes); !e.empty()) {
    return fail("global catalog schema: " + e);
  }
  std::vector<std::string> missing;
  for (const std::string a : {"proxyAddresses", "mail", "member", "targetAddress", "altRecipient",
                              "deliverAndRedirect", o.home_server.c_str()}) {
    if (attrs.count(ascii_lower(a)) == 0) {
      missing.push_back(a);
    }
  }
  if (!missing.empty()) {
    std::string m;
    for (const auto& a : missing) {
      m += (m.empty() ? "" : ", ") + a;
    }
    return fail("global catalog schema lacks " + m +
                " (OpenLDAP: include deploy/ldap/bridgehead.schema; AD: the Exchange attributes)");
  }
  ok("global catalog schema has the recipient attributes (home server: " + o.home_server + ")");
  Entries probe;
  if (auto e = search(gc.ld, o.base_dn, LDAP_SCOPE_BASE, "(objectClass=*)", {"1.1"}, probe);
      !e.empty()) {
    return fail("global catalog: " + e);
  }
  ok("global catalog answers under " + o.base_dn);

  // 3. The domain controller has the configuration classes and the routing group.
  std::set<std::string> dc_attrs, dc_classes;
  if (auto e = schema_names(dc.ld, dc_attrs, dc_classes); !e.empty()) {
    return fail("domain controller schema: " + e);
  }
  for (const char* c : {"bhRoutingGroup", "bhServer", "bhConnector"}) {
    if (dc_classes.count(ascii_lower(c)) == 0) {
      return fail(std::string("domain controller schema lacks the object class ") + c +
                  " (deploy/ldap/bridgehead.schema)");
    }
  }
  Entries groups;
  if (auto e = search(dc.ld, o.config_dn, LDAP_SCOPE_SUBTREE,
                      "(&(objectClass=bhRoutingGroup)(cn=" + esc(o.routing_group) + "))", {"cn"},
                      groups);
      !e.empty()) {
    return fail("domain controller: " + e);
  }
  if (groups.size() != 1) {
    return fail("routing group " + o.routing_group +
                (groups.empty() ? " does not exist" : " exists twice") + " under " + o.config_dn);
  }
  const std::string group_dn = groups[0].first;
  ok("routing group " + o.routing_group + ": " + group_dn);

  // 4. Register the node under its routing group (add, or update).
  const std::string server_dn = "cn=" + rdn_value(node) + "," + group_dn;
  Entries existing;
  if (auto e = search(dc.ld, o.config_dn, LDAP_SCOPE_SUBTREE,
                      "(&(objectClass=bhServer)(cn=" + esc(node) + "))", {"1.1"}, existing);
      !e.empty()) {
    return fail("domain controller: " + e);
  }
  for (const auto& [dn, unused] : existing) {
    if (ascii_lower(dn) != ascii_lower(server_dn)) {
      return fail("a server named " + node + " is already registered elsewhere: " + dn +
                  " (remove it first: one node, one routing group)");
    }
  }
  struct Mod {
    std::string type;
    std::vector<std::string> values;
  };
  std::vector<Mod> mods = {
      {"objectClass", {"bhServer"}}, {"cn", {node}}, {"bhRoutingGroupName", {o.routing_group}}};
  if (!o.smtp_address.empty()) {
    mods.push_back({"bhSmtpAddress", {o.smtp_address}});
  }
  if (!o.link_state_address.empty()) {
    mods.push_back({"bhLinkStateAddress", {o.link_state_address}});
  }
  std::vector<LDAPMod> lm(mods.size());
  std::vector<std::vector<char*>> vals(mods.size());
  std::vector<LDAPMod*> ptrs;
  const bool update = !existing.empty();
  for (std::size_t i = 0; i < mods.size(); ++i) {
    for (auto& v : mods[i].values) {
      vals[i].push_back(v.data());
    }
    vals[i].push_back(nullptr);
    lm[i].mod_op = update ? LDAP_MOD_REPLACE : LDAP_MOD_ADD;
    lm[i].mod_type = mods[i].type.data();
    lm[i].mod_values = vals[i].data();
    if (!(update && (mods[i].type == "objectClass" || mods[i].type == "cn"))) {
      ptrs.push_back(&lm[i]);
    }
  }
  ptrs.push_back(nullptr);
  int rc = update ? ldap_modify_ext_s(dc.ld, server_dn.c_str(), ptrs.data(), nullptr, nullptr)
                  : ldap_add_ext_s(dc.ld, server_dn.c_str(), ptrs.data(), nullptr, nullptr);
  if (rc != LDAP_SUCCESS) {
    return fail(std::string(update ? "updating " : "adding ") + server_dn + ": " +
                ldap_err2string(rc));
  }
  ok(std::string(update ? "updated " : "registered ") + server_dn);

  // 5. The directory section of the config.
  std::string block = "directory:\n  ldap:\n    global_catalog: [" + quote(o.gc) +
                      "]\n    bind_dn: " + quote(o.bind_dn) +
                      "\n    password_file: " + quote(o.password_file) +
                      "\n    base_dn: " + quote(o.base_dn) +
                      "\n    attributes:\n      home_server: " + o.home_server + "\n";
  if (o.start_tls || !o.ca_file.empty()) {
    block += "    tls:\n      start_tls: " + std::string(o.start_tls ? "true" : "false") + "\n";
    if (!o.ca_file.empty()) {
      block += "      ca_file: " + quote(o.ca_file) + "\n";
    }
  }
  block += "    configuration:\n      domain_controller: [" + quote(o.ldap) +
           "]\n      config_dn: " + quote(o.config_dn) + "\n";
  std::ifstream in(config_path);
  std::stringstream old;
  old << in.rdbuf();
  const std::string text = replace_directory_section(old.str(), block);
  const std::string tmp = config_path + ".join-tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) {
      return fail("cannot write " + tmp);
    }
  }
  if (auto c = bh::node::load_config_file(tmp); !c.ok()) {
    ::unlink(tmp.c_str());
    return fail("the new config does not validate, " + config_path +
                " is unchanged: " + c.error().message);
  }
  {
    std::ofstream backup(config_path + ".before-join", std::ios::trunc);
    backup << old.str();
  }
  if (::rename(tmp.c_str(), config_path.c_str()) != 0) {
    return fail("cannot replace " + config_path);
  }
  ok("wrote the directory section of " + config_path + " (the old file: " + config_path +
     ".before-join); restart the node to use it");
  return 0;
}

}  // namespace bh::admin
