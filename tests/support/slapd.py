"""A throwaway OpenLDAP slapd on 127.0.0.1 (mdb, suffix dc=example,dc=test).

Slapd(entries_ldif) writes slapd.conf in a temp folder, starts slapd on a free loopback
port, waits until it answers and loads the LDIF as cn=admin. Passwords are readable only
for binds (access "by anonymous auth"). stop() waits for the process to exit.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

from bhnode import free_port, wait_until

SUFFIX = "dc=example,dc=test"
ADMIN = "cn=admin," + SUFFIX
ADMIN_PW = "adminpw"


class Slapd:
    def __init__(self, ldif=""):
        self.dir = tempfile.mkdtemp(prefix="bh-slapd-")
        os.mkdir(os.path.join(self.dir, "db"))
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}/"
        self.pidfile = os.path.join(self.dir, "slapd.pid")
        conf = os.path.join(self.dir, "slapd.conf")
        with open(conf, "w") as f:
            f.write(f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {self.pidfile}
modulepath /usr/lib/ldap
moduleload back_mdb
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
database mdb
maxsize 104857600
suffix "{SUFFIX}"
rootdn "{ADMIN}"
rootpw {ADMIN_PW}
directory {self.dir}/db
""")
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
        subprocess.run(["slapd", "-f", self.conf, "-h", self.uri, "-s", "0"], check=True,
                       capture_output=True)
        wait_until(self._answers, timeout=10, what="slapd on " + self.uri)

    def _answers(self):
        r = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", self.uri, "-b", "", "-s", "base",
                            "namingContexts"], capture_output=True)
        return r.returncode == 0

    def add(self, ldif):
        subprocess.run(["ldapadd", "-x", "-H", self.uri, "-D", ADMIN, "-w", ADMIN_PW],
                       input=ldif.encode(), check=True, capture_output=True)

    def kill(self):
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(500):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)

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
