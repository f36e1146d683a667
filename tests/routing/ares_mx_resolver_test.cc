// AresMxResolver against a real dnsmasq (DESIGN.md §6: real components in tests).
//
// The fixture starts, on 127.0.0.1 with free ports and a temp folder:
//  - "data": a dnsmasq answering from command-line records (--mx-host, --host-record)
//    for names under .test (--local=/test/: other .test names are NXDOMAIN), forwarding
//    timeout.test to a UDP socket this test holds open and never reads (a black hole: no
//    reply, no ICMP), so that queries for it time out;
//  - "validator": a second dnsmasq with DNSSEC validation and the root trust anchor,
//    forwarding everything to "data". Data's answers are unsigned, so every answer fails
//    validation and the validator replies SERVFAIL at once. (A plain dnsmasq never
//    says SERVFAIL by itself: a dead upstream gives no reply at all, and an upstream
//    REFUSED or a send error is passed on as REFUSED.)
// Both are stopped with SIGTERM and reaped at the end; the folder holds their logs.
#include "routing/ares_mx_resolver.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/routing/routing_test_util.h"
#include "tests/support/port_claim.h"

extern char** environ;

namespace bh::routing {
namespace {

using namespace std::chrono_literals;
using testing::SeededRandom;

// RFC 8624 / IANA root KSK-2017 DS record: any validating resolver's default anchor.
constexpr const char* kRootAnchor =
    ".,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D";

std::string find_dnsmasq() {
  if (const char* env = std::getenv("BH_DNSMASQ")) {
    return env;
  }
  std::vector<std::string> dirs = {"/usr/sbin", "/sbin", "/usr/local/sbin"};
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    for (std::size_t start = 0; start <= p.size();) {
      auto colon = p.find(':', start);
      dirs.push_back(p.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
      if (colon == std::string::npos) {
        break;
      }
      start = colon + 1;
    }
  }
  for (const auto& d : dirs) {
    std::string f = d + "/dnsmasq";
    if (::access(f.c_str(), X_OK) == 0) {
      return f;
    }
  }
  return "";
}

// A UDP socket on 127.0.0.1 with a kernel-chosen port.
int bound_udp_socket(std::uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return -1;
  }
  port = ntohs(a.sin_port);
  return fd;
}

// A port free for both UDP and TCP on 127.0.0.1 right now (dnsmasq binds both).
std::uint16_t free_port() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    std::uint16_t port = 0;
    int u = bound_udp_socket(port);
    if (u < 0) {
      continue;
    }
    int t = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    bool ok = t >= 0 && ::bind(t, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(t);
    ::close(u);
    if (ok && bh::testing::claim_port(port)) {  // tests/support/port_claim.h
      return port;
    }
  }
  return 0;
}

