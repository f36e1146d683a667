#include "auth/tls_context.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>
#include <vector>

namespace bh::auth {
namespace {

namespace fs = std::filesystem;
namespace ssl = boost::asio::ssl;

// A CA and leaf certificates made with the openssl CLI, as the integration tests do.
class CertDir {
 public:
  CertDir() {
    char tmpl[] = "/tmp/bh-tlsctx-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    ok_ =
        run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=bridgehead test CA'"
            " -keyout ca.key -out ca.pem");
  }
  ~CertDir() { fs::remove_all(dir_); }
  bool ok() const { return ok_; }
  // Writes <name>.pem and <name>.key, a leaf for `cn` signed by the CA.
  bool leaf(const std::string& name, const std::string& cn) {
    return run("openssl req -newkey rsa:2048 -nodes -subj '/CN=" + cn + "' -keyout " + name +
               ".key -out " + name + ".csr") &&
           run("openssl x509 -req -in " + name +
               ".csr -CA ca.pem -CAkey ca.key -CAcreateserial"
               " -days 2 -out " +
               name + ".pem");
  }
  std::string path(const std::string& file) const { return (dir_ / file).string(); }
  void copy(const std::string& from, const std::string& to) const {
    fs::copy_file(dir_ / from, dir_ / to, fs::copy_options::overwrite_existing);
  }
  void write(const std::string& file, const std::string& text) const {
    std::ofstream(dir_ / file, std::ios::trunc) << text;
  }

 private:
  bool run(const std::string& cmd) {
    std::string full = "cd '" + dir_.string() + "' && " + cmd + " >/dev/null 2>&1";
    return std::system(full.c_str()) == 0;
  }
  fs::path dir_;
  bool ok_ = false;
};

std::string subject_cn(const ssl::context& ctx) {
  X509* cert = SSL_CTX_get0_certificate(const_cast<ssl::context&>(ctx).native_handle());
  if (cert == nullptr) {
    return "";
  }
  char buf[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  return buf;
}

// One handshake over a memory BIO pair between a server from `sctx` and a client set up
// by `client`. Returns "<version> <cipher>" or nullopt when the handshake fails.
std::optional<std::string> handshake(ssl::context& sctx, void (*client)(SSL_CTX*)) {
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_security_level(cctx, 0);  // let the client offer what the server must refuse
  client(cctx);
  SSL* s = SSL_new(sctx.native_handle());
  SSL* c = SSL_new(cctx);
  BIO *sb = nullptr, *cb = nullptr;
  BIO_new_bio_pair(&sb, 0, &cb, 0);
  SSL_set_bio(s, sb, sb);
  SSL_set_bio(c, cb, cb);
  SSL_set_accept_state(s);
  SSL_set_connect_state(c);
  bool s_done = false, c_done = false, failed = false;
  for (int i = 0; i < 50 && !(s_done && c_done) && !failed; ++i) {
    for (auto [ssl_obj, done] : {std::pair{c, &c_done}, std::pair{s, &s_done}}) {
      if (*done) {
        continue;
      }
      int r = SSL_do_handshake(ssl_obj);
      if (r == 1) {
        *done = true;
      } else {
        int e = SSL_get_error(ssl_obj, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
          failed = true;
        }
      }
    }
  }
  std::optional<std::string> out;
  if (s_done && c_done) {
    out = std::string(SSL_get_version(s)) + " " + SSL_CIPHER_get_name(SSL_get_current_cipher(s));
  }
  SSL_free(s);
  SSL_free(c);
  SSL_CTX_free(cctx);
  ERR_clear_error();
  return out;
}

class TlsContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(certs_.ok());
    ASSERT_TRUE(certs_.leaf("a", "first.example.org"));
    ASSERT_TRUE(certs_.leaf("b", "second.example.org"));
    certs_.copy("a.pem", "cert.pem");
    certs_.copy("a.key", "key.pem");
  }
  TlsServerFiles files() const { return {certs_.path("cert.pem"), certs_.path("key.pem")}; }
  CertDir certs_;
};

TEST_F(TlsContextTest, LoadsCertificateAndKey) {
  auto h = TlsContextHolder::load(files());
  ASSERT_TRUE(h.ok()) << h.error().message;
  auto ctx = (*h)->current();
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(subject_cn(*ctx), "first.example.org");
  EXPECT_EQ((*h)->current(), ctx);  // the same context until a reload
}

TEST_F(TlsContextTest, PolicyTls12AeadOnlyServerOrderNoCompressionNoRenegotiation) {
  auto ctx = make_server_context(files());
  ASSERT_TRUE(ctx.ok()) << ctx.error().message;
  SSL_CTX* n = (*ctx)->native_handle();
  EXPECT_EQ(SSL_CTX_get_min_proto_version(n), TLS1_2_VERSION);
  const auto opts = SSL_CTX_get_options(n);
  EXPECT_TRUE(opts & SSL_OP_NO_COMPRESSION);
  EXPECT_TRUE(opts & SSL_OP_NO_RENEGOTIATION);
  EXPECT_TRUE(opts & SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL* s = SSL_new(n);
  STACK_OF(SSL_CIPHER)* ciphers = SSL_get_ciphers(s);
  ASSERT_GT(sk_SSL_CIPHER_num(ciphers), 0);
  for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i) {
    const SSL_CIPHER* c = sk_SSL_CIPHER_value(ciphers, i);
    SCOPED_TRACE(SSL_CIPHER_get_name(c));
    EXPECT_TRUE(SSL_CIPHER_is_aead(c));
    EXPECT_GE(SSL_CIPHER_get_bits(c, nullptr), 128);
    const int kx = SSL_CIPHER_get_kx_nid(c);
    EXPECT_TRUE(kx == NID_kx_ecdhe || kx == NID_kx_any);  // any: a TLS 1.3 suite
  }
  SSL_free(s);
}

