"""nircctl --json: every command's output against the schema of
docs/CLI-JSON.md, on a live controller with three agents.

The schema is written here as Python dicts; a test checks that it is what
the document says (keys, types, required or not), and the others run each
command and validate what it prints: every documented key there with its
type, and no key the document does not list, so the document and the code
cannot drift apart. The exit statuses are checked with the output: 0 done,
1 refused (a JSON refusal on stdout, even with --json), 2 usage and
3 unreachable (nothing on stdout), 5 not applied (the source failed, only
its hub applied; exit 4, partially applied, is unit-tested with the other
verdicts: test_ctl_move).

Daytime business clock, as in test_routing: at 10:00 on 2020-01-23 Hubei
alone would overload Shaanxi, so `plan hubei --to shaanxi` is refused and
a cutover of it needs --force; Xizang's few calls fit."""
import json
import os
import re
import signal

import nirclib as T

DOC = os.path.join(T.SRC, "docs", "CLI-JSON.md")
SITES = ("hubei", "shaanxi", "xizang")
env = None


# ---- the documented schema ----

class Opt:
    """An optional key of an object."""

    def __init__(self, name):
        self.name = name

    def __hash__(self):
        return hash(self.name)

    def __eq__(self, other):
        return isinstance(other, Opt) and other.name == self.name


ANY_OBJECT = "object"  # an object of any keys (the audit detail, before its action is known)
NULL = None


def enum(*words):
    return frozenset(words)


ROUTE_SHARE = {"site": str, "permille": int}
MEASURED = (int, NULL)  # null: not measured, or the PBX unreadable (not_measured names it)
LOAD = {
    "site": str, "timestamp_ms": int, "interval_ms": int, "calls_offered": MEASURED,
    "calls_answered": MEASURED, "calls_abandoned": MEASURED, "calls_in_queue": MEASURED,
    "longest_wait_ms": MEASURED, "agents_logged_in": MEASURED, "agents_ready": MEASURED,
    "agents_talking": MEASURED, "agents_not_ready": MEASURED, "aht_ms": MEASURED,
    "answered_within_threshold": MEASURED, "sl_threshold_s": MEASURED,
    "calls_from_other_sites": MEASURED, "calls_routed_away": MEASURED, "routed_to": ANY_OBJECT,
    "routing_measured": bool,
    "calls_in_queue_peak": MEASURED, "pbx_unreadable": bool, "service_level": (float, NULL),
    "not_measured": [str],
    Opt("pbx_error"): str,
}
CAPACITY_SOURCE = (enum("measured", "configured", "unknown"), NULL)
SITE_STATUS = {
    "slug": str, "name_en": str, "name_zh": str, "is_hub": bool,
    "link": enum("online", "stale", "offline", "never-seen"), "state_since_ms": int,
    "report_age_ms": int, "peer": str, "active_rule": str, "route": ([ROUTE_SHARE], NULL),
    "route_unknown": bool, "route_unheard": bool, "route_unverified": bool, "held_home": bool,
    "load": (LOAD, NULL), Opt("note"): str, "inbound_credited_total": int,
    Opt("verification"): str,
}
ALARM = {"id": int, "kind": enum("capacity", "routing", "directive", "site_down", "database",
                                  "journal", "identity", "pbx", "report", "moved", "notify", "superseded",
                                  "clock", "rule_load", "leadership", "sites_load", "agent"),
         "subject": str, "severity": enum("critical", "major", "warning"), "message": str, "raised_ms": int,
         Opt("raised_business_ms"): int, "active": bool, "cleared_ms": (int, NULL),
         "acked_ms": (int, NULL), "acked_by": (str, NULL), "quiet_ms": (int, NULL),
         "clears_in_ms": (int, NULL)}
ALARMS = {"alarms": [ALARM], "record": bool, Opt("unsaved_changes"): int}
ALARM_ACK_DETAIL = {"id": int, "kind": str, "subject": str, "message": str, "note": str}
SITE_RULE = {"kind": enum("cutover", "schedule", "overflow"), "id": int, "name": str,
             "reason": str, "end_ms": int, "detail": str, "excluded": bool}
HUB_STATE = {"slug": str, "permille": int, "link": enum("online", "stale", "offline", "never-seen"),
             "report_age_ms": int, "pbx_unreadable": bool, "note": str}
SITE_PBX_EVENT = {"at_ms": int, "late_ms": int, "at_or_before": bool, "event": str, "detail": str}
SITE_STATUS.update({"rule": (SITE_RULE, NULL), "moved": bool, "receives_from": int,
                    "problems": [str], Opt("hubs"): [HUB_STATE],
                    Opt("pbx_events"): [SITE_PBX_EVENT], Opt("pbx_events_since_ms"): int,
                    Opt("pbx_events_from"): enum("received", "loading", "database", "load_failed",
                                                 "unknown"),
                    Opt("pbx_events_asked_ms"): (int, NULL), Opt("pbx_events_load_error"): str})
STATUS_COUNTS = {"sites": int, "online": int, "stale": int, "offline": int, "never_seen": int,
                 "route_not_known": int}
STATUS_PAGING = {"offset": int, "returned": int, "matched": int, "complete": bool}
STATUS = {"controller": str, "epoch": int, "server_time_ms": int, "sites": [SITE_STATUS],
          "alarms": [ALARM], Opt("filters"): [str],
          "counts": STATUS_COUNTS, "paging": STATUS_PAGING, "alarms_total": int}
NEXT_HUB = {"hub": str, "sl_after": (float, NULL), "stable": bool, "agents": (int, NULL),
            "agents_needed": int,
            "sources": int, "refused_sources": [str], "capacity_source": CAPACITY_SOURCE}
NEXT_EVENT = {"at_ms": int,
              "kind": enum("schedule-start", "schedule-end", "schedule-skip", "cutover-expiry"),
              "rule_kind": enum("schedule", "cutover"), "rule_id": int, "rule_name": str,
              "reason": str, "sources": [str], "hubs": [str], Opt("wave_size"): int,
              Opt("waves"): int, Opt("tz"): str, Opt("end_ms"): int,
              Opt("predictions"): ([NEXT_HUB], NULL), Opt("alarms"): [str]}
NEXT = {"from_ms": int, "until_ms": int, "events": [NEXT_EVENT], "route_not_known": (int, NULL),
        "route_not_known_sites": [str]}
PLANNED_MOVE = {"site": str, "route": [ROUTE_SHARE], "reason": str, "revert_at_ms": int}
REFUSED_LOAD = {"source": str, "traffic_erl": float, "sl": float, "asa_s": (float, NULL),
                "occupancy": float, "agents_needed": int, "stable": bool}
LOAD_ON = {"basis": enum("live", "forecast", "live_unchecked"), "live_erl": float,
           "forecast_erl": (float, NULL), "note": str}
CAPACITY = {
    "hub": str, "traffic_before_erl": float, "traffic_after_erl": float, "agents": (int, NULL),
    "sl_before": (float, NULL), "sl_after": (float, NULL), "asa_after_s": (float, NULL),
    "occupancy_after": (float, NULL), "agents_needed": int, "stable_after": bool, "refused": bool,
    "sl_target": float, "sl_threshold_s": float, "sources": [str], "refused_sources": [str],
    "with_refused": (REFUSED_LOAD, NULL), "forced": bool, "capacity_source": CAPACITY_SOURCE,
    "capacity_note": (str, NULL), "load_on": (LOAD_ON, NULL),
}
HUB_NEED = {"hub": str, "agents_needed": (int, NULL), "agents": (int, NULL), "why": str,
            "capacity_source": CAPACITY_SOURCE}
