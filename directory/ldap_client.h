#pragma once
// LdapClient: an asynchronous OpenLDAP (libldap) client driven by an Asio io_context
// (DESIGN.md §2 directory/, §4.4). One connection to the first server of `uris` that
// accepts the bind; searches are pipelined on it (many in flight, answers matched by
// message id), each with its own deadline.
//
// How it works:
//  - Connect + bind run on a private helper thread (ldap_initialize, optional StartTLS,
//    ldap_sasl_bind_s with LDAP_OPT_NETWORK_TIMEOUT/LDAP_OPT_TIMEOUT = `timeout`), trying
//    each URI in order (fail-over); the io thread never blocks on a connect or a bind.
//  - Once bound, the LDAP socket (LDAP_OPT_DESC) is made non-blocking and wrapped in an
//    asio::posix::stream_descriptor (released, never closed by Asio: libldap owns it);
//    `async_wait(wait_read)` wakes the strand, which drains complete messages with
//    ldap_result(LDAP_RES_ANY, LDAP_MSG_ONE, zero timeout).
//  - ldap_search_ext sends without waiting; a steady_timer per operation ends it after
//    `timeout` with ldap_abandon_ext and a transient 4.4.3 error. An operation that times
//    out while nothing at all came from the server since it was sent means the server is
//    hung: the connection is dropped and a new one is made (fail-over to the next URI).
//  - A lost connection (ldap_result -1, send error) fails every operation in flight with
//    4.4.3 and reconnects at once; a failed connect backs off (reconnect_initial doubling
//    up to reconnect_max) and keeps retrying in the background. While backing off,
//    searches fail at once with 4.4.3 (no point waiting); while connecting they wait,
//    bounded by their own deadline.
//  - TLS: ldaps:// URIs, or StartTLS (RFC 4511 §4.14, RFC 4513 §3) on ldap:// with
//    `tls.start_tls`; CA file and verification through libldap's TLS options (GnuTLS on
//    Debian: LDAP_OPT_X_TLS_CACERTFILE, LDAP_OPT_X_TLS_REQUIRE_CERT, then
//    LDAP_OPT_X_TLS_NEWCTX). Present in the API, not yet exercised by a test.
//
// Owns: the LDAP* handle, its socket wrapper, the operations in flight, the timers and
// the helper thread. Trust: the servers are trusted to answer the LDAP protocol (libldap
// parses the BER); values they return are copied as opaque bytes. Filters are built by
// the caller (directory/ldap_filter.h escapes every value).
// Threading: search() and stop() may be called from any thread; all state lives on a
// strand of the io_context; every callback is posted to the io_context, never run
// inside search(). Errors: every failure is transient with enhanced code 4.4.3 (a
// directory fault never becomes a 5xx, DESIGN.md §4.4).

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"

struct ldap;  // <ldap.h>'s LDAP, kept out of this header

