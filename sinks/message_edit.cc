#include "sinks/message_edit.h"

#include "common/text.h"

namespace bh::sinks {

namespace {

// Start offsets of each header field (a field is its first line plus continuation lines).
struct Field {
  std::size_t begin, end;  // [begin, end) including the final CRLF
  std::size_t colon;
};

std::vector<Field> fields(std::string_view m) {
  std::vector<Field> out;
  std::size_t pos = 0;
  while (pos < m.size()) {
    if (m.substr(pos, 2) == "\r\n" || m[pos] == '\n') {
      break;  // the empty line
    }
    std::size_t end = pos;
    // One field: lines until one that does not start with WSP.
    do {
      std::size_t nl = m.find('\n', end);
      end = nl == std::string_view::npos ? m.size() : nl + 1;
    } while (end < m.size() && (m[end] == ' ' || m[end] == '\t'));
    std::size_t colon = m.find(':', pos);
    if (colon == std::string_view::npos || colon >= end) {
      break;  // not a header field: the body starts here (no empty line)
    }
    out.push_back({pos, end, colon});
    pos = end;
  }
  return out;
}

bool same_name(std::string_view a, std::string_view b) {
  return ascii_lower(std::string(a)) == ascii_lower(std::string(b));
}

std::string field_text(std::string_view name, std::string_view value) {
  std::string f(name);
  f += ": ";
  f += value;
  f += "\r\n";
  return f;
}

}  // namespace

std::size_t body_offset(std::string_view m) {
  auto fs = fields(m);
  std::size_t pos = fs.empty() ? 0 : fs.back().end;
  if (m.substr(pos, 2) == "\r\n") {
    return pos + 2;
  }
  if (m.substr(pos, 1) == "\n") {
    return pos + 1;
  }
  return pos;
}

std::vector<std::pair<std::string, std::string>> header_fields(std::string_view m) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : fields(m)) {
    std::string name(m.substr(f.begin, f.colon - f.begin));
    std::string_view v = m.substr(f.colon + 1, f.end - f.colon - 1);
    if (!v.empty() && v.front() == ' ') {
      v.remove_prefix(1);
    }
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) {
      v.remove_suffix(1);
    }
    out.emplace_back(std::move(name), std::string(v));
  }
  return out;
}

bool header_field_ok(std::string_view name, std::string_view value) {
  if (name.empty() || name.size() > 200 || value.size() > 16384) {
    return false;
  }
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u < 33 || u > 126 || c == ':') {
      return false;
    }
  }
  for (std::size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '\0') {
      return false;
    }
    if (c == '\r' || c == '\n') {
      // Only CRLF followed by WSP (folding).
      if (c != '\r' || i + 2 >= value.size() || value[i + 1] != '\n' ||
          (value[i + 2] != ' ' && value[i + 2] != '\t')) {
        return false;
      }
      ++i;
    }
  }
  return true;
}

void insert_header(std::string& m, std::size_t index, std::string_view name,
                   std::string_view value) {
  auto fs = fields(m);
  std::size_t at = index < fs.size() ? fs[index].begin : (fs.empty() ? 0 : fs.back().end);
  m.insert(at, field_text(name, value));
}

void add_header(std::string& m, std::string_view name, std::string_view value) {
  insert_header(m, static_cast<std::size_t>(-1), name, value);
}

bool change_header(std::string& m, std::string_view name, std::size_t index,
                   std::string_view value) {
  std::size_t seen = 0;
  for (const auto& f : fields(m)) {
    if (!same_name(std::string_view(m).substr(f.begin, f.colon - f.begin), name)) {
      continue;
    }
    if (++seen == index) {
      if (value.empty()) {
        m.erase(f.begin, f.end - f.begin);
      } else {
        std::string n = m.substr(f.begin, f.colon - f.begin);
        m.replace(f.begin, f.end - f.begin, field_text(n, value));
      }
      return true;
    }
  }
  return false;
}

void replace_body(std::string& m, std::string_view body) {
  auto fs = fields(m);
  std::size_t pos = fs.empty() ? 0 : fs.back().end;
  std::size_t at = body_offset(m);
  if (at == pos) {
    m.insert(pos, "\r\n");  // no empty line yet: add one so the body stays a body
    at = pos + 2;
  }
  m.replace(at, std::string::npos, body);
}

}  // namespace bh::sinks
