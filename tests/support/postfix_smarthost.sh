#!/usr/bin/env bash
# A throwaway Postfix smart host on 127.0.0.1:PORT for the relay tests (env-recipes §5b):
# STARTTLS with a certificate from a CA made here, AUTH PLAIN/LOGIN through Cyrus SASL
# with its own sasldb (only after TLS), relaying only for authenticated clients, and
# delivery of example.net to one Maildir under BASE/mail/box/.
#
# usage: postfix_smarthost.sh BASE PORT USER PASSWORD
# Leaves: BASE/ca.pem (the CA to verify with), BASE/conf (config_directory; start it with
# `postfix -c BASE/conf start`), BASE/maillog, BASE/mail/box/new/ (delivered mail).
# Needs root (Postfix's master runs as root and drops to user postfix).
set -euo pipefail
BASE=$1; PORT=$2; SASL_USER=$3; SASL_PASS=$4
HOST=smarthost.example.test
# The postfix user must reach everything below BASE (mktemp -d makes it 0700).
chmod 755 "$BASE"
mkdir -p "$BASE/conf/sasl" "$BASE/queue" "$BASE/data" "$BASE/mail" "$BASE/tls"

# CA and server certificate (SAN: localhost and 127.0.0.1).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bridgehead test CA" \
  -keyout "$BASE/tls/ca.key" -out "$BASE/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$BASE/tls/server.key" -out "$BASE/tls/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$BASE/tls/san.ext"
openssl x509 -req -in "$BASE/tls/server.csr" -CA "$BASE/ca.pem" -CAkey "$BASE/tls/ca.key" \
  -CAcreateserial -days 2 -extfile "$BASE/tls/san.ext" -out "$BASE/tls/server.pem" 2>/dev/null
chmod 600 "$BASE/tls/server.key"

# Cyrus SASL: sasldb readable by postfix (smtpd runs as postfix, chroot off). Debian's
# Postfix reads <config_directory>/sasl/smtpd.conf whatever cyrus_sasl_config_path says.
printf '%s' "$SASL_PASS" | saslpasswd2 -p -c -f "$BASE/conf/sasl/sasldb2" -u "$HOST" "$SASL_USER"
cat > "$BASE/conf/sasl/smtpd.conf" <<CONF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $BASE/conf/sasl/sasldb2
mech_list: PLAIN LOGIN
CONF
chown -R postfix:postfix "$BASE/data" "$BASE/mail"
chgrp postfix "$BASE/conf/sasl/sasldb2"
chmod 640 "$BASE/conf/sasl/sasldb2"

PF_UID=$(id -u postfix); PF_GID=$(id -g postfix)
cat > "$BASE/conf/main.cf" <<CONF
compatibility_level = 3.6
config_directory = $BASE/conf
queue_directory = $BASE/queue
data_directory = $BASE/data
mail_owner = postfix
setgid_group = postdrop
myhostname = $HOST
mydomain = example.test
myorigin = \$myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks =
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file_prefixes = $BASE
maillog_file = $BASE/maillog
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_tls_cert_file = $BASE/tls/server.pem
smtpd_tls_key_file = $BASE/tls/server.key
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_received_header = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
smtpd_sasl_local_domain = \$myhostname
cyrus_sasl_config_path = $BASE/conf/sasl
virtual_mailbox_domains = example.net
virtual_mailbox_base = $BASE/mail
virtual_mailbox_maps = static:box/
virtual_uid_maps = static:$PF_UID
virtual_gid_maps = static:$PF_GID
virtual_minimum_uid = 1
CONF
sed "s/@PORT@/$PORT/" "$(dirname "$0")/postfix-master.cf" > "$BASE/conf/master.cf"
postfix -c "$BASE/conf" check
