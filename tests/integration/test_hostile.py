"""hostile-inputs.md entries 1-9, 15-20, 27-40, 55, 62-64 against the running binary.

After each entry: the process is alive, a fresh EHLO/QUIT works, and resident memory
stays bounded.
"""
import socket
import threading
import time
import unittest

from bhnode import Node, Smtp, wait_until

RSS_LIMIT_KIB = 200 * 1024


class Hostile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(smtp=[
            "pregreet_wait_ms: 300",
            "max_message_size: 10485760",
            "max_sessions_per_ip: 40",
            # Every test here connects from 127.0.0.1, hundreds of times a minute; the
            # per-IP connection rate has its own test (test_abuse_limits.py).
            "max_connections_per_ip_per_minute: 0",
            "timeouts:",
            "  greeting_s: 2",
            "  mail_s: 2",
            "  rcpt_s: 2",
            "  data_init_s: 2",
            "  data_block_s: 2",
            "  write_s: 3",
        ]).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()

    def tearDown(self):
        self.assertTrue(self.node.alive(), self.node.read_log()[-2000:])
        s = self.session()
        self.assertEqual(s.cmd(b"EHLO after.check")[0], 250)
        self.assertEqual(s.cmd(b"QUIT")[0], 221)
        s.close()
        self.assertLess(self.node.rss_kib(), RSS_LIMIT_KIB)

    def session(self, ehlo=None):
        s = Smtp(self.node.smtp_port)
        code, _ = s.reply()
        self.assertEqual(code, 220)
        if ehlo:
            self.assertEqual(s.cmd(b"EHLO " + ehlo)[0], 250)
        return s

    def transaction(self, s, rcpt=b"alice@example.org"):
        self.assertEqual(s.cmd(b"MAIL FROM:<s@example.net>")[0], 250)
        self.assertEqual(s.cmd(b"RCPT TO:<" + rcpt + b">")[0], 250)

    def count_messages(self):
        return len(self.node.maildir("alice")) + len(self.node.maildir("bob")) + len(self.node.queue_files())

    def test_01_to_04_smuggling_variants_queue_exactly_one_message(self):
        for sep in (b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r.\n", b"\n.\r", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"):
            with self.subTest(sep=sep):
                before = self.count_messages()
                b0 = len(self.node.maildir("bob"))
                s = self.session(b"c")
                self.transaction(s)
                self.assertEqual(s.cmd(b"DATA")[0], 354)
                s.send(b"Hi" + sep + b"MAIL FROM:<x@evil>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSpoofed\r\n.\r\n")
                code, _ = s.reply()
                self.assertEqual(code, 250)
                s.cmd(b"QUIT")
                wait_until(lambda: self.count_messages() == before + 1, what="one message")
                time.sleep(0.2)
                self.assertEqual(self.count_messages(), before + 1)
                self.assertEqual(len(self.node.maildir("bob")), b0, "the smuggled message was delivered")

    def test_05_nul_before_dot_is_not_the_end(self):
        s = self.session(b"c")
        self.transaction(s)
        self.assertEqual(s.cmd(b"DATA")[0], 354)
        s.send(b"x\r\n\x00.\r\nstill body\r\n.\r\n")
        self.assertEqual(s.reply()[0], 250)

    def test_07_bare_cr_is_one_malformed_command(self):
        s = self.session(b"c")
        code, _ = s.cmd(b"MAIL FROM:<a@b.example>\rRCPT TO:<c@d.example>")
        self.assertEqual(code, 501)

    def test_08_pipelining_violations(self):
        s = self.session()
        self.assertEqual(s.cmd(b"HELO c")[0], 250)
        s.send(b"MAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nbody\r\n.\r\n")
        code, text = s.reply()
        self.assertEqual(code, 554, text)
        self.assertIn("5.5.0", text)
        self.assertTrue(s.closed())
        s = self.session(b"c")
        self.transaction(s)
        s.send(b"DATA\r\nSpoofed\r\n.\r\n")
        code, text = s.reply()
        self.assertEqual(code, 554, text)
        self.assertTrue(s.closed())

    def test_09_pregreet(self):
        sock = socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=5)
        sock.sendall(b"EHLO x\r\n")
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        self.assertTrue(data.startswith(b"554 5.5.1"), data)
        sock.close()

    def test_15_to_18_bdat(self):
        s = self.session(b"c")
        self.transaction(s)
        for bad in (b"BDAT 18446744073709551616", b"BDAT -1", b"BDAT 1x"):
            self.assertEqual(s.cmd(bad)[0], 501)
        self.assertEqual(s.cmd(b"NOOP")[0], 250)
        s.send(b"BDAT 5\r\nhello")
        self.assertEqual(s.reply()[0], 250)
        self.assertEqual(s.cmd(b"DATA")[0], 503)
        s.close()
        s = self.session(b"c")
        s.send(b"BDAT 3 LAST\r\nabc")
        self.assertEqual(s.reply()[0], 503)
        self.assertEqual(s.cmd(b"NOOP")[0], 250)
        s.close()
        # 16: a chunk over the size limit is refused without allocating it; the session
        # is then ended by the data deadline since we never send the octets.
        s = self.session(b"c")
        self.transaction(s)
        s.send(b"BDAT 4294967296 LAST\r\n" + b"x" * 1000)
        self.assertTrue(s.closed(timeout=8))

    def test_19_exim_poc(self):
        s = self.session(b"c")
        s.send(b"a" * 0x1100 + b"\x7f\r\n")
        self.assertEqual(s.reply()[0], 500)
        s.send(b"BDAT 1\r\n:")
        self.assertEqual(s.reply()[0], 503)
        s.send(b"BDAT \x7f\r\n")
        self.assertEqual(s.reply()[0], 500)
        s.send(b"b" * 0x1e00 + b":\r\n\n")
        self.assertEqual(s.reply()[0], 500)

    def test_20_bdat_zero_flood(self):
        s = self.session(b"c")
        self.transaction(s)
        s.send(b"BDAT 0\r\n" * 10000)
        codes = s.replies_until_close()
        self.assertEqual(codes[-1], 421)
        self.assertLess(len(codes), 200)

    def test_27_to_34_addresses_and_parameters(self):
        s = self.session(b"c")
        self.assertEqual(s.cmd(b"MAIL FROM:<;sleep 66;>")[0], 501)
        for bad in (b"MAIL FROM:<a@b.example> BODY", b"MAIL FROM:<a@b.example> SIZE",
                    b"MAIL FROM:<a@b.example> RET", b"MAIL FROM:<a@b.example> ENVID",
                    b'MAIL FROM:<a@b.example> AUTH="', b'MAIL FROM:<x> "=', b'MAIL FROM:<x> A=B"""""',
                    b"MAIL FROM:<a@b.example> SIZE=-1", b"MAIL FROM:<a@b.example> ENVID=" + b"a" * 101,
                    b"MAIL FROM:<a@b.example> RET=FOO", b"MAIL FROM:<a\x00b@x.example>"):
            self.assertEqual(s.cmd(bad)[0], 501, bad)
        code, text = s.cmd(b"MAIL FROM:<a@b.example> SIZE=99999999999999999999")
        self.assertEqual(code, 552)
        self.assertEqual(s.cmd(b"MAIL FROM:<a@b.example>")[0], 250)
        for bad in (b"RCPT TO:<;id;@example.org>", b"RCPT TO:<alice@example.org> NOTIFY",
                    b"RCPT TO:<alice@example.org> ORCPT", b"RCPT TO:<alice@example.org> NOTIFY=NEVER,SUCCESS",
                    b"RCPT TO:<alice@example.org> ORCPT=rfc822;a+0D+0AX-Injected:1",
                    b"RCPT TO:<" + b"a" * 65 + b"@example.org>"):
            self.assertEqual(s.cmd(bad)[0], 501, bad)
        self.assertIn(s.cmd(b"RCPT TO:<${run{/bin/sh -c id}}@example.org>")[0], (501, 550))
        self.assertEqual(s.cmd(b"RCPT TO:<alice@example.org>")[0], 250)
        code, _ = s.cmd(b"EHLO \xff\xfe")
        self.assertEqual(code, 501)

    def test_30_size_after_data(self):
        s = self.session(b"c")
        self.assertEqual(s.cmd(b"MAIL FROM:<a@b.example> SIZE=100")[0], 250)
        self.assertEqual(s.cmd(b"RCPT TO:<alice@example.org>")[0], 250)
        self.assertEqual(s.cmd(b"DATA")[0], 354)
        chunk = (b"x" * 998 + b"\r\n") * 1024
        for _ in range(12):  # 12 MB, over the 10 MB limit
            s.send(chunk)
        s.send(b".\r\n")
        code, text = s.reply()
        self.assertEqual(code, 552, text)
        self.assertIn("5.3.4", text)

    def test_35_36_long_lines(self):
        s = self.session(b"c")
        self.assertEqual(s.cmd(b"NOOP " + b"x" * 600)[0], 500)
        self.assertEqual(s.cmd(b"EHLO " + b"A" * 16384)[0], 500)
        s.send(b"y" * (1 << 20) + b"y" * 4096)
        codes = s.replies_until_close()
        self.assertEqual(codes, [500, 421])

    def test_37_38_long_line_and_huge_header(self):
        s = self.session(b"c")
        self.transaction(s)
        self.assertEqual(s.cmd(b"DATA")[0], 354)
        s.send(b"X: " + b"z" * 100000 + b"\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(s.reply()[0], 250)
        self.transaction(s)
        self.assertEqual(s.cmd(b"DATA")[0], 354)
        s.send(b"X-Long: a\r\n" + b"\tcontinued\r\n" * 100000 + b"\r\nbody\r\n.\r\n")
        code, text = s.reply()
        self.assertEqual(code, 552, text)

    def test_40_recipient_limits(self):
        s = self.session(b"c")
        self.assertEqual(s.cmd(b"MAIL FROM:<s@example.net>")[0], 250)
        s.send(b"RCPT TO:<alice@example.org>\r\n" * 150)
        codes = [s.reply()[0] for _ in range(150)]
        self.assertEqual(codes[:100], [250] * 100)
        self.assertEqual(set(codes[100:]), {452})
        self.assertEqual(s.cmd(b"NOOP")[0], 250)
        s.close()
        s = self.session(b"c")
        self.assertEqual(s.cmd(b"MAIL FROM:<s@example.net>")[0], 250)
        s.send(b"RCPT TO:<nobody@example.org>\r\n" * 100000)
        codes = s.replies_until_close()
        self.assertEqual(codes[-1], 421)
        self.assertLessEqual(len(codes), 30)

    def test_55_vrfy_expn(self):
        s = self.session(b"c")
        self.assertEqual(s.cmd(b"VRFY root")[0], 502)
        self.assertEqual(s.cmd(b"VRFY nosuchuser")[0], 502)
        self.assertEqual(s.cmd(b"EXPN all-staff")[0], 502)

    def test_62_slow_talkers_are_timed_out_others_served(self):
        socks = []
        for _ in range(20):
            sk = socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=10)
            socks.append(sk)
        time.sleep(0.4)
        for sk in socks:
            sk.sendall(b"E")
        # While they dawdle, a real client is served.
        s = self.session(b"c")
        self.assertEqual(s.cmd(b"QUIT")[0], 221)
        results = []
        for sk in socks:
            data = b""
            try:
                while True:
                    chunk = sk.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            results.append(data)
            sk.close()
        for data in results:
            self.assertIn(b"421 4.4.2", data)

    def test_62_too_many_sessions_from_one_ip(self):
        socks = [socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=10) for _ in range(45)]
        time.sleep(0.5)
        refused = 0
        for sk in socks:
            try:
                sk.settimeout(1)
                if sk.recv(512).startswith(b"421 4.7.0"):
                    refused += 1
            except OSError:
                pass
        for sk in socks:
            sk.close()
        self.assertGreaterEqual(refused, 5)
        time.sleep(0.3)

    def test_63_silent_client_and_non_reader(self):
        s = self.session()
        s.s.settimeout(8)
        code, text = s.reply()
        self.assertEqual(code, 421, text)
        self.assertIn("4.4.2", text)
        # A client that pipelines NOOPs and never reads: dropped, memory bounded.
        sk = socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=10)
        time.sleep(0.4)
        sk.sendall(b"EHLO c\r\n")
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sent = 0
        sk.settimeout(0.5)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                sent += sk.send(b"NOOP\r\n" * 1000)
        except (socket.timeout, BrokenPipeError, ConnectionResetError):
            pass
        sk.close()
        self.assertLess(self.node.rss_kib(), RSS_LIMIT_KIB)

    def test_64_junk_commands(self):
        s = self.session(b"c")
        s.send(b"NOOP\r\n" * 200)
        codes = s.replies_until_close()
        self.assertEqual(codes[-1], 421)
        self.assertLess(len(codes), 200)


if __name__ == "__main__":
    unittest.main()
