"""bhctl join against a real slapd (issue 5; admin/join.h).

slapd serves two ports over one database (domain controller and global catalog roles)
with deploy/ldap/bridgehead.schema and deploy/ldap/sample-organization.ldif. A node that
starts with a file directory joins it. Proves:
- join checks both roles, registers the node as a bhServer under its routing group with
  its SMTP address, and writes the directory section of the node's config (the old file
  kept as .before-join); the node restarted on that config resolves recipients from
  LDAP and reads the topology (now 7 servers);
- joining again updates the registration instead of failing;
- a directory without the needed attributes (slapd without the schema), a wrong password
  and an unknown routing group each fail with a message naming what is wrong, and the
  config file is left byte for byte as it was.
"""
import json
import os
import shutil
import smtplib
import subprocess
import tempfile
import unittest

from bhnode import BHCTL_BIN, Node, wait_until
from slapd import ADMIN, ADMIN_PW, Slapd

HERE = os.path.dirname(os.path.abspath(__file__))
DEPLOY = os.path.join(HERE, "..", "..", "deploy", "ldap")
CONFIG_DN = "ou=config,dc=example,dc=test"
PEOPLE = "ou=people,dc=example,dc=test"


class Join(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(DEPLOY, "sample-organization.ldif")) as f:
            cls.slapd = Slapd(f.read(), schemas=[os.path.join(DEPLOY, "bridgehead.schema")], listeners=2,
                              indexes=["proxyAddresses eq", "mail eq"])
        cls.bare = Slapd("")  # no bridgehead schema: no proxyAddresses, no bhServer
        cls.tmp = tempfile.mkdtemp(prefix="bh-join-")
        cls.pw = os.path.join(cls.tmp, "pw")
        with open(cls.pw, "w") as f:
            f.write(ADMIN_PW + "\n")
        cls.bad_pw = os.path.join(cls.tmp, "bad")
        with open(cls.bad_pw, "w") as f:
            f.write("wrong\n")

    @classmethod
    def tearDownClass(cls):
        cls.slapd.stop()
        cls.bare.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def new_node(self):
        n = Node(domains=("example.test",), mailboxes=("zed@example.test",))
        with open(n.config) as f:
            text = f.read().replace("name: node1", "name: node7")
        with open(n.config, "w") as f:
            f.write(text)
        self.addCleanup(n.cleanup)
        return n

    def join(self, node, *extra, uri=None, gc=None, pw=None, group="rg2"):
        dc_uri, gc_uri = self.slapd.uris
        args = [BHCTL_BIN, "--config", node.config, "join", "--ldap", uri or dc_uri, "--gc", gc or gc_uri,
                "--bind-dn", ADMIN, "--password-file", pw or self.pw, "--base-dn", PEOPLE,
                "--config-dn", CONFIG_DN, "--routing-group", group, "--home-server-attribute", "bhHomeServer",
                *extra]
        return subprocess.run(args, capture_output=True, text=True, timeout=60)

    def server_entry(self, name):
        r = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", self.slapd.uri, "-D", ADMIN, "-w", ADMIN_PW,
                            "-b", CONFIG_DN, f"(&(objectClass=bhServer)(cn={name}))"],
                           capture_output=True, text=True)
        return r.stdout

    def test_join_registers_writes_the_config_and_the_node_uses_it(self):
        n = self.new_node()
        r = self.join(n, "--link-state-address", "127.0.0.1:6917")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("global catalog schema has the recipient attributes", r.stdout)
        self.assertIn(f"registered cn=node7,cn=rg2,{CONFIG_DN}", r.stdout)
        entry = self.server_entry("node7")
        self.assertIn("bhRoutingGroupName: rg2", entry)
        self.assertIn(f"bhSmtpAddress: 127.0.0.1:{n.smtp_port}", entry)
        self.assertIn("bhLinkStateAddress: 127.0.0.1:6917", entry)
        with open(n.config) as f:
            text = f.read()
        self.assertIn("  ldap:\n", text)
        self.assertNotIn("mailboxes: [zed@example.test]", text)
        self.assertTrue(os.path.exists(n.config + ".before-join"))
        with open(n.config + ".before-join") as f:
            self.assertIn("zed@example.test", f.read())

        n.start()
        self.addCleanup(n.stop)
        with smtplib.SMTP("127.0.0.1", n.smtp_port, timeout=20) as s:
            s.ehlo("client.example")
            s.mail("someone@elsewhere.example")
            self.assertEqual(s.rcpt("alice@example.test")[0], 250)
            self.assertEqual(s.rcpt("zed@example.test")[0], 550)

        def servers():
            out = n.bhctl("status", "--json")
            return json.loads(out.stdout)["directory"].get("servers") if out.returncode == 0 else None
        wait_until(lambda: servers() == 7, timeout=20, what="the topology with this node")

        again = self.join(n)
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
        self.assertIn(f"updated cn=node7,cn=rg2,{CONFIG_DN}", again.stdout)

    def assert_refused(self, r, config, before, words):
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        for w in words:
            self.assertIn(w, r.stderr)
        with open(config) as f:
            self.assertEqual(f.read(), before)
        self.assertFalse(os.path.exists(config + ".before-join"))

    def test_refusals_leave_the_config_alone(self):
        n = self.new_node()
        with open(n.config) as f:
            before = f.read()
        registered = self.server_entry("node7")  # the other test may have joined already
        self.assert_refused(self.join(n, uri=self.bare.uri, gc=self.bare.uri), n.config, before,
                            ["global catalog schema lacks proxyAddresses", "bhHomeServer"])
        self.assert_refused(self.join(n, pw=self.bad_pw), n.config, before,
                            ["domain controller", "Invalid credentials"])
        self.assert_refused(self.join(n, group="rg9"), n.config, before, ["routing group rg9 does not exist"])
        self.assertEqual(self.server_entry("node7"), registered)


if __name__ == "__main__":
    unittest.main()
