#include "common/base64.h"

#include <gtest/gtest.h>

namespace bh {
namespace {

TEST(Base64, Rfc4648TestVectorsRoundTrip) {
  const std::pair<const char*, const char*> v[] = {{"", ""},         {"f", "Zg=="},
                                                   {"fo", "Zm8="},   {"foo", "Zm9v"},
                                                   {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                   {"foobar", "Zm9vYmFy"}};
  for (auto [plain, coded] : v) {
    EXPECT_EQ(base64_encode(plain), coded);
    auto d = base64_decode(coded);
    ASSERT_TRUE(d.has_value()) << coded;
    EXPECT_EQ(*d, plain);
  }
}

TEST(Base64, BinaryWithNulsRoundTrips) {
  std::string all;
  for (int i = 0; i < 256; ++i) {
    all.push_back(static_cast<char>(i));
  }
  for (std::size_t n = 0; n <= all.size(); n += 17) {
    auto d = base64_decode(base64_encode(all.substr(0, n)));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(*d, all.substr(0, n));
  }
}

TEST(Base64, RejectsEverythingNonCanonical) {
  // hostile-inputs #43: "====", length 4n-1, characters outside the alphabet.
  for (const char* bad : {"====", "AAA", "A===", "Zg=", "Zg==Zg==", "Z=g=", "Zm9v\r\n",
                          "Zm 9v", "Zm9v-A==", "Zh==", "Zm9=", "=Zm9", "Zm9vY===", "*"}) {
    EXPECT_FALSE(base64_decode(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace bh
