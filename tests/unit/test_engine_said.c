/* Unit tests of what the routing engine tells an operator (controller/
 * routing/engine*.c), found untrue from outside in session 14's audit: a
 * directive for a site whose agent is down, a cutover the engine holds
 * back, the rule behind a new leader's routes, the trials behind `plan`,
 * and a measurement that is no longer current. Driven like test_engine,
 * through the engine's world (tests/unit/support/world.c). */
#include "clock.h"
#include "engine.h"
#include "engine-int.h" /* engine_schedule_trial, e->psites */
#include "log.h"
#include "route.h"
#include "scenario.h"
#include "sites.h"
#include "support/world.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* world_leading with hubei cut over to shaanxi, applied and durable. */
static engine_t *leading_with_hubei_at_shaanxi(world_t *w) {
  engine_t *e = world_leading(w);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 1, src, 1, hub, 1, 0);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  return e;
}

/* A cutover of a source whose agent has not said Hello to this leader yet
 * (down when the controller started, a fresh install): the directive
 * cannot be delivered, the operator hears it is pending and why, an alarm
 * stands, and the agent gets it with its first Hello. Before, that Hello
 * replaced the target with the agent's home route: the rule stood, the
 * site stayed home, and nothing said so. */
static void test_cutover_of_a_site_not_yet_connected_reaches_it_at_hello(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_engine(w);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  size_t hubei = world_index(w, "hubei");
  w->down[hubei] = true; /* its agent is not running */
  world_connect_all(w, e, NULL);
  world_tick(w, e, 1000);
  /* hubei has never reported and no forecast covers it: its load is not
   * known, and the capacity check is not made on a zero. */
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 6, src, 1, hub, 1, 0);
  assert_int_equal(w->n_rep, 1);
  assert_false(w->rep[0].ok);
  assert_non_null(strstr(w->rep[0].msg, "its load is not known"));
  assert_int_equal(world_sent_count(w, "shaanxi"), 0);
  w->n_rep = 0;
  /* Forced: the operator knows. */
  world_cutover_forced(w, e, 7, "hubei", "shaanxi", false);
  assert_int_equal(world_sent_count(w, "shaanxi"), 1);
  assert_int_equal(world_sent_count(w, "hubei"), 0); /* nowhere to send it */
  world_ack(w, e, 0, NULL);                          /* the hub applies its part */
  world_flush(w);
  for (unsigned k = 0; k < 60 && w->n_rep == 0; k++)
    world_tick(w, e, 500);
  assert_int_equal(w->n_rep, 1);
  assert_int_equal(w->rep[0].applied, 1); /* the hub */
  assert_int_equal(w->rep[0].failed, 0);
  assert_int_equal(w->rep[0].pending, 1);
  assert_non_null(strstr(w->rep[0].full->move->outcomes[0]->detail, "offline"));
  /* An alarm says the rule is not carried out at hubei, and status why. */
  const alarm_t *a = alarm_find(engine_alarms(e), ALARM_DIRECTIVE, "hubei");
  assert_non_null(a);
  assert_non_null(strstr(a->message, "not delivered"));
  assert_non_null(strstr(engine_site_dir(e, hubei)->note, "not delivered"));
  /* The agent starts: its first Hello says it routes home (it never had a
   * directive). It gets the cutover, applies it, and the alarm clears. */
  world_link_up(w, e, "hubei");
  assert_int_equal(world_sent_count(w, "hubei"), 1);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 1000);
  world_ack(w, e, 0, NULL);
  world_tick(w, e, 1000);
  assert_int_equal(route_share_of(&engine_site_dir(e, hubei)->acked, "shaanxi"), 1000);
  assert_string_equal(engine_site_dir(e, hubei)->note, "");
  for (unsigned k = 0; k < 32; k++) /* alarm_clear_ms without the condition */
    world_tick(w, e, 1000);
  assert_null(alarm_find(engine_alarms(e), ALARM_DIRECTIVE, "hubei"));
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A cutover the engine cannot carry out now (its hub is back from a loss
 * and not yet verified healthy: even --force does not skip that) is made
 * and stands, and the operator hears the source is pending and why, not
 * "nothing to change" with exit 0. It moves once the hub has been healthy
 * for its return window. */
