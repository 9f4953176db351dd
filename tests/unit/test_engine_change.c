/* Unit tests of `nircctl schedule set` (engine_rules.c): a schedule in
 * force changed in place moves calls only where the route changes. With a
 * rm and an add every source went home and back (every call of the
 * provinces switched twice for nothing); with set a source is never sent
 * home unless the change asks for it. Driven in the engine's world
 * (tests/unit/support/world.c), at 12:00 Asia/Shanghai. */
#include "engine.h"
#include "route.h"
#include "rules.h"
#include "support/world.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define HOUR_MS 3600000LL

/* A schedule request: op on "night" with these fields (NULL, 0: not given). */
typedef struct {
  Nirc__RuleOp op;
  const char *sources[4], *hubs[2], *start, *end;
  bool dry_run;
} ch_req_t;

static void ch_send(world_t *w, engine_t *e, uint64_t rid, const ch_req_t *c) {
  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  sp.name = "night";
  while (sp.n_sources < 4 && c->sources[sp.n_sources])
    sp.n_sources++;
  while (sp.n_hubs < 2 && c->hubs[sp.n_hubs])
    sp.n_hubs++;
  sp.sources = (char **)c->sources;
  sp.hubs = (char **)c->hubs;
  sp.start = (char *)c->start;
  sp.end = (char *)c->end;
  Nirc__ScheduleRequest rq = NIRC__SCHEDULE_REQUEST__INIT;
  rq.op = c->op;
  rq.name = "night";
  rq.spec = &sp;
  rq.dry_run = c->dry_run;
  engine_req_t r = {.client = w, .request_id = rid, .operator_name = "admin:bob", .label = "t"};
  engine_op_schedule(e, &r, &rq);
  world_flush(w);
}

/* Leading, with "night" (10:00-13:00, hubei and guangdong to shaanxi) in
 * force, both moved, acknowledged and their wave verified. */
static engine_t *ch_night_in_force(world_t *w) {
  engine_t *e = world_leading(w);
  ch_send(w, e, 1,
          &(ch_req_t){.op = NIRC__RULE_OP__RULE_OP_ADD,
                      .sources = {"hubei", "guangdong"},
                      .hubs = {"shaanxi"},
                      .start = "10:00",
                      .end = "13:00"});
  world_tick(w, e, 200);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 1000);
  assert_int_equal(route_share_of(world_last(w, "guangdong"), "shaanxi"), 1000);
  world_ack(w, e, 0, NULL);
  world_tick(w, e, 10000); /* the wave verified */
  world_flush(w);
  return e;
}

/* Directives to slug from sent index `from` on that send it home. */
static unsigned ch_home_sent(world_t *w, const char *slug, size_t from) {
  unsigned n = 0;
  size_t i = world_index(w, slug);
  for (size_t k = from; k < w->n_sent; k++)
    n += w->sent[k].site == i && route_share_of(&w->sent[k].route, slug) == 1000;
  return n;
}

static const Nirc__RuleChange *ch_change(world_t *w) {
  const world_reply_t *r = &w->rep[w->n_rep - 1];
  assert_true(r->ok);
  assert_non_null(r->full);
  assert_non_null(r->full->schedule);
  assert_non_null(r->full->schedule->change);
  return r->full->schedule->change;
}

/* The old way, for contrast: rm and add again with the new end sends
 * both sources home, then moves them back. */
static void test_rm_and_add_sends_the_sources_home_and_back(void **state) {
  world_t *w = world_new();
  engine_t *e = ch_night_in_force(w);
  size_t mark = w->n_sent;
  ch_send(w, e, 2, &(ch_req_t){.op = NIRC__RULE_OP__RULE_OP_REMOVE});
  world_tick(w, e, 200);
  world_ack(w, e, mark, NULL);
  ch_send(w, e, 3,
          &(ch_req_t){.op = NIRC__RULE_OP__RULE_OP_ADD,
                      .sources = {"hubei", "guangdong"},
                      .hubs = {"shaanxi"},
                      .start = "10:00",
                      .end = "14:00"});
  world_tick(w, e, 200);
  assert_int_equal(ch_home_sent(w, "hubei", mark), 1);
  assert_int_equal(ch_home_sent(w, "guangdong", mark), 1);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 1000);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A later end: the same route with the new revert_at, no trip home; one
 * record (the row updated) and one schedule-change audit entry. */
