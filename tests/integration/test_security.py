"""Issue 7 acceptance: hostile input, revocation and reload.

One controller with real agents (hubei, shaanxi, henan) on its own private
CA, because this test revokes and replaces certificates. Every attack is
tried for real and its refusal asserted: no client certificate, another
CA, an expired certificate, a certificate revoked while its link was up
(closed on SIGHUP, reconnection refused, another agent's link untouched),
a blocklisted fingerprint, the controller's certificate and key replaced
on disk (live links stay, new links see the new certificate), a reload
that fails, identity claims for another site, a viewer's cutover, a site
certificate on the operator channel, a handshake that never finishes, a
flood of half-open connections over max_unauthenticated, frame-level
garbage, out-of-range fields, and a message flood over the rate limit.
After each, an agent that was never attacked must still be reporting: the
controller's copy of its report timestamps advances.

Waits are on conditions (wait_until) or on the probe's own blocking read
of the controller's answer, never on a bare sleep."""
import hashlib
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import nirclib as T

# This test's own CA: revocations here must not touch the shared PKI.
PKI = os.path.join(T.RUN, "pki-security")
BLOCKLIST = os.path.join(PKI, "blocklist.txt")
AGENTS = ["hubei", "shaanxi", "henan"]
PROBE_SITE = "xizang"    # probes that complete a Hello; no agent runs it
LATE_SITE = "guangdong"  # an agent that first connects during the flood
EXPIRED_SITE = "guangxi"
CAP = 64                 # [controller] max_unauthenticated
HANDSHAKE_S = 4          # [timing] handshake_timeout
FLOOD = 2000             # half-open connections
RATE, BURST = 200, 400   # the defaults of [timing] max_messages_per_s / message_burst
MALFORMED, UNKNOWN_MESSAGE, IDENTITY, UNKNOWN_SITE, FORBIDDEN, PROTOCOL = 1, 2, 3, 4, 5, 6
RATE_LIMITED = 12

env = None
HTTP = None
serving = set()  # agents that must be online and reporting after each attack


class SecEnv(T.Env):
    """nirclib's Env on this test's PKI: every file it writes (the nircd
    and agent configurations) points at PKI instead of the shared one."""

    def write(self, name, text):
        return super().write(name, text.replace(T.PKI + "/", PKI + "/"))

    def ctl(self, *args, cert="operator-alice", controllers=None, timeout=30):
        argv = [T.binary("nircctl"), "--controller", self.addr, "--ca", f"{PKI}/ca.crt",
                "--cert", f"{PKI}/{cert}.crt", "--key", f"{PKI}/{cert}.key", "--timeout", "3s"]
        return T.run(argv + list(args), timeout=timeout)


def pki(*args):
    return T.run([os.path.join(T.SRC, "deploy", "pki.sh"), PKI] + list(args), check=True).stdout


def fingerprint(crt):
    with open(crt) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def replace_leaf(base, *pki_args):
    """Moves DIR/base.{crt,key} aside and has pki.sh issue a new pair;
    returns (old fingerprint, new fingerprint, where the old pair went)."""
    old = os.path.join(PKI, "replaced")
    os.makedirs(old, exist_ok=True)
    old_fp = fingerprint(f"{PKI}/{base}.crt")
    for ext in ("crt", "key"):
        os.replace(f"{PKI}/{base}.{ext}", f"{old}/{base}-{old_fp[:8]}.{ext}")
    pki(*pki_args)
    return old_fp, fingerprint(f"{PKI}/{base}.crt"), f"{old}/{base}-{old_fp[:8]}"


def probe(mode, arg=None, cert=PROBE_SITE, files=None, no_cert=False, wait=None, timeout=30):
    """Runs nirc-probe; `files` is a certificate path without .crt/.key."""
    argv = [T.binary("nirc-probe"), "--addr", env.addr, "--ca", f"{PKI}/ca.crt"]
    if wait:
        argv += ["--wait", str(wait)]
    if not no_cert:
        files = files or (f"{PKI}/{cert}" if cert.startswith("operator-") else f"{PKI}/site-{cert}")
        argv += ["--cert", files + ".crt", "--key", files + ".key"]
    argv.append(mode)
    if arg:
        argv.append(str(arg))
    return json.loads(T.run(argv, check=True, timeout=timeout).stdout)


