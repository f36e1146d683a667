#include "smtp/client_connection.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <type_traits>
#include <variant>

namespace bh::smtp {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

std::string RelayTarget::remote_mta() const {
  return host + " [" + (unix_path.empty() ? ip : "unix:" + unix_path) + "]";
}

std::string RelayTarget::str() const {
  if (!unix_path.empty()) {
    return host + "[unix:" + unix_path + "]";
  }
  return host + "[" + ip + "]:" + std::to_string(port);
}

std::string tls_error_text() {
  std::string s;
  while (unsigned long e = ERR_get_error()) {
    std::array<char, 256> buf{};
    ERR_error_string_n(e, buf.data(), buf.size());
    if (!s.empty()) {
      s += "; ";
    }
    s += buf.data();
  }
  return s;
}

namespace {

// One connection driving one ClientSession, and then, when that session ends held open,
// the next ones (HeldConnection). Every member is touched only on the strand of the job
// that opened it (`usable_` and `sessions_` are read from anywhere). Kept alive by its
// pending operations, and by whoever holds it; reports once per session through `report`.
// `Protocol` is asio::ip::tcp or asio::local::stream_protocol (a unix socket).
template <class Protocol>
class Attempt : public HeldConnection, public std::enable_shared_from_this<Attempt<Protocol>> {
 public:
  using Socket = typename Protocol::socket;
  using Report = AttemptReport;

  Attempt(ClientStrand strand, ssl::context& tls, AttemptSetup setup, ClientConfig config,
          OutboundMessage message, Report report, std::chrono::milliseconds idle_limit)
      : strand_(strand),
        report_strand_(strand),
        stream_(strand, tls),
        timer_(strand),
        setup_(std::move(setup)),
        session_(std::make_unique<ClientSession>(std::move(config), std::move(message))),
        report_(std::move(report)),
        idle_limit_(idle_limit) {}

  bool usable() const override { return usable_.load(); }
  std::size_t sessions() const override { return sessions_.load(); }

  void reuse(ClientStrand report_strand, AttemptSetup setup, ClientConfig config,
             OutboundMessage message, Report report) override {
    asio::post(strand_, [self = this->shared_from_this(), report_strand, setup = std::move(setup),
                         config = std::move(config), message = std::move(message),
                         report = std::move(report)]() mutable {
      self->report_strand_ = report_strand;
      self->take_up(std::move(setup), std::move(config), std::move(message), std::move(report));
    });
  }

  void close() override {
    asio::post(strand_, [self = this->shared_from_this()] {
      if (self->held_ && !self->dead_) {
        self->held_ = false;
        self->usable_ = false;
        self->run(self->session_->close_held());
      }
    });
  }

  bool closed() const override { return closed_; }

  void start() {
    typename Protocol::endpoint ep;
    if constexpr (std::is_same_v<Protocol, tcp>) {
      boost::system::error_code ec;
      auto addr = asio::ip::make_address(setup_.target.ip, ec);
      if (ec) {
        fail_connect(transient_error("4.4.1", "bad address " + setup_.target.str()));
        return;
      }
      ep = tcp::endpoint(addr, setup_.target.port);
      auto src = setup_.source_ip.empty() ? asio::ip::address()
                                          : asio::ip::make_address(setup_.source_ip, ec);
      if (!setup_.source_ip.empty() && !ec && src.is_v4() == addr.is_v4()) {
        socket().open(ep.protocol(), ec);
        if (!ec) {
          socket().bind(tcp::endpoint(src, 0), ec);
        }
        if (ec) {
          fail_connect(transient_error("4.4.1", "cannot connect from " + setup_.source_ip + ": " +
                                                    ec.message()));
          return;
        }
      }
    } else {
      ep = typename Protocol::endpoint(setup_.target.unix_path);
    }
    std::uint64_t gen = ++timer_gen_;
    timer_.expires_after(setup_.connect_timeout);
    timer_.async_wait([self = this->shared_from_this(), gen](boost::system::error_code e) {
      if (!e && gen == self->timer_gen_ && !self->connected_ && !self->dead_) {
        self->timed_out_ = true;
        boost::system::error_code ignored;
        self->socket().close(ignored);
      }
    });
    socket().async_connect(ep, [self = this->shared_from_this()](boost::system::error_code e) {
      self->on_connect(e);
    });
  }

 private:
  Socket& socket() { return stream_.next_layer(); }

