#include "node/linkstate_delivery.h"

#include <algorithm>

#include "common/log.h"
#include "node/cluster_routing.h"

namespace bh::node {

namespace asio = boost::asio;
using tcp = boost::asio::ip::tcp;

LinkStateReporter::LinkStateReporter(queue::RemoteDeliverer& inner, LinkStateService& link_state,
                                     std::shared_ptr<const routing::RouteTable> table,
                                     asio::any_io_executor executor,
                                     std::uint32_t failures_for_down,
                                     std::chrono::milliseconds probe, std::string self)
    : inner_(inner),
      link_state_(link_state),
      table_(std::move(table)),
      executor_(std::move(executor)),
      failures_for_down_(std::max<std::uint32_t>(1, failures_for_down)),
      probe_(probe),
      self_(std::move(self)) {}

LinkStateReporter::~LinkStateReporter() {
  *alive_ = false;
  std::lock_guard lock(mu_);
  for (auto& [name, st] : state_) {
    if (st.timer) {
      st.timer->cancel();
    }
  }
}

void LinkStateReporter::deliver(queue::RemoteJob job, Done done) {
  std::string connector = job.connector;
  inner_.deliver(std::move(job), [this, connector, done = std::move(done)](queue::RemoteResult r) {
    on_result(connector, r.hop_error.has_value());
    done(std::move(r));
  });
}

void LinkStateReporter::on_result(const std::string& connector, bool hop_failed) {
  bool change = false, up = false;
  {
    std::lock_guard lock(mu_);
    auto& st = state_[connector];
    if (hop_failed) {
      if (++st.failures >= failures_for_down_ && !st.down) {
        st.down = change = true;
      }
    } else {
      st.failures = 0;
      if (st.down) {
        st.down = false;
        change = up = true;
      }
    }
  }
  if (change) {
    report(connector, up);
  }
}

void LinkStateReporter::report(const std::string& connector, bool up) {
  if (std::string node = node_of_connector(connector); !node.empty()) {
    report_node(node, up);
    if (!up) {
      arm_probe(connector);  // a TCP connect to the node's SMTP address
    }
    return;
  }
  auto r = link_state_.report(connector, up);
  if (!r.ok()) {
    bh::log::debug("linkstate", "connector " + connector + " not reported: " + r.error().message);
    return;
  }
  bh::log::info("linkstate", "connector " + connector + " reported " + (up ? "up" : "down") +
                                 (up ? "" : " after failed deliveries"));
  if (!up) {
    arm_probe(connector);
  }
}

void LinkStateReporter::report_node(const std::string& node, bool up) {
  auto routes = link_state_.routes();
  const auto* group = routes ? routes->snapshot().find(routes->local_group()) : nullptr;
  if (group == nullptr) {
    return;
  }
  std::vector<std::pair<std::string, bool>> changes;
  {
    std::lock_guard lock(mu_);
    if (up) {
      down_nodes_.erase(node);
    } else {
      down_nodes_.insert(node);
    }
    for (const auto& c : group->connectors) {
      const bool mine = std::any_of(c.sources.begin(), c.sources.end(),
                                    [&](const auto& s) { return s.node == self_; });
      const bool targets_it = std::find(c.target_bridgeheads.begin(), c.target_bridgeheads.end(),
                                        node) != c.target_bridgeheads.end();
      if (!mine || !targets_it) {
        continue;
      }
      const bool all_down = std::all_of(c.target_bridgeheads.begin(), c.target_bridgeheads.end(),
                                        [&](const std::string& t) { return down_nodes_.count(t) > 0; });
      if (up || all_down) {
        changes.emplace_back(c.id, up);
      }
    }
  }
  for (const auto& [id, u] : changes) {
    auto r = link_state_.report(id, u);
    if (!r.ok()) {
      bh::log::debug("linkstate", "connector " + id + " not reported: " + r.error().message);
      continue;
    }
    bh::log::info("linkstate", "connector " + id + " reported " + (u ? "up" : "down") + ": its target bridgehead " +
                                   node + (u ? " answers again" : " does not answer"));
  }
}

void LinkStateReporter::arm_probe(const std::string& connector) {
  std::lock_guard lock(mu_);
  auto& st = state_[connector];
  if (!st.timer) {
    st.timer = std::make_unique<asio::steady_timer>(executor_);
  }
  st.timer->expires_after(probe_);
  st.timer->async_wait([this, alive = alive_, connector](boost::system::error_code ec) {
    if (!ec && *alive) {
      probe(connector);
    }
  });
}

void LinkStateReporter::probe(const std::string& connector) {
  {
    std::lock_guard lock(mu_);
    if (!state_[connector].down) {
      return;
    }
  }
  auto c = table_->find(connector);
  if (!c || c->smart_hosts.empty() || !c->smart_hosts.front().is_ip) {
    // Nothing to connect to without DNS (a DNS MX connector, a smart host by name): up
    // again after one interval, so mail is offered to it again; the next failures take
    // it down again. (Left down, the routes would never send it mail to find out.)
    bh::log::info("linkstate", "connector " + connector + ": no address to probe; up again for a try");
    on_result(connector, false);
    return;
  }
  const auto& h = c->smart_hosts.front();
  boost::system::error_code ec;
  tcp::endpoint ep(asio::ip::make_address(h.host, ec), h.port != 0 ? h.port : c->settings.port);
  if (ec) {
    return arm_probe(connector);
  }
  auto socket = std::make_shared<tcp::socket>(executor_);
  socket->async_connect(ep, [this, alive = alive_, socket, connector](boost::system::error_code e) {
    if (!*alive) {
      return;
    }
    boost::system::error_code ignored;
    socket->close(ignored);
    if (e) {
      return arm_probe(connector);
    }
    on_result(connector, false);  // the probe connected: up
  });
}

}  // namespace bh::node
