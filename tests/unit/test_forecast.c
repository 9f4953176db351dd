/* Unit tests for the demand forecast (controller/routing/forecast.c) on
 * synthetic histories whose answer is known by construction: weekly
 * seasonality, a trend, a holiday, gaps, a history too short, and the
 * handle time measured only part of the time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "err.h"
#include "forecast.h"

static void assert_near(double got, double want, double tol, const char *what) {
  if (!(fabs(got - want) <= tol)) fail_msg("%s: got %.6f, want %.6f +- %.6f", what, got, want, tol);
}

/* The target: Monday 2026-03-30. Weeks back: 2026-03-23, 16, 09, 02 ... */
#define TARGET 20260330

typedef struct {
  forecast_sample_t v[4096];
  size_t n;
} hist_t;

static void add(hist_t *h, int32_t date, int slot, double calls, double aht, int minutes) {
  assert_true(h->n < sizeof h->v / sizeof h->v[0]);
  h->v[h->n++] = (forecast_sample_t){date, (uint8_t)slot, (uint16_t)minutes, calls, aht};
}

/* `days` days of full half-hours before TARGET: calls(day, slot). */
static void fill(hist_t *h, int days, double (*calls)(int32_t date, int slot), double aht) {
  for (int d = days; d >= 1; d--) {
    int32_t date = forecast_date_add(TARGET, -d);
    for (int s = 0; s < FORECAST_SLOTS; s++)
      add(h, date, s, calls(date, s), aht, 30);
  }
}

static void test_calendar(void **state) {
  (void)state;
  assert_int_equal(forecast_weekday(20260330), 0); /* Monday */
  assert_int_equal(forecast_weekday(19700101), 3); /* Thursday */
  assert_int_equal(forecast_weekday(20240229), 3);
  assert_int_equal(forecast_date_add(20260301, -1), 20260228);
  assert_int_equal(forecast_date_add(20241231, 1), 20250101);
  assert_int_equal(forecast_date_add(20240228, 1), 20240229);
  int64_t z;
  assert_false(forecast_day_number(20250229, &z));
  assert_false(forecast_day_number(20251301, &z));
  assert_true(forecast_day_number(19700101, &z));
  assert_int_equal(z, 0);
}

/* Weekdays differ (Mondays busy, Sundays quiet) and so do the hours; the
 * forecast for a Monday must read Mondays only. */
static double seasonal(int32_t date, int slot) {
  double day = forecast_weekday(date) == 0 ? 2.0 : forecast_weekday(date) == 6 ? 0.5 : 1.0;
  return day * (slot >= 16 && slot < 44 ? 900 : 90); /* per half-hour */
}

static void test_weekly_seasonality(void **state) {
  (void)state;
  static hist_t h;
  h.n = 0;
  fill(&h, 8 * 7, seasonal, 120);
  forecast_opts_t o = forecast_defaults(8);
  forecast_cell_t c;
  assert_int_equal(forecast_at(h.v, h.n, NULL, 0, TARGET, 20, &o, &c), 0);
  assert_int_equal(c.status, FORECAST_OK);
  assert_int_equal(c.weeks, 8);
  assert_near(c.cps, 1800.0 / 1800.0, 1e-9, "Monday 10:00");
  assert_near(c.aht_s, 120, 1e-9, "aht");
  assert_int_equal(forecast_at(h.v, h.n, NULL, 0, TARGET, 2, &o, &c), 0);
  assert_near(c.cps, 180.0 / 1800.0, 1e-9, "Monday 01:00");
  /* A Sunday (2026-03-29 is in the history: forecast the one after). */
  assert_int_equal(forecast_at(h.v, h.n, NULL, 0, 20260405, 20, &o, &c), 0);
  assert_near(c.cps, 450.0 / 1800.0, 1e-9, "Sunday 10:00");
  assert_int_equal(c.weeks, 8); /* Sundays 2026-02-08 .. 2026-03-29 */
}

/* A linear trend: each week 10% more than the week before. The weights
 * are decay^(k-1): the answer is their weighted mean, computed here from
 * the definition; it must sit nearer the last week than the plain mean. */
static int32_t trend_base = 0;
static double trend(int32_t date, int slot) {
  (void)slot;
  int64_t a, b;
  forecast_day_number(date, &a);
  forecast_day_number(trend_base, &b);
  return 300.0 * (1.0 + 0.1 * (double)((a - b) / 7));
}

