#pragma once
// The envelope of one spooled message: everything SMTP learned besides the body.
// Plain value type; the queue file format (queue/queue_file.h) serializes it.
// Every string here has already been validated by the SMTP parser (no CR, LF or NUL).

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace bh::queue {

enum class BodyType : std::uint8_t { kUnspecified = 0, k7Bit = 1, k8BitMime = 2, kBinaryMime = 3 };
enum class DsnRet : std::uint8_t { kUnspecified = 0, kFull = 1, kHeaders = 2 };

// RFC 3461 NOTIFY as bit flags; kNever excludes the others.
enum NotifyFlags : std::uint8_t {
  kNotifyUnspecified = 0,
  kNotifyNever = 1,
  kNotifySuccess = 2,
  kNotifyFailure = 4,
  kNotifyDelay = 8,
};

enum class RecipientState : std::uint8_t { kPending = 0, kDelivered = 1, kFailed = 2 };

struct Recipient {
  std::string address;      // as given in RCPT TO, without <>; domain lower-cased
  std::string orcpt;        // RFC 3461 ORCPT, decoded "addr-type;address", empty if absent
  std::uint8_t notify = kNotifyUnspecified;
  std::string mailbox;      // categorizer result: local mailbox name, empty if not local
  // A mailbox of the organization homed on another node (the directory's home server):
  // routed to that node (QueueManager::set_server_router); empty for everything else.
  std::string home_server;
  RecipientState state = RecipientState::kPending;
  std::string last_result;  // last delivery reply/diagnostic for this recipient
  // To be expanded by the categorizer after spool (a group, contact or forwarded
  // mailbox: directory/categorizer.h) before it is routed; kept in the queue file.
  bool categorize = false;
  // Appended by the categorizer after spool: not in the queue file, kept in
  // state/<id> (queue/delivery_state.h). Always after the queue file's recipients.
  bool added = false;
};

struct Envelope {
  std::string id;           // queue id, assigned by MessageStore::begin
  std::string sender;       // reverse-path without <>; empty for the null sender
  std::vector<Recipient> recipients;
  BodyType body = BodyType::kUnspecified;
  DsnRet ret = DsnRet::kUnspecified;
  std::string envid;        // RFC 3461 ENVID, decoded
  bool smtputf8 = false;
  std::uint64_t declared_size = 0;  // SIZE= parameter, 0 if absent
  std::uint64_t body_size = 0;      // octets actually spooled (set by the store)
  std::string client_address;       // peer IP literal
  std::string client_helo;          // HELO/EHLO argument
  std::string protocol;             // "SMTP", "ESMTP", "ESMTPS", ... for Received
  std::int64_t received_unix = 0;   // seconds since the epoch, from the injected clock
  // XEXCH50 properties from a peer node (DESIGN.md §4.1): the whole blob as received,
  // already checked against its framing (smtp/xexch50.h); empty: none.
  std::string xexch50;
};

}  // namespace bh::queue
