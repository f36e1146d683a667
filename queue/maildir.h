#pragma once
// MaildirDeliverer: local delivery into <root>/<mailbox>/{tmp,new,cur} (Maildir).
//
// Exactly once across crashes: the file name of a copy is derived from the queue id and
// the mailbox, and it is published with link(2), which never replaces an existing name.
// A copy already present in new/ or cur/ counts as delivered, so delivering again after
// a crash (between publishing and removing the queue file) writes nothing twice.
// Delivery is in two steps so the caller can batch the fsyncs of many copies:
//   stage()   writes tmp/<name> (not yet durable);
//   publish() links it into new/ (after the caller made the data durable), removes tmp.
// Threading: no shared state besides the file system; call from one delivery thread.

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
  MaildirDeliverer(std::string root, std::string hostname);

  // Copies [offset, offset+length) of the queue file at `source` into the mailbox.
  Result<StagedCopy> stage(const std::string& source, std::uint64_t offset, std::uint64_t length,
                           const std::string& queue_id, const std::string& mailbox);
  Result<void> publish(const StagedCopy& copy);
  // fsync of every directory and file touched: one syncfs on the mailbox file system.
  Result<void> sync();
  // The deterministic Maildir name of one copy.
  std::string name_for(const std::string& queue_id, const std::string& mailbox) const;
  const std::string& root() const { return root_; }

 private:
  std::string root_, hostname_;
};

}  // namespace bh::queue
