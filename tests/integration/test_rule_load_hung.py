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

Then the other way round: nircd-1 is started again and stands by, the
postmaster is stopped again and nircd-2 killed; nircd-1 wins and its load
hangs, and it is stopped with SIGTERM (as systemd stops it) in the middle.
Before, SIGTERM waited for the load's budget to run out (three quarters of
a lease: 45 s with a lease of 60 s, and then half a lease for each of the
lease's deletion and the unlock on a database that does not answer), and
its log said after "shutting down" that it would try again. Now the stop
ends the load at once: nircd-1 exits 0 at once, its log says it stopped
during the rule load and that the lease is deleted and the lock let go, and
the database shows neither; nircd-2, started again once the postmaster
runs, leads at once (no lease to wait out).

Last, a load's own backend stopped (SIGSTOP of that backend alone) after it
took the SHARE locks: nircd-1 stands by again, a session holds link_events
(read after the locks), nircd-2 is killed, nircd-1's load waits on
link_events and its backend is stopped there. The load's budget runs out
and it is given up, but closing its connection does not end a backend that
does not run: it keeps the SHARE locks, and every write to the rule tables
waits for it. Before, nothing said so (the load's error blamed the
database). Now the error names the load's session (pid), PostgreSQL is
asked to end it, the log says once that it holds SHARE locks on the rule
tables and how to end it (kill -CONT, or restart PostgreSQL); the next try
leads (SHARE admits SHARE: the rules are read whole), and once the backend
runs again it ends and the log says so. Not in the log only: /metrics
(nirc_rule_load_stuck_backend, the pid) says it on a standby and a leader, a
standby's answers add it, and the leader raises a rule_load alarm with the
pid, the tables and the fix, cleared once the backend has ended. A leader
finds any controller's given-up load in the database (a standby's, or one
of a controller that restarted since): nircd-1 restarted, knowing nothing of
the pid, keeps the alarm raised until the backend ends.

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

    # A controller stopped (SIGTERM) while its rule load hangs.
    a = env.start_controller(name="nircd-1")
    assert env.controller_status.startswith("standby"), env.controller_status
    watch = Session(env.db)
    watch.sql("SELECT 1")  # connected before the postmaster stops
    try:
        os.kill(master, signal.SIGSTOP)
        b.kill()
        T.wait_until(lambda: watch.sql("SELECT node FROM leader_lease") == [["nircd-1"]] or None,
                     15, "nircd-1 to win the election and start its rule load")
        t = time.monotonic()
        a.signal(signal.SIGTERM)
        try:
            code = a.p.wait(10)
        except Exception:
            raise AssertionError("nircd-1 did not exit within 10 s of SIGTERM:\n" + a.tail())
        took = time.monotonic() - t
        log = open(a.log_path, errors="replace").read()
        stopped = log[log.rindex("shutting down"):]
        print(f"  nircd-1 stopped by SIGTERM during its hung rule load: exit {code} after "
              f"{took:.2f} s:\n{stopped}", flush=True)
        assert code == 0, (code, stopped)
        assert took < 0.8, f"nircd-1 took {took:.2f} s to stop"
        assert "stopping during the rule load of epoch" in stopped, stopped
        assert "is deleted and the leader lock let go" in stopped, stopped
        assert "cannot load the rules" not in stopped, stopped
        assert not watch.sql(
            "SELECT 1 FROM leader_lease UNION ALL SELECT 1 FROM pg_locks WHERE "
            "locktype = 'advisory' AND objid = 1313428035 AND granted"), "lease or lock left"
    finally:
        os.kill(master, signal.SIGCONT)
        watch.close()
    b = env.start_controller(conf=os.path.join(env.dir, "nircd-2.conf"), name="nircd-2")
    assert env.controller_status.startswith("leader"), env.controller_status

    # A load's backend stopped after it took the SHARE locks. nircd-1 gets a
    # page (its /metrics) and alarms cleared 1 s after their condition.
    http_a = f"127.0.0.1:{T.free_port()}"
    env.extra_nircd = (f"[controller]\nlease_timeout = {LEASE_S}s\n[alarms]\nclear_after = 1s\n"
                       f"[http]\nlisten = {http_a}\n")
    env.controller_conf("nircd-1", env.addr, "nircd.conf")
    a = env.start_controller(name="nircd-1")
    assert T.metric(http_a, "nirc_rule_load_stuck_backend") == 0
    assert env.controller_status.startswith("standby"), env.controller_status
    blocker, watch, pid = Session(env.db), Session(env.db), None
    try:
        blocker.sql("BEGIN; LOCK TABLE link_events IN ACCESS EXCLUSIVE MODE")
        b.kill()
        pid = int(T.wait_until(lambda: watch.sql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'nircd-rule-load' AND "
            "wait_event_type = 'Lock'"), 15, "nircd-1's rule load to wait on link_events")[0][0])
        os.kill(pid, signal.SIGSTOP)
        blocker.sql("ROLLBACK")
        told = f"still holds SHARE locks on cutovers, overflow_rules, route_exclusions, " \
            f"route_holds, route_return_holds, schedules in its session (pid {pid})"
        T.wait_until(lambda: told in open(a.log_path, errors="replace").read(), 15,
                     f"nircd-1 to say that its load's backend {pid} holds the SHARE locks")
        log = open(a.log_path, errors="replace").read()
        print("  " + "\n  ".join(l for l in log.splitlines() if str(pid) in l), flush=True)
        assert f"from its session (pid {pid})" in log, log
        assert f"pg_terminate_backend({pid})" in log and f"kill -CONT {pid}" in log, log
        # Not in the log only: /metrics (a standby or the leader), and while
        # nircd-1 still stands by (it tries again within a second or two),
        # its answers.
        assert T.metric(http_a, "nirc_rule_load_stuck_backend") == pid
        r = env.ctl("status", controllers=[env.addr])
        if r.returncode != 0:
            assert f"also: rule load backend pid {pid}" in r.stderr, r.stderr
            print("  nircctl status at nircd-1, still a standby:\n" + r.stderr, flush=True)
        st = T.wait_until(lambda: (lambda r: r.returncode == 0 and json.loads(r.stdout))(
            env.ctl("--json", "status", controllers=[env.addr])), 15,
            "nircd-1 to lead beside the stopped backend")
        assert st["controller"] == "nircd-1", st["controller"]

        def stuck_alarms():
            r = env.ctl("--json", "alarms")
            assert r.returncode in (0, 1), (r.returncode, r.stderr)
            return [x for x in json.loads(r.stdout)["alarms"] if x["kind"] == "rule_load"]

        (al,) = T.wait_until(stuck_alarms, 5, "nircd-1, leading, to raise the rule_load alarm")
        print(f"  alarm: {al['subject']}: {al['message']}", flush=True)
        assert al["subject"] == "nircd-1", al
        assert f"pid {pid}" in al["message"] and f"kill -CONT {pid}" in al["message"], al
        assert "route_return_holds" in al["message"], al
        # The leader an operator asks knows of such a backend whoever's load
        # it was: nircd-1 restarted knows nothing of pid (its watch was the
        # old process's memory), leads, and finds it in the database. Before,
        # the alarm it adopted from its predecessor cleared after clear_after
        # (1 s) as nothing observed it, while the backend still held the
        # locks; a standby's stuck load never reached the leader at all.
        a.stop()
        a = env.start_controller(name="nircd-1")
        assert env.controller_status.startswith("leader"), env.controller_status
        time.sleep(2)  # twice clear_after: an alarm nothing observes is gone
        (kept,) = stuck_alarms()
        assert kept["id"] == al["id"] and f"pid {pid}" in kept["message"], (al, kept)
        os.kill(pid, signal.SIGCONT)
        T.wait_until(lambda: not env.sql(f"SELECT 1 FROM pg_stat_activity WHERE pid = {pid}"),
                     15, f"backend {pid} to end once continued")
        assert T.metric(http_a, "nirc_rule_load_stuck_backend") == 0
        T.wait_until(lambda: not stuck_alarms(), 5, "the rule_load alarm to clear")
        pid = None
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)
        blocker.close()
        watch.close()
    a.stop()
    T.private_pg("stop", PG_DIR)


if __name__ == "__main__":
    try:
        T.main([test_a_hung_rule_load_gives_the_lease_back_and_says_why])
    finally:
        subprocess.run([T.PG_PRIVATE, "stop", PG_DIR], capture_output=True)
