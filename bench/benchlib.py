"""Shared machinery for NIRC's benchmarks (bench/).

A benchmark is a program that prints one JSON object on stdout: its
command line, the machine (cores, load average before and after), and its
figures, each beside the alternative it is compared with in the same run.
Figures are CPU time and ratios first: this machine is shared and noisy,
so a wall-clock figure is always printed with the load average beside it.

Benchmarks reuse the integration tests' harness (tests/integration/
nirclib.py: real binaries, real TLS, a real PostgreSQL) with a private
PostgreSQL of their own, started here from Debian's binaries.
"""
import json
import os
import shutil
import subprocess
import sys
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.setdefault("NIRC_BUILD_DIR", os.path.join(SRC, "build"))
os.environ.setdefault("NIRC_SOURCE_DIR", SRC)
os.environ.setdefault("NIRC_TEST_RUN", os.path.join(BUILD, "bench-run"))
# Its own PostgreSQL port: a benchmark may run beside the test suite.
os.environ.setdefault("NIRC_PG_PORT", "15512")
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
import nirclib as T  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def cpu_seconds(pid):
    """CPU seconds a process has run so far, all its threads: the sum of
    /proc/PID/task/*/schedstat (nanoseconds; /proc/PID/stat counts in
    10 ms ticks, too coarse for a short window)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # a thread that just ended
            pass
    return total / 1e9


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class Postgres:
    """A private, durable PostgreSQL (fsync on: benchmarks measure what a
    deployment gets) in NIRC_TEST_RUN/pg, stopped at exit."""

    def __init__(self, durable=True):
        self.dir = os.path.join(os.environ["NIRC_TEST_RUN"], "pg")
        # The test suite's smoke runs use the suite's PostgreSQL (CTest's
        # pg fixture) instead of starting one.
        self.shared = os.environ.get("NIRC_BENCH_SHARED_PG") == "1"
        if self.shared:
            return
        os.makedirs(os.environ["NIRC_TEST_RUN"], exist_ok=True)
        env = dict(os.environ)
        if not durable:
            env["NIRC_PG_FAST"] = "1"
        subprocess.run([os.path.join(SRC, "deploy", "pg-private.sh"), "start", self.dir,
                        os.environ["NIRC_PG_PORT"]], check=True, env=env,
                       stdout=subprocess.DEVNULL)

    def stop(self):
        if self.shared:
            return
        subprocess.run([os.path.join(SRC, "deploy", "pg-private.sh"), "stop", self.dir],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def emit(name, figures, **extra):
    """Prints the benchmark's result object (one JSON line)."""
    out = {
        "bench": name,
        "command": " ".join(sys.argv),
        "nproc": os.cpu_count(),
        "loadavg": loadavg(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
        "figures": figures,
    }
    print(json.dumps(out), flush=True)
    return out


def swarm_pki(n, prefix, timeout=600):
    """N site certificates for nirc-swarm and their scenario, made once and
    kept between runs in NIRC_TEST_RUN/<prefix>-pki-<n>."""
    d = os.path.join(os.environ["NIRC_TEST_RUN"], f"{prefix}-pki-{n}")
    if not os.path.exists(os.path.join(d, "scenario.json")):
        shutil.rmtree(d, ignore_errors=True)
        T.run([T.binary("nirc-swarm"), "gen-pki", "--ca-cert", f"{T.PKI}/ca.crt", "--ca-key",
               f"{T.PKI}/ca.key", "--count", str(n), "--prefix", prefix, "--out", d],
              check=True, timeout=timeout)
    return d