static void test_set_later_end_keeps_the_route(void **state) {
  world_t *w = world_new();
  engine_t *e = ch_night_in_force(w);
  size_t mark = w->n_sent, recs = world_count_rec(w, ENGINE_REC_SCHEDULE_CHANGE, NULL);
  int64_t old_revert = world_last(w, "hubei")->revert_at_ms;
  ch_send(w, e, 2, &(ch_req_t){.op = NIRC__RULE_OP__RULE_OP_SET, .end = "14:00"});
  const Nirc__RuleChange *c = ch_change(w);
  assert_non_null(c);
  assert_false(c->dry_run);
  assert_int_equal(c->n_changed, 1);
  assert_string_equal(c->changed[0], "end 13:00 -> 14:00");
  assert_int_equal(c->n_moves, 0);
  assert_int_equal(c->kept, 2);
  assert_int_equal(world_count_rec(w, ENGINE_REC_SCHEDULE_CHANGE, NULL), recs + 1);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "schedule-change"), 1);
  assert_int_equal(world_count_rec(w, ENGINE_REC_SCHEDULE_REMOVE, NULL), 0);
  assert_int_equal(w->sch[0].end_min, 14 * 60); /* the stored row */
  world_tick(w, e, 200);
  assert_int_equal(ch_home_sent(w, "hubei", mark), 0);
  assert_int_equal(ch_home_sent(w, "guangdong", mark), 0);
  assert_true(world_sent_count(w, "hubei") >= 2); /* sent again: the new revert_at */
  const route_t *r = world_last(w, "hubei");
  assert_int_equal(route_share_of(r, "shaanxi"), 1000);
  assert_int_equal(r->revert_at_ms, old_revert + HOUR_MS);
  world_ack(w, e, mark, NULL);
  world_flush(w);
  engine_free(e);
  /* A new leader loads the changed row (the world keeps the tables as the
   * store's SQL does) and keeps the route with the new end. */
  engine_t *b = world_engine(w);
  assert_int_equal(engine_load_rules(b, 6, NULL, 0, w->sch, w->n_sch, NULL, 0, w->max_id), 0);
  engine_start_leading(b, 0);
  size_t hubei = world_index(w, "hubei");
  for (size_t i = 0; i < w->sites->n; i++)
    engine_on_hello(b, i, &w->applied[i], false, NULL);
  world_tick(w, b, 200);
  const route_t *t = &engine_site_dir(b, hubei)->target;
  assert_int_equal(route_share_of(t, "shaanxi"), 1000);
  assert_int_equal(t->revert_at_ms, old_revert + HOUR_MS);
  world_flush(w);
  engine_free(b);
  world_free(w);
}

/* A new hub: from shaanxi to henan directly; a source dropped goes home,
 * one added moves; the kept source is never sent home. */
static void test_set_hub_and_sources_move_only_what_changes(void **state) {
  world_t *w = world_new();
  engine_t *e = ch_night_in_force(w);
  size_t mark = w->n_sent;
  ch_send(w, e, 2,
          &(ch_req_t){
              .op = NIRC__RULE_OP__RULE_OP_SET, .sources = {"hubei", "hainan"}, .hubs = {"henan"}});
  const Nirc__RuleChange *c = ch_change(w);
  assert_non_null(c);
  assert_int_equal(c->n_changed, 2); /* sources and hubs */
  assert_int_equal(c->n_moves, 3);
  for (size_t k = 0; k < c->n_moves; k++) {
    const Nirc__RuleChangeMove *m = c->moves[k];
    if (strcmp(m->site, "hubei") == 0) {
      assert_string_equal(m->from, "shaanxi");
      assert_string_equal(m->to, "henan");
    } else if (strcmp(m->site, "guangdong") == 0) {
      assert_string_equal(m->to, "home");
    } else {
      assert_string_equal(m->site, "hainan");
      assert_string_equal(m->from, "home");
      assert_string_equal(m->to, "henan");
    }
  }
  world_tick(w, e, 200);
  assert_int_equal(ch_home_sent(w, "hubei", mark), 0);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "henan"), 1000);
  assert_int_equal(route_share_of(world_last(w, "hainan"), "henan"), 1000);
  assert_int_equal(ch_home_sent(w, "guangdong", mark), 1);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A window shortened so that now is outside it sends the sources home:
 * the change asked for. */
