#pragma once
// The delivery-result transport event (docs/sinks.md): for each recipient delivered,
// relayed, deferred, failed or expired, the on_delivery chain (program sinks) runs with
// the envelope and BH_EVENT, BH_RECIPIENT, BH_REPLY, BH_NEXT_HOP in its environment and
// an empty stdin. Observation only: verdicts and header changes are ignored (the result is
// already final), failures are counted. notify() is called on the queue manager's delivery
// thread and only posts: the chain runs on `ex` (never the delivery thread), at most
// `max_in_flight` at once; past that, events are dropped and counted, never queued
// without bound.

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "queue/envelope.h"
#include "sinks/sink.h"

namespace bh::sinks {

class DeliveryNotifier {
 public:
  DeliveryNotifier(std::shared_ptr<const MessageChain> chain, boost::asio::any_io_executor ex,
                   std::size_t max_in_flight = 64);
  // `event`: delivered, relayed, deferred, failed or expired.
  void notify(const std::string& event, const queue::Envelope& envelope,
              const std::string& recipient, const std::string& reply, const std::string& next_hop);
  std::uint64_t dropped() const { return dropped_.load(); }
  std::uint64_t in_flight() const { return in_flight_->load(); }

 private:
  std::shared_ptr<const MessageChain> chain_;
  boost::asio::any_io_executor ex_;
  std::size_t max_;
  std::shared_ptr<std::atomic<std::size_t>> in_flight_ =
      std::make_shared<std::atomic<std::size_t>>(0);
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace bh::sinks
