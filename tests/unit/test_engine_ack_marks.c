/* Unit tests of the agent's marks on an acknowledgement (DirectiveAck
 * unverified and outcome_unknown) as the routing engine keeps and tells
 * them (controller/routing/engine.c, engine_ops.c). Found from outside
 * (audit T6): an exec adapter without verify_cmd was reported "applied"
 * with nothing saying the PBX was never read back, and an apply killed at
 * its timeout that the PBX may have taken left the site's route as the
 * old one. Driven through the engine's world (tests/unit/support/world.c). */
#include "engine.h"
#include "route.h"
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

#include <cmocka.h>

#define UNKNOWN_DETAIL                                                                             \
  "outcome unknown: apply_cmd killed after 1000 ms timeout and the PBX cannot be read back "       \
  "(unverified): it may have taken the route"

static const Nirc__SiteOutcome *outcome_of(const world_reply_t *r, const char *slug) {
  assert_non_null(r->full);
  assert_non_null(r->full->move);
  for (size_t k = 0; k < r->full->move->n_outcomes; k++)
    if (strcmp(r->full->move->outcomes[k]->site, slug) == 0) return r->full->move->outcomes[k];
  fail_msg("no outcome for %s", slug);
  return NULL;
}

static bool routes_home(const route_t *r, const char *slug) {
  return r->n_share == 1 && strcmp(r->share[0].site, slug) == 0 && r->share[0].permille == 1000;
}

static void restore_hubei(world_t *w, engine_t *e, uint64_t rid) {
  char *names[] = {"hubei"};
  Nirc__RestoreRequest r = NIRC__RESTORE_REQUEST__INIT;
  r.sources = names;
  r.n_sources = 1;
  r.reason = "over";
  engine_req_t rq = {.client = w, .request_id = rid, .operator_name = "operator:alice"};
  engine_op_restore(e, &rq, &r);
}

/* T6a: an apply the agent could not read back is "applied, unverified"
 * on the move's per-site line, in the reply's outcome and in the site's
 * state (status), until an applied ack that was read back. */
static void test_unverified_apply_is_said(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  size_t hubei = world_index(w, "hubei");
  w->ack_unverified = true;
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 1, src, 1, hub, 1, 0);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  if (!strstr(w->progress, "hubei: applied v1 in ") ||
      !strstr(w->progress, "ms, unverified (no read-back of the PBX)"))
    fail_msg("the per-site line does not say unverified:\n%s", w->progress);
  assert_int_equal(w->n_rep, 1);
  const Nirc__SiteOutcome *o = outcome_of(&w->rep[0], "hubei");
  assert_int_equal(o->result, NIRC__ACK_RESULT__ACK_RESULT_APPLIED);
  assert_true(o->unverified);
  assert_false(o->outcome_unknown);
  assert_true(engine_site_dir(e, hubei)->unverified);
  /* Read back this time: no longer unverified. */
  w->ack_unverified = false;
  size_t from = w->n_sent;
  restore_hubei(w, e, 2);
  world_ack(w, e, from, NULL);
  world_flush(w);
  assert_false(engine_site_dir(e, hubei)->unverified);
  assert_false(outcome_of(&w->rep[1], "hubei")->unverified);
  engine_free(e);
  world_free(w);
}

/* T6b: a restore whose apply ended with its outcome unknown. The site's
 * route is unknown (not the cutover's, not home) with the agent's words
 * as why, the reply's outcome carries the mark, a directive alarm stands;
 * the engine keeps sending home (the target), and the ack that applies
 * it makes the route known again. */
