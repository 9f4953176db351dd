/* Unit tests for the reconnect backoff (common/backoff.c).
 *
 * What agents rely on: a delay is never below min (a flapping link cannot
 * spin) nor above the current ceiling, the ceiling doubles per failure up
 * to max, a success resets it, and the jitter really spreads agents over
 * the whole window (no thundering herd after a failover). Seeds are fixed
 * so every run draws the same numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "backoff.h"

#define MIN_MS 500u
#define MAX_MS 30000u

/* The ceiling before each of the first n failures is want[i], and every
 * delay is in [min, ceiling]: by backoff_next, or with naddrs controllers
 * by backoff_next_rotating. */
static void assert_ceilings(const uint32_t *want, size_t n, unsigned naddrs) {
  backoff_t b;
  backoff_init(&b, MIN_MS, MAX_MS, 42);
  for (size_t i = 0; i < n; i++) {
    uint32_t ceil = backoff_ceiling(&b);
    assert_int_equal(ceil, want[i]);
    uint32_t d = naddrs ? backoff_next_rotating(&b, naddrs) : backoff_next(&b);
    assert_in_range(d, MIN_MS, ceil);
  }
}

static void test_ceiling_doubles_and_delays_in_window(void **state) {
  (void)state;
  static const uint32_t want[] = {1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000};
  assert_ceilings(want, sizeof want / sizeof want[0], 0);
}

/* An agent that rotates over two controllers (leader and standby) raises
 * its ceiling once per round of the list: the dead controller's refusal
 * and the live one's timeout together cost one doubling, not two; over
 * three, three failures a doubling. With one controller it is
 * backoff_next. */
static void test_rotating_doubles_once_per_round(void **state) {
  (void)state;
  static const uint32_t want2[] = {1000, 1000, 2000, 2000, 4000, 4000, 8000, 8000, 16000, 16000};
  static const uint32_t want3[] = {1000, 1000, 1000, 2000, 2000, 2000, 4000, 4000, 4000};
  assert_ceilings(want2, sizeof want2 / sizeof want2[0], 2);
  assert_ceilings(want3, sizeof want3 / sizeof want3[0], 3);
  /* A success starts a new round as well as a new window. */
  backoff_t b;
  backoff_init(&b, MIN_MS, MAX_MS, 44);
  (void)backoff_next_rotating(&b, 2);
  backoff_reset(&b);
  (void)backoff_next_rotating(&b, 2);
  assert_int_equal(backoff_ceiling(&b), 1000);
  /* One controller: the same draws and ceilings as backoff_next. */
  backoff_t one, plain;
  backoff_init(&one, MIN_MS, MAX_MS, 45);
  backoff_init(&plain, MIN_MS, MAX_MS, 45);
  for (unsigned i = 0; i < 12; i++) {
    assert_int_equal(backoff_next_rotating(&one, 1), backoff_next(&plain));
    assert_int_equal(backoff_ceiling(&one), backoff_ceiling(&plain));
  }
}

/* The same ceilings hold for many independent seeds, and every draw stays
 * in [min, ceiling]. */
static void test_every_delay_in_window_many_seeds(void **state) {
  (void)state;
  for (uint64_t seed = 1; seed <= 200; seed++) {
    backoff_t b;
    backoff_init(&b, MIN_MS, MAX_MS, seed * 0x9E3779B97F4A7C15ULL);
    uint32_t expect_ceil = 2 * MIN_MS;
    for (int i = 0; i < 20; i++) {
      assert_int_equal(backoff_ceiling(&b), expect_ceil);
      uint32_t d = backoff_next(&b);
      assert_in_range(d, MIN_MS, expect_ceil);
      expect_ceil = expect_ceil * 2 > MAX_MS ? MAX_MS : expect_ceil * 2;
    }
  }
}

static void test_many_attempts_stay_capped(void **state) {
  (void)state;
  backoff_t b;
  backoff_init(&b, MIN_MS, MAX_MS, 7);
  /* Well past the point where min * 2^n overflows 32 and 64 bits. */
  for (int i = 0; i < 10000; i++) {
    uint32_t d = backoff_next(&b);
    assert_in_range(d, MIN_MS, MAX_MS);
    assert_int_equal(backoff_ceiling(&b), i < 4 ? MIN_MS << (i + 2) : MAX_MS);
  }

  /* A max that is not min times a power of two, and one near UINT32_MAX. */
  backoff_init(&b, 3, 1000, 9);
  for (int i = 0; i < 200; i++)
    assert_in_range(backoff_next(&b), 3, 1000);
  assert_int_equal(backoff_ceiling(&b), 1000);
  backoff_init(&b, 1000, UINT32_MAX, 11);
  for (int i = 0; i < 200; i++)
    assert_in_range(backoff_next(&b), 1000, UINT32_MAX);
  assert_int_equal(backoff_ceiling(&b), UINT32_MAX);
}

