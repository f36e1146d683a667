#include "smtp/relay_client.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "tests/routing/routing_test_util.h"

namespace bh::smtp {
namespace {

namespace fs = std::filesystem;
using routing::testing::mx_connector;
using routing::testing::smarthost_connector;

routing::Connector two_hosts() {
  auto c = smarthost_connector("out", "192.0.2.1", {{"*", 1}});
  c.smart_hosts.push_back(*routing::parse_smart_host("[2001:db8::1]:2525"));
  c.settings.port = 587;
  return c;
}

TEST(RelayProperties, TheNextNodeHearsTheHopsSoFarThisNodeAndEachRecipient) {
  queue::RemoteJob job;
  job.recipients.push_back({0, "carol@example.test", 0, "", "node3", true});
  job.recipients.push_back({2, "bob@example.test", 0, "", "node2", false});
  // Straight from a client: this node is the first hop; its categorizer made carol.
  Xexch50Props p = next_hop_properties(job, "node1", "org");
  EXPECT_EQ(p.organization, "org");
  EXPECT_EQ(p.hops, (std::vector<std::string>{"node1"}));
  EXPECT_TRUE(p.categorized);
  ASSERT_EQ(p.recipients.size(), 2u);
  EXPECT_EQ(p.recipients[0].home_server, "node3");
  EXPECT_TRUE(p.recipients[0].expanded);
  EXPECT_FALSE(p.recipients[1].expanded);
  // Arrived from node1 with its properties: node2 adds itself, and the flag stays.
  job.xexch50 = encode_xexch50_props(p);
  job.recipients[0].expanded = false;
  Xexch50Props q = next_hop_properties(job, "node2", "org");
  EXPECT_EQ(q.hops, (std::vector<std::string>{"node1", "node2"}));
  EXPECT_TRUE(q.categorized);
  // Only recipients this node's categorizer made: a new leg starts here.
  queue::RemoteJob members = job;
  members.recipients = {{0, "frank@example.test", 0, "", "node6", true}};
  Xexch50Props m = next_hop_properties(members, "node5", "org");
  EXPECT_EQ(m.hops, (std::vector<std::string>{"node5"}));
  EXPECT_TRUE(m.categorized);
  // Properties that do not decode are not passed on (only this node is named).
  job.xexch50 = "garbage";
  EXPECT_EQ(next_hop_properties(job, "node2", "org").hops, (std::vector<std::string>{"node2"}));
}

TEST(RelayTargets, SmartHostsInOrderWithTheConnectorPortAsDefault) {
  auto t = smart_host_targets(two_hosts());
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0].ip, "192.0.2.1");
  EXPECT_EQ((*t)[0].port, 587);
  EXPECT_TRUE((*t)[0].host_is_ip);
  EXPECT_EQ((*t)[1].ip, "2001:db8::1");
  EXPECT_EQ((*t)[1].port, 2525);
  EXPECT_EQ((*t)[1].str(), "2001:db8::1[2001:db8::1]:2525");
  EXPECT_EQ((*t)[0].remote_mta(), "192.0.2.1 [192.0.2.1]");
}

TEST(RelayTargets, SmartHostNameIsATransientConfigError) {
  auto c = smarthost_connector("out", "relay.example.net:25", {{"*", 1}});
  auto t = smart_host_targets(c);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(t.error().transient());
  EXPECT_EQ(t.error().enhanced, "4.3.5");
  EXPECT_NE(t.error().message.find("relay.example.net"), std::string::npos);
  EXPECT_FALSE(check_connector(c).ok());
  EXPECT_TRUE(check_connector(two_hosts()).ok());
  EXPECT_TRUE(check_connector(mx_connector("mx", {{"*", 1}})).ok());
}

TEST(RelayTargets, MxHostsInResolverOrderEachAddressInOrder) {
  std::vector<routing::MxHost> hosts = {
      {"mx1.example.net", 10, false, {"192.0.2.10", "2001:db8::10"}},
      {"mx2.example.net", 20, false, {"192.0.2.20"}},
      {"mx3.example.net", 30, false, {}},
  };
  auto t = mx_targets(hosts, 25);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].str(), "mx1.example.net[192.0.2.10]:25");
  EXPECT_EQ(t[1].str(), "mx1.example.net[2001:db8::10]:25");
  EXPECT_EQ(t[2].remote_mta(), "mx2.example.net [192.0.2.20]");
  EXPECT_FALSE(t[0].host_is_ip);
}

