#include "admin/admin_server.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

namespace bh::admin {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;
using tcp = asio::ip::tcp;

const std::string kToken = "0123456789abcdef0123456789abcdef";

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/bh-admin-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct Reply {
  int status = 0;
  std::string body;
  json j() const { return json::parse(body, nullptr, false); }
};

// A blocking HTTP/1.1 exchange; `auth` empty sends no Authorization header.
Reply request(std::uint16_t port, http::verb verb, const std::string& target, const std::string& auth,
              std::size_t extra_header_bytes = 0) {
  asio::io_context io;
  beast::tcp_stream s(io);
  s.expires_after(std::chrono::seconds(5));
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  http::request<http::empty_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!auth.empty()) {
    req.set(http::field::authorization, auth);
  }
  if (extra_header_bytes) {
    req.set("X-Padding", std::string(extra_header_bytes, 'x'));
  }
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  beast::error_code ec;
  http::read(s, buf, res, ec);
  if (ec) {
    return Reply{-1, ec.message()};
  }
  return Reply{static_cast<int>(res.result_int()), res.body()};
}

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AdminHandlers h;
    h.status = [this] {
      on_io_thread_ = std::this_thread::get_id() == io_thread_id_.load();
      return json{{"node", {{"name", "node1"}, {"uptime_s", 5}}},
                  {"queue", {{"in_queue", 1}}}};
    };
    h.queue_list = [this](const QueueFilter& f) {
      filters_.push_back(f);
      return json{{"messages",
                   json::array({{{"id", "ABC123"}, {"state", "queued"}, {"sender", "a@example.org"},
                                 {"recipients", 2}, {"size", 1234}, {"received", 1700000000},
                                 {"attempts", 0}, {"last_error", ""}}})}};
    };
    h.queue_show = [this](const std::string& id) -> std::optional<json> {
      shown_.push_back(id);
      if (id == "ABC123") {
        return json{{"id", "ABC123"}, {"state", "queued"}, {"sender", "a@example.org"},
                    {"size", 1234}, {"received", 1700000000}, {"client_helo", "client.example"},
                    {"client_address", "127.0.0.1"}, {"body", "8BITMIME"}, {"ret", "unspecified"},
                    {"envid", ""}, {"attempts", 0}, {"last_error", ""},
                    {"recipients", json::array({{{"address", "bob@example.org"}, {"mailbox", "bob"},
                                                 {"state", "pending"}, {"notify", ""},
                                                 {"orcpt", ""}, {"last_result", ""}}})}};
      }
      if (id == "THROWS") {
        throw std::runtime_error("boom");
      }
      return std::nullopt;
    };
    h.queues = [] {
      return json{{"queues", json::array({{{"next_hop", "smarthost:out"}, {"state", "retry"},
                                           {"messages", 3}, {"in_flight", 0}, {"oldest", 1700000000},
                                           {"last_error", "4.4.1 connection refused"},
                                           {"next_retry", 1700000060}, {"failures", 2}}})}};
    };
    h.queue_action = [this](const std::string& id, const std::string& verb) -> Result<json> {
      actions_.push_back(id + " " + verb);
      if (id == "BUSY") {
        return transient_error("4.0.0", "BUSY is being delivered right now; try again");
      }
      if (id != "ABC123") {
        return permanent_error("5.1.0", "no message " + id);
      }
      return json{{"id", id}, {"done", verb}};
    };
    h.hop_retry = [this](const std::string& hop) {
      actions_.push_back("hop " + hop);
      return json{{"next_hop", hop}, {"retried", 3}};
    };
    h.hop_freeze = [this](const std::string& hop, bool frozen) -> Result<json> {
      actions_.push_back(std::string(frozen ? "freeze-hop " : "thaw-hop ") + hop);
      if (!frozen && hop == "never") {
        return transient_error("4.0.0", "never is not frozen");
      }
      return json{{"next_hop", hop}, {"done", frozen ? "freeze" : "thaw"}};
    };
    h.track = [this](const TrackParams& p) {
      tracked_.push_back(p);
      return json{{"events", json::array({{{"time", "2023-11-14T22:13:20.123Z"}, {"node", "node1"},
                                            {"event", "delivered"}, {"queue_id", "ABC123"},
                                            {"message_id", "<m@x>"}, {"sender", ""},
                                            {"recipient", "bob@example.org"}, {"next_hop", "maildir:bob"},
                                            {"reply", "2.0.0 ok\x01"}, {"size", 12}, {"client_address", ""}}})},
                  {"truncated", true}, {"skipped_lines", 0}};
    };
    h.resolve = [this](const std::string& address) -> Result<json> {
      resolved_.push_back(address);
      if (address == "down@example.org") {
        return transient_error("4.4.3", "directory unavailable");
      }
      return json{{"address", address}, {"trace", json::array({address, "  group cn=x"})},
                  {"recipients", json::array({{{"address", "bob@example.org"}, {"mailbox", "bob"}}})}};
    };
    server_ = std::make_unique<AdminServer>(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0),
                                            kToken, std::move(h));
    ASSERT_FALSE(server_->start());
    port_ = server_->port();
    ASSERT_NE(port_, 0);
    thread_ = std::thread([this] {
      io_thread_id_ = std::this_thread::get_id();
      auto guard = asio::make_work_guard(io_);
      io_.run();
    });
    while (io_thread_id_.load() == std::thread::id()) {
      std::this_thread::yield();
    }
  }

  void TearDown() override {
    asio::post(io_, [this] { server_->stop(); });
    io_.stop();
    thread_.join();
    server_.reset();
  }

  Reply get(const std::string& target, const std::string& auth = "Bearer " + kToken) {
    return request(port_, http::verb::get, target, auth);
  }

  // Runs bhctl with `args`; returns exit code and stdout+stderr.
  std::pair<int, std::string> bhctl(const std::string& args) {
    std::string cmd = std::string(BHCTL_PATH) + " " + args + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
      out.append(buf, n);
    }
    int st = ::pclose(p);
    return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
  }

  std::string token_file() {
    std::string f = dir_.path() + "/admin.token";
    if (!std::filesystem::exists(f)) {
      std::ofstream(f) << kToken << "\n";
      ::chmod(f.c_str(), 0600);
    }
    return f;
  }
  std::string admin_args() {
    return "--admin 127.0.0.1:" + std::to_string(port_) + " --token-file " + token_file();
  }

  TempDir dir_;
  asio::io_context io_;
  std::unique_ptr<AdminServer> server_;
  std::thread thread_;
  std::atomic<std::thread::id> io_thread_id_{};
  std::uint16_t port_ = 0;
  std::atomic<bool> on_io_thread_{false};
  std::vector<std::string> shown_;  // written on the io thread, read after a reply
  std::vector<TrackParams> tracked_;  // likewise
  std::vector<std::string> resolved_;  // likewise
  std::vector<QueueFilter> filters_;  // likewise
  std::vector<std::string> actions_;  // likewise
};

