#include "linkstate/session.h"

#include <algorithm>
#include <utility>

namespace bh::linkstate {

namespace {

std::string digest_bytes(const Hash& h) {
  return std::string(reinterpret_cast<const char*>(h.data()), h.size());
}

}  // namespace

PeerSession::PeerSession(LinkStateDb& db, const Clock& clock, SessionOptions options)
    : db_(db),
      clock_(clock),
      options_(std::move(options)),
      decoder_(options_.limits),
      last_rx_(clock.now()),
      last_tx_(clock.now()) {}

void PeerSession::start() {
  if (options_.role == Role::kMember && state_ == SessionState::kAwaitHello && tx_sequence_ == 0) {
    send_hello();
  }
}

void PeerSession::on_bytes(std::string_view in) {
  while (!in.empty() && !closed()) {
    auto step = decoder_.feed(in);
    in.remove_prefix(step.consumed);
    if (step.status == FrameStatus::kNeedMore) {
      break;
    }
    if (step.status != FrameStatus::kFrame) {
      return close(to_string(step.status));
    }
    handle(step.frame);
  }
}

void PeerSession::on_tick() {
  if (closed()) {
    return;
  }
  const auto now = clock_.now();
  if (now - last_rx_ >= options_.dead_after) {
    return close(state_ == SessionState::kAwaitHello ? "no Hello from the peer" : "peer dead");
  }
  if (state_ == SessionState::kOpen && now - last_tx_ >= options_.keepalive) {
    proto::LsFrame f;
    f.mutable_keepalive();
    send(std::move(f));
  }
}

std::optional<Clock::time_point> PeerSession::next_deadline() const {
  if (closed()) {
    return std::nullopt;
  }
  auto next = last_rx_ + options_.dead_after;
  if (state_ == SessionState::kOpen) {
    next = std::min(next, last_tx_ + options_.keepalive);
  }
  return next;
}

void PeerSession::table_changed() {
  if (state_ != SessionState::kOpen) {
    return;
  }
  if (options_.role == Role::kMaster) {
    send_org_info();
  } else {
    send_digest();
  }
}

bool PeerSession::send_state_change(std::string_view group, std::string_view connector, bool up) {
  if (state_ != SessionState::kOpen || options_.role != Role::kMember) {
    return false;
  }
  proto::LsFrame f;
  auto* c = f.mutable_state_change();
  c->set_routing_group(std::string(group));
  c->set_connector(std::string(connector));
  c->set_node(options_.node);
  c->set_up(up);
  send(std::move(f));
  return !closed();
}

std::string PeerSession::take_output() { return std::exchange(out_, {}); }

void PeerSession::close(std::string reason) {
  if (closed()) {
    return;
  }
  state_ = SessionState::kClosed;
  close_reason_ = std::move(reason);
}

void PeerSession::send(proto::LsFrame frame) {
  if (closed()) {
    return;
  }
  frame.set_protocol(proto::LS_PROTOCOL_V1);
  frame.set_sequence(tx_sequence_ + 1);
  auto bytes = encode_frame(frame, options_.limits);
  if (!bytes) {
    return close(bytes.error().message);
  }
  ++tx_sequence_;
  out_ += *bytes;
  last_tx_ = clock_.now();
}

void PeerSession::send_hello() {
  proto::LsFrame f;
  auto* h = f.mutable_hello();
  h->set_protocol(proto::LS_PROTOCOL_V1);
  h->set_node(options_.node);
  h->set_organization(options_.organization);
  h->set_routing_group(options_.routing_group);
  h->set_role(options_.role == Role::kMaster ? proto::LS_ROLE_MASTER : proto::LS_ROLE_MEMBER);
  send(std::move(f));
}

void PeerSession::send_digest() {
  proto::LsFrame f;
  f.mutable_digest()->set_sha256(digest_bytes(db_.snapshot()->digest()));
  send(std::move(f));
}

void PeerSession::send_org_info() {
  proto::LsFrame f;
  *f.mutable_org_info() = to_org_info(*db_.snapshot(), options_.organization);
  send(std::move(f));
}

void PeerSession::handle(const proto::LsFrame& frame) {
  // Replay protection: exactly one more than the last frame of this session.
  if (frame.sequence() != rx_sequence_ + 1) {
    return close("frame sequence " + std::to_string(frame.sequence()) + " where " +
                 std::to_string(rx_sequence_ + 1) + " was due");
  }
  ++rx_sequence_;
  last_rx_ = clock_.now();
  if (state_ == SessionState::kAwaitHello) {
    if (frame.body_case() != proto::LsFrame::kHello) {
      return close("first frame is not Hello");
    }
    return handle_hello(frame.hello());
  }
  switch (frame.body_case()) {
    case proto::LsFrame::kHello:
      return close("second Hello");
    case proto::LsFrame::kDigest:
      if (frame.digest().sha256() != digest_bytes(db_.snapshot()->digest())) {
        send_org_info();
      }
      return;
    case proto::LsFrame::kOrgInfo:
      return handle_org_info(frame.org_info());
    case proto::LsFrame::kStateChange:
      return handle_state_change(frame.state_change());
    case proto::LsFrame::kKeepalive:
      return;
    case proto::LsFrame::BODY_NOT_SET:
      break;
  }
  close("frame without a body");
}

void PeerSession::handle_hello(const proto::LsHello& h) {
  if (h.protocol() != proto::LS_PROTOCOL_V1) {
    return close("Hello with protocol " + std::to_string(h.protocol()));
  }
  if (h.organization() != options_.organization) {
    return close("Hello from another organization");
  }
  if (!options_.inter_group && h.routing_group() != options_.routing_group) {
    return close("Hello from another routing group");
  }
  if (options_.inter_group &&
      (!is_valid_name(h.routing_group()) || h.routing_group() == options_.routing_group)) {
    return close("inter-group Hello without another routing group");
  }
  if (!is_valid_name(h.node()) || h.node() == options_.node) {
    return close("Hello with an invalid node id");
  }
  if (!options_.expected_peer.empty() && h.node() != options_.expected_peer) {
    return close("Hello names \"" + h.node() + "\" but TLS proved \"" + options_.expected_peer +
                 "\"");
  }
  const auto want = options_.role == Role::kMaster ? proto::LS_ROLE_MEMBER : proto::LS_ROLE_MASTER;
  if (h.role() != want) {
    return close("Hello with the wrong role");
  }
  peer_node_ = h.node();
  peer_group_ = h.routing_group();
  state_ = SessionState::kOpen;
  if (options_.role == Role::kMaster) {
    send_hello();
  }
  send_digest();
}

void PeerSession::handle_org_info(const proto::LsOrgInfo& info) {
  if (info.organization() != options_.organization) {
    return close("OrgInfo of another organization");
  }
  auto groups = from_org_info(info, options_.limits.table);
  if (!groups) {
    return close(groups.error().message);
  }
  // The digest must be the digest of what came: a frame cut or altered on the way
  // (or a sender with a broken encoder) changes nothing here.
  const Hash claimed_digest =
      table_digest(*groups, [](const RoutingGroup& g) -> const RoutingGroup& { return g; });
  if (info.digest() != digest_bytes(claimed_digest)) {
    return close("OrgInfo digest does not match its content");
  }
  // Only the table-size limit can refuse a validated entry: keep the session, the next
  // OrgInfo tries again once groups have been removed.
  (void)db_.apply_all(*groups);
  if (has_news_for(*db_.snapshot(), *groups)) {
    send_org_info();  // we know something the peer does not
  }
}

void PeerSession::handle_state_change(const proto::LsStateChange& c) {
  if (options_.role != Role::kMaster) {
    return close("StateChange sent to a member");
  }
  if (options_.inter_group) {
    return close("StateChange between routing groups");
  }
  if (c.node() != peer_node_) {
    return close("StateChange about another node's bridgehead");
  }
  if (c.routing_group() != options_.routing_group) {
    return close("StateChange for another routing group");
  }
  // An unknown connector is a configuration the member has and we do not (yet): ignored.
  (void)db_.report(c.routing_group(), c.connector(), c.node(), c.up());
}

}  // namespace bh::linkstate
