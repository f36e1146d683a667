"""Relay out by DNS MX, end to end with the real binary, a real dnsmasq and smtp-sink.

The node has one connector, `internet` (use_dns_mx, port P, "*"), and asks only the
"front" dnsmasq below. smtp-sink instances play the MX hosts on 127.0.0.2-4, all on the
same port P (Linux routes all of 127/8 to lo); nothing leaves the box.

DNS (all on 127.0.0.1, free ports, started once for the class):
  - front: the node's resolver. Records under --local=/test/ (other .test names are
    NXDOMAIN): order.test MX 10 mx1 (127.0.0.2), MX 20 mx2 (127.0.0.3); a-only.test has
    an A record (127.0.0.4) and no MX. servfail.test is forwarded to the validator.
  - validator: a DNSSEC-validating dnsmasq with the root trust anchor whose upstream is
    the unsigned "zone" dnsmasq, so every answer fails validation: SERVFAIL at once (a
    plain dnsmasq never says SERVFAIL; see tests/routing/ares_mx_resolver_test.cc). The
    front passes the SERVFAIL on; setUpClass checks that premise.

Cases: MX preference order, fallback to the next MX when the first is down, implicit MX
(A record only), NXDOMAIN -> DSN 5.1.2 to the local sender, SERVFAIL -> deferred with
4.4.3 and no bounce.
"""
import json
import os
import shutil
import smtplib
import tempfile
import time
import unittest

from bhnode import Node, wait_until
from peers import Dnsmasq, Sink, dns_rcode, free_port_on

# RFC 8624 / IANA root KSK-2017 DS record: the validator's trust anchor.
ROOT_ANCHOR = ".,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"
MX1, MX2, A_ONLY = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def queue_list(node):
    return json.loads(node.bhctl("--json", "queue", "list").stdout)["messages"]


def track(node, *args):
    return json.loads(node.bhctl("--json", "track", *args).stdout)["events"]


