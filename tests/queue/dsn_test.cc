// DSN generation (queue/dsn.h): the produced MIME is parsed back and checked field by
// field; NOTIFY policy as a table; caps; wire form (CRLF only, <= 998 octets); a golden
// file for byte-exact determinism with a fixed clock and randomness.

#include "queue/dsn.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "tests/queue/queue_test_util.h"

namespace bh::queue {
namespace {

using testing::FixedRandom;

// ---- a small MIME reader for the checks -------------------------------------------

// Header-like block -> fields in order (name lower-cased, value unfolded and trimmed).
std::vector<std::pair<std::string, std::string>> fields(std::string_view block) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t pos = 0;
  while (pos < block.size()) {
    std::size_t end = block.find("\r\n", pos);
    if (end == std::string_view::npos) {
      end = block.size();
    }
    std::string_view line = block.substr(pos, end - pos);
    pos = end + 2;
    if (line.empty()) {
      continue;
    }
    if ((line[0] == ' ' || line[0] == '\t') && !out.empty()) {
      out.back().second += std::string(line);  // unfold: CRLF removed, WSP kept
      continue;
    }
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      continue;
    }
    std::string name(line.substr(0, colon));
    for (auto& c : name) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    std::string value(line.substr(colon + 1));
    while (!value.empty() && value.front() == ' ') {
      value.erase(0, 1);
    }
    out.emplace_back(name, value);
  }
  return out;
}

std::string get(const std::vector<std::pair<std::string, std::string>>& f, std::string_view name) {
  for (const auto& [k, v] : f) {
    if (k == name) {
      return v;
    }
  }
  return "<absent>";
}

std::size_t count(const std::vector<std::pair<std::string, std::string>>& f, std::string_view name) {
  std::size_t n = 0;
  for (const auto& [k, v] : f) {
    n += k == name ? 1 : 0;
  }
  return n;
}

struct Part {
  std::string header;
  std::string body;
  std::vector<std::pair<std::string, std::string>> fields;
};

struct Parsed {
  std::vector<std::pair<std::string, std::string>> top;
  std::string boundary;
  std::vector<Part> parts;
  bool closed = false;
};

Parsed parse(const std::string& msg) {
  Parsed p;
  std::size_t hend = msg.find("\r\n\r\n");
  EXPECT_NE(hend, std::string::npos);
  p.top = fields(std::string_view(msg).substr(0, hend + 2));
  std::string ct = get(p.top, "content-type");
  std::size_t b = ct.find("boundary=\"");
  EXPECT_NE(b, std::string::npos) << ct;
  if (b == std::string::npos) {
    return p;
  }
  p.boundary = ct.substr(b + 10, ct.find('"', b + 10) - (b + 10));
  std::string delim = "\r\n--" + p.boundary;
  std::string body = msg.substr(hend + 2);  // keep the CRLF before the first delimiter
  std::size_t pos = body.find(delim);
  while (pos != std::string::npos) {
    std::size_t start = pos + delim.size();
    if (body.compare(start, 2, "--") == 0) {
      p.closed = true;
      EXPECT_EQ(body.substr(start + 2), "\r\n");
      break;
    }
    EXPECT_EQ(body.compare(start, 2, "\r\n"), 0);
    start += 2;
    std::size_t next = body.find(delim, start);
    std::string part = body.substr(start, next == std::string::npos ? std::string::npos : next - start);
    Part pt;
    std::size_t ph = part.find("\r\n\r\n");
    if (part.rfind("\r\n", 0) == 0) {
      ph = 0;  // no header lines
    }
    pt.header = part.substr(0, ph + 2);
    pt.body = part.substr(ph + 4);
    pt.fields = fields(pt.header);
    p.parts.push_back(std::move(pt));
    pos = next;
  }
  return p;
}

// Groups of fields separated by empty lines (RFC 3464 §2.1).
std::vector<std::vector<std::pair<std::string, std::string>>> groups(const std::string& body) {
  std::vector<std::vector<std::pair<std::string, std::string>>> out;
  std::size_t pos = 0;
  while (pos < body.size()) {
    std::size_t end = body.find("\r\n\r\n", pos);
    std::string block = body.substr(pos, end == std::string::npos ? std::string::npos : end - pos + 2);
    auto f = fields(block);
    if (!f.empty()) {
      out.push_back(std::move(f));
    }
    if (end == std::string::npos) {
      break;
    }
    pos = end + 4;
  }
  return out;
}

