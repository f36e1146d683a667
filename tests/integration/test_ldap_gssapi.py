"""The directory bound with SASL GSSAPI (directory.ldap.sasl_mechanism; issue 5), against a
real MIT KDC and a slapd that reads only for authenticated users.

tests/support/kdc.py makes realm EXAMPLE.TEST with ldap/127.0.0.1 (slapd's key) and
node1 (the node's key in auth.client_keytab). slapd answers nothing to anonymous
clients. Proves:
- the node binds with Kerberos, RCPT resolves (250) and slapd's own log shows the
  GSSAPI bind as node1@EXAMPLE.TEST;
- a node whose keytab holds a principal the KDC does not know cannot bind: 451 4.4.3,
  never a 5xx and never an anonymous fallback;
- bind_dn together with sasl_mechanism GSSAPI is a config error naming the key.
"""
import os
import shutil
import smtplib
import subprocess
import tempfile
import unittest

from bhnode import BH_BIN, Node
from kdc import Kdc
from slapd import Slapd

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "deploy", "ldap", "bridgehead.schema")
PEOPLE = "ou=people,dc=example,dc=test"
REALM = "EXAMPLE.TEST"
ALICE = (f"dn: uid=alice,{PEOPLE}\nobjectClass: inetOrgPerson\nobjectClass: bhMailRecipient\n"
         "uid: alice\ncn: alice\nsn: alice\nproxyAddresses: SMTP:alice@example.test\nbhHomeServer: node1\n\n")


class LdapGssapi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bh-ldapgss-")
        cls.kdc = Kdc(REALM, {"ldap/127.0.0.1": None, "node1": None, "stranger": None}, hosts=("127.0.0.1",))
        cls.slapd_keytab = cls.kdc.export_keytab("ldap/127.0.0.1", os.path.join(cls.tmp, "slapd.keytab"))
        cls.node_keytab = cls.kdc.export_keytab("node1", os.path.join(cls.tmp, "node1.keytab"))
        cls.stranger_keytab = cls.kdc.export_keytab("stranger", os.path.join(cls.tmp, "stranger.keytab"))
        # The stranger's principal goes away after its keytab was written: the KDC no
        # longer knows it.
        cls.kdc._admin(f"delprinc -force stranger@{REALM}")
        cls.slapd = Slapd(ALICE, schemas=[SCHEMA], log_stats=True,
                          env={"KRB5_KTNAME": "FILE:" + cls.slapd_keytab, "KRB5_CONFIG": cls.kdc.conf},
                          global_lines=["sasl-host 127.0.0.1", f"sasl-realm {REALM}"],
                          acl="access to * by users read by * none")

    @classmethod
    def tearDownClass(cls):
        cls.slapd.stop()
        cls.kdc.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def node(self, keytab):
        directory = ["ldap:", f'  global_catalog: ["{self.slapd.uri}"]', "  sasl_mechanism: GSSAPI",
                     f'  base_dn: "{PEOPLE}"', "  timeout_ms: 3000", "  positive_ttl_s: 0", "  negative_ttl_s: 0",
                     "  attributes:", "    home_server: bhHomeServer"]
        n = Node(domains=("example.test",), directory=directory, extra=f"auth:\n  client_keytab: {keytab}\n",
                 env={"KRB5_CONFIG": self.kdc.conf})
        n.start()
        self.addCleanup(n.cleanup)
        self.addCleanup(n.stop)
        return n

    def rcpt(self, node, address):
        with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=20) as s:
            s.ehlo("client.example")
            s.mail("someone@elsewhere.example")
            return s.rcpt(address)

    def test_kerberos_bind_resolves_and_slapd_saw_gssapi(self):
        n = self.node(self.node_keytab)
        code, text = self.rcpt(n, "alice@example.test")
        self.assertEqual(code, 250, text)
        self.assertEqual(self.rcpt(n, "nobody@example.test")[0], 550)
        log = self.slapd.read_log()
        self.assertIn("mech=GSSAPI", log)
        self.assertIn("uid=node1,cn=example.test,cn=gssapi,cn=auth", log.lower())

    def test_an_unknown_principal_cannot_bind(self):
        n = self.node(self.stranger_keytab)
        code, text = self.rcpt(n, "alice@example.test")
        self.assertEqual(code, 451, text)
        self.assertIn(b"4.4.3", text)

    def test_bind_dn_with_gssapi_is_a_config_error(self):
        n = Node(domains=("example.test",), directory=[
            "ldap:", f'  global_catalog: ["{self.slapd.uri}"]', "  sasl_mechanism: GSSAPI",
            '  bind_dn: "cn=x"', "  password_file: /nonexistent", f'  base_dn: "{PEOPLE}"'])
        self.addCleanup(n.cleanup)
        r = subprocess.run([BH_BIN, "--check-config", "--config", n.config], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("directory.ldap.bind_dn", r.stderr)


if __name__ == "__main__":
    unittest.main()
