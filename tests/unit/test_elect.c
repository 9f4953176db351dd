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

/* A row mended while the tries are 30 s apart is tried within
 * ELECT_CHANGED_MIN_MS of the failed try (or at once, if that is past),
 * not at the back-off's next try; no change, no early try. */
static void test_a_mended_row_is_tried_soon(void **state) {
  (void)state;
  elect_retry_t r;
  elect_retry_reset(&r);
  uint64_t now = 1000;
  for (int i = 0; i < 8; i++) { /* at the bound: 30 s apart */
    elect_retry_failed(&r, now, PERIOD, "cutover 900 has unreadable site lists");
    now = r.next_ms;
  }
  elect_retry_failed(&r, now, PERIOD, "cutover 900 has unreadable site lists");
  assert_int_equal(r.next_ms - now, ELECT_RETRY_MAX_MS);
  assert_false(elect_retry_changed(&r, now + 500, 42)); /* not marked: nothing to compare */
  elect_retry_mark(&r, 42);
  assert_false(elect_retry_changed(&r, now + 1000, 42));
  assert_false(elect_retry_due(&r, now + 1000));
  assert_true(elect_retry_changed(&r, now + 1500, 43)); /* mended */
  assert_false(elect_retry_due(&r, now + 1999));
  assert_true(elect_retry_due(&r, now + ELECT_CHANGED_MIN_MS));
  assert_false(elect_retry_changed(&r, now + 1600, 44)); /* spent until the next failure */
  /* A change seen later than the minimum: due at once. */
  now += ELECT_CHANGED_MIN_MS;
  elect_retry_failed(&r, now, PERIOD, "cutover 900 has unreadable site lists");
  elect_retry_mark(&r, 43);
  assert_true(elect_retry_changed(&r, now + 10000, 44));
  assert_true(elect_retry_due(&r, now + 10000));
  /* A reset (another controller leads) forgets the mark. */
  elect_retry_failed(&r, now, PERIOD, "x");
  elect_retry_mark(&r, 1);
  elect_retry_reset(&r);
  assert_false(elect_retry_changed(&r, now + 5000, 2));
}

/* A writer that changes the rule tables all the time while the load
 * keeps failing: an hour costs an epoch per ELECT_CHANGED_MIN_MS at most
 * (and a period), not one per period. */
static void test_a_busy_writer_costs_an_epoch_per_2s_at_most(void **state) {
  (void)state;
  elect_retry_t r;
  elect_retry_reset(&r);
  unsigned tries = 0;
  uint64_t fp = 0;
  for (uint64_t now = 1000; now < 1000 + 3600000u; now += PERIOD) {
    (void)elect_retry_changed(&r, now, ++fp);
    if (!elect_retry_due(&r, now)) continue;
    tries++;
    elect_retry_failed(&r, now, PERIOD, "y");
    elect_retry_mark(&r, fp);
  }
  assert_in_range(tries, 1700, 3600000u / ELECT_CHANGED_MIN_MS + 1);
}

/* The stuck rule-load backend's words (alarm, standby answers, /metrics'
 * help): the pid, every table, the fix, whole within an alarm's 256 bytes
 * for the largest pid Linux gives and all six rule tables. */
static void test_stuck_words_name_pid_tables_and_fix(void **state) {
  (void)state;
  elect_stuck_t s = {.pid = 4194304};
  strcpy(s.tables, "cutovers, overflow_rules, route_exclusions, route_holds, route_return_holds, "
                   "schedules");
  char w[256];
  elect_stuck_words(&s, w, sizeof w);
  assert_non_null(strstr(w, "pid 4194304 holds SHARE locks"));
  assert_non_null(strstr(w, s.tables));
  assert_non_null(strstr(w, "kill -CONT 4194304"));
  assert_non_null(strstr(w, "restart PostgreSQL"));
  assert_true(strlen(w) < sizeof w - 1); /* not cut */
  s.pid = 0;
  elect_stuck_words(&s, w, sizeof w);
  assert_string_equal(w, "");
}

/* Leading but issuing nothing: raised once it has lasted a lease (a
 * renewal confirms a lease within a period after a pause), not before, not
 * on a standby; its words name the reason and the fix, in order: the old
 * session holding the lock, a pause with the database out of reach, the
 * database refusing the renewal. Before, each was a log line only. */
