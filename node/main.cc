// bridgehead: the node's composition root (DESIGN.md §2 node/, STYLE.md principle 6).
//
// Loads and validates the config, builds every object, wires them, runs one io_context
// per worker thread and handles signals: SIGTERM/SIGINT stop accepting and exit (mail
// already acknowledged is on disk and resumes at the next start; a second one while the
// node waits for deliveries in flight stops that wait); SIGHUP reloads the
// server TLS certificate and key (new connections use them, running ones keep theirs;
// on failure the old pair stays); nothing else reloads yet. This is the only file that
// names concrete classes.

#include <signal.h>
#include <sys/stat.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/thread_pool.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <memory>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "admin/admin_server.h"
#include "auth/ldap_password.h"
#include "auth/sasl_backend.h"
#include "auth/sasl_client.h"
#include "auth/tls_context.h"
#include "common/address.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/text.h"
#include "common/thread_name.h"
#include "directory/file_directory.h"
#include "directory/ldap_client.h"
#include "directory/ldap_pool.h"
#include "directory/ldap_directory.h"
#include "directory/topology_reader.h"
#include "node/categorize_deliverer.h"
#include "node/config.h"
#include "node/cluster_routing.h"
#include "node/linkstate_delivery.h"
#include "node/linkstate_service.h"
#include "node/sinks_setup.h"
#include "queue/fs_message_store.h"
#include "queue/maildir.h"
#include "queue/queue_manager.h"
#include "routing/ares_mx_resolver.h"
#include "routing/route_table.h"
#include "queue/tracking_log.h"
#include "smtp/connection.h"
#include "smtp/lmtp_deliverer.h"
#include "smtp/odmr.h"
#include "smtp/relay_client.h"

