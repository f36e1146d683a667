#include "queue/tracking_log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <nlohmann/json.hpp>
#include <set>

#include "common/log.h"
#include "queue/message_id.h"

namespace bh::queue {

namespace {

using nlohmann::json;

constexpr std::string_view kFileName = "tracking.jsonl";

constexpr std::string_view kNames[] = {"received", "categorized", "routed",  "deferred", "delivered",
                                       "relayed",  "bounced",     "expired", "deleted",  "dsn_sent",
                                       "quarantined"};

std::string cut(const std::string& s) { return s.size() <= kTrackingFieldMax ? s : s.substr(0, kTrackingFieldMax); }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

std::string_view strip_angles(std::string_view a) {
  if (a.size() >= 2 && a.front() == '<' && a.back() == '>') {
    a = a.substr(1, a.size() - 2);
  }
  return a;
}

}  // namespace

std::string_view event_name(TrackingEventType t) { return kNames[static_cast<int>(t)]; }

std::optional<TrackingEventType> parse_event_name(std::string_view name) {
  for (std::size_t i = 0; i < std::size(kNames); ++i) {
    if (kNames[i] == name) {
      return static_cast<TrackingEventType>(i);
    }
  }
  return std::nullopt;
}

std::string iso8601_ms(Clock::time_point t) {
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  std::int64_t secs = ms / 1000, frac = ms % 1000;
  if (frac < 0) {
    frac += 1000;
    secs -= 1;
  }
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char b[96];  // generous: the compiler cannot see that every field is small
  std::snprintf(b, sizeof b, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(frac));
  return b;
}

std::optional<Clock::time_point> parse_iso8601_ms(std::string_view s) {
  // Exactly "YYYY-MM-DDTHH:MM:SS.mmmZ".
  if (s.size() != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
      s[19] != '.' || s[23] != 'Z') {
    return std::nullopt;
  }
  auto num = [&](std::size_t pos, std::size_t len) -> int {
    int v = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      if (s[i] < '0' || s[i] > '9') {
        return -1;
      }
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  std::tm tm{};
  int year = num(0, 4), mon = num(5, 2), day = num(8, 2), hour = num(11, 2), min = num(14, 2),
      sec = num(17, 2), ms = num(20, 3);
  if (year < 0 || mon < 1 || mon > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || min < 0 ||
      min > 59 || sec < 0 || sec > 60 || ms < 0) {
    return std::nullopt;
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  std::time_t t = timegm(&tm);
  return Clock::time_point{std::chrono::seconds(t) + std::chrono::milliseconds(ms)};
}

std::string to_json_line(const TrackingEvent& e) {
  json j = {
      {"time", iso8601_ms(e.time)},
      {"node", cut(e.node)},
      {"event", std::string(event_name(e.event))},
      {"queue_id", cut(e.queue_id)},
      {"message_id", cut(e.message_id)},
      {"sender", cut(e.sender)},
      {"recipient", cut(e.recipient)},
      {"next_hop", cut(e.next_hop)},
      {"reply", cut(e.reply)},
      {"size", e.size},
      {"client_address", cut(e.client_address)},
  };
  // replace: invalid UTF-8 becomes U+FFFD instead of an exception; dump escapes every
  // control character, so the line holds no raw newline.
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::optional<TrackingEvent> parse_json_line(std::string_view line) {
  json j = json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return std::nullopt;
  }
  auto text = [&](const char* key, std::string& out) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      return true;  // a member an older or newer writer did not write
    }
    if (!it->is_string()) {
      return false;
    }
    out = it->get<std::string>();
    return true;
  };
  TrackingEvent e;
  std::string time, event;
  if (!text("time", time) || !text("event", event) || !text("node", e.node) ||
      !text("queue_id", e.queue_id) || !text("message_id", e.message_id) || !text("sender", e.sender) ||
      !text("recipient", e.recipient) || !text("next_hop", e.next_hop) || !text("reply", e.reply) ||
      !text("client_address", e.client_address)) {
    return std::nullopt;
  }
  auto t = parse_iso8601_ms(time);
  auto ev = parse_event_name(event);
  if (!t || !ev) {
    return std::nullopt;
  }
  e.time = *t;
  e.event = *ev;
  if (auto it = j.find("size"); it != j.end() && it->is_number_unsigned()) {
    e.size = it->get<std::uint64_t>();
  }
  return e;
}

// ---- TrackingLog ----

TrackingLog::TrackingLog(TrackingLogOptions options, const Clock& clock)
    : opt_(std::move(options)), clock_(clock) {
  opt_.keep = std::max(opt_.keep, 1u);
  opt_.warn_every = std::max<std::uint64_t>(opt_.warn_every, 1);
}

TrackingLog::~TrackingLog() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

std::string TrackingLog::path() const { return opt_.dir + "/" + std::string(kFileName); }

Result<void> TrackingLog::open() {
  std::lock_guard lock(mu_);
  std::string err;
  if (!open_locked(&err)) {
    return permanent_error("", err);
  }
  return Ok{};
}

bool TrackingLog::open_locked(std::string* error) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (::mkdir(opt_.dir.c_str(), 0750) != 0 && errno != EEXIST) {
    *error = opt_.dir + ": cannot create the tracking log directory: " + std::strerror(errno);
    return false;
  }
  std::string p = path();
  int fd = ::open(p.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) {
    *error = p + ": cannot open the tracking log: " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    *error = p + ": the tracking log is not a regular file";
    return false;
  }
  fd_ = fd;
  size_ = static_cast<std::uint64_t>(st.st_size);
  return true;
}

