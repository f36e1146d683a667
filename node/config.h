#pragma once
// The node's configuration: one YAML file mapped onto the protobuf schema
// `bh::proto::Config` (proto/config.proto), typed and validated before anything starts
// (DESIGN.md §5, STYLE.md principle 8).
//
// Loading is two passes over one file:
//  1. Structure, generic through the proto descriptors: a YAML mapping is a message, a
//     key a field name, a list a repeated field; scalars are parsed by the field's type
//     (string, integers with range checks, bool, enum) and checked against the field's
//     `(bh.proto.rules)` (default, min, max). Unknown keys, duplicate keys and wrong
//     types are errors.
//  2. Meaning: required keys, absolute data_dir, "IP:port" listen addresses (no host
//     names: nothing here resolves names), domain syntax, mailboxes inside local_domains,
//     cross-key limits.
// Every error is one line naming the file, the 1-based line and the dotted key path:
//   /etc/bh.yaml:5: listen.smtp[0]: "127.0.0.1:99999": port out of range (1-65535)
// The loaded message holds the effective value of every key: documented defaults are
// stored explicitly, node.hostname defaults to node.name, node.workers 0 becomes the
// number of hardware threads, domains are lower-cased, data_dir loses trailing slashes.
//
// Threading: pure functions, no shared state. Error class: always permanent.

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "proto/config.pb.h"

namespace bh::node {

// An "IP:port" listen or connect address. IPv6 is written "[::1]:25"; `address` holds
// it without brackets, ready for boost::asio::ip::make_address.
struct Endpoint {
  std::string address;
  std::uint16_t port = 0;
  std::string str() const;  // back to "IP:port" / "[IPv6]:port"
};

// "127.0.0.1:25" or "[::1]:25"; port 1-65535; IP literals only.
Result<Endpoint> parse_endpoint(const std::string& text);

Result<bh::proto::Config> load_config_file(const std::string& path);
// `filename` only names the source in error messages.
Result<bh::proto::Config> load_config_string(const std::string& text, const std::string& filename);

// admin.token_file, or <data_dir>/admin.token when it is not set.
std::string admin_token_path(const bh::proto::Config& config);

// ---------------------------------------------------------------------------------------
// Transitional: the flat typed view node/main.cc and bhctl were written against before the
// schema moved to proto/. Built implicitly from a loaded bh::proto::Config, so
// `const Config& cfg = load_config_file(p).value();` keeps working. New code reads the
// proto; this goes away once node/main.cc does.
struct SmtpConfig {
  std::uint64_t max_message_size = 0;
  std::uint32_t max_recipients = 0, max_command_line = 0, max_header_bytes = 0, max_errors = 0,
                max_junk_commands = 0;
  bool vrfy = false;
  std::uint32_t pregreet_wait_ms = 0, max_sessions = 0, max_sessions_per_ip = 0;
  std::uint32_t greeting_timeout_s = 0, mail_timeout_s = 0, rcpt_timeout_s = 0,
                data_init_timeout_s = 0, data_block_timeout_s = 0, data_term_timeout_s = 0,
                write_timeout_s = 0;
  bool pipelining = true, size = true, eightbitmime = true, binarymime = true, chunking = true,
       dsn = true, enhancedstatuscodes = true, smtputf8 = true;
};

struct QueueConfig {
  std::uint64_t free_space_floor_mb = 0;
  std::uint32_t retry_initial_s = 0, retry_max_s = 0;
};

struct Config {
  Config() = default;
  Config(const bh::proto::Config& c);  // NOLINT(google-explicit-constructor): see above

  std::string source;  // not known to the proto; empty
  std::string name, hostname, data_dir;
  std::uint32_t workers = 0;
  std::vector<Endpoint> smtp_listen;
  Endpoint admin_listen;
  bool has_admin = false;
  std::string admin_token_file;  // already defaulted to <data_dir>/admin.token
  std::vector<std::string> local_domains;
  std::vector<std::string> mailboxes;
  SmtpConfig smtp;
  QueueConfig queue;
};

}  // namespace bh::node
