#pragma once
// LdapPool: a small pool of LdapClient connections to one role's servers (issue 5: "a
// small pool per server"). Each client connects, fails over and reconnects on its own
// (ldap_client.h); a search goes to the connected client with the fewest searches in
// flight, so one slow or reconnecting connection does not hold the others' work, and
// a server restart costs one reconnect per connection, not an outage.
// Threading: search(), counters() from any thread; start()/stop() once each.

#include <memory>
#include <vector>

#include "directory/ldap_client.h"

namespace bh::directory {

class LdapPool final : public LdapSearcher {
 public:
  // `size` >= 1 clients with the same options on one io_context.
  LdapPool(boost::asio::io_context& io, const LdapClientOptions& options, std::size_t size);
  void start();
  void stop();
  void search(LdapSearch request, LdapSearchCallback done) override;
  // Summed over the connections (connected_uri: the first connected one's; in_flight and
  // max_in_flight: the sum of each connection's).
  LdapClientCounters counters() const;
  std::size_t size() const { return clients_.size(); }
  std::size_t connected() const;

 private:
  std::vector<std::shared_ptr<LdapClient>> clients_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace bh::directory
