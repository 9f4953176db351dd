/* Unit tests for configured capacity and plausible reports (issues 14
 * point 3 and 16 point 2): the roster parser and clock
 * (controller/routing/capacity.c), the planner on unmeasured and
 * configured capacity (planner.c), and the report checks against the
 * configuration and the site's own last report (sites.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capacity.h"
#include "util.h"
#include "err.h"
#include "planner.h"
#include "report.h"
#include "sites.h"
#include "support/planworld.h"

/* ---- roster ------------------------------------------------------------- */

static void test_roster_parses_and_formats(void **state) {
  (void)state;
  capacity_t c = {0};
  char err[200], text[CAPACITY_ROSTER_TEXT_MAX];
  assert_int_equal(capacity_parse_roster("08:00-22:00=72, 22:00-08:00=28", &c, err, sizeof err), 0);
  assert_int_equal(c.n_shift, 2);
  assert_int_equal(c.shift[0].start_min, 480);
  assert_int_equal(c.shift[0].end_min, 1320);
  assert_int_equal(c.shift[1].agents, 28);
  capacity_format_roster(&c, text, sizeof text);
  assert_string_equal(text, "08:00-22:00=72,22:00-08:00=28");
  /* 24:00 ends a day; the whole day is one window. */
  assert_int_equal(capacity_parse_roster("00:00-24:00=5", &c, err, sizeof err), 0);
  capacity_format_roster(&c, text, sizeof text);
  assert_string_equal(text, "00:00-00:00=5");
  assert_int_equal(capacity_parse_roster("", &c, err, sizeof err), 0);
  assert_int_equal(c.n_shift, 0);
}

