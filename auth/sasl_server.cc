// SaslService / SaslExchange over Cyrus SASL 2.1: see sasl_server.h.
//
// Map: process-wide init (mutexes, log, global options) -> per-exchange callbacks
// (options, password check) -> CyrusExchange (start/step and the outcome mapping).

#include "auth/sasl_server.h"

#include <sasl/sasl.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>

#include "auth/sasl_common.h"
#include "common/log.h"
#include "common/text.h"

namespace bh::auth {

namespace {

int log_cb(void*, int level, const char* message) {
  if (message == nullptr) {
    return SASL_OK;
  }
  if (level <= SASL_LOG_ERR) {
    log::warn("sasl", message);
  } else if (level <= SASL_LOG_NOTE) {
    log::info("sasl", message);
  }
  return SASL_OK;
}

// Global options, read while the plugins load: only our three mechanisms exist.
int global_getopt(void*, const char*, const char* option, const char** result, unsigned* len) {
  if (std::strcmp(option, "mech_list") == 0) {
    *result = "PLAIN LOGIN GSSAPI";
  } else if (std::strcmp(option, "log_level") == 0) {
    *result = "2";  // SASL_LOG_ERR and worse
  } else {
    return SASL_FAIL;
  }
  if (len != nullptr) {
    *len = static_cast<unsigned>(std::strlen(*result));
  }
  return SASL_OK;
}

Result<void> init_once() {
  static std::once_flag once;
  static int rc = SASL_OK;
  std::call_once(once, [] {
    use_real_mutexes();
    static sasl_callback_t callbacks[] = {
        {SASL_CB_GETOPT, as_callback(&global_getopt), nullptr},
        {SASL_CB_LOG, as_callback(&log_cb), nullptr},
        {SASL_CB_LIST_END, nullptr, nullptr}};
    rc = sasl_server_init(callbacks, "bridgehead");
  });
  if (rc != SASL_OK) {
    return permanent_error("5.7.0", std::string("sasl_server_init failed: ") +
                                        sasl_errstring(rc, nullptr, nullptr));
  }
  return {};
}

class CyrusExchange final : public SaslExchange {
 public:
  explicit CyrusExchange(SaslOptions o) : options_(std::move(o)) {
    callbacks_[0] = {SASL_CB_GETOPT, as_callback(&CyrusExchange::getopt), this};
    callbacks_[1] = {SASL_CB_LOG, as_callback(&CyrusExchange::log), this};
    callbacks_[2] = {SASL_CB_SERVER_USERDB_CHECKPASS,
                     as_callback(&CyrusExchange::checkpass), this};
    callbacks_[3] = {SASL_CB_LIST_END, nullptr, nullptr};
    if (!options_.checker) {
      callbacks_[2] = callbacks_[3];
    }
  }
  ~CyrusExchange() override {
    if (conn_ != nullptr) {
      sasl_dispose(&conn_);
    }
  }

  Result<void> open(bool tls) {
    int rc = sasl_server_new(options_.service.c_str(), options_.hostname.c_str(), realm().c_str(),
                             nullptr, nullptr, callbacks_, 0, &conn_);
    if (rc != SASL_OK) {
      return transient_error("4.7.0", std::string("sasl_server_new: ") +
                                          sasl_errstring(rc, nullptr, nullptr));
    }
    sasl_security_properties_t sec{};
    sec.min_ssf = 0;
    sec.max_ssf = 0;  // never a security layer: the SMTP stream stays as it is
    sec.maxbufsize = 0;
    // The session decides whether plaintext mechanisms are allowed (538 5.7.11); anonymous
    // logins never are.
    sec.security_flags = SASL_SEC_NOANONYMOUS;
    sasl_setprop(conn_, SASL_SEC_PROPS, &sec);
    if (tls) {
      sasl_ssf_t ext = 128;
      sasl_setprop(conn_, SASL_SSF_EXTERNAL, &ext);
    }
    return {};
  }

  const std::string& realm() const {
    return options_.realm.empty() ? options_.hostname : options_.realm;
  }

  StepResult start(std::string_view mechanism,
                   std::optional<std::string_view> initial) override {
    const char* out = nullptr;
    unsigned outlen = 0;
    std::string mech = ascii_upper(mechanism);
    int rc = sasl_server_start(conn_, mech.c_str(), initial ? initial->data() : nullptr,
                               initial ? static_cast<unsigned>(initial->size()) : 0, &out,
                               &outlen);
    return outcome(rc, out, outlen);
  }

  StepResult step(std::string_view response) override {
    const char* out = nullptr;
    unsigned outlen = 0;
    int rc = sasl_server_step(conn_, response.data(), static_cast<unsigned>(response.size()),
                              &out, &outlen);
    return outcome(rc, out, outlen);
  }

