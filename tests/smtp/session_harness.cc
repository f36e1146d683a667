#include "tests/smtp/session_harness.h"

#include <algorithm>
#include <cctype>
#include <deque>

namespace bh::smtp::testing {

Harness::Harness(SessionConfig cfg, HarnessOptions opt)
    : opt_(opt), session_(std::move(cfg), PeerInfo{"192.0.2.1", "127.0.0.1"}, clock_) {}

void Harness::perform(Actions actions) {
  std::deque<Action> q(std::make_move_iterator(actions.begin()), std::make_move_iterator(actions.end()));
  while (!q.empty()) {
    Action a = std::move(q.front());
    q.pop_front();
    Actions more;
    if (opt_.deferred && !answering_ &&
        (std::holds_alternative<CheckMail>(a) || std::holds_alternative<LookupRecipient>(a) ||
         std::holds_alternative<BeginMessage>(a) || std::holds_alternative<CommitMessage>(a))) {
      if (std::holds_alternative<CommitMessage>(a)) {
        if (!spooling_) {
          out_.replies += "[COMMIT WITHOUT SPOOL]";
        }
        spooling_ = false;  // the writer belongs to the store from here on
        commit_spool_ = std::move(spool_);
        spool_.clear();
      }
      pending_.push_back(std::move(a));
      continue;
    }
    answering_ = false;
    if (auto* s = std::get_if<SendReply>(&a)) {
      out_.replies += s->bytes;
      std::size_t pos = 0;
      while (pos < s->bytes.size()) {
        std::size_t eol = s->bytes.find("\r\n", pos);
        std::string line = s->bytes.substr(pos, eol - pos);
        if (line.size() >= 4 && line[3] == ' ') {
          out_.codes.push_back(std::stoi(line.substr(0, 3)));
        }
        pos = eol + 2;
      }
    } else if (auto* close = std::get_if<CloseConnection>(&a)) {
      out_.closed = true;
      out_.closed_after_quit = close->after_quit;
    } else if (std::holds_alternative<ArmTimer>(a)) {
      ++out_.timers;
    } else if (std::holds_alternative<CheckMail>(a)) {
      more = session_.on_mail_result(opt_.no_space ? Result<void>(transient_error("4.3.1", "Insufficient system storage"))
                                                   : Result<void>());
    } else if (auto* l = std::get_if<LookupRecipient>(&a)) {
      RecipientVerdict v;
      std::string local = l->address.substr(0, l->address.rfind('@'));
      for (char& ch : local) {
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      }
      std::string domain = l->address.substr(l->address.rfind('@') + 1);
      if (domain != "example.org" && l->authenticated && !l->for_vrfy) {
        v.kind = RecipientVerdict::Kind::kLocal;  // a logged-in client may relay
      } else if (domain == "example.org" && (local == "alice" || local == "bob")) {
        v.kind = RecipientVerdict::Kind::kLocal;
        v.mailbox = local;
      } else if (domain == "example.org" && local == "staff") {
        v.kind = RecipientVerdict::Kind::kLocal;  // a group: expanded after spool
        v.categorize = true;
      } else if (l->address == "down@example.org") {
        v.kind = RecipientVerdict::Kind::kError;
        v.error = transient_error("4.4.3", "Directory unavailable");
      } else if (domain != "example.org" && !l->for_vrfy) {
        v.kind = RecipientVerdict::Kind::kError;
        v.error = permanent_error("5.7.1", "Relay access denied");
      } else {
        v.kind = RecipientVerdict::Kind::kUnknown;
      }
      more = session_.on_recipient_result(std::move(v));
    } else if (std::holds_alternative<BeginMessage>(a)) {
      if (opt_.fail_begin) {
        more = session_.on_begin_result(Result<std::string>(transient_error("4.3.0", "Queue write failed")));
      } else {
        spool_.clear();
        spooling_ = true;
        more = session_.on_begin_result(Result<std::string>("Q" + std::to_string(next_id_++)));
      }
    } else if (auto* b = std::get_if<BodyData>(&a)) {
      if (!spooling_) {
        out_.replies += "[BODY WITHOUT SPOOL]";
      }
      spool_ += b->bytes;
    } else if (auto* c = std::get_if<CommitMessage>(&a)) {
      if (opt_.deferred) {
        spool_ = std::move(commit_spool_);
      } else if (!spooling_) {
        out_.replies += "[COMMIT WITHOUT SPOOL]";
      }
      spooling_ = false;
      if (opt_.fail_commit) {
        more = session_.on_commit_result(Result<std::string>(transient_error("4.3.0", "Queue write failed")));
      } else {
        out_.messages.push_back(c->envelope);
        // Strip the Received header (its first line and its continuation lines).
        std::size_t end = 0;
        while (true) {
          std::size_t eol = spool_.find("\r\n", end);
          end = eol + 2;
          if (end >= spool_.size() || spool_[end] != '\t') {
            break;
          }
        }
        out_.bodies.push_back(spool_.substr(end));
        more = session_.on_commit_result(Result<std::string>(c->envelope.id));
      }
    } else if (std::holds_alternative<AbortMessage>(a)) {
      spooling_ = false;
      spool_.clear();
    } else if (auto* st = std::get_if<AuthStep>(&a)) {
      more = session_.on_auth_result(auth_step(*st));
    } else if (auto* at = std::get_if<CheckAtrn>(&a)) {
      // alice is the on-demand relay customer of client.example (mail waiting) and
      // quiet.example (nothing waiting).
      AtrnVerdict v;
      std::vector<std::string> want = at->domains;
      if (want.empty()) {
        want = {"client.example", "quiet.example"};
      }
      v.kind = AtrnVerdict::Kind::kNoMail;
      for (const auto& d : want) {
        if (at->user != "alice" || (d != "client.example" && d != "quiet.example")) {
          v.kind = AtrnVerdict::Kind::kForbidden;
          v.denied = d;
          v.domains.clear();
          break;
        }
        if (d == "client.example") {
          v.kind = AtrnVerdict::Kind::kTurn;
          v.domains.push_back(d);
        }
      }
      more = session_.on_atrn_result(std::move(v));
    } else if (auto* et = std::get_if<RunEtrn>(&a)) {
      // The twin queues for partner.example (and below it), with mail waiting for
      // mail.partner.example only.
      queue::EtrnResult r;
      const auto& req = et->request;
      bool ours = req.name == "partner.example" || req.name == "mail.partner.example";
      r.outcome = !ours ? queue::EtrnOutcome::kNotAllowed
                  : (req.name == "mail.partner.example" ||
                     req.kind == queue::EtrnRequest::Kind::kSubdomains)
                      ? queue::EtrnOutcome::kStarted
                      : queue::EtrnOutcome::kNothingQueued;
      r.reason = "not a node we queue for";
      more = session_.on_etrn_result(etrn_reply(req, r));
    } else if (auto* ls = std::get_if<LinkStateReceived>(&a)) {
      out_.link_states.push_back(ls->payload);
      more = session_.on_link_state_result(opt_.link_state_reply);
    } else if (auto* ta = std::get_if<TurnAround>(&a)) {
      out_.turned_for = ta->domains;
    } else if (std::holds_alternative<AuthAbort>(a)) {
      ++out_.auth_aborts;
      auth_mech_.clear();
    } else if (std::holds_alternative<BeginTls>(a)) {
      // The handshake "happens" here; the replies after it are marked so a scenario can
      // tell what was said over TLS.
      ++out_.tls_handshakes;
      out_.replies += "[TLS]";
      more = session_.on_tls_result(!opt_.fail_tls);
    }
    for (auto it = more.rbegin(); it != more.rend(); ++it) {
      q.push_front(std::move(*it));
    }
  }
}

// The SASL twin: PLAIN "\0alice\0secret" (user) and "\0node2\0secret" (a peer server);
// password "down" is a temporary failure. LOGIN asks "Username:" then "Password:".
// GSSAPI: initial "tok1", we answer "srv", the client "tok2": node2@EXAMPLE.TEST (a peer);
// "tok3" instead: carol@EXAMPLE.TEST (valid, no peer rights).
AuthVerdict Harness::auth_step(const AuthStep& st) {
  using K = AuthVerdict::Kind;
  if (st.first) {
    auth_mech_ = st.mechanism;
    auth_user_.clear();
    ++out_.auth_exchanges;
  }
  auto login = [](const std::string& user, const std::string& pw) {
    if (pw == "down") {
      return AuthVerdict{K::kTemporary, {}, {}, false};
    }
    if ((user == "alice" || user == "node2") && pw == "secret") {
      return AuthVerdict{K::kSuccess, {}, user, user == "node2"};
    }
    return AuthVerdict{K::kFailed, {}, {}, false};
  };
  if (auth_mech_ == "PLAIN") {
    if (!st.response) {
      return AuthVerdict{K::kContinue, "", {}, false};
    }
    const std::string& r = *st.response;
    if (r.empty() || r[0] != '\0' || std::count(r.begin(), r.end(), '\0') != 2) {
      return AuthVerdict{K::kFailed, {}, {}, false};
    }
    std::size_t second = r.find('\0', 1);
    return login(r.substr(1, second - 1), r.substr(second + 1));
  }
  if (auth_mech_ == "LOGIN") {
    if (st.first && !st.response) {
      return AuthVerdict{K::kContinue, "Username:", {}, false};
    }
    if (auth_user_.empty()) {
      auth_user_ = st.response.value_or("?");
      return AuthVerdict{K::kContinue, "Password:", {}, false};
    }
    return login(auth_user_, st.response.value_or(""));
  }
  if (auth_mech_ == "GSSAPI") {
    std::string r = st.response.value_or("");
    if (st.first) {
      return r == "tok1" ? AuthVerdict{K::kContinue, "srv", {}, false}
                         : AuthVerdict{K::kFailed, {}, {}, false};
    }
    if (r == "tok2") {
      return AuthVerdict{K::kSuccess, {}, "node2@EXAMPLE.TEST", true};
    }
    if (r == "tok3") {
      return AuthVerdict{K::kSuccess, {}, "carol@EXAMPLE.TEST", false};
    }
  }
  return AuthVerdict{K::kFailed, {}, {}, false};
}

void Harness::feed_pieces(std::string_view input, std::size_t piece, bool late_answers) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < input.size() && !session_.closed(); i += piece, ++n) {
    feed(input.substr(i, piece));
    if (late_answers && n % 2 == 1) {
      answer_pending();
    }
  }
  while (answer_pending()) {
  }
}

