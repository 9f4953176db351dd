/* engine_plan: what a move would do, for the operator: nircctl plan, dry
 * runs, and the capacity verdict a cutover or an amendment gets before it
 * is made, including what --force overrides. Part of the engine module
 * (engine-int.h); like the rest of the engine it does no I/O: replies
 * leave through engine_io_t.
 *
 * A plan reply is exact: one capacity entry per hub (the planner's), the
 * rule being tried named without an id it does not have ("would be
 * cutover: REASON"), and every source of the move that would not move
 * listed with each hub's verdict, so the refusal names them all. */
#include "engine-int.h"

#include "checkjson.h"
#include "err.h"
#include "tz.h"
#include "log.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The rule a plan reply is about: its sources are the ones that must move. */
typedef struct {
  rule_kind_t kind;
  uint64_t id; /* PLAN_DRAFT_ID for a rule being tried */
  const slug_list_t *sources;
} engine_planned_t;

void engine_append(char *buf, size_t len, const char *fmt, ...) {
  size_t used = strlen(buf);
  if (used + 1 >= len) return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(buf + used, len - used, fmt, ap);
  va_end(ap);
  if (k >= 0 && (size_t)k >= len - used && len >= 4) memcpy(buf + len - 4, "...", 4);
}

double engine_sl(const erlang_prediction_t *p) {
  return p->stable ? p->service_level : 0;
}

static double engine_asa(const erlang_prediction_t *p) {
  return p->stable && isfinite(p->asa_s) ? p->asa_s : -1;
}

void engine_fill_prediction(engine_arena_t *a, const engine_t *e, const plan_t *p,
                            const plan_capacity_t *pc, Nirc__CapacityPrediction *cp) {
  nirc__capacity_prediction__init(cp);
  cp->hub = engine_arena_str(a, pc->hub);
  cp->traffic_before_erl = pc->before.traffic_erl;
  cp->traffic_after_erl = pc->after.traffic_erl;
  cp->agents = pc->after.agents;
  cp->sl_before = pc->before.service_level;
  cp->sl_after = engine_sl(&pc->after);
  cp->asa_after_s = engine_asa(&pc->after);
  cp->occupancy_after = pc->after.occupancy;
  cp->agents_needed = pc->agents_needed;
  cp->stable_after = pc->after.stable;
  cp->refused = pc->refused;
  cp->forced = pc->forced;
  cp->capacity_source = (char *)capacity_source_name(pc->cap_source);
  cp->capacity_note = engine_arena_str(a, pc->cap_note);
  cp->sl_target = e->opts.sl_target;
  cp->sl_threshold_s = e->opts.sl_threshold_s;
  cp->load_basis = (char *)engine_load_basis_name(pc->load_on.basis);
  if (pc->load_on.basis != PLAN_LOAD_GIVEN) {
    cp->traffic_after_live_erl = pc->load_on.live_erl;
    cp->traffic_after_forecast_erl = pc->load_on.forecast_erl;
    cp->load_note = engine_arena_str(a, pc->load_on.note);
  }
  const plan_route_t *hub = p ? planner_route(p, pc->hub) : NULL;
  if (hub && hub->n_inbound) {
    cp->sources = engine_arena_alloc(a, hub->n_inbound * sizeof *cp->sources);
    for (unsigned k = 0; cp->sources && k < hub->n_inbound; k++)
      cp->sources[cp->n_sources++] = engine_arena_str(a, p->routes[hub->inbound[k]].slug);
  }
  if (!pc->refused) return;
  /* "a, b": the planner's list of the sources it turned down. */
  char names[sizeof pc->refused_sources];
  nirc_strlcpy(names, pc->refused_sources, sizeof names);
  cp->refused_sources = engine_arena_alloc(a, (pc->n_refused + 1) * sizeof *cp->refused_sources);
  for (char *save = NULL, *tok = strtok_r(names, ", ", &save);
       tok && cp->refused_sources && cp->n_refused_sources < pc->n_refused;
       tok = strtok_r(NULL, ", ", &save))
    cp->refused_sources[cp->n_refused_sources++] = engine_arena_str(a, tok);
  Nirc__RefusedLoad *w = engine_arena_alloc(a, sizeof *w);
  if (!w) return;
  nirc__refused_load__init(w);
  w->source = engine_arena_str(a, pc->largest_refused);
  w->traffic_erl = pc->with_refused.traffic_erl;
  w->sl = engine_sl(&pc->with_refused);
  w->asa_s = engine_asa(&pc->with_refused);
  w->occupancy = pc->with_refused.occupancy;
  w->agents_needed = pc->with_refused_needed;
  w->stable = pc->with_refused.stable;
  cp->with_refused = w;
}

/* The alarm that says why source i does not move by `rule`: the rule's own
 * NO_HUB, CAPACITY or WAITING alarm, else any alarm about it, or NULL. */