 private:
  StepResult outcome(int rc, const char* out, unsigned outlen) {
    StepResult r;
    if (rc == SASL_CONTINUE) {
      r.kind = StepResult::Kind::kContinue;
      r.challenge.assign(out != nullptr ? out : "", out != nullptr ? outlen : 0);
      return r;
    }
    if (rc == SASL_OK) {
      const void* name = nullptr;
      if (sasl_getprop(conn_, SASL_USERNAME, &name) != SASL_OK || name == nullptr) {
        r.kind = StepResult::Kind::kFailed;
        r.detail = "no user name after success";
        return r;
      }
      r.kind = StepResult::Kind::kSuccess;
      r.user = static_cast<const char*>(name);
      // Password logins come back as user@<our realm>; the user is who they typed.
      std::string suffix = "@" + realm();
      if (r.user.size() > suffix.size() &&
          r.user.compare(r.user.size() - suffix.size(), suffix.size(), suffix) == 0) {
        r.user.resize(r.user.size() - suffix.size());
      }
      return r;
    }
    const char* detail = sasl_errdetail(conn_);
    r.detail = detail != nullptr ? detail : sasl_errstring(rc, nullptr, nullptr);
    if (checker_unavailable_ || rc == SASL_UNAVAIL || rc == SASL_TRYAGAIN) {
      r.kind = StepResult::Kind::kTemporary;
    } else {
      r.kind = StepResult::Kind::kFailed;
    }
    return r;
  }

  static int getopt(void* ctx, const char*, const char* option, const char** result,
                    unsigned* len) {
    auto* self = static_cast<CyrusExchange*>(ctx);
    const std::string* v = nullptr;
    static const std::string kAuxprop = "auxprop", kSasldb = "sasldb", kNone = "none";
    if (std::strcmp(option, "pwcheck_method") == 0) {
      v = &kAuxprop;
    } else if (std::strcmp(option, "auxprop_plugin") == 0) {
      // With a checker the password is never looked up in a file.
      v = self->options_.checker || self->options_.sasldb_path.empty() ? &kNone : &kSasldb;
    } else if (std::strcmp(option, "sasldb_path") == 0 && !self->options_.sasldb_path.empty()) {
      v = &self->options_.sasldb_path;
    } else {
      return SASL_FAIL;
    }
    *result = v->c_str();
    if (len != nullptr) {
      *len = static_cast<unsigned>(v->size());
    }
    return SASL_OK;
  }

  // After the checker said no, libsasl also asks its (disabled) auxprop verifier and
  // complains that there is none: that line would only mislead an operator.
  static int log(void* ctx, int level, const char* message) {
    auto* self = static_cast<CyrusExchange*>(ctx);
    if (self->options_.checker && message != nullptr &&
        std::strncmp(message, "unknown password verifier", 25) == 0) {
      return SASL_OK;
    }
    return log_cb(nullptr, level, message);
  }

  static int checkpass(sasl_conn_t*, void* ctx, const char* user, const char* pass,
                       unsigned passlen, struct propctx*) {
    auto* self = static_cast<CyrusExchange*>(ctx);
    // libsasl hands over user@realm; the source knows the user by the name typed.
    std::string_view name = user != nullptr ? user : "";
    std::string suffix = "@" + self->realm();
    if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix) {
      name.remove_suffix(suffix.size());
    }
    auto r = self->options_.checker->check(name, std::string_view(pass != nullptr ? pass : "", passlen));
    if (r.ok()) {
      return SASL_OK;
    }
    if (r.error().transient()) {
      self->checker_unavailable_ = true;
      return SASL_UNAVAIL;
    }
    return SASL_BADAUTH;
  }

  SaslOptions options_;  // a copy: the exchange may outlive a reloaded service
  sasl_callback_t callbacks_[4];
  sasl_conn_t* conn_ = nullptr;
  bool checker_unavailable_ = false;
};

}  // namespace

SaslService::SaslService(SaslOptions options) : options_(std::move(options)) {}
SaslService::~SaslService() = default;

Result<std::shared_ptr<SaslService>> SaslService::create(SaslOptions options) {
  for (auto& m : options.mechanisms) {
    m = ascii_upper(m);
    if (m != "PLAIN" && m != "LOGIN" && m != "GSSAPI") {
      return permanent_error("5.7.0", "unsupported SASL mechanism " + m +
                                          " (PLAIN, LOGIN and GSSAPI are)");
    }
  }
  if (options.hostname.empty()) {
    return permanent_error("5.7.0", "SASL needs our host name");
  }
  auto r = init_once();
  if (!r.ok()) {
    return r.error();
  }
  return std::make_shared<SaslService>(std::move(options));
}

bool SaslService::supports(std::string_view mechanism) const {
  std::string m = ascii_upper(mechanism);
  return std::find(options_.mechanisms.begin(), options_.mechanisms.end(), m) !=
         options_.mechanisms.end();
}

Result<std::unique_ptr<SaslExchange>> SaslService::begin(bool tls) const {
  auto ex = std::make_unique<CyrusExchange>(options_);
  auto r = ex->open(tls);
  if (!r.ok()) {
    return r.error();
  }
  return std::unique_ptr<SaslExchange>(std::move(ex));
}

}  // namespace bh::auth
