"""The demo report's computations (scenario/story.py), apart from its I/O:
each function takes what story.py read from nircctl and the database and
returns the report's lines, so they are tested without a demo run
(tests/integration/test_story_report.py)."""
import datetime as dt
import math


def _hms(ms, tz):
    return dt.datetime.fromtimestamp(ms / 1000.0, tz).strftime("%H:%M:%S")


def _dur(business_s, speed):
    """A business duration and its real one, to their timestamps'
    resolution (the business second)."""
    real = business_s / speed
    b = f"{business_s / 60:.1f} business min" if business_s >= 120 else f"{business_s:.0f} business s"
    r = f"{real:.1f} s real" if real >= 1 else f"{1000 * real:.0f} ms real"
    return f"{b}, {r}"


def _n(k, word):
    return f"{k} {word}" + ("" if k == 1 else "s")


def moves_lines(phases, routes, waves, speed, tz, verified=None):
    """The moves of each phase of the story, from the database alone.

    phases: (what, from_ms, to_ms) in business time; routes: one per
    directive the engine sent (its audit "route" entry), dicts with site,
    cause, sent_ms and its acknowledgement's result and ack_ms (None when
    none came); waves: business times of the engine's "move" entries (a
    schedule's waves); verified: what the story read in nircctl status
    after the consolidation, (phase what, business ms or None, [sources not
    verified with why]). A phase's move is timed from its first directive
    to the acknowledgement of each site's first directive in it; a
    directive with no acknowledgement is counted as unanswered, never as
    applied."""
    lines = ["Moves (each directive the engine sent, from the audit trail, to its "
             f"acknowledgement; business time to the second, real = business / {speed:g}):"]
    for what, frm, to in phases:
        rs = [r for r in routes if frm <= r["sent_ms"] < to]
        nw = sum(1 for w in waves if frm <= w < to)
        if not rs:
            lines.append(f"  {what}: no directive sent")
            continue
        res = {}
        for r in rs:
            key = r["result"] or "unanswered"
            res[key] = res.get(key, 0) + 1
        causes = {}
        for r in rs:
            causes[r["cause"]] = causes.get(r["cause"], 0) + 1
        first = min(r["sent_ms"] for r in rs)
        outcome = ", ".join(f"{n} {k}" for k, n in sorted(res.items(), key=lambda x: -x[1]))
        lines.append(f"  {what}: {_n(len(rs), 'directive')} to "
                     f"{_n(len({r['site'] for r in rs}), 'site')} "
                     f"(by cause: {', '.join(f'{c} {n}' for c, n in sorted(causes.items()))})"
                     + (f" in {_n(nw, 'wave')}" if nw else "") + f"; {outcome}")
        # The move is each site's first directive of the phase; a site
        # routed again later in it (a capacity withdrawal, a hub's senders)
        # is a later change, not the move taking longer.
        firsts, later = {}, []
        for r in sorted(rs, key=lambda r: r["sent_ms"]):
            if r["site"] in firsts:
                later.append(r)
            else:
                firsts[r["site"]] = r
        acks = [r["ack_ms"] for r in firsts.values() if r["ack_ms"] is not None]
        none = sum(1 for r in firsts.values() if r["result"] is None)
        if acks:
            last = max(acks)
            took = (last - first) / 1000.0
            tail = f"; {none} never acknowledged" if none else ""
            lines.append(f"    first sent {_hms(first, tz)}, each site's first directive "
                         f"acknowledged by {_hms(last, tz)}: {_dur(took, speed)}{tail}")
        if later:
            lc = {}
            for r in later:
                lc[r["cause"]] = lc.get(r["cause"], 0) + 1
            lines.append(f"    then {_n(len(later), 'later change')} in the phase "
                         f"({', '.join(f'{c} {n}' for c, n in sorted(lc.items()))}), the last sent "
                         f"{_hms(max(r['sent_ms'] for r in later), tz)}")
        if verified and verified[0] == what:
            at, bad = verified[1], verified[2]
            if bad:
                lines.append(f"    NOT all verified: {'; '.join(bad)}")
            elif at is not None:
                lines.append(f"    every source's wave verified (nircctl status) by {_hms(at, tz)}: "
                             f"{_dur((at - first) / 1000.0, speed)} after the first directive")
    return lines


