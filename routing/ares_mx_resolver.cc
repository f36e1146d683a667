#include "routing/ares_mx_resolver.h"

#include <ares.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>

namespace bh::routing {

namespace {

constexpr int kClassIn = 1;

struct Job {
  Job(std::string_view domain, Random& random, MxCallback cb) : lookup(domain, random), done(std::move(cb)) {}
  MxLookup lookup;
  MxCallback done;
  bool reported = false;
};

DnsAnswer failed(std::string detail) {
  DnsAnswer a;
  a.status = DnsAnswer::Status::kFailed;
  a.detail = std::move(detail);
  return a;
}

// c-ares status -> what MxLookup needs to know. Without ARES_FLAG_NOCHECKRESP c-ares
// moves on to the next server on SERVFAIL and REFUSED and reports ECONNREFUSED when none
// is left; all of these are faults that may clear, never a verdict on the domain.
DnsAnswer to_answer(int status, const unsigned char* abuf, int alen) {
  switch (status) {
    case ARES_SUCCESS: {
      auto reply = parse_dns_reply(abuf, alen < 0 ? 0 : static_cast<std::size_t>(alen));
      if (!reply.ok()) {
        return failed(reply.error().message);
      }
      DnsAnswer a;
      a.status = DnsAnswer::Status::kOk;
      a.reply = std::move(*reply);
      return a;
    }
    case ARES_ENOTFOUND: {
      DnsAnswer a;
      a.status = DnsAnswer::Status::kNxDomain;
      return a;
    }
    case ARES_ENODATA: {
      DnsAnswer a;
      a.status = DnsAnswer::Status::kNoData;
      return a;
    }
    case ARES_ECONNREFUSED:
      return failed("no DNS server answered usefully (SERVFAIL, REFUSED or unreachable)");
    case ARES_ETIMEOUT:
      return failed("DNS timeout");
    default:
      return failed(std::string("DNS error: ") + ares_strerror(status));
  }
}

}  // namespace

struct AresMxResolver::State {
  explicit State(Random& r) : random(r) {}

  Random& random;
  ares_channel channel = nullptr;
  int wake_fd = -1;
  std::thread thread;

  std::mutex mu;
  std::vector<std::pair<std::string, MxCallback>> incoming;  // guarded by mu
  bool stop = false;                                         // guarded by mu

  bool shutting_down = false;  // resolver thread only (then the destroying thread)

  struct QueryContext {
    State* state;
    std::shared_ptr<Job> job;
    DnsQuestion question;
  };

  void send(const std::shared_ptr<Job>& job, std::vector<DnsQuestion> questions) {
    for (auto& q : questions) {
      if (shutting_down) {
        // No new traffic while stopping: answer the question here so the lookup ends.
        auto more = job->lookup.on_answer(q, failed("resolver shut down"));
        send(job, std::move(more));
        continue;
      }
      auto* ctx = new QueryContext{this, job, q};
      ares_query(channel, q.name.c_str(), kClassIn, static_cast<int>(q.type), &State::on_query, ctx);
    }
    maybe_report(job);
  }

  static void on_query(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
    std::unique_ptr<QueryContext> ctx(static_cast<QueryContext*>(arg));
    DnsAnswer answer = status == ARES_EDESTRUCTION || status == ARES_ECANCELLED
                           ? failed("resolver shut down")
                           : to_answer(status, abuf, alen);
    auto more = ctx->job->lookup.on_answer(ctx->question, answer);
    ctx->state->send(ctx->job, std::move(more));
  }

  static void maybe_report(const std::shared_ptr<Job>& job) {
    if (job->reported || !job->lookup.done()) {
      return;
    }
    job->reported = true;
    MxCallback done = std::move(job->done);
    done(job->lookup.result());
  }

  void start_incoming(std::vector<std::pair<std::string, MxCallback>> batch) {
    for (auto& [domain, done] : batch) {
      auto job = std::make_shared<Job>(domain, random, std::move(done));
      send(job, job->lookup.start());
    }
  }

