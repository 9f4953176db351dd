/* Unit tests for the Erlang C mathematics (controller/routing/erlang.c).
 *
 * The reference figures are the published worked example every workforce
 * planning text uses: 360 calls in 30 minutes with a 240 s handle time is
 * 48 Erlangs; with 55 agents P(wait) is about 0.239, 84.6% of calls are
 * answered within 15 s and the ASA is about 8.2 s. The staffing figures
 * (80% in 20 s at AHT 300 s: 14 agents for 10 Erlangs, 57 for 50) are the
 * standard Erlang C tables. Beyond those: the edge cases the planner leans
 * on (overload, no traffic), monotonicity, and a pool far larger than any
 * factorial-based formula survives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdbool.h>

#include "erlang.h"

static void assert_near(double got, double want, double tol, const char *what) {
  if (!(fabs(got - want) <= tol)) fail_msg("%s: got %.6f, want %.6f +- %.6f", what, got, want, tol);
}

/* ---- published values --------------------------------------------------- */

static void test_published_example(void **state) {
  (void)state;
  /* 360 calls per 1800 s at 240 s AHT. */
  double a = 360.0 / 1800.0 * 240.0;
  assert_near(a, 48.0, 1e-9, "traffic");
  assert_near(erlang_c(55, a), 0.239, 0.002, "erlang_c");

  erlang_prediction_t p;
  erlang_predict(55, a, 240, 15, &p);
  assert_true(p.stable);
  assert_int_equal(p.agents, 55);
  assert_near(p.traffic_erl, 48.0, 1e-9, "traffic_erl");
  assert_near(p.p_wait, 0.239, 0.002, "p_wait");
  assert_near(p.service_level, 0.846, 0.003, "service level in 15 s");
  assert_near(p.asa_s, 8.2, 0.1, "ASA");
  assert_near(p.occupancy, 48.0 / 55.0, 1e-9, "occupancy");
}

static void test_agents_needed_tables(void **state) {
  (void)state;
  assert_int_equal(erlang_agents_needed(10, 300, 20, 0.80), 14);
  assert_int_equal(erlang_agents_needed(50, 300, 20, 0.80), 57);
  /* One fewer agent really misses the target, so the answer is the
   * smallest one, not merely a sufficient one. */
  erlang_prediction_t p;
  erlang_predict(13, 10, 300, 20, &p);
  assert_true(p.service_level < 0.80);
  erlang_predict(14, 10, 300, 20, &p);
  assert_true(p.service_level >= 0.80);
  erlang_predict(56, 50, 300, 20, &p);
  assert_true(p.service_level < 0.80);
  erlang_predict(57, 50, 300, 20, &p);
  assert_true(p.service_level >= 0.80);
}

/* ---- edges --------------------------------------------------------------- */

static void test_unstable_queue(void **state) {
  (void)state;
  static const struct {
    unsigned n;
    double a;
  } cases[] = {{10, 10.0}, {10, 10.5}, {10, 500.0}, {0, 1.0}, {1, 1.0}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    erlang_prediction_t p;
    erlang_predict(cases[i].n, cases[i].a, 240, 20, &p);
    assert_false(p.stable);
    assert_near(p.service_level, 0.0, 0.0, "SL when unstable");
    assert_near(p.p_wait, 1.0, 0.0, "p_wait when unstable");
    assert_true(isinf(p.asa_s) && p.asa_s > 0);
    assert_true(p.occupancy <= 1.0);
    assert_near(erlang_c(cases[i].n, cases[i].a), 1.0, 0.0, "erlang_c when unstable");
  }
}

static void test_zero_traffic(void **state) {
  (void)state;
  assert_near(erlang_c(10, 0.0), 0.0, 0.0, "erlang_c(10, 0)");
  assert_near(erlang_c(0, 0.0), 0.0, 0.0, "erlang_c(0, 0)");
  assert_int_equal(erlang_agents_needed(0.0, 240, 20, 0.8), 0);

  erlang_prediction_t p;
  erlang_predict(10, 0.0, 240, 20, &p);
  assert_true(p.stable);
  assert_near(p.p_wait, 0.0, 0.0, "p_wait");
  assert_near(p.service_level, 1.0, 0.0, "SL");
  assert_near(p.asa_s, 0.0, 0.0, "ASA");
  assert_near(p.occupancy, 0.0, 0.0, "occupancy");
  /* A site with nobody staffed and nothing offered misses no call. */
  erlang_predict(0, 0.0, 240, 20, &p);
  assert_true(p.stable);
  assert_near(p.service_level, 1.0, 0.0, "SL with no agents and no calls");
}

