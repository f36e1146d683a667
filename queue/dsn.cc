#include "queue/dsn.h"

#include <cstdio>
#include <ctime>

namespace bh::queue {
namespace {

// RFC 5322 §2.1.1: at most 998 octets before CRLF. Text we write ourselves is folded at
// 78 where whitespace allows.
constexpr std::size_t kMaxLine = 998;
constexpr std::size_t kSoftLine = 78;

Error bad_request(std::string what) { return permanent_error("5.3.0", "DSN: " + what); }

bool has_line_break_or_nul(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

bool is_ascii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      return false;
    }
  }
  return true;
}

// Text from elsewhere (remote replies, names) made safe for one header-like line:
// controls become spaces; 8-bit octets become '?' unless `keep_utf8`.
std::string clean_text(std::string_view in, bool keep_utf8 = false) {
  std::string out;
  out.reserve(in.size());
  for (char ch : in) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F) {
      out.push_back(' ');
    } else if (c >= 0x80 && !keep_utf8) {
      out.push_back('?');
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

// Splits `text` into lines of at most kMaxLine octets, breaking at spaces near kSoftLine
// when it can. In a header field (`indent` empty) a continuation line starts with the
// space it was broken at (RFC 5322 §2.2.3 folding); in body text the space is dropped and
// the continuation starts with `indent`. A run without spaces longer than kMaxLine is cut
// hard and continued after an inserted space (headers) or the indent (text).
std::vector<std::string> fold(std::string_view text, bool header, std::string_view indent) {
  std::vector<std::string> lines;
  std::string rest(text);
  std::size_t from = 0;  // never break inside the continuation's own leading whitespace
  while (true) {
    std::string_view r(rest);
    if (r.size() <= kSoftLine) {
      lines.emplace_back(r);
      break;
    }
    std::size_t cut = std::string_view::npos;
    std::size_t back = r.rfind(' ', kSoftLine);
    if (back != std::string_view::npos && back > from) {
      cut = back;
    } else {
      std::size_t fwd = r.find(' ', kSoftLine);
      if (fwd != std::string_view::npos && fwd <= kMaxLine) {
        cut = fwd;
      }
    }
    std::string next;
    if (cut != std::string_view::npos) {
      lines.emplace_back(r.substr(0, cut));
      next = header ? std::string(r.substr(cut)) : std::string(indent) + std::string(r.substr(cut + 1));
    } else if (r.size() <= kMaxLine) {
      lines.emplace_back(r);
      break;
    } else {
      lines.emplace_back(r.substr(0, kMaxLine));
      next = (header ? std::string(" ") : std::string(indent)) + std::string(r.substr(kMaxLine));
    }
    from = header ? 1 : indent.size();
    rest = std::move(next);
  }
  return lines;
}

char hex_digit(unsigned v) { return "0123456789abcdef"[v & 15]; }

std::string hex64(std::uint64_t v) {
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i) {
    s[static_cast<std::size_t>(i)] = hex_digit(static_cast<unsigned>(v & 15));
    v >>= 4;
  }
  return s;
}

bool valid_status(std::string_view s, char cls) {
  // RFC 3463 §2: class "." subject "." detail; subject 1-3 digits, detail 1-3 digits.
  if (s.size() < 5 || s[0] != cls || s[1] != '.') {
    return false;
  }
  std::size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    std::size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      ++i;
    }
    std::size_t n = i - start;
    if (n < 1 || n > 3) {
      return false;
    }
    if (part == 0) {
      if (i >= s.size() || s[i] != '.') {
        return false;
      }
      ++i;
    }
  }
  return i == s.size();
}

char status_class(DsnAction a) {
  switch (a) {
    case DsnAction::kFailed:
      return '5';
    case DsnAction::kDelayed:
      return '4';
    default:
      return '2';
  }
}

bool valid_host(std::string_view h) {
  if (h.empty() || h.size() > 255) {
    return false;
  }
  for (char c : h) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F || c == '<' || c == '>' || c == '@') {
      return false;
    }
  }
  return true;
}

