/* The staffing report and the forecast's accuracy tracking as the engine
 * does them (engine_report.c, issue 18), driven through the engine's world
 * without I/O:
 *
 * - `report staffing` resolves its window (the schedule in force or next,
 *   --date, --from/--to) and answers from the engine's forecast; without a
 *   forecast every figure is unknown, never 0;
 * - when a schedule's window starts, the leader records the forecast per
 *   site once (ENGINE_REC_FORECAST), and two business minutes after it
 *   ends asks for its accuracy once (ENGINE_REC_FORECAST_CLOSE);
 * - an ended window's measured calls and stored accuracy, handed in by the
 *   owner, come back in the reply.
 *
 * The world's business clock starts at 2020-01-23 12:00 +08:00. */
#include "engine.h"
#include "err.h"
#include "rules.h"
#include "scenario.h"
#include "support/world.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MIN_MS 60000LL

static scenario_t scen;

static int load_scenario(void **state) {
  (void)state;
  const char *d = getenv("NIRC_SOURCE_DIR");
  if (!d) fail_msg("NIRC_SOURCE_DIR is not set; run through ctest");
  char path[1024], err[256];
  snprintf(path, sizeof path, "%s/scenario/provinces.json", d);
  if (scenario_load(path, &scen, err, sizeof err) != 0) fail_msg("%s", err);
  return 0;
}

static int free_scenario(void **state) {
  (void)state;
  scenario_free(&scen);
  return 0;
}

static engine_t *leading(world_t *w, bool forecast) {
  engine_opts_t o = world_opts(false);
  if (forecast) o.forecast = &scen;
  engine_t *e = world_engine_with(w, &o);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  world_connect_all(w, e, NULL);
  return e;
}

/* hubei and hunan to shaanxi, then henan: 12:30-13:30 Asia/Shanghai. */
static void add_window(world_t *w, engine_t *e) {
  char *src[] = {"hubei", "hunan"}, *hubs[] = {"shaanxi", "henan"};
  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  sp.name = "lunch";
  sp.sources = src;
  sp.n_sources = 2;
  sp.hubs = hubs;
  sp.n_hubs = 2;
  sp.start = "12:30";
  sp.end = "13:30";
  sp.tz = "Asia/Shanghai";
  Nirc__ScheduleRequest rq = NIRC__SCHEDULE_REQUEST__INIT;
  rq.op = NIRC__RULE_OP__RULE_OP_ADD;
  rq.spec = &sp;
  /* The scenario's lunch hour overloads both hubs (SL 40 % and 53 %): the
   * report is about such a window, so it is added anyway. */
  rq.force = true;
  engine_req_t r = {.client = w, .request_id = 7, .operator_name = "admin:bob", .label = "t"};
  size_t before = w->n_rep;
  engine_op_schedule(e, &r, &rq);
  world_flush(w);
  assert_int_equal(w->n_rep, before + 1);
  if (!w->rep[before].ok) fail_msg("%s", w->rep[before].msg);
}

static const Nirc__ReportReply *report(world_t *w, engine_t *e, const Nirc__ReportRequest *rq,
                                       const engine_report_actual_t *act) {
  engine_req_t r = {.client = w, .request_id = 9, .operator_name = "viewer:v", .label = "t"};
  size_t before = w->n_rep;
  engine_op_report(e, &r, rq, act);
  assert_int_equal(w->n_rep, before + 1);
  const world_reply_t *x = &w->rep[before];
  if (!x->ok) return NULL;
  assert_int_equal(x->body, NIRC__OPERATOR_REPLY__BODY_REPORT);
  return x->full->report;
}

/* Without a forecast nothing is known: every figure and total is unknown
 * (not known, not partial), and the reply does not pass zeros off as
 * figures. */
