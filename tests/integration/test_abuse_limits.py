"""The per-IP connection rate and the error tarpit (smtp/README.md "Limits") with the real
binary. The exact arithmetic (token refill, which reply waits) is unit-tested with a
ManualClock in tests/smtp/connection_limits_test.cc and connection_test.cc.

- more than smtp.max_connections_per_ip_per_minute connections from 127.0.0.1 in a burst:
  421 4.7.0 and close, counted as rejected_rate; the node serves again later;
- hostile-inputs #56: 50 RCPTs to unknown users: 550 5.1.1 each, replies after the 5th
  error come late (tarpit), and 421 4.7.0 once max_errors is passed.
"""
import json
import time
import unittest

from bhnode import Node, Smtp


class AbuseLimits(unittest.TestCase):
    def status(self, node):
        return json.loads(node.bhctl("--json", "status").stdout)["sessions"]

    def test_connection_rate_per_ip(self):
        node = Node(smtp=["max_connections_per_ip_per_minute: 5"]).start()
        self.addCleanup(node.cleanup)
        codes = []
        for _ in range(6):  # the start-up probe used at least one of the 5
            s = Smtp(node.smtp_port)
            code, text = s.reply()
            codes.append(code)
            s.close()
            if code == 421:
                self.assertIn("4.7.0", text)
                break
        self.assertEqual(codes[-1], 421, codes)
        self.assertTrue(all(c == 220 for c in codes[:-1]), codes)
        self.assertGreaterEqual(self.status(node)["rejected_rate"], 1)
        self.assertTrue(node.alive())

    def test_56_unknown_recipients_are_tarpitted_then_cut_off(self):
        delay = 0.3
        node = Node(smtp=["tarpit_after_errors: 5", f"tarpit_delay_ms: {int(delay * 1000)}",
                          "max_errors: 20"]).start()
        self.addCleanup(node.cleanup)
        s = Smtp(node.smtp_port)
        s.reply()
        s.cmd(b"EHLO client.example")
        self.assertEqual(s.cmd(b"MAIL FROM:<s@example.net>")[0], 250)
        timings, codes = [], []
        for i in range(50):
            t0 = time.monotonic()
            try:
                code, text = s.cmd(b"RCPT TO:<random%d@example.org>" % i)
            except (EOFError, ConnectionResetError):
                break
            timings.append(time.monotonic() - t0)
            codes.append(code)
            if code == 421:
                break
            self.assertEqual(code, 550)
            self.assertIn("5.1.1", text)
        # max_errors 20: the 21st error gets its 550, then 421 and the session ends.
        self.assertEqual(codes, [550] * 21 + [421])
        self.assertTrue(s.closed())
        # MAIL was not an error; after the 5th 550 every reply waited.
        self.assertTrue(all(t >= delay for t in timings[5:21]), timings)  # the 421 came with the 21st
        self.assertGreaterEqual(self.status(node)["tarpit_delays"], 15)


if __name__ == "__main__":
    unittest.main()
