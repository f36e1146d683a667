#pragma once
// AddressSpace: which recipient domains an SMTP connector is for (DESIGN.md §4.3).
//
// Three pattern forms, compared case-insensitively, a trailing dot ignored on both sides
// ("Example.COM." is "example.com"):
//   example.com      exactly the domain example.com, none of its subdomains
//   *.example.com    every proper subdomain of example.com (a.example.com,
//                    b.a.example.com), NOT example.com itself (Exchange semantics; write
//                    both patterns to cover both)
//   *                every domain
// Domains in patterns are RFC 5321 LDH names (IDNs as A-labels, "xn--..."); address
// literals, other wildcard positions ("a.*.com", "*example.com"), empty labels and names
// over 255 octets are refused by parse() with a permanent error saying why.
//
// Specificity orders the patterns that can match one domain: more matching labels is
// more specific, and an exact pattern beats a wildcard over the same labels:
//   *  -> 0,   *.example.com -> 2 * 2 = 4,   example.com -> 2 * 2 + 1 = 5,
//   *.a.example.com -> 6,   a.example.com -> 7.
// Two patterns that both match one domain never tie unless they are equal.
//
// Value type, immutable after parse(); safe to share between threads.

#include <string>
#include <string_view>

#include "common/result.h"

namespace bh::routing {

enum class AddressSpaceKind { kExact, kSubdomains, kAll };

class AddressSpace {
 public:
  // Errors are permanent with an empty enhanced code (a configuration fault, not a reply).
  static Result<AddressSpace> parse(std::string_view pattern);

  // `domain` as it comes (any case, optional trailing dot). Address literals
  // ("[192.0.2.1]") match nothing, not even "*": they are not routed by domain.
  bool matches(std::string_view domain) const;

  int specificity() const { return specificity_; }
  AddressSpaceKind kind() const { return kind_; }
  // The domain part, normalized: "example.com" for both "example.com" and
  // "*.example.com"; empty for "*".
  const std::string& domain() const { return domain_; }
  // The canonical pattern: "*", "*.example.com" or "example.com".
  std::string str() const;

  friend bool operator==(const AddressSpace& a, const AddressSpace& b) {
    return a.kind_ == b.kind_ && a.domain_ == b.domain_;
  }

 private:
  AddressSpace(AddressSpaceKind kind, std::string domain);

  AddressSpaceKind kind_ = AddressSpaceKind::kAll;
  std::string domain_;
  int specificity_ = 0;
};

}  // namespace bh::routing
