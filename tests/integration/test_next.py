"""What is active, why, until when, and what comes next (issue 12, point
3), through the real nircd, agents, nircctl and the status page in headless
Chromium:

- `nircctl next` lists the night schedule's start (sources, hubs, waves,
  the service level and agents predicted at the hub), a cutover's expiry,
  the window's end and the next night an exception date skips, in time
  order; `--json` matches docs/CLI-JSON.md;
- `nircctl status` has a RULE column with the end in [ctl] tz ("cutover N
  until HH:MM: REASON", "schedule night until 08:00", "hub for N sites"),
  and after the hub is lost "re-homed: shaanxi offline"; `--moved`,
  `--problems` and `--zh` filter and rename, exit 0; `--json` carries the
  end as a number;
- `nircctl site hubei` shows the chain: rule and end, why not at the first
  hub, the hub it is routed to and that hub's state;
- the status page shows the schedule by name (not its internal id), the
  ends, and a `<table id="next">` with the same events;
- `schedule list` shows the next start, sources and exceptions, and a
  window that moves nobody (both hubs gone) reads NOT RUNNING, not YES.

The business clock runs at 10x from 2020-01-23 21:55 +08:00, so the night
window opens about 30 s into the test."""
import datetime
import json
import os
import re
import zoneinfo

import nirclib as T
from test_cli_json import NEXT, STATUS, check

SOURCES = ["hubei", "guizhou", "fujian"]
SITES = SOURCES + ["shaanxi", "henan", "xizang"]
TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
HTTP = f"127.0.0.1:{T.free_port()}"
env = None
cut = {}
shown = []  # what the commands printed, kept in the run directory for people


def ctl(*args, expect=0):
    r = env.ctl(*args)
    what = f"nircctl {' '.join(args)}"
    assert r.returncode == expect, f"{what}: exit {r.returncode}, expected {expect}\n" \
                                   f"stdout: {r.stdout}\nstderr: {r.stderr}"
    shown.append(f"$ {what}\n{r.stdout}{r.stderr}")
    return r


def ctl_json(*args, expect=0):
    return json.loads(ctl("--json", *args, expect=expect).stdout)


def hhmm(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, TZ).strftime("%H:%M")


def rows(text):
    """{slug: line} of a status table."""
    out = {}
    for line in text.splitlines():
        w = line.split()
        if w and re.fullmatch(r"[a-z]+", w[0]) and len(w) > 3:
            out[w[0]] = line
    return out


def routed_to(slug):
    return [s["site"] for s in env.status()[slug]["route"] or []]


def page():
    return T.chromium_dom(f"http://{HTTP}/")


# ---- tests ----

def test_sites_online_and_rules_made():
    global env
    env = T.Env("next", clock_speed=10, clock_start="2020-01-23T21:55:00+08:00",
                extra_nircd=f"verify_window = 2s\nhub_grace = 3s\n[http]\nlisten = {HTTP}\n")
    env.start_controller()
    for s in SITES:
        env.start_agent(s)
    T.wait_until(lambda: all(env.status()[s]["link"] == "online" and env.status()[s]["load"]
                             for s in SITES) and all(len(env.reports(s)) >= 3 for s in SITES),
                 40, "six agents online with a few reports each")
    # Hubs take sources once the new leader has seen them healthy.
    T.wait_until(lambda: env.ctl("plan", "xizang", "--to", "henan").returncode == 0, 30,
                 "henan able to take xizang")
    ctl("schedule", "add", "night", "--sources", ",".join(SOURCES), "--to", "shaanxi,henan",
        "--start", "22:00", "--end", "08:00", "--tz", "Asia/Shanghai", "--except", "2020-01-24",
        "--wave-size", "2")
    r = ctl_json("cutover", "xizang", "--to", "henan", "--reason", "drill 演练", "--for", "3h")
    assert r["applied"] >= 1 and r["cutover_id"], r
    cut["id"] = r["cutover_id"]


