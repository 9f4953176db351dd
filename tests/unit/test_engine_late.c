/* Unit tests of route changes the engine learns of late (controller/
 * routing/engine_stable.c, engine_ack.c), found missing from the audit
 * trail in session 16: a site whose agent went home by its own revert_at
 * while its link was down and its cutover was extended meanwhile, and the
 * zone the engine's own times are said in. Driven through the engine's
 * world (tests/unit/support/world.c), like test_engine_said. */
#include "engine.h"
#include "engine-int.h"
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

/* The route entries of `slug` from record `from` on, in order. */
static size_t route_entries(world_t *w, size_t from, const char *slug, const world_rec_t **v,
                            size_t max) {
  size_t n = 0;
  for (size_t k = from; k < w->n_rec; k++)
    if (w->rec[k].kind == ENGINE_REC_AUDIT && strcmp(w->rec[k].action, "route") == 0 &&
        strcmp(w->rec[k].site, slug) == 0) {
      if (n < max) v[n] = &w->rec[k];
      n++;
    }
  return n;
}

static void has_words(const world_rec_t *x, const char *const *words, size_t n) {
  for (size_t k = 0; k < n; k++)
    if (!strstr(x->detail, words[k])) fail_msg("no '%s' in %s", words[k], x->detail);
}

/* An engine leading epoch 5, every site connected and home, saying its
 * times in the operations room's zone. */
static engine_t *leading_in(world_t *w, const char *ops_tz) {
  engine_opts_t o = world_opts(false);
  snprintf(o.ops_tz, sizeof o.ops_tz, "%s", ops_tz);
  engine_t *e = world_engine_with(w, &o);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  world_connect_all(w, e, NULL);
  return e;
}

static void advance(world_t *w, engine_t *e, int64_t ms) {
  for (int64_t k = 0; k < ms; k += 60000) {
    world_tick(w, e, 60000);
    world_ack(w, e, 0, NULL); /* the sites whose link is up */
    world_flush(w);
  }
}

/* A cutover --for 30m of hubei to shaanxi; hubei's link drops; an
 * operator extends it to 2 h; hubei's agent, which never got the
 * extension, goes home by its directive's revert_at and connects again
 * 15 minutes later. Before, the leader sent the cutover's route again and
 * the trail had neither the return home nor the move back: history showed
 * hubei at shaanxi the whole time. */
