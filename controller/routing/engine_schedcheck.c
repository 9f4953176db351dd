/* engine_schedcheck: the capacity check of a schedule add, set or enable
 * (SPEC: capacity check before any move), split from engine_plan.c: its
 * next window planned by engine_schedule_trial and judged hub by hub.
 * Part of the engine module (engine-int.h); no I/O. */
#include "engine-int.h"

#include "checkjson.h"
#include "err.h"
#include "tz.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the capacity check of a schedule add or set ---- */

/* Site `slug`'s figures are not known for the window: named in c, marked
 * in unknown[] (by site index). */
static void engine_check_unknown(engine_t *e, engine_sched_check_t *c, bool *unknown,
                                 const char *slug) {
  long i = engine_index(e, slug);
  if (i >= 0) {
    if (unknown[i]) return;
    unknown[i] = true;
  }
  if (c->n_not_known < sizeof c->not_known / sizeof c->not_known[0])
    nirc_strlcpy(c->not_known[c->n_not_known++], slug, sizeof c->not_known[0]);
}

/* Whether site `slug` has a forecast at `at`, else why not in c (the
 * first site's why) and marked unknown. */
static bool engine_check_known(engine_t *e, const char *slug, int64_t at, bool now,
                               engine_sched_check_t *c, bool *unknown, char *text, size_t len) {
  engine_demand_t fc;
  engine_forecast_demand(e, slug, at, &fc);
  /* In force now: the live load is the load of the window, not a guess. */
  snprintf(text, len, "%s", now ? "window in force: live load" : fc.text);
  if (now || fc.kind != ENGINE_DEMAND_LIVE) return true;
  if (!c->not_checked[0])
    snprintf(c->not_checked, sizeof c->not_checked,
             "no forecast for %s in its next window (%s): its load then is not known", slug,
             fc.text);
  engine_check_unknown(e, c, unknown, slug);
  return false;
}

/* The first site whose load is not known that hub capacity row `pc`
 * counts (a source it takes, or one it turned down: its prediction then
 * holds a guess, the live load, for it), or NULL. */
static const char *engine_check_guess(engine_t *e, const plan_t *trial, const plan_capacity_t *pc,
                                      const bool *unknown) {
  long h = engine_index(e, pc->hub);
  if (h < 0 || (size_t)h >= trial->n_routes) return NULL;
  const plan_route_t *r = &trial->routes[h];
  for (unsigned j = 0; j < r->n_inbound; j++)
    if (unknown[r->inbound[j]]) return trial->routes[r->inbound[j]].slug;
  if (pc->refused) {
    char names[sizeof pc->refused_sources];
    nirc_strlcpy(names, pc->refused_sources, sizeof names);
    for (char *save = NULL, *tok = strtok_r(names, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save)) {
      long i = engine_index(e, tok);
      if (i >= 0 && unknown[i]) return trial->routes[i].slug;
    }
  }
  return NULL;
}

/* The check of schedule s judged at business time `at`, in its window
 * from `start` (engine_schedule_check, and the old schedule of a set at
 * the new one's instant). */