  void fail_connect(Error e) {
    dead_ = true;
    timer_.cancel();
    AttemptOutcome o;
    o.target = setup_.target;
    o.connect_error = std::move(e);
    deliver_report(std::move(o));
  }

  void on_connect(boost::system::error_code ec) {
    if (dead_) {
      return;
    }
    if (ec || timed_out_) {
      std::string why = timed_out_ ? "timed out" : ec.message();
      fail_connect(transient_error("4.4.1", "connect to " + setup_.target.str() + ": " + why));
      return;
    }
    connected_ = true;
    ++timer_gen_;
    timer_.cancel();
    if constexpr (std::is_same_v<Protocol, tcp>) {
      boost::system::error_code ignored;
      socket().set_option(tcp::no_delay(true), ignored);
    }
    prepare_tls();
    ++sessions_;
    run(session_->start());
  }

  // The next session on this held connection (HeldConnection::reuse), on the strand.
  void take_up(AttemptSetup setup, ClientConfig config, OutboundMessage message, Report report) {
    if (dead_ || !held_) {
      // The server closed it (or it timed out idle) after it was handed out: the session
      // ends as if the connection were lost before MAIL, and the caller opens a new one.
      ClientSession gone(std::move(config), std::move(message));
      AttemptOutcome o;
      o.target = setup_.target;
      o.connected = true;
      o.reused = true;
      for (auto& a : gone.on_eof()) {
        if (auto* f = std::get_if<Finished>(&a)) {
          o.result = std::move(f->result);
        }
      }
      report_ = std::move(report);
      deliver_report(std::move(o));
      return;
    }
    held_ = false;
    usable_ = false;
    ++timer_gen_;  // the idle deadline no longer applies
    timer_.cancel();
    HeldState state{session_->capabilities(), tls_, session_->result().authenticated};
    const RelayTarget target = setup_.target;
    TlsSessionCache* const sessions = setup_.tls_sessions;
    setup_ = std::move(setup);
    setup_.target = target;  // the same server by contract; the TLS session key stays
    setup_.tls_sessions = sessions;
    session_ = std::make_unique<ClientSession>(std::move(config), std::move(message));
    report_ = std::move(report);
    body_pos_ = 0;
    local_error_.reset();
    tls_error_.clear();
    tls_resumed_ = false;
    reused_ = true;
    ++sessions_;
    run(session_->start_held(state));
  }

  // SNI and peer verification, set before the session can ask for the handshake.
  void prepare_tls() {
    SSL* ssl = stream_.native_handle();
    const auto& t = setup_.target;
    if (!t.host_is_ip) {
      SSL_set_tlsext_host_name(ssl, t.host.c_str());  // RFC 6066 §3: names only
    }
    if (setup_.tls_verify) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      if (t.host_is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(param, t.ip.c_str());
      } else {
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        X509_VERIFY_PARAM_set1_host(param, t.host.c_str(), 0);
      }
      SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
    } else {
      SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
    }
    if (setup_.tls_sessions != nullptr) {
      session_key_ = TlsSessionCache::key(t.str(), setup_.tls_verify);
      if (SSL_SESSION* cached = setup_.tls_sessions->get(session_key_)) {
        // A copy again (see keep_tls_session): this connection's end must not mark the
        // cached session, which other connections may be offering.
        if (SSL_SESSION* copy = SSL_SESSION_dup(cached)) {
          SSL_set_session(ssl, copy);  // takes its own reference
          SSL_SESSION_free(copy);
        }
        SSL_SESSION_free(cached);
      }
    }
  }

  // At the end of a connection whose handshake succeeded: its session (with any ticket
  // the server sent after the handshake) for the next connection to this target.
  void keep_tls_session() {
    if (tls_ && setup_.tls_sessions != nullptr && !session_key_.empty()) {
      // A copy: OpenSSL marks the connection's own session not resumable when the SSL is
      // freed without a close_notify sent (ssl_clear_bad_session), which is how SMTP
      // connections end after QUIT; a copy stored now is not touched by that.
      if (SSL_SESSION* own = SSL_get1_session(stream_.native_handle())) {
        setup_.tls_sessions->put(session_key_, SSL_SESSION_dup(own));
        SSL_SESSION_free(own);
      }
      session_key_.clear();
    }
  }

  // Performs actions in order; an action that must follow the previous write (NeedBody,
  // StartTls) waits for it, and the pump resumes when the write completes.
  void run(ClientActions actions) {
    for (auto& a : actions) {
      pending_.push_back(std::move(a));
    }
    pump();
  }

