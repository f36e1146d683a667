// Fuzz target: the X-LINK2STATE chunk machine (smtp/link2state.h). Input: one knob octet,
// then command arguments separated by LF, fed one by one.
// 1. Whatever arrives, the partial payload never exceeds the cap, every error leaves the
//    machine reset (no sequence open, nothing buffered), a completed payload is within
//    the cap, and a chunk that is not FIRST never opens a sequence.
// 2. The splitter's lines for the input bytes (as a payload) each fit in 1024 octets with
//    CRLF and reassemble to exactly those bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "smtp/link2state.h"

namespace {

using namespace bh::smtp;

bool starts_with_first(std::string_view s) {
  if (s.size() < 6) {
    return false;
  }
  for (std::size_t i = 0; i < 6; ++i) {
    const char c = (s[i] >= 'a' && s[i] <= 'z') ? static_cast<char>(s[i] - 'a' + 'A') : s[i];
    if (c != "FIRST "[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::uint8_t knobs = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  Link2StateLimits lim;
  lim.accept_lone_chunk = knobs & 1;
  lim.max_payload = (knobs & 2) ? (256u << 10) : 16 + knobs % 64;
  lim.max_chunks = (knobs & 4) ? 1024 : 1 + knobs % 5;
  Link2StateReceiver r(lim);
  std::size_t pos = 0;
  while (pos <= in.size()) {
    std::size_t lf = in.find('\n', pos);
    std::string_view line = in.substr(pos, lf == std::string_view::npos ? in.npos : lf - pos);
    const bool was_open = r.in_sequence();
    auto step = r.feed(line);
    BH_CHECK(r.buffered() <= lim.max_payload);
    BH_CHECK(r.chunks() <= lim.max_chunks);
    switch (step.status) {
      case Link2StateStatus::kAccepted:
        BH_CHECK(r.in_sequence() && step.payload.empty());
        BH_CHECK(was_open || starts_with_first(line));  // only FIRST opens one
        break;
      case Link2StateStatus::kComplete:
        BH_CHECK(!r.in_sequence() && r.buffered() == 0);
        BH_CHECK(step.payload.size() <= lim.max_payload);
        BH_CHECK(was_open || lim.accept_lone_chunk);
        break;
      default:
        BH_CHECK(!r.in_sequence() && r.buffered() == 0 && r.chunks() == 0 && step.payload.empty());
        BH_CHECK(reply_code(step.status) >= 500);
        break;
    }
    if (lf == std::string_view::npos) {
      break;
    }
    pos = lf + 1;
  }

  Link2StateLimits out;
  out.accept_lone_chunk = knobs & 8;
  auto lines = split_link2state(in, out);
  BH_CHECK(lines.ok());  // the fuzzer's inputs are far below 256 KiB
  Link2StateReceiver back(out);
  Link2StateReceiver::Step last;
  for (const auto& l : *lines) {
    BH_CHECK(l.size() + 2 <= out.max_line);
    BH_CHECK(l.compare(0, 13, "X-LINK2STATE ") == 0);
    last = back.feed(std::string_view(l).substr(13));
  }
  BH_CHECK(last.status == Link2StateStatus::kComplete && last.payload == in);
  return 0;
}
