#pragma once
// LDAP search filters built from untrusted values (RFC 4515; DESIGN.md §4.4, hostile-inputs
// #58). What it is: escaping of assertion values and a tiny builder for the few filter
// shapes the directory needs (equality, AND, OR). Owns nothing; pure functions.
//
// Trust: the attribute names come from the validated config (is_attribute_name), the
// values from the network (RCPT TO addresses). Every value goes through
// escape_filter_value, so `*`, `(`, `)`, `\` and NUL can never change the filter's
// structure: `*@example.org` is searched as the literal `\2a@example.org`, not a wildcard.
//
// Threading: pure functions, safe from any thread.

#include <string>
#include <string_view>
#include <vector>

namespace bh::directory {

// RFC 4515 §3 `valueencoding`: `*` `(` `)` `\` NUL must be written as `\XX`; we also
// escape every other control byte and every byte >= 0x80 (allowed by the RFC, and it
// keeps filters printable in logs). Hex digits are lower case (`\2a`), as in the RFC's
// examples.
std::string escape_filter_value(std::string_view value);

// RFC 4512 §1.4 `oid`: a descriptor (ALPHA *(ALPHA / DIGIT / "-")) or a numeric OID;
// at most 128 octets. Config validation uses it for attribute name overrides.
bool is_attribute_name(std::string_view name);

// "(attr=<escaped value>)". `attr` must satisfy is_attribute_name (checked: a bug
// otherwise, since names come from the validated config).
std::string filter_equals(std::string_view attr, std::string_view value);
// "(attr=<prefix><escaped value>)": the prefix is trusted text (e.g. "smtp:"), also
// escaped, so a caller's constant cannot break the filter either.
std::string filter_equals_prefixed(std::string_view attr, std::string_view prefix,
                                   std::string_view value);
// "(|f1f2...)" and "(&f1f2...)" of already built filters; one filter is returned as is.
// An empty list is a bug (RFC 4526 absolute true/false are not used).
std::string filter_or(const std::vector<std::string>& filters);
std::string filter_and(const std::vector<std::string>& filters);

}  // namespace bh::directory