  void pump() {
    if (pumping_) {
      return;
    }
    pumping_ = true;
    while (!pending_.empty() && !dead_) {
      ClientAction& front = pending_.front();
      bool after_write =
          std::holds_alternative<NeedBody>(front) || std::holds_alternative<StartTls>(front);
      if (after_write && (writing_ || !out_.empty())) {
        break;
      }
      ClientAction a = std::move(front);
      pending_.pop_front();
      std::visit([this](auto& act) { this->perform(act); }, a);
    }
    pumping_ = false;
    read_more();
  }

  void perform(SendBytes& a) {
    out_.append(a.bytes);
    flush();
  }
  void perform(ArmDeadline& a) {
    // A wait that already expired is not cancelled by expires_after(): its handler may
    // still run with success, so each wait carries its generation.
    std::uint64_t gen = ++timer_gen_;
    timer_.expires_after(a.after);
    timer_.async_wait([self = this->shared_from_this(), gen](boost::system::error_code ec) {
      if (!ec && gen == self->timer_gen_ && !self->dead_ && !self->session_->closed() &&
          !self->held_) {
        self->run(self->session_->on_timeout());
      }
    });
  }
  void perform(StartTls&) {
    handshaking_ = true;
    stream_.async_handshake(
        ssl::stream_base::client, [self = this->shared_from_this()](boost::system::error_code ec) {
          self->handshaking_ = false;
          if (self->dead_ || self->session_->closed()) {
            return;
          }
          if (ec) {
            std::string detail = tls_error_text();
            self->tls_error_ = detail.empty() ? ec.message() : detail;
            if (SSL_get_verify_result(self->stream_.native_handle()) != X509_V_OK) {
              self->tls_error_ += std::string(" (certificate: ") +
                                  X509_verify_cert_error_string(
                                      SSL_get_verify_result(self->stream_.native_handle())) +
                                  ")";
            }
            if (self->setup_.tls_sessions != nullptr && !self->session_key_.empty()) {
              self->setup_.tls_sessions->forget(self->session_key_);  // stale, or the server changed
              self->session_key_.clear();
            }
            self->run(self->session_->on_tls_failed());
            return;
          }
          self->tls_ = true;
          self->tls_resumed_ = SSL_session_reused(self->stream_.native_handle()) == 1;
          self->run(self->session_->on_tls_established());
        });
  }
  void perform(NeedBody& a) {
    std::uint64_t left = setup_.body_length - body_pos_;
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(left, a.max_bytes));
    chunk_.resize(want);
    std::size_t got = 0;
    while (got < want) {
      ssize_t n = ::pread(setup_.body_fd, chunk_.data() + got, want - got,
                          static_cast<off_t>(setup_.body_offset + body_pos_ + got));
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        local_error_ = transient_error("4.3.0", std::string("cannot read the queue file: ") +
                                                    (n < 0 ? std::strerror(errno) : "short file"));
        // Never end a message we could not read: the session takes it as a lost
        // connection (Finished, then Disconnect), ahead of anything still pending.
        feed_now(session_->on_eof());
        return;
      }
      got += static_cast<std::size_t>(n);
    }
    body_pos_ += got;
    feed_now(session_->on_body_chunk(chunk_, body_pos_ == setup_.body_length));
  }
  // Actions answering the one being performed go before anything still pending, so the
  // session's order is kept and run() is never re-entered.
  void feed_now(ClientActions more) {
    pending_.insert(pending_.begin(), std::make_move_iterator(more.begin()),
                    std::make_move_iterator(more.end()));
  }
  void perform(Finished& a) {
    AttemptOutcome o;
    o.target = setup_.target;
    o.connected = true;
    o.tls_resumed = tls_resumed_;
    o.reused = reused_;
    o.result = std::move(a.result);
    if (local_error_) {
      for (auto& r : o.result.recipients) {
        if (r.status == DeliveryStatus::kTransient) {
          r.code = 0;
          r.enhanced = local_error_->enhanced;
          r.text = local_error_->message;
        }
      }
      o.result.hop_error = local_error_;
      o.result.hop_code = 0;
    } else if (!tls_error_.empty() && o.result.hop_error &&
               o.result.hop_error->enhanced == "4.7.5") {
      o.result.hop_error->message += ": " + tls_error_;
      for (auto& r : o.result.recipients) {
        if (r.enhanced == "4.7.5" && r.code == 0) {
          r.text += ": " + tls_error_;
        }
      }
    }
    if (session_->held_open() && !local_error_ && !dead_) {
      hold(o);
    }
    deliver_report(std::move(o));
  }
  void perform(Disconnect&) { shutdown(); }

  // The session ended in step without QUIT: idle until taken up again (reuse) or until
  // `idle_limit_` passes, then QUIT. Reading goes on: an EOF or any reply ends it.
  void hold(AttemptOutcome& o) {
    held_ = true;
    usable_ = true;
    o.held = this->shared_from_this();
    std::uint64_t gen = ++timer_gen_;
    timer_.expires_after(idle_limit_);
    timer_.async_wait([self = this->shared_from_this(), gen](boost::system::error_code ec) {
      if (!ec && gen == self->timer_gen_ && self->held_ && !self->dead_) {
        self->held_ = false;
        self->usable_ = false;
        self->run(self->session_->close_held());
      }
    });
  }

  void deliver_report(AttemptOutcome o) {
    if (!report_) {
      return;
    }
    // Posted, so the job never runs inside this attempt's pump.
    asio::post(report_strand_,
               [report = std::move(report_), o = std::move(o)]() mutable { report(std::move(o)); });
    report_ = nullptr;
  }

  bool tls_pending() const {
    return std::any_of(pending_.begin(), pending_.end(),
                       [](const ClientAction& a) { return std::holds_alternative<StartTls>(a); });
  }

  void read_more() {
    // No read during the handshake, nor while a StartTls waits for its write: octets
    // read then would be plaintext that must never be fed (RFC 3207 §4.2).
    if (reading_ || dead_ || handshaking_ || session_->closed() || tls_pending()) {
      return;
    }
    reading_ = true;
    auto handler = [self = this->shared_from_this()](boost::system::error_code ec, std::size_t n) {
      self->reading_ = false;
      if (self->dead_ || self->session_->closed()) {
        return;
      }
      if (ec) {
        self->run(self->session_->on_eof());
        self->shutdown();
        return;
      }
      self->run(self->session_->on_bytes(std::string_view(self->in_.data(), n)));
    };
    if (tls_) {
      stream_.async_read_some(asio::buffer(in_), std::move(handler));
    } else {
      socket().async_read_some(asio::buffer(in_), std::move(handler));
    }
  }

  void flush() {
    if (writing_ || dead_ || out_.empty() || handshaking_) {
      return;
    }
    writing_ = true;
    sending_.swap(out_);
    out_.clear();
    auto handler = [self = this->shared_from_this()](boost::system::error_code ec, std::size_t) {
      self->writing_ = false;
      if (self->dead_) {
        return;
      }
      if (ec) {
        if (!self->session_->closed()) {
          self->run(self->session_->on_eof());
        }
        self->shutdown();
        return;
      }
      self->sending_.clear();
      self->flush();
      self->pump();
    };
    if (tls_) {
      asio::async_write(stream_, asio::buffer(sending_), std::move(handler));
    } else {
      asio::async_write(socket(), asio::buffer(sending_), std::move(handler));
    }
  }

  void shutdown() {
    if (dead_) {
      return;
    }
    keep_tls_session();
    dead_ = true;
    held_ = false;
    usable_ = false;
    pending_.clear();
    timer_.cancel();
    boost::system::error_code ignored;
    socket().shutdown(Socket::shutdown_both, ignored);
    socket().close(ignored);
    closed_ = true;
  }

  ClientStrand strand_;
  ClientStrand report_strand_;  // the strand of the job this session reports to
  ssl::stream<Socket> stream_;
  asio::steady_timer timer_;
  AttemptSetup setup_;
  std::unique_ptr<ClientSession> session_;
  Report report_;
  std::chrono::milliseconds idle_limit_;
  std::atomic<bool> usable_{false};
  std::atomic<std::size_t> sessions_{0};
  std::atomic<bool> closed_{false};
  bool held_ = false, reused_ = false;
  std::array<char, 16384> in_{};
  std::string out_, sending_, chunk_;
  std::deque<ClientAction> pending_;
  std::uint64_t body_pos_ = 0;
  std::uint64_t timer_gen_ = 0;
  std::optional<Error> local_error_;
  std::string tls_error_;
  std::string session_key_;  // TlsSessionCache key, once a session may be kept
  bool tls_resumed_ = false;
  bool connected_ = false, timed_out_ = false, dead_ = false, pumping_ = false;
  bool reading_ = false, writing_ = false, handshaking_ = false, tls_ = false;
};

}  // namespace

