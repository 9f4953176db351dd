"""Issue 3 bad input for rules over nircctl: each is refused with a message
that names the problem, and nothing changes: exit 2 when the request's own
text is wrong (a time, a zone, a site), exit 1 when the state forbids it (a
conflict, a circle); viewers and operators cannot change schedules or overflow rules
(exit 1); the refusals are audited."""
import json
import re

import nirclib as T

env = None
NIGHT = ["--sources", "hubei,guizhou", "--to", "shaanxi,henan", "--start", "22:00",
         "--end", "08:00"]


def refused(args, words, cert="operator-alice", code=T.EXIT_USAGE):
    r = env.ctl(*args, cert=cert)
    assert r.returncode == code, f"{args}: exit {r.returncode}: {r.stdout}{r.stderr}"
    for w in words:
        assert w in r.stderr, (w, r.stderr)


def schedules():
    return json.loads(env.ctl("--json", "schedule", "list").stdout)["schedules"]


def test_setup():
    global env
    env = T.Env("rules-cli")
    env.start_controller()
    r = env.ctl("schedule", "add", "night", *NIGHT, "--tz", "Asia/Shanghai")
    assert r.returncode == 0, r.stderr
    # The reply says what its window would do at each hub, above the list:
    # here no agent runs, so nothing moves and nothing could be checked.
    lines = r.stdout.splitlines()
    assert lines[0].startswith("capacity of the window from "), r.stdout
    assert "NOT checked: the plan sends its hubs no calls" in lines[0], r.stdout
    assert lines[1].split()[0] == "shaanxi" and lines[2].split()[0] == "henan", r.stdout


def test_schedule_bad_time_zone_refused():
    refused(["schedule", "add", "mars", *NIGHT, "--tz", "Mars/Olympus"], ["Mars/Olympus"])
    refused(["schedule", "add", "dots", *NIGHT, "--tz", "../etc/passwd"], ["passwd"])


def test_schedule_bad_time_refused():
    bad = ["--sources", "xizang", "--to", "shaanxi", "--start", "24:00", "--end", "08:00"]
    refused(["schedule", "add", "late", *bad], ["24:00"])
    bad[5] = "7:5"
    refused(["schedule", "add", "late", *bad], ["7:5"])


def test_overlapping_schedules_with_equal_precedence_refused():
    refused(["schedule", "add", "overlap", "--sources", "hubei", "--to", "henan", "--start",
             "07:00", "--end", "09:00"], ["conflicts with schedule 'night'"],
            code=T.EXIT_REFUSED)
    assert [s["name"] for s in schedules()] == ["night"]


def test_schedules_moving_calls_in_a_circle_refused():
    """xian-away moves shaanxi to henan 23:00-01:00, inside night (whose hub
    shaanxi is: a chain, accepted). henan-away, henan to shaanxi at the same
    time, would close a circle: refused, naming xian-away and the circle,
    and nothing stored. It was accepted, and only the planner's alarm at
    23:00 said one of them could not run (audit F15)."""
    away = ["--start", "23:00", "--end", "01:00", "--tz", "Asia/Shanghai"]
    r = env.ctl("schedule", "add", "xian-away", "--sources", "shaanxi", "--to", "henan", *away)
    assert r.returncode == 0, r.stderr
    refused(["schedule", "add", "henan-away", "--sources", "henan", "--to", "shaanxi", *away],
            ["would move calls in a circle with schedule 'xian-away': henan -> shaanxi "
             "('henan-away'), shaanxi -> henan ('xian-away'), all in force from mon 23:00 to "
             "tue 01:00 (Asia/Shanghai)", "drop one of these hubs"], code=T.EXIT_REFUSED)
    assert [s["name"] for s in schedules()] == ["night", "xian-away"]
    assert env.sql("SELECT count(*) FROM schedules WHERE name = 'henan-away'") == [["0"]]
    assert env.sql("SELECT action FROM audit_log WHERE target = 'henan-away'") == \
        [["schedule-refused"]]
    # Windows that do not overlap make no circle.
    r = env.ctl("schedule", "add", "henan-day", "--sources", "henan", "--to", "shaanxi",
                "--start", "09:00", "--end", "17:00")
    assert r.returncode == 0, r.stderr
    # Enabling closes a circle too: refused the same way.
    assert env.ctl("schedule", "disable", "xian-away").returncode == 0
    r = env.ctl("schedule", "add", "henan-away", "--sources", "henan", "--to", "shaanxi", *away)
    assert r.returncode == 0, r.stderr
    refused(["schedule", "enable", "xian-away"],
            ["cannot enable: would move calls in a circle with schedule 'henan-away'"],
            code=T.EXIT_REFUSED)
    assert not {s["name"]: s for s in schedules()}["xian-away"]["enabled"]
    for name in ("xian-away", "henan-away", "henan-day"):
        assert env.ctl("schedule", "rm", name).returncode == 0


