// TlsSessionCache: keys kept apart, sessions handed out with their own reference,
// expiry, sessions that cannot be resumed, the capacity bound, forget.

#include "smtp/tls_session_cache.h"

#include <gtest/gtest.h>

#include <string>

namespace bh::smtp {
namespace {

// A resumable session (it has a session id) made at `time` for `timeout` seconds.
SSL_SESSION* session(const std::string& id, long time = 1000, long timeout = 300) {
  SSL_SESSION* s = SSL_SESSION_new();
  EXPECT_EQ(SSL_SESSION_set1_id(s, reinterpret_cast<const unsigned char*>(id.data()),
                                static_cast<unsigned>(id.size())),
            1);
  SSL_SESSION_set_time(s, time);
  SSL_SESSION_set_timeout(s, timeout);
  return s;
}

std::string id_of(SSL_SESSION* s) {
  unsigned len = 0;
  const unsigned char* p = SSL_SESSION_get_id(s, &len);
  return std::string(reinterpret_cast<const char*>(p), len);
}

TEST(TlsSessionCache, KeysAreTheTargetAndItsVerification) {
  TlsSessionCache c;
  const auto verified = TlsSessionCache::key("mx.example[192.0.2.1]:25", true);
  const auto plain = TlsSessionCache::key("mx.example[192.0.2.1]:25", false);
  EXPECT_NE(verified, plain);
  c.put(plain, session("plain"));
  EXPECT_EQ(c.get(verified, 1001), nullptr);  // made without verification: never offered to it
  EXPECT_EQ(c.get(TlsSessionCache::key("mx.example[192.0.2.2]:25", false), 1001), nullptr);
  SSL_SESSION* s = c.get(plain, 1001);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(id_of(s), "plain");
  SSL_SESSION_free(s);  // the caller's reference; the cache keeps its own
  SSL_SESSION* again = c.get(plain, 1002);
  ASSERT_NE(again, nullptr);
  SSL_SESSION_free(again);
  EXPECT_EQ(c.size(), 1u);
  // A newer session for the same key replaces the older one.
  c.put(plain, session("newer"));
  SSL_SESSION* n = c.get(plain, 1003);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(id_of(n), "newer");
  SSL_SESSION_free(n);
  EXPECT_EQ(c.size(), 1u);
}

TEST(TlsSessionCache, AnExpiredSessionIsNotOfferedAndGoes) {
  TlsSessionCache c;
  c.put("k", session("s", 1000, 300));
  SSL_SESSION* s = c.get("k", 1299);
  ASSERT_NE(s, nullptr);
  SSL_SESSION_free(s);
  EXPECT_EQ(c.get("k", 1300), nullptr);
  EXPECT_EQ(c.size(), 0u);
}

TEST(TlsSessionCache, ASessionThatCannotBeResumedIsNotKept) {
  TlsSessionCache c;
  c.put("k", SSL_SESSION_new());  // no id, no ticket
  EXPECT_EQ(c.size(), 0u);
  c.put("k", nullptr);
  EXPECT_EQ(c.size(), 0u);
}

TEST(TlsSessionCache, TheCapacityDropsTheOldestStoredAndForgetDropsOne) {
  TlsSessionCache c(2);
  c.put("a", session("a"));
  c.put("b", session("b"));
  c.put("a", session("a2"));  // stored again: now the newest
  c.put("c", session("c"));   // over capacity: b, stored longest ago, goes
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(c.get("b", 1001), nullptr);
  for (const char* k : {"a", "c"}) {
    SSL_SESSION* s = c.get(k, 1001);
    ASSERT_NE(s, nullptr) << k;
    SSL_SESSION_free(s);
  }
  c.forget("a");
  EXPECT_EQ(c.get("a", 1001), nullptr);
  EXPECT_EQ(c.size(), 1u);
}

}  // namespace
}  // namespace bh::smtp
