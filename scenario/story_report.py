"""The demo report's computations (scenario/story.py), apart from its I/O:
each function takes what story.py read from nircctl and the database and
returns the report's lines, so they are tested without a demo run
(tests/integration/test_story_report.py)."""
import math


def moves_lines(moves):
    """moves: (what, seconds, applied, failed) as the story measured them."""
    lines = ["Moves (operator command or wave start to every acknowledgement):"]
    for what, secs, ok, failed in moves:
        lines.append(f"  {what:<48} {secs * 1000:9.0f} ms real  {ok:3d} applied {failed:2d} failed")
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
