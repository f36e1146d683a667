"""AUTH (RFC 4954) end to end with real clients and real password sources.

- Python smtplib and swaks log in with PLAIN and LOGIN over STARTTLS against a sasldb
  made with saslpasswd2; the mail is stamped "with ESMTPSA" and the user may relay;
- in clear text the same AUTH gets 538 5.7.11 and EHLO offers no password mechanism;
- wrong passwords get 535 5.7.8 only after the tarpit delay, and past the per-IP limit
  the client gets 421 4.7.0;
- the submission port refuses MAIL before AUTH with 530 5.7.0;
- with an LDAP password source (a real slapd), the node binds as the user; when slapd
  is down the answer is 454 4.7.0, never a login.
"""
import base64
import json
import os
import shutil
import smtplib
import ssl
import subprocess
import tempfile
import time
import unittest

from bhnode import Node, Smtp, free_port, wait_until
from slapd import Slapd, person
from test_starttls import make_certs


def plain(user, pw):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()


def tls_context(certs):
    ctx = ssl.create_default_context(cafile=f"{certs}/ca.pem")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class AuthSasldb(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bh-auth-")
        make_certs(cls.tmp)
        cls.sasldb = os.path.join(cls.tmp, "sasldb2")
        for user, pw in (("carol", "carol-pw"), ("dave", "dave-pw")):
            subprocess.run(["saslpasswd2", "-p", "-c", "-f", cls.sasldb, "-u", "mx.example.org",
                            user], input=pw.encode(), check=True)
        cls.submission_port = free_port()
        extra = (f"tls:\n  cert_file: {cls.tmp}/cert.pem\n  key_file: {cls.tmp}/key.pem\n"
                 f"auth:\n  mechanisms: [PLAIN, LOGIN]\n  sasldb: {cls.sasldb}\n"
                 "  failure_delay_ms: 400\n  max_failures_per_ip_per_minute: 5\n")
        cls.node = Node(extra=extra, listen=[f'submission: ["127.0.0.1:{cls.submission_port}"]'],
                        smtps=True)
        cls.node.start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tls_client(self, port=None):
        c = smtplib.SMTP("127.0.0.1", port or self.node.smtp_port, timeout=15)
        c.ehlo("client.example")
        c.starttls(context=tls_context(self.tmp))
        c.ehlo("client.example")
        return c

    def test_01_smtplib_plain_and_login_over_starttls(self):
        for mech in ("PLAIN", "LOGIN"):
            with self.tls_client() as c:
                self.assertIn("PLAIN LOGIN", c.esmtp_features.get("auth", ""))
                c.user, c.password = "carol", "carol-pw"
                code, text = c.auth(mech, getattr(c, "auth_" + mech.lower()),
                                    initial_response_ok=(mech == "PLAIN"))
                self.assertEqual(code, 235, text)
                # A logged-in user may relay; the same client without AUTH may not.
                c.mail("carol@example.org")
                self.assertEqual(c.rcpt("someone@elsewhere.example")[0], 250)
                c.rset()
        before = len(self.node.maildir("alice"))
        with self.tls_client() as c:
            c.login("dave", "dave-pw")
            c.sendmail("dave@example.org", ["alice@example.org"], b"Subject: a\r\n\r\nauthed\r\n")
        mails = self.node.wait_mail("alice", before + 1)
        raws = []
        for m in mails:
            with open(m, "rb") as f:
                raws.append(f.read())
        self.assertTrue(any(b"with ESMTPSA id" in r and b"authed" in r for r in raws),
                        "no ESMTPSA stamp")

    def test_02_swaks_plain_over_starttls(self):
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(self.node.smtp_port),
                            "--ehlo", "client.example", "--tls", "--tls-verify", "--tls-ca-path",
                            f"{self.tmp}/ca.pem", "--auth", "PLAIN", "--auth-user", "carol",
                            "--auth-password", "carol-pw", "--from", "carol@example.org",
                            "--to", "bob@example.org", "--timeout", "15"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("235 2.7.0", r.stdout)
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(self.node.smtp_port),
                            "--ehlo", "client.example", "--tls", "--tls-ca-path", f"{self.tmp}/ca.pem",
                            "--auth", "LOGIN", "--auth-user", "dave", "--auth-password", "dave-pw",
                            "--from", "dave@example.org", "--to", "bob@example.org",
                            "--timeout", "15"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_02b_plain_and_login_over_implicit_tls_on_465(self):
        for mech in ("PLAIN", "LOGIN"):
            with smtplib.SMTP_SSL("127.0.0.1", self.node.smtps_port, timeout=15,
                                  context=tls_context(self.tmp)) as c:
                c.ehlo("client.example")
                self.assertIn("PLAIN LOGIN", c.esmtp_features.get("auth", ""))
                c.user, c.password = "dave", "dave-pw"
                code, text = c.auth(mech, getattr(c, "auth_" + mech.lower()),
                                    initial_response_ok=(mech == "PLAIN"))
                self.assertEqual(code, 235, text)
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(self.node.smtps_port),
                            "--ehlo", "client.example", "--tls-on-connect", "--tls-verify",
                            "--tls-ca-path", f"{self.tmp}/ca.pem", "--auth", "LOGIN",
                            "--auth-user", "carol", "--auth-password", "carol-pw",
                            "--from", "carol@example.org", "--to", "bob@example.org",
                            "--timeout", "15"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("235 2.7.0", r.stdout)

    def test_03_clear_text_is_refused_with_538_and_offers_no_password_mechanism(self):
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=15) as c:
            c.ehlo("client.example")
            self.assertNotIn("auth", c.esmtp_features)
            with self.assertRaises(smtplib.SMTPNotSupportedError):
                c.login("carol", "carol-pw")
            code, text = c.docmd("AUTH", "PLAIN " + plain("carol", "carol-pw"))
            self.assertEqual(code, 538)
            self.assertTrue(text.startswith(b"5.7.11"), text)
            code, _ = c.docmd("AUTH", "LOGIN")
            self.assertEqual(code, 538)
        # The same with swaks, which insists on the extension being offered.
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(self.node.smtp_port),
                            "--auth", "PLAIN", "--auth-user", "carol", "--auth-password",
                            "carol-pw", "--from", "carol@example.org", "--to", "bob@example.org",
                            "--timeout", "15"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn("235 ", r.stdout)

    def test_04_submission_needs_auth_before_mail(self):
        with self.tls_client(self.submission_port) as c:
            code, text = c.mail("carol@example.org")
            self.assertEqual(code, 530, text)
            self.assertTrue(text.startswith(b"5.7.0"), text)
            c.login("carol", "carol-pw")
            self.assertEqual(c.mail("carol@example.org")[0], 250)
        # Port 25 takes mail for local users without AUTH.
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=15) as c:
            c.ehlo("client.example")
            self.assertEqual(c.mail("x@example.net")[0], 250)
            self.assertEqual(c.rcpt("someone@elsewhere.example")[0], 550)

    def test_05_wrong_passwords_are_slowed_then_the_address_is_refused(self):
        # Runs last in this class: it spends the per-IP failure budget of 127.0.0.1.
        failures = 0
        with self.tls_client() as c:
            t0 = time.monotonic()
            code, text = c.docmd("AUTH", "PLAIN " + plain("carol", "wrong"))
            self.assertEqual(code, 535, text)
            self.assertTrue(text.startswith(b"5.7.8"), text)
            self.assertGreaterEqual(time.monotonic() - t0, 0.35)  # failure_delay_ms: 400
            failures += 1
            code, _ = c.docmd("AUTH", "PLAIN " + plain("nobody", "x"))
            self.assertEqual(code, 535)
            failures += 1
            code, _ = c.docmd("AUTH", "PLAIN " + plain("carol", "wrong-again"))
            self.assertEqual(code, 535)  # the third failure also ends the session
            failures += 1
            code, _ = c.docmd("NOOP")
            self.assertEqual(code, 421)
        codes = []
        while failures < 5:
            with self.tls_client() as c:
                code, _ = c.docmd("AUTH", "PLAIN " + plain("carol", "wrong"))
                codes.append(code)
                failures += 1
        self.assertEqual(codes, [535, 535])
        # Five failures within a minute: even the right password is refused now.
        with self.tls_client() as c:
            code, text = c.docmd("AUTH", "PLAIN " + plain("carol", "carol-pw"))
            self.assertEqual(code, 421, text)
            self.assertTrue(text.startswith(b"4.7.0"), text)
        sessions = json.loads(self.node.bhctl("--json", "status").stdout)["sessions"]
        self.assertGreaterEqual(sessions["auth_failures"], 5)
        self.assertEqual(sessions["auth_refused"], 1)
        self.assertGreaterEqual(sessions["auth_successes"], 1)


