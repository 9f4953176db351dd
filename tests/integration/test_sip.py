"""SIP acceptance: NIRC moves real calls through a real Kamailio.

One Kamailio (deploy/kamailio/kamailio.cfg) is Hubei's edge proxy; the
Hubei agent drives it with adapter = kamailio (dispatcher list file plus
JSON-RPC dispatcher.reload over the UNIX datagram socket). Two sipp UAS
stand for the call centres, Hubei (Wuhan) and Shaanxi (Xi'an), each on its
own loopback port; each counts the calls it answers (sipp -trace_stat). A
sipp UAC places calls to the proxy. The controller, the agents and
PostgreSQL are the real ones, as in the other integration tests; Shaanxi's
agent runs the simulator.

Acceptance:
- before any cutover every call is answered in Hubei;
- after `nircctl cutover hubei --to shaanxi --force` new calls are answered
  in Xi'an, while 10-second calls set up before the cutover finish without
  an error (their ACK and BYE follow the record-routed path);
- `restore` sends calls home again;
- `--share 300` splits 1,000 calls 700/300 within 3 percentage points;
- SIGKILL of the controller changes nothing: calls keep going to Xi'an;
- the Hubei agent restarted while the controller is down puts its saved
  route back into Kamailio (even over a list reset to home) before anything
  else, and calls go to Xi'an;
- a Kamailio that does not answer is reported as unreadable, not as zeros.

Everything is on 127.0.0.1 and bounded in time; every process started here
is stopped at the end."""
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import nirclib as T

SIPDIR = os.path.join(T.SRC, "tests", "sip")
KAMAILIO_CFG = os.path.join(T.SRC, "deploy", "kamailio", "kamailio.cfg")
REASON = "Wuhan lockdown"
env = None
w = {}  # the SIP world: ports, paths, processes


# ---- helpers ----

def which(name):
    for d in ("", "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        path = shutil.which(name) if not d else os.path.join(d, name)
        if path and os.access(path, os.X_OK):
            return path
    raise AssertionError(f"{name} is not installed (deploy/install-deps.sh installs it)")


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rpc(method, params=None, timeout=2.0):
    """One JSON-RPC call to Kamailio's datagram socket, as the agent does."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.bind(f"\0nirc-test-sip/{os.getpid()}/{time.monotonic_ns()}")
        s.settimeout(timeout)
        req = {"jsonrpc": "2.0", "method": method, "id": 1}
        if params is not None:
            req["params"] = params
        s.sendto(json.dumps(req).encode(), w["rpc"])
        reply = json.loads(s.recv(65536))
    finally:
        s.close()
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def active_dialogs():
    return rpc("dlg.stats_active")["all"]


def dispatcher_list():
    """{site: weight} from the list file Kamailio reads."""
    out = {}
    with open(w["ds_list"]) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            setid, uri, _flags, _prio, attrs = line.split()
            a = dict(kv.split("=", 1) for kv in attrs.split(";"))
            assert setid == "1" and uri == w["uri"][a["duid"]], line
            out[a["duid"]] = int(a["weight"])
    return out


def sipp_stats(path):
    """The last complete line of a sipp -trace_stat file, as a dict."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    head = rows[0]
    for r in reversed(rows[1:]):
        if len(r) >= len(head) - 1 and r[0] != head[0]:
            return dict(zip(head, r))
    raise RuntimeError(f"{path}: no statistics yet")


def answered():
    """Calls each call centre has received so far, and its failed calls."""
    out = {}
    for site in ("hubei", "shaanxi"):
        st = sipp_stats(w["uas_stats"][site])
        out[site] = (int(st["IncomingCall(C)"]), int(st["FailedCall(C)"]))
    return out


def start_uac(name, calls, rate, duration_ms):
    """A sipp caller placing `calls` calls to the proxy; returns (proc, stats file)."""
    stats = os.path.join(env.dir, f"uac-{name}.csv")
    argv = [w["sipp"], f"127.0.0.1:{w['kport']}", "-sf", os.path.join(SIPDIR, "uac.xml"),
            "-i", "127.0.0.1", "-p", str(free_udp_port()), "-nostdin",
            "-m", str(calls), "-r", str(rate), "-d", str(duration_ms),
            "-trace_stat", "-stf", stats, "-fd", "1",
            "-timeout", "60s", "-timeout_error"]
    return T.Proc(f"uac-{name}", argv, env.dir), stats


def finish_uac(proc, stats, calls, timeout):
    """Waits for a caller to finish; asserts every call succeeded."""
    try:
        rc = proc.p.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{proc.name}: not done after {timeout}s:\n{proc.tail(40)}")
    st = sipp_stats(stats)
    ok, failed = int(st["SuccessfulCall(C)"]), int(st["FailedCall(C)"])
    assert rc == 0 and ok == calls and failed == 0, (
        f"{proc.name}: exit {rc}, {ok} successful and {failed} failed of {calls} calls:\n"
        f"{proc.tail(40)}\nkamailio:\n{w['kamailio'].tail(20)}")
    return ok


def place_calls(name, calls, rate=200, duration_ms=0):
    """Places short calls, waits until both centres have counted them all,
    and returns how many each one answered."""
    before = answered()
    proc, stats = start_uac(name, calls, rate, duration_ms)
    finish_uac(proc, stats, calls, timeout=30)

    def counted():
        now = answered()
        got = {s: now[s][0] - before[s][0] for s in now}
        return got if sum(got.values()) >= calls else None

    got = T.wait_until(counted, 10, f"the call centres to count the {calls} '{name}' calls")
    assert sum(got.values()) == calls, f"{name}: {got} answered for {calls} calls placed"
    for s, (_, failed) in answered().items():
        assert failed == 0, f"the {s} call centre failed {failed} calls"
    print(f"  {name}: {calls} calls -> {got}", flush=True)
    return got


def ctl_json(*args):
    r = env.ctl("--json", *args)
    try:
        return r, json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"nircctl {' '.join(args)}: not JSON (exit {r.returncode}):\n"
                             f"{r.stdout}\n{r.stderr}")


