#pragma once
// TopologyReader: the configuration role of the directory (DESIGN.md §4.4; issue 5): the
// organization's routing groups, servers (nodes) and connectors, read from a domain
// controller under the configured configuration DN, as linkstate::RoutingGroup configs
// (linkstate/database.h set_config) plus the servers' addresses.
//
// Objects (deploy/ldap/bridgehead.schema): bhRoutingGroup (cn, bhMaster), bhServer (cn =
// node id, bhRoutingGroupName, bhSmtpAddress, bhLinkStateAddress), bhConnector (cn = id,
// bhRoutingGroupName = source group, bhTargetGroup, bhCost 1-100, bhSourceBridgehead,
// bhTargetBridgehead, bhAddressSpace "pattern;cost"). One subtree search under the
// configuration DN for the three classes. The members of a group are the servers that
// name it; its master is bhMaster, or (empty) elected among the live members.
//
// Changes without a restart: TopologyPoller re-reads every `interval` and calls
// `on_change` when the digest of what it read, or the list of objects it skipped,
// differs from the last one published.
// A full re-read, not a uSNChanged/modifyTimestamp watermark: a watermark never sees a
// deleted object (AD would need its tombstones, OpenLDAP an accesslog), and the
// configuration is a few hundred objects at most, so one search per interval is cheap.
//
// Errors: a directory fault is transient (the last good topology stays); an object that
// does not make sense (a cost outside 1-100, a bad address space, a connector from or to
// an unknown group, a source bridgehead that is not a server of its group) is skipped
// with a warning naming its DN, so one bad object cannot take the whole topology away.
// Threading: read() from any thread; `done` on the searcher's thread. The poller lives
// on the io_context it is given.

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "directory/ldap_client.h"
#include "linkstate/table.h"

namespace bh::directory {

struct ServerObject {
  std::string name;  // the node id
  std::string routing_group;
  std::string smtp_address;  // host:port, may be empty
  std::string link_state_address;
};

struct Topology {
  std::vector<linkstate::RoutingGroup> groups;  // sorted by name; versions left at zero
  std::vector<ServerObject> servers;            // sorted by name
  std::vector<std::string> warnings;            // objects skipped, and why
  std::string digest;  // hex 64-bit FNV-1a of the canonical form (change detection)
};

struct TopologyReaderOptions {
  std::string config_dn;  // e.g. "ou=config,dc=example,dc=test"
};

class TopologyReader {
 public:
  TopologyReader(LdapSearcher& searcher, TopologyReaderOptions options);
  void read(std::function<void(Result<Topology>)> done);
  // The topology from the search's entries (pure; exposed for tests).
  static Topology build(const std::vector<LdapEntry>& entries);
  // The search read() sends.
  LdapSearch request() const;

 private:
  LdapSearcher& searcher_;
  const TopologyReaderOptions options_;
};

class TopologyPoller : public std::enable_shared_from_this<TopologyPoller> {
 public:
  using OnChange = std::function<void(const Topology&)>;
  static std::shared_ptr<TopologyPoller> create(boost::asio::io_context& io, TopologyReader& reader,
                                                std::chrono::milliseconds interval,
                                                OnChange on_change);
  void start();  // reads at once, then every interval
  void stop();
  std::uint64_t reads() const { return reads_; }
  std::uint64_t changes() const { return changes_; }

 private:
  TopologyPoller(boost::asio::io_context& io, TopologyReader& reader,
                 std::chrono::milliseconds interval, OnChange on_change);
  void poll();
  boost::asio::io_context& io_;
  TopologyReader& reader_;
  const std::chrono::milliseconds interval_;
  OnChange on_change_;
  boost::asio::steady_timer timer_;
  std::string last_digest_;
  bool stopped_ = false;
  std::atomic<std::uint64_t> reads_{0}, changes_{0};
};

}  // namespace bh::directory
