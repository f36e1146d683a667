"""Local delivery by LMTP (delivery.lmtp) to a real Dovecot, end to end with the real binary.

A throwaway Dovecot (tests/support/peers.py Dovecot: only the lmtp service, its own config,
base_dir, state and log in the test's temp folder) knows alice@example.org and
bob@example.org in a passwd-file userdb; the node's file directory also has carol, whom
Dovecot does not know:
  - alice + bob: one LMTP transaction, both Maildirs get the message byte-exact apart
    from the headers Dovecot adds above bridgehead's Received header;
  - alice + carol: carol is refused by Dovecot (550 5.1.1 at RCPT), so the sender (a
    local mailbox, reached through Dovecot too) gets a DSN; alice still gets the mail;
  - Dovecot down: the message stays queued in "retry" with a 4.4.1 error and is
    delivered once Dovecot is back and the operator retries it;
  - two messages one after the other: the second runs on the LMTP connection the first
    left held open (RSET, then MAIL; routing.connection_idle_s);
  - a node that stops says QUIT on that held connection: Dovecot logs "Logged out", not
    "Connection closed".
Each runs over TCP (Lmtp) and over Dovecot's unix socket (LmtpUnixSocket).
"""
import json
import os
import smtplib
import time
import unittest

from bhnode import Node, wait_until
from peers import DOVECOT, Dovecot

USERS = ["alice@example.org", "bob@example.org"]


def after_bridgehead_received(raw):
    """The message below bridgehead's Received header, in the LF line ends Dovecot's
    Maildir stores (the headers above it are Dovecot's: Return-Path, Delivered-To,
    Received ... with LMTP)."""
    lines = raw.split(b"\n")
    for i, line in enumerate(lines):
        if line == b"":
            break
        if line.startswith(b"Received: "):
            j = i + 1
            while j < len(lines) and lines[j][:1] in (b"\t", b" "):
                j += 1
            if b"(bridgehead)" in b"\n".join(lines[i:j]):
                return b"\n".join(lines[j:])
    raise AssertionError("no Received header of bridgehead in:\n%r" % raw[:600])


@unittest.skipUnless(os.access(DOVECOT, os.X_OK) and os.path.exists("/usr/lib/dovecot/lmtp"),
                     "dovecot-core and dovecot-lmtpd are not installed (deploy/install-deps.sh)")
