#pragma once
// EtrnRequest / EtrnOutcome: the value types of a remote queue run (RFC 1985 ETRN)
// between smtp/ (smtp/etrn.h parses the command into an EtrnRequest and turns an
// EtrnOutcome into the reply) and the queue manager (QueueManager::etrn() carries it
// out). Here so that queue/ never depends on smtp/. Plain values, no behaviour.

#include <cstddef>
#include <string>

namespace bh::queue {

struct EtrnRequest {
  enum class Kind {
    kDomain,      // "ETRN example.com": recipients in exactly that domain
    kSubdomains,  // "ETRN @example.com": that domain and every domain below it
    kQueue,       // "ETRN #name": the next hop (queue) of that name
  };
  Kind kind = Kind::kDomain;
  // Lower-cased, without the '@' or '#': a valid RFC 5321 domain (trailing dot removed)
  // for kDomain / kSubdomains; a next-hop name for kQueue (compared ignoring case).
  std::string name;
  // As the client would see it in the reply: "example.com", "@example.com", "#name".
  std::string node() const;
};

enum class EtrnOutcome {
  kStarted,        // 250 "OK, queuing for node <x> started" (RFC 1985 §5)
  kNothingQueued,  // 251 "OK, no messages waiting for node <x>"
  kUnable,         // 458 "Unable to queue messages for node <x>": mail waits but cannot go
                   //     now (its next hop is frozen by the operator, the queue is stopping)
  kNotAllowed,     // 459 "Node <x> not allowed: <reason>": not a node we queue for
};

struct EtrnResult {
  EtrnOutcome outcome = EtrnOutcome::kNothingQueued;
  // Messages made due now or already on their way (for logs and counters; the reply
  // does not reveal it: DESIGN.md §4.1).
  std::size_t messages = 0;
  std::string reason;  // kNotAllowed / kUnable: why, safe for the reply text
};

inline std::string EtrnRequest::node() const {
  switch (kind) {
    case Kind::kDomain:
      return name;
    case Kind::kSubdomains:
      return "@" + name;
    case Kind::kQueue:
      return "#" + name;
  }
  return name;
}

}  // namespace bh::queue
