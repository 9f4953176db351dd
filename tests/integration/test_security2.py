"""Issue 16, points 3 to 10: what a site's Hello may claim, operator floods,
failed-handshake floods, the PKI's edges, TLS groups and key updates, the
agent's state file. (A second file: integration.security already takes
about 100 s under the sanitizers.)

One controller with real agents (hubei, shaanxi, henan) on this test's own
private CA (it revokes the controller's certificate). Each attack is tried
for real and its refusal asserted, and after each the agents that were
never attacked must still be reporting.

Waits are on conditions (wait_until) or on a probe's own blocking read,
never on a bare sleep."""
import json
import os
import re
import shutil
import signal
import ssl
import socket
import subprocess
import threading
import time
import urllib.request

import nirclib as T

PKI = os.path.join(T.RUN, "pki-security2")
AGENTS = ["hubei", "shaanxi", "henan"]
PROBE_SITE = "xizang"  # probes that complete a Hello; no agent runs it
OP_LINKS = 3           # [ops] max_links_per_operator
OP_RATE, OP_BURST = 10, 20
HS_INTERVAL_S = 3      # [controller] handshake_failure_interval
STALE_MS = 3000        # [timing] stale_after (the default)
RATE_LIMITED, FORBIDDEN = 12, 5

env = None
HTTP = None
serving = set()


class SecEnv(T.Env):
    """nirclib's Env on this test's PKI."""

    def write(self, name, text):
        return super().write(name, text.replace(T.PKI + "/", PKI + "/"))

    def ctl(self, *args, cert="operator-alice", controllers=None, timeout=30):
        argv = [T.binary("nircctl"), "--controller", self.addr, "--ca", f"{PKI}/ca.crt",
                "--cert", f"{PKI}/{cert}.crt", "--key", f"{PKI}/{cert}.key", "--timeout", "3s"]
        return T.run(argv + list(args), timeout=timeout)


def pki(*args, check=True):
    return T.run([os.path.join(T.SRC, "deploy", "pki.sh"), PKI] + list(args), check=check)


def probe_argv(mode, arg=None, cert=PROBE_SITE, files=None, wait=None):
    argv = [T.binary("nirc-probe"), "--addr", env.addr, "--ca", f"{PKI}/ca.crt"]
    if wait:
        argv += ["--wait", str(wait)]
    files = files or (f"{PKI}/{cert}" if cert.startswith("operator-") else f"{PKI}/site-{cert}")
    argv += ["--cert", files + ".crt", "--key", files + ".key", mode]
    if arg is not None:
        argv.append(str(arg))
    return argv


def probe(mode, arg=None, timeout=30, **kw):
    return json.loads(T.run(probe_argv(mode, arg, **kw), check=True, timeout=timeout).stdout)


def log():
    with open(env.controller.log_path, errors="replace") as f:
        return f.read()


def metrics():
    return T.metrics(HTTP)


def still_serving(what):
    assert env.controller.alive(), f"controller died after {what}:\n{env.controller.tail()}"
    before = {s: env.status()[s]["load"]["timestamp_ms"] for s in serving}

    def advanced():
        st = env.status()
        return all(st[s]["link"] == "online" and st[s]["load"]["timestamp_ms"] > before[s]
                   for s in serving)

    T.wait_until(advanced, 10, f"{sorted(serving)} to keep reporting after {what}")


# ---- the tests ----

def test_start():
    global env, HTTP
    shutil.rmtree(PKI, ignore_errors=True)
    pki("--sites", ",".join(AGENTS + [PROBE_SITE]), "--operator", "alice:admin",
        "--operator", "victor:viewer")
    HTTP = f"127.0.0.1:{T.free_port()}"
    env = SecEnv("security2", extra_nircd=f"""
[tls]
crl = {PKI}/crl.pem
[controller]
handshake_failure_interval = {HS_INTERVAL_S}s
[ops]
max_links_per_operator = {OP_LINKS}
max_requests_per_s = {OP_RATE}
request_burst = {OP_BURST}
[http]
listen = {HTTP}
""")
    env.start_controller()
    for s in AGENTS:
        env.start_agent(s)
        serving.add(s)
    T.wait_until(lambda: all(env.status()[s]["load"] for s in AGENTS), 20,
                 "three agents online with a report")