static void test_roster_refuses_what_it_cannot_mean(void **state) {
  (void)state;
  static const struct {
    const char *text, *words;
  } bad[] = {
      {"08:00-22:00", "is not HH:MM-HH:MM=AGENTS"},
      {"8:00-22:00=3", "is not HH:MM-HH:MM=AGENTS"},
      {"08:60-22:00=3", "is not HH:MM-HH:MM=AGENTS"},
      {"24:00-08:00=3", "is not HH:MM-HH:MM=AGENTS"},
      {"08:00-22:00=x", "has no number of agents"},
      {"08:00-22:00=100001", "more than 100000 agents"},
      {"08:00-22:00=5,21:00-23:00=3", "overlap"},
      {"22:00-08:00=5,07:00-09:00=3", "overlap"},
      {"08:00-22:00=5,", "ends with a comma"},
      {"08:00-22:00=5;22:00-08:00=2", "unexpected ';'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    capacity_t c = {.n_shift = 1, .shift = {{1, 2, 3}}};
    char err[200] = "";
    assert_int_equal(capacity_parse_roster(bad[i].text, &c, err, sizeof err), NIRC_EINVAL);
    if (!strstr(err, bad[i].words)) fail_msg("'%s': %s", bad[i].text, err);
    assert_int_equal(c.n_shift, 1); /* unchanged */
  }
  /* A roster above the seats is refused as a whole configuration. */
  capacity_t c = {.configured = true, .seats = 20};
  char err[200];
  assert_int_equal(capacity_parse_roster("08:00-22:00=72", &c, err, sizeof err), 0);
  assert_int_equal(capacity_validate(&c, err, sizeof err), NIRC_EINVAL);
  assert_non_null(strstr(err, "72 agents at 08:00 but the site has 20 seats"));
  c.seats = 80;
  c.utc_offset_min = 900;
  assert_int_equal(capacity_validate(&c, err, sizeof err), NIRC_EINVAL);
}

static void test_roster_by_local_time(void **state) {
  (void)state;
  capacity_t c = {.configured = true, .seats = 80, .utc_offset_min = 480};
  char err[200], note[64];
  assert_int_equal(capacity_parse_roster("08:00-22:00=72,22:00-08:00=28", &c, err, sizeof err), 0);
  uint32_t a = 0;
  /* 14:00 UTC is 22:00 in China: the night window starts. */
  assert_true(capacity_agents_at(&c, utc_ms(2020, 1, 23, 14, 0), &a, note, sizeof note));
  assert_int_equal(a, 28);
  assert_string_equal(note, "configured roster, 28 agents at 22:00");
  assert_true(capacity_agents_at(&c, utc_ms(2020, 1, 23, 13, 59), &a, note, sizeof note));
  assert_int_equal(a, 72);
  assert_true(capacity_agents_at(&c, utc_ms(2020, 1, 23, 23, 30), &a, NULL, 0));
  assert_int_equal(a, 28); /* 07:30 next day in China is still night... */
  assert_true(capacity_agents_at(&c, utc_ms(2020, 1, 23, 23, 59) + 60000, &a, NULL, 0));
  assert_int_equal(a, 72); /* ...until 08:00 local */
  /* A gap in the roster is a closed centre: 0 agents, said as such. */
  assert_int_equal(capacity_parse_roster("08:00-12:00=10", &c, err, sizeof err), 0);
  assert_true(capacity_agents_at(&c, cst_ms(2020, 1, 23, 13, 0), &a, note, sizeof note));
  assert_int_equal(a, 0);
  /* Seats alone: that many all day. */
  capacity_t s = {.configured = true, .seats = 40};
  assert_true(capacity_agents_at(&s, cst_ms(2020, 1, 23, 3, 0), &a, note, sizeof note));
  assert_int_equal(a, 40);
  assert_string_equal(note, "configured seats, 40 agents");
  capacity_t none = {0};
  assert_false(capacity_agents_at(&none, 0, &a, NULL, 0));
  /* The report bound: the largest of seats and roster, with headroom. */
  assert_int_equal(capacity_report_limit(&c), 80 * 120 / 100 + 5);
  assert_int_equal(capacity_report_limit(&none), 0);
  capacity_t r = {.configured = true};
  assert_int_equal(capacity_parse_roster("08:00-22:00=50", &r, err, sizeof err), 0);
  assert_int_equal(capacity_report_limit(&r), 65);
}

/* ---- planner ------------------------------------------------------------ */

/* Hubei (12 Erl) cut over to Shaanxi, whose staffing is given. */
static pworld_t *cut_world(capacity_source_t src, unsigned staffed, bool force) {
  pworld_t *w = pworld_new(DAY_NOW);
  add_site(w, "hubei", false, 12, 230, 13);
  plan_site_t *h = add_site(w, "shaanxi", true, 5, 230, staffed);
  h->cap_source = src;
  if (src == CAPACITY_CONFIGURED)
    snprintf(h->cap_note, sizeof h->cap_note, "configured roster, %u agents at 10:00", staffed);
  add_cutover(w, 7, "hubei", "shaanxi", "drill")->force = force;
  return w;
}

static void test_planner_refuses_unmeasured_capacity(void **state) {
  (void)state;
  /* Unknown capacity: no prediction, whatever the zero in staffed says,
   * and the alarm names the fix. */
  pworld_t *w = cut_world(CAPACITY_UNKNOWN, 0, false);
  plan_t p;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_NO_HUB, "hubei");
  assert_non_null(a);
  assert_non_null(strstr(a->message, "capacity of shaanxi is not measured: configure it "
                                     "(nircctl capacity shaanxi"));
  assert_non_null(strstr(a->message, "or use --force"));
  assert_int_equal(a->n_hubs, 1);
  assert_true(a->hubs[0].unmeasured);
  assert_false(a->hubs[0].capacity);
  assert_int_equal(a->hubs[0].cap_source, CAPACITY_UNKNOWN);
  assert_null(find_capacity(&p, "shaanxi"));
  planner_free(&p);
  free(w);
  /* A schedule cannot be forced: its alarm names the fix, not --force. */
  w = cut_world(CAPACITY_UNKNOWN, 0, false);
  w->n_cutovers = 0;
  add_night(w, 9, "hubei", "shaanxi", "Asia/Shanghai");
  w->now_ms = NIGHT_NOW;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  a = find_alarm(&p, PLAN_ALARM_NO_HUB, "hubei");
  assert_non_null(a);
  assert_non_null(strstr(a->message, "capacity of shaanxi is not measured: configure it"));
  assert_null(strstr(a->message, "--force"));
  planner_free(&p);
  free(w);
  /* Unknown even with agents in staffed (an engine bug would be caught). */
  w = cut_world(CAPACITY_UNKNOWN, 500, false);
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  planner_free(&p);
  free(w);
  /* Forced: the operator knows; the plan marks where its agents came from. */
  w = cut_world(CAPACITY_UNKNOWN, 0, true);
  plan_checked(w, &p);
  assert_route(&p, "hubei", "shaanxi:1000");
  const plan_capacity_t *c = find_capacity(&p, "shaanxi");
  assert_non_null(c);
  assert_int_equal(c->cap_source, CAPACITY_UNKNOWN);
  assert_true(c->forced);
  planner_free(&p);
  free(w);
}

