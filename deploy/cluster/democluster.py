#!/usr/bin/env python3
"""The demo cluster: one definition of its topology and files, shared by
deploy/demo-cluster.sh (fixed loopback addresses, through the command line below) and
tests/integration/test_cluster.py (free ports, through the Python API).

The topology is read from deploy/ldap/sample-organization.ldif itself, so the node
configs always match what the directory says: routing groups and their masters
(bhRoutingGroup), servers (bhServer), routing-group and SMTP connectors with their
costs, source and target bridgeheads and address spaces (bhConnector), and the
recipients (users with bhHomeServer, nested groups). The LDIF loaded into slapd is that
file with each server's bhSmtpAddress / bhLinkStateAddress rewritten to where the node
really listens (the same text for the demo's fixed addresses).

Cluster(dir, layout).generate() writes, under `dir`:
    pki/ca.pem, pki/ca.key          the cluster CA (openssl CLI)
    pki/<node>.pem, pki/<node>.key  per node: CN and SAN DNS = node id, SAN IP = its address
    sasldb2, cluster.pw             the node-to-node login (user `cluster`, realm example.test)
    ldap.pw                         the nodes' bind password (cn=bridgehead,ou=services,...)
    slapd/slapd.conf, slapd/*.ldif  a throwaway slapd (mdb) and what it is loaded with
    <node>.yaml                     each node's config; its data_dir is <dir>/<node>/
    nodes.tsv                       one line per node: id, config, SMTP host, SMTP port, log

Command line (the demo's helper; BHCTL is the bhctl binary, from $BHCTL_BIN):
    democluster.py generate DIR                 the demo layout's files (127.0.0.10-16)
    democluster.py check-ports                  exit 1 naming every demo address in use
    democluster.py start-slapd DIR              start slapd (pid file DIR/slapd.pid), load it
    democluster.py wait-converged DIR [SECS]    every node's `bhctl --json lsdb` digest equal
    democluster.py wait-delivery DIR ADDRESS MESSAGE-ID [SECS]
                                                each final recipient of ADDRESS has the
                                                message in its Maildir on its home node
"""
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
LDAP_DIR = os.path.join(ROOT, "deploy", "ldap")
SAMPLE_LDIF = os.path.join(LDAP_DIR, "sample-organization.ldif")
SCHEMA = os.path.join(LDAP_DIR, "bridgehead.schema")

SUFFIX = "dc=example,dc=test"
PEOPLE = "ou=people," + SUFFIX
CONFIG_DN = "ou=config," + SUFFIX
ADMIN_DN = "cn=admin," + SUFFIX
SERVICE_DN = "cn=bridgehead,ou=services," + SUFFIX  # what the nodes bind as
DOMAIN = "example.test"
REALM = DOMAIN              # auth.realm of every node; the sasldb realm
CLUSTER_USER = "cluster"    # the node-to-node login (auth.peer_servers)
ORGANIZATION = "example"    # link_state.organization

# Demo timings: quick enough to watch, slow enough not to flap on a loaded machine.
DEMO_TIMINGS = {"keepalive_ms": 1000, "dead_after_ms": 4000, "hold_down_ms": 2000,
                "reconnect_min_ms": 250, "reconnect_max_ms": 2000, "probe_ms": 2000}
DEMO_QUEUE = {"retry_initial_s": 2, "retry_max_s": 10, "glitch_retries": 1, "glitch_interval_s": 1}


# ---------------------------------------------------------------- the LDIF ----

def parse_ldif(text):
    """[(dn, {attribute lower-cased: [values]})] in file order. Comments and folded
    lines (RFC 2849) are handled; base64 values (`attr::`) are not used by the sample."""
    entries, cur, last = [], None, None
    lines = text.splitlines()
    for raw in lines + [""]:
        if raw.startswith("#"):
            continue
        if raw.startswith(" ") and cur is not None and last is not None:
            vals = cur[1][last]
            vals[-1] += raw[1:]
            continue
        if not raw.strip():
            if cur is not None:
                entries.append(cur)
            cur, last = None, None
            continue
        key, _, value = raw.partition(":")
        value = value.strip()
        key = key.strip().lower()
        if key == "dn":
            cur, last = (value, {}), None
            continue
        if cur is None:
            continue
        cur[1].setdefault(key, []).append(value)
        last = key
    return entries


