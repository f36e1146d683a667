#pragma once
// LinkStateReporter: link up/down from real traffic (DESIGN.md §4.2, issue 6). Wraps the
// node's RemoteDeliverer; for every job it watches the hop result of the connector:
// `failures_for_down` hop failures in a row (connect, greeting, TLS: RemoteResult::
// hop_error; the queue's glitch retries spent) report this node's source bridgehead of
// that connector down (LinkStateService::report, damped there by hold_down); while down,
// a TCP connect to the connector's first smart host every `probe` interval, or any
// successful delivery through it, reports it up again. A connector with no IP literal to
// connect to (DNS MX, a smart host by name: no DNS here) is reported up after one
// `probe` interval, for mail to try it again (its failures take it down again).
// Connectors that link state does not know are ignored (report() refuses them).
// Hops to other nodes (internal connectors "node.<id>", node/cluster_routing.h) count the
// same way per node; when that node is down, every routing-group connector of this
// group for which this node is a source bridgehead and all of whose target bridgeheads
// are down is reported down (the bridgehead cannot reach the other group: DESIGN.md
// §4.2), and up again as soon as one of its target bridgeheads answers.
//
// Threading: deliver() from any thread; results arrive on any thread (a mutex guards the
// per-connector state); probes run on `executor`. Ownership: borrows the inner
// deliverer, the service and the route table; all outlive it (node/main.cc).

#include <boost/asio.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "node/linkstate_service.h"
#include "queue/remote_deliverer.h"
#include "routing/route_table.h"

namespace bh::node {

class LinkStateReporter final : public queue::RemoteDeliverer {
 public:
  LinkStateReporter(queue::RemoteDeliverer& inner, LinkStateService& link_state,
                    std::shared_ptr<const routing::RouteTable> table,
                    boost::asio::any_io_executor executor, std::uint32_t failures_for_down,
                    std::chrono::milliseconds probe, std::string self = {});
  ~LinkStateReporter() override;

  void deliver(queue::RemoteJob job, Done done) override;

 private:
  struct State {
    std::uint32_t failures = 0;
    bool down = false;
    std::unique_ptr<boost::asio::steady_timer> timer;
  };
  void on_result(const std::string& connector, bool hop_failed);
  void report(const std::string& connector, bool up);
  void report_node(const std::string& node, bool up);
  void arm_probe(const std::string& connector);
  void probe(const std::string& connector);

  queue::RemoteDeliverer& inner_;
  LinkStateService& link_state_;
  std::shared_ptr<const routing::RouteTable> table_;
  boost::asio::any_io_executor executor_;
  const std::uint32_t failures_for_down_;
  const std::chrono::milliseconds probe_;
  std::mutex mu_;
  std::map<std::string, State> state_;  // guarded by mu_
  std::set<std::string> down_nodes_;     // guarded by mu_
  const std::string self_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace bh::node
