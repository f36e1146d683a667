#include "node/linkstate_service.h"

#include "linkstate/link2state_payload.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "common/clock.h"
#include "common/log.h"
#include "linkstate/election.h"
#include "linkstate/session.h"
#include "node/config.h"
#include "routing/address_space.h"

namespace bh::node {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using json = nlohmann::json;
namespace ls = bh::linkstate;
using std::chrono::milliseconds;

namespace {

// Connect + TLS handshake, at most; a hung peer (accepting, never answering) counts as
// dead after this or dead_after_ms, whichever is shorter.
constexpr milliseconds kHandshakeTimeout = std::chrono::seconds(5);
constexpr std::size_t kRecentRefusals = 20;

std::int64_t unix_ms(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}

// The names a peer certificate proves: subject CN and SAN DNS entries.
std::vector<std::string> certificate_names(SSL* ssl) {
  std::vector<std::string> names;
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) {
    return names;
  }
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type == GEN_DNS) {
        const unsigned char* d = ASN1_STRING_get0_data(n->d.dNSName);
        names.emplace_back(reinterpret_cast<const char*>(d),
                           static_cast<std::size_t>(ASN1_STRING_length(n->d.dNSName)));
      }
    }
    GENERAL_NAMES_free(sans);
  }
  X509_NAME* subject = X509_get_subject_name(cert);
  for (int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) {
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
    if (len >= 0 && utf8 != nullptr) {
      names.emplace_back(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(len));
      OPENSSL_free(utf8);
    }
  }
  X509_free(cert);
  return names;
}

Result<void> setup_context(ssl::context& ctx, const proto::LinkStateTls& tls,
                           const std::string& where) {
  auto fail = [&](const std::string& key, const std::string& file,
                  const boost::system::error_code& ec) {
    return permanent_error("",
                           where + ": link_state.tls." + key + " " + file + ": " + ec.message());
  };
  boost::system::error_code ec;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                      ssl::context::no_compression,
                  ec);
  // The policy of auth/tls_context.cc (make_server_context), on both sides: TLS 1.2+
  // with ECDHE and AEAD only, the three TLS 1.3 suites, no renegotiation.
  SSL_CTX_set_options(ctx.native_handle(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  if (SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx.native_handle(),
                              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256") != 1 ||
      SSL_CTX_set_ciphersuites(ctx.native_handle(),
                               "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:"
                               "TLS_AES_128_GCM_SHA256") != 1) {
    return permanent_error(
        "", where + ": link_state.tls: the TLS library refuses our protocol or cipher settings");
  }
  if (ctx.load_verify_file(tls.ca_file(), ec); ec) {
    return fail("ca_file", tls.ca_file(), ec);
  }
  if (ctx.use_certificate_chain_file(tls.cert_file(), ec); ec) {
    return fail("cert_file", tls.cert_file(), ec);
  }
  if (ctx.use_private_key_file(tls.key_file(), ssl::context::pem, ec); ec) {
    return fail("key_file", tls.key_file(), ec);
  }
  if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    return permanent_error("", where + ": link_state.tls.key_file " + tls.key_file() +
                                   " does not match link_state.tls.cert_file " + tls.cert_file());
  }
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
  return Ok{};
}

}  // namespace

Result<std::vector<ls::RoutingGroup>> link_state_topology(const proto::LinkState& c) {
  std::map<std::string, ls::RoutingGroup> groups;
  std::map<std::string, std::string> configured;
  for (const auto& n : c.nodes()) {
    auto& g = groups[n.routing_group()];
    g.name = n.routing_group();
    g.members.push_back(n.id());
    if (n.master()) {
      configured[n.routing_group()] = n.id();
    }
  }
  for (auto& [name, g] : groups) {
    auto it = configured.find(name);
    g.master =
        it != configured.end() ? it->second : *std::min_element(g.members.begin(), g.members.end());
  }
  for (const auto& con : c.connectors()) {
    ls::Connector x;
    x.id = con.id();
    x.target_group = con.target_group();
    x.cost = static_cast<int>(con.cost());
    for (const auto& b : con.source_bridgeheads()) {
      x.sources.push_back(ls::SourceBridgehead{b, true});
    }
    x.target_bridgeheads.assign(con.target_bridgeheads().begin(), con.target_bridgeheads().end());
    for (const auto& as : con.address_spaces()) {
      auto space = routing::AddressSpace::parse(as.pattern());
      if (!space.ok()) {
        return space.error();
      }
      x.address_spaces.push_back(routing::CostedAddressSpace{*space, static_cast<int>(as.cost())});
    }
    groups[con.source_group()].connectors.push_back(std::move(x));
  }
  std::vector<ls::RoutingGroup> out;
  for (auto& [name, g] : groups) {
    auto n = ls::normalize(std::move(g));
    if (!n.ok()) {
      return n.error();
    }
    out.push_back(std::move(*n));
  }
  return out;
}

struct Conn;

struct LinkStateService::Impl {
  Impl(const proto::Config& config, std::string path)
      : cfg(config.link_state()),
        config_path(std::move(path)),
        self(config.node().name()),
        group(cfg.routing_group()),
        db(clock, ls::DbOptions{.hold_down = milliseconds(cfg.hold_down_ms()), .limits = {}}),
        server_ctx(std::make_shared<ssl::context>(ssl::context::tls_server)),
        client_ctx(std::make_shared<ssl::context>(ssl::context::tls_client)),
        acceptor(io),
        probe_timer(io),
        db_timer(io) {}