static void test_trend(void **state) {
  (void)state;
  static hist_t h;
  h.n = 0;
  trend_base = forecast_date_add(TARGET, -8 * 7);
  fill(&h, 8 * 7, trend, 0);
  forecast_opts_t o = forecast_defaults(8);
  double num = 0, den = 0, plain = 0;
  for (int k = 1; k <= 8; k++) { /* k weeks back: week 8-k of the trend */
    double calls = 300.0 * (1.0 + 0.1 * (8 - k));
    double w = pow(FORECAST_DECAY, k - 1);
    num += w * calls / 1800.0;
    den += w;
    plain += calls / 1800.0 / 8;
  }
  forecast_cell_t c;
  assert_int_equal(forecast_at(h.v, h.n, NULL, 0, TARGET, 30, &o, &c), 0);
  assert_int_equal(c.status, FORECAST_OK);
  assert_near(c.cps, num / den, 1e-9, "weighted");
  assert_near(c.aht_s, 0, 0, "aht not measured stays unknown");
  o.method = FORECAST_MEAN;
  assert_int_equal(forecast_at(h.v, h.n, NULL, 0, TARGET, 30, &o, &c), 0);
  assert_near(c.cps, plain, 1e-9, "mean");
  o.method = FORECAST_LAST_WEEK;
  assert_int_equal(forecast_at(h.v, h.n, NULL, 0, TARGET, 30, &o, &c), 0);
  assert_near(c.cps, 300.0 * 1.7 / 1800.0, 1e-9, "last week");
  assert_true(num / den > plain);
}

/* A holiday two Mondays back with a tenth of the calls: an ordinary
 * Monday ignores it; the holiday itself is forecast only from the same
 * date a year earlier, or not at all. */
static double flat(int32_t date, int slot) {
  (void)date;
  (void)slot;
  return 600;
}

static void test_holiday(void **state) {
  (void)state;
  static hist_t h;
  h.n = 0;
  fill(&h, 5 * 7, flat, 200);
  int32_t holiday = forecast_date_add(TARGET, -14);
  for (size_t i = 0; i < h.n; i++)
    if (h.v[i].date == holiday) h.v[i].calls = 60;
  int32_t exc[] = {holiday};
  forecast_opts_t o = forecast_defaults(8);
  forecast_cell_t c;
  assert_int_equal(forecast_at(h.v, h.n, exc, 1, TARGET, 10, &o, &c), 0);
  assert_int_equal(c.status, FORECAST_OK);
  assert_int_equal(c.weeks, 4); /* five Mondays, one a holiday */
  assert_near(c.cps, 600.0 / 1800.0, 1e-9, "ordinary Monday");
  /* Without the exception date the holiday drags it down: the test can fail. */
  assert_int_equal(forecast_at(h.v, h.n, NULL, 0, TARGET, 10, &o, &c), 0);
  assert_true(c.cps < 600.0 / 1800.0 - 0.01);
  /* The next year's same date: forecast from the holiday alone. */
  int32_t next = holiday + 10000;
  int32_t exc2[] = {holiday, next};
  assert_int_equal(forecast_at(h.v, h.n, exc2, 2, next, 10, &o, &c), 0);
  assert_int_equal(c.status, FORECAST_OK);
  assert_int_equal(c.weeks, 1);
  assert_near(c.cps, 60.0 / 1800.0, 1e-9, "holiday from last year's");
  /* An exception date with no history of its own: said, not guessed. */
  int32_t exc3[] = {holiday, TARGET};
  assert_int_equal(forecast_at(h.v, h.n, exc3, 2, TARGET, 10, &o, &c), 0);
  assert_int_equal(c.status, FORECAST_NO_EXCEPTION);
}

/* Gaps: a half-hour with under 15 minutes reported is missing, not zero;
 * one with 20 minutes counts at its rate over those 20 minutes. */
