/* Unit tests of the engine's demand forecast (engine_forecast.c): the
 * history handed over by engine_set_history is preferred, a failed reload
 * keeps it and says its age, an exception date does not use ordinary
 * days, and every answer says its source. No loop, no database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "support/world.h"
#include "util.h"

/* WORLD_T0_MS is Thursday 2020-01-23 12:00 in Asia/Shanghai: slot 24. */
#define SLOT 24

static engine_t *new_engine(world_t *w) {
  engine_opts_t o = world_opts(false);
  nirc_strlcpy(o.forecast_tz, "Asia/Shanghai", sizeof o.forecast_tz);
  return world_engine_with(w, &o);
}

/* Four Thursdays of `site` at 12:00-12:30: 180, 360, 540, 720 calls (one
 * to four weeks back), handle time 100 s. */
static size_t four_thursdays(engine_history_row_t *v, const char *site) {
  static const int32_t days[] = {20200116, 20200109, 20200102, 20191226};
  for (size_t k = 0; k < 4; k++) {
    memset(&v[k], 0, sizeof v[k]);
    nirc_strlcpy(v[k].site, site, sizeof v[k].site);
    v[k].s = (forecast_sample_t){days[k], SLOT, 30, 180.0 * (double)(k + 1), 100};
  }
  return 4;
}

static double expected_cps(void) {
  double num = 0, den = 0;
  for (int k = 0; k < 4; k++) {
    double w = pow(FORECAST_DECAY, k);
    num += w * 180.0 * (k + 1) / 1800.0;
    den += w;
  }
  return num / den;
}

static void test_history_preferred_and_said(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = new_engine(w);
  const char *src = world_sources[0];
  char text[200];
  assert_int_equal(engine_forecast_source(e, src, WORLD_T0_MS, text, sizeof text),
                   ENGINE_DEMAND_LIVE);
  assert_string_equal(text, "no history loaded: live load");

  engine_history_row_t rows[8];
  size_t n = four_thursdays(rows, src);
  nirc_strlcpy(rows[n].site, "atlantis", sizeof rows[n].site); /* unknown: ignored */
  rows[n].s = rows[0].s;
  assert_int_equal(engine_set_history(e, rows, n + 1, 8, WORLD_T0_MS), 0);
  engine_demand_t d;
  engine_forecast_demand(e, src, WORLD_T0_MS, &d);
  assert_int_equal(d.kind, ENGINE_DEMAND_HISTORY);
  assert_true(fabs(d.cps - expected_cps()) < 1e-12);
  assert_true(fabs(d.aht_s - 100) < 1e-12);
  assert_int_equal(d.weeks, 4);
  assert_string_equal(d.text, "forecast from 4 weeks of history");
  /* Another half-hour, another site: no history there. */
  assert_int_equal(engine_forecast_source(e, src, WORLD_T0_MS + 3600000, text, sizeof text),
                   ENGINE_DEMAND_LIVE);
  assert_string_equal(text, "no history: live load");
  assert_int_equal(engine_forecast_source(e, world_sources[1], WORLD_T0_MS, text, sizeof text),
                   ENGINE_DEMAND_LIVE);
  assert_string_equal(text, "no history: live load");
  /* Three weeks are enough, two are not. */
  assert_int_equal(engine_set_history(e, rows, 2, 8, WORLD_T0_MS), 0);
  engine_forecast_source(e, src, WORLD_T0_MS, text, sizeof text);
  assert_string_equal(text, "history too short (2 of 3 weeks): live load");
  engine_free(e);
  world_free(w);
}

/* The database is down at the next reload: the history stays and says
 * how old it is. */
static void test_failed_reload_keeps_history_and_says_its_age(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = new_engine(w);
  const char *src = world_sources[0];
  engine_history_row_t rows[4];
  size_t n = four_thursdays(rows, src);
  assert_int_equal(engine_set_history(e, rows, n, 8, WORLD_T0_MS), 0);
  w->mono += 2 * 3600000; /* two hours later, the same half-hour asked */
  engine_history_failed(e, "database unreachable");
  engine_demand_t d;
  engine_forecast_demand(e, src, WORLD_T0_MS, &d);
  assert_int_equal(d.kind, ENGINE_DEMAND_HISTORY);
  assert_true(fabs(d.cps - expected_cps()) < 1e-12);
  assert_string_equal(d.text, "forecast from 4 weeks of history (loaded 2 h ago; reload failing)");
  /* A reload that works again drops the warning. */
  assert_int_equal(engine_set_history(e, rows, n, 8, WORLD_T0_MS), 0);
  engine_forecast_demand(e, src, WORLD_T0_MS, &d);
  assert_string_equal(d.text, "forecast from 4 weeks of history");
  engine_free(e);
  world_free(w);
}

/* Made an exception date by a schedule, the day is not forecast from
 * ordinary Thursdays; a failure before any history says so too. */
static void test_exception_date_falls_back(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = new_engine(w);
  const char *src = world_sources[0];
  engine_history_failed(e, "database unreachable");
  char text[200];
  engine_forecast_source(e, src, WORLD_T0_MS, text, sizeof text);
  assert_string_equal(text, "no history loaded: live load");
  engine_history_row_t rows[4];
  size_t n = four_thursdays(rows, src);
  assert_int_equal(engine_set_history(e, rows, n, 8, WORLD_T0_MS), 0);
  schedule_t s;
  memset(&s, 0, sizeof s);
  s.id = 1;
  nirc_strlcpy(s.name, "night", sizeof s.name);
  nirc_strlcpy(s.sources.v[0], world_sources[0], sizeof s.sources.v[0]);
  s.sources.n = 1;
  nirc_strlcpy(s.hubs.v[0], world_hubs[0], sizeof s.hubs.v[0]);
  s.hubs.n = 1;
  s.start_min = 22 * 60;
  s.end_min = 8 * 60;
  s.days = 0x7f;
  nirc_strlcpy(s.tz, "Asia/Shanghai", sizeof s.tz);
  s.exceptions[s.n_exceptions++] = 20200123;
  s.wave_size = 5;
  s.enabled = true;
  /* The minute asked before the schedule exists (a schedule add's own
   * capacity check asks its start first), forecast from ordinary days. */
  engine_forecast_source(e, src, WORLD_T0_MS, text, sizeof text);
  assert_string_equal(text, "forecast from 4 weeks of history");
  assert_int_equal(engine_load_rules(e, 1, NULL, 0, &s, 1, NULL, 0, 1), 0);
  /* The same minute asked again sees the new exception dates: before, its
   * cached date kept the old ones until another minute was asked (a plan
   * of a night schedule under load forecast its holiday as an ordinary
   * Thursday: integration.forecast, 8 weeks instead of 7). */
  engine_forecast_source(e, src, WORLD_T0_MS, text, sizeof text);
  assert_string_equal(text, "no history for exception date 2020-01-23: live load");
  engine_forecast_source(e, src, WORLD_T0_MS + 60000, text, sizeof text);
  assert_string_equal(text, "no history for exception date 2020-01-23: live load");
  /* The Thursday after is ordinary: it uses the four (the 23rd had no
   * sample), one week older each. */
  engine_demand_t d;
  engine_forecast_demand(e, src, WORLD_T0_MS + 7 * 86400000LL, &d);
  assert_int_equal(d.kind, ENGINE_DEMAND_HISTORY);
  assert_int_equal(d.weeks, 4);
  engine_free(e);
  world_free(w);
}

