#include "linkstate/wire.h"

#include <gtest/gtest.h>

#include <chrono>

namespace bh::linkstate {
namespace {

using namespace std::chrono_literals;

RoutingGroup sample_group() {
  RoutingGroup g;
  g.name = "A";
  g.master = "a1";
  g.members = {"a1", "a2"};
  g.version = {3, 2, 1};
  Connector ab;
  ab.id = "ab";
  ab.target_group = "B";
  ab.cost = 10;
  ab.sources = {{"a1", true}, {"a2", false}};
  ab.target_bridgeheads = {"b1"};
  ab.changed_at = Clock::time_point{std::chrono::milliseconds(1'700'000'000'123)};
  Connector inet;
  inet.id = "inet";
  inet.sources = {{"a1", true}};
  inet.address_spaces = {{routing::AddressSpace::parse("*").value(), 5},
                         {routing::AddressSpace::parse("*.example.com").value(), 1}};
  g.connectors = {ab, inet};
  return normalize(g).value();
}

proto::LsFrame hello_frame(std::uint64_t seq = 1) {
  proto::LsFrame f;
  f.set_protocol(proto::LS_PROTOCOL_V1);
  f.set_sequence(seq);
  f.mutable_hello()->set_node("n1");
  return f;
}

TEST(Wire, GroupRoundTripsThroughProto) {
  const RoutingGroup g = sample_group();
  auto back = from_proto(to_proto(g), {});
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, g);
  EXPECT_EQ(canonical_encoding(*back), canonical_encoding(g));
}

TEST(Wire, FromProtoRefusesBadEntries) {
  auto edit = [](auto f) {
    proto::LsRoutingGroup pg = to_proto(sample_group());
    f(pg);
    return from_proto(pg, {});
  };
  EXPECT_FALSE(edit([](auto& pg) { pg.mutable_connectors(0)->set_cost(0); }).ok());
  EXPECT_FALSE(edit([](auto& pg) { pg.mutable_connectors(0)->set_cost(4'000'000'000u); }).ok());
  EXPECT_FALSE(edit([](auto& pg) { pg.mutable_connectors(0)->set_changed_at_ms(-1); }).ok());
  EXPECT_FALSE(edit([](auto& pg) {
                 pg.mutable_connectors(1)->mutable_address_spaces(0)->set_pattern("a.*.com");
               }).ok());
  EXPECT_FALSE(edit([](auto& pg) {
                 pg.mutable_connectors(1)->mutable_address_spaces(0)->set_cost(101);
               }).ok());
  EXPECT_FALSE(edit([](auto& pg) { pg.set_name("bad name"); }).ok());
  EXPECT_FALSE(edit([](auto& pg) { pg.set_master("zz"); }).ok());
  // hostile-inputs #26: an entry claiming far more members than allowed.
  EXPECT_FALSE(edit([](auto& pg) {
                 for (int i = 0; i < 1000; ++i) {
                   pg.add_members("m" + std::to_string(i));
                 }
               }).ok());
}

TEST(Wire, ErrorsNeverEchoRawPeerBytes) {
  proto::LsRoutingGroup pg = to_proto(sample_group());
  pg.set_name("evil\r\n250 OK\x00" + std::string(500, 'x'));
  pg.mutable_connectors(0)->set_id("c\r\nQUIT");
  pg.mutable_connectors(0)->set_cost(0);
  for (const auto& r :
       {from_proto(pg, {}), normalize(from_proto(to_proto(sample_group()), {}).value())}) {
    if (r.ok()) {
      continue;
    }
    const std::string& m = r.error().message;
    EXPECT_EQ(m.find_first_of(std::string("\r\n\0", 3)), std::string::npos) << m;
    EXPECT_LT(m.size(), 200u);
  }
  RoutingGroup g = sample_group();
  g.name = "a\nb";
  auto r = normalize(g);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("\"a?b\""), std::string::npos) << r.error().message;
  EXPECT_EQ(printable(std::string(70, 'y')), std::string(64, 'y') + "...");
}

TEST(Wire, OrgInfoIsAllOrNothing) {
  ManualClock clock;
  LinkStateDb db(clock, DbOptions{0ms, {}});
  ASSERT_TRUE(db.apply(sample_group()).ok());
  RoutingGroup b;
  b.name = "B";
  b.version = {1, 0, 0};
  ASSERT_TRUE(db.apply(b).ok());
  proto::LsOrgInfo info = to_org_info(*db.snapshot(), "org");
  EXPECT_EQ(info.digest().size(), 32u);
  auto groups = from_org_info(info, {});
  ASSERT_TRUE(groups.ok());
  EXPECT_EQ(groups->size(), 2u);

  info.mutable_groups(1)->set_master("nobody");
  EXPECT_FALSE(from_org_info(info, {}).ok());

  proto::LsOrgInfo twice = to_org_info(*db.snapshot(), "org");
  *twice.add_groups() = twice.groups(0);
  EXPECT_FALSE(from_org_info(twice, {}).ok());

  TableLimits one;
  one.max_groups = 1;
  EXPECT_FALSE(from_org_info(to_org_info(*db.snapshot(), "org"), one).ok());
}

TEST(FrameCodec, RoundTripOneOctetAtATime) {
  auto a = encode_frame(hello_frame(1));
  auto b = encode_frame(hello_frame(2));
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string bytes = *a + *b;
  FrameDecoder d;
  std::vector<std::uint64_t> seqs;
  for (char c : bytes) {
    auto step = d.feed(std::string_view(&c, 1));
    ASSERT_EQ(step.consumed, 1u);
    if (step.status == FrameStatus::kFrame) {
      seqs.push_back(step.frame.sequence());
      EXPECT_EQ(step.frame.hello().node(), "n1");
    } else {
      ASSERT_EQ(step.status, FrameStatus::kNeedMore);
    }
  }
  EXPECT_EQ(seqs, (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameCodec, TwoFramesInOneReadComeOutOneByOne) {
  const std::string bytes = *encode_frame(hello_frame(1)) + *encode_frame(hello_frame(2));
  FrameDecoder d;
  auto s1 = d.feed(bytes);
  ASSERT_EQ(s1.status, FrameStatus::kFrame);
  auto s2 = d.feed(std::string_view(bytes).substr(s1.consumed));
  ASSERT_EQ(s2.status, FrameStatus::kFrame);
  EXPECT_EQ(s1.consumed + s2.consumed, bytes.size());
  EXPECT_EQ(s2.frame.sequence(), 2u);
}

TEST(FrameCodec, OversizedLengthIsRefusedFromTheHeader) {
  WireLimits lim;
  lim.max_frame = 1000;
  FrameDecoder d(lim);
  const std::string header("\x00\x00\x03\xe9", 4);  // 1001
  auto step = d.feed(header + std::string(50, 'x'));
  EXPECT_EQ(step.status, FrameStatus::kTooLarge);
  EXPECT_EQ(step.consumed, 4u);  // nothing of the body was read
  EXPECT_EQ(d.buffered(), 0u);
  EXPECT_TRUE(d.failed());
  EXPECT_EQ(d.feed(*encode_frame(hello_frame())).status, FrameStatus::kTooLarge);  // sticky

  FrameDecoder huge;  // 4 GiB claimed
  EXPECT_EQ(huge.feed(std::string("\xff\xff\xff\xff", 4)).status, FrameStatus::kTooLarge);

  // The encoder refuses what the peer would refuse.
  proto::LsFrame big = hello_frame();
  big.mutable_hello()->set_organization(std::string(2000, 'o'));
  EXPECT_FALSE(encode_frame(big, lim).ok());
}

TEST(FrameCodec, TruncatedFrameNeverYieldsAFrame) {
  const std::string bytes = *encode_frame(hello_frame());
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    FrameDecoder d;
    auto step = d.feed(std::string_view(bytes).substr(0, cut));
    EXPECT_EQ(step.status, FrameStatus::kNeedMore) << cut;
    EXPECT_EQ(d.buffered(), cut);
  }
}

TEST(FrameCodec, GarbageEmptyBodylessAndOtherVersionsAreRefused) {
  auto one = [](const std::string& bytes) { return FrameDecoder().feed(bytes).status; };
  EXPECT_EQ(one(std::string("\x00\x00\x00\x03\xff\xff\xff", 7)), FrameStatus::kMalformed);
  EXPECT_EQ(one(std::string("\x00\x00\x00\x00", 4)), FrameStatus::kMalformed);  // no body
  proto::LsFrame no_body;
  no_body.set_protocol(proto::LS_PROTOCOL_V1);
  no_body.set_sequence(1);
  EXPECT_EQ(one(*encode_frame(no_body)), FrameStatus::kMalformed);
  proto::LsFrame v2 = hello_frame();
  v2.set_protocol(static_cast<proto::LsProtocol>(2));
  EXPECT_EQ(one(*encode_frame(v2)), FrameStatus::kBadVersion);
  proto::LsFrame v0 = hello_frame();
  v0.set_protocol(proto::LS_PROTOCOL_UNSPECIFIED);
  EXPECT_EQ(one(*encode_frame(v0)), FrameStatus::kBadVersion);
}

}  // namespace
}  // namespace bh::linkstate
