// Integration: SmtpRelay against real Postfix programs on 127.0.0.1 (DESIGN.md §6).
//  - smtp-sink (protocol only): a normal delivery, 4xx and 5xx at RCPT, a 4xx greeting
//    that moves on to the next smart host, a hop that is down, and TLS required against a
//    server without STARTTLS.
//  - a throwaway Postfix (tests/support/postfix_smarthost.sh) as the smart host, with
//    STARTTLS (certificate from a CA made for the test, verified by IP) and AUTH through
//    Cyrus SASL; the relayed message is compared byte for byte with what Postfix wrote
//    into its Maildir.
// Needs root (Postfix's master and smtp-sink -u postfix). Free ports, temp folders, and
// every process started here is stopped at the end.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "smtp/relay_client.h"
#include "tests/routing/routing_test_util.h"
#include "tests/support/port_claim.h"

namespace bh::smtp {
namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace std::chrono_literals;
using routing::testing::smarthost_connector;

constexpr const char* kSink = "/usr/sbin/smtp-sink";

// A port free now that no other test of this run was given (tests/support/port_claim.h).
std::uint16_t free_port() {
  for (int attempt = 0; attempt < 200; ++attempt) {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    const std::uint16_t port = a.local_endpoint().port();
    if (bh::testing::claim_port(port)) {
      return port;
    }
  }
  BH_CHECK(false && "no free port that no other test was given in the last hour");
  return 0;
}

bool wait_listening(std::uint16_t port, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    asio::io_context io;
    asio::ip::tcp::socket s(io);
    boost::system::error_code ec;
    s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
    if (!ec) {
      return true;
    }
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "bh-relay-it-XXXXXX").string();
    BH_CHECK(::mkdtemp(t.data()) != nullptr);
    path_ = t;
    fs::permissions(path_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                               fs::perms::others_read | fs::perms::others_exec);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& s) const { return path_ / s; }

 private:
  fs::path path_;
};

// A child process, stopped (SIGTERM, then SIGKILL) when this goes away.
class Child {
 public:
  Child(std::vector<std::string> argv, const fs::path& log) {
    pid_ = ::fork();
    BH_CHECK(pid_ >= 0);
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      std::vector<char*> args;
      for (auto& a : argv) {
        args.push_back(a.data());
      }
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Child() {
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        return;
      }
      std::this_thread::sleep_for(20ms);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

 private:
  pid_t pid_ = -1;
};

// smtp-sink on a free port with extra options; messages dumped under dir/dump/.
class Sink {
 public:
  Sink(const TempDir& dir, const std::string& name, std::vector<std::string> options) {
    port_ = free_port();
    dump_ = dir / ("dump-" + name);
    fs::create_directories(dump_);
    BH_CHECK(std::system(("chown postfix " + dump_.string()).c_str()) == 0);
    std::vector<std::string> argv = {kSink, "-u", "postfix", "-d", (dump_ / "%M.").string()};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back("127.0.0.1:" + std::to_string(port_));
    argv.emplace_back("10");
    child_ = std::make_unique<Child>(argv, dir / (name + ".log"));
    BH_CHECK(wait_listening(port_, 10s));
  }
  std::uint16_t port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  // smtp-sink opens a capture file when a transaction starts (MAIL) and removes it when
  // the transaction ends without a message (RSET, QUIT, a closed connection). done() is
  // called before our QUIT is through, so an aborted transaction's file may still be
  // there for a moment: true once the folder is empty. A message it took would stay.
  bool no_message_within(std::chrono::milliseconds limit) const {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!dumps().empty()) {
      if (std::chrono::steady_clock::now() >= end) {
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }
  std::vector<std::string> dumps() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dump_)) {
      out.push_back(read_file(e.path()));
    }
    return out;
  }

 private:
  std::uint16_t port_ = 0;
  fs::path dump_;
  std::unique_ptr<Child> child_;
};

struct Outcome {
  queue::RemoteResult result;
  std::vector<RelayAttempt> attempts;
  int calls = 0;
};

