"""Python smtplib and raw sockets against the real bridgehead binary (issue: single node)."""
import email.utils
import json
import smtplib
import time
import unittest

from bhnode import Node, Smtp, body_after_received, wait_until


class SmtpBasic(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(smtp=["max_message_size: 100000"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()

    def smtp(self):
        c = smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10)
        c.ehlo("client.example")
        return c

    def test_smtplib_message_is_delivered_byte_exact(self):
        before = len(self.node.maildir("bob"))
        msg = (b"From: s@example.net\r\nTo: bob@example.org\r\nSubject: exact\r\n"
               b"Message-ID: <exact@test>\r\n\r\nline 1\r\n.leading dot\r\n..two dots\r\nend\r\n")
        with self.smtp() as c:
            c.sendmail("s@example.net", ["bob@example.org"], msg)
        files = self.node.wait_mail("bob", before + 1)
        raw = open(files[-1], "rb").read()
        self.assertEqual(body_after_received(raw), msg)
        self.assertIn(b"by mx.example.org (bridgehead) with ESMTP id ", raw.split(b"\r\n\r\n")[0])

    def test_ehlo_advertises_extensions(self):
        with self.smtp() as c:
            for ext in ("pipelining", "size", "8bitmime", "binarymime", "chunking", "dsn",
                        "enhancedstatuscodes", "smtputf8"):
                self.assertTrue(c.has_extn(ext), ext)
            self.assertEqual(c.esmtp_features["size"], "100000")
            self.assertFalse(c.has_extn("vrfy"))

    def test_eight_bit_body(self):
        before = len(self.node.maildir("alice"))
        msg = "Subject: caf\u00e9\r\n\r\nna\u00efve \u65e5\u672c\r\n".encode("utf-8")
        with self.smtp() as c:
            c.sendmail("s@example.net", ["alice@example.org"], msg, mail_options=["BODY=8BITMIME"])
        files = self.node.wait_mail("alice", before + 1)
        self.assertEqual(body_after_received(open(files[-1], "rb").read()), msg)

    def test_binary_body_via_bdat(self):
        before = len(self.node.maildir("alice"))
        payload = bytes(range(256)) * 4 + b"\r\n.\r\n\n.\n\r\x00end"
        s = Smtp(self.node.smtp_port)
        self.assertEqual(s.reply()[0], 220)
        self.assertEqual(s.cmd(b"EHLO c")[0], 250)
        self.assertEqual(s.cmd(b"MAIL FROM:<s@example.net> BODY=BINARYMIME")[0], 250)
        self.assertEqual(s.cmd(b"RCPT TO:<alice@example.org>")[0], 250)
        half = len(payload) // 2
        s.send(b"BDAT %d\r\n" % half + payload[:half])
        self.assertEqual(s.reply()[0], 250)
        s.send(b"BDAT %d LAST\r\n" % (len(payload) - half) + payload[half:])
        code, text = s.reply()
        self.assertEqual(code, 250, text)
        self.assertIn("2.0.0 Ok: queued as ", text)
        s.cmd(b"QUIT")
        files = self.node.wait_mail("alice", before + 1)
        self.assertEqual(body_after_received(open(files[-1], "rb").read()), payload)

    def test_unknown_user_is_550_511(self):
        with self.smtp() as c:
            c.mail("s@example.net")
            code, text = c.rcpt("nobody@example.org")
            self.assertEqual(code, 550)
            self.assertIn(b"5.1.1", text)

    def test_relay_is_refused(self):
        with self.smtp() as c:
            c.mail("")
            code, text = c.rcpt("relaytest@ext.example")
            self.assertEqual(code, 550)
            self.assertIn(b"5.7.1", text)

    def test_recipient_twice_gives_one_copy_and_two_mailboxes_one_each(self):
        a0, b0 = len(self.node.maildir("alice")), len(self.node.maildir("bob"))
        with self.smtp() as c:
            c.sendmail("s@example.net", ["alice@example.org", "ALICE@example.org", "bob@example.org"],
                       b"Subject: dup\r\n\r\nx\r\n")
        self.node.wait_mail("alice", a0 + 1)
        self.node.wait_mail("bob", b0 + 1)
        import time
        time.sleep(0.3)  # a second copy, if there were one, would have landed by now
        self.assertEqual(len(self.node.maildir("alice")), a0 + 1)
        self.assertEqual(len(self.node.maildir("bob")), b0 + 1)

    def test_size_limits(self):
        with self.smtp() as c:
            code, text = c.mail("s@example.net", ["SIZE=200000"])
            self.assertEqual(code, 552)
            self.assertIn(b"5.3.4", text)
            c.rset()
            c.mail("s@example.net", ["SIZE=100"])
            c.rcpt("alice@example.org")
            code, text = c.data(b"x" * 150000)
            self.assertEqual(code, 552)
            self.assertIn(b"5.3.4", text)
            self.assertEqual(c.noop()[0], 250)  # the session continues

    def test_rset_vrfy_help_noop(self):
        with self.smtp() as c:
            c.mail("s@example.net")
            self.assertEqual(c.rset()[0], 250)
            code, text = c.rcpt("alice@example.org")
            self.assertEqual(code, 503)
            code, text = c.verify("alice@example.org")
            self.assertEqual(code, 502)
            self.assertIn(b"5.5.1", text)
            self.assertEqual(c.docmd("HELP")[0], 214)
            self.assertEqual(c.noop()[0], 250)

    def test_dsn_parameters_accepted(self):
        before = len(self.node.maildir("alice"))
        with self.smtp() as c:
            c.sendmail("s@example.net", ["alice@example.org"], b"Subject: dsn\r\n\r\nx\r\n",
                       mail_options=["RET=HDRS", "ENVID=abc+2Bdef"],
                       rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;alice@example.org"])
            code, _ = c.docmd("MAIL FROM:<s@example.net> RET=BOGUS")
            self.assertEqual(code, 501)
        self.node.wait_mail("alice", before + 1)

    def test_smtputf8(self):
        s = Smtp(self.node.smtp_port)
        s.reply()
        s.cmd(b"EHLO c")
        self.assertEqual(s.cmd("MAIL FROM:<j\u00f6rg@example.net> SMTPUTF8".encode("utf-8"))[0], 250)
        self.assertEqual(s.cmd(b"RSET")[0], 250)
        self.assertEqual(s.cmd("MAIL FROM:<j\u00f6rg@example.net>".encode("utf-8"))[0], 501)
        s.close()

    def test_helo_session(self):
        before = len(self.node.maildir("bob"))
        c = smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10)
        c.helo("old.client")
        c.sendmail("s@example.net", ["bob@example.org"], b"Subject: helo\r\n\r\nx\r\n")
        c.quit()
        raw = open(self.node.wait_mail("bob", before + 1)[-1], "rb").read()
        self.assertIn(b"with SMTP id", raw)

    def active_sessions(self):
        r = self.node.bhctl("--json", "status")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["sessions"]["active"]

    def test_quit_closes_at_once_other_input_behind_it_lingers(self):
        # After QUIT with nothing behind it the node closes at once: the client sees EOF
        # and the session slot is free while the client still holds its socket open.
        # (Before, the node half-closed and waited up to 2 s for the client's FIN.)
        s = Smtp(self.node.smtp_port)
        s.reply()
        s.send(b"EHLO c\r\n")
        s.reply()
        wait_until(lambda: self.active_sessions() == 1, timeout=5, what="one session")
        s.send(b"QUIT\r\n")
        start = time.monotonic()
        self.assertEqual(s.reply()[0], 221)
        s.s.settimeout(5)
        self.assertEqual(s.s.recv(100), b"")  # EOF
        wait_until(lambda: self.active_sessions() == 0, timeout=1.5, what="no session left")
        self.assertLess(time.monotonic() - start, 1.5)
        s.s.close()
        # Input pipelined behind the QUIT: the 221 still arrives whole, not lost to a reset.
        for tail in (b"NOOP\r\n", b"x" * 5000):
            p = Smtp(self.node.smtp_port)
            p.reply()
            p.send(b"EHLO c\r\n")
            p.reply()
            p.send(b"QUIT\r\n" + tail)
            code, text = p.reply()
            self.assertEqual(code, 221, text)
            p.s.close()


if __name__ == "__main__":
    unittest.main()
