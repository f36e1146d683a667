"""Connection reuse on the relay (routing.connection_idle_s, connection_max_messages;
docs/smtp-client.md "Connection reuse"), against a scripted next hop on loopback that
records every connection and every command on it.

1. Messages sent one after another to the same smart host share one connection: the
   second and third start with RSET instead of a connect, greeting and EHLO; once the
   connection has been idle for connection_idle_s the relay says QUIT.
2. connection_max_messages ends a connection with QUIT after that many messages; the
   next message opens a new one.
3. A held connection the server closed is replaced by a new one, and a server that
   refuses the RSET gets the message on a new connection: neither delays the message
   (it is delivered at once, never deferred) and neither counts as a failed attempt.
4. So does a 421 to MAIL on a reused connection (a server's limit of messages per
   connection).
5. A node that stops (SIGTERM) says QUIT on the connections it holds, and still stops
   at once.
6. A node that stops while a message is out waits for the next hop's answer
   (queue.stop_drain_s) and records it: after the restart the message is not sent again.
7. A second SIGTERM during that wait ends it at once: the message stays queued and is
   sent again after the restart (the one case where the next hop may get it twice).
   So do two SIGTERMs sent back to back, the second before the node starts to wait.
"""
import json
import signal
import smtplib
import threading
import time
import unittest

from bhnode import Node, wait_until
from loopback_server import LoopbackServer


