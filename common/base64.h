#pragma once
// Base64 (RFC 4648 §4) for SASL exchanges (RFC 4954) and X-LINK2STATE chunks.
//
// Decoding is strict, because every caller decodes hostile input: only the 64-character
// alphabet, the length a multiple of 4, '=' only as one or two final characters, and the
// unused bits before the padding zero. Anything else is rejected (hostile-inputs #43),
// never repaired. Pure functions, no state.

#include <optional>
#include <string>
#include <string_view>

namespace bh {

std::string base64_encode(std::string_view bytes);
// nullopt: not canonical base64 (the caller answers 501 5.5.2).
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace bh
