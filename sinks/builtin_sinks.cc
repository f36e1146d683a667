#include "sinks/builtin_sinks.h"

#include "common/text.h"
#include "sinks/message_edit.h"

namespace bh::sinks {

bool address_matches(const std::string& pattern, const std::string& address) {
  const std::string a = ascii_lower(address);
  const std::string p = ascii_lower(pattern);
  if (!p.empty() && p.front() == '@') {
    return a.size() > p.size() && a.compare(a.size() - p.size(), p.size(), p) == 0;
  }
  return a == p;
}

void HeaderStampSink::on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor,
                                 Done done) {
  add_header(event->message, name_, value_);
  done(Verdict::go_on());
}

void PolicySink::on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor,
                            Done done) {
  auto refuse = [&](const std::string& why) {
    Error e = config_.code < 500 ? transient_error(config_.enhanced, config_.text + why)
                                 : permanent_error(config_.enhanced, config_.text + why);
    e.reply_code = config_.code;
    done(Verdict::reject(std::move(e)));
  };
  for (const auto& p : config_.reject_senders) {
    if (address_matches(p, event->envelope.sender)) {
      refuse(" (sender)");
      return;
    }
  }
  for (const auto& r : event->envelope.recipients) {
    for (const auto& p : config_.reject_recipients) {
      if (address_matches(p, r.address)) {
        refuse(" (recipient)");
        return;
      }
    }
  }
  done(Verdict::go_on());
}

void JournalSink::on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor,
                             Done done) {
  auto& rs = event->envelope.recipients;
  bool present = false;
  for (const auto& r : rs) {
    present = present || ascii_lower(r.address) == ascii_lower(address_);
  }
  if (!present) {
    queue::Recipient r;
    r.address = address_;
    r.mailbox = mailbox_;
    rs.push_back(r);
  }
  done(Verdict::go_on());
}

}  // namespace bh::sinks
