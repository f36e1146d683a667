#pragma once
// FsMessageStore: the durable file-system spool (MessageStore implementation).
//
// Layout under `root`: tmp/ (being written; never acknowledged), queue/ (committed, one
// file per message in the format of queue_file.h), quarantine/ (unreadable files, kept
// for the operator, never deleted). docs/queue-format.md describes the bytes.
// Durability (STYLE.md principle 3): a committer thread takes every commit pending at
// that moment as one batch (group commit). kSyncfs: renames each tmp/<id> -> queue/<id>
// (never replacing an existing name), then one syncfs(2) makes data, inodes and
// directories durable. kFdatasync: one fdatasync per file, the renames, one fsync of
// queue/. Only then is each `done` called; recovery validates every queue/ file, so a
// name renamed but never synced (a crash in between) is never trusted blindly
// (docs/queue-format.md, "Durability order"). Any failure answers that commit with 4.3.0 (4.3.1 for ENOSPC/EDQUOT)
// and removes its temp file; a failed commit is never answered with success.
// Queue ids: 20 upper-case hex digits, clock milliseconds (11) + per-process sequence
// (4) + random (5): time-ordered, file-name safe; O_EXCL and RENAME_NOREPLACE make a
// collision an error, never an overwrite.
// Threading: begin()/write() on the session's thread; commit() from any thread; `done`
// runs on the committer thread (or on the caller's thread when the writer already
// failed). open()/recover()/close() from the composition root only.
// Owns: tmp/, queue/ names it creates until the QueueManager takes them over, quarantine/.

#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <set>
#include <unordered_set>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "queue/delivery_state.h"
#include "queue/message_store.h"

namespace bh::queue {

// How a batch's file data is made durable before the renames.
//  kSyncfs:    one syncfs(2) on the spool file system per batch (one journal commit).
//              Measured about 2x faster than kFdatasync for batches of 8+ on ext4
//              (docs/queue-format.md). It also flushes unrelated dirty data on the same
//              file system, so a spool sharing its file system with heavy writers may
//              prefer kFdatasync. Needs Linux >= 5.8 to report writeback errors.
//  kFdatasync: one fdatasync(2) per file of the batch; errors are per message.
enum class SyncMode { kSyncfs, kFdatasync };

struct FsStoreOptions {
  std::string root;                    // <data_dir>/queue
  std::uint64_t free_space_floor = 100ull << 20;
  // Test seam (fault injection): called before each durability step ("write",
  // "syncfs", "fdatasync", "rename", "fsync_dir") with the queue id or ""; a non-zero
  // errno makes that step fail as if the system call had returned it.
  std::function<int(std::string_view step, std::string_view id)> fault;
  SyncMode sync_mode = SyncMode::kSyncfs;
};

struct RecoveryReport {
  std::vector<std::string> ready;      // complete queue files, to deliver
  std::size_t removed_temp = 0;        // never-acknowledged temp files removed
  std::size_t quarantined = 0;         // unreadable files moved to quarantine/
  std::size_t orphan_states = 0;       // state/ files without a queue file, removed
};

struct StoreCounters {
  // syncs: syncfs calls (one per batch), or fdatasync calls (one per file; the directory
  // fsync is one more per batch).
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
  // Moves an unreadable queue file to quarantine/ (never deletes it) and syncs both
  // directories.
  Result<void> quarantine(const std::string& id);
  Result<void> sync_queue_dir();

  // The delivery state beside a queue file (queue/delivery_state.h), state/<id>.
  // save_state replaces it atomically and durably (write, fdatasync, rename, fsync of
  // state/); load_state gives nullopt when there is none, and a permanent error when it
  // is unreadable; remove_state forgets it (remove() of the message does too).
  Result<void> save_state(const std::string& id, const DeliveryState& state);
  Result<std::optional<DeliveryState>> load_state(const std::string& id) const;
  void remove_state(const std::string& id);
  // The next hops the operator froze (one name per line in <root>/frozen-hops), replaced
  // atomically and durably; a missing file is none frozen.
  Result<void> save_frozen_hops(const std::set<std::string>& hops);
  std::set<std::string> load_frozen_hops() const;

  StoreCounters counters() const;
  const std::string& root() const { return opt_.root; }

 private:
  struct Pending;
  void committer_loop();
  std::string next_id();
  int fault(std::string_view step, std::string_view id) const;
  int reuse_spare(const std::string& id, const std::string& path);  // -1: none to reuse
  static std::uint64_t id_millis(std::string_view id);
  Result<void> remove_queue_file(const std::string& id);

  FsStoreOptions opt_;
  const Clock& clock_;
  Random& random_;
  std::mutex id_mu_;
  std::uint32_t seq_ = 0;
  int root_fd_ = -1, tmp_fd_ = -1, queue_fd_ = -1, spare_fd_ = -1, state_fd_ = -1;
  // Delivered queue files are kept in spare/ and renamed back into tmp/ for new messages,
  // then overwritten in place: ext4 slows down badly when every message allocates and
  // frees an inode (its search for a free inode skips recently deleted ones) and blocks.
  // Prepared: the delivery thread moves a delivered queue file straight to
  // tmp/.next-<old id> and opens it, so begin() on a session's thread takes a ready
  // descriptor with no system call, and the commit renames it to queue/<new id>: one
  // rename per message's life instead of three (queue -> spare -> tmp -> queue). At most
  // kMaxPrepared are held open; beyond that, spare/ as before.
  struct Prepared {
    std::string name;  // under tmp/
    int fd;
    off_t size;        // its length (-1: unknown)
  };
  std::optional<Prepared> take_prepared();
  bool prepare_from(const std::string& id);  // false: not prepared, still in queue/
  static constexpr std::size_t kMaxPrepared = 64;
  static constexpr std::string_view kPreparedPrefix = ".next-";
  std::mutex spare_mu_;
  std::vector<std::string> spare_;
  std::vector<Prepared> prepared_;
  std::uint64_t newest_on_disk_ms_ = 0;  // set by open(), read-only afterwards
  mutable std::mutex state_mu_;
  mutable std::unordered_set<std::string> with_state_;  // ids known to have state/<id>
  static constexpr std::size_t kMaxSpare = 4096;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> pending_;
  bool stop_ = false;
  bool running_ = false;
  StoreCounters counters_;
  std::thread committer_;
};

}  // namespace bh::queue
