#pragma once
// Drives a real ServerSession the way the Asio adapter does, with in-memory answers:
// mailboxes alice and bob at example.org are local, "down@example.org" makes the
// directory fail (transient), everything else is unknown. Used by the unit tests and
// the fuzz targets.

#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "smtp/server_session.h"

namespace bh::smtp::testing {

struct Outcome {
  std::string replies;                 // everything sent, concatenated
  std::vector<int> codes;              // the code of each final reply line
  std::vector<queue::Envelope> messages;
  std::vector<std::string> bodies;     // committed bodies (without the Received header)
  bool closed = false;
  bool closed_after_quit = false;  // CloseConnection::after_quit
  int timers = 0;
  int tls_handshakes = 0;
  int auth_exchanges = 0, auth_aborts = 0;
  std::vector<std::string> turned_for;  // TurnAround's domains
  std::vector<std::string> link_states;  // LinkStateReceived payloads
  bool awaiting_left = false;
};

struct HarnessOptions {
  bool fail_begin = false, fail_commit = false, no_space = false, fail_tls = false;
  bool start = true;           // call start() before the input
  bool eof = true;             // on_eof() after the input
  // Answers to CheckMail/LookupRecipient/BeginMessage/CommitMessage are held until
  // answer_pending(), as when the directory or store answers from another thread.
  bool deferred = false;
  // The link-state engine's answer to every X-LINK2STATE payload (none: a plain 250).
  std::optional<std::string> link_state_reply;
};

class Harness {
 public:
  explicit Harness(SessionConfig cfg = {}, HarnessOptions opt = {});
  // Feeds `input` in pieces of `chunk` octets (0 = all at once).
  Outcome run(std::string_view input, std::size_t chunk = 0);
  ServerSession& session() { return session_; }
  Outcome& outcome() { return out_; }
  void feed(std::string_view bytes) { perform(session_.on_bytes(bytes)); }
  void timeout() { perform(session_.on_timeout()); }
  void start() { perform(session_.start()); }
  // Deferred mode: gives the held answer, if any. False if none was held.
  bool answer_pending();
  // Feeds `input` in pieces of `piece` octets until the session closes; with
  // `late_answers`, a held answer is given only after every second piece (input arrives
  // while an answer is outstanding), and the rest at the end. For the fuzz targets.
  void feed_pieces(std::string_view input, std::size_t piece, bool late_answers);

 private:
  void perform(Actions actions);
  AuthVerdict auth_step(const AuthStep& step);
  ManualClock clock_;
  std::string auth_mech_, auth_user_;
  HarnessOptions opt_;
  ServerSession session_;
  Outcome out_;
  std::vector<Action> pending_;
  bool answering_ = false;
  std::string commit_spool_;
  std::string spool_;
  bool spooling_ = false;
  int next_id_ = 1;
};

// Decodes \r \n \t \\ \xHH and {N*c} (N copies of c, e.g. {600*A}) used in scenario files.
std::string unescape(std::string_view s);

}  // namespace bh::smtp::testing