TEST_F(AdminServerTest, NoTokenIs401) {
  auto r = get("/v1/status", "");
  EXPECT_EQ(r.status, 401);
  EXPECT_TRUE(r.j().contains("error"));
}

TEST_F(AdminServerTest, WrongTokenIs401) {
  EXPECT_EQ(get("/v1/status", "Bearer " + std::string(32, '0')).status, 401);
  EXPECT_EQ(get("/v1/status", "Bearer " + kToken.substr(1)).status, 401);
  EXPECT_EQ(get("/v1/status", "Bearer " + kToken + "0").status, 401);
  EXPECT_EQ(get("/v1/status", "Basic " + kToken).status, 401);
  EXPECT_EQ(get("/v1/status", kToken).status, 401);
  // Unauthenticated requests learn nothing about the routes either.
  EXPECT_EQ(get("/v1/queue/ABC123", "").status, 401);
  EXPECT_EQ(get("/nowhere", "").status, 401);
  EXPECT_TRUE(shown_.empty());
}

TEST_F(AdminServerTest, StatusIsJsonFromTheHandlerOnTheIoThread) {
  auto r = get("/v1/status");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["node"]["name"], "node1");
  EXPECT_TRUE(on_io_thread_.load());
}

TEST_F(AdminServerTest, QueueListAndShow) {
  auto l = get("/v1/queue");
  ASSERT_EQ(l.status, 200);
  EXPECT_EQ(l.j()["messages"][0]["id"], "ABC123");
  auto s = get("/v1/queue/ABC123");
  ASSERT_EQ(s.status, 200);
  EXPECT_EQ(s.j()["recipients"][0]["mailbox"], "bob");
  auto missing = get("/v1/queue/NOPE");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.j()["error"], "no message NOPE");
}