namespace bh::directory {

enum class LdapScope { kBase, kOneLevel, kSubtree };

struct LdapSearch {
  std::string base;
  LdapScope scope = LdapScope::kSubtree;
  std::string filter;                   // built with ldap_filter.h
  std::vector<std::string> attributes;  // empty: all user attributes
  int size_limit = 0;                   // 0: none; more entries than this still succeed
  // > 0: ask in pages of this many entries (RFC 2696 paged results control), following
  // the server's cookie until the last page; the answer is every page's entries. The
  // whole sequence shares the one deadline.
  int page_size = 0;
  // Cap on the entries of one answer (an untrusted count): past it the search fails
  // with a transient 4.4.3 ("too many entries") instead of a truncated list.
  std::size_t max_entries = 100000;
  // true: a server's sizeLimitExceeded is an error (a truncated group must not look
  // complete); false: the entries received so far are the answer.
  bool strict_size = false;
};

struct LdapEntry {
  std::string dn;
  // Attribute names lower-cased (LDAP names are case-insensitive); values as sent.
  std::map<std::string, std::vector<std::string>> attributes;
  // Values of `name` (any case), empty when absent.
  const std::vector<std::string>& values(std::string_view name) const;
};

using LdapSearchCallback = std::function<void(Result<std::vector<LdapEntry>>)>;

// The role LdapDirectory needs; LdapClient implements it, unit tests use an in-memory
// twin. search() answers exactly once, never before it returns.
class LdapSearcher {
 public:
  virtual ~LdapSearcher() = default;
  virtual void search(LdapSearch request, LdapSearchCallback done) = 0;
};

struct LdapTlsOptions {
  bool start_tls = false;  // StartTLS on ldap:// URIs (ldaps:// is TLS from the start)
  std::string ca_file;     // PEM CA bundle; empty: libldap's default (ldap.conf)
  bool verify = true;      // false: LDAP_OPT_X_TLS_NEVER (never in production)
};

struct LdapClientOptions {
  std::vector<std::string> uris;            // tried in order: the first that binds is used
  std::string bind_dn;                      // empty: anonymous simple bind
  std::string password;                     // simple bind password (with bind_dn)
  // "GSSAPI": a SASL GSSAPI bind (RFC 4752) with the process's Kerberos credentials
  // (KRB5_CLIENT_KTNAME / KRB5CCNAME) for ldap/<URI host>; bind_dn and password unused.
  // The host is taken from the URI as written (LDAP_OPT_X_SASL_NOCANON: no reverse DNS).
  std::string sasl_mechanism;
  std::chrono::milliseconds timeout{5000};  // per search; also per URI for connect+bind
  std::chrono::milliseconds reconnect_initial{100};
  std::chrono::milliseconds reconnect_max{2000};
  std::size_t max_in_flight = 1000;  // waiting + sent; more fail at once with 4.4.3
  LdapTlsOptions tls;
};

struct LdapClientCounters {
  std::uint64_t searches = 0;          // accepted by search()
  std::uint64_t completed = 0;         // answered by the server (success or LDAP error)
  std::uint64_t entries = 0;           // search entries received
  std::uint64_t failed = 0;            // answered with a transient error (any cause)
  std::uint64_t timeouts = 0;          // ended by their deadline (abandoned)
  std::uint64_t rejected_busy = 0;     // refused: max_in_flight reached
  std::uint64_t connects = 0;          // successful connect + bind
  std::uint64_t connect_failures = 0;  // a URI that did not connect or bind
  std::uint64_t disconnects = 0;       // connections lost or dropped
  std::uint64_t hung = 0;              // of which dropped because the server stopped answering
  std::uint64_t failovers = 0;         // connects to a URI other than the first
  std::uint64_t pages = 0;             // follow-up pages requested (RFC 2696)
  std::uint64_t in_flight = 0;         // now: sent and not yet answered
  std::uint64_t max_in_flight = 0;     // high-water mark of in_flight on one connection
  std::string connected_uri;           // "" when not connected
};

class LdapClient final : public LdapSearcher, public std::enable_shared_from_this<LdapClient> {
 public:
  static std::shared_ptr<LdapClient> create(boost::asio::io_context& io, LdapClientOptions options);
  ~LdapClient() override;
  LdapClient(const LdapClient&) = delete;
  LdapClient& operator=(const LdapClient&) = delete;

  // Starts connecting (on the helper thread); searches made before it is up wait.
  void start();
  void search(LdapSearch request, LdapSearchCallback done) override;
  // Fails everything pending with 4.4.3, closes the connection, stops reconnecting.
  void stop();
  LdapClientCounters counters() const;

 private:
  struct Op;
  struct Connected;
  enum class State { kIdle, kConnecting, kConnected, kBackoff, kStopped };

  LdapClient(boost::asio::io_context& io, LdapClientOptions options);
  void do_search(LdapSearch request, LdapSearchCallback done);
  void send(const std::shared_ptr<Op>& op);
  void finish(const std::shared_ptr<Op>& op, Result<std::vector<LdapEntry>> result);
  void on_deadline(std::uint64_t id);
  void connect();
  void on_connected(Connected c);
  void wait_readable();
  void drain();
  void drop(const std::string& why);
  void fail_all(const std::string& why);
  void update_in_flight();

  boost::asio::io_context& io_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  const LdapClientOptions options_;
  boost::asio::thread_pool connector_{1};

  // ---- on the strand ----
  State state_ = State::kIdle;
  ::ldap* ld_ = nullptr;
  std::unique_ptr<boost::asio::posix::stream_descriptor> socket_;
  std::uint64_t generation_ = 0;  // bumps on every connection change; stale waits ignore
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, std::shared_ptr<Op>> ops_;  // every pending operation
  std::unordered_map<int, std::uint64_t> by_msgid_;             // sent ones
  std::deque<std::uint64_t> waiting_;                           // not yet sent
  std::chrono::steady_clock::time_point last_read_;
  std::chrono::milliseconds backoff_;
  boost::asio::steady_timer backoff_timer_;

  // ---- read anywhere ----
  struct AtomicCounters {
    std::atomic<std::uint64_t> searches{0}, completed{0}, entries{0}, failed{0}, timeouts{0},
        rejected_busy{0}, connects{0}, connect_failures{0}, disconnects{0}, hung{0}, failovers{0}, pages{0},
        in_flight{0}, max_in_flight{0};
    std::atomic<int> connected_index{-1};
  };
  AtomicCounters counters_;
};

}  // namespace bh::directory
