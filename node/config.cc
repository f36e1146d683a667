#include "node/config.h"
#include "node/linkstate_config.h"

#include <arpa/inet.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <charconv>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <variant>

#include "common/address.h"
#include "common/text.h"
#include "directory/ldap_filter.h"
#include "routing/address_space.h"
#include "routing/connector.h"
#include "sinks/message_edit.h"
#include "sinks/milter_sink.h"

namespace bh::node {

namespace pb = google::protobuf;

namespace {

constexpr std::size_t kMaxConfigBytes = 1u << 20;
constexpr std::size_t kMaxString = 4096;
constexpr std::size_t kMaxList = 100000;
constexpr std::size_t kMaxUnixPath = 107;  // sockaddr_un::sun_path (108) less the NUL

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

// "1234" or "-1234" (when `allow_negative`), nothing else: no signs, blanks, hex or
// fractions. Returns the magnitude and the sign; nullopt on syntax or overflow.
struct Whole {
  bool negative = false;
  std::uint64_t magnitude = 0;
};
std::optional<Whole> parse_whole(const std::string& s) {
  Whole w;
  std::size_t i = 0;
  if (!s.empty() && s[0] == '-') {
    w.negative = true;
    i = 1;
  }
  if (i == s.size() || s.size() - i > 20) {
    return std::nullopt;
  }
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') {
      return std::nullopt;
    }
    std::uint64_t d = static_cast<std::uint64_t>(s[i] - '0');
    if (w.magnitude > (std::numeric_limits<std::uint64_t>::max() - d) / 10) {
      return std::nullopt;
    }
    w.magnitude = w.magnitude * 10 + d;
  }
  return w;
}

// "LogLevel" -> "LOG_LEVEL_": the prefix proto enum value names carry (proto style guide).
std::string enum_prefix(const pb::EnumDescriptor* e) {
  std::string out;
  for (std::size_t i = 0; i < e->name().size(); ++i) {
    char c = e->name()[i];
    if (i > 0 && std::isupper(static_cast<unsigned char>(c))) {
      out.push_back('_');
    }
    out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return out + "_";
}

// Characters a mailbox local part may have here: RFC 5322 atext and '.', minus '/',
// because the local part becomes a folder name under <data_dir>/mailboxes/.
bool safe_local_part(const std::string& local) {
  if (local.empty() || local.front() == '.' || local.back() == '.' ||
      local.find("..") != std::string::npos) {
    return false;
  }
  for (char c : local) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) ||
              std::string_view("!#$%&'*+-=?^_`{|}~.").find(c) != std::string_view::npos;
    if (!ok) {
      return false;
    }
  }
  return true;
}

