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

std::optional<std::string> PolicySink::on_command(const CommandEvent& e) {
  const bool mail = e.verb == "MAIL", rcpt = e.verb == "RCPT";
  if (!mail && !rcpt) {
    return std::nullopt;
  }
  const std::string a = path_address(e.argument);
  for (const auto& p : mail ? config_.reject_senders : config_.reject_recipients) {
    if (!a.empty() && address_matches(p, a)) {
      return std::to_string(config_.code) + " " + config_.enhanced + " " + config_.text +
             (mail ? " (sender)" : " (recipient)");
    }
  }
  return std::nullopt;
}

std::optional<std::string> ReplyTextSink::on_reply(const ReplyEvent& e) {
  bool listed = false;
  for (const auto& v : verbs_) {
    listed = listed || ascii_upper(v) == e.verb;
  }
  if (!listed || e.reply.size() < 4) {
    return std::nullopt;
  }
  std::string out(e.reply.substr(0, 4));  // "NNN "
  std::string_view rest = e.reply.substr(4);
  // Keep an enhanced code (x.y.z) if the reply has one.
  auto sp = rest.find(' ');
  std::string_view first = rest.substr(0, sp);
  if (first.size() >= 5 && first[1] == '.' &&
      first.find_first_not_of("0123456789.") == std::string_view::npos) {
    out.append(first).push_back(' ');
  }
  out += text_;
  return out;
}

void JournalSink::on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor,
                             Done done) {
  auto& rs = event->envelope.recipients;
  bool present = false;
  for (const auto& r : rs) {
    present = present || ascii_lower(r.address) == ascii_lower(recipient_.address);
  }
  if (!present) {
    rs.push_back(recipient_);
  }
  done(Verdict::go_on());
}

}  // namespace bh::sinks
