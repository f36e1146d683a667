#include "smtp/lmtp_deliverer.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace bh::smtp {

namespace asio = boost::asio;

// ---- Pure pieces ----

queue::RemoteResult lmtp_result(const ClientResult& result,
                                const std::vector<queue::RemoteJob::Rcpt>& recipients,
                                std::string remote_mta) {
  queue::RemoteResult r = to_remote_result(result, recipients, std::move(remote_mta));
  const bool refused_session = result.hop_error && !result.hop_error->transient() &&
                               !result.mail_sent && result.hop_code >= 500;
  if (!refused_session) {
    return r;
  }
  auto soften = [](std::string& enhanced) {
    if (!enhanced.empty() && enhanced.front() == '5') {
      enhanced.front() = '4';
    }
  };
  r.hop_error->cls = FailureClass::kTransient;
  soften(r.hop_error->enhanced);
  for (auto& rr : r.recipients) {
    if (rr.status == queue::RemoteStatus::kPermanent) {
      rr.status = queue::RemoteStatus::kTransient;
      soften(rr.enhanced);
    }
  }
  return r;
}

ClientConfig lmtp_client_config(const LmtpOptions& options) {
  ClientConfig cfg;
  cfg.lmtp = true;
  cfg.helo_name = options.helo_name;
  cfg.tls = TlsPolicy::kNever;
  cfg.use_chunking = false;  // DATA, as RFC 2033 §4.2 describes (BINARYMIME still uses BDAT)
  cfg.body_chunk = kBodyChunk;
  cfg.reply_limits = options.reply_limits;
  cfg.timeouts = options.timeouts;
  return cfg;
}

// ---- Shared state ----

struct LmtpDeliverer::Shared {
  Shared(asio::io_context& io_, LmtpOptions o)
      : io(io_), options(std::move(o)), tls(asio::ssl::context::tls_client) {
    // DSNs name the host ("Remote-MTA: dns; <ip>"): the queue takes remote_mta's first word.
    if (options.unix_path.empty()) {
      target.host = options.ip;
      target.ip = options.ip;
      target.port = options.port;
      target.host_is_ip = true;
    } else {
      target.host = "localhost";
      target.unix_path = options.unix_path;
    }
  }

  asio::io_context& io;
  LmtpOptions options;
  RelayTarget target;
  asio::ssl::context tls;  // the pump's stream type needs one; never used (TlsPolicy::kNever)
  LmtpCounters counters;
  // One endpoint: one key. Per key and in all, the same cap.
  HeldConnections held{options.connection_max_idle, options.connection_max_idle,
                       options.connection_max_messages, options.connection_idle};
};

namespace {

// One job: the queue file, one connection, the answer. Lives on its own strand.
class LmtpJob : public std::enable_shared_from_this<LmtpJob> {
 public:
  LmtpJob(std::shared_ptr<LmtpDeliverer::Shared> shared, queue::RemoteJob job,
          queue::RemoteDeliverer::Done done)
      : shared_(std::move(shared)),
        strand_(asio::make_strand(shared_->io)),
        job_(std::move(job)),
        done_(std::move(done)) {}

  ~LmtpJob() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }

  void start() {
    asio::post(strand_, [self = shared_from_this()] { self->begin(); });
  }

 private:
  void begin() {
    shared_->counters.jobs++;
    fd_ = ::open(job_.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      finish(hop_failure(job_.recipients,
                         transient_error("4.3.0", "cannot open the queue file " + job_.path + ": " +
                                                      std::strerror(errno)),
                         ""));
      return;
    }
    attempt(true);
  }

  // One session: on the held connection when there is one (and `reuse`), else on a new one.
  void attempt(bool reuse) {
    const auto& opt = shared_->options;
    AttemptSetup setup;
    setup.target = shared_->target;
    setup.body_fd = fd_;
    setup.body_offset = job_.body_offset;
    setup.body_length = job_.body_length;
    setup.connect_timeout = opt.connect_timeout;
    auto report = [self = shared_from_this()](AttemptOutcome o) { self->on_attempt(std::move(o)); };
    shared_->held.start(kKey, reuse, strand_, shared_->tls, std::move(setup),
                        lmtp_client_config(opt), outbound_message(job_), std::move(report));
  }

  void on_attempt(AttemptOutcome o) {
    shared_->held.keep(kKey, o);
    RelayAttempt info;
    info.queue_id = job_.queue_id;
    info.target = o.target.str();
    info.connected = o.connected;
    info.reused = o.reused;
    if (o.reused) {
      shared_->counters.connections_reused++;
    }
    queue::RemoteResult r;
    if (!o.connected) {
      shared_->counters.connect_failures++;
      info.error = o.connect_error;
      r = hop_failure(job_.recipients, *o.connect_error, o.target.remote_mta());
    } else {
      info.mail_sent = o.result.mail_sent;
      info.error = o.result.hop_error;
      r = lmtp_result(o.result, job_.recipients, o.target.remote_mta());
    }
    log::info("lmtp",
              job_.queue_id + ": " + info.target + (info.reused ? " (reused)" : "") + ": " +
                  (info.error ? info.error->enhanced + " " + info.error->message : "session done"));
    if (shared_->options.on_attempt) {
      shared_->options.on_attempt(info);
    }
    if (retry_on_new_connection(o)) {
      shared_->counters.reuse_failures++;
      attempt(false);
      return;
    }
    finish(std::move(r));
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
    // Never inline: done runs as its own handler.
    asio::post(strand_,
               [done = std::move(done_), r = std::move(r)]() mutable { done(std::move(r)); });
    done_ = nullptr;
  }

  static constexpr const char* kKey = "lmtp";

  std::shared_ptr<LmtpDeliverer::Shared> shared_;
  ClientStrand strand_;
  queue::RemoteJob job_;
  queue::RemoteDeliverer::Done done_;
  int fd_ = -1;
};

}  // namespace

// ---- LmtpDeliverer ----

LmtpDeliverer::LmtpDeliverer(asio::io_context& io, LmtpOptions options)
    : shared_(std::make_shared<Shared>(io, std::move(options))) {}

LmtpDeliverer::~LmtpDeliverer() { shared_->held.clear(); }

std::size_t LmtpDeliverer::held_connections() const { return shared_->held.usable(); }

void LmtpDeliverer::quit_held() { shared_->held.quit_all(); }

std::size_t LmtpDeliverer::closing_held() const { return shared_->held.closing(); }

const LmtpCounters& LmtpDeliverer::counters() const { return shared_->counters; }

void LmtpDeliverer::deliver(queue::RemoteJob job, Done done) {
  std::make_shared<LmtpJob>(shared_, std::move(job), std::move(done))->start();
}

}  // namespace bh::smtp
