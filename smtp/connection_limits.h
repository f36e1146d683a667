#pragma once
// Per-client limits the inbound adapter applies before and around a session (sans I/O,
// so they are unit-tested with a ManualClock; smtp/connection.h uses them).
//
// ConnectionRateLimiter: new connections per client IP, a token bucket per IP that holds
// at most `per_minute` tokens and refills `per_minute` tokens per 60 s of the injected
// Clock, so a client may open `per_minute` connections at once and then one every
// 60/per_minute s. Memory: one entry per IP seen in the last minute, at most
// `max_tracked` (past that, new IPs are admitted without being counted: the total
// session limit still holds; a flood of fresh addresses must not lock everyone out).
//
// Threading: admit() may be called from any thread (one mutex).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/clock.h"

namespace bh::smtp {

class ConnectionRateLimiter {
 public:
  ConnectionRateLimiter(std::uint32_t per_minute, const Clock& clock,
                        std::size_t max_tracked = 100000);
  // True: the connection may go on (and used one token). False: over the rate.
  bool admit(const std::string& ip);
  std::size_t tracked() const;

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point last;
  };
  void sweep(Clock::time_point now);  // drops buckets that are full again

  const double capacity_;
  const Clock& clock_;
  const std::size_t max_tracked_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
  Clock::time_point last_sweep_;
};

// The error tarpit's rule (hostile-inputs #56): whether the next reply write waits,
// given the session's client-error count when the previous reply was written.
struct TarpitPolicy {
  std::size_t after_errors = 5;
  std::chrono::milliseconds delay{0};  // 0: off
  bool delays(std::uint64_t errors_before_reply) const {
    return delay.count() > 0 && errors_before_reply >= after_errors;
  }
};

}  // namespace bh::smtp