// Body text with its wrapping undone (line breaks become spaces).
std::string flat(std::string text) {
  for (std::size_t pos = text.find("\r\n"); pos != std::string::npos; pos = text.find("\r\n", pos)) {
    text.replace(pos, 2, " ");
  }
  return text;
}

// RFC 5322 §2.1.1 and §2.3: CRLF only, at most 998 octets per line.
void expect_wire_form(const std::string& msg) {
  std::size_t line = 0;
  for (std::size_t i = 0; i < msg.size(); ++i) {
    if (msg[i] == '\r') {
      ASSERT_LT(i + 1, msg.size()) << "CR at the end";
      ASSERT_EQ(msg[i + 1], '\n') << "bare CR at " << i;
      ++i;
      line = 0;
      continue;
    }
    ASSERT_NE(msg[i], '\n') << "bare LF at " << i;
    ASSERT_NE(msg[i], '\0') << "NUL at " << i;
    ++line;
    ASSERT_LE(line, 998u) << "long line at " << i;
  }
  ASSERT_GE(msg.size(), 2u);
  EXPECT_EQ(msg.substr(msg.size() - 2), "\r\n");
}

// ---- fixtures --------------------------------------------------------------------------

const std::string kOriginal =
    "Received: from client.example ([192.0.2.1]) by node1.example.org with ESMTP id Q1;\r\n"
    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n"
    "From: Sender <s@example.net>\r\n"
    "To: user0@example.org, user1@example.org\r\n"
    "Subject: quarterly numbers\r\n"
    "Message-ID: <orig-1@example.net>\r\n"
    "\r\n"
    "Hello,\r\n"
    "the numbers are attached.\r\n";

Envelope envelope(std::size_t rcpts = 2) {
  Envelope e;
  e.id = "Q1";
  e.sender = "s@example.net";
  for (std::size_t i = 0; i < rcpts; ++i) {
    Recipient r;
    r.address = "user" + std::to_string(i) + "@example.org";
    e.recipients.push_back(r);
  }
  e.recipients[0].orcpt = "rfc822;User0+tag@Example.org";
  e.envid = "QQ+314159=1";
  e.ret = DsnRet::kUnspecified;
  e.received_unix = 1700000000;
  return e;
}

DsnOptions options() {
  DsnOptions o;
  o.reporting_mta = "node1.example.org";
  return o;
}

DsnOutcome failed(std::size_t i, std::string status = "5.1.1") {
  DsnOutcome o;
  o.recipient = i;
  o.action = DsnAction::kFailed;
  o.status = std::move(status);
  o.remote_mta = "mx.example.org";
  o.diagnostic = "smtp; 550 5.1.1 <user@example.org>: user unknown";
  o.last_attempt = Clock::time_point{std::chrono::seconds{1700000600}};
  return o;
}

DsnOutcome delayed(std::size_t i) {
  DsnOutcome o;
  o.recipient = i;
  o.action = DsnAction::kDelayed;
  o.status = "4.4.1";
  o.remote_mta = "mx.example.org";
  o.diagnostic = "smtp; 421 4.4.1 try again later";
  o.last_attempt = Clock::time_point{std::chrono::seconds{1700003600}};
  o.will_retry_until = Clock::time_point{std::chrono::seconds{1700000000 + 5 * 86400}};
  return o;
}

DsnOutcome success(std::size_t i, DsnAction a = DsnAction::kDelivered) {
  DsnOutcome o;
  o.recipient = i;
  o.action = a;
  o.status = "2.0.0";
  return o;
}

struct Gen {
  ManualClock clock{Clock::time_point{std::chrono::seconds{1700086400}}};
  FixedRandom random{0x1234};
  Result<std::optional<DsnMessage>> make(const Envelope& e, std::vector<DsnOutcome> outcomes,
                                         const std::string& original = kOriginal,
                                         DsnOptions o = options(), std::size_t chunk = 7) {
    StringOriginalMessage msg(original, chunk);
    return make_dsn(e, outcomes, msg, o, clock, random);
  }
};

DsnMessage must(Result<std::optional<DsnMessage>> r) {
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  if (!r.ok() || !r.value()) {
    ADD_FAILURE() << "no DSN";
    return {};
  }
  expect_wire_form(r.value()->bytes);
  return std::move(*r.value());
}

// ---- structure -------------------------------------------------------------------------

