/* What is active, until when, and what comes next (engine_view.c, issue
 * 12 point 3), driven through the engine's world without I/O: the rule a
 * site routes by with its end (a cutover's expiry, a schedule window's
 * end), why a source is not at its rule's first hub ("re-homed: shaanxi
 * offline", held home), and the `next` list: schedule starts with their
 * waves and the plan path's prediction, ends, windows an exception date
 * skips and cutover expiries, in time order.
 *
 * The world's business clock starts at 2020-01-23 12:00 +08:00. */
#include "engine.h"
#include "rules.h"
#include "support/world.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define HOUR_MS 3600000LL

static engine_t *leading_engine(world_t *w) {
  engine_t *e = world_engine(w);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  world_connect_all(w, e, NULL);
  return e;
}

static void add_schedule(world_t *w, engine_t *e, const char *name, char **src, size_t ns,
                         char **hubs, size_t nh, const char *start, const char *end, char **except,
                         size_t nx, unsigned wave) {
  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  sp.name = (char *)name;
  sp.sources = src;
  sp.n_sources = ns;
  sp.hubs = hubs;
  sp.n_hubs = nh;
  sp.start = (char *)start;
  sp.end = (char *)end;
  sp.exceptions = except;
  sp.n_exceptions = nx;
  sp.wave_size = wave;
  Nirc__ScheduleRequest rq = NIRC__SCHEDULE_REQUEST__INIT;
  rq.op = NIRC__RULE_OP__RULE_OP_ADD;
  rq.spec = &sp;
  engine_req_t r = {.client = w, .request_id = 7, .operator_name = "admin:bob", .label = "t"};
  size_t before = w->n_rep;
  engine_op_schedule(e, &r, &rq);
  world_flush(w);
  assert_int_equal(w->n_rep, before + 1);
  assert_true(w->rep[before].ok);
}

/* `schedule list` (or `overflow list`) as the engine answers it. */
static const Nirc__OperatorReply *rule_list(world_t *w, engine_t *e, bool overflow) {
  Nirc__ScheduleRequest sq = NIRC__SCHEDULE_REQUEST__INIT;
  Nirc__OverflowRequest oq = NIRC__OVERFLOW_REQUEST__INIT;
  sq.op = oq.op = NIRC__RULE_OP__RULE_OP_LIST;
  engine_req_t r = {.client = w, .request_id = 8, .operator_name = "operator:v", .label = "t"};
  size_t before = w->n_rep;
  if (overflow)
    engine_op_overflow(e, &r, &oq);
  else
    engine_op_schedule(e, &r, &sq);
  assert_int_equal(w->n_rep, before + 1);
  return w->rep[before].full;
}

/* `schedule list`: the first schedule's spec. */
static const Nirc__ScheduleSpec *list_first(world_t *w, engine_t *e) {
  const Nirc__OperatorReply *rep = rule_list(w, e, false);
  assert_non_null(rep->schedule);
  assert_true(rep->schedule->n_schedules >= 1);
  return rep->schedule->schedules[0];
}

static void cutover_for(world_t *w, engine_t *e, const char *src, const char *hub,
                        const char *reason, int64_t for_ms) {
  char *s[] = {(char *)src}, *h[] = {(char *)hub};
  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  c.sources = s;
  c.n_sources = 1;
  c.hubs = h;
  c.n_hubs = 1;
  c.reason = (char *)reason;
  c.expires_in_ms = for_ms;
  c.force = 1;
  engine_req_t rq = {.client = w, .request_id = 9, .operator_name = "operator:alice", .label = "t"};
  engine_op_cutover(e, &rq, &c);
  world_ack(w, e, 0, NULL);
  world_flush(w);
}

/* A cutover names its id, its reason and its expiry; a hub and a site at
 * home by default have no rule and no end. */
static void test_cutover_rule_and_expiry(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_engine(w);
  int64_t t0 = w->now;
  cutover_for(w, e, "hubei", "shaanxi", "Wuhan lockdown", 2 * HOUR_MS);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 1000);
  /* The reply says when it ends, as status does (it did not). */
  const Nirc__OperatorReply *mr = w->rep[w->n_rep - 1].full;
  assert_non_null(mr->move);
  assert_true(mr->move->cutover_id == w->cut[0].id);
  assert_true(mr->move->expires_ms == t0 + 2 * HOUR_MS);
  engine_rule_view_t v;
  engine_rule_view(e, world_index(w, "hubei"), &v);
  assert_int_equal(v.kind, RULE_CUTOVER);
  assert_int_equal(v.rule_id, w->cut[0].id);
  assert_string_equal(v.reason, "Wuhan lockdown");
  assert_string_equal(v.name, "");
  assert_true(v.end_ms == t0 + 2 * HOUR_MS);
  assert_string_equal(v.detail, "");
  assert_false(v.excluded);
  engine_rule_view(e, world_index(w, "shaanxi"), &v);
  assert_int_equal(v.kind, RULE_NONE);
  assert_true(v.end_ms == 0);
  engine_rule_view(e, world_index(w, "hunan"), &v);
  assert_int_equal(v.kind, RULE_NONE);
  assert_string_equal(v.detail, "");
  engine_free(e);
  world_free(w);
}

