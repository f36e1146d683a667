#pragma once
// On-demand mail relay (RFC 2645): mail for a customer's domains waits in the queue until
// the customer connects, logs in and says ATRN; then that very connection carries it.
//
// Routing gives such a domain the next hop "odmr:<domain>" on connector "odmr". OdmrHold
// is the queue's RemoteDeliverer for those hops: while no ATRN connection for the domain
// is attached, every attempt ends transient (4.4.0 "waiting for ATRN"), so the queue keeps
// the mail with its usual retry, delay-notice and expiry rules; an attached connection
// (OdmrLink) gets the jobs and sends them. SplitDeliverer puts OdmrHold next to the SMTP
// relay behind the queue's one RemoteDeliverer.
//
// Threading: deliver(), attach() and detach() may be called from any thread; a "waiting"
// verdict is posted to the executor, never called inside deliver().

#include <boost/asio/any_io_executor.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "queue/remote_deliverer.h"

namespace bh::smtp {

inline constexpr const char* kOdmrConnector = "odmr";
inline std::string odmr_hop(const std::string& domain) { return "odmr:" + domain; }

// One ATRN connection that takes jobs for the domains it was attached for.
class OdmrLink {
 public:
  virtual ~OdmrLink() = default;
  // Called from any thread; `done` exactly once, never inside offer().
  virtual void offer(queue::RemoteJob job, queue::RemoteDeliverer::Done done) = 0;
};

class OdmrHold final : public queue::RemoteDeliverer {
 public:
  explicit OdmrHold(boost::asio::any_io_executor executor) : executor_(std::move(executor)) {}
  void attach(const std::vector<std::string>& domains, std::weak_ptr<OdmrLink> link);
  void detach(const OdmrLink* link);
  bool attached(const std::string& domain) const;
  void deliver(queue::RemoteJob job, Done done) override;

 private:
  boost::asio::any_io_executor executor_;
  mutable std::mutex mu_;
  std::map<std::string, std::weak_ptr<OdmrLink>> links_;  // domain -> its ATRN connection
};

// Jobs on connector "odmr" go to the hold, every other one to `other` (the SMTP relay;
// null: permanent 5.4.4 no route).
class SplitDeliverer final : public queue::RemoteDeliverer {
 public:
  SplitDeliverer(OdmrHold* odmr, queue::RemoteDeliverer* other, boost::asio::any_io_executor ex)
      : odmr_(odmr), other_(other), executor_(std::move(ex)) {}
  void deliver(queue::RemoteJob job, Done done) override;

 private:
  OdmrHold* odmr_;
  queue::RemoteDeliverer* other_;
  boost::asio::any_io_executor executor_;
};

}  // namespace bh::smtp