def hubei_agent_conf():
    """Hubei's agent drives the proxy. nirclib's agent_conf() writes the
    [agent] section itself (adapter = sim by default), so the adapter is
    set in a second [agent] block, which the config loader merges."""
    targets = ", ".join(f"{s}={u}" for s, u in w["uri"].items())
    return f"""
[agent]
adapter = kamailio
[kamailio]
rpc_socket = {w['rpc']}
dispatcher_list = {w['ds_list']}
set_id = 1
targets = {targets}
timeout = 2s
"""


def start_hubei_agent():
    return env.start_agent("hubei", extra=hubei_agent_conf())


def reports_since(slug, n):
    return env.reports(slug)[n:]


# ---- tests ----

def test_proxy_centres_and_controller_up():
    global env
    env = T.Env("sip", clock_speed=1, clock_start="2020-01-23T10:00:00+08:00")
    os.chdir(env.dir)  # sipp drops its side files in the working directory
    w["sipp"] = which("sipp")
    kamailio = which("kamailio")
    # Kamailio's runtime directory (pid file, RPC socket): short, because a
    # UNIX socket path has at most 107 bytes and build directories can be deep.
    run = w["run"] = tempfile.mkdtemp(prefix="nirc-sip-")
    w["kport"] = free_udp_port()
    w["rpc"] = os.path.join(run, "kamailio_rpc.sock")
    w["ds_list"] = os.path.join(env.dir, "dispatcher.list")
    w["uas_port"] = {"hubei": free_udp_port(), "shaanxi": free_udp_port()}
    w["uri"] = {s: f"sip:127.0.0.1:{p}" for s, p in w["uas_port"].items()}
    w["uas_stats"] = {s: os.path.join(env.dir, f"uas-{s}.csv") for s in w["uas_port"]}

    # The operator's seed: Hubei's calls answered in Hubei.
    with open(w["ds_list"], "w") as f:
        f.write(f"1 {w['uri']['hubei']} 0 0 duid=hubei;weight=100\n")

    w["kamailio"] = T.Proc("kamailio", [
        kamailio, "-f", KAMAILIO_CFG, "-DD", "-E", "-Y", run, "-P", os.path.join(run, "kamailio.pid"),
        "-m", "64", "-M", "8",
        "-A", f"NIRC_LISTEN=udp:127.0.0.1:{w['kport']}",
        "-A", f'NIRC_DS_LIST="{w["ds_list"]}"',
        "-A", f'NIRC_RPC_SOCKET="{w["rpc"]}"',
        "-A", "NIRC_CHILDREN=2"], env.dir)
    w["uas"] = {}
    for s, port in w["uas_port"].items():
        w["uas"][s] = T.Proc(f"uas-{s}", [
            w["sipp"], "-sf", os.path.join(SIPDIR, "uas.xml"), "-set", "site", s,
            "-i", "127.0.0.1", "-p", str(port), "-nostdin",
            "-trace_stat", "-stf", w["uas_stats"][s], "-fd", "1"], env.dir)

    def kamailio_up():
        assert w["kamailio"].alive(), "kamailio exited:\n" + w["kamailio"].tail(40)
        return rpc("core.version")

    T.wait_until(kamailio_up, 15, "Kamailio answering on its RPC socket")
    T.wait_until(lambda: all(w["uas"][s].alive() and answered() for s in w["uas"]), 10,
                 "both call centres (sipp UAS) up")

    env.start_controller()
    start_hubei_agent()
    env.start_agent("shaanxi")

    def ready():
        st = env.status()
        return st if all(st[s]["link"] == "online" and st[s]["load"] for s in ("hubei", "shaanxi")) \
            and len(env.reports("hubei")) >= 2 else None

    st = T.wait_until(ready, 30, "hubei (kamailio) and shaanxi (sim) online and reporting")
    assert st["hubei"]["route"] == [{"site": "hubei", "permille": 1000}], st["hubei"]
    bad = [r for r in env.reports("hubei") if r["pbx_unreadable"]]
    assert not bad, f"the Hubei agent cannot read Kamailio: {bad[-1]}"


