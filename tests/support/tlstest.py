"""Test support for TLS: a CA and server certificates made with the openssl CLI in a temp
folder (as tests/smtp and test_starttls.py do), and small client helpers."""
import os
import shutil
import socket
import ssl
import subprocess


def _run(*a):
    subprocess.run(a, check=True, capture_output=True)


def make_ca(d):
    """Writes d/ca.pem and d/ca.key."""
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
         "/CN=bridgehead test CA", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem")


def make_leaf(d, name, cn):
    """Writes d/<name>.pem and d/<name>.key: a server certificate for `cn` (and 127.0.0.1)
    signed by the CA in d."""
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
         "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr")
    with open(f"{d}/{name}.ext", "w") as f:
        f.write(f"subjectAltName=DNS:{cn},IP:127.0.0.1\n")
    _run("openssl", "x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem", "-CAkey",
         f"{d}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{d}/{name}.ext",
         "-out", f"{d}/{name}.pem")


def install(d, name, cert="cert.pem", key="key.pem"):
    """Replaces d/cert.pem and d/key.pem with <name>'s, each by an atomic rename."""
    for src, dst in ((f"{name}.pem", cert), (f"{name}.key", key)):
        shutil.copyfile(os.path.join(d, src), os.path.join(d, dst + ".new"))
        os.replace(os.path.join(d, dst + ".new"), os.path.join(d, dst))


def tls_yaml(d, handshake_timeout_s=None):
    y = f"tls:\n  cert_file: {d}/cert.pem\n  key_file: {d}/key.pem\n"
    if handshake_timeout_s:
        y += f"  handshake_timeout_s: {handshake_timeout_s}\n"
    return y


def client_context(d):
    """Verifies the server against the test CA; TLS 1.2 or newer."""
    ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def peer_cn(tls_sock):
    for rdn in tls_sock.getpeercert()["subject"]:
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def client_hello(ctx):
    """The bytes of one ClientHello that `ctx` would send (for trickling it by hand)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="mx.example.org")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


class BioClient:
    """A TLS client over a plain socket through memory BIOs, so a test controls exactly
    which TLS records (e.g. a close_notify) and which clear-text octets go out."""

    def __init__(self, sock, ctx, server_hostname="mx.example.org"):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname)

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed")
        self.inc.write(data)

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()

    def send(self, data):
        self.obj.write(data)
        self._flush()

    def recv_line(self):
        buf = b""
        while not buf.endswith(b"\r\n"):
            try:
                buf += self.obj.read(1)
            except ssl.SSLWantReadError:
                self._fill()
        return buf

    def close_notify(self):
        """Sends our close_notify and returns without waiting for the server's."""
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        self._flush()


def closed_within(sock, seconds):
    """True if the server closes (EOF or reset) within `seconds`; data is read and dropped."""
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
