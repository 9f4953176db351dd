/* planworld: see planworld.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "planworld.h"

/* ---- building worlds ---------------------------------------------------- */

pworld_t *pworld_new(int64_t now_ms) {
  pworld_t *w = calloc(1, sizeof *w);
  assert_non_null(w);
  w->now_ms = now_ms;
  return w;
}

/* Unix ms of a UTC calendar time. */
int64_t utc_ms(int y, int mo, int d, int h, int mi) {
  struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
  return (int64_t)timegm(&tm) * 1000;
}

/* Unix ms of a wall-clock time in China (UTC+8, no daylight saving). */
int64_t cst_ms(int y, int mo, int d, int h, int mi) {
  return utc_ms(y, mo, d, h, mi) - 8 * 3600 * 1000LL;
}

void list_add(slug_list_t *l, const char *csv) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", csv);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    assert_true(l->n < RULES_MAX_SITES);
    snprintf(l->v[l->n++], sizeof l->v[0], "%s", tok);
  }
}

/* An online site answering `erl` Erlangs of its own with `staffed`
 * agents, nothing queued. */
plan_site_t *add_site(pworld_t *w, const char *slug, bool is_hub, double erl, double aht,
                      unsigned staffed) {
  assert_true(w->n_sites < W_SITES);
  plan_site_t *s = &w->sites[w->n_sites++];
  memset(s, 0, sizeof *s);
  snprintf(s->slug, sizeof s->slug, "%s", slug);
  s->is_hub = is_hub;
  s->online = true;
  s->aht_s = aht;
  s->demand_cps = erl / aht;
  s->staffed = staffed;
  s->sl = 1.0;
  return s;
}

plan_site_t *site_of(pworld_t *w, const char *slug) {
  for (size_t i = 0; i < w->n_sites; i++)
    if (strcmp(w->sites[i].slug, slug) == 0) return &w->sites[i];
  fail_msg("no site %s in the test world", slug);
  return NULL;
}

cutover_t *add_cutover(pworld_t *w, uint64_t id, const char *sources, const char *hubs,
                       const char *reason) {
  assert_true(w->n_cutovers < W_CUTOVERS);
  cutover_t *c = &w->cutovers[w->n_cutovers++];
  memset(c, 0, sizeof *c);
  c->id = id;
  list_add(&c->sources, sources);
  list_add(&c->hubs, hubs);
  snprintf(c->reason, sizeof c->reason, "%s", reason);
  snprintf(c->operator_name, sizeof c->operator_name, "duty-officer");
  c->created_ms = w->now_ms - 60000;
  c->state = CUTOVER_ACTIVE;
  return c;
}

/* Daily 22:00-08:00 in `tz`. */
schedule_t *add_night(pworld_t *w, uint64_t id, const char *sources, const char *hubs,
                      const char *tz) {
  assert_true(w->n_schedules < W_SCHEDULES);
  schedule_t *s = &w->schedules[w->n_schedules++];
  memset(s, 0, sizeof *s);
  s->id = id;
  snprintf(s->name, sizeof s->name, "night");
  list_add(&s->sources, sources);
  list_add(&s->hubs, hubs);
  s->start_min = 22 * 60;
  s->end_min = 8 * 60;
  s->days = 0x7f;
  snprintf(s->tz, sizeof s->tz, "%s", tz);
  s->wave_size = 5;
  s->enabled = true;
  return s;
}

/* Wait-triggered overflow: engages at 60 s, releases at 20 s after 300 s. */
overflow_rule_t *add_overflow(pworld_t *w, uint64_t id, const char *source, const char *hubs) {
  assert_true(w->n_overflows < W_OVERFLOWS);
  overflow_rule_t *o = &w->overflows[w->n_overflows++];
  memset(o, 0, sizeof *o);
  o->id = id;
  snprintf(o->name, sizeof o->name, "%s-peak", source);
  snprintf(o->source, sizeof o->source, "%s", source);
  list_add(&o->hubs, hubs);
  o->trigger_wait_s = 60;
  o->release_wait_s = 20;
  o->share_cap_permille = 300;
  o->min_hold_s = 300;
  o->margin_s = 10;
  o->enabled = true;
  return o;
}