void TrackingLog::failed_locked(const std::string& why) {
  ++counters_.failures;
  if (counters_.failures % opt_.warn_every == 1 || opt_.warn_every == 1) {
    log::warn("tracking", why + " (" + std::to_string(counters_.failures) + " event(s) lost so far)");
  }
}

void TrackingLog::rotate_locked() {
  std::string p = path();
  struct stat by_name {}, ours {};
  bool same = ::stat(p.c_str(), &by_name) == 0 && ::fstat(fd_, &ours) == 0 && by_name.st_ino == ours.st_ino &&
              by_name.st_dev == ours.st_dev;
  if (same) {
    // Oldest first, so each rename replaces a file already moved on (or the oldest).
    for (unsigned n = opt_.keep; n >= 2; --n) {
      std::string from = p + "." + std::to_string(n - 1), to = p + "." + std::to_string(n);
      if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
        failed_locked(from + ": cannot rotate: " + std::strerror(errno));
      }
    }
    if (::rename(p.c_str(), (p + ".1").c_str()) != 0) {
      failed_locked(p + ": cannot rotate: " + std::strerror(errno));
      return;  // keep writing to the big file rather than lose events
    }
    ++counters_.rotations;
  }
  // Else another process rotated it: follow it to the new file.
  std::string err;
  if (!open_locked(&err)) {
    failed_locked(err);
  }
}

void TrackingLog::record(TrackingEvent event) {
  event.time = clock_.now();
  event.node = opt_.node;
  std::string line = to_json_line(event);
  std::lock_guard lock(mu_);
  if (opt_.buffer_bytes > 0) {
    buf_ += line;
    ++buf_events_;
    if (buf_.size() >= opt_.buffer_bytes) {
      write_locked(buf_, buf_events_);
      buf_.clear();
      buf_events_ = 0;
    }
    return;
  }
  write_locked(line, 1);
}

void TrackingLog::flush() {
  std::lock_guard lock(mu_);
  if (!buf_.empty()) {
    write_locked(buf_, buf_events_);
    buf_.clear();
    buf_events_ = 0;
  }
}

