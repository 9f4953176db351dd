"""The README's demo command brings up PostgreSQL, the controller and the
31 simulated provinces, shows them all online, and stops everything it
started."""
import os
import re
import subprocess

import nirclib as T


def test_demo_shows_31_sites_online_and_cleans_up():
    env = os.environ.copy()
    env["NIRC_DEMO_PORT"] = str(T.free_port())
    env["NIRC_DEMO_PG_PORT"] = str(int(T.PG_PORT) + 3)
    env["NIRC_BUILD_DIR"] = T.BUILD
    env["NIRC_DEMO_HTTP"] = f"127.0.0.1:{T.free_port()}"
    run_dir = os.path.join(T.RUN, "demo")
    env["NIRC_DEMO_RUN"] = run_dir
    r = subprocess.run([os.path.join(T.SRC, "demo.sh"), "--duration", "0"], env=env,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"demo failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "31 sites: 31 online, 0 stale" in r.stdout, r.stdout
    rows = [l for l in r.stdout.splitlines() if " online " in l and l.split()[0].islower()]
    assert len(rows) == 31, f"expected 31 site rows online, got {len(rows)}"
    # Everything it started is gone: no process still uses the demo's files.
    left = subprocess.run(["pgrep", "-f", run_dir + "/"],
                          capture_output=True, text=True).stdout.split()
    assert left == [], f"demo left processes running: {left}"
    pg_dir = f"/tmp/nirc-demo-pg-{os.getuid()}-{env['NIRC_DEMO_PG_PORT']}"
    st = subprocess.run([os.path.join(T.SRC, "deploy", "pg-private.sh"), "status", pg_dir],
                        capture_output=True)
    assert st.returncode != 0, "the demo's PostgreSQL is still running"


def test_demo_story_runs_unattended_and_reports_from_the_run():
    env = os.environ.copy()
    env["NIRC_DEMO_PORT"] = str(T.free_port())
    env["NIRC_DEMO_PG_PORT"] = str(int(T.PG_PORT) + 4)
    env["NIRC_DEMO_HTTP"] = f"127.0.0.1:{T.free_port()}"
    env["NIRC_BUILD_DIR"] = T.BUILD
    env["NIRC_DEMO_SPEED"] = "900"  # a night in 40 s
    run_dir = os.path.join(T.RUN, "demo-story")
    env["NIRC_DEMO_RUN"] = run_dir
    r = subprocess.run([os.path.join(T.SRC, "demo.sh")], env=env, capture_output=True,
                       text=True, timeout=400)
    assert r.returncode == 0, f"demo story failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr}"
    report = open(os.path.join(run_dir, "report.txt")).read()
    # Every move from the audit trail and the acknowledgements: all 22
    # sources sent their directive and every directive was applied, and
    # nircctl status said each source's wave was verified.
    m = re.search(r"22:00 consolidation: (\d+) directives to \d+ sites \(by cause: [^)]*schedule "
                  r"(\d+)[^)]*\) in \d+ waves; (\d+) applied$", report, re.M)
    assert m and int(m.group(2)) >= 22 and m.group(1) == m.group(3), report
    assert "every source's wave verified (nircctl status)" in report, report
    for step in ("Wuhan lockdown", "Xi'an lockdown: Shaanxi and its sources to henan",
                 "08:00 return"):
        assert step in report, (step, report)
    sims = re.findall(r"simulated ([0-9.]+)% over (\d+) calls \((\d+) from other", report)
    assert len(sims) == 2, report
    for sl, calls, others in sims:
        assert 0 <= float(sl) <= 100 and int(calls) > 0 and 0 < int(others) <= int(calls), report
    # Route changes come from the audit trail. Before the damping, xinjiang
    # and qinghai changed route 6 times in the 07:00 hour. Now the 07:00
    # hour holds the move off the locked-down hub, and at most one capacity
    # withdrawal and readmission at the backup hub (at 900x the hold and the
    # re-entry wait are shorter than a report: the margins damp).
    m = re.search(r"most changes of one source's route in one business hour: (\d+)", report)
    assert m and 1 <= int(m.group(1)) <= 4, report
    assert re.search(r"\d+ changes at \d+ sites; by cause: .*schedule \d+", report), report
    alone = int(re.search(r"its own night: (\d+) agents", report).group(1))
    together = int(re.search(r"the sources at shaanxi: (\d+) agents", report).group(1))
    assert 0 < together < alone, report
    # Consolidation loads the hub: nobody queues there in the evening (day
    # shift, own calls), callers do in the night (40 agents staffed for the
    # busiest consolidated hour). At 900x only a few reports cover that hour.
    q = re.findall(r"(\S+), (?:its own calls|consolidated)\s+peak\s+(\d+) waiting; callers "
                   r"queued in (\d+) of (\d+) load reports", report)
    assert len(q) == 2, report
    (_, eve_peak, _, eve_min), (_, night_peak, night_busy, night_min) = q
    assert int(eve_min) > 0 and int(night_min) > 0, report
    assert int(night_peak) > int(eve_peak) and int(night_busy) > 0, report
    left = subprocess.run(["pgrep", "-f", run_dir + "/"], capture_output=True, text=True)
    assert left.stdout.split() == [], "the story left processes running"


if __name__ == "__main__":
    T.main([test_demo_shows_31_sites_online_and_cleans_up,
            test_demo_story_runs_unattended_and_reports_from_the_run])
