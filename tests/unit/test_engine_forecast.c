/* Unit tests of the engine's demand forecast (engine_forecast.c): the
 * history handed over by engine_set_history is preferred, a failed reload
 * keeps it and says its age, an exception date does not use ordinary
 * days, and every answer says its source. No loop, no database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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
  assert_int_equal(engine_load_rules(e, 1, NULL, 0, &s, 1, NULL, 0, 1), 0);
  /* The next minute asked sees the new exception dates. */
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_history_preferred_and_said),
      cmocka_unit_test(test_failed_reload_keeps_history_and_says_its_age),
      cmocka_unit_test(test_exception_date_falls_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