static void test_reset_returns_to_min(void **state) {
  (void)state;
  backoff_t b;
  backoff_init(&b, MIN_MS, MAX_MS, 5);
  for (int i = 0; i < 12; i++)
    backoff_next(&b);
  assert_int_equal(backoff_ceiling(&b), MAX_MS);
  backoff_reset(&b);
  assert_int_equal(backoff_ceiling(&b), 2 * MIN_MS);
  /* The first delay after a reset is drawn from [min, 2 min], so agents
   * that lost the same link do not all retry at min. */
  assert_in_range(backoff_next(&b), MIN_MS, 2 * MIN_MS);
  assert_int_equal(backoff_ceiling(&b), 4 * MIN_MS);
  assert_in_range(backoff_next(&b), MIN_MS, 4 * MIN_MS);
  assert_int_equal(backoff_ceiling(&b), 8 * MIN_MS);
}

/* 1,000 agents that lost the same controller at the same instant: their
 * first retries spread over [min, 2 min] instead of landing together. */
static void test_first_retries_spread(void **state) {
  (void)state;
  unsigned bucket[10] = {0};
  for (uint64_t seed = 1; seed <= 1000; seed++) {
    backoff_t b;
    backoff_init(&b, MIN_MS, MAX_MS, seed * 0x9E3779B97F4A7C15ULL);
    uint32_t d = backoff_next(&b);
    assert_in_range(d, MIN_MS, 2 * MIN_MS);
    bucket[(d - MIN_MS) * 10 / (MIN_MS + 1)]++;
  }
  for (int k = 0; k < 10; k++)
    assert_in_range(bucket[k], 50, 150);
}

/* Over 1,000 draws at the cap the delays cover the window [min, max]:
 * wide spread, mean near the middle, and no single value repeated much. */
static void test_jitter_spreads_over_window(void **state) {
  (void)state;
  backoff_t b;
  backoff_init(&b, MIN_MS, MAX_MS, 12345);
  for (int i = 0; i < 10; i++)
    backoff_next(&b);
  assert_int_equal(backoff_ceiling(&b), MAX_MS);

  enum { N = 1000, BUCKETS = 10 };
  uint32_t lo = UINT32_MAX, hi = 0;
  double sum = 0;
  unsigned bucket[BUCKETS] = {0};
  const double window = MAX_MS - MIN_MS;
  for (int i = 0; i < N; i++) {
    uint32_t d = backoff_next(&b);
    assert_in_range(d, MIN_MS, MAX_MS);
    if (d < lo) lo = d;
    if (d > hi) hi = d;
    sum += d;
    int k = (int)((d - MIN_MS) / window * BUCKETS);
    if (k >= BUCKETS) k = BUCKETS - 1;
    bucket[k]++;
  }
  assert_true((double)(hi - lo) > 0.5 * window);
  double mean = sum / N;
  double mid = (MIN_MS + MAX_MS) / 2.0;
  assert_true(mean > mid - 0.1 * window && mean < mid + 0.1 * window);
  /* Every tenth of the window gets a fair share (expected 100 each). */
  for (int k = 0; k < BUCKETS; k++)
    assert_in_range(bucket[k], 50, 150);
}

static void test_seeds_differ_and_repeat(void **state) {
  (void)state;
  enum { N = 20 };
  uint32_t a[N], b2[N], c[N];
  backoff_t x, y, z;
  backoff_init(&x, MIN_MS, MAX_MS, 1);
  backoff_init(&y, MIN_MS, MAX_MS, 2);
  backoff_init(&z, MIN_MS, MAX_MS, 1);
  for (int i = 0; i < N; i++) {
    a[i] = backoff_next(&x);
    b2[i] = backoff_next(&y);
    c[i] = backoff_next(&z);
  }
  /* Two agents with different seeds do not retry in lockstep. */
  int same = 0;
  for (int i = 1; i < N; i++)
    same += a[i] == b2[i];
  assert_true(same < 3);
  /* A fixed seed is reproducible. */
  assert_memory_equal(a, c, sizeof a);

  /* Seed 0 picks a seed itself and still produces valid delays. */
  backoff_t r;
  backoff_init(&r, MIN_MS, MAX_MS, 0);
  assert_int_not_equal(r.rng, 0);
  for (int i = 0; i < 50; i++)
    assert_in_range(backoff_next(&r), MIN_MS, MAX_MS);
}

static void test_min_equals_max(void **state) {
  (void)state;
  backoff_t b;
  backoff_init(&b, 2000, 2000, 99);
  for (int i = 0; i < 100; i++) {
    assert_int_equal(backoff_ceiling(&b), 2000);
    assert_int_equal(backoff_next(&b), 2000);
  }
  /* Out-of-range arguments are clamped, not trusted: min 0 becomes 1 and a
   * max below min becomes min. */
  backoff_init(&b, 0, 0, 3);
  assert_int_equal(b.min_ms, 1);
  assert_int_equal(backoff_next(&b), 1);
  backoff_init(&b, 800, 100, 3);
  for (int i = 0; i < 20; i++)
    assert_int_equal(backoff_next(&b), 800);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ceiling_doubles_and_delays_in_window),
      cmocka_unit_test(test_rotating_doubles_once_per_round),
      cmocka_unit_test(test_every_delay_in_window_many_seeds),
      cmocka_unit_test(test_many_attempts_stay_capped),
      cmocka_unit_test(test_reset_returns_to_min),
      cmocka_unit_test(test_first_retries_spread),
      cmocka_unit_test(test_jitter_spreads_over_window),
      cmocka_unit_test(test_seeds_differ_and_repeat),
      cmocka_unit_test(test_min_equals_max),
  };
  return cmocka_run_group_tests(tests, 0, NULL);
}