static int engine_schedule_check_at(engine_t *e, const schedule_t *s, int64_t at, int64_t start,
                                    engine_sched_check_t *c) {
  c->checked = true;
  c->window_start_ms = start;
  c->at_ms = at;
  bool now = at == engine_now(e);
  char text[160];
  /* Unknown is not zero: a site whose figures are not known makes the
   * hubs that would count it unjudged, not the whole check (the others
   * are judged on what is known, and the verdict says it is partial). */
  bool *unknown = calloc(engine_nsites(e) + 1, sizeof *unknown);
  if (!unknown) return NIRC_ENOMEM;
  for (unsigned k = 0; k < s->sources.n; k++)
    engine_check_known(e, s->sources.v[k], at, now, c, unknown, text, sizeof text);
  plan_t trial;
  if (engine_schedule_trial(e, s, at, &trial) != 0) {
    free(unknown);
    return NIRC_ENOMEM;
  }
  for (unsigned h = 0; h < s->hubs.n; h++) {
    engine_hub_check_t *hc = &c->hubs[c->n_hubs++];
    nirc_strlcpy(hc->hub, s->hubs.v[h], sizeof hc->hub);
    hc->known =
        engine_check_known(e, hc->hub, at, now, c, unknown, hc->forecast, sizeof hc->forecast);
    const plan_capacity_t *pc = NULL;
    for (size_t k = 0; k < trial.n_capacity && !pc; k++)
      if (strcmp(trial.capacity[k].hub, hc->hub) == 0) pc = &trial.capacity[k];
    if (!pc) { /* nothing to predict: said, not shown as figures */
      if (hc->known) snprintf(hc->forecast, sizeof hc->forecast, "the plan sends it no calls");
      continue;
    }
    if (pc->cap_source == CAPACITY_UNKNOWN) {
      hc->known = false;
      if (!c->not_checked[0])
        snprintf(c->not_checked, sizeof c->not_checked,
                 "the agents of %s are neither measured nor configured (nircctl capacity %s "
                 "--seats N): its capacity is not known",
                 hc->hub, hc->hub);
      snprintf(hc->forecast, sizeof hc->forecast,
               "agents neither measured nor configured: capacity not known");
      engine_check_unknown(e, c, unknown, hc->hub);
      continue;
    }
    const char *guess = hc->known ? engine_check_guess(e, &trial, pc, unknown) : NULL;
    if (guess) {
      hc->known = false;
      char was[sizeof hc->forecast];
      nirc_strlcpy(was, hc->forecast, sizeof was);
      snprintf(hc->forecast, sizeof hc->forecast,
               "not judged: it would take %s, whose load then is not known (%s)", guess, was);
    }
    /* A hub that turns sources down is judged with them (the largest it
     * turned down, as a cutover's refusal says): that is what the window
     * would lack. */
    const erlang_prediction_t *p = pc->refused ? &pc->with_refused : &pc->after;
    hc->figures = true;
    hc->sl = engine_sl(p);
    hc->stable = p->stable;
    hc->needed = pc->refused ? pc->with_refused_needed : pc->agents_needed;
    hc->agents = pc->after.agents;
    hc->misses = hc->known && (pc->refused || !p->stable);
    if (!hc->misses) continue;
    engine_append(c->refusal, sizeof c->refusal,
                  "%s%s predicted SL %.0f%%%s (needs %u agents, has %u; %s)",
                  c->refused ? "; " : "", hc->hub, 100.0 * hc->sl, hc->stable ? "" : ", unstable",
                  hc->needed, hc->agents, hc->forecast);
    c->refused = true;
  }
  planner_free(&trial);
  free(unknown);
  bool any = false, judged = false;
  for (unsigned h = 0; h < c->n_hubs; h++) {
    any |= c->hubs[h].figures;
    judged |= c->hubs[h].figures && c->hubs[h].known;
  }
  if (!any && !c->not_checked[0]) /* a prediction of nothing is no check */
    snprintf(c->not_checked, sizeof c->not_checked,
             "the plan sends its hubs no calls (its sources or hubs not online or not heard, or "
             "other rules come first: nircctl plan --schedule %s says why)",
             s->name);
  c->checked = judged;
  c->partial = judged && c->n_not_known > 0;
  if (!c->checked) { /* unknown is not a verdict: figures shown, nothing refused */
    c->refused = false;
    c->refusal[0] = '\0';
    for (unsigned h = 0; h < c->n_hubs; h++)
      c->hubs[h].misses = false;
  }
  return 0;
}

/* The forecast's granularity (engine_forecast.c: a half hour of load
 * history a slot): the window is judged once in each. */
#define ENGINE_CHECK_STEP_MS (30 * 60000)