/* A schedule in force names itself with its window's end; when its first
 * hub is lost the source is re-homed and says why; when every hub is
 * lost it is held home and still names the schedule, with each hub's
 * state. */
static void test_schedule_end_and_rehome(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_engine(w);
  char *src[] = {"hubei", "guangdong"}, *hubs[] = {"shaanxi", "henan"};
  add_schedule(w, e, "day", src, 2, hubs, 2, "11:00", "18:00", NULL, 0, 5);
  world_tick(w, e, 200);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 1000);
  world_ack(w, e, 0, NULL);
  world_tick(w, e, 200);
  int64_t st = 0, en = 0;
  assert_true(rules_schedule_window(&w->sch[0], w->now, &st, &en));
  engine_rule_view_t v;
  size_t hubei = world_index(w, "hubei");
  engine_rule_view(e, hubei, &v);
  assert_int_equal(v.kind, RULE_SCHEDULE);
  assert_string_equal(v.name, "day");
  assert_true(v.end_ms == en);
  assert_true(en == WORLD_T0_MS + 6 * HOUR_MS); /* 18:00 +08:00 */
  assert_string_equal(v.detail, "");
  const Nirc__ScheduleSpec *sp = list_first(w, e);
  assert_true(sp->in_force);
  assert_int_equal(sp->sources_moved, 2);

  world_link_down(w, e, "shaanxi");
  world_tick(w, e, 200);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "henan"), 1000);
  world_ack(w, e, 0, NULL);
  world_tick(w, e, 200);
  engine_rule_view(e, hubei, &v);
  assert_int_equal(v.kind, RULE_SCHEDULE);
  assert_string_equal(v.detail, "re-homed: shaanxi offline");
  assert_true(v.end_ms == en);

  world_link_down(w, e, "henan");
  world_tick(w, e, 200);
  world_ack(w, e, 0, NULL);
  world_tick(w, e, 200);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "hubei"), 1000);
  engine_rule_view(e, hubei, &v);
  assert_int_equal(v.kind, RULE_SCHEDULE); /* held home, not "default" */
  assert_string_equal(v.detail, "home: shaanxi offline, henan offline");
  /* Its window is open, but it moves nobody: list says so. */
  sp = list_first(w, e);
  assert_true(sp->in_force);
  assert_int_equal(sp->sources_moved, 0);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

static const Nirc__NextReply *ask_next(world_t *w, engine_t *e, unsigned hours) {
  Nirc__NextRequest nq = NIRC__NEXT_REQUEST__INIT;
  nq.hours = hours;
  engine_req_t rq = {.client = w, .request_id = 11, .operator_name = "operator:v", .label = "t"};
  size_t before = w->n_rep;
  engine_op_next(e, &rq, &nq);
  assert_int_equal(w->n_rep, before + 1);
  const world_reply_t *r = &w->rep[before];
  if (!r->ok) return NULL;
  assert_int_equal(r->body, NIRC__OPERATOR_REPLY__BODY_NEXT);
  return r->full->next;
}

/* hainan's agent has not connected to this leader: the starts'
 * predictions count its calls where the plan sends them, so `next` says
 * which sites' routes are not known here, once, as a plan does. */
