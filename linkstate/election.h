#pragma once
// Routing-group master election (DESIGN.md §4.2, issue 6), a pure function: the master
// is the one named in the directory or config while it is live, else the lowest live
// node id among the members. Members fail over when the named master dies (it is no
// longer live) and fail back when it returns (it is live again), with no state of
// their own: every node that sees the same liveness picks the same master.
//
// "Live" is the caller's knowledge (a 691 session up, or this node itself); a node that
// cannot reach anyone sees only itself live and elects itself, which is what a member
// cut off from its group should do for its own routing.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bh::linkstate {

// `members` in any order; `configured` empty when none is named. nullopt when no member
// is live (or `configured` is live but not a member: a configuration fault, so the
// lowest live member is taken instead).
std::optional<std::string> elect_master(std::string_view configured,
                                        const std::vector<std::string>& members,
                                        const std::vector<std::string>& live);

}  // namespace bh::linkstate
