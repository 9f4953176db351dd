#!/usr/bin/env python3
"""A standby that wins the election but cannot load the rules, because a
session holds a lock on a rule table, says who holds it and how to end it,
and leads once that session lets go, without a restart.

nircd-1 leads and nircd-2 stands by (lease 2 s). A psql session, like a
DBA's `BEGIN; UPDATE cutovers ...` left open, takes ROW EXCLUSIVE on
cutovers and stays in its transaction. nircd-1 is killed (SIGKILL).
nircd-2 takes the leader lock and a new epoch, and its rule load (SHARE
locks, waiting at most half a lease here) times out. Before, it gave the lock back and
tried again every period, for ever: a new epoch each try, the same error
logged each time, the lease left naming nircd-2 itself (so nircctl at
nircd-2 was told "the leader is nircd-2"), and nothing naming the session
in the way.

Now nircd-2's log names the session holding the lock once (not every
period), `nircctl status` and `--json status` at nircd-2 exit 3 and say
the same on standard error (pid, application, client address, state, since
when, and the pg_terminate_backend to end it), and no epoch is taken while
the same session stands in the way.

A second obstacle stands on schedules: a session waiting for ACCESS
EXCLUSIVE behind a reader (an ALTER TABLE behind a long SELECT). It holds
nothing, but the load's SHARE lock queues behind it. Before, only granted
locks were named, so this one was not. Now it is named as waiting ahead of
the load, with the session it waits for. nircd-2's status page, the
/status.json document and /metrics (nirc_leader_blocked{reason=
"rules_locked"} 1) say why it does not lead; before they did not.

When the cutovers session rolls back, the waiter still stands: nircd-2
says so, with no new epoch; once the waiter is ended, nircd-2 leads within
a lease or two, and status says so.

Runs its own PostgreSQL (a session of the test's holds a table lock there).
"""
import json
import os
import subprocess
import time
import urllib.request

import nirclib as T

LEASE_S = 2
PG_PORT = int(T.PG_PORT) + 19
PG_DIR = os.path.join(T.RUN, "pg-rules-locked")


def epochs_of(env, node):
    return int(env.sql(f"SELECT count(*) FROM epochs WHERE node = '{node}'")[0][0])


