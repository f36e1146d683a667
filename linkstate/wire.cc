#include "linkstate/wire.h"

#include <algorithm>
#include <chrono>

namespace bh::linkstate {

namespace {

Error bad(const std::string& what) { return permanent_error("", "link-state entry: " + what); }

// Unix milliseconds up to the year 2100: anything else is not a time we wrote.
constexpr std::int64_t kMaxMillis = 4'102'444'800'000;

}  // namespace

proto::LsRoutingGroup to_proto(const RoutingGroup& g) {
  proto::LsRoutingGroup out;
  out.set_name(g.name);
  out.set_master(g.master);
  for (const auto& m : g.members) {
    out.add_members(m);
  }
  out.mutable_version()->set_major(g.version.major);
  out.mutable_version()->set_minor(g.version.minor);
  out.mutable_version()->set_user(g.version.user);
  for (const auto& c : g.connectors) {
    auto* pc = out.add_connectors();
    pc->set_id(c.id);
    pc->set_target_group(c.target_group);
    pc->set_cost(static_cast<std::uint32_t>(c.cost));
    for (const auto& s : c.sources) {
      auto* ps = pc->add_sources();
      ps->set_node(s.node);
      ps->set_up(s.up);
    }
    for (const auto& t : c.target_bridgeheads) {
      pc->add_target_bridgeheads(t);
    }
    for (const auto& a : c.address_spaces) {
      auto* pa = pc->add_address_spaces();
      pa->set_pattern(a.space.str());
      pa->set_cost(static_cast<std::uint32_t>(a.cost));
    }
    pc->set_changed_at_ms(
        std::chrono::duration_cast<std::chrono::milliseconds>(c.changed_at.time_since_epoch())
            .count());
  }
  return out;
}

Result<RoutingGroup> from_proto(const proto::LsRoutingGroup& pg, const TableLimits& limits) {
  // Counts first: nothing is copied out of an oversized entry.
  if (static_cast<std::size_t>(pg.members_size()) > limits.max_members ||
      static_cast<std::size_t>(pg.connectors_size()) > limits.max_connectors) {
    return bad("routing group \"" + printable(pg.name()) + "\": too many members or connectors");
  }
  RoutingGroup g;
  g.name = pg.name();
  g.master = pg.master();
  g.members.assign(pg.members().begin(), pg.members().end());
  g.version = Version{pg.version().major(), pg.version().minor(), pg.version().user()};
  g.connectors.reserve(static_cast<std::size_t>(pg.connectors_size()));
  for (const auto& pc : pg.connectors()) {
    if (static_cast<std::size_t>(pc.sources_size()) > limits.max_bridgeheads ||
        static_cast<std::size_t>(pc.target_bridgeheads_size()) > limits.max_bridgeheads ||
        static_cast<std::size_t>(pc.address_spaces_size()) > limits.max_address_spaces) {
      return bad("connector \"" + printable(pc.id()) + "\": too many bridgeheads or spaces");
    }
    if (pc.cost() < routing::kMinCost || pc.cost() > routing::kMaxCost) {
      return bad("connector \"" + printable(pc.id()) + "\": cost outside 1..100");
    }
    if (pc.changed_at_ms() < 0 || pc.changed_at_ms() > kMaxMillis) {
      return bad("connector \"" + printable(pc.id()) + "\": changed_at out of range");
    }
    Connector c;
    c.id = pc.id();
    c.target_group = pc.target_group();
    c.cost = static_cast<int>(pc.cost());
    for (const auto& s : pc.sources()) {
      c.sources.push_back({s.node(), s.up()});
    }
    c.target_bridgeheads.assign(pc.target_bridgeheads().begin(), pc.target_bridgeheads().end());
    for (const auto& a : pc.address_spaces()) {
      if (a.cost() < routing::kMinCost || a.cost() > routing::kMaxCost) {
        return bad("connector \"" + printable(c.id) + "\": address space cost outside 1..100");
      }
      auto space = routing::AddressSpace::parse(a.pattern());
      if (!space) {
        return bad("connector \"" + printable(c.id) + "\": invalid address space \"" +
                   printable(a.pattern()) + "\"");
      }
      c.address_spaces.push_back({std::move(space).value(), static_cast<int>(a.cost())});
    }
    c.changed_at = Clock::time_point{std::chrono::milliseconds(pc.changed_at_ms())};
    g.connectors.push_back(std::move(c));
  }
  return normalize(std::move(g), limits);
}

proto::LsOrgInfo to_org_info(const Snapshot& snapshot, const std::string& organization) {
  proto::LsOrgInfo out;
  out.set_organization(organization);
  for (const auto& [name, g] : snapshot.groups()) {
    *out.add_groups() = to_proto(*g);
  }
  out.set_digest(std::string(reinterpret_cast<const char*>(snapshot.digest().data()),
                             snapshot.digest().size()));
  return out;
}

Result<std::vector<RoutingGroup>> from_org_info(const proto::LsOrgInfo& info,
                                                const TableLimits& limits) {
  if (static_cast<std::size_t>(info.groups_size()) > limits.max_groups) {
    return bad("OrgInfo with more than " + std::to_string(limits.max_groups) + " routing groups");
  }
  std::vector<RoutingGroup> out;
  out.reserve(static_cast<std::size_t>(info.groups_size()));
  for (const auto& pg : info.groups()) {
    auto g = from_proto(pg, limits);
    if (!g) {
      return g.error();
    }
    out.push_back(std::move(g).value());
  }
  std::sort(out.begin(), out.end(),
            [](const RoutingGroup& a, const RoutingGroup& b) { return a.name < b.name; });
  for (std::size_t i = 1; i < out.size(); ++i) {
    if (out[i - 1].name == out[i].name) {
      return bad("routing group \"" + out[i].name + "\" twice in one OrgInfo");
    }
  }
  return out;
}

Result<std::string> encode_frame(const proto::LsFrame& frame, const WireLimits& limits) {
  const std::size_t size = frame.ByteSizeLong();
  if (size > limits.max_frame) {
    return permanent_error("", "link-state frame of " + std::to_string(size) +
                                   " octets over the cap of " + std::to_string(limits.max_frame));
  }
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>((size >> (8 * (3 - i))) & 0xff);
  }
  BH_CHECK(frame.AppendToString(&out));
  return out;
}

