#include "node/config.h"

#include <gtest/gtest.h>

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
  EXPECT_EQ(c->name, "node1");
  EXPECT_EQ(c->hostname, "node1");
  EXPECT_EQ(c->data_dir, "/tmp/bh-node1");
  ASSERT_EQ(c->smtp_listen.size(), 1u);
  EXPECT_EQ(c->smtp_listen[0].address, "127.0.0.1");
  EXPECT_EQ(c->smtp_listen[0].port, 2525);
  EXPECT_EQ(c->admin_listen.port, 8691);
  EXPECT_EQ(c->mailboxes, (std::vector<std::string>{"alice@example.org", "bob@example.org"}));
  EXPECT_EQ(c->smtp.max_recipients, 100u);
  EXPECT_FALSE(c->smtp.vrfy);
}

struct Bad {
  std::string replace, with, expect;
};

class ConfigErrors : public ::testing::TestWithParam<Bad> {};

TEST_P(ConfigErrors, NameFileLineAndKey) {
  std::string text = kMinimal;
  auto pos = text.find(GetParam().replace);
  ASSERT_NE(pos, std::string::npos);
  text.replace(pos, GetParam().replace.size(), GetParam().with);
  auto c = load_config_string(text, "/etc/bh/node1.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find(GetParam().expect), std::string::npos) << c.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    All, ConfigErrors,
    ::testing::Values(
        Bad{"local_domains:", "bogus: 1\nlocal_domains:", "/etc/bh/node1.yaml:7: bogus: unknown key"},
        Bad{"  name: node1", "  name: node1\n  colour: blue", "/etc/bh/node1.yaml:3: node.colour: unknown key"},
        Bad{"127.0.0.1:2525", "127.0.0.1:99999", "/etc/bh/node1.yaml:5: listen.smtp[0]: \"127.0.0.1:99999\": port out of range"},
        Bad{"127.0.0.1:2525", "localhost:2525", ":5: listen.smtp[0]: \"localhost:2525\": address must be an IP literal"},
        Bad{"/tmp/bh-node1", "relative/dir", ":3: node.data_dir: must be an absolute path"},
        Bad{"bob@example.org", "bob@example.net", ":10: directory.file.mailboxes[1]: domain of \"bob@example.net\" is not in local_domains"},
        Bad{"[alice@example.org,", "[alice,", ":10: directory.file.mailboxes[0]: \"alice\" is not a mailbox address"},
        Bad{"local_domains: [example.org]", "local_domains: example.org", ":7: local_domains: expected a list"},
        Bad{"local_domains: [example.org]", "local_domains: [example.org]\nsmtp:\n  max_recipients: 10", ":9: smtp.max_recipients: 10 is out of range"},
        Bad{"local_domains: [example.org]", "local_domains: [example.org]\nsmtp:\n  vrfy: maybe", ":9: smtp.vrfy: \"maybe\" is not true or false"},
        Bad{"local_domains: [example.org]", "local_domains: [example.org]\nsmtp:\n  timeouts:\n    greeting_s: -5", ":10: smtp.timeouts.greeting_s: \"-5\" is not a non-negative whole number"},
        Bad{"local_domains: [example.org]", "local_domains: [bad..domain]", ":7: local_domains[0]: \"bad..domain\" is not a domain name"},
        Bad{"  smtp: [\"127.0.0.1:2525\"]", "  smtp: [", "/etc/bh/node1.yaml:"},
        Bad{"  name: node1\n", "", "node.name: missing"}));

TEST(Config, EndpointParsing) {
  EXPECT_EQ(parse_endpoint("[::1]:25")->address, "::1");
  EXPECT_FALSE(parse_endpoint("::1:25").ok());
  EXPECT_FALSE(parse_endpoint("127.0.0.1:0").ok());
  EXPECT_FALSE(parse_endpoint("127.0.0.1").ok());
}

TEST(Config, MissingFileNamesThePath) {
  auto c = load_config_file("/nonexistent/bh.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("/nonexistent/bh.yaml"), std::string::npos);
}

}  // namespace
}  // namespace bh::node
