"""Message tracking end to end: smtplib -> a real node -> bhctl track."""
import json
import os
import smtplib
import unittest
from email.message import EmailMessage

from bhnode import Node, wait_until


def send(port, sender, rcpts, msgid, subject):
    m = EmailMessage()
    m["From"] = sender
    m["To"] = ", ".join(rcpts)
    m["Subject"] = subject
    m["Message-ID"] = msgid
    m.set_content("tracking test\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.example")
        s.mail(sender)
        for r in rcpts:
            code, _ = s.rcpt(r)
            assert code == 250, code
        code, text = s.data(m.as_bytes())
        assert code == 250, (code, text)
        return text.decode().split()[-1]  # "Ok: queued as <id>"


class Track(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node().start()
        cls.q1 = send(cls.node.smtp_port, "Sender@Example.net", ["alice@example.org", "bob@example.org"],
                      "<track-one@example.net>", "one")
        cls.q2 = send(cls.node.smtp_port, "other@example.net", ["alice@example.org"],
                      "<track-two@example.net>", "two")
        cls.node.wait_mail("alice", count=2)
        cls.node.wait_mail("bob", count=1)

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()

    def track(self, *args):
        def events():
            r = self.node.bhctl("--json", "track", *args)
            self.assertEqual(r.returncode, 0, r.stderr)
            return json.loads(r.stdout)["events"]
        return events

    def test_by_recipient(self):
        # Delivery is reported after the Maildir sync: wait for both delivered events.
        evs = wait_until(lambda: (lambda e: e if sum(x["event"] == "delivered" for x in e) == 2 else None)(
            self.track("--recipient", "ALICE@example.org")()), timeout=10, what="two deliveries to alice")
        pairs = [(e["queue_id"], e["event"]) for e in evs]
        self.assertEqual(sorted(pairs), sorted([(self.q1, "received"), (self.q1, "delivered"),
                                                (self.q2, "received"), (self.q2, "delivered")]))
        for q in (self.q1, self.q2):  # oldest first: received before delivered
            self.assertLess(pairs.index((q, "received")), pairs.index((q, "delivered")))
        for e in evs:
            self.assertEqual(e["node"], "node1")
            self.assertEqual(e["recipient"], "alice@example.org")
            self.assertTrue(e["time"].endswith("Z"))
            self.assertEqual(e["client_address"], "127.0.0.1")
            self.assertGreater(e["size"], 0)
        d1 = [e for e in evs if e["queue_id"] == self.q1 and e["event"] == "delivered"][0]
        self.assertEqual(d1["next_hop"], "maildir:alice")
        self.assertEqual(d1["message_id"], "<track-one@example.net>")
        self.assertEqual(d1["sender"], "Sender@example.net")  # the SMTP layer lower-cases domains
        self.assertTrue(d1["reply"].startswith("2.0.0"))

    def test_by_message_id_without_brackets(self):
        evs = wait_until(lambda: (lambda e: e if len(e) == 4 else None)(
            self.track("--message-id", "track-one@example.net")()), timeout=10, what="four events")
        self.assertEqual({e["queue_id"] for e in evs}, {self.q1})
        self.assertEqual(sorted((e["event"], e["recipient"]) for e in evs),
                         [("delivered", "alice@example.org"), ("delivered", "bob@example.org"),
                          ("received", "alice@example.org"), ("received", "bob@example.org")])

    def test_by_sender_and_table(self):
        evs = wait_until(lambda: (lambda e: e if len(e) == 2 else None)(
            self.track("--sender", "OTHER@example.net")()), timeout=10, what="two events")
        self.assertEqual({e["queue_id"] for e in evs}, {self.q2})
        r = self.node.bhctl("track", "--queue-id", self.q2)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("NEXT HOP", r.stdout)
        self.assertIn(self.q2, r.stdout)
        self.assertIn("maildir:alice", r.stdout)
        self.assertIn("2 event(s)", r.stdout)

    def test_log_file_is_json_lines(self):
        path = os.path.join(self.node.data_dir, "log", "tracking.jsonl")
        wait_until(lambda: os.path.exists(path), what="the tracking log")
        self.assertEqual(os.stat(path).st_mode & 0o027, 0)
        with open(path, "rb") as f:
            for line in f:
                json.loads(line)

    def test_bad_limit_is_refused(self):
        r = self.node.bhctl("track", "--limit", "0")
        self.assertEqual(r.returncode, 1)
        self.assertIn("limit", r.stderr)


if __name__ == "__main__":
    unittest.main()