  // ---- everything below runs on the link-state thread ----
  void start_accept();
  void on_accepted(tcp::socket socket);
  std::shared_ptr<Conn> connect(const std::string& peer,
                                std::function<void(std::shared_ptr<Conn>)> done);
  void scan(std::size_t i);
  void arm_probe(bool changed);
  void adopt(const std::shared_ptr<Conn>& c);
  void become_master();
  void on_session_open(const std::shared_ptr<Conn>& c);
  void on_closed(const std::shared_ptr<Conn>& c, const std::string& reason);
  void refuse(const std::string& remote, const std::string& what, const std::string& why);
  void after_event();
  void arm_db_timer();
  void reassert();
  std::size_t rank(const std::string& node) const;
  ls::SessionOptions session_options(ls::Role role, const std::string& peer) const;
  void ensure_links();
  void link_try(const std::string& target, std::size_t i);
  void link_retry(const std::string& target);
  std::vector<std::string> link_candidates(const std::string& target) const;

  json lsdb() const;
  json peers() const;
  json routes_view() const;
  json call(std::function<json()> f) const;

  proto::LinkState cfg;
  std::string config_path;
  std::string self, group, configured_master;
  std::vector<std::string> members;           // of this group, sorted
  std::vector<std::string> order;             // election order: configured master, then by id
  std::map<std::string, Endpoint> addresses;  // every node of the organization
  std::map<std::string, std::string> node_group;
  std::map<std::string, std::vector<std::string>> group_order;  // election order per group
  std::set<std::string> link_targets;  // target groups of this group's connectors
  // The master's sessions to other routing groups (one per target group), which carry
  // the table between groups.
  struct Link {
    std::shared_ptr<Conn> conn;
    bool busy = false;  // connecting, or waiting to retry
    milliseconds backoff{0};
    std::unique_ptr<asio::steady_timer> timer;
  };
  std::map<std::string, Link> links;
  ls::RoutingGroup own_entry;
  // X-LINK2STATE exchanges over SMTP, per peer identity (link-state thread only).
  struct Link2StateSeen {
    std::string direction;  // "in": it sent us its table; "reply": its 250 carried its table
    Clock::time_point at{};
    std::size_t applied = 0;
    std::uint64_t exchanges = 0;
    std::string error;
  };
  std::map<std::string, Link2StateSeen> link2state_seen;
  void on_link2state(const std::string& peer, const std::string& payload, const char* direction,
                     std::function<void(std::optional<std::string>)> done);

  mutable asio::io_context io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::thread thread;
  SystemClock clock;
  ls::LinkStateDb db;
  // Replaced as a pair by reload_tls() (SIGHUP); a session holds the one it began with.
  std::shared_ptr<ssl::context> server_ctx, client_ctx;
  tcp::acceptor acceptor;
  asio::steady_timer probe_timer, db_timer;
  milliseconds probe_interval{0};

  std::set<std::shared_ptr<Conn>> conns;
  std::shared_ptr<Conn> upstream;  // our open member session to `master`
  std::string master;              // this group's master as we see it ("" while electing)
  Clock::time_point master_since{};
  bool scanning = false;
  std::uint64_t last_generation = 0;
  Clock::time_point table_changed_at{};  // when last_generation was seen first
  std::uint64_t route_publications = 0, failovers = 0;
  std::atomic<std::shared_ptr<const ls::Routes>> routes;
  std::function<void()> on_routes;  // set before start()
  struct Counters {
    std::uint64_t accepted = 0, connects = 0, connect_failures = 0, tls_refused = 0,
                  identity_refused = 0, sessions_opened = 0, sessions_closed = 0, tls_reloads = 0,
                  tls_reload_failures = 0;
  } counters;
  std::deque<json> refusals;
};

struct Conn : std::enable_shared_from_this<Conn> {
  Conn(LinkStateService::Impl& s, tcp::socket socket, std::shared_ptr<ssl::context> c, bool out)
      : svc(s),
        ctx(std::move(c)),
        stream(std::move(socket), *ctx),
        outbound(out),
        timer(s.io),
        since(s.clock.now()) {}

  LinkStateService::Impl& svc;
  std::shared_ptr<ssl::context> ctx;  // before stream: it outlives the SSL object
  ssl::stream<tcp::socket> stream;
  bool outbound;
  bool inter_group = false;  // the peer is a node of another routing group
  asio::steady_timer timer;
  std::string peer;    // outbound: the node dialed; inbound: the node the certificate proved
  std::string remote;  // "IP:port"
  std::optional<ls::PeerSession> session;
  std::array<char, 16384> buf{};
  std::string pending, inflight;
  bool writing = false;
  bool dead = false;
  bool announced = false;  // on_session_open called
  Clock::time_point since;
  std::function<void(std::shared_ptr<Conn>)> on_result;  // outbound: once, null on failure

  void begin_session() {
    auto options = svc.session_options(outbound ? ls::Role::kMember : ls::Role::kMaster, peer);
    options.inter_group = inter_group;
    session.emplace(svc.db, svc.clock, std::move(options));
    session->start();
    pump();
    read();
  }

