#pragma once
// ESMTP MAIL/RCPT parameter parsing (RFC 1870 SIZE, 6152 BODY, 3030 BINARYMIME,
// 3461 RET/ENVID/NOTIFY/ORCPT with xtext, 6531 SMTPUTF8). Pure functions.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "queue/envelope.h"

namespace bh::smtp {

// A command argument split into the path ("<...>") and the parameters after it.
struct PathAndParams {
  std::string_view path;
  std::vector<std::pair<std::string, std::string>> params;  // keyword upper-cased
  std::vector<bool> has_value;
};
// Splits "FROM:<a@b> SIZE=10" after the "FROM:" prefix. Quoted '>' inside the path is
// honoured. Returns an error 501 5.5.4 / 5.5.2 on malformed input.
Result<PathAndParams> split_path_params(std::string_view rest, std::size_t max_params = 16);

// RFC 3461 §4 xtext decoding; rejects malformed "+XX", and decoded CR, LF, NUL or other
// controls (they could break a queue record: CVE-2020-28026 lesson).
std::optional<std::string> decode_xtext(std::string_view in);
std::string encode_xtext(std::string_view in);

// Decimal without sign or leading '+', overflow reported as nullopt.
std::optional<std::uint64_t> parse_decimal(std::string_view s);

}  // namespace bh::smtp
