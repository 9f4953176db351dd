"""The operations files: man pages, bash completion, systemd units.

No controller is needed. The man pages must render without a warning and
name every command and option the binaries' help lists, so they cannot
drift from the code; the completion script must load and offer the
commands and options the binary has; the unit files must pass
`systemd-analyze verify` where it can run here, and always carry the
settings the programs rely on (Type=notify, WatchdogSec, ExecStart, User).

Nothing is installed: a missing `man`, `groff` or `bash` fails the test
with the Debian package that provides it."""
import configparser
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile

import nirclib as T

MAN = os.path.join(T.SRC, "docs", "man")
PAGES = {"nircd": "nircd.8", "nirc-agent": "nirc-agent.8", "nircctl": "nircctl.1"}
COMPLETION = os.path.join(T.SRC, "deploy", "bash-completion", "nircctl")
UNITS = os.path.join(T.SRC, "deploy", "systemd")
EXAMPLES = {"nircd": "nircd.conf.example", "nirc-agent": "nirc-agent.conf.example",
            "nircctl": "nircctl.conf.example"}
# Tool -> the Debian package that provides it.
PACKAGES = {"man": "man-db", "groff": "groff-base", "bash": "bash"}

OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def need(tool):
    path = shutil.which(tool)
    if not path:
        raise AssertionError(f"`{tool}` is not installed: add the Debian package "
                             f"{PACKAGES[tool]} to deploy/install-deps.sh")
    return path


def page_path(prog):
    return os.path.join(MAN, PAGES[prog])


def page_text(prog):
    """The page's roff source with escapes that split words removed, so
    `\\-\\-to` reads --to and `\\fB\\-c\\fR` reads -c."""
    with open(page_path(prog), encoding="utf-8") as f:
        src = f.read()
    src = re.sub(r"\\f[BIRP]|\\f\[[A-Z]*\]|\\&|\\e", "", src)
    return src.replace("\\-", "-")


def mentions(text, word):
    return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", text) is not None


def help_of(*argv):
    r = T.run([T.binary(argv[0])] + list(argv[1:]), check=True)
    return r.stdout


def section(text, title):
    """Lines of a help section ('Commands:') up to the next blank line."""
    lines = text.splitlines()
    start = lines.index(title) + 1
    out = []
    for line in lines[start:]:
        if not line.strip():
            break
        out.append(line)
    return out


def ctl_commands():
    cmds = [line.split()[0] for line in section(help_of("nircctl", "help"), "Commands:")]
    assert {"status", "cutover", "restore", "plan", "history", "schedule", "overflow"} <= set(cmds), cmds
    return cmds


# ---- man pages ----

def test_man_pages_render_without_warnings():
    man, groff = need("man"), need("groff")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    for prog in PAGES:
        path = page_path(prog)
        r = subprocess.run([man, "--warnings", "-l", "-Tutf8", path], capture_output=True,
                           text=True, env=env, timeout=60)
        assert r.returncode == 0 and r.stderr == "", f"man {path}: rc {r.returncode}\n{r.stderr}"
        assert r.stdout.strip(), f"man {path} rendered nothing"
        r = subprocess.run([groff, "-man", "-ww", "-z", path], capture_output=True, text=True,
                           env=env, timeout=60)
        assert r.returncode == 0 and r.stderr == "", f"groff {path}: rc {r.returncode}\n{r.stderr}"
        with open(path, encoding="utf-8") as f:
            src = f.read()
        for macro in (".TH ", ".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH EXIT STATUS",
                      ".SH FILES", ".SH EXAMPLES", ".SH SEE ALSO"):
            assert macro in src, f"{path} has no {macro.strip()}"


