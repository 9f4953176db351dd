#!/usr/bin/env python3
"""Ingest: nircd CPU per load report over mutual TLS, against Mosquitto
carrying the same reports from the same generator in the same run
(issue 15, SPEC 11).

One C generator (tests/tools/nirc-swarm) runs N simulated agents, each with
its own certificate, each sending a LoadReport every --interval:
  1. nirc:   `nirc-swarm run --load-interval` to nircd (TLS 1.3, mutual auth);
  2. mqtt:   `nirc-swarm mqtt` publishes the same Envelope bytes to Debian's
             Mosquitto, nirc/<site>/load, QoS 0, TLS 1.3 with the same site
             certificates (require_certificate), no subscriber: the broker alone;
  3. mqtt+consumer: the same, with one C consumer (`nirc-swarm mqtt-sub`)
             subscribed to nirc/+/load, decoding every report as nircd does.
Each phase waits until every agent is connected, lets it settle, then
measures over --window seconds: CPU of the server process(es) from
/proc/PID/task/*/schedstat and reports carried, from the generator's
progress lines. CPU time per report is the robust figure: this machine
has 2 cores, and the generator (which competes with the server for them)
is often the limit of the rate.

  bench/ingest.py [--agents 1000] [--interval 10ms] [--window 10] [--perf FILE]
                  [--phases nirc,mqtt,consumer]

Targets (issue 15): <= 8 us of nircd CPU per report at >= 40,000 reports/s,
and >= 1.5x the reports per CPU-second of Mosquitto alone.
"""
import argparse
import json
import os
import pwd
import resource
import shutil
import signal
import subprocess
import threading
import time

import benchlib as B

T = B.T
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Stream:
    """JSON lines a Proc writes to its log, each stamped with the
    monotonic time it was seen (the log is polled every 20 ms)."""

    def __init__(self, proc):
        self.proc = proc
        self.events = []  # (monotonic, object)
        self.stop = False
        self.t = threading.Thread(target=self._follow, daemon=True)
        self.t.start()

    def _follow(self):
        with open(self.proc.log_path, errors="replace") as f:
            buf = ""
            while not self.stop:
                chunk = f.read()
                if not chunk:
                    time.sleep(0.02)
                    continue
                buf += chunk
                *lines, buf = buf.split("\n")
                now = time.monotonic()
                for line in lines:
                    if line.startswith("{"):
                        try:
                            self.events.append((now, json.loads(line)))
                        except ValueError:
                            pass

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, e in list(self.events):
                if pred(e):
                    return e
            if not self.proc.alive():
                time.sleep(0.1)  # let the follower read what it wrote last
                for _, e in list(self.events):
                    if pred(e):
                        return e
                raise SystemExit(f"ingest: {self.proc.name} ended waiting for {what}:\n"
                                 + self.proc.tail())
            time.sleep(0.05)
        raise SystemExit(f"ingest: timed out waiting for {what}:\n" + self.proc.tail())

    def count_at(self, t, key):
        """`key` of the progress lines, interpolated at monotonic time t;
        waits (up to 60 s, for a loaded machine) for a line after t."""
        def progress():
            return [(ts, e[key]) for ts, e in list(self.events)
                    if e.get("event") == "progress" and key in e]
        deadline = time.monotonic() + 60
        while not [p for p in progress() if p[0] > t] and time.monotonic() < deadline \
                and self.proc.alive():
            time.sleep(0.05)
        pts = progress()
        before = [p for p in pts if p[0] <= t]
        after = [p for p in pts if p[0] > t]
        if not before or not after:
            raise SystemExit(f"ingest: no {key} figures around the window in "
                             f"{self.proc.name}'s output")
        (t0, v0), (t1, v1) = before[-1], after[0]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def close(self):
        self.stop = True
        self.t.join(1)


