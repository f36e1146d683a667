#pragma once
// The XEXCH50 property bag (proto/xexch50.proto) as plain values: what one node tells the
// next about a message and its recipients (DESIGN.md §4.1; docs/x-verbs.md).
//
// encode(): the whole blob the client sends after the 354 (smtp/xexch50.h framing), for
// the recipients the server accepted, in RCPT order.
// decode(): from a blob already checked by parse_xexch50_blob; every field is checked
// here: version 1 (an empty message sub-blob means "no properties"), at most kMaxHops hops, each
// hop and home server a name of 1-128 [A-Za-z0-9._-], the organization 0-128 of them. Anything else
// is a permanent 5.5.2 error ("Error processing XEXCH50 command"), and nothing of the blob is used.
// Loops: passed_through(props, node) tells whether `node` is in the hop list; the
// session refuses such a message (554 5.4.6) and one with kMaxHops hops.
// Threading: pure functions.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace bh::smtp {

inline constexpr std::size_t kMaxHops = 30;

struct Xexch50Props {
  std::string organization;
  std::vector<std::string> hops;  // oldest first
  bool categorized = false;
  struct Recipient {
    std::string home_server;
    bool expanded = false;
  };
  std::vector<Recipient> recipients;  // one per accepted recipient, in RCPT order
};

std::string encode_xexch50_props(const Xexch50Props& props);
Result<Xexch50Props> decode_xexch50_props(std::string_view blob);
bool passed_through(const Xexch50Props& props, std::string_view node);

}  // namespace bh::smtp
