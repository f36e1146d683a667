#include "auth/ldap_password.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace bh::auth {
namespace {

TEST(EscapeDnValue, EscapesEverythingThatCouldChangeTheDn) {
  EXPECT_EQ(escape_dn_value("alice"), "alice");
  EXPECT_EQ(escape_dn_value("x,ou=admins"), "x\\,ou\\=admins");
  EXPECT_EQ(escape_dn_value("a+b\"c\\d<e>f;g"), "a\\+b\\\"c\\\\d\\<e\\>f\\;g");
  EXPECT_EQ(escape_dn_value(" #lead trail "), "\\ #lead trail\\ ");
  EXPECT_EQ(escape_dn_value("#x"), "\\#x");
  EXPECT_EQ(escape_dn_value(std::string("a\0b\n", 4)), "a\\00b\\0a");
}

TEST(LdapPasswordChecker, EmptyPasswordIsRefusedWithoutABind) {
  // An empty password would be an unauthenticated bind (RFC 4513 §5.1.2), which
  // servers accept: it must never count as a login. The URI is never contacted.
  LdapPasswordChecker c({"ldap://127.0.0.1:1/", "uid={user},dc=example,dc=test"});
  auto r = c.check("alice", "");
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().transient());
}

TEST(LdapPasswordChecker, ADirectoryThatIsDownIsTransient) {
  // A port on loopback that nobody listens on: bound, then closed.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(fd);
  LdapPasswordChecker c({"ldap://127.0.0.1:" + std::to_string(port) + "/",
                         "uid={user},dc=example,dc=test", std::chrono::milliseconds(500)});
  auto r = c.check("alice", "pw");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().transient()) << r.error().message;
}

}  // namespace
}  // namespace bh::auth
