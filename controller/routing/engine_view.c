/* engine_view: what is active, why, until when, and what comes next —
 * the engine's answers to the operator's 3 a.m. questions (issue 12,
 * point 3): the rule each site routes by with its end and why the site is
 * not at its rule's first hub (status, site, the status page), and the
 * rules' events of the next hours with the capacity predicted for each
 * schedule start (nircctl next, the page's "next" table). Part of the
 * engine module (engine-int.h); no I/O: the reply leaves through
 * engine_io_t. */
#include "engine-int.h"

#include "err.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the rule a site routes by ---- */

static bool engine_view_cut_active(const cutover_t *c, int64_t now) {
  return c->state == CUTOVER_ACTIVE && (c->expires_ms == 0 || c->expires_ms > now);
}

/* Fills the rule's name, reason, hubs and end; false when the engine has
 * no such rule (any more). */
static bool engine_view_rule(const engine_t *e, rule_kind_t kind, uint64_t id,
                             engine_rule_view_t *v, const slug_list_t **hubs) {
  int64_t now = engine_now(e);
  for (size_t k = 0; kind == RULE_CUTOVER && k < e->n_cut; k++)
    if (e->cut[k].id == id) {
      v->reason = e->cut[k].reason;
      v->end_ms = e->cut[k].expires_ms;
      *hubs = &e->cut[k].hubs;
      return true;
    }
  for (size_t k = 0; kind == RULE_SCHEDULE && k < e->n_sch; k++)
    if (e->sch[k].id == id) {
      int64_t st = 0, en = 0;
      v->name = e->sch[k].name;
      v->end_ms = rules_schedule_window(&e->sch[k], now, &st, &en) ? en : 0;
      *hubs = &e->sch[k].hubs;
      return true;
    }
  for (size_t k = 0; kind == RULE_OVERFLOW && k < e->n_ovf; k++)
    if (e->ovf[k].id == id) {
      v->name = e->ovf[k].name;
      *hubs = &e->ovf[k].hubs;
      return true; /* released by its thresholds, not by a time */
    }
  return false;
}

/* The rule in force for a site the plan keeps home: the one the planner
 * would have used (cutovers before schedules before overflow rules, the
 * lowest id first, as planner.c orders them). */
static bool engine_view_rule_in_force(const engine_t *e, const char *slug, rule_kind_t *kind,
                                      uint64_t *id) {
  int64_t now = engine_now(e);
  uint64_t best = 0;
  for (size_t k = 0; k < e->n_cut; k++)
    if (engine_view_cut_active(&e->cut[k], now) && rules_list_has(&e->cut[k].sources, slug) &&
        (!best || e->cut[k].id < best))
      best = e->cut[k].id;
  if (best) {
    *kind = RULE_CUTOVER;
    *id = best;
    return true;
  }
  for (size_t k = 0; k < e->n_sch; k++) {
    int64_t st, en;
    if (e->sch[k].enabled && rules_list_has(&e->sch[k].sources, slug) &&
        rules_schedule_window(&e->sch[k], now, &st, &en) && (!best || e->sch[k].id < best))
      best = e->sch[k].id;
  }
  if (best) {
    *kind = RULE_SCHEDULE;
    *id = best;
    return true;
  }
  for (size_t k = 0; k < e->n_ovf; k++)
    if (e->ovf[k].enabled && e->ovf_state && e->ovf_state[k].engaged &&
        strcmp(e->ovf[k].source, slug) == 0 && (!best || e->ovf[k].id < best))
      best = e->ovf[k].id;
  if (best) {
    *kind = RULE_OVERFLOW;
    *id = best;
    return true;
  }
  return false;
}

/* Why hub `hub` does not take source `src` now, in a few words ("shaanxi
 * offline"); false when nothing is known against it. */
