#pragma once
// Shared fixtures for the queue tests: a temp directory per test, a store with a fault
// hook, a deterministic Random, and a sample envelope.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <string>

#include "common/clock.h"
#include "queue/envelope.h"
#include "queue/fs_message_store.h"

namespace bh::queue::testing {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/bh-queue-test.XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    EXPECT_NE(p, nullptr);
    path_ = p != nullptr ? p : "";
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::size_t count(const std::string& dir) {
  if (!fs::exists(dir)) {
    return 0;
  }
  return static_cast<std::size_t>(
      std::distance(fs::directory_iterator(dir), fs::directory_iterator{}));
}

inline std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void spit(const std::string& p, std::string_view data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

class FixedRandom : public Random {
 public:
  explicit FixedRandom(std::uint64_t start = 7) : n_(start) {}
  std::uint64_t next() override { return n_++; }

 private:
  std::uint64_t n_;
};

inline Envelope sample(std::size_t rcpts = 2) {
  Envelope e;
  e.sender = "s@example.net";
  for (std::size_t i = 0; i < rcpts; ++i) {
    Recipient r;
    r.address = "user" + std::to_string(i) + "@example.org";
    r.mailbox = "user" + std::to_string(i);
    r.orcpt = "rfc822;" + r.address;
    r.notify = kNotifyFailure | kNotifyDelay;
    e.recipients.push_back(r);
  }
  e.body = BodyType::kBinaryMime;
  e.ret = DsnRet::kHeaders;
  e.envid = "ENV1";
  e.smtputf8 = true;
  e.declared_size = 99;
  e.client_address = "192.0.2.1";
  e.client_helo = "client.example";
  e.protocol = "ESMTP";
  e.received_unix = 1700000000;
  return e;
}

using Fault = std::function<int(std::string_view step, std::string_view id)>;

// A store under `root`, opened, with an optional fault hook.
struct Store {
  explicit Store(const std::string& root, Fault fault = {}, SyncMode mode = SyncMode::kSyncfs,
                 std::uint64_t random_start = 7)
      : random(random_start), store(FsStoreOptions{root, 0, std::move(fault), mode}, clock, random) {
    auto r = store.open();
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  }
  Result<std::string> put(std::string_view body, Envelope env = sample()) {
    auto w = store.begin();
    if (!w.ok()) {
      return w.error();
    }
    (void)(*w)->write(body);  // a failure is sticky: commit() must report it
    std::promise<Result<std::string>> p;
    store.commit(std::move(w.value()), std::move(env),
                 [&](Result<std::string> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  ManualClock clock;
  FixedRandom random;
  FsMessageStore store;
};

}  // namespace bh::queue::testing
