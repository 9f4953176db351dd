"""Unknown is not zero, configured capacity, plausible reports (issue 14
point 3, issue 16 point 2), through the real controller, agents, nircctl
and the status page:

- a hub whose PBX measures calls but not agents (the exec adapter with a
  collect_cmd that leaves them out, as a Kamailio proxy does) shows "not
  measured" in the status table, its JSON and the page, never 0/0;
- `nircctl plan` to it refuses and names the fix ("capacity of shaanxi is
  not measured: configure it (nircctl capacity shaanxi ...) or use
  --force");
- after `nircctl capacity shaanxi --seats ... --roster ...` the plan uses
  the roster and says so ("capacity of shaanxi: configured roster, 28
  agents at 23:..."), the change is in `nircctl history`, and in the
  database (it survives a restart);
- a hub claiming 1,000,000 agents logged in (80-odd seats configured by
  import-sites) has its reports refused, counted in
  nirc_reports_refused_total{reason="seats"} and alarmed (kind report, with
  the figures); `nircctl plan` of six provinces to it stays refused.

Night business clock (23:00 in China): the roster's night window applies."""
import json
import os
import re
import urllib.request

import nirclib as T

SIX = ["hubei", "hunan", "jiangxi", "anhui", "guangxi", "guizhou"]
CALLS_ONLY = """#!/bin/sh
# A proxy in front of the call centre: it counts calls, nothing else.
echo '{"calls_offered": 3, "calls_answered": 3, "calls_abandoned": 0}'
"""
LIAR = """#!/bin/sh
# A hub claiming a call centre it does not have.
echo '{"calls_offered": 3, "calls_answered": 3, "calls_in_queue": 0,
       "agents_logged_in": 1000000, "agents_ready": 999990, "agents_talking": 10,
       "aht_ms": 200000, "answered_within_threshold": 3, "sl_threshold_s": 20}'
"""
env = None
page = None


def ctl(*args, expect, cert="operator-alice"):
    r = env.ctl(*args, cert=cert)
    assert r.returncode == expect, f"nircctl {' '.join(args)}: exit {r.returncode}, expected " \
                                   f"{expect}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def exec_agent(slug, script):
    env.start_exec_agent(slug, script)


def test_start():
    global env, page
    page = f"127.0.0.1:{T.free_port()}"
    env = T.Env("capacity", clock_start="2020-01-23T23:00:00+08:00",
                extra_nircd=f"[alarms]\nclear_after = 5s\n[http]\nlisten = {page}\n")
    # import-sites configured every site from the scenario: shaanxi is made
    # the site nobody configured.
    env.sql("UPDATE sites SET seats = NULL, roster = NULL WHERE slug = 'shaanxi'")
    seats = env.sql("SELECT seats, roster, capacity_utc_offset_min FROM sites "
                    "WHERE slug = 'sichuan'")
    assert seats == [["108", "08:00-22:00=108,22:00-08:00=26", "480"]], seats
    env.start_controller()
    env.start_agent("hubei")
    exec_agent("shaanxi", CALLS_ONLY)
    T.wait_until(lambda: all(env.status()[s]["load"] for s in ("hubei", "shaanxi")), 30,
                 "hubei and shaanxi reporting")


