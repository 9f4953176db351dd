#!/usr/bin/env python3
"""Synthetic but realistic load history for backtesting the demand forecast
(docs/FORECAST.md), then the backtest itself.

    python3 bench/forecast_history.py --port 15560 [--weeks 12] [--sites 8] [--seed 1]

Needs a PostgreSQL on 127.0.0.1:PORT with user nirc (tests/integration/
pg-fixture.sh start x PORT makes one) and a build in ./build (or
NIRC_BUILD_DIR). It makes database `forecast_bench`, migrates it, imports the
demo's 31 provinces, writes one load_minute row a minute for the first
--sites provinces over --weeks weeks ending last Sunday, and runs
build/forecast_compare on it twice: with the holiday given as an exception
date and without.

The history: each province's day and night calls from scenario/provinces.json
shaped by its hourly_weight (the demo's curve); weekdays differ (Monday +15%,
Saturday -30%, Sunday -40%); a trend of +1.5% a week; a day-to-day factor
N(1, 0.06) and Poisson calls each minute; one holiday (a Wednesday in week
6: 30% of the calls); gaps: 2% of the hours of each province missing and one
12-hour outage per province."""
import argparse
import datetime as dt
import io
import json
import math
import os
import random
import subprocess
import sys

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("NIRC_BUILD_DIR", os.path.join(SRC, "build"))
WEEKDAY = [1.15, 1.0, 1.0, 1.0, 0.95, 0.7, 0.6]
TREND = 0.015
DB = "forecast_bench"


def poisson(rng, lam):
    if lam > 30:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    l, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= l:
            return k
        k += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--weeks", type=int, default=12)
    ap.add_argument("--sites", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    base = f"host=127.0.0.1 port={a.port} user=nirc"
    subprocess.run(["psql", "-q", f"{base} dbname=postgres", "-c", f"DROP DATABASE IF EXISTS {DB}",
                    "-c", f"CREATE DATABASE {DB}"], check=True)
    conn = f"{base} dbname={DB}"
    conf = os.path.join(BUILD, "forecast_bench.conf")
    with open(conf, "w") as f:
        f.write(f"[controller]\nnode = bench\nlisten = 127.0.0.1:1\n[tls]\nca = /dev/null\n"
                f"cert = /dev/null\nkey = /dev/null\n[database]\nconninfo = {conn}\n"
                f"schema_dir = {SRC}/schema\njournal =\n")
    scen = os.path.join(SRC, "scenario", "provinces.json")
    subprocess.run([os.path.join(BUILD, "nircd"), "-c", conf, "migrate"], check=True,
                   capture_output=True)
    subprocess.run([os.path.join(BUILD, "nircd"), "-c", conf, "import-sites", scen], check=True,
                   capture_output=True)
    sc = json.load(open(scen))
    hw = sc["hourly_weight"]
    tz = dt.timezone(dt.timedelta(minutes=sc["utc_offset_min"]))
    today = dt.date.today()
    end = today - dt.timedelta(days=today.weekday())  # this Monday: the history ends Sunday
    start = end - dt.timedelta(weeks=a.weeks)
    holiday = start + dt.timedelta(weeks=5, days=2)
    buf = io.StringIO()
    rows = 0
    for site in sc["sites"][:a.sites]:
        total = site["day_calls"] + site["night_calls"]
        outage_day = start + dt.timedelta(days=rng.randrange(7, 7 * a.weeks))
        day = start
        while day < end:
            w = (day - start).days // 7
            f = WEEKDAY[day.weekday()] * (1 + TREND) ** w * max(0.5, rng.gauss(1, 0.06))
            if day == holiday:
                f *= 0.3
            for h in range(24):
                if rng.random() < 0.02 or (day == outage_day and h >= 8 and h < 20):
                    continue  # a gap: no report reached the controller
                per_min = total * hw[h] / sum(hw) * f / 60
                for m in range(60):
                    t = dt.datetime(day.year, day.month, day.day, h, m, tzinfo=tz)
                    c = poisson(rng, per_min)
                    aht = site["aht_s"] * 1000 * rng.uniform(0.9, 1.1)
                    buf.write(f"{site['slug']}\t{t.isoformat()}\t1\t{c}\t{c}\t0\t{c}\t0\t"
                              f"0\t0\t\\N\t\\N\t\\N\t{aht:.0f}\t0\t0\n")
                    rows += 1
            day += dt.timedelta(days=1)
    subprocess.run(["psql", "-q", conn, "-c",
                    "COPY load_minute (site, minute, reports, offered, answered, abandoned, "
                    "answered_within, from_other_sites, max_queue, max_wait_ms, avg_logged_in, "
                    "avg_ready, avg_talking, avg_aht_ms, unreadable_reports, routed_away) "
                    "FROM STDIN"], input=buf.getvalue(), text=True, check=True)
    print(f"{rows} load_minute rows: {a.sites} provinces, {a.weeks} weeks from {start} "
          f"(holiday {holiday}), seed {a.seed}")
    tool = os.path.join(BUILD, "forecast_compare")
    hol = holiday.strftime("%Y%m%d")
    for args in (["--except", hol], []):
        cmd = [tool, conn, "--tz", "Asia/Shanghai", "--weeks", "8"] + args
        print("$ " + " ".join(f"'{c}'" if " " in c else c for c in cmd), flush=True)
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    sys.exit(main())