plan_input_t pworld_input(const pworld_t *w) {
  plan_input_t in = {
      .sites = w->sites,
      .n_sites = w->n_sites,
      .cutovers = w->cutovers,
      .n_cutovers = w->n_cutovers,
      .schedules = w->schedules,
      .n_schedules = w->n_schedules,
      .overflows = w->overflows,
      .n_overflows = w->n_overflows,
      .overflow_state = w->have_state ? w->state : NULL,
      .now_ms = w->now_ms,
      .sl_target = 0.80,
      .sl_threshold_s = 20,
  };
  return in;
}

/* ---- checking plans ----------------------------------------------------- */

size_t index_of(const plan_input_t *in, const char *slug) {
  for (size_t i = 0; i < in->n_sites; i++)
    if (strcmp(in->sites[i].slug, slug) == 0) return i;
  return SIZE_MAX;
}

bool route_is_home(const plan_route_t *r) {
  return r->n_route == 1 && strcmp(r->route[0].site, r->slug) == 0 && r->route[0].permille == 1000;
}

void check_invariants(const plan_input_t *in, const plan_t *p) {
  assert_int_equal(p->n_routes, in->n_sites);
  for (size_t i = 0; i < p->n_routes; i++) {
    const plan_route_t *r = &p->routes[i];
    assert_string_equal(r->slug, in->sites[i].slug);
    if (r->n_route < 1 || r->n_route > PLAN_ROUTE_MAX)
      fail_msg("%s: route has %u entries", r->slug, r->n_route);
    unsigned sum = 0;
    bool sends = false;
    for (unsigned k = 0; k < r->n_route; k++) {
      const plan_share_t *sh = &r->route[k];
      if (sh->permille == 0) fail_msg("%s: zero share for %s", r->slug, sh->site);
      for (unsigned m = 0; m < k; m++)
        if (strcmp(r->route[m].site, sh->site) == 0) fail_msg("%s: %s twice", r->slug, sh->site);
      sum += sh->permille;
      if (strcmp(sh->site, r->slug) == 0) continue;
      sends = true;
      size_t h = index_of(in, sh->site);
      if (h == SIZE_MAX) fail_msg("%s routes to unknown %s", r->slug, sh->site);
      const plan_site_t *hub = &in->sites[h];
      if (!hub->is_hub) fail_msg("%s routes to non-hub %s", r->slug, sh->site);
      if (!hub->online) fail_msg("%s routes to offline %s", r->slug, sh->site);
      if (hub->excluded) fail_msg("%s routes to excluded %s", r->slug, sh->site);
      if (!route_is_home(&p->routes[h]))
        fail_msg("%s routes to %s, which is moved away", r->slug, sh->site);
      bool listed = false;
      for (unsigned m = 0; m < p->routes[h].n_inbound; m++)
        if (p->routes[h].inbound[m] == i) listed = true;
      if (!listed) fail_msg("%s sends to %s but is not in its inbound list", r->slug, sh->site);
    }
    if (sum != 1000) fail_msg("%s: route sums to %u", r->slug, sum);
    if (sends && r->n_inbound > 0) fail_msg("%s both sends and receives", r->slug);
    if (sends && in->sites[i].excluded) fail_msg("excluded %s is moved", r->slug);
    if (!sends && r->kind != RULE_NONE) fail_msg("%s is home but names a rule", r->slug);
    if (sends && r->kind == RULE_NONE) fail_msg("%s is moved by no rule", r->slug);
    /* Every listed sender really sends here. */
    for (unsigned m = 0; m < r->n_inbound; m++) {
      size_t j = r->inbound[m];
      if (j >= p->n_routes) fail_msg("%s lists unknown sender #%zu", r->slug, j);
      bool found = false;
      for (unsigned k = 0; k < p->routes[j].n_route; k++)
        if (strcmp(p->routes[j].route[k].site, r->slug) == 0) found = true;
      if (!found) fail_msg("%s lists %s, which does not send to it", r->slug, p->routes[j].slug);
    }
  }
  /* One capacity entry per hub: what it takes, together, and what it
   * turned down. */
  for (size_t k = 0; k < p->n_capacity; k++) {
    const plan_capacity_t *c = &p->capacity[k];
    size_t h = index_of(in, c->hub);
    assert_true(h != SIZE_MAX);
    for (size_t j = 0; j < k; j++)
      if (strcmp(p->capacity[j].hub, c->hub) == 0) fail_msg("%s has two capacity entries", c->hub);
    if (c->n_sources != p->routes[h].n_inbound)
      fail_msg("%s: the capacity entry counts %u sources, its route lists %u", c->hub, c->n_sources,
               p->routes[h].n_inbound);
    if (c->refused != (c->n_refused > 0) || (c->refused && !c->largest_refused[0]))
      fail_msg("%s: refused %d with %u sources refused", c->hub, c->refused, c->n_refused);
    if (c->n_sources == 0 && !c->refused) fail_msg("%s: an entry with no sources", c->hub);
    if (c->n_sources == 0 && c->after.traffic_erl != c->before.traffic_erl)
      fail_msg("%s takes nothing but its load changes", c->hub);
  }
}

