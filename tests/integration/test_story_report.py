"""The demo report's computations (scenario/story_report.py), without a
demo run: each figure from data made here, checked against what it must
say (unknown is not zero; like is compared with like)."""
import datetime as dt
import os
import sys

import nirclib as T

sys.path.insert(0, os.path.join(T.SRC, "scenario"))
import story_report as R  # noqa: E402


def fig(agents, erl=None, known=True):
    return {"known": known, "partial": False, "calls": None, "erlangs": erl,
            "agents": agents if known else None}


def staffing_rep():
    acc = {"state": "pending", "wape": None, "forecast_calls": None, "actual_calls": None}
    sites = [{"site": s, "role": "source", "alone_window": fig(3), "consolidated_window": None,
              "accuracy": acc} for s in ("tianjin", "hubei")]
    sites.append({"site": "shaanxi", "role": "hub", "alone_window": fig(5),
                  "consolidated_window": fig(39, 33.0), "accuracy": acc})
    sites.append({"site": "henan", "role": "hub", "alone_window": fig(12),
                  "consolidated_window": fig(12, 8.5), "accuracy": acc})
    return {"sl_target": 0.8, "sl_threshold_s": 20, "sites": sites,
            "totals": {"alone_window": fig(91), "consolidated_window": fig(51)}}


SCEN = {"tianjin": {"agents_night": 7}, "hubei": {"agents_night": 20},
        "shaanxi": {"agents_night": 40}, "henan": {"agents_night": 30}}


def test_staffing_compares_like_with_like():
    # Alone counts both hubs' own calls: so must consolidated (the first
    # hub's pool plus the other hub's own), 51 here, not shaanxi's 39.
    lines = R.staffing_lines(staffing_rep(), SCEN, ["tianjin", "hubei"], "shaanxi")
    text = "\n".join(lines)
    assert "its own night: 91 agents" in text, text
    assert "the sources at shaanxi: 51 agents" in text, text
    assert "shaanxi 39 for 33.0 Erlangs" in text and "henan 12 for 8.5 Erlangs" in text, text
    # The rosters of the same sites: 7 + 20 + 40 + 30.
    assert "night rosters in the scenario: 97)" in text, text


def test_staffing_unknown_is_not_zero():
    rep = staffing_rep()
    rep["totals"]["consolidated_window"] = fig(None, known=False)
    text = "\n".join(R.staffing_lines(rep, SCEN, ["tianjin", "hubei"], "shaanxi"))
    assert "the sources at shaanxi: unknown agents" in text, text


def test_staffing_accuracy_says_over_which_provinces():
    # Two stored, one pending: the figures are over 2 of 4 provinces and
    # the others are named, not left out silently.
    rep = staffing_rep()
    st = {"state": "stored", "wape": 0.25, "forecast_calls": 100.0, "actual_calls": 80.0}
    rep["sites"][0]["accuracy"] = st
    rep["sites"][1]["accuracy"] = {**st, "wape": 0.5, "forecast_calls": 10.0,
                                   "actual_calls": 20.0}
    rep["sites"][3]["accuracy"] = {**rep["sites"][3]["accuracy"], "state": "not-measured"}
    text = "\n".join(R.staffing_lines(rep, SCEN, ["tianjin", "hubei"], "shaanxi"))
    assert "(WAPE, 2 of 4 provinces): median 38% (between tianjin 25% and hubei 50%), worst 50% " \
        "(hubei); 110 calls " \
        "forecast, 100 measured; not stored: not-measured henan; pending shaanxi" in text, text


def test_staffing_accuracy_median_of_an_odd_count():
    rep = staffing_rep()
    for i, w in enumerate((0.1, 0.3, 0.2)):
        rep["sites"][i]["accuracy"] = {"state": "stored", "wape": w, "forecast_calls": 1.0,
                                       "actual_calls": 1.0}
    text = "\n".join(R.staffing_lines(rep, SCEN, ["tianjin", "hubei"], "shaanxi"))
    assert "median 20% (shaanxi), worst 30% (hubei)" in text, text


