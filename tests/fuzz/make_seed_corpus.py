#!/usr/bin/env python3
"""Writes the seed corpora from the SMTP scenario files (tests/smtp/scenarios) and a few
hand-made queue envelopes. Crashes found later are added to the corpus folders as files
of their own; this script only (re)creates the seeds named seed-*."""
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SCN = os.path.join(HERE, "..", "smtp", "scenarios")


def unescape(s):
    def rep(m):
        n, unit = int(m.group(1)), m.group(2)
        return unit * min(n, 2000)
    s = re.sub(r"\{(\d+)\*([^{}]*)\}", rep, s)
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n == "x":
                out.append(int(s[i + 2:i + 4], 16))
                i += 4
                continue
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0"}.get(n, n.encode())
            i += 2
            continue
        out += c.encode("utf-8")
        i += 1
    return bytes(out)


def scenarios():
    for name in sorted(os.listdir(SCN)):
        writes = []
        for line in open(os.path.join(SCN, name), encoding="utf-8"):
            line = line.rstrip("\n")
            if line == "---":
                if writes:
                    yield writes
                writes = []
            elif line.startswith("in: ") or line.startswith("pregreet: "):
                writes.append(unescape(line.split(": ", 1)[1]))
        if writes:
            yield writes


def write(folder, idx, data):
    d = os.path.join(HERE, "corpus", folder)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"seed-{idx:03d}"), "wb") as f:
        f.write(data)


def record(t, payload):
    return bytes([t]) + struct.pack(">I", len(payload)) + payload


def s32(b):
    return struct.pack(">I", len(b)) + b


def main():
    for i, writes in enumerate(scenarios()):
        write("smtp_command_parser", i, bytes([i % 256]) + b"".join(writes)[:20000])
        for w in writes:
            if b"\r\n.\r\n" in w or w.endswith(b".\r\n"):
                write("smtp_data_reader", i, w[:20000])
                break
    rcpt = s32(b"alice@example.org") + s32(b"rfc822;alice@example.org") + s32(b"alice") + b"\x0c"
    env = (record(1, b"ID1") + record(2, b"s@example.net") + record(3, rcpt) + record(4, b"\x02") +
           record(5, b"\x01") + record(6, b"ENV") + record(7, b"\x00") + record(8, b"\0" * 8) +
           record(9, b"\0" * 7 + b"\x10") + record(10, b"192.0.2.1") + record(11, b"c") +
           record(12, b"ESMTP") + record(13, b"\0" * 8) + record(0xFF, b""))
    for i, data in enumerate([env, env[:-5], env + env, record(3, b"\xff" * 9) + record(0xFF, b""),
                              record(2, b"a\r\nb") + record(0xFF, b"")]):
        write("queue_file", i, data)
    hops = [
        b"Received: from a by b; Tue, 14 Nov 2023 22:13:20 +0000\r\nSubject: x\r\n\r\nbody\r\n",
        b"Received: from a\r\n by b\r\n\tReceived: folded\r\nRECEIVED  : c\r\n\r\nReceived: body\r\n",
        b"Received: a\nReceived: b\n\nReceived: body\n",
        b"Received-SPF: pass\r\nX-Received: y\r\nReceive: z\r\n\rReceived: junk\r\n\r\n",
        b"".join(b"Received: hop %d\r\n" % i for i in range(40)) + b"\r\n",
        b"Subject: " + b"a" * 5000 + b"\r\nReceived: late\r\n\r\n",
        b"",
    ]
    for i, data in enumerate(hops):
        write("queue_hop_count", i, data)
    verb_seeds()
    linkstate_seeds()


def b64(raw):
    import base64
    return base64.b64encode(raw)


