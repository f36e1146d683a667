#include "queue/delivery_state.h"

#include <algorithm>
#include <charconv>
#include <optional>

namespace bh::queue {
namespace {

constexpr std::string_view kMagic = "BHQS 1";

std::string escape(std::string_view in) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size());
  for (unsigned char c : in) {
    if (c < 0x21 || c == '%' || c == 0x7f) {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::optional<std::string> unescape(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    unsigned v = 0;
    if (in.size() - i < 3) {
      return std::nullopt;
    }
    auto [p, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3, v, 16);
    if (ec != std::errc() || p != in.data() + i + 3) {
      return std::nullopt;
    }
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

template <class T>
bool number(std::string_view s, T& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

}  // namespace

std::string encode_delivery_state(const DeliveryState& s) {
  std::string out(kMagic);
  out += "\nattempts " + std::to_string(s.attempts);
  out += "\nfirst " + std::to_string(s.first_attempt_unix);
  out += "\nnext " + std::to_string(s.next_attempt_unix);
  out += "\ndelay_notice " + std::string(s.delay_notice_sent ? "1" : "0");
  out += "\nfrozen " + std::string(s.frozen ? "1" : "0");
  for (const auto& r : s.recipients) {
    out += "\nrcpt " + std::to_string(r.index) + " " +
           std::to_string(static_cast<unsigned>(r.state)) + " " + escape(r.last_result);
  }
  for (const auto& r : s.added) {
    // Every field starts with '=' so an empty one still has a place.
    out += "\nadded " + std::to_string(static_cast<unsigned>(r.notify)) + " =" + escape(r.address) +
           " =" + escape(r.orcpt) + " =" + escape(r.mailbox);
    if (!r.home_server.empty()) {
      out += " =" + escape(r.home_server);  // a fifth field, only when there is one
    }
  }
  out += "\nend\n";
  return out;
}

Result<DeliveryState> decode_delivery_state(std::string_view text) {
  auto bad = [](const std::string& why) {
    return Result<DeliveryState>(permanent_error("5.3.0", "delivery state: " + why));
  };
  if (text.size() > kMaxDeliveryStateBytes) {
    return bad("too large");
  }
  DeliveryState s;
  bool magic = false, end = false;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) {
      return bad("truncated");
    }
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (end) {
      return bad("data after end");
    }
    if (!magic) {
      if (line != kMagic) {
        return bad("bad magic");
      }
      magic = true;
      continue;
    }
    if (line == "end") {
      end = true;
      continue;
    }
    auto sp = line.find(' ');
    if (sp == std::string_view::npos) {
      return bad("malformed line");
    }
    std::string_view key = line.substr(0, sp), val = line.substr(sp + 1);
    bool ok = true;
    if (key == "attempts") {
      ok = number(val, s.attempts);
    } else if (key == "first") {
      ok = number(val, s.first_attempt_unix);
    } else if (key == "next") {
      ok = number(val, s.next_attempt_unix);
    } else if (key == "delay_notice" || key == "frozen") {
      ok = val == "0" || val == "1";
      (key == "frozen" ? s.frozen : s.delay_notice_sent) = val == "1";
    } else if (key == "rcpt") {
      auto a = val.find(' ');
      auto b = a == std::string_view::npos ? a : val.find(' ', a + 1);
      unsigned st = 0;
      DeliveryState::Rcpt r;
      if (b == std::string_view::npos || !number(val.substr(0, a), r.index) ||
          !number(val.substr(a + 1, b - a - 1), st) || st > 2) {
        return bad("malformed recipient");
      }
      auto res = unescape(val.substr(b + 1));
      if (!res) {
        return bad("malformed recipient result");
      }
      r.state = static_cast<RecipientState>(st);
      r.last_result = std::move(*res);
      if (s.recipients.size() >= 100000) {
        return bad("too many recipients");
      }
      s.recipients.push_back(std::move(r));
    } else if (key == "added") {
      std::vector<std::string> f;
      std::size_t from = 0;
      for (;;) {
        auto sp2 = val.find(' ', from);
        f.emplace_back(val.substr(from, sp2 == std::string_view::npos ? sp2 : sp2 - from));
        if (sp2 == std::string_view::npos) {
          break;
        }
        from = sp2 + 1;
      }
      Recipient r;
      unsigned notify = 0;
      if ((f.size() != 4 && f.size() != 5) || !number(std::string_view(f[0]), notify) ||
          notify > 0xff) {
        return bad("malformed added recipient");
      }
      std::optional<std::string> parts[4];
      for (std::size_t i = 0; i + 1 < f.size(); ++i) {
        if (f[i + 1].empty() || f[i + 1][0] != '=') {
          return bad("malformed added recipient");
        }
        parts[i] = unescape(std::string_view(f[i + 1]).substr(1));
        if (!parts[i] || parts[i]->find_first_of(std::string("\r\n\0", 3)) != std::string::npos) {
          return bad("malformed added recipient");
        }
      }
      if (parts[0]->empty() || s.added.size() >= kMaxAddedRecipients) {
        return bad(parts[0]->empty() ? "empty added recipient" : "too many added recipients");
      }
      r.notify = static_cast<std::uint8_t>(notify);
      r.address = std::move(*parts[0]);
      r.orcpt = std::move(*parts[1]);
      r.mailbox = std::move(*parts[2]);
      if (f.size() == 5) {
        if (parts[3]->empty()) {
          return bad("malformed added recipient");
        }
        r.home_server = std::move(*parts[3]);
      }
      r.added = true;
      s.added.push_back(std::move(r));
    } else {
      ok = false;
    }
    if (!ok) {
      return bad("bad value for " + std::string(key));
    }
  }
  if (!end) {
    return bad("truncated");
  }
  return s;
}

Result<void> apply_delivery_state(const DeliveryState& s, Envelope& env) {
  const bool has_added = std::any_of(env.recipients.begin(), env.recipients.end(),
                                     [](const Recipient& r) { return r.added; });
  const std::size_t total = env.recipients.size() + (has_added ? 0 : s.added.size());
  for (const auto& r : s.recipients) {
    if (r.index >= total) {
      return permanent_error("5.3.0", "delivery state: recipient index out of range");
    }
  }
  if (!has_added) {
    env.recipients.insert(env.recipients.end(), s.added.begin(), s.added.end());
  }
  for (const auto& r : s.recipients) {
    env.recipients[r.index].state = r.state;
    env.recipients[r.index].last_result = r.last_result;
  }
  return Ok{};
}

std::vector<DeliveryState::Rcpt> recipient_states(const Envelope& env) {
  std::vector<DeliveryState::Rcpt> out;
  for (std::size_t i = 0; i < env.recipients.size(); ++i) {
    const auto& r = env.recipients[i];
    if (r.state != RecipientState::kPending || !r.last_result.empty()) {
      out.push_back({i, r.state, r.last_result});
    }
  }
  return out;
}

std::vector<Recipient> added_recipients(const Envelope& env) {
  std::vector<Recipient> out;
  for (const auto& r : env.recipients) {
    if (r.added) {
      out.push_back(r);
      out.back().state = RecipientState::kPending;
      out.back().last_result.clear();
    }
  }
  return out;
}

}  // namespace bh::queue
