// Queue file codec and reader: round trip, and every kind of corruption rejected
// without a crash (docs/queue-format.md).

#include "queue/queue_file.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include "tests/queue/queue_test_util.h"

namespace bh::queue {
namespace {

using testing::TempDir;
using testing::slurp;
using testing::spit;

std::string be32(std::uint32_t v) {
  std::string o;
  for (int s = 24; s >= 0; s -= 8) o.push_back(static_cast<char>((v >> s) & 0xFF));
  return o;
}

// A file whose framing and CRC are right around arbitrary records: reaches the record
// decoder through read_queue_file.
std::string framed(std::string_view body, std::string_view records) {
  std::string f(kQueueFileHeader);
  f.append(body);
  f.append(records);
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(f.data()), static_cast<uInt>(f.size()));
  f += encode_trailer(body.size(), records.size(), static_cast<std::uint32_t>(crc));
  return f;
}

TEST(QueueFile, EnvelopeRoundTrip) {
  Envelope e = testing::sample(3);
  e.id = "ABC";
  e.body_size = 1234;
  auto d = decode_envelope(encode_envelope(e));
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->id, "ABC");
  EXPECT_EQ(d->sender, e.sender);
  ASSERT_EQ(d->recipients.size(), 3u);
  EXPECT_EQ(d->recipients[2].address, e.recipients[2].address);
  EXPECT_EQ(d->recipients[2].orcpt, e.recipients[2].orcpt);
  EXPECT_EQ(d->recipients[2].mailbox, e.recipients[2].mailbox);
  EXPECT_EQ(d->recipients[1].notify, e.recipients[1].notify);
  EXPECT_EQ(d->body, BodyType::kBinaryMime);
  EXPECT_EQ(d->ret, DsnRet::kHeaders);
  EXPECT_EQ(d->envid, "ENV1");
  EXPECT_TRUE(d->smtputf8);
  EXPECT_EQ(d->declared_size, 99u);
  EXPECT_EQ(d->body_size, 1234u);
  EXPECT_EQ(d->client_address, "192.0.2.1");
  EXPECT_EQ(d->client_helo, "client.example");
  EXPECT_EQ(d->protocol, "ESMTP");
  EXPECT_EQ(d->received_unix, 1700000000);
}

TEST(QueueFile, Xexch50BlobRoundTripsBinaryAndIsCapped) {
  Envelope e = testing::sample(1);
  e.id = "X1";
  e.xexch50 = std::string("\0\0\0\1M\0\0\0\2\r\n", 11);
  auto d = decode_envelope(encode_envelope(e));
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->xexch50, e.xexch50);
  Envelope none = testing::sample(1);
  none.id = "X2";
  EXPECT_EQ(decode_envelope(encode_envelope(none))->xexch50, "");
  // A record over the cap is corruption, not a blob.
  std::string records = encode_envelope(none);
  std::string big(kMaxXexch50 + 1, 'x');
  std::string rec(1, static_cast<char>(14));
  rec += be32(static_cast<std::uint32_t>(big.size())) + big;
  records.insert(records.size() - 5, rec);  // before the END record (type + u32 length)
  EXPECT_FALSE(decode_envelope(records).ok());
}

