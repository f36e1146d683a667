// ProgramSink: output protocol, and real programs (written to a temp dir, run without a
// shell in between: the kernel runs their #! line).
#include "sinks/program_sink.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <boost/asio/io_context.hpp>
#include <cstdlib>
#include <fstream>
#include <optional>

#include "sinks/delivery_events.h"

namespace bh::sinks {
namespace {

namespace asio = boost::asio;

TEST(ProgramOutputTest, Parses) {
  auto a = parse_program_output("ADD-HEADER X-Scanned: yes\nREJECT 550 5.7.1 bad words\n");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->headers.size(), 1u);
  ASSERT_EQ(a->verdict.kind, Verdict::Kind::kReject);
  EXPECT_EQ(a->verdict.error.reply_code, 550);
  EXPECT_EQ(a->verdict.error.enhanced, "5.7.1");
  EXPECT_EQ(a->verdict.error.message, "bad words");
  EXPECT_EQ(parse_program_output("")->verdict.kind, Verdict::Kind::kContinue);
  EXPECT_EQ(parse_program_output("ACCEPT\r\n")->verdict.kind, Verdict::Kind::kStop);
  EXPECT_EQ(parse_program_output("DISCARD")->verdict.kind, Verdict::Kind::kDiscard);
  auto t = parse_program_output("REJECT 451 4.7.0 later");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->verdict.error.transient());
  for (const char* bad :
       {"REJECT 250 2.0.0 ok", "REJECT 550 4.7.1 mismatch", "REJECT 550", "ACCEPT\nCONTINUE",
        "FROBNICATE", "ADD-HEADER nocolon", "ADD-HEADER X A: b"}) {
    EXPECT_FALSE(parse_program_output(bad).ok()) << bad;
  }
}

class ProgramSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/bh-program-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string script(const std::string& name, const std::string& body) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << body;
    ::chmod(path.c_str(), 0755);
    return path;
  }
  Result<Verdict> run(ProgramConfig cfg, std::shared_ptr<MessageEvent>& ev) {
    ev = std::make_shared<MessageEvent>();
    ev->envelope.sender = "a@example.org";
    ev->envelope.id = "Q9";
    ev->message = "Subject: buy cheap pills\r\n\r\nbody\r\n";
    asio::io_context io;
    std::optional<Result<Verdict>> got;
    ProgramSink sink(std::move(cfg));
    sink.on_message(ev, io.get_executor(), [&](Result<Verdict> v) { got = std::move(v); });
    io.run_for(std::chrono::seconds(10));
    EXPECT_TRUE(got.has_value());
    return got ? *got : Result<Verdict>(transient_error("4.0.0", "no answer"));
  }
  std::string dir_;
};

TEST_F(ProgramSinkTest, RejectsByContentAndSeesTheEnvelope) {
  ProgramConfig cfg;
  cfg.argv = {script("filter",
                     "#!/bin/sh\n"
                     "if grep -q pills; then echo 'REJECT 554 5.7.1 No pills here'; exit 0; fi\n"
                     "echo \"ADD-HEADER X-Sender: $BH_SENDER\"\n")};
  std::shared_ptr<MessageEvent> ev;
  auto v = run(cfg, ev);
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->kind, Verdict::Kind::kReject);
  EXPECT_EQ(v->error.reply_code, 554);
  EXPECT_EQ(v->error.message, "No pills here");
}

TEST_F(ProgramSinkTest, AddsHeadersFromTheEnvironment) {
  ProgramConfig cfg;
  cfg.argv = {script(
      "stamp", "#!/bin/sh\ncat >/dev/null\necho \"ADD-HEADER X-Id: $BH_QUEUE_ID $BH_SENDER\"\n")};
  std::shared_ptr<MessageEvent> ev;
  auto v = run(cfg, ev);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->kind, Verdict::Kind::kContinue);
  EXPECT_NE(ev->message.find("X-Id: Q9 a@example.org\r\n\r\nbody"), std::string::npos);
}

TEST_F(ProgramSinkTest, TimeoutKillsAndFails) {
  ProgramConfig cfg;
  cfg.argv = {script("sleepy", "#!/bin/sh\nexec sleep 30\n")};
  cfg.timeout = std::chrono::milliseconds(100);
  std::shared_ptr<MessageEvent> ev;
  auto t0 = std::chrono::steady_clock::now();
  auto v = run(cfg, ev);
  EXPECT_FALSE(v.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST_F(ProgramSinkTest, NonZeroExitAndMissingProgramFail) {
  ProgramConfig cfg;
  cfg.argv = {script("fails", "#!/bin/sh\necho ACCEPT\nexit 3\n")};
  std::shared_ptr<MessageEvent> ev;
  EXPECT_FALSE(run(cfg, ev).ok());
  cfg.argv = {dir_ + "/does-not-exist"};
  EXPECT_FALSE(run(cfg, ev).ok());
}

TEST_F(ProgramSinkTest, ArgumentsAreNotShellWords) {
  ProgramConfig cfg;
  cfg.argv = {script("args", "#!/bin/sh\ncat >/dev/null\necho \"ADD-HEADER X-Arg: [$1]\"\n"),
              "a; touch " + dir_ + "/pwned"};
  std::shared_ptr<MessageEvent> ev;
  auto v = run(cfg, ev);
  ASSERT_TRUE(v.ok());
  EXPECT_NE(ev->message.find("X-Arg: [a; touch "), std::string::npos);
  struct stat st;
  EXPECT_NE(::stat((dir_ + "/pwned").c_str(), &st), 0);
}

TEST_F(ProgramSinkTest, DeliveryNotifierRunsTheChainWithTheOutcome) {
  const std::string out = dir_ + "/seen";
  ChainEntry e;
  e.name = "notify";
  e.on_failure = FailurePolicy::kSkip;
  ProgramConfig cfg;
  cfg.argv = {script(
      "notify",
      "#!/bin/sh\necho \"$BH_EVENT $BH_RECIPIENT $BH_NEXT_HOP [$BH_REPLY] $BH_QUEUE_ID\" >> " +
          out + "\n")};
  e.sink = std::make_shared<ProgramSink>(cfg);
  auto chain = std::make_shared<MessageChain>(std::vector<ChainEntry>{e});
  asio::io_context io;
  DeliveryNotifier n(chain, io.get_executor(), 1);
  queue::Envelope env;
  env.id = "Q5";
  n.notify("relayed", env, "bob@example.net", "250 2.0.0 ok\r\nX-Injected: 1", "smarthost:relay");
  n.notify("deferred", env, "carol@example.net", "451", "x");  // over max_in_flight: dropped
  EXPECT_EQ(n.dropped(), 1u);
  io.run_for(std::chrono::seconds(10));
  EXPECT_EQ(n.in_flight(), 0u);
  std::ifstream f(out);
  std::string line;
  std::getline(f, line);
  EXPECT_EQ(line, "relayed bob@example.net smarthost:relay [250 2.0.0 ok] Q5");
}

}  // namespace
}  // namespace bh::sinks