REFUSED_SOURCE = {"source": str, "why": str, "hubs": [HUB_NEED]}
PLAN_WINDOW = {"schedule": str, "start_ms": int, "end_ms": int, "wave_size": int, "waves": int,
               "disabled": bool}
PLAN_DEMAND = {"site": str, "hub": bool, "calls_per_s": (float, NULL), "aht_s": (float, NULL),
               "source": enum("history", "scenario", "live"), "note": str, "weeks": (int, NULL)}
PLAN = {"moves": [PLANNED_MOVE], "capacity": [CAPACITY], "alarms": [str], "refused": bool,
        "refusal": str, "refused_sources": [REFUSED_SOURCE], Opt("window"): PLAN_WINDOW,
        Opt("demand"): [PLAN_DEMAND], "route_not_known": int, "route_not_known_sites": [str]}
FORCED_OVER = {"hub": str, "traffic_after_erl": float, "agents": (int, NULL), "agents_needed": int,
               "sl_after": (float, NULL), "asa_after_s": (float, NULL), "stable_after": bool,
               "load_on": (LOAD_ON, NULL)}
OUTCOME = {"site": str, "result": enum("applied", "rejected", "failed", "pending", "unknown"),
           "detail": str, "version": int, "latency_ms": int, "hub": bool, "unverified": bool,
           "outcome_unknown": bool}
MOVE = {"ok": bool, "cutover_id": int, "dry_run": bool, "applied": int, "failed": int,
        "pending": int, "elapsed_ms": int, "outcomes": [OUTCOME], "plan": (PLAN, NULL),
        "forced_over": [FORCED_OVER], "force_warning": str, Opt("expires_ms"): (int, NULL),
        Opt("ended"): (str, NULL),
        Opt("warning"): str}
AUDIT_ENTRY = {"id": int, "at_ms": int, Opt("business_at_ms"): int, "actor": str, "action": str,
               "target": str, "detail": (ANY_OBJECT, NULL), Opt("recorded_at_ms"): int,
               Opt("recorded_business_at_ms"): int}
HISTORY = {"entries": [AUDIT_ENTRY], "unsaved_changes": int, "complete": (bool, NULL),
           "next_before_id": (int, NULL), "window_clock": enum("business", "real")}
DIRECTIVE = {"site": str, "epoch": int, "version": int, "route": [ROUTE_SHARE],
             "inbound": [ROUTE_SHARE], "reason": str, "revert_at_ms": int}
CUTOVER_DETAIL = {"cutover_id": int, "sources": [str], "hubs": [str], "reason": str,
                  "force": bool, "expires_ms": int, "share_permille": int,
                  "forced_over": [FORCED_OVER], "directives": [DIRECTIVE]}
EXCLUDED_FROM = {"rule": enum("cutover", "schedule", "overflow", "default"), "rule_id": int}
CUTOVER_TERMS = {"hubs": [str], "share_permille": int, "expires_ms": int}
AMEND_DETAIL = {"cutover_id": int, "before": CUTOVER_TERMS, "after": CUTOVER_TERMS, "reason": str,
                "force": bool, "forced_over": [FORCED_OVER], "directives": [DIRECTIVE]}
READMIT_DETAIL = {"sites": [str], "excluded_from": [EXCLUDED_FROM], "reason": str,
                  "directives": [DIRECTIVE]}
RESTORE_DETAIL = {"sources": [str], "ended_cutovers": [int], "reason": str,
                  "directives": [DIRECTIVE]}
REFUSAL_DETAIL = {"refusal": str}
CAPACITY_REFUSAL_DETAIL = {"sources": [str], "hubs": [str], "reason": str, "refusal": str}
SCHEDULE_HUB_CHECK = {"hub": str, "known": bool, "predicted": bool, "misses": bool,
                      "forecast": str, "sl_after": (float, NULL), "agents_needed": (int, NULL),
                      "agents": (int, NULL), "stable_after": (bool, NULL)}
SCHEDULE_CHECK = {"checked": bool, Opt("not_checked"): str, "window_start_ms": int,
                  "hubs": [SCHEDULE_HUB_CHECK], "refused": bool, "forced": bool,
                  Opt("refusal"): str, "dry_run": bool, Opt("partial"): bool,
                  Opt("not_known_sites"): [str], Opt("no_worse"): bool,
                  Opt("old_window"): enum("covers", "does_not_cover"),
                  Opt("instants_judged"): int, Opt("instants_missed"): int,
                  Opt("worst_at_ms"): int}
SCHEDULE_ADD_DETAIL = {"id": int, "sources": [str], "hubs": [str], "start_min": int,
                       "end_min": int, "days": int, "tz": str, "wave_size": int,
                       "exceptions": [str], Opt("check"): SCHEDULE_CHECK}
RULE_ID_DETAIL = {"id": int, Opt("check"): SCHEDULE_CHECK}
REFUSAL = {"ok": False, "error": str, "plan": (PLAN, NULL), Opt("check"): SCHEDULE_CHECK}
RULE_CHANGE_MOVE = {"site": str, "from": str, "to": str}
SCHEDULE_TERMS = {Opt("sources"): [str], Opt("hubs"): [str], Opt("start"): str, Opt("end"): str,
                  Opt("days"): str, Opt("tz"): str, Opt("exceptions"): [str],
                  Opt("wave_size"): int}
OVERFLOW_TERMS = {Opt("hubs"): [str], Opt("trigger_wait_s"): int, Opt("release_wait_s"): int,
                  Opt("trigger_queue"): int, Opt("release_queue"): int, Opt("trigger_sl"): float,
                  Opt("release_sl"): float, Opt("share_cap_permille"): int,
                  Opt("min_hold_s"): int, Opt("margin_s"): int}
OVERFLOW_CHANGE_DETAIL = {"id": int, "before": OVERFLOW_TERMS, "after": OVERFLOW_TERMS,
                          "moves": [RULE_CHANGE_MOVE], "kept": int}
SCHEDULE_CHANGE_DETAIL = {"id": int, "before": SCHEDULE_TERMS, "after": SCHEDULE_TERMS,
                          "moves": [RULE_CHANGE_MOVE], "kept": int, Opt("check"): SCHEDULE_CHECK}
OVERFLOW_ADD_DETAIL = {"id": int, "source": str, "hubs": [str], "share_cap_permille": int}
MOVE_DETAIL = {"rule": str, "rule_id": int, "sources": [str], "reason": str,
               Opt("demand"): ANY_OBJECT}
ROUTE_OUTCOME = {"result": enum("applied", "rejected", "failed", "timeout"), "detail": str,
                 "latency_ms": (int, NULL), "at_ms": int}
ROUTE_DETAIL = {
    "cause": enum("cutover", "schedule", "overflow", "cutover-end", "schedule-end",
                  "overflow-end", "capacity", "hub-lost", "hub-return", "hub-switch", "rollback",
                  "senders", "no-rule", "agent-return"),
    "before": str, "after": str, "reason": str, "why": str, Opt("rule"): str, Opt("rule_id"): int,
    Opt("note"): str, Opt("epoch"): int, Opt("version"): int, Opt("outcome"): (ROUTE_OUTCOME, NULL),
    Opt("reverted_at_ms"): int, Opt("reverted_epoch"): int, Opt("reverted_version"): int,
    Opt("left_epoch"): int, Opt("left_version"): int, Opt("duplicates"): int,
    Opt("went_home_at_ms"): int,
    Opt("went_home_clock"): enum("measured", "remembered", "host", "unsaid", "elapsed"),
    Opt("went_home_believed"): bool, Opt("early_ms"): int,
    Opt("early_measured"): enum("at-least", "agent"), Opt("recorded_at_ms"): int,
    Opt("recorded_business_at_ms"): int,
}