void assert_same_prediction(const erlang_prediction_t *a, const erlang_prediction_t *b) {
  assert_true(a->traffic_erl == b->traffic_erl);
  assert_int_equal(a->agents, b->agents);
  assert_int_equal(a->stable, b->stable);
  assert_true(a->service_level == b->service_level);
}

void assert_same_plan(const plan_t *a, const plan_t *b, size_t n_overflows) {
  assert_int_equal(a->n_routes, b->n_routes);
  for (size_t i = 0; i < a->n_routes; i++) {
    const plan_route_t *x = &a->routes[i], *y = &b->routes[i];
    assert_string_equal(x->slug, y->slug);
    assert_int_equal(x->n_route, y->n_route);
    for (unsigned k = 0; k < x->n_route; k++) {
      assert_string_equal(x->route[k].site, y->route[k].site);
      assert_int_equal(x->route[k].permille, y->route[k].permille);
    }
    assert_int_equal(x->revert_at_ms, y->revert_at_ms);
    assert_int_equal(x->kind, y->kind);
    assert_int_equal(x->rule_id, y->rule_id);
    assert_string_equal(x->reason, y->reason);
    assert_int_equal(x->wave_size, y->wave_size);
    assert_int_equal(x->n_inbound, y->n_inbound);
    for (unsigned k = 0; k < x->n_inbound; k++)
      assert_int_equal(x->inbound[k], y->inbound[k]);
  }
  assert_int_equal(a->n_capacity, b->n_capacity);
  for (size_t i = 0; i < a->n_capacity; i++) {
    const plan_capacity_t *x = &a->capacity[i], *y = &b->capacity[i];
    assert_string_equal(x->hub, y->hub);
    assert_int_equal(x->refused, y->refused);
    assert_int_equal(x->agents_needed, y->agents_needed);
    assert_same_prediction(&x->before, &y->before);
    assert_same_prediction(&x->after, &y->after);
    assert_int_equal(x->n_sources, y->n_sources);
    assert_int_equal(x->n_refused, y->n_refused);
    assert_string_equal(x->refused_sources, y->refused_sources);
    assert_string_equal(x->largest_refused, y->largest_refused);
    assert_same_prediction(&x->with_refused, &y->with_refused);
    assert_int_equal(x->with_refused_needed, y->with_refused_needed);
    assert_int_equal(x->forced, y->forced);
  }
  assert_int_equal(a->n_alarms, b->n_alarms);
  for (size_t i = 0; i < a->n_alarms; i++) {
    assert_int_equal(a->alarms[i].kind, b->alarms[i].kind);
    assert_string_equal(a->alarms[i].site, b->alarms[i].site);
    assert_int_equal(a->alarms[i].rule_kind, b->alarms[i].rule_kind);
    assert_int_equal(a->alarms[i].rule_id, b->alarms[i].rule_id);
    assert_string_equal(a->alarms[i].message, b->alarms[i].message);
    assert_int_equal(a->alarms[i].n_hubs, b->alarms[i].n_hubs);
    for (unsigned k = 0; k < a->alarms[i].n_hubs; k++) {
      assert_string_equal(a->alarms[i].hubs[k].hub, b->alarms[i].hubs[k].hub);
      assert_string_equal(a->alarms[i].hubs[k].why, b->alarms[i].hubs[k].why);
      assert_int_equal(a->alarms[i].hubs[k].agents_needed, b->alarms[i].hubs[k].agents_needed);
    }
  }
  for (size_t i = 0; i < n_overflows; i++) {
    assert_int_equal(a->overflow_state[i].rule_id, b->overflow_state[i].rule_id);
    assert_int_equal(a->overflow_state[i].engaged, b->overflow_state[i].engaged);
    assert_int_equal(a->overflow_state[i].since_ms, b->overflow_state[i].since_ms);
    assert_int_equal(a->overflow_state[i].permille, b->overflow_state[i].permille);
  }
}