TEST_F(AdminServerTest, MalformedIdsNeverReachTheHandler) {
  const std::vector<std::string> ids = {"..", "a.b", "a%2Fb", "A-B", std::string(65, 'A')};
  for (const auto& id : ids) {
    EXPECT_EQ(get("/v1/queue/" + id).status, 400) << id;
  }
  EXPECT_EQ(get("/v1/queue/").status, 400);
  EXPECT_EQ(get("/v1/queue/a/b").status, 400);
  EXPECT_TRUE(shown_.empty());
}

TEST_F(AdminServerTest, OtherMethodsAndPaths) {
  EXPECT_EQ(request(port_, http::verb::post, "/v1/status", "Bearer " + kToken).status, 405);
  EXPECT_EQ(request(port_, http::verb::put, "/v1/queue/ABC123", "Bearer " + kToken).status, 405);
  EXPECT_EQ(request(port_, http::verb::post, "/v1/queue/ABC123/explode", "Bearer " + kToken).status, 404);
  EXPECT_EQ(get("/v1/nothing").status, 404);
  EXPECT_EQ(get("/v1/status/").status, 404);
  EXPECT_EQ(get("/").status, 404);
}

TEST_F(AdminServerTest, QueueActionsReachTheHandlerWithTheirVerb) {
  auto post = [&](const std::string& t) { return request(port_, http::verb::post, t, "Bearer " + kToken); };
  auto del = [&](const std::string& t) { return request(port_, http::verb::delete_, t, "Bearer " + kToken); };
  EXPECT_EQ(post("/v1/queue/ABC123/retry").status, 200);
  EXPECT_EQ(post("/v1/queue/ABC123/freeze").status, 200);
  EXPECT_EQ(post("/v1/queue/ABC123/thaw").status, 200);
  EXPECT_EQ(del("/v1/queue/ABC123").status, 200);
  EXPECT_EQ(del("/v1/queue/ABC123?ndr=1").status, 200);
  EXPECT_EQ(del("/v1/queue/ABC123?ndr=2").status, 400);
  EXPECT_EQ(del("/v1/queue/ABC123?other=1").status, 400);
  EXPECT_EQ(post("/v1/queue/NOPE/retry").status, 404);
  EXPECT_EQ(post("/v1/queue/BUSY/freeze").status, 409);
  EXPECT_EQ(post("/v1/queue/../retry").status, 400);
  EXPECT_EQ(post("/v1/queues/retry?hop=smarthost%3Aout").status, 200);
  EXPECT_EQ(post("/v1/queues/retry").status, 400);
  EXPECT_EQ(request(port_, http::verb::post, "/v1/queue/ABC123/retry", "Bearer nope").status, 401);
  EXPECT_EQ(actions_, (std::vector<std::string>{"ABC123 retry", "ABC123 freeze", "ABC123 thaw",
                                                "ABC123 delete", "ABC123 delete-ndr", "NOPE retry",
                                                "BUSY freeze", "hop smarthost:out"}));
}

