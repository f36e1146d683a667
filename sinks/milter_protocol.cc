#include "sinks/milter_protocol.h"

#include "sinks/message_edit.h"

namespace bh::sinks::milter {

namespace {

void put32(std::string& s, std::uint32_t v) {
  s.push_back(static_cast<char>((v >> 24) & 0xff));
  s.push_back(static_cast<char>((v >> 16) & 0xff));
  s.push_back(static_cast<char>((v >> 8) & 0xff));
  s.push_back(static_cast<char>(v & 0xff));
}

std::uint32_t get32(std::string_view s) {
  return (static_cast<std::uint32_t>(static_cast<unsigned char>(s[0])) << 24) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(s[1])) << 16) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(s[2])) << 8) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(s[3]));
}

void put_str(std::string& s, std::string_view v) {
  // A NUL inside would end the field early on the milter's side: cut there.
  s.append(v.substr(0, v.find('\0')));
  s.push_back('\0');
}

Error bad(const std::string& why) {
  return transient_error("4.7.0", "milter protocol error: " + why);
}

// Splits `data` into exactly `n` NUL-terminated strings.
std::optional<std::vector<std::string>> strings(std::string_view data, std::size_t n) {
  std::vector<std::string> out;
  while (!data.empty()) {
    auto z = data.find('\0');
    if (z == std::string_view::npos) {
      return std::nullopt;  // unterminated
    }
    out.emplace_back(data.substr(0, z));
    data.remove_prefix(z + 1);
  }
  if (out.size() != n) {
    return std::nullopt;
  }
  return out;
}

bool printable_text(std::string_view t) {
  for (char c : t) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 && c != '\t') {
      return false;
    }
  }
  return true;
}

Result<Reply> reply_code(std::string_view data) {
  auto s = strings(data, 1);
  if (!s) {
    return bad("SMFIR_REPLYCODE is not one string");
  }
  std::string t = (*s)[0];
  // A multi-line reply: only the first line is used.
  if (auto nl = t.find_first_of("\r\n"); nl != std::string::npos) {
    t.resize(nl);
  }
  if (t.size() < 3 || (t[0] != '4' && t[0] != '5') || t[1] < '0' || t[1] > '9' || t[2] < '0' ||
      t[2] > '9' || (t.size() > 3 && t[3] != ' ' && t[3] != '-') || t.size() > 1000 ||
      !printable_text(t)) {
    return bad("SMFIR_REPLYCODE without a 4xx/5xx code");
  }
  Reply r;
  r.kind = Reply::Kind::kReplyCode;
  r.code = (t[0] - '0') * 100 + (t[1] - '0') * 10 + (t[2] - '0');
  std::string_view rest = t.size() > 4 ? std::string_view(t).substr(4) : std::string_view{};
  // An enhanced code x.y.z with the same class, if the text starts with one.
  auto sp = rest.find(' ');
  std::string_view first = rest.substr(0, sp);
  bool enhanced = first.size() >= 5 && first.size() <= 11 && first[0] == t[0] && first[1] == '.';
  if (enhanced) {
    int dots = 0;
    for (char c : first) {
      if (c == '.') {
        ++dots;
      } else if (c < '0' || c > '9') {
        enhanced = false;
      }
    }
    enhanced =
        enhanced && dots == 2 && first.back() != '.' && first.find("..") == std::string_view::npos;
  }
  if (enhanced) {
    r.enhanced = std::string(first);
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
  } else {
    r.enhanced = t[0] == '4' ? "4.7.1" : "5.7.1";
  }
  r.text = rest.empty() ? std::string("Command rejected") : std::string(rest);
  return r;
}

Result<Reply> header_reply(Reply::Kind kind, std::string_view data, bool indexed) {
  Reply r;
  r.kind = kind;
  if (indexed) {
    if (data.size() < 4) {
      return bad("header action without an index");
    }
    r.index = get32(data);
    data.remove_prefix(4);
  }
  auto s = strings(data, 2);
  if (!s) {
    return bad("header action is not name and value");
  }
  r.name = (*s)[0];
  r.value = from_milter_value((*s)[1]);
  const bool deleting = kind == Reply::Kind::kChgHeader && r.value.empty();
  if (!header_field_ok(r.name, deleting ? "x" : r.value)) {
    return bad("header action with a bad name or value");
  }
  return r;
}

Result<Reply> one_string(Reply::Kind kind, std::string_view data, std::size_t extra_ok) {
  Reply r;
  r.kind = kind;
  std::optional<std::vector<std::string>> s = strings(data, 1);
  if (!s && extra_ok > 0) {
    s = strings(data, 2);  // SMFIR_ADDRCPT_PAR / SMFIR_CHGFROM: address and ESMTP args
  }
  if (!s || (*s)[0].size() > 1000 || !printable_text((*s)[0])) {
    return bad("bad string argument");
  }
  r.value = (*s)[0];
  return r;
}

}  // namespace

std::string encode(char cmd, std::string_view data) {
  std::string s;
  s.reserve(5 + data.size());
  put32(s, static_cast<std::uint32_t>(data.size() + 1));
  s.push_back(cmd);
  s.append(data);
  return s;
}

