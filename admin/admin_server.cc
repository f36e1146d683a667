#include "admin/admin_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <random>
#include <vector>

namespace bh::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct AdminServer::State : std::enable_shared_from_this<AdminServer::State> {
  State(asio::io_context& io, tcp::endpoint e, std::string t, AdminHandlers h)
      : acceptor(io), ep(e), token(std::move(t)), handlers(std::move(h)) {}
  tcp::acceptor acceptor;
  tcp::endpoint ep;
  std::string token;
  AdminHandlers handlers;
  int active = 0;
};

namespace {

constexpr int kMaxConnections = 64;

bool valid_id(const std::string& id) {
  if (id.empty() || id.size() > 64) {
    return false;
  }
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

// Constant-time comparison: the token is a secret.
bool same(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) {
    return false;
  }
  unsigned char d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return d == 0;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket s, std::shared_ptr<AdminServer::State> st)
      : stream_(std::move(s)), st_(std::move(st)) {
    st_->active++;
  }
  ~Session() { st_->active--; }

  void run() {
    parser_.emplace();
    parser_->header_limit(8 * 1024);
    parser_->body_limit(0);
    stream_.expires_after(std::chrono::seconds(10));
    http::async_read(stream_, buf_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (!ec) {
                         self->respond(self->parser_->release());
                       } else if (ec == http::error::header_limit || ec == http::error::body_limit) {
                         self->refuse(http::status::request_header_fields_too_large,
                                      "request too large");
                       }
                     });
  }

 private:
  void refuse(http::status status, const std::string& why) {
    auto res = std::make_shared<http::response<http::string_body>>(status, 11);
    res->set(http::field::content_type, "application/json");
    res->keep_alive(false);
    res->body() = nlohmann::json{{"error", why}}.dump() + "\n";
    res->prepare_payload();
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code, std::size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    });
  }

  void respond(http::request<http::string_body> req) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(req.version());
    res->set(http::field::server, "bridgehead-admin");
    res->set(http::field::content_type, "application/json");
    res->keep_alive(false);
    auto reply = [&](http::status s, const nlohmann::json& j) {
      res->result(s);
      // replace: text echoed from a request or a log is not always UTF-8; never throw on it.
      res->body() = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    };
    std::string auth(req[http::field::authorization]);
    std::string target(req.target());
    try {
      route(req, auth, target, reply);
    } catch (const std::exception& e) {
      // A handler bug must not take the node down with it.
      reply(http::status::internal_server_error, {{"error", std::string("internal error: ") + e.what()}});
    }
    res->prepare_payload();
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code, std::size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    });
  }

  template <class Reply>
  void route(const http::request<http::string_body>& req, const std::string& auth,
             const std::string& target, Reply& reply) {
    if (auth.rfind("Bearer ", 0) != 0 || !same(auth.substr(7), st_->token)) {
      reply(http::status::unauthorized, {{"error", "missing or wrong admin token"}});
    } else if (req.method() == http::verb::post || req.method() == http::verb::delete_) {
      act(req, target, reply);
    } else if (req.method() != http::verb::get) {
      reply(http::status::method_not_allowed, {{"error", "only GET, POST and DELETE are supported"}});
    } else if (target == "/v1/track" || target.rfind("/v1/track?", 0) == 0) {
      auto params = parse_track_query(target.size() > 9 ? std::string_view(target).substr(10) : "");
      if (!params.ok()) {
        reply(http::status::bad_request, {{"error", params.error().message}});
      } else if (!st_->handlers.track) {
        reply(http::status::not_found, {{"error", "message tracking is not enabled on this node"}});
      } else {
        reply(http::status::ok, st_->handlers.track(*params));
      }
    } else if (target == "/v1/resolve" || target.rfind("/v1/resolve?", 0) == 0) {
      auto q = parse_query(target.size() > 11 ? std::string_view(target).substr(12) : "", {"address"});
      if (!q.ok() || q->count("address") == 0 || q->at("address").empty()) {
        reply(http::status::bad_request, {{"error", q.ok() ? "address=... is required" : q.error().message}});
      } else if (!st_->handlers.resolve) {
        reply(http::status::not_found, {{"error", "this node has no directory resolver"}});
      } else if (auto r = st_->handlers.resolve(q->at("address")); r.ok()) {
        reply(http::status::ok, *r);
      } else {
        reply(r.error().transient() ? http::status::service_unavailable : http::status::bad_request,
              {{"error", r.error().enhanced + " " + r.error().message}});
      }
    } else if (target == "/v1/linkstate/lsdb" || target == "/v1/linkstate/peers" ||
               target == "/v1/linkstate/routes") {
      if (!st_->handlers.linkstate) {
        reply(http::status::not_found, {{"error", "link state is not configured on this node (link_state)"}});
      } else {
        reply(http::status::ok, st_->handlers.linkstate(target.substr(14)));
      }
    } else if (target == "/v1/status") {
      reply(http::status::ok, st_->handlers.status());
    } else if (target == "/v1/queues" && st_->handlers.queues) {
      reply(http::status::ok, st_->handlers.queues());
    } else if (target == "/v1/queue" || target.rfind("/v1/queue?", 0) == 0) {
      auto f = parse_queue_filter(target.size() > 9 ? std::string_view(target).substr(10) : "");
      if (!f.ok()) {
        reply(http::status::bad_request, {{"error", f.error().message}});
      } else {
        reply(http::status::ok, st_->handlers.queue_list(*f));
      }
    } else if (target.rfind("/v1/queue/", 0) == 0) {
      std::string id = target.substr(10);
      if (!valid_id(id)) {
        reply(http::status::bad_request, {{"error", "malformed queue id"}});
      } else if (auto j = st_->handlers.queue_show(id)) {
        reply(http::status::ok, *j);
      } else {
        reply(http::status::not_found, {{"error", "no message " + id}});
      }
    } else {
      reply(http::status::not_found, {{"error", "no such resource"}});
    }
  }

  // POST /v1/queue/<id>/<verb>, DELETE /v1/queue/<id>[?ndr=1], POST /v1/queues/retry?hop=
  template <class Reply>
  void act(const http::request<http::string_body>& req, const std::string& target, Reply& reply) {
    auto q = target.find('?');
    std::string path = target.substr(0, q);
    std::string_view query = q == std::string::npos ? std::string_view{} : std::string_view(target).substr(q + 1);
    auto answer = [&](const Result<nlohmann::json>& r) {
      if (r.ok()) {
        reply(http::status::ok, *r);
      } else {
        reply(r.error().transient() ? http::status::conflict : http::status::not_found,
              {{"error", r.error().message}});
      }
    };
    if (req.method() == http::verb::post &&
        (path == "/v1/queues/retry" || path == "/v1/queues/freeze" || path == "/v1/queues/thaw")) {
      auto p = parse_query(query, {"hop"});
      if (!p.ok() || p->count("hop") == 0 || p->at("hop").empty()) {
        reply(http::status::bad_request, {{"error", p.ok() ? "hop= is required" : p.error().message}});
        return;
      }
      const std::string& hop = p->at("hop");
      if (path == "/v1/queues/retry" && st_->handlers.hop_retry) {
        reply(http::status::ok, st_->handlers.hop_retry(hop));
      } else if (path != "/v1/queues/retry" && st_->handlers.hop_freeze) {
        answer(st_->handlers.hop_freeze(hop, path == "/v1/queues/freeze"));
      } else {
        reply(http::status::not_found, {{"error", "no such resource"}});
      }
      return;
    }
    if (req.method() == http::verb::post && path == "/v1/linkstate/report") {
      auto p = parse_query(query, {"connector", "state"});
      if (!p.ok() || p->count("connector") == 0 || p->count("state") == 0 ||
          (p->at("state") != "up" && p->at("state") != "down")) {
        reply(http::status::bad_request,
              {{"error", p.ok() ? "connector= and state=up|down are required" : p.error().message}});
      } else if (!st_->handlers.linkstate_report) {
        reply(http::status::not_found, {{"error", "link state is not configured on this node (link_state)"}});
      } else {
        answer(st_->handlers.linkstate_report(p->at("connector"), p->at("state") == "up"));
      }
      return;
    }
    if (path == "/v1/status" || path == "/v1/queue" || path == "/v1/queues" || path == "/v1/track" ||
        path == "/v1/resolve") {
      reply(http::status::method_not_allowed, {{"error", path + " only answers GET"}});
      return;
    }
    if (path.rfind("/v1/queue/", 0) != 0 || !st_->handlers.queue_action) {
      reply(http::status::not_found, {{"error", "no such resource"}});
      return;
    }
    std::string rest = path.substr(10);
    std::string verb;
    if (req.method() == http::verb::delete_) {
      auto p = parse_query(query, {"ndr"});
      if (!p.ok() || (p->count("ndr") > 0 && p->at("ndr") != "0" && p->at("ndr") != "1")) {
        reply(http::status::bad_request, {{"error", p.ok() ? "ndr must be 0 or 1" : p.error().message}});
        return;
      }
      verb = p->count("ndr") > 0 && p->at("ndr") == "1" ? "delete-ndr" : "delete";
    } else {
      auto slash = rest.find('/');
      if (slash == std::string::npos) {
        reply(http::status::not_found, {{"error", "no such resource"}});
        return;
      }
      verb = rest.substr(slash + 1);
      rest = rest.substr(0, slash);
      if (verb != "retry" && verb != "freeze" && verb != "thaw") {
        reply(http::status::not_found, {{"error", "no such action: " + verb}});
        return;
      }
    }
    if (!valid_id(rest)) {
      reply(http::status::bad_request, {{"error", "malformed queue id"}});
      return;
    }
    answer(st_->handlers.queue_action(rest, verb));
  }

  beast::tcp_stream stream_;
  std::shared_ptr<AdminServer::State> st_;
  beast::flat_buffer buf_{16 * 1024};
  std::optional<http::request_parser<http::string_body>> parser_;
};

