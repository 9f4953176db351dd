/* Unit tests for the election's tries after a failed rule load
 * (controller/store/elect.c).
 *
 * What an operator relies on: a load that keeps failing takes a new epoch
 * at ever longer intervals, never more often than one period and never
 * less often than ELECT_RETRY_MAX_MS; the same failure is logged once and
 * then every ELECT_TELL_EVERY_MS, a new reason at once; and once the cause
 * is gone (reset), the next try is made at once. Before elect.c, every
 * failed load was tried again on the next period and logged each time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "elect.h"

#define PERIOD 500u

static void test_delays_double_up_to_the_bound(void **state) {
  (void)state;
  const uint64_t want[] = {1000, 2000, 4000, 8000, 16000, 30000, 30000};
  for (unsigned i = 0; i < sizeof want / sizeof want[0]; i++)
    assert_int_equal(elect_retry_delay_ms(i + 1, PERIOD), want[i]);
  assert_int_equal(elect_retry_delay_ms(100000, PERIOD), ELECT_RETRY_MAX_MS);
  /* A period longer than the bound is never shortened. */
  assert_int_equal(elect_retry_delay_ms(3, 60000), 60000);
  assert_int_equal(elect_retry_delay_ms(1, 0), 2);
}

/* A load that fails for the same reason for an hour, tried whenever due:
 * how many epochs it takes, and how many times it is logged. */
static void test_an_hour_of_the_same_failure(void **state) {
  (void)state;
  elect_retry_t r;
  elect_retry_reset(&r);
  unsigned tries = 0, told = 0;
  for (uint64_t now = 1000; now < 1000 + 3600000u; now += PERIOD) {
    if (!elect_retry_due(&r, now)) continue;
    tries++;
    told += elect_retry_failed(&r, now, PERIOD, "cutover 7 has unreadable site lists");
  }
  /* 5 tries to reach the bound, then one per 30 s (and a period). */
  assert_in_range(tries, 110, 125);
  /* Once, then every 10 minutes: 6 in the hour. */
  assert_in_range(told, 6, 7);
}

static void test_a_new_reason_is_told_at_once(void **state) {
  (void)state;
  elect_retry_t r;
  elect_retry_reset(&r);
  assert_true(elect_retry_failed(&r, 1000, PERIOD, "a"));
  assert_false(elect_retry_failed(&r, 3000, PERIOD, "a"));
  assert_true(elect_retry_failed(&r, 5000, PERIOD, "b"));
  assert_false(elect_retry_failed(&r, 9000, PERIOD, "b"));
  /* A reason longer than what is kept compares as kept: told once. */
  char longer[600];
  memset(longer, 'x', sizeof longer - 1);
  longer[sizeof longer - 1] = '\0';
  assert_true(elect_retry_failed(&r, 20000, PERIOD, longer));
  assert_false(elect_retry_failed(&r, 50000, PERIOD, longer));
}

static void test_reset_tries_at_once(void **state) {
  (void)state;
  elect_retry_t r;
  elect_retry_reset(&r);
  assert_true(elect_retry_due(&r, 0));
  for (int i = 0; i < 4; i++)
    elect_retry_failed(&r, 1000, PERIOD, "x");
  assert_false(elect_retry_due(&r, 1000 + 7999));
  assert_true(elect_retry_due(&r, 1000 + 8000));
  elect_retry_reset(&r);
  assert_true(elect_retry_due(&r, 1001));
  assert_int_equal(r.failures, 0);
  /* After a reset the first failure is told again, even for the same reason. */
  assert_true(elect_retry_failed(&r, 2000, PERIOD, "x"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_delays_double_up_to_the_bound),
      cmocka_unit_test(test_an_hour_of_the_same_failure),
      cmocka_unit_test(test_a_new_reason_is_told_at_once),
      cmocka_unit_test(test_reset_tries_at_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
