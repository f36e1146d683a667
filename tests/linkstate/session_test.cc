// Master and member PeerSessions driven against each other in memory (no sockets):
// bytes out of one are bytes into the other, and the test plays the owner that tells
// every session when its database changed.
#include "linkstate/session.h"

#include <gtest/gtest.h>

#include <chrono>

namespace bh::linkstate {
namespace {

using namespace std::chrono_literals;

RoutingGroup group_a() {
  RoutingGroup g;
  g.name = "A";
  g.master = "m";
  g.members = {"m", "x"};
  Connector ab;
  ab.id = "ab";
  ab.target_group = "B";
  ab.cost = 10;
  ab.sources = {{"m", true}, {"x", true}};
  g.connectors = {ab};
  return g;
}

RoutingGroup group_b() {
  RoutingGroup g;
  g.name = "B";
  g.master = "b1";
  g.members = {"b1"};
  g.version = {7, 0, 0};
  return g;
}

SessionOptions opts(Role role, std::string node, std::string peer) {
  SessionOptions o;
  o.organization = "org";
  o.node = std::move(node);
  o.routing_group = "A";
  o.role = role;
  o.expected_peer = std::move(peer);
  o.keepalive = 10s;
  o.dead_after = 35s;
  return o;
}

struct Pair {
  explicit Pair(TableLimits member_limits = {}) : member_db(clock, DbOptions{0ms, member_limits}) {}

  ManualClock clock;
  LinkStateDb master_db{clock, DbOptions{0ms, {}}};
  LinkStateDb member_db;
  PeerSession master{master_db, clock, opts(Role::kMaster, "m", "x")};
  PeerSession member{member_db, clock, opts(Role::kMember, "x", "m")};

  // Moves bytes both ways until nothing is left, one octet at a time when `trickle`.
  void pump(bool trickle = false) {
    for (int round = 0; round < 100; ++round) {
      const std::string to_master = member.take_output();
      const std::string to_member = master.take_output();
      if (to_master.empty() && to_member.empty()) {
        return;
      }
      deliver(master, master_db, to_master, trickle);
      deliver(member, member_db, to_member, trickle);
    }
    FAIL() << "the sessions never went quiet";
  }

  static void deliver(PeerSession& s, LinkStateDb& db, const std::string& bytes, bool trickle) {
    const auto gen = db.snapshot()->generation();
    if (trickle) {
      for (char c : bytes) {
        s.on_bytes(std::string_view(&c, 1));
      }
    } else {
      s.on_bytes(bytes);
    }
    if (db.snapshot()->generation() != gen) {
      s.table_changed();  // the owner does this for every session of the database
    }
  }

