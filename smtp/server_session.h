#pragma once
// ServerSession: the inbound ESMTP state machine (RFC 5321 and extensions), sans I/O.
//
// Bytes and events go in; Actions come out (STYLE.md principle 1). The Asio adapter
// (smtp/connection.h) performs each action in order and feeds results back through the
// on_*_result() methods. While an answer is outstanding (awaiting() != kNothing) the
// session buffers further input (bounded by wants_input()) and acts on it only after the
// answer arrives, so PIPELINING keeps replies in order.
//
// Owns: the session state (greeted, HELO/EHLO mode), the current transaction (envelope
// under construction), the input buffer, counters for junk commands and errors, and the
// data reader while DATA/BDAT is running. Trust: all input is hostile; every length and
// count is capped by SessionConfig. Threading: one thread at a time (the connection's).

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "queue/envelope.h"
#include "smtp/etrn.h"

namespace bh::smtp {

struct PeerInfo;

// Protocol event sinks (sinks/, wired in node/; docs/sinks.md): called synchronously on
// the session's thread, so they must be quick and must not block (in-memory decisions).
class ProtocolHooks {
 public:
  virtual ~ProtocolHooks() = default;
  // A command line before it is performed (`verb` upper-case; "CONNECT" for the banner
  // is not a command and never comes here). nullopt: let it pass; a reply line
  // ("550 5.7.1 text", 4xx or 5xx) answers it instead and the command is not performed.
  virtual std::optional<std::string> on_command(const PeerInfo& peer, std::string_view verb,
                                                std::string_view argument) = 0;
  // A single-line reply about to be sent for `verb` ("CONNECT" for the banner): nullopt
  // keeps it; a line with the same first digit replaces it (others are ignored).
  virtual std::optional<std::string> on_reply(const PeerInfo& peer, std::string_view verb,
                                              std::string_view reply) = 0;
};

struct SessionConfig {
  std::string hostname = "localhost";  // our name in the banner, EHLO and Received
  std::uint64_t max_message_size = 35ull << 20;  // SIZE, enforced while streaming
  std::size_t max_recipients = 100;
  std::size_t max_command_line = 512;    // RFC 5321 4.5.3.1.4
  std::size_t max_text_line = 1000;      // RFC 5321 4.5.3.1.6 (DATA lines longer are kept intact)
  std::size_t max_header_bytes = 1u << 20;  // all header lines together (hostile #38)
  // Mail loops (RFC 5321 6.3, DESIGN 4.3): a message arriving with more Received fields
  // than this is refused after its data with 554 5.4.6; nothing is queued.
  std::size_t max_hops = 30;
  // Offer STARTTLS (RFC 3207); the adapter has a server TLS context.
  bool starttls = false;
  // AUTH (RFC 4954) and X-EXPS: the SASL mechanisms offered, in this order (PLAIN, LOGIN,
  // GSSAPI); empty: neither verb is offered (502 5.5.1).
  std::vector<std::string> auth_mechanisms;
  // Mechanisms that carry a password (PLAIN, LOGIN) only under TLS; before it the AUTH
  // line lists the others and a client that tries anyway gets 538 5.7.11 (hostile #42).
  bool auth_requires_tls = true;
  // X-EXPS is offered (after TLS only: hostile #25) with GSSAPI and LOGIN of the above.
  bool x_exps = true;
  // Submission (RFC 6409 §4.3): MAIL before a successful AUTH gets 530 5.7.0.
  bool require_auth = false;
  std::size_t max_auth_failures = 3;    // per session; then 421 4.7.0 and close
  // ATRN (RFC 2645) for logged-in customers of on-demand relay; TURN (RFC 821) too when
  // `turn` is set. The adapter knows which domains each user may take.
  bool atrn = false;
  bool turn = false;
  // ETRN (RFC 1985): offered and answered; the adapter runs the queue and rate-limits.
  bool etrn = false;
  std::size_t max_auth_line = 12288;    // RFC 4954 §4: AUTH lines and responses
  // XEXCH50 blobs from peer nodes: at most this many octets (552 5.3.4 above; it is kept
  // in the queue file as one record, so at most queue::kMaxXexch50).
  std::size_t max_xexch50 = 60u << 10;
  // This node's id in the organization (link_state): an XEXCH50 property bag whose hop
  // list names it is a routing loop (554 5.4.6). Empty: no loop check by name.
  std::string node_id;
  std::size_t max_errors = 20;           // then 421 4.7.0 and close
  std::size_t max_junk_commands = 100;   // NOOP/RSET/unknown/... without a MAIL (hostile #64)
  std::size_t max_buffered_input = 64u << 10;  // pipelined input held while waiting
  bool vrfy = false;                     // off: 502 5.5.1
  bool pipelining = true, size = true, eightbitmime = true, binarymime = true,
       chunking = true, dsn = true, enhancedstatuscodes = true, smtputf8 = true;
  // RFC 5321 4.5.3.2 timeouts, per line (not per read).
  std::chrono::milliseconds greeting_timeout{std::chrono::minutes(5)};  // waiting for a command
  std::chrono::milliseconds mail_timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds rcpt_timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds data_init_timeout{std::chrono::minutes(2)};
  std::chrono::milliseconds data_block_timeout{std::chrono::minutes(3)};
  std::chrono::milliseconds data_term_timeout{std::chrono::minutes(10)};
  // Protocol event sinks; null: none.
  std::shared_ptr<ProtocolHooks> protocol_hooks;
};

struct PeerInfo {
  std::string address;  // IP literal of the client
  std::string local_address;
  // TLS is up before the session starts (RFC 8314 implicit TLS, port 465): no STARTTLS,
  // Received says ESMTPS.
  bool tls = false;
};

// ---- Actions: what the adapter must do, in order ----
struct SendReply { std::string bytes; };               // one or more complete reply lines
// After flushing earlier SendReply. `after_quit`: the client said QUIT and nothing
// followed it, so the connection may close at once; otherwise (a 421, a limit) it
// lingers first, so a client that pipelined ahead still reads the last reply.
struct CloseConnection { bool after_quit = false; };
struct ArmTimer { std::chrono::milliseconds after; };   // (re)arm the line deadline
struct CheckMail { std::string sender; std::uint64_t declared_size; };  // -> on_mail_result
// -> on_recipient_result. `authenticated`: the client logged in (AUTH), so it may relay.
struct LookupRecipient { std::string address; bool for_vrfy; bool authenticated = false; };
struct BeginMessage {};                                 // -> on_begin_result (queue id)
struct BodyData { std::string bytes; };                 // append to the spool, in order
struct CommitMessage { queue::Envelope envelope; };     // -> on_commit_result
struct AbortMessage {};                                 // discard the spool writer, if any
// After flushing the 220 before it: stop reading, run the TLS server handshake on the
// connection, then -> on_tls_result. Nothing read before it may be used afterwards.
struct BeginTls {};
// One SASL step (RFC 4954) -> on_auth_result. `first`: a new exchange for `mechanism`
// (`verb` is AUTH or X-EXPS) with the decoded initial response, if any; otherwise the
// decoded response to the last challenge. Run off the io thread: it may bind to LDAP.
struct AuthStep {
  bool first = false;
  std::string verb, mechanism;
  std::optional<std::string> response;
};
// The exchange was cancelled or broken by the client: drop the SASL state.
struct AuthAbort {};
// A complete X-LINK2STATE payload from a peer node (DESIGN.md §4.1), for the link-state
// engine; no answer is awaited (the 250 is already sent).
// A complete X-LINK2STATE payload from a peer -> on_link_state_result with the payload
// to send back (our table, when the peer is behind), or none.
struct LinkStateReceived {
  std::string peer;     // the authenticated identity that sent it
  std::string payload;  // decoded, reassembled
};
// ETRN (RFC 1985) for a parsed node -> on_etrn_result with the reply to send.
struct RunEtrn {
  queue::EtrnRequest request;
};
// ATRN / TURN by `user` for `domains` (empty: every domain of the user) -> on_atrn_result.
struct CheckAtrn {
  std::string user;
  std::vector<std::string> domains;
};
// After flushing the 250 before it: the roles reverse (RFC 2645 §4). The session is over;
// the adapter becomes the SMTP client on this connection and sends the mail queued for
// `domains`, then QUIT.
struct TurnAround {
  std::vector<std::string> domains;
};

using Action = std::variant<SendReply, CloseConnection, ArmTimer, CheckMail, LookupRecipient,
                            BeginMessage, BodyData, CommitMessage, AbortMessage, BeginTls,
                            AuthStep, AuthAbort, CheckAtrn, TurnAround, LinkStateReceived,
                            RunEtrn>;
using Actions = std::vector<Action>;

enum class Awaiting { kNothing, kMail, kRecipient, kBegin, kCommit, kTls, kAuth, kAtrn, kEtrn, kLinkState };

// The directory's answer for one RCPT/VRFY lookup.
struct RecipientVerdict {
  enum class Kind { kLocal, kUnknown, kError } kind = Kind::kUnknown;
  std::string mailbox;  // kLocal: mailbox name to store in the envelope
  bool categorize = false;  // kLocal: expanded by the categorizer after spool
  std::string home_server;  // kLocal without mailbox: a mailbox homed on that node
  Error error;          // kError: transient 4.4.3 etc.
};

// The answer to one AuthStep.
struct AuthVerdict {
  enum class Kind {
    kContinue,   // 334 with `challenge`
    kSuccess,    // 235 2.7.0; `user` logged in, `peer`: one of the organization's servers
    kFailed,     // 535 5.7.8
    kTemporary,  // 454 4.7.0 (the password source is unavailable)
    kRefused,    // too many failures from this client: 421 4.7.0 and close
  };
  Kind kind = Kind::kFailed;
  std::string challenge, user;
  bool peer = false;
};

// The answer to CheckAtrn.
struct AtrnVerdict {
  enum class Kind {
    kTurn,       // 250: mail is waiting for `domains` (the ones to take)
    kNoMail,     // 453 You have no mail
    kForbidden,  // 450 4.7.1: `denied` is not one of the user's domains
    kError,      // 451 4.3.0: cannot say right now
  };
  Kind kind = Kind::kError;
  std::vector<std::string> domains;
  std::string denied;
};

struct SessionCounters {
  std::uint64_t commands = 0, errors = 0, junk = 0, messages = 0, recipients = 0;
  std::uint64_t lines_too_long = 0, bare_lf = 0, pipelining_violations = 0, timeouts = 0;
  std::uint64_t auth_successes = 0, auth_failures = 0;
};

class ServerSession {
 public:
  ServerSession(SessionConfig config, PeerInfo peer, const Clock& clock);
  ~ServerSession();
  ServerSession(const ServerSession&) = delete;
  ServerSession& operator=(const ServerSession&) = delete;

