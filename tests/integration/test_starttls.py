"""STARTTLS on the SMTP server (RFC 3207), end to end with the real binary.

- Python smtplib verifies our certificate (a CA made here), sends over TLS; the mail is
  stamped "with ESMTPS" and EHLO no longer offers STARTTLS;
- commands pipelined behind STARTTLS in clear text are discarded, never run over TLS;
- a real Postfix with bridgehead as its relayhost and smtp_tls_security_level=encrypt
  relays a message that arrives byte-exact.
"""
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from bhnode import Node, body_after_received, free_port, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))


def make_certs(d):
    def run(*a):
        subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=bridgehead test CA", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mx.example.org",
        "-keyout", f"{d}/key.pem", "-out", f"{d}/req.csr")
    with open(f"{d}/san.ext", "w") as f:
        f.write("subjectAltName=DNS:mx.example.org,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", f"{d}/req.csr", "-CA", f"{d}/ca.pem", "-CAkey",
        f"{d}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{d}/san.ext",
        "-out", f"{d}/cert.pem")


class StartTls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="bh-tls-")
        make_certs(cls.certs)
        extra = f"tls:\n  cert_file: {cls.certs}/cert.pem\n  key_file: {cls.certs}/key.pem\n"
        cls.node = Node(extra=extra).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        shutil.rmtree(cls.certs, ignore_errors=True)

    def context(self):
        ctx = ssl.create_default_context(cafile=f"{self.certs}/ca.pem")
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def test_smtplib_starttls_verified_and_stamped_esmtps(self):
        before = len(self.node.maildir("alice"))
        msg = b"Subject: over tls\r\n\r\nsecret\r\n.dot\r\n"
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10) as c:
            c.ehlo("client.example")
            self.assertTrue(c.has_extn("starttls"))
            code, _ = c.starttls(context=self.context())
            self.assertEqual(code, 220)
            c.ehlo("client.example")
            self.assertFalse(c.has_extn("starttls"))  # once per connection
            self.assertIn(c.sock.version(), ("TLSv1.2", "TLSv1.3"))
            c.sendmail("s@example.net", ["alice@example.org"], msg)
        files = self.node.wait_mail("alice", before + 1)
        with open(files[-1], "rb") as f:
            raw = f.read()
        self.assertEqual(body_after_received(raw), msg)
        self.assertIn(b"with ESMTPS id", raw.split(b"\r\n\r\n")[0])

    def test_clear_text_behind_starttls_is_discarded(self):
        s = socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=10)
        f = s.makefile("rb")
        self.assertTrue(f.readline().startswith(b"220"))
        s.sendall(b"EHLO c\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        # The injection: a command in the same clear-text packet as STARTTLS.
        s.sendall(b"STARTTLS\r\nMAIL FROM:<injected@example.net>\r\n")
        self.assertTrue(f.readline().startswith(b"220"))
        t = self.context().wrap_socket(s, server_hostname="mx.example.org")
        t.sendall(b"RCPT TO:<alice@example.org>\r\n")
        reply = t.recv(4096)
        # Had the MAIL run after the handshake, this RCPT would be accepted (250).
        self.assertTrue(reply.startswith(b"503"), reply)
        t.sendall(b"QUIT\r\n")
        t.close()

    def test_a_failed_handshake_is_counted_and_the_node_carries_on(self):
        s = socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=10)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO c\r\nSTARTTLS\r\n")
        while not f.readline().startswith(b"220"):
            pass
        s.sendall(b"this is not a TLS ClientHello\r\n" * 4)
        wait_until(lambda: s.recv(4096) == b"", what="close after a bad handshake")
        s.close()
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10) as c:
            self.assertEqual(c.ehlo("x")[0], 250)
        import json
        st = json.loads(self.node.bhctl("--json", "status").stdout)
        self.assertGreaterEqual(st["sessions"]["tls_failures"], 1)
        self.assertGreaterEqual(st["sessions"]["tls_sessions"], 0)


class PostfixRelaysOverTls(unittest.TestCase):
    """Postfix uses bridgehead as its relayhost and insists on TLS."""

    def test_postfix_relayhost_over_starttls_byte_exact(self):
        certs = tempfile.mkdtemp(prefix="bh-tls-")
        make_certs(certs)
        node = Node(extra=f"tls:\n  cert_file: {certs}/cert.pem\n  key_file: {certs}/key.pem\n").start()
        pf = tempfile.mkdtemp(prefix="bh-pf-", dir="/var/tmp")
        os.chmod(pf, 0o755)
        pf_port = free_port()
        try:
            for d in ("conf", "queue", "data"):
                os.makedirs(f"{pf}/{d}")
            shutil.chown(f"{pf}/data", "postfix", "postfix")
            with open(f"{pf}/conf/main.cf", "w") as f:
                f.write(f"""compatibility_level = 3.6
config_directory = {pf}/conf
queue_directory = {pf}/queue
data_directory = {pf}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = client.example.test
mydomain = example.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{node.smtp_port}
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 1
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file_prefixes = {pf}
maillog_file = {pf}/maillog
""")
            with open(os.path.join(HERE, "..", "support", "postfix-master.cf")) as f:
                master = f.read().replace("@PORT@", str(pf_port))
            with open(f"{pf}/conf/master.cf", "w") as f:
                f.write(master)
            subprocess.run(["postfix", "-c", f"{pf}/conf", "check"], check=True)
            subprocess.run(["script", "-qec", f"postfix -c {pf}/conf start", "/dev/null"], check=True,
                           capture_output=True)
            wait_until(lambda: self._up(pf_port), what="postfix smtpd")
            msg = (b"From: someone@example.net\r\nTo: alice@example.org\r\nSubject: via postfix\r\n"
                   b"Message-ID: <via-postfix@test>\r\n\r\nline one\r\n.leading dot\r\n\xc3\xa9 8bit\r\n")
            before = len(node.maildir("alice"))
            with smtplib.SMTP("127.0.0.1", pf_port, timeout=10) as c:
                c.ehlo("injector.example")
                c.sendmail("someone@example.net", ["alice@example.org"], msg, mail_options=["BODY=8BITMIME"])
            files = node.wait_mail("alice", before + 1, timeout=30)
            with open(files[-1], "rb") as f:
                raw = f.read()
            head, _, body = raw.partition(b"\r\n\r\n")
            self.assertEqual(body, msg.partition(b"\r\n\r\n")[2])
            self.assertIn(b"with ESMTPS id", head)            # our stamp: TLS on this hop
            self.assertIn(b"by client.example.test (Postfix)", head)
            for line in (b"Subject: via postfix", b"Message-ID: <via-postfix@test>"):
                self.assertIn(line, head)
            with open(f"{pf}/maillog", "rb") as f:
                log = f.read()
            self.assertIn(b"TLS connection established to 127.0.0.1", log)
        finally:
            subprocess.run(["postfix", "-c", f"{pf}/conf", "stop"], capture_output=True)
            time.sleep(0.5)
            node.cleanup()
            shutil.rmtree(pf, ignore_errors=True)
            shutil.rmtree(certs, ignore_errors=True)

    @staticmethod
    def _up(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                return s.recv(4) == b"220 "
        except OSError:
            return False


if __name__ == "__main__":
    unittest.main()
