"""Issue 12, point 6: nothing from a peer or an operator reaches a terminal
or a log raw.

Two sites fail a move with a hostile error text: an escape sequence that
turns a terminal red, a newline followed by a fake nircd log line, a C1
CSI (U+009B) and a right-to-left override (U+202E). Xizang runs the real
agent with the exec adapter, whose PBX script prints the text on stderr
(the agent keeps the first line and blanks C0 controls, so what reaches
the controller is the C1 and bidi controls); Hainan is nirc-probe acting as a
compromised agent that sends the text exactly as given, in its
acknowledgement and then as its PBX error. `nircctl site`, `nircctl
history`, the cutover's own output, the status page and the logs must show
all of it escaped, one record per line.

Operators' text is refused whole with exit 2, naming the code point: by
nircctl before it connects, and by the controller itself when a client
sends it anyway (nirc-probe); nothing moves and nothing is recorded.

Database text is not checked when it is loaded (a row written with psql,
or by an older nircd): a site's names, a cutover's reason and
operator, a schedule's and an overflow rule's name get the same hostile
bytes plus DEL while nircd is stopped, and once it is back nircctl (text
and JSON), the page,
/status.json, /map.svg and /metrics (label values) show them escaped."""
import json
import os
import re
import subprocess
import urllib.request

import nirclib as T

FORGED = "12:00:00.000Z error nircd [ops] FORGED-LINE"
TEXT = f"trunk \x1b[31mDOWN\x1b[0m \u009b2J rtl:\u202eevil\n{FORGED}"
HTTP = f"127.0.0.1:{T.free_port()}"

APPLY = """#!/bin/sh
# A PBX that refuses routes to Xi'an with a hostile error text.
route=$(cat)
case "$route" in
  *'"site": "shaanxi"'*|*'"site":"shaanxi"'*) cat "$(dirname "$0")/hostile.txt" >&2; exit 1 ;;
esac
exit 0
"""
COLLECT = """#!/bin/sh
if [ -f "$(dirname "$0")/broken" ]; then cat "$(dirname "$0")/hostile.txt" >&2; exit 1; fi
echo '{"calls_offered": 2, "calls_answered": 2, "calls_in_queue": 0, "agents_logged_in": 9,
       "agents_ready": 8, "agents_talking": 1, "aht_ms": 295000, "answered_within_threshold": 2,
       "sl_threshold_s": 20}'
"""

# Raw bytes that must never reach a terminal: C0 (but the line ends), DEL,
# C1 (UTF-8 C2 80..C2 9F), the separators and the bidirectional controls.
RAW = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8-\xae]|"
                 rb"\xe2\x81[\xa6-\xa9]|\xe2\x80[\x8e\x8f]|\xd8\x9c")

env = None
probe = None
# Planted in the database before nircd starts: DEL too (jansson leaves it raw).
DBTEXT = "db \x1b[31mRED\x7f \u009b2J \u202eevil\nFORGED"


def raw_free(what, data):
    m = RAW.search(data)
    assert not m, f"{what}: raw {m.group(0)!r} at byte {m.start()}:\n{data[max(0, m.start() - 300):m.start() + 100]!r}"
    for line in data.split(b"\n"):
        assert not line.startswith(FORGED.encode()), f"{what}: a forged line:\n{data!r}"


def ctl_bytes(*args, cert="operator-alice"):
    argv = [T.binary("nircctl"), "--controller", env.addr, "--ca", f"{T.PKI}/ca.crt",
            "--cert", f"{T.PKI}/{cert}.crt", "--key", f"{T.PKI}/{cert}.key", "--timeout", "3s",
            *args]
    return subprocess.run(argv, capture_output=True, timeout=60)


def write_exec_agent(slug):
    with open(os.path.join(env.dir, "hostile.txt"), "w") as f:
        f.write(TEXT + "\n")
    for name, body in (("apply.sh", APPLY), ("collect.sh", COLLECT)):
        path = os.path.join(env.dir, name)
        with open(path, "w") as f:
            f.write(body)
        os.chmod(path, 0o755)
    conf = env.agent_conf(slug)
    text = open(conf).read().replace("[agent]", "[agent]\nadapter = exec", 1)
    text += (f"\n[exec]\napply_cmd = {env.dir}/apply.sh\ncollect_cmd = {env.dir}/collect.sh\n"
             "timeout = 2s\n")
    with open(conf, "w") as f:
        f.write(text)
    env.agents[slug] = T.Proc(f"agent-{slug}", [T.binary("nirc-agent"), "-c", conf], env.dir)