TEST_F(AdminServerTest, QueueFiltersAreDecodedAndChecked) {
  EXPECT_EQ(get("/v1/queue?sender=a%2Bb%40example.org&recipient=x%40y&hop=mx%3Aint%3Ay&older_than=60").status, 200);
  ASSERT_EQ(filters_.size(), 1u);
  EXPECT_EQ(filters_[0].sender, "a+b@example.org");
  EXPECT_EQ(filters_[0].recipient, "x@y");
  EXPECT_EQ(filters_[0].hop, "mx:int:y");
  EXPECT_EQ(filters_[0].older_than_s, 60);
  EXPECT_EQ(get("/v1/queue?older_than=-1").status, 400);
  EXPECT_EQ(get("/v1/queue?older_than=1x").status, 400);
  EXPECT_EQ(get("/v1/queue?colour=red").status, 400);
  EXPECT_EQ(get("/v1/queue?sender=a&sender=b").status, 400);
  EXPECT_EQ(get("/v1/queues").status, 200);
}

TEST_F(AdminServerTest, BhctlQueueManagement) {
  auto [rc, out] = bhctl(admin_args() + " queue hops");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("smarthost:out"), std::string::npos) << out;
  EXPECT_NE(out.find("retry"), std::string::npos) << out;
  EXPECT_NE(out.find("connection refused"), std::string::npos) << out;
  EXPECT_EQ(bhctl(admin_args() + " queue freeze ABC123").first, 0);
  EXPECT_EQ(bhctl(admin_args() + " queue thaw ABC123").first, 0);
  EXPECT_EQ(bhctl(admin_args() + " queue retry ABC123").first, 0);
  EXPECT_EQ(bhctl(admin_args() + " queue retry --hop smarthost:out").first, 0);
  EXPECT_EQ(bhctl(admin_args() + " queue delete ABC123 --ndr").first, 0);
  EXPECT_EQ(bhctl(admin_args() + " queue delete ABC123").first, 0);
  auto [rc2, out2] = bhctl(admin_args() + " queue freeze BUSY");
  EXPECT_EQ(rc2, 1);
  EXPECT_NE(out2.find("being delivered"), std::string::npos) << out2;
  EXPECT_EQ(bhctl(admin_args() + " queue list --sender a+b@example.org --hop smarthost:out --older-than 5").first, 0);
  EXPECT_EQ(filters_.back().sender, "a+b@example.org");
  EXPECT_EQ(filters_.back().hop, "smarthost:out");
  EXPECT_EQ(filters_.back().older_than_s, 5);
  EXPECT_EQ(actions_, (std::vector<std::string>{"ABC123 freeze", "ABC123 thaw", "ABC123 retry",
                                                "hop smarthost:out", "ABC123 delete-ndr",
                                                "ABC123 delete", "BUSY freeze"}));
  EXPECT_EQ(bhctl(admin_args() + " queue freeze --hop smarthost:out").first, 0);
  EXPECT_EQ(bhctl(admin_args() + " queue thaw --hop smarthost:out").first, 0);
  EXPECT_EQ(bhctl(admin_args() + " queue thaw --hop never").first, 1);
  EXPECT_EQ(actions_.back(), "thaw-hop never");
  EXPECT_EQ(bhctl(admin_args() + " queue frobnicate ABC123").first, 2);
}

TEST_F(AdminServerTest, OversizedHeaderIsRefused) {
  auto r = request(port_, http::verb::get, "/v1/status", "Bearer " + kToken, 16 * 1024);
  EXPECT_TRUE(r.status == 431 || r.status == -1) << r.status;
  EXPECT_EQ(get("/v1/status").status, 200);  // and the server is still there
}

TEST_F(AdminServerTest, AThrowingHandlerIs500NotACrash) {
  EXPECT_EQ(get("/v1/queue/THROWS").status, 500);
  EXPECT_EQ(get("/v1/status").status, 200);
}

TEST_F(AdminServerTest, ManySequentialRequests) {
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(get("/v1/queue").status, 200);
  }
}

