#!/usr/bin/env python3
"""High availability: two controllers on one database, leader and standby.

- A standby redirects operators and agents to the leader.
- kill -9 of the leader in the middle of a multi-wave night consolidation:
  the standby leads within 5 s, every agent is served again (those that
  reached it during the election held on their link, not sent away), every
  source ends where the schedule wants it (acknowledged), and no move was
  undone on the way.
- SIGSTOP of the leader until the standby took over, then SIGCONT: the old
  leader issues nothing, records that it stepped down and exits 75.
- An agent cut off behind a blackholing proxy keeps its route, goes stale
  then offline at the controller, and comes back by itself when the path
  heals.
"""
import json
import os
import signal
import socket
import subprocess
import threading
import time

import nirclib as T

SOURCES = ["tianjin", "shanxi", "neimenggu", "liaoning", "jilin", "heilongjiang"]
HUBS = ["shaanxi", "henan"]
LEASE_S = 2
env = None
addr_b = addr_c = None
procs = {}




def ctl_json(*args, controllers):
    r = env.ctl("--json", *args, controllers=controllers)
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else None), r


def status_at(addr):
    rc, out, _ = ctl_json("status", controllers=[addr])
    return out if rc == 0 else None


def routes_of(st):
    # None: a route this controller has not heard (route_unheard), not home.
    return {s["slug"]: None if s["route"] is None else [r["site"] for r in s["route"]]
            for s in st["sites"]}


def test_standby_redirects_and_kill9_mid_wave():
    global env, addr_b, addr_c
    # Business time starts at 23:00 in Xi'an: the night window is in force
    # and the hubs are on their night rosters, whatever the wall clock says.
    env = T.Env("ha", clock_speed=1, clock_start="2020-01-22T23:00:00+08:00",
                extra_nircd=f"verify_window = 3s\n[controller]\nlease_timeout = {LEASE_S}s")
    addr_b = f"127.0.0.1:{T.listen_port()}"
    addr_c = f"127.0.0.1:{T.listen_port()}"
    conf_b = env.controller_conf("nircd-2", addr_b, "nircd-2.conf")
    procs["a"] = env.start_controller(name="nircd-1")
    assert env.controller_status.startswith("leader"), env.controller_status
    procs["b"] = env.start_controller(conf=conf_b, name="nircd-2")
    assert env.controller_status.startswith("standby"), env.controller_status
    # nircd-3 at addr_c joins in the next test.
    every = f"{env.addr},{addr_b},{addr_c}"
    for s in SOURCES + HUBS:
        env.start_agent(s, controllers=every)

    # The standby sends operators to the leader: alone in the list, it
    # names the leader, which nircctl then asks (test_standby.py has more).
    rc, out, r = ctl_json("status", controllers=[addr_b])
    assert rc == 0 and out["controller"] == "nircd-1", (rc, r.stdout, r.stderr)
    assert f"nircd at {addr_b} is a standby; the leader is {env.addr}" in r.stderr, r.stderr
    rc, out, _ = ctl_json("status", controllers=[addr_b, env.addr])
    assert rc == 0 and out["controller"] == "nircd-1", out
    epoch_a = out["epoch"]

    T.wait_until(lambda: all(s["link"] == "online" for s in (status_at(env.addr) or {"sites": []})[
        "sites"] if s["slug"] in SOURCES + HUBS) or None, 20, "8 agents online at the leader")

    # Night consolidation in waves of one, 3 s apart.
    r = env.ctl("schedule", "add", "night", "--sources", ",".join(SOURCES), "--to",
                ",".join(HUBS), "--start", "22:00", "--end", "08:00", "--tz", "Asia/Shanghai",
                "--wave-size", "1", controllers=[env.addr])
    assert r.returncode == 0, r.stdout + r.stderr

    def moved_count():
        st = status_at(env.addr)
        if not st:
            return None
        n = sum(routes_of(st)[s] != [s] for s in SOURCES)
        return n if n >= 2 else None

    T.wait_until(moved_count, 30, "two waves moved")
    st = status_at(env.addr)
    before = routes_of(st)
    moved = [s for s in SOURCES if before[s] != [s]]
    assert 2 <= len(moved) < len(SOURCES), f"not mid-move: {before}"

    killed = time.monotonic()
    procs["a"].kill()

    def b_leads():
        st = status_at(addr_b)
        return st if st and st["controller"] == "nircd-2" else None

    st = T.wait_until(b_leads, 10, "the standby to lead")
    took = time.monotonic() - killed
    assert st["epoch"] > epoch_a, st["epoch"]
    epoch_b = st["epoch"]

    def all_served():
        st = status_at(addr_b)
        if not st:
            return None
        ok = all(s["link"] == "online" and s["report_age_ms"] >= 0 for s in st["sites"]
                 if s["slug"] in SOURCES + HUBS)
        return st if ok else None

    st = T.wait_until(all_served, 10, "every agent served by the new leader")
    served = time.monotonic() - killed
    print(f"  failover: new leader in {took:.2f} s, all 8 agents served in {served:.2f} s")
    assert served < 5.0, f"agents served {served:.2f} s after the leader died"
    # Agents that reached nircd-2 while the election ran were held, not
    # sent away to retry, and welcomed on the same link when it led.
    with open(procs["b"].log_path, errors="replace") as f:
        held = [l for l in f if "held through the election: answered as leader" in l]
    assert held, "no agent was held through the election"
    # Nothing moved back while there was no leader.
    now = routes_of(st)
    for s in moved:
        assert now[s] != [s], f"{s} went home during the failover: {now[s]}"

    def consolidated():
        st = status_at(addr_b)
        if not st:
            return None
        r = routes_of(st)
        return r if all(len(r[s]) == 1 and r[s][0] in HUBS for s in SOURCES) else None

    T.wait_until(consolidated, 40, "the new leader to finish the move")
    # Every source ends on an acknowledged directive of some epoch, and the
    # sequence of routes it was given never goes back home.
    for s in SOURCES:
        rows = env.sql(f"SELECT d.epoch, d.version, d.route::text, a.result FROM directives d "
                       f"LEFT JOIN directive_acks a USING (site, epoch, version) WHERE d.site = '{s}' "
                       f"ORDER BY d.epoch, d.version")
        assert rows, f"{s}: no directive stored"
        routes = [json.loads(r[2]) for r in rows]
        went = False
        for rt in routes:
            home = [x["site"] for x in rt] == [s]
            assert not (went and home), f"{s}: moved, then sent home: {rows}"
            went = went or not home
        assert rows[-1][3] == "applied", f"{s}: last directive not acknowledged: {rows}"
    assert any(int(r[0]) == epoch_b for s in SOURCES for r in env.sql(
        f"SELECT epoch FROM directives WHERE site = '{s}'")), "the new leader issued nothing"


