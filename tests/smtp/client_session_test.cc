#include "smtp/client_session.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace bh::smtp {
namespace {

using namespace std::chrono_literals;

// A scripted server: reads what the client writes (commands, DATA bodies, BDAT chunks)
// and answers from its tables, like a real one would. Replies default to success.
struct FakeServer {
  std::string greeting = "220 mx.test ESMTP\r\n";
  std::string ehlo =
      "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250-DSN\r\n"
      "250 ENHANCEDSTATUSCODES\r\n";
  std::string ehlo_after_tls;                  // "" = same as ehlo without STARTTLS
  std::map<std::string, std::string> by_verb;  // "HELO", "MAIL", "DATA", "FINAL", ...
  std::map<std::string, std::string> rcpt;     // address -> reply
  std::vector<std::string> lmtp_final;         // per accepted recipient, in order
  bool lmtp = false;

  // What arrived.
  std::vector<std::string> commands;
  std::string body;  // DATA: the octets between 354 and the final dot, stuffed
  std::vector<std::size_t> bdat_sizes;
  int accepted = 0;

  // Input state.
  std::string in, data_buf;
  enum class Mode { kCommand, kData, kBdat, kAuthUser, kAuthPass } mode = Mode::kCommand;
  std::size_t bdat_left = 0;
  bool bdat_last = false;

  std::string reply(const std::string& verb, const std::string& dflt) {
    auto it = by_verb.find(verb);
    return it == by_verb.end() ? dflt : it->second;
  }
  std::string final_replies() {
    if (!lmtp) {
      return reply("FINAL", "250 2.0.0 Ok: queued as Q1\r\n");
    }
    std::string out;
    for (int i = 0; i < accepted; ++i) {
      out += i < static_cast<int>(lmtp_final.size()) ? lmtp_final[i] : "250 2.0.0 Ok\r\n";
    }
    return out;
  }

  std::string on_write(std::string_view bytes) {
    in.append(bytes);
    std::string out;
    for (;;) {
      if (mode == Mode::kData) {
        data_buf += in;
        in.clear();
        std::size_t used = 0;
        if (data_buf.rfind(".\r\n", 0) == 0) {
          used = 3;  // an empty message
        } else if (std::size_t p = data_buf.find("\r\n.\r\n"); p != std::string::npos) {
          body = data_buf.substr(0, p + 2);
          used = p + 5;
        } else {
          return out;
        }
        in = data_buf.substr(used);
        data_buf.clear();
        mode = Mode::kCommand;
        out += final_replies();
        continue;
      }
      if (mode == Mode::kBdat) {
        std::size_t n = std::min(bdat_left, in.size());
        body += in.substr(0, n);
        in.erase(0, n);
        bdat_left -= n;
        if (bdat_left > 0) {
          return out;
        }
        mode = Mode::kCommand;
        out += bdat_last ? final_replies() : reply("BDAT", "250 2.0.0 chunk ok\r\n");
        continue;
      }
      std::size_t eol = in.find("\r\n");
      if (eol == std::string::npos) {
        return out;
      }
      std::string line = in.substr(0, eol);
      in.erase(0, eol + 2);
      commands.push_back(line);
      if (mode == Mode::kAuthUser) {
        mode = Mode::kAuthPass;
        out += reply("AUTH2", "334 UGFzc3dvcmQ6\r\n");
        continue;
      }
      if (mode == Mode::kAuthPass) {
        mode = Mode::kCommand;
        out += reply("AUTH", "235 2.7.0 Authentication successful\r\n");
        continue;
      }
      std::string verb = line.substr(0, line.find_first_of(" :"));
      if (verb == "EHLO" || verb == "LHLO") {
        out += ehlo;
      } else if (verb == "HELO") {
        out += reply("HELO", "250 mx.test\r\n");
      } else if (verb == "STARTTLS") {
        std::string r = reply("STARTTLS", "220 2.0.0 Ready to start TLS\r\n");
        if (r.rfind("220", 0) == 0) {
          ehlo = ehlo_after_tls;
        }
        out += r;
      } else if (line == "AUTH LOGIN") {
        mode = Mode::kAuthUser;
        out += reply("AUTH1", "334 VXNlcm5hbWU6\r\n");
      } else if (verb == "AUTH") {
        out += reply("AUTH", "235 2.7.0 Authentication successful\r\n");
      } else if (verb == "MAIL") {
        out += reply("MAIL", "250 2.1.0 Ok\r\n");
      } else if (verb == "RCPT") {
        std::string addr = line.substr(9, line.find('>') - 9);
        auto it = rcpt.find(addr);
        std::string r = it == rcpt.end() ? "250 2.1.5 Ok\r\n" : it->second;
        accepted += r[0] == '2' ? 1 : 0;
        out += r;
      } else if (verb == "DATA") {
        std::string r = reply("DATA", accepted > 0 ? "354 End data with <CR><LF>.<CR><LF>\r\n"
                                                   : "554 5.5.1 Error: no valid recipients\r\n");
        if (r.rfind("354", 0) == 0) {
          mode = Mode::kData;
        }
        out += r;
      } else if (verb == "BDAT") {
        std::string rest = line.substr(5);
        bdat_left = std::stoull(rest);
        bdat_last = rest.find(" LAST") != std::string::npos;
        bdat_sizes.push_back(bdat_left);
        mode = Mode::kBdat;
      } else if (verb == "RSET") {
        accepted = 0;
        out += reply("RSET", "250 2.0.0 Ok\r\n");
      } else if (verb == "QUIT") {
        out += reply("QUIT", "221 2.0.0 Bye\r\n");
      } else {
        out += "502 5.5.2 Error: command not recognized\r\n";
      }
    }
  }
};

// Runs one ClientSession. With a FakeServer every write goes to it and its replies are
// fed back, whole (piece 0) or `piece` octets at a time; without one the test feeds the
// server side by hand. Body chunks are served from `body` automatically.
struct Driver {
  ClientSession session;
  FakeServer* server = nullptr;
  std::size_t piece = 0;
  std::string body;
  std::size_t body_pos = 0;
  bool auto_body = true, auto_tls = true;
  bool last_alone = false;  // signal the end with an extra empty chunk

  std::vector<std::string> writes;  // one entry per SendBytes
  std::vector<ArmDeadline> timers;
  std::vector<std::string> events;  // "StartTls", "NeedBody", "Finished", "Disconnect"
  std::optional<ClientResult> result;
  std::string pending;  // server octets not yet fed
  std::size_t need_body = 0;

  Driver(ClientConfig cfg, OutboundMessage msg) : session(std::move(cfg), std::move(msg)) {}

  std::string sent() const {
    std::string s;
    for (const auto& w : writes) {
      s += w;
    }
    return s;
  }

  void handle(ClientActions acts) {
    for (auto& a : acts) {
      if (auto* s = std::get_if<SendBytes>(&a)) {
        EXPECT_FALSE(s->bytes.empty());
        writes.push_back(s->bytes);
        if (server != nullptr) {
          pending += server->on_write(s->bytes);
        }
      } else if (auto* t = std::get_if<ArmDeadline>(&a)) {
        timers.push_back(*t);
      } else if (std::holds_alternative<StartTls>(a)) {
        events.emplace_back("StartTls");
        if (auto_tls) {
          handle(session.on_tls_established());
        }
      } else if (auto* n = std::get_if<NeedBody>(&a)) {
        events.emplace_back("NeedBody");
        ++need_body;
        if (auto_body) {
          std::size_t len = std::min(n->max_bytes, body.size() - body_pos);
          std::string_view chunk = std::string_view(body).substr(body_pos, len);
          body_pos += len;
          bool last = body_pos == body.size() && (!last_alone || len == 0);
          handle(session.on_body_chunk(chunk, last));
        }
      } else if (auto* f = std::get_if<Finished>(&a)) {
        events.emplace_back("Finished");
        EXPECT_FALSE(result.has_value()) << "Finished twice";
        result = f->result;
      } else if (std::holds_alternative<Disconnect>(a)) {
        events.emplace_back("Disconnect");
        EXPECT_TRUE(result.has_value()) << "Disconnect before Finished";
      }
    }
  }