static bool engine_view_hub_trouble(const engine_t *e, size_t src, const char *hub, char *buf,
                                    size_t len) {
  long h = engine_index((engine_t *)e, hub);
  if (h < 0) {
    snprintf(buf, len, "%s unknown", hub);
    return true;
  }
  const site_t *hs = &e->sites->v[h];
  static const char *const words[] = {[SITE_NEVER_SEEN] = "never connected",
                                      [SITE_ONLINE] = "online",
                                      [SITE_STALE] = "stale",
                                      [SITE_OFFLINE] = "offline"};
  if (hs->state != SITE_ONLINE) {
    snprintf(buf, len, "%s %s", hub, (unsigned)hs->state <= SITE_OFFLINE ? words[hs->state] : "?");
    return true;
  }
  if (hs->has_report && hs->last.pbx_unreadable) {
    snprintf(buf, len, "%s PBX unreadable", hub);
    return true;
  }
  hub_gate_state_t g = e->gate[h].state;
  if (g == HUB_LOST || g == HUB_RECOVERING) {
    snprintf(buf, len, "%s recovering from a loss", hub);
    return true;
  }
  if (g == HUB_UNSEEN) {
    snprintf(buf, len, "%s not yet healthy", hub);
    return true;
  }
  if (e->dirs[h].excluded_rule) {
    snprintf(buf, len, "%s excluded after a failed move", hub);
    return true;
  }
  if (engine_main_hub(&e->dirs[h].target, hub)) {
    snprintf(buf, len, "%s moved away", hub);
    return true;
  }
  /* The planner's verdict on this hub for this source (a refusal). */
  const char *slug = e->sites->v[src].slug;
  for (size_t k = 0; e->have_plan && k < e->plan.n_alarms; k++) {
    const plan_alarm_t *a = &e->plan.alarms[k];
    if (strcmp(a->site, slug) != 0) continue;
    for (unsigned j = 0; j < a->n_hubs; j++)
      if (strcmp(a->hubs[j].hub, hub) == 0 && a->hubs[j].capacity) {
        snprintf(buf, len, "%s full (needs %u agents, has %u)", hub, a->hubs[j].agents_needed,
                 a->hubs[j].agents);
        return true;
      }
  }
  if (e->holds[src].withdrawn_ms) {
    snprintf(buf, len, "%s lacked capacity", hub);
    return true;
  }
  return false;
}

void engine_rule_view(const engine_t *e, size_t i, engine_rule_view_t *v) {
  memset(v, 0, sizeof *v);
  v->name = v->reason = "";
  if (i >= engine_nsites(e)) return;
  const site_dir_t *d = &e->dirs[i];
  const char *self = e->sites->v[i].slug;
  rule_kind_t kind = d->kind;
  uint64_t id = d->rule_id;
  if (d->excluded_rule) {
    kind = d->excluded_kind;
    id = d->excluded_rule;
    v->excluded = true;
  } else if (kind == RULE_NONE && !engine_view_rule_in_force(e, self, &kind, &id)) {
    return;
  }
  const slug_list_t *hubs = NULL;
  if (!engine_view_rule(e, kind, id, v, &hubs)) {
    v->name = v->reason = "";
    v->end_ms = 0;
    return;
  }
  v->kind = kind;
  v->rule_id = id;
  if (v->excluded || !hubs) return;
  /* Not at the rule's first hub: say what is wrong with each hub before
   * the one it is at (or with every hub, when it is held home). */
  const char *cur = engine_main_hub(&d->target, self);
  char troubles[sizeof v->detail] = "";
  for (unsigned k = 0; k < hubs->n; k++) {
    if (cur && strcmp(hubs->v[k], cur) == 0) break;
    char one[120];
    if (!engine_view_hub_trouble(e, i, hubs->v[k], one, sizeof one)) continue;
    size_t used = strlen(troubles);
    snprintf(troubles + used, sizeof troubles - used, "%s%s", used ? ", " : "", one);
  }
  if (troubles[0]) {
    snprintf(v->detail, sizeof v->detail, "%s: %s", cur ? "re-homed" : "home", troubles);
    return;
  }
  /* Home while the plan sends it away: its rule's waves have not reached
   * it yet (each wave waits for the one before to be verified). */
  const plan_route_t *pr = e->have_plan && i < e->plan.n_routes ? &e->plan.routes[i] : NULL;
  if (!cur && pr && pr->kind == kind && pr->rule_id == id && pr->n_route &&
      strcmp(pr->route[0].site, self) != 0) {
    const char *held = engine_verify_held_by(e, kind, id);
    if (held)
      snprintf(v->detail, sizeof v->detail,
               "home: waiting for its wave; %s's calls did not move in the wave before (alarm "
               "moved)",
               held);
    else
      snprintf(v->detail, sizeof v->detail, "home: waiting for its wave");
  }
}