/* The instants the check of a window ending at `end` judges, into
 * v (ENGINE_CHECK_INSTANTS at most): `at` (a minute in, or now while in
 * force), then the start of every later half hour of the window (one
 * that starts at 12:15 is judged at 12:16, 12:30, 13:00, ...). A night window's
 * busiest half hour may be anywhere in it (22:30, or a morning rise at
 * 07:30): judged at its first minute alone, a window the hub cannot take
 * later "passed". Cost: one trial plan an instant (engine_build_input,
 * a forecast lookup a site, planner_run). planner_run alone at 20,000
 * sites took 22-48 ms (measured once, a throwaway bench of the night
 * scenario copied to 20,000 sites, -O2, on a loaded 2-core machine), so
 * a 24-hour window's 49 instants hold the loop some 1-2.5 s while the
 * operator waits, and a set's no-worse comparison up to twice that again
 * (two trials at each instant that misses): the loop does nothing else
 * meanwhile. A window of a few hours costs a fraction of it. */
static unsigned engine_check_instants(int64_t at, int64_t end, int64_t *v) {
  unsigned n = 0;
  v[n++] = at;
  /* The forecast's half hours start on the hour and the half hour (in a
   * zone whose offset is whole half hours: not Nepal's or Chatham's). */
  for (int64_t t = at - at % ENGINE_CHECK_STEP_MS + ENGINE_CHECK_STEP_MS;
       t < end && n < ENGINE_CHECK_INSTANTS; t += ENGINE_CHECK_STEP_MS)
    v[n++] = t;
  return n;
}

/* Instant t of schedule s's window from `start` for people: "07:30", the
 * half hour it judges (the first, a minute in, says the window's start), or
 * "now (12:10)" while in force. */
static void engine_instant_text(engine_t *e, const schedule_t *s, int64_t t, int64_t start,
                                char *buf, size_t len) {
  bool now = t == engine_now(e);
  int64_t shown = !now && t % ENGINE_CHECK_STEP_MS ? start : t;
  tz_local_t l;
  buf[0] = '\0';
  if (tz_to_local(s->tz, shown, &l) == 0)
    snprintf(buf, len, "%s%02d:%02d%s", now ? "now (" : "", l.hour, l.minute, now ? ")" : "");
}

/* How short of the floor check c is: its worst judged hub's missing
 * agents (negative: to spare) and lowest service level. */
static void engine_check_margin(const engine_sched_check_t *c, long *short_by, double *sl) {
  *short_by = -1000000;
  *sl = 2;
  for (unsigned h = 0; h < c->n_hubs; h++) {
    const engine_hub_check_t *hc = &c->hubs[h];
    if (!hc->figures || !hc->known) continue;
    long d = (long)hc->needed - (long)hc->agents;
    if (d > *short_by) *short_by = d;
    if (hc->sl < *sl) *sl = hc->sl;
  }
}

/* Whether instant check a is worse than b: judged before not, missing
 * the floor before passing, then more agents short, then a lower SL. */
static bool engine_check_worse(const engine_sched_check_t *a, const engine_sched_check_t *b) {
  if (a->checked != b->checked) return a->checked;
  if (a->refused != b->refused) return a->refused;
  long sa, sb;
  double la, lb;
  engine_check_margin(a, &sa, &la);
  engine_check_margin(b, &sb, &lb);
  return sa != sb ? sa > sb : la < lb;
}

