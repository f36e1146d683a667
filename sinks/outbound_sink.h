#pragma once
// Outbound protocol events (docs/sinks.md): each command line the relay client is about
// to send to a next hop, and each reply that comes back. An OutboundChain runs its sinks
// in order: for a command the first sink that refuses it wins (the command is not sent
// and the session ends with that transient error: every recipient not yet accepted
// with its own reply is retried later); replies are only observed.
//
// The relay client's session (smtp/client_session.h) is sans-I/O and calls its
// ClientConfig::on_command synchronously, so only in-memory sinks take part (built-in
// `outbound_policy`). A sink that takes longer than its deadline has failed: its answer
// is dropped and its failure policy applies (tempfail: 451 4.7.1; skip: the command is
// sent; reject is taken as tempfail, since only a transient stop is allowed here).
// Threading: const, callable from every relay strand at once; sinks keep no per-call
// state.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "sinks/sink.h"

namespace bh::sinks {

struct OutboundCommand {
  std::string_view next_hop;   // the queue's next hop ("smarthost:<connector>", "mx:...")
  std::string_view connector;  // the connector's name
  std::string_view host;       // the server being talked to (address or name)
  std::string_view verb;       // upper-case: EHLO, MAIL, RCPT, DATA, XEXCH50, QUIT, ...
  std::string_view line;       // the command line without CRLF (AUTH arguments masked)
};

struct OutboundReply {
  std::string_view next_hop, connector, host;
  std::string_view verb;  // the command replied to; "CONNECT" for the greeting
  int code = 0;
  std::string_view text;  // the first line's text
};

class OutboundSink {
 public:
  virtual ~OutboundSink() = default;
  // nullopt: send it; else a transient error that ends the session.
  virtual std::optional<Error> on_command(const OutboundCommand&) { return std::nullopt; }
  virtual void on_reply(const OutboundReply&) {}
};

// Refuses `verbs` (e.g. MAIL) to the next hops of `connectors` ("*": every one) with a
// transient `code` / `enhanced` (4xx).
class OutboundPolicySink : public OutboundSink {
 public:
  OutboundPolicySink(std::vector<std::string> connectors, std::vector<std::string> verbs, int code,
                     std::string enhanced);
  std::optional<Error> on_command(const OutboundCommand& c) override;

 private:
  std::vector<std::string> connectors_, verbs_;
  int code_;
  std::string enhanced_;
};

struct OutboundEntry {
  std::string name;
  std::shared_ptr<OutboundSink> sink;
  std::chrono::milliseconds deadline{30000};
  FailurePolicy on_failure = FailurePolicy::kTempfail;
  std::shared_ptr<SinkCounters> counters = std::make_shared<SinkCounters>();
};

class OutboundChain {
 public:
  explicit OutboundChain(std::vector<OutboundEntry> entries) : entries_(std::move(entries)) {}
  std::optional<Error> on_command(const OutboundCommand& c) const;
  void on_reply(const OutboundReply& r) const;
  const std::vector<OutboundEntry>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<OutboundEntry> entries_;
};

}  // namespace bh::sinks
