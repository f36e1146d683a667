#pragma once
// Header and body edits on a whole message (CRLF line ends), for the sinks that change
// what is spooled: header stamp, plug-ins, the program sink and milter actions.
// Pure functions over strings; no I/O. Names compare case-insensitively (RFC 5322 1.2.2).
// Values put in must be free of CR/LF except folding (CRLF followed by WSP); callers
// check untrusted values with header_field_ok() first.

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bh::sinks {

// Where the header section ends: the offset of the first octet of the body (after the
// empty line), or message.size() when there is no empty line (all header).
std::size_t body_offset(std::string_view message);

// Header fields in order: (name, value without the leading space, unfolded lines kept).
std::vector<std::pair<std::string, std::string>> header_fields(std::string_view message);

// A field name (RFC 5322 ftext, 1-200 octets) and a value (no NUL, CR/LF only as folding,
// at most 16 KiB).
bool header_field_ok(std::string_view name, std::string_view value);

// Insert "name: value" before the index-th field (0: first; past the end: last).
void insert_header(std::string& message, std::size_t index, std::string_view name,
                   std::string_view value);
// Append after the last field.
void add_header(std::string& message, std::string_view name, std::string_view value);
// The index-th (1-based, as milter counts) occurrence of `name`: replace its value, or
// delete it when `value` is empty. False: no such occurrence.
bool change_header(std::string& message, std::string_view name, std::size_t index,
                   std::string_view value);
// Replace everything after the header section.
void replace_body(std::string& message, std::string_view body);

}  // namespace bh::sinks