static void test_cutover_held_by_the_engine_is_pending_not_done(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_opts_t o = world_opts(true);
  engine_t *e = world_engine_with(w, &o);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  world_connect_all(w, e, NULL);
  world_tick(w, e, 1000);
  world_tick(w, e, 70000); /* every hub healthy for its return window */
  world_link_down(w, e, "shaanxi");
  for (unsigned k = 0; k < 20; k++) /* lost: past hub_grace */
    world_tick(w, e, 1000);
  world_link_up(w, e, "shaanxi");
  world_tick(w, e, 1000);
  world_cutover_forced(w, e, 8, "hubei", "shaanxi", false);
  assert_int_equal(world_sent_count(w, "hubei"), 0);
  world_flush(w); /* the cutover's record is durable: the reply goes */
  assert_int_equal(w->n_rep, 1);
  assert_int_equal(w->rep[0].pending, 1);
  assert_int_equal(w->rep[0].applied, 0);
  const Nirc__SiteOutcome *o0 = w->rep[0].full->move->outcomes[0];
  assert_string_equal(o0->site, "hubei");
  assert_true(o0->pending);
  assert_non_null(strstr(o0->detail, "not moved now"));
  assert_non_null(strstr(o0->detail, "not yet verified healthy"));
  for (unsigned k = 0; k < 130 && !world_last(w, "hubei"); k++) {
    world_staff(w, "shaanxi", 60); /* reporting, healthy */
    world_staff(w, "hubei", 10);
    world_tick(w, e, 1000);
  }
  assert_non_null(world_last(w, "hubei"));
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 1000);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* The leader `a` dies (freed); a new leader of epoch 6 takes over with the
 * rules the database has (`with_rules`: the world's, else none) and the
 * agents connect to it with the routes they acknowledged to `a`. */
static engine_t *taken_over(world_t *w, engine_t *a, bool with_rules) {
  size_t n = w->sites->n;
  route_t *acked = calloc(n, sizeof *acked);
  assert_non_null(acked);
  for (size_t i = 0; i < n; i++)
    acked[i] = engine_site_dir(a, i)->acked;
  engine_free(a);
  for (size_t i = 0; i < n; i++) {
    sites_on_link_down(&w->sites->v[i], w->now);
    w->sites->v[i].conn = NULL;
  }
  engine_t *b = world_engine(w);
  assert_int_equal(
      with_rules ? engine_load_rules(b, 6, w->cut, w->n_cut, w->sch, w->n_sch, NULL, 0, w->max_id)
                 : engine_load_rules(b, 6, NULL, 0, NULL, 0, NULL, 0, w->max_id),
      0);
  engine_start_leading(b, 5000);
  world_connect_all(w, b, acked);
  free(acked);
  return b;
}

/* A new leader learns from the agents where the sources route, not which
 * rule put them there; it took that from its plan only when it moved
 * them. Found from outside: `nircctl restore` on a new leader was audited
 * and counted as "schedule-end" ("default 0 no longer moves it"). The
 * rule behind a route the plan keeps is now taken from the plan. */
static void test_restore_on_a_new_leader_is_audited_as_a_cutover_end(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *b = taken_over(w, leading_with_hubei_at_shaanxi(w), true);
  world_tick(w, b, 200);
  world_tick(w, b, 200);
  char *names[] = {"hubei"};
  Nirc__RestoreRequest r = NIRC__RESTORE_REQUEST__INIT;
  r.sources = names;
  r.n_sources = 1;
  r.reason = "over";
  engine_req_t rq = {.client = w, .request_id = 2, .operator_name = "operator:alice"};
  size_t from = w->n_rec;
  engine_op_restore(b, &rq, &r);
  const world_rec_t *route = NULL;
  for (size_t k = from; k < w->n_rec; k++)
    if (w->rec[k].kind == ENGINE_REC_AUDIT && strcmp(w->rec[k].action, "route") == 0 &&
        strcmp(w->rec[k].site, "hubei") == 0)
      route = &w->rec[k];
  assert_non_null(route);
  assert_non_null(strstr(route->detail, "\"cause\":\"cutover-end\""));
  assert_non_null(strstr(route->detail, "cutover 5000001 no longer moves it"));
  world_flush(w);
  engine_free(b);
  world_free(w);
}

/* A new leader finds hubei at shaanxi by the old leader's directive, and
 * no rule in the database that explains it (the old leader's cutover
 * reached only its journal): hubei goes home, audited with cause no-rule,
 * and a routing alarm tells the operator that a change of the old leader
 * was undone, for ten minutes. Before, only the audit entry said it, as
 * "schedule-end" (found from outside). */
static void test_a_route_no_rule_explains_is_sent_home_with_an_alarm(void **state) {
  (void)state;
  world_t *w = world_new();
  /* The database has no cutover: the new leader loads none. */
  engine_t *b = taken_over(w, leading_with_hubei_at_shaanxi(w), false);
  size_t hubei = world_index(w, "hubei");
  for (int k = 0; k < 40 && route_share_of(&engine_site_dir(b, hubei)->target, "shaanxi") > 0; k++)
    world_tick(w, b, 200);
  assert_int_equal(route_share_of(&engine_site_dir(b, hubei)->target, "shaanxi"), 0);
  world_tick(w, b, 1000);
  assert_true(engine_alarm_active(b, ALARM_ROUTING, "hubei"));
  const alarm_t *al = alarm_find(&b->alarms, ALARM_ROUTING, "hubei");
  assert_non_null(al);
  /* Sent, not acknowledged: not said done. */
  if (!strstr(al->message, "hubei is being sent home at the takeover (not acknowledged yet): its "
                           "route to shaanxi came from the leader of epoch 5"))
    fail_msg("alarm: %s", al->message);
  world_ack(w, b, 0, NULL);
  world_tick(w, b, 1000);
  al = alarm_find(&b->alarms, ALARM_ROUTING, "hubei");
  assert_non_null(al);
  if (!strstr(al->message, "hubei was sent home at the takeover: its route to shaanxi came from "
                           "the leader of epoch 5"))
    fail_msg("alarm: %s", al->message);
  /* Ten minutes later it has cleared. */
  for (int k = 0; k < 11; k++)
    world_tick(w, b, 60000);
  assert_false(engine_alarm_active(b, ALARM_ROUTING, "hubei"));
  world_flush(w);
  engine_free(b);
  world_free(w);
}

/* The same, and hubei's agent cannot go home (it cannot save its route:
 * found from outside with a full disk). The alarm does not say it was
 * sent home: its directive failed, and it says so in the words of the
 * directive alarm. Before, it said "was sent home" regardless. */
static void test_a_route_no_rule_explains_that_cannot_go_home_is_not_said_home(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *b = taken_over(w, leading_with_hubei_at_shaanxi(w), false);
  size_t hubei = world_index(w, "hubei");
  for (int k = 0; k < 40 && route_share_of(&engine_site_dir(b, hubei)->target, "shaanxi") > 0; k++)
    world_tick(w, b, 200);
  world_ack(w, b, 0, "hubei");
  world_tick(w, b, 1000);
  assert_true(engine_alarm_active(b, ALARM_DIRECTIVE, "hubei"));
  const alarm_t *al = alarm_find(&b->alarms, ALARM_ROUTING, "hubei");
  assert_non_null(al);
  if (strstr(al->message, "was sent home") ||
      !strstr(al->message, "hubei could not be sent home at the takeover (its directive failed: "
                           "see its directive alarm)"))
    fail_msg("alarm: %s", al->message);
  world_flush(w);
  engine_free(b);
  world_free(w);
}

/* `nircctl plan --schedule` (and `next`) judge a schedule after the real
 * rules, as it will run: with shaanxi cut over to henan, a schedule of
 * hubei to shaanxi does not send hubei there. Before, the trial planned
 * the schedule alone and said it would (found from outside). */
static void test_schedule_trial_sees_the_cutovers_in_force(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  world_cutover_forced(w, e, 1, "shaanxi", "henan", false);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  world_schedule_all_day(w, e, 2, "hubei", "shaanxi");
  world_flush(w);
  assert_int_equal(w->n_sch, 1);
  world_tick(w, e, 200);
  plan_t trial;
  assert_int_equal(engine_schedule_trial(e, &w->sch[0], w->now + 60000, &trial), 0);
  route_t rt;
  engine_route_from_plan(&trial.routes[world_index(w, "hubei")], &rt);
  assert_int_equal(route_share_of(&rt, "shaanxi"), 0);
  planner_free(&trial);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* The plan of a move shows what it does to the sites that send their
 * calls to the sites it moves: a dry run of cutting the hub shaanxi over
 * to henan lists hubei, which shaanxi answers for and which moves too.
 * Before, it showed the hub alone (found from outside: ten provinces
 * went home unannounced). */
static void test_dry_run_of_a_hub_cutover_shows_its_dependants(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_with_hubei_at_shaanxi(w);
  size_t before = w->n_rep;
  world_cutover_forced(w, e, 2, "shaanxi", "henan", true);
  assert_int_equal(w->n_rep, before + 1);
  const Nirc__MoveReply *m = w->rep[before].full->move;
  assert_non_null(m);
  assert_non_null(m->plan);
  bool hubei = false, shaanxi = false;
  for (size_t k = 0; k < m->plan->n_moves; k++) {
    hubei |= strcmp(m->plan->moves[k]->site, "hubei") == 0;
    shaanxi |= strcmp(m->plan->moves[k]->site, "shaanxi") == 0;
  }
  assert_true(shaanxi);
  assert_true(hubei);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A hub whose link is down still has its last measured agents (kept
 * through its grace), but they are not said to be current: found from
 * outside, `nircctl capacity` said "measured, 56 agents" of an offline
 * hub. */
/* shaanxi reports 40 staffed agents, planned as measured; its index. */
static size_t shaanxi_measured(world_t *w, engine_t *e) {
  world_staff(w, "shaanxi", 40);
  world_tick(w, e, 1000);
  size_t i = world_index(w, "shaanxi");
  assert_int_equal(e->psites[i].cap_source, CAPACITY_MEASURED);
  assert_string_equal(e->psites[i].cap_note, "measured, 40 agents");
  return i;
}

static void test_capacity_of_an_offline_site_is_its_last_measure(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  size_t i = shaanxi_measured(w, e);
  world_link_down(w, e, "shaanxi");
  world_tick(w, e, 1000);
  assert_string_equal(e->psites[i].cap_note, "last measured (now offline), 40 agents");
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A PBX its agent cannot read reports zeros with nothing flagged: they
 * measure nothing. Found from outside: `capacity` said "measured, 0
 * agents" and the planner withdrew sources on it. */
static void test_an_unreadable_pbx_measures_no_agents(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  size_t i = shaanxi_measured(w, e);
  site_t *s = &w->sites->v[i];
  s->last.pbx_unreadable = true; /* as sites_on_report keeps such a report */
  s->last.logged_in = 0;
  world_tick(w, e, 1000);
  assert_int_equal(e->psites[i].cap_source, CAPACITY_UNKNOWN);
  assert_string_equal(e->psites[i].cap_note, "not measured, not configured");
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* `plan --schedule` for a window that has not started judges a hub on the
 * forecast's roster; the engine, when the window starts, counts only
 * agents measured or configured then. A hub that has neither now is said
 * to be refused then unless that changes. Before, the plan said "forecast
 * roster, 40 agents" and moved the sources, and at 22:00 the engine
 * refused them (found from outside). */
static void test_schedule_trial_says_an_unknown_hub_is_refused_at_the_start(void **state) {
  (void)state;
  const char *d = getenv("NIRC_SOURCE_DIR");
  if (!d) fail_msg("NIRC_SOURCE_DIR is not set; run through ctest");
  char path[1024], err[256];
  snprintf(path, sizeof path, "%s/scenario/provinces.json", d);
  scenario_t scen;
  if (scenario_load(path, &scen, err, sizeof err) != 0) fail_msg("%s", err);
  world_t *w = world_new();
  engine_opts_t o = world_opts(false);
  o.forecast = &scen;
  engine_t *e = world_engine_with(w, &o);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  world_connect_all(w, e, NULL);
  size_t i = shaanxi_measured(w, e);
  world_schedule_all_day(w, e, 2, "hubei", "shaanxi");
  world_flush(w);
  plan_t trial;
  /* Measured now: the roster alone, nothing to add. */
  assert_int_equal(engine_schedule_trial(e, &w->sch[0], w->now + 3600000, &trial), 0);
  assert_non_null(strstr(e->psites[i].cap_note, "forecast roster, "));
  assert_null(strstr(e->psites[i].cap_note, "not measured now"));
  planner_free(&trial);
  /* Its PBX unreadable: no agents measured, none configured. */
  w->sites->v[i].last.pbx_unreadable = true;
  w->sites->v[i].last.logged_in = 0;
  world_tick(w, e, 1000);
  assert_int_equal(e->psites[i].cap_source, CAPACITY_UNKNOWN);
  assert_int_equal(engine_schedule_trial(e, &w->sch[0], w->now + 3600000, &trial), 0);
  assert_non_null(strstr(e->psites[i].cap_note, "forecast roster, "));
  assert_non_null(strstr(e->psites[i].cap_note,
                         "not measured now and not configured: refused when the window starts"));
  planner_free(&trial);
  world_flush(w);
  engine_free(e);
  world_free(w);
  scenario_free(&scen);
}

/* A cutover's expiry is audited when the engine sees it; a controller that
 * did not run at the expiry (paused, no leadership) sees it later, while
 * the agents went home at their own revert_at. The entry says when it
 * really expired and how late it was recorded (found from outside: the
 * trail put the expiry at the controller's resumption). */
static int64_t cutover_for_a_minute(world_t *w, engine_t *e) {
  world_cutover_for(w, e, 9, "hubei", "shaanxi", 60000);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  int64_t expires = 0;
  for (size_t k = 0; k < e->n_cut; k++)
    expires = e->cut[k].expires_ms;
  assert_true(expires > w->now);
  world_tick(w, e, 200); /* a tick of this leadership before the pause */
  return expires;
}

static const world_rec_t *expire_entry(world_t *w) {
  const world_rec_t *x = NULL;
  for (size_t k = 0; k < w->n_rec; k++)
    if (w->rec[k].kind == ENGINE_REC_AUDIT && strcmp(w->rec[k].action, "expire") == 0)
      x = &w->rec[k];
  assert_non_null(x);
  return x;
}

static void test_expiry_seen_late_says_when_it_expired(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  int64_t expires = cutover_for_a_minute(w, e);
  /* The controller does not run for ten minutes past the expiry. */
  w->now = expires + 600000;
  w->mono += 660000;
  w->wall += 660000;
  engine_tick(e);
  world_flush(w);
  const world_rec_t *x = expire_entry(w);
  char want[64];
  snprintf(want, sizeof want, "\"expires_at_ms\":%lld", (long long)expires);
  if (!strstr(x->detail, want)) fail_msg("no %s in %s", want, x->detail);
  if (!strstr(x->detail, "recorded 660 s (real time) later: the controller did not run meanwhile"))
    fail_msg("the entry does not say it was late: %s", x->detail);
  engine_free(e);
  world_free(w);

  /* A controller that ran all along at a clock 60 times real time sees it
   * within a tick (200 ms, 12 business seconds): not late. Before, it was
   * said "not running" by the business seconds (found from outside). */
  w = world_new();
  e = world_leading(w);
  expires = cutover_for_a_minute(w, e);
  while (w->now <= expires) {
    w->now += 12000;
    w->mono += 200;
    w->wall += 200;
    engine_tick(e);
  }
  world_flush(w);
  x = expire_entry(w);
  if (strstr(x->detail, "later") || strstr(x->detail, "before this controller led"))
    fail_msg("an expiry seen in time is said late: %s", x->detail);
  engine_free(e);
  world_free(w);
}

/* An agent goes home on its own when revert_at of its route passes (its
 * clock ahead of what it measured, a controller that has not expired the
 * rule yet) and says so (a REVERTED PbxEvent). Before, the agent told
 * nobody and status kept saying the site was at its hub. Now the route
 * the engine holds for the site is home; with the rule still in force
 * here, the next plan sends the rule's route again under a new version;
 * a report about a version the site no longer holds changes nothing. */
static bool routes_home(const route_t *r, const char *slug) {
  return r->n_share == 1 && strcmp(r->share[0].site, slug) == 0 && r->share[0].permille == 1000;
}

static void test_an_agents_own_return_home_is_its_route_here(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  world_cutover_for(w, e, 9, "hubei", "shaanxi", 600000);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  size_t i = world_index(w, "hubei");
  route_t left = engine_site_dir(e, i)->acked;
  assert_false(routes_home(&left, "hubei"));
  size_t sent = world_sent_count(w, "hubei");

  engine_on_agent_reverted(e, i, left.epoch, left.version, NULL, false);
  if (!routes_home(&engine_site_dir(e, i)->acked, "hubei"))
    fail_msg("status still has hubei at its hub after its agent went home");

  /* The cutover runs ten minutes on this controller's clock: sent again,
   * once the rule's move is verified again (a new wave of the rule). */
  for (int k = 0; k < 100 && world_sent_count(w, "hubei") == sent; k++) {
    world_tick(w, e, 200);
    world_ack(w, e, 0, NULL);
    world_flush(w);
  }
  assert_int_equal(world_sent_count(w, "hubei"), sent + 1);
  const route_t *again = world_last(w, "hubei");
  assert_int_equal(again->version, left.version + 1);
  assert_false(routes_home(again, "hubei"));
  world_ack(w, e, 0, NULL);
  world_flush(w);
  assert_false(routes_home(&engine_site_dir(e, i)->acked, "hubei"));

  /* A late report about the version it left changes nothing. */
  engine_on_agent_reverted(e, i, left.epoch, left.version, NULL, false);
  assert_false(routes_home(&engine_site_dir(e, i)->acked, "hubei"));
  engine_free(e);
  world_free(w);
}

/* The same early return home is in the trail: a route entry from the
 * hub to home, cause agent-return (no rule ended here), that says how far
 * ahead of the rule's end it came, and names the directive it left.
 * Before, nothing recorded it: history showed hubei away throughout, then
 * a move from home with no return before it. */
static void test_an_agents_early_return_home_is_in_the_trail(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  world_cutover_for(w, e, 9, "hubei", "shaanxi", 600000);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  size_t i = world_index(w, "hubei");
  route_t left = engine_site_dir(e, i)->acked;
  assert_true(left.revert_at_ms > w->now);
  uint64_t rid = engine_site_dir(e, i)->rule_id;
  engine_on_agent_reverted(e, i, left.epoch, left.version, NULL, false);
  world_flush(w);
  const world_rec_t *x = NULL;
  for (size_t k = 0; k < w->n_rec; k++)
    if (w->rec[k].kind == ENGINE_REC_AUDIT && strcmp(w->rec[k].action, "route") == 0 &&
        strcmp(w->rec[k].site, "hubei") == 0 && strstr(w->rec[k].detail, "\"after\":\"home\""))
      x = &w->rec[k];
  if (!x) fail_msg("hubei's early return home is not in the trail");
  char want[200];
  long long ahead = (long long)((left.revert_at_ms - w->now) / 1000);
  snprintf(want, sizeof want, "at least %lld s before the end of cutover %llu", ahead,
           (unsigned long long)rid);
  const char *has[] = {"\"cause\":\"agent-return\"",
                       "\"before\":\"shaanxi\"",
                       "\"rule\":\"cutover\"",
                       "its agent went home on its own at its revert_at",
                       want,
                       "the rule did not end here",
                       "\"early_measured\":\"at-least\""};
  for (size_t k = 0; k < sizeof has / sizeof *has; k++)
    if (!strstr(x->detail, has[k])) fail_msg("no %s in %s", has[k], x->detail);
  char key[80];
  snprintf(key, sizeof key, "\"rule_id\":%llu", (unsigned long long)rid);
  assert_non_null(strstr(x->detail, key));
  snprintf(key, sizeof key, "\"reverted_version\":%llu", (unsigned long long)left.version);
  assert_non_null(strstr(x->detail, key));
  snprintf(key, sizeof key, "\"early_ms\":%lld", (long long)(left.revert_at_ms - w->now));
  assert_non_null(strstr(x->detail, key));
  assert_int_equal(engine_route_changes(e, i, ROUTE_CAUSE_AGENT_RETURN), 1);
  assert_int_equal(engine_route_changes(e, i, ROUTE_CAUSE_CUTOVER_END), 0);
  engine_free(e);
  world_free(w);
}

/* The agent's own return home at its revert_at races the controller's
 * tick that ends the rule there. Whichever comes first, the trail has the
 * return home (a route entry, cause cutover-end). Before, a REVERTED event
 * taken first made home the site's target, and the tick that ended the
 * cutover found no route to change: the return home went unaudited. */
static void test_an_agents_return_home_on_time_is_still_audited(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  int64_t expires = cutover_for_a_minute(w, e);
  size_t i = world_index(w, "hubei");
  route_t left = engine_site_dir(e, i)->acked;
  assert_true(left.revert_at_ms == expires);
  w->now = expires; /* the agent's timer fired; this controller has not ticked since */
  engine_on_agent_reverted(e, i, left.epoch, left.version, NULL, false);
  for (int k = 0; k < 10; k++) {
    world_tick(w, e, 200);
    world_ack(w, e, 0, NULL);
    world_flush(w);
  }
  const world_rec_t *route = NULL;
  for (size_t k = 0; k < w->n_rec; k++)
    if (w->rec[k].kind == ENGINE_REC_AUDIT && strcmp(w->rec[k].action, "route") == 0 &&
        strcmp(w->rec[k].site, "hubei") == 0 && strstr(w->rec[k].detail, "\"after\":\"home\""))
      route = &w->rec[k];
  if (!route) fail_msg("hubei's return home at the cutover's end is not in the trail");
  assert_non_null(strstr(route->detail, "\"cause\":\"cutover-end\""));
  assert_true(routes_home(&engine_site_dir(e, i)->acked, "hubei"));
  engine_free(e);
  world_free(w);
}

/* The slow retry of a directive the site answered FAILED says so, and
 * what the failure was. Before, it logged "no ack for directive vN after
 * 2000 ms: resend", as if the site had not answered. */
static void test_the_retry_of_a_failed_directive_is_said_as_one(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  int64_t expires = cutover_for_a_minute(w, e);
  size_t sent = world_sent_count(w, "hubei");
  w->now = expires;
  for (int k = 0; k < 10 && world_sent_count(w, "hubei") == sent; k++)
    world_tick(w, e, 200);
  assert_int_equal(world_sent_count(w, "hubei"), sent + 1); /* the end: home */
  world_ack(w, e, 0, "hubei");
  world_flush(w);
  assert_int_equal(engine_site_dir(e, world_index(w, "hubei"))->state, DIR_FAILED);
  /* The log (stderr) while the slow retry goes out. */
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  int saved = dup(STDERR_FILENO);
  fflush(stderr);
  dup2(fileno(tmp), STDERR_FILENO);
  log_set_level(LOG_LVL_WARN);
  for (int k = 0; k < 100 && world_sent_count(w, "hubei") == sent + 1; k++)
    world_tick(w, e, 200);
  log_set_level(LOG_LVL_ERROR);
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  char buf[8192];
  rewind(tmp);
  size_t n = fread(buf, 1, sizeof buf - 1, tmp);
  fclose(tmp);
  buf[n] = '\0';
  assert_int_equal(world_sent_count(w, "hubei"), sent + 2);
  if (strstr(buf, "no ack for directive")) fail_msg("a failed directive said unanswered: %s", buf);
  char want[160];
  snprintf(want, sizeof want, "directive v%llu sent again ",
           (unsigned long long)world_last(w, "hubei")->version);
  if (!strstr(buf, want) || !strstr(buf, "the slow retry of a failed directive (directive v") ||
      !strstr(buf, "failed: agent failed: "))
    fail_msg("the retry does not say what happened: %s", buf);
  engine_free(e);
  world_free(w);
}

/* The agent's own return home at revert_at failed (its PBX could not be
 * reached), and so did this controller's end of the rule (its directive
 * home); then the PBX took home and the agent said it went home. Before,
 * that REVERTED was on time here and ignored: the route known here stayed
 * the cutover the agent had left, shown as the site's route once the
 * agent confirmed its route (home) at the PBX, until the failed
 * directive's slow retry. Now the route known here is home, and the end's
 * directive is sent again at once. */
static void test_an_agents_return_home_after_a_failed_end_is_its_route_here(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  int64_t expires = cutover_for_a_minute(w, e);
  size_t i = world_index(w, "hubei");
  route_t left = engine_site_dir(e, i)->acked;
  size_t sent = world_sent_count(w, "hubei");
  w->now = expires;
  for (int k = 0; k < 10 && world_sent_count(w, "hubei") == sent; k++)
    world_tick(w, e, 200);
  assert_int_equal(world_sent_count(w, "hubei"), sent + 1); /* the end: home */
  assert_true(routes_home(world_last(w, "hubei"), "hubei"));
  world_ack(w, e, 0, "hubei"); /* the PBX cannot be reached */
  world_flush(w);
  assert_int_equal(engine_site_dir(e, i)->state, DIR_FAILED);
  assert_false(routes_home(&engine_site_dir(e, i)->acked, "hubei"));

  engine_on_agent_reverted(e, i, left.epoch, left.version, NULL, false);
  if (!routes_home(&engine_site_dir(e, i)->acked, "hubei"))
    fail_msg("the route known here is still the one hubei's agent left");
  assert_int_equal(engine_site_dir(e, i)->acked.version, left.version);
  assert_int_equal(world_sent_count(w, "hubei"), sent + 2); /* the end, again */
  world_ack(w, e, 0, NULL);
  world_flush(w);
  assert_int_equal(engine_site_dir(e, i)->state, DIR_IDLE);
  assert_int_equal(engine_site_dir(e, i)->acked.version, left.version + 1);
  engine_free(e);
  world_free(w);

  /* The agent's word first (the PBX did not take home), then the end's
   * directive fails, then the PBX takes home and the agent says so again:
   * the failed end goes again at once, and is acknowledged. */
  w = world_new();
  e = world_leading(w);
  expires = cutover_for_a_minute(w, e);
  left = engine_site_dir(e, i)->acked;
  sent = world_sent_count(w, "hubei");
  w->now = expires;
  for (int k = 0; k < 10 && world_sent_count(w, "hubei") == sent; k++)
    world_tick(w, e, 200);
  engine_on_agent_reverted(e, i, left.epoch, left.version, NULL, false);
  assert_true(routes_home(&engine_site_dir(e, i)->acked, "hubei"));
  assert_int_equal(world_sent_count(w, "hubei"), sent + 1); /* pending: not sent again */
  world_ack(w, e, 0, "hubei");
  world_flush(w);
  assert_int_equal(engine_site_dir(e, i)->state, DIR_FAILED);
  engine_on_agent_reverted(e, i, left.epoch, left.version, NULL, false);
  assert_int_equal(world_sent_count(w, "hubei"), sent + 2);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  assert_int_equal(engine_site_dir(e, i)->state, DIR_IDLE);
  assert_int_equal(engine_site_dir(e, i)->acked.version, left.version + 1);
  engine_free(e);
  world_free(w);
}

/* A schedule window ends while no controller runs: hubei's agent goes
 * home by its directive's own revert_at, and the leader that takes over
 * afterwards learns it from the agent's Hello. Before, nothing recorded
 * the return: the trail ended with hubei moved to shaanxi while status
 * said home (found from outside, with real processes). */

/* The route entries of `slug` from record `from` on; the last in *last. */
static size_t route_entries(world_t *w, size_t from, const char *slug, const world_rec_t **last) {
  size_t n = 0;
  for (size_t k = from; k < w->n_rec; k++)
    if (w->rec[k].kind == ENGINE_REC_AUDIT && strcmp(w->rec[k].action, "route") == 0 &&
        strcmp(w->rec[k].site, slug) == 0) {
      n++;
      if (last) *last = &w->rec[k];
    }
  return n;
}

/* Leader `a` dies; the agents keep what they applied (w->applied); a
 * leader of `epoch` takes over with the world's rules and, as the store
 * loads them, the newest directives ld[0..n). */
static engine_t *takeover_with(world_t *w, engine_t *a, uint64_t epoch,
                               const engine_last_directive_t *ld, size_t n) {
  if (a) engine_free(a);
  for (size_t i = 0; i < w->sites->n; i++) {
    sites_on_link_down(&w->sites->v[i], w->now);
    w->sites->v[i].conn = NULL;
  }
  engine_t *b = world_engine(w);
  assert_int_equal(
      engine_load_rules(b, epoch, w->cut, w->n_cut, w->sch, w->n_sch, NULL, 0, w->max_id), 0);
  assert_int_equal(engine_load_last_directives(b, ld, n), 0);
  engine_start_leading(b, 5000);
  world_connect_all(w, b, w->applied);
  return b;
}

/* The directive row the store keeps for `r` (what admin.c loads). */
static engine_last_directive_t last_directive(const char *site, const route_t *r, rule_kind_t kind,
                                              uint64_t rule_id) {
  engine_last_directive_t x = {.epoch = r->epoch,
                               .version = r->version,
                               .route = *r,
                               .revert_at_ms = r->revert_at_ms,
                               .rule_kind = kind,
                               .rule_id = rule_id,
                               .newest = true};
  snprintf(x.site, sizeof x.site, "%s", site);
  return x;
}

/* hubei's agent goes home by the revert_at of `moved`, as site-agent does. */
static void agent_reverts(world_t *w, const char *slug, const route_t *moved) {
  route_t *r = &w->applied[world_index(w, slug)];
  route_home(r, slug);
  r->epoch = moved->epoch;
  r->version = moved->version;
  snprintf(r->reason, sizeof r->reason, "%s", ROUTE_REASON_REVERTED);
}

/* Leader of epoch 5 with hubei moved to shaanxi by schedule 2 (all day,
 * Asia/Shanghai, to 23:59), acknowledged: the directive in *moved. */
static engine_t *leading_with_hubei_scheduled(world_t *w, route_t *moved) {
  engine_t *e = world_leading(w);
  world_schedule_all_day(w, e, 2, "hubei", "shaanxi");
  world_flush(w);
  for (unsigned k = 0; k < 20 && !world_last(w, "hubei"); k++)
    world_tick(w, e, 200);
  assert_non_null(world_last(w, "hubei"));
  *moved = *world_last(w, "hubei");
  assert_int_equal(route_share_of(moved, "shaanxi"), 1000);
  assert_true(moved->revert_at_ms > w->now);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  return e;
}

static void test_window_end_while_no_controller_ran_is_recorded_late_once(void **state) {
  (void)state;
  world_t *w = world_new();
  route_t moved;
  engine_t *a = leading_with_hubei_scheduled(w, &moved);
  uint64_t sched = w->sch[0].id;
  /* The controller dies; the window ends at 23:59 and hubei's agent goes
   * home by itself; a new leader starts 30 s later (in the minute before
   * the next window). */
  agent_reverts(w, "hubei", &moved);
  int64_t late = moved.revert_at_ms + 30000 - w->now;
  w->now += late;
  w->mono += (uint64_t)late;
  w->wall += late;
  size_t from = w->n_rec;
  engine_last_directive_t ld = last_directive("hubei", &moved, RULE_SCHEDULE, sched);
  engine_t *b = takeover_with(w, a, 6, &ld, 1);
  world_tick(w, b, 200);
  const world_rec_t *x = NULL;
  assert_int_equal(route_entries(w, from, "hubei", &x), 1);
  char want[200];
  snprintf(want, sizeof want, "\"reverted_at_ms\":%lld", (long long)moved.revert_at_ms);
  const char *words[] = {"\"cause\":\"schedule-end\"",
                         "\"before\":\"shaanxi\"",
                         "\"after\":\"home\"",
                         want,
                         "its agent went home on its own at its directive's revert_at",
                         "the end of schedule",
                         "recorded late, when the agent connected to this leader (epoch 6)",
                         "the leader of epoch 5 that sent the move"};
  for (size_t k = 0; k < sizeof words / sizeof *words; k++)
    if (!strstr(x->detail, words[k])) fail_msg("no '%s' in %s", words[k], x->detail);
  /* No directive carried it: no epoch/version for the trail to join an
   * acknowledgement to. */
  assert_null(strstr(x->detail, "\"version\""));
  assert_int_equal(engine_route_changes(b, world_index(w, "hubei"), ROUTE_CAUSE_SCHEDULE_END), 1);
  /* Confirmed home by a directive of this epoch: the newest on record. */
  const route_t *conf = world_last(w, "hubei");
  assert_non_null(conf);
  assert_int_equal(conf->epoch, 6);
  assert_int_equal(conf->version, 1);
  assert_int_equal(route_share_of(conf, "hubei"), 1000);
  world_ack(w, b, 0, NULL);
  world_flush(w);
  /* The link drops and comes back: nothing more to record. */
  world_link_down(w, b, "hubei");
  world_tick(w, b, 200);
  world_link_up(w, b, "hubei");
  world_tick(w, b, 200);
  assert_int_equal(route_entries(w, from, "hubei", NULL), 1);
  /* A third leader finds that confirmation as hubei's newest directive
   * (home: the store has nothing to hand it) and records nothing. */
  engine_last_directive_t ld2 = last_directive("hubei", world_last(w, "hubei"), RULE_NONE, 0);
  engine_t *c = takeover_with(w, b, 7, &ld2, 1);
  world_tick(w, c, 200);
  assert_int_equal(route_entries(w, from, "hubei", NULL), 1);
  world_flush(w);
  engine_free(c);
  world_free(w);
}

/* The leader that sent the move runs at the window's end: it records the
 * return itself, once, also when the agent went home on its own while
 * its link was down and tells it so at its next Hello. */
static void test_window_end_seen_by_its_leader_is_recorded_once(void **state) {
  (void)state;
  world_t *w = world_new();
  route_t moved;
  engine_t *e = leading_with_hubei_scheduled(w, &moved);
  size_t from = w->n_rec;
  world_link_down(w, e, "hubei");
  agent_reverts(w, "hubei", &moved);
  int64_t skip = moved.revert_at_ms - 3000 - w->now; /* the hours before the end, at once */
  w->now += skip;
  w->mono += (uint64_t)skip;
  w->wall += skip;
  while (w->now < moved.revert_at_ms + 5000)
    world_tick(w, e, 1000);
  world_link_up(w, e, "hubei");
  world_ack(w, e, 0, NULL);
  world_tick(w, e, 1000);
  const world_rec_t *x = NULL;
  assert_int_equal(route_entries(w, from, "hubei", &x), 1);
  assert_non_null(strstr(x->detail, "\"cause\":\"schedule-end\""));
  assert_null(strstr(x->detail, "recorded late"));
  /* Seen in time: when the window ended, and nothing of lateness. */
  assert_non_null(strstr(x->detail, "its window ended at"));
  assert_null(strstr(x->detail, "later"));
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A cutover's expiry past while no controller ran is recorded by the new
 * leader's expiry entry, which says the sources went home by their own
 * revert_at: the agent's Hello adds no second entry for it. */
static void test_cutover_expiry_while_down_is_recorded_by_its_expiry_alone(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *a = world_leading(w);
  int64_t expires = cutover_for_a_minute(w, a);
  route_t moved = *world_last(w, "hubei");
  assert_int_equal(moved.revert_at_ms, expires);
  agent_reverts(w, "hubei", &moved);
  w->now = expires + 600000;
  w->mono += 660000;
  w->wall += 660000;
  size_t from = w->n_rec;
  engine_last_directive_t ld = last_directive("hubei", &moved, RULE_CUTOVER, w->cut[0].id);
  engine_t *b = takeover_with(w, a, 6, &ld, 1);
  world_tick(w, b, 200);
  world_tick(w, b, 200);
  size_t expiries = 0;
  for (size_t k = from; k < w->n_rec; k++)
    expiries += w->rec[k].kind == ENGINE_REC_AUDIT && strcmp(w->rec[k].action, "expire") == 0;
  assert_int_equal(expiries, 1);
  assert_int_equal(route_entries(w, from, "hubei", NULL), 0);
  world_flush(w);
  engine_free(b);
  world_free(w);
}

/* A cutover with --for expires while no controller runs, and hubei's
 * agent cannot go home (it cannot save its route: found from outside
 * with a full disk). The leader that takes over has the cutover, and the
 * directive that moved hubei, in its database: hubei goes home by the
 * cutover's end (cause cutover-end), with no alarm of a rule the database
 * does not have; its failed directive has its own alarm. Before, it was
 * audited as no-rule and alarmed "was sent home ... under a rule the
 * database does not have": twice false. */
static void test_an_expired_cutover_an_agent_could_not_leave_ends_as_the_cutover(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *a = world_leading(w);
  int64_t expires = cutover_for_a_minute(w, a);
  route_t moved = *world_last(w, "hubei");
  assert_int_equal(moved.revert_at_ms, expires);
  /* The agent keeps the route it could not leave (w->applied). */
  w->now = expires + 600000;
  w->mono += 660000;
  w->wall += 660000;
  size_t from = w->n_rec;
  engine_last_directive_t ld = last_directive("hubei", &moved, RULE_CUTOVER, w->cut[0].id);
  engine_t *b = takeover_with(w, a, 6, &ld, 1);
  size_t hubei = world_index(w, "hubei");
  for (int k = 0; k < 40 && route_share_of(&engine_site_dir(b, hubei)->target, "shaanxi") > 0; k++)
    world_tick(w, b, 200);
  assert_int_equal(route_share_of(&engine_site_dir(b, hubei)->target, "shaanxi"), 0);
  const world_rec_t *x = NULL;
  assert_int_equal(route_entries(w, from, "hubei", &x), 1);
  if (!strstr(x->detail, "\"cause\":\"cutover-end\"") ||
      !strstr(x->detail, "cutover 5000001 no longer moves it"))
    fail_msg("route entry: %s", x->detail);
  assert_int_equal(engine_route_changes(b, hubei, ROUTE_CAUSE_NO_RULE), 0);
  /* The expiry entry does not say hubei went home by its revert_at. */
  const world_rec_t *ex = expire_entry(w);
  if (strstr(ex->detail, "the sources went home") ||
      !strstr(ex->detail, "the sources' agents were to go home at that time by their own "
                          "revert_at; still away by their agents' word: hubei"))
    fail_msg("expiry entry: %s", ex->detail);
  world_ack(w, b, 0, "hubei");
  world_tick(w, b, 1000);
  assert_true(engine_alarm_active(b, ALARM_DIRECTIVE, "hubei"));
  const alarm_t *al = alarm_find(&b->alarms, ALARM_ROUTING, "hubei");
  if (al) fail_msg("routing alarm: %s", al->message);
  world_flush(w);
  engine_free(b);
  world_free(w);
}

/* The same with a schedule: its window ended while no controller ran and
 * hubei's agent could not go home. The schedule ended; the database has
 * it: schedule-end, saying when the window ended. */
static void test_a_window_ended_an_agent_could_not_leave_ends_as_the_schedule(void **state) {
  (void)state;
  world_t *w = world_new();
  route_t moved;
  engine_t *a = leading_with_hubei_scheduled(w, &moved);
  uint64_t sched = w->sch[0].id;
  int64_t late = moved.revert_at_ms + 30000 - w->now;
  w->now += late;
  w->mono += (uint64_t)late;
  w->wall += late;
  size_t from = w->n_rec;
  engine_last_directive_t ld = last_directive("hubei", &moved, RULE_SCHEDULE, sched);
  engine_t *b = takeover_with(w, a, 6, &ld, 1);
  world_tick(w, b, 200);
  const world_rec_t *x = NULL;
  assert_int_equal(route_entries(w, from, "hubei", &x), 1);
  char at[40], want[200];
  clock_format_iso(moved.revert_at_ms, 0, at, sizeof at);
  snprintf(want, sizeof want,
           "its window ended at %s (UTC business time), before this controller led", at);
  if (!strstr(x->detail, "\"cause\":\"schedule-end\"") || !strstr(x->detail, want))
    fail_msg("no schedule-end with '%s' in %s", want, x->detail);
  world_ack(w, b, 0, NULL);
  world_tick(w, b, 1000);
  assert_false(engine_alarm_active(b, ALARM_ROUTING, "hubei"));
  world_flush(w);
  engine_free(b);
  world_free(w);
}

/* A cutover with no end, restored by an operator; hubei's agent cannot
 * go home (the directive home fails) and the leader dies. The database
 * has the cutover (restored) and the directive hubei still routes by, if
 * not as its newest: the new leader sends hubei home as the cutover's
 * end, with no alarm of a rule the database does not have. Before, only
 * a newest directive with a revert_at was loaded: no-rule. */
static void test_a_restored_cutover_an_agent_could_not_leave_ends_as_the_cutover(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *a = leading_with_hubei_at_shaanxi(w);
  route_t moved = *world_last(w, "hubei");
  uint64_t cut = w->cut[0].id;
  char *names[] = {"hubei"};
  Nirc__RestoreRequest r = NIRC__RESTORE_REQUEST__INIT;
  r.sources = names;
  r.n_sources = 1;
  r.reason = "over";
  engine_req_t rq = {.client = w, .request_id = 2, .operator_name = "operator:alice"};
  size_t sent = w->n_sent;
  engine_op_restore(a, &rq, &r);
  world_ack(w, a, sent, "hubei");
  world_flush(w);
  assert_int_equal(route_share_of(&w->applied[world_index(w, "hubei")], "shaanxi"), 1000);
  size_t from = w->n_rec;
  engine_last_directive_t ld = last_directive("hubei", &moved, RULE_CUTOVER, cut);
  ld.newest = false; /* the failed directive home came after it */
  engine_t *b = takeover_with(w, a, 6, &ld, 1);
  size_t hubei = world_index(w, "hubei");
  for (int k = 0; k < 40 && route_share_of(&engine_site_dir(b, hubei)->target, "shaanxi") > 0; k++)
    world_tick(w, b, 200);
  const world_rec_t *x = NULL;
  assert_int_equal(route_entries(w, from, "hubei", &x), 1);
  if (!strstr(x->detail, "\"cause\":\"cutover-end\"")) fail_msg("route entry: %s", x->detail);
  world_ack(w, b, 0, NULL);
  world_tick(w, b, 1000);
  assert_false(engine_alarm_active(b, ALARM_ROUTING, "hubei"));
  world_flush(w);
  engine_free(b);
  world_free(w);
}

/* The store hands the engine a site's newest directive under a rule even
 * when a later one came, or when the database has its cutover as
 * expired (for engine_prior_rule): neither is a return home no
 * controller recorded (a later directive, the expiry entry, says it). */
static void test_a_return_recorded_otherwise_is_not_recorded_late(void **state) {
  (void)state;
  for (int flag = 0; flag < 2; flag++) {
    world_t *w = world_new();
    route_t moved;
    engine_t *a = leading_with_hubei_scheduled(w, &moved);
    agent_reverts(w, "hubei", &moved);
    int64_t late = moved.revert_at_ms + 30000 - w->now;
    w->now += late;
    w->mono += (uint64_t)late;
    w->wall += late;
    size_t from = w->n_rec;
    engine_last_directive_t ld = last_directive("hubei", &moved, RULE_SCHEDULE, w->sch[0].id);
    if (flag)
      ld.expiry_recorded = true;
    else
      ld.newest = false;
    engine_t *b = takeover_with(w, a, 6, &ld, 1);
    world_tick(w, b, 200);
    assert_int_equal(route_entries(w, from, "hubei", NULL), 0);
    world_flush(w);
    engine_free(b);
    world_free(w);
  }
}

/* A controller paused (SIGSTOP, a frozen VM) across a schedule window's
 * end records the return home when it resumes: the entry says when the
 * window ended and how late it is recorded, as a cutover's expiry does.
 * Before, it said neither. */
static void test_window_end_seen_after_a_pause_says_when_it_ended(void **state) {
  (void)state;
  world_t *w = world_new();
  route_t moved;
  engine_t *e = leading_with_hubei_scheduled(w, &moved);
  world_tick(w, e, 200); /* a tick before the pause */
  int64_t skip = moved.revert_at_ms - 5000 - w->now;
  w->now += skip; /* the hours before the end, ticked at once */
  w->mono += (uint64_t)skip;
  w->wall += skip;
  world_tick(w, e, 200);
  size_t from = w->n_rec;
  /* Paused for 30 s across the window's end (the next starts a minute
   * after it). */
  w->now += 30000;
  w->mono += 30000;
  w->wall += 30000;
  engine_tick(e);
  const world_rec_t *x = NULL;
  assert_int_equal(route_entries(w, from, "hubei", &x), 1);
  char at[40], want[200];
  clock_format_iso(moved.revert_at_ms, 0, at, sizeof at);
  snprintf(want, sizeof want,
           "its window ended at %s (UTC business time), recorded 30 s (real time) later: the "
           "controller did not run meanwhile",
           at);
  if (!strstr(x->detail, "\"cause\":\"schedule-end\"") || !strstr(x->detail, want))
    fail_msg("no schedule-end with '%s' in %s", want, x->detail);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cutover_of_a_site_not_yet_connected_reaches_it_at_hello),
      cmocka_unit_test(test_cutover_held_by_the_engine_is_pending_not_done),
      cmocka_unit_test(test_restore_on_a_new_leader_is_audited_as_a_cutover_end),
      cmocka_unit_test(test_a_route_no_rule_explains_is_sent_home_with_an_alarm),
      cmocka_unit_test(test_a_route_no_rule_explains_that_cannot_go_home_is_not_said_home),
      cmocka_unit_test(test_schedule_trial_sees_the_cutovers_in_force),
      cmocka_unit_test(test_dry_run_of_a_hub_cutover_shows_its_dependants),
      cmocka_unit_test(test_capacity_of_an_offline_site_is_its_last_measure),
      cmocka_unit_test(test_an_unreadable_pbx_measures_no_agents),
      cmocka_unit_test(test_schedule_trial_says_an_unknown_hub_is_refused_at_the_start),
      cmocka_unit_test(test_expiry_seen_late_says_when_it_expired),
      cmocka_unit_test(test_an_agents_own_return_home_is_its_route_here),
      cmocka_unit_test(test_an_agents_early_return_home_is_in_the_trail),
      cmocka_unit_test(test_the_retry_of_a_failed_directive_is_said_as_one),
      cmocka_unit_test(test_an_agents_return_home_on_time_is_still_audited),
      cmocka_unit_test(test_an_agents_return_home_after_a_failed_end_is_its_route_here),
      cmocka_unit_test(test_window_end_while_no_controller_ran_is_recorded_late_once),
      cmocka_unit_test(test_window_end_seen_by_its_leader_is_recorded_once),
      cmocka_unit_test(test_cutover_expiry_while_down_is_recorded_by_its_expiry_alone),
      cmocka_unit_test(test_an_expired_cutover_an_agent_could_not_leave_ends_as_the_cutover),
      cmocka_unit_test(test_a_window_ended_an_agent_could_not_leave_ends_as_the_schedule),
      cmocka_unit_test(test_a_restored_cutover_an_agent_could_not_leave_ends_as_the_cutover),
      cmocka_unit_test(test_a_return_recorded_otherwise_is_not_recorded_late),
      cmocka_unit_test(test_window_end_seen_after_a_pause_says_when_it_ended),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
