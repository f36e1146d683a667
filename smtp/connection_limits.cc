#include "smtp/connection_limits.h"

#include <algorithm>

namespace bh::smtp {

namespace {
constexpr std::chrono::seconds kWindow{60};
}  // namespace

ConnectionRateLimiter::ConnectionRateLimiter(std::uint32_t per_minute, const Clock& clock,
                                             std::size_t max_tracked)
    : capacity_(static_cast<double>(per_minute)),
      clock_(clock),
      max_tracked_(max_tracked),
      last_sweep_(clock.now()) {}

void ConnectionRateLimiter::sweep(Clock::time_point now) {
  last_sweep_ = now;
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    // A bucket idle for a whole window is full again: the same as no entry.
    if (now - it->second.last >= kWindow) {
      it = buckets_.erase(it);
    } else {
      ++it;
    }
  }
}

bool ConnectionRateLimiter::admit(const std::string& ip) {
  std::lock_guard lock(mu_);
  const auto now = clock_.now();
  if (now - last_sweep_ >= kWindow || now < last_sweep_) {
    sweep(now);
  }
  auto it = buckets_.find(ip);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_tracked_) {
      sweep(now);
      if (buckets_.size() >= max_tracked_) {
        return true;  // untracked (see the header)
      }
    }
    it = buckets_.emplace(ip, Bucket{capacity_, now}).first;
  } else {
    // A clock that stepped back refills nothing.
    auto elapsed = std::max(Clock::time_point::duration::zero(), now - it->second.last);
    double secs = std::chrono::duration<double>(elapsed).count();
    it->second.tokens = std::min(capacity_, it->second.tokens + secs * capacity_ / 60.0);
    it->second.last = now;
  }
  if (it->second.tokens < 1.0) {
    return false;
  }
  it->second.tokens -= 1.0;
  return true;
}

std::size_t ConnectionRateLimiter::tracked() const {
  std::lock_guard lock(mu_);
  return buckets_.size();
}

}  // namespace bh::smtp