  // The banner (220), or 554 and close if the peer talked before it (hostile #9).
  Actions start();
  // Bytes from the peer, exactly as read.
  Actions on_bytes(std::string_view bytes);
  // The per-line deadline from the last ArmTimer expired: 421 4.4.2 and close.
  Actions on_timeout();
  // The peer closed its side.
  Actions on_eof();

  Actions on_mail_result(Result<void> verdict);
  Actions on_recipient_result(RecipientVerdict verdict);
  Actions on_begin_result(Result<std::string> queue_id);
  Actions on_commit_result(Result<std::string> queue_id);
  // The TLS handshake after BeginTls: true starts a fresh session over TLS (RFC 3207
  // 4.2: everything learned before is forgotten; the client must EHLO again); false
  // closes the connection.
  Actions on_tls_result(bool ok);
  bool tls_active() const;
  Actions on_atrn_result(AtrnVerdict verdict);
  // The reply to RunEtrn (smtp/etrn.h etrn_reply or etrn_rate_limited_reply).
  Actions on_etrn_result(EtrnReply reply);
  // The link-state engine's answer to LinkStateReceived. A reply payload goes back in the
  // 250 to the LAST chunk, as continuation lines "250-X-LINK2STATE FIRST|NEXT|LAST
  // CHUNK=..." (each at most 1024 octets, docs/linkstate-protocol.md §4), when it fits
  // kMaxLink2StateReplyLines lines; else (or with none) a plain "250 2.0.0 OK".
  Actions on_link_state_result(std::optional<std::string> reply_payload);
  // The SASL exchange after AuthStep.
  Actions on_auth_result(AuthVerdict verdict);
  // Who logged in with AUTH/X-EXPS (empty: nobody), and whether it has peer rights
  // (XEXCH50, X-LINK2STATE: DESIGN.md §4.1).
  const std::string& authenticated_user() const;
  bool peer_rights() const;

  Awaiting awaiting() const;
  // False while an answer is outstanding and the input buffer holds max_buffered_input:
  // the adapter stops reading until this turns true again.
  bool wants_input() const;
  bool closed() const;
  const SessionCounters& counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bh::smtp
