// ServerSession driven by hand: answers (CheckMail, LookupRecipient, BeginMessage,
// CommitMessage) are given late and explicitly, the way the Asio adapter gives them when
// the directory or the store answers from another thread. Checks ordering, the
// synchronization rules of RFC 2920 and the BDAT drain rules against real timing.

#include <gtest/gtest.h>

#include <random>

#include "smtp/server_session.h"
#include "tests/smtp/session_harness.h"

namespace bh::smtp {
namespace {

struct Log {
  std::string replies;
  std::string body;
  std::vector<std::string> kinds;  // "reply", "close", "timer", "mail", "rcpt", "begin", ...
  std::vector<std::chrono::milliseconds> timers;
  std::vector<queue::Envelope> commits;
  int aborts = 0;
  bool closed = false;

  void take(const Actions& acts) {
    for (const auto& a : acts) {
      if (auto* r = std::get_if<SendReply>(&a)) {
        replies += r->bytes;
        kinds.emplace_back("reply");
      } else if (std::holds_alternative<CloseConnection>(a)) {
        closed = true;
        kinds.emplace_back("close");
      } else if (auto* t = std::get_if<ArmTimer>(&a)) {
        timers.push_back(t->after);
        kinds.emplace_back("timer");
      } else if (std::holds_alternative<CheckMail>(a)) {
        kinds.emplace_back("mail");
      } else if (auto* l = std::get_if<LookupRecipient>(&a)) {
        kinds.push_back("rcpt:" + l->address);
      } else if (std::holds_alternative<BeginMessage>(a)) {
        kinds.emplace_back("begin");
      } else if (auto* b = std::get_if<BodyData>(&a)) {
        body += b->bytes;
        kinds.emplace_back("body");
      } else if (auto* c = std::get_if<CommitMessage>(&a)) {
        commits.push_back(c->envelope);
        kinds.emplace_back("commit");
      } else if (std::holds_alternative<AbortMessage>(a)) {
        ++aborts;
        kinds.emplace_back("abort");
      }
    }
  }
  int count(std::string_view kind) const {
    return static_cast<int>(std::count(kinds.begin(), kinds.end(), std::string(kind)));
  }
};

RecipientVerdict local(std::string mailbox) {
  RecipientVerdict v;
  v.kind = RecipientVerdict::Kind::kLocal;
  v.mailbox = std::move(mailbox);
  return v;
}
RecipientVerdict unknown() { return RecipientVerdict{}; }

struct Fixture {
  explicit Fixture(SessionConfig c = {}, PeerInfo p = {"192.0.2.9", "127.0.0.1"})
      : s(std::move(c), std::move(p), clock) {
    log.take(s.start());
  }
  void in(std::string_view bytes) { log.take(s.on_bytes(bytes)); }
  ManualClock clock;
  ServerSession s;
  Log log;
};

TEST(SessionAsync, PipelinedRepliesStayInOrderWhileLookupsAreOutstanding) {
  Fixture f;
  f.in("EHLO c\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\n");
  f.in("RCPT TO:<nobody@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
  EXPECT_EQ(f.s.awaiting(), Awaiting::kMail);
  EXPECT_EQ(f.log.count("rcpt:alice@example.org"), 0);  // nothing acted on yet
  f.log.take(f.s.on_mail_result(Result<void>()));
  EXPECT_EQ(f.s.awaiting(), Awaiting::kRecipient);
  f.log.take(f.s.on_recipient_result(local("alice")));
  f.log.take(f.s.on_recipient_result(unknown()));
  f.log.take(f.s.on_recipient_result(local("bob")));
  EXPECT_EQ(f.s.awaiting(), Awaiting::kBegin);
  f.log.take(f.s.on_begin_result(std::string("Q7")));
  EXPECT_NE(f.log.replies.find("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <nobody@example.org>: "
                               "Recipient address rejected: User unknown\r\n250 2.1.5 Ok\r\n354 "),
            std::string::npos)
      << f.log.replies;
  f.in("hello\r\n.\r\n");
  ASSERT_EQ(f.log.commits.size(), 1u);
  const auto& e = f.log.commits[0];
  ASSERT_EQ(e.recipients.size(), 2u);
  EXPECT_EQ(e.recipients[0].mailbox, "alice");
  EXPECT_EQ(e.recipients[1].mailbox, "bob");
  // Two recipients: no "for" clause in the Received header (RFC 5321 §4.4).
  EXPECT_EQ(f.log.body.find("\tfor <"), std::string::npos);
  f.log.take(f.s.on_commit_result(std::string("Q7")));
  EXPECT_NE(f.log.replies.find("250 2.0.0 Ok: queued as Q7\r\n"), std::string::npos);
}

TEST(SessionAsync, BytesBeforeThe354InALaterReadAreASyncErrorNotBody) {
  // Hostile #8 with real timing: DATA's answer comes from the store later, and the
  // client sends the body (with a smuggled transaction) before our 354.
  Fixture f;
  f.in("EHLO c\r\nMAIL FROM:<s@example.net>\r\n");
  f.log.take(f.s.on_mail_result(Result<void>()));
  f.in("RCPT TO:<alice@example.org>\r\n");
  f.log.take(f.s.on_recipient_result(local("alice")));
  f.in("DATA\r\n");
  ASSERT_EQ(f.s.awaiting(), Awaiting::kBegin);
  f.in("Spoofed\r\n.\r\nMAIL FROM:<x@evil>\r\n");
  EXPECT_NE(f.log.replies.find("554 5.5.0 "), std::string::npos);
  EXPECT_TRUE(f.log.closed);
  f.log.take(f.s.on_begin_result(std::string("Q1")));
  EXPECT_EQ(f.log.count("body"), 0);
  EXPECT_EQ(f.log.count("commit"), 0);
  EXPECT_EQ(f.log.aborts, 1);  // the writer the store opened is discarded
  EXPECT_EQ(f.log.replies.find("354"), std::string::npos);
}

TEST(SessionAsync, WithoutPipeliningInputWhileAReplyIsDueIsASyncError) {
  Fixture f;
  f.in("HELO c\r\nMAIL FROM:<s@example.net>\r\n");
  // "HELO c\r\nMAIL..." in one read is itself a violation in HELO mode once greeted;
  // HELO was not yet greeted, so MAIL runs and its answer is outstanding.
  ASSERT_EQ(f.s.awaiting(), Awaiting::kMail);
  f.in("RCPT TO:<alice@example.org>\r\n");
  EXPECT_NE(f.log.replies.find("554 5.5.0 "), std::string::npos);
  EXPECT_TRUE(f.s.closed());
  EXPECT_EQ(f.s.counters().pipelining_violations, 1u);
}

TEST(SessionAsync, WithPipeliningInputWhileALookupIsOutstandingIsHeld) {
  Fixture f;
  f.in("EHLO c\r\nMAIL FROM:<s@example.net>\r\n");
  f.in("RCPT TO:<alice@example.org>\r\n");
  EXPECT_FALSE(f.s.closed());
  f.log.take(f.s.on_mail_result(Result<void>()));
  EXPECT_EQ(f.log.count("rcpt:alice@example.org"), 1);
}

TEST(SessionAsync, OversizeBdatIsDrainedWithoutEverOpeningASpool) {
  // Hostile #16: BDAT 4294967296 LAST with a 10 MB limit.
  SessionConfig cfg;
  cfg.max_message_size = 10u << 20;
  Fixture f(cfg);
  f.in("EHLO c\r\nMAIL FROM:<s@example.net>\r\n");
  f.log.take(f.s.on_mail_result(Result<void>()));
  f.in("RCPT TO:<alice@example.org>\r\n");
  f.log.take(f.s.on_recipient_result(local("alice")));
  f.in("BDAT 4294967296 LAST\r\n");
  std::string mib(1u << 20, 'x');
  for (int i = 0; i < 16; ++i) {
    f.in(mib);
    EXPECT_TRUE(f.s.wants_input());
  }
  EXPECT_EQ(f.log.count("begin"), 0);
  EXPECT_EQ(f.log.count("body"), 0);
  EXPECT_EQ(f.s.awaiting(), Awaiting::kNothing);
  EXPECT_EQ(f.log.replies.find("552"), std::string::npos);  // not before the last octet
  EXPECT_FALSE(f.s.closed());
}

TEST(SessionAsync, OversizeBdatAnswers552AfterExactlyNOctets) {
  SessionConfig cfg;
  cfg.max_message_size = 10;
  Fixture f(cfg);
  f.in("EHLO c\r\nMAIL FROM:<s@example.net>\r\n");
  f.log.take(f.s.on_mail_result(Result<void>()));
  f.in("RCPT TO:<alice@example.org>\r\n");
  f.log.take(f.s.on_recipient_result(local("alice")));
  f.in("BDAT 6\r\nabcdef");
  f.log.take(f.s.on_begin_result(std::string("Q1")));
  f.in("BDAT 5\r\nghij");
  EXPECT_EQ(f.log.replies.find("552"), std::string::npos);
  f.in("kNOOP\r\n");  // the 5th octet ends the chunk; NOOP is a command again
  EXPECT_NE(f.log.replies.find("250 2.0.0 6 octets received\r\n552 5.3.4 "), std::string::npos)
      << f.log.replies;
  EXPECT_EQ(f.log.aborts, 1);
  EXPECT_TRUE(f.log.replies.ends_with("552 5.3.4 Error: message too big\r\n250 2.0.0 Ok\r\n"));
  EXPECT_EQ(f.log.body.find("ghij"), std::string::npos);
  // The transaction is over: a LAST chunk now is drained and refused, never committed.
  f.in("BDAT 1 LAST\r\nz");
  EXPECT_NE(f.log.replies.find("503 5.5.1 "), std::string::npos);
  EXPECT_EQ(f.log.count("commit"), 0);
}

TEST(SessionAsync, StoreRefusalAtBdatIsItsCodeAfterTheChunkAndEndsTheTransaction) {
  Fixture f;
  f.in("EHLO c\r\nMAIL FROM:<s@example.net>\r\n");
  f.log.take(f.s.on_mail_result(Result<void>()));
  f.in("RCPT TO:<alice@example.org>\r\n");
  f.log.take(f.s.on_recipient_result(local("alice")));
  f.in("BDAT 3\r\nab");
  f.log.take(f.s.on_begin_result(Result<std::string>(transient_error("4.3.1", "Disk full"))));
  EXPECT_EQ(f.log.replies.find("452"), std::string::npos);
  f.in("c");
  EXPECT_NE(f.log.replies.find("452 4.3.1 Disk full\r\n"), std::string::npos) << f.log.replies;
  f.in("BDAT 2 LAST\r\nde");
  EXPECT_NE(f.log.replies.find("503 5.5.1 "), std::string::npos);
  EXPECT_EQ(f.log.count("commit"), 0);
  EXPECT_EQ(f.log.count("body"), 0);
  EXPECT_EQ(f.s.counters().errors, 1u);  // the 452 was ours, the 503 the client's
}

TEST(SessionAsync, DeadlinesFollowTheState) {
  SessionConfig cfg;
  cfg.greeting_timeout = std::chrono::milliseconds(1001);
  cfg.mail_timeout = std::chrono::milliseconds(1002);
  cfg.rcpt_timeout = std::chrono::milliseconds(1003);
  cfg.data_init_timeout = std::chrono::milliseconds(1004);
  cfg.data_block_timeout = std::chrono::milliseconds(1005);
  Fixture f(cfg);
  ASSERT_EQ(f.log.timers.size(), 1u);
  EXPECT_EQ(f.log.timers.back().count(), 1001);
  f.in("EHLO c\r\n");
  EXPECT_EQ(f.log.timers.back().count(), 1001);
  f.in("MAIL FROM:<s@example.net>\r\n");
  f.log.take(f.s.on_mail_result(Result<void>()));
  EXPECT_EQ(f.log.timers.back().count(), 1002);
  f.in("RCPT TO:<alice@example.org>\r\n");
  f.log.take(f.s.on_recipient_result(local("alice")));
  EXPECT_EQ(f.log.timers.back().count(), 1003);
  f.in("DATA\r\n");
  f.log.take(f.s.on_begin_result(std::string("Q1")));
  EXPECT_EQ(f.log.timers.back().count(), 1004);
  std::size_t n = f.log.timers.size();
  f.in("partial line without end");
  EXPECT_EQ(f.log.timers.size(), n);  // per line, not per read
  f.in("\r\n");
  EXPECT_EQ(f.log.timers.size(), n + 1);
  EXPECT_EQ(f.log.timers.back().count(), 1005);
  f.log.take(f.s.on_timeout());
  EXPECT_NE(f.log.replies.find("421 4.4.2 localhost "), std::string::npos);
  EXPECT_EQ(f.log.aborts, 1);
  EXPECT_TRUE(f.log.closed);
  EXPECT_EQ(f.s.counters().timeouts, 1u);
}

TEST(SessionAsync, ReceivedHeaderForSmtputf8AndIpv6) {
  Fixture f({}, PeerInfo{"2001:db8::1", "::1"});
  f.in("EHLO c.example\r\nMAIL FROM:<j\xc3\xb6rg@example.net> SMTPUTF8\r\n");
  f.log.take(f.s.on_mail_result(Result<void>()));
  f.in("RCPT TO:<alice@example.org>\r\n");
  f.log.take(f.s.on_recipient_result(local("alice")));
  f.in("DATA\r\n");
  f.log.take(f.s.on_begin_result(std::string("Q9")));
  EXPECT_EQ(f.log.body.rfind("Received: from c.example ([IPv6:2001:db8::1])\r\n\tby localhost "
                             "(bridgehead) with UTF8SMTP id Q9\r\n\tfor <alice@example.org>; Tue, 14 "
                             "Nov 2023 22:13:20 +0000\r\n",
                             0),
            0u)
      << f.log.body;
  f.in("x\r\n.\r\n");
  ASSERT_EQ(f.log.commits.size(), 1u);
  EXPECT_TRUE(f.log.commits[0].smtputf8);
  EXPECT_EQ(f.log.commits[0].sender, "j\xc3\xb6rg@example.net");
  EXPECT_EQ(f.log.commits[0].protocol, "UTF8SMTP");
  EXPECT_EQ(f.log.commits[0].received_unix, 1'700'000'000);
}

TEST(SessionAsync, DirectoryFaultsAreNotCountedAsClientErrors) {
  SessionConfig cfg;
  cfg.max_errors = 2;
  Fixture f(cfg);
  f.in("EHLO c\r\nMAIL FROM:<s@example.net>\r\n");
  f.log.take(f.s.on_mail_result(Result<void>()));
  for (int i = 0; i < 5; ++i) {
    f.in("RCPT TO:<alice@example.org>\r\n");
    RecipientVerdict v;
    v.kind = RecipientVerdict::Kind::kError;
    v.error = transient_error("4.4.3", "Directory unavailable");
    f.log.take(f.s.on_recipient_result(v));
  }
  EXPECT_FALSE(f.s.closed());
  EXPECT_EQ(f.s.counters().errors, 0u);
  EXPECT_NE(f.log.replies.find("451 4.4.3 <alice@example.org>: Directory unavailable"), std::string::npos);
}

TEST(SessionAsync, EofMidMessageAbortsTheSpool) {
  Fixture f;
  f.in("EHLO c\r\nMAIL FROM:<s@example.net>\r\n");
  f.log.take(f.s.on_mail_result(Result<void>()));
  f.in("RCPT TO:<alice@example.org>\r\n");
  f.log.take(f.s.on_recipient_result(local("alice")));
  f.in("DATA\r\n");
  f.log.take(f.s.on_begin_result(std::string("Q1")));
  f.in("half a bo");
  f.log.take(f.s.on_eof());
  EXPECT_EQ(f.log.aborts, 1);
  EXPECT_TRUE(f.s.closed());
  EXPECT_EQ(f.log.count("commit"), 0);
}

TEST(SessionAsync, BareLfInCommandsAndBodiesIsCounted) {
  Fixture f;
  f.in("EHLO c\r\nNOOP\nX\r\nMAIL FROM:<s@example.net>\r\n");
  f.log.take(f.s.on_mail_result(Result<void>()));
  f.in("RCPT TO:<alice@example.org>\r\n");
  f.log.take(f.s.on_recipient_result(local("alice")));
  f.in("DATA\r\n");
  f.log.take(f.s.on_begin_result(std::string("Q1")));
  f.in("a\nb\n.\n\r\n.\r\n");
  EXPECT_EQ(f.s.counters().bare_lf, 4u);
  EXPECT_TRUE(f.log.body.ends_with("+0000\r\na\nb\n.\n\r\n")) << f.log.body;
}

// Dot-stuffs `body` (which ends in CRLF) and appends the terminator (RFC 5321 §4.5.2).
std::string stuff(const std::string& body) {
  std::string out;
  bool line_start = true;
  for (char c : body) {
    if (line_start && c == '.') {
      out.push_back('.');
    }
    out.push_back(c);
    line_start = out.size() >= 2 && out[out.size() - 2] == '\r' && c == '\n';
  }
  return out + ".\r\n";
}

TEST(SessionAsync, RandomBodiesRoundTripByteExactInAnySplit) {
  // A body of CR, LF, dots, NUL and 8-bit octets, dot-stuffed by the client, comes out of
  // the session byte-exact, fed whole, one octet at a time or in random pieces.
  std::mt19937 rng(7);
  const char alphabet[] = {'\r', '\n', '.', 'a', '\0', '\xe9', ' '};
  for (int round = 0; round < 200; ++round) {
    std::string body;
    int len = static_cast<int>(rng() % 80);
    for (int i = 0; i < len; ++i) {
      body.push_back(alphabet[rng() % sizeof alphabet]);
    }
    body += "\r\n";
    std::string wire = stuff(body);
    std::string first;
    for (int mode = 0; mode < 3; ++mode) {
      testing::Harness h;
      h.start();
      h.feed("EHLO c\r\nMAIL FROM:<s@example.net> BODY=8BITMIME\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
      std::size_t i = 0;
      while (i < wire.size()) {
        std::size_t n = mode == 0 ? wire.size() : mode == 1 ? 1 : 1 + rng() % 9;
        h.feed(std::string_view(wire).substr(i, n));
        i += n;
      }
      ASSERT_EQ(h.outcome().bodies.size(), 1u) << "round " << round << " mode " << mode;
      ASSERT_EQ(h.outcome().bodies[0], body) << "round " << round << " mode " << mode;
    }
  }
}

TEST(SessionAsync, AnEndlessBodyIsCappedWhileStreamingAndRefusedAtTheEnd) {
  // Hostile #30/#39: 64 MiB with no newline against a 1 MiB cap. Output stops at the
  // cap, the input buffer never grows, and the answer after the dot is 552 5.3.4.
  SessionConfig cfg;
  cfg.max_message_size = 1u << 20;
  Fixture f(cfg);
  f.in("EHLO c\r\nMAIL FROM:<s@example.net>\r\n");
  f.log.take(f.s.on_mail_result(Result<void>()));
  f.in("RCPT TO:<alice@example.org>\r\n");
  f.log.take(f.s.on_recipient_result(local("alice")));
  f.in("DATA\r\n");
  f.log.take(f.s.on_begin_result(std::string("Q1")));
  std::size_t header = f.log.body.size();
  std::string block(64u << 10, 'x');
  for (int i = 0; i < 1024; ++i) {
    f.in(block);
    ASSERT_TRUE(f.s.wants_input());
  }
  EXPECT_EQ(f.log.body.size() - header, cfg.max_message_size);
  EXPECT_EQ(f.log.count("commit"), 0);
  f.in("\r\n.\r\nNOOP\r\n");
  EXPECT_TRUE(f.log.replies.ends_with("552 5.3.4 Error: message too big\r\n250 2.0.0 Ok\r\n"))
      << f.log.replies;
  EXPECT_EQ(f.log.aborts, 1);
  EXPECT_EQ(f.log.count("commit"), 0);
}

TEST(SessionAsync, DeclaredSizeOverTheLimitAndOverflowAre552) {
  SessionConfig cfg;
  cfg.max_message_size = 1000;
  testing::Harness h(cfg);
  auto o = h.run(
      "EHLO c\r\nMAIL FROM:<a@b.example> SIZE=1001\r\nMAIL FROM:<a@b.example> "
      "SIZE=18446744073709551616\r\nMAIL FROM:<a@b.example> SIZE=1x\r\nMAIL FROM:<a@b.example> "
      "SIZE=+5\r\nMAIL FROM:<a@b.example> SIZE=1 SIZE=1\r\nMAIL FROM:<a@b.example> SIZE=1000\r\n");
  EXPECT_EQ(o.codes, (std::vector<int>{220, 250, 552, 552, 501, 501, 501, 250}));
  EXPECT_NE(o.replies.find("552 5.3.4 "), std::string::npos);
}

TEST(SessionAsync, CommitVerdictsMapToTheirCodesAndNeverTo250) {
  struct Case {
    Error e;
    const char* want;
  };
  for (const auto& c : {Case{transient_error("4.3.0", "Queue write failed"), "451 4.3.0 Queue write failed\r\n"},
                        Case{transient_error("4.3.1", "Insufficient system storage"), "452 4.3.1 "},
                        Case{permanent_error("5.3.4", "Message too big for the store"), "552 5.3.4 "},
                        Case{permanent_error("5.6.0", "Bad content"), "554 5.6.0 "}}) {
    Fixture f;
    f.in("EHLO c\r\nMAIL FROM:<s@example.net>\r\n");
    f.log.take(f.s.on_mail_result(Result<void>()));
    f.in("RCPT TO:<alice@example.org>\r\n");
    f.log.take(f.s.on_recipient_result(local("alice")));
    f.in("DATA\r\n");
    f.log.take(f.s.on_begin_result(std::string("Q1")));
    f.in("x\r\n.\r\n");
    ASSERT_EQ(f.s.awaiting(), Awaiting::kCommit);
    f.log.take(f.s.on_commit_result(Result<std::string>(c.e)));
    EXPECT_NE(f.log.replies.find(c.want), std::string::npos) << f.log.replies;
    EXPECT_EQ(f.log.replies.find("250 2.0.0 Ok: queued"), std::string::npos);
    EXPECT_EQ(f.s.counters().messages, 0u);
    // The transaction is over; the session goes on.
    f.in("RCPT TO:<alice@example.org>\r\n");
    EXPECT_TRUE(f.log.replies.ends_with("503 5.5.1 Error: need MAIL command\r\n"));
  }
}

TEST(SessionAsync, HeloArgumentIsADomainOrAddressLiteral) {
  testing::Harness h;
  auto o = h.run(
      "EHLO [300.1.1.1]\r\nEHLO a..b\r\nEHLO -x.example\r\nEHLO my_pc\r\nEHLO [IPv6:::1]\r\n"
      "EHLO\r\nEHLO two words\r\nHELO mx.example.org.\r\n");
  EXPECT_EQ(o.codes, (std::vector<int>{220, 501, 501, 501, 250, 250, 501, 501, 250}));
}

}  // namespace
}  // namespace bh::smtp
