"""The classic open-relay tricks of hostile-inputs.md #47-54 against the real binary.

The node owns our.test (mailbox alice@our.test); the client (127.0.0.1) is in no trusted
network. Every trick must end in a refusal: 550 5.7.1 (relay denied), 550 5.1.1 (an
unknown user of ours, which is not relaying) or 501 5.1.3 (bad address syntax), and a DATA
after it is refused, so nothing is ever queued for a foreign domain. A second node shows
that sender-specified routing in the local part (%, !, a quoted @) is refused even where
relaying is allowed (relay_domains, relay_networks).
"""
import unittest

from bhnode import Node, Smtp

OUR_IP = "127.0.0.1"
REFUSED = {(550, "5.7.1"), (550, "5.1.1"), (501, "5.1.3")}


class RelayTricks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(mailboxes=("alice@our.test",), domains=("our.test",),
                        smtp=["tarpit_delay_ms: 0", "max_errors: 1000"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()

    def tearDown(self):
        self.assertTrue(self.node.alive(), self.node.read_log()[-2000:])
        self.assertEqual(self.node.queue_files(), [])
        self.assertEqual(self.node.maildir("alice"), [])

    def rcpt(self, rcpt, sender="<>"):
        """(code, enhanced) of RCPT TO:<rcpt> after MAIL FROM:sender; then DATA must fail."""
        s = Smtp(self.node.smtp_port)
        self.assertEqual(s.reply()[0], 220)
        self.assertEqual(s.cmd(b"EHLO client.example")[0], 250)
        s.cmd(b"MAIL FROM:" + sender.encode())
        code, text = s.cmd(b"RCPT TO:<" + rcpt.encode() + b">")
        data_code, _ = s.cmd(b"DATA")
        self.assertNotEqual(data_code, 354, f"DATA accepted after RCPT TO:<{rcpt}>")
        s.cmd(b"QUIT")
        s.close()
        return code, text.split()[1] if len(text.split()) > 1 else ""

    def assert_refused(self, rcpt, sender="<>", expect=None):
        code, enhanced = self.rcpt(rcpt, sender)
        with self.subTest(rcpt=rcpt, sender=sender):
            if expect:
                self.assertEqual((code, enhanced), expect)
            else:
                self.assertIn((code, enhanced), REFUSED)

    def test_47_foreign_recipient_with_every_sender(self):
        for sender in ("<>", "<spamtest@localhost>", "<postmaster@our.test>", f"<antispam@[{OUR_IP}]>"):
            self.assert_refused("relaytest@ext.example", sender, (550, "5.7.1"))
        # A sender without a domain fails at MAIL (501 5.1.7); the RCPT then has no MAIL.
        code, enhanced = self.rcpt("relaytest@ext.example", "<spamtest>")
        self.assertEqual((code, enhanced), (503, "5.5.1"))

    def test_48_percent_hack(self):
        self.assert_refused(f"relaytest%ext.example@[{OUR_IP}]", expect=(550, "5.7.1"))
        self.assert_refused("relaytest%ext.example@our.test", expect=(550, "5.1.1"))

    def test_49_quoted_local_parts(self):
        self.assert_refused('"relaytest@ext.example"', expect=(501, "5.1.3"))
        self.assert_refused('"relaytest%ext.example"', expect=(501, "5.1.3"))
        self.assert_refused(f'"relaytest@ext.example"@[{OUR_IP}]', expect=(550, "5.7.1"))
        self.assert_refused('"relaytest@ext.example"@our.test', expect=(550, "5.1.1"))

    def test_50_double_at(self):
        self.assert_refused(f"relaytest@ext.example@[{OUR_IP}]", expect=(501, "5.1.3"))
        self.assert_refused("relaytest@ext.example@our.test", expect=(501, "5.1.3"))

    def test_51_source_routes_are_judged_by_the_final_domain(self):
        self.assert_refused(f"@[{OUR_IP}]:relaytest@ext.example", expect=(550, "5.7.1"))
        self.assert_refused("@our.test:relaytest@ext.example", expect=(550, "5.7.1"))
        self.assert_refused("@our.test,@[127.0.0.1]:relaytest@ext.example", expect=(550, "5.7.1"))

    def test_52_bang_paths(self):
        self.assert_refused("ext.example!relaytest", expect=(501, "5.1.3"))
        self.assert_refused(f"ext.example!relaytest@[{OUR_IP}]", expect=(550, "5.7.1"))
        self.assert_refused("ext.example!relaytest@our.test", expect=(550, "5.1.1"))

    def test_53_trailing_dot(self):
        self.assert_refused("user@ext.example.", expect=(550, "5.7.1"))
        # our.test. is our.test: an unknown user is 5.1.1 (not relay denied), a known one is ours.
        self.assert_refused("user@our.test.", expect=(550, "5.1.1"))
        s = Smtp(self.node.smtp_port)
        s.reply()
        s.cmd(b"EHLO client.example")
        self.assertEqual(s.cmd(b"MAIL FROM:<s@ext.example>")[0], 250)
        code, text = s.cmd(b"RCPT TO:<Alice@Our.Test.>")
        self.assertEqual(code, 250, text)
        s.cmd(b"QUIT")
        s.close()

    def test_54_address_literals(self):
        self.assert_refused(f"user@[{OUR_IP}]", expect=(550, "5.7.1"))
        self.assert_refused("user@[IPv6:::1]", expect=(550, "5.7.1"))
        self.assert_refused("user@[0x7f.1]", expect=(501, "5.1.3"))
        self.assert_refused("user@[999.1.1.1]", expect=(501, "5.1.3"))


class RoutedLocalPartsAreNeverRelayed(unittest.TestCase):
    def check(self, node, cases):
        try:
            s = Smtp(node.smtp_port)
            s.reply()
            s.cmd(b"EHLO client.example")
            self.assertEqual(s.cmd(b"MAIL FROM:<s@our.test>")[0], 250)
            for rcpt, want in cases:
                code, text = s.cmd(b"RCPT TO:<" + rcpt.encode() + b">")
                with self.subTest(rcpt=rcpt):
                    self.assertEqual(code, want, text)
                    if code == 550:
                        self.assertIn("5.7.1", text)
            s.cmd(b"QUIT")
            s.close()
        finally:
            node.cleanup()

    def test_relay_domains(self):
        node = Node(mailboxes=("alice@our.test",), domains=("our.test",),
                    smtp=['relay_domains: ["partner.test"]']).start()
        self.check(node, [("user@partner.test", 250),
                          ("relaytest%ext.example@partner.test", 550),
                          ("ext.example!relaytest@partner.test", 550),
                          ('"relaytest@ext.example"@partner.test', 550)])

    def test_trusted_network(self):
        node = Node(mailboxes=("alice@our.test",), domains=("our.test",),
                    smtp=['relay_networks: ["127.0.0.0/8"]']).start()
        self.check(node, [("user@ext.example", 250),
                          (f"relaytest%ext.example@[{OUR_IP}]", 550),
                          ("ext.example!relaytest@other.example", 550),
                          ('"relaytest@ext.example"@other.example', 550)])


if __name__ == "__main__":
    unittest.main()
