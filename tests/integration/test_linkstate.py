"""Link state on TCP 691 between real nodes (issue 6; DESIGN.md §4.2, §6 label linkstate):
each node on its own 127.0.0.x, mutual TLS with a test cluster CA, tables compared by
digest through `bhctl --json lsdb`."""
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import bhnode
import lscluster
import tlstest
from lscluster import group_entry


class ThreeGroups(unittest.TestCase):
    """3 routing groups x 2 nodes, the first of each the configured master."""

    @classmethod
    def setUpClass(cls):
        cls.c = lscluster.Cluster(
            {"RG-A": ["a1", "a2"], "RG-B": ["b1", "b2"], "RG-C": ["c1", "c2"]},
            connectors=[("A-B", "RG-A", "RG-B", 10), ("B-C", "RG-B", "RG-C", 10),
                        ("A-C", "RG-A", "RG-C", 50), ("B-A", "RG-B", "RG-A", 10),
                        ("C-B", "RG-C", "RG-B", 10)],
            masters={"RG-A": "a1", "RG-B": "b1", "RG-C": "c1"})
        cls.c.start()

    @classmethod
    def tearDownClass(cls):
        cls.c.cleanup()

    def test_1_tables_converge_and_members_join_their_master(self):
        c = self.c
        digest = c.wait_converged()
        for i in c.nodes:
            v = c.lsdb(i)
            self.assertEqual(v["digest"], digest)
            self.assertEqual(sorted(g["name"] for g in v["groups"]), ["RG-A", "RG-B", "RG-C"])
        masters = {"a2": "a1", "b2": "b1", "c2": "c1"}
        for member, master in masters.items():
            def joined(member=member, master=master):
                p = c.peers(member)
                return p["master"] == master and any(
                    s["peer"] == master and s["state"] == "open" and s["upstream"] for s in p["sessions"])
            bhnode.wait_until(joined, timeout=15, what=f"{member} in session with {master}")
            p = c.peers(master)
            self.assertEqual(p["master"], master)
            self.assertTrue(any(s["peer"] == member and s["direction"] == "in" for s in p["sessions"]), p)
        # Routes from RG-A: RG-C through A-B then B-C (20) rather than A-C (50).
        r = c.routes("a2")
        rc = [g for g in r["groups"] if g["group"] == "RG-C"][0]
        self.assertTrue(rc["reachable"])
        self.assertEqual(rc["cost"], 20)
        self.assertEqual([h["connector"] for h in rc["next_hops"]], ["A-B"])
        # bhctl's tables (not --json) name the same things.
        out = c.nodes["a2"].bhctl("routes").stdout
        self.assertIn("RG-C", out)
        self.assertIn("A-B", out)
        out = c.nodes["a2"].bhctl("lsdb").stdout
        self.assertIn(digest, out)
        out = c.nodes["a2"].bhctl("peers").stdout
        self.assertIn("a1", out)

    def test_2_master_dies_member_takes_over_and_fails_back(self):
        c = self.c
        c.wait_converged()
        before = group_entry(c.lsdb("a2"), "RG-A")
        self.assertEqual(before["master"], "a1")
        c.nodes["a1"].kill()
        t0 = time.monotonic()
        # Every running node of every group ends with one table that names a2.
        digest = c.wait_converged(pred=lambda v: group_entry(v, "RG-A")["master"] == "a2")
        everywhere = time.monotonic() - t0
        print(f"\nRG-A fail-over: every running node has a2 as RG-A's master {everywhere:.2f} s "
              "after a1 was killed", flush=True)
        # a2 notices the dead master (dead_after 1 s or the reset), elects itself and
        # bumps RG-A's user version with itself as master.
        bhnode.wait_until(lambda: c.lsdb("a2")["master"] == "a2" and
                          group_entry(c.lsdb("a2"), "RG-A")["master"] == "a2",
                          timeout=15, what="a2 taking over RG-A")
        after = group_entry(c.lsdb("a2"), "RG-A")
        self.assertGreater(tuple(map(int, after["version"].split("."))),
                           tuple(map(int, before["version"].split("."))))
        self.assertEqual(c.lsdb("c2")["digest"], digest)
        # a1 returns: it is the configured master, a2 fails back to it and both agree.
        c.nodes["a1"].start()
        t0 = time.monotonic()
        digest = c.wait_converged(pred=lambda v: group_entry(v, "RG-A")["master"] == "a1")
        bhnode.wait_until(lambda: c.lsdb("a2")["master"] == "a1", what="a2 back with a1")
        print(f"RG-A fail-back: every node has a1 as RG-A's master {time.monotonic() - t0:.2f} s "
              "after a1 restarted", flush=True)
        back = group_entry(c.lsdb("a1"), "RG-A")
        self.assertGreater(tuple(map(int, back["version"].split("."))),
                           tuple(map(int, after["version"].split("."))))
        c.wait_converged()
        self.assertEqual(c.lsdb("b2")["digest"], c.lsdb("a2")["digest"])

    def test_3_masters_link_the_groups(self):
        # Each group's master keeps an inter-group session to each group its connectors
        # lead to (A -> B, A -> C, B -> A, B -> C, C -> B).
        c = self.c
        def linked():
            p = c.peers("b1")
            return {s["peer_group"] for s in p["sessions"] if s["inter_group"] and s["direction"] == "out"}
        bhnode.wait_until(lambda: linked() == {"RG-A", "RG-C"}, timeout=15, what="b1's links to RG-A and RG-C")

    def test_4_connector_down_floods_and_routes_change(self):
        # B-C has both RG-B nodes as source bridgeheads: down only when both report it.
        c = self.c
        c.wait_converged()
        def cost_to_c(node):
            return [g for g in c.routes(node)["groups"] if g["group"] == "RG-C"][0]
        self.assertEqual(cost_to_c("a2")["cost"], 20)
        r = c.nodes["b1"].bhctl("link", "down", "B-C")
        self.assertEqual(r.returncode, 0, r.stderr)
        def state_everywhere(state):
            def ok():
                for i in c.running():
                    bc = [x for x in group_entry(c.lsdb(i), "RG-B")["connectors"] if x["id"] == "B-C"][0]
                    if bc["state"] != state:
                        return False
                return True
            return ok
        time.sleep(0.5)
        self.assertTrue(state_everywhere("up")(), "one source down is not the connector down")
        t0 = time.monotonic()
        # b2 is a member: its report travels as a StateChange to b1.
        bhnode.wait_until(lambda: c.nodes["b2"].bhctl("link", "down", "B-C").returncode == 0,
                          what="b2's report accepted")
        bhnode.wait_until(state_everywhere("down"), timeout=15, what="B-C down on every node")
        c.wait_converged()
        print(f"\nB-C down on every node {time.monotonic() - t0:.2f} s after the last report", flush=True)
        rc = cost_to_c("a2")
        self.assertEqual((rc["cost"], [h["connector"] for h in rc["next_hops"]]), (50, ["A-C"]))
        self.assertIn("down", c.nodes["a1"].bhctl("lsdb").stdout)
        # Back up from one source: the connector is up again everywhere, routes return.
        self.assertEqual(c.nodes["b2"].bhctl("link", "up", "B-C").returncode, 0)
        bhnode.wait_until(state_everywhere("up"), timeout=15, what="B-C up again")
        bhnode.wait_until(lambda: cost_to_c("a2")["cost"] == 20, what="the route via B-C again")
        # Refused: not a connector of this node's group, not one of its bridgeheads.
        r = c.nodes["b1"].bhctl("link", "down", "A-B")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no connector", r.stderr)

    def test_5_hung_master_is_declared_dead(self):
        # SIGSTOP: the socket stays open, only dead_after_ms (1 s) can tell.
        c = self.c
        c.wait_converged(pred=lambda v: group_entry(v, "RG-C")["master"] == "c1")
        bhnode.stop_process(c.nodes["c1"].proc.pid)
        try:
            t0 = time.monotonic()
            c.wait_converged([i for i in c.running() if i != "c1"],
                             pred=lambda v: group_entry(v, "RG-C")["master"] == "c2")
            took = time.monotonic() - t0
            print(f"\nRG-C: hung c1 replaced by c2 on every other node {took:.2f} s after SIGSTOP", flush=True)
            self.assertGreater(took, 0.5)  # not before dead_after_ms
        finally:
            os.kill(c.nodes["c1"].proc.pid, signal.SIGCONT)
        c.wait_converged(pred=lambda v: group_entry(v, "RG-C")["master"] == "c1")


