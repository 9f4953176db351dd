/* Unit tests for the agent's decisions about its route in force
 * (site-agent/agent_route.c), made on an agent state in memory: no loop,
 * no adapter. agent.c does what they decide.
 *
 * Found by an outside audit with real processes:
 * - F1: an agent restarted while its Kamailio was down failed to restore
 *   the saved cutover, never tried again, never armed its revert_at and
 *   said Hello with no route, so a new controller showed "home" while
 *   Kamailio, started again on its list file, routed away for good. A
 *   failed restore must keep the saved route as the one in force, unknown,
 *   retried, with its revert_at; the Hello must say it is unconfirmed; a
 *   resend of that route must be applied, not answered "already applied".
 * - F4: without a usable state file the agent said "routing home" and
 *   never applied home: the PBX kept an expired cutover. With nothing
 *   saved the route in force is home, unknown until applied.
 * - F3: at revert_at with the state file system full, the agent undid the
 *   revert and kept the expired cutover; home is the route in force once
 *   revert_at has passed, saved or not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent-int.h"
#include "agent.h"
#include "err.h"
#include "route.h"
#include "state.h"
#include "support/directive.h"
#include "support/tmpdir.h"

#define NOW 1579651200000LL /* 2020-01-22 00:00 UTC */

static route_t route_of(const tdirective_t *x) {
  route_t r;
  char why[256];
  assert_int_equal(route_from_directive(&x->d, &r, why, sizeof why), 0);
  return r;
}

/* hubei's cutover to shaanxi under (1, 1), going home at `revert_at`. */
static route_t cutover(int64_t revert_at) {
  tdirective_t x;
  tdirective_make(&x, "hubei", 1, 1, "shaanxi", false, "drill");
  x.d.revert_at_ms = revert_at;
  return route_of(&x);
}

/* An agent as agent_init leaves it: the start route in force, unknown. */
static agent_t *started_agent(const route_t *saved) {
  static agent_t a;
  memset(&a, 0, sizeof a);
  snprintf(a.slug, sizeof a.slug, "hubei");
  a.max_epoch = saved ? saved->epoch : 0;
  a.route_state = AGENT_ROUTE_UNKNOWN;
  snprintf(a.route_why, sizeof a.route_why, "the saved route is not applied yet");
  agent_start_route(saved, a.slug, NOW, &a.applied);
  return &a;
}

/* Does what agent_on_applied does with the decision's route and state;
 * `unread`: the apply succeeded without a read-back of the PBX. */
static agent_applied_t finish_unread(agent_t *a, const route_t *r, agent_apply_purpose_t purpose,
                                     int apply_rc, int save_rc, bool unread) {
  agent_applied_t o = agent_decide_applied(a->route_state, purpose, apply_rc, save_rc);
  a->applied_unverified =
      agent_route_unverified(a->applied_unverified, purpose, &o, unread && apply_rc == 0);
  if (o.take) a->applied = *r;
  a->route_state = o.route_state;
  return o;
}

static agent_applied_t finish(agent_t *a, const route_t *r, agent_apply_purpose_t purpose,
                              int apply_rc, int save_rc) {
  return finish_unread(a, r, purpose, apply_rc, save_rc, false);
}

/* The Hello `a` would send now. */
static Nirc__Hello hello_of(const agent_t *a) {
  static Nirc__Directive ap;
  static route_pb_t pb;
  Nirc__Hello h = NIRC__HELLO__INIT;
  nirc__directive__init(&ap);
  agent_fill_hello_route(a, &h, &ap, &pb);
  return h;
}

/* ---- F1 ---------------------------------------------------------------- */

