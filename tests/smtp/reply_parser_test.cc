#include "smtp/reply_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace bh::smtp {
namespace {

// Everything a parser makes of `in` fed in pieces of `piece` octets (0 = whole): the
// replies, and the error if it failed.
struct Parsed {
  std::vector<Reply> replies;
  std::optional<Error> error;
  std::size_t leftover = 0;  // octets of an unfinished reply
};

Parsed parse(std::string_view in, std::size_t piece, ReplyLimits limits = {}) {
  ReplyParser p(limits);
  Parsed out;
  std::size_t step = piece == 0 ? std::max<std::size_t>(in.size(), 1) : piece;
  for (std::size_t i = 0; i < in.size(); i += step) {
    std::string_view chunk = in.substr(i, step);
    while (!chunk.empty()) {
      auto r = p.feed(chunk);
      if (!r.ok()) {
        out.error = r.error();
        return out;
      }
      chunk.remove_prefix(r->consumed);
      if (r->reply) {
        out.replies.push_back(std::move(*r->reply));
      }
    }
  }
  out.leftover = p.idle() ? 0 : 1;
  return out;
}

// Runs `check` over the input fed whole, one octet at a time and in pieces of 7.
template <class F>
void each_split(std::string_view in, F check, ReplyLimits limits = {}) {
  for (std::size_t piece : {std::size_t{0}, std::size_t{1}, std::size_t{7}}) {
    SCOPED_TRACE("piece " + std::to_string(piece));
    check(parse(in, piece, limits));
  }
}

TEST(ReplyParser, SingleLine) {
  each_split("250 2.1.0 Ok\r\n", [](const Parsed& p) {
    ASSERT_FALSE(p.error);
    ASSERT_EQ(p.replies.size(), 1u);
    EXPECT_EQ(p.replies[0].code, 250);
    EXPECT_EQ(p.replies[0].enhanced, "2.1.0");
    EXPECT_EQ(p.replies[0].text(), "Ok");
    EXPECT_EQ(p.replies[0].summary(), "250 2.1.0 Ok");
    EXPECT_TRUE(p.replies[0].positive());
  });
}

TEST(ReplyParser, MultiLineEhlo) {
  each_split("250-mx.example.org hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
             [](const Parsed& p) {
               ASSERT_FALSE(p.error);
               ASSERT_EQ(p.replies.size(), 1u);
               std::vector<std::string> want = {"mx.example.org hello", "PIPELINING", "SIZE 1000",
                                                "8BITMIME"};
               EXPECT_EQ(p.replies[0].lines, want);
               EXPECT_EQ(p.replies[0].enhanced, "");
               EXPECT_EQ(p.replies[0].enhanced_or_generic(), "2.0.0");
             });
}

TEST(ReplyParser, BareCodeIsALastLine) {
  each_split("250-first\r\n250\r\n354\r\n", [](const Parsed& p) {
    ASSERT_FALSE(p.error);
    ASSERT_EQ(p.replies.size(), 2u);
    EXPECT_EQ(p.replies[0].lines, (std::vector<std::string>{"first", ""}));
    EXPECT_EQ(p.replies[1].code, 354);
    EXPECT_TRUE(p.replies[1].intermediate());
  });
}

TEST(ReplyParser, PipelinedRepliesComeOutOneAtATime) {
  ReplyParser p;
  std::string_view in = "250 2.1.0 Ok\r\n550 5.1.1 No\r\n354 go\r\n25";
  std::vector<int> codes;
  while (!in.empty()) {
    auto r = p.feed(in);
    ASSERT_TRUE(r.ok());
    in.remove_prefix(r->consumed);
    if (r->reply) {
      codes.push_back(r->reply->code);
    }
  }
  EXPECT_EQ(codes, (std::vector<int>{250, 550, 354}));
  EXPECT_FALSE(p.idle());  // "25" is buffered: need more
  auto r = p.feed("0 ok\r\n");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->reply);
  EXPECT_EQ(r->reply->code, 250);
  EXPECT_TRUE(p.idle());
}

TEST(ReplyParser, EnhancedCodeRepeatedOnEveryLineIsStrippedFromText) {
  each_split(
      "550-5.1.1 The account does not exist.\r\n550-5.1.1 Please check.\r\n"
      "550 5.1.1 https://help\r\n",
      [](const Parsed& p) {
        ASSERT_EQ(p.replies.size(), 1u);
        EXPECT_EQ(p.replies[0].enhanced, "5.1.1");
        EXPECT_EQ(p.replies[0].text(), "The account does not exist. Please check. https://help");
        EXPECT_TRUE(p.replies[0].permanent());
      });
}

TEST(ReplyParser, EnhancedCodeMustMatchTheReplyClass) {
  auto p = parse("450 5.1.1 mixed\r\n", 0);
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].enhanced, "");
  EXPECT_EQ(p.replies[0].enhanced_or_generic(), "4.0.0");
}