static const plan_alarm_t *engine_why_not(const plan_t *p, const char *slug,
                                          const engine_planned_t *rule) {
  const plan_alarm_t *any = NULL;
  for (size_t k = 0; k < p->n_alarms; k++) {
    const plan_alarm_t *a = &p->alarms[k];
    if (strcmp(a->site, slug) != 0) continue;
    if (a->rule_kind == rule->kind && a->rule_id == rule->id &&
        (a->kind == PLAN_ALARM_NO_HUB || a->kind == PLAN_ALARM_CAPACITY ||
         a->kind == PLAN_ALARM_WAITING))
      return a;
    if (!any) any = a;
  }
  return any;
}

/* Whether the planner's list "a, b" names `slug`. */
static bool engine_names(const char *list, const char *slug) {
  size_t n = strlen(slug);
  for (const char *p = strstr(list, slug); p; p = strstr(p + 1, slug))
    if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ',')) return true;
  return false;
}

/* Fills the reply's refused sources: those of `rule` that the plan does
 * not move by it, each with why, and the refusal that names them all. */
static int engine_refused_sources(engine_t *e, engine_arena_t *a, const plan_t *p,
                                  const engine_planned_t *rule, Nirc__PlanReply *pr) {
  unsigned n = rule->sources->n;
  pr->n_sources = n;
  pr->refused_sources = engine_arena_alloc(a, (n + 1) * sizeof *pr->refused_sources);
  if (!pr->refused_sources) return NIRC_ENOMEM;
  char text[4096] = "";
  for (unsigned s = 0; s < n; s++) {
    const char *slug = rule->sources->v[s];
    long i = engine_index(e, slug);
    if (i < 0) continue; /* validated before: cannot happen */
    const plan_route_t *r = &p->routes[i];
    if (r->kind == rule->kind && r->rule_id == rule->id) continue; /* it moves */
    Nirc__RefusedSource *rs = engine_arena_alloc(a, sizeof *rs);
    if (!rs) return NIRC_ENOMEM;
    nirc__refused_source__init(rs);
    rs->source = engine_arena_str(a, slug);
    const plan_alarm_t *al = engine_why_not(p, slug, rule);
    char why[1024] = "";
    if (al && al->n_hubs) {
      rs->hubs = engine_arena_alloc(a, al->n_hubs * sizeof *rs->hubs);
      if (!rs->hubs) return NIRC_ENOMEM;
      for (unsigned k = 0; k < al->n_hubs; k++) {
        const plan_hub_verdict_t *v = &al->hubs[k];
        Nirc__HubNeed *hn = engine_arena_alloc(a, sizeof *hn);
        if (!hn) return NIRC_ENOMEM;
        nirc__hub_need__init(hn);
        hn->hub = engine_arena_str(a, v->hub);
        hn->capacity = v->capacity;
        hn->agents_needed = v->agents_needed;
        hn->agents = v->agents;
        hn->why = engine_arena_str(a, v->why);
        hn->capacity_source = (char *)capacity_source_name(v->cap_source);
        rs->hubs[rs->n_hubs++] = hn;
        engine_append(why, sizeof why, "%s%s%s %s", k ? ", " : "",
                      v->unmeasured ? "capacity of " : "", v->hub, v->why);
      }
    } else if (al) {
      nirc_strlcpy(why, al->message, sizeof why);
    } else if (e->dirs[i].excluded_rule) {
      snprintf(why, sizeof why, "it is excluded after a failed move (nircctl readmit)");
    } else if (r->kind != RULE_NONE) {
      snprintf(why, sizeof why, "it stays with %s, which comes first", r->reason);
    } else {
      snprintf(why, sizeof why, "it would stay home");
    }
    rs->why = engine_arena_str(a, why);
    pr->refused_sources[pr->n_refused_sources++] = rs;
    engine_append(text, sizeof text, "%s%s: %s", pr->n_refused_sources > 1 ? "; " : "", slug, why);
  }
  if (pr->n_refused_sources == 0) return 0;
  /* A hub that turned a source of this move down on the forecast ahead
   * says so: the live load alone may have passed, and the operator must
   * know what --force overrides. */
  for (size_t k = 0; k < p->n_capacity; k++) {
    const plan_capacity_t *pc = &p->capacity[k];
    if (!pc->refused || pc->load_on.basis != PLAN_LOAD_FORECAST) continue;
    bool ours = false;
    for (size_t s = 0; s < pr->n_refused_sources && !ours; s++)
      ours = engine_names(pc->refused_sources, pr->refused_sources[s]->source);
    if (!ours) continue;
    engine_append(text, sizeof text, "; %s predicted %s", pc->hub, pc->load_on.note);
    break;
  }
  char head[96];
  if (n == 1)
    snprintf(head, sizeof head, "%s would not move: ", pr->refused_sources[0]->source);
  else
    snprintf(head, sizeof head, "%zu of %u sources would not move: ", pr->n_refused_sources, n);
  /* One source: "hubei would not move: shaanxi would need ..." */
  const char *body = n == 1 ? text + strlen(pr->refused_sources[0]->source) + 2 : text;
  char *refusal = engine_arena_alloc(a, strlen(head) + strlen(body) + 1);
  if (!refusal) return NIRC_ENOMEM;
  memcpy(refusal, head, strlen(head));
  memcpy(refusal + strlen(head), body, strlen(body) + 1);
  pr->refusal = refusal;
  pr->refused = 1;
  return 0;
}

