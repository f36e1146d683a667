#include "linkstate/election.h"

#include <gtest/gtest.h>

namespace bh::linkstate {
namespace {

const std::vector<std::string> kMembers = {"n3", "n1", "n2"};

TEST(ElectMaster, ConfiguredMasterWhileItIsLive) {
  EXPECT_EQ(elect_master("n2", kMembers, {"n1", "n2", "n3"}), "n2");
}

TEST(ElectMaster, LowestLiveNodeWithoutAConfiguredOne) {
  EXPECT_EQ(elect_master("", kMembers, {"n3", "n2", "n1"}), "n1");
  EXPECT_EQ(elect_master("", kMembers, {"n3", "n2"}), "n2");
}

TEST(ElectMaster, FailOverAndFailBack) {
  EXPECT_EQ(elect_master("n2", kMembers, {"n1", "n3"}), "n1");  // n2 died
  EXPECT_EQ(elect_master("n2", kMembers, {"n3"}), "n3");        // n1 too
  EXPECT_EQ(elect_master("n2", kMembers, {"n3", "n2"}), "n2");  // n2 is back
}

TEST(ElectMaster, NobodyLiveOrAConfiguredNonMember) {
  EXPECT_EQ(elect_master("n1", kMembers, {}), std::nullopt);
  EXPECT_EQ(elect_master("x9", kMembers, {"x9", "n3"}), "n3");  // live outsiders never win
  EXPECT_EQ(elect_master("", kMembers, {"x0"}), std::nullopt);
}

}  // namespace
}  // namespace bh::linkstate
