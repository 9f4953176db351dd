#!/usr/bin/env python3
"""A hung database is treated like a stopped one, and nothing hangs.

PostgreSQL is frozen (SIGSTOP): a storage stall, or a path that drops
packets, looks like this, not like "down". A leader and a standby share it.
While it is frozen the leader keeps leading: it serves `status`, accepts a
cutover (its records go to the outage journal once the database stops
answering) and never calls itself a standby. A schedule changed in place as
the first write of the freeze is answered within nircctl's --timeout, and
truly: in force, recorded only in the journal. Every nircctl command ends
within its --timeout budget with the controller listed twice. When the
database wakes up, after a freeze that hit every controller, the standby
does not evict the healthy leader, and directives of two epochs never
interleave. When the database is merely stopped, `history` says so at once.

Runs its own PostgreSQL (the test freezes it), beside the shared fixture.
"""
import json
import os
import signal
import subprocess
import time

import nirclib as T

SITES = ["hubei", "shaanxi", "henan"]
PG_PORT = int(T.PG_PORT) + 11
PG_DIR = os.path.join(T.RUN, "pg-hung")
PG = T.PG_PRIVATE
TIMEOUT_S = 2
LEASE_S = 3
FREEZE_S = 4 * LEASE_S



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


def timed_ctl(env, *args, controllers=None, timeout_s=TIMEOUT_S):
    t0 = time.monotonic()
    r = env.ctl("--timeout", f"{timeout_s}s", *args,
                controllers=controllers or [env.addr, env.addr], timeout=90)
    return r, time.monotonic() - t0


def leader_of(env):
    r, _ = timed_ctl(env, "--json", "status", controllers=[env.addr])
    if r.returncode != 0:
        return None
    j = json.loads(r.stdout)
    return j["controller"], j["epoch"]