/* A load nobody measured is not a zero: a source whose calls or handle
 * time are not known (and no forecast gives them) is not moved, and a hub
 * whose own load is not known takes no new source, unless forced. Before,
 * 20 calls/s with no handle time counted as 0 Erlangs and went to a hub
 * with one agent. An established move stays: withdrawing it on a gap in
 * the figures would be a guess too. */
static void test_planner_refuses_unknown_load(void **state) {
  (void)state;
  plan_t p;
  /* The source's handle time is not known. */
  pworld_t *w = cut_world(CAPACITY_MEASURED, 40, false);
  site_of(w, "hubei")->aht_s = 0;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_NO_HUB, "hubei");
  assert_non_null(a);
  assert_non_null(strstr(a->message, "its load is not known: its handle time is not measured"));
  planner_free(&p);
  /* Forced: the operator knows, and the plan marks the hub forced with a
   * load it does not know (the warning says so, not "SL 100%"). */
  w->cutovers[0].force = true;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "shaanxi:1000");
  assert_true(find_capacity(&p, "shaanxi")->forced);
  assert_true(find_capacity(&p, "shaanxi")->load_unknown);
  planner_free(&p);
  free(w);

  /* Its calls are not measured yet, and no forecast covers them. */
  w = cut_world(CAPACITY_MEASURED, 40, false);
  site_of(w, "hubei")->demand_unknown = true;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  a = find_alarm(&p, PLAN_ALARM_NO_HUB, "hubei");
  assert_non_null(a);
  assert_non_null(strstr(a->message, "its calls are not measured yet"));
  planner_free(&p);
  /* A forecast covers them: known, and it fits. */
  site_of(w, "hubei")->forecast_cps = 12.0 / 230;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "shaanxi:1000");
  planner_free(&p);
  free(w);

  /* The hub's own handle time is not known: it takes no new source... */
  w = cut_world(CAPACITY_MEASURED, 40, false);
  site_of(w, "shaanxi")->aht_s = 0;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  a = find_alarm(&p, PLAN_ALARM_NO_HUB, "hubei");
  assert_non_null(a);
  assert_non_null(strstr(a->message, "shaanxi: the load it answers is not known"));
  planner_free(&p);
  /* ...but keeps one it answers already. */
  nirc_strlcpy(site_of(w, "hubei")->cur_hub, "shaanxi", sizeof site_of(w, "hubei")->cur_hub);
  plan_checked(w, &p);
  assert_route(&p, "hubei", "shaanxi:1000");
  planner_free(&p);
  free(w);
}

/* A hub that cannot be used is named for why, not always "offline":
 * found from outside, "henan is offline" was said right after a
 * controller started, while nircctl status showed henan online (its first
 * report had not come). */
static void test_planner_says_why_a_hub_is_not_usable(void **state) {
  (void)state;
  static const struct {
    int why;
    const char *words;
  } cases[] = {{PLAN_DOWN_OFFLINE, "shaanxi is offline"},
               {PLAN_DOWN_STALE, "shaanxi sends no fresh report"},
               {PLAN_DOWN_NEVER_SEEN, "shaanxi has not connected to this controller"},
               {PLAN_DOWN_NO_REPORT, "shaanxi has not reported yet"},
               {PLAN_DOWN_PBX, "shaanxi cannot read its PBX"}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    pworld_t *w = cut_world(CAPACITY_MEASURED, 40, false);
    site_of(w, "shaanxi")->online = false;
    site_of(w, "shaanxi")->down_why = cases[k].why;
    plan_t p;
    plan_checked(w, &p);
    assert_home(&p, "hubei");
    const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_NO_HUB, "hubei");
    assert_non_null(a);
    assert_non_null(strstr(a->message, cases[k].words));
    planner_free(&p);
    free(w);
  }
}

