#include "sinks/outbound_sink.h"

#include "common/log.h"
#include "common/text.h"

namespace bh::sinks {

namespace {

using Clock = std::chrono::steady_clock;

bool overran(const OutboundEntry& e, Clock::time_point t0) {
  if (Clock::now() - t0 <= e.deadline) {
    return false;
  }
  e.counters->timeouts++;
  e.counters->failures++;
  log::warn("sinks", "outbound sink " + e.name + " overran its deadline of " +
                         std::to_string(e.deadline.count()) + " ms");
  return true;
}

}  // namespace

OutboundPolicySink::OutboundPolicySink(std::vector<std::string> connectors,
                                       std::vector<std::string> verbs, int code,
                                       std::string enhanced)
    : connectors_(std::move(connectors)), code_(code), enhanced_(std::move(enhanced)) {
  for (auto& v : verbs) {
    verbs_.push_back(ascii_upper(v));
  }
}

std::optional<Error> OutboundPolicySink::on_command(const OutboundCommand& c) {
  bool hop = false;
  for (const auto& n : connectors_) {
    hop = hop || n == "*" || ascii_lower(n) == ascii_lower(c.connector);
  }
  bool verb = false;
  for (const auto& v : verbs_) {
    verb = verb || v == c.verb;
  }
  if (!hop || !verb) {
    return std::nullopt;
  }
  Error e = transient_error(enhanced_, std::string(c.verb) + " to " + std::string(c.connector) +
                                           " refused by outbound policy");
  e.reply_code = code_;
  return e;
}

std::optional<Error> OutboundChain::on_command(const OutboundCommand& c) const {
  for (const auto& e : entries_) {
    e.counters->calls++;
    const auto t0 = Clock::now();
    auto r = e.sink->on_command(c);
    if (overran(e, t0)) {
      if (e.on_failure == FailurePolicy::kSkip) {
        continue;
      }
      return failure_error(FailurePolicy::kTempfail, e.name, "deadline passed");
    }
    if (r) {
      if (!r->transient()) {  // only a transient stop is allowed: the mail stays queued
        r->cls = FailureClass::kTransient;
        r->enhanced = "4" + r->enhanced.substr(std::min<std::size_t>(1, r->enhanced.size()));
        r->reply_code = 0;
      }
      e.counters->rejected++;
      return r;
    }
    e.counters->continued++;
  }
  return std::nullopt;
}

void OutboundChain::on_reply(const OutboundReply& r) const {
  for (const auto& e : entries_) {
    const auto t0 = Clock::now();
    e.sink->on_reply(r);
    (void)overran(e, t0);  // an observation: nothing to undo
  }
}

}  // namespace bh::sinks
