"""An agent whose host clock is an hour ahead of the controller's (its
[clock] start is now + 1 h at speed 1, as a host clock an hour fast
behaves with the default settings).

revert_at is a time on the controller's clock. Before, the agent compared
it with its own: a 30-minute cutover was acknowledged "applied" and undone
by the agent within 100 ms, while the controller kept saying the site was
moved and raised nothing. Now the agent measures its offset from the
controller's clock (Welcome.server_time_ms, Directive.issued_at_ms) and
arms revert_at on the controller's clock: the cutover stands, a short one
ends when the controller's clock says so (not an hour late, not at once),
/metrics shows the offset, and the controller raises a `clock` alarm
naming the site and the offset."""
import json
import os
import re
import time

import nirclib as T

env = None
HTTP = None
AWAY = [{"site": "shaanxi", "permille": 1000}]
HOME = [{"site": "xizang", "permille": 1000}]


def state_route():
    with open(os.path.join(env.dir, "state-xizang.json")) as f:
        return json.load(f)["route_state"]["route"]


def agent_log():
    return open(env.agents["xizang"].log_path).read()


def alarms():
    r = env.ctl("--json", "alarms")
    return json.loads(r.stdout)["alarms"]


def clock_alarm():
    return next((a for a in alarms() if a["kind"] == "clock" and a["subject"] == "xizang"), None)


def test_agent_ahead_keeps_the_cutover():
    global env, HTTP
    env = T.Env("clock-skew", clock_speed=1)
    env.start_controller()
    HTTP = f"127.0.0.1:{T.free_port()}"
    env.clock_start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    env.start_agent("xizang", extra=f"[agent]\nhttp_listen = {HTTP}\n")
    env.clock_start = ""
    env.start_agent("shaanxi")
    T.wait_until(lambda: all(env.status()[s]["load"] for s in ("xizang", "shaanxi")), 30,
                 "agents reporting")
    r = env.ctl("cutover", "xizang", "--to", "shaanxi", "--reason", "drill", "--force",
                "--for", "30m")
    assert r.returncode == 0, r.stdout + r.stderr
    assert state_route() == AWAY
    # The controller sees the offset in the reports: the alarm names the
    # site, the offset and the direction. Reports keep coming meanwhile, so
    # by then an early revert would have happened (it came within 100 ms).
    T.wait_until(clock_alarm, 20, "a clock alarm about xizang")
    a = clock_alarm()
    assert "ahead of" in a["message"] and "xizang" in a["message"], a
    secs = int(a["message"].split(" s ahead")[0].rsplit(" ", 1)[1])
    assert 3500 <= secs <= 3700, a["message"]
    assert "revert_at reached" not in agent_log(), agent_log()
    assert state_route() == AWAY
    assert env.status()["xizang"]["route"] == AWAY
    m = T.metrics(HTTP)
    off = m['nirc_agent_clock_offset_seconds{site="xizang"}']
    assert 3500 <= off <= 3700, off
    assert "clock is +3" in agent_log() or "clock is +36" in agent_log(), agent_log()
    # The report log: each report as sent (this host's clock, which the
    # alarm above compares), with the controller's time beside it.
    rep = env.reports("xizang")[-1]
    assert 3500000 <= rep["timestamp_ms"] - rep["controller_time_ms"] <= 3700000, rep


def test_short_cutover_ends_on_the_controllers_clock():
    r = env.ctl("restore", "xizang")
    assert r.returncode == 0, r.stdout + r.stderr
    T.wait_until(lambda: state_route() == HOME, 10, "xizang home after restore")
    start = time.monotonic()
    r = env.ctl("cutover", "xizang", "--to", "shaanxi", "--reason", "drill", "--force",
                "--for", "8s")
    assert r.returncode == 0, r.stdout + r.stderr
    assert state_route() == AWAY
    T.wait_until(lambda: state_route() == HOME, 30, "xizang home at the end of the cutover")
    # Not at once (the agent's own clock passed revert_at an hour ago), and
    # not an hour late.
    assert time.monotonic() - start >= 6, time.monotonic() - start
    T.wait_until(lambda: env.status()["xizang"]["route"] == HOME, 10, "status saying home")