ROLLBACK_DETAIL = {"site": str, "rule": str, "rule_id": int, "reason": str}
EXPIRE_DETAIL = {"cutover_id": int, "sources": [str], Opt("expires_at_ms"): int, Opt("why"): str}
LEADERSHIP_DETAIL = {"why": str}
SUPERSEDED_DETAIL = {"change": str, "epoch": int, "newer_epoch": int, "why": str}
HOLD_HOME_DETAIL = {"why": str, "returns": int,
                    "rule": enum("cutover", "overflow", "schedule", "default"), "rule_id": int,
                    "early_ms": int,
                    Opt("early_measured"): enum("at-least", "agent", "no-revert-at", "not-kept")}
SCHEDULE = {"id": int, "name": str, "sources": [str], "hubs": [str], "start": str, "end": str,
            "days": str, "tz": str, "exceptions": [str], "wave_size": int, "enabled": bool,
            "in_force": bool, "next_start_ms": int, "sources_moved": int,
            "sources_not_known": int}
RULE_CHANGE = {"name": str, "changed": [str], "moves": [RULE_CHANGE_MOVE], "kept": int,
               "dry_run": bool}
SCHEDULES = {"schedules": [SCHEDULE], Opt("change"): RULE_CHANGE, Opt("check"): SCHEDULE_CHECK,
             Opt("warning"): str}
OVERFLOW_RULE = {"id": int, "name": str, "source": str, "hubs": [str], "trigger_wait_s": int,
                 "release_wait_s": int, "trigger_queue": int, "release_queue": int,
                 "trigger_sl": float, "release_sl": float, "share_cap_permille": int,
                 "min_hold_s": int, "margin_s": int, "enabled": bool, "engaged": bool,
                 "triggered": bool, "moved_permille": (int, NULL), "route_not_known": bool}
OVERFLOWS = {"rules": [OVERFLOW_RULE], Opt("change"): RULE_CHANGE, Opt("check"): PLAN,
             Opt("warning"): str}
SITE_CAPACITY = {"site": str, "configured": bool, "seats": (int, NULL), "roster": (str, NULL),
                 "utc_offset_min": (int, NULL),
                 "source_now": enum("measured", "configured", "unknown"),
                 "agents_now": (int, NULL), "note_now": str}
CAPACITIES = {"sites": [SITE_CAPACITY], Opt("warning"): str}
CAPACITY_TERMS = {"configured": bool, "seats": int, "roster": str, "utc_offset_min": int}
CAPACITY_DETAIL = {"before": CAPACITY_TERMS, "after": CAPACITY_TERMS, "note": str}
SITE_CHANGE = {"action": enum("add", "set", "remove"), "site": str, "name_en": str,
               "name_zh": str, "hub": bool, "lat": float, "lon": float,
               "capacity": CAPACITY_TERMS, "removed": bool, "removed_at": (str, NULL),
               "removed_by": (str, NULL), Opt("warning"): str}
SITE_TERMS = {"name_en": str, "name_zh": str, "hub": bool, "lat": float, "lon": float,
              "seats": int, "roster": str, "utc_offset_min": int,
              "life": enum("live", "removed")}
SITE_CHANGE_DETAIL = {"before": (SITE_TERMS, NULL), Opt("after"): SITE_TERMS, "note": str}
IMPORT_DETAIL = {"file": str, "sites_in_file": int, "added": int, "updated": int,
                 "skipped_removed": int, "removed_skipped": str, "kept_not_in_file": int,
                 "not_in_file": str}
STAFF_FIG = {"known": bool, "partial": bool, "calls": (float, NULL), "erlangs": (float, NULL),
             "agents": (int, NULL)}
ACTUAL_FIG = {"known": bool, "partial": bool, "calls": (float, NULL)}
FORECAST_ACCURACY = {
    "state": enum("stored", "no-calls", "not-measured", "pending", "not-tracked", "not-ended",
                  "unavailable"),
    "wape": (float, NULL), "forecast_calls": (float, NULL), "actual_calls": (float, NULL),
    "abs_error_calls": (float, NULL), "intervals": (int, NULL)}
STAFFING_SITE = {"site": str, "role": enum("source", "hub"), "first_hub": bool, "demand": str,
                 "alone": [STAFF_FIG], "alone_window": STAFF_FIG,
                 "consolidated": ([STAFF_FIG], NULL), "consolidated_window": (STAFF_FIG, NULL),
                 "actual": ([ACTUAL_FIG], NULL), "actual_window": (ACTUAL_FIG, NULL),
                 "accuracy": FORECAST_ACCURACY}
REPORT_SCHEDULE = {"id": int, "name": str, "tz": str}
REPORT_TOTALS = {"alone": [STAFF_FIG], "consolidated": [STAFF_FIG], "alone_window": STAFF_FIG,
                 "consolidated_window": STAFF_FIG}
REPORT = {"kind": enum("staffing"), "schedule": REPORT_SCHEDULE, "from_ms": int, "to_ms": int,
          "first_interval_ms": int, "interval_s": int, "interval_starts_ms": [int],
          "sl_target": float, "sl_threshold_s": float, "ended": bool, "first_hub": str,
          "now_ms": int, "sites": [STAFFING_SITE], "totals": REPORT_TOTALS, Opt("warning"): str}

