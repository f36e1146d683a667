#include "auth/sasl_client.h"

#include <sasl/sasl.h>

#include <cstring>
#include <mutex>

#include "auth/sasl_common.h"
#include "common/log.h"

namespace bh::auth {

namespace {

// The authorization identity: empty, so the server takes the Kerberos principal itself.
int empty_user(void*, int, const char** result, unsigned* len) {
  *result = "";
  if (len != nullptr) {
    *len = 0;
  }
  return SASL_OK;
}

Result<void> init_client_once() {
  static std::once_flag once;
  static int rc = SASL_OK;
  std::call_once(once, [] {
    use_real_mutexes();
    rc = sasl_client_init(nullptr);
  });
  if (rc != SASL_OK) {
    return transient_error("4.7.0", std::string("sasl_client_init: ") +
                                        sasl_errstring(rc, nullptr, nullptr));
  }
  return {};
}

class GssapiClient final : public smtp::ClientSasl {
 public:
  GssapiClient(std::string service, std::string host)
      : service_(std::move(service)), host_(std::move(host)) {
    callbacks_[0] = {SASL_CB_USER, as_callback(&empty_user), nullptr};
    callbacks_[1] = {SASL_CB_LIST_END, nullptr, nullptr};
  }
  ~GssapiClient() override {
    if (conn_ != nullptr) {
      sasl_dispose(&conn_);
    }
  }

  std::string mechanism() const override { return "GSSAPI"; }

  Result<std::optional<std::string>> start() override {
    if (auto r = init_client_once(); !r.ok()) {
      return r.error();
    }
    int rc = sasl_client_new(service_.c_str(), host_.c_str(), nullptr, nullptr, callbacks_, 0,
                             &conn_);
    if (rc != SASL_OK) {
      return fail(rc);
    }
    sasl_security_properties_t sec{};
    sec.max_ssf = 0;  // no security layer: the stream is never wrapped
    sec.security_flags = SASL_SEC_NOANONYMOUS | SASL_SEC_NOPLAINTEXT;
    sasl_setprop(conn_, SASL_SEC_PROPS, &sec);
    const char* out = nullptr;
    unsigned outlen = 0;
    const char* mech = nullptr;
    sasl_interact_t* interact = nullptr;
    rc = sasl_client_start(conn_, "GSSAPI", &interact, &out, &outlen, &mech);
    if (rc != SASL_OK && rc != SASL_CONTINUE) {
      return fail(rc);
    }
    return std::optional<std::string>(std::string(out != nullptr ? out : "", outlen));
  }

  Result<std::string> step(std::string_view challenge) override {
    const char* out = nullptr;
    unsigned outlen = 0;
    sasl_interact_t* interact = nullptr;
    int rc = sasl_client_step(conn_, challenge.data(), static_cast<unsigned>(challenge.size()),
                              &interact, &out, &outlen);
    if (rc != SASL_OK && rc != SASL_CONTINUE) {
      return fail(rc);
    }
    return std::string(out != nullptr ? out : "", outlen);
  }

 private:
  Error fail(int rc) {
    const char* d = conn_ != nullptr ? sasl_errdetail(conn_) : nullptr;
    std::string why = d != nullptr ? d : sasl_errstring(rc, nullptr, nullptr);
    log::warn("auth", "GSSAPI to " + service_ + "/" + host_ + ": " + why);
    return transient_error("4.7.8", why);
  }

  std::string service_, host_;
  sasl_callback_t callbacks_[2];
  sasl_conn_t* conn_ = nullptr;
};

}  // namespace

std::unique_ptr<smtp::ClientSasl> make_gssapi_client(const std::string& service,
                                                     const std::string& host) {
  return std::make_unique<GssapiClient>(service, host);
}

}  // namespace bh::auth
