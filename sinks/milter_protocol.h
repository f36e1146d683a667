#pragma once
// The Sendmail milter protocol, version 6 (as Postfix speaks it), MTA side, sans I/O.
//
// Packets are a 4-octet big-endian length (counting the command octet), one command
// octet and the data. encode_*() build the MTA's commands; MilterReader cuts the milter's
// byte stream into packets with a cap on every length (a milter is trusted config-wise
// but its bytes are still checked: a broken one must not take the node down), and
// decode_reply() turns one packet into a MilterReply, checking every field.
// No I/O, no allocation beyond the packet being read. Fuzzed by
// tests/fuzz/sinks_milter_reply_fuzz.cc.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace bh::sinks::milter {

constexpr std::uint32_t kVersion = 6;
// Actions the MTA lets the milter take (SMFIF_*).
constexpr std::uint32_t kActAddHeaders = 0x01, kActChangeBody = 0x02, kActAddRcpt = 0x04,
                        kActDelRcpt = 0x08, kActChangeHeaders = 0x10, kActQuarantine = 0x20,
                        kActChangeFrom = 0x40, kActAddRcptPar = 0x80, kActSetSymList = 0x100;
constexpr std::uint32_t kOfferedActions = kActAddHeaders | kActChangeBody | kActAddRcpt |
                                          kActDelRcpt | kActChangeHeaders | kActQuarantine |
                                          kActChangeFrom | kActAddRcptPar | kActSetSymList;
// Body chunks we send are at most this long (MILTER_CHUNK_SIZE).
constexpr std::size_t kChunk = 65535;
// Caps on what we read: one packet, and the total of SMFIR_REPLBODY chunks per message.
constexpr std::size_t kMaxPacket = 1u << 20;

// ---- MTA -> milter ----
std::string encode(char cmd, std::string_view data);
std::string encode_optneg(std::uint32_t version, std::uint32_t actions, std::uint32_t protocol);
// SMFIC_MACRO for the stage `for_cmd` ('C', 'H', 'M', 'R', 'T', 'L', 'N', 'E').
std::string encode_macros(char for_cmd, const std::vector<std::pair<std::string, std::string>>& m);
// SMFIC_CONNECT: `address` an IPv4 or IPv6 literal (family '4'/'6'), or empty ('U').
std::string encode_connect(std::string_view hostname, std::string_view address, std::uint16_t port);
std::string encode_helo(std::string_view helo);
std::string encode_mail(std::string_view sender);     // "<sender>"
std::string encode_rcpt(std::string_view recipient);  // "<recipient>"
std::string encode_header(std::string_view name, std::string_view value);
std::string encode_body(std::string_view chunk);
inline std::string encode_data() { return encode('T', {}); }
inline std::string encode_eoh() { return encode('N', {}); }
inline std::string encode_eom() { return encode('E', {}); }
inline std::string encode_abort() { return encode('A', {}); }
inline std::string encode_quit() { return encode('Q', {}); }

// ---- milter -> MTA ----
struct Packet {
  char cmd = 0;
  std::string data;
};

class MilterReader {
 public:
  explicit MilterReader(std::size_t max_packet = kMaxPacket) : max_(max_packet) {}
  void feed(std::string_view bytes) { buf_.append(bytes); }
  // The next complete packet; nullopt: need more bytes; an Error: the stream is broken
  // (length 0 or above the cap) and nothing more may be read from it.
  std::optional<Result<Packet>> next();
  std::size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::size_t max_;
  std::string buf_;
  std::size_t pos_ = 0;
};

struct Reply {
  enum class Kind {
    kOptneg,      // version, actions, protocol
    kContinue,    // 'c'
    kAccept,      // 'a'
    kReject,      // 'r'
    kTempfail,    // 't'
    kDiscard,     // 'd'
    kReplyCode,   // 'y': code, enhanced, text
    kSkip,        // 's'
    kProgress,    // 'p'
    kConnFail,    // 'f'
    kShutdown,    // '4'
    kAddHeader,   // 'h': name, value
    kInsHeader,   // 'i': index, name, value
    kChgHeader,   // 'm': index, name, value (empty value: delete)
    kReplBody,    // 'b': value = a body chunk
    kAddRcpt,     // '+' / '2': value = recipient
    kDelRcpt,     // '-': value = recipient
    kChgFrom,     // 'e': value = sender
    kQuarantine,  // 'q': value = reason
    kSetSymList,  // 'l': ignored (we send a fixed set)
  };
  Kind kind = Kind::kContinue;
  std::uint32_t version = 0, actions = 0, protocol = 0, index = 0;
  int code = 0;
  std::string enhanced, text, name, value;
};

// Every field checked: NUL-terminated strings inside the packet, counts exact, a reply
// code 4xx/5xx with a matching enhanced code, header names and values usable as such.
// Errors are transient 4.7.0 ("the milter misbehaved"), never a crash.
Result<Reply> decode_reply(const Packet& p);

// Header values travel with LF line ends in the milter protocol (Postfix strips CR):
// these convert folding between the message (CRLF) and the protocol (LF).
std::string to_milter_value(std::string_view crlf_value);
std::string from_milter_value(std::string_view lf_value);

}  // namespace bh::sinks::milter