std::string encode_optneg(std::uint32_t version, std::uint32_t actions, std::uint32_t protocol) {
  std::string d;
  put32(d, version);
  put32(d, actions);
  put32(d, protocol);
  return encode('O', d);
}

std::string encode_macros(char for_cmd, const std::vector<std::pair<std::string, std::string>>& m) {
  std::string d(1, for_cmd);
  for (const auto& [k, v] : m) {
    put_str(d, k);
    put_str(d, v);
  }
  return encode('D', d);
}

std::string encode_connect(std::string_view hostname, std::string_view address,
                           std::uint16_t port) {
  std::string d;
  put_str(d, hostname);
  if (address.empty()) {
    d.push_back('U');
    return encode('C', d);
  }
  d.push_back(address.find(':') != std::string_view::npos ? '6' : '4');
  d.push_back(static_cast<char>(port >> 8));
  d.push_back(static_cast<char>(port & 0xff));
  put_str(d, address);
  return encode('C', d);
}

std::string encode_helo(std::string_view helo) {
  std::string d;
  put_str(d, helo);
  return encode('H', d);
}

std::string encode_mail(std::string_view sender) {
  std::string d;
  put_str(d, "<" + std::string(sender) + ">");
  return encode('M', d);
}

std::string encode_rcpt(std::string_view recipient) {
  std::string d;
  put_str(d, "<" + std::string(recipient) + ">");
  return encode('R', d);
}

std::string encode_header(std::string_view name, std::string_view value) {
  std::string d;
  put_str(d, name);
  put_str(d, to_milter_value(value));
  return encode('L', d);
}

std::string encode_body(std::string_view chunk) { return encode('B', chunk); }

std::optional<Result<Packet>> MilterReader::next() {
  std::string_view b(buf_);
  b.remove_prefix(pos_);
  if (b.size() < 4) {
    return std::nullopt;
  }
  const std::uint32_t len = get32(b);
  if (len == 0 || len > max_) {
    return Result<Packet>(bad("packet length " + std::to_string(len) + " out of range"));
  }
  if (b.size() - 4 < len) {
    return std::nullopt;
  }
  Packet p;
  p.cmd = b[4];
  p.data = std::string(b.substr(5, len - 1));
  pos_ += 4 + len;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > (64u << 10)) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  return Result<Packet>(std::move(p));
}

Result<Reply> decode_reply(const Packet& p) {
  using K = Reply::Kind;
  auto simple = [&](K k) -> Result<Reply> {
    if (!p.data.empty()) {
      return bad(std::string("unexpected data after '") + p.cmd + "'");
    }
    Reply r;
    r.kind = k;
    return r;
  };
  switch (p.cmd) {
    case 'O': {
      if (p.data.size() < 12) {
        return bad("short SMFIC_OPTNEG");
      }
      Reply r;
      r.kind = K::kOptneg;
      r.version = get32(p.data);
      r.actions = get32(std::string_view(p.data).substr(4));
      r.protocol = get32(std::string_view(p.data).substr(8));
      return r;  // any macro lists after the 12 octets are ignored
    }
    case 'c':
      return simple(K::kContinue);
    case 'a':
      return simple(K::kAccept);
    case 'r':
      return simple(K::kReject);
    case 't':
      return simple(K::kTempfail);
    case 'd':
      return simple(K::kDiscard);
    case 's':
      return simple(K::kSkip);
    case 'p':
      return simple(K::kProgress);
    case 'f':
      return simple(K::kConnFail);
    case '4':
      return simple(K::kShutdown);
    case 'y':
      return reply_code(p.data);
    case 'h':
      return header_reply(K::kAddHeader, p.data, false);
    case 'i':
      return header_reply(K::kInsHeader, p.data, true);
    case 'm':
      return header_reply(K::kChgHeader, p.data, true);
    case 'b': {
      Reply r;
      r.kind = K::kReplBody;
      r.value = p.data;
      return r;
    }
    case '+':
      return one_string(K::kAddRcpt, p.data, 0);
    case '2':
      return one_string(K::kAddRcpt, p.data, 1);
    case '-':
      return one_string(K::kDelRcpt, p.data, 0);
    case 'e':
      return one_string(K::kChgFrom, p.data, 1);
    case 'q':
      return one_string(K::kQuarantine, p.data, 0);
    case 'l': {
      Reply r;
      r.kind = K::kSetSymList;
      return r;
    }
    default:
      return bad("unknown reply '" + std::to_string(static_cast<unsigned char>(p.cmd)) + "'");
  }
}

std::string to_milter_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\r' && i + 1 < v.size() && v[i + 1] == '\n') {
      continue;
    }
    out.push_back(v[i]);
  }
  return out;
}

std::string from_milter_value(std::string_view v) {
  std::string out;
  out.reserve(v.size() + 8);
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\n' && (i == 0 || v[i - 1] != '\r')) {
      out.push_back('\r');
    }
    out.push_back(v[i]);
  }
  return out;
}

}  // namespace bh::sinks::milter