std::string crlf_to_lf(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') {
      continue;
    }
    out.push_back(s[i]);
  }
  return out;
}

// A body of `size` octets or more with the lines that test dot-stuffing.
std::string make_body(std::size_t size) {
  std::string b =
      "From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: relay test\r\n"
      "Date: Sun, 29 Nov 2026 06:00:00 +0000\r\nMessage-ID: <relay-test@example.org>\r\n\r\n"
      ".a line that starts with a dot\r\n..two dots\r\n.\r\n";
  for (std::size_t i = 0; b.size() < size; ++i) {
    b += "line " + std::to_string(i) + " " + std::string(60, static_cast<char>('a' + i % 26)) +
         "\r\n";
  }
  return b;
}

class RelayIt : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root: Postfix's master and smtp-sink -u postfix";
    }
    if (!fs::exists(kSink)) {
      GTEST_SKIP() << "smtp-sink not installed (package postfix)";
    }
  }

  // Writes a queue-file-like file: junk, the body, junk (the relay reads only the range).
  queue::RemoteJob job(const std::string& connector, const std::string& body,
                       std::vector<std::string> rcpts) {
    fs::path p = dir_ / ("q" + std::to_string(++files_));
    std::ofstream(p, std::ios::binary) << "BHQF\x01\n" << body << "RECORDS";
    queue::RemoteJob j;
    j.queue_id = "Q" + std::to_string(files_);
    j.connector = connector;
    j.sender = "sender@example.org";
    for (std::size_t i = 0; i < rcpts.size(); ++i) {
      queue::RemoteJob::Rcpt r;
      r.index = i;
      r.address = rcpts[i];
      j.recipients.push_back(r);
    }
    j.path = p.string();
    j.body_offset = 6;
    j.body_length = body.size();
    return j;
  }

  Outcome deliver(std::vector<routing::Connector> connectors, queue::RemoteJob j,
                  RelayOptions o = {}) {
    auto t = routing::RouteTable::build(std::move(connectors));
    BH_CHECK(t.ok());
    std::shared_ptr<const routing::RouteTable> table = *t;
    asio::io_context io;
    Outcome out;
    o.helo_name = "relay.example.org";
    o.connect_timeout = 5s;
    o.timeouts.greeting = o.timeouts.command = o.timeouts.mail = o.timeouts.rcpt = 20s;
    o.timeouts.data_init = o.timeouts.data_block = o.timeouts.data_term = 20s;
    o.timeouts.tls_handshake = 10s;
    o.on_attempt = [&](const RelayAttempt& a) { out.attempts.push_back(a); };
    // One message per connection: each test is one session, ended with QUIT (a held
    // connection would keep io running until its idle limit; test_relay_reuse covers it).
    o.connection_max_messages = 1;
    auto relay = SmtpRelay::create(
        io, [table] { return table; }, nullptr, o);
    BH_CHECK(relay.ok());
    (*relay)->deliver(std::move(j), [&](queue::RemoteResult r) {
      ++out.calls;
      out.result = std::move(r);
    });
    io.run_for(60s);
    return out;
  }

  TempDir dir_;
  int files_ = 0;
};

TEST_F(RelayIt, SinkNormalDeliveryAllRecipientsDelivered) {
  Sink sink(dir_, "ok", {});
  std::string body = make_body(200 * 1024);  // several 64 KiB chunks
  auto o = deliver({smarthost_connector("out", sink.host(), {{"*", 1}})},
                   job("out", body, {"a@example.net", "b@example.net", "c@example.net"}));
  ASSERT_EQ(o.calls, 1);
  EXPECT_FALSE(o.result.hop_error);
  ASSERT_EQ(o.result.recipients.size(), 3u);
  for (const auto& r : o.result.recipients) {
    EXPECT_EQ(r.status, queue::RemoteStatus::kDelivered) << r.reply;
    EXPECT_EQ(r.enhanced, "2.0.0");
    EXPECT_EQ(r.reply.substr(0, 3), "250");
  }
  EXPECT_EQ(o.result.remote_mta, "127.0.0.1 [127.0.0.1]");
  EXPECT_TRUE(o.result.dsn_passed);  // smtp-sink offers DSN
  ASSERT_EQ(o.attempts.size(), 1u);
  EXPECT_FALSE(o.attempts[0].tls);
  // smtp-sink dumps with LF line endings, after undoing the dot-stuffing.
  auto dumps = sink.dumps();
  ASSERT_EQ(dumps.size(), 1u);
  EXPECT_NE(dumps[0].find("X-Rcpt-Args: <c@example.net>"), std::string::npos);
  EXPECT_NE(dumps[0].find("with ESMTP id"), std::string::npos);
  EXPECT_NE(dumps[0].find(crlf_to_lf(body)), std::string::npos) << "body differs";
}

