"""RCPT TO against a real OpenLDAP slapd (directory.ldap; DESIGN.md §3 step 2, §4.4).

slapd is started by tests/support/slapd.py with deploy/ldap/bridgehead.schema (the
auxiliary class with proxyAddresses and bhHomeServer) and a few users; the node asks it
over ldap:// on loopback. Proves, over SMTP with smtplib:
- a user found by a secondary proxy address gets 250 and the mail lands in the folder
  named for the primary address; the primary in other case works too;
- an unknown address, and a mail-enabled entry without a home server, get 550 5.1.1;
- hostile-inputs #58: `*@`, `"a)(mail=*"@` get 550, never a wildcard match, and slapd's
  own log shows the escaped filter (`\\2a`);
- the first global catalog URI is dead: the node fails over to the second (counters);
- hostile-inputs #59: slapd SIGSTOPped -> 451 4.4.3 within timeout_ms + 1 s; SIGCONT -> 250
  again; slapd SIGKILLed -> 451 4.4.3; restarted on the same port -> 250 again; the node
  is never restarted;
- directory.ldap.connections: 3 connections come up, and all reconnect by themselves
  after slapd is killed and restarted;
- 200 concurrent RCPTs while slapd is paused are all in flight at once on one LDAP
  connection (connections: 1) (counters: max in flight >= 200, one connect), and all get 250 once it
  resumes (the time is printed, not asserted).
"""
import json
import os
import shutil
import smtplib
import socket
import tempfile
import time
import unittest

from bhnode import Node, free_port, wait_until
from slapd import ADMIN, ADMIN_PW, Slapd

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "deploy", "ldap", "bridgehead.schema")
PEOPLE = "ou=people,dc=example,dc=test"


def user(uid, primary, secondaries=(), mail=None, home="node1"):
    lines = [f"dn: uid={uid},{PEOPLE}", "objectClass: inetOrgPerson",
             "objectClass: bhMailRecipient", f"uid: {uid}", f"cn: {uid}", f"sn: {uid}"]
    if mail:
        lines.append(f"mail: {mail}")
    lines.append(f"proxyAddresses: SMTP:{primary}")
    lines += [f"proxyAddresses: smtp:{a}" for a in secondaries]
    if home:
        lines.append(f"bhHomeServer: {home}")
    return "\n".join(lines) + "\n\n"


USERS = (user("alice", "A.Liddell@example.test", ["alice@example.test"], mail="alice@example.test")
         + user("bob", "bob@example.test", ["builder@example.test"])
         + user("carol", "carol@example.test", home=None))


def ldap_node(tmp, slapd_uris, timeout_ms, smtp=None, connections=1):
    pw = os.path.join(tmp, "ldap.pw")
    with open(pw, "w") as f:
        f.write(ADMIN_PW + "\n")
    uris = ", ".join(f'"{u}"' for u in slapd_uris)
    directory = [
        "ldap:",
        f"  global_catalog: [{uris}]",
        f'  bind_dn: "{ADMIN}"',
        f"  password_file: {pw}",
        f'  base_dn: "{PEOPLE}"',
        f"  timeout_ms: {timeout_ms}",
        "  positive_ttl_s: 0",  # every RCPT asks slapd: the outage tests need that
        "  negative_ttl_s: 0",
        f"  connections: {connections}",
        "  attributes:",
        "    home_server: bhHomeServer",
    ]
    return Node(domains=("example.test",), directory=directory, smtp=smtp)


def status(node):
    r = node.bhctl("status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["directory"]


class Client:
    """One smtplib session up to MAIL FROM; rcpt() returns (code, text)."""

    def __init__(self, node):
        self.s = smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=20)
        self.s.ehlo("client.example.net")
        code, _ = self.s.mail("sender@example.net")
        assert code == 250

    def rcpt(self, address):
        code, text = self.s.docmd(f"RCPT TO:<{address}>")
        return code, text.decode("utf-8", "replace")

    def close(self):
        try:
            self.s.quit()
        except (smtplib.SMTPException, OSError):
            pass


