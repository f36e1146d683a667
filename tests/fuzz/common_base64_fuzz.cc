// Fuzz target: the strict base64 decoder (common/base64.h). Whatever it accepts is the
// canonical encoding of what it returns (so re-encoding gives the input back byte for
// byte); base64_check() and base64_decoded_size() agree with the decoder; and the encoder's
// output of any bytes decodes to those bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/base64.h"
#include "common/result.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto d = bh::base64_decode(in);
  BH_CHECK(d.ok() == !bh::base64_check(in).has_value());
  if (d.ok()) {
    BH_CHECK(bh::base64_encode(d.bytes) == in);
    BH_CHECK(d.bytes.size() == bh::base64_decoded_size(in));
  } else {
    BH_CHECK(d.bytes.empty());
    BH_CHECK(bh::to_string(*d.error) != nullptr);
  }
  const std::string enc = bh::base64_encode(in);
  BH_CHECK(enc.size() == (size + 2) / 3 * 4);
  auto back = bh::base64_decode(enc);
  BH_CHECK(back.ok() && back.bytes == in);
  return 0;
}
