#include "node/sinks_setup.h"

#include <map>

#include "common/log.h"
#include "common/text.h"
#include "queue/delivery_state.h"
#include "sinks/builtin_sinks.h"
#include "sinks/milter_sink.h"
#include "sinks/plugin_sink.h"
#include "sinks/program_sink.h"

namespace bh::node {

std::string sanitize_reason(std::string_view reason) {
  std::string out;
  for (char c : reason.substr(0, 200)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;  // one header line: no CR, LF, NUL
  }
  return out.empty() ? "quarantined" : out;
}

SinkSetup::Held SinkSetup::holder(queue::FsMessageStore& store, queue::QueueManager& manager,
                                  queue::TrackingLog* tracking) {
  return [&store, &manager, tracking](const std::string& id, const queue::Envelope& env,
                                      const std::string& reason) {
    queue::DeliveryState st;
    st.frozen = true;
    if (auto r = store.save_state(id, st); !r.ok()) {
      // Still frozen in this run; after a restart it would not be.
      log::error("sinks", id + ": cannot record the quarantine hold: " + r.error().message);
    }
    manager.enqueue_frozen(id);
    log::info("sinks", id + ": quarantined (" + reason + "), frozen until an operator thaws it");
    if (tracking != nullptr) {
      for (const auto& rc : env.recipients) {
        queue::TrackingEvent t;
        t.event = queue::TrackingEventType::kQuarantined;
        t.queue_id = id;
        t.sender = env.sender;
        t.recipient = rc.address;
        t.reply = reason;
        t.size = env.body_size;
        t.client_address = env.client_address;
        tracking->record(std::move(t));
      }
      tracking->flush();
    }
  };
}

void SinkSetup::shutdown() {
  if (plugin_pool) {
    plugin_pool->join();
  }
}

SinkSetup::~SinkSetup() { shutdown(); }

smtp::MessageFilter SinkSetup::filter() const {
  if (!on_arrival || on_arrival->empty()) {
    return nullptr;
  }
  std::shared_ptr<const sinks::MessageChain> chain = on_arrival;
  // The executor is the connection's: the chain's timers and the milter sockets run there.
  return [chain](queue::Envelope env, std::string message,
                 std::function<void(smtp::MessageFilterResult)> done,
                 boost::asio::any_io_executor ex) {
    auto ev = std::make_shared<sinks::MessageEvent>();
    ev->envelope = std::move(env);
    ev->message = std::move(message);
    chain->run(ev, ex, [done = std::move(done)](sinks::ChainOutcome o) {
      smtp::MessageFilterResult r;
      using K = sinks::Verdict::Kind;
      if (o.verdict.kind == K::kReject) {
        r.kind = smtp::MessageFilterResult::Kind::kReject;
        r.error = std::move(o.verdict.error);
      } else if (o.verdict.kind == K::kDiscard) {
        r.kind = smtp::MessageFilterResult::Kind::kDiscard;
      } else {
        if (!o.event->quarantine.empty()) {
          // Held: spooled frozen (SinkSetup::holder), marked with the reason (docs/sinks.md).
          sinks::MessageEvent& e = *o.event;
          r.hold = sanitize_reason(e.quarantine);
          e.message.insert(0, "X-Bridgehead-Quarantine: " + r.hold + "\r\n");
        }
        r.envelope = std::move(o.event->envelope);
        r.message = std::move(o.event->message);
      }
      done(std::move(r));
    });
  };
}

namespace {

// The SMTP session's view of the on_command chain.
class Hooks : public smtp::ProtocolHooks {
 public:
  explicit Hooks(std::shared_ptr<const sinks::ProtocolChain> chain) : chain_(std::move(chain)) {}
  std::optional<std::string> on_command(const smtp::PeerInfo& peer, std::string_view verb,
                                        std::string_view argument) override {
    return chain_->on_command({peer.address, verb, argument});
  }
  std::optional<std::string> on_reply(const smtp::PeerInfo& peer, std::string_view verb,
                                      std::string_view reply) override {
    return chain_->on_reply({peer.address, verb, reply});
  }

