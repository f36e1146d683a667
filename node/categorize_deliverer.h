#pragma once
// CategorizeDeliverer: directory::Categorizer seen by the queue as the RemoteDeliverer of
// next hop "categorizer" (queue/queue_manager.h set_categorizer): every recipient of a
// job is categorized at once (they share the LDAP connection's pipeline); the answer
// comes back when the last one is done.
// Per recipient: an expansion is kDelivered with the recipients it became (a mailbox
// with its folder; an outside address, or a group for another expansion server, with
// none); a permanent error is kPermanent; a directory fault is kTransient (4.4.3).
// Cluster mode (`this_server` set: link_state configured): a mailbox homed on another
// server becomes a recipient with Recipient::home_server (routed there), and a group
// for another expansion server becomes one recipient to that server, which expands it
// itself. Without it, every mailbox is delivered here, and a group for another
// expansion server fails transiently (4.4.0) and stays queued.
// Threading: deliver() from any thread; `done` on the categorizer's searcher thread.
// Borrows the categorizer, which must outlive every job in flight.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "directory/categorizer.h"
#include "queue/remote_deliverer.h"
#include "sinks/categorize_events.h"

namespace bh::node {

class CategorizeDeliverer final : public queue::RemoteDeliverer {
 public:
  explicit CategorizeDeliverer(directory::Categorizer& categorizer, std::string this_server = {})
      : categorizer_(categorizer), this_server_(std::move(this_server)) {}
  void deliver(queue::RemoteJob job, Done done) override;
  // The categorization events (sinks/categorize_events.h): before each recipient is
  // categorized, and after, with what it became; a sink's reject fails the recipient
  // with its code. Set before the first job; null: none.
  void set_sinks(std::shared_ptr<const sinks::CategorizeEvents> events) {
    sinks_ = std::move(events);
  }
  std::uint64_t categorized() const { return categorized_.load(); }

 private:
  directory::Categorizer& categorizer_;
  const std::string this_server_;
  std::atomic<std::uint64_t> categorized_{0};
  std::shared_ptr<const sinks::CategorizeEvents> sinks_;
};

}  // namespace bh::node
