// XEXCH50 argument parser and blob framing (smtp/xexch50.h), including hostile-inputs
// #21/#22 (MS03-046): negative and huge lengths never pass, and the cap comes first.

#include "smtp/xexch50.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace bh::smtp {
namespace {

std::string be32(std::uint32_t v) {
  std::string s(4, '\0');
  s[0] = static_cast<char>(v >> 24);
  s[1] = static_cast<char>(v >> 16);
  s[2] = static_cast<char>(v >> 8);
  s[3] = static_cast<char>(v);
  return s;
}

TEST(Xexch50Args, WellFormedArgumentsParse) {
  auto r = parse_xexch50_args("2336 3");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.args.octets, 2336u);
  EXPECT_EQ(r.args.count, 3u);
  EXPECT_EQ(r.reply_code(), 0);
  EXPECT_STREQ(r.enhanced(), "");
  EXPECT_TRUE(parse_xexch50_args("1092 2  ").ok());  // trailing spaces tolerated
  EXPECT_EQ(format_xexch50_args(r.args), "2336 3");
}

TEST(Xexch50Args, GarbageSignsAndMissingPartsAre501) {
  for (const char* s : {"", " ", "2", "-1 2", "+2 2", "2 -2", "2 +2", "1x 2", "2 2x", "2  2",
                        " 2 2", "2 2 2", "0x10 2", "2\t2", "two 2", "2 2\r", "\xff\xfe 2"}) {
    auto r = parse_xexch50_args(s);
    ASSERT_FALSE(r.ok()) << s;
    EXPECT_EQ(*r.error, Xexch50ArgError::kSyntax) << s;
    EXPECT_EQ(r.reply_code(), 501) << s;
    EXPECT_STREQ(r.enhanced(), "5.5.4");
    EXPECT_EQ(r.args.octets, 0u);
  }
}

TEST(Xexch50Args, HostileInput22NegativeIs501AndHugeIs552) {
  EXPECT_EQ(parse_xexch50_args("-1 2").reply_code(), 501);
  auto huge = parse_xexch50_args("33554432 2");  // MS03-046 heap spray size
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(*huge.error, Xexch50ArgError::kTooLarge);
  EXPECT_EQ(huge.reply_code(), 552);
  EXPECT_STREQ(huge.enhanced(), "5.3.4");
  // Beyond 32 and 64 bits: still only "too large", never wrapped into a small number.
  EXPECT_EQ(parse_xexch50_args("4294967298 2").reply_code(), 552);
  EXPECT_EQ(parse_xexch50_args("18446744073709551617 2").reply_code(), 552);
  EXPECT_EQ(parse_xexch50_args(std::string(400, '9') + " 2").reply_code(), 552);
}

TEST(Xexch50Args, TheCapIsAParameterAndInclusive) {
  Xexch50Limits lim;
  lim.max_octets = 100;
  EXPECT_TRUE(parse_xexch50_args("100 2", lim).ok());
  EXPECT_EQ(parse_xexch50_args("101 2", lim).reply_code(), 552);
  EXPECT_TRUE(parse_xexch50_args("1048576 2").ok());  // default 1 MiB
  EXPECT_EQ(parse_xexch50_args("1048577 2").reply_code(), 552);
}

TEST(Xexch50Args, CountRangeAndExpectedCount) {
  Xexch50Limits lim;
  lim.max_recipients = 3;
  EXPECT_TRUE(parse_xexch50_args("100 4", lim).ok());
  EXPECT_EQ(parse_xexch50_args("100 5", lim).reply_code(), 501);
  EXPECT_EQ(parse_xexch50_args("100 0", lim).reply_code(), 501);
  EXPECT_EQ(parse_xexch50_args("100 99999999999", lim).reply_code(), 501);
  lim.expected_count = 3;  // two recipients accepted
  EXPECT_TRUE(parse_xexch50_args("100 3", lim).ok());
  EXPECT_EQ(parse_xexch50_args("100 2", lim).reply_code(), 501);
}

