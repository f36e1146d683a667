"""Relay out through a smart host, end to end with the real binary (issue: relay out).

Postfix's smtp-sink is the next hop; its fault modes drive the scheduler:
  - 2xx: the message arrives (dumped by smtp-sink) and leaves the queue;
  - hard bounce at RCPT: one DSN to the sender with the remote reply in it;
  - soft bounce at RCPT: deferred, visible in `bhctl queue hops`, delivered once the
    hop answers 2xx;
  - nothing listening: glitch retries then backoff, failures counted per hop;
  - a restart in the middle of the schedule keeps the message, its state and next retry.
"""
import json
import smtplib
import time
import unittest

from bhnode import Node, free_port, wait_until
from peers import Sink


def relay_node(sink_port, **kw):
    extra = ("routing:\n"
             "  smtp_connectors:\n"
             "    - name: out\n"
             f'      smart_hosts: ["127.0.0.1:{sink_port}"]\n'
             '      address_spaces: [{pattern: "*", cost: 1}]\n'
             "      tls: none\n")
    return Node(smtp=['relay_networks: ["127.0.0.0/8"]'],
                queue=["glitch_retries: 2", "glitch_interval_s: 1", "retry_initial_s: 30",
                       "retry_max_s: 60"], extra=extra, **kw)


def hops(node):
    return json.loads(node.bhctl("--json", "queue", "hops").stdout)["queues"]


class Relay(unittest.TestCase):
    def setUp(self):
        self.sink_port = free_port()
        self.node = relay_node(self.sink_port).start()
        self.sinks = []

    def tearDown(self):
        for s in self.sinks:
            s.stop()
        self.node.cleanup()

    def sink(self, *flags):
        s = Sink(self.sink_port, self.node.base, flags)
        self.sinks.append(s)
        return s

    def send(self, rcpts, body=None, sender="alice@example.org"):
        msg = body or (b"From: alice@example.org\r\nSubject: out\r\nMessage-ID: <%d@t>\r\n\r\n"
                       b"line\r\n.dot\r\n" % time.monotonic_ns())
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10) as c:
            c.ehlo("client.example")
            c.sendmail(sender, rcpts, msg)
        return msg

    def test_relayed_message_arrives_and_leaves_the_queue(self):
        sink = self.sink()
        msg = self.send(["one@remote.test", "two@remote.test"])
        wait_until(lambda: sink.messages(), what="message at the sink")
        got = sink.messages()
        self.assertEqual(len(got), 1)  # one copy carries both recipients
        self.assertIn(b"one@remote.test", got[0])
        self.assertIn(b"two@remote.test", got[0])
        self.assertIn(b"\r\n.dot\r\n" if b"\r\n" in got[0] else b"\n.dot\n", got[0])
        self.assertIn(b"by mx.example.org (bridgehead)", got[0])
        wait_until(lambda: not self.node.queue_files(), what="queue to empty")
        status = json.loads(self.node.bhctl("--json", "status").stdout)
        self.assertEqual(status["queue"]["relayed_recipients"], 2)
        events = json.loads(self.node.bhctl("--json", "track", "--recipient", "two@remote.test").stdout)["events"]
        relayed = [e for e in events if e["event"] == "relayed"]
        self.assertEqual(len(relayed), 1, events)
        self.assertEqual(relayed[0]["next_hop"], "smarthost:out")
        self.assertIn("250", relayed[0]["reply"])

    def test_hard_bounce_sends_one_dsn_with_the_remote_reply(self):
        self.sink("-f", "rcpt", "-B", "550 5.1.1 no such user here")
        before = len(self.node.maildir("alice"))
        self.send(["gone@remote.test"])
        files = self.node.wait_mail("alice", before + 1)
        with open(files[-1], "rb") as fh:
            dsn = fh.read()
        self.assertIn(b"Action: failed", dsn)
        self.assertIn(b"550 5.1.1 no such user here", dsn)
        wait_until(lambda: not self.node.queue_files(), what="queue to empty")
        time.sleep(0.5)
        self.assertEqual(len(self.node.maildir("alice")), before + 1)
        events = json.loads(self.node.bhctl("--json", "track", "--sender", "alice@example.org").stdout)["events"]
        kinds = [e["event"] for e in events]
        self.assertIn("bounced", kinds)
        self.assertIn("dsn_sent", kinds)

    def test_soft_bounce_is_retried_then_delivered(self):
        soft = self.sink("-r", "rcpt", "-b", "450 4.2.0 try again later")
        self.send(["later@remote.test"])
        wait_until(lambda: any(h["failures"] == 0 and h["messages"] == 1 for h in hops(self.node))
                   and json.loads(self.node.bhctl("--json", "queue", "list").stdout)["messages"][0]["state"] == "retry",
                   what="deferred")
        listed = json.loads(self.node.bhctl("--json", "queue", "list").stdout)["messages"][0]
        self.assertIn("450", listed["last_error"])
        soft.stop()
        self.sinks.remove(soft)
        good = self.sink()
        wait_until(lambda: good.messages(), timeout=20, what="delivery after the retry")
        wait_until(lambda: not self.node.queue_files(), what="queue to empty")

    def test_hop_down_gets_glitch_retries_then_backoff_visible_in_bhctl(self):
        self.send(["x@remote.test"])
        # Two glitch retries 1 s apart, then the backoff (30 s): three failures in a row.
        wait_until(lambda: any(h["failures"] >= 3 for h in hops(self.node)), timeout=20,
                   what="three failed attempts")
        h = hops(self.node)[0]
        self.assertEqual(h["next_hop"], "smarthost:out")
        self.assertEqual(h["state"], "retry")
        self.assertEqual(h["messages"], 1)
        self.assertIn("4.4.1", h["last_error"])
        table = self.node.bhctl("queue", "hops").stdout
        self.assertIn("smarthost:out", table)
        self.assertIn("retry", table)
        m = json.loads(self.node.bhctl("--json", "queue", "list").stdout)["messages"][0]
        self.assertEqual(m["attempts"], 3)
        self.assertGreaterEqual(m["next_attempt"] - int(time.time()), 20)  # the backoff, not 1 s
        # The operator can make it due now once the hop is back.
        sink = self.sink()
        self.assertEqual(self.node.bhctl("queue", "retry", "--hop", "smarthost:out").returncode, 0)
        wait_until(lambda: sink.messages(), what="delivery after retry --hop")

    def test_restart_in_the_middle_of_the_schedule_keeps_state_and_next_retry(self):
        self.send(["a@remote.test"])
        wait_until(lambda: any(h["failures"] >= 3 for h in hops(self.node)), timeout=20,
                   what="backoff reached")
        before = json.loads(self.node.bhctl("--json", "queue", "list").stdout)["messages"][0]
        self.node.stop()
        self.node.start()
        after = json.loads(self.node.bhctl("--json", "queue", "list").stdout)["messages"]
        self.assertEqual(len(after), 1)
        self.assertEqual(after[0]["id"], before["id"])
        self.assertEqual(after[0]["state"], "retry")
        self.assertEqual(after[0]["attempts"], before["attempts"])
        self.assertEqual(after[0]["next_attempt"], before["next_attempt"])
        sink = self.sink()
        time.sleep(1.5)
        self.assertEqual(sink.messages(), [])  # not due yet: the schedule holds
        self.assertEqual(self.node.bhctl("queue", "retry", before["id"]).returncode, 0)
        wait_until(lambda: sink.messages(), what="delivery after the restart")


if __name__ == "__main__":
    unittest.main()
