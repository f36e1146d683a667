"""The .deb (issue 7 deploy/): `cpack -G DEB` over this build, then the package is read
with dpkg-deb, never installed on the machine. Proves:
- it holds the binaries, the systemd unit, the LDAP schema and sample data, the sample
  configs, the plug-in ABI header and the docs, under /usr;
- its control data: name, Depends found by dpkg-shlibdeps (libldap, libsasl2, libssl,
  libprotobuf ...) plus adduser, and a postinst that makes the service user;
- the unit runs unprivileged with only CAP_NET_BIND_SERVICE, NoNewPrivileges and
  ProtectSystem=strict, with its state under /var/lib/bridgehead;
- the packaged bridgehead, extracted to a temp folder, validates every sample config.
"""
import glob
import os
import shutil
import subprocess
import tempfile
import unittest

BUILD = os.environ.get("BH_BUILD_DIR", "build/default")


class Package(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bh-deb-")
        r = subprocess.run(["cpack", "-G", "DEB", "-B", cls.tmp], cwd=BUILD, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        debs = glob.glob(os.path.join(cls.tmp, "*.deb"))
        assert len(debs) == 1, debs
        cls.deb = debs[0]
        cls.root = os.path.join(cls.tmp, "root")
        subprocess.run(["dpkg-deb", "-x", cls.deb, cls.root], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_contents(self):
        listing = subprocess.run(["dpkg-deb", "-c", self.deb], capture_output=True, text=True, check=True).stdout
        for path in ("./usr/sbin/bridgehead", "./usr/bin/bhctl", "./usr/lib/systemd/system/bridgehead.service",
                     "./usr/share/bridgehead/ldap/bridgehead.schema",
                     "./usr/share/bridgehead/ldap/sample-organization.ldif",
                     "./usr/share/bridgehead/config/standalone.yaml", "./usr/share/bridgehead/config/master.yaml",
                     "./usr/share/bridgehead/config/bridgehead.yaml", "./usr/include/bridgehead/plugin_abi.h",
                     "./usr/share/doc/bridgehead/docs/configuration.md"):
            self.assertIn(path, listing)

    def test_control(self):
        info = subprocess.run(["dpkg-deb", "-I", self.deb], capture_output=True, text=True, check=True).stdout
        self.assertIn("Package: bridgehead", info)
        depends = [l for l in info.splitlines() if l.strip().startswith("Depends:")][0]
        for lib in ("libldap", "libsasl2", "libssl", "libprotobuf", "adduser"):
            self.assertIn(lib, depends)
        postinst = subprocess.run(["dpkg-deb", "-I", self.deb, "postinst"], capture_output=True, text=True,
                                  check=True).stdout
        self.assertIn("adduser --system --group", postinst)

    def test_unit_is_locked_down(self):
        with open(os.path.join(self.root, "usr/lib/systemd/system/bridgehead.service")) as f:
            unit = dict(l.split("=", 1) for l in f.read().splitlines() if "=" in l and not l.startswith("#"))
        self.assertEqual(unit["User"], "bridgehead")
        self.assertEqual(unit["AmbientCapabilities"], "CAP_NET_BIND_SERVICE")
        self.assertEqual(unit["CapabilityBoundingSet"], "CAP_NET_BIND_SERVICE")
        self.assertEqual(unit["NoNewPrivileges"], "yes")
        self.assertEqual(unit["ProtectSystem"], "strict")
        self.assertEqual(unit["StateDirectory"], "bridgehead")
        self.assertIn("/usr/sbin/bridgehead", unit["ExecStart"])

    def test_the_packaged_binary_validates_the_samples(self):
        binary = os.path.join(self.root, "usr/sbin/bridgehead")
        samples = glob.glob(os.path.join(self.root, "usr/share/bridgehead/config/*.yaml"))
        self.assertTrue(samples)
        for s in samples:
            r = subprocess.run([binary, "--check-config", "--config", s], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, s + ": " + r.stderr)


if __name__ == "__main__":
    unittest.main()