Result<void> validate(const Envelope& original, std::span<const DsnOutcome> outcomes,
                      const DsnOptions& options) {
  if (!valid_host(options.reporting_mta)) {
    return bad_request("bad reporting MTA name");
  }
  if (has_line_break_or_nul(original.sender) || has_line_break_or_nul(original.envid)) {
    return bad_request("envelope holds CR, LF or NUL");
  }
  for (const auto& o : outcomes) {
    if (o.recipient >= original.recipients.size()) {
      return bad_request("outcome for recipient " + std::to_string(o.recipient) +
                         " of " + std::to_string(original.recipients.size()));
    }
    const auto& r = original.recipients[o.recipient];
    if (has_line_break_or_nul(r.address) || has_line_break_or_nul(r.orcpt)) {
      return bad_request("recipient holds CR, LF or NUL");
    }
    if (!valid_status(o.status, status_class(o.action))) {
      return bad_request("status '" + clean_text(o.status) + "' does not fit action " +
                         std::string(dsn_action_name(o.action)));
    }
    if (!o.remote_mta.empty() && !valid_host(o.remote_mta)) {
      return bad_request("bad remote MTA name");
    }
    if (o.will_retry_until && o.action != DsnAction::kDelayed) {
      // RFC 3464 §2.3.7: only for delayed.
      return bad_request("Will-Retry-Until on an action other than delayed");
    }
  }
  return Ok{};
}

// What a first look at the original found (pass 1).
struct Scan {
  std::uint64_t total = 0;        // octets seen (stops early, see scan())
  std::uint64_t header = 0;       // octets of the header block, without the empty line
  bool header_ended = false;
  bool complete = false;          // the whole message was seen
  bool clean = true;              // CRLF only, no NUL, no line over 998 octets
  bool eight_bit = false;         // in what was seen
  bool header_eight_bit = false;  // in the header
};

// Reads until `want_octets` were seen and the header is known (its end seen, or more
// of it than `header_cap`), or until the message ends.
Result<Scan> scan(const OriginalMessage& content, std::uint64_t want_octets,
                  std::uint64_t header_cap) {
  Scan s;
  std::size_t line = 0;
  bool cr = false;
  bool line_empty = true;
  bool stopped = false;
  auto r = content.read([&](std::string_view chunk) {
    for (char ch : chunk) {
      if (s.total >= want_octets && (s.header_ended || s.total > header_cap)) {
        stopped = true;
        return false;
      }
      ++s.total;
      auto c = static_cast<unsigned char>(ch);
      if (c >= 0x80) {
        s.eight_bit = true;
        if (!s.header_ended) {
          s.header_eight_bit = true;
        }
      }
      if (c == '\n') {
        if (!cr) {
          s.clean = false;  // bare LF
        }
        if (!s.header_ended && line_empty) {
          s.header_ended = true;
          s.header = s.total - (cr ? 2 : 1);
        }
        line = 0;
        cr = false;
        line_empty = true;
        continue;
      }
      if (cr) {
        s.clean = false;  // bare CR
      }
      cr = c == '\r';
      if (!cr) {
        line_empty = false;
        if (c == 0) {
          s.clean = false;
        }
        if (++line > kMaxLine) {
          s.clean = false;
        }
      }
    }
    return true;
  });
  if (!r.ok()) {
    return r.error();
  }
  if (cr) {
    s.clean = false;
  }
  s.complete = !stopped;
  if (!s.header_ended) {
    s.header = s.total;  // no empty line (yet): all of it is header
  }
  return s;
}

class Writer {
 public:
  explicit Writer(const DsnSink& out) : out_(out) {}
  void raw(std::string_view bytes) {
    if (!error_ && !bytes.empty()) {
      auto r = out_(bytes);
      if (!r.ok()) {
        error_ = r.error();
        return;
      }
      size_ += bytes.size();
    }
  }
  void line(std::string_view text) {
    BH_CHECK(text.size() <= kMaxLine);
    buf_.assign(text);
    buf_ += "\r\n";
    raw(buf_);
  }
  // A header-like field, folded.
  void field(std::string_view text) {
    for (const auto& l : fold(text, true, "")) {
      line(l);
    }
  }
  // Body text, wrapped; continuation lines start with `indent`.
  void text(std::string_view text, std::string_view indent = "") {
    for (const auto& l : fold(text, false, indent)) {
      line(l);
    }
  }
  const std::optional<Error>& error() const { return error_; }
  std::uint64_t size() const { return size_; }

