"""A full queue file system (hostile-inputs #60) on a small tmpfs mounted by the test:
below the free-space floor MAIL gets 452 4.3.1; a disk that fills during DATA gets
452 4.3.1 after the dot, no partial file and no 250; mail flows again once there is room."""
import os
import shutil
import subprocess
import tempfile
import unittest

from bhnode import Node, Smtp


def mount_tmpfs(path, size):
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True, text=True)
    return r.returncode == 0, r.stderr.strip()


class FullDisk(unittest.TestCase):
    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="bh-tmpfs-")
        ok, err = mount_tmpfs(self.mnt, "3m")
        if not ok:
            os.rmdir(self.mnt)
            self.skipTest("cannot mount a tmpfs here (needs root): " + err)
        self.addCleanup(self.unmount)

    def unmount(self):
        subprocess.run(["umount", "-l", self.mnt], check=False)
        shutil.rmtree(self.mnt, ignore_errors=True)

    def send(self, node, size):
        s = Smtp(node.smtp_port)
        s.reply()
        s.cmd(b"EHLO c")
        code, text = s.cmd(b"MAIL FROM:<s@example.net>")
        if code != 250:
            return code, text
        s.cmd(b"RCPT TO:<alice@example.org>")
        s.cmd(b"DATA")
        s.send((b"y" * 998 + b"\r\n") * (size // 1000) + b".\r\n")
        return s.reply()

    def test_below_floor_is_452_at_mail(self):
        node = Node(data_dir=os.path.join(self.mnt, "node1"), queue=["free_space_floor_mb: 8"]).start()
        self.addCleanup(node.cleanup)
        code, text = self.send(node, 1000)
        self.assertEqual(code, 452)
        self.assertIn("4.3.1", text)

    def test_disk_fills_during_data(self):
        node = Node(data_dir=os.path.join(self.mnt, "node1"), queue=["free_space_floor_mb: 0"]).start()
        self.addCleanup(node.cleanup)
        filler = os.path.join(self.mnt, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError:
            pass
        os.close(fd)
        os.truncate(filler, os.path.getsize(filler) - 200 * 1024)  # leave ~200 KiB
        code, text = self.send(node, 1024 * 1024)
        self.assertIn(code, (451, 452), text)
        self.assertTrue("4.3.1" in text or "4.3.0" in text, text)
        self.assertEqual(os.listdir(os.path.join(node.data_dir, "queue", "tmp")), [])
        self.assertEqual(node.queue_files(), [])
        self.assertTrue(node.alive())
        os.unlink(filler)
        code, text = self.send(node, 10000)
        self.assertEqual(code, 250, text)
        node.wait_mail("alice", 1)


if __name__ == "__main__":
    unittest.main()
