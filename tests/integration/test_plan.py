"""Plans and dry runs are exact (issue 12, point 5), through the real
controller, agents and nircctl, in human and JSON output:

- one capacity row per hub, whatever the number of sources it takes or
  turns down (a hub that takes Xizang and refuses Hubei shows both in one
  row: the refused load's prediction on its [REFUSED] line);
- no invented rule id: a plan or dry run names the move "would be
  cutover: REASON", never the id the next cutover will get;
- exit 1 when any source would not move, naming every such source with
  each hub's need; exit 0 only when every source moves;
- --force past the capacity check warns in human and JSON output, for a
  dry run and a real cutover, and the cutover's audit record keeps the
  prediction it overrode (forced_over).

Daytime business clock, as in test_routing: at 10:00 on 2020-01-23 Xizang's
few calls fit in Shaanxi, while Hubei, Jiangsu, Zhejiang and Shandong are
each too big for Shaanxi and Henan."""
import json
import re

import nirclib as T

SITES = ["xizang", "hubei", "jiangsu", "zhejiang", "shandong", "shaanxi", "henan"]
BIG = ["jiangsu", "zhejiang", "shandong"]
NEED = r"would need (\d+) agents \(has (\d+)\)"
# A move is checked on the larger of the live load and the forecast for the
# half hour ahead (the scenario file here): the warning says when it was
# the forecast.
FORCED = re.compile(r"forced past the capacity check: shaanxi predicted SL (\d+)% "
                    r"\(needs (\d+) agents, has (\d+)\)"
                    r"(, on the forecast for \d\d:\d\d-\d\d:\d\d(: load rising at [a-z0-9, ]+"
                    r"| at [a-z0-9, ]+: [\d.]+ Erl vs [\d.]+ Erl live, within the live load's "
                    r"own fluctuation))?")
env = None
previews = []  # everything plans and dry runs printed, checked for rule ids


def ctl(*args, expect):
    r = env.ctl(*args)
    what = f"nircctl {' '.join(args)}"
    assert r.returncode == expect, f"{what}: exit {r.returncode}, expected {expect}\n" \
                                   f"stdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def ctl_json(*args, expect):
    r = ctl("--json", *args, expect=expect)
    return r, json.loads(r.stdout)


def preview(*args, expect):
    """A plan or dry run, human and JSON: (human result, JSON document)."""
    h = ctl(*args, expect=expect)
    rj, j = ctl_json(*args, expect=expect)
    previews.extend([h.stdout, h.stderr, rj.stdout, rj.stderr])
    return h, j


def hub_lines(text, hub):
    return [l for l in text.splitlines() if re.match(rf"^\s+hub\s+{hub}\s", l)]


def one_row_per_hub(plan):
    hubs = [c["hub"] for c in plan["capacity"]]
    assert len(hubs) == len(set(hubs)), f"a hub with several capacity rows: {plan['capacity']}"
    return {c["hub"]: c for c in plan["capacity"]}


# ---- tests ----

def test_sites_online():
    global env
    env = T.Env("plan", clock_start="2020-01-23T10:00:00+08:00")
    env.start_controller()
    for s in SITES:
        env.start_agent(s)
    # The capacity check smooths live load: a few reports from each first.
    def ready():
        st = env.status()  # one request per poll, not two per site
        return all(st[s]["link"] == "online" and st[s]["load"] for s in SITES) and all(
            len(env.reports(s)) >= 5 for s in SITES)
    T.wait_until(ready, 40, "seven agents online with a few reports each")


def test_one_row_per_hub_with_what_it_takes_and_refuses():
    """plan xizang,hubei --to shaanxi: Shaanxi takes Xizang, refuses Hubei."""
    h, j = preview("plan", "xizang,hubei", "--to", "shaanxi", expect=T.EXIT_REFUSED)
    rows = hub_lines(h.stdout, "shaanxi")
    assert len(rows) == 1, f"one line for shaanxi, got {len(rows)}:\n{h.stdout}"
    assert rows[0].rstrip().endswith("takes xizang"), rows[0]
    assert re.search(r"\[REFUSED\] hubei: with hubei too: [\d.]+ Erl, .*; needs (\d+) agents "
                     r"\(has (\d+)\)", h.stdout), h.stdout
    assert re.search(r"move\s+xizang\s+-> shaanxi\s+would be cutover$", h.stdout, re.M), h.stdout

    sx = one_row_per_hub(j)["shaanxi"]
    assert sx["sources"] == ["xizang"] and sx["refused_sources"] == ["hubei"], sx
    assert sx["traffic_after_erl"] > sx["traffic_before_erl"], sx
    w = sx["with_refused"]
    assert w["source"] == "hubei" and w["traffic_erl"] > sx["traffic_after_erl"], sx
    assert w["agents_needed"] > sx["agents"] and not sx["forced"], sx
    # What it was predicted on: a forecast covers every site (the scenario).
    on = sx["load_on"]
    assert on["basis"] in ("live", "forecast") and on["forecast_erl"] is not None, sx
    assert re.search(r"^\s+load of shaanxi: on the (live load|forecast for )", h.stdout, re.M), \
        h.stdout
    assert [(m["site"], m["reason"]) for m in j["moves"]] == [("xizang", "would be cutover")], j