ClientResult hop(Error e, int code, bool mail_sent) {
  ClientResult r;
  r.hop_error = std::move(e);
  r.hop_code = code;
  r.mail_sent = mail_sent;
  return r;
}

TEST(RelayNextTarget, OnlyFailuresBeforeMailMoveOn) {
  EXPECT_FALSE(try_next_target(ClientResult{}));  // a finished transaction
  EXPECT_TRUE(try_next_target(hop(transient_error("4.4.2", "timeout"), 0, false)));
  EXPECT_TRUE(try_next_target(hop(transient_error("4.3.2", "greeting: busy"), 421, false)));
  EXPECT_TRUE(try_next_target(hop(transient_error("4.7.4", "TLS required"), 0, false)));
  EXPECT_TRUE(try_next_target(hop(permanent_error("5.0.0", "greeting: go away"), 554, false)));
  // Decided from the capabilities: a fact of the message, the same at every MX.
  EXPECT_FALSE(try_next_target(hop(permanent_error("5.3.4", "too big"), 0, false)));
  // MAIL went out: whatever happened next is final for this job.
  EXPECT_FALSE(try_next_target(hop(transient_error("4.4.2", "lost"), 0, true)));
  EXPECT_FALSE(try_next_target(hop(permanent_error("5.7.1", "MAIL: refused"), 550, true)));
}

AttemptOutcome reused(ClientResult r, std::vector<DeliveryStatus> each = {}) {
  AttemptOutcome o;
  o.connected = true;
  o.reused = true;
  o.result = std::move(r);
  for (auto st : each) {
    RecipientOutcome ro;
    ro.status = st;
    o.result.recipients.push_back(ro);
  }
  return o;
}

TEST(RelayReuse, OnlyConnectionFailuresOfAReusedSessionGoToANewConnection) {
  using S = DeliveryStatus;
  // Gone or refusing the RSET: nothing of the message was sent.
  EXPECT_TRUE(retry_on_new_connection(reused(hop(transient_error("4.4.2", "lost"), 0, false))));
  EXPECT_TRUE(retry_on_new_connection(
      reused(hop(transient_error("4.4.2", "reused connection: 421 bye"), 421, false))));
  // A 421 after MAIL, nobody delivered: the server took nothing (RFC 5321 §3.8).
  EXPECT_TRUE(retry_on_new_connection(
      reused(hop(transient_error("4.7.0", "MAIL: too many"), 421, true), {S::kTransient})));
  // ... but not once a recipient was delivered, nor for another failure after MAIL.
  EXPECT_FALSE(retry_on_new_connection(reused(hop(transient_error("4.4.2", "lost"), 421, true),
                                              {S::kDelivered, S::kTransient})));
  EXPECT_FALSE(retry_on_new_connection(
      reused(hop(transient_error("4.4.2", "lost during DATA"), 0, true), {S::kTransient})));
  // A permanent verdict is about the message; a new connection is no remedy.
  EXPECT_FALSE(retry_on_new_connection(reused(hop(permanent_error("5.3.4", "too big"), 0, false))));
  // A new connection's failures are the attempt's, as before.
  auto fresh = reused(hop(transient_error("4.4.2", "lost"), 0, false));
  fresh.reused = false;
  EXPECT_FALSE(retry_on_new_connection(fresh));
  EXPECT_FALSE(retry_on_new_connection(reused(ClientResult{})));  // a delivered message
}

// A HeldConnection that only says whether it is usable and closed, and records close().
struct FakeHeld final : HeldConnection {
  std::atomic<bool> ok{true}, gone{false};
  int closes = 0;
  bool usable() const override { return ok; }
  std::size_t sessions() const override { return 1; }
  void reuse(ClientStrand, AttemptSetup, ClientConfig, OutboundMessage, AttemptReport) override {}
  void close() override { ++closes; }
  bool closed() const override { return gone; }
};

