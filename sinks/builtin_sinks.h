#pragma once
// Built-in arrival sinks, in C++ (docs/sinks.md "Built-in sinks"):
//   HeaderStampSink  appends one header field to every message;
//   PolicySink       refuses listed senders / recipients (exact address or @domain);
//   JournalSink      adds a journal address as an extra envelope recipient (a copy of
//                    every message goes there, like Exchange's envelope journaling).
// All are synchronous and cheap: they answer before on_message returns.

#include <string>
#include <vector>

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

class PolicySink : public MessageSink {
 public:
  explicit PolicySink(PolicyConfig config) : config_(std::move(config)) {}
  void on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor ex,
                  Done done) override;

 private:
  PolicyConfig config_;
};

class JournalSink : public MessageSink {
 public:
  // `mailbox`: the local mailbox of the address (empty: the queue routes it onward).
  JournalSink(std::string address, std::string mailbox)
      : address_(std::move(address)), mailbox_(std::move(mailbox)) {}
  void on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor ex,
                  Done done) override;

 private:
  std::string address_, mailbox_;
};

// "user@domain" matches itself (case-insensitively); "@domain" every address there.
bool address_matches(const std::string& pattern, const std::string& address);

}  // namespace bh::sinks
