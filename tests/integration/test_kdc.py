"""GSSAPI (Kerberos) for AUTH and X-EXPS against a real MIT KDC started here (label kdc).

The realm has the service principal smtp/mx.example.org (its key in a keytab the node
reads), node2 (on the node's peer_servers list) and carol (a valid user, not a server).
The client side is python3-gssapi speaking RFC 4752 by hand (tests/support/kdc.py).

- AUTH GSSAPI as node2 succeeds in clear text (Kerberos protects itself) and gives
  peer rights; X-EXPS GSSAPI inside TLS does the same;
- carol authenticates with X-EXPS too, but gets no peer rights: XEXCH50 answers her
  504 5.7.1 where node2's blob is taken (354, the octets, 250);
- X-EXPS in clear text is refused with 530 5.7.0 before any token is looked at;
- a ticket for another service name is refused with 535 5.7.8.
"""
import os
import shutil
import smtplib
import ssl
import tempfile
import unittest

from bhnode import Node
from kdc import Kdc, gssapi_sasl
from test_starttls import make_certs

REALM = "BRIDGEHEAD.TEST"


class Kerberos(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.kdc = Kdc(REALM, {"smtp/mx.example.org": None, "smtp/other.example.org": None,
                              "node2": "node2-pw", "carol": "carol-pw"},
                      hosts=("mx.example.org", "other.example.org"))
        os.environ.update({"KRB5_CONFIG": cls.kdc.conf})
        cls.node2_cc = cls.kdc.kinit("node2", "node2-pw")
        cls.carol_cc = cls.kdc.kinit("carol", "carol-pw")
        cls.tmp = tempfile.mkdtemp(prefix="bh-kdc-node-")
        make_certs(cls.tmp)
        extra = (f"tls:\n  cert_file: {cls.tmp}/cert.pem\n  key_file: {cls.tmp}/key.pem\n"
                 f"auth:\n  mechanisms: [GSSAPI]\n  keytab: {cls.kdc.keytab}\n"
                 f"  peer_servers: [node2@{REALM}]\n  failure_delay_ms: 0\n")
        cls.node = Node(extra=extra, env={"KRB5_CONFIG": cls.kdc.conf}).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        cls.kdc.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def client(self, tls):
        c = smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=15)
        c.ehlo("client.example")
        if tls:
            ctx = ssl.create_default_context(cafile=f"{self.tmp}/ca.pem")
            c.starttls(context=ctx)
            c.ehlo("client.example")
        return c

    def xexch50(self, c):
        c.mail("node2@example.org")
        c.rcpt("alice@example.org")
        return c.docmd("XEXCH50", "8 2")

    def peer_xexch50_taken(self, c):
        """The full XEXCH50 exchange of a peer: 354, 8 octets (two empty sub-blobs), 250."""
        code, text = self.xexch50(c)
        self.assertEqual(code, 354, text)
        c.send(b"\0" * 8)
        code, text = c.getreply()
        self.assertEqual(code, 250, text)
        self.assertEqual(text, b"2.0.0 XEXCH50 OK")

    def test_auth_gssapi_in_clear_text_gives_a_peer_server_peer_rights(self):
        with self.client(tls=False) as c:
            self.assertEqual(c.esmtp_features.get("auth", "").strip(), "GSSAPI")
            self.assertNotIn("x-exps", c.esmtp_features)
            code, text = gssapi_sasl(c, "AUTH", "mx.example.org", self.node2_cc)
            self.assertEqual(code, 235, text)
            self.peer_xexch50_taken(c)
        self.assertIn(f"login node2@{REALM} (peer server)", self.node.read_log())

    def test_x_exps_gssapi_inside_tls_for_the_peer_and_for_a_plain_user(self):
        with self.client(tls=True) as c:
            self.assertIn("GSSAPI", c.esmtp_features.get("x-exps", ""))
            code, text = gssapi_sasl(c, "X-EXPS", "mx.example.org", self.node2_cc)
            self.assertEqual(code, 235, text)
            c.ehlo("client.example")  # as Exchange does after X-EXPS: the peer verbs show
            self.assertIn("xexch50", c.esmtp_features)
            self.assertIn("x-link2state", c.esmtp_features)
            self.peer_xexch50_taken(c)
        with self.client(tls=True) as c:
            code, text = gssapi_sasl(c, "X-EXPS", "mx.example.org", self.carol_cc)
            self.assertEqual(code, 235, text)  # a valid principal: it authenticates ...
            code, text = self.xexch50(c)
            self.assertEqual(code, 504, text)  # ... but has no peer rights
            self.assertTrue(text.startswith(b"5.7.1"), text)
        log = self.node.read_log()
        self.assertIn(f"login carol@{REALM}\n", log.replace("\r", ""))

    def test_x_exps_in_clear_text_is_refused_before_any_token(self):
        with self.client(tls=False) as c:
            code, text = c.docmd("X-EXPS", "GSSAPI")
            self.assertEqual(code, 530, text)
            self.assertTrue(text.startswith(b"5.7.0"), text)
            code, text = self.xexch50(c)
            self.assertEqual(code, 530, text)  # unauthenticated (hostile #21)

    def test_a_ticket_for_another_service_is_refused(self):
        with self.client(tls=False) as c:
            code, text = gssapi_sasl(c, "AUTH", "other.example.org", self.node2_cc)
            self.assertEqual(code, 535, text)
            self.assertTrue(text.startswith(b"5.7.8"), text)