def test_next_lists_start_expiry_end_and_skip_in_order():
    j = check(ctl_json("next", "--hours", "48"), NEXT, "next --hours 48")
    assert j["until_ms"] - j["from_ms"] == 48 * 3600000, j
    kinds = [e["kind"] for e in j["events"]]
    assert kinds == ["schedule-start", "cutover-expiry", "schedule-end", "schedule-skip"], \
        f"{kinds}: the window must still be ahead (the clock started at 21:55)"
    ats = [e["at_ms"] for e in j["events"]]
    assert ats == sorted(ats), ats
    start, expiry, end, skip = j["events"]
    assert hhmm(start["at_ms"]) == "22:00" and hhmm(end["at_ms"]) == "08:00", j
    assert start["end_ms"] == end["at_ms"], j
    assert start["sources"] == SOURCES and start["hubs"] == ["shaanxi", "henan"], start
    assert start["wave_size"] == 2 and start["waves"] == 2, start
    # The plan path's prediction at the hub that would take them.
    assert start["predictions"], f"no prediction for the start: {start}"
    p = {h["hub"]: h for h in start["predictions"]}
    assert "shaanxi" in p and p["shaanxi"]["agents_needed"] > 0 and \
        p["shaanxi"]["sources"] == 3 and 0 <= p["shaanxi"]["sl_after"] <= 1, p
    # Its agents then come from the roster (the forecast's), not from now.
    assert p["shaanxi"]["capacity_source"] == "configured", p
    assert expiry["rule_id"] == cut["id"] and expiry["reason"] == "drill 演练" and \
        expiry["sources"] == ["xizang"], expiry
    assert skip["reason"] == "exception 2020-01-24" and hhmm(skip["at_ms"]) == "22:00", skip
    # For people: one line per event, the prediction under its start.
    h = ctl("next", "--hours", "48").stdout
    assert re.search(r"^01-23 22:00 +schedule night +starts +3 sources \(hubei,guizhou,fujian\) "
                     r"to shaanxi,henan, 2 waves of 2, until 08:00$", h, re.M), h
    # A window not yet open is judged on the roster then, and says so.
    assert re.search(r"^ +shaanxi: SL \d+% predicted, needs \d+ agents, has \d+ \(configured\), "
                     r"takes 3$", h, re.M), h
    assert re.search(rf"^01-24 \d\d:\d\d +cutover {cut['id']} +expires +xizang goes back from "
                     r"henan: drill 演练$", h, re.M), h
    assert re.search(r"^01-24 22:00 +schedule night +SKIPPED .*exception 2020-01-24$", h, re.M), h
    # 24 hours (the default) end before the skipped night.
    assert [e["kind"] for e in ctl_json("next")["events"]] == kinds[:3]
    for bad in (["--hours", "0"], ["--hours", "500"], ["--days", "2"]):
        ctl("next", *bad, expect=T.EXIT_USAGE)


def test_plan_of_a_schedule_and_a_dry_run_say_when():
    """plan --schedule names the window it predicts for and its waves; a
    dry run of a cutover with --for shows when the move would end."""
    h = ctl("plan", "--schedule", "night").stdout
    assert re.search(r"^  schedule night: window 2020-01-23 22:00:00 to 2020-01-24 08:00:00 "
                     r"\(Asia/Shanghai\), 2 waves of 2; predicted for its start$", h, re.M), h
    w = ctl_json("plan", "--schedule", "night")["window"]
    assert hhmm(w["start_ms"]) == "22:00" and hhmm(w["end_ms"]) == "08:00", w
    assert w["schedule"] == "night" and w["waves"] == 2 and w["wave_size"] == 2, w
    d = ctl("cutover", "hubei", "--to", "henan", "--reason", "drill",
            "--for", "2h", "--dry-run").stdout
    assert re.search(r"^  move  hubei +-> henan +would be cutover: drill until "
                     r"2020-01-2\d \d\d:\d\d:\d\d$", d, re.M), d


def test_status_rule_column_with_the_cutover_end():
    st = check(ctl_json("status"), STATUS, "status")
    by = {s["slug"]: s for s in st["sites"]}
    rule = by["xizang"]["rule"]
    assert rule["kind"] == "cutover" and rule["id"] == cut["id"] and \
        rule["reason"] == "drill 演练" and rule["end_ms"] > st["server_time_ms"], rule
    assert by["beijing"]["rule"] is None and by["henan"]["receives_from"] == 1, by["henan"]
    t = rows(ctl("status").stdout)
    assert t["xizang"].endswith(f"cutover {cut['id']} until {hhmm(rule['end_ms'])}: drill 演练"), \
        t["xizang"]
    assert t["henan"].endswith("hub for 1 site"), t["henan"]
    assert t["beijing"].endswith("default"), t["beijing"]
    moved = rows(ctl("status", "--moved").stdout)
    assert set(moved) == {"xizang", "henan"}, moved
    j = check(ctl_json("status", "--moved"), STATUS, "status --moved")
    assert j["filters"] == ["moved"] and {s["slug"] for s in j["sites"]} == {"xizang", "henan"}
    ctl("status", "--bogus", expect=T.EXIT_USAGE)
    # The page: the same end, the next table with the same events.
    dom = page()
    assert re.search(rf'data-slug="xizang">.*cutover {cut["id"]} until {hhmm(rule["end_ms"])}: '
                     r'drill 演练</td>', dom), "the page's rule column for xizang"
    assert re.search(r'data-slug="henan">.*hub for 1 site</td>', dom), \
        "the page counts henan's senders as status does"
    kinds = re.findall(r'<tr class="next" data-kind="([a-z-]+)"', dom)
    assert kinds == ["schedule-start", "cutover-expiry", "schedule-end"], kinds
    assert re.search(r'id="next".*schedule night.*starts.*3 sources \(hubei, guizhou, fujian\) '
                     r'to shaanxi, henan, 2 waves.*shaanxi: SL \d+%, needs \d+ agents', dom,
                     re.S), "the page's next table"


