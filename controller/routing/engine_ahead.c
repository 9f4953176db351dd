/* engine_ahead: the load a move with no schedule window (a cutover, an
 * amendment, `nircctl plan` of one) is checked on. Part of the engine
 * module (engine-int.h); no I/O.
 *
 * The smoothed live load is the last minutes' load. Operators move calls
 * when the morning rises, and the check then said "safe" on a load about
 * to be exceeded. So each site of the move (its sources and hubs) is
 * predicted on the larger of its live load and the forecast for the coming
 * half hour (engine_forecast.c: the load history's, else the scenario's),
 * and every hub's prediction says which one it was made on and both
 * figures. A site with no forecast keeps its live load, and the
 * prediction says its rise could not be checked: unknown is not zero.
 *
 * Why the next half hour: it is the forecast's own step (a half-hour
 * slot), and it covers the verification window (a minute or two) with
 * room. A longer look would refuse a move for a peak the engine sees
 * coming on every tick anyway: the planner checks the move again on the
 * live load each minute while it lasts, and an open-ended cutover has no
 * end to look to. The half hour is [now, now + 30 min), so it spans the
 * slot holding now and the slot holding its last minute: both are asked,
 * and the larger is used.
 *
 * The overflow rules' sources and hubs get the same look on every plan
 * (engine_ahead_overflow_input), and so do the sources of every rule that
 * may send calls to those hubs: a spill that starts or grows is checked
 * on all of it (planner_overflow.c). */
#include "engine-int.h"

#include "err.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENGINE_AHEAD_MS (30 * 60000LL)

/* A load's Erlangs; a missing figure counts as none (planner_rate). */
static double engine_erl(double cps, double aht_s) {
  double c = isfinite(cps) && cps > 0 ? cps : 0, a = isfinite(aht_s) && aht_s > 0 ? aht_s : 0;
  return c * a;
}

static engine_ahead_site_t *engine_ahead_find(engine_ahead_t *ah, size_t i) {
  return ah->pos && ah->pos[i] >= 0 ? &ah->site[ah->pos[i]] : NULL;
}

/* Site i's live load and its forecast for [from_ms, to_ms) into s (no
 * raise). */
static void engine_ahead_look(engine_t *e, size_t i, int64_t from_ms, int64_t to_ms,
                              engine_ahead_site_t *s) {
  memset(s, 0, sizeof *s);
  s->idx = i;
  plan_site_t *p = &e->psites[i];
  /* A hub's inflow NIRC does not route is answered with its handle time
   * (planner.c): it is part of its own load, whichever time is used. */
  s->live_erl = engine_erl(p->demand_cps + p->inflow_unrouted_cps, p->aht_s);
  const int64_t at[2] = {from_ms, to_ms - 1};
  for (unsigned k = 0; k < 2; k++) {
    engine_demand_t d;
    engine_forecast_demand_at(e, (long)i, p->slug, at[k], &d, k == 0);
    if (d.kind == ENGINE_DEMAND_LIVE) {
      if (k == 0) {
        /* "no history: live load" -> "no history" */
        char *cut = strstr(d.text, ": live load");
        if (cut) *cut = '\0';
        nirc_strlcpy(s->why, d.text, sizeof s->why);
      }
      continue;
    }
    double aht = d.aht_s > 0 ? d.aht_s : p->aht_s;
    double erl = engine_erl(d.cps + p->inflow_unrouted_cps, aht);
    if (!s->known || erl > s->fc_erl) {
      s->fc_erl = erl;
      s->fc_cps = d.cps;
      s->fc_aht = aht;
      s->kind = d.kind;
    }
    s->known = true;
  }
}

/* Site i's live and forecast loads ahead, and its raise in e->psites
 * (site[] has room for every site). */
