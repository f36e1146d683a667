"""The categorization transport events (docs/sinks.md, issue 8) against a real slapd.

Categorization runs after spool (node/categorize_deliverer.cc). A built-in policy sink on
sinks.before_categorize refuses a closed group with its own code: that recipient fails,
the sender gets a DSN and the tracking log says "bounced", while the other group of the
same message is expanded and delivered. A program sink on sinks.after_categorize sees
each expansion (BH_RECIPIENT, BH_RECIPIENTS, BH_EXPANDED_COUNT) and logs it to a file.
A second node whose after_categorize program rejects with 451 keeps the message queued
(transient) and delivers nothing.
A journal sink whose address is a group of the directory: each message's journal copy is
categorized like any recipient, so the group's members get it (it is not routed by its
domain, nor looked up once at start).
"""
import json
import os
import shutil
import smtplib
import stat
import tempfile
import time
import unittest

from bhnode import Node, wait_until
from slapd import SUFFIX, Slapd

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "deploy", "ldap", "bridgehead.schema")
PEOPLE = "ou=people," + SUFFIX


def user(uid):
    return (f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nobjectClass: bhMailRecipient\n"
            f"uid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {uid}@example.test\n"
            f"proxyAddresses: SMTP:{uid}@example.test\nbhHomeServer: node1\n\n")


def group(cn, members):
    return (f"dn: cn={cn},{PEOPLE}\nobjectClass: groupOfNames\nobjectClass: bhMailRecipient\n"
            f"cn: {cn}\nproxyAddresses: SMTP:{cn}@example.test\n"
            + "".join(f"member: uid={m},{PEOPLE}\n" for m in members) + "\n")


def organization():
    return ("".join(user(u) for u in ("alice", "bob", "carol", "dave"))
            + group("staff", ["bob", "carol"]) + group("closed", ["dave"]))


def folder(uid):
    return f"{uid}_40example.test"


