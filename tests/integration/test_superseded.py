#!/usr/bin/env python3
"""An operator's change kept in a dead leader's outage journal is not
carried out later by surprise, and every step says what is true.

nircd-1 leads epoch E1 with a standby nircd-2. PostgreSQL stops; an
operator cuts hubei over to shaanxi at nircd-1: it is done, and the reply
says it is recorded only in nircd-1's outage journal, which a standby does
not read (exit 4). nircd-1 is killed, PostgreSQL comes back, nircd-2 leads
epoch E2 without the cutover and sends hubei home: audited with cause
`no-rule` (before: `schedule-end`, a rule that never ended). nircd-1
restarts and replays its journal: the cutover must not become an active
cutover in the database (before, it did, and the next failover carried
it out: calls moved to shaanxi without anyone asking, hours later); the
audit trail says it was superseded. Killing nircd-2 then makes nircd-1
lead again: it loads no active cutover, and raises the superseded alarm
too, as the entry is less than 30 minutes old.

Runs its own PostgreSQL (the test stops it), beside the shared fixture.
"""
import json
import os
import time

import nirclib as T

LEASE_S = 2
CLEAR_S = 2  # an alarm nobody observes any more clears this long after
PG_PORT = int(T.PG_PORT) + 17
PG_DIR = os.path.join(T.RUN, "pg-superseded")
SITES = ("hubei", "shaanxi")


def status_at(env, addr):
    r = env.ctl("--json", "status", controllers=[addr])
    return json.loads(r.stdout) if r.returncode == 0 else None


def route_at(env, addr, slug):
    st = status_at(env, addr)
    site = [s for s in st["sites"] if s["slug"] == slug][0] if st else None
    return [x["site"] for x in site["route"]] if site and site["route"] is not None else None


def log_after(proc, start):
    with open(proc.log_path, errors="replace") as f:
        f.seek(start)
        return f.read()


