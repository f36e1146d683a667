#include "sinks/categorize_events.h"

namespace bh::sinks {

namespace {

std::shared_ptr<MessageEvent> event_for(const CategorizeContext& c, const char* name) {
  auto ev = std::make_shared<MessageEvent>();
  ev->envelope.id = c.queue_id;
  ev->envelope.sender = c.sender;
  ev->attributes = {{"EVENT", name}, {"RECIPIENT", c.recipient}};
  return ev;
}

}  // namespace

CategorizeEvents::CategorizeEvents(std::shared_ptr<const MessageChain> before,
                                   std::shared_ptr<const MessageChain> after,
                                   boost::asio::any_io_executor ex)
    : before_(std::move(before)), after_(std::move(after)), ex_(std::move(ex)) {}

void CategorizeEvents::run(const std::shared_ptr<const MessageChain>& chain,
                           std::shared_ptr<MessageEvent> ev, Done done) const {
  if (!chain || chain->empty()) {
    done(std::nullopt);
    return;
  }
  chain->run(std::move(ev), ex_, [done = std::move(done)](ChainOutcome o) {
    if (o.verdict.kind == Verdict::Kind::kReject) {
      done(std::move(o.verdict.error));
      return;
    }
    done(std::nullopt);  // continue, stop, and discard (not a verdict here) go on
  });
}

void CategorizeEvents::before(const CategorizeContext& c, Done done) const {
  if (!has_before()) {
    done(std::nullopt);
    return;
  }
  auto ev = event_for(c, "before_categorize");
  queue::Recipient r;
  r.address = c.recipient;
  ev->envelope.recipients.push_back(std::move(r));
  run(before_, std::move(ev), std::move(done));
}

void CategorizeEvents::after(const CategorizeContext& c, const std::vector<std::string>& expanded,
                             Done done) const {
  if (!has_after()) {
    done(std::nullopt);
    return;
  }
  auto ev = event_for(c, "after_categorize");
  ev->attributes.emplace_back("EXPANDED_COUNT", std::to_string(expanded.size()));
  std::size_t octets = 0;
  for (const auto& a : expanded) {
    octets += a.size() + 1;
    if (octets > kMaxExpandedOctets) {
      break;
    }
    queue::Recipient r;
    r.address = a;
    ev->envelope.recipients.push_back(std::move(r));
  }
  run(after_, std::move(ev), std::move(done));
}

}  // namespace bh::sinks