class AuthLdap(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bh-auth-ldap-")
        make_certs(cls.tmp)
        cls.slapd = Slapd(person("erin", "erin-pw") + person("x,ou=admins", "nope"))
        extra = (f"tls:\n  cert_file: {cls.tmp}/cert.pem\n  key_file: {cls.tmp}/key.pem\n"
                 f"auth:\n  mechanisms: [PLAIN]\n  failure_delay_ms: 0\n"
                 f"  max_failures_per_session: 10\n"
                 f"  ldap:\n    uri: {cls.slapd.uri}\n"
                 f"    user_dn: uid={{user}},ou=people,dc=example,dc=test\n    timeout_ms: 2000\n")
        cls.node = Node(extra=extra).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        cls.slapd.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def auth(self, user, pw):
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=15) as c:
            c.ehlo("client.example")
            c.starttls(context=tls_context(self.tmp))
            c.ehlo("client.example")
            return c.docmd("AUTH", "PLAIN " + plain(user, pw))

    def test_1_bind_as_the_user_decides(self):
        self.assertEqual(self.auth("erin", "erin-pw")[0], 235)
        self.assertEqual(self.auth("erin", "erin-pw2")[0], 535)
        self.assertEqual(self.auth("nobody", "erin-pw")[0], 535)
        # An empty password would be an anonymous bind, which slapd allows.
        self.assertEqual(self.auth("erin", "")[0], 535)
        # A name that tries to build another DN is escaped, not interpreted.
        self.assertEqual(self.auth("x,ou=admins", "nope")[0], 235)
        self.assertEqual(self.auth("erin,ou=people", "erin-pw")[0], 535)

    def test_2_a_directory_that_is_down_is_a_temporary_failure(self):
        self.slapd.kill()
        try:
            code, text = self.auth("erin", "erin-pw")
            self.assertEqual(code, 454, text)
            self.assertTrue(text.startswith(b"4.7.0"), text)
        finally:
            self.slapd.start()
        wait_until(lambda: self.auth("erin", "erin-pw")[0] == 235, timeout=10,
                   what="logins after slapd is back")


if __name__ == "__main__":
    unittest.main()
