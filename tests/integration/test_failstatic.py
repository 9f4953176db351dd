"""Fail-static (SPEC section 6): with the controller gone, an agent keeps
its route; a restarted agent routes by its saved directive before it talks
to anyone; when revert_at passes it goes home on its own.

The agent's /metrics follow all of it without a controller: before, they
were published only with a report (so only while connected) and froze with
the link (`nirc_agent_connected 1`, the route away, after the agent had
gone home), and a restarted agent with no controller served 404."""
import json
import os
import re

import nirclib as T

env = None
HTTP = None


def state(slug):
    with open(os.path.join(env.dir, f"state-{slug}.json")) as f:
        return json.load(f)["route_state"]


def share(slug, site):
    return {r["site"]: r["permille"] for r in state(slug)["route"]}.get(site, 0)


def agent_metric(name):
    """xizang's figure `name`, or None while /metrics does not answer."""
    try:
        return T.metrics(HTTP).get(f'{name}{{site="xizang"}}')
    except OSError:
        return None


def test_controller_death_leaves_routing_unchanged():
    global env, HTTP
    # 60x: a 20-minute cutover lasts 20 real seconds.
    env = T.Env("failstatic", clock_speed=60, clock_start="2020-01-23T10:00:00+08:00")
    env.start_controller()
    HTTP = f"127.0.0.1:{T.free_port()}"
    env.start_agent("xizang", extra=f"[agent]\nhttp_listen = {HTTP}\n")
    env.start_agent("shaanxi")
    T.wait_until(lambda: all(env.status()[s]["load"] for s in ("xizang", "shaanxi")), 20,
                 "agents reporting")
    r = env.ctl("--json", "cutover", "xizang", "--to", "shaanxi", "--reason", "drill",
                "--for", "20m")
    assert r.returncode == 0, r.stdout + r.stderr
    assert share("xizang", "shaanxi") == 1000 and state("xizang")["revert_at_ms"] > 0
    env.controller.kill()
    # The agents notice the controller is gone and keep routing by their
    # last directive: xizang's calls still leave (the simulator counts them).
    T.wait_until(lambda: "closed" in open(env.agents["xizang"].log_path).read(), 10,
                 "xizang noticing the controller is gone")
    assert share("xizang", "shaanxi") == 1000
    assert env.agents["xizang"].alive() and env.agents["shaanxi"].alive()
    # /metrics say the link is gone, and still the route the agent holds.
    T.wait_until(lambda: agent_metric("nirc_agent_connected") == 0, 10,
                 "xizang's /metrics saying it is not connected")
    assert agent_metric("nirc_agent_route_home_permille") == 0


def test_restarted_agent_restores_its_route_before_connecting():
    xizang = env.agents["xizang"]
    before = state("xizang")
    xizang.stop()
    log_start = os.path.getsize(xizang.log_path)
    xizang = env.start_agent("xizang", extra=f"[agent]\nhttp_listen = {HTTP}\n")
    T.wait_until(lambda: "restored saved route" in open(xizang.log_path).read()[log_start:], 10,
                 "the restarted agent restoring its route")
    text = open(xizang.log_path).read()[log_start:]
    restored = text.index("restored saved route")
    # No connection attempt before the route is back in place.
    first_connect = min([m.start() for m in re.finditer(r"next attempt|connected to|link to",
                                                        text)] + [len(text)])
    assert restored < first_connect, text
    assert text[restored:].split("\n")[0].endswith(": shaanxi"), text[restored:restored + 200]
    after = state("xizang")
    assert (after["epoch"], after["version"]) == (before["epoch"], before["version"])
    assert share("xizang", "shaanxi") == 1000
    # Served with no controller ever met, and saying what it routes by.
    T.wait_until(lambda: agent_metric("nirc_agent_route_home_permille") == 0, 10,
                 "the restarted agent's /metrics with its restored route")
    assert agent_metric("nirc_agent_connected") == 0


def test_revert_at_sends_the_site_home_without_a_controller():
    xizang = env.agents["xizang"]
    # 20 business minutes after the cutover = 20 s real at 60x.
    T.wait_until(lambda: share("xizang", "xizang") == 1000, 40,
                 "xizang back home after revert_at")
    assert "revert_at reached" in open(xizang.log_path).read()
    assert env.controller is not None and not env.controller.alive()
    T.wait_until(lambda: agent_metric("nirc_agent_route_home_permille") == 1000, 5,
                 "xizang's /metrics saying it is home")
    assert agent_metric("nirc_agent_connected") == 0


def test_controller_back_finds_the_truth():
    # A new controller (new epoch) learns from Hello what each agent routes
    # by; the expired cutover does not come back.
    env.start_controller()
    T.wait_until(lambda: env.status()["xizang"]["link"] == "online", 20, "xizang reconnected")
    T.wait_until(lambda: env.status()["xizang"]["route"] == [{"site": "xizang", "permille": 1000}],
                 10, "xizang shown home")
    # Its first tick marks the cutover expired (asynchronously, in the database).
    T.wait_until(lambda: env.sql("SELECT state FROM cutovers") == [["expired"]], 10,
                 "the cutover recorded as expired")

    # The agents' return is recorded once, by the expiry entry the new
    # controller writes (it says they went home by their own revert_at):
    # no second entry for xizang's Hello.
    T.wait_until(lambda: env.sql("SELECT count(*) FROM audit_log WHERE action = 'expire'") ==
                 [["1"]], 10, "the expiry recorded")
    assert env.sql("SELECT count(*) FROM audit_log WHERE action = 'route' AND target = 'xizang' "
                   "AND detail ? 'reverted_at_ms'") == [["0"]]


