#include "smtp/relay_client.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cerrno>
#include <cstring>
#include <algorithm>
#include <deque>
#include <fstream>

#include "common/log.h"

namespace bh::smtp {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

// ---- Pure pieces ----

Result<std::vector<RelayTarget>> smart_host_targets(const routing::Connector& connector) {
  std::vector<RelayTarget> out;
  for (const auto& h : connector.smart_hosts) {
    if (!h.is_ip) {
      // A name would need an A/AAAA lookup through the configured DNS servers, which the
      // MxResolver does not offer on its own (resolve() follows MX records).
      return transient_error("4.3.5", "connector " + connector.name + ": smart host " + h.str() +
                                          " is a host name; only IP literals are supported");
    }
    RelayTarget t;
    t.host = h.host;
    t.ip = h.host;
    t.host_is_ip = true;
    t.port = h.port != 0 ? h.port : connector.settings.port;
    out.push_back(std::move(t));
  }
  if (out.empty()) {
    return transient_error("4.3.5", "connector " + connector.name + " has no smart hosts");
  }
  return out;
}

std::vector<RelayTarget> mx_targets(const std::vector<routing::MxHost>& hosts, std::uint16_t port) {
  std::vector<RelayTarget> out;
  for (const auto& h : hosts) {
    for (const auto& a : h.addresses) {
      RelayTarget t;
      t.host = h.host;
      t.ip = a;
      t.port = port;
      out.push_back(std::move(t));
    }
  }
  return out;
}

Result<void> check_connector(const routing::Connector& connector) {
  if (connector.kind == routing::ConnectorKind::kSmartHost) {
    auto t = smart_host_targets(connector);
    if (!t.ok()) {
      return t.error();
    }
  }
  return Ok{};
}

bool try_next_target(const ClientResult& result) {
  if (!result.hop_error || result.mail_sent) {
    return false;
  }
  if (result.hop_error->transient()) {
    return true;
  }
  // Permanent before MAIL: a 5xx greeting / EHLO / HELO reply moves on; a verdict of our
  // own from the server's capabilities (hop_code 0) is about the message and final.
  return result.hop_code >= 500;
}

namespace {

queue::RemoteStatus status_of(DeliveryStatus s) {
  switch (s) {
    case DeliveryStatus::kDelivered:
      return queue::RemoteStatus::kDelivered;
    case DeliveryStatus::kPermanent:
      return queue::RemoteStatus::kPermanent;
    case DeliveryStatus::kTransient:
      break;
  }
  return queue::RemoteStatus::kTransient;
}

std::string reply_text(int code, const std::string& enhanced, const std::string& text) {
  std::string s;
  if (code != 0) {
    s = std::to_string(code) + " ";
  }
  s += enhanced;
  if (!text.empty()) {
    s += " " + text;
  }
  return s;
}

}  // namespace

queue::RemoteResult to_remote_result(const ClientResult& result,
                                     const std::vector<queue::RemoteJob::Rcpt>& recipients,
                                     std::string remote_mta) {
  BH_CHECK(result.recipients.size() == recipients.size());
  queue::RemoteResult r;
  r.remote_mta = std::move(remote_mta);
  r.dsn_passed = result.dsn_passed;
  r.hop_error = result.hop_error;
  for (std::size_t i = 0; i < recipients.size(); ++i) {
    const auto& o = result.recipients[i];
    queue::RemoteRecipientResult rr;
    rr.index = recipients[i].index;
    rr.status = status_of(o.status);
    rr.enhanced = o.enhanced;
    rr.reply = reply_text(o.code, o.enhanced, o.text);
    r.recipients.push_back(std::move(rr));
  }
  return r;
}

queue::RemoteResult hop_failure(const std::vector<queue::RemoteJob::Rcpt>& recipients,
                                const Error& error, std::string remote_mta) {
  queue::RemoteResult r;
  r.remote_mta = std::move(remote_mta);
  r.hop_error = error;
  for (const auto& rc : recipients) {
    queue::RemoteRecipientResult rr;
    rr.index = rc.index;
    rr.status =
        error.transient() ? queue::RemoteStatus::kTransient : queue::RemoteStatus::kPermanent;
    rr.enhanced = error.enhanced;
    rr.reply = reply_text(0, error.enhanced, error.message);
    r.recipients.push_back(std::move(rr));
  }
  return r;
}

OutboundMessage outbound_message(const queue::RemoteJob& job) {
  OutboundMessage m;
  m.sender = job.sender;
  m.body = job.body == queue::BodyType::kUnspecified ? queue::BodyType::k7Bit : job.body;
  m.ret = job.ret;
  m.envid = job.envid;
  m.smtputf8 = job.smtputf8;
  m.size = job.body_length;
  for (const auto& r : job.recipients) {
    m.recipients.push_back(OutboundRecipient{r.address, r.notify, r.orcpt});
  }
  return m;
}

Xexch50Props next_hop_properties(const queue::RemoteJob& job, const std::string& node_id,
                                 const std::string& organization) {
  Xexch50Props p;
  p.organization = organization;
  // Recipients this node's categorizer made (a group's members) are new recipients: their
  // way starts here, and may pass nodes the group passed on its way to its expansion
  // server. A job of only such recipients starts a new hop list.
  const bool new_leg = !job.recipients.empty() &&
                       std::all_of(job.recipients.begin(), job.recipients.end(),
                                   [](const queue::RemoteJob::Rcpt& r) { return r.expanded; });
  if (!job.xexch50.empty()) {
    if (auto got = decode_xexch50_props(job.xexch50); got.ok()) {
      if (!new_leg) {
        p.hops = std::move(got->hops);
      }
      p.categorized = got->categorized;
    }
  }
  p.hops.push_back(node_id);
  for (const auto& r : job.recipients) {
    p.recipients.push_back({r.home_server, r.expanded});
    p.categorized = p.categorized || r.expanded;
  }
  return p;
}

Result<std::string> read_password_file(const std::string& path) {
  constexpr std::size_t kMax = 4096;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return transient_error(
        "4.7.0", "cannot open the AUTH password file " + path + ": " + std::strerror(errno));
  }
  std::string data(kMax + 1, '\0');
  std::size_t have = 0;
  for (;;) {
    ssize_t n = ::read(fd, data.data() + have, data.size() - have);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return transient_error(
          "4.7.0", "cannot read the AUTH password file " + path + ": " + std::strerror(e));
    }
    if (n == 0 || have + static_cast<std::size_t>(n) == data.size()) {
      have += static_cast<std::size_t>(n);
      break;
    }
    have += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (have > kMax) {
    return transient_error("4.7.0", "the AUTH password file " + path + " is larger than 4 KiB");
  }
  data.resize(have);
  data = data.substr(0, data.find_first_of("\r\n"));
  if (data.empty()) {
    return transient_error("4.7.0", "the AUTH password file " + path + " is empty");
  }
  return data;
}