TEST(ReplyParser, EnhancedCodeSyntax) {
  EXPECT_EQ(parse_enhanced_code("5.1.1 x"), "5.1.1");
  EXPECT_EQ(parse_enhanced_code("4.7.10"), "4.7.10");
  EXPECT_EQ(parse_enhanced_code("2.123.456 ok"), "2.123.456");
  EXPECT_FALSE(parse_enhanced_code("3.1.1 x"));
  EXPECT_FALSE(parse_enhanced_code("5.1234.1 x"));
  EXPECT_FALSE(parse_enhanced_code("5.1.1x"));
  EXPECT_FALSE(parse_enhanced_code("5..1"));
  EXPECT_FALSE(parse_enhanced_code("5.1."));
  EXPECT_FALSE(parse_enhanced_code("Ok"));
}

void expect_malformed(std::string_view in, std::string_view why, ReplyLimits limits = {}) {
  each_split(
      in,
      [&](const Parsed& p) {
        ASSERT_TRUE(p.error) << "no error for: " << why;
        EXPECT_TRUE(p.error->transient());
        EXPECT_EQ(p.error->enhanced, "4.5.0");
        EXPECT_NE(p.error->message.find(why), std::string::npos) << p.error->message;
        EXPECT_EQ(p.error->message.find_first_of("\r\n"), std::string::npos);
      },
      limits);
}

TEST(ReplyParser, HostileCodeMismatchBetweenLines) {
  expect_malformed("250-a\r\n550 b\r\n", "code 550 after 250");
}

TEST(ReplyParser, HostileBareLfIsNotALineEnd) {
  expect_malformed("250 ok\n250 ok\r\n", "bare LF");
  expect_malformed("250-ok\r\n\n", "bare LF");
}

TEST(ReplyParser, HostileBareCr) { expect_malformed("250 ok\rmore\r\n", "bare CR"); }

TEST(ReplyParser, HostileNonDigitCode) {
  expect_malformed("2x0 ok\r\n", "reply code");
  expect_malformed("abc\r\n", "reply code");
  expect_malformed("150 preliminary\r\n", "reply code");  // 1yz is not SMTP
  expect_malformed("260 x\r\n", "reply code");            // second digit 0..5
  expect_malformed("25\r\n", "shorter than a reply code");
  expect_malformed("\r\n", "shorter than a reply code");
}

TEST(ReplyParser, HostileBadSeparator) { expect_malformed("250+ok\r\n", "no '-' or ' '"); }

TEST(ReplyParser, HostileControlOctetsInText) {
  expect_malformed(std::string("250 a\0b\r\n", 9), "control octet");
  expect_malformed("250 a\x1b[31m\r\n", "control octet");
  auto p = parse("250 tab\there \xc3\xa9t\xc3\xa9\r\n", 1);  // HTAB and UTF-8 are fine
  ASSERT_FALSE(p.error);
  EXPECT_EQ(p.replies[0].text(), "tab\there \xc3\xa9t\xc3\xa9");
}

TEST(ReplyParser, HostileOverlongLineFailsBeforeItsEnd) {
  // 1 MiB without a CRLF: the error comes as soon as the line passes the cap, and the
  // parser holds no more than the cap (fed in pieces: the rest is never looked at).
  std::string in = "250 " + std::string(1u << 20, 'A');
  ReplyLimits lim;
  lim.max_line = 512;
  ReplyParser p(lim);
  auto r = p.feed(std::string_view(in).substr(0, 600));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("longer than 512"), std::string::npos);
  EXPECT_TRUE(p.failed());
  EXPECT_FALSE(p.feed("250 ok\r\n").ok());  // sticky
  expect_malformed(in, "line longer than 4096");
}

TEST(ReplyParser, LineCapCountsTheCrlf) {
  ReplyLimits lim;
  lim.max_line = 10;
  auto ok = parse("250 abcde\r\n", 1, lim);  // 11 octets
  ASSERT_TRUE(ok.error);
  auto fits = parse("250 abcd\r\n", 1, lim);  // 10 octets
  ASSERT_FALSE(fits.error);
  EXPECT_EQ(fits.replies.size(), 1u);
}

TEST(ReplyParser, HostileThousandLineReply) {
  std::string in;
  for (int i = 0; i < 1000; ++i) {
    in += "250-line\r\n";
  }
  in += "250 end\r\n";
  expect_malformed(in, "more than 100 lines");
  std::string hundred;
  for (int i = 0; i < 99; ++i) {
    hundred += "250-line\r\n";
  }
  hundred += "250 end\r\n";
  auto p = parse(hundred, 0);
  ASSERT_FALSE(p.error);
  EXPECT_EQ(p.replies[0].lines.size(), 100u);
}

TEST(ReplyParser, HostileEndlessReplyHitsTheTotalCap) {
  // Lines within the per-line cap, few enough for the line cap, but too much in total.
  ReplyLimits lim;
  lim.max_lines = 1000;
  std::string in;
  for (int i = 0; i < 100; ++i) {
    in += "250-" + std::string(1000, 'x') + "\r\n";
  }
  expect_malformed(in, "reply longer than 65536", lim);
}

TEST(ReplyParser, TheCapIsPerReply) {
  // Many small replies in a row are fine: the counters restart with each reply.
  std::string in;
  for (int i = 0; i < 5000; ++i) {
    in += "250-a\r\n250 b\r\n";
  }
  auto p = parse(in, 0);
  ASSERT_FALSE(p.error);
  EXPECT_EQ(p.replies.size(), 5000u);
}

}  // namespace
}  // namespace bh::smtp
