/* Unit tests for the agent's decision on a Directive (agent_check_directive
 * in site-agent/agent.c), made on an agent state in memory: no link, no
 * adapter.
 *
 * The decision is the agent's half of the directive protocol: a directive
 * for another site, from a deposed leader (older epoch), older than what is
 * applied, or malformed is rejected at once; a resend of the applied route
 * is acknowledged APPLIED again; a newer valid one is applied; a resend of
 * the route being applied waits for that apply. With a slow PBX a route can
 * be in flight and another queued behind it: a resend of the queued one
 * must wait too (queueing it again rejected it as "superseded" by itself
 * and then applied it), and a directive older than either must be rejected
 * (queued, it would have taken the PBX back to an older route). A reason
 * that is not UTF-8 must not make the route impossible to persist.
 *
 * The same fencing applies to a controller's Welcome (agent_check_welcome):
 * a controller that welcomes the agent with an epoch older than the newest
 * it has seen, in memory or in its state file, is a deposed leader that
 * still believes it leads (paused past its lease while the database was
 * down); the agent must leave it, or it reports to it and is lost to the
 * real leader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "err.h"
#include "route.h"
#include "state.h"
#include "support/directive.h"
#include "support/tmpdir.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------ */

/* The route a directive carries, as the agent would hold it. */
static route_t route_of(const tdirective_t *x) {
  route_t r;
  char why[256];
  assert_int_equal(route_from_directive(&x->d, &r, why, sizeof why), 0);
  return r;
}

static agent_t *fresh_agent(void) {
  static agent_t a;
  memset(&a, 0, sizeof a);
  snprintf(a.slug, sizeof a.slug, "hubei");
  route_home(&a.applied, "hubei");
  /* Running, home applied: its route is known (test_agent_route covers
   * the start, before it is). */
  a.route_state = AGENT_ROUTE_KNOWN;
  a.max_epoch = 7;
  return &a;
}

/* x's route is being applied (in flight at the adapter). */
static void set_applying(agent_t *a, const tdirective_t *x) {
  a->applying = true;
  a->applying_route = route_of(x);
  a->applying_purpose = APPLY_DIRECTIVE;
}

/* x's route is queued behind the one being applied. */
static void set_pending(agent_t *a, const tdirective_t *x) {
  a->pending = true;
  a->pending_route = route_of(x);
  a->pending_purpose = APPLY_DIRECTIVE;
}

static agent_directive_action_t check(const agent_t *a, const tdirective_t *x, route_t *r,
                                      Nirc__AckResult *res, char *why) {
  return agent_check_directive(a, &x->d, r, res, why, 256);
}

static Nirc__Welcome welcome_of(uint64_t epoch) {
  Nirc__Welcome w = NIRC__WELCOME__INIT;
  w.controller_node = "nircd-1";
  w.epoch = epoch;
  w.report_interval_ms = 1000;
  return w;
}

/* ---- tests -------------------------------------------------------------- */

static void test_welcome_from_deposed_leader_is_refused(void **state) {
  agent_t *a = fresh_agent(); /* has seen epoch 7 */
  a->naddrs = 2;
  char why[256] = "";
  Nirc__Welcome w = welcome_of(6);
  assert_int_equal(agent_check_welcome(a, &w, why, sizeof why), NIRC_ENOT_LEADER);
  assert_string_equal(why, "controller nircd-1 leads epoch 6, older than epoch 7 this agent has "
                           "seen: a deposed leader; trying the next controller");
  assert_int_equal(a->max_epoch, 7);
  /* Alone in the list, it is tried again, and the line says so. */
  a->naddrs = 1;
  w = welcome_of(1);
  assert_int_equal(agent_check_welcome(a, &w, why, sizeof why), NIRC_ENOT_LEADER);
  assert_non_null(strstr(why, "leads epoch 1, older than epoch 7"));
  assert_non_null(strstr(why, "trying it again after the backoff"));
}

static void test_welcome_of_current_or_newer_epoch_is_accepted(void **state) {
  agent_t *a = fresh_agent();
  a->naddrs = 2;
  char why[256] = "";
  Nirc__Welcome w = welcome_of(7); /* the leader we know, reconnecting */
  assert_int_equal(agent_check_welcome(a, &w, why, sizeof why), 0);
  w = welcome_of(8); /* a new leader */
  assert_int_equal(agent_check_welcome(a, &w, why, sizeof why), 0);
  /* A first start knows no epoch: any leader will do. */
  a->max_epoch = 0;
  w = welcome_of(1);
  assert_int_equal(agent_check_welcome(a, &w, why, sizeof why), 0);
  /* An epoch the state file could not store is refused whatever it is. */
  w = welcome_of((uint64_t)INT64_MAX + 1);
  assert_int_equal(agent_check_welcome(a, &w, why, sizeof why), NIRC_ERANGE);
  assert_non_null(strstr(why, "out of range"));
}