# The names the document gives the shapes.
SHAPES = {
    "Status": STATUS, "StatusCounts": STATUS_COUNTS, "StatusPaging": STATUS_PAGING,
    "SiteStatus": SITE_STATUS, "SiteRule": SITE_RULE, "HubState": HUB_STATE,
    "SitePbxEvent": SITE_PBX_EVENT,
    "Next": NEXT, "NextEvent": NEXT_EVENT, "NextHub": NEXT_HUB, "RouteShare": ROUTE_SHARE, "Load": LOAD,
    "Move": MOVE, "Outcome": OUTCOME, "Plan": PLAN, "PlannedMove": PLANNED_MOVE,
    "Capacity": CAPACITY, "LoadOn": LOAD_ON, "RefusedLoad": REFUSED_LOAD, "RefusedSource": REFUSED_SOURCE,
    "HubNeed": HUB_NEED, "ForcedOver": FORCED_OVER, "Refusal": REFUSAL, "History": HISTORY, "AuditEntry": AUDIT_ENTRY,
    "CutoverDetail": CUTOVER_DETAIL, "RestoreDetail": RESTORE_DETAIL, "Directive": DIRECTIVE,
    "ReadmitDetail": READMIT_DETAIL, "ExcludedFrom": EXCLUDED_FROM,
    "AmendDetail": AMEND_DETAIL, "CutoverTerms": CUTOVER_TERMS,
    "RefusalDetail": REFUSAL_DETAIL, "CapacityRefusalDetail": CAPACITY_REFUSAL_DETAIL,
    "ScheduleAddDetail": SCHEDULE_ADD_DETAIL, "RuleIdDetail": RULE_ID_DETAIL,
    "ScheduleChangeDetail": SCHEDULE_CHANGE_DETAIL, "ScheduleTerms": SCHEDULE_TERMS,
    "RuleChange": RULE_CHANGE, "RuleChangeMove": RULE_CHANGE_MOVE,
    "ScheduleCheck": SCHEDULE_CHECK, "ScheduleHubCheck": SCHEDULE_HUB_CHECK,
    "OverflowChangeDetail": OVERFLOW_CHANGE_DETAIL, "OverflowTerms": OVERFLOW_TERMS,
    "OverflowAddDetail": OVERFLOW_ADD_DETAIL, "MoveDetail": MOVE_DETAIL,
    "RollbackDetail": ROLLBACK_DETAIL, "RouteDetail": ROUTE_DETAIL, "ExpireDetail": EXPIRE_DETAIL,
    "LeadershipDetail": LEADERSHIP_DETAIL, "SupersededDetail": SUPERSEDED_DETAIL,
    "HoldHomeDetail": HOLD_HOME_DETAIL,
    "Schedules": SCHEDULES, "Schedule": SCHEDULE, "Overflows": OVERFLOWS,
    "OverflowRule": OVERFLOW_RULE, "Alarms": ALARMS, "Alarm": ALARM, "PlanWindow": PLAN_WINDOW,
    "PlanDemand": PLAN_DEMAND, "RouteOutcome": ROUTE_OUTCOME,
    "AlarmAckDetail": ALARM_ACK_DETAIL, "Capacities": CAPACITIES, "SiteCapacity": SITE_CAPACITY,
    "CapacityDetail": CAPACITY_DETAIL, "CapacityTerms": CAPACITY_TERMS,
    "SiteChange": SITE_CHANGE, "SiteChangeDetail": SITE_CHANGE_DETAIL, "SiteTerms": SITE_TERMS,
    "ImportDetail": IMPORT_DETAIL,
    "Report": REPORT, "ReportSchedule": REPORT_SCHEDULE, "StaffingSite": STAFFING_SITE,
    "StaffingFigure": STAFF_FIG, "ActualFigure": ACTUAL_FIG,
    "ForecastAccuracy": FORECAST_ACCURACY, "ReportTotals": REPORT_TOTALS,
}
# The audit detail by action (the document's table).
DETAILS = {
    "cutover": (CUTOVER_DETAIL,),
    "restore": (RESTORE_DETAIL,),
    "readmit": (READMIT_DETAIL,),
    "cutover-amend": (AMEND_DETAIL,),
    "amend-refused": (CAPACITY_REFUSAL_DETAIL, REFUSAL_DETAIL),
    "cutover-refused": (CAPACITY_REFUSAL_DETAIL, REFUSAL_DETAIL),
    "restore-refused": (REFUSAL_DETAIL,), "plan-refused": (REFUSAL_DETAIL,),
    "readmit-refused": (REFUSAL_DETAIL,),
    "schedule-refused": (REFUSAL_DETAIL,), "overflow-refused": (REFUSAL_DETAIL,),
    "schedule-add": (SCHEDULE_ADD_DETAIL,), "schedule-change": (SCHEDULE_CHANGE_DETAIL,),
    "overflow-change": (OVERFLOW_CHANGE_DETAIL,),
    "schedule-rm": (RULE_ID_DETAIL,), "schedule-enable": (RULE_ID_DETAIL,),
    "schedule-disable": (RULE_ID_DETAIL,), "overflow-rm": (RULE_ID_DETAIL,),
    "overflow-add": (OVERFLOW_ADD_DETAIL,),
    "alarm-ack": (ALARM_ACK_DETAIL,), "alarm-ack-refused": (REFUSAL_DETAIL,),
    "capacity": (CAPACITY_DETAIL,), "capacity-refused": (REFUSAL_DETAIL,),
    "site-add": (SITE_CHANGE_DETAIL,), "site-set": (SITE_CHANGE_DETAIL,),
    "site-remove": (SITE_CHANGE_DETAIL,), "site-add-refused": (REFUSAL_DETAIL,),
    "site-set-refused": (REFUSAL_DETAIL,), "site-remove-refused": (REFUSAL_DETAIL,),
    "import-sites": (IMPORT_DETAIL,),
    "move": (MOVE_DETAIL,), "route": (ROUTE_DETAIL,), "rollback": (ROLLBACK_DETAIL,), "expire": (EXPIRE_DETAIL,),
    "lead": (LEADERSHIP_DETAIL,), "step-down": (LEADERSHIP_DETAIL,),
    "superseded": (SUPERSEDED_DETAIL,),
    "hold-home": (HOLD_HOME_DETAIL,), "hold-home-end": (HOLD_HOME_DETAIL,),
}


def validate(value, schema, path="$"):
    """Problems of value against schema, as 'path: what' strings."""
    if isinstance(schema, tuple):  # one of
        errs = [validate(value, s, path) for s in schema]
        if any(not e for e in errs):
            return []
        if len(errs) == 1:
            return errs[0]
        return [f"{path}: {json.dumps(value)[:80]} is none of {describe(schema)}"]
    if schema is NULL:
        return [] if value is None else [f"{path}: expected null, got {json.dumps(value)[:80]}"]
    if schema is False:
        return [] if value is False else [f"{path}: expected false, got {value!r}"]
    if schema is bool:
        return [] if isinstance(value, bool) else [f"{path}: expected boolean, got {value!r}"]
    if schema is int:
        return [] if type(value) is int else [f"{path}: expected integer, got {value!r}"]
    if schema is float:
        return [] if type(value) is float else [f"{path}: expected number (a JSON real), " \
                                                f"got {value!r}"]
    if schema is str:
        return [] if isinstance(value, str) else [f"{path}: expected string, got {value!r}"]
    if isinstance(schema, frozenset):
        return [] if value in schema else [f"{path}: {value!r} is not one of {sorted(schema)}"]
    if schema is ANY_OBJECT:
        return [] if isinstance(value, dict) else [f"{path}: expected an object, got {value!r}"]
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{path}: expected an array, got {json.dumps(value)[:80]}"]
        out = []
        for i, v in enumerate(value):
            out += validate(v, schema[0], f"{path}[{i}]")
        return out
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {json.dumps(value)[:80]}"]
        out = []
        known = set()
        for k, sub in schema.items():
            name = k.name if isinstance(k, Opt) else k
            known.add(name)
            if name not in value:
                if not isinstance(k, Opt):
                    out.append(f"{path}.{name}: missing")
                continue
            out += validate(value[name], sub, f"{path}.{name}")
        for k in value:
            if k not in known:
                out.append(f"{path}.{k}: not in docs/CLI-JSON.md (value {json.dumps(value[k])[:60]})")
        return out
    raise AssertionError(f"bad schema {schema!r}")


def describe(schema):
    """The schema in the document's words ('array of RouteShare', 'Load or null')."""
    if isinstance(schema, tuple):
        return " or ".join(sorted(describe(s) for s in schema))
    if isinstance(schema, frozenset):
        return " or ".join(sorted(f'"{w}"' for w in schema))
    if isinstance(schema, list):
        return "array of " + describe(schema[0])
    if isinstance(schema, dict):
        for name, s in SHAPES.items():
            if s is schema:
                return name
        raise AssertionError(f"a shape with no name in SHAPES: {schema}")
    return {int: "integer", float: "number", str: "string", bool: "boolean", NULL: "null",
            False: "false", ANY_OBJECT: "object"}[schema]