def test_hello_route_is_validated_like_a_directive():
    """Point 3: a Hello's applied route naming a site that does not exist,
    or an epoch beyond what the database stores, is ignored with a log line
    and a link event; status never shows it, during the link or after."""
    bad = {"nosuchsite:500,xizang:500": "names site 'nosuchsite', which is not configured",
           "xizang:600,shaanxi:300": "sum to 900 permille",
           f"xizang:1000@{2 ** 63}.1": "out of range"}
    for route, why in bad.items():
        res = probe("hello-route", route)
        assert res["welcome"], f"{route}: {res}"
        T.wait_until(lambda: f"applied route in Hello ignored: " in log() and why in log(), 5,
                     f"the ignored route '{route}' in the log")
    st = env.status()[PROBE_SITE]
    assert "nosuchsite" not in json.dumps(st), st
    T.wait_until(lambda: len(env.sql("SELECT 1 FROM link_events WHERE event = 'route_ignored' "
                                     "AND site = 'xizang'")) == len(bad), 5,
                 "one route_ignored link event each")
    assert "nosuchsite" not in json.dumps(T.status_json(HTTP))
    # A route the controller could have sent is believed.
    res = probe("hello-route", "xizang:700,shaanxi:300@1.1")
    assert res["welcome"], res
    T.wait_until(lambda: {"site": "shaanxi", "permille": 300} in
                 env.status()[PROBE_SITE]["route"], 5, "the plausible route believed")
    still_serving("Hello routes")


def test_operator_flood_capped_and_rate_limited_agents_stay_fresh():
    """Point 4: one viewer holds at most OP_LINKS links (the next is refused
    with an error naming the cap); its links together get OP_RATE requests
    a second and the rest a 'rate limited' answer; agents' reports stay
    fresh meanwhile (worst report age under stale_after)."""
    flood_s = 6
    argv = probe_argv("status-flood", 150, cert="operator-victor", wait=flood_s)
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(OP_LINKS)]
    try:
        T.wait_until(lambda: metrics()["nirc_operator_requests_rate_limited_total"] > 0, 5,
                     "the viewer's flood rate limited")
        # The (cap+1)th link of the same identity is refused, clearly.
        r = env.ctl("status", cert="operator-victor")
        assert r.returncode != 0, r
        assert "max_links_per_operator" in r.stderr and f"{OP_LINKS} links open" in r.stderr, \
            r.stderr
        worst = 0
        end = time.monotonic() + flood_s - 2
        while time.monotonic() < end:
            st = env.status()  # alice: another identity, its own budget
            for s in serving:
                assert st[s]["link"] == "online", (s, st[s])
                worst = max(worst, st[s]["report_age_ms"])
            time.sleep(0.2)  # a sampling pace within alice's own request rate
        assert worst < STALE_MS, f"an agent's report aged {worst} ms during the flood"
    finally:
        results = [json.loads(p.communicate(timeout=flood_s + 20)[0]) for p in procs]
    for res in results:
        ok, limited = (int(x) for x in re.findall(r"(?:ok|limited)=(\d+)", res["detail"]))
        assert res["sent"] > 300 and limited > 0, res
        assert not res["closed"], f"a rate-limited operator is answered, not cut: {res}"
        assert res["error_message"].startswith(f"rate limited: {OP_RATE} requests/s per operator"), \
            res
    total_ok = sum(int(re.search(r"ok=(\d+)", r["detail"]).group(1)) for r in results)
    assert total_ok <= OP_BURST + OP_RATE * (flood_s + 2), \
        f"{total_ok} status replies built for one viewer in {flood_s} s"
    assert metrics()['nirc_links_refused_total{reason="operator_link_cap"}'] >= 1
    assert "max_links_per_operator" in log()
    # The viewer's links are gone: it may connect again.
    T.wait_until(lambda: env.ctl("status", cert="operator-victor").returncode == 0, 10,
                 "the viewer served again after its flood")
    still_serving("an operator flood")