def test_unknown_site_and_own_hub_refused():
    refused(["schedule", "add", "x", "--sources", "atlantis", "--to", "shaanxi", "--start",
             "01:00", "--end", "02:00"], ["atlantis"])
    refused(["schedule", "add", "x", "--sources", "shaanxi", "--to", "shaanxi", "--start",
             "01:00", "--end", "02:00"], ["shaanxi"])


def test_overflow_rules_validated():
    refused(["overflow", "add", "gd", "--source", "guangdong", "--to", "sichuan", "--cap", "300"],
            ["trigger"])
    refused(["overflow", "add", "gd", "--source", "guangdong", "--to", "sichuan", "--cap", "300",
             "--trigger-wait", "30s", "--release-wait", "60s"], ["release"])
    ok = env.ctl("overflow", "add", "gd", "--source", "guangdong", "--to", "sichuan", "--cap",
                 "300", "--trigger-wait", "60s", "--release-wait", "15s")
    assert ok.returncode == 0, ok.stderr
    refused(["overflow", "add", "gd2", "--source", "guangdong", "--to", "henan", "--cap", "100",
             "--trigger-queue", "20", "--release-queue", "5"], ["conflicts"],
            code=T.EXIT_REFUSED)


def test_share_out_of_range_refused():
    refused(["cutover", "xizang", "--to", "shaanxi", "--share", "1200", "--reason", "x",
             "--force"], ["1000"])


def test_only_admins_change_rules_and_refusals_are_audited():
    for who in ("operator-olga", "operator-victor"):
        refused(["schedule", "disable", "night"], ["admin"], cert=who, code=T.EXIT_REFUSED)
        refused(["overflow", "rm", "gd"], ["admin"], cert=who, code=T.EXIT_REFUSED)
    assert env.ctl("schedule", "list", cert="operator-victor").returncode == 0
    assert schedules()[0]["enabled"]
    audited = env.sql("SELECT count(*) FROM audit_log WHERE action LIKE '%-refused'")
    assert int(audited[0][0]) >= 8, audited
    events = env.sql("SELECT count(*) FROM link_events WHERE event = 'refused' AND "
                     "detail LIKE '%needs role admin%'")
    assert int(events[0][0]) == 4, events


def test_overflow_set_changes_in_place():
    """overflow set changes hubs and cap in place (same id, one row
    updated, audited as overflow-change); its source stays."""
    rules = json.loads(env.ctl("--json", "overflow", "list").stdout)["rules"]
    (gd,) = [o for o in rules if o["name"] == "gd"]
    refused(["overflow", "set", "gd", "--source", "hainan", "--cap", "250"],
            ["keeps its source (guangdong)"])
    r = env.ctl("overflow", "set", "gd", "--to", "henan", "--cap", "200")
    assert r.returncode == 0, r.stderr
    assert "overflow rule 'gd' changed: hubs sichuan -> henan; share_cap_permille 300 -> 200" \
        in r.stdout, r.stdout
    rules = json.loads(env.ctl("--json", "overflow", "list").stdout)["rules"]
    (after,) = [o for o in rules if o["name"] == "gd"]
    assert after["id"] == gd["id"] and after["hubs"] == ["henan"], after
    assert after["share_cap_permille"] == 200 and after["trigger_wait_s"] == 60, after
    assert env.sql(f"SELECT share_cap_permille, hubs::text FROM overflow_rules "
                   f"WHERE id = {gd['id']}") == [["200", "{henan}"]]
    rows = env.sql("SELECT detail::text FROM audit_log WHERE action = 'overflow-change'")
    assert len(rows) == 1, rows
    detail = json.loads(rows[0][0])
    assert detail["before"] == {"hubs": ["sichuan"], "share_cap_permille": 300}, detail
    assert detail["after"] == {"hubs": ["henan"], "share_cap_permille": 200}, detail


