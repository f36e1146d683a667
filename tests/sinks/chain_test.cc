// MessageChain: ordering, verdicts, deadlines and failure policy, with scripted sinks on
// a real io_context (the deadlines are Asio timers).
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <optional>

#include "sinks/builtin_sinks.h"
#include "sinks/message_edit.h"
#include "sinks/sink.h"
#include "tests/sinks/sinks_test_util.h"

namespace bh::sinks {
namespace {

namespace asio = boost::asio;

// A sink that records its call, optionally edits the message, and answers `answer`
// after `delay` (nullopt delay: never).
class Scripted : public MessageSink {
 public:
  Scripted(std::vector<std::string>* log, std::string name, Result<Verdict> answer,
           std::optional<std::chrono::milliseconds> delay = std::chrono::milliseconds(0))
      : log_(log), name_(std::move(name)), answer_(std::move(answer)), delay_(delay) {}
  void on_message(std::shared_ptr<MessageEvent> ev, asio::any_io_executor ex, Done done) override {
    log_->push_back(name_);
    add_header(ev->message, "X-Seen", name_);
    if (!delay_) {
      held_ = std::move(done);  // never answers
      return;
    }
    auto t = std::make_shared<asio::steady_timer>(ex, *delay_);
    t->async_wait([t, done, a = answer_](boost::system::error_code) { done(a); });
  }