UTC = dt.timezone.utc
T0 = 1579701600000  # 2020-01-22 14:00:00 UTC


def route(site, cause, sent_s, result="applied", ack_s=None):
    return {"site": site, "cause": cause, "sent_ms": T0 + sent_s * 1000, "result": result,
            "ack_ms": None if result is None
            else T0 + (sent_s + 1 if ack_s is None else ack_s) * 1000}


def test_moves_counted_from_the_acknowledgements():
    # Three sources in two waves; one never acknowledged: the phase says so
    # and does not count it applied (the story once wrote "22 applied 0
    # failed" whatever the acknowledgements were).
    routes = [route("a", "schedule", 2), route("b", "schedule", 2),
              route("c", "schedule", 300, result=None), route("hub", "senders", 3)]
    lines = R.moves_lines([("22:00 consolidation", T0, T0 + 3600000)], routes, [T0 + 2000,
                          T0 + 300000], 180, UTC)
    text = "\n".join(lines)
    assert "22:00 consolidation: 4 directives to 4 sites (by cause: schedule 3, senders 1) in 2 " \
        "waves; 3 applied, 1 unanswered" in text, text
    assert "acknowledged by 14:00:04: 2 business s, 11 ms real; 1 never acknowledged" in text, text


def test_moves_timed_by_each_sites_first_directive():
    # A later capacity withdrawal in the same phase is a later change, not
    # a move that took an hour; a directive outside the phase is not in it.
    routes = [route("a", "hub-lost", 5), route("b", "hub-lost", 5, ack_s=8),
              route("a", "capacity", 3060), route("a", "schedule", 3540),
              route("z", "schedule-end", 3605)]
    lines = R.moves_lines([("07:00 lockdown", T0, T0 + 3600000)], routes, [], 180, UTC)
    text = "\n".join(lines)
    assert "5 directives" not in text and "4 directives to 2 sites" in text, text
    assert "first sent 14:00:05, each site's first directive acknowledged by 14:00:08: 3 " \
        "business s, 17 ms real" in text, text
    assert "then 2 later changes in the phase (capacity 1, schedule 1), the last sent 14:59:00" \
        in text, text


def test_moves_verified_only_when_status_said_so():
    routes = [route("a", "schedule", 2)]
    phase = [("22:00 consolidation", T0, T0 + 3600000)]
    bad = R.moves_lines(phase, routes, [T0], 180, UTC,
                        ("22:00 consolidation", None, ["a: not judged yet"]))
    assert "NOT seen verified (nircctl status) before the next step: a: not judged yet" in \
        "\n".join(bad), bad
    good = R.moves_lines(phase, routes, [T0], 180, UTC,
                         ("22:00 consolidation", T0 + 302000, []))
    assert "every source's wave verified (nircctl status) by 14:05:02: 5.0 business min, " \
        "1.7 s real after the first directive" in "\n".join(good), good


def minutes(frm_min, to_min, offered, within, others=0, step=3):
    return [(T0 + m * 60000, offered, within, others) for m in range(frm_min, to_min, step)]


def test_service_prediction_against_its_own_half_hour():
    # Busy first half hour (80 %), a quiet night after it (100 %): the
    # prediction for 22:01 is set against 22:00-22:30, not the night's 95 %
    # that the quiet hours lift; the worst half hour is named.
    rows = minutes(0, 30, 10, 8, 9) + minutes(30, 540, 2, 2, 1)
    pred = ({"sl_after": 0.903, "stable_after": True}, T0 + 60000, "plan: 2 sources there")
    lines = R.service_lines("shaanxi", (T0, T0 + 540 * 60000, "22:00-07:00"), rows, pred, UTC,
                            [route("a", "schedule", 2, ack_s=1260)])
    text = "\n".join(lines)
    assert "22:00-07:00: simulated 95.5% over 440 calls (260 from other provinces)" in text, text
    assert "worst half hour 14:00-14:30: 80.0% over 100 calls" in text, text
    assert "predicted 90.3% for 14:01 (plan: 2 sources there); simulated 14:00-14:30: 80.0% " \
        "over 100 calls (sources moving in until 14:21)" in text, text


