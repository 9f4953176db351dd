#!/usr/bin/env python3
"""Per-site cost of configured sites with no link (issue 15, SPEC 11).

nircd evaluates every site on every tick (200 ms) whether or not its agent
is connected. This benchmark imports N generated sites, starts nircd, and
measures its CPU over a window once it is idle, for several N. The
comparison in the same run is N against N: a linear engine costs 20x more
at 20,000 sites than at 1,000; a quadratic one costs 400x more.

  bench/idle_sites.py [--sites 1000,5000,20000] [--window 20]
  bench/idle_sites.py --sites 20000 --vs BUILD_DIR [--settle 140] [--windows 3]

--vs runs a second nircd from another build beside this one, on the same
sites, and measures both over the same windows (the alternative in the
same minutes: the machine's noise hits both); --settle waits first, e.g.
until every site has been down for more than two minutes.

Target (issue 15): 20,000 configured sites without links under 5% of a core.
"""
import argparse
import os
import time

import benchlib as B

T = B.T


def measure(n, window):
    env = T.Env(f"bench-idle-{n}")
    scen = os.path.join(env.dir, "sites.json")
    T.write_sites_scenario(scen, n, "bench")
    T.run([T.binary("nircd"), "-c", env.nircd_conf, "import-sites", scen], check=True,
          timeout=600)
    proc = env.start_controller(timeout=120)
    time.sleep(3)  # a measurement window, not synchronisation: start-up work settles
    c0, t0 = B.cpu_seconds(proc.p.pid), time.monotonic()
    time.sleep(window)
    c1, t1 = B.cpu_seconds(proc.p.pid), time.monotonic()
    rss = B.rss_kib(proc.p.pid)
    env.close()
    cpu = (c1 - c0) / (t1 - t0)
    return {"sites": n + 31, "core_fraction": round(cpu, 4),
            "cpu_us_per_site_per_s": round(cpu * 1e6 / (n + 31), 3), "rss_kib": rss}


def side_by_side(n, other, settle, window, windows):
    """This build's nircd and other's, n sites each, idle in the same
    windows: each window's share of a core for both."""
    procs = {}
    for tag, bdir in (("this", T.BUILD), ("vs", other)):
        env = T.Env(f"bench-idle-{tag}-{n}")
        scen = os.path.join(env.dir, "sites.json")
        T.write_sites_scenario(scen, n, "bench")
        T.run([os.path.join(bdir, "nircd"), "-c", env.nircd_conf, "import-sites", scen],
              check=True, timeout=600)
        saved, T.BUILD = T.BUILD, bdir
        try:
            procs[tag] = env.start_controller(timeout=120)
        finally:
            T.BUILD = saved
    time.sleep(settle)  # a state to reach (sites down long enough), not synchronisation
    out = []
    for _ in range(windows):
        c0, t0 = {t: B.cpu_seconds(p.p.pid) for t, p in procs.items()}, time.monotonic()
        time.sleep(window)
        d = time.monotonic() - t0
        out.append({t: round((B.cpu_seconds(p.p.pid) - c0[t]) / d, 4) for t, p in procs.items()}
                   | {"loadavg": B.loadavg()})
    return {"sites": n + 31, "vs": other, "settle_s": settle, "windows": out}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sites", default="1000,5000,20000")
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--vs", help="another build directory, run beside this one")
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--windows", type=int, default=3)
    a = ap.parse_args()
    pg = B.Postgres()
    if a.vs:
        try:
            res = side_by_side(int(a.sites.split(",")[-1]), a.vs, a.settle, a.window, a.windows)
        finally:
            T.Proc.kill_all()
            pg.stop()
        B.emit("idle_sites", res, target={"sites": 20031, "core_fraction_max": 0.05})
        return
    try:
        rows = [measure(int(n), a.window) for n in a.sites.split(",")]
    finally:
        T.Proc.kill_all()
        pg.stop()
    for r in rows:
        if not r["core_fraction"] > 0:
            raise SystemExit(f"idle_sites: no CPU time measured at {r['sites']} sites")
    first, last = rows[0], rows[-1]
    growth = last["core_fraction"] / first["core_fraction"] if first["core_fraction"] else None
    B.emit("idle_sites", rows,
           scaling={"sites_ratio": round(last["sites"] / first["sites"], 2),
                    "cpu_ratio": round(growth, 2) if growth else None,
                    "note": "linear: cpu_ratio ~ sites_ratio; quadratic: ~ its square"},
           target={"sites": 20031, "core_fraction_max": 0.05})


if __name__ == "__main__":
    main()
