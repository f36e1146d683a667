#include "queue/queue_file.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace bh::queue {
namespace {

enum RecordType : std::uint8_t {
  kId = 1, kSender = 2, kRecipient = 3, kBody = 4, kRet = 5, kEnvid = 6, kSmtpUtf8 = 7,
  kDeclaredSize = 8, kBodySize = 9, kClient = 10, kHelo = 11, kProtocol = 12, kReceived = 13,
  kXexch50 = 14, kEnd = 0xFF,
};
// Recipient record: address, orcpt, mailbox, notify, then an optional flags byte
// (absent in files written before it existed, and when no flag is set); with
// kRecipientHomeServer the home server follows the flags byte as a string.
constexpr std::uint8_t kRecipientCategorize = 1;
constexpr std::uint8_t kRecipientHomeServer = 2;

void put_u32(std::string& o, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) {
    o.push_back(static_cast<char>((v >> s) & 0xFF));
  }
}
void put_u64(std::string& o, std::uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) {
    o.push_back(static_cast<char>((v >> s) & 0xFF));
  }
}
std::uint64_t get_be(std::string_view s, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    v = (v << 8) | static_cast<unsigned char>(s[i]);
  }
  return v;
}
void record(std::string& o, std::uint8_t type, std::string_view payload) {
  o.push_back(static_cast<char>(type));
  put_u32(o, static_cast<std::uint32_t>(payload.size()));
  o.append(payload);
}
void put_str(std::string& o, std::string_view s) {
  put_u32(o, static_cast<std::uint32_t>(s.size()));
  o.append(s);
}
// Record payloads never hold CR, LF or NUL in string fields (the SMTP layer rejects
// them); the decoder checks again so a hostile file cannot smuggle them in.
bool clean(std::string_view s) {
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') {
      return false;
    }
  }
  return true;
}

class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}
  bool u8(std::uint8_t& v) {
    if (s_.size() < 1) return false;
    v = static_cast<std::uint8_t>(s_[0]);
    s_.remove_prefix(1);
    return true;
  }
  bool u32(std::uint32_t& v) {
    if (s_.size() < 4) return false;
    v = static_cast<std::uint32_t>(get_be(s_, 4));
    s_.remove_prefix(4);
    return true;
  }
  bool u64(std::uint64_t& v) {
    if (s_.size() < 8) return false;
    v = get_be(s_, 8);
    s_.remove_prefix(8);
    return true;
  }
  bool str(std::string& v) {
    std::uint32_t n = 0;
    if (!u32(n) || n > s_.size()) return false;
    v.assign(s_.substr(0, n));
    s_.remove_prefix(n);
    return clean(v);
  }
  bool bytes(std::size_t n, std::string_view& v) {
    if (n > s_.size()) return false;
    v = s_.substr(0, n);
    s_.remove_prefix(n);
    return true;
  }
  bool empty() const { return s_.empty(); }

 private:
  std::string_view s_;
};

}  // namespace

Result<void> validate_envelope(const Envelope& e) {
  auto bad = [](const std::string& why) {
    return Result<void>(permanent_error("5.3.0", "invalid envelope: " + why));
  };
  constexpr std::size_t kMaxString = kMaxRecordLength / 4;
  auto ok = [&](const std::string& s) { return s.size() <= kMaxString && clean(s); };
  if (e.id.empty() || !ok(e.id)) return bad("id");
  if (!ok(e.sender)) return bad("sender");
  if (!ok(e.envid)) return bad("envid");
  if (!ok(e.client_address) || !ok(e.client_helo) || !ok(e.protocol)) return bad("client");
  if (e.recipients.empty()) return bad("no recipients");
  if (e.recipients.size() > kMaxRecipientsInFile) return bad("too many recipients");
  for (const auto& r : e.recipients) {
    if (r.address.empty() || !ok(r.address) || !ok(r.orcpt) || !ok(r.mailbox)) {
      return bad("recipient");
    }
  }
  return Ok{};
}

std::string encode_envelope(const Envelope& e) {
  std::string o, tmp;
  record(o, kId, e.id);
  record(o, kSender, e.sender);
  for (const auto& r : e.recipients) {
    tmp.clear();
    put_str(tmp, r.address);
    put_str(tmp, r.orcpt);
    put_str(tmp, r.mailbox);
    tmp.push_back(static_cast<char>(r.notify));
    const std::uint8_t flags = (r.categorize ? kRecipientCategorize : 0) |
                               (r.home_server.empty() ? 0 : kRecipientHomeServer);
    if (flags != 0) {
      tmp.push_back(static_cast<char>(flags));  // optional flags byte
    }
    if (!r.home_server.empty()) {
      put_str(tmp, r.home_server);
    }
    record(o, kRecipient, tmp);
  }
  record(o, kBody, std::string(1, static_cast<char>(e.body)));
  record(o, kRet, std::string(1, static_cast<char>(e.ret)));
  if (!e.envid.empty()) {
    record(o, kEnvid, e.envid);
  }
  record(o, kSmtpUtf8, std::string(1, e.smtputf8 ? '\1' : '\0'));
  tmp.clear();
  put_u64(tmp, e.declared_size);
  record(o, kDeclaredSize, tmp);
  tmp.clear();
  put_u64(tmp, e.body_size);
  record(o, kBodySize, tmp);
  record(o, kClient, e.client_address);
  record(o, kHelo, e.client_helo);
  record(o, kProtocol, e.protocol);
  tmp.clear();
  put_u64(tmp, static_cast<std::uint64_t>(e.received_unix));
  record(o, kReceived, tmp);
  if (!e.xexch50.empty()) {
    record(o, kXexch50, e.xexch50);  // binary; at most kMaxXexch50 octets
  }
  record(o, kEnd, {});
  return o;
}

