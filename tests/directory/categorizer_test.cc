// The categorizer over an in-memory directory twin: groups (nested, loops, duplicates,
// depth cap, size cap, AD ranged retrieval of member), query-based groups (paged), contacts,
// forwarding with and without delivery to the mailbox, expansion servers, and that a
// directory fault mid-expansion is transient and loses no recipient silently.
// The same paths against a real slapd: tests/integration/test_categorizer.py.
#include "directory/categorizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>

#include "common/text.h"
#include "directory/ldap_directory.h"
#include "directory/ldap_filter.h"

namespace bh::directory {
namespace {

// A tiny directory: entries by DN; searches answered only in flush() (never before
// search() returns, like LdapClient). Understands the searches the categorizer sends:
// by address (the filter it builds), base by DN, a query filter from `queries`, and AD's
// ranged retrieval of member when `range_size` > 0.
class DirectoryTwin final : public LdapSearcher {
 public:
  void search(LdapSearch request, LdapSearchCallback done) override {
    requests.push_back(request);
    queued.emplace_back(std::move(request), std::move(done));
    max_outstanding = std::max(max_outstanding, queued.size());
  }
  void flush() {
    while (!queued.empty()) {
      auto [req, done] = std::move(queued.front());
      queued.pop_front();
      if (fail_after >= 0 && answered >= fail_after) {
        done(transient_error("4.4.3", "directory unavailable: test"));
        continue;
      }
      ++answered;
      done(answer(req));
    }
  }
  LdapEntry& add(const std::string& dn) {
    auto& e = entries[ascii_lower(dn)];
    e.dn = dn;
    return e;
  }
  LdapEntry& user(const std::string& dn, const std::string& primary,
                  const std::string& home = "node1") {
    auto& e = add(dn);
    e.attributes["proxyaddresses"] = {"SMTP:" + primary};
    e.attributes["mail"] = {primary};
    if (!home.empty()) {
      e.attributes["msexchhomeservername"] = {home};
    }
    return e;
  }
  LdapEntry& group(const std::string& dn, const std::string& address,
                   std::vector<std::string> members) {
    auto& e = add(dn);
    e.attributes["objectclass"] = {"top", "group"};
    e.attributes["proxyaddresses"] = {"SMTP:" + address};
    e.attributes["member"] = std::move(members);
    return e;
  }

  std::map<std::string, LdapEntry> entries;                 // by lower-cased DN
  std::map<std::string, std::vector<std::string>> queries;  // filter -> DNs
  std::size_t range_size = 0;
  int fail_after = -1;  // >= 0: answers after this many fail with 4.4.3
  int answered = 0;
  std::vector<LdapSearch> requests;
  std::deque<std::pair<LdapSearch, LdapSearchCallback>> queued;
  std::size_t max_outstanding = 0;