 private:
  const DsnSink& out_;
  std::optional<Error> error_;
  std::uint64_t size_ = 0;
  std::string buf_;
};

// Pass 2, header only: the header lines, cut at a line boundary at `cap` octets; bare
// CR and NUL become spaces, bare LF ends a line, lines over 998 octets are folded.
Result<bool> copy_header(const OriginalMessage& content, std::uint64_t header_octets,
                         std::uint64_t cap, Writer& w) {
  std::uint64_t limit = header_octets < cap ? header_octets : cap;
  std::uint64_t seen = 0;
  std::string line;
  bool truncated = header_octets > cap;
  auto flush = [&]() {
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    for (auto& c : line) {
      if (c == '\r' || c == '\0') {
        c = ' ';
      }
    }
    while (line.size() > kMaxLine) {
      w.line(std::string_view(line).substr(0, kMaxLine));
      line = " " + line.substr(kMaxLine);
    }
    w.line(line);
    line.clear();
  };
  auto r = content.read([&](std::string_view chunk) {
    for (char c : chunk) {
      if (seen >= limit) {
        return false;
      }
      ++seen;
      if (c == '\n') {
        flush();
      } else {
        line.push_back(c);
      }
    }
    return seen < limit;
  });
  if (!r.ok()) {
    return r.error();
  }
  if (!line.empty()) {
    if (truncated) {
      line.clear();  // the line the cap cut through is left out whole
    } else {
      flush();  // the last header line of a message without body or final CRLF
    }
  }
  return truncated;
}

// Pass 2, full: the `octets` scanned as clean, as they are; a CRLF is added when the
// message does not end with one, so the boundary starts a line.
Result<void> copy_full(const OriginalMessage& content, std::uint64_t octets, Writer& w) {
  std::uint64_t seen = 0;
  char last = 0;
  auto r = content.read([&](std::string_view chunk) {
    std::uint64_t left = octets - seen;
    if (chunk.size() > left) {
      chunk = chunk.substr(0, left);
    }
    w.raw(chunk);
    seen += chunk.size();
    if (!chunk.empty()) {
      last = chunk.back();
    }
    return seen < octets && !w.error();
  });
  if (!r.ok()) {
    return r.error();
  }
  if (seen > 0 && last != '\n') {
    w.raw("\r\n");
  }
  return Ok{};
}

std::string_view subject_for(DsnKind k) {
  switch (k) {
    case DsnKind::kFailure:
      return "Undelivered Mail Returned to Sender";
    case DsnKind::kDelay:
      return "Delayed Mail (still being retried)";
    case DsnKind::kSuccess:
      return "Successful Mail Delivery Report";
  }
  return "";
}

std::string_view action_phrase(DsnAction a) {
  switch (a) {
    case DsnAction::kFailed:
      return "delivery failed; the mail system has given up";
    case DsnAction::kDelayed:
      return "not delivered yet; the mail system is still trying";
    case DsnAction::kDelivered:
      return "delivered";
    case DsnAction::kRelayed:
      return "relayed to a server that does not send delivery reports; no further "
             "report will come for this recipient";
    case DsnAction::kExpanded:
      return "delivered to a list or alias and passed on to its members";
  }
  return "";
}

std::string orcpt_field_value(std::string_view orcpt) {
  // Stored decoded as "addr-type;address" (smtp/); RFC 3461 §6.3 (d) wants the same
  // type and address as the ORCPT parameter: the address goes back into xtext.
  std::size_t semi = orcpt.find(';');
  if (semi == std::string_view::npos) {
    return "rfc822;" + xtext_encode(orcpt);
  }
  return std::string(orcpt.substr(0, semi)) + ";" + xtext_encode(orcpt.substr(semi + 1));
}

}  // namespace

std::string_view dsn_action_name(DsnAction action) {
  switch (action) {
    case DsnAction::kFailed:
      return "failed";
    case DsnAction::kDelayed:
      return "delayed";
    case DsnAction::kDelivered:
      return "delivered";
    case DsnAction::kRelayed:
      return "relayed";
    case DsnAction::kExpanded:
      return "expanded";
  }
  return "failed";
}

