#pragma once
// RemoteDeliverer: the queue's view of handing mail to another host (SMTP relay to a
// smart host or an MX, later LMTP and other nodes). The queue manager stays the sole
// owner of envelope state: it builds one RemoteJob per (message, next hop) carrying
// every recipient bound for that hop, and applies the per-recipient outcomes it gets
// back. The implementation (smtp/relay_client.h) owns connections, TLS, DNS and
// deadlines; it never touches the queue file except to read the body.
//
// Threading: deliver() may be called from any thread and must not block; `done` is
// called exactly once, from any thread, never from inside deliver().
// Errors: every recipient of the job gets a status. A failure before any recipient was
// tried (no route, DNS, connect, greeting, TLS) is reported for all of them, and also as
// `hop_error` so the scheduler can treat the hop as down.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "queue/envelope.h"

namespace bh::queue {

struct RemoteJob {
  std::string queue_id;
  std::string next_hop;   // scheduler key, e.g. "smarthost:<connector>", "mx:<connector>:<domain>"
  std::string connector;  // connector name in the route table
  std::string domain;     // recipient domain, for MX delivery; empty for smart hosts

  std::string sender;     // reverse-path without <>; empty for the null sender
  BodyType body = BodyType::kUnspecified;
  DsnRet ret = DsnRet::kUnspecified;
  std::string envid;
  bool smtputf8 = false;
  struct Rcpt {
    std::size_t index = 0;  // position in Envelope::recipients
    std::string address;
    std::uint8_t notify = kNotifyUnspecified;
    std::string orcpt;      // "addr-type;address" or empty
    std::string home_server;  // Recipient::home_server: the node it is routed towards
    bool expanded = false;    // added by this node's categorizer (Recipient::added)
  };
  std::vector<Rcpt> recipients;
  // The XEXCH50 blob the message arrived with from a peer (Envelope::xexch50), so the
  // next node hears its hop list; empty when it came from anywhere else.
  std::string xexch50;

  std::string path;       // the queue file; the body is [body_offset, body_offset+body_length)
  std::uint64_t body_offset = 0;
  std::uint64_t body_length = 0;
};

enum class RemoteStatus : std::uint8_t { kDelivered, kTransient, kPermanent };

struct RemoteRecipientResult {
  std::size_t index = 0;      // RemoteJob::Rcpt::index
  RemoteStatus status = RemoteStatus::kTransient;
  std::string enhanced;       // "2.0.0", "4.4.1", "5.1.1", ...
  std::string reply;          // the remote reply ("550 5.1.1 <x>: unknown") or our diagnostic
  // The categorizer's job (next hop "categorizer"): kDelivered means "expanded", into
  // these recipients (address and, for a local mailbox, its folder).
  std::vector<Recipient> expanded;
};

struct RemoteResult {
  std::vector<RemoteRecipientResult> recipients;  // one per job recipient
  std::string remote_mta;                         // host that answered last, for DSNs
  bool dsn_passed = false;  // the server offered DSN, so NOTIFY went along ("relayed" if not)
  std::optional<Error> hop_error;                 // set when the hop itself failed
};

class RemoteDeliverer {
 public:
  using Done = std::function<void(RemoteResult)>;
  virtual ~RemoteDeliverer() = default;
  virtual void deliver(RemoteJob job, Done done) = 0;
};

}  // namespace bh::queue
