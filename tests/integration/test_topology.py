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

import bhnode
import tlstest
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
        # Link state for node1 of rg1, with one configured connector (rg1-rg2 at cost 99):
        # the directory's connectors of rg1 replace it (test_2b). The other nodes never
        # run; node1 is rg1's configured master.
        tlstest.make_ca(cls.tmp)
        tlstest.make_leaf(cls.tmp, "node1", "node1")
        nodes = "\n".join(
            f'    - {{id: node{i}, routing_group: rg{(i + 1) // 2}, address: "127.0.0.1:{bhnode.free_port()}"'
            + (", master: true}" if i == 1 else "}") for i in range(1, 7))
        link_state = (f"link_state:\n  organization: example\n  routing_group: rg1\n"
                      f'  listen: "127.0.0.1:{bhnode.free_port()}"\n  nodes:\n{nodes}\n'
                      "  connectors:\n    - {id: rg1-rg2, source_group: rg1, target_group: rg2, cost: 99,"
                      " source_bridgeheads: [node2], target_bridgeheads: [node4]}\n"
                      f"  tls:\n    ca_file: {cls.tmp}/ca.pem\n    cert_file: {cls.tmp}/node1.pem\n"
                      f"    key_file: {cls.tmp}/node1.key\n  hold_down_ms: 0\n")
        cls.node = Node(domains=("example.test",), directory=directory, extra=link_state)
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

    def rg1(self):
        r = self.node.bhctl("--json", "lsdb")
        self.assertEqual(r.returncode, 0, r.stderr)
        return next(g for g in json.loads(r.stdout)["groups"] if g["name"] == "rg1")

    def test_2b_link_state_takes_this_groups_connectors_from_the_directory(self):
        # The directory's rg1 (after test_2: rg1-rg2 at cost 10 and the internet
        # connector) replaces the configured rg1-rg2 at cost 99 in the link-state table.
        wait_until(lambda: {c["id"]: c["cost"] for c in self.rg1()["connectors"]} == {"rg1-rg2": 10, "internet": 5},
                   timeout=20, what="rg1's connectors from the directory")
        major = int(self.rg1()["version"].split(".")[0])
        self.ldap("ldapmodify", f"dn: cn=rg1-rg2,cn=rg1,{CONFIG_DN}\nchangetype: modify\n"
                                "replace: bhCost\nbhCost: 15\n")
        wait_until(lambda: {c["id"]: c["cost"] for c in self.rg1()["connectors"]}.get("rg1-rg2") == 15,
                   timeout=20, what="the new cost in the table")
        self.assertGreater(int(self.rg1()["version"].split(".")[0]), major)
        # Other groups' entries are their masters' business: rg2 stays as configured (no
        # connectors of its own in this node's file).
        r = json.loads(self.node.bhctl("--json", "lsdb").stdout)
        rg2 = next(g for g in r["groups"] if g["name"] == "rg2")
        self.assertEqual(rg2["connectors"], [])

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
