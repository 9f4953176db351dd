"""Issue 5: the controller's metrics endpoint is scraped and parsed, the
agent's too, and the read-only status page is loaded in a real headless
Chromium and shows the 31 sites and the current moves."""
import os
import re
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
    # The page is rebuilt once a second: wait for the acknowledged move.
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
    T.wait_until(lambda: scrape(f"http://127.0.0.1:{port}/metrics")[0].get(
        'nirc_agent_connected{site="gansu"}') == 1, 15, "gansu's metrics say connected")
    m, _ = scrape(f"http://127.0.0.1:{port}/metrics")
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


if __name__ == "__main__":
    T.main([test_metrics_endpoint_scraped_and_parsed, test_agent_metrics_endpoint,
            test_status_page_in_headless_chromium_shows_31_sites])
