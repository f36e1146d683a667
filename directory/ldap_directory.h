#pragma once
// LdapDirectory: the RecipientDirectory of a node attached to a directory (DESIGN.md §3
// step 2, §4.4): who is RCPT TO:<address>? asked of the global catalog role.
//
// Lookup: one search under `base_dn` (subtree) with
//   (|(<proxy_addresses>=smtp:<address>)(<mail>=<address>))
// every value escaped (RFC 4515, ldap_filter.h). proxyAddresses has EQUALITY
// caseIgnoreMatch, so "smtp:" also finds the primary "SMTP:" value. Attribute names
// come from the config, with Active Directory defaults (proxyAddresses, mail,
// msExchHomeServerName).
// Answer:
//  - no entry: kUnknown (550 5.1.1);
//  - one entry with a home server value: kLocalMailbox; `canonical` is the primary SMTP
//    address (the "SMTP:" proxy address, else the first `mail`, else the address asked
//    for), `mailbox` = mailbox_folder(canonical) — every address of a user lands in
//    one folder named for the primary address;
//  - one entry that is a group (an objectClass of group_classes), a query-based group
//    (a query_filter value), a contact (a target_address) or a mailbox with an
//    alt_recipient: kCategorize (accepted; expanded after spool by the categorizer);
//    a group with require_auth TRUE also sets senders_must_authenticate;
//  - one entry that is none of these (mail-enabled only, no mailbox): kUnknown;
//  - two or more entries: permanent 5.1.4 (ambiguous address: a directory data error
//    that retrying does not fix);
//  - the searcher's error (server down, slow, busy): passed on, transient 4.4.3; never
//    "unknown".
// Home server: with `this_server` set (a node of a cluster, link_state configured), a
// mailbox whose home server is another name (case-insensitive) is kLocalMailbox with
// `home_server` set and no `mailbox`: accepted here, routed to its server. Without it
// every mailbox is delivered here.
//
// Cache: found and unknown answers are cached by lower-cased address (ResolutionCache,
// TTLs and size from the config); errors and ambiguous answers are not.
// Owns: the cache and counters; borrows the searcher and clock, which must outlive it and
// every callback in flight. Threading: resolve() from any thread; `done` runs on the
// searcher's io thread (or inline, for a cache hit).

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "directory/categorizer.h"
#include "directory/ldap_client.h"
#include "directory/recipient_directory.h"
#include "directory/resolution_cache.h"

namespace bh::directory {

// The attribute names of the recipient lookup and of the categorizer are one set.
using LdapAttributeNames = CategorizerAttributes;

struct LdapDirectoryOptions {
  std::string base_dn;
  LdapAttributeNames attributes;
  std::vector<std::string> group_classes = CategorizerOptions{}.group_classes;
  ResolutionCacheOptions cache;
  std::string this_server;  // this node's name as home_server values name it; see above
};

struct LdapDirectoryCounters {
  std::uint64_t lookups = 0;
  std::uint64_t cache_hits = 0;
  std::uint64_t searches = 0;
  std::uint64_t found = 0;
  std::uint64_t not_found = 0;
  std::uint64_t ambiguous = 0;
  std::uint64_t errors = 0;  // transient: the directory did not answer
  ResolutionCacheCounters cache;
};

class LdapDirectory final : public RecipientDirectory {
 public:
  LdapDirectory(LdapSearcher& searcher, const Clock& clock, LdapDirectoryOptions options);

  void resolve(std::string_view address, ResolveCallback done) override;
  LdapDirectoryCounters counters() const;

  // The filter for `address` (exposed for tests and logs).
  std::string filter_for(std::string_view address) const;
  // The decision over a search's entries (pure).
  Result<Resolution> classify(std::string_view address,
                              const std::vector<LdapEntry>& entries) const;

 private:
  LdapSearcher& searcher_;
  const LdapDirectoryOptions options_;
  ResolutionCache cache_;
  std::atomic<std::uint64_t> lookups_{0}, searches_{0}, found_{0}, not_found_{0}, ambiguous_{0},
      errors_{0};
};

// A folder name for a primary address: lower-cased; letters, digits, '.' and '-' kept;
// every other byte (the '@', '_', '+', non-ASCII ...) written as '_' and two hex digits,
// so the mapping is one-to-one and the name is only [a-z0-9._-]; a leading '.' is
// escaped too (never "." or a hidden folder). Longer than 200 bytes: cut and ended with
// "_x" and the 64-bit FNV-1a hash of the whole address, to stay under NAME_MAX.
// "Alice.Liddell@Example.TEST" -> "alice.liddell_40example.test".
std::string mailbox_folder(std::string_view primary);

}  // namespace bh::directory
