#include "sinks/route_sink.h"

#include "common/text.h"

namespace bh::sinks {

bool domain_matches(std::string_view pattern, std::string_view domain) {
  const std::string p = ascii_lower(pattern), d = ascii_lower(domain);
  if (p == "*") {
    return true;
  }
  if (p.rfind("*.", 0) == 0) {
    const std::string suffix = p.substr(1);  // ".example.net"
    return d.size() > suffix.size() &&
           d.compare(d.size() - suffix.size(), suffix.size(), suffix) == 0;
  }
  return p == d;
}

std::optional<std::string> RouteOverrideSink::on_route(const RouteEvent& e) {
  for (const auto& p : domains_) {
    if (domain_matches(p, e.domain)) {
      return connector_;
    }
  }
  return std::nullopt;
}

std::optional<std::string> RouteChain::on_route(const RouteEvent& e) const {
  for (const auto& en : entries_) {
    en.counters->calls++;
    if (auto r = en.sink->on_route(e)) {
      en.counters->stopped++;  // decided the route
      return r;
    }
    en.counters->continued++;
  }
  return std::nullopt;
}

}  // namespace bh::sinks
