#pragma once
// Helpers shared by the sink-chain tests.

#include <chrono>
#include <memory>
#include <string>

#include "sinks/sink.h"

namespace bh::sinks::testing {

// A chain entry for `s`, with the failure policy and deadline the tests use by default.
inline ChainEntry entry(std::string name, std::shared_ptr<MessageSink> s,
                        FailurePolicy p = FailurePolicy::kTempfail,
                        std::chrono::milliseconds deadline = std::chrono::milliseconds(2000)) {
  ChainEntry e;
  e.name = std::move(name);
  e.sink = std::move(s);
  e.on_failure = p;
  e.deadline = deadline;
  return e;
}

}  // namespace bh::sinks::testing
