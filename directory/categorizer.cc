#include "directory/categorizer.h"

#include <deque>
#include <memory>
#include <mutex>
#include <unordered_set>

#include "common/text.h"
#include "directory/ldap_directory.h"
#include "directory/ldap_filter.h"

namespace bh::directory {

namespace {

bool iequal(std::string_view a, std::string_view b) { return ascii_lower(a) == ascii_lower(b); }

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequal(s.substr(0, prefix.size()), prefix);
}

const std::string& first(const LdapEntry& e, const std::string& attr) {
  static const std::string kEmpty;
  const auto& v = e.values(attr);
  return v.empty() ? kEmpty : v.front();
}

}  // namespace

bool parse_range(std::string_view name, std::string_view attribute, unsigned long& lo,
                 unsigned long& hi, bool& last) {
  std::string prefix = ascii_lower(attribute) + ";range=";
  if (!starts_with_ci(name, prefix)) {
    return false;
  }
  std::string_view r = name.substr(prefix.size());
  auto dash = r.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 >= r.size()) {
    return false;
  }
  auto number = [](std::string_view s, unsigned long& out) {
    if (s.empty() || s.size() > 9) {
      return false;
    }
    out = 0;
    for (char c : s) {
      if (c < '0' || c > '9') {
        return false;
      }
      out = out * 10 + static_cast<unsigned long>(c - '0');
    }
    return true;
  };
  if (!number(r.substr(0, dash), lo)) {
    return false;
  }
  std::string_view h = r.substr(dash + 1);
  last = h == "*";
  if (last) {
    hi = 0;
    return true;
  }
  return number(h, hi) && hi >= lo;
}

bool plausible_filter(std::string_view f) {
  if (f.size() < 3 || f.size() > 4096 || f.front() != '(' || f.back() != ')') {
    return false;
  }
  int depth = 0;
  for (std::size_t i = 0; i < f.size(); ++i) {
    auto c = static_cast<unsigned char>(f[i]);
    if (c < 0x20 || c == 0x7f) {
      return false;
    }
    if (c == '(') {
      ++depth;
    } else if (c == ')') {
      if (--depth < 0 || (depth == 0 && i + 1 != f.size())) {
        return false;
      }
    }
  }
  return depth == 0;
}

// The state of one categorize() call. Every search holds a shared_ptr to it.
struct Categorizer::Call : std::enable_shared_from_this<Categorizer::Call> {
  Categorizer* owner = nullptr;
  std::function<void(CategorizeOutcome)> done;

  std::mutex mu;
  CategorizeOutcome out;
  bool finished = false;
  std::size_t pending = 0;    // searches issued or queued, not yet answered
  std::size_t in_flight = 0;  // issued
  std::deque<std::function<void()>> queued;
  std::unordered_set<std::string> visited;    // lower-cased entry DNs
  std::unordered_set<std::string> addresses;  // lower-cased final addresses

  const CategorizerOptions& opt() const { return owner->options_; }

  void note(unsigned depth, const std::string& line) {
    out.trace.push_back(std::string(2 * depth, ' ') + line);
  }
  // With mu held. The caller calls settle() after releasing it.
  void fail(Error e) {
    if (!out.error) {
      out.error = std::move(e);
    }
  }

  // Queues a search (issued by pump() when the window has room).
  void search(LdapSearch s, std::function<void(Result<std::vector<LdapEntry>>)> then) {
    ++pending;
    queued.push_back(
        [self = shared_from_this(), s = std::move(s), then = std::move(then)]() mutable {
          self->owner->searcher_.search(
              std::move(s), [self, then = std::move(then)](Result<std::vector<LdapEntry>> r) {
                {
                  std::lock_guard lock(self->mu);
                  --self->in_flight;
                  --self->pending;
                  if (!self->finished && !self->out.error) {
                    then(std::move(r));
                  }
                }
                self->settle();
              });
        });
  }

