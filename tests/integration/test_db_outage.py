#!/usr/bin/env python3
"""PostgreSQL stopped for 30 s under load, with an emergency cutover in the
middle: the leader keeps routing and accepts the cutover, journals what it
cannot write, and when the database is back the audit trail and the load
history are complete and hold nothing twice. A schedule and an overflow
rule changed in place (`set`) during the outage are said to be recorded
only in the journal and land once; a dry run beside them changes nothing.

Runs its own PostgreSQL (the test stops it), beside the shared fixture.
"""
import json
import os
import re
import subprocess
import time
import urllib.request

import nirclib as T

SITES = ["hubei", "shaanxi", "henan", "hunan"]
OUTAGE_S = 30
PG_PORT = int(T.PG_PORT) + 7
PG_DIR = os.path.join(T.RUN, "pg-outage")
PG = T.PG_PRIVATE




def test_database_outage_loses_nothing_and_doubles_nothing():
    T.private_pg("stop", PG_DIR)
    T.private_pg("start", PG_DIR, str(PG_PORT))
    http = f"127.0.0.1:{T.free_port()}"
    # 60x: every report of an agent closes one business minute.
    env = T.Env("outage", clock_speed=60, clock_start="2020-01-23T05:00:00+08:00",
                pg_port=PG_PORT,
                extra_nircd=f"[alarms]\nclear_after = 2s\n[http]\nlisten = {http}")
    try:
        ctl = env.start_controller()
        for s in SITES:
            env.start_agent(s)
        T.wait_until(lambda: all(env.status()[s]["link"] == "online" and env.status()[s]["load"]
                                 for s in SITES) or None, 20, "agents online and reporting")
        T.wait_until(lambda: (env.sql("SELECT count(*) FROM load_minute")[0][0] != "0") or None,
                     10, "load history being written")
        for args in (["schedule", "add", "night", "--sources", "hunan", "--to", "henan",
                      "--start", "01:00", "--end", "02:00"],
                     ["overflow", "add", "spill", "--source", "hunan", "--to", "henan", "--cap",
                      "300", "--trigger-wait", "1h", "--release-wait", "15s"]):
            r = env.ctl(*args)
            assert r.returncode == 0, f"{args}: {r.returncode}\n{r.stdout}{r.stderr}"

        down_at = time.monotonic()
        down_wall = time.time()
        T.private_pg("stop", PG_DIR)
        T.wait_until(lambda: (T.metric(http, "nirc_db_journal_records") or 0) > 0 or None, 15,
                     "the controller journaling while the database is down")

        # The operator is told: one database alarm, listed by nircctl from
        # the controller's memory, on /metrics, and in the status line.
        def db_alarms():
            r = env.ctl("--json", "alarms")
            return [a for a in json.loads(r.stdout)["alarms"] if a["kind"] == "database"]
        alarm = T.wait_until(db_alarms, 20, "a database alarm while PostgreSQL is down")[0]
        assert "unreachable" in alarm["message"] and alarm["severity"] == "critical", alarm
        # (/metrics is published once a second.)
        T.wait_until(lambda: 'nirc_alarms_active{kind="database"} 1' in urllib.request.urlopen(
            f"http://{http}/metrics", timeout=5).read().decode(), 5, "the alarm on /metrics")
        assert re.search(r"^ALARMS: \d+ active", env.ctl("status").stdout, re.M)

        # The emergency cutover goes through with the database down.
        # It is done, and the operator hears where it is recorded: only in
        # the outage journal of this controller (named: nircd-1), which a
        # standby does not read
        # (exit 4: done, but not everything the operator relies on holds).
        r = env.ctl("--json", "cutover", "hubei", "--to", "shaanxi", "--reason", "Wuhan lockdown")
        assert r.returncode == 4, f"cutover during the outage: {r.returncode}\n{r.stdout}{r.stderr}"
        reply = json.loads(r.stdout)
        assert reply["applied"] == 2 and reply["failed"] == 0, reply
        assert "only in the outage journal of controller nircd-1," in reply["warning"], reply
        assert "standby" in reply["warning"], reply
        st = env.status()
        assert [x["site"] for x in st["hubei"]["route"]] == ["shaanxi"], st["hubei"]
        # Rules changed in place: the same words, exit 4; a dry run exit 0.
        r = env.ctl("schedule", "set", "night", "--end", "04:00", "--dry-run")
        assert r.returncode == 0 and "nothing was changed" in r.stdout, r.stdout + r.stderr
        for args in (["schedule", "set", "night", "--end", "03:00"],
                     ["overflow", "set", "spill", "--to", "shaanxi"]):
            r = env.ctl("--json", *args)
            assert r.returncode == 4, f"{args} in the outage: {r.returncode}\n{r.stdout}{r.stderr}"
            assert "only in the outage journal of controller nircd-1," in json.loads(r.stdout)["warning"]
        assert ctl.alive()

        # The outage lasts OUTAGE_S whatever the test did meanwhile: that is
        # the scenario, not a wait for something.
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        journaled = T.metric(http, "nirc_db_journal_records")
        up_wall = time.time()
        T.private_pg("start", PG_DIR, str(PG_PORT))
        T.wait_until(lambda: T.metric(http, "nirc_db_journal_records") == 0 or None, 30,
                     "the journal to drain into the database")
        T.wait_until(lambda: not db_alarms(), 20, "the database alarm cleared")
        print(f"  outage {time.monotonic() - down_at:.1f} s: {journaled:.0f} writes journaled, "
              f"replayed {T.metric(http, 'nirc_db_replayed_total'):.0f}, "
              f"duplicates skipped {T.metric(http, 'nirc_db_duplicates_total'):.0f}")

        # Everything that was sent is in; then a clean stop flushes the
        # minutes still open.
        for s in SITES:
            env.agents[s].stop()
        assert ctl.stop() == 0, ctl.tail()
    finally:
        env.close()

    # The cutover happened and is on record once.
    rows = env.sql("SELECT sources::text, reason FROM cutovers")
    assert rows == [["{hubei}", "Wuhan lockdown"]], rows
    rows = env.sql("SELECT action, count(*) FROM audit_log GROUP BY action ORDER BY action")
    counts = dict((a, int(n)) for a, n in rows)
    assert counts.get("cutover") == 1 and counts.get("lead") == 1, counts
    assert counts.get("schedule-change") == 1 and counts.get("overflow-change") == 1, counts
    assert env.sql("SELECT end_min FROM schedules WHERE name = 'night'") == [["180"]]
    assert env.sql("SELECT hubs::text FROM overflow_rules WHERE name = 'spill'") == \
        [["{shaanxi}"]]
    rows = env.sql("SELECT detail->'before'->>'end', detail->'after'->>'end' FROM audit_log "
                   "WHERE action = 'schedule-change'")
    assert rows == [["02:00", "03:00"]], rows
    dups = env.sql("SELECT site, epoch, version, result, count(*) FROM directive_acks "
                   "GROUP BY 1, 2, 3, 4 HAVING count(*) > 1")
    assert dups == [], f"acknowledgements stored twice: {dups}"
    acks = env.sql("SELECT result FROM directive_acks a JOIN directives d USING (site, epoch, "
                   "version) WHERE d.site = 'hubei' AND d.reason LIKE '%Wuhan lockdown%'")
    assert acks == [["applied"]], acks
    # The alarm is on record once: raised during the outage (journaled, it
    # keeps its time), cleared after the database came back, same id.
    rows = env.sql("SELECT id, extract(epoch FROM raised_at), extract(epoch FROM cleared_at) "
                   "FROM alarms WHERE kind = 'database'")
    assert len(rows) == 1 and int(rows[0][0]) == alarm["id"], rows
    raised, cleared = float(rows[0][1]), float(rows[0][2])
    assert down_wall < raised < up_wall < cleared, (down_wall, raised, up_wall, cleared)
    # Load history: every report each agent sent is counted exactly once.
    for s in SITES:
        sent = len(env.reports(s))
        stored = int(env.sql(f"SELECT coalesce(sum(reports), 0) FROM load_minute "
                             f"WHERE site = '{s}'")[0][0])
        assert stored == sent, f"{s}: {sent} reports sent, {stored} in load_minute"
    T.private_pg("stop", PG_DIR)


if __name__ == "__main__":
    try:
        T.main([test_database_outage_loses_nothing_and_doubles_nothing])
    finally:
        subprocess.run([PG, "stop", PG_DIR], capture_output=True)
