/* ctl_rules: how nircctl shows the rule lists of `nircctl schedule list`
 * and `nircctl overflow list` (and the replies of their changes): the
 * tables and the documents of docs/CLI-JSON.md. Pure output; every text
 * from the controller goes through ctl_esc (ctl_plan.h). */
#include "ctl_rules.h"

#include "checkjson.h"

#include "ctl_history.h"
#include "ctl_plan.h"

#include <stdbool.h>
#include <string.h>

#define esc ctl_esc

/* What a `schedule set` or `overflow set` changed (RuleChange). */
static json_t *ctl_change_json(const Nirc__RuleChange *c) {
  json_t *changed = json_array(), *moves = json_array();
  for (size_t k = 0; k < c->n_changed; k++)
    json_array_append_new(changed, json_string(c->changed[k]));
  for (size_t k = 0; k < c->n_moves; k++)
    json_array_append_new(moves, json_pack("{s:s, s:s, s:s}", "site", c->moves[k]->site, "from",
                                           c->moves[k]->from, "to", c->moves[k]->to));
  return json_pack("{s:s, s:o, s:o, s:I, s:b}", "name", c->name, "changed", changed, "moves", moves,
                   "kept", (json_int_t)c->kept, "dry_run", c->dry_run);
}

json_t *ctl_schedules_json(const Nirc__ScheduleReply *r) {
  json_t *arr = json_array();
  for (size_t i = 0; i < r->n_schedules; i++) {
    const Nirc__ScheduleSpec *s = r->schedules[i];
    json_t *src = json_array(), *hub = json_array(), *ex = json_array();
    for (size_t k = 0; k < s->n_sources; k++)
      json_array_append_new(src, json_string(s->sources[k]));
    for (size_t k = 0; k < s->n_hubs; k++)
      json_array_append_new(hub, json_string(s->hubs[k]));
    for (size_t k = 0; k < s->n_exceptions; k++)
      json_array_append_new(ex, json_string(s->exceptions[k]));
    json_array_append_new(
        arr, json_pack("{s:I, s:s, s:o, s:o, s:s, s:s, s:s, s:s, s:o, s:I, s:b, "
                       "s:b, s:I}",
                       "id", (json_int_t)s->id, "name", s->name, "sources", src, "hubs", hub,
                       "start", s->start, "end", s->end, "days", s->days, "tz", s->tz, "exceptions",
                       ex, "wave_size", (json_int_t)s->wave_size, "enabled", s->enabled, "in_force",
                       s->in_force, "next_start_ms", (json_int_t)s->next_start_ms));
    json_t *last = json_array_get(arr, json_array_size(arr) - 1);
    json_object_set_new(last, "sources_moved", json_integer(s->sources_moved));
    json_object_set_new(last, "sources_not_known", json_integer(s->sources_not_known));
  }
  json_t *j = json_pack("{s:o}", "schedules", arr);
  if (j && r->change) json_object_set_new(j, "change", ctl_change_json(r->change));
  if (j && r->check) json_object_set_new(j, "check", checkjson_schedule(r->check));
  return j;
}

json_t *ctl_refusal_json(const char *why, json_t *plan, const Nirc__OperatorReply *rep) {
  json_t *j = json_pack("{s:b, s:s, s:o}", "ok", 0, "error", why, "plan", plan);
  if (j && rep->body_case == NIRC__OPERATOR_REPLY__BODY_SCHEDULE && rep->schedule &&
      rep->schedule->check)
    json_object_set_new(j, "check", checkjson_schedule(rep->schedule->check));
  return j;
}

/* What a `schedule set` changed, above the list: the fields, the sources
 * whose route changes, and how many keep theirs (no trip home). */
static void ctl_change_print(FILE *out, const char *kind, const Nirc__RuleChange *c) {
  fprintf(out, "%s '%s' %s:", kind, esc(c->name),
          c->dry_run ? "would change (dry run: nothing was changed)" : "changed");
  for (size_t k = 0; k < c->n_changed; k++)
    fprintf(out, "%s %s", k ? ";" : "", esc(c->changed[k]));
  fprintf(out, "\n");
  for (size_t k = 0; k < c->n_moves; k++)
    fprintf(out, "  %s: %s -> %s\n", esc(c->moves[k]->site), esc(c->moves[k]->from),
            esc(c->moves[k]->to));
  if (c->n_moves && strcmp(kind, "schedule") == 0)
    fprintf(out, "  (a move onto a hub goes in the schedule's waves)\n");
  if (c->n_moves || c->kept)
    fprintf(out, "  %u source(s) %s their route%s\n\n", c->kept, c->dry_run ? "would keep" : "keep",
            c->kept ? " (sent the new end, if it changed; no trip home)" : "");
  else
    fprintf(out, "  no source routes by it now: nothing moves\n\n");
}

