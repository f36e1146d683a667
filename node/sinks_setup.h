#pragma once
// Builds the arrival chain of the sinks section (sinks/, docs/sinks.md) and adapts it
// to the SMTP connection's MessageFilter. The one place that names the concrete sinks.

#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/result.h"
#include "proto/config.pb.h"
#include "queue/queue_events.h"
#include "queue/fs_message_store.h"
#include "queue/queue_manager.h"
#include "queue/tracking_log.h"
#include "routing/route_table.h"
#include "sinks/categorize_events.h"
#include "sinks/delivery_events.h"
#include "sinks/outbound_sink.h"
#include "sinks/protocol_sink.h"
#include "sinks/route_sink.h"
#include "sinks/sink.h"
#include "smtp/connection.h"
#include "smtp/relay_client.h"

namespace bh::node {

struct SinkSetup {
  std::unique_ptr<boost::asio::thread_pool> plugin_pool;  // plug-in calls run here
  std::shared_ptr<sinks::MessageChain> on_arrival;        // empty chain: no filter
  std::shared_ptr<sinks::ProtocolChain> on_command;       // empty chain: no hooks
  smtp::MessageFilter filter() const;                     // null when on_arrival is empty
  std::shared_ptr<smtp::ProtocolHooks> hooks() const;
  std::shared_ptr<sinks::MessageChain> on_delivery;  // program sinks; empty: none
  std::unique_ptr<sinks::DeliveryNotifier> notifier;
  std::unique_ptr<queue::QueueEvents> events;
  // The queue's observer: `next` (the tracker, may be null) and then, for each recipient
  // outcome, the on_delivery chain run on `ex`. Null when there is neither.
  queue::QueueEvents* queue_events(queue::QueueEvents* next, boost::asio::any_io_executor ex);
  // The categorization events (sinks.before_categorize / after_categorize); empty: none.
  std::shared_ptr<sinks::MessageChain> before_categorize, after_categorize;
  // Both chains, run on `ex` (the relay loop); null when both are empty.
  std::shared_ptr<const sinks::CategorizeEvents> categorize_events(
      boost::asio::any_io_executor ex) const;
  // Outbound command events (sinks.on_outbound); empty: none.
  std::shared_ptr<sinks::OutboundChain> on_outbound;
  // Sets RelayOptions::on_command / on_reply to run on_outbound (nothing when it is empty).
  void outbound(smtp::RelayOptions& options) const;
  std::shared_ptr<sinks::RouteChain> on_route;  // empty chain: the router as it is
  // `inner` with the routing event applied (inner itself when on_route is empty).
  queue::Router route(queue::Router inner,
                      std::function<std::shared_ptr<const routing::RouteTable>()> routes)
      const;                      // null when on_command is empty
  // ConnectionServices::on_held: a message an arrival sink quarantined is recorded frozen
  // in state/<id> (before the 250), queued frozen, and logged "quarantined" with its
  // reason in the tracking log (when there is one). Nothing is delivered until a thaw.
  using Held = std::function<void(const std::string& id, const queue::Envelope& envelope,
                                  const std::string& reason)>;
  static Held holder(queue::FsMessageStore& store, queue::QueueManager& manager,
                     queue::TrackingLog* tracking);
  nlohmann::json status() const;  // counters per sink, in chain order
  // Waits for plug-in calls in flight (they post their answers to the io_contexts, so
  // this runs before those are destroyed). Idempotent.
  void shutdown();
  ~SinkSetup();
};

// A quarantine reason made fit for one header line (at most 200 octets, no controls).
std::string sanitize_reason(std::string_view reason);

// `journal_recipient`: a journal address as it is added to each message (JournalSink).
Result<std::unique_ptr<SinkSetup>> build_sinks(
    const proto::Sinks& config, const std::string& hostname,
    const std::function<queue::Recipient(const std::string& address)>& journal_recipient);

}  // namespace bh::node