TEST(TrackQuery, DecodesAndChecksParameters) {
  auto p = parse_track_query("recipient=a%2Bb%40example.org&sender=x+y%20z&message_id=%3Cm%40x%3E&limit=7");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->recipient, "a+b@example.org");
  EXPECT_EQ(p->sender, "x+y z");  // '+' is a plus, not a space
  EXPECT_EQ(p->message_id, "<m@x>");
  EXPECT_EQ(p->limit, 7u);
  auto d = parse_track_query("");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->limit, 100u);
  EXPECT_FALSE(d->since_unix);
  auto t = parse_track_query("since=1700000000&until=1700000100&queue_id=Q1&&");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t->since_unix, 1700000000);
  EXPECT_EQ(*t->until_unix, 1700000100);
  EXPECT_EQ(t->queue_id, "Q1");
  EXPECT_TRUE(parse_track_query("limit=10000").ok());
  for (const char* bad : {"limit=0", "limit=10001", "limit=-1", "limit=1x", "limit=", "since=yesterday",
                          "colour=red", "sender=%4", "sender=%zz", "sender=a&sender=b"}) {
    EXPECT_FALSE(parse_track_query(bad).ok()) << bad;
  }
  EXPECT_FALSE(parse_track_query("sender=" + std::string(1025, 'a')).ok());
}

TEST_F(AdminServerTest, TrackPassesDecodedParametersToTheHandler) {
  auto r = get("/v1/track?recipient=bob%40example.org&limit=5");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["events"][0]["queue_id"], "ABC123");
  ASSERT_EQ(tracked_.size(), 1u);
  EXPECT_EQ(tracked_[0].recipient, "bob@example.org");
  EXPECT_EQ(tracked_[0].limit, 5u);
  EXPECT_EQ(get("/v1/track").status, 200);
  EXPECT_EQ(tracked_.back().limit, 100u);
  auto bad = get("/v1/track?limit=20000");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.j()["error"].get<std::string>().find("limit"), std::string::npos);
  EXPECT_EQ(get("/v1/track?sender=%ff%fe&colour=1").status, 400);  // non-UTF-8 echoed safely
  EXPECT_EQ(get("/v1/trackx").status, 404);
  EXPECT_EQ(get("/v1/track?recipient=x", "").status, 401);
  EXPECT_EQ(tracked_.size(), 2u);
}

TEST_F(AdminServerTest, ResolvePassesTheDecodedAddressAndMapsErrors) {
  auto r = get("/v1/resolve?address=staff%2Bx%40example.org");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["recipients"][0]["mailbox"], "bob");
  ASSERT_EQ(resolved_.size(), 1u);
  EXPECT_EQ(resolved_[0], "staff+x@example.org");
  EXPECT_EQ(get("/v1/resolve?address=down%40example.org").status, 503);
  EXPECT_EQ(get("/v1/resolve").status, 400);
  EXPECT_EQ(get("/v1/resolve?address=").status, 400);
  EXPECT_EQ(get("/v1/resolve?address=a%40b&colour=1").status, 400);
  EXPECT_EQ(get("/v1/resolve?address=" + std::string(1100, 'a')).status, 400);
  EXPECT_EQ(resolved_.size(), 2u);  // the malformed ones never reached the handler
}

// ---- bhctl, the real binary ----

TEST_F(AdminServerTest, BhctlStatusTable) {
  auto [rc, out] = bhctl(admin_args() + " status");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("SECTION"), std::string::npos) << out;
  EXPECT_NE(out.find("node1"), std::string::npos) << out;
  EXPECT_NE(out.find("in_queue"), std::string::npos) << out;
}

TEST_F(AdminServerTest, BhctlQueueListTable) {
  auto [rc, out] = bhctl(admin_args() + " queue list");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("ID      STATE"), std::string::npos) << out;  // aligned columns
  EXPECT_NE(out.find("ABC123  queued"), std::string::npos) << out;
  EXPECT_NE(out.find("2023-11-14 22:13:20Z"), std::string::npos) << out;
  EXPECT_NE(out.find("1 message(s)"), std::string::npos) << out;
}

