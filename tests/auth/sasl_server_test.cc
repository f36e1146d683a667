#include "auth/sasl_server.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

namespace bh::auth {
namespace {

using Kind = StepResult::Kind;
using namespace std::string_literals;

// An in-memory password source (the LDAP checker's twin for these unit tests).
class MapChecker final : public PasswordChecker {
 public:
  std::map<std::string, std::string, std::less<>> users{{"alice", "s3cret"}};
  bool down = false;
  int calls = 0;
  Result<void> check(std::string_view user, std::string_view password) override {
    ++calls;
    if (down) {
      return transient_error("4.7.0", "down");
    }
    auto it = users.find(user);
    if (it == users.end() || it->second != password) {
      return permanent_error("5.7.8", "no");
    }
    return {};
  }
};

std::shared_ptr<SaslService> service(std::shared_ptr<PasswordChecker> checker,
                                     std::vector<std::string> mechs = {"PLAIN", "LOGIN"}) {
  SaslOptions o;
  o.hostname = "mx.example.test";
  o.mechanisms = std::move(mechs);
  o.checker = std::move(checker);
  auto s = SaslService::create(std::move(o));
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  return s.ok() ? s.value() : nullptr;
}

TEST(SaslService, RejectsMechanismsItCannotOffer) {
  SaslOptions o;
  o.hostname = "mx.example.test";
  o.mechanisms = {"PLAIN", "CRAM-MD5"};
  auto s = SaslService::create(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("CRAM-MD5"), std::string::npos);
}

TEST(SaslService, SupportsOnlyConfiguredMechanismsCaseInsensitively) {
  auto s = service(std::make_shared<MapChecker>(), {"login"});
  EXPECT_TRUE(s->supports("LOGIN"));
  EXPECT_TRUE(s->supports("Login"));
  EXPECT_FALSE(s->supports("PLAIN"));
  EXPECT_FALSE(s->supports("GSSAPI"));
}

TEST(SaslService, PlainSucceedsWithTheRightPasswordOnly) {
  auto checker = std::make_shared<MapChecker>();
  auto s = service(checker);
  auto ok = s->begin(true).value()->start("PLAIN", "\0alice\0s3cret"s);
  EXPECT_EQ(ok.kind, Kind::kSuccess);
  EXPECT_EQ(ok.user, "alice");
  auto bad = s->begin(true).value()->start("PLAIN", "\0alice\0wrong"s);
  EXPECT_EQ(bad.kind, Kind::kFailed);
  auto nouser = s->begin(true).value()->start("PLAIN", "\0bob\0s3cret"s);
  EXPECT_EQ(nouser.kind, Kind::kFailed);
  EXPECT_EQ(checker->calls, 3);
}

TEST(SaslService, PlainWithoutInitialResponseAsksWithAnEmptyChallenge) {
  auto s = service(std::make_shared<MapChecker>());
  auto ex = s->begin(true).value();
  auto first = ex->start("PLAIN", std::nullopt);
  ASSERT_EQ(first.kind, Kind::kContinue);
  EXPECT_EQ(first.challenge, "");
  auto done = ex->step("\0alice\0s3cret"s);
  EXPECT_EQ(done.kind, Kind::kSuccess);
}

TEST(SaslService, PlainFieldsAreNeverShifted) {
  // hostile-inputs #45: an extra NUL must not turn "er\0pw" into a password "er" or
  // the user into "er"; the whole attempt fails.
  auto checker = std::make_shared<MapChecker>();
  checker->users["us"] = "er";
  checker->users["er"] = "pw";
  auto s = service(checker);
  auto r = s->begin(true).value()->start("PLAIN", "\0us\0er\0pw"s);
  EXPECT_EQ(r.kind, Kind::kFailed);
  // Another identity than the authenticated one is not granted.
  auto proxy = s->begin(true).value()->start("PLAIN", "bob\0alice\0s3cret"s);
  EXPECT_EQ(proxy.kind, Kind::kFailed);
  auto garbage = s->begin(true).value()->start("PLAIN", "alice"s);
  EXPECT_EQ(garbage.kind, Kind::kFailed);
}

TEST(SaslService, LoginTakesThreeRounds) {
  auto s = service(std::make_shared<MapChecker>());
  auto ex = s->begin(true).value();
  auto r1 = ex->start("LOGIN", std::nullopt);
  ASSERT_EQ(r1.kind, Kind::kContinue);
  EXPECT_EQ(r1.challenge, "Username:");
  auto r2 = ex->step("alice");
  ASSERT_EQ(r2.kind, Kind::kContinue);
  EXPECT_EQ(r2.challenge, "Password:");
  auto r3 = ex->step("s3cret");
  EXPECT_EQ(r3.kind, Kind::kSuccess);
  EXPECT_EQ(r3.user, "alice");

  auto ex2 = s->begin(true).value();
  ASSERT_EQ(ex2->start("LOGIN", "alice"s).kind, Kind::kContinue);  // initial response = user
  EXPECT_EQ(ex2->step("nope").kind, Kind::kFailed);
}

TEST(SaslService, AnUnavailableSourceIsTemporary) {
  auto checker = std::make_shared<MapChecker>();
  checker->down = true;
  auto s = service(checker);
  auto r = s->begin(true).value()->start("PLAIN", "\0alice\0s3cret"s);
  EXPECT_EQ(r.kind, Kind::kTemporary);
}

TEST(SaslService, SasldbFileIsAPasswordSource) {
  auto dir = std::filesystem::temp_directory_path() /
             ("bh-sasldb-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto db = (dir / "sasldb2").string();
  std::string cmd = "echo -n 'db-pass' | saslpasswd2 -p -c -f " + db +
                    " -u mx.example.test carol";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "saslpasswd2 (sasl2-bin) is needed";
  SaslOptions o;
  o.hostname = "mx.example.test";
  o.mechanisms = {"PLAIN", "LOGIN"};
  o.sasldb_path = db;
  auto s = SaslService::create(o).value();
  auto good = s->begin(true).value()->start("PLAIN", "\0carol\0db-pass"s);
  EXPECT_EQ(good.kind, Kind::kSuccess) << good.detail;
  EXPECT_EQ(good.user, "carol");
  auto bad = s->begin(true).value()->start("PLAIN", "\0carol\0other"s);
  EXPECT_EQ(bad.kind, Kind::kFailed);
  auto unknown = s->begin(true).value()->start("PLAIN", "\0dave\0db-pass"s);
  EXPECT_EQ(unknown.kind, Kind::kFailed);
  std::filesystem::remove_all(dir);
}

TEST(SaslService, NoPasswordSourceMeansNoPasswordLogin) {
  SaslOptions o;
  o.hostname = "mx.example.test";
  auto s = SaslService::create(o).value();
  auto r = s->begin(true).value()->start("PLAIN", "\0alice\0s3cret"s);
  EXPECT_EQ(r.kind, Kind::kFailed);
}

}  // namespace
}  // namespace bh::auth
