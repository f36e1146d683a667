#include "sinks/milter_protocol.h"

#include <gtest/gtest.h>

namespace bh::sinks::milter {
namespace {

std::string packet(char cmd, const std::string& data) { return encode(cmd, data); }

TEST(MilterProtocolTest, EncodesOptnegAndConnect) {
  auto o = encode_optneg(6, 0x1ff, 0);
  EXPECT_EQ(o, std::string("\0\0\0\x0dO\0\0\0\x06\0\0\x01\xff\0\0\0\0", 17));
  auto c = encode_connect("[127.0.0.1]", "127.0.0.1", 25);
  EXPECT_EQ(c.substr(4), std::string("C[127.0.0.1]\0"
                                     "4\0\x19"
                                     "127.0.0.1\0",
                                     26));
  auto h = encode_header("Subject", "a\r\n\tb");
  EXPECT_EQ(h.substr(5), std::string("Subject\0a\n\tb\0", 13));
}

TEST(MilterProtocolTest, ReaderTakesOneOctetAtATime) {
  std::string stream = packet('c', "") + packet('h', std::string("X-A\0v\0", 6)) + packet('a', "");
  MilterReader r;
  std::vector<Packet> got;
  for (char ch : stream) {
    r.feed(std::string_view(&ch, 1));
    while (auto p = r.next()) {
      ASSERT_TRUE(p->ok());
      got.push_back(p->value());
    }
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].cmd, 'c');
  EXPECT_EQ(got[1].cmd, 'h');
  EXPECT_EQ(got[2].cmd, 'a');
  EXPECT_EQ(r.buffered(), 0u);
}

TEST(MilterProtocolTest, ReaderRefusesZeroAndHugeLengths) {
  MilterReader a;
  a.feed(std::string("\0\0\0\0", 4));
  auto p = a.next();
  ASSERT_TRUE(p.has_value());
  EXPECT_FALSE(p->ok());
  MilterReader b(1024);
  b.feed(std::string("\0\0\x04\x01", 4));
  p = b.next();
  ASSERT_TRUE(p.has_value());
  EXPECT_FALSE(p->ok());
  EXPECT_TRUE(p->error().transient());
}

TEST(MilterProtocolTest, DecodesReplies) {
  auto r = decode_reply({'y', std::string("554 5.7.1 go away\0", 18)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, Reply::Kind::kReplyCode);
  EXPECT_EQ(r->code, 554);
  EXPECT_EQ(r->enhanced, "5.7.1");
  EXPECT_EQ(r->text, "go away");
  r = decode_reply({'y', std::string("451 later\0", 10)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->enhanced, "4.7.1");
  EXPECT_EQ(r->text, "later");
  r = decode_reply({'i', std::string("\0\0\0\0DKIM-Signature\0v=1;\n\tb=x\0", 29)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, Reply::Kind::kInsHeader);
  EXPECT_EQ(r->index, 0u);
  EXPECT_EQ(r->value, "v=1;\r\n\tb=x");
  r = decode_reply({'m', std::string("\0\0\0\x01X-A\0\0", 9)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, Reply::Kind::kChgHeader);
  EXPECT_TRUE(r->value.empty());
  r = decode_reply({'O', std::string("\0\0\0\x06\0\0\0\x01\0\0\0\0", 12)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->version, 6u);
  EXPECT_EQ(r->actions, 1u);
  EXPECT_TRUE(decode_reply({'q', std::string("spam\0", 5)}).ok());
  EXPECT_TRUE(decode_reply({'2', std::string("<x@y>\0A=B\0", 10)}).ok());
}

TEST(MilterProtocolTest, RefusesBrokenReplies) {
  for (const Packet& p : std::vector<Packet>{
           {'y', "250 ok"},                                    // not NUL-terminated
           {'y', std::string("250 ok\0", 7)},                  // not 4xx/5xx
           {'y', std::string("55\0", 3)},                      // short
           {'h', std::string("X-A\0v", 5)},                    // value unterminated
           {'h', std::string("X A\0v\0", 6)},                  // bad name
           {'h', std::string("X-A\0a\r\nInjected: 1\0", 20)},  // header injection
           {'i', std::string("\0\0", 2)},                      // no index
           {'O', std::string("\0\0\0\x06", 4)},                // short negotiation
           {'c', "x"},                                         // data after a bare reply
           {'+', std::string("a\0b\0", 4)},                    // two strings where one goes
           {'Z', ""},                                          // unknown
       }) {
    auto r = decode_reply(p);
    EXPECT_FALSE(r.ok()) << p.cmd << " " << p.data.size();
  }
}

TEST(MilterProtocolTest, ValueLineEnds) {
  EXPECT_EQ(to_milter_value("a\r\n\tb"), "a\n\tb");
  EXPECT_EQ(from_milter_value("a\n\tb"), "a\r\n\tb");
  EXPECT_EQ(from_milter_value("a\r\n\tb"), "a\r\n\tb");
}

}  // namespace
}  // namespace bh::sinks::milter
