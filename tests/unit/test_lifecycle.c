/* Unit tests of the site lifecycle while nircd runs (issue 15): the
 * registry grows and keeps every index (a removed site stays where it was),
 * the engine takes new sites in (sans-I/O: the change is an input call),
 * removal is refused while the site is in use with what to change first,
 * and every change is stored once with its audit entry and answered when
 * durable. Driven by tests/unit/support/world.c, no loop and no database. */
#include "engine.h"
#include "err.h"
#include "route.h"
#include "sites.h"
#include "util.h"
#include "support/world.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
  unsigned calls, moved, wrong;
  const site_t *last_v;
} grow_seen_t;

/* The owner is told `moved` exactly when the array moved (realloc may
 * also grow it in place). */
static void on_grow(void *arg, sites_t *s, bool moved) {
  grow_seen_t *g = arg;
  g->calls++;
  g->moved += moved;
  g->wrong += moved != (g->last_v && g->last_v != s->v);
  g->last_v = s->v;
}

/* Indexes never shift: 100 sites added one by one (the array moves
 * several times and the owner is told each time), one removed in the
 * middle and added again keeps its index and its configured capacity. */
static void test_registry_grows_and_keeps_indexes(void **state) {
  (void)state;
  sites_t s;
  sites_init(&s, 3000);
  grow_seen_t g = {0};
  s.on_grow = on_grow;
  s.on_grow_arg = &g;
  char slug[32];
  for (int i = 0; i < 100; i++) {
    snprintf(slug, sizeof slug, "site-%03d", i);
    assert_int_equal(sites_add(&s, slug, slug, "", i % 10 == 0), 0);
  }
  assert_int_equal(g.calls, 100);
  assert_int_equal(g.wrong, 0); /* grown 32 -> 64 -> 128, moved or in place */
  site_t *mid = sites_find(&s, "site-050");
  assert_int_equal(mid - s.v, 50);
  mid->cap.seats = 40;
  mid->cap.configured = true;
  assert_int_equal(sites_remove(mid, 1234, "admin:alice"), 0);
  assert_int_equal(sites_remove(mid, 1235, "admin:alice"), NIRC_EINVAL);
  assert_null(sites_find_live(&s, "site-050"));
  assert_ptr_equal(sites_find(&s, "site-050"), mid); /* still there, for its history */
  assert_int_equal(mid->life, SITE_REMOVED);
  assert_int_equal(mid->removed_ms, 1234);
  assert_string_equal(mid->removed_by, "admin:alice");
  assert_int_equal(sites_live(&s), 99);
  /* Adding the slug again is refused by sites_add (it exists): revive. */
  assert_int_equal(sites_add(&s, "site-050", "x", "", false), NIRC_EEXISTS);
  assert_int_equal(sites_revive(mid, "Back", "", true), 0);
  assert_int_equal(sites_revive(mid, "Back", "", true), NIRC_EINVAL);
  assert_int_equal(sites_find_live(&s, "site-050") - s.v, 50);
  assert_int_equal(mid->state, SITE_NEVER_SEEN);
  assert_true(mid->is_hub);
  assert_int_equal(mid->cap.seats, 40);
  assert_string_equal(mid->route[0].site, "site-050");
  assert_int_equal(sites_live(&s), 100);
  for (int i = 0; i < 100; i++) {
    snprintf(slug, sizeof slug, "site-%03d", i);
    assert_int_equal(sites_find(&s, slug) - s.v, i);
  }
  sites_free(&s);
}

static engine_t *leading_engine(world_t *w) {
  engine_t *e = world_engine(w);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  world_connect_all(w, e, NULL);
  return e;
}

static void site_op(world_t *w, engine_t *e, uint64_t rid, Nirc__SiteChangeRequest *rq) {
  engine_req_t r = {
      .client = w, .request_id = rid, .operator_name = "operator:alice", .label = "t"};
  engine_op_site_change(e, &r, rq);
}

static Nirc__SiteChangeRequest req(const char *action, const char *site) {
  Nirc__SiteChangeRequest r = NIRC__SITE_CHANGE_REQUEST__INIT;
  r.action = (char *)action;
  r.site = (char *)site;
  return r;
}

/* The last reply: its code and message. */
static const world_reply_t *last_reply(world_t *w) {
  assert_true(w->n_rep > 0);
  return &w->rep[w->n_rep - 1];
}

/* A hub added while leading: stored once with its audit entry, answered
 * only once durable, in the engine at the next index (nothing shifted),
 * and a cutover may name it at once. */
