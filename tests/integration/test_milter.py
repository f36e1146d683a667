"""Milter sinks with a real OpenDKIM (Debian opendkim 2.11) on loopback, and milters that
hang or die (label "milter", DESIGN.md §6).

OpenDKIM signs (Mode sv, inet socket on 127.0.0.1 with a free port, a key made by
opendkim-genkey in a temp folder) the mail that bridgehead accepts; the Maildir copy is
verified offline by OpenDKIM itself in test mode (`opendkim -t FILE` with a verify-only
config whose TestPublicKeys file holds the generated TXT record): no DNS is involved,
since there is none off the machine. opendkim-testmsg is no use here: it verifies only
through live DNS (/work/shared/more-recipes.md §3)."""
import json
import os
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import tempfile
import time
import unittest

from bhnode import Node, free_port, wait_until
from loopback_server import LoopbackServer

OPENDKIM = shutil.which("opendkim") or "/usr/sbin/opendkim"
GENKEY = shutil.which("opendkim-genkey") or "/usr/sbin/opendkim-genkey"
HAVE_OPENDKIM = os.path.exists(OPENDKIM) and os.path.exists(GENKEY)

MSG = (b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: signed %d\r\n"
       b"Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <m%d@example.org>\r\n\r\n"
       b"Hello Bob,\r\n\r\nthis message is signed by OpenDKIM through bridgehead.\r\n")


def send(port, n=1, rcpts=("bob@example.org",)):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail("alice@example.org", list(rcpts), MSG % (n, n))


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def read(path):
    with open(path, "rb") as f:
        return f.read()


class OpenDkim:
    def __init__(self, base):
        self.dir = os.path.join(base, "dkim")
        os.makedirs(os.path.join(self.dir, "keys"))
        subprocess.run([GENKEY, "-b", "1024", "-d", "example.org", "-s", "sel1", "-D",
                        os.path.join(self.dir, "keys")], check=True, capture_output=True)
        txt = read(os.path.join(self.dir, "keys", "sel1.txt")).decode()
        record = "".join(part.split('"')[1] for part in txt.split("\n") if '"' in part)
        self.testkeys = os.path.join(self.dir, "testkeys")
        with open(self.testkeys, "w") as f:
            f.write("sel1._domainkey.example.org " + record + "\n")
        self.port = free_port()
        self.conf = os.path.join(self.dir, "opendkim.conf")
        with open(self.conf, "w") as f:
            f.write(f"""Syslog no
Mode sv
Socket inet:{self.port}@127.0.0.1
PidFile {self.dir}/opendkim.pid
Domain example.org
Selector sel1
KeyFile {self.dir}/keys/sel1.private
Canonicalization relaxed/simple
InternalHosts 127.0.0.1
RequireSafeKeys false
TemporaryDirectory {self.dir}
""")
        self.verify_conf = os.path.join(self.dir, "verify.conf")
        with open(self.verify_conf, "w") as f:
            f.write(f"Syslog no\nMode v\nTestPublicKeys {self.testkeys}\nTemporaryDirectory {self.dir}\n")
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "opendkim.out"), "ab")
        self.proc = subprocess.Popen([OPENDKIM, "-f", "-x", self.conf], stdout=self.log, stderr=self.log)
        wait_until(lambda: port_open(self.port), timeout=10, what="opendkim on its port")
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def verify(self, path):
        """OpenDKIM's own verdict on a delivered file: 'succeeded', 'failed' or 'not signed'."""
        r = subprocess.run([OPENDKIM, "-x", self.verify_conf, "-t", path], capture_output=True, text=True,
                           timeout=30)
        out = r.stderr + r.stdout
        for word in ("succeeded", "failed", "not signed"):
            if word in out:
                return word, out
        return "?", out


class HangingMilter:
    """Accepts connections and reads forever without answering (mode 'hang'), or closes
    each connection as soon as the negotiation arrives (mode 'die')."""

    def __init__(self, mode):
        self.mode = mode
        self.conns = []
        self.accepted = 0
        self.server = LoopbackServer(self.serve, threaded=False)
        self.port = self.server.port

    def serve(self, c):
        self.accepted += 1
        if self.mode == "die":
            try:
                c.recv(4096)
            finally:
                c.close()
        else:
            self.conns.append(c)  # kept open, never answered

    def close(self):
        self.server.close()
        for c in self.conns:
            c.close()


