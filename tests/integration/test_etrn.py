"""ETRN (RFC 1985) end to end: a backup MX runs its queue when the primary asks.

The node relays partner.test (a relay domain) to a smart host that is down at first, so
the mail waits an hour for its retry. Then smtp-sink comes up and a client says
"ETRN partner.test": 250, and the mail is delivered at once. Also: ETRN for a domain we
do not queue for is 459, without an argument 501, with nothing waiting 251, a queue run
by next hop name "#smarthost:partner" is allowed, and the sixth ETRN of a minute from
one address is refused (459 4.7.0). The reply never says how much mail there is.
"""
import json
import shutil
import smtplib
import tempfile
import unittest

from bhnode import Node, free_port, wait_until
from peers import Sink


class Etrn(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bh-etrn-")
        cls.sink_port = free_port()
        extra = ("routing:\n"
                 "  smtp_connectors:\n"
                 "    - name: partner\n"
                 f'      smart_hosts: ["127.0.0.1:{cls.sink_port}"]\n'
                 '      address_spaces: [{pattern: "partner.test", cost: 1}]\n'
                 "      tls: none\n")
        cls.node = Node(smtp=["relay_domains: [partner.test]", "etrn_per_minute: 5"],
                        queue=["glitch_retries: 0", "retry_initial_s: 3600", "retry_max_s: 3600"],
                        extra=extra).start()
        cls.sink = None

    @classmethod
    def tearDownClass(cls):
        if cls.sink:
            cls.sink.stop()
        cls.node.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_etrn(self):
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=15) as c:
            c.ehlo("primary.partner.test")
            self.assertIn("etrn", c.esmtp_features)
            c.sendmail("a@sender.example", ["bob@partner.test"], b"Subject: held\r\n\r\nwaiting\r\n")
        # The smart host is down: the attempt fails and the retry is an hour away.
        wait_until(lambda: "retry" in self.node.bhctl("queue", "hops").stdout, timeout=15,
                   what="the partner hop in retry")
        type(self).sink = Sink(self.sink_port, self.tmp)
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=15) as c:
            c.ehlo("primary.partner.test")
            code, text = c.docmd("ETRN", "partner.test")
            self.assertEqual(code, 250, text)
            self.assertIn(b"partner.test", text)
            wait_until(lambda: len(self.sink.messages()) == 1, timeout=15, what="delivery after ETRN")
            wait_until(lambda: not self.node.queue_files(), timeout=10, what="an empty queue")
            # ... and the queue manager done with it too (it forgets a message just after
            # its file is gone; an ETRN in between still finds it "on its way").
            wait_until(lambda: json.loads(self.node.bhctl("--json", "queue", "list").stdout)["messages"] == [],
                       timeout=10, what="the queue manager done with the message")
            code, text = c.docmd("ETRN", "partner.test")
            self.assertEqual(code, 251, text)  # nothing waiting now
            code, text = c.docmd("ETRN", "ext.example")
            self.assertEqual(code, 459, text)  # hostile #57: not a node we queue for
            code, text = c.docmd("ETRN")
            self.assertEqual(code, 501, text)
            code, text = c.docmd("ETRN", "#smarthost:partner")
            self.assertEqual(code, 251, text)
            code, text = c.docmd("ETRN", "@partner.test")
            self.assertEqual(code, 251, text)  # the fifth ETRN (501 did not count)
            code, text = c.docmd("ETRN", "@partner.test")
            self.assertEqual(code, 459, text)  # the sixth this minute from 127.0.0.1
            self.assertTrue(text.startswith(b"4.7.0"), text)


if __name__ == "__main__":
    unittest.main()
