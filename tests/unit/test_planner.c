/* Unit tests for the planner (controller/routing/planner.c).
 *
 * Every plan built here goes through plan_checked() (support/planworld.c),
 * which asserts the invariants the rest of NIRC relies on (no site both
 * sends and receives, every route sums to 1000, routes point only at
 * online, non-excluded hubs that stay home, hubs list exactly their
 * senders) and that planning the same input twice gives the same plan. The cases follow the
 * product's history: the night consolidation into Xi'an, Xi'an's own lockdown, the Wuhan cutover,
 * and peak-day overflow without flapping.
 *
 * The 31-province cases load scenario/provinces.json from NIRC_SOURCE_DIR,
 * which CTest sets. */
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
#include "erlang.h"
#include "planner.h"
#include "rules.h"
#include "scenario.h"
#include "support/planworld.h"

/* ---- basics ------------------------------------------------------------- */

static void test_no_rules_everyone_home(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  add_site(w, "hubei", false, 10, 230, 20);
  add_site(w, "shaanxi", true, 8, 230, 20);
  plan_t p;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  assert_home(&p, "shaanxi");
  assert_string_equal(planner_route(&p, "hubei")->reason, "default");
  assert_int_equal(planner_route(&p, "hubei")->kind, RULE_NONE);
  assert_int_equal(planner_route(&p, "hubei")->revert_at_ms, 0);
  assert_int_equal(p.n_alarms, 0);
  assert_int_equal(p.n_capacity, 0);
  assert_null(planner_route(&p, "atlantis"));
  planner_free(&p);

  /* An empty snapshot is a valid (empty) plan. */
  pworld_t *e = pworld_new(DAY_NOW);
  plan_checked(e, &p);
  assert_int_equal(p.n_routes, 0);
  planner_free(&p);
  free(e);
  free(w);
}

/* 2020-01-23: Hubei goes to Xi'an in one command, open-ended, with its
 * reason on the route; the hub's capacity is predicted. */
static void test_wuhan_cutover(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  add_site(w, "hubei", false, 12, 230, 40);
  add_site(w, "shaanxi", true, 20, 230, 40);
  add_site(w, "henan", true, 20, 220, 40);
  add_cutover(w, 7, "hubei", "shaanxi,henan", "Wuhan lockdown");
  plan_t p;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "shaanxi:1000");
  const plan_route_t *r = planner_route(&p, "hubei");
  assert_int_equal(r->kind, RULE_CUTOVER);
  assert_int_equal(r->rule_id, 7);
  assert_int_equal(r->revert_at_ms, 0);
  assert_int_equal(r->wave_size, 0);
  assert_string_equal(r->reason, "cutover 7: Wuhan lockdown");
  const plan_route_t *hub = planner_route(&p, "shaanxi");
  assert_int_equal(hub->n_inbound, 1);
  assert_string_equal(p.routes[hub->inbound[0]].slug, "hubei");
  assert_home(&p, "henan");

  const plan_capacity_t *c = find_capacity(&p, "shaanxi");
  assert_non_null(c);
  assert_false(c->refused || c->forced);
  assert_int_equal(c->n_sources, 1);
  assert_int_equal(p.n_capacity, 1);
  assert_true(fabs(c->before.traffic_erl - 20) < 1e-9);
  assert_true(fabs(c->after.traffic_erl - 32) < 1e-9);
  assert_int_equal(c->after.agents, 40);
  assert_true(c->after.stable && c->after.service_level >= 0.8);
  assert_int_equal(c->agents_needed, erlang_agents_needed(32, 230, 20, 0.8));
  assert_int_equal(p.n_alarms, 0);
  planner_free(&p);

  /* With an expiry the route carries it as revert_at. */
  w->cutovers[0].expires_ms = w->now_ms + 76LL * 86400 * 1000;
  plan_checked(w, &p);
  assert_int_equal(planner_route(&p, "hubei")->revert_at_ms, w->now_ms + 76LL * 86400 * 1000);
  planner_free(&p);

  /* Past its expiry (even one not yet marked EXPIRED), restored, or
   * expired: not in force. */
  const struct {
    int64_t expires_ms;
    cutover_state_t st;
  } inactive[] = {{w->now_ms - 1, CUTOVER_ACTIVE},
                  {w->now_ms, CUTOVER_ACTIVE},
                  {0, CUTOVER_RESTORED},
                  {0, CUTOVER_EXPIRED}};
  for (size_t i = 0; i < sizeof inactive / sizeof inactive[0]; i++) {
    w->cutovers[0].expires_ms = inactive[i].expires_ms;
    w->cutovers[0].state = inactive[i].st;
    plan_checked(w, &p);
    assert_home(&p, "hubei");
    assert_int_equal(p.n_capacity, 0);
    planner_free(&p);
  }
  free(w);
}

/* ---- precedence --------------------------------------------------------- */

static void test_precedence(void **state) {
  (void)state;
  pworld_t *w = pworld_new(NIGHT_NOW);
  plan_site_t *src = add_site(w, "hubei", false, 12, 240, 13);
  add_site(w, "shaanxi", true, 5, 240, 40);
  add_site(w, "henan", true, 5, 240, 40);
  add_site(w, "sichuan", true, 5, 240, 40);
  src->wait_s = 90; /* overflow triggers */
  add_cutover(w, 3, "hubei", "shaanxi", "flood");
  add_night(w, 4, "hubei", "henan", "Asia/Shanghai");
  add_overflow(w, 5, "hubei", "sichuan");

  /* All three in force: the cutover decides. */
  plan_t p;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "shaanxi:1000");
  assert_int_equal(planner_route(&p, "hubei")->kind, RULE_CUTOVER);
  assert_int_equal(planner_route(&p, "henan")->n_inbound, 0);
  assert_int_equal(planner_route(&p, "sichuan")->n_inbound, 0);
  assert_int_equal(p.n_alarms, 0);
  planner_free(&p);

  /* Cutover restored: the schedule beats the overflow. */
  w->cutovers[0].state = CUTOVER_RESTORED;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "henan:1000");
  const plan_route_t *r = planner_route(&p, "hubei");
  assert_int_equal(r->kind, RULE_SCHEDULE);
  assert_int_equal(r->rule_id, 4);
  assert_string_equal(r->reason, "schedule 4 (night)");
  assert_int_equal(r->wave_size, 5);
  assert_int_equal(r->revert_at_ms, cst_ms(2024, 3, 6, 8, 0));
  assert_int_equal(p.n_alarms, 0);
  planner_free(&p);

  /* Schedule disabled: the (already engaged) overflow moves part. */
  w->schedules[0].enabled = false;
  plan_checked(w, &p);
  r = planner_route(&p, "hubei");
  assert_int_equal(r->kind, RULE_OVERFLOW);
  assert_int_equal(r->rule_id, 5);
  assert_string_equal(r->reason, "overflow 5 (hubei-peak)");
  assert_int_equal(r->revert_at_ms, 0);
  assert_int_equal(r->n_route, 2);
  assert_string_equal(r->route[0].site, "sichuan");
  assert_string_equal(r->route[1].site, "hubei");
  assert_true(r->route[0].permille > 0 && r->route[0].permille <= 300);
  assert_int_equal(r->route[0].permille % 50, 0);
  assert_true(w->state[0].engaged);
  planner_free(&p);

  /* Overflow disabled as well: home. */
  w->overflows[0].enabled = false;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  assert_string_equal(planner_route(&p, "hubei")->reason, "default");
  assert_false(w->state[0].engaged);
  planner_free(&p);
  free(w);
}