def check(value, schema, what):
    errs = validate(value, schema)
    assert not errs, f"{what}: output does not match docs/CLI-JSON.md:\n  " + \
                     "\n  ".join(errs[:40])
    return value


def check_history_details(entries):
    errs = []
    for i, e in enumerate(entries):
        if e["detail"] is None:
            errs.append(f"entries[{i}] ({e['action']}): detail is null")
            continue
        shapes = DETAILS.get(e["action"])
        if shapes is None:
            errs.append(f"entries[{i}]: action '{e['action']}' is not in docs/CLI-JSON.md")
            continue
        errs += validate(e["detail"], shapes if len(shapes) > 1 else shapes[0],
                         f"entries[{i}].detail ({e['action']})")
    assert not errs, "history details do not match docs/CLI-JSON.md:\n  " + "\n  ".join(errs)


# ---- running nircctl ----

def ctl_json(*args, expect, **kw):
    """Runs `nircctl --json ARGS`, checks the exit status and returns the
    parsed stdout."""
    r = env.ctl("--json", *args, **kw)
    what = f"nircctl --json {' '.join(args)}"
    assert r.returncode == expect, f"{what}: exit {r.returncode}, expected {expect}\n" \
                                   f"stdout: {r.stdout}\nstderr: {r.stderr}"
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"{what} (exit {r.returncode}) did not print one JSON document on "
                             f"stdout:\nstdout: {r.stdout!r}\nstderr: {r.stderr}")


# ---- tests ----

