#pragma once
// MxResolver: resolve the next-hop addresses for a destination domain (RFC 5321 §5.1),
// for connectors that deliver by DNS MX (routing/connector.h).
//
// Contract of resolve(domain, done):
//  - `done` is called exactly once, possibly on another thread (AresMxResolver calls it on
//    its own resolver thread); a caller on an Asio io_context posts the result back to
//    its executor. It may be called before resolve() returns.
//  - Success: the MX hosts in the order to try them: by preference, lowest first; hosts of
//    equal preference in random order (the injected Random), so load spreads as RFC 5321
//    §5.1 asks. Each host carries its addresses, IPv4 first, then IPv6; hosts without
//    any address are left out. At most kMaxMxHosts hosts and kMaxAddressesPerHost
//    addresses each.
//  - No MX records (NODATA): the domain itself is the only host, preference 0,
//    `implicit` set (RFC 5321 §5.1 implicit MX).
//  - Errors (RFC 3463 codes):
//      permanent 5.1.2   the domain does not exist (NXDOMAIN), is not a domain name, or
//                        has neither MX nor A/AAAA records
//      permanent 5.1.10  null MX: the domain accepts no mail (RFC 7505 §3, RFC 7504)
//      permanent 5.4.4   MX records exist but no MX host has an address (every one of
//                        them answered NXDOMAIN/NODATA)
//      transient 4.4.3   SERVFAIL, REFUSED, timeout, no server reachable, a malformed
//                        reply, shutdown; also when no host got an address and at least
//                        one address lookup failed this way
// Threading: resolve() may be called from any thread.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "routing/dns_message.h"

namespace bh::routing {

constexpr std::size_t kMaxMxHosts = 10;
constexpr std::size_t kMaxAddressesPerHost = 10;

struct MxHost {
  std::string host;  // lower-case, no trailing dot
  std::uint16_t preference = 0;
  bool implicit = false;               // RFC 5321 §5.1: no MX, the domain's own A/AAAA
  std::vector<std::string> addresses;  // textual IP addresses, IPv4 first
};

using MxCallback = std::function<void(Result<std::vector<MxHost>>)>;

class MxResolver {
 public:
  virtual ~MxResolver() = default;
  // `domain` in any case, trailing dot allowed.
  virtual void resolve(std::string_view domain, MxCallback done) = 0;
};

// ---- The lookup logic, without I/O (STYLE.md principle 1) ----
//
// MxLookup is one resolution as a state machine: it says which queries to send and is
// told each answer; the transport (AresMxResolver) only carries them. Queries may be
// answered in any order.

struct DnsQuestion {
  std::string name;
  DnsType type = DnsType::kMx;
  friend bool operator==(const DnsQuestion&, const DnsQuestion&) = default;
};

struct DnsAnswer {
  enum class Status {
    kOk,        // NOERROR with a parsed reply (the records asked for may still be absent)
    kNxDomain,  // the name does not exist
    kNoData,    // the name exists, no records of this type
    kFailed,    // SERVFAIL, REFUSED, timeout, malformed...: `detail` says which
  };
  Status status = Status::kFailed;
  DnsReply reply;      // kOk
  std::string detail;  // kFailed, for the error text
};

class MxLookup {
 public:
  // `random` orders hosts of equal preference; it is used only inside on_answer().
  MxLookup(std::string_view domain, Random& random);

  // The first queries (the MX query), or none when the lookup is already finished
  // (the domain is not a domain name).
  std::vector<DnsQuestion> start();
  // The answer to one question returned by start() or an earlier on_answer(); returns
  // the further questions to send.
  std::vector<DnsQuestion> on_answer(const DnsQuestion& question, const DnsAnswer& answer);

  bool done() const { return finished_ || (started_ && pending_ == 0); }
  // Only when done().
  Result<std::vector<MxHost>> result() const;

  const std::string& domain() const { return domain_; }

 private:
  struct Host {
    MxHost mx;
    std::vector<std::string> v4, v6;
  };
  void finish(Error error);
  std::vector<DnsQuestion> on_mx(const DnsAnswer& answer);
  std::vector<DnsQuestion> ask_addresses();

  std::string domain_;
  Random& random_;
  bool started_ = false;
  bool finished_ = false;
  bool mx_answered_ = false;
  bool implicit_ = false;
  std::size_t pending_ = 0;
  std::vector<Host> hosts_;
  std::string address_failure_;  // first transient failure of an address lookup
  Error error_;
};

}  // namespace bh::routing