  // Feeds the server's pending octets until it has nothing more to say.
  void pump() {
    while (!pending.empty() && !session.closed()) {
      std::size_t n = piece == 0 ? pending.size() : std::min(piece, pending.size());
      std::string chunk = pending.substr(0, n);
      pending.erase(0, n);
      handle(session.on_bytes(chunk));
    }
  }
  void run() {
    handle(session.start());
    if (server != nullptr) {
      pending += server->greeting;
      pump();
    }
  }
  void feed(std::string_view bytes) {
    if (piece == 0) {
      handle(session.on_bytes(bytes));
      return;
    }
    for (std::size_t i = 0; i < bytes.size() && !session.closed(); i += piece) {
      handle(session.on_bytes(bytes.substr(i, piece)));
    }
  }
};

OutboundMessage message(std::vector<std::string> rcpts, std::uint64_t size = 100) {
  OutboundMessage m;
  m.sender = "sender@example.org";
  for (auto& r : rcpts) {
    m.recipients.push_back(OutboundRecipient{r, queue::kNotifyUnspecified, ""});
  }
  m.size = size;
  return m;
}

ClientConfig config() {
  ClientConfig c;
  c.helo_name = "relay.example.org";
  c.tls = TlsPolicy::kNever;
  return c;
}

// Runs a whole session against `server` and returns the driver; fed whole or 1 octet.
std::unique_ptr<Driver> converse(FakeServer& server, ClientConfig cfg, OutboundMessage msg,
                                 std::string body, std::size_t piece) {
  auto d = std::make_unique<Driver>(std::move(cfg), std::move(msg));
  d->server = &server;
  d->piece = piece;
  d->body = std::move(body);
  d->run();
  return d;
}

// Runs `test` with the server replies fed whole and one octet at a time; `make` builds a
// fresh server each time.
template <class Make, class Test>
void both_ways(Make make, Test test) {
  for (std::size_t piece : {std::size_t{0}, std::size_t{1}}) {
    SCOPED_TRACE(piece == 0 ? "replies whole" : "replies one octet at a time");
    FakeServer s = make();
    test(s, piece);
  }
}

FakeServer plain_server() { return FakeServer{}; }

const RecipientOutcome& outcome(const Driver& d, std::size_t i) {
  return d.result->recipients.at(i);
}

// ---------------------------------------------------------------------------------------

TEST(ClientSession, PipelinedDeliveryWritesOneGroupAndMatchesRepliesInOrder) {
  both_ways(plain_server, [](FakeServer& s, std::size_t piece) {
    auto d = converse(s, config(), message({"a@example.net", "b@example.net"}, 11),
                      "Hello\r\nWorld", piece);
    std::vector<std::string> want = {"EHLO relay.example.org",
                                     "MAIL FROM:<sender@example.org> SIZE=11",
                                     "RCPT TO:<a@example.net>",
                                     "RCPT TO:<b@example.net>",
                                     "DATA",
                                     "QUIT"};
    EXPECT_EQ(s.commands, want);
    // RFC 2920: MAIL, both RCPTs and DATA leave in one write.
    ASSERT_GE(d->writes.size(), 3u);
    EXPECT_EQ(d->writes[1],
              "MAIL FROM:<sender@example.org> SIZE=11\r\nRCPT TO:<a@example.net>\r\n"
              "RCPT TO:<b@example.net>\r\nDATA\r\n");
    EXPECT_EQ(s.body, "Hello\r\nWorld\r\n");
    ASSERT_TRUE(d->result);
    EXPECT_FALSE(d->result->hop_error);
    EXPECT_TRUE(d->result->mail_sent);
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(outcome(*d, i).status, DeliveryStatus::kDelivered);
      EXPECT_EQ(outcome(*d, i).code, 250);
      EXPECT_EQ(outcome(*d, i).enhanced, "2.0.0");
      EXPECT_EQ(outcome(*d, i).text, "Ok: queued as Q1");
    }
    EXPECT_EQ(d->result->recipients[1].address, "b@example.net");
    std::vector<std::string> ev = {"NeedBody", "Finished", "Disconnect"};
    EXPECT_EQ(d->events, ev);
    EXPECT_TRUE(d->session.closed());
  });
}

TEST(ClientSession, WithoutPipeliningOneCommandPerWrite) {
  both_ways(
      [] {
        FakeServer s;
        s.ehlo = "250-mx.test\r\n250 8BITMIME\r\n";
        return s;
      },
      [](FakeServer& s, std::size_t piece) {
        auto d = converse(s, config(), message({"a@example.net", "b@example.net"}), "x", piece);
        std::vector<std::string> want = {"EHLO relay.example.org\r\n",
                                         "MAIL FROM:<sender@example.org>\r\n",
                                         "RCPT TO:<a@example.net>\r\n",
                                         "RCPT TO:<b@example.net>\r\n",
                                         "DATA\r\n",
                                         "x\r\n.\r\n",
                                         "QUIT\r\n"};
        EXPECT_EQ(d->writes, want);
        EXPECT_EQ(outcome(*d, 1).status, DeliveryStatus::kDelivered);
      });
}

TEST(ClientSession, EhloRefusedFallsBackToHelo) {
  for (const char* refusal :
       {"500 5.5.1 what?\r\n", "502 5.5.2 unknown\r\n", "504 no\r\n", "550 not here\r\n"}) {
    both_ways(
        [&] {
          FakeServer s;
          s.ehlo = refusal;
          return s;
        },
        [](FakeServer& s, std::size_t piece) {
          OutboundMessage m = message({"a@example.net"});
          m.envid = "ENV1";
          m.ret = queue::DsnRet::kFull;
          auto d = converse(s, config(), m, "x\r\n", piece);
          std::vector<std::string> want = {"EHLO relay.example.org",
                                           "HELO relay.example.org",
                                           "MAIL FROM:<sender@example.org>",
                                           "RCPT TO:<a@example.net>",
                                           "DATA",
                                           "QUIT"};
          EXPECT_EQ(s.commands, want);  // no SIZE/DSN parameters after HELO
          EXPECT_FALSE(d->session.capabilities().esmtp);
          EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kDelivered);
        });
  }
}

TEST(ClientSession, EightBitBodyToAHeloServerFailsTheHopWithoutMail) {
  FakeServer s;
  s.ehlo = "502 5.5.2 unknown\r\n";
  OutboundMessage m = message({"a@example.net"});
  m.body = queue::BodyType::k8BitMime;
  auto d = converse(s, config(), m, "caf\xc3\xa9\r\n", 1);
  EXPECT_EQ(s.commands,
            (std::vector<std::string>{"EHLO relay.example.org", "HELO relay.example.org", "QUIT"}));
  ASSERT_TRUE(d->result->hop_error);
  EXPECT_EQ(d->result->hop_error->enhanced, "5.6.3");
  EXPECT_FALSE(d->result->mail_sent);
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kPermanent);
  EXPECT_EQ(outcome(*d, 0).enhanced, "5.6.3");
}

TEST(ClientSession, EightBitBodyAnnouncesBody8BitMime) {
  FakeServer s;
  OutboundMessage m = message({"a@example.net"}, 7);
  m.body = queue::BodyType::k8BitMime;
  auto d = converse(s, config(), m, "caf\xc3\xa9\r\n", 0);
  EXPECT_EQ(s.commands[1], "MAIL FROM:<sender@example.org> SIZE=7 BODY=8BITMIME");
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kDelivered);
}

TEST(ClientSession, MixedRecipientResults) {
  both_ways(
      [] {
        FakeServer s;
        s.rcpt["b@example.net"] = "450 4.2.1 Mailbox busy, try later\r\n";
        s.rcpt["c@example.net"] = "550 5.1.1 <c@example.net>: User unknown\r\n";
        s.rcpt["d@example.net"] = "452 too many recipients\r\n";  // no enhanced code
        return s;
      },
      [](FakeServer& s, std::size_t piece) {
        auto d =
            converse(s, config(),
                     message({"a@example.net", "b@example.net", "c@example.net", "d@example.net"}),
                     "x", piece);
        EXPECT_EQ(s.commands.back(), "QUIT");
        EXPECT_EQ(s.body, "x\r\n");
        EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kDelivered);
        EXPECT_EQ(outcome(*d, 1).status, DeliveryStatus::kTransient);
        EXPECT_EQ(outcome(*d, 1).code, 450);
        EXPECT_EQ(outcome(*d, 1).enhanced, "4.2.1");
        EXPECT_EQ(outcome(*d, 1).text, "Mailbox busy, try later");
        EXPECT_EQ(outcome(*d, 2).status, DeliveryStatus::kPermanent);
        EXPECT_EQ(outcome(*d, 2).enhanced, "5.1.1");
        EXPECT_EQ(outcome(*d, 3).status, DeliveryStatus::kTransient);
        EXPECT_EQ(outcome(*d, 3).enhanced, "4.0.0");  // generic when the server sent none
        EXPECT_FALSE(d->result->hop_error);
      });
}

TEST(ClientSession, AllRecipientsRejectedMeansNoBody) {
  // Pipelined: DATA was already sent; the server refuses it and nothing follows.
  both_ways(
      [] {
        FakeServer s;
        s.rcpt["a@example.net"] = "550 5.1.1 unknown\r\n";
        s.rcpt["b@example.net"] = "451 4.3.0 try later\r\n";
        return s;
      },
      [](FakeServer& s, std::size_t piece) {
        auto d =
            converse(s, config(), message({"a@example.net", "b@example.net"}), "secret", piece);
        EXPECT_EQ(s.commands.back(), "QUIT");
        EXPECT_EQ(d->need_body, 0u);
        EXPECT_EQ(d->sent().find("secret"), std::string::npos);
        EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kPermanent);
        EXPECT_EQ(outcome(*d, 1).status, DeliveryStatus::kTransient);
      });
  // Without pipelining DATA is never sent.
  FakeServer s;
  s.ehlo = "250-mx.test\r\n250 SIZE\r\n";
  s.rcpt["a@example.net"] = "550 5.1.1 unknown\r\n";
  auto d = converse(s, config(), message({"a@example.net"}), "secret", 0);
  EXPECT_EQ(s.commands, (std::vector<std::string>{"EHLO relay.example.org",
                                                  "MAIL FROM:<sender@example.org> SIZE=100",
                                                  "RCPT TO:<a@example.net>", "QUIT"}));
}

