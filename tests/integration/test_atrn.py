"""On-demand mail relay (RFC 2645): the ATRN round trip, end to end.

Mail for client.example (customer carol's domain) is accepted from anyone and held. Carol
connects to the ODMR port, starts TLS, logs in and says ATRN; after our 250 the roles
reverse on the same connection: she greets as a server, and the node, now the client,
delivers the held messages to her and says QUIT. Nothing is left in the queue.
Also: ATRN with nothing waiting is 453, for somebody else's domain 450, without AUTH 530.
"""
import base64
import json
import shutil
import smtplib
import ssl
import subprocess
import tempfile
import time
import unittest

from bhnode import Node, free_port, wait_until
from test_starttls import make_certs


def read_line(sock, buf):
    while b"\r\n" not in buf[0]:
        data = sock.recv(65536)
        if not data:
            raise AssertionError("connection closed; had %r" % buf[0])
        buf[0] += data
    line, buf[0] = buf[0].split(b"\r\n", 1)
    return line


def serve_as_customer(sock, timeout=20):
    """Acts as the customer's SMTP server on `sock` until QUIT; returns the messages
    as (sender, [recipients], data)."""
    sock.settimeout(timeout)
    buf = [b""]
    sock.sendall(b"220 client.example ESMTP ready\r\n")
    messages, sender, rcpts = [], None, []
    while True:
        line = read_line(sock, buf)
        verb = line[:4].upper()
        if verb == b"EHLO":
            sock.sendall(b"250-client.example\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n")
        elif verb == b"MAIL":
            sender, rcpts = line[10:].split(b">")[0].lstrip(b"<"), []
            sock.sendall(b"250 2.1.0 ok\r\n")
        elif verb == b"RCPT":
            rcpts.append(line[8:].split(b">")[0].lstrip(b"<"))
            sock.sendall(b"250 2.1.5 ok\r\n")
        elif verb == b"DATA":
            sock.sendall(b"354 go ahead\r\n")
            data = []
            while True:
                l = read_line(sock, buf)
                if l == b".":
                    break
                data.append(l[1:] if l.startswith(b".") else l)
            messages.append((sender, rcpts, b"\r\n".join(data)))
            sock.sendall(b"250 2.0.0 taken\r\n")
        elif verb == b"QUIT":
            sock.sendall(b"221 2.0.0 bye\r\n")
            return messages
        elif verb == b"RSET":
            sock.sendall(b"250 2.0.0 ok\r\n")
        else:
            sock.sendall(b"500 5.5.2 what\r\n")


class Atrn(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bh-atrn-")
        make_certs(cls.tmp)
        sasldb = f"{cls.tmp}/sasldb2"
        for user in ("carol", "dave"):
            subprocess.run(["saslpasswd2", "-p", "-c", "-f", sasldb, "-u", "mx.example.org", user],
                           input=(user + "-pw").encode(), check=True)
        cls.odmr_port = free_port()
        extra = (f"tls:\n  cert_file: {cls.tmp}/cert.pem\n  key_file: {cls.tmp}/key.pem\n"
                 f"auth:\n  mechanisms: [PLAIN]\n  sasldb: {sasldb}\n  failure_delay_ms: 0\n"
                 "odmr:\n  idle_ms: 1000\n  customers:\n"
                 "    - user: carol\n      domains: [client.example, quiet.example]\n"
                 "    - user: dave\n      domains: [dave.example]\n")
        cls.node = Node(extra=extra, listen=[f'odmr: ["127.0.0.1:{cls.odmr_port}"]'],
                        queue=["retry_initial_s: 3600", "retry_max_s: 3600", "glitch_retries: 0"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def customer(self, user):
        c = smtplib.SMTP("127.0.0.1", self.odmr_port, timeout=15)
        c.ehlo("client.example")
        c.starttls(context=ssl.create_default_context(cafile=f"{self.tmp}/ca.pem"))
        c.ehlo("client.example")
        c.login(user, user + "-pw")
        return c

    def test_atrn_round_trip_delivers_the_held_mail_on_the_same_connection(self):
        bodies = [b"Subject: one\r\n\r\nfirst held message\r\n.leading dot",
                  b"Subject: two\r\n\r\nsecond held message"]
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=15) as c:
            c.ehlo("sender.example")
            c.sendmail("someone@sender.example", ["a@client.example", "b@client.example"], bodies[0])
            c.sendmail("someone@sender.example", ["a@client.example"], bodies[1])
        # Held: nothing can deliver it, and the hop waits for the customer.
        def held():
            queues = json.loads(self.node.bhctl("--json", "queue", "hops").stdout)["queues"]
            # Both deferred (state retry), not only counted on the hop: a message still on
            # its way to its deferral when ATRN comes would wait for the next ATRN.
            listed = json.loads(self.node.bhctl("--json", "queue", "list").stdout)
            msgs = listed["messages"] if isinstance(listed, dict) else listed
            return any(q["next_hop"] == "odmr:client.example" and q["messages"] == 2 and
                       q["in_flight"] == 0 for q in queues) and \
                len(msgs) == 2 and all(m["state"] == "retry" for m in msgs)
        wait_until(held, timeout=20, what="both messages held on odmr:client.example")
        self.assertEqual(len(self.node.queue_files()), 2)

        c = self.customer("carol")
        self.assertIn("atrn", c.esmtp_features)
        code, text = c.docmd("ATRN", "client.example")
        self.assertEqual(code, 250, text)
        try:
            got = serve_as_customer(c.sock)
        finally:
            c.close()
        self.assertEqual(len(got), 2)
        by_subject = {}
        for m in got:
            self.assertTrue(m[2].startswith(b"Received: from sender.example"), m[2][:80])
            by_subject[[l for l in m[2].split(b"\r\n") if l.startswith(b"Subject:")][0]] = m
        one, two = by_subject[b"Subject: one"], by_subject[b"Subject: two"]
        self.assertEqual(sorted(one[1]), [b"a@client.example", b"b@client.example"])
        self.assertEqual(two[1], [b"a@client.example"])
        self.assertTrue(one[2].endswith(b"first held message\r\n.leading dot"), one[2])
        wait_until(lambda: len(self.node.queue_files()) == 0, timeout=10,
                   what="an empty queue after ATRN")
        sessions = json.loads(self.node.bhctl("--json", "status").stdout)["sessions"]
        self.assertEqual(sessions["atrn_turns"], 1)

    def test_atrn_refusals(self):
        c = smtplib.SMTP("127.0.0.1", self.odmr_port, timeout=15)
        c.ehlo("client.example")
        code, text = c.docmd("ATRN", "client.example")
        self.assertEqual(code, 530, text)  # hostile #57: no AUTH, no ATRN
        code, _ = c.mail("x@client.example")
        self.assertEqual(code, 530)  # the ODMR port takes no mail without AUTH
        c.close()
        with self.customer("carol") as c:
            code, text = c.docmd("ATRN", "quiet.example")
            self.assertEqual(code, 453, text)
            code, text = c.docmd("ATRN", "dave.example")
            self.assertEqual(code, 450, text)
            self.assertIn(b"dave.example", text)


if __name__ == "__main__":
    unittest.main()