/* ---- eligibility -------------------------------------------------------- */

static void test_eligibility(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  add_site(w, "hubei", false, 5, 240, 10);
  plan_site_t *h1 = add_site(w, "shaanxi", true, 5, 240, 40);
  plan_site_t *h2 = add_site(w, "henan", true, 5, 240, 40);
  plan_site_t *h3 = add_site(w, "sichuan", true, 5, 240, 40);
  add_site(w, "guangdong", false, 5, 240, 40);
  add_cutover(w, 1, "hubei", "guangdong,shaanxi,henan,sichuan", "test");
  plan_t p;

  /* guangdong is not a hub: skipped. */
  plan_checked(w, &p);
  assert_route(&p, "hubei", "shaanxi:1000");
  planner_free(&p);

  /* Offline (or stale: the snapshot folds both into !online) → next. */
  h1->online = false;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "henan:1000");
  planner_free(&p);

  /* Excluded after a failed move → next. */
  h2->excluded = true;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "sichuan:1000");
  assert_string_equal(planner_route(&p, "henan")->reason, "default (excluded after a failed move)");
  planner_free(&p);

  /* None left: home, with an alarm that says why for each hub. */
  h3->online = false;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_NO_HUB, "hubei");
  assert_non_null(a);
  assert_int_equal(a->rule_kind, RULE_CUTOVER);
  assert_int_equal(a->rule_id, 1);
  assert_string_equal(a->message, "cutover 1: no eligible hub for hubei: guangdong is not a hub, "
                                  "shaanxi is offline, henan is excluded after a failed move, "
                                  "sichuan is offline");
  planner_free(&p);

  /* An excluded source is not moved at all. */
  h1->online = true;
  site_of(w, "hubei")->excluded = true;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  assert_int_equal(p.n_alarms, 0);
  planner_free(&p);

  /* A source whose own link is down is still moved: it is the hub that
   * must answer. */
  site_of(w, "hubei")->excluded = false;
  site_of(w, "hubei")->online = false;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "shaanxi:1000");
  planner_free(&p);
  free(w);
}

static void test_unknown_sites(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  add_site(w, "hubei", false, 5, 240, 10);
  add_site(w, "henan", true, 5, 240, 40);
  add_cutover(w, 2, "atlantis,hubei", "nowhere,henan", "test");
  plan_t p;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "henan:1000");
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_UNKNOWN_SITE, "atlantis");
  assert_non_null(a);
  assert_int_equal(a->rule_kind, RULE_CUTOVER);
  assert_int_equal(a->rule_id, 2);
  assert_non_null(strstr(a->message, "atlantis"));
  assert_non_null(find_alarm(&p, PLAN_ALARM_UNKNOWN_SITE, "nowhere"));
  assert_int_equal(p.n_alarms, 2);
  planner_free(&p);
  free(w);
}

/* ---- the Xi'an lockdown (31 provinces) ------------------------------------ */

static void test_night_consolidation(void **state) {
  (void)state;
  scenario_t sc;
  load_scenario(&sc);
  char sources[2048];
  pworld_t *w = night_world(&sc, sources, sizeof sources);
  plan_t p;
  plan_checked(w, &p);
  unsigned moved = 0;
  for (size_t i = 0; i < sc.count; i++) {
    const scenario_site_t *s = &sc.sites[i];
    if (!s->night_consolidated) {
      assert_true(route_is_home(planner_route(&p, s->slug)));
      continue;
    }
    moved++;
    assert_route(&p, s->slug, "shaanxi:1000");
    assert_int_equal(planner_route(&p, s->slug)->revert_at_ms, cst_ms(2024, 3, 6, 8, 0));
  }
  assert_int_equal(moved, 22);
  assert_int_equal(planner_route(&p, "shaanxi")->n_inbound, 22);
  /* 40 agents in Xi'an answer the night of 22 provinces: the 210 -> 40
   * story holds under Erlang C. */
  const plan_capacity_t *c = find_capacity(&p, "shaanxi");
  assert_non_null(c);
  assert_int_equal(c->n_sources, 22);
  assert_int_equal(c->after.agents, 40);
  assert_true(c->after.stable && c->after.service_level >= 0.8);
  assert_int_equal(p.n_alarms, 0);
  planner_free(&p);

  /* In the daytime the schedule is not in force. */
  w->now_ms = DAY_NOW;
  plan_checked(w, &p);
  for (size_t i = 0; i < p.n_routes; i++)
    assert_true(route_is_home(&p.routes[i]));
  planner_free(&p);
  free(w);
  scenario_free(&sc);
}

/* 2021-12-23: Xi'an locks down at night. Shaanxi is cut over to Henan;
 * every consolidated province must follow to the backup hub, and nothing
 * may point at Shaanxi. */
