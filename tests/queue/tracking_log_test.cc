// TrackingLog: valid JSON for any bytes, whole lines under concurrency, rotation, search
// filters, damaged files; QueueTracker driven by a real QueueManager.

#include "queue/tracking_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "queue/queue_manager.h"
#include "tests/queue/queue_test_util.h"

namespace bh::queue {
namespace {

using nlohmann::json;
using testing::slurp;
using testing::TempDir;
namespace fs = std::filesystem;

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  std::istringstream in(slurp(path));
  for (std::string l; std::getline(in, l);) {
    out.push_back(l);
  }
  return out;
}

// A strict UTF-8 check (RFC 3629): what json::parse would also insist on.
bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) {
      return false;
    }
    for (std::size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) {
        return false;
      }
    }
    i += n;
  }
  return true;
}

TrackingEvent ev(TrackingEventType type, std::string qid, std::string rcpt, std::string sender = "s@example.net",
                 std::string msgid = "<m1@example.net>") {
  TrackingEvent e;
  e.event = type;
  e.queue_id = std::move(qid);
  e.recipient = std::move(rcpt);
  e.sender = std::move(sender);
  e.message_id = std::move(msgid);
  e.size = 42;
  return e;
}

struct Log {
  explicit Log(const std::string& dir, std::uint64_t max_bytes = 1 << 20, unsigned keep = 3)
      : log(TrackingLogOptions{dir, "node1", max_bytes, keep, 1000}, clock) {
    EXPECT_TRUE(log.open().ok());
  }
  ManualClock clock;
  TrackingLog log;
};

TEST(TrackingLog, TimeIsIso8601UtcWithMilliseconds) {
  Clock::time_point t{std::chrono::milliseconds(1'700'000'000'123)};
  EXPECT_EQ(iso8601_ms(t), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(parse_iso8601_ms("2023-11-14T22:13:20.123Z"), t);
  EXPECT_FALSE(parse_iso8601_ms("2023-11-14 22:13:20.123Z"));
  EXPECT_FALSE(parse_iso8601_ms("2023-13-14T22:13:20.123Z"));
  EXPECT_FALSE(parse_iso8601_ms(""));
}

TEST(TrackingLog, EveryLineIsValidJsonWhateverTheBytes) {
  TempDir t;
  Log l(t.path() + "/log");
  std::string hostile;
  for (int c = 0; c < 256; ++c) {
    hostile.push_back(static_cast<char>(c));
  }
  hostile += "\xc3";          // truncated sequence
  hostile += "\xed\xa0\x80";  // a UTF-16 surrogate in UTF-8: invalid
  hostile += "\xf4\x90\x80\x80";  // beyond U+10FFFF
  auto e = ev(TrackingEventType::kBounced, "Q1", hostile, hostile, hostile);
  e.reply = "550 5.1.1 \"quoted\" \\ back\nslash\r\nforged: line";
  e.next_hop = std::string("\0\0", 2);
  l.log.record(e);
  l.log.record(ev(TrackingEventType::kReceived, "Q2", "a@example.org"));
  auto lines = lines_of(l.log.path());
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& line : lines) {
    EXPECT_TRUE(valid_utf8(line));
    for (unsigned char c : line) {
      EXPECT_GE(c, 0x20) << "raw control character in a line";
    }
    json j = json::parse(line, nullptr, false);  // strict: throws nothing, flags invalid
    ASSERT_FALSE(j.is_discarded()) << line;
    EXPECT_EQ(j["node"], "node1");
  }
  auto back = parse_json_line(lines[0]);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->event, TrackingEventType::kBounced);
  EXPECT_EQ(back->reply, e.reply);             // valid text survives exactly
  EXPECT_EQ(back->next_hop, e.next_hop);
  EXPECT_EQ(back->recipient.substr(0, 0x7f), hostile.substr(0, 0x7f));
  EXPECT_EQ(back->time, l.clock.now());
  EXPECT_EQ(back->size, 42u);
  struct stat st {};
  ASSERT_EQ(::stat(l.log.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0027, 0u);  // no group write, nothing for others
}

TEST(TrackingLog, LongFieldsAreCutSoLinesStayReadable) {
  TempDir t;
  Log l(t.path());
  auto e = ev(TrackingEventType::kDeferred, "Q1", "r@example.org");
  e.reply = std::string(1 << 20, 'x');
  l.log.record(e);
  auto lines = lines_of(l.log.path());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_LT(lines[0].size(), kTrackingLineMax);
  auto r = search_tracking(t.path(), TrackingQuery{});
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].reply.size(), kTrackingFieldMax);
}

