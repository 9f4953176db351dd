#!/usr/bin/env python3
"""A full outage journal never turns an operator change into a lie.

PostgreSQL is stopped and the controller's journal is only 64 KiB. Load
history from the agents fills it to its bulk share (75 %) and is then shed
(counted, alarmed), which keeps room for operator changes: a cutover and a
schedule are still accepted and journaled. Changes keep coming until the
journal has no room for another: from then on each is refused (exit 1,
"nothing was changed", the journal and the fix named) and routes nothing.
When PostgreSQL returns, every change nircctl reported as done is in the
database, and none it refused is.

Runs its own PostgreSQL (the test stops it), beside the shared fixture.
"""
import json
import os
import subprocess

import nirclib as T

SITES = ["hubei", "shaanxi", "henan", "hunan", "hainan", "guangdong"]
PG_PORT = int(T.PG_PORT) + 9
PG_DIR = os.path.join(T.RUN, "pg-journal-full")
PG = T.PG_PRIVATE




def test_full_journal_refuses_changes_instead_of_losing_them():
    T.private_pg("stop", PG_DIR)
    T.private_pg("start", PG_DIR, str(PG_PORT))
    http = f"127.0.0.1:{T.free_port()}"
    env = T.Env("journalfull", clock_speed=60, clock_start="2020-01-23T05:00:00+08:00",
                pg_port=PG_PORT,
                extra_nircd=f"[http]\nlisten = {http}\n[database]\njournal_max = 64KiB")
    accepted, refused = [], []
    try:
        ctl = env.start_controller()
        for s in SITES:
            env.start_agent(s)
        T.wait_until(lambda: all(env.status()[s]["link"] == "online" and env.status()[s]["load"]
                                 for s in SITES) or None, 20, "agents online and reporting")
        T.private_pg("stop", PG_DIR)
        # Load minutes fill the journal up to its bulk share, then are shed.
        T.wait_until(lambda: (T.metric(http, "nirc_db_journal_shed_total") or 0) > 0 or None, 60,
                     "history shed once the journal reached its bulk share")
        size = T.metric(http, "nirc_db_journal_bytes")
        assert 0.70 * 65536 <= size <= 0.76 * 65536, f"journal at {size} bytes"

        # The reserve takes operator changes: a cutover first.
        # (Exit 4: done, and said to be recorded only in the journal.)
        r = env.ctl("--json", "cutover", "hubei", "--to", "shaanxi", "--reason", "Wuhan lockdown")
        assert r.returncode == 4, f"cutover with the reserve free: {r.returncode}\n{r.stdout}{r.stderr}"
        assert "outage journal" in json.loads(r.stdout)["warning"], r.stdout
        accepted.append(("cutover", "hubei"))
        # Then schedules (each one journals its row and its audit record)
        # until the journal has no room for a change.
        for k in range(24):
            name = f"slot{k:02d}"  # one half hour each, so they do not conflict
            r = env.ctl("schedule", "add", name, "--sources", "hunan", "--to", "henan",
                        "--start", f"{k:02d}:00", "--end", f"{k:02d}:30")
            if r.returncode == 4:
                assert "only in the outage journal of controller nircd-1," in r.stderr, r.stderr
                accepted.append(("schedule", name))
                continue
            assert r.returncode == 1, f"schedule add {name}: exit {r.returncode}\n{r.stderr}"
            assert "nothing was changed" in r.stderr, r.stderr
            assert "journal" in r.stderr and "journal_max" in r.stderr, r.stderr
            refused.append(("schedule", name))
            print(f"  refused: {r.stderr.strip()}")
            if len(refused) == 2:
                break
        assert refused, f"the journal never filled: {len(accepted)} changes accepted"
        assert len(accepted) >= 3, f"the reserve took only {len(accepted)} change(s)"
        # A refused cutover routes nothing.
        r = env.ctl("--json", "cutover", "hainan", "--to", "shaanxi", "--reason", "no room")
        assert r.returncode == 1, f"cutover with the journal full: {r.returncode}\n{r.stdout}"
        assert "nothing was changed" in r.stdout, r.stdout
        refused.append(("cutover", "hainan"))
        # So is a schedule changed in place: refused, the fix named, not in force.
        changed = accepted[1][1]
        r = env.ctl("schedule", "set", changed, "--end", f"{changed[4:]}:45")
        assert r.returncode == 1, f"schedule set with the journal full: {r.returncode}\n{r.stderr}"
        assert "nothing was changed" in r.stderr and "journal_max" in r.stderr, r.stderr
        (row,) = [x for x in json.loads(env.ctl("--json", "schedule", "list").stdout)["schedules"]
                  if x["name"] == changed]
        assert row["end"].endswith(":30"), row
        st = env.status()
        assert [x["site"] for x in st["hainan"]["route"]] == ["hainan"], st["hainan"]
        assert [x["site"] for x in st["hubei"]["route"]] == ["shaanxi"], st["hubei"]
        print(f"  {len(accepted)} changes accepted from the reserve, {len(refused)} refused")

        T.private_pg("start", PG_DIR, str(PG_PORT))
        T.wait_until(lambda: T.metric(http, "nirc_db_journal_records") == 0 or None, 30,
                     "the journal to drain into the database")
        for s in SITES:
            env.agents[s].stop()
        assert ctl.stop() == 0, ctl.tail()
    finally:
        env.close()

    # Every change reported as done is in the database; none refused is.
    names = {r[0] for r in env.sql("SELECT name FROM schedules")}
    for kind, what in accepted:
        if kind == "schedule":
            assert what in names, f"schedule {what} was reported added but is not stored"
    for kind, what in refused:
        if kind == "schedule":
            assert what not in names, f"schedule {what} was refused but is stored"
    assert env.sql(f"SELECT end_min % 60 FROM schedules WHERE name = '{changed}'") == [["30"]]
    assert env.sql("SELECT count(*) FROM audit_log WHERE action = 'schedule-change'") == [["0"]]
    cut = env.sql("SELECT sources::text FROM cutovers ORDER BY id")
    assert cut == [["{hubei}"]], cut
    audits = {(a, t) for a, t in env.sql("SELECT action, target FROM audit_log")}
    for kind, what in accepted:
        action = "cutover" if kind == "cutover" else "schedule-add"
        assert (action, what) in audits, f"{action} {what}: no audit record"
    T.private_pg("stop", PG_DIR)


if __name__ == "__main__":
    try:
        T.main([test_full_journal_refuses_changes_instead_of_losing_them])
    finally:
        subprocess.run([PG, "stop", PG_DIR], capture_output=True)