class NodeToNode(unittest.TestCase):
    """Node A relays to node B over STARTTLS and logs in with X-EXPS GSSAPI as
    smtp/nodea.example.org, from its own client keytab; B gives it peer rights."""

    @classmethod
    def setUpClass(cls):
        cls.kdc = Kdc(REALM, {"smtp/mx.example.org": None, "smtp/nodea.example.org": None},
                      hosts=("mx.example.org", "nodea.example.org"))
        cls.tmp = tempfile.mkdtemp(prefix="bh-n2n-")
        make_certs(cls.tmp)
        client_kt = cls.kdc.export_keytab("smtp/nodea.example.org", f"{cls.tmp}/nodea.keytab")
        env = {"KRB5_CONFIG": cls.kdc.conf}
        b_extra = (f"tls:\n  cert_file: {cls.tmp}/cert.pem\n  key_file: {cls.tmp}/key.pem\n"
                   f"auth:\n  mechanisms: [GSSAPI]\n  keytab: {cls.kdc.keytab}\n"
                   f"  peer_servers: [smtp/nodea.example.org@{REALM}]\n")
        cls.b = Node(domains=("b.example",), mailboxes=("alice@b.example",), extra=b_extra,
                     env=env).start()
        a_extra = ("routing:\n  smtp_connectors:\n    - name: to-b\n"
                   f'      smart_hosts: ["127.0.0.1:{cls.b.smtp_port}"]\n'
                   '      address_spaces: [{pattern: "b.example", cost: 1}]\n'
                   "      tls: required\n"
                   "      auth: {mechanism: GSSAPI, verb: X-EXPS, service_host: mx.example.org}\n"
                   f"auth:\n  client_keytab: {client_kt}\n")
        cls.a = Node(smtp=['relay_networks: ["127.0.0.0/8"]'], extra=a_extra, env=env,
                     queue=["glitch_retries: 0", "retry_initial_s: 3600", "retry_max_s: 3600"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.a.cleanup()
        cls.b.cleanup()
        cls.kdc.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_relay_between_nodes_logs_in_with_x_exps_gssapi(self):
        with smtplib.SMTP("127.0.0.1", self.a.smtp_port, timeout=15) as c:
            c.sendmail("bob@example.org", ["alice@b.example"], b"Subject: n2n\r\n\r\nhello B\r\n")
        mails = self.b.wait_mail("alice", 1, timeout=20)
        with open(mails[0], "rb") as f:
            raw = f.read()
        self.assertIn(b"with ESMTPSA id", raw)  # TLS and a login on the A -> B hop
        self.assertIn(f"login smtp/nodea.example.org@{REALM} (peer server)", self.b.read_log())


if __name__ == "__main__":
    unittest.main()
