"""A throwaway Samba Active Directory domain controller on loopback (../shared
samba-ad-recipe.md): provisioned into a temp folder, LDAP only (one process), on
127.0.0.2 so it cannot collide with anything on 127.0.0.1; Samba's LDAP ports cannot be
moved (389 DC, 3268 global catalog).

SambaAD() provisions realm BH.TEST (base DC=bh,DC=test), starts samba with simple binds
allowed over plain LDAP ("ldap server require strong auth = no") and schema updates on,
and adds the Exchange attributes the categorizer reads, which Samba's base schema lacks
(targetAddress, altRecipient, deliverAndRedirect, msExchHomeServerName), to the
Mail-Recipient auxiliary class, as Exchange's schema preparation does. add(ldif) loads
entries as Administrator; stop() ends samba and removes the folder.
"""
import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

from bhnode import wait_until

REALM = "BH.TEST"
BASE = "DC=bh,DC=test"
ADMIN = "Administrator@BH.TEST"
ADMIN_PW = "Passw0rd!Test"
HOST = "127.0.0.2"

# Exchange's published schema values for the four attributes (name, attributeID,
# attributeSyntax, oMSyntax, single-valued, schemaIDGUID, extra).
EXCHANGE_ATTRIBUTES = [
    ("ms-Exch-Target-Address", "targetAddress", "1.2.840.113556.1.2.352", "2.5.5.12", 64, True,
     "f0f8ff9f-1191-11d0-a060-00aa006c33ed", {"rangeLower": 1, "rangeUpper": 1123, "searchFlags": 1}),
    ("ms-Exch-Alt-Recipient", "altRecipient", "1.2.840.113556.1.2.126", "2.5.5.1", 127, True,
     "bf96791e-0de6-11d0-a285-00aa003049e2", {"linkID": 12}),
    ("ms-Exch-Alt-Recipient-BL", "altRecipientBL", "1.2.840.113556.1.2.294", "2.5.5.1", 127, False,
     "bf96791f-0de6-11d0-a285-00aa003049e2", {"linkID": 13, "systemFlags": 1}),
    ("ms-Exch-Deliver-And-Redirect", "deliverAndRedirect", "1.2.840.113556.1.2.190", "2.5.5.8", 1, True,
     "bf96794d-0de6-11d0-a285-00aa003049e2", {}),
    ("ms-Exch-Home-Server-Name", "msExchHomeServerName", "1.2.840.113556.1.4.7000.102.47", "2.5.5.12", 64,
     True, "a284f30e-b093-11d2-aa06-00c04f8eedd8", {"searchFlags": 1}),
]
# The oMObjectClass of DN-valued attributes (2.5.5.1), base64 of its BER bytes.
DN_OM_OBJECT_CLASS = base64.b64encode(bytes([0x2b, 0x0c, 0x02, 0x87, 0x73, 0x1c, 0x00, 0x85, 0x4a])).decode()


def _exchange_schema_ldif():
    schema = "CN=Schema,CN=Configuration," + BASE
    parts = []
    for cn, name, oid, syntax, om, single, guid, extra in EXCHANGE_ATTRIBUTES:
        lines = [f"dn: CN={cn},{schema}", "changetype: add", "objectClass: top", "objectClass: attributeSchema",
                 f"cn: {cn}", f"lDAPDisplayName: {name}", f"attributeID: {oid}", f"attributeSyntax: {syntax}",
                 f"oMSyntax: {om}", f"isSingleValued: {'TRUE' if single else 'FALSE'}",
                 "schemaIDGUID:: " + base64.b64encode(uuid.UUID(guid).bytes_le).decode(),
                 "showInAdvancedViewOnly: TRUE", "isMemberOfPartialAttributeSet: TRUE"]
        if om == 127:
            lines.append(f"oMObjectClass:: {DN_OM_OBJECT_CLASS}")
        lines += [f"{k}: {v}" for k, v in extra.items()]
        parts.append("\n".join(lines))
    parts.append("dn:\nchangetype: modify\nadd: schemaUpdateNow\nschemaUpdateNow: 1\n-")
    parts.append("\n".join([f"dn: CN=Mail-Recipient,{schema}", "changetype: modify", "add: mayContain"] +
                           [f"mayContain: {a[1]}" for a in EXCHANGE_ATTRIBUTES if a[1] != "altRecipientBL"]) + "\n-")
    parts.append("dn:\nchangetype: modify\nadd: schemaUpdateNow\nschemaUpdateNow: 1\n-")
    return "\n\n".join(parts) + "\n"


def _answers(uri):
    r = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", uri, "-s", "base", "-b", "", "dn"],
                       capture_output=True)
    return r.returncode == 0


def _port_free(host, port):
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class SambaAD:
    def __init__(self):
        for port in (389, 3268):
            if not _port_free(HOST, port):
                raise RuntimeError(f"{HOST}:{port} is taken (another Samba?)")
        self.root = tempfile.mkdtemp(prefix="bh-samba-")
        self.dir = os.path.join(self.root, "dc")
        self.dc_uri = f"ldap://{HOST}:389/"
        self.gc_uri = f"ldap://{HOST}:3268/"
        t0 = time.monotonic()
        subprocess.run(
            ["samba-tool", "domain", "provision", "-s", "/dev/null", f"--targetdir={self.dir}",
             f"--realm={REALM}", "--domain=BH", "--server-role=dc", "--dns-backend=NONE", "--use-rfc2307",
             f"--adminpass={ADMIN_PW}", "--host-name=dc1",
             f"--option=interfaces={HOST}/8", "--option=bind interfaces only=yes",
             f"--option=pid directory={self.dir}/run", f"--option=ncalrpc dir={self.dir}/run/ncalrpc",
             f"--option=winbindd socket directory={self.dir}/run/winbindd",
             f"--option=ntp signd socket directory={self.dir}/run/ntp_signd",
             f"--option=log file={self.dir}/log/samba.log", "--option=ldb:nosync=true"],
            check=True, capture_output=True)
        os.makedirs(os.path.join(self.dir, "run"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "log"), exist_ok=True)
        self.provision_s = time.monotonic() - t0
        self.out = open(os.path.join(self.root, "samba.out"), "wb")
        self.proc = subprocess.Popen(
            ["samba", "-s", f"{self.dir}/etc/smb.conf", "-i", "-l", f"{self.dir}/log", "-M", "single",
             "--option=server services=ldap", "--option=ldap server require strong auth=no",
             "--option=dsdb:schema update allowed=true"],
            stdout=self.out, stderr=self.out)
        try:
            wait_until(lambda: self._alive() and _answers(self.dc_uri) and _answers(self.gc_uri), timeout=60,
                       what="samba answering on 389 and 3268")
            self.modify(_exchange_schema_ldif())
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.monotonic() - t0

    def _alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"samba exited with {self.proc.returncode}")
        return True

    def _ldap(self, tool, ldif):
        r = subprocess.run([tool, "-x", "-H", self.dc_uri, "-D", ADMIN, "-w", ADMIN_PW],
                           input=ldif.encode(), capture_output=True)
        if r.returncode != 0:
            raise AssertionError(f"{tool} failed: {r.stderr.decode(errors='replace')[-2000:]}")

    def add(self, ldif):
        self._ldap("ldapadd", ldif)

    def modify(self, ldif):
        self._ldap("ldapmodify", ldif)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # samba exits 127 on SIGTERM: normal
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        shutil.rmtree(self.root, ignore_errors=True)