def test_calls_answered_in_hubei_before_any_cutover():
    n_reports = len(env.reports("hubei"))
    got = place_calls("home", 100)
    assert got == {"hubei": 100, "shaanxi": 0}, got

    # The agent counts the proxy's calls (dialogs) in its reports.
    def offered():
        rs = reports_since("hubei", n_reports)
        return sum(r["calls_offered"] for r in rs) if rs else 0

    T.wait_until(lambda: offered() >= 100, 10, "Hubei's reports to count the 100 calls")
    rs = reports_since("hubei", n_reports)
    assert offered() == 100, f"Hubei reported {offered()} calls offered for 100 placed"
    assert not any(r["pbx_unreadable"] for r in rs), rs
    assert sum(r["calls_answered"] for r in rs) == 100, rs
    # A proxy has no agents and no queue: not measured, never 0 (issue 14).
    assert all(r["agents_logged_in"] is None and r["calls_in_queue"] is None and
               "agents_logged_in" in r["not_measured"] for r in rs), rs


def test_cutover_moves_new_calls_and_keeps_calls_in_progress():
    base = answered()
    # Ten 10-second calls, answered in Hubei before the cutover.
    long_proc, long_stats = start_uac("long", 10, 20, 10000)
    T.wait_until(lambda: active_dialogs() >= 10, 10, "ten calls in progress through the proxy")
    T.wait_until(lambda: answered()["hubei"][0] - base["hubei"][0] == 10, 5,
                 "Hubei answering the ten long calls")

    r, j = ctl_json("cutover", "hubei", "--to", "shaanxi", "--reason", REASON, "--force")
    assert r.returncode == 0 and j["ok"] is True, f"cutover failed ({r.returncode}): {j}"
    outs = {o["site"]: o for o in j["outcomes"]}
    assert outs["hubei"]["result"] == "applied", j
    print(f"  cutover applied and acknowledged in {j['elapsed_ms']} ms", flush=True)
    assert dispatcher_list() == {"shaanxi": 100}, dispatcher_list()
    assert active_dialogs() >= 10, "the reload must not end calls in progress"

    got = place_calls("after-cutover", 100)
    assert got == {"hubei": 0, "shaanxi": 100}, got

    # The long calls end normally: their ACK and BYE went to Hubei.
    finish_uac(long_proc, long_stats, 10, timeout=30)
    T.wait_until(lambda: active_dialogs() == 0, 10, "every call through the proxy ended")
    now = answered()
    assert now["hubei"][0] - base["hubei"][0] == 10, (base, now)
    assert now["hubei"][1] == 0 and now["shaanxi"][1] == 0, now


def test_restore_sends_calls_home():
    r = env.ctl("restore", "hubei")
    assert r.returncode == 0, f"restore failed ({r.returncode}): {r.stdout}\n{r.stderr}"
    T.wait_until(lambda: dispatcher_list() == {"hubei": 100}, 5, "the home list in Kamailio")
    T.wait_until(lambda: env.status()["hubei"]["route"] == [{"site": "hubei", "permille": 1000}],
                 5, "hubei routed home in status")
    got = place_calls("after-restore", 100)
    assert got == {"hubei": 100, "shaanxi": 0}, got


def test_share_300_splits_calls_within_3_points():
    r, j = ctl_json("cutover", "hubei", "--to", "shaanxi", "--share", "300", "--reason",
                    "peak: 30% to Xi'an", "--force")
    assert r.returncode == 0 and j["ok"] is True, f"share cutover failed ({r.returncode}): {j}"
    assert dispatcher_list() == {"hubei": 70, "shaanxi": 30}, dispatcher_list()
    calls = 1000
    got = place_calls("share-300", calls, rate=250)
    pct = {s: 100.0 * got[s] / calls for s in got}
    print(f"  split over {calls} calls: hubei {pct['hubei']:.1f}%, shaanxi {pct['shaanxi']:.1f}%",
          flush=True)
    assert abs(pct["shaanxi"] - 30.0) <= 3.0 and abs(pct["hubei"] - 70.0) <= 3.0, got
    r = env.ctl("restore", "hubei")
    assert r.returncode == 0, f"restore failed ({r.returncode}): {r.stdout}\n{r.stderr}"
    T.wait_until(lambda: dispatcher_list() == {"hubei": 100}, 5, "the home list in Kamailio")