def failed_handshake():
    """One anonymous handshake (no client certificate) that the controller
    refuses: TLS 1.3 finishes the client's side first, the refusal comes
    with the first read."""
    ctx = T.tls_client_context(pki=PKI)
    with socket.create_connection(("127.0.0.1", env.port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as s:
                s.recv(16)
        except (ssl.SSLError, OSError):
            pass


def tls_failed_total():
    return metrics()['nirc_links_refused_total{reason="tls_failed"}']


def test_failed_handshakes_are_aggregated_per_address():
    """Point 5: 200 failed handshakes from one address are a bounded
    number of link_events rows (the first stored, the rest counted in a
    summary per address and interval) whose counts add up to 200, and a
    metric counts the aggregated ones."""
    n = 200
    last_id = int(env.sql("SELECT coalesce(max(id), 0) FROM link_events")[0][0])
    base, base_agg = tls_failed_total(), metrics()["nirc_handshake_failures_aggregated_total"]
    for _ in range(n):
        failed_handshake()
    T.wait_until(lambda: tls_failed_total() - base == n, 10, f"{n} failed handshakes counted")

    def rows():
        return env.sql(f"SELECT peer, detail FROM link_events WHERE id > {last_id} "
                       "AND event = 'tls_failed' ORDER BY id")

    def stored_count():
        total = 0
        for peer, detail in rows():
            m = re.match(r"(\d+) more failed TLS handshakes from 127\.0\.0\.1 in \d+ s", detail)
            total += int(m.group(1)) if m else 1
        return total

    T.wait_until(lambda: stored_count() == n, HS_INTERVAL_S + 10,
                 f"the {n} failures accounted for in link_events (last: {rows()[-3:]})")
    assert len(rows()) <= 10, f"{len(rows())} rows for {n} failed handshakes"
    summaries = [d for _, d in rows() if "more failed TLS handshakes" in d]
    assert summaries and "last: TLS handshake failed" in summaries[0], summaries
    assert "did not return a certificate" in summaries[0], summaries
    assert metrics()["nirc_handshake_failures_aggregated_total"] - base_agg == n - \
        (len(rows()) - len(summaries)), metrics()
    still_serving("a flood of failed handshakes")


def openssl(*args, check=True, **kw):
    return subprocess.run(["openssl"] + list(args), capture_output=True, text=True, check=check,
                          **kw)


def test_pki_constraints_ca_path_length_leaf_usages():
    """Point 6: the CA may sign leaves only (pathlen:0); leaves are CA:FALSE
    with the extended key usage of their role."""
    ca = openssl("x509", "-in", f"{PKI}/ca.crt", "-noout", "-ext", "basicConstraints").stdout
    assert "CA:TRUE" in ca and "pathlen:0" in ca, ca
    for base, eku in (("controller-nircd", "TLS Web Server Authentication"),
                      ("site-hubei", "TLS Web Client Authentication"),
                      ("operator-victor", "TLS Web Client Authentication")):
        ext = openssl("x509", "-in", f"{PKI}/{base}.crt", "-noout", "-ext",
                      "basicConstraints,extendedKeyUsage").stdout
        assert "CA:FALSE" in ext, (base, ext)
        usages = ext.split("Extended Key Usage:")[1].split(",")
        assert [u.strip() for u in usages] == [eku], (base, ext)


def rogue(name, ext, signer="ca", chain=()):
    """A certificate for operator:<name> (role admin) with extensions
    `ext`, signed by `signer` (a file base in PKI/rogue or the CA);
    returns the file base, whose .crt holds it and `chain` after it."""
    d = os.path.join(PKI, "rogue")
    os.makedirs(d, exist_ok=True)
    base = os.path.join(d, name)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
            base + ".key")
    cnf = base + ".cnf"
    with open(cnf, "w") as f:
        f.write(f"[x]\n{ext}\n")
    subj = f"/OU=admin/CN=operator:{name}" if "CA:FALSE" in ext else f"/CN={name}"
    openssl("req", "-new", "-key", base + ".key", "-subj", subj, "-out", base + ".csr")
    ca = f"{PKI}/ca" if signer == "ca" else os.path.join(d, signer)
    openssl("x509", "-req", "-in", base + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "30",
            "-extfile", cnf, "-extensions", "x", "-out", base + ".pem")
    with open(base + ".crt", "w") as out:
        for part in [base + ".pem"] + [os.path.join(d, c) + ".pem" for c in chain]:
            with open(part) as f:
                out.write(f.read())
    return base


def test_ca_true_peers_and_long_chains_refused():
    """Point 6: an intermediate CA:TRUE signed by the root (a mistake, or a
    compromised issuing process) cannot mint an admin operator, and a
    CA:TRUE certificate cannot be a peer itself."""
    leaf = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" \
           "extendedKeyUsage=clientAuth"
    rogue("intermediate", "basicConstraints=critical,CA:TRUE\n"
          "keyUsage=critical,keyCertSign,cRLSign,digitalSignature\nextendedKeyUsage=clientAuth")
    minted = rogue("mallory", leaf, signer="intermediate", chain=["intermediate"])
    r = T.run([T.binary("nircctl"), "--controller", env.addr, "--ca", f"{PKI}/ca.crt",
               "--cert", minted + ".crt", "--key", minted + ".key", "--timeout", "3s",
               "status"])
    assert r.returncode != 0 and "SITE" not in r.stdout, r
    T.wait_until(lambda: re.search(r"closed before authentication: TLS handshake failed: "
                                   r"certificate '[^']*' .*(chain too long|path length)", log()),
                 5, "the minted operator's chain refused in the log")
    # The intermediate itself, presented as a peer: a CA is not a peer.
    r = T.run([T.binary("nircctl"), "--controller", env.addr, "--ca", f"{PKI}/ca.crt",
               "--cert", os.path.join(PKI, "rogue", "intermediate.crt"), "--key",
               os.path.join(PKI, "rogue", "intermediate.key"), "--timeout", "3s", "status"])
    assert r.returncode != 0, r
    T.wait_until(lambda: "certificate 'intermediate' (serial" in log() and
                 "invalid non-CA certificate (has CA markings)" in log(), 5,
                 "the CA:TRUE peer refused in the log")
    still_serving("rogue chains")


def test_pki_and_nircd_agree_on_names():
    """Point 9: pki.sh accepts exactly the names nircd accepts (the same
    list tests/unit/test_names.c holds nirc_slug_valid() to), and a name
    pki.sh issues is one nircd lets in."""
    scratch = os.path.join(T.RUN, "pki-names")
    shutil.rmtree(scratch, ignore_errors=True)
    with open(os.path.join(T.SRC, "tests", "data", "names.txt")) as f:
        entries = [l.rstrip("\n").split(" ", 1) for l in f if l.strip() and l[0] != "#"]
    for want, name in entries:
        r = T.run([os.path.join(T.SRC, "deploy", "pki.sh"), scratch, "--operator",
                   f"{name}:viewer"])
        assert (r.returncode == 0) == (want == "good"), (name, want, r.stderr)
        if want == "bad":
            assert "a lower-case letter, then up to 30" in r.stderr, r.stderr
    pki("--operator", "bob-smith:viewer")
    r = env.ctl("--json", "status", cert="operator-bob-smith")
    assert r.returncode == 0, r


def test_agent_refuses_a_revoked_controller_certificate():
    """Point 10: an agent given the CA's CRL ([tls] crl) refuses a
    controller whose certificate is revoked, and connects once the
    controller presents a valid one."""
    serial = openssl("x509", "-noout", "-serial", "-in",
                     f"{PKI}/controller-nircd.crt").stdout.strip().split("=")[1]
    out = pki("--revoke", "controller-nircd", "--controller", "nircd").stdout
    assert f"serial {serial}" in out, out
    # nircd still presents the revoked certificate it loaded at start.
    agent = env.start_agent(PROBE_SITE, extra=f"[tls]\ncrl = {PKI}/crl.pem\n")
    T.wait_until(lambda: "certificate revoked" in agent.tail(200), 10,
                 "the agent's refusal of the revoked controller")
    assert f"controller:nircd' (serial {serial}" in agent.tail(200), agent.tail(20)
    assert env.status()[PROBE_SITE]["link"] != "online"
    # Agents without a CRL are not affected; a reload gives nircd its new
    # certificate and the careful agent gets in.
    env.controller.signal(signal.SIGHUP)
    T.wait_until(lambda: env.status()[PROBE_SITE]["link"] == "online", 15,
                 f"{PROBE_SITE} online once the controller's certificate is valid")
    still_serving("a revoked controller certificate")


def s_client(*args, stdin=None, timeout=15):
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{env.port}", "-tls1_3",
            "-CAfile", f"{PKI}/ca.crt", "-cert", f"{PKI}/operator-victor.crt",
            "-key", f"{PKI}/operator-victor.key"] + list(args)
    return subprocess.run(argv, input=stdin or "", capture_output=True, text=True,
                          timeout=timeout)


