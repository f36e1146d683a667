#pragma once
// The node's configuration: one YAML file, typed and validated before anything starts
// (DESIGN.md §5, STYLE.md principle 8). Unknown keys, wrong types and out-of-range values
// are errors naming the file, the line and the dotted key ("node1.yaml:7: listen.smtp[0]:
// ..."). Every key and its default is in docs/configuration.md.
//
// Departure from DESIGN.md §5 (deliberate, see docs/configuration.md): the YAML is mapped
// onto these C++ structs rather than onto a protobuf message; the schema is the table
// of keys in config.cc, which is also what rejects unknown keys.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace bh::node {

struct Endpoint {
  std::string address;  // IP literal (v4, or v6 without brackets)
  std::uint16_t port = 0;
  std::string str() const;
};

struct SmtpConfig {
  std::uint64_t max_message_size = 36700160;  // 35 MiB
  std::uint32_t max_recipients = 100;
  std::uint32_t max_command_line = 512;
  std::uint32_t max_header_bytes = 1 << 20;
  std::uint32_t max_errors = 20;
  std::uint32_t max_junk_commands = 100;
  bool vrfy = false;
  std::uint32_t pregreet_wait_ms = 0;
  std::uint32_t max_sessions = 1000;
  std::uint32_t max_sessions_per_ip = 100;
  // RFC 5321 §4.5.3.2, in seconds.
  std::uint32_t greeting_timeout_s = 300, mail_timeout_s = 300, rcpt_timeout_s = 300,
                data_init_timeout_s = 120, data_block_timeout_s = 180,
                data_term_timeout_s = 600, write_timeout_s = 300;
  bool pipelining = true, size = true, eightbitmime = true, binarymime = true, chunking = true,
       dsn = true, enhancedstatuscodes = true, smtputf8 = true;
};

struct QueueConfig {
  std::uint64_t free_space_floor_mb = 100;
  std::uint32_t retry_initial_s = 1;
  std::uint32_t retry_max_s = 300;
};

struct Config {
  std::string source;  // the file it came from
  std::string name, hostname, data_dir;
  std::uint32_t workers = 0;  // 0: one per core
  std::vector<Endpoint> smtp_listen;
  Endpoint admin_listen;
  bool has_admin = false;
  std::string admin_token_file;  // default <data_dir>/admin.token
  std::vector<std::string> local_domains;
  std::vector<std::string> mailboxes;  // directory.file.mailboxes
  SmtpConfig smtp;
  QueueConfig queue;
};

Result<Config> load_config_file(const std::string& path);
Result<Config> load_config_string(const std::string& text, const std::string& filename);
// "127.0.0.1:25" or "[::1]:25"; no host names (nothing here resolves names).
Result<Endpoint> parse_endpoint(const std::string& text);

}  // namespace bh::node
