#include "auth/sasl_backend.h"

#include <algorithm>
#include <cctype>

#include <krb5.h>

#include "common/log.h"
#include "common/text.h"

namespace bh::auth {

namespace {

class CyrusSteps final : public smtp::AuthBackend::Exchange {
 public:
  CyrusSteps(const SaslAuthBackend& backend, std::unique_ptr<SaslExchange> sasl)
      : backend_(backend), sasl_(std::move(sasl)) {}

  smtp::AuthVerdict step(const smtp::AuthStep& s) override {
    StepResult r;
    if (s.first) {
      mechanism_ = s.mechanism;
      std::optional<std::string_view> initial;
      if (s.response) {
        initial = *s.response;
      }
      r = sasl_->start(s.mechanism, initial);
    } else {
      r = sasl_->step(s.response.value_or(std::string()));
    }
    smtp::AuthVerdict v;
    using K = smtp::AuthVerdict::Kind;
    switch (r.kind) {
      case StepResult::Kind::kContinue:
        v.kind = K::kContinue;
        v.challenge = std::move(r.challenge);
        break;
      case StepResult::Kind::kSuccess:
        v.kind = K::kSuccess;
        if (mechanism_ == "GSSAPI") {
          r.user = backend_.qualify_principal(r.user);
        }
        v.peer = backend_.is_peer(r.user);
        log::info("auth", "login " + r.user + (v.peer ? " (peer server)" : ""));
        v.user = std::move(r.user);
        break;
      case StepResult::Kind::kTemporary:
        v.kind = K::kTemporary;
        log::warn("auth", "temporary failure: " + r.detail);
        break;
      case StepResult::Kind::kFailed:
        v.kind = K::kFailed;
        log::info("auth", "failed: " + r.detail);
        break;
    }
    return v;
  }

 private:
  const SaslAuthBackend& backend_;
  std::unique_ptr<SaslExchange> sasl_;
  std::string mechanism_;
};

// The default realm of the Kerberos configuration (KRB5_CONFIG), or empty.
std::string default_realm() {
  krb5_context ctx = nullptr;
  if (krb5_init_context(&ctx) != 0) {
    return {};
  }
  char* realm = nullptr;
  std::string r;
  if (krb5_get_default_realm(ctx, &realm) == 0 && realm != nullptr) {
    r = realm;
    krb5_free_default_realm(ctx, realm);
  }
  krb5_free_context(ctx);
  return r;
}

}  // namespace

SaslAuthBackend::SaslAuthBackend(std::shared_ptr<SaslService> sasl,
                                 std::vector<std::string> peer_servers)
    : sasl_(std::move(sasl)) {
  for (const auto& p : peer_servers) {
    peers_.push_back(ascii_lower(p));
  }
  if (sasl_->supports("GSSAPI")) {
    realm_ = default_realm();
  }
}

std::string SaslAuthBackend::qualify_principal(const std::string& name) const {
  if (name.find('@') != std::string::npos || realm_.empty()) {
    return name;
  }
  return name + "@" + realm_;
}

bool SaslAuthBackend::is_peer(std::string_view identity) const {
  return std::find(peers_.begin(), peers_.end(), ascii_lower(identity)) != peers_.end();
}

std::unique_ptr<smtp::AuthBackend::Exchange> SaslAuthBackend::begin(bool tls) {
  auto ex = sasl_->begin(tls);
  if (!ex.ok()) {
    log::warn("auth", ex.error().message);
    return nullptr;
  }
  return std::make_unique<CyrusSteps>(*this, std::move(ex.value()));
}

}  // namespace bh::auth