  void read() {
    stream.async_read_some(asio::buffer(buf), [self = shared_from_this()](
                                                  boost::system::error_code ec, std::size_t n) {
      if (self->dead) {
        return;
      }
      if (ec) {
        return self->close(ec == asio::error::eof || ec == ssl::error::stream_truncated
                               ? "connection closed by the peer"
                               : ec.message());
      }
      self->session->on_bytes(std::string_view(self->buf.data(), n));
      self->pump();
      if (!self->dead) {
        self->read();
      }
    });
  }

  // After anything happened to the session: send its output, notice state changes, arm
  // the deadline timer, and let the service publish.
  void pump() {
    if (dead || !session) {
      return;
    }
    pending += session->take_output();
    flush();
    if (session->state() == ls::SessionState::kOpen && !announced) {
      announced = true;
      svc.on_session_open(shared_from_this());
    }
    if (session->closed() && !writing && pending.empty()) {
      return close("refused: " + session->close_reason());
    }
    if (auto d = session->next_deadline()) {
      timer.expires_after(std::max(
          milliseconds(1),
          std::chrono::duration_cast<milliseconds>(*d - svc.clock.now()) + milliseconds(1)));
      timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (ec || self->dead) {
          return;
        }
        self->session->on_tick();
        self->pump();
        self->svc.after_event();
      });
    }
    svc.after_event();
  }

  void flush() {
    if (writing || pending.empty() || dead) {
      return;
    }
    writing = true;
    inflight = std::exchange(pending, {});
    asio::async_write(
        stream, asio::buffer(inflight),
        [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
          self->writing = false;
          if (self->dead) {
            return;
          }
          if (ec) {
            return self->close(ec.message());
          }
          self->flush();
          if (self->session && self->session->closed() && !self->writing && self->pending.empty()) {
            self->close("refused: " + self->session->close_reason());
          }
        });
  }

  void close(const std::string& reason) {
    if (dead) {
      return;
    }
    dead = true;
    timer.cancel();
    boost::system::error_code ec;
    stream.lowest_layer().close(ec);
    svc.on_closed(shared_from_this(), reason);
  }
};

ls::SessionOptions LinkStateService::Impl::session_options(ls::Role role,
                                                           const std::string& peer) const {
  ls::SessionOptions o;
  o.organization = cfg.organization();
  o.node = self;
  o.routing_group = group;
  o.role = role;
  o.expected_peer = peer;
  o.keepalive = milliseconds(cfg.keepalive_ms());
  o.dead_after = milliseconds(cfg.dead_after_ms());
  return o;
}

std::size_t LinkStateService::Impl::rank(const std::string& node) const {
  auto it = std::find(order.begin(), order.end(), node);
  return it == order.end() ? order.size() : static_cast<std::size_t>(it - order.begin());
}

void LinkStateService::Impl::refuse(const std::string& remote, const std::string& what,
                                    const std::string& why) {
  bh::log::warn("linkstate", "691 peer " + remote + " refused: " + what + ": " + why);
  refusals.push_back(
      json{{"time_ms", unix_ms(clock.now())}, {"remote", remote}, {"what", what}, {"why", why}});
  while (refusals.size() > kRecentRefusals) {
    refusals.pop_front();
  }
}

void LinkStateService::Impl::start_accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
      return;
    }
    if (!ec) {
      on_accepted(std::move(socket));
    }
    start_accept();
  });
}

void LinkStateService::Impl::on_accepted(tcp::socket socket) {
  ++counters.accepted;
  boost::system::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  auto c = std::make_shared<Conn>(*this, std::move(socket), server_ctx, false);
  c->remote = ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
  conns.insert(c);
  c->timer.expires_after(std::min(kHandshakeTimeout, milliseconds(cfg.dead_after_ms())));
  c->timer.async_wait([c](boost::system::error_code e) {
    if (!e && !c->session) {
      c->close("TLS handshake timeout");
    }
  });
  c->stream.async_handshake(ssl::stream_base::server, [this, c](boost::system::error_code e) {
    if (c->dead) {
      return;
    }
    if (e) {
      ++counters.tls_refused;
      refuse(c->remote, "TLS", e.message());
      return c->close("TLS handshake failed: " + e.message());
    }
    c->timer.cancel();
    std::vector<std::string> proven;
    for (const auto& n : certificate_names(c->stream.native_handle())) {
      if (n != self && addresses.count(n) &&
          std::find(proven.begin(), proven.end(), n) == proven.end()) {
        proven.push_back(n);
      }
    }
    if (proven.size() != 1) {
      ++counters.identity_refused;
      refuse(c->remote, "identity",
             proven.empty() ? "the certificate names no other node of the organization"
                            : "the certificate names more than one node");
      return c->close("identity refused");
    }
    c->peer = proven.front();
    c->inter_group = node_group.at(c->peer) != group;
    c->begin_session();
  });
}

