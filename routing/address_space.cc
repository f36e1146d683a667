#include "routing/address_space.h"

#include <algorithm>
#include <cctype>

#include "common/address.h"

namespace bh::routing {

namespace {

constexpr std::size_t kMaxDomain = 255;  // RFC 5321 4.5.3.1.2

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

std::string_view strip_dot(std::string_view d) {
  if (!d.empty() && d.back() == '.') {
    d.remove_suffix(1);
  }
  return d;
}

// `a` any case, `lowered` already lower-case.
bool iequal(std::string_view a, std::string_view lowered) {
  return a.size() == lowered.size() &&
         std::equal(a.begin(), a.end(), lowered.begin(), [](char x, char y) { return lower(x) == y; });
}

int label_count(std::string_view d) {
  return d.empty() ? 0 : static_cast<int>(std::count(d.begin(), d.end(), '.')) + 1;
}

Error bad(std::string_view pattern, const std::string& why) {
  return permanent_error("", "address space \"" + std::string(pattern) + "\": " + why);
}

}  // namespace

AddressSpace::AddressSpace(AddressSpaceKind kind, std::string domain)
    : kind_(kind), domain_(std::move(domain)) {
  switch (kind_) {
    case AddressSpaceKind::kAll:
      specificity_ = 0;
      break;
    case AddressSpaceKind::kSubdomains:
      specificity_ = 2 * label_count(domain_);
      break;
    case AddressSpaceKind::kExact:
      specificity_ = 2 * label_count(domain_) + 1;
      break;
  }
}

Result<AddressSpace> AddressSpace::parse(std::string_view pattern) {
  if (pattern.empty()) {
    return bad(pattern, "empty pattern (use \"*\" for every domain)");
  }
  if (pattern == "*") {
    return AddressSpace(AddressSpaceKind::kAll, "");
  }
  AddressSpaceKind kind = AddressSpaceKind::kExact;
  std::string_view rest = pattern;
  if (rest.size() >= 2 && rest.substr(0, 2) == "*.") {
    kind = AddressSpaceKind::kSubdomains;
    rest.remove_prefix(2);
  }
  if (rest.find('*') != std::string_view::npos) {
    return bad(pattern, "'*' is allowed only alone or as the whole first label (\"*.example.com\")");
  }
  if (!rest.empty() && rest.front() == '[') {
    return bad(pattern, "address literals cannot be address spaces");
  }
  std::string d = normalize_domain(rest);
  if (d.empty()) {
    return bad(pattern, kind == AddressSpaceKind::kSubdomains ? "no domain after \"*.\""
                                                              : "not a domain name");
  }
  if (d.size() > kMaxDomain) {
    return bad(pattern, "domain longer than 255 octets");
  }
  if (!is_valid_domain(d)) {
    return bad(pattern, "not a domain name (letters, digits and '-' in dot-separated labels; "
                        "IDNs as xn-- A-labels)");
  }
  return AddressSpace(kind, std::move(d));
}

bool AddressSpace::matches(std::string_view domain) const {
  domain = strip_dot(domain);
  if (domain.empty() || domain.front() == '[') {
    return false;
  }
  switch (kind_) {
    case AddressSpaceKind::kAll:
      return true;
    case AddressSpaceKind::kExact:
      return iequal(domain, domain_);
    case AddressSpaceKind::kSubdomains:
      // A proper subdomain: at least one more label, then ".<domain_>".
      return domain.size() > domain_.size() + 1 &&
             domain[domain.size() - domain_.size() - 1] == '.' &&
             iequal(domain.substr(domain.size() - domain_.size()), domain_);
  }
  return false;
}

std::string AddressSpace::str() const {
  switch (kind_) {
    case AddressSpaceKind::kAll:
      return "*";
    case AddressSpaceKind::kSubdomains:
      return "*." + domain_;
    case AddressSpaceKind::kExact:
      return domain_;
  }
  return domain_;
}

}  // namespace bh::routing
