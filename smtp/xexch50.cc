// XEXCH50 arguments and blob framing: see xexch50.h for the contract.

#include "smtp/xexch50.h"

#include "common/result.h"

namespace bh::smtp {

namespace {

bool all_digits(std::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
  }
  return !s.empty();
}

// At most kXexch50MaxDigits digits, checked by the caller: cannot overflow 64 bits.
std::uint64_t value_of(std::string_view digits) {
  std::uint64_t v = 0;
  for (char c : digits) {
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

std::uint32_t read_be32(std::string_view s) {
  return (static_cast<std::uint32_t>(static_cast<unsigned char>(s[0])) << 24) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(s[1])) << 16) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(s[2])) << 8) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(s[3]));
}

void append_be32(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>((v >> 24) & 0xff));
  out.push_back(static_cast<char>((v >> 16) & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

Xexch50ArgResult arg_error(Xexch50ArgError e) {
  Xexch50ArgResult r;
  r.error = e;
  return r;
}

Xexch50BlobResult blob_error(Xexch50BlobError e) {
  Xexch50BlobResult r;
  r.error = e;
  return r;
}

}  // namespace

int Xexch50ArgResult::reply_code() const {
  if (!error) {
    return 0;
  }
  return *error == Xexch50ArgError::kTooLarge ? 552 : 501;
}

const char* Xexch50ArgResult::enhanced() const {
  if (!error) {
    return "";
  }
  return *error == Xexch50ArgError::kTooLarge ? "5.3.4" : "5.5.4";
}

Xexch50ArgResult parse_xexch50_args(std::string_view arg, const Xexch50Limits& limits) {
  while (!arg.empty() && arg.back() == ' ') {
    arg.remove_suffix(1);
  }
  const std::size_t sp = arg.find(' ');
  if (sp == std::string_view::npos) {
    return arg_error(Xexch50ArgError::kSyntax);
  }
  const std::string_view octets = arg.substr(0, sp);
  const std::string_view count = arg.substr(sp + 1);
  // The whole line must be well-formed before any number is judged: "-1 2", "1x 2",
  // "2  2" (two spaces) and "2 2 2" are syntax errors whatever their values.
  if (!all_digits(octets) || !all_digits(count)) {
    return arg_error(Xexch50ArgError::kSyntax);
  }
  if (count.size() > kXexch50MaxDigits) {
    return arg_error(Xexch50ArgError::kSyntax);
  }
  const std::uint64_t n = value_of(count);
  if (n == 0 || n > static_cast<std::uint64_t>(limits.max_recipients) + 1 ||
      (limits.expected_count != 0 && n != limits.expected_count)) {
    return arg_error(Xexch50ArgError::kSyntax);
  }
  // The cap, before the value is used for anything else. More than 10 digits is a number
  // too, but above every cap we accept.
  if (octets.size() > kXexch50MaxDigits) {
    return arg_error(Xexch50ArgError::kTooLarge);
  }
  const std::uint64_t size = value_of(octets);
  if (size > limits.max_octets) {
    return arg_error(Xexch50ArgError::kTooLarge);
  }
  // Each sub-blob has a 4-octet length prefix: fewer octets cannot be a valid blob
  // (Exchange likewise refuses sizes of 4 or less).
  if (size == 0 || size < 4 * n) {
    return arg_error(Xexch50ArgError::kSyntax);
  }
  Xexch50ArgResult r;
  r.args.octets = size;
  r.args.count = static_cast<std::uint32_t>(n);
  return r;
}

std::string format_xexch50_args(const Xexch50Args& args) {
  return std::to_string(args.octets) + " " + std::to_string(args.count);
}

const char* to_string(Xexch50BlobError e) {
  switch (e) {
    case Xexch50BlobError::kEmpty:
      return "empty XEXCH50 blob";
    case Xexch50BlobError::kTruncatedLength:
      return "XEXCH50 blob ends inside a length prefix";
    case Xexch50BlobError::kTruncatedData:
      return "XEXCH50 sub-blob longer than the data that follows";
    case Xexch50BlobError::kTooMany:
      return "too many XEXCH50 sub-blobs";
    case Xexch50BlobError::kTooFew:
      return "too few XEXCH50 sub-blobs";
  }
  return "malformed XEXCH50 blob";
}

Xexch50OwnedBlob to_owned(const Xexch50Blob& blob) {
  Xexch50OwnedBlob o;
  o.message = std::string(blob.message);
  o.recipients.reserve(blob.recipients.size());
  for (auto r : blob.recipients) {
    o.recipients.emplace_back(r);
  }
  return o;
}

Xexch50BlobResult parse_xexch50_blob(std::string_view blob, const Xexch50BlobLimits& limits) {
  if (blob.empty()) {
    return blob_error(Xexch50BlobError::kEmpty);
  }
  std::size_t max = limits.max_subblobs;
  if (limits.expected_subblobs != 0 && limits.expected_subblobs < max) {
    max = limits.expected_subblobs;
  }
  Xexch50BlobResult r;
  // Never reserve from a count the peer chose beyond what the octets could hold.
  const std::size_t could_hold = blob.size() / 4;
  r.blob.recipients.reserve(max < could_hold ? max : could_hold);
  std::size_t taken = 0;
  std::string_view rest = blob;
  while (!rest.empty()) {
    if (taken >= max) {
      return blob_error(Xexch50BlobError::kTooMany);
    }
    if (rest.size() < 4) {
      return blob_error(Xexch50BlobError::kTruncatedLength);
    }
    const std::uint32_t len = read_be32(rest);
    rest.remove_prefix(4);
    if (len > rest.size()) {
      return blob_error(Xexch50BlobError::kTruncatedData);
    }
    const std::string_view sub = rest.substr(0, len);
    rest.remove_prefix(len);
    if (taken == 0) {
      r.blob.message = sub;
    } else {
      r.blob.recipients.push_back(sub);
    }
    ++taken;
  }
  if (limits.expected_subblobs != 0 && taken < limits.expected_subblobs) {
    return blob_error(Xexch50BlobError::kTooFew);
  }
  return r;
}

std::string serialize_xexch50_blob(std::string_view message,
                                   std::span<const std::string> recipients) {
  std::size_t total = 4 + message.size();
  for (const auto& s : recipients) {
    total += 4 + s.size();
  }
  std::string out;
  out.reserve(total);
  auto put = [&out](std::string_view sub) {
    BH_CHECK(sub.size() <= 0xffffffffu);
    append_be32(out, static_cast<std::uint32_t>(sub.size()));
    out.append(sub);
  };
  put(message);
  for (const auto& s : recipients) {
    put(s);
  }
  return out;
}

}  // namespace bh::smtp
