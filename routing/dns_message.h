#pragma once
// A DNS reply parser for what MX resolution needs (RFC 1035 §4.1): header, answer and
// additional sections, records of class IN of type A, AAAA, MX and CNAME. Pure, no I/O,
// no allocation beyond the result; every offset is bounds-checked and name compression
// pointers may only point backwards, so a hostile reply cannot loop or read outside the
// buffer. Anything malformed is an error, never a partial reply.
//
// Names come back lower-cased without the trailing dot; the root is "".

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace bh::routing {

enum class DnsType : std::uint16_t { kA = 1, kCname = 5, kMx = 15, kAaaa = 28 };

struct DnsRecord {
  std::string name;
  DnsType type = DnsType::kA;
  std::uint16_t preference = 0;  // MX
  std::string target;            // MX exchange, CNAME target
  std::string address;           // A / AAAA, textual ("192.0.2.1", "2001:db8::1")
};

struct DnsReply {
  int rcode = 0;  // RFC 1035 §4.1.1: 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED
  std::vector<DnsRecord> answers;     // only the types above
  std::vector<DnsRecord> additional;  // only the types above
};

// Transient 4.4.3 on anything malformed (a resolver that sends garbage is a fault that
// may clear, not a verdict about the domain).
Result<DnsReply> parse_dns_reply(const unsigned char* data, std::size_t size);

}  // namespace bh::routing
