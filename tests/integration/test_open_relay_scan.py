"""nmap's smtp-open-relay script (16 relay tricks) against the real binary.

The node owns our.test and trusts no network: nmap must report no open relay, both with
its default foreign domain and with smtp-open-relay.domain set to our own domain. The
same scan against a node that trusts 127.0.0.0/8 must report an open relay, so the check
can fail. nmap runs with -n (no DNS: the resolver points off this machine) and -Pn, and
the script is forced (+) because its port rule only knows 25/465/587.
"""
import re
import subprocess
import unittest

from bhnode import Node

OUR_DOMAIN = "our.test"


def scan(port, domain=None):
    args = "smtp-open-relay.ip=127.0.0.1"
    if domain:
        args = f"smtp-open-relay.domain={domain}," + args
    r = subprocess.run(["nmap", "-n", "-Pn", "-p", str(port), "--script", "+smtp-open-relay",
                        "--script-args", args, "127.0.0.1"],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"smtp-open-relay: (.*)", r.stdout)
    if not m:
        raise AssertionError("no smtp-open-relay verdict in nmap output:\n" + r.stdout + r.stderr)
    return m.group(1)


class OpenRelayScan(unittest.TestCase):
    def node(self, *smtp):
        # nmap makes every combination on one connection: no tarpit, no error limit.
        n = Node(mailboxes=("alice@our.test",), domains=(OUR_DOMAIN,),
                 smtp=["tarpit_delay_ms: 0", "max_errors: 1000"] + list(smtp)).start()
        self.addCleanup(n.cleanup)
        return n

    def test_not_an_open_relay(self):
        n = self.node()
        for domain in (None, OUR_DOMAIN):
            with self.subTest(domain=domain):
                verdict = scan(n.smtp_port, domain)
                self.assertIn("doesn't seem to be an open relay", verdict)
                self.assertNotIn("is an open relay", verdict)
        self.assertTrue(n.alive())
        self.assertEqual(n.queue_files(), [])

    def test_the_scan_does_see_an_open_relay(self):
        n = self.node('relay_networks: ["127.0.0.0/8"]')
        verdict = scan(n.smtp_port)
        self.assertIn("Server is an open relay", verdict)


if __name__ == "__main__":
    unittest.main()
