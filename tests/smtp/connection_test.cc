// The inbound adapter on 127.0.0.1 (port 0), with a real FsMessageStore and FileDirectory
// in a temp folder: the abuse limits that live in the adapter (smtp/connection.h).
#include "smtp/connection.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "directory/file_directory.h"
#include "queue/fs_message_store.h"

namespace bh::smtp {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A blocking client with a receive deadline.
class Client {
 public:
  explicit Client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }
  // One reply line (without CRLF); "" on EOF or timeout.
  std::string line() {
    for (;;) {
      auto eol = buf_.find("\r\n");
      if (eol != std::string::npos) {
        std::string l = buf_.substr(0, eol);
        buf_.erase(0, eol + 2);
        return l;
      }
      char tmp[4096];
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) {
        return "";
      }
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
  }
  void send(const std::string& s) {
    ASSERT_EQ(::send(fd_, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

class ConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bh-conn-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    queue::FsStoreOptions o;
    o.root = (dir_ / "queue").string();
    o.free_space_floor = 0;
    store_ = std::make_unique<queue::FsMessageStore>(o, clock_, random_);
    ASSERT_TRUE(store_->open().ok());
    svc_.store = store_.get();
    svc_.directory = &directory_;
    svc_.clock = &clock_;
    svc_.is_local_domain = [this](std::string_view d) { return directory_.is_local_domain(d); };
    svc_.counters = &counters_;
    svc_.session.hostname = "mx.example.org";
  }
  void start() {
    listener_ = std::make_unique<Listener>(
        std::vector<asio::io_context*>{&io_},
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), svc_);
    ASSERT_FALSE(listener_->open());
    listener_->start();
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    if (listener_) {
      asio::post(io_, [this] { listener_->stop(); });
    }
    guard_.reset();
    io_.stop();
    if (thread_.joinable()) {
      thread_.join();
    }
    listener_.reset();
    store_->close();
    fs::remove_all(dir_);
  }
  std::uint16_t port() const { return listener_->local_endpoint().port(); }

  fs::path dir_;
  ManualClock clock_;
  SystemRandom random_;
  std::unique_ptr<queue::FsMessageStore> store_;
  directory::FileDirectory directory_{{"alice@example.org"}, {"example.org"}};
  ListenerCounters counters_;
  ConnectionServices svc_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_ = asio::make_work_guard(io_);
  std::unique_ptr<Listener> listener_;
  std::thread thread_;
};

TEST_F(ConnectionTest, ConnectionRatePerIpAnswers421AndCounts) {
  svc_.rate_limiter = std::make_shared<ConnectionRateLimiter>(3, clock_);
  start();
  for (int i = 0; i < 3; ++i) {
    Client c(port());
    ASSERT_TRUE(c.connected());
    EXPECT_EQ(c.line().substr(0, 4), "220 ") << i;
  }
  {
    Client c(port());
    EXPECT_EQ(c.line(), "421 4.7.0 Too many connections from your address, try again later");
    EXPECT_EQ(c.line(), "");  // and closed
  }
  EXPECT_EQ(counters_.rejected_rate.load(), 1u);
  clock_.advance(20s);  // 3 per minute: one more after 20 s
  {
    Client c(port());
    EXPECT_EQ(c.line().substr(0, 4), "220 ");
  }
  {
    Client c(port());
    EXPECT_EQ(c.line().substr(0, 4), "421 ");
  }
  EXPECT_EQ(counters_.rejected_rate.load(), 2u);
  EXPECT_EQ(counters_.accepted.load(), 4u);
}

TEST_F(ConnectionTest, NoRateLimiterNoLimit) {
  start();
  for (int i = 0; i < 20; ++i) {
    Client c(port());
    EXPECT_EQ(c.line().substr(0, 4), "220 ") << i;
  }
  EXPECT_EQ(counters_.rejected_rate.load(), 0u);
}

TEST_F(ConnectionTest, TarpitDelaysEveryReplyAfterTheErrorCount) {
  svc_.tarpit_after_errors = 2;
  svc_.tarpit_delay = 400ms;
  svc_.session.max_errors = 5;
  start();
  Client c(port());
  ASSERT_EQ(c.line().substr(0, 4), "220 ");
  auto timed = [&](const std::string& cmd) {
    auto t0 = std::chrono::steady_clock::now();
    c.send(cmd + "\r\n");
    std::string l = c.line();
    return std::make_pair(l, std::chrono::steady_clock::now() - t0);
  };
  c.send("EHLO client.test\r\n");
  while (c.line().substr(0, 4) != "250 ") {
  }
  EXPECT_EQ(counters_.tarpit_delays.load(), 0u);
  EXPECT_EQ(timed("RCPT TO:<x@example.org>").first.substr(0, 4), "503 ");  // error 1
  EXPECT_EQ(timed("XYZZY").first.substr(0, 4), "500 ");                    // error 2
  EXPECT_EQ(counters_.tarpit_delays.load(), 0u);
  // From here on every reply waits, good ones too.
  auto [noop, t_noop] = timed("NOOP");
  EXPECT_EQ(noop.substr(0, 4), "250 ");
  EXPECT_GE(t_noop, 400ms);
  auto [bad, t_bad] = timed("XYZZY");  // error 3
  EXPECT_EQ(bad.substr(0, 4), "500 ");
  EXPECT_GE(t_bad, 400ms);
  EXPECT_EQ(counters_.tarpit_delays.load(), 2u);
  // max_errors still ends the session (errors 4, 5, 6 -> 421), one delay per write.
  c.send("XYZZY\r\nXYZZY\r\nXYZZY\r\n");
  std::string last, l;
  while (!(l = c.line()).empty()) {
    last = l;
  }
  EXPECT_EQ(last.substr(0, 9), "421 4.7.0");
  EXPECT_GE(counters_.tarpit_delays.load(), 3u);
}

TEST_F(ConnectionTest, TarpitOffWithZeroDelay) {
  svc_.tarpit_after_errors = 1;
  svc_.tarpit_delay = 0ms;
  start();
  Client c(port());
  ASSERT_EQ(c.line().substr(0, 4), "220 ");
  for (int i = 0; i < 5; ++i) {
    c.send("XYZZY\r\n");
    EXPECT_EQ(c.line().substr(0, 4), "500 ");
  }
  EXPECT_EQ(counters_.tarpit_delays.load(), 0u);
}

}  // namespace
}  // namespace bh::smtp
