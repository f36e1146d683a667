// The link_state section of the node config (node/linkstate_config.h).
#include <gtest/gtest.h>

#include <string>

#include "node/config.h"

namespace bh::node {
namespace {

const std::string kBase = R"(node:
  name: a1
  data_dir: /tmp/bh-a1
listen:
  smtp: ["127.0.0.1:2525"]
local_domains: [example.org]
directory:
  file:
    mailboxes: [alice@example.org]
)";

const std::string kLinkState = R"(link_state:
  organization: org
  routing_group: RG-A
  listen: "127.0.0.2:6910"
  nodes:
    - {id: a1, routing_group: RG-A, address: "127.0.0.2:6910", master: true}
    - {id: a2, routing_group: RG-A, address: "127.0.0.3:6910"}
    - {id: b1, routing_group: RG-B, address: "127.0.0.4:6910"}
  connectors:
    - id: A-B
      source_group: RG-A
      target_group: RG-B
      cost: 10
      target_bridgeheads: [b1]
    - id: A-out
      source_group: RG-A
      source_bridgeheads: [a2]
      address_spaces: [{pattern: "*.Example.NET", cost: 5}]
  tls:
    ca_file: /etc/bh/ca.pem
    cert_file: /etc/bh/a1.pem
    key_file: /etc/bh/a1.key
)";

Result<proto::Config> load(const std::string& ls) {
  return load_config_string(kBase + ls, "bh.yaml");
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return pos == std::string::npos ? s : s.replace(pos, from.size(), to);
}

TEST(LinkStateConfig, AbsentMeansOff) {
  auto c = load("");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(c->link_state().listen().empty());
}

TEST(LinkStateConfig, AcceptedWithDefaultsAndNormalized) {
  auto c = load(kLinkState);
  ASSERT_TRUE(c.ok()) << c.error().message;
  const auto& ls = c->link_state();
  EXPECT_EQ(ls.routing_group(), "RG-A");
  EXPECT_EQ(ls.nodes_size(), 3);
  EXPECT_TRUE(ls.nodes(0).master());
  EXPECT_EQ(ls.keepalive_ms(), 10000u);
  EXPECT_EQ(ls.dead_after_ms(), 35000u);
  EXPECT_EQ(ls.hold_down_ms(), 600000u);
  EXPECT_EQ(ls.probe_ms(), 60000u);
  EXPECT_EQ(ls.connectors(0).cost(), 10u);
  // Source bridgeheads default to every node of the source group.
  ASSERT_EQ(ls.connectors(0).source_bridgeheads_size(), 2);
  EXPECT_EQ(ls.connectors(0).source_bridgeheads(0), "a1");
  EXPECT_EQ(ls.connectors(1).address_spaces(0).pattern(), "*.example.net");
  EXPECT_EQ(ls.connectors(1).cost(), 1u);
}

struct Bad {
  std::string from, to, expect;
};

TEST(LinkStateConfig, ErrorsNameFileLineAndKey) {
  const Bad cases[] = {
      {"  routing_group: RG-A\n  listen", "  routing_group: RG-B\n  listen",
       "link_state.routing_group: \"RG-B\" but link_state.nodes lists \"a1\" in \"RG-A\""},
      {"listen: \"127.0.0.2:6910\"", "listen: \"localhost:691\"", "link_state.listen:"},
      {"{id: a2, routing_group: RG-A, address: \"127.0.0.3:6910\"}",
       "{id: a1, routing_group: RG-A, address: \"127.0.0.3:6910\"}",
       "link_state.nodes[1].id: \"a1\" is listed twice"},
      {"address: \"127.0.0.3:6910\"", "address: \"127.0.0.2:6910\"",
       "link_state.nodes[1].address: \"127.0.0.2:6910\" is already the address of "
       "link_state.nodes[0].address"},
      {"{id: a2, routing_group: RG-A, address: \"127.0.0.3:6910\"}",
       "{id: a2, routing_group: RG-A, address: \"127.0.0.3:6910\", master: true}",
       "link_state.nodes[1].master: routing group \"RG-A\" has a configured master already"},
      {"id: b1, routing_group: RG-B", "id: \"b/1\", routing_group: RG-B",
       "link_state.nodes[2].id: \"b/1\": use 1-128 letters"},
      {"target_group: RG-B", "target_group: RG-C",
       "link_state.connectors[0].target_group: \"RG-C\" has no nodes"},
      {"target_group: RG-B", "target_group: RG-A",
       "link_state.connectors[0].target_group: must differ"},
      {"cost: 10", "cost: 101", "link_state.connectors[0].cost:"},
      {"target_bridgeheads: [b1]", "target_bridgeheads: [a2]",
       "link_state.connectors[0].target_bridgeheads[0]: \"a2\" is not a node of target_group "
       "\"RG-B\""},
      {"source_bridgeheads: [a2]", "source_bridgeheads: [b1]",
       "link_state.connectors[1].source_bridgeheads[0]: \"b1\" is not a node of routing group "
       "\"RG-A\""},
      {"pattern: \"*.Example.NET\"", "pattern: \"ex ample\"",
       "link_state.connectors[1].address_spaces[0].pattern:"},
      {"    ca_file: /etc/bh/ca.pem\n", "", "link_state.tls.ca_file: required"},
      {"key_file: /etc/bh/a1.key", "key_file: a1.key",
       "link_state.tls.key_file: must be an absolute path"},
      {"  tls:", "  keepalive_ms: 40000\n  tls:", "link_state.dead_after_ms: must exceed"},
      {"  tls:", "  colour: blue\n  tls:", "colour"},
  };
  for (const auto& b : cases) {
    auto c = load(replaced(kLinkState, b.from, b.to));
    ASSERT_FALSE(c.ok()) << b.to;
    EXPECT_NE(c.error().message.find("bh.yaml:"), std::string::npos) << c.error().message;
    EXPECT_NE(c.error().message.find(b.expect), std::string::npos) << c.error().message;
  }
  auto c = load(replaced(
      kLinkState,
      "    - {id: a1, routing_group: RG-A, address: \"127.0.0.2:6910\", master: true}\n", ""));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("link_state.nodes: node.name \"a1\" is not one of the nodes"),
            std::string::npos)
      << c.error().message;
}