// A scalar value ready for the reflection setters.
using Value = std::variant<std::string, std::int64_t, std::uint64_t, bool, int, double>;

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  Result<bh::proto::Config> load(const std::string& text) {
    bh::proto::Config c;
    apply_defaults(&c);
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      return fail_at(e.mark.line + 1, "", "YAML syntax error: " + e.msg);
    }
    try {
      if (root.IsNull()) {
        return fail_at(1, "", "the file is empty (node, listen and local_domains are required)");
      }
      if (!root.IsMap()) {
        return fail_at(line(root), "", "the top level must be a mapping of keys");
      }
      if (!message(root, &c, "") || !validate(c)) {
        return error_;
      }
    } catch (const YAML::Exception& e) {
      return fail_at(e.mark.line + 1, "", "unexpected structure: " + e.msg);
    }
    return c;
  }

 private:
  // ---- errors ----
  Error error_;

  bool fail(int ln, const std::string& key, const std::string& msg) {
    std::string m = file_ + ":" + std::to_string(ln) + ": ";
    if (!key.empty()) {
      m += key + ": ";
    }
    error_ = permanent_error("", m + msg);
    return false;
  }
  Error fail_at(int ln, const std::string& key, const std::string& msg) {
    fail(ln, key, msg);
    return error_;
  }
  // For checks after mapping: the line of `path`, else of its nearest parent that was
  // written in the file, else line 1.
  bool fail_key(const std::string& path, const std::string& msg) {
    std::string p = path;
    while (!p.empty()) {
      if (auto it = lines_.find(p); it != lines_.end()) {
        return fail(it->second, path, msg);
      }
      auto cut = p.find_last_of(".[");
      p = cut == std::string::npos ? "" : p.substr(0, cut);
    }
    return fail(1, path, msg);
  }

  static int line(const YAML::Node& n) { return n.Mark().line + 1; }
  static std::string join(const std::string& a, const std::string& b) {
    return a.empty() ? b : a + "." + b;
  }
  static std::string index(const std::string& k, std::size_t i) {
    return k + "[" + std::to_string(i) + "]";
  }

  // ---- pass 1: structure, through the descriptors ----

  static void apply_defaults(pb::Message* m) {
    const pb::Descriptor* d = m->GetDescriptor();
    const pb::Reflection* r = m->GetReflection();
    for (int i = 0; i < d->field_count(); ++i) {
      const pb::FieldDescriptor* f = d->field(i);
      if (f->is_repeated()) {
        continue;
      }
      if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        apply_defaults(r->MutableMessage(m, f));
        continue;
      }
      const auto& rules = f->options().GetExtension(bh::proto::rules);
      if (rules.has_default_value()) {
        std::string why;
        auto v = parse_scalar(rules.default_value(), f, why);
        BH_CHECK(v.has_value());  // a default that does not parse is a schema bug
        set(m, f, *v, false);
      }
    }
  }

  bool message(const YAML::Node& n, pb::Message* m, const std::string& path) {
    if (n.IsNull()) {
      return true;  // "smtp:" with nothing under it: all defaults
    }
    if (!n.IsMap()) {
      return fail(line(n), path, "expected a mapping of keys");
    }
    const pb::Descriptor* d = m->GetDescriptor();
    std::set<std::string> seen;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) {
        return fail(line(kv.first), path, "keys must be plain words");
      }
      const std::string key = kv.first.Scalar();
      const std::string kp = join(path, key);
      const pb::FieldDescriptor* f = d->FindFieldByName(key);
      if (f == nullptr) {
        std::string known;
        for (int i = 0; i < d->field_count(); ++i) {
          known += (i ? ", " : "") + d->field(i)->name();
        }
        return fail(line(kv.first), kp, "unknown key (known: " + known + ")");
      }
      if (!seen.insert(key).second) {
        return fail(line(kv.first), kp, "duplicate key");
      }
      lines_[kp] = line(kv.first);
      if (!field(kv.second, m, f, kp)) {
        return false;
      }
    }
    return true;
  }

  bool field(const YAML::Node& v, pb::Message* m, const pb::FieldDescriptor* f,
             const std::string& path) {
    const pb::Reflection* r = m->GetReflection();
    const bool is_message = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE;
    if (!f->is_repeated()) {
      return is_message ? message(v, r->MutableMessage(m, f), path) : scalar(v, m, f, path, false);
    }
    r->ClearField(m, f);
    if (v.IsNull()) {
      return true;  // "mailboxes:" with nothing: an empty list
    }
    if (!v.IsSequence()) {
      return fail(line(v), path, "expected a list ([a, b] or one \"- item\" per line)");
    }
    if (v.size() > kMaxList) {
      return fail(line(v), path, "more than " + std::to_string(kMaxList) + " items");
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
      const std::string ep = index(path, i);
      lines_[ep] = line(v[i]);
      bool ok;
      if (is_message) {
        pb::Message* item = r->AddMessage(m, f);
        apply_defaults(item);  // each list item starts from its documented defaults too
        ok = message(v[i], item, ep);
      } else {
        ok = scalar(v[i], m, f, ep, true);
      }
      if (!ok) {
        return false;
      }
    }
    return true;
  }

  bool scalar(const YAML::Node& v, pb::Message* m, const pb::FieldDescriptor* f,
              const std::string& path, bool add) {
    if (v.IsNull()) {
      // An empty value has no position of its own; its key has.
      auto it = lines_.find(path);
      return fail(it != lines_.end() ? it->second : line(v), path, "missing value");
    }
    if (!v.IsScalar()) {
      return fail(line(v), path, "expected a single value, not a " +
                                     std::string(v.IsMap() ? "mapping" : "list"));
    }
    std::string why;
    auto value = parse_scalar(v.Scalar(), f, why);
    if (!value) {
      return fail(line(v), path, why);
    }
    set(m, f, *value, add);
    return true;
  }

  // Parses one YAML scalar by the field's type and checks it against the field's rules.
  static std::optional<Value> parse_scalar(const std::string& s, const pb::FieldDescriptor* f,
                                           std::string& why) {
    using FD = pb::FieldDescriptor;
    const auto& rules = f->options().GetExtension(bh::proto::rules);
    switch (f->cpp_type()) {
      case FD::CPPTYPE_STRING: {
        if (s.size() > kMaxString) {
          why = "longer than " + std::to_string(kMaxString) + " characters";
          return std::nullopt;
        }
        for (unsigned char c : s) {
          if (c < 0x20 || c == 0x7f) {
            why = "control characters are not allowed";
            return std::nullopt;
          }
        }
        return Value(s);
      }
      case FD::CPPTYPE_BOOL: {
        std::string l = ascii_lower(s);
        if (l == "true" || l == "yes" || l == "on") {
          return Value(true);
        }
        if (l == "false" || l == "no" || l == "off") {
          return Value(false);
        }
        why = quoted(s) + " is not true or false";
        return std::nullopt;
      }
      case FD::CPPTYPE_ENUM: {
        const pb::EnumDescriptor* e = f->enum_type();
        const std::string prefix = enum_prefix(e);
        std::string allowed;
        for (int i = 0; i < e->value_count(); ++i) {
          const pb::EnumValueDescriptor* ev = e->value(i);
          if (ev->number() == 0) {
            continue;  // *_UNSPECIFIED: the absence of a value, never written
          }
          std::string name = ev->name().substr(ev->name().rfind(prefix, 0) == 0 ? prefix.size() : 0);
          if (ascii_lower(name) == ascii_lower(s)) {
            return Value(ev->number());
          }
          allowed += (allowed.empty() ? "" : ", ") + ascii_lower(name);
        }
        why = quoted(s) + " is not one of: " + allowed;
        return std::nullopt;
      }
      case FD::CPPTYPE_DOUBLE:
      case FD::CPPTYPE_FLOAT: {
        char* end = nullptr;
        errno = 0;
        double d = std::strtod(s.c_str(), &end);
        if (s.empty() || *end != '\0' || errno != 0) {
          why = quoted(s) + " is not a number";
          return std::nullopt;
        }
        return Value(d);
      }
      case FD::CPPTYPE_INT32:
      case FD::CPPTYPE_INT64:
      case FD::CPPTYPE_UINT32:
      case FD::CPPTYPE_UINT64: {
        const bool is_signed = f->cpp_type() == FD::CPPTYPE_INT32 || f->cpp_type() == FD::CPPTYPE_INT64;
        auto w = parse_whole(s);
        if (!w || (w->negative && !is_signed)) {
          why = quoted(s) + (is_signed ? " is not a whole number" : " is not a non-negative whole number");
          return std::nullopt;
        }
        // Bounds: the C++ type's, narrowed by the field's rules. `lo` may be negative,
        // `hi` never is (every integer field here admits 0..something).
        const bool narrow = f->cpp_type() == FD::CPPTYPE_INT32 || f->cpp_type() == FD::CPPTYPE_UINT32;
        std::int64_t lo = !is_signed ? 0
                          : narrow   ? std::numeric_limits<std::int32_t>::min()
                                     : std::numeric_limits<std::int64_t>::min();
        std::uint64_t hi = f->cpp_type() == FD::CPPTYPE_INT32    ? std::numeric_limits<std::int32_t>::max()
                           : f->cpp_type() == FD::CPPTYPE_INT64  ? std::numeric_limits<std::int64_t>::max()
                           : f->cpp_type() == FD::CPPTYPE_UINT32 ? std::numeric_limits<std::uint32_t>::max()
                                                                 : std::numeric_limits<std::uint64_t>::max();
        if (rules.has_min()) {
          lo = std::max(lo, rules.min());
        }
        if (rules.has_max() && rules.max() >= 0) {
          hi = std::min(hi, static_cast<std::uint64_t>(rules.max()));
        }
        bool in_range;
        if (w->negative) {
          // -magnitude >= lo, with lo < 0; magnitude up to 2^63.
          in_range = lo < 0 && w->magnitude <= static_cast<std::uint64_t>(-(lo + 1)) + 1;
        } else {
          in_range = w->magnitude <= hi && (lo <= 0 || w->magnitude >= static_cast<std::uint64_t>(lo));
        }
        if (!in_range) {
          why = s + " is out of range (" + std::to_string(lo) + "-" + std::to_string(hi) + ")";
          return std::nullopt;
        }
        if (is_signed) {
          return Value(w->negative ? static_cast<std::int64_t>(0 - w->magnitude)
                                   : static_cast<std::int64_t>(w->magnitude));
        }
        return Value(w->magnitude);
      }
      case FD::CPPTYPE_MESSAGE:
        break;
    }
    why = "unsupported field type";
    return std::nullopt;
  }

  static void set(pb::Message* m, const pb::FieldDescriptor* f, const Value& v, bool add) {
    using FD = pb::FieldDescriptor;
    const pb::Reflection* r = m->GetReflection();
    switch (f->cpp_type()) {
      case FD::CPPTYPE_STRING:
        add ? r->AddString(m, f, std::get<std::string>(v)) : r->SetString(m, f, std::get<std::string>(v));
        return;
      case FD::CPPTYPE_BOOL:
        add ? r->AddBool(m, f, std::get<bool>(v)) : r->SetBool(m, f, std::get<bool>(v));
        return;
      case FD::CPPTYPE_ENUM:
        add ? r->AddEnumValue(m, f, std::get<int>(v)) : r->SetEnumValue(m, f, std::get<int>(v));
        return;
      case FD::CPPTYPE_DOUBLE:
        add ? r->AddDouble(m, f, std::get<double>(v)) : r->SetDouble(m, f, std::get<double>(v));
        return;
      case FD::CPPTYPE_FLOAT: {
        auto x = static_cast<float>(std::get<double>(v));
        add ? r->AddFloat(m, f, x) : r->SetFloat(m, f, x);
        return;
      }
      case FD::CPPTYPE_INT32: {
        auto x = static_cast<std::int32_t>(std::get<std::int64_t>(v));
        add ? r->AddInt32(m, f, x) : r->SetInt32(m, f, x);
        return;
      }
      case FD::CPPTYPE_INT64:
        add ? r->AddInt64(m, f, std::get<std::int64_t>(v)) : r->SetInt64(m, f, std::get<std::int64_t>(v));
        return;
      case FD::CPPTYPE_UINT32: {
        auto x = static_cast<std::uint32_t>(std::get<std::uint64_t>(v));
        add ? r->AddUInt32(m, f, x) : r->SetUInt32(m, f, x);
        return;
      }
      case FD::CPPTYPE_UINT64:
        add ? r->AddUInt64(m, f, std::get<std::uint64_t>(v)) : r->SetUInt64(m, f, std::get<std::uint64_t>(v));
        return;
      case FD::CPPTYPE_MESSAGE:
        break;
    }
    BH_CHECK(false);
  }

  // ---- pass 2: meaning ----

  bool validate(bh::proto::Config& c) {
    auto& node = *c.mutable_node();
    if (node.name().empty()) {
      return fail_key("node.name", "missing or empty (node.name and node.data_dir are required)");
    }
    for (char ch : node.name()) {
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.') {
        return fail_key("node.name", quoted(node.name()) + ": use letters, digits, '-', '_' or '.'");
      }
    }
    if (node.data_dir().empty()) {
      return fail_key("node.data_dir", "missing or empty");
    }
    if (node.data_dir().front() != '/') {
      return fail_key("node.data_dir", "must be an absolute path");
    }
    std::string dir = node.data_dir();
    while (dir.size() > 1 && dir.back() == '/') {
      dir.pop_back();
    }
    node.set_data_dir(dir);
    if (node.hostname().empty()) {
      node.set_hostname(node.name());
    }
    if (!is_valid_domain(node.hostname())) {
      return fail_key(lines_.count("node.hostname") ? "node.hostname" : "node.name",
                      quoted(node.hostname()) + " is not a valid host name (it is the EHLO name)");
    }
    if (node.workers() == 0) {
      node.set_workers(std::max(1u, std::thread::hardware_concurrency()));
    }

    const auto& listen = c.listen();
    if (listen.smtp_size() == 0) {
      return fail_key("listen.smtp", "at least one SMTP listen address is required");
    }
    for (int i = 0; i < listen.smtp_size(); ++i) {
      if (auto ep = parse_endpoint(listen.smtp(i)); !ep.ok()) {
        return fail_key(index("listen.smtp", i), ep.error().message);
      }
    }
    for (int i = 0; i < listen.submission_size(); ++i) {
      if (auto ep = parse_endpoint(listen.submission(i)); !ep.ok()) {
        return fail_key(index("listen.submission", i), ep.error().message);
      }
    }
    if (listen.submission_size() > 0 && c.auth().mechanisms_size() == 0) {
      return fail_key("listen.submission", "submission needs AUTH: add an auth section with mechanisms");
    }
    if (!validate_auth(*c.mutable_auth())) {
      return false;
    }
    for (int i = 0; i < listen.odmr_size(); ++i) {
      if (auto ep = parse_endpoint(listen.odmr(i)); !ep.ok()) {
        return fail_key(index("listen.odmr", i), ep.error().message);
      }
    }
    for (int i = 0; i < listen.smtps_size(); ++i) {
      if (auto ep = parse_endpoint(listen.smtps(i)); !ep.ok()) {
        return fail_key(index("listen.smtps", i), ep.error().message);
      }
    }
    if (lines_.count("listen.admin")) {
      if (auto ep = parse_endpoint(listen.admin()); !ep.ok()) {
        return fail_key("listen.admin", ep.error().message);
      }
    }
    const auto& token_file = c.admin().token_file();
    if (lines_.count("admin.token_file") && (token_file.empty() || token_file.front() != '/')) {
      return fail_key("admin.token_file", "must be an absolute path");
    }

    if (c.local_domains_size() == 0) {
      return fail_key("local_domains", "at least one local domain is required");
    }
    std::set<std::string> domains;
    for (int i = 0; i < c.local_domains_size(); ++i) {
      std::string d = normalize_domain(c.local_domains(i));
      if (!is_valid_domain(d)) {
        return fail_key(index("local_domains", i), quoted(c.local_domains(i)) + " is not a domain name");
      }
      if (!domains.insert(d).second) {
        return fail_key(index("local_domains", i), quoted(d) + " is listed twice");
      }
      c.set_local_domains(i, d);
    }

    if (!c.tls().cert_file().empty() || !c.tls().key_file().empty()) {
      if (c.tls().cert_file().empty() || c.tls().cert_file().front() != '/') {
        return fail_key("tls.cert_file", "an absolute path is required (with tls.key_file)");
      }
      if (c.tls().key_file().empty() || c.tls().key_file().front() != '/') {
        return fail_key("tls.key_file", "an absolute path is required (with tls.cert_file)");
      }
    }
    if (listen.smtps_size() > 0 && c.tls().cert_file().empty()) {
      return fail_key("listen.smtps", "implicit TLS needs tls.cert_file and tls.key_file");
    }
    if (const std::string& lmtp = c.delivery().lmtp(); !lmtp.empty() && lmtp.front() == '/') {
      if (lmtp.size() > kMaxUnixPath) {
        return fail_key("delivery.lmtp", "unix socket path longer than " + std::to_string(kMaxUnixPath) + " bytes");
      }
    } else if (!lmtp.empty()) {
      auto ep = parse_endpoint(lmtp);
      if (!ep.ok()) {
        return fail_key("delivery.lmtp", ep.error().message +
                                             " (the LMTP server: IP:port, or the absolute path of a unix socket)");
      }
      c.mutable_delivery()->set_lmtp(ep->str());
    }
    for (int i = 0; i < c.smtp().relay_networks_size(); ++i) {
      auto n = parse_network(c.smtp().relay_networks(i));
      if (!n.ok()) {
        return fail_key(index("smtp.relay_networks", i), n.error().message);
      }
      c.mutable_smtp()->set_relay_networks(i, n->str());
    }
    for (int i = 0; i < c.smtp().relay_domains_size(); ++i) {
      std::string d = normalize_domain(c.smtp().relay_domains(i));
      if (!is_valid_domain(d)) {
        return fail_key(index("smtp.relay_domains", i), quoted(c.smtp().relay_domains(i)) + " is not a domain name");
      }
      if (domains.count(d) > 0) {
        return fail_key(index("smtp.relay_domains", i), quoted(d) + " is also a local domain");
      }
      c.mutable_smtp()->set_relay_domains(i, d);
    }

    if (!validate_odmr(c, domains)) {
      return false;
    }
    if (!validate_sinks(*c.mutable_sinks(), c.routing())) {
      return false;
    }
    if (lines_.count("link_state")) {
      if (auto e = validate_link_state(c)) {
        return fail_key(e->key, e->message);
      }
    }

    auto* boxes = c.mutable_directory()->mutable_file()->mutable_mailboxes();
    std::set<std::string> seen;
    for (int i = 0; i < boxes->size(); ++i) {
      const std::string key = index("directory.file.mailboxes", i);
      const std::string& text = boxes->Get(i);
      auto p = parse_path("<" + text + ">", false, false, "5.1.3");
      if (!p.ok() || p->mailbox.domain.empty() || p->mailbox.domain.front() == '[') {
        return fail_key(key, quoted(text) + " is not a mailbox address");
      }
      if (!safe_local_part(p->mailbox.local)) {
        return fail_key(key, quoted(text) + ": the local part must be letters, digits and "
                             "!#$%&'*+-=?^_`{|}~. (it names a folder; no quoting, no '/')");
      }
      if (!domains.count(p->mailbox.domain)) {
        return fail_key(key, "domain of " + quoted(text) + " is not in local_domains");
      }
      std::string addr = p->mailbox.str();
      if (!seen.insert(ascii_lower(addr)).second) {
        return fail_key(key, quoted(text) + " is listed twice");
      }
      *boxes->Mutable(i) = addr;
    }

    if (!validate_ldap_directory(c)) {
      return false;
    }

    if (c.queue().retry_initial_s() > c.queue().retry_max_s()) {
      return fail_key("queue.retry_initial_s", "must not exceed queue.retry_max_s (" +
                                                   std::to_string(c.queue().retry_max_s()) + ")");
    }
    return validate_routing(*c.mutable_routing());
  }

  // routing.smtp_connectors and routing.dns. The pattern and smart host syntax is
  // routing/'s own (AddressSpace::parse, parse_smart_host), so the config accepts exactly
  // what RouteTable::build accepts; both are stored in their canonical form.
  bool validate_auth(bh::proto::Auth& a) {
    if (!lines_.count("auth")) {
      return true;
    }
    if (a.mechanisms_size() == 0 && a.client_keytab().empty()) {
      // (An auth section with only client_keytab is a node that logs in elsewhere but
      // offers no AUTH itself.)
      return fail_key("auth.mechanisms", "at least one of PLAIN, LOGIN, GSSAPI");
    }
    bool passwords = false;
    std::set<std::string> seen;
    for (int i = 0; i < a.mechanisms_size(); ++i) {
      std::string m = a.mechanisms(i);
      for (char& ch : m) {
        ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      }
      if (m != "PLAIN" && m != "LOGIN" && m != "GSSAPI") {
        return fail_key(index("auth.mechanisms", i),
                        quoted(a.mechanisms(i)) + " is not supported (PLAIN, LOGIN, GSSAPI)");
      }
      if (!seen.insert(m).second) {
        return fail_key(index("auth.mechanisms", i), quoted(m) + " is listed twice");
      }
      passwords = passwords || m != "GSSAPI";
      a.set_mechanisms(i, m);
    }
    bool ldap = lines_.count("auth.ldap") > 0;
    if (!a.sasldb().empty() && ldap) {
      return fail_key("auth.ldap", "give one password source: auth.sasldb or auth.ldap");
    }
    if (lines_.count("auth.sasldb") && (a.sasldb().empty() || a.sasldb().front() != '/')) {
      return fail_key("auth.sasldb", "must be an absolute path");
    }
    if (ldap) {
      if (a.ldap().uri().rfind("ldap://", 0) != 0 && a.ldap().uri().rfind("ldaps://", 0) != 0) {
        return fail_key("auth.ldap.uri", "an ldap:// or ldaps:// URI is required");
      }
      const std::string& dn = a.ldap().user_dn();
      auto at = dn.find("{user}");
      if (at == std::string::npos || dn.find("{user}", at + 1) != std::string::npos) {
        return fail_key("auth.ldap.user_dn", "must contain {user} exactly once");
      }
    }
    if (passwords && a.sasldb().empty() && !ldap) {
      return fail_key("auth.mechanisms", "PLAIN and LOGIN need a password source: auth.sasldb or auth.ldap");
    }
    if (lines_.count("auth.keytab") && (a.keytab().empty() || a.keytab().front() != '/')) {
      return fail_key("auth.keytab", "must be an absolute path");
    }
    if (lines_.count("auth.client_keytab") &&
        (a.client_keytab().empty() || a.client_keytab().front() != '/')) {
      return fail_key("auth.client_keytab", "must be an absolute path");
    }
    if (!is_valid_domain(a.service()) || a.service().find('.') != std::string::npos) {
      return fail_key("auth.service", quoted(a.service()) + " is not a service name (like smtp)");
    }
    return true;
  }

  // directory.ldap: the global catalog URIs, credentials by reference, the base DN and
  // the attribute names (they go into filters: descriptors or OIDs only).
  bool validate_ldap_directory(bh::proto::Config& c) {
    if (!lines_.count("directory.ldap")) {
      return true;
    }
    if (c.directory().file().mailboxes_size() > 0) {
      return fail_key("directory.ldap", "give one recipient directory: directory.file or directory.ldap");
    }
    const auto& l = c.directory().ldap();
    if (l.global_catalog_size() == 0) {
      return fail_key("directory.ldap.global_catalog", "at least one ldap:// or ldaps:// URI is required");
    }
    for (int i = 0; i < l.global_catalog_size(); ++i) {
      const std::string& u = l.global_catalog(i);
      const bool scheme = u.rfind("ldap://", 0) == 0 || u.rfind("ldaps://", 0) == 0;
      const std::string rest = scheme ? u.substr(u.find("//") + 2) : "";
      bool clean = !rest.empty() && rest.front() != '/';
      for (char ch : u) {
        clean = clean && static_cast<unsigned char>(ch) > 0x20 && ch != 0x7f;
      }
      if (!scheme || !clean) {
        return fail_key(index("directory.ldap.global_catalog", i),
                        quoted(u) + " is not an ldap://host:port/ or ldaps://host:port/ URI");
      }
    }
    if (l.base_dn().empty()) {
      return fail_key("directory.ldap.base_dn", "missing or empty (where recipients are searched)");
    }
    const bool has_dn = lines_.count("directory.ldap.bind_dn") > 0;
    const bool has_file = lines_.count("directory.ldap.password_file") > 0;
    if (has_dn && l.bind_dn().empty()) {
      return fail_key("directory.ldap.bind_dn", "empty (leave bind_dn and password_file out for an anonymous bind)");
    }
    if (!l.sasl_mechanism().empty()) {
      if (l.sasl_mechanism() != "GSSAPI") {
        return fail_key("directory.ldap.sasl_mechanism",
                        quoted(l.sasl_mechanism()) + " is not supported (GSSAPI, or leave it out for a simple bind)");
      }
      if (has_dn || has_file) {
        return fail_key(has_dn ? "directory.ldap.bind_dn" : "directory.ldap.password_file",
                        "not used with sasl_mechanism GSSAPI (the node binds with auth.client_keytab)");
      }
    }
    if (has_dn != has_file) {
      return fail_key(has_dn ? "directory.ldap.password_file" : "directory.ldap.bind_dn",
                      "bind_dn and password_file go together");
    }
    if (has_file && (l.password_file().empty() || l.password_file().front() != '/')) {
      return fail_key("directory.ldap.password_file", "must be an absolute path");
    }
    const auto& a = l.attributes();
    for (const auto& [key, value] :
         {std::pair{"proxy_addresses", &a.proxy_addresses()}, std::pair{"mail", &a.mail()},
          std::pair{"home_server", &a.home_server()}, std::pair{"object_class", &a.object_class()},
          std::pair{"member", &a.member()}, std::pair{"target_address", &a.target_address()},
          std::pair{"alt_recipient", &a.alt_recipient()},
          std::pair{"deliver_and_redirect", &a.deliver_and_redirect()},
          std::pair{"expansion_server", &a.expansion_server()},
          std::pair{"query_filter", &a.query_filter()}, std::pair{"query_base", &a.query_base()},
          std::pair{"require_auth", &a.require_auth()}}) {
      if (!bh::directory::is_attribute_name(*value)) {
        return fail_key(std::string("directory.ldap.attributes.") + key,
                        quoted(*value) + " is not an LDAP attribute name (letters, digits, '-'; or an OID)");
      }
    }
    for (int i = 0; i < l.configuration().domain_controller_size(); ++i) {
      const std::string& u = l.configuration().domain_controller(i);
      if (u.rfind("ldap://", 0) != 0 && u.rfind("ldaps://", 0) != 0) {
        return fail_key(index("directory.ldap.configuration.domain_controller", i),
                        quoted(u) + " is not an ldap:// or ldaps:// URI");
      }
    }
    if (l.configuration().domain_controller_size() > 0 && l.configuration().config_dn().empty()) {
      return fail_key("directory.ldap.configuration.config_dn",
                      "missing or empty (where routing groups, servers and connectors are read)");
    }
    if (!l.tls().ca_file().empty() && l.tls().ca_file().front() != '/') {
      return fail_key("directory.ldap.tls.ca_file", "must be an absolute path");
    }
    for (int i = 0; i < l.group_classes_size(); ++i) {
      if (!bh::directory::is_attribute_name(l.group_classes(i))) {
        return fail_key(index("directory.ldap.group_classes", i),
                        quoted(l.group_classes(i)) + " is not an object class name");
      }
    }
    return true;
  }

  // sinks: every definition complete for its kind, names unique, chains name defined sinks.
  bool validate_sinks(bh::proto::Sinks& sk, const bh::proto::Routing& routing) {
    std::set<std::string> names;
    for (int i = 0; i < sk.define_size(); ++i) {
      auto& d = *sk.mutable_define(i);
      const std::string key = index("sinks.define", i);
      if (d.name().empty() || d.name().find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") !=
                                  std::string::npos) {
        return fail_key(key + ".name", "required: letters, digits, '-', '_' or '.'");
      }
      if (!names.insert(d.name()).second) {
        return fail_key(key + ".name", quoted(d.name()) + " is defined twice");
      }
      using K = bh::proto::SinkKind;
      switch (d.kind()) {
        case K::SINK_KIND_UNSPECIFIED:
          return fail_key(key + ".kind",
                          "required: header_stamp, policy, journal, plugin, program, milter, reply_text, route or outbound_policy");
        case K::SINK_KIND_ROUTE: {
          if (d.domains_size() == 0) {
            return fail_key(key + ".domains", "route needs domains (\"example.net\", \"*.example.net\" or \"*\")");
          }
          for (auto& dom : *d.mutable_domains()) {
            dom = ascii_lower(dom);
            const std::string bare = dom.rfind("*.", 0) == 0 ? dom.substr(2) : dom;
            if (dom != "*" && !is_valid_domain(bare)) {
              return fail_key(key + ".domains", quoted(dom) + " is not a domain pattern");
            }
          }
          bool known = false;
          for (const auto& con : routing.smtp_connectors()) {
            known = known || ascii_lower(con.name()) == ascii_lower(d.connector());
          }
          if (!known) {
            return fail_key(key + ".connector", quoted(d.connector()) + " is not one of routing.smtp_connectors");
          }
          break;
        }
        case K::SINK_KIND_OUTBOUND_POLICY: {
          if (d.verbs_size() == 0 || d.connector().empty()) {
            return fail_key(key + ".verbs", "outbound_policy needs verbs and a connector (a name or \"*\")");
          }
          for (auto& v : *d.mutable_verbs()) {
            v = ascii_upper(v);
          }
          const std::string& en = d.reject_enhanced();
          if (d.reject_code() / 100 != 4 || en.size() < 5 || en[0] != '4' || en[1] != '.' ||
              en.find_first_not_of("0123456789.") != std::string::npos) {
            return fail_key(key + ".reject_code",
                            "outbound_policy stops a session only transiently: a 4xx reject_code and a 4.x.x "
                            "reject_enhanced");
          }
          break;
        }
        case K::SINK_KIND_REPLY_TEXT:
          if (d.verbs_size() == 0 || d.value().empty() || d.value().size() > 400 ||
              d.value().find_first_of("\r\n") != std::string::npos) {
            return fail_key(key + ".verbs", "reply_text needs verbs and a one-line value (at most 400 octets)");
          }
          for (auto& v : *d.mutable_verbs()) {
            v = ascii_upper(v);
          }
          break;
        case K::SINK_KIND_HEADER_STAMP:
          if (!bh::sinks::header_field_ok(d.header(), d.value()) || d.value().empty()) {
            return fail_key(key + ".header", "header_stamp needs a header field name and a non-empty value");
          }
          break;
        case K::SINK_KIND_POLICY: {
          if (d.reject_senders_size() + d.reject_recipients_size() == 0) {
            return fail_key(key, "policy needs reject_senders or reject_recipients");
          }
          for (auto* list : {d.mutable_reject_senders(), d.mutable_reject_recipients()}) {
            for (auto& a : *list) {
              a = ascii_lower(a);
              if (a.find('@') == std::string::npos || a.find_first_of(" \t\r\n<>") != std::string::npos) {
                return fail_key(key, quoted(a) + " is not user@domain or @domain");
              }
            }
          }
          const std::string& en = d.reject_enhanced();
          if (en.size() < 5 || en[0] != static_cast<char>('0' + d.reject_code() / 100) || en[1] != '.' ||
              en.find_first_not_of("0123456789.") != std::string::npos) {
            return fail_key(key + ".reject_enhanced", quoted(en) + " does not match reject_code " +
                                                          std::to_string(d.reject_code()));
          }
          break;
        }
        case K::SINK_KIND_JOURNAL: {
          auto p = parse_path("<" + d.address() + ">", false, false, "5.1.3");
          if (!p.ok() || p->mailbox.domain.empty()) {
            return fail_key(key + ".address", quoted(d.address()) + " is not a mailbox address");
          }
          break;
        }
        case K::SINK_KIND_PLUGIN:
          if (d.library().empty() || d.library().front() != '/') {
            return fail_key(key + ".library", "plugin needs the absolute path of a shared library");
          }
          break;
        case K::SINK_KIND_PROGRAM:
          if (d.argv_size() == 0 || d.argv(0).empty() || d.argv(0).front() != '/') {
            return fail_key(key + ".argv", "program needs argv with an absolute program path first (no shell)");
          }
          break;
        case K::SINK_KIND_MILTER:
          if (auto why = bh::sinks::check_milter_socket(d.socket()); !why.empty()) {
            return fail_key(key + ".socket", quoted(d.socket()) + ": " + why);
          }
          break;
        default:
          return fail_key(key + ".kind", "unknown kind");
      }
    }
    std::map<std::string, bh::proto::SinkKind> kinds;
    for (const auto& d : sk.define()) {
      kinds[d.name()] = d.kind();
    }
    for (const auto& [chain, list] : {std::pair{"sinks.on_arrival", &sk.on_arrival()},
                                      std::pair{"sinks.on_command", &sk.on_command()},
                                      std::pair{"sinks.on_route", &sk.on_route()},
                                      std::pair{"sinks.on_delivery", &sk.on_delivery()},
                                      std::pair{"sinks.before_categorize", &sk.before_categorize()},
                                      std::pair{"sinks.after_categorize", &sk.after_categorize()},
                                      std::pair{"sinks.on_outbound", &sk.on_outbound()}}) {
      const bool protocol = std::string(chain) == "sinks.on_command";
      const bool outbound = std::string(chain) == "sinks.on_outbound";
      const bool categorize = std::string(chain).find("_categorize") != std::string::npos;
      const bool route = std::string(chain) == "sinks.on_route";
      const bool delivery = std::string(chain) == "sinks.on_delivery";
      std::set<std::string> used;
      for (int i = 0; i < list->size(); ++i) {
        const std::string key = index(chain, i);
        const std::string& n = list->Get(i);
        if (names.count(n) == 0) {
          return fail_key(key, quoted(n) + " is not defined under sinks.define");
        }
        if (!used.insert(n).second) {
          return fail_key(key, quoted(n) + " is listed twice");
        }
        const auto k = kinds[n];
        if (outbound != (k == bh::proto::SINK_KIND_OUTBOUND_POLICY)) {
          return fail_key(key, quoted(n) + (outbound ? ": only outbound_policy sinks take outbound command events"
                                                     : ": an outbound_policy sink takes outbound command events only "
                                                       "(sinks.on_outbound)"));
        }
        if (outbound) {
          continue;
        }
        if (categorize) {
          if (k != bh::proto::SINK_KIND_POLICY && k != bh::proto::SINK_KIND_PROGRAM &&
              k != bh::proto::SINK_KIND_PLUGIN) {
            return fail_key(key, quoted(n) + ": only policy, program and plugin sinks take the categorization events");
          }
          continue;
        }
        if (delivery) {
          if (k != bh::proto::SINK_KIND_PROGRAM) {
            return fail_key(key, quoted(n) + ": only program sinks take the delivery-result event");
          }
          continue;
        }
        if (route != (k == bh::proto::SINK_KIND_ROUTE)) {
          return fail_key(key, quoted(n) + (route ? ": only route sinks take the routing event"
                                                  : ": a route sink takes the routing event only (sinks.on_route)"));
        }
        const bool has_protocol = k == bh::proto::SINK_KIND_POLICY || k == bh::proto::SINK_KIND_REPLY_TEXT;
        const bool has_arrival = k != bh::proto::SINK_KIND_REPLY_TEXT;
        if (!route && (protocol ? !has_protocol : !has_arrival)) {
          return fail_key(key, quoted(n) + (protocol ? ": only policy and reply_text sinks take protocol events"
                                                     : ": a reply_text sink takes protocol events only"));
        }
      }
    }
    return true;
  }

  bool validate_odmr(bh::proto::Config& c, const std::set<std::string>& local) {
    auto& o = *c.mutable_odmr();
    if ((o.customers_size() > 0 || c.listen().odmr_size() > 0) && c.auth().mechanisms_size() == 0) {
      return fail_key(o.customers_size() > 0 ? "odmr.customers" : "listen.odmr",
                      "ATRN needs AUTH: add an auth section with mechanisms");
    }
    if (c.listen().odmr_size() > 0 && o.customers_size() == 0) {
      return fail_key("listen.odmr", "no odmr.customers to serve");
    }
    std::set<std::string> users, taken;
    for (int i = 0; i < o.customers_size(); ++i) {
      auto& cu = *o.mutable_customers(i);
      const std::string key = index("odmr.customers", i);
      if (cu.user().empty()) {
        return fail_key(key + ".user", "the customer's AUTH user name is required");
      }
      if (!users.insert(cu.user()).second) {
        return fail_key(key + ".user", quoted(cu.user()) + " is listed twice");
      }
      if (cu.domains_size() == 0) {
        return fail_key(key + ".domains", "at least one domain");
      }
      for (int j = 0; j < cu.domains_size(); ++j) {
        std::string d = normalize_domain(cu.domains(j));
        const std::string dkey = index(key + ".domains", j);
        if (!is_valid_domain(d)) {
          return fail_key(dkey, quoted(cu.domains(j)) + " is not a domain name");
        }
        if (local.count(d) > 0) {
          return fail_key(dkey, quoted(d) + " is a local domain");
        }
        if (!taken.insert(d).second) {
          return fail_key(dkey, quoted(d) + " belongs to another customer already");
        }
        cu.set_domains(j, d);
      }
    }
    return true;
  }

  bool validate_routing(bh::proto::Routing& routing) {
    std::map<std::string, std::string> names;  // lower-cased name -> key that defined it
    std::string first_mx;                      // key of the first connector using DNS MX
    for (int i = 0; i < routing.smtp_connectors_size(); ++i) {
      auto& sc = *routing.mutable_smtp_connectors(i);
      const std::string key = index("routing.smtp_connectors", i);
      if (sc.name().empty()) {
        return fail_key(key + ".name", "missing or empty (every connector needs a name)");
      }
      if (!bh::routing::is_valid_connector_name(sc.name())) {
        return fail_key(key + ".name", quoted(sc.name()) + ": use 1-64 letters, digits, '-', '_' or '.'");
      }
      if (auto [it, fresh] = names.emplace(ascii_lower(sc.name()), key + ".name"); !fresh) {
        return fail_key(key + ".name", quoted(sc.name()) + " is already the name of " + it->second);
      }
      if (sc.use_dns_mx() && sc.smart_hosts_size() > 0) {
        return fail_key(key + ".use_dns_mx", "a connector has either smart_hosts or use_dns_mx: true, not both");
      }
      if (!sc.use_dns_mx() && sc.smart_hosts_size() == 0) {
        return fail_key(key, "needs smart_hosts or use_dns_mx: true");
      }
      if (sc.use_dns_mx() && first_mx.empty()) {
        first_mx = key;
      }
      for (int j = 0; j < sc.smart_hosts_size(); ++j) {
        auto h = bh::routing::parse_smart_host(sc.smart_hosts(j));
        if (!h.ok()) {
          return fail_key(index(key + ".smart_hosts", j), h.error().message);
        }
        sc.set_smart_hosts(j, h->str());
      }
      if (sc.address_spaces_size() == 0) {
        return fail_key(key + ".address_spaces", "at least one address space is required (\"*\" for every domain)");
      }
      std::set<std::string> patterns;
      for (int j = 0; j < sc.address_spaces_size(); ++j) {
        auto& as = *sc.mutable_address_spaces(j);
        const std::string pkey = index(key + ".address_spaces", j) + ".pattern";
        if (!lines_.count(pkey)) {
          return fail_key(pkey, "missing (e.g. pattern: \"*.example.com\")");
        }
        auto space = bh::routing::AddressSpace::parse(as.pattern());
        if (!space.ok()) {
          return fail_key(pkey, space.error().message);
        }
        if (!patterns.insert(space->str()).second) {
          return fail_key(pkey, quoted(space->str()) + " is listed twice in this connector");
        }
        as.set_pattern(space->str());
      }
      if (sc.tls() == bh::proto::TLS_MODE_NONE && sc.tls_verify()) {
        return fail_key(key + ".tls_verify", "true needs tls: opportunistic or required");
      }
      const auto& auth = sc.auth();
      const bool has_user = lines_.count(key + ".auth.username") > 0;
      const bool has_file = lines_.count(key + ".auth.password_file") > 0;
      if (has_user || has_file) {
        if (!has_user || auth.username().empty()) {
          return fail_key(key + ".auth.username", "missing or empty (auth needs username and password_file)");
        }
        if (!has_file || auth.password_file().empty() || auth.password_file().front() != '/') {
          return fail_key(key + ".auth.password_file", "must be an absolute path");
        }
        if (sc.tls() != bh::proto::TLS_MODE_REQUIRED) {
          return fail_key(key + ".auth", "needs tls: required (credentials never travel in clear text)");
        }
      }
      if (lines_.count(key + ".auth.mechanism")) {
        std::string m = ascii_upper(auth.mechanism());
        if (m != "GSSAPI") {
          return fail_key(key + ".auth.mechanism", quoted(auth.mechanism()) + " is not supported (GSSAPI)");
        }
        if (has_user || has_file) {
          return fail_key(key + ".auth.mechanism", "GSSAPI uses no username or password_file");
        }
        sc.mutable_auth()->set_mechanism(m);
      }
      std::string verb = ascii_upper(auth.verb());
      if (verb != "AUTH" && verb != "X-EXPS") {
        return fail_key(key + ".auth.verb", quoted(auth.verb()) + " is not AUTH or X-EXPS");
      }
      sc.mutable_auth()->set_verb(verb);
      if (verb == "X-EXPS" && (auth.mechanism().empty() || sc.tls() != bh::proto::TLS_MODE_REQUIRED)) {
        return fail_key(key + ".auth.verb", "X-EXPS needs mechanism: GSSAPI and tls: required");
      }
      if (lines_.count(key + ".auth.service_host") && !is_valid_domain(auth.service_host())) {
        return fail_key(key + ".auth.service_host", quoted(auth.service_host()) + " is not a host name");
      }
    }
    if (!routing.tls_ca_file().empty() && routing.tls_ca_file().front() != '/') {
      return fail_key("routing.tls_ca_file", "must be an absolute path");
    }
    const auto& dns = routing.dns();
    for (int i = 0; i < dns.servers_size(); ++i) {
      if (auto ep = parse_endpoint(dns.servers(i)); !ep.ok()) {
        return fail_key(index("routing.dns.servers", i), ep.error().message);
      }
    }
    if (!first_mx.empty() && dns.servers_size() == 0) {
      return fail_key("routing.dns.servers", "required: " + first_mx +
                                                 " uses DNS MX, and /etc/resolv.conf is never read");
    }
    return true;
  }

  std::string file_;
  std::map<std::string, int> lines_;  // dotted key path -> line it was written on
};

}  // namespace