TEST_F(RelayIt, SinkSoftRejectAtRcptIsTransientAndFinal) {
  Sink sink(dir_, "soft", {"-r", "RCPT"});
  std::uint16_t dead = free_port();
  auto c = smarthost_connector("out", sink.host(), {{"*", 1}});
  c.smart_hosts.push_back(*routing::parse_smart_host("127.0.0.1:" + std::to_string(dead)));
  auto o = deliver({c}, job("out", make_body(100), {"a@example.net", "b@example.net"}));
  ASSERT_EQ(o.calls, 1);
  for (const auto& r : o.result.recipients) {
    EXPECT_EQ(r.status, queue::RemoteStatus::kTransient);
    EXPECT_EQ(r.reply.substr(0, 1), "4") << r.reply;
    EXPECT_EQ(r.enhanced.substr(0, 2), "4.");
  }
  // MAIL went out: the next smart host is not tried; the queue retries.
  EXPECT_EQ(o.attempts.size(), 1u);
  EXPECT_TRUE(sink.no_message_within(5s));
}

TEST_F(RelayIt, SinkHardRejectAtRcptIsPermanent) {
  Sink sink(dir_, "hard", {"-f", "RCPT"});
  auto o = deliver({smarthost_connector("out", sink.host(), {{"*", 1}})},
                   job("out", make_body(100), {"a@example.net"}));
  ASSERT_EQ(o.calls, 1);
  ASSERT_EQ(o.result.recipients.size(), 1u);
  EXPECT_EQ(o.result.recipients[0].status, queue::RemoteStatus::kPermanent);
  EXPECT_EQ(o.result.recipients[0].reply.substr(0, 1), "5") << o.result.recipients[0].reply;
  EXPECT_EQ(o.result.recipients[0].enhanced.substr(0, 2), "5.");
  EXPECT_EQ(o.result.remote_mta, "127.0.0.1 [127.0.0.1]");
}

TEST_F(RelayIt, HopDownIsTransient441) {
  std::uint16_t dead = free_port();
  auto o = deliver({smarthost_connector("out", "127.0.0.1:" + std::to_string(dead), {{"*", 1}})},
                   job("out", make_body(100), {"a@example.net", "b@example.net"}));
  ASSERT_EQ(o.calls, 1);
  ASSERT_TRUE(o.result.hop_error);
  EXPECT_TRUE(o.result.hop_error->transient());
  EXPECT_EQ(o.result.hop_error->enhanced, "4.4.1");
  for (const auto& r : o.result.recipients) {
    EXPECT_EQ(r.status, queue::RemoteStatus::kTransient);
    EXPECT_EQ(r.enhanced, "4.4.1");
  }
}

