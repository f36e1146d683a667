#include "sinks/milter_sink.h"

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <optional>

#include "sinks/message_edit.h"
#include "sinks/milter_protocol.h"

namespace bh::sinks {

namespace asio = boost::asio;
using generic_stream = asio::generic::stream_protocol;

namespace {

// SMFIP_* protocol flags we offer: skipping a stage (NO*), no reply for a stage (NR_*),
// and SMFIR_SKIP during the body. Not offered: SMFIP_RCPT_REJ, SMFIP_HDR_LEADSPC.
constexpr std::uint32_t kNoConnect = 0x1, kNoHelo = 0x2, kNoMail = 0x4, kNoRcpt = 0x8,
                        kNoBody = 0x10, kNoHdrs = 0x20, kNoEoh = 0x40, kNrHdr = 0x80,
                        kNoData = 0x200, kNrConn = 0x1000, kNrHelo = 0x2000, kNrMail = 0x4000,
                        kNrRcpt = 0x8000, kNrData = 0x10000, kNrEoh = 0x40000, kNrBody = 0x80000;
constexpr std::uint32_t kOfferedProtocol = 0x000FF7FF;

std::optional<generic_stream::endpoint> parse_socket(const std::string& spec, std::string& why) {
  if (spec.rfind("unix:", 0) == 0) {
    std::string path = spec.substr(5);
    if (path.empty() || path.front() != '/' || path.size() > 107) {
      why = "unix: needs an absolute path of at most 107 octets";
      return std::nullopt;
    }
    return generic_stream::endpoint(asio::local::stream_protocol::endpoint(path));
  }
  if (spec.rfind("inet:", 0) == 0) {
    auto at = spec.find('@');
    if (at == std::string::npos) {
      why = "inet: needs PORT@IP";
      return std::nullopt;
    }
    std::string port = spec.substr(5, at - 5), host = spec.substr(at + 1);
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) == 0 ||
        std::stoul(port) > 65535) {
      why = "port must be 1-65535";
      return std::nullopt;
    }
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (ec) {
      why = "\"" + host + "\" is not an IP address (no DNS names: the node does no lookups here)";
      return std::nullopt;
    }
    return generic_stream::endpoint(
        asio::ip::tcp::endpoint(addr, static_cast<std::uint16_t>(std::stoul(port))));
  }
  why = "expected inet:PORT@IP or unix:/path";
  return std::nullopt;
}

struct Step {
  std::string bytes;
  bool await = false;
  bool body = false;  // a body chunk (SMFIR_SKIP drops the rest of these)
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(const MilterConfig& cfg, generic_stream::endpoint ep, std::shared_ptr<MessageEvent> ev,
          asio::any_io_executor ex, MessageSink::Done done)
      : cfg_(cfg), ep_(ep), ev_(std::move(ev)), socket_(ex), timer_(ex), done_(std::move(done)) {}

  void start() {
    arm(cfg_.connect_timeout);
    socket_.async_connect(ep_, [self = shared_from_this()](boost::system::error_code ec) {
      if (self->finished_) {
        return;
      }
      if (ec) {
        self->fail("cannot connect to " + self->cfg_.socket + ": " + ec.message());
        return;
      }
      self->steps_.push_back(
          {milter::encode_optneg(milter::kVersion, milter::kOfferedActions, kOfferedProtocol),
           true});
      self->negotiating_ = true;
      self->pump();
    });
  }

