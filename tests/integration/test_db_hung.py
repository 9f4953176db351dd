#!/usr/bin/env python3
"""No nircctl command hangs when the database hangs.

PostgreSQL is frozen (SIGSTOP: a storage stall, or a path that drops
packets, looks like this; not like "down"). nircctl lists the controller
twice, as an operator with two controllers would. Every command must end
within its --timeout budget (the deadline covers every controller it
tries, and one controller that accepts and never answers passes the turn)
and say what it could not do; before, `history` waited forever. When the
database is merely stopped, `history` says so at once instead of blaming
the controller.

Runs its own PostgreSQL (the test freezes it), beside the shared fixture.
"""
import os
import signal
import subprocess
import time

import nirclib as T

SITES = ["hubei", "shaanxi"]
PG_PORT = int(T.PG_PORT) + 11
PG_DIR = os.path.join(T.RUN, "pg-hung")
PG = os.path.join(T.SRC, "deploy", "pg-private.sh")
TIMEOUT_S = 2


def pg(*args):
    r = subprocess.run([PG, *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "NIRC_PG_FAST": "1"})
    assert r.returncode == 0, f"pg-private.sh {args}: {r.stdout}{r.stderr}"


def cluster_pids():
    """The postmaster and every backend of the private cluster."""
    with open(os.path.join(PG_DIR, "data", "postmaster.pid")) as f:
        master = int(f.readline())
    kids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return [master] + [int(p) for p in kids.stdout.split()]


def signal_cluster(sig):
    for pid in cluster_pids():
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def timed_ctl(env, *args):
    t0 = time.monotonic()
    r = env.ctl("--timeout", f"{TIMEOUT_S}s", *args, controllers=[env.addr, env.addr],
                timeout=60)
    return r, time.monotonic() - t0


def test_commands_end_in_time_when_the_database_hangs():
    pg("stop", PG_DIR)
    pg("start", PG_DIR, str(PG_PORT))
    env = T.Env("dbhung", pg_port=PG_PORT)
    try:
        ctl = env.start_controller()
        for s in SITES:
            env.start_agent(s)
        T.wait_until(lambda: all(env.status()[s]["link"] == "online" for s in SITES) or None, 20,
                     "agents online")
        signal_cluster(signal.SIGSTOP)
        try:
            # Two controllers listed: each try has the timeout, the whole
            # command (timeout x (controllers + 1)) never more.
            budget = TIMEOUT_S * 3 + 3
            for args in (["history"], ["status"], ["history", "--site", "hubei"]):
                r, took = timed_ctl(env, *args)
                print(f"  nircctl {' '.join(args)}: exit {r.returncode} in {took:.1f} s")
                assert took < budget, f"nircctl {args} took {took:.1f} s (budget {budget} s)"
                if r.returncode != 0:
                    assert r.stderr.strip(), f"nircctl {args} failed without a word"
        finally:
            signal_cluster(signal.SIGCONT)
        # Stopped rather than frozen: history names the database at once.
        pg("stop", PG_DIR)
        T.wait_until(lambda: "unreachable since" in timed_ctl(env, "history")[0].stderr or None,
                     20, "history to say the database is unreachable")
        r, took = timed_ctl(env, "history")
        assert r.returncode != 0 and took < TIMEOUT_S + 2, (r.returncode, took, r.stderr)
        assert "routing continues" in r.stderr, r.stderr
        for s in SITES:
            env.agents[s].stop()
        ctl.stop()
    finally:
        env.close()
        subprocess.run([PG, "stop", PG_DIR], capture_output=True)


if __name__ == "__main__":
    try:
        T.main([test_commands_end_in_time_when_the_database_hangs])
    finally:
        subprocess.run([PG, "stop", PG_DIR], capture_output=True)
