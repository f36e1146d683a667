#pragma once
// The thin Asio adapter around ServerSession (DESIGN.md §2 smtp/, STYLE.md principle 1).
//
// Connection performs the session's Actions: socket reads and writes, the per-line
// deadline, spool writes and commits through queue::MessageStore, recipient lookups
// through directory::RecipientDirectory. It makes no protocol decision of its own.
// Listener accepts on one endpoint, spreads connections over the io_contexts and
// enforces the total and per-IP session limits (hostile-inputs #62) and the per-IP
// connection rate. A listener with `implicit_tls` (RFC 8314, port 465) runs the TLS
// handshake before the session starts. The error tarpit (hostile #56) delays replies
// once a session has made enough client errors; the session still decides about
// max_errors.
//
// Threading: a Connection lives on the io_context its socket was accepted onto; answers
// from the store (commit, on its committer thread) and the directory are posted back to
// it. Listener counters are shared across threads (atomics + a mutex for the IP map).

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "directory/recipient_directory.h"
#include "queue/message_store.h"
#include "smtp/auth_backend.h"
#include "smtp/odmr.h"
#include "smtp/connection_limits.h"
#include "smtp/server_session.h"

namespace bh::smtp {

struct ListenerCounters {
  std::atomic<std::uint64_t> accepted{0}, rejected_total{0}, rejected_per_ip{0}, active{0};
  std::atomic<std::uint64_t> messages{0}, commit_failures{0}, timeouts{0};
  std::atomic<std::uint64_t> tls_sessions{0}, tls_failures{0};
  // Refused by smtp.max_connections_per_ip_per_minute; replies held back by the tarpit.
  std::atomic<std::uint64_t> rejected_rate{0}, tarpit_delays{0};
  // AUTH / X-EXPS outcomes; refused: the address was over its failure limit.
  std::atomic<std::uint64_t> auth_successes{0}, auth_failures{0}, auth_refused{0};
  std::atomic<std::uint64_t> atrn_turns{0}, etrn_runs{0};
};

// Arrival sinks (sinks/, wired in node/): what they decided about one complete message.
struct MessageFilterResult {
  enum class Kind { kAccept, kReject, kDiscard };
  Kind kind = Kind::kAccept;
  Error error;               // kReject: the reply (4xx or 5xx; reply_code if chosen)
  queue::Envelope envelope;  // kAccept: possibly changed (sender, recipients)
  std::string message;       // kAccept: what to spool instead (changed headers/body)
  std::string hold;          // kAccept: quarantined for this reason (empty: not held)
};
// Called on the connection's thread with the envelope and the whole message at the end
// of DATA/BDAT, before it is committed, and the connection's executor (for the filter's
// own timers and sockets); `done` may be called on any thread.
using MessageFilter = std::function<void(queue::Envelope envelope, std::string message,
                                         std::function<void(MessageFilterResult)> done,
                                         boost::asio::any_io_executor ex)>;

struct ConnectionServices {
  queue::MessageStore* store = nullptr;
  directory::RecipientDirectory* directory = nullptr;
  // Server TLS for STARTTLS (RFC 3207) and implicit TLS (RFC 8314): each connection
  // takes the current context when it is accepted and keeps it to its end (a reload
  // changes only later connections). Unset: no TLS, STARTTLS is not offered.
  std::function<std::shared_ptr<boost::asio::ssl::context>()> tls;
  std::chrono::milliseconds tls_handshake_timeout{std::chrono::seconds(30)};
  // RFC 8314 implicit TLS (port 465): the handshake first, within tls_handshake_timeout,
  // then the session starts with TLS active. Needs `tls`.
  bool implicit_tls = false;
  // New connections per client IP per minute, shared by all listeners of a node; null:
  // no limit. Over it: 421 4.7.0 and close (on an implicit-TLS listener: close).
  std::shared_ptr<ConnectionRateLimiter> rate_limiter;
  // Error tarpit (hostile #56): once a session has made `tarpit_after_errors` client
  // errors, each further reply write waits `tarpit_delay` (reading pauses meanwhile).
  // 0 ms: off.
  std::size_t tarpit_after_errors = 5;
  std::chrono::milliseconds tarpit_delay{0};
  const Clock* clock = nullptr;
  // Domains this node accepts mail for (the directory decides about each mailbox).
  std::function<bool(std::string_view domain)> is_local_domain;
  // Whether a client at `client_ip` may send to the non-local `domain` (relay policy:
  // trusted networks, relay domains). Unset or false: 550 5.7.1 Relay access denied.
  // An accepted recipient is queued with no mailbox and routed by the queue manager.
  std::function<bool(std::string_view client_ip, std::string_view domain)> may_relay;
  // AUTH / X-EXPS (session.auth_mechanisms non-empty): the SASL side, the pool its steps
  // run on, the per-IP failure limit, and the pause before a failure is answered (a
  // tarpit for password guessing). No backend: every attempt gets 454 4.7.0.
  std::shared_ptr<AuthBackend> auth;
  boost::asio::thread_pool* auth_pool = nullptr;
  std::shared_ptr<AuthFailureLimiter> auth_limiter;
  std::chrono::milliseconds auth_failure_delay{1000};
  // ATRN / TURN (session.atrn, session.turn; RFC 2645): which domains a user may take and
  // whether mail waits for them (called on the connection's thread, must not block);
  // `atrn_release` makes that mail due now and says how many messages it is; `odmr` hands
  // their jobs to the connection, which then acts as the SMTP client.
  std::function<AtrnVerdict(const CheckAtrn&)> atrn_check;
  std::function<std::size_t(const std::vector<std::string>& domains)> atrn_release;
  OdmrHold* odmr = nullptr;
  std::chrono::milliseconds atrn_idle{std::chrono::seconds(5)};  // no more jobs: QUIT
  // ETRN (session.etrn): the queue run, and the per-client limit in front of it.
  std::function<queue::EtrnResult(const queue::EtrnRequest&)> etrn;
  std::shared_ptr<EtrnRateLimiter> etrn_limiter;
  // A complete X-LINK2STATE payload from a peer node (the link-state engine's input);
  // called on the connection's thread, must not block; `done` (any thread, exactly once)
  // gives the payload to send back in the 250, or none. Unset: logged, plain 250.
  // Client IPs that the per-IP connection rate (rate_limiter) does not apply to: the
  // organization's other nodes (link_state.nodes[].smtp), which open one connection per
  // relayed message.
  std::set<std::string> rate_exempt;
  std::function<void(const std::string& peer, std::string payload,
                     std::function<void(std::optional<std::string>)> done)>
      on_link_state;
  // Arrival sinks: when set, the message is held (bounded by session.max_message_size)
  // until the end of data, the filter decides, and only then is it spooled and committed.
  MessageFilter filter;
  // The bytes held for `filter` across all connections of the node: a message that would
  // pass `held_limit` is not held and gets 452 4.3.1 at its end (hostile: many large
  // messages at once). Null: no node-wide cap.
  std::shared_ptr<std::atomic<std::uint64_t>> held_bytes;
  std::uint64_t held_limit = 256u << 20;
  // Called (on the connection's thread) once a message is durable and acknowledged.
  std::function<void(const std::string& queue_id)> on_queued;
  // Instead of on_queued for a message the filter held (MessageFilterResult::hold): it is
  // durable, and must be recorded as frozen before this returns (the 250 follows).
  std::function<void(const std::string& queue_id, const queue::Envelope& envelope,
                     const std::string& reason)>
      on_held;
  SessionConfig session;
  std::chrono::milliseconds pregreet_wait{0};
  std::chrono::milliseconds write_timeout{std::chrono::minutes(5)};
  std::size_t max_output_buffer = 256u << 10;  // stop reading while more is unsent
  std::size_t max_sessions = 1000;
  std::size_t max_sessions_per_ip = 50;
  ListenerCounters* counters = nullptr;
};

// Counts live sessions in total and per client IP; shared by a Listener and its
// Connections (which may outlive the listener during shutdown).
class SessionLimiter {
 public:
  SessionLimiter(std::size_t max_total, std::size_t max_per_ip)
      : max_total_(max_total), max_per_ip_(max_per_ip) {}
  enum class Verdict { kAdmitted, kTooManyTotal, kTooManyFromIp };
  Verdict admit(const std::string& ip);
  void release(const std::string& ip);

 private:
  std::mutex mu_;
  std::map<std::string, std::size_t> per_ip_;
  std::size_t total_ = 0;
  std::size_t max_total_, max_per_ip_;
};

class Listener {
 public:
  // `contexts` must outlive the listener; the acceptor runs on contexts[0].
  Listener(std::vector<boost::asio::io_context*> contexts, boost::asio::ip::tcp::endpoint ep,
           ConnectionServices services);
  ~Listener();
  boost::system::error_code open();  // bind + listen; errors name the address
  void start();
  void stop();
  boost::asio::ip::tcp::endpoint local_endpoint() const;

 private:
  void accept_next();
  void refuse(boost::asio::ip::tcp::socket socket, std::string_view reply);  // reply: a literal
  std::vector<boost::asio::io_context*> contexts_;
  boost::asio::ip::tcp::endpoint endpoint_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_timer_;
  std::shared_ptr<const ConnectionServices> services_;
  std::size_t next_ = 0;
  std::shared_ptr<SessionLimiter> limiter_;
};

}  // namespace bh::smtp
