#!/usr/bin/env python3
"""The reference story, played against a running NIRC network (demo.sh
starts one and calls this). Everything goes through nircctl, as an operator
would; the report at the end is computed from this run's database, its
night staffing and forecast accuracy by `nircctl report staffing`.

  22:00  night consolidation: 22 provinces move to Xi'an in verified waves
  06:00  Wuhan locks down: all of Hubei's calls go to Xi'an (emergency)
  07:00  Xi'an locks down: everyone who depended on it moves to the backup hub
  08:00  the night ends: everyone but Hubei goes home

Times are business time in Asia/Shanghai, on the accelerated clock shared
by every process (start, anchor, speed)."""
import argparse
import datetime as dt
import json
import subprocess
import sys
import time

import story_report as R

CST = dt.timezone(dt.timedelta(hours=8))


def parse_iso(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


class Story:
    def __init__(self, a):
        self.a = a
        self.start = parse_iso(a.start)
        self.anchor = parse_iso(a.anchor)
        self.speed = a.speed
        with open(a.scenario) as f:
            sc = json.load(f)
        self.sites = {s["slug"]: s for s in sc["sites"]}
        self.night = [s["slug"] for s in sc["sites"] if s["night_consolidated"]]
        self.hub, self.backup = sc["primary_hub"], sc["backup_hub"]
        self.phases = []    # (what, from_ms, to_ms): business time, for the report's moves
        self.verified = None  # (phase, business ms or None, [not verified: why])
        self.verifying = None  # the sources whose verification is watched
        self.predicted = {}  # hub -> (capacity prediction, business ms it is for, assumed)
        self.tty = sys.stdout.isatty()

    # ---- clock ----
    def now(self):
        real = dt.datetime.now(dt.timezone.utc)
        return self.start + (real - self.anchor) * self.speed

    def at(self, day, hhmm):
        h, m = map(int, hhmm.split(":"))
        base = self.start.astimezone(CST).date() + dt.timedelta(days=day)
        return dt.datetime(base.year, base.month, base.day, h, m, tzinfo=CST)

    def wait_until(self, when, why):
        self.say(f"waiting for {when.astimezone(CST):%H:%M} ({why})")
        while self.now() < when:
            left = (when - self.now()).total_seconds() / self.speed
            self.live()
            self.poll_verified()
            # Finer while a verification is watched: its time is reported.
            time.sleep(min(0.2 if self.verifying else 2.0, max(0.05, left)))

    # ---- output ----
    def say(self, msg):
        print(f"[{self.now().astimezone(CST):%a %H:%M}] {msg}", flush=True)

    def ctl(self, *args, check=False):
        r = subprocess.run([self.a.nircctl, *args], capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise SystemExit(f"story: nircctl {' '.join(args)} failed ({r.returncode}):\n"
                             f"{r.stdout}{r.stderr}")
        return r

    def status(self):
        r = self.ctl("--json", "status")
        return {s["slug"]: s for s in json.loads(r.stdout)["sites"]} if r.returncode == 0 else {}

    def live(self):
        st = self.status()
        if not st:
            return
        at_hub = {}
        for slug, s in st.items():
            for share in s["route"]:
                if share["site"] != slug:
                    at_hub.setdefault(share["site"], []).append(slug)
        parts = []
        for hub in (self.hub, self.backup):
            load = st[hub]["load"] or {}
            parts.append(f"{hub}: {len(at_hub.get(hub, []))} sources, "
                         f"{load.get('agents_talking', '?')}/{load.get('agents_logged_in', '?')} "
                         f"agents busy, queue {load.get('calls_in_queue', '?')} "
                         f"(peak {load.get('calls_in_queue_peak', '?')}), "
                         f"{load.get('calls_from_other_sites', '?')} calls from others")
        online = sum(s["link"] == "online" for s in st.values())
        line = f"  live: {online}/31 online | " + " | ".join(parts)
        print(("\r" + line[:150].ljust(150)) if self.tty else line, end="" if self.tty else "\n",
              flush=True)

    def wait_routes(self, want, what, timeout_business_h=3):
        """Waits until every site in `want` routes as given (slug -> hub)."""
        deadline = time.monotonic() + timeout_business_h * 3600 / self.speed + 30
        started = time.monotonic()
        while time.monotonic() < deadline:
            st = self.status()
            if st and all([r["site"] for r in st[s]["route"]] == [h] for s, h in want.items()):
                took = time.monotonic() - started
                if self.tty:
                    print()
                self.say(f"{what}: every route acknowledged (nircctl status) after {took:.1f} s "
                         f"real ({took * self.speed / 60:.0f} business minutes)")
                return took
            self.live()
            time.sleep(0.5)
        raise SystemExit(f"story: {what} did not complete")

    def watch_verified(self, sources, phase):
        """From now on, while the story waits (wait_until), watches nircctl
        status until it says every source's wave was verified (its
        `verification`), for the report: an acknowledgement is not a
        verified wave. Watched while waiting for the next step, so the
        demo takes no longer; what was not verified by the end of the wait
        is named in the report."""
        self.verified = (phase, None, [f"{s}: not judged yet" for s in sources])
        self.verifying = sources

    def poll_verified(self):
        if not self.verifying:
            return
        st = self.status()
        if not st:
            return
        v = {s: (st.get(s) or {}).get("verification") or "" for s in self.verifying}
        bad = [f"{s}: {v[s] or 'not judged yet'}" for s in self.verifying
               if not v[s].startswith("verified")]
        phase = self.verified[0]
        if bad:
            self.verified = (phase, None, bad)
            return
        self.verified = (phase, self.ms(self.now()), [])
        self.verifying = None
        if self.tty:
            print()
        self.say(f"{phase}: every wave verified")

    @staticmethod
    def load(c):
        """A prediction's load and staff in words, so that it can be checked,
        with what the load was for a move (the larger of live and the
        forecast ahead, nircctl plan's load_on)."""
        on = c.get("load_on")
        return f"{c['traffic_after_erl']:.1f} Erlangs on {c['agents']} agents" + \
            (f", {on['note']}" if on else "")

    def ms(self, when):
        return int(when.timestamp() * 1000)

    def move(self, what, *args):
        r = self.ctl("--json", *args)
        out = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
        if r.returncode == 1:
            self.say(f"{what}: REFUSED: {out.get('error', r.stderr.strip())}")
            return None, out
        self.say(f"{what}: {out.get('applied', 0)} directive(s) acknowledged, "
                 f"{out.get('failed', 0)} failed, in {out.get('elapsed_ms', 0)} ms "
                 f"(exit {r.returncode})")
        # The move's own capacity prediction, for the report.
        for c in (out.get("plan") or {}).get("capacity", []):
            if c["sources"] and c["hub"] not in self.predicted:
                self.predicted[c["hub"]] = (c, self.ms(self.now()), f"{what}, {self.load(c)}")
        return r.returncode, out

    # ---- the story ----
    def play(self):
        n = len(self.night)
        self.say(f"the night consolidation: {n} provinces to {self.hub} "
                 f"(then {self.backup}), 22:00-08:00, waves of 5")
        self.ctl("schedule", "add", "night", "--sources", ",".join(self.night), "--to",
                 f"{self.hub},{self.backup}", "--start", "22:00", "--end", "08:00", "--tz",
                 "Asia/Shanghai", "--wave-size", "5", check=True)
        plan = json.loads(self.ctl("--json", "plan", "--schedule", "night").stdout)
        # One entry per hub: the prediction for every source it takes, on
        # the load a minute into the window (nircctl plan --schedule).
        at = plan["window"]["start_ms"] + 60000
        for c in plan["capacity"]:
            if c["sources"]:
                self.predicted[c["hub"]] = (c, at, f"plan: {len(c['sources'])} sources there, "
                                                   f"{self.load(c)}")
                self.say(f"plan: {c['hub']} would carry {c['traffic_after_erl']:.1f} Erlangs on "
                         f"{c['agents']} agents: predicted SL {100 * c['sl_after']:.1f}%, "
                         f"{c['agents_needed']} agents needed")

        self.wait_until(self.at(0, "22:00"), "the night window")
        what = "22:00 consolidation"
        self.phases.append((what, self.ms(self.at(0, "22:00")), self.ms(self.at(1, "06:00"))))
        self.wait_routes({s: self.hub for s in self.night}, what)
        self.watch_verified(self.night, what)

        self.wait_until(self.at(1, "06:00"), "dawn in Wuhan")
        self.verifying = None  # what is not verified by now is reported so
        self.phases.append(("06:00 Wuhan lockdown: Hubei to Xi'an", self.ms(self.at(1, "06:00")),
                            self.ms(self.at(1, "07:00"))))
        self.move("06:00 Wuhan lockdown: Hubei to Xi'an", "cutover", "hubei", "--to",
                  f"{self.hub},{self.backup}", "--reason", "Wuhan lockdown")

        self.wait_until(self.at(1, "07:00"), "the Xi'an lockdown")
        self.phases.append((f"07:00 Xi'an lockdown: Shaanxi and its sources to {self.backup}",
                            self.ms(self.at(1, "07:00")), self.ms(self.at(1, "08:00"))))
        # The move's prediction, now, before it is made (the cutover's reply
        # carries one only when it is refused).
        pl = self.ctl("--json", "plan", self.hub, "--to", self.backup)
        if pl.stdout.strip().startswith("{"):
            for c in json.loads(pl.stdout).get("capacity", []):
                if c["sources"]:
                    self.predicted.setdefault(c["hub"], (
                        c, self.ms(self.now()),
                        f"plan: {len(c['sources'])} sources there, {self.load(c)}"))
        rc, out = self.move("07:00 Xi'an lockdown: Shaanxi to the backup hub", "cutover",
                            self.hub, "--to", self.backup, "--reason", "Xi'an lockdown")
        if rc is None:
            # The refused move's prediction: the hub with the refused load.
            for c in (out.get("plan") or {}).get("capacity", []):
                w = c["with_refused"]
                p = {**c, "sl_after": w["sl"], "stable_after": w["stable"],
                     "traffic_after_erl": w["traffic_erl"]} if w else c
                self.predicted.setdefault(c["hub"], (p, self.ms(self.now()),
                                                     f"the refused move, {self.load(p)}"))
            self.say("the support centre has no staff left: the move is forced")
            self.move("07:00 Xi'an lockdown (forced)", "cutover", self.hub, "--to", self.backup,
                      "--reason", "Xi'an lockdown", "--force")
        want = {s: self.backup for s in self.night}
        want[self.hub] = self.backup
        self.wait_routes(want, f"everyone re-homed to {self.backup}")

        self.wait_until(self.at(1, "08:00"), "the end of the night")
        want = {s: s for s in self.night if s != "hubei"}
        want["hubei"] = self.backup
        self.wait_routes(want, "08:00 return of everyone but Hubei")
        self.phases.append(("08:00 return home (all but Hubei)", self.ms(self.at(1, "08:00")),
                            self.ms(self.now())))
        print(self.ctl("status").stdout)

    # ---- the report ----
    def sql(self, q):
        r = subprocess.run(["psql", "-XAtq", "-F", "\t", self.a.db, "-c", q], capture_output=True,
                           text=True, check=True)
        return [l.split("\t") for l in r.stdout.splitlines() if l]

    def report(self):
        night_from = self.at(0, "22:00").astimezone(dt.timezone.utc).isoformat()
        lock_from = self.at(1, "07:00").astimezone(dt.timezone.utc).isoformat()
        night_to = self.at(1, "08:00").astimezone(dt.timezone.utc).isoformat()
        lines = ["", "==== NIRC demo report (from this run's database) ====", ""]
        routes = [{"site": r[0], "cause": r[1], "sent_ms": int(float(r[2])),
                   "result": r[3] or None, "ack_ms": int(float(r[4])) if r[4] else None}
                  for r in self.sql(
                      "SELECT a.target, a.detail->>'cause', extract(epoch FROM a.business_at) * "
                      "1000, k.result, extract(epoch FROM k.business_at) * 1000 FROM audit_log a "
                      "LEFT JOIN LATERAL (SELECT result, business_at FROM directive_acks k WHERE "
                      "k.site = a.target AND k.epoch = (a.detail->>'epoch')::bigint AND "
                      "k.version = (a.detail->>'version')::bigint ORDER BY k.id DESC LIMIT 1) k "
                      "ON true WHERE a.action = 'route' AND a.business_at IS NOT NULL")]
        waves = [int(float(r[0])) for r in self.sql(
            "SELECT extract(epoch FROM business_at) * 1000 FROM audit_log WHERE actor = "
            "'engine' AND action = 'move' AND business_at IS NOT NULL")]
        lines += R.moves_lines(self.phases, routes, waves, self.speed, CST, self.verified)

        # Every route change is an audit entry with its cause (engine
        # "route" entries); flapping shows as many changes at one site in
        # one business hour.
        per_site = self.sql("SELECT target, count(*) FROM audit_log WHERE action = 'route' "
                            "GROUP BY 1 ORDER BY 2 DESC, 1")
        by_cause = self.sql("SELECT detail->>'cause', count(*) FROM audit_log WHERE "
                            "action = 'route' GROUP BY 1 ORDER BY 2 DESC, 1")
        hourly = self.sql("SELECT target, date_trunc('hour', business_at), count(*) FROM "
                          "audit_log WHERE action = 'route' AND detail->>'cause' <> 'senders' "
                          "GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 1")
        total = sum(int(n) for _, n in per_site)
        lines += ["", "Route changes (every directive the engine sent, from the audit trail):"]
        lines.append(f"  {total} changes at {len(per_site)} sites; by cause: " +
                     ", ".join(f"{c} {n}" for c, n in by_cause))
        if per_site:
            lines.append("  most at one site: " +
                         ", ".join(f"{s} {n}" for s, n in per_site[:5]))
        worst = int(hourly[0][2]) if hourly else 0
        where = f" ({hourly[0][0]})" if hourly else ""
        lines.append(f"  most changes of one source's route in one business hour: {worst}{where}")

        lines += ["", "Service level at the hubs (answered within 20 s / offered, from the load "
                  "minutes):"]
        for hub, frm, to, words in ((self.hub, night_from, lock_from, "22:00-07:00, consolidated"),
                                    (self.backup, lock_from, night_to,
                                     "07:00-08:00, everyone re-homed")):
            rows = [(int(float(m)), int(o), int(w), int(x), float(a) if a else None)
                    for m, o, w, x, a in self.sql(
                        f"SELECT extract(epoch FROM minute) * 1000, offered, answered_within, "
                        f"from_other_sites, avg_aht_ms FROM load_minute WHERE site = '{hub}' "
                        f"AND minute >= '{frm}' AND minute < '{to}'")]
            period = (self.ms(parse_iso(frm)), self.ms(parse_iso(to)), words)
            lines += R.service_lines(hub, period, rows, self.predicted.get(hub), CST, routes)

        # The hub's queue: the most callers waiting at once in any minute,
        # alone in the evening against consolidated in the night.
        eve_from = self.start.astimezone(dt.timezone.utc).isoformat()
        lines += ["", f"Queue at {self.hub} (most callers waiting at once, from each load "
                  "report's peak):"]
        for what, frm, to in (("evening, its own calls", eve_from, night_from),
                              ("22:00-07:00, consolidated", night_from, lock_from)):
            rows = [(int(float(m)), int(q) if q else None) for m, q in self.sql(
                f"SELECT extract(epoch FROM minute) * 1000, max_queue FROM load_minute WHERE "
                f"site = '{self.hub}' AND minute >= '{frm}' AND minute < '{to}'")]
            lines += R.queue_lines(what, rows, CST)

        # The product's own report (nircctl report staffing): the night's
        # forecast per 30 minutes through Erlang C, and, the window being
        # over, what each province measured and the forecast's accuracy.
        sid = [s["id"] for s in json.loads(self.ctl("--json", "schedule", "list",
                                                    check=True).stdout)["schedules"]
               if s["name"] == "night"][0]
        # The accuracy is stored two business minutes after the window ends:
        # asked before, every province says "pending" (as the report once
        # did at every run). Waits for it, a few real seconds at most.
        deadline = time.monotonic() + 10
        while True:
            rep = json.loads(self.ctl("--json", "report", "staffing", "--schedule", str(sid),
                                      "--date", f"{self.at(0, '22:00'):%Y-%m-%d}",
                                      check=True).stdout)
            if time.monotonic() > deadline or all(
                    s["accuracy"]["state"] != "pending" for s in rep["sites"]):
                break
            time.sleep(0.2)
        lines += [""] + R.staffing_lines(rep, self.sites, self.night, self.hub)
        lines.append("")
        text = "\n".join(lines)
        print(text)
        if self.a.out:
            with open(self.a.out, "w") as f:
                f.write(text + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nircctl", required=True)
    p.add_argument("--db", required=True, help="libpq conninfo of the demo database")
    p.add_argument("--scenario", required=True)
    p.add_argument("--start", required=True)
    p.add_argument("--anchor", required=True)
    p.add_argument("--speed", type=float, required=True)
    p.add_argument("--out", help="also write the report here")
    a = p.parse_args()
    s = Story(a)
    s.play()
    s.report()


if __name__ == "__main__":
    main()
