#pragma once
// Event sinks (DESIGN.md §2 sinks/): the arrival event and its ordered chain.
//
// A MessageSink sees one complete message (envelope + the bytes that will be spooled)
// after the end of DATA/BDAT and before the 250: it may change the message (header
// edits, a new body, envelope recipients) and returns a Verdict. A MessageChain runs its
// sinks in the configured order, each under its own deadline; a sink that fails (an
// error, a crash of the external thing behind it, or the deadline) is handled by the
// sink's FailurePolicy instead of its verdict. docs/sinks.md describes the whole picture.
//
// Ownership: the chain owns its sinks (shared with in-flight runs). Threading: run() is
// called on an executor (the connection's); every sink reports back through `done`, on
// any thread; the chain posts the outcome back to the run's executor. A sink must not
// block the thread that calls it: external work (sockets, child processes, plug-in code)
// runs asynchronously or on a worker pool. Error classes: a Verdict of kReject carries a
// transient (4xx) or permanent (5xx) Error; a sink failure is a transient Error.

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "queue/envelope.h"

namespace bh::sinks {

// One message at the arrival event. `message`: the whole message as it will be spooled
// (our Received field first, CRLF line ends, dot-unstuffed).
struct MessageEvent {
  queue::Envelope envelope;  // sender, recipients, client_address, client_helo, id
  std::string message;
  // Set by a sink that quarantines the message (milter SMFIR_QUARANTINE): the reason.
  std::string quarantine;
  // Extra facts of the event (delivery results: EVENT, RECIPIENT, REPLY, NEXT_HOP); a
  // program sink gets each as BH_<NAME>. Names: upper-case letters, digits, '_'.
  std::vector<std::pair<std::string, std::string>> attributes;
};

struct Verdict {
  enum class Kind {
    kContinue,  // next sink
    kReject,    // refuse the message with `error` (4xx or 5xx); the chain ends
    kStop,      // accept as it is now; later sinks are not run
    kDiscard,   // acknowledge with 250 but drop the message; the chain ends
  };
  Kind kind = Kind::kContinue;
  Error error;  // kReject

  static Verdict go_on() { return Verdict{}; }
  static Verdict reject(Error e) { return Verdict{Kind::kReject, std::move(e)}; }
  static Verdict stop() { return Verdict{Kind::kStop, {}}; }
  static Verdict discard() { return Verdict{Kind::kDiscard, {}}; }
};

// What a failed sink (error, timeout) amounts to.
enum class FailurePolicy {
  kTempfail,  // 451 4.7.1: the client tries again later (the default)
  kSkip,      // as if the sink had said kContinue
  kReject,    // 550 5.7.1
};

// A sink gets its own copy of the event for each call (the chain adopts it when the sink
// answers in time), so it may change it from any thread until it calls `done`.
class MessageSink {
 public:
  virtual ~MessageSink() = default;
  using Done = std::function<void(Result<Verdict>)>;
  // Looks at and may change *event; calls `done` exactly once (on any thread), unless
  // cancel() came first, after which `done` may or may not be called. `event` stays
  // alive while the sink holds the pointer.
  virtual void on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor ex,
                          Done done) = 0;
};

struct SinkCounters {
  std::atomic<std::uint64_t> calls{0}, continued{0}, rejected{0}, stopped{0}, discarded{0};
  std::atomic<std::uint64_t> failures{0}, timeouts{0};
};

struct ChainEntry {
  std::string name;
  std::shared_ptr<MessageSink> sink;
  std::chrono::milliseconds deadline{30000};
  FailurePolicy on_failure = FailurePolicy::kTempfail;
  std::shared_ptr<SinkCounters> counters = std::make_shared<SinkCounters>();
};

// The chain's answer for one message.
struct ChainOutcome {
  Verdict verdict;  // kContinue/kStop: accept the (possibly changed) event
  std::shared_ptr<MessageEvent> event;
  std::string decided_by;  // the sink that rejected/discarded/stopped (empty: none)
};

class MessageChain {
 public:
  explicit MessageChain(std::vector<ChainEntry> entries);
  // Runs every sink in order on `event`; `done` is called once, on `ex`.
  void run(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor ex,
           std::function<void(ChainOutcome)> done) const;
  const std::vector<ChainEntry>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<ChainEntry> entries_;
};

// Error for a failed sink under `policy` (kSkip has none: the chain goes on).
Error failure_error(FailurePolicy policy, const std::string& sink, const std::string& why);

}  // namespace bh::sinks
