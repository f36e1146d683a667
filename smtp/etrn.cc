// ETRN argument parser, replies and rate limiter: see etrn.h for the contract.

#include "smtp/etrn.h"

#include "common/address.h"

namespace bh::smtp {

namespace {

Error syntax(const char* why) {
  return permanent_error("5.5.4", std::string("Syntax: ETRN [@|#]node (") + why + ")");
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

}  // namespace

Result<EtrnRequest> parse_etrn(std::string_view arg) {
  while (!arg.empty() && arg.front() == ' ') {
    arg.remove_prefix(1);
  }
  while (!arg.empty() && arg.back() == ' ') {
    arg.remove_suffix(1);
  }
  if (arg.empty()) {
    return syntax("no node given");
  }
  EtrnRequest r;
  if (arg.front() == '#') {
    std::string_view name = arg.substr(1);
    if (name.empty() || name.size() > kEtrnMaxQueueName) {
      return syntax("bad queue name");
    }
    for (char ch : name) {
      const auto c = static_cast<unsigned char>(ch);
      if (c < 0x21 || c > 0x7e) {
        return syntax("bad queue name");
      }
    }
    r.kind = EtrnRequest::Kind::kQueue;
    r.name = lower(name);
    return r;
  }
  if (arg.front() == '@') {
    r.kind = EtrnRequest::Kind::kSubdomains;
    arg.remove_prefix(1);
  }
  // normalize_domain() drops one trailing dot, so "example.com." is "example.com" and
  // "example.com.." stays invalid.
  if (arg.empty() || arg.size() > 256) {
    return syntax("bad domain");
  }
  std::string domain = normalize_domain(arg);
  if (!is_valid_domain(domain)) {
    return syntax("bad domain");
  }
  r.name = std::move(domain);
  return r;
}

EtrnReply etrn_reply(const EtrnRequest& request, const EtrnResult& result) {
  const std::string node = request.node();
  EtrnReply r;
  switch (result.outcome) {
    case EtrnOutcome::kStarted:
      r = {250, "2.0.0", "OK, queuing for node " + node + " started"};
      break;
    case EtrnOutcome::kNothingQueued:
      r = {251, "2.0.0", "OK, no messages waiting for node " + node};
      break;
    case EtrnOutcome::kUnable:
      r = {458, "4.3.0",
           "Unable to queue messages for node " + node +
               (result.reason.empty() ? "" : ": " + result.reason)};
      break;
    case EtrnOutcome::kNotAllowed:
      r = {459, "4.7.1",
           "Node " + node + " not allowed: " +
               (result.reason.empty() ? "not a node we queue for" : result.reason)};
      break;
  }
  // The reason comes from our own code, but never let a line break or another control
  // octet reach the wire.
  for (char& c : r.text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      c = ' ';
    }
  }
  return r;
}

EtrnReply etrn_rate_limited_reply(const EtrnRequest& request) {
  const std::string node = request.name.empty() ? std::string("*") : request.node();
  return {459, "4.7.0", "Node " + node + " not allowed: too many ETRN requests, try again later"};
}

EtrnRateLimiter::EtrnRateLimiter(const Clock& clock, EtrnRateLimits limits)
    : clock_(clock), limits_(limits) {}

bool EtrnRateLimiter::allow(std::string_view client) {
  const auto now = clock_.now();
  std::lock_guard lock(mu_);
  if (limits_.max_clients == 0 || limits_.max_requests == 0) {
    ++refused_;
    return false;
  }
  auto it = by_address_.find(std::string(client));
  if (it == by_address_.end()) {
    if (lru_.size() >= limits_.max_clients) {
      by_address_.erase(lru_.back().address);
      lru_.pop_back();
    }
    lru_.push_front(Client{std::string(client), {}, 0});
    it = by_address_.emplace(lru_.front().address, lru_.begin()).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second);  // most recently seen first
  }
  Client& c = *it->second;
  if (c.recent.size() < limits_.max_requests) {
    c.recent.push_back(now);
    return true;
  }
  // The ring is full: the oldest of the last max_requests calls decides.
  const bool ok = now - c.recent[c.next] >= limits_.window;
  c.recent[c.next] = now;
  c.next = (c.next + 1) % c.recent.size();
  if (!ok) {
    ++refused_;
  }
  return ok;
}

std::size_t EtrnRateLimiter::clients() const {
  std::lock_guard lock(mu_);
  return lru_.size();
}

std::uint64_t EtrnRateLimiter::refused() const {
  std::lock_guard lock(mu_);
  return refused_;
}

}  // namespace bh::smtp