def agent_metrics():
    try:
        return T.metrics(HTTP)
    except OSError:
        return {}  # restarting: not listening yet


def test_restart_without_controller_keeps_the_controllers_clock():
    """The offset was kept in memory only: an agent restarted while no
    controller answered ran revert_at on its own clock, an hour ahead, and
    ended the cutover it restored at once. Now it remembers the offset
    beside the state file and says so (log, /metrics)."""
    start = time.monotonic()
    r = env.ctl("cutover", "xizang", "--to", "shaanxi", "--reason", "drill", "--force",
                "--for", "12s")
    assert r.returncode == 0, r.stdout + r.stderr
    assert state_route() == AWAY
    env.controller.kill()
    a = env.agents["xizang"]
    a.stop()
    off = os.path.getsize(a.log_path)
    env.agents["xizang"] = T.Proc(a.name, [T.binary("nirc-agent"), "-c",
                                           os.path.join(env.dir, "agent-xizang.conf")], env.dir)
    T.wait_until(lambda: "restored saved route" in agent_log()[off:]
                 or "routing home, applied" in agent_log()[off:], 10, "the restore")
    # Restored away, not sent home at once by the host's clock.
    assert state_route() == AWAY
    text = agent_log()[off:]
    assert re.search(r"restored saved route \(\d+, \d+\): shaanxi", text), text
    assert "revert_at runs on the controller's clock as remembered" in text, text
    src = 'nirc_agent_clock_source{site="xizang",source="remembered"}'
    T.wait_until(lambda: agent_metrics().get(src) == 1, 10, "/metrics saying remembered")
    m = agent_metrics()
    assert 3500 <= m['nirc_agent_clock_offset_seconds{site="xizang"}'] <= 3700, m
    assert m['nirc_agent_clock_offset_age_seconds{site="xizang"}'] < 60, m
    # Home at the end of the 12 s on the controller's clock, with no
    # controller to say so: not at once, not an hour late.
    T.wait_until(lambda: state_route() == HOME, 20, "xizang home at revert_at")
    global HOME_AT
    HOME_AT = time.time()
    assert time.monotonic() - start >= 10, time.monotonic() - start
    text = agent_log()[off:]
    assert "revert_at reached (on the controller's clock as remembered" in text, text


def test_event_reported_late_is_recorded_when_it_happened():
    """The return home above happened while no controller ran: the agent
    queued its REVERTED event and sends it when a controller is back. It
    was recorded at its arrival (seconds to minutes late), and its host's
    at_ms is an hour ahead. Now the agent says how long ago it saw it
    (monotonic) and the controller records it then, saying how much later
    it was reported."""
    last = int(env.sql("SELECT coalesce(max(id), 0) FROM link_events")[0][0])

    def row():
        r = env.sql("SELECT extract(epoch FROM at), detail FROM link_events WHERE site = "
                    f"'xizang' AND event = 'agent_reverted' AND id > {last} ORDER BY id LIMIT 1")
        return r[0] if r else None

    # The link stays down 3 s more (the scenario, not a wait for anything):
    # over a trip (2 s), so the controller says how late it came.
    time.sleep(max(0.0, HOME_AT + 3 - time.time()))
    env.start_controller()
    got = T.wait_until(row, 20, "the agent's late REVERTED event stored")
    arrived = time.time()
    at, detail = float(got[0]), got[1]
    assert arrived - HOME_AT >= 3, arrived - HOME_AT  # it did come late
    # Stored to the second (cut down): when it went, not its arrival (3 s
    # on), not its host's clock (an hour on).
    assert -1.6 < at - HOME_AT < 0.5, (at, HOME_AT, arrived)
    assert re.search(r"seen by the agent at \S+Z, reported \d+ s later \(its link was down\)",
                     detail), detail


if __name__ == "__main__":
    T.main([test_agent_ahead_keeps_the_cutover, test_short_cutover_ends_on_the_controllers_clock,
            test_restart_without_controller_keeps_the_controllers_clock,
            test_event_reported_late_is_recorded_when_it_happened])