TEST(ClientSession, PipelinedDataAcceptedForNobodySendsAnEmptyMessage) {
  // RFC 2920 §3.1: a server that answers 354 although every RCPT failed gets a lone dot.
  FakeServer s;
  s.rcpt["a@example.net"] = "550 5.1.1 unknown\r\n";
  s.by_verb["DATA"] = "354 go ahead\r\n";
  auto d = converse(s, config(), message({"a@example.net"}), "secret", 1);
  EXPECT_EQ(d->need_body, 0u);
  EXPECT_EQ(s.body, "");
  EXPECT_EQ(d->writes[2], ".\r\n");
  EXPECT_EQ(s.commands.back(), "QUIT");
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kPermanent);
}

TEST(ClientSession, MessageOverTheServersSizeLimitFailsPermanentlyWithoutMail) {
  both_ways(
      [] {
        FakeServer s;
        s.ehlo = "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
        return s;
      },
      [](FakeServer& s, std::size_t piece) {
        auto d =
            converse(s, config(), message({"a@example.net", "b@example.net"}, 5000), "x", piece);
        EXPECT_EQ(s.commands, (std::vector<std::string>{"EHLO relay.example.org", "QUIT"}));
        ASSERT_TRUE(d->result->hop_error);
        EXPECT_FALSE(d->result->hop_error->transient());
        EXPECT_EQ(d->result->hop_error->enhanced, "5.3.4");
        EXPECT_EQ(outcome(*d, 1).status, DeliveryStatus::kPermanent);
        EXPECT_EQ(outcome(*d, 1).enhanced, "5.3.4");
        EXPECT_EQ(d->session.capabilities().size_limit, 1000u);
      });
}

TEST(ClientSession, SizeZeroMeansNoLimit) {
  FakeServer s;
  s.ehlo = "250-mx.test\r\n250 SIZE 0\r\n";
  auto d = converse(s, config(), message({"a@example.net"}, 1u << 30), "x", 0);
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kDelivered);
}

TEST(ClientSession, SmtputfNeededButNotOffered) {
  FakeServer s;
  OutboundMessage m = message({"j\xc3\xb6rg@example.net"});
  m.smtputf8 = true;
  auto d = converse(s, config(), m, "x", 0);
  EXPECT_EQ(d->result->hop_error->enhanced, "5.6.7");
  EXPECT_EQ(s.commands.size(), 2u);
}

TEST(ClientSession, TlsRequiredButNotOfferedIsTransient474) {
  both_ways(plain_server, [](FakeServer& s, std::size_t piece) {
    ClientConfig c = config();
    c.tls = TlsPolicy::kRequired;
    auto d = converse(s, c, message({"a@example.net"}), "x", piece);
    EXPECT_EQ(s.commands, (std::vector<std::string>{"EHLO relay.example.org", "QUIT"}));
    ASSERT_TRUE(d->result->hop_error);
    EXPECT_TRUE(d->result->hop_error->transient());
    EXPECT_EQ(d->result->hop_error->enhanced, "4.7.4");
    EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kTransient);
    EXPECT_EQ(outcome(*d, 0).enhanced, "4.7.4");
  });
}

FakeServer tls_server() {
  FakeServer s;
  s.ehlo = "250-mx.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n";
  s.ehlo_after_tls = "250-mx.test\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n";
  return s;
}

TEST(ClientSession, OpportunisticStartTlsThenEhloAgain) {
  both_ways(tls_server, [](FakeServer& s, std::size_t piece) {
    ClientConfig c = config();
    c.tls = TlsPolicy::kOpportunistic;
    auto d = converse(s, c, message({"a@example.net"}), "x", piece);
    std::vector<std::string> want = {"EHLO relay.example.org",
                                     "STARTTLS",
                                     "EHLO relay.example.org",
                                     "MAIL FROM:<sender@example.org>",
                                     "RCPT TO:<a@example.net>",
                                     "DATA",
                                     "QUIT"};
    EXPECT_EQ(s.commands, want);
    EXPECT_EQ(d->events.front(), "StartTls");
    EXPECT_TRUE(d->result->tls);
    EXPECT_EQ(d->timers[3].kind, ClientTimer::kTlsHandshake);
    EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kDelivered);
  });
}

TEST(ClientSession, StartTlsRefusedOpportunisticCarriesOnRequiredFails) {
  FakeServer s = tls_server();
  s.by_verb["STARTTLS"] = "454 4.7.0 TLS not available\r\n";
  ClientConfig c = config();
  c.tls = TlsPolicy::kOpportunistic;
  auto d = converse(s, c, message({"a@example.net"}), "x", 0);
  EXPECT_FALSE(d->result->tls);
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kDelivered);

  FakeServer s2 = tls_server();
  s2.by_verb["STARTTLS"] = "454 4.7.0 TLS not available\r\n";
  c.tls = TlsPolicy::kRequired;
  auto d2 = converse(s2, c, message({"a@example.net"}), "x", 0);
  EXPECT_EQ(d2->result->hop_error->enhanced, "4.7.4");
  EXPECT_EQ(d2->result->hop_code, 454);
  EXPECT_EQ(s2.commands.back(), "QUIT");
}

TEST(ClientSession, StartTlsInjectionIsRefused) {
  // CVE-2011-0411 class: a reply smuggled behind the 220 in the same plaintext read.
  ClientConfig c = config();
  c.tls = TlsPolicy::kOpportunistic;
  for (std::size_t piece : {std::size_t{0}, std::size_t{1}}) {
    Driver d(c, message({"a@example.net"}));
    d.piece = piece;
    d.auto_tls = false;
    d.handle(d.session.start());
    d.feed("220 hi\r\n");
    d.feed("250-mx\r\n250 STARTTLS\r\n");
    std::string in = "220 go\r\n250 injected\r\n";
    if (piece == 0) {
      d.feed(in);
    } else {
      // Octet by octet the 220 ends a read; the injected octets are then plaintext that
      // arrives during the handshake.
      d.feed(in.substr(0, 8));
      EXPECT_EQ(d.events.back(), "StartTls");
      d.feed(in.substr(8));
    }
    ASSERT_TRUE(d.result);
    EXPECT_EQ(d.result->hop_error->enhanced, "4.5.0");
    EXPECT_FALSE(d.result->tls);
    EXPECT_TRUE(d.session.closed());
  }
}

TEST(ClientSession, TlsHandshakeFailureIs475) {
  ClientConfig c = config();
  c.tls = TlsPolicy::kOpportunistic;
  Driver d(c, message({"a@example.net"}));
  d.auto_tls = false;
  d.handle(d.session.start());
  d.feed("220 hi\r\n250-mx\r\n250 STARTTLS\r\n220 go\r\n");
  ASSERT_EQ(d.events.back(), "StartTls");
  d.handle(d.session.on_tls_failed());
  EXPECT_EQ(d.result->hop_error->enhanced, "4.7.5");
  EXPECT_EQ(d.events.back(), "Disconnect");
}

TEST(ClientSession, AuthPlainAfterTls) {
  both_ways(tls_server, [](FakeServer& s, std::size_t piece) {
    ClientConfig c = config();
    c.tls = TlsPolicy::kRequired;
    c.auth = ClientCredentials{"user", "pass"};
    auto d = converse(s, c, message({"a@example.net"}), "x", piece);
    ASSERT_GE(s.commands.size(), 5u);
    EXPECT_EQ(s.commands[3], "AUTH PLAIN AHVzZXIAcGFzcw==");  // base64("\0user\0pass")
    EXPECT_EQ(s.commands[4], "MAIL FROM:<sender@example.org>");
    EXPECT_TRUE(d->result->authenticated);
    EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kDelivered);
  });
}

TEST(ClientSession, AuthLoginExchange) {
  both_ways(
      [] {
        FakeServer s = tls_server();
        s.ehlo_after_tls = "250-mx.test\r\n250 AUTH LOGIN CRAM-MD5\r\n";
        return s;
      },
      [](FakeServer& s, std::size_t piece) {
        ClientConfig c = config();
        c.tls = TlsPolicy::kOpportunistic;
        c.auth = ClientCredentials{"alice", "s3cret!"};
        auto d = converse(s, c, message({"a@example.net"}), "x", piece);
        ASSERT_GE(s.commands.size(), 7u);
        EXPECT_EQ(s.commands[3], "AUTH LOGIN");
        EXPECT_EQ(s.commands[4], "YWxpY2U=");
        EXPECT_EQ(s.commands[5], "czNjcmV0IQ==");
        EXPECT_EQ(s.commands[6], "MAIL FROM:<sender@example.org>");
        EXPECT_TRUE(d->result->authenticated);
      });
}

TEST(ClientSession, AuthNeedsTlsUnlessAllowed) {
  FakeServer s;
  s.ehlo = "250-mx.test\r\n250 AUTH PLAIN\r\n";
  ClientConfig c = config();
  c.auth = ClientCredentials{"user", "pass"};
  auto d = converse(s, c, message({"a@example.net"}), "x", 0);
  EXPECT_EQ(s.commands, (std::vector<std::string>{"EHLO relay.example.org", "QUIT"}));
  EXPECT_EQ(d->result->hop_error->enhanced, "4.7.11");
  EXPECT_EQ(d->sent().find("AUTH"), std::string::npos);  // credentials never in plaintext

  FakeServer s2;
  s2.ehlo = s.ehlo;
  c.auth_without_tls = true;
  auto d2 = converse(s2, c, message({"a@example.net"}), "x", 0);
  EXPECT_EQ(s2.commands[1], "AUTH PLAIN AHVzZXIAcGFzcw==");
  EXPECT_EQ(outcome(*d2, 0).status, DeliveryStatus::kDelivered);
}

