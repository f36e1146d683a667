// Fuzz target: DataReader. Properties checked: fed whole or in pieces the output is
// identical; only CRLF.CRLF ends the body; output never exceeds the cap.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "smtp/data_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using bh::smtp::DataReader;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  DataReader whole(512, 256);
  std::string out1;
  auto s1 = whole.feed(in, out1);
  DataReader pieces(512, 256);
  std::string out2;
  std::size_t used = 0;
  bool done = false;
  std::size_t piece = size == 0 ? 1 : 1 + data[0] % 7;
  while (used < in.size() && !done) {
    auto s = pieces.feed(in.substr(used, std::min(piece, in.size() - used)), out2);
    used += s.consumed;
    done = s.done;
  }
  BH_CHECK(out1 == out2);
  BH_CHECK(s1.done == done);
  BH_CHECK(s1.consumed == used);
  BH_CHECK(out1.size() <= 512);
  if (s1.done) {
    BH_CHECK(s1.consumed >= 3 && in.substr(s1.consumed - 3, 3) == ".\r\n");
    BH_CHECK(s1.consumed == 3 || in.substr(s1.consumed - 5, 2) == "\r\n");
  }
  return 0;
}