def _classes(attrs):
    return {c.lower() for c in attrs.get("objectclass", [])}


def _one(attrs, key, default=None):
    v = attrs.get(key.lower())
    return v[0] if v else default


def maildir_folder(address):
    """The Maildir folder of an LDAP mailbox (docs/configuration.md, directory.ldap):
    the primary address lower-cased, every byte other than letters, digits, '.' and '-'
    as _XX."""
    out = []
    for b in address.lower().encode():
        c = chr(b)
        out.append(c if (c.isascii() and (c.isalnum() or c in ".-")) else "_%02x" % b)
    return "".join(out)


class Topology:
    """What sample-organization.ldif says about the organization."""

    def __init__(self, text):
        self.text = text
        self.entries = parse_ldif(text)
        self.groups = {}      # routing group -> [server ids] (ldif order)
        self.masters = {}     # routing group -> configured master
        self.servers = {}     # id -> {group, smtp, link_state}
        self.connectors = []  # {id, source_group, target_group, cost, sources, targets, address_spaces}
        self.by_dn = {}
        for dn, a in self.entries:
            self.by_dn[dn.lower()] = a
            cls = _classes(a)
            if "bhroutinggroup" in cls:
                g = _one(a, "cn")
                self.groups.setdefault(g, [])
                if _one(a, "bhMaster"):
                    self.masters[g] = _one(a, "bhMaster")
        for dn, a in self.entries:
            cls = _classes(a)
            if "bhserver" in cls:
                sid, g = _one(a, "cn"), _one(a, "bhRoutingGroupName")
                self.groups.setdefault(g, []).append(sid)
                self.servers[sid] = {"group": g, "smtp": _one(a, "bhSmtpAddress"),
                                     "link_state": _one(a, "bhLinkStateAddress")}
            elif "bhconnector" in cls:
                spaces = []
                for s in a.get("bhaddressspace", []):
                    pattern, _, cost = s.partition(";")
                    spaces.append((pattern, int(cost or 1)))
                self.connectors.append({
                    "id": _one(a, "cn"), "source_group": _one(a, "bhRoutingGroupName"),
                    "target_group": _one(a, "bhTargetGroup"), "cost": int(_one(a, "bhCost", "1")),
                    "sources": a.get("bhsourcebridgehead", []), "targets": a.get("bhtargetbridgehead", []),
                    "address_spaces": spaces})

    @classmethod
    def sample(cls):
        with open(SAMPLE_LDIF) as f:
            return cls(f.read())

    def nodes(self):
        return [n for ids in self.groups.values() for n in ids]

    def group_of(self, node):
        return self.servers[node]["group"]

    def connector(self, cid):
        return next(c for c in self.connectors if c["id"] == cid)

    # ---- recipients ----
    def _entry_for_address(self, address):
        want = address.lower()
        for dn, a in self.entries:
            for p in a.get("proxyaddresses", []):
                if p.lower() == "smtp:" + want:
                    return dn, a
            if want in (m.lower() for m in a.get("mail", [])):
                return dn, a
        raise KeyError(address)

    @staticmethod
    def primary(a):
        for p in a.get("proxyaddresses", []):
            if p.startswith("SMTP:"):
                return p[5:].lower()
        return _one(a, "mail", "").lower()

    def mailboxes(self, address):
        """The final local mailboxes of an address, as {primary address: home server}:
        nested groups expanded (each member once), forwards and contacts left out (they
        leave the organization)."""
        out, seen = {}, set()

        def walk(dn, a):
            if dn.lower() in seen:
                return
            seen.add(dn.lower())
            if {"groupofnames", "group", "groupofuniquenames"} & _classes(a):
                for m in a.get("member", []):
                    if m.lower() in self.by_dn:
                        walk(m, self.by_dn[m.lower()])
                return
            if _one(a, "bhHomeServer"):
                out[self.primary(a)] = _one(a, "bhHomeServer")

        walk(*self._entry_for_address(address))
        return out

    def home_of(self, address):
        return self.mailboxes(address)[address.lower()]

    def rewritten(self, smtp, link_state):
        """The LDIF text with each bhServer's bhSmtpAddress / bhLinkStateAddress replaced
        by smtp[id] / link_state[id] ("IP:port")."""
        blocks = re.split(r"\n\s*\n", self.text)
        out = []
        for b in blocks:
            m = re.search(r"^dn: cn=([^,]+),cn=[^,]+,ou=config,", b, re.M)
            if m and re.search(r"^objectClass: bhServer$", b, re.M | re.I):
                sid = m.group(1)
                b = re.sub(r"^bhSmtpAddress: .*$", f"bhSmtpAddress: {smtp[sid]}", b, flags=re.M)
                b = re.sub(r"^bhLinkStateAddress: .*$", f"bhLinkStateAddress: {link_state[sid]}", b, flags=re.M)
            out.append(b)
        return "\n\n".join(out).rstrip("\n") + "\n"


