// Fuzz target: the TCP 691 frame decoder and table conversion (linkstate/wire.h) and a
// master PeerSession (linkstate/session.h). Input: one knob octet, then the byte stream
// a peer sends.
// 1. The decoder, fed in pieces whose size the knob picks, never buffers more than the
//    length prefix plus max_frame, never consumes more than it was given, stays failed
//    once failed, and every OrgInfo it yields either fails validation or round-trips
//    through to_proto/from_proto to the same canonical encoding.
// 2. A master session fed the same bytes never grows the table beyond its limits; once
//    closed, more bytes change neither the table nor the output.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/result.h"
#include "linkstate/session.h"
#include "linkstate/wire.h"

namespace {

using namespace bh::linkstate;

void check_org_info(const bh::proto::LsOrgInfo& info, const TableLimits& limits) {
  auto groups = from_org_info(info, limits);
  if (!groups) {
    return;
  }
  BH_CHECK(groups->size() <= limits.max_groups);
  for (const auto& g : *groups) {
    auto back = from_proto(to_proto(g), limits);
    BH_CHECK(back.ok());
    BH_CHECK(canonical_encoding(*back) == canonical_encoding(g));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::uint8_t knobs = data[0];
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  WireLimits limits;
  limits.max_frame = (knobs & 1) ? (64u << 10) : 64 + knobs * 4u;
  limits.table.max_groups = (knobs & 2) ? 20000 : 8;
  const std::size_t piece = 1 + (knobs >> 4);

  FrameDecoder decoder(limits);
  std::string_view rest = in;
  bool failed = false;
  while (!rest.empty()) {
    const std::string_view chunk = rest.substr(0, piece);
    std::string_view left = chunk;
    while (!left.empty()) {
      auto step = decoder.feed(left);
      BH_CHECK(step.consumed <= left.size());
      BH_CHECK(decoder.buffered() <= 4 + limits.max_frame);
      BH_CHECK(!failed || (step.status != FrameStatus::kFrame && step.consumed == 0));
      left.remove_prefix(step.consumed);
      if (step.status == FrameStatus::kFrame) {
        if (step.frame.has_org_info()) {
          check_org_info(step.frame.org_info(), limits.table);
        }
      } else if (step.status != FrameStatus::kNeedMore) {
        failed = true;
        BH_CHECK(decoder.failed());
        break;
      } else {
        BH_CHECK(left.empty());
      }
    }
    if (failed) {
      break;
    }
    rest.remove_prefix(chunk.size());
  }

  bh::ManualClock clock;
  LinkStateDb db(clock, DbOptions{std::chrono::milliseconds(0), limits.table});
  SessionOptions o;
  o.organization = "org";
  o.node = "m";
  o.routing_group = "A";
  o.role = Role::kMaster;
  o.expected_peer = "x";
  o.limits = limits;
  PeerSession master(db, clock, o);
  rest = in;
  while (!rest.empty() && !master.closed()) {
    const std::string_view chunk = rest.substr(0, piece);
    master.on_bytes(chunk);
    rest.remove_prefix(chunk.size());
    BH_CHECK(db.snapshot()->groups().size() <= limits.table.max_groups);
    (void)master.take_output();
  }
  if (master.closed()) {
    const auto gen = db.snapshot()->generation();
    master.on_bytes(in);
    master.on_tick();
    BH_CHECK(db.snapshot()->generation() == gen);
    BH_CHECK(master.take_output().empty());
  }
  return 0;
}
