// ClientSession: see client_session.h for the contract and docs/smtp-client.md for the
// failure table.
//
// Map of this file: helpers (base64, dot-stuffing, EHLO keywords) -> Impl (state) ->
// on_reply(), one branch per command whose reply is awaited, in the order of a session:
// greeting, EHLO/LHLO/HELO, STARTTLS, AUTH, MAIL, RCPT, DATA/BDAT, final reply(s), QUIT.
// Replies are matched to commands through `expect`, a queue in the order the commands
// were written, which is what makes PIPELINING (RFC 2920 §3.1) a matter of writing
// several commands before reading.

#include "smtp/client_session.h"

#include <algorithm>
#include <cctype>
#include <deque>
#include <utility>

#include "common/base64.h"
#include "common/text.h"
#include "smtp/esmtp_params.h"

namespace bh::smtp {

namespace {

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    auto v = (static_cast<unsigned char>(in[i]) << 16) |
             (static_cast<unsigned char>(in[i + 1]) << 8) | static_cast<unsigned char>(in[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) {
      v |= static_cast<unsigned char>(in[i + 1]) << 8;
    }
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

// Command arguments come from the queue, which validated them; a CR, LF or NUL would
// still split a command in two (command injection), so it is refused here as well.
bool safe_argument(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// DATA body transparency (RFC 5321 §4.5.2) and line endings (§2.3.8), streaming: a '.' at
// the start of a line is doubled, and a bare CR or bare LF is sent as CRLF, so no
// downstream server can read an end of data we did not mean (SMTP smuggling). The state
// across chunks is whether we are at a line start and whether a CR is pending.
class DotStuffer {
 public:
  std::string feed(std::string_view in, bool last) {
    std::string o;
    o.reserve(in.size() + in.size() / 64 + 8);
    for (char c : in) {
      if (pending_cr_) {
        pending_cr_ = false;
        o.append("\r\n");
        line_start_ = true;
        if (c == '\n') {
          continue;
        }
      }
      if (c == '\r') {
        pending_cr_ = true;
      } else if (c == '\n') {
        o.append("\r\n");
        line_start_ = true;
      } else {
        if (line_start_ && c == '.') {
          o.push_back('.');
        }
        o.push_back(c);
        line_start_ = false;
      }
    }
    if (last) {
      if (pending_cr_) {
        pending_cr_ = false;
        o.append("\r\n");
        line_start_ = true;
      }
      // The body ends with CRLF before the terminating "." (an empty body is just ".").
      o.append(line_start_ ? ".\r\n" : "\r\n.\r\n");
    }
    return o;
  }

 private:
  bool line_start_ = true;
  bool pending_cr_ = false;
};

}  // namespace

std::chrono::milliseconds ClientTimeouts::of(ClientTimer kind) const {
  switch (kind) {
    case ClientTimer::kGreeting:
      return greeting;
    case ClientTimer::kCommand:
      return command;
    case ClientTimer::kMail:
      return mail;
    case ClientTimer::kRcpt:
      return rcpt;
    case ClientTimer::kDataInit:
      return data_init;
    case ClientTimer::kDataBlock:
      return data_block;
    case ClientTimer::kDataTerm:
      return data_term;
    case ClientTimer::kTlsHandshake:
      return tls_handshake;
  }
  return command;
}

ServerCapabilities parse_ehlo(const Reply& reply) {
  ServerCapabilities caps;
  caps.esmtp = true;
  for (std::size_t i = 1; i < reply.lines.size(); ++i) {
    std::string_view line = reply.lines[i];
    std::size_t sp = line.find(' ');
    std::string key = ascii_upper(line.substr(0, sp));
    std::string_view params = sp == std::string_view::npos ? "" : line.substr(sp + 1);
    if (key.rfind("AUTH=", 0) == 0) {  // pre-RFC 4954 servers: "AUTH=LOGIN PLAIN"
      params = line.substr(5);
      key = "AUTH";
    }
    if (key == "PIPELINING") {
      caps.pipelining = true;
    } else if (key == "8BITMIME") {
      caps.eightbitmime = true;
    } else if (key == "BINARYMIME") {
      caps.binarymime = true;
    } else if (key == "CHUNKING") {
      caps.chunking = true;
    } else if (key == "DSN") {
      caps.dsn = true;
    } else if (key == "SMTPUTF8") {
      caps.smtputf8 = true;
    } else if (key == "STARTTLS") {
      caps.starttls = true;
    } else if (key == "ENHANCEDSTATUSCODES") {
      caps.enhancedstatuscodes = true;
    } else if (key == "SIZE") {
      caps.size = true;
      // RFC 1870 §4: "SIZE" alone or "SIZE 0" announce no fixed limit.
      caps.size_limit = parse_decimal(params).value_or(0);
    } else if (key == "XEXCH50") {
      caps.xexch50 = true;
    } else if (key == "X-LINK2STATE") {
      caps.link2state = true;
    } else if (key == "AUTH" || key == "X-EXPS") {
      auto& list = key == "AUTH" ? caps.auth : caps.x_exps;
      while (!params.empty()) {
        std::size_t e = params.find(' ');
        std::string_view mech = params.substr(0, e);
        if (!mech.empty()) {
          list.push_back(ascii_upper(mech));
        }
        params.remove_prefix(e == std::string_view::npos ? params.size() : e + 1);
      }
    }
  }
  return caps;
}

struct ClientSession::Impl {
  enum class Stage {
    kGreeting,
    kHello,
    kHelo,
    kStartTls,
    kAuth,
    kAuthLoginUser,
    kAuthLoginPass,
    kAuthSasl,
    kMail,
    kXexch50,      // "XEXCH50 <octets> <count>": 354 expected
    kXexch50Blob,  // the blob was sent: 250 expected
    kLink2State,   // one X-LINK2STATE chunk line: 250 expected
    kRcpt,
    kData,
    kBdat,
    kFinal,
    kAbortDot,
    kRset,  // a held connection taken up again: 250 expected before MAIL
    kQuit,
  };
  struct Expect {
    Stage stage;
    std::size_t rcpt = 0;  // kRcpt, and kFinal in LMTP mode: the recipient's index
  };
  enum class BodyMode { kData, kBdat };

  ClientConfig cfg;
  OutboundMessage msg;
  ReplyParser parser;
  ServerCapabilities caps;
  ClientResult result;

  std::deque<Expect> expect;       // replies still due, in the order of the commands
  std::vector<std::size_t> rcpts;  // indexes sent as RCPT, in order
  std::size_t next_rcpt = 0;       // without PIPELINING: the next of `rcpts` to send
  std::string xexch50_blob;        // the XEXCH50 properties, once built in after_rcpts
  bool link2state_started = false;
  std::vector<std::string> link2state_lines;  // the X-LINK2STATE commands to send
  std::size_t link2state_next = 0;
  std::vector<bool> decided, accepted;
  bool mail_failed = false;
  BodyMode body_mode = BodyMode::kData;
  DotStuffer stuffer;

  bool tls_active = false, tls_reply_seen = false, tls_in_progress = false;
  bool want_body = false, finished = false, closed = false;

  ClientActions out;

  Impl(ClientConfig c, OutboundMessage m)
      : cfg(std::move(c)), msg(std::move(m)), parser(cfg.reply_limits) {
    result.recipients.resize(msg.recipients.size());
    for (std::size_t i = 0; i < msg.recipients.size(); ++i) {
      result.recipients[i].address = msg.recipients[i].address;
    }
    decided.assign(msg.recipients.size(), false);
    accepted.assign(msg.recipients.size(), false);
  }

  ClientActions take() {
    if (vetoed && !closed) {
      stop_vetoed();
    }
    return std::exchange(out, {});
  }

  // ---- outbound command events (ClientConfig::on_command / on_reply) ----
  std::optional<Error> vetoed;  // a command the hook refused: the session ends with it
  const char* verb_of(Stage s) const {
    switch (s) {
      case Stage::kGreeting:
        return "CONNECT";
      case Stage::kHello:
        return cfg.lmtp ? "LHLO" : "EHLO";
      case Stage::kHelo:
        return "HELO";
      case Stage::kStartTls:
        return "STARTTLS";
      case Stage::kAuth:
      case Stage::kAuthLoginUser:
      case Stage::kAuthLoginPass:
      case Stage::kAuthSasl:
        return cfg.sasl && cfg.sasl_verb == "X-EXPS" ? "X-EXPS" : "AUTH";
      case Stage::kMail:
        return "MAIL";
      case Stage::kXexch50:
      case Stage::kXexch50Blob:
        return "XEXCH50";
      case Stage::kLink2State:
        return "X-LINK2STATE";
      case Stage::kRcpt:
        return "RCPT";
      case Stage::kData:
        return "DATA";
      case Stage::kBdat:
        return "BDAT";
      case Stage::kFinal:
      case Stage::kAbortDot:
        return ".";
      case Stage::kRset:
        return "RSET";
      case Stage::kQuit:
        return "QUIT";
    }
    return "?";
  }
  // True: send it. The hook sees credentials masked.
  bool offer(const std::string& line, Stage stage) {
    if (!cfg.on_command || stage == Stage::kQuit) {
      return true;
    }
    const std::string verb = verb_of(stage);
    const bool secret = stage == Stage::kAuth || stage == Stage::kAuthLoginUser ||
                        stage == Stage::kAuthLoginPass || stage == Stage::kAuthSasl;
    std::string shown = line;
    if (secret) {
      // "AUTH PLAIN <secret>" keeps its mechanism; a bare SASL response is all secret.
      const std::size_t sp = line.find(' ');
      const std::size_t sp2 = sp == std::string::npos ? sp : line.find(' ', sp + 1);
      shown = ascii_upper(line.substr(0, sp)) == verb
                  ? (sp2 == std::string::npos ? line : line.substr(0, sp2) + " ***")
                  : verb + " ***";
    }
    auto e = cfg.on_command(verb, shown);
    if (!e) {
      return true;
    }
    vetoed = std::move(*e);
    return false;
  }
  // A refused command: nothing more is sent but QUIT; the outcome carries the refusal.
  void stop_vetoed() {
    std::erase_if(out, [](const ClientAction& a) { return std::holds_alternative<NeedBody>(a); });
    want_body = false;
    hop_fail(*vetoed);
    expect.clear();
    send("QUIT\r\n");  // not awaited: the connection closes now
    disconnect();
  }

  // ---- output helpers ----
  void send(std::string_view bytes) {
    if (bytes.empty()) {
      return;
    }
    if (!out.empty()) {
      if (auto* s = std::get_if<SendBytes>(&out.back())) {
        s->bytes.append(bytes);  // pipelined commands leave in one write
        return;
      }
    }
    out.emplace_back(SendBytes{std::string(bytes)});
  }
  void command(std::string line, Expect e) {
    if (vetoed || !offer(line, e.stage)) {
      return;  // the session is ending (stop_vetoed)
    }
    line.append("\r\n");
    send(line);
    expect.push_back(e);
  }
  void arm(ClientTimer kind) { out.emplace_back(ArmDeadline{kind, cfg.timeouts.of(kind)}); }
  static ClientTimer timer_for(Stage s) {
    switch (s) {
      case Stage::kGreeting:
        return ClientTimer::kGreeting;
      case Stage::kMail:
        return ClientTimer::kMail;
      case Stage::kRcpt:
        return ClientTimer::kRcpt;
      case Stage::kData:
        return ClientTimer::kDataInit;
      case Stage::kBdat:
        return ClientTimer::kDataBlock;
      case Stage::kFinal:
      case Stage::kAbortDot:
        return ClientTimer::kDataTerm;
      default:
        return ClientTimer::kCommand;
    }
  }
  // One deadline per awaited reply: re-armed whenever the head of `expect` changes.
  void arm_head() {
    if (!expect.empty() && !closed) {
      arm(timer_for(expect.front().stage));
    }
  }
  static const char* describe(Stage s) {
    switch (s) {
      case Stage::kGreeting:
        return "the greeting";
      case Stage::kHello:
        return "the reply to EHLO";
      case Stage::kHelo:
        return "the reply to HELO";
      case Stage::kStartTls:
        return "the reply to STARTTLS";
      case Stage::kAuth:
      case Stage::kAuthLoginUser:
      case Stage::kAuthLoginPass:
      case Stage::kAuthSasl:
        return "the reply to AUTH";
      case Stage::kMail:
        return "the reply to MAIL";
      case Stage::kXexch50:
      case Stage::kXexch50Blob:
        return "the reply to XEXCH50";
      case Stage::kLink2State:
        return "the reply to X-LINK2STATE";
      case Stage::kRcpt:
        return "the reply to RCPT";
      case Stage::kData:
        return "the reply to DATA";
      case Stage::kBdat:
        return "the reply to BDAT";
      case Stage::kFinal:
        return "the reply to the end of data";
      case Stage::kAbortDot:
        return "the reply to an empty message";
      case Stage::kRset:
        return "the reply to RSET on a reused connection";
      case Stage::kQuit:
        return "the reply to QUIT";
    }
    return "a reply";
  }
  std::string where() const {
    if (tls_in_progress) {
      return "the TLS handshake";
    }
    if (!expect.empty()) {
      return describe(expect.front().stage);
    }
    if (want_body) {
      return "the message body";
    }
    return "nothing";
  }

  // ---- outcomes ----
  static Error reply_error(const Reply& r, std::string_view what) {
    std::string m = std::string(what) + ": " + r.summary();
    if (r.permanent()) {
      return permanent_error(r.enhanced_or_generic(), std::move(m));
    }
    if (r.transient()) {
      return transient_error(r.enhanced_or_generic(), std::move(m));
    }
    return transient_error("4.5.0", "unexpected " + std::move(m));  // 2xx/3xx out of place
  }
  void decide(std::size_t i, const Reply& r) {
    if (decided[i]) {
      return;
    }
    auto& o = result.recipients[i];
    o.code = r.code;
    o.text = r.text();
    if (r.positive()) {
      o.status = DeliveryStatus::kDelivered;
      o.enhanced = r.enhanced_or_generic();
    } else if (r.permanent()) {
      o.status = DeliveryStatus::kPermanent;
      o.enhanced = r.enhanced_or_generic();
    } else if (r.transient()) {
      o.status = DeliveryStatus::kTransient;
      o.enhanced = r.enhanced_or_generic();
    } else {
      o.status = DeliveryStatus::kTransient;
      o.enhanced = "4.5.0";
      o.text = "unexpected reply " + r.summary();
    }
    decided[i] = true;
  }
  void decide(std::size_t i, const Error& e, int code) {
    if (decided[i]) {
      return;
    }
    auto& o = result.recipients[i];
    o.status = e.transient() ? DeliveryStatus::kTransient : DeliveryStatus::kPermanent;
    o.code = code;
    o.enhanced = e.enhanced;
    o.text = e.message;
    decided[i] = true;
  }
  // The recipients accepted at RCPT and still open all take this reply.
  void decide_accepted(const Reply& r) {
    for (std::size_t i : rcpts) {
      if (accepted[i]) {
        decide(i, r);
      }
    }
  }
  bool any_accepted() const {
    return std::any_of(rcpts.begin(), rcpts.end(), [&](std::size_t i) { return accepted[i]; });
  }
  // The first failure of the hop wins; later ones (the lost connection after a 421) are
  // consequences.
  void hop_fail(Error e, int code = 0) {
    if (!result.hop_error) {
      result.hop_error = std::move(e);
      result.hop_code = code;
    }
  }
  bool held_open = false;
  std::unique_ptr<ClientSasl> sasl;  // the running SASL exchange, if any
  // The base64 text of a 334 reply (its first line, after "334 ").
  static std::string_view sasl_text(const Reply& r) { return r.lines.front(); }
  void finish() {
    if (finished) {
      return;
    }
    for (std::size_t i = 0; i < decided.size(); ++i) {
      if (result.hop_error) {
        decide(i, *result.hop_error, result.hop_code);
      } else {
        // Unreachable by design; classed transient so nothing is lost if it happens.
        decide(i, transient_error("4.5.0", "no reply for this recipient"), 0);
      }
    }
    finished = true;
    out.emplace_back(Finished{result});
  }
  void disconnect() {
    finish();
    if (!closed) {
      closed = true;
      expect.clear();
      want_body = false;
      tls_in_progress = false;
      out.emplace_back(Disconnect{});
    }
  }
  // The outcome is known and the server is in step: say goodbye politely.
  void quit() {
    if (cfg.hold_open && expect.empty() && !result.hop_error) {
      // The server is in step and idle: the adapter may run the next transaction on this
      // connection (ATRN, RFC 2645), so no QUIT and no Disconnect.
      held_open = true;
      finish();
      return;
    }
    expect.clear();
    command("QUIT", {Stage::kQuit});
    arm_head();
    finish();
  }
  // The connection cannot be used any more (malformed reply, timeout, EOF, TLS failure).
  void fail_connection(Error e, int code = 0) {
    if (!finished) {
      hop_fail(std::move(e), code);
    }
    disconnect();
  }

  // ---- the session, in order ----
  void hello() {
    command(std::string(cfg.lmtp ? "LHLO " : "EHLO ") + cfg.helo_name, {Stage::kHello});
    arm_head();
  }

  // After a successful EHLO/HELO (and again after STARTTLS and AUTH): the next step.
  void proceed() {
    if (!tls_active && cfg.tls != TlsPolicy::kNever && caps.starttls) {
      command("STARTTLS", {Stage::kStartTls});
      arm_head();
      return;
    }
    if (!tls_active && cfg.tls == TlsPolicy::kRequired) {
      hop_fail(transient_error("4.7.4", "TLS is required, but was not offered by the server"));
      quit();
      return;
    }
    if ((cfg.auth || cfg.sasl) && !result.authenticated) {
      authenticate();
      return;
    }
    if (!link2state_started && !msg.link2state.empty() && caps.link2state && result.authenticated) {
      link2state_started = true;
      if (auto lines = split_link2state(msg.link2state); lines.ok()) {
        link2state_lines = std::move(lines.value());
        next_link2state_line();
        return;
      }
    }
    if (auto refused = check_message()) {
      hop_fail(std::move(*refused));
      quit();
      return;
    }
    begin_transaction();
  }

  void authenticate() {
    if (!tls_active && !cfg.auth_without_tls) {
      hop_fail(transient_error("4.7.11", "AUTH needs TLS, and TLS is not active"));
      quit();
      return;
    }
    auto has = [&](std::string_view m) {
      return std::find(caps.auth.begin(), caps.auth.end(), m) != caps.auth.end();
    };
    if (cfg.sasl) {
      sasl_start();
      return;
    }
    if (has("PLAIN")) {
      // RFC 4616 with an initial response (RFC 4954 §4): authzid empty.
      std::string token;
      token.push_back('\0');
      token.append(cfg.auth->user).push_back('\0');
      token.append(cfg.auth->password);
      command("AUTH PLAIN " + base64(token), {Stage::kAuth});
    } else if (has("LOGIN")) {
      command("AUTH LOGIN", {Stage::kAuthLoginUser});
    } else {
      hop_fail(transient_error("4.7.4", "the server offers no AUTH PLAIN or LOGIN"));
      quit();
      return;
    }
    arm_head();
  }

  // The configured SASL mechanism under AUTH or X-EXPS (RFC 4954 grammar for both).
  void sasl_start() {
    sasl = cfg.sasl();
    const auto& offered = cfg.sasl_verb == "X-EXPS" ? caps.x_exps : caps.auth;
    if (!sasl || std::find(offered.begin(), offered.end(), sasl->mechanism()) == offered.end()) {
      hop_fail(transient_error("4.7.4", "the server offers no " + cfg.sasl_verb + " " +
                                            (sasl ? sasl->mechanism() : std::string("mechanism"))));
      quit();
      return;
    }
    auto first = sasl->start();
    if (!first.ok()) {
      hop_fail(transient_error("4.7.8", cfg.sasl_verb + " " + sasl->mechanism() + ": " +
                                            first.error().message));
      quit();
      return;
    }
    std::string line = cfg.sasl_verb + " " + sasl->mechanism();
    if (first.value()) {
      line += " " + (first.value()->empty() ? std::string("=") : base64(*first.value()));
    }
    command(line, {Stage::kAuthSasl});
    arm_head();
  }

  // Conditions that make this hop impossible before MAIL is sent.
  std::optional<Error> check_message() const {
    if (caps.size && caps.size_limit > 0 && msg.size > caps.size_limit) {
      return permanent_error("5.3.4", "message size " + std::to_string(msg.size) +
                                          " exceeds the server's limit " +
                                          std::to_string(caps.size_limit));
    }
    if (msg.body == queue::BodyType::k8BitMime && !caps.eightbitmime) {
      return permanent_error("5.6.3", "8-bit message, and the server does not offer 8BITMIME");
    }
    if (msg.body == queue::BodyType::kBinaryMime && !(caps.binarymime && caps.chunking)) {
      return permanent_error(
          "5.6.3", "binary message, and the server does not offer BINARYMIME and CHUNKING");
    }
    if (msg.smtputf8 && !caps.smtputf8) {
      return permanent_error("5.6.7",
                             "internationalized address, and the server does not offer SMTPUTF8");
    }
    if (!safe_argument(msg.sender) || !safe_argument(msg.envid)) {
      return permanent_error("5.1.7", "sender or ENVID holds CR, LF or NUL");
    }
    return std::nullopt;
  }

  std::string mail_command() {
    std::string c = "MAIL FROM:<" + msg.sender + ">";
    if (caps.size) {
      c += " SIZE=" + std::to_string(msg.size);
    }
    if (msg.body == queue::BodyType::k8BitMime) {
      c += " BODY=8BITMIME";
    } else if (msg.body == queue::BodyType::kBinaryMime) {
      c += " BODY=BINARYMIME";
    }
    if (msg.smtputf8) {
      c += " SMTPUTF8";
    }
    if (caps.dsn) {  // RFC 3461 parameters only where the server offers DSN
      result.dsn_passed = true;
      if (msg.ret == queue::DsnRet::kFull) {
        c += " RET=FULL";
      } else if (msg.ret == queue::DsnRet::kHeaders) {
        c += " RET=HDRS";
      }
      if (!msg.envid.empty()) {
        c += " ENVID=" + encode_xtext(msg.envid);
      }
    }
    return c;
  }

  std::string rcpt_command(const OutboundRecipient& r) const {
    std::string c = "RCPT TO:<" + r.address + ">";
    if (caps.dsn) {
      if (r.notify & queue::kNotifyNever) {
        c += " NOTIFY=NEVER";
      } else if (r.notify != queue::kNotifyUnspecified) {
        std::string n;
        for (auto [flag, name] : {std::pair{queue::kNotifySuccess, "SUCCESS"},
                                  std::pair{queue::kNotifyFailure, "FAILURE"},
                                  std::pair{queue::kNotifyDelay, "DELAY"}}) {
          if (r.notify & flag) {
            n += (n.empty() ? "" : ",");
            n += name;
          }
        }
        c += " NOTIFY=" + n;
      }
      if (std::size_t semi = r.orcpt.find(';'); semi != std::string::npos && semi > 0) {
        c += " ORCPT=" + r.orcpt.substr(0, semi + 1) + encode_xtext(r.orcpt.substr(semi + 1));
      }
    }
    return c;
  }

  void begin_transaction() {
    for (std::size_t i = 0; i < msg.recipients.size(); ++i) {
      const auto& r = msg.recipients[i];
      if (safe_argument(r.address) && safe_argument(r.orcpt)) {
        rcpts.push_back(i);
      } else {
        decide(i, permanent_error("5.1.3", "recipient holds CR, LF or NUL"), 0);
      }
    }
    if (rcpts.empty()) {
      quit();
      return;
    }
    body_mode = caps.chunking && (cfg.use_chunking || msg.body == queue::BodyType::kBinaryMime)
                    ? BodyMode::kBdat
                    : BodyMode::kData;
    command(mail_command(), {Stage::kMail});
    result.mail_sent = !vetoed;  // a refused MAIL never reached the server
    if (caps.pipelining) {
      // RFC 2920 §3.1: MAIL, every RCPT and DATA in one group; BDAT waits for the RCPT
      // replies so no body is sent for nobody.
      for (std::size_t i : rcpts) {
        command(rcpt_command(msg.recipients[i]), {Stage::kRcpt, i});
      }
      next_rcpt = rcpts.size();
      if (body_mode == BodyMode::kData && !send_xexch50()) {
        command("DATA", {Stage::kData});
      }
    }
    arm_head();
  }

  void send_next_rcpt() {
    std::size_t i = rcpts[next_rcpt++];
    command(rcpt_command(msg.recipients[i]), {Stage::kRcpt, i});
    arm_head();
  }

  // Every RCPT reply is in (and DATA was not pipelined).
  bool send_xexch50() const {
    return msg.properties.has_value() && caps.xexch50 && result.authenticated &&
           msg.properties->recipients.size() == msg.recipients.size();
  }

  void after_rcpts() {
    if (mail_failed || !any_accepted()) {
      quit();  // nobody to deliver to: no DATA
    } else if (send_xexch50()) {
      Xexch50Props p = *msg.properties;
      p.recipients.clear();
      for (std::size_t i : rcpts) {
        if (accepted[i]) {
          p.recipients.push_back(msg.properties->recipients[i]);
        }
      }
      xexch50_blob = encode_xexch50_props(p);
      command("XEXCH50 " + std::to_string(xexch50_blob.size()) + " " +
                  std::to_string(p.recipients.size() + 1),
              {Stage::kXexch50});
      arm_head();
    } else {
      start_body();
    }
  }

  void next_link2state_line() {
    command(link2state_lines[link2state_next++], {Stage::kLink2State});
    arm_head();
  }

  // The server's reply to one chunk; after the LAST one, its table may follow in the
  // continuation lines ("X-LINK2STATE FIRST|NEXT|LAST CHUNK=...").
  void on_link2state_reply(const Reply& r) {
    if (r.positive() && link2state_next < link2state_lines.size()) {
      next_link2state_line();
      return;
    }
    if (r.positive()) {
      Link2StateReceiver back;
      for (const auto& l : r.lines) {
        constexpr std::string_view kVerb = "X-LINK2STATE ";
        if (l.size() > kVerb.size() && l.compare(0, kVerb.size(), kVerb) == 0) {
          auto step = back.feed(std::string_view(l).substr(kVerb.size()));
          if (step.status == Link2StateStatus::kComplete) {
            result.link2state_reply = std::move(step.payload);
          } else if (step.status != Link2StateStatus::kAccepted) {
            break;  // not well formed: ignored, the mail goes on
          }
        }
      }
    }
    begin_transaction();
  }

  void start_body() {
    if (body_mode == BodyMode::kData) {
      command("DATA", {Stage::kData});
      arm_head();
    } else {
      ask_body();
    }
  }

  void ask_body() {
    want_body = true;
    out.emplace_back(NeedBody{cfg.body_chunk});
  }

  void expect_final() {
    if (cfg.lmtp) {
      // RFC 2033 §4.2: one reply per accepted recipient, in RCPT order.
      for (std::size_t i : rcpts) {
        if (accepted[i]) {
          expect.push_back({Stage::kFinal, i});
        }
      }
    } else {
      expect.push_back({Stage::kFinal});
    }
    arm_head();
  }

  void on_reply(const Reply& r) {
    if (expect.empty()) {
      // Nothing was asked (e.g. a 421 or 554 while we write the body): the server has
      // given up on this session.
      fail_connection(reply_error(r, "unexpected reply"), r.code);
      return;
    }
    Expect e = expect.front();
    expect.pop_front();
    if (cfg.on_reply) {
      cfg.on_reply(verb_of(e.stage), r.code, r.lines.empty() ? std::string_view{} : r.lines.front());
    }
    if (e.stage == Stage::kQuit) {
      disconnect();  // whatever it says
      return;
    }
    if (r.code == 421) {
      // RFC 5321 §3.8: the server is shutting down this channel, whatever it was asked;
      // every recipient still open shares the 421.
      fail_connection(reply_error(r, describe(e.stage)), r.code);
      return;
    }
    bool continuation_due = e.stage == Stage::kData || e.stage == Stage::kXexch50 || e.stage == Stage::kAuth ||
                            e.stage == Stage::kAuthLoginUser || e.stage == Stage::kAuthLoginPass ||
                            e.stage == Stage::kAuthSasl;
    if ((r.intermediate() && !continuation_due) || (r.positive() && e.stage == Stage::kData)) {
      // A 3xx where no continuation is due, or DATA "accepted" without 354: the server
      // is out of step with us, and nothing it says next can be matched.
      fail_connection(transient_error("4.5.0", std::string("out of step: ") + r.summary() + " as " +
                                                   describe(e.stage)),
                      r.code);
      return;
    }
    switch (e.stage) {
      case Stage::kGreeting:
        if (r.code == 220) {
          hello();
        } else {
          hop_fail(reply_error(r, "greeting"), r.code);
          // RFC 5321 §3.1: after a 554 greeting the client sends QUIT.
          if (r.permanent()) {
            quit();
          } else {
            disconnect();
          }
        }
        return;
      case Stage::kHello:
        if (r.code == 250) {
          caps = parse_ehlo(r);
          proceed();
        } else if (!cfg.lmtp && (r.code == 500 || r.code == 501 || r.code == 502 || r.code == 504 ||
                                 r.code == 550)) {
          // RFC 5321 §3.2: a server that does not know EHLO; try the old greeting.
          command("HELO " + cfg.helo_name, {Stage::kHelo});
          arm_head();
        } else {
          hop_fail(reply_error(r, cfg.lmtp ? "LHLO" : "EHLO"), r.code);
          quit();
        }
        return;
      case Stage::kHelo:
        if (r.code == 250) {
          caps = ServerCapabilities{};
          proceed();
        } else {
          hop_fail(reply_error(r, "HELO"), r.code);
          quit();
        }
        return;
      case Stage::kStartTls:
        if (r.code == 220) {
          tls_reply_seen = true;  // StartTls is emitted once the read is known to end here
        } else if (cfg.tls == TlsPolicy::kRequired) {
          hop_fail(
              transient_error("4.7.4", "TLS is required, but STARTTLS was refused: " + r.summary()),
              r.code);
          quit();
        } else {
          caps.starttls = false;  // opportunistic: carry on in plaintext
          proceed();
        }
        return;
      case Stage::kAuthLoginUser:
      case Stage::kAuthLoginPass:
        if (r.code == 334) {
          bool user = e.stage == Stage::kAuthLoginUser;
          command(base64(user ? cfg.auth->user : cfg.auth->password),
                  {user ? Stage::kAuthLoginPass : Stage::kAuth});
          arm_head();
        } else {
          auth_failed(r);
        }
        return;
      case Stage::kAuthSasl:
        if (r.code == 334) {
          auto challenge = base64_decode(r.lines.empty() ? std::string_view() : sasl_text(r));
          auto answer = challenge.ok() ? sasl->step(challenge.bytes)
                                       : Result<std::string>(transient_error("4.5.0", "bad base64"));
          if (!answer.ok()) {
            // RFC 4954 §4: "*" cancels; the server answers 501, which ends the login.
            hop_fail(transient_error("4.7.8", cfg.sasl_verb + " " + sasl->mechanism() + ": " +
                                                  answer.error().message));
            command("*", {Stage::kAuth});
          } else {
            command(base64(answer.value()), {Stage::kAuthSasl});
          }
          arm_head();
        } else if (r.code == 235) {
          result.authenticated = true;
          if (cfg.sasl_verb == "X-EXPS" && (msg.properties || !msg.link2state.empty()) &&
              !caps.xexch50 && !caps.link2state) {
            hello();  // the peer verbs are offered to the logged-in peer only
            return;
          }
          proceed();
        } else {
          auth_failed(r);
        }
        return;
      case Stage::kAuth:
        if (r.code == 235) {
          result.authenticated = true;
          proceed();
        } else {
          auth_failed(r);
        }
        return;
      case Stage::kMail:
        if (r.positive() && !caps.pipelining) {
          send_next_rcpt();
          return;
        }
        if (!r.positive()) {
          // Every recipient shares the MAIL failure. Pipelined RCPT/DATA replies are still
          // due and are read (and ignored) before QUIT.
          mail_failed = true;
          hop_fail(reply_error(r, "MAIL"), r.code);
          if (expect.empty()) {
            quit();
            return;
          }
        }
        arm_head();
        return;
      case Stage::kRcpt:
        if (!mail_failed) {
          if (r.positive()) {
            accepted[e.rcpt] = true;
          } else {
            decide(e.rcpt, r);
          }
        }
        if (next_rcpt < rcpts.size()) {
          send_next_rcpt();
        } else if (expect.empty()) {
          after_rcpts();
        } else {
          arm_head();  // DATA's reply is next (pipelined)
        }
        return;
      case Stage::kLink2State:
        on_link2state_reply(r);
        return;
      case Stage::kXexch50:
        if (r.code == 354) {
          send(xexch50_blob);
          expect.push_back({Stage::kXexch50Blob});
          arm_head();
        } else {
          start_body();  // refused: the message goes on without its properties
        }
        return;
      case Stage::kXexch50Blob:
        if ((r.transient() || r.permanent()) && r.enhanced_or_generic().substr(1) == ".4.6") {
          decide_accepted(r);  // the server saw a loop: 4.4.6 later, 5.4.6 never
          quit();
        } else {
          start_body();
        }
        return;
      case Stage::kData:
        if (mail_failed || !any_accepted()) {
          if (r.code == 354) {
            // RFC 2920 §3.1: DATA was accepted though no RCPT was: an empty message
            // ends it, and its reply is ignored.
            send(".\r\n");
            expect.push_back({Stage::kAbortDot});
            arm_head();
          } else {
            quit();
          }
        } else if (r.code == 354) {
          arm(ClientTimer::kDataBlock);
          ask_body();
        } else {
          decide_accepted(r);
          quit();
        }
        return;
      case Stage::kBdat:
        if (r.positive()) {
          arm(ClientTimer::kDataBlock);
          ask_body();
        } else {
          decide_accepted(r);
          quit();
        }
        return;
      case Stage::kFinal:
        if (cfg.lmtp) {
          decide(e.rcpt, r);
          if (expect.empty()) {
            quit();
          } else {
            arm_head();
          }
        } else {
          decide_accepted(r);  // SMTP: one reply for all accepted recipients
          quit();
        }
        return;
      case Stage::kAbortDot:
        quit();
        return;
      case Stage::kRset:
        if (r.code == 250) {
          proceed();
        } else {
          // The server no longer wants this connection; nothing was asked of it yet, so
          // the relay takes a new connection (mail_sent stays false).
          hop_fail(transient_error("4.4.2", std::string("reused connection: ") + r.summary()),
                   r.code);
          quit();
        }
        return;
      case Stage::kQuit:
        return;  // handled above
    }
  }

  void auth_failed(const Reply& r) {
    // Transient in every case: a refused login is a configuration fault on one side, and
    // bouncing the mail would not fix it (RFC 4954 §6 codes keep their text).
    if (r.transient()) {
      hop_fail(reply_error(r, "AUTH"), r.code);
    } else {
      hop_fail(transient_error("4.7.8", "authentication failed: " + r.summary()), r.code);
    }
    if (r.intermediate()) {
      disconnect();  // a 334 where none was due: the exchange is out of step
    } else {
      quit();
    }
  }

  // ---- events ----
  void bytes(std::string_view in) {
    while (!in.empty() && !closed) {
      if (tls_reply_seen) {
        // CVE-2011-0411 class: octets behind the 220 to STARTTLS would be read as if
        // they came through TLS. An honest server sends nothing more.
        fail_connection(transient_error("4.5.0", "data after the reply to STARTTLS"));
        return;
      }
      auto step = parser.feed(in);
      if (!step.ok()) {
        fail_connection(step.error());
        return;
      }
      in.remove_prefix(step->consumed);
      if (step->reply) {
        on_reply(*step->reply);
      }
    }
    if (tls_reply_seen && !closed) {
      if (!parser.idle()) {
        fail_connection(transient_error("4.5.0", "data after the reply to STARTTLS"));
        return;
      }
      tls_reply_seen = false;
      tls_in_progress = true;
      arm(ClientTimer::kTlsHandshake);
      out.emplace_back(StartTls{});
    }
  }

  void body_chunk(std::string_view data, bool last) {
    want_body = false;
    if (body_mode == BodyMode::kData) {
      send(stuffer.feed(data, last));
      if (last) {
        expect_final();
      } else {
        arm(ClientTimer::kDataBlock);
        ask_body();
      }
      return;
    }
    if (!last && data.empty()) {
      ask_body();  // "BDAT 0" without LAST is a junk command: ask again instead
      return;
    }
    // RFC 3030 §2: exactly n octets follow "BDAT n"; no stuffing, no line rules.
    send("BDAT " + std::to_string(data.size()) + (last ? " LAST\r\n" : "\r\n"));
    send(data);
    if (last) {
      expect_final();
    } else {
      expect.push_back({Stage::kBdat});
      arm_head();
    }
  }
};

ClientSession::ClientSession(ClientConfig config, OutboundMessage message)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(message))) {}
ClientSession::~ClientSession() = default;

ClientActions ClientSession::start() {
  if (impl_->closed || !impl_->expect.empty()) {
    return {};
  }
  impl_->expect.push_back({Impl::Stage::kGreeting});
  impl_->arm_head();
  return impl_->take();
}

ClientActions ClientSession::on_bytes(std::string_view bytes) {
  if (impl_->closed) {
    return {};
  }
  if (impl_->tls_in_progress) {
    impl_->fail_connection(transient_error("4.5.0", "plaintext data during the TLS handshake"));
  } else {
    impl_->bytes(bytes);
  }
  return impl_->take();
}

ClientActions ClientSession::on_tls_established() {
  if (impl_->closed || !impl_->tls_in_progress) {
    return {};
  }
  // RFC 3207 §4.2: everything learnt before TLS is forgotten; EHLO again.
  impl_->tls_in_progress = false;
  impl_->tls_active = true;
  impl_->result.tls = true;
  impl_->caps = ServerCapabilities{};
  impl_->hello();
  return impl_->take();
}

ClientActions ClientSession::on_tls_failed() {
  if (impl_->closed) {
    return {};
  }
  impl_->fail_connection(transient_error("4.7.5", "TLS handshake failed"));
  return impl_->take();
}

ClientActions ClientSession::on_body_chunk(std::string_view data, bool last) {
  if (impl_->closed || !impl_->want_body) {
    return {};
  }
  impl_->body_chunk(data, last);
  return impl_->take();
}

ClientActions ClientSession::on_timeout() {
  if (impl_->closed) {
    return {};
  }
  impl_->fail_connection(transient_error("4.4.2", "timeout waiting for " + impl_->where()));
  return impl_->take();
}

ClientActions ClientSession::on_eof() {
  if (impl_->closed) {
    return {};
  }
  impl_->fail_connection(
      transient_error("4.4.2", "connection lost while waiting for " + impl_->where()));
  return impl_->take();
}

ClientActions ClientSession::start_held(const HeldState& state) {
  if (impl_->closed || impl_->finished || !impl_->expect.empty()) {
    return {};
  }
  impl_->caps = state.capabilities;
  impl_->tls_active = state.tls;
  impl_->result.tls = state.tls;
  impl_->result.authenticated = state.authenticated;
  impl_->command("RSET", {Impl::Stage::kRset});
  impl_->arm_head();
  return impl_->take();
}

ClientActions ClientSession::close_held() {
  if (!impl_->held_open || impl_->closed) {
    return {};
  }
  impl_->held_open = false;
  impl_->command("QUIT", {Impl::Stage::kQuit});
  impl_->arm_head();
  return impl_->take();
}

bool ClientSession::held_open() const { return impl_->held_open; }
bool ClientSession::finished() const { return impl_->finished; }
bool ClientSession::closed() const { return impl_->closed; }
bool ClientSession::wants_body() const { return impl_->want_body; }
const ClientResult& ClientSession::result() const { return impl_->result; }
const ServerCapabilities& ClientSession::capabilities() const { return impl_->caps; }

Result<std::string> LoginClientSasl::step(std::string_view /*challenge*/) {
  switch (steps_++) {
    case 0:
      return credentials_.user;
    case 1:
      return credentials_.password;
    default:
      return transient_error("4.7.8", "LOGIN: the server asked a third question");
  }
}

}  // namespace bh::smtp
