#include "directory/ldap_client.h"

#include <fcntl.h>
#include <lber.h>
#include <ldap.h>
#include <sasl/sasl.h>

#include <algorithm>
#include <cstring>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <utility>

#include "common/log.h"
#include "common/text.h"

namespace bh::directory {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

Error unavailable(const std::string& why) {
  return transient_error("4.4.3", "directory unavailable: " + why);
}

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>(ms.count() % 1000 * 1000);
  return tv;
}

int ldap_scope(LdapScope s) {
  switch (s) {
    case LdapScope::kBase:
      return LDAP_SCOPE_BASE;
    case LdapScope::kOneLevel:
      return LDAP_SCOPE_ONELEVEL;
    case LdapScope::kSubtree:
      return LDAP_SCOPE_SUBTREE;
  }
  return LDAP_SCOPE_SUBTREE;
}

// SASL interaction for GSSAPI: nothing to ask; every prompt takes its default (an empty
// authorization identity: act as the authenticated principal).
int sasl_defaults(LDAP*, unsigned, void*, void* in) {
  for (auto* i = static_cast<sasl_interact_t*>(in); i != nullptr && i->id != SASL_CB_LIST_END; ++i) {
    i->result = i->defresult != nullptr ? i->defresult : "";
    i->len = static_cast<unsigned>(std::strlen(static_cast<const char*>(i->result)));
  }
  return LDAP_SUCCESS;
}

void unbind(LDAP* ld) {
  if (ld != nullptr) {
    ldap_unbind_ext(ld, nullptr, nullptr);
  }
}

}  // namespace

const std::vector<std::string>& LdapEntry::values(std::string_view name) const {
  static const std::vector<std::string> kNone;
  auto it = attributes.find(ascii_lower(name));
  return it == attributes.end() ? kNone : it->second;
}

struct LdapClient::Op {
  std::uint64_t id = 0;
  LdapSearch request;
  LdapSearchCallback done;
  std::vector<LdapEntry> entries;
  int msgid = -1;  // -1: not sent yet
  std::string cookie;  // RFC 2696: the server's cookie for the next page
  Clock::time_point sent_at;
  std::unique_ptr<asio::steady_timer> deadline;
};

struct LdapClient::Connected {
  LDAP* ld = nullptr;  // null: every URI failed
  int index = -1;
  int failures = 0;
  std::string error;
};

std::shared_ptr<LdapClient> LdapClient::create(asio::io_context& io, LdapClientOptions options) {
  return std::shared_ptr<LdapClient>(new LdapClient(io, std::move(options)));
}

LdapClient::LdapClient(asio::io_context& io, LdapClientOptions options)
    : io_(io),
      strand_(asio::make_strand(io)),
      options_(std::move(options)),
      backoff_(options_.reconnect_initial),
      backoff_timer_(strand_) {
  BH_CHECK(!options_.uris.empty());
}

LdapClient::~LdapClient() {
  connector_.join();
  if (socket_) {
    socket_->release();  // libldap closes the fd
  }
  unbind(ld_);
}

void LdapClient::start() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->state_ == State::kIdle) {
      self->connect();
    }
  });
}

void LdapClient::stop() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->state_ == State::kStopped) {
      return;
    }
    self->state_ = State::kStopped;
    self->backoff_timer_.cancel();
    self->drop("the node is stopping");
  });
}

LdapClientCounters LdapClient::counters() const {
  LdapClientCounters c;
  c.searches = counters_.searches.load();
  c.completed = counters_.completed.load();
  c.entries = counters_.entries.load();
  c.failed = counters_.failed.load();
  c.timeouts = counters_.timeouts.load();
  c.rejected_busy = counters_.rejected_busy.load();
  c.connects = counters_.connects.load();
  c.connect_failures = counters_.connect_failures.load();
  c.disconnects = counters_.disconnects.load();
  c.hung = counters_.hung.load();
  c.failovers = counters_.failovers.load();
  c.pages = counters_.pages.load();
  c.in_flight = counters_.in_flight.load();
  c.max_in_flight = counters_.max_in_flight.load();
  int i = counters_.connected_index.load();
  if (i >= 0 && static_cast<std::size_t>(i) < options_.uris.size()) {
    c.connected_uri = options_.uris[static_cast<std::size_t>(i)];
  }
  return c;
}

