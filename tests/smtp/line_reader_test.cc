#include "smtp/line_reader.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace bh::smtp {
namespace {

// Every event of a reader fed `in` in pieces of `piece` octets (0 = whole), as text:
// "L:<line>", "TOO_LONG", "OVERFLOW".
std::vector<std::string> events(std::string_view in, std::size_t piece, std::size_t max_line = 512,
                                std::uint64_t max_discard = 1u << 20, std::size_t* peak = nullptr) {
  LineReader r(max_line, max_discard);
  std::vector<std::string> ev;
  std::size_t step = piece == 0 ? in.size() : piece;
  for (std::size_t i = 0; i < in.size(); i += step) {
    r.append(in.substr(i, step));
    if (peak != nullptr) {
      *peak = std::max(*peak, r.buffered());
    }
    for (;;) {
      auto n = r.next();
      if (n.kind == LineReader::Kind::kNeedMore) {
        break;
      }
      if (n.kind == LineReader::Kind::kLine) {
        ev.push_back("L:" + std::string(n.line));
      } else if (n.kind == LineReader::Kind::kTooLong) {
        ev.emplace_back("TOO_LONG");
      } else {
        ev.emplace_back("OVERFLOW");
        return ev;
      }
    }
  }
  return ev;
}

TEST(LineReader, SplitsOnCrlfOnly) {
  // Hostile #7: a bare CR or bare LF never ends a command line.
  std::string in = "MAIL FROM:<a@b>\rRCPT TO:<c@d>\r\nNOOP\nRSET\r\nQUIT\r\n";
  std::vector<std::string> want = {"L:MAIL FROM:<a@b>\rRCPT TO:<c@d>", "L:NOOP\nRSET", "L:QUIT"};
  EXPECT_EQ(events(in, 0), want);
  EXPECT_EQ(events(in, 1), want);
  EXPECT_EQ(events(in, 3), want);
}

TEST(LineReader, NeedMoreIsANormalResult) {
  LineReader r;
  r.append("NOOP\r");
  EXPECT_EQ(r.next().kind, LineReader::Kind::kNeedMore);
  EXPECT_EQ(r.buffered(), 5u);
  r.append("\nDATA");
  auto n = r.next();
  ASSERT_EQ(n.kind, LineReader::Kind::kLine);
  EXPECT_EQ(n.line, "NOOP");
  EXPECT_EQ(r.next().kind, LineReader::Kind::kNeedMore);
  EXPECT_EQ(r.peek(), "DATA");
}

TEST(LineReader, LimitCountsTheCrlf) {
  // RFC 5321 §4.5.3.1.4: 512 octets including CRLF.
  std::string ok(510, 'a'), bad(511, 'a');
  EXPECT_EQ(events(ok + "\r\n", 0), std::vector<std::string>{"L:" + ok});
  EXPECT_EQ(events(bad + "\r\nNOOP\r\n", 0), (std::vector<std::string>{"TOO_LONG", "L:NOOP"}));
  EXPECT_EQ(events(bad + "\r\nNOOP\r\n", 1), (std::vector<std::string>{"TOO_LONG", "L:NOOP"}));
}

TEST(LineReader, LongLineIsDiscardedWhileItArrivesAndReportedOnce) {
  // Hostile #35/#36: the buffer stays capped; one 500 per long line, then in sync.
  std::string in = "NOOP " + std::string(100000, 'x') + "\r\nNOOP\r\n";
  for (std::size_t piece : {1u, 7u, 4096u, 0u}) {
    std::size_t peak = 0;
    auto ev = events(in, piece, 512, 1u << 20, &peak);
    EXPECT_EQ(ev, (std::vector<std::string>{"TOO_LONG", "L:NOOP"})) << piece;
    if (piece != 0) {
      EXPECT_LE(peak, 512u + piece) << piece;
    }
  }
}

TEST(LineReader, CrlfSplitAcrossReadsWhileDiscarding) {
  std::string in = std::string(600, 'y') + "\r";
  LineReader r;
  r.append(in);
  EXPECT_EQ(r.next().kind, LineReader::Kind::kNeedMore);
  EXPECT_TRUE(r.discarding());
  EXPECT_EQ(r.buffered(), 1u);  // only the CR that may start the CRLF
  r.append("\nQUIT\r\n");
  EXPECT_EQ(r.next().kind, LineReader::Kind::kTooLong);
  auto n = r.next();
  ASSERT_EQ(n.kind, LineReader::Kind::kLine);
  EXPECT_EQ(n.line, "QUIT");
}

TEST(LineReader, OverflowAfterMaxDiscardWithoutCrlf) {
  std::string in(5000, 'z');
  EXPECT_EQ(events(in, 100, 512, 4096), std::vector<std::string>{"OVERFLOW"});
  EXPECT_EQ(events(in, 0, 512, 4096), std::vector<std::string>{"OVERFLOW"});
  EXPECT_TRUE(events(std::string(4000, 'z'), 100, 512, 4096).empty());
}

TEST(LineReader, BodyOctetsBehindACommandArePeekedAndConsumed) {
  LineReader r;
  r.append("BDAT 3\r\nabcNOOP\r\n");
  auto n = r.next();
  ASSERT_EQ(n.kind, LineReader::Kind::kLine);
  EXPECT_EQ(n.line, "BDAT 3");
  EXPECT_EQ(r.peek().substr(0, 3), "abc");
  r.consume(3);
  n = r.next();
  ASSERT_EQ(n.kind, LineReader::Kind::kLine);
  EXPECT_EQ(n.line, "NOOP");
  EXPECT_EQ(r.buffered(), 0u);
}

TEST(LineReader, ManyPipelinedLinesKeepOrder) {
  std::string in;
  std::vector<std::string> want;
  for (int i = 0; i < 5000; ++i) {
    in += "RCPT TO:<u" + std::to_string(i) + "@example.org>\r\n";
    want.push_back("L:RCPT TO:<u" + std::to_string(i) + "@example.org>");
  }
  EXPECT_EQ(events(in, 0), want);
  EXPECT_EQ(events(in, 1000), want);
}

}  // namespace
}  // namespace bh::smtp
