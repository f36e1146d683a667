#pragma once
// Base64 (RFC 4648 §4, the standard alphabet with '=' padding): one strict decoder and
// one encoder shared by every verb that carries base64 (AUTH / X-EXPS responses, SASL,
// X-LINK2STATE chunks). Pure functions, no I/O, no state.
//
// Trust: the decoder's input is hostile wire data. It accepts only the canonical
// encoding (RFC 4648 §3.5 "canonical encoding"): length a multiple of 4; characters
// A-Z a-z 0-9 + / only, '=' only as one or two final padding characters; no whitespace
// or line breaks (RFC 4648 §3.3: reject characters outside the alphabet); the unused low
// bits before the padding must be zero, so each byte string has exactly one accepted
// encoding. Anything else is rejected whole, never skipped or repaired.
// Limits: none of its own; callers cap the input first (base64_decoded_size() tells the
// output size without decoding or allocating, for a cap check before any work).
// Threading: pure functions, any thread.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace bh {

// The canonical encoding of `in` (padded). Output length 4 * ceil(n / 3).
std::string base64_encode(std::string_view in);

// Why an input was refused; the SMTP caller answers every kind alike (e.g. AUTH:
// 501 5.5.2, X-LINK2STATE: 501 5.5.4), the kind is for counters and logs.
enum class Base64Error {
  kBadLength,     // length not a multiple of 4
  kBadCharacter,  // outside the alphabet (includes whitespace, NUL, 8-bit octets)
  kBadPadding,    // '=' anywhere but the last one or two positions, or "x===" forms
  kNonZeroBits,   // the bits dropped by padding are not zero (not canonical)
};
const char* to_string(Base64Error e);

struct Base64Decoded {
  std::optional<Base64Error> error;  // set: `bytes` is empty
  std::string bytes;
  bool ok() const { return !error.has_value(); }
};

// Strict decode (see the header comment). The empty string decodes to the empty string.
Base64Decoded base64_decode(std::string_view in);

// Checks `in` without producing output; nullopt when base64_decode() would accept it.
std::optional<Base64Error> base64_check(std::string_view in);

// The number of octets base64_decode() returns for an input of this length that passes
// the check: 3 * n / 4 minus the padding. For inputs that fail, an upper bound.
std::size_t base64_decoded_size(std::string_view in);

}  // namespace bh
