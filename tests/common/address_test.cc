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

namespace bh {
namespace {

Result<Path> rcpt(std::string_view s, bool utf8 = false) { return parse_path(s, false, utf8); }

TEST(Address, PathLimitIncludesTheAngleBrackets) {
  // RFC 5321 §4.5.3.1.3: 256 octets with punctuation. 64 + 1 + 189 + 2 = 256.
  std::string dom;
  while (dom.size() < 180) dom += "abcdefgh.";
  dom += "example";  // 187 octets
  std::string local(64, 'l');
  std::string ok = "<" + local + "@" + dom + "xy>";
  ASSERT_EQ(ok.size(), 256u);
  EXPECT_TRUE(rcpt(ok).ok());
  std::string bad = "<" + local + "@" + dom + "xyz>";
  auto r = rcpt(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().enhanced, "5.1.3");
  EXPECT_FALSE(r.error().transient());
}

TEST(Address, ControlsAreRefusedAnywhere) {
  for (std::string bad : {std::string("<a\rb@x.example>"), std::string("<a\nb@x.example>"),
                          std::string("<a@x.exa\0mple>", 15), std::string("<a\x7f@x.example>"),
                          std::string("<\"a\tb\"@x.example>"), std::string("<a@x.example\r>")}) {
    EXPECT_FALSE(rcpt(bad).ok()) << bad;
    EXPECT_FALSE(rcpt(bad, true).ok()) << bad;
  }
}

TEST(Address, LocalPartIsAVerbatimString) {
  // Hostile #28: expansion syntax is just atext; it is never interpreted.
  auto p = rcpt("<${run{/bin/id}}@Example.ORG>");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->mailbox.local, "${run{/bin/id}}");
  EXPECT_EQ(p->mailbox.str(), "${run{/bin/id}}@example.org");
  EXPECT_FALSE(rcpt("<${run{/bin/sh -c id}}@example.org>").ok());  // space needs quoting
  auto q = rcpt("<\"a \\\"b\\\\\"@example.org>");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->mailbox.local, "\"a \\\"b\\\\\"");
}

TEST(Address, DomainsAndLiterals) {
  EXPECT_EQ(rcpt("<u@OUR.Domain.>")->mailbox.domain, "our.domain");  // hostile #53
  EXPECT_FALSE(rcpt("<u@.>").ok());
  EXPECT_FALSE(rcpt("<u@a..>").ok());
  EXPECT_FALSE(rcpt("<u@[1.2.3]>").ok());
  EXPECT_FALSE(rcpt("<u@[IPv6:1.2.3.4]>").ok());
  EXPECT_FALSE(rcpt("<u@[IPv6:::1:::2]>").ok());
  EXPECT_FALSE(rcpt("<u@[tag:whatever]>").ok());
  EXPECT_TRUE(rcpt("<u@[IPv6:2001:db8::1]>").ok());
  EXPECT_TRUE(is_valid_address_literal("[192.0.2.1]"));
  EXPECT_FALSE(is_valid_address_literal("[01.2.3.4.5]"));
  EXPECT_TRUE(is_valid_domain("xn--bcher-kva.example"));
  EXPECT_FALSE(is_valid_domain("b\xc3\xbc" "cher.example"));
  EXPECT_TRUE(is_valid_domain("b\xc3\xbc" "cher.example", true));
  EXPECT_FALSE(is_valid_domain(std::string(256, 'a')));
  EXPECT_FALSE(is_valid_domain("under_score.example"));
}

TEST(Address, SourceRoutesAreValidatedThenIgnored) {
  EXPECT_EQ(rcpt("<@[192.0.2.1]:relaytest@ext.example>")->mailbox.str(), "relaytest@ext.example");
  EXPECT_FALSE(rcpt("<@bad..route:u@x.example>").ok());
  EXPECT_FALSE(rcpt("<@a.example,b.example:u@x.example>").ok());  // each hop needs '@'
  EXPECT_FALSE(rcpt("<@a.example u@x.example>").ok());
}

}  // namespace
}  // namespace bh