namespace {

namespace asio = boost::asio;
using nlohmann::json;

int usage() {
  std::fprintf(stderr,
               "usage: bridgehead --config FILE [--check-config]\n"
               "  --config FILE     the node's YAML config (docs/configuration.md)\n"
               "  --check-config    validate FILE and exit: 0 valid, 2 invalid\n");
  return 2;
}

// The counters the relay and the LMTP deliverer share (bhctl status "relay", "lmtp").
template <class Counters>
json outbound_json(const Counters& c, std::size_t held_connections) {
  return json{{"jobs", c.jobs.load()},
              {"connect_failures", c.connect_failures.load()},
              {"connections_reused", c.connections_reused.load()},
              {"reuse_failures", c.reuse_failures.load()},
              {"held_connections", held_connections},
              {"delivered", c.delivered.load()},
              {"transient", c.transient.load()},
              {"permanent", c.permanent.load()}};
}

bool make_dir(const std::string& p) { return ::mkdir(p.c_str(), 0700) == 0 || errno == EEXIST; }

const char* state_name(bh::queue::MessageState s) {
  switch (s) {
    case bh::queue::MessageState::kQueued: return "queued";
    case bh::queue::MessageState::kDelivering: return "delivering";
    case bh::queue::MessageState::kRetry: return "retry";
    case bh::queue::MessageState::kFrozen: return "frozen";
  }
  return "?";
}

json summary_json(const bh::queue::MessageSummary& s) {
  return {{"id", s.id}, {"state", state_name(s.state)}, {"sender", s.sender},
          {"recipients", s.recipients}, {"size", s.size}, {"received", s.received_unix},
          {"attempts", s.attempts}, {"last_error", s.last_error},
          {"next_attempt", s.next_attempt_unix}, {"next_hops", s.hops}};
}

json tracking_json(const bh::queue::TrackingEvent& e) {
  return {{"time", bh::queue::iso8601_ms(e.time)}, {"node", e.node},
          {"event", std::string(bh::queue::event_name(e.event))}, {"queue_id", e.queue_id},
          {"message_id", e.message_id}, {"sender", e.sender}, {"recipient", e.recipient},
          {"next_hop", e.next_hop}, {"reply", e.reply}, {"size", e.size},
          {"client_address", e.client_address}};
}

json detail_json(const bh::queue::MessageDetail& d) {
  using namespace bh::queue;
  json j = summary_json(d.summary);
  const Envelope& e = d.envelope;
  static const char* kBody[] = {"unspecified", "7BIT", "8BITMIME", "BINARYMIME"};
  static const char* kRet[] = {"unspecified", "FULL", "HDRS"};
  j["body"] = kBody[static_cast<int>(e.body)];
  j["ret"] = kRet[static_cast<int>(e.ret)];
  j["envid"] = e.envid;
  j["smtputf8"] = e.smtputf8;
  j["declared_size"] = e.declared_size;
  j["client_address"] = e.client_address;
  j["client_helo"] = e.client_helo;
  j["protocol"] = e.protocol;
  j["recipients"] = json::array();
  for (const auto& r : e.recipients) {
    std::string notify;
    if (r.notify & kNotifyNever) notify = "NEVER";
    if (r.notify & kNotifySuccess) notify += std::string(notify.empty() ? "" : ",") + "SUCCESS";
    if (r.notify & kNotifyFailure) notify += std::string(notify.empty() ? "" : ",") + "FAILURE";
    if (r.notify & kNotifyDelay) notify += std::string(notify.empty() ? "" : ",") + "DELAY";
    static const char* kState[] = {"pending", "delivered", "failed"};
    j["recipients"].push_back({{"address", r.address}, {"mailbox", r.mailbox},
                               {"home_server", r.home_server}, {"orcpt", r.orcpt}, {"notify", notify},
                               {"state", kState[static_cast<int>(r.state)]},
                               {"last_result", r.last_result}});
  }
  return j;
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
  const bh::proto::Config& cfg = loaded.value();  // every default already filled in
  // LogLevel in proto/config.proto counts from 1 (debug); bh::log::Level from 0.
  bh::log::threshold() = static_cast<int>(cfg.node().log_level()) - 1;
  const std::string& name = cfg.node().name();
  const std::string& hostname = cfg.node().hostname();
  // A node of a cluster: link_state is configured (its validation makes listen and this
  // node's entry in link_state.nodes required, so the two always go together).
  const bool in_cluster = cfg.link_state().nodes_size() > 0;
  const std::string& data_dir = cfg.node().data_dir();
  const std::vector<std::string> mailbox_list(cfg.directory().file().mailboxes().begin(),
                                              cfg.directory().file().mailboxes().end());
  const std::vector<std::string> local_domains(cfg.local_domains().begin(), cfg.local_domains().end());
  if (check_only) {
    std::printf("%s: ok\n", config_path.c_str());
    return 0;
  }
  ::signal(SIGPIPE, SIG_IGN);
  // Kerberos identities (GSSAPI), in the environment libkrb5 reads, before any thread
  // starts: the acceptor keytab for AUTH/X-EXPS, and our own client keytab toward other
  // nodes, whose tickets live in a cache in this process only.
  if (!cfg.auth().keytab().empty()) {
    ::setenv("KRB5_KTNAME", ("FILE:" + cfg.auth().keytab()).c_str(), 1);
  }
  if (!cfg.auth().client_keytab().empty()) {
    ::setenv("KRB5_CLIENT_KTNAME", ("FILE:" + cfg.auth().client_keytab()).c_str(), 1);
    ::setenv("KRB5CCNAME", "MEMORY:bridgehead", 1);
  }
  auto fatal = [](const std::string& m) {
    bh::log::error("node", m);
    return 1;
  };

  // ---- state on disk ----
  const std::string mailboxes = data_dir + "/mailboxes";
  for (const auto& d : {data_dir, mailboxes}) {
    if (!make_dir(d)) {
      return fatal("cannot create " + d + ": " + std::strerror(errno));
    }
  }
  bh::SystemClock clock;
  bh::SystemRandom random;
  bh::queue::FsStoreOptions store_opt;
  store_opt.root = data_dir + "/queue";
  store_opt.free_space_floor = cfg.queue().free_space_floor_mb() << 20;
  bh::queue::FsMessageStore store(store_opt, clock, random);
  if (auto r = store.open(); !r.ok()) {
    return fatal(r.error().message);
  }
  auto recovered = store.recover();
  bh::log::info("queue", "recovery: " + std::to_string(recovered.ready.size()) + " to deliver, " +
                             std::to_string(recovered.removed_temp) + " incomplete removed, " +
                             std::to_string(recovered.quarantined) + " quarantined");

  // Message tracking: the queue manager reports, QueueTracker writes (received,
  // delivered, deferred, bounced). Built before the manager, which uses them until it
  // stops. A log that cannot be opened costs events, never mail.
  const std::string tracking_dir = data_dir + "/log";
  std::unique_ptr<bh::queue::TrackingLog> tracking;
  std::unique_ptr<bh::queue::QueueTracker> tracker;
  if (cfg.tracking().enabled()) {
    bh::queue::TrackingLogOptions topt;
    topt.dir = tracking_dir;
    topt.node = name;
    topt.max_bytes = std::uint64_t{cfg.tracking().max_mb()} << 20;
    topt.keep = cfg.tracking().keep();
    topt.buffer_bytes = 64u << 10;  // the queue manager flushes at the end of each batch
    tracking = std::make_unique<bh::queue::TrackingLog>(topt, clock);
    if (auto r = tracking->open(); !r.ok()) {
      bh::log::warn("tracking", r.error().message + "; events are lost until it can be opened");
    }
    tracker = std::make_unique<bh::queue::QueueTracker>(*tracking);
  }
  bh::queue::MaildirDeliverer maildir(mailboxes, hostname);
  bh::queue::QueueManagerOptions qopt;
  qopt.retry_initial = std::chrono::seconds(cfg.queue().retry_initial_s());
  qopt.retry_max = std::chrono::seconds(cfg.queue().retry_max_s());
  qopt.batch_window = std::chrono::milliseconds(cfg.queue().delivery_batch_window_ms());
  const auto& queue_cfg = cfg.queue();
  qopt.glitch_retries = queue_cfg.glitch_retries();
  qopt.glitch_interval = std::chrono::seconds(queue_cfg.glitch_interval_s());
  qopt.expire_after = std::chrono::seconds(queue_cfg.expire_after_s());
  qopt.delay_notice_after = std::chrono::seconds(queue_cfg.delay_notice_after_s());
  qopt.max_per_hop = queue_cfg.max_per_hop();
  qopt.max_remote = queue_cfg.max_remote();
  bh::queue::QueueManager manager(store, maildir, clock, qopt);
  bh::directory::FileDirectory directory(mailbox_list, local_domains);
  // Recipients: the file directory, or LDAP (global catalog role) when directory.ldap is
  // configured. local_domains decide which domains are ours either way (FileDirectory
  // holds them). The LDAP client runs on its own io_context and thread; connect and bind
  // run on the client's helper thread.
  bh::directory::RecipientDirectory* recipients = &directory;
  asio::io_context ldap_io(1);
  auto ldap_guard = asio::make_work_guard(ldap_io);
  std::shared_ptr<bh::directory::LdapPool> ldap_client;  // the global catalog role
  std::unique_ptr<bh::directory::LdapDirectory> ldap_directory;
  std::unique_ptr<bh::directory::Categorizer> categorizer;
  std::unique_ptr<bh::node::CategorizeDeliverer> categorize_deliverer;
  std::thread ldap_thread;
  // Ends the LDAP client and its thread on every way out of main (the early
  // `return fatal(...)` too): pending lookups fail, the connection closes, and the
  // io_context runs out of work.
  // The configuration role (directory.ldap.configuration): its own client to the domain
  // controllers, the reader and its poller, on the same io_context.
  std::shared_ptr<bh::directory::LdapClient> dc_client;
  std::unique_ptr<bh::directory::TopologyReader> topology_reader;
  std::shared_ptr<bh::directory::TopologyPoller> topology_poller;
  std::mutex topology_mu;
  std::optional<bh::directory::Topology> topology;  // the last one read (bhctl status)
  // The running link-state engine, for the topology poller (set once it runs, under
  // topology_mu): this node's routing group from the directory goes into its table.
  bh::node::LinkStateService* topology_sink = nullptr;
  const std::string own_group = cfg.link_state().routing_group();
  auto feed_topology = [&own_group](bh::node::LinkStateService* ls, const bh::directory::Topology& t) {
    for (const auto& g : t.groups) {
      if (ls != nullptr && g.name == own_group) {
        ls->set_directory_group(g);
      }
    }
  };
  struct LdapShutdown {
    std::shared_ptr<bh::directory::LdapPool>& client;
    std::shared_ptr<bh::directory::LdapClient>& dc;
    std::shared_ptr<bh::directory::TopologyPoller>& poller;
    asio::executor_work_guard<asio::io_context::executor_type>& guard;
    std::thread& thread;
    void now() {
      if (poller) {
        poller->stop();
      }
      if (dc) {
        dc->stop();
      }
      if (client) {
        client->stop();
      }
      guard.reset();
      if (thread.joinable()) {
        thread.join();
      }
    }
    ~LdapShutdown() { now(); }
  } ldap_shutdown{ldap_client, dc_client, topology_poller, ldap_guard, ldap_thread};
  const auto& ldap_cfg = cfg.directory().ldap();
  const auto ldap_timeout = std::chrono::milliseconds(ldap_cfg.timeout_ms());
  if (ldap_cfg.global_catalog_size() > 0) {
    bh::directory::LdapClientOptions lo;
    lo.uris.assign(ldap_cfg.global_catalog().begin(), ldap_cfg.global_catalog().end());
    lo.bind_dn = ldap_cfg.bind_dn();
    if (!ldap_cfg.password_file().empty()) {
      std::ifstream in(ldap_cfg.password_file());
      std::string pw;
      if (!in || !std::getline(in, pw)) {
        return fatal(config_path + ": directory.ldap.password_file: cannot read " + ldap_cfg.password_file());
      }
      if (!pw.empty() && pw.back() == '\r') {
        pw.pop_back();
      }
      if (pw.empty()) {
        // An empty password would be an unauthenticated bind (RFC 4513 §5.1.2).
        return fatal(config_path + ": directory.ldap.password_file: the first line is empty");
      }
      lo.password = std::move(pw);
    }
    lo.sasl_mechanism = ldap_cfg.sasl_mechanism();
    lo.timeout = ldap_timeout;
    lo.max_in_flight = ldap_cfg.max_in_flight();
    lo.tls.start_tls = ldap_cfg.tls().start_tls();
    lo.tls.ca_file = ldap_cfg.tls().ca_file();
    lo.tls.verify = ldap_cfg.tls().verify();
    if (!lo.tls.verify) {
      bh::log::warn("node", config_path + ": directory.ldap.tls.verify is false: the directory's certificate is not checked");
    }
    ldap_client = std::make_shared<bh::directory::LdapPool>(ldap_io, lo, ldap_cfg.connections());
    bh::directory::LdapDirectoryOptions dopt;
    dopt.base_dn = ldap_cfg.base_dn();
    const auto& at = ldap_cfg.attributes();
    dopt.attributes.proxy_addresses = at.proxy_addresses();
    dopt.attributes.mail = at.mail();
    dopt.attributes.home_server = at.home_server();
    dopt.attributes.object_class = at.object_class();
    dopt.attributes.member = at.member();
    dopt.attributes.target_address = at.target_address();
    dopt.attributes.alt_recipient = at.alt_recipient();
    dopt.attributes.deliver_and_redirect = at.deliver_and_redirect();
    dopt.attributes.expansion_server = at.expansion_server();
    dopt.attributes.query_filter = at.query_filter();
    dopt.attributes.query_base = at.query_base();
    dopt.attributes.require_auth = at.require_auth();
    if (ldap_cfg.group_classes_size() > 0) {
      dopt.group_classes.assign(ldap_cfg.group_classes().begin(), ldap_cfg.group_classes().end());
    }
    dopt.cache.positive_ttl = std::chrono::seconds(ldap_cfg.positive_ttl_s());
    dopt.cache.negative_ttl = std::chrono::seconds(ldap_cfg.negative_ttl_s());
    dopt.cache.max_entries = ldap_cfg.cache_size();
    // In a cluster mailboxes homed on other nodes are routed there.
    dopt.this_server = in_cluster ? name : std::string();
    ldap_directory = std::make_unique<bh::directory::LdapDirectory>(*ldap_client, clock, dopt);
    recipients = ldap_directory.get();
    bh::directory::CategorizerOptions copt;
    copt.base_dn = dopt.base_dn;
    copt.node_name = name;
    copt.attributes = dopt.attributes;
    copt.group_classes = dopt.group_classes;
    copt.max_depth = ldap_cfg.max_group_depth();
    copt.max_recipients = ldap_cfg.max_expansion();
    copt.page_size = static_cast<int>(ldap_cfg.page_size());
    copt.window = ldap_cfg.expansion_window();
    copt.member_range = ldap_cfg.member_range();
    categorizer = std::make_unique<bh::directory::Categorizer>(*ldap_client, copt);
    categorize_deliverer = std::make_unique<bh::node::CategorizeDeliverer>(*categorizer, dopt.this_server);
    manager.set_categorizer(categorize_deliverer.get());
    ldap_client->start();
    if (const auto& cc = ldap_cfg.configuration(); cc.domain_controller_size() > 0) {
      bh::directory::LdapClientOptions dco = lo;  // the same credentials and TLS
      dco.uris.assign(cc.domain_controller().begin(), cc.domain_controller().end());
      dc_client = bh::directory::LdapClient::create(ldap_io, std::move(dco));
      topology_reader = std::make_unique<bh::directory::TopologyReader>(
          *dc_client, bh::directory::TopologyReaderOptions{cc.config_dn()});
      topology_poller = bh::directory::TopologyPoller::create(
          ldap_io, *topology_reader, std::chrono::seconds(cc.poll_interval_s()),
          [&topology_mu, &topology, &topology_sink, feed_topology](const bh::directory::Topology& t) {
            std::lock_guard lock(topology_mu);
            topology = t;
            feed_topology(topology_sink, t);
          });
      dc_client->start();
      topology_poller->start();
      bh::log::info("node", name + ": configuration from LDAP " + cc.domain_controller(0) + " under " +
                                cc.config_dn());
    }
    ldap_thread = std::thread([&ldap_io] {
      bh::name_this_thread("bh-ldap");
      ldap_io.run();
    });
    bh::log::info("node", name + ": recipients from LDAP " + ldap_cfg.global_catalog(0) + " under " +
                              ldap_cfg.base_dn());
  }

  // Reports and routing run on the delivery thread: their own randomness.
  bh::SystemRandom delivery_random;
  bh::queue::DsnSetup dsn;
  dsn.reporting_mta = hostname;
  dsn.random = &delivery_random;
  // The file directory answers at once; LDAP answers on its thread, so this waits, at
  // most the lookup timeout plus a margin (nothing then). With LDAP neither the reports
  // nor the journal sinks use it for a local domain (dsn.categorize below).
  auto local_address = [&directory](const std::string& address) {
    auto at = address.rfind('@');
    return at != std::string::npos && directory.is_local_domain(bh::normalize_domain(address.substr(at + 1)));
  };
  auto resolve_now = [local_address, recipients, ldap_timeout](const std::string& address)
      -> std::optional<bh::directory::Resolution> {
    if (!local_address(address)) {
      return std::nullopt;
    }
    auto answer = std::make_shared<std::promise<std::optional<bh::directory::Resolution>>>();
    auto found = answer->get_future();
    recipients->resolve(address, [answer](bh::Result<bh::directory::Resolution> r) {
      answer->set_value(r.ok() && r->kind == bh::directory::RecipientKind::kLocalMailbox
                            ? std::optional<bh::directory::Resolution>(r.value())
                            : std::nullopt);
    });
    if (found.wait_for(ldap_timeout + std::chrono::seconds(1)) != std::future_status::ready) {
      return std::nullopt;
    }
    return found.get();
  };
  dsn.local_mailbox = [resolve_now](const std::string& address) {
    auto r = resolve_now(address);
    return r ? r->mailbox : std::string();
  };
  if (categorize_deliverer) {
    // LDAP: a report to an address of a local domain goes through the categorizer hop, so
    // the delivery thread never waits for the directory, and a report waits there while
    // the directory is down. The categorizer finds the mailbox (its alternate recipient)
    // and, in a cluster, the node it is homed on.
    dsn.categorize = local_address;
  }
  manager.set_dsn(dsn);
  // Event sinks (sinks/, docs/sinks.md): built here, used by the router and the listeners.
  // A journal address like a report's recipient: with LDAP, one of a local domain is
  // categorized with each message; otherwise its mailbox is looked up once, now.
  auto journal_recipient = [&dsn](const std::string& address) { return bh::queue::added_recipient(dsn, address); };
  auto sink_setup = bh::node::build_sinks(cfg.sinks(), hostname, journal_recipient);
  if (!sink_setup.ok()) {
    return fatal(config_path + ": " + sink_setup.error().message);
  }

  // Link state on TCP 691 (link_state): its own thread; see node/linkstate_service.h.
  std::unique_ptr<bh::node::LinkStateService> link_state;
  if (in_cluster) {
    auto s = bh::node::LinkStateService::create(cfg, config_path);
    if (!s.ok()) {
      return fatal(s.error().message);
    }
    link_state = std::move(s.value());
  }
  // The SMTP connectors, and in a cluster one internal connector per other node with an
  // SMTP address (node/cluster_routing.h): how mail reaches that node.
  std::vector<bh::routing::Connector> all_connectors = bh::node::smtp_connectors(cfg);
  if (in_cluster) {
    for (auto& c : bh::node::node_connectors(cfg)) {
      all_connectors.push_back(std::move(c));
    }
  }
  std::shared_ptr<const bh::routing::RouteTable> routes;
  if (auto t = bh::routing::RouteTable::build(std::move(all_connectors)); t.ok()) {
    routes = t.value();
  } else {
    return fatal(config_path + ": routing: " + t.error().message);
  }
  // A hop to another node of the organization, as the queue's next hop.
  auto node_choice = [&routes](const bh::Result<bh::node::NodeHop>& hop) -> bh::Result<bh::queue::RouteChoice> {
    if (!hop.ok()) {
      return hop.error();
    }
    auto conn = routes->find(bh::node::node_connector_name(hop->node));
    if (!conn) {
      return bh::transient_error("4.4.4", "node " + hop->node + " has no SMTP address (link_state.nodes[].smtp)");
    }
    bh::queue::RouteChoice c;
    c.next_hop = bh::routing::RouteTable::next_hop(*conn, "");
    c.connector = conn->name;
    c.max_connections = conn->settings.max_connections;
    return c;
  };
  auto base_router = [&routes, &delivery_random, &link_state, &name, node_choice](std::string_view domain) -> bh::Result<bh::queue::RouteChoice> {
    // Link state first: an unreachable address space waits; a connector this node has as
    // an SMTP connector carries it; a connector elsewhere in the organization is reached
    // through the nodes on the way (node/cluster_routing.h).
    if (auto d = link_state ? link_state->route_domain(domain, delivery_random.next()) : std::nullopt) {
      if (!d->ok()) {
        return d->error();
      }
      if (auto conn = (*d)->local ? routes->find((*d)->connector) : nullptr) {
        bh::queue::RouteChoice c;
        c.next_hop = bh::routing::RouteTable::next_hop(*conn, domain);
        c.connector = conn->name;
        c.domain = std::string(domain);
        c.max_connections = conn->settings.max_connections;
        return c;
      }
      // A connector this node is a source bridgehead of but has no SMTP connector for
      // is left to the static table (sending it to a fellow source would bounce it back).
      if (auto table = link_state->routes();
          table && !bh::node::is_source_bridgehead(*table, (*d)->group, (*d)->connector, name)) {
        return node_choice(bh::node::hop_to_connector(*table, name, (*d)->group, (*d)->connector,
                                                      delivery_random.next()));
      }
    }
    auto r = routes->select(domain, delivery_random);
    if (!r.ok()) {
      return r.error();
    }
    bh::queue::RouteChoice c;
    c.next_hop = r->next_hop;
    c.connector = r->connector->name;
    c.domain = std::string(domain);
    c.max_connections = r->connector->settings.max_connections;
    return c;
  };
  // Mailboxes homed on other nodes, and groups for other expansion servers.
  auto server_router = [&delivery_random, &link_state, &name, node_choice](std::string_view home) -> bh::Result<bh::queue::RouteChoice> {
    auto table = link_state ? link_state->routes() : nullptr;
    if (!table) {
      return bh::transient_error("4.4.4", "no link-state table yet to route to server " + std::string(home));
    }
    return node_choice(bh::node::hop_to_server(*table, name, home, delivery_random.next()));
  };
  // The routing event (sinks.on_route) may override the connector chosen.
  bh::queue::Router router = sink_setup.value()->route(base_router, [&routes] { return routes; });
  // When this node last sent its table to each node of another routing group
  // (X-LINK2STATE with mail, or the periodic sync below).
  struct Link2StateSent {
    std::mutex mu;
    std::map<std::string, std::chrono::steady_clock::time_point> at;  // internal connector -> when
    void note(const std::string& connector) {
      std::lock_guard lock(mu);
      at[connector] = std::chrono::steady_clock::now();
    }
    bool due(const std::string& connector, std::chrono::milliseconds every) {
      std::lock_guard lock(mu);
      auto it = at.find(connector);
      return it == at.end() || std::chrono::steady_clock::now() - it->second >= every;
    }
  } l2s_sent;
  // The relay client: its own io_context and thread, and c-ares when a connector uses MX.
  asio::io_context relay_io(1);
  auto relay_guard = asio::make_work_guard(relay_io);
  bh::SystemRandom dns_random;
  std::unique_ptr<bh::routing::AresMxResolver> resolver;
  std::unique_ptr<bh::smtp::SmtpRelay> relay;
  if (cfg.routing().smtp_connectors_size() > 0 || in_cluster) {
    if (cfg.routing().dns().servers_size() > 0) {
      bh::routing::AresMxResolverOptions ro;
      ro.servers.assign(cfg.routing().dns().servers().begin(), cfg.routing().dns().servers().end());
      ro.timeout = std::chrono::seconds(cfg.routing().dns().timeout_s());
      ro.tries = static_cast<int>(cfg.routing().dns().tries());
      auto r = bh::routing::AresMxResolver::create(ro, dns_random);
      if (!r.ok()) {
        return fatal(config_path + ": routing.dns: " + r.error().message);
      }
      resolver = std::move(r.value());
    }
    bh::smtp::RelayOptions rel;
    rel.helo_name = hostname;
    sink_setup.value()->outbound(rel);  // outbound command events (sinks.on_outbound)
    if (in_cluster) {
      rel.node_id = name;
      rel.organization = cfg.link_state().organization();
      for (const auto& n : cfg.link_state().nodes()) {
        if (n.id() == name && !n.smtp().empty()) {
          if (auto h = bh::routing::parse_smart_host(n.smtp()); h.ok() && h->is_ip) {
            rel.internal_source_ip = h->host;  // the next node sees this node's own address
          }
        }
      }
      // X-LINK2STATE to bridgeheads of other routing groups: our table goes with the mail.
      rel.link2state_for = [&link_state, &cfg, &l2s_sent](const std::string& connector) -> std::string {
        const std::string node = bh::node::node_of_connector(connector);
        for (const auto& n : cfg.link_state().nodes()) {
          if (n.id() == node) {
            if (n.routing_group() == cfg.link_state().routing_group()) {
              return {};
            }
            l2s_sent.note(connector);
            return link_state->link2state_table();
          }
        }
        return {};
      };
      rel.on_link2state_reply = [&link_state](const std::string& connector, std::string payload) {
        link_state->apply_link2state(bh::node::node_of_connector(connector), std::move(payload));
      };
    }
    std::string service = cfg.auth().service().empty() ? "smtp" : cfg.auth().service();
    rel.gssapi = [service](const std::string& host) {
      return bh::auth::make_gssapi_client(service, host);
    };
    rel.tls_ca_file = cfg.routing().tls_ca_file();
    rel.connection_idle = std::chrono::seconds(cfg.routing().connection_idle_s());
    rel.connection_max_messages =
        cfg.routing().connection_idle_s() == 0 ? 1 : cfg.routing().connection_max_messages();
    rel.connection_max_idle_per_target = cfg.routing().connection_max_idle();
    auto r = bh::smtp::SmtpRelay::create(relay_io, [&routes] { return routes; }, resolver.get(), rel);
    if (!r.ok()) {
      return fatal(config_path + ": routing: " + r.error().message);
    }
    relay = std::move(r.value());
  }
  // On-demand relay (RFC 2645): customers' domains wait for their ATRN.
  std::map<std::string, std::string, std::less<>> odmr_owner;  // domain -> user
  for (const auto& cu : cfg.odmr().customers()) {
    for (const auto& d : cu.domains()) {
      odmr_owner[d] = cu.user();
    }
  }
  bh::smtp::OdmrHold odmr_hold(relay_io.get_executor());
  // Link up/down from real traffic: hop failures after the glitch retries, and probes.
  std::unique_ptr<bh::node::LinkStateReporter> ls_reporter;
  bh::queue::RemoteDeliverer* remote = relay.get();
  if (link_state && relay) {
    ls_reporter = std::make_unique<bh::node::LinkStateReporter>(
        *relay, *link_state, routes, relay_io.get_executor(), cfg.queue().glitch_retries() + 1,
        std::chrono::milliseconds(cfg.link_state().probe_ms()), name);
    remote = ls_reporter.get();
  }
  bh::smtp::SplitDeliverer split(&odmr_hold, remote, relay_io.get_executor());
  if (!odmr_owner.empty()) {
    manager.set_remote(&split, [router, &odmr_owner](std::string_view domain)
                                   -> bh::Result<bh::queue::RouteChoice> {
      std::string d = bh::normalize_domain(domain);
      if (odmr_owner.count(d) > 0) {
        bh::queue::RouteChoice c;
        c.next_hop = bh::smtp::odmr_hop(d);
        c.connector = bh::smtp::kOdmrConnector;
        c.domain = d;
        c.max_connections = 1;  // one ATRN connection carries them, one at a time
        return c;
      }
      return router(domain);
    });
  } else if (relay) {
    manager.set_remote(remote, router);
  }
  if (in_cluster && relay) {
    manager.set_server_router(server_router);
  }
  if (link_state) {
    // A new table: mail that had no route, or waits for another node, is routed again.
    link_state->on_routes([&manager] { manager.reroute(); });
  }
  // Local delivery by LMTP (delivery.lmtp) instead of Maildir: on the relay's io_context.
  std::unique_ptr<bh::smtp::LmtpDeliverer> lmtp;
  if (!cfg.delivery().lmtp().empty()) {
    const std::string& to = cfg.delivery().lmtp();
    bh::smtp::LmtpOptions lo;
    if (to.front() == '/') {
      lo.unix_path = to;
    } else {
      const auto ep = bh::node::parse_endpoint(to).value();  // validated by the loader
      lo.ip = ep.address;
      lo.port = ep.port;
    }
    lo.helo_name = hostname;
    lo.connection_idle = std::chrono::seconds(cfg.routing().connection_idle_s());
    lo.connection_max_messages =
        cfg.routing().connection_idle_s() == 0 ? 1 : cfg.routing().connection_max_messages();
    lo.connection_max_idle = cfg.routing().connection_max_idle();
    lmtp = std::make_unique<bh::smtp::LmtpDeliverer>(relay_io, lo);
    manager.set_local_remote(lmtp.get());
    bh::log::info("node", name + ": local mailboxes are delivered by LMTP to " + to);
  }
  // Periodic X-LINK2STATE (link_state.link2state_sync_ms): with each target bridgehead
  // of this node's routing-group connectors that no mail went to for that long.
  asio::steady_timer l2s_timer(relay_io);
  std::function<void()> l2s_tick;
  const std::chrono::milliseconds l2s_every(cfg.link_state().link2state_sync_ms());
  if (link_state && relay && l2s_every.count() > 0) {
    l2s_tick = [&] {
      l2s_timer.expires_after(l2s_every);
      l2s_timer.async_wait([&](boost::system::error_code ec) {
        if (ec) {
          return;
        }
        auto table = link_state->routes();
        const auto* own = table ? table->snapshot().find(table->local_group()) : nullptr;
        static const std::vector<bh::linkstate::Connector> kNone;
        for (const auto& c : own ? own->connectors : kNone) {  // both lvalues: no copy
          const bool source = std::any_of(c.sources.begin(), c.sources.end(),
                                          [&](const auto& x) { return x.up && x.node == name; });
          if (!source || c.target_group.empty()) {
            continue;
          }
          for (const auto& t : c.target_bridgeheads) {
            const std::string conn = bh::node::node_connector_name(t);
            if (routes->find(conn) && l2s_sent.due(conn, l2s_every)) {
              relay->sync_link_state(conn, [](bh::queue::RemoteResult) {});
            }
          }
        }
        l2s_tick();
      });
    };
    l2s_tick();
  }
  // Runs whether or not a connector exists (the LMTP deliverer uses it too).
  std::thread relay_thread([&relay_io] {
    bh::name_this_thread("bh-relay");
    relay_io.run();
  });
  // The categorization events (sinks.before/after_categorize) on the relay's loop.
  if (categorize_deliverer) {
    categorize_deliverer->set_sinks(sink_setup.value()->categorize_events(relay_io.get_executor()));
  }
  // The tracker, and the delivery-result event (sinks.on_delivery) on the relay's loop.
  if (auto* events = sink_setup.value()->queue_events(tracker.get(), relay_io.get_executor())) {
    manager.set_events(events);
  }
  manager.set_delivered_hook([](const std::string& id, const std::string& mailbox, const std::string& path) {
    bh::log::info("deliver", id + ": mailbox " + mailbox + ": " + path);
  });

  // ---- io threads ----
  unsigned workers = cfg.node().workers() != 0 ? cfg.node().workers() : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<asio::io_context*> ctx_ptrs;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (unsigned i = 0; i < workers; ++i) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
    ctx_ptrs.push_back(contexts.back().get());
    guards.push_back(asio::make_work_guard(*contexts.back()));
  }

