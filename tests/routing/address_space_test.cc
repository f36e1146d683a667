#include "routing/address_space.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace bh::routing {
namespace {

struct MatchCase {
  std::string pattern;
  std::string domain;
  bool match;
};

void PrintTo(const MatchCase& c, std::ostream* os) {
  *os << c.pattern << " vs " << c.domain << (c.match ? " matches" : " does not match");
}

class AddressSpaceMatch : public ::testing::TestWithParam<MatchCase> {};

TEST_P(AddressSpaceMatch, Table) {
  const MatchCase& c = GetParam();
  auto s = AddressSpace::parse(c.pattern);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->matches(c.domain), c.match);
}

INSTANTIATE_TEST_SUITE_P(
    All, AddressSpaceMatch,
    ::testing::Values(
        // exact
        MatchCase{"example.com", "example.com", true},
        MatchCase{"example.com", "EXAMPLE.Com", true},
        MatchCase{"example.com", "example.com.", true},
        MatchCase{"Example.COM.", "example.com", true},
        MatchCase{"example.com", "a.example.com", false},
        MatchCase{"example.com", "notexample.com", false},
        MatchCase{"example.com", "example.co", false},
        MatchCase{"example.com", "example.com.au", false},
        // subdomains only, never the domain itself
        MatchCase{"*.example.com", "a.example.com", true},
        MatchCase{"*.example.com", "b.a.example.com", true},
        MatchCase{"*.example.com", "A.EXAMPLE.COM.", true},
        MatchCase{"*.Example.Com", "a.example.com", true},
        MatchCase{"*.example.com", "example.com", false},
        MatchCase{"*.example.com", "example.com.", false},
        MatchCase{"*.example.com", "badexample.com", false},
        MatchCase{"*.example.com", "a.example.com.au", false},
        MatchCase{"*.example.com", ".example.com", false},
        MatchCase{"*.com", "example.com", true},
        // everything
        MatchCase{"*", "example.com", true},
        MatchCase{"*", "Localhost.", true},
        MatchCase{"*", "", false},
        MatchCase{"*", "[192.0.2.1]", false},
        MatchCase{"example.com", "[192.0.2.1]", false}),
    [](const ::testing::TestParamInfo<MatchCase>& i) { return "Case" + std::to_string(i.index); });

TEST(AddressSpace, CanonicalForm) {
  EXPECT_EQ(AddressSpace::parse("*")->str(), "*");
  EXPECT_EQ(AddressSpace::parse("*.Example.COM.")->str(), "*.example.com");
  EXPECT_EQ(AddressSpace::parse("*.Example.COM.")->domain(), "example.com");
  EXPECT_EQ(AddressSpace::parse("Example.COM")->str(), "example.com");
  EXPECT_EQ(AddressSpace::parse("*")->kind(), AddressSpaceKind::kAll);
  EXPECT_EQ(AddressSpace::parse("*.a.b")->kind(), AddressSpaceKind::kSubdomains);
  EXPECT_EQ(AddressSpace::parse("a.b")->kind(), AddressSpaceKind::kExact);
  EXPECT_TRUE(*AddressSpace::parse("EXAMPLE.com.") == *AddressSpace::parse("example.com"));
  EXPECT_FALSE(*AddressSpace::parse("*.example.com") == *AddressSpace::parse("example.com"));
}

TEST(AddressSpace, Specificity) {
  auto sp = [](const char* p) { return AddressSpace::parse(p)->specificity(); };
  EXPECT_EQ(sp("*"), 0);
  EXPECT_EQ(sp("*.com"), 2);
  EXPECT_EQ(sp("com"), 3);
  EXPECT_EQ(sp("*.example.com"), 4);
  EXPECT_EQ(sp("example.com"), 5);
  EXPECT_EQ(sp("*.a.example.com"), 6);
  EXPECT_EQ(sp("a.example.com"), 7);
  // Whenever two different patterns match one domain, the one named more precisely has
  // the higher specificity.
  const std::vector<std::string> patterns = {"*", "*.com", "*.example.com", "example.com",
                                             "*.a.example.com", "a.example.com", "b.a.example.com"};
  for (const char* d : {"example.com", "a.example.com", "b.a.example.com", "c.b.a.example.com"}) {
    std::vector<int> seen;
    for (const auto& p : patterns) {
      auto s = AddressSpace::parse(p);
      if (s->matches(d)) {
        for (int other : seen) {
          EXPECT_NE(other, s->specificity()) << p << " for " << d;
        }
        seen.push_back(s->specificity());
      }
    }
  }
}

struct BadPattern {
  std::string pattern;
  std::string why;
};

class AddressSpaceInvalid : public ::testing::TestWithParam<BadPattern> {};

TEST_P(AddressSpaceInvalid, RefusedWithReason) {
  const BadPattern& b = GetParam();
  auto s = AddressSpace::parse(b.pattern);
  ASSERT_FALSE(s.ok()) << b.pattern;
  EXPECT_FALSE(s.error().transient());
  EXPECT_NE(s.error().message.find("\"" + b.pattern + "\""), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find(b.why), std::string::npos) << s.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    All, AddressSpaceInvalid,
    ::testing::Values(BadPattern{"", "empty pattern"},
                      BadPattern{"*.", "no domain after"},
                      BadPattern{".", "not a domain name"},
                      BadPattern{"**", "'*' is allowed only"},
                      BadPattern{"*example.com", "'*' is allowed only"},
                      BadPattern{"a.*.com", "'*' is allowed only"},
                      BadPattern{"*.*.com", "'*' is allowed only"},
                      BadPattern{"example.*", "'*' is allowed only"},
                      BadPattern{".example.com", "not a domain name"},
                      BadPattern{"example..com", "not a domain name"},
                      BadPattern{"exa mple.com", "not a domain name"},
                      BadPattern{"-example.com", "not a domain name"},
                      BadPattern{"user@example.com", "not a domain name"},
                      BadPattern{"[192.0.2.1]", "address literals"},
                      BadPattern{std::string(64, 'a') + ".com", "not a domain name"},
                      BadPattern{std::string(300, 'a'), "longer than 255"}),
    [](const ::testing::TestParamInfo<BadPattern>& i) { return "Case" + std::to_string(i.index); });

}  // namespace
}  // namespace bh::routing
