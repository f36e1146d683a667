// ServerSession: see server_session.h for the contract.
//
// Map of this file: Impl (state) -> process() (the input loop: command lines, DATA,
// BDAT chunks) -> one check_/do_ pair per verb (validate, then act; STYLE.md principle
// 2) -> the on_*_result() continuations -> reply helpers and limits.

#include "smtp/server_session.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <optional>

#include "common/address.h"
#include "common/base64.h"
#include "common/date.h"
#include "common/text.h"
#include "queue/hop_count.h"
#include "smtp/data_reader.h"
#include "smtp/esmtp_params.h"
#include "smtp/line_reader.h"
#include "smtp/link2state.h"
#include "smtp/xexch50.h"
#include "smtp/xexch50_props.h"

namespace bh::smtp {

namespace {

constexpr std::size_t kMaxDiscardedLine = 1u << 20;  // hostile #35: then 421
constexpr std::size_t kMaxEnvid = 100, kMaxOrcpt = 500;
constexpr std::size_t kMaxLink2StateLine = 1024;

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(s[i])) != prefix[i]) {
      return false;
    }
  }
  return true;
}


// RFC 5321 §4.1.4: EHLO/HELO take a Domain or an address literal. '_' is tolerated in
// labels because Windows clients send NetBIOS-style names; octets are checked strictly.
// The basic code for a store/queue verdict (RFC 3463 class + subject): insufficient
// storage is 452, a size refusal 552, other transient faults 451, other permanent 554.
int store_code(const Error& e) {
  if (e.reply_code != 0) {
    return e.reply_code;  // chosen by an event sink
  }
  if (e.transient()) {
    return e.enhanced == "4.3.1" ? 452 : 451;
  }
  return e.enhanced == "5.3.4" ? 552 : 554;
}

bool valid_helo_name(std::string_view arg) {
  if (arg.front() == '[') {
    return is_valid_address_literal(arg);
  }
  std::string d(arg);
  if (d.size() > 1 && d.back() == '.') {
    d.pop_back();
  }
  std::replace(d.begin(), d.end(), '_', 'x');
  return is_valid_domain(d);
}

}  // namespace

struct ServerSession::Impl {
  enum class Mode { kCommand, kData, kBdat, kXexch50 };

  SessionConfig cfg;
  PeerInfo peer;
  const Clock& clock;

  // Session state.
  bool started = false, pregreet = false, closed = false;
  bool greeted = false, esmtp = false, tls_active = false;
  std::string helo;
  std::string hook_verb = "CONNECT";  // the command protocol sinks see replies for
  Mode mode = Mode::kCommand;
  Awaiting awaiting = Awaiting::kNothing;
  LineReader in;  // command lines, and body octets that arrived behind a command
  SessionCounters counters;

  // Transaction state (RFC 5321 §3.3): reset by RSET, EHLO, HELO and at its end.
  bool in_mail = false;
  queue::Envelope env;
  bool data_used = false, bdat_used = false, spooling = false;
  std::string queue_id;
  std::optional<DataReader> data;
  std::optional<queue::ReceivedCounter> hops;  // the client's Received fields
  std::uint64_t bdat_remaining = 0, bdat_chunk = 0, body_bytes = 0;
  bool bdat_last = false, bdat_discard = false;
  int bdat_error_code = 0;          // the reply for a drained chunk, sent after draining
  std::optional<Error> bdat_error;  // its enhanced code and text
  // Waiting for an answer.
  queue::Recipient pending_rcpt;
  std::string pending_sender;
  bool pending_vrfy = false;

  // AUTH / X-EXPS (RFC 4954): who logged in, and the exchange in progress.
  std::string auth_user;
  bool peer_rights = false;
  bool auth_exchange = false;  // the next line is a SASL response, not a command
  // XEXCH50 (once per transaction) and X-LINK2STATE, peers only.
  bool xexch50_done = false;
  std::uint64_t xexch50_remaining = 0;
  std::uint32_t xexch50_count = 0;
  std::string xexch50_buf;
  std::optional<Link2StateReceiver> l2s;
  std::size_t auth_failures = 0;

  Actions out;

  Impl(SessionConfig c, PeerInfo p, const Clock& clk)
      : cfg(std::move(c)),
        peer(std::move(p)),
        clock(clk),
        tls_active(peer.tls),
        // AUTH lines may be longer than commands (RFC 4954 §4); other verbs are held to
        // max_command_line in next_command_line().
        in(cfg.auth_mechanisms.empty() ? cfg.max_command_line
                                       : std::max(cfg.max_command_line, cfg.max_auth_line),
           kMaxDiscardedLine) {}

  // ---- reply helpers ----
  void send(std::string_view line) {
    if (!out.empty()) {
      if (auto* s = std::get_if<SendReply>(&out.back())) {
        s->bytes.append(line).append("\r\n");
        return;
      }
    }
    std::string b(line);
    b.append("\r\n");
    out.emplace_back(SendReply{std::move(b)});
  }
  void reply(int code, std::string_view enhanced, std::string_view text) {
    std::string l = std::to_string(code);
    l.push_back(' ');
    if (cfg.enhancedstatuscodes && !enhanced.empty()) {
      l.append(enhanced).push_back(' ');
    }
    l.append(text);
    if (cfg.protocol_hooks && !hook_verb.empty()) {
      // A protocol sink may rewrite the reply, keeping its class (the state already changed).
      if (auto r = cfg.protocol_hooks->on_reply(peer, hook_verb, l); r && sink_line_ok(*r) && (*r)[0] == l[0]) {
        l = *r;
      }
    }
    send(l);
  }
  // A reply line from a sink: "NNN text" with a 2xx-5xx code, printable, at most 512 octets.
  static bool sink_line_ok(std::string_view l) {
    if (l.size() < 4 || l.size() > 512 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' ||
        l[2] < '0' || l[2] > '9' || l[3] != ' ') {
      return false;
    }
    for (char c : l) {
      if (static_cast<unsigned char>(c) < 0x20) {
        return false;
      }
    }
    return true;
  }
  // A reply to a client mistake: counted, and the session ends past max_errors.
  void error_reply(int code, std::string_view enhanced, std::string_view text) {
    reply(code, enhanced, text);
    ++counters.errors;
    if (counters.errors > cfg.max_errors) {
      reply(421, "4.7.0", cfg.hostname + " Error: too many errors");
      close();
    }
  }
  void error_reply(const Error& e, int transient_code, int permanent_code) {
    error_reply(e.transient() ? transient_code : permanent_code, e.enhanced, e.message);
  }
  void junk() {
    ++counters.junk;
    if (counters.junk > cfg.max_junk_commands) {
      reply(421, "4.7.0", cfg.hostname + " Error: too many junk commands");
      close();
    }
  }
  void close(bool after_quit = false) {
    if (closed) {
      return;
    }
    if (spooling) {
      out.emplace_back(AbortMessage{});
      spooling = false;
    }
    closed = true;
    out.emplace_back(CloseConnection{after_quit});
  }
  void arm(std::chrono::milliseconds d) {
    if (!closed) {
      out.emplace_back(ArmTimer{d});
    }
  }
  void arm_for_state() {
    if (mode == Mode::kCommand) {
      arm(in_mail ? (env.recipients.empty() ? cfg.mail_timeout : cfg.rcpt_timeout)
                  : cfg.greeting_timeout);
    } else {
      arm(cfg.data_block_timeout);
    }
  }

