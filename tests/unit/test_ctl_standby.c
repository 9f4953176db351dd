/* nircctl when only standbys answer (controller/ctl_standby.c): it asks
 * again while an election runs, and stops at once when a standby names
 * what keeps every controller from leading, with what to check; and what
 * it advises when a controller took a change and never answered. */
#include "ctl_standby.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void an_election_is_waited_for_a_few_rounds(void **state) {
  (void)state;
  assert_int_equal(ctl_standby_next(1, 0, 20, false), CTL_STANDBY_AGAIN);
  assert_int_equal(ctl_standby_next(2, 19, 20, false), CTL_STANDBY_AGAIN);
  assert_int_equal(ctl_standby_next(1, 20, 20, false), CTL_STANDBY_STOP);
  /* Nobody answered at all: unreachable, not an election. */
  assert_int_equal(ctl_standby_next(0, 0, 20, false), CTL_STANDBY_STOP);
}

static void a_named_reason_stops_at_once(void **state) {
  (void)state;
  assert_int_equal(ctl_standby_next(1, 0, 20, true), CTL_STANDBY_STOP);
  assert_int_equal(ctl_standby_next(3, 5, 20, true), CTL_STANDBY_STOP);
}

static char *said(const char *blocked, bool asked) {
  static char buf[4096];
  FILE *f = fmemopen(buf, sizeof buf, "w");
  assert_non_null(f);
  ctl_standby_say(f, blocked, "  127.0.0.1:7443: nircd-2 is a standby and no controller leads: x",
                  asked);
  fclose(f);
  return buf;
}

static void the_message_names_what_to_check(void **state) {
  (void)state;
  char *s = said("rules_locked", false);
  assert_non_null(strstr(s, "nircctl: no controller leads now"));
  assert_non_null(strstr(s, "127.0.0.1:7443: nircd-2 is a standby"));
  assert_non_null(strstr(s, "pg_terminate_backend"));
  assert_non_null(strstr(s, "Nothing was changed"));
  s = said("rules_load", false);
  assert_non_null(strstr(s, "mend the row"));
  s = said("leader_lock", false);
  assert_non_null(strstr(s, "kill -CONT it if it is stopped"));
  /* A reason a newer nircd sends: its words are shown, no guess. */
  s = said("rules_from_the_future", false);
  assert_non_null(strstr(s, "The controller's words above say what keeps it from leading"));
  /* A controller took the request and never answered: no "nothing changed". */
  s = said("rules_load", true);
  assert_null(strstr(s, "Nothing was changed"));
}

static char *unanswered(ctl_cmd_id_t cmd) {
  static char buf[4096];
  FILE *f = fmemopen(buf, sizeof buf, "w");
  assert_non_null(f);
  ctl_standby_no_answer(f, cmd, "  127.0.0.1:7443: took the request but sent no answer", 3000);
  fclose(f);
  return buf;
}

/* A controller took a change and never answered, most often waiting on a
 * hung database: the advice names a command the leader answers from
 * memory for that change, not `nircctl history`, which reads that same
 * database (and lacks a change not yet saved). */
static void a_change_unanswered_is_checked_from_memory(void **state) {
  (void)state;
  char *s = unanswered(CTL_CMD_SCHEDULE);
  assert_non_null(strstr(s, "nircctl: no answer from a controller:\n  127.0.0.1:7443: took"));
  assert_non_null(strstr(s, "it may still have been made"));
  assert_non_null(strstr(s, "with `nircctl schedule list`, which the leader answers from memory"));
  assert_null(strstr(s, "check `nircctl history`"));
  assert_non_null(strstr(s, "(--timeout, now 3000 ms per controller)"));
  assert_non_null(strstr(unanswered(CTL_CMD_OVERFLOW), "with `nircctl overflow list`"));
  assert_non_null(strstr(unanswered(CTL_CMD_ALARMS), "with `nircctl alarms`,"));
  assert_non_null(strstr(unanswered(CTL_CMD_CAPACITY), "with `nircctl capacity`,"));
  assert_non_null(strstr(unanswered(CTL_CMD_CUTOVER), "with `nircctl status`"));
  assert_non_null(strstr(unanswered(CTL_CMD_RESTORE), "with `nircctl status`"));
}

/* Brief s21S: a standby's "cannot answer now ... an election is running"
 * was printed bare on stderr, then the new leader answered and nircctl
 * exited 0: the output read as a failure. The note now says nircctl
 * retries, for how long at most, and a success after it says who answered;
 * a leader named is a redirect, said as before. */
static void a_wait_for_an_election_reads_as_a_wait(void **state) {
  (void)state;
  static char buf[1024];
  FILE *f = fmemopen(buf, sizeof buf, "w");
  assert_non_null(f);
  assert_true(ctl_standby_tell(f,
                               "nircd at 127.0.0.1:7443 cannot answer now: nircd-1 is a standby "
                               "and no leader is known: an election is running",
                               true, 8200));
  ctl_standby_answered(f, "127.0.0.1:7444");
  fclose(f);
  assert_string_equal(buf, "nircctl: nircd at 127.0.0.1:7443 cannot answer now: nircd-1 is a "
                           "standby and no leader is known: an election is running; retrying "
                           "for up to 9 s\n"
                           "nircctl: answered by 127.0.0.1:7444 after the election (the note "
                           "above was a wait, not an error)\n");
  f = fmemopen(buf, sizeof buf, "w");
  assert_non_null(f);
  assert_false(
      ctl_standby_tell(f, "nircd at a:1 is a standby; the leader is b:2 (epoch 3)", false, 8200));
  fclose(f);
  assert_string_equal(buf, "nircctl: nircd at a:1 is a standby; the leader is b:2 (epoch 3)\n");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(an_election_is_waited_for_a_few_rounds),
      cmocka_unit_test(a_named_reason_stops_at_once),
      cmocka_unit_test(the_message_names_what_to_check),
      cmocka_unit_test(a_change_unanswered_is_checked_from_memory),
      cmocka_unit_test(a_wait_for_an_election_reads_as_a_wait),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
