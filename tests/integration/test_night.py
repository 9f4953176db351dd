"""The night consolidation on an accelerated clock: at 22:00 the scheduled
provinces move to Xi'an in verified waves, at 08:00 they all come home;
a hub that dies in the night hands its sources to the next hub."""
import json
import os
import signal

import nirclib as T

# 600x: one real second is ten business minutes, so 22:00-08:00 is a minute.
SPEED = 600
ROUTING = "verify_window = 2s"


def consolidated(n):
    with open(T.SCENARIO) as f:
        return [s["slug"] for s in json.load(f)["sites"] if s["night_consolidated"]][:n]


def start_network(name, sources, hubs, start):
    env = T.Env(name, clock_speed=SPEED, clock_start=start,
                extra_nircd=ROUTING)
    env.start_controller()
    # The schedule first: agents may take a while to start on a loaded
    # machine, and the night must not begin before the rule exists.
    r = env.ctl("schedule", "add", "night", "--sources", ",".join(sources), "--to",
                ",".join(hubs), "--start", "22:00", "--end", "08:00", "--tz", "Asia/Shanghai",
                "--wave-size", "5")
    assert r.returncode == 0, r.stderr
    for s in sources + hubs:
        env.start_agent(s)
    T.wait_until(lambda: all(env.status()[s]["link"] == "online" and env.status()[s]["load"]
                             for s in sources + hubs), 20, "every site online and reporting")
    return env


def business_hour(env):
    """Local hour (UTC+8) on the shared business clock."""
    st = json.loads(env.ctl("--json", "status").stdout)
    return ((st["server_time_ms"] // 1000 + 8 * 3600) % 86400) / 3600.0


def routes(env, sites):
    st = env.status()
    # "unknown": a route the controller has not heard (route_unheard), not home.
    return {s: ("unknown" if st[s]["route"] is None else st[s]["route"][0]["site"]
                if len(st[s]["route"]) == 1 else "split") for s in sites}


def test_night_moves_in_verified_waves_and_returns_at_eight():
    sources = consolidated(12)
    env = start_network("night", sources, ["shaanxi", "henan"], "2020-01-22T21:00:00+08:00")
    try:
        # Before 22:00 nothing moves (checked only while it is still before:
        # on a slow machine the agents may come up after 22:00).
        before = routes(env, sources)
        if 12 < business_hour(env) < 21.95:
            assert all(v == s for s, v in before.items()), before
        # After 22:00 every source routes to Xi'an.
        T.wait_until(lambda: all(v == "shaanxi" for v in routes(env, sources).values()), 40,
                     "all twelve sources at shaanxi")
        rows = env.sql("SELECT site, extract(epoch from sent_at) FROM directives "
                       "WHERE rule_kind = 'schedule' AND route @> '[{\"site\": \"shaanxi\"}]' "
                       "AND site <> 'shaanxi' ORDER BY sent_at")
        assert len(rows) == 12, rows
        times = sorted(float(t) for _, t in rows)
        waves = [[times[0]]]
        for t in times[1:]:
            if t - waves[-1][-1] < 0.5:
                waves[-1].append(t)
            else:
                waves.append([t])
        assert [len(w) for w in waves] == [5, 5, 2], f"waves of 5: {[len(w) for w in waves]}"
        for a, b in zip(waves, waves[1:]):
            assert b[0] - a[-1] >= 2.0, "a wave started before the previous one was verified"
        audit = env.sql("SELECT count(*) FROM audit_log WHERE actor = 'engine' AND action = 'move'")
        assert int(audit[0][0]) == 3, audit
        # The hub took the calls: its inbound lists the twelve.
        with open(os.path.join(env.dir, "state-shaanxi.json")) as f:
            inbound = {i["site"] for i in json.load(f)["route_state"]["inbound"]}
        assert inbound == set(sources), inbound
        # At 08:00 everyone is home again.
        T.wait_until(lambda: all(v == s for s, v in routes(env, sources).items()), 90,
                     "all sources home after 08:00")
    finally:
        env.close()


def test_hub_dying_in_the_night_hands_sources_to_the_backup():
    sources = consolidated(5)
    env = start_network("night-failover", sources, ["shaanxi", "henan"],
                        "2020-01-22T21:59:00+08:00")
    try:
        T.wait_until(lambda: all(v == "shaanxi" for v in routes(env, sources).values()), 30,
                     "the five sources at shaanxi")
        env.agents["shaanxi"].kill()
        T.wait_until(lambda: env.status()["shaanxi"]["link"] == "offline", 10, "shaanxi offline")
        T.wait_until(lambda: all(v == "henan" for v in routes(env, sources).values()), 20,
                     "sources failed over to henan")
        st = env.status()
        # (A site without an agent in this network has no known route: null.)
        assert not any(r["site"] == "shaanxi" for s in st if s != "shaanxi"
                       for r in st[s]["route"] or []), "something still routes to the dead hub"
        with open(os.path.join(env.dir, "state-henan.json")) as f:
            inbound = {i["site"] for i in json.load(f)["route_state"]["inbound"]}
        assert inbound == set(sources), inbound
    finally:
        env.close()


if __name__ == "__main__":
    T.main([test_night_moves_in_verified_waves_and_returns_at_eight,
            test_hub_dying_in_the_night_hands_sources_to_the_backup])