TEST(Dsn, FailureReportStructure) {
  Gen run;
  auto d = must(run.make(envelope(), {failed(0), failed(1, "5.2.2")}));
  Parsed p = parse(d.bytes);

  EXPECT_EQ(get(p.top, "from"), "Mail Delivery System <MAILER-DAEMON@node1.example.org>");
  EXPECT_EQ(get(p.top, "to"), "<s@example.net>");
  EXPECT_EQ(get(p.top, "subject"), "Undelivered Mail Returned to Sender");
  EXPECT_EQ(get(p.top, "date"), "Wed, 15 Nov 2023 22:13:20 +0000");
  EXPECT_EQ(get(p.top, "message-id"), d.info.message_id);
  EXPECT_EQ(d.info.message_id.find("<20231115221320."), 0u);
  EXPECT_NE(d.info.message_id.find("@node1.example.org>"), std::string::npos);
  EXPECT_EQ(get(p.top, "auto-submitted"), "auto-replied");
  EXPECT_EQ(get(p.top, "mime-version"), "1.0");
  EXPECT_EQ(get(p.top, "content-type").find("multipart/report; report-type=delivery-status;"), 0u);
  EXPECT_FALSE(p.boundary.empty());
  ASSERT_TRUE(p.closed);
  ASSERT_EQ(p.parts.size(), 3u);

  // Part 1: human-readable, names each recipient with the remote reply.
  EXPECT_EQ(get(p.parts[0].fields, "content-type"), "text/plain; charset=us-ascii");
  EXPECT_NE(p.parts[0].body.find("<user0@example.org>: delivery failed"), std::string::npos);
  EXPECT_NE(p.parts[0].body.find("Reply: smtp; 550 5.1.1 <user@example.org>: user unknown"),
            std::string::npos);
  EXPECT_NE(p.parts[0].body.find("Remote server: mx.example.org"), std::string::npos);
  EXPECT_NE(p.parts[0].body.find("attached in full"), std::string::npos);

  // Part 2: one per-message group, one group per recipient.
  EXPECT_EQ(get(p.parts[1].fields, "content-type"), "message/delivery-status");
  auto g = groups(p.parts[1].body);
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(get(g[0], "reporting-mta"), "dns; node1.example.org");
  EXPECT_EQ(get(g[0], "original-envelope-id"), "QQ+2B314159+3D1");  // xtext
  EXPECT_EQ(get(g[0], "arrival-date"), "Tue, 14 Nov 2023 22:13:20 +0000");
  EXPECT_EQ(get(g[1], "original-recipient"), "rfc822;User0+2Btag@Example.org");
  EXPECT_EQ(get(g[1], "final-recipient"), "rfc822; user0@example.org");
  EXPECT_EQ(get(g[1], "action"), "failed");
  EXPECT_EQ(get(g[1], "status"), "5.1.1");
  EXPECT_EQ(get(g[1], "remote-mta"), "dns; mx.example.org");
  EXPECT_EQ(get(g[1], "diagnostic-code"), "smtp; 550 5.1.1 <user@example.org>: user unknown");
  EXPECT_EQ(get(g[1], "last-attempt-date"), "Tue, 14 Nov 2023 22:23:20 +0000");
  EXPECT_EQ(count(g[1], "will-retry-until"), 0u);
  EXPECT_EQ(count(g[2], "original-recipient"), 0u);  // no ORCPT given: none invented
  EXPECT_EQ(get(g[2], "final-recipient"), "rfc822; user1@example.org");
  EXPECT_EQ(get(g[2], "status"), "5.2.2");

  // Part 3: the whole original.
  EXPECT_EQ(get(p.parts[2].fields, "content-type"), "message/rfc822");
  EXPECT_EQ(p.parts[2].body, kOriginal);
  EXPECT_EQ(d.info.returned, DsnReturned::kFull);
  EXPECT_EQ(d.info.kind, DsnKind::kFailure);
  EXPECT_EQ(d.info.size, d.bytes.size());

  // The DSN's own envelope: MAIL FROM:<>, RCPT TO the original sender.
  EXPECT_EQ(d.info.envelope.sender, "");
  ASSERT_EQ(d.info.envelope.recipients.size(), 1u);
  EXPECT_EQ(d.info.envelope.recipients[0].address, "s@example.net");
  EXPECT_EQ(d.info.envelope.recipients[0].notify, kNotifyNever);
  EXPECT_EQ(d.info.envelope.body, BodyType::k7Bit);
  EXPECT_EQ((std::vector<std::size_t>{0, 1}), d.info.reported);
}

