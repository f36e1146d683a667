#!/usr/bin/env bash
# The demo cluster (issue 7): 3 routing groups of 2 bridgehead nodes on 127.0.0.11-16, a
# throwaway slapd with the sample organization on 127.0.0.10, a cluster CA. It sends one
# message from alice@example.test to the nested group all-staff@example.test through
# node1, shows the Maildir on each member's home node where it landed and node1's
# routing table, and leaves the cluster running.
#
#   bash deploy/demo-cluster.sh [start]    install, build (release), start, demonstrate
#   bash deploy/demo-cluster.sh stop       stop every process the demo started
#
# Environment: BH_DEMO_DIR (state folder, default /tmp/bridgehead-demo: configs, logs,
# pid files, certificates, Maildirs); BH_BIN_DIR (use $BH_BIN_DIR/node/bridgehead and
# $BH_BIN_DIR/admin/bhctl of an existing build instead of building build/release).
# The topology and the node configs come from deploy/cluster/democluster.py, which
# reads deploy/ldap/sample-organization.ldif (tests/integration/test_cluster.py uses the
# same definition with free ports).
set -Eeuo pipefail
# Absolute (relative to where it was called from), as the processes' command lines name it.
DEMO_DIR=$(realpath -m -s "${BH_DEMO_DIR:-/tmp/bridgehead-demo}")
if [ -n "${BH_BIN_DIR:-}" ]; then BH_BIN_DIR=$(realpath -m "$BH_BIN_DIR"); fi
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MARKER=.bridgehead-demo
HELPER=(python3 "$ROOT/deploy/cluster/democluster.py")
SENDER=alice@example.test
GROUP=all-staff@example.test
NODE1_SMTP=127.0.0.11:2525

STEP="(starting)"
SHOW_LOGS=()
STARTED=0  # set once this run starts a process: only then does a failure stop the demo
step() {
  STEP=$1
  echo "== $1"
}

# The pids in our pid files whose command line still names our state folder (a pid the
# kernel gave to someone else since is left alone).
our_pids() {
  local f pid
  for f in "$DEMO_DIR"/node*.pid "$DEMO_DIR"/slapd.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] || continue
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$DEMO_DIR/"; then
      echo "$pid"
    fi
  done
}

