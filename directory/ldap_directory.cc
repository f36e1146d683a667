#include "directory/ldap_directory.h"

#include "common/text.h"
#include "directory/ldap_filter.h"

namespace bh::directory {

std::string mailbox_folder(std::string_view primary) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < primary.size(); ++i) {
    auto c = static_cast<unsigned char>(primary[i]);
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<unsigned char>(c - 'A' + 'a');
    }
    bool keep = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || (c == '.' && i > 0);
    if (keep) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('_');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  constexpr std::size_t kMax = 200;
  if (out.size() > kMax) {
    std::uint64_t h = 1469598103934665603ull;
    for (char ch : ascii_lower(primary)) {
      h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
    }
    out.resize(kMax - 18);
    out += "_x";  // never produced by the escaping ('_' is always followed by hex)
    for (int shift = 60; shift >= 0; shift -= 4) {
      out.push_back(kHex[(h >> shift) & 0xf]);
    }
  }
  return out;
}

LdapDirectory::LdapDirectory(LdapSearcher& searcher, const Clock& clock,
                             LdapDirectoryOptions options)
    : searcher_(searcher), options_(std::move(options)), cache_(clock, options_.cache) {}

std::string LdapDirectory::filter_for(std::string_view address) const {
  return filter_or({filter_equals_prefixed(options_.attributes.proxy_addresses, "smtp:", address),
                    filter_equals(options_.attributes.mail, address)});
}

Result<Resolution> LdapDirectory::classify(std::string_view address,
                                           const std::vector<LdapEntry>& entries) const {
  if (entries.empty()) {
    return Resolution{};
  }
  if (entries.size() > 1) {
    return permanent_error("5.1.4", "ambiguous address: more than one directory entry");
  }
  const LdapEntry& e = entries.front();
  std::string primary;
  for (const auto& v : e.values(options_.attributes.proxy_addresses)) {
    if (v.rfind("SMTP:", 0) == 0 && v.size() > 5) {  // upper case: the primary (DESIGN §4.4)
      primary = v.substr(5);
      break;
    }
  }
  if (primary.empty() && !e.values(options_.attributes.mail).empty()) {
    primary = e.values(options_.attributes.mail).front();
  }
  if (primary.empty()) {
    primary = std::string(address);
  }
  const auto& a = options_.attributes;
  auto present = [&](const std::string& attr) {
    for (const auto& v : e.values(attr)) {
      if (!v.empty()) {
        return true;
      }
    }
    return false;
  };
  bool group = present(a.query_filter);
  for (const auto& oc : e.values(a.object_class)) {
    for (const auto& g : options_.group_classes) {
      group = group || ascii_lower(oc) == ascii_lower(g);
    }
  }
  const bool has_mailbox = present(a.home_server);
  if (group || present(a.target_address) || (has_mailbox && present(a.alt_recipient))) {
    Resolution r;
    r.kind = RecipientKind::kCategorize;
    r.canonical = primary;
    r.senders_must_authenticate =
        group && !e.values(a.require_auth).empty() && ascii_lower(e.values(a.require_auth).front()) == "true";
    return r;
  }
  if (!has_mailbox) {
    return Resolution{};
  }
  Resolution r;
  r.kind = RecipientKind::kLocalMailbox;
  r.canonical = primary;
  std::string home;
  for (const auto& v : e.values(a.home_server)) {
    if (home.empty()) {
      home = v;
    }
  }
  if (!options_.this_server.empty() && ascii_lower(home) != ascii_lower(options_.this_server)) {
    r.home_server = home;
    return r;
  }
  r.mailbox = mailbox_folder(primary);
  return r;
}

void LdapDirectory::resolve(std::string_view address, ResolveCallback done) {
  lookups_++;
  std::string key = ascii_lower(address);
  if (auto hit = cache_.get(key)) {
    done(*hit);
    return;
  }
  LdapSearch s;
  s.base = options_.base_dn;
  s.scope = LdapScope::kSubtree;
  s.filter = filter_for(address);
  const auto& a = options_.attributes;
  s.attributes = {a.proxy_addresses, a.mail,           a.home_server,  a.object_class,
                  a.query_filter,    a.target_address, a.alt_recipient, a.require_auth};
  s.size_limit = 2;  // two are enough to know it is ambiguous
  searches_++;
  searcher_.search(std::move(s), [this, key, address = std::string(address),
                                  done = std::move(done)](Result<std::vector<LdapEntry>> r) {
    if (!r.ok()) {
      errors_++;
      done(r.error());
      return;
    }
    auto c = classify(address, *r);
    if (!c.ok()) {
      ambiguous_++;
      done(c.error());
      return;
    }
    (c->kind == RecipientKind::kUnknown ? not_found_ : found_)++;
    cache_.put(key, *c);
    done(std::move(c));
  });
}

LdapDirectoryCounters LdapDirectory::counters() const {
  LdapDirectoryCounters c;
  c.cache = cache_.counters();
  c.lookups = lookups_.load();
  c.cache_hits = c.cache.hits;
  c.searches = searches_.load();
  c.found = found_.load();
  c.not_found = not_found_.load();
  c.ambiguous = ambiguous_.load();
  c.errors = errors_.load();
  return c;
}

}  // namespace bh::directory