def test_tls_groups_and_key_update_flood():
    """Point 7: only X25519 and P-256 key exchange; a key update flood
    closes the link."""
    for group in ("ffdhe2048", "X448", "P-521"):
        r = s_client("-groups", group)
        assert "New, TLSv1.3" not in r.stdout and r.returncode != 0, (group, r.stdout[-500:])
    for group in ("X25519", "P-256"):
        r = s_client("-groups", group)
        assert "New, TLSv1.3" in r.stdout, (group, r.stdout[-500:], r.stderr[-500:])
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{env.port}",
                          "-tls1_3", "-CAfile", f"{PKI}/ca.crt",
                          "-cert", f"{PKI}/operator-victor.crt",
                          "-key", f"{PKI}/operator-victor.key"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        sent = 0
        try:
            for _ in range(30):
                p.stdin.write("K\n")
                p.stdin.flush()
                sent += 1
                time.sleep(0.02)
            p.stdin.close()
        except BrokenPipeError:
            pass  # the controller closed the link and s_client is gone
        out, _ = p.communicate(timeout=10)
        assert sent > 10, f"s_client gone after {sent} key updates: {out[-1000:]}"
    finally:
        if p.poll() is None:
            p.kill()
    assert "KEYUPDATE" in out, out[-1000:]
    T.wait_until(lambda: "more than 10 TLS key updates a minute: closing" in log(), 5,
                 "the key update flood closed")
    still_serving("TLS groups and key updates")


