#pragma once
// FileDirectory: the RecipientDirectory of a standalone node (DESIGN.md §5), built from
// the config's `directory.file.mailboxes` and `local_domains` (node/config.h has already
// validated both: mailboxes are local@domain with a domain from local_domains, domains
// lower-cased, local parts free of '/' and quoting).
//
// Matching: the domain exactly (the SMTP parser lower-cases it), the local part
// case-insensitively (RFC 5321 §2.4 allows it; users expect it).
// Answer: kLocalMailbox with mailbox = the local part lower-cased ("alice"), so mail lands
// in <data_dir>/mailboxes/alice/. When two configured addresses in different domains share
// a local part (info@a.example, info@b.example), each gets the whole address lower-cased,
// '@' kept ("info@a.example"), so they never share a folder. Anything else: kUnknown (the
// session answers 550 5.1.1). Never transient: the list is in memory.
//
// Ownership/threading: immutable after construction; resolve() answers synchronously,
// before it returns, and is safe from any thread.

#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "directory/recipient_directory.h"

namespace bh::directory {

class FileDirectory final : public RecipientDirectory {
 public:
  // `local_domains` empty: the domains of `mailboxes` are the local domains.
  explicit FileDirectory(const std::vector<std::string>& mailboxes,
                         const std::vector<std::string>& local_domains = {});

  void resolve(std::string_view address, ResolveCallback done) override;

  // Whether mail for `domain` (lower-case, as the SMTP parser gives it) is ours to
  // deliver or refuse; anything else is relaying.
  bool is_local_domain(std::string_view domain) const;

  std::size_t size() const { return by_address_.size(); }

 private:
  std::unordered_map<std::string, Resolution> by_address_;  // lower-cased address
  std::unordered_set<std::string> domains_;
};

}  // namespace bh::directory
