/* Unit tests for the night staffing computation (controller/routing/
 * staffing.c): agents each site needs alone versus consolidated at the
 * hubs, per 30-minute interval and at the window's peak.
 *
 * The reference figures are standard Erlang C values at 80% in 20 s:
 * 100 calls in 30 minutes at 180 s handle time is 10 Erlangs and needs 14
 * agents (88.8% answered in 20 s; 13 give 71%); 2.5 Erlangs at 300 s
 * needs 5; 0.2 Erlangs at 240 s needs 1; 20 Erlangs at 180 s needs 24;
 * 1.5 Erlangs at 200 s needs 4. The pools (12.7 Erlangs at a calls-weighted
 * 196.2 s: 17 agents; 22.7 Erlangs: 27) were computed independently with
 * the Erlang B recurrence in Python. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "err.h"
#include "staffing.h"

static void assert_near(double got, double want, double tol, const char *what) {
  if (!(fabs(got - want) <= tol)) fail_msg("%s: got %.6f, want %.6f +- %.6f", what, got, want, tol);
}

/* Two sources (hubei 10 Erlangs, guizhou 2.5), the first hub shaanxi (0.2
 * Erlangs of its own), a fallback hub henan (1.5); interval 1 doubles
 * hubei's calls. */
static size_t fixture(staff_site_in_t *s) {
  memset(s, 0, 4 * sizeof *s);
  const char *names[] = {"hubei", "guizhou", "shaanxi", "henan"};
  const double cps[] = {10.0 / 180, 2.5 / 300, 0.2 / 240, 1.5 / 200};
  const double aht[] = {180, 300, 240, 200};
  for (int i = 0; i < 4; i++) {
    strcpy(s[i].site, names[i]);
    s[i].role = i < 2 ? STAFF_SOURCE : STAFF_HUB;
    s[i].first_hub = i == 2;
    for (int k = 0; k < 2; k++) {
      s[i].known[k] = true;
      s[i].cps[k] = cps[i] * (i == 0 && k == 1 ? 2 : 1);
      s[i].aht_s[k] = aht[i];
    }
  }
  return 4;
}

static void test_alone_and_consolidated(void **state) {
  (void)state;
  staff_site_in_t in[4];
  size_t n = fixture(in);
  static staff_result_t r;
  assert_int_equal(staff_compute(in, n, 2, 0.80, 20, &r), 0);
  /* Each alone, interval 0. */
  assert_near(r.site[0].alone[0].erlangs, 10.0, 1e-9, "hubei erlangs");
  assert_near(r.site[0].alone[0].calls, 100.0, 1e-9, "hubei calls");
  assert_int_equal(r.site[0].alone[0].agents, 14);
  assert_int_equal(r.site[1].alone[0].agents, 5);
  assert_int_equal(r.site[2].alone[0].agents, 1);
  assert_int_equal(r.site[3].alone[0].agents, 4);
  assert_true(r.site[0].alone[0].known);
  /* Consolidated: shaanxi answers both sources and its own calls. */
  assert_near(r.site[2].pool[0].erlangs, 12.7, 1e-9, "pool erlangs");
  assert_int_equal(r.site[2].pool[0].agents, 17);
  /* The fallback hub answers only its own. */
  assert_int_equal(r.site[3].pool[0].agents, 4);
  /* Sources have no pool. */
  assert_false(r.site[0].pool[0].known);
  /* Totals: alone adds every site, consolidated every hub. */
  assert_int_equal(r.total_alone[0].agents, 14 + 5 + 1 + 4);
  assert_int_equal(r.total_consolidated[0].agents, 17 + 4);
  /* Interval 1: hubei doubled. */
  assert_int_equal(r.site[0].alone[1].agents, 24);
  assert_near(r.site[2].pool[1].erlangs, 22.7, 1e-9, "pool erlangs 1");
  assert_int_equal(r.site[2].pool[1].agents, 27);
  assert_int_equal(r.total_alone[1].agents, 24 + 5 + 1 + 4);
  assert_int_equal(r.total_consolidated[1].agents, 27 + 4);
  /* Peaks: agents and Erlangs at the busiest interval, calls summed. */
  assert_int_equal(r.site[0].alone_peak.agents, 24);
  assert_near(r.site[0].alone_peak.calls, 300.0, 1e-9, "hubei window calls");
  assert_int_equal(r.total_alone_peak.agents, 34);
  assert_int_equal(r.total_consolidated_peak.agents, 31);
  assert_true(r.total_consolidated_peak.known);
  assert_false(r.total_consolidated_peak.partial);
}