/* The prediction of the schedule's next window, above the list: per hub
 * the service level, agents needed and staffed, and the forecast used. */
static void ctl_check_print(FILE *out, const Nirc__ScheduleCheck *c, const char *tz) {
  char when[40] = "";
  if (c->window_start_ms) ctl_history_time(c->window_start_ms, tz, when, sizeof when);
  /* Judged at each half hour (a controller before that sends none): how
   * many, how many miss, and which instant the figures below are. */
  char instants[160] = "", worst[40];
  if (c->instants_judged) {
    ctl_history_time(c->worst_at_ms, tz, worst, sizeof worst);
    if (c->instants_missed)
      snprintf(instants, sizeof instants,
               "; at %u of the %u half hours judged (figures below: the worst, %s)",
               c->instants_missed, c->instants_judged, worst);
    else
      snprintf(instants, sizeof instants,
               "; judged at %u half hours (figures below: the tightest, %s)", c->instants_judged,
               worst);
  }
  if (!c->checked)
    fprintf(out, "capacity of the window%s%s NOT checked: %s\n", when[0] ? " from " : "", when,
            esc(c->not_checked));
  else
    fprintf(out, "capacity of the window from %s: %s%s%s\n", when,
            c->refused && c->no_worse
                ? "MISSES the floor as before: the change adds no load to a hub and does not "
                  "lengthen the window (not refused)"
            : c->refused && c->forced  ? "MISSES the floor, forced (--force; audited)"
            : c->refused && c->dry_run ? "MISSES the floor (refused without --force)"
            : c->refused               ? "MISSES the floor"
            : c->partial               ? "passes where known"
                                       : "passes",
            c->partial ? " (a PARTIAL check: see not known below)" : "", instants);
  for (size_t k = 0; k < c->n_hubs; k++) {
    const Nirc__ScheduleHubCheck *h = c->hubs[k];
    if (!h->predicted) {
      fprintf(out, "  %-12s not predicted: %s\n", esc(h->hub), esc(h->forecast));
      continue;
    }
    fprintf(out, "  %-12s SL %3.0f%%%s  needs %u agents, has %u%s  (%s)\n", esc(h->hub),
            100.0 * h->sl_after, h->stable_after ? "" : " unstable", h->agents_needed, h->agents,
            h->misses ? "  MISSES" : "", esc(h->forecast));
  }
  if (c->checked && c->n_not_known_sites) {
    /* Unknown is not zero: named, never counted as no load. */
    fprintf(out, "  not known for the window:");
    for (size_t k = 0; k < c->n_not_known_sites; k++)
      fprintf(out, "%s %s", k ? "," : "", esc(c->not_known_sites[k]));
    fprintf(out, " (%s)\n", esc(c->not_checked));
  }
  if (c->refused && c->dry_run) fprintf(out, "  %s\n", esc(c->refusal));
  if (c->dry_run) fprintf(out, "  (dry run: nothing was changed)\n");
  fprintf(out, "\n");
}

/* The IN FORCE cell. In its window but moving nobody (hubs offline or
 * full) is not "in force" for the people reading this: say what is true.
 * Sources whose route is not known here are neither moved nor home: with
 * any, no verdict word, the known count and how many are not known. */
static void ctl_schedule_force(const Nirc__ScheduleSpec *s, char *buf, size_t len) {
  if (!s->in_force)
    snprintf(buf, len, "no");
  else if (s->sources_not_known)
    snprintf(buf, len, "%u/%zu, %u not known", s->sources_moved, s->n_sources,
             s->sources_not_known);
  else if (s->sources_moved == s->n_sources)
    snprintf(buf, len, "YES %u/%zu", s->sources_moved, s->n_sources);
  else if (s->sources_moved)
    snprintf(buf, len, "PARTLY %u/%zu", s->sources_moved, s->n_sources);
  else
    snprintf(buf, len, "NOT RUNNING 0/%zu", s->n_sources);
}