def test_schedule_set_changes_in_place():
    """schedule set changes only what it is given, keeps the id (one row
    updated, not a rm and an add that would send every source home and
    back), answers what changed and moved, and is audited once as
    schedule-change with before and after. --dry-run changes nothing;
    operators cannot."""
    (before,) = schedules()
    r = env.ctl("schedule", "set", "night", "--end", "08:30", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "schedule 'night' would change (dry run: nothing was changed): end 08:00 -> 08:30" \
        in r.stdout, r.stdout
    assert schedules()[0]["end"] == "08:00"
    refused(["schedule", "set", "night", "--end", "08:30"], ["admin"], cert="operator-olga",
            code=T.EXIT_REFUSED)
    refused(["schedule", "set", "night"], ["at least one change"])
    refused(["schedule", "set", "night", "--end", "08:00"], ["nothing to change"],
            code=T.EXIT_REFUSED)
    r = env.ctl("schedule", "set", "night", "--end", "08:30", "--to", "shaanxi")
    assert r.returncode == 0, r.stderr
    assert "schedule 'night' changed: hubs shaanxi,henan -> shaanxi; end 08:00 -> 08:30" in \
        r.stdout, r.stdout
    assert "no source routes by it now: nothing moves" in r.stdout, r.stdout
    (after,) = schedules()
    assert after["id"] == before["id"] and after["end"] == "08:30", after
    assert after["hubs"] == ["shaanxi"] and after["sources"] == before["sources"], after
    assert after["start"] == "22:00" and after["tz"] == before["tz"], after
    assert env.sql(f"SELECT end_min, hubs::text FROM schedules WHERE id = {after['id']}") == \
        [["510", "{shaanxi}"]]
    rows = env.sql("SELECT detail::text FROM audit_log WHERE action = 'schedule-change' "
                   "AND target = 'night'")
    assert len(rows) == 1, rows
    detail = json.loads(rows[0][0])
    assert detail["id"] == after["id"], detail
    assert detail["before"] == {"end": "08:00", "hubs": ["shaanxi", "henan"]}, detail
    assert detail["after"] == {"end": "08:30", "hubs": ["shaanxi"]}, detail
    # Back as it was, for the tests after this one.
    r = env.ctl("--json", "schedule", "set", "night", "--end", "08:00", "--to", "shaanxi,henan")
    assert r.returncode == 0, r.stderr
    change = json.loads(r.stdout)["change"]
    assert change["changed"] == ["hubs shaanxi -> shaanxi,henan", "end 08:30 -> 08:00"], change
    assert change["dry_run"] is False and change["moves"] == [], change


def test_schedule_enable_disable_rm_audited():
    for op in ("disable", "enable", "rm"):
        assert env.ctl("schedule", op, "night").returncode == 0
    assert schedules() == []
    acts = [r[0] for r in env.sql("SELECT action FROM audit_log WHERE target = 'night' "
                                  "AND action LIKE 'schedule-%' ORDER BY id")]
    assert acts == ["schedule-add", "schedule-refused", "schedule-change", "schedule-change",
                    "schedule-disable", "schedule-enable", "schedule-rm"], acts
    env.close()


def test_window_in_dst_gap_is_no_window():
    """gapwin 02:10-02:50 Europe/Berlin lies wholly in the hour the clocks
    skip on 2026-03-29: that day has no window. `next` says so in words
    (it said "exception 2026-03-29", and there is none), and `schedule
    list` and `plan --schedule` name the next window that runs, Monday's
    (they gave 03-29 09:00, a start that does not happen). NEXT START is
    labelled with the zone it is shown in, [ctl] tz, beside the schedule's
    own TZ column (audit F1, F2)."""
    global env
    env = T.Env("rules-cli-dst", clock_start="2026-03-28T12:00:00+01:00")
    env.start_controller()
    r = env.ctl("schedule", "add", "gapwin", "--sources", "hubei", "--to", "shaanxi",
                "--start", "02:10", "--end", "02:50", "--tz", "Europe/Berlin")
    assert r.returncode == 0, r.stderr
    out = env.ctl("schedule", "list").stdout
    line = [l for l in out.splitlines() if l.startswith("gapwin ")][0]
    assert " 03-30 08:10 " in line, out  # 02:10 CEST on Monday, in Asia/Shanghai
    assert "NEXT START in Asia/Shanghai" in out, out
    assert schedules()[0]["next_start_ms"] == 1774829400000  # 2026-03-30T00:10:00Z

    r = env.ctl("next", "--hours", "48")
    assert r.returncode == 0, r.stderr
    assert "exception" not in r.stdout, r.stdout
    skip = [l for l in r.stdout.splitlines() if " SKIPPED " in l]
    assert len(skip) == 1 and skip[0].startswith("03-29 09:00 schedule gapwin"), r.stdout
    assert skip[0].endswith("the window does not run: 02:10-02:50 does not exist on 2026-03-29 "
                            "in Europe/Berlin (DST change)"), r.stdout
    assert re.search(r"^03-30 08:10 schedule gapwin +starts ", r.stdout, re.M), r.stdout
    events = json.loads(env.ctl("--json", "next", "--hours", "48").stdout)["events"]
    assert [(e["kind"], e["at_ms"]) for e in events] == [
        ("schedule-skip", 1774746000000), ("schedule-start", 1774829400000),
        ("schedule-end", 1774831800000)], events
    assert events[0]["reason"] == \
        "02:10-02:50 does not exist on 2026-03-29 in Europe/Berlin (DST change)", events

    # No hub has connected: refused, but for the window that runs.
    r = env.ctl("plan", "--schedule", "gapwin")
    assert "window 2026-03-30 08:10:00" in r.stdout, r.stdout + r.stderr
    assert "2026-03-29" not in r.stdout, r.stdout
    env.close()


if __name__ == "__main__":
    T.main([test_setup, test_schedule_bad_time_zone_refused, test_schedule_bad_time_refused,
            test_overlapping_schedules_with_equal_precedence_refused,
            test_schedules_moving_calls_in_a_circle_refused,
            test_unknown_site_and_own_hub_refused, test_overflow_rules_validated,
            test_share_out_of_range_refused, test_only_admins_change_rules_and_refusals_are_audited,
            test_overflow_set_changes_in_place, test_schedule_set_changes_in_place,
            test_schedule_enable_disable_rm_audited,
            test_window_in_dst_gap_is_no_window])
