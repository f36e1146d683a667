#include "common/address.h"

#include <gtest/gtest.h>

namespace bh {
namespace {

TEST(Address, ParsesAndNormalizes) {
  auto p = parse_path("<Alice@Example.ORG.>", false, false, "5.1.3");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->mailbox.local, "Alice");
  EXPECT_EQ(p->mailbox.domain, "example.org");
  EXPECT_TRUE(parse_path("<>", true, false, "5.1.7")->null);
  EXPECT_FALSE(parse_path("<>", false, false, "5.1.3").ok());
}

TEST(Address, SourceRouteIsIgnoredFinalAddressJudged) {
  auto p = parse_path("<@a.example,@b.example:user@ext.example>", false, false, "5.1.3");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->mailbox.str(), "user@ext.example");
  EXPECT_FALSE(parse_path("<@a.example:>", false, false, "5.1.3").ok());
}

TEST(Address, QuotedLocalParts) {
  auto p = parse_path("<\"relaytest@ext.example\"@example.org>", false, false, "5.1.3");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->mailbox.domain, "example.org");
  EXPECT_FALSE(parse_path("<\"relaytest@ext.example\">", false, false, "5.1.3").ok());
  EXPECT_FALSE(parse_path("<\"unterminated@example.org>", false, false, "5.1.3").ok());
}

TEST(Address, RelayTricksAreSyntaxErrorsOrForeign) {
  // Double @ (hostile 50), bang path without domain (52).
  EXPECT_FALSE(parse_path("<relaytest@ext.example@[127.0.0.1]>", false, false, "5.1.3").ok());
  EXPECT_FALSE(parse_path("<ext.example!relaytest>", false, false, "5.1.3").ok());
  // Address literals (54).
  EXPECT_TRUE(parse_path("<user@[127.0.0.1]>", false, false, "5.1.3").ok());
  EXPECT_TRUE(parse_path("<user@[IPv6:::1]>", false, false, "5.1.3").ok());
  EXPECT_FALSE(parse_path("<user@[0x7f.1]>", false, false, "5.1.3").ok());
  EXPECT_FALSE(parse_path("<user@[999.1.1.1]>", false, false, "5.1.3").ok());
}

TEST(Address, LimitsAndBadOctets) {
  EXPECT_FALSE(parse_path("<" + std::string(65, 'a') + "@example.org>", false, false, "5.1.3").ok());
  EXPECT_TRUE(parse_path("<" + std::string(64, 'a') + "@example.org>", false, false, "5.1.3").ok());
  std::string longdom;
  for (int i = 0; i < 60; ++i) longdom += "abcd.";
  EXPECT_FALSE(parse_path("<a@" + longdom + "org>", false, false, "5.1.3").ok());
  EXPECT_FALSE(parse_path(std::string("<a\0b@x.example>", 15), false, false, "5.1.3").ok());
  EXPECT_FALSE(parse_path("<a..b@x.example>", false, false, "5.1.3").ok());
  EXPECT_FALSE(parse_path("<j\xc3\xb6rg@x.example>", false, false, "5.1.3").ok());
  EXPECT_TRUE(parse_path("<j\xc3\xb6rg@x.example>", false, true, "5.1.3").ok());
  auto bad = parse_path("<;sleep 66;>", true, false, "5.1.7");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().enhanced, "5.1.7");
}

TEST(Domain, Validity) {
  EXPECT_TRUE(is_valid_domain("example.org"));
  EXPECT_FALSE(is_valid_domain("-bad.example"));
  EXPECT_FALSE(is_valid_domain("a..b"));
  EXPECT_FALSE(is_valid_domain(std::string(64, 'a') + ".org"));
  EXPECT_EQ(normalize_domain("Example.ORG."), "example.org");
}

}  // namespace
}  // namespace bh