/* ---- a cutover's check on the load ahead (engine_ahead.c) ---- */

/* 11:50 in Shanghai, ten minutes before WORLD_T0_MS: the half hour ahead
 * spans the slots 11:30-12:00 (no history) and 12:00-12:30. */
#define AHEAD_NOW_MS (WORLD_T0_MS - 10 * 60000)

/* A leading engine at 11:50, every site reporting one call a minute of
 * three minutes (3 Erlangs each), shaanxi with ten agents: hubei's move
 * there is 6 Erlangs on 10 agents live, SL 93 %. */
static engine_t *ahead_world(world_t *w) {
  w->now = AHEAD_NOW_MS;
  engine_t *e = new_engine(w);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  world_connect_all(w, e, NULL);
  world_staff(w, "shaanxi", 10);
  return e;
}

/* Four Thursdays of sites[k] at 12:00-12:30 with calls[k] each, handle
 * time 180 s. */
static void ahead_history_of(engine_t *e, const char *const *sites, const double *calls, size_t n) {
  static const int32_t days[] = {20200116, 20200109, 20200102, 20191226};
  engine_history_row_t rows[16];
  assert_true(n * 4 <= 16);
  memset(rows, 0, sizeof rows);
  for (size_t k = 0; k < n * 4; k++) {
    nirc_strlcpy(rows[k].site, sites[k / 4], sizeof rows[k].site);
    rows[k].s = (forecast_sample_t){days[k % 4], SLOT, 30, calls[k / 4], 180};
  }
  assert_int_equal(engine_set_history(e, rows, n * 4, 8, AHEAD_NOW_MS), 0);
}

/* The same `calls` at hubei and shaanxi. */
static void ahead_history(engine_t *e, double calls) {
  const char *const sites[] = {"hubei", "shaanxi"};
  const double c[] = {calls, calls};
  ahead_history_of(e, sites, c, 2);
}

/* hubei to shaanxi, sent: a dry run (or the real move). */
static void ahead_send(world_t *w, engine_t *e, uint64_t rid, bool dry, bool force) {
  static char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  c.sources = src;
  c.n_sources = 1;
  c.hubs = hub;
  c.n_hubs = 1;
  c.reason = "lockdown";
  c.dry_run = dry;
  c.force = force;
  engine_req_t rq = {.client = w, .request_id = rid, .operator_name = "operator:a", .label = "t"};
  engine_op_cutover(e, &rq, &c);
}

/* The same, answered at once (a dry run, or a refusal): its reply. */
static const world_reply_t *ahead_cutover(world_t *w, engine_t *e, uint64_t rid, bool dry,
                                          bool force) {
  size_t before = w->n_rep;
  ahead_send(w, e, rid, dry, force);
  assert_int_equal(w->n_rep, before + 1);
  return &w->rep[w->n_rep - 1];
}

/* nircctl plan SRC --to HUB: the engine's reply. */
static const Nirc__PlanReply *ahead_plan(world_t *w, engine_t *e, uint64_t rid, char *src,
                                         char *hub) {
  Nirc__PlanRequest pq = NIRC__PLAN_REQUEST__INIT;
  pq.sources = &src;
  pq.n_sources = 1;
  pq.hubs = &hub;
  pq.n_hubs = 1;
  engine_req_t rq = {.client = w, .request_id = rid, .operator_name = "operator:a", .label = "t"};
  engine_op_plan(e, &rq, &pq);
  return w->rep[w->n_rep - 1].full->plan;
}

static const Nirc__CapacityPrediction *hub_row(const Nirc__PlanReply *p, const char *hub) {
  assert_non_null(p);
  for (size_t k = 0; k < p->n_capacity; k++)
    if (strcmp(p->capacity[k]->hub, hub) == 0) return p->capacity[k];
  fail_msg("no capacity row for %s", hub);
  return NULL;
}

static const Nirc__CapacityPrediction *ahead_row(const Nirc__PlanReply *p) {
  return hub_row(p, "shaanxi");
}

/* The morning rises at 12:00: 75 calls a half hour each (7.5 Erlangs) is
 * 15 Erlangs on 10 agents. The live load passes; the check is made on the
 * forecast and refuses without --force, saying so; nircctl plan shows
 * both figures; --force moves and says what it overrode. */
