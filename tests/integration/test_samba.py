"""The recipient lookup and the categorizer against a real Samba AD domain controller
(issue 5), with Active Directory's own schema and the node's default (AD) attribute names.

tests/support/samba_ad.py provisions a DC in a temp folder, on 127.0.0.2 (389, global
catalog 3268), with the Exchange attributes the categorizer needs added to the schema.
The node binds as Administrator to the global catalog and asks for member values in
ranges of 1000 (directory.ldap.member_range): Samba, unlike Windows, ranges only when
asked. Proves, over SMTP:
- a user found by a secondary proxyAddresses value (different case) gets 250 and the
  mail lands in the folder of the primary SMTP address; an unknown address gets 550 5.1.1;
- a contact (objectClass contact, targetAddress) is relayed to its target;
- a forward (altRecipient to the contact) is relayed, not delivered to the mailbox;
- a universal group holding a distribution group and a user: each member once;
- a group of 1,600 members, read by ranged retrieval (0-999, then 1000-*): every member
  gets exactly one copy, and `bhctl resolve` shows the ranges.
The provisioning and load times are printed (not asserted).
"""
import glob
import os
import shutil
import smtplib
import tempfile
import time
import unittest

from bhnode import Node, free_port, wait_until
from peers import Sink
from samba_ad import ADMIN, ADMIN_PW, BASE, SambaAD

USERS = "CN=Users," + BASE
N_BIG = 1600


def user(name, primary, secondaries=(), extra=()):
    lines = [f"dn: CN={name},{USERS}", "objectClass: user", f"sAMAccountName: {name}", f"mail: {primary}",
             f"proxyAddresses: SMTP:{primary}", "msExchHomeServerName: node1"]
    lines += [f"proxyAddresses: smtp:{s}" for s in secondaries]
    return "\n".join(lines + list(extra)) + "\n\n"


def group(name, address, members, group_type):
    lines = [f"dn: CN={name},{USERS}", "objectClass: group", f"sAMAccountName: {name}",
             f"groupType: {group_type}", f"mail: {address}", f"proxyAddresses: SMTP:{address}"]
    return "\n".join(lines + [f"member: {m}" for m in members]) + "\n\n"


def folder(address):
    return address.lower().replace("@", "_40")


