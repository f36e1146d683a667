#pragma once
// LdapPasswordChecker: checks AUTH PLAIN/LOGIN passwords by an LDAP simple bind as the
// user (DESIGN.md §2 auth/; issue "Security": "LDAP bind as the user").
//
// The user's DN comes from a template with "{user}" (e.g.
// "uid={user},ou=people,dc=example,dc=test"); the user name is escaped as an RFC 4514
// attribute value, so "x,ou=admins" can never select another entry. An empty password is
// refused before any bind: LDAP would treat it as an unauthenticated bind and succeed
// (RFC 4513 §5.1.2). Each check is one connection: initialize, bind, unbind; it blocks
// for at most the configured timeout and is run off the io threads.
//
// Outcomes: success; wrong password or no such entry -> permanent 5.7.8; the directory
// down, busy or too slow -> transient 4.7.0 (the session answers 454).

#include <chrono>
#include <string>

#include "auth/sasl_server.h"

namespace bh::auth {

struct LdapPasswordOptions {
  std::string uri;              // ldap://127.0.0.1:389/ or ldaps://...
  std::string user_dn_template;  // contains "{user}" once
  std::chrono::milliseconds timeout{std::chrono::seconds(5)};
};

// RFC 4514 §2.4 escaping of an attribute value.
std::string escape_dn_value(std::string_view value);

class LdapPasswordChecker final : public PasswordChecker {
 public:
  explicit LdapPasswordChecker(LdapPasswordOptions options);
  Result<void> check(std::string_view user, std::string_view password) override;

 private:
  LdapPasswordOptions options_;
};

}  // namespace bh::auth