TEST(Dsn, BoundaryDoesNotOccurInsideThePartsAndIsQuoted) {
  Gen run;
  auto d = must(run.make(envelope(), {failed(0)}));
  Parsed p = parse(d.bytes);
  EXPECT_NE(get(p.top, "content-type").find("boundary=\"" + p.boundary + "\""), std::string::npos);
  for (const auto& part : p.parts) {
    EXPECT_EQ(part.body.find(p.boundary), std::string::npos);
  }
  // Exactly three delimiters and one close delimiter.
  std::size_t n = 0;
  for (std::size_t pos = d.bytes.find("\r\n--" + p.boundary); pos != std::string::npos;
       pos = d.bytes.find("\r\n--" + p.boundary, pos + 1)) {
    ++n;
  }
  EXPECT_EQ(n, 4u);
}

TEST(Dsn, RetHdrsReturnsTheHeaderOnly) {
  Gen run;
  auto e = envelope();
  e.ret = DsnRet::kHeaders;
  auto d = must(run.make(e, {failed(1)}));
  Parsed p = parse(d.bytes);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(get(p.parts[2].fields, "content-type"), "text/rfc822-headers");
  std::string header = kOriginal.substr(0, kOriginal.find("\r\n\r\n") + 2);
  EXPECT_EQ(p.parts[2].body, header);
  EXPECT_EQ(p.parts[2].body.find("numbers are attached"), std::string::npos);
  EXPECT_NE(flat(p.parts[0].body).find("RET=HDRS"), std::string::npos);
  EXPECT_EQ(d.info.returned, DsnReturned::kHeader);
}

TEST(Dsn, RetFullReturnsTheWholeMessage) {
  Gen run;
  auto e = envelope();
  e.ret = DsnRet::kFull;
  auto d = must(run.make(e, {failed(0)}));
  EXPECT_EQ(parse(d.bytes).parts[2].body, kOriginal);
}

TEST(Dsn, SizeCapFallsBackToTheHeaderAndSaysSo) {
  Gen run;
  auto o = options();
  o.max_returned_content = kOriginal.size() - 1;
  auto d = must(run.make(envelope(), {failed(0)}, kOriginal, o));
  Parsed p = parse(d.bytes);
  EXPECT_EQ(d.info.returned, DsnReturned::kHeader);
  EXPECT_EQ(get(p.parts[2].fields, "content-type"), "text/rfc822-headers");
  EXPECT_NE(flat(p.parts[0].body).find("larger than the limit of " + std::to_string(kOriginal.size() - 1)),
            std::string::npos);
  // Exactly at the cap: returned in full.
  o.max_returned_content = kOriginal.size();
  auto full = must(run.make(envelope(), {failed(0)}, kOriginal, o));
  EXPECT_EQ(full.info.returned, DsnReturned::kFull);
}

TEST(Dsn, LargeOriginalIsStreamedAndNotReadPastTheCap) {
  // A 5 MiB original: the report stays small and the reader is stopped early.
  std::string big = "Subject: big\r\n\r\n";
  while (big.size() < (5u << 20)) {
    big += std::string(76, 'x') + "\r\n";
  }
  struct Counting final : OriginalMessage {
    explicit Counting(const std::string& t) : text(t) {}
    Result<void> read(const ChunkSink& sink) const override {
      for (std::size_t pos = 0; pos < text.size(); pos += 4096) {
        octets += std::min<std::size_t>(4096, text.size() - pos);
        if (!sink(std::string_view(text).substr(pos, 4096))) {
          break;
        }
      }
      return Ok{};
    }
    const std::string& text;
    mutable std::size_t octets = 0;
  } msg(big);
  ManualClock clock;
  FixedRandom random;
  std::vector<DsnOutcome> out{failed(0)};
  auto r = make_dsn(envelope(), out, msg, options(), clock, random);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r.value());
  EXPECT_EQ((*r)->info.returned, DsnReturned::kHeader);
  EXPECT_LT((*r)->bytes.size(), 8192u);
  EXPECT_LT(msg.octets, 2 * kDefaultDsnMaxContent);  // two passes, each capped
  expect_wire_form((*r)->bytes);
}

