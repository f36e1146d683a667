#pragma once
// Categorizer: what one recipient address really means (DESIGN.md §3 step 4, §4.4;
// exchange-notes §5): the mailboxes and outside addresses a message to it must reach,
// and the decision tree that led there (for `bhctl resolve` and the logs).
//
// Resolution of an address: one subtree search under `base_dn` by proxyAddresses
// ("smtp:" + address, case-insensitive) or mail (LdapDirectory::filter_for, every value
// escaped). Then, by what the entry is (attribute names from the config, Active
// Directory names by default):
//  - query-based group (has `query_filter`): the stored filter is run on the global
//    catalog under `query_base` (or base_dn) in pages (RFC 2696); each entry found is
//    categorized in turn. A filter that is not well formed is not run (5.2.4).
//  - group (an objectClass of `group_classes`, or any `member` value): every `member` DN
//    is read (base search) and categorized. AD sends at most 1500 values at a time as
//    "member;range=0-1499": the next ranges are asked for ("member;range=1500-*") until
//    the server's range ends with "*".
//    A group whose `expansion_server` names another server is not expanded here: it
//    becomes one recipient to be handed to that server (`expansion_server` set).
//  - mailbox (has `home_server`): the primary SMTP address and its folder. With
//    `alt_recipient` (a DN) the message goes there instead, or also to the mailbox when
//    `deliver_and_redirect` is TRUE; the alternate recipient's own alt_recipient is not
//    followed (redirected once, as Exchange's "alternate recipient prohibited").
//  - contact / mail user (has `target_address`, "SMTP:x@y" or "x@y"): the target,
//    relayed. A non-SMTP target (X400:...) is skipped.
//  - anything else is not deliverable: unknown at the top (5.1.1), skipped below it.
// Loops and duplicates: a visited set of entry DNs per categorize() call (A -> B -> A
// stops at the second A), final addresses deduplicated (case-insensitive). Caps: group
// nesting deeper than `max_depth` and more than `max_recipients` final recipients fail
// the whole recipient with 5.2.4 (a partial expansion would silently skip members);
// at most `window` searches in flight per call (a 10,000-member group does not flood
// the client's max_in_flight).
//
// Errors: the directory's errors are transient 4.4.3 and end the call at once (the
// message stays queued and is categorized again later); unknown 5.1.1, ambiguous 5.1.4,
// the caps and bad filters 5.2.4 are permanent.
// Owns: nothing between calls (each call has its own state, kept alive by its pending
// searches). Borrows the searcher, which must outlive every call in flight.
// Threading: categorize() from any thread; `done` runs once, on the searcher's thread.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "directory/ldap_client.h"

namespace bh::directory {

struct CategorizerAttributes {
  std::string proxy_addresses = "proxyAddresses";
  std::string mail = "mail";
  std::string home_server = "msExchHomeServerName";
  std::string object_class = "objectClass";
  std::string member = "member";
  std::string target_address = "targetAddress";
  std::string alt_recipient = "altRecipient";
  std::string deliver_and_redirect = "deliverAndRedirect";
  std::string expansion_server = "msExchExpansionServerName";
  std::string query_filter = "msExchDynamicDLFilter";
  std::string query_base = "msExchDynamicDLBaseDN";
  std::string require_auth = "msExchRequireAuthToSendTo";
};

struct CategorizerOptions {
  std::string base_dn;
  // This node's name as directories write it in expansion_server: a group naming it (or
  // naming nothing) is expanded here.
  std::string node_name;
  CategorizerAttributes attributes;
  std::vector<std::string> group_classes = {"group", "groupOfNames", "groupOfUniqueNames"};
  unsigned max_depth = 20;
  std::size_t max_recipients = 20000;
  int page_size = 500;
  std::size_t window = 256;
  // 0: ask for `member` and follow the ranges the server chooses (Windows AD answers
  // "member;range=0-1499" by itself). N: ask for ranges of N values explicitly
  // ("member;range=0-(N-1)", then the next N, ...), for servers that never range on
  // their own (Samba) and to keep each answer small.
  std::size_t member_range = 0;
};

struct CategorizedRecipient {
  std::string address;           // primary SMTP address, or a contact's target
  std::string mailbox;           // local mailbox folder; empty: relayed to `address`
  std::string home_server;       // the mailbox's server, as the directory names it
  std::string expansion_server;  // set: a group to be expanded by that server
};

struct CategorizeOutcome {
  std::vector<CategorizedRecipient> recipients;
  std::vector<std::string> trace;  // the decision tree, indented two spaces per level
  std::optional<Error> error;      // set: the recipient could not be categorized
};

class Categorizer {
 public:
  Categorizer(LdapSearcher& searcher, CategorizerOptions options);
  void categorize(std::string_view address, std::function<void(CategorizeOutcome)> done);
  const CategorizerOptions& options() const { return options_; }
  // The attributes every search asks for.
  std::vector<std::string> wanted_attributes() const;

 private:
  struct Call;
  LdapSearcher& searcher_;
  const CategorizerOptions options_;
};

// "lo-hi" of an AD ranged attribute name "member;range=lo-hi" (hi may be "*"); false
// when `name` is not a well-formed range of `attribute`. Pure; exposed for tests.
bool parse_range(std::string_view name, std::string_view attribute, unsigned long& lo,
                 unsigned long& hi, bool& last);
// A query-based group's filter is run only if it is one parenthesized, balanced,
// printable filter of at most 4096 octets. Pure.
bool plausible_filter(std::string_view filter);

}  // namespace bh::directory
