#pragma once
// AdminServer: the node's admin endpoint (DESIGN.md §5): HTTP/1.1 on a (loopback by
// default) address from the config, JSON bodies, every request authenticated with the
// node's admin token ("Authorization: Bearer <token>", else 401). docs/admin-api.md.
// Routes: GET /v1/status, GET /v1/queue[?filters], GET /v1/queue/<id> (id: 1-64
// letters/digits, checked before the handler is called; 400 if malformed, 404 if the
// handler has none), POST /v1/queue/<id>/{retry,freeze,thaw}, DELETE /v1/queue/<id>
// [?ndr=1], GET /v1/queues, POST /v1/queues/{retry,freeze,thaw}?hop=<next hop>,
// GET /v1/track?<query> (parse_track_query; 400 if malformed, 404 if the node has no
// tracking handler), GET /v1/resolve?address=A (404 if the node has no resolver),
// GET /v1/linkstate/{lsdb,peers,routes} (404 without link state).
// Limits: 8 KiB of request header (431 beyond), no body, 10 s to send a request, one
// request per connection, 64 concurrent admin connections.
// Threading: everything, handlers included, runs on the io_context given to the
// constructor; a handler that throws gives a 500, never a crash. stop() and the
// destructor must run on that io_context's thread or after it has stopped.
// Ownership: the caller keeps whatever the handlers capture alive until the io_context
// has stopped.

#include <boost/asio.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace bh::admin {

// The parameters of GET /v1/track, decoded and checked.
struct TrackParams {
  std::string message_id, sender, recipient, queue_id;
  std::optional<std::int64_t> since_unix, until_unix;  // inclusive, Unix seconds
  std::size_t limit = 100;                             // 1-10000
};
inline constexpr std::size_t kTrackLimitMax = 10000;

// "message_id=..&sender=..&recipient=..&queue_id=..&since=..&until=..&limit=N": values
// percent-decoded (RFC 3986 §2.1; '+' is a literal plus, as in addresses), at most 1024
// octets each; each key at most once; unknown keys, bad escapes and limits outside
// 1-10000 are errors (permanent, with the text for the 400 reply).
Result<TrackParams> parse_track_query(std::string_view query);

// The filters of GET /v1/queue (Get-Message style): each empty when not given.
struct QueueFilter {
  std::string sender, recipient, hop;  // addresses case-insensitive; hop exact
  std::int64_t older_than_s = 0;       // only messages received at least this long ago
};
// "key=value&..." with only the keys in `allowed`, each at most once, values
// percent-decoded and at most 1024 octets. Errors are permanent with the text for a 400.
Result<std::map<std::string, std::string>> parse_query(std::string_view query,
                                                       const std::vector<std::string>& allowed);
Result<QueueFilter> parse_queue_filter(std::string_view query);

// Operator actions: the message id and "retry", "freeze", "thaw", "delete" or
// "delete-ndr". A permanent error answers 404, a transient one 409.
using QueueAction = std::function<Result<nlohmann::json>(const std::string& id, const std::string& verb)>;

struct AdminHandlers {
  std::function<nlohmann::json()> status;
  std::function<nlohmann::json(const QueueFilter&)> queue_list;
  // GET /v1/queues: next hops (state, messages, oldest, last error, next retry).
  std::function<nlohmann::json()> queues;
  QueueAction queue_action;
  // POST /v1/queues/retry?hop=HOP
  std::function<nlohmann::json(const std::string& hop)> hop_retry;
  // POST /v1/queues/freeze?hop=HOP and /v1/queues/thaw?hop=HOP (404/409 as queue_action)
  std::function<Result<nlohmann::json>(const std::string& hop, bool frozen)> hop_freeze;
  std::function<std::optional<nlohmann::json>(const std::string& id)> queue_show;
  // Unset: the node keeps no tracking log (404).
  std::function<nlohmann::json(const TrackParams&)> track;
  // GET /v1/resolve?address=A: the categorizer's decision for one address (bhctl
  // resolve). A transient error (directory down) answers 503, a permanent one 400.
  std::function<Result<nlohmann::json>(const std::string& address)> resolve;
  // GET /v1/linkstate/{lsdb,peers,routes} (bhctl lsdb, peers, routes; the view's name is
  // the argument). Unset: the node runs no link state (404).
  std::function<nlohmann::json(const std::string& view)> linkstate;
  // POST /v1/linkstate/report?connector=C&state=up|down (bhctl link up|down C): this
  // node's source bridgehead of connector C is up or down. 404/409 as queue_action.
  std::function<Result<nlohmann::json>(const std::string& connector, bool up)> linkstate_report;
};

class AdminServer {
 public:
  AdminServer(boost::asio::io_context& io, boost::asio::ip::tcp::endpoint ep, std::string token,
              AdminHandlers handlers);
  ~AdminServer();
  // Binds and listens (port 0 picks a free port). Separate from start() so the node can
  // fail before it begins accepting anything.
  boost::system::error_code open();
  // Opens if open() has not been called, then accepts connections.
  boost::system::error_code start();
  // Stops accepting; requests in flight finish (each within its 10 s deadline).
  void stop();
  // The bound port (useful after binding port 0); 0 when not open.
  std::uint16_t port() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

// The token at `path`, created with 32 random hex characters and mode 0600 if absent
// (O_EXCL: a concurrent creator's token wins). An existing file must be mode 0600 or
// stricter (no group/other bits), hold 16-1024 visible characters on one line, and not be
// a symlink. Errors are permanent and name the path.
Result<std::string> load_or_create_token(const std::string& path);

}  // namespace bh::admin