def assert_refused(res, code=None, what="", after_hello=False):
    """after_hello: the probe first completes a valid Hello (it is
    welcomed) and what it sends next is refused."""
    if not after_hello:
        assert not res["welcome"], f"{what}: the controller accepted it: {res}"
    assert res["closed"], f"{what}: the link was not closed: {res}"
    if code is not None:
        assert res["error_code"] == code, f"{what}: expected error code {code}: {res}"


def log():
    with open(env.controller.log_path, errors="replace") as f:
        return f.read()


def metrics():
    return T.metrics(HTTP)


def refused_total(reason):
    return metrics().get(f'nirc_links_refused_total{{reason="{reason}"}}', 0)


def online_events(site):
    return int(env.sql(f"SELECT count(*) FROM link_events WHERE site = '{site}' "
                       "AND event = 'online'")[0][0])


def events(event, like):
    like = like.replace("'", "''")
    return env.sql(f"SELECT coalesce(identity, ''), detail FROM link_events WHERE "
                   f"event = '{event}' AND detail LIKE '{like}' ORDER BY id")


def still_serving(what):
    """The controller is alive and every agent in `serving` is online with
    report timestamps that keep advancing."""
    assert env.controller.alive(), f"controller died after {what}:\n{env.controller.tail()}"
    before = {s: env.status()[s]["load"]["timestamp_ms"] for s in serving}

    def advanced():
        st = env.status()
        return all(st[s]["link"] == "online" and st[s]["load"]["timestamp_ms"] > before[s]
                   for s in serving)

    T.wait_until(advanced, 10, f"{sorted(serving)} to keep reporting after {what}")


def reloads(result="ok"):
    return metrics().get(f'nirc_tls_reloads_total{{result="{result}"}}', 0)


def sighup_and_wait(result="ok"):
    """SIGHUP, then wait for the reload to be counted (the metrics are
    published once a second)."""
    n = reloads(result)
    env.controller.signal(signal.SIGHUP)
    T.wait_until(lambda: reloads(result) > n, 10, f"a reload counted as {result}")


# ---- the tests ----

def test_agents_online_with_revocation_configured():
    global env, HTTP
    shutil.rmtree(PKI, ignore_errors=True)
    pki("--sites", ",".join(AGENTS + [PROBE_SITE, LATE_SITE, "atlantis"]),
        "--operator", "alice:admin", "--operator", "victor:viewer")
    pki("--expired", "--sites", EXPIRED_SITE)
    with open(BLOCKLIST, "w") as f:
        f.write("# SHA-256 fingerprints of certificates refused before the next CRL\n")
    HTTP = f"127.0.0.1:{T.free_port()}"
    env = SecEnv("security", extra_nircd=f"""
[tls]
crl = {PKI}/crl.pem
blocklist = {BLOCKLIST}
[controller]
max_unauthenticated = {CAP}
[timing]
handshake_timeout = {HANDSHAKE_S}s
[http]
listen = {HTTP}
""")
    env.start_controller()
    for s in AGENTS:
        env.start_agent(s)
        serving.add(s)
    T.wait_until(lambda: all(env.status()[s]["load"] for s in AGENTS), 20,
                 "three agents online with a report")
    assert re.search(r"crl\.pem needs its next update", log()) is None, \
        "a fresh CRL must not be warned about"


def test_tls_refusals_no_cert_other_ca_expired():
    assert_refused(probe("hello", PROBE_SITE, no_cert=True), what="no client certificate")
    assert_refused(probe("hello", "hubei", files=f"{T.OTHER_PKI}/site-hubei"),
                   what="a certificate from another CA")
    assert_refused(probe("hello", EXPIRED_SITE, cert=EXPIRED_SITE), what="an expired certificate")
    # Each refusal is logged and stored, naming the certificate and the cause.
    T.wait_until(lambda: events("tls_failed", "%site:guangxi%certificate has expired%"), 5,
                 "the expired certificate's refusal in link_events")
    T.wait_until(lambda: events("tls_failed", "%site:hubei%unable to get local issuer%"), 5,
                 "the other CA's refusal in link_events")
    T.wait_until(lambda: events("tls_failed", "%did not return a certificate%"), 5,
                 "the missing certificate's refusal in link_events")
    assert "certificate 'site:guangxi'" in log() and "certificate has expired" in log()
    still_serving("TLS refusals")


