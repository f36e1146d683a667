// ETRN (RFC 1985) argument parser, replies and the per-client rate limiter (smtp/etrn.h);
// hostile-inputs #57.

#include "smtp/etrn.h"

#include <gtest/gtest.h>

#include <string>

namespace bh::smtp {
namespace {

using Kind = EtrnRequest::Kind;

TEST(Etrn, ParsesTheThreeForms) {
  auto d = parse_etrn("Example.COM");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->kind, Kind::kDomain);
  EXPECT_EQ(d->name, "example.com");
  EXPECT_EQ(d->node(), "example.com");
  auto s = parse_etrn("@Sub.Example.com.");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->kind, Kind::kSubdomains);
  EXPECT_EQ(s->name, "sub.example.com");
  EXPECT_EQ(s->node(), "@sub.example.com");
  auto q = parse_etrn("#MX:Internet:example.com");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->kind, Kind::kQueue);
  EXPECT_EQ(q->name, "mx:internet:example.com");
  EXPECT_EQ(q->node(), "#mx:internet:example.com");
  EXPECT_TRUE(parse_etrn(" example.com  ").ok());
}

TEST(Etrn, NoArgumentAndBadNodesAre501) {
  for (std::string s :
       {std::string(""), std::string("   "), std::string("@"), std::string("#"),
        std::string("@@example.com"), std::string("example.com other.com"),
        std::string("exa mple.com"), std::string("-bad.com"), std::string("a..b"),
        std::string("example.com.."), std::string("[127.0.0.1]"), std::string("#queue name"),
        std::string("#q\r\nX"), std::string("ex\0ample.com", 12),
        std::string("\xc3\xa9t\xc3\xa9.fr"), std::string("#") + std::string(256, 'q'),
        std::string(300, 'a'), std::string("user@example.com"), std::string("%example.com")}) {
    auto r = parse_etrn(s);
    ASSERT_FALSE(r.ok()) << s;
    EXPECT_FALSE(r.error().transient());
    EXPECT_EQ(r.error().enhanced, "5.5.4") << s;
    EXPECT_EQ(r.error().message.find_first_of("\r\n"), std::string::npos);
  }
  EXPECT_TRUE(parse_etrn("#" + std::string(255, 'q')).ok());
}

TEST(Etrn, RepliesFollowRfc1985) {
  EtrnRequest req = parse_etrn("@example.com").value();
  EtrnResult res;
  res.outcome = EtrnOutcome::kStarted;
  auto r = etrn_reply(req, res);
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.enhanced, "2.0.0");
  EXPECT_EQ(r.text, "OK, queuing for node @example.com started");
  res.outcome = EtrnOutcome::kNothingQueued;
  r = etrn_reply(req, res);
  EXPECT_EQ(r.code, 251);
  EXPECT_EQ(r.text, "OK, no messages waiting for node @example.com");
  res.outcome = EtrnOutcome::kUnable;
  res.reason = "next hop frozen\r\nX";
  r = etrn_reply(req, res);
  EXPECT_EQ(r.code, 458);
  EXPECT_EQ(r.enhanced[0], '4');
  EXPECT_EQ(r.text, "Unable to queue messages for node @example.com: next hop frozen  X");
  res.outcome = EtrnOutcome::kNotAllowed;
  res.reason = "";
  r = etrn_reply(req, res);
  EXPECT_EQ(r.code, 459);
  EXPECT_EQ(r.enhanced[0], '4');
  EXPECT_EQ(r.text, "Node @example.com not allowed: not a node we queue for");
  auto lim = etrn_rate_limited_reply(req);
  EXPECT_EQ(lim.code, 459);
  EXPECT_NE(lim.text.find("too many"), std::string::npos);
  EXPECT_NE(etrn_rate_limited_reply(EtrnRequest{}).text.find("Node * "), std::string::npos);
}

TEST(EtrnRateLimiter, AtMostNPerWindowPerClient) {
  ManualClock clock;
  EtrnRateLimits lim;
  lim.max_requests = 3;
  lim.window = std::chrono::seconds(60);
  EtrnRateLimiter rl(clock, lim);
  EXPECT_TRUE(rl.allow("192.0.2.1"));
  clock.advance(std::chrono::seconds(10));
  EXPECT_TRUE(rl.allow("192.0.2.1"));
  EXPECT_TRUE(rl.allow("192.0.2.1"));
  EXPECT_FALSE(rl.allow("192.0.2.1"));    // 4th within the minute
  EXPECT_TRUE(rl.allow("198.51.100.7"));  // another client is not affected
  EXPECT_EQ(rl.refused(), 1u);
  // A sliding window over every call, refused ones included: at t=60 the three calls
  // made at t=10 are still inside it, so a client that keeps flooding stays refused.
  clock.advance(std::chrono::seconds(50));  // t=60
  EXPECT_FALSE(rl.allow("192.0.2.1"));
  clock.advance(std::chrono::seconds(10));  // t=70: the t=10 calls have left the window
  EXPECT_TRUE(rl.allow("192.0.2.1"));
  EXPECT_TRUE(rl.allow("192.0.2.1"));
  EXPECT_FALSE(rl.allow("192.0.2.1"));  // the t=60 call is still inside
  clock.advance(std::chrono::seconds(120));
  EXPECT_TRUE(rl.allow("192.0.2.1"));
}

TEST(EtrnRateLimiter, AFloodStaysRefusedUntilItStops) {
  ManualClock clock;
  EtrnRateLimits lim;
  lim.max_requests = 2;
  EtrnRateLimiter rl(clock, lim);
  int allowed = 0;
  for (int i = 0; i < 1000; ++i) {
    allowed += rl.allow("192.0.2.1") ? 1 : 0;
    clock.advance(std::chrono::seconds(1));  // one a second: 60 a minute
  }
  EXPECT_EQ(allowed, 2);
  clock.advance(std::chrono::seconds(60));
  EXPECT_TRUE(rl.allow("192.0.2.1"));
}

TEST(EtrnRateLimiter, MemoryIsBoundedByMaxClients) {
  ManualClock clock;
  EtrnRateLimits lim;
  lim.max_requests = 1;
  lim.max_clients = 100;
  EtrnRateLimiter rl(clock, lim);
  EXPECT_TRUE(rl.allow("10.0.0.1"));
  EXPECT_FALSE(rl.allow("10.0.0.1"));
  for (int i = 0; i < 10000; ++i) {
    EXPECT_TRUE(rl.allow("2001:db8::" + std::to_string(i)));
    EXPECT_LE(rl.clients(), 100u);
  }
  // 10.0.0.1 was least recently seen and forgotten: it starts afresh.
  EXPECT_TRUE(rl.allow("10.0.0.1"));
  // A client seen recently is kept (moved to the front) while others are evicted.
  EXPECT_FALSE(rl.allow("10.0.0.1"));
  EtrnRateLimits none;
  none.max_requests = 0;
  EtrnRateLimiter off(clock, none);
  EXPECT_FALSE(off.allow("10.0.0.1"));
}

}  // namespace
}  // namespace bh::smtp