  void open(bool trickle = false) {
    ASSERT_TRUE(master_db.set_config(group_a()).ok());
    member.start();
    pump(trickle);
    ASSERT_EQ(master.state(), SessionState::kOpen) << master.close_reason();
    ASSERT_EQ(member.state(), SessionState::kOpen) << member.close_reason();
  }
};

// A frame as a peer would send it (with a sequence number of our choosing).
std::string frame_bytes(proto::LsFrame f, std::uint64_t seq) {
  f.set_protocol(proto::LS_PROTOCOL_V1);
  f.set_sequence(seq);
  return encode_frame(f).value();
}

TEST(PeerSession, HelloThenDigestsThenTheMemberHasTheMastersTable) {
  Pair p;
  p.open(/*trickle=*/true);
  EXPECT_EQ(p.master.peer_node(), "x");
  EXPECT_EQ(p.member.peer_node(), "m");
  EXPECT_EQ(p.member_db.snapshot()->digest(), p.master_db.snapshot()->digest());
  ASSERT_NE(p.member_db.find("A"), nullptr);
  EXPECT_EQ(p.member_db.find("A")->version, (Version{1, 0, 0}));
}

TEST(PeerSession, BothSidesMergeWhatOnlyOneOfThemKnew) {
  Pair p;
  // The member learnt group B (say over X-LINK2STATE) before its session came up.
  ASSERT_TRUE(p.member_db.apply(group_b()).ok());
  p.open();
  EXPECT_EQ(p.member_db.snapshot()->digest(), p.master_db.snapshot()->digest());
  EXPECT_NE(p.master_db.find("B"), nullptr);
  EXPECT_NE(p.member_db.find("A"), nullptr);
}

TEST(PeerSession, ANodeThatCannotHoldEverythingDoesNotPingPong) {
  TableLimits one_group;
  one_group.max_groups = 1;
  Pair p(one_group);
  ASSERT_TRUE(p.master_db.apply(group_b()).ok());
  p.open();  // fails with "never went quiet" if the two kept answering each other
  EXPECT_NE(p.member_db.find("A"), nullptr);
  EXPECT_EQ(p.member_db.find("B"), nullptr);  // refused by the member's limit
  EXPECT_NE(p.member_db.snapshot()->digest(), p.master_db.snapshot()->digest());
  // Each later push is one OrgInfo and no answer.
  const auto out = p.member.frames_out();
  p.master.table_changed();
  p.pump();
  EXPECT_EQ(p.member.frames_out(), out);
}

TEST(PeerSession, StateChangeReachesTheMasterWhichPushesTheNewTable) {
  Pair p;
  p.open();
  ASSERT_TRUE(p.member.send_state_change("A", "ab", false));
  p.pump();
  const Connector* ab = p.master_db.find("A")->find("ab");
  EXPECT_FALSE(ab->sources[1].up);  // x
  EXPECT_TRUE(ab->up());            // m still sends
  EXPECT_EQ(p.master_db.find("A")->version, (Version{1, 1, 0}));
  EXPECT_EQ(p.member_db.snapshot()->digest(), p.master_db.snapshot()->digest());
  // The master does not send StateChanges; a member does not accept them.
  EXPECT_FALSE(p.master.send_state_change("A", "ab", false));
}

TEST(PeerSession, KeepaliveAndDeadPeerFollowTheInjectedClock) {
  Pair p;
  p.open();
  const auto out_before = p.member.frames_out();
  p.clock.advance(9s);
  p.member.on_tick();
  EXPECT_EQ(p.member.frames_out(), out_before);
  p.clock.advance(1s);
  EXPECT_EQ(p.member.next_deadline(), p.clock.now());
  p.member.on_tick();
  p.master.on_tick();
  EXPECT_EQ(p.member.frames_out(), out_before + 1);
  p.pump();
  EXPECT_FALSE(p.master.closed());
  // The master goes silent (its keepalives are lost): the member gives up after 35 s.
  p.clock.advance(34s);
  p.member.on_tick();
  (void)p.member.take_output();
  EXPECT_FALSE(p.member.closed());
  p.clock.advance(1s);
  p.member.on_tick();
  EXPECT_TRUE(p.member.closed());
  EXPECT_EQ(p.member.close_reason(), "peer dead");
  EXPECT_EQ(p.member.next_deadline(), std::nullopt);
}

TEST(PeerSession, APeerThatNeverSaysHelloIsDropped) {
  Pair p;
  p.clock.advance(35s);
  p.master.on_tick();
  EXPECT_TRUE(p.master.closed());
  EXPECT_EQ(p.master.close_reason(), "no Hello from the peer");
}

// hostile-inputs #26: forged, replayed, truncated and oversized frames; the table is
// unchanged by each.
class Refused : public ::testing::Test {
 protected:
  void SetUp() override {
    p.open();
    before = p.master_db.snapshot()->digest();
    next_seq = p.master.frames_in() + 1;
  }
  void expect_refused(const std::string& bytes, const std::string& reason_part) {
    p.master.on_bytes(bytes);
    EXPECT_TRUE(p.master.closed());
    EXPECT_NE(p.master.close_reason().find(reason_part), std::string::npos)
        << p.master.close_reason();
    EXPECT_EQ(p.master_db.snapshot()->digest(), before);
  }
  proto::LsFrame down_change(const char* node) {
    proto::LsFrame f;
    auto* c = f.mutable_state_change();
    c->set_routing_group("A");
    c->set_connector("ab");
    c->set_node(node);
    c->set_up(false);
    return f;
  }
  Pair p;
  Hash before{};
  std::uint64_t next_seq = 0;
};

TEST_F(Refused, ReplayedFrame) {
  expect_refused(frame_bytes(down_change("x"), next_seq - 1), "sequence");
}

TEST_F(Refused, SkippedSequence) {
  expect_refused(frame_bytes(down_change("x"), next_seq + 1), "sequence");
}

TEST_F(Refused, StateChangeAboutAnotherNode) {
  expect_refused(frame_bytes(down_change("m"), next_seq), "another node");
}

TEST_F(Refused, SecondHello) {
  proto::LsFrame f;
  f.mutable_hello()->set_node("x");
  expect_refused(frame_bytes(f, next_seq), "second Hello");
}

TEST_F(Refused, OrgInfoWithAForgedEntry) {
  LinkStateDb forged_db(p.clock, DbOptions{0ms, {}});
  RoutingGroup a = group_a();
  a.version = {99, 0, 0};
  a.connectors[0].cost = 100;
  ASSERT_TRUE(forged_db.apply(a).ok());
  proto::LsFrame f;
  *f.mutable_org_info() = to_org_info(*forged_db.snapshot(), "org");
  f.mutable_org_info()->mutable_groups(0)->mutable_connectors(0)->set_cost(0);  // invalid
  expect_refused(frame_bytes(f, next_seq), "cost");
}

TEST_F(Refused, OrgInfoWhoseDigestDoesNotMatch) {
  LinkStateDb other(p.clock, DbOptions{0ms, {}});
  RoutingGroup a = group_a();
  a.version = {99, 0, 0};
  ASSERT_TRUE(other.apply(a).ok());
  proto::LsFrame f;
  *f.mutable_org_info() = to_org_info(*other.snapshot(), "org");
  f.mutable_org_info()->mutable_groups(0)->mutable_connectors(0)->set_cost(1);  // altered
  expect_refused(frame_bytes(f, next_seq), "digest");
}

TEST_F(Refused, OrgInfoClaimingAMillionGroups) {
  proto::LsFrame f;
  auto* info = f.mutable_org_info();
  info->set_organization("org");
  for (int i = 0; i < 30000; ++i) {  // over TableLimits::max_groups (20000)
    info->add_groups()->set_name("g" + std::to_string(i));
  }
  expect_refused(frame_bytes(f, next_seq), "routing groups");
}

TEST_F(Refused, OversizedFrame) { expect_refused(std::string("\x7f\xff\xff\xff", 4), "too large"); }

TEST_F(Refused, GarbageFrame) {
  expect_refused(std::string("\x00\x00\x00\x02\xff\xff", 6), "malformed");
}

TEST(PeerSession, TruncatedFrameWaitsAndChangesNothing) {
  Pair p;
  p.open();
  const auto before = p.master_db.snapshot()->digest();
  proto::LsFrame f;
  auto* c = f.mutable_state_change();
  c->set_routing_group("A");
  c->set_connector("ab");
  c->set_node("x");
  const std::string bytes = frame_bytes(f, p.master.frames_in() + 1);
  p.master.on_bytes(std::string_view(bytes).substr(0, bytes.size() - 1));
  EXPECT_FALSE(p.master.closed());
  EXPECT_EQ(p.master_db.snapshot()->digest(), before);
  // The peer never finishes it: dead-peer detection ends the session.
  p.clock.advance(35s);
  p.master.on_tick();
  EXPECT_TRUE(p.master.closed());
}

TEST(PeerSession, InterGroupSessionsExchangeTablesButNoStateChanges) {
  ManualClock clock;
  LinkStateDb a_db{clock, DbOptions{0ms, {}}};
  LinkStateDb b_db{clock, DbOptions{0ms, {}}};
  ASSERT_TRUE(a_db.set_config(group_a()).ok());
  ASSERT_TRUE(b_db.set_config(group_b()).ok());
  auto o_b = opts(Role::kMember, "b1", "m");
  o_b.routing_group = "B";
  o_b.inter_group = true;
  auto o_a = opts(Role::kMaster, "m", "b1");
  o_a.inter_group = true;
  PeerSession a(a_db, clock, o_a), b(b_db, clock, o_b);
  b.start();
  for (int i = 0; i < 20; ++i) {
    auto to_a = b.take_output(), to_b = a.take_output();
    a.on_bytes(to_a);
    b.on_bytes(to_b);
  }
  ASSERT_EQ(a.state(), SessionState::kOpen) << a.close_reason();
  EXPECT_EQ(a.peer_group(), "B");
  EXPECT_EQ(a_db.snapshot()->digest(), b_db.snapshot()->digest());
  EXPECT_NE(b_db.find("A"), nullptr);
  // A bridgehead of another group reports nothing about ours.
  proto::LsFrame f;
  auto* c = f.mutable_state_change();
  c->set_routing_group("A");
  c->set_connector("ab");
  c->set_node("b1");
  a.on_bytes(frame_bytes(f, b.frames_out() + 1));
  EXPECT_TRUE(a.closed());
  EXPECT_NE(a.close_reason().find("between routing groups"), std::string::npos) << a.close_reason();
  // Without inter_group the same Hello is refused; with it, one naming our group is.
  ManualClock c2;
  LinkStateDb db2{c2, DbOptions{0ms, {}}};
  auto o = opts(Role::kMaster, "m", "x");
  o.inter_group = true;
  PeerSession same(db2, c2, o);
  proto::LsFrame h;
  h.mutable_hello()->set_protocol(proto::LS_PROTOCOL_V1);
  h.mutable_hello()->set_node("x");
  h.mutable_hello()->set_organization("org");
  h.mutable_hello()->set_routing_group("A");
  h.mutable_hello()->set_role(proto::LS_ROLE_MEMBER);
  same.on_bytes(frame_bytes(h, 1));
  EXPECT_TRUE(same.closed());
}

TEST(PeerSession, HelloChecks) {
  auto refused = [](auto edit, const char* reason_part) {
    ManualClock clock;
    LinkStateDb db(clock, DbOptions{0ms, {}});
    PeerSession master(db, clock, opts(Role::kMaster, "m", "x"));
    proto::LsFrame f;
    auto* h = f.mutable_hello();
    h->set_protocol(proto::LS_PROTOCOL_V1);
    h->set_node("x");
    h->set_organization("org");
    h->set_routing_group("A");
    h->set_role(proto::LS_ROLE_MEMBER);
    std::uint64_t seq = 1;
    edit(f, seq);
    master.on_bytes(frame_bytes(f, seq));
    EXPECT_TRUE(master.closed()) << reason_part;
    EXPECT_NE(master.close_reason().find(reason_part), std::string::npos) << master.close_reason();
    EXPECT_EQ(master.take_output(), "");  // nothing said to a refused peer
  };
  refused([](proto::LsFrame& f, auto&) { f.mutable_hello()->set_node("y"); }, "TLS proved");
  refused([](proto::LsFrame& f, auto&) { f.mutable_hello()->set_organization("evil"); },
          "organization");
  refused([](proto::LsFrame& f, auto&) { f.mutable_hello()->set_routing_group("B"); },
          "routing group");
  refused([](proto::LsFrame& f, auto&) { f.mutable_hello()->set_role(proto::LS_ROLE_MASTER); },
          "role");
  refused([](proto::LsFrame& f,
             auto&) { f.mutable_hello()->set_protocol(static_cast<proto::LsProtocol>(9)); },
          "protocol");
  refused([](proto::LsFrame& f, auto&) { f.mutable_keepalive(); }, "not Hello");
  refused([](proto::LsFrame&, std::uint64_t& seq) { seq = 5; }, "sequence");
}

}  // namespace
}  // namespace bh::linkstate
