#!/usr/bin/env python3
"""Live site lifecycle (issue 15): sites added, changed and removed while
nircd runs, through the real controller, a real nirc-agent with a
certificate of the test PKI, nircctl and PostgreSQL:

- atlantis (a certificate the controller does not know) is refused as not
  configured; `nircctl site add atlantis` (role admin, audited) lets its
  agent in without a restart, and a viewer may not add sites;
- `nircctl site set` changes it (a hub), stored and audited;
- `nircctl site remove` is refused while a cutover moves it and while it
  takes calls, naming what to change first; after the restore it is
  removed, its open link is closed and its agent refused with "site
  atlantis was removed at ... by operator:alice"; its row and history stay;
- `nircd import-sites` run beside the running leader is picked up without
  a restart (a new site, a changed name), says which sites the file does
  not name (kept) and which an operator removed (kept removed), audited;
- the standby, started before all this, leads after the leader is killed
  with the same set of sites (atlantis removed, the imported site known).
"""
import json
import os
import re
import signal
import time

import nirclib as T

LEASE_S = 2
env = None
addr_b = None
procs = {}
APPLY = "#!/bin/sh\ncat > /dev/null\nexit 0\n"
# A call centre the scenario does not have: its own figures, measured.
COLLECT = """#!/bin/sh
echo '{"calls_offered": 2, "calls_answered": 2, "calls_in_queue": 0, "longest_wait_ms": 0,
       "agents_logged_in": 8, "agents_ready": 6, "agents_talking": 2, "agents_not_ready": 0,
       "aht_ms": 180000, "answered_within_threshold": 2, "sl_threshold_s": 20}'
"""


