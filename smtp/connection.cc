#include "smtp/connection.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <deque>
#include <optional>
#include <type_traits>

#include "common/log.h"
#include "smtp/relay_client.h"

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
class Connection : public std::enable_shared_from_this<Connection>, public OdmrLink {
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
    release_held();
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
  void perform(CloseConnection& a) {
    closing_ = true;
    quit_ = a.after_quit;
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
        (a.authenticated || (services_->may_relay && services_->may_relay(peer_ip_, domain)))) {
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
        a.address, [self = shared_from_this(), authenticated = a.authenticated](Result<directory::Resolution> r) {
          RecipientVerdict v;
          if (!r.ok()) {
            v.kind = RecipientVerdict::Kind::kError;
            v.error = r.error();
          } else if (r->senders_must_authenticate && !authenticated) {
            v.kind = RecipientVerdict::Kind::kError;
            v.error = permanent_error("5.7.1", "this group accepts mail only from authenticated senders");
          } else if (r->kind == directory::RecipientKind::kLocalMailbox) {
            v.kind = RecipientVerdict::Kind::kLocal;
            v.mailbox = r->mailbox;
            v.home_server = r->home_server;
          } else if (r->kind == directory::RecipientKind::kCategorize) {
            v.kind = RecipientVerdict::Kind::kLocal;
            v.categorize = true;
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
  // One SASL step on the auth pool; the verdict comes back to this connection's thread,
  // a failure only after the tarpit delay.
  void perform(AuthStep& a) {
    using Kind = AuthVerdict::Kind;
    const auto& limiter = services_->auth_limiter;
    if (a.first) {
      exchange_.reset();
      if (limiter && limiter->blocked(peer_ip_)) {
        count(&ListenerCounters::auth_refused);
        feed_now(session_.on_auth_result(AuthVerdict{Kind::kRefused, {}, {}, false}));
        return;
      }
      if (services_->auth) {
        exchange_ = services_->auth->begin(session_.tls_active());
      }
    }
    if (!exchange_ || services_->auth_pool == nullptr) {
      feed_now(session_.on_auth_result(AuthVerdict{Kind::kTemporary, {}, {}, false}));
      return;
    }
    asio::post(*services_->auth_pool, [self = shared_from_this(), step = std::move(a)] {
      AuthVerdict v = self->exchange_->step(step);
      if (v.kind != Kind::kContinue) {
        self->exchange_.reset();
      }
      asio::post(self->socket_.get_executor(), [self, v = std::move(v)]() mutable {
        self->auth_verdict(std::move(v));
      });
    });
  }
  void perform(AuthAbort&) { exchange_.reset(); }
  void perform(RunEtrn& a) {
    EtrnReply r;
    if (services_->etrn_limiter && !services_->etrn_limiter->allow(peer_ip_)) {
      r = etrn_rate_limited_reply(a.request);
    } else if (services_->etrn) {
      auto result = services_->etrn(a.request);
      if (result.outcome == queue::EtrnOutcome::kStarted) {
        count(&ListenerCounters::etrn_runs);
      }
      r = etrn_reply(a.request, result);
    } else {
      queue::EtrnResult none;
      none.outcome = queue::EtrnOutcome::kNotAllowed;
      none.reason = "no queue runs here";
      r = etrn_reply(a.request, none);
    }
    feed_now(session_.on_etrn_result(std::move(r)));
  }
  void perform(LinkStateReceived& a) {
    if (!services_->on_link_state) {
      log::info("smtp", peer_ip_ + ": X-LINK2STATE from " + a.peer + ": " +
                            std::to_string(a.payload.size()) + " octets; no link-state engine here");
      feed_now(session_.on_link_state_result(std::nullopt));
      return;
    }
    services_->on_link_state(
        a.peer + " [" + peer_ip_ + "]", std::move(a.payload),
        [self = shared_from_this()](std::optional<std::string> reply) {
          asio::post(self->socket_.get_executor(), [self, reply = std::move(reply)]() mutable {
            if (!self->dead_) {
              self->run(self->session_.on_link_state_result(std::move(reply)));
            }
          });
        });
  }

  void count(std::atomic<std::uint64_t> ListenerCounters::*counter) {
    if (services_->counters != nullptr) {
      (services_->counters->*counter)++;
    }
  }

  void auth_verdict(AuthVerdict v) {
    if (dead_) {
      return;
    }
    if (v.kind == AuthVerdict::Kind::kSuccess) {
      count(&ListenerCounters::auth_successes);
    } else if (v.kind == AuthVerdict::Kind::kFailed) {
      count(&ListenerCounters::auth_failures);
    }
    if (v.kind == AuthVerdict::Kind::kFailed) {
      if (services_->auth_limiter) {
        services_->auth_limiter->failed(peer_ip_);
      }
      if (services_->auth_failure_delay.count() > 0) {
        auto timer = std::make_shared<asio::steady_timer>(socket_.get_executor());
        timer->expires_after(services_->auth_failure_delay);
        timer->async_wait([self = shared_from_this(), timer, v](boost::system::error_code) {
          if (!self->dead_) {
            self->run(self->session_.on_auth_result(v));
          }
        });
        return;
      }
    }
    run(session_.on_auth_result(std::move(v)));
  }

  // ---- ATRN / TURN: after the 250 this connection is the client (RFC 2645 §4) ----
  void perform(CheckAtrn& a) {
    AtrnVerdict v;
    if (services_->atrn_check) {
      v = services_->atrn_check(a);
    }
    feed_now(session_.on_atrn_result(std::move(v)));
  }
  void perform(TurnAround& a) {
    turn_domains_ = std::move(a.domains);
    turn_pending_ = true;
    flush();  // the roles reverse once the 250 is out
  }

  // Any thread: the queue hands over a job for one of our domains.
  void offer(queue::RemoteJob job, queue::RemoteDeliverer::Done done) override {
    asio::post(socket_.get_executor(), [self = shared_from_this(), job = std::move(job),
                                        done = std::move(done)]() mutable {
      if (self->dead_ || self->closing_) {
        done(hop_failure(job.recipients, transient_error("4.4.2", "ATRN connection closed"), ""));
        return;
      }
      self->turn_jobs_.push_back({std::move(job), std::move(done)});
      self->next_turn_job();
    });
  }

  void start_turn() {
    turn_pending_ = false;
    turned_ = true;
    count(&ListenerCounters::atrn_turns);
    line_timer_.cancel();
    log::info("smtp", peer_ip_ + ": ATRN by " + session_.authenticated_user() + ": reversing for " +
                          std::to_string(turn_domains_.size()) + " domain(s)");
    if (services_->odmr != nullptr) {
      services_->odmr->attach(turn_domains_,
                              std::static_pointer_cast<OdmrLink>(shared_from_this()));
    }
    turn_expected_ = services_->atrn_release ? services_->atrn_release(turn_domains_) : 0;
    turn_read();
    next_turn_job();
  }

  void turn_read() {
    if (reading_ || dead_ || closing_) {
      return;
    }
    reading_ = true;
    read_some([self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
      self->reading_ = false;
      if (self->dead_) {
        return;
      }
      if (ec) {
        if (self->client_) {
          self->client_run(self->client_->on_eof());
        }
        self->shutdown();
        return;
      }
      std::string_view bytes(self->in_.data(), n);
      if (self->client_ && !self->client_->finished()) {
        self->client_run(self->client_->on_bytes(bytes));
      } else if (self->turn_greeting_.size() + n <= 4096) {
        self->turn_greeting_.append(bytes);  // the 220, before the first job is here
      } else {
        self->shutdown();
        return;
      }
      self->turn_read();
    });
  }

  void next_turn_job() {
    if (client_ || dead_ || closing_ || !turned_) {
      return;
    }
    if (turn_jobs_.empty()) {
      if (turn_expected_ > 0 && turn_done_ >= turn_expected_) {
        end_turn();
        return;
      }
      greet_timer_.expires_after(services_->atrn_idle);
      greet_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
        auto self = weak.lock();
        if (!ec && self && !self->client_ && self->turn_jobs_.empty()) {
          self->end_turn();
        }
      });
      return;
    }
    greet_timer_.cancel();
    turn_job_ = std::move(turn_jobs_.front());
    turn_jobs_.pop_front();
    body_fd_ = ::open(turn_job_->job.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (body_fd_ < 0) {
      auto r = hop_failure(turn_job_->job.recipients,
                           transient_error("4.3.0", "cannot read the queue file"), "");
      auto done = std::move(turn_job_->done);
      turn_job_.reset();
      done(std::move(r));
      next_turn_job();
      return;
    }
    body_pos_ = 0;
    ClientConfig cfg;
    cfg.helo_name = services_->session.hostname;
    cfg.tls = TlsPolicy::kNever;  // the link is already what it is (TLS if STARTTLS ran)
    cfg.hold_open = true;
    cfg.body_chunk = 64u << 10;
    client_ = std::make_unique<ClientSession>(cfg, outbound_message(turn_job_->job));
    client_run(client_->start());
    if (turn_greeted_) {
      // The customer greeted once; each further transaction starts with a new EHLO on
      // the same connection, as if it had greeted again.
      client_run(client_->on_bytes("220 continue\r\n"));
    } else if (!turn_greeting_.empty()) {
      std::string g = std::move(turn_greeting_);
      turn_greeting_.clear();
      client_run(client_->on_bytes(g));
    }
  }

  void client_run(ClientActions actions) {
    std::deque<ClientAction> q(std::make_move_iterator(actions.begin()),
                               std::make_move_iterator(actions.end()));
    while (!q.empty() && !dead_) {
      ClientAction a = std::move(q.front());
      q.pop_front();
      ClientActions more;
      if (auto* b = std::get_if<SendBytes>(&a)) {
        out_.append(b->bytes);
        flush();
      } else if (auto* d = std::get_if<ArmDeadline>(&a)) {
        line_timer_.expires_after(d->after);
        line_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
          auto self = weak.lock();
          if (!ec && self && !self->dead_ && self->client_ && !self->client_->finished()) {
            self->client_run(self->client_->on_timeout());
          }
        });
      } else if (std::holds_alternative<StartTls>(a)) {
        more = client_->on_tls_failed();  // never asked for: TlsPolicy::kNever
      } else if (auto* nb = std::get_if<NeedBody>(&a)) {
        const auto& job = turn_job_->job;
        std::uint64_t left = job.body_length - body_pos_;
        std::string buf(static_cast<std::size_t>(std::min<std::uint64_t>(left, nb->max_bytes)), '\0');
        ssize_t n = buf.empty() ? 0
                                : ::pread(body_fd_, buf.data(), buf.size(),
                                          static_cast<off_t>(job.body_offset + body_pos_));
        if (n < 0 || static_cast<std::size_t>(n) != buf.size()) {
          more = client_->on_eof();  // the queue file cannot be read: end the attempt
        } else {
          body_pos_ += buf.size();
          more = client_->on_body_chunk(buf, body_pos_ == job.body_length);
        }
      } else if (auto* f = std::get_if<Finished>(&a)) {
        auto r = to_remote_result(f->result, turn_job_->job.recipients, "ATRN " + peer_ip_);
        auto done = std::move(turn_job_->done);
        turn_job_.reset();
        ++turn_done_;
        ::close(body_fd_);
        body_fd_ = -1;
        done(std::move(r));
      } else if (std::holds_alternative<Disconnect>(a)) {
        turn_failed("4.4.2", "ATRN connection ended");
        shutdown();
        return;
      }
      for (auto it = more.rbegin(); it != more.rend(); ++it) {
        q.push_front(std::move(*it));
      }
    }
    if (client_ && client_->finished() && client_->held_open()) {
      turn_greeted_ = true;
      client_.reset();
      next_turn_job();
    }
  }