/* A restarted agent refuses the deposed leader too: the newest epoch seen
 * comes back from the state file, even when the route there is older (the
 * route may not change for hours after a takeover). Loaded as agent_init
 * loads it. */
static void test_welcome_refused_after_restart_by_saved_seen_epoch(void **state) {
  char dir[] = "/tmp/nirc-agent-welcome-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256], err[400];
  snprintf(path, sizeof path, "%s/state.json", dir);
  tdirective_t x;
  tdirective_make(&x, "hubei", 1, 3, "henan", false, "cutover under epoch 1");
  route_t r = route_of(&x);
  /* Applied under epoch 1, then welcomed by the epoch-2 leader. */
  assert_int_equal(state_save_seen(path, "hubei", &r, 2, err, sizeof err), 0);

  agent_t *a = fresh_agent();
  a->naddrs = 2;
  a->max_epoch = 0;
  route_t saved;
  assert_int_equal(state_load_seen(path, "hubei", &saved, &a->max_epoch, err, sizeof err), 0);
  tmpdir_remove(dir);
  assert_int_equal(a->max_epoch, 2);
  char why[256] = "";
  Nirc__Welcome w = welcome_of(1);
  assert_int_equal(agent_check_welcome(a, &w, why, sizeof why), NIRC_ENOT_LEADER);
  assert_non_null(strstr(why, "leads epoch 1, older than epoch 2 this agent has seen"));
  w = welcome_of(2);
  assert_int_equal(agent_check_welcome(a, &w, why, sizeof why), 0);
}

static void test_newer_valid_directive_is_applied(void **state) {
  agent_t *a = fresh_agent();
  tdirective_t x;
  route_t r;
  Nirc__AckResult res;
  char why[256] = "";
  tdirective_make(&x, "hubei", 7, 1, "shaanxi", false, "Wuhan lockdown");
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_APPLY);
  assert_int_equal(r.version, 1);
  assert_int_equal(route_share_of(&r, "shaanxi"), 1000);
  /* Empty site: the certificate says who we are. */
  tdirective_make(&x, "", 7, 1, "shaanxi", false, "Wuhan lockdown");
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_APPLY);
}

static void test_refusals_are_acknowledged_at_once(void **state) {
  agent_t *a = fresh_agent();
  tdirective_t x;
  route_t r;
  Nirc__AckResult res;
  char why[256];

  tdirective_make(&x, "hunan", 7, 1, "shaanxi", false, "wrong site");
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_ACK);
  assert_int_equal(res, NIRC__ACK_RESULT__ACK_RESULT_REJECTED);
  assert_non_null(strstr(why, "hunan"));

  tdirective_make(&x, "hubei", 6, 9, "shaanxi", false, "deposed leader");
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_ACK);
  assert_int_equal(res, NIRC__ACK_RESULT__ACK_RESULT_REJECTED);
  assert_non_null(strstr(why, "stale epoch"));

  tdirective_make(&x, "hubei", 7, 3, "shaanxi", false, "bad shares");
  x.shares[0].permille = 999;
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_ACK);
  assert_int_equal(res, NIRC__ACK_RESULT__ACK_RESULT_REJECTED);
  assert_non_null(strstr(why, "sum"));
}

static void test_resend_of_applied_route_is_applied_again(void **state) {
  agent_t *a = fresh_agent();
  tdirective_t x;
  route_t r;
  Nirc__AckResult res;
  char why[256];
  tdirective_make(&x, "hubei", 7, 4, "henan", false, "night");
  a->applied = route_of(&x);
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_ACK);
  assert_int_equal(res, NIRC__ACK_RESULT__ACK_RESULT_APPLIED);
  assert_string_equal(why, "already applied");

  tdirective_make(&x, "hubei", 7, 4, "sichuan", false, "same version, other route");
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_ACK);
  assert_int_equal(res, NIRC__ACK_RESULT__ACK_RESULT_REJECTED);
  assert_non_null(strstr(why, "reused"));

  tdirective_make(&x, "hubei", 7, 3, "sichuan", false, "older");
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_ACK);
  assert_int_equal(res, NIRC__ACK_RESULT__ACK_RESULT_REJECTED);
  assert_non_null(strstr(why, "stale version"));
}

static void test_resend_of_route_in_flight_waits(void **state) {
  agent_t *a = fresh_agent();
  tdirective_t x;
  route_t r;
  Nirc__AckResult res;
  char why[256];
  tdirective_make(&x, "hubei", 7, 5, "shaanxi", false, "night");
  set_applying(a, &x);
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_WAIT);
}

/* Regression (fuzz_directive): (7,5) in flight, (7,7) queued, then the
 * controller resends (7,7) because neither is acknowledged yet. */