std::shared_ptr<Conn> LinkStateService::Impl::connect(
    const std::string& peer, std::function<void(std::shared_ptr<Conn>)> done) {
  ++counters.connects;
  const Endpoint& ep = addresses.at(peer);
  auto c = std::make_shared<Conn>(*this, tcp::socket(io), client_ctx, true);
  c->peer = peer;
  c->inter_group = node_group.at(peer) != group;
  c->remote = ep.str();
  c->on_result = std::move(done);
  conns.insert(c);
  c->timer.expires_after(std::min(kHandshakeTimeout, milliseconds(cfg.dead_after_ms())));
  c->timer.async_wait([c](boost::system::error_code e) {
    if (!e && !c->session) {
      c->close("connect/TLS timeout");
    }
  });
  tcp::endpoint target(asio::ip::make_address(ep.address), ep.port);
  c->stream.lowest_layer().async_connect(target, [this, c](boost::system::error_code e) {
    if (c->dead) {
      return;
    }
    if (e) {
      return c->close("connect: " + e.message());
    }
    c->stream.async_handshake(ssl::stream_base::client, [this, c](boost::system::error_code e2) {
      if (c->dead) {
        return;
      }
      if (e2) {
        ++counters.tls_refused;
        refuse(c->remote, "TLS", e2.message());
        return c->close("TLS handshake failed: " + e2.message());
      }
      c->timer.cancel();
      auto names = certificate_names(c->stream.native_handle());
      if (std::find(names.begin(), names.end(), c->peer) == names.end()) {
        ++counters.identity_refused;
        refuse(c->remote, "identity", "the certificate does not name " + c->peer);
        return c->close("identity refused");
      }
      c->begin_session();
    });
  });
  return c;
}

// The candidates ahead of the current master, in election order, one at a time.
void LinkStateService::Impl::scan(std::size_t i) {
  const std::size_t current = master.empty() ? order.size() : rank(master);
  if (i >= current) {
    scanning = false;
    return arm_probe(false);
  }
  if (order[i] == self) {
    scanning = false;
    become_master();
    return arm_probe(true);
  }
  const std::string candidate = order[i];
  connect(candidate, [this, i, candidate](std::shared_ptr<Conn> c) {
    if (!c) {
      return scan(i + 1);
    }
    scanning = false;
    // Live: this node and the candidate that answered.
    auto elected = ls::elect_master(configured_master, members, {self, candidate});
    if (elected && *elected == candidate) {
      adopt(c);
    } else {
      c->close("not elected");
      become_master();
    }
    arm_probe(true);
  });
}

void LinkStateService::Impl::arm_probe(bool changed) {
  const milliseconds lo(cfg.reconnect_min_ms()), hi(cfg.reconnect_max_ms());
  probe_interval = changed || probe_interval.count() == 0 ? lo : std::min(hi, probe_interval * 2);
  if (master == order.front()) {
    return;  // nobody ahead: nothing to probe until the master's session ends
  }
  probe_timer.expires_after(probe_interval);
  probe_timer.async_wait([this](boost::system::error_code ec) {
    if (ec || scanning || !guard) {
      return;
    }
    scanning = true;
    scan(0);
  });
}

void LinkStateService::Impl::adopt(const std::shared_ptr<Conn>& c) {
  if (upstream && upstream != c) {
    auto old = std::exchange(upstream, nullptr);
    old->close("moving to master " + c->peer);
  }
  upstream = c;
  if (master != c->peer) {
    bh::log::info("linkstate", self + ": routing group " + group + " master is " + c->peer);
    if (!master.empty()) {
      ++failovers;
    }
    master = c->peer;
    master_since = clock.now();
  }
  after_event();
}

void LinkStateService::Impl::become_master() {
  if (upstream) {
    auto old = std::exchange(upstream, nullptr);
    old->close("this node is the master now");
  }
  if (master != self) {
    bh::log::info("linkstate", self + ": routing group " + group + " master is this node");
    if (!master.empty()) {
      ++failovers;
    }
    master = self;
    master_since = clock.now();
  }
  reassert();
  after_event();
}

// The master owns its group's entry: whatever a merge brought, it names this node.
void LinkStateService::Impl::reassert() {
  if (master != self) {
    return;
  }
  const ls::RoutingGroup* cur = db.find(group);
  if (cur != nullptr && cur->master == self) {
    return;
  }
  ls::RoutingGroup entry = own_entry;
  entry.master = self;
  if (auto r = db.set_config(std::move(entry)); !r.ok()) {
    bh::log::error("linkstate", "set_config " + group + ": " + r.error().message);
  }
}

void LinkStateService::Impl::on_session_open(const std::shared_ptr<Conn>& c) {
  ++counters.sessions_opened;
  bh::log::info("linkstate", self + ": 691 session with " + c->peer + " (" + c->remote + ", " +
                                 (c->outbound ? "to master" : "from member") + ") open");
  if (c->on_result) {
    auto f = std::exchange(c->on_result, nullptr);
    f(c);
  }
}

void LinkStateService::Impl::on_closed(const std::shared_ptr<Conn>& c, const std::string& reason) {
  conns.erase(c);
  if (c->announced) {
    ++counters.sessions_closed;
    bh::log::info("linkstate", self + ": 691 session with " + c->peer + " closed: " + reason);
  } else if (c->outbound) {
    ++counters.connect_failures;
    bh::log::debug("linkstate", self + ": 691 to " + c->peer + " (" + c->remote + "): " + reason);
  }
  if (c->session && c->session->closed() && reason.rfind("refused: ", 0) == 0) {
    refuse(c->remote, "session", c->session->close_reason());
  }
  if (c->on_result) {
    auto f = std::exchange(c->on_result, nullptr);
    f(nullptr);
  }
  for (auto& [target, l] : links) {
    if (l.conn == c) {
      l.conn.reset();
      link_retry(target);
    }
  }
  if (c == upstream) {
    upstream.reset();
    bh::log::info("linkstate", self + ": lost routing group master " + master + ": " + reason);
    master.clear();
    if (!scanning && guard) {
      scanning = true;
      probe_timer.cancel();
      scan(0);
    }
  }
}