class Refusals(unittest.TestCase):
    """a1 runs; a2 is configured but never started: the test plays it, and others."""

    @classmethod
    def setUpClass(cls):
        cls.c = lscluster.Cluster({"RG-A": ["a1", "a2"], "RG-B": ["b1"]},
                                  connectors=[("A-B", "RG-A", "RG-B", 10)], masters={"RG-A": "a1"},
                                  keepalive_ms=500, dead_after_ms=3000)
        cls.c.start(["a1"])
        cls.other = tempfile.mkdtemp(prefix="bh-ls-other-ca-")
        tlstest.make_ca(cls.other)
        tlstest.make_leaf(cls.other, "a2", "a2")
        tlstest.make_leaf(cls.c.dir, "stranger", "stranger")

    @classmethod
    def tearDownClass(cls):
        cls.c.cleanup()

    def setUp(self):
        self.digest = self.c.lsdb("a1")["digest"]

    def tearDown(self):
        v = self.c.lsdb("a1")
        self.assertEqual(v["digest"], self.digest, "the table changed")
        self.assertEqual(group_entry(v, "RG-A")["master"], "a1")

    def ctx(self, who=None, ca_dir=None):
        d = ca_dir or self.c.dir
        return lscluster.client_context(f"{self.c.dir}/ca.pem", who and f"{d}/{who}.pem",
                                        who and f"{d}/{who}.key")

    def counters(self):
        return self.c.peers("a1")["counters"]

    def refused(self, sock):
        """The peer ends the connection without a single frame."""
        try:
            data, closed = lscluster.read_until_closed(sock)
        finally:
            sock.close()
        return data == b"" and closed

    def handshake_fails(self, ctx):
        try:
            s = lscluster.connect_691(self.c.address("a1"), ctx)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return True
        return self.refused(s)

    def test_no_client_certificate(self):
        n = self.counters()["tls_refused"]
        self.assertTrue(self.handshake_fails(self.ctx()))
        bhnode.wait_until(lambda: self.counters()["tls_refused"] > n, what="the TLS refusal counted")

    def test_certificate_of_another_ca(self):
        n = self.counters()["tls_refused"]
        self.assertTrue(self.handshake_fails(self.ctx("a2", self.other)))
        bhnode.wait_until(lambda: self.counters()["tls_refused"] > n, what="the TLS refusal counted")

    def test_tls12_without_forward_secrecy(self):
        # A genuine certificate, but RSA key exchange: not offered (auth/tls_context policy).
        ctx = self.ctx("a2")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("AES256-GCM-SHA384")
        with self.assertRaises(ssl.SSLError):
            lscluster.connect_691(self.c.address("a1"), ctx).close()
        # And TLS 1.2 with ECDHE is fine.
        ok = self.ctx("a2")
        ok.maximum_version = ssl.TLSVersion.TLSv1_2
        s = lscluster.connect_691(self.c.address("a1"), ok)
        self.assertEqual(s.version(), "TLSv1.2")
        s.close()

    def test_certificate_of_no_configured_node(self):
        n = self.counters()["identity_refused"]
        s = lscluster.connect_691(self.c.address("a1"), self.ctx("stranger"))
        self.assertTrue(self.refused(s))
        bhnode.wait_until(lambda: self.counters()["identity_refused"] > n, what="the identity refusal counted")

    def test_node_of_another_group_claiming_ours(self):
        # b1's certificate is genuine, but b1 is no member of RG-A: it may only open an
        # inter-group session, never a member's.
        s = lscluster.connect_691(self.c.address("a1"), self.ctx("b1"))
        s.sendall(lscluster.frame(1, lscluster.HELLO, lscluster.hello("b1", "test-org", "RG-A")))
        lscluster.read_until_closed(s)
        s.close()
        bhnode.wait_until(lambda: "without another routing group" in self.last_refusal(),
                          what="the member claim refused")

    def session(self):
        """A genuine a2 session: Hello, then a1's Hello and Digest come back."""
        s = lscluster.connect_691(self.c.address("a1"), self.ctx("a2"))
        s.sendall(lscluster.frame(1, lscluster.HELLO, lscluster.hello("a2", "test-org", "RG-A")))
        s.settimeout(5)
        got = b""
        while len(got) < 4:
            got += s.recv(65536)
        return s

    def last_refusal(self):
        r = self.c.peers("a1")["refusals"]
        return r[-1]["why"] if r else ""

    def test_replayed_frame(self):
        s = self.session()
        s.sendall(lscluster.frame(1, lscluster.HELLO, lscluster.hello("a2", "test-org", "RG-A")))
        lscluster.read_until_closed(s)
        s.close()
        bhnode.wait_until(lambda: "sequence 1 where 2 was due" in self.last_refusal(), what="the replay refused")

    def test_forged_org_info(self):
        # An OrgInfo claiming RG-A 9.9.9 with a2 as master, whose digest is not its content.
        version = lscluster.pb_varint(1, 9) + lscluster.pb_varint(2, 9) + lscluster.pb_varint(3, 9)
        group = (lscluster.pb_bytes(1, "RG-A") + lscluster.pb_bytes(2, "a2") + lscluster.pb_bytes(3, "a1") +
                 lscluster.pb_bytes(3, "a2") + lscluster.pb_bytes(4, version))
        info = lscluster.pb_bytes(1, "test-org") + lscluster.pb_bytes(2, group) + lscluster.pb_bytes(3, b"\x00" * 32)
        s = self.session()
        s.sendall(lscluster.frame(2, lscluster.ORG_INFO, info))
        lscluster.read_until_closed(s)
        s.close()
        bhnode.wait_until(lambda: "digest does not match" in self.last_refusal(), what="the forgery refused")

    def test_hello_naming_another_node(self):
        s = lscluster.connect_691(self.c.address("a1"), self.ctx("a2"))
        s.sendall(lscluster.frame(1, lscluster.HELLO, lscluster.hello("a3", "test-org", "RG-A")))
        lscluster.read_until_closed(s)
        s.close()
        bhnode.wait_until(lambda: "TLS proved" in self.last_refusal(), what="the impostor refused")