def test_nircctl_page_names_every_command_and_option():
    text = page_text("nircctl")
    missing = []
    top = help_of("nircctl", "help")
    for opt in set(OPTION.findall("\n".join(section(top, "Options:")))) | {"--help", "--version"}:
        if not mentions(text, opt):
            missing.append(f"global option {opt}")
    for code in re.findall(r"(\d) [a-z]", top.split("Exit codes:")[1].splitlines()[0]):
        if not re.search(r"^\.B " + code + "$", text, re.M):
            missing.append(f"exit code {code}")
    for cmd in ctl_commands():
        if not re.search(r"^\.SS " + re.escape(cmd) + "$", text, re.M):
            missing.append(f"command {cmd} (a .SS section)")
        if cmd == "help":
            continue
        h = help_of("nircctl", cmd, "--help")
        for opt in sorted(set(OPTION.findall(h))):
            if not mentions(text, opt):
                missing.append(f"{cmd} option {opt}")
        # Subcommands: "nircctl schedule rm|enable|disable NAME".
        for m in re.finditer(r"nircctl " + cmd + r" ([a-z|]+)(?= |$)", h, re.M):
            for sub in m.group(1).split("|"):
                if not re.search(r"(?<![\w-])" + sub + r"(?![\w-])", text):
                    missing.append(f"{cmd} subcommand {sub}")
    assert not missing, "nircctl.1 lacks what the binary lists:\n  " + "\n  ".join(missing)


def test_daemon_pages_name_every_option_and_command():
    missing = []
    for prog in ("nircd", "nirc-agent"):
        text = page_text(prog)
        h = help_of(prog, "--help")
        for short, long_ in re.findall(r"^\s+(-[a-zA-Z]), (--[a-z-]+)", h, re.M):
            for opt in (short, long_):
                if not mentions(text, opt):
                    missing.append(f"{prog}.{PAGES[prog][-1]}: option {opt}")
        if "Commands:" in h:
            for line in section(h, "Commands:"):
                cmd = line.split()[0]
                if not re.search(r"^\.BI? " + re.escape(cmd.replace("-", "\\-")) + r"( |$)",
                                 open(page_path(prog), encoding="utf-8").read(), re.M):
                    missing.append(f"{prog}.{PAGES[prog][-1]}: command {cmd}")
    assert not missing, "man pages lack what the binaries list:\n  " + "\n  ".join(missing)


def test_man_pages_name_every_example_config_key():
    missing = []
    for prog, example in EXAMPLES.items():
        text = page_text(prog)
        with open(os.path.join(T.SRC, "deploy", example)) as f:
            sect = None
            for line in f:
                m = re.match(r"^\[([a-z]+)\]", line)
                if m:
                    sect = m.group(1)
                    if f"[{sect}]" not in text:
                        missing.append(f"{PAGES[prog]}: section [{sect}]")
                    continue
                m = re.match(r"^#?\s*([a-z_]+)\s*=", line)
                if m and not mentions(text, m.group(1)):
                    missing.append(f"{PAGES[prog]}: [{sect}] {m.group(1)}")
    assert not missing, "man pages lack keys of the example configs:\n  " + "\n  ".join(missing)


# ---- bash completion ----

