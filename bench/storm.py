#!/usr/bin/env python3
"""Reconnect storms and links at scale (issue 15, points 6 and 7; SPEC 11).

N simulated agents (tests/tools/nirc-swarm, one certificate each, TLS 1.3
with mutual authentication), in as many swarm processes as the open-file
limit needs, against real nircd processes and a durable PostgreSQL:

  a. cold:     N agents start at once against one nircd: time until every
               agent holds a Welcome (the swarms' all_connected events),
               TLS handshakes and Welcomes per second over time (the
               swarms' progress lines), nircd's and the swarms' CPU;
  b. steady:   the same N links, one report per second each (the Welcome's
               interval): nircd's RSS (KiB per link over its idle RSS) and
               share of a core over --window, and the swarms' share;
  c. failover: a leader and a standby, N agents listing both (the leader
               first), all on the leader; SIGKILL the leader: time until
               every agent holds a Welcome from the standby.

  bench/storm.py [--agents 10000] [--phases cold,steady,failover]
                 [--window 10] [--perf DIR]

--perf DIR records `perf record -g` of nircd during the cold start and of
the standby during the failover (DIR/cold.data, DIR/failover.data).

Targets (issue 15): 20,000 links in < 1 GiB RSS and < 1 core at one report
per second each; after SIGKILL of the leader 10,000 agents served within
10 s, 1,000 within 5 s; a cold start of 10,000 within 10 s; handshakes per
second stay near the TLS limit of the core during a storm (no livelock).
The open-file limit (hard limit per process) is printed: nircd needs one
descriptor per link, so it bounds N for the one nircd process.
"""
import argparse
import json
import os
import resource
import signal
import subprocess
import threading
import time

import benchlib as B
import ingest as I  # its Stream follows a process's JSON lines

T = B.T
SW_FD_SPARE = 64  # tests/tools/swarm_run.c: descriptors a swarm keeps besides its links


def nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


class Sampler:
    """CPU seconds of some processes, sampled every `every` seconds on a
    thread (for per-second series during a phase)."""

    def __init__(self, pids, every=1.0):
        self.pids = dict(pids)
        self.every = every
        self.rows = []  # (monotonic, {name: cpu_s})
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _sample(self):
        row = {}
        for n, p in self.pids.items():
            try:
                row[n] = B.cpu_seconds(p)
            except (FileNotFoundError, ProcessLookupError):
                row[n] = None
        self.rows.append((time.monotonic(), row))

    def _run(self):
        while not self.stop_ev.is_set():
            self._sample()
            self.stop_ev.wait(self.every)

    def close(self):
        self.stop_ev.set()
        self.t.join(2)
        self._sample()

    def cpu_between(self, name, t0, t1):
        pts = [(t, r[name]) for t, r in self.rows if r.get(name) is not None]
        a = [p for p in pts if p[0] <= t0] or pts[:1]
        b = [p for p in pts if p[0] >= t1] or pts[-1:]
        if not a or not b or b[0][0] <= a[-1][0]:
            return None
        return b[0][1] - a[-1][1], b[0][0] - a[-1][0]


class Swarms:
    """N agents split over as few nirc-swarm processes as the open-file
    limit allows (each needs one descriptor per agent)."""

    def __init__(self, env, d, n, controllers, name, per_proc):
        self.procs, self.streams = [], []
        first = 0
        i = 0
        while first < n:
            k = min(per_proc, n - first)
            p = T.Proc(f"{name}-{i}", [
                T.binary("nirc-swarm"), "run", "--controllers", ",".join(controllers), "--ca",
                f"{T.PKI}/ca.crt", "--dir", d, "--first", str(first), "--count", str(k),
                "--duration", "0", "--progress", "--progress-interval", "1s"], env.dir)
            self.procs.append(p)
            self.streams.append(I.Stream(p))
            first += k
            i += 1

    def pids(self):
        return {f"swarm{i}": p.p.pid for i, p in enumerate(self.procs)}

    def wait_all(self, pred, timeout, what):
        """Waits for an event matching pred in every swarm; returns the
        monotonic time the last one was seen and the events."""
        evs, seen = [], []
        deadline = time.monotonic() + timeout
        for st in self.streams:
            left = max(1.0, deadline - time.monotonic())
            try:
                e = st.wait(pred, left, what)
            except SystemExit as ex:
                if "timed out" not in str(ex):
                    raise
                return None, None  # not served within the timeout: a figure, not a crash
            evs.append(e)
            seen.append(max(ts for ts, x in list(st.events) if x is e))
        return max(seen), evs

    def series(self, key, t0, t1):
        """Per-second increments of `key` (summed over the swarms) from
        monotonic t0 to t1, from their progress lines."""
        secs = int(t1 - t0) + 1
        out = [0] * secs
        for st in self.streams:
            prog = [(ts, e[key]) for ts, e in list(st.events)
                    if e.get("event") == "progress" and key in e]
            prev = 0  # the counters start at 0 with the swarm
            for ts, v in prog:
                if ts > t1 + 1:
                    break
                if ts > t0:
                    out[min(secs - 1, int(ts - t0))] += v - prev
                prev = v
        return out

    def last(self, key, before=None):
        """`key` summed over the swarms' last progress lines (seen at or
        before monotonic `before`, if given)."""
        tot = 0
        for st in self.streams:
            prog = [e for ts, e in list(st.events) if e.get("event") == "progress"
                    and (before is None or ts <= before)]
            if prog:
                tot += prog[-1].get(key, 0)
        return tot

    def stop(self):
        for st in self.streams:
            st.close()
        for p in self.procs:
            p.stop()