std::string encode_trailer(std::uint64_t body_len, std::uint64_t records_len, std::uint32_t crc) {
  std::string t;
  put_u64(t, body_len);
  put_u64(t, records_len);
  put_u32(t, crc);
  t.append("BHQE");
  return t;
}

Result<Envelope> decode_envelope(std::string_view records) {
  auto bad = [](const char* why) {
    return Result<Envelope>(permanent_error("5.3.0", std::string("corrupt queue file: ") + why));
  };
  Envelope e;
  Cursor c(records);
  bool end = false;
  while (!c.empty()) {
    std::uint8_t type = 0;
    std::uint32_t len = 0;
    std::string_view p;
    if (!c.u8(type) || !c.u32(len) || len > kMaxRecordLength || !c.bytes(len, p)) {
      return bad("truncated or oversized record");
    }
    if (end) {
      return bad("data after END record");
    }
    std::string s(p);
    auto need_clean = [&]() { return clean(s); };
    switch (type) {
      case kId: if (!need_clean()) return bad("id"); e.id = s; break;
      case kSender: if (!need_clean()) return bad("sender"); e.sender = s; break;
      case kRecipient: {
        if (e.recipients.size() >= kMaxRecipientsInFile) return bad("too many recipients");
        Cursor rc(p);
        Recipient r;
        if (!rc.str(r.address) || !rc.str(r.orcpt) || !rc.str(r.mailbox) || !rc.u8(r.notify) ||
            r.address.empty()) {
          return bad("recipient record");
        }
        if (!rc.empty()) {  // the optional flags byte
          std::uint8_t flags = 0;
          if (!rc.u8(flags) || (flags & ~(kRecipientCategorize | kRecipientHomeServer)) != 0 ||
              ((flags & kRecipientHomeServer) != 0 && (!rc.str(r.home_server) || r.home_server.empty())) ||
              !rc.empty()) {
            return bad("recipient record");
          }
          r.categorize = (flags & kRecipientCategorize) != 0;
        }
        e.recipients.push_back(std::move(r));
        break;
      }
      case kBody:
        if (len != 1 || static_cast<std::uint8_t>(p[0]) > 3) return bad("body type");
        e.body = static_cast<BodyType>(p[0]);
        break;
      case kRet:
        if (len != 1 || static_cast<std::uint8_t>(p[0]) > 2) return bad("ret");
        e.ret = static_cast<DsnRet>(p[0]);
        break;
      case kEnvid: if (!need_clean()) return bad("envid"); e.envid = s; break;
      case kSmtpUtf8: if (len != 1) return bad("smtputf8"); e.smtputf8 = p[0] != 0; break;
      case kDeclaredSize: if (len != 8) return bad("size"); e.declared_size = get_be(p, 8); break;
      case kBodySize: if (len != 8) return bad("body size"); e.body_size = get_be(p, 8); break;
      case kClient: if (!need_clean()) return bad("client"); e.client_address = s; break;
      case kHelo: if (!need_clean()) return bad("helo"); e.client_helo = s; break;
      case kProtocol: if (!need_clean()) return bad("protocol"); e.protocol = s; break;
      case kReceived:
        if (len != 8) return bad("received");
        e.received_unix = static_cast<std::int64_t>(get_be(p, 8));
        break;
      case kXexch50:
        if (len == 0 || len > kMaxXexch50) return bad("xexch50");
        e.xexch50 = s;
        break;
      case kEnd: if (len != 0) return bad("end"); end = true; break;
      default: return bad("unknown record type");
    }
  }
  if (!end) {
    return bad("missing END record");
  }
  if (e.id.empty() || e.recipients.empty()) {
    return bad("no id or no recipients");
  }
  return e;
}

