#pragma once
// Server TLS contexts (DESIGN.md §2 auth/): one policy for every inbound TLS session
// (STARTTLS on 25/587, implicit TLS on 465), and a holder that swaps the certificate on
// reload while sessions already running keep the one they started with.
//
// Policy (make_server_context): TLS 1.2 and 1.3 only; TLS 1.2 offers only ECDHE key
// exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305), in the server's order; TLS
// 1.3 its three standard AEAD suites; no TLS compression (CRIME), no renegotiation.
//
// Ownership: each connection holds a std::shared_ptr to the context it was accepted
// with, so a context lives as long as the last session that uses it.
// Threading: TlsContextHolder::current() and reload() may be called from any thread at
// the same time; contexts are not changed after they are handed out.
// Errors: always permanent, the message names the file and OpenSSL's reason.

#include <atomic>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "common/result.h"

namespace bh::auth {

struct TlsServerFiles {
  std::string cert_file;  // PEM certificate chain, leaf first
  std::string key_file;   // PEM private key of the leaf
};

// A new server context with the policy above and the certificate and key from `files`
// (checked to match).
Result<std::shared_ptr<boost::asio::ssl::context>> make_server_context(const TlsServerFiles& files);

class TlsContextHolder {
 public:
  // Loads the files once; fails as make_server_context does.
  static Result<std::unique_ptr<TlsContextHolder>> load(TlsServerFiles files);

  // The context for a new connection.
  std::shared_ptr<boost::asio::ssl::context> current() const;

  // Reads the files again. Success: new connections get the new context; failure: the
  // current one stays and the error says why (the caller logs it).
  Result<void> reload();

  struct Counters {
    std::uint64_t reloads = 0, reload_failures = 0;
  };
  Counters counters() const;
  const TlsServerFiles& files() const { return files_; }

 private:
  TlsContextHolder(TlsServerFiles files, std::shared_ptr<boost::asio::ssl::context> ctx)
      : files_(std::move(files)), ctx_(std::move(ctx)) {}

  const TlsServerFiles files_;
  mutable std::mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> ctx_;  // guarded by mu_
  std::atomic<std::uint64_t> reloads_{0}, reload_failures_{0};
};

}  // namespace bh::auth
