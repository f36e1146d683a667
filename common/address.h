#pragma once
// RFC 5321 §4.1.2 path syntax: "<local@domain>", optional source route (ignored, the
// final address is judged; RFC 5321 §3.3 / hostile-inputs #51), quoted local parts,
// address literals. Pure functions, no allocation beyond the result, every length capped
// (local part 64, domain 255, path 256 octets: RFC 5321 §4.5.3.1).

#include <string>
#include <string_view>

#include "common/result.h"

namespace bh {

struct Mailbox {
  std::string local;   // as written (quoted form kept, without changing case)
  std::string domain;  // lower-cased, trailing dot removed; "[...]" for literals
  std::string str() const { return local + "@" + domain; }
};

struct Path {
  bool null = false;  // "<>"
  Mailbox mailbox;
};

// Parses `text` (which must start with '<' and end with '>'). `bad_code` is the enhanced
// code for syntax errors: 5.1.7 for senders, 5.1.3 for recipients. Errors are permanent.
// Rejects NUL, CR, LF, other controls, and 8-bit octets unless `smtputf8`. The local part
// is kept verbatim (a plain string: never expanded or interpolated, hostile #28).
Result<Path> parse_path(std::string_view text, bool allow_null, bool smtputf8,
                        std::string_view bad_code = "5.1.3");

// RFC 5321 Domain (dot-separated LDH labels, or U-labels when smtputf8).
bool is_valid_domain(std::string_view domain, bool smtputf8 = false);
// "[1.2.3.4]" or "[IPv6:...]", strictly checked.
bool is_valid_address_literal(std::string_view literal);
// Lower-cases ASCII and drops one trailing dot ("example.org." is "example.org").
std::string normalize_domain(std::string_view domain);

}  // namespace bh