class RelayDns(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="bh-it-dns-")
        cls.dns = []
        try:
            zone = Dnsmasq(["--local=/test/"], os.path.join(cls.dir, "zone.log"))
            cls.dns.append(zone)
            validator = Dnsmasq(["--server=127.0.0.1#%d" % zone.port, "--dnssec",
                                 "--trust-anchor=" + ROOT_ANCHOR],
                                os.path.join(cls.dir, "validator.log"))
            cls.dns.append(validator)
            cls.front = Dnsmasq([
                "--local=/test/",
                # dnsmasq returns MX records unsorted: the node must sort by preference.
                "--mx-host=order.test,mx2.order.test,20",
                "--mx-host=order.test,mx1.order.test,10",
                "--host-record=mx1.order.test," + MX1,
                "--host-record=mx2.order.test," + MX2,
                "--host-record=a-only.test," + A_ONLY,
                "--server=/servfail.test/127.0.0.1#%d" % validator.port,
            ], os.path.join(cls.dir, "front.log"), probe="mx1.order.test")
            cls.dns.append(cls.front)
            # The premises: what the front really answers.
            assert dns_rcode(cls.front.port, "order.test") == 0
            assert dns_rcode(cls.front.port, "nope.test") == 3, "NXDOMAIN expected"
            assert dns_rcode(cls.front.port, "servfail.test") == 2, "SERVFAIL expected"
        except BaseException:
            cls.tearDownClass()
            raise
        # One port P for every MX host, free on all three addresses.
        cls.mx_port = free_port_on([MX1, MX2, A_ONLY])

    @classmethod
    def tearDownClass(cls):
        for d in reversed(cls.dns):
            d.stop()
        cls.dns = []
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        extra = ("routing:\n"
                 "  smtp_connectors:\n"
                 "    - name: internet\n"
                 "      use_dns_mx: true\n"
                 f"      port: {self.mx_port}\n"
                 '      address_spaces: [{pattern: "*", cost: 1}]\n'
                 "      tls: none\n"
                 "  dns:\n"
                 f'    servers: ["{self.front.server}"]\n'
                 "    timeout_s: 1\n"
                 "    tries: 1\n")
        self.node = Node(smtp=['relay_networks: ["127.0.0.0/8"]'],
                         queue=["glitch_retries: 2", "glitch_interval_s: 1", "retry_initial_s: 30",
                                "retry_max_s: 60"], extra=extra)
        self.sinks = []
        try:
            self.node.start()
        except BaseException:
            self.node.cleanup()
            raise

    def tearDown(self):
        for s in self.sinks:
            s.stop()
        if self._outcome_failed():
            print("---- node log ----\n" + self.node.read_log()[-6000:])
        self.node.cleanup()

    def _outcome_failed(self):
        # Python 3.11+: the result collects (test, traceback) pairs as they fail.
        result = getattr(getattr(self, "_outcome", None), "result", None)
        return result is not None and any(t is self for t, _ in result.failures + result.errors)

    def sink(self, host):
        s = Sink(self.mx_port, self.node.base, host=host)
        self.sinks.append(s)
        return s

    def send(self, rcpts, sender="alice@example.org"):
        msg = (b"From: alice@example.org\r\nSubject: by mx\r\nMessage-ID: <%d@t>\r\n\r\nhello\r\n"
               % time.monotonic_ns())
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10) as c:
            c.ehlo("client.example")
            c.sendmail(sender, rcpts, msg)
        return msg

    def assert_queue_empties(self):
        wait_until(lambda: not self.node.queue_files(), timeout=10, what="queue to empty")

    def test_mx_preference_order_lowest_first(self):
        mx1, mx2 = self.sink(MX1), self.sink(MX2)
        for _ in range(3):
            self.send(["x@order.test"])
        wait_until(lambda: len(mx1.messages()) >= 3, timeout=15, what="3 messages at mx1")
        self.assert_queue_empties()
        time.sleep(0.3)
        self.assertEqual(len(mx1.messages()), 3)
        self.assertEqual(mx2.messages(), [])
        for m in mx1.messages():
            self.assertIn(b"x@order.test", m)
        relayed = [e for e in track(self.node, "--recipient", "x@order.test") if e["event"] == "relayed"]
        self.assertEqual(len(relayed), 3, relayed)
        for e in relayed:
            self.assertEqual(e["next_hop"], "mx:internet:order.test")
            self.assertIn("250", e["reply"])
        self.assertEqual(self.node.maildir("alice"), [])  # no DSN

    def test_first_mx_down_falls_back_to_the_second(self):
        mx2 = self.sink(MX2)  # nothing listens on mx1 (127.0.0.2:P): connection refused
        self.send(["y@order.test"])
        wait_until(lambda: mx2.messages(), timeout=15, what="the message at mx2")
        self.assert_queue_empties()
        self.assertEqual(len(mx2.messages()), 1)
        self.assertIn(b"y@order.test", mx2.messages()[0])
        self.assertEqual(self.node.maildir("alice"), [])

    def test_domain_with_only_an_a_record_is_its_own_mx(self):
        host, other = self.sink(A_ONLY), self.sink(MX1)
        self.send(["z@a-only.test"])
        wait_until(lambda: host.messages(), timeout=15, what="the message at a-only.test")
        self.assert_queue_empties()
        self.assertIn(b"z@a-only.test", host.messages()[0])
        self.assertEqual(other.messages(), [])
        relayed = [e for e in track(self.node, "--recipient", "z@a-only.test") if e["event"] == "relayed"]
        self.assertEqual([e["next_hop"] for e in relayed], ["mx:internet:a-only.test"])

    def test_nxdomain_bounces_with_512_to_the_local_sender(self):
        mx1 = self.sink(MX1)
        self.send(["gone@nope.test"])
        files = self.node.wait_mail("alice", 1, timeout=15)
        with open(files[-1], "rb") as fh:
            dsn = fh.read()
        self.assertIn(b"Action: failed", dsn)
        self.assertIn(b"Status: 5.1.2", dsn)
        self.assertIn(b"gone@nope.test", dsn)
        self.assert_queue_empties()
        time.sleep(0.5)
        self.assertEqual(len(self.node.maildir("alice")), 1)  # exactly one DSN
        self.assertEqual(mx1.messages(), [])
        kinds = [e["event"] for e in track(self.node, "--recipient", "gone@nope.test")]
        self.assertIn("bounced", kinds)

    def test_servfail_is_deferred_with_443_and_not_bounced(self):
        self.send(["w@servfail.test"])

        def deferred():
            ms = queue_list(self.node)
            return len(ms) == 1 and ms[0]["state"] == "retry" and "4.4.3" in ms[0]["last_error"] and ms[0]
        m = wait_until(deferred, timeout=15, what="retry with 4.4.3")
        self.assertEqual(m["recipients"], 1)
        self.assertEqual(m["next_hops"], ["mx:internet:servfail.test"])
        # The glitch retries (2, 1 s apart) also fail transiently; then the backoff.
        # (attempts counts an attempt once it starts: wait for its outcome too.)
        m = wait_until(lambda: (lambda m: m["attempts"] >= 3 and m["state"] == "retry" and m)(
            queue_list(self.node)[0]), timeout=15, what="3 attempts, back in retry")
        self.assertEqual(m["attempts"], 3)
        self.assertIn("4.4.3", m["last_error"])
        self.assertGreaterEqual(m["next_attempt"] - int(time.time()), 20)  # the backoff, not 1 s
        self.assertEqual(len(self.node.queue_files()), 1)
        self.assertEqual(self.node.maildir("alice"), [])  # no DSN
        kinds = [e["event"] for e in track(self.node, "--recipient", "w@servfail.test")]
        self.assertNotIn("bounced", kinds)
        self.assertNotIn("dsn_sent", kinds)


if __name__ == "__main__":
    unittest.main()