static void test_failed_restore_is_retried_and_revert_armed(void **state) {
  route_t saved = cutover(NOW + 40000);
  agent_t *a = started_agent(&saved);
  /* The saved route, revert_at and all, is the one applied at start. */
  assert_true(route_same(&a->applied, &saved));
  assert_int_equal(route_compare_version(&a->applied, &saved), 0);
  assert_int_equal(a->applied.revert_at_ms, NOW + 40000);

  /* Kamailio's RPC socket is not there. */
  route_t tried = a->applied;
  agent_applied_t o = finish(a, &tried, APPLY_RESTORE, NIRC_EIO, 0);
  assert_int_not_equal(o.rc, 0);
  assert_true(o.retry);
  assert_false(o.undo);
  assert_int_equal(o.route_state, AGENT_ROUTE_UNKNOWN);
  /* Still the route in force (not version-0 home): its revert_at is the
   * one agent_arm_revert arms, and older directives stay refused. */
  assert_true(o.take);
  assert_int_equal(a->applied.version, 1);
  assert_int_equal(a->applied.revert_at_ms, NOW + 40000);
  assert_int_equal(route_share_of(&a->applied, "shaanxi"), 1000);

  /* The Hello carries the route and says it is not confirmed. */
  Nirc__Hello h = NIRC__HELLO__INIT;
  Nirc__Directive ap = NIRC__DIRECTIVE__INIT;
  route_pb_t pb;
  agent_fill_hello_route(a, &h, &ap, &pb);
  assert_non_null(h.applied);
  assert_int_equal(h.applied->version, 1);
  assert_true(h.route_unconfirmed);
  assert_non_null(strstr(h.route_unconfirmed_why, "not applied"));

  /* The controller resends that route: applied again, not "already
   * applied" (the PBX does not have it). */
  tdirective_t x;
  tdirective_make(&x, "hubei", 1, 1, "shaanxi", false, "drill");
  x.d.revert_at_ms = NOW + 40000;
  route_t r;
  Nirc__AckResult res;
  char why[256] = "";
  assert_int_equal(agent_check_directive(a, &x.d, &r, &res, why, sizeof why),
                   AGENT_DIRECTIVE_APPLY);
  /* Nor does the restore in flight make it wait for an ack that never
   * comes (only a directive's apply is acknowledged). */
  a->applying = true;
  a->applying_route = a->applied;
  a->applying_purpose = APPLY_RESTORE;
  assert_int_equal(agent_check_directive(a, &x.d, &r, &res, why, sizeof why),
                   AGENT_DIRECTIVE_APPLY);
  a->applying = false;

  /* The retry fails again, then Kamailio is back. */
  o = finish(a, &tried, APPLY_RESTORE, NIRC_EIO, 0);
  assert_true(o.retry);
  o = finish(a, &tried, APPLY_RESTORE, 0, 0);
  assert_int_equal(o.rc, 0);
  assert_false(o.retry);
  assert_int_equal(o.route_state, AGENT_ROUTE_KNOWN);
  memset(&h, 0, sizeof h);
  nirc__hello__init(&h);
  agent_fill_hello_route(a, &h, &ap, &pb);
  assert_false(h.route_unconfirmed);
  /* Known now: a resend is answered at once. */
  assert_int_equal(agent_check_directive(a, &x.d, &r, &res, why, sizeof why), AGENT_DIRECTIVE_ACK);
  assert_int_equal(res, NIRC__ACK_RESULT__ACK_RESULT_APPLIED);
}

/* Restarted after revert_at: home under the saved version, not the
 * expired cutover first and home after. */
static void test_start_after_revert_at_applies_home(void **state) {
  route_t saved = cutover(NOW - 1);
  agent_t *a = started_agent(&saved);
  assert_int_equal(route_share_of(&a->applied, "hubei"), 1000);
  assert_int_equal(a->applied.epoch, 1);
  assert_int_equal(a->applied.version, 1);
  assert_int_equal(a->applied.revert_at_ms, 0);
  assert_int_equal(a->route_state, AGENT_ROUTE_UNKNOWN);
  /* A revert the PBX does not take is retried with home in force. */
  agent_applied_t o = finish(a, &a->applied, APPLY_REVERT, NIRC_EIO, 0);
  assert_true(o.retry);
  assert_int_equal(route_share_of(&a->applied, "hubei"), 1000);
}

/* ---- F3 ---------------------------------------------------------------- */

