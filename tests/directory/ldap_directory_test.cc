// LdapDirectory over an in-memory searcher (the logic above the client): the filter it
// sends, how entries become answers, what is cached, and that faults stay transient.
// The same paths against a real slapd: tests/integration/test_ldap_directory.py.
#include "directory/ldap_directory.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <optional>

namespace bh::directory {
namespace {

using std::chrono::seconds;

// Answers from a table keyed by filter, but only when the test calls flush() (search()
// never answers before it returns, like LdapClient).
class TwinSearcher final : public LdapSearcher {
 public:
  void search(LdapSearch request, LdapSearchCallback done) override {
    requests.push_back(request);
    queued.emplace_back(std::move(request), std::move(done));
  }
  void flush() {
    while (!queued.empty()) {
      auto [req, done] = std::move(queued.front());
      queued.pop_front();
      if (down) {
        done(transient_error("4.4.3", "directory unavailable: test"));
        continue;
      }
      auto it = table.find(req.filter);
      done(it == table.end() ? std::vector<LdapEntry>{} : it->second);
    }
  }
  bool down = false;
  std::map<std::string, std::vector<LdapEntry>> table;
  std::vector<LdapSearch> requests;
  std::deque<std::pair<LdapSearch, LdapSearchCallback>> queued;
};

LdapEntry user(const std::string& dn, std::vector<std::string> proxies, std::string mail,
               std::string home) {
  LdapEntry e;
  e.dn = dn;
  e.attributes["proxyaddresses"] = std::move(proxies);
  if (!mail.empty()) {
    e.attributes["mail"] = {std::move(mail)};
  }
  if (!home.empty()) {
    e.attributes["bhhomeserver"] = {std::move(home)};
  }
  return e;
}

struct Fixture {
  ManualClock clock;
  TwinSearcher twin;
  LdapDirectory dir;
  explicit Fixture(ResolutionCacheOptions cache = {seconds(300), seconds(60), 100})
      : dir(twin, clock, options(cache)) {}
  static LdapDirectoryOptions options(ResolutionCacheOptions cache) {
    LdapDirectoryOptions o;
    o.base_dn = "ou=people,dc=example,dc=test";
    o.attributes.home_server = "bhHomeServer";
    o.cache = cache;
    return o;
  }
  std::optional<Result<Resolution>> resolve(const std::string& a) {
    std::optional<Result<Resolution>> out;
    dir.resolve(a, [&](Result<Resolution> r) { out = std::move(r); });
    twin.flush();
    return out;
  }
};

const char* kAliceFilter =
    "(|(proxyAddresses=smtp:a.liddell@example.test)(mail=a.liddell@example.test))";

TEST(LdapDirectory, FilterAndRequest) {
  Fixture f;
  f.resolve("a.liddell@example.test");
  ASSERT_EQ(f.twin.requests.size(), 1u);
  const auto& r = f.twin.requests[0];
  EXPECT_EQ(r.filter, kAliceFilter);
  EXPECT_EQ(r.base, "ou=people,dc=example,dc=test");
  EXPECT_EQ(r.scope, LdapScope::kSubtree);
  EXPECT_EQ(r.attributes, (std::vector<std::string>{"proxyAddresses", "mail", "bhHomeServer", "objectClass",
                                                    "msExchDynamicDLFilter", "targetAddress", "altRecipient",
                                                    "msExchRequireAuthToSendTo"}));
  EXPECT_EQ(r.size_limit, 2);
}

TEST(LdapDirectory, HostileAddressIsEscapedNotAWildcard) {
  Fixture f;
  EXPECT_EQ(f.dir.filter_for("*)(mail=*@example.test"),
            "(|(proxyAddresses=smtp:\\2a\\29\\28mail=\\2a@example.test)"
            "(mail=\\2a\\29\\28mail=\\2a@example.test))");
}

TEST(LdapDirectory, SecondaryAddressResolvesToPrimaryMailbox) {
  Fixture f;
  f.twin.table["(|(proxyAddresses=smtp:alice@example.test)(mail=alice@example.test))"] = {user(
      "uid=alice,ou=people,dc=example,dc=test",
      {"smtp:alice@example.test", "SMTP:A.Liddell@example.test", "X400:c=US;a= ;p=Ex;s=Liddell"},
      "alice@example.test", "node1.example.test")};
  auto r = f.resolve("alice@example.test");
  ASSERT_TRUE(r && r->ok());
  EXPECT_EQ((*r)->kind, RecipientKind::kLocalMailbox);
  EXPECT_EQ((*r)->canonical, "A.Liddell@example.test");
  EXPECT_EQ((*r)->mailbox, "a.liddell_40example.test");
  EXPECT_EQ(f.dir.counters().found, 1u);
}

TEST(LdapDirectory, NoPrimaryProxyFallsBackToMailThenAddress) {
  Fixture f;
  LdapEntry e = user("uid=b", {"smtp:b2@example.test"}, "b@example.test", "n1");
  EXPECT_EQ(f.dir.classify("b2@example.test", {e})->canonical, "b@example.test");
  e.attributes.erase("mail");
  EXPECT_EQ(f.dir.classify("b2@example.test", {e})->canonical, "b2@example.test");
  EXPECT_EQ(f.dir.classify("b2@example.test", {e})->mailbox, "b2_40example.test");
}

TEST(LdapDirectory, InAClusterAMailboxHomedElsewhereIsRoutedToItsServer) {
  ManualClock clock;
  TwinSearcher twin;
  LdapDirectoryOptions o = Fixture::options({seconds(300), seconds(60), 100});
  o.this_server = "node1";
  LdapDirectory dir(twin, clock, o);
  auto here = dir.classify("a@example.test", {user("uid=a", {"SMTP:a@example.test"}, "", "NODE1")});
  ASSERT_TRUE(here.ok());
  EXPECT_EQ(here->kind, RecipientKind::kLocalMailbox);
  EXPECT_EQ(here->mailbox, "a_40example.test");  // the same name in another case is this node
  EXPECT_TRUE(here->home_server.empty());
  auto there = dir.classify("b@example.test", {user("uid=b", {"SMTP:b@example.test"}, "", "node4")});
  ASSERT_TRUE(there.ok());
  EXPECT_EQ(there->kind, RecipientKind::kLocalMailbox);
  EXPECT_TRUE(there->mailbox.empty());
  EXPECT_EQ(there->home_server, "node4");
  EXPECT_EQ(there->canonical, "b@example.test");
  // Outside a cluster (no this_server) every mailbox is here.
  Fixture f;
  auto standalone = f.dir.classify("b@example.test", {user("uid=b", {"SMTP:b@example.test"}, "", "node4")});
  EXPECT_EQ(standalone->mailbox, "b_40example.test");
  EXPECT_TRUE(standalone->home_server.empty());
}

TEST(LdapDirectory, NotFoundAndNoMailboxAreUnknown) {
  Fixture f;
  auto r = f.resolve("nobody@example.test");
  ASSERT_TRUE(r && r->ok());
  EXPECT_EQ((*r)->kind, RecipientKind::kUnknown);
  // A mail-enabled entry without a home server, a target or members: not deliverable.
  EXPECT_EQ(f.dir.classify("c@example.test", {user("cn=c", {"SMTP:c@example.test"}, "", "")})->kind,
            RecipientKind::kUnknown);
}

TEST(LdapDirectory, GroupsContactsAndForwardsAreAcceptedForTheCategorizer) {
  Fixture f;
  LdapEntry g = user("cn=g", {"SMTP:g@example.test"}, "", "");
  g.attributes["objectclass"] = {"top", "groupOfNames"};
  auto r = f.dir.classify("g@example.test", {g});
  EXPECT_EQ(r->kind, RecipientKind::kCategorize);
  EXPECT_FALSE(r->senders_must_authenticate);
  EXPECT_TRUE(r->mailbox.empty());
  g.attributes["msexchrequireauthtosendto"] = {"TRUE"};
  EXPECT_TRUE(f.dir.classify("g@example.test", {g})->senders_must_authenticate);

  LdapEntry q = user("cn=q", {"SMTP:q@example.test"}, "", "");
  q.attributes["msexchdynamicdlfilter"] = {"(l=Oslo)"};
  EXPECT_EQ(f.dir.classify("q@example.test", {q})->kind, RecipientKind::kCategorize);

  LdapEntry c = user("cn=c", {"SMTP:c@example.test"}, "", "");
  c.attributes["targetaddress"] = {"SMTP:c@partner.example"};
  EXPECT_EQ(f.dir.classify("c@example.test", {c})->kind, RecipientKind::kCategorize);

  LdapEntry m = user("uid=m", {"SMTP:m@example.test"}, "", "n1");
  EXPECT_EQ(f.dir.classify("m@example.test", {m})->kind, RecipientKind::kLocalMailbox);
  m.attributes["altrecipient"] = {"cn=c"};
  EXPECT_EQ(f.dir.classify("m@example.test", {m})->kind, RecipientKind::kCategorize);
}

TEST(LdapDirectory, TwoEntriesAreAmbiguousPermanent) {
  Fixture f;
  auto e = user("uid=x", {"SMTP:x@example.test"}, "", "n1");
  auto r = f.dir.classify("x@example.test", {e, e});
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().transient());
  EXPECT_EQ(r.error().enhanced, "5.1.4");
}

TEST(LdapDirectory, DirectoryDownIsTransientAndNotCached) {
  Fixture f;
  f.twin.down = true;
  auto r = f.resolve("alice@example.test");
  ASSERT_TRUE(r);
  ASSERT_FALSE(r->ok());
  EXPECT_TRUE(r->error().transient());
  EXPECT_EQ(r->error().enhanced, "4.4.3");
  f.twin.down = false;
  r = f.resolve("alice@example.test");
  ASSERT_TRUE(r && r->ok());
  EXPECT_EQ(f.twin.requests.size(), 2u) << "the error was not cached";
  EXPECT_EQ(f.dir.counters().errors, 1u);
}

TEST(LdapDirectory, CacheServesRepeatsCaseInsensitivelyUntilTtl) {
  Fixture f({seconds(300), seconds(60), 100});
  f.twin.table[kAliceFilter] = {user("uid=a", {"SMTP:a.liddell@example.test"}, "", "n1")};
  ASSERT_EQ(f.resolve("a.liddell@example.test")->value().kind, RecipientKind::kLocalMailbox);
  // A cache hit answers before resolve() returns, without a search.
  bool answered = false;
  f.dir.resolve("A.Liddell@example.test", [&](Result<Resolution> r) {
    answered = true;
    EXPECT_EQ(r->mailbox, "a.liddell_40example.test");
  });
  EXPECT_TRUE(answered);
  EXPECT_EQ(f.twin.requests.size(), 1u);
  // Negative answers too, with their own TTL.
  f.resolve("nobody@example.test");
  f.resolve("nobody@example.test");
  EXPECT_EQ(f.twin.requests.size(), 2u);
  f.clock.advance(seconds(61));
  f.resolve("nobody@example.test");
  EXPECT_EQ(f.twin.requests.size(), 3u);
  f.resolve("a.liddell@example.test");
  EXPECT_EQ(f.twin.requests.size(), 3u) << "positive TTL not reached yet";
  f.clock.advance(seconds(240));
  f.resolve("a.liddell@example.test");
  EXPECT_EQ(f.twin.requests.size(), 4u);
  auto n = f.dir.counters();
  EXPECT_EQ(n.lookups, 7u);
  EXPECT_EQ(n.cache_hits, 3u);
  EXPECT_EQ(n.searches, 4u);
}

TEST(MailboxFolder, SafeAndOneToOne) {
  EXPECT_EQ(mailbox_folder("Alice.Liddell@Example.TEST"), "alice.liddell_40example.test");
  EXPECT_EQ(mailbox_folder("a_b@x.test"), "a_5fb_40x.test");
  EXPECT_EQ(mailbox_folder("a+b@x.test"), "a_2bb_40x.test");
  EXPECT_NE(mailbox_folder("a_b@x.test"), mailbox_folder("a+b@x.test"));
  EXPECT_EQ(mailbox_folder(".hidden@x.test"), "_2ehidden_40x.test");
  EXPECT_EQ(mailbox_folder("../../etc@x.test"), "_2e._2f.._2fetc_40x.test");
  EXPECT_EQ(mailbox_folder("j\xc3\xb6rg@x.test"), "j_c3_b6rg_40x.test");
  for (std::string s : {std::string("\"a)(b\"@x.test"), std::string(300, 'z') + "@x.test"}) {
    std::string m = mailbox_folder(s);
    EXPECT_LE(m.size(), 200u);
    EXPECT_EQ(m.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789._-"), std::string::npos)
        << m;
  }
  EXPECT_NE(mailbox_folder(std::string(300, 'z') + "@x.test"),
            mailbox_folder(std::string(301, 'z') + "@x.test"));
}

}  // namespace
}  // namespace bh::directory
