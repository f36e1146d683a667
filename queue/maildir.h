#pragma once
// MaildirDeliverer: local delivery into <root>/<mailbox>/{tmp,new,cur} (Maildir).
//
// Exactly once across crashes: the file name of a copy is derived from the queue id and
// the mailbox (name_for), and it is published with link(2), which never replaces an
// existing name. A copy already present in new/, or in cur/ with any ":2,<flags>" info
// suffix, counts as delivered, so delivering again after a crash (between publishing
// and removing the queue file) writes nothing twice.
// Delivery is in two steps so the caller can batch the syncs of many copies:
//   stage()   writes tmp/<name> (not yet durable);
//   sync()    makes every staged byte durable (one syncfs(2) on the mailbox file system);
//   publish() links tmp/<name> into new/ and removes tmp/<name>;
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
#include <string>

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
  // mailbox. `may_exist`: also search cur/ for an earlier copy (a readdir of cur/); the
  // caller may pass false only when this copy was never attempted before (not recovered
  // after a restart, first attempt) - new/ is always checked.
  Result<StagedCopy> stage(const std::string& source, std::uint64_t offset, std::uint64_t length,
                           const std::string& queue_id, const std::string& mailbox,
                           bool may_exist = true);
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

  std::string root_, hostname_;
  int root_fd_ = -1;
};

}  // namespace bh::queue
