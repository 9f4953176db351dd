#!/usr/bin/env python3
"""A standby that wins the election while the database accepts connections
and never answers them does not hang on the rule load: it gives the lock and
the lease back within the load's budget, says why it does not lead, and
leads once the database answers again.

nircd-1 leads and nircd-2 stands by (lease 2 s) on a private PostgreSQL. The
postmaster alone is stopped (SIGSTOP): the sessions open on it go on
answering, a new connection is accepted by the kernel and never answered.
nircd-1 is killed. nircd-2, on its open election session, takes the lock,
an epoch and the lease, and loads the rules on a new connection. Before, that
connection (PQconnectdb with no connect_timeout) waited as long as the
postmaster was stopped, while nircd-2 held the leader lock and a lease it
did not renew, and said nothing. Now the load has three quarters of a lease
in all: nircd-2 deletes the lease row, lets go of the lock, its `nircctl
status` says it cannot load the rules and why, its log says so once, and
its tries are spaced out (store/elect.h), not one epoch per period.

Runs its own PostgreSQL (the test stops its postmaster).
"""
import json
import os
import signal
import subprocess
import time

import nirclib as T

LEASE_S = 2
PG_PORT = int(T.PG_PORT) + 5
PG_DIR = os.path.join(T.RUN, "pg-rule-load-hung")


class Session:
    """A psql session opened before the postmaster stops: it still answers."""

    def __init__(self, db):
        self.p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-F", "|",
                                   T.conninfo(db, PG_PORT)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def sql(self, query):
        self.p.stdin.write(query.rstrip().rstrip(";") + ";\n\\echo @@end\n")
        self.p.stdin.flush()
        rows = []
        for line in self.p.stdout:
            line = line.rstrip("\n")
            if line == "@@end":
                return rows
            if line:
                rows.append(line.split("|"))
        raise AssertionError("the psql session ended")

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def postmaster_pid():
    with open(os.path.join(PG_DIR, "data", "postmaster.pid")) as f:
        return int(f.readline())


def test_a_hung_rule_load_gives_the_lease_back_and_says_why():
    T.private_pg("stop", PG_DIR)
    T.private_pg("start", PG_DIR, str(PG_PORT))
    env = T.Env("rule-load-hung", pg_port=PG_PORT,
                extra_nircd=f"[controller]\nlease_timeout = {LEASE_S}s")
    a, b, addr_b = env.start_leader_and_standby()
    watch = Session(env.db)
    master = postmaster_pid()
    try:
        assert watch.sql("SELECT node FROM leader_lease") == [["nircd-1"]]
        os.kill(master, signal.SIGSTOP)
        stopped = time.monotonic()
        a.kill()  # its session ends; the lease stands still

        last = {}

        def told():
            r = env.ctl("status", controllers=[addr_b])
            last["answer"] = f"exit {r.returncode}: {r.stderr.strip()}"
            ok = (r.returncode == T.EXIT_UNREACHABLE and "cannot load the rules" in r.stderr
                  and "no answer within" in r.stderr)
            return r if ok else None

        try:
            r = T.wait_until(told, 15, "status at nircd-2 to say why it does not lead")
        except AssertionError as e:
            raise AssertionError(f"{e}; it said: {last.get('answer')}; lease: "
                                 f"{watch.sql('SELECT node, epoch FROM leader_lease')}") from None
        print("nircctl status at nircd-2 with the postmaster stopped:\n" + r.stderr, flush=True)
        # Between tries nobody holds the lock or a lease.
        T.wait_until(lambda: not watch.sql(
            "SELECT 1 FROM leader_lease UNION ALL SELECT 1 FROM pg_locks WHERE "
            "locktype = 'advisory' AND objid = 1313428035 AND granted") or None, 10,
            "the lease row deleted and the leader lock free between nircd-2's tries")
        # Ten seconds of a stopped postmaster: tries spaced out, said once.
        time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
        took = int(watch.sql("SELECT count(*) FROM epochs WHERE node = 'nircd-2'")[0][0])
        log = open(b.log_path, errors="replace").read()
        said = [l for l in log.splitlines() if "cannot load the rules" in l]
        print(f"  in 10 s: {took} epochs taken by nircd-2, {len(said)} log line(s)", flush=True)
        assert 1 <= took <= 5, f"nircd-2 took {took} epochs in 10 s"
        assert len(said) == 1, "\n".join(said)
        assert b.alive(), b.tail()
    finally:
        os.kill(master, signal.SIGCONT)
        watch.close()

    def leads():
        r = env.ctl("--json", "status", controllers=[addr_b])
        return json.loads(r.stdout) if r.returncode == 0 else None

    st = T.wait_until(leads, 20, "nircd-2 to lead once the database answers")
    assert st["controller"] == "nircd-2", st["controller"]
    assert env.sql("SELECT node, epoch FROM leader_lease") == [["nircd-2", str(st["epoch"])]]
    b.stop()
    T.private_pg("stop", PG_DIR)


if __name__ == "__main__":
    try:
        T.main([test_a_hung_rule_load_gives_the_lease_back_and_says_why])
    finally:
        subprocess.run([T.PG_PRIVATE, "stop", PG_DIR], capture_output=True)