/* ---- what comes next ---- */

const char *engine_next_kind_name(engine_next_kind_t k) {
  switch (k) {
  case ENGINE_NEXT_START: return "schedule-start";
  case ENGINE_NEXT_END: return "schedule-end";
  case ENGINE_NEXT_SKIP: return "schedule-skip";
  case ENGINE_NEXT_EXPIRY: return "cutover-expiry";
  }
  return "?";
}

const schedule_t *engine_next_schedule(const engine_t *e, const engine_next_t *ev) {
  return ev->rule_kind == RULE_SCHEDULE && ev->rule_index < e->n_sch ? &e->sch[ev->rule_index]
                                                                     : NULL;
}

const cutover_t *engine_next_cutover(const engine_t *e, const engine_next_t *ev) {
  return ev->rule_kind == RULE_CUTOVER && ev->rule_index < e->n_cut ? &e->cut[ev->rule_index]
                                                                    : NULL;
}

typedef struct {
  engine_next_t *v;
  size_t n, max, dropped;
} engine_next_list_t;

static void engine_next_add(engine_next_list_t *l, engine_next_t ev) {
  if (l->n < l->max)
    l->v[l->n++] = ev;
  else
    l->dropped++;
}

/* Every window of `s` starting in (now, until], those that do not run
 * (an exception date, a clock change that leaves them no time) as skips,
 * with the end of the window running now. The calendar is rules.c's: the
 * window listed here is the one the planner puts in force. */
static void engine_next_schedule_events(const engine_t *e, size_t k, int64_t until,
                                        engine_next_list_t *l) {
  const schedule_t *s = &e->sch[k];
  int64_t now = engine_now(e);
  if (!s->enabled) return;
  int64_t st = 0, en = 0;
  if (rules_schedule_window(s, now, &st, &en) && en <= until)
    engine_next_add(l, (engine_next_t){ENGINE_NEXT_END, en, 0, RULE_SCHEDULE, s->id, k, {0}});
  rules_window_t w;
  for (int64_t t = now; rules_schedule_next_window(s, t, &w) && w.start_ms <= until;
       t = w.start_ms) {
    if (w.fate != RULES_WINDOW_RUNS) {
      engine_next_add(l,
                      (engine_next_t){ENGINE_NEXT_SKIP, w.start_ms, 0, RULE_SCHEDULE, s->id, k, w});
      continue;
    }
    engine_next_add(
        l, (engine_next_t){ENGINE_NEXT_START, w.start_ms, w.end_ms, RULE_SCHEDULE, s->id, k, {0}});
    if (w.end_ms <= until)
      engine_next_add(l,
                      (engine_next_t){ENGINE_NEXT_END, w.end_ms, 0, RULE_SCHEDULE, s->id, k, {0}});
  }
}

static int engine_next_cmp(const void *a, const void *b) {
  const engine_next_t *x = a, *y = b;
  if (x->at_ms != y->at_ms) return x->at_ms < y->at_ms ? -1 : 1;
  /* Ends before starts at the same minute: the order they happen in. */
  if (x->kind != y->kind) {
    int rx = x->kind == ENGINE_NEXT_START ? 1 : 0, ry = y->kind == ENGINE_NEXT_START ? 1 : 0;
    if (rx != ry) return rx - ry;
  }
  return x->rule_id < y->rule_id ? -1 : x->rule_id > y->rule_id;
}

