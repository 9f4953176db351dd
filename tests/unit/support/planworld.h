/* planworld: the planner's test world (tests/unit/test_planner.c): a
 * snapshot of sites and rules built by hand or from the 31-province
 * scenario, planned through plan_checked(), which asserts the invariants
 * the rest of NIRC relies on (no site both sends and receives, every route
 * sums to 1000, routes point only at online, non-excluded hubs that stay
 * home, hubs list exactly their senders) and that planning the same input
 * twice gives the same plan. Not the engine's world (support/world.h). */
#ifndef NIRC_TEST_PLANWORLD_H
#define NIRC_TEST_PLANWORLD_H

#include "erlang.h"
#include "planner.h"
#include "rules.h"
#include "scenario.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define W_SITES     40
#define W_CUTOVERS  8
#define W_SCHEDULES 4
#define W_OVERFLOWS 4

/* A snapshot and its rules; heap-allocated (the slug lists are large). */
typedef struct {
  plan_site_t sites[W_SITES];
  size_t n_sites;
  cutover_t cutovers[W_CUTOVERS];
  size_t n_cutovers;
  schedule_t schedules[W_SCHEDULES];
  size_t n_schedules;
  overflow_rule_t overflows[W_OVERFLOWS];
  size_t n_overflows;
  planner_overflow_state_t state[W_OVERFLOWS]; /* carried from run to run */
  bool have_state;
  int64_t now_ms;
} pworld_t;

/* 23:30 in China on Tuesday 2024-03-05: the night schedule is in force. */
#define NIGHT_NOW cst_ms(2024, 3, 5, 23, 30)
/* 10:00 the same day: it is not. */
#define DAY_NOW cst_ms(2024, 3, 5, 10, 0)

/* An empty world at now_ms (free() it). */
pworld_t *pworld_new(int64_t now_ms);

/* Unix ms of a UTC calendar time. */
int64_t utc_ms(int y, int mo, int d, int h, int mi);

/* Unix ms of a wall-clock time in China (UTC+8, no daylight saving). */
int64_t cst_ms(int y, int mo, int d, int h, int mi);

/* Appends "a,b,c" to the list. */
void list_add(slug_list_t *l, const char *csv);

/* An online site answering `erl` Erlangs of its own with `staffed`
 * agents, nothing queued. */
plan_site_t *add_site(pworld_t *w, const char *slug, bool is_hub, double erl, double aht,
                      unsigned staffed);

/* The site called slug (fails the test if there is none). */
plan_site_t *site_of(pworld_t *w, const char *slug);

cutover_t *add_cutover(pworld_t *w, uint64_t id, const char *sources, const char *hubs,
                       const char *reason);

/* Daily 22:00-08:00 in `tz`. */
schedule_t *add_night(pworld_t *w, uint64_t id, const char *sources, const char *hubs,
                      const char *tz);

/* Wait-triggered overflow: engages at 60 s, releases at 20 s after 300 s. */
overflow_rule_t *add_overflow(pworld_t *w, uint64_t id, const char *source, const char *hubs);

/* The planner's input for the world (its sites, rules, overflow state). */
plan_input_t pworld_input(const pworld_t *w);

/* Index of slug in the input, or SIZE_MAX. */
size_t index_of(const plan_input_t *in, const char *slug);

bool route_is_home(const plan_route_t *r);

/* Fails the test when the plan breaks an invariant (see the top). */
void check_invariants(const plan_input_t *in, const plan_t *p);

/* Fails the test unless the two are the same, field for field. */
void assert_same_prediction(const erlang_prediction_t *a, const erlang_prediction_t *b);
void assert_same_plan(const plan_t *a, const plan_t *b, size_t n_overflows);

/* Plans the world, checks the invariants and determinism, and keeps the
 * overflow state for the next run. */
void plan_checked(pworld_t *w, plan_t *p);

/* "henan:700,hubei:300" */
const char *route_str(const plan_t *p, const char *slug);

/* Fails the test unless slug routes as `want` says, or is home. */
void assert_route(const plan_t *p, const char *slug, const char *want);
void assert_home(const plan_t *p, const char *slug);

/* The first alarm of that kind about site, or NULL. */
const plan_alarm_t *find_alarm(const plan_t *p, plan_alarm_kind_t kind, const char *site);

/* The capacity entry of hub (check_invariants: there is at most one), or
 * NULL. */
const plan_capacity_t *find_capacity(const plan_t *p, const char *hub);

/* Whether hub lists src among its senders. */
bool inbound_has(const plan_t *p, const char *hub, const char *src);

/* scenario/provinces.json from NIRC_SOURCE_DIR (CTest sets it). */
void load_scenario(scenario_t *sc);

/* The 31 provinces at 23:30, each with its night demand and night staff,
 * the primary hub with its consolidated night shift, and the night
 * schedule that moves the 22 consolidated provinces. */
pworld_t *night_world(const scenario_t *sc, char *sources, size_t len);

#endif
