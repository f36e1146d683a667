#!/usr/bin/env bash
# The main job: install, build (release), start a standalone bridgehead node from the
# smallest config of DESIGN.md §5 on loopback, send it a message and show where it landed.
# The node then keeps running in the foreground until Ctrl-C (or exits at once with --once).
set -euo pipefail
cd "$(dirname "$0")/.."
ONCE=0; [ "${1:-}" = "--once" ] && ONCE=1

bash deploy/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" --target bridgehead bhctl

BIN=build/release/node/bridgehead
BHCTL=build/release/admin/bhctl
DATA=$(mktemp -d /tmp/bh-demo.XXXXXX)
CONF=$DATA/node1.yaml
cat > "$CONF" <<YAML
node:
  name: node1
  data_dir: $DATA/node1          # queue, mailboxes, state
listen:
  smtp: ["127.0.0.1:2525"]
  admin: "127.0.0.1:8691"
local_domains: [example.org]
directory:
  file:
    mailboxes: [alice@example.org, bob@example.org]
YAML

"$BIN" --check-config --config "$CONF"
if (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null; then
  echo "demo: something already listens on 127.0.0.1:2525 (an earlier demo still running?); stop it first" >&2
  exit 1
fi
"$BIN" --config "$CONF" 2> "$DATA/node1.log" &
NODE=$!
trap 'kill $NODE 2>/dev/null || true; wait $NODE 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null && break
  kill -0 $NODE 2>/dev/null || { echo "demo: the node did not start:" >&2; cat "$DATA/node1.log" >&2; exit 1; }
  sleep 0.1
done

echo "== sending a message to alice@example.org through 127.0.0.1:2525"
swaks --silent 2 --server 127.0.0.1:2525 --from demo@example.net --to alice@example.org \
  --header "Subject: hello from the bridgehead demo" --body "It works."
echo "== a message to an unknown user is refused:"
swaks --silent 1 --server 127.0.0.1:2525 --from demo@example.net --to nobody@example.org \
  --body x 2>&1 | grep -E '^ *<\*\* *5' || true

for _ in $(seq 1 100); do
  ls "$DATA/node1/mailboxes/alice/new/"* >/dev/null 2>&1 && break
  sleep 0.1
done
echo "== mail landed in:"
for f in "$DATA"/node1/mailboxes/*/new/*; do echo "   $f"; done
echo "== its content:"
sed 's/^/   | /' "$DATA"/node1/mailboxes/alice/new/* | head -20
echo "== bhctl status:"
"$BHCTL" --config "$CONF" status
echo "== node log: $DATA/node1.log   config: $CONF"
if [ $ONCE = 1 ]; then exit 0; fi
echo "== node1 is running on 127.0.0.1:2525 (admin 127.0.0.1:8691); Ctrl-C stops it"
wait $NODE
