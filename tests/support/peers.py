"""Test support: peers a bridgehead node talks to, started by the test on loopback.

  - Sink: Postfix's smtp-sink as a next hop (any 127.0.0.x address), dumping messages
    into a temp folder;
  - Dnsmasq: a dnsmasq on 127.0.0.1 with a free port, answering from command-line records;
  - dns_rcode(): one raw UDP query, to check what a server really answers.

Every process is started by the test and stopped by its own handle (kill + wait).
"""
import os
import shutil
import socket
import struct
import subprocess
import time

from bhnode import claim_port, wait_until

SINK = "/usr/sbin/smtp-sink"


def tcp_up(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Sink:
    """smtp-sink on host:port; `flags` are its fault options."""

    def __init__(self, port, base, flags=(), host="127.0.0.1"):
        self.host, self.port = host, port
        self.dump = os.path.join(base, "sink-%d" % time.monotonic_ns())
        os.makedirs(self.dump)
        os.chmod(self.dump, 0o777)
        os.chmod(base, 0o755)
        # -R chroots into the dump folder (as root, before -u drops to nobody).
        self.proc = subprocess.Popen(
            [SINK, "-u", "nobody", "-R", self.dump, "-d", "m.", *flags, "%s:%d" % (host, port), "50"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self._up(), what="smtp-sink up on %s:%d" % (host, port))

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError("smtp-sink on %s:%d exited with %s" % (self.host, self.port, self.proc.returncode))
        return tcp_up(self.host, self.port)

    def messages(self):
        out = []
        for root, _, files in os.walk(self.dump):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    out.append(fh.read())
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def free_port_on(hosts, udp=False):
    """A port free for TCP (and UDP if asked) on every one of `hosts` right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        if not claim_port(port):  # given to another test lately (bhnode.free_port)
            continue
        socks = []
        try:
            for h in hosts:
                kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
                for k in kinds:
                    t = socket.socket(socket.AF_INET, k)
                    socks.append(t)
                    t.bind((h, port))
            return port
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise AssertionError("no free port on %s" % (hosts,))


def dns_rcode(port, name, qtype=15, timeout=2.0, host="127.0.0.1"):
    """One UDP query (default type MX); the reply's RCODE, or None without a reply."""
    qid = 0xBEEF
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, (host, port))
        try:
            data = s.recv(1500)
        except socket.timeout:
            return None
    if len(data) < 12 or struct.unpack(">H", data[:2])[0] != qid:
        return None
    return data[3] & 0x0F


def find_dnsmasq():
    env = os.environ.get("BH_DNSMASQ")
    if env:
        return env
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        f = os.path.join(d, "dnsmasq")
        if os.access(f, os.X_OK):
            return f
    return shutil.which("dnsmasq")


class Dnsmasq:
    """dnsmasq on 127.0.0.1:<free port> (UDP and TCP) with `args`; its log in `log_path`.

    `probe` is a name asked once at start: any reply means it is up.
    """

    def __init__(self, args, log_path, probe="probe.test"):
        binary = find_dnsmasq()
        if not binary:
            raise AssertionError("dnsmasq not found (deploy/install-deps.sh installs dnsmasq-base)")
        self.log_path = log_path
        self.proc = None
        for _ in range(5):  # the free port may be taken meanwhile
            self.port = free_port_on(["127.0.0.1"], udp=True)
            argv = [binary, "--keep-in-foreground", "--port=%d" % self.port,
                    "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
                    "--no-poll", "--conf-file=/dev/null", "--pid-file=", "--log-queries",
                    "--log-facility=-", *args]
            with open(log_path, "ab") as log:
                self.proc = subprocess.Popen(argv, stdout=log, stderr=log)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.poll() is None:
                if dns_rcode(self.port, probe, qtype=1, timeout=0.05) is not None:
                    return
            self.stop()
        raise AssertionError("dnsmasq did not start; see " + log_path)

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


DOVECOT = "/usr/sbin/dovecot"


class Dovecot:
    """A throwaway Dovecot with only the LMTP service on 127.0.0.1:<port> and on the unix
    socket `unix_path`, run from its own
    config in `<base>/dovecot/` (never /etc/dovecot): base_dir, state_dir, log and the
    mail all live there. `users` are the addresses its passwd-file userdb knows; every
    other address gets `550 5.1.1 User doesn't exist` at RCPT. Mail for alice@example.org
    lands in `<base>/dovecot/mail/alice@example.org/Maildir/`, owned by nobody (passwd-file
    refuses uid 0). Dovecot runs as root in the foreground (-F); its master pid is ours.
    """

    def __init__(self, base, users, port=None):
        self.dir = os.path.join(base, "dovecot")
        self.mail = os.path.join(self.dir, "mail")
        self.port = port or free_port_on(["127.0.0.1"])
        for d in (self.dir, os.path.join(self.dir, "run"), os.path.join(self.dir, "state"), self.mail):
            os.makedirs(d, exist_ok=True)
        # Dovecot's auth process (user dovecot) must traverse to the passwd-file, and the
        # delivery (user nobody) to the mail folder; mkdtemp gives 0700.
        for d in (base, self.dir):
            os.chmod(d, 0o711)
        os.chown(self.mail, 65534, 65534)
        self.users_file = os.path.join(self.dir, "users")
        with open(self.users_file, "w") as f:
            for u in users:
                f.write(f"{u}:{{PLAIN}}x:65534:65534::{self.mail}/{u}::\n")
        os.chmod(self.users_file, 0o644)
        self.log_path = os.path.join(self.dir, "dovecot.log")
        self.config = os.path.join(self.dir, "dovecot.conf")
        with open(self.config, "w") as f:
            f.write(f"""protocols = lmtp
listen = 127.0.0.1
base_dir = {self.dir}/run
state_dir = {self.dir}/state
instance_name = bh-test-lmtp-{self.port}
log_path = {self.log_path}
ssl = no
first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {self.users_file}
}}
userdb {{
  driver = passwd-file
  args = {self.users_file}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.port}
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}
""")
        self.proc = None
        self.start()

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.port

    @property
    def unix_path(self):
        """The lmtp service's unix socket (in base_dir)."""
        return os.path.join(self.dir, "run", "lmtp")

    def start(self):
        with open(os.path.join(self.dir, "stdout.log"), "ab") as out:
            self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.config], stdout=out, stderr=out)
        wait_until(self._up, what="Dovecot LMTP on " + self.endpoint)
        return self

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError("dovecot exited with %s:\n%s" % (self.proc.returncode, self.read_log()))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.settimeout(2)
                return s.recv(512).startswith(b"220 ")
        except OSError:
            return False

    def stop(self):
        """Stops the master and waits for it (it waits for its children), so a new one
        can start on the same base_dir."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def messages(self, user):
        """The files in the user's Maildir/new, oldest name first."""
        d = os.path.join(self.mail, user, "Maildir", "new")
        if not os.path.isdir(d):
            return []
        out = []
        for n in sorted(os.listdir(d)):
            with open(os.path.join(d, n), "rb") as f:
                out.append(f.read())
        return out