 private:
  void arm(std::chrono::milliseconds after) {
    timer_.expires_after(after);
    timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (!ec && self && !self->finished_) {
        self->fail("milter " + self->cfg_.socket + " did not answer in time");
      }
    });
  }

  // Sends every step up to and including the next one that awaits a reply, then reads.
  void pump() {
    std::string out;
    bool await = false;
    while (!steps_.empty() && !await) {
      out += steps_.front().bytes;
      await = steps_.front().await;
      steps_.pop_front();
    }
    if (eom_marker_ && steps_.empty()) {
      at_eom_ = true;  // the end-of-message command is in this write
    }
    if (out.empty()) {
      finish(Verdict::go_on());  // cannot happen: EOM always awaits
      return;
    }
    sending_ = std::move(out);
    arm(cfg_.command_timeout);
    asio::async_write(
        socket_, asio::buffer(sending_),
        [self = shared_from_this(), await](boost::system::error_code ec, std::size_t) {
          if (self->finished_) {
            return;
          }
          if (ec) {
            self->fail("write to milter: " + ec.message());
            return;
          }
          if (await) {
            self->read();
          } else {
            self->pump();
          }
        });
  }

  void read() {
    // A packet may already be buffered.
    while (auto p = reader_.next()) {
      if (!p->ok()) {
        fail(p->error().message);
        return;
      }
      auto r = milter::decode_reply(p->value());
      if (!r.ok()) {
        fail(r.error().message);
        return;
      }
      if (!handle(r.value())) {
        return;  // finished, or moved on to the next step
      }
    }
    socket_.async_read_some(asio::buffer(in_), [self = shared_from_this()](
                                                   boost::system::error_code ec, std::size_t n) {
      if (self->finished_) {
        return;
      }
      if (ec) {
        self->fail("milter closed the connection: " + ec.message());
        return;
      }
      self->reader_.feed(std::string_view(self->in_.data(), n));
      self->read();
    });
  }

  // True: keep reading replies for the current step.
  bool handle(const milter::Reply& r) {
    using K = milter::Reply::Kind;
    if (negotiating_) {
      if (r.kind != K::kOptneg) {
        fail("expected SMFIC_OPTNEG, got another reply");
        return false;
      }
      if (r.version < 2 || (r.protocol & ~kOfferedProtocol) != 0 ||
          (r.actions & ~milter::kOfferedActions) != 0) {
        fail("milter asked for protocol steps or actions we did not offer");
        return false;
      }
      negotiating_ = false;
      protocol_ = r.protocol;
      actions_ = r.actions;
      plan();
      pump();
      return false;
    }
    switch (r.kind) {
      case K::kProgress:
        arm(cfg_.command_timeout);
        return true;
      case K::kOptneg:
      case K::kSetSymList:
        fail("unexpected negotiation reply");
        return false;
      case K::kAddHeader:
      case K::kInsHeader:
      case K::kChgHeader:
      case K::kReplBody:
      case K::kAddRcpt:
      case K::kDelRcpt:
      case K::kChgFrom:
      case K::kQuarantine:
        if (!at_eom_) {
          fail("modification action before end of message");
          return false;
        }
        return modify(r);
      case K::kContinue:
        if (at_eom_) {
          finish(Verdict::go_on());
          return false;
        }
        pump();
        return false;
      case K::kSkip:
        while (!steps_.empty() && steps_.front().body) {
          steps_.pop_front();
        }
        pump();
        return false;
      case K::kAccept:
        // The milter wants nothing more of this message; its changes so far stand.
        finish(Verdict::go_on());
        return false;
      case K::kReject: {
        Error e = permanent_error("5.7.1", "Command rejected");
        e.reply_code = 550;
        finish(Verdict::reject(e));
        return false;
      }
      case K::kTempfail: {
        Error e = transient_error("4.7.1", "Service unavailable - try again later");
        finish(Verdict::reject(e));
        return false;
      }
      case K::kReplyCode: {
        Error e = r.code < 500 ? transient_error(r.enhanced, r.text)
                               : permanent_error(r.enhanced, r.text);
        e.reply_code = r.code;
        finish(Verdict::reject(e));
        return false;
      }
      case K::kDiscard:
        finish(Verdict::discard());
        return false;
      case K::kConnFail:
      case K::kShutdown:
        fail("milter ended the session");
        return false;
    }
    return false;
  }

  bool modify(const milter::Reply& r) {
    using K = milter::Reply::Kind;
    auto& m = ev_->message;
    auto allowed = [&](std::uint32_t bit) {
      if ((actions_ & bit) == 0) {
        fail("milter used an action it did not negotiate");
        return false;
      }
      return true;
    };
    switch (r.kind) {
      case K::kAddHeader:
        if (!allowed(milter::kActAddHeaders)) {
          return false;
        }
        add_header(m, r.name, r.value);
        break;
      case K::kInsHeader:
        if (!allowed(milter::kActAddHeaders)) {
          return false;
        }
        insert_header(m, r.index, r.name, r.value);
        break;
      case K::kChgHeader:
        if (!allowed(milter::kActChangeHeaders)) {
          return false;
        }
        change_header(m, r.name, r.index == 0 ? 1 : r.index, r.value);
        break;
      case K::kReplBody:
        if (!allowed(milter::kActChangeBody)) {
          return false;
        }
        if (!new_body_) {
          new_body_.emplace();
        }
        if (new_body_->size() + r.value.size() > cfg_.max_body) {
          fail("replacement body over its cap");
          return false;
        }
        new_body_->append(r.value);
        break;
      case K::kAddRcpt: {
        if (!allowed(milter::kActAddRcpt | milter::kActAddRcptPar)) {
          return false;
        }
        queue::Recipient rc;
        rc.address = strip(r.value);
        ev_->envelope.recipients.push_back(rc);
        break;
      }
      case K::kDelRcpt: {
        if (!allowed(milter::kActDelRcpt)) {
          return false;
        }
        auto& rs = ev_->envelope.recipients;
        const std::string a = strip(r.value);
        std::erase_if(rs, [&](const queue::Recipient& x) { return x.address == a; });
        break;
      }
      case K::kChgFrom:
        if (!allowed(milter::kActChangeFrom)) {
          return false;
        }
        ev_->envelope.sender = strip(r.value);
        break;
      case K::kQuarantine:
        if (!allowed(milter::kActQuarantine)) {
          return false;
        }
        ev_->quarantine = r.value.empty() ? "milter" : r.value;
        break;
      default:
        break;
    }
    return true;
  }

  static std::string strip(const std::string& a) {
    std::string_view v(a);
    if (v.size() >= 2 && v.front() == '<' && v.back() == '>') {
      v = v.substr(1, v.size() - 2);
    }
    return std::string(v);
  }

  // The conversation after negotiation, with the stages and replies the milter chose.
  void plan() {
    const auto& env = ev_->envelope;
    auto push = [&](std::string bytes, std::uint32_t no_reply_bit, bool body = false) {
      steps_.push_back({std::move(bytes), (protocol_ & no_reply_bit) == 0, body});
    };
    auto macro = [&](char stage, std::vector<std::pair<std::string, std::string>> m) {
      steps_.push_back({milter::encode_macros(stage, m), false, false});
    };
    const std::string& client = env.client_address;
    if ((protocol_ & kNoConnect) == 0) {
      macro('C', {{"j", cfg_.hostname},
                  {"{daemon_name}", "bridgehead"},
                  {"{client_addr}", client},
                  {"_", "[" + client + "]"}});
      push(milter::encode_connect("[" + client + "]", client, 0), kNrConn);
    }
    if ((protocol_ & kNoHelo) == 0) {
      push(milter::encode_helo(env.client_helo), kNrHelo);
    }
    if ((protocol_ & kNoMail) == 0) {
      macro('M', {{"i", env.id}, {"{mail_addr}", env.sender}});
      push(milter::encode_mail(env.sender), kNrMail);
    }
    if ((protocol_ & kNoRcpt) == 0) {
      for (const auto& r : env.recipients) {
        macro('R', {{"{rcpt_addr}", r.address}});
        push(milter::encode_rcpt(r.address), kNrRcpt);
      }
    }
    if ((protocol_ & kNoData) == 0) {
      macro('T', {{"i", env.id}});
      push(milter::encode_data(), kNrData);
    }
    const std::string& m = ev_->message;
    if ((protocol_ & kNoHdrs) == 0) {
      for (const auto& [name, value] : header_fields(m)) {
        push(milter::encode_header(name, value), kNrHdr);
      }
    }
    if ((protocol_ & kNoEoh) == 0) {
      push(milter::encode_eoh(), kNrEoh);
    }
    if ((protocol_ & kNoBody) == 0) {
      std::string_view body = std::string_view(m).substr(body_offset(m));
      for (std::size_t at = 0; at < body.size(); at += milter::kChunk) {
        push(milter::encode_body(body.substr(at, milter::kChunk)), kNrBody, true);
      }
    }
    macro('E', {{"i", env.id}});
    steps_.push_back({milter::encode_eom(), true, false});
    eom_marker_ = true;
  }

  void fail(const std::string& why) {
    if (finished_) {
      return;
    }
    finished_ = true;
    close();
    done_(Result<Verdict>(transient_error("4.7.1", why)));
  }

  void finish(Verdict v) {
    if (finished_) {
      return;
    }
    finished_ = true;
    if (new_body_ && v.kind != Verdict::Kind::kReject) {
      replace_body(ev_->message, *new_body_);
    }
    // Be polite: end the milter's session, then close (no reply is read).
    sending_ = milter::encode_quit();
    asio::async_write(
        socket_, asio::buffer(sending_),
        [self = shared_from_this()](boost::system::error_code, std::size_t) { self->close(); });
    done_(Result<Verdict>(std::move(v)));
  }

  void close() {
    boost::system::error_code ignored;
    timer_.cancel();
    socket_.shutdown(generic_stream::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  const MilterConfig cfg_;
  generic_stream::endpoint ep_;
  std::shared_ptr<MessageEvent> ev_;
  generic_stream::socket socket_;
  asio::steady_timer timer_;
  MessageSink::Done done_;
  std::deque<Step> steps_;
  std::string sending_;
  std::array<char, 16384> in_{};
  milter::MilterReader reader_;
  std::optional<std::string> new_body_;
  std::uint32_t protocol_ = 0, actions_ = 0;
  bool negotiating_ = false, finished_ = false, eom_marker_ = false, at_eom_ = false;
};

}  // namespace

std::string check_milter_socket(const std::string& spec) {
  std::string why;
  return parse_socket(spec, why) ? std::string() : why;
}

MilterSink::MilterSink(MilterConfig config) : config_(std::move(config)) {}

void MilterSink::on_message(std::shared_ptr<MessageEvent> event, asio::any_io_executor ex,
                            Done done) {
  std::string why;
  auto ep = parse_socket(config_.socket, why);
  if (!ep) {
    done(Result<Verdict>(transient_error("4.7.1", why)));
    return;
  }
  std::make_shared<Session>(config_, *ep, std::move(event), ex, std::move(done))->start();
}

}  // namespace bh::sinks
