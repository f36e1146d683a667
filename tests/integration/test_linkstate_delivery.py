"""Link-state routes in the delivery path (issue 6, DESIGN.md §4.3): an external address
space on a link-state connector of this node's routing group is delivered through the
SMTP connector of the same name while the connector is up; when it is down (every
source bridgehead reported down) the mail stays queued as unreachable (4.4.4, retried,
not bounced) and leaves once the connector is back up. Next hop: Postfix's smtp-sink."""
import json
import unittest

import lscluster
from bhnode import free_port, wait_until
from peers import Sink


class LinkStateDelivery(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sink_port = free_port()
        extra = ("routing:\n"
                 "  smtp_connectors:\n"
                 "    - name: out\n"
                 f'      smart_hosts: ["127.0.0.1:{cls.sink_port}"]\n'
                 '      address_spaces: [{pattern: "remote.test"}]\n')
        cls.c = lscluster.Cluster(
            {"RG-A": ["a1"]},
            raw_connectors=['{id: out, source_group: RG-A, address_spaces: [{pattern: "remote.test"}]}'],
            link_state_lines=["probe_ms: 300"],
            node_kw={"a1": {"extra": extra, "smtp": ['relay_networks: ["127.0.0.0/8"]'],
                            "queue": ["glitch_retries: 0", "retry_initial_s: 30", "retry_max_s: 60"]}})
        cls.c.start()
        cls.node = cls.c.nodes["a1"]
        cls.sink = Sink(cls.sink_port, cls.node.base)

    @classmethod
    def tearDownClass(cls):
        cls.sink.stop()
        cls.c.cleanup()

    def send(self, rcpt):
        import smtplib
        with smtplib.SMTP(self.node.host, self.node.smtp_port, timeout=10) as s:
            s.sendmail("sender@example.org", [rcpt], b"Subject: ls\r\n\r\nhello\r\n")

    def messages(self):
        return json.loads(self.node.bhctl("--json", "queue", "list").stdout)["messages"]

    def state(self):
        g = self.c.lsdb("a1")["groups"][0]
        return [x for x in g["connectors"] if x["id"] == "out"][0]["state"]

    def test_a_delivery_failures_take_the_connector_down_probe_brings_it_back(self):
        self.sink.stop()
        self.send("z@remote.test")
        # queue.glitch_retries: 0, so the first hop failure reports it down.
        wait_until(lambda: self.state() == "down", what="connector out down after the failed delivery")
        wait_until(lambda: self.c.routes("a1")["address_spaces"][0]["status"] == "unreachable",
                   what="remote.test unreachable")
        m = self.messages()[0]
        self.assertEqual(m["state"], "retry", m)
        type(self).sink = Sink(self.sink_port, self.node.base)
        # The probe (probe_ms 300) connects: up again, and the mail can go.
        wait_until(lambda: self.state() == "up", what="connector out up after the probe")
        self.assertEqual(self.node.bhctl("queue", "retry", m["id"]).returncode, 0)
        wait_until(lambda: len(self.sink.messages()) == 1, what="delivery after the probe")
        wait_until(lambda: not self.node.queue_files(), what="queue to empty")
        self.assertIn("reported down after failed deliveries", self.node.read_log())

    def test_unreachable_while_down_then_delivered(self):
        r = self.c.routes("a1")
        self.assertEqual([(a["pattern"], a["status"]) for a in r["address_spaces"]], [("remote.test", "routed")])
        base = len(self.sink.messages())
        self.send("x@remote.test")
        wait_until(lambda: len(self.sink.messages()) == base + 1, what="delivery through connector out")
        self.assertEqual(self.node.bhctl("link", "down", "out").returncode, 0)
        wait_until(lambda: self.c.routes("a1")["address_spaces"][0]["status"] == "unreachable",
                   what="remote.test unreachable")
        self.send("y@remote.test")
        wait_until(lambda: self.messages() and "4.4.4" in (self.messages()[0].get("last_error") or ""),
                   what="the message deferred as unreachable")
        m = self.messages()[0]
        self.assertEqual(m["state"], "retry", m)
        self.assertEqual(len(self.sink.messages()), base + 1)
        self.assertEqual(self.node.bhctl("link", "up", "out").returncode, 0)
        wait_until(lambda: self.c.routes("a1")["address_spaces"][0]["status"] == "routed", what="routed again")
        # No operator retry: the new routing table makes the unreachable mail due at once
        # (its retry would only come after queue.retry_initial_s).
        wait_until(lambda: len(self.sink.messages()) == base + 2, what="delivery after the connector came back")
        self.assertIn("routed again", self.node.read_log())
        wait_until(lambda: not self.node.queue_files(), what="queue to empty")


class NothingToProbe(unittest.TestCase):
    """A connector that delivers by DNS MX (through a resolver that never answers: a
    closed port) goes down on its failures, and has no address to probe: it is up again
    after one probe_ms, for mail to try it again."""

    @classmethod
    def setUpClass(cls):
        extra = ("routing:\n"
                 "  dns:\n"
                 f'    servers: ["127.0.0.1:{free_port()}"]\n'
                 "    timeout_s: 1\n"
                 "    tries: 1\n"
                 "  smtp_connectors:\n"
                 "    - name: far\n"
                 "      use_dns_mx: true\n"
                 '      address_spaces: [{pattern: "far.test"}]\n')
        cls.c = lscluster.Cluster(
            {"RG-F": ["f1"]},
            raw_connectors=['{id: far, source_group: RG-F, address_spaces: [{pattern: "far.test"}]}'],
            link_state_lines=["probe_ms: 1500"],
            node_kw={"f1": {"extra": extra, "smtp": ['relay_networks: ["127.0.0.0/8"]'],
                            "queue": ["glitch_retries: 0", "retry_initial_s: 30", "retry_max_s: 60"]}})
        cls.c.start()
        cls.node = cls.c.nodes["f1"]

    @classmethod
    def tearDownClass(cls):
        cls.c.cleanup()

    def state(self):
        g = self.c.lsdb("f1")["groups"][0]
        return [x for x in g["connectors"] if x["id"] == "far"][0]["state"]

    def test_up_again_after_the_interval(self):
        import smtplib
        with smtplib.SMTP(self.node.host, self.node.smtp_port, timeout=10) as s:
            s.sendmail("sender@example.org", ["x@far.test"], b"Subject: far\r\n\r\nhello\r\n")
        wait_until(lambda: self.state() == "down", timeout=20, what="far down after its failure")
        wait_until(lambda: self.state() == "up", timeout=10, what="far up again for a try")
        self.assertIn("connector far: no address to probe; up again for a try", self.node.read_log())


if __name__ == "__main__":
    unittest.main()
