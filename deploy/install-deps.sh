#!/usr/bin/env bash
# Installs every Debian 12 package that bridgehead's build, tests, benchmarks and demo need.
# Idempotent and non-interactive; run as root (or through sudo). Touches nothing outside apt.
set -euo pipefail

PKGS=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  # libraries
  libboost-dev libboost-system-dev libboost-program-options-dev
  libssl-dev libsasl2-dev libsasl2-modules libsasl2-modules-gssapi-mit sasl2-bin
  libldap-dev libprotobuf-dev protobuf-compiler libyaml-cpp-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev nlohmann-json3-dev
  libc-ares-dev libkrb5-dev
  # real peers used by tests, benchmarks and the demo
  # openssl (the CLI) makes the test CA and certificates of the relay tests (tests/smtp)
  postfix openssl swaks libnet-ssleay-perl libauthen-sasl-perl libio-socket-inet6-perl
  python3 slapd ldap-utils krb5-kdc krb5-admin-server krb5-user
  # the GSSAPI client of the Kerberos tests (tests/integration/test_kdc.py)
  python3-gssapi
  # DNS for the MX tests (tests/routing): the dnsmasq binary only; the "dnsmasq" package
  # would add a system service that answers on port 53 of every interface
  dnsmasq-base
  # Dovecot LMTP as the local delivery peer (tests/integration/test_lmtp.py); the tests
  # run their own instance with -c <tempdir>/dovecot.conf, never the system one
  dovecot-core dovecot-lmtpd
  # Scanners run against the node by the security tests: nmap's smtp-open-relay script
  # (test_open_relay_scan.py) and testssl (test_testssl.py; the binary is /usr/bin/testssl)
  nmap testssl.sh
  # A throwaway Samba AD domain controller (tests/support/samba_ad.py, label "samba"):
  # samba-ad-provision is only a Recommends of samba-ad-dc but provisioning needs it
  samba samba-ad-dc samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind
  # OpenDKIM as a real milter for the sink tests and benchmark (test_milter.py,
  # tests/bench/sinks_bench.sh); opendkim-genkey is in opendkim-tools
  opendkim opendkim-tools
  # strace counts system calls per message (tests/bench/syscall_bench.sh)
  iproute2 procps strace
)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages already installed"
  exit 0
fi

# Keep postfix, slapd and krb5 from asking questions or coming up configured:
# tests start their own throwaway instances on loopback.
$SUDO debconf-set-selections <<'P'
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string localhost
krb5-config krb5-config/default_realm string EXAMPLE.TEST
krb5-config krb5-config/add_servers_realm string EXAMPLE.TEST
krb5-config krb5-config/read_conf boolean true
krb5-config krb5-config/add_servers boolean false
slapd slapd/no_configuration boolean true
P
# Do not let package scripts start distro daemons during the install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