 private:
  Result<std::vector<LdapEntry>> answer(const LdapSearch& req) {
    if (req.scope == LdapScope::kBase) {
      auto it = entries.find(ascii_lower(req.base));
      if (it == entries.end()) {
        return std::vector<LdapEntry>{};
      }
      return std::vector<LdapEntry>{shape(req, it->second)};
    }
    if (auto q = queries.find(req.filter); q != queries.end()) {
      std::vector<LdapEntry> out;
      for (const auto& dn : q->second) {
        out.push_back(entries.at(ascii_lower(dn)));
      }
      return out;
    }
    std::vector<LdapEntry> out;
    for (const auto& [dn, e] : entries) {
      for (const auto& v : e.values("proxyaddresses")) {
        if (req.filter.find(escape_filter_value(ascii_lower(v))) != std::string::npos ||
            ascii_lower(req.filter).find("=" + escape_filter_value(ascii_lower(v)) + ")") !=
                std::string::npos) {
          out.push_back(shape(req, e));
          break;
        }
      }
    }
    return out;
  }
  // The entry as a server answers `req`: member values in the range asked for, or as
  // the server ranges them by itself (range_size).
  LdapEntry shape(const LdapSearch& req, const LdapEntry& e) const {
    for (const auto& a : req.attributes) {
      unsigned long lo = 0, hi = 0;
      bool last = false;
      if (parse_range(a, "member", lo, hi, last)) {  // asked: "member;range=lo-hi" or "lo-*"
        std::size_t n = last ? SIZE_MAX : hi - lo + 1;
        return slice(e, lo, range_size > 0 ? std::min(n, range_size) : n, true);
      }
    }
    return range_size > 0 ? slice(e, 0, range_size, false) : e;
  }
  // At most n member values from lo, named "member;range=lo-hi" ("lo-*" for the last);
  // a plain "member" when they all fit and no range was asked for (AD's behaviour; Samba
  // only ranges when asked, which range_size = 0 with explicit requests models).
  static LdapEntry slice(LdapEntry e, std::size_t lo, std::size_t n, bool asked) {
    auto it = e.attributes.find("member");
    if (it == e.attributes.end() || (!asked && lo == 0 && it->second.size() <= n)) {
      return e;
    }
    std::vector<std::string> all = std::move(it->second);
    e.attributes.erase(it);
    std::size_t hi =
        std::min(all.size(), lo >= all.size() ? all.size() : lo + std::min(n, all.size() - lo));
    std::string name = "member;range=" + std::to_string(lo) + "-" +
                       (hi == all.size() ? std::string("*") : std::to_string(hi - 1));
    e.attributes[name] =
        std::vector<std::string>(all.begin() + static_cast<long>(std::min(lo, all.size())),
                                 all.begin() + static_cast<long>(hi));
    return e;
  }
};

struct Fixture {
  DirectoryTwin dir;
  CategorizerOptions opt = [] {
    CategorizerOptions o;
    o.base_dn = "dc=example,dc=test";
    o.node_name = "node1";
    return o;
  }();
  CategorizeOutcome run(const std::string& address) {
    Categorizer cat(dir, opt);
    CategorizeOutcome got;
    int calls = 0;
    cat.categorize(address, [&](CategorizeOutcome o) {
      ++calls;
      got = std::move(o);
    });
    EXPECT_EQ(calls, 0) << "answered before search() returned";
    dir.flush();
    EXPECT_EQ(calls, 1);
    return got;
  }
};

std::vector<std::string> addresses(const CategorizeOutcome& o) {
  std::vector<std::string> a;
  for (const auto& r : o.recipients) {
    a.push_back(r.address);
  }
  std::sort(a.begin(), a.end());
  return a;
}

std::string trace(const CategorizeOutcome& o) {
  std::string t;
  for (const auto& l : o.trace) {
    t += l + "\n";
  }
  return t;
}

TEST(Categorizer, MailboxByProxyAddressWithItsFolderAndTheAttributeThatMatched) {
  Fixture f;
  f.dir.user("cn=Alice,dc=example,dc=test", "alice@example.test");
  auto o = f.run("ALICE@example.test");
  ASSERT_FALSE(o.error) << o.error->message;
  ASSERT_EQ(o.recipients.size(), 1u);
  EXPECT_EQ(o.recipients[0].mailbox, "alice_40example.test");
  EXPECT_EQ(o.recipients[0].home_server, "node1");
  EXPECT_NE(trace(o).find("matched proxyAddresses SMTP:alice@example.test"), std::string::npos)
      << trace(o);
}

TEST(Categorizer, UnknownAndAmbiguousArePermanent) {
  Fixture f;
  auto o = f.run("nobody@example.test");
  ASSERT_TRUE(o.error);
  EXPECT_EQ(o.error->enhanced, "5.1.1");
  EXPECT_FALSE(o.error->transient());
  f.dir.user("cn=A,dc=example,dc=test", "same@example.test");
  f.dir.user("cn=B,dc=example,dc=test", "same@example.test");
  o = f.run("same@example.test");
  ASSERT_TRUE(o.error);
  EXPECT_EQ(o.error->enhanced, "5.1.4");
}

TEST(Categorizer, NestedGroupsExpandRecursivelyWithDuplicatesRemoved) {
  Fixture f;
  f.dir.user("cn=Alice,dc=example,dc=test", "alice@example.test");
  f.dir.user("cn=Bob,dc=example,dc=test", "bob@example.test", "node2");
  f.dir.add("cn=Ext,dc=example,dc=test").attributes["targetaddress"] = {"SMTP:ext@partner.example"};
  f.dir.group(
      "cn=Inner,dc=example,dc=test", "inner@example.test",
      {"cn=Bob,dc=example,dc=test", "cn=Ext,dc=example,dc=test", "cn=Alice,dc=example,dc=test"});
  f.dir.group(
      "cn=All,dc=example,dc=test", "all@example.test",
      {"cn=Alice,dc=example,dc=test", "cn=Inner,dc=example,dc=test", "cn=Gone,dc=example,dc=test"});
  auto o = f.run("all@example.test");
  ASSERT_FALSE(o.error) << o.error->message;
  EXPECT_EQ(addresses(o), (std::vector<std::string>{"alice@example.test", "bob@example.test",
                                                    "ext@partner.example"}));
  for (const auto& r : o.recipients) {
    EXPECT_EQ(r.mailbox.empty(), r.address == "ext@partner.example") << r.address;
  }
  EXPECT_NE(trace(o).find("member cn=Gone,dc=example,dc=test not found, skipped"),
            std::string::npos);
  EXPECT_NE(trace(o).find("already expanded in this message"), std::string::npos) << trace(o);
}

TEST(Categorizer, LoopABAStopsAtTheSecondVisit) {
  Fixture f;
  f.dir.user("cn=Alice,dc=example,dc=test", "alice@example.test");
  f.dir.user("cn=Bob,dc=example,dc=test", "bob@example.test");
  f.dir.group("cn=A,dc=example,dc=test", "a@example.test",
              {"cn=B,dc=example,dc=test", "cn=Alice,dc=example,dc=test"});
  f.dir.group("cn=B,dc=example,dc=test", "b@example.test",
              {"cn=A,dc=example,dc=test", "cn=Bob,dc=example,dc=test"});
  auto o = f.run("a@example.test");
  ASSERT_FALSE(o.error) << o.error->message;
  EXPECT_EQ(addresses(o), (std::vector<std::string>{"alice@example.test", "bob@example.test"}));
  EXPECT_LT(f.dir.requests.size(), 10u);
}

TEST(Categorizer, NestingDeeperThanTheCapFailsTheWholeRecipient) {
  Fixture f;
  f.opt.max_depth = 5;
  f.dir.user("cn=Alice,dc=example,dc=test", "alice@example.test");
  std::string inner = "cn=Alice,dc=example,dc=test";
  for (int i = 0; i < 8; ++i) {
    std::string dn = "cn=G" + std::to_string(i) + ",dc=example,dc=test";
    f.dir.group(dn, "g" + std::to_string(i) + "@example.test", {inner});
    inner = dn;
  }
  auto o = f.run("g7@example.test");
  ASSERT_TRUE(o.error);
  EXPECT_EQ(o.error->enhanced, "5.2.4");
  EXPECT_TRUE(o.recipients.empty());
  auto ok = f.run("g2@example.test");  // 3 levels: fine
  ASSERT_FALSE(ok.error);
  EXPECT_EQ(addresses(ok), std::vector<std::string>{"alice@example.test"});
}

TEST(Categorizer, MoreMembersThanTheCapIsAPermanentError) {
  Fixture f;
  f.opt.max_recipients = 10;
  std::vector<std::string> members;
  for (int i = 0; i < 11; ++i) {
    std::string dn = "cn=U" + std::to_string(i) + ",dc=example,dc=test";
    f.dir.user(dn, "u" + std::to_string(i) + "@example.test");
    members.push_back(dn);
  }
  f.dir.group("cn=Big,dc=example,dc=test", "big@example.test", members);
  auto o = f.run("big@example.test");
  ASSERT_TRUE(o.error);
  EXPECT_EQ(o.error->enhanced, "5.2.4");
}

TEST(Categorizer, RangedRetrievalOfALargeGroupAndAWindowOnSearchesInFlight) {
  Fixture f;
  f.dir.range_size = 1500;
  f.opt.window = 64;
  std::vector<std::string> members;
  for (int i = 0; i < 3600; ++i) {
    std::string dn = "cn=U" + std::to_string(i) + ",dc=example,dc=test";
    f.dir.user(dn, "u" + std::to_string(i) + "@example.test");
    members.push_back(dn);
  }
  f.dir.group("cn=Big,dc=example,dc=test", "big@example.test", members);
  auto o = f.run("big@example.test");
  ASSERT_FALSE(o.error) << o.error->message;
  EXPECT_EQ(o.recipients.size(), 3600u);
  int range_requests = 0;
  for (const auto& r : f.dir.requests) {
    for (const auto& a : r.attributes) {
      range_requests += a.rfind("member;range=", 0) == 0 ? 1 : 0;
    }
  }
  EXPECT_EQ(range_requests, 2);  // 1500-* and 3000-*
  EXPECT_LE(f.dir.max_outstanding, 64u);
  EXPECT_NE(trace(o).find("member values 0-1499, asking for the next range"), std::string::npos);
}

// A server that never ranges on its own (Samba) when the node asks for ranges itself.
TEST(Categorizer, ExplicitRangesAreAskedForOneAfterTheOther) {
  Fixture f;
  f.opt.member_range = 1000;
  std::vector<std::string> members;
  for (int i = 0; i < 2500; ++i) {
    std::string dn = "cn=U" + std::to_string(i) + ",dc=example,dc=test";
    f.dir.user(dn, "u" + std::to_string(i) + "@example.test");
    members.push_back(dn);
  }
  f.dir.group("cn=Big,dc=example,dc=test", "big@example.test", members);
  f.dir.group("cn=Small,dc=example,dc=test", "small@example.test", {members[0], members[1]});
  auto o = f.run("big@example.test");
  ASSERT_FALSE(o.error) << o.error->message;
  EXPECT_EQ(o.recipients.size(), 2500u);
  std::vector<std::string> asked;
  for (const auto& r : f.dir.requests) {
    for (const auto& a : r.attributes) {
      if (a.rfind("member;range=", 0) == 0) {
        asked.push_back(a);
      }
    }
  }
  // Every entry fetch asks for the first range; the follow-ups are the next ranges.
  EXPECT_NE(std::find(asked.begin(), asked.end(), "member;range=1000-1999"), asked.end());
  EXPECT_NE(std::find(asked.begin(), asked.end(), "member;range=2000-2999"), asked.end());
  EXPECT_EQ(std::count(asked.begin(), asked.end(), "member;range=0-999"),
            static_cast<long>(f.dir.requests.size() - 2));
  EXPECT_EQ(asked.size(), f.dir.requests.size());
  auto small = f.run("small@example.test");  // "member;range=0-*" at once
  ASSERT_FALSE(small.error);
  EXPECT_EQ(small.recipients.size(), 2u);
}

TEST(Categorizer, QueryBasedGroupRunsItsFilterInPagesAndRefusesAMalformedOne) {
  Fixture f;
  f.dir.user("cn=Alice,dc=example,dc=test", "alice@example.test");
  f.dir.user("cn=Bob,dc=example,dc=test", "bob@example.test");
  auto& q = f.dir.add("cn=Sales,dc=example,dc=test");
  q.attributes["proxyaddresses"] = {"SMTP:sales@example.test"};
  q.attributes["msexchdynamicdlfilter"] = {"(department=sales)"};
  f.dir.queries["(department=sales)"] = {"cn=Alice,dc=example,dc=test",
                                         "cn=Bob,dc=example,dc=test"};
  auto o = f.run("sales@example.test");
  ASSERT_FALSE(o.error) << o.error->message;
  EXPECT_EQ(addresses(o), (std::vector<std::string>{"alice@example.test", "bob@example.test"}));
  auto it = std::find_if(f.dir.requests.begin(), f.dir.requests.end(),
                         [](const LdapSearch& s) { return s.filter == "(department=sales)"; });
  ASSERT_NE(it, f.dir.requests.end());
  EXPECT_EQ(it->page_size, 500);
  EXPECT_TRUE(it->strict_size);
  EXPECT_EQ(it->base, "dc=example,dc=test");

  q.attributes["msexchdynamicdlfilter"] = {"(department=sales))(uid=*"};
  o = f.run("sales@example.test");
  ASSERT_TRUE(o.error);
  EXPECT_EQ(o.error->enhanced, "5.2.4");
}

TEST(Categorizer, ForwardOnlyAndDeliverAndRedirect) {
  Fixture f;
  f.dir.add("cn=Ext,dc=example,dc=test").attributes["targetaddress"] = {"smtp:fwd@partner.example"};
  auto& bob = f.dir.user("cn=Bob,dc=example,dc=test", "bob@example.test");
  bob.attributes["altrecipient"] = {"cn=Ext,dc=example,dc=test"};
  auto o = f.run("bob@example.test");
  ASSERT_FALSE(o.error) << o.error->message;
  EXPECT_EQ(addresses(o), std::vector<std::string>{"fwd@partner.example"});

  bob.attributes["deliverandredirect"] = {"TRUE"};
  o = f.run("bob@example.test");
  ASSERT_FALSE(o.error) << o.error->message;
  EXPECT_EQ(addresses(o), (std::vector<std::string>{"bob@example.test", "fwd@partner.example"}));

  // Redirected once: the alternate recipient's own forward is not followed.
  auto& carol = f.dir.user("cn=Carol,dc=example,dc=test", "carol@example.test");
  carol.attributes["altrecipient"] = {"cn=Ext,dc=example,dc=test"};
  bob.attributes["altrecipient"] = {"cn=Carol,dc=example,dc=test"};
  bob.attributes.erase("deliverandredirect");
  o = f.run("bob@example.test");
  ASSERT_FALSE(o.error) << o.error->message;
  EXPECT_EQ(addresses(o), std::vector<std::string>{"carol@example.test"});
}

TEST(Categorizer, ContactWithoutAnSmtpTargetIsNotDeliverable) {
  Fixture f;
  auto& c = f.dir.add("cn=X400,dc=example,dc=test");
  c.attributes["proxyaddresses"] = {"SMTP:x400@example.test"};
  c.attributes["targetaddress"] = {"X400:c=US;a= ;p=Example"};
  auto o = f.run("x400@example.test");
  ASSERT_TRUE(o.error);
  EXPECT_EQ(o.error->enhanced, "5.1.1");
}

TEST(Categorizer, AGroupWithAnotherExpansionServerIsHandedToIt) {
  Fixture f;
  f.dir.user("cn=Alice,dc=example,dc=test", "alice@example.test");
  auto& g = f.dir.group("cn=Remote,dc=example,dc=test", "remote@example.test",
                        {"cn=Alice,dc=example,dc=test"});
  g.attributes["msexchexpansionservername"] = {"node7"};
  auto o = f.run("remote@example.test");
  ASSERT_FALSE(o.error);
  ASSERT_EQ(o.recipients.size(), 1u);
  EXPECT_EQ(o.recipients[0].address, "remote@example.test");
  EXPECT_EQ(o.recipients[0].expansion_server, "node7");
  g.attributes["msexchexpansionservername"] = {"NODE1"};  // this node: expanded here
  o = f.run("remote@example.test");
  ASSERT_FALSE(o.error);
  EXPECT_EQ(addresses(o), std::vector<std::string>{"alice@example.test"});
}

TEST(Categorizer, ADirectoryFaultMidExpansionIsTransientAndDropsThePartialList) {
  Fixture f;
  std::vector<std::string> members;
  for (int i = 0; i < 20; ++i) {
    std::string dn = "cn=U" + std::to_string(i) + ",dc=example,dc=test";
    f.dir.user(dn, "u" + std::to_string(i) + "@example.test");
    members.push_back(dn);
  }
  f.dir.group("cn=G,dc=example,dc=test", "g@example.test", members);
  f.dir.fail_after = 5;
  auto o = f.run("g@example.test");
  ASSERT_TRUE(o.error);
  EXPECT_TRUE(o.error->transient());
  EXPECT_EQ(o.error->enhanced, "4.4.3");
  EXPECT_TRUE(o.recipients.empty());
}

TEST(Categorizer, RangesAndFilters) {
  unsigned long lo = 0, hi = 0;
  bool last = false;
  EXPECT_TRUE(parse_range("member;range=0-1499", "member", lo, hi, last));
  EXPECT_EQ(lo, 0u);
  EXPECT_EQ(hi, 1499u);
  EXPECT_FALSE(last);
  EXPECT_TRUE(parse_range("Member;Range=1500-*", "member", lo, hi, last));
  EXPECT_EQ(lo, 1500u);
  EXPECT_TRUE(last);
  for (const char* bad :
       {"member", "member;range=", "member;range=-5", "member;range=5-", "member;range=9-1",
        "member;range=1x-2", "member;range=0-99999999999", "mail;range=0-1"}) {
    EXPECT_FALSE(parse_range(bad, "member", lo, hi, last)) << bad;
  }
  EXPECT_TRUE(plausible_filter("(department=sales)"));
  EXPECT_TRUE(plausible_filter("(&(objectClass=user)(|(l=Paris)(l=Oslo)))"));
  for (const char* bad :
       {"", "department=sales", "(a=b))(c=d", "((a=b)", "(a=b)(c=d)", "(a=\x01)"}) {
    EXPECT_FALSE(plausible_filter(bad)) << bad;
  }
  EXPECT_FALSE(plausible_filter("(" + std::string(5000, 'a') + ")"));
}

}  // namespace
}  // namespace bh::directory
