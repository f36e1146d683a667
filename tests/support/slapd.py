"""A throwaway OpenLDAP slapd on 127.0.0.1 (mdb, suffix dc=example,dc=test).

Slapd(entries_ldif) writes slapd.conf in a temp folder, starts slapd on a free loopback
port, waits until it answers and loads the LDIF as cn=admin. Passwords are readable only
for binds (access "by anonymous auth"). stop() waits for the process to exit.

Options: `schemas` (extra schema files, included after inetorgperson, e.g.
deploy/ldap/bridgehead.schema), `listeners` (how many loopback ports one slapd serves,
like a DC on 389 and a GC on 3268 over one database: `uris`, `ports`), `log_stats` (run
slapd in the foreground with `-d stats` into `log_path`, so a test can read the filters
it was sent), `indexes` (extra "index" lines), `limits` (extra database lines such as
sizelimit), `global_lines` (extra lines before the database, e.g. sasl-host), `env`
(slapd's environment: KRB5_KTNAME, KRB5_CONFIG for GSSAPI), `acl` (replaces the
"access to * by * read" line). For outage tests: pause() / resume()
(SIGSTOP / SIGCONT), kill_hard() (SIGKILL), and start() again on the same ports and data.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

from bhnode import free_port, stop_process, wait_until

SUFFIX = "dc=example,dc=test"
ADMIN = "cn=admin," + SUFFIX
ADMIN_PW = "adminpw"


class Slapd:
    def __init__(self, ldif="", schemas=(), listeners=1, log_stats=False, indexes=(), limits=(),
                 tls=None, env=None, global_lines=(), acl=None):
        self.dir = tempfile.mkdtemp(prefix="bh-slapd-")
        os.mkdir(os.path.join(self.dir, "db"))
        self.ports = [free_port() for _ in range(listeners)]
        self.uris = [f"ldap://127.0.0.1:{p}/" for p in self.ports]
        # tls=(cert, key): StartTLS on the ldap:// ports, and one more port for ldaps://.
        self.ldaps_port = free_port() if tls else None
        self.ldaps_uri = f"ldaps://127.0.0.1:{self.ldaps_port}/" if tls else None
        tls_lines = (f"TLSCertificateFile {tls[0]}\nTLSCertificateKeyFile {tls[1]}\n" if tls else "")
        # e.g. "sasl-host 127.0.0.1" for GSSAPI binds; env: KRB5_KTNAME, KRB5_CONFIG.
        tls_lines += "".join(f"{l}\n" for l in global_lines)
        self.env = dict(os.environ, **(env or {}))
        acl = acl or "access to * by * read"
        self.port = self.ports[0]
        self.uri = self.uris[0]
        self.pidfile = os.path.join(self.dir, "slapd.pid")
        self.log_stats = log_stats
        self.log_path = os.path.join(self.dir, "slapd.log")
        self.proc = None
        includes = "".join(f"include {os.path.abspath(p)}\n" for p in schemas)
        # objectClass is indexed in every real deployment (Debian's default slapd config
        # does it): without it back-mdb scans the whole subtree for every search, since it
        # adds "(objectClass=referral)" to each subtree filter.
        index_lines = "index objectClass eq\n" + "".join(f"index {i}\n" for i in indexes)
        # e.g. "sizelimit size.soft=100 size.hard=100 size.prtotal=unlimited" (the rootdn
        # is never limited: bind as another entry to feel them).
        index_lines += "".join(f"{l}\n" for l in limits)
        conf = os.path.join(self.dir, "slapd.conf")
        with open(conf, "w") as f:
            f.write(f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
{includes}{tls_lines}pidfile {self.pidfile}
modulepath /usr/lib/ldap
moduleload back_mdb
access to attrs=userPassword by self write by anonymous auth by * none
{acl}
database mdb
maxsize 104857600
suffix "{SUFFIX}"
rootdn "{ADMIN}"
rootpw {ADMIN_PW}
directory {self.dir}/db
{index_lines}""")
        self.conf = conf
        self.start()
        base = f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: example
dc: example

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

"""
        self.add(base + ldif)

    def start(self):
        urls = " ".join(self.uris + ([self.ldaps_uri] if self.ldaps_uri else []))
        if self.log_stats:
            # Foreground (-d keeps it attached) so the stats log lands in our file.
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(["slapd", "-f", self.conf, "-h", urls, "-d", "stats"],
                                         stdout=log, stderr=log, env=self.env)
            log.close()
        else:
            # Right after a SIGKILL the old process may not be reaped yet and still hold
            # the port or the database lock: try again for a while, then say why.
            for _ in range(50):
                r = subprocess.run(["slapd", "-f", self.conf, "-h", urls, "-s", "0"],
                                   capture_output=True, env=self.env)
                if r.returncode == 0:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"slapd did not start on {urls}: {r.stderr.decode(errors='replace')}")
        wait_until(self._answers, timeout=10, what="slapd on " + urls)
        if self.proc is not None and self.proc.poll() is not None:
            # Something answers on our port, but it is not our slapd (it failed to bind).
            raise AssertionError(f"slapd exited ({self.proc.returncode}); another process holds {urls}")

    def pid(self):
        if self.proc is not None:
            return self.proc.pid
        with open(self.pidfile) as f:
            return int(f.read().strip())

    def pause(self):
        stop_process(self.pid())

    def resume(self):
        os.kill(self.pid(), signal.SIGCONT)

    def kill_hard(self):
        """SIGKILL, and wait until the process is gone (its ports are free again)."""
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        self._wait_gone(pid)

    def _wait_gone(self, pid):
        if self.proc is not None and self.proc.pid == pid:
            self.proc.wait(timeout=10)
            self.proc = None
            return
        for _ in range(500):
            try:
                os.kill(pid, 0)
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return  # a zombie no one reaps here: gone for our purposes
            except (ProcessLookupError, FileNotFoundError):
                return
            time.sleep(0.02)

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _answers(self):
        r = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", self.uri, "-b", "", "-s", "base",
                            "namingContexts"], capture_output=True)
        return r.returncode == 0

    def add(self, ldif):
        subprocess.run(["ldapadd", "-x", "-H", self.uri, "-D", ADMIN, "-w", ADMIN_PW],
                       input=ldif.encode(), check=True, capture_output=True)

    def kill(self):
        try:
            pid = self.pid()
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGCONT)  # a paused slapd cannot act on SIGTERM
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            if self.proc is not None:
                self.proc.wait(timeout=10)
                self.proc = None
            return
        self._wait_gone(pid)

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def person(uid, password):
    rdn = "".join("\\" + ch if ch in ',+"\\<>;=' else ch for ch in uid)
    return f"""dn: uid={rdn},ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: {uid}
cn: {uid}
sn: {uid}
userPassword: {password}

"""