static void test_set_end_before_now_sends_home(void **state) {
  world_t *w = world_new();
  engine_t *e = ch_night_in_force(w);
  size_t mark = w->n_sent;
  ch_send(w, e, 2, &(ch_req_t){.op = NIRC__RULE_OP__RULE_OP_SET, .end = "11:30"});
  assert_int_equal(ch_change(w)->n_moves, 2);
  world_tick(w, e, 200);
  assert_int_equal(ch_home_sent(w, "hubei", mark), 1);
  assert_int_equal(ch_home_sent(w, "guangdong", mark), 1);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* --dry-run says what would change and move, and changes nothing; a set
 * that changes nothing is refused. */
static void test_set_dry_run_and_nothing_to_change(void **state) {
  world_t *w = world_new();
  engine_t *e = ch_night_in_force(w);
  size_t mark = w->n_sent, recs = w->n_rec;
  ch_send(w, e, 2,
          &(ch_req_t){.op = NIRC__RULE_OP__RULE_OP_SET, .hubs = {"henan"}, .dry_run = true});
  const Nirc__RuleChange *c = ch_change(w);
  assert_non_null(c);
  assert_true(c->dry_run);
  assert_int_equal(c->n_moves, 2);
  assert_string_equal(c->changed[0], "hubs shaanxi -> henan");
  assert_string_equal(w->sch[0].hubs.v[0], "shaanxi");
  assert_int_equal(w->n_rec, recs);
  world_tick(w, e, 200);
  assert_int_equal(w->n_sent, mark);
  ch_send(w, e, 3, &(ch_req_t){.op = NIRC__RULE_OP__RULE_OP_SET, .end = "13:00"});
  assert_false(w->rep[w->n_rep - 1].ok);
  assert_non_null(strstr(w->rep[w->n_rep - 1].msg, "nothing to change"));
  ch_send(w, e, 4, &(ch_req_t){.op = NIRC__RULE_OP__RULE_OP_SET, .end = "25:00"});
  assert_false(w->rep[w->n_rep - 1].ok);
  assert_int_equal(w->rep[w->n_rep - 1].code, NIRC__ERROR_CODE__ERROR_CODE_INVALID);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* An overflow rule's request on "hubei-ovf" (hubei to `hub`). */
static void ch_overflow(world_t *w, engine_t *e, uint64_t rid, Nirc__RuleOp op, char *hub,
                        const char *source) {
  char *hubs[] = {hub};
  Nirc__OverflowSpec sp = NIRC__OVERFLOW_SPEC__INIT;
  sp.name = "hubei-ovf";
  sp.source = (char *)source;
  sp.hubs = hubs;
  sp.n_hubs = hub ? 1 : 0;
  if (op == NIRC__RULE_OP__RULE_OP_ADD) {
    sp.trigger_queue = 20;
    sp.release_queue = 5;
    sp.share_cap_permille = 500;
    sp.min_hold_s = 300;
  }
  Nirc__OverflowRequest rq = NIRC__OVERFLOW_REQUEST__INIT;
  rq.op = op;
  rq.name = "hubei-ovf";
  rq.spec = &sp;
  engine_req_t r = {.client = w, .request_id = rid, .operator_name = "admin:bob", .label = "t"};
  engine_op_overflow(e, &r, &rq);
  world_flush(w);
}

/* overflow set on an engaged rule keeps its engagement: the spill goes
 * from shaanxi to henan directly, never home, at the same share; its
 * source cannot change (the engagement is that source's load). */
static void test_overflow_set_keeps_the_engaged_spill(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  ch_overflow(w, e, 1, NIRC__RULE_OP__RULE_OP_ADD, "shaanxi", "hubei");
  for (int k = 0; k < 10; k++) { /* a queue of 60 and callers waiting 4 minutes */
    w->now += 60000;
    world_load(w, "hubei", 60, 240000);
    world_tick(w, e, 200);
    world_ack(w, e, 0, NULL);
  }
  world_tick(w, e, 10000);
  world_flush(w);
  assert_true(w->ovf_state[0].engaged);
  uint32_t moved = route_share_of(world_last(w, "hubei"), "shaanxi");
  assert_true(moved > 0);
  size_t mark = w->n_sent;
  ch_overflow(w, e, 2, NIRC__RULE_OP__RULE_OP_SET, NULL, "guangdong");
  assert_false(w->rep[w->n_rep - 1].ok);
  assert_non_null(strstr(w->rep[w->n_rep - 1].msg, "keeps its source"));
  ch_overflow(w, e, 3, NIRC__RULE_OP__RULE_OP_SET, "henan", "");
  assert_true(w->rep[w->n_rep - 1].ok);
  const Nirc__RuleChange *c = w->rep[w->n_rep - 1].full->overflow->change;
  assert_non_null(c);
  assert_string_equal(c->changed[0], "hubs shaanxi -> henan");
  assert_int_equal(c->n_moves, 1);
  assert_string_equal(c->moves[0]->site, "hubei");
  assert_int_equal(world_count_rec(w, ENGINE_REC_OVERFLOW_CHANGE, NULL), 1);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "overflow-change"), 1);
  assert_string_equal(w->ovf[0].hubs.v[0], "henan");
  for (int k = 0; k < 3; k++) { /* calmer, but above the release threshold */
    w->now += 60000;
    world_load(w, "hubei", 10, 30000);
    world_tick(w, e, 200);
    world_ack(w, e, mark, NULL);
  }
  assert_true(w->ovf_state[0].engaged);
  assert_int_equal(ch_home_sent(w, "hubei", mark), 0);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "henan"), moved);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 0);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A new leader whose guangdong has not said Hello: the change says its
 * route is not known (as status does: "unknown (not heard)"), not the
 * default home this controller holds for it; hubei, heard, is named. */