TEST_F(RelayIt, DeadHostAndSoftGreetingMoveOnToTheNextSmartHost) {
  Sink busy(dir_, "busy", {"-r", "CONNECT"});
  Sink ok(dir_, "next", {});
  std::uint16_t dead = free_port();
  auto c = smarthost_connector("out", "127.0.0.1:" + std::to_string(dead), {{"*", 1}});
  c.smart_hosts.push_back(*routing::parse_smart_host(busy.host()));
  c.smart_hosts.push_back(*routing::parse_smart_host(ok.host()));
  auto o = deliver({c}, job("out", make_body(100), {"a@example.net"}));
  ASSERT_EQ(o.calls, 1);
  EXPECT_FALSE(o.result.hop_error);
  EXPECT_EQ(o.result.recipients[0].status, queue::RemoteStatus::kDelivered);
  ASSERT_EQ(o.attempts.size(), 3u);
  EXPECT_FALSE(o.attempts[0].connected);
  EXPECT_TRUE(o.attempts[1].connected);
  ASSERT_TRUE(o.attempts[1].error);
  EXPECT_EQ(o.attempts[1].error->enhanced.substr(0, 2), "4.");
  EXPECT_FALSE(o.attempts[1].mail_sent);
  EXPECT_TRUE(busy.dumps().empty());
  EXPECT_EQ(ok.dumps().size(), 1u);
}

// RFC 5321 §5.1 asks for the next MX on a 4xx; we also move on after a 5xx greeting
// (docs/smtp-client.md "Relay adapter"): one broken host must not bounce the mail.
TEST_F(RelayIt, HardGreetingMovesOnAndAloneIsPermanent) {
  Sink refuse(dir_, "refuse", {"-f", "CONNECT"});
  Sink ok(dir_, "after-refuse", {});
  auto c = smarthost_connector("out", refuse.host(), {{"*", 1}});
  c.smart_hosts.push_back(*routing::parse_smart_host(ok.host()));
  auto o = deliver({c}, job("out", make_body(100), {"a@example.net"}));
  ASSERT_EQ(o.calls, 1);
  EXPECT_EQ(o.result.recipients[0].status, queue::RemoteStatus::kDelivered);
  ASSERT_EQ(o.attempts.size(), 2u);
  ASSERT_TRUE(o.attempts[0].error);
  EXPECT_EQ(o.attempts[0].error->enhanced.substr(0, 2), "5.");

  auto alone = deliver({smarthost_connector("out", refuse.host(), {{"*", 1}})},
                       job("out", make_body(100), {"a@example.net"}));
  ASSERT_TRUE(alone.result.hop_error);
  EXPECT_FALSE(alone.result.hop_error->transient());
  EXPECT_EQ(alone.result.recipients[0].status, queue::RemoteStatus::kPermanent);
  EXPECT_TRUE(refuse.dumps().empty());
}

// A queue file shorter than the envelope says: the message is never ended with a dot.
TEST_F(RelayIt, ShortQueueFileIsTransient430AndNoMessageIsCompleted) {
  Sink sink(dir_, "short", {});
  auto j = job("out", make_body(100 * 1024), {"a@example.net"});
  j.body_length += 200 * 1024;
  auto o = deliver({smarthost_connector("out", sink.host(), {{"*", 1}})}, j);
  ASSERT_EQ(o.calls, 1);
  ASSERT_TRUE(o.result.hop_error);
  EXPECT_EQ(o.result.hop_error->enhanced, "4.3.0");
  EXPECT_EQ(o.result.recipients[0].status, queue::RemoteStatus::kTransient);
  EXPECT_EQ(o.result.recipients[0].enhanced, "4.3.0");
  EXPECT_TRUE(sink.no_message_within(5s));
}

TEST_F(RelayIt, TlsRequiredWithoutStartTlsIsTransient474AndNothingSent) {
  Sink sink(dir_, "notls", {});
  auto c = smarthost_connector("out", sink.host(), {{"*", 1}});
  c.settings.tls = routing::TlsMode::kRequired;
  auto o = deliver({c}, job("out", make_body(100), {"a@example.net"}));
  ASSERT_EQ(o.calls, 1);
  ASSERT_TRUE(o.result.hop_error);
  EXPECT_TRUE(o.result.hop_error->transient());
  EXPECT_EQ(o.result.hop_error->enhanced, "4.7.4");
  EXPECT_EQ(o.result.recipients[0].status, queue::RemoteStatus::kTransient);
  ASSERT_EQ(o.attempts.size(), 1u);
  EXPECT_FALSE(o.attempts[0].mail_sent);
  EXPECT_TRUE(sink.dumps().empty());
}

