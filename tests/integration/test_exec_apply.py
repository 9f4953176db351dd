"""Issue 14 at an exec PBX: the PBX is the truth.

The PBX is three shell scripts behind the exec adapter: apply_cmd logs its
start and end (with its pid and a timestamp) around an optional sleep and
writes the route into a file, the PBX's routing; verify_cmd prints that
file; collect_cmd prints a fixed load.

- exec applies die with their agent and never overlap, across restarts:
  the agent is SIGKILLed in the middle of a slow apply; the command's
  process group dies with it, and the restarted agent's first apply (the
  saved route, before it connects) starts only then. The log shows every
  apply that started either ending before the next one starts or never
  ending (killed).
- a verify_cmd that shows the PBX routing otherwise turns an apply the
  PBX said it took into `failed`, with what it found;
- drift: the PBX's routing is reset behind the agent's back; within
  [agent] pbx_check_interval the agent applies its route again and the
  controller shows a `pbx` alarm (warning) and counts the repair."""
import json
import os
import re
import subprocess
import time
import urllib.request

import nirclib as T

SITE = "xizang"
env = None
files = {}

APPLY = """#!/bin/sh
# A slow PBX: the route goes in after a pause when the file `slow` exists.
d=$(dirname "$0")
route=$(cat)
# `down`: the PBX refuses every route.
[ -e "$d/down" ] && { echo "PBX down" >&2; exit 1; }
echo "start $$ $(date +%s.%N)" >> "$d/pbx.log"
[ -e "$d/slow" ] && sleep "$(cat "$d/slow")"
printf '%s\\n' "$route" > "$d/pbx-route.json.tmp" && mv "$d/pbx-route.json.tmp" "$d/pbx-route.json"
# `hang`: the route is in, then the command hangs past the agent's timeout.
[ -e "$d/hang" ] && sleep 30
echo "end $$ $(date +%s.%N)" >> "$d/pbx.log"
exit 0
"""
VERIFY = """#!/bin/sh
# The PBX's routing as it is; `liar` makes it show Henan whatever it holds.
d=$(dirname "$0")
if [ -e "$d/liar" ]; then
  echo '{"route":[{"site":"henan","permille":1000}]}'
elif [ ! -e "$d/pbx-route.json" ]; then
  echo '{"route":[{"site":"xizang","permille":1000}]}'
else
  cat "$d/pbx-route.json"
fi
"""
COLLECT = """#!/bin/sh
echo '{"calls_offered": 2, "calls_answered": 2, "calls_in_queue": 0, "agents_logged_in": 9,
       "agents_ready": 8, "agents_talking": 1, "aht_ms": 295000, "answered_within_threshold": 2,
       "sl_threshold_s": 20}'
"""
HOME = [{"site": SITE, "permille": 1000}]
AWAY = [{"site": "shaanxi", "permille": 1000}]


def start_exec_agent(verify=True, timeout="20s"):
    conf = env.agent_conf(SITE)
    text = open(conf).read().replace("[agent]", "[agent]\nadapter = exec\npbx_check_interval = 1s",
                                     1)
    text += (f"\n[exec]\napply_cmd = {env.dir}/apply.sh\ncollect_cmd = {env.dir}/collect.sh\n"
             + (f"verify_cmd = {env.dir}/verify.sh\n" if verify else "") + f"timeout = {timeout}\n")
    with open(conf, "w") as f:
        f.write(text)
    a = T.Proc(f"agent-{SITE}", [T.binary("nirc-agent"), "-c", conf], env.dir)
    env.agents[SITE] = a
    return a


