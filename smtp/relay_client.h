#pragma once
// SmtpRelay: the queue::RemoteDeliverer over SMTP (queue/remote_deliverer.h). A thin
// Asio adapter around ClientSession (smtp/client_session.h). Each attempt runs on the
// shared per-connection pump (smtp/client_connection.h), which connects, reads, writes,
// runs the TLS handshake, streams the body from the queue file and arms the one deadline
// the session asks for; every protocol decision is the session's. This file plans the
// targets, reads the credentials and the queue file, and turns outcomes into results.
//
// One job = one message to one next hop:
//   1. The connector is looked up by name in the current RouteTable (the table source is
//      asked once per job, so a swapped table applies to the next job).
//   2. Targets: a smart host connector's hosts in the order written (IP literals; host
//      names are refused as a configuration error, transient 4.3.5, until a plain A/AAAA
//      resolver exists), or for a DNS MX connector MxResolver::resolve(domain): MX hosts
//      by preference, each host's addresses in order (IPv4 first).
//   3. Each target is tried in turn, at most RelayOptions::max_attempts addresses per job.
//      The next target is tried when the attempt failed before MAIL was sent: connect
//      refused or timed out (4.4.1), greeting or EHLO 4xx or 5xx, TLS required but not
//      offered (4.7.4), handshake failure (4.7.5), AUTH failure (4.7.8), a timeout or a
//      lost connection before MAIL (4.4.2). RFC 5321 §5.1 asks for the next MX on a
//      failure to connect or a 4xx; a 5xx greeting also moves on (as Postfix does): one
//      broken MX must not bounce mail another MX would take. Once MAIL was sent the
//      attempt's outcome is final for the job (the queue retries transient recipients):
//      a server that saw the transaction may have accepted part of it. A permanent error
//      decided before MAIL from the server's capabilities (SIZE 5.3.4, 8BITMIME 5.6.3,
//      SMTPUTF8 5.6.7) is final as well: it is a fact of the message.
//   4. When every target failed, the job gets the last transient failure if there was
//      one (an unreachable host might have taken the mail), else the last failure.
//
// Per-recipient results: delivered / transient / permanent with the server's code,
// enhanced code and text ("550 5.1.1 <x>: unknown"), or our diagnostic ("4.4.1 connect
// to ..."). remote_mta is "host [ip]" of the server that gave the final answer.
//
// TLS sessions are kept per target (smtp/tls_session_cache.h): the next connection to
// the same server resumes one, so only the first handshake to it is a full one.
//
// Connections are reused (connection caching, as Exchange's and Postfix's SMTP clients
// do): a session that ends with the server in step leaves its connection held open
// (HeldConnection), and the next job for the same target, with the same TLS policy,
// verification, credentials and source address, runs on it after an RSET, skipping the
// connect, greeting, EHLO, TLS handshake and login. A held connection is idle for at most
// RelayOptions::connection_idle (then it QUITs), carries at most connection_max_messages
// messages, and at most connection_max_idle_per_target wait per target and
// connection_max_idle_total in all (more are closed). A reused connection that fails
// before MAIL (the server closed it, or refused the RSET), or whose server closes the
// channel with a 421 before taking the message, does not count as an attempt: the same
// target is tried again at once on a new connection.
//
// TLS (connector.settings.tls): opportunistic, required or never, through the session's
// TlsPolicy. The handshake (client, TLS 1.2 or newer, SNI with the host name, never an IP
// literal) runs on an asio::ssl::stream over the connected socket. With tls_verify the
// chain must verify against RelayOptions::tls_ca_file (system default paths when empty)
// and the certificate must name the MX / smart host name, or the IP for an IP literal
// smart host; a failure is the session's transient 4.7.5, with OpenSSL's reason appended.
//
// AUTH: connector.settings.auth_username and the first line of auth_password_file
// (read per job, so a rotated secret applies to the next job; no CR/LF kept). A missing
// or unreadable file is transient 4.7.0 for the whole job, and nothing is sent.
//
// Queue file: opened once per job (transient 4.3.0 when it cannot be), before any
// connection; the body octets [body_offset, body_offset + body_length) are read with
// pread in chunks of at most 64 KiB when the session asks for them. A short or failing
// read ends the attempt: transient 4.3.0 for every recipient not yet delivered.
//
// Concurrency: at most max_concurrent_jobs jobs hold a slot (DNS, connect, session) at
// a time; further jobs wait in FIFO order. The slot is given back when done() is called;
// the QUIT exchange that may follow is bounded by the command timeout.
//
// Threading: deliver() may be called from any thread; it only posts. Each job runs on a
// strand of the io_context; resolver answers (another thread) are posted back to it.
// done() is always posted, never called inside deliver(), exactly once per job while the
// io_context runs. Destroy the relay after the io_context stopped running; jobs still
// waiting then are dropped without done().
//
// Errors from create(): permanent, empty enhanced code, naming the CA file (config error).

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "queue/remote_deliverer.h"
#include "routing/connector.h"
#include "routing/mx_resolver.h"
#include "routing/route_table.h"
#include "smtp/client_connection.h"
#include "smtp/client_session.h"