TEST(Dsn, HugeHeaderIsCutAtALineBoundary) {
  std::string orig;
  int i = 0;
  while (orig.size() < 10000) {
    orig += "X-Filler-" + std::to_string(i++) + ": " + std::string(60, 'y') + "\r\n";
  }
  orig += "\r\nbody\r\n";
  Gen run;
  auto o = options();
  o.max_returned_header = 4000;
  auto e = envelope();
  e.ret = DsnRet::kHeaders;
  auto d = must(run.make(e, {failed(0)}, orig, o));
  EXPECT_EQ(d.info.returned, DsnReturned::kHeaderTruncated);
  Parsed p = parse(d.bytes);
  const std::string& h = p.parts[2].body;
  EXPECT_LE(h.size(), 4000u);
  EXPECT_GT(h.size(), 3900u);
  EXPECT_EQ(orig.compare(0, h.size(), h), 0);  // a prefix of whole lines
  EXPECT_EQ(h.substr(h.size() - 2), "\r\n");
  EXPECT_NE(flat(p.parts[0].body).find("cut at 4000 octets"), std::string::npos);

  // A header block with no end at all, far over every cap.
  std::string endless(3u << 20, 'h');
  auto d2 = must(run.make(e, {failed(0)}, endless, o));
  EXPECT_EQ(d2.info.returned, DsnReturned::kHeaderTruncated);
  EXPECT_EQ(parse(d2.bytes).parts[2].body, "");
}

TEST(Dsn, OddOriginalsReturnASanitisedHeader) {
  Gen run;
  // Bare LF line ends, a NUL, an over-long header line and 8-bit text in the header.
  std::string orig = "Subject: caf\xc3\xa9\nX-Nul: a" + std::string(1, '\0') + "b\n" +
                     "X-Long: " + std::string(3000, 'L') + "\n\nbody\n";
  auto d = must(run.make(envelope(), {failed(0)}, orig));
  EXPECT_EQ(d.info.returned, DsnReturned::kHeader);
  Parsed p = parse(d.bytes);
  EXPECT_NE(flat(p.parts[0].body).find("binary content or lines"), std::string::npos);
  EXPECT_EQ(get(p.parts[2].fields, "content-transfer-encoding"), "8bit");
  EXPECT_EQ(d.info.envelope.body, BodyType::k8BitMime);
  auto f = fields(p.parts[2].body);
  EXPECT_EQ(get(f, "x-nul"), "a b");
  std::string long_value = get(f, "x-long");  // hard-folded: spaces inserted, nothing lost
  EXPECT_EQ(std::count(long_value.begin(), long_value.end(), ' '), 3);
  long_value.erase(std::remove(long_value.begin(), long_value.end(), ' '), long_value.end());
  EXPECT_EQ(long_value, std::string(3000, 'L'));

  // BINARYMIME originals are never returned in full.
  auto e = envelope();
  e.body = BodyType::kBinaryMime;
  EXPECT_EQ(must(run.make(e, {failed(0)})).info.returned, DsnReturned::kHeader);
}

TEST(Dsn, EightBitOriginalInFullMakesAn8BitReport) {
  Gen run;
  std::string orig = "Subject: x\r\n\r\ncaf\xc3\xa9\r\n";
  auto d = must(run.make(envelope(), {failed(0)}, orig));
  EXPECT_EQ(d.info.returned, DsnReturned::kFull);
  EXPECT_EQ(d.info.envelope.body, BodyType::k8BitMime);
  Parsed p = parse(d.bytes);
  EXPECT_EQ(get(p.parts[2].fields, "content-transfer-encoding"), "8bit");
  EXPECT_EQ(get(p.parts[2].fields, "content-type"), "message/rfc822");
}

TEST(Dsn, OriginalWithoutFinalCrlfStillEndsItsLine) {
  Gen run;
  auto d = must(run.make(envelope(), {failed(0)}, "Subject: x\r\n\r\nno newline"));
  EXPECT_EQ(parse(d.bytes).parts[2].body, "Subject: x\r\n\r\nno newline\r\n");
}

TEST(Dsn, DelayNoticeCarriesWillRetryUntilAndOnlyTheHeader) {
  Gen run;
  auto e = envelope();
  e.ret = DsnRet::kFull;  // RET applies to failures only (RFC 3461 §4.3)
  auto d = must(run.make(e, {delayed(0)}));
  Parsed p = parse(d.bytes);
  EXPECT_EQ(d.info.kind, DsnKind::kDelay);
  EXPECT_EQ(get(p.top, "subject"), "Delayed Mail (still being retried)");
  auto g = groups(p.parts[1].body);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(get(g[1], "action"), "delayed");
  EXPECT_EQ(get(g[1], "status"), "4.4.1");
  EXPECT_EQ(get(g[1], "will-retry-until"), "Sun, 19 Nov 2023 22:13:20 +0000");
  EXPECT_EQ(get(g[1], "last-attempt-date"), "Tue, 14 Nov 2023 23:13:20 +0000");
  EXPECT_EQ(get(p.parts[2].fields, "content-type"), "text/rfc822-headers");
  EXPECT_NE(p.parts[0].body.find("Still trying until: Sun, 19 Nov 2023"), std::string::npos);
  EXPECT_NE(flat(p.parts[0].body).find("do not need to send it"), std::string::npos);
}