// ---- searches ----

void LdapClient::search(LdapSearch request, LdapSearchCallback done) {
  asio::post(strand_, [self = shared_from_this(), request = std::move(request),
                       done = std::move(done)]() mutable {
    self->do_search(std::move(request), std::move(done));
  });
}

void LdapClient::do_search(LdapSearch request, LdapSearchCallback done) {
  counters_.searches++;
  auto refuse = [&](Error e) {
    counters_.failed++;
    asio::post(io_, [done = std::move(done), e = std::move(e)] { done(e); });
  };
  if (state_ == State::kStopped) {
    return refuse(unavailable("the node is stopping"));
  }
  if (state_ == State::kBackoff) {
    return refuse(unavailable("no directory server answers (retrying)"));
  }
  if (ops_.size() >= options_.max_in_flight) {
    counters_.rejected_busy++;
    return refuse(unavailable("too many lookups in flight"));
  }
  auto op = std::make_shared<Op>();
  op->id = next_id_++;
  op->request = std::move(request);
  op->done = std::move(done);
  op->deadline = std::make_unique<asio::steady_timer>(strand_, options_.timeout);
  op->deadline->async_wait([self = shared_from_this(), id = op->id](boost::system::error_code ec) {
    if (!ec) {
      self->on_deadline(id);
    }
  });
  ops_[op->id] = op;
  if (state_ == State::kConnected) {
    send(op);
  } else {
    waiting_.push_back(op->id);
    if (state_ == State::kIdle) {
      connect();
    }
  }
}

void LdapClient::send(const std::shared_ptr<Op>& op) {
  std::vector<char*> attrs;
  for (auto& a : op->request.attributes) {
    attrs.push_back(a.data());
  }
  attrs.push_back(nullptr);
  int msgid = -1;
  LDAPControl* page = nullptr;
  if (op->request.page_size > 0) {
    berval cookie{static_cast<ber_len_t>(op->cookie.size()), op->cookie.data()};
    int prc = ldap_create_page_control(ld_, static_cast<ber_int_t>(op->request.page_size),
                                       op->cookie.empty() ? nullptr : &cookie, 1, &page);
    if (prc != LDAP_SUCCESS) {
      finish(op, unavailable(std::string("paged results control: ") + ldap_err2string(prc)));
      return;
    }
  }
  LDAPControl* server_controls[2] = {page, nullptr};
  int rc = ldap_search_ext(ld_, op->request.base.c_str(), ldap_scope(op->request.scope),
                           op->request.filter.c_str(),
                           op->request.attributes.empty() ? nullptr : attrs.data(), 0,
                           page != nullptr ? server_controls : nullptr, nullptr, nullptr,
                           op->request.size_limit, &msgid);
  if (page != nullptr) {
    ldap_control_free(page);
  }
  if (rc != LDAP_SUCCESS) {
    std::string why = std::string("search not sent: ") + ldap_err2string(rc);
    if (rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR) {
      finish(op, unavailable(why));
      drop(why);
      return;
    }
    finish(op, unavailable(why));
    return;
  }
  op->msgid = msgid;
  op->sent_at = Clock::now();
  by_msgid_[msgid] = op->id;
  update_in_flight();
}

void LdapClient::finish(const std::shared_ptr<Op>& op, Result<std::vector<LdapEntry>> result) {
  if (ops_.erase(op->id) == 0) {
    return;  // already answered
  }
  if (op->msgid >= 0) {
    by_msgid_.erase(op->msgid);
  }
  op->deadline->cancel();
  if (result.ok()) {
    counters_.completed++;
  } else {
    counters_.failed++;
  }
  update_in_flight();
  asio::post(io_,
             [done = std::move(op->done), r = std::move(result)]() mutable { done(std::move(r)); });
}