  bh::smtp::ListenerCounters counters;
  bh::smtp::ConnectionServices svc;
  svc.store = &store;
  svc.directory = recipients;
  svc.clock = &clock;
  // Server TLS (STARTTLS and implicit TLS): the policy is auth/tls_context.h's; SIGHUP
  // reloads the files into the holder.
  std::unique_ptr<bh::auth::TlsContextHolder> tls_holder;
  if (!cfg.tls().cert_file().empty()) {
    auto h = bh::auth::TlsContextHolder::load({cfg.tls().cert_file(), cfg.tls().key_file()});
    if (!h.ok()) {
      return fatal(config_path + ": tls.cert_file/tls.key_file: " + h.error().message);
    }
    tls_holder = std::move(h.value());
    svc.tls = [holder = tls_holder.get()] { return holder->current(); };
    svc.tls_handshake_timeout = std::chrono::seconds(cfg.tls().handshake_timeout_s());
  }
  svc.is_local_domain = [&directory](std::string_view d) { return directory.is_local_domain(d); };
  std::vector<bh::node::Network> relay_networks;
  for (const auto& n : cfg.smtp().relay_networks()) {
    relay_networks.push_back(bh::node::parse_network(n).value());  // validated by the loader
  }
  std::set<std::string, std::less<>> relay_domains(cfg.smtp().relay_domains().begin(),
                                                   cfg.smtp().relay_domains().end());
  for (const auto& [d, user] : odmr_owner) {
    relay_domains.insert(d);  // anyone may send to a customer's domain; it waits for ATRN
  }
  if (!relay_networks.empty() || !relay_domains.empty()) {
    svc.may_relay = [relay_networks, relay_domains](std::string_view ip, std::string_view domain) {
      std::string d = bh::normalize_domain(domain);
      if (relay_domains.count(d) > 0) {
        return true;
      }
      return std::any_of(relay_networks.begin(), relay_networks.end(),
                         [&](const bh::node::Network& n) { return n.contains(ip); });
    };
  }
  // AUTH / X-EXPS (RFC 4954): Cyrus SASL with sasldb, an LDAP bind, or Kerberos.
  std::unique_ptr<asio::thread_pool> auth_pool;
  if (cfg.auth().mechanisms_size() > 0) {
    const auto& a = cfg.auth();

    bh::auth::SaslOptions so;
    so.service = a.service();
    so.hostname = hostname;
    so.realm = a.realm();
    so.mechanisms.assign(a.mechanisms().begin(), a.mechanisms().end());
    so.sasldb_path = a.sasldb();
    if (!a.ldap().uri().empty()) {
      so.checker = std::make_shared<bh::auth::LdapPasswordChecker>(bh::auth::LdapPasswordOptions{
          a.ldap().uri(), a.ldap().user_dn(), std::chrono::milliseconds(a.ldap().timeout_ms())});
    }
    auto sasl = bh::auth::SaslService::create(std::move(so));
    if (!sasl.ok()) {
      return fatal(config_path + ": auth: " + sasl.error().message);
    }
    svc.auth = std::make_shared<bh::auth::SaslAuthBackend>(
        sasl.value(), std::vector<std::string>(a.peer_servers().begin(), a.peer_servers().end()));
    auth_pool = std::make_unique<asio::thread_pool>(2);
    svc.auth_pool = auth_pool.get();
    svc.auth_limiter =
        std::make_shared<bh::smtp::AuthFailureLimiter>(clock, a.max_failures_per_ip_per_minute());
    svc.auth_failure_delay = std::chrono::milliseconds(a.failure_delay_ms());
    svc.session.auth_mechanisms.assign(a.mechanisms().begin(), a.mechanisms().end());
    svc.session.auth_requires_tls = !a.plaintext_without_tls();
    svc.session.x_exps = a.x_exps();
    svc.session.max_auth_failures = a.max_failures_per_session();
  }
  if (!odmr_owner.empty()) {
    svc.session.atrn = true;
    svc.session.turn = cfg.odmr().turn();
    svc.odmr = &odmr_hold;
    svc.atrn_idle = std::chrono::milliseconds(cfg.odmr().idle_ms());
    svc.atrn_check = [&odmr_owner, &manager](const bh::smtp::CheckAtrn& c) {
      bh::smtp::AtrnVerdict v;
      std::vector<std::string> want = c.domains;
      if (want.empty()) {
        for (const auto& [d, user] : odmr_owner) {
          if (user == c.user) {
            want.push_back(d);
          }
        }
      }
      std::set<std::string> waiting;
      for (const auto& h : manager.hops()) {
        if (h.messages > 0 && h.next_hop.rfind("odmr:", 0) == 0) {
          waiting.insert(h.next_hop.substr(5));
        }
      }
      v.kind = bh::smtp::AtrnVerdict::Kind::kNoMail;
      for (const auto& d : want) {
        auto it = odmr_owner.find(d);
        if (it == odmr_owner.end() || it->second != c.user) {
          v.kind = bh::smtp::AtrnVerdict::Kind::kForbidden;  // RFC 2645 §4.1: not yours
          v.denied = d;
          v.domains.clear();
          return v;
        }
        if (waiting.count(d) > 0) {
          v.kind = bh::smtp::AtrnVerdict::Kind::kTurn;
          v.domains.push_back(d);
        }
      }
      return v;
    };
    svc.atrn_release = [&manager](const std::vector<std::string>& domains) {
      std::size_t n = 0;
      for (const auto& d : domains) {
        n += manager.retry_hop(bh::smtp::odmr_hop(d));
      }
      return n;
    };
  }
  // ETRN (RFC 1985): queue runs for the domains we hold mail for (relay domains and the
  // on-demand customers' domains) and for the next hops of our connectors.
  if (cfg.smtp().etrn()) {
    std::set<std::string> connectors;
    for (const auto& sc : cfg.routing().smtp_connectors()) {
      connectors.insert(bh::ascii_lower(sc.name()));
    }
    manager.set_etrn_policy([relay_domains, connectors](const bh::queue::EtrnRequest& r) {
      using Kind = bh::queue::EtrnRequest::Kind;
      if (r.kind == Kind::kQueue) {
        // "#smarthost:<connector>", "#mx:<connector>:<domain>", "#odmr:<domain>"
        auto colon = r.name.find(':');
        std::string rest = colon == std::string::npos ? "" : r.name.substr(colon + 1);
        std::string conn = rest.substr(0, rest.find(':'));
        return connectors.count(conn) > 0 || r.name.rfind("odmr:", 0) == 0;
      }
      for (const auto& d : relay_domains) {
        if (d == r.name || (r.kind == Kind::kSubdomains && d.size() > r.name.size() &&
                            d.compare(d.size() - r.name.size() - 1, std::string::npos,
                                      "." + r.name) == 0)) {
          return true;
        }
      }
      return false;
    });
    svc.session.etrn = true;
    svc.etrn = [&manager](const bh::queue::EtrnRequest& r) { return manager.etrn(r); };
    svc.etrn_limiter = std::make_shared<bh::smtp::EtrnRateLimiter>(
        clock, bh::smtp::EtrnRateLimits{cfg.smtp().etrn_per_minute(), std::chrono::seconds(60), 4096});
  }
  if (link_state) {
    // X-LINK2STATE from a bridgehead of another routing group (peer sessions only).
    svc.on_link_state = [ls = link_state.get()](const std::string& peer, std::string payload,
                                                std::function<void(std::optional<std::string>)> done) {
      ls->exchange_link2state(peer, std::move(payload), std::move(done));
    };
  }
  svc.on_queued = [&manager](const std::string& id) { manager.enqueue(id); };
  svc.on_held = bh::node::SinkSetup::holder(store, manager, tracking.get());
  // Event sinks (sinks/, docs/sinks.md): the arrival chain decides before each 250.
  svc.filter = sink_setup.value()->filter();
  svc.held_bytes = std::make_shared<std::atomic<std::uint64_t>>(0);
  svc.held_limit = std::uint64_t{cfg.sinks().max_held_mb()} << 20;
  svc.session.protocol_hooks = sink_setup.value()->hooks();
  auto& s = svc.session;
  const auto& c = cfg.smtp();
  const auto& t = c.timeouts();
  const auto& x = c.extensions();
  s.hostname = hostname;
  s.max_message_size = c.max_message_size();
  s.max_recipients = c.max_recipients();
  s.max_command_line = c.max_command_line();
  s.max_header_bytes = c.max_header_bytes();
  s.max_hops = c.max_hops();
  if (in_cluster) {
    s.node_id = cfg.node().name();  // XEXCH50 hop lists naming this node are loops
  }
  s.starttls = tls_holder != nullptr;
  s.max_errors = c.max_errors();
  s.max_junk_commands = c.max_junk_commands();
  s.vrfy = c.vrfy();
  s.pipelining = x.pipelining();
  s.size = x.size();
  s.eightbitmime = x.eightbitmime();
  s.binarymime = x.binarymime();
  s.chunking = x.chunking();
  s.dsn = x.dsn();
  s.enhancedstatuscodes = x.enhancedstatuscodes();
  s.smtputf8 = x.smtputf8();
  using std::chrono::seconds;
  s.greeting_timeout = seconds(t.greeting_s());
  s.mail_timeout = seconds(t.mail_s());
  s.rcpt_timeout = seconds(t.rcpt_s());
  s.data_init_timeout = seconds(t.data_init_s());
  s.data_block_timeout = seconds(t.data_block_s());
  s.data_term_timeout = seconds(t.data_term_s());
  svc.write_timeout = seconds(t.write_s());
  svc.pregreet_wait = std::chrono::milliseconds(c.pregreet_wait_ms());
  svc.max_sessions = c.max_sessions();
  svc.max_sessions_per_ip = c.max_sessions_per_ip();
  for (const auto& n : cfg.link_state().nodes()) {
    if (auto h = bh::routing::parse_smart_host(n.smtp()); !n.smtp().empty() && h.ok() && h->is_ip &&
                                                          n.id() != cfg.node().name()) {
      svc.rate_exempt.insert(h->host);  // the other nodes open one connection per message
    }
  }
  if (c.max_connections_per_ip_per_minute() > 0) {  // one bucket per IP for all listeners
    svc.rate_limiter = std::make_shared<bh::smtp::ConnectionRateLimiter>(
        c.max_connections_per_ip_per_minute(), clock);
  }
  svc.tarpit_after_errors = c.tarpit_after_errors();
  svc.tarpit_delay = std::chrono::milliseconds(c.tarpit_delay_ms());
  svc.counters = &counters;