TEST_F(TlsContextTest, HandshakesRefuseOldProtocolsAndWeakCiphers) {
  auto ctx = make_server_context(files());
  ASSERT_TRUE(ctx.ok());
  auto tls13 = handshake(**ctx, [](SSL_CTX*) {});
  ASSERT_TRUE(tls13.has_value());
  EXPECT_EQ(tls13->rfind("TLSv1.3 ", 0), 0u) << *tls13;
  auto tls12 =
      handshake(**ctx, [](SSL_CTX* c) { SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION); });
  ASSERT_TRUE(tls12.has_value());
  EXPECT_EQ(*tls12, "TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384");  // the server's first choice
  EXPECT_FALSE(handshake(**ctx, [](SSL_CTX* c) {
    SSL_CTX_set_min_proto_version(c, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_1_VERSION);
  }));
  // TLS 1.2 with only CBC, only RSA key exchange, or only 3DES: no common cipher.
  for (const char* weak : {"ECDHE-RSA-AES128-SHA", "AES128-GCM-SHA256", "DES-CBC3-SHA:RC4-SHA"}) {
    SCOPED_TRACE(weak);
    static const char* list;
    list = weak;
    EXPECT_FALSE(handshake(**ctx, [](SSL_CTX* c) {
      SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
      SSL_CTX_set_cipher_list(c, list);
    }));
  }
}

TEST_F(TlsContextTest, ReloadSwapsForNewConnectionsAndKeepsTheOldForItsHolders) {
  auto h = TlsContextHolder::load(files());
  ASSERT_TRUE(h.ok());
  auto before = (*h)->current();
  certs_.copy("b.pem", "cert.pem");
  certs_.copy("b.key", "key.pem");
  auto r = (*h)->reload();
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto after = (*h)->current();
  EXPECT_NE(after, before);
  EXPECT_EQ(subject_cn(*after), "second.example.org");
  EXPECT_EQ(subject_cn(*before), "first.example.org");  // a running session's context
  EXPECT_TRUE(handshake(*before, [](SSL_CTX*) {}).has_value());
  EXPECT_EQ((*h)->counters().reloads, 1u);
  EXPECT_EQ((*h)->counters().reload_failures, 0u);
}

TEST_F(TlsContextTest, FailedReloadKeepsTheCurrentContextAndNamesTheFile) {
  auto h = TlsContextHolder::load(files());
  ASSERT_TRUE(h.ok());
  auto before = (*h)->current();

  certs_.write("cert.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n");
  auto r = (*h)->reload();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(certs_.path("cert.pem")), std::string::npos)
      << r.error().message;
  EXPECT_EQ((*h)->current(), before);

  // A new certificate with the old key (replaced one file of two): mismatch, names the key.
  certs_.copy("b.pem", "cert.pem");
  r = (*h)->reload();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(certs_.path("key.pem")), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("match"), std::string::npos) << r.error().message;
  EXPECT_EQ((*h)->current(), before);

  fs::remove(certs_.path("key.pem"));
  r = (*h)->reload();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(certs_.path("key.pem")), std::string::npos) << r.error().message;
  EXPECT_EQ((*h)->current(), before);
  EXPECT_EQ((*h)->counters().reload_failures, 3u);
  EXPECT_EQ((*h)->counters().reloads, 0u);

  certs_.copy("b.key", "key.pem");  // both files replaced now
  ASSERT_TRUE((*h)->reload().ok());
  EXPECT_EQ(subject_cn(*(*h)->current()), "second.example.org");
}

TEST_F(TlsContextTest, LoadFailsNamingTheMissingFile) {
  auto h = TlsContextHolder::load({certs_.path("nope.pem"), certs_.path("key.pem")});
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message.find(certs_.path("nope.pem")), std::string::npos)
      << h.error().message;
}

TEST_F(TlsContextTest, ConcurrentReloadsAndReaders) {
  auto h = TlsContextHolder::load(files());
  ASSERT_TRUE(h.ok());
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  std::atomic<int> seen{0};
  for (int i = 0; i < 2; ++i) {
    readers.emplace_back([&] {
      while (!stop) {
        auto c = (*h)->current();
        if (c && !subject_cn(*c).empty()) {
          seen++;
        }
      }
    });
  }
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE((*h)->reload().ok());
  }
  stop = true;
  for (auto& t : readers) {
    t.join();
  }
  EXPECT_GT(seen.load(), 0);
  EXPECT_EQ((*h)->counters().reloads, 10u);
}

}  // namespace
}  // namespace bh::auth
