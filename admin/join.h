#pragma once
// bhctl join: attach a node to a directory (issue 5; docs/operations.md).
//
//   bhctl --config FILE join --ldap URI --bind-dn DN --password-file F --base-dn DN
//         --config-dn DN --routing-group NAME [--gc URI] [--smtp-address HOST:PORT]
//         [--link-state-address HOST:PORT] [--home-server-attribute NAME]
//         [--ca-file PEM] [--start-tls]
//
// Steps, each printed as it passes or fails (nothing is changed until every check passed):
//  1. both roles answer and accept the bind: the domain controller (--ldap, 389/636) and
//     the global catalog (--gc, 3268/3269; default: --ldap);
//  2. the global catalog's schema has the attributes the categorizer reads (proxyAddresses,
//     mail, member, targetAddress, altRecipient, deliverAndRedirect and the home-server
//     attribute), and a search under --base-dn works;
//  3. the domain controller's schema has bhRoutingGroup, bhServer and bhConnector, and the
//     routing group --routing-group exists under --config-dn;
//  4. the node (node.name of FILE) is registered as a bhServer under its routing group
//     (added, or updated when it is there already: joining twice is harmless);
//  5. FILE's top-level `directory:` section is replaced by one for this directory, the
//     result is validated by the config loader, and written by rename (a backup of the
//     old file is kept as FILE.before-join).
// Exit status: 0 joined, 1 a check or step failed (the message names it), 2 usage.

#include <string>
#include <vector>

namespace bh::admin {

int run_join(const std::string& config_path, const std::vector<std::string>& args);

// The config text with its top-level `directory:` block (the line and every following
// line that is indented, blank or a comment) replaced by `block`, or `block` appended
// when there is none. Pure; exposed for tests.
std::string replace_directory_section(const std::string& config_text, const std::string& block);

}  // namespace bh::admin
