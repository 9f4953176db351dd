#!/usr/bin/env python3
"""A controller leads only while its own session holds the leader lock.

nircd-1 leads epoch 1 and nircd-2 stands by. Only the PostgreSQL backend
that holds nircd-1's advisory lock is frozen (SIGSTOP; the rest of the
cluster works). nircd-1's renewal goes unanswered, it drops that
connection, reconnects and finds its old session still holding the lock.
It may ask PostgreSQL to end that session, but a stopped backend ends only
once it is continued: until its new session holds the lock, nircd-1 must
not renew the lease. (The audit found it renewing on the new session
anyway, and, once the frozen backend was continued and went away with the
lock, leading with no session holding the lock at all while the lease it
renewed kept every standby out.)

The backend is then continued. Who takes the lock next, nircd-1 or
nircd-2 (which has watched the lease run out meanwhile), is a race;
whoever it is, exactly one controller says it leads, its own leader
session holds the lock, and the lease names it and its epoch.

While frozen, nircd-1 still says it leads but issues nothing: its answers
(`nircctl alarms` at it) name the frozen session and the fix, and it raises
a leadership alarm (critical), on record and cleared once a controller
leads with the lock.

Runs its own PostgreSQL (the test freezes one of its backends: a stopped
backend would also hold up other tests' DROP DATABASE on a shared one).
"""
import json
import os
import signal
import subprocess

import nirclib as T

LOCK = 1313428035
LEASE_S = 2
PG_PORT = int(T.PG_PORT) + 15
PG_DIR = os.path.join(T.RUN, "pg-frozen-lock")


THIS_DB = "database = (SELECT oid FROM pg_database WHERE datname = current_database())"


def lock_holders(env):
    """Backend pids holding the leader's advisory lock in the test's database."""
    return [int(r[0]) for r in env.sql(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND "
        f"objid = {LOCK} AND objsubid = 1 AND granted AND {THIS_DB}")]


def socket_ports(proc):
    """The local TCP ports of the sockets proc has open."""
    fd_dir = f"/proc/{proc.p.pid}/fd"
    inodes = set()
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for cols in (line.split() for line in f.readlines()[1:]):
                if cols[9] in inodes:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def leader_sessions(env, proc):
    """The backend pids of proc's open election connections (application
    name nircd-leader), matched by the client port PostgreSQL sees."""
    if not proc.alive():
        return set()
    ports = socket_ports(proc)
    rows = env.sql("SELECT pid, client_port FROM pg_stat_activity WHERE "
                   "application_name = 'nircd-leader' AND datname = current_database()")
    return {int(pid) for pid, port in rows if int(port) in ports}


def says_it_leads(env, addr, node):
    """The epoch `node` at addr says it leads, or None. A standby sends
    nircctl on to the leader, whose answer names the leader, not node."""
    r = env.ctl("--json", "status", controllers=[addr])
    if r.returncode != 0:
        return None
    st = json.loads(r.stdout)
    return st["epoch"] if st["controller"] == node else None


def leadership_alarms(env, addr):
    """The leadership alarms on record, asked of the controller at addr."""
    r = env.ctl("--json", "alarms", "--all", controllers=[addr])
    if r.returncode not in (0, 1):
        return []
    return [x for x in json.loads(r.stdout)["alarms"] if x["kind"] == "leadership"]