TEST(TrackingLog, ConcurrentWritersProduceOnlyWholeLines) {
  TempDir t;
  Log l(t.path(), 1ull << 40);
  constexpr int kThreads = 8, kEach = 500;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < kEach; ++k) {
        auto e = ev(TrackingEventType::kDelivered, "T" + std::to_string(i), "r" + std::to_string(k) + "@e");
        e.reply = std::string(static_cast<std::size_t>(100 + (k * 37) % 1500), static_cast<char>('a' + i));
        l.log.record(e);
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  auto lines = lines_of(l.log.path());
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(kThreads * kEach));
  std::map<std::string, int> per_thread;
  for (const auto& line : lines) {
    auto e = parse_json_line(line);
    ASSERT_TRUE(e) << line.substr(0, 200);
    char fill = static_cast<char>('a' + (e->queue_id[1] - '0'));
    EXPECT_EQ(e->reply, std::string(e->reply.size(), fill));  // no other thread's bytes inside
    ++per_thread[e->queue_id];
  }
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(per_thread["T" + std::to_string(i)], kEach);
  }
  EXPECT_EQ(l.log.counters().written, static_cast<std::uint64_t>(kThreads * kEach));
  EXPECT_EQ(l.log.counters().failures, 0u);
}

TEST(TrackingLog, RotatesBySizeAndKeepsNFiles) {
  TempDir t;
  Log l(t.path(), 2000, 2);
  for (int i = 0; i < 40; ++i) {
    l.log.record(ev(TrackingEventType::kReceived, "Q" + std::to_string(i), "r@example.org"));
    l.clock.advance(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(fs::exists(t.path() + "/tracking.jsonl"));
  EXPECT_TRUE(fs::exists(t.path() + "/tracking.jsonl.1"));
  EXPECT_TRUE(fs::exists(t.path() + "/tracking.jsonl.2"));
  EXPECT_FALSE(fs::exists(t.path() + "/tracking.jsonl.3"));
  EXPECT_GT(l.log.counters().rotations, 2u);
  for (const char* f : {"/tracking.jsonl", "/tracking.jsonl.1", "/tracking.jsonl.2"}) {
    EXPECT_LE(fs::file_size(t.path() + f), 2000u + 400u) << f;  // one line past the cap at most
  }
  // Search reads the rotated files oldest first: what survives is in order and ends
  // with the newest event.
  TrackingQuery q;
  q.limit = 1000;
  auto r = search_tracking(t.path(), q);
  EXPECT_EQ(r.files, 3u);
  ASSERT_FALSE(r.events.empty());
  EXPECT_EQ(r.events.back().queue_id, "Q39");
  for (std::size_t i = 1; i < r.events.size(); ++i) {
    EXPECT_LT(r.events[i - 1].time, r.events[i].time);
  }
}

TEST(TrackingLog, AnotherProcessRotatingIsFollowed) {
  TempDir t;
  Log a(t.path(), 1000, 3);
  Log b(t.path(), 1000, 3);
  for (int i = 0; i < 30; ++i) {
    a.log.record(ev(TrackingEventType::kReceived, "A" + std::to_string(i), "r@e"));
    b.log.record(ev(TrackingEventType::kReceived, "B" + std::to_string(i), "r@e"));
  }
  TrackingQuery q;
  q.limit = 1000;
  auto r = search_tracking(t.path(), q);
  EXPECT_EQ(r.skipped_lines, 0u);
  EXPECT_EQ(r.events.back().queue_id, "B29");
}

TEST(TrackingLog, ABufferedLogWritesWholeLinesAtFlushOrWhenFull) {
  TempDir t;
  ManualClock clock;
  TrackingLogOptions o{t.path() + "/log", "node1", 1 << 20, 3, 1000};
  o.buffer_bytes = 4096;
  TrackingLog log(o, clock);
  ASSERT_TRUE(log.open().ok());
  const std::string file = t.path() + "/log/tracking.jsonl";
  for (int i = 0; i < 3; ++i) {
    log.record(ev(TrackingEventType::kDelivered, "Q" + std::to_string(i), "a@example.org"));
  }
  EXPECT_EQ(slurp(file), "");  // held
  EXPECT_EQ(log.counters().written, 0u);
  log.flush();
  auto text = slurp(file);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3);
  EXPECT_EQ(log.counters().written, 3u);
  log.flush();  // nothing held: nothing written
  EXPECT_EQ(slurp(file), text);
  // Past buffer_bytes the lines go out without a flush, whole.
  for (int i = 0; i < 100; ++i) {
    log.record(ev(TrackingEventType::kDelivered, "R" + std::to_string(i), "b@example.org"));
  }
  auto more = slurp(file);
  EXPECT_GT(more.size(), text.size());
  EXPECT_EQ(more.back(), '\n');
  log.flush();
  more = slurp(file);
  EXPECT_EQ(std::count(more.begin(), more.end(), '\n'), 103);
}

TEST(TrackingLog, WriteFailuresAreCountedAndNeverThrow) {
  TempDir t;
  ManualClock clock;
  // The log directory is a file: nothing can be opened.
  testing::spit(t.path() + "/log", "in the way");
  TrackingLog log(TrackingLogOptions{t.path() + "/log", "n", 1 << 20, 2, 1000}, clock);
  EXPECT_FALSE(log.open().ok());
  for (int i = 0; i < 250; ++i) {
    log.record(ev(TrackingEventType::kReceived, "Q", "r@e"));
  }
  EXPECT_EQ(log.counters().failures, 250u);
  EXPECT_EQ(log.counters().written, 0u);
  // The obstacle goes: a later retry of the open succeeds.
  fs::remove(t.path() + "/log");
  for (int i = 0; i < 100; ++i) {
    log.record(ev(TrackingEventType::kReceived, "Q", "r@e"));
  }
  EXPECT_GE(log.counters().written, 1u);
}

class Search : public ::testing::Test {
 protected:
  void SetUp() override {
    Log l(t.path());
    auto add = [&](TrackingEvent e) {
      l.log.record(std::move(e));
      l.clock.advance(std::chrono::seconds(1));
    };
    add(ev(TrackingEventType::kReceived, "Q1", "Alice@Example.org", "S@Example.net", "<m1@x>"));
    add(ev(TrackingEventType::kReceived, "Q1", "bob@example.org", "S@Example.net", "<m1@x>"));
    add(ev(TrackingEventType::kDelivered, "Q1", "alice@example.org", "S@Example.net", "<m1@x>"));
    add(ev(TrackingEventType::kDeleted, "Q1", "", "S@Example.net", "<m1@x>"));  // message event
    add(ev(TrackingEventType::kReceived, "Q2", "carol@example.org", "", "m2@x"));
    add(ev(TrackingEventType::kBounced, "Q2", "carol@example.org", "", "m2@x"));
    path = l.log.path();
    start = Clock::time_point{std::chrono::seconds{1'700'000'000}};
  }
  std::vector<std::string> found(TrackingQuery q) {
    std::vector<std::string> out;
    for (const auto& e : search_tracking(t.path(), q).events) {
      out.push_back(e.queue_id + ":" + std::string(event_name(e.event)) + ":" + e.recipient);
    }
    return out;
  }
  TempDir t;
  std::string path;
  Clock::time_point start;
};

TEST_F(Search, ByRecipientIsCaseInsensitiveAndIncludesMessageEvents) {
  TrackingQuery q;
  q.recipient = "<ALICE@example.ORG>";
  EXPECT_EQ(found(q), (std::vector<std::string>{"Q1:received:Alice@Example.org", "Q1:delivered:alice@example.org",
                                                "Q1:deleted:"}));
}

TEST_F(Search, BySenderIncludingTheNullSender) {
  TrackingQuery q;
  q.sender = "s@example.NET";
  EXPECT_EQ(found(q).size(), 4u);
  q.sender = "<>";
  EXPECT_EQ(found(q), (std::vector<std::string>{"Q2:received:carol@example.org", "Q2:bounced:carol@example.org"}));
}

TEST_F(Search, ByMessageIdWithOrWithoutBrackets) {
  TrackingQuery q;
  q.message_id = "m1@x";
  EXPECT_EQ(found(q).size(), 4u);
  q.message_id = "<m2@x>";
  EXPECT_EQ(found(q).size(), 2u);
  q.message_id = "M2@x";  // exact: ids are case-sensitive
  EXPECT_TRUE(found(q).empty());
}

TEST_F(Search, ByQueueIdTimeAndLimit) {
  TrackingQuery q;
  q.queue_id = "Q2";
  EXPECT_EQ(found(q).size(), 2u);
  q = {};
  q.since = start + std::chrono::seconds(2);
  q.until = start + std::chrono::seconds(4);
  EXPECT_EQ(found(q), (std::vector<std::string>{"Q1:delivered:alice@example.org", "Q1:deleted:",
                                                "Q2:received:carol@example.org"}));
  q = {};
  q.limit = 2;
  auto r = search_tracking(t.path(), q);
  EXPECT_TRUE(r.truncated);
  ASSERT_EQ(r.events.size(), 2u);  // the newest two
  EXPECT_EQ(r.events[0].event, TrackingEventType::kReceived);
  EXPECT_EQ(r.events[1].event, TrackingEventType::kBounced);
}

TEST_F(Search, GarbageTooLongAndTruncatedLinesAreSkippedAndCounted) {
  std::string good = slurp(path);
  std::string damaged = "not json at all\n{\"event\":\"nonsense\",\"time\":\"2023-11-14T22:13:20.000Z\"}\n" +
                        std::string(kTrackingLineMax + 10, 'x') + "\n[1,2]\n\n" + good +
                        std::string("\xff\xfe\0garbage\n", 11) + good.substr(0, good.size() / 2 + 7);
  const std::string cut = good.substr(0, good.size() / 2 + 7);
  ASSERT_NE(cut.back(), '\n');
  const auto whole_in_cut = static_cast<std::size_t>(std::count(cut.begin(), cut.end(), '\n'));
  testing::spit(path, damaged);
  TrackingQuery q;
  q.limit = 100;
  auto r = search_tracking(t.path(), q);
  EXPECT_EQ(r.events.size(), 6u + whole_in_cut);  // every good line, the whole ones of the cut copy
  EXPECT_EQ(r.skipped_lines, 6u);        // 4 bad + garbage + the truncated last line
}

TEST(SearchTracking, MissingDirectoryIsEmpty) {
  auto r = search_tracking("/nonexistent/bh-track", TrackingQuery{});
  EXPECT_TRUE(r.events.empty());
  EXPECT_EQ(r.files, 0u);
}

// QueueTracker between a real QueueManager and a TrackingLog.
TEST(QueueTracker, RecordsReceivedDeliveredAndBounced) {
  TempDir t;
  testing::Store s(t.path() + "/q");
  MaildirDeliverer md(t.path() + "/mb", "h");
  QueueManager qm(s.store, md, s.clock);
  TrackingLog log(TrackingLogOptions{t.path() + "/log", "node1", 1 << 20, 2, 1000}, s.clock);
  ASSERT_TRUE(log.open().ok());
  QueueTracker tracker(log);
  qm.set_events(&tracker);
  Envelope env = testing::sample(0);
  Recipient a;
  a.address = "alice@example.org";
  a.mailbox = "alice";
  Recipient far;
  far.address = "far@remote.example";
  env.recipients = {a, far};
  // Big enough that the body is not kept in memory: the id is read from the file.
  std::string body = "Received: from x\r\nMessage-Id:\r\n  <big@example.net>\r\n\r\n" + std::string(100000, 'b');
  auto id = s.put(body, env).value();
  auto small = s.put("message-id: <small@example.net>\r\n\r\nx\r\n", env).value();
  qm.start({});
  qm.enqueue(id);
  qm.enqueue(small);
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (qm.counters().delivered_messages < 2 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  qm.stop();
  TrackingQuery q;
  q.queue_id = id;
  auto r = search_tracking(t.path() + "/log", q);
  std::vector<std::string> got;
  for (const auto& e : r.events) {
    got.push_back(std::string(event_name(e.event)) + " " + e.recipient + " " + e.next_hop);
    EXPECT_EQ(e.message_id, "<big@example.net>");
    EXPECT_EQ(e.sender, "s@example.net");
    EXPECT_EQ(e.client_address, "192.0.2.1");
    EXPECT_EQ(e.size, body.size());
    EXPECT_EQ(e.node, "node1");
  }
  EXPECT_EQ(got, (std::vector<std::string>{"received alice@example.org ", "received far@remote.example ",
                                           "bounced far@remote.example ",
                                           "delivered alice@example.org maildir:alice"}));
  ASSERT_EQ(r.events.size(), 4u);
  EXPECT_EQ(r.events[2].reply.substr(0, 5), "5.4.4");
  q = {};
  q.message_id = "small@example.net";
  EXPECT_EQ(search_tracking(t.path() + "/log", q).events.size(), 4u);
}

}  // namespace
}  // namespace bh::queue