// The master keeps one session to each routing group its connectors lead to: to the node
// our table names as that group's master, else the first of its nodes that answers.
std::vector<std::string> LinkStateService::Impl::link_candidates(const std::string& target) const {
  std::vector<std::string> out;
  if (const ls::RoutingGroup* g = db.find(target);
      g != nullptr && addresses.count(g->master) != 0) {
    out.push_back(g->master);
  }
  for (const auto& n : group_order.at(target)) {
    if (std::find(out.begin(), out.end(), n) == out.end()) {
      out.push_back(n);
    }
  }
  return out;
}

void LinkStateService::Impl::ensure_links() {
  if (!guard) {
    return;
  }
  if (master != self) {
    for (auto& [target, l] : links) {
      if (l.conn) {
        auto c = std::exchange(l.conn, nullptr);
        c->close("not the master any more");
      }
    }
    return;
  }
  for (const auto& t : link_targets) {
    auto& l = links[t];
    if (!l.conn && !l.busy) {
      link_try(t, 0);
    }
  }
}

void LinkStateService::Impl::link_try(const std::string& target, std::size_t i) {
  auto cands = link_candidates(target);
  if (i >= cands.size() || master != self) {
    links[target].busy = false;
    return link_retry(target);
  }
  links[target].busy = true;
  connect(cands[i], [this, target, i](std::shared_ptr<Conn> c) {
    if (!c) {
      return link_try(target, i + 1);
    }
    auto& l = links[target];
    l.busy = false;
    l.backoff = milliseconds(0);
    if (master != self || !guard) {
      c->close("not the master");
      return;
    }
    l.conn = c;
    after_event();
  });
}

void LinkStateService::Impl::link_retry(const std::string& target) {
  auto& l = links[target];
  if (!guard || l.busy) {
    return;
  }
  const milliseconds lo(cfg.reconnect_min_ms()), hi(cfg.reconnect_max_ms());
  l.backoff = l.backoff.count() == 0 ? lo : std::min(hi, l.backoff * 2);
  if (!l.timer) {
    l.timer = std::make_unique<asio::steady_timer>(io);
  }
  l.busy = true;
  l.timer->expires_after(l.backoff);
  l.timer->async_wait([this, target](boost::system::error_code ec) {
    links[target].busy = false;
    if (!ec) {
      ensure_links();
    }
  });
}

void LinkStateService::Impl::after_event() {
  ensure_links();
  for (int guard_loops = 0; guard_loops < 4; ++guard_loops) {
    reassert();
    auto snap = db.snapshot();
    if (snap->generation() == last_generation) {
      break;
    }
    last_generation = snap->generation();
    table_changed_at = clock.now();
    if (auto r = ls::compute_routes(snap, group); r.ok()) {
      routes.store(std::make_shared<const ls::Routes>(std::move(*r)));
      ++route_publications;
      if (on_routes) {
        on_routes();
      }
    }
    for (const auto& c : std::vector<std::shared_ptr<Conn>>(conns.begin(), conns.end())) {
      if (c->session && !c->dead) {
        c->session->table_changed();
        c->pending += c->session->take_output();
        c->flush();
      }
    }
  }
  arm_db_timer();
}

void LinkStateService::Impl::arm_db_timer() {
  auto d = db.next_deadline();
  if (!d) {
    return;
  }
  db_timer.expires_after(
      std::max(milliseconds(1), std::chrono::duration_cast<milliseconds>(*d - clock.now())));
  db_timer.async_wait([this](boost::system::error_code ec) {
    if (ec) {
      return;
    }
    db.tick();
    after_event();
  });
}

// ---- views ----

json LinkStateService::Impl::call(std::function<json()> f) const {
  auto p = std::make_shared<std::promise<json>>();
  auto fut = p->get_future();
  asio::post(io, [p, f = std::move(f)] { p->set_value(f()); });
  if (fut.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
    return json{{"error", "the link-state thread did not answer"}};
  }
  return fut.get();
}

namespace {

json connector_json(const ls::Connector& c) {
  json sources = json::array(), spaces = json::array();
  for (const auto& s : c.sources) {
    sources.push_back({{"node", s.node}, {"up", s.up}});
  }
  for (const auto& a : c.address_spaces) {
    spaces.push_back({{"pattern", a.space.str()}, {"cost", a.cost}});
  }
  return json{{"id", c.id},
              {"target_group", c.target_group},
              {"cost", c.cost},
              {"state", c.up() ? "up" : "down"},
              {"changed_at_ms", unix_ms(c.changed_at)},
              {"sources", sources},
              {"target_bridgeheads", c.target_bridgeheads},
              {"address_spaces", spaces}};
}

json hops_json(const std::vector<const ls::Connector*>& hops) {
  json out = json::array();
  for (const auto* c : hops) {
    out.push_back({{"connector", c->id},
                   {"next_hop", c->target_group},
                   {"target_bridgeheads", c->target_bridgeheads},
                   {"cost", c->cost},
                   {"state", c->up() ? "up" : "down"}});
  }
  return out;
}

}  // namespace