def test_service_prediction_with_the_load_offered():
    # 10 calls of 180 s every 3 minutes: 100 calls x 180 s / 1800 s = 10
    # Erlangs offered in the predicted half hour, beside the prediction's.
    rows = [r + (180000.0,) for r in minutes(0, 30, 10, 8)]
    pred = ({"sl_after": 0.9}, T0 + 60000, "plan: 12.0 Erlangs on 14 agents")
    text = "\n".join(R.service_lines("henan", (T0, T0 + 3600000, "07:00-08:00"), rows, pred, UTC))
    assert "simulated 14:00-14:30: 80.0% over 100 calls, 10.0 Erlangs offered" in text, text
    # A minute with calls and no handle time: the load is not known.
    rows[3] = rows[3][:4] + (None,)
    text = "\n".join(R.service_lines("henan", (T0, T0 + 3600000, "07:00-08:00"), rows, pred, UTC))
    assert "Erlangs offered" not in text, text


def test_service_unknown_is_not_zero():
    # No load minute: not measured; minutes without calls: no calls; an
    # unstable prediction is not "0.0%".
    pred = ({"sl_after": 0, "stable_after": False}, T0 + 60000, "plan")
    none = "\n".join(R.service_lines("henan", (T0, T0 + 3600000, "07:00-08:00"), [], pred, UTC))
    assert "simulated not measured (no load minute)" in none and "nan%" not in none, none
    assert "predicted unstable" in none and "14:00-14:30: not measured" in none, none
    quiet = "\n".join(R.service_lines("henan", (T0, T0 + 3600000, "07:00-08:00"),
                                      minutes(0, 60, 0, 0), None, UTC))
    assert "simulated no calls in 20 load minutes" in quiet and "no prediction" in quiet, quiet
    # A hub whose agents are not known (sl_after null): neither a figure
    # nor "unstable" (before: "predicted unstable").
    pred = ({"sl_after": None, "stable_after": False, "agents": None}, T0 + 60000, "plan")
    text = "\n".join(R.service_lines("henan", (T0, T0 + 3600000, "07:00-08:00"), [], pred, UTC))
    assert "predicted no service level (its agents are not known) for 14:01" in text, text
    assert "unstable" not in text, text


def test_queue_counts_reports_and_unknown_is_not_zero():
    # One row per load report (3 business minutes each here): counted as
    # reports over the span measured; a report without a queue figure is
    # not an empty queue; no report at all is not "peak 0".
    rows = [(T0 + m * 60000, q) for m, q in ((20, 0), (23, 2), (26, None), (29, 0))]
    text = "\n".join(R.queue_lines("evening, its own calls", rows, UTC))
    assert "peak   2 waiting; callers queued in 1 of 3 load reports (14:20-14:29); 1 reports " \
        "without a queue figure" in text, text
    none = "\n".join(R.queue_lines("evening, its own calls", [(T0, None)], UTC))
    assert "not measured" in none and "peak" not in none, none


if __name__ == "__main__":
    T.main([test_staffing_compares_like_with_like, test_staffing_unknown_is_not_zero,
            test_staffing_accuracy_says_over_which_provinces,
            test_staffing_accuracy_median_of_an_odd_count,
            test_moves_counted_from_the_acknowledgements,
            test_moves_timed_by_each_sites_first_directive,
            test_moves_verified_only_when_status_said_so,
            test_service_prediction_against_its_own_half_hour,
            test_service_prediction_with_the_load_offered, test_service_unknown_is_not_zero,
            test_queue_counts_reports_and_unknown_is_not_zero])
