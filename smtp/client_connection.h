#pragma once
// The Asio pump for one outbound connection: connect to one target, drive one
// ClientSession (smtp/client_session.h) over it to the end, report the outcome once.
// Shared by the SMTP relay (smtp/relay_client.h) and the LMTP deliverer
// (smtp/lmtp_deliverer.h); every protocol decision is the session's, this only connects,
// reads, writes, runs the TLS handshake the session asks for, streams the body from the
// queue file (pread, at most NeedBody::max_bytes a time) and arms the one deadline.
//
// The target is TCP ip:port, or a unix socket when RelayTarget::unix_path is set (LMTP).
// Outcome: a connect failure or timeout is `connect_error` (transient 4.4.1, naming the
// target); otherwise the session's ClientResult, where a failing read of the queue file
// ends the attempt as transient 4.3.0 for every recipient not yet delivered, and a TLS
// handshake failure (4.7.5) carries OpenSSL's reason.
//
// Threading: everything runs on `strand`; the report is posted to it, never called
// inside start_attempt(). The attempt keeps itself alive through its pending operations;
// if the io_context stops first it is dropped without a report.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "smtp/client_session.h"
#include "smtp/tls_session_cache.h"

namespace bh::smtp {

// One address to try.
struct RelayTarget {
  std::string host;  // the MX or smart host name, or the IP literal itself
  std::string ip;    // textual address to connect to
  std::uint16_t port = 25;
  bool host_is_ip = false;         // no SNI; verification against the IP
  std::string unix_path;           // set: connect to this unix socket, not to ip:port
  std::string remote_mta() const;  // "host [ip]" ("host [unix:path]")
  std::string str() const;         // "host[ip]:port" ("host[unix:path]")
};

using ClientStrand = boost::asio::strand<boost::asio::io_context::executor_type>;

// One pread, one DATA write or BDAT chunk.
inline constexpr std::size_t kBodyChunk = 64u << 10;

// What one connection needs to know beyond the session's config.
struct AttemptSetup {
  RelayTarget target;
  bool tls_verify = false;  // verify the peer against target (name, or IP for a literal)
  int body_fd = -1;         // the queue file; owned by the caller, open until the report
  std::uint64_t body_offset = 0, body_length = 0;
  std::chrono::milliseconds connect_timeout{30000};
  // TCP only: connect from this local IP (a node of the organization connects from its
  // own address, so the next node sees who it is); empty: the kernel's choice. An IP of
  // the other family than the target is ignored.
  std::string source_ip;
  // TLS sessions to resume (and to keep this connection's in, when it ends after a
  // handshake); null: every handshake is a full one. Must outlive the attempt.
  TlsSessionCache* tls_sessions = nullptr;
};

struct AttemptOutcome;
using AttemptReport = std::function<void(AttemptOutcome)>;

// A connection whose session ended held open (ClientConfig::hold_open): idle, in step
// with the server, ready for the next message to the same target. It keeps reading, so a
// server that closes it or says anything (a 421 at its idle timeout) makes it unusable,
// and after `idle_limit` without use it says QUIT itself. Safe to call from any thread.
class HeldConnection {
 public:
  virtual ~HeldConnection() = default;
  // False once the server closed it, it failed, it timed out idle, or close() was called.
  virtual bool usable() const = 0;
  // The number of sessions it has carried.
  virtual std::size_t sessions() const = 0;
  // Runs the next session on it (ClientSession::start_held: RSET first); reports once,
  // posted to `report_strand` (the caller's), with AttemptOutcome::reused set. If the
  // connection went away meanwhile, the report says so with a transient 4.4.2 before MAIL.
  virtual void reuse(ClientStrand report_strand, AttemptSetup setup, ClientConfig config,
                     OutboundMessage message, AttemptReport report) = 0;
  // QUIT and close (a held connection nobody will use).
  virtual void close() = 0;
  // True once its socket is closed (after the QUIT's reply, a failure or a timeout).
  virtual bool closed() const = 0;
};

// The outcome of one attempt: a connect failure, or the session's result.
struct AttemptOutcome {
  RelayTarget target;
  bool connected = false;
  bool tls_resumed = false;  // the handshake resumed a cached session
  bool reused = false;       // the session ran on a held connection (HeldConnection::reuse)
  std::optional<Error> connect_error;
  ClientResult result;
  // Set when the session ended held open (ClientConfig::hold_open): the caller keeps it
  // for the next message, or close()s it.
  std::shared_ptr<HeldConnection> held;
};

// Connection reuse for one client (the relay, the LMTP deliverer): connections held open
// for the next message, by key (which server, reached how, as whom), at most `per_key`
// per key and `total` in all; each carries at most `max_messages` messages (<= 1: none
// is held) and QUITs after `idle` unused. Connections that stopped being usable are
// dropped as they are met. Any thread.
class HeldConnections {
 public:
  HeldConnections(std::size_t per_key, std::size_t total, std::size_t max_messages = 100,
                  std::chrono::milliseconds idle = std::chrono::seconds(5))
      : per_key_(per_key), total_cap_(total), max_messages_(max_messages), idle_(idle) {}