static void test_quiet_leader_raises_after_a_lease_with_the_fix(void **state) {
  (void)state;
  const uint64_t lease = 2000;
  elect_health_t h = {.leading = true, .epoch = 7, .quiet_since_ms = 10000, .old_pid = 4321};
  char w[256];
  assert_false(elect_alarm_words(&h, ELECT_ALARM_QUIET, 10000 + lease - 1, lease, w, sizeof w));
  assert_string_equal(w, "");
  assert_true(elect_alarm_words(&h, ELECT_ALARM_QUIET, 10000 + lease, lease, w, sizeof w));
  assert_non_null(strstr(w, "leading epoch 7 but issuing nothing for 2 s"));
  assert_non_null(strstr(w, "old session (pid 4321) still holds the leader lock"));
  assert_non_null(strstr(w, "kill -CONT 4321"));
  assert_non_null(strstr(w, "restart PostgreSQL"));
  assert_true(strlen(w) < sizeof w - 1); /* whole in an alarm */
  /* Issuing again (quiet_since 0), or not leading: nothing to observe, so
   * the alarm clears after [alarms] clear_after. */
  h.quiet_since_ms = 0;
  assert_false(elect_alarm_words(&h, ELECT_ALARM_QUIET, 99999, lease, w, sizeof w));
  h.quiet_since_ms = 10000;
  h.leading = false;
  assert_false(elect_alarm_words(&h, ELECT_ALARM_QUIET, 99999, lease, w, sizeof w));
  h.leading = true;
  h.old_pid = 0;
  h.paused_ms = 6000;
  h.db_down = true;
  assert_true(elect_alarm_words(&h, ELECT_ALARM_QUIET, 30000, lease, w, sizeof w));
  assert_non_null(strstr(w, "did not run for 6000 ms (paused?)"));
  assert_non_null(strstr(w, "restore the database"));
  h.paused_ms = 0;
  h.db_down = false;
  strcpy(h.renew_err, "ERROR:  cannot execute UPDATE in a read-only transaction");
  assert_true(elect_alarm_words(&h, ELECT_ALARM_QUIET, 30000, lease, w, sizeof w));
  assert_non_null(strstr(w, "refuses to renew its lease; make it accept writes"));
  assert_non_null(strstr(w, "read-only transaction"));
  h.renew_err[0] = '\0';
  assert_true(elect_alarm_words(&h, ELECT_ALARM_QUIET, 30000, lease, w, sizeof w));
  assert_non_null(strstr(w, "its lease is not renewed"));
}

/* The sites table unreadable: raised once it has failed for a lease; the
 * consequences and the fix come before the database's words, which are
 * cut, not the fix, when long. */
static void test_sites_unreadable_raises_after_a_lease(void **state) {
  (void)state;
  const uint64_t lease = 2000;
  elect_health_t h = {.leading = true, .sites_failed_since_ms = 5000};
  strcpy(h.sites_err, "site 'hubei': stored capacity is invalid: roster \\x1b[31m");
  char w[256];
  assert_false(elect_alarm_words(&h, ELECT_ALARM_SITES, 5000 + lease - 1, lease, w, sizeof w));
  assert_true(elect_alarm_words(&h, ELECT_ALARM_SITES, 5000 + 3 * lease, lease, w, sizeof w));
  assert_non_null(strstr(w, "the sites table cannot be read for 6 s"));
  assert_non_null(strstr(w, "a controller started now will not start"));
  assert_non_null(strstr(w, "site 'hubei': stored capacity is invalid"));
  memset(h.sites_err, 'x', sizeof h.sites_err - 1);
  h.sites_err[sizeof h.sites_err - 1] = '\0';
  assert_true(elect_alarm_words(&h, ELECT_ALARM_SITES, 5000 + lease, lease, w, sizeof w));
  assert_non_null(strstr(w, "will not start): mend xxx"));
  h.sites_failed_since_ms = 0; /* it reads again */
  assert_false(elect_alarm_words(&h, ELECT_ALARM_SITES, 99999, lease, w, sizeof w));
}

/* A given-up load's backend seen by a leader (its own or another
 * controller's: leader_watch_stuck) raises rule_load at once with
 * elect_stuck_words; a standby raises nothing (no alarm table). */
static void test_rule_load_alarm_on_a_leader_only(void **state) {
  (void)state;
  elect_health_t h = {.leading = true, .stuck = {.pid = 555, .tables = "cutovers, schedules"}};
  char w[256], want[256];
  elect_stuck_words(&h.stuck, want, sizeof want);
  assert_true(elect_alarm_words(&h, ELECT_ALARM_RULE_LOAD, 1, 2000, w, sizeof w));
  assert_string_equal(w, want);
  h.leading = false;
  assert_false(elect_alarm_words(&h, ELECT_ALARM_RULE_LOAD, 1, 2000, w, sizeof w));
  h.leading = true;
  h.stuck.pid = 0;
  assert_false(elect_alarm_words(&h, ELECT_ALARM_RULE_LOAD, 1, 2000, w, sizeof w));
}