// ---- Shared state ----

struct SmtpRelay::Shared {
  Shared(asio::io_context& io_, TableSource t, routing::MxResolver* r, RelayOptions o)
      : io(io_),
        strand(asio::make_strand(io_)),
        tables(std::move(t)),
        resolver(r),
        options(std::move(o)),
        tls(ssl::context::tls_client) {}

  asio::io_context& io;
  asio::strand<asio::io_context::executor_type> strand;  // active / waiting
  TableSource tables;
  routing::MxResolver* resolver;
  RelayOptions options;
  ssl::context tls;
  TlsSessionCache tls_sessions;
  RelayCounters counters;

  std::size_t active = 0;
  std::deque<std::function<void()>> waiting;  // job starters, FIFO

  // Held connections by target and identity (Job::held_key).
  HeldConnections held{options.connection_max_idle_per_target, options.connection_max_idle_total,
                       options.connection_max_messages, options.connection_idle};

  // Both on `strand`.
  void admit(std::function<void()> start) {
    if (active < std::max<std::size_t>(1, options.max_concurrent_jobs)) {
      ++active;
      start();
    } else {
      counters.waiting++;
      waiting.push_back(std::move(start));
    }
  }
  void release() {
    BH_CHECK(active > 0);
    --active;
    if (!waiting.empty()) {
      auto next = std::move(waiting.front());
      waiting.pop_front();
      counters.waiting--;
      ++active;
      next();
    }
  }
};