class QuarantineMilter:
    """Speaks just enough of the milter protocol (version 6, no protocol flags: every
    command is answered): continue to everything, and at end of message SMFIR_QUARANTINE
    with `reason`, then continue."""

    def __init__(self, reason):
        self.reason = reason.encode()
        self.messages = 0
        self.server = LoopbackServer(self.session)
        self.port = self.server.port

    @staticmethod
    def packet(cmd, data=b""):
        return struct.pack(">I", len(data) + 1) + cmd + data

    def session(self, c):
        buf = b""
        with c:
            while True:
                while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                    data = c.recv(65536)
                    if not data:
                        return
                    buf += data
                n = struct.unpack(">I", buf[:4])[0]
                cmd, buf = buf[4:5], buf[4 + n:]
                if cmd == b"O":
                    c.sendall(self.packet(b"O", struct.pack(">III", 6, 0x20, 0)))
                elif cmd == b"E":
                    self.messages += 1
                    c.sendall(self.packet(b"q", self.reason + b"\0") + self.packet(b"c"))
                elif cmd == b"Q":
                    return
                elif cmd not in (b"D", b"A"):
                    c.sendall(self.packet(b"c"))

    def close(self):
        self.server.close()


def milter_extra(port, policy, command_ms=10000, deadline_ms=30000):
    return ("sinks:\n  define:\n"
            f"    - {{name: dkim, kind: milter, socket: \"inet:{port}@127.0.0.1\", failure_policy: {policy},"
            f" command_timeout_ms: {command_ms}, deadline_ms: {deadline_ms}}}\n"
            "  on_arrival: [dkim]\n")