/* No agent answers no call: a hub with nobody staffed takes no source,
 * even one with no calls now (0 Erlangs predict an SL of 100%). The Xi'an
 * lockdown: the hub lost its own staff. */
static void test_planner_refuses_a_hub_with_no_agents(void **state) {
  (void)state;
  pworld_t *w = pworld_new(DAY_NOW);
  add_site(w, "hubei", false, 0, 230, 13);
  add_site(w, "shaanxi", true, 0, 230, 0);
  add_cutover(w, 7, "hubei", "shaanxi", "drill");
  plan_t p;
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_CAPACITY, "hubei");
  assert_non_null(a);
  assert_non_null(strstr(a->message, "shaanxi would need 1 agents (has 0)"));
  /* The plan's line for the refused load says the same. */
  assert_int_equal(find_capacity(&p, "shaanxi")->with_refused_needed, 1);
  planner_free(&p);
  free(w);
}

static void test_planner_predicts_from_configured_capacity(void **state) {
  (void)state;
  pworld_t *w = cut_world(CAPACITY_CONFIGURED, 40, false);
  plan_t p;
  plan_checked(w, &p);
  assert_route(&p, "hubei", "shaanxi:1000");
  const plan_capacity_t *c = find_capacity(&p, "shaanxi");
  assert_non_null(c);
  assert_int_equal(c->cap_source, CAPACITY_CONFIGURED);
  assert_string_equal(c->cap_note, "configured roster, 40 agents at 10:00");
  assert_int_equal(c->after.agents, 40);
  planner_free(&p);
  free(w);
  /* Too few configured agents: refused for capacity, like measured ones. */
  w = cut_world(CAPACITY_CONFIGURED, 10, false);
  plan_checked(w, &p);
  assert_home(&p, "hubei");
  const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_CAPACITY, "hubei");
  assert_non_null(a);
  assert_true(a->hubs[0].capacity);
  assert_int_equal(a->hubs[0].cap_source, CAPACITY_CONFIGURED);
  assert_int_equal(a->hubs[0].agents, 10);
  planner_free(&p);
  free(w);
}

/* ---- plausible reports -------------------------------------------------- */

static site_t *hub(sites_t *s) {
  sites_init(s, 3000);
  assert_int_equal(sites_add(s, "hubei", "Hubei", "湖北", true), 0);
  site_t *h = sites_find(s, "hubei");
  h->cap.configured = true;
  h->cap.seats = 80;
  return h;
}

static Nirc__LoadReport honest(void) {
  Nirc__LoadReport r = NIRC__LOAD_REPORT__INIT;
  r.site = "hubei";
  r.interval_ms = 1000;
  r.calls_offered = 10;
  r.calls_answered = 9;
  r.calls_abandoned = 1;
  r.calls_in_queue = 4;
  r.agents_logged_in = 70;
  r.agents_ready = 10;
  r.agents_talking = 55;
  r.agents_not_ready = 5;
  return r;
}