def test_schedule_in_force_shows_its_name_and_end():
    T.wait_until(lambda: all(routed_to(s) == ["shaanxi"] for s in SOURCES), 90,
                 "the night schedule moves its three sources to shaanxi (two waves)")
    t = rows(ctl("status").stdout)
    for s in SOURCES:
        assert t[s].endswith("schedule night until 08:00"), t[s]
    assert t["shaanxi"].endswith("hub for 3 sites"), t["shaanxi"]
    by = {s["slug"]: s for s in ctl_json("status")["sites"]}
    assert by["hubei"]["rule"]["name"] == "night" and hhmm(by["hubei"]["rule"]["end_ms"]) == \
        "08:00" and by["hubei"]["rule"]["detail"] == "", by["hubei"]
    dom = page()
    assert re.search(r'data-slug="hubei">.*schedule night until 08:00</td>', dom), \
        "the page names the schedule"
    assert re.search(r'data-slug="shaanxi">.*hub for 3 sites</td>', dom), \
        "the page counts shaanxi's senders as status does"
    assert not re.search(r"schedule \d+ \(night\)", dom), "the page shows an internal id"
    # In the window: its end comes first.
    assert ctl_json("next")["events"][0]["kind"] in ("cutover-expiry", "schedule-end")


def test_hub_lost_reads_rehomed_with_its_cause():
    env.agents["shaanxi"].stop()
    T.wait_until(lambda: all(routed_to(s) == ["henan"] for s in SOURCES), 60,
                 "the sources re-homed to henan after shaanxi's grace")
    t = rows(ctl("status").stdout)
    for s in SOURCES:
        assert t[s].endswith("schedule night until 08:00, re-homed: shaanxi offline"), t[s]
    assert t["henan"].endswith("hub for 4 sites"), t["henan"]
    moved = rows(ctl("status", "--moved").stdout)
    assert set(moved) == set(SOURCES) | {"xizang", "henan"}, moved
    probs = rows(ctl("status", "--problems").stdout)
    assert "shaanxi" in probs and "beijing" in probs and "hubei" not in probs, probs
    j = ctl_json("status", "--problems")
    sp = {s["slug"]: s for s in j["sites"]}
    assert "offline" in sp["shaanxi"]["problems"], sp["shaanxi"]
    # Chinese names, columns kept: LINK starts at the same screen column.
    zh = ctl("status", "--moved", "--zh").stdout
    assert "湖北" in zh and "Hubei" not in zh, zh
    cols = set()
    for line in zh.splitlines():
        m = re.search(r" (online|LINK) ", line)
        if m:  # screen columns before it: a Chinese character takes two
            head = line[:m.start()]
            cols.add(len(head) + sum(1 for c in head if "\u4e00" <= c <= "\u9fff"))
    assert len(cols) == 1, f"LINK column moves with the names: {cols}\n{zh}"
    # One site: the chain of reasons.
    s = ctl("site", "hubei").stdout
    assert re.search(r"^  rule +schedule night until 08:00$", s, re.M), s
    assert re.search(r"^  rule ends +2020-01-24 08:00 \(Asia/Shanghai\)$", s, re.M), s
    assert re.search(r"^  why here +re-homed: shaanxi offline$", s, re.M), s
    assert re.search(r"^  hub +henan 1000‰: online, report \d+\.\d s old", s, re.M), s
    one = check(ctl_json("site", "hubei"), STATUS, "site hubei")
    assert one["sites"][0]["hubs"][0]["slug"] == "henan", one
    dom = page()
    assert re.search(r'data-slug="hubei">.*re-homed: shaanxi offline</td>', dom), \
        "the page says why hubei is at henan"


def test_schedule_list_says_what_runs():
    """In its window, a schedule that moves its sources reads YES 3/3 with
    its next start, sources and exception; once every hub is gone it reads
    NOT RUNNING, not YES."""
    line = [l for l in ctl("schedule", "list").stdout.splitlines() if l.startswith("night ")][0]
    # The next start skips the exception date (2020-01-24).
    assert re.search(r" YES 3/3 +01-25 22:00 +hubei,guizhou,fujian +shaanxi,henan +2020-01-24$",
                     line), line
    env.agents["henan"].stop()
    T.wait_until(lambda: all(routed_to(s) == [s] for s in SOURCES), 60,
                 "the sources held home with both hubs gone")
    line = [l for l in ctl("schedule", "list").stdout.splitlines() if l.startswith("night ")][0]
    assert " NOT RUNNING 0/3 " in line, line
    j = ctl_json("schedule", "list")["schedules"][0]
    assert j["in_force"] and j["sources_moved"] == 0, j
    t = rows(ctl("status").stdout)
    assert t["hubei"].endswith("schedule night until 08:00, home: shaanxi offline, henan offline"), \
        t["hubei"]


def test_kept_for_people():
    with open(os.path.join(env.dir, "shown.txt"), "w") as f:
        f.write("\n".join(shown))


if __name__ == "__main__":
    T.main([test_sites_online_and_rules_made, test_next_lists_start_expiry_end_and_skip_in_order,
            test_plan_of_a_schedule_and_a_dry_run_say_when,
            test_status_rule_column_with_the_cutover_end,
            test_schedule_in_force_shows_its_name_and_end,
            test_hub_lost_reads_rehomed_with_its_cause, test_schedule_list_says_what_runs,
            test_kept_for_people])
