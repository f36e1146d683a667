// directory_bench: recipient resolutions per second through LdapClient + LdapDirectory
// (cold: every lookup a search; warm: from the cache), and the time the Categorizer
// takes to expand one large group. Driven by tests/bench/directory_bench.sh, which starts
// slapd with the data; this program only measures and prints a table.
//
// usage: directory_bench URI BASE_DN BIND_DN PASSWORD USERS GROUP_ADDRESS
//   USERS: how many users u<i>@example.test exist (looked up in a shuffled order)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "directory/categorizer.h"
#include "directory/ldap_client.h"
#include "directory/ldap_directory.h"

namespace {

using namespace bh::directory;
using Steady = std::chrono::steady_clock;

struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  std::size_t left = 0, errors = 0, found = 0;
  void done(bool ok, bool hit) {
    std::lock_guard l(mu);
    errors += ok ? 0 : 1;
    found += hit ? 1 : 0;
    if (--left == 0) cv.notify_all();
  }
  void wait() {
    std::unique_lock l(mu);
    cv.wait(l, [&] { return left == 0; });
  }
};

// Resolves every address with at most `window` lookups in flight (an SMTP front end's
// concurrent RCPTs); returns seconds.
double resolve_all(LdapDirectory& dir, const std::vector<std::string>& addrs, std::size_t window,
                   std::size_t& errors, std::size_t& found) {
  Waiter w;
  w.left = addrs.size();
  std::mutex slot_mu;
  std::condition_variable slot_cv;
  std::size_t in_flight = 0;
  auto t0 = Steady::now();
  std::vector<std::atomic<int>> answered(addrs.size());
  for (std::size_t i = 0; i < addrs.size(); ++i) {
    const auto& a = addrs[i];
    {
      std::unique_lock l(slot_mu);
      slot_cv.wait(l, [&] { return in_flight < window; });
      ++in_flight;
    }
    dir.resolve(a, [&, i](bh::Result<Resolution> r) {
      if (answered[i]++ != 0) {
        std::fprintf(stderr, "answered twice: %s\n", addrs[i].c_str());
        std::abort();
      }
      {
        std::lock_guard l(slot_mu);
        --in_flight;
        slot_cv.notify_one();
      }
      w.done(r.ok(),
             r.ok() && r->kind == RecipientKind::kLocalMailbox);  // last: may end resolve_all
    });
  }
  w.wait();
  errors = w.errors;
  found = w.found;
  return std::chrono::duration<double>(Steady::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: %s URI BASE_DN BIND_DN PASSWORD USERS GROUP_ADDRESS\n", argv[0]);
    return 2;
  }
  const std::size_t users = std::stoul(argv[5]);
  boost::asio::io_context io(1);
  auto guard = boost::asio::make_work_guard(io);
  LdapClientOptions lo;
  lo.uris = {argv[1]};
  lo.bind_dn = argv[3];
  lo.password = argv[4];
  lo.max_in_flight = 5000;
  auto client = LdapClient::create(io, lo);
  client->start();
  std::thread t([&] { io.run(); });
  bh::SystemClock clock;
  LdapDirectoryOptions dopt;
  dopt.base_dn = argv[2];
  dopt.attributes.home_server = "bhHomeServer";
  dopt.cache.max_entries = users * 2;
  LdapDirectory dir(*client, clock, dopt);

  std::vector<std::string> addrs;
  for (std::size_t i = 0; i < users; ++i) {
    char b[64];
    std::snprintf(b, sizeof b, "u%05zu@example.test", i);
    addrs.emplace_back(b);
  }
  std::shuffle(addrs.begin(), addrs.end(), std::mt19937(42));
  std::printf("| measurement | count | seconds | per second | errors |\n|---|---|---|---|---|\n");
  for (std::size_t window : {1u, 64u, 512u}) {
    LdapDirectory cold(*client, clock, [&] {
      auto o = dopt;
      o.cache.max_entries = 0;
      return o;
    }());
    std::size_t n = window == 1 ? std::min<std::size_t>(users, 2000) : users;
    std::vector<std::string> part(addrs.begin(), addrs.begin() + static_cast<long>(n));
    std::size_t errors = 0, found = 0;
    double s = resolve_all(cold, part, window, errors, found);
    std::printf("| cold resolutions, %zu in flight | %zu | %.3f | %.0f | %zu (found %zu) |\n",
                window, n, s, n / s, errors, found);
  }
  {
    std::size_t errors = 0, found = 0;
    resolve_all(dir, addrs, 512, errors, found);  // fill the cache
    double s = resolve_all(dir, addrs, 512, errors, found);
    std::printf("| warm resolutions (cache) | %zu | %.3f | %.0f | %zu (found %zu) |\n", users, s,
                users / s, errors, found);
  }
  CategorizerOptions copt;
  copt.base_dn = argv[2];
  copt.node_name = "node1";
  copt.attributes.home_server = "bhHomeServer";
  copt.max_recipients = 90000;
  Categorizer cat(*client, copt);
  for (int run = 0; run < 3; ++run) {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    CategorizeOutcome out;
    auto t0 = Steady::now();
    cat.categorize(argv[6], [&](CategorizeOutcome o) {
      std::lock_guard l(mu);
      out = std::move(o);
      done = true;
      cv.notify_all();
    });
    std::unique_lock l(mu);
    cv.wait(l, [&] { return done; });
    double s = std::chrono::duration<double>(Steady::now() - t0).count();
    std::printf("| expand %s (run %d) | %zu | %.3f | %.0f | %s |\n", argv[6], run + 1,
                out.recipients.size(), s, out.recipients.size() / s,
                out.error ? out.error->message.c_str() : "0");
  }
  auto c = client->counters();
  std::printf(
      "\nLDAP client: %llu searches, %llu entries, max %llu in flight on %llu connection(s)\n",
      static_cast<unsigned long long>(c.searches), static_cast<unsigned long long>(c.entries),
      static_cast<unsigned long long>(c.max_in_flight),
      static_cast<unsigned long long>(c.connects));
  client->stop();
  guard.reset();
  t.join();
  return 0;
}