json LinkStateService::Impl::lsdb() const {
  auto snap = db.snapshot();
  json groups = json::array();
  for (const auto& [name, g] : snap->groups()) {
    json connectors = json::array();
    for (const auto& c : g->connectors) {
      connectors.push_back(connector_json(c));
    }
    groups.push_back({{"name", name},
                      {"master", g->master},
                      {"members", g->members},
                      {"version", g->version.str()},
                      {"connectors", connectors}});
  }
  return json{{"node", self},
              {"routing_group", group},
              {"master", master},
              {"master_since_ms", master.empty() ? 0 : unix_ms(master_since)},
              {"failovers", failovers},
              {"digest", ls::hex(snap->digest())},
              {"generation", snap->generation()},
              {"table_changed_ms", unix_ms(table_changed_at)},
              {"groups", groups}};
}

json LinkStateService::Impl::peers() const {
  json sessions = json::array();
  for (const auto& c : conns) {
    if (!c->session) {
      continue;
    }
    const auto& s = *c->session;
    sessions.push_back(
        {{"peer", c->peer},
         {"remote", c->remote},
         {"direction", c->outbound ? "out" : "in"},
         {"inter_group", c->inter_group},
         {"peer_group", node_group.count(c->peer) != 0 ? node_group.at(c->peer) : ""},
         {"role", c->outbound ? "member" : "master"},
         {"state", s.state() == ls::SessionState::kOpen ? "open" : "hello"},
         {"upstream", c == upstream},
         {"since_ms", unix_ms(c->since)},
         {"last_exchange_ms", unix_ms(s.last_received())},
         {"frames_in", s.frames_in()},
         {"frames_out", s.frames_out()}});
  }
  return json{{"node", self},
              {"routing_group", group},
              {"master", master},
              {"listen", cfg.listen()},
              {"sessions", sessions},
              {"counters",
               {{"accepted", counters.accepted},
                {"connects", counters.connects},
                {"connect_failures", counters.connect_failures},
                {"tls_refused", counters.tls_refused},
                {"identity_refused", counters.identity_refused},
                {"sessions_opened", counters.sessions_opened},
                {"sessions_closed", counters.sessions_closed},
                {"tls_reloads", counters.tls_reloads},
                {"tls_reload_failures", counters.tls_reload_failures},
                {"failovers", failovers}}},
              {"refusals", json(std::vector<json>(refusals.begin(), refusals.end()))},
              {"x_link2state", [&] {
                 json x = json::array();
                 for (const auto& [peer, seen] : link2state_seen) {
                   x.push_back({{"peer", peer},
                                {"direction", seen.direction},
                                {"last_exchange_ms", unix_ms(seen.at)},
                                {"exchanges", seen.exchanges},
                                {"applied", seen.applied},
                                {"error", seen.error}});
                 }
                 return x;
               }()}};
}

void LinkStateService::Impl::on_link2state(const std::string& peer, const std::string& payload,
                                           const char* direction,
                                           std::function<void(std::optional<std::string>)> done) {
  auto& seen = link2state_seen[peer];
  if (link2state_seen.size() > 1024) {  // peers are the organization's nodes; stay bounded
    link2state_seen.erase(link2state_seen.begin());
  }
  seen.direction = direction;
  seen.at = clock.now();
  ++seen.exchanges;
  auto r = ls::handle_link2state(db, payload, cfg.organization());
  if (!r.ok()) {
    seen.error = r.error().message;
    log::warn("linkstate", "X-LINK2STATE from " + peer + " refused: " + r.error().message);
    if (done) {
      done(std::nullopt);
    }
    return;
  }
  seen.error.clear();
  seen.applied = r->applied;
  log::info("linkstate", std::string("X-LINK2STATE ") + direction + " from " + peer + ": " +
                             std::to_string(r->applied) + " entr" + (r->applied == 1 ? "y" : "ies") +
                             " applied" + (r->reply ? ", our table goes back" : ""));
  after_event();  // publish, and tell our 691 sessions (the master pulls what is new)
  if (done) {
    done(std::move(r->reply));
  }
}

json LinkStateService::Impl::routes_view() const {
  auto r = routes.load();
  if (!r) {
    return json{
        {"local_group", group}, {"groups", json::array()}, {"address_spaces", json::array()}};
  }
  const auto& snap = r->snapshot();
  json groups = json::array();
  for (const auto& [name, g] : snap.groups()) {
    auto gr = r->to_group(name);
    groups.push_back({{"group", name},
                      {"reachable", gr.reachable},
                      {"local", name == group},
                      {"cost", gr.cost},
                      {"next_hops", hops_json(gr.first_hops)}});
  }
  // One line per address space pattern: the route a domain it matches would take.
  std::set<std::string> patterns;
  json spaces = json::array();
  for (const auto& e : snap.externals()) {
    const std::string pattern = e.space->space.str();
    if (!patterns.insert(pattern).second) {
      continue;
    }
    const auto& d = e.space->space.domain();
    const std::string sample = e.space->space.kind() == routing::AddressSpaceKind::kExact ? d
                               : e.space->space.kind() == routing::AddressSpaceKind::kAll
                                   ? std::string("bh-route-sample.invalid")
                                   : "bh-route-sample." + d;
    auto dr = r->for_domain(sample);
    json routes_out = json::array();
    for (const auto& x : dr.routes) {
      routes_out.push_back({{"connector", x.connector->id},
                            {"group", x.group},
                            {"pattern", x.space.str()},
                            {"cost", x.cost},
                            {"state", x.connector->up() ? "up" : "down"},
                            {"first_hops", hops_json(x.first_hops)}});
    }
    spaces.push_back(
        {{"pattern", pattern}, {"status", ls::to_string(dr.status)}, {"routes", routes_out}});
  }
  return json{{"local_group", group},
              {"generation", snap.generation()},
              {"publications", route_publications},
              {"groups", groups},
              {"address_spaces", spaces}};
}