static void test_set_names_a_route_not_known_as_such(void **state) {
  world_t *w = world_new();
  engine_t *e = ch_night_in_force(w);
  world_flush(w);
  engine_free(e);
  engine_t *b = world_engine(w);
  assert_int_equal(engine_load_rules(b, 6, NULL, 0, w->sch, w->n_sch, NULL, 0, w->max_id), 0);
  engine_start_leading(b, 0);
  size_t hubei = world_index(w, "hubei"), guangdong = world_index(w, "guangdong");
  for (size_t i = 0; i < w->sites->n; i++)
    if (i != guangdong) engine_on_hello(b, i, &w->applied[i], false, NULL);
  world_tick(w, b, 200);
  assert_int_equal(engine_route_seen(b, guangdong), ENGINE_ROUTE_UNHEARD);
  assert_int_equal(engine_route_seen(b, hubei), ENGINE_ROUTE_KNOWN);
  ch_send(w, b, 2, &(ch_req_t){.op = NIRC__RULE_OP__RULE_OP_SET, .hubs = {"henan"}});
  const Nirc__RuleChange *c = ch_change(w);
  assert_int_equal(c->n_moves, 2);
  for (size_t k = 0; k < c->n_moves; k++) {
    const Nirc__RuleChangeMove *m = c->moves[k];
    if (strcmp(m->site, "hubei") == 0)
      assert_string_equal(m->from, "shaanxi");
    else
      assert_string_equal(m->from, "not known (not heard)");
    assert_string_equal(m->to, "henan");
  }
  world_flush(w);
  engine_free(b);
  world_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rm_and_add_sends_the_sources_home_and_back),
      cmocka_unit_test(test_set_later_end_keeps_the_route),
      cmocka_unit_test(test_set_hub_and_sources_move_only_what_changes),
      cmocka_unit_test(test_set_end_before_now_sends_home),
      cmocka_unit_test(test_set_dry_run_and_nothing_to_change),
      cmocka_unit_test(test_overflow_set_keeps_the_engaged_spill),
      cmocka_unit_test(test_set_names_a_route_not_known_as_such),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