def perf_start(pid, path):
    if not path:
        return None
    # NIRC_PERF_CALLGRAPH="--call-graph dwarf,16384 -F 500" gives stacks
    # through libcrypto and libc, which have no frame pointers.
    opts = os.environ.get("NIRC_PERF_CALLGRAPH", "-g").split()
    return subprocess.Popen(["perf", "record", *opts, "-o", path, "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_stop(prof):
    if prof:
        prof.send_signal(signal.SIGINT)
        try:
            prof.wait(60)
        except subprocess.TimeoutExpired:
            prof.kill()


def core_share(sampler, names, t0, t1):
    out = {}
    for n in names:
        r = sampler.cpu_between(n, t0, t1)
        out[n] = round(r[0] / r[1], 3) if r else None
    return out


def handshake_figures(sw, t0, t1):
    hs = sw.series("handshakes", t0, t1)
    wl = sw.series("welcomes", t0, t1)
    busy = [x for x in hs if x > 0]
    return {"handshakes_per_s": hs, "welcomes_per_s": wl,
            "handshakes_per_s_peak": max(hs) if hs else None,
            "handshakes_per_s_mean_while_busy": round(sum(busy) / len(busy)) if busy else None,
            # Within the phase: the swarms' counters run from their start,
            # and the failover's set-up sends half the agents through the
            # standby (it starts them spread over the list), 1 NOT_LEADER each.
            "failed_connects": sw.last("failed_connects") - sw.last("failed_connects", t0),
            "attempts": sw.last("attempts") - sw.last("attempts", t0),
            "errors_from_controllers": sw.last("errors") - sw.last("errors", t0)}


TLS_LIMIT = {}  # bench/tls_limit's figures for this machine, measured first


def tls_limit(handshakes=1000):
    """The TLS limit of one core: CPU per bare mutual TLS 1.3 handshake on
    each side with NIRC's own contexts (bench/tls_limit.c), to compare a
    storm's cost per agent with."""
    p = T.PKI
    r = T.run([T.binary("tls_limit"), "--ca", f"{p}/ca.crt", "--server-cert",
               f"{p}/controller-nircd.crt", "--server-key", f"{p}/controller-nircd.key",
               "--client-cert", f"{p}/site-hubei.crt", "--client-key", f"{p}/site-hubei.key",
               "--handshakes", str(handshakes)], check=True, timeout=300)
    return json.loads(r.stdout)


def cpu_per_agent(n, secs, server_share, swarm_share):
    """CPU milliseconds each agent served cost the server and the swarms,
    and what 10,000 agents would cost these cores at that rate: no
    schedule serves them faster than the floor (the two share the cores
    here; a deployment's agents run on their own machines)."""
    if not n or server_share is None or swarm_share is None:
        return {}
    server = server_share * secs * 1000 / n
    swarm = swarm_share * secs * 1000 / n
    bare = TLS_LIMIT.get("server_cpu_ms")
    return {"cpu_ms_per_agent": {"server": round(server, 3), "swarm": round(swarm, 3)},
            # 1.0 would be a server doing nothing but bare handshakes.
            "server_share_of_tls_limit": round(bare / server, 2) if bare and server else None,
            "cpu_floor_s_for_10000": round((server + swarm) * 10000 / 1000 /
                                           (os.cpu_count() or 1), 1)}


def phase_cold_steady(a, d, per_proc, phases):
    env = T.Env("bench-storm")
    T.run([T.binary("nircd"), "-c", env.nircd_conf, "import-sites",
           os.path.join(d, "scenario.json")], check=True, timeout=600)
    nircd = env.start_controller(timeout=300)
    time.sleep(3)  # a measurement window, not synchronisation: start-up work settles
    rss_idle = B.rss_kib(nircd.p.pid)
    out = {}
    sw = None
    try:
        prof = perf_start(nircd.p.pid, a.perf and os.path.join(a.perf, "cold.data"))
        sw = Swarms(env, d, a.agents, [env.addr], "storm", per_proc)
        samp = Sampler({"nircd": nircd.p.pid, **sw.pids()})
        _, started = sw.wait_all(lambda e: e.get("event") == "started", 600, "swarm set-up")
        t_start = time.monotonic()  # the last swarm is set up: its agents start now
        t_all, evs = sw.wait_all(lambda e: e.get("event") == "all_connected", a.timeout,
                                 "every agent connected")
        perf_stop(prof)
        swarm_names = list(sw.pids())
        if t_all is None:
            t_end = time.monotonic()
            cpu = core_share(samp, ["nircd"] + swarm_names, t_start, t_end)
            samp.close()
            out["cold"] = {"agents": a.agents, "all_served_s": None,
                           "connected_at_timeout": sw.last("connected"), "timeout_s": a.timeout,
                           "nircd_core_share": cpu["nircd"],
                           **handshake_figures(sw, t_start, t_end)}
            return out
        cpu = core_share(samp, ["nircd"] + swarm_names, t_start, t_all)
        out["cold"] = {
            "agents": a.agents, "swarm_processes": len(sw.procs),
            "all_served_s": round(t_all - t_start, 2),
            "all_served_s_per_swarm": [round(e["t_ms"] / 1000, 2) for e in evs],
            "nircd_core_share": cpu["nircd"],
            "swarm_core_share": round(sum(cpu[n] or 0 for n in swarm_names), 3),
            **handshake_figures(sw, t_start, t_all),
        }
        out["cold"].update(cpu_per_agent(a.agents, t_all - t_start, cpu["nircd"],
                                         out["cold"]["swarm_core_share"]))
        if "steady" in phases:
            time.sleep(a.settle)  # a measurement window, not synchronisation: rates settle
            c0 = {n: B.cpu_seconds(p) for n, p in {"nircd": nircd.p.pid, **sw.pids()}.items()}
            r0 = sw.last("reports_sent")
            t0 = time.monotonic()
            time.sleep(a.window)  # the measurement window
            c1 = {n: B.cpu_seconds(p) for n, p in {"nircd": nircd.p.pid, **sw.pids()}.items()}
            r1 = sw.last("reports_sent")
            secs = time.monotonic() - t0
            rss = B.rss_kib(nircd.p.pid)
            out["steady"] = {
                "links": a.agents, "window_s": round(secs, 1),
                "reports_per_s": round((r1 - r0) / secs),
                "nircd_core_share": round((c1["nircd"] - c0["nircd"]) / secs, 3),
                "swarm_core_share": round(sum(c1[n] - c0[n] for n in swarm_names) / secs, 3),
                "nircd_rss_kib": rss, "nircd_rss_idle_kib": rss_idle,
                "kib_per_link": round((rss - rss_idle) / a.agents, 1),
                "connected": sw.last("connected"), "drops": sw.last("drops"),
            }
        samp.close()
    finally:
        if sw:
            sw.stop()
        env.close()
    return out


def phase_failover(a, d, per_proc):
    env = T.Env("bench-storm-ha")
    T.run([T.binary("nircd"), "-c", env.nircd_conf, "import-sites",
           os.path.join(d, "scenario.json")], check=True, timeout=600)
    leader = env.start_controller(timeout=300)
    addr_b = f"127.0.0.1:{T.listen_port()}"
    standby = env.start_controller(conf=env.controller_conf("nircd-2", addr_b, "nircd-2.conf"),
                                   name="nircd-2", timeout=300)
    sw = None
    try:
        sw = Swarms(env, d, a.agents, [env.addr, addr_b], "storm-ha", per_proc)
        t_on, _ = sw.wait_all(lambda e: e.get("event") == "all_connected", a.timeout,
                              "every agent on the leader")
        if t_on is None:
            return {"agents": a.agents, "all_served_s": None,
                    "note": f"not every agent reached the leader within {a.timeout} s",
                    "connected_at_timeout": sw.last("connected")}
        time.sleep(a.settle)  # a measurement window, not synchronisation: rates settle
        samp = Sampler({"standby": standby.p.pid, **sw.pids()})
        prof = perf_start(standby.p.pid, a.perf and os.path.join(a.perf, "failover.data"))
        t_kill = time.monotonic()
        leader.kill()
        t_all, evs = sw.wait_all(lambda e: e.get("event") == "all_connected" and
                                 e.get("after") == "drop", a.timeout,
                                 "every agent back on the standby")
        perf_stop(prof)
        samp.close()
        swarm_names = list(sw.pids())
        if t_all is None:
            t_end = time.monotonic()
            cpu = core_share(samp, ["standby"] + swarm_names, t_kill, t_end)
            return {"agents": a.agents, "all_served_s": None, "timeout_s": a.timeout,
                    "connected_at_timeout": sw.last("connected"),
                    "standby_core_share": cpu["standby"], **handshake_figures(sw, t_kill, t_end)}
        cpu = core_share(samp, ["standby"] + swarm_names, t_kill, t_all)
        lease = env.sql("SELECT node FROM leader_lease")
        swarm_share = round(sum(cpu[n] or 0 for n in swarm_names), 3)
        return {"agents": a.agents, "swarm_processes": len(sw.procs),
                "all_served_s": round(t_all - t_kill, 2),
                **cpu_per_agent(a.agents, t_all - t_kill, cpu["standby"], swarm_share),
                "all_back_s_per_swarm": [round(e["all_back_ms"] / 1000, 2) for e in evs],
                "lease_holder": lease[0][0] if lease else None,
                "standby_core_share": cpu["standby"],
                "swarm_core_share": swarm_share,
                **handshake_figures(sw, t_kill, t_all)}
    finally:
        if sw:
            sw.stop()
        standby.stop()
        env.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=10000)
    ap.add_argument("--phases", default="cold,steady,failover",
                    help="which of cold, steady (needs cold), failover")
    ap.add_argument("--window", type=float, default=10.0, help="steady measurement, seconds")
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="longest wait for every agent, seconds")
    ap.add_argument("--perf", help="directory for perf record -g profiles of nircd")
    ap.add_argument("--per-swarm", type=int, default=10000,
                    help="agents per nirc-swarm process (one thread each; also bounded by "
                         "the open-file limit)")
    a = ap.parse_args()
    phases = set(a.phases.split(","))
    if not phases or phases - {"cold", "steady", "failover"}:
        ap.error("--phases takes cold, steady and failover, comma-separated")
    if "steady" in phases:
        phases.add("cold")
    I.raise_nofile()
    soft, hard = nofile()
    # nircd: one descriptor per link and its own few dozen; it warns when
    # short. A swarm: one per agent plus SW_FD_SPARE.
    per_proc = max(1, min(a.per_swarm, soft - SW_FD_SPARE))
    if a.perf:
        os.makedirs(a.perf, exist_ok=True)
    load_before = B.loadavg()
    pg = B.Postgres()
    rows = {}
    try:
        T.ensure_pki()
        d = B.swarm_pki(max(a.agents, 2), "storm", timeout=1800)
        TLS_LIMIT.update(tls_limit())
        rows["tls_limit"] = dict(TLS_LIMIT)
        if "cold" in phases:
            rows.update(phase_cold_steady(a, d, per_proc, phases))
        if "failover" in phases:
            rows["failover"] = phase_failover(a, d, per_proc)
    finally:
        T.Proc.kill_all()
        pg.stop()
    B.emit("storm", rows, loadavg_before=load_before,
           setup={"agents": a.agents, "open_file_limit": {"soft": soft, "hard": hard},
                  "open_file_note": "per process; nircd holds one descriptor per link, so "
                                    "one nircd cannot hold more links than this",
                  "transport": "TLS 1.3, mutual certificates, one per agent",
                  "swarm_agents_per_process_max": per_proc},
           target={"links": 20000, "rss_kib_max": 1048576, "steady_core_share_max": 1.0,
                   "failover_10000_s_max": 10, "failover_1000_s_max": 5,
                   "cold_10000_s_max": 10},
           note="the swarms share the 2 cores with nircd: their core share is printed beside "
                "nircd's; served = every agent holds a Welcome")


if __name__ == "__main__":
    main()
