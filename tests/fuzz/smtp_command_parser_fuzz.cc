// Fuzz target: the whole inbound SMTP state machine (line reader, command parser,
// parameters, addresses, DATA/BDAT readers), fed through the in-memory harness in pieces
// whose sizes come from the input itself. Control byte data[0]:
//   bit 0  VRFY enabled          bit 1  a timeout at the end
//   bit 2  late answers: the directory/store answers are held and given only every
//          other piece, so input arrives while an answer is outstanding
//   bits 3-7  piece size - 1 (1..32)
// Invariants (BH_CHECK aborts): no body octet without an open spool, no commit without
// one, nothing committed without a 250, bounded input buffering.
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
  cfg.vrfy = (data[0] & 1) != 0;
  cfg.max_errors = 50;
  cfg.max_buffered_input = 2048;
  testing::HarnessOptions opt;
  opt.deferred = (data[0] & 4) != 0;
  testing::Harness h(cfg, opt);
  h.start();
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::size_t piece = 1 + (data[0] >> 3);
  h.feed_pieces(in, piece, opt.deferred);
  if (!h.session().closed() && (data[0] & 2) != 0) {
    h.timeout();
  }
  const auto& o = h.outcome();
  BH_CHECK(o.replies.find("[BODY WITHOUT SPOOL]") == std::string::npos);
  BH_CHECK(o.replies.find("[COMMIT WITHOUT SPOOL]") == std::string::npos);
  BH_CHECK(o.messages.size() <= in.size());
  std::size_t queued = 0;
  for (std::size_t p = o.replies.find("250 2.0.0 Ok: queued as "); p != std::string::npos;
       p = o.replies.find("250 2.0.0 Ok: queued as ", p + 1)) {
    ++queued;
  }
  BH_CHECK(queued == o.messages.size());
  return 0;
}