// ---- A real Postfix as the smart host: STARTTLS + AUTH ----

constexpr const char* kUser = "relayuser";
constexpr const char* kPassword = "s3cret pass";

class PostfixSmartHost {
 public:
  explicit PostfixSmartHost(const TempDir& dir) : base_(dir / "postfix") {
    fs::create_directories(base_);
    port_ = free_port();
    std::string setup = std::string("bash ") + BH_SUPPORT_DIR + "/postfix_smarthost.sh " +
                        base_.string() + " " + std::to_string(port_) + " " + kUser + " '" +
                        kPassword + "' > " + (base_ / "setup.log").string() + " 2>&1";
    ok_ = std::system(setup.c_str()) == 0;
    if (ok_) {
      std::string start = "postfix -c " + (base_ / "conf").string() + " start > " +
                          (base_ / "start.log").string() + " 2>&1";
      ok_ = std::system(start.c_str()) == 0 && wait_listening(port_, 15s);
    }
  }
  ~PostfixSmartHost() {
    std::ifstream pidf(base_ / "queue/pid/master.pid");
    pid_t pid = 0;
    if (pidf >> pid && pid > 0) {
      ::kill(pid, SIGTERM);
      for (int i = 0; i < 250 && ::kill(pid, 0) == 0; ++i) {
        std::this_thread::sleep_for(20ms);
      }
    }
  }
  bool ok() const { return ok_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  fs::path ca() const { return base_ / "ca.pem"; }
  std::string log() const { return read_file(base_ / "maillog") + read_file(base_ / "setup.log"); }
  // The delivered messages (Maildir new/), waiting up to `limit` for `n` of them.
  std::vector<std::string> mail(std::size_t n, std::chrono::milliseconds limit) const {
    auto end = std::chrono::steady_clock::now() + limit;
    fs::path dir = base_ / "mail/box/new";
    for (;;) {
      std::vector<std::string> out;
      std::error_code ec;
      for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); ++it) {
        out.push_back(read_file(it->path()));
      }
      if (out.size() >= n || std::chrono::steady_clock::now() > end) {
        return out;
      }
      std::this_thread::sleep_for(100ms);
    }
  }

 private:
  fs::path base_;
  std::uint16_t port_ = 0;
  bool ok_ = false;
};

class RelayPostfix : public RelayIt {
 protected:
  void SetUp() override {
    RelayIt::SetUp();
    if (IsSkipped()) {
      return;
    }
    pf_ = std::make_unique<PostfixSmartHost>(dir_);
    ASSERT_TRUE(pf_->ok()) << pf_->log();
    std::ofstream(dir_ / "password") << kPassword << "\n";
  }
  void TearDown() override { pf_.reset(); }

  routing::Connector connector(bool verify) {
    auto c = smarthost_connector("smarthost", pf_->host(), {{"*", 1}});
    c.settings.tls = routing::TlsMode::kRequired;
    c.settings.tls_verify = verify;
    c.settings.auth_username = kUser;
    c.settings.auth_password_file = (dir_ / "password").string();
    return c;
  }

  std::unique_ptr<PostfixSmartHost> pf_;
};

