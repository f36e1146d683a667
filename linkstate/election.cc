#include "linkstate/election.h"

#include <algorithm>

namespace bh::linkstate {

std::optional<std::string> elect_master(std::string_view configured,
                                        const std::vector<std::string>& members,
                                        const std::vector<std::string>& live) {
  auto is_live = [&](std::string_view n) {
    return std::find(live.begin(), live.end(), n) != live.end();
  };
  auto is_member = [&](std::string_view n) {
    return std::find(members.begin(), members.end(), n) != members.end();
  };
  if (!configured.empty() && is_member(configured) && is_live(configured)) {
    return std::string(configured);
  }
  std::optional<std::string> lowest;
  for (const auto& m : members) {
    if (is_live(m) && (!lowest || m < *lowest)) {
      lowest = m;
    }
  }
  return lowest;
}

}  // namespace bh::linkstate