class Samba(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t0 = time.monotonic()
        cls.dc = SambaAD()
        try:
            ldif = [user("alice", "Alice@bh.test", ["alice.second@BH.test"]), user("bob", "bob@bh.test"),
                    user("carol", "carol@bh.test"),
                    f"dn: CN=Ext Partner,{USERS}\nobjectClass: contact\nmail: partner@bh.test\n"
                    "proxyAddresses: SMTP:partner@bh.test\ntargetAddress: SMTP:pat@partner.example\n\n",
                    user("dave", "dave@bh.test", extra=[f"altRecipient: CN=Ext Partner,{USERS}"])]
            ldif += [user(f"m{i:04d}", f"m{i:04d}@bh.test") for i in range(N_BIG)]
            # groupType: 2 global distribution, 8 universal distribution (AD's flags).
            ldif.append(group("grpInner", "inner@bh.test", [f"CN=alice,{USERS}", f"CN=bob,{USERS}"], 2))
            ldif.append(group("grpOuter", "outer@bh.test", [f"CN=grpInner,{USERS}", f"CN=carol,{USERS}"], 8))
            ldif.append(group("grpBig", "big@bh.test", [f"CN=m{i:04d},{USERS}" for i in range(N_BIG)], 8))
            t1 = time.monotonic()
            cls.dc.add("".join(ldif))
            cls.load_s = time.monotonic() - t1
        except BaseException:
            cls.dc.stop()
            raise
        cls.setup_s = time.monotonic() - t0
        cls.tmp = tempfile.mkdtemp(prefix="bh-samba-it-")
        cls.sink_port = free_port()
        cls.sink = Sink(cls.sink_port, cls.tmp)
        pw = os.path.join(cls.tmp, "pw")
        with open(pw, "w") as f:
            f.write(ADMIN_PW + "\n")
        directory = ["ldap:", f'  global_catalog: ["{cls.dc.gc_uri}"]', f'  bind_dn: "{ADMIN}"',
                     f"  password_file: {pw}", f'  base_dn: "{BASE}"', "  timeout_ms: 5000",
                     "  member_range: 1000"]
        extra = ("routing:\n  smtp_connectors:\n    - name: partner\n"
                 f'      smart_hosts: ["127.0.0.1:{cls.sink_port}"]\n'
                 '      address_spaces: [{pattern: "partner.example", cost: 1}]\n      tls: none\n')
        cls.node = Node(domains=("bh.test",), directory=directory, extra=extra,
                        queue=["retry_initial_s: 1", "retry_max_s: 2"])
        cls.node.start()
        print(f"\n  samba: provisioned in {cls.dc.provision_s:.1f} s, ready with the Exchange attributes after "
              f"{cls.dc.ready_s:.1f} s, {N_BIG + 6} entries loaded in {cls.load_s:.1f} s "
              f"(set-up {cls.setup_s:.1f} s)")

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.node.cleanup()
        cls.sink.stop()
        cls.dc.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def send(self, rcpts, subject):
        body = f"Subject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\nhello\r\n"
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=30) as s:
            self.assertEqual(s.sendmail("someone@elsewhere.example", rcpts, body), {})

    def copies(self, address, subject):
        n = 0
        for p in self.node.maildir(folder(address)):
            with open(p, "rb") as f:
                n += f.read().count(f"Subject: {subject}\r\n".encode())
        return n

    def relayed(self, subject):
        return sum(m.count(f"Subject: {subject}".encode()) for m in self.sink.messages())

    def test_secondary_address_lands_in_the_primary_folder_and_unknown_is_550(self):
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            s.mail("someone@elsewhere.example")
            self.assertEqual(s.rcpt("Alice.Second@bh.test")[0], 250)
            code, text = s.rcpt("nobody@bh.test")
            self.assertEqual(code, 550)
            self.assertIn(b"5.1.1", text)
            s.rset()
        self.send(["Alice.Second@bh.test"], "secondary")
        wait_until(lambda: self.copies("alice@bh.test", "secondary") == 1, timeout=20, what="alice's copy")

    def test_contact_and_forward_are_relayed(self):
        self.send(["partner@bh.test"], "contact")
        self.send(["dave@bh.test"], "forward")
        wait_until(lambda: self.relayed("contact") == 1 and self.relayed("forward") == 1, timeout=30,
                   what="both relayed to pat@partner.example")
        self.assertEqual(self.copies("dave@bh.test", "forward"), 0)

    def test_nested_groups_each_member_once(self):
        self.send(["outer@bh.test", "bob@bh.test"], "nested")
        wait_until(lambda: all(self.copies(a, "nested") == 1 for a in ("alice@bh.test", "bob@bh.test",
                                                                       "carol@bh.test")),
                   timeout=30, what="alice, bob and carol")
        wait_until(lambda: not self.node.queue_files(), timeout=20, what="queue empty")
        self.assertEqual(self.copies("bob@bh.test", "nested"), 1)

    def test_big_group_by_ranged_retrieval(self):
        r = self.node.bhctl("resolve", "big@bh.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("member values 0-999, asking for the next range", r.stdout)
        self.assertIn(f"{N_BIG} recipient(s)", r.stdout)
        t0 = time.monotonic()
        self.send(["big@bh.test"], "big")
        wait_until(lambda: len(glob.glob(os.path.join(self.node.data_dir, "mailboxes", "m*_40bh.test", "new",
                                                      "*"))) >= N_BIG, timeout=120, what=f"{N_BIG} copies")
        print(f"\n  {N_BIG}-member group through Samba delivered in {time.monotonic() - t0:.1f} s")
        wait_until(lambda: not self.node.queue_files(), timeout=30, what="queue empty")
        self.assertEqual(sum(self.copies(f"m{i:04d}@bh.test", "big") for i in range(N_BIG)), N_BIG)


if __name__ == "__main__":
    unittest.main()