  // Issues queued searches up to the window, or answers once nothing is left (or an
  // error ended the call). Called without mu.
  void settle() {
    std::vector<std::function<void()>> go;
    bool answer = false;
    {
      std::lock_guard lock(mu);
      if (finished) {
        return;
      }
      if (out.error || pending == 0) {
        finished = true;
        answer = true;
        queued.clear();
      } else {
        while (!queued.empty() && in_flight < opt().window) {
          go.push_back(std::move(queued.front()));
          queued.pop_front();
          ++in_flight;
        }
      }
    }
    if (answer) {
      if (out.error) {
        out.recipients.clear();
      }
      done(std::move(out));
      return;
    }
    for (auto& g : go) {
      g();
    }
  }

  LdapSearch by_dn(const std::string& dn) const {
    LdapSearch s;
    s.base = dn;
    s.scope = LdapScope::kBase;
    s.filter = "(objectClass=*)";
    s.attributes = owner->wanted_attributes();
    return s;
  }

  void add(unsigned depth, CategorizedRecipient r, const std::string& what) {
    if (!addresses.insert(ascii_lower(r.address)).second) {
      note(depth, what + " " + r.address + ": duplicate, already a recipient");
      return;
    }
    if (out.recipients.size() >= opt().max_recipients) {
      fail(permanent_error("5.2.4", "expansion has more than " +
                                        std::to_string(opt().max_recipients) + " recipients"));
      return;
    }
    std::string line = what + " " + r.address;
    if (!r.mailbox.empty()) {
      line += " -> mailbox " + r.mailbox + " on " + r.home_server;
    } else if (!r.expansion_server.empty()) {
      line += " -> to expansion server " + r.expansion_server;
    } else {
      line += " -> relayed";
    }
    note(depth, line);
    out.recipients.push_back(std::move(r));
  }

  std::string primary_of(const LdapEntry& e) const {
    for (const auto& v : e.values(opt().attributes.proxy_addresses)) {
      if (v.rfind("SMTP:", 0) == 0 && v.size() > 5) {
        return v.substr(5);
      }
    }
    return first(e, opt().attributes.mail);
  }

  bool is_group(const LdapEntry& e) const {
    for (const auto& oc : e.values(opt().attributes.object_class)) {
      for (const auto& g : opt().group_classes) {
        if (iequal(oc, g)) {
          return true;
        }
      }
    }
    const std::string member = ascii_lower(opt().attributes.member);
    for (const auto& [name, values] : e.attributes) {
      if (name == member || name.rfind(member + ";range=", 0) == 0) {
        return true;
      }
    }
    return false;
  }

  // A group names another server to expand it: one recipient for that server.
  bool delegated(unsigned depth, const LdapEntry& e, const std::string& primary) {
    const std::string& server = first(e, opt().attributes.expansion_server);
    if (server.empty() || iequal(server, opt().node_name)) {
      return false;
    }
    CategorizedRecipient r;
    r.address = primary.empty() ? e.dn : primary;
    r.expansion_server = server;
    add(depth + 1, std::move(r), "group");
    return true;
  }

  bool too_deep(unsigned depth, const LdapEntry& e) {
    if (depth < opt().max_depth) {
      return false;
    }
    note(depth, "group " + e.dn + ": nested deeper than " + std::to_string(opt().max_depth));
    fail(permanent_error(
        "5.2.4", "group nesting deeper than " + std::to_string(opt().max_depth) + " at " + e.dn));
    return true;
  }

