#include "smtp/lmtp_deliverer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <unistd.h>

#include <boost/asio.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

namespace bh::smtp {
namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::vector<queue::RemoteJob::Rcpt> rcpts() {
  return {{4, "alice@example.org", queue::kNotifyUnspecified, "", "", false},
          {7, "nobody@example.org", queue::kNotifyUnspecified, "", "", false},
          {9, "bob@example.org", queue::kNotifyUnspecified, "", "", false}};
}

// ---- Pure pieces ----

TEST(LmtpResult, EachRecipientKeepsItsOwnReply) {
  ClientResult c;
  c.mail_sent = true;
  c.recipients = {
      {"alice@example.org", DeliveryStatus::kDelivered, 250, "2.0.0",
       "<alice@example.org> X Saved"},
      {"nobody@example.org", DeliveryStatus::kPermanent, 550, "5.1.1",
       "<nobody@example.org> User doesn't exist: nobody@example.org"},
      {"bob@example.org", DeliveryStatus::kTransient, 452, "4.2.2", "Mailbox is full"},
  };
  auto r = lmtp_result(c, rcpts(), "lmtp [127.0.0.1]");
  EXPECT_FALSE(r.hop_error);
  EXPECT_EQ(r.remote_mta, "lmtp [127.0.0.1]");
  ASSERT_EQ(r.recipients.size(), 3u);
  EXPECT_EQ(r.recipients[0].status, queue::RemoteStatus::kDelivered);
  EXPECT_EQ(r.recipients[0].reply, "250 2.0.0 <alice@example.org> X Saved");
  EXPECT_EQ(r.recipients[1].index, 7u);
  EXPECT_EQ(r.recipients[1].status, queue::RemoteStatus::kPermanent);
  EXPECT_EQ(r.recipients[1].enhanced, "5.1.1");
  EXPECT_EQ(r.recipients[2].status, queue::RemoteStatus::kTransient);
  EXPECT_EQ(r.recipients[2].reply, "452 4.2.2 Mailbox is full");
}

ClientResult refused(int code, const std::string& enhanced, bool mail_sent) {
  ClientResult c;
  c.hop_error = permanent_error(enhanced, "LHLO: " + std::to_string(code) + " go away");
  c.hop_code = code;
  c.mail_sent = mail_sent;
  for (const auto& r : rcpts()) {
    c.recipients.push_back({r.address, DeliveryStatus::kPermanent, code, enhanced, "go away"});
  }
  return c;
}

TEST(LmtpResult, ARefusedGreetingOrLhloWaitsInTheQueue) {
  auto r = lmtp_result(refused(554, "5.3.2", false), rcpts(), "lmtp [127.0.0.1]");
  ASSERT_TRUE(r.hop_error);
  EXPECT_TRUE(r.hop_error->transient());
  EXPECT_EQ(r.hop_error->enhanced, "4.3.2");
  for (const auto& x : r.recipients) {
    EXPECT_EQ(x.status, queue::RemoteStatus::kTransient);
    EXPECT_EQ(x.enhanced, "4.3.2");
    EXPECT_EQ(x.reply, "554 5.3.2 go away");  // the server's words are kept
  }
}

TEST(LmtpResult, ARefusedMailStaysPermanent) {
  auto r = lmtp_result(refused(553, "5.1.7", true), rcpts(), "lmtp [127.0.0.1]");
  ASSERT_TRUE(r.hop_error);
  EXPECT_FALSE(r.hop_error->transient());
  EXPECT_EQ(r.recipients[0].status, queue::RemoteStatus::kPermanent);
  EXPECT_EQ(r.recipients[0].enhanced, "5.1.7");
}

TEST(LmtpResult, OurOwnPermanentVerdictStays) {
  // SIZE or 8BITMIME refused from the LHLO capabilities: a fact of the message.
  ClientResult c = refused(0, "5.3.4", false);
  auto r = lmtp_result(c, rcpts(), "");
  EXPECT_FALSE(r.hop_error->transient());
  EXPECT_EQ(r.recipients[2].status, queue::RemoteStatus::kPermanent);
}

TEST(LmtpConfig, LhloWithTheNodeNameNoTls) {
  LmtpOptions o;
  o.helo_name = "node1.example.org";
  o.reply_limits.max_lines = 7;
  o.timeouts.data_term = std::chrono::seconds(42);
  auto c = lmtp_client_config(o);
  EXPECT_TRUE(c.lmtp);
  EXPECT_EQ(c.helo_name, "node1.example.org");
  EXPECT_EQ(c.tls, TlsPolicy::kNever);
  EXPECT_FALSE(c.auth);
  EXPECT_EQ(c.reply_limits.max_lines, 7u);
  EXPECT_EQ(c.timeouts.data_term, std::chrono::seconds(42));
}

// ---- The deliverer on loopback ----

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "bh-lmtp-XXXXXX").string();
    BH_CHECK(::mkdtemp(t.data()) != nullptr);
    path_ = t;
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path operator/(const std::string& s) const { return path_ / s; }

 private:
  fs::path path_;
};