def test_refused_sources_all_named_and_exit_1():
    h, j = preview("plan", ",".join(BIG), "--to", "shaanxi,henan", expect=T.EXIT_REFUSED)
    assert "3 of 3 sources would not move" in h.stderr, h.stderr
    for s in BIG:
        m = re.search(rf"^\s+refused {s}: shaanxi {NEED}, henan {NEED}$", h.stdout, re.M)
        assert m, f"no refused line naming {s} with both hubs' needs:\n{h.stdout}"
        assert int(m.group(1)) > int(m.group(2)) and int(m.group(3)) > int(m.group(4)), m[0]
        assert re.search(rf"{s}: shaanxi {NEED}, henan {NEED}", h.stderr), h.stderr
    for hub in ("shaanxi", "henan"):
        assert len(hub_lines(h.stdout, hub)) == 1, h.stdout
    assert j["refused"] is True and [r["source"] for r in j["refused_sources"]] == BIG, j
    for r in j["refused_sources"]:
        assert [x["hub"] for x in r["hubs"]] == ["shaanxi", "henan"], r
        assert all(x["agents_needed"] > x["agents"] for x in r["hubs"]), r
    assert set(one_row_per_hub(j)) == {"shaanxi", "henan"}, j

    # The dry run shares the code: refused (exit 1), every source named.
    args = ("cutover", ",".join(BIG), "--to", "shaanxi,henan", "--reason", "drill", "--dry-run")
    h, j = preview(*args, expect=T.EXIT_REFUSED)
    assert all(f"{s}: shaanxi would need" in h.stderr for s in BIG), h.stderr
    assert j["ok"] is False and all(f"{s}: shaanxi would need" in j["error"] for s in BIG), j
    assert [r["source"] for r in j["plan"]["refused_sources"]] == BIG, j

    # Every source moves: exit 0, nothing refused.
    h, j = preview("plan", "xizang", "--to", "shaanxi", expect=0)
    assert j["refused"] is False and j["refused_sources"] == [] and j["refusal"] == "", j
    assert "refused" not in h.stdout and "REFUSED" not in h.stdout, h.stdout


def test_forced_dry_run_warns():
    args = ("cutover", "hubei", "--to", "shaanxi", "--reason", "Wuhan lockdown", "--force",
            "--dry-run")
    h, j = preview(*args, expect=0)
    m = FORCED.search(h.stderr)
    assert m and int(m.group(2)) > int(m.group(3)), f"no force warning:\n{h.stderr}"
    assert "[FORCED past the capacity check]" in hub_lines(h.stdout, "shaanxi")[0], h.stdout
    assert "would be cutover: Wuhan lockdown" in h.stdout, h.stdout
    assert FORCED.fullmatch(j["force_warning"]), j
    [over] = j["forced_over"]
    assert over["hub"] == "shaanxi" and over["agents_needed"] > over["agents"], over
    assert one_row_per_hub(j["plan"])["shaanxi"]["forced"] is True, j
    assert int(env.sql("SELECT count(*) FROM cutovers")[0][0]) == 0, "a dry run made a cutover"


def test_no_invented_rule_id():
    """No cutover exists yet: any id a plan or dry run printed was invented."""
    ids = [m[0] for text in previews for m in re.finditer(r"cutover \d+", text)]
    assert not ids, f"plans and dry runs printed rule ids: {ids}"


def test_forced_cutover_warns_and_audits():
    r = ctl("cutover", "hubei", "--to", "shaanxi", "--reason", "Wuhan lockdown", "--force",
            "--for", "2h", expect=0)
    m = re.search(r"^cutover (\d+): 2 applied, 0 failed", r.stdout, re.M)
    assert m, r.stdout
    cid = int(m.group(1))
    # The reply says when it ends, in [ctl] tz, as status does (audit F6).
    assert re.search(r"^cutover \d+: .* ms; until 2020-01-23 1[23]:\d\d \(Asia/Shanghai\)$",
                     r.stdout, re.M), r.stdout
    w = FORCED.search(r.stderr)
    assert w and int(w.group(2)) > int(w.group(3)), f"no force warning:\n{r.stderr}"
    # The id the dry runs would have invented is this one: they did not print it.
    assert not any(f"cutover {cid}" in text for text in previews)

    _, hist = ctl_json("history", "--action", "cutover", expect=0)
    [entry] = [e for e in hist["entries"] if e["detail"]["cutover_id"] == cid]
    [over] = entry["detail"]["forced_over"]
    assert over["hub"] == "shaanxi" and over["agents_needed"] == int(w.group(2)), entry
    assert over["agents"] == int(w.group(3)) and over["sl_after"] < 0.8, entry
    ctl("restore", "hubei", expect=0)

    # JSON: the same warning in the Move.
    _, j = ctl_json("cutover", "hubei", "--to", "shaanxi", "--reason", "again", "--force",
                    expect=0)
    assert j["ok"] is True and FORCED.fullmatch(j["force_warning"]), j
    assert j["expires_ms"] is None, j  # open-ended
    assert [o["hub"] for o in j["forced_over"]] == ["shaanxi"], j
    ctl("restore", "hubei", expect=0)

    # A cutover that passes the check overrides nothing and says nothing.
    r, j = ctl_json("cutover", "xizang", "--to", "shaanxi", "--reason", "fits", "--force",
                    expect=0)
    assert j["force_warning"] == "" and j["forced_over"] == [], j
    assert "forced past" not in r.stderr, r.stderr
    _, hist = ctl_json("history", "--action", "cutover", expect=0)
    assert hist["entries"][-1]["detail"]["forced_over"] == [], hist["entries"][-1]
    ctl("restore", "xizang", expect=0)


def test_everything_still_running():
    for p in T.Proc.all:
        assert p.alive(), f"{p.name} died:\n{p.tail()}"


if __name__ == "__main__":
    T.main([test_sites_online,
            test_one_row_per_hub_with_what_it_takes_and_refuses,
            test_refused_sources_all_named_and_exit_1,
            test_forced_dry_run_warns,
            test_no_invented_rule_id,
            test_forced_cutover_warns_and_audits,
            test_everything_still_running])
