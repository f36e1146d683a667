#include "queue/message_id.h"

#include <algorithm>

namespace bh::queue {

namespace {

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (is_wsp(s.front()) || s.front() == '\r' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (is_wsp(s.back()) || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// One physical line starting at `pos`: [pos, end of line) without the CR LF / LF, and
// the position after its terminator (npos-like size when the input ends first).
struct Line {
  std::string_view text;
  std::size_t next;
  bool terminated;
};

Line line_at(std::string_view in, std::size_t pos) {
  std::size_t nl = in.find('\n', pos);
  if (nl == std::string_view::npos) {
    return {in.substr(pos), in.size(), false};
  }
  std::size_t end = nl;
  if (end > pos && in[end - 1] == '\r') {
    --end;
  }
  return {in.substr(pos, end - pos), nl + 1, true};
}

}  // namespace

std::string extract_message_id(std::string_view in) {
  in = in.substr(0, std::min(in.size(), kMessageIdScanLimit));
  std::size_t pos = 0;
  while (pos < in.size()) {
    Line l = line_at(in, pos);
    if (l.text.empty()) {
      return {};  // end of the header section
    }
    pos = l.next;
    if (is_wsp(l.text.front())) {
      continue;  // continuation of some other field
    }
    std::size_t colon = l.text.find(':');
    if (colon == std::string_view::npos) {
      continue;  // not a field (mbox "From " line, garbage): not ours to judge
    }
    std::string_view name = l.text.substr(0, colon);
    while (!name.empty() && is_wsp(name.back())) {
      name.remove_suffix(1);  // obsolete syntax allows WSP before the colon (RFC 5322 §4.5)
    }
    if (!iequals(name, "Message-ID")) {
      continue;
    }
    std::string value(l.text.substr(colon + 1));
    // Unfold: continuation lines belong to this field.
    while (pos < in.size() && is_wsp(in[pos]) && value.size() <= kMessageIdMaxLength * 4) {
      Line c = line_at(in, pos);
      value.append(c.text);
      pos = c.next;
    }
    std::string_view v = trim(value);
    std::size_t open = v.find('<');
    if (open != std::string_view::npos) {
      std::size_t close = v.find('>', open);
      if (close != std::string_view::npos) {
        v = v.substr(open, close - open + 1);
      }
    }
    return std::string(v.substr(0, std::min(v.size(), kMessageIdMaxLength)));
  }
  return {};
}

std::string_view bare_message_id(std::string_view id) {
  id = trim(id);
  if (id.size() >= 2 && id.front() == '<' && id.back() == '>') {
    id = id.substr(1, id.size() - 2);
  }
  return id;
}

}  // namespace bh::queue