def doc_shapes():
    """{shape: {key: (type text, required)}} from the document's tables."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    shapes, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^### `([A-Za-z]+)`\s*$", line)
        if m:
            cur = shapes.setdefault(m.group(1), {})
            continue
        if line.startswith("## "):
            cur = None
        m = re.match(r"^\| `([a-z_]+)` \| ([^|]+) \| (yes|no) \|", line)
        if m and cur is not None:
            assert m.group(1) not in cur, f"{m.group(1)} twice in a table of the document"
            cur[m.group(1)] = (m.group(2).strip(), m.group(3) == "yes")
    return shapes


def norm(type_text):
    return " or ".join(sorted(t.strip() for t in type_text.split(" or ")))


def test_document_and_schema_agree():
    doc = doc_shapes()
    assert set(doc) == set(SHAPES), f"shapes only in the document: {set(doc) - set(SHAPES)}; " \
                                    f"only in this test: {set(SHAPES) - set(doc)}"
    diffs = []
    for name, schema in SHAPES.items():
        mine = {(k.name if isinstance(k, Opt) else k): (describe(v), not isinstance(k, Opt))
                for k, v in schema.items()}
        theirs = doc[name]
        for k in sorted(set(mine) | set(theirs)):
            if k not in theirs:
                diffs.append(f"{name}.{k}: in the test, not in the document")
            elif k not in mine:
                diffs.append(f"{name}.{k}: in the document, not in the test")
            elif norm(mine[k][0]) != norm(theirs[k][0]) or mine[k][1] != theirs[k][1]:
                diffs.append(f"{name}.{k}: test says {mine[k]}, document says {theirs[k]}")
    # The action -> detail table.
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    doc_details = {}
    for line in text.splitlines():
        m = re.match(r"^\| (`[a-z-]+`(?:, `[a-z-]+`)*) \| `([A-Za-z]+)`(?:.*?`([A-Za-z]+)`)?",
                     line)
        if m and "Detail" in m.group(2):
            for action in re.findall(r"`([a-z-]+)`", m.group(1)):
                doc_details[action] = {m.group(2)} | ({m.group(3)} if m.group(3) else set())
    mine = {a: {describe(s) for s in shapes} for a, shapes in DETAILS.items()}
    if doc_details != mine:
        diffs.append(f"audit details by action: document {doc_details}, test {mine}")
    assert not diffs, "docs/CLI-JSON.md and this test's schema differ:\n  " + "\n  ".join(diffs)


def test_status_and_site():
    global env
    env = T.Env("cli-json", clock_start="2020-01-23T10:00:00+08:00",
                extra_nircd="ack_timeout = 500ms\nmax_resends = 1")
    env.start_controller()
    for s in SITES:
        env.start_agent(s)
    # The capacity check smooths live load: a few reports from each first.
    T.wait_until(lambda: all(env.status()[s]["link"] == "online" and env.status()[s]["load"]
                             for s in SITES) and all(len(env.reports(s)) >= 5 for s in SITES),
                 30, "three agents online with a few reports each")

    st = check(ctl_json("status", expect=0), STATUS, "status")
    assert len(st["sites"]) == 31 and st["controller"] == "nircd-1" and st["epoch"] >= 1, st
    by = {s["slug"]: s for s in st["sites"]}
    for s in SITES:
        assert by[s]["link"] == "online" and by[s]["load"]["site"] == s, by[s]
        assert by[s]["route"] == [{"site": s, "permille": 1000}], by[s]
    assert by["beijing"]["link"] == "never-seen" and by["beijing"]["load"] is None, by["beijing"]
    assert by["beijing"]["report_age_ms"] == -1 and by["beijing"]["state_since_ms"] == 0 and \
        by["beijing"]["peer"] == "", by["beijing"]
    assert st["paging"] == {"offset": 0, "returned": 31, "matched": 31, "complete": True}, st
    # The 28 sites never seen have said no Hello here: their routes are not known.
    assert st["counts"] == {"sites": 31, "online": 3, "stale": 0, "offline": 0,
                            "never_seen": 28, "route_not_known": 28}, st["counts"]
    # A page says which part it is; the counts stay those of every site.
    page = check(ctl_json("status", "--state", "never", "--limit", "5", "--offset", "25",
                          expect=0), STATUS, "status --state never --limit 5 --offset 25")
    assert page["paging"] == {"offset": 25, "returned": 3, "matched": 28, "complete": False}, page
    assert page["counts"] == st["counts"] and len(page["sites"]) == 3, page

    # Alarms: the sites without an agent are down (site_down after the
    # 15 s grace): the list exits 1 while any is active; the record exits 0.
    T.wait_until(lambda: env.ctl("--json", "alarms").returncode == 1, 30, "site_down alarms")
    al = check(ctl_json("alarms", expect=1), ALARMS, "alarms")
    assert al["alarms"] and not al["record"] and al["alarms"][0]["active"], al
    check(ctl_json("status", expect=0), STATUS, "status with alarms")
    T.wait_until(lambda: json.loads(env.ctl("--json", "alarms", "--all").stdout)["alarms"], 10,
                 "the alarms stored")
    rec = check(ctl_json("alarms", "--all", expect=0), ALARMS, "alarms --all")
    assert rec["record"] and rec["alarms"], rec
    ack = check(ctl_json("alarms", "ack", str(al["alarms"][0]["id"]), "--note", "seen",
                         expect=0), ALARMS, "alarms ack")
    assert [a for a in ack["alarms"] if a["id"] == al["alarms"][0]["id"]][0]["acked_by"]

    one = check(ctl_json("status", "hubei", expect=0), STATUS, "status hubei")
    assert [s["slug"] for s in one["sites"]] == ["hubei"], one
    site = check(ctl_json("site", "shaanxi", expect=0), STATUS, "site shaanxi")
    assert [s["slug"] for s in site["sites"]] == ["shaanxi"] and site["sites"][0]["is_hub"], site

    # An unknown site is an input error the controller finds: a Refusal, exit 2.
    for args in (("status", "atlantis"), ("site", "atlantis")):
        j = check(ctl_json(*args, expect=T.EXIT_USAGE), REFUSAL, " ".join(args))
        assert j["plan"] is None and j["error"], j


def test_plan():
    fits = check(ctl_json("plan", "xizang", "--to", "shaanxi", expect=0), PLAN,
                 "plan xizang --to shaanxi")
    assert fits["refused"] is False and fits["refusal"] == "", fits
    assert [m["site"] for m in fits["moves"]] == ["xizang"], fits
    assert [c["hub"] for c in fits["capacity"]] == ["shaanxi"], fits
    assert fits["capacity"][0]["asa_after_s"] is not None, fits
    assert fits["capacity"][0]["sources"] == ["xizang"] and fits["refused_sources"] == [], fits
    # No rule id for a rule that does not exist.
    assert fits["moves"][0]["reason"] == "would be cutover", fits

    # Refused: still a Plan (not a Refusal), exit 1.
    over = check(ctl_json("plan", "hubei", "--to", "shaanxi", expect=T.EXIT_REFUSED), PLAN,
                 "plan hubei --to shaanxi")
    assert over["refused"] is True and "would need" in over["refusal"], over
    cap = over["capacity"][0]
    assert cap["refused"] and cap["sources"] == [] and cap["refused_sources"] == ["hubei"], cap
    assert cap["with_refused"]["agents_needed"] > cap["agents"], cap
    [hubei] = over["refused_sources"]
    assert hubei["source"] == "hubei" and [h["hub"] for h in hubei["hubs"]] == ["shaanxi"], over
    assert hubei["hubs"][0]["agents_needed"] > hubei["hubs"][0]["agents"], over


def test_cutover_refusals_print_json():
    # Capacity: the refusal carries the plan that explains it.
    j = check(ctl_json("cutover", "hubei", "--to", "shaanxi", "--reason", "json drill",
                       expect=T.EXIT_REFUSED), REFUSAL, "refused cutover")
    assert "would need" in j["error"] and "--force" in j["error"], j
    assert j["plan"] is not None and j["plan"]["refused"] is True, j
    # Bad input: no plan, exit 2 (usage) as the controller found it.
    j = check(ctl_json("cutover", "xizang", "--to", "atlantis", "--reason", "json drill",
                       expect=T.EXIT_USAGE), REFUSAL, "cutover to an unknown site")
    assert "atlantis" in j["error"] and j["plan"] is None, j
    # A role that may not: refused by the controller before the engine.
    j = check(ctl_json("cutover", "xizang", "--to", "shaanxi", "--reason", "viewer tries",
                       cert="operator-victor", expect=T.EXIT_REFUSED), REFUSAL,
              "viewer's cutover")
    assert "needs role operator" in j["error"] and j["plan"] is None, j


def test_cutover_dry_run():
    j = check(ctl_json("cutover", "xizang", "--to", "shaanxi", "--reason", "json drill",
                       "--dry-run", expect=0), MOVE, "cutover --dry-run")
    assert j["ok"] is True and j["dry_run"] is True and j["cutover_id"] == 0, j
    assert j["outcomes"] == [] and j["applied"] == 0 and j["plan"] is not None, j
    assert [m["site"] for m in j["plan"]["moves"]] == ["xizang"], j


def test_cutover_and_restore():
    r = env.ctl("--json", "cutover", "hubei", "--to", "shaanxi", "--reason", "json drill",
                "--force")
    assert r.returncode == 0, f"forced cutover: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    j = check(json.loads(r.stdout), MOVE, "cutover --force")
    assert j["ok"] is True and j["dry_run"] is False and j["cutover_id"] > 0, j
    assert {o["site"] for o in j["outcomes"]} == {"hubei", "shaanxi"}, j
    assert j["applied"] == 2 and j["failed"] == 0 and j["plan"] is None, j
    assert all(o["result"] == "applied" and o["detail"] == "" for o in j["outcomes"]), j
    assert "directive(s) sent" in r.stderr, f"progress goes to stderr under --json: {r.stderr}"
    # Forced past the check: what it overrode is in the answer.
    [over] = j["forced_over"]
    assert over["hub"] == "shaanxi" and over["agents_needed"] > over["agents"], j
    assert j["force_warning"].startswith("forced past the capacity check: shaanxi predicted SL"), j

    st = check(ctl_json("status", "hubei", expect=0), STATUS, "status after the cutover")
    assert st["sites"][0]["route"] == [{"site": "shaanxi", "permille": 1000}], st
    assert str(j["cutover_id"]) in st["sites"][0]["active_rule"], st


def test_status_load_is_the_agents_last_report():
    """The load in status is the report the agent sent, figure for figure;
    checked on a report of cut-over Hubei that counts calls it sent away
    (Hubei has a call every 5 s or so)."""
    def matched():
        load = ctl_json("status", "hubei", expect=0)["sites"][0]["load"]
        sent = [x for x in env.reports("hubei") if x["timestamp_ms"] == load["timestamp_ms"]]
        return (load, sent[0]) if sent and sent[0].get("calls_routed_away") else None

    got = None
    try:
        got = T.wait_until(matched, 60, "status showing a hubei report that counts calls sent "
                                        "away")
    except AssertionError:
        # Either Hubei sent no call away, or status never shows it: tell which.
        away = [x for x in env.reports("hubei") if x.get("calls_routed_away")]
        assert not away, (
            f"hubei's agent reported calls_routed_away > 0 in {len(away)} report(s) (e.g. "
            f"timestamp_ms {away[-1]['timestamp_ms']}), but status never showed such a report: "
            f"the status load always says calls_routed_away "
            f"{ctl_json('status', 'hubei', expect=0)['sites'][0]['load']['calls_routed_away']}")
        raise
    load, sent = got
    diff = {k: (load[k], sent[k]) for k in sent if k in load and load[k] != sent[k]}
    assert not diff, f"status load differs from the report hubei sent (status, sent): {diff}"


def test_amend():
    """cutover --amend: a smaller share of Hubei's calls, in place."""
    (cid,) = env.sql("SELECT id FROM cutovers WHERE state = 'active'")[0]
    j = check(ctl_json("cutover", "--amend", cid, "--share", "400", "--force", "--reason",
                       "json amend", expect=0), MOVE, "cutover --amend")
    assert j["ok"] is True and j["cutover_id"] == int(cid), j
    assert {o["site"] for o in j["outcomes"]} == {"hubei", "shaanxi"} and j["failed"] == 0, j
    st = check(ctl_json("status", "hubei", expect=0), STATUS, "status after the amendment")
    assert sorted((x["site"], x["permille"]) for x in st["sites"][0]["route"]) == \
        [("hubei", 600), ("shaanxi", 400)], st
    j = check(ctl_json("cutover", "--amend", cid, "--share", "400", expect=T.EXIT_REFUSED),
              REFUSAL, "an amendment that changes nothing")
    assert "nothing to amend" in j["error"], j


def test_restore():
    j = check(ctl_json("restore", "hubei", expect=0), MOVE, "restore")
    assert j["ok"] is True and j["cutover_id"] == 0 and j["plan"] is None, j
    assert {o["site"] for o in j["outcomes"]} == {"hubei", "shaanxi"} and j["failed"] == 0, j
    j = check(ctl_json("restore", "hubei", expect=T.EXIT_REFUSED), REFUSAL, "restore again")
    assert "not cut over" in j["error"], j