  // Nothing more to send: QUIT, and close once it is out.
  void end_turn() {
    if (dead_ || closing_) {
      return;
    }
    if (services_->odmr != nullptr) {
      services_->odmr->detach(this);
    }
    out_.append("QUIT\r\n");
    closing_ = true;
    flush();
  }

  // Every job not yet finished fails transiently (it stays queued for the next ATRN).
  void turn_failed(const char* enhanced, const std::string& text) {
    if (services_->odmr != nullptr && turned_) {
      services_->odmr->detach(this);
    }
    if (turn_job_) {
      auto done = std::move(turn_job_->done);
      auto r = hop_failure(turn_job_->job.recipients, transient_error(enhanced, text), "");
      turn_job_.reset();
      done(std::move(r));
    }
    while (!turn_jobs_.empty()) {
      auto j = std::move(turn_jobs_.front());
      turn_jobs_.pop_front();
      j.done(hop_failure(j.job.recipients, transient_error(enhanced, text), ""));
    }
    if (body_fd_ >= 0) {
      ::close(body_fd_);
      body_fd_ = -1;
    }
  }

  void perform(BeginMessage&) {
    spool_error_.reset();
    release_held();
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
    if (services_->filter) {
      // Held for the arrival sinks; the session stops at max_message_size.
      if (held_.size() + a.bytes.size() > services_->session.max_message_size + (64u << 10)) {
        spool_error_ = permanent_error("5.3.4", "Error: message too big");
        release_held();
        return;
      }
      if (const auto& b = services_->held_bytes) {
        const std::uint64_t n = a.bytes.size();
        if (b->fetch_add(n) + n > services_->held_limit) {
          b->fetch_sub(n);
          spool_error_ = transient_error("4.3.1", "Insufficient system storage, try again later");
          release_held();
          return;
        }
        held_charged_ += n;
      }
      held_.append(a.bytes);
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
    if (services_->filter) {
      filter_then_commit(std::move(a.envelope));
      return;
    }
    commit(std::move(a.envelope));
  }

  // Arrival sinks: decide on the held message, then spool and commit it (or not).
  void filter_then_commit(queue::Envelope envelope) {
    std::string message = std::move(held_);
    held_.clear();
    services_->filter(std::move(envelope), std::move(message),
                      [self = shared_from_this()](MessageFilterResult r) {
                        asio::post(self->socket_.get_executor(), [self, r = std::move(r)]() mutable {
                          self->filtered(std::move(r));
                        });
                      },
                      socket_.get_executor());
  }

  // Gives the held bytes back to the node-wide budget.
  void release_held() {
    held_.clear();
    held_.shrink_to_fit();
    if (held_charged_ > 0 && services_->held_bytes) {
      services_->held_bytes->fetch_sub(held_charged_);
    }
    held_charged_ = 0;
  }

  void filtered(MessageFilterResult r) {
    release_held();  // the chain is done with the message
    if (dead_ || !writer_) {
      return;  // the client is gone; nothing was acknowledged
    }
    using Kind = MessageFilterResult::Kind;
    if (r.kind == Kind::kReject) {
      writer_.reset();
      run(session_.on_commit_result(Result<std::string>(std::move(r.error))));
      return;
    }
    if (r.kind == Kind::kDiscard) {
      std::string id = writer_->id();
      writer_.reset();
      run(session_.on_commit_result(Result<std::string>(std::move(id))));
      return;
    }
    if (r.envelope.recipients.empty()) {
      writer_.reset();
      run(session_.on_commit_result(
          Result<std::string>(permanent_error("5.7.1", "No recipients left after filtering"))));
      return;
    }
    if (auto w = writer_->write(r.message); !w.ok()) {
      spool_error_ = w.error();
      writer_.reset();
      if (services_->counters != nullptr) {
        services_->counters->commit_failures++;
      }
      run(session_.on_commit_result(Result<std::string>(*spool_error_)));
      return;
    }
    r.envelope.body_size = r.message.size();
    commit(std::move(r.envelope), std::move(r.hold));
  }

  void commit(queue::Envelope envelope, std::string hold = {}) {
    std::optional<queue::Envelope> held;  // a quarantined message: on_held gets its envelope
    if (!hold.empty() && services_->on_held) {
      held = envelope;
    }
    services_->store->commit(
        std::move(writer_), std::move(envelope),
        [self = shared_from_this(), held = std::move(held),
         hold = std::move(hold)](Result<std::string> id) mutable {
          asio::post(self->socket_.get_executor(), [self, id = std::move(id), held = std::move(held),
                                                    hold = std::move(hold)]() mutable {
            if (id.ok()) {
              if (self->services_->counters != nullptr) {
                self->services_->counters->messages++;
              }
              // Durable: hand it to the queue manager even if the client is gone.
              if (held) {
                held->id = id.value();
                self->services_->on_held(id.value(), *held, hold);
              } else if (self->services_->on_queued) {
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
    release_held();
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
        // After QUIT with nothing behind it, not even unread in the kernel, the 221 is
        // safe from a reset: close now, as the client expects. Anything else lingers.
        boost::system::error_code ec;
        if (quit_ && !tls_ && socket_.available(ec) == 0 && !ec) {
          shutdown(/*orderly=*/true);
        } else {
          linger_close();
        }
      } else if (tls_pending_) {
        start_tls();
      } else if (turn_pending_) {
        start_turn();
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

  // orderly: after QUIT, one close(2) (FIN); otherwise shutdown(2) both ways first.
  void shutdown(bool orderly = false) {
    if (dead_) {
      return;
    }
    dead_ = true;
    writer_.reset();  // an unacknowledged spool file is discarded
    turn_failed("4.4.2", "ATRN connection lost");
    client_.reset();
    boost::system::error_code ignored;
    line_timer_.cancel();
    write_timer_.cancel();
    greet_timer_.cancel();
    tarpit_timer_.cancel();
    if (!orderly) {
      socket_.shutdown(tcp::socket::shutdown_both, ignored);
    }
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
  std::string held_;  // the message while arrival sinks are configured
  std::uint64_t held_charged_ = 0;  // of held_bytes, until the chain has decided
  std::unique_ptr<AuthBackend::Exchange> exchange_;  // the SASL exchange of AUTH/X-EXPS
  // ATRN: the connection as a client (RFC 2645).
  struct TurnJob {
    queue::RemoteJob job;
    queue::RemoteDeliverer::Done done;
  };
  bool turn_pending_ = false, turned_ = false, turn_greeted_ = false;
  std::vector<std::string> turn_domains_;
  std::deque<TurnJob> turn_jobs_;
  std::optional<TurnJob> turn_job_;
  std::unique_ptr<ClientSession> client_;
  std::string turn_greeting_;
  std::size_t turn_expected_ = 0, turn_done_ = 0;
  int body_fd_ = -1;
  std::uint64_t body_pos_ = 0;
  std::optional<Error> spool_error_;
  bool pumping_ = false, reading_ = false, writing_ = false, closing_ = false, dead_ = false;
  bool quit_ = false;  // closing after QUIT (CloseConnection::after_quit)
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
        if (services_->rate_limiter && services_->rate_exempt.count(ip) == 0 &&
            !services_->rate_limiter->admit(ip)) {
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