  // One session: on a connection held for `key` when `reuse` and there is one, else on a
  // new connection (start_attempt). Either way the report is posted to `strand`, and the
  // session is held open at its end while the connection has messages left; the report
  // then carries it (keep()).
  void start(const std::string& key, bool reuse, ClientStrand strand,
             boost::asio::ssl::context& tls, AttemptSetup setup, ClientConfig config,
             OutboundMessage message, AttemptReport report);
  // Holds the report's connection for the next session to `key`, or closes it when the
  // caps are met; outcome.held is empty afterwards.
  void keep(const std::string& key, AttemptOutcome& outcome);

  // The newest usable connection held for `key`, or null.
  std::shared_ptr<HeldConnection> take(const std::string& key);
  // False (the caller closes it) when the caps are met.
  bool put(const std::string& key, std::shared_ptr<HeldConnection> connection);
  std::size_t usable() const;  // held and still usable, over all keys
  void clear();
  // At shutdown: every held connection says QUIT and closes; none is held afterwards, and
  // sessions started later end with QUIT instead of being held. closing() counts those
  // whose socket is still open (the caller waits for them, within a limit of its own,
  // before it stops their io_context).
  void quit_all();
  std::size_t closing() const;

 private:
  void sweep();  // under mu_

  const std::size_t per_key_, total_cap_, max_messages_;
  const std::chrono::milliseconds idle_;
  mutable std::mutex mu_;
  std::map<std::string, std::vector<std::shared_ptr<HeldConnection>>> held_;
  std::size_t total_ = 0;  // entries in held_, usable or not
  std::vector<std::shared_ptr<HeldConnection>> closing_;  // since quit_all()
  bool quitting_ = false;
};

// Whether a session on a held connection failed for the connection's sake, so the caller
// runs it again at once on a new connection to the same target (not as a new attempt):
// the connection was gone or would not take the RSET (nothing of the message reached the
// server), or the server closed the channel with a 421 before taking the message (a
// limit of messages per connection, an idle timeout of its own; RFC 5321 §3.8: the
// transaction was not completed).
bool retry_on_new_connection(const AttemptOutcome& outcome);

// Starts one attempt on `strand`; `tls` must outlive it (and any connection it leaves
// held). A held connection QUITs after `idle_limit` unused.
void start_attempt(ClientStrand strand, boost::asio::ssl::context& tls, AttemptSetup setup,
                   ClientConfig config, OutboundMessage message, AttemptReport report,
                   std::chrono::milliseconds idle_limit = std::chrono::seconds(5));

// OpenSSL's queued errors as one line (and the queue cleared).
std::string tls_error_text();

}  // namespace bh::smtp
