#include "smtp/esmtp_params.h"

#include <gtest/gtest.h>

namespace bh::smtp {
namespace {

TEST(Xtext, DecodesAndRoundTrips) {
  EXPECT_EQ(decode_xtext("a+2Bb+3Dc").value(), "a+b=c");
  EXPECT_EQ(decode_xtext(encode_xtext("x+y=z@w")).value(), "x+y=z@w");
}

TEST(Xtext, RejectsMalformedAndControls) {
  EXPECT_FALSE(decode_xtext("+0D+0A"));  // CR LF could break a record
  EXPECT_FALSE(decode_xtext("+00"));
  EXPECT_FALSE(decode_xtext("+2"));
  EXPECT_FALSE(decode_xtext("+zz"));
  EXPECT_FALSE(decode_xtext("+2b"));  // RFC 3461: upper-case hex
  EXPECT_FALSE(decode_xtext("a=b"));
}

TEST(Decimal, OverflowAndJunk) {
  EXPECT_EQ(parse_decimal("18446744073709551615").value(), UINT64_MAX);
  EXPECT_FALSE(parse_decimal("18446744073709551616"));
  EXPECT_FALSE(parse_decimal("-1"));
  EXPECT_FALSE(parse_decimal("1x"));
  EXPECT_FALSE(parse_decimal(""));
  EXPECT_FALSE(parse_decimal("+1"));
}

TEST(SplitPathParams, QuotedAngleAndParameters) {
  auto r = split_path_params("<\"a>b\"@c.example> SIZE=10 SMTPUTF8");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->path, "<\"a>b\"@c.example>");
  ASSERT_EQ(r->params.size(), 2u);
  EXPECT_EQ(r->params[0].first, "SIZE");
  EXPECT_EQ(r->params[0].second, "10");
  EXPECT_FALSE(r->has_value[1]);
  EXPECT_FALSE(split_path_params("<a@b.example>X=1").ok());
  EXPECT_FALSE(split_path_params("a@b.example").ok());
  std::string many = "<a@b.example>";
  for (int i = 0; i < 20; ++i) many += " P" + std::to_string(i) + "=1";
  EXPECT_FALSE(split_path_params(many).ok());
}

}  // namespace
}  // namespace bh::smtp
