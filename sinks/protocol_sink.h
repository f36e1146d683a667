#pragma once
// Protocol events (docs/sinks.md): every inbound SMTP command before it is performed, and
// every single-line reply before it is sent. A ProtocolChain runs its sinks in order:
// for a command the first sink that answers it wins (the command is then not performed);
// for a reply each sink may rewrite it in turn (same reply class).
//
// Protocol sinks run synchronously on the connection's thread, so only in-memory sinks
// take part (built-in policy and reply_text). A sink that takes longer than its deadline
// has failed: its answer is dropped and its failure policy applies (tempfail: the command
// gets 451 4.7.1; skip: it passes). Threading: on_* may be called from every io thread at
// once; sinks keep no per-call state.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sinks/sink.h"

namespace bh::sinks {

struct CommandEvent {
  std::string_view client_address;
  std::string_view verb;      // upper-case
  std::string_view argument;  // as sent
};

struct ReplyEvent {
  std::string_view client_address;
  std::string_view verb;   // the command replied to; "CONNECT" for the banner
  std::string_view reply;  // "250 2.1.0 Ok"
};

class ProtocolSink {
 public:
  virtual ~ProtocolSink() = default;
  // nullopt: pass; else the reply line that answers the command ("550 5.7.1 text").
  virtual std::optional<std::string> on_command(const CommandEvent&) { return std::nullopt; }
  // nullopt: keep; else the reply line to send instead.
  virtual std::optional<std::string> on_reply(const ReplyEvent&) { return std::nullopt; }
};

struct ProtocolEntry {
  std::string name;
  std::shared_ptr<ProtocolSink> sink;
  std::chrono::milliseconds deadline{30000};
  FailurePolicy on_failure = FailurePolicy::kTempfail;
  std::shared_ptr<SinkCounters> counters = std::make_shared<SinkCounters>();
};

class ProtocolChain {
 public:
  explicit ProtocolChain(std::vector<ProtocolEntry> entries) : entries_(std::move(entries)) {}
  std::optional<std::string> on_command(const CommandEvent& e) const;
  std::optional<std::string> on_reply(const ReplyEvent& e) const;
  const std::vector<ProtocolEntry>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<ProtocolEntry> entries_;
};

// The address inside "FROM:<a@b> ..." / "TO:<a@b> ...": empty when there is none.
std::string path_address(std::string_view argument);

}  // namespace bh::sinks