namespace bh::smtp {

// One attempt, reported to RelayOptions::on_attempt (logging, tests).
struct RelayAttempt {
  std::string queue_id;
  std::string target;  // "host[ip]:port"
  bool connected = false;
  bool tls = false;
  bool tls_resumed = false;  // an abbreviated handshake (smtp/tls_session_cache.h)
  bool reused = false;       // on a connection an earlier job left held open
  bool authenticated = false;
  bool mail_sent = false;
  std::optional<Error> error;  // the hop error, or the connect failure
};

// Where an attempt's commands go (RelayOptions::on_command).
struct OutboundHop {
  std::string next_hop;   // RemoteJob::next_hop
  std::string connector;  // the connector's name
  std::string host;       // RelayTarget::host
};

struct RelayOptions {
  std::string helo_name = "localhost";
  ClientTimeouts timeouts;
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(30)};
  std::string tls_ca_file;  // PEM CA bundle for tls_verify connectors; "" = system paths
  ReplyLimits reply_limits;
  std::size_t max_concurrent_jobs = 100;
  std::size_t max_attempts = 10;  // addresses tried per job
  bool use_chunking = true;       // BDAT when the server offers CHUNKING
  bool auth_without_tls = false;  // test setups only: AUTH over plaintext
  // Connection reuse (see above). connection_max_messages <= 1: one message per
  // connection, nothing is held.
  std::chrono::milliseconds connection_idle{std::chrono::seconds(5)};
  std::size_t connection_max_messages = 100;
  std::size_t connection_max_idle_per_target = 16;
  std::size_t connection_max_idle_total = 256;  // over all targets (descriptors, peers' slots)
  // GSSAPI connectors (ConnectorSettings::auth_mechanism): one exchange with the server
  // whose principal host is the argument. Unset: such connectors fail with 4.7.0.
  std::function<std::unique_ptr<ClientSasl>(const std::string& host)> gssapi;
  // This node in the organization (link_state): to the other nodes (internal
  // connectors) every message goes with XEXCH50 properties (smtp/xexch50_props.h): the
  // hop list it arrived with plus `node_id`, and per recipient its home server and
  // whether this node's categorizer produced it. Empty node_id: never.
  std::string node_id;
  std::string organization;
  // Internal connectors connect from this IP (this node's SMTP address); empty: any.
  std::string internal_source_ip;
  // X-LINK2STATE between bridgeheads of different routing groups (internal connectors
  // only): the payload for the node behind `connector` ("" for none: same group), and
  // what to do with the table that node sent back in its 250. Both on the job's strand.
  std::function<std::string(const std::string& connector)> link2state_for;
  std::function<void(const std::string& connector, std::string payload)> on_link2state_reply;
  // Called on the job's strand after each attempt; must not block.
  std::function<void(const RelayAttempt&)> on_attempt;
  // Outbound command events (ClientConfig::on_command / on_reply, sinks/outbound_sink.h)
  // for every attempt, told which next hop, connector and server they are for. Called on
  // the job's strand; must not block. Unset: none.
  std::function<std::optional<Error>(const OutboundHop& hop, std::string_view verb,
                                     std::string_view line)>
      on_command;
  std::function<void(const OutboundHop& hop, std::string_view verb, int code,
                     std::string_view text)>
      on_reply;
};