/* Fills a PlanReply for `rule`, showing the sites in `focus` (indices;
 * NULL = all). */
/* Whether site i now sends calls to a site of the request: moving that
 * site may move it too (a hub moved away hands its sources on), and the
 * operator must see that in the plan. */
bool engine_sends_to_focus(engine_t *e, size_t i, const bool *focus) {
  const route_t *t = &e->dirs[i].target;
  const char *self = engine_site(e, i)->slug;
  for (unsigned k = 0; k < t->n_share; k++) {
    if (!t->share[k].permille || strcmp(t->share[k].site, self) == 0) continue;
    long h = engine_index(e, t->share[k].site);
    if (h >= 0 && focus[h]) return true;
  }
  return false;
}

#define ENGINE_PLAN_UNKNOWN_NAMED 10 /* sites a plan names whose route is not known */

int engine_routes_not_known(engine_t *e, engine_arena_t *a, char ***names, size_t *n_names,
                            uint32_t *count) {
  *names = engine_arena_alloc(a, ENGINE_PLAN_UNKNOWN_NAMED * sizeof **names);
  *n_names = 0;
  *count = 0;
  if (!*names) return NIRC_ENOMEM;
  for (size_t i = 0; i < engine_nsites(e); i++) {
    if (engine_site(e, i)->life == SITE_REMOVED || engine_route_seen(e, i) == ENGINE_ROUTE_KNOWN)
      continue;
    if (*n_names < ENGINE_PLAN_UNKNOWN_NAMED) (*names)[(*n_names)++] = engine_site(e, i)->slug;
    (*count)++;
  }
  return 0;
}

static Nirc__PlanReply *engine_plan_reply(engine_t *e, engine_arena_t *a, const plan_t *p,
                                          const bool *focus, const engine_planned_t *rule) {
  Nirc__PlanReply *pr = engine_arena_alloc(a, sizeof *pr);
  if (!pr) return NULL;
  nirc__plan_reply__init(pr);
  size_t n = engine_nsites(e);
  pr->capacity = engine_arena_alloc(a, (p->n_capacity + 1) * sizeof *pr->capacity);
  pr->moves = engine_arena_alloc(a, (n + 1) * sizeof *pr->moves);
  pr->alarms = engine_arena_alloc(a, (p->n_alarms + 1) * sizeof *pr->alarms);
  if (!pr->capacity || !pr->moves || !pr->alarms) return NULL;
  for (size_t k = 0; k < p->n_capacity; k++) {
    Nirc__CapacityPrediction *cp = engine_arena_alloc(a, sizeof *cp);
    if (!cp) return NULL;
    engine_fill_prediction(a, e, p, &p->capacity[k], cp);
    pr->capacity[pr->n_capacity++] = cp;
  }
  for (size_t i = 0; i < n; i++) {
    route_t want;
    engine_route_from_plan(&p->routes[i], &want);
    /* Only changes are moves; `focus` narrows them to the request's sites
     * and the sites whose calls go to them now. */
    if (engine_shares_same(&want, &e->dirs[i].target)) continue;
    if (focus && !focus[i] && !engine_sends_to_focus(e, i, focus)) continue;
    Nirc__PlannedMove *m = engine_arena_alloc(a, sizeof *m);
    if (!m) return NULL;
    nirc__planned_move__init(m);
    m->site = engine_site(e, i)->slug;
    /* A rule not made yet has no id to show: say what it would be. */
    char reason[sizeof want.reason + 16];
    snprintf(reason, sizeof reason, "%s%s",
             p->routes[i].rule_id == PLAN_DRAFT_ID ? "would be " : "", want.reason);
    m->reason = engine_arena_str(a, reason);
    m->revert_at_ms = want.revert_at_ms;
    m->route = engine_arena_alloc(a, (want.n_share + 1) * sizeof *m->route);
    if (!m->route) return NULL;
    for (unsigned k = 0; k < want.n_share; k++) {
      Nirc__RouteShare *rs = engine_arena_alloc(a, sizeof *rs);
      if (!rs) return NULL;
      nirc__route_share__init(rs);
      rs->site = engine_arena_str(a, want.share[k].site);
      rs->permille = want.share[k].permille;
      m->route[m->n_route++] = rs;
    }
    pr->moves[pr->n_moves++] = m;
  }
  for (size_t k = 0; k < p->n_alarms; k++) {
    long i = engine_index(e, p->alarms[k].site);
    if (focus && i >= 0 && !focus[i] && !engine_sends_to_focus(e, (size_t)i, focus)) continue;
    pr->alarms[pr->n_alarms++] = engine_arena_str(a, p->alarms[k].message);
  }
  if (engine_refused_sources(e, a, p, rule, pr) != 0 || a->failed) return NULL;
  /* The planner counts every site's calls where the plan sends them. A
   * site whose route is not known here may send them elsewhere now (an
   * older leader's move its agent still holds): that is said beside the
   * figures, never read as its planned route, nor as home, in silence. */
  if (engine_routes_not_known(e, a, &pr->route_not_known_sites, &pr->n_route_not_known_sites,
                              &pr->route_not_known) != 0)
    return NULL;
  return pr;
}