// ---- LinkStateService ----

LinkStateService::LinkStateService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LinkStateService::~LinkStateService() { stop(); }

Result<void> LinkStateService::reload_tls() {
  Impl& s = *impl_;
  // Loaded and checked here, on the caller's thread (file reads); swapped in on the
  // link-state thread, where sessions take their context when they begin.
  auto server = std::make_shared<ssl::context>(ssl::context::tls_server);
  auto client = std::make_shared<ssl::context>(ssl::context::tls_client);
  Result<void> r = setup_context(*server, s.cfg.tls(), s.config_path);
  if (r.ok()) {
    r = setup_context(*client, s.cfg.tls(), s.config_path);
  }
  asio::post(s.io, [&s, server = std::move(server), client = std::move(client), ok = r.ok()] {
    if (ok) {
      s.server_ctx = server;
      s.client_ctx = client;
      ++s.counters.tls_reloads;
    } else {
      ++s.counters.tls_reload_failures;
    }
  });
  return r;
}

Result<std::unique_ptr<LinkStateService>> LinkStateService::create(const proto::Config& config,
                                                                   const std::string& config_path) {
  auto impl = std::make_unique<Impl>(config, config_path);
  Impl& s = *impl;
  if (auto r = setup_context(*s.server_ctx, s.cfg.tls(), config_path); !r.ok()) {
    return r.error();
  }
  if (auto r = setup_context(*s.client_ctx, s.cfg.tls(), config_path); !r.ok()) {
    return r.error();
  }
  std::map<std::string, std::string> configured;  // group -> its configured master
  for (const auto& n : s.cfg.nodes()) {
    s.addresses[n.id()] = parse_endpoint(n.address()).value();
    s.node_group[n.id()] = n.routing_group();
    if (n.master()) {
      configured[n.routing_group()] = n.id();
    }
    if (n.routing_group() != s.group) {
      continue;
    }
    s.members.push_back(n.id());
    if (n.master()) {
      s.configured_master = n.id();
    }
  }
  // Election order per group: the configured master, then by id (linkstate/election.h).
  for (const auto& [id, g] : s.node_group) {  // ids in order
    auto& o = s.group_order[g];
    const auto it = configured.find(g);
    if (it != configured.end() && o.empty()) {
      o.push_back(it->second);
    }
    if (it == configured.end() || id != it->second) {
      o.push_back(id);
    }
  }
  for (const auto& con : s.cfg.connectors()) {
    if (con.source_group() == s.group && !con.target_group().empty()) {
      s.link_targets.insert(con.target_group());
    }
  }
  std::sort(s.members.begin(), s.members.end());
  if (!s.configured_master.empty()) {
    s.order.push_back(s.configured_master);
  }
  for (const auto& m : s.members) {
    if (m != s.configured_master) {
      s.order.push_back(m);
    }
  }
  auto topology = link_state_topology(s.cfg);
  if (!topology.ok()) {
    return permanent_error("", config_path + ": link_state: " + topology.error().message);
  }
  for (auto& g : *topology) {
    if (g.name == s.group) {
      s.own_entry = g;
    }
    if (auto r = s.db.set_config(std::move(g)); !r.ok()) {
      return permanent_error("", config_path + ": link_state: " + r.error().message);
    }
  }
  return std::unique_ptr<LinkStateService>(new LinkStateService(std::move(impl)));
}

void LinkStateService::set_directory_group(linkstate::RoutingGroup g) {
  asio::post(impl_->io, [impl = impl_.get(), g = std::move(g)]() mutable {
    if (g.name != impl->group || g.connectors == impl->own_entry.connectors) {
      return;
    }
    bh::log::info("linkstate", "routing group " + g.name + ": " + std::to_string(g.connectors.size()) +
                                   " connector(s) from the directory");
    impl->own_entry.connectors = std::move(g.connectors);
    if (impl->master == impl->self) {
      ls::RoutingGroup entry = impl->own_entry;
      entry.master = impl->self;
      if (auto r = impl->db.set_config(std::move(entry)); !r.ok()) {
        bh::log::error("linkstate", "set_config " + impl->group + " from the directory: " + r.error().message);
        return;
      }
      impl->after_event();
    }
  });
}

std::string LinkStateService::link2state_table() const {
  auto snap = impl_->db.snapshot();
  return snap ? ls::link2state_table(*snap, impl_->cfg.organization()) : std::string();
}

void LinkStateService::exchange_link2state(const std::string& peer, std::string payload,
                                           std::function<void(std::optional<std::string>)> done) {
  asio::post(impl_->io, [impl = impl_.get(), peer, payload = std::move(payload),
                         done = std::move(done)]() mutable {
    impl->on_link2state(peer, payload, "in", std::move(done));
  });
}

