"""The directory over TLS (directory.ldap.tls; issue 5): ldaps:// and StartTLS on ldap://,
with the server certificate checked against the configured CA.

slapd (tests/support/slapd.py, tls=...) serves a certificate for 127.0.0.1 signed by a
test CA made here with the openssl CLI. Proves, with RCPT TO over smtplib:
- ldaps:// with the right CA: 250; StartTLS on ldap:// with the right CA: 250, and slapd's
  own log shows the StartTLS extended operation on the node's connection;
- a CA that did not sign the server's certificate: 451 4.4.3 (never 5xx, never a
  plaintext fallback), for ldaps:// and for StartTLS alike;
- a relative tls.ca_file is a config error naming the key.
"""
import os
import shutil
import smtplib
import subprocess
import tempfile
import unittest

from bhnode import Node, BH_BIN
from slapd import ADMIN, ADMIN_PW, Slapd
from tlstest import make_ca, make_leaf

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "deploy", "ldap", "bridgehead.schema")
PEOPLE = "ou=people,dc=example,dc=test"
ALICE = (f"dn: uid=alice,{PEOPLE}\nobjectClass: inetOrgPerson\nobjectClass: bhMailRecipient\n"
         "uid: alice\ncn: alice\nsn: alice\nproxyAddresses: SMTP:alice@example.test\nbhHomeServer: node1\n\n")


class LdapTls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bh-ldaptls-")
        cls.good = os.path.join(cls.tmp, "good")
        cls.other = os.path.join(cls.tmp, "other")
        for d in (cls.good, cls.other):
            os.mkdir(d)
            make_ca(d)
        make_leaf(cls.good, "ldap", "ldap.example.test")
        cls.slapd = Slapd(ALICE, schemas=[SCHEMA], log_stats=True,
                          tls=(f"{cls.good}/ldap.pem", f"{cls.good}/ldap.key"))
        cls.pw = os.path.join(cls.tmp, "pw")
        with open(cls.pw, "w") as f:
            f.write(ADMIN_PW + "\n")

    @classmethod
    def tearDownClass(cls):
        cls.slapd.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def node(self, uri, ca, start_tls=False):
        directory = ["ldap:", f'  global_catalog: ["{uri}"]', f'  bind_dn: "{ADMIN}"',
                     f"  password_file: {self.pw}", f'  base_dn: "{PEOPLE}"', "  timeout_ms: 1500",
                     "  positive_ttl_s: 0", "  negative_ttl_s: 0", "  attributes:", "    home_server: bhHomeServer",
                     "  tls:", f"    ca_file: {ca}", f"    start_tls: {'true' if start_tls else 'false'}"]
        n = Node(domains=("example.test",), directory=directory)
        n.start()
        self.addCleanup(n.cleanup)
        self.addCleanup(n.stop)
        return n

    def rcpt(self, node):
        with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=20) as s:
            s.ehlo("client.example")
            s.mail("someone@elsewhere.example")
            return s.rcpt("alice@example.test")

    def test_ldaps_with_the_right_ca(self):
        n = self.node(self.slapd.ldaps_uri, f"{self.good}/ca.pem")
        self.assertEqual(self.rcpt(n)[0], 250)

    def test_starttls_with_the_right_ca(self):
        before = self.slapd.read_log().count("oid=1.3.6.1.4.1.1466.20037")
        n = self.node(self.slapd.uri, f"{self.good}/ca.pem", start_tls=True)
        self.assertEqual(self.rcpt(n)[0], 250)
        self.assertGreater(self.slapd.read_log().count("oid=1.3.6.1.4.1.1466.20037"), before)

    def test_a_certificate_from_another_ca_is_refused(self):
        for uri, start_tls in ((self.slapd.ldaps_uri, False), (self.slapd.uri, True)):
            with self.subTest(uri=uri):
                n = self.node(uri, f"{self.other}/ca.pem", start_tls=start_tls)
                code, text = self.rcpt(n)
                self.assertEqual(code, 451, text)
                self.assertIn(b"4.4.3", text)

    def test_relative_ca_file_is_a_config_error(self):
        n = Node(domains=("example.test",), directory=[
            "ldap:", f'  global_catalog: ["{self.slapd.ldaps_uri}"]', f'  base_dn: "{PEOPLE}"',
            "  tls:", "    ca_file: certs/ca.pem"])
        self.addCleanup(n.cleanup)
        r = subprocess.run([BH_BIN, "--check-config", "--config", n.config], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("directory.ldap.tls.ca_file", r.stderr)


if __name__ == "__main__":
    unittest.main()