int engine_trial_plan(engine_t *e, const cutover_t *extra, const cutover_t *ahead, plan_t *out) {
  cutover_t *all = calloc(e->n_cut + 1, sizeof *all);
  if (!all) return NIRC_ENOMEM;
  if (e->n_cut) memcpy(all, e->cut, e->n_cut * sizeof *all); /* e->cut may be NULL */
  size_t n = e->n_cut;
  if (extra) all[n++] = *extra;
  plan_input_t in;
  engine_build_input(e, &in, all, n);
  engine_ahead_t ah = {0};
  int rc = ahead ? engine_ahead_raise(e, ahead, &ah) : 0;
  if (rc == 0) rc = planner_run(&in, out);
  if (rc == 0 && ahead) engine_ahead_annotate(e, &ah, out);
  engine_ahead_free(&ah);
  free(all);
  return rc;
}

/* ---- what --force overrides ---- */

/* The hubs of `cut` that the trial marks forced: a forced move there
 * fails the capacity check. Returns 0 or NIRC_ENOMEM. */
static int engine_collect_forced(const plan_t *trial, const cutover_t *cut, engine_forced_t *f) {
  memset(f, 0, sizeof *f);
  for (size_t k = 0; k < trial->n_capacity; k++) {
    const plan_capacity_t *pc = &trial->capacity[k];
    bool ours = false;
    for (unsigned h = 0; h < cut->hubs.n && !ours; h++)
      ours = strcmp(cut->hubs.v[h], pc->hub) == 0;
    if (!pc->forced || !ours) continue;
    plan_capacity_t *v = realloc(f->hubs, (f->n + 1) * sizeof *v);
    if (!v) {
      engine_forced_free(f);
      return NIRC_ENOMEM;
    }
    f->hubs = v;
    f->hubs[f->n++] = *pc;
    const char *lead = f->n == 1 ? "forced past the capacity check: " : "; ";
    /* What could not be checked is said as unknown, never as a number. */
    if (pc->cap_source == CAPACITY_UNKNOWN)
      engine_append(f->warning, sizeof f->warning,
                    "%s%s: its agents are neither measured nor configured, so nothing was checked",
                    lead, pc->hub);
    else if (pc->load_unknown)
      engine_append(f->warning, sizeof f->warning,
                    "%s%s: the load it would answer is not known (not measured, no forecast), so "
                    "its prediction counts it as none",
                    lead, pc->hub);
    else
      engine_append(f->warning, sizeof f->warning,
                    "%s%s predicted SL %.0f%% (needs %u agents, has %u)%s%s", lead, pc->hub,
                    100.0 * engine_sl(&pc->after), pc->agents_needed, pc->after.agents,
                    pc->load_on.basis == PLAN_LOAD_FORECAST ? ", " : "",
                    pc->load_on.basis == PLAN_LOAD_FORECAST ? pc->load_on.note : "");
  }
  return 0;
}

json_t *engine_forced_json(const engine_forced_t *f) {
  json_t *arr = json_array();
  for (unsigned k = 0; f && k < f->n; k++) {
    const plan_capacity_t *pc = &f->hubs[k];
    double asa = engine_asa(&pc->after);
    /* What the overridden prediction was made on, as nircctl shows it
     * (Capacity.load_on); null for a load given (no look ahead made). */
    const plan_load_on_t *lo = &pc->load_on;
    json_t *on = lo->basis == PLAN_LOAD_GIVEN
                     ? json_null()
                     : json_pack("{s:s, s:f, s:o, s:s}", "basis", engine_load_basis_name(lo->basis),
                                 "live_erl", lo->live_erl, "forecast_erl",
                                 lo->forecast_erl >= 0 ? json_real(lo->forecast_erl) : json_null(),
                                 "note", lo->note);
    json_array_append_new(arr, json_pack("{s:s, s:f, s:I, s:I, s:f, s:o, s:b, s:o}", "hub", pc->hub,
                                         "traffic_after_erl", pc->after.traffic_erl, "agents",
                                         (json_int_t)pc->after.agents, "agents_needed",
                                         (json_int_t)pc->agents_needed, "sl_after",
                                         engine_sl(&pc->after), "asa_after_s",
                                         asa >= 0 ? json_real(asa) : json_null(), "stable_after",
                                         (int)pc->after.stable, "load_on", on));
  }
  return arr;
}

