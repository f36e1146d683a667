"""bhctl against a running node: status, queue list, queue show, --json, bad token."""
import json
import os
import socket
import time
import unittest

from bhnode import Node, Smtp, wait_until


class Admin(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # A mailbox root that is a file makes delivery fail, so mail stays queued.
        cls.node = Node(queue=["retry_initial_s: 60"]).start()
        os.makedirs(cls.node.data_dir, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()

    def test_token_file_is_private(self):
        st = os.stat(os.path.join(self.node.data_dir, "admin.token"))
        self.assertEqual(st.st_mode & 0o777, 0o600)

    def test_status_table_and_json(self):
        r = self.node.bhctl("status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("node1", r.stdout)
        self.assertIn("SECTION", r.stdout)
        j = json.loads(self.node.bhctl("--json", "status").stdout)
        self.assertEqual(j["node"]["name"], "node1")
        self.assertIn(f"127.0.0.1:{self.node.smtp_port}", j["node"]["smtp_listen"])

    def test_queue_list_and_show_a_deferred_message(self):
        # Block delivery to "bob" by putting a file where his Maildir would go.
        mb = os.path.join(self.node.data_dir, "mailboxes")
        os.makedirs(mb, exist_ok=True)
        with open(os.path.join(mb, "bob"), "w") as f:
            f.write("in the way")
        s = Smtp(self.node.smtp_port)
        s.reply()
        s.cmd(b"EHLO c")
        s.cmd(b"MAIL FROM:<s@example.net> RET=HDRS ENVID=E1")
        s.cmd(b"RCPT TO:<bob@example.org> NOTIFY=FAILURE ORCPT=rfc822;bob@example.org")
        s.cmd(b"DATA")
        code, text = s.cmd(b"Subject: q\r\n\r\nx\r\n.")
        self.assertEqual(code, 250)
        qid = text.split()[-1]
        s.cmd(b"QUIT")

        def listed():
            j = json.loads(self.node.bhctl("--json", "queue", "list").stdout)
            return [m for m in j["messages"] if m["id"] == qid and m["state"] == "retry"]
        m = wait_until(listed, timeout=10, what="the message in retry")[0]
        self.assertEqual(m["sender"], "s@example.net")
        self.assertEqual(m["recipients"], 1)
        self.assertGreaterEqual(m["attempts"], 1)
        self.assertTrue(m["last_error"])
        table = self.node.bhctl("queue", "list")
        self.assertIn(qid, table.stdout)
        self.assertIn("retry", table.stdout)
        show = json.loads(self.node.bhctl("--json", "queue", "show", qid).stdout)
        self.assertEqual(show["ret"], "HDRS")
        self.assertEqual(show["envid"], "E1")
        self.assertEqual(show["recipients"][0]["notify"], "FAILURE")
        self.assertEqual(show["recipients"][0]["orcpt"], "rfc822;bob@example.org")
        text = self.node.bhctl("queue", "show", qid)
        self.assertEqual(text.returncode, 0)
        self.assertIn("bob@example.org", text.stdout)
        missing = self.node.bhctl("queue", "show", "NOSUCHID")
        self.assertEqual(missing.returncode, 1)
        self.assertIn("no message NOSUCHID", missing.stderr)

    def test_wrong_token_is_refused(self):
        bad = os.path.join(self.node.base, "bad.token")
        with open(bad, "w") as f:
            f.write("0" * 32 + "\n")
        r = self.node.bhctl("status", token_file=bad)
        self.assertEqual(r.returncode, 1)
        self.assertIn("401", r.stderr)
        # And a raw request without any token.
        with socket.create_connection(("127.0.0.1", self.node.admin_port), timeout=5) as sk:
            sk.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIn(b"401", sk.recv(4096).split(b"\r\n")[0])

    def test_unreachable_node(self):
        r = self.node.bhctl("status", token_file=os.path.join(self.node.data_dir, "admin.token"))
        self.assertEqual(r.returncode, 0)
        import subprocess
        from bhnode import BHCTL_BIN, free_port
        r = subprocess.run([BHCTL_BIN, "--admin", f"127.0.0.1:{free_port()}", "status"],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot reach", r.stderr)


if __name__ == "__main__":
    unittest.main()