size_t engine_next_events(const engine_t *e, int64_t until, engine_next_t *out, size_t max) {
  engine_next_list_t l = {out, 0, max, 0};
  int64_t now = engine_now(e);
  for (size_t k = 0; k < e->n_sch; k++)
    engine_next_schedule_events(e, k, until, &l);
  for (size_t k = 0; k < e->n_cut; k++) {
    const cutover_t *c = &e->cut[k];
    if (engine_view_cut_active(c, now) && c->expires_ms && c->expires_ms <= until)
      engine_next_add(
          &l, (engine_next_t){ENGINE_NEXT_EXPIRY, c->expires_ms, 0, RULE_CUTOVER, c->id, k, {0}});
  }
  qsort(out, l.n, sizeof *out, engine_next_cmp);
  return l.n;
}

#define ENGINE_NEXT_MAX 512 /* events in one reply: a week of a few dozen rules */

static char **engine_next_slugs(engine_arena_t *a, const slug_list_t *l, size_t *n) {
  char **v = engine_arena_alloc(a, (l->n + 1) * sizeof *v);
  *n = 0;
  for (unsigned k = 0; v && k < l->n; k++)
    v[(*n)++] = engine_arena_str(a, l->v[k]);
  return v;
}

/* The capacity the plan path predicts for a schedule's start, one entry
 * per hub of the schedule that would take or turn down sources. */
static void engine_next_predict(engine_t *e, engine_arena_t *a, const schedule_t *s, int64_t start,
                                Nirc__NextEvent *ev) {
  plan_t trial;
  /* A minute into the window, as `nircctl plan --schedule` judges it. */
  if (engine_schedule_trial(e, s, start + 60000, &trial) != 0) return;
  ev->predictions = engine_arena_alloc(a, (trial.n_capacity + 1) * sizeof *ev->predictions);
  for (size_t k = 0; ev->predictions && k < trial.n_capacity; k++) {
    const plan_capacity_t *pc = &trial.capacity[k];
    if (!rules_list_has(&s->hubs, pc->hub)) continue;
    Nirc__NextHub *h = engine_arena_alloc(a, sizeof *h);
    if (!h) break;
    nirc__next_hub__init(h);
    h->hub = engine_arena_str(a, pc->hub);
    h->stable = pc->after.stable;
    h->sl_after = pc->after.stable ? pc->after.service_level : 0;
    h->agents = pc->after.agents;
    h->agents_needed = pc->agents_needed;
    h->n_sources = pc->n_sources;
    h->capacity_source = (char *)capacity_source_name(pc->cap_source);
    if (pc->refused) {
      char names[sizeof pc->refused_sources];
      nirc_strlcpy(names, pc->refused_sources, sizeof names);
      h->refused_sources = engine_arena_alloc(a, (pc->n_refused + 1) * sizeof(char *));
      for (char *save = NULL, *tok = strtok_r(names, ", ", &save);
           h->refused_sources && tok && h->n_refused_sources < pc->n_refused;
           tok = strtok_r(NULL, ", ", &save))
        h->refused_sources[h->n_refused_sources++] = engine_arena_str(a, tok);
    }
    ev->predictions[ev->n_predictions++] = h;
  }
  /* No hub predicted (none eligible now): unknown, and the planner says
   * why for each source. */
  ev->predicted = ev->n_predictions > 0;
  ev->alarms = engine_arena_alloc(a, (trial.n_alarms + 1) * sizeof *ev->alarms);
  for (size_t k = 0; ev->alarms && k < trial.n_alarms; k++)
    if (rules_list_has(&s->sources, trial.alarms[k].site))
      ev->alarms[ev->n_alarms++] = engine_arena_str(a, trial.alarms[k].message);
  planner_free(&trial);
}

