#include "smtp/connection.h"

#include <array>
#include <memory>
#include <deque>
#include <optional>
#include <type_traits>

#include "common/log.h"

namespace bh::smtp {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

SessionLimiter::Verdict SessionLimiter::admit(const std::string& ip) {
  std::lock_guard lock(mu_);
  if (total_ >= max_total_) {
    return Verdict::kTooManyTotal;
  }
  auto& n = per_ip_[ip];
  if (n >= max_per_ip_) {
    if (n == 0) {
      per_ip_.erase(ip);
    }
    return Verdict::kTooManyFromIp;
  }
  ++n;
  ++total_;
  return Verdict::kAdmitted;
}

void SessionLimiter::release(const std::string& ip) {
  std::lock_guard lock(mu_);
  auto it = per_ip_.find(ip);
  BH_CHECK(it != per_ip_.end() && it->second > 0 && total_ > 0);
  if (--it->second == 0) {
    per_ip_.erase(it);
  }
  --total_;
}

namespace {

// One inbound SMTP connection. Every member is touched only on the socket's executor.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, std::shared_ptr<const ConnectionServices> services,
             std::shared_ptr<SessionLimiter> limiter, std::string peer_ip, std::string local_ip)
      : socket_(std::move(socket)),
        services_(std::move(services)),
        limiter_(std::move(limiter)),
        peer_ip_(std::move(peer_ip)),
        line_timer_(socket_.get_executor()),
        write_timer_(socket_.get_executor()),
        greet_timer_(socket_.get_executor()),
        tarpit_timer_(socket_.get_executor()),
        tls_ctx_(services_->tls ? services_->tls() : nullptr),
        tarpit_{services_->tarpit_after_errors, services_->tarpit_delay},
        session_(services_->session,
                 PeerInfo{peer_ip_, std::move(local_ip), services_->implicit_tls},
                 *services_->clock) {}

  ~Connection() {
    if (limiter_) {
      limiter_->release(peer_ip_);
    }
    if (services_->counters != nullptr) {
      services_->counters->active--;
    }
  }

  asio::any_io_executor executor() { return socket_.get_executor(); }

  void start() {
    if (services_->counters != nullptr) {
      services_->counters->active++;
    }
    if (services_->implicit_tls) {
      handshake(/*implicit=*/true);  // RFC 8314 3.3: TLS first, then the banner
      return;
    }
    begin_session();
  }

