// X-LINK2STATE chunk machine: see link2state.h for the contract.

#include "smtp/link2state.h"

#include <utility>

#include "common/base64.h"

namespace bh::smtp {

namespace {

enum class Marker { kNone, kFirst, kNext, kLast };

constexpr std::size_t kVerbAndSpace = kLink2StateVerb.size() + 1;  // "X-LINK2STATE "
constexpr std::string_view kChunk = "CHUNK=";

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'a' && c <= 'z') {
      c = static_cast<char>(c - 'a' + 'A');
    }
    if (c != prefix[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::size_t Link2StateLimits::max_argument() const {
  return max_line > kVerbAndSpace + 2 ? max_line - kVerbAndSpace - 2 : 0;
}

int reply_code(Link2StateStatus s) {
  switch (s) {
    case Link2StateStatus::kAccepted:
    case Link2StateStatus::kComplete:
      return 250;
    case Link2StateStatus::kTooLong:
      return 500;
    case Link2StateStatus::kSyntax:
      return 501;
    case Link2StateStatus::kBadSequence:
      return 503;
    case Link2StateStatus::kTooLarge:
      return 552;
  }
  return 554;
}

const char* enhanced_code(Link2StateStatus s) {
  switch (s) {
    case Link2StateStatus::kAccepted:
    case Link2StateStatus::kComplete:
      return "2.0.0";
    case Link2StateStatus::kTooLong:
      return "5.5.2";
    case Link2StateStatus::kSyntax:
      return "5.5.4";
    case Link2StateStatus::kBadSequence:
      return "5.5.1";
    case Link2StateStatus::kTooLarge:
      return "5.3.4";
  }
  return "5.0.0";
}

const char* to_string(Link2StateStatus s) {
  switch (s) {
    case Link2StateStatus::kAccepted:
      return "chunk accepted";
    case Link2StateStatus::kComplete:
      return "link state received";
    case Link2StateStatus::kTooLong:
      return "X-LINK2STATE line too long";
    case Link2StateStatus::kSyntax:
      return "Syntax: X-LINK2STATE [FIRST|NEXT|LAST] CHUNK=<base64>";
    case Link2StateStatus::kBadSequence:
      return "X-LINK2STATE chunk out of sequence";
    case Link2StateStatus::kTooLarge:
      return "X-LINK2STATE data too large";
  }
  return "X-LINK2STATE error";
}

Link2StateReceiver::Link2StateReceiver(Link2StateLimits limits) : limits_(limits) {}

void Link2StateReceiver::reset() {
  open_ = false;
  chunks_ = 0;
  payload_.clear();
  payload_.shrink_to_fit();
}

Link2StateReceiver::Step Link2StateReceiver::fail(Link2StateStatus s) {
  reset();
  Step st;
  st.status = s;
  return st;
}

Link2StateReceiver::Step Link2StateReceiver::feed(std::string_view arg) {
  if (arg.size() > limits_.max_argument()) {
    return fail(Link2StateStatus::kTooLong);
  }
  // 1. Syntax, whatever the state (hostile #24 is 501 even out of sequence).
  Marker marker = Marker::kNone;
  if (starts_with_ci(arg, "FIRST ")) {
    marker = Marker::kFirst;
    arg.remove_prefix(6);
  } else if (starts_with_ci(arg, "NEXT ")) {
    marker = Marker::kNext;
    arg.remove_prefix(5);
  } else if (starts_with_ci(arg, "LAST ")) {
    marker = Marker::kLast;
    arg.remove_prefix(5);
  }
  if (!starts_with_ci(arg, kChunk)) {
    return fail(Link2StateStatus::kSyntax);
  }
  const std::string_view data = arg.substr(kChunk.size());
  if (base64_check(data).has_value()) {
    return fail(Link2StateStatus::kSyntax);
  }
  // 2. Sequence (MS05-021: never append to a sequence that was not opened).
  switch (marker) {
    case Marker::kFirst:
      if (open_) {
        return fail(Link2StateStatus::kBadSequence);
      }
      break;
    case Marker::kNext:
    case Marker::kLast:
      if (!open_) {
        return fail(Link2StateStatus::kBadSequence);
      }
      break;
    case Marker::kNone:
      if (open_ || !limits_.accept_lone_chunk) {
        return fail(Link2StateStatus::kBadSequence);
      }
      break;
  }
  // 3. Caps, from the encoded length, before anything is decoded or kept.
  if (chunks_ + 1 > limits_.max_chunks ||
      base64_decoded_size(data) > limits_.max_payload - payload_.size()) {
    return fail(Link2StateStatus::kTooLarge);
  }
  auto decoded = base64_decode(data);
  BH_CHECK(decoded.ok());  // checked above
  payload_.append(decoded.bytes);
  ++chunks_;
  open_ = true;
  Step st;
  if (marker == Marker::kLast || marker == Marker::kNone) {
    st.status = Link2StateStatus::kComplete;
    st.payload = std::move(payload_);
    payload_ = std::string();
    open_ = false;
    chunks_ = 0;
    return st;
  }
  st.status = Link2StateStatus::kAccepted;
  return st;
}

Result<std::vector<std::string>> split_link2state(std::string_view payload,
                                                  const Link2StateLimits& limits) {
  if (payload.size() > limits.max_payload) {
    return permanent_error("5.3.4", "link-state payload over the X-LINK2STATE cap");
  }
  // The longest prefix is "X-LINK2STATE FIRST CHUNK="; every line gets the same share.
  const std::size_t prefix = kVerbAndSpace + 6 + kChunk.size();
  if (limits.max_line < prefix + 2 + 4) {
    return permanent_error("5.3.0", "X-LINK2STATE line limit leaves no room for data");
  }
  const std::size_t per_line = (limits.max_line - 2 - prefix) / 4 * 3;  // raw octets
  const std::string verb = std::string(kLink2StateVerb) + " ";
  std::vector<std::string> lines;
  if (limits.accept_lone_chunk && payload.size() <= per_line) {
    lines.push_back(verb + std::string(kChunk) + base64_encode(payload));
    return lines;
  }
  std::vector<std::string_view> pieces;
  for (std::size_t off = 0; off < payload.size(); off += per_line) {
    pieces.push_back(payload.substr(off, per_line));
  }
  while (pieces.size() < 2) {
    pieces.emplace_back();  // FIRST and LAST at least; the LAST one may be empty
  }
  if (pieces.size() > limits.max_chunks) {
    return permanent_error("5.3.4", "link-state payload needs too many X-LINK2STATE chunks");
  }
  lines.reserve(pieces.size());
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const char* marker = i == 0 ? "FIRST " : (i + 1 == pieces.size() ? "LAST " : "NEXT ");
    lines.push_back(verb + marker + std::string(kChunk) + base64_encode(pieces[i]));
  }
  return lines;
}

}  // namespace bh::smtp