int engine_schedule_check(engine_t *e, const schedule_t *s, engine_sched_check_t *c) {
  memset(c, 0, sizeof *c);
  int64_t at, start, end;
  if (!engine_schedule_ahead(e, s, &at, &start, &end)) {
    snprintf(c->not_checked, sizeof c->not_checked,
             "no window ahead: every day it runs is excepted, so it would move no calls");
    return 0;
  }
  int64_t inst[ENGINE_CHECK_INSTANTS];
  unsigned n = engine_check_instants(at, end, inst);
  /* c keeps the worst instant; all gathers every instant's unknown sites
   * (unknown anywhere in the window makes the check partial there). */
  engine_sched_check_t *cur = malloc(sizeof *cur), *all = calloc(1, sizeof *all);
  if (!cur || !all) {
    free(cur);
    free(all);
    return NIRC_ENOMEM;
  }
  unsigned judged = 0, missed = 0;
  for (unsigned i = 0; i < n; i++) {
    memset(cur, 0, sizeof *cur);
    if (engine_schedule_check_at(e, s, inst[i], start, cur) != 0) {
      free(cur);
      free(all);
      return NIRC_ENOMEM;
    }
    judged += cur->checked;
    missed += cur->refused;
    all->inst_at[i] = inst[i];
    all->inst_misses[i] = cur->refused;
    if (!all->not_checked[0] && (!cur->checked || cur->partial))
      nirc_strlcpy(all->not_checked, cur->not_checked, sizeof all->not_checked);
    for (unsigned k = 0; k < cur->n_not_known; k++) {
      bool seen = false;
      for (unsigned j = 0; j < all->n_not_known && !seen; j++)
        seen = strcmp(all->not_known[j], cur->not_known[k]) == 0;
      if (!seen && all->n_not_known < sizeof all->not_known / sizeof all->not_known[0])
        nirc_strlcpy(all->not_known[all->n_not_known++], cur->not_known[k],
                     sizeof all->not_known[0]);
    }
    if (i == 0 || engine_check_worse(cur, c)) memcpy(c, cur, sizeof *c);
  }
  free(cur);
  c->n_instants = n;
  c->n_judged = judged;
  c->n_missed = missed;
  memcpy(c->inst_at, all->inst_at, sizeof c->inst_at);
  memcpy(c->inst_misses, all->inst_misses, sizeof c->inst_misses);
  memcpy(c->not_known, all->not_known, sizeof c->not_known);
  c->n_not_known = all->n_not_known;
  c->partial = c->checked && c->n_not_known > 0;
  if (c->partial && !c->not_checked[0])
    nirc_strlcpy(c->not_checked, all->not_checked, sizeof c->not_checked);
  free(all);
  if (c->refused) {
    /* The verdict names the worst instant: passes only if every half
     * hour passes. */
    char when[64] = "", worst[24], head[240];
    tz_local_t l;
    if (tz_to_local(s->tz, start, &l) == 0)
      snprintf(when, sizeof when, " (%04d-%02d-%02d %02d:%02d %s)", l.year, l.month, l.day, l.hour,
               l.minute, s->tz);
    engine_instant_text(e, s, c->at_ms, start, worst, sizeof worst);
    if (judged > 1)
      snprintf(head, sizeof head,
               "its next window%s would miss the service-level floor (%.0f%%) at %u of the %u "
               "half hours judged, the worst at %s: ",
               when, 100.0 * e->opts.sl_target, missed, judged, worst);
    else
      snprintf(head, sizeof head,
               "its next window%s would miss the service-level floor (%.0f%%) at %s: ", when,
               100.0 * e->opts.sl_target, worst);
    char body[sizeof c->refusal];
    nirc_strlcpy(body, c->refusal, sizeof body);
    snprintf(c->refusal, sizeof c->refusal, "%s%s", head, body);
  }
  if (c->partial && c->refused) {
    char names[200] = "";
    for (unsigned k = 0; k < c->n_not_known; k++)
      engine_append(names, sizeof names, "%s%s", k ? ", " : "", c->not_known[k]);
    engine_append(c->refusal, sizeof c->refusal, " (a partial check: not known for %s)", names);
  }
  return 0;
}

/* A window's length in minutes (one crossing midnight runs to the next
 * day's end). */
static int engine_window_min(const schedule_t *s) {
  int d = s->end_min - s->start_min;
  return d > 0 ? d : d + 24 * 60;
}

/* How `now` makes the windows of `was` longer or more, for people ("it
 * ends later (08:30, was 08:00)"); "" when it does not: more minutes a
 * window, more days, or an excepted date that now runs. */
static void engine_schedule_longer(const schedule_t *was, const schedule_t *now, char *buf,
                                   size_t len) {
  buf[0] = '\0';
  size_t used = 0;
  if (engine_window_min(now) > engine_window_min(was))
    used += (size_t)snprintf(buf, len,
                             "its window is longer (%02d:%02d-%02d:%02d, was "
                             "%02d:%02d-%02d:%02d)",
                             now->start_min / 60, now->start_min % 60, now->end_min / 60,
                             now->end_min % 60, was->start_min / 60, was->start_min % 60,
                             was->end_min / 60, was->end_min % 60);
  if ((now->days & ~was->days) && used < len)
    used += (size_t)snprintf(buf + used, len - used, "%sit runs on more days", used ? ", " : "");
  for (unsigned k = 0; k < was->n_exceptions && used < len; k++) {
    bool kept = false;
    for (unsigned j = 0; j < now->n_exceptions && !kept; j++)
      kept = now->exceptions[j] == was->exceptions[k];
    if (!kept) {
      snprintf(buf + used, len - used, "%san excepted date runs again", used ? ", " : "");
      break;
    }
  }
}

