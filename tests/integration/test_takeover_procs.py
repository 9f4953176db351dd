#!/usr/bin/env python3
"""Leader-change equivalence with real processes.

Two nircd share one database; agents for five sources and three hubs know
both. A seeded random sequence of operator commands (cutovers with shares
and expiry, amendments, restores, readmissions, schedules added, removed,
enabled and disabled, overflow rules added and removed) and events (a hub
agent stopped and started; xizang's PBX, behind the exec adapter, refuses
every route towards sichuan, so moves there fail and are rolled back) runs
through nircctl. At random points the leader is killed (SIGKILL) or
stopped (SIGTERM); the standby takes over. Before each kill the routes are
read from the old leader once they stand still; after the takeover the new
leader must route every site the same way, and no directive of the new
epoch may carry another route. The killed controller comes back as the
next standby.

  NIRC_TAKEOVER_PROC_STEPS=N   steps (default 200)
  NIRC_TAKEOVER_PROC_SEED=S    the seed (default 1); printed on failure

The in-process test (unit.test_takeover) runs many more steps and
takeovers through the same store; this one adds real kills, restarts,
settling and agents reconnecting.
"""
import json
import os
import random
import signal
import time

import nirclib as T

SOURCES = ["hubei", "hunan", "guangdong", "jiangxi", "xizang"]
HUBS = ["shaanxi", "henan", "sichuan"]
LEASE_S = 3
STEPS = int(os.environ.get("NIRC_TAKEOVER_PROC_STEPS", "200"))
SEED = int(os.environ.get("NIRC_TAKEOVER_PROC_SEED", "1"))
# Every PBX is a script behind the exec adapter. xizang's refuses routes
# towards sichuan (its trunk there is down). Every source offers a call a
# second of 20 s (20 Erlangs once measured; for the first minutes the
# scenario's forecast, a few Erlangs, still weighs in): shaanxi's 12 agents
# take a source or two, henan's 6 at most one, sichuan's 500 any: so the
# capacity check decides which sources a schedule or an unforced cutover
# moves where. (With 40 and 25 it decided rarely enough in the 4 minutes
# of a run that a change of timing elsewhere left it deciding nothing.) A new
# leader must decide as the old one did: it takes over the damping state
# (holds, re-entry waits, hub losses) and the load the old one measured.
APPLY_OK = "#!/bin/sh\ncat >/dev/null\nexit 0\n"
APPLY_XIZANG = """#!/bin/sh
route=$(cat)
case "$route" in
  *'"site":"sichuan"'*|*'"site": "sichuan"'*) echo "trunk to sichuan is down" >&2; exit 1 ;;
esac
exit 0
"""
# Every figure the planner uses is given: a figure left out is "not
# measured" (docs/ADAPTERS.md), and a hub whose staffing is not measured is
# judged on its configured seats instead of the staffing below.
COLLECT = """#!/bin/sh
echo '{"calls_offered": %d, "calls_answered": %d, "calls_in_queue": 0, "agents_logged_in": %d,
       "agents_ready": %d, "agents_talking": 0, "agents_not_ready": 0, "aht_ms": 20000,
       "longest_wait_ms": 0, "calls_in_queue_peak": 0,
       "answered_within_threshold": %d, "sl_threshold_s": 20}'
"""
STAFF = {"shaanxi": 12, "henan": 6, "sichuan": 500}
# A site whose route waits on a damping timer when the old leader's routes
# are read (a hub in its grace or return window, a held placement, a
# source waiting to re-enter) may move later at both leaders, after the
# snapshot the new leader is compared with: such sites (the sources at or
# waiting for such a hub, and the hubs' inbound lists) are told apart, not
# compared. unit.test_takeover checks that state's hand-over exactly.
# What status notes say while a timer runs:
PENDING = ("keeps the sources it answers", "takes sources again once healthy", "returns to",
           "held at", "waits before moving again")


