/* A site's recent PBX events: the server's bounded log of them
 * (controller/net/pbxlog.c) and how `nircctl site SLUG` shows them, text
 * and --json (controller/ctl_sites.c), on hand-made data. */
#include "pbxlog.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* 2026-12-05 03:00:00 +08:00 */
#define T0 1796410800000LL

static pbxlog_event_t ev_at(int64_t at_ms, const char *event) {
  pbxlog_event_t e = {.at_ms = at_ms};
  snprintf(e.event, sizeof e.event, "%s", event);
  snprintf(e.detail, sizeof e.detail, "at %lld", (long long)at_ms);
  return e;
}

/* Newest first by when the agent saw it (a late one goes where it
 * belongs), PBXLOG_KEEP at most, and only sites with events cost one. */
static void test_log_keeps_the_newest_in_true_order(void **state) {
  (void)state;
  pbxlog_t l = {0};
  const pbxlog_event_t *got;
  assert_int_equal(pbxlog_get(&l, 5, &got), 0);
  assert_null(got);
  for (int i = 0; i < PBXLOG_KEEP + 3; i++) {
    pbxlog_event_t e = ev_at(T0 + i * 60000, "pbx_drift_repaired");
    assert_int_equal(pbxlog_add(&l, 19999, &e), 0);
  }
  /* Reported late: seen before the two newest, arrived after them. */
  pbxlog_event_t late = ev_at(T0 + (PBXLOG_KEEP + 1) * 60000 - 30000, "pbx_drift_not_repaired");
  late.late_ms = 9 * 60000;
  assert_int_equal(pbxlog_add(&l, 19999, &late), 0);
  /* Older than all kept: not kept. */
  pbxlog_event_t old = ev_at(T0 - 3600000, "route_unconfirmed");
  assert_int_equal(pbxlog_add(&l, 19999, &old), 0);
  size_t n = pbxlog_get(&l, 19999, &got);
  assert_int_equal(n, PBXLOG_KEEP);
  assert_int_equal(got[0].at_ms, T0 + (PBXLOG_KEEP + 2) * 60000);
  assert_int_equal(got[1].at_ms, T0 + (PBXLOG_KEEP + 1) * 60000);
  assert_string_equal(got[2].event, "pbx_drift_not_repaired");
  assert_int_equal(got[2].late_ms, 9 * 60000);
  for (size_t k = 1; k < n; k++)
    assert_true(got[k - 1].at_ms >= got[k].at_ms);
  assert_int_equal(got[n - 1].at_ms, T0 + 4 * 60000); /* 10, 9, 8.5 (late), 8 ... 4 */
  /* One site with events among 20,000: one allocated. */
  size_t allocated = 0;
  for (size_t i = 0; i < l.n; i++)
    allocated += l.by_site[i] != NULL;
  assert_int_equal(allocated, 1);
  assert_int_equal(pbxlog_get(&l, 3, &got), 0);
  pbxlog_free(&l);
  assert_int_equal(l.n, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_log_keeps_the_newest_in_true_order),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
