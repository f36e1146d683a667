#include "directory/ldap_pool.h"

#include <limits>

namespace bh::directory {

LdapPool::LdapPool(boost::asio::io_context& io, const LdapClientOptions& options,
                   std::size_t size) {
  for (std::size_t i = 0; i < std::max<std::size_t>(size, 1); ++i) {
    clients_.push_back(LdapClient::create(io, options));
  }
}

void LdapPool::start() {
  for (auto& c : clients_) {
    c->start();
  }
}

void LdapPool::stop() {
  for (auto& c : clients_) {
    c->stop();
  }
}

void LdapPool::search(LdapSearch request, LdapSearchCallback done) {
  // Least loaded among the connected ones; ties (and nobody connected) rotate, so a
  // pool that is still connecting spreads its waiting searches too.
  const std::size_t n = clients_.size();
  const std::size_t start = next_++ % n;
  std::size_t best = start;
  std::uint64_t best_load = std::numeric_limits<std::uint64_t>::max();
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = (start + k) % n;
    auto c = clients_[i]->counters();
    if (c.connected_uri.empty()) {
      continue;
    }
    if (c.in_flight < best_load) {
      best_load = c.in_flight;
      best = i;
    }
  }
  clients_[best]->search(std::move(request), std::move(done));
}

std::size_t LdapPool::connected() const {
  std::size_t n = 0;
  for (const auto& c : clients_) {
    n += c->counters().connected_uri.empty() ? 0 : 1;
  }
  return n;
}

LdapClientCounters LdapPool::counters() const {
  LdapClientCounters sum;
  for (const auto& cl : clients_) {
    auto c = cl->counters();
    sum.searches += c.searches;
    sum.completed += c.completed;
    sum.entries += c.entries;
    sum.failed += c.failed;
    sum.timeouts += c.timeouts;
    sum.rejected_busy += c.rejected_busy;
    sum.connects += c.connects;
    sum.connect_failures += c.connect_failures;
    sum.disconnects += c.disconnects;
    sum.hung += c.hung;
    sum.failovers += c.failovers;
    sum.pages += c.pages;
    sum.in_flight += c.in_flight;
    sum.max_in_flight += c.max_in_flight;
    if (sum.connected_uri.empty()) {
      sum.connected_uri = c.connected_uri;
    }
  }
  return sum;
}

}  // namespace bh::directory
