"""Issue 5: the controller's metrics endpoint is scraped and parsed, the
agent's too, and the read-only status page is loaded in a real headless
Chromium and shows the 31 sites and the current moves."""
import os
import re
import resource
import select
import socket
import time
import urllib.request

import nirclib as T

env = None
HTTP = None

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain"), r.headers["Content-Type"]
        text = r.read().decode()
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE"):
            _, _, name, kind = line.split()
            types[name] = kind
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, f"not Prometheus text format: {line!r}"
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples, types


def test_metrics_endpoint_scraped_and_parsed():
    global env, HTTP
    HTTP = f"127.0.0.1:{T.free_port()}"
    env = T.Env("web", clock_start="2020-01-23T10:00:00+08:00",
                extra_nircd=f"[http]\nlisten = {HTTP}")
    env.start_controller()
    for s in ("hubei", "shaanxi", "xizang"):
        env.start_agent(s)
    T.wait_until(lambda: all(env.status()[s]["load"] for s in ("hubei", "shaanxi", "xizang")),
                 20, "agents reporting")
    r = env.ctl("cutover", "xizang", "--to", "shaanxi", "--reason", "drill", "--force")
    assert r.returncode == 0, r.stderr
    # A copy may be a second old: wait for the acknowledged move.
    T.wait_until(lambda: scrape(f"http://{HTTP}/metrics")[0].get(
        'nirc_directive_acks_total{result="applied"}', 0) >= 2, 10, "acks in the metrics")
    m, types = scrape(f"http://{HTTP}/metrics")
    assert m['nirc_site_link{site="hubei"}'] == 1 and m['nirc_site_link{site="beijing"}'] == 0
    assert m['nirc_site_agents_logged_in{site="hubei"}'] > 0
    assert m["nirc_directives_sent_total"] >= 2
    assert types["nirc_directive_latency_ms"] == "histogram"
    buckets = [v for k, v in m.items() if k.startswith("nirc_directive_latency_ms_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == m["nirc_directive_latency_ms_count"]
    assert "nirc_db_queue_depth" in m and types["nirc_db_queue_depth"] == "gauge"
    # A lone controller leads (test_standby.py has the standby's side).
    assert m["nirc_leader"] == 1 and types["nirc_leader"] == "gauge"
    assert m["nirc_leader_epoch"] == m["nirc_epoch"] > 0
    st = T.status_json(HTTP)
    assert st["role"] == "leader" and st["leader"] == env.addr, st["role"]
    assert st["leader_epoch"] == st["epoch"] and len(st["sites"]) == 31


def test_agent_metrics_endpoint():
    port = T.free_port()
    # nirclib writes the [agent] section; add the endpoint to it.
    path = env.agent_conf("gansu")
    text = open(path).read().replace("[tls]", f"http_listen = 127.0.0.1:{port}\n[tls]", 1)
    with open(path, "w") as f:
        f.write(text)
    env.agents["gansu"] = T.Proc("agent-gansu", [T.binary("nirc-agent"), "-c", path], env.dir)
    # /metrics is served from the agent's start and republished on each
    # change: connected comes first, the PBX's figures with its first read
    # (left out until measured, not published as zeros).
    m = T.wait_until(lambda: (lambda m: m if m.get('nirc_agent_connected{site="gansu"}') == 1 and
                              'nirc_agent_agents_logged_in{site="gansu"}' in m else None)(
        scrape(f"http://127.0.0.1:{port}/metrics")[0]), 15,
        "gansu's metrics say connected, with the PBX's figures")
    assert m['nirc_agent_route_home_permille{site="gansu"}'] == 1000
    assert m['nirc_agent_agents_logged_in{site="gansu"}'] > 0


def test_status_page_in_headless_chromium_shows_31_sites():
    shot = os.path.join(T.BUILD, "status-page.png")
    dom = T.chromium_dom(f"http://{HTTP}/", screenshot=shot)
    rows = re.findall(r'<tr class="site" data-slug="([a-z-]+)"', dom)
    assert len(rows) == 31 and len(set(rows)) == 31, f"{len(rows)} site rows in the page"
    assert dom.count('class="site') >= 62, "the map draws a node per site too"
    assert "xizang" in dom and "100%" in dom, "the move xizang -> shaanxi is drawn"
    assert re.search(r'id="summary"[^>]*>[^<]*31 sites', dom), "summary line"
    assert os.path.getsize(shot) > 10000, "a screenshot a person can look at"


def built():
    m, _ = scrape(f"http://{HTTP}/metrics")
    return {d: m[f'nirc_http_documents_built_total{{document="{d}"}}']
            for d in ("/status.json", "/metrics", "/map.svg", "/")}


def test_documents_are_built_only_when_read():
    """Issue 15: at 20,000 sites, building every document every second
    whether or not anyone read it was most of an idle nircd's CPU. A
    document is now built when a client asks for one older than its
    maximum age (1 s; the map and the page n/50 s): nobody reading it
    costs nothing, and a reader still never gets a copy older than that."""
    b0 = built()
    time.sleep(2.5)  # a window in which nobody reads (not synchronisation)
    b1 = built()
    assert b1["/status.json"] == b0["/status.json"], "status.json built with nobody reading it"
    assert b1["/map.svg"] == b0["/map.svg"] and b1["/"] == b0["/"], "page built unread"
    # Each scrape found the last copy older than 1 s: one build each.
    assert b1["/metrics"] == b0["/metrics"] + 1, (b0, b1)
    # A read builds one fresh copy (the count shows in the next copy of
    # /metrics, up to a second later).
    assert len(T.status_json(HTTP)["sites"]) == 31
    T.wait_until(lambda: built()["/status.json"] > b1["/status.json"], 10, "the build counted")
    assert built()["/status.json"] == b1["/status.json"] + 1


def test_http_past_fd_setsize_and_against_slow_clients():
    """Issue 15: with 1,200 links a select()-based HTTP server dropped every
    client ("socket descriptor (1248) is not less than FD_SETSIZE"), and 70
    slow connections from one address took every HTTP slot. Here nircd
    starts holding 1,100 inherited descriptors, so each socket it opens is
    numbered past 1024; one address opens 20 connections and never finishes
    a request."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4096)
    assert want >= 1200, f"open-file limit {hard} too low for this test"
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    http = f"127.0.0.1:{T.free_port()}"
    e = T.Env("web-fds", extra_nircd=f"[http]\nlisten = {http}")
    try:
        proc = e.start_controller(pass_fds=held)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(os.listdir(f"/proc/{proc.p.pid}/fd")) > 1100
    host, port = http.rsplit(":", 1)
    # Served with sockets numbered past FD_SETSIZE (wait for the leader's
    # metrics: the election may still run).
    T.wait_until(lambda: scrape(f"http://{http}/metrics")[0].get("nirc_leader") == 1, 10,
                 "/metrics served")
    # 20 slow clients from 127.0.0.2: 8 are kept (the per-address limit),
    # the rest are closed at once.
    slow = []
    for _ in range(20):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect((host, int(port)))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    ended = set()
    T.wait_until(lambda: _count_eof(slow, ended) >= 12, 10, "12 slow connections refused")
    assert _count_eof(slow, ended) == 12, "exactly 8 kept for one address"
    # Another address is still served while they hang.
    assert scrape(f"http://{http}/metrics")[0]["nirc_leader"] == 1
    # And the slow ones are dropped after the 10 s idle timeout.
    T.wait_until(lambda: _count_eof(slow, ended) == 20, 25, "slow clients timed out")
    for s in slow:
        s.close()
    e.close()


def _count_eof(socks, ended):
    """How many of socks the server has closed (EOF or reset); `ended`
    remembers them across calls."""
    for i, s in enumerate(socks):
        if i in ended:
            continue
        r, _, _ = select.select([s], [], [], 0)
        if not r:
            continue
        try:
            if s.recv(4096, socket.MSG_DONTWAIT) == b"":
                ended.add(i)
        except BlockingIOError:
            pass
        except ConnectionResetError:
            ended.add(i)
    return len(ended)


if __name__ == "__main__":
    T.main([test_metrics_endpoint_scraped_and_parsed, test_agent_metrics_endpoint,
            test_status_page_in_headless_chromium_shows_31_sites,
            test_documents_are_built_only_when_read,
            test_http_past_fd_setsize_and_against_slow_clients])
