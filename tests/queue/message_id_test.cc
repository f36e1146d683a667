#include "queue/message_id.h"

#include <gtest/gtest.h>

#include <string>

namespace bh::queue {
namespace {

TEST(ExtractMessageId, FindsTheFieldCaseInsensitively) {
  EXPECT_EQ(extract_message_id("From: a@b\r\nMessage-ID: <x1@example.org>\r\n\r\nbody"), "<x1@example.org>");
  EXPECT_EQ(extract_message_id("message-id:<x2@e>\r\n\r\n"), "<x2@e>");
  EXPECT_EQ(extract_message_id("MESSAGE-ID : <x3@e>\n\n"), "<x3@e>");  // obsolete WSP, bare LF
}

TEST(ExtractMessageId, UnfoldsAndDropsCommentsAroundTheId) {
  EXPECT_EQ(extract_message_id("Subject: s\r\nMessage-Id:\r\n <folded@example.org>\r\nTo: t\r\n\r\n"),
            "<folded@example.org>");
  EXPECT_EQ(extract_message_id("Message-Id: (comment) <c@e> (more)\r\n\r\n"), "<c@e>");
  EXPECT_EQ(extract_message_id("Message-Id: no-brackets@e \r\n\r\n"), "no-brackets@e");
}

TEST(ExtractMessageId, TakesTheFirstFieldAndIgnoresLookalikes) {
  EXPECT_EQ(extract_message_id("X-Message-ID: <no@e>\r\nMessage-ID: <yes@e>\r\nMessage-ID: <2nd@e>\r\n\r\n"),
            "<yes@e>");
  // A continuation line of another field that looks like the field is not the field.
  EXPECT_EQ(extract_message_id("Subject: a\r\n Message-ID: <no@e>\r\n\r\n"), "");
  EXPECT_EQ(extract_message_id("Received: from x\r\n\tby y\r\nMessage-ID: <r@e>\r\n\r\n"), "<r@e>");
}

TEST(ExtractMessageId, StopsAtTheEndOfTheHeaderAndAtTheScanCap) {
  EXPECT_EQ(extract_message_id("Subject: s\r\n\r\nMessage-ID: <in-body@e>\r\n"), "");
  EXPECT_EQ(extract_message_id(""), "");
  EXPECT_EQ(extract_message_id("Message-ID: <cut@e"), "<cut@e");  // cut short: as written
  std::string big = "X-Pad: " + std::string(kMessageIdScanLimit, 'x') + "\r\nMessage-ID: <late@e>\r\n\r\n";
  EXPECT_EQ(extract_message_id(big), "");
}

TEST(ExtractMessageId, ResultIsCapped) {
  std::string v = "Message-ID: " + std::string(5000, 'a') + "\r\n\r\n";
  EXPECT_EQ(extract_message_id(v).size(), kMessageIdMaxLength);
  std::string folded = "Message-ID: <a";
  for (int i = 0; i < 10000; ++i) {
    folded += "\r\n b";
  }
  EXPECT_LE(extract_message_id(folded).size(), kMessageIdMaxLength);
}

TEST(BareMessageId, StripsOnePairOfBrackets) {
  EXPECT_EQ(bare_message_id("<a@b>"), "a@b");
  EXPECT_EQ(bare_message_id(" a@b "), "a@b");
  EXPECT_EQ(bare_message_id("<a@b"), "<a@b");
}

}  // namespace
}  // namespace bh::queue
