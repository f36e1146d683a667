// CategorizeEvents: the before/after categorization chains over MessageChain, with a
// recording sink, the built-in policy sink and deadlines on a real io_context.
#include "sinks/categorize_events.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <optional>

#include "sinks/builtin_sinks.h"
#include "tests/sinks/sinks_test_util.h"

namespace bh::sinks {
namespace {

namespace asio = boost::asio;

// Records what it saw and answers `answer` (never, when `hang`).
class Recorder : public MessageSink {
 public:
  explicit Recorder(Result<Verdict> answer = Verdict::go_on(), bool hang = false)
      : answer_(std::move(answer)), hang_(hang) {}
  void on_message(std::shared_ptr<MessageEvent> ev, asio::any_io_executor, Done done) override {
    ++calls;
    last = *ev;
    ev->envelope.recipients.clear();  // changes are ignored by the categorization events
    if (hang_) {
      held_ = std::move(done);
      return;
    }
    done(answer_);
  }
  int calls = 0;
  MessageEvent last;

 private:
  Result<Verdict> answer_;
  bool hang_;
  Done held_;
};

using testing::entry;  // tests/sinks/sinks_test_util.h

std::shared_ptr<const MessageChain> chain(std::vector<ChainEntry> es) {
  return std::make_shared<MessageChain>(std::move(es));
}

std::string attribute(const MessageEvent& e, const std::string& name) {
  for (const auto& [n, v] : e.attributes) {
    if (n == name) {
      return v;
    }
  }
  return "<none>";
}

const CategorizeContext kCtx{"Q1", "alice@example.org", "staff@example.org"};

struct Harness {
  asio::io_context io;
  std::optional<std::optional<Error>> out;
  CategorizeEvents::Done done() {
    return [this](std::optional<Error> e) { out = std::move(e); };
  }
  void run() {
    io.restart();
    io.run_for(std::chrono::seconds(5));
    ASSERT_TRUE(out.has_value());
  }
};

TEST(CategorizeEvents, NoChainsGoOnAtOnce) {
  Harness h;
  CategorizeEvents ev(nullptr, chain({}), h.io.get_executor());
  EXPECT_FALSE(ev.has_before());
  EXPECT_FALSE(ev.has_after());
  ev.before(kCtx, h.done());
  ASSERT_TRUE(h.out.has_value());  // on the caller's thread, without running the loop
  EXPECT_FALSE(h.out->has_value());
  h.out.reset();
  ev.after(kCtx, {"a@example.org"}, h.done());
  ASSERT_TRUE(h.out.has_value());
  EXPECT_FALSE(h.out->has_value());
}

TEST(CategorizeEvents, BeforeSeesTheRecipientAndContinues) {
  Harness h;
  auto r = std::make_shared<Recorder>();
  CategorizeEvents ev(chain({entry("rec", r)}), nullptr, h.io.get_executor());
  EXPECT_TRUE(ev.has_before());
  ev.before(kCtx, h.done());
  h.run();
  EXPECT_FALSE(h.out->has_value());
  ASSERT_EQ(r->calls, 1);
  EXPECT_EQ(r->last.envelope.id, "Q1");
  EXPECT_EQ(r->last.envelope.sender, "alice@example.org");
  ASSERT_EQ(r->last.envelope.recipients.size(), 1u);
  EXPECT_EQ(r->last.envelope.recipients[0].address, "staff@example.org");
  EXPECT_EQ(attribute(r->last, "EVENT"), "before_categorize");
  EXPECT_EQ(attribute(r->last, "RECIPIENT"), "staff@example.org");
  EXPECT_TRUE(r->last.message.empty());
}

TEST(CategorizeEvents, BeforePolicyRejectsTheGroupWithItsCode) {
  Harness h;
  PolicyConfig p;
  p.reject_recipients = {"staff@example.org"};
  p.code = 550;
  p.enhanced = "5.7.2";
  auto later = std::make_shared<Recorder>();
  CategorizeEvents ev(
      chain({entry("closed", std::make_shared<PolicySink>(p)), entry("later", later)}), nullptr,
      h.io.get_executor());
  ev.before(kCtx, h.done());
  h.run();
  ASSERT_TRUE(h.out->has_value());
  const Error& e = **h.out;
  EXPECT_FALSE(e.transient());
  EXPECT_EQ(e.enhanced, "5.7.2");
  EXPECT_EQ(e.reply_code, 550);
  EXPECT_EQ(later->calls, 0);  // the chain ended at the reject

  // Another recipient passes the same policy.
  h.out.reset();
  ev.before({"Q1", "alice@example.org", "bob@example.org"}, h.done());
  h.run();
  EXPECT_FALSE(h.out->has_value());
  EXPECT_EQ(later->calls, 1);
}

TEST(CategorizeEvents, AfterSeesTheExpansionAndStopSkipsLaterSinks) {
  Harness h;
  auto first = std::make_shared<Recorder>(Verdict::stop());
  auto second = std::make_shared<Recorder>(Verdict::reject(permanent_error("5.7.1", "no")));
  CategorizeEvents ev(nullptr, chain({entry("first", first), entry("second", second)}),
                      h.io.get_executor());
  ev.after(kCtx, {"alice@example.org", "bob@example.org"}, h.done());
  h.run();
  EXPECT_FALSE(h.out->has_value());  // stop: the expansion is kept
  EXPECT_EQ(second->calls, 0);
  ASSERT_EQ(first->last.envelope.recipients.size(), 2u);
  EXPECT_EQ(first->last.envelope.recipients[1].address, "bob@example.org");
  EXPECT_EQ(attribute(first->last, "EVENT"), "after_categorize");
  EXPECT_EQ(attribute(first->last, "RECIPIENT"), "staff@example.org");
  EXPECT_EQ(attribute(first->last, "EXPANDED_COUNT"), "2");
}

TEST(CategorizeEvents, AfterRejectTransientAndDiscardGoesOn) {
  Harness h;
  Error busy = transient_error("4.7.0", "later");
  busy.reply_code = 451;
  CategorizeEvents rej(nullptr,
                       chain({entry("r", std::make_shared<Recorder>(Verdict::reject(busy)))}),
                       h.io.get_executor());
  rej.after(kCtx, {"a@example.org"}, h.done());
  h.run();
  ASSERT_TRUE(h.out->has_value());
  EXPECT_TRUE((*h.out)->transient());
  EXPECT_EQ((*h.out)->enhanced, "4.7.0");

  h.out.reset();
  CategorizeEvents dis(nullptr, chain({entry("d", std::make_shared<Recorder>(Verdict::discard()))}),
                       h.io.get_executor());
  dis.after(kCtx, {"a@example.org"}, h.done());
  h.run();
  EXPECT_FALSE(h.out->has_value());
}

TEST(CategorizeEvents, AHugeExpansionIsCutInTheEventButCountedExactly) {
  Harness h;
  auto r = std::make_shared<Recorder>();
  CategorizeEvents ev(nullptr, chain({entry("rec", r)}), h.io.get_executor());
  std::vector<std::string> many;
  for (int i = 0; i < 20000; ++i) {
    many.push_back("member" + std::to_string(i) + "@example.org");
  }
  ev.after(kCtx, many, h.done());
  h.run();
  EXPECT_EQ(attribute(r->last, "EXPANDED_COUNT"), "20000");
  std::size_t octets = 0;
  for (const auto& x : r->last.envelope.recipients) {
    octets += x.address.size() + 1;
  }
  EXPECT_LE(octets, kMaxExpandedOctets);
  EXPECT_GT(r->last.envelope.recipients.size(), 1000u);
  EXPECT_LT(r->last.envelope.recipients.size(), many.size());
}

TEST(CategorizeEvents, DeadlineAndFailurePolicy) {
  Harness h;
  auto hang = std::make_shared<Recorder>(Verdict::go_on(), /*hang=*/true);
  CategorizeEvents temp(
      chain({entry("slow", hang, FailurePolicy::kTempfail, std::chrono::milliseconds(50))}),
      nullptr, h.io.get_executor());
  temp.before(kCtx, h.done());
  h.run();
  ASSERT_TRUE(h.out->has_value());
  EXPECT_TRUE((*h.out)->transient());
  EXPECT_EQ((*h.out)->enhanced, "4.7.1");

  h.out.reset();
  CategorizeEvents skip(
      chain({entry("slow", hang, FailurePolicy::kSkip, std::chrono::milliseconds(50))}), nullptr,
      h.io.get_executor());
  skip.before(kCtx, h.done());
  h.run();
  EXPECT_FALSE(h.out->has_value());
}

}  // namespace
}  // namespace bh::sinks
