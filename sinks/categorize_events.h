#pragma once
// The categorization transport events (docs/sinks.md): categorization runs after spool,
// one recipient at a time (node/categorize_deliverer.h). `before` runs the
// sinks.before_categorize chain for a recipient about to be categorized; `after` runs the
// sinks.after_categorize chain for a recipient and the recipients it became. Each is a
// MessageChain (sinks/sink.h: order, deadline per sink, failure policy) over an event
// whose envelope holds the message's sender and queue id and, as its recipients, the one
// recipient (before) or what it became (after); the message bytes are not given (empty:
// a program sink reads an empty stdin). Attributes (BH_<NAME> for a program): EVENT
// ("before_categorize" / "after_categorize"), RECIPIENT, and after: EXPANDED_COUNT.
//
// Verdicts: continue (next sink), stop (later sinks do not run; the recipient is
// categorized / its expansion kept as it is), reject with an Error (the recipient fails
// with it: 5xx permanently, with a DSN; 4xx transiently, retried). Discard is not a
// verdict of these events and counts as continue; changes a sink makes to the event are
// ignored. A failed sink is handled by its failure policy (tempfail: 4.7.1, retried).
//
// Threading: before()/after() from any thread; the chains run on `ex` (their timers and
// program pipes), `done` is called once, on `ex`, or at once on the caller's thread when
// the chain is empty.

#include <boost/asio/any_io_executor.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "sinks/sink.h"

namespace bh::sinks {

struct CategorizeContext {
  std::string queue_id;
  std::string sender;     // reverse-path without <>; empty for the null sender
  std::string recipient;  // the recipient being categorized
};

// At most this many octets of expanded addresses are put in the after event (a program
// sink gets them in its environment): later ones are left out; EXPANDED_COUNT is exact.
inline constexpr std::size_t kMaxExpandedOctets = 64u << 10;

class CategorizeEvents {
 public:
  // Either chain may be null or empty.
  CategorizeEvents(std::shared_ptr<const MessageChain> before,
                   std::shared_ptr<const MessageChain> after, boost::asio::any_io_executor ex);
  // nullopt: go on; an Error: the recipient fails with it.
  using Done = std::function<void(std::optional<Error>)>;
  void before(const CategorizeContext& c, Done done) const;
  void after(const CategorizeContext& c, const std::vector<std::string>& expanded, Done done) const;
  bool has_before() const { return before_ && !before_->empty(); }
  bool has_after() const { return after_ && !after_->empty(); }

 private:
  void run(const std::shared_ptr<const MessageChain>& chain, std::shared_ptr<MessageEvent> ev,
           Done done) const;
  std::shared_ptr<const MessageChain> before_, after_;
  boost::asio::any_io_executor ex_;
};

}  // namespace bh::sinks