TEST(RelayReuse, HeldConnectionsPerKeyAndInAllNewestFirstSkippingDeadOnes) {
  HeldConnections h(2, 3);
  auto a = std::make_shared<FakeHeld>(), b = std::make_shared<FakeHeld>(),
       c = std::make_shared<FakeHeld>(), d = std::make_shared<FakeHeld>();
  EXPECT_EQ(h.take("x"), nullptr);
  EXPECT_TRUE(h.put("x", a));
  EXPECT_TRUE(h.put("x", b));
  EXPECT_FALSE(h.put("x", c));  // two per key
  EXPECT_TRUE(h.put("y", c));
  EXPECT_FALSE(h.put("z", d));  // three in all
  EXPECT_EQ(h.usable(), 3u);
  // A dead one makes room (found when the cap is met), and is never handed out.
  b->ok = false;
  EXPECT_EQ(h.usable(), 2u);
  EXPECT_TRUE(h.put("z", d));
  EXPECT_EQ(h.take("x"), a);  // b (newer) is dead: skipped and dropped
  EXPECT_EQ(h.take("x"), nullptr);
  EXPECT_EQ(h.take("y"), c);
  EXPECT_EQ(h.take("z"), d);
  EXPECT_EQ(h.usable(), 0u);
  h.put("x", a);
  h.clear();
  EXPECT_EQ(h.take("x"), nullptr);
  EXPECT_EQ(a->closes, 0);  // the pool never closes: its caller does when put() refuses
}

TEST(RelayReuse, QuitAllClosesEveryHeldConnectionAndHoldsNoMore) {
  HeldConnections h(2, 8);
  auto a = std::make_shared<FakeHeld>(), b = std::make_shared<FakeHeld>(),
       c = std::make_shared<FakeHeld>(), late = std::make_shared<FakeHeld>();
  ASSERT_TRUE(h.put("x", a));
  ASSERT_TRUE(h.put("x", b));
  ASSERT_TRUE(h.put("y", c));
  c->ok = false;  // already going (its idle QUIT): asked again, it ignores it
  EXPECT_EQ(h.closing(), 0u);
  h.quit_all();
  EXPECT_EQ(a->closes, 1);
  EXPECT_EQ(b->closes, 1);
  EXPECT_EQ(c->closes, 1);
  EXPECT_EQ(h.usable(), 0u);
  EXPECT_EQ(h.take("x"), nullptr);
  // Counted until each socket is closed.
  EXPECT_EQ(h.closing(), 3u);
  a->gone = true;
  c->gone = true;
  EXPECT_EQ(h.closing(), 1u);
  b->gone = true;
  EXPECT_EQ(h.closing(), 0u);
  // A session that ends afterwards is not held: put() refuses, so its caller QUITs it.
  EXPECT_FALSE(h.put("x", late));
  EXPECT_EQ(h.usable(), 0u);
}

std::vector<queue::RemoteJob::Rcpt> rcpts() {
  std::vector<queue::RemoteJob::Rcpt> v(3);
  v[0].index = 4;
  v[0].address = "a@example.net";
  v[1].index = 7;
  v[1].address = "b@example.net";
  v[2].index = 9;
  v[2].address = "c@example.net";
  return v;
}

TEST(RelayOutcome, PerRecipientStatusCodesAndReplyText) {
  ClientResult c;
  c.dsn_passed = true;
  c.mail_sent = true;
  c.recipients = {
      {"a@example.net", DeliveryStatus::kDelivered, 250, "2.0.0", "Ok: queued as X"},
      {"b@example.net", DeliveryStatus::kPermanent, 550, "5.1.1", "<b@example.net>: unknown"},
      {"c@example.net", DeliveryStatus::kTransient, 450, "4.2.0", "greylisted"},
  };
  auto r = to_remote_result(c, rcpts(), "mx.example.net [192.0.2.1]");
  EXPECT_EQ(r.remote_mta, "mx.example.net [192.0.2.1]");
  EXPECT_TRUE(r.dsn_passed);
  EXPECT_FALSE(r.hop_error);
  ASSERT_EQ(r.recipients.size(), 3u);
  EXPECT_EQ(r.recipients[0].index, 4u);
  EXPECT_EQ(r.recipients[0].status, queue::RemoteStatus::kDelivered);
  EXPECT_EQ(r.recipients[0].reply, "250 2.0.0 Ok: queued as X");
  EXPECT_EQ(r.recipients[1].index, 7u);
  EXPECT_EQ(r.recipients[1].status, queue::RemoteStatus::kPermanent);
  EXPECT_EQ(r.recipients[1].enhanced, "5.1.1");
  EXPECT_EQ(r.recipients[1].reply, "550 5.1.1 <b@example.net>: unknown");
  EXPECT_EQ(r.recipients[2].status, queue::RemoteStatus::kTransient);
  EXPECT_EQ(r.recipients[2].index, 9u);
}

