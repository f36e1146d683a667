"""bridgehead relays to a real Postfix smart host over STARTTLS with AUTH (issue: relay out).

The smart host (tests/support/postfix_smarthost.sh) offers STARTTLS with a certificate
from a CA made for the test and AUTH PLAIN/LOGIN through Cyrus SASL only after TLS, and
refuses one recipient with 550 5.1.1. The node's connector says tls: required,
tls_verify: true (routing.tls_ca_file) and authenticates from a password file:
  - the message arrives byte-exact, Postfix logs the TLS session and the SASL login;
  - per-recipient mixed results: the accepted recipient is relayed, the refused one
    bounces with a DSN carrying Postfix's reply, in the same transaction.
"""
import json
import os
import re
import signal
import shutil
import smtplib
import subprocess
import tempfile
import time
import unittest

from bhnode import Node, free_port, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
SMARTHOST = os.path.join(HERE, "..", "support", "postfix_smarthost.sh")
USER, PASSWORD = "relayuser", "s3cret pass"


class RelayToPostfixSmartHost(unittest.TestCase):
    def setUp(self):
        self.base = tempfile.mkdtemp(prefix="bh-sh-", dir="/var/tmp")
        self.port = free_port()
        subprocess.run(["bash", SMARTHOST, self.base, str(self.port), USER, PASSWORD], check=True,
                       capture_output=True)
        conf = os.path.join(self.base, "conf")
        # One recipient the smart host refuses, before anyone may relay.
        subprocess.run(["postconf", "-c", conf, "-e",
                        "smtpd_recipient_restrictions = check_recipient_access "
                        "inline:{ {gone@example.net=550 5.1.1 <gone@example.net>: no such user here} }, "
                        "permit_sasl_authenticated, reject"], check=True)
        subprocess.run(["postfix", "-c", conf, "start"], check=True, capture_output=True)
        wait_until(lambda: self._up(), what="postfix smart host")
        pwfile = os.path.join(self.base, "relay.pw")
        with open(pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        extra = ("routing:\n"
                 f"  tls_ca_file: {self.base}/ca.pem\n"
                 "  smtp_connectors:\n"
                 "    - name: smarthost\n"
                 f'      smart_hosts: ["127.0.0.1:{self.port}"]\n'
                 '      address_spaces: [{pattern: "*", cost: 1}]\n'
                 "      tls: required\n"
                 "      tls_verify: true\n"
                 f"      auth: {{username: {USER}, password_file: {pwfile}}}\n")
        self.node = Node(smtp=['relay_networks: ["127.0.0.0/8"]'], extra=extra).start()

    def tearDown(self):
        self.node.cleanup()
        try:
            with open(os.path.join(self.base, "queue/pid/master.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
            time.sleep(0.5)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.base, ignore_errors=True)

    def _up(self):
        import socket
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                return s.recv(4) == b"220 "
        except OSError:
            return False

    def delivered(self):
        d = os.path.join(self.base, "mail/box/new")
        out = []
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                with open(os.path.join(d, name), "rb") as f:
                    out.append(f.read())
        return out

    def test_byte_exact_over_starttls_with_auth_and_mixed_recipients(self):
        before = len(self.node.maildir("alice"))
        msg = (b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: via the smart host\r\n"
               b"Message-ID: <smarthost@test>\r\n\r\n.leading dot\r\n..two dots\r\n"
               b"\xc3\xa9t\xc3\xa9 8-bit\r\nlast line\r\n")
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10) as c:
            c.ehlo("client.example")
            c.sendmail("alice@example.org", ["bob@example.net", "gone@example.net"], msg,
                       mail_options=["BODY=8BITMIME"])
        wait_until(lambda: self.delivered(), timeout=20, what="mail at the smart host")
        got = self.delivered()
        self.assertEqual(len(got), 1)
        head, _, body = got[0].partition(b"\n\n") if b"\r\n\r\n" not in got[0] else got[0].partition(b"\r\n\r\n")
        want = msg.partition(b"\r\n\r\n")[2]
        # Postfix's virtual delivery writes Maildir files with LF line ends.
        self.assertEqual(body.replace(b"\r\n", b"\n"), want.replace(b"\r\n", b"\n"))
        self.assertIn(b"Subject: via the smart host", head)
        self.assertIn(b"by mx.example.org (bridgehead)", head)  # our Received made it through
        def maillog():
            with open(os.path.join(self.base, "maillog"), "rb") as f:
                return f.read()
        self.assertIn(b"sasl_method=PLAIN, sasl_username=" + USER.encode(), maillog())
        # Postfix's own tally of the session, written when it ends: the relay holds the
        # connection for the next message (routing.connection_idle_s, 5 s), then QUITs.
        wait_until(lambda: re.search(rb"disconnect from \S+ ehlo=2 starttls=1 auth=1 mail=1 "
                                     rb"rcpt=1/2 bdat=1 quit=1", maillog()),
                   timeout=20, what="the session's tally with quit=1 in Postfix's log")
        self.assertIn(b"with ESMTPSA", head)         # Postfix's stamp: TLS and AUTH
        # The refused recipient: one DSN with the smart host's reply, back to alice.
        files = self.node.wait_mail("alice", before + 1, timeout=20)
        with open(files[-1], "rb") as f:
            dsn = f.read()
        self.assertIn(b"Final-Recipient: rfc822; gone@example.net", dsn)
        self.assertIn(b"Action: failed", dsn)
        # Postfix's words, folded by the report at 78 columns.
        self.assertIn(b"Diagnostic-Code: smtp; 550 5.1.1 <gone@example.net>: Recipient address\r\n rejected:"
                      b" <gone@example.net>: no such user here", dsn)
        self.assertNotIn(b"Final-Recipient: rfc822; bob@example.net", dsn)
        wait_until(lambda: not self.node.queue_files(), what="queue to empty")

    def test_wrong_password_keeps_the_mail_queued(self):
        with open(os.path.join(self.base, "relay.pw"), "w") as f:
            f.write("wrong\n")
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10) as c:
            c.ehlo("client.example")
            c.sendmail("alice@example.org", ["bob@example.net"], b"Subject: x\r\n\r\nx\r\n")
        wait_until(lambda: json.loads(self.node.bhctl("--json", "queue", "list").stdout)["messages"]
                   and json.loads(self.node.bhctl("--json", "queue", "list").stdout)["messages"][0]["state"] == "retry",
                   timeout=20, what="deferred")
        m = json.loads(self.node.bhctl("--json", "queue", "list").stdout)["messages"][0]
        self.assertTrue(m["last_error"].startswith("4."), m)
        self.assertEqual(self.delivered(), [])


if __name__ == "__main__":
    unittest.main()