void ctl_schedules_print(FILE *out, const Nirc__ScheduleReply *r, const char *tz) {
  if (r->change) ctl_change_print(out, "schedule", r->change);
  if (r->check) ctl_check_print(out, r->check, tz);
  /* IN FORCE as wide as its widest cell, so the columns after it line up. */
  int fw = 16;
  bool not_known = false;
  for (size_t i = 0; i < r->n_schedules; i++) {
    char force[48];
    ctl_schedule_force(r->schedules[i], force, sizeof force);
    if ((int)strlen(force) > fw) fw = (int)strlen(force);
    not_known |= r->schedules[i]->in_force && r->schedules[i]->sources_not_known;
  }
  fprintf(out, "%-14s %-11s %-8s %-4s %-14s %-4s %-*s %-12s %-24s %-22s %s\n", "NAME", "WINDOW",
          "DAYS", "WAVE", "TZ", "ON", fw, "IN FORCE", "NEXT START", "SOURCES", "HUBS",
          "EXCEPTIONS");
  for (size_t i = 0; i < r->n_schedules; i++) {
    const Nirc__ScheduleSpec *s = r->schedules[i];
    char win[48], force[48], next[40] = "-", src[256] = "", hubs[160] = "", ex[256] = "";
    snprintf(win, sizeof win, "%s-%s", esc(s->start), esc(s->end));
    ctl_schedule_force(s, force, sizeof force);
    if (s->next_start_ms) {
      char full[40];
      ctl_history_time(s->next_start_ms, tz, full, sizeof full);
      snprintf(next, sizeof next, "%.5s %.5s", full + 5, full + 11);
    }
    for (size_t k = 0, used = 0; k < s->n_sources && used < sizeof src; k++)
      used +=
          (size_t)snprintf(src + used, sizeof src - used, "%s%s", k ? "," : "", esc(s->sources[k]));
    for (size_t k = 0, used = 0; k < s->n_hubs && used < sizeof hubs; k++)
      used +=
          (size_t)snprintf(hubs + used, sizeof hubs - used, "%s%s", k ? "," : "", esc(s->hubs[k]));
    for (size_t k = 0, used = 0; k < s->n_exceptions && used < sizeof ex; k++)
      used += (size_t)snprintf(ex + used, sizeof ex - used, "%s%s", k ? "," : "",
                               esc(s->exceptions[k]));
    fprintf(out, "%-14s %-11s %-8s %-4u %-14s %-4s %-*s %-12s %-24s %-22s %s\n", esc(s->name), win,
            esc(s->days), s->wave_size, esc(s->tz), s->enabled ? "yes" : "no", fw, force, next, src,
            hubs, ex[0] ? ex : "-");
  }
  if (not_known)
    fprintf(out, "\nIN FORCE n/N, M not known: n sources moved by it, M whose route is not known "
                 "here (not heard, or unknown at the PBX): nircctl status --problems\n");
  if (r->n_schedules == 0) fprintf(out, "(no schedules)\n");
  /* Two zones in one row: each WINDOW is its schedule's wall clock, NEXT
   * START the operations room's, as `next` and `plan` show times. */
  else
    fprintf(out, "\nNEXT START in %s; WINDOW in each schedule's TZ\n", tz);
}

json_t *ctl_overflows_json(const Nirc__OverflowReply *r) {
  json_t *arr = json_array();
  for (size_t i = 0; i < r->n_rules; i++) {
    const Nirc__OverflowSpec *o = r->rules[i];
    json_t *hub = json_array();
    for (size_t k = 0; k < o->n_hubs; k++)
      json_array_append_new(hub, json_string(o->hubs[k]));
    json_array_append_new(
        arr, json_pack("{s:I, s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:I, s:b, "
                       "s:b}",
                       "id", (json_int_t)o->id, "name", o->name, "source", o->source, "hubs", hub,
                       "trigger_wait_s", (json_int_t)o->trigger_wait_s, "release_wait_s",
                       (json_int_t)o->release_wait_s, "trigger_queue", (json_int_t)o->trigger_queue,
                       "release_queue", (json_int_t)o->release_queue, "trigger_sl", o->trigger_sl,
                       "release_sl", o->release_sl, "share_cap_permille",
                       (json_int_t)o->share_cap_permille, "min_hold_s", (json_int_t)o->min_hold_s,
                       "margin_s", (json_int_t)o->margin_s, "enabled", o->enabled, "engaged",
                       o->engaged));
    json_t *last = json_array_get(arr, json_array_size(arr) - 1);
    json_object_set_new(last, "triggered", json_boolean(o->triggered));
    /* Its source's route not known: what it moves is not known, not 0. */
    json_object_set_new(last, "moved_permille",
                        o->route_not_known ? json_null() : json_integer(o->moved_permille));
    json_object_set_new(last, "route_not_known", json_boolean(o->route_not_known));
  }
  json_t *j = json_pack("{s:o}", "rules", arr);
  if (j && r->change) json_object_set_new(j, "change", ctl_change_json(r->change));
  if (j && r->check) json_object_set_new(j, "check", ctl_plan_json(r->check));
  return j;
}

