/* Unit tests of wave verification by moved calls
 * (controller/routing/engine_verify.c), driven without a loop, a socket or
 * a database (tests/unit/support/world.c plays the agents): a schedule
 * moves hubei and guangdong to shaanxi one source per wave, and the first
 * source's reports say where its calls went. */
#include "alarm.h"
#include "engine.h"
#include "log.h"
#include "route.h"
#include "rules.h"
#include "sites.h"
#include "util.h"
#include "support/world.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* One report of `slug` as a source's proxy gives it: `home` calls to its
 * own PBX and `sent` to `hub`, counted per destination when `measured`.
 * Ten minutes of business time each, so that the calls stay a light load
 * for the capacity check (the test is about verification). */
static void report(world_t *w, const char *slug, unsigned home, const char *hub, unsigned sent,
                   bool measured) {
  site_t *s = sites_find(w->sites, slug);
  assert_non_null(s);
  Nirc__LoadReport r = NIRC__LOAD_REPORT__INIT;
  Nirc__SiteCount c = NIRC__SITE_COUNT__INIT, *cp = &c;
  r.site = s->slug;
  r.timestamp_ms = w->now;
  r.interval_ms = 600000;
  r.calls_offered = home;
  r.calls_answered = home;
  r.calls_routed_away = sent;
  r.not_measured = 0x1ff; /* a proxy: agents, queue, handle time, service level unknown */
  r.routing_measured = measured;
  if (measured && sent) {
    c.site = (char *)hub;
    c.calls = sent;
    r.routed_to = &cp;
    r.n_routed_to = 1;
  }
  site_minute_t flushed;
  sites_on_report(s, &r, w->now, w->now, &flushed);
}

typedef struct {
  world_t *w;
  engine_t *e;
  const char *first, *second; /* the sources of the first and the second wave */
} wv_t;

static bool moved(world_t *w, const char *slug) {
  return route_share_of(&w->applied[world_index(w, slug)], "shaanxi") == 1000;
}

/* Leads with the schedule in force, starts its first wave and has it
 * acknowledged: the verification window runs from now. */
static void wv_start(wv_t *v) {
  schedule_t sc = {
      .id = 7, .start_min = 0, .end_min = 1439, .days = 0x7f, .wave_size = 1, .enabled = true};
  nirc_strlcpy(sc.name, "night", sizeof sc.name);
  nirc_strlcpy(sc.tz, "Asia/Shanghai", sizeof sc.tz);
  assert_int_equal(rules_parse_slug_list("hubei,guangdong", &sc.sources, NULL, 0), 0);
  assert_int_equal(rules_parse_slug_list("shaanxi", &sc.hubs, NULL, 0), 0);
  v->w = world_new();
  v->e = world_engine(v->w);
  assert_int_equal(engine_load_rules(v->e, 5, NULL, 0, &sc, 1, NULL, 0, 100), 0);
  engine_start_leading(v->e, 0);
  world_connect_all(v->w, v->e, NULL);
  world_tick(v->w, v->e, 200);
  world_ack(v->w, v->e, 0, NULL);
  world_flush(v->w);
  v->first = moved(v->w, "hubei") ? "hubei" : "guangdong";
  v->second = strcmp(v->first, "hubei") == 0 ? "guangdong" : "hubei";
  assert_true(moved(v->w, v->first));
  assert_false(moved(v->w, v->second));
}

static void wv_end(wv_t *v) {
  world_flush(v->w);
  engine_free(v->e);
  world_free(v->w);
}

/* Reports of the first source every second for `secs` seconds: `home` and
 * `sent` calls each (after one report whose interval straddles the apply:
 * the baseline, whatever it holds). Acknowledges what is sent meanwhile. */
static void wv_window(wv_t *v, unsigned secs, unsigned home, unsigned sent, bool measured) {
  report(v->w, v->first, 7, "shaanxi", 3, measured); /* the baseline: before and after */
  world_tick(v->w, v->e, 200);
  for (unsigned t = 0; t < secs; t++) {
    report(v->w, v->first, home, "shaanxi", sent, measured);
    world_tick(v->w, v->e, 1000);
    world_ack(v->w, v->e, 0, NULL);
  }
}

static const char *verify_text(wv_t *v, const char *slug) {
  return engine_site_dir(v->e, world_index(v->w, slug))->verify;
}

/* Calls arrive at the source and go to the hub as its route says: the
 * wave is verified by them, and the next wave starts. */
