#pragma once
// ETRN (RFC 1985), the server side's pure parts: the argument parser, the reply for each
// queue outcome, and a per-client rate limiter. The queue run itself is
// QueueManager::etrn() (queue/queue_manager.h); the session wires the three together:
//   limiter.allow(ip) ? (parse_etrn(arg) -> queue.etrn(req) -> etrn_reply(req, result))
//                     : etrn_rate_limited_reply(req)
//
// Grammar (RFC 1985 §3, the argument after "ETRN "; surrounding SPs are ignored):
//   "ETRN" SP [ "@" / "#" ] node
//   - a domain (RFC 5321 syntax, common/address.h; one trailing dot allowed): mail for
//     exactly that domain;
//   - "@" domain: that domain and every domain below it;
//   - "#" queue name: 1..255 printable ASCII octets (no SP, no controls): a next hop.
//   Address literals, SMTPUTF8 domains, several nodes, and an empty argument are syntax
//   errors (permanent 5.5.4: the caller answers 501 5.5.4; hostile-inputs #57).
// Names are lower-cased.
//
// Trust: the argument is hostile; only validated names ever reach the reply text.
// Threading: the functions are pure; EtrnRateLimiter is shared by every session and
// locks internally.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "queue/etrn_request.h"

namespace bh::smtp {

using queue::EtrnOutcome;
using queue::EtrnRequest;
using queue::EtrnResult;

inline constexpr std::size_t kEtrnMaxQueueName = 255;

// Errors: permanent 5.5.4 (501) with a "Syntax: ..." message.
Result<EtrnRequest> parse_etrn(std::string_view arg);

struct EtrnReply {
  int code = 0;          // 250, 251, 458, 459
  std::string enhanced;  // RFC 3463 code for ENHANCEDSTATUSCODES sessions
  std::string text;      // RFC 1985 §5 text, without code; no CR/LF
};
// 250 2.0.0 "OK, queuing for node <x> started"
// 251 2.0.0 "OK, no messages waiting for node <x>"
// 458 4.3.0 "Unable to queue messages for node <x>[: <reason>]"
// 459 4.7.1 "Node <x> not allowed: <reason>"
EtrnReply etrn_reply(const EtrnRequest& request, const EtrnResult& result);
// 459 4.7.0 "Node <x> not allowed: too many ETRN requests, try again later"
// (`request` may be empty when the limiter refused before parsing: then "<x>" is "*").
EtrnReply etrn_rate_limited_reply(const EtrnRequest& request);

// At most `max_requests` ETRN commands per `window` per client address (a sliding
// window on the injected clock), for at most `max_clients` addresses at a time: past
// that the client seen least recently is forgotten (memory stays bounded whatever the
// number of addresses; a forgotten client starts afresh). Every call counts, allowed or
// not, so a client that keeps flooding stays refused.
struct EtrnRateLimits {
  std::size_t max_requests = 5;
  std::chrono::seconds window{60};
  std::size_t max_clients = 4096;
};

class EtrnRateLimiter {
 public:
  explicit EtrnRateLimiter(const Clock& clock, EtrnRateLimits limits = {});
  EtrnRateLimiter(const EtrnRateLimiter&) = delete;
  EtrnRateLimiter& operator=(const EtrnRateLimiter&) = delete;

  // Records one ETRN from `client` (its IP literal) and says whether it may proceed.
  bool allow(std::string_view client);
  std::size_t clients() const;    // addresses remembered now
  std::uint64_t refused() const;  // calls answered false, in total

 private:
  struct Client {
    std::string address;
    std::vector<Clock::time_point> recent;  // ring of the last max_requests calls
    std::size_t next = 0;                   // ring position of the oldest
  };
  const Clock& clock_;
  EtrnRateLimits limits_;
  mutable std::mutex mu_;
  std::list<Client> lru_;  // most recently seen first
  std::unordered_map<std::string, std::list<Client>::iterator> by_address_;
  std::uint64_t refused_ = 0;
};

}  // namespace bh::smtp
