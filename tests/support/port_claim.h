#pragma once
// Port claims shared with the Python tests (tests/support/bhnode.py claim_port): a test
// that takes a port for a server it starts claims it with a file <tmp>/bh-test-ports/<port>
// (O_EXCL), so no other test of the same run, C++ or Python, is given it within the hour.
// Without that, a port handed out here could be the "dead" target or the server of a test
// running beside it (ctest -j), and each would talk to the other's peer.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <string>

namespace bh::testing {

inline bool claim_port(std::uint16_t port) {
  const char* tmp = std::getenv("TMPDIR");
  const std::string dir = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/bh-test-ports";
  ::mkdir(dir.c_str(), 0755);
  const std::string path = dir + "/" + std::to_string(port);
  int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
  if (fd >= 0) {
    ::close(fd);
    return true;
  }
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0 && std::time(nullptr) - st.st_mtime > 3600) {
    ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);  // an old claim: reuse it
    return true;
  }
  return false;
}

}  // namespace bh::testing