 private:
  std::shared_ptr<const sinks::ProtocolChain> chain_;
};

nlohmann::json counters_json(const std::string& name, const char* event,
                             const sinks::SinkCounters& c) {
  return {{"name", name},
          {"event", event},
          {"calls", c.calls.load()},
          {"continued", c.continued.load()},
          {"rejected", c.rejected.load()},
          {"stopped", c.stopped.load()},
          {"discarded", c.discarded.load()},
          {"failures", c.failures.load()},
          {"timeouts", c.timeouts.load()}};
}

}  // namespace

std::shared_ptr<smtp::ProtocolHooks> SinkSetup::hooks() const {
  if (!on_command || on_command->empty()) {
    return nullptr;
  }
  return std::make_shared<Hooks>(on_command);
}

nlohmann::json SinkSetup::status() const {
  nlohmann::json arr = nlohmann::json::array();
  if (on_arrival) {
    for (const auto& e : on_arrival->entries()) {
      arr.push_back(counters_json(e.name, "on_arrival", *e.counters));
    }
  }
  if (on_command) {
    for (const auto& e : on_command->entries()) {
      arr.push_back(counters_json(e.name, "on_command", *e.counters));
    }
  }
  for (const auto& [chain, event] : {std::pair{before_categorize.get(), "before_categorize"},
                                     std::pair{after_categorize.get(), "after_categorize"}}) {
    if (chain != nullptr) {
      for (const auto& e : chain->entries()) {
        arr.push_back(counters_json(e.name, event, *e.counters));
      }
    }
  }
  if (on_outbound) {
    for (const auto& e : on_outbound->entries()) {
      arr.push_back(counters_json(e.name, "on_outbound", *e.counters));
    }
  }
  if (on_route) {
    for (const auto& e : on_route->entries()) {
      arr.push_back(counters_json(e.name, "on_route", *e.counters));
    }
  }
  if (on_delivery) {
    for (const auto& e : on_delivery->entries()) {
      auto j = counters_json(e.name, "on_delivery", *e.counters);
      j["dropped"] = notifier ? notifier->dropped() : 0;
      arr.push_back(j);
    }
  }
  return arr;
}

namespace {

// Passes every event on to the tracker, and recipient outcomes to the notifier.
class DeliveryEvents : public queue::QueueEvents {
 public:
  DeliveryEvents(queue::QueueEvents* next, sinks::DeliveryNotifier* notifier)
      : next_(next), n_(notifier) {}
  void on_event(const queue::QueueEvent& e) override {
    if (next_ != nullptr) {
      next_->on_event(e);
    }
    const char* what = nullptr;
    switch (e.kind) {
      case queue::QueueEvent::Kind::kDelivered:
        what = "delivered";
        break;
      case queue::QueueEvent::Kind::kRelayed:
        what = "relayed";
        break;
      case queue::QueueEvent::Kind::kDeferred:
        what = "deferred";
        break;
      case queue::QueueEvent::Kind::kFailed:
        what = "failed";
        break;
      case queue::QueueEvent::Kind::kExpired:
        what = "expired";
        break;
      default:
        return;
    }
    if (e.message == nullptr || e.recipient == nullptr) {
      return;
    }
    n_->notify(what, e.message->envelope, e.recipient->address, std::string(e.reply),
               std::string(e.next_hop));
  }
  void flush() override {
    if (next_ != nullptr) {
      next_->flush();
    }
  }

