// Received-field counting for loop detection (queue/hop_count.h): folded lines, the
// header/body boundary, odd spellings, caps, and byte-at-a-time feeding.

#include "queue/hop_count.h"

#include <gtest/gtest.h>

#include <string>

namespace bh::queue {
namespace {

HopCount fed_bytewise(std::string_view text, HopCountLimits limits = {}) {
  ReceivedCounter c(limits);
  for (char ch : text) {
    c.feed(std::string_view(&ch, 1));
  }
  return c.result();
}

TEST(HopCount, CountsReceivedFieldsInAnyCase) {
  std::string h =
      "Received: from a by b; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
      "received: from c by d\r\n"
      "RECEIVED: from e by f\r\n"
      "ReCeIvEd : obsolete space before the colon\r\n"
      "Subject: hi\r\n"
      "\r\n"
      "body\r\n";
  auto n = count_received(h);
  EXPECT_EQ(n.received, 4u);
  EXPECT_TRUE(n.end_of_headers);
  EXPECT_FALSE(n.truncated);
  EXPECT_EQ(fed_bytewise(h).received, 4u);
}

TEST(HopCount, FoldedContinuationLinesAreNotFields) {
  std::string h =
      "Received: from a\r\n"
      " by b with ESMTP id 1\r\n"
      "\tReceived: this is a continuation, not a field\r\n"
      " Received: neither is this\r\n"
      "Received: from c\r\n"
      "  by d\r\n"
      "\r\n";
  EXPECT_EQ(count_received(h).received, 2u);
  EXPECT_EQ(fed_bytewise(h).received, 2u);
}

TEST(HopCount, NamesThatOnlyStartLikeReceivedDoNotCount) {
  std::string h =
      "Received-SPF: pass\r\n"
      "X-Received: by 10.0.0.1\r\n"
      "Receive: x\r\n"
      "Received\r\n"
      "Received x: y\r\n"
      "Received:\r\n"
      "\r\n";
  EXPECT_EQ(count_received(h).received, 1u);
}

TEST(HopCount, StopsAtTheEndOfTheHeaderBlock) {
  std::string crlf = "Received: a\r\n\r\nReceived: in the body\r\nReceived: b\r\n";
  auto n = count_received(crlf);
  EXPECT_EQ(n.received, 1u);
  EXPECT_TRUE(n.end_of_headers);
  std::string lf = "Received: a\nReceived: b\n\nReceived: body\n";
  EXPECT_EQ(count_received(lf).received, 2u);
  EXPECT_EQ(fed_bytewise(lf).received, 2u);
  // A header-only text without an empty line: everything counts, no end seen.
  auto open = count_received("Received: a\r\nReceived: b\r\n");
  EXPECT_EQ(open.received, 2u);
  EXPECT_FALSE(open.end_of_headers);
}

TEST(HopCount, LoneCrIsNotTheEndOfHeaders) {
  std::string h = "Received: a\r\n\rReceived: b\r\nReceived: c\r\n\r\nReceived: d\r\n";
  auto n = count_received(h);
  EXPECT_EQ(n.received, 2u);  // the "\rReceived" line is junk, c counts, d is body
  EXPECT_TRUE(n.end_of_headers);
  EXPECT_EQ(fed_bytewise(h).received, 2u);
}

TEST(HopCount, EmptyInput) {
  auto n = count_received("");
  EXPECT_EQ(n.received, 0u);
  EXPECT_FALSE(n.end_of_headers);
  EXPECT_EQ(count_received("\r\nReceived: x\r\n").received, 0u);
}

TEST(HopCount, HugeHeaderBlockIsCappedAndLinear) {
  // 8 MiB of Received lines with no end: only max_octets are looked at.
  std::string line = "Received: from x by y\r\n";
  std::string h;
  while (h.size() < (8u << 20)) {
    h += line;
  }
  HopCountLimits lim;
  lim.max_octets = 1u << 20;
  auto n = count_received(h, lim);
  EXPECT_TRUE(n.truncated);
  EXPECT_FALSE(n.end_of_headers);
  EXPECT_EQ(n.received, (1u << 20) / line.size());
  // One endless line, then one giant folded field: still capped, nothing counted.
  std::string endless(4u << 20, 'a');
  EXPECT_TRUE(count_received(endless, lim).truncated);
  std::string folded = "Subject: x\r\n";
  while (folded.size() < (4u << 20)) {
    folded += " Received: folded\r\n";
  }
  auto f = count_received(folded, lim);
  EXPECT_EQ(f.received, 0u);
  EXPECT_TRUE(f.truncated);
}

TEST(HopCount, StopsOnceTheLimitIsExceeded) {
  std::string h;
  for (int i = 0; i < 1000; ++i) {
    h += "Received: hop " + std::to_string(i) + "\r\n";
  }
  h += "\r\n";
  HopCountLimits lim;
  lim.stop_after = kDefaultMaxHops + 1;
  auto n = count_received(h, lim);
  EXPECT_TRUE(n.stopped);
  EXPECT_EQ(n.received, kDefaultMaxHops + 1);
  EXPECT_FALSE(hop_limit_check(n.received).ok());
}

TEST(HopCount, ChunkSplitsDoNotMatter) {
  std::string h =
      "ReCeived: a\r\n Received: folded\r\nX: y\r\nReceived  :\tz\r\n\r\nReceived: body\r\n";
  auto whole = count_received(h);
  for (std::size_t cut = 0; cut <= h.size(); ++cut) {
    ReceivedCounter c;
    c.feed(std::string_view(h).substr(0, cut));
    c.feed(std::string_view(h).substr(cut));
    EXPECT_EQ(c.result().received, whole.received) << cut;
    EXPECT_EQ(c.result().end_of_headers, whole.end_of_headers) << cut;
  }
  EXPECT_EQ(whole.received, 2u);
}

TEST(HopLimit, DefaultIsThirtyAndExceedingIsPermanent546) {
  EXPECT_TRUE(hop_limit_check(0).ok());
  EXPECT_TRUE(hop_limit_check(30).ok());
  auto r = hop_limit_check(31);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().transient());
  EXPECT_EQ(r.error().enhanced, "5.4.6");
  EXPECT_EQ(r.error().default_code(), 554);
  EXPECT_EQ(r.error().message.find_first_of("\r\n"), std::string::npos);
  EXPECT_TRUE(hop_limit_check(5, 5).ok());
  EXPECT_FALSE(hop_limit_check(6, 5).ok());
}

}  // namespace
}  // namespace bh::queue
