"""swaks, the SMTP swiss army knife, as a client of the real binary."""
import shutil
import subprocess
import unittest

from bhnode import Node, body_after_received


@unittest.skipIf(shutil.which("swaks") is None, "swaks is installed by deploy/install-deps.sh")
class Swaks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node().start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()

    def swaks(self, *args):
        return subprocess.run(["swaks", "--server", f"127.0.0.1:{self.node.smtp_port}",
                               "--from", "sender@example.net", "--helo", "swaks.example"] + list(args),
                              capture_output=True, text=True, timeout=30)

    def test_plain_send(self):
        before = len(self.node.maildir("alice"))
        r = self.swaks("--to", "alice@example.org", "--header", "Subject: swaks plain",
                       "--body", "first line\n.dot line\nlast line")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("250 2.0.0 Ok: queued as", r.stdout)
        raw = open(self.node.wait_mail("alice", before + 1)[-1], "rb").read()
        body = body_after_received(raw)
        self.assertIn(b"Subject: swaks plain\r\n", body)
        self.assertIn(b"\r\n\r\nfirst line\r\n.dot line\r\nlast line\r\n", body)

    def test_pipelined_send_to_two_recipients(self):
        a0, b0 = len(self.node.maildir("alice")), len(self.node.maildir("bob"))
        r = self.swaks("--pipeline", "--to", "alice@example.org,bob@example.org", "--body", "piped")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.node.wait_mail("alice", a0 + 1)
        self.node.wait_mail("bob", b0 + 1)

    def test_attachment(self):
        before = len(self.node.maildir("bob"))
        r = self.swaks("--to", "bob@example.org", "--attach-type", "application/octet-stream",
                       "--attach", "@" + __file__)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        raw = open(self.node.wait_mail("bob", before + 1)[-1], "rb").read()
        self.assertIn(b"CONTENT-TRANSFER-ENCODING: BASE64", raw.upper())

    def test_unknown_recipient_fails(self):
        r = self.swaks("--to", "nobody@example.org")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("550 5.1.1", r.stdout)


if __name__ == "__main__":
    unittest.main()
