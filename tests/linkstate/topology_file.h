#pragma once
// Topology files for the shortest-path tests (format: tests/linkstate/topologies/README.md).
// run_topology() builds a LinkStateDb from the file's groups and connectors (through
// set_config() and report(), the same calls the node makes), then checks each expectation
// line at the point where it appears. Returns one text per mismatch or syntax error,
// each naming the file and line; empty when everything matched.

#include <string>
#include <vector>

namespace bh::linkstate::testing {

std::vector<std::string> run_topology(const std::string& path);

}  // namespace bh::linkstate::testing