static void test_resend_of_queued_directive_waits(void **state) {
  agent_t *a = fresh_agent();
  tdirective_t x;
  route_t r;
  Nirc__AckResult res;
  char why[256];
  tdirective_make(&x, "hubei", 7, 5, "shaanxi", false, "night");
  set_applying(a, &x);
  tdirective_make(&x, "hubei", 7, 7, "henan", false, "Xi'an lockdown");
  set_pending(a, &x);
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_WAIT);
  /* Something newer than both is still applied after them. */
  tdirective_make(&x, "hubei", 7, 8, "sichuan", false, "newer");
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_APPLY);
  /* Between the two: older than what is queued. */
  tdirective_make(&x, "hubei", 7, 6, "sichuan", false, "in between");
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_ACK);
  assert_int_equal(res, NIRC__ACK_RESULT__ACK_RESULT_REJECTED);
  assert_non_null(strstr(why, "(7, 7) is being applied"));
}

/* Regression (fuzz_directive): an older directive while a newer one is in
 * flight was queued and applied after it. */
static void test_older_than_route_in_flight_is_stale(void **state) {
  agent_t *a = fresh_agent();
  tdirective_t x;
  route_t r;
  Nirc__AckResult res;
  char why[256];
  tdirective_make(&x, "hubei", 7, 65, "shaanxi", false, "night");
  set_applying(a, &x);
  tdirective_make(&x, "hubei", 7, 1, "henan", false, "an old plan");
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_ACK);
  assert_int_equal(res, NIRC__ACK_RESULT__ACK_RESULT_REJECTED);
  assert_non_null(strstr(why, "stale version (7, 1); (7, 65) is being applied"));
}

/* Regression (fuzz_directive): a reason with bytes that are not UTF-8 made
 * the route impossible to write to the state file, so the agent undid a
 * valid directive and reported it failed. */
static void test_reason_that_is_not_utf8_still_persists(void **state) {
  agent_t *a = fresh_agent();
  tdirective_t x;
  route_t r;
  Nirc__AckResult res;
  char why[256];
  tdirective_make(&x, "hubei", 7, 2, "shaanxi", true, "GBK \xce\xe4\xba\xba lockdown \xff");
  assert_int_equal(check(a, &x, &r, &res, why), AGENT_DIRECTIVE_APPLY);
  assert_true(nirc_utf8_valid(r.reason));
  assert_non_null(strstr(r.reason, "lockdown"));
  json_t *j = route_to_json(&r);
  assert_non_null(j);
  route_t back;
  assert_int_equal(route_from_json(j, &back, why, sizeof why), 0);
  assert_string_equal(back.reason, r.reason);
  json_decref(j);
}

/* revert_at is a time on the controller's clock. An agent whose host clock
 * is an hour ahead compared it with its own and ended a 30-minute cutover
 * as soon as it applied it (found from outside). The agent now reads the
 * controller's clock from each Welcome and Directive and measures revert_at
 * on it; before any reading it has only its own clock; an older
 * controller's 0 is no reading. */
static void test_revert_at_is_measured_on_the_controllers_clock(void **state) {
  (void)state;
  agent_t *a = fresh_agent();
  const int64_t ctl = 1579651200000LL, hour = 3600000LL;
  const int64_t revert_at = ctl + 30 * 60000LL;           /* cutover --for 30m */
  int64_t local = ctl + hour;                             /* this host: an hour fast */
  assert_int_equal(agent_controller_ms(a, local), local); /* nothing measured */
  agent_clock_sync(a, 0, local);
  assert_false(a->have_offset);
  agent_clock_sync(a, ctl, local); /* the Welcome */
  assert_true(a->have_offset);
  assert_true(a->offset_large);
  assert_true(agent_controller_ms(a, local) < revert_at); /* not due: no early revert */
  assert_int_equal(agent_controller_ms(a, local + 30 * 60000LL), revert_at); /* due on time */
  /* A later directive's reading replaces it (the host clock was fixed). */
  agent_clock_sync(a, ctl + 1000, ctl + 1000);
  assert_int_equal(agent_controller_ms(a, ctl + 5000), ctl + 5000);
  assert_false(a->offset_large);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_newer_valid_directive_is_applied),
      cmocka_unit_test(test_refusals_are_acknowledged_at_once),
      cmocka_unit_test(test_resend_of_applied_route_is_applied_again),
      cmocka_unit_test(test_resend_of_route_in_flight_waits),
      cmocka_unit_test(test_resend_of_queued_directive_waits),
      cmocka_unit_test(test_older_than_route_in_flight_is_stale),
      cmocka_unit_test(test_reason_that_is_not_utf8_still_persists),
      cmocka_unit_test(test_welcome_from_deposed_leader_is_refused),
      cmocka_unit_test(test_welcome_of_current_or_newer_epoch_is_accepted),
      cmocka_unit_test(test_welcome_refused_after_restart_by_saved_seen_epoch),
      cmocka_unit_test(test_revert_at_is_measured_on_the_controllers_clock),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