void HeldConnections::start(const std::string& key, bool reuse, ClientStrand strand,
                            ssl::context& tls, AttemptSetup setup, ClientConfig config,
                            OutboundMessage message, AttemptReport report) {
  bool quitting = false;
  {
    std::lock_guard lock(mu_);
    quitting = quitting_;
  }
  if (reuse && max_messages_ > 1 && !quitting) {
    if (auto held = take(key)) {
      config.hold_open = held->sessions() + 1 < max_messages_;
      held->reuse(strand, std::move(setup), std::move(config), std::move(message),
                  std::move(report));
      return;
    }
  }
  config.hold_open = max_messages_ > 1 && !quitting;
  start_attempt(strand, tls, std::move(setup), std::move(config), std::move(message),
                std::move(report), idle_);
}

void HeldConnections::keep(const std::string& key, AttemptOutcome& outcome) {
  if (outcome.held && !put(key, outcome.held)) {
    outcome.held->close();
  }
  outcome.held.reset();
}

std::shared_ptr<HeldConnection> HeldConnections::take(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = held_.find(key);
  if (it == held_.end()) {
    return nullptr;
  }
  auto& list = it->second;
  std::shared_ptr<HeldConnection> found;
  while (!list.empty() && !found) {
    auto c = std::move(list.back());
    list.pop_back();
    --total_;
    if (c->usable()) {
      found = std::move(c);
    }
  }
  if (list.empty()) {
    held_.erase(it);
  }
  return found;
}