/* Where an added or changed rule would spill if it engaged now, above the
 * list: the moves, each hub's prediction and what it was made on, and why
 * a hub would not take it. */
static void ctl_overflow_check_print(FILE *out, const Nirc__PlanReply *p) {
  fprintf(out, "if it engaged now:\n");
  for (size_t k = 0; k < p->n_moves; k++) {
    const Nirc__PlannedMove *m = p->moves[k];
    fprintf(out, "  %s ->", esc(m->site));
    for (size_t q = 0; q < m->n_route; q++)
      fprintf(out, " %s:%u", esc(m->route[q]->site), m->route[q]->permille);
    fprintf(out, "\n");
  }
  for (size_t k = 0; k < p->n_capacity; k++) {
    const Nirc__CapacityPrediction *c = p->capacity[k];
    fprintf(out, "  %-12s SL %3.0f%%%s  needs %u agents, has %u", esc(c->hub), 100.0 * c->sl_after,
            c->stable_after ? "" : " unstable", c->agents_needed, c->agents);
    if (c->load_note[0]) fprintf(out, "  (%s)", esc(c->load_note));
    fprintf(out, "\n");
  }
  for (size_t k = 0; k < p->n_alarms; k++)
    fprintf(out, "  %s\n", esc(p->alarms[k]));
  if (!p->n_moves && !p->n_alarms) fprintf(out, "  nothing would move\n");
  fprintf(out, "\n");
}

void ctl_overflows_print(FILE *out, const Nirc__OverflowReply *r) {
  if (r->change) ctl_change_print(out, "overflow rule", r->change);
  if (r->check) ctl_overflow_check_print(out, r->check);
  bool not_known = false;
  fprintf(out, "%-16s %-10s %-6s %-12s %-12s %-12s %-6s %-12s %s\n", "NAME", "SOURCE", "CAP",
          "WAIT trg/rel", "QUEUE trg/rel", "SL trg/rel", "HOLD", "ENGAGED", "HUBS");
  for (size_t i = 0; i < r->n_rules; i++) {
    const Nirc__OverflowSpec *o = r->rules[i];
    char w[24], q[24], sl[24], cap[16], hold[16], eng[32];
    snprintf(w, sizeof w, "%us/%us", o->trigger_wait_s, o->release_wait_s);
    snprintf(q, sizeof q, "%u/%u", o->trigger_queue, o->release_queue);
    snprintf(sl, sizeof sl, "%.2f/%.2f", o->trigger_sl, o->release_sl);
    snprintf(cap, sizeof cap, "%u‰", o->share_cap_permille);
    snprintf(hold, sizeof hold, "%us", o->min_hold_s);
    /* Engaged is what moves: a triggered rule whose calls no hub took
     * says so instead of "YES". */
    if (o->route_not_known) {
      snprintf(eng, sizeof eng, "not known");
      not_known = true;
    } else if (o->engaged)
      snprintf(eng, sizeof eng, "YES %u‰", o->moved_permille);
    else if (o->triggered)
      snprintf(eng, sizeof eng, "held (0‰)");
    else
      snprintf(eng, sizeof eng, "no");
    fprintf(out, "%-16s %-10s %-8s %-12s %-12s %-12s %-6s %-12s ", esc(o->name), esc(o->source),
            cap, w, q, sl, hold, eng);
    for (size_t k = 0; k < o->n_hubs; k++)
      fprintf(out, "%s%s", k ? "," : "", esc(o->hubs[k]));
    fprintf(out, "\n");
  }
  if (not_known)
    fprintf(out, "\nENGAGED not known: its source's route is not known here (not heard, or "
                 "unknown at the PBX), so neither is what it moves: nircctl site SOURCE\n");
  if (r->n_rules == 0) fprintf(out, "(no overflow rules)\n");
}
