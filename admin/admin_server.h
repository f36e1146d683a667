#pragma once
// AdminServer: the node's admin endpoint (DESIGN.md §5): HTTP/1.1 on a loopback
// address, JSON bodies, every request authenticated with the node's admin token
// ("Authorization: Bearer <token>"). Routes: GET /v1/status, GET /v1/queue,
// GET /v1/queue/<id>. Limits: 8 KiB of request header, no body, 10 s to send a request,
// 64 concurrent admin connections. Handlers run on the admin's io_context thread.

#include <boost/asio.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/result.h"

namespace bh::admin {

struct AdminHandlers {
  std::function<nlohmann::json()> status;
  std::function<nlohmann::json()> queue_list;
  std::function<std::optional<nlohmann::json>(const std::string& id)> queue_show;
};

class AdminServer {
 public:
  AdminServer(boost::asio::io_context& io, boost::asio::ip::tcp::endpoint ep, std::string token,
              AdminHandlers handlers);
  ~AdminServer();
  boost::system::error_code open();
  void start();
  void stop();
  std::uint16_t port() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

// The token at `path`, created with 32 random hex characters and mode 0600 if absent.
Result<std::string> load_or_create_token(const std::string& path);

}  // namespace bh::admin
