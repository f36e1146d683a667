#!/bin/bash
# Recipient resolutions per second against a throwaway slapd (cold: every lookup a
# search, at 1, 64 and 512 in flight on one connection; warm: from the cache), and the
# time to expand a 10,000-member group with the Categorizer. Prints a table.
#   bash tests/bench/directory_bench.sh [BUILD_DIR] [USERS]
# BUILD_DIR defaults to build/release (cmake --preset release; the bench target is built
# here); USERS defaults to 10000 (all in the group). Loopback only.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/build/release}
users=${2:-10000}
cmake --build "$build" --target directory_bench >/dev/null
PYTHONPATH=$here/tests/support python3 - "$build/tests/directory/directory_bench" "$users" "$here" <<'PY'
import subprocess, sys, time
from slapd import SUFFIX, Slapd
bench, users, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
people = "ou=people," + SUFFIX
reader = "cn=reader," + SUFFIX
ldif = [f"dn: {reader}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\n"
        "cn: reader\nuserPassword: readerpw\n\n"]
for i in range(users):
    u = f"u{i:05d}"
    ldif.append(f"dn: uid={u},{people}\nobjectClass: inetOrgPerson\nobjectClass: bhMailRecipient\n"
                f"uid: {u}\ncn: {u}\nsn: {u}\nmail: {u}@example.test\n"
                f"proxyAddresses: SMTP:{u}@example.test\nbhHomeServer: node1\n\n")
ldif.append(f"dn: cn=everyone,{people}\nobjectClass: groupOfNames\nobjectClass: bhMailRecipient\n"
            "cn: everyone\nproxyAddresses: SMTP:everyone@example.test\n" +
            "".join(f"member: uid=u{i:05d},{people}\n" for i in range(users)) + "\n")
t0 = time.monotonic()
s = Slapd("".join(ldif), schemas=[root + "/deploy/ldap/bridgehead.schema"],
          indexes=["proxyAddresses eq", "mail eq"])
print(f"slapd loaded {users} users and a {users}-member group in {time.monotonic() - t0:.1f} s "
      f"(slapd {s.uri}, 2 cores shared with this client)\n")
try:
    subprocess.run([bench, s.uri, people, reader, "readerpw", str(users), "everyone@example.test"], check=True)
finally:
    s.stop()
PY
