#include "smtp/odmr.h"

#include <boost/asio/post.hpp>

#include "smtp/relay_client.h"

namespace bh::smtp {

void OdmrHold::attach(const std::vector<std::string>& domains, std::weak_ptr<OdmrLink> link) {
  std::lock_guard lock(mu_);
  for (const auto& d : domains) {
    links_[d] = link;  // a newer connection for the domain replaces an older one
  }
}

void OdmrHold::detach(const OdmrLink* link) {
  std::lock_guard lock(mu_);
  for (auto it = links_.begin(); it != links_.end();) {
    auto l = it->second.lock();
    it = (!l || l.get() == link) ? links_.erase(it) : std::next(it);
  }
}

bool OdmrHold::attached(const std::string& domain) const {
  std::lock_guard lock(mu_);
  auto it = links_.find(domain);
  return it != links_.end() && !it->second.expired();
}

void OdmrHold::deliver(queue::RemoteJob job, Done done) {
  std::shared_ptr<OdmrLink> link;
  {
    std::lock_guard lock(mu_);
    if (auto it = links_.find(job.domain); it != links_.end()) {
      link = it->second.lock();
    }
  }
  if (link) {
    link->offer(std::move(job), std::move(done));
    return;
  }
  auto r = hop_failure(job.recipients,
                       transient_error("4.4.0", "waiting for the customer's ATRN (RFC 2645)"), "");
  boost::asio::post(executor_, [done = std::move(done), r = std::move(r)]() mutable {
    done(std::move(r));
  });
}

void SplitDeliverer::deliver(queue::RemoteJob job, Done done) {
  if (job.connector == kOdmrConnector && odmr_ != nullptr) {
    odmr_->deliver(std::move(job), std::move(done));
  } else if (other_ != nullptr) {
    other_->deliver(std::move(job), std::move(done));
  } else {
    auto r = hop_failure(job.recipients, permanent_error("5.4.4", "no route to " + job.domain), "");
    boost::asio::post(executor_, [done = std::move(done), r = std::move(r)]() mutable {
      done(std::move(r));
    });
  }
}

}  // namespace bh::smtp
