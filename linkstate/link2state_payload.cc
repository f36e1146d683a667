#include "linkstate/link2state_payload.h"

#include <utility>

namespace bh::linkstate {

namespace {

std::string digest_bytes(const Hash& h) {
  return std::string(reinterpret_cast<const char*>(h.data()), h.size());
}

Error bad(std::string what) {
  return permanent_error("", "X-LINK2STATE payload: " + std::move(what));
}

}  // namespace

std::string link2state_digest(const Snapshot& snapshot, const std::string& organization) {
  proto::LsLink2State m;
  m.set_protocol(proto::LS_PROTOCOL_V1);
  m.set_organization(organization);
  m.mutable_digest()->set_sha256(digest_bytes(snapshot.digest()));
  return m.SerializeAsString();
}

std::string link2state_table(const Snapshot& snapshot, const std::string& organization) {
  proto::LsLink2State m;
  m.set_protocol(proto::LS_PROTOCOL_V1);
  m.set_organization(organization);
  *m.mutable_org_info() = to_org_info(snapshot, organization);
  return m.SerializeAsString();
}

Result<Link2StateOutcome> handle_link2state(LinkStateDb& db, std::string_view payload,
                                            const std::string& organization,
                                            const TableLimits& limits) {
  proto::LsLink2State m;
  if (!m.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return bad("not a link-state message");
  }
  if (m.protocol() != proto::LS_PROTOCOL_V1) {
    return bad("unsupported protocol version " + std::to_string(m.protocol()));
  }
  if (m.organization() != organization) {
    return bad("another organization");
  }
  Link2StateOutcome out;
  std::string their_digest;
  switch (m.body_case()) {
    case proto::LsLink2State::kDigest:
      their_digest = m.digest().sha256();
      break;
    case proto::LsLink2State::kOrgInfo: {
      const auto& info = m.org_info();
      if (info.organization() != organization) {
        return bad("OrgInfo of another organization");
      }
      auto groups = from_org_info(info, limits);
      if (!groups) {
        return groups.error();
      }
      const Hash claimed =
          table_digest(*groups, [](const RoutingGroup& g) -> const RoutingGroup& { return g; });
      if (info.digest() != digest_bytes(claimed)) {
        return bad("OrgInfo digest does not match its content");
      }
      out.applied = db.apply_all(*groups).applied;
      auto snap = db.snapshot();
      if (has_news_for(*snap, *groups)) {
        out.reply = link2state_table(*snap, organization);
      }
      return out;
    }
    case proto::LsLink2State::BODY_NOT_SET:
      return bad("neither a digest nor a table");
  }
  auto snap = db.snapshot();
  if (their_digest != digest_bytes(snap->digest())) {
    out.reply = link2state_table(*snap, organization);
  }
  return out;
}

}  // namespace bh::linkstate