static void test_revert_kept_when_save_fails(void **state) {
  route_t saved = cutover(NOW + 12000);
  agent_t *a = started_agent(&saved);
  agent_applied_t o = finish(a, &a->applied, APPLY_RESTORE, 0, 0);
  assert_int_equal(a->route_state, AGENT_ROUTE_KNOWN);

  /* revert_at: home applied, the state file system full. */
  route_t home;
  route_home(&home, "hubei");
  home.epoch = 1;
  home.version = 1;
  o = finish(a, &home, APPLY_REVERT, 0, NIRC_EIO);
  assert_int_equal(o.rc, 0);
  assert_false(o.undo); /* was: the expired cutover put back */
  assert_true(o.take);
  assert_false(o.retry);
  assert_int_equal(o.route_state, AGENT_ROUTE_KNOWN);
  assert_int_equal(route_share_of(&a->applied, "hubei"), 1000);

  /* A restore or a repair is kept too: the disk has that route already. */
  o = agent_decide_applied(AGENT_ROUTE_KNOWN, APPLY_RESTORE, 0, NIRC_EIO);
  assert_false(o.undo);
  assert_int_equal(o.rc, 0);
  o = agent_decide_applied(AGENT_ROUTE_KNOWN, APPLY_REPAIR, 0, NIRC_EIO);
  assert_false(o.undo);
  /* A directive's new route is still undone: a restart would drop it. */
  o = agent_decide_applied(AGENT_ROUTE_KNOWN, APPLY_DIRECTIVE, 0, NIRC_EIO);
  assert_true(o.undo);
  assert_false(o.take);
  assert_int_equal(o.rc, NIRC_EIO);
  /* An undo the PBX does not take leaves the route unknown, retried. */
  o = agent_decide_applied(AGENT_ROUTE_KNOWN, APPLY_UNDO, NIRC_EIO, 0);
  assert_int_equal(o.route_state, AGENT_ROUTE_UNKNOWN);
  assert_true(o.retry);
  /* A directive that failed leaves the known route known (the adapter
   * keeps the previous routing); the controller tries again. */
  o = agent_decide_applied(AGENT_ROUTE_KNOWN, APPLY_DIRECTIVE, NIRC_EIO, 0);
  assert_int_equal(o.route_state, AGENT_ROUTE_KNOWN);
  assert_false(o.retry);
  assert_false(o.take);
  /* One whose outcome is unknown (killed at its timeout, no read-back)
   * may have changed the PBX: the route in force is unknown, so the Hello
   * says unconfirmed; not retried (the controller decides what comes
   * next), and the directive's route is not taken. A repair's is retried. */
  o = agent_decide_applied(AGENT_ROUTE_KNOWN, APPLY_DIRECTIVE, NIRC_EOUTCOME_UNKNOWN, 0);
  assert_int_equal(o.route_state, AGENT_ROUTE_UNKNOWN);
  assert_int_equal(o.rc, NIRC_EOUTCOME_UNKNOWN);
  assert_false(o.retry);
  assert_false(o.take);
  o = agent_decide_applied(AGENT_ROUTE_KNOWN, APPLY_REPAIR, NIRC_EOUTCOME_UNKNOWN, 0);
  assert_int_equal(o.route_state, AGENT_ROUTE_UNKNOWN);
  assert_true(o.retry);
}

/* ---- F4 ---------------------------------------------------------------- */

/* Nothing saved (missing, or corrupt and moved aside, as agent_init
 * loads it): home is the route to apply, and not known until applied. */
static void test_start_without_state_file(void **state) {
  char dir[] = "/tmp/nirc-agent-route-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256], err[512];
  snprintf(path, sizeof path, "%s/state.json", dir);
  route_t saved;
  uint64_t seen = 0;
  assert_int_equal(state_load_seen(path, "hubei", &saved, &seen, err, sizeof err), NIRC_ENOTFOUND);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("{\"route_state\": {\"route\": [{\"site\": \"sha", f); /* torn write */
  fclose(f);
  assert_int_not_equal(state_load_seen(path, "hubei", &saved, &seen, err, sizeof err), 0);
  tmpdir_remove(dir);

  agent_t *a = started_agent(NULL);
  assert_int_equal(route_share_of(&a->applied, "hubei"), 1000);
  assert_int_equal(a->applied.version, 0);
  assert_int_equal(a->route_state, AGENT_ROUTE_UNKNOWN);
  /* Said to the controller: no route, and not confirmed (was: nothing,
   * which it takes for home). */
  Nirc__Hello h = NIRC__HELLO__INIT;
  Nirc__Directive ap = NIRC__DIRECTIVE__INIT;
  route_pb_t pb;
  agent_fill_hello_route(a, &h, &ap, &pb);
  assert_null(h.applied);
  assert_true(h.route_unconfirmed);

  /* The PBX cannot be reached: unknown, retried. */
  route_t home = a->applied;
  agent_applied_t o = finish(a, &home, APPLY_RESTORE, NIRC_EIO, 0);
  assert_true(o.retry);
  assert_int_equal(o.route_state, AGENT_ROUTE_UNKNOWN);
  /* Applied (and read back): home is known now, and only now. */
  o = finish(a, &home, APPLY_RESTORE, 0, 0);
  assert_int_equal(o.route_state, AGENT_ROUTE_KNOWN);
  nirc__hello__init(&h);
  agent_fill_hello_route(a, &h, &ap, &pb);
  assert_false(h.route_unconfirmed);
  assert_string_equal(agent_route_state_name(a->route_state), "known");
}

/* ---- unverified routes (session 16) ------------------------------------ */

/* An exec adapter without verify_cmd: the route in force was applied but
 * never read back. The Hello says so (route_unverified), or a new leader
 * shows it as read back. Not saved with the route: a restarted agent
 * applies its route before its first Hello and learns it from that. */
