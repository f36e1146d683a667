"""hostile-inputs.md #10-14 (STARTTLS and implicit TLS) against the real binary.

test_starttls.py already covers a MAIL injected behind STARTTLS (the #10 class); here:
#10 byte-exact, #11 MAIL without a new EHLO, #12 STARTTLS inside TLS and with an argument,
#13 a close_notify in the middle of BDAT 100 followed by a clear-text octet, #14 a
ClientHello trickled one octet every 100 ms (closed by tls.handshake_timeout_s, 2 s here).
After each: the node is alive, nothing was queued, a fresh EHLO works.
"""
import json
import shutil
import socket
import tempfile
import time
import unittest

from bhnode import Node, Smtp
from tlstest import (BioClient, client_context, client_hello, closed_within, install, make_ca,
                     make_leaf, tls_yaml)

HANDSHAKE_S = 2


def line(sock):
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError(buf)
        buf += chunk
    return buf


def reply(read):
    """The lines of one reply through `read()` (one line each call)."""
    lines = [read()]
    while lines[-1][3:4] == b"-":
        lines.append(read())
    return lines


class TlsHostile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="bh-tls-")
        make_ca(cls.certs)
        make_leaf(cls.certs, "mx", "mx.example.org")
        install(cls.certs, "mx")
        cls.node = Node(smtps=True, extra=tls_yaml(cls.certs, handshake_timeout_s=HANDSHAKE_S),
                        smtp=["max_connections_per_ip_per_minute: 0"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        shutil.rmtree(cls.certs, ignore_errors=True)

    def setUp(self):
        self.messages = len(self.node.maildir("alice")) + len(self.node.queue_files())

    def tearDown(self):
        self.assertTrue(self.node.alive(), self.node.read_log()[-2000:])
        self.assertEqual(len(self.node.maildir("alice")) + len(self.node.queue_files()), self.messages)
        s = Smtp(self.node.smtp_port)
        self.assertEqual(s.reply()[0], 220)
        self.assertEqual(s.cmd(b"EHLO after.check")[0], 250)
        self.assertEqual(s.cmd(b"QUIT")[0], 221)
        s.close()

    def plain_to_starttls(self, pipelined=b""):
        """Connects, EHLO, sends STARTTLS (+ `pipelined`), reads the 220; returns the socket."""
        s = socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=10)
        self.assertTrue(line(s).startswith(b"220 "))
        s.sendall(b"EHLO client.example\r\n")
        reply(lambda: line(s))
        s.sendall(b"STARTTLS\r\n" + pipelined)
        self.assertTrue(line(s).startswith(b"220 2.0.0"))
        return s

    def tls_after_starttls(self, pipelined=b""):
        s = self.plain_to_starttls(pipelined)
        t = client_context(self.certs).wrap_socket(s, server_hostname="mx.example.org")
        f = t.makefile("rb")
        return t, f

    def test_10_command_pipelined_behind_starttls_gets_no_reply_inside_tls(self):
        t, f = self.tls_after_starttls(b"RSET\r\n")
        t.sendall(b"EHLO client.example\r\n")
        first = reply(f.readline)
        # An executed RSET would answer "250 2.0.0 ..." first, inside TLS.
        self.assertTrue(first[0].startswith(b"250-mx.example.org"), first)
        self.assertNotIn(b"STARTTLS\r\n", b"".join(first))
        t.close()

    def test_11_mail_without_a_new_ehlo_after_tls(self):
        t, f = self.tls_after_starttls()
        t.sendall(b"MAIL FROM:<a@example.net>\r\n")
        r = reply(f.readline)
        self.assertTrue(r[-1].startswith(b"503 5.5.1"), r)
        t.sendall(b"EHLO client.example\r\n")
        reply(f.readline)
        t.sendall(b"MAIL FROM:<a@example.net>\r\n")
        self.assertTrue(reply(f.readline)[-1].startswith(b"250"))
        t.close()

    def test_12_starttls_inside_tls_and_with_an_argument(self):
        t, f = self.tls_after_starttls()
        t.sendall(b"EHLO client.example\r\nSTARTTLS\r\n")
        reply(f.readline)
        r = reply(f.readline)
        self.assertTrue(r[-1].startswith(b"503 5.5.1"), r)
        t.close()
        s = Smtp(self.node.smtp_port)
        s.reply()
        s.cmd(b"EHLO client.example")
        code, text = s.cmd(b"STARTTLS foo")
        self.assertEqual(code, 501)
        self.assertIn("5.5.4", text)
        s.close()
        # On the implicit-TLS port STARTTLS is always "already active".
        t = client_context(self.certs).wrap_socket(
            socket.create_connection(("127.0.0.1", self.node.smtps_port), timeout=10),
            server_hostname="mx.example.org")
        f = t.makefile("rb")
        reply(f.readline)
        t.sendall(b"EHLO client.example\r\nSTARTTLS\r\n")
        reply(f.readline)
        self.assertTrue(reply(f.readline)[-1].startswith(b"503 5.5.1"))
        t.close()

    def bdat_then_close_notify(self, sock):
        c = BioClient(sock, client_context(self.certs))
        c.handshake()
        if sock.getpeername()[1] == self.node.smtps_port:
            self.assertTrue(c.recv_line().startswith(b"220 "))
        c.send(b"EHLO client.example\r\n")
        reply(c.recv_line)
        c.send(b"MAIL FROM:<s@example.net>\r\n")
        self.assertTrue(c.recv_line().startswith(b"250"))
        c.send(b"RCPT TO:<alice@example.org>\r\n")
        self.assertTrue(c.recv_line().startswith(b"250"))
        c.send(b"BDAT 100 LAST\r\n" + b"x" * 40)
        c.close_notify()
        sock.sendall(b"Z")  # one clear-text octet after the TLS stream ended
        self.assertTrue(closed_within(sock, 5))
        sock.close()

    def test_13_close_notify_in_the_middle_of_bdat_then_clear_text(self):
        self.bdat_then_close_notify(self.plain_to_starttls())
        self.bdat_then_close_notify(socket.create_connection(("127.0.0.1", self.node.smtps_port), timeout=10))

    def trickle_client_hello(self, sock):
        """Sends a ClientHello one octet every 100 ms; returns the seconds until closed."""
        hello = client_hello(client_context(self.certs))
        self.assertGreater(len(hello), 100)  # takes > 10 s to trickle: the deadline must act
        sock.settimeout(0.1)
        t0 = time.monotonic()
        for b in hello:
            try:
                sock.sendall(bytes([b]))
                if sock.recv(4096) == b"":
                    return time.monotonic() - t0
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - t0
        self.fail("the handshake was not cut off while the ClientHello trickled in")

    def status(self):
        return json.loads(self.node.bhctl("--json", "status").stdout)["sessions"]

    def test_14_trickled_client_hello_is_cut_off_by_the_handshake_deadline(self):
        failures = self.status()["tls_failures"]
        for name, sock in (("starttls", lambda: self.plain_to_starttls()),
                           ("smtps", lambda: socket.create_connection(("127.0.0.1", self.node.smtps_port),
                                                                      timeout=10))):
            with self.subTest(port=name):
                s = sock()
                elapsed = self.trickle_client_hello(s)
                s.close()
                self.assertGreaterEqual(elapsed, HANDSHAKE_S - 0.5)
                self.assertLess(elapsed, HANDSHAKE_S + 4)
        self.assertGreaterEqual(self.status()["tls_failures"], failures + 2)  # counted


if __name__ == "__main__":
    unittest.main()