TEST(RelayOutcome, OurOwnDiagnosticHasNoReplyCode) {
  ClientResult c = hop(transient_error("4.4.2", "timeout waiting for the greeting"), 0, false);
  c.recipients = {
      {"a@example.net", DeliveryStatus::kTransient, 0, "4.4.2", "timeout waiting for the greeting"},
      {"b@example.net", DeliveryStatus::kTransient, 0, "4.4.2", "timeout waiting for the greeting"},
      {"c@example.net", DeliveryStatus::kTransient, 0, "4.4.2",
       "timeout waiting for the greeting"}};
  auto r = to_remote_result(c, rcpts(), "h [192.0.2.1]");
  ASSERT_TRUE(r.hop_error);
  EXPECT_EQ(r.hop_error->enhanced, "4.4.2");
  EXPECT_EQ(r.recipients[1].reply, "4.4.2 timeout waiting for the greeting");
}

TEST(RelayOutcome, HopFailureGivesEveryRecipientTheError) {
  auto r = hop_failure(rcpts(), permanent_error("5.1.2", "no such domain"), "");
  ASSERT_TRUE(r.hop_error);
  ASSERT_EQ(r.recipients.size(), 3u);
  for (const auto& x : r.recipients) {
    EXPECT_EQ(x.status, queue::RemoteStatus::kPermanent);
    EXPECT_EQ(x.enhanced, "5.1.2");
    EXPECT_EQ(x.reply, "5.1.2 no such domain");
  }
  EXPECT_EQ(r.recipients[2].index, 9u);
}

TEST(RelayOutcome, OutboundMessageFromJob) {
  queue::RemoteJob j;
  j.sender = "s@example.org";
  j.body = queue::BodyType::kUnspecified;
  j.ret = queue::DsnRet::kHeaders;
  j.envid = "E1";
  j.body_length = 1234;
  j.recipients = rcpts();
  j.recipients[0].notify = queue::kNotifyFailure;
  j.recipients[0].orcpt = "rfc822;x@example.net";
  auto m = outbound_message(j);
  EXPECT_EQ(m.sender, "s@example.org");
  EXPECT_EQ(m.body, queue::BodyType::k7Bit);
  EXPECT_EQ(m.ret, queue::DsnRet::kHeaders);
  EXPECT_EQ(m.envid, "E1");
  EXPECT_EQ(m.size, 1234u);
  ASSERT_EQ(m.recipients.size(), 3u);
  EXPECT_EQ(m.recipients[0].notify, queue::kNotifyFailure);
  EXPECT_EQ(m.recipients[0].orcpt, "rfc822;x@example.net");
}

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "bh-relay-XXXXXX").string();
    BH_CHECK(::mkdtemp(t.data()) != nullptr);
    path_ = t;
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path operator/(const std::string& s) const { return path_ / s; }

 private:
  fs::path path_;
};

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

TEST(RelayPassword, FirstLineWithoutNewline) {
  TempDir d;
  write_file(d / "pw", "s3cret\r\nsecond line\n");
  auto r = read_password_file((d / "pw").string());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "s3cret");
  write_file(d / "pw2", "only");
  EXPECT_EQ(*read_password_file((d / "pw2").string()), "only");
}

TEST(RelayPassword, MissingEmptyOrHugeIsTransient470) {
  TempDir d;
  auto missing = read_password_file((d / "nope").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.error().transient());
  EXPECT_EQ(missing.error().enhanced, "4.7.0");
  EXPECT_NE(missing.error().message.find("nope"), std::string::npos);
  write_file(d / "empty", "\n");
  EXPECT_EQ(read_password_file((d / "empty").string()).error().enhanced, "4.7.0");
  write_file(d / "huge", std::string(5000, 'x'));
  EXPECT_EQ(read_password_file((d / "huge").string()).error().enhanced, "4.7.0");
}

// ---- The adapter on loopback, without a peer process ----

// A port on 127.0.0.1 that nobody listens on (bound, then closed).
std::uint16_t dead_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

struct RelayFixture {
  TempDir dir;
  boost::asio::io_context io;
  std::shared_ptr<const routing::RouteTable> table;
  std::unique_ptr<SmtpRelay> relay;
  std::vector<RelayAttempt> attempts;