def test_schedule_and_overflow_lists():
    j = check(ctl_json("schedule", "list", expect=0), SCHEDULES, "schedule list")
    assert j == {"schedules": []}, j
    # add predicts the next window (the scenario's night) and says it;
    # --dry-run adds nothing.
    j = check(ctl_json("schedule", "add", "json-night", "--sources", "xizang", "--to", "shaanxi",
                       "--start", "22:00", "--end", "08:00", "--dry-run", expect=0), SCHEDULES,
              "schedule add --dry-run")
    assert j["schedules"] == [] and j["check"]["dry_run"] is True, j
    (h,) = j["check"]["hubs"]
    assert h["hub"] == "shaanxi" and "scenario" in h["forecast"], j["check"]
    j = check(ctl_json("schedule", "add", "json-night", "--sources", "xizang", "--to", "shaanxi",
                       "--start", "22:00", "--end", "08:00", "--except", "2020-01-24",
                       expect=0), SCHEDULES, "schedule add")
    assert j["check"]["checked"] is True and j["check"]["refused"] is False, j["check"]
    j = check(ctl_json("schedule", "set", "json-night", "--end", "08:30", "--dry-run", expect=0),
              SCHEDULES, "schedule set --dry-run")
    assert j["change"] == {"name": "json-night", "changed": ["end 08:00 -> 08:30"], "moves": [],
                           "kept": 0, "dry_run": True}, j
    j = check(ctl_json("schedule", "set", "json-night", "--except", "none", expect=0), SCHEDULES,
              "schedule set")
    assert j["change"]["changed"] == ['exceptions ["2020-01-24"] -> (none)'], j
    assert j["schedules"][0]["exceptions"] == [], j
    check(ctl_json("schedule", "set", "json-night", "--except", "2020-01-24", expect=0),
          SCHEDULES, "schedule set")
    j = check(ctl_json("schedule", "list", expect=0), SCHEDULES, "schedule list")
    (s,) = j["schedules"]
    assert s["name"] == "json-night" and s["exceptions"] == ["2020-01-24"], s
    assert s["enabled"] is True and s["in_force"] is False and s["next_start_ms"] > 0, s
    # plan --schedule says where each site's demand comes from (no load
    # history in this database: the scenario file).
    r = env.ctl("--json", "plan", "--schedule", "json-night")
    assert r.returncode in (0, T.EXIT_REFUSED), r.stderr
    j = check(json.loads(r.stdout), PLAN, "plan --schedule")
    assert j["window"]["schedule"] == "json-night", j
    assert [(d["site"], d["hub"], d["source"]) for d in j["demand"]] == \
        [("xizang", False, "scenario"), ("shaanxi", True, "scenario")], j["demand"]
    j = check(ctl_json("schedule", "disable", "json-night", expect=0), SCHEDULES,
              "schedule disable")
    assert j["schedules"][0]["enabled"] is False, j
    j = check(ctl_json("schedule", "add", "json-night", "--sources", "xizang", "--to", "shaanxi",
                       "--start", "22:00", "--end", "08:00", cert="operator-olga",
                       expect=T.EXIT_REFUSED), REFUSAL, "operator's schedule add")
    assert "needs role admin" in j["error"], j
    check(ctl_json("schedule", "rm", "json-night", expect=0), SCHEDULES, "schedule rm")
    check(ctl_json("schedule", "rm", "json-night", expect=T.EXIT_REFUSED), REFUSAL,
          "schedule rm of a removed schedule")
    # Refused by its capacity check (Hubei alone overloads Shaanxi in a
    # window in force now): the refusal carries the check, not only words.
    j = check(ctl_json("schedule", "add", "json-busy", "--sources", "hubei", "--to", "shaanxi",
                       "--start", "09:00", "--end", "11:00", expect=T.EXIT_REFUSED), REFUSAL,
              "schedule add refused by its capacity check")
    assert j["check"]["refused"] is True and "--force" in j["error"], j
    assert [h["hub"] for h in j["check"]["hubs"] if h["misses"]] == ["shaanxi"], j["check"]

    j = check(ctl_json("overflow", "list", expect=0), OVERFLOWS, "overflow list")
    assert j == {"rules": []}, j
    check(ctl_json("overflow", "add", "json-spill", "--source", "xizang", "--to", "shaanxi",
                   "--cap", "300", "--trigger-wait", "1h", "--release-wait", "15s",
                   "--trigger-sl", "0.5", "--release-sl", "0.9", expect=0), OVERFLOWS,
          "overflow add")
    j = check(ctl_json("overflow", "list", cert="operator-victor", expect=0), OVERFLOWS,
              "overflow list (viewer)")
    (o,) = j["rules"]
    assert o["name"] == "json-spill" and o["share_cap_permille"] == 300, o
    assert o["trigger_wait_s"] == 3600 and o["engaged"] is False, o
    j = check(ctl_json("overflow", "set", "json-spill", "--cap", "200", "--trigger-sl", "0.6",
                       expect=0), OVERFLOWS, "overflow set")
    assert j["change"]["changed"] == ["trigger_sl 0.50 -> 0.60", "share_cap_permille 300 -> 200"], j
    assert j["rules"][0]["share_cap_permille"] == 200, j
    check(ctl_json("overflow", "rm", "json-spill", expect=0), OVERFLOWS, "overflow rm")


def test_capacity():
    j = check(ctl_json("capacity", expect=0), CAPACITIES, "capacity")
    assert {s["site"] for s in j["sites"]} >= set(SITES), j
    hubei = [s for s in j["sites"] if s["site"] == "hubei"][0]
    # Imported with the sites; the sim measures its agents.
    assert hubei["configured"] and hubei["seats"] > 0 and hubei["source_now"] == "measured", hubei
    j = check(ctl_json("capacity", "xizang", "--seats", "30", "--roster",
                       "08:00-22:00=20,22:00-08:00=6", "--note", "json", expect=0), CAPACITIES,
              "capacity set")
    (x,) = j["sites"]
    assert x["site"] == "xizang" and x["seats"] == 30 and x["roster"].startswith("08:00"), x
    j = check(ctl_json("capacity", "xizang", "--roster", "25:00-08:00=3", expect=T.EXIT_USAGE),
              REFUSAL, "capacity with a bad roster")
    assert "HH:MM-HH:MM=AGENTS" in j["error"], j
    j = check(ctl_json("capacity", "xizang", "--seats", "3", cert="operator-victor",
                       expect=T.EXIT_REFUSED), REFUSAL, "viewer's capacity change")
    assert "needs role operator" in j["error"], j


def test_site_change():
    j = check(ctl_json("site", "add", "atlantis", "--name", "Atlantis", "--source", "--seats",
                       "10", "--lat", "30.5", "--lon", "100", "--note", "json", expect=0),
              SITE_CHANGE, "site add")
    assert j["site"] == "atlantis" and j["capacity"]["seats"] == 10 and not j["removed"], j
    j = check(ctl_json("site", "set", "atlantis", "--hub", expect=0), SITE_CHANGE, "site set")
    assert j["hub"] is True and j["removed_at"] is None, j
    j = check(ctl_json("site", "add", "atlantis", "--name", "A", "--hub",
                       expect=T.EXIT_REFUSED), REFUSAL, "site add of an existing site")
    assert "already exists" in j["error"], j
    j = check(ctl_json("site", "remove", "atlantis", "--note", "json", expect=0), SITE_CHANGE,
              "site remove")
    assert j["removed"] and j["removed_by"] == "operator:alice" and \
        j["removed_at"].endswith("Z"), j
    j = check(ctl_json("site", "remove", "atlantis", expect=T.EXIT_USAGE), REFUSAL,
              "site remove of a removed site")
    assert "it was removed" in j["error"], j
    j = check(ctl_json("site", "add", "atlantis", "--name", "A", "--hub", cert="operator-olga",
                       expect=T.EXIT_REFUSED), REFUSAL, "operator's site add")
    assert "admin" in j["error"], j


