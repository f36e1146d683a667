#include "smtp/esmtp_params.h"

#include <cctype>

#include "queue/dsn.h"

namespace bh::smtp {

std::optional<std::uint64_t> parse_decimal(std::string_view s) {
  if (s.empty() || s.size() > 20) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) {
      return std::nullopt;
    }
    v = v * 10 + d;
  }
  return v;
}

std::optional<std::string> decode_xtext(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') {
      return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
      return c - 'A' + 10;
    }
    return -1;  // RFC 3461: upper-case hex only
  };
  for (std::size_t i = 0; i < in.size(); ++i) {
    auto c = static_cast<unsigned char>(in[i]);
    if (c == '+') {
      if (i + 2 >= in.size()) {
        return std::nullopt;
      }
      int h = hex(in[i + 1]), l = hex(in[i + 2]);
      if (h < 0 || l < 0) {
        return std::nullopt;
      }
      auto v = static_cast<unsigned char>(h * 16 + l);
      if (v < 33 || v > 126) {
        return std::nullopt;  // xchar range only: no CR, LF, NUL, space or 8-bit
      }
      out.push_back(static_cast<char>(v));
      i += 2;
    } else if (c < 33 || c > 126 || c == '=') {
      return std::nullopt;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

std::string encode_xtext(std::string_view in) { return queue::xtext_encode(in); }

Result<PathAndParams> split_path_params(std::string_view rest, std::size_t max_params) {
  PathAndParams r;
  if (rest.empty() || rest.front() != '<') {
    return permanent_error("5.5.4", "Syntax error: address must be in angle brackets");
  }
  bool quoted = false;
  std::size_t end = std::string_view::npos;
  for (std::size_t i = 1; i < rest.size(); ++i) {
    if (quoted && rest[i] == '\\') {
      ++i;
    } else if (rest[i] == '"') {
      quoted = !quoted;
    } else if (!quoted && rest[i] == '>') {
      end = i;
      break;
    }
  }
  if (end == std::string_view::npos) {
    return permanent_error("5.5.4", "Syntax error: unterminated address");
  }
  r.path = rest.substr(0, end + 1);
  std::string_view tail = rest.substr(end + 1);
  if (!tail.empty() && tail.front() != ' ') {
    return permanent_error("5.5.4", "Syntax error after address");
  }
  std::size_t pos = 0;
  while (pos < tail.size()) {
    while (pos < tail.size() && tail[pos] == ' ') {
      ++pos;
    }
    if (pos >= tail.size()) {
      break;
    }
    std::size_t sp = tail.find(' ', pos);
    std::string_view tok = tail.substr(pos, sp == tail.npos ? tail.npos : sp - pos);
    pos = sp == tail.npos ? tail.size() : sp;
    if (r.params.size() >= max_params) {
      return permanent_error("5.5.4", "Too many parameters");
    }
    std::size_t eq = tok.find('=');
    std::string_view key = tok.substr(0, eq);
    if (key.empty()) {
      return permanent_error("5.5.4", "Syntax error in parameters");
    }
    std::string ukey;
    for (char c : key) {
      auto uc = static_cast<unsigned char>(c);
      if (!std::isalnum(uc) && c != '-') {
        return permanent_error("5.5.4", "Syntax error in parameter keyword");
      }
      ukey.push_back(static_cast<char>(std::toupper(uc)));
    }
    std::string value;
    if (eq != std::string_view::npos) {
      value = std::string(tok.substr(eq + 1));
      for (char c : value) {
        auto uc = static_cast<unsigned char>(c);
        if (uc < 33 || uc == 127 || c == '=' || c == '"') {
          return permanent_error("5.5.4", "Syntax error in parameter value");
        }
      }
    }
    r.params.emplace_back(std::move(ukey), std::move(value));
    r.has_value.push_back(eq != std::string_view::npos);
  }
  return r;
}

}  // namespace bh::smtp