void TrackingLog::write_locked(const std::string& lines, std::uint64_t events) {
  if (fd_ < 0) {
    // Retry the open on the first event and then once per 100 (cheap, not a busy loop).
    std::string err;
    if (since_open_attempt_++ % 100 != 0 || !open_locked(&err)) {
      for (std::uint64_t i = 0; i < events; ++i) {
        failed_locked(err.empty() ? path() + ": the tracking log is not open" : err);
      }
      return;
    }
    since_open_attempt_ = 0;
  }
  ssize_t n = ::write(fd_, lines.data(), lines.size());
  if (n != static_cast<ssize_t>(lines.size())) {
    for (std::uint64_t i = 0; i < events; ++i) {
      failed_locked(path() + ": write failed: " + (n < 0 ? std::strerror(errno) : "short write"));
    }
    if (n > 0) {
      // End the partial line so the next event starts on a line of its own; the reader
      // skips the fragment.
      [[maybe_unused]] auto ignored = ::write(fd_, "\n", 1);
      size_ += static_cast<std::uint64_t>(n) + 1;
    }
    return;
  }
  size_ += lines.size();
  counters_.written += events;
  if (size_ >= opt_.max_bytes) {
    rotate_locked();
  }
}

TrackingLogCounters TrackingLog::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

// ---- search ----

namespace {

bool matches(const TrackingEvent& e, const TrackingQuery& q) {
  if (!q.queue_id.empty() && e.queue_id != q.queue_id) {
    return false;
  }
  if (!q.message_id.empty() && bare_message_id(e.message_id) != bare_message_id(q.message_id)) {
    return false;
  }
  if (!q.sender.empty()) {
    std::string_view want = q.sender == "<>" ? std::string_view{} : strip_angles(q.sender);
    if (!iequals(e.sender, want)) {
      return false;
    }
  }
  if (q.since && e.time < *q.since) {
    return false;
  }
  if (q.until && e.time > *q.until) {
    return false;
  }
  return true;
}

// Calls fn(line) for each line of the file; lines over kTrackingLineMax are skipped and
// counted. The last line may lack its '\n' (a crash mid-write): it is passed on and the
// parser decides.
template <class Fn>
bool for_each_line(const std::string& path, std::uint64_t& skipped, Fn fn) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return false;
  }
  std::string line;
  bool too_long = false;
  std::vector<char> buf(64u << 10);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    std::string_view chunk(buf.data(), static_cast<std::size_t>(n));
    while (!chunk.empty()) {
      std::size_t nl = chunk.find('\n');
      std::string_view part = chunk.substr(0, nl);
      if (!too_long) {
        if (line.size() + part.size() > kTrackingLineMax) {
          too_long = true;
          line.clear();
        } else {
          line.append(part);
        }
      }
      if (nl == std::string_view::npos) {
        break;
      }
      chunk.remove_prefix(nl + 1);
      if (too_long) {
        ++skipped;
      } else if (!line.empty()) {
        fn(std::string_view(line));
      }
      line.clear();
      too_long = false;
    }
  }
  ::close(fd);
  if (too_long) {
    ++skipped;
  } else if (!line.empty()) {
    fn(std::string_view(line));
  }
  return true;
}

}  // namespace

TrackingSearchResult search_tracking(const std::string& dir, const TrackingQuery& query) {
  TrackingSearchResult out;
  std::vector<unsigned> rotated;
  if (DIR* d = ::opendir(dir.c_str())) {
    const std::string prefix = std::string(kFileName) + ".";
    while (dirent* de = ::readdir(d)) {
      std::string_view name = de->d_name;
      if (name.size() <= prefix.size() || name.size() > prefix.size() + 6 || name.substr(0, prefix.size()) != prefix) {
        continue;
      }
      std::string_view digits = name.substr(prefix.size());
      if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        continue;
      }
      rotated.push_back(static_cast<unsigned>(std::stoul(std::string(digits))));
    }
    ::closedir(d);
  }
  std::sort(rotated.rbegin(), rotated.rend());
  std::vector<std::string> files;
  for (unsigned n : rotated) {
    files.push_back(dir + "/" + std::string(kFileName) + "." + std::to_string(n));
  }
  files.push_back(dir + "/" + std::string(kFileName));

  const std::size_t limit = std::max<std::size_t>(query.limit, 1);
  constexpr std::size_t kMaxRecipientIds = 100000;  // queue ids remembered for a recipient query
  std::set<std::string, std::less<>> recipient_ids;
  std::deque<TrackingEvent> found;
  const std::string_view want_rcpt = strip_angles(query.recipient);
  for (const auto& f : files) {
    bool opened = for_each_line(f, out.skipped_lines, [&](std::string_view line) {
      auto e = parse_json_line(line);
      if (!e) {
        ++out.skipped_lines;
        return;
      }
      if (!matches(*e, query)) {
        return;
      }
      if (!query.recipient.empty()) {
        if (e->recipient.empty()) {
          if (!recipient_ids.contains(e->queue_id)) {
            return;
          }
        } else if (!iequals(e->recipient, want_rcpt)) {
          return;
        } else if (recipient_ids.size() < kMaxRecipientIds) {
          recipient_ids.insert(e->queue_id);
        }
      }
      found.push_back(std::move(*e));
      if (found.size() > limit) {
        found.pop_front();
        out.truncated = true;
      }
    });
    out.files += opened ? 1 : 0;
  }
  out.events.assign(std::make_move_iterator(found.begin()), std::make_move_iterator(found.end()));
  return out;
}