namespace {

using Strand = ClientStrand;

TlsPolicy tls_policy(routing::TlsMode m) {
  switch (m) {
    case routing::TlsMode::kRequired:
      return TlsPolicy::kRequired;
    case routing::TlsMode::kNone:
      return TlsPolicy::kNever;
    case routing::TlsMode::kOpportunistic:
      break;
  }
  return TlsPolicy::kOpportunistic;
}

// One job: targets, attempts, the answer. Lives on its own strand.
class Job : public std::enable_shared_from_this<Job> {
 public:
  Job(std::shared_ptr<SmtpRelay::Shared> shared, queue::RemoteJob job,
      queue::RemoteDeliverer::Done done)
      : shared_(std::move(shared)),
        strand_(asio::make_strand(shared_->io)),
        job_(std::move(job)),
        done_(std::move(done)) {}

  ~Job() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }

  // Called on the relay strand once the job holds a slot.
  void start() {
    asio::post(strand_, [self = shared_from_this()] { self->begin(); });
  }

 private:
  void begin() {
    shared_->counters.jobs++;
    auto table = shared_->tables ? shared_->tables() : nullptr;
    connector_ = table ? table->find(job_.connector) : nullptr;
    if (!connector_) {
      finish(hop_failure(job_.recipients,
                         transient_error("4.4.0", "connector " + job_.connector +
                                                      " is not in the current route table"),
                         ""));
      return;
    }
    if (!connector_->settings.auth_username.empty()) {
      auto pw = read_password_file(connector_->settings.auth_password_file);
      if (!pw.ok()) {
        finish(hop_failure(job_.recipients, pw.error(), ""));
        return;
      }
      credentials_ = ClientCredentials{connector_->settings.auth_username, std::move(pw.value())};
    }
    // A job without recipients (sync_link_state) sends no body: nothing to open.
    fd_ = job_.recipients.empty() ? -1 : ::open(job_.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0 && !job_.recipients.empty()) {
      finish(hop_failure(job_.recipients,
                         transient_error("4.3.0", "cannot open the queue file " + job_.path + ": " +
                                                      std::strerror(errno)),
                         ""));
      return;
    }
    if (connector_->kind == routing::ConnectorKind::kSmartHost) {
      auto t = smart_host_targets(*connector_);
      if (!t.ok()) {
        finish(hop_failure(job_.recipients, t.error(), ""));
        return;
      }
      targets_ = std::move(t.value());
      next_attempt();
      return;
    }
    if (shared_->resolver == nullptr) {
      finish(hop_failure(
          job_.recipients,
          transient_error("4.3.5", "connector " + connector_->name +
                                       " delivers by DNS MX, but no resolver is configured"),
          ""));
      return;
    }
    // The work guard keeps the io_context running while the answer is outstanding on the
    // resolver's thread. That thread must not end up holding the job (or a strand) once the
    // guard is gone, when the io_context may already be destroyed: the job moves into the
    // posted handler and the strand copy dies before the guard is released.
    shared_->resolver->resolve(
        job_.domain,
        [self = shared_from_this(), work = asio::make_work_guard(shared_->io.get_executor())](
            Result<std::vector<routing::MxHost>> r) mutable {
          {
            Strand ex = self->strand_;
            asio::post(ex, [job = std::move(self), r = std::move(r)]() mutable {
              job->on_resolved(std::move(r));
            });
          }
          work.reset();
        });
  }

  void on_resolved(Result<std::vector<routing::MxHost>> r) {
    if (!r.ok()) {
      finish(hop_failure(job_.recipients, r.error(), ""));
      return;
    }
    targets_ = mx_targets(r.value(), connector_->settings.port);
    if (targets_.empty()) {
      finish(hop_failure(job_.recipients, transient_error("4.4.3", "no address for " + job_.domain),
                         ""));
      return;
    }
    next_attempt();
  }

  void next_attempt() {
    std::size_t cap = std::max<std::size_t>(1, shared_->options.max_attempts);
    if (next_ >= targets_.size() || attempts_ >= cap) {
      BH_CHECK(last_.has_value());
      finish(std::move(last_transient_ ? *last_transient_ : *last_));
      return;
    }
    const RelayTarget& target = targets_[next_++];
    ++attempts_;
    shared_->counters.attempts++;
    attempt(target, true);
  }

  // Who a held connection belongs to: the same server, reached the same way, as the same
  // client (a connection logged in as one user never carries another's mail).
  std::string held_key(const RelayTarget& target, const AttemptSetup& setup,
                       const ClientConfig& cfg) const {
    std::string k = target.str();
    k += '|' + std::to_string(static_cast<int>(cfg.tls)) + (setup.tls_verify ? "v" : "-");
    k += '|' + setup.source_ip;
    k += '|' + connector_->settings.auth_mechanism + '/' + connector_->settings.auth_verb + '/' +
         connector_->settings.auth_service_host;
    k += '|' + (credentials_ ? credentials_->user : std::string());
    return k;
  }