def ctl(*args, expect, cert="operator-alice", controllers=None):
    r = env.ctl(*args, cert=cert, controllers=controllers)
    assert r.returncode == expect, f"nircctl {' '.join(args)}: exit {r.returncode}, expected " \
                                   f"{expect}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def exec_agent(slug):
    """An agent on the exec adapter: the simulator's PBX knows only the
    scenario's provinces and refuses routes naming any other site, which
    a real PBX behind exec does not."""
    for name, text in ((f"collect-{slug}.sh", COLLECT), ("apply.sh", APPLY)):
        path = os.path.join(env.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
    conf_path = env.agent_conf(slug, controllers=f"{env.addr},{addr_b}")
    text = open(conf_path).read().replace("[agent]", "[agent]\nadapter = exec", 1)
    text += (f"\n[exec]\napply_cmd = {env.dir}/apply.sh\n"
             f"collect_cmd = {env.dir}/collect-{slug}.sh\ntimeout = 2s\n")
    with open(conf_path, "w") as f:
        f.write(text)
    env.agents[slug] = T.Proc(f"agent-{slug}", [T.binary("nirc-agent"), "-c", conf_path],
                              env.dir)


def agent_log():
    return env.agents["atlantis"].tail(400)


def audit(action, target):
    return env.sql(f"SELECT actor, detail FROM audit_log WHERE action = '{action}' "
                   f"AND target = '{target}' ORDER BY id")


def test_start():
    global env, addr_b
    env = T.Env("lifecycle", clock_start="2020-01-23T10:00:00+08:00",
                extra_nircd=f"[controller]\nlease_timeout = {LEASE_S}s")
    addr_b = f"127.0.0.1:{T.listen_port()}"
    procs["a"] = env.start_controller(name="nircd")
    assert env.controller_status.startswith("leader"), env.controller_status
    # The standby starts now, before any site changes: it must still lead
    # with the changed set later.
    conf_b = env.controller_conf("nircd-2", addr_b, "nircd-2.conf")
    procs["b"] = env.start_controller(conf=conf_b, name="nircd-2")
    assert env.controller_status.startswith("standby"), env.controller_status
    env.start_agent("shaanxi", controllers=f"{env.addr},{addr_b}")
    exec_agent("hubei")
    exec_agent("atlantis")
    T.wait_until(lambda: "atlantis', which is not configured" in agent_log(), 15,
                 "atlantis refused as not configured")
    T.wait_until(lambda: env.status()["shaanxi"]["load"] and env.status()["hubei"]["load"], 30,
                 "shaanxi and hubei reporting")


def test_add_lets_the_new_agent_in_without_restart():
    # Validation names the fix; nothing is added.
    r = ctl("site", "add", "Atlantis", "--name", "A", "--source", expect=T.EXIT_USAGE)
    assert "not a site slug" in r.stderr and "lowercase" in r.stderr, r.stderr
    r = ctl("site", "add", "atlantis", "--name", "Atlantis", expect=T.EXIT_USAGE)
    assert "--hub" in r.stderr and "--source" in r.stderr, r.stderr
    r = ctl("site", "add", "atlantis", "--name", "Atlantis", "--source", "--roster",
            "25:00-08:00=3", expect=T.EXIT_USAGE)
    assert "25:00" in r.stderr or "roster" in r.stderr, r.stderr
    r = ctl("site", "add", "shaanxi", "--name", "X", "--hub", expect=T.EXIT_REFUSED)
    assert "already exists" in r.stderr and "nircctl site set shaanxi" in r.stderr, r.stderr
    # A viewer and an operator may not change the set of sites.
    for who in ("operator-victor", "operator-olga"):
        r = ctl("site", "add", "atlantis", "--name", "Atlantis", "--source", expect=1, cert=who)
        assert "admin" in r.stderr, r.stderr
    assert env.sql("SELECT count(*) FROM sites WHERE slug = 'atlantis'") == [["0"]]
    pid = procs["a"].p.pid
    t0 = time.monotonic()
    r = ctl("site", "add", "atlantis", "--name", "Atlantis", "--name-zh", "亚特兰蒂斯",
            "--source", "--seats", "12", "--roster", "08:00-22:00=10,22:00-08:00=4",
            "--utc-offset", "+08:00", "--lat", "30.5", "--lon", "100.25",
            "--note", "new centre", expect=0)
    assert "site atlantis added: source" in r.stdout and "may connect now" in r.stdout, r.stdout
    T.wait_until(lambda: env.status().get("atlantis", {}).get("link") == "online", 15,
                 "atlantis online")
    # The agent retries with its own backoff (100 ms .. 2 s here).
    print(f"  atlantis online {time.monotonic() - t0:.2f} s after nircctl site add began")
    assert procs["a"].p.pid == pid and procs["a"].alive(), "nircd restarted"
    row = env.sql("SELECT name_zh, is_hub, seats, roster, capacity_utc_offset_min, removed_at "
                  "FROM sites WHERE slug = 'atlantis'")
    assert row == [["亚特兰蒂斯", "f", "12", "08:00-22:00=10,22:00-08:00=4", "480", ""]], row
    (actor, detail), = audit("site-add", "atlantis")
    assert actor == "operator:alice", actor
    d = json.loads(detail)
    assert d["after"]["seats"] == 12 and d["note"] == "new centre" and d["before"] is None, d
    T.wait_until(lambda: env.status()["atlantis"]["load"], 15, "atlantis reporting")


def test_set_changes_it():
    r = ctl("--json", "site", "set", "atlantis", "--hub", "--name", "Atlantis Hub", expect=0)
    j = json.loads(r.stdout)
    assert j["action"] == "set" and j["hub"] is True and j["name_en"] == "Atlantis Hub" \
        and j["capacity"]["seats"] == 12 and j["removed"] is False, j
    assert env.sql("SELECT is_hub, name_en FROM sites WHERE slug = 'atlantis'") == \
        [["t", "Atlantis Hub"]]
    assert env.status()["atlantis"]["is_hub"] is True
    assert len(audit("site-set", "atlantis")) == 1
    r = ctl("site", "set", "atlantis", expect=T.EXIT_USAGE)
    assert "give what to change" in r.stderr, r.stderr
    r = ctl("site", "set", "nowhere", "--hub", expect=T.EXIT_USAGE)
    assert "no site nowhere" in r.stderr, r.stderr


def test_remove_refused_while_routed_then_removed_and_refused():
    # hubei's calls go to atlantis (a hub now; its exec PBX takes them).
    ctl("cutover", "hubei", "--to", "atlantis", "--reason", "drill", "--force", expect=0)
    r = ctl("site", "remove", "atlantis", expect=T.EXIT_REFUSED)
    assert "site atlantis is in use; change this first" in r.stderr \
        and "takes calls of hubei" in r.stderr and "names it as a hub" in r.stderr, r.stderr
    r = ctl("site", "set", "atlantis", "--source", expect=T.EXIT_REFUSED)
    assert "used as a hub" in r.stderr and "hubei" in r.stderr, r.stderr
    r = ctl("site", "remove", "hubei", expect=T.EXIT_REFUSED)
    assert "it routes" in r.stderr and "nircctl restore hubei" in r.stderr \
        and "names it as a source" in r.stderr, r.stderr
    assert env.sql("SELECT removed_at IS NULL FROM sites WHERE slug = 'atlantis'") == [["t"]]
    assert len(env.sql("SELECT 1 FROM audit_log WHERE action = 'site-remove-refused'")) == 2
    ctl("restore", "hubei", expect=0)
    T.wait_until(lambda: [x["site"] for x in env.status()["hubei"]["route"] or []] == ["hubei"],
                 15, "hubei home")
    events_before = int(env.sql("SELECT count(*) FROM link_events WHERE site = 'atlantis'")[0][0])
    assert events_before > 0
    r = ctl("site", "remove", "atlantis", "--note", "centre closed", expect=0)
    assert re.search(r"site atlantis removed at \S+ by operator:alice", r.stdout), r.stdout
    # Its open link is closed with the reason; every reconnect is refused.
    T.wait_until(lambda: len(re.findall(r"site atlantis was removed at \S+ by operator:alice",
                                        agent_log())) >= 2, 15,
                 "the agent told why, on its link and on a reconnect")
    assert "atlantis" not in env.status()
    r = ctl("site", "atlantis", expect=T.EXIT_USAGE)
    assert "was removed at" in r.stderr and "nircctl history --site atlantis" in r.stderr, \
        r.stderr
    # Soft delete: the row, its history and the audit stay.
    row = env.sql("SELECT removed_by, removed_at IS NOT NULL FROM sites WHERE slug = 'atlantis'")
    assert row == [["operator:alice", "t"]], row
    assert int(env.sql("SELECT count(*) FROM link_events WHERE site = 'atlantis'")[0][0]) \
        > events_before
    (actor, detail), = audit("site-remove", "atlantis")
    assert actor == "operator:alice" and json.loads(detail)["note"] == "centre closed"
    h = json.loads(ctl("--json", "history", "--site", "atlantis", expect=0).stdout)
    assert any(e["action"] == "site-remove" for e in h["entries"]), h


def test_import_sites_is_picked_up_live():
    path = os.path.join(env.dir, "more.json")
    with open(T.SCENARIO) as f:
        sc = json.load(f)
    by = {s["slug"]: s for s in sc["sites"]}
    sites = [dict(by["shaanxi"], name_en="Shaanxi (renamed)"), by["henan"],
             dict(by["henan"], slug="atlantis", name_en="Atlantis again", is_hub=False),
             dict(by["henan"], slug="lemuria", name_en="Lemuria", is_hub=False)]
    sc["sites"] = sites
    with open(path, "w") as f:
        json.dump(sc, f)
    t0 = time.monotonic()
    r = T.run([T.binary("nircd"), "-c", env.nircd_conf, "import-sites", path], check=True)
    t1 = time.monotonic()
    assert "1 added, 2 updated" in r.stdout, r.stdout
    assert "kept removed: 1 site(s) an operator removed: atlantis" in r.stdout, r.stdout
    assert re.search(r"not in the file, kept: 29 site\(s\): anhui,", r.stdout), r.stdout
    T.wait_until(lambda: "lemuria" in env.status(), 10, "lemuria known without a restart")
    print(f"  import-sites took {t1 - t0:.2f} s; lemuria in the leader's status "
          f"{time.monotonic() - t1:.2f} s after it ended (lease {LEASE_S} s: a period of "
          f"{LEASE_S / 4:.2f} s)")
    st = env.status()
    assert st["shaanxi"]["name_en"] == "Shaanxi (renamed)" and "atlantis" not in st \
        and "hubei" in st, st["shaanxi"]
    (actor, detail), = audit("import-sites", path)
    d = json.loads(detail)
    assert actor.startswith("import-sites:") and d["added"] == 1 and d["skipped_removed"] == 1 \
        and d["kept_not_in_file"] == 29, d


def test_standby_leads_with_the_same_set():
    procs["a"].kill()
    def leader_b():
        r = env.ctl("--json", "status", controllers=[addr_b])
        return r.returncode == 0 and json.loads(r.stdout)["controller"] == "nircd-2"
    T.wait_until(leader_b, 20, "nircd-2 leading")
    st = {s["slug"]: s for s in json.loads(
        ctl("--json", "status", expect=0, controllers=[addr_b]).stdout)["sites"]}
    assert "lemuria" in st and "atlantis" not in st and \
        st["shaanxi"]["name_en"] == "Shaanxi (renamed)", sorted(st)
    # atlantis' agent is refused by the new leader with the same reason.
    n = len(re.findall(r"site atlantis was removed at", agent_log()))
    T.wait_until(lambda: len(re.findall(r"site atlantis was removed at", agent_log())) > n, 15,
                 "atlantis refused by the new leader")
    # Added again, its agent gets in at the new leader.
    ctl("site", "add", "atlantis", "--name", "Atlantis", "--source", expect=0,
        controllers=[addr_b])
    T.wait_until(lambda: json.loads(ctl("--json", "status", "atlantis", expect=0,
                                        controllers=[addr_b]).stdout)["sites"][0]
                 ["link"] == "online", 20, "atlantis online again")
    assert env.sql("SELECT removed_at IS NULL FROM sites WHERE slug = 'atlantis'") == [["t"]]


if __name__ == "__main__":
    T.main([test_start, test_add_lets_the_new_agent_in_without_restart, test_set_changes_it,
            test_remove_refused_while_routed_then_removed_and_refused,
            test_import_sites_is_picked_up_live, test_standby_leads_with_the_same_set])
