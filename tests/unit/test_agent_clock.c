/* Unit tests for the agent's reading of the controller's clock across a
 * restart (site-agent/agent_clock.c).
 *
 * Found in session 16: the offset measured at each Welcome and Directive
 * lived in memory only. An agent restarted while no controller answered
 * ran revert_at on its own host clock, which it had measured to be an
 * hour ahead: a cutover restored at start was ended at once (or, behind,
 * an hour late). Now the reading is kept beside the state file with when
 * it was measured, used after a restart until a controller gives a new
 * one, and /metrics and the log say which clock revert_at runs on and how
 * old the reading is. A reading of another site or another [clock] is not
 * used; nor is a damaged file; no file is a first start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "err.h"
#include "route.h"
#include "support/directive.h"
#include "support/tmpdir.h"

#define CTL  1579651200000LL /* the controller's clock: 2020-01-22 00:00 UTC */
#define HOUR 3600000LL

typedef struct {
  char dir[128];
  agent_conf_t conf;
  agent_t a;
} fx_t;

static int fx_setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  snprintf(fx->dir, sizeof fx->dir, "/tmp/nirc-test-agent-clock.XXXXXX");
  if (!mkdtemp(fx->dir)) {
    free(fx);
    return -1;
  }
  snprintf(fx->conf.state_file, sizeof fx->conf.state_file, "%s/state-hubei.json", fx->dir);
  *state = fx;
  return 0;
}

static int fx_teardown(void **state) {
  fx_t *fx = *state;
  tmpdir_remove(fx->dir);
  free(fx);
  return 0;
}

/* An agent as agent_init leaves it, up to the start route: a fresh
 * process, same configuration. */
static agent_t *start(fx_t *fx, int64_t now_real) {
  memset(&fx->a, 0, sizeof fx->a);
  fx->a.conf = &fx->conf;
  snprintf(fx->a.slug, sizeof fx->a.slug, "hubei");
  clock_init_real(&fx->a.clock);
  agent_clock_init(&fx->a, now_real);
  return &fx->a;
}

