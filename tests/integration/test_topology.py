"""The configuration role against a real slapd (directory.ldap.configuration; issue 5).

slapd holds deploy/ldap/bridgehead.schema and deploy/ldap/sample-organization.ldif
(3 routing groups, 6 servers, 7 connectors, users and groups). The node reads the
recipients from one port (the global catalog role) and the configuration from another
(the domain controller role) of the same slapd, every second. Proves, through
`bhctl status --json`:
- the whole topology is read: 3 routing groups, 6 servers, 7 connectors, no warnings;
- `bhctl resolve` of a nested group names each member's home server and its routing
  group (from the topology);
- a connector added and one deleted in the directory are noticed without a restart (the
  digest and the counts change within a few polls);
- a connector that makes no sense (cost 0) is skipped with a warning naming its DN, and
  the rest of the topology stays;
- the domain controller stopped: the last topology stays, the node keeps serving RCPT
  from the global catalog role.
"""
import json
import os
import shutil
import smtplib
import subprocess
import tempfile
import unittest

from bhnode import Node, wait_until
from slapd import ADMIN, ADMIN_PW, Slapd

HERE = os.path.dirname(os.path.abspath(__file__))
DEPLOY = os.path.join(HERE, "..", "..", "deploy", "ldap")
CONFIG_DN = "ou=config,dc=example,dc=test"


class Topology(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(DEPLOY, "sample-organization.ldif")) as f:
            ldif = f.read()
        cls.slapd = Slapd(ldif, schemas=[os.path.join(DEPLOY, "bridgehead.schema")], listeners=2,
                          indexes=["proxyAddresses eq", "mail eq"])
        cls.tmp = tempfile.mkdtemp(prefix="bh-topo-")
        pw = os.path.join(cls.tmp, "pw")
        with open(pw, "w") as f:
            f.write(ADMIN_PW + "\n")
        gc, dc = cls.slapd.uris
        directory = ["ldap:", f'  global_catalog: ["{gc}"]', f'  bind_dn: "{ADMIN}"', f"  password_file: {pw}",
                     '  base_dn: "ou=people,dc=example,dc=test"', "  timeout_ms: 1000", "  positive_ttl_s: 0",
                     "  attributes:", "    home_server: bhHomeServer",
                     "  configuration:", f'    domain_controller: ["{dc}"]', f'    config_dn: "{CONFIG_DN}"',
                     "    poll_interval_s: 1"]
        cls.node = Node(domains=("example.test",), directory=directory)
        cls.node.start()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.node.cleanup()
        cls.slapd.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def status(self):
        r = self.node.bhctl("status", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["directory"]

    def ldap(self, tool, ldif, uri=None):
        r = subprocess.run([tool, "-x", "-H", uri or self.slapd.uri, "-D", ADMIN, "-w", ADMIN_PW],
                           input=ldif.encode(), capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_1_the_whole_topology_is_read(self):
        wait_until(lambda: self.status().get("routing_groups") == 3, timeout=20, what="topology read")
        s = self.status()
        self.assertEqual(s["servers"], 6)
        self.assertEqual(s["connectors"], 7)
        self.assertEqual(s["topology_warnings"], 0)
        self.assertEqual(len(s["topology_digest"]), 16)

    def test_1b_resolve_names_the_home_servers_routing_group(self):
        wait_until(lambda: self.status().get("routing_groups") == 3, timeout=20, what="topology read")
        r = self.node.bhctl("--json", "resolve", "all-staff@example.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = {x["address"]: (x["home_server"], x["routing_group"]) for x in json.loads(r.stdout)["recipients"]}
        self.assertEqual(got, {"alice@example.test": ("node1", "rg1"), "carol@example.test": ("node3", "rg2"),
                               "dave@example.test": ("node4", "rg2"), "erin@example.test": ("node5", "rg3"),
                               "frank@example.test": ("node6", "rg3")})
        r = self.node.bhctl("resolve", "gina@example.test")  # forward with a copy to the mailbox
        self.assertIn("pat@partner.example", r.stdout)
        self.assertIn("gina_40example.test", r.stdout)

    def test_2_changes_are_noticed_without_a_restart(self):
        wait_until(lambda: self.status().get("routing_groups") == 3, timeout=20, what="topology read")
        before = self.status()
        self.ldap("ldapadd", f"dn: cn=rg3-internet,cn=rg3,{CONFIG_DN}\nobjectClass: bhConnector\ncn: rg3-internet\n"
                             "bhRoutingGroupName: rg3\nbhCost: 7\nbhSourceBridgehead: node5\n"
                             "bhAddressSpace: *.partner.example;1\n")
        self.ldap("ldapdelete", f"cn=rg1-rg3,cn=rg1,{CONFIG_DN}\n")
        wait_until(lambda: self.status()["topology_digest"] != before["topology_digest"] and
                   self.status()["topology_changes"] >= before["topology_changes"] + 1, timeout=15,
                   what="a new topology")
        wait_until(lambda: self.status()["connectors"] == 7, timeout=10, what="one added, one deleted")
        self.ldap("ldapadd", f"dn: cn=broken,cn=rg2,{CONFIG_DN}\nobjectClass: bhConnector\ncn: broken\n"
                             "bhRoutingGroupName: rg2\nbhTargetGroup: rg1\nbhCost: 0\nbhSourceBridgehead: node3\n")
        wait_until(lambda: self.status()["topology_warnings"] == 1, timeout=10, what="the broken one skipped")
        self.assertEqual(self.status()["connectors"], 7)
        wait_until(lambda: f"cn=broken,cn=rg2,{CONFIG_DN}: cost 0 is not 1-100" in self.node.read_log(),
                   timeout=5, what="the warning names the DN")

    def test_3_the_domain_controller_down_keeps_the_last_topology(self):
        wait_until(lambda: self.status().get("routing_groups") == 3, timeout=20, what="topology read")
        digest = self.status()["topology_digest"]
        # The domain controller port goes away, the global catalog port stays: slapd is
        # restarted on the same data listening on the first port only.
        self.slapd.kill_hard()
        self.slapd.uris = self.slapd.uris[:1]
        self.slapd.start()
        reads = self.status()["topology_reads"]
        wait_until(lambda: self.status()["topology_reads"] > reads + 1, timeout=20, what="more polls")
        s = self.status()
        self.assertEqual(s["topology_digest"], digest)
        self.assertEqual(s["routing_groups"], 3)
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=20) as c:
            c.ehlo("client.example")
            c.mail("someone@elsewhere.example")
            self.assertEqual(c.rcpt("alice@example.test")[0], 250)


if __name__ == "__main__":
    unittest.main()
