"""The agent's route in force is known only once the PBX took it
(docs/ADAPTERS.md, "The route in force: known or unknown"). Found by an
outside audit with real processes (F1, F4):

- F1: an agent restarted while its PBX was down failed to restore its
  saved cutover, never tried again and never armed revert_at; the PBX,
  back on its own configuration, routed away for good, and a new
  controller showed the site home. Now the agent applies the saved route
  again with backoff until the PBX takes it, then goes home at revert_at,
  all without a controller.
- F4: with its state file missing (or corrupt) the agent logged "routing
  home" but never applied home, and the controller showed home while the
  PBX routed away. Now it applies home; until the PBX has taken it the
  Hello says the route is unconfirmed, and the controller shows the route
  as unknown (null in --json) with a directive alarm, not home.

The PBX is shell scripts behind the exec adapter: while the file `down`
exists, apply and verify fail as a PBX that cannot be reached does; its
routing (pbx-route.json) stays as it was, as Kamailio's list file does."""
import json
import os

import nirclib as T

SITE = "xizang"
HOME = {SITE: 1000}
AWAY = {"shaanxi": 1000}
env = None
HTTP = None
pbx = {}

APPLY = """#!/bin/sh
d=$(dirname "$0")
route=$(cat)
[ -e "$d/down" ] && { echo "PBX not reachable" >&2; exit 1; }
printf '%s\\n' "$route" > "$d/pbx-route.json.tmp" && mv "$d/pbx-route.json.tmp" "$d/pbx-route.json"
"""
VERIFY = """#!/bin/sh
d=$(dirname "$0")
[ -e "$d/down" ] && { echo "PBX not reachable" >&2; exit 1; }
cat "$d/pbx-route.json"
"""
COLLECT = """#!/bin/sh
echo '{"calls_offered": 2, "calls_answered": 2, "calls_in_queue": 0, "agents_logged_in": 9,
       "agents_ready": 8, "agents_talking": 1, "aht_ms": 295000, "answered_within_threshold": 2,
       "sl_threshold_s": 20}'
"""


def pbx_route():
    with open(pbx["route"]) as f:
        return {r["site"]: r["permille"] for r in json.load(f)["route"]}


def set_pbx_route(route):
    with open(pbx["route"], "w") as f:
        json.dump({"route": [{"site": s, "permille": p} for s, p in route.items()]}, f)


def pbx_down(down):
    if down:
        open(pbx["down"], "w").close()
    elif os.path.exists(pbx["down"]):
        os.unlink(pbx["down"])


def start_exec_agent():
    d = env.dir
    extra = (f"[exec]\napply_cmd = {d}/apply.sh\ncollect_cmd = {d}/collect.sh\n"
             f"verify_cmd = {d}/verify.sh\ntimeout = 5s\n")
    conf = env.agent_conf(SITE, extra=extra)
    text = open(conf).read().replace(
        "[agent]", f"[agent]\nadapter = exec\npbx_check_interval = 1s\nhttp_listen = {HTTP}", 1)
    with open(conf, "w") as f:
        f.write(text)
    a = T.Proc(f"agent-{SITE}", [T.binary("nirc-agent"), "-c", conf], env.dir)
    env.agents[SITE] = a
    return a


def restart_agent():
    """Stops the agent and starts it again; returns (proc, log offset)."""
    env.agents[SITE].stop()
    off = os.path.getsize(env.agents[SITE].log_path)
    return start_exec_agent(), off


def log_since(a, off):
    with open(a.log_path, errors="replace") as f:
        return f.read()[off:]


def state_file():
    return os.path.join(env.dir, f"state-{SITE}.json")


def alarm(kind):
    got = json.loads(env.ctl("--json", "alarms").stdout)["alarms"]
    return [a for a in got if a["kind"] == kind and a["subject"] == SITE]


def agent_metrics():
    try:
        return T.metrics(HTTP)
    except OSError:
        return {}  # restarting: not listening yet


def test_setup():
    global env, HTTP
    # 60x: a 20-minute cutover lasts 20 real seconds.
    env = T.Env("route-unknown", clock_speed=60, clock_start="2020-01-23T10:00:00+08:00")
    for name, body in (("apply.sh", APPLY), ("verify.sh", VERIFY), ("collect.sh", COLLECT)):
        path = os.path.join(env.dir, name)
        with open(path, "w") as f:
            f.write(body)
        os.chmod(path, 0o755)
    HTTP = f"127.0.0.1:{T.free_port()}"
    pbx["route"] = os.path.join(env.dir, "pbx-route.json")
    pbx["down"] = os.path.join(env.dir, "down")
    set_pbx_route(HOME)
    env.start_controller()
    env.start_agent("shaanxi")
    start_exec_agent()
    T.wait_until(lambda: all(env.status()[s]["load"] for s in (SITE, "shaanxi")), 20,
                 "agents reporting")


