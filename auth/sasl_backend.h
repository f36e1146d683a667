#pragma once
// SaslAuthBackend: smtp::AuthBackend over SaslService (sasl_server.h) plus the list of
// the organization's servers (DESIGN.md §4.1, issue "Security": X-EXPS peer rights).
//
// A login whose identity is on the peer list (compared case-insensitively: a Kerberos
// principal such as "smtp/node2.example.test@EXAMPLE.TEST" or a user name) gets peer
// rights, whichever verb it came by; every other login is an ordinary user. Thread-safe:
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

 private:
  std::shared_ptr<SaslService> sasl_;
  std::vector<std::string> peers_;  // lower-cased
};

}  // namespace bh::auth