 private:
  queue::QueueEvents* next_;
  sinks::DeliveryNotifier* n_;
};

}  // namespace

queue::QueueEvents* SinkSetup::queue_events(queue::QueueEvents* next,
                                            boost::asio::any_io_executor ex) {
  if (!on_delivery || on_delivery->empty()) {
    return next;
  }
  notifier = std::make_unique<sinks::DeliveryNotifier>(on_delivery, std::move(ex));
  events = std::make_unique<DeliveryEvents>(next, notifier.get());
  return events.get();
}

void SinkSetup::outbound(smtp::RelayOptions& options) const {
  if (!on_outbound || on_outbound->empty()) {
    return;
  }
  std::shared_ptr<const sinks::OutboundChain> chain = on_outbound;
  options.on_command = [chain](const smtp::OutboundHop& hop, std::string_view verb,
                               std::string_view line) {
    return chain->on_command({hop.next_hop, hop.connector, hop.host, verb, line});
  };
  options.on_reply = [chain](const smtp::OutboundHop& hop, std::string_view verb, int code,
                             std::string_view text) {
    sinks::OutboundReply r{hop.next_hop, hop.connector, hop.host, verb, code, text};
    chain->on_reply(r);
  };
}

std::shared_ptr<const sinks::CategorizeEvents> SinkSetup::categorize_events(
    boost::asio::any_io_executor ex) const {
  if ((!before_categorize || before_categorize->empty()) &&
      (!after_categorize || after_categorize->empty())) {
    return nullptr;
  }
  return std::make_shared<sinks::CategorizeEvents>(before_categorize, after_categorize,
                                                   std::move(ex));
}

queue::Router SinkSetup::route(
    queue::Router inner, std::function<std::shared_ptr<const routing::RouteTable>()> routes) const {
  if (!on_route || on_route->empty()) {
    return inner;
  }
  std::shared_ptr<const sinks::RouteChain> chain = on_route;
  return [inner = std::move(inner), routes = std::move(routes),
          chain](std::string_view domain) -> Result<queue::RouteChoice> {
    auto r = inner(domain);
    const std::string d = ascii_lower(domain);
    auto o = chain->on_route({d, r.ok() ? std::string_view(r->connector) : std::string_view{}});
    if (!o) {
      return r;
    }
    auto table = routes();
    auto con = table ? table->find(*o) : nullptr;
    if (!con) {
      return r;  // the connector is gone from the table (validated at load): keep the choice
    }
    queue::RouteChoice c;
    c.connector = con->name;
    c.next_hop = routing::RouteTable::next_hop(*con, d);
    c.domain = d;
    c.max_connections = con->settings.max_connections;
    return c;
  };
}

namespace {

sinks::FailurePolicy policy_of(const proto::SinkDefinition& d) {
  switch (d.failure_policy()) {
    case proto::SINK_FAILURE_POLICY_SKIP:
      return sinks::FailurePolicy::kSkip;
    case proto::SINK_FAILURE_POLICY_REJECT:
      return sinks::FailurePolicy::kReject;
    default:
      return sinks::FailurePolicy::kTempfail;
  }
}

sinks::PolicyConfig policy_config(const proto::SinkDefinition& d) {
  sinks::PolicyConfig p;
  p.reject_senders.assign(d.reject_senders().begin(), d.reject_senders().end());
  p.reject_recipients.assign(d.reject_recipients().begin(), d.reject_recipients().end());
  p.code = static_cast<int>(d.reject_code());
  p.enhanced = d.reject_enhanced();
  return p;
}

// One message sink (arrival and categorization chains) from its definition.
Result<sinks::ChainEntry> message_entry(
    const proto::SinkDefinition& d, SinkSetup& setup, const proto::Sinks& config,
    const std::string& hostname,
    const std::function<queue::Recipient(const std::string& address)>& journal_recipient) {
  sinks::ChainEntry e;
  e.name = d.name();
  e.deadline = std::chrono::milliseconds(d.deadline_ms());
  switch (d.failure_policy()) {
    case proto::SINK_FAILURE_POLICY_SKIP:
      e.on_failure = sinks::FailurePolicy::kSkip;
      break;
    case proto::SINK_FAILURE_POLICY_REJECT:
      e.on_failure = sinks::FailurePolicy::kReject;
      break;
    default:
      e.on_failure = sinks::FailurePolicy::kTempfail;
      break;
  }
  switch (d.kind()) {
    case proto::SINK_KIND_HEADER_STAMP:
      e.sink = std::make_shared<sinks::HeaderStampSink>(d.header(), d.value());
      break;
    case proto::SINK_KIND_POLICY:
      e.sink = std::make_shared<sinks::PolicySink>(policy_config(d));
      break;
    case proto::SINK_KIND_JOURNAL:
      e.sink = std::make_shared<sinks::JournalSink>(journal_recipient(d.address()));
      break;
    case proto::SINK_KIND_PLUGIN: {
      if (!setup.plugin_pool) {
        setup.plugin_pool = std::make_unique<boost::asio::thread_pool>(config.plugin_threads());
      }
      auto p = sinks::PluginSink::load(d.library(), d.argument(), setup.plugin_pool.get());
      if (!p.ok()) {
        return Error(
            permanent_error("5.3.5", "sinks.define " + d.name() + ": " + p.error().message));
      }
      e.sink = std::move(p.value());
      break;
    }
    case proto::SINK_KIND_PROGRAM: {
      sinks::ProgramConfig p;
      p.argv.assign(d.argv().begin(), d.argv().end());
      p.timeout = e.deadline;
      e.sink = std::make_shared<sinks::ProgramSink>(std::move(p));
      break;
    }
    case proto::SINK_KIND_MILTER: {
      sinks::MilterConfig m;
      m.socket = d.socket();
      m.connect_timeout = std::chrono::milliseconds(d.connect_timeout_ms());
      m.command_timeout = std::chrono::milliseconds(d.command_timeout_ms());
      m.hostname = hostname;
      e.sink = std::make_shared<sinks::MilterSink>(std::move(m));
      break;
    }
    default:
      return Error(permanent_error("5.3.5", "sinks.define " + d.name() + ": unknown kind"));
  }
  return e;
}

}  // namespace

Result<std::unique_ptr<SinkSetup>> build_sinks(
    const proto::Sinks& config, const std::string& hostname,
    const std::function<queue::Recipient(const std::string& address)>& journal_recipient) {
  auto setup = std::make_unique<SinkSetup>();
  std::map<std::string, const proto::SinkDefinition*> defs;
  for (const auto& d : config.define()) {
    defs[d.name()] = &d;
  }
  // A chain of message sinks (arrival, and the categorization events).
  auto message_chain = [&](const google::protobuf::RepeatedPtrField<std::string>& names)
      -> Result<std::shared_ptr<sinks::MessageChain>> {
    std::vector<sinks::ChainEntry> entries;
    for (const auto& name : names) {
      auto e = message_entry(*defs.at(name), *setup, config, hostname, journal_recipient);  // validated
      if (!e.ok()) {
        return e.error();
      }
      entries.push_back(std::move(e.value()));
    }
    return std::make_shared<sinks::MessageChain>(std::move(entries));
  };
  auto arrival = message_chain(config.on_arrival());
  if (!arrival.ok()) {
    return arrival.error();
  }
  setup->on_arrival = std::move(arrival.value());
  auto before = message_chain(config.before_categorize());
  if (!before.ok()) {
    return before.error();
  }
  setup->before_categorize = std::move(before.value());
  auto after = message_chain(config.after_categorize());
  if (!after.ok()) {
    return after.error();
  }
  setup->after_categorize = std::move(after.value());

  std::vector<sinks::ProtocolEntry> protocol;
  for (const auto& name : config.on_command()) {
    const proto::SinkDefinition& d = *defs.at(name);  // validated: policy or reply_text
    sinks::ProtocolEntry e;
    e.name = d.name();
    e.deadline = std::chrono::milliseconds(d.deadline_ms());
    e.on_failure = policy_of(d);
    if (d.kind() == proto::SINK_KIND_POLICY) {
      e.sink = std::make_shared<sinks::PolicySink>(policy_config(d));
    } else {
      e.sink = std::make_shared<sinks::ReplyTextSink>(
          std::vector<std::string>(d.verbs().begin(), d.verbs().end()), d.value());
    }
    protocol.push_back(std::move(e));
  }
  setup->on_command = std::make_shared<sinks::ProtocolChain>(std::move(protocol));

  std::vector<sinks::OutboundEntry> outbound;
  for (const auto& name : config.on_outbound()) {
    const proto::SinkDefinition& d = *defs.at(name);  // validated: an outbound_policy sink
    sinks::OutboundEntry e;
    e.name = d.name();
    e.deadline = std::chrono::milliseconds(d.deadline_ms());
    e.on_failure = policy_of(d);
    e.sink = std::make_shared<sinks::OutboundPolicySink>(
        std::vector<std::string>{d.connector()},
        std::vector<std::string>(d.verbs().begin(), d.verbs().end()),
        static_cast<int>(d.reject_code()), d.reject_enhanced());
    outbound.push_back(std::move(e));
  }
  setup->on_outbound = std::make_shared<sinks::OutboundChain>(std::move(outbound));

  std::vector<sinks::RouteEntry> routes;
  for (const auto& name : config.on_route()) {
    const proto::SinkDefinition& d = *defs.at(name);  // validated: a route sink
    sinks::RouteEntry e;
    e.name = d.name();
    e.sink = std::make_shared<sinks::RouteOverrideSink>(
        std::vector<std::string>(d.domains().begin(), d.domains().end()), d.connector());
    routes.push_back(std::move(e));
  }
  setup->on_route = std::make_shared<sinks::RouteChain>(std::move(routes));

  std::vector<sinks::ChainEntry> delivery;
  for (const auto& name : config.on_delivery()) {
    const proto::SinkDefinition& d = *defs.at(name);  // validated: a program sink
    sinks::ChainEntry e;
    e.name = d.name();
    e.deadline = std::chrono::milliseconds(d.deadline_ms());
    e.on_failure = sinks::FailurePolicy::kSkip;  // observation only: nothing to refuse
    sinks::ProgramConfig p;
    p.argv.assign(d.argv().begin(), d.argv().end());
    p.timeout = e.deadline;
    e.sink = std::make_shared<sinks::ProgramSink>(std::move(p));
    delivery.push_back(std::move(e));
  }
  setup->on_delivery = std::make_shared<sinks::MessageChain>(std::move(delivery));
  return setup;
}

}  // namespace bh::node