void LdapClient::update_in_flight() {
  std::uint64_t n = by_msgid_.size();
  counters_.in_flight = n;
  if (n > counters_.max_in_flight.load()) {
    counters_.max_in_flight = n;
  }
}

void LdapClient::on_deadline(std::uint64_t id) {
  auto it = ops_.find(id);
  if (it == ops_.end()) {
    return;
  }
  auto op = it->second;
  counters_.timeouts++;
  const bool sent = op->msgid >= 0;
  if (sent && ld_ != nullptr) {
    // RFC 4511 §4.11: no answer is expected; the server may stop working on it.
    ldap_abandon_ext(ld_, op->msgid, nullptr, nullptr);
  }
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), id), waiting_.end());
  finish(op, unavailable("no answer within " + std::to_string(options_.timeout.count()) + " ms"));
  if (sent && state_ == State::kConnected && last_read_ < op->sent_at) {
    // Nothing at all came back since this search went out: the server is hung (stopped
    // process, dead host without a RST). Another server, or a new connection, may answer.
    counters_.hung++;
    drop("no answer at all for " + std::to_string(options_.timeout.count()) + " ms");
  }
}

// ---- connection ----

void LdapClient::connect() {
  state_ = State::kConnecting;
  // The blocking part (TCP connect, StartTLS, bind) runs on the helper thread; the
  // strand only learns the outcome.
  asio::post(connector_, [weak = weak_from_this(), strand = strand_, o = options_] {
    Connected c;
    for (std::size_t i = 0; i < o.uris.size(); ++i) {
      LDAP* ld = nullptr;
      int rc = ldap_initialize(&ld, o.uris[i].c_str());
      if (rc != LDAP_SUCCESS || ld == nullptr) {
        c.failures++;
        c.error = o.uris[i] + ": " + ldap_err2string(rc);
        continue;
      }
      int version = LDAP_VERSION3;
      ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
      ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
      timeval tv = to_timeval(o.timeout);
      ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
      ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv);
      // Server-side time limit (RFC 4511 §4.5.1.5), whole seconds, at least 1.
      int limit = static_cast<int>(std::max<long long>(1, (o.timeout.count() + 999) / 1000));
      ldap_set_option(ld, LDAP_OPT_TIMELIMIT, &limit);
      const bool ldaps = o.uris[i].rfind("ldaps://", 0) == 0;
      if (ldaps || o.tls.start_tls) {
        if (!o.tls.ca_file.empty()) {
          ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, o.tls.ca_file.c_str());
        }
        int require = o.tls.verify ? LDAP_OPT_X_TLS_DEMAND : LDAP_OPT_X_TLS_NEVER;
        ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &require);
        int is_server = 0;  // the options above take effect in a new client context
        ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &is_server);
      }
      if (o.tls.start_tls && o.uris[i].rfind("ldap://", 0) == 0) {
        rc = ldap_start_tls_s(ld, nullptr, nullptr);
        if (rc != LDAP_SUCCESS) {
          c.failures++;
          c.error = o.uris[i] + ": StartTLS: " + ldap_err2string(rc);
          unbind(ld);
          continue;
        }
      }
      if (o.sasl_mechanism == "GSSAPI") {
        ldap_set_option(ld, LDAP_OPT_X_SASL_NOCANON, LDAP_OPT_ON);
        rc = ldap_sasl_interactive_bind_s(ld, nullptr, "GSSAPI", nullptr, nullptr, LDAP_SASL_QUIET,
                                          sasl_defaults, nullptr);
      } else {
        std::string pw = o.bind_dn.empty() ? std::string() : o.password;
        berval cred{static_cast<ber_len_t>(pw.size()), pw.data()};
        rc = ldap_sasl_bind_s(ld, o.bind_dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr,
                              nullptr);
        std::fill(pw.begin(), pw.end(), '\0');
      }
      if (rc != LDAP_SUCCESS) {
        c.failures++;
        c.error = o.uris[i] + ": bind: " + ldap_err2string(rc);
        unbind(ld);
        continue;
      }
      c.ld = ld;
      c.index = static_cast<int>(i);
      break;
    }
    asio::post(strand, [weak, c = std::move(c)]() mutable {
      if (auto self = weak.lock()) {
        self->on_connected(std::move(c));
      } else {
        unbind(c.ld);
      }
    });
  });
}