def measure(servers, stream, key, window, progress_s, perf=None):
    """CPU seconds of each server pid and `key` counted over the window."""
    prof = None
    if perf:
        prof = subprocess.Popen(["perf", "record", "-g", "-o", perf, "-p",
                                 str(servers["nircd"]), "--", "sleep", str(window)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c0 = {n: B.cpu_seconds(p) for n, p in servers.items()}
    t0 = time.monotonic()
    time.sleep(window)  # the measurement window
    c1 = {n: B.cpu_seconds(p) for n, p in servers.items()}
    t1 = time.monotonic()
    if prof:
        prof.wait()
    n = stream.count_at(t1, key) - stream.count_at(t0, key)
    return {n_: c1[n_] - c0[n_] for n_ in servers}, n, t1 - t0


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def broker_pki(dirpath):
    """A server certificate for the broker from the test CA (the agents
    check it against that CA and its name against 127.0.0.1)."""
    key, csr, crt = (os.path.join(dirpath, f"broker.{x}") for x in ("key", "csr", "crt"))
    ext = os.path.join(dirpath, "broker.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                "keyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n")
    q = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj",
                    "/CN=localhost", "-out", csr], **q)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", f"{T.PKI}/ca.crt", "-CAkey",
                    f"{T.PKI}/ca.key", "-CAcreateserial", "-days", "7", "-extfile", ext,
                    "-out", crt], **q)
    return crt, key


def start_broker(dirpath, port):
    crt, key = broker_pki(dirpath)
    conf = os.path.join(dirpath, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"""# bench/ingest.py: a private broker, mutual TLS 1.3 with the test CA.
user {pwd.getpwuid(os.getuid()).pw_name}
per_listener_settings false
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
max_queued_messages 100000
listener {port} 127.0.0.1
cafile {T.PKI}/ca.crt
certfile {crt}
keyfile {key}
require_certificate true
use_identity_as_username true
tls_version tlsv1.3
""")
    p = T.Proc("mosquitto", [MOSQUITTO, "-c", conf], dirpath)
    T.wait_until(lambda: _port_open(port) or not p.alive(), 10, "mosquitto listening")
    if not p.alive():
        raise SystemExit("ingest: mosquitto did not start:\n" + p.tail())
    return p


def _port_open(port):
    import socket
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def figures(cpu, n, secs, extra=None):
    return {"reports": int(n), "reports_per_s": round(n / secs), "cpu_s": round(cpu, 3),
            "core_fraction": round(cpu / secs, 3),
            "cpu_us_per_report": round(cpu * 1e6 / n, 2) if n else None,
            "reports_per_cpu_s": round(n / cpu) if cpu else None, **(extra or {})}


def phase_nirc(a, d, progress):
    env = T.Env("bench-ingest")
    T.run([T.binary("nircd"), "-c", env.nircd_conf, "import-sites",
           os.path.join(d, "scenario.json")], check=True, timeout=600)
    nircd = env.start_controller(timeout=120)
    sw = T.Proc("swarm-nirc", [T.binary("nirc-swarm"), "run", "--controllers", env.addr, "--ca",
                               f"{T.PKI}/ca.crt", "--dir", d, "--count", str(a.agents),
                               "--load-interval", a.interval, "--duration", "0", "--progress",
                               "--progress-interval", progress], env.dir)
    st = Stream(sw)
    try:
        st.wait(lambda e: e.get("event") == "all_connected", 180, "all agents on nircd")
        time.sleep(a.settle)  # a measurement window, not synchronisation: rates settle
        cpu, n, secs = measure({"nircd": nircd.p.pid, "swarm": sw.p.pid}, st, "reports_sent",
                               a.window, a.progress_s, a.perf)
        sw.signal(signal.SIGTERM)
        summ = st.wait(lambda e: e.get("event") == "summary", 60, "the swarm's summary")
    finally:
        st.close()
        sw.stop()
        env.close()
    if not n > 0 or summ.get("protocol_errors"):
        raise SystemExit(f"ingest: nirc phase carried {n} reports, summary {summ}")
    return figures(cpu["nircd"], n, secs, {
        "generator_core_fraction": round(cpu["swarm"] / secs, 3),
        "drops": summ["drops"]["total"], "protocol_errors": summ["protocol_errors"]})