# 2020-01-22 08:00 in Asia/Shanghai: the end of the window below.
WINDOW_END_MS = 1579651200000
SOURCES = ("hubei", "guizhou")


def test_window_end_while_no_controller_runs_is_recorded_late_once():
    """A schedule window ends while the controller is down: its sources go
    home by their own revert_at, and the controller started afterwards
    records that return from their Hello, once, saying it is late. Before,
    nothing recorded it: the trail ended with them at shaanxi while status
    said home (found from outside)."""
    w = T.Env("failstatic-window", clock_speed=60, clock_start="2020-01-22T07:39:00+08:00",
              extra_nircd="verify_window = 2s")

    def route_state(slug):
        with open(os.path.join(w.dir, f"state-{slug}.json")) as f:
            return json.load(f)["route_state"]

    def at(slug, site):
        try:
            st = route_state(slug)
        except (OSError, ValueError, KeyError):
            return False
        return {r["site"]: r["permille"] for r in st["route"]}.get(site, 0) == 1000

    def recorded(slug):
        return w.sql("SELECT detail->>'cause', detail->>'before', detail->>'after', "
                     "detail->>'reverted_at_ms', detail->>'why', detail->>'went_home_at_ms', "
                     "detail->>'went_home_clock', detail->>'went_home_believed', "
                     "(extract(epoch FROM business_at) * 1000)::bigint FROM audit_log WHERE action = "
                     f"'route' AND target = '{slug}' AND detail ? 'reverted_at_ms' ORDER BY id")

    try:
        w.start_controller()
        r = w.ctl("schedule", "add", "morning", "--sources", ",".join(SOURCES), "--to",
                  "shaanxi", "--start", "07:40", "--end", "08:00", "--tz", "Asia/Shanghai")
        assert r.returncode == 0, r.stderr
        for s in SOURCES + ("shaanxi",):
            w.start_agent(s)
        T.wait_until(lambda: all(at(s, "shaanxi") for s in SOURCES), 30,
                     "both sources moved to shaanxi")
        w.controller.kill()
        # Killed inside the window (07:40-08:00 is 20 s here).
        assert all(at(s, "shaanxi") for s in SOURCES), [route_state(s) for s in SOURCES]
        T.wait_until(lambda: all(at(s, s) and route_state(s)["reason"] == "revert_at reached"
                                 for s in SOURCES), 60, "both agents home by their revert_at")
        w.start_controller()
        T.wait_until(lambda: all(recorded(s) for s in SOURCES), 20, "the returns recorded")
        for s in SOURCES:
            rows = recorded(s)
            assert len(rows) == 1, rows
            cause, before, after, reverted_at, why, went, clock, believed, stamped = rows[0]
            assert (cause, before, after) == ("schedule-end", "shaanxi", "home"), rows
            assert int(reverted_at) == WINDOW_END_MS, rows
            assert "its agent went home on its own" in why and "recorded late" in why, why
            # When the agent went, as it counted since on its monotonic
            # clock (the agents ran on: no clock offset in the figure), not
            # a guess: the entry is stamped then (a business minute is 1 s;
            # the database keeps whole seconds).
            assert (clock, believed) == ("elapsed", "true"), rows
            assert WINDOW_END_MS <= int(went) <= WINDOW_END_MS + 60000, rows
            assert abs(int(stamped) - int(went)) < 1000, rows
            assert ("(this controller's clock less the time its agent counted since: no clock "
                    "offset in it), by its directive's revert_at") in why, why
        # What an operator reads: the site's history ends with its return.
        r = w.ctl("history", "--site", "hubei", "--tz", "Asia/Shanghai")
        assert r.returncode == 0, r.stderr
        last = r.stdout.strip().splitlines()[-1]
        assert "shaanxi -> home: schedule-end: its agent went home on its own" in last, r.stdout
        # Its revert_at in the operations room's zone ([http] tz), named.
        assert "2020-01-22T08:00:00+08:00 (Asia/Shanghai business time)" in last, last
        assert "recorded late" in last, last
        # Confirmed home by a directive of the new epoch, acknowledged: the
        # newest directive on record is home, so a later leader has nothing
        # to record again.
        T.wait_until(lambda: w.sql("SELECT a.result FROM directive_acks a JOIN directives d "
                                   "USING (site, epoch, version) WHERE d.site = 'hubei' AND "
                                   "d.epoch = 2 AND d.version = 1") == [["applied"]], 20,
                     "hubei's confirmation acknowledged")
        w.controller.kill()
        w.start_controller()
        T.wait_until(lambda: all(w.status()[s]["link"] == "online" for s in SOURCES), 20,
                     "the sources connected to the third controller")
        # A durable change after their Hellos: an entry those Hellos made
        # would be in the trail before its answer.
        assert w.ctl("schedule", "disable", "morning").returncode == 0
        for s in SOURCES:
            assert len(recorded(s)) == 1, recorded(s)
    finally:
        w.close()


if __name__ == "__main__":
    T.main([test_controller_death_leaves_routing_unchanged,
            test_restarted_agent_restores_its_route_before_connecting,
            test_revert_at_sends_the_site_home_without_a_controller,
            test_controller_back_finds_the_truth,
            test_window_end_while_no_controller_runs_is_recorded_late_once])
