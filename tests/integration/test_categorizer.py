"""The categorizer against a real OpenLDAP slapd (DESIGN.md §3 step 4, §4.4; issue 5).

slapd (tests/support/slapd.py) holds deploy/ldap/bridgehead.schema and an organization
of 5,000 users, groups, a contact and forwarded mailboxes. The node binds as an ordinary
entry (not the rootdn, which slapd never limits) under `sizelimit 100`, so only paged
results (RFC 2696) can read a query-based group of 300. Mail goes in with smtplib;
outside addresses leave through a smart host (Postfix's smtp-sink). Proves:
- a group of 5,000 members: RCPT 250, and each member's Maildir gets exactly one copy;
- nested groups with a loop A -> B -> A: each member once;
- a contact: relayed to its targetAddress;
- a forward (altRecipient) without and with deliverAndRedirect;
- a query-based group larger than the server's size limit, read in pages;
- a group that takes mail only from authenticated senders: 550 5.7.1 for anonymous;
- the directory gone while a group message waits for categorization (#59 after spool):
  the message stays queued (4.4.3) and is delivered once slapd is back, with no restart;
- a delivery report to a sender of the directory goes through the categorizer too: with
  slapd gone it waits in the queue, and it reaches the sender's Maildir once slapd is back;
- a user in the group and also named directly gets one copy;
- `bhctl resolve` prints the decision tree (entry, matched attribute, groups, contact,
  forward) and the final recipients; `--json` too; an unknown address says why.
"""
import glob
import json
import os
import shutil
import smtplib
import tempfile
import time
import unittest

from bhnode import Node, free_port, wait_until
from peers import Sink
from slapd import SUFFIX, Slapd

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "deploy", "ldap", "bridgehead.schema")
PEOPLE = "ou=people," + SUFFIX
READER = "cn=reader," + SUFFIX
READER_PW = "readerpw"
N_BIG = 5000
N_OSLO = 300


def user(uid, home="node1", extra=()):
    lines = [f"dn: uid={uid},{PEOPLE}", "objectClass: inetOrgPerson", "objectClass: bhMailRecipient",
             f"uid: {uid}", f"cn: {uid}", f"sn: {uid}", f"mail: {uid}@example.test",
             f"proxyAddresses: SMTP:{uid}@example.test"]
    if home:
        lines.append(f"bhHomeServer: {home}")
    return "\n".join(lines + list(extra)) + "\n\n"


def group(cn, address, members, extra=()):
    lines = [f"dn: cn={cn},{PEOPLE}", "objectClass: groupOfNames", "objectClass: bhMailRecipient",
             f"cn: {cn}", f"proxyAddresses: SMTP:{address}"]
    lines += [f"member: {m}" for m in members]
    return "\n".join(lines + list(extra)) + "\n\n"


def dn(uid):
    return f"uid={uid},{PEOPLE}"


def organization():
    out = [f"dn: {READER}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\n"
           f"cn: reader\nuserPassword: {READER_PW}\n\n"]
    for i in range(N_BIG):
        out.append(user(f"u{i:04d}", extra=["l: Oslo"] if i < N_OSLO else []))
    for name in ("alice", "bob", "carol", "dave"):
        out.append(user(name))
    out.append("dn: cn=partner," + PEOPLE + "\nobjectClass: inetOrgPerson\nobjectClass: bhMailRecipient\n"
               "cn: partner\nsn: partner\nproxyAddresses: SMTP:partner@example.test\n"
               "targetAddress: SMTP:pat@partner.example\n\n")
    out.append(user("fwd", extra=[f"altRecipient: cn=partner,{PEOPLE}"]))
    out.append(user("both", extra=[f"altRecipient: {dn('carol')}", "deliverAndRedirect: TRUE"]))
    out.append(group("everyone", "everyone@example.test", [dn(f"u{i:04d}") for i in range(N_BIG)]))
    out.append(group("loop-a", "loop-a@example.test", [f"cn=loop-b,{PEOPLE}", dn("alice")]))
    out.append(group("loop-b", "loop-b@example.test", [f"cn=loop-a,{PEOPLE}", dn("bob")]))
    out.append(group("inner", "inner@example.test", [dn("carol"), f"cn=partner,{PEOPLE}"]))
    out.append(group("outer", "outer@example.test", [f"cn=inner,{PEOPLE}", dn("alice")]))
    out.append(group("board", "board@example.test", [dn("dave")], ["msExchRequireAuthToSendTo: TRUE"]))
    out.append("dn: cn=oslo," + PEOPLE + "\nobjectClass: inetOrgPerson\nobjectClass: bhMailRecipient\n"
               "cn: oslo\nsn: oslo\nproxyAddresses: SMTP:oslo@example.test\n"
               "msExchDynamicDLFilter: (&(objectClass=inetOrgPerson)(l=Oslo))\n\n")
    return "".join(out)


def folder(uid):
    return f"{uid}_40example.test"