bool Harness::answer_pending() {
  if (pending_.empty()) {
    return false;
  }
  Actions one;
  one.push_back(std::move(pending_.front()));
  pending_.erase(pending_.begin());
  answering_ = true;
  perform(std::move(one));
  return true;
}

Outcome Harness::run(std::string_view input, std::size_t chunk) {
  if (opt_.start) {
    start();
  }
  if (chunk == 0) {
    feed(input);
  } else {
    for (std::size_t i = 0; i < input.size() && !session_.closed(); i += chunk) {
      feed(input.substr(i, chunk));
    }
  }
  if (opt_.eof) {
    perform(session_.on_eof());
  }
  out_.closed = session_.closed();
  out_.awaiting_left = session_.awaiting() != Awaiting::kNothing;
  return out_;
}

std::string unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '{') {
      std::size_t star = s.find('*', i), close = s.find('}', i);
      if (star != std::string_view::npos && close != std::string_view::npos && star < close) {
        std::size_t n = std::stoul(std::string(s.substr(i + 1, star - i - 1)));
        std::string unit = unescape(s.substr(star + 1, close - star - 1));
        for (std::size_t k = 0; k < n; ++k) {
          out += unit;
        }
        i = close;
        continue;
      }
    }
    if (s[i] != '\\' || i + 1 >= s.size()) {
      out.push_back(s[i]);
      continue;
    }
    char c = s[++i];
    if (c == 'r') out.push_back('\r');
    else if (c == 'n') out.push_back('\n');
    else if (c == 't') out.push_back('\t');
    else if (c == '0') out.push_back('\0');
    else if (c == 'x' && i + 2 < s.size() + 0 + 1) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else out.push_back(c);
  }
  return out;
}

}  // namespace bh::smtp::testing