 private:
  void begin_session() {
    read_more();
    if (services_->pregreet_wait.count() > 0) {
      greet_timer_.expires_after(services_->pregreet_wait);
      greet_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (!ec) {
          self->run(self->session_.start());
        }
      });
    } else {
      run(session_.start());
    }
  }

  // Performs actions in order. Results that arrive synchronously are queued behind the
  // actions already pending, so the order the session asked for is kept.
  void run(Actions actions) {
    for (auto& a : actions) {
      pending_.push_back(std::move(a));
    }
    if (pumping_) {
      return;
    }
    pumping_ = true;
    while (!pending_.empty() && !dead_ && !tarpitting_) {
      if (std::holds_alternative<SendReply>(pending_.front()) && !tarpit_served_ &&
          tarpit_.delays(errors_before_reply_)) {
        hold_for_tarpit();
        break;
      }
      Action a = std::move(pending_.front());
      pending_.pop_front();
      std::visit([this](auto& act) { perform(act); }, a);
    }
    pumping_ = false;
    read_more();
  }

  void perform(SendReply& a) {
    out_.append(a.bytes);
    tarpit_served_ = false;
    errors_before_reply_ = session_.counters().errors;
    flush();
  }

  // hostile-inputs #56: the pump stops (and with it reading) for the tarpit delay, then
  // the held reply goes out and the pump goes on.
  void hold_for_tarpit() {
    tarpitting_ = true;
    if (services_->counters != nullptr) {
      services_->counters->tarpit_delays++;
    }
    tarpit_timer_.expires_after(tarpit_.delay);
    // A strong reference: nothing else (no read, no write) keeps the connection alive now.
    tarpit_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->dead_) {
        return;
      }
      self->tarpitting_ = false;
      self->tarpit_served_ = true;
      self->run({});
    });
  }
  void perform(CloseConnection&) {
    closing_ = true;
    flush();
  }
  void perform(ArmTimer& a) {
    line_timer_.expires_after(a.after);
    line_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (!ec && self && !self->dead_) {
        if (self->services_->counters != nullptr) {
          self->services_->counters->timeouts++;
        }
        self->run(self->session_.on_timeout());
      }
    });
  }
  void perform(CheckMail&) {
    feed_now(session_.on_mail_result(services_->store->check_space()));
  }
  void perform(LookupRecipient& a) {
    auto at = a.address.rfind('@');
    std::string_view domain =
        at == std::string::npos ? std::string_view{} : std::string_view(a.address).substr(at + 1);
    std::string_view local = std::string_view(a.address).substr(0, at == std::string::npos ? 0 : at);
    // Sender-specified routing in the local part (percent hack, bang path, a quoted '@':
    // hostile-inputs #48, #49, #52) is never relayed, whoever the client is: the next hop
    // might route on it.
    const bool routed_local = local.find_first_of("%!@") != std::string_view::npos;
    if (!a.for_vrfy && !domain.empty() && !services_->is_local_domain(domain) && !routed_local &&
        services_->may_relay && services_->may_relay(peer_ip_, domain)) {
      RecipientVerdict v;
      v.kind = RecipientVerdict::Kind::kLocal;  // accepted; no mailbox: relayed
      feed_now(session_.on_recipient_result(std::move(v)));
      return;
    }
    if (!a.for_vrfy && (domain.empty() || !services_->is_local_domain(domain))) {
      // Not ours and not relayed for this client: RFC 5321 3.6.2, hostile-inputs #47-54.
      RecipientVerdict v;
      v.kind = RecipientVerdict::Kind::kError;
      v.error = permanent_error("5.7.1", "Relay access denied");
      feed_now(session_.on_recipient_result(std::move(v)));
      return;
    }
    services_->directory->resolve(
        a.address, [self = shared_from_this()](Result<directory::Resolution> r) {
          RecipientVerdict v;
          if (!r.ok()) {
            v.kind = RecipientVerdict::Kind::kError;
            v.error = r.error();
          } else if (r->kind == directory::RecipientKind::kLocalMailbox) {
            v.kind = RecipientVerdict::Kind::kLocal;
            v.mailbox = r->mailbox;
          } else {
            v.kind = RecipientVerdict::Kind::kUnknown;
          }
          asio::post(self->socket_.get_executor(), [self, v = std::move(v)]() mutable {
            if (!self->dead_) {
              self->run(self->session_.on_recipient_result(std::move(v)));
            }
          });
        });
  }
  void perform(BeginMessage&) {
    spool_error_.reset();
    auto w = services_->store->begin();
    Result<std::string> id = w.ok() ? Result<std::string>((*w)->id()) : Result<std::string>(w.error());
    if (w.ok()) {
      writer_ = std::move(w.value());
    }
    feed_now(session_.on_begin_result(std::move(id)));
  }
  void perform(BodyData& a) {
    if (!writer_ || spool_error_) {
      return;
    }
    if (auto r = writer_->write(a.bytes); !r.ok()) {
      spool_error_ = r.error();
    }
  }
  void perform(CommitMessage& a) {
    if (!writer_ || spool_error_) {
      Error e = spool_error_ ? *spool_error_ : transient_error("4.3.0", "Spool not open");
      writer_.reset();
      if (services_->counters != nullptr) {
        services_->counters->commit_failures++;
      }
      feed_now(session_.on_commit_result(Result<std::string>(std::move(e))));
      return;
    }
    services_->store->commit(
        std::move(writer_), std::move(a.envelope),
        [self = shared_from_this()](Result<std::string> id) {
          asio::post(self->socket_.get_executor(), [self, id = std::move(id)]() mutable {
            if (id.ok()) {
              if (self->services_->counters != nullptr) {
                self->services_->counters->messages++;
              }
              // Durable: hand it to the queue manager even if the client is gone.
              if (self->services_->on_queued) {
                self->services_->on_queued(id.value());
              }
            } else if (self->services_->counters != nullptr) {
              self->services_->counters->commit_failures++;
            }
            if (!self->dead_) {
              self->run(self->session_.on_commit_result(std::move(id)));
            }
          });
        });
  }
  void perform(AbortMessage&) {
    writer_.reset();
    spool_error_.reset();
  }
  void perform(BeginTls&) {
    if (tls_ctx_ == nullptr) {
      run(session_.on_tls_result(false));  // cannot happen: the session offers it only with a context
      return;
    }
    tls_pending_ = true;
    flush();  // the handshake starts once the 220 is out
  }

  // RFC 3207: the server handshake on the same socket; no read is outstanding (the
  // session stopped wanting input at STARTTLS), so the ClientHello is not eaten.
  void start_tls() {
    tls_pending_ = false;
    handshake(/*implicit=*/false);
  }

  // The server handshake, bounded by tls_handshake_timeout (a ClientHello trickled one
  // octet at a time does not extend it: hostile #14). Implicit TLS (RFC 8314): success
  // starts the session, failure closes without a word. STARTTLS: the session decides.
  void handshake(bool implicit) {
    if (tls_ctx_ == nullptr) {
      shutdown();  // cannot happen: implicit_tls listeners are built only with a context
      return;
    }
    tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, *tls_ctx_);
    line_timer_.cancel();
    write_timer_.expires_after(services_->tls_handshake_timeout);
    write_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (!ec && self && self->handshaking_) {
        // A peer that never finishes the handshake (hostile #14): a failed handshake too.
        if (self->services_->counters != nullptr) {
          self->services_->counters->tls_failures++;
        }
        log::info("smtp", self->peer_ip_ + ": TLS handshake deadline passed");
        self->shutdown();
      }
    });
    handshaking_ = true;
    tls_->async_handshake(asio::ssl::stream_base::server, [self = shared_from_this(), implicit](
                                                              boost::system::error_code ec) {
      self->handshaking_ = false;
      self->write_timer_.cancel();
      if (self->dead_) {
        return;
      }
      if (ec) {
        if (self->services_->counters != nullptr) {
          self->services_->counters->tls_failures++;
        }
        log::info("smtp", self->peer_ip_ + ": TLS handshake failed: " + ec.message());
        if (!implicit) {
          self->run(self->session_.on_tls_result(false));
        }
        self->shutdown();
        return;
      }
      if (self->services_->counters != nullptr) {
        self->services_->counters->tls_sessions++;
      }
      if (implicit) {
        self->begin_session();
      } else {
        self->run(self->session_.on_tls_result(true));
      }
    });
  }

  template <class Handler>
  void read_some(Handler&& h) {
    if (tls_) {
      tls_->async_read_some(asio::buffer(in_), std::forward<Handler>(h));
    } else {
      socket_.async_read_some(asio::buffer(in_), std::forward<Handler>(h));
    }
  }

  // A synchronous answer (space check, begin, relay refusal): its actions go before
  // anything still pending, through the same pump, so run() is never re-entered.
  void feed_now(Actions more) {
    pending_.insert(pending_.begin(), std::make_move_iterator(more.begin()),
                    std::make_move_iterator(more.end()));
  }

  void read_more() {
    if (reading_ || dead_ || closing_ || handshaking_ || tarpitting_ || session_.closed() ||
        !session_.wants_input() || out_.size() > services_->max_output_buffer) {
      return;
    }
    reading_ = true;
    read_some([self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
          self->reading_ = false;
          if (self->dead_) {
            return;
          }
          if (self->lingering_) {
            if (ec) {
              self->shutdown();
            } else {
              self->drain();
            }
            return;
          }
          if (ec) {
            self->run(self->session_.on_eof());
            self->shutdown();
            return;
          }
          self->run(self->session_.on_bytes(std::string_view(self->in_.data(), n)));
        });
  }

  void flush() {
    if (writing_ || dead_) {
      return;
    }
    if (out_.empty()) {
      if (closing_) {
        linger_close();
      } else if (tls_pending_) {
        start_tls();
      }
      return;
    }
    writing_ = true;
    sending_.swap(out_);
    out_.clear();
    write_timer_.expires_after(services_->write_timeout);
    write_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (!ec && self && self->writing_) {
        // The peer stopped reading (hostile-inputs #63): drop it, buffer stays bounded.
        self->shutdown();
      }
    });
    auto done = [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
      self->writing_ = false;
      self->write_timer_.cancel();
      if (ec) {
        self->shutdown();
        return;
      }
      self->sending_.clear();
      self->flush();
      self->read_more();
    };
    if (tls_) {
      asio::async_write(*tls_, asio::buffer(sending_), std::move(done));
    } else {
      asio::async_write(socket_, asio::buffer(sending_), std::move(done));
    }
  }

  // After our last reply: stop sending, then read and discard what the client still
  // sends for a moment, so our reply is not lost to a TCP reset (a client that pipelined
  // far ahead still sees the 421). Bounded by a short timer.
  void linger_close() {
    if (dead_ || lingering_) {
      return;
    }
    lingering_ = true;
    line_timer_.cancel();
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    write_timer_.expires_after(std::chrono::seconds(2));
    write_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) {
        self->shutdown();
      }
    });
    if (!reading_) {
      drain();
    }
  }
  void drain() {
    read_some([self = shared_from_this()](boost::system::error_code ec, std::size_t) {
      if (self->dead_) {
        return;
      }
      if (ec) {
        self->shutdown();
        return;
      }
      self->drain();
    });
  }

  void shutdown() {
    if (dead_) {
      return;
    }
    dead_ = true;
    writer_.reset();  // an unacknowledged spool file is discarded
    boost::system::error_code ignored;
    line_timer_.cancel();
    write_timer_.cancel();
    greet_timer_.cancel();
    tarpit_timer_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  tcp::socket socket_;
  std::shared_ptr<const ConnectionServices> services_;
  std::shared_ptr<SessionLimiter> limiter_;
  std::string peer_ip_;
  asio::steady_timer line_timer_, write_timer_, greet_timer_, tarpit_timer_;
  // The TLS context this connection was accepted with (kept across a reload).
  std::shared_ptr<asio::ssl::context> tls_ctx_;
  TarpitPolicy tarpit_;
  std::uint64_t errors_before_reply_ = 0;  // the session's errors when the last reply went out
  bool tarpitting_ = false, tarpit_served_ = false;
  ServerSession session_;
  std::array<char, 16384> in_{};
  std::string out_, sending_;
  std::deque<Action> pending_;
  std::unique_ptr<queue::SpoolWriter> writer_;
  std::optional<Error> spool_error_;
  bool pumping_ = false, reading_ = false, writing_ = false, closing_ = false, dead_ = false;
  bool lingering_ = false;
  bool tls_pending_ = false, handshaking_ = false;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;  // after STARTTLS, or from the start
};

