"""Relay policy at RCPT and the bounce path end to end (issue: relay out).

A client in smtp.relay_networks, or any client writing to a domain in
smtp.relay_domains, may give recipients outside the local domains; everyone else gets
550 5.7.1. A relayed recipient with no route bounces: the sender (a local mailbox here)
receives a multipart/report DSN from the null sender, and a message from the null sender
never gets one.
"""
import smtplib
import unittest

from bhnode import Node, Smtp, wait_until


class RelayPolicy(unittest.TestCase):
    def test_untrusted_client_cannot_relay(self):
        node = Node(smtp=['relay_networks: ["10.0.0.0/8", "192.0.2.7"]']).start()
        try:
            s = Smtp(node.smtp_port)
            self.assertEqual(s.reply()[0], 220)
            s.cmd(b"EHLO c")
            self.assertEqual(s.cmd(b"MAIL FROM:<alice@example.org>")[0], 250)
            code, text = s.cmd(b"RCPT TO:<someone@elsewhere.test>")
            self.assertEqual(code, 550)
            self.assertIn("5.7.1", text)
            self.assertEqual(s.cmd(b"RCPT TO:<bob@example.org>")[0], 250)
            s.close()
        finally:
            node.cleanup()

    def test_relay_domain_is_accepted_from_anyone(self):
        node = Node(smtp=['relay_domains: ["Partner.Test."]']).start()
        try:
            s = Smtp(node.smtp_port)
            s.reply()
            s.cmd(b"EHLO c")
            s.cmd(b"MAIL FROM:<x@example.net>")
            self.assertEqual(s.cmd(b"RCPT TO:<a@partner.test>")[0], 250)
            self.assertEqual(s.cmd(b"RCPT TO:<a@sub.partner.test>")[0], 550)
            s.close()
        finally:
            node.cleanup()

    def test_trusted_client_relays_and_an_unroutable_recipient_bounces_to_the_sender(self):
        node = Node(smtp=['relay_networks: ["127.0.0.0/8"]'],
                    queue=["retry_initial_s: 1", "glitch_interval_s: 1"]).start()
        try:
            before = len(node.maildir("alice"))
            msg = (b"From: alice@example.org\r\nTo: x@nowhere.test\r\nSubject: to nowhere\r\n"
                   b"Message-ID: <bounce-me@test>\r\n\r\nhello\r\n")
            with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=10) as c:
                c.ehlo("client.example")
                c.sendmail("alice@example.org", ["x@nowhere.test"], msg,
                           rcpt_options=["NOTIFY=FAILURE", "ORCPT=rfc822;x@nowhere.test"])
                # From the null sender: no report may come back for this one.
                c.sendmail("", ["y@nowhere.test"], b"Subject: from <>\r\n\r\nx\r\n")
            files = node.wait_mail("alice", before + 1)
            dsn = open(files[-1], "rb").read()
            self.assertIn(b"Content-Type: multipart/report; report-type=delivery-status", dsn)
            self.assertIn(b"Final-Recipient: rfc822; x@nowhere.test", dsn)
            self.assertIn(b"Original-Recipient: rfc822;x@nowhere.test", dsn)
            self.assertIn(b"Action: failed", dsn)
            self.assertIn(b"Status: 5.4.4", dsn)
            self.assertIn(b"Message-ID: <bounce-me@test>", dsn)  # the original comes back
            wait_until(lambda: not node.queue_files(), what="queue to empty")
            self.assertEqual(len(node.maildir("alice")), before + 1)
        finally:
            node.cleanup()


if __name__ == "__main__":
    unittest.main()
