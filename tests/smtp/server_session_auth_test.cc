// AUTH / X-EXPS in the session: what EHLO offers, who gets peer rights, what is stamped.
// The SASL side is the harness's twin (session_harness.cc); the code sequences of the
// hostile-inputs entries are in scenarios/auth.scn.
#include <gtest/gtest.h>

#include "smtp/link2state.h"
#include "smtp/xexch50_props.h"
#include "tests/smtp/session_harness.h"

namespace bh::smtp::testing {
namespace {

SessionConfig auth_config() {
  SessionConfig c;
  c.hostname = "mx.example.org";
  c.starttls = true;
  c.auth_mechanisms = {"GSSAPI", "PLAIN", "LOGIN"};
  return c;
}

// One write per line, as a client that waits for each reply (STARTTLS drops anything
// pipelined behind it).
Outcome talk(Harness& h, std::string_view lines) {
  h.start();
  while (!lines.empty()) {
    auto eol = lines.find("\r\n");
    h.feed(lines.substr(0, eol + 2));
    lines.remove_prefix(eol + 2);
  }
  return h.outcome();
}

std::string ehlo_lines(const std::string& replies, std::size_t from) {
  auto at = replies.find("250-mx.example.org", from);
  return at == std::string::npos ? "" : replies.substr(at, replies.find("250 HELP", at) - at);
}

TEST(SessionAuth, EhloOffersPasswordMechanismsAndXExpsOnlyInsideTls) {
  Harness h(auth_config());
  auto o = talk(h, "EHLO c\r\nSTARTTLS\r\nEHLO c\r\n");
  auto tls = o.replies.find("[TLS]");
  ASSERT_NE(tls, std::string::npos);
  std::string before = ehlo_lines(o.replies, 0), after = ehlo_lines(o.replies, tls);
  EXPECT_NE(before.find("250-AUTH GSSAPI\r\n"), std::string::npos) << before;
  EXPECT_EQ(before.find("X-EXPS"), std::string::npos) << before;
  EXPECT_NE(after.find("250-AUTH GSSAPI PLAIN LOGIN\r\n"), std::string::npos) << after;
  EXPECT_NE(after.find("250-X-EXPS GSSAPI LOGIN\r\n"), std::string::npos) << after;
  EXPECT_NE(after.find("250-X-EXPS=LOGIN\r\n"), std::string::npos) << after;
}

TEST(SessionAuth, NoAuthLineWithoutMechanismsAndAuthIsNotImplemented) {
  SessionConfig c = auth_config();
  c.auth_mechanisms.clear();
  Harness h(c);
  auto o = talk(h, "EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nX-EXPS GSSAPI\r\n");
  EXPECT_EQ(o.replies.find("250-AUTH"), std::string::npos);
  EXPECT_EQ(o.codes, (std::vector<int>{220, 250, 502, 502}));
  EXPECT_EQ(o.auth_exchanges, 0);
}

TEST(SessionAuth, CredentialsInClearTextAreNeverChecked) {
  Harness h(auth_config());
  auto o = talk(h, "EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH LOGIN YWxpY2U=\r\n");
  EXPECT_EQ(o.codes, (std::vector<int>{220, 250, 538, 538}));
  EXPECT_NE(o.replies.find("538 5.7.11 "), std::string::npos);
  EXPECT_EQ(o.auth_exchanges, 0);  // hostile #42: the SASL side never saw them
  EXPECT_TRUE(h.session().authenticated_user().empty());
}

TEST(SessionAuth, XExpsByAPeerServerGivesPeerRights) {
  Harness h(auth_config());
  talk(h, "EHLO c\r\nSTARTTLS\r\nEHLO c\r\nX-EXPS GSSAPI dG9rMQ==\r\ndG9rMg==\r\n");
  EXPECT_NE(h.outcome().replies.find("334 c3J2\r\n"), std::string::npos);  // "srv"
  EXPECT_NE(h.outcome().replies.find("235 2.7.0 "), std::string::npos);
  EXPECT_EQ(h.session().authenticated_user(), "node2@EXAMPLE.TEST");
  EXPECT_TRUE(h.session().peer_rights());
}

TEST(SessionAuth, AValidPrincipalOutsideThePeerListGetsNoPeerRights) {
  Harness h(auth_config());
  talk(h, "EHLO c\r\nSTARTTLS\r\nEHLO c\r\nX-EXPS GSSAPI dG9rMQ==\r\ndG9rMw==\r\n");
  EXPECT_EQ(h.session().authenticated_user(), "carol@EXAMPLE.TEST");
  EXPECT_FALSE(h.session().peer_rights());
}

TEST(SessionAuth, LoggedInMailIsStampedEsmtpsaAndTlsForgetsAnEarlierLogin) {
  Harness h(auth_config());
  auto o = talk(h, 
      "EHLO c\r\nSTARTTLS\r\nEHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"
      "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nx\r\n.\r\n");
  ASSERT_EQ(o.messages.size(), 1u);
  EXPECT_EQ(o.messages[0].protocol, "ESMTPSA");  // RFC 3848
  EXPECT_EQ(h.session().counters().auth_successes, 1u);

  // GSSAPI is allowed in clear text; STARTTLS afterwards forgets the login (RFC 3207 4.2).
  Harness g(auth_config());
  talk(g, "EHLO c\r\nAUTH GSSAPI dG9rMQ==\r\ndG9rMg==\r\n");
  EXPECT_EQ(g.session().authenticated_user(), "node2@EXAMPLE.TEST");
  g.feed("STARTTLS\r\n");
  EXPECT_TRUE(g.session().authenticated_user().empty());
  EXPECT_FALSE(g.session().peer_rights());
}

TEST(SessionAuth, TheLoginLineIsOfferedOnlyUntilSomeoneLogsIn) {
  Harness h(auth_config());
  auto o = talk(h, "EHLO c\r\nSTARTTLS\r\nEHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nEHLO c\r\n");
  auto last = o.replies.rfind("250-mx.example.org");
  ASSERT_NE(last, std::string::npos);
  EXPECT_EQ(o.replies.find("AUTH", last), std::string::npos);
  EXPECT_EQ(h.session().authenticated_user(), "alice");  // EHLO does not log out
}

TEST(SessionPeer, XExch50BlobIsKeptInTheEnvelopeAndLinkStateIsHandedOn) {
  SessionConfig c = auth_config();
  c.auth_requires_tls = false;
  Harness h(c);
  Xexch50Props props;
  props.organization = "org";
  props.hops = {"node1", "node2"};
  props.categorized = true;
  props.recipients = {{"node7", true}};
  const std::string blob = encode_xexch50_props(props);
  talk(h, "EHLO c\r\nAUTH PLAIN AG5vZGUyAHNlY3JldA==\r\nEHLO c\r\n"
          "MAIL FROM:<node2@example.org>\r\nRCPT TO:<alice@example.org>\r\nXEXCH50 " +
              std::to_string(blob.size()) + " 2\r\n");
  h.feed(blob);
  h.feed("DATA\r\n");
  h.feed("x\r\n.\r\n");
  h.feed("X-LINK2STATE FIRST CHUNK=QUJD\r\n");
  h.feed("X-LINK2STATE LAST CHUNK=REVG\r\n");
  const auto& o = h.outcome();
  ASSERT_EQ(o.messages.size(), 1u);
  EXPECT_EQ(o.messages[0].xexch50, blob);
  EXPECT_NE(o.replies.find("250-XEXCH50\r\n250-X-LINK2STATE\r\n"), std::string::npos)
      << "EHLO after the login offers the peer verbs";
  EXPECT_EQ(o.link_states, (std::vector<std::string>{"ABCDEF"}));
  auto back = decode_xexch50_props(o.messages[0].xexch50);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->hops, props.hops);
  EXPECT_TRUE(back->categorized);
  ASSERT_EQ(back->recipients.size(), 1u);
  EXPECT_EQ(back->recipients[0].home_server, "node7");
  EXPECT_TRUE(back->recipients[0].expanded);
}

// The blob of a peer for one recipient, announced and sent.
std::string xexch50_exchange(const Xexch50Props& p) {
  std::string blob = encode_xexch50_props(p);
  return "XEXCH50 " + std::to_string(blob.size()) + " 2\r\n" + blob;
}

TEST(SessionPeer, TheLinkStateEnginesTableGoesBackInTheReplyToTheLastChunk) {
  SessionConfig c = auth_config();
  c.auth_requires_tls = false;
  HarnessOptions opt;
  opt.link_state_reply = std::string(1500, 'T');  // two chunk lines back
  Harness h(c, opt);
  auto o = talk(h, "EHLO c\r\nAUTH PLAIN AG5vZGUyAHNlY3JldA==\r\n"
                   "X-LINK2STATE FIRST CHUNK=QUJD\r\nX-LINK2STATE LAST CHUNK=REVG\r\nNOOP\r\n");
  EXPECT_EQ(o.link_states, (std::vector<std::string>{"ABCDEF"}));
  auto at = o.replies.find("250-X-LINK2STATE FIRST CHUNK=");
  ASSERT_NE(at, std::string::npos) << o.replies;
  auto last = o.replies.find("250-X-LINK2STATE LAST CHUNK=", at);
  ASSERT_NE(last, std::string::npos) << o.replies;
  auto end = o.replies.find("250 2.0.0 OK\r\n", last);
  ASSERT_NE(end, std::string::npos) << o.replies;
  // Every line within the verb's 1024 octets, and the reply reassembles to the table.
  Link2StateReceiver back;
  std::string payload;
  std::size_t pos = at;
  while (pos < end) {
    auto eol = o.replies.find("\r\n", pos);
    EXPECT_LE(eol + 2 - pos, 1024u);
    auto step = back.feed(std::string_view(o.replies).substr(pos + 17, eol - pos - 17));
    if (step.status == Link2StateStatus::kComplete) {
      payload = step.payload;
    }
    pos = eol + 2;
  }
  EXPECT_EQ(payload, *opt.link_state_reply);
  EXPECT_NE(o.replies.find("250 2.0.0 Ok", end + 5), std::string::npos) << "NOOP after it";
}

TEST(SessionPeer, AMessageThatAlreadyPassedThisNodeIsRefusedForNow) {
  SessionConfig c = auth_config();
  c.auth_requires_tls = false;
  c.node_id = "node3";
  Harness h(c);
  Xexch50Props p;
  p.hops = {"node3", "node2"};
  p.recipients = {{}};
  auto o = talk(h, "EHLO c\r\nAUTH PLAIN AG5vZGUyAHNlY3JldA==\r\n"
                   "MAIL FROM:<node2@example.org>\r\nRCPT TO:<alice@example.org>\r\n" +
                       xexch50_exchange(p) + "DATA\r\n");
  EXPECT_NE(o.replies.find("451 4.4.6 Routing loop detected: it already passed through node3; try again later\r\n"),
            std::string::npos)
      << o.replies;
  EXPECT_NE(o.replies.find("503 5.5.1"), std::string::npos) << "the transaction is gone: " << o.replies;
  EXPECT_TRUE(o.messages.empty());
}

TEST(SessionPeer, ARecipientOnItsWayToAnotherNodeIsNotCategorizedHere) {
  SessionConfig c = auth_config();
  c.auth_requires_tls = false;
  c.node_id = "node4";
  Harness h(c);
  Xexch50Props p;
  p.hops = {"node1", "node2"};
  p.recipients = {{"node5", true}, {"node4", true}, {"", true}};
  std::string blob = encode_xexch50_props(p);
  auto o = talk(h, "EHLO c\r\nAUTH PLAIN AG5vZGUyAHNlY3JldA==\r\n"
                   "MAIL FROM:<node2@example.org>\r\nRCPT TO:<staff@example.org>\r\n"
                   "RCPT TO:<staff@example.org>\r\nRCPT TO:<bob@example.org>\r\nXEXCH50 " +
                       std::to_string(blob.size()) + " 4\r\n" + blob + "DATA\r\nx\r\n.\r\n");
  ASSERT_EQ(o.messages.size(), 1u) << o.replies;
  const auto& r = o.messages[0].recipients;
  ASSERT_EQ(r.size(), 3u);
  // For node5 (its expansion server): routed there, not expanded here.
  EXPECT_EQ(r[0].home_server, "node5");
  EXPECT_FALSE(r[0].categorize);
  // For this node: it expands it.
  EXPECT_TRUE(r[1].home_server.empty());
  EXPECT_TRUE(r[1].categorize);
  // A mailbox already resolved by the sender's categorizer: delivered, not redirected again.
  EXPECT_EQ(r[2].mailbox, "bob");
  EXPECT_FALSE(r[2].categorize);
}

TEST(SessionPeer, TooManyHopsIsALoopForGood) {
  SessionConfig c = auth_config();
  c.auth_requires_tls = false;
  Harness h(c);
  Xexch50Props p;
  for (std::size_t i = 0; i < kMaxHops; ++i) {
    p.hops.push_back("n" + std::to_string(i));
  }
  p.recipients = {{}};
  auto o = talk(h, "EHLO c\r\nAUTH PLAIN AG5vZGUyAHNlY3JldA==\r\n"
                   "MAIL FROM:<node2@example.org>\r\nRCPT TO:<alice@example.org>\r\n" +
                       xexch50_exchange(p));
  EXPECT_NE(o.replies.find("554 5.4.6 Routing loop detected: too many hops (30)\r\n"), std::string::npos)
      << o.replies;
}

TEST(SessionPeer, PropertiesThatDoNotParseAreRefusedAndNothingIsKept) {
  SessionConfig c = auth_config();
  c.auth_requires_tls = false;
  Harness h(c);
  std::string blob("\0\0\0\2MP\0\0\0\3RCP", 13);  // framed, but not protobuf
  auto o = talk(h, "EHLO c\r\nAUTH PLAIN AG5vZGUyAHNlY3JldA==\r\n"
                   "MAIL FROM:<node2@example.org>\r\nRCPT TO:<alice@example.org>\r\nXEXCH50 13 2\r\n" +
                       blob + "DATA\r\nx\r\n.\r\n");
  EXPECT_NE(o.replies.find("500 5.5.2 Error processing XEXCH50 command\r\n"), std::string::npos)
      << o.replies;
  ASSERT_EQ(o.messages.size(), 1u);  // the message itself is still welcome
  EXPECT_TRUE(o.messages[0].xexch50.empty());
}

TEST(SessionAtrn, AfterThe250TheSessionIsOverAndNothingMoreIsRead) {
  SessionConfig c = auth_config();
  c.auth_requires_tls = false;
  c.atrn = true;
  Harness h(c);
  auto o = talk(h, "EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nATRN client.example,quiet.example\r\n");
  EXPECT_EQ(o.turned_for, (std::vector<std::string>{"client.example"}));
  EXPECT_NE(o.replies.find("250 2.0.0 OK now reversing the connection\r\n"), std::string::npos);
  EXPECT_TRUE(h.session().closed());
  EXPECT_FALSE(h.session().wants_input());
  std::size_t before = h.outcome().replies.size();
  h.feed("220 client.example ready\r\n");  // the customer, now the server, greets us
  EXPECT_EQ(h.outcome().replies.size(), before);
}

TEST(SessionAtrn, BytesPipelinedBehindAtrnAreAProtocolViolation) {
  SessionConfig c = auth_config();
  c.auth_requires_tls = false;
  c.atrn = true;
  Harness h(c);
  auto o = h.run("EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nATRN\r\n220 x\r\n");
  EXPECT_TRUE(o.turned_for.empty());
  EXPECT_TRUE(o.closed);
  EXPECT_EQ(o.codes.back(), 554);
}

}  // namespace
}  // namespace bh::smtp::testing
