// Fuzz target: the X-LINK2STATE payload (linkstate/link2state_payload.h), i.e. what the
// chunk machine of smtp/link2state.h hands over once a peer's LAST chunk is in. Input:
// one knob octet, then the payload.
// 1. A refused payload leaves the table exactly as it was (same digest).
// 2. An accepted one leaves a table within the limits, and a reply is itself a payload
//    that a node with an empty table accepts and adopts entirely.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/clock.h"
#include "common/result.h"
#include "linkstate/link2state_payload.h"

using namespace bh::linkstate;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::uint8_t knobs = data[0];
  const std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);

  TableLimits limits;
  limits.max_groups = (knobs & 1) ? 20000 : 4;
  limits.max_connectors = (knobs & 2) ? 256 : 2;
  bh::ManualClock clock;
  LinkStateDb db(clock, DbOptions{std::chrono::milliseconds(0), limits});
  if (knobs & 4) {
    RoutingGroup a;
    a.name = "A";
    a.version = {static_cast<std::uint64_t>(knobs >> 4), 0, 0};
    BH_CHECK(db.apply(a).ok());
  }
  const Hash before = db.snapshot()->digest();
  auto r = handle_link2state(db, payload, "org", limits);
  if (!r.ok()) {
    BH_CHECK(db.snapshot()->digest() == before);
    return 0;
  }
  BH_CHECK(db.snapshot()->groups().size() <= limits.max_groups);
  if (r->reply) {
    LinkStateDb empty(clock, DbOptions{std::chrono::milliseconds(0), limits});
    auto back = handle_link2state(empty, *r->reply, "org", limits);
    BH_CHECK(back.ok());
    BH_CHECK(empty.snapshot()->digest() == db.snapshot()->digest());
  }
  return 0;
}