void engine_forced_free(engine_forced_t *f) {
  free(f->hubs);
  memset(f, 0, sizeof *f);
}

bool engine_judge_trial(engine_t *e, const engine_req_t *rq, plan_t *trial, const cutover_t *cut,
                        bool dry_run, bool force, const char *refused_action,
                        engine_forced_t *forced) {
  size_t n = engine_nsites(e);
  bool *focus = calloc(n ? n : 1, sizeof *focus);
  for (unsigned s = 0; focus && s < cut->sources.n; s++) {
    long i = engine_index(e, cut->sources.v[s]);
    if (i >= 0) focus[i] = true;
  }
  for (unsigned h = 0; focus && h < cut->hubs.n; h++) {
    long i = engine_index(e, cut->hubs.v[h]);
    if (i >= 0) focus[i] = true;
  }
  engine_arena_t a = {0};
  engine_planned_t rule = {RULE_CUTOVER, cut->id, &cut->sources};
  Nirc__PlanReply *pr = focus ? engine_plan_reply(e, &a, trial, focus, &rule) : NULL;
  memset(forced, 0, sizeof *forced);
  int frc = force ? engine_collect_forced(trial, cut, forced) : 0;
  planner_free(trial);
  free(focus);
  if (!pr || frc != 0) {
    engine_arena_free(&a);
    engine_forced_free(forced);
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL,
                       "out of memory");
    return false;
  }
  Nirc__MoveReply mv = NIRC__MOVE_REPLY__INIT;
  mv.plan = pr;
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.request_id = rq->request_id;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_MOVE;
  rep.move = &mv;
  Nirc__Error er = NIRC__ERROR__INIT;
  bool go = false;
  if (pr->refused && !force) {
    er.code = NIRC__ERROR_CODE__ERROR_CODE_REFUSED;
    char msg[4200];
    snprintf(msg, sizeof msg, "%s (use --force to move anyway)", pr->refusal);
    er.message = msg;
    rep.ok = 0;
    rep.error = &er;
    /* A dry run is not an action: its refusal is answered, not audited
     * (nor journaled in an outage), as engine_refuse does for it. */
    if (!dry_run)
      engine_audit(e, rq->operator_name, refused_action, cut->sources.v[0],
                   json_pack("{s:o, s:o, s:s, s:s}", "sources", engine_slugs_json(&cut->sources),
                             "hubs", engine_slugs_json(&cut->hubs), "reason", cut->reason,
                             "refusal", pr->refusal));
    engine_send_reply(e, rq->client, &rep);
  } else if (dry_run) {
    mv.dry_run = 1;
    Nirc__CapacityPrediction **fo =
        engine_arena_alloc(&a, (forced->n + 1) * sizeof(Nirc__CapacityPrediction *));
    for (unsigned k = 0; fo && k < forced->n; k++) {
      Nirc__CapacityPrediction *cp = engine_arena_alloc(&a, sizeof *cp);
      if (!cp) break;
      engine_fill_prediction(&a, e, NULL, &forced->hubs[k], cp);
      fo[mv.n_forced_over++] = cp;
    }
    mv.forced_over = fo;
    mv.force_warning = forced->warning;
    rep.ok = 1;
    engine_send_reply(e, rq->client, &rep);
  } else {
    go = true;
  }
  engine_arena_free(&a);
  if (!go) engine_forced_free(forced);
  return go;
}

/* ---- nircctl plan ---- */

bool engine_schedule_ahead(engine_t *e, const schedule_t *s, int64_t *at, int64_t *start_ms,
                           int64_t *end_ms) {
  schedule_t on = *s;
  on.enabled = true;
  int64_t start = 0, end = 0, next = 0;
  bool in_window = rules_schedule_window(&on, engine_now(e), &start, &end);
  if (!in_window && (next = rules_schedule_next_start(&on, engine_now(e))) == 0) return false;
  /* Not in its window now: the next one that runs, its start and end
   * as rules.c lays them (a day whose window an exception or a clock
   * change removes is passed over, as the planner will). */
  rules_window_t w;
  for (int64_t t = engine_now(e); !start && rules_schedule_next_window(&on, t, &w); t = w.start_ms)
    if (w.fate == RULES_WINDOW_RUNS) {
      start = w.start_ms;
      end = w.end_ms;
    }
  if (!start) start = next; /* rules_schedule_next_start's, if the walk found none */
  /* Planned a minute into the window (its first waves, on the load of
   * its first minutes), or halfway into one shorter than two minutes:
   * a minute into a one-minute window is already past its end, and the
   * trial would plan it over. */
  int64_t into = end > start && end - start < 120000 ? (end - start) / 2 : 60000;
  *at = in_window ? engine_now(e) : start + into;
  *start_ms = start;
  *end_ms = end;
  return true;
}

