// MxLookup, the resolution logic without any DNS traffic: questions out, answers in.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "routing/mx_resolver.h"
#include "tests/routing/routing_test_util.h"

namespace bh::routing {
namespace {

using testing::SeededRandom;
using Status = DnsAnswer::Status;

DnsRecord mx(unsigned pref, const std::string& host) {
  DnsRecord r;
  r.name = "example.test";
  r.type = DnsType::kMx;
  r.preference = static_cast<std::uint16_t>(pref);
  r.target = host;
  return r;
}

DnsRecord addr(const std::string& owner, const std::string& address) {
  DnsRecord r;
  r.name = owner;
  r.type = address.find(':') == std::string::npos ? DnsType::kA : DnsType::kAaaa;
  r.address = address;
  return r;
}

DnsAnswer ok(std::vector<DnsRecord> answers, std::vector<DnsRecord> additional = {}) {
  DnsAnswer a;
  a.status = Status::kOk;
  a.reply.answers = std::move(answers);
  a.reply.additional = std::move(additional);
  return a;
}

DnsAnswer status(Status s, std::string detail = "") {
  DnsAnswer a;
  a.status = s;
  a.detail = std::move(detail);
  return a;
}

// A fake zone: answers every address question from a table; names not in it are
// NXDOMAIN, names listed with no addresses of the asked family are NODATA.
struct Zone {
  std::map<std::string, std::vector<std::string>> hosts;
  std::set<std::string> failing;  // these answer kFailed

  DnsAnswer answer(const DnsQuestion& q) const {
    if (failing.count(q.name)) {
      return status(Status::kFailed, "SERVFAIL");
    }
    auto it = hosts.find(q.name);
    if (it == hosts.end()) {
      return status(Status::kNxDomain);
    }
    std::vector<DnsRecord> recs;
    for (const auto& a : it->second) {
      auto r = addr(q.name, a);
      if (r.type == q.type) {
        recs.push_back(r);
      }
    }
    return recs.empty() ? status(Status::kNoData) : ok(recs);
  }
};

// Runs a lookup whose MX question gets `mx_answer` and whose address questions are
// answered from `zone`. Counts the address questions asked.
Result<std::vector<MxHost>> run(const std::string& domain, const DnsAnswer& mx_answer, const Zone& zone,
                                Random& random, std::size_t* address_questions = nullptr) {
  MxLookup lookup(domain, random);
  std::vector<DnsQuestion> queue = lookup.start();
  std::size_t asked = 0;
  while (!queue.empty()) {
    DnsQuestion q = queue.back();
    queue.pop_back();
    DnsAnswer a;
    if (q.type == DnsType::kMx) {
      EXPECT_EQ(q.name, lookup.domain());
      a = mx_answer;
    } else {
      ++asked;
      a = zone.answer(q);
    }
    for (auto& more : lookup.on_answer(q, a)) {
      queue.push_back(more);
    }
  }
  EXPECT_TRUE(lookup.done());
  if (address_questions != nullptr) {
    *address_questions = asked;
  }
  return lookup.result();
}

std::vector<std::string> names(const std::vector<MxHost>& hosts) {
  std::vector<std::string> out;
  for (const auto& h : hosts) {
    out.push_back(h.host);
  }
  return out;
}

TEST(MxLookup, FirstQuestionIsTheMxOfTheNormalizedDomain) {
  SeededRandom random(1);
  MxLookup lookup("Example.TEST.", random);
  auto q = lookup.start();
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0], (DnsQuestion{"example.test", DnsType::kMx}));
  EXPECT_FALSE(lookup.done());
}