static void test_outcome_unknown_restore_makes_the_route_unknown(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  size_t hubei = world_index(w, "hubei");
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 1, src, 1, hub, 1, 0);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  assert_false(routes_home(&engine_site_dir(e, hubei)->acked, "hubei"));
  w->fail_detail = UNKNOWN_DETAIL;
  w->fail_outcome_unknown = true;
  size_t from = w->n_sent;
  restore_hubei(w, e, 2);
  world_ack(w, e, from, "hubei");
  world_flush(w);
  const site_dir_t *d = engine_site_dir(e, hubei);
  assert_true(d->route_unknown);
  assert_non_null(strstr(d->route_unknown_why, "outcome unknown"));
  const Nirc__SiteOutcome *o = outcome_of(&w->rep[1], "hubei");
  assert_int_equal(o->result, NIRC__ACK_RESULT__ACK_RESULT_FAILED);
  assert_true(o->outcome_unknown);
  world_tick(w, e, 100);
  assert_true(engine_alarm_active(e, ALARM_DIRECTIVE, "hubei"));
  /* Home is retried (slowly); once the agent applies it, known. */
  size_t sent = world_sent_count(w, "hubei");
  for (unsigned k = 0; k < 60 && world_sent_count(w, "hubei") == sent; k++)
    world_tick(w, e, 1000);
  assert_true(world_sent_count(w, "hubei") > sent);
  assert_true(routes_home(world_last(w, "hubei"), "hubei"));
  assert_true(engine_site_dir(e, hubei)->route_unknown);
  w->fail_outcome_unknown = false;
  world_ack(w, e, 0, NULL);
  d = engine_site_dir(e, hubei);
  assert_false(d->route_unknown);
  assert_true(routes_home(&d->acked, "hubei"));
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A cutover whose apply ended with its outcome unknown: the source's route
 * is unknown, and it is rolled back (sent home, kept out of the rule) as
 * after any failed move: home is a route the agent can be asked to apply
 * and confirm, where resending the move would repeat the apply that hung. */
static void test_outcome_unknown_cutover_rolls_back_to_a_known_route(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  size_t hubei = world_index(w, "hubei");
  w->fail_detail = UNKNOWN_DETAIL;
  w->fail_outcome_unknown = true;
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  size_t from = w->n_sent;
  world_cutover(w, e, 1, src, 1, hub, 1, 0);
  world_ack(w, e, from, "hubei");
  world_flush(w);
  assert_true(engine_site_dir(e, hubei)->route_unknown);
  assert_true(outcome_of(&w->rep[0], "hubei")->outcome_unknown);
  assert_true(engine_site_dir(e, hubei)->excluded_rule != 0);
  for (unsigned k = 0; k < 5 && !routes_home(world_last(w, "hubei"), "hubei"); k++)
    world_tick(w, e, 200);
  assert_true(routes_home(world_last(w, "hubei"), "hubei"));
  assert_true(engine_site_dir(e, hubei)->route_unknown);
  w->fail_outcome_unknown = false;
  world_ack(w, e, 0, NULL);
  assert_false(engine_site_dir(e, hubei)->route_unknown);
  assert_true(routes_home(&engine_site_dir(e, hubei)->acked, "hubei"));
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* Session 16: a route applied without a read-back was shown as read back
 * by a new leader (after a failover or a restart) until the next applied
 * ack, since only the ack carried the mark. The agent's Hello says it
 * (route_unverified); the new leader keeps it; a later verified apply
 * clears it, and so does the Hello of an agent that reads back now. */
static void test_new_leader_learns_unverified_from_the_hello(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *a = world_leading(w);
  size_t hubei = world_index(w, "hubei");
  w->ack_unverified = true;
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, a, 1, src, 1, hub, 1, 0);
  world_ack(w, a, 0, NULL);
  world_flush(w);
  assert_true(engine_site_dir(a, hubei)->unverified);
  engine_free(a);
  /* Leader a dies; b takes over with the stored cutover and hears Hellos. */
  for (size_t i = 0; i < w->sites->n; i++) {
    sites_on_link_down(&w->sites->v[i], w->now);
    w->sites->v[i].conn = NULL;
  }
  engine_t *b = world_engine(w);
  assert_int_equal(engine_load_rules(b, 6, w->cut, w->n_cut, NULL, 0, NULL, 0, w->max_id), 0);
  engine_start_leading(b, 5000);
  world_connect_all(w, b, w->applied);
  const site_dir_t *d = engine_site_dir(b, hubei);
  assert_int_equal(route_share_of(&d->acked, "shaanxi"), 1000);
  assert_true(d->unverified);
  assert_false(d->route_unknown);
  /* A site whose agent read its route back is not marked. */
  assert_false(engine_site_dir(b, world_index(w, "henan"))->unverified);
  /* Read back this time: no longer unverified. */
  w->ack_unverified = false;
  size_t from = w->n_sent;
  restore_hubei(w, b, 2);
  world_ack(w, b, from, NULL);
  world_flush(w);
  assert_true(routes_home(&engine_site_dir(b, hubei)->acked, "hubei"));
  assert_false(engine_site_dir(b, hubei)->unverified);
  /* The agent restarts without its read-back: its Hello says so, and once
   * it reads back again, its next Hello clears the mark. */
  w->hello_unverified[hubei] = true;
  world_link_down(w, b, "hubei");
  world_link_up(w, b, "hubei");
  assert_true(engine_site_dir(b, hubei)->unverified);
  w->hello_unverified[hubei] = false;
  world_link_down(w, b, "hubei");
  world_link_up(w, b, "hubei");
  assert_false(engine_site_dir(b, hubei)->unverified);
  world_flush(w);
  engine_free(b);
  world_free(w);
}

