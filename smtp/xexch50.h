#pragma once
// XEXCH50 (DESIGN.md §4.1, exchange-notes §2): the command's arguments and our blob
// framing, sans I/O. Two pure parsers and their inverse serializers; the session decides
// when the verb is legal (authenticated peer, after the last RCPT, once per transaction)
// and reads exactly `octets` raw bytes after its 354.
//
// 1. Arguments: "XEXCH50 <octets> <count>", count = recipients + 1. Both plain decimal
//    (digits only: no sign, no '+'/'-', no spaces inside; at most 10 digits), separated by
//    one SP; trailing SPs are tolerated, nothing else. Nothing is allocated from the
//    numbers, and the cap check comes before any other use of them (MS03-046: a negative
//    or huge length must never size a buffer; hostile-inputs #21, #22).
//      kSyntax   -> the caller answers 501 5.5.4 (not a number, sign, garbage, octets 0,
//                   count 0 or above max_recipients + 1, count not the expected one,
//                   octets too small to hold `count` length prefixes)
//      kTooLarge -> the caller answers 552 5.3.4 (a well-formed octets above the cap,
//                   including 11 digits or more: larger than any cap we accept)
//    Either way nothing is read after the command: no 354, no data.
// 2. Blob: a sequence of sub-blobs, each a 4-octet big-endian length L then L octets (no
//    padding, unlike Exchange's own 4-octet alignment; L = 0 means "no properties").
//    First the message properties, then one per recipient in RCPT order. What each
//    sub-blob holds (a serialized protobuf from proto/) is not this file's business. The
//    parser checks each length prefix against the octets that remain and the count
//    against its cap before it takes anything, so a hostile L (0xFFFFFFFF) or a blob of
//    10^6 empty sub-blobs costs nothing. Suggested reply on failure: Exchange's
//    "500 5.5.2 Error processing XEXCH50 command".
//
// Trust: every input is hostile wire data; outputs are views into the caller's buffer
// (or copies, see to_owned()). Owns no state. Threading: pure functions, any thread.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bh::smtp {

// At most this many digits in either number (10^10 - 1 > 4 GiB, so no cap is lost).
inline constexpr std::size_t kXexch50MaxDigits = 10;

struct Xexch50Limits {
  std::uint64_t max_octets = 1u << 20;  // blob cap: the caller's config (default 1 MiB)
  std::uint32_t max_recipients = 100;   // count may be at most max_recipients + 1
  // When non-zero, count must equal it (the transaction's accepted recipients + 1);
  // Exchange answers a mismatch with 501 5.5.4.
  std::uint32_t expected_count = 0;
};

enum class Xexch50ArgError {
  kSyntax,    // 501 5.5.4
  kTooLarge,  // 552 5.3.4
};

struct Xexch50Args {
  std::uint64_t octets = 0;  // 1..max_octets (and >= 4 * count)
  std::uint32_t count = 0;   // 1..max_recipients + 1: message sub-blob + one per recipient
};

struct Xexch50ArgResult {
  std::optional<Xexch50ArgError> error;  // set: `args` is zero
  Xexch50Args args;
  bool ok() const { return !error.has_value(); }
  // The reply the session sends for `error`: 501 "5.5.4" or 552 "5.3.4"; 0 / "" when ok.
  int reply_code() const;
  const char* enhanced() const;
};

// `arg` is everything after "XEXCH50 " on the command line.
Xexch50ArgResult parse_xexch50_args(std::string_view arg, const Xexch50Limits& limits = {});
// "<octets> <count>" (the client side's argument string).
std::string format_xexch50_args(const Xexch50Args& args);

struct Xexch50BlobLimits {
  std::size_t max_subblobs = 101;  // message + recipients; keep it at max_recipients + 1
  // When non-zero, exactly this many sub-blobs (the command's count). Zero: any number
  // from 1 to max_subblobs.
  std::size_t expected_subblobs = 0;
};

enum class Xexch50BlobError {
  kEmpty,            // no octets at all
  kTruncatedLength,  // fewer than 4 octets left where a length prefix must start
  kTruncatedData,    // a length prefix larger than the octets that follow it
  kTooMany,          // more sub-blobs than max_subblobs or expected_subblobs
  kTooFew,           // the blob ended before expected_subblobs
};
const char* to_string(Xexch50BlobError e);

struct Xexch50Blob {
  std::string_view message;                  // message properties (may be empty)
  std::vector<std::string_view> recipients;  // one per recipient, in RCPT order
  std::size_t count() const { return 1 + recipients.size(); }
};
// The same with its own storage (views die with the session's read buffer).
struct Xexch50OwnedBlob {
  std::string message;
  std::vector<std::string> recipients;
};
Xexch50OwnedBlob to_owned(const Xexch50Blob& blob);

struct Xexch50BlobResult {
  std::optional<Xexch50BlobError> error;  // set: `blob` is empty
  Xexch50Blob blob;                       // views into the parsed input
  bool ok() const { return !error.has_value(); }
};

// Parses exactly `blob` (the `octets` raw bytes after the 354); every octet must belong
// to a sub-blob. The result's views point into `blob`.
Xexch50BlobResult parse_xexch50_blob(std::string_view blob, const Xexch50BlobLimits& limits = {});

// The inverse: message first, then each recipient's sub-blob. Every sub-blob must be
// shorter than 4 GiB (ours are small protobufs; a larger one is a bug and aborts).
std::string serialize_xexch50_blob(std::string_view message,
                                   std::span<const std::string> recipients);

}  // namespace bh::smtp
