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
  // Gives recipient i's result; the last one answers the job.
  auto complete = [g](std::size_t i, queue::RemoteRecipientResult r) {
    bool last = false;
    {
      std::lock_guard lock(g->mu);
      g->result.recipients[i] = std::move(r);
      last = --g->left == 0;
    }
    if (last) {
      g->done(std::move(g->result));
    }
  };
  // A sink's reject (sinks.before_categorize / after_categorize) fails the recipient.
  auto refused = [](std::size_t index, const Error& e) {
    queue::RemoteRecipientResult r;
    r.index = index;
    r.status = e.transient() ? queue::RemoteStatus::kTransient : queue::RemoteStatus::kPermanent;
    r.enhanced = e.enhanced;
    r.reply = (e.reply_code != 0 ? std::to_string(e.reply_code) + " " : std::string()) + e.enhanced +
              " " + e.message;
    return r;
  };
  for (std::size_t i = 0; i < job.recipients.size(); ++i) {
    const auto& rc = job.recipients[i];
    sinks::CategorizeContext ctx{job.queue_id, job.sender, rc.address};
    auto categorize = [this, g, i, index = rc.index, ctx, complete,
                       refused](std::optional<Error> before) {
      if (before) {
        log::info("categorizer", g->id + ": " + ctx.recipient +
                                     " refused before categorization: " + before->message);
        categorized_++;
        complete(i, refused(index, *before));
        return;
      }
    categorizer_.categorize(ctx.recipient, [this, g, i, index, ctx, complete,
                                            refused](directory::CategorizeOutcome o) {
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
      if (r.status != queue::RemoteStatus::kDelivered || !sinks_ || !sinks_->has_after()) {
        complete(i, std::move(r));
        return;
      }
      std::vector<std::string> expanded;
      expanded.reserve(r.expanded.size());
      for (const auto& x : r.expanded) {
        expanded.push_back(x.address);
      }
      sinks_->after(ctx, expanded, [g, i, index, ctx, complete, refused,
                                    kept = std::move(r)](std::optional<Error> after) mutable {
        if (after) {
          log::info("categorizer", g->id + ": " + ctx.recipient +
                                       " refused after categorization: " + after->message);
          complete(i, refused(index, *after));
          return;
        }
        complete(i, std::move(kept));
      });
    });
    };
    if (sinks_ && sinks_->has_before()) {
      sinks_->before(ctx, std::move(categorize));
    } else {
      categorize(std::nullopt);
    }
  }
}

}  // namespace bh::node