  void reset_transaction() {
    if (spooling) {
      out.emplace_back(AbortMessage{});
      spooling = false;
    }
    in_mail = false;
    env = queue::Envelope{};
    data_used = bdat_used = false;
    queue_id.clear();
    data.reset();
    hops.reset();
    bdat_remaining = bdat_chunk = body_bytes = 0;
    bdat_last = bdat_discard = false;
    bdat_error_code = 0;
    bdat_error.reset();
    xexch50_done = false;
    xexch50_remaining = 0;
    xexch50_buf.clear();
    mode = Mode::kCommand;
  }

  Actions take() {
    Actions r = std::move(out);
    out.clear();
    return r;
  }

  // ---- the input loop ----
  void process() {
    while (!closed && awaiting == Awaiting::kNothing) {
      if (mode == Mode::kData) {
        if (in.buffered() == 0) {
          return;
        }
        std::string body;
        auto step = data->feed(in.peek(), body);
        in.consume(step.consumed);
        body_bytes = data->body_size();
        if (!body.empty() && spooling) {
          count_hops(body);
          out.emplace_back(BodyData{std::move(body)});
        }
        if (step.done) {
          finish_data();
          continue;
        }
        if (step.lines > 0) {
          arm(cfg.data_block_timeout);  // per line, not per read (RFC 5321 §4.5.3.2.5)
        }
        return;
      }
      if (mode == Mode::kXexch50) {
        if (xexch50_remaining > 0) {
          if (in.buffered() == 0) {
            return;
          }
          std::size_t n = static_cast<std::size_t>(
              std::min<std::uint64_t>(xexch50_remaining, in.buffered()));
          xexch50_buf.append(in.peek().substr(0, n));  // capped by the argument check
          xexch50_remaining -= n;
          in.consume(n);
          arm(cfg.data_block_timeout);
          if (xexch50_remaining > 0) {
            return;
          }
        }
        finish_xexch50();
        continue;
      }
      if (mode == Mode::kBdat) {
        if (bdat_remaining > 0) {
          if (in.buffered() == 0) {
            return;
          }
          std::size_t n = static_cast<std::size_t>(
              std::min<std::uint64_t>(bdat_remaining, in.buffered()));
          if (!bdat_discard) {
            // Binary, no unstuffing (RFC 3030 §2); the size was checked against the
            // cap before the first octet (do_bdat), so this never overshoots it.
            if (spooling) {
              count_hops(in.peek().substr(0, n));
              out.emplace_back(BodyData{std::string(in.peek().substr(0, n))});
            }
            body_bytes += n;
          }
          bdat_remaining -= n;
          in.consume(n);
          arm(cfg.data_block_timeout);
          if (bdat_remaining > 0) {
            return;
          }
        }
        finish_bdat_chunk();
        continue;
      }
      if (!next_command_line()) {
        return;
      }
    }
  }

  // Finds one CRLF-terminated command line and handles it. False: need more input.
  bool next_command_line() {
    auto next = in.next();
    switch (next.kind) {
      case LineReader::Kind::kNeedMore:
        return false;
      case LineReader::Kind::kOverflow:
        if (auth_exchange) {
          end_exchange();
        }
        ++counters.lines_too_long;
        error_reply(500, "5.5.2", "Error: line too long");
        if (!closed) {
          reply(421, "4.7.0", cfg.hostname + " Error: line too long, closing");
          close();
        }
        return false;
      case LineReader::Kind::kTooLong:
        if (auth_exchange) {
          end_exchange();  // a response over 12288 octets ends the exchange (hostile #43)
        }
        ++counters.lines_too_long;
        error_reply(500, "5.5.2", "Error: line too long");
        arm_for_state();
        return true;
      case LineReader::Kind::kLine:
        break;
    }
    if (auth_exchange) {
      auth_response(next.line);
      return true;
    }
    if (next.line.size() + 2 > line_limit(next.line)) {
      // The reader admits AUTH-sized lines; every other command keeps its own limit.
      ++counters.lines_too_long;
      error_reply(500, "5.5.2", "Error: line too long");
      arm_for_state();
      return true;
    }
    ++counters.commands;
    if (greeted && !pipelining() && in.buffered() > 0) {
      // RFC 2920 §3: without PIPELINING a client waits for each reply, so more input
      // behind a command is a synchronization error (hostile #8); nothing is executed.
      sync_error();
      return false;
    }
    handle(next.line);
    if (awaiting == Awaiting::kNothing && mode == Mode::kCommand) {
      arm_for_state();
    }
    return true;
  }

  void sync_error() {
    ++counters.pipelining_violations;
    reply(554, "5.5.0", "Error: SMTP protocol synchronization");
    close();
  }

  // ---- verbs ----
  void handle(std::string_view line) {
    std::size_t sp = line.find(' ');
    std::string verb = ascii_upper(line.substr(0, sp));
    std::string_view arg = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
    if (line.find('\n') != std::string_view::npos) {
      ++counters.bare_lf;
    }
    for (char ch : line) {
      auto c = static_cast<unsigned char>(ch);
      // Controls (NUL, bare CR/LF inside the line) or 8-bit octets in a command
      // (hostile #7, #34): one malformed command, never split.
      if (c < 32 || c == 127 || (c >= 0x80 && !(cfg.smtputf8 && esmtp && verb != "EHLO" && verb != "HELO"))) {
        if (verb == "MAIL" || verb == "RCPT" || verb == "HELO" || verb == "EHLO" ||
            verb == "VRFY") {
          error_reply(501, "5.5.2", "Syntax error: invalid character in command");
        } else {
          error_reply(500, "5.5.2", "Error: command unrecognized");
        }
        return;
      }
    }
    if (cfg.protocol_hooks) {
      // BDAT is never answered by a sink: its chunk octets would then be read as commands.
      hook_verb = verb;
      if (auto r = verb == "BDAT" ? std::nullopt : cfg.protocol_hooks->on_command(peer, verb, arg);
          r && sink_line_ok(*r) && ((*r)[0] == '4' || (*r)[0] == '5')) {
        send(*r);
        if (r->compare(0, 3, "421") == 0) {
          close();
        }
        return;
      }
    }
    if (verb == "EHLO" || verb == "HELO") {
      do_helo(verb == "EHLO", arg);
    } else if (verb == "MAIL") {
      do_mail(arg);
    } else if (verb == "RCPT") {
      do_rcpt(arg);
    } else if (verb == "DATA") {
      do_data(arg);
    } else if (verb == "BDAT" && cfg.chunking && esmtp) {
      do_bdat(arg);
    } else if (verb == "RSET") {
      if (!arg.empty()) {
        error_reply(501, "5.5.4", "Syntax: RSET");
        return;
      }
      reset_transaction();
      reply(250, "2.0.0", "Ok");
      junk();
    } else if (verb == "NOOP") {
      reply(250, "2.0.0", "Ok");
      junk();
    } else if (verb == "QUIT") {
      reply(221, "2.0.0", "Bye");
      close(/*after_quit=*/in.buffered() == 0);
    } else if (verb == "HELP") {
      reply(214, "2.0.0",
            "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY; see RFC 5321");
      junk();
    } else if (verb == "VRFY") {
      do_vrfy(arg);
    } else if (verb == "EXPN") {
      error_reply(502, "5.5.1", "EXPN command disabled");
      junk();
    } else if (verb == "STARTTLS" && cfg.starttls) {
      do_starttls(arg);
    } else if ((verb == "AUTH" || verb == "X-EXPS") && !cfg.auth_mechanisms.empty()) {
      do_auth(verb, arg);
    } else if (verb == "ETRN" && cfg.etrn) {
      do_etrn(arg);
    } else if ((verb == "ATRN" && cfg.atrn) || (verb == "TURN" && cfg.turn)) {
      do_atrn(verb, arg);
    } else if (verb == "XEXCH50" && peer_rights) {
      do_xexch50(arg);
    } else if (verb == "X-LINK2STATE" && peer_rights) {
      do_link2state(arg);
    } else if ((verb == "XEXCH50" || verb == "X-LINK2STATE") && !cfg.auth_mechanisms.empty() &&
               !peer_rights) {
      // Only the organization's servers (DESIGN.md §4.1; hostile #21, #23).
      if (auth_user.empty()) {
        error_reply(530, "5.7.0", "Authentication required");
      } else {
        error_reply(504, "5.7.1", "Not authorized: not a server of this organization");
      }
    } else if (verb == "STARTTLS" || verb == "AUTH" || verb == "TURN" || verb == "ATRN" ||
               verb == "ETRN" || verb == "XEXCH50" || verb == "X-EXPS" ||
               verb == "X-LINK2STATE") {
      error_reply(502, "5.5.1", "Command not implemented");
      junk();
    } else {
      error_reply(500, "5.5.2", "Error: command not recognized");
      junk();
    }
  }

