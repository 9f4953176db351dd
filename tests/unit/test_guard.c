/* Unit tests for the controller's per-identity and per-address limits
 * (controller/net/guard.c): an operator's link cap, its request bucket
 * shared by its links and kept across reconnections, and the aggregation
 * of failed handshakes per address and interval (issue 16, points 4, 5). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "guard.h"

static guard_t *mk(void) {
  guard_opts_t o = {.max_links = 3,
                    .requests_per_s = 10,
                    .request_burst = 20,
                    .hs_interval_ms = 60000,
                    .hs_max_addrs = 4,
                    .hs_shown_per_addr = 5};
  guard_t *g = NULL;
  assert_int_equal(guard_new(&o, &g), 0);
  return g;
}

static void test_link_cap_per_identity(void **state) {
  (void)state;
  guard_t *g = mk();
  for (int i = 0; i < 3; i++)
    assert_int_equal(guard_op_open(g, "operator:victor", 0), 0);
  assert_int_equal(guard_op_open(g, "operator:victor", 0), NIRC_EFULL);
  assert_int_equal(guard_op_links(g, "operator:victor"), 3);
  /* Another identity has its own cap. */
  assert_int_equal(guard_op_open(g, "operator:alice", 0), 0);
  guard_op_close(g, "operator:victor", 0);
  assert_int_equal(guard_op_open(g, "operator:victor", 0), 0);
  guard_free(g);
}

static void test_request_bucket_survives_reconnects(void **state) {
  (void)state;
  guard_t *g = mk();
  int ok = 0;
  /* One link at a time, as nircctl does: the bucket is the identity's. */
  for (int i = 0; i < 100; i++) {
    assert_int_equal(guard_op_open(g, "operator:victor", 1000), 0);
    ok += guard_op_take(g, "operator:victor", 1000);
    guard_op_close(g, "operator:victor", 1000);
  }
  assert_int_equal(ok, 20); /* the burst, nothing more at one instant */
  assert_true(guard_op_take(g, "operator:alice", 1000));
  /* A second later, the rate's worth again. */
  ok = 0;
  for (int i = 0; i < 100; i++)
    ok += guard_op_take(g, "operator:victor", 2000);
  assert_int_equal(ok, 10);
  guard_free(g);
}

typedef struct {
  unsigned calls;
  uint64_t count;
  char addr[64], last[256];
} sum_t;

static void on_sum(void *arg, const char *addr, uint64_t count, const char *last, int64_t since) {
  (void)since;
  sum_t *s = arg;
  s->calls++;
  s->count += count;
  snprintf(s->addr, sizeof s->addr, "%s", addr);
  snprintf(s->last, sizeof s->last, "%s", last);
}

static void test_handshake_failures_aggregated(void **state) {
  (void)state;
  guard_t *g = mk();
  unsigned stored = 0;
  char port[64];
  for (int i = 0; i < 200; i++) {
    snprintf(port, sizeof port, "10.0.0.9:%d", 40000 + i);
    stored += guard_hs_failed(g, port, i % 2 ? "no certificate" : "expired", 1000 + i);
  }
  assert_int_equal(stored, 2); /* two distinct reasons, each stored once */
  sum_t s = {0};
  guard_hs_flush(g, 30000, false, on_sum, &s);
  assert_int_equal(s.calls, 0); /* the interval is not over */
  guard_hs_flush(g, 61000, false, on_sum, &s);
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.count, 198);
  assert_string_equal(s.addr, "10.0.0.9");
  assert_string_equal(s.last, "no certificate");
  assert_int_equal(guard_hs_aggregated(g), 198);
  /* The next interval starts afresh: its first failure is stored. */
  assert_true(guard_hs_failed(g, "10.0.0.9:1", "no certificate", 62000));
  /* Quiet for an interval: forgotten; nothing left to summarise. */
  guard_hs_flush(g, 200000, false, on_sum, &s);
  assert_int_equal(s.calls, 1);
  guard_free(g);
}

static void test_handshake_addresses_bounded(void **state) {
  (void)state;
  guard_t *g = mk();
  char a[64];
  unsigned stored = 0;
  /* 100 addresses, 4 tracked: the rest share one entry. */
  for (int i = 0; i < 100; i++) {
    snprintf(a, sizeof a, "[2001:db8::%x]:443", i);
    stored += guard_hs_failed(g, a, "no certificate", 0);
  }
  assert_int_equal(stored, 5);
  sum_t s = {0};
  guard_hs_flush(g, 0, true, on_sum, &s);
  assert_int_equal(s.count, 95);
  assert_string_equal(s.addr, GUARD_OTHER_ADDRS);
  guard_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_link_cap_per_identity),
      cmocka_unit_test(test_request_bucket_survives_reconnects),
      cmocka_unit_test(test_handshake_failures_aggregated),
      cmocka_unit_test(test_handshake_addresses_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