  void run() {
    for (;;) {
      std::vector<std::pair<std::string, MxCallback>> batch;
      {
        std::lock_guard lock(mu);
        if (stop) {
          return;
        }
        batch.swap(incoming);
      }
      start_incoming(std::move(batch));

      ares_socket_t socks[ARES_GETSOCK_MAXNUM];
      const int bits = ares_getsock(channel, socks, ARES_GETSOCK_MAXNUM);
      pollfd fds[1 + ARES_GETSOCK_MAXNUM];
      nfds_t n = 0;
      fds[n++] = pollfd{wake_fd, POLLIN, 0};
      for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
        short events = 0;
        if (ARES_GETSOCK_READABLE(bits, i)) {
          events |= POLLIN;
        }
        if (ARES_GETSOCK_WRITABLE(bits, i)) {
          events |= POLLOUT;
        }
        if (events != 0) {
          fds[n++] = pollfd{socks[i], events, 0};
        }
      }
      timeval tv{};
      timeval* next = ares_timeout(channel, nullptr, &tv);
      const int wait_ms = next == nullptr ? -1 : static_cast<int>(next->tv_sec * 1000 + (next->tv_usec + 999) / 1000);
      int ready = ::poll(fds, n, wait_ms);
      if (ready < 0 && errno != EINTR) {
        BH_CHECK(false && "poll on the resolver sockets failed");
      }
      if (fds[0].revents & POLLIN) {
        std::uint64_t count = 0;
        [[maybe_unused]] auto r = ::read(wake_fd, &count, sizeof count);
      }
      for (nfds_t i = 1; i < n; ++i) {
        if (fds[i].revents == 0) {
          continue;
        }
        const bool readable = (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
        const bool writable = (fds[i].revents & POLLOUT) != 0;
        ares_process_fd(channel, readable ? fds[i].fd : ARES_SOCKET_BAD, writable ? fds[i].fd : ARES_SOCKET_BAD);
      }
      ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
    }
  }
};

Result<std::unique_ptr<AresMxResolver>> AresMxResolver::create(AresMxResolverOptions options,
                                                               Random& random) {
  if (options.servers.empty()) {
    return permanent_error("", "DNS resolver: no servers configured (/etc/resolv.conf is never used)");
  }
  std::string csv;
  for (const auto& s : options.servers) {
    if (s.find(',') != std::string::npos) {
      return permanent_error("", "DNS resolver: bad server \"" + s + "\"");
    }
    csv += (csv.empty() ? "" : ",") + s;
  }
  if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
    return permanent_error("", "DNS resolver: c-ares library init failed");
  }
  auto state = std::make_unique<State>(random);
  ares_options opts{};
  opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_EDNS;
  opts.timeout = static_cast<int>(options.timeout.count());  // milliseconds with ARES_OPT_TIMEOUTMS
  opts.tries = options.tries < 1 ? 1 : options.tries;
  opts.ednspsz = 1232;  // DNS flag day 2020: avoids fragmented UDP replies
  const int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_EDNSPSZ;
  if (int rc = ares_init_options(&state->channel, &opts, mask); rc != ARES_SUCCESS) {
    ares_library_cleanup();
    return permanent_error("", std::string("DNS resolver: ") + ares_strerror(rc));
  }
  // Before anything is sent: our servers replace whatever c-ares read at init.
  if (int rc = ares_set_servers_ports_csv(state->channel, csv.c_str()); rc != ARES_SUCCESS) {
    ares_destroy(state->channel);
    ares_library_cleanup();
    return permanent_error("", "DNS resolver: bad server list \"" + csv + "\": " + ares_strerror(rc));
  }
  state->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (state->wake_fd < 0) {
    ares_destroy(state->channel);
    ares_library_cleanup();
    return permanent_error("", "DNS resolver: eventfd failed");
  }
  State* raw = state.get();
  state->thread = std::thread([raw] { raw->run(); });
  return std::unique_ptr<AresMxResolver>(new AresMxResolver(std::move(state)));
}

AresMxResolver::AresMxResolver(std::unique_ptr<State> state) : state_(std::move(state)) {}

AresMxResolver::~AresMxResolver() {
  {
    std::lock_guard lock(state_->mu);
    state_->stop = true;
  }
  std::uint64_t one = 1;
  [[maybe_unused]] auto w = ::write(state_->wake_fd, &one, sizeof one);
  state_->thread.join();
  // The resolver thread is gone; this thread owns the channel now.
  state_->shutting_down = true;
  ares_cancel(state_->channel);  // in-flight queries: callbacks with ARES_ECANCELLED
  std::vector<std::pair<std::string, MxCallback>> batch;
  {
    std::lock_guard lock(state_->mu);
    batch.swap(state_->incoming);
  }
  state_->start_incoming(std::move(batch));  // never-started lookups end as shut down
  ares_destroy(state_->channel);
  ::close(state_->wake_fd);
  ares_library_cleanup();
}

void AresMxResolver::resolve(std::string_view domain, MxCallback done) {
  {
    std::lock_guard lock(state_->mu);
    state_->incoming.emplace_back(std::string(domain), std::move(done));
  }
  std::uint64_t one = 1;
  [[maybe_unused]] auto w = ::write(state_->wake_fd, &one, sizeof one);
}

}  // namespace bh::routing
