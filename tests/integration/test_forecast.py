"""plan --schedule sizes a scheduled move on the forecast from the stored
load history (issue 18), and says where each site's demand came from.

Nine Thursdays of load_minute rows are inserted for Hubei around 22:00
(Asia/Shanghai), one of them an exception date of the schedule with ten
times the calls; Xizang gets two ordinary Thursdays only; Shaanxi (the hub) none.
At 16:00 on Thursday 2020-01-23 `nircctl plan --schedule night` (window
22:00-08:00) must:
- plan Hubei on the recency-weighted average of the last 8 Thursdays at
  22:00, the holiday left out, computed here independently of the C code,
  and say "forecast from 7 weeks of history"; handle time from the rows;
- say Xizang's history is too short and the scenario file was used, and
  that Shaanxi has no history;
- put that demand into the hub's capacity check (traffic after = before +
  the sources' calls/s x handle time);
and, with no scenario file configured, say it fell back to the live load."""
import json
import math
import re
import subprocess

import nirclib as T

SCHEDULE_START = "2020-01-23T16:00:00+08:00"  # a Thursday
THURSDAYS = ["2020-01-16", "2020-01-09", "2020-01-02", "2019-12-26", "2019-12-19",
             "2019-12-12", "2019-12-05", "2019-11-28", "2019-11-21"]  # 1..9 weeks back
HOLIDAY = "2020-01-09"
DECAY = 0.8  # FORECAST_DECAY
AHT_MS = 200000.0
env = None


def per_minute(k):
    """Hubei's own calls per minute at 22:00-22:30, k weeks back."""
    return 40 + 5 * (9 - k)  # a trend: more calls every week


def insert(site, day, calls_per_min, aht_ms, first="21:30", last="22:59"):
    """One row a minute from `first` to `last` local time on `day`."""
    env.sql(f"""
        INSERT INTO load_minute (site, minute, reports, offered, answered, abandoned,
            answered_within, from_other_sites, max_queue, max_wait_ms, avg_logged_in,
            avg_ready, avg_talking, avg_aht_ms, unreadable_reports, routed_away)
        SELECT '{site}', m, 1, {calls_per_min}, {calls_per_min}, 0, {calls_per_min}, 0, 0, 0,
               NULL, NULL, NULL, {aht_ms}, 0, 0
        FROM generate_series(timestamptz '{day} {first}:00+08', timestamptz '{day} {last}:00+08',
                             interval '1 minute') m""")


def expected_hubei():
    num = den = 0.0
    weeks = 0
    for k, day in enumerate(THURSDAYS, start=1):
        if k > 8 or day == HOLIDAY:
            continue
        w = DECAY ** (k - 1)
        num += w * per_minute(k) / 60.0
        den += w
        weeks += 1
    return num / den, weeks


def ctl(*args, expect=0):
    r = env.ctl(*args)
    assert r.returncode == expect, f"nircctl {' '.join(args)}: exit {r.returncode}\n" \
                                   f"{r.stdout}\n{r.stderr}"
    return r


def plan():
    r = env.ctl("plan", "--schedule", "night")
    rj = env.ctl("--json", "plan", "--schedule", "night")
    assert r.returncode in (0, 1) and rj.returncode == r.returncode, (r.stderr, rj.stderr)
    j = json.loads(rj.stdout)
    return r.stdout, j, {d["site"]: d for d in j["demand"]}


def demand_line(text, site):
    lines = [l for l in text.splitlines() if re.match(rf"^\s+demand\s+(src|hub)\s+{site}\s", l)]
    assert len(lines) == 1, f"one demand line for {site} expected:\n{text}"
    return lines[0]


def test_history_inserted_and_controller_started():
    global env
    env = T.Env("forecast", clock_start=SCHEDULE_START)
    for k, day in enumerate(THURSDAYS, start=1):
        calls = per_minute(k) * (10 if day == HOLIDAY else 1)
        insert("hubei", day, calls, AHT_MS)
    for day in ("2020-01-16", "2020-01-02"):
        insert("xizang", day, 3, 100000.0)
    # A gap: a half-hour with five minutes reported is missing, not quiet.
    insert("hubei", "2020-01-16", 1, AHT_MS, first="03:00", last="03:04")
    env.start_controller()
    ctl("schedule", "add", "night", "--sources", "hubei,xizang", "--to", "shaanxi", "--start",
        "22:00", "--end", "08:00", "--tz", "Asia/Shanghai", "--except", HOLIDAY)
    for s in ("hubei", "xizang", "shaanxi"):
        env.start_agent(s)
    T.wait_until(lambda: all(env.status()[s]["link"] == "online" and env.status()[s]["load"]
                             for s in ("hubei", "xizang", "shaanxi")), 30, "three sites online")