 private:
  std::vector<std::string>* log_;
  std::string name_;
  Result<Verdict> answer_;
  std::optional<std::chrono::milliseconds> delay_;
  Done held_;
};

using testing::entry;  // tests/sinks/sinks_test_util.h

ChainOutcome run(const MessageChain& chain, asio::io_context& io) {
  auto ev = std::make_shared<MessageEvent>();
  ev->envelope.id = "Q1";
  ev->envelope.sender = "a@example.org";
  queue::Recipient r;
  r.address = "b@example.org";
  ev->envelope.recipients.push_back(r);
  ev->message = "Subject: hi\r\n\r\nbody\r\n";
  std::optional<ChainOutcome> out;
  chain.run(ev, io.get_executor(), [&](ChainOutcome o) { out = std::move(o); });
  io.restart();
  io.run_for(std::chrono::seconds(5));
  EXPECT_TRUE(out.has_value());
  return out ? *out : ChainOutcome{};
}

std::vector<std::string> seen(const std::string& m) {
  std::vector<std::string> v;
  for (auto& [n, val] : header_fields(m)) {
    if (n == "X-Seen") {
      v.push_back(val);
    }
  }
  return v;
}

TEST(ChainTest, RunsSinksInConfiguredOrder) {
  asio::io_context io;
  std::vector<std::string> log;
  MessageChain chain({entry("a", std::make_shared<Scripted>(&log, "a", Verdict::go_on())),
                      entry("b", std::make_shared<Scripted>(&log, "b", Verdict::go_on(),
                                                            std::chrono::milliseconds(5))),
                      entry("c", std::make_shared<Scripted>(&log, "c", Verdict::go_on()))});
  auto o = run(chain, io);
  EXPECT_EQ(o.verdict.kind, Verdict::Kind::kContinue);
  EXPECT_EQ(log, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(seen(o.event->message), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(chain.entries()[1].counters->continued.load(), 1u);
}

TEST(ChainTest, RejectEndsTheChainWithTheSinksCode) {
  asio::io_context io;
  std::vector<std::string> log;
  Error e = permanent_error("5.7.9", "no thanks");
  e.reply_code = 553;
  MessageChain chain({entry("a", std::make_shared<Scripted>(&log, "a", Verdict::go_on())),
                      entry("b", std::make_shared<Scripted>(&log, "b", Verdict::reject(e))),
                      entry("c", std::make_shared<Scripted>(&log, "c", Verdict::go_on()))});
  auto o = run(chain, io);
  ASSERT_EQ(o.verdict.kind, Verdict::Kind::kReject);
  EXPECT_EQ(o.verdict.error.reply_code, 553);
  EXPECT_EQ(o.verdict.error.enhanced, "5.7.9");
  EXPECT_EQ(o.decided_by, "b");
  EXPECT_EQ(log, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(chain.entries()[1].counters->rejected.load(), 1u);
  EXPECT_EQ(chain.entries()[2].counters->calls.load(), 0u);
}

TEST(ChainTest, StopAcceptsAndSkipsTheRest) {
  asio::io_context io;
  std::vector<std::string> log;
  MessageChain chain({entry("a", std::make_shared<Scripted>(&log, "a", Verdict::stop())),
                      entry("b", std::make_shared<Scripted>(&log, "b", Verdict::go_on()))});
  auto o = run(chain, io);
  EXPECT_EQ(o.verdict.kind, Verdict::Kind::kStop);
  EXPECT_EQ(log, (std::vector<std::string>{"a"}));
  EXPECT_EQ(seen(o.event->message), (std::vector<std::string>{"a"}));
}

TEST(ChainTest, DiscardEndsTheChain) {
  asio::io_context io;
  std::vector<std::string> log;
  MessageChain chain({entry("a", std::make_shared<Scripted>(&log, "a", Verdict::discard())),
                      entry("b", std::make_shared<Scripted>(&log, "b", Verdict::go_on()))});
  EXPECT_EQ(run(chain, io).verdict.kind, Verdict::Kind::kDiscard);
  EXPECT_EQ(log.size(), 1u);
}

TEST(ChainTest, DeadlineWithTempfailPolicyGives451) {
  asio::io_context io;
  std::vector<std::string> log;
  MessageChain chain(
      {entry("hang", std::make_shared<Scripted>(&log, "hang", Verdict::go_on(), std::nullopt),
             FailurePolicy::kTempfail, std::chrono::milliseconds(30)),
       entry("b", std::make_shared<Scripted>(&log, "b", Verdict::go_on()))});
  auto o = run(chain, io);
  ASSERT_EQ(o.verdict.kind, Verdict::Kind::kReject);
  EXPECT_TRUE(o.verdict.error.transient());
  EXPECT_EQ(o.verdict.error.enhanced, "4.7.1");
  EXPECT_EQ(chain.entries()[0].counters->timeouts.load(), 1u);
  EXPECT_EQ(chain.entries()[0].counters->failures.load(), 1u);
  EXPECT_EQ(log, (std::vector<std::string>{"hang"}));
}

TEST(ChainTest, DeadlineWithSkipPolicyGoesOnWithoutTheLateSinksChanges) {
  asio::io_context io;
  std::vector<std::string> log;
  MessageChain chain({entry("slow",
                            std::make_shared<Scripted>(&log, "slow", Verdict::go_on(),
                                                       std::chrono::milliseconds(200)),
                            FailurePolicy::kSkip, std::chrono::milliseconds(20)),
                      entry("b", std::make_shared<Scripted>(&log, "b", Verdict::go_on()))});
  auto o = run(chain, io);
  EXPECT_EQ(o.verdict.kind, Verdict::Kind::kContinue);
  EXPECT_EQ(log, (std::vector<std::string>{"slow", "b"}));
  // The late sink's header never made it: it worked on its own copy.
  EXPECT_EQ(seen(o.event->message), (std::vector<std::string>{"b"}));
}

TEST(ChainTest, FailureWithEachPolicy) {
  const Result<Verdict> broken = transient_error("4.7.1", "milter gone");
  {
    asio::io_context io;
    std::vector<std::string> log;
    MessageChain chain(
        {entry("x", std::make_shared<Scripted>(&log, "x", broken), FailurePolicy::kSkip),
         entry("y", std::make_shared<Scripted>(&log, "y", Verdict::go_on()))});
    auto o = run(chain, io);
    EXPECT_EQ(o.verdict.kind, Verdict::Kind::kContinue);
    EXPECT_EQ(log.size(), 2u);
  }
  {
    asio::io_context io;
    std::vector<std::string> log;
    MessageChain chain(
        {entry("x", std::make_shared<Scripted>(&log, "x", broken), FailurePolicy::kTempfail)});
    auto o = run(chain, io);
    ASSERT_EQ(o.verdict.kind, Verdict::Kind::kReject);
    EXPECT_TRUE(o.verdict.error.transient());
  }
  {
    asio::io_context io;
    std::vector<std::string> log;
    MessageChain chain(
        {entry("x", std::make_shared<Scripted>(&log, "x", broken), FailurePolicy::kReject)});
    auto o = run(chain, io);
    ASSERT_EQ(o.verdict.kind, Verdict::Kind::kReject);
    EXPECT_FALSE(o.verdict.error.transient());
    EXPECT_EQ(o.verdict.error.reply_code, 550);
  }
}

TEST(ChainTest, EmptyChainContinues) {
  asio::io_context io;
  MessageChain chain({});
  EXPECT_EQ(run(chain, io).verdict.kind, Verdict::Kind::kContinue);
}

queue::Recipient journal_recipient(bool categorize = false) {
  queue::Recipient r;
  r.address = "journal@example.org";
  if (categorize) {
    r.categorize = true;  // as the node builds it with an LDAP directory
  } else {
    r.mailbox = "journal";
  }
  return r;
}

TEST(BuiltinSinksTest, JournalAddsItsRecipientAsBuiltOnce) {
  asio::io_context io;
  MessageChain chain({entry("journal", std::make_shared<JournalSink>(journal_recipient(true)))});
  auto o = run(chain, io);
  ASSERT_EQ(o.event->envelope.recipients.size(), 2u);
  EXPECT_EQ(o.event->envelope.recipients[1].address, "journal@example.org");
  EXPECT_TRUE(o.event->envelope.recipients[1].categorize);
  EXPECT_EQ(o.event->envelope.recipients[1].mailbox, "");
  // Run again on a message that already has it (any case): not added twice.
  o.event->envelope.recipients[1].address = "Journal@Example.ORG";
  MessageChain again({entry("journal", std::make_shared<JournalSink>(journal_recipient(true)))});
  std::optional<ChainOutcome> out;
  again.run(o.event, io.get_executor(), [&](ChainOutcome x) { out = std::move(x); });
  io.restart();
  io.run_for(std::chrono::seconds(5));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(o.event->envelope.recipients.size(), 2u);
}

TEST(BuiltinSinksTest, StampPolicyJournal) {
  asio::io_context io;
  PolicyConfig p;
  p.reject_recipients = {"@blocked.example"};
  MessageChain chain(
      {entry("stamp", std::make_shared<HeaderStampSink>("X-Org", "acme")),
       entry("journal", std::make_shared<JournalSink>(journal_recipient())),
       entry("policy", std::make_shared<PolicySink>(p))});
  auto o = run(chain, io);
  EXPECT_EQ(o.verdict.kind, Verdict::Kind::kContinue);
  ASSERT_EQ(o.event->envelope.recipients.size(), 2u);
  EXPECT_EQ(o.event->envelope.recipients[1].address, "journal@example.org");
  EXPECT_EQ(o.event->envelope.recipients[1].mailbox, "journal");
  EXPECT_NE(o.event->message.find("X-Org: acme\r\n\r\nbody"), std::string::npos);

  PolicyConfig q;
  q.reject_senders = {"a@example.org"};
  q.code = 553;
  q.enhanced = "5.7.1";
  MessageChain chain2({entry("policy", std::make_shared<PolicySink>(q))});
  auto o2 = run(chain2, io);
  ASSERT_EQ(o2.verdict.kind, Verdict::Kind::kReject);
  EXPECT_EQ(o2.verdict.error.reply_code, 553);
}

TEST(BuiltinSinksTest, AddressMatches) {
  EXPECT_TRUE(address_matches("@Example.ORG", "x@example.org"));
  EXPECT_FALSE(address_matches("@example.org", "x@sub.example.orgx"));
  EXPECT_FALSE(address_matches("@example.org", "@example.org"));
  EXPECT_TRUE(address_matches("A@b.c", "a@B.c"));
  EXPECT_FALSE(address_matches("a@b.c", "aa@b.c"));
}

}  // namespace
}  // namespace bh::sinks
