#pragma once
// Built-in arrival sinks, in C++ (docs/sinks.md "Built-in sinks"):
//   HeaderStampSink  appends one header field to every message;
//   PolicySink       refuses listed senders / recipients (exact address or @domain);
//   JournalSink      adds a journal address as an extra envelope recipient (a copy of
//                    every message goes there, like Exchange's envelope journaling).
// All are synchronous and cheap: they answer before on_message returns.

#include <string>
#include <vector>

#include "sinks/protocol_sink.h"
#include "sinks/sink.h"

namespace bh::sinks {

class HeaderStampSink : public MessageSink {
 public:
  HeaderStampSink(std::string name, std::string value)
      : name_(std::move(name)), value_(std::move(value)) {}
  void on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor ex,
                  Done done) override;

 private:
  std::string name_, value_;
};

struct PolicyConfig {
  std::vector<std::string> reject_senders;     // "user@domain" or "@domain", lower-case
  std::vector<std::string> reject_recipients;  // same
  int code = 550;
  std::string enhanced = "5.7.1";
  std::string text = "Message refused by policy";
};

// As an arrival sink it refuses the whole message; in the on_command chain it answers
// MAIL (listed sender) and RCPT (listed recipient) itself, before they are performed.
class PolicySink : public MessageSink, public ProtocolSink {
 public:
  explicit PolicySink(PolicyConfig config) : config_(std::move(config)) {}
  void on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor ex,
                  Done done) override;
  std::optional<std::string> on_command(const CommandEvent& e) override;

 private:
  PolicyConfig config_;
};

class JournalSink : public MessageSink {
 public:
  // `recipient`: the journal address as it is added to each message: with its local
  // mailbox (file directory), with `categorize` set (LDAP: resolved per message by the
  // categorizer, so a group, a forward or a mailbox homed elsewhere is honoured), or
  // neither (the queue routes it onward).
  explicit JournalSink(queue::Recipient recipient) : recipient_(std::move(recipient)) {}
  void on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor ex,
                  Done done) override;

 private:
  queue::Recipient recipient_;
};

// Protocol sink: replies to the listed verbs keep their code and enhanced code and get
// `text` instead (e.g. hide the software name in the banner, "CONNECT").
class ReplyTextSink : public ProtocolSink {
 public:
  ReplyTextSink(std::vector<std::string> verbs, std::string text)
      : verbs_(std::move(verbs)), text_(std::move(text)) {}
  std::optional<std::string> on_reply(const ReplyEvent& e) override;

 private:
  std::vector<std::string> verbs_;
  std::string text_;
};

// "user@domain" matches itself (case-insensitively); "@domain" every address there.
bool address_matches(const std::string& pattern, const std::string& address);

}  // namespace bh::sinks
