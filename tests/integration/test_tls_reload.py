"""SIGHUP reloads the server certificate and key (auth/tls_context.h) with the real binary.

- after the files are replaced and SIGHUP is sent, a new STARTTLS connection (and a new
  implicit-TLS one) sees the new certificate's subject; a connection accepted before the
  reload keeps the old certificate even for a STARTTLS it starts afterwards;
- a broken certificate file on SIGHUP keeps the current certificate, is counted, and the
  error names the file; the node goes on serving TLS.
"""
import json
import shutil
import signal
import smtplib
import tempfile
import unittest

from bhnode import Node, wait_until
from tlstest import client_context, install, make_ca, make_leaf, peer_cn, tls_yaml


class TlsReload(unittest.TestCase):
    def setUp(self):
        self.certs = tempfile.mkdtemp(prefix="bh-tls-")
        make_ca(self.certs)
        make_leaf(self.certs, "first", "first.example.org")
        make_leaf(self.certs, "second", "second.example.org")
        install(self.certs, "first")
        self.node = Node(smtps=True, extra=tls_yaml(self.certs)).start()

    def tearDown(self):
        alive = self.node.alive()
        log = self.node.read_log()
        self.node.cleanup()
        shutil.rmtree(self.certs, ignore_errors=True)
        self.assertTrue(alive, log[-2000:])

    def status(self):
        return json.loads(self.node.bhctl("--json", "status").stdout)["sessions"]

    def starttls_cn(self, c=None):
        own = c is None
        if own:
            c = smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10)
            c.ehlo("client.example")
        try:
            code, _ = c.starttls(context=client_context(self.certs))
            self.assertEqual(code, 220)
            return peer_cn(c.sock)
        finally:
            c.quit()

    def smtps_cn(self):
        with smtplib.SMTP_SSL("127.0.0.1", self.node.smtps_port, context=client_context(self.certs),
                              timeout=10) as c:
            c.ehlo("client.example")
            return peer_cn(c.sock)

    def hup_and_wait(self, key):
        before = self.status()[key]
        self.node.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.status()[key] > before, what=key)

    def test_sighup_serves_the_new_certificate_to_new_connections_only(self):
        self.assertEqual(self.starttls_cn(), "first.example.org")
        self.assertEqual(self.smtps_cn(), "first.example.org")
        early = smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10)  # accepted before
        early.ehlo("client.example")

        install(self.certs, "second")
        self.hup_and_wait("tls_reloads")
        self.assertEqual(self.starttls_cn(), "second.example.org")
        self.assertEqual(self.smtps_cn(), "second.example.org")
        self.assertEqual(self.starttls_cn(early), "first.example.org")
        self.assertEqual(self.status()["tls_reload_failures"], 0)

    def test_a_broken_file_keeps_the_current_certificate(self):
        with open(f"{self.certs}/cert.pem", "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
        self.hup_and_wait("tls_reload_failures")
        self.assertEqual(self.status()["tls_reloads"], 0)
        self.assertEqual(self.starttls_cn(), "first.example.org")
        self.assertEqual(self.smtps_cn(), "first.example.org")
        log = self.node.read_log()
        self.assertIn(f"{self.certs}/cert.pem", log)
        self.assertIn("keeping the current certificate", log)

        # A certificate without its key (one file of two replaced): refused as well.
        install(self.certs, "second", key="unused.key")
        self.hup_and_wait("tls_reload_failures")
        self.assertEqual(self.starttls_cn(), "first.example.org")
        # Both replaced: taken.
        install(self.certs, "second")
        self.hup_and_wait("tls_reloads")
        self.assertEqual(self.starttls_cn(), "second.example.org")


if __name__ == "__main__":
    unittest.main()
