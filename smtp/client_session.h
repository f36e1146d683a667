#pragma once
// ClientSession: the outbound SMTP / LMTP state machine for one connection delivering one
// message to one server, sans I/O (RFC 5321, 1869, 1870, 2033, 2920, 3030, 3207, 3461,
// 4954, 6152, 6531).
//
// Events go in (start, bytes read, TLS up, body chunks, deadline expired, connection
// lost); ClientActions come out, and the adapter performs them in order:
//   SendBytes    write these octets (commands, or body data already dot-stuffed / BDAT
//                framed); never more than one body chunk plus a command line at a time
//   ArmDeadline  (re)arm the single deadline; on expiry call on_timeout()
//   StartTls     run the TLS handshake on the connection, then on_tls_established() or
//                on_tls_failed(); bytes read before the handshake are never fed
//   NeedBody     read the next piece of the message (at most max_bytes octets) from the
//                queue file, after the preceding SendBytes has been written, and answer
//                with on_body_chunk(data, last) exactly once
//   Finished     the outcome for every recipient (emitted exactly once)
//   Disconnect   close the connection (emitted exactly once, after Finished)
// The body is streamed: the session holds one chunk at a time, never the message.
//
// Owns: the reply parser, the server's capabilities, the commands awaiting replies (in
// order, for PIPELINING) and the outcome per recipient. Trust: every server octet is
// hostile; replies are capped by ReplyLimits (CVE-2020-8794 class). Threading: one
// thread at a time (the connection's).
//
// Error classes (docs/smtp-client.md has the full table): a server reply keeps its own
// class and enhanced code (a generic X.0.0 when it sent none); a malformed reply is
// transient 4.5.0; timeout and lost connection transient 4.4.2; TLS required but not
// offered transient 4.7.4, handshake failure 4.7.5; authentication failure transient
// 4.7.8; message larger than the server's SIZE permanent 5.3.4; 8-bit or binary body the
// server cannot take permanent 5.6.3; SMTPUTF8 needed but not offered permanent 5.6.7.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.h"
#include "smtp/link2state.h"
#include "smtp/xexch50_props.h"
#include "queue/envelope.h"
#include "smtp/reply_parser.h"

namespace bh::smtp {

enum class TlsPolicy {
  kNever,          // never send STARTTLS
  kOpportunistic,  // STARTTLS when offered; plaintext when not (or when it is refused)
  kRequired,       // no TLS, no mail: transient 4.7.4
};

// Deadline kinds; RFC 5321 §4.5.3.2 gives the defaults.
enum class ClientTimer {
  kGreeting,      // 220 banner (§4.5.3.2.1: 5 min)
  kCommand,       // EHLO/LHLO/HELO, STARTTLS, AUTH, RSET, QUIT (no RFC value; 5 min)
  kMail,          // MAIL reply (§4.5.3.2.2: 5 min)
  kRcpt,          // RCPT reply (§4.5.3.2.3: 5 min)
  kDataInit,      // 354 reply to DATA (§4.5.3.2.4: 2 min)
  kDataBlock,     // writing one body chunk, or a non-final BDAT reply (§4.5.3.2.5: 3 min)
  kDataTerm,      // reply(s) after the final dot or BDAT LAST (§4.5.3.2.6: 10 min)
  kTlsHandshake,  // the StartTls handshake (not in RFC 5321; 1 min)
};

struct ClientTimeouts {
  std::chrono::milliseconds greeting{std::chrono::minutes(5)};
  std::chrono::milliseconds command{std::chrono::minutes(5)};
  std::chrono::milliseconds mail{std::chrono::minutes(5)};
  std::chrono::milliseconds rcpt{std::chrono::minutes(5)};
  std::chrono::milliseconds data_init{std::chrono::minutes(2)};
  std::chrono::milliseconds data_block{std::chrono::minutes(3)};
  std::chrono::milliseconds data_term{std::chrono::minutes(10)};
  std::chrono::milliseconds tls_handshake{std::chrono::minutes(1)};

  std::chrono::milliseconds of(ClientTimer kind) const;
};

struct ClientCredentials {
  std::string user;
  std::string password;
};

// A SASL mechanism the session runs itself (e.g. GSSAPI through Cyrus SASL:
// auth/sasl_client.h), for AUTH or, between the organization's nodes, X-EXPS. Raw bytes
// in and out; the session does the base64. Called on the session's thread; may block
// briefly (a Kerberos ticket from the KDC).
class ClientSasl {
 public:
  virtual ~ClientSasl() = default;
  virtual std::string mechanism() const = 0;  // upper case, e.g. "GSSAPI"
  // The initial response (nullopt: none, the server sends the first challenge).
  virtual Result<std::optional<std::string>> start() = 0;
  virtual Result<std::string> step(std::string_view challenge) = 0;
};

// LOGIN (draft-murchison-sasl-login) as a ClientSasl, for X-EXPS LOGIN between nodes
// (AUTH LOGIN has its own path through ClientConfig::auth): the user name is the answer
// to the first challenge, the password to the second; a third challenge is an error.
class LoginClientSasl final : public ClientSasl {
 public:
  explicit LoginClientSasl(ClientCredentials credentials) : credentials_(std::move(credentials)) {}
  std::string mechanism() const override { return "LOGIN"; }
  Result<std::optional<std::string>> start() override { return std::optional<std::string>(); }
  Result<std::string> step(std::string_view challenge) override;