def test_sigstop_leader_steps_down_after_sigcont():
    # A third controller joins and stands by.
    conf_c = env.controller_conf("nircd-3", addr_c, "nircd-3.conf")
    procs["c"] = env.start_controller(conf=conf_c, name="nircd-3")
    assert env.controller_status.startswith("standby"), env.controller_status
    st = status_at(addr_b)
    epoch_b = st["epoch"]
    stopped = time.monotonic()
    procs["b"].signal(signal.SIGSTOP)

    def c_leads_all():
        st = status_at(addr_c)
        if not st or st["controller"] != "nircd-3":
            return None
        ok = all(s["link"] == "online" and s["report_age_ms"] >= 0 for s in st["sites"]
                 if s["slug"] in SOURCES + HUBS)
        return st if ok else None

    st = T.wait_until(c_leads_all, 20, "nircd-3 to lead and serve every agent")
    epoch_a2 = st["epoch"]
    assert epoch_a2 > epoch_b
    print(f"  nircd-2 stopped: nircd-3 leads epoch {epoch_a2} and serves all agents after "
          f"{time.monotonic() - stopped:.2f} s")
    routes_before = routes_of(st)
    resumed = time.monotonic()
    procs["b"].signal(signal.SIGCONT)
    T.wait_until(lambda: not procs["b"].alive() or None, 10, "the old leader to step down")
    rc = procs["b"].p.returncode
    assert rc == 75, f"old leader exit status {rc}:\n{procs['b'].tail()}"
    print(f"  nircd-2 resumed: stepped down in {time.monotonic() - resumed:.2f} s (exit 75)")
    log = open(procs["b"].log_path, errors="replace").read()
    assert "stepping down" in log, log[-2000:]
    ev = env.sql("SELECT detail FROM audit_log WHERE action = 'step-down' AND actor = 'nircd-2'")
    assert ev, "the step-down is not recorded"
    # It moved nothing after resuming: no directive of its epoch after the
    # new leader's first one, and routing is as the new leader left it.
    late = env.sql(f"SELECT site, version FROM directives WHERE epoch = {epoch_b} AND sent_at > "
                   f"(SELECT min(sent_at) FROM directives WHERE epoch = {epoch_a2})"
                   ) if env.sql(f"SELECT 1 FROM directives WHERE epoch = {epoch_a2} LIMIT 1") else []
    assert late == [], f"the deposed leader issued directives: {late}"
    assert routes_of(status_at(addr_c)) == routes_before

    # It issued nothing because it waited for its lease. Had it answered
    # (a leader cut off from the database but not from an agent that met
    # the new leader), the agent refuses it at its Welcome: a fake
    # controller of the deposed epoch to a real agent that has seen the new
    # one (test_deposed_leader.py has the real nircd).
    slug = "tianjin"
    env.agents[slug].stop()
    saved_file = json.load(open(os.path.join(env.dir, f"state-{slug}.json")))
    saved = saved_file["route_state"]
    # Its route may date from the old leader; the new epoch is on disk too.
    assert saved_file["seen_epoch"] == epoch_a2, saved_file
    port = T.free_port()
    probe = subprocess.Popen(
        [T.binary("nirc-probe"), "--listen", f"127.0.0.1:{port}", "--ca", f"{T.PKI}/ca.crt",
         "--cert", f"{T.PKI}/controller-nircd.crt", "--key", f"{T.PKI}/controller-nircd.key",
         "serve", str(epoch_b), json.dumps({"version": 99, "route": [{"site": slug,
                                                                      "permille": 1000}]})],
        stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(probe.stdout.readline()) == {"listening": True}
        agent = env.start_agent(slug, controllers=f"127.0.0.1:{port}")
        out = json.loads(probe.stdout.readline())
        probe.wait(timeout=20)
    finally:
        if probe.poll() is None:
            probe.kill()
    agent.stop()
    want = f"leads epoch {epoch_b}, older than epoch {epoch_a2} this agent has seen"
    assert out.get("error_code") == 10 and want in out["error_message"], out  # REFUSED
    assert out["error_message"] in open(agent.log_path).read(), "the refusal is not in the log"
    after = json.load(open(os.path.join(env.dir, f"state-{slug}.json")))["route_state"]
    assert after == saved, (saved, after)
    env.start_agent(slug, controllers=f"{env.addr},{addr_b},{addr_c}")


class BlackholeProxy:
    """TCP proxy on loopback that can stop carrying bytes (both ways)
    without closing anything: a network cut, as a firewall drop makes it."""

    def __init__(self, target):
        self.target = target
        self.cut = threading.Event()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.addr = f"127.0.0.1:{self.srv.getsockname()[1]}"
        self.socks = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            host, port = self.target.rsplit(":", 1)
            try:
                u = socket.create_connection((host, int(port)))
            except OSError:
                c.close()
                continue
            self.socks += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    def pump(self, a, b):
        while True:
            try:
                data = a.recv(65536)
            except OSError:
                return
            if not data:
                try:
                    b.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if self.cut.is_set():
                continue  # dropped on the floor
            try:
                b.sendall(data)
            except OSError:
                return

    def close(self):
        self.srv.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def test_partitioned_agent_keeps_route_and_recovers():
    leader = addr_c
    proxy = BlackholeProxy(leader)
    slug = "xizang"
    agent = env.start_agent(slug, controllers=proxy.addr)
    T.wait_until(lambda: (status_at(leader) or {"sites": []}) and any(
        s["slug"] == slug and s["link"] == "online" for s in status_at(leader)["sites"]) or None,
        20, "xizang online through the proxy")
    r = env.ctl("cutover", slug, "--to", "shaanxi", "--reason", "partition test",
                controllers=[leader])
    assert r.returncode == 0, r.stdout + r.stderr
    state_file = os.path.join(env.dir, f"state-{slug}.json")
    before = json.load(open(state_file))
    assert [x["site"] for x in before["route_state"]["route"]] == ["shaanxi"], before

    proxy.cut.set()

    def link_is(want):
        def f():
            st = status_at(leader)
            s = [x for x in st["sites"] if x["slug"] == slug][0] if st else None
            return s if s and s["link"] == want else None
        return f

    T.wait_until(link_is("stale"), 15, "xizang stale at the controller")
    T.wait_until(link_is("offline"), 20, "xizang offline at the controller")
    assert agent.alive(), agent.tail()
    after = json.load(open(state_file))
    assert after["route_state"] == before["route_state"], (before, after)
    reports = env.reports(slug)
    assert reports, "the agent logs no reports"

    proxy.cut.clear()
    T.wait_until(link_is("online"), 30, "xizang back online without operator action")
    st = status_at(leader)
    s = [x for x in st["sites"] if x["slug"] == slug][0]
    assert [r["site"] for r in s["route"]] == ["shaanxi"], s
    agent.stop()
    proxy.close()


def teardown():
    if env:
        env.close()
    for p in procs.values():
        p.stop()


if __name__ == "__main__":
    try:
        T.main([test_standby_redirects_and_kill9_mid_wave,
                test_sigstop_leader_steps_down_after_sigcont,
                test_partitioned_agent_keeps_route_and_recovers])
    finally:
        teardown()
