#include "routing/connector.h"

#include <arpa/inet.h>

#include <cctype>

#include "common/address.h"

namespace bh::routing {

namespace {

Error bad(std::string_view text, const std::string& why) {
  return permanent_error("", "smart host \"" + std::string(text) + "\": " + why);
}

bool parse_port(std::string_view s, std::uint16_t& port) {
  if (s.empty() || s.size() > 5) {
    return false;
  }
  unsigned value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) {
    return false;
  }
  port = static_cast<std::uint16_t>(value);
  return true;
}

bool is_ipv4(const std::string& s) {
  unsigned char buf[4];
  return inet_pton(AF_INET, s.c_str(), buf) == 1;
}

bool is_ipv6(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

}  // namespace

std::string SmartHost::str() const {
  std::string h = is_ip && host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return port == 0 ? h : h + ":" + std::to_string(port);
}

Result<SmartHost> parse_smart_host(std::string_view text) {
  if (text.empty()) {
    return bad(text, "empty");
  }
  SmartHost out;
  std::string_view host = text;
  std::string_view port;
  bool has_port = false;
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) {
      return bad(text, "missing ']'");
    }
    host = text.substr(1, close - 1);
    std::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return bad(text, "expected \":port\" after ']'");
      }
      port = after.substr(1);
      has_port = true;
    }
    std::string h(host);
    if (!is_ipv4(h) && !is_ipv6(h)) {
      return bad(text, "brackets must hold an IPv4 or IPv6 address");
    }
    out.host = h;
    out.is_ip = true;
  } else {
    auto colon = text.find(':');
    if (colon != std::string_view::npos) {
      if (text.find(':', colon + 1) != std::string_view::npos) {
        return bad(text, "write IPv6 addresses in brackets: [2001:db8::1]:25");
      }
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      has_port = true;
    }
    std::string h(host);
    if (is_ipv4(h)) {
      out.host = h;
      out.is_ip = true;
    } else {
      std::string d = normalize_domain(h);
      bool digits_and_dots = !d.empty() && d.find_first_not_of("0123456789.") == std::string::npos;
      if (digits_and_dots || !is_valid_domain(d)) {
        return bad(text, "not an IP address or host name");
      }
      out.host = d;
    }
  }
  if (has_port && !parse_port(port, out.port)) {
    return bad(text, "port out of range (1-65535)");
  }
  return out;
}

bool is_valid_connector_name(std::string_view name) {
  if (name.empty() || name.size() > 64) {
    return false;
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

}  // namespace bh::routing
