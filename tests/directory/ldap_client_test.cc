// LdapClient's failure paths without an LDAP server: a port nobody listens on (connect
// refused) and a TCP peer that accepts and never answers (a hung server). Every search
// must be answered once, transient 4.4.3, within its deadline. The success paths,
// pipelining and fail-over run against a real slapd in
// tests/integration/test_ldap_directory.py.
#include "directory/ldap_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <future>
#include <thread>

namespace bh::directory {
namespace {

namespace asio = boost::asio;
using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

struct Loop {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  std::thread th{[this] { io.run(); }};
  ~Loop() {
    guard.reset();
    io.stop();
    th.join();
  }
};

std::uint16_t closed_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();  // closed again when `a` goes
}

// Accepts connections and keeps them open without ever writing a byte.
struct SilentPeer {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
  std::vector<std::shared_ptr<asio::ip::tcp::socket>> held;  // on the peer's thread
  std::atomic<int> accepted{0};
  std::thread th;
  SilentPeer() {
    accept();
    th = std::thread([this] { io.run(); });
  }
  ~SilentPeer() {
    io.stop();
    th.join();
  }
  void accept() {
    auto s = std::make_shared<asio::ip::tcp::socket>(io);
    acceptor.async_accept(*s, [this, s](boost::system::error_code ec) {
      if (!ec) {
        held.push_back(s);
        accepted++;
        accept();
      }
    });
  }
  std::string uri() const {
    return "ldap://127.0.0.1:" + std::to_string(acceptor.local_endpoint().port()) + "/";
  }
};

Result<std::vector<LdapEntry>> wait(std::future<Result<std::vector<LdapEntry>>>& f) {
  if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    return permanent_error("9.9.9", "no answer at all");
  }
  return f.get();
}

std::future<Result<std::vector<LdapEntry>>> search(LdapClient& c) {
  auto p = std::make_shared<std::promise<Result<std::vector<LdapEntry>>>>();
  auto f = p->get_future();
  c.search(
      LdapSearch{"dc=example,dc=test", LdapScope::kSubtree, "(mail=a@example.test)", {"mail"}, 2},
      [p](Result<std::vector<LdapEntry>> r) { p->set_value(std::move(r)); });
  return f;
}

TEST(LdapClient, RefusedServerGivesTransient443) {
  Loop loop;
  LdapClientOptions o;
  o.uris = {"ldap://127.0.0.1:" + std::to_string(closed_port()) + "/"};
  o.timeout = milliseconds(3000);
  auto c = LdapClient::create(loop.io, o);
  c->start();
  auto t0 = Steady::now();
  auto f = search(*c);
  auto r = wait(f);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().transient());
  EXPECT_EQ(r.error().enhanced, "4.4.3");
  EXPECT_LT(Steady::now() - t0, milliseconds(2000)) << "a refused connect fails fast";
  // While it backs off, further searches fail at once too.
  auto f2 = search(*c);
  EXPECT_FALSE(wait(f2).ok());
  auto n = c->counters();
  EXPECT_GE(n.connect_failures, 1u);
  EXPECT_EQ(n.connects, 0u);
  EXPECT_EQ(n.searches, 2u);
  EXPECT_EQ(n.failed, 2u);
  EXPECT_EQ(n.connected_uri, "");
  c->stop();
}

TEST(LdapClient, HungServerAnswersWithinTheDeadline) {
  SilentPeer peer;
  Loop loop;
  LdapClientOptions o;
  o.uris = {peer.uri()};
  o.timeout = milliseconds(300);
  o.max_in_flight = 2;
  auto c = LdapClient::create(loop.io, o);
  c->start();
  auto t0 = Steady::now();
  auto f1 = search(*c);
  auto f2 = search(*c);
  auto f3 = search(*c);  // over max_in_flight: refused at once
  auto r3 = wait(f3);
  ASSERT_FALSE(r3.ok());
  EXPECT_EQ(r3.error().enhanced, "4.4.3");
  for (auto* f : {&f1, &f2}) {
    auto r = wait(*f);
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(r.error().transient());
    EXPECT_EQ(r.error().enhanced, "4.4.3");
  }
  auto took = Steady::now() - t0;
  EXPECT_GE(took, milliseconds(250));
  EXPECT_LT(took, milliseconds(300 + 1000));
  auto n = c->counters();
  EXPECT_EQ(n.rejected_busy, 1u);
  EXPECT_EQ(n.connects, 0u);
  c->stop();
}

TEST(LdapClient, FailsOverPastADeadServerAndStopFailsWhatIsPending) {
  SilentPeer peer;
  Loop loop;
  LdapClientOptions o;
  o.uris = {"ldap://127.0.0.1:" + std::to_string(closed_port()) + "/", peer.uri()};
  o.timeout = milliseconds(1500);
  auto c = LdapClient::create(loop.io, o);
  c->start();
  auto f = search(*c);  // waits: the second URI is binding (and never answers)
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(peer.accepted.load(), 1) << "the refused first URI was passed, the second tried";
  c->stop();
  auto r = wait(f);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().enhanced, "4.4.3");
  // The helper thread reports when the second bind gives up (its 1.5 s timeout): both
  // URIs failed, nothing connected after stop().
  auto until = Steady::now() + std::chrono::seconds(5);
  while (c->counters().connect_failures < 2 && Steady::now() < until) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(c->counters().connect_failures, 2u);
  EXPECT_EQ(c->counters().connects, 0u);
}

}  // namespace
}  // namespace bh::directory