void LdapClient::on_connected(Connected c) {
  counters_.connect_failures += static_cast<std::uint64_t>(c.failures);
  if (state_ == State::kStopped) {
    unbind(c.ld);
    return;
  }
  int fd = -1;
  if (c.ld != nullptr &&
      (ldap_get_option(c.ld, LDAP_OPT_DESC, &fd) != LDAP_OPT_SUCCESS || fd < 0)) {
    unbind(c.ld);
    c.ld = nullptr;
    c.error = "bound, but no socket";
  }
  if (c.ld == nullptr) {
    state_ = State::kBackoff;
    log::warn("ldap", "no directory server reachable (" + c.error + "); retrying in " +
                          std::to_string(backoff_.count()) + " ms");
    fail_all(c.error);
    backoff_timer_.expires_after(backoff_);
    backoff_ = std::min(backoff_ * 2, options_.reconnect_max);
    backoff_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec && self->state_ == State::kBackoff) {
        self->connect();
      }
    });
    return;
  }
  // libldap handles EAGAIN on its socket: reads say "no complete message yet", a send
  // that cannot be written at once is kept and flushed later.
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  ld_ = c.ld;
  socket_ = std::make_unique<asio::posix::stream_descriptor>(io_, fd);
  ++generation_;
  state_ = State::kConnected;
  backoff_ = options_.reconnect_initial;
  last_read_ = Clock::now();
  counters_.connects++;
  counters_.connected_index = c.index;
  if (c.index > 0) {
    counters_.failovers++;
  }
  log::info("ldap", "connected to " + options_.uris[static_cast<std::size_t>(c.index)]);
  while (!waiting_.empty()) {
    auto it = ops_.find(waiting_.front());
    waiting_.pop_front();
    if (it != ops_.end()) {
      send(it->second);
      if (state_ != State::kConnected) {
        break;  // the connection died while sending; drop() failed the rest
      }
    }
  }
  if (state_ == State::kConnected) {
    wait_readable();
  }
}

void LdapClient::wait_readable() {
  socket_->async_wait(asio::posix::descriptor_base::wait_read,
                      asio::bind_executor(strand_, [self = shared_from_this(), gen = generation_](
                                                       boost::system::error_code ec) {
                        if (ec || gen != self->generation_ || self->state_ != State::kConnected) {
                          return;
                        }
                        self->drain();
                      }));
}