int engine_schedule_trial(engine_t *e, const schedule_t *s, int64_t at, plan_t *out) {
  size_t n = engine_nsites(e);
  schedule_t one = *s;
  one.enabled = true;
  plan_input_t in;
  engine_build_input(e, &in, NULL, 0);
  for (size_t i = 0; i < n; i++) {
    plan_site_t *p = &e->psites[i];
    engine_demand_t fc;
    engine_forecast_demand(e, p->slug, at, &fc);
    p->forecast_cps = fc.cps;
    /* A window that has not started yet is judged on its own hour: the
     * forecast's demand (the load history's, else the scenario's) and
     * handle time then, and the scenario's roster, not this afternoon's
     * load and day shift. Without either only the live load is known. */
    if (at != engine_now(e) && fc.kind != ENGINE_DEMAND_LIVE) {
      p->demand_cps = fc.cps;
      p->demand_unknown = false;
      if (fc.aht_s > 0) p->aht_s = fc.aht_s;
    }
    unsigned staff;
    double aht;
    if (at != engine_now(e) && engine_forecast_staff(e, p->slug, at, &staff, &aht)) {
      p->staffed = staff;
      p->aht_s = aht;
      if (p->cap_source != CAPACITY_CONFIGURED) {
        /* The forecast's roster predicts the staff; the engine, when the
         * window starts, counts only agents measured or configured then
         * (unknown is not zero, nor a forecast). A hub that has neither
         * now is said to be refused then unless that changes. */
        bool unknown_now = p->cap_source == CAPACITY_UNKNOWN;
        p->cap_source = CAPACITY_CONFIGURED;
        if (unknown_now)
          snprintf(p->cap_note, sizeof p->cap_note,
                   "forecast roster, %u agents; not measured now and not configured: refused "
                   "when the window starts unless its agents are measured then (or: nircctl "
                   "capacity %s --seats N --roster ...)",
                   staff, p->slug);
        else
          snprintf(p->cap_note, sizeof p->cap_note, "forecast roster, %u agents", staff);
      }
    }
    /* An operator's roster for the site says more than the forecast. */
    uint32_t agents;
    if (at != engine_now(e) && p->cap_source == CAPACITY_CONFIGURED &&
        capacity_agents_at(&engine_site(e, i)->cap, at, &agents, p->cap_note, sizeof p->cap_note))
      p->staffed = agents;
  }
  /* Decided after the real rules, as it will be: the cutovers in force
   * (one that expires by `at` is not, the planner sees), the other
   * schedules, and this one in its place. Overflow rules only while the
   * window is in force: whether they engage later depends on load nobody
   * knows yet. Before, the trial planned this schedule alone, and said
   * sources would go to a hub that a cutover moves away. */
  schedule_t *sch = malloc((e->n_sch + 1) * sizeof *sch);
  if (!sch) return NIRC_ENOMEM;
  size_t n_sch = 0;
  bool placed = false;
  for (size_t k = 0; k < e->n_sch; k++) {
    bool same = e->sch[k].id == s->id && s->id != 0;
    sch[n_sch++] = same ? one : e->sch[k];
    placed |= same;
  }
  if (!placed) sch[n_sch++] = one;
  int64_t ws, we;
  if (!rules_schedule_window(s, engine_now(e), &ws, &we)) {
    in.overflows = NULL;
    in.n_overflows = 0;
    in.overflow_state = NULL;
  }
  in.schedules = sch;
  in.n_schedules = n_sch;
  in.now_ms = at;
  int rc = planner_run(&in, out);
  free(sch);
  return rc;
}

/* The demand each of schedule s's sources and hubs was planned on at
 * `at` (e->psites as engine_schedule_trial left them) and its source. */