def test_unmeasured_is_shown_as_not_measured():
    load = env.status()["shaanxi"]["load"]
    for k in ("agents_logged_in", "agents_ready", "calls_in_queue", "longest_wait_ms", "aht_ms",
              "service_level"):
        assert load[k] is None, f"{k} must be null (not measured): {load}"
    assert "agents_logged_in" in load["not_measured"], load
    assert load["calls_offered"] == 3, load
    # The measured site is measured.
    hubei = env.status()["hubei"]["load"]
    assert hubei["not_measured"] == [] and hubei["agents_logged_in"] is not None, hubei
    table = ctl("status", expect=0).stdout
    row = [l for l in table.splitlines() if re.match(r"^\s*shaanxi\s", l)]
    # "?" in its columns (the legend under the table says "? not measured").
    assert row and re.search(r"\s\?\s+\?\s", row[0]) and "0/0" not in row[0], table
    assert "\n? not measured: " in table, table
    detail = ctl("site", "shaanxi", expect=0).stdout
    assert re.search(r"agents\s+not measured", detail), detail
    def page_row():
        html = urllib.request.urlopen(f"http://{page}/", timeout=5).read().decode()
        return [l for l in html.splitlines() if 'data-slug="shaanxi"' in l and "<tr" in l]
    # The page is published once a second: wait for one with the report.
    T.wait_until(lambda: "—" not in page_row()[0], 10, "the page with shaanxi's report")
    rows = page_row()
    assert rows and "not measured" in rows[0] and "0/0" not in rows[0], rows
    sj = T.status_json(page)
    s = [x for x in sj["sites"] if x["slug"] == "shaanxi"][0]
    assert s["load"]["agents_logged_in"] is None, s
    # No sample is a zero that was not counted: metrics leave it out.
    text = urllib.request.urlopen(f"http://{page}/metrics", timeout=5).read().decode()
    assert 'nirc_site_agents_logged_in{site="shaanxi"}' not in text
    assert 'nirc_site_agents_logged_in{site="hubei"}' in text


def test_plan_refuses_unmeasured_capacity_and_names_the_fix():
    r = ctl("plan", "hubei", "--to", "shaanxi", expect=T.EXIT_REFUSED)
    assert "capacity of shaanxi is not measured: configure it (nircctl capacity shaanxi" \
        in r.stdout and "--force" in r.stdout, r.stdout
    j = json.loads(ctl("--json", "plan", "hubei", "--to", "shaanxi",
                       expect=T.EXIT_REFUSED).stdout)
    need = j["refused_sources"][0]["hubs"][0]
    assert need["hub"] == "shaanxi" and need["capacity_source"] == "unknown", need
    # Agents nobody counted are null, not 0.
    assert need["agents"] is None, need
    # The cutover is refused the same way, and a dry run says so too.
    r = ctl("cutover", "hubei", "--to", "shaanxi", "--reason", "drill", "--dry-run",
            expect=T.EXIT_REFUSED)
    assert "capacity of shaanxi is not measured" in r.stdout + r.stderr, r.stdout + r.stderr
    lst = json.loads(ctl("--json", "capacity", expect=0).stdout)
    row = [s for s in lst["sites"] if s["site"] == "shaanxi"][0]
    assert row["configured"] is False and row["source_now"] == "unknown" \
        and row["agents_now"] is None, row


def test_capacity_change_needs_operator_and_plans_from_the_roster():
    ctl("capacity", "shaanxi", "--seats", "80", "--roster", "08:00-22:00=72,22:00-08:00=28",
        expect=T.EXIT_REFUSED, cert="operator-victor")
    ctl("capacity", "shaanxi", "--seats", "20", "--roster", "08:00-22:00=72", expect=2)
    r = ctl("capacity", "shaanxi", "--seats", "80", "--roster", "08:00-22:00=72,22:00-08:00=28",
            "--utc-offset", "+08:00", "--note", "night roster from HR", expect=0)
    assert re.search(r"shaanxi\s+80\s+08:00-22:00=72,22:00-08:00=28\s+\+08:00\s+configured",
                     r.stdout), r.stdout
    assert env.sql("SELECT seats, roster, capacity_utc_offset_min FROM sites WHERE slug = "
                   "'shaanxi'") == [["80", "08:00-22:00=72,22:00-08:00=28", "480"]]
    r = env.ctl("plan", "hubei", "--to", "shaanxi")
    assert r.returncode in (0, 1), r.stderr
    assert re.search(r"capacity of shaanxi: configured roster, 28 agents at 23:\d\d", r.stdout), \
        r.stdout
    j = json.loads(env.ctl("--json", "plan", "hubei", "--to", "shaanxi").stdout)
    cap = [c for c in j["capacity"] if c["hub"] == "shaanxi"]
    if cap:
        assert cap[0]["capacity_source"] == "configured" and cap[0]["agents"] == 28, cap
    else:
        need = j["refused_sources"][0]["hubs"][0]
        assert need["capacity_source"] == "configured" and need["agents"] == 28, need
    h = json.loads(ctl("--json", "history", "--action", "capacity", expect=0).stdout)
    e = [x for x in h["entries"] if x["target"] == "shaanxi"]
    assert e and e[-1]["actor"] == "operator:alice", h
    detail = e[-1]["detail"]
    assert detail["after"]["seats"] == 80 and detail["before"]["configured"] is False \
        and detail["note"] == "night roster from HR", detail