static void test_a_return_by_a_revert_at_the_cutover_moved_on_from_is_recorded(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_in(w, "Asia/Shanghai");
  world_cutover_for(w, e, 9, "hubei", "shaanxi", 1800000);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  size_t i = world_index(w, "hubei");
  route_t moved = engine_site_dir(e, i)->acked;
  assert_int_equal(route_share_of(&moved, "shaanxi"), 1000);
  assert_true(moved.revert_at_ms > w->now);
  /* A hub's own directive carries no revert_at: its agent never changes
   * its inbound list on its own (engine_late_revert's comment). */
  assert_int_equal(world_last(w, "shaanxi")->revert_at_ms, 0);
  uint64_t id = w->cut[0].id;

  world_link_down(w, e, "hubei");
  advance(w, e, 600000);
  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  c.amend_id = id;
  c.expires_in_ms = 7200000;
  c.reason = "longer";
  engine_req_t rq = {.client = w, .request_id = 10, .operator_name = "operator:olga"};
  engine_op_cutover(e, &rq, &c);
  world_flush(w);
  const route_t *ext = &engine_site_dir(e, i)->target; /* not delivered: its link is down */
  assert_int_equal(ext->version, moved.version + 1);
  assert_true(ext->revert_at_ms > moved.revert_at_ms);
  uint64_t ext_version = ext->version;

  /* Its agent goes home at the old revert_at; it connects 15 min later. */
  route_t *ap = &w->applied[i];
  route_home(ap, "hubei");
  ap->epoch = moved.epoch;
  ap->version = moved.version;
  snprintf(ap->reason, sizeof ap->reason, "%s", ROUTE_REASON_REVERTED);
  advance(w, e, moved.revert_at_ms + 900000 - w->now);
  size_t from = w->n_rec;
  world_link_up(w, e, "hubei");
  world_ack(w, e, 0, NULL);
  world_tick(w, e, 200);
  world_flush(w);

  const world_rec_t *x[4];
  assert_int_equal(route_entries(w, from, "hubei", x, 4), 2);
  char at[120], rev[64], ver[32];
  snprintf(rev, sizeof rev, "\"reverted_at_ms\":%lld", (long long)moved.revert_at_ms);
  /* 12:30 in Asia/Shanghai: WORLD_T0_MS is 12:00 there. */
  snprintf(at, sizeof at, "2020-01-23T12:30:00+08:00 (Asia/Shanghai business time)");
  const char *home[] = {"\"cause\":\"cutover-end\"",
                        "\"before\":\"shaanxi\"",
                        "\"after\":\"home\"",
                        rev,
                        at,
                        "had not reached it (its link was down); recorded late, when the agent "
                        "connected again"};
  has_words(x[0], home, sizeof home / sizeof *home);
  /* No directive carried the return: no version to join an ack to. */
  assert_null(strstr(x[0]->detail, "\"version\""));
  snprintf(ver, sizeof ver, "\"version\":%llu", (unsigned long long)ext_version);
  const char *back[] = {"\"cause\":\"cutover\"", "\"before\":\"home\"", "\"after\":\"shaanxi\"",
                        ver, "sent when its agent connected"};
  has_words(x[1], back, sizeof back / sizeof *back);
  assert_int_equal(engine_route_changes(e, i, ROUTE_CAUSE_CUTOVER_END), 1);
  /* The move back is the extended directive, applied. */
  assert_int_equal(w->applied[i].version, ext_version);
  assert_int_equal(route_share_of(&w->applied[i], "shaanxi"), 1000);

  /* The link drops and comes back at its new route: nothing more. */
  world_link_down(w, e, "hubei");
  world_tick(w, e, 1000);
  world_link_up(w, e, "hubei");
  world_tick(w, e, 1000);
  assert_int_equal(route_entries(w, from, "hubei", x, 4), 2);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* Not extended: the cutover expires here while hubei's link is down, and
 * its expiry and route entries say the return; the Hello that follows
 * adds nothing. */
static void test_a_return_its_expiry_records_gets_no_second_entry(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_in(w, "");
  world_cutover_for(w, e, 9, "hubei", "shaanxi", 1800000);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  size_t i = world_index(w, "hubei");
  route_t moved = engine_site_dir(e, i)->acked;
  world_link_down(w, e, "hubei");
  route_t *ap = &w->applied[i];
  route_home(ap, "hubei");
  ap->epoch = moved.epoch;
  ap->version = moved.version;
  snprintf(ap->reason, sizeof ap->reason, "%s", ROUTE_REASON_REVERTED);
  size_t from = w->n_rec;
  advance(w, e, moved.revert_at_ms + 900000 - w->now);
  world_link_up(w, e, "hubei");
  world_ack(w, e, 0, NULL);
  world_tick(w, e, 200);
  world_flush(w);
  const world_rec_t *x[4];
  assert_int_equal(route_entries(w, from, "hubei", x, 4), 1);
  assert_non_null(strstr(x[0]->detail, "\"cause\":\"cutover-end\""));
  assert_int_equal(route_share_of(&w->applied[i], "hubei"), 1000);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* The engine says its own times (an expiry's) in the operations room's
 * zone and names it; with none configured, in UTC, named so. Before,
 * they were UTC ("...Z") while nircctl shows the rest in its zone. */
static void test_an_expiry_is_said_in_the_operators_zone(void **state) {
  (void)state;
  const char *zones[] = {"Asia/Shanghai", ""};
  const char *want[] = {"expired at 2020-01-23T12:01:00+08:00 (Asia/Shanghai business time)",
                        "expired at 2020-01-23T04:01:00Z (UTC business time)"};
  for (size_t z = 0; z < 2; z++) {
    world_t *w = world_new();
    engine_t *e = leading_in(w, zones[z]);
    world_cutover_for(w, e, 9, "hubei", "shaanxi", 60000);
    world_ack(w, e, 0, NULL);
    world_flush(w);
    for (int k = 0; k < 400 && world_count_rec(w, ENGINE_REC_AUDIT, "expire") == 0; k++)
      world_tick(w, e, 200);
    const world_rec_t *x = NULL;
    for (size_t k = 0; k < w->n_rec; k++)
      if (w->rec[k].kind == ENGINE_REC_AUDIT && strcmp(w->rec[k].action, "expire") == 0)
        x = &w->rec[k];
    assert_non_null(x);
    if (!strstr(x->detail, want[z])) fail_msg("no '%s' in %s", want[z], x->detail);
    world_flush(w);
    engine_free(e);
    world_free(w);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_return_by_a_revert_at_the_cutover_moved_on_from_is_recorded),
      cmocka_unit_test(test_a_return_its_expiry_records_gets_no_second_entry),
      cmocka_unit_test(test_an_expiry_is_said_in_the_operators_zone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