/* A leader that moved hubei to shaanxi by a cutover, acknowledged. */
static engine_t *leader_with_hubei_away(world_t *w) {
  engine_t *a = world_leading(w);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, a, 1, src, 1, hub, 1, 0);
  world_ack(w, a, 0, NULL);
  world_flush(w);
  return a;
}

/* Leader a goes (freed); b takes over, epoch 6, with every agent but
 * site `down`'s connected (its agent is stopped meanwhile). */
static engine_t *take_over_without(world_t *w, engine_t *a, size_t down) {
  engine_free(a);
  for (size_t i = 0; i < w->sites->n; i++) {
    sites_on_link_down(&w->sites->v[i], w->now);
    w->sites->v[i].conn = NULL;
  }
  w->down[down] = true;
  engine_t *b = world_engine(w);
  assert_int_equal(engine_load_rules(b, 6, w->cut, w->n_cut, NULL, 0, NULL, 0, w->max_id), 0);
  engine_start_leading(b, 5000);
  world_connect_all(w, b, w->applied);
  return b;
}

/* Brief s18A: a new leader whose site's agent is down has heard nothing
 * of its route: the engine's acked is only the default home (the agent
 * still routes to shaanxi by the old leader's move). engine_route_seen,
 * which status, the page, /status.json and the map show routes by, says
 * UNHEARD, not KNOWN (it was shown as home); the agent's Hello makes it
 * KNOWN, with the route it holds. UNKNOWN stays the agent's own word. */
static void test_new_leader_has_not_heard_the_route(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *a = leader_with_hubei_away(w);
  size_t hubei = world_index(w, "hubei"), henan = world_index(w, "henan");
  assert_int_equal(engine_route_seen(a, hubei), ENGINE_ROUTE_KNOWN);
  engine_t *b = take_over_without(w, a, hubei);
  assert_true(routes_home(&engine_site_dir(b, hubei)->acked, "hubei")); /* a default, not a fact */
  assert_int_equal(engine_route_seen(b, hubei), ENGINE_ROUTE_UNHEARD);
  assert_int_equal(engine_route_seen(b, henan), ENGINE_ROUTE_KNOWN);
  assert_int_equal(engine_route_seen(NULL, hubei), ENGINE_ROUTE_UNHEARD);
  assert_int_equal(engine_route_seen(b, w->sites->n + 5), ENGINE_ROUTE_UNHEARD);
  engine_on_route_known(b, henan, false, "not read back");
  assert_int_equal(engine_route_seen(b, henan), ENGINE_ROUTE_UNKNOWN);
  /* Its agent comes back: heard, with the route it holds. */
  world_link_up(w, b, "hubei");
  assert_int_equal(engine_route_seen(b, hubei), ENGINE_ROUTE_KNOWN);
  assert_int_equal(route_share_of(&engine_site_dir(b, hubei)->acked, "shaanxi"), 1000);
  world_flush(w);
  engine_free(b);
  world_free(w);
}

/* nircctl plan SRC --to HUB: the engine's reply. */
static const Nirc__PlanReply *plan_of(world_t *w, engine_t *e, const char *src, const char *hub) {
  char *s[] = {(char *)src}, *h[] = {(char *)hub};
  Nirc__PlanRequest pq = NIRC__PLAN_REQUEST__INIT;
  pq.sources = s;
  pq.n_sources = 1;
  pq.hubs = h;
  pq.n_hubs = 1;
  engine_req_t rq = {.client = w, .request_id = 41, .operator_name = "operator:v", .label = "t"};
  size_t before = w->n_rep;
  engine_op_plan(e, &rq, &pq);
  assert_int_equal(w->n_rep, before + 1);
  assert_non_null(w->rep[before].full->plan);
  return w->rep[before].full->plan;
}

