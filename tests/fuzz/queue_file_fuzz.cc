// Fuzz target: the queue file envelope decoder (a file on disk is untrusted after a
// crash or by tampering). Whatever decodes must re-encode to something that decodes to
// the same envelope.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "queue/queue_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto e = bh::queue::decode_envelope(in);
  if (e.ok()) {
    auto again = bh::queue::decode_envelope(bh::queue::encode_envelope(e.value()));
    BH_CHECK(again.ok());
    BH_CHECK(again->recipients.size() == e->recipients.size());
    BH_CHECK(again->sender == e->sender);
  }
  return 0;
}
