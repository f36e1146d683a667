#pragma once
// FsMessageStore: the durable file-system spool (MessageStore implementation).
//
// Layout under `root`: tmp/ (being written; never acknowledged), queue/ (committed, one
// file per message in the format of queue_file.h), quarantine/ (unreadable files, kept
// for the operator, never deleted).
// Durability (STYLE.md principle 3): a committer thread takes every commit pending at
// that moment as one batch: syncfs(2) once for the batch's data, rename each
// tmp/<id> -> queue/<id>, fsync(queue/) once, and only then calls each `done` (group
// commit). Any failure answers that commit with 4.3.0 (4.3.1 for ENOSPC) and removes
// its temp file.
// Threading: begin()/write() on the session's thread; commit() from any thread; `done`
// runs on the committer thread.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "queue/message_store.h"

namespace bh::queue {

struct FsStoreOptions {
  std::string root;                    // <data_dir>/queue
  std::uint64_t free_space_floor = 100ull << 20;
  // Test seam: called before each durability step ("write", "syncfs", "rename",
  // "fsync_dir") with the queue id or ""; a non-zero errno makes that step fail.
  std::function<int(std::string_view step, std::string_view id)> fault;
};

struct RecoveryReport {
  std::vector<std::string> ready;      // complete queue files, to deliver
  std::size_t removed_temp = 0;        // never-acknowledged temp files removed
  std::size_t quarantined = 0;         // unreadable files moved to quarantine/
};

struct StoreCounters {
  std::uint64_t commits = 0, batches = 0, syncs = 0, failures = 0;
};

class FsMessageStore final : public MessageStore {
 public:
  FsMessageStore(FsStoreOptions options, const Clock& clock, Random& random);
  ~FsMessageStore() override;

  // Creates the folders and starts the committer thread. Errors name the path.
  Result<void> open();
  // Startup recovery; call after open() and before accepting mail.
  RecoveryReport recover();
  void close();

  Result<void> check_space() const override;
  Result<std::unique_ptr<SpoolWriter>> begin() override;
  void commit(std::unique_ptr<SpoolWriter> writer, Envelope envelope,
              CommitCallback done) override;

  std::string path_of(const std::string& id) const;
  // Removes a delivered message: unlink; the directory is synced by sync_queue_dir().
  Result<void> remove(const std::string& id);
  Result<void> sync_queue_dir();
  StoreCounters counters() const;
  const std::string& root() const { return opt_.root; }

 private:
  struct Pending;
  void committer_loop();
  int fault(std::string_view step, std::string_view id) const;

  FsStoreOptions opt_;
  const Clock& clock_;
  Random& random_;
  std::mutex id_mu_;
  std::uint32_t seq_ = 0;
  int root_fd_ = -1, tmp_fd_ = -1, queue_fd_ = -1;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> pending_;
  bool stop_ = false;
  StoreCounters counters_;
  std::thread committer_;
};

}  // namespace bh::queue