static void test_xian_lockdown(void **state) {
  (void)state;
  scenario_t sc;
  load_scenario(&sc);
  char sources[2048];
  pworld_t *w = night_world(&sc, sources, sizeof sources);
  site_of(w, "henan")->staffed = 90;
  add_cutover(w, 9, "shaanxi", "henan", "Xi'an lockdown");
  plan_t p;
  plan_checked(w, &p);

  unsigned moved = 0;
  for (size_t i = 0; i < sc.count; i++) {
    const scenario_site_t *s = &sc.sites[i];
    const plan_route_t *r = planner_route(&p, s->slug);
    for (unsigned k = 0; k < r->n_route; k++)
      assert_string_not_equal(r->route[k].site, "shaanxi");
    if (!s->night_consolidated) continue;
    moved++;
    assert_route(&p, s->slug, "henan:1000");
    assert_int_equal(r->kind, RULE_SCHEDULE);
    assert_true(inbound_has(&p, "henan", s->slug));
  }
  assert_int_equal(moved, 22);
  assert_route(&p, "shaanxi", "henan:1000");
  assert_int_equal(planner_route(&p, "shaanxi")->kind, RULE_CUTOVER);
  assert_int_equal(planner_route(&p, "shaanxi")->revert_at_ms, 0);
  assert_int_equal(planner_route(&p, "shaanxi")->n_inbound, 0);
  assert_int_equal(planner_route(&p, "henan")->n_inbound, 23);
  assert_true(inbound_has(&p, "henan", "shaanxi"));
  assert_int_equal(p.n_alarms, 0);

  const plan_capacity_t *c = find_capacity(&p, "henan");
  assert_non_null(c);
  assert_false(c->refused);
  assert_true(c->after.stable && c->after.service_level >= 0.8);
  assert_true(c->after.traffic_erl > c->before.traffic_erl);
  assert_true(c->agents_needed <= 90);
  assert_null(find_capacity(&p, "shaanxi"));
  assert_int_equal(p.n_capacity, 1);
  planner_free(&p);

  /* Henan with half its night shift cannot take 23 provinces: the
   * cutover is decided first and fits, some of the schedule's sources stay
   * home with capacity alarms that say how many agents Henan would need. */
  site_of(w, "henan")->staffed = scenario_find(&sc, "henan")->agents_night / 2;
  plan_checked(w, &p);
  assert_route(&p, "shaanxi", "henan:1000");
  unsigned refused = 0;
  for (size_t i = 0; i < sc.count; i++) {
    const scenario_site_t *s = &sc.sites[i];
    if (!s->night_consolidated || !route_is_home(planner_route(&p, s->slug))) continue;
    const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_CAPACITY, s->slug);
    assert_non_null(a);
    assert_non_null(strstr(a->message, "shaanxi is moved away"));
    assert_non_null(strstr(a->message, "henan would need"));
    refused++;
  }
  assert_true(refused > 0);
  /* One entry for Henan: what it takes, all together, and what it turned
   * down (the prediction with the largest of those as well). */
  const plan_capacity_t *rc = find_capacity(&p, "henan");
  assert_non_null(rc);
  assert_int_equal(p.n_capacity, 1);
  assert_int_equal(rc->n_sources, 23 - refused);
  assert_true(rc->after.stable && rc->after.service_level >= 0.8);
  assert_true(rc->refused);
  assert_int_equal(rc->n_refused, refused);
  assert_true(rc->with_refused.traffic_erl > rc->after.traffic_erl);
  assert_true(rc->with_refused_needed > rc->with_refused.agents);
  planner_free(&p);
  free(w);
  scenario_free(&sc);
}

/* A backup hub for a cutover: shaanxi leaves, hubei goes to the next one;
 * if there is none, hubei stays home and the alarm says why. */
static void test_hub_moved_away(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  add_site(w, "hubei", false, 5, 240, 10);
  add_site(w, "shaanxi", true, 5, 240, 40);
  plan_site_t *henan = add_site(w, "henan", true, 5, 240, 40);
  add_site(w, "sichuan", true, 5, 240, 40);
  /* hubei is decided first, yet shaanxi's later cutover makes it leave. */
  add_cutover(w, 1, "hubei", "shaanxi,henan", "Wuhan lockdown");
  add_cutover(w, 2, "shaanxi", "sichuan", "Xi'an lockdown");
  plan_t p;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "henan:1000");
  assert_route(&p, "shaanxi", "sichuan:1000");
  planner_free(&p);

  henan->online = false;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  assert_route(&p, "shaanxi", "sichuan:1000");
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_NO_HUB, "hubei");
  assert_non_null(a);
  assert_string_equal(
      a->message, "cutover 1: no eligible hub for hubei: shaanxi is moved away, henan is offline");
  planner_free(&p);
  free(w);
}

/* ---- cycles ------------------------------------------------------------- */

static void test_cycles_impossible(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  add_site(w, "shaanxi", true, 5, 240, 40);
  add_site(w, "henan", true, 5, 240, 40);
  add_cutover(w, 1, "shaanxi", "henan", "one");
  add_cutover(w, 2, "henan", "shaanxi", "two");
  plan_t p;
  plan_checked(w, &p);
  /* Only the first decided move happens. */
  assert_route(&p, "shaanxi", "henan:1000");
  assert_home(&p, "henan");
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_NO_HUB, "henan");
  assert_non_null(a);
  assert_int_equal(a->rule_id, 2);
  planner_free(&p);

  /* The order is by id, not by position in the input. */
  w->cutovers[0].id = 5;
  plan_checked(w, &p);
  assert_route(&p, "henan", "shaanxi:1000");
  assert_home(&p, "shaanxi");
  planner_free(&p);

  /* A three-way cycle and a chain under one cutover and a schedule: the
   * invariants (checked by plan_checked) hold whatever moves. */
  pworld_t *c = pworld_new(NIGHT_NOW);
  add_site(c, "a", true, 5, 240, 40);
  add_site(c, "b", true, 5, 240, 40);
  add_site(c, "c", true, 5, 240, 40);
  add_site(c, "d", true, 5, 240, 40);
  add_cutover(c, 1, "a", "b", "x");
  add_cutover(c, 2, "b", "c", "x");
  add_cutover(c, 3, "c", "a", "x");
  add_night(c, 4, "d,a", "a,b,c", "Asia/Shanghai");
  plan_checked(c, &p);
  unsigned senders = 0;
  for (size_t i = 0; i < p.n_routes; i++)
    senders += !route_is_home(&p.routes[i]);
  assert_true(senders >= 1);
  planner_free(&p);
  /* One cutover names both directions. */
  pworld_t *s = pworld_new(DAY_NOW);
  add_site(s, "a", true, 5, 240, 40);
  add_site(s, "b", true, 5, 240, 40);
  add_cutover(s, 1, "a,b", "b,a", "both");
  plan_checked(s, &p);
  assert_route(&p, "a", "b:1000");
  assert_home(&p, "b");
  planner_free(&p);
  free(s);
  free(c);
  free(w);
}

/* ---- schedules follow the calendar -------------------------------------- */

/* Whether `slug` is moved by the schedule at `now`, checked against
 * rules_schedule_window() itself. */
static bool moved_at(pworld_t *w, int64_t now, const char *slug, int64_t *revert) {
  w->now_ms = now;
  plan_t p;
  plan_checked(w, &p);
  const plan_route_t *r = planner_route(&p, slug);
  bool moved = !route_is_home(r);
  *revert = r->revert_at_ms;
  int64_t start = 0, end = 0;
  bool in_force = rules_schedule_window(&w->schedules[0], now, &start, &end);
  assert_int_equal(moved, in_force);
  if (moved) assert_int_equal(*revert, end);
  planner_free(&p);
  return moved;
}

