#pragma once
// Helpers for the routing tests: a seeded Random and terse connector builders.

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "routing/connector.h"

namespace bh::routing::testing {

// Deterministic: the same seed gives the same sequence on every run.
class SeededRandom final : public Random {
 public:
  explicit SeededRandom(std::uint64_t seed) : gen_(seed) {}
  std::uint64_t next() override { return gen_(); }

 private:
  std::mt19937_64 gen_;
};

inline AddressSpace space(const std::string& pattern) {
  auto s = AddressSpace::parse(pattern);
  BH_CHECK(s.ok());
  return *s;
}

// "pattern=cost" items, e.g. {"*.example.com=10", "*=100"}.
inline Connector mx_connector(std::string name, const std::vector<std::pair<std::string, int>>& spaces) {
  Connector c;
  c.name = std::move(name);
  c.kind = ConnectorKind::kDnsMx;
  for (const auto& [pattern, cost] : spaces) {
    c.address_spaces.push_back(CostedAddressSpace{space(pattern), cost});
  }
  return c;
}

inline Connector smarthost_connector(std::string name, const std::string& host,
                                     const std::vector<std::pair<std::string, int>>& spaces) {
  Connector c = mx_connector(std::move(name), spaces);
  c.kind = ConnectorKind::kSmartHost;
  auto h = parse_smart_host(host);
  BH_CHECK(h.ok());
  c.smart_hosts.push_back(*h);
  return c;
}

}  // namespace bh::routing::testing