bool HeldConnections::put(const std::string& key, std::shared_ptr<HeldConnection> connection) {
  std::lock_guard lock(mu_);
  if (quitting_) {
    return false;  // the caller closes it (QUIT)
  }
  if (total_ >= total_cap_) {
    sweep();
    if (total_ >= total_cap_) {
      return false;
    }
  }
  auto& list = held_[key];
  total_ -= std::erase_if(list, [](const auto& c) { return !c->usable(); });
  if (list.size() >= per_key_) {
    if (list.empty()) {
      held_.erase(key);
    }
    return false;
  }
  list.push_back(std::move(connection));
  ++total_;
  return true;
}

void HeldConnections::sweep() {
  for (auto it = held_.begin(); it != held_.end();) {
    total_ -= std::erase_if(it->second, [](const auto& c) { return !c->usable(); });
    it = it->second.empty() ? held_.erase(it) : std::next(it);
  }
}

std::size_t HeldConnections::usable() const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& [key, list] : held_) {
    n += static_cast<std::size_t>(
        std::count_if(list.begin(), list.end(), [](const auto& c) { return c->usable(); }));
  }
  return n;
}

void HeldConnections::clear() {
  std::lock_guard lock(mu_);
  held_.clear();
  closing_.clear();
  total_ = 0;
}

void HeldConnections::quit_all() {
  std::vector<std::shared_ptr<HeldConnection>> all;
  {
    std::lock_guard lock(mu_);
    quitting_ = true;
    for (auto& [key, list] : held_) {
      for (auto& c : list) {
        all.push_back(c);
        closing_.push_back(std::move(c));
      }
    }
    held_.clear();
    total_ = 0;
  }
  for (auto& c : all) {
    c->close();  // a connection already gone or closing ignores it
  }
}

std::size_t HeldConnections::closing() const {
  std::lock_guard lock(mu_);
  return static_cast<std::size_t>(
      std::count_if(closing_.begin(), closing_.end(), [](const auto& c) { return !c->closed(); }));
}

bool retry_on_new_connection(const AttemptOutcome& o) {
  if (!o.reused || !o.result.hop_error || !o.result.hop_error->transient()) {
    return false;
  }
  if (!o.result.mail_sent) {
    return true;
  }
  return o.result.hop_code == 421 &&
         std::none_of(o.result.recipients.begin(), o.result.recipients.end(),
                      [](const RecipientOutcome& r) { return r.status == DeliveryStatus::kDelivered; });
}

void start_attempt(ClientStrand strand, ssl::context& tls, AttemptSetup setup, ClientConfig config,
                   OutboundMessage message, AttemptReport report,
                   std::chrono::milliseconds idle_limit) {
  if (setup.target.unix_path.empty()) {
    std::make_shared<Attempt<tcp>>(strand, tls, std::move(setup), std::move(config),
                                   std::move(message), std::move(report), idle_limit)
        ->start();
  } else {
    std::make_shared<Attempt<asio::local::stream_protocol>>(strand, tls, std::move(setup),
                                                            std::move(config), std::move(message),
                                                            std::move(report), idle_limit)
        ->start();
  }
}

}  // namespace bh::smtp
