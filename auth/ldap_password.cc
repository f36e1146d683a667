#include "auth/ldap_password.h"

#include <ldap.h>

#include <cstdio>
#include <memory>

namespace bh::auth {

std::string escape_dn_value(std::string_view value) {
  std::string out;
  for (std::size_t i = 0; i < value.size(); ++i) {
    auto c = static_cast<unsigned char>(value[i]);
    bool special = c == ',' || c == '+' || c == '"' || c == '\\' || c == '<' || c == '>' ||
                   c == ';' || c == '=' || (i == 0 && (c == ' ' || c == '#')) ||
                   (i + 1 == value.size() && c == ' ');
    if (c < 0x20 || c == 0x7f) {
      char hex[4];
      std::snprintf(hex, sizeof hex, "\\%02x", c);
      out += hex;
    } else if (special) {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

LdapPasswordChecker::LdapPasswordChecker(LdapPasswordOptions options)
    : options_(std::move(options)) {}

Result<void> LdapPasswordChecker::check(std::string_view user, std::string_view password) {
  if (user.empty() || password.empty()) {
    return permanent_error("5.7.8", "empty user name or password");
  }
  std::string dn = options_.user_dn_template;
  auto at = dn.find("{user}");
  if (at == std::string::npos) {
    return transient_error("4.7.0", "auth.ldap.user_dn has no {user}");
  }
  dn.replace(at, 6, escape_dn_value(user));

  LDAP* raw = nullptr;
  if (ldap_initialize(&raw, options_.uri.c_str()) != LDAP_SUCCESS || raw == nullptr) {
    return transient_error("4.7.0", "bad LDAP URI " + options_.uri);
  }
  std::unique_ptr<LDAP, void (*)(LDAP*)> ld(raw, [](LDAP* l) { ldap_unbind_ext_s(l, nullptr, nullptr); });
  int version = LDAP_VERSION3;
  ldap_set_option(ld.get(), LDAP_OPT_PROTOCOL_VERSION, &version);
  ldap_set_option(ld.get(), LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(options_.timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>(options_.timeout.count() % 1000 * 1000);
  ldap_set_option(ld.get(), LDAP_OPT_NETWORK_TIMEOUT, &tv);
  ldap_set_option(ld.get(), LDAP_OPT_TIMEOUT, &tv);

  std::string pw(password);
  berval cred{static_cast<ber_len_t>(pw.size()), pw.data()};
  int rc = ldap_sasl_bind_s(ld.get(), dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr,
                            nullptr);
  std::fill(pw.begin(), pw.end(), '\0');
  if (rc == LDAP_SUCCESS) {
    return {};
  }
  if (rc == LDAP_SERVER_DOWN || rc == LDAP_TIMEOUT || rc == LDAP_CONNECT_ERROR ||
      rc == LDAP_UNAVAILABLE || rc == LDAP_BUSY || rc == LDAP_TIMELIMIT_EXCEEDED ||
      rc == LDAP_OTHER || rc == LDAP_LOCAL_ERROR) {
    return transient_error("4.7.0", std::string("directory unavailable: ") + ldap_err2string(rc));
  }
  return permanent_error("5.7.8", std::string("bind refused: ") + ldap_err2string(rc));
}

}  // namespace bh::auth
