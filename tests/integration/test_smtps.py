"""Implicit TLS (RFC 8314, listen.smtps) end to end with the real binary.

- smtplib.SMTP_SSL verifies our certificate against a CA made here, EHLO does not offer
  STARTTLS, STARTTLS is refused (503 5.5.1), and a message is queued and stamped ESMTPS;
- clear text sent to the port gets no SMTP banner (nothing is sent before a ClientHello)
  and the connection is closed, counted as a TLS failure;
- listen.smtps without tls.cert_file is a config error naming the file and the key.
"""
import json
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import unittest

from bhnode import BH_BIN, Node, body_after_received, wait_until
from tlstest import client_context, closed_within, install, make_ca, make_leaf, peer_cn, tls_yaml


class Smtps(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="bh-tls-")
        make_ca(cls.certs)
        make_leaf(cls.certs, "mx", "mx.example.org")
        install(cls.certs, "mx")
        cls.node = Node(smtps=True, extra=tls_yaml(cls.certs)).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        shutil.rmtree(cls.certs, ignore_errors=True)

    def tearDown(self):
        self.assertTrue(self.node.alive(), self.node.read_log()[-2000:])

    def status(self):
        return json.loads(self.node.bhctl("--json", "status").stdout)

    def test_smtp_ssl_verified_ehlo_and_a_message_queued_with_esmtps(self):
        before = len(self.node.maildir("alice"))
        msg = b"Subject: over implicit tls\r\n\r\nsecret\r\n"
        with smtplib.SMTP_SSL("127.0.0.1", self.node.smtps_port, context=client_context(self.certs),
                              timeout=10) as c:
            self.assertEqual(c.ehlo("client.example")[0], 250)
            self.assertFalse(c.has_extn("starttls"))
            self.assertTrue(c.has_extn("pipelining"))
            self.assertIn(c.sock.version(), ("TLSv1.2", "TLSv1.3"))
            self.assertEqual(peer_cn(c.sock), "mx.example.org")
            c.sendmail("s@example.net", ["alice@example.org"], msg)
        files = self.node.wait_mail("alice", before + 1)
        with open(files[-1], "rb") as f:
            raw = f.read()
        self.assertEqual(body_after_received(raw), msg)
        self.assertIn(b"with ESMTPS id", raw.split(b"\r\n\r\n")[0])
        self.assertGreaterEqual(self.status()["sessions"]["tls_sessions"], 1)
        self.assertEqual(self.status()["node"]["smtps_listen"], [f"127.0.0.1:{self.node.smtps_port}"])

    def test_starttls_inside_implicit_tls_is_refused(self):
        with smtplib.SMTP_SSL("127.0.0.1", self.node.smtps_port, context=client_context(self.certs),
                              timeout=10) as c:
            c.ehlo("client.example")
            code, text = c.docmd("STARTTLS")
            self.assertEqual(code, 503)
            self.assertTrue(text.startswith(b"5.5.1"), text)
            self.assertEqual(c.noop()[0], 250)  # the session goes on

    def test_clear_text_gets_no_banner_and_is_closed(self):
        failures = self.status()["sessions"]["tls_failures"]
        s = socket.create_connection(("127.0.0.1", self.node.smtps_port), timeout=10)
        s.settimeout(1.0)
        with self.assertRaises(socket.timeout):  # the server waits for a ClientHello
            s.recv(512)
        s.sendall(b"EHLO client.example\r\n")
        got = b""
        s.settimeout(10)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        s.close()
        self.assertFalse(got.startswith(b"220"), got)
        self.assertNotIn(b"ESMTP", got)
        wait_until(lambda: self.status()["sessions"]["tls_failures"] > failures,
                   what="the failed handshake to be counted")

    def test_plain_port_still_offers_starttls(self):
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10) as c:
            c.ehlo("client.example")
            self.assertTrue(c.has_extn("starttls"))


class SmtpsConfig(unittest.TestCase):
    def test_smtps_without_a_certificate_is_a_config_error(self):
        d = tempfile.mkdtemp(prefix="bh-it-")
        try:
            path = os.path.join(d, "node.yaml")
            with open(path, "w") as f:
                f.write(f"""node:
  name: node1
  data_dir: {d}/data
listen:
  smtp: ["127.0.0.1:2525"]
  smtps: ["127.0.0.1:4650"]
local_domains: [example.org]
""")
            r = subprocess.run([BH_BIN, "--check-config", "--config", path], capture_output=True,
                               text=True, timeout=20)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(path + ":6: listen.smtps: ", r.stderr)
            self.assertIn("tls.cert_file", r.stderr)
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
