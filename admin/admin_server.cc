#include "admin/admin_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

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
                       }
                     });
  }

 private:
  void respond(http::request<http::string_body> req) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(req.version());
    res->set(http::field::server, "bridgehead-admin");
    res->set(http::field::content_type, "application/json");
    res->keep_alive(false);
    auto reply = [&](http::status s, const nlohmann::json& j) {
      res->result(s);
      res->body() = j.dump(2) + "\n";
    };
    std::string auth(req[http::field::authorization]);
    std::string target(req.target());
    if (auth.rfind("Bearer ", 0) != 0 || !same(auth.substr(7), st_->token)) {
      reply(http::status::unauthorized, {{"error", "missing or wrong admin token"}});
    } else if (req.method() != http::verb::get) {
      reply(http::status::method_not_allowed, {{"error", "only GET is supported"}});
    } else if (target == "/v1/status") {
      reply(http::status::ok, st_->handlers.status());
    } else if (target == "/v1/queue") {
      reply(http::status::ok, st_->handlers.queue_list());
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
    res->prepare_payload();
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code, std::size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    });
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
    if (!ec) {
      if (st->active >= kMaxConnections) {
        beast::error_code ignored;
        s.close(ignored);
      } else {
        std::make_shared<Session>(std::move(s), st)->run();
      }
    }
    accept_loop(st);
  });
}

}  // namespace

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

void AdminServer::start() { accept_loop(state_); }

void AdminServer::stop() {
  boost::system::error_code ignored;
  state_->acceptor.close(ignored);
}

std::uint16_t AdminServer::port() const {
  boost::system::error_code ec;
  return state_->acceptor.local_endpoint(ec).port();
}

Result<std::string> load_or_create_token(const std::string& path) {
  std::ifstream in(path);
  if (in) {
    std::string t;
    std::getline(in, t);
    if (t.size() < 16) {
      return permanent_error("", path + ": admin token shorter than 16 characters");
    }
    return t;
  }
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string t;
  for (int i = 0; i < 32; ++i) {
    t.push_back(kHex[rd() & 15]);
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return permanent_error("", path + ": cannot create admin token: " + std::strerror(errno));
  }
  std::string line = t + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
            ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return permanent_error("", path + ": cannot write admin token");
  }
  return t;
}

}  // namespace bh::admin