class Categorizer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t0 = time.monotonic()
        cls.slapd = Slapd(organization(), schemas=[SCHEMA], indexes=["proxyAddresses eq", "mail eq", "l eq"],
                          limits=["sizelimit size.soft=100 size.hard=100 size.prtotal=unlimited"])
        cls.load_s = time.monotonic() - t0
        cls.tmp = tempfile.mkdtemp(prefix="bh-cat-")
        cls.sink_port = free_port()
        cls.sink = Sink(cls.sink_port, cls.tmp)
        pw = os.path.join(cls.tmp, "ldap.pw")
        with open(pw, "w") as f:
            f.write(READER_PW + "\n")
        directory = [
            "ldap:",
            f'  global_catalog: ["{cls.slapd.uri}"]',
            f'  bind_dn: "{READER}"',
            f"  password_file: {pw}",
            f'  base_dn: "{PEOPLE}"',
            "  timeout_ms: 2000",
            "  positive_ttl_s: 300",  # the outage test relies on RCPT being answered from cache
            "  negative_ttl_s: 0",
            "  page_size: 50",
            "  attributes:",
            "    home_server: bhHomeServer",
        ]
        extra = ("routing:\n"
                 "  smtp_connectors:\n"
                 "    - name: partner\n"
                 f'      smart_hosts: ["127.0.0.1:{cls.sink_port}"]\n'
                 '      address_spaces: [{pattern: "partner.example", cost: 1}]\n'
                 "      tls: none\n")
        cls.node = Node(domains=("example.test",), directory=directory, extra=extra,
                        queue=["retry_initial_s: 1", "retry_max_s: 2", "glitch_retries: 0"])
        cls.node.start()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.node.cleanup()
        cls.sink.stop()
        cls.slapd.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def send(self, rcpts, subject, sender="someone@elsewhere.example"):
        body = f"Subject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\nhello\r\n"
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=30) as s:
            refused = s.sendmail(sender, rcpts, body)
        self.assertEqual(refused, {})

    def copies(self, uid, subject):
        n = 0
        for p in self.node.maildir(folder(uid)):
            with open(p, "rb") as f:
                n += f.read().count(f"Subject: {subject}\r\n".encode())
        return n

    def relayed(self, subject):
        return sum(m.count(f"Subject: {subject}".encode()) for m in self.sink.messages())

    def test_big_group_each_member_once(self):
        t0 = time.monotonic()
        self.send(["everyone@example.test", "u0007@example.test"], "big")
        wait_until(lambda: len(glob.glob(os.path.join(self.node.data_dir, "mailboxes", "u*_40example.test",
                                                      "new", "*"))) >= N_BIG, timeout=120,
                   what=f"{N_BIG} copies")
        took = time.monotonic() - t0
        wait_until(lambda: not self.node.queue_files(), timeout=30, what="queue empty")
        for uid in ("u0000", "u0007", "u2500", f"u{N_BIG - 1:04d}"):
            self.assertEqual(self.copies(uid, "big"), 1, uid)
        total = sum(self.copies(f"u{i:04d}", "big") for i in range(N_BIG))
        self.assertEqual(total, N_BIG)
        print(f"\n  slapd load {self.load_s:.1f} s; {N_BIG}-member group delivered in {took:.1f} s")
        self.assertIn("categorized; the expanded recipients are due now", self.node.read_log())

    def test_nested_loop_each_member_once(self):
        self.send(["loop-a@example.test"], "loop")
        self.node.wait_mail(folder("alice"), 1, timeout=20)
        self.node.wait_mail(folder("bob"), 1, timeout=20)
        wait_until(lambda: not self.node.queue_files(), timeout=20, what="queue empty")
        self.assertEqual(self.copies("alice", "loop"), 1)
        self.assertEqual(self.copies("bob", "loop"), 1)
        self.assertIn("already expanded in this message", self.node.read_log())

    def test_nested_group_with_a_contact(self):
        self.send(["outer@example.test", "alice@example.test"], "nested")
        wait_until(lambda: self.relayed("nested") == 1, timeout=20, what="relayed to the contact")
        wait_until(lambda: self.copies("carol", "nested") == 1 and self.copies("alice", "nested") == 1,
                   timeout=20, what="carol and alice")
        wait_until(lambda: not self.node.queue_files(), timeout=20, what="queue empty")
        self.assertEqual(self.copies("alice", "nested"), 1)  # named and in the group: once
        raw = [m for m in self.sink.messages() if b"Subject: nested" in m][0]
        self.assertIn(b"pat@partner.example", raw)

    def test_forward_only_and_deliver_and_redirect(self):
        self.send(["fwd@example.test"], "fwdonly")
        wait_until(lambda: self.relayed("fwdonly") == 1, timeout=20, what="forward relayed")
        self.send(["both@example.test"], "fwdboth")
        wait_until(lambda: self.copies("both", "fwdboth") == 1 and self.copies("carol", "fwdboth") == 1,
                   timeout=20, what="mailbox and alternate recipient")
        wait_until(lambda: not self.node.queue_files(), timeout=20, what="queue empty")
        self.assertEqual(self.copies("fwd", "fwdonly"), 0)

    def test_query_based_group_read_in_pages(self):
        self.send(["oslo@example.test"], "oslo")
        wait_until(lambda: len(glob.glob(os.path.join(self.node.data_dir, "mailboxes", "u*_40example.test",
                                                      "new", "*"))) > 0, timeout=30, what="first copy")
        wait_until(lambda: sum(self.copies(f"u{i:04d}", "oslo") for i in range(0, N_OSLO, 1)) == N_OSLO,
                   timeout=60, what=f"{N_OSLO} copies")
        self.assertEqual(self.copies(f"u{N_OSLO:04d}", "oslo"), 0)  # not in Oslo

    def test_authenticated_senders_only_group(self):
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            s.mail("someone@elsewhere.example")
            code, text = s.rcpt("board@example.test")
            self.assertEqual(code, 550)
            self.assertIn(b"5.7.1", text)
            code, _ = s.rcpt("dave@example.test")
            self.assertEqual(code, 250)

    def test_bhctl_resolve_prints_the_decision_tree(self):
        r = self.node.bhctl("resolve", "Outer@example.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        self.assertIn(f"entry cn=outer,{PEOPLE} (matched proxyAddresses SMTP:outer@example.test)", out)
        self.assertIn(f"group cn=inner,{PEOPLE}", out)
        self.assertIn("contact cn=partner," + PEOPLE + ": target pat@partner.example -> relayed", out)
        self.assertIn("carol_40example.test", out)
        self.assertIn("3 recipient(s)", out)
        r = self.node.bhctl("--json", "resolve", "both@example.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(sorted(x["address"] for x in j["recipients"]),
                         ["both@example.test", "carol@example.test"])
        self.assertTrue(any("deliverAndRedirect" in line for line in j["trace"]))
        r = self.node.bhctl("resolve", "nobody@example.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no entry has this address", r.stdout)
        self.assertIn("not deliverable: 5.1.1", r.stdout)

    def test_zy_a_report_to_a_sender_of_the_directory_waits_for_it(self):
        token = "report-wait-%d" % time.monotonic_ns()
        sender = "u4998@example.test"  # never asked for at RCPT: not in the node's cache
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            s.mail("someone@elsewhere.example")
            self.assertEqual(s.rcpt("dave@example.test")[0], 250)  # cached for the outage
            s.rset()
        log = self.node.read_log
        queued, deferred = log().count("delivery report queued as"), log().count("directory unavailable")
        self.slapd.kill_hard()
        try:
            body = f"Subject: {token}\r\nMessage-ID: <{token}@test>\r\n\r\nhello\r\n"
            with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=30) as s:
                s.ehlo("client.example")
                refused = s.sendmail(sender, ["dave@example.test"], body, rcpt_options=["NOTIFY=SUCCESS"])
            self.assertEqual(refused, {})
            wait_until(lambda: self.copies("dave", token) == 1, timeout=20, what="the message delivered")
            # The success report is queued for the categorizer and waits there.
            wait_until(lambda: log().count("delivery report queued as") > queued and
                       len(self.node.queue_files()) == 1, timeout=20, what="the report queued")
            wait_until(lambda: log().count("directory unavailable") > deferred, timeout=20,
                       what="the report deferred by the categorizer")
            self.assertEqual(self.copies("u4998", token), 0)
            self.assertEqual(len(self.node.queue_files()), 1)
        finally:
            self.slapd.start()

        def report():
            for p in self.node.maildir(folder("u4998")):
                with open(p, "rb") as f:
                    raw = f.read()
                if b"multipart/report" in raw and token.encode() in raw and b"Action: delivered" in raw:
                    return True
            return False
        wait_until(report, timeout=30, what="the report in the sender's Maildir")
        wait_until(lambda: not self.node.queue_files(), timeout=10, what="the queue to empty")

    def test_zz_directory_down_while_waiting_for_categorization(self):
        # RCPT is answered from the cache, then slapd dies before the group is expanded.
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            s.mail("someone@elsewhere.example")
            self.assertEqual(s.rcpt("inner@example.test")[0], 250)
            s.rset()
        self.slapd.kill_hard()
        try:
            self.send(["inner@example.test"], "outage")
            wait_until(lambda: "categorizer" in self.node.read_log() and
                       "directory unavailable" in self.node.read_log(), timeout=20,
                       what="categorization deferred")
            time.sleep(1.5)
            self.assertEqual(len(self.node.queue_files()), 1)
            self.assertEqual(self.copies("carol", "outage"), 0)
        finally:
            self.slapd.start()
        wait_until(lambda: self.copies("carol", "outage") == 1, timeout=30, what="delivered after restart")
        wait_until(lambda: self.relayed("outage") == 1, timeout=30, what="relayed after restart")
        self.assertTrue(self.node.alive())


if __name__ == "__main__":
    unittest.main()