static void test_hello_says_the_route_is_unverified(void **state) {
  route_t saved = cutover(NOW + 40000);
  agent_t *a = started_agent(&saved);
  Nirc__Hello h = hello_of(a);
  assert_true(h.route_unconfirmed); /* not applied yet: unknown says more */
  assert_false(h.route_unverified);
  finish_unread(a, &a->applied, APPLY_RESTORE, 0, 0, true);
  h = hello_of(a);
  assert_false(h.route_unconfirmed);
  assert_non_null(h.applied);
  assert_int_equal(h.applied->version, 1);
  assert_true(h.route_unverified);
  /* A directive that failed leaves that route, unverified, in force. */
  tdirective_t x;
  tdirective_make(&x, "hubei", 1, 2, "henan", false, "drill");
  route_t r2 = route_of(&x);
  finish(a, &r2, APPLY_DIRECTIVE, NIRC_EIO, 0);
  assert_true(hello_of(a).route_unverified);
  /* Applied and read back (a verify_cmd now): no longer unverified. */
  finish(a, &r2, APPLY_DIRECTIVE, 0, 0);
  assert_false(hello_of(a).route_unverified);
  /* revert_at, home applied unread: unverified again. */
  route_t home;
  route_home(&home, "hubei");
  home.epoch = 1;
  home.version = 2;
  finish_unread(a, &home, APPLY_REVERT, 0, 0, true);
  assert_true(hello_of(a).route_unverified);
  /* A revert the PBX did not take: unknown, not "unverified". */
  finish(a, &home, APPLY_REVERT, NIRC_EIO, 0);
  h = hello_of(a);
  assert_true(h.route_unconfirmed);
  assert_false(h.route_unverified);
}

/* An undo puts the route in force back through the PBX: whether it was
 * read back is that apply's. The restore failed (unknown), a directive
 * applied unread could not be saved and was undone, unread: the route in
 * force is known now, and unverified. */
static void test_undo_decides_unverified(void **state) {
  route_t saved = cutover(NOW + 40000);
  agent_t *a = started_agent(&saved);
  finish(a, &a->applied, APPLY_RESTORE, NIRC_EIO, 0);
  assert_int_equal(a->route_state, AGENT_ROUTE_UNKNOWN);
  tdirective_t x;
  tdirective_make(&x, "hubei", 1, 2, "henan", false, "drill");
  route_t r2 = route_of(&x);
  agent_applied_t o = finish_unread(a, &r2, APPLY_DIRECTIVE, 0, NIRC_EIO, true);
  assert_true(o.undo);
  assert_int_equal(a->applied.version, 1);
  o = finish_unread(a, &a->applied, APPLY_UNDO, 0, 0, true);
  assert_int_equal(o.route_state, AGENT_ROUTE_KNOWN);
  Nirc__Hello h = hello_of(a);
  assert_false(h.route_unconfirmed);
  assert_true(h.route_unverified);
}

/* A route unknown at start (the Hello says unconfirmed, and cannot say
 * unverified) and confirmed later by an apply that was not read back: the
 * ROUTE_CONFIRMED event carries the mark, or the controller shows it as
 * read back. Queued here: no link. */
static void test_route_confirmed_unread_says_so(void **state) {
  route_t saved = cutover(NOW + 40000);
  agent_t *a = started_agent(&saved);
  a->state = AGENT_BACKOFF;
  finish(a, &a->applied, APPLY_RESTORE, NIRC_EIO, 0);
  assert_true(hello_of(a).route_unconfirmed);
  finish_unread(a, &a->applied, APPLY_RESTORE, 0, 0, true);
  agent_pbx_event(a, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_ROUTE_CONFIRMED, "shaanxi", "shaanxi",
                  "applied");
  assert_int_equal(a->n_events, 1);
  assert_true(a->events[0].unverified);
  /* Read back: not marked; nor is any other kind. */
  finish(a, &a->applied, APPLY_REPAIR, 0, 0);
  agent_pbx_event(a, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_ROUTE_CONFIRMED, "shaanxi", "shaanxi",
                  "applied");
  assert_false(a->events[1].unverified);
  a->applied_unverified = true;
  agent_pbx_event(a, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_ROUTE_UNCONFIRMED, "unknown", "shaanxi",
                  "failed");
  assert_false(a->events[2].unverified);
}

/* ---- /metrics while the route is unknown ------------------------------- */

/* nirc_agent_route_home_permille was published while the route in force
 * was unknown: the share of a route nobody confirmed at the PBX, shown as
 * a measured figure (a failed restore of a cutover said 0, "all calls
 * away", with the PBX perhaps routing home). Absent while unknown, as
 * nircd leaves out what is not measured, and nirc_agent_route_known says
 * which. */