def verb_seeds():
    """Seeds for the Exchange verbs and ETRN, from hostile-inputs #21-26 and #57."""
    # common_base64: the raw text after AUTH / CHUNK=.
    for i, data in enumerate([b"", b"Zg==", b"Zm8=", b"Zm9vYmFy", b"AHVzZXIAcGFzcw==", b"====",
                              b"AAA", b"Zh==", b"Zm9v\r\n", b"{FFFFFFFF}", b"A" * 600,
                              b"dGVzdA...", b"\x00\xff=="]):
        write("common_base64", i, data)
    # smtp_xexch50: knob octet, the argument up to LF, then the blob.
    be = lambda n: struct.pack(">I", n)
    blob = be(5) + b"props" + be(2) + b"r1" + be(0)
    for i, data in enumerate([
            b"\x01" + b"2 2\n",                                   # 21: the MS03-046 probe
            b"\x01" + b"-1 2\n" + b"A" * 64,                      # 22: negative length
            b"\x01" + b"33554432 2\n",                            # 22: heap spray size
            b"\x01" + b"18446744073709551617 2\n",
            b"\x03" + b"%d 3\n" % len(blob) + blob,
            b"\x05" + b"8 2\n" + be(0xFFFFFFFF) + b"abc",         # 26: a length never trusted
            b"\xf5" + b"12 3\n" + be(0) * 1000,                   # 26: a claim of many entries
            b"\x00" + b"2336 3\n" + be(4) + b"ab",               # 26: truncated frame
            b"\x01" + b"GSSAPI\n",                                # 25: the wrong verb's argument
    ]):
        write("smtp_xexch50", i, data)
    # smtp_link2state: knob octet, then arguments separated by LF.
    first = b"FIRST CHUNK=" + b64(b"digest-of-the-table")
    for i, data in enumerate([
            b"\x00" + b"CHUNK=" + b"A" * 600,                      # 23: MS05-021, no FIRST
            b"\x01" + b"CHUNK=" + b"A" * 600 + b"\nCHUNK=" + b"A" * 900,
            b"\x00" + b"CHUNK={FFFFFFFF} MULTI (5) ({00000000051}",  # 24
            b"\x07" + first + b"\nNEXT CHUNK=" + b64(b"x" * 700) + b"\nLAST CHUNK=" + b64(b"end"),
            b"\x02" + first + b"\nNEXT CHUNK={0000006d} MULTI (5)\nLAST CHUNK=Zg==",
            b"\x06" + first + b"\nFIRST CHUNK=Zg==\nNEXT CHUNK=\nLAST CHUNK=",
            b"\x04" + b"NEXT CHUNK=Zg==\nLAST CHUNK=Zg==\nfirst chunk=Zg==\nlast chunk=Zm8=",
            b"\x05" + b"GSSAPI\nCHUNK=" + b64(b"lone"),             # 25 + a lone chunk
            b"\x06" + b"FIRST CHUNK=" + b"A" * 1100,                # over the line budget
    ]):
        write("smtp_link2state", i, data)
    # smtp_etrn: knob octet, then the argument.
    for i, data in enumerate([b"\x00", b"\x00ext.example", b"\xf1@our.domain", b"\x13#mx:internet:ext.example",
                              b"\x00@", b"\x00#", b"\x00Our.Domain.", b"\x00[127.0.0.1]",
                              b"\x00a..b", b"\x00 @sub.example.org  ", b"\xff" + b"@our.domain" * 8,
                              b"\x00#q\r\nX"]):
        write("smtp_etrn", i, data)
    # sinks_milter_reply: knob octet (feed size), then milter packets.
    def mp(cmd, data=b""):
        return struct.pack(">I", len(data) + 1) + cmd + data
    optneg = mp(b"O", struct.pack(">III", 6, 0x1ff, 0))
    for i, data in enumerate([
            b"\x00" + optneg + mp(b"c") + mp(b"c"),
            b"\x03" + mp(b"i", struct.pack(">I", 0) + b"DKIM-Signature\0v=1; a=rsa-sha256;\n\tb=abc\0") + mp(b"a"),
            b"\x07" + mp(b"h", b"X-Spam\0yes\0") + mp(b"m", struct.pack(">I", 1) + b"Subject\0\0") + mp(b"c"),
            b"\x01" + mp(b"y", b"554 5.7.1 Rejected\0") + mp(b"y", b"451 later\0") + mp(b"y", b"250 ok\0"),
            b"\x00" + mp(b"b", b"new body\r\n") + mp(b"+", b"<x@y>\0") + mp(b"-", b"<x@y>\0") + mp(b"q", b"spam\0"),
            b"\x00" + mp(b"h", b"X\0a\r\nInjected: 1\0") + mp(b"h", b"X A\0b\0"),
            b"\x02" + struct.pack(">I", 0) + b"x",
            b"\x02" + struct.pack(">I", 0xffffffff) + b"O",
            b"\x05" + mp(b"p") * 5 + mp(b"t") + mp(b"d") + mp(b"r") + mp(b"s") + mp(b"f") + mp(b"4"),
            b"\x00" + mp(b"2", b"<a@b>\0ORCPT=x\0") + mp(b"e", b"<s@t>\0") + mp(b"l", struct.pack(">I", 2) + b"{x}\0"),
    ]):
        write("sinks_milter_reply", i, data)