std::string Endpoint::str() const {
  return address.find(':') != std::string::npos ? "[" + address + "]:" + std::to_string(port)
                                                : address + ":" + std::to_string(port);
}

Result<Endpoint> parse_endpoint(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Result<Endpoint>(permanent_error("", quoted(text) + ": " + why));
  };
  std::string host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find("]:");
    if (close == std::string::npos) {
      return bad("expected [IPv6]:port");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    unsigned char buf[16];
    if (inet_pton(AF_INET6, host.c_str(), buf) != 1) {
      return bad("not an IPv6 address inside the brackets");
    }
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
    unsigned char buf[4];
    if (inet_pton(AF_INET, host.c_str(), buf) != 1) {
      return bad("address must be an IP literal (host names are not resolved)");
    }
  }
  auto p = parse_whole(port);
  if (!p || p->negative || p->magnitude == 0 || p->magnitude > 65535) {
    return bad("port out of range (1-65535)");
  }
  return Endpoint{host, static_cast<std::uint16_t>(p->magnitude)};
}

Result<Network> parse_network(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Result<Network>(permanent_error("5.3.5", "\"" + text + "\": " + why));
  };
  Network n;
  std::string addr = text;
  int prefix = -1;
  if (auto slash = text.find('/'); slash != std::string::npos) {
    addr = text.substr(0, slash);
    std::string_view p = std::string_view(text).substr(slash + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (ec != std::errc() || end != p.data() + p.size() || p.empty()) {
      return bad("the prefix length is not a number");
    }
  }
  if (::inet_pton(AF_INET, addr.c_str(), n.addr.data()) == 1) {
    n.family = AF_INET;
  } else if (::inet_pton(AF_INET6, addr.c_str(), n.addr.data()) == 1) {
    n.family = AF_INET6;
  } else {
    return bad("not a network in CIDR notation (IP literal, optional /prefix)");
  }
  const int bits = n.family == AF_INET ? 32 : 128;
  if (prefix > bits) {
    return bad("prefix longer than " + std::to_string(bits));
  }
  n.prefix = prefix < 0 ? bits : prefix;
  // Host bits cleared: 10.1.2.3/8 is the network 10.0.0.0/8.
  for (int b = n.prefix; b < bits; ++b) {
    n.addr[static_cast<std::size_t>(b / 8)] &= static_cast<unsigned char>(~(0x80u >> (b % 8)));
  }
  return n;
}