static void test_cutover_checked_on_the_rising_forecast(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  ahead_history(e, 75);
  const world_reply_t *x = ahead_cutover(w, e, 1, false, false);
  assert_false(x->ok);
  assert_int_equal(x->code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  assert_non_null(
      strstr(x->msg, "; shaanxi predicted on the forecast for 11:30-12:30: load rising at shaanxi, "
                     "hubei (use --force to move anyway)"));
  const Nirc__CapacityPrediction *c = ahead_row(x->full->move->plan);
  assert_string_equal(c->load_basis, "forecast");
  assert_string_equal(c->load_note,
                      "on the forecast for 11:30-12:30: load rising at shaanxi, hubei");
  assert_true(fabs(c->traffic_after_live_erl - 3.0) < 0.01); /* its own; hubei refused */
  assert_true(fabs(c->traffic_after_forecast_erl - 7.5) < 0.01);
  assert_true(fabs(c->traffic_before_erl - 7.5) < 0.01);
  assert_non_null(c->with_refused);
  assert_true(fabs(c->with_refused->traffic_erl - 15.0) < 0.01);
  assert_int_equal(world_count_rec(w, ENGINE_REC_CUTOVER_NEW, NULL), 0);

  /* nircctl plan: the same prediction. */
  const Nirc__PlanReply *p = ahead_plan(w, e, 2, "hubei", "shaanxi");
  assert_true(p->refused);
  assert_string_equal(ahead_row(p)->load_basis, "forecast");

  /* Forced: moved, the warning says it was the forecast that failed. */
  x = ahead_cutover(w, e, 3, true, true);
  assert_true(x->ok);
  const Nirc__MoveReply *m = x->full->move;
  c = ahead_row(m->plan);
  assert_true(c->forced);
  assert_true(fabs(c->traffic_after_erl - 15.0) < 0.01);
  assert_true(fabs(c->traffic_after_live_erl - 6.0) < 0.01);
  assert_true(fabs(c->traffic_after_forecast_erl - 15.0) < 0.01);
  assert_non_null(
      strstr(m->force_warning, ", on the forecast for 11:30-12:30: load rising at shaanxi, hubei"));
  assert_int_equal(m->n_forced_over, 1);
  assert_string_equal(m->forced_over[0]->load_basis, "forecast");
  /* The real move: its audit record keeps what was overridden and on
   * which load (forced_over[].load_on), as the warning says it. */
  ahead_send(w, e, 4, false, true);
  world_flush(w);
  const world_rec_t *audit = NULL;
  for (size_t k = 0; k < w->n_rec; k++)
    if (w->rec[k].kind == ENGINE_REC_AUDIT && strstr(w->rec[k].detail, "\"forced_over\""))
      audit = &w->rec[k];
  assert_non_null(audit);
  json_t *d = json_loads(audit->detail, 0, NULL);
  json_t *on = json_object_get(json_array_get(json_object_get(d, "forced_over"), 0), "load_on");
  if (!json_is_object(on)) fail_msg("forced_over without its load_on: %s", audit->detail);
  assert_string_equal(json_string_value(json_object_get(on, "basis")), "forecast");
  assert_true(fabs(json_real_value(json_object_get(on, "live_erl")) - 6.0) < 0.01);
  assert_true(fabs(json_real_value(json_object_get(on, "forecast_erl")) - 15.0) < 0.01);
  assert_non_null(strstr(json_string_value(json_object_get(on, "note")),
                         "on the forecast for 11:30-12:30: load rising at shaanxi"));
  json_decref(d);
  engine_free(e);
  world_free(w);
}

/* A forecast barely above the live load (32 calls a half hour, 3.2
 * Erlangs at each site against 3 live): the figures are on it, but 6.4
 * against 6.0 Erlangs is within the live load's own fluctuation (about
 * sqrt(6) = 2.4), so the note gives both figures and not "rising". */
static void test_marginal_forecast_is_not_called_rising(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  ahead_history(e, 32);
  const world_reply_t *x = ahead_cutover(w, e, 1, true, false);
  assert_true(x->ok);
  const Nirc__CapacityPrediction *c = ahead_row(x->full->move->plan);
  assert_string_equal(c->load_basis, "forecast");
  assert_true(fabs(c->traffic_after_erl - 6.4) < 0.01);
  if (strstr(c->load_note, "rising")) fail_msg("a marginal rise called rising: %s", c->load_note);
  assert_string_equal(c->load_note, "on the forecast for 11:30-12:30 at shaanxi, hubei: 6.4 Erl vs "
                                    "6.0 Erl live, within the live load's own fluctuation");
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A falling forecast (15 calls a half hour, 1.5 Erlangs each) leaves the
 * live load, which passes; the reply says the forecast is not higher. */
static void test_cutover_on_the_live_load_when_the_forecast_falls(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  ahead_history(e, 15);
  const world_reply_t *x = ahead_cutover(w, e, 1, true, false);
  assert_true(x->ok);
  const Nirc__CapacityPrediction *c = ahead_row(x->full->move->plan);
  assert_false(c->refused);
  assert_string_equal(c->load_basis, "live");
  assert_string_equal(c->load_note, "on the live load: the forecast for 11:30-12:30 is not higher");
  assert_true(fabs(c->traffic_after_erl - 6.0) < 0.01);
  assert_true(fabs(c->traffic_after_live_erl - 6.0) < 0.01);
  assert_true(fabs(c->traffic_after_forecast_erl - 3.0) < 0.01);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* No history: the live load, and the rise is said not checked, never
 * taken as none. */
static void test_cutover_without_history_says_the_rise_is_not_checked(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  const world_reply_t *x = ahead_cutover(w, e, 1, true, false);
  assert_true(x->ok);
  const Nirc__CapacityPrediction *c = ahead_row(x->full->move->plan);
  assert_string_equal(c->load_basis, "live_unchecked");
  assert_string_equal(c->load_note,
                      "on the live load: a rise could not be checked (shaanxi: no history loaded)");
  assert_true(fabs(c->traffic_after_live_erl - 6.0) < 0.01);
  assert_true(c->traffic_after_forecast_erl < 0);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* An amendment is a move too: 30 % of hubei at shaanxi passes; the
 * amendment to all of it passes live (6 Erlangs on 10 agents) but not on
 * the forecast (15), and is refused without --force. */
static void test_amend_checked_on_the_rising_forecast(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 1, src, 1, hub, 1, 300);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  assert_true(w->rep[w->n_rep - 1].ok);
  ahead_history(e, 75);
  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  c.amend_id = w->cut[0].id;
  c.share_permille = 1000;
  c.reason = "all of it";
  engine_req_t rq = {.client = w, .request_id = 2, .operator_name = "operator:a", .label = "t"};
  size_t sent = w->n_sent;
  engine_op_cutover(e, &rq, &c);
  const world_reply_t *x = &w->rep[w->n_rep - 1];
  assert_int_equal(x->request_id, 2);
  assert_false(x->ok);
  assert_int_equal(x->code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  assert_non_null(strstr(x->msg, "predicted on the forecast for 11:30-12:30: load rising at "));
  assert_int_equal(world_count_rec(w, ENGINE_REC_CUTOVER_AMEND, NULL), 0);
  assert_int_equal(w->n_sent, sent);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A hub moved away hands its sources on: hubei, at shaanxi by a cutover,
 * goes to henan with it, and its rise counts. Live, henan would answer
 * 9 Erlangs on 14 agents (SL 95 %); on the forecast hubei alone brings
 * 7.5 (13.5 in all): refused, the note naming hubei. */
static void test_moved_hubs_sources_counted_on_their_forecast(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  world_staff(w, "henan", 14);
  const char *src[] = {"hubei"}, *hubs[] = {"shaanxi", "henan"};
  world_cutover(w, e, 1, src, 1, hubs, 2, 0);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 1000);
  const char *const sites[] = {"hubei", "shaanxi", "henan"};
  const double calls[] = {75, 15, 15};
  ahead_history_of(e, sites, calls, 3);
  const Nirc__PlanReply *p = ahead_plan(w, e, 2, "shaanxi", "henan");
  const Nirc__CapacityPrediction *c = hub_row(p, "henan");
  assert_non_null(c);
  assert_true(p->refused);
  assert_string_equal(c->load_basis, "forecast");
  assert_string_equal(c->load_note, "on the forecast for 11:30-12:30: load rising at hubei");
  /* It takes hubei (henan's 3 and hubei's 7.5) and turns shaanxi down. */
  assert_int_equal(c->n_sources, 1);
  assert_string_equal(c->sources[0], "hubei");
  assert_true(fabs(c->traffic_after_erl - 10.5) < 0.01);
  assert_true(fabs(c->traffic_after_live_erl - 6.0) < 0.01);
  assert_true(fabs(c->traffic_after_forecast_erl - 9.0) < 0.01);
  assert_non_null(strstr(p->refusal, "shaanxi would not move: henan would need "));
  assert_non_null(strstr(p->refusal, "; henan predicted on the forecast for 11:30-12:30: load "
                                     "rising at hubei"));
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* ---- schedule add and set: the capacity check of the next window ---- */

/* nircctl schedule add|set "lunch" (12:00-12:30 Asia/Shanghai) to
 * shaanxi, with `sources` (NULL-ended; set: NULL keeps them): its reply. */
/* Schedule `name` (start-end when added, to `hubs`) sent. */
static const world_reply_t *sched_send_at(world_t *w, engine_t *e, uint64_t rid, Nirc__RuleOp op,
                                          const char *name, const char *const *sources, char **hubs,
                                          size_t n_hubs, const char *start, const char *end,
                                          bool dry, bool force) {
  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  sp.name = (char *)name;
  sp.sources = (char **)sources;
  while (sources && sources[sp.n_sources])
    sp.n_sources++;
  if (op == NIRC__RULE_OP__RULE_OP_ADD) {
    sp.hubs = hubs;
    sp.n_hubs = n_hubs;
    sp.start = (char *)start;
    sp.end = (char *)end;
    sp.tz = "Asia/Shanghai";
  }
  Nirc__ScheduleRequest rq = NIRC__SCHEDULE_REQUEST__INIT;
  rq.op = op;
  rq.name = (char *)name;
  rq.spec = &sp;
  rq.dry_run = dry;
  rq.force = force;
  engine_req_t r = {.client = w, .request_id = rid, .operator_name = "admin:bob", .label = "t"};
  size_t before = w->n_rep;
  engine_op_schedule(e, &r, &rq);
  world_flush(w);
  assert_int_equal(w->n_rep, before + 1);
  return &w->rep[w->n_rep - 1];
}

/* Schedule `name` (12:00-12:30 when added, to `hubs`) sent. */
static const world_reply_t *sched_send(world_t *w, engine_t *e, uint64_t rid, Nirc__RuleOp op,
                                       const char *name, const char *const *sources, char **hubs,
                                       size_t n_hubs, bool dry, bool force) {
  return sched_send_at(w, e, rid, op, name, sources, hubs, n_hubs, "12:00", "12:30", dry, force);
}

static const world_reply_t *lunch(world_t *w, engine_t *e, uint64_t rid, Nirc__RuleOp op,
                                  const char *const *sources, bool dry, bool force) {
  static char *hub[] = {"shaanxi"};
  return sched_send(w, e, rid, op, "lunch", sources, hub, 1, dry, force);
}

/* The newest audit entry `action`, its detail (NULL: none). */
static const char *audit_of(world_t *w, const char *action) {
  for (size_t k = w->n_rec; k-- > 0;)
    if (w->rec[k].kind == ENGINE_REC_AUDIT && strcmp(w->rec[k].action, action) == 0)
      return w->rec[k].detail;
  return NULL;
}

static const char *const hubei_only[] = {"hubei", NULL};

/* hubei's 75 calls a half hour at 12:00 (7.5 Erlangs) onto shaanxi's own
 * 7.5, on 10 agents: the window would be unstable. Refused, saying what
 * shaanxi would need and that --force adds it anyway; a dry run shows it
 * and adds nothing; --force adds it, audited as forced. Before the check
 * the add went in silently and the window failed at 12:00. */
static void test_schedule_add_checked_on_its_window(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  ahead_history(e, 75);
  size_t recs = world_count_rec(w, ENGINE_REC_SCHEDULE_NEW, NULL);
  const world_reply_t *x = lunch(w, e, 1, NIRC__RULE_OP__RULE_OP_ADD, hubei_only, false, false);
  assert_false(x->ok);
  assert_int_equal(x->code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  assert_non_null(strstr(x->msg, "schedule 'lunch' not added: its next window (2020-01-23 12:00 "
                                 "Asia/Shanghai) would miss the service-level floor (80%) at "
                                 "12:00: shaanxi predicted SL 0%, unstable (needs "));
  assert_non_null(strstr(x->msg, "has 10; forecast from 4 weeks of history)"));
  assert_non_null(strstr(x->msg, "use --force to have it added anyway"));
  assert_int_equal(world_count_rec(w, ENGINE_REC_SCHEDULE_NEW, NULL), recs);
  /* The refusal carries the check, for --json (the figures, not only
   * the words). */
  assert_int_equal(x->body, NIRC__OPERATOR_REPLY__BODY_SCHEDULE);
  const Nirc__ScheduleCheck *rc = x->full->schedule->check;
  assert_non_null(rc);
  assert_true(rc->checked && rc->refused && !rc->forced && !rc->dry_run);
  assert_true(rc->n_hubs == 1 && rc->hubs[0]->misses);
  assert_int_equal(x->full->schedule->n_schedules, 0);

  x = lunch(w, e, 2, NIRC__RULE_OP__RULE_OP_ADD, hubei_only, true, false);
  assert_true(x->ok);
  const Nirc__ScheduleReply *sr = x->full->schedule;
  assert_int_equal(sr->n_schedules, 0); /* nothing added */
  assert_null(sr->change);
  assert_non_null(sr->check);
  assert_true(sr->check->checked && sr->check->refused && sr->check->dry_run);
  assert_false(sr->check->forced);
  assert_int_equal(sr->check->n_hubs, 1);
  const Nirc__ScheduleHubCheck *h = sr->check->hubs[0];
  assert_string_equal(h->hub, "shaanxi");
  assert_true(h->known && h->misses && !h->stable_after);
  assert_int_equal(h->agents, 10);
  assert_true(h->agents_needed > 15); /* 15 Erlangs */
  assert_string_equal(h->forecast, "forecast from 4 weeks of history");
  assert_int_equal(world_count_rec(w, ENGINE_REC_SCHEDULE_NEW, NULL), recs);

  x = lunch(w, e, 3, NIRC__RULE_OP__RULE_OP_ADD, hubei_only, false, true);
  assert_true(x->ok);
  assert_true(x->full->schedule->check->forced);
  assert_int_equal(x->full->schedule->n_schedules, 1);
  const char *a = audit_of(w, "schedule-add");
  assert_non_null(a);
  assert_non_null(strstr(a, "\"forced\":true"));
  assert_non_null(strstr(a, "\"refused\":true"));
  assert_non_null(strstr(a, "\"hub\":\"shaanxi\""));
  engine_free(e);
  world_free(w);
}

/* Enabling a disabled schedule moves its sources as adding it would:
 * the same check, refused unless --force (before, an operator re-enabling
 * the night schedule moved 22 sources unchecked). */
static void test_schedule_enable_checked(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  ahead_history(e, 75);
  const world_reply_t *x = lunch(w, e, 1, NIRC__RULE_OP__RULE_OP_ADD, hubei_only, false, true);
  assert_true(x->ok);
  x = lunch(w, e, 2, NIRC__RULE_OP__RULE_OP_DISABLE, NULL, false, false);
  assert_true(x->ok);
  size_t recs = world_count_rec(w, ENGINE_REC_SCHEDULE_ENABLE, NULL);
  x = lunch(w, e, 3, NIRC__RULE_OP__RULE_OP_ENABLE, NULL, false, false);
  assert_false(x->ok);
  assert_int_equal(x->code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  assert_non_null(strstr(x->msg, "schedule 'lunch' not enabled: its next window (2020-01-23 "
                                 "12:00 Asia/Shanghai) would miss the service-level floor"));
  assert_non_null(strstr(x->msg, "use --force to have it enabled anyway"));
  assert_int_equal(world_count_rec(w, ENGINE_REC_SCHEDULE_ENABLE, NULL), recs);

  x = lunch(w, e, 4, NIRC__RULE_OP__RULE_OP_ENABLE, NULL, false, true);
  assert_true(x->ok);
  const Nirc__ScheduleReply *sr = x->full->schedule;
  assert_non_null(sr->check);
  assert_true(sr->check->checked && sr->check->refused && sr->check->forced);
  assert_int_equal(sr->n_schedules, 1);
  assert_true(sr->schedules[0]->enabled);
  const char *a = audit_of(w, "schedule-enable");
  assert_non_null(a);
  assert_non_null(strstr(a, "\"forced\":true"));
  /* Already enabled: it moves nothing new, no check. */
  x = lunch(w, e, 5, NIRC__RULE_OP__RULE_OP_ENABLE, NULL, false, false);
  assert_true(x->ok);
  assert_null(x->full->schedule->check);
  engine_free(e);
  world_free(w);
}

/* A quiet lunch (15 calls a half hour at hubei, 1.5 Erlangs) passes and
 * the reply says the prediction; a set that adds hunan's 120 (12 Erlangs)
 * to it is refused and changes nothing; forced it is made and audited. */
static void test_schedule_set_adding_sources_checked(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  const char *const sites[] = {"hubei", "shaanxi", "hunan"};
  const double calls[] = {15, 15, 120};
  ahead_history_of(e, sites, calls, 3);
  const world_reply_t *x = lunch(w, e, 1, NIRC__RULE_OP__RULE_OP_ADD, hubei_only, false, false);
  assert_true(x->ok);
  const Nirc__ScheduleCheck *ck = x->full->schedule->check;
  assert_true(ck->checked && !ck->refused && !ck->forced);
  assert_false(ck->hubs[0]->misses);
  assert_true(ck->hubs[0]->sl_after >= 0.8);
  assert_non_null(strstr(audit_of(w, "schedule-add"), "\"refused\":false"));

  static const char *const both[] = {"hubei", "hunan", NULL};
  size_t recs = world_count_rec(w, ENGINE_REC_SCHEDULE_CHANGE, NULL);
  x = lunch(w, e, 2, NIRC__RULE_OP__RULE_OP_SET, both, false, false);
  assert_false(x->ok);
  assert_non_null(strstr(x->msg, "schedule 'lunch' not changed: its next window"));
  assert_non_null(strstr(x->msg, "use --force to have it changed anyway"));
  assert_int_equal(world_count_rec(w, ENGINE_REC_SCHEDULE_CHANGE, NULL), recs);

  x = lunch(w, e, 3, NIRC__RULE_OP__RULE_OP_SET, both, true, false); /* dry run */
  assert_true(x->ok);
  assert_true(x->full->schedule->change->dry_run);
  assert_true(x->full->schedule->check->refused && x->full->schedule->check->dry_run);
  assert_int_equal(x->full->schedule->schedules[0]->n_sources, 1); /* unchanged */
  assert_int_equal(world_count_rec(w, ENGINE_REC_SCHEDULE_CHANGE, NULL), recs);

  x = lunch(w, e, 4, NIRC__RULE_OP__RULE_OP_SET, both, false, true);
  assert_true(x->ok);
  assert_true(x->full->schedule->check->forced);
  assert_int_equal(world_count_rec(w, ENGINE_REC_SCHEDULE_CHANGE, NULL), recs + 1);
  assert_non_null(strstr(audit_of(w, "schedule-change"), "\"forced\":true"));
  engine_free(e);
  world_free(w);
}

/* shaanxi has no history and the engine no scenario: its load at 12:00 is
 * not known, so nothing can be predicted. The add is accepted and says
 * the check could not be made and why (not a prediction on zero load). */
static void test_schedule_add_without_forecast_says_unchecked(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  const char *const sites[] = {"hubei"};
  const double calls[] = {300};
  ahead_history_of(e, sites, calls, 1);
  const world_reply_t *x = lunch(w, e, 1, NIRC__RULE_OP__RULE_OP_ADD, hubei_only, false, false);
  assert_true(x->ok);
  const Nirc__ScheduleCheck *ck = x->full->schedule->check;
  assert_false(ck->checked);
  assert_false(ck->refused);
  assert_string_equal(ck->not_checked, "no forecast for shaanxi in its next window (no history: "
                                       "live load): its load then is not known");
  assert_false(ck->hubs[0]->known);
  assert_non_null(strstr(audit_of(w, "schedule-add"), "\"checked\":false"));
  engine_free(e);
  world_free(w);
}

/* lunch's window set to start-end, forced or not. */
static const world_reply_t *lunch_window(world_t *w, engine_t *e, uint64_t rid, const char *start,
                                         const char *end, bool force) {
  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  sp.name = "lunch";
  sp.start = (char *)start;
  sp.end = (char *)end;
  sp.days = sp.tz = "";
  Nirc__ScheduleRequest rq = NIRC__SCHEDULE_REQUEST__INIT;
  rq.op = NIRC__RULE_OP__RULE_OP_SET;
  rq.name = "lunch";
  rq.spec = &sp;
  rq.force = force;
  engine_req_t r = {.client = w, .request_id = rid, .operator_name = "admin:bob", .label = "t"};
  engine_op_schedule(e, &r, &rq);
  world_flush(w);
  return &w->rep[w->n_rep - 1];
}

/* lunch's window set to end at `end` (nothing else given). */
static const world_reply_t *lunch_end(world_t *w, engine_t *e, uint64_t rid, const char *end) {
  return lunch_window(w, e, rid, "", end, false);
}

/* A lunch already overloaded (added with --force): ending it earlier
 * moves no calls and makes nothing worse, so it is made, saying the
 * window still misses as before; ending it later lengthens an overloaded
 * window, worse for longer: refused, and the refusal says so. */
static void test_schedule_set_no_worse_not_refused(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  ahead_history(e, 75);
  const world_reply_t *x = lunch(w, e, 1, NIRC__RULE_OP__RULE_OP_ADD, hubei_only, false, true);
  assert_true(x->ok);
  x = lunch_end(w, e, 2, "12:20");
  assert_true(x->ok);
  const Nirc__ScheduleCheck *ck = x->full->schedule->check;
  assert_true(ck->refused && ck->no_worse && !ck->forced);
  assert_non_null(strstr(audit_of(w, "schedule-change"), "\"no_worse\":true"));
  x = lunch_end(w, e, 3, "12:45");
  assert_false(x->ok);
  assert_int_equal(x->code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  assert_non_null(strstr(x->msg, "the change makes it worse for longer: its window is longer "
                                 "(12:00-12:45, was 12:00-12:20)"));
  assert_non_null(strstr(x->msg, "use --force to have it changed anyway"));
  engine_free(e);
  world_free(w);
}

/* A set that moves the window is compared with the old one hour for
 * hour. History: 75 calls a half hour at hubei and at shaanxi at 12:00
 * and 14:00 (15 Erlangs on 10 agents), 60 at 13:00 (12). Moving lunch
 * from 12:00-12:30 to 13:00-13:30 puts calls on shaanxi at an hour the
 * old window never did: judged on its own, refused (before, it was "no
 * worse" than the old window's 12:00, and made). Shortening 13:00-14:30
 * to 14:00-14:30 is no worse than the old window at 14:00 itself (before,
 * compared with the old 13:00, it was refused). */
static void test_schedule_set_moving_the_window_compares_the_same_hours(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  static const int32_t days[] = {20200116, 20200109, 20200102, 20191226};
  static const int slots[] = {SLOT, SLOT + 2, SLOT + 4};
  static const double calls[] = {75, 60, 75};
  engine_history_row_t rows[24];
  memset(rows, 0, sizeof rows);
  for (size_t k = 0; k < 24; k++) {
    nirc_strlcpy(rows[k].site, k < 12 ? "hubei" : "shaanxi", sizeof rows[k].site);
    rows[k].s = (forecast_sample_t){days[k % 4], slots[(k / 4) % 3], 30, calls[(k / 4) % 3], 180};
  }
  assert_int_equal(engine_set_history(e, rows, 24, 8, AHEAD_NOW_MS), 0);
  assert_true(lunch(w, e, 1, NIRC__RULE_OP__RULE_OP_ADD, hubei_only, false, true)->ok);
  const world_reply_t *x = lunch_window(w, e, 2, "13:00", "13:30", false);
  assert_false(x->ok);
  assert_non_null(strstr(x->msg, "its old window (12:00-12:30) did not cover 13:00: an hour only "
                                 "the new window covers is judged on its own"));
  const Nirc__ScheduleCheck *ck = x->full->schedule->check;
  assert_true(ck->refused && !ck->no_worse);
  assert_string_equal(ck->old_window, "does_not_cover");

  assert_true(lunch_window(w, e, 3, "13:00", "14:30", true)->ok);
  x = lunch_window(w, e, 4, "14:00", "", false);
  assert_true(x->ok);
  ck = x->full->schedule->check;
  assert_true(ck->refused && ck->no_worse);
  assert_string_equal(ck->old_window, "covers");
  assert_non_null(strstr(audit_of(w, "schedule-change"), "\"old_window\":\"covers\""));
  engine_free(e);
  world_free(w);
}

/* Brief s21S: nircctl plan --schedule lunch when hubei has reported for
 * 5 s only (one call) and no forecast covers it: its calls per second are
 * not known. Before, the row said 0.017 calls/s (the first call spread
 * over a minute's average), as live load, with nothing saying it was no
 * rate yet. shaanxi, a minute of reports, keeps its figure. */
static void test_plan_demand_of_seconds_of_reports_is_not_known(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  assert_true(lunch(w, e, 1, NIRC__RULE_OP__RULE_OP_ADD, hubei_only, false, true)->ok);
  site_t *hubei = &w->sites->v[world_index(w, "hubei")];
  hubei->demand_secs = 5;
  hubei->demand_calls = 1;
  Nirc__PlanRequest pq = NIRC__PLAN_REQUEST__INIT;
  pq.schedule_name = "lunch";
  engine_req_t rq = {.client = w, .request_id = 2, .operator_name = "operator:a", .label = "t"};
  engine_op_plan(e, &rq, &pq);
  const Nirc__PlanReply *p = w->rep[w->n_rep - 1].full->plan;
  assert_non_null(p);
  assert_int_equal(p->n_demand, 2);
  const Nirc__PlanDemand *src = p->demand[0], *hub = p->demand[1];
  assert_string_equal(src->site, "hubei");
  assert_true(src->calls_per_s_unknown);
  assert_true(src->calls_per_s == 0);
  assert_string_equal(src->source, "live");
  /* and why there is no forecast, as the row said before it was unknown */
  assert_string_equal(src->note, "not known yet: 5 s of live reports, too few for a rate, and no "
                                 "forecast (no history loaded)");
  assert_string_equal(hub->site, "shaanxi");
  assert_false(hub->calls_per_s_unknown);
  assert_true(hub->calls_per_s > 0);
  engine_free(e);
  world_free(w);
}

/* Adds hubei's overflow onto shaanxi (a queue of 20 engages it); its
 * reply. */
static const world_reply_t *spill_add(world_t *w, engine_t *e) {
  char *hubs[] = {"shaanxi"};
  Nirc__OverflowSpec sp = NIRC__OVERFLOW_SPEC__INIT;
  sp.name = "hubei-ovf";
  sp.source = "hubei";
  sp.hubs = hubs;
  sp.n_hubs = 1;
  sp.trigger_queue = 20;
  sp.release_queue = 5;
  sp.share_cap_permille = 500;
  sp.min_hold_s = 300;
  Nirc__OverflowRequest rq = NIRC__OVERFLOW_REQUEST__INIT;
  rq.op = NIRC__RULE_OP__RULE_OP_ADD;
  rq.spec = &sp;
  engine_req_t r = {.client = w, .request_id = 1, .operator_name = "admin:bob", .label = "t"};
  engine_op_overflow(e, &r, &rq);
  world_flush(w);
  assert_int_equal(w->n_ovf, 1);
  return &w->rep[w->n_rep - 1];
}

/* overflow add says where the rule would spill if it engaged now, as a
 * cutover's check does: with shaanxi's forecast for 12:00 at 30 Erlangs
 * on 10 agents, nowhere (the alarm names the forecast); with a forecast
 * not above its live load, onto shaanxi, predicted on the live load. */
static void test_overflow_add_shows_the_check(void **state) {
  (void)state;
  for (int quiet = 0; quiet <= 1; quiet++) {
    world_t *w = world_new();
    engine_t *e = ahead_world(w);
    const char *const sites[] = {"hubei", "shaanxi"};
    const double calls[] = {15, quiet ? 15 : 300};
    ahead_history_of(e, sites, calls, 2);
    const world_reply_t *x = spill_add(w, e);
    assert_true(x->ok);
    const Nirc__PlanReply *ck = x->full->overflow->check;
    assert_non_null(ck);
    assert_null(x->full->overflow->change);
    const Nirc__CapacityPrediction *row = hub_row(ck, "shaanxi");
    if (quiet) {
      assert_int_equal(ck->n_moves, 1);
      assert_string_equal(ck->moves[0]->site, "hubei");
      assert_non_null(row);
      assert_string_equal(row->load_basis, "live");
      assert_non_null(strstr(row->load_note, "forecast for the next half hour is not higher"));
    } else {
      assert_int_equal(ck->n_moves, 0);
      assert_true(ck->n_alarms >= 1);
      assert_non_null(strstr(ck->alarms[0], "for the load forecast for the next half hour"));
    }
    engine_free(e);
    world_free(w);
  }
}

/* hubei's overflow onto shaanxi, engaged by a queue of 60 and callers
 * waiting 4 minutes for `minutes` ticks; what hubei is sent to shaanxi. */
static uint32_t spill_ticks(world_t *w, engine_t *e, int minutes) {
  for (int k = 0; k < minutes; k++) {
    w->now += 60000;
    world_load(w, "hubei", 60, 240000);
    world_tick(w, e, 200);
    world_ack(w, e, 0, NULL);
  }
  return route_share_of(&engine_site_dir(e, world_index(w, "hubei"))->target, "shaanxi");
}

/* hubei's overflow added and engaged for five ticks: it spills onto
 * shaanxi when `moves`, else not. */
static void spill_expect(world_t *w, engine_t *e, bool moves) {
  spill_add(w, e);
  uint32_t moved = spill_ticks(w, e, 5);
  assert_true(w->ovf_state[0].engaged);
  if (moves)
    assert_true(moved > 0);
  else
    assert_int_equal(moved, 0);
}

/* The engine gives the overflow rules' hubs their forecast for the next
 * half hour on every tick: shaanxi, 3 Erlangs live but 30 forecast for
 * 12:00 on its 10 agents, takes no spill at 11:50 (before, it took one on
 * its live load alone); with a forecast that is not higher it does. */
static void test_overflow_tick_checked_on_the_load_ahead(void **state) {
  (void)state;
  for (int quiet = 0; quiet <= 1; quiet++) {
    world_t *w = world_new();
    engine_t *e = ahead_world(w);
    const char *const sites[] = {"shaanxi"};
    const double calls[] = {quiet ? 15 : 300};
    ahead_history_of(e, sites, calls, 1);
    spill_expect(w, e, quiet);
    engine_free(e);
    world_free(w);
  }
}

/* The same check counts the hub's other sources on their forecast too:
 * hunan goes to shaanxi all day by a schedule (3 Erlangs live); with 30
 * forecast for 12:00, shaanxi (14 agents) takes no spill from hubei
 * (before, hunan counted at its live 3 and the spill went); with a
 * forecast that is not higher it does. */
static void test_overflow_tick_counts_the_hubs_schedule_sources_ahead(void **state) {
  (void)state;
  for (int quiet = 0; quiet <= 1; quiet++) {
    world_t *w = world_new();
    engine_t *e = ahead_world(w);
    world_staff(w, "shaanxi", 14);
    world_schedule_all_day(w, e, 1, "hunan", "shaanxi");
    world_flush(w);
    const char *const sites[] = {"hunan", "shaanxi", "hubei"};
    const double calls[] = {quiet ? 15 : 300, 15, 15};
    ahead_history_of(e, sites, calls, 3);
    spill_expect(w, e, quiet);
    assert_int_equal(
        route_share_of(&engine_site_dir(e, world_index(w, "hunan"))->target, "shaanxi"), 1000);
    engine_free(e);
    world_free(w);
  }
}

/* One site with no forecast no longer makes the whole check "not
 * checked": henan, a second hub with no history that the plan sends
 * nothing, is named as not known and shaanxi is judged (the verdict says
 * it is partial). A source with no forecast makes the hub that would take
 * it unjudged, never counted as no load. */
static void test_schedule_check_partial(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  const char *const sites[] = {"hubei", "shaanxi"};
  const double calls[] = {15, 15};
  ahead_history_of(e, sites, calls, 2);
  char *hubs[] = {"shaanxi", "henan"};
  static const char *const both[] = {"hubei", "hunan", NULL};
  const world_reply_t *x =
      sched_send(w, e, 1, NIRC__RULE_OP__RULE_OP_ADD, "lunch2", hubei_only, hubs, 2, true, false);
  assert_true(x->ok);
  const Nirc__ScheduleCheck *ck = x->full->schedule->check;
  assert_true(ck->checked);
  assert_true(ck->partial);
  assert_false(ck->refused);
  assert_int_equal(ck->n_not_known_sites, 1);
  assert_string_equal(ck->not_known_sites[0], "henan");
  assert_true(ck->hubs[0]->known && ck->hubs[0]->predicted && !ck->hubs[0]->misses);
  assert_false(ck->hubs[1]->known);
  assert_false(ck->hubs[1]->predicted);

  /* hunan (no history) goes with hubei to shaanxi: shaanxi's figures
   * would hold a guess for it, so shaanxi is not judged; nothing is. */
  x = sched_send(w, e, 2, NIRC__RULE_OP__RULE_OP_ADD, "lunch2", both, hubs, 2, true, false);
  assert_true(x->ok);
  ck = x->full->schedule->check;
  assert_false(ck->checked);
  assert_false(ck->refused);
  assert_false(ck->hubs[0]->known);
  assert_non_null(
      strstr(ck->hubs[0]->forecast, "it would take hunan, whose load then is not known"));
  assert_int_equal(ck->n_not_known_sites, 2); /* hunan, henan */
  engine_free(e);
  world_free(w);
}

/* Four Thursdays of hubei and shaanxi with calls[k] each in the k-th
 * half hour from 12:00 (n of them), handle time 180 s. */
static void half_hours(engine_t *e, const double *calls, size_t n) {
  static const int32_t days[] = {20200116, 20200109, 20200102, 20191226};
  engine_history_row_t rows[32];
  assert_true(n * 8 <= 32);
  memset(rows, 0, sizeof rows);
  for (size_t k = 0; k < n * 8; k++) {
    nirc_strlcpy(rows[k].site, k % 2 ? "shaanxi" : "hubei", sizeof rows[k].site);
    rows[k].s = (forecast_sample_t){days[(k / 2) % 4], SLOT + (int)(k / 8), 30, calls[k / 8], 180};
  }
  assert_int_equal(engine_set_history(e, rows, n * 8, 8, AHEAD_NOW_MS), 0);
}

/* A lunch from 12:00 to 13:00 is judged at each half hour, not at its
 * first minute alone: 15 calls a half hour at hubei and at shaanxi at
 * 12:00 (3 Erlangs on 10 agents: passes) but 75 at 12:30 (15 Erlangs:
 * unstable). Refused, naming 12:30 as the worst of the two judged (before,
 * judged at 12:01 alone, it was added). The same window quiet at both
 * half hours passes, and says both were judged. */
static void test_schedule_check_judges_every_half_hour(void **state) {
  (void)state;
  for (int quiet = 0; quiet <= 1; quiet++) {
    world_t *w = world_new();
    engine_t *e = ahead_world(w);
    const double calls[] = {15, quiet ? 15 : 75};
    half_hours(e, calls, 2);
    static char *hub[] = {"shaanxi"};
    const world_reply_t *x = sched_send_at(w, e, 1, NIRC__RULE_OP__RULE_OP_ADD, "lunch", hubei_only,
                                           hub, 1, "12:00", "13:00", false, false);
    assert_int_equal(x->ok, quiet); /* before: added, judged at 12:01 alone */
    const Nirc__ScheduleCheck *ck = x->full->schedule->check;
    assert_non_null(ck);
    assert_true(ck->checked);
    assert_int_equal(ck->instants_judged, 2);
    if (quiet) {
      assert_true(x->ok);
      assert_false(ck->refused);
      assert_int_equal(ck->instants_missed, 0);
      assert_false(ck->hubs[0]->misses);
    } else {
      assert_false(x->ok);
      assert_int_equal(x->code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
      assert_non_null(strstr(x->msg, "would miss the service-level floor (80%) at 1 of the 2 "
                                     "half hours judged, the worst at 12:30: shaanxi predicted "
                                     "SL 0%, unstable (needs "));
      assert_true(ck->refused);
      assert_int_equal(ck->instants_missed, 1);
      assert_int_equal(ck->worst_at_ms, WORLD_T0_MS + 30 * 60000);
      assert_true(ck->hubs[0]->misses && ck->hubs[0]->agents_needed > 15);
      assert_int_equal(world_count_rec(w, ENGINE_REC_SCHEDULE_NEW, NULL), 0);
    }
    engine_free(e);
    world_free(w);
  }
}

/* A half hour of the window with no forecast is not counted as no load:
 * history at 12:00 only, so 12:30's load at hubei and shaanxi is not
 * known. 12:00 is judged (passes); the check is partial, naming both
 * (before, judged at 12:01 alone, it said the window passed outright). */
static void test_schedule_check_partial_at_a_later_half_hour(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  const double calls[] = {15};
  half_hours(e, calls, 1);
  static char *hub[] = {"shaanxi"};
  const world_reply_t *x = sched_send_at(w, e, 1, NIRC__RULE_OP__RULE_OP_ADD, "lunch", hubei_only,
                                         hub, 1, "12:00", "13:00", true, false);
  assert_true(x->ok);
  const Nirc__ScheduleCheck *ck = x->full->schedule->check;
  assert_true(ck->checked && !ck->refused);
  assert_true(ck->partial);
  assert_int_equal(ck->n_not_known_sites, 2);
  assert_string_equal(ck->not_known_sites[0], "hubei");
  assert_string_equal(ck->not_known_sites[1], "shaanxi");
  assert_int_equal(ck->instants_judged, 1);
  assert_non_null(strstr(ck->not_checked, "no forecast for hubei"));
  engine_free(e);
  world_free(w);
}

/* schedule set compares instant by instant: lunch 12:00-13:00 (forced),
 * 75 calls a half hour at 12:00, 12:30 and 13:00 (each unstable on
 * shaanxi's 10 agents). Moved to 12:30-13:30 (no longer) it misses at
 * 12:30, as the old window did there, and at 13:00, which only the new
 * window covers: judged on its own, refused (before, compared at 12:31
 * alone, it was "no worse" and made); so is 12:15-13:15, whose last
 * quarter hour is 13:00's. Moved to 12:10-12:50 it misses
 * only where the old window missed as much: no worse, made. */
static void test_schedule_set_compares_every_half_hour(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = ahead_world(w);
  const double calls[] = {75, 75, 75};
  half_hours(e, calls, 3);
  static char *hub[] = {"shaanxi"};
  assert_true(sched_send_at(w, e, 1, NIRC__RULE_OP__RULE_OP_ADD, "lunch", hubei_only, hub, 1,
                            "12:00", "13:00", false, true)
                  ->ok);
  const world_reply_t *x = lunch_window(w, e, 2, "12:30", "13:30", false);
  assert_false(x->ok);
  assert_non_null(strstr(x->msg, "its old window (12:00-13:00) did not cover 13:00: an hour only "
                                 "the new window covers is judged on its own"));
  const Nirc__ScheduleCheck *ck = x->full->schedule->check;
  assert_true(ck->refused && !ck->no_worse);
  assert_int_equal(ck->instants_missed, 2);
  assert_string_equal(ck->old_window, "does_not_cover");
  /* Off the half hour, its last quarter hour (13:00-13:15) is judged
   * too: the forecast's 13:00 half hour. */
  x = lunch_window(w, e, 3, "12:15", "13:15", false);
  assert_false(x->ok);
  assert_non_null(strstr(x->msg, "did not cover 13:00"));
  assert_int_equal(x->full->schedule->check->instants_judged, 3);
  x = lunch_window(w, e, 4, "12:10", "12:50", false);
  assert_true(x->ok);
  ck = x->full->schedule->check;
  assert_true(ck->refused && ck->no_worse);
  assert_string_equal(ck->old_window, "covers");
  engine_free(e);
  world_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_history_preferred_and_said),
      cmocka_unit_test(test_failed_reload_keeps_history_and_says_its_age),
      cmocka_unit_test(test_exception_date_falls_back),
      cmocka_unit_test(test_cutover_checked_on_the_rising_forecast),
      cmocka_unit_test(test_marginal_forecast_is_not_called_rising),
      cmocka_unit_test(test_cutover_on_the_live_load_when_the_forecast_falls),
      cmocka_unit_test(test_cutover_without_history_says_the_rise_is_not_checked),
      cmocka_unit_test(test_amend_checked_on_the_rising_forecast),
      cmocka_unit_test(test_moved_hubs_sources_counted_on_their_forecast),
      cmocka_unit_test(test_schedule_add_checked_on_its_window),
      cmocka_unit_test(test_schedule_enable_checked),
      cmocka_unit_test(test_schedule_set_adding_sources_checked),
      cmocka_unit_test(test_schedule_add_without_forecast_says_unchecked),
      cmocka_unit_test(test_schedule_check_partial),
      cmocka_unit_test(test_overflow_tick_checked_on_the_load_ahead),
      cmocka_unit_test(test_overflow_tick_counts_the_hubs_schedule_sources_ahead),
      cmocka_unit_test(test_overflow_add_shows_the_check),
      cmocka_unit_test(test_schedule_set_no_worse_not_refused),
      cmocka_unit_test(test_schedule_set_moving_the_window_compares_the_same_hours),
      cmocka_unit_test(test_plan_demand_of_seconds_of_reports_is_not_known),
      cmocka_unit_test(test_schedule_check_judges_every_half_hour),
      cmocka_unit_test(test_schedule_set_compares_every_half_hour),
      cmocka_unit_test(test_schedule_check_partial_at_a_later_half_hour),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