class CategorizeSinks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.slapd = Slapd(organization(), schemas=[SCHEMA], indexes=["proxyAddresses eq", "mail eq"])
        cls.tmp = tempfile.mkdtemp(prefix="bh-catsinks-")
        os.chmod(cls.tmp, 0o755)
        cls.expansions = os.path.join(cls.tmp, "expansions.log")
        cls.script = os.path.join(cls.tmp, "log-expansion.sh")
        with open(cls.script, "w") as f:
            f.write("#!/bin/sh\n"
                    f'echo "$BH_EVENT $BH_QUEUE_ID $BH_RECIPIENT -> $BH_RECIPIENTS ($BH_EXPANDED_COUNT)"'
                    f' >> {cls.expansions}\n'
                    'echo CONTINUE\n')
        os.chmod(cls.script, 0o755)
        cls.refuse = os.path.join(cls.tmp, "refuse.sh")
        with open(cls.refuse, "w") as f:
            f.write("#!/bin/sh\necho 'REJECT 451 4.7.0 Expansions are held today'\n")
        os.chmod(cls.refuse, 0o755)

    @classmethod
    def tearDownClass(cls):
        cls.slapd.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.node = None

    def tearDown(self):
        if self.node:
            self.node.stop()
            self.node.cleanup()

    def start(self, sinks):
        directory = ["ldap:", f'  global_catalog: ["{self.slapd.uri}"]', f'  base_dn: "{PEOPLE}"',
                     "  timeout_ms: 2000", "  attributes:", "    home_server: bhHomeServer"]
        self.node = Node(domains=("example.test",), directory=directory, extra=sinks,
                         queue=["retry_initial_s: 1", "retry_max_s: 2", "glitch_retries: 0"]).start()

    def send(self, rcpts, subject):
        body = f"Subject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\nhello\r\n"
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=30) as s:
            self.assertEqual(s.sendmail("alice@example.test", rcpts, body), {})

    def has(self, uid, text):
        for p in self.node.maildir(folder(uid)):
            with open(p, "rb") as f:
                if text.encode() in f.read():
                    return True
        return False

    def track(self, recipient):
        r = self.node.bhctl("--json", "track", "--recipient", recipient)
        return json.loads(r.stdout)["events"] if r.returncode == 0 else []

    def test_before_rejects_a_group_after_sees_the_members(self):
        self.start("sinks:\n  define:\n"
                   "    - {name: closed-group, kind: policy, reject_recipients: [closed@example.test],"
                   " reject_code: 550, reject_enhanced: 5.7.2}\n"
                   f"    - {{name: log-expansion, kind: program, argv: [{self.script}], deadline_ms: 10000}}\n"
                   "  before_categorize: [closed-group]\n"
                   "  after_categorize: [log-expansion]\n")
        self.send(["staff@example.test", "closed@example.test"], "gated")
        wait_until(lambda: self.has("bob", "Subject: gated") and self.has("carol", "Subject: gated"),
                   timeout=30, what="staff's members")
        # The closed group failed with the sink's code: a DSN to the sender, nothing to dave.
        wait_until(lambda: self.has("alice", "5.7.2"), timeout=30, what="a DSN to alice")
        self.assertTrue(self.has("alice", "closed@example.test"))
        self.assertFalse(self.has("dave", "Subject: gated"))
        wait_until(lambda: any(e["event"] == "bounced" for e in self.track("closed@example.test")),
                   timeout=10, what="closed@ bounced in the tracking log")
        bounced = [e for e in self.track("closed@example.test") if e["event"] == "bounced"][0]
        self.assertIn("5.7.2", bounced["reply"])
        # The after event saw staff's expansion (and never the refused group).
        wait_until(lambda: os.path.exists(self.expansions), timeout=10, what="the expansion log")
        with open(self.expansions) as f:
            lines = [l for l in f.read().splitlines() if "staff@example.test" in l or "closed@" in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("after_categorize "), lines[0])
        members, count = lines[0].split(" -> ")[1].split(" ")
        self.assertEqual(sorted(members.split(",")), ["bob@example.test", "carol@example.test"])
        self.assertEqual(count, "(2)")
        wait_until(lambda: not self.node.queue_files(), timeout=20, what="queue empty")
        st = {s["name"]: s for s in json.loads(self.node.bhctl("status", "--json").stdout)["sinks"]}
        self.assertEqual(st["closed-group"]["event"], "before_categorize")
        self.assertEqual(st["closed-group"]["rejected"], 1)
        self.assertGreaterEqual(st["log-expansion"]["continued"], 1)

    def test_a_journal_address_of_the_directory_is_categorized_with_each_message(self):
        self.start("sinks:\n  define:\n"
                   "    - {name: journal, kind: journal, address: staff@example.test}\n"
                   "  on_arrival: [journal]\n")
        self.send(["dave@example.test"], "journaled")
        wait_until(lambda: self.has("dave", "Subject: journaled"), timeout=30, what="dave's copy")
        wait_until(lambda: self.has("bob", "Subject: journaled") and self.has("carol", "Subject: journaled"),
                   timeout=30, what="the journal copies to staff's members")
        wait_until(lambda: not self.node.queue_files(), timeout=20, what="queue empty")
        self.assertFalse(self.has("alice", "journaled"))  # no report: nothing failed

    def test_after_transient_reject_keeps_the_message_queued(self):
        self.start("sinks:\n  define:\n"
                   f"    - {{name: hold, kind: program, argv: [{self.refuse}], deadline_ms: 10000}}\n"
                   "  after_categorize: [hold]\n")
        self.send(["staff@example.test"], "held")
        time.sleep(3)  # a few retries (retry_initial_s: 1)
        self.assertFalse(self.has("bob", "Subject: held"))
        self.assertFalse(self.has("alice", "4.7.0"))  # no bounce: it is transient
        self.assertTrue(self.node.queue_files())
        deferred = [e for e in self.track("staff@example.test") if e["event"] == "deferred"]
        self.assertTrue(deferred)
        self.assertIn("4.7.0", deferred[0]["reply"])

    def test_only_policy_program_plugin_sinks_take_the_events(self):
        node = Node(domains=("example.test",), extra=(
            "sinks:\n  define:\n    - {name: stamp, kind: header_stamp, header: X-A, value: b}\n"
            "  before_categorize: [stamp]\n"))
        try:
            import subprocess
            from bhnode import BH_BIN
            r = subprocess.run([BH_BIN, "--check-config", "--config", node.config], capture_output=True,
                               text=True, timeout=20)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("sinks.before_categorize[0]", r.stderr + r.stdout)
            self.assertIn("only policy, program and plugin sinks", r.stderr + r.stdout)
        finally:
            node.cleanup()


if __name__ == "__main__":
    unittest.main()