 private:
  ClientCredentials credentials_;
  int steps_ = 0;
};

struct ClientConfig {
  std::string helo_name = "localhost";  // our name in EHLO/LHLO/HELO
  bool lmtp = false;                    // RFC 2033: LHLO, one reply per recipient after data
  TlsPolicy tls = TlsPolicy::kOpportunistic;
  std::optional<ClientCredentials> auth;  // AUTH PLAIN / LOGIN to a smart host
  // Instead of `auth`: this mechanism, with the verb `sasl_verb` ("AUTH" or "X-EXPS").
  // Without TLS only if auth_without_tls (X-EXPS peers never accept it in clear text).
  std::function<std::unique_ptr<ClientSasl>()> sasl;
  std::string sasl_verb = "AUTH";
  bool auth_without_tls = false;          // allow AUTH over plaintext (test setups only)
  bool use_chunking = true;               // BDAT when the server offers CHUNKING
  // A finished transaction with the server in step ends without QUIT and Disconnect
  // (held_open()), so the connection can carry another session (ATRN, RFC 2645, or the
  // relay's next message to the same server: start_held()). Any failure still ends the
  // connection as usual.
  bool hold_open = false;
  std::size_t body_chunk = 1u << 20;      // NeedBody::max_bytes (and so the BDAT size)
  // Outbound command events (sinks/outbound_sink.h): called before each command line is
  // sent, with its verb (upper case) and the line without CRLF (the arguments of AUTH /
  // X-EXPS and the SASL responses masked as "***"; BDAT chunks and body data are not
  // offered). nullopt: send it. An error: the line is not sent and the session ends with
  // it as the hop error (transient expected: every recipient without a final reply is
  // retried), with QUIT and Disconnect. QUIT itself is not offered.
  std::function<std::optional<Error>(std::string_view verb, std::string_view line)> on_command;
  // Each reply to a command, for observation: the verb it answers ("CONNECT" for the
  // greeting, "." for the end of data), its code and first line of text.
  std::function<void(std::string_view verb, int code, std::string_view text)> on_reply;
  ReplyLimits reply_limits;
  ClientTimeouts timeouts;
};

struct OutboundRecipient {
  std::string address;  // without <>
  std::uint8_t notify = queue::kNotifyUnspecified;
  std::string orcpt;  // decoded "addr-type;address", or empty
};

// The envelope of this hop; the body comes through NeedBody / on_body_chunk.
struct OutboundMessage {
  std::string sender;  // reverse-path without <>; empty for the null sender
  std::vector<OutboundRecipient> recipients;
  queue::BodyType body = queue::BodyType::k7Bit;
  queue::DsnRet ret = queue::DsnRet::kUnspecified;
  std::string envid;  // decoded
  bool smtputf8 = false;
  std::uint64_t size = 0;  // body octets as stored, for SIZE= and the SIZE check
  // XEXCH50 properties for a node of the organization (smtp/xexch50_props.h), one
  // Recipient entry per entry of `recipients`. Sent after the last RCPT, for the
  // accepted recipients only, when the server offers XEXCH50 after our X-EXPS login
  // (the session says EHLO again after it to see the peer verbs). A refused XEXCH50 is
  // no reason to stop: the message goes on without them; a loop reply (X.4.6: 451 4.4.6
  // "passed through here already", 554 5.4.6 "too many hops") ends the transaction and
  // every accepted recipient gets that reply (4xx: retried later, 5xx: failed).
  std::optional<Xexch50Props> properties;
  // An X-LINK2STATE payload (our link-state table) for a bridgehead of another routing
  // group: sent after the X-EXPS login and before MAIL when the server offers the verb,
  // one chunk line at a time; the server's own table may come back in the 250 to the
  // LAST chunk (ClientResult::link2state_reply). A refused chunk only ends the exchange:
  // the mail goes on. Empty: none.
  std::string link2state;
};

// What EHLO (or LHLO) told us. After HELO everything is off.
struct ServerCapabilities {
  bool esmtp = false;
  bool pipelining = false, eightbitmime = false, binarymime = false, chunking = false, dsn = false,
       smtputf8 = false, starttls = false, enhancedstatuscodes = false;
  bool size = false;
  std::uint64_t size_limit = 0;   // SIZE n; 0 = no limit announced
  std::vector<std::string> auth;  // mechanisms, upper-cased
  std::vector<std::string> x_exps;  // X-EXPS mechanisms (Exchange peers), upper-cased
  bool xexch50 = false;             // offered to peers only (after X-EXPS)
  bool link2state = false;          // X-LINK2STATE, likewise
};
// Keywords from the lines after the first of a 250 EHLO reply (RFC 5321 §4.1.1.1),
// case-insensitive; "AUTH=..." (pre-RFC 4954 form) counts as AUTH.
ServerCapabilities parse_ehlo(const Reply& reply);

enum class DeliveryStatus { kDelivered, kTransient, kPermanent };

struct RecipientOutcome {
  std::string address;
  DeliveryStatus status = DeliveryStatus::kTransient;
  int code = 0;          // the server's reply code, 0 when decided here (timeout, SIZE...)
  std::string enhanced;  // always set: the server's, a generic X.0.0, or ours
  std::string text;      // the server's text or our diagnostic; no CR/LF
};

struct ClientResult {
  std::vector<RecipientOutcome> recipients;  // in OutboundMessage order
  // Set when the session failed as a whole (greeting, EHLO, TLS, AUTH, SIZE, MAIL,
  // malformed reply, timeout, lost connection); every recipient without its own reply
  // then carries this class and code.
  std::optional<Error> hop_error;
  int hop_code = 0;  // the server reply behind hop_error, 0 if none
  bool tls = false;  // TLS was established
  bool authenticated = false;
  bool dsn_passed = false;  // the server took DSN parameters (else DSN "relayed" is due)
  // MAIL was sent: the server may have seen a transaction. A relay moves on to the next
  // MX only for failures before this point (RFC 5321 §5.1; docs/smtp-client.md).
  bool mail_sent = false;
  // The X-LINK2STATE payload the server sent back in its reply to our LAST chunk
  // (decoded, reassembled); empty when none came or it was not well formed.
  std::string link2state_reply;
};

// ---- Actions ----
struct SendBytes {
  std::string bytes;
};
struct ArmDeadline {
  ClientTimer kind;
  std::chrono::milliseconds after;
};
struct StartTls {};
struct NeedBody {
  std::size_t max_bytes;
};
struct Finished {
  ClientResult result;
};
struct Disconnect {};

using ClientAction = std::variant<SendBytes, ArmDeadline, StartTls, NeedBody, Finished, Disconnect>;
using ClientActions = std::vector<ClientAction>;

// What a held connection (ClientConfig::hold_open, held_open()) carries into the next
// session on it: what the server offered, and whether TLS and the login are up.
struct HeldState {
  ServerCapabilities capabilities;
  bool tls = false;
  bool authenticated = false;
};

class ClientSession {
 public:
  ClientSession(ClientConfig config, OutboundMessage message);
  ~ClientSession();
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  // The connection is up: wait for the greeting.
  ClientActions start();
  // Instead of start(): this session runs on a connection an earlier session left held
  // open (same server, same TLS policy and credentials). It sends RSET, which proves the
  // connection still works, then goes on as after EHLO, STARTTLS and AUTH. A refused RSET
  // is transient 4.4.2 and, like a timeout or a lost connection here, ends the session
  // before MAIL (ClientResult::mail_sent false): the caller then opens a new connection.
  ClientActions start_held(const HeldState& state);
  // On a session that is held_open(): say QUIT (the connection sat idle too long, or is
  // not wanted); Disconnect follows the reply, a timeout or the end of the connection.
  ClientActions close_held();
  // Bytes from the server, exactly as read.
  ClientActions on_bytes(std::string_view bytes);
  // The StartTls handshake finished: EHLO again, all earlier capabilities forgotten.
  ClientActions on_tls_established();
  // The handshake failed: transient 4.7.5 (the connection is unusable).
  ClientActions on_tls_failed();
  // The next piece of the body for the last NeedBody; `last` on the final piece (which
  // may be empty).
  ClientActions on_body_chunk(std::string_view data, bool last);
  // The deadline from the last ArmDeadline expired.
  ClientActions on_timeout();
  // The server closed the connection, or reading/writing failed.
  ClientActions on_eof();

  bool finished() const;    // Finished has been emitted
  bool held_open() const;   // finished without QUIT: the connection is idle and in step
  bool closed() const;      // Disconnect has been emitted
  bool wants_body() const;  // a NeedBody is outstanding
  const ClientResult& result() const;
  const ServerCapabilities& capabilities() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bh::smtp