TEST_F(AdminServerTest, BhctlQueueShow) {
  auto [rc, out] = bhctl(admin_args() + " queue show ABC123");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("<a@example.org>"), std::string::npos) << out;
  EXPECT_NE(out.find("bob@example.org"), std::string::npos) << out;
}

TEST_F(AdminServerTest, BhctlJson) {
  auto [rc, out] = bhctl("--json " + admin_args() + " status");
  EXPECT_EQ(rc, 0) << out;
  auto j = json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["node"]["name"], "node1");
  auto [rc2, out2] = bhctl(admin_args() + " --json queue list");
  EXPECT_EQ(rc2, 0);
  EXPECT_EQ(json::parse(out2, nullptr, false)["messages"][0]["id"], "ABC123");
}

TEST_F(AdminServerTest, BhctlUnknownMessageIsExit1) {
  auto [rc, out] = bhctl(admin_args() + " queue show NOPE");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("no message NOPE"), std::string::npos) << out;
}

TEST_F(AdminServerTest, BhctlWrongTokenIsExit1) {
  std::string bad = dir_.path() + "/bad.token";
  std::ofstream(bad) << std::string(32, 'f') << "\n";
  auto [rc, out] = bhctl("--admin 127.0.0.1:" + std::to_string(port_) + " --token-file " + bad + " status");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("401"), std::string::npos) << out;
}

TEST_F(AdminServerTest, BhctlReadsAddressAndTokenFromTheConfig) {
  std::string cfg = dir_.path() + "/node1.yaml";
  std::ofstream(cfg) << "node:\n  name: node1\n  data_dir: " << dir_.path() << "/data\n"
                     << "listen:\n  smtp: [\"127.0.0.1:2525\"]\n  admin: \"127.0.0.1:" << port_ << "\"\n"
                     << "admin:\n  token_file: " << token_file() << "\n"
                     << "local_domains: [example.org]\n";
  auto [rc, out] = bhctl("--config " + cfg + " queue list");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("ABC123"), std::string::npos) << out;
}

TEST_F(AdminServerTest, BhctlDefaultTokenPathIsInDataDir) {
  std::string data = dir_.path() + "/data";
  std::filesystem::create_directory(data);
  std::filesystem::copy_file(token_file(), data + "/admin.token");
  std::string cfg = dir_.path() + "/node1.yaml";
  std::ofstream(cfg) << "node:\n  name: node1\n  data_dir: " << data << "\n"
                     << "listen:\n  smtp: [\"127.0.0.1:2525\"]\n  admin: \"127.0.0.1:" << port_ << "\"\n"
                     << "local_domains: [example.org]\n";
  auto [rc, out] = bhctl("--config " + cfg + " status");
  EXPECT_EQ(rc, 0) << out;
}

TEST_F(AdminServerTest, BhctlTrackTableAndJson) {
  auto [rc, out] = bhctl(admin_args() + " track --recipient 'b+o b@example.org' --message-id '<m@x>' --limit 3");
  EXPECT_EQ(rc, 0) << out;
  ASSERT_EQ(tracked_.size(), 1u);
  EXPECT_EQ(tracked_[0].recipient, "b+o b@example.org");
  EXPECT_EQ(tracked_[0].message_id, "<m@x>");
  EXPECT_EQ(tracked_[0].limit, 3u);
  EXPECT_NE(out.find("TIME"), std::string::npos) << out;
  EXPECT_NE(out.find("NEXT HOP"), std::string::npos) << out;
  EXPECT_NE(out.find("delivered  ABC123"), std::string::npos) << out;
  EXPECT_NE(out.find("maildir:bob"), std::string::npos) << out;
  EXPECT_NE(out.find("2.0.0 ok?"), std::string::npos) << out;  // control characters masked
  EXPECT_NE(out.find("1 event(s) (the newest"), std::string::npos) << out;
  auto [rc2, out2] = bhctl(admin_args() + " --json track --queue-id ABC123");
  EXPECT_EQ(rc2, 0);
  EXPECT_EQ(json::parse(out2, nullptr, false)["events"][0]["event"], "delivered");
  EXPECT_EQ(tracked_.back().queue_id, "ABC123");
  EXPECT_EQ(bhctl(admin_args() + " track --limit 0").first, 1);
  EXPECT_EQ(bhctl(admin_args() + " status --sender x").first, 2);
}