void LdapClient::drain() {
  for (;;) {
    LDAPMessage* msg = nullptr;
    timeval zero{0, 0};
    int type = ldap_result(ld_, LDAP_RES_ANY, LDAP_MSG_ONE, &zero, &msg);
    if (type == 0) {
      break;  // no complete message buffered or readable
    }
    if (type < 0) {
      int err = LDAP_SERVER_DOWN;
      ldap_get_option(ld_, LDAP_OPT_RESULT_CODE, &err);
      drop(std::string("connection lost: ") + ldap_err2string(err));
      return;
    }
    last_read_ = Clock::now();
    std::unique_ptr<LDAPMessage, int (*)(LDAPMessage*)> owned(msg, ldap_msgfree);
    auto mit = by_msgid_.find(ldap_msgid(msg));
    if (mit == by_msgid_.end()) {
      continue;  // an operation that already timed out (abandoned)
    }
    auto op = ops_.at(mit->second);
    if (type == LDAP_RES_SEARCH_ENTRY) {
      LdapEntry e;
      if (char* dn = ldap_get_dn(ld_, msg)) {
        e.dn = dn;
        ldap_memfree(dn);
      }
      BerElement* ber = nullptr;
      for (char* a = ldap_first_attribute(ld_, msg, &ber); a != nullptr;
           a = ldap_next_attribute(ld_, msg, ber)) {
        auto& vals = e.attributes[ascii_lower(a)];
        if (berval** bv = ldap_get_values_len(ld_, msg, a)) {
          for (int i = 0; bv[i] != nullptr; ++i) {
            vals.emplace_back(bv[i]->bv_val, bv[i]->bv_len);
          }
          ldap_value_free_len(bv);
        }
        ldap_memfree(a);
      }
      if (ber != nullptr) {
        ber_free(ber, 0);
      }
      counters_.entries++;
      if (op->entries.size() >= op->request.max_entries) {
        ldap_abandon_ext(ld_, op->msgid, nullptr, nullptr);
        finish(op, unavailable("too many entries (more than " +
                               std::to_string(op->request.max_entries) + ")"));
        continue;
      }
      op->entries.push_back(std::move(e));
    } else if (type == LDAP_RES_SEARCH_RESULT) {
      int err = LDAP_OTHER;
      char* text = nullptr;
      LDAPControl** controls = nullptr;
      int prc = ldap_parse_result(ld_, msg, &err, nullptr, &text, nullptr, &controls, 0);
      std::string detail = text != nullptr ? text : "";
      if (text != nullptr) {
        ldap_memfree(text);
      }
      std::string next_cookie;
      bool page_ok = op->request.page_size <= 0;
      if (!page_ok && controls != nullptr) {
        if (LDAPControl* pc = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, controls, nullptr)) {
          ber_int_t estimate = 0;
          berval cookie{0, nullptr};
          if (ldap_parse_pageresponse_control(ld_, pc, &estimate, &cookie) == LDAP_SUCCESS) {
            page_ok = true;
            if (cookie.bv_val != nullptr) {
              next_cookie.assign(cookie.bv_val, cookie.bv_len);
              ber_memfree(cookie.bv_val);
            }
          }
        }
      }
      if (controls != nullptr) {
        ldap_controls_free(controls);
      }
      const bool size_ok =
          err == LDAP_SUCCESS || (err == LDAP_SIZELIMIT_EXCEEDED && !op->request.strict_size);
      if (prc == LDAP_SUCCESS && err == LDAP_SUCCESS && op->request.page_size > 0 && !page_ok) {
        // A server that ignores a critical control must refuse the search (RFC 2696 §3);
        // one that answers without the response control cannot be paged safely.
        finish(op, unavailable("paged results: no page response control"));
      } else if (prc == LDAP_SUCCESS && err == LDAP_SUCCESS && !next_cookie.empty()) {
        by_msgid_.erase(op->msgid);
        op->cookie = std::move(next_cookie);
        counters_.pages++;
        send(op);
        continue;
      } else if (prc == LDAP_SUCCESS && size_ok) {
        finish(op, std::move(op->entries));
      } else {
        std::string why = std::string("search failed: ") +
                          ldap_err2string(prc == LDAP_SUCCESS ? err : prc) +
                          (detail.empty() ? "" : " (" + detail + ")");
        finish(op, unavailable(why));
      }
    }
    // References (LDAP_RES_SEARCH_REFERENCE) are not followed: referrals are off.
  }
  wait_readable();
}

void LdapClient::fail_all(const std::string& why) {
  std::vector<std::shared_ptr<Op>> all;
  for (auto& [id, op] : ops_) {
    all.push_back(op);
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a->id < b->id; });
  waiting_.clear();
  for (auto& op : all) {
    finish(op, unavailable(why));
  }
}

void LdapClient::drop(const std::string& why) {
  if (ld_ != nullptr) {
    counters_.disconnects++;
    log::warn(
        "ldap",
        "dropping the connection to " +
            options_.uris[static_cast<std::size_t>(std::max(0, counters_.connected_index.load()))] +
            ": " + why);
  }
  ++generation_;
  if (socket_) {
    boost::system::error_code ignored;
    socket_->cancel(ignored);
    socket_->release();
    socket_.reset();
  }
  unbind(ld_);
  ld_ = nullptr;
  counters_.connected_index = -1;
  fail_all(why);
  if (state_ != State::kStopped) {
    connect();
  }
}

}  // namespace bh::directory