  std::vector<std::unique_ptr<bh::smtp::Listener>> listeners;
  for (const auto& text : cfg.listen().smtp()) {
    const auto ep = bh::node::parse_endpoint(text).value();  // validated by the loader
    asio::ip::tcp::endpoint tep(asio::ip::make_address(ep.address), ep.port);
    auto l = std::make_unique<bh::smtp::Listener>(ctx_ptrs, tep, svc);
    if (auto ec = l->open()) {
      return fatal(config_path + ": listen.smtp " + ep.str() + ": " + ec.message());
    }
    listeners.push_back(std::move(l));
  }
  // ODMR (RFC 2645, port 366): customers log in and take their mail with ATRN.
  for (const auto& text : cfg.listen().odmr()) {
    const auto ep = bh::node::parse_endpoint(text).value();  // validated by the loader
    asio::ip::tcp::endpoint tep(asio::ip::make_address(ep.address), ep.port);
    bh::smtp::ConnectionServices odmr_svc = svc;
    odmr_svc.session.require_auth = true;
    auto l = std::make_unique<bh::smtp::Listener>(ctx_ptrs, tep, odmr_svc);
    if (auto ec = l->open()) {
      return fatal(config_path + ": listen.odmr " + ep.str() + ": " + ec.message());
    }
    listeners.push_back(std::move(l));
  }
  // Submission (RFC 6409): the same service, but MAIL only after AUTH.
  bh::smtp::ConnectionServices submission_svc = svc;
  submission_svc.session.require_auth = true;
  for (const auto& text : cfg.listen().submission()) {
    const auto ep = bh::node::parse_endpoint(text).value();  // validated by the loader
    asio::ip::tcp::endpoint tep(asio::ip::make_address(ep.address), ep.port);
    auto l = std::make_unique<bh::smtp::Listener>(ctx_ptrs, tep, submission_svc);
    if (auto ec = l->open()) {
      return fatal(config_path + ": listen.submission " + ep.str() + ": " + ec.message());
    }
    listeners.push_back(std::move(l));
  }
  // RFC 8314 implicit TLS: the same services, the handshake first (the loader made sure
  // tls.cert_file is set).
  std::vector<std::unique_ptr<bh::smtp::Listener>> tls_listeners;
  bh::smtp::ConnectionServices tls_svc = svc;
  tls_svc.implicit_tls = true;
  for (const auto& text : cfg.listen().smtps()) {
    const auto ep = bh::node::parse_endpoint(text).value();  // validated by the loader
    asio::ip::tcp::endpoint tep(asio::ip::make_address(ep.address), ep.port);
    auto l = std::make_unique<bh::smtp::Listener>(ctx_ptrs, tep, tls_svc);
    if (auto ec = l->open()) {
      return fatal(config_path + ": listen.smtps " + ep.str() + ": " + ec.message());
    }
    tls_listeners.push_back(std::move(l));
  }

