// Base64: see base64.h for the contract (strict RFC 4648 §4, canonical only).

#include "common/base64.h"

#include <array>
#include <cstdint>

namespace bh {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 0..63 for alphabet characters, -1 for everything else (including '=').
constexpr std::array<std::int8_t, 256> make_table() {
  std::array<std::int8_t, 256> t{};
  for (auto& v : t) {
    v = -1;
  }
  for (int i = 0; i < 64; ++i) {
    t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
  }
  return t;
}
constexpr std::array<std::int8_t, 256> kTable = make_table();

int value_of(char c) { return kTable[static_cast<unsigned char>(c)]; }

// The number of '=' at the end (0, 1 or 2 for a valid input; more is reported by the
// check, which counts them itself).
std::size_t padding_of(std::string_view in) {
  std::size_t pad = 0;
  while (pad < in.size() && pad < 2 && in[in.size() - 1 - pad] == '=') {
    ++pad;
  }
  return pad;
}

}  // namespace

const char* to_string(Base64Error e) {
  switch (e) {
    case Base64Error::kBadLength:
      return "length is not a multiple of 4";
    case Base64Error::kBadCharacter:
      return "character outside the base64 alphabet";
    case Base64Error::kBadPadding:
      return "misplaced padding";
    case Base64Error::kNonZeroBits:
      return "non-zero bits before the padding";
  }
  return "invalid base64";
}

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t v =
        (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16) |
        (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8) |
        static_cast<unsigned char>(in[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  const std::size_t rest = in.size() - i;
  if (rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (rest == 2) {
      v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    }
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::optional<Base64Error> base64_check(std::string_view in) {
  if (in.size() % 4 != 0) {
    return Base64Error::kBadLength;
  }
  if (in.empty()) {
    return std::nullopt;
  }
  const std::size_t pad = padding_of(in);
  const std::size_t body = in.size() - pad;
  for (std::size_t i = 0; i < body; ++i) {
    if (value_of(in[i]) < 0) {
      // A '=' before the final one or two positions ("AB=C", "A===") is a padding error.
      return in[i] == '=' ? Base64Error::kBadPadding : Base64Error::kBadCharacter;
    }
  }
  // RFC 4648 §3.5: the bits of the last symbol that padding leaves unused must be zero.
  if (pad == 1 && (value_of(in[body - 1]) & 0x03) != 0) {
    return Base64Error::kNonZeroBits;
  }
  if (pad == 2 && (value_of(in[body - 1]) & 0x0f) != 0) {
    return Base64Error::kNonZeroBits;
  }
  return std::nullopt;
}

std::size_t base64_decoded_size(std::string_view in) {
  return in.size() / 4 * 3 - (in.size() % 4 == 0 ? padding_of(in) : 0);
}

Base64Decoded base64_decode(std::string_view in) {
  Base64Decoded r;
  if (auto e = base64_check(in)) {
    r.error = e;
    return r;
  }
  r.bytes.reserve(base64_decoded_size(in));
  const std::size_t pad = padding_of(in);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    const std::size_t symbols = last ? 4 - pad : 4;
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      v = (v << 6) | static_cast<std::uint32_t>(k < symbols ? value_of(in[i + k]) : 0);
    }
    r.bytes.push_back(static_cast<char>((v >> 16) & 0xff));
    if (symbols >= 3) {
      r.bytes.push_back(static_cast<char>((v >> 8) & 0xff));
    }
    if (symbols == 4) {
      r.bytes.push_back(static_cast<char>(v & 0xff));
    }
  }
  return r;
}

}  // namespace bh
