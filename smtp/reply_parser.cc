// ReplyParser: see reply_parser.h for the contract. One octet at a time, so a reply fed
// whole or in pieces gives the same result and every limit is checked as it is reached.

#include "smtp/reply_parser.h"

#include <algorithm>
#include <utility>

namespace bh::smtp {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// 1..3 digits at t[i...]; returns the index after them, or 0 when there are none or more.
std::size_t digits_1_to_3(std::string_view t, std::size_t i) {
  std::size_t j = i;
  while (j < t.size() && is_digit(t[j]) && j - i < 4) {
    ++j;
  }
  return (j == i || j - i > 3) ? 0 : j;
}

}  // namespace

std::optional<std::string> parse_enhanced_code(std::string_view t) {
  // RFC 3463 §2: status-code = class "." subject "." detail; class 2, 4 or 5.
  if (t.size() < 5 || (t[0] != '2' && t[0] != '4' && t[0] != '5') || t[1] != '.') {
    return std::nullopt;
  }
  std::size_t i = digits_1_to_3(t, 2);
  if (i == 0 || i >= t.size() || t[i] != '.') {
    return std::nullopt;
  }
  i = digits_1_to_3(t, i + 1);
  if (i == 0 || (i < t.size() && t[i] != ' ')) {
    return std::nullopt;
  }
  return std::string(t.substr(0, i));
}

std::string Reply::enhanced_or_generic() const {
  if (!enhanced.empty()) {
    return enhanced;
  }
  switch (code / 100) {
    case 2:
      return "2.0.0";
    case 4:
      return "4.0.0";
    case 5:
      return "5.0.0";
    default:
      return "";
  }
}

std::string Reply::text() const {
  std::string out;
  for (const auto& l : lines) {
    std::string_view v = l;
    if (!enhanced.empty() && v.substr(0, enhanced.size()) == enhanced &&
        (v.size() == enhanced.size() || v[enhanced.size()] == ' ')) {
      v.remove_prefix(std::min(v.size(), enhanced.size() + 1));
    }
    if (!out.empty()) {
      out.push_back(' ');
    }
    out.append(v);
  }
  return out;
}

std::string Reply::summary() const {
  std::string s = std::to_string(code);
  if (!enhanced.empty()) {
    s.append(" ").append(enhanced);
  }
  std::string t = text();
  if (!t.empty()) {
    s.append(" ").append(t);
  }
  return s;
}

ReplyParser::ReplyParser(ReplyLimits limits) : limits_(limits) {}

Result<ReplyParser::Step> ReplyParser::fail(std::string message) {
  failed_ = transient_error("4.5.0", "malformed reply from server: " + std::move(message));
  return *failed_;
}

Result<void> ReplyParser::line_done() {
  if (reply_.lines.empty()) {
    reply_.code = line_code_;
  }
  reply_.lines.push_back(std::move(text_));
  text_.clear();
  line_len_ = 0;
  line_code_ = 0;
  if (reply_.lines.size() > limits_.max_lines) {
    failed_ = transient_error("4.5.0", "malformed reply from server: more than " +
                                           std::to_string(limits_.max_lines) + " lines");
    return *failed_;
  }
  return Ok{};
}

Result<ReplyParser::Step> ReplyParser::feed(std::string_view in) {
  if (failed_) {
    return *failed_;
  }
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (++reply_octets_ > limits_.max_reply) {
      return fail("reply longer than " + std::to_string(limits_.max_reply) + " octets");
    }
    if (saw_cr_) {
      if (c != '\n') {
        return fail("bare CR");
      }
      saw_cr_ = false;
      bool last = separator_ != '-';
      separator_ = 0;
      if (auto r = line_done(); !r) {
        return r.error();
      }
      if (last) {
        Step step;
        step.consumed = i + 1;
        if (auto e = parse_enhanced_code(reply_.lines.front());
            e && (*e)[0] - '0' == reply_.code / 100) {
          reply_.enhanced = std::move(*e);  // RFC 2034 §4: its class matches the reply's
        }
        step.reply = std::move(reply_);
        reply_ = Reply{};
        reply_octets_ = 0;
        return step;
      }
      continue;
    }
    if (c == '\r') {
      if (line_len_ < 3) {
        return fail("line shorter than a reply code");
      }
      saw_cr_ = true;
      ++line_len_;
      continue;
    }
    if (c == '\n') {
      return fail("bare LF");  // never a line end (RFC 5321 §2.3.8)
    }
    std::size_t p = line_len_;
    if (p < 3) {
      bool ok = p == 0 ? (c >= '2' && c <= '5') : p == 1 ? (c >= '0' && c <= '5') : is_digit(c);
      if (!ok) {
        return fail("reply code is not 2..5, 0..5, 0..9");
      }
      line_code_ = line_code_ * 10 + (c - '0');
      if (p == 2 && !reply_.lines.empty() && line_code_ != reply_.code) {
        return fail("code " + std::to_string(line_code_) + " after " +
                    std::to_string(reply_.code) + " in one reply");
      }
    } else if (p == 3) {
      if (c != '-' && c != ' ') {
        return fail("no '-' or ' ' after the code");
      }
      separator_ = c;
    } else {
      auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && u != '\t') || u == 0x7f) {
        return fail("control octet in reply text");
      }
      text_.push_back(c);
    }
    ++line_len_;
    if (line_len_ + 2 > limits_.max_line) {
      return fail("line longer than " + std::to_string(limits_.max_line) + " octets");
    }
  }
  Step step;
  step.consumed = in.size();
  return step;
}

}  // namespace bh::smtp
