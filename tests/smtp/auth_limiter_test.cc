#include <gtest/gtest.h>

#include "smtp/auth_backend.h"

namespace bh::smtp {
namespace {

TEST(AuthFailureLimiter, BlocksAnAddressAfterMaxFailuresWithinTheWindowOnly) {
  ManualClock clock;
  AuthFailureLimiter l(clock, 3, std::chrono::seconds(60));
  for (int i = 0; i < 2; ++i) {
    l.failed("192.0.2.1");
    EXPECT_FALSE(l.blocked("192.0.2.1"));
  }
  l.failed("192.0.2.1");
  EXPECT_TRUE(l.blocked("192.0.2.1"));
  EXPECT_FALSE(l.blocked("192.0.2.2"));  // per address
  clock.advance(std::chrono::seconds(59));
  EXPECT_TRUE(l.blocked("192.0.2.1"));
  clock.advance(std::chrono::seconds(1));  // the oldest failures leave the window
  EXPECT_FALSE(l.blocked("192.0.2.1"));
}

TEST(AuthFailureLimiter, FailuresSpreadOverTimeNeverAddUp) {
  ManualClock clock;
  AuthFailureLimiter l(clock, 3, std::chrono::seconds(60));
  for (int i = 0; i < 20; ++i) {
    l.failed("192.0.2.9");
    clock.advance(std::chrono::seconds(31));
    EXPECT_FALSE(l.blocked("192.0.2.9")) << i;
  }
}

}  // namespace
}  // namespace bh::smtp