class MilterTest(unittest.TestCase):
    def setUp(self):
        self.base = tempfile.mkdtemp(prefix="bh-milter-")
        os.chmod(self.base, 0o711)
        self.node = None
        self.dkim = None
        self.fake = None

    def tearDown(self):
        if self.node:
            self.node.cleanup()
        if self.dkim:
            self.dkim.kill()
        if self.fake:
            self.fake.close()
        shutil.rmtree(self.base, ignore_errors=True)

    def status(self):
        r = self.node.bhctl("status", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return {s["name"]: s for s in json.loads(r.stdout)["sinks"]}

    @unittest.skipUnless(HAVE_OPENDKIM, "opendkim not installed (deploy/install-deps.sh)")
    def test_opendkim_signs_and_the_signature_verifies(self):
        self.dkim = OpenDkim(self.base).start()
        self.node = Node(extra=milter_extra(self.dkim.port, "tempfail")).start()
        send(self.node.smtp_port, 1)
        path = self.node.wait_mail("bob")[0]
        raw = read(path)
        self.assertIn(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=example.org; s=sel1;", raw)
        verdict, out = self.dkim.verify(path)
        self.assertEqual(verdict, "succeeded", out)
        # The check is real: the same file with one body octet changed fails.
        tampered = os.path.join(self.base, "tampered.eml")
        with open(tampered, "wb") as f:
            f.write(raw.replace(b"Hello Bob", b"Hello Rob"))
        self.assertEqual(self.dkim.verify(tampered)[0], "failed")
        self.assertEqual(self.status()["dkim"]["continued"], 1)

    @unittest.skipUnless(HAVE_OPENDKIM, "opendkim not installed (deploy/install-deps.sh)")
    def test_opendkim_killed_default_action_then_back(self):
        self.dkim = OpenDkim(self.base).start()
        self.node = Node(extra=milter_extra(self.dkim.port, "tempfail")).start()
        send(self.node.smtp_port, 1)
        self.node.wait_mail("bob")
        self.dkim.kill()
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            send(self.node.smtp_port, 2)
        self.assertEqual(cm.exception.smtp_code, 451)
        self.assertIn(b"4.7.1", cm.exception.smtp_error)
        self.assertTrue(self.node.alive())
        self.dkim.start()  # the same port and key: signing resumes, nothing to restart
        send(self.node.smtp_port, 3)
        files = self.node.wait_mail("bob", count=2)
        self.assertEqual(self.dkim.verify(files[-1])[0], "succeeded")
        self.assertEqual(self.status()["dkim"]["failures"], 1)

    def test_hanging_milter_tempfail_and_node_keeps_serving(self):
        self.fake = HangingMilter("hang")
        self.node = Node(extra=milter_extra(self.fake.port, "tempfail", command_ms=300)).start()
        t0 = time.monotonic()
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            send(self.node.smtp_port, 1)
        self.assertEqual(cm.exception.smtp_code, 451)
        self.assertLess(time.monotonic() - t0, 10)
        # Other sessions were served meanwhile and afterwards.
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10) as s:
            self.assertEqual(s.noop()[0], 250)
        self.assertEqual(self.node.maildir("bob"), [])
        st = self.status()["dkim"]
        self.assertEqual((st["calls"], st["failures"]), (1, 1))

    def test_hanging_milter_chain_deadline_with_skip_delivers(self):
        self.fake = HangingMilter("hang")
        # The per-reply timeout is long; the sink's deadline (400 ms) decides: skip.
        self.node = Node(extra=milter_extra(self.fake.port, "skip", command_ms=60000, deadline_ms=400)).start()
        send(self.node.smtp_port, 1)
        raw = read(self.node.wait_mail("bob")[0])
        self.assertNotIn(b"DKIM-Signature", raw)
        st = self.status()["dkim"]
        self.assertEqual((st["timeouts"], st["failures"]), (1, 1))

    def test_dying_milter_and_absent_milter(self):
        self.fake = HangingMilter("die")
        self.node = Node(extra=milter_extra(self.fake.port, "reject")).start()
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            send(self.node.smtp_port, 1)
        self.assertEqual(cm.exception.smtp_code, 550)
        self.assertGreaterEqual(self.fake.accepted, 1)
        self.fake.close()  # now nothing listens there at all
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            send(self.node.smtp_port, 2)
        self.assertEqual(cm.exception.smtp_code, 550)
        self.assertTrue(self.node.alive())

    def test_quarantine_holds_the_message_frozen_until_thawed(self):
        self.fake = QuarantineMilter("suspicious attachment")
        self.node = Node(extra=milter_extra(self.fake.port, "tempfail")).start()
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=30) as s:
            s.ehlo("c")
            s.mail("alice@example.org")
            s.rcpt("bob@example.org")
            code, text = s.data(MSG % (1, 1))
        self.assertEqual(code, 250)  # accepted and spooled...
        qid = text.decode().split()[-1]
        self.assertEqual(self.fake.messages, 1)

        def queued():
            j = json.loads(self.node.bhctl("--json", "queue", "list").stdout)
            return [m for m in j["messages"] if m["id"] == qid]
        m = wait_until(queued, timeout=10, what="the message in the queue")[0]
        self.assertEqual(m["state"], "frozen")  # ...but held
        time.sleep(1.5)
        self.assertEqual(self.node.maildir("bob"), [])
        self.assertEqual(queued()[0]["state"], "frozen")
        self.assertIn("frozen", self.node.bhctl("queue", "list").stdout)

        def tracked():
            r = self.node.bhctl("--json", "track", "--queue-id", qid)
            events = json.loads(r.stdout)["events"] if r.returncode == 0 else []
            return [e for e in events if e["event"] == "quarantined"]
        q = wait_until(tracked, timeout=10, what="a quarantined tracking event")[0]
        self.assertEqual(q["reply"], "suspicious attachment")
        self.assertEqual(q["recipient"], "bob@example.org")

        # Frozen across a restart too.
        self.node.stop()
        self.node.start()
        time.sleep(1)
        self.assertEqual(queued()[0]["state"], "frozen")
        self.assertEqual(self.node.maildir("bob"), [])

        r = self.node.bhctl("queue", "thaw", qid)
        self.assertEqual(r.returncode, 0, r.stderr)
        raw = read(self.node.wait_mail("bob")[0])
        self.assertIn(b"X-Bridgehead-Quarantine: suspicious attachment\r\n", raw)
        wait_until(lambda: not queued(), timeout=10, what="the queue to empty")


if __name__ == "__main__":
    unittest.main()
