// MilterSink against a scripted milter on loopback (a thread with a blocking socket):
// the whole conversation, actions applied, a milter that hangs, one that is not there.
#include "sinks/milter_sink.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <optional>
#include <thread>

#include "sinks/milter_protocol.h"

namespace bh::sinks {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

enum class Script { kSign, kHang, kReject };

// Serves one connection; records the commands it saw.
class FakeMilter {
 public:
  explicit FakeMilter(Script s)
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), script_(s) {
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeMilter() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    if (sock_) {
      sock_->close(ignored);
    }
    thread_.join();
  }
  std::string spec() const {
    return "inet:" + std::to_string(acceptor_.local_endpoint().port()) + "@127.0.0.1";
  }
  std::string commands;  // one octet per command seen

 private:
  void serve() {
    boost::system::error_code ec;
    sock_.emplace(io_);
    acceptor_.accept(*sock_, ec);
    if (ec) {
      return;
    }
    for (;;) {
      std::array<char, 4> len{};
      asio::read(*sock_, asio::buffer(len), ec);
      if (ec) {
        return;
      }
      std::uint32_t n = (std::uint32_t(std::uint8_t(len[0])) << 24) |
                        (std::uint32_t(std::uint8_t(len[1])) << 16) |
                        (std::uint32_t(std::uint8_t(len[2])) << 8) | std::uint8_t(len[3]);
      std::string data(n, '\0');
      asio::read(*sock_, asio::buffer(data), ec);
      if (ec) {
        return;
      }
      const char cmd = data[0];
      commands.push_back(cmd);
      std::string out;
      if (script_ == Script::kHang && cmd != 'O') {
        continue;  // never answers after negotiating
      }
      switch (cmd) {
        case 'O':
          out = milter::encode_optneg(6, milter::kActAddHeaders | milter::kActChangeHeaders, 0);
          break;
        case 'D':
          break;  // macros: no reply
        case 'E':
          if (script_ == Script::kReject) {
            out = milter::encode('y', std::string("550 5.7.0 signature says no\0", 28));
          } else {
            out = milter::encode('i', std::string("\0\0\0\0X-Signed\0yes\n\tfolded\0", 25)) +
                  milter::encode('m', std::string("\0\0\0\x01Subject\0changed\0", 20)) +
                  milter::encode('a', "");
          }
          break;
        case 'Q':
          return;
        default:
          out = milter::encode('c', "");
      }
      if (!out.empty()) {
        asio::write(*sock_, asio::buffer(out), ec);
      }
    }
  }
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::optional<tcp::socket> sock_;
  Script script_;
  std::thread thread_;
};

std::shared_ptr<MessageEvent> message() {
  auto ev = std::make_shared<MessageEvent>();
  ev->envelope.id = "Q7";
  ev->envelope.sender = "alice@example.org";
  ev->envelope.client_address = "127.0.0.1";
  ev->envelope.client_helo = "client.example";
  queue::Recipient r;
  r.address = "bob@example.net";
  ev->envelope.recipients = {r, r};
  ev->message = "Received: x\r\nSubject: hello\r\n\r\nbody\r\n";
  return ev;
}

Result<Verdict> run(MilterConfig cfg, std::shared_ptr<MessageEvent> ev) {
  asio::io_context io;
  std::optional<Result<Verdict>> got;
  MilterSink sink(std::move(cfg));
  sink.on_message(ev, io.get_executor(), [&](Result<Verdict> v) { got = std::move(v); });
  io.run_for(std::chrono::seconds(10));
  EXPECT_TRUE(got.has_value());
  return got ? *got : Result<Verdict>(transient_error("4.0.0", "no answer"));
}

TEST(MilterSinkTest, WholeConversationAndActions) {
  std::string seen;
  auto ev = message();
  {
    FakeMilter m(Script::kSign);
    MilterConfig cfg;
    cfg.socket = m.spec();
    auto v = run(cfg, ev);
    ASSERT_TRUE(v.ok()) << v.error().message;
    EXPECT_EQ(v->kind, Verdict::Kind::kContinue);
    // Destroying the fake joins its thread after our QUIT.
  }
  EXPECT_EQ(ev->message,
            "X-Signed: yes\r\n\tfolded\r\nReceived: x\r\nSubject: changed\r\n\r\nbody\r\n");
}

TEST(MilterSinkTest, CommandsInProtocolOrder) {
  FakeMilter m(Script::kSign);
  MilterConfig cfg;
  cfg.socket = m.spec();
  auto v = run(cfg, message());
  ASSERT_TRUE(v.ok());
  // Wait for QUIT to arrive (the fake records it before returning).
  for (int i = 0; i < 200 && m.commands.find('Q') == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(m.commands, "ODCHDMDRDRDTLLNBDEQ");
}

TEST(MilterSinkTest, ReplyCodeRejects) {
  FakeMilter m(Script::kReject);
  MilterConfig cfg;
  cfg.socket = m.spec();
  auto v = run(cfg, message());
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->kind, Verdict::Kind::kReject);
  EXPECT_EQ(v->error.reply_code, 550);
  EXPECT_EQ(v->error.enhanced, "5.7.0");
}

TEST(MilterSinkTest, HangingMilterFailsAtItsTimeout) {
  FakeMilter m(Script::kHang);
  MilterConfig cfg;
  cfg.socket = m.spec();
  cfg.command_timeout = std::chrono::milliseconds(100);
  auto t0 = std::chrono::steady_clock::now();
  auto v = run(cfg, message());
  EXPECT_FALSE(v.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
}

TEST(MilterSinkTest, AbsentMilterFails) {
  std::uint16_t port;
  {
    asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }
  MilterConfig cfg;
  cfg.socket = "inet:" + std::to_string(port) + "@127.0.0.1";
  EXPECT_FALSE(run(cfg, message()).ok());
}

TEST(MilterSinkTest, SocketSpecs) {
  EXPECT_EQ(check_milter_socket("inet:8891@127.0.0.1"), "");
  EXPECT_EQ(check_milter_socket("unix:/run/milter.sock"), "");
  EXPECT_NE(check_milter_socket("inet:8891@localhost"), "");
  EXPECT_NE(check_milter_socket("inet:0@127.0.0.1"), "");
  EXPECT_NE(check_milter_socket("inet:99999@127.0.0.1"), "");
  EXPECT_NE(check_milter_socket("local:relative"), "");
  EXPECT_NE(check_milter_socket("unix:relative"), "");
}

}  // namespace
}  // namespace bh::sinks