TEST(ClientSession, AuthRefusedIsTransient478) {
  FakeServer s;
  s.ehlo = "250-mx.test\r\n250 AUTH PLAIN\r\n";
  s.by_verb["AUTH"] = "535 5.7.8 Error: authentication failed\r\n";
  ClientConfig c = config();
  c.auth = ClientCredentials{"user", "bad"};
  c.auth_without_tls = true;
  auto d = converse(s, c, message({"a@example.net"}), "x", 1);
  ASSERT_TRUE(d->result->hop_error);
  EXPECT_TRUE(d->result->hop_error->transient());
  EXPECT_EQ(d->result->hop_error->enhanced, "4.7.8");
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kTransient);
  EXPECT_EQ(s.commands.back(), "QUIT");

  FakeServer s3;
  s3.ehlo = "250-mx.test\r\n250 AUTH CRAM-MD5\r\n";
  auto d3 = converse(s3, c, message({"a@example.net"}), "x", 0);
  EXPECT_EQ(d3->result->hop_error->enhanced, "4.7.4");
}

FakeServer chunking_server() {
  FakeServer s;
  s.ehlo = "250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-BINARYMIME\r\n250 8BITMIME\r\n";
  return s;
}

TEST(ClientSession, BdatSendsChunksByteExact) {
  both_ways(chunking_server, [](FakeServer& s, std::size_t piece) {
    ClientConfig c = config();
    c.body_chunk = 10;
    std::string body = ".dot\r\nbare\nlf\r\n.\r\nend-no-crlf!!";  // 31 octets, sent as is
    ASSERT_EQ(body.size(), 31u);
    auto d = converse(s, c, message({"a@example.net", "b@example.net"}), body, piece);
    EXPECT_EQ(s.body, body);
    EXPECT_EQ(s.bdat_sizes, (std::vector<std::size_t>{10, 10, 10, 1}));
    std::vector<std::string> want = {"EHLO relay.example.org",
                                     "MAIL FROM:<sender@example.org>",
                                     "RCPT TO:<a@example.net>",
                                     "RCPT TO:<b@example.net>",
                                     "BDAT 10",
                                     "BDAT 10",
                                     "BDAT 10",
                                     "BDAT 1 LAST",
                                     "QUIT"};
    EXPECT_EQ(s.commands, want);
    // BDAT is not pipelined behind the RCPTs: no body for refused recipients.
    EXPECT_EQ(d->writes[1].find("BDAT"), std::string::npos);
    EXPECT_EQ(outcome(*d, 1).status, DeliveryStatus::kDelivered);
  });
}

TEST(ClientSession, BdatEmptyLastChunk) {
  FakeServer s = chunking_server();
  ClientConfig c = config();
  c.body_chunk = 4;
  auto d = std::make_unique<Driver>(c, message({"a@example.net"}));
  d->server = &s;
  d->body = "abcd";
  d->last_alone = true;  // the queue file ends exactly at a chunk boundary
  d->run();
  EXPECT_EQ(s.bdat_sizes, (std::vector<std::size_t>{4, 0}));
  EXPECT_EQ(s.commands[4], "BDAT 0 LAST");
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kDelivered);
}

TEST(ClientSession, BdatChunkRefusedEndsTheTransaction) {
  FakeServer s = chunking_server();
  s.by_verb["BDAT"] = "552 5.3.4 Message too big\r\n";
  ClientConfig c = config();
  c.body_chunk = 2;
  auto d = converse(s, c, message({"a@example.net"}), "abcdef", 1);
  EXPECT_EQ(s.bdat_sizes.size(), 1u);
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kPermanent);
  EXPECT_EQ(outcome(*d, 0).enhanced, "5.3.4");
  EXPECT_EQ(s.commands.back(), "QUIT");
}

TEST(ClientSession, BinaryBodyNeedsBinarymimeAndChunking) {
  OutboundMessage m = message({"a@example.net"});
  m.body = queue::BodyType::kBinaryMime;
  FakeServer s = chunking_server();
  ClientConfig c = config();
  c.use_chunking = false;  // binary forces BDAT anyway
  std::string body("\0\x01\xff\r\n.\r\n", 8);
  auto d = converse(s, c, m, body, 0);
  EXPECT_EQ(s.commands[1], "MAIL FROM:<sender@example.org> BODY=BINARYMIME");
  EXPECT_EQ(s.body, body);
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kDelivered);

  FakeServer s2;  // 8BITMIME only
  auto d2 = converse(s2, c, m, body, 0);
  EXPECT_EQ(d2->result->hop_error->enhanced, "5.6.3");
  EXPECT_EQ(s2.commands.size(), 2u);
}

// The octets after the 354, for `body` fed in chunks of `chunk` (and, with last_alone,
// an empty last chunk).
std::string data_section(const std::string& body, std::size_t chunk, bool last_alone) {
  FakeServer s;
  s.ehlo = "250 mx.test\r\n";
  ClientConfig c = config();
  c.body_chunk = chunk;
  auto d = std::make_unique<Driver>(c, message({"a@example.net"}));
  d->server = &s;
  d->body = body;
  d->last_alone = last_alone;
  d->run();
  std::string sent = d->sent();
  std::size_t start = sent.find("DATA\r\n") + 6;
  std::size_t end = sent.find("QUIT\r\n");
  return sent.substr(start, end - start);
}

TEST(ClientSession, DotStuffingIsByteExact) {
  for (std::size_t chunk : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{1000}}) {
    for (bool alone : {false, true}) {
      SCOPED_TRACE("chunk " + std::to_string(chunk) + (alone ? ", empty last chunk" : ""));
      auto data_section = [&](const std::string& body) {
        return smtp::data_section(body, chunk, alone);
      };
      EXPECT_EQ(data_section("a\r\n.b\r\n..c\r\n.\r\nend"),
                "a\r\n..b\r\n...c\r\n..\r\nend\r\n.\r\n");
      EXPECT_EQ(data_section(".first\r\n"), "..first\r\n.\r\n");
      EXPECT_EQ(data_section(""), ".\r\n");
      EXPECT_EQ(data_section("\r\n"), "\r\n.\r\n");
      EXPECT_EQ(data_section("x"), "x\r\n.\r\n");
      EXPECT_EQ(data_section("."), "..\r\n.\r\n");
      // Bare LF and bare CR leave as CRLF, so no downstream server can see an end of data
      // we did not send (SMTP smuggling: "\n.\n", "\r.\r").
      EXPECT_EQ(data_section("a\n.\nb\r.\rc\r"), "a\r\n..\r\nb\r\n..\r\nc\r\n.\r\n");
      EXPECT_EQ(data_section("x\r\n.\r\nMAIL FROM:<e@vil>\r\n"),
                "x\r\n..\r\nMAIL FROM:<e@vil>\r\n.\r\n");
    }
  }
}

TEST(ClientSession, DsnParametersOnlyWhenOffered) {
  OutboundMessage m = message({"a@example.net", "b@example.net"});
  m.ret = queue::DsnRet::kHeaders;
  m.envid = "Q+1 x";
  m.recipients[0].notify = queue::kNotifySuccess | queue::kNotifyFailure;
  m.recipients[0].orcpt = "rfc822;a+b=c@example.net";
  m.recipients[1].notify = queue::kNotifyNever;
  FakeServer s;  // offers DSN
  auto d = converse(s, config(), m, "x", 0);
  EXPECT_EQ(s.commands[1], "MAIL FROM:<sender@example.org> SIZE=100 RET=HDRS ENVID=Q+2B1+20x");
  EXPECT_EQ(s.commands[2],
            "RCPT TO:<a@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb+3Dc@example.net");
  EXPECT_EQ(s.commands[3], "RCPT TO:<b@example.net> NOTIFY=NEVER");
  EXPECT_TRUE(d->result->dsn_passed);

  FakeServer s2;
  s2.ehlo = "250-mx.test\r\n250 PIPELINING\r\n";
  auto d2 = converse(s2, config(), m, "x", 0);
  EXPECT_EQ(s2.commands[1], "MAIL FROM:<sender@example.org>");
  EXPECT_EQ(s2.commands[2], "RCPT TO:<a@example.net>");
  EXPECT_EQ(s2.commands[3], "RCPT TO:<b@example.net>");
  EXPECT_FALSE(d2->result->dsn_passed);
}

TEST(ClientSession, ControlOctetsInAnAddressNeverReachTheWire) {
  FakeServer s;
  OutboundMessage m = message({"a@example.net\r\nRSET", "b@example.net"});
  auto d = converse(s, config(), m, "x", 0);
  EXPECT_EQ(d->sent().find("RSET"), std::string::npos);
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kPermanent);
  EXPECT_EQ(outcome(*d, 0).enhanced, "5.1.3");
  EXPECT_EQ(outcome(*d, 1).status, DeliveryStatus::kDelivered);
}

TEST(ClientSession, MailRefusedFailsEveryRecipient) {
  both_ways(
      [] {
        FakeServer s;
        s.by_verb["MAIL"] = "553 5.7.1 Sender refused\r\n";
        s.rcpt["a@example.net"] = "503 5.5.1 need MAIL\r\n";
        s.rcpt["b@example.net"] = "503 5.5.1 need MAIL\r\n";
        return s;
      },
      [](FakeServer& s, std::size_t piece) {
        auto d = converse(s, config(), message({"a@example.net", "b@example.net"}), "x", piece);
        EXPECT_EQ(d->need_body, 0u);
        EXPECT_EQ(s.commands.back(), "QUIT");
        EXPECT_EQ(d->result->hop_code, 553);
        for (std::size_t i = 0; i < 2; ++i) {
          EXPECT_EQ(outcome(*d, i).status, DeliveryStatus::kPermanent);
          EXPECT_EQ(outcome(*d, i).code, 553);
          EXPECT_EQ(outcome(*d, i).enhanced, "5.7.1");
        }
      });
}

