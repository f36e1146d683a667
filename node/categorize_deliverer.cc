#include "node/categorize_deliverer.h"

#include <memory>
#include <mutex>

#include "common/log.h"
#include "common/text.h"

namespace bh::node {

void CategorizeDeliverer::deliver(queue::RemoteJob job, Done done) {
  struct Gather {
    std::mutex mu;
    queue::RemoteResult result;
    std::size_t left = 0;
    Done done;
    std::string id;
  };
  auto g = std::make_shared<Gather>();
  g->done = std::move(done);
  g->id = job.queue_id;
  g->left = job.recipients.size();
  g->result.remote_mta = "categorizer";
  g->result.recipients.resize(job.recipients.size());
  if (job.recipients.empty()) {
    g->done(std::move(g->result));  // never happens: the queue sends no empty job
    return;
  }
  for (std::size_t i = 0; i < job.recipients.size(); ++i) {
    const auto& rc = job.recipients[i];
    categorizer_.categorize(rc.address, [this, g, i, index = rc.index,
                                         address = rc.address](directory::CategorizeOutcome o) {
      queue::RemoteRecipientResult r;
      r.index = index;
      if (o.error) {
        r.status = o.error->transient() ? queue::RemoteStatus::kTransient
                                        : queue::RemoteStatus::kPermanent;
        r.enhanced = o.error->enhanced;
        r.reply = o.error->message;
      } else {
        r.status = queue::RemoteStatus::kDelivered;
        r.enhanced = "2.1.5";
        for (auto& x : o.recipients) {
          if (!this_server_.empty() && !x.expansion_server.empty()) {
            queue::Recipient n;  // that server resolves and expands the group itself
            n.address = std::move(x.address);
            n.home_server = std::move(x.expansion_server);
            r.expanded.push_back(std::move(n));
            continue;
          }
          if (!x.expansion_server.empty()) {
            r.status = queue::RemoteStatus::kTransient;
            r.enhanced = "4.4.0";
            r.reply = "group " + x.address + " is expanded by server " + x.expansion_server +
                      ", and mail to other nodes is not routed yet";
            r.expanded.clear();
            break;
          }
          queue::Recipient n;
          n.address = std::move(x.address);
          if (!this_server_.empty() && !x.mailbox.empty() && !x.home_server.empty() &&
              ascii_lower(x.home_server) != ascii_lower(this_server_)) {
            n.home_server = std::move(x.home_server);  // routed to its home server
          } else {
            n.mailbox = std::move(x.mailbox);
          }
          r.expanded.push_back(std::move(n));
        }
      }
      constexpr std::size_t kTraceLines = 20;  // a big group is summed up, not listed
      for (std::size_t l = 0; l < o.trace.size() && l < kTraceLines; ++l) {
        log::info("categorizer", g->id + ": " + o.trace[l]);
      }
      if (o.trace.size() > kTraceLines) {
        log::info("categorizer", g->id + ": ... " + std::to_string(o.trace.size() - kTraceLines) +
                                     " more steps, " + std::to_string(r.expanded.size()) +
                                     " recipients");
      }
      categorized_++;
      bool last = false;
      {
        std::lock_guard lock(g->mu);
        g->result.recipients[i] = std::move(r);
        last = --g->left == 0;
      }
      if (last) {
        g->done(std::move(g->result));
      }
    });
  }
}

}  // namespace bh::node
