#!/usr/bin/env python3
"""A standby that wins the election but cannot load the rules, because a
session holds a lock on a rule table, says who holds it and how to end it,
and leads once that session lets go, without a restart.

nircd-1 leads and nircd-2 stands by (lease 2 s). A psql session, like a
DBA's `BEGIN; UPDATE cutovers ...` left open, takes ROW EXCLUSIVE on
cutovers and stays in its transaction. nircd-1 is killed (SIGKILL).
nircd-2 takes the leader lock and a new epoch, and its rule load (SHARE
locks with a 2 s lock_timeout) times out. Before, it gave the lock back and
tried again every period, for ever: a new epoch each try, the same error
logged each time, the lease left naming nircd-2 itself (so nircctl at
nircd-2 was told "the leader is nircd-2"), and nothing naming the session
in the way.

Now nircd-2's log names the session holding the lock once (not every
period), `nircctl status` and `--json status` at nircd-2 exit 3 and say
the same on standard error (pid, application, client address, state, since
when, and the pg_terminate_backend to end it), and no epoch is taken while
the same session stands in the way. When the session rolls back, nircd-2
leads within a lease or two, and status says so.

Runs its own PostgreSQL (a session of the test's holds a table lock there).
"""
import json
import os
import subprocess

import nirclib as T

LEASE_S = 2
PG_PORT = int(T.PG_PORT) + 19
PG_DIR = os.path.join(T.RUN, "pg-rules-locked")


def epochs_of(env, node):
    return int(env.sql(f"SELECT count(*) FROM epochs WHERE node = '{node}'")[0][0])


def test_locked_rule_tables_are_named_and_the_standby_leads_once_free():
    T.private_pg("stop", PG_DIR)
    T.private_pg("start", PG_DIR, str(PG_PORT))
    env = T.Env("rules-locked", pg_port=PG_PORT,
                extra_nircd=f"[controller]\nlease_timeout = {LEASE_S}s")
    a, b, addr_b = env.start_leader_and_standby()

    # The DBA's session: in a transaction, holding ROW EXCLUSIVE on cutovers,
    # idle (psql waits on its standard input for more).
    dba = subprocess.Popen(["psql", "-X", "-q", T.conninfo(env.db, PG_PORT)],
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        dba.stdin.write("BEGIN;\nLOCK TABLE cutovers IN ROW EXCLUSIVE MODE;\n")
        dba.stdin.flush()
        rows = T.wait_until(lambda: env.sql(
            "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid "
            "WHERE l.relation = 'cutovers'::regclass AND l.mode = 'RowExclusiveLock' "
            "AND l.granted AND s.application_name = 'psql'"), 10,
            "the psql session to hold ROW EXCLUSIVE on cutovers")
        pid = int(rows[0][0])
        before = epochs_of(env, "nircd-2")
        assert before == 0, before

        a.kill()  # SIGKILL: its sessions end, the lease stands still
        killed = env.sql("SELECT now()")[0][0]

        # What an operator at nircd-2 is told while nobody leads.
        want = [f"table cutovers is locked by pid {pid} (psql, 127.0.0.1, idle in transaction",
                f"SELECT pg_terminate_backend({pid})", "cannot load the rules",
                "nircd-2 won the election"]

        last = {}

        def told(args):
            r = env.ctl(*args, controllers=[addr_b])
            last["answer"] = f"exit {r.returncode}, stderr {r.stderr!r}"
            if r.returncode == T.EXIT_UNREACHABLE and all(w in r.stderr for w in want):
                return r
            return None

        try:
            r = T.wait_until(lambda: told(["status"]), 30,
                             f"status at nircd-2 to name pid {pid} as the holder of cutovers")
        except AssertionError as e:
            raise AssertionError(f"{e}; nircctl status at nircd-2 said: {last.get('answer')}; "
                                 f"nircd-2 took {epochs_of(env, 'nircd-2')} epochs") from None
        print("nircctl status at nircd-2 while the rule tables are locked:\n" + r.stderr,
              flush=True)
        assert "no leader answered" in r.stderr and "Is nircd running" not in r.stderr, r.stderr
        assert f"the leader is {addr_b}" not in r.stderr, \
            f"nircd-2 names itself as the leader while it does not lead: {r.stderr}"
        r = told(["--json", "status"])
        assert r is not None, "--json status at nircd-2 does not say why nobody leads"
        assert r.stdout == "", "exit 3 prints nothing on stdout (docs/CLI-JSON.md)"

        # The log names the holder once, however many periods pass: the
        # standby tries every lease / 4, so four leases after the kill it
        # has met the same holder on more than a dozen periods.
        T.wait_until(lambda: env.sql(
            f"SELECT 1 WHERE now() - '{killed}'::timestamptz > interval '{4 * LEASE_S} s'"),
            4 * LEASE_S + 10, "four leases of the database's clock since nircd-1 was killed")
        assert told(["status"]), "status at nircd-2 no longer names the holder"
        log = open(b.log_path, errors="replace").read()
        named = [l for l in log.splitlines() if f"locked by pid {pid}" in l]
        assert len(named) == 1, "the holder is logged once per distinct set:\n" + "\n".join(named)
        assert "pg_terminate_backend" in named[0], named[0]
        assert not env.sql("SELECT 1 FROM leader_lease"), \
            f"a lease stands while nobody leads: {env.sql('SELECT * FROM leader_lease')}"
        burned = epochs_of(env, "nircd-2")
        assert burned == 1, f"nircd-2 took {burned} epochs while the same session held the lock"
        assert b.alive(), b.tail()

        # The session lets go: nircd-2 leads without a restart.
        dba.stdin.write("ROLLBACK;\n")
        dba.stdin.flush()
        T.wait_until(lambda: not env.sql(
            f"SELECT 1 FROM pg_locks WHERE pid = {pid} AND relation = 'cutovers'::regclass"),
            10, "the psql session to let go of cutovers")

        def leads():
            r = env.ctl("--json", "status", controllers=[addr_b])
            if r.returncode != 0:
                return None
            st = json.loads(r.stdout)
            return st if st["controller"] == "nircd-2" else None

        st = T.wait_until(leads, 4 * LEASE_S + 5, "nircd-2 to lead once cutovers is free")
        assert st["epoch"] == int(env.sql("SELECT max(epoch) FROM epochs")[0][0]), st["epoch"]
        assert epochs_of(env, "nircd-2") == 2, epochs_of(env, "nircd-2")
        r = env.ctl("status", controllers=[addr_b])
        assert r.returncode == 0 and "is a standby" not in r.stderr, (r.returncode, r.stderr)
        assert env.sql("SELECT node, epoch FROM leader_lease") == [["nircd-2", str(st["epoch"])]]
        assert b.alive(), b.tail()
    finally:
        if dba.poll() is None:
            dba.kill()
            dba.wait()
    b.stop()
    T.private_pg("stop", PG_DIR)


if __name__ == "__main__":
    try:
        T.main([test_locked_rule_tables_are_named_and_the_standby_leads_once_free])
    finally:
        subprocess.run([T.PG_PRIVATE, "stop", PG_DIR], capture_output=True)