static void test_schedule_calendar(void **state) {
  (void)state;
  pworld_t *w = pworld_new(0);
  add_site(w, "hubei", false, 1, 240, 5);
  add_site(w, "shaanxi", true, 1, 240, 20);
  schedule_t *s = add_night(w, 1, "hubei", "shaanxi", "Asia/Shanghai");
  int64_t rv;

  /* Across midnight in UTC+8. */
  assert_false(moved_at(w, cst_ms(2024, 3, 5, 21, 59), "hubei", &rv));
  assert_true(moved_at(w, cst_ms(2024, 3, 5, 22, 0), "hubei", &rv));
  assert_int_equal(rv, cst_ms(2024, 3, 6, 8, 0));
  assert_true(moved_at(w, cst_ms(2024, 3, 6, 3, 0), "hubei", &rv));
  assert_int_equal(rv, cst_ms(2024, 3, 6, 8, 0));
  assert_true(moved_at(w, cst_ms(2024, 3, 6, 7, 59), "hubei", &rv));
  assert_false(moved_at(w, cst_ms(2024, 3, 6, 8, 0), "hubei", &rv));
  /* 15:00 UTC is 23:00 in China: the zone, not UTC, decides. */
  assert_true(moved_at(w, utc_ms(2024, 3, 5, 15, 0), "hubei", &rv));
  assert_true(moved_at(w, utc_ms(2024, 3, 5, 23, 0), "hubei", &rv)); /* 07:00 in China */
  assert_false(moved_at(w, utc_ms(2024, 3, 6, 1, 0), "hubei", &rv)); /* 09:00 in China */

  /* An exception date stops the window that starts that evening, not the
   * one that started the evening before. */
  s->exceptions[s->n_exceptions++] = 20240305;
  assert_true(moved_at(w, cst_ms(2024, 3, 5, 3, 0), "hubei", &rv));
  assert_false(moved_at(w, cst_ms(2024, 3, 5, 23, 0), "hubei", &rv));
  assert_false(moved_at(w, cst_ms(2024, 3, 6, 3, 0), "hubei", &rv));
  assert_true(moved_at(w, cst_ms(2024, 3, 6, 23, 0), "hubei", &rv));
  s->n_exceptions = 0;

  /* Weekdays only: Friday night runs into Saturday morning, Saturday
   * night does not start. */
  s->days = 0x1f;
  assert_true(moved_at(w, cst_ms(2024, 3, 8, 23, 0), "hubei", &rv));
  assert_true(moved_at(w, cst_ms(2024, 3, 9, 3, 0), "hubei", &rv));
  assert_false(moved_at(w, cst_ms(2024, 3, 9, 23, 0), "hubei", &rv));
  assert_false(moved_at(w, cst_ms(2024, 3, 10, 3, 0), "hubei", &rv));
  s->days = 0x7f;

  /* New York's clocks spring forward on 2024-03-10: the window that
   * starts at 22:00 EST (03:00 UTC) ends at 08:00 EDT (12:00 UTC). */
  snprintf(s->tz, sizeof s->tz, "America/New_York");
  assert_true(moved_at(w, utc_ms(2024, 3, 10, 3, 0), "hubei", &rv));
  assert_int_equal(rv, utc_ms(2024, 3, 10, 12, 0));
  assert_true(moved_at(w, utc_ms(2024, 3, 10, 11, 59), "hubei", &rv));
  assert_false(moved_at(w, utc_ms(2024, 3, 10, 12, 0), "hubei", &rv));
  assert_false(moved_at(w, utc_ms(2024, 3, 10, 2, 59), "hubei", &rv));

  /* A disabled schedule never moves anything. */
  s->enabled = false;
  assert_false(moved_at(w, utc_ms(2024, 3, 10, 3, 0), "hubei", &rv));
  free(w);
}

/* ---- capacity ------------------------------------------------------------ */

static void test_capacity_refusal_and_force(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  add_site(w, "hubei", false, 30, 240, 35);
  add_site(w, "shaanxi", true, 8, 240, 12);
  add_site(w, "henan", true, 5, 240, 10);
  add_cutover(w, 1, "hubei", "shaanxi,henan", "Wuhan lockdown");
  plan_t p;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_CAPACITY, "hubei");
  assert_non_null(a);
  assert_int_equal(a->rule_id, 1);
  unsigned need_sx = erlang_agents_needed(38, 240, 20, 0.8);
  unsigned need_hn = erlang_agents_needed(35, 240, 20, 0.8);
  char want[256];
  snprintf(want, sizeof want,
           "cutover 1: no hub has the capacity for hubei: shaanxi would need %u agents (has 12), "
           "henan would need %u agents (has 10)",
           need_sx, need_hn);
  assert_string_equal(a->message, want);
  /* Each hub's verdict, as the alarm's message gives it. */
  assert_int_equal(a->n_hubs, 2);
  assert_string_equal(a->hubs[0].hub, "shaanxi");
  assert_true(a->hubs[0].capacity);
  assert_int_equal(a->hubs[0].agents_needed, need_sx);
  assert_int_equal(a->hubs[0].agents, 12);
  snprintf(want, sizeof want, "would need %u agents (has 12)", need_sx);
  assert_string_equal(a->hubs[0].why, want);
  assert_string_equal(a->hubs[1].hub, "henan");
  assert_int_equal(a->hubs[1].agents_needed, need_hn);
  /* Shaanxi takes nothing: its load stays; the refused load is beside it. */
  const plan_capacity_t *c = find_capacity(&p, "shaanxi");
  assert_non_null(c);
  assert_true(c->refused);
  assert_int_equal(c->n_sources, 0);
  assert_true(fabs(c->before.traffic_erl - 8) < 1e-9);
  assert_true(fabs(c->after.traffic_erl - 8) < 1e-9);
  assert_string_equal(c->refused_sources, "hubei");
  assert_string_equal(c->largest_refused, "hubei");
  assert_true(fabs(c->with_refused.traffic_erl - 38) < 1e-9);
  assert_false(c->with_refused.stable);
  assert_int_equal(c->with_refused_needed, need_sx);
  assert_true(find_capacity(&p, "henan")->refused);
  planner_free(&p);

  /* The second hub has the agents: the first records its refusal. */
  site_of(w, "henan")->staffed = 60;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "henan:1000");
  assert_true(find_capacity(&p, "shaanxi")->refused);
  c = find_capacity(&p, "henan");
  assert_non_null(c);
  assert_false(c->refused);
  assert_true(c->after.stable && c->after.service_level >= 0.8);
  assert_int_equal(p.n_alarms, 0);
  planner_free(&p);

  /* Forced: the first hub takes it, and the plan still shows the damage. */
  site_of(w, "henan")->staffed = 10;
  w->cutovers[0].force = true;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "shaanxi:1000");
  c = find_capacity(&p, "shaanxi");
  assert_non_null(c);
  assert_false(c->refused);
  assert_true(c->forced); /* the prediction the force overrides */
  assert_false(c->after.stable);
  assert_int_equal(c->agents_needed, need_sx);
  assert_int_equal(p.n_capacity, 1);
  assert_null(find_alarm(&p, PLAN_ALARM_CAPACITY, "hubei"));
  planner_free(&p);
  free(w);
}