TEST(Xexch50Args, TooFewOctetsForTheLengthPrefixesIs501) {
  EXPECT_EQ(parse_xexch50_args("0 1").reply_code(), 501);
  EXPECT_EQ(parse_xexch50_args("2 2").reply_code(), 501);  // hostile #21's probe
  EXPECT_EQ(parse_xexch50_args("7 2").reply_code(), 501);
  EXPECT_TRUE(parse_xexch50_args("8 2").ok());  // two empty sub-blobs
}

TEST(Xexch50Blob, RoundTripsMessageAndRecipients) {
  std::vector<std::string> rcpts = {"r1", "", std::string("\0\xff\r\n", 4)};
  std::string blob = serialize_xexch50_blob("message props", rcpts);
  EXPECT_EQ(blob.size(), 4 * 4 + 13 + 2 + 0 + 4);
  Xexch50BlobLimits lim;
  lim.expected_subblobs = 4;
  auto r = parse_xexch50_blob(blob, lim);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.blob.message, "message props");
  ASSERT_EQ(r.blob.recipients.size(), 3u);
  EXPECT_EQ(r.blob.count(), 4u);
  auto owned = to_owned(r.blob);
  EXPECT_EQ(owned.recipients, rcpts);
  // The views point into the input, no copy.
  EXPECT_GE(r.blob.message.data(), blob.data());
  EXPECT_LT(r.blob.message.data(), blob.data() + blob.size());
  // Args and blob agree.
  auto a = parse_xexch50_args(format_xexch50_args({blob.size(), 4}));
  ASSERT_TRUE(a.ok());
}

TEST(Xexch50Blob, EmptyMessageOnly) {
  auto r = parse_xexch50_blob(be32(0));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.blob.message, "");
  EXPECT_TRUE(r.blob.recipients.empty());
  EXPECT_EQ(*parse_xexch50_blob("").error, Xexch50BlobError::kEmpty);
}

TEST(Xexch50Blob, LengthsAreCheckedAgainstWhatRemains) {
  EXPECT_EQ(*parse_xexch50_blob(std::string(3, '\0')).error, Xexch50BlobError::kTruncatedLength);
  EXPECT_EQ(*parse_xexch50_blob(be32(0xffffffffu) + "abc").error, Xexch50BlobError::kTruncatedData);
  EXPECT_EQ(*parse_xexch50_blob(be32(4) + "abc").error, Xexch50BlobError::kTruncatedData);
  EXPECT_EQ(*parse_xexch50_blob(be32(3) + "abc" + std::string(2, '\0')).error,
            Xexch50BlobError::kTruncatedLength);
  EXPECT_TRUE(parse_xexch50_blob(be32(3) + "abc").ok());
}

TEST(Xexch50Blob, CountCapsAndExpectedCount) {
  std::string many;
  for (int i = 0; i < 1000; ++i) {
    many += be32(0);
  }
  Xexch50BlobLimits lim;
  auto r = parse_xexch50_blob(many, lim);  // default max 101
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(*r.error, Xexch50BlobError::kTooMany);
  EXPECT_TRUE(r.blob.recipients.empty());
  lim.max_subblobs = 1000;
  EXPECT_TRUE(parse_xexch50_blob(many, lim).ok());
  lim.expected_subblobs = 999;  // one sub-blob too many
  EXPECT_EQ(*parse_xexch50_blob(many, lim).error, Xexch50BlobError::kTooMany);
  lim.expected_subblobs = 1001;
  lim.max_subblobs = 2000;
  EXPECT_EQ(*parse_xexch50_blob(many, lim).error, Xexch50BlobError::kTooFew);
  EXPECT_NE(std::string(to_string(Xexch50BlobError::kTooFew)), "");
}

}  // namespace
}  // namespace bh::smtp
