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
#include <string>
#include <string_view>

#include "common/result.h"
#include "queue/envelope.h"

namespace bh::queue {

inline constexpr std::string_view kQueueFileHeader{"BHQF\x01\n", 6};
inline constexpr std::size_t kQueueFileTrailer = 24;
inline constexpr std::uint32_t kMaxRecordLength = 64u << 10;
inline constexpr std::uint64_t kMaxRecordsLength = 16u << 20;
inline constexpr std::size_t kMaxRecipientsInFile = 100000;

// Serializes the envelope records, END included (trailer not included).
std::string encode_envelope(const Envelope& env);
// Parses records as written by encode_envelope; rejects anything else.
Result<Envelope> decode_envelope(std::string_view records);
std::string encode_trailer(std::uint64_t body_len, std::uint64_t records_len, std::uint32_t crc);

struct StoredMessage {
  Envelope envelope;
  std::uint64_t body_offset = 0;
  std::uint64_t body_length = 0;
};
// Reads and fully validates a queue file (CRC over the whole file).
Result<StoredMessage> read_queue_file(const std::string& path);

}  // namespace bh::queue