  explicit RelayFixture(std::vector<routing::Connector> connectors, std::size_t max_jobs = 100,
                        routing::MxResolver* resolver = nullptr, std::size_t max_attempts = 10) {
    auto t = routing::RouteTable::build(std::move(connectors));
    BH_CHECK(t.ok());
    table = *t;
    RelayOptions o;
    o.helo_name = "relay.test";
    o.connect_timeout = std::chrono::seconds(5);
    o.max_concurrent_jobs = max_jobs;
    o.max_attempts = max_attempts;
    o.on_attempt = [this](const RelayAttempt& a) { attempts.push_back(a); };
    auto r = SmtpRelay::create(
        io, [this] { return table; }, resolver, o);
    BH_CHECK(r.ok());
    relay = std::move(r.value());
    write_file(dir / "q", "HEADERSHello\r\n");
  }

  queue::RemoteJob job(std::string connector, std::string domain = "") {
    queue::RemoteJob j;
    j.queue_id = "Q1";
    j.connector = std::move(connector);
    j.domain = std::move(domain);
    j.sender = "s@example.org";
    j.recipients = rcpts();
    j.path = (dir / "q").string();
    j.body_offset = 7;
    j.body_length = 7;
    return j;
  }
};

TEST(SmtpRelay, ConnectRefusedEverywhereIsTransient441AfterTryingEachHost) {
  std::uint16_t p1 = dead_port(), p2 = dead_port();
  auto c = smarthost_connector("out", "127.0.0.1:" + std::to_string(p1), {{"*", 1}});
  c.smart_hosts.push_back(*routing::parse_smart_host("127.0.0.1:" + std::to_string(p2)));
  RelayFixture f({c});
  int calls = 0;
  queue::RemoteResult got;
  f.relay->deliver(f.job("out"), [&](queue::RemoteResult r) {
    ++calls;
    got = std::move(r);
  });
  EXPECT_EQ(calls, 0);  // never inline
  f.io.run();
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(got.hop_error);
  EXPECT_TRUE(got.hop_error->transient());
  EXPECT_EQ(got.hop_error->enhanced, "4.4.1");
  EXPECT_EQ(got.remote_mta, "127.0.0.1 [127.0.0.1]");
  ASSERT_EQ(got.recipients.size(), 3u);
  EXPECT_EQ(got.recipients[0].status, queue::RemoteStatus::kTransient);
  EXPECT_EQ(got.recipients[2].index, 9u);
  ASSERT_EQ(f.attempts.size(), 2u);
  EXPECT_NE(f.attempts[1].target.find(std::to_string(p2)), std::string::npos);
  EXPECT_EQ(f.relay->counters().connect_failures.load(), 2u);
}

TEST(SmtpRelay, UnknownConnectorMissingPasswordAndNoResolverFailTheHop) {
  auto sh = smarthost_connector("out", "127.0.0.1:25", {{"*.a", 1}});
  sh.settings.auth_username = "u";
  sh.settings.auth_password_file = "/nonexistent/pw";
  auto mx = mx_connector("mx", {{"*", 1}});
  RelayFixture f({sh, mx});
  std::vector<queue::RemoteResult> got;
  for (const char* name : {"gone", "out", "mx"}) {
    f.relay->deliver(f.job(name, "example.net"),
                     [&](queue::RemoteResult r) { got.push_back(std::move(r)); });
  }
  f.io.run();
  ASSERT_EQ(got.size(), 3u);
  std::multiset<std::string> codes;
  for (const auto& r : got) {
    ASSERT_TRUE(r.hop_error);
    EXPECT_TRUE(r.hop_error->transient());
    codes.insert(r.hop_error->enhanced);
  }
  EXPECT_EQ(codes, (std::multiset<std::string>{"4.4.0", "4.7.0", "4.3.5"}));
  EXPECT_TRUE(f.attempts.empty());  // nothing was sent anywhere
}

TEST(SmtpRelay, JobsBeyondTheCapWaitAndAllFinish) {
  auto c = smarthost_connector("out", "127.0.0.1:" + std::to_string(dead_port()), {{"*", 1}});
  RelayFixture f({c}, /*max_jobs=*/2);
  int done = 0;
  for (int i = 0; i < 7; ++i) {
    f.relay->deliver(f.job("out"), [&](queue::RemoteResult) { ++done; });
  }
  f.io.run();
  EXPECT_EQ(done, 7);
  EXPECT_EQ(f.relay->counters().jobs.load(), 7u);
  EXPECT_EQ(f.relay->counters().waiting.load(), 0u);
}