def test_controller_killed_calls_keep_their_route():
    # Straight after the restore: Kamailio's reload pacing (reload_delta)
    # may refuse the first reload; the adapter retries within its timeout.
    r, j = ctl_json("cutover", "hubei", "--to", "shaanxi", "--reason", REASON, "--force")
    assert r.returncode == 0 and j["ok"] is True, f"cutover failed ({r.returncode}): {j}"
    assert dispatcher_list() == {"shaanxi": 100}, dispatcher_list()
    env.controller.kill()
    got = place_calls("controller-dead", 100)
    assert got == {"hubei": 0, "shaanxi": 100}, got
    assert dispatcher_list() == {"shaanxi": 100}


def test_restarted_agent_restores_route_before_routing():
    hubei = env.agents["hubei"]
    assert hubei.stop() == 0, f"the Hubei agent did not stop cleanly:\n{hubei.tail()}"
    # Kamailio loses the route meanwhile (say it was redeployed with the
    # operator's seed list): only the agent's restore can bring it back.
    with open(w["ds_list"], "w") as f:
        f.write(f"1 {w['uri']['hubei']} 0 0 duid=hubei;weight=100\n")

    def reloaded():
        try:
            rpc("dispatcher.reload")
            return True
        except RuntimeError as e:  # "Ongoing reload": Kamailio's pacing
            if "reload" not in str(e).lower():
                raise
            return False

    T.wait_until(reloaded, 5, "Kamailio reloading the seed list")
    got = place_calls("seed-list", 20)
    assert got == {"hubei": 20, "shaanxi": 0}, got

    agent = start_hubei_agent()
    T.wait_until(lambda: dispatcher_list() == {"shaanxi": 100}, 5,
                 "the restarted agent writing its saved route into Kamailio")
    T.wait_until(lambda: "restored saved route" in open(agent.log_path).read(), 5,
                 "the agent saying it restored its route")
    # The controller is still down: the route came from the state file.
    assert not env.controller.alive()
    got = place_calls("after-agent-restart", 100)
    assert got == {"hubei": 0, "shaanxi": 100}, got


def test_kamailio_not_answering_is_reported_unreadable():
    # The controller is gone; the agent still collects (reports are only
    # sent on a link), so read the adapter's verdict through a new one.
    env.start_controller()
    T.wait_until(lambda: env.status()["hubei"]["link"] == "online", 15, "hubei back online")
    n = len(env.reports("hubei"))
    # The whole process group: the RPC worker is a child of the main one.
    pgid = w["kamailio"].p.pid
    os.killpg(pgid, signal.SIGSTOP)
    try:
        def unreadable():
            bad = [r for r in reports_since("hubei", n) if r["pbx_unreadable"]]
            return bad[-1] if bad else None

        r = T.wait_until(unreadable, 10, "a Hubei report saying Kamailio is unreadable")
        assert "did not answer" in r.get("pbx_error", ""), r
        assert r["calls_offered"] == 0 and r["agents_logged_in"] == 0, r
    finally:
        os.killpg(pgid, signal.SIGCONT)
    n = len(env.reports("hubei"))
    T.wait_until(lambda: any(not r["pbx_unreadable"] for r in reports_since("hubei", n)), 10,
                 "Hubei readable again once Kamailio answers")


def test_everything_stops_cleanly():
    """Agents, Kamailio (with its worker processes) and the call centres
    stop on SIGTERM."""
    for slug, a in env.agents.items():
        assert a.stop() == 0, f"agent {slug} did not stop cleanly:\n{a.tail()}"
    k = w["kamailio"]
    pgid = k.p.pid
    assert k.stop() == 0, f"kamailio did not stop cleanly:\n{k.tail()}"
    T.wait_until(lambda: not group_alive(pgid), 10, "Kamailio's worker processes gone")
    for s, u in w["uas"].items():
        u.stop()


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def teardown():
    """Whatever a failed test left running: nirclib SIGKILLs the processes
    it started, which leaves Kamailio's workers (same process group)."""
    if env and env.controller:
        env.controller.stop()
    k = w.get("kamailio")
    if k:
        try:
            os.killpg(k.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if w.get("run"):
        shutil.rmtree(w["run"], ignore_errors=True)


if __name__ == "__main__":
    try:
        T.main([test_proxy_centres_and_controller_up,
                test_calls_answered_in_hubei_before_any_cutover,
                test_cutover_moves_new_calls_and_keeps_calls_in_progress,
                test_restore_sends_calls_home,
                test_share_300_splits_calls_within_3_points,
                test_controller_killed_calls_keep_their_route,
                test_restarted_agent_restores_route_before_routing,
                test_kamailio_not_answering_is_reported_unreadable,
                test_everything_stops_cleanly])
    finally:
        teardown()