static void test_verified_by_moved_calls(void **state) {
  (void)state;
  wv_t v;
  wv_start(&v);
  wv_window(&v, 11, 0, 20, true);
  assert_true(moved(v.w, v.second));
  const char *t = verify_text(&v, v.first);
  assert_non_null(strstr(t, "verified by moved calls"));
  assert_non_null(strstr(t, "of 200 calls since it applied v"));
  assert_non_null(strstr(t, "200 to shaanxi (route 100.0%)"));
  assert_false(engine_alarm_active(v.e, ALARM_MOVED, v.first));
  wv_end(&v);
}

/* Calls keep arriving at the source's PBX, none is sent to the hub the
 * route names: not verified, a `moved` alarm names source, hub and
 * counts, the next wave is held (its note says why), and once the calls
 * move the wave is verified over a new window and the next one starts. */
static void test_calls_not_moving_hold_the_next_wave(void **state) {
  (void)state;
  wv_t v;
  wv_start(&v);
  wv_window(&v, 11, 20, 0, true);
  assert_false(moved(v.w, v.second));
  assert_true(engine_alarm_active(v.e, ALARM_MOVED, v.first));
  const alarm_t *a = alarm_find(engine_alarms(v.e), ALARM_MOVED, v.first);
  assert_non_null(a);
  assert_string_equal(alarm_entry_severity(a), "critical");
  assert_non_null(strstr(a->message, "NOT verified: of 200 calls at"));
  assert_non_null(strstr(a->message, "0 went to shaanxi (route 100.0%, expected 200"));
  assert_non_null(strstr(a->message, "nircctl site"));
  assert_non_null(strstr(verify_text(&v, v.first), "NOT verified"));
  const char *note = engine_site_dir(v.e, world_index(v.w, v.second))->note;
  assert_non_null(strstr(note, "waits for the wave before it (schedule 7)"));
  assert_non_null(strstr(note, v.first));
  engine_rule_view_t rv;
  engine_rule_view(v.e, world_index(v.w, v.second), &rv);
  char want[200];
  snprintf(want, sizeof want,
           "home: waiting for its wave; %s's calls did not move in the wave before (alarm moved)",
           v.first);
  assert_string_equal(rv.detail, want);
  /* Still not moving: still held, the alarm stands (observed, not cleared
   * by the sweep) over windows longer than the alarm's clear time. */
  for (int t = 0; t < 45; t++) {
    report(v.w, v.first, 20, "shaanxi", 0, true);
    world_tick(v.w, v.e, 1000);
  }
  assert_false(moved(v.w, v.second));
  assert_true(engine_alarm_active(v.e, ALARM_MOVED, v.first));
  /* The PBX is fixed: the calls move; a window that holds only moved
   * calls verifies (the one still holding stuck calls does not). */
  for (int t = 0; t < 25; t++) {
    report(v.w, v.first, 0, "shaanxi", 20, true);
    world_tick(v.w, v.e, 1000);
    world_ack(v.w, v.e, 0, NULL);
  }
  assert_true(moved(v.w, v.second));
  assert_non_null(strstr(verify_text(&v, v.first), "verified by moved calls"));
  /* The condition is gone: the alarm clears after its clear time. */
  world_tick(v.w, v.e, 31000);
  assert_false(engine_alarm_active(v.e, ALARM_MOVED, v.first));
  wv_end(&v);
}

/* A quiet night: no call arrives at the source in the window. The wave
 * is verified on acknowledgements and hub health, and says that no moved
 * call was seen rather than that the traffic was checked. */
static void test_quiet_window_verified_without_moved_calls(void **state) {
  (void)state;
  wv_t v;
  wv_start(&v);
  wv_window(&v, 11, 0, 0, true);
  assert_true(moved(v.w, v.second));
  const char *t = verify_text(&v, v.first);
  assert_non_null(strstr(t, "no moved calls seen yet"));
  assert_null(strstr(t, "verified by moved calls"));
  assert_false(engine_alarm_active(v.e, ALARM_MOVED, v.first));
  wv_end(&v);
}

/* A handful of calls proves nothing: four calls that all stayed home do
 * not fail the wave, and the text says they were too few to judge. */
