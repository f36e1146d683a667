#pragma once
// MaildirDeliverer: local delivery into <root>/<mailbox>/{tmp,new,cur} (Maildir).
//
// Exactly once across crashes: the file name of a copy is derived from the queue id and
// the mailbox (name_for), and it is published with a no-replace rename (or link(2)),
// which never replaces an existing name. A copy already present in new/, or in cur/ with any ":2,<flags>" info
// suffix, counts as delivered, so delivering again after a crash (between publishing
// and removing the queue file) writes nothing twice.
// Delivery is in two steps so the caller can batch the syncs of many copies:
//   stage()   writes tmp/<name> (not yet durable);
//   sync()    makes every staged byte durable (one syncfs(2) on the mailbox file system);
//   publish() moves tmp/<name> into new/ with renameat2(RENAME_NOREPLACE) (link(2) and
//             unlink(2) where the file system lacks it);
//   sync()    again, for the new/ directory entries.
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

struct StagedCopy {
  bool already_delivered = false;
  std::string tmp_path, new_path, mailbox_dir;
};

class MaildirDeliverer {
 public:
  // root: <data_dir>/mailboxes; hostname: the host part of Maildir names ('/' and ':'
  // are replaced by '_').
  MaildirDeliverer(std::string root, std::string hostname);
  ~MaildirDeliverer();
  MaildirDeliverer(const MaildirDeliverer&) = delete;
  MaildirDeliverer& operator=(const MaildirDeliverer&) = delete;

  // Copies [offset, offset+length) of the queue file at `source` into tmp/ of the
  // mailbox. `may_exist`: look for an earlier copy in new/ and cur/ (a readdir of cur/)
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

  std::string root_, hostname_;
  int root_fd_ = -1;
  // Mailboxes whose tmp/new/cur are known to exist, so steady-state delivery makes no
  // mkdir calls; forgotten when creating a file in tmp/ finds the folder gone.
  std::unordered_set<std::string> ready_;
};

}  // namespace bh::queue