def test_leader_leads_only_with_the_lock():
    T.private_pg("stop", PG_DIR)
    T.private_pg("start", PG_DIR, str(PG_PORT))
    env = T.Env("frozen-lock", pg_port=PG_PORT,
                extra_nircd=f"[controller]\nlease_timeout = {LEASE_S}s\n[alarms]\nclear_after = 1s")
    a, b, addr_b = env.start_leader_and_standby()
    ctls = {"nircd-1": (a, env.addr), "nircd-2": (b, addr_b)}

    def a_holds():
        holders, mine = lock_holders(env), leader_sessions(env, a)
        return holders[0] if len(holders) == 1 and holders[0] in mine else None

    frozen = T.wait_until(a_holds, 10, "nircd-1's leader session to hold the lock")
    # A bystander: the same key's lock in another database of the cluster
    # (another deployment's leader). The standby's eviction of the frozen
    # leader must not end it: an advisory lock is per database, pg_locks
    # lists them all. (It did: integration.standby's lock holder was ended
    # by a controller of a test running beside it.)
    bystander = subprocess.Popen(["psql", "-XAtq", T.conninfo("postgres", PG_PORT), "-c",
                                  f"SELECT pg_advisory_lock({LOCK})", "-c",
                                  "SELECT pg_sleep(120)"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    T.wait_until(lambda: env.sql(
        "SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE "
        f"l.locktype = 'advisory' AND l.objid = {LOCK} AND l.granted AND "
        "d.datname = 'postgres'") or None, 10, "the bystander's lock in database postgres")
    os.kill(frozen, signal.SIGSTOP)
    try:
        new = T.wait_until(lambda: leader_sessions(env, a) - {frozen}, 15,
                           "nircd-1 to give up the frozen session and connect again")

        # Either nircd-1 renews the lease on its new session, which cannot
        # hold the lock (the frozen one does), or the lease stands still
        # for a whole lease after that session began.
        def renewed_or_still():
            pids = leader_sessions(env, a) - {frozen}
            if not pids:
                return None
            rows = env.sql(
                "SELECT l.renewed_at > s.backend_start, now() - s.backend_start > "
                f"interval '{LEASE_S} s' FROM leader_lease l, pg_stat_activity s "
                f"WHERE s.pid = {min(pids)}")
            return rows and (rows[0][0] == "t" or rows[0][1] == "t") and rows[0]

        renewed, _ = T.wait_until(renewed_or_still, 15, "the lease renewed or run out")
        assert lock_holders(env) == [frozen], (lock_holders(env), frozen)

        # nircd-2 asked PostgreSQL to end the frozen holder a lease ago and
        # it has not: nobody leads until it runs. nircd-2's answers name it
        # and the fix (before: only a log line, and "an election is running").
        def b_names_it():
            r = env.ctl("status", controllers=[addr_b])
            return r if f"leader lock is held by PostgreSQL session pid {frozen} " in r.stderr \
                else None

        r = T.wait_until(b_names_it, 10, f"nircd-2 to name the frozen lock holder {frozen}")
        print("nircctl status at nircd-2 while the lock's holder is frozen:\n" + r.stderr,
              flush=True)
        assert r.returncode == T.EXIT_UNREACHABLE and "kill -CONT" in r.stderr, r.stderr

        # And nircd-1, which still says it leads and issues nothing, says why
        # to an operator who asks it, with the fix, and raises a leadership
        # alarm (webhooks, /metrics; checked on record below). Before: a log
        # line, and answers saying "try again in a few seconds".
        said = f"old session (pid {frozen}) still holds the leader lock"
        # nircctl retries a leader that cannot confirm its lease: asked
        # before a whole lease of issuing nothing, its first answer is still
        # the generic "try again" and the second the reason. Wait for an
        # answer that is the reason from the start.
        r = T.wait_until(lambda: (lambda r: said in r.stderr and "try again" not in r.stderr and r)(
            env.ctl("alarms", controllers=[env.addr])), 10, "nircd-1 to say why it issues nothing")
        print("nircctl alarms at nircd-1 while its old session is frozen:\n" + r.stderr, flush=True)
        assert f"kill -CONT {frozen}" in r.stderr and "try again" not in r.stderr, r.stderr
    finally:
        os.kill(frozen, signal.SIGCONT)
    T.wait_until(lambda: not env.sql(f"SELECT 1 FROM pg_stat_activity WHERE pid = {frozen}"),
                 15, f"the continued backend {frozen} to end")

    def agreement():
        leaders = {}
        for node, (proc, addr) in ctls.items():
            epoch = says_it_leads(env, addr, node) if proc.alive() else None
            if epoch is not None:
                leaders[node] = epoch
        holders = lock_holders(env)
        lease = env.sql("SELECT node, epoch, renewed_at FROM leader_lease")
        state = f"leaders {leaders}, lock held by {holders}, lease {lease}"
        if len(leaders) != 1:
            raise AssertionError(f"not exactly one leader: {state}")
        (node, epoch), = leaders.items()
        mine = leader_sessions(env, ctls[node][0])
        if len(holders) != 1 or holders[0] not in mine:
            raise AssertionError(f"{node} says it leads epoch {epoch} but its leader session "
                                 f"{sorted(mine)} does not hold the lock: {state}")
        if [r[:2] for r in lease] != [[node, str(epoch)]]:
            raise AssertionError(f"the lease does not name {node}, epoch {epoch}: {state}")
        return node, epoch, lease[0][2]

    what = "exactly one leader, its own session holding the lock, named by the lease"
    node, epoch, renewed_at = T.wait_until(agreement, 20, what)
    # The alarm on record, cleared: by nircd-1 issuing again, or by nircd-2,
    # which adopted it and does not observe it (clear_after 1 s).
    (al,) = T.wait_until(lambda: [x for x in leadership_alarms(env, ctls[node][1])
                                  if not x["active"]] or None, 10,
                         f"the leadership alarm cleared on record ({node} leads)")
    assert al["subject"] == "nircd-1" and al["severity"] == "critical", al
    assert said in al["message"] and f"kill -CONT {frozen}" in al["message"], al
    # And it stays so while the leader renews its lease.
    T.wait_until(lambda: agreement()[2] != renewed_at and agreement(), 10, what + " (renewed)")
    assert renewed != "t", f"nircd-1 renewed the lease on session {new}, which had not the lock"
    a_log = open(a.log_path, errors="replace").read()
    if node == "nircd-1":
        assert epoch == 1, epoch
        assert b.alive(), b.tail()
        assert ("asked PostgreSQL to end this controller's old session (pid "
                f"{frozen}), which still holds the lock") in a_log, a.tail()
    else:
        # nircd-2 took the lock first: nircd-1 found it taken and stepped down.
        T.wait_until(lambda: not a.alive() or None, 10, "nircd-1 to step down")
        assert a.p.returncode == 75, a.tail()
    assert "ended this controller's own stale session" not in a_log, a.tail()
    b_log = open(b.log_path, errors="replace").read()
    assert "asked PostgreSQL to end" in b_log, "nircd-2 never evicted: the bystander shows nothing"
    assert bystander.poll() is None, "a controller ended another database's lock holder"
    bystander.kill()
    bystander.wait()
    a.stop()
    b.stop()
    T.private_pg("stop", PG_DIR)


if __name__ == "__main__":
    try:
        T.main([test_leader_leads_only_with_the_lock])
    finally:
        subprocess.run([T.PG_PRIVATE, "stop", PG_DIR], capture_output=True)