/* A site not forecast in one interval: its cell is unknown (not zero),
 * and the totals and the pool it belongs to say they are partial. */
static void test_unknown_is_not_zero(void **state) {
  (void)state;
  staff_site_in_t in[4];
  size_t n = fixture(in);
  in[1].known[1] = false; /* guizhou, interval 1 */
  in[3].aht_s[0] = 0;     /* henan's handle time not measured in interval 0 */
  static staff_result_t r;
  assert_int_equal(staff_compute(in, n, 2, 0.80, 20, &r), 0);
  assert_false(r.site[1].alone[1].known);
  assert_false(r.site[1].alone[1].partial);
  assert_int_equal(r.site[1].alone[1].agents, 0);
  assert_false(r.site[1].alone_peak.known);
  assert_true(r.site[1].alone_peak.partial);
  /* Interval 1's pool counts what is known, and says it is partial. */
  assert_true(r.site[2].pool[1].partial);
  assert_near(r.site[2].pool[1].erlangs, 20.2, 1e-9, "partial pool");
  assert_true(r.total_alone[1].partial);
  assert_false(r.total_alone[1].known);
  assert_false(r.site[3].alone[0].known);
  assert_true(r.total_consolidated[0].partial);
  assert_true(r.total_consolidated_peak.partial);
  assert_true(r.site[0].alone_peak.known);
}

/* Zero forecast demand is a known zero: no agents, not unknown. */
static void test_zero_demand_known(void **state) {
  (void)state;
  staff_site_in_t in[4];
  size_t n = fixture(in);
  in[1].cps[0] = 0;
  static staff_result_t r;
  assert_int_equal(staff_compute(in, n, 1, 0.80, 20, &r), 0);
  assert_true(r.site[1].alone[0].known);
  assert_int_equal(r.site[1].alone[0].agents, 0);
  assert_near(r.site[1].alone[0].calls, 0, 1e-12, "zero calls");
}

static void test_bad_input(void **state) {
  (void)state;
  staff_site_in_t in[4];
  size_t n = fixture(in);
  static staff_result_t r;
  assert_int_equal(staff_compute(in, n, 0, 0.8, 20, &r), NIRC_EINVAL);
  assert_int_equal(staff_compute(in, n, STAFF_MAX_INTERVALS + 1, 0.8, 20, &r), NIRC_EINVAL);
  assert_int_equal(staff_compute(in, n, 1, 1.2, 20, &r), NIRC_EINVAL);
  assert_int_equal(staff_compute(in, n, 1, 0.8, 0, &r), NIRC_EINVAL);
  in[2].first_hub = false; /* sources but nowhere to consolidate */
  assert_int_equal(staff_compute(in, n, 1, 0.8, 20, &r), NIRC_EINVAL);
}

static void test_intervals(void **state) {
  (void)state;
  int64_t first;
  /* 22:00 to 08:00: 20 half hours. */
  int64_t from = 1579730400000; /* 2020-01-22T22:00Z */
  assert_int_equal(staff_intervals(from, from + 10 * 3600000LL, &first), 20);
  assert_true(first == from);
  /* A start at :10 floors to :00 and the end rounds up. */
  assert_int_equal(staff_intervals(from + 600000, from + 3600000 + 60000, &first), 3);
  assert_true(first == from);
  assert_int_equal(staff_intervals(from, from, &first), 0);
  assert_int_equal(staff_intervals(from, from + 25 * 3600000LL, &first), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_alone_and_consolidated),
      cmocka_unit_test(test_unknown_is_not_zero),
      cmocka_unit_test(test_zero_demand_known),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_intervals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