bool dsn_requested(std::uint8_t notify, DsnAction action, const DsnOptions& options) {
  if ((notify & kNotifyNever) != 0) {
    return false;
  }
  const bool absent = (notify & (kNotifySuccess | kNotifyFailure | kNotifyDelay)) == 0;
  switch (action) {
    case DsnAction::kFailed:
      return absent || (notify & kNotifyFailure) != 0;
    case DsnAction::kDelayed:
      return absent ? options.delay_notices_without_notify : (notify & kNotifyDelay) != 0;
    case DsnAction::kDelivered:
    case DsnAction::kRelayed:
    case DsnAction::kExpanded:
      return (notify & kNotifySuccess) != 0;
  }
  return false;
}

std::vector<DsnOutcome> reportable_outcomes(const Envelope& original,
                                            std::span<const DsnOutcome> outcomes,
                                            const DsnOptions& options) {
  std::vector<DsnOutcome> out;
  if (original.sender.empty()) {
    return out;  // RFC 5321 §4.5.5 / RFC 3461 §6.2: never a DSN for a null sender
  }
  for (const auto& o : outcomes) {
    if (o.recipient < original.recipients.size() &&
        dsn_requested(original.recipients[o.recipient].notify, o.action, options)) {
      out.push_back(o);
    }
  }
  return out;
}

Result<void> StringOriginalMessage::read(const ChunkSink& sink) const {
  for (std::size_t pos = 0; pos < text_.size(); pos += chunk_) {
    if (!sink(text_.substr(pos, chunk_))) {
      break;
    }
  }
  return Ok{};
}

