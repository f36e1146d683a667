#pragma once
// RecipientDirectory: who is this address? (DESIGN.md §3 step 2 and 4)
//
// Contract: resolve() answers exactly once through `done`, possibly before it returns
// (file directory) or later on another thread (LDAP); callers post the answer back to
// their own executor. A directory that cannot answer (down, slow) returns a transient
// error with enhanced code 4.4.3; it never turns a fault into "unknown".
// Threading: resolve() may be called concurrently.

#include <functional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace bh::directory {

// kCategorize: a recipient that exists but is not one plain mailbox - a group, a
// query-based group, a contact, a forwarded mailbox. RCPT accepts it; the categorizer
// expands it after spool (directory/categorizer.h, queue: Recipient::categorize).
enum class RecipientKind { kUnknown, kLocalMailbox, kCategorize };

struct Resolution {
  RecipientKind kind = RecipientKind::kUnknown;
  std::string canonical;  // primary address of the recipient, when known
  std::string mailbox;    // local mailbox name (a folder under <data_dir>/mailboxes/)
  // kLocalMailbox homed on another node of the organization (its home server, as the
  // directory names it): `mailbox` is then empty and the queue routes the recipient to
  // that server (node/cluster_routing.h). Empty: the mailbox is on this node.
  std::string home_server;
  // A group that accepts mail only from authenticated senders (AD
  // msExchRequireAuthToSendTo): RCPT from an anonymous session gets 550 5.7.1.
  bool senders_must_authenticate = false;
};

using ResolveCallback = std::function<void(Result<Resolution>)>;

class RecipientDirectory {
 public:
  virtual ~RecipientDirectory() = default;
  // `address` is a validated mailbox "local@domain" (domain lower-cased, no trailing dot).
  virtual void resolve(std::string_view address, ResolveCallback done) = 0;
};

}  // namespace bh::directory