static route_t cutover(int64_t revert_at) {
  tdirective_t x;
  tdirective_make(&x, "hubei", 1, 1, "shaanxi", false, "drill");
  x.d.revert_at_ms = revert_at;
  route_t r;
  char why[256];
  assert_int_equal(route_from_directive(&x.d, &r, why, sizeof why), 0);
  return r;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* The host is an hour ahead; the agent met a controller, then restarts
 * with none: a 30-minute cutover saved 10 minutes ago still stands. */
static void test_offset_survives_a_restart(void **state) {
  fx_t *fx = *state;
  agent_t *a = start(fx, CTL + HOUR);
  assert_int_equal(a->clock_src, AGENT_CLOCK_HOST);
  assert_false(a->have_offset);
  agent_clock_sync(a, CTL, CTL + HOUR); /* the Welcome */
  assert_int_equal(a->clock_src, AGENT_CLOCK_MEASURED);
  assert_int_not_equal(a->offset_saved_at_ms, 0); /* written beside the state file */

  route_t saved = cutover(CTL + 30 * 60000LL);
  int64_t host_now = CTL + HOUR + 10 * 60000LL;
  a = start(fx, host_now);
  assert_int_equal(a->clock_src, AGENT_CLOCK_REMEMBERED);
  assert_true(a->have_offset);
  assert_int_equal(a->ctl_offset_ms, -HOUR);
  assert_int_equal(agent_controller_ms(a, host_now), CTL + 10 * 60000LL);
  route_t r;
  agent_start_route(&saved, a->slug, agent_controller_ms(a, host_now), &r);
  assert_int_equal(route_share_of(&r, "shaanxi"), 1000); /* not ended at once */
  /* Due when the controller's clock says so. */
  agent_start_route(&saved, a->slug, agent_controller_ms(a, CTL + HOUR + 30 * 60000LL), &r);
  assert_int_equal(route_share_of(&r, "hubei"), 1000);

  /* The first controller met replaces it. */
  agent_clock_sync(a, CTL + 20 * 60000LL, CTL + 20 * 60000LL + 5000);
  assert_int_equal(a->clock_src, AGENT_CLOCK_MEASURED);
  assert_int_equal(a->ctl_offset_ms, -5000);
  a = start(fx, CTL + HOUR);
  assert_int_equal(a->ctl_offset_ms, -5000); /* it moved: saved again */
}

/* /metrics and the log's words say which clock revert_at runs on, and
 * how old the reading is; no offset is published before there is one. */
static void test_metrics_and_words_say_which_clock(void **state) {
  fx_t *fx = *state;
  char buf[4096];
  agent_t *a = start(fx, CTL);
  assert_true(agent_clock_metrics(a, CTL, buf, sizeof buf) > 0);
  assert_non_null(strstr(buf, "nirc_agent_clock_source{site=\"hubei\",source=\"host\"} 1\n"));
  assert_non_null(strstr(buf, "source=\"measured\"} 0\n"));
  assert_null(strstr(buf, "nirc_agent_clock_offset_seconds"));
  assert_null(strstr(buf, "nirc_agent_clock_offset_age_seconds"));
  agent_clock_describe(a, CTL, buf, sizeof buf);
  assert_non_null(strstr(buf, "this host's own clock"));

  a->offset_at_ms = 0;
  agent_clock_sync(a, CTL, CTL + HOUR);
  a->offset_at_ms = CTL; /* measured "at" a chosen time */
  assert_true(agent_clock_metrics(a, CTL + 90000, buf, sizeof buf) > 0);
  assert_non_null(strstr(buf, "source=\"measured\"} 1\n"));
  assert_non_null(strstr(buf, "nirc_agent_clock_offset_seconds{site=\"hubei\"} 3600.000\n"));
  assert_non_null(strstr(buf, "nirc_agent_clock_offset_age_seconds{site=\"hubei\"} 90\n"));

  a = start(fx, CTL + 2 * 86400000LL);
  assert_int_equal(a->clock_src, AGENT_CLOCK_REMEMBERED);
  a->offset_at_ms = CTL;
  assert_true(agent_clock_metrics(a, CTL + 2 * 86400000LL, buf, sizeof buf) > 0);
  assert_non_null(strstr(buf, "source=\"remembered\"} 1\n"));
  assert_non_null(strstr(buf, "source=\"host\"} 0\n"));
  assert_non_null(strstr(buf, "nirc_agent_clock_offset_age_seconds{site=\"hubei\"} 172800\n"));
  /* Old, and still used: better than the host clock it corrects. */
  agent_clock_describe(a, CTL + 2 * 86400000LL, buf, sizeof buf);
  assert_non_null(strstr(buf, "as remembered from a previous run"));
  assert_non_null(strstr(buf, "+3600.0 s"));
  assert_non_null(strstr(buf, "2 d ago: old"));
  /* Too small a buffer is said, not cut. */
  assert_int_equal(agent_clock_metrics(a, CTL, buf, 40), -1);
}

/* What is not this site's, or not this business clock's, or unreadable,
 * is not used: revert_at runs on the host clock, as with no file. */
static void test_foreign_or_damaged_file_is_not_used(void **state) {
  fx_t *fx = *state;
  agent_t *a = start(fx, CTL);
  agent_clock_sync(a, CTL, CTL + HOUR);
  char err[600];
  /* Another [clock]: the same file means another business clock. */
  fx->a.clock.speed = 60;
  fx->a.clock.start_ms = CTL;
  fx->a.clock.anchor_ms = CTL;
  assert_int_equal(agent_clock_load(&fx->a, CTL, err, sizeof err), NIRC_EINVAL);
  assert_non_null(strstr(err, "another [clock]"));
  assert_int_equal(fx->a.clock_src, AGENT_CLOCK_MEASURED); /* unchanged */

  write_file(fx->a.clock_file, "{\"format\": 1, \"site\": \"shaanxi\", "
                               "\"controller_minus_host_ms\": -5, \"measured_at_ms\": 1, "
                               "\"clock\": {\"speed\": 1, \"start_ms\": 0, \"anchor_ms\": 0}}");
  a = start(fx, CTL);
  assert_int_equal(a->clock_src, AGENT_CLOCK_HOST);
  assert_false(a->have_offset);
  assert_int_equal(agent_clock_load(a, CTL, err, sizeof err), NIRC_EINVAL);
  assert_non_null(strstr(err, "site 'shaanxi'"));

  write_file(fx->a.clock_file, "{\"format\": 1, \"site\": \"hub");
  a = start(fx, CTL);
  assert_int_equal(a->clock_src, AGENT_CLOCK_HOST);
  assert_int_equal(agent_controller_ms(a, CTL), CTL);

  /* A restart with no state file keeps no clock file either. */
  fx->conf.state_file[0] = '\0';
  a = start(fx, CTL);
  assert_string_equal(a->clock_file, "");
  agent_clock_sync(a, CTL, CTL + HOUR);
  assert_int_equal(a->offset_saved_at_ms, 0);
}

/* A rewrite costs an fsync: a reading that moved by a second, or an hour
 * after the last save; not every Directive's jitter. */
static void test_saved_when_it_moved_or_aged(void **state) {
  (void)state;
  agent_t a;
  memset(&a, 0, sizeof a);
  assert_false(agent_clock_should_save(&a, CTL)); /* nothing measured */
  a.have_offset = true;
  a.clock_src = AGENT_CLOCK_REMEMBERED;
  assert_false(agent_clock_should_save(&a, CTL)); /* the file has it */
  a.clock_src = AGENT_CLOCK_MEASURED;
  a.ctl_offset_ms = -HOUR;
  assert_true(agent_clock_should_save(&a, CTL)); /* never saved */
  a.offset_saved_ms = -HOUR + 40;
  a.offset_saved_at_ms = CTL;
  assert_false(agent_clock_should_save(&a, CTL + 60000));
  assert_true(agent_clock_should_save(&a, CTL + HOUR));
  a.ctl_offset_ms = -HOUR + 1500;
  assert_true(agent_clock_should_save(&a, CTL + 60000));
}

/* A report's interval is the time that passed, on the monotonic clock:
 * the controller divides the report's calls by it. Before, it was the
 * difference of this host's clock between collects, so the host clock
 * stepped forward by 10 min (NTP fixing what the `clock` alarm named)
 * made a Kamailio report of 5 s of calls say 605 s (the controller took
 * the site's demand for about half, an hour's step for near zero), and
 * one stepped back said the report period whatever had passed. The
 * simulator's counts run on the business clock: its difference stays. */
static void test_interval_is_the_time_that_passed(void **state) {
  (void)state;
  agent_t a;
  memset(&a, 0, sizeof a);
  a.clock.speed = 1.0;
  const uint64_t M = 1000000; /* clock_mono_ms at the last collect */
  int64_t stepped;
  /* Steady: 5 s on both clocks. */
  assert_int_equal(agent_clock_interval(&a, false, CTL, CTL + 5000, M, M + 5000, &stepped), 5000);
  assert_int_equal(stepped, 0);
  /* The host clock stepped 10 min forward: 5 s passed. */
  assert_int_equal(agent_clock_interval(&a, false, CTL, CTL + 605000, M, M + 5000, &stepped), 5000);
  assert_int_equal(stepped, 600000);
  /* ... or back: still 5 s, not the report period by default. */
  assert_int_equal(agent_clock_interval(&a, false, CTL, CTL - 595000, M, M + 5000, &stepped), 5000);
  assert_int_equal(stepped, -600000);
  /* The simulator simulated the 605 s its business clock moved. */
  assert_int_equal(agent_clock_interval(&a, true, CTL, CTL + 605000, M, M + 5000, &stepped),
                   605000);
  assert_int_equal(stepped, 600000);
  /* An accelerated clock (60x): 5 s real are 300 s of business time, and
   * its ordinary drift under a second (times 60) is no step. */
  a.clock.speed = 60.0;
  assert_int_equal(agent_clock_interval(&a, false, CTL, CTL + 330000, M, M + 5000, &stepped),
                   300000);
  assert_int_equal(stepped, 0);
  /* No last collect: 0 (the caller sends the report period). */
  assert_int_equal(agent_clock_interval(&a, false, 0, CTL, 0, M, &stepped), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_offset_survives_a_restart, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_metrics_and_words_say_which_clock, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_foreign_or_damaged_file_is_not_used, fx_setup,
                                      fx_teardown),
      cmocka_unit_test(test_saved_when_it_moved_or_aged),
      cmocka_unit_test(test_interval_is_the_time_that_passed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
