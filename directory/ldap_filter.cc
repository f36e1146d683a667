#include "directory/ldap_filter.h"

#include <cctype>

#include "common/result.h"

namespace bh::directory {
namespace {

constexpr char kHex[] = "0123456789abcdef";

std::string combine(char op, const std::vector<std::string>& filters) {
  BH_CHECK(!filters.empty());
  if (filters.size() == 1) {
    return filters.front();
  }
  std::string out = "(";
  out.push_back(op);
  for (const auto& f : filters) {
    BH_CHECK(!f.empty() && f.front() == '(' && f.back() == ')');
    out += f;
  }
  out.push_back(')');
  return out;
}

}  // namespace

std::string escape_filter_value(std::string_view value) {
  std::string out;
  out.reserve(value.size() + 8);
  for (char ch : value) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '*' || c == '(' || c == ')' || c == '\\' || c < 0x20 || c >= 0x7f) {
      out.push_back('\\');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

bool is_attribute_name(std::string_view name) {
  if (name.empty() || name.size() > 128) {
    return false;
  }
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  auto is_alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (is_alpha(name.front())) {  // descr
    for (char c : name) {
      if (!is_alpha(c) && !is_digit(c) && c != '-') {
        return false;
      }
    }
    return true;
  }
  // numericoid = number 1*( DOT number ), number = DIGIT / ( LDIGIT 1*DIGIT )
  std::size_t dots = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      std::size_t len = i - start;
      if (len == 0 || (len > 1 && name[start] == '0')) {
        return false;
      }
      dots += i < name.size() ? 1 : 0;
      start = i + 1;
    } else if (!is_digit(name[i])) {
      return false;
    }
  }
  return dots > 0;
}

std::string filter_equals(std::string_view attr, std::string_view value) {
  return filter_equals_prefixed(attr, {}, value);
}

std::string filter_equals_prefixed(std::string_view attr, std::string_view prefix,
                                   std::string_view value) {
  BH_CHECK(is_attribute_name(attr));
  std::string out = "(";
  out.append(attr).append("=");
  out += escape_filter_value(prefix);
  out += escape_filter_value(value);
  out.push_back(')');
  return out;
}

std::string filter_or(const std::vector<std::string>& filters) { return combine('|', filters); }
std::string filter_and(const std::vector<std::string>& filters) { return combine('&', filters); }

}  // namespace bh::directory