TEST(MxLookup, PreferenceOrderAndAddressesIpv4First) {
  SeededRandom random(1);
  Zone zone{{{"mx1.example.test", {"::2", "127.0.0.2"}}, {"mx2.example.test", {"127.0.0.3"}}}, {}};
  auto r = run("example.test", ok({mx(20, "mx2.example.test"), mx(10, "mx1.example.test")}), zone, random);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].host, "mx1.example.test");
  EXPECT_EQ((*r)[0].preference, 10);
  EXPECT_FALSE((*r)[0].implicit);
  EXPECT_EQ((*r)[0].addresses, (std::vector<std::string>{"127.0.0.2", "::2"}));
  EXPECT_EQ((*r)[1].host, "mx2.example.test");
  EXPECT_EQ((*r)[1].addresses, (std::vector<std::string>{"127.0.0.3"}));
}

TEST(MxLookup, EqualPreferenceIsShuffledWithTheInjectedRandom) {
  Zone zone{{{"a.example.test", {"127.0.0.1"}}, {"b.example.test", {"127.0.0.2"}},
             {"c.example.test", {"127.0.0.3"}}, {"z.example.test", {"127.0.0.9"}}},
            {}};
  auto answer = ok({mx(5, "z.example.test"), mx(1, "a.example.test"), mx(1, "b.example.test"),
                    mx(1, "c.example.test")});
  SeededRandom random(99);
  std::set<std::string> firsts;
  for (int i = 0; i < 200; ++i) {
    auto r = run("example.test", answer, zone, random);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->size(), 4u);
    EXPECT_EQ(r->back().host, "z.example.test");  // preference 5 always last
    firsts.insert(r->front().host);
  }
  EXPECT_EQ(firsts, (std::set<std::string>{"a.example.test", "b.example.test", "c.example.test"}));
}

TEST(MxLookup, AdditionalSectionSavesTheAddressQueries) {
  SeededRandom random(1);
  std::size_t asked = 99;
  auto r = run("example.test",
               ok({mx(10, "mx1.example.test"), mx(20, "mx2.example.test")},
                  {addr("mx1.example.test", "127.0.0.2"), addr("mx1.example.test", "::2"),
                   addr("unrelated.example.test", "127.0.0.66")}),
               Zone{{{"mx2.example.test", {"127.0.0.3"}}}, {}}, random, &asked);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(asked, 2u);  // A and AAAA for mx2 only
  EXPECT_EQ((*r)[0].addresses, (std::vector<std::string>{"127.0.0.2", "::2"}));
  EXPECT_EQ((*r)[1].addresses, (std::vector<std::string>{"127.0.0.3"}));
}

TEST(MxLookup, NoMxRecordsMeansImplicitMx) {
  SeededRandom random(1);
  Zone zone{{{"example.test", {"127.0.0.4"}}}, {}};
  for (const auto& answer : {status(Status::kNoData), ok({})}) {
    auto r = run("example.test", answer, zone, random);
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_EQ(r->size(), 1u);
    EXPECT_EQ((*r)[0].host, "example.test");
    EXPECT_EQ((*r)[0].preference, 0);
    EXPECT_TRUE((*r)[0].implicit);
    EXPECT_EQ((*r)[0].addresses, (std::vector<std::string>{"127.0.0.4"}));
  }
}

TEST(MxLookup, ImplicitMxWithoutAddressesIsPermanent512) {
  SeededRandom random(1);
  Zone zone{{{"example.test", {}}}, {}};
  auto r = run("example.test", status(Status::kNoData), zone, random);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().transient());
  EXPECT_EQ(r.error().enhanced, "5.1.2");
}

TEST(MxLookup, NxDomainIsPermanent512) {
  SeededRandom random(1);
  auto r = run("nope.example.test", status(Status::kNxDomain), Zone{}, random);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().transient());
  EXPECT_EQ(r.error().enhanced, "5.1.2");
  EXPECT_NE(r.error().message.find("nope.example.test"), std::string::npos);
}

TEST(MxLookup, FailedMxQueryIsTransient443) {
  SeededRandom random(1);
  auto r = run("example.test", status(Status::kFailed, "DNS timeout"), Zone{}, random);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().transient());
  EXPECT_EQ(r.error().enhanced, "4.4.3");
  EXPECT_NE(r.error().message.find("DNS timeout"), std::string::npos);
}