class Run:
    def __init__(self):
        self.rng = random.Random(SEED)
        self.step = 0
        self.env = T.Env("takeoverprocs", clock_speed=1,
                         clock_start="2020-01-23T12:00:00+08:00",
                         extra_nircd=f"verify_window = 1s\n[controller]\n"
                                     f"lease_timeout = {LEASE_S}s")
        self.addr = {"nircd-1": self.env.addr, "nircd-2": f"127.0.0.1:{T.listen_port()}"}
        self.conf = {"nircd-1": self.env.nircd_conf,
                     "nircd-2": self.env.controller_conf("nircd-2", self.addr["nircd-2"],
                                                         "nircd-2.conf")}
        # The scripted PBXs claim their own staffing (sichuan 500, sources
        # 30): configure the seats to match, or the reports would be refused
        # as implausible against the scenario's (docs/SECURITY.md).
        self.env.sql("UPDATE sites SET seats = 600, roster = NULL")
        self.procs = {}
        self.down = set()
        self.timed = set()  # sites waiting on a damping timer at the last snapshot
        self.timed_seen = 0

    def fail(self, msg):
        raise AssertionError(f"{msg} (seed {SEED}, step {self.step}: "
                             f"NIRC_TAKEOVER_PROC_SEED={SEED})")

    def ctl(self, *args, timeout="5s"):
        return self.env.ctl("--timeout", timeout, *args, controllers=list(self.addr.values()),
                            timeout=120)

    def status(self, node=None):
        ctls = [self.addr[node]] if node else list(self.addr.values())
        r = self.env.ctl("--json", "status", controllers=ctls, timeout=60)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def routes(self, st):
        # None: a route the leader has not heard (route_unheard), not home.
        return {s["slug"]: None if s["route"] is None else
                sorted((x["site"], x["permille"]) for x in s["route"])
                for s in st["sites"] if s["slug"] in SOURCES + HUBS}

    # ---- set-up ----

    def start(self):
        env = self.env
        self.procs["nircd-1"] = env.start_controller(name="nircd-1")
        assert env.controller_status.startswith("leader"), env.controller_status
        self.procs["nircd-2"] = env.start_controller(conf=self.conf["nircd-2"], name="nircd-2")
        assert env.controller_status.startswith("standby"), env.controller_status
        for s in SOURCES + HUBS:
            self.start_agent(s)
        T.wait_until(lambda: (st := self.status()) and all(
            s["link"] == "online" and s["load"] for s in st["sites"]
            if s["slug"] in SOURCES + HUBS) or None, 30, "agents online and reporting")

    def start_agent(self, slug):
        env = self.env
        for name, body in ((f"apply-{slug}.sh", APPLY_XIZANG if slug == "xizang" else APPLY_OK),
                           (f"collect-{slug}.sh", COLLECT % ((0, 0, STAFF[slug], STAFF[slug], 0)
                                                             if slug in HUBS
                                                             else (1, 1, 30, 30, 1)))):
            path = os.path.join(env.dir, name)
            with open(path, "w") as f:
                f.write(body)
            os.chmod(path, 0o755)
        conf = env.agent_conf(slug, controllers=",".join(self.addr.values()))
        text = open(conf).read().replace("[agent]", "[agent]\nadapter = exec", 1)
        text += (f"\n[exec]\napply_cmd = {env.dir}/apply-{slug}.sh\n"
                 f"collect_cmd = {env.dir}/collect-{slug}.sh\ntimeout = 2s\n")
        with open(conf, "w") as f:
            f.write(text)
        env.agents[slug] = T.Proc(f"agent-{slug}", [T.binary("nirc-agent"), "-c", conf], env.dir)

    # ---- commands and events ----

    def some(self, names, most):
        return self.rng.sample(names, self.rng.randint(1, most))

    def active_cutovers(self):
        return [r[0] for r in self.env.sql("SELECT id FROM cutovers WHERE state = 'active'")]

    def op(self):
        rng = self.rng
        what = rng.randrange(100)
        if what < 5:
            # Towards xizang's broken trunk: the move fails and is rolled
            # back, and xizang stays excluded until it is readmitted.
            self.ctl("cutover", "xizang", "--to", "sichuan", "--reason", f"step {self.step}",
                     "--force")
        elif what < 25:
            args = ["cutover", ",".join(self.some(SOURCES, 2)), "--to",
                    ",".join(self.some(HUBS, 2)), "--reason", f"step {self.step}",
                    "--for", f"{rng.randint(60, 180)}m"]
            if rng.randrange(2):
                args += ["--share", str(rng.choice([300, 500, 1000]))]
            if rng.randrange(3) == 0:
                args += ["--force"]
            self.ctl(*args)
        elif what < 35:
            ids = self.active_cutovers()
            if ids:
                change = rng.choice([["--share", str(rng.choice([250, 600, 1000]))],
                                     ["--to", ",".join(self.some(HUBS, 2))],
                                     ["--for", f"{rng.randint(60, 180)}m"]])
                self.ctl("cutover", "--amend", rng.choice(ids), *change, "--force")
        elif what < 50:
            self.ctl("restore", rng.choice(SOURCES), "--reason", f"step {self.step}")
        elif what < 57:
            self.ctl("readmit", rng.choice(SOURCES))
        elif what < 72:
            name = rng.choice(["noon", "evening"])
            sub = rng.choice(["add", "rm", "enable", "disable"])
            if sub == "add":
                # In force all through the test (11:00-13:00 business time),
                # or not at all (20:00-22:00): no window opens or closes
                # while it runs.
                start, end = ("11:00", "13:00") if name == "noon" else ("20:00", "22:00")
                self.ctl("schedule", "add", name, "--sources", ",".join(self.some(SOURCES, 2)),
                         "--to", ",".join(self.some(HUBS, 2)), "--start", start, "--end", end,
                         "--wave-size", "10")
            else:
                self.ctl("schedule", sub, name)
        elif what < 80:
            src = rng.choice(SOURCES)
            if rng.randrange(2):
                # Never engages: the thresholds are beyond any simulated load.
                self.ctl("overflow", "add", f"{src}-ovf", "--source", src, "--to",
                         ",".join(self.some(HUBS, 2)), "--trigger-queue", "10000",
                         "--release-queue", "1", "--cap", "500")
            else:
                self.ctl("overflow", "rm", f"{src}-ovf")
        else:
            hub = rng.choice(HUBS)
            if hub in self.down:
                self.start_agent(hub)
                self.down.discard(hub)
            else:
                self.env.agents[hub].stop()
                self.down.add(hub)

    # ---- takeover ----

    def leader(self):
        st = self.status()
        return (st["controller"], st["epoch"], st) if st else (None, None, None)

    def world_seen(self, st):
        """The controller sees the world as it is: every agent that runs is
        online and reporting, every hub that was stopped is not online."""
        by = {s["slug"]: s for s in st["sites"]}
        return all((by[s]["link"] != "online") if s in self.down
                   else (by[s]["link"] == "online" and by[s]["load"]) for s in SOURCES + HUBS)

    def pending(self, st):
        """Sites whose route waits on a damping timer (status notes), with
        the sources routed to a hub that does."""
        timed = {s["slug"] for s in st["sites"] if any(p in s.get("note", "") for p in PENDING)}
        # A stopped hub is in its grace period, whatever its note says (a
        # plan alarm's text takes the note's place): its sources re-home
        # when the grace ends, and a new leader starts the grace again (a
        # hub not seen since it took over), so both leaders move them, at
        # different times. Seen under ASan: the old leader re-homed hubei
        # from a stopped sichuan 0.8 s after the snapshot, before its kill.
        timed |= set(self.down)
        for s in st["sites"]:
            if any(r["site"] in timed and r["site"] != s["slug"] for r in s["route"] or []):
                timed.add(s["slug"])
        return timed

    def still(self):
        """The routes once they stand still, and the sites waiting on a
        damping timer: the leader sees every agent as it is, and two reads a
        second apart agree (waves, rollbacks and hub losses settle on their
        own)."""
        last = None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            _, _, st = self.leader()
            now = self.routes(st) if st and self.world_seen(st) else None
            if now is not None and now == last:
                self.timed = set(self.pending(st))
                return now
            last = now
            time.sleep(1.0)
        self.fail("the routes never stood still")

    def takeover(self):
        node, epoch, _ = self.leader()
        before = self.still()
        other = "nircd-2" if node == "nircd-1" else "nircd-1"
        how = self.rng.choice([signal.SIGKILL, signal.SIGTERM])
        self.procs[node].signal(how)
        self.procs[node].p.wait(30)

        def led_by_other():
            st = self.status(other)
            return st if st and st["controller"] == other and st["epoch"] > epoch else None

        st = T.wait_until(led_by_other, 30, f"{other} to lead after {how.name} of {node}")
        new_epoch = st["epoch"]
        # Settled: it answers a change (a refused restore of a hub) instead
        # of "still hearing from the sites", then plans for a second.
        T.wait_until(lambda: "not cut over" in self.ctl("restore", "shaanxi").stderr or None, 30,
                     "the new leader settled")
        # It sees the same world (every agent back), then plans a second.
        T.wait_until(lambda: self.world_seen(self.status(other)) or None, 30,
                     "every agent back at the new leader")
        t0 = self.status(other)["server_time_ms"]
        T.wait_until(lambda: self.status(other)["server_time_ms"] >= t0 + 1000 or None, 10,
                     "a second of planning")
        after = self.routes(self.status(other))
        # A hub's inbound list follows its sources: it may differ only
        # where a source was waiting on a timer.
        loose = self.timed | (set(HUBS) if self.timed & set(SOURCES) else set())
        self.timed_seen += len(self.timed)
        for s in SOURCES + HUBS:
            if after.get(s) != before.get(s) and s not in loose:
                self.fail(f"after {how.name} of {node}, {other} routes {s} {after.get(s)}; "
                          f"{node} routed {before.get(s)}")
        for site, route in self.env.sql(f"SELECT site, route::text FROM directives "
                                        f"WHERE epoch = {new_epoch}"):
            got = sorted((x["site"], x["permille"]) for x in json.loads(route))
            if site in before and got != before[site] and site not in loose:
                self.fail(f"{other} sent {site} {got}, which {node} would not have: "
                          f"{before[site]}")
        # The killed controller comes back as the standby.
        self.procs[node] = self.env.start_controller(conf=self.conf[node], name=node)
        if not self.env.controller_status.startswith("standby"):
            self.fail(f"{node} came back as {self.env.controller_status}")
        return how.name

    def run(self):
        self.start()
        kills = []
        for self.step in range(1, STEPS + 1):
            if self.rng.randrange(100) < 3 or self.step == STEPS:
                kills.append(self.takeover())
            else:
                self.op()
        counts = dict(self.env.sql("SELECT action, count(*) FROM audit_log GROUP BY action"))
        # Where capacity decided: sources whose damping state ever changed
        # (a placement held below the keep floor, a source a hub turned
        # down: route_holds has a row for each), and moves refused for
        # capacity (alarms, cutovers refused by the check).
        capacity = int(self.env.sql(
            "SELECT (SELECT count(*) FROM route_holds) + "
            "(SELECT count(*) FROM alarms WHERE kind = 'capacity' AND "
            "message LIKE '%would need%') + (SELECT count(*) FROM audit_log WHERE "
            "action = 'cutover-refused' AND detail ? 'sources')")[0][0])
        print(f"  {STEPS} steps, {len(kills)} takeovers ({', '.join(kills)}); "
              f"audit: {json.dumps(counts, sort_keys=True)}; capacity decided {capacity} "
              f"times; {self.timed_seen} sites on a damping timer at a snapshot (seed {SEED})")
        if STEPS >= 100 and capacity == 0:
            self.fail("the capacity check never decided: the test shows nothing about it")
        # A run that never changed anything would prove nothing. (Rollbacks
        # depend on sichuan being up when xizang is sent there: reported.)
        for action in ("cutover", "cutover-amend", "restore", "schedule-add"):
            if STEPS >= 200 and action not in counts:
                self.fail(f"the sequence never did '{action}'")

    def close(self):
        for p in self.procs.values():
            p.stop()
        self.env.close()


def test_leader_change_with_real_processes():
    run = Run()
    try:
        run.run()
    finally:
        run.close()


if __name__ == "__main__":
    T.main([test_leader_change_with_real_processes])