static void test_add_while_leading(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_engine(w);
  size_t before = w->sites->n;
  Nirc__SiteChangeRequest r = req("add", "xizang");
  r.name_en = "Tibet";
  r.has_hub = 1;
  r.hub = 1;
  r.seats = 30;
  site_op(w, e, 9, &r);
  assert_int_equal(w->n_rep, 0); /* not durable yet */
  assert_int_equal(world_count_rec(w, ENGINE_REC_SITE, NULL), 1);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "site-add"), 1);
  world_flush(w);
  assert_int_equal(w->n_rep, 1);
  assert_true(w->rep[0].ok);
  assert_int_equal(w->rep[0].body, NIRC__OPERATOR_REPLY__BODY_SITE_CHANGE);
  assert_int_equal(w->sites->n, before + 1);
  size_t x = world_index(w, "xizang");
  assert_int_equal(x, before);
  assert_int_equal(world_index(w, "hubei"), 0); /* nothing shifted */
  const site_dir_t *d = engine_site_dir(e, x);
  assert_non_null(d);
  assert_int_equal(route_share_of(&d->target, "xizang"), 1000);
  assert_int_equal(w->sites->v[x].cap.seats, 30);
  assert_int_equal(w->sites->v[x].change_pending, 0); /* durable: snapshots speak again */
  /* Named by a cutover at once (forced: the new hub has reported nothing). */
  const char *src[] = {"hubei"}, *hub[] = {"xizang"};
  world_cutover(w, e, 10, src, 1, hub, 1, 0);
  assert_true(w->rep[w->n_rep - 1].ok || w->rep[w->n_rep - 1].code != 0);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* Input errors name the fix and change nothing. */
static void test_invalid_changes_refused(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_engine(w);
  size_t n = w->sites->n;
  Nirc__SiteChangeRequest r = req("add", "Bad_Slug");
  r.name_en = "X";
  site_op(w, e, 1, &r);
  assert_int_equal(last_reply(w)->code, NIRC__ERROR_CODE__ERROR_CODE_INVALID);
  assert_non_null(strstr(last_reply(w)->msg, "not a site slug"));
  r = req("add", "atlantis");
  site_op(w, e, 2, &r);
  assert_non_null(strstr(last_reply(w)->msg, "--name"));
  r = req("add", "atlantis");
  r.name_en = "Atlantis";
  r.roster = "25:00-08:00=3";
  site_op(w, e, 3, &r);
  assert_int_equal(last_reply(w)->code, NIRC__ERROR_CODE__ERROR_CODE_INVALID);
  r = req("add", "atlantis");
  r.name_en = "Atlantis";
  r.has_utc_offset = 1;
  r.utc_offset_min = 900;
  site_op(w, e, 4, &r);
  assert_non_null(strstr(last_reply(w)->msg, "-840..840"));
  r = req("add", "hubei");
  r.name_en = "Hubei";
  site_op(w, e, 5, &r);
  assert_int_equal(last_reply(w)->code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  assert_non_null(strstr(last_reply(w)->msg, "nircctl site set hubei"));
  r = req("set", "nowhere");
  r.has_hub = 1;
  site_op(w, e, 6, &r);
  assert_non_null(strstr(last_reply(w)->msg, "no site nowhere"));
  r = req("rename", "hubei");
  site_op(w, e, 7, &r);
  assert_int_equal(last_reply(w)->code, NIRC__ERROR_CODE__ERROR_CODE_INVALID);
  assert_int_equal(w->sites->n, n);
  assert_int_equal(world_count_rec(w, ENGINE_REC_SITE, NULL), 0);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A removal is refused while a cutover moves the site or a hub takes its
 * calls, naming each thing to change; once they are gone it goes through,
 * the site keeps its index as REMOVED, and no rule may name it any more. */
static void test_remove_refused_while_in_use_then_removed(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_engine(w);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 1, src, 1, hub, 1, 0);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  Nirc__SiteChangeRequest r = req("remove", "hubei");
  site_op(w, e, 2, &r);
  const world_reply_t *rp = last_reply(w);
  assert_int_equal(rp->code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  assert_non_null(strstr(rp->msg, "site hubei is in use; change this first"));
  assert_non_null(strstr(rp->msg, "it routes"));
  assert_non_null(strstr(rp->msg, "names it as a source"));
  r = req("remove", "shaanxi");
  site_op(w, e, 3, &r);
  rp = last_reply(w);
  assert_non_null(strstr(rp->msg, "takes calls of hubei"));
  assert_non_null(strstr(rp->msg, "names it as a hub"));
  /* A hub in use may not become a source either. */
  r = req("set", "shaanxi");
  r.has_hub = 1;
  r.hub = 0;
  site_op(w, e, 4, &r);
  assert_non_null(strstr(last_reply(w)->msg, "used as a hub"));
  assert_int_equal(world_count_rec(w, ENGINE_REC_SITE, NULL), 0);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "site-remove-refused"), 2);

  /* hainan is used by nothing: removed. */
  size_t i = world_index(w, "hainan");
  r = req("remove", "hainan");
  r.note = "closed";
  site_op(w, e, 5, &r);
  world_flush(w);
  rp = last_reply(w);
  assert_true(rp->ok);
  assert_int_equal(rp->body, NIRC__OPERATOR_REPLY__BODY_SITE_CHANGE);
  assert_true(rp->full->site_change->removed);
  assert_string_equal(rp->full->site_change->removed_by, "operator:alice");
  assert_int_equal(w->sites->v[i].life, SITE_REMOVED);
  assert_int_equal(world_index(w, "hainan"), i); /* same index */
  assert_int_equal(world_count_rec(w, ENGINE_REC_SITE, NULL), 1);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "site-remove"), 1);
  /* Gone for rules: a cutover naming it is an unknown site. */
  const char *src2[] = {"hainan"};
  size_t nrep = w->n_rep;
  world_cutover(w, e, 6, src2, 1, hub, 1, 0);
  assert_true(w->n_rep > nrep);
  assert_int_equal(last_reply(w)->code, NIRC__ERROR_CODE__ERROR_CODE_INVALID);
  /* The engine keeps routing the others: ticks with a removed site are fine. */
  world_tick(w, e, 1000);
  /* Added again: same index, live, home. */
  r = req("add", "hainan");
  r.name_en = "Hainan";
  r.has_hub = 1;
  site_op(w, e, 7, &r);
  world_flush(w);
  assert_true(last_reply(w)->ok);
  assert_int_equal(w->sites->v[i].life, SITE_LIVE);
  assert_int_equal(world_index(w, "hainan"), i);
  assert_int_equal(route_share_of(&engine_site_dir(e, i)->target, "hainan"), 1000);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A hub that a source not heard by this leader may still send calls to is
 * in use: hubei's last directive on record (epoch 5's cutover to shaanxi)
 * is all this leader of epoch 6 knows of hubei's route until its Hello.
 * Removing shaanxi (or making it a source) is refused naming hubei and
 * the fix; once hubei connects saying it is home, shaanxi may go. */