static void test_gaps(void **state) {
  (void)state;
  static hist_t h;
  h.n = 0;
  for (int k = 1; k <= 4; k++) {
    int32_t d = forecast_date_add(TARGET, -7 * k);
    if (k == 2) {
      add(&h, d, 5, 10, 0, 10); /* mostly missing: not a quiet half-hour */
    } else if (k == 3) {
      add(&h, d, 5, 400, 90, 20); /* 20 minutes at 400 calls: 1800 per 30 */
    } else {
      add(&h, d, 5, 600, 90, 30);
    }
  }
  forecast_opts_t o = forecast_defaults(8);
  forecast_cell_t c;
  assert_int_equal(forecast_at(h.v, h.n, NULL, 0, TARGET, 5, &o, &c), 0);
  assert_int_equal(c.status, FORECAST_OK);
  assert_int_equal(c.weeks, 3);
  /* Weeks 1, 3, 4 back: rates 600/1800, 400/1200, 600/1800, all 1/3. */
  assert_near(c.cps, 1.0 / 3.0, 1e-9, "gaps");
  /* Seasonal naive: last week is there. Drop it and it has nothing. */
  o.method = FORECAST_LAST_WEEK;
  assert_int_equal(forecast_at(h.v, h.n, NULL, 0, TARGET, 5, &o, &c), 0);
  assert_int_equal(c.status, FORECAST_OK);
  assert_int_equal(forecast_at(h.v + 1, h.n - 1, NULL, 0, TARGET, 5, &o, &c), 0);
  assert_int_equal(c.status, FORECAST_TOO_SHORT);
}

/* Too short: two Mondays of history is under the three-week threshold;
 * samples on or after the target date, or older than `weeks`, never count. */
static void test_too_short(void **state) {
  (void)state;
  static hist_t h;
  h.n = 0;
  fill(&h, 2 * 7, flat, 100);
  add(&h, TARGET, 10, 9999, 0, 30);                         /* the day itself */
  add(&h, forecast_date_add(TARGET, 7), 10, 9999, 0, 30);   /* the future */
  add(&h, forecast_date_add(TARGET, -63), 10, 9999, 0, 30); /* 9 weeks back */
  forecast_opts_t o = forecast_defaults(8);
  forecast_cell_t c;
  assert_int_equal(forecast_at(h.v, h.n, NULL, 0, TARGET, 10, &o, &c), 0);
  assert_int_equal(c.status, FORECAST_TOO_SHORT);
  assert_int_equal(c.weeks, 2);
  add(&h, forecast_date_add(TARGET, -21), 10, 600, 0, 30);
  assert_int_equal(forecast_at(h.v, h.n, NULL, 0, TARGET, 10, &o, &c), 0);
  assert_int_equal(c.status, FORECAST_OK);
  assert_near(c.cps, 600.0 / 1800.0, 1e-9, "three weeks");
}

/* Handle time: weighted by calls, only where measured. */
static void test_aht(void **state) {
  (void)state;
  static hist_t h;
  h.n = 0;
  add(&h, forecast_date_add(TARGET, -7), 0, 100, 300, 30);
  add(&h, forecast_date_add(TARGET, -14), 0, 300, 0, 30); /* not measured */
  add(&h, forecast_date_add(TARGET, -21), 0, 300, 100, 30);
  forecast_opts_t o = forecast_defaults(8);
  o.method = FORECAST_MEAN;
  forecast_cell_t c;
  assert_int_equal(forecast_at(h.v, h.n, NULL, 0, TARGET, 0, &o, &c), 0);
  assert_near(c.aht_s, (100.0 * 300 + 300.0 * 100) / 400.0, 1e-9, "aht");
}

static void test_bad_input(void **state) {
  (void)state;
  forecast_opts_t o = forecast_defaults(8);
  forecast_cell_t c;
  assert_int_equal(forecast_at(NULL, 0, NULL, 0, 20260230, 0, &o, &c), NIRC_EINVAL);
  assert_int_equal(forecast_at(NULL, 0, NULL, 0, TARGET, 48, &o, &c), NIRC_EINVAL);
  o.weeks = 0;
  assert_int_equal(forecast_at(NULL, 0, NULL, 0, TARGET, 0, &o, &c), NIRC_EINVAL);
  o = forecast_defaults(8);
  assert_int_equal(forecast_at(NULL, 0, NULL, 0, TARGET, 0, &o, &c), 0);
  assert_int_equal(c.status, FORECAST_TOO_SHORT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_calendar), cmocka_unit_test(test_weekly_seasonality),
      cmocka_unit_test(test_trend),    cmocka_unit_test(test_holiday),
      cmocka_unit_test(test_gaps),     cmocka_unit_test(test_too_short),
      cmocka_unit_test(test_aht),      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