static void engine_plan_demand(engine_t *e, engine_arena_t *a, const schedule_t *s, int64_t at,
                               Nirc__PlanReply *pr) {
  unsigned total = s->sources.n + s->hubs.n;
  Nirc__PlanDemand **v = engine_arena_alloc(a, (total + 1) * sizeof *v);
  if (!v) return;
  bool now = at == engine_now(e);
  for (unsigned k = 0; k < total; k++) {
    bool hub = k >= s->sources.n;
    const char *slug = hub ? s->hubs.v[k - s->sources.n] : s->sources.v[k];
    long i = engine_index(e, slug);
    Nirc__PlanDemand *d = engine_arena_alloc(a, sizeof *d);
    if (i < 0 || !d) continue;
    nirc__plan_demand__init(d);
    const plan_site_t *p = &e->psites[i];
    engine_demand_t fc;
    engine_forecast_demand(e, slug, at, &fc);
    /* What the planner used (planner.c): a source its forecast when that
     * expects calls, else its live load; a hub its load at `at`, which is
     * the live one while the window is in force. */
    bool used_fc = hub ? !now && fc.kind != ENGINE_DEMAND_LIVE : p->forecast_cps > 0;
    /* A few seconds of live reports spread over a minute's average are
     * no rate (a dashboard's first call is not a flood, nor its quiet
     * seconds no demand): not known, as /metrics leaves it out. */
    bool unknown = !used_fc && p->demand_unknown;
    char note[240];
    if (unknown) {
      /* Why there is no forecast stays said ("no history loaded", ...):
       * fc.text is "WHY: live load" then. */
      char why[sizeof fc.text];
      nirc_strlcpy(why, fc.text, sizeof why);
      char *tail = strstr(why, ": live load");
      if (tail) *tail = '\0';
      snprintf(note, sizeof note,
               "not known yet: %.0f s of live reports, too few for a rate, and no forecast%s%s%s",
               engine_site(e, i)->demand_secs, why[0] ? " (" : "", why, why[0] ? ")" : "");
    } else if (used_fc)
      snprintf(note, sizeof note, "%s", fc.text);
    else if (fc.kind == ENGINE_DEMAND_LIVE)
      snprintf(note, sizeof note, "%s", fc.text);
    else
      snprintf(note, sizeof note, "%s", now ? "window in force: live load" : "live load");
    d->site = engine_arena_str(a, slug);
    d->calls_per_s = unknown ? 0 : used_fc ? fc.cps : p->demand_cps;
    d->calls_per_s_unknown = unknown;
    d->aht_s = p->aht_s;
    d->source = engine_arena_str(a, used_fc ? engine_demand_kind_name(fc.kind) : "live");
    d->note = engine_arena_str(a, note);
    d->weeks = used_fc && fc.kind == ENGINE_DEMAND_HISTORY ? fc.weeks : 0;
    d->hub = hub;
    v[pr->n_demand++] = d;
  }
  pr->demand = v;
}