  // One session with `target`: on a held connection when there is one (and `reuse`),
  // else on a new connection.
  void attempt(const RelayTarget& target, bool reuse) {
    const auto& opt = shared_->options;
    ClientConfig cfg;
    cfg.helo_name = opt.helo_name;
    cfg.tls = tls_policy(connector_->settings.tls);
    cfg.auth = credentials_;
    cfg.auth_without_tls = opt.auth_without_tls;
    if (connector_->settings.auth_mechanism == "GSSAPI") {
      std::string host = connector_->settings.auth_service_host.empty()
                             ? target.host
                             : connector_->settings.auth_service_host;
      auto factory = opt.gssapi;
      cfg.sasl = [factory, host]() -> std::unique_ptr<ClientSasl> {
        return factory ? factory(host) : nullptr;
      };
      cfg.sasl_verb = connector_->settings.auth_verb;
    } else if (connector_->settings.auth_verb == "X-EXPS" && credentials_) {
      // X-EXPS LOGIN between the organization's nodes (a password, not Kerberos).
      cfg.sasl = [c = *credentials_]() -> std::unique_ptr<ClientSasl> {
        return std::make_unique<LoginClientSasl>(c);
      };
      cfg.sasl_verb = "X-EXPS";
      cfg.auth.reset();
    }
    cfg.use_chunking = opt.use_chunking;
    cfg.body_chunk = kBodyChunk;
    cfg.reply_limits = opt.reply_limits;
    cfg.timeouts = opt.timeouts;
    if (opt.on_command || opt.on_reply) {
      auto hop = std::make_shared<const OutboundHop>(
          OutboundHop{job_.next_hop, connector_->name, target.host});
      if (opt.on_command) {
        cfg.on_command = [f = opt.on_command, hop](std::string_view verb, std::string_view line) {
          return f(*hop, verb, line);
        };
      }
      if (opt.on_reply) {
        cfg.on_reply = [f = opt.on_reply, hop](std::string_view verb, int code,
                                               std::string_view text) {
          f(*hop, verb, code, text);
        };
      }
    }
    AttemptSetup setup;
    setup.target = target;
    setup.tls_verify = connector_->settings.tls_verify;
    setup.body_fd = fd_;
    setup.body_offset = job_.body_offset;
    setup.body_length = job_.body_length;
    setup.connect_timeout = opt.connect_timeout;
    if (connector_->internal) {
      setup.source_ip = opt.internal_source_ip;
    }
    setup.tls_sessions = &shared_->tls_sessions;
    auto report = [self = shared_from_this()](AttemptOutcome o) { self->on_attempt(std::move(o)); };
    held_key_ = held_key(target, setup, cfg);
    shared_->held.start(held_key_, reuse, strand_, shared_->tls, std::move(setup), std::move(cfg),
                        message_for_hop(), std::move(report));
  }

  OutboundMessage message_for_hop() const {
    OutboundMessage m = outbound_message(job_);
    const auto& opt = shared_->options;
    if (connector_->internal && !opt.node_id.empty()) {
      m.properties = next_hop_properties(job_, opt.node_id, opt.organization);
    }
    if (connector_->internal && opt.link2state_for) {
      m.link2state = opt.link2state_for(connector_->name);
    }
    return m;
  }

