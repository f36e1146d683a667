#pragma once
// LmtpDeliverer: the queue::RemoteDeliverer for local mailboxes handed over by LMTP
// (RFC 2033) to one configured server, e.g. Dovecot's lmtp service, instead of written
// as Maildir (config `delivery.lmtp`). The queue manager sends it one job per message
// with next hop "lmtp" and one recipient per local mailbox (queue/queue_manager.h,
// set_local_remote); RCPT TO carries the recipient's address as queued, so the LMTP
// server's user database decides where the mail lands.
//
// One job = one session with the endpoint (TCP "IP:port", or a unix socket), on the per-connection
// pump shared with the SMTP relay (smtp/client_connection.h), driving a ClientSession with lmtp =
// true: LHLO <helo_name>, MAIL, one RCPT per recipient, DATA, and after the final dot one reply per
// accepted recipient (RFC 2033 §4.2). No STARTTLS, no AUTH: LMTP is for a trusted local peer, not
// for a wide-area network (RFC 2033 §5). Connections are reused as in the relay: the next
// job runs on the connection the last one left held open, after an RSET (LmtpOptions).
// A held connection that is gone, refuses the RSET or answers 421 before taking the
// message is replaced by a new one at once (retry_on_new_connection).
//
// Per-recipient results: 2xx delivered, 4xx transient, 5xx permanent (a refused RCPT or a
// refused final reply), each with the server's reply ("550 5.1.1 <x> User doesn't
// exist"). Failures of the hop itself are reported for every recipient and as hop_error:
//   - the queue file cannot be opened: transient 4.3.0, nothing is sent;
//   - connect refused or timed out (or no socket at the path): transient 4.4.1; timeout or lost
//   connection later:
//     transient 4.4.2 for every recipient without its own reply; a malformed reply 4.5.0;
//   - a 5xx greeting or LHLO refusal is made transient (X.Y.Z -> 4.Y.Z, text kept): the
//     local delivery agent refusing to talk says it is broken or misconfigured, not that
//     the mail is undeliverable, so it waits in the queue instead of bouncing. A 5xx to
//     MAIL stays permanent (a fact of the message, as in SMTP).
// remote_mta is "<ip> [<ip>]" ("localhost [unix:<path>]"); timeouts and reply limits are the
// session's, as in the relay.
//
// Threading: deliver() may be called from any thread; it only posts. Each job runs on
// its own strand of the io_context; done() is always posted, exactly once per job while
// the io_context runs. Destroy the deliverer after the io_context stopped running.
// Concurrency is the queue's (queue.max_per_hop bounds the "lmtp" hop).

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "queue/remote_deliverer.h"
#include "smtp/client_connection.h"
#include "smtp/client_session.h"
#include "smtp/relay_client.h"

namespace bh::smtp {

struct LmtpOptions {
  std::string ip;  // the LMTP server: an IP literal (IPv6 without brackets) and a port
  std::uint16_t port = 24;
  std::string unix_path;  // or, when set, its unix socket (absolute path); ip/port unused
  std::string helo_name = "localhost";  // LHLO name: the node's hostname
  ClientTimeouts timeouts;
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(30)};
  ReplyLimits reply_limits;
  // Connection reuse (smtp/relay_client.h, docs/smtp-client.md): a connection whose
  // server is in step after a message waits up to connection_idle for the next one, which
  // runs on it after an RSET; at most connection_max_messages per connection (<= 1: one
  // message per connection) and connection_max_idle waiting.
  std::chrono::milliseconds connection_idle{std::chrono::seconds(5)};
  std::size_t connection_max_messages = 100;
  std::size_t connection_max_idle = 16;
  // Called on the job's strand after each connection; must not block.
  std::function<void(const RelayAttempt&)> on_attempt;
};

struct LmtpCounters {
  std::atomic<std::uint64_t> jobs{0}, connect_failures{0}, delivered{0}, transient{0}, permanent{0};
  // Sessions run on a held connection; held connections found gone or refusing (the
  // message then went on a new connection).
  std::atomic<std::uint64_t> connections_reused{0}, reuse_failures{0};
};

// ---- Pure pieces (unit-tested in tests/smtp/lmtp_deliverer_test.cc) ----

// The job's recipients with the session's per-recipient outcomes, with the LMTP rule for
// a refused greeting / LHLO (made transient, above).
queue::RemoteResult lmtp_result(const ClientResult& result,
                                const std::vector<queue::RemoteJob::Rcpt>& recipients,
                                std::string remote_mta);
// The session configuration for LMTP from the options.
ClientConfig lmtp_client_config(const LmtpOptions& options);

class LmtpDeliverer final : public queue::RemoteDeliverer {
 public:
  // `io` must outlive the deliverer.
  LmtpDeliverer(boost::asio::io_context& io, LmtpOptions options);
  ~LmtpDeliverer() override;
  LmtpDeliverer(const LmtpDeliverer&) = delete;
  LmtpDeliverer& operator=(const LmtpDeliverer&) = delete;

  void deliver(queue::RemoteJob job, Done done) override;

  const LmtpCounters& counters() const;
  // Connections held open for the next message.
  std::size_t held_connections() const;
  // At shutdown: the held connections say QUIT (HeldConnections::quit_all); the number
  // whose socket is still open.
  void quit_held();
  std::size_t closing_held() const;

  struct Shared;  // lmtp_deliverer.cc

 private:
  std::shared_ptr<Shared> shared_;
};

}  // namespace bh::smtp
