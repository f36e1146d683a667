"""Test support: start a real bridgehead node on loopback with a temp data_dir.

The binaries come from the environment (BH_BIN, BHCTL_BIN), set by CTest. Ports are
picked free on 127.0.0.1 at start; every wait has a deadline.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BH_BIN = os.environ.get("BH_BIN", "build/default/node/bridgehead")
BHCTL_BIN = os.environ.get("BHCTL_BIN", "build/default/admin/bhctl")


# Ports handed out by free_port() to any test of this machine in the last hour. A test
# that restarts a server on "its" port after a kill (slapd, a sink) must not find that
# a test running beside it was given the same port in between and started something
# there: the kernel hands a just-released port to the next bind(0) quite happily.
_PORTS_DIR = os.path.join(tempfile.gettempdir(), "bh-test-ports")
_PORT_TTL_S = 3600


def claim_port(port):
    os.makedirs(_PORTS_DIR, exist_ok=True)
    path = os.path.join(_PORTS_DIR, str(port))
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return True
    except FileExistsError:
        try:
            if time.time() - os.path.getmtime(path) > _PORT_TTL_S:
                os.utime(path)  # an old claim: reuse it
                return True
        except OSError:
            pass
        return False


def free_port(host="127.0.0.1"):
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if claim_port(port):
            return port
    raise AssertionError("no free port that no other test was given in the last hour")


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


def stop_process(pid):
    """SIGSTOP pid and return once every one of its threads is stopped.

    kill() only queues a process-wide SIGSTOP and wakes one thread to act on it; until
    that thread is scheduled, the others keep running. On a busy machine a paused slapd
    answered a search after kill() had returned (the CI failure of stop 15)."""
    os.kill(pid, signal.SIGSTOP)

    def all_stopped():
        task = f"/proc/{pid}/task"
        try:
            states = []
            for tid in os.listdir(task):
                with open(f"{task}/{tid}/stat") as f:
                    # "tid (comm) S ...": comm may hold spaces or parentheses.
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
        except FileNotFoundError:
            return False  # a thread exited between listdir and open: look again
        return bool(states) and all(s in ("T", "t") for s in states)

    wait_until(all_stopped, timeout=10, interval=0.005, what=f"every thread of {pid} stopped")


class Node:
    """A bridgehead process. `smtp` holds extra YAML lines under the smtp: key;
    `directory`, when given, the lines under directory: instead of the file mailboxes.
    `host` is the loopback address the node listens on (127.0.0.x, one per node in
    multi-node tests), `name` its node.name."""

    def __init__(self, mailboxes=("alice@example.org", "bob@example.org"),
                 domains=("example.org",), smtp=None, queue=None, data_dir=None, extra="",
                 listen=(), env=None, smtps=False, directory=None, host="127.0.0.1", name="node1"):
        self.host = host
        self.base = tempfile.mkdtemp(prefix="bh-it-")
        self.data_dir = data_dir or os.path.join(self.base, "node1")
        self.smtp_port = free_port(host)
        self.admin_port = free_port(host)
        # Implicit TLS (listen.smtps); the caller adds the tls: section in `extra`.
        self.smtps_port = free_port() if smtps else None
        self.config = os.path.join(self.base, "node1.yaml")
        self.log_path = os.path.join(self.base, "node1.log")
        lines = [
            "node:",
            f"  name: {name}",
            "  hostname: mx.example.org",
            f"  data_dir: {self.data_dir}",
            "listen:",
            f'  smtp: ["{host}:{self.smtp_port}"]',
            f'  admin: "{host}:{self.admin_port}"',
        ] + ["  " + l for l in listen] + [
            "local_domains: [" + ", ".join(domains) + "]",
            "directory:",
        ] + (["  " + l for l in directory] if directory is not None else [
            "  file:",
            "    mailboxes: [" + ", ".join(mailboxes) + "]",
        ])
        if smtps:
            lines.insert(lines.index("local_domains: [" + ", ".join(domains) + "]"),
                         f'  smtps: ["127.0.0.1:{self.smtps_port}"]')
        if smtp:
            lines.append("smtp:")
            lines += ["  " + l for l in smtp]
        if queue:
            lines.append("queue:")
            lines += ["  " + l for l in queue]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n" + extra)
        self.proc = None
        self.env = dict(os.environ, **(env or {}))

    # ---- process control ----
    def start(self):
        if getattr(self, "log", None):
            self.log.close()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([BH_BIN, "--config", self.config],
                                     stdout=self.log, stderr=self.log, env=self.env)
        wait_until(self._banner_ok, timeout=10, what="the SMTP banner of " + self.config)
        return self

    def _banner_ok(self):
        if self.proc.poll() is not None:
            raise AssertionError("bridgehead exited with %s:\n%s" % (self.proc.returncode, self.read_log()))
        try:
            with socket.create_connection((self.host, self.smtp_port), timeout=1) as s:
                return s.recv(512).startswith(b"220 ")
        except OSError:
            return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        self.stop()
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # ---- state on disk ----
    def maildir(self, mailbox="alice"):
        d = os.path.join(self.data_dir, "mailboxes", mailbox, "new")
        if not os.path.isdir(d):
            return []
        return sorted(os.path.join(d, n) for n in os.listdir(d))

    def wait_mail(self, mailbox="alice", count=1, timeout=10):
        return wait_until(lambda: len(self.maildir(mailbox)) >= count and self.maildir(mailbox),
                          timeout=timeout, what=f"{count} message(s) in {mailbox}")

    def queue_files(self):
        d = os.path.join(self.data_dir, "queue", "queue")
        return os.listdir(d) if os.path.isdir(d) else []

    def bhctl(self, *args, token_file=None):
        cmd = [BHCTL_BIN, "--config", self.config] + list(args)
        if token_file:
            cmd = [BHCTL_BIN, "--admin", f"{self.host}:{self.admin_port}", "--token-file", token_file] + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20)


def body_after_received(raw):
    """The message as delivered, without the Received header bridgehead prepended."""
    assert raw.startswith(b"Received: "), raw[:80]
    pos = raw.index(b"\r\n") + 2
    while raw[pos:pos + 1] == b"\t":
        pos = raw.index(b"\r\n", pos) + 2
    return raw[pos:]


class Smtp:
    """A raw SMTP client for byte-exact and hostile tests."""

    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def reply(self):
        """Reads one complete (possibly multi-line) reply; returns (code, text)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise EOFError("connection closed; got %r" % (self.buf,))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("latin-1"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def replies_until_close(self):
        """The codes of every reply until the server closes the connection."""
        codes = []
        try:
            while True:
                codes.append(self.reply()[0])
        except (EOFError, ConnectionResetError):
            pass
        return codes

    def cmd(self, line):
        self.send(line + b"\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True if the server closes the connection (reads until EOF)."""
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()

    def __del__(self):
        try:
            self.s.close()
        except Exception:
            pass