  void on_attempt(AttemptOutcome o) {
    auto& c = shared_->counters;
    shared_->held.keep(held_key_, o);
    if (!o.result.link2state_reply.empty() && shared_->options.on_link2state_reply) {
      shared_->options.on_link2state_reply(connector_->name, std::move(o.result.link2state_reply));
    }
    RelayAttempt info;
    info.queue_id = job_.queue_id;
    info.target = o.target.str();
    info.connected = o.connected;
    if (!o.connected) {
      c.connect_failures++;
      info.error = o.connect_error;
    } else {
      info.tls = o.result.tls;
      info.authenticated = o.result.authenticated;
      info.mail_sent = o.result.mail_sent;
      info.error = o.result.hop_error;
      info.tls_resumed = o.tls_resumed;
      info.reused = o.reused;
      if (o.reused) {
        c.connections_reused++;
      }
      if (o.result.tls && !o.reused) {
        c.tls_sessions++;
      }
      if (o.tls_resumed) {
        c.tls_resumed++;
      }
    }
    log::info("relay",
              job_.queue_id + ": " + info.target +
                  (info.tls ? (info.tls_resumed ? " (TLS, resumed)" : " (TLS)") : "") +
                  (info.reused ? " (reused)" : "") + ": " +
                  (info.error ? info.error->enhanced + " " + info.error->message : "session done"));
    if (shared_->options.on_attempt) {
      shared_->options.on_attempt(info);
    }
    if (retry_on_new_connection(o)) {
      c.reuse_failures++;
      attempt(o.target, false);
      return;
    }
    queue::RemoteResult r;
    bool next;
    if (!o.connected) {
      r = hop_failure(job_.recipients, *o.connect_error, o.target.remote_mta());
      next = true;
    } else {
      r = to_remote_result(o.result, job_.recipients, o.target.remote_mta());
      next = try_next_target(o.result);
    }
    if (!next) {
      finish(std::move(r));
      return;
    }
    if (r.hop_error && r.hop_error->transient()) {
      last_transient_ = r;
    }
    last_ = std::move(r);
    next_attempt();
  }

  void finish(queue::RemoteResult r) {
    BH_CHECK(done_ != nullptr);
    auto& c = shared_->counters;
    for (const auto& rr : r.recipients) {
      (rr.status == queue::RemoteStatus::kDelivered   ? c.delivered
       : rr.status == queue::RemoteStatus::kTransient ? c.transient
                                                      : c.permanent)++;
    }
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    // Never inline: done runs as its own handler, then the slot goes back.
    asio::post(strand_,
               [done = std::move(done_), r = std::move(r)]() mutable { done(std::move(r)); });
    done_ = nullptr;
    asio::post(shared_->strand, [shared = shared_] { shared->release(); });
  }

  std::shared_ptr<SmtpRelay::Shared> shared_;
  Strand strand_;
  queue::RemoteJob job_;
  queue::RemoteDeliverer::Done done_;
  std::shared_ptr<const routing::Connector> connector_;
  std::optional<ClientCredentials> credentials_;
  int fd_ = -1;
  std::vector<RelayTarget> targets_;
  std::size_t next_ = 0, attempts_ = 0;
  std::string held_key_;  // of the session in progress
  std::optional<queue::RemoteResult> last_, last_transient_;
};

}  // namespace

// ---- SmtpRelay ----

Result<std::unique_ptr<SmtpRelay>> SmtpRelay::create(asio::io_context& io, TableSource tables,
                                                     routing::MxResolver* resolver,
                                                     RelayOptions options) {
  auto shared = std::make_shared<Shared>(io, std::move(tables), resolver, std::move(options));
  SSL_CTX* ctx = shared->tls.native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  const std::string& ca = shared->options.tls_ca_file;
  if (!ca.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1) {
      return permanent_error("",
                             "relay: cannot load the TLS CA file " + ca + ": " + tls_error_text());
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    return permanent_error("", "relay: cannot load the system TLS CA paths: " + tls_error_text());
  }
  return std::unique_ptr<SmtpRelay>(new SmtpRelay(std::move(shared)));
}

SmtpRelay::SmtpRelay(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

// The io_context has stopped (header contract): waiting jobs hold the shared state, so
// drop them here to break the cycle.
SmtpRelay::~SmtpRelay() {
  shared_->waiting.clear();
  shared_->held.clear();
}

const RelayCounters& SmtpRelay::counters() const { return shared_->counters; }

std::size_t SmtpRelay::held_connections() const { return shared_->held.usable(); }

void SmtpRelay::quit_held() { shared_->held.quit_all(); }

std::size_t SmtpRelay::closing_held() const { return shared_->held.closing(); }

void SmtpRelay::sync_link_state(const std::string& connector, Done done) {
  queue::RemoteJob job;
  job.queue_id = "link-state";
  job.connector = connector;
  job.next_hop = "smarthost:" + connector;
  deliver(std::move(job), std::move(done));
}

void SmtpRelay::deliver(queue::RemoteJob job, Done done) {
  auto j = std::make_shared<Job>(shared_, std::move(job), std::move(done));
  asio::post(shared_->strand, [shared = shared_, j] { shared->admit([j] { j->start(); }); });
}

}  // namespace bh::smtp
