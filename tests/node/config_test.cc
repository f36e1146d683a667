#include "node/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "routing/route_table.h"

namespace bh::node {
namespace {

// DESIGN.md §5: this exact file must always be accepted.
const char* kMinimal = R"(node:
  name: node1
  data_dir: /tmp/bh-node1          # queue, mailboxes, state
listen:
  smtp: ["127.0.0.1:2525"]
  admin: "127.0.0.1:8691"
local_domains: [example.org]
directory:
  file:
    mailboxes: [alice@example.org, bob@example.org]
)";

TEST(Config, TheMinimalFileOfDesignIsAccepted) {
  auto c = load_config_string(kMinimal, "node1.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->node().name(), "node1");
  EXPECT_EQ(c->node().data_dir(), "/tmp/bh-node1");
  ASSERT_EQ(c->listen().smtp_size(), 1);
  EXPECT_EQ(c->listen().smtp(0), "127.0.0.1:2525");
  EXPECT_EQ(c->listen().admin(), "127.0.0.1:8691");
  ASSERT_EQ(c->local_domains_size(), 1);
  EXPECT_EQ(c->local_domains(0), "example.org");
  ASSERT_EQ(c->directory().file().mailboxes_size(), 2);
  EXPECT_EQ(c->directory().file().mailboxes(0), "alice@example.org");
  EXPECT_EQ(c->directory().file().mailboxes(1), "bob@example.org");
  EXPECT_EQ(admin_token_path(*c), "/tmp/bh-node1/admin.token");
}

TEST(Config, DefaultsAreStoredExplicitly) {
  auto c = load_config_string(kMinimal, "node1.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->node().hostname(), "node1");
  EXPECT_EQ(c->node().workers(), std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(c->node().log_level(), proto::LOG_LEVEL_INFO);
  const auto& s = c->smtp();
  EXPECT_EQ(s.max_message_size(), 36700160u);
  EXPECT_EQ(s.max_recipients(), 100u);
  EXPECT_EQ(s.max_command_line(), 512u);
  EXPECT_EQ(s.max_header_bytes(), 1048576u);
  EXPECT_EQ(s.max_errors(), 20u);
  EXPECT_EQ(s.max_junk_commands(), 100u);
  EXPECT_FALSE(s.vrfy());
  EXPECT_EQ(s.pregreet_wait_ms(), 0u);
  EXPECT_EQ(s.max_sessions(), 1000u);
  EXPECT_EQ(s.max_sessions_per_ip(), 50u);
  EXPECT_EQ(s.max_connections_per_ip_per_minute(), 60u);
  EXPECT_EQ(s.tarpit_after_errors(), 5u);
  EXPECT_EQ(s.tarpit_delay_ms(), 1000u);
  EXPECT_EQ(c->listen().smtps_size(), 0);
  EXPECT_EQ(s.timeouts().greeting_s(), 300u);
  EXPECT_EQ(s.timeouts().mail_s(), 300u);
  EXPECT_EQ(s.timeouts().rcpt_s(), 300u);
  EXPECT_EQ(s.timeouts().data_init_s(), 120u);
  EXPECT_EQ(s.timeouts().data_block_s(), 180u);
  EXPECT_EQ(s.timeouts().data_term_s(), 600u);
  EXPECT_EQ(s.timeouts().write_s(), 300u);
  const auto& e = s.extensions();
  EXPECT_TRUE(e.pipelining() && e.size() && e.eightbitmime() && e.binarymime() && e.chunking() &&
              e.dsn() && e.enhancedstatuscodes() && e.smtputf8());
  EXPECT_EQ(c->queue().free_space_floor_mb(), 100u);
  EXPECT_EQ(c->queue().retry_initial_s(), 1u);
  EXPECT_EQ(c->queue().retry_max_s(), 300u);
  EXPECT_TRUE(c->tracking().enabled());
  EXPECT_EQ(c->tracking().max_mb(), 100u);
  EXPECT_EQ(c->tracking().keep(), 5u);
}

TEST(Config, EveryOptionalKeyIsAccepted) {
  std::string text = std::string(kMinimal) + R"(admin:
  token_file: /etc/bh/admin.token
smtp:
  max_message_size: 1048576
  max_recipients: 500
  max_command_line: 1024
  max_header_bytes: 65536
  max_errors: 5
  max_junk_commands: 7
  vrfy: yes
  pregreet_wait_ms: 250
  max_sessions: 20
  max_sessions_per_ip: 2
  timeouts: {greeting_s: 1, mail_s: 2, rcpt_s: 3, data_init_s: 4, data_block_s: 5, data_term_s: 6, write_s: 7}
  extensions:
    pipelining: false
    size: false
    eightbitmime: false
    binarymime: false
    chunking: false
    dsn: false
    enhancedstatuscodes: false
    smtputf8: false
queue:
  free_space_floor_mb: 0
  retry_initial_s: 5
  retry_max_s: 60
tracking:
  enabled: false
  max_mb: 1
  keep: 1000
)";
  text.replace(text.find("  data_dir:"), 0, "  hostname: MX.Example.org\n  workers: 3\n  log_level: DEBUG\n");
  auto c = load_config_string(text, "full.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->node().hostname(), "MX.Example.org");
  EXPECT_EQ(c->node().workers(), 3u);
  EXPECT_EQ(c->node().log_level(), proto::LOG_LEVEL_DEBUG);
  EXPECT_EQ(admin_token_path(*c), "/etc/bh/admin.token");
  EXPECT_EQ(c->smtp().max_recipients(), 500u);
  EXPECT_TRUE(c->smtp().vrfy());
  EXPECT_EQ(c->smtp().timeouts().write_s(), 7u);
  EXPECT_FALSE(c->smtp().extensions().pipelining());
  EXPECT_FALSE(c->smtp().extensions().smtputf8());
  EXPECT_EQ(c->queue().free_space_floor_mb(), 0u);
  EXPECT_EQ(c->queue().retry_max_s(), 60u);
  EXPECT_FALSE(c->tracking().enabled());
  EXPECT_EQ(c->tracking().max_mb(), 1u);
  EXPECT_EQ(c->tracking().keep(), 1000u);
}

TEST(Config, ImplicitTlsListenersWithACertificate) {
  std::string text = std::string(kMinimal) +
                     "tls: {cert_file: /etc/bh/cert.pem, key_file: /etc/bh/key.pem}\n"
                     "smtp: {max_connections_per_ip_per_minute: 0, tarpit_after_errors: 3, tarpit_delay_ms: 0}\n";
  text.replace(text.find("  admin:"), 0, "  smtps: [\"127.0.0.1:4650\", \"[::1]:465\"]\n");
  auto c = load_config_string(text, "smtps.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(c->listen().smtps_size(), 2);
  EXPECT_EQ(c->listen().smtps(1), "[::1]:465");
  EXPECT_EQ(c->smtp().max_connections_per_ip_per_minute(), 0u);
  EXPECT_EQ(c->smtp().tarpit_after_errors(), 3u);
  EXPECT_EQ(c->smtp().tarpit_delay_ms(), 0u);
}

TEST(Config, ValuesAreNormalized) {
  std::string text = kMinimal;
  text.replace(text.find("/tmp/bh-node1"), 13, "/tmp/bh-node1//");
  text.replace(text.find("[example.org]"), 13, "[Example.ORG.]");
  text.replace(text.find("alice@example.org"), 17, "Alice@EXAMPLE.org");
  auto c = load_config_string(text, "n.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->node().data_dir(), "/tmp/bh-node1");
  EXPECT_EQ(c->local_domains(0), "example.org");
  EXPECT_EQ(c->directory().file().mailboxes(0), "Alice@example.org");  // local part kept
}

TEST(Config, IPv6ListenAddressesInBrackets) {
  std::string text = kMinimal;
  text.replace(text.find("\"127.0.0.1:2525\""), 16, "\"127.0.0.1:2525\", \"[::1]:2525\"");
  auto c = load_config_string(text, "n.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->listen().smtp(1), "[::1]:2525");
}

TEST(Config, EmptySectionsMeanDefaults) {
  auto c = load_config_string(std::string(kMinimal) + "smtp:\nqueue: {}\n", "n.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->smtp().max_recipients(), 100u);
}

// Each case edits kMinimal and names the exact "file:line: key: " prefix of the error
// and a piece of the message.
struct Bad {
  std::string name, replace, with, where, what;
};

void PrintTo(const Bad& b, std::ostream* os) { *os << b.name; }

class ConfigErrors : public ::testing::TestWithParam<Bad> {};

TEST_P(ConfigErrors, NameFileLineAndKey) {
  const Bad& b = GetParam();
  std::string text = kMinimal;
  if (b.replace.empty()) {
    text += b.with;
  } else {
    auto pos = text.find(b.replace);
    ASSERT_NE(pos, std::string::npos) << b.replace;
    text.replace(pos, b.replace.size(), b.with);
  }
  auto c = load_config_string(text, "/etc/bh/node1.yaml");
  ASSERT_FALSE(c.ok()) << text;
  const std::string& m = c.error().message;
  EXPECT_EQ(m.rfind("/etc/bh/node1.yaml:" + b.where, 0), 0u) << m;
  EXPECT_NE(m.find(b.what), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
}

INSTANTIATE_TEST_SUITE_P(
    All, ConfigErrors,
    ::testing::Values(
        // structure
        Bad{"UnknownTopKey", "local_domains:", "bogus: 1\nlocal_domains:", "7: bogus: ", "unknown key (known: node, listen,"},
        Bad{"UnknownNestedKey", "  name: node1", "  name: node1\n  colour: blue", "3: node.colour: ", "unknown key"},
        Bad{"UnknownDeepKey", "    mailboxes:", "    mbox: []\n    mailboxes:", "10: directory.file.mbox: ", "unknown key (known: mailboxes)"},
        Bad{"UnknownTimeoutKey", "", "smtp:\n  timeouts:\n    greeting_s: 10\n    helo_s: 10\n", "14: smtp.timeouts.helo_s: ", "unknown key"},
        Bad{"DuplicateKey", "  admin:", "  smtp: [\"127.0.0.1:25\"]\n  admin:", "6: listen.smtp: ", "duplicate key"},
        Bad{"ListWhereScalar", "  name: node1", "  name: [node1]", "2: node.name: ", "expected a single value, not a list"},
        Bad{"MapWhereScalar", "  admin: \"127.0.0.1:8691\"", "  admin:\n    port: 8691", "7: listen.admin: ", "expected a single value, not a mapping"},
        Bad{"ScalarWhereList", "local_domains: [example.org]", "local_domains: example.org", "7: local_domains: ", "expected a list"},
        Bad{"ScalarWhereMap", "  file:\n    mailboxes: [alice@example.org, bob@example.org]\n", "  file: yes\n", "9: directory.file: ", "expected a mapping"},
        Bad{"NullScalar", "  name: node1", "  name:", "2: node.name: ", "missing value"},
        Bad{"ControlCharacter", "  name: node1", "  name: \"no\\u0007de\"", "2: node.name: ", "control characters"},
        Bad{"YamlSyntax", "  smtp: [\"127.0.0.1:2525\"]", "  smtp: [", "", "YAML syntax error"},
        // integers, booleans, enums
        Bad{"NotANumber", "", "smtp:\n  max_errors: lots\n", "12: smtp.max_errors: ", "\"lots\" is not a non-negative whole number"},
        Bad{"Negative", "", "smtp:\n  timeouts:\n    greeting_s: -5\n", "13: smtp.timeouts.greeting_s: ", "\"-5\" is not a non-negative whole number"},
        Bad{"Fraction", "", "queue:\n  retry_max_s: 1.5\n", "12: queue.retry_max_s: ", "\"1.5\" is not a non-negative whole number"},
        Bad{"BelowRfcMinimum", "", "smtp:\n  max_recipients: 10\n", "12: smtp.max_recipients: ", "10 is out of range (100-100000)"},
        Bad{"CommandLineBelow512", "", "smtp:\n  max_command_line: 100\n", "12: smtp.max_command_line: ", "out of range (512-16384)"},
        Bad{"AboveMaximum", "", "smtp:\n  timeouts:\n    data_term_s: 3601\n", "13: smtp.timeouts.data_term_s: ", "3601 is out of range (1-3600)"},
        Bad{"Overflow", "", "smtp:\n  max_message_size: 99999999999999999999999\n", "12: smtp.max_message_size: ", "is not a non-negative whole number"},
        Bad{"Uint32Overflow", "", "smtp:\n  max_errors: 4294967296\n", "12: smtp.max_errors: ", "4294967296 is out of range (1-100000)"},
        Bad{"BadBool", "", "smtp:\n  vrfy: maybe\n", "12: smtp.vrfy: ", "\"maybe\" is not true or false"},
        Bad{"TrackingMaxMbZero", "", "tracking:\n  max_mb: 0\n", "12: tracking.max_mb: ", "0 is out of range (1-1048576)"},
        Bad{"TrackingKeepZero", "", "tracking:\n  keep: 0\n", "12: tracking.keep: ", "0 is out of range (1-1000)"},
        Bad{"BadExtensionBool", "", "smtp:\n  extensions:\n    dsn: 1\n", "13: smtp.extensions.dsn: ", "\"1\" is not true or false"},
        Bad{"BadEnum", "  name: node1", "  name: node1\n  log_level: verbose", "3: node.log_level: ", "\"verbose\" is not one of: debug, info, warn, error"},
        Bad{"UnspecifiedEnum", "  name: node1", "  name: node1\n  log_level: unspecified", "3: node.log_level: ", "is not one of"},
        Bad{"WorkersTooMany", "  name: node1", "  name: node1\n  workers: 1000", "3: node.workers: ", "out of range (0-256)"},
        // meaning
        Bad{"PortOutOfRange", "127.0.0.1:2525", "127.0.0.1:99999", "5: listen.smtp[0]: ", "\"127.0.0.1:99999\": port out of range"},
        Bad{"PortZero", "127.0.0.1:2525", "127.0.0.1:0", "5: listen.smtp[0]: ", "port out of range"},
        Bad{"SecondListenAddress", "[\"127.0.0.1:2525\"]", "\n    - 127.0.0.1:2525\n    - 127.0.0.1:x", "7: listen.smtp[1]: ", "port out of range"},
        Bad{"HostnameNotIp", "127.0.0.1:2525", "localhost:2525", "5: listen.smtp[0]: ", "address must be an IP literal"},
        Bad{"HostnameAdmin", "127.0.0.1:8691", "admin.example.org:8691", "6: listen.admin: ", "address must be an IP literal"},
        Bad{"LmtpHostname", "", "delivery:\n  lmtp: localhost:24\n", "12: delivery.lmtp: ", "address must be an IP literal"},
        Bad{"LmtpNoPort", "", "delivery:\n  lmtp: 127.0.0.1\n", "12: delivery.lmtp: ", "expected IP:port"},
        Bad{"LmtpRelativePath", "", "delivery:\n  lmtp: run/lmtp\n", "12: delivery.lmtp: ", "absolute path of a unix socket"},
        Bad{"LmtpLongPath", "", "delivery:\n  lmtp: /" + std::string(120, 'x') + "\n", "12: delivery.lmtp: ", "longer than 107"},
        Bad{"LmtpUnknownKey", "", "delivery:\n  maildir: yes\n", "12: delivery.maildir: ", "unknown key"},
        Bad{"UnbracketedIPv6", "127.0.0.1:2525", "::1:2525", "5: listen.smtp[0]: ", "write IPv6 addresses in brackets"},
        Bad{"NoPort", "127.0.0.1:2525", "127.0.0.1", "5: listen.smtp[0]: ", "expected IP:port"},
        Bad{"SmtpsWithoutTls", "  admin: \"127.0.0.1:8691\"", "  admin: \"127.0.0.1:8691\"\n  smtps: [\"127.0.0.1:4650\"]", "7: listen.smtps: ", "implicit TLS needs tls.cert_file and tls.key_file"},
        Bad{"SmtpsHostname", "  admin: \"127.0.0.1:8691\"", "  admin: \"127.0.0.1:8691\"\n  smtps: [\"mail.example.org:465\"]", "7: listen.smtps[0]: ", "address must be an IP literal"},
        Bad{"ConnectionRateOverMax", "", "smtp:\n  max_connections_per_ip_per_minute: 100001\n", "12: smtp.max_connections_per_ip_per_minute: ", "out of range (0-100000)"},
        Bad{"TarpitAfterZero", "", "smtp:\n  tarpit_after_errors: 0\n", "12: smtp.tarpit_after_errors: ", "out of range (1-100000)"},
        Bad{"TarpitDelayOverCap", "", "smtp:\n  tarpit_delay_ms: 60000\n", "12: smtp.tarpit_delay_ms: ", "out of range (0-30000)"},
        Bad{"NoListen", "  smtp: [\"127.0.0.1:2525\"]\n", "", "4: listen.smtp: ", "at least one SMTP listen address"},
        Bad{"RelativeDataDir", "/tmp/bh-node1", "relative/dir", "3: node.data_dir: ", "must be an absolute path"},
        Bad{"MissingDataDir", "  data_dir: /tmp/bh-node1          # queue, mailboxes, state\n", "", "1: node.data_dir: ", "missing or empty"},
        Bad{"MissingName", "  name: node1\n", "", "1: node.name: ", "missing or empty"},
        Bad{"BadName", "  name: node1", "  name: node 1", "2: node.name: ", "use letters, digits"},
        Bad{"BadHostname", "  name: node1", "  name: node1\n  hostname: mx..example", "3: node.hostname: ", "not a valid host name"},
        Bad{"RelativeTokenFile", "", "admin:\n  token_file: admin.token\n", "12: admin.token_file: ", "must be an absolute path"},
        Bad{"BadDomain", "[example.org]", "[bad..domain]", "7: local_domains[0]: ", "\"bad..domain\" is not a domain name"},
        Bad{"DuplicateDomain", "[example.org]", "[example.org, EXAMPLE.org]", "7: local_domains[1]: ", "listed twice"},
        Bad{"NoDomains", "[example.org]", "[]", "7: local_domains: ", "at least one local domain"},
        Bad{"MailboxOutsideLocalDomains", "bob@example.org", "bob@example.net", "10: directory.file.mailboxes[1]: ", "domain of \"bob@example.net\" is not in local_domains"},
        Bad{"MailboxWithoutDomain", "[alice@example.org,", "[alice,", "10: directory.file.mailboxes[0]: ", "\"alice\" is not a mailbox address"},
        Bad{"MailboxWithSlash", "alice@example.org", "a/b@example.org", "10: directory.file.mailboxes[0]: ", "no '/'"},
        Bad{"MailboxAddressLiteral", "alice@example.org", "\"alice@[127.0.0.1]\"", "10: directory.file.mailboxes[0]: ", "not a mailbox address"},
        Bad{"DuplicateMailbox", "bob@example.org", "ALICE@example.org", "10: directory.file.mailboxes[1]: ", "listed twice"},
        Bad{"RetryOrder", "", "queue:\n  retry_initial_s: 600\n  retry_max_s: 300\n", "12: queue.retry_initial_s: ", "must not exceed queue.retry_max_s"},
        // routing (the appended text starts on line 11)
        Bad{"ConnectorWithoutName", "", R"(routing:
  smtp_connectors:
    - use_dns_mx: true
      address_spaces: [{pattern: "*"}]
)", "13: routing.smtp_connectors[0].name: ", "missing or empty"},
        Bad{"ConnectorBadName", "", R"(routing:
  smtp_connectors:
    - name: "to internet"
      use_dns_mx: true
      address_spaces: [{pattern: "*"}]
)", "13: routing.smtp_connectors[0].name: ", "\"to internet\": use 1-64 letters"},
        Bad{"DuplicateConnectorName", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces: [{pattern: "*"}]
    - name: OUT
      smart_hosts: [192.0.2.2]
      address_spaces: [{pattern: "*.example.com"}]
)", "16: routing.smtp_connectors[1].name: ", "\"OUT\" is already the name of routing.smtp_connectors[0].name"},
        Bad{"BadPattern", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces:
        - pattern: "*"
        - pattern: "a.*.example"
)", "17: routing.smtp_connectors[0].address_spaces[1].pattern: ", "address space \"a.*.example\": '*' is allowed only"},
        Bad{"EmptyPattern", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces: [{pattern: ""}]
)", "15: routing.smtp_connectors[0].address_spaces[0].pattern: ", "empty pattern"},
        Bad{"MissingPattern", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces:
        - cost: 5
)", "16: routing.smtp_connectors[0].address_spaces[0].pattern: ", "missing"},
        Bad{"DuplicatePattern", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces: [{pattern: "*.Example.com"}, {pattern: "*.example.com.", cost: 2}]
)", "15: routing.smtp_connectors[0].address_spaces[1].pattern: ", "\"*.example.com\" is listed twice"},
        Bad{"CostZero", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces:
        - pattern: "*"
          cost: 0
)", "17: routing.smtp_connectors[0].address_spaces[0].cost: ", "0 is out of range (1-100)"},
        Bad{"CostAbove100", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces:
        - pattern: "*"
          cost: 101
)", "17: routing.smtp_connectors[0].address_spaces[0].cost: ", "101 is out of range (1-100)"},
        Bad{"NoAddressSpaces", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
)", "13: routing.smtp_connectors[0].address_spaces: ", "at least one address space"},
        Bad{"SmartHostNotParseable", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts:
        - 192.0.2.1:25
        - "relay..example:25"
      address_spaces: [{pattern: "*"}]
)", "16: routing.smtp_connectors[0].smart_hosts[1]: ", "smart host \"relay..example:25\": not an IP address or host name"},
        Bad{"SmartHostBadPort", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: ["192.0.2.1:70000"]
      address_spaces: [{pattern: "*"}]
)", "14: routing.smtp_connectors[0].smart_hosts[0]: ", "port out of range (1-65535)"},
        Bad{"SmartHostBareIPv6", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: ["2001:db8::1"]
      address_spaces: [{pattern: "*"}]
)", "14: routing.smtp_connectors[0].smart_hosts[0]: ", "write IPv6 addresses in brackets"},
        Bad{"SmartHostsAndMx", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      use_dns_mx: true
      address_spaces: [{pattern: "*"}]
)", "15: routing.smtp_connectors[0].use_dns_mx: ", "not both"},
        Bad{"NeitherSmartHostsNorMx", "", R"(routing:
  smtp_connectors:
    - name: out
      address_spaces: [{pattern: "*"}]
)", "13: routing.smtp_connectors[0]: ", "needs smart_hosts or use_dns_mx: true"},
        Bad{"BadTlsMode", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces: [{pattern: "*"}]
      tls: maybe
)", "16: routing.smtp_connectors[0].tls: ", "\"maybe\" is not one of: opportunistic, required, none"},
        Bad{"VerifyWithoutTls", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces: [{pattern: "*"}]
      tls: none
      tls_verify: true
)", "17: routing.smtp_connectors[0].tls_verify: ", "needs tls: opportunistic or required"},
        Bad{"ConnectorPortZero", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces: [{pattern: "*"}]
      port: 0
)", "16: routing.smtp_connectors[0].port: ", "0 is out of range (1-65535)"},
        Bad{"TooManyConnections", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces: [{pattern: "*"}]
      max_connections: 1001
)", "16: routing.smtp_connectors[0].max_connections: ", "out of range (1-1000)"},
        Bad{"AuthWithoutPasswordFile", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces: [{pattern: "*"}]
      tls: required
      auth:
        username: relayuser
)", "17: routing.smtp_connectors[0].auth.password_file: ", "must be an absolute path"},
        Bad{"AuthRelativePasswordFile", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces: [{pattern: "*"}]
      tls: required
      auth: {username: relayuser, password_file: relay.pw}
)", "17: routing.smtp_connectors[0].auth.password_file: ", "must be an absolute path"},
        Bad{"AuthWithoutUsername", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces: [{pattern: "*"}]
      tls: required
      auth: {password_file: /etc/bh/relay.pw}
)", "17: routing.smtp_connectors[0].auth.username: ", "missing or empty"},
        Bad{"AuthWithoutRequiredTls", "", R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces: [{pattern: "*"}]
      auth: {username: relayuser, password_file: /etc/bh/relay.pw}
)", "16: routing.smtp_connectors[0].auth: ", "needs tls: required"},
        Bad{"UnknownConnectorKey", "", R"(routing:
  smtp_connectors:
    - name: out
      smarthosts: [192.0.2.1]
)", "14: routing.smtp_connectors[0].smarthosts: ", "unknown key"},
        Bad{"MxWithoutDnsServers", "", R"(routing:
  smtp_connectors:
    - name: out
      use_dns_mx: true
      address_spaces: [{pattern: "*"}]
)", "11: routing.dns.servers: ", "required: routing.smtp_connectors[0] uses DNS MX"},
        Bad{"DnsServerNotIp", "", R"(routing:
  dns:
    servers: ["127.0.0.1:5353", "ns.example:53"]
)", "13: routing.dns.servers[1]: ", "address must be an IP literal"},
        Bad{"DnsServerWithoutPort", "", R"(routing:
  dns:
    servers: ["127.0.0.1"]
)", "13: routing.dns.servers[0]: ", "expected IP:port"},
        Bad{"ConnectionIdleTooLong", "", R"(routing:
  connection_idle_s: 301
)", "12: routing.connection_idle_s: ", "301 is out of range (0-300)"},
        Bad{"ConnectionMaxMessagesZero", "", R"(routing:
  connection_max_messages: 0
)", "12: routing.connection_max_messages: ", "0 is out of range (1-100000)"},
        Bad{"DnsTimeoutZero", "", R"(routing:
  dns:
    timeout_s: 0
)", "13: routing.dns.timeout_s: ", "0 is out of range (1-60)"},
        Bad{"DnsTriesTooMany", "", R"(routing:
  dns:
    tries: 6
)", "13: routing.dns.tries: ", "6 is out of range (1-5)"}),
    [](const ::testing::TestParamInfo<Bad>& i) { return i.param.name; });

const char* kRouting = R"(routing:
  smtp_connectors:
    - name: internet
      use_dns_mx: true
      address_spaces:
        - pattern: "*"
          cost: 20
      tls: opportunistic
    - name: Partner-Relay
      smart_hosts: ["Relay.Partner.Example.", "192.0.2.7:2525", "[2001:db8::7]"]
      address_spaces:
        - pattern: "*.Partner.Example."
        - {pattern: partner.example, cost: 5}
      tls: required
      tls_verify: true
      port: 587
      max_connections: 3
      auth:
        username: bridgehead
        password_file: /etc/bh/partner.pw
  dns:
    servers: ["127.0.0.1:5353", "[::1]:53"]
    timeout_s: 3
    tries: 4
)";

TEST(Config, RoutingSectionIsAcceptedAndNormalized) {
  auto c = load_config_string(std::string(kMinimal) + kRouting, "routing.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const auto& r = c->routing();
  ASSERT_EQ(r.smtp_connectors_size(), 2);
  const auto& mx = r.smtp_connectors(0);
  EXPECT_EQ(mx.name(), "internet");
  EXPECT_TRUE(mx.use_dns_mx());
  ASSERT_EQ(mx.address_spaces_size(), 1);
  EXPECT_EQ(mx.address_spaces(0).pattern(), "*");
  EXPECT_EQ(mx.address_spaces(0).cost(), 20u);
  EXPECT_EQ(mx.tls(), proto::TLS_MODE_OPPORTUNISTIC);
  const auto& sh = r.smtp_connectors(1);
  ASSERT_EQ(sh.smart_hosts_size(), 3);
  EXPECT_EQ(sh.smart_hosts(0), "relay.partner.example");
  EXPECT_EQ(sh.smart_hosts(1), "192.0.2.7:2525");
  EXPECT_EQ(sh.smart_hosts(2), "[2001:db8::7]");
  EXPECT_EQ(sh.address_spaces(0).pattern(), "*.partner.example");
  EXPECT_EQ(sh.address_spaces(0).cost(), 1u);  // the default, also inside list items
  EXPECT_EQ(sh.address_spaces(1).cost(), 5u);
  EXPECT_EQ(sh.tls(), proto::TLS_MODE_REQUIRED);
  EXPECT_TRUE(sh.tls_verify());
  EXPECT_EQ(sh.port(), 587u);
  EXPECT_EQ(sh.max_connections(), 3u);
  EXPECT_EQ(sh.auth().username(), "bridgehead");
  EXPECT_EQ(sh.auth().password_file(), "/etc/bh/partner.pw");
  ASSERT_EQ(r.dns().servers_size(), 2);
  EXPECT_EQ(r.dns().timeout_s(), 3u);
  EXPECT_EQ(r.dns().tries(), 4u);
}

TEST(Config, RoutingDefaults) {
  auto c = load_config_string(std::string(kMinimal) + R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces: [{pattern: "*"}]
)", "n.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const auto& sc = c->routing().smtp_connectors(0);
  EXPECT_FALSE(sc.use_dns_mx());
  EXPECT_EQ(sc.address_spaces(0).cost(), 1u);
  EXPECT_EQ(sc.tls(), proto::TLS_MODE_OPPORTUNISTIC);
  EXPECT_FALSE(sc.tls_verify());
  EXPECT_EQ(sc.port(), 25u);
  EXPECT_EQ(sc.max_connections(), 10u);
  EXPECT_TRUE(sc.auth().username().empty());
  EXPECT_EQ(c->routing().dns().servers_size(), 0);  // no DNS MX connector: not needed
  EXPECT_EQ(c->routing().dns().timeout_s(), 5u);
  EXPECT_EQ(c->routing().dns().tries(), 2u);

  auto minimal = load_config_string(kMinimal, "n.yaml");
  ASSERT_TRUE(minimal.ok());
  EXPECT_EQ(minimal->routing().smtp_connectors_size(), 0);
  EXPECT_TRUE(smtp_connectors(*minimal).empty());
}

TEST(Config, ConnectorsConvertToARouteTable) {
  auto c = load_config_string(std::string(kMinimal) + kRouting, "routing.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  auto connectors = smtp_connectors(*c);
  ASSERT_EQ(connectors.size(), 2u);
  EXPECT_EQ(connectors[0].kind, routing::ConnectorKind::kDnsMx);
  EXPECT_EQ(connectors[1].kind, routing::ConnectorKind::kSmartHost);
  ASSERT_EQ(connectors[1].smart_hosts.size(), 3u);
  EXPECT_EQ(connectors[1].smart_hosts[1].port, 2525);
  EXPECT_EQ(connectors[1].settings.tls, routing::TlsMode::kRequired);
  EXPECT_EQ(connectors[1].settings.port, 587);
  EXPECT_EQ(connectors[1].settings.auth_password_file, "/etc/bh/partner.pw");
  auto table = routing::RouteTable::build(connectors);
  ASSERT_TRUE(table.ok()) << table.error().message;
  EXPECT_EQ((*table)->candidates("x.partner.example")[0].connector->name, "Partner-Relay");
  EXPECT_EQ((*table)->candidates("partner.example")[0].cost, 5);
  EXPECT_EQ((*table)->candidates("example.net")[0].next_hop, "mx:internet:example.net");
}

TEST(Config, UnquotedWildcardPatternIsAYamlError) {
  // "*" starts a YAML alias; the error says so instead of loading something else.
  auto c = load_config_string(std::string(kMinimal) + R"(routing:
  smtp_connectors:
    - name: out
      smart_hosts: [192.0.2.1]
      address_spaces: [{pattern: *.example.com}]
)", "n.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message.rfind("n.yaml:", 0), 0u) << c.error().message;
}

TEST(Config, RelayNetworksAndDomainsAreValidatedAndNormalized) {
  auto c = load_config_string(std::string(kMinimal) + R"(smtp:
  relay_networks: ["10.1.2.3/8", "192.0.2.7", "2001:db8::1/32"]
  relay_domains: [Partner.Test.]
queue:
  glitch_retries: 0
  expire_after_s: 3600
)", "n.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(c->smtp().relay_networks_size(), 3);
  EXPECT_EQ(c->smtp().relay_networks(0), "10.0.0.0/8");
  EXPECT_EQ(c->smtp().relay_networks(1), "192.0.2.7/32");
  EXPECT_EQ(c->smtp().relay_networks(2), "2001:db8::/32");
  EXPECT_EQ(c->smtp().relay_domains(0), "partner.test");
  EXPECT_EQ(c->queue().glitch_retries(), 0u);
  EXPECT_EQ(c->queue().glitch_interval_s(), 60u);
  EXPECT_EQ(c->queue().delay_notice_after_s(), 43200u);
  for (auto [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"smtp:\n  relay_networks: [\"10.0.0.0/33\"]\n", "smtp.relay_networks[0]"},
           {"smtp:\n  relay_networks: [\"127.0.0.1\", \"example.org\"]\n", "smtp.relay_networks[1]"},
           {"smtp:\n  relay_networks: [\"10.0.0.0/x\"]\n", "smtp.relay_networks[0]"},
           {"smtp:\n  relay_domains: [example.org]\n", "smtp.relay_domains[0]"},
           {"smtp:\n  relay_domains: [\"bad domain\"]\n", "smtp.relay_domains[0]"}}) {
    auto bad = load_config_string(std::string(kMinimal) + yaml, "n.yaml");
    ASSERT_FALSE(bad.ok()) << yaml;
    EXPECT_NE(bad.error().message.find(key), std::string::npos) << bad.error().message;
  }
}

TEST(Config, NetworksContainTheirAddressesOnly) {
  auto v4 = parse_network("127.0.0.0/8").value();
  EXPECT_TRUE(v4.contains("127.0.0.1"));
  EXPECT_TRUE(v4.contains("127.255.1.2"));
  EXPECT_TRUE(v4.contains("::ffff:127.0.0.9"));
  EXPECT_FALSE(v4.contains("128.0.0.1"));
  EXPECT_FALSE(v4.contains("::1"));
  EXPECT_FALSE(v4.contains("localhost"));
  auto host = parse_network("192.0.2.7").value();
  EXPECT_TRUE(host.contains("192.0.2.7"));
  EXPECT_FALSE(host.contains("192.0.2.6"));
  auto v6 = parse_network("2001:db8::/33").value();
  EXPECT_TRUE(v6.contains("2001:db8:7fff::1"));
  EXPECT_FALSE(v6.contains("2001:db8:8000::1"));
  EXPECT_TRUE(parse_network("0.0.0.0/0").value().contains("203.0.113.1"));
}

TEST(Config, TopLevelMustBeAMapping) {
  auto c = load_config_string("- a\n- b\n", "list.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message, "list.yaml:1: the top level must be a mapping of keys");
}

TEST(Config, EmptyFileIsAnError) {
  auto c = load_config_string("", "empty.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message.rfind("empty.yaml:1: ", 0), 0u) << c.error().message;
}

TEST(Config, DeliveryIsMaildirUnlessAnLmtpServerIsNamed) {
  auto c = load_config_string(kMinimal, "node1.yaml");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->delivery().lmtp(), "");
  c = load_config_string(std::string(kMinimal) + "delivery:\n  lmtp: \"[::1]:24\"\n", "node1.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->delivery().lmtp(), "[::1]:24");
  c = load_config_string(std::string(kMinimal) + "delivery: {lmtp: \"127.0.0.1:24\"}\n", "node1.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(parse_endpoint(c->delivery().lmtp())->port, 24);
  c = load_config_string(std::string(kMinimal) + "delivery: {lmtp: /run/dovecot/lmtp}\n", "node1.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->delivery().lmtp(), "/run/dovecot/lmtp");
  c = load_config_string(std::string(kMinimal) + "delivery: {lmtp: \"\"}\n", "node1.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->delivery().lmtp(), "");
}

TEST(Config, EndpointParsing) {
  auto v6 = parse_endpoint("[::1]:25");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->address, "::1");
  EXPECT_EQ(v6->port, 25);
  EXPECT_EQ(v6->str(), "[::1]:25");
  auto v4 = parse_endpoint("127.0.0.2:65535");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->address, "127.0.0.2");
  EXPECT_EQ(v4->port, 65535);
  EXPECT_EQ(v4->str(), "127.0.0.2:65535");
  for (const char* bad : {"::1:25", "127.0.0.1:0", "127.0.0.1", "127.0.0.1:65536", "127.0.0.1:+25",
                          "127.0.0.1: 25", "[127.0.0.1]:25", "[::1]25", "host:25", "1.2.3:25", ":25", ""}) {
    EXPECT_FALSE(parse_endpoint(bad).ok()) << bad;
  }
}

TEST(Config, MissingFileNamesThePath) {
  auto c = load_config_file("/nonexistent/bh.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("/nonexistent/bh.yaml"), std::string::npos);
}

TEST(Config, FileErrorsNameThePath) {
  char tmpl[] = "/tmp/bh-config-test-XXXXXX";
  int fd = ::mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ::close(fd);
  std::string text = kMinimal;
  text.replace(text.find("2525"), 4, "70000");
  std::ofstream(tmpl) << text;
  auto c = load_config_file(tmpl);
  ::unlink(tmpl);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message.rfind(std::string(tmpl) + ":5: listen.smtp[0]: ", 0), 0u) << c.error().message;
}

// What node/main.cc and bhctl read: every effective value is in the loaded proto.
TEST(Config, LoadedProtoHoldsEveryEffectiveValue) {
  auto c = load_config_string(kMinimal, "node1.yaml");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->node().name(), "node1");
  EXPECT_EQ(c->node().hostname(), "node1");
  ASSERT_EQ(c->listen().smtp_size(), 1);
  EXPECT_EQ(parse_endpoint(c->listen().smtp(0))->port, 2525);
  EXPECT_EQ(parse_endpoint(c->listen().admin())->port, 8691);
  EXPECT_EQ(admin_token_path(*c), "/tmp/bh-node1/admin.token");
  ASSERT_EQ(c->directory().file().mailboxes_size(), 2);
  EXPECT_EQ(c->directory().file().mailboxes(1), "bob@example.org");
  EXPECT_EQ(c->smtp().max_recipients(), 100u);
  EXPECT_EQ(c->smtp().max_sessions_per_ip(), 50u);
  EXPECT_EQ(c->smtp().timeouts().data_term_s(), 600u);
  EXPECT_TRUE(c->smtp().extensions().chunking());
  EXPECT_EQ(c->queue().retry_max_s(), 300u);
}


TEST(Config, AuthSectionIsValidatedAndNormalized) {
  // kMinimal with a submission listener added to its listen section.
  auto with_submission = [](const std::string& endpoint) {
    std::string base = kMinimal;
    std::string admin = "  admin: \"127.0.0.1:8691\"\n";
    base.replace(base.find(admin), admin.size(), admin + "  submission: [\"" + endpoint + "\"]\n");
    return base;
  };
  auto c = load_config_string(with_submission("127.0.0.1:2587") + R"(auth:
  mechanisms: [gssapi, Plain]
  sasldb: /etc/bridgehead/sasldb2
  keytab: /etc/bridgehead/smtp.keytab
  peer_servers: ["smtp/node2.example.test@EXAMPLE.TEST"]
)", "n.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(c->auth().mechanisms_size(), 2);
  EXPECT_EQ(c->auth().mechanisms(0), "GSSAPI");
  EXPECT_EQ(c->auth().mechanisms(1), "PLAIN");
  EXPECT_EQ(c->auth().service(), "smtp");
  EXPECT_EQ(c->auth().max_failures_per_session(), 3u);
  EXPECT_EQ(c->auth().failure_delay_ms(), 1000u);
  EXPECT_FALSE(c->auth().plaintext_without_tls());
  EXPECT_EQ(c->listen().submission(0), "127.0.0.1:2587");

  for (auto [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"auth:\n  mechanisms: [CRAM-MD5]\n", "auth.mechanisms[0]"},
           {"auth:\n  mechanisms: [PLAIN, plain]\n  sasldb: /x\n", "auth.mechanisms[1]"},
           {"auth:\n  mechanisms: [PLAIN]\n", "auth.mechanisms"},
           {"auth:\n  mechanisms: []\n", "auth.mechanisms"},
           {"auth:\n  mechanisms: [PLAIN]\n  sasldb: relative/db\n", "auth.sasldb"},
           {"auth:\n  mechanisms: [PLAIN]\n  sasldb: /x\n  ldap:\n    uri: ldap://127.0.0.1/\n"
            "    user_dn: uid={user}\n", "auth.ldap"},
           {"auth:\n  mechanisms: [LOGIN]\n  ldap:\n    uri: http://x/\n    user_dn: uid={user}\n",
            "auth.ldap.uri"},
           {"auth:\n  mechanisms: [LOGIN]\n  ldap:\n    uri: ldap://127.0.0.1/\n    user_dn: uid=x\n",
            "auth.ldap.user_dn"},
           {"auth:\n  mechanisms: [GSSAPI]\n  keytab: k.tab\n", "auth.keytab"},
           {"auth:\n  mechanisms: [GSSAPI]\n  service: a.b\n", "auth.service"},
           {"auth:\n  mechanisms: [GSSAPI]\n  max_failures_per_session: 0\n",
            "auth.max_failures_per_session"},
           {"#submission\n", "listen.submission"},
           {"#nowhere\n", "listen.submission[0]"}}) {
    std::string base = yaml == "#submission\n" ? with_submission("127.0.0.1:587")
                       : yaml == "#nowhere\n"  ? with_submission("nowhere")
                                                : std::string(kMinimal);
    auto bad = load_config_string(base + yaml, "n.yaml");
    ASSERT_FALSE(bad.ok()) << yaml;
    EXPECT_NE(bad.error().message.find(key), std::string::npos) << bad.error().message;
  }
}

TEST(Config, OdmrCustomersAreValidated) {
  const std::string auth = "auth:\n  mechanisms: [PLAIN]\n  sasldb: /x\n";
  auto c = load_config_string(std::string(kMinimal) + auth +
                                  "odmr:\n  customers:\n    - user: carol\n      domains: [Client.Example.]\n",
                              "n.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->odmr().customers(0).domains(0), "client.example");
  EXPECT_FALSE(c->odmr().turn());
  EXPECT_EQ(c->odmr().idle_ms(), 5000u);
  for (auto [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"odmr:\n  customers:\n    - user: carol\n      domains: [a.example]\n", "odmr.customers"},
           {auth + "odmr:\n  customers:\n    - user: carol\n      domains: [example.org]\n",
            "odmr.customers[0].domains[0]"},
           {auth + "odmr:\n  customers:\n    - user: carol\n      domains: []\n",
            "odmr.customers[0].domains"},
           {auth + "odmr:\n  customers:\n    - domains: [a.example]\n", "odmr.customers[0].user"},
           {auth + "odmr:\n  customers:\n    - user: a\n      domains: [a.example]\n"
                   "    - user: b\n      domains: [A.example]\n",
            "odmr.customers[1].domains[0]"}}) {
    auto bad = load_config_string(std::string(kMinimal) + yaml, "n.yaml");
    ASSERT_FALSE(bad.ok()) << yaml;
    EXPECT_NE(bad.error().message.find(key), std::string::npos) << bad.error().message;
  }
}

TEST(Config, GssapiConnectorsAreValidated) {
  auto conn = [](const std::string& auth, const std::string& tls = "required") {
    return std::string(kMinimal) +
           "routing:\n  smtp_connectors:\n    - name: to-b\n      smart_hosts: [192.0.2.1]\n"
           "      address_spaces: [{pattern: b.example, cost: 1}]\n      tls: " + tls + "\n"
           "      auth: " + auth + "\n";
  };
  auto c = load_config_string(conn("{mechanism: gssapi, verb: x-exps, service_host: mx.b.example}") +
                                  "auth:\n  client_keytab: /etc/bridgehead/node.keytab\n",
                              "n.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const auto& a = c->routing().smtp_connectors(0).auth();
  EXPECT_EQ(a.mechanism(), "GSSAPI");
  EXPECT_EQ(a.verb(), "X-EXPS");
  EXPECT_EQ(c->auth().mechanisms_size(), 0);  // logs in elsewhere, offers no AUTH itself
  for (auto [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {conn("{mechanism: CRAM-MD5}"), "routing.smtp_connectors[0].auth.mechanism"},
           {conn("{mechanism: GSSAPI, verb: HELO}"), "routing.smtp_connectors[0].auth.verb"},
           {conn("{mechanism: GSSAPI, verb: X-EXPS}", "opportunistic"),
            "routing.smtp_connectors[0].auth.verb"},
           {conn("{verb: X-EXPS}"), "routing.smtp_connectors[0].auth.verb"},
           {conn("{mechanism: GSSAPI, service_host: \"bad host\"}"),
            "routing.smtp_connectors[0].auth.service_host"},
           {std::string(kMinimal) + "auth:\n  client_keytab: node.keytab\n", "auth.client_keytab"}}) {
    auto bad = load_config_string(yaml, "n.yaml");
    ASSERT_FALSE(bad.ok()) << yaml;
    EXPECT_NE(bad.error().message.find(key), std::string::npos) << bad.error().message;
  }
}

}  // namespace
}  // namespace bh::node

namespace bh::node {
namespace {

// kMinimal with directory.file replaced by `ldap` (the lines under directory.ldap).
std::string with_ldap(const std::string& ldap) {
  std::string base = kMinimal;
  std::string file = "  file:\n    mailboxes: [alice@example.org, bob@example.org]\n";
  base.replace(base.find(file), file.size(), "  ldap:\n" + ldap);
  return base;
}

TEST(Config, LdapDirectoryIsAcceptedWithDefaults) {
  auto c = load_config_string(with_ldap("    global_catalog: [\"ldap://127.0.0.1:3268/\", \"ldaps://gc2.example.test:3269/\"]\n"
                                        "    base_dn: \"dc=example,dc=test\"\n"),
                              "n.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const auto& l = c->directory().ldap();
  ASSERT_EQ(l.global_catalog_size(), 2);
  EXPECT_EQ(l.global_catalog(1), "ldaps://gc2.example.test:3269/");
  EXPECT_EQ(l.base_dn(), "dc=example,dc=test");
  EXPECT_EQ(l.bind_dn(), "");
  EXPECT_EQ(l.timeout_ms(), 5000u);
  EXPECT_EQ(l.positive_ttl_s(), 300u);
  EXPECT_EQ(l.negative_ttl_s(), 60u);
  EXPECT_EQ(l.cache_size(), 10000u);
  EXPECT_EQ(l.max_in_flight(), 1000u);
  EXPECT_EQ(l.attributes().proxy_addresses(), "proxyAddresses");
  EXPECT_EQ(l.attributes().mail(), "mail");
  EXPECT_EQ(l.attributes().home_server(), "msExchHomeServerName");
  EXPECT_EQ(c->directory().file().mailboxes_size(), 0);
}

TEST(Config, LdapDirectoryEveryKey) {
  auto c = load_config_string(with_ldap("    global_catalog: [\"ldap://127.0.0.1:3268/\"]\n"
                                        "    bind_dn: \"cn=bh,dc=example,dc=test\"\n"
                                        "    password_file: /etc/bridgehead/ldap.pw\n"
                                        "    base_dn: \"ou=people,dc=example,dc=test\"\n"
                                        "    timeout_ms: 1500\n"
                                        "    positive_ttl_s: 0\n"
                                        "    negative_ttl_s: 5\n"
                                        "    cache_size: 50\n"
                                        "    max_in_flight: 300\n"
                                        "    attributes:\n"
                                        "      home_server: bhHomeServer\n"
                                        "      mail: 0.9.2342.19200300.100.1.3\n"),
                              "n.yaml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const auto& l = c->directory().ldap();
  EXPECT_EQ(l.password_file(), "/etc/bridgehead/ldap.pw");
  EXPECT_EQ(l.timeout_ms(), 1500u);
  EXPECT_EQ(l.positive_ttl_s(), 0u);
  EXPECT_EQ(l.attributes().home_server(), "bhHomeServer");
  EXPECT_EQ(l.attributes().mail(), "0.9.2342.19200300.100.1.3");
  EXPECT_EQ(l.attributes().proxy_addresses(), "proxyAddresses");
}

struct BadLdap {
  std::string name, ldap, where, what;
};
void PrintTo(const BadLdap& b, std::ostream* os) { *os << b.name; }
class LdapConfigErrors : public ::testing::TestWithParam<BadLdap> {};

TEST_P(LdapConfigErrors, NameFileLineAndKey) {
  const BadLdap& b = GetParam();
  auto c = load_config_string(with_ldap(b.ldap), "/etc/bh/node1.yaml");
  ASSERT_FALSE(c.ok()) << b.ldap;
  const std::string& m = c.error().message;
  EXPECT_EQ(m.rfind("/etc/bh/node1.yaml:" + b.where, 0), 0u) << m;
  EXPECT_NE(m.find(b.what), std::string::npos) << m;
}

const char* kGc = "    global_catalog: [\"ldap://127.0.0.1:3268/\"]\n";
const char* kBase = "    base_dn: \"dc=example,dc=test\"\n";

INSTANTIATE_TEST_SUITE_P(
    All, LdapConfigErrors,
    ::testing::Values(
        BadLdap{"NoUri", kBase, "9: directory.ldap.global_catalog: ", "at least one"},
        BadLdap{"HttpUri", std::string("    global_catalog: [\"http://127.0.0.1/\"]\n") + kBase,
                "10: directory.ldap.global_catalog[0]: ", "is not an ldap://"},
        BadLdap{"UriWithSpace", std::string("    global_catalog: [\"ldap://a b/\"]\n") + kBase,
                "10: directory.ldap.global_catalog[0]: ", "is not an ldap://"},
        BadLdap{"NoBase", kGc, "9: directory.ldap.base_dn: ", "missing or empty"},
        BadLdap{"DnWithoutFile", std::string(kGc) + kBase + "    bind_dn: \"cn=x\"\n",
                "9: directory.ldap.password_file: ", "go together"},
        BadLdap{"FileWithoutDn", std::string(kGc) + kBase + "    password_file: /x\n",
                "9: directory.ldap.bind_dn: ", "go together"},
        BadLdap{"RelativePasswordFile",
                std::string(kGc) + kBase + "    bind_dn: \"cn=x\"\n    password_file: ldap.pw\n",
                "13: directory.ldap.password_file: ", "absolute"},
        BadLdap{"TimeoutTooSmall", std::string(kGc) + kBase + "    timeout_ms: 5\n",
                "12: directory.ldap.timeout_ms: ", ""},
        BadLdap{"UnknownKey", std::string(kGc) + kBase + "    uri: x\n", "12: directory.ldap.uri: ",
                "unknown key"},
        BadLdap{"WrongType", std::string(kGc) + kBase + "    cache_size: many\n",
                "12: directory.ldap.cache_size: ", ""},
        BadLdap{"InjectedAttributeName",
                std::string(kGc) + kBase + "    attributes:\n      mail: \"mail)(uid=*\"\n",
                "13: directory.ldap.attributes.mail: ", "not an LDAP attribute name"}));

TEST(Config, FileAndLdapDirectoryTogetherIsAnError) {
  std::string text = std::string(kMinimal) + "";
  text.replace(text.find("directory:\n"), 11,
               std::string("directory:\n  ldap:\n") + kGc + "    base_dn: \"dc=x\"\n");
  auto c = load_config_string(text, "/etc/bh/node1.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("directory.ldap: give one recipient directory"), std::string::npos)
      << c.error().message;
}

}  // namespace
}  // namespace bh::node
