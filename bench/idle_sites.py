#!/usr/bin/env python3
"""Per-site cost of configured sites with no link (issue 15, SPEC 11).

nircd evaluates every site on every tick (200 ms) whether or not its agent
is connected. This benchmark imports N generated sites, starts nircd, and
measures its CPU over a window once it is idle, for several N. The
comparison in the same run is N against N: a linear engine costs 20x more
at 20,000 sites than at 1,000; a quadratic one costs 400x more.

  bench/idle_sites.py [--sites 1000,5000,20000] [--window 20]

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sites", default="1000,5000,20000")
    ap.add_argument("--window", type=float, default=20.0)
    a = ap.parse_args()
    pg = B.Postgres()
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