/* After a capacity withdrawal a source re-enters only at the target plus
 * enter_margin; a hub that meets the target but not that was refused with
 * the agents the target needs: the demo's alarm read "henan would need 30
 * agents (has 30)", a refusal that contradicts itself. The agents are now
 * counted at the floor the hub was held to, and the words say which. */
static void test_refusal_counts_agents_at_the_raised_floor(void **state) {
  (void)state;
  double erl = 0;
  unsigned n80 = 0, n85 = 0;
  for (double x = 20.0; x < 40.0 && erl == 0; x += 0.05) {
    n80 = erlang_agents_needed(x, 240, 20, 0.80);
    n85 = erlang_agents_needed(x, 240, 20, 0.85);
    if (n85 > n80) erl = x;
  }
  assert_true(erl > 0);
  pworld_t *w = pworld_new(DAY_NOW);
  add_site(w, "hubei", false, erl - 5, 240, 35);
  add_site(w, "shaanxi", true, 5, 240, n80);
  add_cutover(w, 1, "hubei", "shaanxi", "Wuhan lockdown");
  plan_input_t in = pworld_input(w);
  in.enter_margin = 0.05;
  in.reentry_s = 60;
  in.real_ms = 10000000;
  planner_hold_t holds[W_SITES];
  memset(holds, 0, sizeof holds);
  holds[index_of(&in, "hubei")].withdrawn_ms = in.real_ms - 120000; /* its wait is over */
  holds[index_of(&in, "hubei")].withdrawals = 1;
  in.holds = holds;
  plan_t p;
  assert_int_equal(planner_run(&in, &p), 0);
  assert_home(&p, "hubei");
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_CAPACITY, "hubei");
  assert_non_null(a);
  char want[160];
  snprintf(want, sizeof want,
           "would need %u agents to re-enter at SL 85%% after a capacity withdrawal (has %u)", n85,
           n80);
  assert_string_equal(a->hubs[0].why, want);
  assert_int_equal(a->hubs[0].agents_needed, n85);
  assert_true(a->hubs[0].agents_needed > a->hubs[0].agents);
  planner_free(&p);
  /* Never withdrawn: the target alone, which it meets. */
  in.holds = NULL;
  assert_int_equal(planner_run(&in, &p), 0);
  assert_route(&p, "hubei", "shaanxi:1000");
  planner_free(&p);
  free(w);
}

/* Calls other sites' proxies measured sending to a hub that no route sends
 * there are load at the hub: its capacity check counts them (before and
 * after), so a source it had room for is refused; its own demand is not
 * changed by them. */
static void test_unrouted_inflow_counts_at_the_hub(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  add_site(w, "hubei", false, 30, 240, 35);
  add_site(w, "henan", true, 5, 240, 60);
  add_cutover(w, 1, "hubei", "henan", "Wuhan lockdown");
  plan_t p;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "henan:1000");
  assert_true(fabs(find_capacity(&p, "henan")->after.traffic_erl - 35) < 1e-9);
  planner_free(&p);

  site_of(w, "henan")->inflow_unrouted_cps = 20.0 / 240; /* 20 Erlangs at its AHT */
  double own = site_of(w, "henan")->demand_cps;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  assert_non_null(find_alarm(&p, PLAN_ALARM_CAPACITY, "hubei"));
  const plan_capacity_t *c = find_capacity(&p, "henan");
  assert_non_null(c);
  assert_true(c->refused);
  assert_true(fabs(c->before.traffic_erl - 25) < 1e-9);
  assert_true(fabs(c->with_refused.traffic_erl - 55) < 1e-9);
  assert_true(site_of(w, "henan")->demand_cps == own);
  planner_free(&p);
  free(w);
}

/* Load accumulates at a hub: the second source is checked against the
 * hub's load including the first. */
static void test_capacity_is_cumulative(void **state) {
  (void)state;
  pworld_t *w = pworld_new(NIGHT_NOW);
  add_site(w, "a", false, 6, 240, 10);
  add_site(w, "b", false, 6, 240, 10);
  add_site(w, "hub", true, 2, 240, 15);
  add_site(w, "spare", true, 0, 240, 10);
  add_night(w, 1, "a,b", "hub,spare", "Asia/Shanghai");
  erlang_prediction_t one, two;
  erlang_predict(15, 8, 240, 20, &one);
  erlang_predict(15, 14, 240, 20, &two);
  assert_true(one.stable && one.service_level >= 0.8); /* the premise */
  assert_true(!two.stable || two.service_level < 0.8);
  plan_t p;
  plan_checked(w, &p);
  assert_route(&p, "a", "hub:1000");
  assert_route(&p, "b", "spare:1000");
  const plan_capacity_t *c = find_capacity(&p, "hub");
  assert_non_null(c);
  assert_true(fabs(c->after.traffic_erl - 8) < 1e-9);
  assert_true(c->refused);
  assert_string_equal(c->refused_sources, "b");
  assert_true(fabs(c->with_refused.traffic_erl - 14) < 1e-9);
  planner_free(&p);

  /* Forecast demand counts for schedules. */
  site_of(w, "a")->forecast_cps = 1.0 / 240; /* one Erlang */
  site_of(w, "b")->forecast_cps = 1.0 / 240;
  plan_checked(w, &p);
  assert_route(&p, "a", "hub:1000");
  assert_route(&p, "b", "hub:1000");
  c = find_capacity(&p, "hub");
  assert_false(c->refused);
  assert_true(fabs(c->after.traffic_erl - 4) < 1e-9);
  assert_int_equal(p.n_capacity, 1);
  planner_free(&p);
  free(w);
}

/* nircctl plan guangdong,hubei --to shaanxi: Shaanxi takes one and turns
 * the other down. The plan has one entry for Shaanxi, with both: the
 * prediction for what it takes, and beside it the one with the refused
 * source as well. Three sources to two hubs likewise give one entry per
 * hub, however the sources are spread. */