class LdapRecipients(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bh-ldapdir-")
        cls.slapd = Slapd(USERS, schemas=[SCHEMA], listeners=2, log_stats=True,
                          indexes=["proxyAddresses,mail eq"])
        dead = f"ldap://127.0.0.1:{free_port()}/"  # nobody listens: fail-over to the GC port
        cls.node = ldap_node(cls.tmp, [dead, cls.slapd.uris[1]], 2000).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        cls.slapd.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_secondary_address_delivers_to_the_primary_folder(self):
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=20) as s:
            refused = s.sendmail("sender@example.net", ["alice@example.test"],
                                 b"Subject: by secondary\r\n\r\nhello alice\r\n")
            self.assertEqual(refused, {})
        files = self.node.wait_mail("a.liddell_40example.test")
        with open(files[0], "rb") as f:
            self.assertIn(b"hello alice", f.read())
        # The primary, in other case, reaches the same folder.
        c = Client(self.node)
        try:
            self.assertEqual(c.rcpt("a.liddell@EXAMPLE.test")[0], 250)
            self.assertEqual(c.rcpt("builder@example.test")[0], 250)
        finally:
            c.close()

    def test_unknown_and_mailboxless_get_550_511(self):
        c = Client(self.node)
        try:
            for a in ("nobody@example.test", "carol@example.test"):
                code, text = c.rcpt(a)
                self.assertEqual(code, 550, a)
                self.assertTrue(text.startswith("5.1.1"), text)
        finally:
            c.close()

    def test_hostile_58_is_escaped_not_a_wildcard(self):
        c = Client(self.node)
        try:
            for a in ("*@example.test", '"a)(mail=*"@example.test', "*)(|(mail=*@example.test"):
                code, text = c.rcpt(a)
                self.assertIn(code, (501, 550), f"{a}: {code} {text}")
                self.assertNotEqual(code, 250, a)
            # A control: the session is still usable and real users still resolve.
            self.assertEqual(c.rcpt("bob@example.test")[0], 250)
        finally:
            c.close()
        # On the wire (slapd's stats log, which prints hex escapes upper-case): the star
        # arrived as \2a, not as a wildcard.
        wait_until(lambda: "(mail=\\2a@example.test)" in self.slapd.read_log().lower(),
                   timeout=5, what="the escaped filter in slapd's log")
        log = self.slapd.read_log().lower()
        self.assertIn("(proxyaddresses=smtp:\\2a@example.test)", log)
        self.assertNotIn("mail=*@example.test", log)

    def test_fails_over_past_a_dead_first_uri(self):
        c = Client(self.node)
        try:
            self.assertEqual(c.rcpt("bob@example.test")[0], 250)
        finally:
            c.close()
        d = status(self.node)
        self.assertEqual(d["kind"], "ldap")
        self.assertEqual(d["ldap_connected_uri"], self.slapd.uris[1])
        self.assertGreaterEqual(d["ldap_failovers"], 1)
        self.assertGreaterEqual(d["ldap_connect_failures"], 1)


class LdapOutages(unittest.TestCase):
    TIMEOUT_MS = 1000

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bh-ldapout-")
        cls.slapd = Slapd(USERS, schemas=[SCHEMA], indexes=["proxyAddresses,mail eq"],
                          log_stats=True)  # foreground: the test holds the exact pid
        cls.node = ldap_node(cls.tmp, [cls.slapd.uri], cls.TIMEOUT_MS).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        cls.slapd.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def wait_250(self, what):
        def ok():
            c = Client(self.node)
            try:
                return c.rcpt("alice@example.test")[0] == 250
            finally:
                c.close()
        wait_until(ok, timeout=15, interval=0.2, what=what)

    def test_paused_slapd_gives_451_443_then_recovers(self):
        self.wait_250("a first 250")
        self.slapd.pause()
        try:
            c = Client(self.node)
            t0 = time.monotonic()
            code, text = c.rcpt("alice@example.test")
            took = time.monotonic() - t0
            c.close()
            self.assertEqual(code, 451, text)
            self.assertTrue(text.startswith("4.4.3"), text)
            self.assertLess(took, self.TIMEOUT_MS / 1000 + 1.0)
            # Still paused: still 451, never 550.
            c = Client(self.node)
            code, text = c.rcpt("bob@example.test")
            c.close()
            self.assertEqual(code, 451, text)
        finally:
            self.slapd.resume()
        self.wait_250("250 after SIGCONT")
        self.assertTrue(self.node.alive())
        self.assertGreaterEqual(status(self.node)["ldap_timeouts"], 1)

    def test_killed_slapd_gives_451_443_then_recovers_on_restart(self):
        self.wait_250("a first 250")
        self.slapd.kill_hard()
        c = Client(self.node)
        try:
            t0 = time.monotonic()
            code, text = c.rcpt("alice@example.test")
            self.assertEqual(code, 451, text)
            self.assertTrue(text.startswith("4.4.3"), text)
            self.assertLess(time.monotonic() - t0, self.TIMEOUT_MS / 1000 + 1.0)
            code, text = c.rcpt("nobody@example.test")
            self.assertEqual(code, 451, "a directory fault is never 'unknown': " + text)
        finally:
            c.close()
        self.slapd.start()
        self.wait_250("250 after slapd is back")
        self.assertTrue(self.node.alive())
        d = status(self.node)
        self.assertGreaterEqual(d["ldap_disconnects"], 1)
        self.assertGreaterEqual(d["ldap_connects"], 2)


