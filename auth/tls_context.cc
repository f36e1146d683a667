#include "auth/tls_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace bh::auth {

namespace ssl = boost::asio::ssl;

namespace {

// TLS 1.2: forward secrecy (ECDHE) and AEAD only; the strongest first, the server decides.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
constexpr const char* kTls13Suites =
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";

Error file_error(const std::string& what, const std::string& path, const std::string& reason) {
  return permanent_error("5.7.0", what + " " + path + ": " + reason);
}

}  // namespace

Result<std::shared_ptr<ssl::context>> make_server_context(const TlsServerFiles& files) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::no_compression | ssl::context::single_dh_use);
  SSL_CTX_set_options(
      native, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1 ||
      SSL_CTX_set_ciphersuites(native, kTls13Suites) != 1) {
    ERR_clear_error();
    return permanent_error("5.7.0", "the TLS library refuses our protocol or cipher settings");
  }
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(files.cert_file, ec);
  if (ec) {
    ERR_clear_error();
    return file_error("certificate", files.cert_file, ec.message());
  }
  ctx->use_private_key_file(files.key_file, ssl::context::pem, ec);
  if (ec) {
    ERR_clear_error();
    return file_error("private key", files.key_file, ec.message());
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    return file_error("private key", files.key_file,
                      "does not match the certificate " + files.cert_file);
  }
  return ctx;
}

Result<std::unique_ptr<TlsContextHolder>> TlsContextHolder::load(TlsServerFiles files) {
  auto ctx = make_server_context(files);
  if (!ctx.ok()) {
    return ctx.error();
  }
  return std::unique_ptr<TlsContextHolder>(
      new TlsContextHolder(std::move(files), std::move(ctx.value())));
}

std::shared_ptr<ssl::context> TlsContextHolder::current() const {
  std::lock_guard lock(mu_);
  return ctx_;
}

Result<void> TlsContextHolder::reload() {
  auto ctx = make_server_context(files_);  // outside the lock: file I/O
  if (!ctx.ok()) {
    reload_failures_++;
    return ctx.error();
  }
  {
    std::lock_guard lock(mu_);
    ctx_ = std::move(ctx.value());
  }
  reloads_++;
  return Ok{};
}

TlsContextHolder::Counters TlsContextHolder::counters() const {
  return Counters{reloads_.load(), reload_failures_.load()};
}

}  // namespace bh::auth