static void test_one_capacity_entry_per_hub(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  add_site(w, "guangdong", false, 30, 240, 60);
  add_site(w, "hubei", false, 6, 240, 20);
  add_site(w, "shaanxi", true, 10, 240, 30);
  add_cutover(w, 3, "guangdong,hubei", "shaanxi", "drill");
  plan_t p;
  plan_checked(w, &p);
  assert_home(&p, "guangdong");
  assert_route(&p, "hubei", "shaanxi:1000");
  assert_int_equal(p.n_capacity, 1);
  const plan_capacity_t *c = find_capacity(&p, "shaanxi");
  assert_int_equal(c->n_sources, 1);
  assert_true(fabs(c->before.traffic_erl - 10) < 1e-9);
  assert_true(fabs(c->after.traffic_erl - 16) < 1e-9);
  assert_true(c->after.stable && c->after.service_level >= 0.8);
  assert_int_equal(c->agents_needed, erlang_agents_needed(16, 240, 20, 0.8));
  assert_true(c->refused);
  assert_int_equal(c->n_refused, 1);
  assert_string_equal(c->refused_sources, "guangdong");
  assert_true(fabs(c->with_refused.traffic_erl - 46) < 1e-9);
  assert_int_equal(c->with_refused_needed, erlang_agents_needed(46, 240, 20, 0.8));
  assert_false(c->forced);
  planner_free(&p);

  /* Three sources, two hubs: each hub once, each with all it takes. */
  pworld_t *v = pworld_new(DAY_NOW);
  add_site(v, "jiangsu", false, 12, 240, 40);
  add_site(v, "zhejiang", false, 10, 240, 40);
  add_site(v, "shandong", false, 40, 240, 60);
  add_site(v, "shaanxi", true, 5, 240, 26);
  add_site(v, "henan", true, 5, 240, 22);
  add_cutover(v, 4, "jiangsu,zhejiang,shandong", "shaanxi,henan", "drill");
  plan_checked(v, &p);
  assert_route(&p, "jiangsu", "shaanxi:1000");
  assert_route(&p, "zhejiang", "henan:1000");
  assert_home(&p, "shandong");
  assert_int_equal(p.n_capacity, 2);
  c = find_capacity(&p, "shaanxi");
  assert_true(fabs(c->after.traffic_erl - 17) < 1e-9);
  assert_string_equal(c->refused_sources, "zhejiang, shandong");
  assert_string_equal(c->largest_refused, "shandong");
  assert_true(fabs(c->with_refused.traffic_erl - 57) < 1e-9);
  c = find_capacity(&p, "henan");
  assert_true(fabs(c->after.traffic_erl - 15) < 1e-9);
  assert_string_equal(c->refused_sources, "shandong");
  /* The source nobody takes has one alarm naming every hub's need. */
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_CAPACITY, "shandong");
  assert_non_null(a);
  assert_int_equal(a->n_hubs, 2);
  assert_int_equal(a->hubs[0].agents_needed, erlang_agents_needed(57, 240, 20, 0.8));
  assert_int_equal(a->hubs[1].agents_needed, erlang_agents_needed(55, 240, 20, 0.8));
  assert_null(find_alarm(&p, PLAN_ALARM_CAPACITY, "zhejiang"));
  planner_free(&p);
  free(v);
  free(w);
}

/* A rule being tried (a plan, a dry run) has no id yet: its texts name
 * none, and it is decided after the real rules, as it will be once made. */
static void test_draft_rule_has_no_id(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  add_site(w, "hubei", false, 6, 240, 20);
  add_site(w, "guangdong", false, 6, 240, 20);
  add_site(w, "xizang", false, 30, 240, 40);
  add_site(w, "shaanxi", true, 10, 240, 40);
  add_cutover(w, PLAN_DRAFT_ID, "guangdong,xizang", "shaanxi", "drill");
  add_cutover(w, 9, "hubei", "shaanxi", "Wuhan lockdown");
  plan_t p;
  plan_checked(w, &p);
  /* Cutover 9 comes first: Shaanxi has room for one of the others. */
  assert_route(&p, "hubei", "shaanxi:1000");
  assert_route(&p, "guangdong", "shaanxi:1000");
  assert_home(&p, "xizang");
  const plan_route_t *r = planner_route(&p, "guangdong");
  assert_string_equal(r->reason, "cutover: drill");
  assert_true(r->rule_id == PLAN_DRAFT_ID);
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_CAPACITY, "xizang");
  assert_non_null(a);
  assert_non_null(strstr(a->message, "cutover: no hub has the capacity for xizang: shaanxi"));
  for (size_t i = 0; i < p.n_alarms; i++)
    assert_null(strstr(p.alarms[i].message, "18446744073709551615"));
  planner_free(&p);
  /* Without a reason (nircctl plan gives none): just "cutover". */
  w->cutovers[0].reason[0] = '\0';
  plan_checked(w, &p);
  assert_string_equal(planner_route(&p, "guangdong")->reason, "cutover");
  planner_free(&p);
  /* Forced, the move that fits is not marked; the one that does not is. */
  w->cutovers[0].force = true;
  w->n_cutovers = 1;
  site_of(w, "xizang")->demand_cps = 1.0 / 240;
  plan_checked(w, &p);
  assert_false(find_capacity(&p, "shaanxi")->forced);
  planner_free(&p);
  site_of(w, "xizang")->demand_cps = 30.0 / 240;
  plan_checked(w, &p);
  assert_true(find_capacity(&p, "shaanxi")->forced);
  assert_int_equal(find_capacity(&p, "shaanxi")->n_sources, 2);
  planner_free(&p);
  free(w);
}

/* ---- overflow ------------------------------------------------------------ */

/* The share the planner must pick: the smallest multiple of 50 up to the
 * cap that lets the source meet 80% in 20 s with what it keeps. */
static uint32_t expected_share(double erl, double aht, unsigned agents, uint32_t cap) {
  for (uint32_t p = 50; p < cap; p += 50) {
    erlang_prediction_t pr;
    erlang_predict(agents, erl * (1000 - p) / 1000.0, aht, 20, &pr);
    if (pr.stable && pr.service_level >= 0.8) return p;
  }
  return cap;
}

typedef struct {
  int64_t dt_s;  /* seconds after the previous step */
  double wait_s; /* the source's smoothed longest wait */
  bool moved;    /* expected route */
} ovf_step_t;