def test_identity_and_role_refusals():
    assert_refused(probe("hello", "henan"), IDENTITY, "a Hello claiming another site")
    assert_refused(probe("report-as", "henan"), IDENTITY, "a LoadReport claiming another site",
                   after_hello=True)
    assert_refused(probe("report-as", "nosuchsite"), IDENTITY, "a LoadReport for an unknown site",
                   after_hello=True)
    assert_refused(probe("hello", "atlantis", cert="atlantis"), UNKNOWN_SITE,
                   "a certificate for a site the controller does not know")
    assert_refused(probe("operator-request"), FORBIDDEN,
                   "a site certificate on the operator channel", after_hello=True)
    assert_refused(probe("hello", "alice", cert="operator-alice"), FORBIDDEN,
                   "an operator certificate acting as an agent")
    # A viewer may look but not move traffic.
    r = env.ctl("cutover", PROBE_SITE, "--to", "shaanxi", "--reason", "viewer tries",
                cert="operator-victor")
    assert r.returncode == T.EXIT_REFUSED, r
    assert "needs role operator" in r.stderr and "viewer" in r.stderr, r.stderr
    # Nothing moved: home, or not known here (null: no Hello from it now).
    assert env.status()[PROBE_SITE]["route"] in (None, [], [{"site": PROBE_SITE, "permille": 1000}])
    assert env.status()[PROBE_SITE]["active_rule"] in ("", "default"), env.status()[PROBE_SITE]
    T.wait_until(lambda: env.sql("SELECT 1 FROM link_events WHERE event = 'refused' AND "
                                 "identity = 'operator:victor' AND detail LIKE '%cutover%'"), 5,
                 "the viewer's refusal in link_events")
    for needle in ("Hello claims site 'henan'", "LoadReport claims site 'nosuchsite'",
                   "'atlantis', which is not configured", "may not send operator requests",
                   "may not act as a site agent"):
        T.wait_until(lambda: events("refused", f"%{needle}%"), 5, f"'{needle}' in link_events")
    still_serving("identity and role refusals")


def test_a_second_agent_on_a_live_sites_certificate_is_refused():
    """Issue 16, point 1: a copy of hubei's certificate (a stolen key, or an
    old agent host left running) does not displace the live agent: it is
    refused with a clear error, the event keeps both addresses, and an
    identity alarm says two agents claim hubei. A deliberate replacement
    (the first agent gone: its link stale) still works."""
    peer = env.status()["hubei"]["peer"]
    for _ in range(3):
        res = probe("welcome", cert="hubei")
        assert_refused(res, IDENTITY, "a second link with hubei's certificate")
    still_serving("a second agent claiming hubei")
    assert env.status()["hubei"]["peer"] == peer, "the live agent was displaced"
    rows = events("duplicate", f"%hubei already has a live link from {peer}%")
    assert rows and "refused" in rows[0][1], rows
    T.wait_until(lambda: [a for a in T.status_json(HTTP)["alarms"]
                          if a["kind"] == "identity" and a["subject"] == "hubei"], 10,
                 "an identity alarm for hubei")
    a = [a for a in T.status_json(HTTP)["alarms"] if a["kind"] == "identity"][0]
    assert a["severity"] == "critical" and "two agents claim hubei" in a["message"] and \
        peer in a["message"], a
    assert "already has a live agent link" in log()
    # The real agent is gone (frozen): once its link is stale, a new agent
    # with the certificate takes the site over.
    agent = env.agents["hubei"]
    os.kill(agent.p.pid, signal.SIGSTOP)
    try:
        T.wait_until(lambda: env.status()["hubei"]["link"] != "online", 10, "hubei stale")
        res = probe("welcome", cert="hubei")
        assert res["welcome"], f"a replacement after the first agent went stale: {res}"
    finally:
        os.kill(agent.p.pid, signal.SIGCONT)
    still_serving("hubei's agent back after the replacement")


