"""Shared machinery for NIRC's integration tests.

Everything is real: a private PostgreSQL (started by the CTest fixture),
certificates from deploy/pki.sh, the nircd / nirc-agent / nircctl binaries
of this build, TCP on loopback. Nothing is mocked.

Synchronisation is by events where the programs offer one (nircd's
sd_notify READY=1, received on a NOTIFY_SOCKET this harness owns), and
otherwise by polling an observable state with a deadline (wait_until);
never by a bare sleep.
"""
import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import traceback

SRC = os.environ["NIRC_SOURCE_DIR"]
BUILD = os.environ["NIRC_BUILD_DIR"]
RUN = os.environ.get("NIRC_TEST_RUN", os.path.join(BUILD, "test-run"))
PG_PORT = os.environ.get("NIRC_PG_PORT", "15432")
SCENARIO = os.path.join(SRC, "scenario", "provinces.json")
PKI = os.path.join(RUN, "pki")
OTHER_PKI = os.path.join(RUN, "pki-other")

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_PARTIAL = 1, 2, 3, 4


def binary(name):
    return os.path.join(BUILD, name)


def conninfo(db, port=None):
    return f"host=127.0.0.1 port={port or PG_PORT} user=nirc dbname={db}"


def scenario_slugs():
    with open(SCENARIO) as f:
        return [s["slug"] for s in json.load(f)["sites"]]


def write_sites_scenario(path, n, prefix="gen"):
    """Writes a scenario of n generated sites (PREFIX-00001..; the first two
    are hubs) with the reference network's other settings, for
    `nircd import-sites`: the scale tests and benchmarks."""
    with open(SCENARIO) as f:
        base = json.load(f)
    sites = []
    for i in range(1, n + 1):
        u, v = (i * 0.618034) % 1.0, (i * 0.414214) % 1.0
        sites.append({"slug": f"{prefix}-{i:05d}", "name_en": f"Generated {i}",
                      "name_zh": f"生成 {i}", "city_en": f"City {i}", "lat": round(22 + 22 * u, 4),
                      "lon": round(90 + 34 * v, 4), "day_calls": 2000, "night_calls": 60,
                      "aht_s": 240, "agents_day": 60 if i <= 2 else 25,
                      "agents_night": 40 if i <= 2 else 6, "is_hub": i <= 2,
                      "night_consolidated": False})
    base.update({"name": f"{n} generated sites", "primary_hub": f"{prefix}-00001",
                 "backup_hub": f"{prefix}-00002", "sites": sites})
    with open(path, "w") as f:
        json.dump(base, f)


def free_port():
    """A free port for something a test listens on: below the ephemeral range
    (listen_port), never one the kernel hands to outgoing connections, so a
    client of another test running at the same time cannot hold it."""
    return listen_port()


_warned = False


def ephemeral_warning(lo, hi):
    """Says once (in the test's output, which CTest shows on a failure)
    when the range overlaps the kernel's ephemeral ports: any outgoing
    connection on the host may take a port picked there before the test's
    process listens on it ("cannot listen on ...: address already in use",
    seen with NIRC_TEST_PORTS=46000-47499)."""
    global _warned
    if _warned:
        return
    _warned = True
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            elo, ehi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return
    if lo <= ehi and elo <= hi:
        print(f"note: NIRC_TEST_PORTS {lo}-{hi} overlaps the kernel's ephemeral ports "
              f"{elo}-{ehi}: a port picked there can be taken by any outgoing connection before "
              f"the test listens on it; use a range below {elo}", flush=True)


# A port handed out is not handed out again to any test of this run for
# this long (a test's CTest TIMEOUT): a test that kills its controller and
# starts it again on the same address (route-unknown, exec-apply, ...)
# leaves the port free meanwhile, and a test beside it could take it, so
# the agents would reach the other test's controller (same CA, same sites).
PORT_HELD_S = 300