// Answers from its own thread, as AresMxResolver does.
class ThreadResolver final : public routing::MxResolver {
 public:
  explicit ThreadResolver(Result<std::vector<routing::MxHost>> answer)
      : answer_(std::move(answer)) {}
  ~ThreadResolver() override {
    for (auto& t : threads_) {
      t.join();
    }
  }
  void resolve(std::string_view domain, routing::MxCallback done) override {
    asked.emplace_back(domain);
    threads_.emplace_back([this, done = std::move(done)] { done(answer_); });
  }
  std::vector<std::string> asked;

 private:
  Result<std::vector<routing::MxHost>> answer_;
  std::vector<std::thread> threads_;
};

TEST(SmtpRelay, MxHostsAreTriedInOrderOnTheConnectorPort) {
  auto mx = mx_connector("mx", {{"*", 1}});
  mx.settings.port = dead_port();
  ThreadResolver resolver(std::vector<routing::MxHost>{
      {"mx1.example.net", 10, false, {"127.0.0.1", "127.0.0.2"}},
      {"mx2.example.net", 20, false, {"127.0.0.3"}},
  });
  RelayFixture f({mx}, 100, &resolver);
  queue::RemoteResult got;
  f.relay->deliver(f.job("mx", "example.net"), [&](queue::RemoteResult r) { got = std::move(r); });
  f.io.run();
  EXPECT_EQ(resolver.asked, std::vector<std::string>{"example.net"});
  ASSERT_EQ(f.attempts.size(), 3u);
  std::string port = std::to_string(mx.settings.port);
  EXPECT_EQ(f.attempts[0].target, "mx1.example.net[127.0.0.1]:" + port);
  EXPECT_EQ(f.attempts[1].target, "mx1.example.net[127.0.0.2]:" + port);
  EXPECT_EQ(f.attempts[2].target, "mx2.example.net[127.0.0.3]:" + port);
  ASSERT_TRUE(got.hop_error);
  EXPECT_EQ(got.hop_error->enhanced, "4.4.1");
  EXPECT_EQ(got.remote_mta, "mx2.example.net [127.0.0.3]");
}

TEST(SmtpRelay, AttemptsPerJobAreCapped) {
  auto mx = mx_connector("mx", {{"*", 1}});
  mx.settings.port = dead_port();
  ThreadResolver resolver(std::vector<routing::MxHost>{
      {"mx1.example.net", 10, false, {"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}}});
  RelayFixture f({mx}, 100, &resolver, /*max_attempts=*/2);
  int calls = 0;
  f.relay->deliver(f.job("mx", "example.net"), [&](queue::RemoteResult) { ++calls; });
  f.io.run();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(f.attempts.size(), 2u);
}

TEST(SmtpRelay, ResolverErrorsKeepTheirClass) {
  auto mx = mx_connector("mx", {{"*", 1}});
  ThreadResolver nx(permanent_error("5.1.2", "example.invalid does not exist"));
  RelayFixture f({mx}, 100, &nx);
  queue::RemoteResult got;
  f.relay->deliver(f.job("mx", "example.invalid"),
                   [&](queue::RemoteResult r) { got = std::move(r); });
  f.io.run();
  ASSERT_TRUE(got.hop_error);
  EXPECT_FALSE(got.hop_error->transient());
  EXPECT_EQ(got.recipients[0].status, queue::RemoteStatus::kPermanent);
  EXPECT_EQ(got.recipients[0].enhanced, "5.1.2");
  EXPECT_TRUE(f.attempts.empty());

  ThreadResolver servfail(transient_error("4.4.3", "SERVFAIL"));
  RelayFixture g({mx}, 100, &servfail);
  g.relay->deliver(g.job("mx", "example.net"), [&](queue::RemoteResult r) { got = std::move(r); });
  g.io.run();
  EXPECT_EQ(got.recipients[0].status, queue::RemoteStatus::kTransient);
  EXPECT_EQ(got.recipients[0].enhanced, "4.4.3");
}

TEST(SmtpRelay, UnreadableQueueFileIsTransient430BeforeAnyConnection) {
  auto c = smarthost_connector("out", "127.0.0.1:25", {{"*", 1}});
  RelayFixture f({c});
  auto j = f.job("out");
  j.path = (f.dir / "missing").string();
  queue::RemoteResult got;
  f.relay->deliver(j, [&](queue::RemoteResult r) { got = std::move(r); });
  f.io.run();
  ASSERT_TRUE(got.hop_error);
  EXPECT_EQ(got.hop_error->enhanced, "4.3.0");
  EXPECT_TRUE(f.attempts.empty());
}

}  // namespace
}  // namespace bh::smtp