TEST(ClientSession, FinalReplyAppliesToAcceptedRecipientsOnly) {
  FakeServer s;
  s.rcpt["b@example.net"] = "550 5.1.1 unknown\r\n";
  s.by_verb["FINAL"] = "451 4.3.0 Error: queue file write error\r\n";
  auto d = converse(s, config(), message({"a@example.net", "b@example.net"}), "x", 1);
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kTransient);
  EXPECT_EQ(outcome(*d, 0).enhanced, "4.3.0");
  EXPECT_EQ(outcome(*d, 1).status, DeliveryStatus::kPermanent);
  EXPECT_FALSE(d->result->hop_error);
}

TEST(ClientSession, GreetingRefusals) {
  FakeServer s;
  s.greeting = "554 5.7.1 No SMTP service here\r\n";
  auto d = converse(s, config(), message({"a@example.net"}), "x", 1);
  EXPECT_EQ(s.commands, (std::vector<std::string>{"QUIT"}));  // RFC 5321 §3.1
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kPermanent);
  EXPECT_EQ(outcome(*d, 0).code, 554);
  EXPECT_EQ(outcome(*d, 0).enhanced, "5.7.1");

  FakeServer s2;
  s2.greeting = "421 4.3.2 Service not available\r\n";
  auto d2 = converse(s2, config(), message({"a@example.net"}), "x", 0);
  EXPECT_TRUE(s2.commands.empty());
  EXPECT_EQ(outcome(*d2, 0).status, DeliveryStatus::kTransient);
  EXPECT_EQ(d2->events.back(), "Disconnect");
}

TEST(ClientSession, ServiceClosingMidPipelineEndsTheSession) {
  FakeServer s;
  s.rcpt["a@example.net"] = "250 2.1.5 Ok\r\n";
  s.rcpt["b@example.net"] = "421 4.7.0 mx.test closing connection\r\n";
  auto d = converse(s, config(), message({"a@example.net", "b@example.net"}), "x", 0);
  EXPECT_EQ(d->need_body, 0u);
  EXPECT_EQ(d->events.back(), "Disconnect");
  EXPECT_EQ(d->result->hop_code, 421);
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kTransient);
  EXPECT_EQ(outcome(*d, 1).status, DeliveryStatus::kTransient);
  EXPECT_EQ(outcome(*d, 1).enhanced, "4.7.0");
}

TEST(ClientSession, LmtpOneReplyPerAcceptedRecipient) {
  both_ways(
      [] {
        FakeServer s;
        s.lmtp = true;
        s.ehlo = "250-dovecot\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n";
        s.rcpt["c@example.org"] = "550 5.1.1 <c@example.org> User doesn't exist\r\n";
        s.lmtp_final = {"250 2.0.0 <a@example.org> Saved\r\n",
                        "452 4.2.2 <b@example.org> Quota exceeded\r\n",
                        "552 5.2.2 <d@example.org> Mailbox full\r\n"};
        return s;
      },
      [](FakeServer& s, std::size_t piece) {
        ClientConfig c = config();
        c.lmtp = true;
        auto d = converse(
            s, c, message({"a@example.org", "b@example.org", "c@example.org", "d@example.org"}),
            "x", piece);
        EXPECT_EQ(s.commands.front(), "LHLO relay.example.org");
        EXPECT_EQ(s.commands.back(), "QUIT");
        EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kDelivered);
        EXPECT_EQ(outcome(*d, 1).status, DeliveryStatus::kTransient);
        EXPECT_EQ(outcome(*d, 1).enhanced, "4.2.2");
        EXPECT_EQ(outcome(*d, 2).status, DeliveryStatus::kPermanent);
        EXPECT_EQ(outcome(*d, 2).enhanced, "5.1.1");
        EXPECT_EQ(outcome(*d, 3).status, DeliveryStatus::kPermanent);
        EXPECT_EQ(outcome(*d, 3).enhanced, "5.2.2");
      });
}

TEST(ClientSession, LmtpLostConnectionAfterSomeReplies) {
  ClientConfig c = config();
  c.lmtp = true;
  Driver d(c, message({"a@example.org", "b@example.org"}));
  d.body = "x";
  d.handle(d.session.start());
  d.feed("220 lmtp\r\n250-lmtp\r\n250 PIPELINING\r\n");
  d.feed("250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go\r\n");
  d.feed("250 2.0.0 a saved\r\n");
  d.handle(d.session.on_eof());
  EXPECT_EQ(d.result->recipients[0].status, DeliveryStatus::kDelivered);
  EXPECT_EQ(d.result->recipients[1].status, DeliveryStatus::kTransient);
  EXPECT_EQ(d.result->recipients[1].enhanced, "4.4.2");
}

TEST(ClientSession, LhloIsNotRetriedAsHelo) {
  FakeServer s;
  s.lmtp = true;
  s.ehlo = "500 5.5.1 what\r\n";
  ClientConfig c = config();
  c.lmtp = true;
  auto d = converse(s, c, message({"a@example.org"}), "x", 0);
  EXPECT_EQ(s.commands, (std::vector<std::string>{"LHLO relay.example.org", "QUIT"}));
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kPermanent);
}

// ---- hostile replies: a clear transient 4.5.0, the connection dropped, no QUIT ----

void expect_hostile(std::string_view server_bytes) {
  for (std::size_t piece : {std::size_t{0}, std::size_t{1}}) {
    SCOPED_TRACE(piece);
    Driver d(config(), message({"a@example.net", "b@example.net"}));
    d.piece = piece;
    d.handle(d.session.start());
    d.feed(server_bytes);
    ASSERT_TRUE(d.result);
    ASSERT_TRUE(d.result->hop_error);
    EXPECT_TRUE(d.result->hop_error->transient());
    EXPECT_EQ(d.result->hop_error->enhanced, "4.5.0");
    EXPECT_EQ(d.result->recipients[1].status, DeliveryStatus::kTransient);
    EXPECT_EQ(d.result->recipients[1].enhanced, "4.5.0");
    EXPECT_TRUE(d.session.closed());
    EXPECT_EQ(d.sent().find("QUIT"), std::string::npos);
    EXPECT_EQ(d.events.back(), "Disconnect");
  }
}

TEST(ClientSession, HostileOverlongLine) {
  expect_hostile("220 hi\r\n250-" + std::string(100000, 'A') + "\r\n250 x\r\n");
}

TEST(ClientSession, HostileThousandLineReply) {
  std::string r = "220 hi\r\n";
  for (int i = 0; i < 1000; ++i) {
    r += "250-SIZE 1\r\n";
  }
  expect_hostile(r + "250 end\r\n");
}

TEST(ClientSession, HostileCodeMismatch) { expect_hostile("220 hi\r\n250-mx\r\n550 x\r\n"); }
TEST(ClientSession, HostileBareLf) { expect_hostile("220 hi\n"); }
TEST(ClientSession, HostileNonDigitCode) { expect_hostile("220 hi\r\nOK\r\n"); }
TEST(ClientSession, HostileUnexpectedPositiveReply) {
  // A 354 where the EHLO reply is due is no malformed octet, but it is out of place.
  expect_hostile("220 hi\r\n354 hello\r\n");
}

