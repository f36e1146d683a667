#pragma once
// What the Cyrus SASL server (sasl_server.cc) and client (sasl_client.cc) share: the
// callback cast libsasl needs, and real mutexes for libsasl (its own are no-ops unless
// the application supplies them), installed once per process before either init.
// Threading: use_real_mutexes() is safe to call from any thread, any number of times.

#include <sasl/sasl.h>

namespace bh::auth {

// libsasl stores every callback as int (*)(void); the detour through void (*)(void) is
// the cast the compiler accepts as deliberate.
using SaslCallback = int (*)();
template <class F>
SaslCallback as_callback(F f) {
  return reinterpret_cast<SaslCallback>(reinterpret_cast<void (*)()>(f));
}

void use_real_mutexes();

}  // namespace bh::auth