TEST(Dsn, SuccessReportForDeliveredAndRelayed) {
  Gen run;
  auto e = envelope(3);
  for (auto& r : e.recipients) {
    r.notify = kNotifySuccess | kNotifyFailure;
  }
  auto d = must(run.make(e, {success(0), success(1, DsnAction::kRelayed),
                             success(2, DsnAction::kExpanded)}));
  Parsed p = parse(d.bytes);
  EXPECT_EQ(get(p.top, "subject"), "Successful Mail Delivery Report");
  auto g = groups(p.parts[1].body);
  ASSERT_EQ(g.size(), 4u);
  EXPECT_EQ(get(g[1], "action"), "delivered");
  EXPECT_EQ(get(g[2], "action"), "relayed");
  EXPECT_EQ(get(g[3], "action"), "expanded");
  EXPECT_EQ(get(g[2], "status"), "2.0.0");
  EXPECT_EQ(get(p.parts[2].fields, "content-type"), "text/rfc822-headers");
  EXPECT_NE(flat(p.parts[0].body).find("does not send delivery reports"), std::string::npos);
}

TEST(Dsn, MixedOutcomesReportOnlyWhatWasAskedFor) {
  Gen run;
  auto e = envelope(3);
  e.recipients[1].notify = kNotifyNever;
  // r0 failed (NOTIFY absent: reported), r1 failed (NEVER), r2 delivered (no SUCCESS).
  auto d = must(run.make(e, {failed(0), failed(1), success(2)}));
  EXPECT_EQ(d.info.reported, (std::vector<std::size_t>{0}));
  auto g = groups(parse(d.bytes).parts[1].body);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(get(g[1], "final-recipient"), "rfc822; user0@example.org");
}

TEST(Dsn, NullSenderNeverGetsADsn) {
  Gen run;
  auto e = envelope();
  e.sender = "";
  auto r = run.make(e, {failed(0), delayed(1)});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.value().has_value());
  EXPECT_TRUE(reportable_outcomes(e, std::vector<DsnOutcome>{failed(0)}, options()).empty());
}

TEST(Dsn, NothingReportableIsNoDsn) {
  Gen run;
  auto e = envelope();
  e.recipients[0].notify = kNotifyNever;
  auto r = run.make(e, {failed(0), success(1)});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.value().has_value());
}

// ---- NOTIFY policy as a table (RFC 3461 §4.1, §6.1) ------------------------------------

struct NotifyCase {
  std::uint8_t notify;
  bool delay_default;
  bool failed, delayed, delivered, relayed, expanded;
};

TEST(DsnPolicy, NotifyTable) {
  constexpr std::uint8_t U = kNotifyUnspecified, N = kNotifyNever, S = kNotifySuccess,
                         F = kNotifyFailure, D = kNotifyDelay;
  const NotifyCase cases[] = {
      // notify          delay-default  failed delayed deliv  relayed expanded
      {U, true, true, true, false, false, false},
      {U, false, true, false, false, false, false},
      {N, true, false, false, false, false, false},
      {N, false, false, false, false, false, false},
      {S, true, false, false, true, true, true},
      {F, true, true, false, false, false, false},
      {D, true, false, true, false, false, false},
      {D, false, false, true, false, false, false},
      {static_cast<std::uint8_t>(S | F), true, true, false, true, true, true},
      {static_cast<std::uint8_t>(F | D), false, true, true, false, false, false},
      {static_cast<std::uint8_t>(S | D), true, false, true, true, true, true},
      {static_cast<std::uint8_t>(S | F | D), true, true, true, true, true, true},
      // NEVER wins even if a broken envelope carries more bits.
      {static_cast<std::uint8_t>(N | S | F | D), true, false, false, false, false, false},
  };
  for (const auto& c : cases) {
    DsnOptions o = options();
    o.delay_notices_without_notify = c.delay_default;
    SCOPED_TRACE(::testing::Message() << "notify=" << int(c.notify) << " default=" << c.delay_default);
    EXPECT_EQ(dsn_requested(c.notify, DsnAction::kFailed, o), c.failed);
    EXPECT_EQ(dsn_requested(c.notify, DsnAction::kDelayed, o), c.delayed);
    EXPECT_EQ(dsn_requested(c.notify, DsnAction::kDelivered, o), c.delivered);
    EXPECT_EQ(dsn_requested(c.notify, DsnAction::kRelayed, o), c.relayed);
    EXPECT_EQ(dsn_requested(c.notify, DsnAction::kExpanded, o), c.expanded);
  }
}