TEST(ClientSession, UnsolicitedReplyDuringTheBody) {
  Driver d(config(), message({"a@example.net"}));
  d.auto_body = false;
  d.handle(d.session.start());
  d.feed("220 hi\r\n250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  ASSERT_TRUE(d.session.wants_body());
  d.feed("554 5.6.0 I do not like your body\r\n");
  EXPECT_EQ(d.result->recipients[0].status, DeliveryStatus::kPermanent);
  EXPECT_EQ(d.result->recipients[0].enhanced, "5.6.0");
  EXPECT_TRUE(d.session.closed());
  EXPECT_TRUE(d.session.on_bytes("250 ok\r\n").empty());
}

// ---- deadlines ----

TEST(ClientSession, DeadlinesFollowRfc5321) {
  FakeServer s;
  s.ehlo = "250 mx.test\r\n";  // no PIPELINING: one deadline per command
  ClientConfig c = config();
  c.timeouts.data_term = 7s;
  auto d = converse(s, c, message({"a@example.net"}), "x", 0);
  std::vector<ClientTimer> kinds;
  for (const auto& t : d->timers) {
    kinds.push_back(t.kind);
  }
  std::vector<ClientTimer> want = {ClientTimer::kGreeting, ClientTimer::kCommand,
                                   ClientTimer::kMail,     ClientTimer::kRcpt,
                                   ClientTimer::kDataInit, ClientTimer::kDataBlock,
                                   ClientTimer::kDataTerm, ClientTimer::kCommand};
  EXPECT_EQ(kinds, want);
  EXPECT_EQ(d->timers[0].after, std::chrono::minutes(5));
  EXPECT_EQ(d->timers[4].after, std::chrono::minutes(2));
  EXPECT_EQ(d->timers[5].after, std::chrono::minutes(3));
  EXPECT_EQ(d->timers[6].after, 7s);
}

TEST(ClientSession, TimeoutWaitingForTheFinalReply) {
  Driver d(config(), message({"a@example.net", "b@example.net"}));
  d.body = "x";
  d.handle(d.session.start());
  d.feed("220 hi\r\n250-mx\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n");
  ASSERT_EQ(d.timers.back().kind, ClientTimer::kDataTerm);
  d.handle(d.session.on_timeout());
  ASSERT_TRUE(d.result);
  EXPECT_EQ(d.result->hop_error->enhanced, "4.4.2");
  EXPECT_NE(d.result->hop_error->message.find("end of data"), std::string::npos);
  EXPECT_EQ(d.result->recipients[0].status, DeliveryStatus::kTransient);
  EXPECT_EQ(d.result->recipients[0].enhanced, "4.4.2");
  EXPECT_EQ(d.result->recipients[1].status, DeliveryStatus::kPermanent);  // keeps its 550
  EXPECT_EQ(d.events.back(), "Disconnect");
  EXPECT_TRUE(d.session.on_timeout().empty());
}

TEST(ClientSession, TimeoutOrEofAfterTheOutcomeOnlyCloses) {
  FakeServer s;
  s.by_verb["QUIT"] = "";  // the server never answers QUIT
  auto d = converse(s, config(), message({"a@example.net"}), "x", 0);
  ASSERT_TRUE(d->result);
  EXPECT_FALSE(d->session.closed());
  EXPECT_EQ(d->timers.back().kind, ClientTimer::kCommand);
  d->handle(d->session.on_timeout());
  EXPECT_TRUE(d->session.closed());
  EXPECT_EQ(d->result->recipients[0].status, DeliveryStatus::kDelivered);
  EXPECT_EQ(d->events, (std::vector<std::string>{"NeedBody", "Finished", "Disconnect"}));
}

// ---- Held connections (ClientConfig::hold_open, start_held, close_held) ----

ClientConfig holding() {
  ClientConfig c = config();
  c.hold_open = true;
  return c;
}

// The next session on the connection `first` left held, against the same server.
std::unique_ptr<Driver> next_on(const Driver& first, FakeServer& s, ClientConfig cfg,
                                OutboundMessage msg, std::string body, std::size_t piece,
                                bool tls = false) {
  auto d = std::make_unique<Driver>(std::move(cfg), std::move(msg));
  d->server = &s;
  d->piece = piece;
  d->body = std::move(body);
  d->handle(d->session.start_held(
      HeldState{first.session.capabilities(), tls, first.result->authenticated}));
  d->pump();
  return d;
}

TEST(ClientSession, AHeldConnectionCarriesTheNextMessageAfterRsetAndQuitsWhenClosed) {
  both_ways(plain_server, [](FakeServer& s, std::size_t piece) {
    auto first = converse(s, holding(), message({"a@example.net"}, 5), "one\r\n", piece);
    ASSERT_TRUE(first->result);
    EXPECT_EQ(first->result->recipients[0].status, DeliveryStatus::kDelivered);
    EXPECT_TRUE(first->session.held_open());
    EXPECT_FALSE(first->session.closed());
    EXPECT_EQ(first->events, (std::vector<std::string>{"NeedBody", "Finished"}));  // no QUIT
    s.commands.clear();
    auto second = next_on(*first, s, holding(), message({"b@example.net"}, 5), "two\r\n", piece);
    ASSERT_TRUE(second->result);
    EXPECT_EQ(s.commands, (std::vector<std::string>{"RSET", "MAIL FROM:<sender@example.org> SIZE=5",
                                                     "RCPT TO:<b@example.net>", "DATA"}));
    EXPECT_EQ(s.body, "two\r\n");
    EXPECT_FALSE(second->result->hop_error);
    EXPECT_TRUE(second->result->mail_sent);
    EXPECT_EQ(second->result->recipients[0].status, DeliveryStatus::kDelivered);
    EXPECT_TRUE(second->session.held_open());
    // Closing it: QUIT, and Disconnect once the server answers (no second Finished).
    second->handle(second->session.close_held());
    EXPECT_FALSE(second->session.held_open());
    EXPECT_EQ(second->timers.back().kind, ClientTimer::kCommand);
    second->pump();
    EXPECT_EQ(s.commands.back(), "QUIT");
    EXPECT_TRUE(second->session.closed());
    EXPECT_EQ(second->events, (std::vector<std::string>{"NeedBody", "Finished", "Disconnect"}));
  });
}

TEST(ClientSession, AHeldConnectionSkipsStartTlsAndLoginItAlreadyDid) {
  FakeServer s;
  s.ehlo = "250-mx.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n";
  s.ehlo_after_tls = "250-mx.test\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n";
  ClientConfig c = holding();
  c.tls = TlsPolicy::kRequired;
  c.auth = ClientCredentials{"user", "pass"};
  auto first = converse(s, c, message({"a@example.net"}, 1), "x", 0);
  ASSERT_TRUE(first->result);
  ASSERT_TRUE(first->result->tls);
  ASSERT_TRUE(first->result->authenticated);
  ASSERT_TRUE(first->session.held_open());
  s.commands.clear();
  auto second = next_on(*first, s, c, message({"b@example.net"}, 1), "y", 0, /*tls=*/true);
  ASSERT_TRUE(second->result);
  EXPECT_EQ(s.commands.front(), "RSET");
  EXPECT_EQ(s.commands.at(1), "MAIL FROM:<sender@example.org>");  // no SIZE offered
  EXPECT_EQ(second->events, (std::vector<std::string>{"NeedBody", "Finished"}));  // no StartTls
  EXPECT_TRUE(second->result->tls);
  EXPECT_TRUE(second->result->authenticated);
  EXPECT_EQ(second->result->recipients[0].status, DeliveryStatus::kDelivered);
}

TEST(ClientSession, ARefusedRsetOnAHeldConnectionEndsItBeforeMail) {
  both_ways(plain_server, [](FakeServer& s, std::size_t piece) {
    auto first = converse(s, holding(), message({"a@example.net"}), "x", piece);
    ASSERT_TRUE(first->session.held_open());
    s.by_verb["RSET"] = "421 4.4.2 mx.test Error: timeout exceeded\r\n";
    s.commands.clear();
    auto second = next_on(*first, s, holding(), message({"b@example.net"}), "y", piece);
    ASSERT_TRUE(second->result);
    ASSERT_TRUE(second->result->hop_error);
    EXPECT_TRUE(second->result->hop_error->transient());
    EXPECT_FALSE(second->result->mail_sent);  // the relay opens a new connection
    EXPECT_EQ(second->result->recipients[0].status, DeliveryStatus::kTransient);
    EXPECT_EQ(s.commands, (std::vector<std::string>{"RSET"}));
    EXPECT_TRUE(second->session.closed());
    EXPECT_FALSE(second->session.held_open());
  });
  // A 5xx to RSET: the same, transient (the connection is at fault, not the message).
  FakeServer s;
  auto first = converse(s, holding(), message({"a@example.net"}), "x", 0);
  s.by_verb["RSET"] = "502 5.5.2 Error: command not recognized\r\n";
  auto second = next_on(*first, s, holding(), message({"b@example.net"}), "y", 0);
  ASSERT_TRUE(second->result && second->result->hop_error);
  EXPECT_EQ(second->result->hop_error->enhanced, "4.4.2");
  EXPECT_FALSE(second->result->mail_sent);
  EXPECT_EQ(s.commands.back(), "QUIT");
}

TEST(ClientSession, AHeldConnectionLostOrSpokenToEndsWithoutASecondOutcome) {
  // The server closes the idle connection: Disconnect only.
  FakeServer s;
  auto first = converse(s, holding(), message({"a@example.net"}), "x", 0);
  ASSERT_TRUE(first->session.held_open());
  first->handle(first->session.on_eof());
  EXPECT_TRUE(first->session.closed());
  EXPECT_EQ(first->events, (std::vector<std::string>{"NeedBody", "Finished", "Disconnect"}));
  EXPECT_EQ(first->result->recipients[0].status, DeliveryStatus::kDelivered);
  // It says something (its idle timeout) while nothing was asked: the same.
  FakeServer s2;
  auto other = converse(s2, holding(), message({"a@example.net"}), "x", 0);
  other->feed("421 4.4.2 mx.test Error: timeout exceeded\r\n");
  EXPECT_TRUE(other->session.closed());
  EXPECT_EQ(other->events, (std::vector<std::string>{"NeedBody", "Finished", "Disconnect"}));
  // Lost while the RSET is out: transient 4.4.2 before MAIL.
  FakeServer s3;
  auto held = converse(s3, holding(), message({"a@example.net"}), "x", 0);
  Driver d(holding(), message({"b@example.net"}));
  d.handle(d.session.start_held(HeldState{held->session.capabilities(), false, false}));
  EXPECT_EQ(d.sent(), "RSET\r\n");
  d.handle(d.session.on_eof());
  ASSERT_TRUE(d.result && d.result->hop_error);
  EXPECT_EQ(d.result->hop_error->enhanced, "4.4.2");
  EXPECT_FALSE(d.result->mail_sent);
  EXPECT_TRUE(d.session.closed());
}

TEST(ClientSession, EofBeforeGreeting) {
  Driver d(config(), message({"a@example.net"}));
  d.handle(d.session.start());
  d.handle(d.session.on_eof());
  EXPECT_EQ(d.result->hop_error->enhanced, "4.4.2");
  EXPECT_NE(d.result->hop_error->message.find("greeting"), std::string::npos);
  EXPECT_EQ(d.result->recipients[0].status, DeliveryStatus::kTransient);
}

TEST(ClientSession, ParseEhloKeywords) {
  Reply r;
  r.code = 250;
  r.lines = {"mx.test greets you",       "pipelining",          "SIZE 35882577", "AUTH=LOGIN",
             "AUTH PLAIN login XOAUTH2", "ENHANCEDSTATUSCODES", "smtputf8",      "X-UNKNOWN 1"};
  auto caps = parse_ehlo(r);
  EXPECT_TRUE(caps.esmtp);
  EXPECT_TRUE(caps.pipelining);
  EXPECT_TRUE(caps.size);
  EXPECT_EQ(caps.size_limit, 35882577u);
  EXPECT_TRUE(caps.enhancedstatuscodes);
  EXPECT_TRUE(caps.smtputf8);
  EXPECT_FALSE(caps.starttls);
  EXPECT_FALSE(caps.chunking);
  EXPECT_EQ(caps.auth, (std::vector<std::string>{"LOGIN", "PLAIN", "LOGIN", "XOAUTH2"}));
}

}  // namespace
// A SASL mechanism with a fixed script: "tok1" first, "tok2" for the challenge "srv".
class ScriptedSasl final : public ClientSasl {
 public:
  std::string mechanism() const override { return "GSSAPI"; }
  Result<std::optional<std::string>> start() override { return std::optional<std::string>("tok1"); }
  Result<std::string> step(std::string_view challenge) override {
    if (challenge == "srv") {
      return std::string("tok2");
    }
    return transient_error("4.7.8", "unexpected challenge");
  }
};

