// X-LINK2STATE chunk machine and splitter (smtp/link2state.h), including hostile-inputs
// #23 (MS05-021: an unmarked or NEXT chunk with no FIRST) and #24 (Exchange's brace
// length extras).

#include "smtp/link2state.h"

#include <gtest/gtest.h>

#include <string>

#include "common/base64.h"

namespace bh::smtp {
namespace {

using S = Link2StateStatus;

std::string arg(const std::string& marker, std::string_view raw) {
  return (marker.empty() ? "" : marker + " ") + "CHUNK=" + base64_encode(raw);
}

TEST(Link2State, FirstNextLastReassembles) {
  Link2StateReceiver r;
  auto s = r.feed(arg("FIRST", "alpha "));
  EXPECT_EQ(s.status, S::kAccepted);
  EXPECT_TRUE(r.in_sequence());
  EXPECT_EQ(r.feed(arg("NEXT", "beta ")).status, S::kAccepted);
  EXPECT_EQ(r.feed(arg("next", "gamma ")).status, S::kAccepted);  // keywords in any case
  EXPECT_EQ(r.buffered(), 17u);
  EXPECT_EQ(r.chunks(), 3u);
  s = r.feed(arg("LAST", std::string("\0\xff", 2)));
  ASSERT_EQ(s.status, S::kComplete);
  EXPECT_EQ(s.payload, std::string("alpha beta gamma \0\xff", 19));
  EXPECT_FALSE(r.in_sequence());
  EXPECT_EQ(r.buffered(), 0u);
  // A second exchange on the same session.
  EXPECT_EQ(r.feed(arg("first", "x")).status, S::kAccepted);
  EXPECT_EQ(r.feed("LAST CHUNK=").payload, "x");  // an empty LAST chunk
  EXPECT_EQ(reply_code(S::kAccepted), 250);
  EXPECT_STREQ(enhanced_code(S::kComplete), "2.0.0");
}

TEST(Link2State, HostileInput23UnmarkedChunkWithoutFirstIs503) {
  Link2StateReceiver r;
  auto s = r.feed("CHUNK=" + std::string(600, 'A'));
  EXPECT_EQ(s.status, S::kBadSequence);
  EXPECT_EQ(reply_code(s.status), 503);
  EXPECT_STREQ(enhanced_code(s.status), "5.5.1");
  EXPECT_TRUE(s.payload.empty());
  EXPECT_EQ(r.buffered(), 0u);
  // Repeated (the exploit needs several): each one alike, nothing kept.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(r.feed("CHUNK=" + std::string(900, 'A')).status, S::kBadSequence);
    EXPECT_EQ(r.buffered(), 0u);
  }
}

TEST(Link2State, NextOrLastWithoutFirstIs503) {
  Link2StateReceiver r;
  EXPECT_EQ(r.feed(arg("NEXT", "x")).status, S::kBadSequence);
  EXPECT_EQ(r.feed(arg("LAST", "x")).status, S::kBadSequence);
}

TEST(Link2State, OutOfSequenceInsideASequenceResets) {
  for (const std::string& bad : {arg("FIRST", "again"), arg("", "unmarked")}) {
    Link2StateReceiver r;
    ASSERT_EQ(r.feed(arg("FIRST", "one")).status, S::kAccepted);
    EXPECT_EQ(r.feed(bad).status, S::kBadSequence) << bad;
    EXPECT_FALSE(r.in_sequence());
    EXPECT_EQ(r.buffered(), 0u);
    // Reset: a NEXT now has no FIRST.
    EXPECT_EQ(r.feed(arg("NEXT", "two")).status, S::kBadSequence);
    // And a fresh sequence works.
    ASSERT_EQ(r.feed(arg("FIRST", "a")).status, S::kAccepted);
    EXPECT_EQ(r.feed(arg("LAST", "b")).payload, "ab");
  }
}

TEST(Link2State, HostileInput24ExtrasAndBraceLengthsAre501) {
  for (const std::string& bad :
       {std::string("CHUNK={FFFFFFFF} MULTI (5) ({00000000051}"), std::string("CHUNK={FFFFFFFF}"),
        std::string("FIRST CHUNK={0000006d} MULTI (5) ({00000000051}"),
        arg("FIRST", "abc") + " MULTI (5)", arg("FIRST", "abc") + " ",
        std::string("FIRST CHUNK=Zg="), std::string("FIRST CHUNK=Zh=="),
        std::string("FIRST CHUNK=Zm9v\r"), std::string("FIRST"), std::string("FIRST "),
        std::string(""), std::string("CHUNK"), std::string("FIRST  CHUNK=Zm9v"),
        std::string(" FIRST CHUNK=Zm9v"), std::string("FIRSTCHUNK=Zm9v"),
        std::string("MIDDLE CHUNK=Zm9v"), std::string("FIRST CHUNK =Zm9v"),
        std::string("FIRST CHUNK=Zm 9v"), std::string("FIRST CHUNK=Zm9v\0", 17)}) {
    Link2StateReceiver r;
    EXPECT_EQ(r.feed(bad).status, S::kSyntax) << bad;
  }
  // A syntax error also ends an open sequence.
  Link2StateReceiver r;
  ASSERT_EQ(r.feed(arg("FIRST", "one")).status, S::kAccepted);
  auto s = r.feed("NEXT CHUNK={00000457}");
  EXPECT_EQ(s.status, S::kSyntax);
  EXPECT_EQ(reply_code(s.status), 501);
  EXPECT_STREQ(enhanced_code(s.status), "5.5.4");
  EXPECT_FALSE(r.in_sequence());
  EXPECT_EQ(r.feed(arg("LAST", "x")).status, S::kBadSequence);
}

TEST(Link2State, LoneChunkOnlyWhenEnabledAndNoSequenceIsOpen) {
  Link2StateLimits lim;
  lim.accept_lone_chunk = true;
  Link2StateReceiver r(lim);
  auto s = r.feed(arg("", "whole"));
  ASSERT_EQ(s.status, S::kComplete);
  EXPECT_EQ(s.payload, "whole");
  ASSERT_EQ(r.feed(arg("FIRST", "a")).status, S::kAccepted);
  EXPECT_EQ(r.feed(arg("", "whole")).status, S::kBadSequence);
  EXPECT_EQ(r.feed("CHUNK={FFFFFFFF} MULTI (5) ({00000000051}").status, S::kSyntax);
}

TEST(Link2State, LineBudgetIs1024OctetsWithVerbAndCrlf) {
  Link2StateReceiver r;
  EXPECT_EQ(Link2StateLimits{}.max_argument(), 1024u - 13 - 2);
  std::string ok = "FIRST CHUNK=" + std::string((1009 - 12) / 4 * 4, 'A');
  ASSERT_LE(ok.size(), 1009u);
  EXPECT_EQ(r.feed(ok).status, S::kAccepted);
  std::string too_long = "NEXT CHUNK=" + std::string(1000, 'A');  // 1011 > 1009
  auto s = r.feed(too_long);
  EXPECT_EQ(s.status, S::kTooLong);
  EXPECT_EQ(reply_code(s.status), 500);
  EXPECT_FALSE(r.in_sequence());
  // Over the line budget is refused before anything else, garbage or not.
  EXPECT_EQ(r.feed(std::string(5000, '{')).status, S::kTooLong);
}

TEST(Link2State, ReassembledSizeIsCappedBeforeDecoding) {
  Link2StateLimits lim;
  lim.max_payload = 10;
  Link2StateReceiver r(lim);
  ASSERT_EQ(r.feed(arg("FIRST", "123456")).status, S::kAccepted);
  ASSERT_EQ(r.feed(arg("NEXT", "7890")).status, S::kAccepted);  // exactly 10
  auto s = r.feed(arg("LAST", "x"));
  EXPECT_EQ(s.status, S::kTooLarge);
  EXPECT_EQ(reply_code(s.status), 552);
  EXPECT_STREQ(enhanced_code(s.status), "5.3.4");
  EXPECT_EQ(r.buffered(), 0u);
  ASSERT_EQ(r.feed(arg("FIRST", "123456")).status, S::kAccepted);
  EXPECT_EQ(r.feed(arg("LAST", "7890")).payload, "1234567890");
  // The default cap: 256 KiB.
  Link2StateReceiver d;
  ASSERT_EQ(d.feed(arg("FIRST", "")).status, S::kAccepted);
  std::string chunk(747, 'z');
  std::size_t n = 0;
  Link2StateStatus st = S::kAccepted;
  while (st == S::kAccepted && n < 1000) {
    st = d.feed(arg("NEXT", chunk)).status;
    ++n;
  }
  EXPECT_EQ(st, S::kTooLarge);
  EXPECT_EQ(n, (256u << 10) / 747 + 1);
}

TEST(Link2State, EmptyChunksAreCountedToo) {
  Link2StateLimits lim;
  lim.max_chunks = 3;
  Link2StateReceiver r(lim);
  EXPECT_EQ(r.feed("FIRST CHUNK=").status, S::kAccepted);
  EXPECT_EQ(r.feed("NEXT CHUNK=").status, S::kAccepted);
  EXPECT_EQ(r.feed("NEXT CHUNK=").status, S::kAccepted);
  EXPECT_EQ(r.feed("NEXT CHUNK=").status, S::kTooLarge);
}

TEST(Link2State, SplitterRoundTripsAndEveryLineFits) {
  for (std::size_t size : {0u, 1u, 2u, 746u, 747u, 748u, 1494u, 5000u, 100000u, 262144u}) {
    std::string payload;
    for (std::size_t i = 0; i < size; ++i) {
      payload.push_back(static_cast<char>((i * 131) & 0xff));
    }
    auto lines = split_link2state(payload);
    ASSERT_TRUE(lines.ok()) << size;
    ASSERT_GE(lines->size(), 2u);
    Link2StateReceiver r;
    Link2StateReceiver::Step last;
    for (std::size_t i = 0; i < lines->size(); ++i) {
      const std::string& l = (*lines)[i];
      ASSERT_LE(l.size() + 2, 1024u) << size;
      ASSERT_EQ(l.rfind("X-LINK2STATE ", 0), 0u);
      EXPECT_EQ(l.find(i == 0 ? " FIRST " : (i + 1 == lines->size() ? " LAST " : " NEXT ")), 12u);
      last = r.feed(std::string_view(l).substr(13));
      if (i + 1 < lines->size()) {
        ASSERT_EQ(last.status, S::kAccepted) << size << " line " << i;
      }
    }
    ASSERT_EQ(last.status, S::kComplete) << size;
    EXPECT_EQ(last.payload, payload);
  }
}

TEST(Link2State, SplitterLoneChunkAndLimits) {
  Link2StateLimits lim;
  lim.accept_lone_chunk = true;
  auto one = split_link2state("digest", lim);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0], "X-LINK2STATE CHUNK=" + base64_encode("digest"));
  Link2StateReceiver r(lim);
  EXPECT_EQ(r.feed(std::string_view((*one)[0]).substr(13)).payload, "digest");

  EXPECT_FALSE(split_link2state(std::string((256u << 10) + 1, 'x')).ok());
  Link2StateLimits few;
  few.max_chunks = 2;
  EXPECT_FALSE(split_link2state(std::string(3000, 'x'), few).ok());
  EXPECT_EQ(split_link2state(std::string(3000, 'x'), few).error().enhanced, "5.3.4");
  Link2StateLimits tiny;
  tiny.max_line = 20;
  EXPECT_FALSE(split_link2state("x", tiny).ok());
}

}  // namespace
}  // namespace bh::smtp
