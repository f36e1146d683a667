// OutboundChain and the built-in outbound_policy sink: order, first refusal wins, only
// transient stops, replies observed, deadline and failure policy.
#include "sinks/outbound_sink.h"

#include <gtest/gtest.h>

#include <thread>

#include "tests/sinks/sinks_test_util.h"

namespace bh::sinks {
namespace {

struct Recorder : OutboundSink {
  std::vector<std::string> log;
  std::optional<Error> answer;
  std::chrono::milliseconds delay{0};
  std::optional<Error> on_command(const OutboundCommand& c) override {
    log.push_back(std::string(c.verb) + " " + std::string(c.line));
    std::this_thread::sleep_for(delay);
    return answer;
  }
  void on_reply(const OutboundReply& r) override {
    log.push_back("reply " + std::string(r.verb) + " " + std::to_string(r.code));
  }
};

OutboundEntry entry(std::string name, std::shared_ptr<OutboundSink> s,
                    FailurePolicy p = FailurePolicy::kTempfail,
                    std::chrono::milliseconds deadline = std::chrono::milliseconds(2000)) {
  return testing::make_entry<OutboundEntry>(std::move(name), std::move(s), p, deadline);
}

OutboundCommand cmd(std::string_view connector, std::string_view verb, std::string_view line) {
  return OutboundCommand{"smarthost:", connector, "mx.example.net", verb, line};
}

TEST(OutboundPolicySink, RefusesListedVerbsToListedConnectorsOnly) {
  OutboundPolicySink p({"partner"}, {"mail"}, 451, "4.7.0");
  EXPECT_FALSE(p.on_command(cmd("partner", "EHLO", "EHLO me")));
  EXPECT_FALSE(p.on_command(cmd("other", "MAIL", "MAIL FROM:<a@b>")));
  auto e = p.on_command(cmd("Partner", "MAIL", "MAIL FROM:<a@b>"));
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->transient());
  EXPECT_EQ(e->enhanced, "4.7.0");
  EXPECT_EQ(e->reply_code, 451);
  EXPECT_NE(e->message.find("Partner"), std::string::npos);  // the hop as named

  OutboundPolicySink any({"*"}, {"RCPT"}, 450, "4.2.0");
  EXPECT_TRUE(any.on_command(cmd("whatever", "RCPT", "RCPT TO:<x@y>")));
}

TEST(OutboundChain, InOrderFirstRefusalWinsAndRepliesReachEverySink) {
  auto a = std::make_shared<Recorder>(), b = std::make_shared<Recorder>(),
       c = std::make_shared<Recorder>();
  b->answer = transient_error("4.7.0", "b says no");
  OutboundChain chain({entry("a", a), entry("b", b), entry("c", c)});
  EXPECT_FALSE(chain.empty());
  auto r = chain.on_command(cmd("x", "MAIL", "MAIL FROM:<s@example.org>"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message, "b says no");
  EXPECT_EQ(a->log, (std::vector<std::string>{"MAIL MAIL FROM:<s@example.org>"}));
  EXPECT_EQ(b->log.size(), 1u);
  EXPECT_TRUE(c->log.empty());
  EXPECT_EQ(chain.entries()[0].counters->continued.load(), 1u);
  EXPECT_EQ(chain.entries()[1].counters->rejected.load(), 1u);
  EXPECT_EQ(chain.entries()[2].counters->calls.load(), 0u);

  chain.on_reply(OutboundReply{"h", "x", "mx", "EHLO", 250, "mx.example.net"});
  EXPECT_EQ(c->log, (std::vector<std::string>{"reply EHLO 250"}));
  EXPECT_EQ(a->log.back(), "reply EHLO 250");
}

TEST(OutboundChain, APermanentAnswerBecomesTransient) {
  auto a = std::make_shared<Recorder>();
  Error e = permanent_error("5.7.1", "never");
  e.reply_code = 550;
  a->answer = e;
  OutboundChain chain({entry("a", a)});
  auto r = chain.on_command(cmd("x", "MAIL", "MAIL FROM:<>"));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->transient());
  EXPECT_EQ(r->enhanced, "4.7.1");
  EXPECT_EQ(r->reply_code, 0);
}

TEST(OutboundChain, DeadlineOverrunAppliesTheFailurePolicy) {
  auto slow = std::make_shared<Recorder>();
  slow->delay = std::chrono::milliseconds(30);  // answers "pass", but too late
  OutboundChain temp({entry("slow", slow, FailurePolicy::kTempfail, std::chrono::milliseconds(1))});
  auto r = temp.on_command(cmd("x", "RCPT", "RCPT TO:<a@b>"));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->transient());
  EXPECT_EQ(r->enhanced, "4.7.1");
  EXPECT_EQ(temp.entries()[0].counters->timeouts.load(), 1u);

  // skip: the command goes out; reject is only ever a transient stop here.
  OutboundChain skip({entry("slow", slow, FailurePolicy::kSkip, std::chrono::milliseconds(1))});
  EXPECT_FALSE(skip.on_command(cmd("x", "RCPT", "RCPT TO:<a@b>")));
  OutboundChain rej({entry("slow", slow, FailurePolicy::kReject, std::chrono::milliseconds(1))});
  auto r2 = rej.on_command(cmd("x", "RCPT", "RCPT TO:<a@b>"));
  ASSERT_TRUE(r2);
  EXPECT_TRUE(r2->transient());
}

}  // namespace
}  // namespace bh::sinks