/* The leader_lease row's node and addr reach the log, systemd's STATUS=
 * line, a standby's answers and /metrics (store/leader.c): a row edited by
 * hand with an escape sequence or a newline is kept escaped; a clean row
 * as it is, so a standby still knows its own lease. */
static void test_lease_row_text_is_escaped(void **state) {
  (void)state;
  elect_lease_t ls;
  elect_lease_from_row(&ls, "nircd-1\x1b[31m\nREADY=1", "10.0.0.1:7000\r\u202e", "42",
                       "2026-12-07 21:00:00+00");
  assert_true(ls.present);
  assert_string_equal(ls.node, "nircd-1\\x1b[31m\\nREADY=1");
  assert_string_equal(ls.addr, "10.0.0.1:7000\\r\\u{202e}");
  assert_int_equal(ls.epoch, 42);
  assert_string_equal(ls.renewed, "2026-12-07 21:00:00+00");
  elect_lease_from_row(&ls, "nircd-2", "[::1]:7000", "7", "t");
  assert_string_equal(ls.node, "nircd-2");
  assert_string_equal(ls.addr, "[::1]:7000");
  /* Longer than the field once escaped: cut, never a raw byte. */
  char longer[200];
  memset(longer, '\x1b', sizeof longer - 1);
  longer[sizeof longer - 1] = '\0';
  elect_lease_from_row(&ls, longer, "", "1", "");
  assert_null(strchr(ls.node, '\x1b'));
  assert_true(strlen(ls.node) < sizeof ls.node);
}

/* A standby ends the session holding the leader lock a lease after the
 * lease stood still. When no lease was ever written (a session took the
 * lock and wrote none: integration.standby's election that cannot end),
 * its log said "leader  (epoch 0) has not renewed its lease", naming a
 * leader that does not exist. */
static void test_evict_words_name_the_leader_or_none(void **state) {
  (void)state;
  char out[512];
  elect_lease_t ls;
  elect_lease_from_row(&ls, "nircd-1", "10.0.0.1:7000", "3", "t");
  elect_evict_words(&ls, 3000, "4242", out, sizeof out);
  assert_string_equal(out, "leader nircd-1 (epoch 3) has not renewed its lease for 3000 ms: "
                           "asked PostgreSQL to end the session(s) holding the lock (pid 4242)");
  elect_evict_blocked_words(&ls, "4242", out, sizeof out);
  assert_non_null(strstr(out, "pid 4242 of nircd-1 (epoch 3, whose lease stands still)"));
  assert_non_null(strstr(out, "ps -o pid,stat,wchan -p 4242"));

  memset(&ls, 0, sizeof ls); /* no lease row */
  elect_evict_words(&ls, 60000, "414", out, sizeof out);
  assert_string_equal(out, "no lease written for 60000 ms while a session holds the leader lock "
                           "(no controller leads): asked PostgreSQL to end the session(s) "
                           "holding the lock (pid 414)");
  assert_null(strstr(out, "epoch 0"));
  elect_evict_blocked_words(&ls, "414", out, sizeof out);
  assert_non_null(strstr(out, "pid 414 (a session that wrote no lease), which was asked to end"));
  assert_null(strstr(out, "epoch 0"));
  /* Nobody held it by the time it asked: said, not left blank. */
  elect_evict_words(&ls, 60000, "", out, sizeof out);
  assert_non_null(strstr(out, "(pid none)"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_delays_double_up_to_the_bound),
      cmocka_unit_test(test_an_hour_of_the_same_failure),
      cmocka_unit_test(test_a_new_reason_is_told_at_once),
      cmocka_unit_test(test_reset_tries_at_once),
      cmocka_unit_test(test_a_mended_row_is_tried_soon),
      cmocka_unit_test(test_a_busy_writer_costs_an_epoch_per_2s_at_most),
      cmocka_unit_test(test_stuck_words_name_pid_tables_and_fix),
      cmocka_unit_test(test_quiet_leader_raises_after_a_lease_with_the_fix),
      cmocka_unit_test(test_sites_unreadable_raises_after_a_lease),
      cmocka_unit_test(test_rule_load_alarm_on_a_leader_only),
      cmocka_unit_test(test_lease_row_text_is_escaped),
      cmocka_unit_test(test_evict_words_name_the_leader_or_none),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