TEST(MxLookup, NullMxIsPermanent5110) {
  SeededRandom random(1);
  std::size_t asked = 99;
  auto r = run("example.test", ok({mx(0, "")}), Zone{}, random, &asked);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().transient());
  EXPECT_EQ(r.error().enhanced, "5.1.10");
  EXPECT_EQ(asked, 0u);
}

TEST(MxLookup, NullMxNextToRealMxIsIgnored) {
  SeededRandom random(1);
  Zone zone{{{"mx1.example.test", {"127.0.0.2"}}}, {}};
  auto r = run("example.test", ok({mx(0, ""), mx(10, "mx1.example.test")}), zone, random);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(names(*r), (std::vector<std::string>{"mx1.example.test"}));
}

TEST(MxLookup, HostsWithoutAddressesAreLeftOut) {
  SeededRandom random(1);
  Zone zone{{{"mx2.example.test", {"127.0.0.3"}}}, {}};  // mx1: NXDOMAIN
  auto r = run("example.test", ok({mx(10, "mx1.example.test"), mx(20, "mx2.example.test")}), zone, random);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(names(*r), (std::vector<std::string>{"mx2.example.test"}));
}

TEST(MxLookup, NoHostWithAnAddressIsPermanent544) {
  SeededRandom random(1);
  auto r = run("example.test", ok({mx(10, "mx1.example.test"), mx(20, "mx2.example.test")}), Zone{}, random);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().transient());
  EXPECT_EQ(r.error().enhanced, "5.4.4");
}

TEST(MxLookup, NoAddressAndAFailedLookupIsTransient) {
  SeededRandom random(1);
  Zone zone{{}, {"mx2.example.test"}};
  auto r = run("example.test", ok({mx(10, "mx1.example.test"), mx(20, "mx2.example.test")}), zone, random);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().transient());
  EXPECT_EQ(r.error().enhanced, "4.4.3");
  EXPECT_NE(r.error().message.find("mx2.example.test: SERVFAIL"), std::string::npos) << r.error().message;
}

TEST(MxLookup, DuplicateHostsKeepTheirLowestPreference) {
  SeededRandom random(1);
  Zone zone{{{"mx1.example.test", {"127.0.0.2"}}, {"mx2.example.test", {"127.0.0.3"}}}, {}};
  auto r = run("example.test",
               ok({mx(30, "mx1.example.test"), mx(20, "mx2.example.test"), mx(10, "mx1.example.test")}),
               zone, random);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].host, "mx1.example.test");
  EXPECT_EQ((*r)[0].preference, 10);
}

TEST(MxLookup, HostsAndAddressesAreCapped) {
  SeededRandom random(1);
  std::vector<DnsRecord> records;
  Zone zone;
  for (int i = 0; i < 25; ++i) {
    std::string h = "mx" + std::to_string(i) + ".example.test";
    records.push_back(mx(static_cast<unsigned>(i), h));
    for (int j = 1; j <= 15; ++j) {
      zone.hosts[h].push_back("127.0." + std::to_string(i) + "." + std::to_string(j));
    }
  }
  std::size_t asked = 0;
  auto r = run("example.test", ok(records), zone, random, &asked);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), kMaxMxHosts);
  EXPECT_EQ(asked, 2 * kMaxMxHosts);
  EXPECT_EQ(r->back().host, "mx9.example.test");
  for (const auto& h : *r) {
    EXPECT_EQ(h.addresses.size(), kMaxAddressesPerHost);
  }
}

TEST(MxLookup, InvalidDomainEndsBeforeAnyQuestion) {
  SeededRandom random(1);
  for (const char* d : {"", "bad..domain", "[192.0.2.1]", "a b.test"}) {
    MxLookup lookup(d, random);
    EXPECT_TRUE(lookup.start().empty()) << d;
    ASSERT_TRUE(lookup.done()) << d;
    auto r = lookup.result();
    ASSERT_FALSE(r.ok()) << d;
    EXPECT_EQ(r.error().enhanced, "5.1.2") << d;
  }
}

}  // namespace
}  // namespace bh::routing
