#pragma once
// ResolutionCache: the positive/negative cache in front of a slow directory (DESIGN.md
// §3 step 2 "cache first"). What it is: address -> Resolution with a time to live per
// kind (found: positive_ttl; unknown: negative_ttl), least-recently-used eviction at
// max_entries, and counters. Errors are never cached: a directory that was down is asked
// again next time.
//
// Owns: the entries and their LRU order. Time comes from the injected Clock, so tests move
// it by hand. Trust: keys are addresses from the network, already lower-cased by the
// caller; the size bound is what keeps hostile RCPT floods from growing memory.
// Threading: every member is safe from any thread (one mutex; lookups are short).

#include <chrono>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/clock.h"
#include "directory/recipient_directory.h"

namespace bh::directory {

struct ResolutionCacheOptions {
  std::chrono::seconds positive_ttl{300};  // 0: found recipients are not cached
  std::chrono::seconds negative_ttl{60};   // 0: unknown recipients are not cached
  std::size_t max_entries = 10000;         // 0: no cache at all
};

struct ResolutionCacheCounters {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;     // absent or expired
  std::uint64_t expired = 0;    // of the misses: present but past its TTL
  std::uint64_t evictions = 0;  // dropped to stay within max_entries
  std::uint64_t size = 0;       // entries now (expired ones included until touched)
};

class ResolutionCache {
 public:
  ResolutionCache(const Clock& clock, ResolutionCacheOptions options);

  std::optional<Resolution> get(const std::string& key);
  void put(const std::string& key, const Resolution& value);
  void clear();
  ResolutionCacheCounters counters() const;

 private:
  struct Item {
    std::string key;
    Resolution value;
    Clock::time_point expires;
  };
  const Clock& clock_;
  const ResolutionCacheOptions options_;
  mutable std::mutex mu_;
  std::list<Item> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Item>::iterator> index_;
  ResolutionCacheCounters counters_;
};

}  // namespace bh::directory
