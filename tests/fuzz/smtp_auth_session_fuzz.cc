// Fuzz target: AUTH / X-EXPS / ATRN in the inbound session (base64 decoding of initial
// responses and responses, the exchange state machine, the 12288-octet AUTH lines next to
// the 512-octet command limit, STARTTLS forgetting a login), against the harness's SASL
// twin (tests/smtp/session_harness.cc). Control byte data[0]:
//   bit 0  PLAIN/LOGIN allowed before TLS    bit 1  submission (MAIL needs AUTH)
//   bit 2  late answers (as in smtp_command_parser)
//   bits 3-7  piece size - 1 (1..32)
// Invariants (BH_CHECK aborts): a logged-in session has sent 235; peer rights only with a
// login; nothing queued without a 250; with submission, no message without a login.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tests/smtp/session_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace bh::smtp;
  if (size == 0) {
    return 0;
  }
  SessionConfig cfg;
  cfg.max_message_size = 4096;
  cfg.max_header_bytes = 1024;
  cfg.max_recipients = 5;
  cfg.max_errors = 50;
  cfg.max_buffered_input = 2048;
  cfg.starttls = true;
  cfg.auth_mechanisms = {"GSSAPI", "PLAIN", "LOGIN"};
  cfg.auth_requires_tls = (data[0] & 1) == 0;
  cfg.require_auth = (data[0] & 2) != 0;
  cfg.atrn = true;
  cfg.turn = true;
  testing::HarnessOptions opt;
  opt.deferred = (data[0] & 4) != 0;
  testing::Harness h(cfg, opt);
  h.start();
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::size_t piece = 1 + (data[0] >> 3);
  h.feed_pieces(in, piece, opt.deferred);
  const auto& o = h.outcome();
  const auto& s = h.session();
  BH_CHECK(s.authenticated_user().empty() || o.replies.find("\r\n235 2.7.0 ") != std::string::npos);
  BH_CHECK(!s.peer_rights() || !s.authenticated_user().empty());
  BH_CHECK(o.replies.find("[BODY WITHOUT SPOOL]") == std::string::npos);
  BH_CHECK(o.replies.find("[COMMIT WITHOUT SPOOL]") == std::string::npos);
  std::size_t queued = 0;
  for (std::size_t p = o.replies.find("250 2.0.0 Ok: queued as "); p != std::string::npos;
       p = o.replies.find("250 2.0.0 Ok: queued as ", p + 1)) {
    ++queued;
  }
  BH_CHECK(queued == o.messages.size());
  BH_CHECK(!cfg.require_auth || o.messages.empty() || o.replies.find("235 2.7.0") != std::string::npos);
  return 0;
}