@unittest.skipUnless(os.geteuid() == 0, "runs Dovecot, which delivers as nobody: needs root")
class Lmtp(unittest.TestCase):
    def setUp(self):
        self.node = Node(mailboxes=USERS + ["carol@example.org"],
                         queue=["glitch_retries: 1", "glitch_interval_s: 1", "retry_initial_s: 60",
                                "retry_max_s: 120"],
                         )
        self.dovecot = Dovecot(self.node.base, USERS)
        with open(self.node.config, "a") as f:
            f.write(f'delivery:\n  lmtp: "{self.target()}"\n')
        self.node.start()

    remote_mta = b"127.0.0.1"

    def target(self):
        return self.dovecot.endpoint

    def target_named(self):  # as diagnostics name it
        return "[127.0.0.1]:%d" % self.dovecot.port

    def tearDown(self):
        self.node.stop()
        self.dovecot.stop()
        self.node.cleanup()

    def send(self, rcpts, sender="alice@example.org", subject="lmtp"):
        msg = (b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: %s\r\n"
               b"Message-ID: <%d@t>\r\n\r\nline one\r\n.dot at the start\r\n\r\nlast line\r\n"
               % (subject.encode(), time.monotonic_ns()))
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10) as c:
            c.ehlo("client.example")
            c.sendmail(sender, rcpts, msg)
        return msg

    def wait_dovecot(self, user, count, timeout=15):
        return wait_until(lambda: len(self.dovecot.messages(user)) >= count and self.dovecot.messages(user),
                          timeout=timeout, what=f"{count} message(s) for {user} in Dovecot")

    def listed(self):
        return json.loads(self.node.bhctl("--json", "queue", "list").stdout)["messages"]

    def test_two_recipients_arrive_byte_exact_in_dovecot(self):
        msg = self.send(["alice@example.org", "bob@example.org"])
        want = msg.replace(b"\r\n", b"\n")
        for user in USERS:
            got = self.wait_dovecot(user, 1)
            self.assertEqual(len(got), 1)
            self.assertTrue(got[0].startswith(b"Return-Path: <alice@example.org>\n"), got[0][:200])
            self.assertIn(b"with LMTP", got[0])
            self.assertEqual(after_bridgehead_received(got[0]), want)
        wait_until(lambda: not self.node.queue_files(), what="queue to empty")
        self.assertEqual(self.node.maildir("alice"), [])  # nothing went to the Maildir path
        self.assertEqual(self.node.maildir("bob"), [])
        events = json.loads(self.node.bhctl("--json", "track", "--recipient", "bob@example.org").stdout)["events"]
        delivered = [e for e in events if e["event"] == "delivered"]
        self.assertEqual(len(delivered), 1, events)
        self.assertIn("250 2.0.0", delivered[0]["reply"])
        status = json.loads(self.node.bhctl("--json", "status").stdout)
        self.assertEqual(status["queue"]["failed_recipients"], 0)

    def test_recipient_refused_by_dovecot_bounces_to_the_sender_through_dovecot(self):
        msg = self.send(["alice@example.org", "carol@example.org"], sender="bob@example.org")
        got = self.wait_dovecot("alice@example.org", 1)
        self.assertEqual(after_bridgehead_received(got[0]), msg.replace(b"\r\n", b"\n"))
        dsn = self.wait_dovecot("bob@example.org", 1)[0]
        self.assertIn(b"Return-Path: <>", dsn)
        self.assertIn(b"Action: failed", dsn)
        self.assertIn(b"Final-Recipient: rfc822; carol@example.org", dsn)
        self.assertIn(b"5.1.1", dsn)
        self.assertIn(b"User doesn't exist", dsn)
        self.assertIn(b"Remote-MTA: dns; " + self.remote_mta, dsn)
        self.assertNotIn(b"Final-Recipient: rfc822; alice@example.org", dsn)
        wait_until(lambda: not self.node.queue_files(), what="queue to empty")
        time.sleep(0.5)
        self.assertEqual(len(self.dovecot.messages("bob@example.org")), 1)  # one DSN
        self.assertEqual(len(self.dovecot.messages("alice@example.org")), 1)
        events = json.loads(self.node.bhctl("--json", "track", "--sender", "bob@example.org").stdout)["events"]
        kinds = [e["event"] for e in events]
        self.assertIn("bounced", kinds)
        self.assertIn("dsn_sent", kinds)

    def test_messages_one_after_another_share_one_lmtp_connection(self):
        def lmtp_status():
            return json.loads(self.node.bhctl("--json", "status").stdout)["lmtp"]
        self.send(["alice@example.org"], subject="first")
        self.wait_dovecot("alice@example.org", 1)
        # Counted: by then the connection is held for the next message.
        wait_until(lambda: lmtp_status()["delivered"] >= 1, what="the first LMTP job done")
        self.assertEqual(lmtp_status()["held_connections"], 1)
        self.send(["alice@example.org"], subject="second")
        got = self.wait_dovecot("alice@example.org", 2)
        self.assertEqual(len(got), 2)
        wait_until(lambda: lmtp_status()["delivered"] >= 2, what="the second LMTP job done")
        st = lmtp_status()
        self.assertEqual(st["connections_reused"], 1, st)  # Dovecot took RSET, then MAIL
        self.assertEqual(st["reuse_failures"], 0, st)
        self.assertIn("(reused)", self.node.read_log())

    def test_a_stopping_node_says_quit_on_its_held_lmtp_connection(self):
        self.send(["alice@example.org"], subject="held")
        self.wait_dovecot("alice@example.org", 1)
        wait_until(lambda: json.loads(self.node.bhctl("--json", "status").stdout)["lmtp"]["held_connections"] == 1,
                   what="the LMTP connection held for the next message")
        self.node.stop()
        self.assertFalse(self.node.alive())

        def disconnects():
            with open(self.dovecot.log_path) as f:
                return [l for l in f if "Disconnect from" in l and "state=GREETING" not in l]
        # Dovecot's own words: "Logged out" after QUIT, "Connection closed" without it.
        got = wait_until(lambda: disconnects(), timeout=10, what="Dovecot to log the disconnect")
        self.assertEqual(len(got), 1, got)
        self.assertIn("Logged out", got[0])

    def test_dovecot_down_keeps_mail_queued_until_it_is_back(self):
        self.dovecot.stop()
        msg = self.send(["alice@example.org"])
        # One glitch retry 1 s later, then the backoff (60 s).
        wait_until(lambda: any(m["state"] == "retry" and m["attempts"] >= 2 for m in self.listed()),
                   timeout=20, what="retry after the glitch retry")
        m = self.listed()[0]
        self.assertIn("4.4.1", m["last_error"])
        self.assertIn(self.target_named(), m["last_error"])
        self.assertGreaterEqual(m["next_attempt"] - int(time.time()), 30)
        self.assertIn("retry", self.node.bhctl("queue", "list").stdout)
        self.assertEqual(self.dovecot.messages("alice@example.org"), [])
        self.dovecot.start()
        self.assertEqual(self.node.bhctl("queue", "retry", m["id"]).returncode, 0)
        got = self.wait_dovecot("alice@example.org", 1)
        self.assertEqual(after_bridgehead_received(got[0]), msg.replace(b"\r\n", b"\n"))
        wait_until(lambda: not self.node.queue_files(), what="queue to empty")


class LmtpUnixSocket(Lmtp):
    """The same over Dovecot's unix socket (delivery.lmtp: /path)."""
    remote_mta = b"localhost"

    def target(self):
        return self.dovecot.unix_path

    def target_named(self):
        return "[unix:%s]" % self.dovecot.unix_path


if __name__ == "__main__":
    unittest.main()