std::string ip_string(const tcp::endpoint& ep) {
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  }
  return a.to_string();
}

}  // namespace

Listener::Listener(std::vector<asio::io_context*> contexts, tcp::endpoint ep,
                   ConnectionServices services)
    : contexts_(std::move(contexts)),
      endpoint_(ep),
      acceptor_(*contexts_.at(0)),
      retry_timer_(*contexts_.at(0)),
      services_(std::make_shared<const ConnectionServices>(std::move(services))),
      limiter_(std::make_shared<SessionLimiter>(services_->max_sessions,
                                                services_->max_sessions_per_ip)) {}

Listener::~Listener() { stop(); }

boost::system::error_code Listener::open() {
  boost::system::error_code ec;
  acceptor_.open(endpoint_.protocol(), ec);
  if (!ec) {
    acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor_.bind(endpoint_, ec);
  }
  if (!ec) {
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  }
  return ec;
}

tcp::endpoint Listener::local_endpoint() const {
  boost::system::error_code ec;
  return acceptor_.local_endpoint(ec);
}

void Listener::start() { accept_next(); }

void Listener::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  retry_timer_.cancel();
}

// The reply is written best-effort without blocking. A client of an implicit-TLS
// listener expects a ServerHello, not text: it is only closed.
void Listener::refuse(tcp::socket socket, std::string_view reply) {
  auto s = std::make_shared<tcp::socket>(std::move(socket));
  if (services_->implicit_tls) {
    boost::system::error_code ignored;
    s->close(ignored);
    return;
  }
  asio::async_write(*s, asio::buffer(reply.data(), reply.size()),
                    [s](boost::system::error_code, std::size_t) {
                      boost::system::error_code ignored;
                      s->close(ignored);
                    });
}