  // With mu held.
  void entry(unsigned depth, const LdapEntry& e, bool may_redirect) {
    if (out.error) {
      return;
    }
    if (!visited.insert(ascii_lower(e.dn)).second) {
      note(depth, e.dn + ": already expanded in this message (loop or duplicate), skipped");
      return;
    }
    const auto& a = opt().attributes;
    const std::string primary = primary_of(e);
    if (const std::string& query = first(e, a.query_filter); !query.empty()) {
      note(depth, "query-based group " + e.dn + " filter " + query);
      if (delegated(depth, e, primary) || too_deep(depth, e)) {
        return;
      }
      if (!plausible_filter(query)) {
        note(depth + 1, "filter not well formed: not run");
        fail(permanent_error("5.2.4", "query-based group " + e.dn + " has a malformed filter"));
        return;
      }
      LdapSearch s;
      s.base = first(e, a.query_base).empty() ? opt().base_dn : first(e, a.query_base);
      s.scope = LdapScope::kSubtree;
      s.filter = query;
      s.attributes = owner->wanted_attributes();
      s.page_size = opt().page_size;
      s.strict_size = true;
      s.max_entries = opt().max_recipients + 1;
      search(std::move(s), [this, depth](Result<std::vector<LdapEntry>> r) {
        if (!r.ok()) {
          fail(r.error());
          return;
        }
        note(depth + 1, std::to_string(r->size()) + " entries match");
        for (const auto& m : *r) {
          entry(depth + 1, m, true);
        }
      });
      return;
    }
    if (is_group(e)) {
      note(depth, "group " + e.dn);
      if (delegated(depth, e, primary) || too_deep(depth, e)) {
        return;
      }
      members(depth, e.dn, e);
      return;
    }
    if (const std::string& home = first(e, a.home_server); !home.empty()) {
      const std::string& alt = first(e, a.alt_recipient);
      const bool both = iequal(first(e, a.deliver_and_redirect), "TRUE");
      if (!alt.empty() && may_redirect) {
        note(depth, "mailbox " + e.dn + ": forwarded to " + alt +
                        (both ? " and delivered to the mailbox (deliverAndRedirect)" : " only"));
        if (both) {
          CategorizedRecipient r;
          r.address = primary.empty() ? e.dn : primary;
          r.mailbox = mailbox_folder(r.address);
          r.home_server = home;
          add(depth + 1, std::move(r), "mailbox");
        }
        search(by_dn(alt), [this, depth, alt](Result<std::vector<LdapEntry>> r) {
          if (!r.ok()) {
            fail(r.error());
            return;
          }
          if (r->empty()) {
            note(depth + 1, "alternate recipient " + alt + " not found");
            fail(permanent_error("5.1.1", "alternate recipient " + alt + " does not exist"));
            return;
          }
          entry(depth + 1, r->front(), false);
        });
        return;
      }
      if (!alt.empty()) {
        note(depth, "mailbox " + e.dn + ": its forward to " + alt +
                        " is not followed (already redirected)");
      }
      CategorizedRecipient r;
      r.address = primary.empty() ? e.dn : primary;
      r.mailbox = mailbox_folder(r.address);
      r.home_server = home;
      add(depth, std::move(r), "mailbox " + e.dn + ":");
      return;
    }
    if (const std::string& target = first(e, a.target_address); !target.empty()) {
      std::string t = target;
      if (starts_with_ci(t, "smtp:")) {
        t = t.substr(5);
      } else if (auto colon = t.find(':'); colon != std::string::npos && colon < t.find('@')) {
        note(depth, "contact " + e.dn + ": target " + target + " is not SMTP, skipped");
        if (depth <= 1) {  // the recipient itself, not a member
          fail(permanent_error("5.1.1", "contact has no SMTP target address"));
        }
        return;
      }
      CategorizedRecipient r;
      r.address = t;
      add(depth, std::move(r), "contact " + e.dn + ": target");
      return;
    }
    note(depth, e.dn + ": no mailbox, no target address, not a group: not deliverable");
    if (depth <= 1) {  // the recipient itself, not a member
      fail(permanent_error("5.1.1", "recipient has no mailbox"));
    }
  }

