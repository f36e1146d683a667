#pragma once
// MilterSink: a Sendmail milter (protocol version 6) as an arrival sink, over Asio.
//
// For each message it opens one connection to the milter and replays the SMTP
// conversation it would have seen (negotiate, connect, HELO, MAIL, RCPT..., DATA,
// headers, end of headers, body chunks, end of message) with macros, then applies the
// milter's actions (add/insert/change headers, replace body, add/delete recipients,
// change sender, quarantine) and maps its answer to a Verdict: accept/continue ->
// kContinue, reject -> 550 5.7.1, tempfail -> 451 4.7.1, SMFIR_REPLYCODE -> that code,
// discard -> kDiscard. A milter that cannot be reached, breaks the protocol, or does not
// answer within `timeout` is a sink failure: the chain applies the configured default
// action (failure policy). docs/sinks.md lists what is not supported.
//
// Threading: all socket work runs on the executor given to on_message; nothing blocks.
// Protocol code: sinks/milter_protocol.h (sans I/O).

#include <chrono>
#include <cstdint>
#include <string>

#include "sinks/sink.h"

namespace bh::sinks {

struct MilterConfig {
  std::string socket;  // "inet:PORT@IP" (IP literal: no DNS) or "unix:/path"
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds command_timeout{10000};  // per reply (SMFIR_PROGRESS restarts it)
  std::string hostname;                              // our name, macro j and {daemon_name}
  std::size_t max_body = 64u << 20;                  // SMFIR_REPLBODY total
};

// "inet:PORT@IP" / "unix:/path" -> error text, or empty when valid.
std::string check_milter_socket(const std::string& spec);

class MilterSink : public MessageSink {
 public:
  explicit MilterSink(MilterConfig config);
  void on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor ex,
                  Done done) override;

 private:
  MilterConfig config_;
};

}  // namespace bh::sinks
