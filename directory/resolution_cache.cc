#include "directory/resolution_cache.h"

namespace bh::directory {

ResolutionCache::ResolutionCache(const Clock& clock, ResolutionCacheOptions options)
    : clock_(clock), options_(options) {}

std::optional<Resolution> ResolutionCache::get(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) {
    counters_.misses++;
    return std::nullopt;
  }
  if (clock_.now() >= it->second->expires) {
    counters_.misses++;
    counters_.expired++;
    lru_.erase(it->second);
    index_.erase(it);
    counters_.size = index_.size();
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  counters_.hits++;
  return it->second->value;
}

void ResolutionCache::put(const std::string& key, const Resolution& value) {
  const auto ttl =
      value.kind == RecipientKind::kUnknown ? options_.negative_ttl : options_.positive_ttl;
  if (options_.max_entries == 0 || ttl.count() <= 0) {
    return;
  }
  std::lock_guard lock(mu_);
  const auto expires = clock_.now() + ttl;
  if (auto it = index_.find(key); it != index_.end()) {
    it->second->value = value;
    it->second->expires = expires;
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  while (index_.size() >= options_.max_entries) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
    counters_.evictions++;
  }
  lru_.push_front(Item{key, value, expires});
  index_[key] = lru_.begin();
  counters_.size = index_.size();
}

void ResolutionCache::clear() {
  std::lock_guard lock(mu_);
  lru_.clear();
  index_.clear();
  counters_.size = 0;
}

ResolutionCacheCounters ResolutionCache::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

}  // namespace bh::directory