class Startup(unittest.TestCase):
    def test_missing_certificate_stops_the_node_naming_the_key(self):
        c = lscluster.Cluster({"RG-A": ["a1"]})
        try:
            os.remove(f"{c.dir}/a1.key")
            n = c.nodes["a1"]
            r = subprocess.run([bhnode.BH_BIN, "--config", n.config], capture_output=True, text=True, timeout=20)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("link_state.tls.key_file", r.stdout + r.stderr)
        finally:
            c.cleanup()

    def test_bad_key_is_refused_with_file_and_line(self):
        c = lscluster.Cluster({"RG-A": ["a1"]})
        try:
            n = c.nodes["a1"]
            with open(n.config) as f:
                text = f.read()
            with open(n.config, "w") as f:
                f.write(text.replace("  routing_group: RG-A\n", "  routing_group: RG-Z\n", 1))
            r = subprocess.run([bhnode.BH_BIN, "--config", n.config], capture_output=True, text=True, timeout=20)
            self.assertNotEqual(r.returncode, 0)
            self.assertRegex(r.stdout + r.stderr, n.config + r":\d+: link_state.routing_group: \"RG-Z\"")
        finally:
            c.cleanup()

    def test_without_link_state_bhctl_says_so(self):
        n = bhnode.Node()
        try:
            n.start()
            r = n.bhctl("lsdb")
            self.assertEqual(r.returncode, 1)
            self.assertIn("link state is not configured", r.stderr)
        finally:
            n.cleanup()