static void test_reports_checked_against_seats_and_themselves(void **state) {
  (void)state;
  sites_t s;
  site_t *h = hub(&s);
  Nirc__LoadReport r = honest();
  sites_refusal_t kind;
  char err[300];
  assert_int_equal(sites_check_plausible(h, &r, &kind, err, sizeof err), 0);
  /* Seats x 1.2 + 5 = 101 is the most a report may claim. */
  r.agents_logged_in = 101;
  assert_int_equal(sites_check_plausible(h, &r, &kind, err, sizeof err), 0);
  r.agents_logged_in = 1000000;
  assert_int_equal(sites_check_plausible(h, &r, &kind, err, sizeof err), NIRC_ERANGE);
  assert_int_equal(kind, SITES_REFUSED_SEATS);
  assert_non_null(
      strstr(err, "hubei reported 1000000 agents logged in; it has 80 seats configured"));
  /* Not measured: not checked (nothing was claimed). */
  r.not_measured = REPORT_NM_AGENTS;
  assert_int_equal(sites_check_plausible(h, &r, &kind, err, sizeof err), 0);
  /* Without configuration only consistency is checked. */
  r = honest();
  r.agents_logged_in = 1000000;
  h->cap.configured = false;
  assert_int_equal(sites_check_plausible(h, &r, &kind, err, sizeof err), 0);
  h->cap.configured = true;
  /* States beyond the logged-in count. */
  r = honest();
  r.agents_ready = 20;
  assert_int_equal(sites_check_plausible(h, &r, &kind, err, sizeof err), NIRC_ERANGE);
  assert_int_equal(kind, SITES_REFUSED_CONSISTENCY);
  assert_non_null(strstr(err, "more than the 70 logged in"));
  /* More calls ending than could: after a report with 4 queued and 70
   * agents, at most 10 + 4 + 70 (+5) may end in the next interval. */
  r = honest();
  site_minute_t m;
  sites_on_report(h, &r, 1000, 60000, &m);
  r.calls_answered = 85;
  r.calls_abandoned = 5;
  assert_int_equal(sites_check_plausible(h, &r, &kind, err, sizeof err), NIRC_ERANGE);
  assert_int_equal(kind, SITES_REFUSED_CONSISTENCY);
  assert_non_null(strstr(err, "at most 84 could end"));
  r.calls_abandoned = 4;
  assert_int_equal(sites_check_plausible(h, &r, &kind, err, sizeof err), 0);
  /* A proxy's report (no queue): the relation cannot be judged. */
  r.calls_answered = 1000;
  r.not_measured = REPORT_NM_PROXY;
  assert_int_equal(sites_check_plausible(h, &r, &kind, err, sizeof err), 0);
  sites_free(&s);
}

static void test_unmeasured_figures_stay_unknown_in_the_registry(void **state) {
  (void)state;
  sites_t s;
  site_t *h = hub(&s);
  Nirc__LoadReport r = NIRC__LOAD_REPORT__INIT;
  r.site = "hubei";
  r.interval_ms = 60000;
  r.calls_offered = 30;
  r.calls_answered = 30;
  r.not_measured = REPORT_NM_PROXY | 0x80000000u; /* a newer agent's bit is dropped */
  site_minute_t m;
  sites_on_report(h, &r, 1000, 60000, &m);
  assert_int_equal(h->last.not_measured, REPORT_NM_PROXY);
  assert_int_equal(h->minute.agents_reports, 0);
  assert_int_equal(h->minute.aht_reports, 0);
  assert_int_equal(h->minute.queue_reports, 0);
  assert_true(h->aht_calls == 0);   /* answered calls without a handle time say nothing */
  assert_true(h->sl == 1.0);        /* not dragged to 0 */
  assert_true(h->demand_calls > 0); /* calls are measured */
  Nirc__LoadReport j = r;
  j.site = "hubei";
  json_t *o = report_to_json(&j);
  assert_non_null(o);
  assert_true(json_is_null(json_object_get(o, "agents_logged_in")));
  assert_true(json_is_null(json_object_get(o, "service_level")));
  assert_true(json_is_null(json_object_get(o, "sl_threshold_s")));
  assert_int_equal(json_integer_value(json_object_get(o, "calls_offered")), 30);
  assert_true(json_array_size(json_object_get(o, "not_measured")) >= 9);
  json_decref(o);
  sites_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roster_parses_and_formats),
      cmocka_unit_test(test_roster_refuses_what_it_cannot_mean),
      cmocka_unit_test(test_roster_by_local_time),
      cmocka_unit_test(test_planner_refuses_unmeasured_capacity),
      cmocka_unit_test(test_planner_predicts_from_configured_capacity),
      cmocka_unit_test(test_planner_refuses_unknown_load),
      cmocka_unit_test(test_planner_refuses_a_hub_with_no_agents),
      cmocka_unit_test(test_planner_says_why_a_hub_is_not_usable),
      cmocka_unit_test(test_reports_checked_against_seats_and_themselves),
      cmocka_unit_test(test_unmeasured_figures_stay_unknown_in_the_registry),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
