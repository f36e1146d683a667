#pragma once
// The X-LINK2STATE payload between bridgeheads of different routing groups (DESIGN.md
// §4.1, docs/linkstate-protocol.md §4), sans I/O: what smtp/link2state.h reassembles on
// the server side and splits on the client side is a serialized bh.proto.LsLink2State.
//
//   client (sending bridgehead)              server (receiving bridgehead)
//   link2state_digest(db) ------------------> handle_link2state(): equal digest: no reply;
//                                             different: reply with our whole table
//   handle_link2state(reply) <--------------- (if any)
//     applies it; if we hold an entry the server lacks or has older (has_news_for),
//     our whole table goes out as the next X-LINK2STATE exchange
//   ...                      ---------------> applies it; replies only with news
// Every step applies entries with LinkStateDb::apply() (newer wins, stale ignored), so
// one exchange of each side's table brings both to the same digest.
//
// Trust: the payload is hostile (the SMTP session admits the verb only after X-EXPS from
// a peer node). It is bounded by the chunk machine's max_payload before it gets here;
// decoding checks it as the 691 frames are checked (linkstate/wire.h): protocol version,
// organization, counts, every field, and the OrgInfo digest against its content. Any
// fault refuses the whole payload and changes nothing. Errors are permanent with an
// empty enhanced code; the SMTP session answers them as a syntax error (501 5.5.4).

#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "linkstate/database.h"
#include "linkstate/wire.h"

namespace bh::linkstate {

// The opening payload: our digest only.
std::string link2state_digest(const Snapshot& snapshot, const std::string& organization);
// Our whole table (sent when the digests differ).
std::string link2state_table(const Snapshot& snapshot, const std::string& organization);

struct Link2StateOutcome {
  std::size_t applied = 0;           // entries that replaced ours (kApplied or kTieWon)
  std::optional<std::string> reply;  // the payload to send back, when the peer is behind
};

// Handles one reassembled payload (either side). Applies what is newer; returns the
// reply payload when the peer's state differs from ours afterwards.
Result<Link2StateOutcome> handle_link2state(LinkStateDb& db, std::string_view payload,
                                            const std::string& organization,
                                            const TableLimits& limits = {});

}  // namespace bh::linkstate