void LinkStateService::apply_link2state(const std::string& peer, std::string payload) {
  asio::post(impl_->io, [impl = impl_.get(), peer, payload = std::move(payload)]() mutable {
    impl->on_link2state(peer, payload, "reply", nullptr);
  });
}

void LinkStateService::on_routes(std::function<void()> callback) {
  impl_->on_routes = std::move(callback);
}

Result<void> LinkStateService::start() {
  Impl& s = *impl_;
  auto ep = parse_endpoint(s.cfg.listen()).value();
  boost::system::error_code ec;
  tcp::endpoint local(asio::ip::make_address(ep.address, ec), ep.port);
  if (!ec) {
    s.acceptor.open(local.protocol(), ec);
  }
  if (!ec) {
    s.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  }
  if (!ec) {
    s.acceptor.bind(local, ec);
  }
  if (!ec) {
    s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return permanent_error("",
                           s.config_path + ": link_state.listen " + ep.str() + ": " + ec.message());
  }
  s.guard.emplace(s.io.get_executor());
  asio::post(s.io, [&s] {
    s.start_accept();
    s.after_event();  // the seeded table's routes
    s.scanning = true;
    s.scan(0);
  });
  s.thread = std::thread([&s] { s.io.run(); });
  bh::log::info("linkstate",
                s.self + ": link state (routing group " + s.group + ") listening on " + ep.str());
  return Ok{};
}

void LinkStateService::stop() {
  Impl& s = *impl_;
  if (!s.thread.joinable()) {
    return;
  }
  asio::post(s.io, [&s] {
    s.guard.reset();
    boost::system::error_code ec;
    s.acceptor.close(ec);
    s.probe_timer.cancel();
    s.db_timer.cancel();
    for (auto& [target, l] : s.links) {
      if (l.timer) {
        l.timer->cancel();
      }
    }
    for (const auto& c : std::vector<std::shared_ptr<Conn>>(s.conns.begin(), s.conns.end())) {
      c->on_result = nullptr;
      c->close("stopping");
    }
  });
  s.thread.join();
  s.conns.clear();
  s.upstream.reset();
}

std::shared_ptr<const ls::Snapshot> LinkStateService::snapshot() const {
  return impl_->db.snapshot();
}
std::shared_ptr<const ls::Routes> LinkStateService::routes() const { return impl_->routes.load(); }

Result<json> LinkStateService::report(const std::string& connector, bool up) {
  Impl& s = *impl_;
  auto p = std::make_shared<std::promise<Result<json>>>();
  auto fut = p->get_future();
  asio::post(s.io, [&s, p, connector, up] {
    const ls::RoutingGroup* g = s.db.find(s.group);
    const ls::Connector* c = g != nullptr ? g->find(connector) : nullptr;
    if (c == nullptr) {
      return p->set_value(permanent_error(
          "", "no connector \"" + ls::printable(connector) + "\" in routing group " + s.group));
    }
    if (std::none_of(c->sources.begin(), c->sources.end(),
                     [&](const ls::SourceBridgehead& b) { return b.node == s.self; })) {
      return p->set_value(permanent_error("", s.self + " is no source bridgehead of " + connector));
    }
    const json done{{"connector", connector},
                    {"state", up ? "up" : "down"},
                    {"node", s.self},
                    {"master", s.master},
                    {"hold_down_ms", s.cfg.hold_down_ms()}};
    if (s.master == s.self) {
      if (auto r = s.db.report(s.group, connector, s.self, up); !r.ok()) {
        return p->set_value(r.error());
      }
      s.after_event();
      return p->set_value(done);
    }
    if (!s.upstream || !s.upstream->session ||
        !s.upstream->session->send_state_change(s.group, connector, up)) {
      return p->set_value(transient_error("", "no session to the routing group master right now"));
    }
    s.upstream->pump();
    p->set_value(done);
  });
  if (fut.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
    return transient_error("", "the link-state thread did not answer");
  }
  return fut.get();
}

std::optional<Result<LinkStateService::DomainDecision>> LinkStateService::route_domain(
    std::string_view domain, std::uint64_t pick) const {
  auto r = routes();
  if (!r) {
    return std::nullopt;
  }
  auto d = r->for_domain(domain);
  switch (d.status) {
    case ls::DomainStatus::kNoAddressSpace:
      return std::nullopt;
    case ls::DomainStatus::kUnreachable:
      return Result<DomainDecision>(
          transient_error("4.4.4", "no live route for " + std::string(domain) +
                                       " (link state: every path to its address space is down)"));
    case ls::DomainStatus::kRouted:
      break;
  }
  if (d.routes.empty()) {
    return std::nullopt;
  }
  const auto& x = d.routes[pick % d.routes.size()];
  return Result<DomainDecision>(
      DomainDecision{x.connector->id, x.group, x.group == r->local_group()});
}

json LinkStateService::lsdb_json() const {
  return impl_->call([this] { return impl_->lsdb(); });
}
json LinkStateService::peers_json() const {
  return impl_->call([this] { return impl_->peers(); });
}
json LinkStateService::routes_json() const {
  return impl_->call([this] { return impl_->routes_view(); });
}

}  // namespace bh::node
