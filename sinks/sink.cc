#include "sinks/sink.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/log.h"

namespace bh::sinks {

namespace asio = boost::asio;

Error failure_error(FailurePolicy policy, const std::string& sink, const std::string& why) {
  (void)why;  // logged by the chain; the client sees no internals
  if (policy == FailurePolicy::kReject) {
    Error e = permanent_error("5.7.1", "Message refused by policy (" + sink + ")");
    e.reply_code = 550;
    return e;
  }
  return transient_error("4.7.1", "Service unavailable - try again later");
}

MessageChain::MessageChain(std::vector<ChainEntry> entries) : entries_(std::move(entries)) {}

namespace {

// One run of the chain over one message. Lives while a sink or the timer holds it.
struct Run : std::enable_shared_from_this<Run> {
  Run(const std::vector<ChainEntry>& e, std::shared_ptr<MessageEvent> ev, asio::any_io_executor x,
      std::function<void(ChainOutcome)> d)
      : entries(e), event(std::move(ev)), ex(std::move(x)), timer(ex), done(std::move(d)) {}

  const std::vector<ChainEntry>& entries;  // the chain outlives its runs (node owns it)
  std::shared_ptr<MessageEvent> event;
  asio::any_io_executor ex;
  asio::steady_timer timer;
  std::function<void(ChainOutcome)> done;
  std::size_t index = 0;
  std::uint64_t step = 0;  // which call a late answer belongs to

  void next() {
    if (index >= entries.size()) {
      finish(Verdict::go_on(), "");
      return;
    }
    const ChainEntry& e = entries[index];
    e.counters->calls++;
    const std::uint64_t my_step = ++step;
    timer.expires_after(e.deadline);
    timer.async_wait([self = shared_from_this(), my_step](boost::system::error_code ec) {
      if (ec || self->step != my_step) {
        return;
      }
      const ChainEntry& en = self->entries[self->index];
      en.counters->timeouts++;
      self->failed("deadline of " + std::to_string(en.deadline.count()) + " ms passed");
    });
    // Each sink works on its own copy: one that answers after its deadline (or never)
    // cannot change what the rest of the chain sees.
    auto copy = std::make_shared<MessageEvent>(*event);
    e.sink->on_message(copy, ex, [self = shared_from_this(), my_step, copy](Result<Verdict> v) {
      asio::post(self->ex, [self, my_step, copy, v = std::move(v)]() mutable {
        if (self->step != my_step) {
          return;  // too late: the deadline already decided
        }
        if (v.ok()) {
          self->event = copy;
        }
        self->answered(std::move(v));
      });
    });
  }

  void answered(Result<Verdict> v) {
    ++step;
    timer.cancel();
    const ChainEntry& e = entries[index];
    if (!v.ok()) {
      failed(v.error().message);
      return;
    }
    switch (v->kind) {
      case Verdict::Kind::kContinue:
        e.counters->continued++;
        ++index;
        next();
        return;
      case Verdict::Kind::kReject:
        e.counters->rejected++;
        break;
      case Verdict::Kind::kStop:
        e.counters->stopped++;
        break;
      case Verdict::Kind::kDiscard:
        e.counters->discarded++;
        break;
    }
    finish(std::move(v.value()), e.name);
  }

  void failed(const std::string& why) {
    ++step;
    timer.cancel();
    const ChainEntry& e = entries[index];
    e.counters->failures++;
    log::warn("sinks", "sink " + e.name + " failed for " + event->envelope.id + ": " + why);
    if (e.on_failure == FailurePolicy::kSkip) {
      ++index;
      next();
      return;
    }
    finish(Verdict::reject(failure_error(e.on_failure, e.name, why)), e.name);
  }

  void finish(Verdict v, std::string by) {
    auto d = std::move(done);
    done = nullptr;
    if (d) {
      d(ChainOutcome{std::move(v), event, std::move(by)});
    }
  }
};

}  // namespace

void MessageChain::run(std::shared_ptr<MessageEvent> event, asio::any_io_executor ex,
                       std::function<void(ChainOutcome)> done) const {
  auto r = std::make_shared<Run>(entries_, std::move(event), ex, std::move(done));
  asio::post(ex, [r] { r->next(); });
}

}  // namespace bh::sinks
