#pragma once
// PeerSession: one TCP 691 session between a routing-group member and its master
// (DESIGN.md §4.2, docs/linkstate-protocol.md §3), sans I/O. Bytes in (on_bytes), bytes
// out (take_output), time in (on_tick with the injected clock); the Asio/TLS adapter only
// moves bytes, arms a timer for next_deadline() and drops the connection once closed().
//
//   member                               master
//   Hello(member) ----------------------> check protocol, organization, group, identity
//                 <---------------------- Hello(master), Digest
//   Digest ------------------------------> (differs from ours: OrgInfo)
//   ... OrgInfo when the digests differ; each side apply()s every entry and answers
//       with its own OrgInfo only when it holds an entry the peer lacks or has older
//       (has_news_for; the merge is a per-group maximum, so this ends after one round
//       trip, even between nodes whose table limits differ)
//   StateChange (own bridgeheads only) --> db.report() (damped); the owner then calls
//                                          table_changed() on every session: OrgInfo
//   Keepalive every `keepalive` of silence; no frame for `dead_after`: peer dead
//
// Refused, each closing the session with the table unchanged by the offending frame:
// anything but Hello first, a second Hello, another protocol version/organization/
// routing group, a node other than the TLS identity (expected_peer), the wrong role, a
// sequence number that is not the previous one + 1 (replay, reordering, forgery), an
// OrgInfo that fails validation or whose digest does not match its content, a
// StateChange to a member or about another node's bridgehead, undecodable frames
// (linkstate/wire.h). Entries older than ours are "stale" for the database and ignored.
//
// Who may author which entry is trusted to the TLS layer (cluster CA): any authenticated
// node of the organization may hand over entries, as Exchange's members do with the
// link state they learn; versions decide.
//
// Ownership and threading: borrows the LinkStateDb and Clock (both outlive it); runs on
// the owner's strand with every other session of that database.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "linkstate/database.h"
#include "linkstate/wire.h"

namespace bh::linkstate {

enum class Role { kMember, kMaster };

struct SessionOptions {
  std::string organization;
  std::string node;           // this node's id
  std::string routing_group;  // this node's routing group (the peer's must be the same)
  Role role = Role::kMember;  // kMember: we connected to our master
  // The node id the TLS handshake proved for the peer; the peer's Hello must name it.
  // Empty only where nothing could prove it (unit tests).
  std::string expected_peer;
  // Between routing groups (the adapter's bridgehead links, in place of X-LINK2STATE
  // until the SMTP side carries it): the peer's Hello names another routing group (not
  // ours); tables are exchanged as inside a group, and StateChange is refused.
  bool inter_group = false;
  std::chrono::milliseconds keepalive{std::chrono::seconds(10)};
  std::chrono::milliseconds dead_after{std::chrono::seconds(35)};
  WireLimits limits;
};

enum class SessionState { kAwaitHello, kOpen, kClosed };

class PeerSession {
 public:
  PeerSession(LinkStateDb& db, const Clock& clock, SessionOptions options);

  // The member speaks first: its Hello. The master waits for the member's.
  void start();
  // Every complete frame in `in` is handled; a partial one waits for more.
  void on_bytes(std::string_view in);
  // Keepalive when we have been silent for `keepalive`; closes when the peer has been
  // silent for `dead_after` (including a peer that never sends its Hello).
  void on_tick();
  // The database changed (through this session or another): the master pushes the
  // table, a member offers its digest.
  void table_changed();
  // A member reports one of its own source bridgeheads; dropped (false) unless the
  // session is open and we are the member.
  bool send_state_change(std::string_view group, std::string_view connector, bool up);

  std::string take_output();
  std::optional<Clock::time_point> next_deadline() const;

  SessionState state() const { return state_; }
  bool closed() const { return state_ == SessionState::kClosed; }
  const std::string& close_reason() const { return close_reason_; }
  const std::string& peer_node() const { return peer_node_; }
  const std::string& peer_group() const { return peer_group_; }
  std::uint64_t frames_in() const { return rx_sequence_; }
  std::uint64_t frames_out() const { return tx_sequence_; }
  Clock::time_point last_received() const { return last_rx_; }

 private:
  void handle(const proto::LsFrame& frame);
  void handle_hello(const proto::LsHello& hello);
  void handle_org_info(const proto::LsOrgInfo& info);
  void handle_state_change(const proto::LsStateChange& change);
  void send(proto::LsFrame frame);
  void send_hello();
  void send_digest();
  void send_org_info();
  void close(std::string reason);

  LinkStateDb& db_;
  const Clock& clock_;
  SessionOptions options_;
  FrameDecoder decoder_;
  SessionState state_ = SessionState::kAwaitHello;
  std::string close_reason_;
  std::string peer_node_;
  std::string peer_group_;
  std::string out_;
  std::uint64_t rx_sequence_ = 0;
  std::uint64_t tx_sequence_ = 0;
  Clock::time_point last_rx_;
  Clock::time_point last_tx_;
};

}  // namespace bh::linkstate