/* Brief s19B: the planner counts every site's calls where its plan sends
 * them; a site whose route is not known here (hubei, unheard at the new
 * leader while its PBX still routes to shaanxi) may be sending them to a
 * hub now. The plan reply names such sites and how many there are, so
 * the figures are not read as counting them at home; before, nothing was
 * said. */
static void test_plan_names_routes_not_known(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *a = leader_with_hubei_away(w);
  size_t hubei = world_index(w, "hubei"), henan = world_index(w, "henan");
  assert_int_equal(plan_of(w, a, "hunan", "sichuan")->route_not_known, 0);
  world_flush(w);
  engine_t *b = take_over_without(w, a, hubei);
  const Nirc__PlanReply *p = plan_of(w, b, "hunan", "sichuan");
  assert_int_equal(p->route_not_known, 1);
  assert_int_equal(p->n_route_not_known_sites, 1);
  assert_string_equal(p->route_not_known_sites[0], "hubei");
  /* The agent's own word: unknown at its PBX counts too. */
  engine_on_route_known(b, henan, false, "not read back");
  p = plan_of(w, b, "hunan", "sichuan");
  assert_int_equal(p->route_not_known, 2);
  world_link_up(w, b, "hubei");
  engine_on_route_known(b, henan, true, "");
  assert_int_equal(plan_of(w, b, "hunan", "sichuan")->route_not_known, 0);
  world_flush(w);
  engine_free(b);
  world_free(w);
}

/* A source whose route is unknown (a return home whose outcome is not
 * known: the acked route still says shaanxi) while its proxy measures
 * calls going to shaanxi: those calls are load at shaanxi. Before, the
 * stale acked route "explained" them, so they were in no capacity check
 * (neither planned there nor unrouted inflow) and shaanxi's load read
 * low; now they count as inflow no route sends there. */
static void test_unknown_route_explains_no_measured_inflow(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leader_with_hubei_away(w);
  size_t hubei = world_index(w, "hubei"), shaanxi = world_index(w, "shaanxi");
  w->fail_detail = UNKNOWN_DETAIL;
  w->fail_outcome_unknown = true;
  size_t from = w->n_sent;
  restore_hubei(w, e, 2);
  world_ack(w, e, from, "hubei");
  world_flush(w);
  assert_int_equal(engine_route_seen(e, hubei), ENGINE_ROUTE_UNKNOWN);
  assert_int_equal(route_share_of(&engine_site_dir(e, hubei)->acked, "shaanxi"), 1000);
  /* Its proxy: 1,200 calls in 10 minutes to shaanxi. */
  site_t *s = &w->sites->v[hubei];
  Nirc__LoadReport r = NIRC__LOAD_REPORT__INIT;
  Nirc__SiteCount c = NIRC__SITE_COUNT__INIT, *cp = &c;
  r.site = s->slug;
  r.timestamp_ms = w->now;
  r.interval_ms = 600000;
  r.calls_routed_away = 1200;
  r.not_measured = 0x1ff;
  r.routing_measured = true;
  c.site = "shaanxi";
  c.calls = 1200;
  r.routed_to = &cp;
  r.n_routed_to = 1;
  site_minute_t flushed;
  sites_on_report(s, &r, w->now, w->now, &flushed);
  world_tick(w, e, 200);
  const char *note = engine_site_dir(e, shaanxi)->note;
  if (!strstr(note, "receives 2.00 calls/s no route sends here (most from hubei"))
    fail_msg("shaanxi's note does not count hubei's measured calls: '%s'", note);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unverified_apply_is_said),
      cmocka_unit_test(test_outcome_unknown_restore_makes_the_route_unknown),
      cmocka_unit_test(test_outcome_unknown_cutover_rolls_back_to_a_known_route),
      cmocka_unit_test(test_new_leader_learns_unverified_from_the_hello),
      cmocka_unit_test(test_new_leader_has_not_heard_the_route),
      cmocka_unit_test(test_plan_names_routes_not_known),
      cmocka_unit_test(test_unknown_route_explains_no_measured_inflow),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