def test_revoked_while_up_closed_on_reload_and_refused_after():
    shaanxi_online = online_events("shaanxi")
    henan_online = online_events("henan")
    serial = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in",
                             f"{PKI}/site-hubei.crt"], capture_output=True, text=True,
                            check=True).stdout.strip().split("=")[1]
    out = pki("--revoke", "site-hubei")
    assert f"serial {serial}" in out, out
    sighup_and_wait()
    T.wait_until(lambda: env.status()["hubei"]["link"] == "offline", 10,
                 "hubei's link closed by the reload")
    serving.discard("hubei")
    text = log()
    assert re.search(rf"id=site:hubei.*refused: certificate revoked: serial {serial} is on the "
                     r"CRL \(link closed on reload\)", text), text[-3000:]
    assert re.search(r"reloaded: CA .*CRL .*crl\.pem \(1 revoked\).*1 of \d+ live links closed",
                     text), text[-3000:]
    # The agent keeps trying with its revoked certificate: the handshake
    # itself now fails, and says why.
    T.wait_until(lambda: events("tls_failed", f"%site:hubei%serial {serial}%certificate revoked%"),
                 10, "hubei's reconnection refused in the handshake")
    assert_refused(probe("hello", "hubei", files=f"{PKI}/revoked/site-hubei-{serial}"),
                   what="the revoked certificate")
    assert env.status()["hubei"]["link"] == "offline"
    # The other agents' links were not touched by the same SIGHUP.
    assert online_events("shaanxi") == shaanxi_online and online_events("henan") == henan_online
    assert refused_total("revoked") >= 1
    env.agents["hubei"].stop()
    still_serving("a revocation")


def test_blocklisted_fingerprint_then_agent_reloads_a_new_certificate():
    old_fp = fingerprint(f"{PKI}/site-henan.crt")
    # As `openssl x509 -fingerprint -sha256` prints it, to check the parser.
    colons = ":".join(old_fp[i:i + 2] for i in range(0, 64, 2)).upper()
    with open(BLOCKLIST, "a") as f:
        f.write(f"SHA256 Fingerprint={colons}  # henan's laptop was stolen\n")
    shaanxi_online = online_events("shaanxi")
    sighup_and_wait()
    T.wait_until(lambda: env.status()["henan"]["link"] == "offline", 10,
                 "henan's link closed by the reload")
    serving.discard("henan")
    assert re.search(rf"id=site:henan.*refused: certificate revoked: fingerprint {old_fp} is on "
                     r"the blocklist \(link closed on reload\)", log()), log()[-3000:]
    # The agent reconnects with the same certificate: the handshake works,
    # the blocklist refuses it right after.
    T.wait_until(lambda: [e for e in events("refused", f"%fingerprint {old_fp}%blocklist%")
                          if "on reload" not in e[1] and e[0] == "site:henan"], 10,
                 "henan's reconnection refused by the blocklist")
    assert online_events("shaanxi") == shaanxi_online
    # A new certificate and key on disk; SIGHUP makes the agent use them
    # for its next connection, which the blocklist does not stop.
    _, new_fp, _ = replace_leaf("site-henan", "--sites", "henan")
    agent = env.agents["henan"]
    agent.signal(signal.SIGHUP)
    T.wait_until(lambda: new_fp in agent.tail(200), 10, "the agent's reload line")
    T.wait_until(lambda: env.status()["henan"]["link"] == "online", 15,
                 "henan back online with its new certificate")
    serving.add("henan")
    still_serving("a blocklisted certificate")


