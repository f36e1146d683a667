#pragma once
// Helpers shared by the sink-chain tests.

#include <chrono>
#include <memory>
#include <string>

#include "sinks/sink.h"

namespace bh::sinks::testing {

// An entry of any sink chain (ChainEntry, OutboundEntry, ProtocolEntry: name, sink,
// on_failure, deadline) for `s`.
template <class Entry, class Sink>
Entry make_entry(std::string name, std::shared_ptr<Sink> s, FailurePolicy p,
                 std::chrono::milliseconds deadline) {
  Entry e;
  e.name = std::move(name);
  e.sink = std::move(s);
  e.on_failure = p;
  e.deadline = deadline;
  return e;
}

// A message chain entry for `s`, with the failure policy and deadline the tests use by
// default.
inline ChainEntry entry(std::string name, std::shared_ptr<MessageSink> s,
                        FailurePolicy p = FailurePolicy::kTempfail,
                        std::chrono::milliseconds deadline = std::chrono::milliseconds(2000)) {
  return make_entry<ChainEntry>(std::move(name), std::move(s), p, deadline);
}

}  // namespace bh::sinks::testing