static void engine_ahead_site(engine_t *e, engine_ahead_t *ah, size_t i) {
  if (engine_ahead_find(ah, i) || engine_site(e, i)->life == SITE_REMOVED) return;
  ah->pos[i] = (long)ah->n;
  engine_ahead_site_t *s = &ah->site[ah->n++];
  engine_ahead_look(e, i, ah->from_ms, ah->to_ms, s);
  plan_site_t *p = &e->psites[i];
  if (!s->known) return;
  /* Live calls not measured long enough are no load to compare with: the
   * forecast is the better figure then. */
  if (s->fc_erl > s->live_erl || p->demand_unknown) {
    s->raised = true;
    s->raised_erl = s->fc_erl;
    p->demand_cps = s->fc_cps;
    p->aht_s = s->fc_aht;
    p->demand_unknown = false;
  }
}

/* Site i's forecast for the next half hour into its plan_site_t's
 * ahead_* (planner.h), once. */
static void engine_ahead_overflow_site(engine_t *e, long i, int64_t now) {
  if (i < 0 || engine_site(e, (size_t)i)->life == SITE_REMOVED) return;
  plan_site_t *p = &e->psites[i];
  if (p->ahead_known) return;
  engine_ahead_site_t s;
  engine_ahead_look(e, (size_t)i, now, now + ENGINE_AHEAD_MS, &s);
  p->ahead_known = s.known;
  p->ahead_cps = s.fc_cps;
  p->ahead_aht_s = s.fc_aht;
}

static bool engine_ahead_names(const slug_list_t *l, const char *slug) {
  for (unsigned k = 0; k < l->n; k++)
    if (strcmp(l->v[k], slug) == 0) return true;
  return false;
}

/* The sources of every rule that may send calls to `hub` (cutovers
 * `cut`, schedules and overflow rules enabled): a spill onto it is
 * checked on their forecast too, and a source not looked at would read
 * as one with no forecast. */
static void engine_ahead_overflow_senders(engine_t *e, const char *hub, const cutover_t *cut,
                                          size_t n_cut, int64_t now) {
  for (size_t k = 0; k < n_cut; k++)
    if (cut[k].state == CUTOVER_ACTIVE && engine_ahead_names(&cut[k].hubs, hub))
      for (unsigned j = 0; j < cut[k].sources.n; j++)
        engine_ahead_overflow_site(e, engine_index(e, cut[k].sources.v[j]), now);
  for (size_t k = 0; k < e->n_sch; k++)
    if (e->sch[k].enabled && engine_ahead_names(&e->sch[k].hubs, hub))
      for (unsigned j = 0; j < e->sch[k].sources.n; j++)
        engine_ahead_overflow_site(e, engine_index(e, e->sch[k].sources.v[j]), now);
  for (size_t k = 0; k < e->n_ovf; k++)
    if (e->ovf[k].enabled && engine_ahead_names(&e->ovf[k].hubs, hub))
      engine_ahead_overflow_site(e, engine_index(e, e->ovf[k].source), now);
}

void engine_ahead_overflow_rule(engine_t *e, const overflow_rule_t *o, const cutover_t *cut,
                                size_t n_cut, int64_t now) {
  engine_ahead_overflow_site(e, engine_index(e, o->source), now);
  for (unsigned j = 0; j < o->hubs.n; j++) {
    engine_ahead_overflow_site(e, engine_index(e, o->hubs.v[j]), now);
    engine_ahead_overflow_senders(e, o->hubs.v[j], cut, n_cut, now);
  }
}

void engine_ahead_overflow_input(engine_t *e, const cutover_t *cut, size_t n_cut) {
  int64_t now = engine_now(e);
  for (size_t k = 0; k < e->n_ovf; k++)
    if (e->ovf[k].enabled) engine_ahead_overflow_rule(e, &e->ovf[k], cut, n_cut, now);
}

void engine_ahead_free(engine_ahead_t *ah) {
  free(ah->site);
  free(ah->pos);
  memset(ah, 0, sizeof *ah);
}