def complete(*words, env_extra=None, cword=None):
    """Calls _nircctl with COMP_WORDS set to `words`, the cursor on the
    last word (or `cword`), and returns COMPREPLY."""
    need("bash")
    script = ('source "$1" || exit 90\n'
              'shift\n'
              'COMP_WORDS=("$@")\n'
              f'COMP_CWORD={cword if cword is not None else len(words) - 1}\n'
              '_nircctl\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = dict(os.environ)
    # Hermetic: no scenario file unless the case names one.
    env["NIRCCTL_SCENARIO"] = "/nonexistent/provinces.json"
    env.update(env_extra or {})
    r = subprocess.run(["bash", "-c", script, "bash", COMPLETION] + list(words),
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0 and r.stderr == "", f"completing {words}: rc {r.returncode}\n{r.stderr}"
    return [w for w in r.stdout.splitlines() if w]


# The first word: not a nircctl on PATH, so no controller is asked.
NOCTL = "/nonexistent/nircctl"


def test_completion_loads():
    need("bash")
    r = subprocess.run(["bash", "-c", 'source "$1" && complete -p nircctl', "bash", COMPLETION],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "-F _nircctl" in r.stdout and r.stdout.strip().endswith(" nircctl"), r.stdout


def test_completion_commands_and_options():
    assert complete(NOCTL, "cu") == ["cutover"]
    got = complete(NOCTL, "cutover", "hubei", "--")
    assert "--to" in got and "--reason" in got, got
    # Every command and global option the binary lists is offered.
    assert set(ctl_commands()) <= set(complete(NOCTL, "")), complete(NOCTL, "")
    top = help_of("nircctl", "help")
    globals_ = set(OPTION.findall("\n".join(section(top, "Options:")))) | {"--help", "--version"}
    assert globals_ <= set(complete(NOCTL, "--")), globals_ - set(complete(NOCTL, "--"))
    # Every option of every command, where options are offered.
    where = {"status": ["status"], "site": ["site", "hubei"], "watch": ["watch"], "map": ["map"],
             "cutover": ["cutover", "hubei"], "restore": ["restore"], "readmit": ["readmit"],
             "plan": ["plan", "hubei"], "history": ["history"], "alarms": ["alarms"], "next": ["next"],
             "capacity": ["capacity", "shaanxi"], "report": ["report", "staffing"],
             "schedule": ["schedule", "add", "night"], "overflow": ["overflow", "add", "gd"]}
    for cmd in ctl_commands():
        if cmd == "help":
            continue
        offered = set(complete(NOCTL, *where[cmd], "--"))
        if cmd in ("schedule", "overflow"):  # one help page for add and set
            offered |= set(complete(NOCTL, cmd, "set", "x", "--"))
        # Global options in a command's examples (nircctl --json status)
        # belong before the command, not to it.
        listed = (set(OPTION.findall(help_of("nircctl", cmd, "--help"))) - globals_) | {"--help"}
        assert listed <= offered, f"{cmd}: completion lacks {sorted(listed - offered)}"
    assert complete(NOCTL, "schedule", "") == ["list", "add", "set", "rm", "enable", "disable"]
    assert complete(NOCTL, "overflow", "") == ["list", "add", "set", "rm"]
    # set's options: add's, and --dry-run (the name comes from the controller).
    got = complete(NOCTL, "schedule", "set", "night", "--")
    assert "--end" in got and "--dry-run" in got, got
    got = complete(NOCTL, "overflow", "set", "gd", "--")
    assert "--cap" in got and "--dry-run" in got and "--source" not in got, got
    assert complete(NOCTL, "alarms", "") == ["ack"]
    assert complete(NOCTL, "report", "") == ["staffing"]
    # File names for --config and the TLS files; nothing that does not exist.
    assert complete(NOCTL, "--config", "/nonexistent-dir/x") == []


def test_completion_sites_from_scenario_file():
    env = {"NIRCCTL_SCENARIO": T.SCENARIO}
    assert sorted(complete(NOCTL, "cutover", "hu", env_extra=env)) == ["hubei", "hunan"]
    got = complete(NOCTL, "cutover", "hubei", "--to", "shaanxi,he", env_extra=env)
    assert sorted(got) == ["shaanxi,hebei", "shaanxi,heilongjiang", "shaanxi,henan"], got
    assert "hubei" in complete(NOCTL, "history", "--site", "hub", env_extra=env)
    # --to=sh, as bash splits it at '='.
    got = complete(NOCTL, "cutover", "hubei", "--to", "=", "sha", env_extra=env)
    assert sorted(got) == ["shaanxi", "shandong", "shanghai", "shanxi"], got
    assert set(complete(NOCTL, "status", "", env_extra=env)) == set(T.scenario_slugs())
    # Without a scenario file and a controller, nothing: no error, no noise.
    assert complete(NOCTL, "cutover", "hu") == []


def test_completion_sites_from_controller():
    """A stand-in nircctl that answers `--json status` as the real one does:
    the completion passes the typed global options on, bounds the run to
    2 s, and prefers the controller's sites to the scenario file's."""
    d = tempfile.mkdtemp(prefix="ops-files-")
    try:
        fake = os.path.join(d, "nircctl")
        log = os.path.join(d, "argv")
        status = {"controller": "nircd-1", "epoch": 1, "server_time_ms": 0,
                  "sites": [{"slug": "atlantis", "route": [{"site": "lemuria", "permille": 1000}]},
                            {"slug": "avalon", "route": []}]}
        with open(fake, "w") as f:
            f.write("#!/bin/sh\n"
                    f"printf '%s\\n' \"$@\" > '{log}'\n"
                    f"cat <<'EOF'\n{json.dumps(status, indent=2)}\nEOF\n")
        os.chmod(fake, stat.S_IRWXU)
        env = {"NIRCCTL_SCENARIO": T.SCENARIO}
        got = complete(fake, "--controller", "10.0.0.1:7443", "cutover", "a", env_extra=env)
        assert sorted(got) == ["atlantis", "avalon"], got
        with open(log) as f:
            argv = f.read().split()
        assert argv == ["--controller", "10.0.0.1:7443", "--timeout", "2s", "--json", "status"], argv
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- systemd units ----

def unit(name):
    p = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    p.optionxform = str
    with open(os.path.join(UNITS, name)) as f:
        p.read_file(f)
    return p


def test_units_have_what_the_programs_rely_on():
    """Always checked, whether or not systemd-analyze runs here."""
    for name, prog in (("nircd.service", "nircd"), ("nirc-agent.service", "nirc-agent"),
                       ("nirc-agent@.service", "nirc-agent")):
        u = unit(name)
        s = u["Service"]
        assert s.get("Type") == "notify", f"{name}: Type={s.get('Type')}"
        assert s.get("WatchdogSec") == "30", f"{name}: WatchdogSec={s.get('WatchdogSec')}"
        assert s.get("Restart") == "on-failure", name
        assert s.get("User") == "nirc", f"{name}: User={s.get('User')}"
        assert s.get("NoNewPrivileges") == "yes", name
        assert s.get("ProtectSystem") == "strict", name
        assert s.get("ProtectHome") == "yes" and s.get("PrivateTmp") == "yes", name
        assert s.get("CapabilityBoundingSet") == "", name
        assert s.get("SystemCallFilter") == "@system-service", name
        assert set(s.get("RestrictAddressFamilies", "").split()) == {"AF_INET", "AF_INET6",
                                                                     "AF_UNIX"}, name
        start, pre = s["ExecStart"].split(), s.get("ExecStartPre", "").split()
        assert start[0] == f"/usr/bin/{prog}", f"{name}: ExecStart={s['ExecStart']}"
        assert pre[:1] == [f"/usr/bin/{prog}"] and "-t" in pre, f"{name}: ExecStartPre={pre}"
        # The options the units pass are ones the binary has.
        h = help_of(prog, "--help")
        for opt in [w for w in start[1:] + pre[1:] if w.startswith("-")]:
            assert re.search(r"(?<![\w-])" + re.escape(opt) + r"(?![\w-])", h), \
                f"{name}: {prog} --help does not list {opt}"
        assert "man:" + prog in u["Unit"].get("Documentation", ""), name
        assert u["Install"].get("WantedBy") == "multi-user.target", name
        # The agent's state file and the controller's database journal
        # ([database] journal) live in /var/lib/nirc.
        # (The agent's also makes nirc/kamailio, for the dispatcher list.)
        assert s.get("StateDirectory", "").split()[0] == "nirc", name
        assert "/var/lib/nirc" in s.get("ReadWritePaths", "").split(), name
    assert "%i" in unit("nirc-agent@.service")["Service"]["ExecStart"]


def analyze_runs(sa, d):
    """Whether systemd-analyze verify works in this container at all:
    a trivially good unit must pass."""
    path = os.path.join(d, "nirc-probe-ok.service")
    with open(path, "w") as f:
        f.write("[Service]\nType=oneshot\nExecStart=/bin/true\n")
    r = subprocess.run([sa, "verify", path], capture_output=True, text=True, timeout=60, cwd=d)
    os.unlink(path)
    return r.returncode == 0, r.stderr


def test_units_pass_systemd_analyze_verify():
    sa = shutil.which("systemd-analyze")
    if not sa:
        print("  systemd-analyze not found: the unit files were parsed only "
              "(test_units_have_what_the_programs_rely_on)", flush=True)
        return
    d = tempfile.mkdtemp(prefix="ops-files-units-")
    try:
        ok, why = analyze_runs(sa, d)
        if not ok:
            print("  systemd-analyze verify cannot run here (a trivial unit fails: "
                  f"{why.strip()[:200]}): the unit files were parsed only", flush=True)
            return
        # verify checks that ExecStart binaries exist and that the
        # Documentation= man pages open: point both at this build and tree.
        for sub, ext in (("man1", ".1"), ("man8", ".8")):
            os.makedirs(os.path.join(d, "man", sub))
            for page in PAGES.values():
                if page.endswith(ext):
                    shutil.copy(os.path.join(MAN, page), os.path.join(d, "man", sub))
        names = ["nircd.service", "nirc-agent.service", "nirc-agent@.service"]
        for name in names:
            with open(os.path.join(UNITS, name)) as f:
                text = f.read()
            with open(os.path.join(d, name), "w") as f:
                f.write(text.replace("/usr/bin/", T.BUILD.rstrip("/") + "/"))
        env = dict(os.environ, MANPATH=os.path.join(d, "man"))
        r = subprocess.run([sa, "verify", "nircd.service", "nirc-agent.service",
                            "nirc-agent@hubei.service"], capture_output=True, text=True,
                           timeout=120, cwd=d, env=env)
        assert r.returncode == 0 and r.stderr.strip() == "", \
            f"systemd-analyze verify: rc {r.returncode}\n{r.stdout}{r.stderr}"
        print("  systemd-analyze verify: nircd.service, nirc-agent.service, "
              "nirc-agent@hubei.service pass", flush=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def cfg_defines(path):
    """kamailio.cfg's `#!define NAME VALUE` defaults, quotes removed."""
    out = {}
    for line in open(path):
        m = re.match(r"#!define\s+(\w+)\s+(.*\S)", line)
        if m:
            out[m.group(1)] = m.group(2).strip('"')
    return out


def conf_keys(path, section, commented=False):
    """KEY = VALUE lines of a section of an example conf (also `#KEY = VALUE`
    ones when commented: the defaults an example shows)."""
    out, cur = {}, None
    for line in open(path):
        line = line.strip()
        m = re.match(r"\[(\w+)\]$", line)
        if m:
            cur = m.group(1)
            continue
        m = re.match(r"(#?)(\w+)\s*=\s*(.*\S)", line)
        if cur == section and m and (not m.group(1) or commented):
            out[m.group(2)] = m.group(3)
    return out


def test_shipped_kamailio_defaults_agree():
    """Issue 14: one dispatcher list path, set and RPC socket in every
    shipped file, and a directory Kamailio (another user) can read it in."""
    kam = os.path.join(T.SRC, "deploy", "kamailio")
    d = cfg_defines(os.path.join(kam, "kamailio.cfg"))
    agent = conf_keys(os.path.join(kam, "nirc-agent.conf.example"), "kamailio")
    generic = conf_keys(os.path.join(T.SRC, "deploy", "nirc-agent.conf.example"), "kamailio",
                        commented=True)
    lst = d["NIRC_DS_LIST"]
    assert agent["dispatcher_list"] == lst, (agent, lst)
    assert generic["dispatcher_list"] == lst, (generic, lst)
    assert agent["set_id"] == d["NIRC_DS_SET"] == generic["set_id"], (agent, d, generic)
    # A relative NIRC_RPC_SOCKET is in Kamailio's runtime directory.
    sock = d["NIRC_RPC_SOCKET"]
    if not sock.startswith("/"):
        sock = "/run/kamailio/" + sock
    assert agent["rpc_socket"] == sock == generic["rpc_socket"], (agent, sock, generic)
    page = open(os.path.join(MAN, "nirc-agent.8")).read()
    assert sock in page.replace("\\-", "-"), "nirc-agent(8) must give the same rpc_socket default"
    assert lst in page, "nirc-agent(8) must name the shipped dispatcher list"
    assert lst in open(os.path.join(T.SRC, "docs", "KAMAILIO.md")).read()
    # The agent's units create the list's directory, and Kamailio may
    # traverse it to the list (created 0644): o+x on every level.
    rel = os.path.relpath(os.path.dirname(lst), "/var/lib")
    for unit in ("nirc-agent.service", "nirc-agent@.service"):
        text = open(os.path.join(UNITS, unit)).read()
        dirs = re.search(r"^StateDirectory=(.*)$", text, re.M).group(1).split()
        mode = int(re.search(r"^StateDirectoryMode=(\d+)$", text, re.M).group(1), 8)
        assert rel in dirs and os.path.dirname(rel) in dirs, (unit, dirs, rel)
        assert mode & 0o001, f"{unit}: StateDirectoryMode {mode:o} keeps Kamailio out of {rel}"


if __name__ == "__main__":
    T.main([test_man_pages_render_without_warnings,
            test_nircctl_page_names_every_command_and_option,
            test_daemon_pages_name_every_option_and_command,
            test_man_pages_name_every_example_config_key,
            test_completion_loads, test_completion_commands_and_options,
            test_completion_sites_from_scenario_file, test_completion_sites_from_controller,
            test_units_have_what_the_programs_rely_on,
            test_units_pass_systemd_analyze_verify,
            test_shipped_kamailio_defaults_agree])