def pbx_log():
    try:
        with open(files["log"]) as f:
            return [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def pbx_route():
    try:
        with open(files["route"]) as f:
            return json.load(f)["route"]
    except (FileNotFoundError, ValueError):
        return None


def group_alive(pgid):
    """Any process of the group still running (zombies are dead)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read().split(")")[-1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(st[3]) == pgid and st[0] != "Z":
            return True
    return False


def assert_no_overlap(lines):
    """Every end belongs to the apply that started last; an apply that never
    ended was killed, and nothing of it may run after the next start."""
    running = None
    for kind, pid, _t in lines:
        if kind == "start":
            running = pid
        else:
            assert pid == running, f"apply {pid} ended while apply {running} ran:\n{lines}"
            running = None


def map_tip(svg, slug):
    """The map's tooltip of `slug` (its dot's <title>): "" if not drawn."""
    return svg.split(f"({slug})", 1)[-1].split("</title>", 1)[0] if f"({slug})" in svg else ""


def page_map():
    return urllib.request.urlopen(f"http://{files['http']}/map.svg", timeout=5).read().decode()


def alarms():
    return json.loads(env.ctl("--json", "alarms").stdout)["alarms"]


def test_setup():
    global env
    files["http"] = "127.0.0.1:%d" % T.free_port()
    env = T.Env("exec-apply", clock_start="2020-01-23T10:00:00+08:00",
                extra_nircd="[http]\nlisten = %s\n" % files["http"])
    for name, body in (("apply.sh", APPLY), ("verify.sh", VERIFY), ("collect.sh", COLLECT)):
        path = os.path.join(env.dir, name)
        with open(path, "w") as f:
            f.write(body)
        os.chmod(path, 0o755)
    files["log"] = os.path.join(env.dir, "pbx.log")
    files["route"] = os.path.join(env.dir, "pbx-route.json")
    files["slow"] = os.path.join(env.dir, "slow")
    files["liar"] = os.path.join(env.dir, "liar")
    files["hang"] = os.path.join(env.dir, "hang")
    files["down"] = os.path.join(env.dir, "down")
    env.start_controller()
    env.start_agent("shaanxi")
    start_exec_agent()
    T.wait_until(lambda: all(env.status()[s]["load"] for s in (SITE, "shaanxi")), 20,
                 "agents reporting")


def test_route_unknown_while_the_link_is_down_is_alarmed_since_it_was_seen():
    """Brief s20I: the agent's revert_at comes while no controller runs and
    the PBX refuses home: its route is unknown from then. The controller
    started 3 s later raised the directive alarm when it heard; now its
    "since" (raised_ms) is when the agent saw it, and its words say how
    long before its Hello that was; the route_unconfirmed link event is
    stored then, "reported N s later". First of the cases: no directive
    alarm of xizang is active yet (an active one keeps its own since)."""
    T.wait_until(lambda: pbx_route() == HOME and env.status()[SITE]["route"] == HOME, 20,
                 "xizang home at its PBX")
    r = env.ctl("--json", "cutover", SITE, "--to", "shaanxi", "--reason", "drill", "--force",
                "--for", "3s")
    assert r.returncode == 0, r.stdout + r.stderr
    agent = env.agents[SITE]
    off = os.path.getsize(agent.log_path)
    env.controller.kill()
    open(files["down"], "w").close()
    try:
        T.wait_until(lambda: "is not confirmed at the PBX" in open(agent.log_path).read()[off:],
                     15, "the agent's return home at revert_at failing")
        seen = time.time()
        # The link stays down 3 s more (the scenario, not a wait for
        # anything): over a trip (2 s), so the lateness is said.
        time.sleep(max(0.0, seen + 3 - time.time()))
        env.start_controller()
        a = T.wait_until(lambda: ([a for a in alarms() if a["kind"] == "directive"
                                   and a["subject"] == SITE] or [None])[0], 20,
                         "xizang's directive alarm")
        assert time.time() - seen >= 3
        assert -1.5 < a["raised_ms"] / 1000 - seen < 0.5, (a, seen)
        assert re.search(r"^xizang's route is unknown, seen by the agent at \S+Z, \d+ s before its "
                         r"Hello to this controller: ", a["message"]), a
        ev = T.wait_until(lambda: env.sql(
            "SELECT extract(epoch FROM at), detail FROM link_events WHERE site = 'xizang' AND "
            "event = 'route_unconfirmed' ORDER BY id DESC LIMIT 1") or None, 10,
            "the late route_unconfirmed stored")
        assert -1.5 < float(ev[0][0]) - seen < 0.5, (ev, seen)
        assert re.search(r"reported \d+ s later \(its link was down\)", ev[0][1]), ev
    finally:
        os.unlink(files["down"])
    T.wait_until(lambda: pbx_route() == HOME and env.status()[SITE]["route_unknown"] is False, 30,
                 "xizang home and known again once the PBX answers")
    # The new controller takes changes once the sites of its rules are back.
    T.wait_until(lambda: all(env.status()[s]["link"] == "online" and env.status()[s]["load"]
                             for s in (SITE, "shaanxi")), 20, "both agents back and reporting")


def test_verified_cutover_is_applied():
    r = env.ctl("--json", "cutover", SITE, "--to", "shaanxi", "--reason", "drill", "--force")
    out = json.loads(r.stdout)
    assert r.returncode == 0, f"cutover: {r.returncode} {r.stdout} {r.stderr}"
    o = [o for o in out["outcomes"] if o["site"] == SITE][0]
    assert o["result"] == "applied", out
    assert pbx_route() == AWAY


def test_drift_without_controller_is_repaired_and_reported_later():
    """The agent repairs on its own; the event waits for the next link."""
    want = env.status()[SITE]["route"]
    T.wait_until(lambda: pbx_route() == want, 10, "the PBX routing as the controller says")
    other = HOME if want == AWAY else AWAY
    agent = env.agents[SITE]
    off = os.path.getsize(agent.log_path)
    env.controller.kill()
    with open(files["route"], "w") as f:
        json.dump({"route": other}, f)
    T.wait_until(lambda: pbx_route() == want, 10, "the agent repairing without a controller")
    # The event is made once the route is read back, after the PBX file
    # shows it: under load that can be after a controller started now.
    T.wait_until(lambda: "drift repaired" in open(agent.log_path).read()[off:], 10,
                 "the agent's read-back of its repair")
    env.start_controller()
    http = env.extra_nircd.split("listen = ")[1].strip()
    # A new controller process: its counter starts at 0 and counts the
    # queued event.
    T.wait_until(lambda: T.metric(http, "nirc_pbx_drift_repairs_total") == 1.0, 15,
                 "the queued drift event reaching the new controller")
    ev = env.sql("SELECT count(*) FROM link_events WHERE site = 'xizang' AND "
                 "event = 'pbx_drift_repaired'")
    assert ev == [["2"]], ev
    # nircctl site lists it at its true time: seen before this controller
    # started, not when it arrived.
    site = json.loads(env.ctl("--json", "site", SITE).stdout)["sites"][0]
    drift = [e for e in site["pbx_events"] if e["event"] == "pbx_drift_repaired"]
    assert drift and drift[0]["at_ms"] < site["pbx_events_asked_ms"], site
    T.wait_until(lambda: all(env.status()[s]["link"] == "online" and env.status()[s]["load"]
                             for s in (SITE, "shaanxi")), 20, "both agents back and reporting")


def test_pbx_that_did_not_take_the_route_is_failed():
    open(files["liar"], "w").close()
    try:
        r = env.ctl("--json", "restore", SITE)
        out = json.loads(r.stdout)
        o = [o for o in out.get("outcomes", []) if o["site"] == SITE]
        assert o and o[0]["result"] == "failed", out
        assert "verify_cmd" in o[0]["detail"] and "henan" in o[0]["detail"], o
    finally:
        os.unlink(files["liar"])
    # apply_cmd did write home, so the PBX routes home while the agent
    # holds shaanxi: the drift check puts shaanxi back. The read-back
    # failure itself is a critical pbx alarm.
    T.wait_until(lambda: pbx_route() == env.status()[SITE]["route"], 20, "a settled route")
    a = T.wait_until(lambda: [a for a in alarms() if a["kind"] == "pbx"] or None, 10,
                     "a pbx alarm")
    assert a[0]["severity"] == "critical", a


def test_drift_is_repaired_and_alarmed():
    T.wait_until(lambda: pbx_route() is not None and env.status()[SITE]["route"] == pbx_route(),
                 30, "the PBX and the controller agreeing")
    want = env.status()[SITE]["route"]
    other = HOME if want == AWAY else AWAY
    # Behind the agent's back: the PBX now routes otherwise.
    with open(files["route"], "w") as f:
        json.dump({"route": other}, f)
    T.wait_until(lambda: pbx_route() == want, 10, "the agent applying its route again")
    http = env.extra_nircd.split("listen = ")[1].strip()

    a = T.wait_until(lambda: ([a for a in alarms() if a["kind"] == "pbx"] or [None])[0], 10,
                     "a pbx alarm")
    assert a["subject"] == SITE and a["severity"] == "warning", a
    assert "repaired" in a["message"], a
    T.wait_until(lambda: T.metric(http, "nirc_pbx_drift_repairs_total") == 1.0, 5,
                 "nirc_pbx_drift_repairs_total 1")
    ev = env.sql("SELECT event FROM link_events WHERE site = 'xizang' AND event LIKE 'pbx%'")
    assert ["pbx_drift_repaired"] in ev, ev


def test_apply_dies_with_its_agent_and_never_overlaps():
    # Settle at home, then a slow cutover killed half-way.
    T.wait_until(lambda: env.status()[SITE]["route"] == pbx_route(), 30, "a settled route")
    # A slow apply of a new directive, whatever the route is now.
    verb = ["cutover", SITE, "--to", "shaanxi", "--reason", "slow", "--force"]
    if "cutover" in env.status()[SITE]["active_rule"]:
        verb = ["restore", SITE]
    with open(files["slow"], "w") as f:
        f.write("6")
    n = len(pbx_log())
    ctl = subprocess.Popen([T.binary("nircctl"), "--controller", env.addr, "--ca",
                            f"{T.PKI}/ca.crt", "--cert", f"{T.PKI}/operator-alice.crt", "--key",
                            f"{T.PKI}/operator-alice.key", *verb],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = T.wait_until(lambda: [l for l in pbx_log()[n:] if l[0] == "start"] or None, 15,
                               "the slow apply starting")
        victim = int(started[0][1])
        with open(f"/proc/{victim}/stat") as f:
            pgid = int(f.read().split(")")[-1].split()[3])
        assert pgid != os.getpgid(env.agents[SITE].p.pid), "apply_cmd in the agent's group"
        env.agents[SITE].kill()  # SIGKILL
        # Well before the apply's own end (6 s): only a kill ends it so soon.
        T.wait_until(lambda: not group_alive(pgid), 3,
                     f"apply_cmd {victim} and its process group dying with the agent")
        # The restarted agent applies its saved route (shaanxi or home) at
        # once, before it connects.
        start_exec_agent()
        T.wait_until(lambda: [l for l in pbx_log()[n:] if l[0] == "end"] or None, 20,
                     "the restarted agent's apply ending")
    finally:
        ctl.kill()
        ctl.wait()
        os.unlink(files["slow"])
    lines = pbx_log()[n:]
    assert not [l for l in lines if l[1] == str(victim) and l[0] == "end"], lines
    assert_no_overlap(lines)
    assert len([l for l in lines if l[0] == "start"]) >= 2, lines


def test_without_verify_cmd_applies_are_unverified():
    """No verify_cmd: applied, and the acknowledgement says unverified."""
    agent = env.agents[SITE]
    assert agent.stop() == 0, agent.tail()
    agent = start_exec_agent(verify=False)
    T.wait_until(lambda: env.status()[SITE]["link"] == "online", 15, "xizang back online")
    verb = ["cutover", SITE, "--to", "shaanxi", "--reason", "unverified", "--force"]
    if "cutover" in env.status()[SITE]["active_rule"]:
        verb = ["restore", SITE]
    r = env.ctl("--json", *verb)
    out = json.loads(r.stdout)
    o = [o for o in out["outcomes"] if o["site"] == SITE]
    assert r.returncode == 0 and o and o[0]["result"] == "applied", out
    assert o[0]["detail"].startswith("unverified: [exec] has no verify_cmd"), o
    # Said where the operator looks, not only in the history (audit T6a).
    assert o[0]["unverified"] is True and o[0]["outcome_unknown"] is False, o
    assert env.status()[SITE]["route_unverified"] is True, env.status()[SITE]
    site = env.ctl("site", SITE).stdout
    assert "applied, unverified (no read-back of the PBX)" in site, site
    T.wait_until(lambda: "drift is not checked" in open(agent.log_path).read(), 5,
                 "the agent saying drift is not checked")


def test_unverified_survives_a_controller_restart():
    """The route applied without a read-back above, after a leader change
    (nircd restarted: a new epoch, an engine that knows only what the
    Hellos say): still unverified in --json, in the status table, in
    /status.json and on the page. Before, only an applied ack said it, so
    the new leader showed the route as read back (session 16)."""
    before = env.status()[SITE]
    assert before["route_unverified"] is True, before
    last = env.sql("SELECT (extract(epoch FROM at) * 1000)::bigint, event FROM link_events "
                   "WHERE site = 'xizang' AND event IN ('pbx_drift_repaired', "
                   "'pbx_drift_not_repaired', 'pbx_verify_failed', 'route_unconfirmed', "
                   "'route_confirmed', 'agent_reverted') ORDER BY at DESC LIMIT 1")
    assert env.controller.stop() == 0, env.controller.tail()
    env.start_controller()
    # nircctl site still lists what the PBX did before the restart (read
    # back from link_events at the takeover), at its time as stored (s21B).
    site = T.wait_until(lambda: (lambda x: x if x.get("pbx_events_from") == "database" else None)(
        json.loads(env.ctl("--json", "site", SITE).stdout)["sites"][0]), 10,
        "the PBX events read back by the new leader")
    assert [last[0][1], int(last[0][0])] in [[e["event"], e["at_ms"]] for e in site["pbx_events"]], \
        (last, site)
    assert site["pbx_events_since_ms"] <= int(last[0][0]), site
    # Both reporting: the next test moves xizang to shaanxi at once.
    T.wait_until(lambda: all(env.status()[s]["load"] for s in (SITE, "shaanxi")), 20,
                 "agents reporting to the new leader")
    st = env.status()[SITE]
    assert st["route"] == before["route"] and st["route_unverified"] is True, st
    assert env.status()["shaanxi"]["route_unverified"] is False  # the simulator reads back
    row = [l for l in env.ctl("status").stdout.splitlines() if l.startswith(SITE + " ")]
    assert row and " (unverified) " in row[0], row
    js = T.wait_until(lambda: (lambda x: x if x and x["link"] == "online" else None)(
        next((x for x in T.status_json(files["http"])["sites"] if x["slug"] == SITE), None)),
        5, "xizang online in /status.json")
    assert js["route_unverified"] is True and js["route_unknown"] is False, js
    tr = f'<tr class="site" data-slug="{SITE}">'
    page = T.wait_until(lambda: (lambda t: t if tr in t else None)(
        urllib.request.urlopen(f"http://{files['http']}/", timeout=5).read().decode()), 5,
        "the page listing xizang")
    row = page.split(tr, 1)[1].split("</tr>", 1)[0]
    assert "(unverified: not read back from the PBX)" in row, row
    # The maps too (drawn with the page; nircctl map from a fresh status).
    for where, svg in (("/map.svg", page_map()), ("nircctl map", env.ctl("map").stdout)):
        assert "; route applied, not read back from the PBX" in map_tip(svg, SITE), where


def test_route_confirmed_unread_is_unverified():
    """The agent restarts while its PBX refuses routes: its Hello says the
    route is unknown (and cannot say unverified). When the PBX takes it,
    unread, the ROUTE_CONFIRMED event says unverified; before, the route
    showed as read back from then on."""
    agent = env.agents[SITE]
    assert agent.stop() == 0, agent.tail()
    open(files["down"], "w").close()
    try:
        start_exec_agent(verify=False)
        T.wait_until(lambda: (lambda s: s["link"] == "online" and s["route_unknown"])(
            env.status()[SITE]), 15, "xizang online with its route unknown")
        # The maps draw no route for it, neither the last one nor home.
        unknown = "; route unknown: its agent has not confirmed a route at the PBX"
        svg = env.ctl("map").stdout
        assert unknown in map_tip(svg, SITE) and f'data-from="{SITE}"' not in svg, svg
        T.wait_until(lambda: unknown in map_tip(page_map(), SITE), 5, "/map.svg: route unknown")
    finally:
        os.unlink(files["down"])
    st = T.wait_until(lambda: (lambda s: s if not s["route_unknown"] else None)(
        env.status()[SITE]), 15, "the route known again")
    assert st["route_unverified"] is True, st


def test_apply_killed_at_its_timeout_is_an_unknown_route():
    """An apply_cmd that writes the route, then hangs past `timeout`, with
    no verify_cmd: the PBX routes as asked but nobody can say so. The move
    is not applied, its outcome is unknown (marked, not guessed from
    words), and the controller shows the site's route as unknown with a
    critical directive alarm, not as the old route, until the retried
    apply says what the PBX does (audit T6b)."""
    agent = env.agents[SITE]
    assert agent.stop() == 0, agent.tail()
    start_exec_agent(verify=False, timeout="1s")
    T.wait_until(lambda: env.status()[SITE]["link"] == "online", 15, "xizang back online")
    if env.status()[SITE]["route"] != AWAY:
        r = env.ctl("--json", "cutover", SITE, "--to", "shaanxi", "--reason", "away", "--force")
        assert r.returncode == 0, f"cutover: {r.returncode} {r.stdout} {r.stderr}"
    assert pbx_route() == AWAY
    open(files["hang"], "w").close()
    try:
        r = env.ctl("--json", "restore", SITE)
        out = json.loads(r.stdout)
        # Read while the retry of home cannot have come yet (it waits five
        # ack timeouts): what the controller says right after the ack.
        st = env.status()[SITE]
    finally:
        os.unlink(files["hang"])
    assert r.returncode == 5, f"restore: {r.returncode} {r.stdout} {r.stderr}"
    o = [o for o in out["outcomes"] if o["site"] == SITE][0]
    assert o["result"] == "failed" and o["outcome_unknown"] is True, o
    assert o["detail"].startswith("agent failed: outcome unknown: "), o
    # The PBX took home before the command hung; the controller must not
    # say shaanxi (it did), nor home: nobody read it back.
    assert pbx_route() == HOME
    assert st["route_unknown"] is True and st["route"] is None, st
    a = [a for a in alarms() if a["kind"] == "directive" and a["subject"] == SITE]
    assert a and a[0]["severity"] == "critical", alarms()
    # The engine keeps sending home (the restore stands); the apply that
    # ends makes the route known again: home, and unverified.
    st = T.wait_until(lambda: (lambda s: s if not s["route_unknown"] else None)(
        env.status()[SITE]), 30, "the route known again")
    assert st["route"] == HOME and st["route_unverified"] is True, st
    assert pbx_route() == HOME


def test_state_file_not_writable_is_alarmed():
    """Brief s21G: the agent cannot write its state file (a full disk).
    Before, only its own log said so, and its controller learned of it when
    a move to the site failed. Now the agent writes it every
    pbx_check_interval and tells: a critical `agent` alarm with the agent's
    reason, before any move needs the file, and an event when it can write
    again. Here the file is made a symbolic link, which the agent refuses
    to write through (a full disk cannot be made here)."""
    path = os.path.join(env.dir, f"state-{SITE}.json")
    aside, link = path + ".aside", path + ".link"
    os.rename(path, aside)
    os.symlink(aside, link)
    os.rename(link, path)
    try:
        a = T.wait_until(lambda: ([a for a in alarms() if a["kind"] == "agent"] or [None])[0],
                         10, "an agent alarm")
        assert a["subject"] == SITE and a["severity"] == "critical", a
        assert "cannot write its state file" in a["message"], a
        assert "symbolic link" in a["message"], a
    finally:
        os.rename(aside, path)
    T.wait_until(lambda: env.sql("SELECT event FROM link_events WHERE site = 'xizang' AND "
                                 "event LIKE 'agent_state%' ORDER BY id") ==
                 [["agent_state_not_saved"], ["agent_state_saved"]], 10,
                 "the agent telling it writes again")


if __name__ == "__main__":
    T.main([test_setup, test_route_unknown_while_the_link_is_down_is_alarmed_since_it_was_seen,
            test_verified_cutover_is_applied, test_drift_is_repaired_and_alarmed,
            test_drift_without_controller_is_repaired_and_reported_later,
            test_pbx_that_did_not_take_the_route_is_failed,
            test_apply_dies_with_its_agent_and_never_overlaps,
            test_without_verify_cmd_applies_are_unverified,
            test_unverified_survives_a_controller_restart,
            test_route_confirmed_unread_is_unverified,
            test_apply_killed_at_its_timeout_is_an_unknown_route,
            test_state_file_not_writable_is_alarmed])
