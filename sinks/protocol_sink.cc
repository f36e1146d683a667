#include "sinks/protocol_sink.h"

#include "common/log.h"

namespace bh::sinks {

namespace {

using Clock = std::chrono::steady_clock;

bool overran(const ProtocolEntry& e, Clock::time_point t0) {
  if (Clock::now() - t0 <= e.deadline) {
    return false;
  }
  e.counters->timeouts++;
  e.counters->failures++;
  log::warn("sinks", "protocol sink " + e.name + " overran its deadline of " +
                         std::to_string(e.deadline.count()) + " ms");
  return true;
}

}  // namespace

std::optional<std::string> ProtocolChain::on_command(const CommandEvent& ev) const {
  for (const auto& e : entries_) {
    e.counters->calls++;
    const auto t0 = Clock::now();
    auto r = e.sink->on_command(ev);
    if (overran(e, t0)) {
      if (e.on_failure == FailurePolicy::kSkip) {
        continue;
      }
      return e.on_failure == FailurePolicy::kReject
                 ? std::string("550 5.7.1 Command refused by policy")
                 : std::string("451 4.7.1 Service unavailable - try again later");
    }
    if (r) {
      e.counters->rejected++;
      return r;
    }
    e.counters->continued++;
  }
  return std::nullopt;
}

std::optional<std::string> ProtocolChain::on_reply(const ReplyEvent& ev) const {
  std::optional<std::string> current;
  for (const auto& e : entries_) {
    ReplyEvent in = ev;
    if (current) {
      in.reply = *current;
    }
    const auto t0 = Clock::now();
    auto r = e.sink->on_reply(in);
    if (overran(e, t0)) {
      continue;  // a reply is never held up: the late rewrite is dropped
    }
    if (r) {
      current = std::move(r);
    }
  }
  return current;
}

std::string path_address(std::string_view arg) {
  auto lt = arg.find('<');
  auto gt = arg.find('>', lt == std::string_view::npos ? 0 : lt);
  if (lt == std::string_view::npos || gt == std::string_view::npos) {
    return {};
  }
  return std::string(arg.substr(lt + 1, gt - lt - 1));
}

}  // namespace bh::sinks