def phase_mqtt(a, d, progress, consumer):
    name = "bench-ingest-mqtt" + ("-sub" if consumer else "")
    run_dir = os.path.join(os.environ["NIRC_TEST_RUN"], name)
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    port = T.free_port()
    broker = start_broker(run_dir, port)
    procs = [broker]
    servers = {"broker": broker.p.pid}
    sub = sst = None
    try:
        if consumer:
            cert = os.path.join(d, sorted(f for f in os.listdir(d) if f.endswith(".crt"))[-1])
            sub = T.Proc("consumer", [T.binary("nirc-swarm"), "mqtt-sub", "--broker",
                                      f"127.0.0.1:{port}", "--ca", f"{T.PKI}/ca.crt", "--cert",
                                      cert, "--key", cert[:-4] + ".key", "--progress-interval",
                                      progress], run_dir)
            procs.append(sub)
            sst = Stream(sub)
            sst.wait(lambda e: e.get("event") == "subscribed", 30, "the consumer subscribed")
            servers["consumer"] = sub.p.pid
        sw = T.Proc("swarm-mqtt", [T.binary("nirc-swarm"), "mqtt", "--broker",
                                   f"127.0.0.1:{port}", "--ca", f"{T.PKI}/ca.crt", "--dir", d,
                                   "--count", str(a.agents), "--load-interval", a.interval,
                                   "--duration", "0", "--progress", "--progress-interval",
                                   progress], run_dir)
        procs.append(sw)
        st = Stream(sw)
        try:
            st.wait(lambda e: e.get("event") == "all_connected", 180, "all agents on mosquitto")
            time.sleep(a.settle)  # a measurement window, not synchronisation
            t0 = time.monotonic()
            cpu, n, secs = measure({**servers, "swarm": sw.p.pid}, st, "reports_sent", a.window,
                                   a.progress_s)
            got = None
            if sst:
                got = sst.count_at(t0 + secs, "decoded") - sst.count_at(t0, "decoded")
            sw.signal(signal.SIGTERM)
            summ = st.wait(lambda e: e.get("event") == "summary", 60, "the swarm's summary")
        finally:
            st.close()
            if sst:
                sst.close()
    finally:
        for p in procs:
            p.stop()
    if not n > 0 or summ.get("publish_errors") or summ.get("drops"):
        raise SystemExit(f"ingest: mqtt phase carried {n} reports, summary {summ}")
    extra = {"generator_core_fraction": round(cpu["swarm"] / secs, 3)}
    if not consumer:
        return figures(cpu["broker"], n, secs, extra)
    if not got or not got > 0:
        raise SystemExit("ingest: the consumer decoded no report")
    both = cpu["broker"] + cpu["consumer"]
    # Per report the consumer received: QoS 0 lets a slow consumer's share
    # be dropped by the broker, and a dropped report is not delivered.
    return figures(both, got, secs, {
        **extra, "published": int(n), "delivered_share": round(got / n, 4),
        "broker_cpu_s": round(cpu["broker"], 3), "consumer_cpu_s": round(cpu["consumer"], 3)})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--interval", default="10ms", help="report period of each agent")
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--phases", default="nirc,mqtt,consumer",
                    help="which of nirc, mqtt (the broker alone), consumer (broker + consumer)")
    ap.add_argument("--perf", help="perf record -g nircd during its window into this file")
    a = ap.parse_args()
    phases = set(a.phases.split(","))
    if not phases or phases - {"nirc", "mqtt", "consumer"}:
        ap.error("--phases takes nirc, mqtt and consumer, comma-separated")
    a.progress_s = 0.2
    progress = "200ms"
    if not os.path.exists(MOSQUITTO):
        raise SystemExit("ingest: mosquitto is not installed (deploy/install-deps.sh)")
    raise_nofile()
    load_before = B.loadavg()
    pg = B.Postgres()
    try:
        T.ensure_pki()
        d = B.swarm_pki(max(a.agents, 2), "ingest", timeout=600)
        rows = {}
        if "nirc" in phases:
            rows["nirc"] = phase_nirc(a, d, progress)
        if "mqtt" in phases:
            rows["mosquitto"] = phase_mqtt(a, d, progress, consumer=False)
        if "consumer" in phases:
            rows["mosquitto_plus_consumer"] = phase_mqtt(a, d, progress, consumer=True)
    finally:
        T.Proc.kill_all()
        pg.stop()
    ratio = {}
    for k in ("mosquitto", "mosquitto_plus_consumer"):
        if "nirc" in rows and k in rows:
            ratio["nirc_vs_" + k] = round(rows["nirc"]["reports_per_cpu_s"] /
                                          rows[k]["reports_per_cpu_s"], 2)
    B.emit("ingest", rows, loadavg_before=load_before,
           setup={"agents": a.agents, "interval": a.interval, "window_s": a.window,
                  "transport": "TLS 1.3, mutual certificates, one per agent",
                  "mqtt": "Mosquitto (Debian), QoS 0, libmosquitto clients"},
           ratio_reports_per_cpu_s=ratio,
           target={"nirc_cpu_us_per_report_max": 8, "at_reports_per_s_min": 40000,
                   "nirc_vs_mosquitto_min": 1.5},
           note="CPU time per report is the robust figure: the generator shares the 2 cores "
                "with the server it loads")


if __name__ == "__main__":
    main()
