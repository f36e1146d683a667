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

inline std::string ascii_upper(std::string_view s) {
  std::string r(s);
  for (char& c : r) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return r;
}

}  // namespace bh
