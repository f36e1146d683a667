#pragma once
// The routing transport event (docs/sinks.md): after the router chose a route for a
// recipient domain and before the message is queued for that next hop, a RouteChain may
// override the choice by naming another connector. Runs synchronously on the queue
// manager's delivery thread, so only in-memory sinks take part (built-in `route`).
// The first sink that names a connector wins. Threading: const, callable from any thread.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sinks/sink.h"

namespace bh::sinks {

struct RouteEvent {
  std::string_view domain;     // the recipient domain, lower-case
  std::string_view connector;  // the router's choice; empty: no route
};

class RouteSink {
 public:
  virtual ~RouteSink() = default;
  // nullopt: keep the router's choice; else the name of the connector to use.
  virtual std::optional<std::string> on_route(const RouteEvent& e) = 0;
};

// Domains ("example.net" itself, "*.example.net" its subdomains, "*" all) go through
// `connector`.
class RouteOverrideSink : public RouteSink {
 public:
  RouteOverrideSink(std::vector<std::string> domains, std::string connector)
      : domains_(std::move(domains)), connector_(std::move(connector)) {}
  std::optional<std::string> on_route(const RouteEvent& e) override;

 private:
  std::vector<std::string> domains_;
  std::string connector_;
};

struct RouteEntry {
  std::string name;
  std::shared_ptr<RouteSink> sink;
  std::shared_ptr<SinkCounters> counters = std::make_shared<SinkCounters>();
};

class RouteChain {
 public:
  explicit RouteChain(std::vector<RouteEntry> entries) : entries_(std::move(entries)) {}
  std::optional<std::string> on_route(const RouteEvent& e) const;
  const std::vector<RouteEntry>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<RouteEntry> entries_;
};

bool domain_matches(std::string_view pattern, std::string_view domain);

}  // namespace bh::sinks
