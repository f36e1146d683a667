#include "sinks/message_edit.h"

#include <gtest/gtest.h>

namespace bh::sinks {
namespace {

const std::string kMsg =
    "Received: from x\r\n\tby y\r\nSubject: hi\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody\r\n";

TEST(MessageEditTest, FieldsAndBodyOffset) {
  auto f = header_fields(kMsg);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_EQ(f[0].first, "Received");
  EXPECT_EQ(f[0].second, "from x\r\n\tby y");
  EXPECT_EQ(f[3].second, "2");
  EXPECT_EQ(kMsg.substr(body_offset(kMsg)), "body\r\n");
  EXPECT_EQ(body_offset("no header line\r\n"), 0u);
}

TEST(MessageEditTest, InsertAddChangeDelete) {
  std::string m = kMsg;
  insert_header(m, 0, "DKIM-Signature", "v=1");
  EXPECT_EQ(m.rfind("DKIM-Signature: v=1\r\nReceived:", 0), 0u);
  add_header(m, "X-Last", "z");
  EXPECT_NE(m.find("x-a: 2\r\nX-Last: z\r\n\r\nbody"), std::string::npos);
  EXPECT_TRUE(change_header(m, "X-A", 2, "two"));
  EXPECT_NE(m.find("x-a: two\r\n"), std::string::npos);
  EXPECT_TRUE(change_header(m, "x-a", 1, ""));
  EXPECT_EQ(m.find("X-A: 1"), std::string::npos);
  EXPECT_FALSE(change_header(m, "X-A", 5, "v"));
}

TEST(MessageEditTest, ReplaceBody) {
  std::string m = kMsg;
  replace_body(m, "new\r\n");
  EXPECT_EQ(m.substr(body_offset(m)), "new\r\n");
  std::string h = "Subject: x\r\n";
  replace_body(h, "b\r\n");
  EXPECT_EQ(h, "Subject: x\r\n\r\nb\r\n");
}

TEST(MessageEditTest, FieldChecks) {
  EXPECT_TRUE(header_field_ok("X-A", "v\r\n\tcontinued"));
  EXPECT_FALSE(header_field_ok("X A", "v"));
  EXPECT_FALSE(header_field_ok("X:A", "v"));
  EXPECT_FALSE(header_field_ok("", "v"));
  EXPECT_FALSE(header_field_ok("X", "a\r\nInjected: yes"));
  EXPECT_FALSE(header_field_ok("X", "a\nb"));
  EXPECT_FALSE(header_field_ok("X", std::string("a\0b", 3)));
}

}  // namespace
}  // namespace bh::sinks