bool Network::contains(std::string_view ip) const {
  std::array<unsigned char, 16> a{};
  std::string s(ip);
  if (::inet_pton(family, s.c_str(), a.data()) != 1) {
    // An IPv4 client seen through an IPv6 socket (::ffff:192.0.2.1) against a v4 network.
    if (family != AF_INET || !s.starts_with("::ffff:") ||
        ::inet_pton(AF_INET, s.c_str() + 7, a.data()) != 1) {
      return false;
    }
  }
  for (int b = 0; b < prefix; ++b) {
    const auto mask = static_cast<unsigned char>(0x80u >> (b % 8));
    if ((a[static_cast<std::size_t>(b / 8)] & mask) != (addr[static_cast<std::size_t>(b / 8)] & mask)) {
      return false;
    }
  }
  return true;
}

std::string Network::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(family, addr.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

Result<bh::proto::Config> load_config_string(const std::string& text, const std::string& filename) {
  return Loader(filename).load(text);
}

Result<bh::proto::Config> load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return permanent_error("", path + ": cannot read the config file");
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (ss.str().size() > kMaxConfigBytes) {
    return permanent_error("", path + ": config file larger than 1 MiB");
  }
  return load_config_string(ss.str(), path);
}

std::vector<bh::routing::Connector> smtp_connectors(const bh::proto::Config& config) {
  std::vector<bh::routing::Connector> out;
  for (const auto& sc : config.routing().smtp_connectors()) {
    bh::routing::Connector c;
    c.name = sc.name();
    c.kind = sc.use_dns_mx() ? bh::routing::ConnectorKind::kDnsMx : bh::routing::ConnectorKind::kSmartHost;
    for (const auto& text : sc.smart_hosts()) {
      auto h = bh::routing::parse_smart_host(text);
      BH_CHECK(h.ok());  // validated by the loader
      c.smart_hosts.push_back(*h);
    }
    for (const auto& as : sc.address_spaces()) {
      auto space = bh::routing::AddressSpace::parse(as.pattern());
      BH_CHECK(space.ok());
      c.address_spaces.push_back(bh::routing::CostedAddressSpace{*space, static_cast<int>(as.cost())});
    }
    switch (sc.tls()) {
      case bh::proto::TLS_MODE_REQUIRED:
        c.settings.tls = bh::routing::TlsMode::kRequired;
        break;
      case bh::proto::TLS_MODE_NONE:
        c.settings.tls = bh::routing::TlsMode::kNone;
        break;
      default:
        c.settings.tls = bh::routing::TlsMode::kOpportunistic;
        break;
    }
    c.settings.tls_verify = sc.tls_verify();
    c.settings.auth_username = sc.auth().username();
    c.settings.auth_password_file = sc.auth().password_file();
    c.settings.auth_mechanism = sc.auth().mechanism();
    c.settings.auth_verb = sc.auth().verb();
    c.settings.auth_service_host = sc.auth().service_host();
    c.settings.port = static_cast<std::uint16_t>(sc.port());
    c.settings.max_connections = sc.max_connections();
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<bh::routing::Connector> node_connectors(const bh::proto::Config& config) {
  std::vector<bh::routing::Connector> out;
  const auto& relay = config.link_state().relay();
  for (const auto& n : config.link_state().nodes()) {
    if (n.smtp().empty() || n.id() == config.node().name()) {
      continue;
    }
    auto h = bh::routing::parse_smart_host(n.smtp());
    if (!h.ok()) {
      continue;  // validated by the loader: never happens
    }
    bh::routing::Connector c;
    c.name = "node." + n.id();
    c.kind = bh::routing::ConnectorKind::kSmartHost;
    c.internal = true;
    c.smart_hosts.push_back(*h);
    c.settings.tls = relay.tls() == bh::proto::TLS_MODE_REQUIRED ? bh::routing::TlsMode::kRequired
                     : relay.tls() == bh::proto::TLS_MODE_NONE   ? bh::routing::TlsMode::kNone
                                                                 : bh::routing::TlsMode::kOpportunistic;
    c.settings.tls_verify = relay.tls_verify();
    c.settings.max_connections = relay.max_connections() == 0 ? 10 : relay.max_connections();
    if (relay.auth_mechanism() == "GSSAPI") {
      c.settings.auth_mechanism = "GSSAPI";
      c.settings.auth_verb = "X-EXPS";
      c.settings.auth_service_host = n.id();  // its principal: <auth.service>/<node id>
    } else if (!relay.auth_username().empty()) {
      c.settings.auth_username = relay.auth_username();
      c.settings.auth_password_file = relay.auth_password_file();
      c.settings.auth_verb = "X-EXPS";  // LOGIN under X-EXPS (smtp/client_session.h)
    }
    out.push_back(std::move(c));
  }
  return out;
}

std::string admin_token_path(const bh::proto::Config& config) {
  return config.admin().token_file().empty() ? config.node().data_dir() + "/admin.token"
                                             : config.admin().token_file();
}

}  // namespace bh::node