// One raw UDP query; the reply's RCODE, or nullopt on no reply within `wait`.
std::optional<int> query_rcode(std::uint16_t port, const std::string& name, int type,
                               std::chrono::milliseconds wait) {
  std::vector<unsigned char> q = {0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  std::size_t start = 0;
  while (start < name.size()) {
    auto dot = name.find('.', start);
    if (dot == std::string::npos) {
      dot = name.size();
    }
    q.push_back(static_cast<unsigned char>(dot - start));
    q.insert(q.end(), name.begin() + static_cast<long>(start), name.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  q.insert(q.end(), {0, static_cast<unsigned char>(type >> 8), static_cast<unsigned char>(type), 0, 1});
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  std::optional<int> rcode;
  if (::sendto(fd, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a) ==
      static_cast<ssize_t>(q.size())) {
    pollfd p{fd, POLLIN, 0};
    unsigned char buf[1500];
    if (::poll(&p, 1, static_cast<int>(wait.count())) == 1) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n >= 12 && buf[0] == 0xbe && buf[1] == 0xef) {
        rcode = buf[3] & 0x0F;
      }
    }
  }
  ::close(fd);
  return rcode;
}

class Dnsmasq {
 public:
  Dnsmasq(std::string binary, std::filesystem::path log) : binary_(std::move(binary)), log_(std::move(log)) {}
  ~Dnsmasq() { stop(); }

  // Starts dnsmasq on a free port with `args`; true once it answers `probe` (any RCODE).
  bool start(const std::vector<std::string>& args, const std::string& probe) {
    for (int attempt = 0; attempt < 5; ++attempt) {  // the free port may be taken meanwhile
      port_ = free_port();
      std::vector<std::string> argv = {binary_,
                                       "--keep-in-foreground",
                                       "--port=" + std::to_string(port_),
                                       "--listen-address=127.0.0.1",
                                       "--bind-interfaces",
                                       "--no-resolv",
                                       "--no-hosts",
                                       "--no-poll",
                                       "--conf-file=/dev/null",
                                       "--pid-file=",
                                       "--log-queries",
                                       "--log-facility=-"};
      argv.insert(argv.end(), args.begin(), args.end());
      std::vector<char*> cargv;
      for (auto& s : argv) {
        cargv.push_back(s.data());
      }
      cargv.push_back(nullptr);
      posix_spawn_file_actions_t fa;
      posix_spawn_file_actions_init(&fa);
      posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      posix_spawn_file_actions_adddup2(&fa, 1, 2);
      int rc = posix_spawn(&pid_, binary_.c_str(), &fa, nullptr, cargv.data(), environ);
      posix_spawn_file_actions_destroy(&fa);
      if (rc != 0) {
        pid_ = -1;
        return false;
      }
      auto deadline = std::chrono::steady_clock::now() + 5s;
      while (std::chrono::steady_clock::now() < deadline) {
        if (query_rcode(port_, probe, 1, 50ms).has_value()) {
          return true;
        }
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;  // exited (port taken?): try another port
          break;
        }
      }
      stop();
    }
    return false;
  }

  void stop() {
    if (pid_ <= 0) {
      return;
    }
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 200; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(10ms);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  std::uint16_t port() const { return port_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  std::string binary_;
  std::filesystem::path log_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

class AresMxResolverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string binary = find_dnsmasq();
    ASSERT_FALSE(binary.empty()) << "dnsmasq not found (deploy/install-deps.sh installs it)";
    char tmpl[] = "/tmp/bh-dns-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = new std::filesystem::path(tmpl);
    std::uint16_t hole_port = 0;
    black_hole_ = bound_udp_socket(hole_port);
    ASSERT_GE(black_hole_, 0);

    data_ = new Dnsmasq(binary, *dir_ / "data.log");
    ASSERT_TRUE(data_->start(
        {
            "--local=/test/",
            // MX preference order; dnsmasq returns them unsorted, with A/AAAA in ADDITIONAL
            "--mx-host=mx.test,mx2.mx.test,20",
            "--mx-host=mx.test,mx1.mx.test,10",
            "--host-record=mx1.mx.test,127.0.0.2,::2",
            "--host-record=mx2.mx.test,127.0.0.3",
            // equal preference
            "--mx-host=eq.test,e1.mx.test,5",
            "--mx-host=eq.test,e2.mx.test,5",
            "--host-record=e1.mx.test,127.0.0.5",
            "--host-record=e2.mx.test,127.0.0.6",
            // no MX: implicit MX from A/AAAA
            "--host-record=a-only.test,127.0.0.4,::4",
            // RFC 7505 null MX
            "--mx-host=nullmx.test,.,0",
            // MX pointing at a name that does not exist
            "--mx-host=dangling.test,nohost.test,10",
            // no reply ever
            "--server=/timeout.test/127.0.0.1#" + std::to_string(hole_port),
        },
        "mx1.mx.test"))
        << "dnsmasq (data) did not start; see " << (*dir_ / "data.log");

    validator_ = new Dnsmasq(binary, *dir_ / "validator.log");
    ASSERT_TRUE(validator_->start({"--server=127.0.0.1#" + std::to_string(data_->port()), "--dnssec",
                                   std::string("--trust-anchor=") + kRootAnchor},
                                  "mx.test"))
        << "dnsmasq (validator) did not start; see " << (*dir_ / "validator.log");
  }

  static void TearDownTestSuite() {
    delete validator_;  // SIGTERM + reap
    delete data_;
    validator_ = data_ = nullptr;
    if (black_hole_ >= 0) {
      ::close(black_hole_);
      black_hole_ = -1;
    }
    if (dir_ != nullptr) {
      std::error_code ec;
      std::filesystem::remove_all(*dir_, ec);
      delete dir_;
      dir_ = nullptr;
    }
  }

  void SetUp() override {
    if (data_ == nullptr || validator_ == nullptr) {
      GTEST_FAIL() << "fixture did not start";
    }
  }

  std::unique_ptr<AresMxResolver> resolver(const std::vector<std::string>& servers,
                                           std::chrono::milliseconds timeout = 2000ms, int tries = 1) {
    auto r = AresMxResolver::create(AresMxResolverOptions{servers, timeout, tries}, random_);
    BH_CHECK(r.ok());
    return std::move(*r);
  }

  static Result<std::vector<MxHost>> resolve(MxResolver& r, const std::string& domain) {
    auto p = std::make_shared<std::promise<Result<std::vector<MxHost>>>>();
    auto f = p->get_future();
    r.resolve(domain, [p](Result<std::vector<MxHost>> res) { p->set_value(std::move(res)); });
    if (f.wait_for(20s) != std::future_status::ready) {
      ADD_FAILURE() << "no answer for " << domain;
      return transient_error("4.4.3", "test: no answer");
    }
    return f.get();
  }

  static std::filesystem::path* dir_;
  static Dnsmasq* data_;
  static Dnsmasq* validator_;
  static int black_hole_;
  SeededRandom random_{2024};
};

std::filesystem::path* AresMxResolverTest::dir_ = nullptr;
Dnsmasq* AresMxResolverTest::data_ = nullptr;
Dnsmasq* AresMxResolverTest::validator_ = nullptr;
int AresMxResolverTest::black_hole_ = -1;

TEST_F(AresMxResolverTest, MxHostsInPreferenceOrderWithAddresses) {
  auto r = resolver({data_->server()});
  auto hosts = resolve(*r, "MX.test.");
  ASSERT_TRUE(hosts.ok()) << hosts.error().message;
  ASSERT_EQ(hosts->size(), 2u);
  EXPECT_EQ((*hosts)[0].host, "mx1.mx.test");
  EXPECT_EQ((*hosts)[0].preference, 10);
  EXPECT_FALSE((*hosts)[0].implicit);
  EXPECT_EQ((*hosts)[0].addresses, (std::vector<std::string>{"127.0.0.2", "::2"}));
  EXPECT_EQ((*hosts)[1].host, "mx2.mx.test");
  EXPECT_EQ((*hosts)[1].preference, 20);
  EXPECT_EQ((*hosts)[1].addresses, (std::vector<std::string>{"127.0.0.3"}));
}

TEST_F(AresMxResolverTest, EqualPreferenceHostsShareTheFirstPlace) {
  auto r = resolver({data_->server()});
  std::set<std::string> firsts;
  for (int i = 0; i < 30; ++i) {
    auto hosts = resolve(*r, "eq.test");
    ASSERT_TRUE(hosts.ok()) << hosts.error().message;
    ASSERT_EQ(hosts->size(), 2u);
    firsts.insert(hosts->front().host);
  }
  EXPECT_EQ(firsts, (std::set<std::string>{"e1.mx.test", "e2.mx.test"}));
}

TEST_F(AresMxResolverTest, NoMxFallsBackToTheDomainsAddresses) {
  auto r = resolver({data_->server()});
  auto hosts = resolve(*r, "a-only.test");
  ASSERT_TRUE(hosts.ok()) << hosts.error().message;
  ASSERT_EQ(hosts->size(), 1u);
  EXPECT_EQ((*hosts)[0].host, "a-only.test");
  EXPECT_TRUE((*hosts)[0].implicit);
  EXPECT_EQ((*hosts)[0].addresses, (std::vector<std::string>{"127.0.0.4", "::4"}));
}

TEST_F(AresMxResolverTest, NxDomainIsPermanent512) {
  auto r = resolver({data_->server()});
  auto hosts = resolve(*r, "nope.test");
  ASSERT_FALSE(hosts.ok());
  EXPECT_FALSE(hosts.error().transient());
  EXPECT_EQ(hosts.error().enhanced, "5.1.2");
}

TEST_F(AresMxResolverTest, NullMxIsPermanent5110) {
  auto r = resolver({data_->server()});
  auto hosts = resolve(*r, "nullmx.test");
  ASSERT_FALSE(hosts.ok());
  EXPECT_FALSE(hosts.error().transient());
  EXPECT_EQ(hosts.error().enhanced, "5.1.10");
}

TEST_F(AresMxResolverTest, MxWithoutAddressIsPermanent544) {
  auto r = resolver({data_->server()});
  auto hosts = resolve(*r, "dangling.test");
  ASSERT_FALSE(hosts.ok());
  EXPECT_FALSE(hosts.error().transient());
  EXPECT_EQ(hosts.error().enhanced, "5.4.4");
}

TEST_F(AresMxResolverTest, ServfailIsTransient443) {
  // The fixture's premise first: the validator really answers SERVFAIL (RCODE 2).
  ASSERT_EQ(query_rcode(validator_->port(), "mx.test", 15, 2000ms), std::optional<int>(2));
  auto r = resolver({validator_->server()});
  auto hosts = resolve(*r, "mx.test");
  ASSERT_FALSE(hosts.ok());
  EXPECT_TRUE(hosts.error().transient());
  EXPECT_EQ(hosts.error().enhanced, "4.4.3");
}

TEST_F(AresMxResolverTest, RefusedIsTransient443) {
  ASSERT_EQ(query_rcode(data_->port(), "example.com", 15, 2000ms), std::optional<int>(5));
  auto r = resolver({data_->server()});
  auto hosts = resolve(*r, "example.com");
  ASSERT_FALSE(hosts.ok());
  EXPECT_TRUE(hosts.error().transient());
  EXPECT_EQ(hosts.error().enhanced, "4.4.3");
}

TEST_F(AresMxResolverTest, TimeoutIsTransient443) {
  auto r = resolver({data_->server()}, 300ms, 1);
  auto t0 = std::chrono::steady_clock::now();
  auto hosts = resolve(*r, "x.timeout.test");
  ASSERT_FALSE(hosts.ok());
  EXPECT_TRUE(hosts.error().transient());
  EXPECT_EQ(hosts.error().enhanced, "4.4.3");
  EXPECT_NE(hosts.error().message.find("timeout"), std::string::npos) << hosts.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

TEST_F(AresMxResolverTest, NextServerAfterServfail) {
  // SERVFAIL from the first server: c-ares asks the next one, which knows the answer.
  auto r = resolver({validator_->server(), data_->server()});
  auto hosts = resolve(*r, "mx.test");
  ASSERT_TRUE(hosts.ok()) << hosts.error().message;
  EXPECT_EQ(hosts->front().host, "mx1.mx.test");
}

TEST_F(AresMxResolverTest, ManyConcurrentLookupsFromSeveralThreads) {
  auto r = resolver({data_->server()});
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto hosts = resolve(*r, i % 2 ? "mx.test" : "a-only.test");
        if (hosts.ok() && !hosts->empty()) {
          ++good;
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(good.load(), 40);
}

TEST_F(AresMxResolverTest, DestroyingEndsPendingLookupsTransiently) {
  auto r = resolver({data_->server()}, 5000ms, 3);
  auto p = std::make_shared<std::promise<Result<std::vector<MxHost>>>>();
  auto f = p->get_future();
  r->resolve("x.timeout.test", [p](Result<std::vector<MxHost>> res) { p->set_value(std::move(res)); });
  std::this_thread::sleep_for(100ms);  // in flight at the black hole
  r.reset();
  ASSERT_EQ(f.wait_for(0s), std::future_status::ready);
  auto res = f.get();
  ASSERT_FALSE(res.ok());
  EXPECT_TRUE(res.error().transient());
  EXPECT_EQ(res.error().enhanced, "4.4.3");
}

TEST(AresMxResolverCreate, NeedsServers) {
  SeededRandom random(1);
  auto r = AresMxResolver::create(AresMxResolverOptions{{}, 1000ms, 1}, random);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("no servers"), std::string::npos);
  auto bad = AresMxResolver::create(AresMxResolverOptions{{"not an address"}, 1000ms, 1}, random);
  EXPECT_FALSE(bad.ok());
}

}  // namespace
}  // namespace bh::routing