ClientConfig sasl_config(const std::string& verb) {
  ClientConfig c = config();
  c.tls = TlsPolicy::kNever;
  c.auth_without_tls = true;
  c.sasl = [] { return std::make_unique<ScriptedSasl>(); };
  c.sasl_verb = verb;
  return c;
}

TEST(ClientSession, XExpsRunsTheConfiguredMechanismThenMail) {
  Driver d(sasl_config("X-EXPS"), message({"a@example.net"}));
  d.handle(d.session.start());
  d.feed("220 hi\r\n250-mx\r\n250-AUTH LOGIN\r\n250-X-EXPS GSSAPI LOGIN\r\n250 X-EXPS=LOGIN\r\n");
  EXPECT_EQ(d.writes.back(), "X-EXPS GSSAPI dG9rMQ==\r\n");
  d.feed("334 c3J2\r\n");
  EXPECT_EQ(d.writes.back(), "dG9rMg==\r\n");
  d.feed("235 2.7.0 ok\r\n");
  EXPECT_EQ(d.writes.back(), "MAIL FROM:<sender@example.org>\r\n");
}

TEST(ClientSession, SaslFailuresAreTransientAndCancelWithAStar) {
  {  // the mechanism is not offered under that verb
    Driver d(sasl_config("X-EXPS"), message({"a@example.net"}));
    d.handle(d.session.start());
    d.feed("220 hi\r\n250-mx\r\n250 AUTH GSSAPI\r\n");
    ASSERT_TRUE(d.result);
    EXPECT_EQ(d.result->hop_error->enhanced, "4.7.4");
    EXPECT_FALSE(d.result->authenticated);
  }
  {  // our side cannot answer the challenge: "*", and the 501 ends the login
    Driver d(sasl_config("AUTH"), message({"a@example.net"}));
    d.handle(d.session.start());
    d.feed("220 hi\r\n250-mx\r\n250 AUTH GSSAPI\r\n");
    EXPECT_EQ(d.writes.back(), "AUTH GSSAPI dG9rMQ==\r\n");
    d.feed("334 b3RoZXI=\r\n");
    EXPECT_EQ(d.writes.back(), "*\r\n");
    d.feed("501 5.0.0 cancelled\r\n");
    ASSERT_TRUE(d.result);
    EXPECT_EQ(d.result->hop_error->enhanced, "4.7.8");
    EXPECT_EQ(d.result->recipients[0].status, DeliveryStatus::kTransient);
  }
  {  // the server refuses the login: transient 4.7.8, never a bounce
    Driver d(sasl_config("AUTH"), message({"a@example.net"}));
    d.handle(d.session.start());
    d.feed("220 hi\r\n250-mx\r\n250 AUTH GSSAPI\r\n334 c3J2\r\n535 5.7.8 no\r\n");
    ASSERT_TRUE(d.result);
    EXPECT_EQ(d.result->recipients[0].status, DeliveryStatus::kTransient);
  }
}


namespace {

// To a node of the organization: X-EXPS, EHLO again, then XEXCH50 for the accepted
// recipients only, then DATA.
OutboundMessage with_properties(std::vector<std::string> rcpts) {
  OutboundMessage m = message(std::move(rcpts));
  Xexch50Props p;
  p.organization = "org";
  p.hops = {"node1", "node2"};
  for (std::size_t i = 0; i < m.recipients.size(); ++i) {
    p.recipients.push_back({"node" + std::to_string(i + 5), i == 0});
  }
  m.properties = p;
  return m;
}

void log_in_as_peer(Driver& d) {
  d.handle(d.session.start());
  d.feed("220 hi\r\n250-mx\r\n250-PIPELINING\r\n250 X-EXPS GSSAPI LOGIN\r\n");
  d.feed("334 c3J2\r\n");
  d.feed("235 2.7.0 ok\r\n");
  ASSERT_EQ(d.writes.back(), "EHLO relay.example.org\r\n") << "the peer verbs come after the login";
  d.feed("250-mx\r\n250-PIPELINING\r\n250-XEXCH50\r\n250 X-LINK2STATE\r\n");
}

}  // namespace

TEST(ClientSession, Xexch50GoesToAPeerForTheAcceptedRecipientsBeforeData) {
  Driver d(sasl_config("X-EXPS"), with_properties({"a@example.net", "b@example.net", "c@example.net"}));
  log_in_as_peer(d);
  ASSERT_FALSE(d.result);
  // MAIL and the RCPTs pipelined, but no DATA behind them: XEXCH50 comes first.
  EXPECT_EQ(d.writes.back(),
            "MAIL FROM:<sender@example.org>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\n"
            "RCPT TO:<c@example.net>\r\n");
  d.feed("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n250 ok\r\n");
  Xexch50Props want = *with_properties({"a", "b", "c"}).properties;
  want.recipients.erase(want.recipients.begin() + 1);  // b was refused
  const std::string blob = encode_xexch50_props(want);
  EXPECT_EQ(d.writes.back(), "XEXCH50 " + std::to_string(blob.size()) + " 3\r\n");
  d.feed("354 Send binary data\r\n");
  EXPECT_EQ(d.writes.back(), blob);
  auto back = decode_xexch50_props(d.writes.back());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->recipients[1].home_server, "node7");
  d.feed("250 2.0.0 XEXCH50 OK\r\n");
  EXPECT_EQ(d.writes.back(), "DATA\r\n");
  d.feed("354 go\r\n");
  d.feed("250 2.0.0 queued\r\n");
  d.feed("221 bye\r\n");
  ASSERT_TRUE(d.result);
  EXPECT_EQ(outcome(d, 0).status, DeliveryStatus::kDelivered) << outcome(d, 0).enhanced << " " << outcome(d, 0).text << "\n" << d.sent();
  EXPECT_EQ(outcome(d, 1).status, DeliveryStatus::kPermanent);
}

TEST(ClientSession, Xexch50RefusedTheMessageGoesOnWithoutIt) {
  Driver d(sasl_config("X-EXPS"), with_properties({"a@example.net"}));
  log_in_as_peer(d);
  d.feed("250 ok\r\n250 ok\r\n");
  ASSERT_EQ(d.writes.back().rfind("XEXCH50 ", 0), 0u);
  d.feed("503 5.5.1 not now\r\n");
  EXPECT_EQ(d.writes.back(), "DATA\r\n");
}

TEST(ClientSession, Xexch50LoopReplyFailsTheRecipientsWithoutData) {
  Driver d(sasl_config("X-EXPS"), with_properties({"a@example.net"}));
  log_in_as_peer(d);
  d.feed("250 ok\r\n250 ok\r\n354 go\r\n554 5.4.6 Routing loop detected: it already passed through mx\r\n");
  ASSERT_EQ(d.writes.back(), "QUIT\r\n");
  d.feed("221 bye\r\n");
  ASSERT_TRUE(d.result);
  EXPECT_EQ(outcome(d, 0).status, DeliveryStatus::kPermanent);
  EXPECT_EQ(outcome(d, 0).enhanced, "5.4.6");
  EXPECT_EQ(d.sent().find("DATA"), std::string::npos);
}

TEST(ClientSession, Xexch50PassedThroughReplyKeepsTheRecipientsForLater) {
  Driver d(sasl_config("X-EXPS"), with_properties({"a@example.net"}));
  log_in_as_peer(d);
  d.feed("250 ok\r\n250 ok\r\n354 go\r\n451 4.4.6 Routing loop detected: it already passed through mx\r\n");
  ASSERT_EQ(d.writes.back(), "QUIT\r\n");
  d.feed("221 bye\r\n");
  ASSERT_TRUE(d.result);
  EXPECT_EQ(outcome(d, 0).status, DeliveryStatus::kTransient);
  EXPECT_EQ(outcome(d, 0).enhanced, "4.4.6");
  EXPECT_EQ(d.sent().find("DATA"), std::string::npos);
}

