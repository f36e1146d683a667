#pragma once
// Injectable time source (STYLE.md principle 6). Production code takes a Clock& built in
// node/; tests pass a ManualClock and move it by hand.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>

namespace bh {

class Clock {
 public:
  using time_point = std::chrono::system_clock::time_point;
  virtual ~Clock() = default;
  virtual time_point now() const = 0;
};

class SystemClock final : public Clock {
 public:
  time_point now() const override { return std::chrono::system_clock::now(); }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(time_point start = time_point{std::chrono::seconds{1'700'000'000}})
      : now_(start.time_since_epoch().count()) {}
  time_point now() const override { return time_point{time_point::duration{now_.load()}}; }
  void advance(std::chrono::nanoseconds d) {
    now_ += std::chrono::duration_cast<time_point::duration>(d).count();
  }

 private:
  std::atomic<time_point::rep> now_;
};

// Injectable randomness: queue ids and anything else that must not collide.
class Random {
 public:
  virtual ~Random() = default;
  virtual std::uint64_t next() = 0;
};

class SystemRandom final : public Random {
 public:
  SystemRandom() : gen_(std::random_device{}()) {}
  std::uint64_t next() override { return gen_(); }

 private:
  std::mt19937_64 gen_;
};

}  // namespace bh