void accept_loop(std::shared_ptr<AdminServer::State> st) {
  st->acceptor.async_accept([st](beast::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || !st->acceptor.is_open()) {
      return;
    }
    if (ec) {
      // Out of descriptors or similar: try again shortly rather than spin.
      auto timer = std::make_shared<asio::steady_timer>(st->acceptor.get_executor(),
                                                         std::chrono::milliseconds(100));
      timer->async_wait([st, timer](beast::error_code) {
        if (st->acceptor.is_open()) {
          accept_loop(st);
        }
      });
      return;
    }
    if (st->active >= kMaxConnections) {
      beast::error_code ignored;
      s.close(ignored);
    } else {
      std::make_shared<Session>(std::move(s), st)->run();
    }
    accept_loop(st);
  });
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) {
      return std::nullopt;
    }
    int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::optional<std::int64_t> decimal(const std::string& v, std::int64_t max) {
  if (v.empty() || v.size() > 18) {
    return std::nullopt;
  }
  std::int64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    n = n * 10 + (c - '0');
  }
  if (n > max) {
    return std::nullopt;
  }
  return n;
}

}  // namespace

Result<std::map<std::string, std::string>> parse_query(std::string_view query,
                                                       const std::vector<std::string>& allowed) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) {
      continue;
    }
    std::size_t eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq));
    auto value = percent_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    if (!key || !value) {
      return permanent_error("", "malformed percent-encoding in the query");
    }
    if (value->size() > 1024) {
      return permanent_error("", *key + ": value longer than 1024 octets");
    }
    if (std::find(allowed.begin(), allowed.end(), *key) == allowed.end()) {
      std::string known;
      for (const auto& k : allowed) {
        known += (known.empty() ? "" : ", ") + k;
      }
      return permanent_error("", "unknown parameter \"" + *key + "\" (known: " + known + ")");
    }
    if (!out.emplace(*key, *value).second) {
      return permanent_error("", *key + ": given twice");
    }
  }
  return out;
}

