// Commit throughput of FsMessageStore, syncfs vs fdatasync group commit.
// Not a test (prints a table; DESIGN.md §6): build target queue_store_bench, run
//   queue_store_bench DIR [seconds]
// DIR should be on the file system the spool will use.

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "queue/fs_message_store.h"

using namespace bh;
using namespace bh::queue;

namespace {

struct Row {
  double per_sec;
  StoreCounters c;
};

Row run(const std::string& parent, SyncMode mode, int threads, double seconds, std::size_t body) {
  std::string tmpl = parent + "/bh-bench.XXXXXX";
  std::string root = ::mkdtemp(tmpl.data());
  SystemClock clock;
  SystemRandom random;
  FsStoreOptions o;
  o.root = root;
  o.free_space_floor = 0;
  o.sync_mode = mode;
  FsMessageStore store(o, clock, random);
  if (!store.open().ok()) {
    std::fprintf(stderr, "cannot open %s\n", root.c_str());
    std::exit(1);
  }
  std::string data(body, 'x');
  std::atomic<bool> go{true};
  std::atomic<long> done{0};
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&] {
      Envelope e;
      e.sender = "a@example.org";
      e.recipients.push_back(Recipient{"b@example.org", "", 0, "b", RecipientState::kPending, ""});
      while (go.load()) {
        auto w = store.begin();
        if (!w.ok() || !(*w)->write(data).ok()) {
          std::exit(2);
        }
        std::promise<bool> p;
        store.commit(std::move(w.value()), e, [&](Result<std::string> r) { p.set_value(r.ok()); });
        if (!p.get_future().get()) {
          std::exit(3);
        }
        ++done;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  go = false;
  for (auto& t : ts) {
    t.join();
  }
  double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Row r{static_cast<double>(done.load()) / el, store.counters()};
  store.close();
  std::filesystem::remove_all(root);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [seconds]\n", argv[0]);
    return 2;
  }
  double seconds = argc > 2 ? std::atof(argv[2]) : 3.0;
  std::printf("%-10s %7s %6s %10s %8s %8s %10s\n", "mode", "threads", "body", "commits/s", "batches",
              "syncs", "msg/batch");
  for (int threads : {1, 8, 32}) {
    for (SyncMode mode : {SyncMode::kSyncfs, SyncMode::kFdatasync}) {
      Row r = run(argv[1], mode, threads, seconds, 4096);
      std::printf("%-10s %7d %6d %10.0f %8llu %8llu %10.1f\n",
                  mode == SyncMode::kSyncfs ? "syncfs" : "fdatasync", threads, 4096, r.per_sec,
                  static_cast<unsigned long long>(r.c.batches),
                  static_cast<unsigned long long>(r.c.syncs),
                  r.c.batches ? static_cast<double>(r.c.commits) / static_cast<double>(r.c.batches) : 0.0);
      std::fflush(stdout);
    }
  }
  return 0;
}
