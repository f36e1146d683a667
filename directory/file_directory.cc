#include "directory/file_directory.h"

#include <cctype>
#include <map>

namespace bh::directory {
namespace {
std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return r;
}
}  // namespace

FileDirectory::FileDirectory(const std::vector<std::string>& mailboxes) {
  std::map<std::string, int> local_count;
  for (const auto& m : mailboxes) {
    local_count[lower(m.substr(0, m.rfind('@')))]++;
  }
  for (const auto& m : mailboxes) {
    std::string addr = lower(m);
    std::string local = addr.substr(0, addr.rfind('@'));
    Resolution r;
    r.kind = RecipientKind::kLocalMailbox;
    r.canonical = m;
    r.mailbox = local_count[local] > 1 ? addr : local;
    by_address_[addr] = std::move(r);
  }
}

void FileDirectory::resolve(std::string_view address, ResolveCallback done) {
  auto it = by_address_.find(lower(address));
  if (it == by_address_.end()) {
    done(Resolution{});
    return;
  }
  done(it->second);
}

}  // namespace bh::directory