static void test_no_forecast_is_unknown_not_zero(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading(w, false);
  add_window(w, e);
  Nirc__ReportRequest rq = NIRC__REPORT_REQUEST__INIT;
  const Nirc__ReportReply *r = report(w, e, &rq, NULL);
  assert_non_null(r);
  assert_int_equal(r->n_intervals, 2);
  assert_int_equal(r->to_ms - r->from_ms, 3600000);
  assert_string_equal(r->first_hub, "shaanxi");
  assert_int_equal(r->n_sites, 4);
  for (size_t i = 0; i < r->n_sites; i++) {
    assert_false(r->sites[i]->alone_window->known);
    assert_false(r->sites[i]->alone_window->partial);
    assert_string_equal(r->sites[i]->accuracy->state, "not-ended");
  }
  assert_false(r->total_alone_window->known || r->total_alone_window->partial);
  assert_false(r->total_consolidated_window->known || r->total_consolidated_window->partial);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* With the scenario forecast: figures known, the window found by default,
 * by --date and by --from/--to; a bad request refused with the fix. */
static void test_window_and_forecast(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading(w, true);
  Nirc__ReportRequest rq = NIRC__REPORT_REQUEST__INIT;
  engine_req_t r0 = {.client = w, .request_id = 9, .operator_name = "viewer:v", .label = "t"};
  engine_op_report(e, &r0, &rq, NULL);
  assert_false(w->rep[w->n_rep - 1].ok); /* no schedule yet */
  assert_int_equal(w->rep[w->n_rep - 1].code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  assert_non_null(strstr(w->rep[w->n_rep - 1].msg, "schedule add"));
  add_window(w, e);
  const Nirc__ReportReply *r = report(w, e, &rq, NULL);
  assert_non_null(r);
  assert_int_equal(r->from_ms, WORLD_T0_MS + 30 * MIN_MS); /* today's 12:30 */
  assert_false(r->ended);
  const Nirc__StaffingSite *hubei = r->sites[0];
  assert_string_equal(hubei->site, "hubei");
  assert_true(hubei->alone[0]->known);
  assert_true(hubei->alone[0]->calls > 0 && hubei->alone[0]->agents > 0);
  assert_null(hubei->consolidated);
  const Nirc__StaffingSite *shaanxi = r->sites[2];
  assert_true(shaanxi->first_hub);
  /* The first hub's pool holds its own calls and both sources'. */
  double own = shaanxi->alone[0]->erlangs, pool = shaanxi->consolidated[0]->erlangs;
  assert_true(pool > own + hubei->alone[0]->erlangs);
  assert_true(r->total_consolidated_window->agents < r->total_alone_window->agents);
  uint64_t id = r->schedule_id;

  /* --date: the window that started the day before: ended. */
  Nirc__ReportRequest d = NIRC__REPORT_REQUEST__INIT;
  d.schedule_id = id;
  d.date = 20200122;
  r = report(w, e, &d, NULL);
  assert_non_null(r);
  assert_int_equal(r->from_ms, WORLD_T0_MS + 30 * MIN_MS - 86400000LL);
  assert_true(r->ended);
  /* Ended, but the owner gave nothing: unavailable, not zero. */
  assert_string_equal(r->sites[0]->accuracy->state, "unavailable");

  /* A window across midnight on the last day of a month ends the next
   * month (a night schedule, 22:00-08:00, on 2020-01-31). */
  char *src[] = {"hainan"}, *hubs[] = {"sichuan"};
  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  sp.name = "night";
  sp.sources = src;
  sp.n_sources = 1;
  sp.hubs = hubs;
  sp.n_hubs = 1;
  sp.start = "22:00";
  sp.end = "08:00";
  sp.tz = "Asia/Shanghai";
  Nirc__ScheduleRequest srq = NIRC__SCHEDULE_REQUEST__INIT;
  srq.op = NIRC__RULE_OP__RULE_OP_ADD;
  srq.spec = &sp;
  engine_req_t sr = {.client = w, .request_id = 8, .operator_name = "admin:bob", .label = "t"};
  engine_op_schedule(e, &sr, &srq);
  world_flush(w);
  assert_true(w->rep[w->n_rep - 1].ok);
  uint64_t night = 0;
  for (size_t k = 0; k < w->n_sch; k++)
    if (strcmp(w->sch[k].name, "night") == 0) night = w->sch[k].id;
  d.schedule_id = night;
  d.date = 20200131;
  r = report(w, e, &d, NULL);
  assert_non_null(r);
  assert_int_equal(r->from_ms, 1580479200000LL); /* 2020-01-31 22:00 +08:00 */
  assert_int_equal(r->to_ms, 1580515200000LL);   /* 2020-02-01 08:00 +08:00 */
  assert_int_equal(r->n_intervals, 20);
  d.date = 20200230;
  assert_null(report(w, e, &d, NULL));
  assert_non_null(strstr(w->rep[w->n_rep - 1].msg, "--date 2020-02-30: not a date"));

  /* --from/--to: 12:10 to 12:50 is two intervals from 12:00. */
  Nirc__ReportRequest f = NIRC__REPORT_REQUEST__INIT;
  f.from_ms = WORLD_T0_MS + 10 * MIN_MS;
  f.to_ms = WORLD_T0_MS + 50 * MIN_MS;
  r = report(w, e, &f, NULL);
  assert_non_null(r);
  assert_int_equal(r->first_interval_ms, WORLD_T0_MS);
  assert_int_equal(r->n_intervals, 2);

  Nirc__ReportRequest bad = NIRC__REPORT_REQUEST__INIT;
  bad.schedule_id = 999;
  assert_null(report(w, e, &bad, NULL));
  assert_int_equal(w->rep[w->n_rep - 1].code, NIRC__ERROR_CODE__ERROR_CODE_INVALID);
  bad.schedule_id = 0;
  bad.kind = "rota";
  assert_null(report(w, e, &bad, NULL));
  assert_non_null(strstr(w->rep[w->n_rep - 1].msg, "staffing"));
  world_flush(w);
  engine_free(e);
  world_free(w);
}

static size_t count_forecast(world_t *w, const char *site) {
  size_t n = 0;
  for (size_t k = 0; k < w->n_rec; k++)
    if (w->rec[k].kind == ENGINE_REC_FORECAST && (!site || strcmp(w->rec[k].site, site) == 0)) n++;
  return n;
}

/* The forecast is recorded once per site when the window starts, the
 * accuracy asked for once two minutes after it ends. */
static void test_accuracy_tracked_once(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading(w, true);
  add_window(w, e);
  world_tick(w, e, 29 * MIN_MS); /* 12:29 */
  assert_int_equal(count_forecast(w, NULL), 0);
  world_tick(w, e, MIN_MS); /* 12:30: the window starts */
  assert_int_equal(count_forecast(w, NULL), 4);
  assert_int_equal(count_forecast(w, "hubei"), 1);
  /* Calls per interval, two intervals, as an array literal. */
  for (size_t k = 0; k < w->n_rec; k++)
    if (w->rec[k].kind == ENGINE_REC_FORECAST) {
      const char *d = w->rec[k].detail;
      assert_true(d[0] == '{' && strchr(d, ',') && d[strlen(d) - 1] == '}');
      assert_null(strstr(d, "NULL"));
    }
  world_tick(w, e, 10 * MIN_MS);
  world_tick(w, e, 49 * MIN_MS); /* 13:29 */
  assert_int_equal(count_forecast(w, NULL), 4);
  world_tick(w, e, 2 * MIN_MS); /* 13:31: ended, its last minute not yet flushed */
  assert_int_equal(world_count_rec(w, ENGINE_REC_FORECAST_CLOSE, NULL), 0);
  world_tick(w, e, MIN_MS); /* 13:32 */
  assert_int_equal(world_count_rec(w, ENGINE_REC_FORECAST_CLOSE, NULL), 1);
  world_tick(w, e, 10 * MIN_MS);
  assert_int_equal(world_count_rec(w, ENGINE_REC_FORECAST_CLOSE, NULL), 1);
  assert_int_equal(count_forecast(w, NULL), 4);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A leader that takes over after a window ended, before the old one asked
 * for its accuracy, asks for it (once); one taking over within a window
 * records its forecast again (the store keeps the first) and closes it. */
static void test_new_leader_closes_what_the_old_one_left(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading(w, true);
  add_window(w, e);
  world_tick(w, e, 40 * MIN_MS); /* 12:40, within the window */
  assert_int_equal(count_forecast(w, NULL), 4);
  world_tick(w, e, 50 * MIN_MS); /* 13:30: ended; the leader dies now */
  assert_int_equal(world_count_rec(w, ENGINE_REC_FORECAST_CLOSE, NULL), 0);
  world_flush(w);
  engine_free(e);
  w->now += 5 * MIN_MS; /* 13:35 */
  engine_t *b = world_engine(w);
  assert_int_equal(engine_load_rules(b, 6, NULL, 0, w->sch, w->n_sch, NULL, 0, w->max_id), 0);
  engine_start_leading(b, 5000);
  world_connect_all(w, b, NULL);
  world_tick(w, b, 200);
  assert_int_equal(world_count_rec(w, ENGINE_REC_FORECAST_CLOSE, NULL), 1);
  world_tick(w, b, 10 * MIN_MS);
  assert_int_equal(world_count_rec(w, ENGINE_REC_FORECAST_CLOSE, NULL), 1);
  assert_int_equal(count_forecast(w, NULL), 4); /* nothing recorded after the end */
  world_flush(w);
  engine_free(b);
  world_free(w);
}

/* An ended window with the owner's measured calls and stored accuracy. */
static void test_ended_window_with_actuals(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading(w, true);
  add_window(w, e);
  Nirc__ReportRequest d = NIRC__REPORT_REQUEST__INIT;
  d.date = 20200122;
  engine_report_site_actual_t sites[2] = {{.site = "hubei",
                                           .calls = {40, 10},
                                           .minutes = {30, 0},
                                           .acc_state = "stored",
                                           .wape = 0.25,
                                           .actual_calls = 40,
                                           .intervals = 1},
                                          {.site = "shaanxi", .acc_state = "no-calls"}};
  engine_report_actual_t act = {.first_ms = WORLD_T0_MS + 30 * MIN_MS - 86400000LL,
                                .n_intervals = 2,
                                .available = true,
                                .sites = sites,
                                .n_sites = 2};
  const Nirc__ReportReply *r = report(w, e, &d, &act);
  assert_non_null(r);
  const Nirc__StaffingSite *hubei = r->sites[0], *hunan = r->sites[1];
  assert_true(hubei->actual[0]->known);
  assert_true(hubei->actual[0]->calls == 40);
  assert_false(hubei->actual[1]->known || hubei->actual[1]->partial); /* not measured */
  assert_true(hubei->actual_window->partial && hubei->actual_window->calls == 40);
  assert_string_equal(hubei->accuracy->state, "stored");
  assert_true(hubei->accuracy->wape == 0.25);
  assert_string_equal(hunan->accuracy->state, "not-tracked");
  assert_false(hunan->actual_window->known || hunan->actual_window->partial);
  assert_string_equal(r->sites[2]->accuracy->state, "no-calls");
  /* Read for another window (the schedule changed meanwhile): not used. */
  act.first_ms += 30 * MIN_MS;
  r = report(w, e, &d, &act);
  assert_string_equal(r->sites[0]->accuracy->state, "unavailable");
  world_flush(w);
  engine_free(e);
  world_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_forecast_is_unknown_not_zero),
      cmocka_unit_test(test_window_and_forecast),
      cmocka_unit_test(test_accuracy_tracked_once),
      cmocka_unit_test(test_new_leader_closes_what_the_old_one_left),
      cmocka_unit_test(test_ended_window_with_actuals),
  };
  return cmocka_run_group_tests(tests, load_scenario, free_scenario);
}