static void test_small_counts_never_fail(void **state) {
  (void)state;
  wv_t v;
  wv_start(&v);
  report(v.w, v.first, 7, "shaanxi", 3, true); /* the baseline */
  world_tick(v.w, v.e, 200);
  report(v.w, v.first, 4, "shaanxi", 0, true);
  world_tick(v.w, v.e, 11000);
  world_ack(v.w, v.e, 0, NULL);
  assert_true(moved(v.w, v.second));
  assert_non_null(strstr(verify_text(&v, v.first), "too few moved calls to judge"));
  assert_false(engine_alarm_active(v.e, ALARM_MOVED, v.first));
  wv_end(&v);
}

/* A source that does not measure routing (sim, exec without counts, an
 * older agent): verified on acknowledgements and hub health as before,
 * whatever its reports say, and the text says routing was not measured. */
static void test_unmeasured_source_as_before(void **state) {
  (void)state;
  wv_t v;
  wv_start(&v);
  wv_window(&v, 11, 20, 0, false);
  assert_true(moved(v.w, v.second));
  assert_non_null(strstr(verify_text(&v, v.first), "routing not measured"));
  assert_false(engine_alarm_active(v.e, ALARM_MOVED, v.first));
  wv_end(&v);
}

/* A share: 300 permille of the calls go to the hub. Counts near 30 % of
 * the calls verify (binomial spread); none at all does not. */
static void test_share_judged_by_binomial_tolerance(void **state) {
  (void)state;
  for (int bad = 0; bad < 2; bad++) {
    world_t *w = world_new();
    engine_t *e = world_engine(w);
    assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
    engine_start_leading(e, 0);
    world_connect_all(w, e, NULL);
    const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
    world_cutover(w, e, 41, src, 1, hub, 1, 300);
    world_ack(w, e, 0, NULL);
    world_flush(w);
    assert_int_equal(route_share_of(&w->applied[world_index(w, "hubei")], "shaanxi"), 300);
    report(w, "hubei", 7, "shaanxi", 3, true); /* the baseline */
    world_tick(w, e, 200);
    /* 10 reports of 20 calls: 200 calls, 60 expected at the hub, +-4 sd
     * (26) + 2: 55 (a low draw) verifies, 0 does not. */
    for (int t = 0; t < 10; t++) {
      unsigned sent = bad ? 0 : (t < 5 ? 5u : 6u);
      report(w, "hubei", 20 - sent, "shaanxi", sent, true);
      world_tick(w, e, 1000);
    }
    const char *t = engine_site_dir(e, world_index(w, "hubei"))->verify;
    if (bad) {
      assert_non_null(strstr(t, "NOT verified: of 200 calls at hubei"));
      assert_non_null(strstr(t, "0 went to shaanxi (route 30.0%, expected 60 +- 28)"));
      assert_true(engine_alarm_active(e, ALARM_MOVED, "hubei"));
    } else {
      assert_non_null(strstr(t, "verified by moved calls: of 200 calls"));
      assert_non_null(strstr(t, "55 to shaanxi (route 30.0%)"));
      assert_false(engine_alarm_active(e, ALARM_MOVED, "hubei"));
    }
    world_flush(w);
    engine_free(e);
    world_free(w);
  }
}

/* An engine leading epoch 5, every site connected and home. */
static engine_t *leading(world_t *w) {
  engine_t *e = world_engine(w);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 0);
  world_connect_all(w, e, NULL);
  return e;
}

/* Whether a cutover of `src` to shaanxi (not forced) is applied: false
 * when the capacity check refuses it. */
static bool cutover_applied(world_t *w, engine_t *e, const char *src, uint64_t rid) {
  const char *s[] = {src}, *hub[] = {"shaanxi"};
  size_t before = w->n_rep;
  world_cutover(w, e, rid, s, 1, hub, 1, 0);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  assert_int_equal(w->n_rep, before + 1);
  if (!w->rep[before].ok) assert_non_null(strstr(w->rep[before].msg, "shaanxi would need"));
  return w->rep[before].ok;
}

/* Calls guangdong's proxy sends to shaanxi while NIRC routes guangdong
 * home are load at shaanxi all the same: a cutover shaanxi had room for is
 * refused once they are measured (2 calls a second at 180 s: 360 Erlangs
 * on 30 agents). */