class LdapPool(unittest.TestCase):
    """directory.ldap.connections: 3 connections, all up; after slapd is killed and
    restarted every one of them reconnects on its own, and lookups spread over them."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bh-ldappool-")
        cls.slapd = Slapd(USERS, schemas=[SCHEMA], indexes=["proxyAddresses,mail eq"])
        cls.node = ldap_node(cls.tmp, [cls.slapd.uri], 1500, connections=3).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        cls.slapd.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_three_connections_reconnect_on_their_own(self):
        wait_until(lambda: status(self.node)["ldap_connected"] == 3, timeout=15, what="3 connections")
        self.assertEqual(status(self.node)["ldap_connections"], 3)
        self.slapd.kill_hard()
        self.slapd.start()
        c = Client(self.node)
        try:
            wait_until(lambda: c.rcpt("alice@example.test")[0] == 250, timeout=15, what="250 again")
            for _ in range(30):
                self.assertEqual(c.rcpt("bob@example.test")[0], 250)
        finally:
            c.close()
        wait_until(lambda: status(self.node)["ldap_connected"] == 3, timeout=15, what="all 3 back")
        self.assertGreaterEqual(status(self.node)["ldap_connects"], 6)


class LdapPipelining(unittest.TestCase):
    N = 200

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bh-ldappipe-")
        many = "".join(user(f"u{i}", f"u{i}@example.test") for i in range(cls.N))
        cls.slapd = Slapd(USERS + many, schemas=[SCHEMA], indexes=["proxyAddresses,mail eq"],
                          log_stats=True)
        cls.node = ldap_node(cls.tmp, [cls.slapd.uri], 20000,
                             smtp=["max_sessions_per_ip: 1000",
                                   "max_connections_per_ip_per_minute: 0"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        cls.slapd.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_200_concurrent_lookups_share_one_connection(self):
        c = Client(self.node)
        self.assertEqual(c.rcpt("alice@example.test")[0], 250)  # connected and warm
        c.close()
        before = status(self.node)
        self.slapd.pause()
        socks = []
        try:
            for i in range(self.N):
                s = socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=30)
                s.sendall(f"EHLO c{i}.example.net\r\nMAIL FROM:<s@example.net>\r\n"
                          f"RCPT TO:<u{i}@example.test>\r\n".encode())
                socks.append(s)
            wait_until(lambda: status(self.node)["ldap_in_flight"] >= self.N, timeout=40,
                       interval=0.1, what=f"{self.N} searches in flight")
        finally:
            t0 = time.monotonic()
            self.slapd.resume()
        codes = []
        for s in socks:
            buf = b""
            while buf.count(b"\r\n") < 1 or not any(
                    l.startswith((b"250 2.1.5", b"451", b"550")) for l in buf.split(b"\r\n")):
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            last = [l for l in buf.split(b"\r\n") if l][-1]
            codes.append(int(last[:3]))
        took = time.monotonic() - t0
        for s in socks:
            s.close()
        self.assertEqual(codes, [250] * self.N)
        after = status(self.node)
        self.assertGreaterEqual(after["ldap_max_in_flight"], self.N)
        self.assertEqual(after["ldap_connects"], before["ldap_connects"], "one connection")
        self.assertEqual(after["ldap_disconnects"], before["ldap_disconnects"])
        print(f"\n{self.N} pipelined resolutions answered {took * 1000:.0f} ms after SIGCONT "
              f"({self.N / took:.0f}/s incl. SMTP replies)")


if __name__ == "__main__":
    unittest.main()