def test_locked_rule_tables_are_named_and_the_standby_leads_once_free():
    T.private_pg("stop", PG_DIR)
    T.private_pg("start", PG_DIR, str(PG_PORT))
    t0 = time.monotonic()
    lease = f"[controller]\nlease_timeout = {LEASE_S}s\n"
    http_b = f"127.0.0.1:{T.free_port()}"
    env = T.Env("rules-locked", pg_port=PG_PORT, extra_nircd=lease)
    addr_b = f"127.0.0.1:{T.listen_port()}"
    a = env.start_controller(name="nircd-1")
    env.extra_nircd = lease + f"[http]\nlisten = {http_b}\n"
    b = env.start_controller(conf=env.controller_conf("nircd-2", addr_b, "nircd-2.conf"),
                             name="nircd-2")
    assert env.controller_status.startswith("standby"), env.controller_status

    # The DBA's session: in a transaction, holding ROW EXCLUSIVE on cutovers,
    # idle (psql waits on its standard input for more).
    def session(sql):
        p = subprocess.Popen(["psql", "-X", "-q", T.conninfo(env.db, PG_PORT)],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, text=True)
        p.stdin.write(sql)
        p.stdin.flush()
        return p

    def locker(table, mode, granted):
        return T.wait_until(lambda: env.sql(
            "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid "
            f"WHERE l.relation = '{table}'::regclass AND l.mode = '{mode}' "
            f"AND l.granted = {granted} AND s.application_name = 'psql' AND "
            "l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"), 10,
            f"a psql session's {mode} on {table} (granted: {granted})")[0][0]

    dba = session("BEGIN;\nLOCK TABLE cutovers IN ROW EXCLUSIVE MODE;\n")
    reader = session("BEGIN;\nSELECT count(*) FROM schedules;\n")
    waiter = None
    try:
        pid = int(locker("cutovers", "RowExclusiveLock", "true"))
        rpid = int(locker("schedules", "AccessShareLock", "true"))
        waiter = session("BEGIN;\nLOCK TABLE schedules IN ACCESS EXCLUSIVE MODE;\n")
        wpid = int(locker("schedules", "AccessExclusiveLock", "false"))
        before = epochs_of(env, "nircd-2")
        assert before == 0, before

        print(f"  sessions ready {time.monotonic() - t0:.1f} s after the start", flush=True)
        a.kill()  # SIGKILL: its sessions end, the lease stands still
        killed = env.sql("SELECT now()")[0][0]

        # What an operator at nircd-2 is told while nobody leads.
        want = [f"table cutovers is locked by pid {pid} (psql, 127.0.0.1, idle in transaction",
                f"SELECT pg_terminate_backend({pid})", "cannot load the rules",
                "nircd-2 won the election",
                f"pid {wpid} (psql, 127.0.0.1, active since",
                "waits for table schedules, ahead of the load", f"behind pid {rpid}",
                f"SELECT pg_terminate_backend({wpid})", "it leads once they let go"]

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
        assert "no controller leads now" in r.stderr and "Is nircd running" not in r.stderr, \
            r.stderr
        assert f"the leader is {addr_b}" not in r.stderr, \
            f"nircd-2 names itself as the leader while it does not lead: {r.stderr}"
        r = told(["--json", "status"])
        assert r is not None, "--json status at nircd-2 does not say why nobody leads"
        assert r.stdout == "", "exit 3 prints nothing on stdout (docs/CLI-JSON.md)"
        # The standby's page, status document and metrics say it too.
        sj = T.status_json(http_b)
        assert sj["role"] == "standby" and sj["leader_blocked"] == "rules_locked", sj
        assert f"locked by pid {pid}" in sj["leader_why"], sj["leader_why"]
        m = T.metrics(http_b)
        assert m.get('nirc_leader_blocked{reason="rules_locked"}') == 1, m
        assert m.get('nirc_leader_blocked{reason="rules_load"}') == 0, m
        page = urllib.request.urlopen(f"http://{http_b}/", timeout=5).read().decode()
        assert f"ahead of the load, behind pid {rpid}" in page, page[-2000:]

        # The log names the holder once, however many periods pass: the
        # standby looks every lease / 4, so three leases after the kill it
        # has met the same holders on about eight periods.
        print(f"  named {time.monotonic() - t0:.1f} s after the start", flush=True)
        T.wait_until(lambda: env.sql(
            f"SELECT 1 WHERE now() - '{killed}'::timestamptz > interval '{3 * LEASE_S} s'"),
            3 * LEASE_S + 10, "three leases of the database's clock since nircd-1 was killed")
        why = T.status_json(http_b)["leader_why"] or ""
        assert all(w in why for w in want), f"nircd-2 no longer names the holders: {why}"
        log = open(b.log_path, errors="replace").read()
        named = [l for l in log.splitlines() if f"locked by pid {pid}" in l]
        assert len(named) == 1, "the holder is logged once per distinct set:\n" + "\n".join(named)
        assert "pg_terminate_backend" in named[0], named[0]
        assert not env.sql("SELECT 1 FROM leader_lease"), \
            f"a lease stands while nobody leads: {env.sql('SELECT * FROM leader_lease')}"
        burned = epochs_of(env, "nircd-2")
        assert burned == 1, f"nircd-2 took {burned} epochs while the same session held the lock"
        assert b.alive(), b.tail()

        # The cutovers session lets go; the waiter still stands in the way.
        dba.stdin.write("ROLLBACK;\n")
        dba.stdin.flush()
        T.wait_until(lambda: (lambda w: f"pid {pid} (" not in w and f"pid {wpid} (" in w)(
            T.status_json(http_b)["leader_why"] or ""), 10,
            "nircd-2's status document to name only the waiter")
        assert epochs_of(env, "nircd-2") == 1, epochs_of(env, "nircd-2")
        print(f"  cutovers let go {time.monotonic() - t0:.1f} s after the start", flush=True)
        # The waiter is ended: nircd-2 leads without a restart.
        env.sql(f"SELECT pg_terminate_backend({wpid})")

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
        assert T.metrics(http_b).get('nirc_leader_blocked{reason="rules_locked"}') == 0
    finally:
        for p in (dba, reader, waiter):
            if p and p.poll() is None:
                p.kill()
                p.wait()
    b.stop()
    T.private_pg("stop", PG_DIR)


if __name__ == "__main__":
    try:
        T.main([test_locked_rule_tables_are_named_and_the_standby_leads_once_free])
    finally:
        subprocess.run([T.PG_PRIVATE, "stop", PG_DIR], capture_output=True)