static void test_metrics_leave_out_an_unknown_route(void **state) {
  (void)state;
  route_t saved = cutover(NOW + 40000);
  agent_t *a = started_agent(&saved);
  char buf[4096];
  assert_true(agent_metrics_format(a, NOW, buf, sizeof buf) > 0);
  assert_non_null(strstr(buf, "nirc_agent_route_known{site=\"hubei\"} 0\n"));
  assert_null(strstr(buf, "nirc_agent_route_home_permille"));
  assert_null(strstr(buf, "nirc_agent_inbound_sources"));
  /* The counters are counted, known or not. */
  assert_non_null(strstr(buf, "nirc_agent_applies_total{site=\"hubei\",result=\"failed\"} 0\n"));

  route_t tried = a->applied;
  finish(a, &tried, APPLY_RESTORE, 0, 0);
  assert_true(agent_metrics_format(a, NOW, buf, sizeof buf) > 0);
  assert_non_null(strstr(buf, "nirc_agent_route_known{site=\"hubei\"} 1\n"));
  assert_non_null(strstr(buf, "nirc_agent_route_home_permille{site=\"hubei\"} 0\n"));
  assert_non_null(strstr(buf, "nirc_agent_inbound_sources{site=\"hubei\"} 0\n"));
  /* Too small a buffer is said, not cut short. */
  assert_int_equal(agent_metrics_format(a, NOW, buf, 100), -1);
}

/* ---- a revert the PBX did not take ------------------------------------- */

/* At revert_at the agent's return home failed (the PBX could not be
 * reached): home is the route in force, unknown. Before, the controller
 * heard only that the route was unconfirmed, named the route the agent
 * had left in its alarm, and showed that route as the site's once the
 * agent confirmed home at the PBX. Now a REVERTED event (naming the route
 * left) says the agent went home and the PBX did not take it, and again
 * once it did; a later route ends that. */