TEST(QueueFile, TheCategorizeFlagRoundTripsAndOlderRecordsStillRead) {
  Envelope e = testing::sample(2);
  e.id = "C1";
  e.recipients[1].categorize = true;
  e.recipients[1].mailbox.clear();
  const std::string records = encode_envelope(e);
  auto d = decode_envelope(records);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_FALSE(d->recipients[0].categorize);
  EXPECT_TRUE(d->recipients[1].categorize);
  // Without the flag the record is byte for byte what it was before the flag existed.
  Envelope plain = testing::sample(1);
  plain.id = "C2";
  std::string r = encode_envelope(plain);
  plain.recipients[0].categorize = true;
  EXPECT_EQ(encode_envelope(plain).size(), r.size() + 1);
  // An unknown flag bit, or a second flags byte, is corruption.
  const Recipient& x = plain.recipients[0];
  const std::size_t len = 12 + x.address.size() + x.orcpt.size() + x.mailbox.size() + 2;
  std::string good = encode_envelope(plain);
  const std::size_t at = good.find(std::string(1, '\3') + be32(static_cast<std::uint32_t>(len)));
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(good[at + 5 + len - 1], '\1');
  std::string unknown_bit = good;
  unknown_bit[at + 5 + len - 1] = '\5';
  EXPECT_FALSE(decode_envelope(unknown_bit).ok());
  std::string two_bytes = good;
  two_bytes.replace(at + 1, 4, be32(static_cast<std::uint32_t>(len + 1)));
  two_bytes.insert(at + 5 + len, 1, '\1');
  EXPECT_FALSE(decode_envelope(two_bytes).ok());
}

TEST(QueueFile, TheHomeServerRoundTripsAfterTheFlags) {
  Envelope e = testing::sample(2);
  e.id = "H1";
  e.recipients[1].mailbox.clear();
  e.recipients[1].home_server = "node5";
  e.recipients[0].categorize = true;
  auto d = decode_envelope(encode_envelope(e));
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_TRUE(d->recipients[0].home_server.empty());
  EXPECT_TRUE(d->recipients[0].categorize);
  EXPECT_EQ(d->recipients[1].home_server, "node5");
  EXPECT_FALSE(d->recipients[1].categorize);
  // The home-server bit without its string, or with an empty one, is corruption.
  Envelope one = testing::sample(1);
  one.id = "H2";
  one.recipients[0].home_server = "n";
  std::string good = encode_envelope(one);
  const std::string tail = std::string("\2") + be32(1) + "n";
  const std::size_t at = good.find(tail);
  ASSERT_NE(at, std::string::npos);
  std::string empty_name = good;
  empty_name.replace(at + 1, 5, be32(0) + "n");  // length 0, then a stray octet
  EXPECT_FALSE(decode_envelope(empty_name).ok());
}

TEST(QueueFile, NullSenderAndEmptyFieldsRoundTrip) {
  Envelope e = testing::sample(1);
  e.id = "X";
  e.sender.clear();
  e.envid.clear();
  e.recipients[0].orcpt.clear();
  e.recipients[0].mailbox.clear();
  auto d = decode_envelope(encode_envelope(e));
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_TRUE(d->sender.empty());
  EXPECT_TRUE(d->recipients[0].mailbox.empty());
}

TEST(QueueFile, FileRoundTripAndStreamingBody) {
  TempDir t;
  testing::Store s(t.path());
  std::string body;
  for (int i = 0; i < 200000; ++i) body.push_back(static_cast<char>(i * 7));
  auto id = s.put(body);
  ASSERT_TRUE(id.ok()) << id.error().message;
  auto m = read_queue_file(s.store.path_of(*id));
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->envelope.id, *id);
  EXPECT_EQ(m->envelope.body_size, body.size());
  EXPECT_EQ(m->body_length, body.size());
  std::string copy;
  std::size_t chunks = 0;
  auto r = read_queue_body(s.store.path_of(*id), *m, [&](std::string_view c) -> Result<void> {
    EXPECT_LE(c.size(), 64u << 10);
    ++chunks;
    copy.append(c);
    return Ok{};
  });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(copy, body);
  EXPECT_GE(chunks, 4u);
  // A sink error stops the copy and comes back unchanged.
  auto stopped = read_queue_body(s.store.path_of(*id), *m, [](std::string_view) -> Result<void> {
    return transient_error("4.2.2", "mailbox full");
  });
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.error().enhanced, "4.2.2");
}