TEST(ClientSession, NoXexch50WithoutAPeerLoginOrOffer) {
  // Properties, but an ordinary AUTH server that never offers XEXCH50: plain delivery.
  Driver d(sasl_config("AUTH"), with_properties({"a@example.net"}));
  d.handle(d.session.start());
  d.feed("220 hi\r\n250-mx\r\n250-PIPELINING\r\n250 AUTH GSSAPI\r\n334 c3J2\r\n235 2.7.0 ok\r\n");
  EXPECT_EQ(d.writes.back(), "MAIL FROM:<sender@example.org>\r\nRCPT TO:<a@example.net>\r\nDATA\r\n");
  EXPECT_EQ(d.sent().find("XEXCH50"), std::string::npos);
}

TEST(ClientSession, Link2StateGoesBeforeMailAndTheServersTableComesBack) {
  OutboundMessage m = message({"a@example.net"});
  m.link2state = std::string(1000, 'L');  // two chunk lines
  Driver d(sasl_config("X-EXPS"), m);
  d.handle(d.session.start());
  d.feed("220 hi\r\n250-mx\r\n250 X-EXPS GSSAPI\r\n334 c3J2\r\n235 2.7.0 ok\r\n");
  ASSERT_EQ(d.writes.back(), "EHLO relay.example.org\r\n");
  d.feed("250-mx\r\n250-XEXCH50\r\n250 X-LINK2STATE\r\n");
  auto lines = split_link2state(m.link2state);
  ASSERT_TRUE(lines.ok());
  ASSERT_EQ(lines->size(), 2u);
  EXPECT_EQ(d.writes.back(), (*lines)[0] + "\r\n");
  d.feed("250 2.0.0 OK\r\n");
  EXPECT_EQ(d.writes.back(), (*lines)[1] + "\r\n");
  // The server's table in the reply to LAST.
  auto back = split_link2state("server-table");
  ASSERT_TRUE(back.ok());
  std::string reply;
  for (const auto& l : *back) {
    reply += "250-" + l + "\r\n";
  }
  d.feed(reply + "250 2.0.0 OK\r\n");
  EXPECT_EQ(d.writes.back(), "MAIL FROM:<sender@example.org>\r\n");
  d.feed("250 ok\r\n250 ok\r\n354 go\r\n");
  d.feed("250 queued\r\n");
  d.feed("221 bye\r\n");
  ASSERT_TRUE(d.result);
  EXPECT_EQ(d.result->link2state_reply, "server-table");
  EXPECT_EQ(outcome(d, 0).status, DeliveryStatus::kDelivered);
}

TEST(ClientSession, ARefusedLink2StateChunkOnlyEndsTheExchange) {
  OutboundMessage m = message({"a@example.net"});
  m.link2state = "table";
  Driver d(sasl_config("X-EXPS"), m);
  d.handle(d.session.start());
  d.feed("220 hi\r\n250-mx\r\n250-X-LINK2STATE\r\n250 X-EXPS GSSAPI\r\n334 c3J2\r\n235 2.7.0 ok\r\n");
  ASSERT_EQ(d.writes.back().rfind("X-LINK2STATE FIRST CHUNK=", 0), 0u) << d.writes.back();
  d.feed("503 5.5.1 out of sequence\r\n");
  EXPECT_EQ(d.writes.back(), "MAIL FROM:<sender@example.org>\r\n");
  // No verb offered: nothing is sent.
  Driver quiet(sasl_config("X-EXPS"), m);
  quiet.handle(quiet.session.start());
  quiet.feed("220 hi\r\n250-mx\r\n250 X-EXPS GSSAPI\r\n334 c3J2\r\n235 2.7.0 ok\r\n");
  quiet.feed("250-mx\r\n250 XEXCH50\r\n");
  EXPECT_EQ(quiet.writes.back(), "MAIL FROM:<sender@example.org>\r\n");
  EXPECT_EQ(quiet.sent().find("X-LINK2STATE"), std::string::npos);
}

// Outbound command events (ClientConfig::on_command / on_reply): the hook sees each line
// before it leaves (credentials masked) and each reply; a refusal sends nothing more
// but QUIT and ends the session with that error.
TEST(ClientSession, OnCommandSeesEveryLineAndRepliesAndMasksCredentials) {
  both_ways(
      [] {
        FakeServer s = tls_server();
        s.ehlo_after_tls = "250-mx.test\r\n250 AUTH LOGIN\r\n";
        return s;
      },
      [](FakeServer& s, std::size_t piece) {
        std::vector<std::string> seen, replies;
        ClientConfig c = config();
        c.tls = TlsPolicy::kOpportunistic;
        c.auth = ClientCredentials{"alice", "s3cret!"};
        c.on_command = [&](std::string_view verb, std::string_view line) -> std::optional<Error> {
          seen.push_back(std::string(verb) + "|" + std::string(line));
          return std::nullopt;
        };
        c.on_reply = [&](std::string_view verb, int code, std::string_view) {
          replies.push_back(std::string(verb) + " " + std::to_string(code));
        };
        auto d = converse(s, c, message({"a@example.net"}), "x", piece);
        EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kDelivered);
        std::vector<std::string> want = {"EHLO|EHLO relay.example.org", "STARTTLS|STARTTLS",
                                         "EHLO|EHLO relay.example.org", "AUTH|AUTH LOGIN",
                                         "AUTH|AUTH ***", "AUTH|AUTH ***",
                                         "MAIL|MAIL FROM:<sender@example.org>",
                                         "RCPT|RCPT TO:<a@example.net>", "DATA|DATA"};
        EXPECT_EQ(seen, want);  // QUIT is not offered
        for (const auto& l : seen) {
          EXPECT_EQ(l.find("YWxpY2U="), std::string::npos);
          EXPECT_EQ(l.find("czNjcmV0IQ=="), std::string::npos);
        }
        ASSERT_GE(replies.size(), 3u);
        EXPECT_EQ(replies.front(), "CONNECT 220");
        EXPECT_NE(std::find(replies.begin(), replies.end(), "RCPT 250"), replies.end());
        EXPECT_NE(std::find(replies.begin(), replies.end(), ". 250"), replies.end());
      });
}

TEST(ClientSession, OnCommandRefusingMailEndsTheSessionTransiently) {
  both_ways(plain_server, [](FakeServer& s, std::size_t piece) {
    ClientConfig c = config();
    c.on_command = [](std::string_view verb, std::string_view) -> std::optional<Error> {
      if (verb == "MAIL") {
        Error e = transient_error("4.7.0", "MAIL to this hop refused by policy");
        e.reply_code = 451;
        return e;
      }
      return std::nullopt;
    };
    auto d = converse(s, c, message({"a@example.net", "b@example.net"}), "x", piece);
    // Nothing of the transaction left: not MAIL, nor the pipelined RCPTs and DATA.
    EXPECT_EQ(s.commands, (std::vector<std::string>{"EHLO relay.example.org", "QUIT"}));
    ASSERT_TRUE(d->result);
    ASSERT_TRUE(d->result->hop_error);
    EXPECT_TRUE(d->result->hop_error->transient());
    EXPECT_EQ(d->result->hop_error->enhanced, "4.7.0");
    EXPECT_FALSE(d->result->mail_sent);  // the relay may try the next MX
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(outcome(*d, i).status, DeliveryStatus::kTransient);
      EXPECT_EQ(outcome(*d, i).enhanced, "4.7.0");
    }
    EXPECT_EQ(d->events, (std::vector<std::string>{"Finished", "Disconnect"}));
    EXPECT_TRUE(d->session.closed());
  });
}

TEST(ClientSession, OnCommandRefusingDataAfterAcceptedRecipientsRetriesThem) {
  FakeServer s;
  s.ehlo = "250-mx.test\r\n250 8BITMIME\r\n";  // no PIPELINING: one command at a time
  s.rcpt["b@example.net"] = "550 5.1.1 no such user\r\n";
  ClientConfig c = config();
  c.on_command = [](std::string_view verb, std::string_view) -> std::optional<Error> {
    if (verb == "DATA") {
      return transient_error("4.7.0", "no DATA today");
    }
    return std::nullopt;
  };
  auto d = converse(s, c, message({"a@example.net", "b@example.net"}), "x", 0);
  EXPECT_EQ(s.commands.back(), "QUIT");
  EXPECT_EQ(std::count(s.commands.begin(), s.commands.end(), "DATA"), 0);
  EXPECT_TRUE(d->result->mail_sent);
  EXPECT_EQ(outcome(*d, 0).status, DeliveryStatus::kTransient);  // accepted, not delivered
  EXPECT_EQ(outcome(*d, 0).enhanced, "4.7.0");
  EXPECT_EQ(outcome(*d, 1).status, DeliveryStatus::kPermanent);  // its own 550 stands
  EXPECT_EQ(s.body, "");
  EXPECT_EQ(d->need_body, 0u);
}

TEST(ClientSession, LoginAsASaslMechanismAnswersUserThenPassword) {
  LoginClientSasl login(ClientCredentials{"cluster", "s3cret"});
  EXPECT_EQ(login.mechanism(), "LOGIN");
  auto first = login.start();
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first.value().has_value());
  EXPECT_EQ(login.step("Username:").value(), "cluster");
  EXPECT_EQ(login.step("Password:").value(), "s3cret");
  EXPECT_FALSE(login.step("again?").ok());
}
}  // namespace bh::smtp