  void do_helo(bool ehlo, std::string_view arg) {
    while (!arg.empty() && arg.back() == ' ') {
      arg.remove_suffix(1);
    }
    if (arg.empty()) {
      error_reply(501, "5.5.4", ehlo ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
      return;
    }
    if (arg.size() > 255) {
      error_reply(501, "5.5.2", "Syntax error: hostname too long");
      return;
    }
    if (!valid_helo_name(arg)) {
      error_reply(501, "5.5.2", "Syntax error: invalid hostname");
      return;
    }
    reset_transaction();
    greeted = true;
    esmtp = ehlo;
    helo = std::string(arg);
    if (!ehlo) {
      reply(250, "", cfg.hostname);
      return;
    }
    std::vector<std::string> ext;
    ext.push_back(cfg.hostname);
    if (cfg.pipelining) {
      ext.emplace_back("PIPELINING");
    }
    if (cfg.size) {
      ext.push_back("SIZE " + std::to_string(cfg.max_message_size));
    }
    if (cfg.vrfy) {
      ext.emplace_back("VRFY");
    }
    if (cfg.eightbitmime) {
      ext.emplace_back("8BITMIME");
    }
    if (cfg.binarymime && cfg.chunking) {
      ext.emplace_back("BINARYMIME");
    }
    if (cfg.chunking) {
      ext.emplace_back("CHUNKING");
    }
    if (cfg.dsn) {
      ext.emplace_back("DSN");
    }
    if (cfg.enhancedstatuscodes) {
      ext.emplace_back("ENHANCEDSTATUSCODES");
    }
    if (cfg.smtputf8) {
      ext.emplace_back("SMTPUTF8");
    }
    if (cfg.starttls && !tls_active) {
      ext.emplace_back("STARTTLS");
    }
    if (auth_user.empty()) {
      std::string mechs, xmechs;
      for (const auto& m : cfg.auth_mechanisms) {
        if (mechanism_allowed_now(m)) {
          mechs += " " + m;
        }
        if (tls_active && cfg.x_exps && (m == "GSSAPI" || m == "LOGIN")) {
          xmechs += " " + m;
        }
      }
      if (!mechs.empty()) {
        ext.push_back("AUTH" + mechs);
      }
      if (!xmechs.empty()) {
        ext.push_back("X-EXPS" + xmechs);
        if (xmechs.find("LOGIN") != std::string::npos) {
          ext.emplace_back("X-EXPS=LOGIN");  // the form Exchange 5.5 looked for
        }
      }
    }
    if (cfg.etrn) {
      ext.emplace_back("ETRN");
    }
    if (cfg.atrn) {
      ext.emplace_back("ATRN");  // RFC 2645 §4; the verb itself needs AUTH
    }
    if (peer_rights) {
      ext.emplace_back("XEXCH50");       // after X-EXPS the peer says EHLO again
      ext.emplace_back("X-LINK2STATE");
    }
    if (cfg.turn) {
      ext.emplace_back("TURN");
    }
    ext.emplace_back("HELP");
    for (std::size_t i = 0; i < ext.size(); ++i) {
      send("250" + std::string(i + 1 == ext.size() ? " " : "-") + ext[i]);
    }
  }

  // RFC 3207 4: not inside a transaction, no argument, once per connection.
  void do_starttls(std::string_view arg) {
    if (tls_active) {
      return error_reply(503, "5.5.1", "TLS already active");
    }
    if (!arg.empty()) {
      return error_reply(501, "5.5.4", "Syntax: STARTTLS");
    }
    if (in_mail) {
      return error_reply(503, "5.5.1", "Error: MAIL transaction in progress");
    }
    reply(220, "2.0.0", "Ready to start TLS");
    // Anything the client pipelined behind STARTTLS was sent in clear text and may be an
    // injection (CVE-2011-0411 class): it is dropped, never executed after the handshake.
    if (in.buffered() > 0) {
      ++counters.pipelining_violations;
      in.consume(in.buffered());
    }
    awaiting = Awaiting::kTls;
    out.emplace_back(BeginTls{});
  }

  bool pipelining() const { return esmtp && cfg.pipelining; }

  // ---- AUTH and X-EXPS (RFC 4954; DESIGN.md §4.1) ----
  // The longest line (CRLF included) a command may have: AUTH lines 12288 octets (RFC
  // 4954 §4), X-LINK2STATE 1024 (DESIGN.md §4.1), everything else max_command_line.
  std::size_t line_limit(std::string_view line) const {
    if (starts_with_ci(line, "AUTH ") || starts_with_ci(line, "X-EXPS ")) {
      return std::max(cfg.max_command_line, cfg.max_auth_line);
    }
    if (starts_with_ci(line, "X-LINK2STATE ")) {
      return std::max<std::size_t>(cfg.max_command_line, kMaxLink2StateLine);
    }
    return cfg.max_command_line;
  }
  static bool sends_password(std::string_view mech) { return mech == "PLAIN" || mech == "LOGIN"; }
  bool mechanism_allowed_now(std::string_view mech) const {
    return tls_active || !cfg.auth_requires_tls || !sends_password(mech);
  }

  void do_auth(const std::string& verb, std::string_view arg) {
    bool xexps = verb == "X-EXPS";
    if (!greeted || !esmtp) {
      return error_reply(503, "5.5.1", "Error: send EHLO first");
    }
    if (!auth_user.empty()) {
      return error_reply(503, "5.5.1", "Error: already authenticated");
    }
    if (in_mail) {
      return error_reply(503, "5.5.1", "Error: MAIL transaction in progress");
    }
    if (xexps && (!tls_active || !cfg.x_exps)) {
      // Peer authentication happens only inside TLS (hostile #25).
      return error_reply(530, "5.7.0", "Must issue a STARTTLS command first");
    }
    std::size_t sp = arg.find(' ');
    std::string mech = ascii_upper(arg.substr(0, sp));
    std::optional<std::string_view> initial;
    if (sp != std::string_view::npos) {
      initial = arg.substr(sp + 1);
    }
    bool known = std::find(cfg.auth_mechanisms.begin(), cfg.auth_mechanisms.end(), mech) !=
                 cfg.auth_mechanisms.end();
    if (mech.empty() || mech.size() > 20) {
      return error_reply(501, "5.5.4", "Syntax: " + verb + " mechanism [initial-response]");
    }
    if (!known || (xexps && mech != "GSSAPI" && mech != "LOGIN")) {
      return error_reply(504, "5.5.4", "Unrecognized authentication type");
    }
    if (!mechanism_allowed_now(mech)) {
      // The credentials are never looked at (hostile #42).
      return error_reply(538, "5.7.11", "Encryption required for requested authentication mechanism");
    }
    AuthStep step{true, verb, mech, std::nullopt};
    if (initial) {
      if (*initial == "=") {
        step.response = std::string();  // RFC 4954 §4: an empty initial response
      } else {
        auto decoded = base64_decode(*initial);
        if (!decoded.ok()) {
          return error_reply(501, "5.5.2", "Cannot decode the initial response");
        }
        step.response = std::move(decoded.bytes);
      }
    }
    auth_exchange = true;
    awaiting = Awaiting::kAuth;
    out.emplace_back(std::move(step));
  }

  // A line while an exchange runs: the client's answer to our 334.
  void auth_response(std::string_view line) {
    if (line == "*") {
      end_exchange();
      return error_reply(501, "5.0.0", "Authentication cancelled");
    }
    auto decoded = base64_decode(line);
    if (!decoded.ok()) {
      end_exchange();
      return error_reply(501, "5.5.2", "Cannot decode the response");
    }
    awaiting = Awaiting::kAuth;
    out.emplace_back(AuthStep{false, {}, {}, std::move(decoded.bytes)});
  }

  // ---- XEXCH50 and X-LINK2STATE (DESIGN.md §4.1), from peer nodes only ----
  // "XEXCH50 <octets> <recipients+1>" after the last RCPT, before DATA/BDAT, once per
  // transaction; then exactly <octets> raw bytes after our 354.
  void do_xexch50(std::string_view arg) {
    if (!in_mail || env.recipients.empty() || data_used || bdat_used) {
      return error_reply(503, "5.5.1", "XEXCH50 only after RCPT and before DATA");
    }
    if (xexch50_done) {
      return error_reply(503, "5.5.1", "XEXCH50 only once per transaction");
    }
    Xexch50Limits lim;
    lim.max_octets = cfg.max_xexch50;
    lim.max_recipients = static_cast<std::uint32_t>(cfg.max_recipients);
    lim.expected_count = static_cast<std::uint32_t>(env.recipients.size() + 1);
    auto r = parse_xexch50_args(arg, lim);
    if (!r.ok()) {
      // Nothing is read after a refused command (hostile #22): the bytes that follow
      // are commands again.
      return error_reply(r.reply_code(), r.enhanced(),
                         r.reply_code() == 552 ? "XEXCH50 blob too large" : "Syntax: XEXCH50 <octets> <count>");
    }
    xexch50_done = true;
    xexch50_remaining = r.args.octets;
    xexch50_count = r.args.count;
    xexch50_buf.clear();
    reply(354, "", "Send binary data");
    mode = Mode::kXexch50;
    arm(cfg.data_block_timeout);
  }

  void finish_xexch50() {
    mode = Mode::kCommand;
    Xexch50BlobLimits lim;
    lim.max_subblobs = cfg.max_recipients + 1;
    lim.expected_subblobs = xexch50_count;
    auto b = parse_xexch50_blob(xexch50_buf, lim);
    if (!b.ok()) {
      xexch50_buf.clear();
      return error_reply(500, "5.5.2", "Error processing XEXCH50 command");
    }
    auto props = decode_xexch50_props(xexch50_buf);
    if (!props.ok()) {
      xexch50_buf.clear();
      return error_reply(500, "5.5.2", "Error processing XEXCH50 command");
    }
    if (props->hops.size() >= kMaxHops) {
      // Round and round: refuse the transaction, for good.
      reset_transaction();
      return error_reply(554, "5.4.6",
                         "Routing loop detected: too many hops (" + std::to_string(props->hops.size()) + ")");
    }
    if (!cfg.node_id.empty() && passed_through(*props, cfg.node_id)) {
      // Back here: the sender's routes and ours disagree for now (a connector just came
      // back, a table not yet everywhere). Not now, and not for good: the sender keeps
      // it and routes it again later; the hop cap above ends a loop that never settles.
      reset_transaction();
      return error_reply(451, "4.4.6", "Routing loop detected: it already passed through " + cfg.node_id +
                                           "; try again later");
    }
    // From a peer:
    //  - a recipient on its way to another node (its home server, or a group's expansion
    //    server) goes on there, uncategorized here: only that node categorizes it;
    //  - one it already expanded or redirected is not categorized here again (a mailbox
    //    with a forward keeps its mailbox; a group has none and is kept).
    for (std::size_t i = 0; i < props->recipients.size() && i < env.recipients.size(); ++i) {
      auto& r = env.recipients[i];
      const auto& pr = props->recipients[i];
      if (!pr.home_server.empty() && !cfg.node_id.empty() && r.mailbox.empty() &&
          ascii_lower(pr.home_server) != ascii_lower(cfg.node_id)) {
        r.home_server = pr.home_server;
        r.categorize = false;
      } else if (pr.expanded && (!r.mailbox.empty() || !r.home_server.empty())) {
        r.categorize = false;
      }
    }
    env.xexch50 = std::move(xexch50_buf);
    xexch50_buf.clear();
    reply(250, "2.0.0", "XEXCH50 OK");
    arm_for_state();
  }

  void do_link2state(std::string_view arg) {
    if (!l2s) {
      l2s.emplace();
    }
    auto step = l2s->feed(arg);
    int code = reply_code(step.status);
    if (code >= 400) {
      return error_reply(code, enhanced_code(step.status),
                         std::string("X-LINK2STATE: ") + to_string(step.status));
    }
    if (step.status == Link2StateStatus::kComplete) {
      awaiting = Awaiting::kLinkState;  // the 250 waits for the engine's answer
      out.emplace_back(LinkStateReceived{auth_user, std::move(step.payload)});
      return;
    }
    reply(250, "2.0.0", "OK");
  }

  // ---- ETRN (RFC 1985): a queue run for a node; the reply never says how much mail ----
  void do_etrn(std::string_view arg) {
    if (!greeted) {
      return error_reply(503, "5.5.1", "Error: send HELO/EHLO first");
    }
    if (in_mail) {
      return error_reply(503, "5.5.1", "Error: MAIL transaction in progress");
    }
    auto req = parse_etrn(arg);
    if (!req.ok()) {
      return error_reply(501, req.error().enhanced, req.error().message);
    }
    awaiting = Awaiting::kEtrn;
    out.emplace_back(RunEtrn{std::move(req.value())});
  }

  // ---- ATRN (RFC 2645) and TURN (RFC 821) ----
  // "ATRN [domain *(,domain)]": only a logged-in customer, never inside a transaction;
  // TURN takes no argument and means every domain of the user.
  void do_atrn(const std::string& verb, std::string_view arg) {
    if (!greeted) {
      return error_reply(503, "5.5.1", "Error: send EHLO first");
    }
    if (auth_user.empty()) {
      return error_reply(530, "5.7.0", "Authentication required");
    }
    if (in_mail) {
      return error_reply(503, "5.5.1", "Error: MAIL transaction in progress");
    }
    CheckAtrn check{auth_user, {}};
    if (verb == "TURN" && !arg.empty()) {
      return error_reply(501, "5.5.4", "Syntax: TURN");
    }
    while (!arg.empty()) {
      std::size_t comma = arg.find(',');
      std::string d = normalize_domain(arg.substr(0, comma));
      if (!is_valid_domain(d) || check.domains.size() >= 100) {
        return error_reply(501, "5.5.4", "Syntax: ATRN [domain[,domain]...]");
      }
      check.domains.push_back(std::move(d));
      if (comma == std::string_view::npos) {
        break;
      }
      arg.remove_prefix(comma + 1);
      if (arg.empty()) {
        return error_reply(501, "5.5.4", "Syntax: ATRN [domain[,domain]...]");
      }
    }
    awaiting = Awaiting::kAtrn;
    out.emplace_back(std::move(check));
  }

  void end_exchange() {
    auth_exchange = false;
    out.emplace_back(AuthAbort{});
  }

  // "FROM:<path> params" / "TO:<path> params": checks the prefix, splits the path from
  // the parameters (which only an EHLO session may send) and answers any error itself.
  std::optional<PathAndParams> path_and_params(std::string_view arg, std::string_view prefix,
                                               std::string_view syntax) {
    if (!starts_with_ci(arg, prefix)) {
      error_reply(501, "5.5.4", syntax);
      return std::nullopt;
    }
    arg.remove_prefix(prefix.size());
    while (!arg.empty() && arg.front() == ' ') {
      arg.remove_prefix(1);
    }
    auto split = split_path_params(arg);
    if (!split.ok()) {
      error_reply(501, split.error().enhanced, split.error().message);
      return std::nullopt;
    }
    if (!esmtp && !split->params.empty()) {
      error_reply(555, "5.5.4", "Parameters require EHLO");
      return std::nullopt;
    }
    return std::move(split.value());
  }

  void do_mail(std::string_view arg) {
    if (!greeted) {
      error_reply(503, "5.5.1", "Error: send HELO/EHLO first");
      return;
    }
    if (cfg.require_auth && auth_user.empty()) {
      error_reply(530, "5.7.0", "Authentication required");
      return;
    }
    if (in_mail) {
      error_reply(503, "5.5.1", "Error: nested MAIL command");
      return;
    }
    auto split = path_and_params(arg, "FROM:", "Syntax: MAIL FROM:<address>");
    if (!split) {
      return;
    }
    queue::Envelope e;
    bool seen_size = false, seen_body = false, seen_ret = false, seen_envid = false,
         seen_utf8 = false, seen_auth = false;
    for (std::size_t i = 0; i < split->params.size(); ++i) {
      const auto& [key, value] = split->params[i];
      bool has_value = split->has_value[i];
      auto dup = [&](bool& seen) {
        if (seen) {
          return true;
        }
        seen = true;
        return false;
      };
      if (key == "SIZE" && cfg.size) {
        if (dup(seen_size) || !has_value || value.empty()) {
          return error_reply(501, "5.5.4", "Bad SIZE parameter");
        }
        bool digits = std::all_of(value.begin(), value.end(),
                                  [](char c) { return c >= '0' && c <= '9'; });
        if (!digits) {
          return error_reply(501, "5.5.4", "Bad SIZE parameter");
        }
        auto n = parse_decimal(value);  // nullopt here means overflow: too big
        if (!n || *n > cfg.max_message_size) {
          return error_reply(552, "5.3.4", "Message size exceeds fixed limit");
        }
        e.declared_size = *n;
      } else if (key == "BODY") {
        if (dup(seen_body) || !has_value) {
          return error_reply(501, "5.5.4", "Bad BODY parameter");
        }
        std::string v = ascii_upper(value);
        if (v == "7BIT") {
          e.body = queue::BodyType::k7Bit;
        } else if (v == "8BITMIME" && cfg.eightbitmime) {
          e.body = queue::BodyType::k8BitMime;
        } else if (v == "BINARYMIME" && cfg.binarymime && cfg.chunking) {
          e.body = queue::BodyType::kBinaryMime;
        } else {
          return error_reply(501, "5.5.4", "Bad BODY parameter");
        }
      } else if (key == "RET" && cfg.dsn) {
        std::string v = ascii_upper(value);
        if (dup(seen_ret) || !has_value || (v != "FULL" && v != "HDRS")) {
          return error_reply(501, "5.5.4", "Bad RET parameter");
        }
        e.ret = v == "FULL" ? queue::DsnRet::kFull : queue::DsnRet::kHeaders;
      } else if (key == "ENVID" && cfg.dsn) {
        auto d = has_value ? decode_xtext(value) : std::nullopt;
        if (dup(seen_envid) || !d || d->empty() || value.size() > kMaxEnvid) {
          return error_reply(501, "5.5.4", "Bad ENVID parameter");
        }
        e.envid = *d;
      } else if (key == "SMTPUTF8" && cfg.smtputf8) {
        if (dup(seen_utf8) || has_value) {
          return error_reply(501, "5.5.4", "Bad SMTPUTF8 parameter");
        }
        e.smtputf8 = true;
      } else if (key == "AUTH" && !cfg.auth_mechanisms.empty()) {
        // RFC 4954 §5: the original submitter, as the previous hop vouches for it. We
        // keep no claim of a client we do not trust, so the value is only checked.
        if (dup(seen_auth) || !has_value || !decode_xtext(value) || value.size() > kMaxOrcpt) {
          return error_reply(501, "5.5.4", "Bad AUTH parameter");
        }
      } else {
        return error_reply(555, "5.5.4", "Unsupported parameter " + key);
      }
    }
    auto path = parse_path(split->path, true, e.smtputf8, "5.1.7");
    if (!path.ok()) {
      return error_reply(501, "5.1.7", "Bad sender address syntax");
    }
    e.sender = path->null ? std::string() : path->mailbox.str();
    e.client_address = peer.address;
    e.client_helo = helo;
    // RFC 3848 / RFC 6531 §3.7.3 "with" protocol types.
    e.protocol = e.smtputf8 ? "UTF8SMTP" : (esmtp ? "ESMTP" : "SMTP");
    if (tls_active) {
      e.protocol += "S";  // RFC 3848: ESMTPS, UTF8SMTPS
    }
    if (!auth_user.empty()) {
      e.protocol += "A";  // RFC 3848: ESMTPA, ESMTPSA
    }
    env = std::move(e);
    awaiting = Awaiting::kMail;
    out.emplace_back(CheckMail{env.sender, env.declared_size});
  }

  void do_rcpt(std::string_view arg) {
    if (!in_mail) {
      error_reply(503, "5.5.1", "Error: need MAIL command");
      return;
    }
    auto split = path_and_params(arg, "TO:", "Syntax: RCPT TO:<address>");
    if (!split) {
      return;
    }
    queue::Recipient r;
    bool seen_notify = false, seen_orcpt = false;
    for (std::size_t i = 0; i < split->params.size(); ++i) {
      const auto& [key, value] = split->params[i];
      bool has_value = split->has_value[i];
      if (key == "NOTIFY" && cfg.dsn) {
        if (seen_notify || !has_value || value.empty()) {
          return error_reply(501, "5.5.4", "Bad NOTIFY parameter");
        }
        seen_notify = true;
        std::uint8_t flags = 0;
        std::string v = ascii_upper(value);
        std::size_t pos = 0;
        while (pos <= v.size()) {
          std::size_t comma = v.find(',', pos);
          std::string item = v.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
          std::uint8_t f = item == "NEVER"     ? queue::kNotifyNever
                           : item == "SUCCESS" ? queue::kNotifySuccess
                           : item == "FAILURE" ? queue::kNotifyFailure
                           : item == "DELAY"   ? queue::kNotifyDelay
                                               : 0;
          if (f == 0 || (flags & f) != 0) {
            return error_reply(501, "5.5.4", "Bad NOTIFY parameter");
          }
          flags |= f;
          if (comma == std::string::npos) {
            break;
          }
          pos = comma + 1;
        }
        if ((flags & queue::kNotifyNever) != 0 && flags != queue::kNotifyNever) {
          return error_reply(501, "5.5.4", "NOTIFY=NEVER cannot be combined");
        }
        r.notify = flags;
      } else if (key == "ORCPT" && cfg.dsn) {
        std::size_t semi = value.find(';');
        if (seen_orcpt || !has_value || semi == std::string::npos || semi == 0 ||
            value.size() > kMaxOrcpt) {
          return error_reply(501, "5.5.4", "Bad ORCPT parameter");
        }
        auto addr = decode_xtext(std::string_view(value).substr(semi + 1));
        if (!addr || addr->empty()) {
          return error_reply(501, "5.5.4", "Bad ORCPT parameter");
        }
        seen_orcpt = true;
        r.orcpt = value.substr(0, semi) + ";" + *addr;
      } else {
        return error_reply(555, "5.5.4", "Unsupported parameter " + key);
      }
    }
    auto path = parse_path(split->path, false, env.smtputf8, "5.1.3");
    if (!path.ok()) {
      return error_reply(501, "5.1.3", "Bad recipient address syntax");
    }
    if (env.recipients.size() >= cfg.max_recipients) {
      // RFC 5321 §4.5.3.1.10: not a client error, the session goes on; an endless
      // stream of them is junk (hostile #40).
      reply(452, "4.5.3", "Error: too many recipients");
      junk();
      return;
    }
    r.address = path->mailbox.str();
    pending_rcpt = std::move(r);
    pending_vrfy = false;
    awaiting = Awaiting::kRecipient;
    out.emplace_back(LookupRecipient{pending_rcpt.address, false, !auth_user.empty()});
  }

  void do_vrfy(std::string_view arg) {
    junk();
    if (closed) {
      return;
    }
    if (!cfg.vrfy) {
      error_reply(502, "5.5.1", "VRFY command is disabled");
      return;
    }
    if (arg.empty()) {
      error_reply(501, "5.5.4", "Syntax: VRFY address");
      return;
    }
    std::string candidate = arg.front() == '<' ? std::string(arg) : "<" + std::string(arg) + ">";
    auto path = parse_path(candidate, false, false, "5.1.3");
    if (!path.ok()) {
      reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
      return;
    }
    pending_rcpt = queue::Recipient{};
    pending_rcpt.address = path->mailbox.str();
    pending_vrfy = true;
    awaiting = Awaiting::kRecipient;
    out.emplace_back(LookupRecipient{pending_rcpt.address, true, !auth_user.empty()});
  }

  bool check_data_common() {
    if (!in_mail) {
      error_reply(503, "5.5.1", "Error: need MAIL command");
      return false;
    }
    if (env.recipients.empty()) {
      error_reply(554, "5.5.1", "Error: no valid recipients");
      return false;
    }
    return true;
  }

  void do_data(std::string_view arg) {
    if (!arg.empty()) {
      error_reply(501, "5.5.4", "Syntax: DATA");
      return;
    }
    if (!check_data_common()) {
      return;
    }
    if (bdat_used) {
      error_reply(503, "5.5.1", "Error: DATA and BDAT cannot be mixed");
      return;
    }
    if (env.body == queue::BodyType::kBinaryMime) {
      error_reply(503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT");
      return;
    }
    if (in.buffered() > 0) {
      // Bytes after DATA before our 354 (hostile #8): never read them as the body.
      sync_error();
      return;
    }
    data_used = true;
    awaiting = Awaiting::kBegin;
    out.emplace_back(BeginMessage{});
  }

  void do_bdat(std::string_view arg) {
    std::size_t sp = arg.find(' ');
    std::string_view num = arg.substr(0, sp);
    std::string_view rest = sp == std::string_view::npos ? std::string_view{} : arg.substr(sp + 1);
    auto n = parse_decimal(num);  // overflow-safe; nothing is allocated from it
    bool last = false;
    if (!rest.empty()) {
      if (ascii_upper(rest) != "LAST") {
        n.reset();
      }
      last = true;
    }
    if (!n) {
      // Nothing is consumed as chunk data: the size is unknown (hostile #15).
      error_reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
      return;
    }
    bdat_chunk = *n;
    bdat_remaining = *n;
    bdat_last = last;
    bdat_discard = false;
    bdat_error_code = 0;
    bdat_error.reset();
    mode = Mode::kBdat;
    if (*n == 0 && !last) {
      junk();  // hostile #20
      if (closed) {
        return;
      }
    }
    if (!in_mail || env.recipients.empty()) {
      // The chunk octets are still consumed as data, never parsed as commands (#17).
      refuse_chunk(503, permanent_error("5.5.1", in_mail ? "Error: no valid recipients"
                                                        : "Error: need MAIL command"),
                   false);
      return;
    }
    if (data_used) {
      refuse_chunk(503, permanent_error("5.5.1", "Error: DATA and BDAT cannot be mixed"), false);
      return;
    }
    std::uint64_t room = cfg.max_message_size > body_bytes ? cfg.max_message_size - body_bytes : 0;
    if (*n > room) {
      // RFC 3030 §2 + hostile #16: drain exactly n octets (counted, never held), then
      // 552; the transaction is over.
      refuse_chunk(552, permanent_error("5.3.4", "Error: message too big"), true);
      return;
    }
    if (!bdat_used) {
      bdat_used = true;
      awaiting = Awaiting::kBegin;
      out.emplace_back(BeginMessage{});
    }
  }

  // The current chunk is drained without spooling; `code` + `e` are the reply once its
  // last octet is in. With `end_transaction` the transaction is reset now (the spool, if
  // any, is aborted), so later chunks are refused as "need MAIL".
  void refuse_chunk(int code, Error e, bool end_transaction) {
    std::uint64_t remaining = bdat_remaining;
    bool last = bdat_last;
    std::uint64_t chunk = bdat_chunk;
    if (end_transaction) {
      reset_transaction();
    }
    mode = Mode::kBdat;
    bdat_remaining = remaining;
    bdat_last = last;
    bdat_chunk = chunk;
    bdat_discard = true;
    bdat_error_code = code;
    bdat_error = std::move(e);
  }

  std::string received_header() const {
    // RFC 5321 §4.4: TCP-info is an address literal, so IPv6 carries its tag.
    std::string ip = peer.address.find(':') != std::string::npos ? "IPv6:" + peer.address
                                                                  : peer.address;
    std::string h = "Received: from " + helo + " ([" + ip + "])\r\n\tby " + cfg.hostname +
                    " (bridgehead) with " + env.protocol + " id " + queue_id;
    if (env.recipients.size() == 1) {
      h += "\r\n\tfor <" + env.recipients.front().address + ">";
    }
    h += "; " + rfc5322_date(clock.now()) + "\r\n";
    return h;
  }

  void start_body() {
    spooling = true;
    env.received_unix = std::chrono::duration_cast<std::chrono::seconds>(
                            clock.now().time_since_epoch())
                            .count();
    std::string h = received_header();
    body_bytes = 0;
    out.emplace_back(BodyData{std::move(h)});
    queue::HopCountLimits limits;
    limits.stop_after = cfg.max_hops + 1;  // enough to know it is over
    hops.emplace(limits);
  }

  void count_hops(std::string_view bytes) {
    if (hops && !hops->done()) {
      hops->feed(bytes);
    }
  }

  // After the last octet: a loop is refused before anything is queued.
  bool refuse_loop() {
    if (!hops || hops->result().received <= cfg.max_hops) {
      return false;
    }
    const auto n = hops->result().received;
    reset_transaction();
    reply(554, "5.4.6", "Too many hops (" + std::to_string(n) + " Received fields; limit " +
                            std::to_string(cfg.max_hops) + "): mail loop?");
    arm_for_state();
    return true;
  }

  void finish_data() {
    mode = Mode::kCommand;
    bool too_big = data->too_big() || data->header_too_big();
    env.body_size = data->body_size();
    counters.bare_lf += data->bare_lf();
    if (too_big) {
      reset_transaction();
      error_reply(552, "5.3.4", "Error: message too big");
      arm_for_state();
      return;
    }
    if (refuse_loop()) {
      return;
    }
    commit();
  }

  void finish_bdat_chunk() {
    mode = Mode::kCommand;
    if (bdat_discard) {
      Error e = *bdat_error;
      int code = bdat_error_code;
      bdat_discard = false;
      bdat_error.reset();
      if (code == 503 || code == 552) {
        error_reply(code, e.enhanced, e.message);  // the client's mistake
      } else {
        reply(code, e.enhanced, e.message);  // ours (the store refused)
      }
      arm_for_state();
      return;
    }
    if (bdat_last) {
      env.body_size = body_bytes;
      if (refuse_loop()) {
        return;
      }
      commit();
      return;
    }
    reply(250, "2.0.0", std::to_string(bdat_chunk) + " octets received");
    arm_for_state();
  }

  void commit() {
    spooling = false;  // the store owns the writer now
    awaiting = Awaiting::kCommit;
    out.emplace_back(CommitMessage{env});
  }
};

ServerSession::ServerSession(SessionConfig config, PeerInfo peer, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(peer), clock)) {}
ServerSession::~ServerSession() = default;

Actions ServerSession::start() {
  auto& s = *impl_;
  if (s.started || s.closed) {
    return s.take();
  }
  s.started = true;
  if (s.pregreet) {
    // hostile #9: a client that talks before the banner is not an SMTP client.
    s.reply(554, "5.5.1", s.cfg.hostname + " Error: protocol error, talking before greeting");
    s.close();
    return s.take();
  }
  s.reply(220, "", s.cfg.hostname + " ESMTP bridgehead");
  s.arm(s.cfg.greeting_timeout);
  s.process();
  return s.take();
}

Actions ServerSession::on_bytes(std::string_view bytes) {
  auto& s = *impl_;
  if (s.closed) {
    return {};
  }
  if (!s.started) {
    s.pregreet = true;
    return {};
  }
  s.in.append(bytes);
  if (s.mode == Impl::Mode::kCommand && !bytes.empty() &&
      ((s.awaiting == Awaiting::kBegin) ||
       (!s.pipelining() && s.greeted &&
        (s.awaiting == Awaiting::kMail || s.awaiting == Awaiting::kRecipient)))) {
    // Input while the reply to DATA (354) or, without PIPELINING, to any command is
    // still due: RFC 2920 §3 synchronization error (hostile #8). Checked on arrival
    // because the answer may come from another thread much later.
    s.sync_error();
    return s.take();
  }
  s.process();
  return s.take();
}

Actions ServerSession::on_timeout() {
  auto& s = *impl_;
  if (s.closed) {
    return {};
  }
  ++s.counters.timeouts;
  s.reply(421, "4.4.2", s.cfg.hostname + " Error: timeout exceeded");
  s.close();
  return s.take();
}

Actions ServerSession::on_eof() {
  auto& s = *impl_;
  if (!s.closed) {
    s.close();
  }
  return s.take();
}

Actions ServerSession::on_mail_result(Result<void> verdict) {
  auto& s = *impl_;
  BH_CHECK(s.awaiting == Awaiting::kMail);
  s.awaiting = Awaiting::kNothing;
  if (s.closed) {
    return s.take();
  }
  if (verdict.ok()) {
    s.in_mail = true;
    s.reply(250, "2.1.0", "Ok");
  } else {
    const Error& e = verdict.error();
    int code = e.transient() ? (e.enhanced == "4.3.1" ? 452 : 451)
                             : (e.enhanced == "5.3.4" ? 552 : 550);
    s.env = queue::Envelope{};
    if (e.transient()) {
      s.reply(code, e.enhanced, e.message);  // our resource problem, not counted
    } else {
      s.error_reply(code, e.enhanced, e.message);
    }
  }
  s.arm_for_state();
  s.process();
  return s.take();
}

Actions ServerSession::on_recipient_result(RecipientVerdict v) {
  auto& s = *impl_;
  BH_CHECK(s.awaiting == Awaiting::kRecipient);
  s.awaiting = Awaiting::kNothing;
  if (s.closed) {
    return s.take();
  }
  const std::string& addr = s.pending_rcpt.address;
  switch (v.kind) {
    case RecipientVerdict::Kind::kLocal:
      if (s.pending_vrfy) {
        s.reply(250, "2.1.5", "<" + addr + ">");
      } else {
        s.pending_rcpt.mailbox = v.mailbox;
        s.pending_rcpt.categorize = v.categorize;
        s.pending_rcpt.home_server = std::move(v.home_server);
        s.env.recipients.push_back(std::move(s.pending_rcpt));
        ++s.counters.recipients;
        s.reply(250, "2.1.5", "Ok");
      }
      break;
    case RecipientVerdict::Kind::kUnknown:
      s.error_reply(550, "5.1.1", "<" + addr + ">: Recipient address rejected: User unknown");
      break;
    case RecipientVerdict::Kind::kError: {
      std::string enhanced = v.error.enhanced.empty() ? (v.error.transient() ? "4.4.3" : "5.7.1")
                                                      : v.error.enhanced;
      if (s.pending_vrfy && !v.error.transient()) {
        // VRFY of an address we would not accept mail for: no verdict (RFC 5321 §3.5.3).
        s.reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
      } else if (v.error.transient()) {
        // A directory fault is ours, not the client's: not counted (DESIGN §4.4).
        s.reply(451, enhanced, "<" + addr + ">: " + v.error.message);
      } else {
        s.error_reply(550, enhanced, "<" + addr + ">: " + v.error.message);
      }
      break;
    }
  }
  s.pending_rcpt = queue::Recipient{};
  s.arm_for_state();
  s.process();
  return s.take();
}

Actions ServerSession::on_begin_result(Result<std::string> queue_id) {
  auto& s = *impl_;
  BH_CHECK(s.awaiting == Awaiting::kBegin);
  s.awaiting = Awaiting::kNothing;
  if (s.closed) {
    if (queue_id.ok()) {
      s.out.emplace_back(AbortMessage{});
    }
    return s.take();
  }
  if (!queue_id.ok()) {
    const Error& e = queue_id.error();
    int code = store_code(e);
    if (s.mode == Impl::Mode::kBdat) {
      // The chunk octets still have to be drained before the refusal, and the
      // transaction ends: a later chunk must not be committed without a spool.
      s.refuse_chunk(code, e, true);
    } else {
      s.reset_transaction();
      s.reply(code, e.enhanced, e.message);
      s.arm_for_state();
    }
    s.process();
    return s.take();
  }
  s.queue_id = queue_id.value();
  s.env.id = s.queue_id;
  if (s.mode == Impl::Mode::kBdat) {
    s.start_body();
    s.arm(s.cfg.data_block_timeout);
  } else if (s.in.buffered() > 0) {
    // Octets that arrived after DATA but before our 354 (hostile #8): a pipelining
    // violation, never body. The store's writer is discarded.
    s.out.emplace_back(AbortMessage{});
    s.sync_error();
  } else {
    s.reply(354, "", "End data with <CR><LF>.<CR><LF>");
    s.mode = Impl::Mode::kData;
    s.data.emplace(s.cfg.max_message_size, s.cfg.max_header_bytes);
    s.start_body();
    s.arm(s.cfg.data_init_timeout);
  }
  s.process();
  return s.take();
}

Actions ServerSession::on_commit_result(Result<std::string> queue_id) {
  auto& s = *impl_;
  BH_CHECK(s.awaiting == Awaiting::kCommit);
  s.awaiting = Awaiting::kNothing;
  s.spooling = false;
  if (s.closed) {
    if (queue_id.ok()) {
      ++s.counters.messages;  // durable even though the client is gone
    }
    return s.take();
  }
  if (queue_id.ok()) {
    ++s.counters.messages;
    s.counters.junk = 0;
    s.reply(250, "2.0.0", "Ok: queued as " + queue_id.value());
  } else {
    const Error& e = queue_id.error();
    s.reply(store_code(e), e.enhanced, e.message);
  }
  s.reset_transaction();
  s.arm_for_state();
  s.process();
  return s.take();
}

Awaiting ServerSession::awaiting() const { return impl_->awaiting; }
bool ServerSession::wants_input() const {
  const auto& s = *impl_;
  if (s.closed) {
    return false;
  }
  if (s.awaiting == Awaiting::kTls) {
    return false;  // the next bytes belong to the TLS handshake
  }
  return s.awaiting == Awaiting::kNothing || s.in.buffered() < s.cfg.max_buffered_input;
}
bool ServerSession::closed() const { return impl_->closed; }
bool ServerSession::tls_active() const { return impl_->tls_active; }

Actions ServerSession::on_tls_result(bool ok) {
  auto& s = *impl_;
  BH_CHECK(s.awaiting == Awaiting::kTls);
  s.awaiting = Awaiting::kNothing;
  if (s.closed) {
    return s.take();
  }
  if (!ok) {
    s.close();  // no reply: the TLS layer is in an unknown state
    return s.take();
  }
  // RFC 3207 4.2: the client must start over with EHLO; nothing from before counts.
  s.reset_transaction();
  s.tls_active = true;
  s.auth_user.clear();
  s.peer_rights = false;
  s.l2s.reset();
  s.greeted = false;
  s.esmtp = false;
  s.helo.clear();
  s.in.consume(s.in.buffered());
  s.arm_for_state();
  s.process();
  return s.take();
}
const SessionCounters& ServerSession::counters() const { return impl_->counters; }
const std::string& ServerSession::authenticated_user() const { return impl_->auth_user; }

Actions ServerSession::on_link_state_result(std::optional<std::string> reply_payload) {
  auto& s = *impl_;
  BH_CHECK(s.awaiting == Awaiting::kLinkState);
  s.awaiting = Awaiting::kNothing;
  if (s.closed) {
    return s.take();
  }
  if (reply_payload) {
    // The client's reply parser holds 100 lines and 64 KiB: a table larger than that
    // stays home (the 691 sessions between the groups carry it).
    Link2StateLimits lim;
    lim.max_line -= 4;  // "250-" in front: each reply line stays within 1024 octets
    auto lines = split_link2state(*reply_payload, lim);
    if (lines.ok() && lines->size() <= kMaxLink2StateReplyLines) {
      for (const auto& l : *lines) {
        s.send("250-" + l);
      }
    }
  }
  s.reply(250, "2.0.0", "OK");
  s.arm_for_state();
  s.process();
  return s.take();
}

Actions ServerSession::on_etrn_result(EtrnReply r) {
  auto& s = *impl_;
  BH_CHECK(s.awaiting == Awaiting::kEtrn);
  s.awaiting = Awaiting::kNothing;
  if (s.closed) {
    return s.take();
  }
  if (r.code >= 400) {
    s.error_reply(r.code, r.enhanced, r.text);
  } else {
    s.reply(r.code, r.enhanced, r.text);
  }
  s.junk();  // a flood of ETRN is a flood of commands without mail
  s.arm_for_state();
  s.process();
  return s.take();
}

Actions ServerSession::on_atrn_result(AtrnVerdict v) {
  auto& s = *impl_;
  BH_CHECK(s.awaiting == Awaiting::kAtrn);
  s.awaiting = Awaiting::kNothing;
  if (s.closed) {
    return s.take();
  }
  switch (v.kind) {
    case AtrnVerdict::Kind::kTurn:
      if (s.in.buffered() > 0) {
        // The client must wait for our 250 before it speaks as a server.
        s.sync_error();
        return s.take();
      }
      s.reply(250, "2.0.0", "OK now reversing the connection");
      s.closed = true;  // this session is over; the adapter is the client from here
      s.out.emplace_back(TurnAround{std::move(v.domains)});
      return s.take();
    case AtrnVerdict::Kind::kNoMail:
      s.reply(453, "4.3.0", "You have no mail");
      break;
    case AtrnVerdict::Kind::kForbidden:
      s.error_reply(450, "4.7.1", "Access denied to " + v.denied);
      break;
    case AtrnVerdict::Kind::kError:
      s.reply(451, "4.3.0", "Unable to process ATRN request now");
      break;
  }
  s.arm_for_state();
  s.process();
  return s.take();
}
bool ServerSession::peer_rights() const { return impl_->peer_rights; }

Actions ServerSession::on_auth_result(AuthVerdict v) {
  auto& s = *impl_;
  BH_CHECK(s.awaiting == Awaiting::kAuth && s.auth_exchange);
  s.awaiting = Awaiting::kNothing;
  if (s.closed) {
    return s.take();
  }
  using Kind = AuthVerdict::Kind;
  if (v.kind == Kind::kContinue) {
    s.send("334 " + base64_encode(v.challenge));
  } else {
    s.auth_exchange = false;
    switch (v.kind) {
      case Kind::kSuccess:
        s.auth_user = v.user.empty() ? "(unnamed)" : v.user;
        s.peer_rights = v.peer;
        ++s.counters.auth_successes;
        s.reply(235, "2.7.0", "Authentication successful");
        break;
      case Kind::kTemporary:
        s.reply(454, "4.7.0", "Temporary authentication failure");
        break;
      case Kind::kRefused:
        ++s.counters.auth_failures;
        s.reply(421, "4.7.0", s.cfg.hostname + " Error: too many authentication failures");
        s.close();
        break;
      default:
        ++s.counters.auth_failures;
        s.error_reply(535, "5.7.8", "Authentication credentials invalid");
        if (!s.closed && ++s.auth_failures >= s.cfg.max_auth_failures) {
          s.reply(421, "4.7.0", s.cfg.hostname + " Error: too many authentication failures");
          s.close();
        }
        break;
    }
  }
  s.arm_for_state();
  s.process();
  return s.take();
}

}  // namespace bh::smtp
