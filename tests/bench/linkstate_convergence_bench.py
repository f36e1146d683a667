"""Link-state convergence on loopback (issue 6): 20 nodes in 5 routing groups (4 each),
every node its own bridgehead process on its own 127.0.0.x, mutual TLS on 691.

    PYTHONPATH=tests/support BH_BIN=build/release/node/bridgehead \\
      BHCTL_BIN=build/release/admin/bhctl python3 tests/bench/linkstate_convergence_bench.py [RUNS] [HOLD_DOWN_MS]

Measures, RUNS times each (default 5), from the moment of detection to the moment the
last of the 20 nodes published its new table (each node's `table_changed_ms` in `bhctl
--json lsdb`, so polling costs nothing):
  connector down  the last source bridgehead of a connector reports it (`bhctl link
                  down`, from a member: StateChange to its master) -> every node's
                  table has the connector down (plus HOLD_DOWN_MS, default 0)
  connector up    the same, back up
  master killed   SIGKILL of a group's configured master -> every other node's table
                  names the new master (detection here is the TCP reset, immediate)
Prints a table (median and worst, ms). Target: under 1 s plus the hold-down.
"""
import json
import statistics
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 3)[0] + "/tests/support")
import bhnode  # noqa: E402
import lscluster  # noqa: E402
from lscluster import group_entry  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
HOLD = int(sys.argv[2]) if len(sys.argv) > 2 else 0
GROUPS = 5
PER = 4


def now_ms():
    return int(time.time() * 1000)


def main():
    names = [chr(ord("A") + g) for g in range(GROUPS)]
    groups = {f"RG-{n}": [f"{n.lower()}{i}" for i in range(1, PER + 1)] for n in names}
    conns = []
    for g in range(GROUPS):  # a ring both ways plus a chord, the first two nodes as sources
        a, b, c = names[g], names[(g + 1) % GROUPS], names[(g + 2) % GROUPS]
        src = [f"{a.lower()}1", f"{a.lower()}2"]
        conns += [(f"{a}-{b}", f"RG-{a}", f"RG-{b}", 10, src), (f"{b}-{a}x", f"RG-{b}", f"RG-{a}", 10),
                  (f"{a}-{c}", f"RG-{a}", f"RG-{c}", 35, src)]
    masters = {f"RG-{n}": f"{n.lower()}1" for n in names}
    t0 = time.monotonic()
    c = lscluster.Cluster(groups, connectors=conns, masters=masters, keepalive_ms=1000,
                          dead_after_ms=3000, hold_down_ms=HOLD, reconnect_min_ms=200, reconnect_max_ms=2000)
    try:
        c.start()
        c.wait_converged(timeout=60)
        print(f"{len(c.nodes)} nodes in {GROUPS} groups up and converged in {time.monotonic() - t0:.1f} s",
              flush=True)

        def converge(pred, since):
            """ms from `since` to the last node's table change, once pred holds on all."""
            views = {}

            def ok():
                views.clear()
                for i in c.running():
                    v = c.lsdb(i)
                    if not pred(v):
                        return False
                    views[i] = v
                return len({v["digest"] for v in views.values()}) == 1
            bhnode.wait_until(ok, timeout=60 + HOLD / 1000, interval=0.2, what="convergence")
            return max(v["table_changed_ms"] for v in views.values()) - since

        def conn_state(v, group, cid):
            return [x for x in group_entry(v, group)["connectors"] if x["id"] == cid][0]["state"]

        results = {"connector down": [], "connector up": [], "master killed": []}
        for run in range(RUNS):
            g = names[run % GROUPS]
            cid, group = f"{g}-{names[(run + 1) % GROUPS]}", f"RG-{g}"
            lo = g.lower()
            # Down: the first source changes nothing (the other is up); the second does.
            assert c.nodes[f"{lo}1"].bhctl("link", "down", cid).returncode == 0
            time.sleep(0.3)
            since = now_ms()
            r = c.nodes[f"{lo}2"].bhctl("link", "down", cid)  # a member: StateChange to its master
            assert r.returncode == 0, r.stderr
            results["connector down"].append(converge(lambda v: conn_state(v, group, cid) == "down", since))
            # Up: one source up is the connector up.
            since = now_ms()
            assert c.nodes[f"{lo}2"].bhctl("link", "up", cid).returncode == 0
            results["connector up"].append(converge(lambda v: conn_state(v, group, cid) == "up", since))
            assert c.nodes[f"{lo}1"].bhctl("link", "up", cid).returncode == 0
            c.wait_converged(timeout=60, pred=lambda v: all(
                s["up"] for x in group_entry(v, group)["connectors"] for s in x["sources"]))
        for run in range(min(RUNS, GROUPS)):
            g = names[run].lower()
            group = f"RG-{names[run]}"
            since = now_ms()
            c.nodes[f"{g}1"].kill()
            results["master killed"].append(
                converge(lambda v: group_entry(v, group)["master"] == f"{g}2", since))
            c.nodes[f"{g}1"].start()
            c.wait_converged(timeout=60, pred=lambda v: group_entry(v, group)["master"] == f"{g}1")

        print(f"\nconvergence, {len(c.nodes)} nodes / {GROUPS} groups, hold-down {HOLD} ms, loopback")
        print(f"{'event':<16} {'runs':>4} {'median ms':>10} {'worst ms':>9}")
        for k, v in results.items():
            print(f"{k:<16} {len(v):>4} {statistics.median(v):>10.0f} {max(v):>9.0f}")
        print(json.dumps(results))
    finally:
        c.cleanup()


if __name__ == "__main__":
    main()
