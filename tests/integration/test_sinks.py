"""Arrival sinks end to end (docs/sinks.md): the real node with an external program that
rejects by content with a chosen code, the example shared-library plug-in (built by CMake,
path in BH_STAMP_PLUGIN) stamping a header, the built-in header stamp, policy and journal
sinks, their counters in `bhctl status`, and config errors naming the key."""
import json
import os
import smtplib
import socket
import stat
import subprocess
import tempfile
import unittest

from bhnode import BH_BIN, Node, wait_until
from loopback_server import LoopbackServer

PLUGIN = os.environ.get("BH_STAMP_PLUGIN", "")


class TinySink:
    """A minimal SMTP server on 127.0.0.1 (stdlib only) that accepts everything and keeps
    (mail from, rcpts, data) of each message; enough to see where mail was routed."""

    def __init__(self):
        self.messages = []
        self.server = LoopbackServer(self.session)
        self.port = self.server.port

    def session(self, c):
        f = c.makefile("rb")
        c.sendall(b"220 tiny ESMTP\r\n")
        mail, rcpts = None, []
        try:
            for line in f:
                cmd = line.strip().upper()
                if cmd.startswith(b"EHLO") or cmd.startswith(b"HELO"):
                    c.sendall(b"250 tiny\r\n")
                elif cmd.startswith(b"MAIL"):
                    mail, rcpts = line.strip()[10:], []
                    c.sendall(b"250 ok\r\n")
                elif cmd.startswith(b"RCPT"):
                    rcpts.append(line.strip()[8:])
                    c.sendall(b"250 ok\r\n")
                elif cmd == b"DATA":
                    c.sendall(b"354 go\r\n")
                    data = b""
                    for dl in f:
                        if dl == b".\r\n":
                            break
                        data += dl
                    self.messages.append((mail, rcpts, data))
                    c.sendall(b"250 queued\r\n")
                elif cmd == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    break
                else:
                    c.sendall(b"250 ok\r\n")
        finally:
            c.close()

    def close(self):
        self.server.close()

MSG = (b"From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: %s\r\n"
       b"Message-ID: <%s@example.net>\r\n\r\n%s\r\n")


def send(node, subject, body=b"hello", rcpts=("alice@example.org",)):
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=20) as s:
        s.sendmail("carol@example.net", list(rcpts), MSG % (subject, subject, body))


def read(path):
    with open(path, "rb") as f:
        return f.read()


class SinksTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bh-sinks-")
        self.filter = os.path.join(self.tmp, "filter.sh")
        with open(self.filter, "w") as f:
            # Run directly (the kernel reads the #! line); the node uses no shell itself.
            f.write("#!/bin/sh\n"
                    "if grep -qi 'cheap pills'; then echo 'REJECT 554 5.7.9 We do not want pills'; exit 0; fi\n"
                    "echo \"ADD-HEADER X-Program-Seen: $BH_SENDER -> $BH_RECIPIENTS\"\n")
        os.chmod(self.filter, 0o755)
        self.node = None

    def tearDown(self):
        if self.node:
            self.node.cleanup()
        subprocess.run(["rm", "-rf", self.tmp])

    def start(self, define, chain, on_command=()):
        extra = "sinks:\n  define:\n" + "".join("    - " + d + "\n" for d in define) + \
                "  on_arrival: [" + ", ".join(chain) + "]\n" + \
                "  on_command: [" + ", ".join(on_command) + "]\n"
        self.node = Node(mailboxes=("alice@example.org", "journal@example.org"), extra=extra).start()
        return self.node

    def status(self):
        r = self.node.bhctl("status", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return {s["name"]: s for s in json.loads(r.stdout)["sinks"]}

    def test_program_rejects_by_content_with_its_code_and_stamps_the_rest(self):
        node = self.start([f'{{name: scan, kind: program, argv: ["{self.filter}"], deadline_ms: 10000}}'],
                          ["scan"])
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            send(node, b"offer", b"buy cheap pills now")
        self.assertEqual(cm.exception.smtp_code, 554)
        self.assertIn(b"5.7.9 We do not want pills", cm.exception.smtp_error)
        send(node, b"fine", b"a normal message")
        raw = read(node.wait_mail()[0])
        self.assertIn(b"X-Program-Seen: carol@example.net -> alice@example.org\r\n", raw)
        self.assertEqual(len(node.maildir()), 1)
        st = self.status()["scan"]
        self.assertEqual((st["calls"], st["rejected"], st["continued"]), (2, 1, 1))
        table = node.bhctl("status").stdout
        self.assertRegex(table, r"sinks\s+scan\.rejected\s+1")

    @unittest.skipUnless(PLUGIN, "BH_STAMP_PLUGIN not set")
    def test_shared_library_plugin_stamps_a_header(self):
        node = self.start([f'{{name: stamp, kind: plugin, library: "{PLUGIN}", argument: "X-Plugin: stamped"}}'],
                          ["stamp"])
        send(node, b"plug")
        raw = read(node.wait_mail()[0])
        self.assertIn(b"X-Plugin: stamped\r\n", raw)
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            send(node, b"no", b"PLUGIN-REJECT-ME")
        self.assertEqual(cm.exception.smtp_code, 550)

    def test_builtin_stamp_policy_journal_in_order(self):
        node = self.start(['{name: stamp, kind: header_stamp, header: X-Org, value: "Example Org"}',
                           '{name: journal, kind: journal, address: journal@example.org}',
                           '{name: deny, kind: policy, reject_recipients: ["@blocked.example"], '
                           'reject_code: 553, reject_enhanced: "5.7.1"}'],
                          ["stamp", "journal", "deny"])
        send(node, b"journaled")
        a = read(node.wait_mail()[0])
        j = read(node.wait_mail("journal")[0])
        self.assertIn(b"X-Org: Example Org\r\n", a)
        self.assertIn(b"Subject: journaled", j)
        st = self.status()
        self.assertEqual([st[n]["calls"] for n in ("stamp", "journal", "deny")], [1, 1, 1])

    def test_protocol_events_answer_mail_and_rewrite_the_banner(self):
        node = self.start(['{name: deny, kind: policy, reject_senders: ["@spam.example"], reject_code: 553}',
                           '{name: banner, kind: reply_text, verbs: [connect], value: "Mail service ready"}'],
                          [], on_command=["deny", "banner"])
        with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=20) as s:
            self.assertEqual(s.ehlo()[0], 250)
            code, text = s.mail("x@spam.example")
            self.assertEqual(code, 553)
            self.assertIn(b"5.7.1", text)
            self.assertEqual(s.rcpt("alice@example.org")[0], 503)  # MAIL was not performed
            s.rset()
            self.assertEqual(s.mail("carol@example.net")[0], 250)
            self.assertEqual(s.rcpt("alice@example.org")[0], 250)
        with socket.create_connection(("127.0.0.1", node.smtp_port), timeout=10) as c:
            self.assertEqual(c.recv(512), b"220 Mail service ready\r\n")
        st = self.status()
        self.assertEqual(st["deny"]["event"], "on_command")
        self.assertEqual(st["deny"]["rejected"], 1)

    def test_route_sink_overrides_the_connector(self):
        main, partner = TinySink(), TinySink()
        try:
            extra = ("routing:\n  smtp_connectors:\n"
                     f'    - {{name: main, smart_hosts: ["127.0.0.1:{main.port}"], address_spaces: [{{pattern: "*"}}]}}\n'
                     f'    - {{name: partner, smart_hosts: ["127.0.0.1:{partner.port}"],'
                     ' address_spaces: [{pattern: "partner.example"}]}\n'
                     "sinks:\n  define:\n"
                     '    - {name: via-partner, kind: route, domains: ["*.override.example"], connector: partner}\n'
                     "  on_route: [via-partner]\n")
            self.node = Node(smtp=['relay_networks: ["127.0.0.0/8"]'], extra=extra).start()
            send(self.node, b"overridden", rcpts=("x@mx.override.example",))
            send(self.node, b"normal", rcpts=("y@elsewhere.example",))
            wait_until(lambda: len(partner.messages) == 1 and len(main.messages) == 1, timeout=20,
                       what="one message at each next hop")
            self.assertIn(b"Subject: overridden", partner.messages[0][2])
            self.assertIn(b"Subject: normal", main.messages[0][2])
            st = self.status()["via-partner"]
            self.assertEqual(st["event"], "on_route")
            self.assertGreaterEqual(st["stopped"], 1)
        finally:
            main.close()
            partner.close()

    def test_delivery_results_reach_a_program(self):
        seen = os.path.join(self.tmp, "seen")
        notify = os.path.join(self.tmp, "notify.sh")
        with open(notify, "w") as f:
            f.write(f"#!/bin/sh\necho \"$BH_EVENT $BH_RECIPIENT $BH_QUEUE_ID\" >> {seen}\n")
        os.chmod(notify, 0o755)
        node = self.start([f'{{name: notify, kind: program, argv: ["{notify}"]}}'], [])
        with open(node.config, "a") as f:
            f.write("  on_delivery: [notify]\n")
        node.stop()
        node.start()
        send(node, b"tracked")
        node.wait_mail()

        def lines():
            try:
                with open(seen) as f:
                    return f.read().splitlines()
            except OSError:
                return []
        wait_until(lambda: lines(), timeout=10, what="the delivery program's output")
        event, rcpt, qid = lines()[0].split()
        self.assertEqual((event, rcpt), ("delivered", "alice@example.org"))
        self.assertTrue(qid)
        self.assertEqual(self.status()["notify"]["event"], "on_delivery")

    def test_held_messages_are_capped_node_wide(self):
        node = self.start(['{name: stamp, kind: header_stamp, header: X-Org, value: "Example Org"}'], ["stamp"])
        node.stop()
        with open(node.config, "a") as f:
            f.write("  max_held_mb: 1\n")
        node.start()
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            send(node, b"big", b"x" * 70 + (b"\r\n" + b"x" * 70) * 20000)  # ~1.4 MiB
        self.assertEqual(cm.exception.smtp_code, 452)
        self.assertIn(b"4.3.1", cm.exception.smtp_error)
        send(node, b"small")  # the budget was given back
        self.assertIn(b"X-Org: Example Org", read(node.wait_mail()[0]))

    def test_config_errors_name_the_key(self):
        cfg = os.path.join(self.tmp, "bad.yaml")
        base = ("node: {name: n1, data_dir: %s}\nlisten: {smtp: [\"127.0.0.1:2525\"]}\n"
                "local_domains: [example.org]\ndirectory: {file: {mailboxes: [alice@example.org]}}\n" % self.tmp)
        cases = [
            ("sinks: {define: [{name: m, kind: milter, socket: \"inet:8891@localhost\"}], on_arrival: [m]}",
             "sinks.define[0].socket"),
            ("sinks: {define: [{name: p, kind: program, argv: [\"filter.sh\"]}]}", "sinks.define[0].argv"),
            ("sinks: {on_arrival: [nope]}", "sinks.on_arrival[0]"),
            ("sinks: {define: [{name: x, kind: bogus}]}", "kind"),
            ("sinks: {define: [{name: x, kind: header_stamp, header: \"X A\", value: v}]}", "sinks.define[0].header"),
            ("sinks: {define: [{name: x, kind: journal, address: nobody}]}", "sinks.define[0].address"),
            ("sinks: {define: [{name: h, kind: header_stamp, header: X-A, value: v}], on_command: [h]}",
             "sinks.on_command[0]"),
            ("sinks: {define: [{name: r, kind: reply_text, verbs: [NOOP], value: v}], on_arrival: [r]}",
             "sinks.on_arrival[0]"),
            ("sinks: {define: [{name: r, kind: route, domains: [a.example], connector: nope}]}",
             "sinks.define[0].connector"),
            ("sinks: {define: [{name: s, kind: header_stamp, header: X-A, value: v}], on_route: [s]}",
             "sinks.on_route[0]"),
            ("sinks: {define: [{name: s, kind: header_stamp, header: X-A, value: v}], on_delivery: [s]}",
             "sinks.on_delivery[0]"),
            ("sinks: {define: [{name: o, kind: outbound_policy, connector: \"*\", verbs: [MAIL]}]}",
             "sinks.define[0].reject_code"),  # 550 by default: only a transient stop is allowed
            ("sinks: {define: [{name: o, kind: outbound_policy, connector: \"*\", verbs: [MAIL], reject_code: 451,"
             " reject_enhanced: 4.7.0}], on_arrival: [o]}", "sinks.on_arrival[0]"),
            ("sinks: {define: [{name: s, kind: header_stamp, header: X-A, value: v}], on_outbound: [s]}",
             "sinks.on_outbound[0]"),
            ("sinks: {define: [{name: s, kind: milter, socket: \"inet:8891@127.0.0.1\"}], after_categorize: [s]}",
             "sinks.after_categorize[0]"),
        ]
        for text, key in cases:
            with open(cfg, "w") as f:
                f.write(base + text + "\n")
            r = subprocess.run([BH_BIN, "--check-config", "--config", cfg], capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0, text)
            self.assertIn(key, r.stderr, text)
            self.assertIn("bad.yaml", r.stderr, text)


if __name__ == "__main__":
    unittest.main()