def test_controller_certificate_replaced_links_stay_new_links_use_it():
    online = {s: online_events(s) for s in serving}
    old_fp, new_fp, _ = replace_leaf("controller-nircd", "--controller", "nircd")
    assert old_fp != new_fp
    assert probe("welcome")["server_fingerprint"] == old_fp, "not reloaded yet"
    sighup_and_wait()
    res = probe("welcome")
    assert res["welcome"], res
    assert res["server_fingerprint"] == new_fp, "a new link must see the new certificate"
    assert {s: online_events(s) for s in serving} == online, "live links must not reconnect"
    assert "0 of" in [l for l in log().splitlines() if "reloaded:" in l][-1]
    still_serving("a certificate replaced by SIGHUP")

    # A reload that fails keeps what works: a broken blocklist, then a
    # broken CRL, are named in the log and nothing else changes.
    with open(BLOCKLIST) as f:
        good_blocklist = f.read()
    with open(BLOCKLIST, "a") as f:
        f.write("this is not a fingerprint\n")
    sighup_and_wait("failed")
    lineno = len(good_blocklist.splitlines()) + 1
    assert f"reload failed, the previous certificates stay in use: {BLOCKLIST}:{lineno}: not a " \
           "SHA-256" in log(), log()[-2000:]
    with open(BLOCKLIST, "w") as f:
        f.write(good_blocklist)
    with open(f"{PKI}/crl.pem") as f:
        good_crl = f.read()
    with open(f"{PKI}/crl.pem", "w") as f:
        f.write(good_crl[:len(good_crl) // 2])
    sighup_and_wait("failed")
    assert re.search(r"reload failed.*crl\.pem: (cannot read the CRL|no CRL)", log()), \
        log()[-2000:]
    with open(f"{PKI}/crl.pem", "w") as f:
        f.write(good_crl)
    assert env.controller.alive()
    res = probe("welcome")
    assert res["welcome"] and res["server_fingerprint"] == new_fp, res
    # The revocations of the last good reload still hold.
    revoked = [f[:-4] for f in os.listdir(f"{PKI}/revoked") if f.endswith(".crt")]
    assert_refused(probe("hello", "hubei", files=f"{PKI}/revoked/{revoked[0]}"),
                   what="the revoked certificate after failed reloads")
    still_serving("failed reloads")


def test_handshake_timeout_bounds_idle_and_slow_clients():
    argv = [T.binary("nirc-probe"), "--addr", env.addr, "--ca", f"{PKI}/ca.crt",
            "--wait", str(HANDSHAKE_S + 6)]
    procs = {m: subprocess.Popen(argv + [m], stdout=subprocess.PIPE, text=True)
             for m in ("idle", "slow-handshake")}
    for mode, p in procs.items():
        out, _ = p.communicate(timeout=HANDSHAKE_S + 20)
        res = json.loads(out)
        assert res["closed"], f"{mode}: the controller never closed it: {res}"
        if mode == "slow-handshake":
            m = re.search(r"sent (\d+) of the (\d+) bytes of a ClientHello", res["detail"])
            assert m and 0 < int(m.group(1)) < int(m.group(2)), res
        assert HANDSHAKE_S * 1000 * 0.9 <= res["elapsed_ms"] <= HANDSHAKE_S * 1000 + 3000, \
            f"{mode}: closed after {res['elapsed_ms']} ms, not by the {HANDSHAKE_S} s timeout: {res}"
    assert f"TLS handshake did not finish within {HANDSHAKE_S * 1000} ms" in log()
    still_serving("a slow handshake and an idle connection")


def open_count(socks, closed):
    """Polls the flood's sockets once; adds those the controller closed
    (end of stream, reset or refused) to `closed`. Returns how many are
    still open."""
    p = select.poll()
    for fd in socks:
        if fd not in closed:
            p.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    for fd, _ in p.poll(0):
        try:
            if socks[fd].recv(64) == b"":
                closed.add(fd)
        except BlockingIOError:
            pass
        except OSError:
            closed.add(fd)
    return len(socks) - len(closed)


def test_half_open_flood_over_the_cap():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FLOOD + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, FLOOD + 1000), hard))
    base_refused = refused_total("unauthenticated_cap") + refused_total("evicted")
    socks, closed = {}, set()
    start = time.monotonic()
    try:
        for _ in range(FLOOD):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", env.port))
            socks[s.fileno()] = s
        # Those beyond the cap are closed at once, long before the
        # handshake timeout would close them.
        T.wait_until(lambda: open_count(socks, closed) <= CAP, HANDSHAKE_S - 1,
                     f"all but {CAP} of {FLOOD} half-open connections closed")
        took = time.monotonic() - start
        assert took < HANDSHAKE_S, took
        # Legitimate agents keep working meanwhile: one already connected
        # keeps reporting, and one that connects now gets in (a link that
        # has stalled for a second gives way to it).
        # nircctl needs a place too: refused at once until a stalled link
        # has waited long enough to give way.
        before = T.wait_until(lambda: env.status()["shaanxi"]["load"]["timestamp_ms"], 5,
                              "nircctl status during the flood")
        env.start_agent(LATE_SITE)
        T.wait_until(lambda: env.status()[LATE_SITE]["load"], 10, f"{LATE_SITE} online")
        assert env.status()["shaanxi"]["load"]["timestamp_ms"] > before
        # The flood still holds its connections (none has reached its
        # handshake timeout yet), so the late agent got in during it, not
        # after. (A bound on the elapsed time as well failed once under
        # ASan with 63 still open at 4.0 s: the connections open are the
        # proof, the clock only a proxy for them.)
        during = open_count(socks, closed)
        assert during > 0, \
            f"the flood was over before {LATE_SITE} got in: {during} open, " \
            f"{time.monotonic() - start:.1f}s"
        serving.add(LATE_SITE)
        # The ones left are closed by the handshake timeout.
        T.wait_until(lambda: open_count(socks, closed) == 0, HANDSHAKE_S + 5,
                     "the held connections closed by the handshake timeout")
    finally:
        for s in socks.values():
            s.close()
    T.wait_until(lambda: refused_total("unauthenticated_cap") + refused_total("evicted") -
                 base_refused >= FLOOD - CAP, 5, "the refusals counted in the metrics")
    # Logged as a few summary lines, not one per connection.
    cap_line = re.compile(rf"unauthenticated links at the cap of {CAP} \(\[controller\] "
                          r"max_unauthenticated\): (\d+) new connections closed at once, "
                          r"(\d+) stalled links evicted")
    T.wait_until(lambda: sum(int(a) + int(b) for a, b in cap_line.findall(log())) >=
                 FLOOD - CAP, 5, "the refusals summed up in the log")
    assert len(cap_line.findall(log())) < 20, "the cap must be logged in summaries"
    T.wait_until(lambda: metrics()["nirc_links_unauthenticated"] == 0, 5,
                 "no unauthenticated link left")
    still_serving("a flood of half-open connections")