def test_report_staffing():
    # No enabled schedule: refused, with what to do.
    for sch in ctl_json("schedule", "list", expect=0)["schedules"]:
        assert not sch["enabled"], f"an enabled schedule left by another test: {sch}"
    j = check(ctl_json("report", "staffing", expect=T.EXIT_REFUSED), REFUSAL, "report, no schedule")
    assert "no enabled schedule" in j["error"] and "schedule add" in j["error"], j
    ctl_json("schedule", "add", "json-night", "--sources", "xizang", "--to", "shaanxi",
             "--start", "22:00", "--end", "08:00", "--tz", "Asia/Shanghai", expect=0)
    try:
        j = check(ctl_json("report", "staffing", cert="operator-victor", expect=0), REPORT,
                  "report staffing (viewer)")
        assert not j["ended"] and j["schedule"]["name"] == "json-night", j
        assert [s["site"] for s in j["sites"]] == ["xizang", "shaanxi"], j
        assert len(j["interval_starts_ms"]) == 20 and len(j["totals"]["alone"]) == 20, j
        assert all(s["accuracy"]["state"] == "not-ended" for s in j["sites"]), j
        sid = str(j["schedule"]["id"])
        # An ended window (the night before): actual figures and accuracy given.
        j = check(ctl_json("report", "staffing", "--schedule", sid, "--date", "2020-01-22",
                           expect=0), REPORT, "report staffing --date (ended)")
        assert j["ended"] and all(s["actual"] is not None for s in j["sites"]), j
        assert all(s["accuracy"]["state"] == "not-tracked" for s in j["sites"]), j
        check(ctl_json("report", "staffing", "--schedule", "999999", expect=T.EXIT_USAGE), REFUSAL,
              "report of an unknown schedule")
    finally:
        ctl_json("schedule", "rm", "json-night", expect=0)


def test_history():
    j = check(ctl_json("history", "--limit", "500", expect=0), HISTORY, "history")
    check_history_details(j["entries"])
    actions = {e["action"] for e in j["entries"]}
    for a in ("cutover", "cutover-refused", "restore", "restore-refused", "schedule-add",
              "schedule-change", "overflow-change",
              "schedule-disable", "schedule-rm", "schedule-refused", "overflow-add",
              "overflow-rm", "site-add", "site-set", "site-remove", "site-add-refused",
              "import-sites"):
        assert a in actions, f"no '{a}' in history: {sorted(actions)}"
    ids = [e["id"] for e in j["entries"]]
    assert ids == sorted(ids), "oldest first"
    refused = [e for e in j["entries"] if e["action"] == "cutover-refused"]
    assert any("hubs" in e["detail"] for e in refused) and \
        any(list(e["detail"]) == ["refusal"] for e in refused), refused
    only = check(ctl_json("history", "--action", "cutover", expect=0), HISTORY,
                 "history --action cutover")
    assert only["entries"] and all(e["action"] == "cutover" for e in only["entries"]), only
    # The forced cutover records the prediction it overrode.
    assert any(o["hub"] == "shaanxi" and o["agents_needed"] > o["agents"]
               for e in only["entries"] for o in e["detail"]["forced_over"]), only


def test_usage_and_unreachable_print_nothing_on_stdout():
    for args in (["cutover", "xizang", "--to", "shaanxi"],     # no --reason
                 ["status", "a", "b"],                          # two sites
                 ["history", "--limit", "0"],
                 ["schedule", "frobnicate"],
                 ["no-such-command"]):
        r = env.ctl("--json", *args)
        assert r.returncode == T.EXIT_USAGE, f"{args}: exit {r.returncode}: {r.stderr}"
        assert r.stdout == "" and r.stderr.strip(), f"{args}: stdout {r.stdout!r}"
    dead = f"127.0.0.1:{T.free_port()}"
    r = env.ctl("--json", "status", controllers=[dead])
    assert r.returncode == T.EXIT_UNREACHABLE, f"exit {r.returncode}: {r.stderr}"
    assert r.stdout == "" and dead in r.stderr, r


def test_move_not_applied():
    """Xizang's agent is frozen, so it acknowledges nothing: the move fails
    for it and rolls back. Its hub shaanxi applied its part, which moves no
    calls: exit 5 (not applied), and a Move with ok false that marks the
    hub as such."""
    env.agents["xizang"].signal(signal.SIGSTOP)
    try:
        j = check(ctl_json("cutover", "xizang", "--to", "shaanxi", "--reason", "json frozen",
                           expect=5), MOVE, "cutover not applied")
    finally:
        env.agents["xizang"].signal(signal.SIGCONT)
    assert j["ok"] is False and j["failed"] >= 1, j
    roles = {o["site"]: o["hub"] for o in j["outcomes"]}
    assert roles == {"xizang": False, "shaanxi": True}, j["outcomes"]
    bad = [o for o in j["outcomes"] if o["site"] == "xizang"]
    assert bad and bad[0]["result"] != "applied" and bad[0]["detail"], j
    T.wait_until(lambda: any(e["action"] == "rollback" for e in ctl_json(
        "history", "--action", "rollback", expect=0)["entries"]), 20, "the rollback audited")
    j = check(ctl_json("history", "--limit", "500", expect=0), HISTORY, "history")
    check_history_details(j["entries"])


def test_refusal_by_the_link_prints_json():
    """The controller will not take operator requests on a site's
    certificate. nircctl exits 1 (refused) and, under --json, must still
    print a Refusal on stdout."""
    r = env.ctl("--json", "status", cert="site-hubei")
    assert r.returncode == T.EXIT_REFUSED, f"exit {r.returncode}: {r.stdout} {r.stderr}"
    assert "site certificate" in r.stderr + r.stdout, r
    try:
        j = json.loads(r.stdout)
    except ValueError:
        raise AssertionError(
            "nircctl --json exits 1 (refused) but prints nothing on stdout when the controller "
            f"refuses on the link (Error message instead of an OperatorReply):\n"
            f"stdout: {r.stdout!r}\nstderr: {r.stderr}")
    check(j, REFUSAL, "refusal on the link")
    assert "site certificate" in j["error"], j


def test_everything_still_running():
    for p in T.Proc.all:
        assert p.alive(), f"{p.name} died:\n{p.tail()}"


if __name__ == "__main__":
    T.main([test_document_and_schema_agree,
            test_status_and_site,
            test_plan,
            test_cutover_refusals_print_json,
            test_cutover_dry_run,
            test_cutover_and_restore,
            test_status_load_is_the_agents_last_report,
            test_amend,
            test_restore,
            test_schedule_and_overflow_lists,
            test_capacity,
            test_site_change,
            test_report_staffing,
            test_history,
            test_usage_and_unreachable_print_nothing_on_stdout,
            test_move_not_applied,
            test_refusal_by_the_link_prints_json,
            test_everything_still_running])