TEST_F(RelayPostfix, StartTlsAuthAndTheBodyArrivesByteExact) {
  RelayOptions opt;
  opt.tls_ca_file = pf_->ca().string();
  std::string body = make_body(150 * 1024);
  auto o = deliver({connector(/*verify=*/true)}, job("smarthost", body, {"rcpt@example.net"}), opt);
  ASSERT_EQ(o.calls, 1);
  ASSERT_EQ(o.result.recipients.size(), 1u);
  EXPECT_EQ(o.result.recipients[0].status, queue::RemoteStatus::kDelivered)
      << o.result.recipients[0].reply << "\n"
      << pf_->log();
  EXPECT_FALSE(o.result.hop_error);
  ASSERT_EQ(o.attempts.size(), 1u);
  EXPECT_TRUE(o.attempts[0].tls);
  EXPECT_TRUE(o.attempts[0].authenticated);

  auto mail = pf_->mail(1, 20s);
  ASSERT_EQ(mail.size(), 1u) << pf_->log();
  const std::string& m = mail[0];
  // Postfix stores LF line endings and puts its own lines in front: Return-Path,
  // X-Original-To, Delivered-To and its Received header. Everything after is ours.
  std::string want = crlf_to_lf(body);
  ASSERT_GE(m.size(), want.size());
  EXPECT_TRUE(m.compare(m.size() - want.size(), want.size(), want) == 0) << "body differs";
  std::string added = m.substr(0, m.size() - want.size());
  EXPECT_EQ(added.rfind("Return-Path: <sender@example.org>\n", 0), 0u) << added;
  EXPECT_NE(added.find("with ESMTPSA id"), std::string::npos) << added;  // TLS + AUTH
  EXPECT_NE(added.find("(using TLSv1."), std::string::npos) << added;
  EXPECT_EQ(added.find("From: "), std::string::npos) << added;  // nothing of ours before
  EXPECT_NE(pf_->log().find("sasl_username=" + std::string(kUser)), std::string::npos);
}

TEST_F(RelayPostfix, WrongPasswordIsTransient478AndNothingDelivered) {
  std::ofstream(dir_ / "password") << "wrong\n";
  RelayOptions opt;
  opt.tls_ca_file = pf_->ca().string();
  auto o = deliver({connector(true)}, job("smarthost", make_body(100), {"rcpt@example.net"}), opt);
  ASSERT_EQ(o.calls, 1);
  ASSERT_TRUE(o.result.hop_error);
  EXPECT_TRUE(o.result.hop_error->transient());
  EXPECT_EQ(o.result.hop_error->enhanced, "4.7.8");
  EXPECT_EQ(o.result.recipients[0].status, queue::RemoteStatus::kTransient);
  ASSERT_EQ(o.attempts.size(), 1u);
  EXPECT_TRUE(o.attempts[0].tls);
  EXPECT_FALSE(o.attempts[0].authenticated);
  EXPECT_TRUE(pf_->mail(1, 1s).empty());
}

TEST_F(RelayPostfix, CertificateFromAnUnknownCaFailsVerificationTransient475) {
  // The system CA paths do not know the test CA.
  auto o =
      deliver({connector(/*verify=*/true)}, job("smarthost", make_body(100), {"rcpt@example.net"}));
  ASSERT_EQ(o.calls, 1);
  ASSERT_TRUE(o.result.hop_error);
  EXPECT_TRUE(o.result.hop_error->transient());
  EXPECT_EQ(o.result.hop_error->enhanced, "4.7.5");
  EXPECT_NE(o.result.hop_error->message.find("certificate"), std::string::npos)
      << o.result.hop_error->message;
  ASSERT_EQ(o.attempts.size(), 1u);
  EXPECT_FALSE(o.attempts[0].tls);
  EXPECT_FALSE(o.attempts[0].mail_sent);
  EXPECT_TRUE(pf_->mail(1, 1s).empty());
}

TEST_F(RelayPostfix, OpportunisticUnverifiedTlsWithAuthDelivers) {
  auto c = connector(false);
  c.settings.tls = routing::TlsMode::kOpportunistic;
  auto o =
      deliver({c}, job("smarthost", make_body(1000), {"rcpt@example.net", "other@example.net"}));
  ASSERT_EQ(o.calls, 1);
  for (const auto& r : o.result.recipients) {
    EXPECT_EQ(r.status, queue::RemoteStatus::kDelivered) << r.reply;
  }
  ASSERT_EQ(o.attempts.size(), 1u);
  EXPECT_TRUE(o.attempts[0].tls);
  EXPECT_EQ(pf_->mail(2, 20s).size(), 2u);
}

}  // namespace
}  // namespace bh::smtp
