#pragma once
// TlsSessionCache: the TLS sessions of outbound connections, kept so the next connection
// to the same server resumes one (RFC 5077 tickets or session ids, RFC 8446 §2.2 PSK)
// instead of a full handshake: no certificate chain, no signature by the server, for
// every message after the first. Used by the relay (smtp/relay_client.h) through the
// connection pump (smtp/client_connection.h).
//
// Key: the target as dialed ("host[ip]:port") and whether its certificate was verified,
// so a session verified for a name is only offered to that name with verification, and
// one made without verification never serves a connection that asks for it. A resumed
// session keeps the verification result of the handshake that made it.
// Bounded: at most `capacity` keys; storing past that drops the one stored longest ago.
// A session past its lifetime (the server's ticket hint, or OpenSSL's default) is not
// offered and is dropped when seen. A key whose handshake failed is forgotten.
// Thread-safe (one mutex). Owns one reference to each stored SSL_SESSION.

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

namespace bh::smtp {

class TlsSessionCache {
 public:
  explicit TlsSessionCache(std::size_t capacity = 1024) : capacity_(capacity == 0 ? 1 : capacity) {}
  ~TlsSessionCache();
  TlsSessionCache(const TlsSessionCache&) = delete;
  TlsSessionCache& operator=(const TlsSessionCache&) = delete;

  static std::string key(const std::string& target, bool verified);

  // A session to offer for `key`, with a reference for the caller (SSL_set_session
  // takes its own; free this one with SSL_SESSION_free), or null. `now_unix`: the
  // current time in seconds (a test seam; 0 = the system clock).
  SSL_SESSION* get(const std::string& key, std::int64_t now_unix = 0);
  // Stores `session` for `key` (replacing the one before), taking over the caller's
  // reference; a session that cannot be resumed is freed and nothing changes.
  void put(const std::string& key, SSL_SESSION* session);
  void forget(const std::string& key);
  std::size_t size() const;

 private:
  struct Entry {
    SSL_SESSION* session;
    std::list<std::string>::iterator order;
  };
  void drop(std::unordered_map<std::string, Entry>::iterator it);

  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> order_;  // oldest stored first
};

}  // namespace bh::smtp