class TlsReload(unittest.TestCase):
    """SIGHUP reads link_state.tls's files again: new 691 sessions get the new certificate,
    the mesh still forms with it, and a broken file keeps the current one."""

    def test_sighup_reloads_the_691_certificate(self):
        c = lscluster.Cluster({"RG-A": ["a1", "a2"]}, masters={"RG-A": "a1"})
        try:
            c.start()
            c.wait_converged()
            tlstest.make_leaf(c.dir, "probe", "probe")
            ctx = lscluster.client_context(f"{c.dir}/ca.pem", f"{c.dir}/probe.pem", f"{c.dir}/probe.key")

            def served():
                s = lscluster.connect_691(c.address("a1"), ctx)
                try:
                    cert = s.getpeercert()
                    return cert["serialNumber"], dict(x[0] for x in cert["subject"])["commonName"]
                finally:
                    s.close()

            def counters():
                return c.peers("a1")["counters"]

            first, cn = served()
            self.assertEqual(cn, "a1")
            tlstest.make_leaf(c.dir, "a1-next", "a1")
            tlstest.install(c.dir, "a1-next", cert="a1.pem", key="a1.key")
            self.assertEqual(served()[0], first, "served before any SIGHUP")
            c.nodes["a1"].proc.send_signal(signal.SIGHUP)
            bhnode.wait_until(lambda: counters()["tls_reloads"] == 1, what="the 691 reload")
            second, cn = served()
            self.assertNotEqual(second, first)
            self.assertEqual(cn, "a1")
            # The mesh forms again with it: a2, restarted, must verify a1's new certificate.
            c.nodes["a2"].stop()
            c.nodes["a2"].start()
            c.wait_converged(["a1", "a2"])
            bhnode.wait_until(lambda: any(p["peer"] == "a2" and p["state"] == "open"
                                          for p in c.peers("a1")["sessions"]),
                              what="a2's session with a1")

            with open(f"{c.dir}/a1.pem", "w") as f:
                f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
            c.nodes["a1"].proc.send_signal(signal.SIGHUP)
            bhnode.wait_until(lambda: counters()["tls_reload_failures"] == 1, what="the failed reload")
            self.assertEqual(counters()["tls_reloads"], 1)
            self.assertEqual(served()[0], second, "a broken file replaced the certificate")
            self.assertIn("link_state.tls.cert_file " + f"{c.dir}/a1.pem", c.nodes["a1"].read_log())
        finally:
            c.cleanup()


if __name__ == "__main__":
    unittest.main()