def plant_database_text():
    """Rows as psql may write them: qinghai (no agent here) renamed, moved by
    a cutover with the text as reason and operator, and a disabled schedule
    and overflow rule named by it."""
    lit = "convert_from(decode('%s', 'hex'), 'UTF8')" % DBTEXT.encode().hex()
    env.sql(f"UPDATE sites SET name_en = {lit}, name_zh = {lit} "
            "WHERE slug = 'qinghai';"
            "INSERT INTO cutovers (id, sources, hubs, reason, operator, created_at) VALUES "
            f"(900001, '{{qinghai}}', '{{shaanxi}}', {lit}, {lit}, now());"
            "INSERT INTO schedules (id, name, sources, hubs, start_min, end_min, days, tz, "
            f"enabled, created_by) VALUES (900002, {lit}, '{{gansu}}', '{{shaanxi}}', 1320, 480, "
            f"127, 'Asia/Shanghai', false, {lit});"
            "INSERT INTO overflow_rules (id, name, source, hubs, share_cap_permille, enabled, "
            f"created_by) VALUES (900003, {lit}, 'gansu', '{{shaanxi}}', 300, false, {lit})")


def test_setup():
    global env, probe
    env = T.Env("hostile-text", clock_start="2020-01-23T10:00:00+08:00",
                extra_nircd=f"ack_timeout = 500ms\nmax_resends = 1\n[http]\nlisten = {HTTP}")
    env.start_controller()
    env.start_agent("shaanxi")
    write_exec_agent("xizang")
    probe = subprocess.Popen(
        [T.binary("nirc-probe"), "--addr", env.addr, "--ca", f"{T.PKI}/ca.crt",
         "--cert", f"{T.PKI}/site-hainan.crt", "--key", f"{T.PKI}/site-hainan.key",
         "--wait", "240", "hostile-agent", TEXT],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    T.wait_until(lambda: all(env.status()[s]["load"] for s in ("xizang", "shaanxi", "hainan")),
                 20, "agents and the hostile probe reporting")


def test_agent_text_is_escaped_in_cutover_site_and_history():
    for src, shown in (("xizang", "[31mDOWN [0m \\u{9b}2J rtl:\\u{202e}evil"),
                       ("hainan", "\\x1b[31mDOWN\\x1b[0m \\u{9b}2J rtl:\\u{202e}evil\\n12:00")):
        r = ctl_bytes("cutover", src, "--to", "shaanxi", "--reason", f"drill {src}")
        # Exit 5: the source failed, so no calls moved (only its hub applied).
        assert r.returncode == 5, f"{src}: a failed move exits 5: {r}"
        raw_free(f"cutover {src}", r.stdout + r.stderr)
        assert shown.encode() in r.stdout + r.stderr, (shown, r.stdout, r.stderr)
        T.wait_until(lambda: "excluded" in env.status()[src]["active_rule"], 15,
                     f"{src} rolled back and excluded")
        out = ctl_bytes("site", src)
        assert out.returncode == 0, out
        raw_free(f"site {src}", out.stdout)
        assert shown.encode() in out.stdout, out.stdout
    # The PBX errors too: both sites' reports now say the PBX is unreadable.
    open(os.path.join(env.dir, "broken"), "w").close()
    for src, shown in (("xizang", "\\u{202e}evil"), ("hainan", "\\x1b[31mDOWN")):
        T.wait_until(lambda: env.status()[src]["load"].get("pbx_unreadable"), 15,
                     f"{src}'s PBX unreadable")
        out = ctl_bytes("site", src)
        raw_free(f"site {src}", out.stdout)
        line = [l for l in out.stdout.split(b"\n") if b"PBX UNREADABLE" in l]
        assert line and shown.encode() in line[0], out.stdout

    hist = ctl_bytes("history", "--limit", "500")
    assert hist.returncode == 0, hist
    raw_free("history", hist.stdout)
    rollbacks = [l for l in hist.stdout.split(b"\n") if b" rollback " in l]
    assert len(rollbacks) == 2, hist.stdout
    assert any(b"\\n" + FORGED.encode() in l for l in rollbacks), rollbacks
    # JSON keeps the text as it is, escaped by JSON itself, and stays valid.
    j = json.loads(ctl_bytes("--json", "history", "--action", "rollback").stdout)
    assert any(TEXT in e["detail"]["reason"] for e in j["entries"]), j
    j = json.loads(ctl_bytes("--json", "site", "hainan").stdout)
    assert j["sites"][0]["load"]["pbx_error"] == TEXT, j
    # A row written with psql may hold DEL and C1, which jansson leaves raw:
    # nircctl writes them as \u escapes (common/jsonio.c).
    env.sql("INSERT INTO audit_log (actor, action, target, detail) VALUES ('dba', 'note', "
            "'gansu', jsonb_build_object('reason', 'del' || chr(127) || ' csi' || chr(155)))")
    out = ctl_bytes("--json", "history", "--action", "note").stdout
    raw_free("history --json", out)
    assert b"del\\u007F csi\\u009B" in out, out
    assert json.loads(out)["entries"][0]["detail"]["reason"] == "del\x7f csi\x9b", out


def test_logs_and_status_page_hold_no_raw_text():
    # The page is published once a second: wait for one that shows both
    # sites' texts (an earlier one may hold xizang's exclusion only).
    def page_with_both():
        page = urllib.request.urlopen(f"http://{HTTP}/", timeout=5).read()
        return page if b"\\x1b[31mDOWN" in page and b"\\u{202e}evil" in page else None
    page = T.wait_until(page_with_both, 10, "the status page showing both sites' escaped texts")
    raw_free("status page", page)
    for p in (env.controller, env.agents["xizang"]):
        with open(p.log_path, "rb") as f:
            log = f.read()
        raw_free(p.log_path, log)
    with open(env.controller.log_path, "rb") as f:
        log = f.read()
    assert b"\\n" + FORGED.encode() in log, "the hostile text reached nircd's log escaped"


def holds(value, text):
    """Whether a string anywhere in a decoded JSON document contains text."""
    if isinstance(value, str):
        return text in value
    if isinstance(value, dict):
        value = list(value.values())
    return isinstance(value, list) and any(holds(v, text) for v in value)


def test_database_text_is_escaped_everywhere():
    # Rules are read when a controller starts leading: plant, then restart.
    env.controller.stop()
    plant_database_text()
    env.start_controller()
    T.wait_until(lambda: "900001" in env.status()["qinghai"]["active_rule"], 15,
                 "the planted cutover in force")
    shown = b"\\x1b[31mRED\\x7f \\u{9b}2J \\u{202e}evil\\nFORGED"
    for args in (["status", "--all"], ["site", "qinghai"], ["schedule", "list"],
                 ["overflow", "list"], ["--json", "status", "--all"], ["--json", "site", "qinghai"],
                 ["--json", "schedule", "list"], ["--json", "overflow", "list"]):
        r = ctl_bytes(*args)
        assert r.returncode == 0, (args, r)
        raw_free(" ".join(args), r.stdout + r.stderr)
        if args[0] == "--json":
            assert holds(json.loads(r.stdout), DBTEXT), (args, r.stdout)
        elif args[0] != "status":
            assert shown in r.stdout, (args, r.stdout)

    def fetch(path):
        return urllib.request.urlopen(f"http://{HTTP}{path}", timeout=5).read()
    # The page and /status.json are published once a second: one that
    # names qinghai's reason, which the first may not yet.
    T.wait_until(lambda: b"RED" in fetch("/status.json"), 10, "/status.json with qinghai")
    for path in ("/", "/status.json", "/map.svg", "/metrics"):
        raw_free(path, fetch(path))
    metrics = fetch("/metrics").decode()
    for line in metrics.split("\n"):
        assert not line or line.startswith("#") or re.fullmatch(
            r'[a-z_:]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? \S+', line), f"/metrics: {line!r}"


def test_operator_text_refused_by_nircctl_and_by_the_controller():
    def snapshot():
        return (env.sql("SELECT count(*) FROM cutovers"), env.sql("SELECT count(*) FROM audit_log"),
                env.sql("SELECT count(*) FROM directives"),
                {s: v["route"] for s, v in env.status().items()})

    before = snapshot()
    r = ctl_bytes("cutover", "gansu", "--to", "shaanxi", "--reason", "peak\u202e")
    assert r.returncode == T.EXIT_USAGE, r
    assert b"the reason contains a control character (U+202E at byte 5); remove it" in r.stderr, r
    raw_free("refusal", r.stderr)
    for args, words in ((["schedule", "add", "night\x1b[2J", "--sources", "gansu", "--to",
                          "shaanxi", "--start", "22:00", "--end", "08:00"],
                         b"the schedule name contains a control character (U+001B at byte 6)"),
                        (["overflow", "rm", "gd\u009b"],
                         b"the overflow rule name contains a control character (U+009B"),
                        (["restore", "gansu", "--reason", "done\nFORGED"],
                         b"(U+000A at byte 5)")):
        r = ctl_bytes(*args)
        assert r.returncode == T.EXIT_USAGE and words in r.stderr, (args, r)
        raw_free(" ".join(args), r.stderr)
    # The controller is the boundary: a client that sends the text anyway
    # is refused with INVALID (nircctl exit 2), and the refusal names it.
    out = subprocess.run(
        [T.binary("nirc-probe"), "--addr", env.addr, "--ca", f"{T.PKI}/ca.crt",
         "--cert", f"{T.PKI}/operator-alice.crt", "--key", f"{T.PKI}/operator-alice.key",
         "operator-text", "peak\u202e"], capture_output=True, text=True, timeout=30)
    res = json.loads(out.stdout)
    assert res["error_code"] == 13, res  # ERROR_CODE_INVALID
    assert res["error_message"] == ("the reason contains a control character (U+202E at byte "
                                     "5); remove it"), res
    assert snapshot() == before, "a refused text moved or recorded something"
    with open(env.controller.log_path, "rb") as f:
        log = f.read()
    assert b"cutover refused: the reason contains a control character (U+202E" in log
    raw_free("nircd log", log)


def test_close():
    if probe and probe.poll() is None:
        probe.terminate()
        probe.wait(10)
    env.close()


if __name__ == "__main__":
    T.main([test_setup, test_agent_text_is_escaped_in_cutover_site_and_history,
            test_logs_and_status_page_hold_no_raw_text,
            test_operator_text_refused_by_nircctl_and_by_the_controller,
            test_database_text_is_escaped_everywhere, test_close])
