// Fuzz target: the whole inbound SMTP state machine (command parser, parameters,
// addresses, DATA/BDAT readers), fed through the in-memory harness in pieces whose
// sizes come from the input itself.
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
  cfg.vrfy = (data[0] & 1) != 0;
  cfg.max_errors = 50;
  testing::Harness h(cfg);
  h.start();
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::size_t piece = 1 + data[0] % 64;
  for (std::size_t i = 0; i < in.size() && !h.session().closed(); i += piece) {
    h.feed(in.substr(i, piece));
  }
  if (!h.session().closed() && (data[0] & 2) != 0) {
    h.timeout();
  }
  BH_CHECK(h.outcome().messages.size() <= in.size());
  return 0;
}