static void test_nan_traffic_is_overload(void **state) {
  (void)state;
  erlang_prediction_t p;
  erlang_predict(100, NAN, 240, 20, &p);
  assert_false(p.stable);
  assert_true(erlang_agents_needed(INFINITY, 240, 20, 0.8) <= 1000000u);
}

static void test_unreachable_target_is_capped(void **state) {
  (void)state;
  unsigned n = erlang_agents_needed(5, 300, 20, 1.5);
  assert_true(n >= 6);
  assert_true(n <= 1000000u);
}

/* More agents never lower the service level nor raise P(wait) or ASA. */
static void test_monotonic_in_agents(void **state) {
  (void)state;
  static const double loads[] = {0.3, 4.2, 48.0, 137.5, 950.0};
  for (size_t i = 0; i < sizeof loads / sizeof loads[0]; i++) {
    double a = loads[i];
    erlang_prediction_t prev;
    erlang_predict(0, a, 240, 20, &prev);
    for (unsigned n = 1; n <= (unsigned)a + 200; n++) {
      erlang_prediction_t p;
      erlang_predict(n, a, 240, 20, &p);
      if (p.service_level + 1e-12 < prev.service_level)
        fail_msg("A=%.1f: SL fell from %.6f to %.6f going to %u agents", a, prev.service_level,
                 p.service_level, n);
      if (prev.stable && p.p_wait > prev.p_wait + 1e-12)
        fail_msg("A=%.1f: P(wait) rose going to %u agents", a, n);
      if (prev.stable && p.asa_s > prev.asa_s + 1e-9)
        fail_msg("A=%.1f: ASA rose going to %u agents", a, n);
      prev = p;
    }
  }
}

/* erlang_agents_needed() agrees with erlang_predict() on a range of loads:
 * its answer meets the target and one agent fewer does not. */
static void test_agents_needed_is_minimal(void **state) {
  (void)state;
  for (double a = 0.5; a < 400; a *= 1.7) {
    unsigned n = erlang_agents_needed(a, 240, 20, 0.8);
    assert_true((double)n > a);
    erlang_prediction_t p;
    erlang_predict(n, a, 240, 20, &p);
    assert_true(p.service_level >= 0.8);
    erlang_predict(n - 1, a, 240, 20, &p);
    assert_true(p.service_level < 0.8);
  }
}

/* 20,000 agents: A^N / N! overflows a double around N = 170; the
 * recurrence must still give finite, sensible figures. */
static void test_large_pool(void **state) {
  (void)state;
  erlang_prediction_t p;
  erlang_predict(20000, 19500, 300, 20, &p);
  assert_true(p.stable);
  assert_true(isfinite(p.p_wait) && p.p_wait >= 0 && p.p_wait <= 1);
  assert_true(isfinite(p.service_level) && p.service_level > 0.8 && p.service_level <= 1);
  assert_true(isfinite(p.asa_s) && p.asa_s >= 0 && p.asa_s < 20);
  assert_near(p.occupancy, 0.975, 1e-9, "occupancy");

  /* Closer to the edge the pool must wait more, still finitely. */
  erlang_prediction_t q;
  erlang_predict(20000, 19950, 300, 20, &q);
  assert_true(q.stable && isfinite(q.asa_s));
  assert_true(q.p_wait > p.p_wait);

  unsigned n = erlang_agents_needed(19500, 300, 20, 0.8);
  assert_true(n > 19500 && n <= 20000);
  double c = erlang_c(100000, 99000);
  assert_true(isfinite(c) && c >= 0 && c <= 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_published_example),
      cmocka_unit_test(test_agents_needed_tables),
      cmocka_unit_test(test_unstable_queue),
      cmocka_unit_test(test_zero_traffic),
      cmocka_unit_test(test_nan_traffic_is_overload),
      cmocka_unit_test(test_unreachable_target_is_capped),
      cmocka_unit_test(test_monotonic_in_agents),
      cmocka_unit_test(test_agents_needed_is_minimal),
      cmocka_unit_test(test_large_pool),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
