#include "smtp/data_reader.h"

#include <gtest/gtest.h>

#include <random>

namespace bh::smtp {
namespace {

struct Run {
  std::string out;
  std::size_t consumed = 0;
  bool done = false;
};

Run feed_in_pieces(std::string_view in, std::size_t piece, std::uint64_t max = 1 << 20,
                   std::uint64_t max_hdr = 1 << 20) {
  DataReader r(max, max_hdr);
  Run run;
  std::size_t i = 0;
  while (i < in.size() && !run.done) {
    std::size_t n = piece == 0 ? in.size() - i : std::min(piece, in.size() - i);
    auto step = r.feed(in.substr(i, n), run.out);
    i += step.consumed;
    run.done = step.done;
    if (step.consumed < n) {
      EXPECT_TRUE(step.done);
      break;
    }
  }
  run.consumed = i;
  return run;
}

TEST(DataReader, OnlyCrLfDotCrLfEnds) {
  std::string in = "a\n.\nb\r.\rc\r\n.\nd\r\n.\r\nNEXT";
  auto r = feed_in_pieces(in, 0);
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.out, "a\n.\nb\r.\rc\r\n\nd\r\n");
  EXPECT_EQ(in.substr(r.consumed), "NEXT");
}

TEST(DataReader, EmptyBodyAndLeadingDot) {
  auto r = feed_in_pieces(".\r\n", 0);
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.out, "");
  r = feed_in_pieces("..\r\n.\r\n", 1);
  EXPECT_EQ(r.out, ".\r\n");
}

TEST(DataReader, SizeCapStopsOutputButFindsTheEnd) {
  DataReader r(10, 1 << 20);
  std::string out;
  auto s = r.feed(std::string(100, 'x') + "\r\n.\r\nQUIT\r\n", out);
  EXPECT_TRUE(s.done);
  EXPECT_TRUE(r.too_big());
  EXPECT_EQ(out.size(), 10u);
  EXPECT_EQ(r.body_size(), 102u);
}

TEST(DataReader, HeaderCapCountsOnlyTheHeaderSection) {
  DataReader r(1 << 20, 16);
  std::string out;
  r.feed("A: b\r\n\r\n" + std::string(1000, 'x') + "\r\n.\r\n", out);
  EXPECT_FALSE(r.header_too_big());
  DataReader r2(1 << 20, 16);
  out.clear();
  r2.feed("A: " + std::string(100, 'b') + "\r\n\r\nbody\r\n.\r\n", out);
  EXPECT_TRUE(r2.header_too_big());
}

TEST(DataReader, RandomSplitsGiveTheSameResult) {
  std::mt19937 rng(42);
  const char alphabet[] = {'\r', '\n', '.', 'a', '\0', '\xff'};
  for (int round = 0; round < 300; ++round) {
    std::string in;
    int len = static_cast<int>(rng() % 60);
    for (int i = 0; i < len; ++i) {
      in.push_back(alphabet[rng() % sizeof alphabet]);
    }
    in += "\r\n.\r\n";
    auto whole = feed_in_pieces(in, 0);
    for (std::size_t piece : {1u, 2u, 3u, 7u}) {
      auto split = feed_in_pieces(in, piece);
      ASSERT_EQ(split.out, whole.out) << "round " << round << " piece " << piece;
      ASSERT_EQ(split.consumed, whole.consumed);
      ASSERT_TRUE(split.done);
    }
  }
}

}  // namespace
}  // namespace bh::smtp
