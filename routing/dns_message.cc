#include "routing/dns_message.h"

#include <arpa/inet.h>

#include <cctype>

namespace bh::routing {

namespace {

constexpr std::size_t kHeaderSize = 12;
constexpr std::size_t kMaxName = 255;     // RFC 1035 §2.3.4
constexpr std::uint16_t kClassIn = 1;
constexpr std::size_t kMaxRecords = 512;  // per section; more is not a reply we asked for

class Reader {
 public:
  Reader(const unsigned char* data, std::size_t size) : data_(data), size_(size) {}

  bool u16(std::size_t& pos, std::uint16_t& out) const {
    if (pos + 2 > size_) {
      return false;
    }
    out = static_cast<std::uint16_t>((data_[pos] << 8) | data_[pos + 1]);
    pos += 2;
    return true;
  }

  // RFC 1035 §4.1.4: labels, or a pointer to a prior occurrence. Each pointer must land
  // before the start of the labels read so far (a compressor only points at what it has
  // already written), so the walk ends without a jump counter.
  bool name(std::size_t& pos, std::string& out) const {
    out.clear();
    std::size_t p = pos;
    std::size_t limit = pos;
    std::size_t after = 0;  // where the caller continues: after the first pointer
    bool jumped = false;
    std::size_t wire_len = 1;
    while (true) {
      if (p >= size_) {
        return false;
      }
      unsigned char len = data_[p];
      if ((len & 0xC0) == 0xC0) {
        if (p + 1 >= size_) {
          return false;
        }
        std::size_t target = (static_cast<std::size_t>(len & 0x3F) << 8) | data_[p + 1];
        if (target >= limit) {
          return false;
        }
        limit = target;
        if (!jumped) {
          after = p + 2;
          jumped = true;
        }
        p = target;
        continue;
      }
      if ((len & 0xC0) != 0) {
        return false;  // 0x40 / 0x80 label types are not used in replies
      }
      if (len == 0) {
        pos = jumped ? after : p + 1;
        return true;
      }
      if (p + 1 + len > size_) {
        return false;
      }
      wire_len += len + 1;
      if (wire_len > kMaxName) {
        return false;
      }
      if (!out.empty()) {
        out.push_back('.');
      }
      for (std::size_t i = 0; i < len; ++i) {
        out.push_back(static_cast<char>(std::tolower(data_[p + 1 + i])));
      }
      p += 1 + len;
    }
  }

  const unsigned char* at(std::size_t pos) const { return data_ + pos; }
  std::size_t size() const { return size_; }

 private:
  const unsigned char* data_;
  std::size_t size_;
};

Error malformed(const std::string& what) {
  return transient_error("4.4.3", "malformed DNS reply: " + what);
}

// Reads `count` records; keeps the interesting ones in `out` (when not null).
Result<Ok> records(const Reader& r, std::size_t& pos, std::uint16_t count,
                   std::vector<DnsRecord>* out) {
  for (std::uint16_t i = 0; i < count; ++i) {
    std::string owner;
    std::uint16_t type = 0, cls = 0, ttl_hi = 0, ttl_lo = 0, rdlength = 0;
    if (!r.name(pos, owner) || !r.u16(pos, type) || !r.u16(pos, cls) || !r.u16(pos, ttl_hi) ||
        !r.u16(pos, ttl_lo) || !r.u16(pos, rdlength)) {
      return malformed("truncated record header");
    }
    const std::size_t rdata = pos;
    const std::size_t end = pos + rdlength;
    if (end > r.size()) {
      return malformed("record data past the end");
    }
    pos = end;
    if (out == nullptr || cls != kClassIn) {
      continue;
    }
    DnsRecord rec;
    rec.name = owner;
    std::size_t p = rdata;
    switch (static_cast<DnsType>(type)) {
      case DnsType::kA:
      case DnsType::kAaaa: {
        const bool v6 = static_cast<DnsType>(type) == DnsType::kAaaa;
        if (rdlength != (v6 ? 16 : 4)) {
          return malformed("address record of the wrong length");
        }
        char text[INET6_ADDRSTRLEN] = {};
        if (inet_ntop(v6 ? AF_INET6 : AF_INET, r.at(rdata), text, sizeof text) == nullptr) {
          return malformed("address record");
        }
        rec.type = static_cast<DnsType>(type);
        rec.address = text;
        break;
      }
      case DnsType::kMx:
        if (!r.u16(p, rec.preference) || !r.name(p, rec.target) || p != end) {
          return malformed("MX record");
        }
        rec.type = DnsType::kMx;
        break;
      case DnsType::kCname:
        if (!r.name(p, rec.target) || p != end) {
          return malformed("CNAME record");
        }
        rec.type = DnsType::kCname;
        break;
      default:
        continue;
    }
    if (out->size() >= kMaxRecords) {
      return malformed("too many records");
    }
    out->push_back(std::move(rec));
  }
  return Ok{};
}

}  // namespace

Result<DnsReply> parse_dns_reply(const unsigned char* data, std::size_t size) {
  if (data == nullptr || size < kHeaderSize) {
    return malformed("shorter than a header");
  }
  Reader r(data, size);
  std::size_t pos = 2;
  std::uint16_t flags = 0, qd = 0, an = 0, ns = 0, ar = 0;
  if (!r.u16(pos, flags) || !r.u16(pos, qd) || !r.u16(pos, an) || !r.u16(pos, ns) || !r.u16(pos, ar)) {
    return malformed("header");
  }
  if ((flags & 0x8000) == 0) {
    return malformed("not a response");
  }
  DnsReply reply;
  reply.rcode = flags & 0x000F;
  for (std::uint16_t i = 0; i < qd; ++i) {
    std::string ignored;
    std::uint16_t type = 0, cls = 0;
    if (!r.name(pos, ignored) || !r.u16(pos, type) || !r.u16(pos, cls)) {
      return malformed("question");
    }
  }
  if (auto ok = records(r, pos, an, &reply.answers); !ok.ok()) {
    return ok.error();
  }
  if (auto ok = records(r, pos, ns, nullptr); !ok.ok()) {
    return ok.error();
  }
  if (auto ok = records(r, pos, ar, &reply.additional); !ok.ok()) {
    return ok.error();
  }
  return reply;
}

}  // namespace bh::routing
