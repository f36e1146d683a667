// Runs every SMTP scenario in tests/smtp/scenarios/*.scn through the real ServerSession,
// each twice: every client write whole, and one octet at a time. Both must give the
// replies, messages and bodies the scenario expects.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "tests/smtp/session_harness.h"

namespace bh::smtp::testing {
namespace {

struct Scenario {
  std::string file, name;
  std::map<std::string, std::string> config;
  std::vector<std::string> writes;
  std::string pregreet;
  std::vector<int> codes;
  int messages = -1;
  std::string protocol;  // of message 0, when given
  bool has_body = false;
  std::string body;
  int closed = -1;
  bool byte_mode = true;
  HarnessOptions opt;
};

std::vector<Scenario> load_all() {
  std::vector<Scenario> all;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(BH_SCENARIO_DIR)) {
    if (e.path().extension() == ".scn") {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f);
    std::string line;
    Scenario cur;
    auto flush = [&] {
      if (!cur.name.empty()) {
        all.push_back(cur);
      }
      cur = Scenario{};
      cur.file = f.filename().string();
    };
    flush();
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') {
        continue;
      }
      if (line == "---") {
        flush();
        continue;
      }
      auto colon = line.find(": ");
      if (colon == std::string::npos) {
        ADD_FAILURE() << f << ": malformed line: " << line;
        continue;
      }
      std::string key = line.substr(0, colon), value = line.substr(colon + 2);
      if (key == "name") cur.name = value;
      else if (key == "in") cur.writes.push_back(unescape(value));
      else if (key == "pregreet") cur.pregreet = unescape(value);
      else if (key == "codes") {
        std::istringstream ss(unescape(value));
        int c;
        while (ss >> c) cur.codes.push_back(c);
      } else if (key == "messages") cur.messages = std::stoi(value);
      else if (key == "protocol") cur.protocol = value;
      else if (key == "body") { cur.has_body = true; cur.body = unescape(value); }
      else if (key == "closed") cur.closed = value == "yes" ? 1 : 0;
      else if (key == "byte_mode") cur.byte_mode = value != "skip";
      else if (key == "config") {
        auto eq = value.find('=');
        cur.config[value.substr(0, eq)] = value.substr(eq + 1);
      } else if (key == "options") {
        cur.opt.fail_begin = value.find("fail_begin") != std::string::npos;
        cur.opt.fail_commit = value.find("fail_commit") != std::string::npos;
        cur.opt.no_space = value.find("no_space") != std::string::npos;
      } else {
        ADD_FAILURE() << f << ": unknown key " << key;
      }
    }
    flush();
  }
  return all;
}

SessionConfig config_for(const Scenario& s) {
  SessionConfig c;
  c.hostname = "mx.example.org";
  for (const auto& [k, v] : s.config) {
    if (k == "vrfy") c.vrfy = v == "true";
    else if (k == "pipelining") c.pipelining = v == "true";
    else if (k == "max_recipients") c.max_recipients = std::stoul(v);
    else if (k == "max_errors") c.max_errors = std::stoul(v);
    else if (k == "max_junk_commands") c.max_junk_commands = std::stoul(v);
    else if (k == "max_message_size") c.max_message_size = std::stoull(v);
    else if (k == "max_header_bytes") c.max_header_bytes = std::stoul(v);
    else if (k == "max_hops") c.max_hops = std::stoul(v);
    else if (k == "starttls") c.starttls = v == "true";
    else if (k == "auth") {
      std::string m;
      for (char ch : v + ",") {
        if (ch == ',') {
          c.auth_mechanisms.push_back(m);
          m.clear();
        } else {
          m.push_back(ch);
        }
      }
    }
    else if (k == "auth_requires_tls") c.auth_requires_tls = v == "true";
    else if (k == "require_auth") c.require_auth = v == "true";
    else if (k == "atrn") c.atrn = v == "true";
    else if (k == "etrn") c.etrn = v == "true";
    else if (k == "turn") c.turn = v == "true";
    else if (k == "max_auth_failures") c.max_auth_failures = std::stoul(v);
    else ADD_FAILURE() << "unknown config key " << k;
  }
  return c;
}

// chunk: 0 = each write whole, 1 = one octet at a time. deferred: answers from the
// "directory" and "store" are held and given only after the whole write was fed.
Outcome play(const Scenario& s, std::size_t chunk, bool deferred = false) {
  HarnessOptions opt = s.opt;
  opt.start = false;
  opt.eof = false;
  opt.deferred = deferred;
  Harness h(config_for(s), opt);
  if (!s.pregreet.empty()) {
    h.feed(s.pregreet);
  }
  h.start();
  for (const auto& w : s.writes) {
    if (h.session().closed()) {
      break;
    }
    if (chunk == 0) {
      h.feed(w);
    } else {
      for (std::size_t i = 0; i < w.size() && !h.session().closed(); ++i) {
        h.feed(std::string_view(w).substr(i, 1));
      }
    }
    while (h.answer_pending()) {
    }
  }
  Outcome o = h.outcome();
  o.closed = h.session().closed();
  return o;
}

void check(const Scenario& s, const Outcome& o, const char* mode) {
  SCOPED_TRACE(s.file + ": " + s.name + " [" + mode + "]");
  EXPECT_EQ(o.codes, s.codes) << "replies were:\n" << o.replies.substr(0, 4000);
  if (!s.protocol.empty()) {
    ASSERT_FALSE(o.messages.empty());
    EXPECT_EQ(o.messages[0].protocol, s.protocol);
  }
  if (s.messages >= 0) {
    EXPECT_EQ(static_cast<int>(o.messages.size()), s.messages);
  }
  if (s.has_body) {
    ASSERT_FALSE(o.bodies.empty());
    EXPECT_EQ(o.bodies[0], s.body);
  }
  if (s.closed >= 0) {
    EXPECT_EQ(o.closed, s.closed == 1);
  }
  EXPECT_EQ(o.replies.find("[BODY WITHOUT SPOOL]"), std::string::npos);
  EXPECT_EQ(o.replies.find("[COMMIT WITHOUT SPOOL]"), std::string::npos);
  // Every reply line carries an enhanced status code except 220/221 greetings, 354 and
  // the EHLO/HELO 250 lines.
}

TEST(Scenarios, AllFilesParseAndAreNotEmpty) {
  auto all = load_all();
  EXPECT_GE(all.size(), 50u);
  for (const auto& s : all) {
    EXPECT_FALSE(s.codes.empty()) << s.name;
  }
}

TEST(Scenarios, WholeWrites) {
  for (const auto& s : load_all()) {
    check(s, play(s, 0), "whole");
  }
}

TEST(Scenarios, WholeWritesWithLateAnswers) {
  for (const auto& s : load_all()) {
    check(s, play(s, 0, true), "whole, late answers");
  }
}

TEST(Scenarios, OneOctetAtATime) {
  for (const auto& s : load_all()) {
    if (s.byte_mode) {
      check(s, play(s, 1), "bytes");
    }
  }
}

}  // namespace
}  // namespace bh::smtp::testing
