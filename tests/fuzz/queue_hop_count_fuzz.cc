// Fuzz target: the Received-field counter (queue/hop_count.h), fed a whole message from
// the network. Feeding the same bytes in arbitrary pieces must give the same count as
// one call; the count never exceeds the number of lines; the cap is honoured.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "queue/hop_count.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  bh::queue::HopCountLimits lim;
  lim.max_octets = 4096;  // small, so the fuzzer reaches the cap
  auto whole = bh::queue::count_received(in, lim);

  // Split points derived from the input itself, so the fuzzer explores them too.
  bh::queue::ReceivedCounter pieces(lim);
  std::size_t pos = 0;
  std::size_t step = size == 0 ? 1 : (static_cast<std::uint8_t>(in[0]) % 7) + 1;
  while (pos < size) {
    pieces.feed(in.substr(pos, step));
    pos += step;
    step = step % 5 + 1;
  }
  const auto& p = pieces.result();
  BH_CHECK(p.received == whole.received);
  BH_CHECK(p.end_of_headers == whole.end_of_headers);
  BH_CHECK(p.truncated == whole.truncated);
  BH_CHECK(!(whole.end_of_headers && whole.truncated));

  std::size_t lines = 1;
  for (char c : in.substr(0, lim.max_octets)) {
    lines += c == '\n' ? 1 : 0;
  }
  BH_CHECK(whole.received <= lines);
  if (size <= lim.max_octets) {
    BH_CHECK(!whole.truncated);
  }

  lim.stop_after = 3;
  auto capped = bh::queue::count_received(in, lim);
  BH_CHECK(capped.received <= 3);
  BH_CHECK(capped.received == (whole.received < 3 ? whole.received : 3));
  (void)bh::queue::hop_limit_check(whole.received);
  return 0;
}