static void test_overflow_hysteresis(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  plan_site_t *src = add_site(w, "hubei", false, 19, 240, 20);
  add_site(w, "henan", true, 10, 240, 50);
  add_overflow(w, 2, "hubei", "henan");
  uint32_t share = expected_share(19, 240, 20, 300);
  assert_true(share >= 50 && share <= 300);
  char moved_route[64];
  snprintf(moved_route, sizeof moved_route, "henan:%u,hubei:%u", share, 1000 - share);

  static const ovf_step_t steps[] = {
      {0, 30, false},  {10, 59, false}, {10, 61, true},  /* engages at the trigger */
      {10, 59, true},  {10, 61, true},  {10, 55, true},  /* hovering: no flapping */
      {10, 15, true},  {10, 5, true},                    /* released metric, hold not over */
      {260, 25, true},                                   /* hold over, wait above release */
      {10, 20, false},                                   /* both: released */
      {10, 59, false}, {10, 45, false}, {10, 59, false}, /* below the trigger: stays home */
      {10, 60, true},                                    /* engages again */
      {10, 10, true},
  };
  int64_t now = w->now_ms;
  bool was_engaged = false;
  int64_t engaged_at = 0;
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    now += steps[i].dt_s * 1000;
    w->now_ms = now;
    src->wait_s = steps[i].wait_s;
    plan_t p;
    plan_checked(w, &p);
    if (steps[i].moved)
      assert_route(&p, "hubei", moved_route);
    else
      assert_home(&p, "hubei");
    const planner_overflow_state_t *st = &p.overflow_state[0];
    assert_int_equal(st->rule_id, 2);
    assert_int_equal(st->engaged, steps[i].moved);
    assert_int_equal(st->permille, steps[i].moved ? share : 0);
    if (st->engaged && !was_engaged) engaged_at = now;
    if (st->engaged) assert_int_equal(st->since_ms, engaged_at);
    if (!st->engaged && was_engaged) assert_int_equal(st->since_ms, now);
    was_engaged = st->engaged;
    if (st->engaged) {
      assert_true(inbound_has(&p, "henan", "hubei"));
      assert_non_null(find_capacity(&p, "henan"));
    }
    planner_free(&p);
  }
  free(w);
}

/* An overflow spills at the peak: a spill that starts or grows must fit
 * the hub on the load forecast for the next half hour too, not on the
 * live load alone. A spill that keeps its share is not withdrawn on a
 * forecast (that would flap), and a growth that does not fit ahead keeps
 * the share already moved. A hub with no forecast is checked live, and
 * its capacity row says the rise could not be checked. */
static void test_overflow_checked_on_the_load_ahead(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  plan_site_t *src = add_site(w, "hubei", false, 19, 240, 20);
  plan_site_t *hub = add_site(w, "henan", true, 10, 240, 50);
  add_overflow(w, 2, "hubei", "henan");
  src->ahead_known = true; /* hubei's forecast is not above its live load */
  src->ahead_cps = src->demand_cps;
  src->ahead_aht_s = 240;
  hub->ahead_known = true; /* henan: 45 Erl in the next half hour */
  hub->ahead_cps = 45.0 / 240;
  hub->ahead_aht_s = 240;
  src->wait_s = 61;
  plan_t p;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  assert_true(p.overflow_state[0].engaged);
  assert_int_equal(p.overflow_state[0].permille, 0);
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_CAPACITY, "hubei");
  assert_non_null(a);
  assert_non_null(strstr(a->message, "for the load forecast for the next half hour"));
  assert_true(a->n_hubs == 1 && a->hubs[0].capacity);
  planner_free(&p);

  /* The forecast falls back to the live load: it spills, checked live. */
  hub->ahead_cps = hub->demand_cps;
  plan_checked(w, &p);
  uint32_t share = expected_share(19, 240, 20, 300);
  assert_int_equal(p.overflow_state[0].permille, share);
  const plan_capacity_t *pc = find_capacity(&p, "henan");
  assert_non_null(pc);
  assert_int_equal(pc->load_on.basis, PLAN_LOAD_LIVE);
  assert_non_null(strstr(pc->load_on.note, "not higher"));
  planner_free(&p);

  /* The forecast rises again: the spill keeps its share (no withdrawal
   * on a forecast alone) and grows no further when hubei's load rises. */
  hub->ahead_cps = 45.0 / 240;
  src->demand_cps = src->ahead_cps = 25.0 / 240;
  plan_checked(w, &p);
  assert_true(p.overflow_state[0].engaged);
  assert_int_equal(p.overflow_state[0].permille, share);
  assert_int_equal(planner_route(&p, "hubei")->route[0].permille, share);
  assert_null(find_alarm(&p, PLAN_ALARM_CAPACITY, "hubei"));
  planner_free(&p);

  /* The forecast falls: it grows to the cap. */
  hub->ahead_cps = hub->demand_cps;
  plan_checked(w, &p);
  assert_int_equal(p.overflow_state[0].permille, 300);
  planner_free(&p);

  /* No forecast at henan: a new spill is checked live and said so. */
  w->have_state = false;
  hub->ahead_known = false;
  plan_checked(w, &p);
  assert_int_equal(p.overflow_state[0].permille, 300);
  pc = find_capacity(&p, "henan");
  assert_int_equal(pc->load_on.basis, PLAN_LOAD_UNCHECKED);
  assert_non_null(strstr(pc->load_on.note, "henan: no forecast"));
  assert_true(pc->load_on.forecast_erl < 0);
  planner_free(&p);
  free(w);
}

/* A trigger figure the source no longer measures (its collect command
 * stopped giving the wait) keeps an old smoothed value: the rule must not
 * engage on it, nor release, nor grow on agents nobody measured. Found
 * from outside: an engaged rule stayed engaged and grew to its cap on a
 * queue no longer measured. An alarm says the rule is blind. */
static void test_overflow_does_not_act_on_unmeasured_figures(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  plan_site_t *src = add_site(w, "hubei", false, 19, 240, 20);
  add_site(w, "henan", true, 10, 240, 50);
  add_overflow(w, 2, "hubei", "henan");
  /* Not measured: an old wait above the trigger engages nothing. */
  src->wait_s = 90;
  src->wait_unknown = true;
  plan_t p;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  assert_false(p.overflow_state[0].engaged);
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_NO_HUB, "hubei");
  assert_non_null(a);
  assert_non_null(strstr(a->message, "does not measure its longest wait now"));
  planner_free(&p);
  /* Measured: it engages. */
  src->wait_unknown = false;
  plan_checked(w, &p);
  assert_true(p.overflow_state[0].engaged);
  uint32_t share = p.overflow_state[0].permille;
  assert_true(share > 0);
  planner_free(&p);
  /* Unmeasured again, long past the hold with a wait that reads as
   * released: it holds its spill, and does not grow when the source's
   * agents are not known either. */
  src->wait_s = 5;
  src->wait_unknown = true;
  src->cap_source = CAPACITY_UNKNOWN;
  src->staffed = 0;
  w->now_ms += 3600 * 1000;
  plan_checked(w, &p);
  assert_true(p.overflow_state[0].engaged);
  assert_int_equal(p.overflow_state[0].permille, share);
  assert_non_null(strstr(find_alarm(&p, PLAN_ALARM_NO_HUB, "hubei")->message, "holds its spill"));
  planner_free(&p);
  free(w);
}

