// RFC 4515 escaping and the filter builder, with the LDAP injection strings of
// hostile-inputs #58.
#include "directory/ldap_filter.h"

#include <gtest/gtest.h>

#include <cctype>
#include <string>

namespace bh::directory {
namespace {

using std::string_literals::operator""s;

TEST(LdapFilterEscape, PlainAddressIsUnchanged) {
  EXPECT_EQ(escape_filter_value("alice.liddell+tag@example.test"),
            "alice.liddell+tag@example.test");
  EXPECT_EQ(escape_filter_value(""), "");
}

TEST(LdapFilterEscape, TheFiveSpecialsBecomeHex) {
  EXPECT_EQ(escape_filter_value("*"), "\\2a");
  EXPECT_EQ(escape_filter_value("("), "\\28");
  EXPECT_EQ(escape_filter_value(")"), "\\29");
  EXPECT_EQ(escape_filter_value("\\"), "\\5c");
  EXPECT_EQ(escape_filter_value("\0"s), "\\00");
}

TEST(LdapFilterEscape, NonAsciiAndControlsBecomeHexBytes) {
  EXPECT_EQ(escape_filter_value("j\xc3\xb6rg@example.test"), "j\\c3\\b6rg@example.test");
  EXPECT_EQ(escape_filter_value("a\r\nb\x7f"), "a\\0d\\0ab\\7f");
  EXPECT_EQ(escape_filter_value("\xff"), "\\ff");
}

// hostile-inputs #58, with the categorizer filter (|(mail=%s)(proxyAddresses=smtp:%s)).
TEST(LdapFilterEscape, HostileInputs58) {
  auto f = [](std::string_view a) {
    return filter_or(
        {filter_equals("mail", a), filter_equals_prefixed("proxyAddresses", "smtp:", a)});
  };
  EXPECT_EQ(f("*@our.domain"), "(|(mail=\\2a@our.domain)(proxyAddresses=smtp:\\2a@our.domain))");
  EXPECT_EQ(f("\"a)(mail=*\"@our.domain"),
            "(|(mail=\"a\\29\\28mail=\\2a\"@our.domain)"
            "(proxyAddresses=smtp:\"a\\29\\28mail=\\2a\"@our.domain))");
  // The quoted "x\\00y" reaches us as the characters x \ 0 0 y: the backslash is escaped,
  // so it can never turn into an escape of its own.
  EXPECT_EQ(escape_filter_value("\"x\\00y\"@our.domain"), "\"x\\5c00y\"@our.domain");
  // A raw NUL never truncates the filter: the bytes after it are still there.
  std::string raw = "x\0y@our.domain"s;
  std::string esc = escape_filter_value(raw);
  EXPECT_EQ(esc, "x\\00y@our.domain");
  EXPECT_EQ(esc.find('\0'), std::string::npos);
  // The classic "close and reopen" attack.
  EXPECT_EQ(escape_filter_value("*)(|(objectClass=*"), "\\2a\\29\\28|\\28objectClass=\\2a");
}

TEST(LdapFilterEscape, EscapedValueHasBalancedStructure) {
  // Whatever the input, the escaped value holds no '(' ')' '*' or NUL.
  std::string all;
  for (int c = 0; c < 256; ++c) {
    all.push_back(static_cast<char>(c));
  }
  std::string esc = escape_filter_value(all);
  EXPECT_EQ(esc.find_first_of("()*"), std::string::npos);
  EXPECT_EQ(esc.find('\0'), std::string::npos);
  // Every backslash starts a two-digit hex escape.
  for (std::size_t i = 0; i < esc.size(); ++i) {
    if (esc[i] == '\\') {
      ASSERT_LT(i + 2, esc.size());
      EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(esc[i + 1])));
      EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(esc[i + 2])));
      i += 2;
    }
  }
}

TEST(LdapFilterBuild, EqualsAndCombinations) {
  EXPECT_EQ(filter_equals("mail", "a@b"), "(mail=a@b)");
  EXPECT_EQ(filter_or({"(a=1)"}), "(a=1)");
  EXPECT_EQ(filter_or({"(a=1)", "(b=2)"}), "(|(a=1)(b=2))");
  EXPECT_EQ(filter_and({"(a=1)", filter_or({"(b=2)", "(c=3)"})}), "(&(a=1)(|(b=2)(c=3)))");
}

TEST(LdapFilterBuild, AttributeNames) {
  EXPECT_TRUE(is_attribute_name("proxyAddresses"));
  EXPECT_TRUE(is_attribute_name("msExchHomeServerName"));
  EXPECT_TRUE(is_attribute_name("x-attr-1"));
  EXPECT_TRUE(is_attribute_name("1.3.6.1.4.1.99999.1.1.1"));
  EXPECT_FALSE(is_attribute_name(""));
  EXPECT_FALSE(is_attribute_name("mail)(x"));
  EXPECT_FALSE(is_attribute_name("mail="));
  EXPECT_FALSE(is_attribute_name("1abc"));
  EXPECT_FALSE(is_attribute_name("1"));
  EXPECT_FALSE(is_attribute_name("1..2"));
  EXPECT_FALSE(is_attribute_name("1.02"));
  EXPECT_FALSE(is_attribute_name("-mail"));
  EXPECT_FALSE(is_attribute_name(std::string(129, 'a')));
}

TEST(LdapFilterBuildDeathTest, BadAttributeNameIsABug) {
  EXPECT_DEATH(filter_equals("mail)(uid", "x"), "is_attribute_name");
  EXPECT_DEATH(filter_or({}), "empty");
}

}  // namespace
}  // namespace bh::directory
