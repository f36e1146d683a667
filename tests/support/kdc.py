"""A throwaway MIT Kerberos KDC on 127.0.0.1 for the GSSAPI tests (label "kdc").

Kdc(realm, principals) creates a realm database in a temp folder, adds the given
principals (name -> password, or None for a random key put into the service keytab),
starts krb5kdc on a free loopback port and writes a krb5.conf that never asks DNS
(dns_lookup_* and dns_canonicalize_hostname off: the machine's resolver is off-box).
kinit(principal) gets a ticket into that principal's own credential cache.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

from bhnode import free_port, wait_until


class Kdc:
    def __init__(self, realm, principals, hosts=("mx.example.org",)):
        self.realm = realm
        self.dir = tempfile.mkdtemp(prefix="bh-kdc-")
        self.port = free_port()
        self.conf = os.path.join(self.dir, "krb5.conf")
        self.kdc_conf = os.path.join(self.dir, "kdc.conf")
        self.keytab = os.path.join(self.dir, "service.keytab")
        domain_realm = "".join(f"  {h} = {realm}\n" for h in hosts)
        with open(self.conf, "w") as f:
            f.write(f"""[libdefaults]
  default_realm = {realm}
  dns_lookup_kdc = false
  dns_lookup_realm = false
  dns_canonicalize_hostname = false
  rdns = false
  qualify_shortname = ""
  udp_preference_limit = 1
[realms]
  {realm} = {{
    kdc = 127.0.0.1:{self.port}
  }}
[domain_realm]
{domain_realm}""")
        with open(self.kdc_conf, "w") as f:
            f.write(f"""[kdcdefaults]
  kdc_listen = 127.0.0.1:{self.port}
  kdc_tcp_listen = 127.0.0.1:{self.port}
[realms]
  {realm} = {{
    database_name = {self.dir}/principal
    key_stash_file = {self.dir}/stash
    acl_file = {self.dir}/kadm5.acl
    max_life = 1h 0m 0s
    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
  }}
[logging]
  kdc = FILE:{self.dir}/kdc.log
""")
        open(os.path.join(self.dir, "kadm5.acl"), "w").close()
        self.env = {"KRB5_CONFIG": self.conf, "KRB5_KDC_PROFILE": self.kdc_conf}
        self._run("kdb5_util", "create", "-s", "-r", realm, "-P", "masterpw-" + str(os.getpid()))
        for name, pw in principals.items():
            if pw is None:
                self._admin(f"addprinc -randkey {name}@{realm}")
                self._admin(f"ktadd -k {self.keytab} {name}@{realm}")
            else:
                self._admin(f"addprinc -pw {pw} {name}@{realm}")
        self.pidfile = os.path.join(self.dir, "kdc.pid")
        self._run("krb5kdc", "-r", realm, "-P", self.pidfile)
        wait_until(self._listening, timeout=10, what="krb5kdc on port %d" % self.port)

    def _run(self, *args, stdin=None):
        env = dict(os.environ, **self.env)
        r = subprocess.run(args, env=env, input=stdin, capture_output=True)
        if r.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {r.stdout!r} {r.stderr!r}")
        return r

    def _admin(self, query):
        self._run("kadmin.local", "-r", self.realm, "-q", query)

    def _listening(self):
        if not os.path.exists(self.pidfile) or os.path.getsize(self.pidfile) == 0:
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def export_keytab(self, principal, path):
        """A keytab with the current keys of `principal` (not re-randomized)."""
        self._admin(f"ktadd -norandkey -k {path} {principal}@{self.realm}")
        return path

    def ccache(self, principal):
        return "FILE:" + os.path.join(self.dir, "cc-" + principal.replace("/", "_"))

    def kinit(self, principal, password):
        self._run("kinit", "-c", self.ccache(principal), f"{principal}@{self.realm}",
                  stdin=(password + "\n").encode())
        return self.ccache(principal)

    def stop(self):
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
            os.kill(pid, 15)
            for _ in range(200):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.02)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def gssapi_sasl(conn, verb, service_host, ccache, authzid=b""):
    """Runs SASL GSSAPI (RFC 4752) as the client over an smtplib.SMTP connection with
    python3-gssapi; returns the final (code, text). Raises on a protocol surprise."""
    import base64
    import gssapi
    creds = gssapi.Credentials(usage="initiate", store={"ccache": ccache})
    name = gssapi.Name("smtp@" + service_host, gssapi.NameType.hostbased_service)
    ctx = gssapi.SecurityContext(name=name, creds=creds, usage="initiate")
    token = ctx.step()
    code, text = conn.docmd(verb, "GSSAPI " + base64.b64encode(token).decode())
    while code == 334 and not ctx.complete:
        token = ctx.step(base64.b64decode(text)) or b""
        code, text = conn.docmd(base64.b64encode(token).decode())
    if code != 334:
        return code, text
    # The security layer offer (RFC 4752 §3.1): we take none, with no size, and name
    # the authorization identity.
    offer = ctx.unwrap(base64.b64decode(text)).message
    if len(offer) != 4 or not offer[0] & 1:
        raise AssertionError("unexpected layer offer %r" % offer)
    answer = ctx.wrap(b"\x01\x00\x00\x00" + authzid, False).message
    return conn.docmd(base64.b64encode(answer).decode())