def test_implausible_reports_are_refused_counted_and_alarmed():
    exec_agent("sichuan", LIAR)
    T.wait_until(lambda: env.sql("SELECT count(*) FROM alarms WHERE kind = 'report' AND "
                                 "subject = 'sichuan' AND cleared_at IS NULL") == [["1"]], 20,
                 "sichuan's report alarm")
    msg = env.sql("SELECT message FROM alarms WHERE kind = 'report'")[0][0]
    assert "sichuan reported 1000000 agents logged in; it has 108 seats configured" in msg, msg
    alarms = json.loads(ctl("--json", "alarms", expect=1).stdout)["alarms"]
    assert any(a["kind"] == "report" and a["subject"] == "sichuan" for a in alarms), alarms
    # Never the site's load: no report stored, so nothing to plan on.
    assert env.status()["sichuan"]["load"] is None, env.status()["sichuan"]
    def refused():
        text = urllib.request.urlopen(f"http://{page}/metrics", timeout=5).read().decode()
        m = re.search(r'^nirc_reports_refused_total\{reason="seats"\} (\d+)$', text, re.M)
        return int(m.group(1)) if m else -1
    # /metrics is published once a second.
    T.wait_until(lambda: refused() >= 1, 5, "nirc_reports_refused_total{reason=\"seats\"} >= 1")
    r = ctl("plan", ",".join(SIX), "--to", "sichuan", expect=T.EXIT_REFUSED)
    assert "sichuan" in r.stdout, r.stdout
    j = json.loads(ctl("--json", "plan", ",".join(SIX), "--to", "sichuan",
                       expect=T.EXIT_REFUSED).stdout)
    assert j["refused"] and len(j["refused_sources"]) == len(SIX), j
    # Its link is up and it reports every second: its site_down alarm says
    # the reports are refused, not that none come.
    T.wait_until(lambda: env.sql("SELECT message FROM alarms WHERE kind = 'site_down' AND "
                                 "subject = 'sichuan' AND cleared_at IS NULL"), 40,
                 "sichuan's site_down alarm (after the hub grace)")
    down = env.sql("SELECT message FROM alarms WHERE kind = 'site_down' AND subject = 'sichuan' "
                   "AND cleared_at IS NULL")[0][0]
    assert "they are refused" in down and "sends no reports" not in down, down


def test_capacity_survives_a_restart():
    env.controller.stop()
    env.start_controller()
    lst = json.loads(ctl("--json", "capacity", "shaanxi", expect=0).stdout)
    (row,) = lst["sites"]
    assert row["configured"] and row["seats"] == 80 \
        and row["roster"] == "08:00-22:00=72,22:00-08:00=28" and row["utc_offset_min"] == 480, row
    T.wait_until(lambda: json.loads(ctl("--json", "capacity", "shaanxi", expect=0).stdout)
                 ["sites"][0]["source_now"] == "configured", 20,
                 "shaanxi planned on its roster again once it reports")


if __name__ == "__main__":
    T.main([test_start, test_unmeasured_is_shown_as_not_measured,
            test_plan_refuses_unmeasured_capacity_and_names_the_fix,
            test_capacity_change_needs_operator_and_plans_from_the_roster,
            test_implausible_reports_are_refused_counted_and_alarmed,
            test_capacity_survives_a_restart])
