#pragma once
// AresMxResolver: the MxResolver (routing/mx_resolver.h) over c-ares.
//
// Servers: always the ones given in the options ("IP:port"), installed before the
// first query. /etc/resolv.conf never chooses where a query goes (c-ares reads the file
// at init, but its server list is replaced before anything is sent).
//
// Threading: one resolver thread owns the c-ares channel and polls its sockets plus an
// eventfd; resolve() may be called from any thread and only queues the request and wakes
// the thread. `done` runs on the resolver thread: an Asio caller posts the result to its
// own executor, e.g. resolve(d, [ex](auto r) { post(ex, [r = std::move(r)] { ... }); }).
// Callbacks must not block and must not destroy the resolver.
//
// Deadlines: c-ares gives each server `timeout` on the first round and doubles it on each
// further round, `tries` rounds in all, so one query ends within
// timeout × (2^tries − 1) × servers; a lookup asks at most two queries one after the other
// (MX, then A/AAAA of all hosts in parallel), so it ends within twice that.
//
// Ownership: the destructor ends every pending lookup with a transient 4.4.3 error
// (their callbacks run on the destroying thread after the resolver thread has stopped),
// then joins the thread. The Random is used only on the resolver thread and must not be
// used by anyone else meanwhile. Create resolvers from one thread (c-ares library init).

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "routing/mx_resolver.h"

namespace bh::routing {

struct AresMxResolverOptions {
  std::vector<std::string> servers;  // "127.0.0.1:53", "[::1]:5353"; at least one
  std::chrono::milliseconds timeout{5000};  // first round, per server; doubled each round
  int tries = 2;
};

class AresMxResolver final : public MxResolver {
 public:
  // Permanent error (empty enhanced code) when the options are unusable: no servers, a
  // server c-ares cannot parse, c-ares or the eventfd failing to initialize.
  static Result<std::unique_ptr<AresMxResolver>> create(AresMxResolverOptions options,
                                                        Random& random);
  ~AresMxResolver() override;

  AresMxResolver(const AresMxResolver&) = delete;
  AresMxResolver& operator=(const AresMxResolver&) = delete;

  void resolve(std::string_view domain, MxCallback done) override;

  struct State;  // c-ares channel, request queue, thread: ares_mx_resolver.cc

 private:
  explicit AresMxResolver(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace bh::routing
