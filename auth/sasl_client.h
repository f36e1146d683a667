#pragma once
// The client side of SASL for our outbound sessions (smtp::ClientSasl), through Cyrus
// SASL: GSSAPI between the organization's nodes (X-EXPS, DESIGN.md §4.1), with the
// node's own Kerberos identity from its client keytab (KRB5_CLIENT_KTNAME, set by the
// node from auth.client_keytab) and the peer's service principal <service>/<host>.
// No SASL security layer is negotiated (max SSF 0), like the server side.
//
// Threading: each exchange is used by one thread at a time; libsasl is initialized once
// per process with real mutexes. A step may block briefly while libkrb5 gets a service
// ticket from the KDC.

#include <functional>
#include <memory>
#include <string>

#include "common/result.h"
#include "smtp/client_session.h"

namespace bh::auth {

// A factory for one GSSAPI exchange with the server `host` (its principal is
// <service>/<host>). Errors (libsasl cannot start) come back from ClientSasl::start().
std::unique_ptr<smtp::ClientSasl> make_gssapi_client(const std::string& service,
                                                     const std::string& host);

}  // namespace bh::auth
