"""Test support for link state (issue 6): a cluster of bridgehead nodes, each on its own
127.0.0.x with free ports, one cluster CA (tests/support/tlstest.py) and a certificate per
node whose CN and SAN are its id, and the link_state YAML every node shares.

    c = Cluster({"RG-A": ["a1", "a2"], "RG-B": ["b1", "b2"]},
                connectors=[("A-B", "RG-A", "RG-B", 10, ["a1"])],  # sources optional
                masters={"RG-A": "a1"})
    c.start()            # every node
    c.lsdb("a1")         # bhctl --json lsdb
    c.wait_converged()   # one digest everywhere
"""
import json
import os
import shutil
import socket
import ssl
import struct
import tempfile
import time

import bhnode
import tlstest

_next_host = [20]


def _host():
    """A loopback address of its own for the next node (127.0.0.20 upwards)."""
    _next_host[0] += 1
    if _next_host[0] > 250:
        _next_host[0] = 21
    return f"127.0.0.{_next_host[0]}"


class Cluster:
    def __init__(self, groups, connectors=(), masters=None, keepalive_ms=200, dead_after_ms=1000,
                 hold_down_ms=0, reconnect_min_ms=200, reconnect_max_ms=1000, organization="test-org",
                 raw_connectors=(), node_kw=None, link_state_lines=()):
        """`raw_connectors`: more link_state.connectors items as YAML flow mappings;
        `node_kw`: per node id, more keyword arguments for bhnode.Node (its `extra` YAML
        goes before the link_state section)."""
        self.dir = tempfile.mkdtemp(prefix="bh-ls-")
        tlstest.make_ca(self.dir)
        self.groups = groups
        self.masters = masters or {}
        self.hosts, self.ports, self.group_of = {}, {}, {}
        for g, ids in groups.items():
            for i in ids:
                self.hosts[i] = _host()
                self.ports[i] = bhnode.free_port(self.hosts[i])
                self.group_of[i] = g
                tlstest.make_leaf(self.dir, i, i)
        nodes = []
        for g, ids in groups.items():
            for i in ids:
                m = ", master: true" if self.masters.get(g) == i else ""
                nodes.append(f'    - {{id: {i}, routing_group: {g}, address: "{self.address(i)}"{m}}}')
        conns = []
        for c in connectors:
            cid, src, dst, cost = c[:4]
            sources = f", source_bridgeheads: [{', '.join(c[4])}]" if len(c) > 4 else ""
            conns.append(f"    - {{id: {cid}, source_group: {src}, target_group: {dst}, cost: {cost}{sources}}}")
        conns += [f"    - {r}" for r in raw_connectors]
        self.common = "\n".join(
            [f"  organization: {organization}", f"  keepalive_ms: {keepalive_ms}",
             f"  dead_after_ms: {dead_after_ms}", f"  hold_down_ms: {hold_down_ms}",
             f"  reconnect_min_ms: {reconnect_min_ms}", f"  reconnect_max_ms: {reconnect_max_ms}"] +
            ["  " + l for l in link_state_lines] + ["  nodes:"] + nodes + (["  connectors:"] + conns if conns else []))
        self.nodes = {}
        for i in self.hosts:
            kw = dict((node_kw or {}).get(i, {}))
            extra = kw.pop("extra", "") + "\n".join([
                "link_state:",
                f"  routing_group: {self.group_of[i]}",
                f'  listen: "{self.address(i)}"',
                "  tls:",
                f"    ca_file: {self.dir}/ca.pem",
                f"    cert_file: {self.dir}/{i}.pem",
                f"    key_file: {self.dir}/{i}.key",
                self.common, ""])
            self.nodes[i] = bhnode.Node(host=self.hosts[i], name=i, extra=extra, **kw)

    def address(self, node_id):
        return f"{self.hosts[node_id]}:{self.ports[node_id]}"

    def start(self, ids=None):
        for i in ids or self.nodes:
            self.nodes[i].start()
        return self

    def cleanup(self):
        for n in self.nodes.values():
            n.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)

    def running(self):
        return [i for i, n in self.nodes.items() if n.alive()]

    def view(self, node_id, what):
        r = self.nodes[node_id].bhctl("--json", what)
        if r.returncode != 0:
            raise AssertionError(f"bhctl {what} on {node_id}: {r.stderr}")
        return json.loads(r.stdout)

    def lsdb(self, node_id):
        return self.view(node_id, "lsdb")

    def peers(self, node_id):
        return self.view(node_id, "peers")

    def routes(self, node_id):
        return self.view(node_id, "routes")

    def digests(self, ids=None):
        return {i: self.lsdb(i)["digest"] for i in ids or self.running()}

    def wait_converged(self, ids=None, timeout=20, pred=None):
        """Every node in `ids` (default: the running ones) has the same digest and, when
        given, pred(lsdb) holds on each; returns the digest."""
        def ok():
            views = {i: self.lsdb(i) for i in ids or self.running()}
            if len({v["digest"] for v in views.values()}) != 1:
                return None
            if pred and not all(pred(v) for v in views.values()):
                return None
            return next(iter(views.values()))["digest"]
        return bhnode.wait_until(ok, timeout=timeout, interval=0.1, what="link-state convergence")


def group_entry(lsdb, name):
    for g in lsdb["groups"]:
        if g["name"] == name:
            return g
    raise KeyError(name)


# ---- a hand-made 691 peer (proto/linkstate.proto encoded by hand: no protobuf module) ----

def _varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb_varint(field, n):
    return _varint(field << 3) + _varint(n)


def pb_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def frame(sequence, body_field, body, protocol=1):
    """One 691 frame: 4-octet big-endian length, then LsFrame."""
    msg = pb_varint(1, protocol) + pb_varint(2, sequence) + pb_bytes(body_field, body)
    return struct.pack(">I", len(msg)) + msg


def hello(node, organization, group, role=1):
    return (pb_varint(1, 1) + pb_bytes(2, node) + pb_bytes(3, organization) + pb_bytes(4, group) +
            pb_varint(5, role))


HELLO, DIGEST, ORG_INFO, STATE_CHANGE, KEEPALIVE = 10, 11, 12, 13, 14


def client_context(ca_file, cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.load_verify_locations(ca_file)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def connect_691(address, ctx, timeout=5):
    host, port = address.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=timeout)
    return ctx.wrap_socket(raw)


def read_until_closed(sock, timeout=5):
    """Everything the peer sends until it closes; (bytes, closed)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return data, True
    except socket.timeout:
        return data, False
