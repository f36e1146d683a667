"""bridgehead --check-config: the exact DESIGN.md §5 file passes; errors name file, line, key."""
import os
import subprocess
import tempfile
import unittest

from bhnode import BH_BIN

MINIMAL = """node:
  name: node1
  data_dir: /tmp/bh-node1          # queue, mailboxes, state
listen:
  smtp: ["127.0.0.1:2525"]
  admin: "127.0.0.1:8691"
local_domains: [example.org]
directory:
  file:
    mailboxes: [alice@example.org, bob@example.org]
"""


class CheckConfig(unittest.TestCase):
    def check(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(text)
        self.addCleanup(os.unlink, f.name)
        r = subprocess.run([BH_BIN, "--check-config", "--config", f.name], capture_output=True,
                           text=True, timeout=20)
        return r, f.name

    def test_minimal_config_of_design_is_valid(self):
        r, _ = self.check(MINIMAL)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_errors_name_file_line_and_key(self):
        cases = [
            (MINIMAL.replace("  admin:", "  admn:"), ":6: listen.admn: unknown key"),
            (MINIMAL.replace("2525", "70000"), ":5: listen.smtp[0]:"),
            (MINIMAL + "smtp:\n  max_errors: lots\n", ":12: smtp.max_errors:"),
            (MINIMAL.replace("/tmp/bh-node1", "bh-node1"), ":3: node.data_dir: must be an absolute path"),
        ]
        for text, expected in cases:
            with self.subTest(expected=expected):
                r, name = self.check(text)
                self.assertEqual(r.returncode, 2)
                self.assertIn(name + expected, r.stderr)

    def test_the_sample_config_of_every_role_is_valid(self):
        # deploy/config/: standalone, routing-group master, bridgehead (issue 7).
        folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "config")
        names = sorted(f for f in os.listdir(folder) if f.endswith(".yaml"))
        self.assertEqual(names, ["bridgehead.yaml", "master.yaml", "standalone.yaml"])
        for name in names:
            with self.subTest(name=name):
                r = subprocess.run([BH_BIN, "--check-config", "--config", os.path.join(folder, name)],
                                   capture_output=True, text=True, timeout=20)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(": ok", r.stdout)

    def test_missing_file(self):
        r = subprocess.run([BH_BIN, "--check-config", "--config", "/nonexistent.yaml"],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 2)
        self.assertIn("/nonexistent.yaml", r.stderr)


if __name__ == "__main__":
    unittest.main()
