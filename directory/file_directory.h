#pragma once
// FileDirectory: the RecipientDirectory of a standalone node, built from the config's
// `directory.file.mailboxes` list. Immutable after construction; resolve() answers
// synchronously and is safe from any thread.
// Matching: the domain exactly (already lower-cased by the parser), the local part
// case-insensitively (RFC 5321 §2.4 lets us; users expect it). Mailbox name = the local
// part lower-cased, or the whole address when two domains share that local part.

#include <string>
#include <unordered_map>
#include <vector>

#include "directory/recipient_directory.h"

namespace bh::directory {

class FileDirectory final : public RecipientDirectory {
 public:
  explicit FileDirectory(const std::vector<std::string>& mailboxes);
  void resolve(std::string_view address, ResolveCallback done) override;
  std::size_t size() const { return by_address_.size(); }

 private:
  std::unordered_map<std::string, Resolution> by_address_;  // lower-cased address
};

}  // namespace bh::directory