Result<QueueFilter> parse_queue_filter(std::string_view query) {
  auto p = parse_query(query, {"sender", "recipient", "hop", "older_than"});
  if (!p.ok()) {
    return p.error();
  }
  QueueFilter f;
  for (const auto& [k, v] : *p) {
    if (k == "sender") {
      f.sender = v;
    } else if (k == "recipient") {
      f.recipient = v;
    } else if (k == "hop") {
      f.hop = v;
    } else {
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), f.older_than_s);
      if (ec != std::errc() || end != v.data() + v.size() || f.older_than_s < 0) {
        return permanent_error("", "older_than: seconds, a number >= 0");
      }
    }
  }
  return f;
}

Result<TrackParams> parse_track_query(std::string_view query) {
  static const std::vector<std::string> kKeys = {"message_id", "sender", "recipient", "queue_id",
                                                 "since",      "until",  "limit"};
  auto kv = parse_query(query, kKeys);
  if (!kv.ok()) {
    return kv.error();
  }
  TrackParams p;
  for (const auto& [key, value] : *kv) {
    if (key == "message_id") {
      p.message_id = value;
    } else if (key == "sender") {
      p.sender = value;
    } else if (key == "recipient") {
      p.recipient = value;
    } else if (key == "queue_id") {
      p.queue_id = value;
    } else if (key == "since" || key == "until") {
      auto n = decimal(value, std::int64_t{1} << 40);
      if (!n) {
        return permanent_error("", key + ": Unix seconds expected");
      }
      (key == "since" ? p.since_unix : p.until_unix) = *n;
    } else {
      auto n = decimal(value, kTrackLimitMax);
      if (!n || *n < 1) {
        return permanent_error("", "limit: 1-" + std::to_string(kTrackLimitMax) + " expected");
      }
      p.limit = static_cast<std::size_t>(*n);
    }
  }
  return p;
}