static void test_failed_revert_is_reported(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  route_t saved = cutover(NOW + 40000);
  agent_t *a = started_agent(&saved);
  a->loop = &loop;
  route_t tried = a->applied;
  finish(a, &tried, APPLY_RESTORE, 0, 0);
  route_t home;
  agent_start_route(&saved, a->slug, NOW + 40000, &home); /* what agent_on_revert applies */
  assert_string_equal(home.reason, ROUTE_REASON_REVERTED);

  agent_applied_t o = finish(a, &home, APPLY_REVERT, NIRC_EIO, 0);
  assert_int_equal(o.route_state, AGENT_ROUTE_UNKNOWN);
  agent_pbx_applied(a, APPLY_REVERT, &home, NIRC_EIO, "apply_cmd exited 1: PBX not reachable");
  assert_int_equal(a->n_events, 1);
  const agent_pbx_event_t *ev = &a->events[0];
  assert_int_equal(ev->kind, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_REVERTED);
  assert_int_equal(ev->epoch, 1);
  assert_int_equal(ev->version, 1);
  assert_string_equal(ev->found, "unknown");
  assert_non_null(strstr(ev->detail, "the PBX did not take home (apply_cmd exited 1: PBX not "
                                     "reachable): the route is unknown until it does"));

  /* The retry (a restore of the route in force) fails again: said once. */
  finish(a, &home, APPLY_RESTORE, NIRC_EIO, 0);
  agent_pbx_applied(a, APPLY_RESTORE, &home, NIRC_EIO, "PBX not reachable");
  assert_int_equal(a->n_events, 1);
  /* The PBX takes home: said again, as taken. */
  finish(a, &home, APPLY_RESTORE, 0, 0);
  agent_pbx_applied(a, APPLY_RESTORE, &home, 0, "");
  assert_int_equal(a->n_events, 2);
  ev = &a->events[1];
  assert_int_equal(ev->kind, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_REVERTED);
  assert_string_equal(ev->found, "home");
  assert_non_null(strstr(ev->detail, "the PBX has taken home now"));
  /* Once only. */
  agent_pbx_applied(a, APPLY_RESTORE, &home, 0, "");
  assert_int_equal(a->n_events, 2);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- when it went home ------------------------------------------------- */

/* The agent goes home at revert_at while no controller hears it. It keeps
 * when (the controller's clock as it measured it) with home in the state
 * file, across a restart, and says it in the Hello and the REVERTED event,
 * so a controller that learns of it late records the return then, not a
 * guess. A file from before (no went_home) loads with the time unknown;
 * an agent that was not running at revert_at goes home when it starts
 * again, on the clock it has then (its host's, with nothing remembered). */
static void test_went_home_time_is_kept_and_said(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  char dir[] = "/tmp/nirc-agent-home-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256], err[512];
  snprintf(path, sizeof path, "%s/state.json", dir);

  route_t saved = cutover(NOW + 40000);
  agent_t *a = started_agent(&saved);
  a->loop = &loop;
  finish(a, &saved, APPLY_RESTORE, 0, 0);
  /* Measured: this host is 3 s behind the controller. */
  a->have_offset = true;
  a->clock_src = AGENT_CLOCK_MEASURED;
  a->ctl_offset_ms = 3000;
  route_t home;
  agent_start_route(&saved, a->slug, NOW + 40000, &home);
  agent_clock_went_home(a, NOW + 37500); /* agent_on_revert, at 40.5 s on the controller's */
  assert_int_equal(a->went_home_ms, NOW + 40500);
  finish(a, &home, APPLY_REVERT, 0, 0);
  agent_pbx_applied(a, APPLY_REVERT, &home, 0, "");
  assert_int_equal(a->n_events, 1);
  assert_int_equal(a->events[0].went_home_ms, NOW + 40500);
  assert_int_equal(a->events[0].went_home_src, AGENT_CLOCK_MEASURED);
  /* This process counts since it went, on its monotonic clock: its Hello
   * says how long ago (no clock offset in that), as the event will. */
  assert_true(a->went_home_mono_ms > 0);
  assert_int_equal(a->events[0].went_home_mono_ms, a->went_home_mono_ms);
  {
    Nirc__Hello h0 = NIRC__HELLO__INIT;
    Nirc__Directive ap0 = NIRC__DIRECTIVE__INIT;
    route_pb_t pb0;
    agent_fill_hello_route(a, &h0, &ap0, &pb0);
    assert_true(h0.went_home_ago_said);
    assert_true(h0.went_home_ago_ms < 5000);
  }

  state_extra_t x;
  agent_state_extra(a, &home, &x);
  assert_int_equal(state_save_ext(path, "hubei", &home, &x, err, sizeof err), 0);

  /* Restarted, with no controller: the time comes back from the file. */
  route_t back;
  state_extra_t bx;
  assert_int_equal(state_load_ext(path, "hubei", &back, &bx, err, sizeof err), 0);
  assert_int_equal(bx.went_home_ms, NOW + 40500);
  a = started_agent(&back);
  agent_start_went_home(a, &back, &bx, NOW + 900000);
  assert_int_equal(a->went_home_ms, NOW + 40500);
  assert_int_equal(a->went_home_src, AGENT_CLOCK_MEASURED);
  Nirc__Hello h = NIRC__HELLO__INIT;
  Nirc__Directive ap = NIRC__DIRECTIVE__INIT;
  route_pb_t pb;
  agent_fill_hello_route(a, &h, &ap, &pb);
  assert_non_null(h.applied);
  assert_int_equal(h.went_home_at_ms, NOW + 40500);
  assert_int_equal(h.went_home_clock, NIRC__AGENT_CLOCK__AGENT_CLOCK_MEASURED);
  /* The count went with the process that made it. */
  assert_false(h.went_home_ago_said);

  /* A directive's route did not go home on its own: nothing saved. */
  route_t moved = cutover(0);
  moved.version = 2;
  agent_state_extra(a, &moved, &x);
  assert_int_equal(x.went_home_ms, 0);

  /* A file from before this field: home, when unknown; the Hello says
   * nothing of it. */
  assert_int_equal(state_save_seen(path, "hubei", &home, 1, err, sizeof err), 0);
  assert_int_equal(state_load_ext(path, "hubei", &back, &bx, err, sizeof err), 0);
  assert_int_equal(bx.went_home_ms, 0);
  a = started_agent(&back);
  agent_start_went_home(a, &back, &bx, NOW + 900000);
  assert_int_equal(a->went_home_ms, 0);
  Nirc__Hello h2 = NIRC__HELLO__INIT;
  agent_fill_hello_route(a, &h2, &ap, &pb);
  assert_int_equal(h2.went_home_at_ms, 0);
  assert_int_equal(h2.went_home_clock, NIRC__AGENT_CLOCK__AGENT_CLOCK_UNSAID);

  /* Not running at revert_at: home when it starts, on its host's clock. */
  a = started_agent(&saved); /* agent_start_route at NOW: before revert_at */
  agent_start_route(&saved, a->slug, NOW + 60000, &a->applied);
  agent_start_went_home(a, &saved, NULL, NOW + 60000);
  assert_int_equal(a->went_home_ms, NOW + 60000);
  assert_int_equal(a->went_home_src, AGENT_CLOCK_HOST);
  assert_true(a->went_home_mono_ms > 0); /* it goes home now: this process counts */
  tmpdir_remove(dir);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* The agent goes home on its own at revert_at through an adapter that
 * cannot read the PBX back: its REVERTED event says unverified, as a
 * ROUTE_CONFIRMED would, so the controller does not keep the mark of the
 * route left. Read back, or not taken by the PBX: not unverified. Before,
 * only ROUTE_CONFIRMED carried the mark. */
static void test_revert_applied_unread_says_so(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  route_t saved = cutover(NOW + 40000);
  agent_t *a = started_agent(&saved);
  a->loop = &loop;
  route_t tried = a->applied;
  finish(a, &tried, APPLY_RESTORE, 0, 0);
  route_t home;
  agent_start_route(&saved, a->slug, NOW + 40000, &home); /* what agent_on_revert applies */
  finish_unread(a, &home, APPLY_REVERT, 0, 0, true);
  agent_pbx_applied(a, APPLY_REVERT, &home, 0, "");
  assert_int_equal(a->n_events, 1);
  assert_int_equal(a->events[0].kind, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_REVERTED);
  assert_true(a->events[0].unverified);
  /* Read back (a verify_cmd): not unverified. */
  finish_unread(a, &home, APPLY_REVERT, 0, 0, false);
  agent_pbx_applied(a, APPLY_REVERT, &home, 0, "");
  assert_int_equal(a->n_events, 2);
  assert_false(a->events[1].unverified);
  /* Not taken by the PBX: unknown, not unverified. */
  finish_unread(a, &home, APPLY_REVERT, NIRC_EIO, 0, true);
  agent_pbx_applied(a, APPLY_REVERT, &home, NIRC_EIO, "PBX not reachable");
  assert_int_equal(a->n_events, 3);
  assert_false(a->events[2].unverified);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* A drift the agent repaired while its link was down: the event it sends
 * on reconnect says how long ago it saw it, counted on its monotonic
 * clock as it is sent (no clock offset in it), whatever its host's clock
 * says (at_ms). Before, only a return home said so: the controller
 * recorded a drift seen 10 min before the link came back at its arrival. */
static void test_event_says_how_long_ago_it_was_seen(void **state) {
  (void)state;
  agent_t *a = started_agent(NULL);
  agent_pbx_event(a, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_DRIFT_REPAIRED, "hubei 100%",
                  "shaanxi 100%", "the PBX routed otherwise");
  assert_int_equal(a->n_events, 1); /* no link: queued */
  const agent_pbx_event_t *e = &a->events[0];
  assert_true(e->seen_mono_ms > 0);
  Nirc__PbxEvent ev;
  agent_pbx_fill(a, e, e->seen_mono_ms + 600000, &ev); /* sent 10 min later */
  assert_true(ev.seen_ago_said);
  assert_int_equal(ev.seen_ago_ms, 600000);
  assert_int_equal(ev.at_ms, e->at_ms); /* the host's clock, said as before */
  assert_string_equal(ev.site, "hubei");
  assert_string_equal(ev.found, "hubei 100%");
  /* Sent at once: 0 ago, still said (said is not the same as 0). */
  agent_pbx_fill(a, e, e->seen_mono_ms, &ev);
  assert_true(ev.seen_ago_said);
  assert_int_equal(ev.seen_ago_ms, 0);
}

/* Brief s21S: 20 events while the link is down, 16 kept. Before, the
 * oldest were dropped (the first drift of the outage with them) and only
 * the agent's log said so: the controller believed it heard everything.
 * Now the first of the outage and the newest 15 are kept, and the four
 * between are counted with when the first and the last were seen, said as
 * an EVENTS_DROPPED PbxEvent on the next link (agent_pbx_flush). */
static void test_events_dropped_are_counted_and_said(void **state) {
  (void)state;
  agent_t *a = started_agent(NULL);
  const uint64_t t0 = 1000000;
  for (unsigned i = 0; i < 20; i++) {
    char found[32];
    snprintf(found, sizeof found, "drift %u", i);
    agent_pbx_event(a, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_DRIFT_REPAIRED, found, "shaanxi",
                    "the PBX routed otherwise");
    a->events[a->n_events - 1].seen_mono_ms = t0 + i * 1000; /* seen 1 s apart */
  }
  assert_int_equal(a->n_events, AGENT_PBX_EVENTS_MAX);
  assert_string_equal(a->events[0].found, "drift 0"); /* the first drift stays */
  assert_string_equal(a->events[1].found, "drift 5");
  assert_string_equal(a->events[AGENT_PBX_EVENTS_MAX - 1].found, "drift 19");
  assert_int_equal(a->pbx_events_dropped, 4);
  Nirc__PbxEvent ev;
  assert_true(agent_pbx_fill_lost(a, t0 + 60000, &ev));
  assert_int_equal(ev.kind, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_EVENTS_DROPPED);
  assert_string_equal(ev.site, "hubei");
  assert_int_equal(ev.dropped, 4);
  assert_true(ev.seen_ago_said);
  assert_int_equal(ev.seen_ago_ms, 59000);         /* drift 1 */
  assert_int_equal(ev.dropped_last_ago_ms, 56000); /* drift 4 */
  /* Nothing lost (as after a flush): nothing said. */
  a->lost_n = 0;
  assert_false(agent_pbx_fill_lost(a, t0 + 60000, &ev));
}

/* Brief s20I: a Hello saying the route is unknown says how long ago this
 * stretch's first failure was, counted as it is sent, so that a
 * controller hearing of it only now (link down, a takeover) raises its
 * directive alarm since then even before the queued ROUTE_UNCONFIRMED
 * arrives. Unknown with no failure yet (not applied yet): not said. */
static void test_hello_says_how_long_the_route_is_unknown(void **state) {
  (void)state;
  agent_t *a = started_agent(NULL);
  Nirc__Hello h = hello_of(a);
  assert_true(h.route_unconfirmed);
  assert_false(h.route_unconfirmed_ago_said);
  a->route_unknown_mono_ms = clock_mono_ms() - 600000; /* failed 10 min ago */
  h = hello_of(a);
  assert_true(h.route_unconfirmed_ago_said);
  assert_true(h.route_unconfirmed_ago_ms >= 600000 && h.route_unconfirmed_ago_ms < 605000);
  a->route_state = AGENT_ROUTE_KNOWN;
  h = hello_of(a);
  assert_false(h.route_unconfirmed);
  assert_false(h.route_unconfirmed_ago_said);
}

/* The state file cannot be written (a full disk): before, the agent only
 * logged it on its host, and its controller learned of it when a
 * directive failed ("cannot persist the route"), at the moment a move was
 * needed. Now the first failure of a stretch is told (STATE_NOT_SAVED),
 * its Hello says it while it lasts, and the first write that succeeds
 * again is told (STATE_SAVED). */
static void test_state_not_saved_is_told(void **state) {
  (void)state;
  agent_t *a = started_agent(NULL);
  const char *full =
      "/var/lib/nirc/state.json: write failed: No space left on device: the file system is full: "
      "free space on this host";
  assert_int_equal(agent_state_note(a, 0, ""), AGENT_STATE_TELL_NONE);
  Nirc__Hello h = hello_of(a);
  assert_true(h.state_not_saved_why == NULL || !*h.state_not_saved_why);

  char buf[4096];
  assert_true(agent_metrics_format(a, NOW, buf, sizeof buf) > 0);
  assert_null(strstr(buf, "nirc_agent_state_saved")); /* no state file kept: left out */
  static agent_conf_t conf;
  snprintf(conf.state_file, sizeof conf.state_file, "/var/lib/nirc/state.json");
  a->conf = &conf;
  assert_true(agent_metrics_format(a, NOW, buf, sizeof buf) > 0);
  assert_non_null(strstr(buf, "nirc_agent_state_saved{site=\"hubei\"} 1\n"));

  assert_int_equal(agent_state_note(a, NIRC_EIO, full), AGENT_STATE_TELL_NOT_SAVED);
  assert_true(agent_metrics_format(a, NOW, buf, sizeof buf) > 0);
  assert_non_null(strstr(buf, "nirc_agent_state_saved{site=\"hubei\"} 0\n"));
  /* Every later failure: not told again (the event queue is bounded),
   * but the Hello says the latest words. */
  assert_int_equal(agent_state_note(a, NIRC_EIO, "/var/lib/nirc/state.json: open failed: x"),
                   AGENT_STATE_TELL_NONE);
  h = hello_of(a);
  assert_non_null(h.state_not_saved_why);
  assert_string_equal(h.state_not_saved_why, "/var/lib/nirc/state.json: open failed: x");
  /* A failure without words still says something. */
  assert_int_equal(agent_state_note(a, NIRC_EIO, ""), AGENT_STATE_TELL_NONE);
  h = hello_of(a);
  assert_non_null(strstr(h.state_not_saved_why, "could not be written"));

  assert_int_equal(agent_state_note(a, 0, ""), AGENT_STATE_TELL_SAVED);
  h = hello_of(a);
  assert_true(h.state_not_saved_why == NULL || !*h.state_not_saved_why);
  assert_int_equal(agent_state_note(a, 0, ""), AGENT_STATE_TELL_NONE);
  assert_int_equal(agent_state_note(a, NIRC_EIO, full), AGENT_STATE_TELL_NOT_SAVED);
  a->conf = NULL;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_state_not_saved_is_told),
      cmocka_unit_test(test_event_says_how_long_ago_it_was_seen),
      cmocka_unit_test(test_events_dropped_are_counted_and_said),
      cmocka_unit_test(test_hello_says_how_long_the_route_is_unknown),
      cmocka_unit_test(test_failed_restore_is_retried_and_revert_armed),
      cmocka_unit_test(test_start_after_revert_at_applies_home),
      cmocka_unit_test(test_revert_kept_when_save_fails),
      cmocka_unit_test(test_start_without_state_file),
      cmocka_unit_test(test_hello_says_the_route_is_unverified),
      cmocka_unit_test(test_undo_decides_unverified),
      cmocka_unit_test(test_route_confirmed_unread_says_so),
      cmocka_unit_test(test_metrics_leave_out_an_unknown_route),
      cmocka_unit_test(test_failed_revert_is_reported),
      cmocka_unit_test(test_went_home_time_is_kept_and_said),
      cmocka_unit_test(test_revert_applied_unread_says_so),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
