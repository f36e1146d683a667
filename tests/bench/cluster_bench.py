"""Mail end to end across two routing groups (issue 7), on the demo topology
(deploy/cluster/democluster.py: 3 routing groups x 2 nodes, slapd, a cluster CA):

    client -> node1 (rg1) -> node2 (rg1's bridgehead) -> node4 (rg2's bridgehead,
    dave's home) -> Maildir

Every node spools with fsync (group commit) before its 250; between the nodes STARTTLS
with the cluster CA, X-EXPS LOGIN, XEXCH50 and, across the groups, X-LINK2STATE. The
baseline row is the same client straight to node4 (one node, one hop).

    PYTHONPATH=tests/support BH_BIN=build/release/node/bridgehead \\
      BHCTL_BIN=build/release/admin/bhctl python3 tests/bench/cluster_bench.py [MESSAGES] [CONNECTIONS]

BH_BENCH_CONNECTION_IDLE_S sets routing.connection_idle_s on every node (0: a new
connection between the nodes for each message, as before connection reuse).

MESSAGES (default 1000) are sent over CONNECTIONS (default 8) SMTP connections at once,
each a sequence of transactions. "accepted" is when the last 250 came back; "delivered"
when the last copy is in dave's Maildir on node4. Latency: from the client's DATA to the
file in Maildir (its mtime), per message. Prints one table.
"""
import os
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
sys.path.insert(0, os.path.join(ROOT, "deploy", "cluster"))
import bhnode  # noqa: E402
import democluster  # noqa: E402

MESSAGES = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
CONNECTIONS = int(sys.argv[2]) if len(sys.argv) > 2 else 8
RCPT = "dave@example.test"
SENDER = "alice@example.test"
BODY = "x" * 2000  # about the size of a short business message


def layout(topology):
    hosts = {n: f"127.0.0.{150 + i}" for i, n in enumerate(topology.nodes(), 1)}
    fp = bhnode.free_port
    return democluster.Layout(hosts, {n: fp(h) for n, h in hosts.items()},
                              {n: fp(h) for n, h in hosts.items()}, {n: fp(h) for n, h in hosts.items()},
                              "127.0.0.150", fp("127.0.0.150"), fp("127.0.0.150"))


def banner(host, port):
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            return s.recv(512).startswith(b"220 ")
    except OSError:
        return False


def run(c, entry, label):
    """Sends MESSAGES to dave through node `entry`; returns the table row."""
    host, port = c.layout.hosts[entry], c.layout.smtp[entry]
    box = c.maildir(c.topology.home_of(RCPT), RCPT)
    before = set(os.listdir(box)) if os.path.isdir(box) else set()
    sent_at = {}
    errors = []
    tag = f"{label}-{time.time_ns()}"

    def client(k):
        try:
            with smtplib.SMTP(host, port, timeout=60) as s:
                s.ehlo("bench.example")
                for i in range(k, MESSAGES, CONNECTIONS):
                    token = f"{tag}-{i}"
                    sent_at[token] = time.time()
                    s.sendmail(SENDER, [RCPT], f"Subject: {token}\r\nX-Bench: {token}\r\n\r\n{BODY}\r\n")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    t0 = time.time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = time.time() - t0
    if errors:
        raise SystemExit(f"{label}: client errors: {errors[:3]}")
    deadline = time.time() + 600
    while True:
        fresh = set(os.listdir(box)) - before if os.path.isdir(box) else set()
        if len(fresh) >= MESSAGES:
            break
        if time.time() > deadline:
            raise SystemExit(f"{label}: only {len(fresh)} of {MESSAGES} delivered after 600 s")
        time.sleep(0.05)
    delivered = max(os.stat(os.path.join(box, f)).st_mtime for f in fresh) - t0
    lat = []
    for f in fresh:
        p = os.path.join(box, f)
        with open(p, "rb") as fh:
            head = fh.read(8192)
        at = head.find(b"X-Bench: ")
        token = head[at + 9:head.find(b"\r\n", at)].decode() if at >= 0 else ""
        if token in sent_at:
            lat.append((os.stat(p).st_mtime - sent_at[token]) * 1000)
    if len(fresh) != MESSAGES or len(lat) != MESSAGES:
        raise SystemExit(f"{label}: {len(fresh)} copies, {len(lat)} matched, for {MESSAGES} messages")
    lat.sort()
    return [label, MESSAGES, CONNECTIONS, f"{accepted:.2f}", f"{delivered:.2f}",
            f"{MESSAGES / delivered:.0f}", f"{statistics.median(lat):.0f}",
            f"{lat[int(len(lat) * 0.95) - 1]:.0f}", f"{lat[-1]:.0f}"]


def main():
    tmp = tempfile.mkdtemp(prefix="bh-cluster-bench-")
    topology = democluster.Topology.sample()
    idle = os.environ.get("BH_BENCH_CONNECTION_IDLE_S")
    c = democluster.Cluster(tmp, layout(topology), topology, days=2,
                            queue={"retry_initial_s": 1, "retry_max_s": 2},
                            routing={"connection_idle_s": int(idle)} if idle else None)
    procs = []
    try:
        c.generate()
        c.start_slapd()
        for n in c.nodes():
            log = open(c.log(n), "ab")
            procs.append(subprocess.Popen([bhnode.BH_BIN, "--config", c.config(n)], stdout=log, stderr=log))
        for n in c.nodes():
            bhnode.wait_until(lambda n=n: banner(c.layout.hosts[n], c.layout.smtp[n]), timeout=30,
                              what=f"{n}'s banner")
        bhnode.wait_until(lambda: c.converged(bhctl=bhnode.BHCTL_BIN), timeout=60, what="link state")
        home = topology.home_of(RCPT)
        entry = "node1"
        rows = [run(c, home, f"{home} alone (1 node)"),
                run(c, entry, f"{entry} -> node2 -> {home} (2 routing groups)")]
        head = ["path", "messages", "connections", "accepted s", "delivered s", "msg/s end to end",
                "p50 ms", "p95 ms", "max ms"]
        widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
        print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in rows:
            print("| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        c.stop_slapd()
        if os.environ.get("BH_KEEP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
