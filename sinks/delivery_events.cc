#include "sinks/delivery_events.h"

#include <boost/asio/post.hpp>

namespace bh::sinks {

DeliveryNotifier::DeliveryNotifier(std::shared_ptr<const MessageChain> chain,
                                   boost::asio::any_io_executor ex, std::size_t max_in_flight)
    : chain_(std::move(chain)), ex_(std::move(ex)), max_(max_in_flight) {}

void DeliveryNotifier::notify(const std::string& event, const queue::Envelope& envelope,
                              const std::string& recipient, const std::string& reply,
                              const std::string& next_hop) {
  if (in_flight_->fetch_add(1) >= max_) {
    in_flight_->fetch_sub(1);
    dropped_++;
    return;
  }
  auto ev = std::make_shared<MessageEvent>();
  ev->envelope = envelope;
  ev->attributes = {
      {"EVENT", event}, {"RECIPIENT", recipient}, {"REPLY", reply}, {"NEXT_HOP", next_hop}};
  boost::asio::post(ex_, [chain = chain_, ev, ex = ex_, counter = in_flight_] {
    chain->run(ev, ex, [counter](ChainOutcome) { counter->fetch_sub(1); });
  });
}

}  // namespace bh::sinks
