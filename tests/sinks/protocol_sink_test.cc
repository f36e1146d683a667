// Protocol events: the ProtocolChain on its own (order, answers, rewrites, deadline and
// failure policy) and inside a real ServerSession (tests/smtp/session_harness.h).
#include "sinks/protocol_sink.h"

#include <gtest/gtest.h>

#include <thread>

#include "sinks/builtin_sinks.h"
#include "smtp/server_session.h"
#include "tests/sinks/sinks_test_util.h"
#include "tests/smtp/session_harness.h"

namespace bh::sinks {
namespace {

class Scripted : public ProtocolSink {
 public:
  Scripted(std::vector<std::string>* log, std::string name, std::optional<std::string> answer,
           std::chrono::milliseconds sleep = std::chrono::milliseconds(0))
      : log_(log), name_(std::move(name)), answer_(std::move(answer)), sleep_(sleep) {}
  std::optional<std::string> on_command(const CommandEvent&) override {
    log_->push_back(name_);
    std::this_thread::sleep_for(sleep_);
    return answer_;
  }
  std::optional<std::string> on_reply(const ReplyEvent& e) override {
    return std::string(e.reply) + " " + name_;
  }

 private:
  std::vector<std::string>* log_;
  std::string name_;
  std::optional<std::string> answer_;
  std::chrono::milliseconds sleep_;
};

ProtocolEntry entry(std::string name, std::shared_ptr<ProtocolSink> s,
                    FailurePolicy p = FailurePolicy::kTempfail,
                    std::chrono::milliseconds deadline = std::chrono::milliseconds(1000)) {
  return testing::make_entry<ProtocolEntry>(std::move(name), std::move(s), p, deadline);
}

TEST(ProtocolChainTest, FirstAnswerWinsInOrder) {
  std::vector<std::string> log;
  ProtocolChain chain({entry("a", std::make_shared<Scripted>(&log, "a", std::nullopt)),
                       entry("b", std::make_shared<Scripted>(&log, "b", "550 5.7.1 no")),
                       entry("c", std::make_shared<Scripted>(&log, "c", "451 4.0.0 never"))});
  EXPECT_EQ(chain.on_command({"192.0.2.1", "MAIL", "FROM:<x@y>"}), "550 5.7.1 no");
  EXPECT_EQ(log, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(chain.entries()[0].counters->continued.load(), 1u);
  EXPECT_EQ(chain.entries()[1].counters->rejected.load(), 1u);
  EXPECT_EQ(chain.entries()[2].counters->calls.load(), 0u);
}

TEST(ProtocolChainTest, RepliesAreRewrittenInTurn) {
  std::vector<std::string> log;
  ProtocolChain chain({entry("a", std::make_shared<Scripted>(&log, "a", std::nullopt)),
                       entry("b", std::make_shared<Scripted>(&log, "b", std::nullopt))});
  EXPECT_EQ(chain.on_reply({"192.0.2.1", "NOOP", "250 2.0.0 Ok"}), "250 2.0.0 Ok a b");
}

TEST(ProtocolChainTest, DeadlineOverrunFollowsThePolicy) {
  std::vector<std::string> log;
  const auto slow = std::chrono::milliseconds(30), deadline = std::chrono::milliseconds(1);
  ProtocolChain skip(
      {entry("slow", std::make_shared<Scripted>(&log, "slow", "550 5.7.1 late", slow),
             FailurePolicy::kSkip, deadline),
       entry("b", std::make_shared<Scripted>(&log, "b", std::nullopt))});
  EXPECT_EQ(skip.on_command({"192.0.2.1", "RCPT", "TO:<a@b>"}), std::nullopt);
  EXPECT_EQ(skip.entries()[0].counters->timeouts.load(), 1u);
  EXPECT_EQ(log, (std::vector<std::string>{"slow", "b"}));
  ProtocolChain temp({entry("slow", std::make_shared<Scripted>(&log, "slow", std::nullopt, slow),
                            FailurePolicy::kTempfail, deadline)});
  auto r = temp.on_command({"192.0.2.1", "RCPT", "TO:<a@b>"});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->substr(0, 9), "451 4.7.1");
}

TEST(ProtocolSinksTest, PolicyAnswersMailAndRcpt) {
  PolicyConfig p;
  p.reject_senders = {"@spam.example"};
  p.reject_recipients = {"ceo@example.org"};
  PolicySink s(p);
  EXPECT_EQ(s.on_command({"", "MAIL", "FROM:<x@spam.example> SIZE=10"}).value_or("").substr(0, 9),
            "550 5.7.1");
  EXPECT_EQ(s.on_command({"", "MAIL", "FROM:<x@ok.example>"}), std::nullopt);
  EXPECT_EQ(s.on_command({"", "MAIL", "FROM:<>"}), std::nullopt);
  EXPECT_TRUE(s.on_command({"", "RCPT", "TO:<CEO@example.org>"}).has_value());
  EXPECT_EQ(s.on_command({"", "RCPT", "TO:<x@spam.example>"}), std::nullopt);
  EXPECT_EQ(path_address("FROM:<a@b> X=<c>"), "a@b");
  EXPECT_EQ(path_address("garbage"), "");
}

TEST(ProtocolSinksTest, ReplyTextKeepsCodes) {
  ReplyTextSink s({"CONNECT", "NOOP"}, "Mail service");
  EXPECT_EQ(s.on_reply({"", "CONNECT", "220 mx ESMTP bridgehead"}), "220 Mail service");
  EXPECT_EQ(s.on_reply({"", "NOOP", "250 2.0.0 Ok"}), "250 2.0.0 Mail service");
  EXPECT_EQ(s.on_reply({"", "RSET", "250 2.0.0 Ok"}), std::nullopt);
}

// The chain as the session sees it (node/sinks_setup.cc has the same adapter).
class Hooks : public smtp::ProtocolHooks {
 public:
  explicit Hooks(std::shared_ptr<ProtocolChain> c) : chain_(std::move(c)) {}
  std::optional<std::string> on_command(const smtp::PeerInfo& p, std::string_view v,
                                        std::string_view a) override {
    return chain_->on_command({p.address, v, a});
  }
  std::optional<std::string> on_reply(const smtp::PeerInfo& p, std::string_view v,
                                      std::string_view r) override {
    return chain_->on_reply({p.address, v, r});
  }
  std::shared_ptr<ProtocolChain> chain_;
};

TEST(SessionProtocolEventsTest, SinkAnswersMailAndRewritesReplies) {
  PolicyConfig p;
  p.reject_senders = {"@spam.example"};
  p.code = 553;
  auto chain = std::make_shared<ProtocolChain>(std::vector<ProtocolEntry>{
      entry("policy", std::make_shared<PolicySink>(p)),
      entry("text", std::make_shared<ReplyTextSink>(std::vector<std::string>{"CONNECT", "RCPT"},
                                                    "Hidden"))});
  smtp::SessionConfig cfg;
  cfg.hostname = "mx.example.org";
  cfg.protocol_hooks = std::make_shared<Hooks>(chain);
  smtp::testing::Harness h(cfg);
  auto out = h.run(
      "EHLO c\r\nMAIL FROM:<x@spam.example>\r\nRCPT TO:<alice@example.org>\r\n"
      "MAIL FROM:<x@ok.example>\r\nRCPT TO:<alice@example.org>\r\nQUIT\r\n");
  // banner (rewritten), EHLO, MAIL answered by the sink (not performed, so RCPT is out
  // of sequence), MAIL, RCPT (rewritten text), QUIT.
  EXPECT_EQ(out.codes, (std::vector<int>{220, 250, 553, 503, 250, 250, 221})) << out.replies;
  EXPECT_NE(out.replies.find("220 Hidden\r\n"), std::string::npos) << out.replies;
  EXPECT_NE(out.replies.find("553 5.7.1 Message refused by policy (sender)\r\n"),
            std::string::npos);
  EXPECT_NE(out.replies.find("250 2.1.5 Hidden\r\n"), std::string::npos) << out.replies;
}

TEST(SessionProtocolEventsTest, BadSinkLinesAreIgnored) {
  class Bad : public ProtocolSink {
   public:
    std::optional<std::string> on_command(const CommandEvent&) override {
      return std::string("250 ok?");
    }
    std::optional<std::string> on_reply(const ReplyEvent&) override {
      return std::string("550 5.0.0 class change");
    }
  };
  auto chain = std::make_shared<ProtocolChain>(
      std::vector<ProtocolEntry>{entry("bad", std::make_shared<Bad>())});
  smtp::SessionConfig cfg;
  cfg.protocol_hooks = std::make_shared<Hooks>(chain);
  smtp::testing::Harness h(cfg);
  // A 2xx answer to a command is not an answer (only 4xx/5xx refuse); a rewrite to
  // another class is ignored: the session behaves as without the sink.
  auto out = h.run("EHLO c\r\nNOOP\r\nQUIT\r\n");
  EXPECT_EQ(out.codes, (std::vector<int>{220, 250, 250, 221})) << out.replies;
}

}  // namespace
}  // namespace bh::sinks