def listen_port():
    """A free port below the ephemeral range (32768-60999): agents retrying a
    dead controller take ephemeral ports for their own side, and one of
    them could hold a controller's port when it starts again."""
    # NIRC_TEST_PORTS=LO-HI keeps a run inside a range of its own (several
    # builds testing on one host).
    lo, hi = (int(x) for x in os.environ.get("NIRC_TEST_PORTS", "20000-31999").split("-"))
    ephemeral_warning(lo, hi)
    os.makedirs(RUN, exist_ok=True)
    with open(os.path.join(RUN, "ports.given"), "a+") as given:
        fcntl.flock(given, fcntl.LOCK_EX)  # the tests running beside this one
        given.seek(0)
        now = time.time()
        recent = [l.split() for l in given if len(l.split()) == 2]
        recent = {int(p): float(t) for p, t in recent if now - float(t) < PORT_HELD_S}
        for _ in range(200):
            port = random.randrange(lo, hi + 1)
            if port in recent:
                continue
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            finally:
                s.close()
            recent[port] = now
            given.seek(0)
            given.truncate()
            given.writelines(f"{p} {t:.0f}\n" for p, t in recent.items())
            return port
    raise AssertionError(f"no free port in {lo}-{hi}")


def wait_until(pred, timeout, what):
    """Polls pred() until it returns a truthy value; fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = pred()
        except Exception as e:  # a transient failure is a 'not yet'
            last = e
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(0.1)


def tls_client_context(identity=None, pki=None):
    """A TLS 1.3 client context of Python's ssl (an implementation
    independent of common/link.c) that trusts the test CA of pki (PKI by
    default) and, given an identity such as "site-hubei", presents that
    certificate. The controller's name is not checked: tests dial it by
    address."""
    pki = pki or PKI
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(f"{pki}/ca.crt")
    if identity:
        ctx.load_cert_chain(f"{pki}/{identity}.crt", f"{pki}/{identity}.key")
    return ctx


def ensure_pki():
    """One PKI per test run: the 31 scenario sites, a site the controller
    does not know (atlantis), operators of each role, and an unrelated CA."""
    os.makedirs(RUN, exist_ok=True)
    with open(os.path.join(RUN, "pki.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # crl.pem: a PKI made before pki.sh wrote one gets it on this run.
        if not all(os.path.exists(os.path.join(PKI, f))
                   for f in ("operator-victor.crt", "crl.pem")):
            sites = ",".join(scenario_slugs() + ["atlantis"])
            subprocess.run([os.path.join(SRC, "deploy", "pki.sh"), PKI, "--sites", sites,
                            "--operator", "alice:admin", "--operator", "olga:operator",
                            "--operator", "victor:viewer"],
                           check=True, stdout=subprocess.DEVNULL)
        if not os.path.exists(os.path.join(OTHER_PKI, "site-hubei.crt")):
            subprocess.run([os.path.join(SRC, "deploy", "pki.sh"), OTHER_PKI, "--ca-name",
                            "Some other CA", "--sites", "hubei", "--operator", "mallory:admin"],
                           check=True, stdout=subprocess.DEVNULL)


def psql(db, sql, port=None):
    out = subprocess.run(["psql", "-XAtq", "-F", "\t", conninfo(db, port), "-c", sql], check=True,
                         capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def fresh_database(name, port=None):
    """Creates an empty database, migrates it and imports the scenario."""
    psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", port)
    psql("postgres", f"CREATE DATABASE {name}", port)


class Proc:
    """A child process with its output in a log file, killed at exit."""
    all = []

    def __init__(self, name, argv, logdir, env=None, pass_fds=(), kill_group=False):
        """kill_group: kill() ends the process's whole group (its own
        session), for a program that forks workers (Kamailio): killing only
        the main process left them running, holding its sockets."""
        self.name = name
        self.kill_group = kill_group
        self.log_path = os.path.join(logdir, name + ".log")
        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  env=env or os.environ.copy(), start_new_session=True,
                                  pass_fds=pass_fds)
        Proc.all.append(self)

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, timeout=10):
        if self.alive():
            self.p.send_signal(signal.SIGCONT)
            self.p.terminate()
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode

    def kill(self):
        if self.kill_group:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)  # the group outlives its leader
            except ProcessLookupError:
                pass
        if self.alive():
            self.p.kill()
            self.p.wait()

    def tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    @classmethod
    def kill_all(cls):
        for p in cls.all:
            try:
                p.kill()
            except Exception:
                pass


def swarm_events(log_path, kind):
    """nirc-swarm's JSON lines of one kind, from its log (stderr lines, the
    log records, do not start with '{')."""
    out = []
    with open(log_path, errors="replace") as f:
        for line in f:
            if line.startswith("{"):
                e = json.loads(line)
                if e.get("event") == kind:
                    out.append(e)
    return out


class Env:
    """One test's world: a run directory, a database, a controller config."""

    def __init__(self, name, clock_speed=1, clock_start="", extra_nircd="", pg_port=None):
        """pg_port: a PostgreSQL of the test's own (one it may stop), instead
        of the shared fixture."""
        ensure_pki()
        self.name = name
        self.dir = os.path.join(RUN, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.db = "t_" + name.replace("-", "_")
        self.pg_port = pg_port
        fresh_database(self.db, pg_port)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.clock_speed = clock_speed
        self.clock_start = clock_start
        # Every process of this test shares one business clock.
        self.anchor = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.extra_nircd = extra_nircd
        self.nircd_conf = self.controller_conf("nircd-1", self.addr, "nircd.conf")
        run([binary("nircd"), "-c", self.nircd_conf, "migrate"], check=True)
        run([binary("nircd"), "-c", self.nircd_conf, "import-sites", SCENARIO], check=True)
        self.agents = {}
        self.controller = None
        self.controller_status = ""

    def controller_conf(self, node, addr, filename):
        """A nircd config on this test's database (several make an HA set)."""
        return self.write(filename, f"""
[controller]
node = {node}
listen = {addr}
[tls]
ca = {PKI}/ca.crt
cert = {PKI}/controller-nircd.crt
key = {PKI}/controller-nircd.key
[database]
conninfo = {conninfo(self.db, self.pg_port)}
schema_dir = {SRC}/schema
journal = {self.dir}/{node}.journal
[routing]
# The scenario stands in for load history when sizing moves.
forecast = {SCENARIO}
{self.extra_nircd}
[clock]
speed = {self.clock_speed}
start = {self.clock_start}
anchor = {self.anchor}
""")

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text.lstrip())
        return path

    def start_controller(self, timeout=20, conf=None, name="nircd", pass_fds=()):
        """Starts nircd and returns once it has told systemd READY=1 (as
        leader or as standby: self.controller_status holds its STATUS=).
        pass_fds: descriptors it inherits (held open, so its own sockets get
        higher numbers)."""
        sock_path = os.path.join(self.dir, f"notify-{name}.sock")
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(timeout)
        env = os.environ.copy()
        env["NOTIFY_SOCKET"] = sock_path
        proc = Proc(name, [binary("nircd"), "-c", conf or self.nircd_conf], self.dir, env,
                    pass_fds=pass_fds)
        if name == "nircd":
            self.controller = proc
        try:
            while True:
                msg = sock.recv(4096).decode()
                if "READY=1" in msg:
                    status = [l for l in msg.splitlines() if l.startswith("STATUS=")]
                    self.controller_status = status[0][7:] if status else ""
                    break
        except socket.timeout:
            raise AssertionError(f"{name} did not become ready:\n" + proc.tail())
        finally:
            sock.close()
        return proc

    def start_leader_and_standby(self):
        """nircd-1 at self.addr, checked to lead, then nircd-2 at a port of
        its own, checked to stand by. Returns (nircd-1, nircd-2, nircd-2's
        address)."""
        addr_b = f"127.0.0.1:{listen_port()}"
        conf_b = self.controller_conf("nircd-2", addr_b, "nircd-2.conf")
        a = self.start_controller(name="nircd-1")
        assert self.controller_status.startswith("leader"), self.controller_status
        b = self.start_controller(conf=conf_b, name="nircd-2")
        assert self.controller_status.startswith("standby"), self.controller_status
        return a, b, addr_b

    def agent_conf(self, slug, cert_dir=None, controllers=None, extra=""):
        cert_dir = cert_dir or PKI
        ctl = controllers or self.addr
        return self.write(f"agent-{slug}.conf", f"""
[agent]
controllers = {ctl}
report_log = {self.dir}/reports-{slug}.jsonl
state_file = {self.dir}/state-{slug}.json
[tls]
ca = {PKI}/ca.crt
cert = {cert_dir}/site-{slug}.crt
key = {cert_dir}/site-{slug}.key
[timing]
backoff_min = 100ms
backoff_max = 2s
[sim]
scenario = {SCENARIO}
[clock]
speed = {self.clock_speed}
start = {self.clock_start}
anchor = {self.anchor}
{extra}
""")

    def start_agent(self, slug, **kw):
        conf = self.agent_conf(slug, **kw)
        a = Proc(f"agent-{slug}", [binary("nirc-agent"), "-c", conf], self.dir)
        self.agents[slug] = a
        return a

    def start_exec_agent(self, slug, collect_script):
        """An agent with the exec adapter (docs/ADAPTERS.md): its collect
        command is collect_script (a whole /bin/sh script), and it applies
        every route (apply reads the route and succeeds)."""
        path = os.path.join(self.dir, f"collect-{slug}.sh")
        with open(path, "w") as f:
            f.write(collect_script)
        os.chmod(path, 0o755)
        apply = os.path.join(self.dir, "apply.sh")
        with open(apply, "w") as f:
            f.write("#!/bin/sh\ncat > /dev/null\nexit 0\n")
        os.chmod(apply, 0o755)
        conf_path = self.agent_conf(slug)
        text = open(conf_path).read().replace("[agent]", "[agent]\nadapter = exec", 1)
        text += f"\n[exec]\napply_cmd = {apply}\ncollect_cmd = {path}\ntimeout = 2s\n"
        with open(conf_path, "w") as f:
            f.write(text)
        a = Proc(f"agent-{slug}", [binary("nirc-agent"), "-c", conf_path], self.dir)
        self.agents[slug] = a
        return a

    def reports(self, slug):
        path = os.path.join(self.dir, f"reports-{slug}.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def ctl(self, *args, cert="operator-alice", controllers=None, timeout=30):
        argv = [binary("nircctl")]
        for c in (controllers or [self.addr]):
            argv += ["--controller", c]
        argv += ["--ca", f"{PKI}/ca.crt", "--cert", f"{PKI}/{cert}.crt",
                 "--key", f"{PKI}/{cert}.key", "--timeout", "3s"]
        argv += list(args)
        return run(argv, timeout=timeout)

    def status(self):
        r = self.ctl("--json", "status")
        if r.returncode != 0:
            raise AssertionError(f"nircctl status failed ({r.returncode}): {r.stderr}")
        return {s["slug"]: s for s in json.loads(r.stdout)["sites"]}

    def sql(self, query):
        return psql(self.db, query, self.pg_port)

    def close(self):
        for a in self.agents.values():
            a.stop()
        if self.controller:
            self.controller.stop()


def run(argv, check=False, timeout=60):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{argv} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def main(tests):
    """Runs the given test functions in order and prints a summary line
    that CTest's log and a human both read: 'N passed, N failed'."""
    passed = failed = 0
    try:
        for t in tests:
            name = t.__name__
            start = time.monotonic()
            try:
                t()
                passed += 1
                print(f"PASS {name} ({time.monotonic() - start:.1f}s)", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {name}", flush=True)
                traceback.print_exc()
    finally:
        Proc.kill_all()
    # Under ASan/UBSan a child's report lands in its log, not in our
    # exceptions: any such report fails the run.
    for p in Proc.all:
        text = p.tail(100000)
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in text:
                failed += 1
                print(f"FAIL sanitizer report in {p.log_path}:\n{p.tail(60)}", flush=True)
                break
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


# ---- a private PostgreSQL a test may stop or freeze, and /metrics ----

PG_PRIVATE = os.path.join(SRC, "deploy", "pg-private.sh")


def private_pg(*args):
    """deploy/pg-private.sh ARGS (start DIR PORT, stop DIR), checked."""
    r = subprocess.run([PG_PRIVATE, *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "NIRC_PG_FAST": "1"})
    assert r.returncode == 0, f"pg-private.sh {args}: {r.stdout}{r.stderr}"


def metrics(http):
    """Every sample of a controller's /metrics: {"name{labels}": value}."""
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def metric(http, name):
    """One unlabelled figure of a controller's /metrics, or None."""
    text = urllib.request.urlopen(f"http://{http}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def status_json(http):
    """A controller's /status.json (its [http] listen), parsed."""
    with urllib.request.urlopen(f"http://{http}/status.json", timeout=5) as r:
        return json.loads(r.read().decode())


# ---- the status page as a browser shows it ----

def chromium():
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return name
    raise AssertionError("chromium is not installed: deploy/install-deps.sh installs it")


def chromium_dom(url, screenshot=None, window="1280,1700"):
    """The DOM of `url` as headless Chromium renders it; with `screenshot`,
    also a PNG of the page at that path (the same load of the page)."""
    profile = tempfile.mkdtemp(prefix="nirc-chromium-")
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}"]
    # One run does both: a Chromium start costs seconds on loaded cores,
    # and integration.standby's checks must fit in a lease.
    shot = [f"--screenshot={screenshot}", f"--window-size={window}"] if screenshot else []
    try:
        dom = subprocess.run(base + shot + ["--dump-dom", url], capture_output=True, text=True,
                             timeout=60).stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return dom