// ---- QueueTracker ----

std::string QueueTracker::message_id_of(const QueueEvent& ev) {
  if (auto it = ids_.find(ev.queue_id); it != ids_.end()) {
    return it->second;
  }
  std::string id;
  if (ev.message != nullptr) {
    if (ev.message->body) {
      id = extract_message_id(*ev.message->body);
    } else if (!ev.queue_path.empty()) {
      // The header is at the start of the body; the file was just read, so this is a
      // page-cache hit.
      std::string head(std::min<std::uint64_t>(ev.message->body_length, kMessageIdScanLimit), '\0');
      int fd = ::open(std::string(ev.queue_path).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd >= 0) {
        ssize_t n = ::pread(fd, head.data(), head.size(), static_cast<off_t>(ev.message->body_offset));
        ::close(fd);
        head.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
        id = extract_message_id(head);
      }
    }
  }
  if (ids_.size() >= 4096) {
    ids_.clear();  // rarely hit: a batch holds at most a few hundred messages
  }
  ids_.emplace(std::string(ev.queue_id), id);
  return id;
}

void QueueTracker::on_event(const QueueEvent& ev) {
  if (ev.message == nullptr) {
    return;
  }
  std::lock_guard lock(mu_);
  const Envelope& env = ev.message->envelope;
  TrackingEvent t;
  t.queue_id = std::string(ev.queue_id);
  t.message_id = message_id_of(ev);
  t.sender = env.sender;
  t.size = ev.message->body_length;
  t.client_address = env.client_address;
  switch (ev.kind) {
    case QueueEvent::Kind::kReceived:
      t.event = TrackingEventType::kReceived;
      t.reply = ev.recovered ? "recovered from the spool at start" : "";
      if (!env.client_helo.empty()) {
        t.reply += std::string(t.reply.empty() ? "" : "; ") + "helo " + env.client_helo;
      }
      for (const auto& r : env.recipients) {
        t.recipient = r.address;
        log_.record(t);
      }
      return;
    case QueueEvent::Kind::kDelivered:
      t.event = TrackingEventType::kDelivered;
      break;
    case QueueEvent::Kind::kDeferred:
      t.event = TrackingEventType::kDeferred;
      break;
    case QueueEvent::Kind::kFailed:
      t.event = TrackingEventType::kBounced;
      break;
    case QueueEvent::Kind::kRelayed:
      t.event = TrackingEventType::kRelayed;
      break;
    case QueueEvent::Kind::kExpired:
      t.event = TrackingEventType::kExpired;
      break;
    case QueueEvent::Kind::kDeleted:
      t.event = TrackingEventType::kDeleted;
      break;
    case QueueEvent::Kind::kReported:
      t.event = TrackingEventType::kDsnSent;
      break;
    case QueueEvent::Kind::kExpanded:
      t.event = TrackingEventType::kCategorized;
      break;
  }
  if (ev.recipient != nullptr) {
    t.recipient = ev.recipient->address;
  }
  if (!ev.next_hop.empty()) {
    t.next_hop = std::string(ev.next_hop);
  } else if (!ev.mailbox.empty()) {
    t.next_hop = "maildir:" + std::string(ev.mailbox);
  }
  t.reply = std::string(ev.reply);
  log_.record(t);
}

}  // namespace bh::queue
