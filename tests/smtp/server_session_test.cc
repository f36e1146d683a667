#include "smtp/server_session.h"

#include <gtest/gtest.h>

#include "tests/smtp/session_harness.h"

namespace bh::smtp::testing {
namespace {

const char* kTxn =
    "EHLO c\r\nMAIL FROM:<s@example.net> RET=HDRS ENVID=QQ+2B1 SIZE=42 BODY=8BITMIME\r\n"
    "RCPT TO:<alice@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Alice+40example.org\r\n"
    "RCPT TO:<bob@example.org>\r\nDATA\r\n";

TEST(ServerSession, EnvelopeCarriesDsnAndClientFields) {
  Harness h;
  h.start();
  h.feed(kTxn);
  h.feed("x\r\n.\r\n");
  auto& o = h.outcome();
  ASSERT_EQ(o.messages.size(), 1u);
  const auto& e = o.messages[0];
  EXPECT_EQ(e.sender, "s@example.net");
  EXPECT_EQ(e.ret, queue::DsnRet::kHeaders);
  EXPECT_EQ(e.envid, "QQ+1");
  EXPECT_EQ(e.declared_size, 42u);
  EXPECT_EQ(e.body, queue::BodyType::k8BitMime);
  ASSERT_EQ(e.recipients.size(), 2u);
  EXPECT_EQ(e.recipients[0].notify, queue::kNotifySuccess | queue::kNotifyDelay);
  EXPECT_EQ(e.recipients[0].orcpt, "rfc822;Alice@example.org");
  EXPECT_EQ(e.recipients[0].mailbox, "alice");
  EXPECT_EQ(e.recipients[1].mailbox, "bob");
  EXPECT_EQ(e.client_address, "192.0.2.1");
  EXPECT_EQ(e.client_helo, "c");
  EXPECT_EQ(e.protocol, "ESMTP");
  EXPECT_EQ(e.id, "Q1");
  EXPECT_NE(o.replies.find("250 2.0.0 Ok: queued as Q1\r\n"), std::string::npos);
}

TEST(ServerSession, ReceivedHeaderComesFirstAndNamesTheQueueId) {
  SessionConfig cfg;
  cfg.hostname = "mx.example.org";
  ManualClock clock;
  ServerSession s(cfg, PeerInfo{"192.0.2.7", "127.0.0.1"}, clock);
  s.start();
  std::string spooled;
  auto drive = [&](Actions acts, auto& self) -> void {
    for (auto& a : acts) {
      if (std::holds_alternative<CheckMail>(a)) self(s.on_mail_result(Result<void>()), self);
      else if (std::holds_alternative<LookupRecipient>(a)) {
        RecipientVerdict v;
        v.kind = RecipientVerdict::Kind::kLocal;
        v.mailbox = "alice";
        self(s.on_recipient_result(v), self);
      } else if (std::holds_alternative<BeginMessage>(a)) self(s.on_begin_result(std::string("ABC123")), self);
      else if (auto* b = std::get_if<BodyData>(&a)) spooled += b->bytes;
    }
  };
  drive(s.on_bytes("EHLO client.test\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"), drive);
  ASSERT_EQ(spooled.rfind("Received: from client.test ([192.0.2.7])\r\n\tby mx.example.org (bridgehead) with ESMTP id ABC123\r\n\tfor <alice@example.org>; ", 0), 0u)
      << spooled;
  EXPECT_NE(spooled.find("Nov 2023"), std::string::npos) << spooled;  // from the injected clock
  EXPECT_EQ(spooled.substr(spooled.size() - 8), " +0000\r\n");
}

TEST(ServerSession, TimeoutAnswers421AndCloses) {
  Harness h;
  h.start();
  h.feed("EHLO c\r\nMAIL FROM:<s@example.net>\r\n");
  h.timeout();
  EXPECT_NE(h.outcome().replies.find("421 4.4.2 "), std::string::npos);
  EXPECT_TRUE(h.session().closed());
}

TEST(ServerSession, OnlyAQuitWithNothingBehindItClosesWithoutLingering) {
  // Whole and one octet at a time: QUIT as the last input may close at once.
  for (std::size_t chunk : {0u, 1u}) {
    Harness h;
    auto o = h.run("EHLO c\r\nQUIT\r\n", chunk);
    EXPECT_TRUE(o.closed);
    EXPECT_TRUE(o.closed_after_quit) << chunk;
    EXPECT_NE(o.replies.find("221 2.0.0 "), std::string::npos);
  }
  // Input pipelined behind the QUIT: the connection lingers so the 221 is not lost to a
  // reset.
  Harness pipelined;
  auto p = pipelined.run("EHLO c\r\nQUIT\r\nNOOP\r\n");
  EXPECT_TRUE(p.closed);
  EXPECT_FALSE(p.closed_after_quit);
  // Any other close lingers too.
  Harness h;
  h.start();
  h.feed("EHLO c\r\n");
  h.timeout();
  EXPECT_TRUE(h.outcome().closed);
  EXPECT_FALSE(h.outcome().closed_after_quit);
}

TEST(ServerSession, DeadlineIsPerLineNotPerRead) {
  Harness h;
  h.start();
  int before = h.outcome().timers;
  // A slowloris sends a command one octet at a time: no new deadline until the line ends.
  for (char c : std::string("NOOP")) {
    h.feed(std::string(1, c));
  }
  EXPECT_EQ(h.outcome().timers, before);
  h.feed("\r\n");
  EXPECT_EQ(h.outcome().timers, before + 1);
}

TEST(ServerSession, DataTimeoutDuringBodyDiscardsTheMessage) {
  Harness h;
  h.start();
  h.feed(kTxn);
  h.feed("partial body\r\n");
  h.timeout();
  EXPECT_TRUE(h.outcome().messages.empty());
  EXPECT_TRUE(h.session().closed());
}

TEST(ServerSession, EhloAdvertisesTheConfiguredExtensions) {
  Harness h;
  auto o = h.run("EHLO c\r\n");
  for (const char* ext : {"PIPELINING", "SIZE 36700160", "8BITMIME", "BINARYMIME", "CHUNKING",
                          "DSN", "ENHANCEDSTATUSCODES", "SMTPUTF8", "HELP"}) {
    EXPECT_NE(o.replies.find(std::string("250-") + ext + "\r\n") == std::string::npos
                  ? o.replies.find(std::string("250 ") + ext + "\r\n")
                  : 0,
              std::string::npos)
        << ext;
  }
  EXPECT_EQ(o.replies.find("VRFY"), std::string::npos);
  EXPECT_EQ(o.replies.find("STARTTLS"), std::string::npos);

  SessionConfig off;
  off.chunking = false;
  off.dsn = false;
  Harness h2(off);
  auto o2 = h2.run("EHLO c\r\n");
  EXPECT_EQ(o2.replies.find("CHUNKING"), std::string::npos);
  EXPECT_EQ(o2.replies.find("BINARYMIME"), std::string::npos);
  EXPECT_EQ(o2.replies.find("DSN"), std::string::npos);
}

TEST(ServerSession, EveryErrorReplyHasAnEnhancedCode) {
  Harness h;
  auto o = h.run("EHLO c\r\nBOGUS\r\nMAIL FROM:<bad\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nQUIT\r\n");
  std::size_t pos = 0;
  int checked = 0;
  while ((pos = o.replies.find("\r\n", pos)) != std::string::npos) {
    pos += 2;
    if (pos + 4 < o.replies.size() && (o.replies[pos] == '4' || o.replies[pos] == '5')) {
      EXPECT_EQ(o.replies[pos + 4], o.replies[pos]) << o.replies.substr(pos, 40);
      EXPECT_EQ(o.replies[pos + 5], '.') << o.replies.substr(pos, 40);
      ++checked;
    }
  }
  EXPECT_GE(checked, 4);
}

TEST(ServerSession, InputIsHeldWhileAnAnswerIsOutstandingAndBounded) {
  SessionConfig cfg;
  cfg.max_buffered_input = 64;
  ManualClock clock;
  ServerSession s(cfg, PeerInfo{"192.0.2.1", "127.0.0.1"}, clock);
  s.start();
  auto a = s.on_bytes("EHLO c\r\nMAIL FROM:<s@example.net>\r\n");
  EXPECT_EQ(s.awaiting(), Awaiting::kMail);
  EXPECT_TRUE(s.wants_input());
  auto b = s.on_bytes(std::string(100, 'x'));
  EXPECT_TRUE(b.empty());  // nothing acted on while waiting
  EXPECT_FALSE(s.wants_input());
  auto c = s.on_mail_result(Result<void>());
  ASSERT_FALSE(c.empty());
  ASSERT_TRUE(std::holds_alternative<SendReply>(c[0]));
  EXPECT_EQ(std::get<SendReply>(c[0]).bytes, "250 2.1.0 Ok\r\n");
}

TEST(ServerSession, CountersCountWhatHappened) {
  Harness h;
  h.start();
  h.feed(kTxn);
  h.feed("x\r\n.\r\nNOOP {600*x}\r\n");
  const auto& c = h.session().counters();
  EXPECT_EQ(c.messages, 1u);
  EXPECT_EQ(c.recipients, 2u);
  EXPECT_GE(c.commands, 5u);
}

}  // namespace
}  // namespace bh::smtp::testing