static void test_remove_refused_while_unheard_source_may_send_to_it(void **state) {
  (void)state;
  world_t *w = world_new();
  size_t i = world_index(w, "hubei");
  route_t away;
  route_home(&away, "hubei");
  snprintf(away.share[0].site, sizeof away.share[0].site, "shaanxi");
  away.epoch = 5;
  away.version = 3;
  engine_last_directive_t ld = {.epoch = 5,
                                .version = 3,
                                .route = away,
                                .rule_kind = RULE_CUTOVER,
                                .rule_id = 9,
                                .newest = true};
  snprintf(ld.site, sizeof ld.site, "hubei");
  engine_t *e = world_engine(w);
  assert_int_equal(engine_load_rules(e, 6, NULL, 0, NULL, 0, NULL, 0, 10), 0);
  assert_int_equal(engine_load_last_directives(e, &ld, 1), 0);
  engine_start_leading(e, 5000);
  w->down[i] = true;
  world_connect_all(w, e, NULL);
  Nirc__SiteChangeRequest r = req("remove", "shaanxi");
  site_op(w, e, 1, &r);
  const world_reply_t *rp = last_reply(w);
  assert_int_equal(rp->code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  assert_non_null(strstr(rp->msg, "the last directive on record of hubei (not heard since"));
  assert_non_null(strstr(rp->msg, "start its agent"));
  r = req("set", "shaanxi");
  r.has_hub = 1;
  r.hub = 0;
  site_op(w, e, 2, &r);
  assert_non_null(strstr(last_reply(w)->msg, "the last directive on record of hubei"));
  /* A hub hubei's directive does not name is not held by it. */
  r = req("remove", "henan");
  site_op(w, e, 3, &r);
  world_flush(w);
  assert_true(last_reply(w)->ok);
  /* hubei connects, home: its route is known and sends nothing there. */
  w->down[i] = false;
  world_link_up(w, e, "hubei");
  world_ack(w, e, 0, NULL);
  world_flush(w);
  r = req("remove", "shaanxi");
  site_op(w, e, 4, &r);
  world_flush(w);
  assert_true(last_reply(w)->ok);
  engine_free(e);
  world_free(w);
}

/* A change the store cannot record is refused with nothing changed. */
static void test_add_refused_when_it_cannot_be_recorded(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = leading_engine(w);
  size_t n = w->sites->n;
  w->store_refuse = NIRC_EFULL;
  snprintf(w->store_why, sizeof w->store_why, "the journal is full");
  Nirc__SiteChangeRequest r = req("add", "atlantis");
  r.name_en = "Atlantis";
  site_op(w, e, 1, &r);
  assert_false(last_reply(w)->ok);
  assert_non_null(strstr(last_reply(w)->msg, "journal is full"));
  assert_int_equal(w->sites->n, n);
  assert_null(sites_find(w->sites, "atlantis"));
  world_flush(w);
  engine_free(e);
  world_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry_grows_and_keeps_indexes),
      cmocka_unit_test(test_add_while_leading),
      cmocka_unit_test(test_invalid_changes_refused),
      cmocka_unit_test(test_remove_refused_while_in_use_then_removed),
      cmocka_unit_test(test_remove_refused_while_unheard_source_may_send_to_it),
      cmocka_unit_test(test_add_refused_when_it_cannot_be_recorded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
