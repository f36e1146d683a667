#include "smtp/xexch50_props.h"

#include "common/text.h"
#include "proto/xexch50.pb.h"
#include "smtp/xexch50.h"

namespace bh::smtp {

namespace {

bool is_name(std::string_view s, bool may_be_empty) { return s.empty() ? may_be_empty : is_node_name(s); }

Error bad(const std::string& why) { return permanent_error("5.5.2", "XEXCH50 properties: " + why); }

}  // namespace

std::string encode_xexch50_props(const Xexch50Props& props) {
  bh::proto::XexchMessage m;
  m.set_version(1);
  m.set_organization(props.organization);
  for (const auto& h : props.hops) {
    m.add_hops(h);
  }
  m.set_categorized(props.categorized);
  std::vector<std::string> rcpts;
  rcpts.reserve(props.recipients.size());
  for (const auto& r : props.recipients) {
    bh::proto::XexchRecipient x;
    x.set_home_server(r.home_server);
    x.set_expanded(r.expanded);
    rcpts.push_back(x.SerializeAsString());
  }
  return serialize_xexch50_blob(m.SerializeAsString(), rcpts);
}

Result<Xexch50Props> decode_xexch50_props(std::string_view blob) {
  auto framed = parse_xexch50_blob(blob);
  if (!framed.ok()) {
    return bad(to_string(*framed.error));
  }
  bh::proto::XexchMessage m;
  if (!m.ParseFromArray(framed.blob.message.data(), static_cast<int>(framed.blob.message.size()))) {
    return bad("the message properties do not parse");
  }
  if (m.version() != 1 && !framed.blob.message.empty()) {  // empty: no properties
    return bad("version " + std::to_string(m.version()) + " (only 1 is known)");
  }
  if (!is_name(m.organization(), true)) {
    return bad("organization is not a name");
  }
  if (static_cast<std::size_t>(m.hops_size()) > kMaxHops) {
    return bad("more than " + std::to_string(kMaxHops) + " hops");
  }
  Xexch50Props p;
  p.organization = m.organization();
  for (const auto& h : m.hops()) {
    if (!is_name(h, false)) {
      return bad("a hop is not a node name");
    }
    p.hops.push_back(h);
  }
  p.categorized = m.categorized();
  for (auto sub : framed.blob.recipients) {
    bh::proto::XexchRecipient x;
    if (!x.ParseFromArray(sub.data(), static_cast<int>(sub.size()))) {
      return bad("recipient properties do not parse");
    }
    if (!is_name(x.home_server(), true)) {
      return bad("a home server is not a node name");
    }
    p.recipients.push_back({x.home_server(), x.expanded()});
  }
  return p;
}

bool passed_through(const Xexch50Props& props, std::string_view node) {
  const std::string n = ascii_lower(node);
  for (const auto& h : props.hops) {
    if (ascii_lower(h) == n) {
      return true;
    }
  }
  return false;
}

}  // namespace bh::smtp