size_t engine_next_predict_hubs(engine_t *e, const engine_next_t *ev, engine_next_hub_t *out,
                                size_t max) {
  const schedule_t *s = engine_next_schedule(e, ev);
  if (!s || ev->kind != ENGINE_NEXT_START) return 0;
  plan_t trial;
  if (engine_schedule_trial(e, s, ev->at_ms + 60000, &trial) != 0) return 0;
  size_t n = 0;
  for (size_t k = 0; k < trial.n_capacity && n < max; k++) {
    const plan_capacity_t *pc = &trial.capacity[k];
    if (!rules_list_has(&s->hubs, pc->hub)) continue;
    engine_next_hub_t *h = &out[n++];
    memset(h, 0, sizeof *h);
    nirc_strlcpy(h->hub, pc->hub, sizeof h->hub);
    h->stable = pc->after.stable;
    h->sl_after = pc->after.stable ? pc->after.service_level : 0;
    h->agents = pc->after.agents;
    h->agents_needed = pc->agents_needed;
    h->n_sources = pc->n_sources;
    h->n_refused = pc->refused ? pc->n_refused : 0;
    h->cap_source = pc->cap_source;
  }
  planner_free(&trial);
  return n;
}

void engine_op_next(engine_t *e, const engine_req_t *rq, const Nirc__NextRequest *req) {
  unsigned hours = req && req->hours ? req->hours : 24;
  if (hours > 168) {
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                       "--hours %u: at most 168 (a week)", hours);
    return;
  }
  int64_t now = engine_now(e), until = now + (int64_t)hours * 3600000;
  engine_next_t *evs = calloc(ENGINE_NEXT_MAX, sizeof *evs);
  engine_arena_t a = {0};
  Nirc__NextReply *nr = engine_arena_alloc(&a, sizeof *nr);
  if (!evs || !nr) {
    free(evs);
    engine_arena_free(&a);
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL,
                       "out of memory");
    return;
  }
  nirc__next_reply__init(nr);
  nr->from_ms = now;
  nr->until_ms = until;
  size_t n = engine_next_events(e, until, evs, ENGINE_NEXT_MAX);
  nr->events = engine_arena_alloc(&a, (n + 1) * sizeof *nr->events);
  for (size_t k = 0; nr->events && k < n; k++) {
    const engine_next_t *x = &evs[k];
    Nirc__NextEvent *ev = engine_arena_alloc(&a, sizeof *ev);
    if (!ev) break;
    nirc__next_event__init(ev);
    ev->at_ms = x->at_ms;
    ev->kind = (char *)engine_next_kind_name(x->kind);
    ev->rule_kind = (char *)rules_kind_name(x->rule_kind);
    ev->rule_id = x->rule_id;
    ev->end_ms = x->end_ms;
    const schedule_t *s = engine_next_schedule(e, x);
    const cutover_t *c = engine_next_cutover(e, x);
    if (s) {
      ev->rule_name = engine_arena_str(&a, s->name);
      ev->tz = engine_arena_str(&a, s->tz);
      ev->sources = engine_next_slugs(&a, &s->sources, &ev->n_sources);
      ev->hubs = engine_next_slugs(&a, &s->hubs, &ev->n_hubs);
      ev->wave_size = s->wave_size;
      ev->waves = s->wave_size ? (unsigned)((s->sources.n + s->wave_size - 1) / s->wave_size) : 1;
      if (x->kind == ENGINE_NEXT_SKIP) {
        char why[RULES_REASON_MAX];
        rules_window_reason(s, &x->window, why, sizeof why);
        ev->reason = engine_arena_str(&a, why);
      }
      if (x->kind == ENGINE_NEXT_START) engine_next_predict(e, &a, s, x->at_ms, ev);
    } else if (c) {
      ev->rule_name = "";
      ev->reason = engine_arena_str(&a, c->reason);
      ev->sources = engine_next_slugs(&a, &c->sources, &ev->n_sources);
      ev->hubs = engine_next_slugs(&a, &c->hubs, &ev->n_hubs);
    }
    nr->events[nr->n_events++] = ev;
  }
  free(evs);
  /* The starts' predictions count these sites' calls where each plan
   * sends them: said once, as a plan says it. */
  nr->route_not_known_counted =
      engine_routes_not_known(e, &a, &nr->route_not_known_sites, &nr->n_route_not_known_sites,
                              &nr->route_not_known) == 0;
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_NEXT;
  rep.next = nr;
  engine_send_built_reply(e, rq->client, rq->request_id, &a, nr->events != NULL, &rep, NULL);
}