def pb_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb(field, value):
    """One protobuf field: an int is a varint, bytes/str are length-delimited."""
    if isinstance(value, int):
        return pb_varint(field << 3) + pb_varint(value)
    if isinstance(value, str):
        value = value.encode()
    return pb_varint(field << 3 | 2) + pb_varint(len(value)) + value


def ls_frame(seq, body_field, body, protocol=1):
    msg = pb(1, protocol) + pb(2, seq) + pb(body_field, body)
    return struct.pack(">I", len(msg)) + msg


def linkstate_seeds():
    """Seeds for the 691 frame fuzz target (proto/linkstate.proto), hostile-inputs #26:
    knob octet, then what a member sends to its master."""
    hello = pb(1, 1) + pb(2, "x") + pb(3, "org") + pb(4, "A") + pb(5, 1)
    digest = pb(1, b"\x00" * 32)
    conn = (pb(1, "ab") + pb(2, "B") + pb(3, 10) + pb(4, pb(1, "x") + pb(2, 1)) +
            pb(6, pb(1, "*.example.com") + pb(2, 5)) + pb(7, 1700000000000))
    group = pb(1, "A") + pb(2, "x") + pb(3, "x") + pb(4, pb(1, 2) + pb(2, 1)) + pb(5, conn)
    org = pb(1, "org") + pb(2, group) + pb(3, b"\x11" * 32)
    change = pb(1, "A") + pb(2, "ab") + pb(3, "x") + pb(4, 0)
    many = pb(1, "org") + b"".join(pb(2, pb(1, "g%d" % i)) for i in range(3000))
    h = ls_frame(1, 10, hello)
    for i, data in enumerate([
            b"\x01" + h,
            b"\x01" + h + ls_frame(2, 11, digest) + ls_frame(3, 14, b""),
            b"\x03" + h + ls_frame(2, 12, org),                    # digest mismatch
            b"\x01" + h + ls_frame(2, 13, change) + ls_frame(3, 13, change),
            b"\x01" + h + ls_frame(1, 13, change),                  # replayed sequence
            b"\x01" + h + ls_frame(2, 13, pb(1, "A") + pb(2, "ab") + pb(3, "m")),  # other node
            b"\x01" + b"\xff\xff\xff\xff" + b"A" * 64,                 # 4 GiB claimed
            b"\x00" + h[:-3],                                        # truncated
            b"\x01" + ls_frame(1, 10, hello, protocol=2),            # another version
            b"\x01" + struct.pack(">I", 3) + b"\xff\xff\xff",          # not protobuf
            b"\x03" + h + ls_frame(2, 12, many),                   # 3000 groups claimed
            b"\xf1" + h + ls_frame(2, 11, digest),                   # one octet at a time
    ]):
        write("linkstate_frame", i, data)
    # linkstate_link2state: knob octet, then an LsLink2State payload (digest or table).
    table = pb(1, 1) + pb(2, "org") + pb(11, org)
    for i, data in enumerate([
            b"\x05" + pb(1, 1) + pb(2, "org") + pb(10, digest),
            b"\x07" + table,                                         # digest mismatch
            b"\x03" + pb(1, 1) + pb(2, "org") + pb(11, pb(1, "org") + pb(3, b"\x00" * 32)),
            b"\x01" + pb(1, 2) + pb(2, "org") + pb(10, digest),       # another version
            b"\x01" + pb(1, 1) + pb(2, "evil") + pb(10, digest),      # another organization
            b"\x00" + pb(1, 1) + pb(2, "org") + pb(11, many),         # too many groups
            b"\x01" + b"{FFFFFFFF} MULTI (5) ({00000000051}",         # hostile-inputs #24
            b"\x01" + pb(1, 1) + pb(2, "org"),                        # no body
    ]):
        write("linkstate_link2state", i, data)


if __name__ == "__main__":
    main()