stop_all() {
  local pids pid waited=0
  mapfile -t pids < <(our_pids)
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    # SIGTERM drains a node (deliveries in flight finish); after 20 s, SIGKILL.
    while :; do
      mapfile -t pids < <(our_pids)
      [ ${#pids[@]} -eq 0 ] && break
      if [ $waited -ge 200 ]; then
        echo "demo-cluster: still running after 20 s, killing: ${pids[*]}" >&2
        kill -KILL "${pids[@]}" 2>/dev/null || true
      fi
      if [ $waited -ge 300 ]; then
        echo "demo-cluster: could not stop: ${pids[*]}" >&2
        return 1
      fi
      sleep 0.1
      waited=$((waited + 1))
    done
  fi
  rm -f "$DEMO_DIR"/node*.pid "$DEMO_DIR"/slapd.pid
  return 0
}

on_error() {
  local rc=$? f
  trap - ERR
  set +e
  echo >&2
  echo "demo-cluster: FAILED at step: $STEP (exit $rc)" >&2
  for f in "${SHOW_LOGS[@]}"; do
    [ -s "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 25 "$f" >&2
  done
  if [ $STARTED = 1 ] && [ -n "$(our_pids)" ]; then
    echo "demo-cluster: stopping what was started (logs and configs stay in $DEMO_DIR)" >&2
    stop_all
  fi
  exit 1
}

if [ "${1:-start}" = stop ]; then
  if [ ! -d "$DEMO_DIR" ]; then
    echo "demo-cluster: nothing to stop ($DEMO_DIR does not exist)"
    exit 0
  fi
  n=$(our_pids | wc -l)
  stop_all
  echo "demo-cluster: stopped $n process(es); state kept in $DEMO_DIR"
  exit 0
fi
if [ "${1:-start}" != start ]; then
  echo "usage: bash deploy/demo-cluster.sh [start|stop]" >&2
  exit 2
fi
trap on_error ERR

step "dependencies (deploy/install-deps.sh)"
bash deploy/install-deps.sh

if [ -n "${BH_BIN_DIR:-}" ]; then
  step "using the binaries in $BH_BIN_DIR"
  BIN_DIR=$BH_BIN_DIR
else
  step "build (release preset: bridgehead, bhctl)"
  cmake --preset release >/dev/null
  cmake --build --preset release --target bridgehead bhctl
  BIN_DIR=$ROOT/build/release
fi
BIN=$BIN_DIR/node/bridgehead
BHCTL=$BIN_DIR/admin/bhctl
export BHCTL_BIN=$BHCTL
for b in "$BIN" "$BHCTL"; do
  [ -x "$b" ] || { echo "demo-cluster: $b is missing or not executable" >&2; false; }
done

step "nothing else uses the demo's addresses (127.0.0.10-16)"
if [ -n "$(our_pids)" ]; then
  echo "demo-cluster: a demo cluster is already running from $DEMO_DIR;" \
       "stop it first: bash deploy/demo-cluster.sh stop" >&2
  false
fi
if ! "${HELPER[@]}" check-ports; then
  echo "demo-cluster: the ports above are taken (slapd 127.0.0.10:3389 and :3268; on 127.0.0.11-16" \
       "SMTP 2525, link state 6910, admin 8691). Stop whatever listens there (an earlier demo" \
       "from another BH_DEMO_DIR?) and try again." >&2
  false
fi

step "state folder $DEMO_DIR"
if [ -e "$DEMO_DIR" ]; then
  if [ ! -e "$DEMO_DIR/$MARKER" ] && [ -n "$(ls -A "$DEMO_DIR")" ]; then
    echo "demo-cluster: $DEMO_DIR exists and is not a demo folder (no $MARKER); refusing to" \
         "clear it. Remove it or set BH_DEMO_DIR." >&2
    false
  fi
  rm -rf "$DEMO_DIR"
fi
mkdir -p "$DEMO_DIR"
touch "$DEMO_DIR/$MARKER"

step "cluster CA, node certificates, sasldb (user cluster), slapd and node configs"
"${HELPER[@]}" generate "$DEMO_DIR"
mapfile -t NODES < <(cut -f1 "$DEMO_DIR/nodes.tsv")
for n in "${NODES[@]}"; do
  SHOW_LOGS=("$DEMO_DIR/$n.check")
  "$BIN" --check-config --config "$DEMO_DIR/$n.yaml" > "$DEMO_DIR/$n.check" 2>&1
done
SHOW_LOGS=()
echo "   ${#NODES[@]} configs checked: $DEMO_DIR/node*.yaml"

step "slapd on 127.0.0.10:3389 (domain controller) and :3268 (global catalog)"
STARTED=1
"${HELPER[@]}" start-slapd "$DEMO_DIR"
echo "   pid $(cat "$DEMO_DIR/slapd.pid"); loaded deploy/ldap/sample-organization.ldif"

step "start ${#NODES[@]} nodes"
while IFS=$'\t' read -r n conf host port log; do
  # Its own session, so the node outlives this script and the terminal.
  setsid "$BIN" --config "$conf" >> "$log" 2>&1 < /dev/null &
  echo $! > "$DEMO_DIR/$n.pid"
  echo "   $n  pid $!  SMTP $host:$port  log $log"
done < "$DEMO_DIR/nodes.tsv"

step "wait for every SMTP banner"
banner() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2 && IFS= read -r line <&3 && [[ \$line == 220* ]]" 2>/dev/null
}
while IFS=$'\t' read -r n conf host port log; do
  SHOW_LOGS=("$log")
  for i in $(seq 1 150); do
    banner "$host" "$port" && break
    if ! kill -0 "$(cat "$DEMO_DIR/$n.pid")" 2>/dev/null; then
      echo "demo-cluster: $n exited" >&2
      false
    fi
    if [ "$i" = 150 ]; then
      echo "demo-cluster: no SMTP banner from $n on $host:$port after 30 s" >&2
      false
    fi
    sleep 0.2
  done
done < "$DEMO_DIR/nodes.tsv"
SHOW_LOGS=()
echo "   all ${#NODES[@]} nodes answer"

step "wait for link state to converge (the same lsdb digest on every node)"
mapfile -t SHOW_LOGS < <(cut -f5 "$DEMO_DIR/nodes.tsv")
digest=$("${HELPER[@]}" wait-converged "$DEMO_DIR" 90)
echo "   digest $digest on all ${#NODES[@]} nodes"

step "send a message from $SENDER to $GROUP through node1 ($NODE1_SMTP, STARTTLS)"
MSGID="<demo-$(date +%s)-$$@example.test>"
swaks --silent 2 --server "$NODE1_SMTP" --tls --ehlo client.example.test \
  --from "$SENDER" --to "$GROUP" --header "Message-Id: $MSGID" \
  --header "Subject: hello from the bridgehead demo cluster" \
  --body "Sent to the nested group $GROUP through node1; each member has one copy on its home node."

step "wait until each member of $GROUP has it in its Maildir on its home node"
if ! "${HELPER[@]}" wait-delivery "$DEMO_DIR" "$GROUP" "$MSGID" 90; then
  echo "demo-cluster: the message did not reach every member in 90 s (above); queues:" >&2
  for n in "${NODES[@]}"; do
    echo "---- $n: bhctl queue list" >&2
    "$BHCTL" --config "$DEMO_DIR/$n.yaml" queue list >&2 || true
  done
  false
fi

step "routing table of node1 (bhctl routes)"
"$BHCTL" --config "$DEMO_DIR/node1.yaml" routes

trap - ERR
cat <<EOF

== the demo cluster is running (state, configs and logs in $DEMO_DIR)
   SMTP on 127.0.0.11-16:2525, link state :6910, admin :8691; slapd on 127.0.0.10:3389/3268
   $BHCTL --config $DEMO_DIR/node3.yaml routes
   $BHCTL --config $DEMO_DIR/node1.yaml lsdb
   $BHCTL --config $DEMO_DIR/node1.yaml track --recipient carol@example.test
   $BHCTL --config $DEMO_DIR/node1.yaml resolve $GROUP
   swaks --server $NODE1_SMTP --tls --from $SENDER --to erin@example.test
== stop it with:  bash deploy/demo-cluster.sh stop
EOF
