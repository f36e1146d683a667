# Shared by the benchmark scripts of this folder (sourced, not run). Loopback only.
# shellcheck shell=bash

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Waits (up to 10 s) until the server on PORT greets with 220.
wait_banner() {
  for _ in $(seq 1 200); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1" && head -c 4 <&3 | grep -q 220) 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing answers on port $1"; return 1
}

# Waits (up to 10 s) until something listens on PORT.
wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $1"; return 1
}

# Kills every process in the caller's PIDS array and, given its queue directory, the
# throwaway Postfix of the script.
stop_pids() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${1:-}" ] && [ -f "$1/pid/master.pid" ]; then
    kill "$(tr -d ' ' < "$1/pid/master.pid")" 2>/dev/null || true
  fi
  sleep 0.5
}

# The bridgehead config every benchmark starts from: NAME, DATA_DIR, SMTP_PORT,
# ADMIN_PORT; alice@example.org is the one local mailbox; one client IP (127.0.0.1) may
# open 200 sessions, at any rate. The smtp: section comes last, so a caller may append
# lines indented under it, then sections of its own.
bench_node_yaml() {
  cat <<YAML
node:
  name: $1
  data_dir: $2
listen:
  smtp: ["127.0.0.1:$3"]
  admin: "127.0.0.1:$4"
local_domains: [example.org]
directory:
  file:
    mailboxes: [alice@example.org]
smtp:
  max_sessions_per_ip: 200
  max_connections_per_ip_per_minute: 0   # the load comes from one IP (127.0.0.1)
YAML
}