TEST(QueueFile, TruncationAtEveryOffsetIsRejected) {
  TempDir t;
  testing::Store s(t.path());
  std::string body = std::string("Subject: x\r\n\r\n") + std::string(3000, 'b') + std::string(1, '\0');
  auto id = s.put(body);
  ASSERT_TRUE(id.ok());
  std::string good = slurp(s.store.path_of(*id));
  std::string bad = t.path() + "/bad";
  for (std::size_t n = 0; n < good.size(); ++n) {
    spit(bad, std::string_view(good).substr(0, n));
    auto r = read_queue_file(bad);
    ASSERT_FALSE(r.ok()) << "truncated at " << n;
    EXPECT_FALSE(r.error().transient()) << "corruption is permanent, at " << n;
  }
  // Extra bytes at the end are corruption too.
  spit(bad, good + "x");
  EXPECT_FALSE(read_queue_file(bad).ok());
}

TEST(QueueFile, EveryBitFlipIsRejected) {
  TempDir t;
  testing::Store s(t.path());
  auto id = s.put("Subject: y\r\n\r\nshort body\r\n");
  ASSERT_TRUE(id.ok());
  std::string good = slurp(s.store.path_of(*id));
  std::string bad = t.path() + "/bad";
  for (std::size_t pos = 0; pos < good.size(); ++pos) {
    for (int bit : {0, 6}) {
      std::string flipped = good;
      flipped[pos] = static_cast<char>(flipped[pos] ^ (1 << bit));
      spit(bad, flipped);
      ASSERT_FALSE(read_queue_file(bad).ok()) << "flipped bit " << bit << " at " << pos;
    }
  }
}

TEST(QueueFile, HostileRecordsBehindAValidChecksumAreRejected) {
  TempDir t;
  std::string path = t.path() + "/f";
  Envelope e = testing::sample();
  e.id = "X";
  e.body_size = 4;
  std::string recs = encode_envelope(e);
  spit(path, framed("body", recs));
  ASSERT_TRUE(read_queue_file(path).ok());

  auto rejected = [&](std::string_view records, std::string_view body = "body") {
    spit(path, framed(body, records));
    auto r = read_queue_file(path);
    return !r.ok() && !r.error().transient();
  };
  EXPECT_TRUE(rejected(recs.substr(0, recs.size() - 5))) << "missing END";
  EXPECT_TRUE(rejected(recs + recs)) << "data after END";
  EXPECT_TRUE(rejected(std::string(1, '\2') + be32(0xFFFFFFFF) + recs)) << "huge length";
  EXPECT_TRUE(rejected(std::string(1, '\2') + be32(kMaxRecordLength + 1) +
                       std::string(kMaxRecordLength + 1, 'a') + recs))
      << "record over the cap";
  EXPECT_TRUE(rejected(std::string(1, '\x77') + be32(0) + recs)) << "unknown type";
  EXPECT_TRUE(rejected(recs, "bodyX")) << "body size differs from the envelope";
  // A recipient record whose inner string length runs past the record.
  std::string rc = std::string(1, '\3') + be32(5) + be32(100) + "a";
  EXPECT_TRUE(rejected(rc + recs)) << "inner length";
  e.sender = "a\r\nX-Injected: 1";
  EXPECT_TRUE(rejected(encode_envelope(e))) << "CR LF in a string";
  e.sender = std::string("a\0b", 3);
  EXPECT_TRUE(rejected(encode_envelope(e))) << "NUL in a string";
  e = testing::sample(0);
  e.id = "X";
  e.body_size = 4;
  EXPECT_TRUE(rejected(encode_envelope(e))) << "no recipients";
}

TEST(QueueFile, DecoderRejectsEveryPrefixWithoutCrashing) {
  Envelope e = testing::sample(3);
  e.id = "X";
  std::string recs = encode_envelope(e);
  ASSERT_TRUE(decode_envelope(recs).ok());
  for (std::size_t n = 0; n < recs.size(); ++n) {
    ASSERT_FALSE(decode_envelope(std::string_view(recs).substr(0, n)).ok()) << n;
  }
}

TEST(QueueFile, MissingFileIsTransient) {
  auto r = read_queue_file("/nonexistent/bh/queue/file");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().transient());
}

}  // namespace
}  // namespace bh::queue