Result<StoredMessage> read_queue_file(const std::string& path, std::uint64_t keep_body_max) {
  auto bad = [&](const std::string& why) {
    return Result<StoredMessage>(permanent_error("5.3.0", path + ": " + why));
  };
  auto io = [&](const std::string& why) {
    return Result<StoredMessage>(transient_error("4.3.0", path + ": " + why + ": " + std::strerror(errno)));
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return io("cannot open");
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  off_t size = ::lseek(fd, 0, SEEK_END);
  if (size < static_cast<off_t>(kQueueFileHeader.size() + kQueueFileTrailer)) {
    return bad("too short");
  }
  auto total = static_cast<std::uint64_t>(size);
  // A small file is read whole, once; a large one is streamed through a 64 KiB buffer
  // and its trailer and records are read separately. No buffer is zero-filled first.
  const bool whole = total <= kQueueReadChunk;
  const std::size_t buf_size = whole ? static_cast<std::size_t>(total) : kQueueReadChunk;
  auto buf = std::make_unique_for_overwrite<char[]>(buf_size);
  auto read_at = [&](char* into, std::size_t n, off_t off) -> ssize_t {
    for (;;) {
      ssize_t got = ::pread(fd, into, n, off);
      if (got >= 0 || errno != EINTR) {
        return got;
      }
    }
  };
  std::string_view file;  // the whole file, when `whole`
  if (whole) {
    ssize_t got = read_at(buf.get(), buf_size, 0);
    if (got < 0) {
      return io("read error");
    }
    if (got != static_cast<ssize_t>(buf_size)) {
      return bad("file changed while reading");
    }
    file = std::string_view(buf.get(), buf_size);
  }
  std::string trailer_copy;
  std::string_view trailer;
  if (whole) {
    trailer = file.substr(buf_size - kQueueFileTrailer);
  } else {
    trailer_copy.assign(kQueueFileTrailer, '\0');
    if (read_at(trailer_copy.data(), kQueueFileTrailer, size - static_cast<off_t>(kQueueFileTrailer)) !=
        static_cast<ssize_t>(kQueueFileTrailer)) {
      return bad("no trailer");
    }
    trailer = trailer_copy;
  }
  if (trailer.compare(20, 4, "BHQE") != 0) {
    return bad("no trailer");
  }
  std::uint64_t body_len = get_be(trailer, 8);
  std::uint64_t rec_len = get_be(trailer.substr(8), 8);
  auto crc_want = static_cast<std::uint32_t>(get_be(trailer.substr(16), 4));
  if (rec_len > kMaxRecordsLength || body_len > total ||
      kQueueFileHeader.size() + body_len + rec_len + kQueueFileTrailer != total) {
    return bad("inconsistent lengths");
  }
  // CRC over header, body and records.
  uLong crc = crc32(0L, Z_NULL, 0);
  if (whole) {
    if (file.substr(0, kQueueFileHeader.size()) != kQueueFileHeader) {
      return bad("bad magic");
    }
    crc = crc32(crc, reinterpret_cast<const Bytef*>(file.data()),
                static_cast<uInt>(total - kQueueFileTrailer));
  } else {
    std::uint64_t left = total - kQueueFileTrailer;
    off_t off = 0;
    while (left > 0) {
      std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, buf_size));
      ssize_t got = read_at(buf.get(), n, off);
      if (got < 0) {
        return io("read error");
      }
      if (got != static_cast<ssize_t>(n)) {
        return bad("file changed while reading");
      }
      if (off == 0 && std::string_view(buf.get(), kQueueFileHeader.size()) != kQueueFileHeader) {
        return bad("bad magic");
      }
      crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.get()), static_cast<uInt>(n));
      off += got;
      left -= n;
    }
  }
  if (static_cast<std::uint32_t>(crc) != crc_want) {
    return bad("checksum mismatch");
  }
  std::string recs_copy;
  std::string_view recs;
  if (whole) {
    recs = file.substr(kQueueFileHeader.size() + body_len, rec_len);
  } else {
    recs_copy.assign(rec_len, '\0');
    if (read_at(recs_copy.data(), rec_len, static_cast<off_t>(kQueueFileHeader.size() + body_len)) !=
        static_cast<ssize_t>(rec_len)) {
      return io("read error");
    }
    recs = recs_copy;
  }
  auto env = decode_envelope(recs);
  if (!env.ok()) {
    return bad(env.error().message);
  }
  if (env->body_size != body_len) {
    return bad("body size in envelope does not match the file");
  }
  StoredMessage m;
  m.envelope = std::move(env.value());
  m.body_offset = kQueueFileHeader.size();
  m.body_length = body_len;
  if (whole && body_len <= keep_body_max) {
    m.body.emplace(file.substr(kQueueFileHeader.size(), body_len));
  }
  return m;
}

Result<void> read_queue_body(const std::string& path, const StoredMessage& message,
                             const BodySink& sink) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return transient_error("4.3.0", path + ": cannot open: " + std::strerror(errno));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  const auto buf_size =
      static_cast<std::size_t>(std::min<std::uint64_t>(message.body_length, kQueueReadChunk));
  auto buf = std::make_unique_for_overwrite<char[]>(std::max<std::size_t>(buf_size, 1));
  auto off = static_cast<off_t>(message.body_offset);
  std::uint64_t left = message.body_length;
  while (left > 0) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, buf_size));
    ssize_t got = ::pread(fd, buf.get(), n, off);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      return transient_error("4.3.0", path + ": read error: " + std::strerror(errno));
    }
    if (got == 0) {
      return transient_error("4.3.0", path + ": file shorter than its body length");
    }
    if (auto r = sink(std::string_view(buf.get(), static_cast<std::size_t>(got))); !r.ok()) {
      return r;
    }
    off += got;
    left -= static_cast<std::uint64_t>(got);
  }
  return Ok{};
}

}  // namespace bh::queue
