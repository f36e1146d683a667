#pragma once
// The link-state wire format (DESIGN.md §4.2, docs/linkstate-protocol.md), sans I/O:
// conversions between the table (linkstate/table.h) and proto/linkstate.proto, and the
// 691 frame codec: 4 octets big-endian length, then one serialized bh.proto.LsFrame.
//
// Trust: every byte comes from a peer. The decoder checks, in this order, each a final
// error for the session (it stays failed; the adapter drops the connection):
//   kTooLarge    the declared length is over max_frame: refused from the 4-octet
//                header, before anything of the body is read or allocated
//   kMalformed   not a protobuf LsFrame, or no body
//   kBadVersion  protocol is not LS_PROTOCOL_V1
// Memory is bounded by max_frame per session (plus protobuf's in-memory expansion of
// what fits in it). Table contents are checked by from_proto(): counts against
// TableLimits before anything is copied, costs, timestamps, address-space syntax, then
// normalize(); one bad entry refuses the whole OrgInfo, so a forged frame changes nothing.
// Errors are permanent with an empty enhanced code. Threading: one decoder per session.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "linkstate/database.h"
#include "linkstate/table.h"
#include "proto/linkstate.pb.h"

namespace bh::linkstate {

struct WireLimits {
  std::size_t max_frame = 4u << 20;  // octets after the length prefix
  TableLimits table;
};

proto::LsRoutingGroup to_proto(const RoutingGroup& group);
Result<RoutingGroup> from_proto(const proto::LsRoutingGroup& group, const TableLimits& limits);

// The whole table of `snapshot`, with its digest.
proto::LsOrgInfo to_org_info(const Snapshot& snapshot, const std::string& organization);
// Every entry, all or nothing (the first bad entry is the error).
Result<std::vector<RoutingGroup>> from_org_info(const proto::LsOrgInfo& info,
                                                const TableLimits& limits);

// The length prefix and the serialized frame; permanent error when the frame is over
// limits.max_frame (the peer would refuse it).
Result<std::string> encode_frame(const proto::LsFrame& frame, const WireLimits& limits = {});

enum class FrameStatus { kNeedMore, kFrame, kTooLarge, kMalformed, kBadVersion };
const char* to_string(FrameStatus s);

class FrameDecoder {
 public:
  explicit FrameDecoder(WireLimits limits = {});

  struct Step {
    FrameStatus status = FrameStatus::kNeedMore;
    std::size_t consumed = 0;  // octets of the input used; the rest belongs to the next call
    proto::LsFrame frame;      // kFrame only
  };
  // Reads from `in` until one frame is complete or `in` is used up. After an error every
  // later call returns the same error and consumes nothing.
  Step feed(std::string_view in);

  bool failed() const { return failed_ != FrameStatus::kNeedMore; }
  std::size_t buffered() const { return header_.size() + body_.size(); }

 private:
  Step fail(FrameStatus s, std::size_t consumed);

  WireLimits limits_;
  std::string header_;  // up to 4 octets
  std::uint32_t length_ = 0;
  std::string body_;
  FrameStatus failed_ = FrameStatus::kNeedMore;
};

}  // namespace bh::linkstate