class ScriptedHop:
    """A next hop that accepts everything, by default. Per connection: the commands in
    order. `rset_reply`: the reply to RSET (a 421 also closes the connection);
    `close_after_message`: close the connection right after the 250 to the data."""

    def __init__(self):
        self.lock = threading.Lock()
        self.connections = []  # one list of commands per connection
        self.closed = []       # index of each connection that has ended
        self.messages = 0
        self.rset_reply = b"250 2.0.0 Ok\r\n"
        self.close_after_message = False
        self.max_per_connection = 0  # > 0: a 421 to MAIL beyond that many messages
        self.data_reply_delay = 0.0  # seconds between the end of the data and its 250
        self.data_seen = 0           # messages whose data arrived (before that delay)
        self.server = LoopbackServer(self._serve)
        self.port = self.server.port

    def stop(self):
        self.server.close()

    def _serve(self, c):
        with self.lock:
            self.connections.append([])
            n = len(self.connections) - 1
        f = c.makefile("rb")
        try:
            c.sendall(b"220 hop.test ESMTP\r\n")
            in_data = False
            for line in f:
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        with self.lock:
                            self.data_seen += 1
                        time.sleep(self.data_reply_delay)
                        with self.lock:
                            self.messages += 1
                        c.sendall(b"250 2.0.0 Ok: queued\r\n")
                        if self.close_after_message:
                            break
                    continue
                cmd = line.rstrip(b"\r\n").decode()
                with self.lock:
                    self.connections[n].append(cmd)
                verb = cmd.split(" ")[0].split(":")[0].upper()
                taken = sum(1 for x in self.connections[n] if x.startswith("MAIL"))
                if verb == "MAIL" and 0 < self.max_per_connection < taken:
                    c.sendall(b"421 4.7.0 hop.test Error: too many messages in this session\r\n")
                    break
                if verb == "EHLO":
                    c.sendall(b"250-hop.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == "DATA":
                    in_data = True
                    c.sendall(b"354 go ahead\r\n")
                elif verb == "RSET":
                    c.sendall(self.rset_reply)
                    if self.rset_reply.startswith(b"421"):
                        break
                elif verb == "QUIT":
                    c.sendall(b"221 2.0.0 Bye\r\n")
                    break
                else:
                    c.sendall(b"250 2.0.0 Ok\r\n")
        except OSError:
            pass
        finally:
            with self.lock:
                self.closed.append(n)
            c.close()

    def snapshot(self):
        with self.lock:
            return [list(x) for x in self.connections], list(self.closed), self.messages


def relay_node(hop, idle_s=5, max_messages=100, queue=None):
    extra = ("routing:\n"
             f"  connection_idle_s: {idle_s}\n"
             f"  connection_max_messages: {max_messages}\n"
             "  smtp_connectors:\n"
             "    - name: hop\n"
             f'      smart_hosts: ["127.0.0.1:{hop.port}"]\n'
             '      address_spaces: [{pattern: "*", cost: 1}]\n'
             "      tls: none\n")
    return Node(smtp=['relay_networks: ["127.0.0.0/8"]'], queue=queue, extra=extra).start()


def relay_status(node):
    r = node.bhctl("status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["relay"]


class RelayReuse(unittest.TestCase):
    def setUp(self):
        self.hop = ScriptedHop()
        self.node = None

    def tearDown(self):
        if self.node is not None:
            self.node.cleanup()
        self.hop.stop()

    def send(self, *numbers):
        """Message n (1-based, in order) through the node, for each n; each time waits
        until the hop has it and the relay has counted it delivered (by then the relay has
        put the connection back for the next one), and fails unless that came at once (a
        message deferred to a retry would take longer). Returns the hop's snapshot()."""
        for n in numbers:
            t0 = time.monotonic()
            with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10) as c:
                c.sendmail("alice@example.org", ["x@example.net"],
                           f"Subject: reuse {n}\r\n\r\nbody {n}\r\n".encode())
            wait_until(lambda: self.hop.snapshot()[2] >= n, timeout=15,
                       what=f"message {n} at the hop")
            wait_until(lambda: relay_status(self.node)["delivered"] >= n, timeout=15,
                       what=f"message {n} counted delivered by the relay")
            self.assertLess(time.monotonic() - t0, 5, f"message {n} was not relayed at once")
        return self.hop.snapshot()

    def test_1_messages_share_one_connection_which_quits_when_idle(self):
        self.node = relay_node(self.hop, idle_s=2)
        conns, closed, _ = self.send(1, 2, 3)
        self.assertEqual(len(conns), 1, conns)
        c = conns[0]
        self.assertEqual(c[0], "EHLO mx.example.org")
        self.assertEqual(c.count("EHLO mx.example.org"), 1)
        self.assertEqual([x for x in c if x == "RSET"], ["RSET", "RSET"])
        # Each later message begins with RSET, then its own envelope.
        second = c.index("RSET")
        self.assertTrue(c[second + 1].startswith("MAIL FROM:<alice@example.org>"), c)
        st = relay_status(self.node)
        self.assertEqual(st["connections_reused"], 2, st)
        self.assertEqual(st["held_connections"], 1, st)
        self.assertEqual(closed, [])
        # Idle for connection_idle_s: QUIT, and nothing is held any more.
        wait_until(lambda: self.hop.snapshot()[1] == [0], timeout=10, what="the idle QUIT")
        self.assertEqual(self.hop.snapshot()[0][0][-1], "QUIT")
        self.assertEqual(relay_status(self.node)["held_connections"], 0)
        self.assertIn("(reused)", self.node.read_log())

    def test_2_max_messages_per_connection(self):
        self.node = relay_node(self.hop, max_messages=2)
        conns, _, _ = self.send(1, 2, 3)
        self.assertEqual(len(conns), 2, conns)
        # The first carried two messages and ended with QUIT right after the second.
        wait_until(lambda: 0 in self.hop.snapshot()[1], timeout=5, what="QUIT after 2 messages")
        first = self.hop.snapshot()[0][0]
        self.assertEqual(sum(1 for x in first if x.startswith("MAIL FROM")), 2, first)
        self.assertEqual(first[-1], "QUIT")
        self.assertEqual(sum(1 for x in conns[1] if x.startswith("MAIL FROM")), 1, conns[1])

    def test_3_a_dropped_or_refusing_connection_is_replaced_without_delay(self):
        self.node = relay_node(self.hop)
        # The hop closes each connection after its message (as at its own idle timeout).
        self.hop.close_after_message = True
        self.send(1)
        wait_until(lambda: 0 in self.hop.snapshot()[1], timeout=5, what="the hop's close")
        self.send(2)
        wait_until(lambda: 1 in self.hop.snapshot()[1], timeout=5, what="the hop's close")
        # The hop now keeps connections, but refuses RSET: the relay takes a new one.
        self.hop.close_after_message = False
        self.send(3)
        self.hop.rset_reply = b"421 4.4.2 hop.test Error: timeout exceeded\r\n"
        conns, _, messages = self.send(4)
        self.assertEqual(messages, 4)
        self.assertEqual(len(conns), 4, conns)  # 1, 2 (fresh after the close), 3, then 4
        self.assertEqual(conns[2][-1], "RSET")   # refused: nothing of message 4 went there
        st = relay_status(self.node)
        # Message 4's refused RSET is one. Messages 2 and 3 may each add one: the relay
        # notices the hop's close when it reads the EOF, which can come after the next
        # job took the connection (its RSET then finds the connection gone).
        self.assertGreaterEqual(st["reuse_failures"], 1, st)
        self.assertLessEqual(st["reuse_failures"], 3, st)
        self.assertEqual(st["transient"], 0, st)
        self.assertEqual(st["delivered"], 4, st)
        self.assertEqual(st["attempts"], 4, st)  # the retry on a new connection is not one

    def test_4_a_421_to_mail_on_a_reused_connection_means_a_new_one(self):
        # Like Exchange's MaxMessagesPerConnection: the third MAIL on a connection gets 421.
        self.hop.max_per_connection = 2
        self.node = relay_node(self.hop)
        conns, _, _ = self.send(1, 2, 3, 4)
        self.assertEqual(len(conns), 2, conns)
        self.assertTrue(conns[0][-1].startswith("MAIL FROM"), conns[0])  # the refused one
        st = relay_status(self.node)
        self.assertEqual(st["reuse_failures"], 1, st)
        self.assertEqual(st["transient"], 0, st)
        self.assertEqual(st["delivered"], 4, st)

    def test_5_a_stopping_node_says_quit_on_held_connections(self):
        self.node = relay_node(self.hop, idle_s=120)
        self.send(1)
        self.assertEqual(relay_status(self.node)["held_connections"], 1)
        self.assertEqual(self.hop.snapshot()[1], [])
        t0 = time.monotonic()
        self.node.stop()
        self.assertFalse(self.node.alive())
        self.assertLess(time.monotonic() - t0, 5, "the node took too long to stop")
        wait_until(lambda: self.hop.snapshot()[1] == [0], timeout=5, what="the hop's end of the connection")
        conns = self.hop.snapshot()[0]
        self.assertEqual(len(conns), 1, conns)
        self.assertEqual(conns[0][-1], "QUIT", conns[0])

    def test_6_a_stopping_node_waits_for_the_answer_of_the_message_out(self):
        self.hop.data_reply_delay = 1.5
        self.node = relay_node(self.hop)
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10) as c:
            c.sendmail("alice@example.org", ["x@example.net"], b"Subject: drain\r\n\r\nbody\r\n")
        wait_until(lambda: self.hop.data_seen == 1, timeout=15, what="the data at the hop")
        t0 = time.monotonic()
        self.node.stop()  # SIGTERM while the hop still holds back its 250
        self.assertFalse(self.node.alive())
        self.assertLess(time.monotonic() - t0, 8, "the node took too long to stop")
        after = self.node.read_log().split("stopping on signal")[-1]
        self.assertRegex(after, r"queue: [0-9A-F]+: done\n")  # recorded during the stop
        self.assertEqual(self.node.queue_files(), [])
        # The same data dir again: nothing is left to send, nothing is sent twice.
        self.hop.data_reply_delay = 0
        self.node.start()
        time.sleep(1.5)
        self.assertEqual(self.hop.snapshot()[2], 1)
        self.assertEqual(self.node.queue_files(), [])

    def message_out_to_a_hop_that_holds_its_answer(self):
        """A node that waits up to 60 s at stop, with one message at a hop that holds its
        250 back 30 s. Returns the time the data arrived there."""
        self.hop.data_reply_delay = 30
        self.node = relay_node(self.hop, queue=["stop_drain_s: 60"])
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=10) as c:
            c.sendmail("alice@example.org", ["x@example.net"], b"Subject: hurry\r\n\r\nbody\r\n")
        wait_until(lambda: self.hop.data_seen == 1, timeout=15, what="the data at the hop")
        return time.monotonic()

    def test_7_a_second_sigterm_ends_the_wait_and_the_message_stays_queued(self):
        t0 = self.message_out_to_a_hop_that_holds_its_answer()
        self.node.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "stopping on signal" in self.node.read_log(), timeout=5,
                   what="the node to start stopping")
        time.sleep(0.5)  # it now waits for the hop's answer, for up to 60 s
        self.assertTrue(self.node.alive(), "the node did not wait for the message out")
        self.node.proc.send_signal(signal.SIGTERM)
        self.node.proc.wait(timeout=10)
        self.assertLess(time.monotonic() - t0, 8, "the second SIGTERM did not end the wait")
        after = self.node.read_log().split("stopping on signal")[-1]
        self.assertIn("second signal 15", after)
        self.assertNotRegex(after, r"queue: [0-9A-F]+: done\n")
        self.assertEqual(len(self.node.queue_files()), 1)
        # After the restart the message goes out again, and is done.
        self.hop.data_reply_delay = 0
        self.node.start()
        wait_until(lambda: self.node.queue_files() == [], timeout=15, what="the message sent again")
        self.assertEqual(self.hop.data_seen, 2)

    def test_8_two_sigterms_back_to_back_do_not_wait_either(self):
        t0 = self.message_out_to_a_hop_that_holds_its_answer()
        self.node.proc.send_signal(signal.SIGTERM)
        self.node.proc.send_signal(signal.SIGINT)
        self.node.proc.wait(timeout=10)
        self.assertLess(time.monotonic() - t0, 8, "the second signal was not noticed")
        # Both pending at once: the kernel delivers the lower number (SIGINT) first.
        self.assertRegex(self.node.read_log(), r"stopping on signal (2|15)\n(.*\n)*info node: second signal (2|15):")
        self.assertEqual(len(self.node.queue_files()), 1)


if __name__ == "__main__":
    unittest.main()
