#pragma once
// MaildirDeliverer: local delivery into <root>/<mailbox>/{tmp,new,cur} (Maildir).
//
// Exactly once across crashes: the file name of a copy is derived from the queue id and
// the mailbox (name_for), and it is published with a no-replace rename (or link(2)),
// which never replaces an existing name. A copy already present in new/, or in cur/ with any ":2,<flags>" info
// suffix, counts as delivered, so delivering again after a crash (between publishing
// and removing the queue file) writes nothing twice.
// Delivery is in two steps so the caller can batch the syncs of many copies:
//   stage()   writes the copy as an unnamed file in new/ (open(2) with O_TMPFILE), kept
//             open in the StagedCopy; where the file system has no O_TMPFILE, or more
//             than kMaxUnnamed are open, as tmp/<name> (not yet durable either way);
//   sync()    makes every staged byte durable (one syncfs(2) on the mailbox file system);
//   publish() names it: linkat(2) of the unnamed file into new/<name>, or
//             renameat2(RENAME_NOREPLACE) of tmp/<name> (link(2) and unlink(2) where the
//             file system lacks it); none of them replaces an existing name;
//   sync()    again, for the new/ directory entries.
// The unnamed file costs one directory entry per copy instead of three changes (create in
// tmp/, rename out of it, into new/), and no cross-directory rename, which the kernel
// serializes for the whole file system. A crash before publish() leaves no name behind;
// on a file system without a journal its blocks stay allocated until the next fsck.
// deliver() does the four steps for one copy.
// The body is copied byte-exact in 64 KiB chunks (binary-safe, never whole in memory).
// Errors: ENOSPC/EDQUOT -> transient 4.2.2; other I/O -> transient 4.3.0; a mailbox name
// that could leave the root -> permanent 5.1.1 ("invalid mailbox name").
// syncfs covers the file system of `root`; a mailbox that is a mount point of another
// file system is not supported. The syncfs descriptor is opened before the first write,
// so writeback errors after it are reported (Linux >= 5.8).
// Threading: not thread-safe; one delivery thread calls it. No state besides the file
// system and the syncfs descriptor.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>

#include "common/result.h"

namespace bh::queue {

// An open descriptor of an unnamed (O_TMPFILE) copy; closes itself and counts itself out
// of its deliverer's open files. Move-only.
class UnnamedFile {
 public:
  UnnamedFile() = default;
  UnnamedFile(int fd, std::size_t* open_count) : fd_(fd), open_count_(open_count) { ++*open_count_; }
  UnnamedFile(UnnamedFile&& o) noexcept : fd_(o.fd_), open_count_(o.open_count_) { o.fd_ = -1; }
  UnnamedFile& operator=(UnnamedFile&& o) noexcept;
  UnnamedFile(const UnnamedFile&) = delete;
  UnnamedFile& operator=(const UnnamedFile&) = delete;
  ~UnnamedFile() { reset(); }
  int fd() const { return fd_; }
  void reset();

 private:
  int fd_ = -1;
  std::size_t* open_count_ = nullptr;
};

struct StagedCopy {
  bool already_delivered = false;
  std::string tmp_path, new_path, mailbox_dir;  // tmp_path: empty for an unnamed copy
  UnnamedFile unnamed;                          // open until the StagedCopy goes
};

class MaildirDeliverer {
 public:
  // root: <data_dir>/mailboxes; hostname: the host part of Maildir names ('/' and ':'
  // are replaced by '_').
  MaildirDeliverer(std::string root, std::string hostname);
  ~MaildirDeliverer();
  MaildirDeliverer(const MaildirDeliverer&) = delete;
  MaildirDeliverer& operator=(const MaildirDeliverer&) = delete;

  // Copies [offset, offset+length) of the queue file at `source` into a new copy for the
  // mailbox (an unnamed file, or tmp/<name>). `may_exist`: look for an earlier copy in new/ and cur/ (a readdir of cur/)
  // first; the caller may pass false only when this copy was never attempted before (not
  // recovered after a restart, first attempt). publish() refuses to replace a name in
  // new/ either way.
  Result<StagedCopy> stage(const std::string& source, std::uint64_t offset, std::uint64_t length,
                           const std::string& queue_id, const std::string& mailbox,
                           bool may_exist = true);
  // The same with the body already in memory (a small message read whole by
  // read_queue_file), so the queue file is not opened a second time.
  Result<StagedCopy> stage_bytes(std::string_view body, const std::string& queue_id,
                                 const std::string& mailbox, bool may_exist = true);
  Result<void> publish(const StagedCopy& copy);
  std::size_t unnamed_open() const { return unnamed_open_; }  // for tests
  // Makes every staged file and every published name durable: one syncfs.
  Result<void> sync();
  // stage + sync + publish + sync for one copy. Returns the path in new/ (or the
  // existing copy's expected new/ path when it was already delivered).
  Result<StagedCopy> deliver(const std::string& source, std::uint64_t offset, std::uint64_t length,
                             const std::string& queue_id, const std::string& mailbox);
  // The deterministic Maildir name of one copy: "<queue_id>.<fnv64(mailbox) hex>.<host>".
  std::string name_for(const std::string& queue_id, const std::string& mailbox) const;
  const std::string& root() const { return root_; }

 private:
  Result<void> ensure_root();
  using BodyWriter = std::function<Result<void>(int fd, const std::string& path)>;
  Result<StagedCopy> stage_with(const std::string& queue_id, const std::string& mailbox,
                                bool may_exist, const BodyWriter& write_body);
  Result<int> create_tmp(StagedCopy& c);
  Result<void> ensure_folders(const std::string& mailbox_dir);

  // Unnamed copies open at once, across all StagedCopy objects alive; beyond this, copies
  // are staged as tmp/<name> so a message to thousands of mailboxes cannot exhaust the
  // process's descriptors.
  static constexpr std::size_t kMaxUnnamed = 128;
  std::size_t unnamed_open_ = 0;
  bool unnamed_supported_ = true;  // false after the file system refused O_TMPFILE

  std::string root_, hostname_;
  int root_fd_ = -1;
  // Mailboxes whose tmp/new/cur are known to exist, so steady-state delivery makes no
  // mkdir calls; forgotten when creating a file in tmp/ finds the folder gone.
  std::unordered_set<std::string> ready_;
};

}  // namespace bh::queue