void Listener::accept_next() {
  auto* ctx = contexts_[next_++ % contexts_.size()];
  acceptor_.async_accept(*ctx, [this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) {
      return;
    }
    if (!ec) {
      boost::system::error_code e1, e2;
      auto remote = socket.remote_endpoint(e1);
      auto local = socket.local_endpoint(e2);
      if (!e1 && !e2) {
        std::string ip = ip_string(remote);
        if (services_->rate_limiter && !services_->rate_limiter->admit(ip)) {
          if (services_->counters != nullptr) {
            services_->counters->rejected_rate++;
          }
          refuse(std::move(socket),
                 "421 4.7.0 Too many connections from your address, try again later\r\n");
          accept_next();
          return;
        }
        auto verdict = limiter_->admit(ip);
        if (verdict == SessionLimiter::Verdict::kAdmitted) {
          if (services_->counters != nullptr) {
            services_->counters->accepted++;
          }
          socket.set_option(tcp::no_delay(true), e1);
          auto conn = std::make_shared<Connection>(std::move(socket), services_, limiter_, ip,
                                                   ip_string(local));
          asio::post(conn->executor(), [conn] { conn->start(); });
        } else {
          if (services_->counters != nullptr) {
            (verdict == SessionLimiter::Verdict::kTooManyFromIp ? services_->counters->rejected_per_ip
                                                                 : services_->counters->rejected_total)++;
          }
          // hostile-inputs #62: an immediate 421.
          refuse(std::move(socket), "421 4.7.0 Too many connections, try again later\r\n");
        }
      }
    } else {
      // Out of descriptors or similar: back off instead of spinning on the error.
      log::warn("smtp", "accept failed: " + ec.message());
      retry_timer_.expires_after(std::chrono::milliseconds(100));
      retry_timer_.async_wait([this](boost::system::error_code e) {
        if (!e) {
          accept_next();
        }
      });
      return;
    }
    accept_next();
  });
}

}  // namespace bh::smtp