def service_line(hub, offered, within, others, pred):
    """One hub's simulated service level against its prediction (a plan's
    Capacity entry, or None)."""
    sim = 100.0 * within / offered if offered else float("nan")
    ptxt = f"predicted {100 * pred['sl_after']:.1f}%" if pred else "no prediction"
    return (f"  {hub:<8} {ptxt}, simulated {sim:.1f}% over {offered} calls "
            f"({others} from other provinces)")


def queue_line(what, peak, busy, mins):
    return f"  {what:<28} peak {peak:3d} waiting; callers queued in {busy} of {mins} minutes"


def agents(fig):
    """A staffing figure of `nircctl report staffing --json` in words."""
    if not fig or not (fig["known"] or fig["partial"]):
        return "unknown"
    return f"{fig['agents']}" + ("" if fig["known"] else " (partial forecast)")


def staffing_lines(rep, scenario_sites, night, hub):
    """The night staffing comparison from `nircctl report staffing --json`
    (rep); scenario_sites: slug -> the scenario's site; night: the
    schedule's sources; hub: its first hub."""
    target = f"{100 * rep['sl_target']:.0f}% in {rep['sl_threshold_s']:.0f} s"
    lines = [f"Night agents needed for {target} (nircctl report staffing: the "
             "forecast per 30 minutes, busiest half hour):"]
    tot = rep["totals"]
    hubs = [s for s in rep["sites"] if s["role"] == "hub"]
    # Like for like: each alone is every source and hub answering its own
    # calls; consolidated is the same calls, the sources' at the first hub
    # and each other hub answering its own (the report's consolidated
    # total), never the first hub alone against all of them.
    roster = sum(scenario_sites[s]["agents_night"] for s in night)
    roster_hubs = sum(scenario_sites[s["site"]]["agents_night"] for s in hubs
                      if s["site"] in scenario_sites)
    lines.append(f"  each province staffing its own night: {agents(tot['alone_window'])} "
                 f"agents, the {len(night)} sources and {len(hubs)} hubs each for its own "
                 f"calls (their night rosters in the scenario: {roster + roster_hubs})")
    parts = []
    for s in hubs:
        cw = s["consolidated_window"]
        erl = f" for {cw['erlangs']:.1f} Erlangs" if cw and cw["erlangs"] is not None else ""
        whose = "its own calls and every source's" if s["site"] == hub else "its own calls"
        parts.append(f"{s['site']} {agents(cw)}{erl}, {whose}")
    lines.append(f"  consolidated, the sources at {hub}: {agents(tot['consolidated_window'])} "
                 f"agents ({'; '.join(parts)})")
    # How far the forecast was from what the provinces measured.
    acc = [(s["site"], s["accuracy"]) for s in rep["sites"]]
    stored = sorted((a["wape"], site) for site, a in acc if a["state"] == "stored")
    fc = sum(a["forecast_calls"] for _, a in acc if a["state"] == "stored")
    ac = sum(a["actual_calls"] for _, a in acc if a["state"] == "stored")
    if stored:
        mid = stored[len(stored) // 2]
        lines.append(f"  forecast accuracy over the night (WAPE per province): median "
                     f"{100 * mid[0]:.0f}% ({mid[1]}), worst {100 * stored[-1][0]:.0f}% "
                     f"({stored[-1][1]}); {fc:.0f} calls forecast, {ac:.0f} measured")
    else:
        states = sorted({a["state"] for _, a in acc})
        lines.append(f"  forecast accuracy over the night: not stored ({', '.join(states)})")
    return lines