static void test_overflow_triggers_and_hubs(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  plan_site_t *src = add_site(w, "hubei", false, 19, 240, 20);
  add_site(w, "shaanxi", true, 38, 240, 40);
  add_site(w, "henan", true, 10, 240, 50);
  overflow_rule_t *o = add_overflow(w, 2, "hubei", "shaanxi,henan");
  /* Queue trigger only. */
  o->trigger_wait_s = 0;
  o->release_wait_s = 0;
  o->trigger_queue = 10;
  o->release_queue = 2;
  src->queue = 12;
  src->wait_s = 40;
  plan_t p;
  plan_checked(w, &p);
  /* shaanxi is nearly full: its predicted ASA is not 10 s better than a
   * 40 s wait (or it refuses outright), so henan takes the overflow. */
  const plan_route_t *r = planner_route(&p, "hubei");
  assert_int_equal(r->kind, RULE_OVERFLOW);
  assert_string_equal(r->route[0].site, "henan");
  planner_free(&p);

  /* A hub that is no faster than the source's wait by the margin is not
   * used to start a spill. */
  w->have_state = false;
  src->wait_s = 5;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  assert_true(p.overflow_state[0].engaged);
  assert_int_equal(p.overflow_state[0].permille, 0);
  /* shaanxi refuses for capacity, henan is not fast enough. */
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_CAPACITY, "hubei");
  assert_non_null(a);
  assert_non_null(strstr(a->message, "henan would answer in"));
  planner_free(&p);

  /* Service-level trigger only. */
  w->have_state = false;
  src->wait_s = 40;
  o->trigger_queue = 0;
  o->release_queue = 0;
  o->trigger_sl = 0.7;
  o->release_sl = 0.85;
  src->sl = 0.72;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  src->sl = 0.65;
  planner_free(&p);
  plan_checked(w, &p);
  assert_false(route_is_home(planner_route(&p, "hubei")));
  planner_free(&p);

  /* The share never exceeds the cap, even when the source needs more. */
  w->have_state = false;
  o->share_cap_permille = 120;
  src->demand_cps = 40.0 / 240;
  site_of(w, "henan")->staffed = 200;
  plan_checked(w, &p);
  r = planner_route(&p, "hubei");
  assert_int_equal(r->route[0].permille, 120);
  planner_free(&p);

  /* A stale source's metrics are not trusted: the state is frozen. */
  src->online = false;
  src->sl = 0.99;
  w->now_ms += 3600 * 1000;
  plan_checked(w, &p);
  assert_true(p.overflow_state[0].engaged);
  planner_free(&p);
  free(w);
}

/* No chains: a site receiving scheduled traffic is never moved by its own
 * overflow rule, and a site spilling by overflow receives nothing. */
static void test_overflow_no_chains(void **state) {
  (void)state;
  pworld_t *w = pworld_new(NIGHT_NOW);
  add_site(w, "gansu", false, 1, 240, 5);
  plan_site_t *sx = add_site(w, "shaanxi", true, 15, 240, 30);
  add_site(w, "henan", true, 5, 240, 60);
  add_night(w, 1, "gansu", "shaanxi", "Asia/Shanghai");
  add_overflow(w, 2, "shaanxi", "henan");
  sx->wait_s = 90;
  plan_t p;
  plan_checked(w, &p);
  assert_route(&p, "gansu", "shaanxi:1000");
  assert_home(&p, "shaanxi");
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_NO_HUB, "shaanxi");
  assert_non_null(a);
  assert_non_null(strstr(a->message, "receives traffic from gansu"));
  planner_free(&p);

  /* Two engaged overflow sources naming each other: only one spills. */
  pworld_t *x = pworld_new(DAY_NOW);
  plan_site_t *a1 = add_site(x, "a", true, 19, 240, 20);
  plan_site_t *b1 = add_site(x, "b", true, 19, 240, 20);
  add_site(x, "c", true, 5, 240, 80);
  add_overflow(x, 1, "a", "b,c");
  add_overflow(x, 2, "b", "a,c");
  a1->wait_s = b1->wait_s = 90;
  plan_checked(x, &p);
  assert_string_equal(planner_route(&p, "a")->route[0].site, "c");
  assert_string_equal(planner_route(&p, "b")->route[0].site, "c");
  assert_int_equal(planner_route(&p, "c")->n_inbound, 2);
  planner_free(&p);
  free(x);
  free(w);
}

/* ---- determinism --------------------------------------------------------- */

static void test_determinism(void **state) {
  (void)state;
  scenario_t sc;
  load_scenario(&sc);
  char sources[2048];
  pworld_t *w = night_world(&sc, sources, sizeof sources);
  add_cutover(w, 9, "shaanxi", "henan", "Xi'an lockdown");
  add_cutover(w, 4, "hubei", "shaanxi,sichuan", "Wuhan lockdown");
  add_overflow(w, 3, "guangdong", "sichuan,henan");
  site_of(w, "guangdong")->wait_s = 120;
  plan_input_t in = pworld_input(w);
  plan_t first;
  assert_int_equal(planner_run(&in, &first), 0);
  check_invariants(&in, &first);
  assert_route(&first, "hubei", "sichuan:1000");
  for (int i = 0; i < 20; i++) {
    plan_t p;
    assert_int_equal(planner_run(&in, &p), 0);
    assert_same_plan(&first, &p, w->n_overflows);
    planner_free(&p);
  }
  planner_free(&first);
  free(w);
  scenario_free(&sc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_rules_everyone_home),
      cmocka_unit_test(test_wuhan_cutover),
      cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_eligibility),
      cmocka_unit_test(test_unknown_sites),
      cmocka_unit_test(test_night_consolidation),
      cmocka_unit_test(test_xian_lockdown),
      cmocka_unit_test(test_hub_moved_away),
      cmocka_unit_test(test_cycles_impossible),
      cmocka_unit_test(test_schedule_calendar),
      cmocka_unit_test(test_capacity_refusal_and_force),
      cmocka_unit_test(test_refusal_counts_agents_at_the_raised_floor),
      cmocka_unit_test(test_unrouted_inflow_counts_at_the_hub),
      cmocka_unit_test(test_capacity_is_cumulative),
      cmocka_unit_test(test_one_capacity_entry_per_hub),
      cmocka_unit_test(test_draft_rule_has_no_id),
      cmocka_unit_test(test_overflow_hysteresis),
      cmocka_unit_test(test_overflow_checked_on_the_load_ahead),
      cmocka_unit_test(test_overflow_does_not_act_on_unmeasured_figures),
      cmocka_unit_test(test_overflow_triggers_and_hubs),
      cmocka_unit_test(test_overflow_no_chains),
      cmocka_unit_test(test_determinism),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
