"""The demo report's computations (scenario/story.py), apart from its I/O:
each function takes what story.py read from nircctl and the database and
returns the report's lines, so they are tested without a demo run
(tests/integration/test_story_report.py)."""
import datetime as dt


def _hms(ms, tz):
    return dt.datetime.fromtimestamp(ms / 1000.0, tz).strftime("%H:%M:%S")


def _dur(business_s, speed):
    """A business duration and its real one, to their timestamps'
    resolution (the business second)."""
    real = business_s / speed
    if business_s >= 120:
        b = f"{business_s / 60:.1f} business min"
    else:
        b = f"{business_s:.0f} business s"
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
    after the consolidation until its next step, (phase what, business ms
    or None, [sources not verified with why]). A phase's move is timed
    from its first directive to the acknowledgement of each site's first
    directive in it; a directive with no acknowledgement is counted as
    unanswered, never as applied."""
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
                lines.append(f"    NOT seen verified (nircctl status) before the next step: "
                             f"{'; '.join(bad)}")
            elif at is not None:
                lines.append(f"    every source's wave verified (nircctl status) by "
                             f"{_hms(at, tz)}: {_dur((at - first) / 1000.0, speed)} after the "
                             "first directive")
    return lines


HALF_HOUR_MS = 30 * 60 * 1000


def _sl(rows):
    """A service level of load minutes (minute_ms, offered, within,
    others) in words: no minute is "not measured", no calls "no calls",
    never 0 %."""
    if not rows:
        return "not measured (no load minute)"
    offered = sum(r[1] for r in rows)
    if not offered:
        return f"no calls in {len(rows)} load minutes"
    return f"{100.0 * sum(r[2] for r in rows) / offered:.1f}% over {offered} calls"


def _erlangs(rows, span_ms):
    """The load the rows offered over span_ms, in Erlangs (calls x their
    measured handle time / the span), or "" when a row with calls has no
    handle time (a 5th field, ms, or None): then it is not known."""
    if any(len(r) < 5 or (r[1] and r[4] is None) for r in rows) or not rows:
        return ""
    return f", {sum(r[1] * r[4] for r in rows if r[1]) / span_ms:.1f} Erlangs offered"


def service_lines(hub, period, rows, pred, tz, routes=()):
    """One hub's simulated service level (answered within the threshold /
    offered) over its period, its worst half hour, and its prediction
    compared with the half hour the prediction was for, not with the whole
    period (a night's average hides its busy hours).

    period: (from_ms, to_ms, words); rows: the hub's load minutes in it,
    (minute_ms, offered, answered_within, from_other_sites[, avg handle
    time ms or None]); pred: None or (Capacity entry of a plan or move
    reply, business ms it predicts, words on what it assumed); routes: as
    for moves_lines, to say when the moves into the predicted half hour
    were acknowledged (before that it did not carry the load predicted)."""
    frm, to, words = period
    others = sum(r[3] for r in rows)
    lines = [f"  {hub:<8} {words}: simulated {_sl(rows)}" +
             (f" ({others} from other provinces)" if sum(r[1] for r in rows) else "")]
    halves = {}
    for r in rows:
        halves.setdefault(frm + (r[0] - frm) // HALF_HOUR_MS * HALF_HOUR_MS, []).append(r)
    judged = [(sum(r[2] for r in v) / sum(r[1] for r in v), k, sum(r[1] for r in v))
              for k, v in halves.items() if sum(r[1] for r in v)]
    if len(judged) > 1:
        w, k, n = min(judged)
        lines.append(f"           worst half hour {_hm(k, tz)}-{_hm(k + HALF_HOUR_MS, tz)}: "
                     f"{100 * w:.1f}% over {n} calls")
    if not pred:
        lines.append("           no prediction")
        return lines
    c, at, assumed = pred
    slot = frm + (at - frm) // HALF_HOUR_MS * HALF_HOUR_MS
    # A hub whose agents nobody measured or configured has no prediction
    # (nircctl --json: sl_after null), not "unstable" nor 0 %.
    if c.get("sl_after") is None:
        p = "no service level (its agents are not known)"
    elif c.get("stable_after", True):
        p = f"{100 * c['sl_after']:.1f}%"
    else:
        p = "unstable (more calls than its agents can answer)"
    inslot = [r for r in rows if slot <= r[0] < slot + HALF_HOUR_MS]
    arrived = max((r["ack_ms"] for r in routes if r["ack_ms"] is not None and
                   slot <= r["sent_ms"] < slot + HALF_HOUR_MS and
                   r["cause"] in ("schedule", "hub-lost", "cutover")), default=None)
    late = f" (sources moving in until {_hm(arrived, tz)})" if arrived is not None else ""
    lines.append(f"           predicted {p} for {_hm(at, tz)} ({assumed}); simulated "
                 f"{_hm(slot, tz)}-{_hm(slot + HALF_HOUR_MS, tz)}: "
                 f"{_sl(inslot)}{_erlangs(inslot, HALF_HOUR_MS)}{late}")
    return lines


def _hm(ms, tz):
    return dt.datetime.fromtimestamp(ms / 1000.0, tz).strftime("%H:%M")


def queue_lines(what, rows, tz):
    """A hub's queue over a period from its load minutes (minute_ms,
    max_queue or None when not measured). A row is one load report, which
    at an accelerated clock spans several business minutes, so rows are
    counted as reports, not minutes; the span is the one measured, not the
    one asked for."""
    known = [r for r in rows if r[1] is not None]
    if not known:
        return [f"  {what:<28} not measured (no load report with a queue figure)"]
    peak = max(r[1] for r in known)
    busy = sum(1 for r in known if r[1] > 0)
    span = f"{_hm(min(r[0] for r in known), tz)}-{_hm(max(r[0] for r in known), tz)}"
    unknown = len(rows) - len(known)
    return [f"  {what:<28} peak {peak:3d} waiting; callers queued in {busy} of {len(known)} "
            f"load reports ({span})" +
            (f"; {unknown} reports without a queue figure" if unknown else "")]


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
    # How far the forecast was from what the provinces measured, over the
    # provinces whose accuracy is stored (the others are named by state).
    acc = [(s["site"], s["accuracy"]) for s in rep["sites"]]
    stored = sorted((a["wape"], site) for site, a in acc if a["state"] == "stored")
    fc = sum(a["forecast_calls"] for _, a in acc if a["state"] == "stored")
    ac = sum(a["actual_calls"] for _, a in acc if a["state"] == "stored")
    others = {}
    for site, a in acc:
        if a["state"] != "stored":
            others.setdefault(a["state"] or "unknown", []).append(site)
    rest = "; not stored: " + "; ".join(f"{st} {', '.join(v)}" for st, v in sorted(others.items()))
    if stored:
        n = len(stored)
        if n % 2:
            w, site = stored[n // 2]
            med = f"{100 * w:.0f}% ({site})"
        else:  # between the two middle provinces, not the upper one
            (w1, s1), (w2, s2) = stored[n // 2 - 1], stored[n // 2]
            med = f"{50 * (w1 + w2):.0f}% (between {s1} {100 * w1:.0f}% and {s2} {100 * w2:.0f}%)"
        lines.append(f"  forecast accuracy over the night (WAPE, {len(stored)} of {len(acc)} "
                     f"provinces): median {med}, worst "
                     f"{100 * stored[-1][0]:.0f}% ({stored[-1][1]}); {fc:.0f} calls forecast, "
                     f"{ac:.0f} measured" + (rest if others else ""))
    else:
        states = sorted({a["state"] for _, a in acc})
        lines.append(f"  forecast accuracy over the night: not stored ({', '.join(states)})")
    return lines