int engine_ahead_raise(engine_t *e, const cutover_t *move, engine_ahead_t *ah) {
  memset(ah, 0, sizeof *ah);
  size_t n = engine_nsites(e);
  ah->site = malloc((n + 1) * sizeof *ah->site);
  ah->pos = malloc((n + 1) * sizeof *ah->pos);
  bool *in_move = calloc(n + 1, sizeof *in_move);
  if (!ah->site || !ah->pos || !in_move) {
    free(in_move);
    engine_ahead_free(ah);
    return NIRC_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    ah->pos[i] = -1;
  ah->from_ms = engine_now(e);
  ah->to_ms = ah->from_ms + ENGINE_AHEAD_MS;
  const slug_list_t *lists[2] = {&move->sources, &move->hubs};
  for (unsigned l = 0; l < 2; l++)
    for (unsigned k = 0; k < lists[l]->n; k++) {
      long i = engine_index(e, lists[l]->v[k]);
      if (i < 0) continue;
      in_move[i] = true;
      engine_ahead_site(e, ah, (size_t)i);
    }
  /* The calls that follow the move or stay at its hubs: the sources of a
   * hub moved away go on with it (the demo's 07:00 lockdown moved 22
   * sources with shaanxi), a hub's own sources stay. Their rise counts
   * as much as the named sites'. */
  for (size_t i = 0; i < n; i++)
    if (!in_move[i] && engine_sends_to_focus(e, i, in_move)) engine_ahead_site(e, ah, i);
  free(in_move);
  engine_demand_kind_t kind = ENGINE_DEMAND_HISTORY;
  for (unsigned k = 0; k < ah->n; k++)
    if (ah->site[k].known) {
      kind = ah->site[k].kind;
      break;
    }
  engine_forecast_span(e, kind, ah->from_ms, ah->to_ms - 1, ah->span, sizeof ah->span);
  return 0;
}

/* What the sites of the move a hub counts add up to. */
typedef struct {
  double raise, to_fc;                /* Erlangs: raised over live, forecast over live */
  char rising[80];                    /* the first sites raised: "hubei, shaanxi" */
  unsigned n_rising, n_named;         /* sites raised, and named in rising */
  const engine_ahead_site_t *unknown; /* the first with no forecast */
} engine_ahead_sum_t;

#define ENGINE_AHEAD_NAMED 3 /* sites a note names; "and 19 more" */

/* Adds what site `s` counts at a hub (`share` of its calls) to the sums. */
static void engine_ahead_count(const engine_t *e, const engine_ahead_site_t *s, double share,
                               engine_ahead_sum_t *sum) {
  if (s->raised) {
    sum->raise += (s->raised_erl - s->live_erl) * share;
    sum->n_rising++;
    size_t used = strlen(sum->rising);
    const char *slug = engine_site((engine_t *)e, s->idx)->slug;
    if (sum->n_named < ENGINE_AHEAD_NAMED && used + strlen(slug) + 3 < sizeof sum->rising) {
      snprintf(sum->rising + used, sizeof sum->rising - used, "%s%s", used ? ", " : "", slug);
      sum->n_named++;
    }
  }
  if (s->known)
    sum->to_fc += (s->fc_erl - s->live_erl) * share;
  else if (!sum->unknown)
    sum->unknown = s;
}

static void engine_ahead_note(const engine_t *e, const engine_ahead_t *ah, plan_capacity_t *pc,
                              const engine_ahead_sum_t *sum) {
  const engine_ahead_site_t *unknown = sum->unknown;
  char rising[sizeof sum->rising + 24];
  if (sum->n_rising > sum->n_named)
    snprintf(rising, sizeof rising, "%s and %u more", sum->rising, sum->n_rising - sum->n_named);
  else
    snprintf(rising, sizeof rising, "%s", sum->rising);
  plan_load_on_t *lo = &pc->load_on;
  char tail[140] = "";
  if (unknown)
    snprintf(tail, sizeof tail, "%s (%s: %s)",
             lo->basis == PLAN_LOAD_FORECAST ? "; a rise could not be checked" : "",
             engine_site((engine_t *)e, unknown->idx)->slug,
             unknown->why[0] ? unknown->why : "no forecast");
  switch (lo->basis) {
  case PLAN_LOAD_FORECAST:
    /* "Rising" only for a rise beyond the live load's own fluctuation:
     * calls in progress at an offered load of A Erlangs vary by about
     * sqrt(A) (Poisson), so a forecast 0.2 Erl above 6 live is no rise an
     * operator should act on. The figures are still the forecast's (the
     * larger is used either way); the note gives both, not the word. */
    if (sum->raise > sqrt(lo->live_erl))
      snprintf(lo->note, sizeof lo->note, "on the forecast for %s: load rising at %s%s", ah->span,
               rising, tail);
    else
      snprintf(lo->note, sizeof lo->note,
               "on the forecast for %s at %s: %.1f Erl vs %.1f Erl live, within the live load's "
               "own fluctuation%s",
               ah->span, rising, lo->live_erl + sum->raise, lo->live_erl, tail);
    break;
  case PLAN_LOAD_LIVE:
    snprintf(lo->note, sizeof lo->note, "on the live load: the forecast for %s is not higher",
             ah->span);
    break;
  case PLAN_LOAD_UNCHECKED:
    snprintf(lo->note, sizeof lo->note, "on the live load: a rise could not be checked%s", tail);
    break;
  case PLAN_LOAD_GIVEN: break;
  }
}

void engine_ahead_annotate(const engine_t *e, engine_ahead_t *ah, plan_t *p) {
  for (size_t k = 0; k < p->n_capacity; k++) {
    plan_capacity_t *pc = &p->capacity[k];
    long h = engine_index((engine_t *)e, pc->hub); /* only reads the registry */
    if (h < 0 || (size_t)h >= p->n_routes) continue;
    const engine_ahead_site_t *hub = engine_ahead_find(ah, (size_t)h);
    engine_ahead_sum_t sum = {0};
    bool any = hub != NULL;
    if (hub) engine_ahead_count(e, hub, 1.0, &sum);
    const plan_route_t *r = &p->routes[h];
    for (unsigned j = 0; j < r->n_inbound; j++) {
      const engine_ahead_site_t *s = engine_ahead_find(ah, r->inbound[j]);
      if (!s) continue; /* another rule's source: its live load, as before */
      const plan_route_t *sr = &p->routes[r->inbound[j]];
      uint32_t permille = 0;
      for (unsigned q = 0; q < sr->n_route; q++)
        if (strcmp(sr->route[q].site, pc->hub) == 0) permille += sr->route[q].permille;
      engine_ahead_count(e, s, permille / 1000.0, &sum);
      any = true;
    }
    /* The sources it turned down count in with_refused on what they were
     * planned on: a rise there is named too (not in the figures, which
     * are of `after`). */
    if (pc->refused) {
      char names[sizeof pc->refused_sources];
      nirc_strlcpy(names, pc->refused_sources, sizeof names);
      for (char *save = NULL, *tok = strtok_r(names, ", ", &save); tok;
           tok = strtok_r(NULL, ", ", &save)) {
        long i = engine_index((engine_t *)e, tok);
        const engine_ahead_site_t *s = i >= 0 ? engine_ahead_find(ah, (size_t)i) : NULL;
        if (s) engine_ahead_count(e, s, 0, &sum);
      }
    }
    if (!any) continue; /* a hub of another rule only: the loads given */
    plan_load_on_t *lo = &pc->load_on;
    lo->basis = sum.n_rising  ? PLAN_LOAD_FORECAST
                : sum.unknown ? PLAN_LOAD_UNCHECKED
                              : PLAN_LOAD_LIVE;
    lo->live_erl = fmax(pc->after.traffic_erl - sum.raise, 0); /* 0: rounding */
    lo->forecast_erl = sum.unknown ? -1 : fmax(lo->live_erl + sum.to_fc, 0);
    engine_ahead_note(e, ah, pc, &sum);
  }
}

const char *engine_load_basis_name(plan_load_basis_t b) {
  switch (b) {
  case PLAN_LOAD_GIVEN: return "";
  case PLAN_LOAD_LIVE: return "live";
  case PLAN_LOAD_FORECAST: return "forecast";
  case PLAN_LOAD_UNCHECKED: return "live_unchecked";
  }
  return "";
}