def test_restore_failed_while_pbx_down_is_retried_and_reverts():
    """F1, without a controller from the agent's restart on."""
    r = env.ctl("--json", "cutover", SITE, "--to", "shaanxi", "--reason", "drill", "--force",
                "--for", "20m")
    assert r.returncode == 0, r.stdout + r.stderr
    assert pbx_route() == AWAY
    env.controller.kill()
    pbx_down(True)
    a, off = restart_agent()
    T.wait_until(lambda: "local route change (1, 1) failed" in log_since(a, off), 15,
                 "the restore failing while the PBX is down")
    assert "routing home" not in log_since(a, off)
    # /metrics: the route's share is a figure nobody measured while the
    # PBX has not taken it: absent, and nirc_agent_route_known says so
    # (before: 0 per mille home, as if all calls went away).
    known = 'nirc_agent_route_known{site="xizang"}'
    T.wait_until(lambda: agent_metrics().get(known) == 0, 10, "/metrics saying route unknown")
    assert 'nirc_agent_route_home_permille{site="xizang"}' not in agent_metrics()
    pbx_down(False)
    T.wait_until(lambda: agent_metrics().get(known) == 1, 15, "/metrics saying route known")
    assert 'nirc_agent_route_home_permille{site="xizang"}' in agent_metrics()
    # The saved route is applied again once the PBX answers, and its
    # revert_at (armed from the saved route) sends the site home at the end
    # of the 20 minutes (20 s real after the cutover), with no controller to
    # say so. Before: the PBX kept the cutover for good.
    T.wait_until(lambda: pbx_route() == HOME, 30, "the PBX home after revert_at")
    text = log_since(a, off)
    assert "next apply of the route in force" in text, text
    assert "restored saved route (1, 1): shaanxi" in text, text
    assert text.index("restored saved route") < text.index("revert_at reached"), text
    assert env.controller is not None and not env.controller.alive()


def test_controller_shows_unconfirmed_route_as_unknown():
    """F4 (state file missing) with a controller that listens: unknown, not
    home, until the PBX has taken home."""
    env.start_controller()
    T.wait_until(lambda: env.status()[SITE]["link"] == "online", 20, "xizang online")
    T.wait_until(lambda: env.status()[SITE]["route"] == [{"site": SITE, "permille": 1000}], 10,
                 "xizang shown home")
    env.agents[SITE].stop()
    set_pbx_route(AWAY)  # changed behind the agent, which has nothing saved
    os.unlink(state_file())
    pbx_down(True)
    off = os.path.getsize(env.agents[SITE].log_path)
    a = start_exec_agent()
    T.wait_until(lambda: env.status()[SITE].get("route_unknown") is True, 20,
                 "xizang's route shown unknown")
    st = env.status()[SITE]
    assert st["route"] is None, st
    assert st["link"] == "online", st
    T.wait_until(lambda: alarm("directive"), 10, "a directive alarm about xizang")
    msg = alarm("directive")[0]["message"]
    assert "route is unknown" in msg and "PBX not reachable" in msg, msg
    text = env.ctl("site", SITE).stdout
    assert "route         unknown" in text, text
    assert "routing home" not in log_since(a, off).replace("applying home", "")
    assert pbx_route() == AWAY
    pbx_down(False)
    T.wait_until(lambda: pbx_route() == HOME, 15, "the agent applying home once the PBX answers")
    T.wait_until(lambda: env.status()[SITE]["route_unknown"] is False, 10,
                 "xizang's route known again")
    assert env.status()[SITE]["route"] == [{"site": SITE, "permille": 1000}]
    assert "routing home, applied" in log_since(a, off)


def test_corrupt_state_file_applies_home():
    """F4: a torn state file; the PBX answers."""
    pbx_down(False)
    env.agents[SITE].stop()
    set_pbx_route(AWAY)
    data = open(state_file()).read()
    with open(state_file(), "w") as f:
        f.write(data[: len(data) // 2])
    off = os.path.getsize(env.agents[SITE].log_path)
    a = start_exec_agent()
    T.wait_until(lambda: pbx_route() == HOME, 15, "home applied after the corrupt state file")
    T.wait_until(lambda: "routing home, applied" in log_since(a, off), 5, "the agent saying so")
    text = log_since(a, off)
    assert "is corrupt" in text and "applying home" in text, text
    assert text.index("applying home") < text.index("routing home, applied"), text
    T.wait_until(lambda: env.status()[SITE]["link"] == "online", 20, "xizang online")
    st = env.status()[SITE]
    assert st["route_unknown"] is False and st["route"] == [{"site": SITE, "permille": 1000}], st


def test_failed_revert_is_reported_and_never_shown_as_the_route_left():
    """The agent's own return home at revert_at failed (the PBX could not
    be reached): its route in force is home, unknown until the PBX takes
    it. The controller must show the route unknown with its alarm, and
    once the PBX has it, home: never the cutover the agent left."""
    home = [{"site": SITE, "permille": 1000}]
    T.wait_until(lambda: env.status()[SITE]["route"] == home, 10, "xizang shown home")
    T.wait_until(lambda: all(env.status()[s]["load"] for s in (SITE, "shaanxi")), 20,
                 "agents reporting (shaanxi must have reported to take the calls)")
    r = env.ctl("--json", "cutover", SITE, "--to", "shaanxi", "--reason", "drill", "--force",
                "--for", "6m")
    assert r.returncode == 0, r.stdout + r.stderr
    assert pbx_route() == AWAY
    off = os.path.getsize(env.agents[SITE].log_path)
    pbx_down(True)
    T.wait_until(lambda: "revert_at reached" in log_since(env.agents[SITE], off), 15,
                 "the agent's revert_at")
    T.wait_until(lambda: env.status()[SITE].get("route_unknown") is True, 10,
                 "xizang's route shown unknown after the failed revert")
    assert env.status()[SITE]["route"] is None
    T.wait_until(lambda: alarm("directive"), 10, "a directive alarm about xizang")
    pbx_down(False)
    seen = []

    def known_again():
        st = env.status()[SITE]
        if st["route_unknown"] is False:
            seen.append(st["route"])
        return pbx_route() == HOME and seen and seen[-1] == home

    T.wait_until(known_again, 20, "xizang known again, home")
    # Every route shown once known again was home, the PBX's.
    assert all(r == home for r in seen), seen


if __name__ == "__main__":
    T.main([test_setup, test_restore_failed_while_pbx_down_is_retried_and_reverts,
            test_controller_shows_unconfirmed_route_as_unknown,
            test_corrupt_state_file_applies_home,
            test_failed_revert_is_reported_and_never_shown_as_the_route_left])
