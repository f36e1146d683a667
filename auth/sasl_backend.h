#pragma once
// SaslAuthBackend: smtp::AuthBackend over SaslService (sasl_server.h) plus the list of
// the organization's servers (DESIGN.md §4.1, issue "Security": X-EXPS peer rights).
//
// A login whose identity is on the peer list (compared case-insensitively: a Kerberos
// principal such as "smtp/node2.example.test@EXAMPLE.TEST" or a user name) gets peer
// rights, whichever verb it came by; every other login is an ordinary user. GSSAPI
// identities are whole principals (name@REALM) even in the default realm. Thread-safe:
// each Exchange is used by one thread at a time.

#include <memory>
#include <string>
#include <vector>

#include "auth/sasl_server.h"
#include "smtp/auth_backend.h"

namespace bh::auth {

class SaslAuthBackend final : public smtp::AuthBackend {
 public:
  SaslAuthBackend(std::shared_ptr<SaslService> sasl, std::vector<std::string> peer_servers);
  std::unique_ptr<Exchange> begin(bool tls) override;
  bool is_peer(std::string_view identity) const;
  // libsasl reports a Kerberos principal of the default realm without its realm; the
  // identity we log and compare is always the whole principal.
  std::string qualify_principal(const std::string& name) const;

 private:
  std::string realm_;  // Kerberos default realm, read once
  std::shared_ptr<SaslService> sasl_;
  std::vector<std::string> peers_;  // lower-cased
};

}  // namespace bh::auth