def test_hung_database_is_treated_like_a_stopped_one():
    T.private_pg("stop", PG_DIR)
    T.private_pg("start", PG_DIR, str(PG_PORT))
    env = T.Env("dbhung", pg_port=PG_PORT,
                extra_nircd=f"[controller]\nlease_timeout = {LEASE_S}s")
    addr_b = f"127.0.0.1:{T.listen_port()}"
    try:
        leader = env.start_controller(name="nircd-1")
        assert env.controller_status.startswith("leader"), env.controller_status
        standby = env.start_controller(conf=env.controller_conf("nircd-2", addr_b, "nircd-2.conf"),
                                       name="nircd-2")
        assert env.controller_status.startswith("standby"), env.controller_status
        for s in SITES:
            env.start_agent(s, controllers=f"{env.addr},{addr_b}")
        T.wait_until(lambda: all(env.status()[s]["link"] == "online" and env.status()[s]["load"]
                                 for s in SITES) or None, 20, "agents online and reporting")
        before = leader_of(env)
        assert before and before[0] == "nircd-1", before
        r, _ = timed_ctl(env, "schedule", "add", "night", "--sources", "henan", "--to", "shaanxi",
                         "--start", "01:00", "--end", "02:00", timeout_s=5)
        assert r.returncode == 0, r.stdout + r.stderr

        signal_cluster(signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            # The change waits at most 1.5 s for the database (db.h,
            # DB_CHANGE_ANSWER_MS), then goes to the journal: answered within
            # a 3 s --timeout. It waited 5 s, and nircctl gave up first.
            r, took = timed_ctl(env, "--json", "schedule", "set", "night", "--end", "03:00",
                                controllers=[env.addr], timeout_s=3)
            out = r.stdout + r.stderr
            assert r.returncode == 4, f"schedule set as the freeze began: {r.returncode} in " \
                f"{took:.1f} s\n{out}"
            assert "only in the outage journal of controller nircd-1," in json.loads(r.stdout)["warning"]
            print(f"  frozen database: schedule set answered in {took:.1f} s")
            # Two leases later the leader still leads and says so.
            budget = TIMEOUT_S * 3 + 3
            for k in range(3):
                r, took = timed_ctl(env, "--json", "status")
                assert r.returncode == 0, f"status during the freeze: {r.returncode} {r.stderr}"
                assert json.loads(r.stdout)["controller"] == "nircd-1", r.stdout
                assert "standby" not in r.stderr, r.stderr
                assert took < budget, f"status took {took:.1f} s"
            # A cutover is accepted: its records wait for the database, which
            # does not answer, so they go to the journal, and then it is done.
            # Forced: the test runs on the real clock, and at the morning peak
            # the simulated shaanxi cannot take hubei (the capacity check is
            # not what this test is about).
            r, took = timed_ctl(env, "--json", "cutover", "hubei", "--to", "shaanxi",
                                "--reason", "freeze drill", "--force", timeout_s=15)
            out = r.stdout + r.stderr
            # Exit 4: done, recorded only in the journal (the reply says so).
            assert r.returncode == 4, f"cutover during the freeze: {r.returncode}\n{out}"
            assert "outage journal" in out, out
            assert "is a standby" not in out, out  # answered by the leader
            print(f"  frozen database: status served, cutover done in {took:.1f} s")
            # Nothing hangs, whatever needs the database.
            for args in (["history"], ["history", "--site", "hubei"]):
                r, took = timed_ctl(env, *args)
                print(f"  nircctl {' '.join(args)}: exit {r.returncode} in {took:.1f} s")
                assert took < budget, f"nircctl {args} took {took:.1f} s (budget {budget} s)"
                if r.returncode != 0:
                    assert r.stderr.strip(), f"nircctl {args} failed without a word"
            # The freeze lasts FREEZE_S whatever the test did meanwhile: that
            # is the scenario, not a wait for something.
            time.sleep(max(0.0, FREEZE_S - (time.monotonic() - frozen)))
        finally:
            signal_cluster(signal.SIGCONT)

        # The freeze hit both controllers: nobody is evicted for it. Watched
        # for three leases after the database woke up.
        until = time.monotonic() + 3 * LEASE_S
        while time.monotonic() < until:
            assert leader.alive(), f"the leader exited after the freeze:\n{leader.tail()}"
            now = leader_of(env)
            assert now is None or now == before, f"leadership moved: {before} -> {now}"
            time.sleep(0.5)
        T.wait_until(lambda: leader_of(env) == before or None, 15, "the leader confirmed again")
        T.wait_until(lambda: env.sql("SELECT count(*) FROM cutovers")[0][0] == "1" or None, 30,
                     "the journaled cutover in the database")
        assert env.sql("SELECT end_min FROM schedules WHERE name = 'night'") == [["180"]]
        assert env.sql("SELECT count(*) FROM audit_log WHERE action = 'schedule-change'") == \
            [["1"]]
        assert env.sql("SELECT count(*) FROM audit_log WHERE action = 'step-down'") == [["0"]]
        # Fencing: per site, directives never go back to an older epoch.
        for s in SITES:
            epochs = [int(e) for (e,) in env.sql(
                f"SELECT epoch FROM directives WHERE site = '{s}' ORDER BY sent_at, version")]
            assert epochs == sorted(epochs), f"{s}: epochs interleave: {epochs}"

        # Stopped rather than frozen: history names the database at once.
        T.private_pg("stop", PG_DIR)
        T.wait_until(lambda: "unreachable since" in timed_ctl(env, "history")[0].stderr or None,
                     20, "history to say the database is unreachable")
        r, took = timed_ctl(env, "history")
        assert r.returncode != 0 and took < TIMEOUT_S + 2, (r.returncode, took, r.stderr)
        assert "routing continues" in r.stderr, r.stderr
        for s in SITES:
            env.agents[s].stop()
        standby.stop()
        leader.stop()
    finally:
        env.close()
        subprocess.run([PG, "stop", PG_DIR], capture_output=True)


if __name__ == "__main__":
    try:
        T.main([test_hung_database_is_treated_like_a_stopped_one])
    finally:
        subprocess.run([PG, "stop", PG_DIR], capture_output=True)