def test_frame_garbage_and_out_of_range_fields():
    assert_refused(probe("oversize"), MALFORMED, "a length prefix over the 64 KiB cap")
    assert_refused(probe("random", "4096"), what="random bytes")
    assert_refused(probe("unknown-type"), UNKNOWN_MESSAGE, "an unknown message type")
    assert_refused(probe("malformed"), MALFORMED, "a payload that is not protobuf")
    assert_refused(probe("truncated"), what="a truncated frame")
    assert_refused(probe("plain"), what="plain text, no TLS")
    assert_refused(probe("bad-report"), MALFORMED, "more agents ready than logged in",
                   after_hello=True)
    for kind in ("negative", "huge", "string"):
        assert_refused(probe("report-range", kind), MALFORMED, f"a report with a {kind} field",
                       after_hello=True)
    assert_refused(probe("hello-long"), MALFORMED, "a Hello with a 60,000-byte string")
    for needle in ("exceeds the maximum of 65536 bytes", "unknown message type",
                   "malformed frame", "a count exceeds", "pbx_error longer than 512",
                   "Hello strings too long"):
        assert needle in log(), f"controller log lacks '{needle}'"
    still_serving("garbage and out-of-range fields")


def test_message_flood_over_the_rate_limit():
    before = refused_total("rate_limited")
    res = probe("flood", "3000")
    assert res["welcome"], res
    assert res["error_code"] == RATE_LIMITED and res["closed"], res
    assert res["sent"] > BURST, f"closed before the burst allowance was used: {res}"
    assert f"over the rate limit of {RATE} messages/s (burst {BURST})" in log()
    T.wait_until(lambda: events("offline", "%more than 200 messages a second%"), 5,
                 "the rate-limited link in link_events")
    T.wait_until(lambda: refused_total("rate_limited") > before, 5, "the rate limit in metrics")
    still_serving("a message flood")


def test_stop():
    for s, a in env.agents.items():
        a.stop()
    rc = env.controller.stop()
    assert rc == 0, f"nircd exited {rc}:\n{env.controller.tail()}"


if __name__ == "__main__":
    T.main([test_agents_online_with_revocation_configured,
            test_tls_refusals_no_cert_other_ca_expired,
            test_identity_and_role_refusals,
            test_a_second_agent_on_a_live_sites_certificate_is_refused,
            test_revoked_while_up_closed_on_reload_and_refused_after,
            test_blocklisted_fingerprint_then_agent_reloads_a_new_certificate,
            test_controller_certificate_replaced_links_stay_new_links_use_it,
            test_handshake_timeout_bounds_idle_and_slow_clients,
            test_half_open_flood_over_the_cap,
            test_frame_garbage_and_out_of_range_fields,
            test_message_flood_over_the_rate_limit,
            test_stop])