// Node-to-node relay (issue 7): each node's SMTP address and how this node logs in.
const std::string kRelay = R"(  relay:
    auth_username: cluster
    auth_password_file: /etc/bh/cluster.pw
    tls: required
)";

TEST(LinkStateConfig, NodeSmtpAddressesAndTheRelayLoginBecomeInternalConnectors) {
  std::string ls = replaced(kLinkState, "address: \"127.0.0.3:6910\"}",
                            "address: \"127.0.0.3:6910\", smtp: \"127.0.0.3:2525\"}");
  ls = replaced(ls, "address: \"127.0.0.2:6910\", master: true}",
                "address: \"127.0.0.2:6910\", master: true, smtp: \"127.0.0.2:2525\"}");
  auto c = load(ls + kRelay);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->link_state().relay().auth_mechanism(), "LOGIN");  // the default
  auto conns = node_connectors(*c);
  ASSERT_EQ(conns.size(), 1u) << "not this node (a1), not b1 (no smtp address)";
  EXPECT_EQ(conns[0].name, "node.a2");
  EXPECT_TRUE(conns[0].internal);
  ASSERT_EQ(conns[0].smart_hosts.size(), 1u);
  EXPECT_EQ(conns[0].smart_hosts[0].str(), "127.0.0.3:2525");
  EXPECT_EQ(conns[0].settings.auth_verb, "X-EXPS");
  EXPECT_EQ(conns[0].settings.auth_username, "cluster");
  EXPECT_EQ(conns[0].settings.auth_password_file, "/etc/bh/cluster.pw");
  EXPECT_EQ(conns[0].settings.tls, routing::TlsMode::kRequired);
}

TEST(LinkStateConfig, BadRelaySettingsNameTheKey) {
  struct BadRelay {
    std::string extra, expect;
  };
  const std::vector<BadRelay> cases = {
      {"  relay:\n    auth_password_file: /etc/bh/pw\n", "link_state.relay.auth_username: required"},
      {"  relay:\n    auth_username: c\n    auth_password_file: pw\n",
       "link_state.relay.auth_password_file: must be an absolute path"},
      {"  relay:\n    auth_username: c\n    auth_password_file: /pw\n    tls: none\n",
       "link_state.relay.tls: none: credentials never travel in clear text"},
      {"  relay:\n    auth_username: c\n", "link_state.relay.auth_password_file: must be an absolute path"},
      {"  relay:\n    auth_mechanism: CRAM-MD5\n", "link_state.relay.auth_mechanism: \"CRAM-MD5\" is not LOGIN or GSSAPI"},
      {"  relay:\n    auth_mechanism: gssapi\n    auth_username: c\n",
       "link_state.relay.auth_mechanism: GSSAPI uses auth.client_keytab"},
  };
  for (const auto& b : cases) {
    auto c = load(kLinkState + b.extra);
    ASSERT_FALSE(c.ok()) << b.extra;
    EXPECT_NE(c.error().message.find(b.expect), std::string::npos) << c.error().message;
  }
  auto bad_smtp = load(replaced(kLinkState, "address: \"127.0.0.3:6910\"}",
                                "address: \"127.0.0.3:6910\", smtp: \"mail.example:25\"}"));
  ASSERT_FALSE(bad_smtp.ok());
  EXPECT_NE(bad_smtp.error().message.find("link_state.nodes[1].smtp:"), std::string::npos)
      << bad_smtp.error().message;
  auto gss = load(kLinkState + "  relay:\n    auth_mechanism: gssapi\n");
  ASSERT_TRUE(gss.ok()) << gss.error().message;
  EXPECT_EQ(gss->link_state().relay().auth_mechanism(), "GSSAPI");
}

}  // namespace
}  // namespace bh::node