static void test_next_says_routes_not_known(void **state) {
  (void)state;
  world_t *w = world_new();
  w->down[world_index(w, "hainan")] = true;
  engine_t *e = leading_engine(w);
  char *src[] = {"hubei", "guangdong"}, *hubs[] = {"shaanxi"};
  add_schedule(w, e, "night", src, 2, hubs, 1, "22:00", "08:00", NULL, 0, 0);
  const Nirc__NextReply *r = ask_next(w, e, 24);
  assert_non_null(r);
  assert_true(r->n_events >= 1);
  assert_string_equal(r->events[0]->kind, "schedule-start");
  assert_true(r->events[0]->predicted);
  assert_true(r->route_not_known_counted);
  assert_int_equal(r->route_not_known, 1);
  assert_int_equal(r->n_route_not_known_sites, 1);
  assert_string_equal(r->route_not_known_sites[0], "hainan");
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* The next hours in time order: a cutover's expiry, the night window's
 * start (its sources, hubs, waves and the predicted capacity at its hub),
 * its end, and the next night an exception date skips. */
static void test_next_in_time_order(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_engine(w);
  char *src[] = {"hubei", "guangdong", "hainan"}, *hubs[] = {"shaanxi", "henan"};
  char *except[] = {"2020-01-24"};
  add_schedule(w, e, "night", src, 3, hubs, 2, "22:00", "08:00", except, 1, 2);
  cutover_for(w, e, "hunan", "sichuan", "drill", 3 * HOUR_MS);
  int64_t t0 = w->now;

  const Nirc__NextReply *r = ask_next(w, e, 48);
  assert_non_null(r);
  assert_true(r->from_ms == t0 && r->until_ms == t0 + 48 * HOUR_MS);
  assert_int_equal(r->n_events, 4);
  static const char *const kinds[] = {"cutover-expiry", "schedule-start", "schedule-end",
                                      "schedule-skip"};
  static const int64_t at[] = {3 * HOUR_MS, 10 * HOUR_MS, 20 * HOUR_MS, 34 * HOUR_MS};
  for (size_t k = 0; k < 4; k++) {
    assert_string_equal(r->events[k]->kind, kinds[k]);
    assert_true(r->events[k]->at_ms == WORLD_T0_MS + at[k]);
  }
  const Nirc__NextEvent *cut = r->events[0];
  assert_string_equal(cut->rule_kind, "cutover");
  assert_string_equal(cut->reason, "drill");
  assert_int_equal(cut->n_sources, 1);
  assert_string_equal(cut->sources[0], "hunan");
  const Nirc__NextEvent *start = r->events[1];
  assert_string_equal(start->rule_name, "night");
  assert_int_equal(start->n_sources, 3);
  assert_int_equal(start->n_hubs, 2);
  assert_int_equal(start->wave_size, 2);
  assert_int_equal(start->waves, 2);
  assert_true(start->end_ms == WORLD_T0_MS + 20 * HOUR_MS);
  /* The plan path's prediction: the first hub takes the sources. */
  assert_true(start->predicted);
  assert_true(start->n_predictions >= 1);
  assert_string_equal(start->predictions[0]->hub, "shaanxi");
  assert_true(start->predictions[0]->agents_needed > 0);
  assert_true(start->predictions[0]->n_sources == 3);
  assert_string_equal(r->events[3]->reason, "exception 2020-01-24");

  /* 24 hours end before the skipped night. */
  r = ask_next(w, e, 24);
  assert_non_null(r);
  assert_int_equal(r->n_events, 3);
  /* More than a week is refused as the request's own mistake. */
  assert_null(ask_next(w, e, 200));
  assert_int_equal(w->rep[w->n_rep - 1].code, NIRC__ERROR_CODE__ERROR_CODE_INVALID);

  /* In the window: its end comes first, then the next start (skipped). */
  world_tick(w, e, 10 * HOUR_MS + 60000);
  world_ack(w, e, 0, NULL);
  engine_next_t ev[8];
  size_t n = engine_next_events(e, w->now + 24 * HOUR_MS, ev, 8);
  assert_int_equal(n, 2);
  assert_int_equal(ev[0].kind, ENGINE_NEXT_END);
  assert_int_equal(ev[1].kind, ENGINE_NEXT_SKIP);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* 2020-03-29 12:00 UTC is the last Sunday of March: Berlin's clocks go
 * from 02:00 to 03:00 that night (01:00 UTC). */
#define GAP_DAY_MS 1585483200000LL

/* A window wholly in the hour the clocks skip has no time that day: the
 * next list says so in words (not "exception", there is none), schedule
 * list and plan --schedule give the next window that runs, the day after,
 * and the engine moves nobody through the night. */
static void test_window_in_dst_gap(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_engine(w);
  w->now = GAP_DAY_MS - 24 * HOUR_MS; /* Saturday 12:00 UTC */
  char *src[] = {"hubei"}, *hubs[] = {"shaanxi"};
  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  sp.name = "gapwin";
  sp.sources = src;
  sp.n_sources = 1;
  sp.hubs = hubs;
  sp.n_hubs = 1;
  sp.start = "02:10";
  sp.end = "02:50";
  sp.tz = "Europe/Berlin";
  Nirc__ScheduleRequest rq = NIRC__SCHEDULE_REQUEST__INIT;
  rq.op = NIRC__RULE_OP__RULE_OP_ADD;
  rq.spec = &sp;
  engine_req_t r = {.client = w, .request_id = 7, .operator_name = "admin:bob", .label = "t"};
  engine_op_schedule(e, &r, &rq);
  world_flush(w);
  assert_true(w->rep[w->n_rep - 1].ok);
  int64_t skip = GAP_DAY_MS - 11 * HOUR_MS;              /* 03:00 CEST, where it would be */
  int64_t next = GAP_DAY_MS + 12 * HOUR_MS + 10 * 60000; /* 02:10 CEST on Monday */

  const Nirc__NextReply *nr = ask_next(w, e, 48);
  assert_non_null(nr);
  assert_int_equal(nr->n_events, 3);
  assert_string_equal(nr->events[0]->kind, "schedule-skip");
  assert_true(nr->events[0]->at_ms == skip);
  assert_string_equal(nr->events[0]->reason,
                      "02:10-02:50 does not exist on 2020-03-29 in Europe/Berlin (DST change)");
  assert_string_equal(nr->events[1]->kind, "schedule-start");
  assert_true(nr->events[1]->at_ms == next);
  assert_true(nr->events[1]->end_ms == next + 40 * 60000);
  assert_string_equal(nr->events[2]->kind, "schedule-end");
  assert_true(list_first(w, e)->next_start_ms == next);

  Nirc__PlanRequest pq = NIRC__PLAN_REQUEST__INIT;
  pq.schedule_name = "gapwin";
  engine_req_t pr = {.client = w, .request_id = 12, .operator_name = "operator:v", .label = "t"};
  size_t before = w->n_rep;
  engine_op_plan(e, &pr, &pq);
  assert_int_equal(w->n_rep, before + 1);
  const Nirc__PlanReply *plan = w->rep[before].full->plan;
  assert_non_null(plan);
  assert_true(plan->window_start_ms == next);
  assert_true(plan->window_end_ms == next + 40 * 60000);

  /* Through the night minute by minute: hubei never leaves home. */
  size_t sent = w->n_sent;
  for (int m = 0; m < 24 * 60; m++)
    world_tick(w, e, 60000);
  for (size_t k = sent; k < w->n_sent; k++)
    if (w->sent[k].site == world_index(w, "hubei"))
      assert_int_equal(route_share_of(&w->sent[k].route, "hubei"), 1000);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* plan --schedule of a disabled schedule: its next window as it would run
 * once enabled, said to be disabled (before, the engine found no window
 * for it and planned for 1970-01-01 00:01). */
static void test_plan_of_a_disabled_schedule(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_engine(w);
  char *src[] = {"hubei"}, *hubs[] = {"shaanxi"};
  add_schedule(w, e, "night", src, 1, hubs, 1, "22:00", "08:00", NULL, 0, 0);
  int64_t next = list_first(w, e)->next_start_ms;
  assert_true(next > w->now);
  Nirc__ScheduleRequest off = NIRC__SCHEDULE_REQUEST__INIT;
  off.op = NIRC__RULE_OP__RULE_OP_DISABLE;
  off.name = "night";
  engine_req_t r = {.client = w, .request_id = 11, .operator_name = "admin:bob", .label = "t"};
  engine_op_schedule(e, &r, &off);
  world_flush(w);
  assert_true(w->rep[w->n_rep - 1].ok);

  Nirc__PlanRequest pq = NIRC__PLAN_REQUEST__INIT;
  pq.schedule_name = "night";
  engine_req_t pr = {.client = w, .request_id = 12, .operator_name = "operator:v", .label = "t"};
  size_t before = w->n_rep;
  engine_op_plan(e, &pr, &pq);
  assert_int_equal(w->n_rep, before + 1);
  const Nirc__PlanReply *plan = w->rep[before].full->plan;
  assert_non_null(plan);
  assert_true(plan->schedule_disabled);
  assert_true(plan->window_start_ms == next);
  assert_true(plan->window_end_ms == next + 10 * HOUR_MS);
  assert_int_equal(plan->n_moves, 1);
  engine_free(e);
  world_free(w);
}

/* plan --schedule of a window shorter than the minute it used to plan
 * into: the trial planned a one-minute window at its end, when it is over,
 * and showed no move. */
static void test_plan_of_a_one_minute_window(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_engine(w);
  char *src[] = {"hubei"}, *hubs[] = {"shaanxi"};
  add_schedule(w, e, "blip", src, 1, hubs, 1, "22:00", "22:01", NULL, 0, 0);
  int64_t next = list_first(w, e)->next_start_ms;
  assert_true(next > w->now);
  Nirc__PlanRequest pq = NIRC__PLAN_REQUEST__INIT;
  pq.schedule_name = "blip";
  engine_req_t pr = {.client = w, .request_id = 12, .operator_name = "operator:v", .label = "t"};
  size_t before = w->n_rep;
  engine_op_plan(e, &pr, &pq);
  assert_int_equal(w->n_rep, before + 1);
  const Nirc__PlanReply *plan = w->rep[before].full->plan;
  assert_non_null(plan);
  assert_true(plan->window_start_ms == next);
  assert_true(plan->window_end_ms == next + 60000);
  assert_int_equal(plan->n_moves, 1);
  engine_free(e);
  world_free(w);
}

/* `overflow list`: the first rule's spec. */
static const Nirc__OverflowSpec *overflow_first(world_t *w, engine_t *e) {
  const Nirc__OperatorReply *rep = rule_list(w, e, true);
  assert_non_null(rep->overflow);
  assert_true(rep->overflow->n_rules >= 1);
  return rep->overflow->rules[0];
}

/* A source whose route is not known here (its agent unsure of its PBX, or
 * not heard since this leader took over) is neither moved nor home in the
 * rule lists: a schedule in force counts it in sources_not_known, not in
 * sources_moved (its acked is a route nobody vouches for), and an overflow
 * rule says route_not_known with nothing counted as moved. Before, both
 * read the acked route as a fact: "YES 2/2" and "YES 500‰". */
static void test_rule_lists_count_routes_not_known_apart(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_engine(w);
  char *src[] = {"hubei", "guangdong"}, *hubs[] = {"shaanxi", "henan"};
  add_schedule(w, e, "day", src, 2, hubs, 2, "11:00", "18:00", NULL, 0, 5);
  world_tick(w, e, 200);
  world_ack(w, e, 0, NULL);
  world_tick(w, e, 200);
  const Nirc__ScheduleSpec *sp = list_first(w, e);
  assert_true(sp->in_force);
  assert_int_equal(sp->sources_moved, 2);
  assert_int_equal(sp->sources_not_known, 0);
  size_t hubei = world_index(w, "hubei");
  engine_on_route_known(e, hubei, false, "not read back");
  assert_int_equal(engine_route_seen(e, hubei), ENGINE_ROUTE_UNKNOWN);
  sp = list_first(w, e);
  assert_int_equal(sp->sources_moved, 1);
  assert_int_equal(sp->sources_not_known, 1);
  world_flush(w);
  engine_free(e);
  world_free(w);

  /* An overflow rule moving half of hainan's calls, then hainan's route
   * not known. */
  w = world_new();
  e = leading_engine(w);
  Nirc__OverflowSpec os = NIRC__OVERFLOW_SPEC__INIT;
  char *ohubs[] = {"shaanxi"};
  os.name = "hn-peak";
  os.source = "hainan";
  os.hubs = ohubs;
  os.n_hubs = 1;
  os.trigger_queue = 20;
  os.release_queue = 2;
  os.share_cap_permille = 500;
  os.min_hold_s = 300;
  Nirc__OverflowRequest orq = NIRC__OVERFLOW_REQUEST__INIT;
  orq.op = NIRC__RULE_OP__RULE_OP_ADD;
  orq.name = "hn-peak";
  orq.spec = &os;
  engine_req_t r = {.client = w, .request_id = 7, .operator_name = "admin:bob", .label = "t"};
  engine_op_overflow(e, &r, &orq);
  world_flush(w);
  world_load(w, "hainan", 60, 120000);
  for (int k = 0; k < 20; k++) {
    const route_t *l = world_last(w, "hainan");
    if (l && route_share_of(l, "shaanxi") > 0) break;
    world_tick(w, e, 1000);
    world_ack(w, e, 0, NULL);
  }
  world_tick(w, e, 200);
  const Nirc__OverflowSpec *o = overflow_first(w, e);
  assert_true(o->engaged);
  assert_true(o->moved_permille > 0);
  assert_false(o->route_not_known);
  engine_on_route_known(e, world_index(w, "hainan"), false, "not read back");
  o = overflow_first(w, e);
  assert_true(o->route_not_known);
  assert_false(o->engaged);
  assert_int_equal(o->moved_permille, 0);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cutover_rule_and_expiry),
      cmocka_unit_test(test_schedule_end_and_rehome),
      cmocka_unit_test(test_rule_lists_count_routes_not_known_apart),
      cmocka_unit_test(test_next_in_time_order),
      cmocka_unit_test(test_next_says_routes_not_known),
      cmocka_unit_test(test_window_in_dst_gap),
      cmocka_unit_test(test_plan_of_a_disabled_schedule),
      cmocka_unit_test(test_plan_of_a_one_minute_window),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
