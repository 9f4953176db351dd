"""The demo report's computations (scenario/story_report.py), without a
demo run: each figure from data made here, checked against what it must
say (unknown is not zero; like is compared with like)."""
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


if __name__ == "__main__":
    T.main([test_staffing_compares_like_with_like, test_staffing_unknown_is_not_zero])