def test_agent_state_file_symlink_refused():
    """Point 8: a symbolic link planted as an agent's state file is neither
    read nor written through; the agent says so and serves anyway."""
    site = "gansu"
    pki("--sites", site)
    victim = os.path.join(env.dir, "victim.txt")
    with open(victim, "w") as f:
        f.write("not the agent's to write\n")
    state = os.path.join(env.dir, f"state-{site}.json")
    os.symlink(victim, state)
    agent = env.start_agent(site)
    T.wait_until(lambda: "is a symbolic link: refusing to read the state" in agent.tail(50), 10,
                 "the agent's refusal to read through the link")
    T.wait_until(lambda: env.status()[site]["link"] == "online", 15, f"{site} online")
    T.wait_until(lambda: "is a symbolic link: refusing to write the state" in agent.tail(100),
                 10, "the agent's refusal to write through the link")
    with open(victim) as f:
        assert f.read() == "not the agent's to write\n"
    assert os.path.islink(state)
    agent.stop()


def test_stop():
    for a in env.agents.values():
        a.stop()
    rc = env.controller.stop()
    assert rc == 0, f"nircd exited {rc}:\n{env.controller.tail()}"


if __name__ == "__main__":
    T.main([test_start,
            test_hello_route_is_validated_like_a_directive,
            test_operator_flood_capped_and_rate_limited_agents_stay_fresh,
            test_failed_handshakes_are_aggregated_per_address,
            test_pki_constraints_ca_path_length_leaf_usages,
            test_ca_true_peers_and_long_chains_refused,
            test_pki_and_nircd_agree_on_names,
            test_tls_groups_and_key_update_flood,
            test_agent_refuses_a_revoked_controller_certificate,
            test_agent_state_file_symlink_refused,
            test_stop])