def test_plan_uses_the_history_forecast_and_says_so():
    want, weeks = expected_hubei()
    assert weeks == 7
    text, j, d = plan()
    h = d["hubei"]
    assert h["source"] == "history", h
    assert h["weeks"] == weeks, h
    # nircctl --json prints six significant digits.
    assert abs(h["calls_per_s"] - want) < 1e-5 * want, (h["calls_per_s"], want)
    assert abs(h["aht_s"] - AHT_MS / 1000) < 1e-6, h
    assert h["note"] == f"forecast from {weeks} weeks of history", h
    line = demand_line(text, "hubei")
    assert f"{want:.3f} calls/s" in line and "AHT 200s" in line, line
    assert line.endswith(f"forecast from {weeks} weeks of history"), line
    # The window the forecast is for.
    assert j["window"]["schedule"] == "night"


def erlang_c(n, a):
    """P(wait), from the Erlang B recurrence (independent of erlang.c)."""
    if a >= n:
        return 1.0
    b = 1.0
    for k in range(1, n + 1):
        b = a * b / (k + a * b)
    return n * b / (n - a * (1 - b))


def agents_needed(erl, aht, target=0.8, threshold=20.0):
    n = int(erl) + 1
    while 1 - erlang_c(n, erl) * math.exp(-(n - erl) * threshold / aht) < target:
        n += 1
    return n


def test_staffing_report_uses_the_history_forecast():
    """nircctl report staffing for tonight's window sizes Hubei's 22:00
    half-hour on the same forecast from history: its calls, Erlangs (with
    the handle time the rows measured) and the agents Erlang C needs for
    80 % in 20 s, computed here."""
    r = env.ctl("--json", "report", "staffing")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["schedule"]["name"] == "night" and j["interval_s"] == 1800, j["schedule"]
    hubei = {s["site"]: s for s in j["sites"]}["hubei"]
    assert hubei["demand"].startswith("forecast from 7 weeks of history"), hubei["demand"]
    cps, _ = expected_hubei()
    f = hubei["alone"][0]  # 22:00-22:30
    erl = cps * AHT_MS / 1000.0
    assert f["known"] and abs(f["calls"] - cps * 1800) < 1e-4 * cps * 1800, (f, cps * 1800)
    assert abs(f["erlangs"] - erl) < 1e-4 * erl, (f, erl)
    assert f["agents"] == agents_needed(erl, AHT_MS / 1000.0), (f, agents_needed(erl, 200.0))


def test_too_short_and_missing_history_fall_back_to_the_scenario_file():
    text, _, d = plan()
    x = d["xizang"]
    assert x["source"] == "scenario", x
    assert x["note"] == "history too short (2 of 3 weeks): scenario file", x
    assert x["weeks"] is None, x
    s = d["shaanxi"]
    assert s["hub"] and s["source"] == "scenario", s
    assert s["note"] == "no history: scenario file", s
    assert demand_line(text, "xizang").endswith("history too short (2 of 3 weeks): scenario file")
    assert demand_line(text, "shaanxi").endswith("no history: scenario file")


def test_the_capacity_check_uses_that_demand():
    _, j, d = plan()
    caps = {c["hub"]: c for c in j["capacity"]}
    assert "shaanxi" in caps, j
    c = caps["shaanxi"]
    taken = c["sources"]
    assert "hubei" in taken or "hubei" in c["refused_sources"], c
    if taken:
        added = sum(d[s]["calls_per_s"] * d[s]["aht_s"] for s in taken)
        got = c["traffic_after_erl"] - c["traffic_before_erl"]
        assert abs(got - added) < 1e-4 * max(1.0, added), (got, added, c, d)
    # Hubei's demand on the hub's refusal line, if refused, is its forecast too.
    if "hubei" in c["refused_sources"] and c["with_refused"]["source"] == "hubei":
        before = c["traffic_after_erl"]
        extra = c["with_refused"]["traffic_erl"] - before
        assert abs(extra - d["hubei"]["calls_per_s"] * d["hubei"]["aht_s"]) < 1e-4 * extra, c