AdminServer::AdminServer(asio::io_context& io, tcp::endpoint ep, std::string token,
                         AdminHandlers handlers)
    : state_(std::make_shared<State>(io, ep, std::move(token), std::move(handlers))) {}

AdminServer::~AdminServer() { stop(); }

boost::system::error_code AdminServer::open() {
  boost::system::error_code ec;
  auto& a = state_->acceptor;
  a.open(state_->ep.protocol(), ec);
  if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a.bind(state_->ep, ec);
  if (!ec) a.listen(16, ec);
  return ec;
}

boost::system::error_code AdminServer::start() {
  if (!state_->acceptor.is_open()) {
    if (auto ec = open()) {
      return ec;
    }
  }
  accept_loop(state_);
  return {};
}

void AdminServer::stop() {
  boost::system::error_code ignored;
  state_->acceptor.close(ignored);
}

std::uint16_t AdminServer::port() const {
  boost::system::error_code ec;
  return state_->acceptor.local_endpoint(ec).port();
}

namespace {

// A token is what goes after "Bearer ": visible ASCII, no blanks (RFC 6750 §2.1 b64token
// is stricter; we only refuse what would break the header).
bool usable_token(const std::string& t) {
  if (t.size() < 16 || t.size() > 1024) {
    return false;
  }
  for (unsigned char c : t) {
    if (c <= 0x20 || c >= 0x7f) {
      return false;
    }
  }
  return true;
}

Result<std::string> read_token(const std::string& path, int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return permanent_error("", path + ": " + std::strerror(errno));
  }
  if ((st.st_mode & 0077) != 0) {
    ::close(fd);
    return permanent_error("", path + ": admin token is readable or writable by others (mode " +
                                   std::to_string((st.st_mode >> 6) & 7) +
                                   std::to_string((st.st_mode >> 3) & 7) + std::to_string(st.st_mode & 7) +
                                   "); chmod 600 it");
  }
  std::string data(1100, '\0');
  ssize_t n = ::read(fd, data.data(), data.size());
  ::close(fd);
  if (n < 0) {
    return permanent_error("", path + ": cannot read admin token: " + std::strerror(errno));
  }
  data.resize(static_cast<std::size_t>(n));
  while (!data.empty() && (data.back() == '\n' || data.back() == '\r')) {
    data.pop_back();
  }
  if (!usable_token(data)) {
    return permanent_error("", path + ": admin token must be 16-1024 visible characters on one line");
  }
  return data;
}

}  // namespace

Result<std::string> load_or_create_token(const std::string& path) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
      return read_token(path, fd);
    }
    if (errno != ENOENT) {
      return permanent_error("", path + ": cannot open admin token: " + std::strerror(errno));
    }
    std::random_device rd;
    static constexpr char kHex[] = "0123456789abcdef";
    std::string t;
    for (int i = 0; i < 32; ++i) {
      t.push_back(kHex[rd() & 15]);
    }
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == EEXIST) {
      continue;  // another process made it first: use theirs
    }
    if (fd < 0) {
      return permanent_error("", path + ": cannot create admin token: " + std::strerror(errno));
    }
    std::string line = t + "\n";
    bool ok = ::fchmod(fd, 0600) == 0 &&  // whatever the umask
              ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
              ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) {
      ::unlink(path.c_str());
      return permanent_error("", path + ": cannot write admin token");
    }
    return t;
  }
  return permanent_error("", path + ": admin token appeared and vanished while reading it");
}

}  // namespace bh::admin