void engine_op_plan(engine_t *e, const engine_req_t *rq_, const Nirc__PlanRequest *req) {
  /* A plan only shows what a move would do: like a dry run, its refusals
   * (no such schedule, a bad site) write nothing (engine_refuse). */
  engine_req_t dry = *rq_;
  dry.dry_run = true;
  const engine_req_t *rq = &dry;
  void *c = rq->client;
  uint64_t rid = rq->request_id;
  char target_[256];
  engine_join(req->sources, req->n_sources, target_, sizeof target_);
  char err[512];
  size_t n = engine_nsites(e);
  plan_t trial;
  bool *focus = calloc(n ? n : 1, sizeof *focus);
  if (!focus) return;
  int rc;
  engine_planned_t rule;
  cutover_t cut;
  const schedule_t *sched = NULL; /* plan --schedule: the window's times and waves */
  int64_t sched_start = 0, sched_end = 0, sched_at = 0;
  bool sched_disabled = false;
  if (req->schedule_id || (req->schedule_name && *req->schedule_name)) {
    schedule_t *s = NULL;
    for (size_t k = 0; k < e->n_sch; k++)
      if (e->sch[k].id == req->schedule_id ||
          (req->schedule_name && strcmp(e->sch[k].name, req->schedule_name) == 0))
        s = &e->sch[k];
    if (!s) {
      free(focus);
      engine_refuse(e, rq, "plan", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                    "no schedule '%s' (see nircctl schedule list)",
                    req->schedule_name ? req->schedule_name : "");
      return;
    }
    /* The schedule at its next start, on today's smoothed load. A
     * disabled one is planned as it would run once enabled (the trial
     * enables it too), and the reply says it is disabled: its windows are
     * laid as if enabled, or it would be planned for no window at all. */
    sched_disabled = !s->enabled;
    int64_t start = 0, end = 0, at = 0;
    if (!engine_schedule_ahead(e, s, &at, &start, &end)) {
      free(focus);
      engine_refuse(e, rq, "plan", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                    "schedule '%s' has no window ahead (no day it runs): nothing to plan", s->name);
      return;
    }
    rc = engine_schedule_trial(e, s, at, &trial);
    sched = s;
    sched_at = at;
    sched_start = start;
    sched_end = end;
    for (unsigned k = 0; k < s->sources.n; k++) {
      long i = engine_index(e, s->sources.v[k]);
      if (i >= 0) focus[i] = true;
    }
    /* The reply reads the schedule's sources after it may change: copy. */
    memset(&cut, 0, sizeof cut);
    cut.sources = s->sources;
    rule = (engine_planned_t){RULE_SCHEDULE, s->id, &cut.sources};
  } else {
    memset(&cut, 0, sizeof cut);
    if (engine_copy_slugs(&cut.sources, req->sources, req->n_sources, "sources", err, sizeof err) ||
        engine_copy_slugs(&cut.hubs, req->hubs, req->n_hubs, "hubs", err, sizeof err)) {
      free(focus);
      engine_refuse(e, rq, "plan", target_, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", err);
      return;
    }
    /* The validator wants a reason; the move planned has none (and no id:
     * it is never made). */
    snprintf(cut.reason, sizeof cut.reason, "plan");
    cut.id = PLAN_DRAFT_ID;
    cut.state = CUTOVER_ACTIVE;
    rules_env_t env = {engine_site_exists, e, engine_site_at};
    if (rules_validate_cutover(&cut, &env, engine_now(e), err, sizeof err) != 0) {
      free(focus);
      engine_refuse(e, rq, "plan", target_, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", err);
      return;
    }
    cut.reason[0] = '\0';
    rc = engine_trial_plan(e, &cut, &cut, &trial);
    for (unsigned k = 0; k < cut.sources.n; k++) {
      long i = engine_index(e, cut.sources.v[k]);
      if (i >= 0) focus[i] = true;
    }
    rule = (engine_planned_t){RULE_CUTOVER, PLAN_DRAFT_ID, &cut.sources};
  }
  if (rc != 0) {
    free(focus);
    engine_reply_error(e, c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
    return;
  }
  engine_arena_t a = {0};
  Nirc__PlanReply *pr = engine_plan_reply(e, &a, &trial, focus, &rule);
  if (pr && sched) engine_plan_demand(e, &a, sched, sched_at, pr);
  if (pr && sched) {
    pr->schedule_name = engine_arena_str(&a, sched->name);
    pr->window_start_ms = sched_start;
    pr->window_end_ms = sched_end;
    pr->wave_size = sched->wave_size;
    unsigned w = sched->wave_size ? sched->wave_size : sched->sources.n;
    pr->waves = w ? (sched->sources.n + w - 1) / w : 0;
    pr->schedule_disabled = sched_disabled;
  }
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.request_id = rid;
  rep.ok = pr != NULL;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_PLAN;
  rep.plan = pr;
  if (pr)
    engine_send_reply(e, c, &rep);
  else
    engine_reply_error(e, c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
  engine_arena_free(&a);
  planner_free(&trial);
  free(focus);
}

/* ---- where an overflow rule would spill ---- */

Nirc__PlanReply *engine_overflow_check(engine_t *e, engine_arena_t *a, const overflow_rule_t *o) {
  size_t n = engine_nsites(e);
  overflow_rule_t *rules = calloc(e->n_ovf + 1, sizeof *rules);
  bool *focus = calloc(n + 1, sizeof *focus);
  if (!rules || !focus) {
    free(rules);
    free(focus);
    return NULL;
  }
  size_t n_rules = 0;
  bool placed = false;
  for (size_t k = 0; k < e->n_ovf; k++) {
    rules[n_rules] = e->ovf[k];
    if (e->ovf[k].id == o->id) { /* its old self, changed */
      rules[n_rules] = *o;
      placed = true;
    }
    n_rules++;
  }
  if (!placed) rules[n_rules++] = *o;
  for (size_t k = 0; k < n_rules; k++)
    if (rules[k].id == o->id) rules[k].enabled = true;
  plan_input_t in;
  engine_build_input(e, &in, NULL, 0);
  in.overflows = rules;
  in.n_overflows = n_rules;
  in.overflow_trial_id = o->id;
  /* Its sites' forecast ahead: engine_build_input looked only at the
   * rules in force, and this one may be new or have new hubs. */
  const int64_t now = engine_now(e);
  engine_ahead_overflow_rule(e, o, in.cutovers, in.n_cutovers, now);
  plan_t trial;
  Nirc__PlanReply *pr = NULL;
  if (planner_run(&in, &trial) == 0) {
    long i = engine_index(e, o->source);
    if (i >= 0) focus[i] = true;
    for (unsigned k = 0; k < o->hubs.n; k++)
      if ((i = engine_index(e, o->hubs.v[k])) >= 0) focus[i] = true;
    slug_list_t src = {.n = 1};
    nirc_strlcpy(src.v[0], o->source, sizeof src.v[0]);
    engine_planned_t rule = {RULE_OVERFLOW, o->id, &src};
    pr = engine_plan_reply(e, a, &trial, focus, &rule);
    planner_free(&trial);
  }
  free(rules);
  free(focus);
  return pr;
}
