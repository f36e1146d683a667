#include "directory/file_directory.h"

#include <cctype>
#include <map>

#include "common/text.h"

namespace bh::directory {
namespace {

std::string_view local_part(std::string_view address) {
  auto at = address.rfind('@');
  return at == std::string_view::npos ? address : address.substr(0, at);
}

std::string_view domain_part(std::string_view address) {
  auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
}

}  // namespace

FileDirectory::FileDirectory(const std::vector<std::string>& mailboxes,
                             const std::vector<std::string>& local_domains) {
  for (const auto& d : local_domains) {
    domains_.insert(ascii_lower(d));
  }
  std::map<std::string, int> local_count;
  for (const auto& m : mailboxes) {
    local_count[ascii_lower(local_part(m))]++;
    if (local_domains.empty()) {
      domains_.insert(ascii_lower(domain_part(m)));
    }
  }
  for (const auto& m : mailboxes) {
    std::string addr = ascii_lower(m);
    std::string local(local_part(addr));
    Resolution r;
    r.kind = RecipientKind::kLocalMailbox;
    r.canonical = m;
    r.mailbox = local_count[local] > 1 ? addr : local;
    by_address_[addr] = std::move(r);
  }
}

void FileDirectory::resolve(std::string_view address, ResolveCallback done) {
  auto it = by_address_.find(ascii_lower(address));
  if (it == by_address_.end()) {
    done(Resolution{});
    return;
  }
  done(it->second);
}

bool FileDirectory::is_local_domain(std::string_view domain) const {
  return domains_.count(std::string(domain)) != 0;
}

}  // namespace bh::directory