/* "HH:MM-HH:MM" of schedule s's window. */
static void engine_window_text(const schedule_t *s, char *buf, size_t len) {
  snprintf(buf, len, "%02d:%02d-%02d:%02d", s->start_min / 60, s->start_min % 60, s->end_min / 60,
           s->end_min % 60);
}

/* Whether `old`, judged at instant t of the new window (from `start`),
 * makes the new schedule s's miss there no worse: old covers t, was
 * judged there (not partial) and its hubs missed as much; else false
 * and `why`, naming the hour. Sets nc->old_window. 0 or NIRC_ENOMEM. */
static int engine_instant_no_worse(engine_t *e, const schedule_t *old, const schedule_t *s,
                                   int64_t t, int64_t start, engine_sched_check_t *nc, bool *ok,
                                   char *why, size_t len) {
  char was[16], hour[40];
  engine_window_text(old, was, sizeof was);
  engine_instant_text(e, s, t, start, hour, sizeof hour);
  *ok = false;
  schedule_t on = *old;
  on.enabled = true;
  int64_t ws = 0, we = 0;
  if (!rules_schedule_window(&on, t, &ws, &we)) {
    nc->old_window = ENGINE_OLD_WINDOW_OUTSIDE;
    snprintf(why, len,
             "its old window (%s) did not cover %s: an hour only the new window covers is "
             "judged on its own, not against the old window",
             was, hour);
    return 0;
  }
  nc->old_window = ENGINE_OLD_WINDOW_COVERS;
  engine_sched_check_t *oc = calloc(1, sizeof *oc), *ic = calloc(1, sizeof *ic);
  int rc = !oc || !ic ? NIRC_ENOMEM : engine_schedule_check_at(e, &on, t, ws, oc);
  if (rc == 0) rc = engine_schedule_check_at(e, s, t, start, ic);
  if (rc != 0) {
    free(oc);
    free(ic);
    return rc;
  }
  if (!oc->checked || oc->partial) {
    snprintf(why, len, "its old window (%s) could not be judged at %s to compare with", was, hour);
    free(oc);
    free(ic);
    return 0;
  }
  bool worse = false;
  for (unsigned k = 0; k < ic->n_hubs && !worse; k++) {
    const engine_hub_check_t *h = &ic->hubs[k];
    if (!h->misses) continue;
    const engine_hub_check_t *o = NULL;
    for (unsigned j = 0; j < oc->n_hubs && !o; j++)
      if (strcmp(oc->hubs[j].hub, h->hub) == 0) o = &oc->hubs[j];
    worse = !o || !o->misses || h->needed > o->needed || h->agents < o->agents;
    if (!worse) continue;
    if (!o || !o->misses)
      snprintf(why, len,
               "worse than its old window (%s) at the same hour, %s: %s met the floor then", was,
               hour, h->hub);
    else
      snprintf(why, len,
               "worse than its old window (%s) at the same hour, %s: %s needs %u agents (has "
               "%u), was %u (had %u)",
               was, hour, h->hub, h->needed, h->agents, o->needed, o->agents);
  }
  free(oc);
  free(ic);
  *ok = !worse;
  return 0;
}

