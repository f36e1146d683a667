#include "smtp/connection_limits.h"

#include <gtest/gtest.h>

#include "smtp/server_session.h"

namespace bh::smtp {
namespace {

using namespace std::chrono_literals;

TEST(ConnectionRateLimiter, BurstUpToTheLimitThenOneTokenPerSlice) {
  ManualClock clock;
  ConnectionRateLimiter r(3, clock);
  EXPECT_TRUE(r.admit("192.0.2.1"));
  EXPECT_TRUE(r.admit("192.0.2.1"));
  EXPECT_TRUE(r.admit("192.0.2.1"));
  EXPECT_FALSE(r.admit("192.0.2.1"));
  EXPECT_FALSE(r.admit("192.0.2.1"));  // refused attempts do not go negative or refill
  EXPECT_TRUE(r.admit("192.0.2.2"));   // other clients have their own bucket
  clock.advance(19s);
  EXPECT_FALSE(r.admit("192.0.2.1"));  // 3 per minute: one token per 20 s
  clock.advance(1s);
  EXPECT_TRUE(r.admit("192.0.2.1"));
  EXPECT_FALSE(r.admit("192.0.2.1"));
  clock.advance(10min);  // never more than the burst
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(r.admit("192.0.2.1")) << i;
  }
  EXPECT_FALSE(r.admit("192.0.2.1"));
}

TEST(ConnectionRateLimiter, SixtyPerMinuteIsTheDefaultShape) {
  ManualClock clock;
  ConnectionRateLimiter r(60, clock);
  int admitted = 0;
  for (int i = 0; i < 100; ++i) {
    admitted += r.admit("2001:db8::1") ? 1 : 0;
  }
  EXPECT_EQ(admitted, 60);
  clock.advance(1s);
  EXPECT_TRUE(r.admit("2001:db8::1"));
  EXPECT_FALSE(r.admit("2001:db8::1"));
}

TEST(ConnectionRateLimiter, ClockSteppingBackRefillsNothing) {
  ManualClock clock;
  ConnectionRateLimiter r(1, clock);
  EXPECT_TRUE(r.admit("192.0.2.1"));
  clock.advance(-30s);
  EXPECT_FALSE(r.admit("192.0.2.1"));
  clock.advance(59s);
  EXPECT_FALSE(r.admit("192.0.2.1"));
  clock.advance(1s);  // 60 s after the last check
  EXPECT_TRUE(r.admit("192.0.2.1"));
}

TEST(ConnectionRateLimiter, IdleClientsAreForgottenAndTheTableIsCapped) {
  ManualClock clock;
  ConnectionRateLimiter r(2, clock, /*max_tracked=*/3);
  EXPECT_TRUE(r.admit("192.0.2.1"));
  EXPECT_TRUE(r.admit("192.0.2.2"));
  EXPECT_TRUE(r.admit("192.0.2.3"));
  EXPECT_EQ(r.tracked(), 3u);
  // Full table, nobody idle: a new address is let through untracked.
  EXPECT_TRUE(r.admit("192.0.2.4"));
  EXPECT_TRUE(r.admit("192.0.2.4"));
  EXPECT_TRUE(r.admit("192.0.2.4"));
  EXPECT_EQ(r.tracked(), 3u);
  // The tracked ones are still limited.
  EXPECT_TRUE(r.admit("192.0.2.1"));
  EXPECT_FALSE(r.admit("192.0.2.1"));
  clock.advance(61s);
  EXPECT_TRUE(r.admit("192.0.2.5"));  // the sweep dropped the idle buckets first
  EXPECT_EQ(r.tracked(), 1u);
}

TEST(TarpitPolicy, DelaysRepliesOnceTheErrorCountIsReached) {
  TarpitPolicy p{5, 1000ms};
  EXPECT_FALSE(p.delays(0));
  EXPECT_FALSE(p.delays(4));
  EXPECT_TRUE(p.delays(5));
  EXPECT_TRUE(p.delays(50));
  TarpitPolicy off{5, 0ms};
  EXPECT_FALSE(off.delays(50));
}

// RFC 8314 implicit TLS: a session that starts with TLS up (PeerInfo::tls).
TEST(ImplicitTlsSession, NoStartTlsOfferedOrAcceptedAndReceivedSaysEsmtps) {
  SessionConfig cfg;
  cfg.hostname = "mx.example.org";
  cfg.starttls = true;  // the node offers STARTTLS on its other listeners
  ManualClock clock;
  ServerSession s(cfg, PeerInfo{"192.0.2.7", "127.0.0.1", /*tls=*/true}, clock);
  EXPECT_TRUE(s.tls_active());
  std::string replies, spooled;
  auto drive = [&](Actions acts, auto& self) -> void {
    for (auto& a : acts) {
      if (auto* r = std::get_if<SendReply>(&a)) {
        replies += r->bytes;
      } else if (std::holds_alternative<CheckMail>(a)) {
        self(s.on_mail_result(Result<void>()), self);
      } else if (std::holds_alternative<LookupRecipient>(a)) {
        RecipientVerdict v;
        v.kind = RecipientVerdict::Kind::kLocal;
        v.mailbox = "alice";
        self(s.on_recipient_result(v), self);
      } else if (std::holds_alternative<BeginMessage>(a)) {
        self(s.on_begin_result(std::string("Q1")), self);
      } else if (auto* b = std::get_if<BodyData>(&a)) {
        spooled += b->bytes;
      } else {
        EXPECT_FALSE(std::holds_alternative<BeginTls>(a));
      }
    }
  };
  drive(s.start(), drive);
  drive(s.on_bytes("EHLO client.test\r\n"), drive);
  EXPECT_EQ(replies.find("STARTTLS"), std::string::npos) << replies;
  replies.clear();
  drive(s.on_bytes("STARTTLS\r\n"), drive);
  EXPECT_EQ(replies, "503 5.5.1 TLS already active\r\n");
  drive(s.on_bytes("MAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"), drive);
  EXPECT_NE(spooled.find(") with ESMTPS id Q1"), std::string::npos) << spooled;
}

}  // namespace
}  // namespace bh::smtp