  // The member DNs of a group entry, following AD's ranged values. With mu held.
  void members(unsigned depth, const std::string& dn, const LdapEntry& e) {
    const std::string member = ascii_lower(opt().attributes.member);
    std::vector<const std::vector<std::string>*> lists;
    bool ranged = false, last = true;
    unsigned long lo = 0, hi = 0;
    for (const auto& [name, values] : e.attributes) {
      if (name == member) {
        lists.push_back(&values);
      } else if (bool l = false; parse_range(name, member, lo, hi, l)) {
        ranged = true;
        last = l;
        lists.push_back(&values);
      }
    }
    std::size_t n = 0;
    for (const auto* l : lists) {
      for (const auto& m : *l) {
        if (out.error) {
          return;
        }
        if (n++ >= opt().max_recipients) {
          fail(permanent_error("5.2.4", "group " + dn + " has more than " +
                                            std::to_string(opt().max_recipients) + " members"));
          return;
        }
        search(by_dn(m), [this, depth, m](Result<std::vector<LdapEntry>> r) {
          if (!r.ok()) {
            fail(r.error());
            return;
          }
          if (r->empty()) {
            note(depth + 1, "member " + m + " not found, skipped");
            return;
          }
          entry(depth + 1, r->front(), true);
        });
      }
    }
    if (ranged && !last) {
      // AD: ask for the next range of values of the same group.
      note(depth + 1, "member values " + std::to_string(lo) + "-" + std::to_string(hi) +
                          ", asking for the next range");
      LdapSearch s;
      s.base = dn;
      s.scope = LdapScope::kBase;
      s.filter = "(objectClass=*)";
      s.attributes = {
          opt().attributes.member + ";range=" + std::to_string(hi + 1) + "-" +
          (opt().member_range > 0 ? std::to_string(hi + opt().member_range) : std::string("*"))};
      search(std::move(s), [this, depth, dn, hi](Result<std::vector<LdapEntry>> r) {
        if (!r.ok()) {
          fail(r.error());
          return;
        }
        if (r->empty()) {
          fail(transient_error("4.4.3", "group " + dn + " vanished during ranged retrieval"));
          return;
        }
        unsigned long nlo = 0, nhi = 0;
        bool nlast = false, found = false;
        for (const auto& [name, values] : r->front().attributes) {
          found = found || parse_range(name, opt().attributes.member, nlo, nhi, nlast);
        }
        if (!found || nlo != hi + 1) {
          fail(transient_error("4.4.3", "group " + dn + ": unexpected ranged retrieval answer"));
          return;
        }
        members(depth, dn, r->front());
      });
    }
  }
};

Categorizer::Categorizer(LdapSearcher& searcher, CategorizerOptions options)
    : searcher_(searcher), options_(std::move(options)) {}

std::vector<std::string> Categorizer::wanted_attributes() const {
  const auto& a = options_.attributes;
  const std::string member =
      options_.member_range > 0 ? a.member + ";range=0-" + std::to_string(options_.member_range - 1)
                                : a.member;
  return {a.proxy_addresses,
          a.mail,
          a.home_server,
          a.object_class,
          member,
          a.target_address,
          a.alt_recipient,
          a.deliver_and_redirect,
          a.expansion_server,
          a.query_filter,
          a.query_base,
          a.require_auth};
}

void Categorizer::categorize(std::string_view address,
                             std::function<void(CategorizeOutcome)> done) {
  auto call = std::make_shared<Call>();
  call->owner = this;
  call->done = std::move(done);
  const auto& a = options_.attributes;
  LdapSearch s;
  s.base = options_.base_dn;
  s.scope = LdapScope::kSubtree;
  s.filter = filter_or({filter_equals_prefixed(a.proxy_addresses, "smtp:", address),
                        filter_equals(a.mail, address)});
  s.attributes = wanted_attributes();
  s.size_limit = 2;
  std::string addr(address);
  {
    std::lock_guard lock(call->mu);
    call->note(0, addr);
    call->search(std::move(s), [c = call.get(), addr](Result<std::vector<LdapEntry>> r) {
      if (!r.ok()) {
        c->note(1, "directory error: " + r.error().message);
        c->fail(r.error());
        return;
      }
      if (r->empty()) {
        c->note(1, "no entry has this address");
        c->fail(permanent_error("5.1.1", "no such recipient"));
        return;
      }
      if (r->size() > 1) {
        c->note(1, "more than one entry has this address");
        c->fail(permanent_error("5.1.4", "ambiguous address: more than one directory entry"));
        return;
      }
      const LdapEntry& e = r->front();
      std::string how = "mail";
      for (const auto& v : e.values(c->opt().attributes.proxy_addresses)) {
        if (starts_with_ci(v, "smtp:") && iequal(std::string_view(v).substr(5), addr)) {
          how = c->opt().attributes.proxy_addresses + " " + v;
          break;
        }
      }
      if (how == "mail") {
        how = c->opt().attributes.mail + " " + first(e, c->opt().attributes.mail);
      }
      c->note(1, "entry " + e.dn + " (matched " + how + ")");
      c->entry(1, e, true);
    });
  }
  call->settle();
}

}  // namespace bh::directory