static void test_unrouted_inflow_loads_the_hub(void **state) {
  (void)state;
  for (int inflow = 0; inflow < 2; inflow++) {
    world_t *w = world_new();
    engine_t *e = leading(w);
    if (inflow) report(w, "guangdong", 0, "shaanxi", 1200, true);
    world_tick(w, e, 200);
    assert_int_equal(cutover_applied(w, e, "hubei", 41), !inflow);
    const char *note = engine_site_dir(e, world_index(w, "shaanxi"))->note;
    if (inflow)
      assert_string_equal(note, "receives 2.00 calls/s no route sends here (most from guangdong, "
                                "measured at its proxy): counted in its capacity checks, not in "
                                "its own demand");
    else
      assert_null(strstr(note, "no route sends here"));
    world_flush(w);
    engine_free(e);
    world_free(w);
  }
}

/* A source's route stops sending to a hub: what it sent there before,
 * including the report whose interval straddles the change, is no flow
 * now, so the hub is not loaded by calls that have gone home. */
static void test_flow_forgotten_when_the_route_leaves_the_hub(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading(w);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 41, src, 1, hub, 1, 0);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  assert_true(w->rep[0].ok);
  /* Hubei's calls go to Xi'an as routed: no unrouted inflow. Few enough
   * calls that hubei's own demand leaves shaanxi room for guangdong. */
  report(w, "hubei", 0, "shaanxi", 30, true);
  world_tick(w, e, 200);
  char *names[] = {"hubei"};
  Nirc__RestoreRequest r = NIRC__RESTORE_REQUEST__INIT;
  r.sources = names;
  r.n_sources = 1;
  engine_req_t rq = {.client = w, .request_id = 42, .operator_name = "operator:olga", .label = "t"};
  size_t from = w->n_sent;
  engine_op_restore(e, &rq, &r);
  world_ack(w, e, from, NULL);
  world_flush(w);
  assert_int_equal(route_share_of(&w->applied[world_index(w, "hubei")], "hubei"), 1000);
  /* The report straddling the return still counts calls sent to Xi'an. */
  report(w, "hubei", 0, "shaanxi", 1200, true);
  world_tick(w, e, 200);
  assert_true(cutover_applied(w, e, "guangdong", 43));
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A source restored and cut over again within its first wave's window:
 * only the newer wave speaks for it. The older one, judged first, leaves
 * its text alone (it was seen in integration.sip: the older wave's "no
 * moved calls seen yet" showed for the newer cutover). */
static void test_older_wave_does_not_speak_for_a_rerouted_source(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading(w);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 41, src, 1, hub, 1, 0);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  world_tick(w, e, 3000);
  char *names[] = {"hubei"};
  Nirc__RestoreRequest r = NIRC__RESTORE_REQUEST__INIT;
  r.sources = names;
  r.n_sources = 1;
  engine_req_t rq = {.client = w, .request_id = 42, .operator_name = "operator:olga", .label = "t"};
  engine_op_restore(e, &rq, &r);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  world_tick(w, e, 1000);
  world_cutover(w, e, 43, src, 1, hub, 1, 0);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  assert_int_equal(route_share_of(&w->applied[world_index(w, "hubei")], "shaanxi"), 1000);
  report(w, "hubei", 7, "shaanxi", 3, true); /* the newer wave's baseline */
  world_tick(w, e, 200);
  for (int t = 0; t < 7; t++) { /* past the first wave's window, not the second's */
    report(w, "hubei", 0, "shaanxi", 20, true);
    world_tick(w, e, 1000);
  }
  assert_string_equal(engine_site_dir(e, world_index(w, "hubei"))->verify, "");
  for (int t = 0; t < 4; t++) {
    report(w, "hubei", 0, "shaanxi", 20, true);
    world_tick(w, e, 1000);
  }
  assert_non_null(strstr(engine_site_dir(e, world_index(w, "hubei"))->verify,
                         "verified by moved calls: of 200 calls"));
  world_flush(w);
  engine_free(e);
  world_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_verified_by_moved_calls),
      cmocka_unit_test(test_calls_not_moving_hold_the_next_wave),
      cmocka_unit_test(test_quiet_window_verified_without_moved_calls),
      cmocka_unit_test(test_small_counts_never_fail),
      cmocka_unit_test(test_unmeasured_source_as_before),
      cmocka_unit_test(test_share_judged_by_binomial_tolerance),
      cmocka_unit_test(test_older_wave_does_not_speak_for_a_rerouted_source),
      cmocka_unit_test(test_unrouted_inflow_loads_the_hub),
      cmocka_unit_test(test_flow_forgotten_when_the_route_leaves_the_hub),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
