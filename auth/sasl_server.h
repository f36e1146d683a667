#pragma once
// SASL server side of AUTH and X-EXPS (RFC 4954), through Cyrus SASL (DESIGN.md §2 auth/).
//
// SaslService is created once per process from the auth config: it initializes libsasl
// (mutexes, plugins, mechanism list restricted to PLAIN, LOGIN and GSSAPI) and names the
// password source. SaslExchange is one AUTH attempt on one connection: start() with the
// mechanism and the optional initial response, step() with each client response, raw
// bytes in and out (the SMTP session does the base64). An exchange runs on one thread
// at a time; exchanges on different threads are independent (libsasl gets real mutexes).
//
// Password sources: a sasldb file (Cyrus auxprop, entries `saslpasswd2 -f FILE -u REALM
// USER`), or a PasswordChecker (the LDAP bind as the user, auth/ldap_password.h). GSSAPI
// needs no password: the acceptor uses the keytab (KRB5_KTNAME, set from the config by the
// node before the first exchange) for the principal <service>/<hostname>. No SASL
// security layer is ever negotiated (max SSF 0): the SMTP stream is not wrapped.
//
// Trust: the client's bytes are hostile; libsasl parses them. Mapping of outcomes:
// kFailed (535 5.7.8) for a wrong password, unknown user or malformed response;
// kTemporary (454 4.7.0) when the password source could not answer.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace bh::auth {

// Checks a user's password somewhere (an LDAP bind). Called on the exchange's thread,
// may block (the caller runs exchanges off the io threads). Transient error: the source
// is unavailable (454); permanent: wrong credentials (535).
class PasswordChecker {
 public:
  virtual ~PasswordChecker() = default;
  virtual Result<void> check(std::string_view user, std::string_view password) = 0;
};

struct SaslOptions {
  std::string service = "smtp";  // GSSAPI principal <service>/<hostname>
  std::string hostname;          // our FQDN
  std::string realm;             // sasldb user realm; empty: hostname
  // Offered, in this order; each one of PLAIN, LOGIN, GSSAPI.
  std::vector<std::string> mechanisms{"PLAIN", "LOGIN"};
  std::string sasldb_path;                  // sasldb source; empty: none
  std::shared_ptr<PasswordChecker> checker;  // or this one (takes precedence)
};

struct StepResult {
  enum class Kind { kContinue, kSuccess, kFailed, kTemporary };
  Kind kind = Kind::kFailed;
  std::string challenge;  // kContinue: raw bytes for the 334 line
  std::string user;       // kSuccess: the authenticated (authorization) identity
  std::string detail;     // for the log, never for the wire
};

class SaslExchange;

class SaslService {
 public:
  // Initializes libsasl on first use in the process. Errors name the reason.
  static Result<std::shared_ptr<SaslService>> create(SaslOptions options);
  ~SaslService();

  const SaslOptions& options() const { return options_; }
  bool supports(std::string_view mechanism) const;  // case-insensitive, configured ones
  // A new exchange for one AUTH command. `tls` tells libsasl an external layer exists.
  Result<std::unique_ptr<SaslExchange>> begin(bool tls) const;

  explicit SaslService(SaslOptions options);

 private:
  SaslOptions options_;
};

class SaslExchange {
 public:
  virtual ~SaslExchange() = default;
  virtual StepResult start(std::string_view mechanism,
                           std::optional<std::string_view> initial_response) = 0;
  virtual StepResult step(std::string_view response) = 0;
};

}  // namespace bh::auth
