#!/usr/bin/env python3
"""A deposed leader that still answers is refused by the agents.

nircd-1 leads epoch 1 and is paused (SIGSTOP) past its lease; nircd-2
takes over with epoch 2 and an operator cuts hunan over to henan there.
Then PostgreSQL stops and nircd-1 resumes: with no database to tell it
otherwise, it still believes it leads and answers agents with a Welcome
for epoch 1 (though, knowing it did not run for a lease, it takes no
operator change and issues nothing until its lease is confirmed). The henan agent, restarted with nircd-1 first in its list,
has seen epoch 2 (its state file says so): it must leave nircd-1 at the
Welcome, say why in one line, keep its route and report to nircd-2. Had
it stayed, nircd-2 would see the hub lost and re-home hunan, undoing the
cutover (the audit's finding).

Runs its own PostgreSQL (the test stops it), beside the shared fixture.
"""
import json
import os
import signal
import subprocess

import nirclib as T

LEASE_S = 2
PG_PORT = int(T.PG_PORT) + 13
PG_DIR = os.path.join(T.RUN, "pg-deposed")
PG = T.PG_PRIVATE
REFUSAL = ("controller nircd-1 leads epoch {old}, older than epoch {new} this agent has seen: "
           "a deposed leader; trying the next controller")


def status_at(env, addr):
    r = env.ctl("--json", "status", controllers=[addr])
    return json.loads(r.stdout) if r.returncode == 0 else None


def site_at(env, addr, slug):
    st = status_at(env, addr)
    return [s for s in st["sites"] if s["slug"] == slug][0] if st else None


def test_agent_leaves_a_deposed_leader_that_still_answers():
    T.private_pg("stop", PG_DIR)
    T.private_pg("start", PG_DIR, str(PG_PORT))
    env = T.Env("deposed", clock_speed=1, clock_start="2020-01-23T10:00:00+08:00",
                pg_port=PG_PORT, extra_nircd=f"[controller]\nlease_timeout = {LEASE_S}s")
    a_addr = env.addr
    a, _, b_addr = env.start_leader_and_standby()
    both = f"{a_addr},{b_addr}"
    for s in ("hunan", "henan"):
        env.start_agent(s, controllers=both)

    def served_at(addr, node):
        def f():
            st = status_at(env, addr)
            return st if st and st["controller"] == node and all(
                x["link"] == "online" and x["report_age_ms"] >= 0
                for x in st["sites"] if x["slug"] in ("hunan", "henan")) else None
        return f

    epoch_a = T.wait_until(served_at(a_addr, "nircd-1"), 20, "both agents at nircd-1")["epoch"]

    a.signal(signal.SIGSTOP)
    epoch_b = T.wait_until(served_at(b_addr, "nircd-2"), 30,
                           "nircd-2 to lead and serve both agents")["epoch"]
    assert epoch_b > epoch_a, (epoch_a, epoch_b)
    r = env.ctl("cutover", "hunan", "--to", "henan", "--reason", "flooding", "--force",
                controllers=[b_addr])
    assert r.returncode == 0, r.stdout + r.stderr
    state_path = os.path.join(env.dir, "state-henan.json")

    def henan_state():
        st = json.load(open(state_path))
        return st if st["seen_epoch"] == epoch_b and st["route_state"]["inbound"] else None

    saved = T.wait_until(henan_state, 10, "henan to save the cutover's route and epoch")

    T.private_pg("stop", PG_DIR)
    a.signal(signal.SIGCONT)
    # Cut off from the database, the resumed nircd-1 still believes it
    # leads its old epoch, on memory, and welcomes agents: the situation
    # the agents must see through.
    def a_log_has(text):
        return lambda: text in open(a.log_path, errors="replace").read() or None

    T.wait_until(a_log_has(f"database out of reach: still leading epoch {epoch_a} on memory"), 20,
                 "the resumed nircd-1 to lead on memory")
    # But it knows it did not run for a while, so it decides nothing until
    # its lease is confirmed: an operator change asked of it alone is
    # refused, nothing changed.
    r = env.ctl("cutover", "hunan", "--to", "shaanxi", "--reason", "asked of the old leader",
                "--force", controllers=[a_addr])
    assert r.returncode != 0, r.stdout + r.stderr
    # Within a lease of its resuming it says it cannot confirm its lease
    # now; after a lease of that, why, with the fix (the leadership alarm's
    # words, elect.c): nircctl asks again meanwhile and shows either.
    assert (f"controller nircd-1 leads epoch {epoch_a} but cannot confirm its lease right now; "
            "nothing was changed") in r.stderr or (
            f"controller nircd-1 is leading epoch {epoch_a} but issuing nothing for " in r.stderr
            and "(paused?) and cannot confirm its lease while the database is out of reach: "
                "restore the database" in r.stderr), r.stderr
    a_log = open(a.log_path, errors="replace").read()
    assert "request cutover" not in a_log, a.tail()
    assert "did not run for" in a_log and "issuing nothing until its lease is confirmed" in a_log

    env.agents["henan"].stop()
    log_path = env.agents["henan"].log_path
    start = os.path.getsize(log_path)
    env.start_agent("henan", controllers=both)

    def new_log():
        with open(log_path, errors="replace") as f:
            f.seek(start)
            return f.read()

    def connected():
        return [l for l in new_log().splitlines() if " connected to " in l] or None

    line = T.wait_until(connected, 20, "the restarted henan agent to connect")[0]
    assert f"connected to {b_addr} (nircd-2, epoch {epoch_b})" in line, new_log()
    log = new_log()
    refusal = REFUSAL.format(old=epoch_a, new=epoch_b)
    assert log.count(refusal) == 1, log
    assert log.index(refusal) < log.index(line), log
    assert f"restored saved route ({saved['route_state']['epoch']}, " in log, log
    # Fail-static: the route (with hunan as inbound source) is as it was.
    assert json.load(open(state_path))["route_state"] == saved["route_state"]
    # nircd-1 heard why the agent left.
    assert refusal in open(a.log_path, errors="replace").read(), a.tail()

    # The real leader has the hub back, so the cutover stands.
    T.wait_until(lambda: (lambda s: s and s["link"] == "online" and s["report_age_ms"] >= 0)(
        site_at(env, b_addr, "henan")) or None, 10, "henan online at nircd-2")
    hunan = site_at(env, b_addr, "hunan")
    assert [x["site"] for x in hunan["route"]] == ["henan"], hunan

    # With the database back, nircd-1 learns it lost its lease and leaves.
    T.private_pg("start", PG_DIR, str(PG_PORT))
    T.wait_until(lambda: not a.alive() or None, 30, "nircd-1 to step down")
    assert a.p.returncode == 75, a.tail()
    env.close()
    T.private_pg("stop", PG_DIR)


if __name__ == "__main__":
    try:
        T.main([test_agent_leaves_a_deposed_leader_that_still_answers])
    finally:
        subprocess.run([PG, "stop", PG_DIR], capture_output=True)