/* Plans the world, checks the invariants and determinism, and keeps the
 * overflow state for the next run. */
void plan_checked(pworld_t *w, plan_t *p) {
  plan_input_t in = pworld_input(w);
  assert_int_equal(planner_run(&in, p), 0);
  check_invariants(&in, p);
  plan_t again;
  assert_int_equal(planner_run(&in, &again), 0);
  assert_same_plan(p, &again, w->n_overflows);
  planner_free(&again);
  for (size_t i = 0; i < w->n_overflows; i++)
    w->state[i] = p->overflow_state[i];
  w->have_state = true;
}

/* "henan:700,hubei:300" */
const char *route_str(const plan_t *p, const char *slug) {
  static char buf[256];
  const plan_route_t *r = planner_route(p, slug);
  if (!r) fail_msg("no route for %s", slug);
  buf[0] = '\0';
  for (unsigned k = 0; k < r->n_route; k++) {
    size_t used = strlen(buf);
    snprintf(buf + used, sizeof buf - used, "%s%s:%u", k ? "," : "", r->route[k].site,
             r->route[k].permille);
  }
  return buf;
}

void assert_route(const plan_t *p, const char *slug, const char *want) {
  const char *got = route_str(p, slug);
  if (strcmp(got, want) != 0) fail_msg("%s routes %s, want %s", slug, got, want);
}

void assert_home(const plan_t *p, const char *slug) {
  char want[64];
  snprintf(want, sizeof want, "%s:1000", slug);
  assert_route(p, slug, want);
}

const plan_alarm_t *find_alarm(const plan_t *p, plan_alarm_kind_t kind, const char *site) {
  for (size_t i = 0; i < p->n_alarms; i++)
    if (p->alarms[i].kind == kind && strcmp(p->alarms[i].site, site) == 0) return &p->alarms[i];
  return NULL;
}

const plan_capacity_t *find_capacity(const plan_t *p, const char *hub) {
  for (size_t i = 0; i < p->n_capacity; i++)
    if (strcmp(p->capacity[i].hub, hub) == 0) return &p->capacity[i];
  return NULL;
}

bool inbound_has(const plan_t *p, const char *hub, const char *src) {
  const plan_route_t *r = planner_route(p, hub);
  for (unsigned i = 0; r && i < r->n_inbound; i++)
    if (strcmp(p->routes[r->inbound[i]].slug, src) == 0) return true;
  return false;
}

void load_scenario(scenario_t *sc) {
  const char *root = getenv("NIRC_SOURCE_DIR");
  if (!root || !*root)
    fail_msg("NIRC_SOURCE_DIR is not set; run the test with NIRC_SOURCE_DIR=<repository root>");
  char path[4096], err[512];
  snprintf(path, sizeof path, "%s/scenario/provinces.json", root);
  int rc = scenario_load(path, sc, err, sizeof err);
  if (rc != 0) fail_msg("loading %s failed (%s): %s", path, nirc_errname(rc), err);
}

/* The 31 provinces at 23:30, each with its night demand and night staff,
 * the primary hub with its consolidated night shift, and the night
 * schedule that moves the 22 consolidated provinces. */
pworld_t *night_world(const scenario_t *sc, char *sources, size_t len) {
  pworld_t *w = pworld_new(NIGHT_NOW);
  sources[0] = '\0';
  for (size_t i = 0; i < sc->count; i++) {
    const scenario_site_t *s = &sc->sites[i];
    double cps = scenario_rate_per_s(sc, s, 23.5);
    plan_site_t *p =
        add_site(w, s->slug, s->is_hub, cps * s->aht_s, s->aht_s, scenario_agents_at(s, 23.5));
    if (strcmp(s->slug, sc->primary_hub) == 0) p->staffed = sc->hub_night_agents;
    if (s->night_consolidated) {
      size_t used = strlen(sources);
      snprintf(sources + used, len - used, "%s%s", used ? "," : "", s->slug);
    }
  }
  add_night(w, 1, sources, "shaanxi,henan", "Asia/Shanghai");
  return w;
}