TEST(Bhctl, CannotConnectIsExit1) {
  // A port nobody listens on: bind one, note it, close it.
  std::uint16_t port;
  {
    asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }
  std::string cmd = std::string(BHCTL_PATH) + " --admin 127.0.0.1:" + std::to_string(port) + " status 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[1024] = {};
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, p);
  int st = ::pclose(p);
  EXPECT_EQ(WEXITSTATUS(st), 1);
  EXPECT_NE(std::string(buf, n).find("cannot reach the admin endpoint"), std::string::npos) << buf;
}

TEST(Bhctl, HostNamesAreRefused) {
  std::string cmd = std::string(BHCTL_PATH) + " --admin localhost:8691 status 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[1024] = {};
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, p);
  int st = ::pclose(p);
  EXPECT_NE(WEXITSTATUS(st), 0);
  EXPECT_NE(std::string(buf, n).find("IP literal"), std::string::npos) << buf;
}

// ---- the token file ----

TEST(AdminToken, CreatedPrivateAndReused) {
  TempDir dir;
  std::string path = dir.path() + "/admin.token";
  auto t = load_or_create_token(path);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->size(), 32u);
  EXPECT_EQ(t->find_first_not_of("0123456789abcdef"), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = load_or_create_token(path);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *t);
  TempDir other;
  auto fresh = load_or_create_token(other.path() + "/admin.token");
  ASSERT_TRUE(fresh.ok());
  EXPECT_NE(*fresh, *t);
}

TEST(AdminToken, PrivateEvenUnderAPermissiveUmask) {
  TempDir dir;
  mode_t old = ::umask(0);
  auto t = load_or_create_token(dir.path() + "/admin.token");
  ::umask(old);
  ASSERT_TRUE(t.ok());
  struct stat st {};
  ASSERT_EQ(::stat((dir.path() + "/admin.token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(AdminToken, OperatorTokenIsUsedAsWritten) {
  TempDir dir;
  std::string path = dir.path() + "/mine.token";
  std::ofstream(path) << "my-own-secret-token-1234\n";
  ::chmod(path.c_str(), 0600);
  auto t = load_or_create_token(path);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(*t, "my-own-secret-token-1234");
}

TEST(AdminToken, UnsafeTokensAreRefused) {
  TempDir dir;
  std::string open_file = dir.path() + "/open.token";
  std::ofstream(open_file) << kToken << "\n";
  ::chmod(open_file.c_str(), 0644);
  auto r = load_or_create_token(open_file);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("chmod 600"), std::string::npos) << r.error().message;

  std::string short_file = dir.path() + "/short.token";
  std::ofstream(short_file) << "abc\n";
  ::chmod(short_file.c_str(), 0600);
  EXPECT_FALSE(load_or_create_token(short_file).ok());

  std::string blank = dir.path() + "/blank.token";
  std::ofstream(blank) << "has a space in the middle of it\n";
  ::chmod(blank.c_str(), 0600);
  EXPECT_FALSE(load_or_create_token(blank).ok());

  auto nodir = load_or_create_token(dir.path() + "/missing/admin.token");
  ASSERT_FALSE(nodir.ok());
  EXPECT_NE(nodir.error().message.find("/missing/admin.token"), std::string::npos);
}

}  // namespace
}  // namespace bh::admin