std::string xtext_encode(std::string_view in) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size());
  for (char ch : in) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 33 || c > 126 || c == '+' || c == '=') {
      out.push_back('+');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

Result<std::optional<DsnInfo>> write_dsn(const Envelope& original,
                                         std::span<const DsnOutcome> outcomes,
                                         const OriginalMessage& content,
                                         const DsnOptions& options, const Clock& clock,
                                         Random& random, const DsnSink& out) {
  if (auto v = validate(original, outcomes, options); !v.ok()) {
    return v.error();
  }
  std::vector<DsnOutcome> report = reportable_outcomes(original, outcomes, options);
  if (report.empty()) {
    return std::optional<DsnInfo>{};
  }

  DsnInfo info;
  info.kind = DsnKind::kSuccess;
  for (const auto& o : report) {
    if (o.action == DsnAction::kFailed) {
      info.kind = DsnKind::kFailure;
    } else if (o.action == DsnAction::kDelayed && info.kind == DsnKind::kSuccess) {
      info.kind = DsnKind::kDelay;
    }
    info.reported.push_back(o.recipient);
  }

  // What to return (RFC 3461 §4.3): the full message only in a report of a failure,
  // unless RET=HDRS; "if a DSN contains no indications of delivery failure, only the
  // headers of the message SHOULD be returned".
  const bool want_full = info.kind == DsnKind::kFailure && original.ret != DsnRet::kHeaders;
  std::uint64_t want = want_full ? options.max_returned_content + 1 : 0;
  auto sc = scan(content, want, options.max_returned_header);
  if (!sc.ok()) {
    return sc.error();
  }
  const Scan& s = sc.value();
  std::string why_header;
  if (want_full) {
    if (!s.complete || s.total > options.max_returned_content) {
      why_header = "the message is larger than the limit of " +
                   std::to_string(options.max_returned_content) +
                   " octets for returned content";
    } else if (!s.clean || original.body == BodyType::kBinaryMime) {
      // RFC 3030 / RFC 6522 §3: a report sent without BINARYMIME cannot carry it.
      why_header = "the message has binary content or lines that cannot be returned as "
                   "they are";
    } else {
      info.returned = DsnReturned::kFull;
    }
  } else if (info.kind == DsnKind::kFailure) {
    why_header = "as the sender asked (RET=HDRS)";
  } else {
    why_header = "as this report is not about a failed delivery";
  }
  if (info.returned != DsnReturned::kFull && s.header > options.max_returned_header) {
    info.returned = DsnReturned::kHeaderTruncated;
  }

  const bool utf8 = original.smtputf8;
  const bool content_8bit = info.returned == DsnReturned::kFull ? s.eight_bit
                                                                : s.header_eight_bit;
  bool addr_8bit = !is_ascii(original.sender);
  for (const auto& o : report) {
    const auto& r = original.recipients[o.recipient];
    addr_8bit = addr_8bit || !is_ascii(r.address) || !is_ascii(r.orcpt);
  }
  // RFC 6533: internationalized addresses travel in message/global-delivery-status.
  const bool global = utf8 && addr_8bit;

  const Clock::time_point now = clock.now();
  const std::string host = options.reporting_mta;
  std::string stamp = rfc5322_date(now);
  {
    std::time_t secs = std::chrono::system_clock::to_time_t(now);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04d%02d%02d%02d%02d%02d", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    info.message_id = "<" + std::string(buf) + "." + hex64(random.next()) + "@" + host + ">";
  }
  const std::string boundary = "=_bh_" + hex64(random.next()) + hex64(random.next());

  Writer w(out);
  // Top-level header.
  w.field("From: Mail Delivery System <MAILER-DAEMON@" + host + ">");
  w.field("To: <" + original.sender + ">");
  w.line("Subject: " + std::string(subject_for(info.kind)));
  w.line("Date: " + stamp);
  w.field("Message-ID: " + info.message_id);
  w.line("Auto-Submitted: auto-replied");  // RFC 3834 §5
  w.line("MIME-Version: 1.0");
  w.line("Content-Type: multipart/report; report-type=delivery-status;");
  w.line(" boundary=\"" + boundary + "\"");
  w.line("");
  w.line("This is a MIME-encapsulated message.");
  w.line("");

  // Part 1: for people (RFC 6522 §3 first part).
  w.line("--" + boundary);
  w.line("Content-Description: Notification");
  w.line(std::string("Content-Type: text/plain; charset=") + (global ? "utf-8" : "us-ascii"));
  if (global) {
    w.line("Content-Transfer-Encoding: 8bit");
  }
  w.line("");
  w.text("This is the mail system at " + host + ".", "");
  w.line("");
  switch (info.kind) {
    case DsnKind::kFailure:
      w.text("Your message could not be delivered to one or more of its recipients. "
               "The details are below.", "");
      break;
    case DsnKind::kDelay:
      w.text("Your message has not yet been delivered to one or more of its "
               "recipients. The mail system will keep trying; you do not need to send it "
               "again. A further report will come only if delivery finally fails.", "");
      break;
    case DsnKind::kSuccess:
      w.text("Your message has been delivered or passed on, as you asked to be told "
               "(NOTIFY=SUCCESS).", "");
      break;
  }
  w.line("");
  for (const auto& o : report) {
    const auto& r = original.recipients[o.recipient];
    w.text("<" + clean_text(r.address, global) + ">: " + std::string(action_phrase(o.action)),
             "    ");
    if (!o.remote_mta.empty()) {
      w.text("    Remote server: " + o.remote_mta, "      ");
    }
    if (!o.diagnostic.empty()) {
      w.text("    Reply: " + clean_text(o.diagnostic), "      ");
    }
    w.line("    Status: " + o.status);
    if (o.will_retry_until) {
      w.line("    Still trying until: " + rfc5322_date(*o.will_retry_until));
    }
    w.line("");
  }
  if (info.returned == DsnReturned::kFull) {
    w.text("The original message is attached in full.", "");
  } else {
    std::string note = "Only the header of the original message is attached, " + why_header + ".";
    if (info.returned == DsnReturned::kHeaderTruncated) {
      note += " The header itself was cut at " + std::to_string(options.max_returned_header) +
              " octets.";
    }
    w.text(note, "");
  }
  w.line("");

  // Part 2: for programs (RFC 3464 §2.2 per-message, §2.3 per-recipient fields).
  w.line("--" + boundary);
  w.line("Content-Description: Delivery report");
  w.line(global ? "Content-Type: message/global-delivery-status"
                : "Content-Type: message/delivery-status");
  if (global) {
    w.line("Content-Transfer-Encoding: 8bit");
  }
  w.line("");
  w.field("Reporting-MTA: dns; " + host);
  if (!original.envid.empty()) {
    // RFC 3461 §6.3 (a), kept in its xtext form.
    w.field("Original-Envelope-Id: " + xtext_encode(original.envid));
  }
  if (original.received_unix > 0) {
    w.line("Arrival-Date: " +
           rfc5322_date(Clock::time_point{std::chrono::seconds{original.received_unix}}));
  }
  const std::string addr_type = global ? "utf-8" : "rfc822";
  for (const auto& o : report) {
    const auto& r = original.recipients[o.recipient];
    w.line("");
    if (!r.orcpt.empty()) {
      // RFC 3461 §6.3 (d): only when ORCPT was given.
      w.field("Original-Recipient: " + orcpt_field_value(r.orcpt));
    }
    w.field("Final-Recipient: " + addr_type + "; " + clean_text(r.address, global));
    w.line("Action: " + std::string(dsn_action_name(o.action)));
    w.line("Status: " + o.status);
    if (!o.remote_mta.empty()) {
      w.field("Remote-MTA: dns; " + o.remote_mta);
    }
    if (!o.diagnostic.empty()) {
      std::string d = clean_text(o.diagnostic);
      if (d.find(';') == std::string::npos) {
        d = "X-Bridgehead; " + d;  // RFC 3464 §2.3.6: diagnostic-type ";" text
      }
      w.field("Diagnostic-Code: " + d);
    }
    if (o.last_attempt) {
      w.line("Last-Attempt-Date: " + rfc5322_date(*o.last_attempt));
    }
    if (o.will_retry_until) {
      w.line("Will-Retry-Until: " + rfc5322_date(*o.will_retry_until));
    }
  }
  w.line("");

  // Part 3: the original (RFC 6522 §3 third part), or its header.
  w.line("--" + boundary);
  const bool global_content = utf8 && content_8bit;  // RFC 6532 §3.7, RFC 6533
  if (info.returned == DsnReturned::kFull) {
    w.line("Content-Description: Undelivered message");
    w.line(global_content ? "Content-Type: message/global" : "Content-Type: message/rfc822");
  } else {
    w.line("Content-Description: Header of the original message");
    w.line(global_content ? "Content-Type: text/global-headers"
                          : "Content-Type: text/rfc822-headers");
  }
  if (content_8bit) {
    w.line("Content-Transfer-Encoding: 8bit");
  }
  w.line("");
  if (info.returned == DsnReturned::kFull) {
    if (auto c = copy_full(content, s.total, w); !c.ok()) {
      return c.error();
    }
  } else {
    auto c = copy_header(content, s.header, options.max_returned_header, w);
    if (!c.ok()) {
      return c.error();
    }
  }
  w.line("");
  w.line("--" + boundary + "--");
  if (w.error()) {
    return *w.error();
  }

  info.size = w.size();
  Envelope& e = info.envelope;
  e.sender.clear();  // MAIL FROM:<> (RFC 3461 §6.2, RFC 5321 §4.5.5)
  Recipient to;
  to.address = original.sender;
  to.notify = kNotifyNever;
  e.recipients.push_back(std::move(to));
  e.body = (content_8bit || global) ? BodyType::k8BitMime : BodyType::k7Bit;
  e.smtputf8 = global || (utf8 && content_8bit);
  e.protocol = "local";
  e.client_helo = host;
  e.received_unix = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  return std::optional<DsnInfo>{std::move(info)};
}

Result<std::optional<DsnMessage>> make_dsn(const Envelope& original,
                                           std::span<const DsnOutcome> outcomes,
                                           const OriginalMessage& content,
                                           const DsnOptions& options, const Clock& clock,
                                           Random& random) {
  std::string bytes;
  auto r = write_dsn(original, outcomes, content, options, clock, random,
                     [&](std::string_view b) -> Result<void> {
                       bytes.append(b);
                       return Ok{};
                     });
  if (!r.ok()) {
    return r.error();
  }
  if (!r.value()) {
    return std::optional<DsnMessage>{};
  }
  return std::optional<DsnMessage>{DsnMessage{std::move(*r.value()), std::move(bytes)}};
}

}  // namespace bh::queue