std::uint16_t dead_port() {
  asio::io_context io;
  tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

// A scripted LMTP server on its own thread (blocking sockets): one connection; every
// line from the client is recorded; replies as RFC 2033 wants them. TCP on 127.0.0.1, or
// the unix socket `path`.
template <class Protocol>
class FakeLmtpOn {
 public:
  explicit FakeLmtpOn(typename Protocol::endpoint ep) : acceptor_(io_, ep) {
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeLmtpOn() { thread_.join(); }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::vector<std::string> lines;  // read after the deliverer finished
  std::string data;

 private:
  void serve() {
    typename Protocol::socket s(io_);
    acceptor_.accept(s);
    asio::streambuf buf;
    auto say = [&](const std::string& t) { asio::write(s, asio::buffer(t)); };
    auto line = [&]() -> std::optional<std::string> {
      boost::system::error_code ec;
      asio::read_until(s, buf, "\r\n", ec);
      if (ec) {
        return std::nullopt;
      }
      std::istream in(&buf);
      std::string l;
      std::getline(in, l);
      if (!l.empty() && l.back() == '\r') {
        l.pop_back();
      }
      return l;
    };
    say("220 fake LMTP ready\r\n");
    std::vector<bool> ok;
    for (;;) {
      auto got = line();
      if (!got) {
        return;
      }
      const std::string l = *got;
      lines.push_back(l);
      if (l.rfind("LHLO", 0) == 0) {
        say("250-fake\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n");
      } else if (l.rfind("MAIL", 0) == 0) {
        say("250 2.1.0 OK\r\n");
      } else if (l.rfind("RCPT", 0) == 0) {
        bool good = l.find("nobody") == std::string::npos;
        ok.push_back(good);
        say(good ? "250 2.1.5 OK\r\n" : "550 5.1.1 <nobody@example.org> User doesn't exist\r\n");
      } else if (l == "DATA") {
        say("354 OK\r\n");
        for (;;) {
          auto d = line();
          if (!d || *d == ".") {
            break;
          }
          data += *d + "\n";
        }
        // One reply per accepted recipient: the first saved, the second over quota.
        int n = 0;
        for (bool g : ok) {
          if (g) {
            say(n++ == 0 ? "250 2.0.0 <alice@example.org> Saved\r\n"
                         : "452 4.2.2 <bob@example.org> Quota exceeded\r\n");
          }
        }
      } else if (l == "RSET") {
        ok.clear();
        data.clear();
        say("250 2.0.0 OK\r\n");
      } else if (l == "QUIT") {
        say("221 2.0.0 Bye\r\n");
        return;
      } else {
        say("500 5.5.1 what\r\n");
      }
    }
  }

  asio::io_context io_;
  typename Protocol::acceptor acceptor_;
  std::thread thread_;
};

struct FakeLmtp : FakeLmtpOn<tcp> {
  FakeLmtp() : FakeLmtpOn<tcp>({asio::ip::make_address("127.0.0.1"), 0}) {}
};

struct Fixture {
  TempDir dir;
  asio::io_context io;
  std::vector<RelayAttempt> attempts;

  // messages_per_connection 1: each job QUITs, so io.run() returns once it is done.
  std::unique_ptr<LmtpDeliverer> make(std::uint16_t port, std::string unix_path = "",
                                      std::size_t messages_per_connection = 1) {
    LmtpOptions o;
    o.connection_max_messages = messages_per_connection;
    o.ip = "127.0.0.1";
    o.port = port;
    o.unix_path = std::move(unix_path);
    o.helo_name = "node1.example.org";
    o.connect_timeout = std::chrono::seconds(5);
    o.timeouts.data_term = std::chrono::seconds(10);
    o.on_attempt = [this](const RelayAttempt& a) { attempts.push_back(a); };
    std::ofstream(dir / "q", std::ios::binary) << "HEADERSSubject: x\r\n\r\nHello\r\n";
    return std::make_unique<LmtpDeliverer>(io, o);
  }
  queue::RemoteJob job() {
    queue::RemoteJob j;
    j.queue_id = "Q1";
    j.next_hop = "lmtp";
    j.connector = "lmtp";
    j.sender = "s@example.org";
    j.recipients = rcpts();
    j.path = (dir / "q").string();
    j.body_offset = 7;
    j.body_length = 21;
    return j;
  }
  queue::RemoteResult run(LmtpDeliverer& d, queue::RemoteJob j) {
    int calls = 0;
    queue::RemoteResult got;
    d.deliver(std::move(j), [&](queue::RemoteResult r) {
      ++calls;
      got = std::move(r);
    });
    EXPECT_EQ(calls, 0);  // never inline
    io.run();
    EXPECT_EQ(calls, 1);
    return got;
  }
};

TEST(LmtpDeliverer, OneReplyPerRecipientAfterTheData) {
  Fixture f;
  FakeLmtp server;
  auto d = f.make(server.port());
  auto r = f.run(*d, f.job());
  EXPECT_FALSE(r.hop_error);
  EXPECT_EQ(r.remote_mta, "127.0.0.1 [127.0.0.1]");
  ASSERT_EQ(r.recipients.size(), 3u);
  EXPECT_EQ(r.recipients[0].index, 4u);
  EXPECT_EQ(r.recipients[0].status, queue::RemoteStatus::kDelivered);
  EXPECT_EQ(r.recipients[0].reply, "250 2.0.0 <alice@example.org> Saved");
  EXPECT_EQ(r.recipients[1].status, queue::RemoteStatus::kPermanent);
  EXPECT_EQ(r.recipients[1].enhanced, "5.1.1");
  EXPECT_EQ(r.recipients[2].status, queue::RemoteStatus::kTransient);
  EXPECT_EQ(r.recipients[2].reply, "452 4.2.2 <bob@example.org> Quota exceeded");
  ASSERT_FALSE(server.lines.empty());
  EXPECT_EQ(server.lines[0], "LHLO node1.example.org");
  EXPECT_EQ(server.lines[1], "MAIL FROM:<s@example.org>");
  EXPECT_EQ(server.lines[2], "RCPT TO:<alice@example.org>");
  EXPECT_EQ(server.data, "Subject: x\n\nHello\n");
  EXPECT_EQ(server.lines.back(), "QUIT");
  EXPECT_EQ(d->counters().delivered.load(), 1u);
  EXPECT_EQ(d->counters().permanent.load(), 1u);
  EXPECT_EQ(d->counters().transient.load(), 1u);
}

TEST(LmtpDeliverer, TheNextJobRunsOnTheHeldConnectionAfterRset) {
  Fixture f;
  FakeLmtp server;  // serves one connection only: a second connect would fail
  auto d = f.make(server.port(), "", 2);
  std::vector<queue::RemoteResult> got;
  // The second job starts when the first is done; it is the connection's last (2 of 2),
  // so it QUITs and io.run() returns.
  d->deliver(f.job(), [&](queue::RemoteResult r) {
    got.push_back(std::move(r));
    EXPECT_EQ(d->held_connections(), 1u);
    d->deliver(f.job(), [&](queue::RemoteResult r2) { got.push_back(std::move(r2)); });
  });
  f.io.run();
  ASSERT_EQ(got.size(), 2u);
  for (const auto& r : got) {
    EXPECT_FALSE(r.hop_error);
    ASSERT_EQ(r.recipients.size(), 3u);
    EXPECT_EQ(r.recipients[0].status, queue::RemoteStatus::kDelivered);
    EXPECT_EQ(r.recipients[2].reply, "452 4.2.2 <bob@example.org> Quota exceeded");
  }
  ASSERT_EQ(std::count(server.lines.begin(), server.lines.end(), "LHLO node1.example.org"), 1);
  auto rset = std::find(server.lines.begin(), server.lines.end(), "RSET");
  ASSERT_NE(rset, server.lines.end());
  EXPECT_EQ(*(rset + 1), "MAIL FROM:<s@example.org>");
  EXPECT_EQ(server.lines.back(), "QUIT");
  ASSERT_EQ(f.attempts.size(), 2u);
  EXPECT_FALSE(f.attempts[0].reused);
  EXPECT_TRUE(f.attempts[1].reused);
  EXPECT_EQ(d->counters().connections_reused.load(), 1u);
  EXPECT_EQ(d->held_connections(), 0u);
}

TEST(LmtpDeliverer, ServerDownIsTransient441ForAll) {
  Fixture f;
  auto d = f.make(dead_port());
  auto r = f.run(*d, f.job());
  ASSERT_TRUE(r.hop_error);
  EXPECT_TRUE(r.hop_error->transient());
  EXPECT_EQ(r.hop_error->enhanced, "4.4.1");
  ASSERT_EQ(r.recipients.size(), 3u);
  for (const auto& x : r.recipients) {
    EXPECT_EQ(x.status, queue::RemoteStatus::kTransient);
    EXPECT_EQ(x.enhanced, "4.4.1");
  }
  ASSERT_EQ(f.attempts.size(), 1u);
  EXPECT_FALSE(f.attempts[0].connected);
  EXPECT_EQ(d->counters().connect_failures.load(), 1u);
}

TEST(LmtpDeliverer, OverAUnixSocket) {
  Fixture f;
  const std::string path = (f.dir / "lmtp").string();
  FakeLmtpOn<asio::local::stream_protocol> server{asio::local::stream_protocol::endpoint(path)};
  auto d = f.make(0, path);
  auto r = f.run(*d, f.job());
  EXPECT_FALSE(r.hop_error);
  EXPECT_EQ(r.remote_mta, "localhost [unix:" + path + "]");
  ASSERT_EQ(r.recipients.size(), 3u);
  EXPECT_EQ(r.recipients[0].status, queue::RemoteStatus::kDelivered);
  EXPECT_EQ(r.recipients[1].status, queue::RemoteStatus::kPermanent);
  EXPECT_EQ(server.lines[0], "LHLO node1.example.org");
  EXPECT_EQ(server.data, "Subject: x\n\nHello\n");
}

TEST(LmtpDeliverer, NoSocketAtThePathIsTransient441) {
  Fixture f;
  auto d = f.make(0, (f.dir / "nobody-listens").string());
  auto r = f.run(*d, f.job());
  ASSERT_TRUE(r.hop_error);
  EXPECT_TRUE(r.hop_error->transient());
  EXPECT_EQ(r.hop_error->enhanced, "4.4.1");
  EXPECT_NE(r.hop_error->message.find("nobody-listens"), std::string::npos);
  EXPECT_EQ(r.recipients[2].status, queue::RemoteStatus::kTransient);
}

TEST(LmtpDeliverer, UnreadableQueueFileIsTransient430BeforeAnyConnection) {
  Fixture f;
  auto d = f.make(dead_port());
  auto j = f.job();
  j.path = (f.dir / "missing").string();
  auto r = f.run(*d, std::move(j));
  ASSERT_TRUE(r.hop_error);
  EXPECT_EQ(r.hop_error->enhanced, "4.3.0");
  EXPECT_EQ(r.recipients[1].status, queue::RemoteStatus::kTransient);
  EXPECT_TRUE(f.attempts.empty());
}

}  // namespace
}  // namespace bh::smtp