struct RelayCounters {
  std::atomic<std::uint64_t> jobs{0}, waiting{0}, attempts{0}, connect_failures{0}, tls_sessions{0},
      tls_resumed{0}, delivered{0}, transient{0}, permanent{0};
  // Sessions run on a held connection; held connections found gone when taken up.
  std::atomic<std::uint64_t> connections_reused{0}, reuse_failures{0};
};

// ---- Pure pieces (unit-tested in tests/smtp/relay_client_test.cc) ----

// Smart host targets in the order written. A host name (not an IP literal) is a
// configuration error: transient 4.3.5 naming the connector and the host.
Result<std::vector<RelayTarget>> smart_host_targets(const routing::Connector& connector);
// MX hosts in the resolver's order, each address in order, on `port`.
std::vector<RelayTarget> mx_targets(const std::vector<routing::MxHost>& hosts, std::uint16_t port);
// The XEXCH50 properties of `job` for the next node (see RelayOptions::node_id): the hop
// list of job.xexch50 (when it decodes) with `node_id` appended, or only `node_id` when
// every recipient of the job was made by this node's categorizer (a new leg: a group's
// members may pass nodes the group passed on its way to its expansion server);
// categorized when the message arrived categorized or this node expanded one of its
// recipients.
Xexch50Props next_hop_properties(const queue::RemoteJob& job, const std::string& node_id,
                                 const std::string& organization);
// What node/ can check at config load: what smart_host_targets() would refuse.
Result<void> check_connector(const routing::Connector& connector);

// Whether a finished attempt ends the job or the next target is tried (rules above).
bool try_next_target(const ClientResult& result);

// The job's recipients with the session's outcomes (in job order).
queue::RemoteResult to_remote_result(const ClientResult& result,
                                     const std::vector<queue::RemoteJob::Rcpt>& recipients,
                                     std::string remote_mta);
// Every recipient fails with `error`, which is also the hop error.
queue::RemoteResult hop_failure(const std::vector<queue::RemoteJob::Rcpt>& recipients,
                                const Error& error, std::string remote_mta);
// The session's envelope for a job.
OutboundMessage outbound_message(const queue::RemoteJob& job);
// The first line of a password file, without CR/LF; transient 4.7.0 when the file is
// missing, unreadable, empty or over 4 KiB.
Result<std::string> read_password_file(const std::string& path);

class SmtpRelay final : public queue::RemoteDeliverer {
 public:
  using TableSource = std::function<std::shared_ptr<const routing::RouteTable>()>;

  // `io` and `resolver` (may be null: DNS MX jobs then fail with transient 4.3.5) must
  // outlive the relay. Loads the CA file when one is given.
  static Result<std::unique_ptr<SmtpRelay>> create(boost::asio::io_context& io, TableSource tables,
                                                   routing::MxResolver* resolver,
                                                   RelayOptions options);
  ~SmtpRelay() override;
  SmtpRelay(const SmtpRelay&) = delete;
  SmtpRelay& operator=(const SmtpRelay&) = delete;

  void deliver(queue::RemoteJob job, Done done) override;
  // A session with no mail through internal connector `connector`: log in and exchange
  // X-LINK2STATE (RelayOptions::link2state_for), then QUIT (the periodic sync between
  // routing groups when no mail flows). `done` gets the hop's result (no recipients).
  void sync_link_state(const std::string& connector, Done done);

  const RelayCounters& counters() const;
  // Connections held open for the next message (usable ones only).
  std::size_t held_connections() const;
  // At shutdown: the held connections say QUIT (HeldConnections::quit_all); the number
  // whose socket is still open.
  void quit_held();
  std::size_t closing_held() const;

  struct Shared;  // relay_client.cc

 private:
  explicit SmtpRelay(std::shared_ptr<Shared> shared);
  std::shared_ptr<Shared> shared_;
};

}  // namespace bh::smtp