const char* to_string(FrameStatus s) {
  switch (s) {
    case FrameStatus::kNeedMore:
      return "need-more";
    case FrameStatus::kFrame:
      return "frame";
    case FrameStatus::kTooLarge:
      return "frame too large";
    case FrameStatus::kMalformed:
      return "malformed frame";
    case FrameStatus::kBadVersion:
      return "unsupported protocol version";
  }
  return "?";
}

FrameDecoder::FrameDecoder(WireLimits limits) : limits_(std::move(limits)) {}

FrameDecoder::Step FrameDecoder::fail(FrameStatus s, std::size_t consumed) {
  failed_ = s;
  header_.clear();
  body_.clear();
  body_.shrink_to_fit();
  Step step;
  step.status = s;
  step.consumed = consumed;
  return step;
}

FrameDecoder::Step FrameDecoder::feed(std::string_view in) {
  if (failed()) {
    return Step{failed_, 0, {}};
  }
  std::size_t used = 0;
  if (header_.size() < 4) {
    const std::size_t take = std::min(in.size(), 4 - header_.size());
    header_.append(in.substr(0, take));
    used += take;
    if (header_.size() < 4) {
      return Step{FrameStatus::kNeedMore, used, {}};
    }
    length_ = 0;
    for (char c : header_) {
      length_ = (length_ << 8) | static_cast<std::uint8_t>(c);
    }
    if (length_ > limits_.max_frame) {
      return fail(FrameStatus::kTooLarge, used);
    }
  }
  const std::size_t take = std::min(in.size() - used, length_ - body_.size());
  body_.append(in.substr(used, take));
  used += take;
  if (body_.size() < length_) {
    return Step{FrameStatus::kNeedMore, used, {}};
  }
  Step step;
  step.consumed = used;
  if (!step.frame.ParseFromString(body_)) {
    return fail(FrameStatus::kMalformed, used);
  }
  if (step.frame.body_case() == proto::LsFrame::BODY_NOT_SET) {
    return fail(FrameStatus::kMalformed, used);
  }
  if (step.frame.protocol() != proto::LS_PROTOCOL_V1) {
    return fail(FrameStatus::kBadVersion, used);
  }
  header_.clear();
  body_.clear();
  step.status = FrameStatus::kFrame;
  return step;
}

}  // namespace bh::linkstate
