// Loads every topology in tests/linkstate/topologies/ and checks its expected routes
// (format: topologies/README.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/linkstate/topology_file.h"

namespace bh::linkstate {
namespace {

TEST(TopologyFiles, AllMatch) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(BH_TOPOLOGY_DIR)) {
    if (e.path().extension() == ".txt") {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 6u);
  for (const auto& f : files) {
    SCOPED_TRACE(f);
    for (const auto& err : testing::run_topology(f)) {
      ADD_FAILURE() << err;
    }
  }
}

TEST(TopologyFiles, RunnerReportsMismatches) {
  // The runner itself must fail on a wrong expectation (else AllMatch proves nothing).
  const std::string path = ::testing::TempDir() + "/bh_linkstate_wrong.txt";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(
        "group A\ngroup B\nconnector ab from=A to=B cost=3 src=a1\nfrom A\n"
        "route B cost=4 via=ab\nroute B cost=3 via=ab\nbogus line\n",
        f);
    std::fclose(f);
  }
  const auto errors = testing::run_topology(path);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0].find(
                ":5: from A: expected \"route B cost=4 via=ab\", got \"route B cost=3 via=ab\""),
            std::string::npos)
      << errors[0];
  EXPECT_NE(errors[1].find(":7: unknown line"), std::string::npos) << errors[1];
  std::remove(path.c_str());
}

}  // namespace
}  // namespace bh::linkstate
