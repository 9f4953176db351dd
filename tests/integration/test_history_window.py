"""`nircctl history` over a time window, end to end (audit findings F3):
 - more entries match than --limit: the text says so and how to read on, the
   CSV stays clean and the note goes to stderr, the JSON says `complete`
   false with `next_before_id`, and --before-id pages back until every
   matching entry has been read exactly once;
 - on an accelerated business clock (as in ./demo.sh), --since/--until are
   compared with the business time the entries show, absolute times and
   durations alike; an entry without a business time (made before it was
   kept, or by `nircd import-sites`) is placed by its real time.
The entries are written with SQL at chosen instants (audit_log takes
inserts), so nothing here waits on time passing."""
import json

import nirclib as T

env = None
START = "2020-01-23T02:55:00+08:00"


def ctl(*args, expect=0):
    r = env.ctl(*args)
    assert r.returncode == expect, f"{args}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r


def history_json(*args):
    return json.loads(ctl("--json", "history", *args).stdout)


def test_setup():
    global env
    env = T.Env("history-window", clock_speed=30, clock_start=START)
    env.start_controller()
    # 120 entries by 'pager', one business minute apart from 02:01 to 04:00
    # (+08:00), all written now in real time.
    env.sql("INSERT INTO audit_log (actor, action, target, detail, at, business_at) "
            "SELECT 'pager', 'probe', 'p' || g, jsonb_build_object('n', g), now(), "
            "'2020-01-23 02:00:00+08'::timestamptz + g * interval '1 minute' "
            "FROM generate_series(1, 120) g")


def pager_ids():
    return [int(r[0]) for r in env.sql("SELECT id FROM audit_log WHERE actor = 'pager' "
                                       "ORDER BY id")]


def test_truncation_is_said_and_pages_reach_everything():
    ids = pager_ids()
    assert len(ids) == 120, ids
    # Text: the newest 50, then what was left out and how to read it.
    r = ctl("history", "--actor", "pager")
    rows = [l for l in r.stdout.splitlines() if " pager " in l]
    assert len(rows) == 50, r.stdout
    assert "showing the newest 50" in r.stdout and f"--before-id {ids[70]}" in r.stdout, r.stdout
    # CSV: only data on stdout; the note on stderr.
    r = ctl("history", "--actor", "pager", "--csv")
    lines = r.stdout.splitlines()
    assert len(lines) == 51 and lines[0].startswith("id,"), r.stdout
    assert "showing the newest 50" in r.stderr and f"--before-id {ids[70]}" in r.stderr, r.stderr
    # JSON: a script can tell, and page on until complete.
    seen, before, pages = [], None, 0
    while True:
        args = ["--actor", "pager", "--limit", "50"] + (["--before-id", str(before)] if before
                                                        else [])
        j = history_json(*args)
        got = [e["id"] for e in j["entries"]]
        assert got == sorted(got), got
        seen = got + seen
        pages += 1
        if j["complete"]:
            assert j["next_before_id"] is None, j
            break
        assert j["next_before_id"] == got[0], (j["next_before_id"], got[0])
        before = j["next_before_id"]
        assert pages < 5, "paging does not end"
    assert pages == 3 and seen == ids, (pages, seen)
    # All of it in one reply: complete, no note.
    j = history_json("--actor", "pager", "--limit", "120")
    assert j["complete"] and len(j["entries"]) == 120, j
    r = ctl("history", "--actor", "pager", "--limit", "120")
    assert "showing the newest" not in r.stdout, r.stdout
    # A bad --before-id is a usage error that says what it takes.
    r = ctl("history", "--before-id", "x", expect=T.EXIT_USAGE)
    assert "--before-id" in r.stderr, r.stderr


def test_window_is_business_time():
    # The README's and --help's example against the demo's clock: the
    # entries whose BUSINESS TIME is 02:50 .. 03:59 (+08:00).
    j = history_json("--actor", "pager", "--since", "2020-01-23T02:50",
                     "--until", "2020-01-23T04:00", "--limit", "500")
    got = [e["detail"]["n"] for e in j["entries"]]
    assert got == list(range(50, 120)), got
    assert j["complete"] and j["window_clock"] == "business", j
    r = ctl("history", "--actor", "pager", "--since", "2020-01-23T02:50",
            "--until", "2020-01-23T04:00", "--limit", "500")
    assert "no audit records match" not in r.stdout, r.stdout
    assert "2020-01-23 02:50:00" in r.stdout and "2020-01-23 03:59:00" in r.stdout, r.stdout
    # A duration counts back from the controller's business now, not the
    # real one: one entry 10 business minutes old, one 3 business hours old.
    now = json.loads(ctl("--json", "status").stdout)["server_time_ms"]
    env.sql("INSERT INTO audit_log (actor, action, target, detail, at, business_at) VALUES "
            f"('ago', 'probe', 'recent', '{{}}', now(), to_timestamp({now - 600000} / 1000.0)),"
            f"('ago', 'probe', 'old', '{{}}', now(), to_timestamp({now - 3 * 3600000} / 1000.0))")
    j = history_json("--actor", "ago", "--since", "1h")
    assert [e["target"] for e in j["entries"]] == ["recent"], j
    j = history_json("--actor", "ago", "--until", "1h")
    assert [e["target"] for e in j["entries"]] == ["old"], j
    # No business time on record: its real time stands in.
    env.sql("INSERT INTO audit_log (actor, action, target, detail, at) VALUES "
            "('untimed', 'probe', 'x', '{}', '2020-01-23 03:00:00+08')")
    j = history_json("--actor", "untimed", "--since", "2020-01-23T02:50",
                     "--until", "2020-01-23T04:00")
    assert [e["target"] for e in j["entries"]] == ["x"], j


if __name__ == "__main__":
    try:
        T.main([test_setup, test_truncation_is_said_and_pages_reach_everything,
                test_window_is_business_time])
    finally:
        if env:
            env.close()