/* Whether changing `old` into the schedule whose check is `nc` makes its
 * next window no worse, instant for instant. The check judges the new
 * window at each half hour (engine_schedule_check); at each instant
 * where it misses, the old schedule is judged at that same instant, never
 * at its own window's start: the old window's misses at 22:00 say nothing
 * of the new one's at 21:00. An instant the old window does not cover
 * (hours only the new window covers) is judged on its own: missing there
 * refuses (nc->old_window ENGINE_OLD_WINDOW_OUTSIDE). Where it covers,
 * the change is no worse there if the old schedule missed the floor
 * there too (checked, not partial) and no hub judged now misses that did
 * not, or needs more agents; and the windows are no longer or more. A
 * change that moves no calls onto a hub (a shorter window, another wave
 * size) is not refused for the state it leaves as it found it;
 * lengthening an overloaded window is making it worse for longer. On
 * false `why` says why for the refusal ("" when there is nothing to
 * say). */
bool engine_schedule_no_worse(engine_t *e, const schedule_t *old, const schedule_t *s,
                              engine_sched_check_t *nc, char *why, size_t len) {
  char longer[160];
  why[0] = '\0';
  engine_schedule_longer(old, s, longer, sizeof longer);
  if (longer[0]) {
    snprintf(why, len, "the change makes it worse for longer: %s", longer);
    return false;
  }
  bool ok = nc->n_missed > 0;
  for (unsigned i = 0; i < nc->n_instants && ok; i++)
    if (nc->inst_misses[i] && engine_instant_no_worse(e, old, s, nc->inst_at[i],
                                                      nc->window_start_ms, nc, &ok, why, len) != 0)
      return false;
  return ok;
}

Nirc__ScheduleCheck *engine_check_reply(engine_arena_t *a, const engine_sched_check_t *c) {
  Nirc__ScheduleCheck *sc = engine_arena_alloc(a, sizeof *sc);
  if (!sc) return NULL;
  nirc__schedule_check__init(sc);
  sc->checked = c->checked;
  sc->not_checked = engine_arena_str(a, c->checked && !c->partial ? "" : c->not_checked);
  sc->window_start_ms = c->window_start_ms;
  sc->refused = c->refused;
  sc->forced = c->forced;
  sc->refusal = engine_arena_str(a, c->refusal);
  sc->dry_run = c->dry_run;
  sc->partial = c->partial;
  sc->worst_at_ms = c->n_judged ? c->at_ms : 0;
  sc->instants_judged = c->n_judged;
  sc->instants_missed = c->n_missed;
  sc->no_worse = c->no_worse;
  sc->old_window = (char *)(c->old_window == ENGINE_OLD_WINDOW_COVERS    ? "covers"
                            : c->old_window == ENGINE_OLD_WINDOW_OUTSIDE ? "does_not_cover"
                                                                         : "");
  sc->not_known_sites = engine_arena_alloc(a, (c->n_not_known + 1) * sizeof *sc->not_known_sites);
  if (!sc->not_known_sites) return NULL;
  for (unsigned k = 0; k < c->n_not_known; k++)
    sc->not_known_sites[sc->n_not_known_sites++] = engine_arena_str(a, c->not_known[k]);
  sc->hubs = engine_arena_alloc(a, (c->n_hubs + 1) * sizeof *sc->hubs);
  if (!sc->hubs) return NULL;
  for (unsigned k = 0; k < c->n_hubs; k++) {
    const engine_hub_check_t *h = &c->hubs[k];
    Nirc__ScheduleHubCheck *hc = engine_arena_alloc(a, sizeof *hc);
    if (!hc) return NULL;
    nirc__schedule_hub_check__init(hc);
    hc->hub = engine_arena_str(a, h->hub);
    hc->known = h->known;
    hc->sl_after = h->sl;
    hc->agents_needed = h->needed;
    hc->agents = h->agents;
    hc->stable_after = h->stable;
    hc->misses = h->misses;
    hc->predicted = h->known && h->figures;
    hc->forecast = engine_arena_str(a, h->forecast);
    sc->hubs[sc->n_hubs++] = hc;
  }
  return sc;
}

json_t *engine_schedule_check_json(const engine_sched_check_t *c) {
  /* The shape nircctl gives the reply's check, built by the same code
   * from the same protobuf the reply carries. */
  engine_arena_t a = {0};
  const Nirc__ScheduleCheck *sc = engine_check_reply(&a, c);
  json_t *j = sc && !a.failed ? checkjson_schedule(sc) : NULL;
  engine_arena_free(&a);
  return j;
}
