"""Admission at the unauthenticated cap under a reconnect storm (issue 15,
point 6; controller/net/admit.c): 400 simulated agents (nirc-swarm, one
certificate each, real TLS) start at once against a controller whose
max_unauthenticated is 16. Every agent must be served, and the storm must
be absorbed by waiting in the listen backlog, not by closing newcomers at
once (which sends agents into a growing backoff) nor by evicting
handshakes in progress: /metrics shows waits at the cap, and no
connection closed at once and no link evicted.

Before admit.c, the same storm was shed: hundreds of connections closed
at once (nirc_links_refused_total{reason="unauthenticated_cap"})."""
import os
import resource
import signal

import nirclib as T

N = 400
CAP = 16
env = None
swarm = None
HTTP = None


def swarm_events(kind):
    return T.swarm_events(swarm.log_path, kind)


def test_storm_is_queued_not_shed():
    global env, swarm, HTTP
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < N + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(N + 256, hard), hard))
    HTTP = f"127.0.0.1:{T.free_port()}"
    env = T.Env("storm-admission", extra_nircd=f"""
[controller]
max_unauthenticated = {CAP}
[http]
listen = {HTTP}
""")
    d = os.path.join(env.dir, "swarm")
    T.run([T.binary("nirc-swarm"), "gen-pki", "--ca-cert", f"{T.PKI}/ca.crt", "--ca-key",
           f"{T.PKI}/ca.key", "--count", str(N), "--prefix", "adm", "--out", d], check=True,
          timeout=300)
    T.run([T.binary("nircd"), "-c", env.nircd_conf, "import-sites",
           os.path.join(d, "scenario.json")], check=True)
    env.start_controller()
    swarm = T.Proc("swarm", [T.binary("nirc-swarm"), "run", "--controllers", env.addr, "--ca",
                             f"{T.PKI}/ca.crt", "--dir", d, "--duration", "0", "--progress"],
                   env.dir)
    T.wait_until(lambda: swarm_events("all_connected") or not swarm.alive(), 120,
                 f"all {N} agents connected")
    assert swarm.alive(), swarm.tail()
    m = T.metrics(HTTP)
    waited = m["nirc_links_waited_at_cap_total"]
    shed = m['nirc_links_refused_total{reason="unauthenticated_cap"}']
    evicted = m['nirc_links_refused_total{reason="evicted"}']
    print(f"{N} agents, cap {CAP}: waited at the cap {waited:.0f}, closed at once {shed:.0f}, "
          f"evicted {evicted:.0f}; all connected "
          f"{swarm_events('all_connected')[0]['t_ms'] / 1000:.2f} s after the start")
    counts = {"waited": waited, "closed_at_once": shed, "evicted": evicted}
    assert waited > 0, counts
    assert shed == 0 and evicted == 0, counts
    swarm.signal(signal.SIGTERM)
    assert swarm.p.wait(30) == 0, swarm.tail()


if __name__ == "__main__":
    try:
        T.main([test_storm_is_queued_not_shed])
    finally:
        if env:
            env.close()