TEST(DsnPolicy, ReportableKeepsOrderAndDropsTheRest) {
  auto e = envelope(4);
  e.recipients[0].notify = kNotifyDelay;
  e.recipients[1].notify = kNotifyFailure;
  e.recipients[2].notify = kNotifySuccess;
  e.recipients[3].notify = kNotifyNever;
  std::vector<DsnOutcome> in{delayed(0), delayed(1), success(2), failed(3), failed(1)};
  auto out = reportable_outcomes(e, in, options());
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].recipient, 0u);
  EXPECT_EQ(out[1].recipient, 2u);
  EXPECT_EQ(out[2].recipient, 1u);
  EXPECT_EQ(out[2].action, DsnAction::kFailed);
}

// ---- wire form -------------------------------------------------------------------------

TEST(Dsn, LongDiagnosticsAreFoldedUnder998) {
  Gen run;
  auto o = failed(0);
  std::string words;
  while (words.size() < 3000) {
    words += "word" + std::to_string(words.size()) + " ";
  }
  words.pop_back();
  o.diagnostic = "smtp; 550 5.1.1 " + words;
  auto o2 = failed(1);
  o2.diagnostic = "smtp; 550 " + std::string(2500, 'Z');  // no space to fold at
  o2.remote_mta = std::string(200, 'm') + ".example";
  auto d = must(run.make(envelope(), {o, o2}));
  Parsed p = parse(d.bytes);
  auto g = groups(p.parts[1].body);
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(get(g[1], "diagnostic-code"), "smtp; 550 5.1.1 " + words);  // folding is lossless
  std::string z = get(g[2], "diagnostic-code");
  EXPECT_EQ(z.size(), std::string("smtp; 550 ").size() + 2500 + 2);  // hard cuts add a space
  // Header folding keeps every header line short where it can.
  for (std::size_t pos = 0; pos < p.parts[1].body.size();) {
    std::size_t end = p.parts[1].body.find("\r\n", pos);
    std::string_view line(p.parts[1].body.data() + pos, end - pos);
    // Only a run without spaces may stay longer (a host name, the Z run).
    if (!line.empty() && line.substr(1).find(' ') != std::string_view::npos && line.find("ZZZ") == std::string_view::npos) {
      EXPECT_LE(line.size(), 78u) << line;
    }
    pos = end + 2;
  }
}

TEST(Dsn, ControlCharactersInRemoteTextCannotBreakTheReport) {
  Gen run;
  auto o = failed(0);
  o.diagnostic = "smtp; 550 5.1.1 bad\r\nX-Injected: yes\r\n\r\n--boundary\x01\xff";
  auto d = must(run.make(envelope(), {o}));
  Parsed p = parse(d.bytes);
  auto g = groups(p.parts[1].body);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(count(g[1], "x-injected"), 0u);
  EXPECT_EQ(get(g[1], "diagnostic-code"),
            "smtp; 550 5.1.1 bad  X-Injected: yes    --boundary ?");
  // A diagnostic without a type gets one (RFC 3464 §2.3.6).
  o.diagnostic = "mailbox full";
  o.status = "5.2.2";
  auto d2 = must(run.make(envelope(), {o}));
  EXPECT_EQ(get(groups(parse(d2.bytes).parts[1].body)[1], "diagnostic-code"),
            "X-Bridgehead; mailbox full");
}

TEST(Dsn, ChunkSizeDoesNotChangeTheOutput) {
  Gen a, b, c;
  auto e = envelope();
  auto one = must(a.make(e, {failed(0), delayed(1)}, kOriginal, options(), 1));
  auto big = must(b.make(e, {failed(0), delayed(1)}, kOriginal, options(), 1 << 16));
  EXPECT_EQ(one.bytes, big.bytes);
  e.ret = DsnRet::kHeaders;
  auto h1 = must(c.make(e, {failed(0)}, kOriginal, options(), 1));
  Gen d;
  auto h2 = must(d.make(e, {failed(0)}, kOriginal, options(), 3));
  EXPECT_EQ(h1.bytes, h2.bytes);
}