  std::unique_ptr<bh::admin::AdminServer> admin;
  std::optional<bh::node::Endpoint> admin_ep;
  if (!cfg.listen().admin().empty()) {
    admin_ep = bh::node::parse_endpoint(cfg.listen().admin()).value();
  }
  if (admin_ep) {
    std::string token_path = bh::node::admin_token_path(cfg);
    auto token = bh::admin::load_or_create_token(token_path);
    if (!token.ok()) {
      return fatal(token.error().message);
    }
    auto start_time = clock.now();
    auto directory_status = [&]() -> json {
      if (!ldap_directory) {
        return json{{"kind", "file"}, {"mailboxes", directory.size()}};
      }
      auto d = ldap_directory->counters();
      auto l = ldap_client->counters();
      json j{{"kind", "ldap"}, {"lookups", d.lookups}, {"cache_hits", d.cache_hits},
                  {"searches", d.searches}, {"found", d.found}, {"not_found", d.not_found},
                  {"ambiguous", d.ambiguous}, {"errors", d.errors},
                  {"cache_size", d.cache.size}, {"cache_evictions", d.cache.evictions},
                  {"ldap_searches", l.searches}, {"ldap_completed", l.completed},
                  {"ldap_entries", l.entries}, {"ldap_failed", l.failed},
                  {"ldap_timeouts", l.timeouts}, {"ldap_rejected_busy", l.rejected_busy},
                  {"ldap_connects", l.connects}, {"ldap_connect_failures", l.connect_failures},
                  {"ldap_disconnects", l.disconnects}, {"ldap_hung", l.hung},
                  {"ldap_failovers", l.failovers}, {"ldap_in_flight", l.in_flight},
                  {"ldap_max_in_flight", l.max_in_flight}, {"ldap_connected_uri", l.connected_uri},
                  {"ldap_connections", ldap_client->size()}, {"ldap_connected", ldap_client->connected()}};
      if (topology_poller) {
        std::lock_guard lock(topology_mu);
        j["topology_reads"] = topology_poller->reads();
        j["topology_changes"] = topology_poller->changes();
        j["topology_digest"] = topology ? topology->digest : "";
        j["routing_groups"] = topology ? topology->groups.size() : 0;
        j["servers"] = topology ? topology->servers.size() : 0;
        j["connectors"] = 0;
        if (topology) {
          std::size_t n = 0;
          for (const auto& g : topology->groups) {
            n += g.connectors.size();
          }
          j["connectors"] = n;
          j["topology_warnings"] = topology->warnings.size();
        }
      }
      return j;
    };
    bh::admin::AdminHandlers h;
    h.status = [&, start_time, directory_status] {  // a copy: the lambda is local to this block
      auto qc = manager.counters();
      auto sc = store.counters();
      json listen = json::array(), listen_tls = json::array();
      for (const auto& l : listeners) {
        auto e = l->local_endpoint();
        listen.push_back(e.address().to_string() + ":" + std::to_string(e.port()));
      }
      for (const auto& l : tls_listeners) {
        auto e = l->local_endpoint();
        listen_tls.push_back(e.address().to_string() + ":" + std::to_string(e.port()));
      }
      auto tls_reloads =
          tls_holder ? tls_holder->counters() : bh::auth::TlsContextHolder::Counters{};
      return json{
          {"node", {{"name", name}, {"hostname", hostname}, {"version", "0.1.0"},
                    {"data_dir", data_dir},
                    {"uptime_s", std::chrono::duration_cast<seconds>(clock.now() - start_time).count()},
                    {"smtp_listen", listen}, {"smtps_listen", listen_tls}}},
          {"sessions", {{"active", counters.active.load()}, {"accepted", counters.accepted.load()},
                        {"rejected_per_ip", counters.rejected_per_ip.load()},
                        {"rejected_total", counters.rejected_total.load()},
                        {"timeouts", counters.timeouts.load()},
                        {"tls_sessions", counters.tls_sessions.load()},
                        {"tls_failures", counters.tls_failures.load()},
                        {"rejected_rate", counters.rejected_rate.load()},
                        {"tarpit_delays", counters.tarpit_delays.load()},
                        {"auth_successes", counters.auth_successes.load()},
                        {"auth_failures", counters.auth_failures.load()},
                        {"auth_refused", counters.auth_refused.load()},
                        {"atrn_turns", counters.atrn_turns.load()},
                        {"etrn_runs", counters.etrn_runs.load()},
                        {"tls_reloads", tls_reloads.reloads},
                        {"tls_reload_failures", tls_reloads.reload_failures}}},
          {"queue", {{"in_queue", qc.in_queue}, {"received", counters.messages.load()},
                     {"commit_failures", counters.commit_failures.load()},
                     {"delivered_messages", qc.delivered_messages},
                     {"delivered_copies", qc.delivered_copies}, {"batches", qc.batches}, {"deferred", qc.deferred},
                     {"failed_recipients", qc.failed_recipients},
                     {"relayed_recipients", qc.relayed_recipients}, {"remote_jobs", qc.remote_jobs},
                     {"expired", qc.expired}, {"dsns", qc.dsns}, {"deleted", qc.deleted}}},
          {"tracking", tracking ? json{{"enabled", true}, {"written", tracking->counters().written},
                                       {"failures", tracking->counters().failures},
                                       {"rotations", tracking->counters().rotations}}
                                 : json{{"enabled", false}}},
          {"directory", directory_status()},
          {"sinks", sink_setup.value()->status()},
          {"store", {{"commits", sc.commits}, {"batches", sc.batches}, {"syncs", sc.syncs},
                     {"failures", sc.failures},
                     {"recovered", recovered.ready.size()},
                     {"quarantined", recovered.quarantined}}},
          {"relay", relay ? [&] {
             const auto& rc = relay->counters();
             json j = outbound_json(rc, relay->held_connections());
             j.update(json{{"attempts", rc.attempts.load()}, {"tls_sessions", rc.tls_sessions.load()},
                           {"tls_resumed", rc.tls_resumed.load()}});
             return j;
           }() : json{{"enabled", false}}},
          {"lmtp", lmtp ? outbound_json(lmtp->counters(), lmtp->held_connections())
                        : json{{"enabled", false}}},
      };
    };
    h.queue_list = [&manager, &clock](const bh::admin::QueueFilter& f) {
      auto lower = [](std::string v) {
        std::transform(v.begin(), v.end(), v.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        return v;
      };
      const auto now = std::chrono::duration_cast<std::chrono::seconds>(clock.now().time_since_epoch()).count();
      json arr = json::array();
      for (const auto& m : manager.list()) {
        if (!f.sender.empty() && lower(m.sender) != lower(f.sender == "<>" ? "" : f.sender)) {
          continue;
        }
        if (!f.hop.empty() && std::find(m.hops.begin(), m.hops.end(), f.hop) == m.hops.end()) {
          continue;
        }
        if (f.older_than_s > 0 && now - m.received_unix < f.older_than_s) {
          continue;
        }
        if (!f.recipient.empty()) {
          auto d = manager.show(m.id);
          bool hit = d && std::any_of(d->envelope.recipients.begin(), d->envelope.recipients.end(),
                                      [&](const bh::queue::Recipient& r) { return lower(r.address) == lower(f.recipient); });
          if (!hit) {
            continue;
          }
        }
        arr.push_back(summary_json(m));
      }
      return json{{"messages", arr}};
    };
    h.queues = [&manager] {
      json arr = json::array();
      for (const auto& q : manager.hops()) {
        arr.push_back({{"next_hop", q.next_hop}, {"state", q.state}, {"messages", q.messages},
                       {"in_flight", q.in_flight}, {"oldest", q.oldest_unix}, {"last_error", q.last_error},
                       {"next_retry", q.next_retry_unix}, {"failures", q.failures}});
      }
      return json{{"queues", arr}};
    };
    h.queue_action = [&manager](const std::string& id, const std::string& verb) -> bh::Result<json> {
      using A = bh::queue::QueueManager::Action;
      A a = verb == "retry" ? A::kRetry : verb == "freeze" ? A::kFreeze : verb == "thaw" ? A::kThaw
            : verb == "delete-ndr" ? A::kDeleteWithReport : A::kDelete;
      auto r = manager.act(id, a);
      if (!r.ok()) {
        return r.error();
      }
      return json{{"id", id}, {"done", verb}};
    };
    h.hop_retry = [&manager](const std::string& hop) {
      return json{{"next_hop", hop}, {"retried", manager.retry_hop(hop)}};
    };
    h.hop_freeze = [&manager](const std::string& hop, bool frozen) -> bh::Result<json> {
      if (auto r = manager.freeze_hop(hop, frozen); !r.ok()) {
        return r.error();
      }
      return json{{"next_hop", hop}, {"done", frozen ? "freeze" : "thaw"}};
    };
    h.queue_show = [&manager](const std::string& id) -> std::optional<json> {
      auto d = manager.show(id);
      if (!d) {
        return std::nullopt;
      }
      return detail_json(*d);
    };
    // bhctl resolve: the categorizer's tree on a directory node; the file directory's
    // answer otherwise. Waits on the admin thread, at most the lookup timeout + 1 s.
    h.resolve = [&categorizer, recipients, ldap_timeout, &topology_mu,
                 &topology](const std::string& address) -> bh::Result<json> {
      if (address.size() > 320 || address.find_first_of(std::string("\r\n\0", 3)) != std::string::npos ||
          address.find('@') == std::string::npos) {
        return bh::permanent_error("5.1.3", "not an address: " + address);
      }
      json out = {{"address", address}, {"recipients", json::array()}, {"trace", json::array()}};
      if (!categorizer) {
        auto answer = std::make_shared<std::promise<bh::Result<bh::directory::Resolution>>>();
        auto f = answer->get_future();
        recipients->resolve(address, [answer](bh::Result<bh::directory::Resolution> r) { answer->set_value(r); });
        if (f.wait_for(ldap_timeout + std::chrono::seconds(1)) != std::future_status::ready) {
          return bh::transient_error("4.4.3", "the directory did not answer in time");
        }
        auto r = f.get();
        if (!r.ok()) {
          return r.error();
        }
        out["trace"].push_back(address);
        if (r->kind == bh::directory::RecipientKind::kLocalMailbox) {
          out["trace"].push_back("  file directory: mailbox " + r->mailbox);
          out["recipients"].push_back({{"address", address}, {"mailbox", r->mailbox}});
        } else {
          out["trace"].push_back("  file directory: no such mailbox");
          out["error"] = "5.1.1 no such recipient";
        }
        return out;
      }
      auto answer = std::make_shared<std::promise<bh::directory::CategorizeOutcome>>();
      auto f = answer->get_future();
      categorizer->categorize(address, [answer](bh::directory::CategorizeOutcome o) { answer->set_value(std::move(o)); });
      if (f.wait_for(ldap_timeout * 4 + std::chrono::seconds(1)) != std::future_status::ready) {
        return bh::transient_error("4.4.3", "the directory did not answer in time");
      }
      auto o = f.get();
      if (o.error && o.error->transient()) {
        return *o.error;
      }
      // The home server's routing group, from the configuration role when there is one.
      auto group_of = [&](const std::string& server) -> std::string {
        std::lock_guard lock(topology_mu);
        if (!topology || server.empty()) {
          return "";
        }
        for (const auto& sv : topology->servers) {
          if (bh::ascii_lower(sv.name) == bh::ascii_lower(server)) {
            return sv.routing_group;
          }
        }
        return "?";  // a home server the configuration does not know
      };
      for (const auto& r : o.recipients) {
        out["recipients"].push_back({{"address", r.address},
                                     {"mailbox", r.mailbox},
                                     {"home_server", r.home_server},
                                     {"routing_group", group_of(r.home_server.empty() ? r.expansion_server
                                                                                       : r.home_server)},
                                     {"expansion_server", r.expansion_server}});
      }
      out["trace"] = o.trace;
      if (o.error) {
        out["error"] = o.error->enhanced + " " + o.error->message;
      }
      return out;
    };
    if (tracking) {
      h.track = [&tracking_dir, &tracking](const bh::admin::TrackParams& p) {
        tracking->flush();  // what is still buffered is found too
        bh::queue::TrackingQuery q;
        q.message_id = p.message_id;
        q.sender = p.sender;
        q.recipient = p.recipient;
        q.queue_id = p.queue_id;
        if (p.since_unix) {
          q.since = bh::Clock::time_point{std::chrono::seconds(*p.since_unix)};
        }
        if (p.until_unix) {
          // Inclusive to the end of that second.
          q.until = bh::Clock::time_point{std::chrono::seconds(*p.until_unix) + std::chrono::milliseconds(999)};
        }
        q.limit = p.limit;
        auto r = bh::queue::search_tracking(tracking_dir, q);
        json events = json::array();
        for (const auto& e : r.events) {
          events.push_back(tracking_json(e));
        }
        return json{{"events", events}, {"truncated", r.truncated}, {"skipped_lines", r.skipped_lines},
                    {"files", r.files}};
      };
    }
    if (link_state) {
      h.linkstate = [ls = link_state.get()](const std::string& view) {
        return view == "lsdb" ? ls->lsdb_json() : view == "peers" ? ls->peers_json() : ls->routes_json();
      };
      h.linkstate_report = [ls = link_state.get()](const std::string& connector, bool up) {
        return ls->report(connector, up);
      };
    }
    asio::ip::tcp::endpoint aep(asio::ip::make_address(admin_ep->address), admin_ep->port);
    admin = std::make_unique<bh::admin::AdminServer>(*ctx_ptrs[0], aep, *token, std::move(h));
    if (auto ec = admin->open()) {
      return fatal(config_path + ": listen.admin " + admin_ep->str() + ": " + ec.message());
    }
    admin->start();
  }

  if (link_state) {
    if (auto r = link_state->start(); !r.ok()) {
      return fatal(r.error().message);
    }
  }
  if (link_state) {
    std::lock_guard lock(topology_mu);
    topology_sink = link_state.get();
    if (topology) {
      feed_topology(topology_sink, *topology);  // what the directory said before we ran
    }
  }

  manager.start(recovered.ready);
  for (auto& l : listeners) {
    l->start();
    auto e = l->local_endpoint();
    bh::log::info("node", name + ": SMTP listening on " + e.address().to_string() + ":" +
                              std::to_string(e.port()));
  }
  for (auto& l : tls_listeners) {
    l->start();
    auto e = l->local_endpoint();
    bh::log::info("node", name + ": SMTP over TLS listening on " + e.address().to_string() + ":" +
                              std::to_string(e.port()));
  }
  if (admin) {
    bh::log::info("node", name + ": admin listening on " + admin_ep->str());
  }
  for (const auto& m : mailbox_list) {
    directory.resolve(m, [&](bh::Result<bh::directory::Resolution> r) {
      if (r.ok() && !lmtp) {
        bh::log::info("node", "mail for " + m + " lands in " + mailboxes + "/" + r->mailbox + "/new/");
      }
    });
  }

  // Held so that it can go before its io_context does (its destructor deregisters from the
  // context's signal service: after contexts.clear() that was a use after free).
  std::optional<asio::signal_set> signal_holder(std::in_place, *ctx_ptrs[0], SIGTERM, SIGINT, SIGHUP);
  asio::signal_set& signals = *signal_holder;
  // A second set for the stop signals on a context of its own, which runs only once the
  // node is stopping (below): until then it only counts them.
  std::atomic<bool> hurry{false};
  asio::io_context stop_io;
  std::optional<asio::signal_set> stop_signals(std::in_place, stop_io, SIGTERM, SIGINT);
  int stop_signals_seen = 0;  // on stop_io's thread only
  std::function<void(boost::system::error_code, int)> on_stop_signal =
      [&](boost::system::error_code ec, int sig) {
        if (ec) {
          return;
        }
        if (++stop_signals_seen == 1) {  // the signal that started the stop
          stop_signals->async_wait(on_stop_signal);
          return;
        }
        bh::log::info("node", "second signal " + std::to_string(sig) +
                                  ": not waiting any longer for deliveries in flight; they stay queued");
        hurry = true;
        manager.cut_drain();
      };
  stop_signals->async_wait(on_stop_signal);
  std::function<void(boost::system::error_code, int)> on_signal =
      [&](boost::system::error_code ec, int sig) {
        if (ec) {
          return;
        }
        if (sig == SIGHUP) {
          // Only the TLS certificates and keys reload (SMTP's, and link state's on 691);
          // the rest of the config needs a restart.
          if (tls_holder) {
            if (auto r = tls_holder->reload(); r.ok()) {
              bh::log::info("node", "SIGHUP: reloaded tls.cert_file " + cfg.tls().cert_file() +
                                        " and tls.key_file " + cfg.tls().key_file());
            } else {
              bh::log::error("node",
                             "SIGHUP: TLS reload failed, keeping the current certificate: " +
                                 r.error().message);
            }
          }
          if (link_state) {
            if (auto r = link_state->reload_tls(); r.ok()) {
              bh::log::info("node", "SIGHUP: reloaded link_state.tls (ca_file, cert_file, key_file)");
            } else {
              bh::log::error("node", "SIGHUP: link_state.tls reload failed, keeping the current files: " +
                                         r.error().message);
            }
          }
          if (!tls_holder && !link_state) {
            bh::log::info("node", "SIGHUP: nothing to reload (no tls.cert_file, no link_state)");
          }
          signals.async_wait(on_signal);
          return;
        }
        bh::log::info("node", "stopping on signal " + std::to_string(sig));
        for (auto& l : listeners) {
          l->stop();
        }
        for (auto& l : tls_listeners) {
          l->stop();
        }
        if (admin) {
          admin->stop();
        }
        for (auto& ctx : contexts) {
          ctx->stop();
        }
      };
  signals.async_wait(on_signal);

  std::vector<std::thread> threads;
  for (unsigned i = 1; i < workers; ++i) {
    threads.emplace_back([ctx = ctx_ptrs[i], i] {
      bh::name_this_thread("bh-io-" + std::to_string(i));
      ctx->run();
    });
  }
  ctx_ptrs[0]->run();  // io context 0 on the main thread, which keeps the process name
  for (auto& ctx : contexts) {
    ctx->stop();
  }
  for (auto& th : threads) {
    th.join();
  }
  // The second SIGTERM/SIGINT stops the waits below: the deliveries in flight and the
  // QUITs of held connections. What is still out stays queued, as after
  // queue.stop_drain_s. `stop_signals` exists since the start, so it has counted every
  // stop signal, also one that came while the io contexts were ending; it runs only now,
  // and the first signal it reports is the one that started the stop.
  std::thread stop_thread([&] { stop_io.run(); });
  // No session is left. No new delivery starts; the ones in flight are answered and
  // recorded (up to queue.stop_drain_s) while the store, the relay, the LDAP client and
  // the sinks still run.
  if (!manager.drain(std::chrono::seconds(cfg.queue().stop_drain_s()))) {
    bh::log::info("node", "deliveries still in flight after queue.stop_drain_s or a second signal; "
                          "they stay queued");
  }
  ldap_shutdown.now();  // no session asks the directory any more
  sink_setup.value()->shutdown();  // plug-in calls in flight finish while their loops exist
  // Order matters: the committer may still post answers into the (stopped) contexts,
  // so it ends first; then the sockets and handlers go with their contexts, while the
  // counters and the store they point at are still alive.
  store.close();
  manager.stop();
  // No job starts any more: the connections held open for the next message (to next hops
  // and to the LMTP server) say QUIT, and get up to kQuitWait for the reply before their
  // io_context stops. Sessions still carrying a message are cut as before; that message
  // stays queued.
  if (relay) {
    relay->quit_held();
  }
  if (lmtp) {
    lmtp->quit_held();
  }
  constexpr auto kQuitWait = std::chrono::seconds(2);
  const auto quit_until = std::chrono::steady_clock::now() + kQuitWait;
  auto closing = [&] { return (relay ? relay->closing_held() : 0) + (lmtp ? lmtp->closing_held() : 0); };
  while (closing() > 0 && !hurry && std::chrono::steady_clock::now() < quit_until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (std::size_t left = closing(); left > 0) {
    bh::log::info("node", std::to_string(left) + " held connection(s) did not finish their QUIT in time; closed");
  }
  stop_io.stop();
  stop_thread.join();
  stop_signals.reset();
  relay_guard.reset();
  relay_io.stop();
  relay_thread.join();
  ls_reporter.reset();
  {
    std::lock_guard lock(topology_mu);
    topology_sink = nullptr;  // the poller stops feeding it
  }
  link_state.reset();  // its thread ends; no admin request nor router reads it any more
  relay.reset();
  lmtp.reset();
  resolver.reset();
  admin.reset();
  listeners.clear();
  tls_listeners.clear();
  signal_holder.reset();
  guards.clear();
  contexts.clear();
  bh::log::info("node", "stopped");
  return 0;
}