def test_journaled_cutover_of_a_dead_leader_is_superseded_not_resurrected():
    T.private_pg("stop", PG_DIR)
    T.private_pg("start", PG_DIR, str(PG_PORT))
    env = T.Env("superseded", clock_speed=1, clock_start="2020-01-23T10:00:00+08:00",
                pg_port=PG_PORT, extra_nircd=f"[controller]\nlease_timeout = {LEASE_S}s\n"
                f"[alarms]\nclear_after = {CLEAR_S}s")
    a_addr = env.addr
    a, b, b_addr = env.start_leader_and_standby()
    for s in SITES:
        env.start_agent(s, controllers=f"{a_addr},{b_addr}")

    def served_at(addr, node):
        def f():
            st = status_at(env, addr)
            return st if st and st["controller"] == node and all(
                x["link"] == "online" and x["report_age_ms"] >= 0
                for x in st["sites"] if x["slug"] in SITES) else None
        return f

    epoch_a = T.wait_until(served_at(a_addr, "nircd-1"), 20, "both agents at nircd-1")["epoch"]

    T.private_pg("stop", PG_DIR)
    # Asked at the standby, which sends nircctl on to the leader: the reply
    # names the leader whose journal holds the change, not "this
    # controller" (read as the one the operator named, nircd-2).
    r = env.ctl("--json", "cutover", "hubei", "--to", "shaanxi", "--reason", "Wuhan lockdown",
                "--force", controllers=[b_addr])
    assert r.returncode == 4, f"cutover during the outage: {r.returncode}\n{r.stdout}{r.stderr}"
    reply = json.loads(r.stdout)
    assert reply["applied"] == 2 and reply["failed"] == 0 and reply["pending"] == 0, reply
    assert "recorded only in the outage journal of controller nircd-1, the leader that took " \
        "it," in reply["warning"] and "nircd-2" not in reply["warning"], reply
    assert "a standby that takes over does not know this change" in reply["warning"], reply
    cutover_id = reply["cutover_id"]
    assert route_at(env, a_addr, "hubei") == ["shaanxi"]

    a.kill()
    T.private_pg("start", PG_DIR, str(PG_PORT))
    epoch_b = T.wait_until(served_at(b_addr, "nircd-2"), 30,
                           "nircd-2 to lead and serve both agents")["epoch"]
    assert epoch_b > epoch_a, (epoch_a, epoch_b)
    # nircd-2 never heard of the cutover: hubei goes home, and the trail
    # says why in words that are true.
    T.wait_until(lambda: route_at(env, b_addr, "hubei") == ["hubei"] or None, 20,
                 "nircd-2 to send hubei home")
    rows = T.wait_until(lambda: env.sql(
        "SELECT detail->>'cause', detail->>'why' FROM audit_log WHERE action = 'route' AND "
        "target = 'hubei' AND detail->>'after' = 'home'") or None, 10,
        "the audit row of hubei's route home")
    assert rows[0][0] == "no-rule", rows
    assert f"(epoch {epoch_a}) is no rule's in the database" in rows[0][1], rows
    # and an alarm says it where the operator looks, once hubei's agent
    # acknowledged home (until then it says hubei is being sent home).
    def routing_alarm():
        r = env.ctl("--json", "alarms", controllers=[b_addr])
        said = [a for a in json.loads(r.stdout)["alarms"]
                if a["kind"] == "routing" and a["subject"] == "hubei"]
        return said[0]["message"] if said and "was sent home" in said[0]["message"] else None
    said = T.wait_until(routing_alarm, 10, "the routing alarm of hubei's return home")
    assert "hubei was sent home at the takeover: its route to shaanxi came from the " \
        f"leader of epoch {epoch_a}" in said, said

    # nircd-1 comes back and replays its journal: the cutover is history,
    # not a rule in force.
    start_a = os.path.getsize(a.log_path)
    a = env.start_controller(name="nircd-1")
    assert env.controller_status.startswith("standby"), env.controller_status
    sup = T.wait_until(lambda: env.sql(
        "SELECT detail->>'epoch', detail->>'newer_epoch', detail->>'why' FROM audit_log WHERE "
        f"action = 'superseded' AND target = 'cutover {cutover_id}'") or None, 20,
        "the superseded row for the journaled cutover")
    assert len(sup) == 1, sup
    assert (int(sup[0][0]), int(sup[0][1])) == (epoch_a, epoch_b), sup
    assert "not applied" in sup[0][2], sup
    # The live leader says so where operators look: a critical alarm.
    def superseded_alarm(addr):
        def f():
            r = env.ctl("--json", "alarms", controllers=[addr])
            if r.returncode not in (0, 1):  # 1: some alarm is active
                return None
            return [a for a in json.loads(r.stdout)["alarms"] if a["kind"] == "superseded"] or None
        return f
    said_superseded = f"1 rule change of an earlier leader, kept in its outage journal, reached " \
        f"the database after a newer leader had taken over and was not applied, in the last 30 " \
        f"minutes (newest: cutover {cutover_id} of {{hubei}} to {{shaanxi}} by operator:alice)"
    alarm = T.wait_until(superseded_alarm(b_addr), 20, "the superseded alarm at nircd-2")[0]
    assert alarm["severity"] == "critical" and alarm["subject"] == "rules", alarm
    assert said_superseded in alarm["message"], alarm
    alarm_id = alarm["id"]
    assert env.sql(f"SELECT state FROM cutovers WHERE id = {cutover_id}") == [], \
        env.sql("SELECT id, state FROM cutovers")
    # nircd-1's log says so at once, for whoever restarted it.
    said = [l for l in log_after(a, start_a).splitlines() if "not applied" in l]
    assert len(said) == 1 and f"1 rule change from this controller's journal not applied " \
        f"(cutover {cutover_id})" in said[0] and "nircctl history --action superseded" in said[0], \
        said
    # What the operator did and what happened stay on record.
    assert env.sql("SELECT count(*) FROM audit_log WHERE action = 'cutover' AND "
                   f"(detail->>'cutover_id')::bigint = {cutover_id}") == [["1"]]
    assert route_at(env, b_addr, "hubei") == ["hubei"]
    # (the command the log and docs/OPERATIONS.md name)
    r = env.ctl("--json", "history", "--action", "superseded", "--since", "1h",
                controllers=[b_addr])
    assert r.returncode == 0, r.stdout + r.stderr
    entries = json.loads(r.stdout)["entries"]
    assert len(entries) == 1 and entries[0]["action"] == "superseded", entries
    d = entries[0]["detail"]
    assert (d["epoch"], d["newer_epoch"]) == (epoch_a, epoch_b), d
    assert d["change"] == f"cutover {cutover_id} of {{hubei}} to {{shaanxi}} by operator:alice", d

    # The next failover does not carry the cutover out.
    b.kill()
    T.wait_until(lambda: "leading: epoch" in log_after(a, start_a) or None, 30,
                 "nircd-1 to lead again")
    rules = T.wait_until(lambda: [l for l in log_after(a, start_a).splitlines()
                                  if "rules: " in l and "active cutovers" in l] or None, 10,
                         "nircd-1's rule load")
    assert "rules: 0 active cutovers" in rules[-1], rules
    # The entry was written before nircd-1 led: the alarm stands there too
    # for the rest of its 30 minutes, the same alarm carried over. Before,
    # a leader counted only entries written after its first read of the
    # trail: nircd-1 adopted nircd-2's alarm and let it clear after
    # clear_after, as nothing observed it any more.
    T.wait_until(superseded_alarm(a_addr), 10, "the superseded alarm at nircd-1")
    led = time.monotonic()
    while time.monotonic() - led < 3 * CLEAR_S:  # every answer in that time has it
        alarm = (superseded_alarm(a_addr)() or [None])[0]
        assert alarm and alarm["id"] == alarm_id and alarm["active"], alarm
        assert alarm["subject"] == "rules" and said_superseded in alarm["message"], alarm
    env.close()


if __name__ == "__main__":
    try:
        T.main([test_journaled_cutover_of_a_dead_leader_is_superseded_not_resurrected])
    finally:
        T.private_pg("stop", PG_DIR)
