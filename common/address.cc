#include "common/address.h"

#include <arpa/inet.h>

#include <cctype>

namespace bh {
namespace {

constexpr std::size_t kMaxLocal = 64, kMaxDomain = 255, kMaxPath = 256;

bool is_atext(unsigned char c) {
  if (std::isalnum(c)) {
    return true;
  }
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '/': case '=': case '?': case '^': case '_': case '`': case '{':
    case '|': case '}': case '~':
      return true;
    default:
      return false;
  }
}

// RFC 5321 Dot-string, or RFC 6531 with UTF-8 octets when smtputf8.
bool valid_dot_string(std::string_view s, bool utf8) {
  if (s.empty() || s.front() == '.' || s.back() == '.') {
    return false;
  }
  char prev = 0;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (ch == '.') {
      if (prev == '.') {
        return false;
      }
    } else if (!is_atext(c) && !(utf8 && c >= 0x80)) {
      return false;
    }
    prev = ch;
  }
  return true;
}

// RFC 5321 Quoted-string: qtextSMTP or quoted-pairSMTP (%d32-126 after a backslash).
bool valid_quoted(std::string_view s, bool utf8) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') {
    return false;
  }
  for (std::size_t i = 1; i + 1 < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      if (i + 2 >= s.size()) {
        return false;
      }
      auto n = static_cast<unsigned char>(s[++i]);
      if (n < 32 || n > 126) {
        return false;
      }
    } else if (c == '"' || c < 32 || c == 127 || (c >= 0x80 && !utf8)) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string normalize_domain(std::string_view domain) {
  std::string out(domain);
  if (!out.empty() && out.back() == '.' && out.front() != '[') {
    out.pop_back();
  }
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

bool is_valid_domain(std::string_view d, bool utf8) {
  if (d.empty() || d.size() > kMaxDomain) {
    return false;
  }
  std::size_t start = 0;
  while (start <= d.size()) {
    std::size_t dot = d.find('.', start);
    std::string_view label = d.substr(start, dot == std::string_view::npos ? d.npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char ch : label) {
      auto c = static_cast<unsigned char>(ch);
      if (!std::isalnum(c) && c != '-' && !(utf8 && c >= 0x80)) {
        return false;
      }
    }
    if (dot == std::string_view::npos) {
      break;
    }
    start = dot + 1;
  }
  return true;
}

bool is_valid_address_literal(std::string_view lit) {
  if (lit.size() < 3 || lit.front() != '[' || lit.back() != ']') {
    return false;
  }
  std::string inner(lit.substr(1, lit.size() - 2));
  unsigned char buf[16];
  if (inner.size() > 5 && (inner.compare(0, 5, "IPv6:") == 0 || inner.compare(0, 5, "ipv6:") == 0)) {
    return inet_pton(AF_INET6, inner.c_str() + 5, buf) == 1;
  }
  // Strict dotted quad only: "[0x7f.1]" and "[999.1.1.1]" are malformed (hostile #54).
  for (char c : inner) {
    if (!std::isdigit(static_cast<unsigned char>(c)) && c != '.') {
      return false;
    }
  }
  return inet_pton(AF_INET, inner.c_str(), buf) == 1;
}

Result<Path> parse_path(std::string_view text, bool allow_null, bool utf8,
                        std::string_view bad_code) {
  auto bad = [&](const char* why) {
    return Result<Path>(permanent_error(std::string(bad_code), why));
  };
  if (text.size() < 2 || text.front() != '<' || text.back() != '>') {
    return bad("Syntax error in address: angle brackets required");
  }
  // RFC 5321 §4.5.3.1.3: 256 octets "including the punctuation and element separators",
  // i.e. the angle brackets too.
  if (text.size() > kMaxPath) {
    return bad("Path too long");
  }
  std::string_view in = text.substr(1, text.size() - 2);
  for (char ch : in) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 32 || c == 127 || (c >= 0x80 && !utf8)) {
      return bad("Invalid character in address");
    }
  }
  Path p;
  if (in.empty()) {
    if (!allow_null) {
      return bad("Null address not allowed here");
    }
    p.null = true;
    return p;
  }
  // Source route "@a,@b:" (RFC 5321 §4.1.2 A-d-l): validated, then ignored.
  if (in.front() == '@') {
    std::size_t colon = in.find(':');
    if (colon == std::string_view::npos) {
      return bad("Bad source route");
    }
    std::string_view adl = in.substr(0, colon);
    std::size_t pos = 0;
    while (pos < adl.size()) {
      if (adl[pos] != '@') {
        return bad("Bad source route");
      }
      std::size_t comma = adl.find(',', pos);
      std::string_view dom = adl.substr(pos + 1, comma == adl.npos ? adl.npos : comma - pos - 1);
      if (!is_valid_domain(dom, utf8) && !is_valid_address_literal(dom)) {
        return bad("Bad source route");
      }
      if (comma == adl.npos) {
        break;
      }
      pos = comma + 1;
    }
    in = in.substr(colon + 1);
  }
  // Split at the last '@' outside a quoted local part.
  std::size_t at;
  if (!in.empty() && in.front() == '"') {
    std::size_t i = 1;
    for (; i < in.size(); ++i) {
      if (in[i] == '\\') {
        ++i;
      } else if (in[i] == '"') {
        break;
      }
    }
    if (i >= in.size()) {
      return bad("Unterminated quoted local part");
    }
    at = i + 1;
    if (at >= in.size() || in[at] != '@') {
      return bad("Syntax error in address");
    }
  } else {
    at = in.find('@');
    if (at == std::string_view::npos) {
      return bad("Address must have a domain");
    }
  }
  std::string_view local = in.substr(0, at);
  std::string_view domain = in.substr(at + 1);
  if (local.empty() || local.size() > kMaxLocal) {
    return bad("Local part empty or longer than 64 octets");
  }
  bool local_ok = local.front() == '"' ? valid_quoted(local, utf8) : valid_dot_string(local, utf8);
  if (!local_ok) {
    return bad("Syntax error in local part");
  }
  if (domain.empty()) {
    return bad("Empty domain");
  }
  if (domain.front() == '[') {
    if (!is_valid_address_literal(domain)) {
      return bad("Malformed address literal");
    }
  } else {
    std::string_view d = domain;
    if (d.size() > 1 && d.back() == '.') {
      d.remove_suffix(1);  // "user@our.domain." is our.domain (hostile #53)
    }
    if (!is_valid_domain(d, utf8)) {
      return bad("Syntax error in domain");
    }
  }
  p.mailbox.local = std::string(local);
  p.mailbox.domain = normalize_domain(domain);
  return p;
}

}  // namespace bh
