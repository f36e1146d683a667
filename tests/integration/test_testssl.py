"""testssl (Debian testssl.sh, binary /usr/bin/testssl) against the node's STARTTLS port
and its implicit-TLS port: protocols (-p) and the ciphers of each protocol (-E).

Pass: SSLv2, SSLv3, TLS 1.0 and TLS 1.1 not offered, TLS 1.2 offered, and every cipher
offered is TLS 1.2 or 1.3 with ECDHE(/any for 1.3) key exchange, AES-GCM or ChaCha20,
at least 128 bits (so no CBC, RC4, 3DES, NULL or export suite). The verdict comes from
testssl's JSON (its exit code is not one). --nodns none: no lookups through the resolver,
which points off this machine; a fresh --jsonfile per run (testssl refuses an old one).
"""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from bhnode import Node
from tlstest import install, make_ca, make_leaf, tls_yaml

OLD = ("SSLv2", "SSLv3", "TLS1", "TLS1_1")
GOOD_ENC = ("AESGCM", "ChaCha20")


def testssl(target, json_path, starttls):
    cmd = ["testssl", "--quiet", "--color", "0", "--nodns", "none", "--warnings", "batch"]
    if starttls:
        cmd += ["--starttls", "smtp"]
    cmd += ["-p", "-E", "--jsonfile", json_path, target]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if not os.path.exists(json_path):
        raise AssertionError("testssl wrote no JSON:\n" + r.stdout + r.stderr)
    with open(json_path) as f:
        return {row["id"]: row for row in json.load(f)}, r.stdout


class TestSsl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="bh-testssl-")
        make_ca(cls.dir)
        make_leaf(cls.dir, "mx", "mx.example.org")
        install(cls.dir, "mx")
        # testssl opens a connection per probe: no per-IP connection rate here.
        cls.node = Node(smtps=True, extra=tls_yaml(cls.dir),
                        smtp=["max_connections_per_ip_per_minute: 0"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def check(self, rows, out):
        for p in OLD:
            self.assertIn(p, rows, out)
            self.assertFalse(rows[p]["finding"].startswith("offered"), (p, rows[p]))
        self.assertTrue(rows["TLS1_2"]["finding"].startswith("offered"), rows["TLS1_2"])
        ciphers = [r["finding"].split() for k, r in rows.items() if k.startswith("cipher-")]
        self.assertGreater(len(ciphers), 0, out)  # the parse found the cipher rows
        for c in ciphers:
            # "TLS 1.2 xc030 ECDHE-RSA-AES256-GCM-SHA384 ECDH 253 AESGCM 256 TLS_ECDHE_..."
            proto, name, kx, enc, bits = c[0] + " " + c[1], c[3], c[4], c[6], int(c[7])
            with self.subTest(cipher=name):
                self.assertIn(proto, ("TLS 1.2", "TLS 1.3"))
                self.assertIn(enc, GOOD_ENC)
                self.assertGreaterEqual(bits, 128)
                self.assertTrue(kx.startswith("ECDH"), c)
                for weak in ("CBC", "RC4", "DES", "NULL", "EXP", "anon", "SHA1"):
                    self.assertNotIn(weak, name)

    def test_starttls_port(self):
        rows, out = testssl(f"127.0.0.1:{self.node.smtp_port}", os.path.join(self.dir, "starttls.json"),
                            starttls=True)
        self.check(rows, out)

    def test_implicit_tls_port(self):
        rows, out = testssl(f"127.0.0.1:{self.node.smtps_port}", os.path.join(self.dir, "smtps.json"),
                            starttls=False)
        self.check(rows, out)


if __name__ == "__main__":
    unittest.main()
