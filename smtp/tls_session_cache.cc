#include "smtp/tls_session_cache.h"

#include <ctime>

namespace bh::smtp {

TlsSessionCache::~TlsSessionCache() {
  for (auto& [k, e] : entries_) {
    SSL_SESSION_free(e.session);
  }
}

std::string TlsSessionCache::key(const std::string& target, bool verified) {
  return target + (verified ? " verified" : " unverified");
}

void TlsSessionCache::drop(std::unordered_map<std::string, Entry>::iterator it) {
  SSL_SESSION_free(it->second.session);
  order_.erase(it->second.order);
  entries_.erase(it);
}

SSL_SESSION* TlsSessionCache::get(const std::string& key, std::int64_t now_unix) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    return nullptr;
  }
  const std::int64_t now = now_unix != 0 ? now_unix : static_cast<std::int64_t>(std::time(nullptr));
  SSL_SESSION* s = it->second.session;
  const std::int64_t expires = static_cast<std::int64_t>(SSL_SESSION_get_time(s)) +
                               static_cast<std::int64_t>(SSL_SESSION_get_timeout(s));
  if (now >= expires) {
    drop(it);
    return nullptr;
  }
  SSL_SESSION_up_ref(s);
  return s;
}

void TlsSessionCache::put(const std::string& key, SSL_SESSION* session) {
  if (session == nullptr) {
    return;
  }
  if (SSL_SESSION_is_resumable(session) != 1) {
    SSL_SESSION_free(session);
    return;
  }
  std::lock_guard lock(mu_);
  if (auto it = entries_.find(key); it != entries_.end()) {
    drop(it);
  }
  while (entries_.size() >= capacity_ && !order_.empty()) {
    drop(entries_.find(order_.front()));
  }
  order_.push_back(key);
  entries_.emplace(key, Entry{session, std::prev(order_.end())});
}

void TlsSessionCache::forget(const std::string& key) {
  std::lock_guard lock(mu_);
  if (auto it = entries_.find(key); it != entries_.end()) {
    drop(it);
  }
}

std::size_t TlsSessionCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace bh::smtp