TEST(Dsn, InternationalAddressesUseGlobalTypes) {
  Gen run;
  auto e = envelope();
  e.smtputf8 = true;
  e.sender = "j\xc3\xb6rg@example.net";
  e.recipients[1].address = "\xc3\xbc" "ser@example.org";
  auto d = must(run.make(e, {failed(1)}, "Subject: gr\xc3\xbc\xc3\x9f" "e\r\n\r\nhi\r\n"));
  Parsed p = parse(d.bytes);
  EXPECT_EQ(get(p.parts[0].fields, "content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(get(p.parts[1].fields, "content-type"), "message/global-delivery-status");
  EXPECT_EQ(get(groups(p.parts[1].body)[1], "final-recipient"), "utf-8; \xc3\xbcser@example.org");
  EXPECT_EQ(get(p.parts[2].fields, "content-type"), "message/global");
  EXPECT_TRUE(d.info.envelope.smtputf8);
  EXPECT_EQ(d.info.envelope.recipients[0].address, e.sender);
}

// ---- errors ----------------------------------------------------------------------------

TEST(Dsn, InconsistentRequestsArePermanentErrors) {
  Gen run;
  auto expect_bad = [&](std::vector<DsnOutcome> o, DsnOptions opt = options()) {
    auto r = run.make(envelope(), std::move(o), kOriginal, opt);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().enhanced, "5.3.0");
    EXPECT_FALSE(r.error().transient());
  };
  expect_bad({failed(7)});
  expect_bad({failed(0, "4.1.1")});
  expect_bad({failed(0, "5.1")});
  expect_bad({failed(0, "5.1.1234")});
  expect_bad({failed(0, "5.1.1 ")});
  auto d = delayed(0);
  d.status = "5.4.1";
  expect_bad({d});
  auto s = success(0);
  s.will_retry_until = Clock::time_point{};
  expect_bad({s});
  auto m = failed(0);
  m.remote_mta = "mx.example\r\nX: y";
  expect_bad({m});
  DsnOptions no_host = options();
  no_host.reporting_mta = "";
  expect_bad({failed(0)}, no_host);
}

TEST(Dsn, ReadAndSinkErrorsAreReturnedAsIs) {
  struct Failing final : OriginalMessage {
    Result<void> read(const ChunkSink&) const override {
      return transient_error("4.3.0", "read failed");
    }
  } broken;
  ManualClock clock;
  FixedRandom random;
  std::vector<DsnOutcome> out{failed(0)};
  auto r = make_dsn(envelope(), out, broken, options(), clock, random);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().enhanced, "4.3.0");

  StringOriginalMessage msg(kOriginal);
  std::size_t calls = 0;
  auto w = write_dsn(envelope(), out, msg, options(), clock, random,
                     [&](std::string_view) -> Result<void> {
                       if (++calls == 5) {
                         return transient_error("4.3.1", "disk full");
                       }
                       return Ok{};
                     });
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().enhanced, "4.3.1");
  EXPECT_EQ(calls, 5u);  // nothing written after the first failure
}

TEST(DsnHelpers, DatesAndXtext) {
  EXPECT_EQ(rfc5322_date(Clock::time_point{}), "Thu, 1 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(rfc5322_date(Clock::time_point{std::chrono::seconds{951782400}}),
            "Tue, 29 Feb 2000 00:00:00 +0000");
  EXPECT_EQ(xtext_encode("a+b=c d\x7f\xc3"), "a+2Bb+3Dc+20d+7F+C3");
  EXPECT_EQ(xtext_encode("plain@example.org"), "plain@example.org");
  EXPECT_EQ(dsn_action_name(DsnAction::kExpanded), "expanded");
}

// ---- determinism -------------------------------------------------------------------------

std::string golden_path(const std::string& name) {
  return std::string(BH_QUEUE_GOLDEN_DIR) + "/" + name;
}

void check_golden(const std::string& name, const std::string& bytes) {
  const std::string path = golden_path(name);
  if (std::getenv("BH_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path, std::ios::binary) << bytes;
  }
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << "missing " << path << " (run with BH_UPDATE_GOLDEN=1 to write it)";
  std::string want((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes, want) << "differs from " << path;
}

TEST(DsnGolden, FailureIsByteExact) {
  Gen run;
  auto e = envelope();
  auto d = must(run.make(e, {failed(0), failed(1, "5.2.2")}));
  check_golden("dsn_failure.eml", d.bytes);
  Gen again;
  EXPECT_EQ(must(again.make(e, {failed(0), failed(1, "5.2.2")})).bytes, d.bytes);
}

TEST(DsnGolden, DelayIsByteExact) {
  Gen run;
  auto d = must(run.make(envelope(), {delayed(0), delayed(1)}));
  check_golden("dsn_delay.eml", d.bytes);
}

}  // namespace
}  // namespace bh::queue
