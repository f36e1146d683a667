#include "common/base64.h"

#include <gtest/gtest.h>

#include <string>

namespace bh {
namespace {

// RFC 4648 §10 test vectors.
TEST(Base64, Rfc4648Vectors) {
  const std::pair<const char*, const char*> v[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, enc] : v) {
    EXPECT_EQ(base64_encode(plain), enc);
    auto d = base64_decode(enc);
    ASSERT_TRUE(d.ok()) << enc;
    EXPECT_EQ(d.bytes, plain);
    EXPECT_EQ(base64_decoded_size(enc), std::string(plain).size());
  }
}

TEST(Base64, EveryByteRoundTrips) {
  std::string all;
  for (int i = 0; i < 256; ++i) {
    all.push_back(static_cast<char>(i));
  }
  for (std::size_t n = 0; n <= all.size(); n += 7) {
    std::string s = all.substr(0, n);
    auto d = base64_decode(base64_encode(s));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.bytes, s);
  }
  EXPECT_EQ(base64_encode(std::string("\0user\0pass", 10)), "AHVzZXIAcGFzcw==");
}

TEST(Base64, LengthNotAMultipleOfFourIsRefused) {
  for (const char* s : {"A", "AA", "AAA", "AAAAA", "Zm9v\r\n", "Zg="}) {
    auto d = base64_decode(s);
    ASSERT_FALSE(d.ok()) << s;
    EXPECT_EQ(*d.error, Base64Error::kBadLength) << s;
    EXPECT_TRUE(d.bytes.empty());
  }
}

TEST(Base64, CharactersOutsideTheAlphabetAreRefused) {
  // Whitespace, the URL-safe alphabet, NUL, 8-bit, a CRLF inside: never skipped.
  for (std::string s : {std::string("Zm9 "), std::string("Zm9-"), std::string("Zm9_"),
                        std::string("Zm\0v", 4), std::string("Zm\xffv"), std::string("Zm\r\n"),
                        std::string("Zm9v Zm9v"), std::string("{FFFFFFFF}==")}) {
    auto d = base64_decode(s);
    ASSERT_FALSE(d.ok()) << s;
  }
  EXPECT_EQ(*base64_check("Zm9-"), Base64Error::kBadCharacter);
  EXPECT_EQ(*base64_check(std::string("Zm\0v", 4)), Base64Error::kBadCharacter);
}

TEST(Base64, PaddingOnlyAtTheEndAndAtMostTwo) {
  for (const char* s : {"====", "A===", "=AAA", "AA=A", "Zg==Zg==", "Zm8=Zm8="}) {
    auto e = base64_check(s);
    ASSERT_TRUE(e.has_value()) << s;
    EXPECT_EQ(*e, Base64Error::kBadPadding) << s;
  }
}

TEST(Base64, NonZeroPadBitsAreNotCanonical) {
  EXPECT_TRUE(base64_decode("Zg==").ok());
  EXPECT_EQ(*base64_check("Zh=="), Base64Error::kNonZeroBits);  // 'h' leaves bits set
  EXPECT_TRUE(base64_decode("Zm8=").ok());
  EXPECT_EQ(*base64_check("Zm9="), Base64Error::kNonZeroBits);
  EXPECT_NE(std::string(to_string(Base64Error::kNonZeroBits)), "");
}

TEST(Base64, DecodedSizeNeedsNoDecoding) {
  EXPECT_EQ(base64_decoded_size(std::string(1024, 'A')), 768u);
  EXPECT_EQ(base64_decoded_size("AAA="), 2u);
  EXPECT_EQ(base64_decoded_size("AA=="), 1u);
  EXPECT_EQ(base64_decoded_size(""), 0u);
}

}  // namespace
}  // namespace bh
