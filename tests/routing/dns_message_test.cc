#include "routing/dns_message.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace bh::routing {
namespace {

using Bytes = std::vector<unsigned char>;

void u16(Bytes& b, unsigned v) {
  b.push_back(static_cast<unsigned char>(v >> 8));
  b.push_back(static_cast<unsigned char>(v & 0xFF));
}

void name(Bytes& b, const std::string& n) {
  std::size_t start = 0;
  while (start < n.size()) {
    auto dot = n.find('.', start);
    if (dot == std::string::npos) {
      dot = n.size();
    }
    b.push_back(static_cast<unsigned char>(dot - start));
    b.insert(b.end(), n.begin() + static_cast<long>(start), n.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  b.push_back(0);
}

Bytes header(unsigned flags, unsigned qd, unsigned an, unsigned ns, unsigned ar) {
  Bytes b;
  u16(b, 0x1234);
  u16(b, flags);
  u16(b, qd);
  u16(b, an);
  u16(b, ns);
  u16(b, ar);
  return b;
}

void rr(Bytes& b, const std::string& owner, unsigned type, const Bytes& rdata) {
  name(b, owner);
  u16(b, type);
  u16(b, 1);
  u16(b, 0);
  u16(b, 60);
  u16(b, static_cast<unsigned>(rdata.size()));
  b.insert(b.end(), rdata.begin(), rdata.end());
}

Bytes mx_rdata(unsigned pref, const std::string& host) {
  Bytes r;
  u16(r, pref);
  name(r, host);
  return r;
}

TEST(DnsMessage, MxReplyWithAdditionalAddresses) {
  Bytes b = header(0x8180, 1, 2, 0, 3);
  name(b, "Example.TEST");
  u16(b, 15);
  u16(b, 1);
  rr(b, "example.test", 15, mx_rdata(20, "MX2.example.test"));
  rr(b, "example.test", 15, mx_rdata(10, "mx1.example.test"));
  rr(b, "mx1.example.test", 1, Bytes{127, 0, 0, 2});
  Bytes v6(16, 0);
  v6[15] = 2;
  rr(b, "mx1.example.test", 28, v6);
  rr(b, "mx2.example.test", 16, Bytes{3, 'a', 'b', 'c'});  // TXT: skipped
  auto r = parse_dns_reply(b.data(), b.size());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->rcode, 0);
  ASSERT_EQ(r->answers.size(), 2u);
  EXPECT_EQ(r->answers[0].type, DnsType::kMx);
  EXPECT_EQ(r->answers[0].preference, 20);
  EXPECT_EQ(r->answers[0].target, "mx2.example.test");  // lower-cased
  EXPECT_EQ(r->answers[1].target, "mx1.example.test");
  ASSERT_EQ(r->additional.size(), 2u);
  EXPECT_EQ(r->additional[0].address, "127.0.0.2");
  EXPECT_EQ(r->additional[1].type, DnsType::kAaaa);
  EXPECT_EQ(r->additional[1].address, "::2");
}

TEST(DnsMessage, CompressedNamesAndNullMx) {
  Bytes b = header(0x8180, 1, 2, 0, 0);
  const std::size_t qname = b.size();  // 12
  name(b, "example.test");
  u16(b, 15);
  u16(b, 1);
  // owner: pointer to the question name; exchange: "mx" + pointer to the question name
  b.push_back(0xC0);
  b.push_back(static_cast<unsigned char>(qname));
  u16(b, 15);
  u16(b, 1);
  u16(b, 0);
  u16(b, 60);
  u16(b, 2 + 3 + 2);
  u16(b, 5);
  b.insert(b.end(), {2, 'm', 'x', 0xC0, static_cast<unsigned char>(qname)});
  // null MX "0 ."
  b.push_back(0xC0);
  b.push_back(static_cast<unsigned char>(qname));
  u16(b, 15);
  u16(b, 1);
  u16(b, 0);
  u16(b, 60);
  u16(b, 3);
  u16(b, 0);
  b.push_back(0);
  auto r = parse_dns_reply(b.data(), b.size());
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->answers.size(), 2u);
  EXPECT_EQ(r->answers[0].name, "example.test");
  EXPECT_EQ(r->answers[0].target, "mx.example.test");
  EXPECT_EQ(r->answers[1].target, "");
  EXPECT_EQ(r->answers[1].preference, 0);
}

TEST(DnsMessage, Rcode) {
  Bytes b = header(0x8183, 0, 0, 0, 0);
  auto r = parse_dns_reply(b.data(), b.size());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rcode, 3);
}

TEST(DnsMessage, MalformedRepliesAreTransientErrors) {
  auto refused = [](const Bytes& b, const char* what) {
    auto r = parse_dns_reply(b.data(), b.size());
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_TRUE(r.error().transient()) << what;
    EXPECT_EQ(r.error().enhanced, "4.4.3") << what;
  };
  refused(Bytes{1, 2, 3}, "short");
  refused(header(0x0100, 0, 0, 0, 0), "a query, not a response");
  {
    Bytes b = header(0x8180, 1, 0, 0, 0);
    b.insert(b.end(), {5, 'a', 'b'});  // label past the end
    refused(b, "truncated label");
  }
  {
    Bytes b = header(0x8180, 1, 0, 0, 0);
    b.insert(b.end(), {0xC0, 12, 0, 15, 0, 1});  // pointer to itself
    refused(b, "self pointer");
  }
  {
    Bytes b = header(0x8180, 1, 0, 0, 0);
    b.insert(b.end(), {0xC0, 40, 0, 15, 0, 1});  // forward pointer
    refused(b, "forward pointer");
  }
  {
    // a label, then a pointer back into that label: would loop forever
    Bytes b = header(0x8180, 1, 0, 0, 0);
    b.insert(b.end(), {1, 'a', 0xC0, 12, 0, 15, 0, 1});
    refused(b, "pointer loop");
  }
  {
    Bytes b = header(0x8180, 0, 1, 0, 0);
    rr(b, "x.test", 1, Bytes{127, 0, 0});  // A with 3 octets
    refused(b, "short A");
  }
  {
    Bytes b = header(0x8180, 0, 1, 0, 0);
    rr(b, "x.test", 15, Bytes{0, 10, 3, 'm', 'x'});  // MX name runs off its rdata
    refused(b, "MX overrun");
  }
  {
    Bytes b = header(0x8180, 0, 2, 0, 0);  // claims two answers, has one
    rr(b, "x.test", 1, Bytes{127, 0, 0, 1});
    refused(b, "missing record");
  }
  {
    Bytes b = header(0x8180, 1, 0, 0, 0);
    for (int i = 0; i < 5; ++i) {
      b.push_back(63);
      b.insert(b.end(), 63, 'a');
    }
    b.push_back(0);
    u16(b, 15);
    u16(b, 1);
    refused(b, "name over 255 octets");
  }
}

}  // namespace
}  // namespace bh::routing
