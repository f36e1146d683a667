#pragma once
// ASCII case mapping for protocol keywords, domains and identities (never locale-aware:
// SMTP verbs, EHLO keywords and DNS names are ASCII, RFC 5321 §2.4). Header-only.

#include <cctype>
#include <string>
#include <string_view>

namespace bh {

inline std::string ascii_lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return r;
}

// A name of the organization (node id, routing group, connector id; DESIGN.md §4.2): 1-128
// of [A-Za-z0-9._-]. Such names go into certificates, tables, queue next hops and logs.
inline bool is_node_name(std::string_view name) {
  if (name.empty() || name.size() > 128) {
    return false;
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

inline std::string ascii_upper(std::string_view s) {
  std::string r(s);
  for (char& c : r) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return r;
}

}  // namespace bh