def test_without_a_scenario_file_it_says_live_load():
    env.controller.stop()
    with open(env.nircd_conf) as f:
        conf = f.read()
    conf = re.sub(r"(?m)^forecast = .*$", "", conf)
    env.write("nircd.conf", conf)
    env.start_controller()
    T.wait_until(lambda: all(env.status()[s]["link"] == "online" and env.status()[s]["load"]
                             for s in ("hubei", "xizang", "shaanxi")), 30, "sites back")
    text, _, d = plan()
    want, weeks = expected_hubei()
    assert d["hubei"]["source"] == "history" and abs(d["hubei"]["calls_per_s"] - want) < 1e-5 * want
    x = d["xizang"]
    assert x["source"] == "live", x
    assert x["note"] == "history too short (2 of 3 weeks): live load", x
    assert demand_line(text, "xizang").endswith("history too short (2 of 3 weeks): live load")
    assert d["shaanxi"]["note"] == "no history: live load", d["shaanxi"]


def test_a_scheduled_wave_records_the_demand_it_used():
    """A schedule in force now moves Xizang; the audit record of the wave
    says what demand its capacity check used and where it came from."""
    ctl("schedule", "add", "afternoon", "--sources", "xizang", "--to", "shaanxi", "--start",
        "15:00", "--end", "18:00", "--tz", "Asia/Shanghai")

    def moved():
        rows = env.sql("SELECT detail::text FROM audit_log WHERE action = 'move' "
                       "AND detail->>'rule' = 'schedule'")
        return json.loads(rows[0][0]) if rows else None
    T.wait_until(moved, 30, "the afternoon schedule's wave")
    d = moved()["demand"]
    assert set(d) == {"xizang"}, d
    # No scenario file now and two Thursdays of history: the live load.
    assert d["xizang"]["source"] == "live", d
    assert d["xizang"]["note"] == "no history: live load", d


def test_history_reload_never_holds_up_an_operator_change():
    """The history query takes seconds of database time; it runs on its own
    connection, so an operator's change (its audit row, written exactly
    once) is not queued behind it. Here the reload at business midnight is
    held on a lock for as long as the test likes; `nircctl capacity` must
    still be answered (within nircctl's 3 s timeout)."""
    for a in env.agents.values():
        a.stop()  # no reports: nothing else writes load_minute
    env.controller.stop()
    with open(env.nircd_conf) as f:
        conf = f.read()
    conf = re.sub(r"(?m)^start = .*$", "start = 2020-01-23T23:59:30+08:00", conf)
    conf = conf.replace("[routing]\n", "[routing]\nforecast_tz = Asia/Shanghai\n", 1)
    env.write("nircd.conf", conf)
    env.start_controller()
    # Loaded: the plan (for Friday night now: no Friday history) no longer
    # says "no history loaded".
    T.wait_until(lambda: "no history loaded" not in plan()[2]["hubei"]["note"] or None, 20,
                 "the history loaded at leader start")
    locker = subprocess.Popen(
        ["psql", "-XAtq", T.conninfo(env.db, env.pg_port), "-c",
         "BEGIN; LOCK TABLE load_minute IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        T.wait_until(lambda: env.sql(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'load_minute' AND l.mode = 'AccessExclusiveLock' "
            "AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE "
            "datname = current_database())")[0][0] == "1" or None, 10, "the lock on load_minute")
        # Business midnight: the new date's reload waits on the lock.
        T.wait_until(lambda: env.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%load_minute%'")[0][0] != "0" or None, 40,
            "the history reload waiting on the lock")
        ctl("capacity", "hubei", "--seats", "120")
        rows = env.sql("SELECT count(*) FROM audit_log WHERE action = 'capacity' "
                       "AND target = 'hubei'")
        assert rows[0][0] != "0", rows
    finally:
        env.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()")
        locker.wait(10)


def test_everything_still_running():
    for p in T.Proc.all:
        if p is not env.controller or p.alive():
            continue
        raise AssertionError(f"{p.name} died:\n{p.tail()}")


if __name__ == "__main__":
    T.main([test_history_inserted_and_controller_started,
            test_plan_uses_the_history_forecast_and_says_so,
            test_staffing_report_uses_the_history_forecast,
            test_too_short_and_missing_history_fall_back_to_the_scenario_file,
            test_the_capacity_check_uses_that_demand,
            test_without_a_scenario_file_it_says_live_load,
            test_a_scheduled_wave_records_the_demand_it_used,
            test_history_reload_never_holds_up_an_operator_change,
            test_everything_still_running])