# ---------------------------------------------------------------- addresses ----

class Layout:
    """Where every listener of the cluster is: per node an IP and its SMTP, link-state
    and admin ports; the slapd's IP and its domain-controller and global-catalog ports."""

    def __init__(self, hosts, smtp, link_state, admin, ldap_host, dc_port, gc_port):
        self.hosts, self.smtp, self.link_state, self.admin = hosts, smtp, link_state, admin
        self.ldap_host, self.dc_port, self.gc_port = ldap_host, dc_port, gc_port

    @classmethod
    def demo(cls, topology):
        """The demo's fixed addresses: those of the LDIF (127.0.0.11-16, SMTP 2525, link
        state 6910), admin 8691 on each node's IP, slapd on 127.0.0.10:3389 and :3268."""
        hosts, smtp, ls, admin = {}, {}, {}, {}
        for n, s in topology.servers.items():
            h, p = s["smtp"].rsplit(":", 1)
            hosts[n], smtp[n] = h, int(p)
            ls[n] = int(s["link_state"].rsplit(":", 1)[1])
            admin[n] = 8691
        return cls(hosts, smtp, ls, admin, "127.0.0.10", 3389, 3268)

    def smtp_address(self, n):
        return f"{self.hosts[n]}:{self.smtp[n]}"

    def ls_address(self, n):
        return f"{self.hosts[n]}:{self.link_state[n]}"

    def admin_address(self, n):
        return f"{self.hosts[n]}:{self.admin[n]}"

    def dc_uri(self):
        return f"ldap://{self.ldap_host}:{self.dc_port}/"

    def gc_uri(self):
        return f"ldap://{self.ldap_host}:{self.gc_port}/"

    def listeners(self):
        """[(what, ip, port)] of every listener the cluster will open."""
        out = [("slapd (domain controller)", self.ldap_host, self.dc_port),
               ("slapd (global catalog)", self.ldap_host, self.gc_port)]
        for n in self.hosts:
            out += [(f"{n} SMTP", self.hosts[n], self.smtp[n]),
                    (f"{n} link state", self.hosts[n], self.link_state[n]),
                    (f"{n} admin", self.hosts[n], self.admin[n])]
        return out


