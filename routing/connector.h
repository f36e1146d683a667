#pragma once
// SMTP connectors: how mail for external address spaces leaves the organization
// (DESIGN.md §4.3). A connector either relays everything to fixed smart hosts or delivers
// by DNS MX (routing/mx_resolver.h), and is chosen for a recipient domain through its
// address spaces (routing/address_space.h) and their costs (routing/route_table.h).
//
// Plain values: built by node/ from the validated config (or later from the directory),
// then frozen inside a RouteTable. Nothing here does I/O or resolves names.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "routing/address_space.h"

namespace bh::routing {

enum class ConnectorKind {
  kSmartHost,  // relay to `smart_hosts`, in the order given (the next one when one fails)
  kDnsMx,      // RFC 5321 §5.1: MX of the recipient domain, else its A/AAAA (implicit MX)
};

enum class TlsMode {
  kOpportunistic,  // STARTTLS when the peer offers it, plain text otherwise
  kRequired,       // no STARTTLS or a failed handshake is a transient failure (4.7.x)
  kNone,           // never STARTTLS
};

// One smart host: "192.0.2.1", "192.0.2.1:2525", "[192.0.2.1]", "[2001:db8::1]:25",
// "relay.example.net", "relay.example.net:587". Names are looked up by A/AAAA only
// (never MX): the operator named the host.
struct SmartHost {
  std::string host;        // IP literal without brackets, or a lower-case domain name
  bool is_ip = false;
  std::uint16_t port = 0;  // 0: the connector's port
  std::string str() const;  // back to the written form, IPv6 in brackets
};

// Permanent error naming the text and what is wrong; port 1-65535 when present.
// IPv6 literals must be bracketed ("[::1]:25"): a bare "::1:25" is ambiguous.
Result<SmartHost> parse_smart_host(std::string_view text);

constexpr int kMinCost = 1;
constexpr int kMaxCost = 100;

struct CostedAddressSpace {
  AddressSpace space;
  int cost = 1;  // kMinCost..kMaxCost
};

struct ConnectorSettings {
  TlsMode tls = TlsMode::kOpportunistic;
  bool tls_verify = false;            // check the peer certificate against the host name
  std::string auth_username;          // empty: no AUTH
  std::string auth_password_file;     // a reference to the secret, never the secret itself
  std::string auth_mechanism;         // "GSSAPI": Kerberos instead of a password
  std::string auth_verb = "AUTH";     // or "X-EXPS" (to the organization's nodes)
  std::string auth_service_host;      // the peer's principal host; empty: the target host
  std::uint16_t port = 25;            // for MX hosts and smart hosts without their own port
  std::uint32_t max_connections = 10; // concurrent outbound sessions through this connector
};

struct Connector {
  std::string name;  // unique in a RouteTable (case-insensitive); letters, digits, - _ .
  ConnectorKind kind = ConnectorKind::kDnsMx;
  std::vector<SmartHost> smart_hosts;  // kSmartHost: at least one; kDnsMx: none
  std::vector<CostedAddressSpace> address_spaces;  // at least one, none when `internal`
  ConnectorSettings settings;
  // A connector to one other node of the organization (node/cluster_routing.h: named
  // "node.<id>", its SMTP address as the one smart host): never chosen for a domain,
  // only found by name for the next hops that routing to a node picks.
  bool internal = false;
};

// Letters, digits, '-', '_', '.', 1-64 characters: a connector name ends up in
// next-hop keys, queue names and log lines.
bool is_valid_connector_name(std::string_view name);

}  // namespace bh::routing
