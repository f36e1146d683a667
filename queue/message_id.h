#pragma once
// extract_message_id: the Message-ID header field (RFC 5322 §3.6.4) of a message, for
// the tracking log. Pure, no I/O.
//
// Input: the start of the message as spooled (header section, maybe followed by the
// body; maybe cut short). Scans at most kMessageIdScanLimit octets and stops at the
// empty line that ends the header section. The field name matches case-insensitively;
// folded lines (CRLF or bare LF followed by SP/HTAB, RFC 5322 §2.2.3) are unfolded.
// Output: the first Message-ID field's `<id-left@id-right>` when the value holds one
// (comments and blanks around it dropped), else the trimmed value as written (senders
// do write ids without brackets), at most kMessageIdMaxLength octets; empty when there
// is no such field in the scanned part. The result is not validated further: it is
// untrusted text, and whoever prints it must escape it.

#include <cstddef>
#include <string>
#include <string_view>

namespace bh::queue {

inline constexpr std::size_t kMessageIdScanLimit = 64u << 10;
inline constexpr std::size_t kMessageIdMaxLength = 998;  // RFC 5322 §2.1.1 line limit

std::string extract_message_id(std::string_view header_bytes);

// A message id without surrounding blanks and one pair of angle brackets: "<a@b>" and
// "a@b" compare equal after this.
std::string_view bare_message_id(std::string_view id);

}  // namespace bh::queue
