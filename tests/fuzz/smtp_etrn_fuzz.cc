// Fuzz target: ETRN (smtp/etrn.h). Input: one knob octet, then the argument.
// 1. An accepted argument gives a non-empty lower-case printable name; parsing the node
//    as the client would see it gives the same request; every reply is one line.
// 2. The rate limiter, driven by the remaining octets (client choice and clock steps),
//    never remembers more than max_clients addresses and never lets one client through
//    more than max_requests times in one window.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "smtp/etrn.h"

namespace {

using namespace bh::smtp;

void check_reply(const EtrnReply& r) {
  BH_CHECK(r.code == 250 || r.code == 251 || r.code == 458 || r.code == 459);
  BH_CHECK(r.enhanced.size() == 5 && r.enhanced[0] == static_cast<char>('0' + r.code / 100));
  BH_CHECK(r.text.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::uint8_t knobs = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  auto r = parse_etrn(in);
  if (r.ok()) {
    const EtrnRequest& q = *r;
    BH_CHECK(!q.name.empty() && q.name.size() <= 255);
    for (char c : q.name) {
      BH_CHECK(static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f);
      BH_CHECK(!(c >= 'A' && c <= 'Z'));
    }
    auto again = parse_etrn(q.node());
    BH_CHECK(again.ok() && again->kind == q.kind && again->name == q.name);
    for (auto o : {EtrnOutcome::kStarted, EtrnOutcome::kNothingQueued, EtrnOutcome::kUnable,
                   EtrnOutcome::kNotAllowed}) {
      EtrnResult res;
      res.outcome = o;
      res.reason = std::string(in.substr(0, 20));
      check_reply(etrn_reply(q, res));
    }
    check_reply(etrn_rate_limited_reply(q));
  } else {
    BH_CHECK(r.error().enhanced == "5.5.4" && !r.error().transient());
  }

  bh::ManualClock clock;
  EtrnRateLimits lim;
  lim.max_requests = 1 + knobs % 4;
  lim.window = std::chrono::seconds(60);
  lim.max_clients = 1 + (knobs >> 4);
  EtrnRateLimiter rl(clock, lim);
  // Per client: times of the calls let through, to check the window.
  std::map<std::string, std::vector<bh::Clock::time_point>> passed;
  for (unsigned char c : in) {
    clock.advance(std::chrono::seconds(c >> 4));
    const std::string client = "192.0.2." + std::to_string(c & 0x0f);
    if (rl.allow(client)) {
      auto& v = passed[client];
      v.push_back(clock.now());
      // Unless the client was forgotten meanwhile (more clients than max_clients), at
      // most max_requests of its calls fall in any one window.
      if (lim.max_clients >= 16 && v.size() > lim.max_requests) {
        BH_CHECK(v.back() - v[v.size() - 1 - lim.max_requests] >= lim.window);
      }
    }
    BH_CHECK(rl.clients() <= lim.max_clients);
  }
  return 0;
}
