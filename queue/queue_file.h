#pragma once
// The on-disk queue file: one file per message (docs/queue-format.md).
//
//   "BHQF" 0x01 '\n'                     6-octet header
//   body octets                          exactly as spooled (Received header first)
//   records                              type (1) | length (4, big-endian) | payload
//   END record                           type 0xFF, length 0
//   trailer (24 octets)                  body length (8 BE) | records length (8 BE)
//                                        | CRC-32 of everything before the trailer (4 BE)
//                                        | "BHQE"
// A file is complete only if the trailer, the lengths and the CRC agree, and the END
// record is present. Every length read from disk is capped before it is used.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "queue/envelope.h"

namespace bh::queue {

inline constexpr std::string_view kQueueFileHeader{"BHQF\x01\n", 6};
inline constexpr std::size_t kQueueFileTrailer = 24;
inline constexpr std::uint32_t kMaxRecordLength = 64u << 10;
// The XEXCH50 blob is one record: its cap leaves room in kMaxRecordLength.
inline constexpr std::uint32_t kMaxXexch50 = 60u << 10;
inline constexpr std::uint64_t kMaxRecordsLength = 16u << 20;
inline constexpr std::size_t kMaxRecipientsInFile = 100000;

// Checks that decode_envelope would accept what encode_envelope makes of `env`: no CR,
// LF or NUL in string fields, at least one recipient, no empty recipient address, no
// field over the record caps. Permanent 5.3.0 otherwise.
Result<void> validate_envelope(const Envelope& env);
// Serializes the envelope records, END included (trailer not included).
std::string encode_envelope(const Envelope& env);
// Parses records as written by encode_envelope; rejects anything else.
Result<Envelope> decode_envelope(std::string_view records);
std::string encode_trailer(std::uint64_t body_len, std::uint64_t records_len, std::uint32_t crc);

struct StoredMessage {
  Envelope envelope;
  std::uint64_t body_offset = 0;
  std::uint64_t body_length = 0;
  // The body itself, only when read_queue_file was asked to keep small bodies.
  std::optional<std::string> body;
};
// Reads and fully validates a queue file (magic, lengths, CRC over the whole file, every
// record, END present, body length in the envelope = body length in the trailer).
// Memory is bounded by kMaxRecordsLength plus one 64 KiB buffer; the body is only
// checksummed, never held - except that a whole file of at most 64 KiB is read with one
// pread, and its body is kept in `body` when it is at most `keep_body_max` octets (so
// local delivery of a small message reads the file once).
// Errors: permanent 5.3.0 when the file is corrupt (quarantine it: retrying cannot
// help); transient 4.3.0 when it could not be opened or read (EIO, EMFILE, ...).
inline constexpr std::size_t kQueueReadChunk = 64u << 10;
Result<StoredMessage> read_queue_file(const std::string& path, std::uint64_t keep_body_max = 0);

// Streams the body of a validated queue file to `sink` in chunks of at most 64 KiB,
// byte-exact. A sink error stops the copy and is returned as is; a short file is
// transient 4.3.0.
using BodySink = std::function<Result<void>(std::string_view chunk)>;
Result<void> read_queue_body(const std::string& path, const StoredMessage& message,
                             const BodySink& sink);

}  // namespace bh::queue