def in_use(ip, port):
    """True if something listens on ip:port (or the address cannot be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return True
    return False


# ---------------------------------------------------------------- the files ----

def _run(*argv, stdin=None):
    r = subprocess.run(argv, input=stdin, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): "
                           f"{r.stderr.decode(errors='replace').strip()}")
    return r


def _write(path, text, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)


class Cluster:
    """The files and processes of one cluster in `dir`. Nodes are started by the caller
    (the demo script, or the test with its own Popen objects): node_argv() and the paths
    say how."""

    def __init__(self, dir, layout=None, topology=None, timings=None, queue=None, days=30,
                 node_timings=None, routing=None):
        """`timings`: link_state keys over DEMO_TIMINGS; `node_timings`: per node id, more
        link_state keys for that node only (a test that needs one node slower); `routing`:
        more routing keys for every node (e.g. connection_idle_s)."""
        self.dir = os.path.abspath(dir)
        self.topology = topology or Topology.sample()
        self.layout = layout or Layout.demo(self.topology)
        self.timings = dict(DEMO_TIMINGS, **(timings or {}))
        self.queue = dict(DEMO_QUEUE, **(queue or {}))
        self.node_timings = node_timings or {}
        self.routing = routing or {}
        self.days = days
        self.pki = os.path.join(self.dir, "pki")
        self.slapd_dir = os.path.join(self.dir, "slapd")

    # ---- paths ----
    def config(self, n):
        return os.path.join(self.dir, f"{n}.yaml")

    def data_dir(self, n):
        return os.path.join(self.dir, n)

    def log(self, n):
        return os.path.join(self.dir, f"{n}.log")

    def pid_file(self, n):
        return os.path.join(self.dir, f"{n}.pid")

    def slapd_pid_file(self):
        return os.path.join(self.dir, "slapd.pid")

    def maildir(self, node, address):
        return os.path.join(self.data_dir(node), "mailboxes", maildir_folder(address), "new")

    def tracking_log(self, n):
        return os.path.join(self.data_dir(n), "log", "tracking.jsonl")

    def nodes(self):
        return self.topology.nodes()

    # ---- generation ----
    def generate(self):
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.pki, exist_ok=True)
        os.makedirs(self.slapd_dir, exist_ok=True)
        self.make_pki()
        self.make_secrets()
        self.write_slapd()
        for n in self.nodes():
            _write(self.config(n), self.node_yaml(n))
        with open(os.path.join(self.dir, "nodes.tsv"), "w") as f:
            for n in self.nodes():
                f.write("\t".join([n, self.config(n), self.layout.hosts[n], str(self.layout.smtp[n]),
                                   self.log(n)]) + "\n")
        return self

    def make_pki(self):
        p = self.pki
        _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(self.days),
             "-subj", "/CN=bridgehead demo cluster CA", "-keyout", f"{p}/ca.key", "-out", f"{p}/ca.pem")
        os.chmod(f"{p}/ca.key", 0o600)
        for n in self.nodes():
            _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={n}",
                 "-keyout", f"{p}/{n}.key", "-out", f"{p}/{n}.csr")
            os.chmod(f"{p}/{n}.key", 0o600)
            _write(f"{p}/{n}.ext", f"subjectAltName=DNS:{n},IP:{self.layout.hosts[n]}\n"
                                   "basicConstraints=CA:FALSE\n"
                                   "keyUsage=digitalSignature,keyEncipherment\n"
                                   "extendedKeyUsage=serverAuth,clientAuth\n")
            _run("openssl", "x509", "-req", "-in", f"{p}/{n}.csr", "-CA", f"{p}/ca.pem", "-CAkey",
                 f"{p}/ca.key", "-CAcreateserial", "-days", str(self.days), "-extfile", f"{p}/{n}.ext",
                 "-out", f"{p}/{n}.pem")
            os.remove(f"{p}/{n}.csr")
            os.remove(f"{p}/{n}.ext")

    def make_secrets(self):
        self.cluster_password = secrets.token_urlsafe(18)
        self.ldap_password = secrets.token_urlsafe(18)
        self.admin_password = secrets.token_urlsafe(18)
        _write(os.path.join(self.dir, "cluster.pw"), self.cluster_password + "\n", 0o600)
        _write(os.path.join(self.dir, "ldap.pw"), self.ldap_password + "\n", 0o600)
        # ldapadd -y takes the whole file as the password: no newline.
        _write(os.path.join(self.slapd_dir, "admin.pw"), self.admin_password, 0o600)
        sasldb = os.path.join(self.dir, "sasldb2")
        if os.path.exists(sasldb):
            os.remove(sasldb)
        _run("saslpasswd2", "-p", "-c", "-f", sasldb, "-u", REALM, CLUSTER_USER,
             stdin=self.cluster_password.encode())
        os.chmod(sasldb, 0o600)

    def write_slapd(self):
        d = self.slapd_dir
        os.makedirs(os.path.join(d, "db"), exist_ok=True)
        _write(os.path.join(d, "slapd.conf"), f"""# The demo cluster's throwaway directory (deploy/cluster/democluster.py).
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {SCHEMA}
pidfile {self.slapd_pid_file()}
modulepath /usr/lib/ldap
moduleload back_mdb
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
database mdb
maxsize 104857600
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {self.admin_password}
directory {d}/db
index objectClass eq
index proxyAddresses eq
index mail eq
""", 0o600)
        _write(os.path.join(d, "base.ldif"), f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: example
dc: example

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=services,{SUFFIX}
objectClass: organizationalUnit
ou: services

dn: {SERVICE_DN}
objectClass: simpleSecurityObject
objectClass: organizationalRole
cn: bridgehead
description: the bridgehead nodes bind as this entry
userPassword: {self.ldap_password}
""", 0o600)
        smtp = {n: self.layout.smtp_address(n) for n in self.nodes()}
        ls = {n: self.layout.ls_address(n) for n in self.nodes()}
        _write(os.path.join(d, "organization.ldif"), self.topology.rewritten(smtp, ls))

    def node_yaml(self, n):
        t, L, d = self.topology, self.layout, self.dir
        lines = [
            "# bridgehead demo cluster node (deploy/cluster/democluster.py); docs/configuration.md",
            "node:",
            f"  name: {n}",
            f"  data_dir: {self.data_dir(n)}",
            "  workers: 1",
            "listen:",
            f'  smtp: ["{L.smtp_address(n)}"]',
            f'  admin: "{L.admin_address(n)}"',
            f"local_domains: [{DOMAIN}]",
            "directory:",
            "  ldap:",
            f'    global_catalog: ["{L.gc_uri()}"]',
            f'    bind_dn: "{SERVICE_DN}"',
            f"    password_file: {d}/ldap.pw",
            f'    base_dn: "{PEOPLE}"',
            "    timeout_ms: 3000",
            "    positive_ttl_s: 30",
            "    negative_ttl_s: 5",
            "    attributes:",
            "      home_server: bhHomeServer",
            "    configuration:",
            f'      domain_controller: ["{L.dc_uri()}"]',
            f'      config_dn: "{CONFIG_DN}"',
            "      poll_interval_s: 10",
            "tls:",
            f"  cert_file: {self.pki}/{n}.pem",
            f"  key_file: {self.pki}/{n}.key",
            "auth:",
            "  mechanisms: [LOGIN]",
            f"  sasldb: {d}/sasldb2",
            f"  realm: {REALM}",
            f"  peer_servers: [{CLUSTER_USER}]",
            "  failure_delay_ms: 200",
            "queue:",
        ] + [f"  {k}: {v}" for k, v in self.queue.items()] + [
            "link_state:",
            f"  organization: {ORGANIZATION}",
            f"  routing_group: {t.group_of(n)}",
            f'  listen: "{L.ls_address(n)}"',
            "  tls:",
            f"    ca_file: {self.pki}/ca.pem",
            f"    cert_file: {self.pki}/{n}.pem",
            f"    key_file: {self.pki}/{n}.key",
        ] + [f"  {k}: {v}" for k, v in dict(self.timings, **self.node_timings.get(n, {})).items()] + [
            "  nodes:"]
        for g, ids in t.groups.items():
            for i in ids:
                item = f'id: {i}, routing_group: {g}, address: "{L.ls_address(i)}", smtp: "{L.smtp_address(i)}"'
                if t.masters.get(g) == i:
                    item += ", master: true"
                lines.append(f"    - {{{item}}}")
        lines.append("  connectors:")
        for c in t.connectors:
            item = f"id: {c['id']}, source_group: {c['source_group']}"
            if c["target_group"]:
                item += f", target_group: {c['target_group']}"
            item += f", cost: {c['cost']}"
            if c["sources"]:
                item += f", source_bridgeheads: [{', '.join(c['sources'])}]"
            if c["targets"]:
                item += f", target_bridgeheads: [{', '.join(c['targets'])}]"
            if c["address_spaces"]:
                item += ", address_spaces: [" + ", ".join(
                    f'{{pattern: "{p}", cost: {cost}}}' for p, cost in c["address_spaces"]) + "]"
            lines.append(f"    - {{{item}}}")
        lines += [
            "  relay:                         # node-to-node relay: X-EXPS LOGIN as the cluster user",
            f"    auth_username: {CLUSTER_USER}",
            f"    auth_password_file: {d}/cluster.pw",
            "    auth_mechanism: LOGIN",
            "    tls: required",
            "    tls_verify: true              # the other node's certificate, against the cluster CA",
            "routing:",
            f"  tls_ca_file: {self.pki}/ca.pem",
        ] + [f"  {k}: {v}" for k, v in self.routing.items()]
        return "\n".join(lines) + "\n"

    # ---- slapd ----
    def slapd_urls(self):
        return f"{self.layout.dc_uri()} {self.layout.gc_uri()}"

    def slapd_answers(self, uri=None):
        r = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", uri or self.layout.gc_uri(), "-b", "",
                            "-s", "base", "namingContexts"], capture_output=True)
        return r.returncode == 0

    def start_slapd(self, timeout=20):
        """Starts slapd (it detaches; its pid is in slapd_pid_file()) and loads base.ldif
        and organization.ldif into an empty database. Returns the pid."""
        conf = os.path.join(self.slapd_dir, "slapd.conf")
        r = subprocess.run(["slapd", "-f", conf, "-h", self.slapd_urls(), "-s", "0"], capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"slapd did not start on {self.slapd_urls()}: "
                               f"{r.stderr.decode(errors='replace').strip()}")
        deadline = time.monotonic() + timeout
        while not (self.slapd_answers(self.layout.gc_uri()) and self.slapd_answers(self.layout.dc_uri())):
            if time.monotonic() > deadline:
                raise RuntimeError(f"slapd does not answer on {self.slapd_urls()} after {timeout} s")
            time.sleep(0.1)
        for f in ("base.ldif", "organization.ldif"):
            _run("ldapadd", "-x", "-H", self.layout.dc_uri(), "-D", ADMIN_DN, "-y",
                 os.path.join(self.slapd_dir, "admin.pw"), "-f", os.path.join(self.slapd_dir, f))
        return self.slapd_pid()

    def slapd_pid(self):
        try:
            with open(self.slapd_pid_file()) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop_slapd(self, timeout=15):
        pid = self.slapd_pid()
        if pid is not None:
            stop_pid(pid, timeout)
        try:
            os.remove(self.slapd_pid_file())
        except OSError:
            pass

    # ---- nodes ----
    def node_argv(self, n, bridgehead):
        return [bridgehead, "--config", self.config(n)]

    def bhctl(self, n, *args, bhctl=None, timeout=20):
        return subprocess.run([bhctl or os.environ.get("BHCTL_BIN", "bhctl"), "--config", self.config(n)]
                              + list(args), capture_output=True, text=True, timeout=timeout)

    def view(self, n, what, bhctl=None):
        r = self.bhctl(n, "--json", what, bhctl=bhctl)
        if r.returncode != 0:
            raise RuntimeError(f"bhctl {what} on {n}: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def digests(self, nodes=None, bhctl=None):
        out = {}
        for n in nodes or self.nodes():
            try:
                out[n] = self.view(n, "lsdb", bhctl=bhctl)["digest"]
            except (RuntimeError, ValueError, KeyError, subprocess.TimeoutExpired):
                out[n] = None
        return out

    def converged(self, nodes=None, bhctl=None):
        """The common digest when every node in `nodes` has the same table, with every
        routing group of the topology in it; else None."""
        nodes = nodes or self.nodes()
        d = self.digests(nodes, bhctl)
        if None in d.values() or len(set(d.values())) != 1:
            return None
        try:
            groups = {g["name"] for g in self.view(nodes[0], "lsdb", bhctl=bhctl)["groups"]}
        except (RuntimeError, ValueError, KeyError):
            return None
        return next(iter(d.values())) if groups >= set(self.topology.groups) else None

    def delivered(self, address, needle):
        """{mailbox: [files holding `needle`]} for each final mailbox of `address`, in the
        Maildir on its home node."""
        return {mbox: files_holding(self.maildir(home, mbox), needle)
                for mbox, home in self.topology.mailboxes(address).items()}

    def find_anywhere(self, needle):
        """Every Maildir file on any node that holds `needle`."""
        out = []
        for n in self.nodes():
            base = os.path.join(self.data_dir(n), "mailboxes")
            for folder in sorted(os.listdir(base)) if os.path.isdir(base) else []:
                out += files_holding(os.path.join(base, folder, "new"), needle)
        return out


def files_holding(folder, needle):
    """The files of `folder` (sorted; none when it does not exist) whose bytes hold `needle`."""
    found = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        p = os.path.join(folder, name)
        try:
            with open(p, "rb") as f:
                if needle.encode() in f.read():
                    found.append(p)
        except OSError:
            pass
    return found


def received_path(raw):
    """The `by` host of each Received field of a message, oldest first: its hop list."""
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    hops = []
    for line in reversed(head.split(b"\r\n")):
        if line.lower().startswith(b"received:"):
            words = line.decode(errors="replace").split()
            hops.append(words[words.index("by") + 1] if "by" in words else "?")
    return hops


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_pid(pid, timeout=15):
    """SIGTERM, then SIGKILL after `timeout` seconds; returns once the process is gone."""
    try:
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 5
        time.sleep(0.05)


# ---------------------------------------------------------------- command line ----

def _wait(pred, timeout, interval=0.25):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd, args = argv[0], argv[1:]
    if cmd == "check-ports":
        busy = [(w, ip, p) for w, ip, p in Layout.demo(Topology.sample()).listeners() if in_use(ip, p)]
        for w, ip, p in busy:
            print(f"  {ip}:{p} ({w}) is in use", file=sys.stderr)
        return 1 if busy else 0
    c = Cluster(args[0])
    if cmd == "generate":
        c.generate()
        return 0
    if cmd == "start-slapd":
        try:
            c.start_slapd()
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
        return 0
    if cmd == "wait-converged":
        timeout = float(args[1]) if len(args) > 1 else 60
        digest = _wait(c.converged, timeout, 0.5)
        if not digest:
            print("link state did not converge; digests per node:", file=sys.stderr)
            for n, d in c.digests().items():
                print(f"  {n}: {d}", file=sys.stderr)
            return 1
        print(digest)
        return 0
    if cmd == "wait-delivery":
        address, needle = args[1], args[2]
        timeout = float(args[3]) if len(args) > 3 else 60
        ok = _wait(lambda: all(c.delivered(address, needle).values()), timeout, 0.25)
        got = c.delivered(address, needle)
        for mbox, files in got.items():
            home = c.topology.mailboxes(address)[mbox]
            if not files:
                print(f"  {mbox:<20} on {home}: NOT THERE (yet): {c.maildir(home, mbox)}")
            for p in files:
                with open(p, "rb") as f:
                    path = " > ".join(received_path(f.read()))
                print(f"  {mbox:<20} on {home}: {p}\n  {'':<20}    via {path}")
        if not ok:
            elsewhere = [p for p in c.find_anywhere(needle) if p not in
                         {f for files in got.values() for f in files}]
            for p in elsewhere:
                print(f"  found instead: {p}")
        return 0 if ok else 1
    print(f"unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
