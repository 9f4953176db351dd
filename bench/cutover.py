#!/usr/bin/env python3
"""Cutover latency (issue 15, SPEC 11): 31 sources to one hub and back.

An operator's `nircctl --json cutover ... --force` and `restore`, timed
from spawn to exit, against a durable PostgreSQL (fsync and
synchronous_commit on). Each exit means every source acknowledged and the
audit row is committed; the benchmark checks the audit row after every
command. The same run measures the alternative: nircd with NIRC_DB_BATCH=0
(one statement and one commit per row, as before batching).

  bench/cutover.py [--moves 40] [--busy]

--busy adds two busy loops (both cores) for a second measurement.
Targets: server-side p99 <= 10 ms, end-to-end p99 < 40 ms quiet.

A move is acknowledged only after each source's agent has made its new
route durable (write, fsync, rename, fsync of the directory): here the 31
agents share one disk, where 31 concurrent durable writes take tens of
milliseconds, while in production each agent writes to its own host's
disk. The `agent-state-tmpfs` phase keeps the agents' state files in
/dev/shm to show the controller's own share of the latency beside it;
the `batch` phase is the figure with every write durable.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import time

import benchlib as B

T = B.T
SOURCES = None
IDLE_S = 2.0  # seconds without a move, to take the idle CPU out of the figures


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def children_cpu_s():
    """CPU seconds of this process's ended and waited-for children."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_moves(env, moves):
    walls, elapsed = [], []
    ctl_cpu = 0.0
    srcs = ",".join(SOURCES)
    for k in range(moves):
        if k % 2 == 0:
            argv = ["cutover", srcs, "--to", "shaanxi", "--reason", f"bench {k}", "--force"]
        else:
            argv = ["restore", srcs, "--reason", f"bench {k}"]
        c0, t0 = children_cpu_s(), time.monotonic()
        r = env.ctl("--json", *argv)
        walls.append((time.monotonic() - t0) * 1000)
        ctl_cpu += children_cpu_s() - c0  # nircctl alone: the audit check below is psql
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        elapsed.append(out.get("elapsed_ms", 0))
        n = env.sql(f"select count(*) from audit_log where detail->>'reason' = 'bench {k}'")
        assert n and int(n[0][0]) >= 1, f"audit row of move {k} not committed at exit"
    return {"moves": moves,
            "wall_ms": {"p50": round(statistics.median(walls), 1), "p99": round(pct(walls, 99), 1),
                        "max": round(max(walls), 1)},
            "server_elapsed_ms": {"p50": statistics.median(elapsed), "p99": pct(elapsed, 99)},
            "nircctl_cpu_ms_per_move": round(ctl_cpu * 1000 / moves, 2)}


def measure(tag, moves, batch, busy, state_tmpfs=False):
    global SOURCES
    env = T.Env(f"bench-cutover-{tag}")
    if state_tmpfs:
        shm = f"/dev/shm/nirc-bench-cutover-{os.getpid()}"
        os.makedirs(shm, exist_ok=True)
        conf = env.agent_conf

        def agent_conf(slug, **kw):
            path = conf(slug, **kw)
            with open(path) as f:
                text = f.read().replace(f"state_file = {env.dir}/", f"state_file = {shm}/")
            with open(path, "w") as f:
                f.write(text)
            return path
        env.agent_conf = agent_conf
    SOURCES = [s for s in T.scenario_slugs() if s != "shaanxi"]
    if not batch:
        os.environ["NIRC_DB_BATCH"] = "0"
    try:
        proc = env.start_controller()
    finally:
        os.environ.pop("NIRC_DB_BATCH", None)
    for s in T.scenario_slugs():
        env.start_agent(s)
    T.wait_until(lambda: all(v["load"] for v in env.status().values()), 60, "agents reporting")
    hogs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(2)] if busy else []
    try:
        agents = [a.p.pid for a in env.agents.values()]

        def cpu():
            return B.cpu_seconds(proc.p.pid), sum(B.cpu_seconds(p) for p in agents)
        # What nircd and the agents use with no move (ticks, load reports)
        # is taken out of the figures per move below.
        (i0, j0), t0 = cpu(), time.monotonic()
        time.sleep(IDLE_S)
        (i1, j1), t1 = cpu(), time.monotonic()
        idle = ((i1 - i0) / (t1 - t0), (j1 - j0) / (t1 - t0))
        (c0, a0), t0 = cpu(), time.monotonic()
        res = run_moves(env, moves)
        (c1, a1), dt = cpu(), time.monotonic() - t0
        res["nircd_cpu_ms_per_move"] = round((c1 - c0 - idle[0] * dt) * 1000 / moves, 2)
        res["agents_cpu_ms_per_move"] = round((a1 - a0 - idle[1] * dt) * 1000 / moves, 2)
        # What a move costs the machine's cores, PostgreSQL left out: no
        # schedule on these cores answers a move faster. The server side is
        # nircd and the agents working in parallel; nircctl's CPU (start,
        # TLS handshake, printing) is one thread before and after it.
        server = (res["nircd_cpu_ms_per_move"] + res["agents_cpu_ms_per_move"]) / \
            (os.cpu_count() or 1)
        res["cpu_floor_ms"] = {"server": round(server, 1),
                               "wall": round(server + res["nircctl_cpu_ms_per_move"], 1)}
        res["loadavg"] = B.loadavg()
    finally:
        for h in hogs:
            h.kill()
        env.close()
        for a in env.agents.values():
            a.stop()
        if state_tmpfs:
            subprocess.run(["rm", "-rf", shm])
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moves", type=int, default=40)
    ap.add_argument("--busy", action="store_true")
    a = ap.parse_args()
    pg = B.Postgres(durable=True)
    figures = {}
    try:
        for busy in ([False, True] if a.busy else [False]):
            for batch, tmpfs in ((True, False), (True, True), (False, False)):
                tag = ("per-row" if not batch else "agent-state-tmpfs" if tmpfs else "batch") + \
                    ("-busy" if busy else "")
                figures[tag] = measure(tag, a.moves, batch, busy, tmpfs)
    finally:
        T.Proc.kill_all()
        pg.stop()
    b, r = figures["batch"], figures["per-row"]
    B.emit("cutover", figures,
           ratio_per_row_over_batch={
               "wall_p50": round(r["wall_ms"]["p50"] / b["wall_ms"]["p50"], 2),
               "wall_p99": round(r["wall_ms"]["p99"] / b["wall_ms"]["p99"], 2)},
           target={"server_p99_ms": 10, "wall_p99_ms_quiet": 40},
           note="batch: every write durable, the 31 agents' on one shared disk; "
                "agent-state-tmpfs: the agents' state files in /dev/shm (the controller's "
                "own share); per-row: one commit per row (NIRC_DB_BATCH=0)")


if __name__ == "__main__":
    main()
