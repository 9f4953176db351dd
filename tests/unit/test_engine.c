/* Unit tests of the routing engine (controller/routing/engine*.c) driven
 * without a loop, a socket or a database: the test is the engine's world.
 * It implements engine_io_t with arrays (directives sent, replies, stored
 * records), moves both clocks by hand, plays the agents' acks, and keeps
 * the rules the engine stored the way PostgreSQL would, so a second engine
 * can take over from them as a new leader does. */
#include "engine.h"
#include "err.h"
#include "log.h"
#include "route.h"
#include "rules.h"
#include "sites.h"
#include "util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* 2020-01-23 12:00 in Asia/Shanghai (04:00 UTC), the day Wuhan closed. */
#define T0_MS 1579752000000LL
#define W_MAX 256

typedef struct {
  size_t site;
  route_t route;
} w_sent_t;

typedef struct {
  engine_rec_kind_t kind;
  char action[48], site[32], detail[512];
} w_rec_t;

typedef struct {
  uint64_t request_id;
  int ok;
  Nirc__OperatorReply__BodyCase body;
  Nirc__ErrorCode code;
  uint32_t applied, failed;
  char msg[512];
} w_reply_t;

/* The world around one engine; the rule tables survive a leader change. */
typedef struct {
  uint64_t mono;
  int64_t now;
  bool leading;
  sites_t *sites;
  w_sent_t sent[W_MAX];
  size_t n_sent;
  w_rec_t rec[W_MAX];
  size_t n_rec;
  w_reply_t rep[32];
  size_t n_rep;
  size_t n_progress;
  /* Stores complete later, as the database would: w_flush runs them. */
  struct {
    engine_stored_cb done;
    void *arg;
  } pending[W_MAX];
  size_t n_pending;
  /* The rule tables as PostgreSQL keeps them. */
  cutover_t cut[16];
  size_t n_cut;
  schedule_t sch[16];
  size_t n_sch;
  uint64_t max_id;
} world_t;

/* ---- engine_io_t over the world ---- */

static uint64_t w_mono(void *ctx) {
  return ((world_t *)ctx)->mono;
}
static int64_t w_now(void *ctx) {
  return ((world_t *)ctx)->now;
}
static bool w_may_issue(void *ctx) {
  return ((world_t *)ctx)->leading;
}

static void w_directive(void *ctx, size_t site, const Nirc__Directive *d) {
  world_t *w = ctx;
  char err[128];
  assert_true(w->n_sent < W_MAX);
  w_sent_t *s = &w->sent[w->n_sent++];
  s->site = site;
  assert_int_equal(route_from_directive(d, &s->route, err, sizeof err), 0);
}

static void w_reply(void *ctx, void *client, const Nirc__OperatorReply *r) {
  world_t *w = ctx;
  assert_non_null(client);
  assert_true(w->n_rep < 32);
  w_reply_t *x = &w->rep[w->n_rep++];
  memset(x, 0, sizeof *x);
  x->request_id = r->request_id;
  x->ok = r->ok;
  x->body = r->body_case;
  if (r->error) {
    x->code = r->error->code;
    nirc_strlcpy(x->msg, r->error->message ? r->error->message : "", sizeof x->msg);
  }
  if (r->body_case == NIRC__OPERATOR_REPLY__BODY_MOVE && r->move) {
    x->applied = r->move->applied;
    x->failed = r->move->failed;
  }
}

static void w_progress(void *ctx, void *client, const Nirc__Progress *p) {
  ((world_t *)ctx)->n_progress++;
}

static cutover_t *w_find_cut(world_t *w, uint64_t id) {
  for (size_t k = 0; k < w->n_cut; k++)
    if (w->cut[k].id == id) return &w->cut[k];
  return NULL;
}

static int w_store(void *ctx, const engine_rec_t *r, engine_stored_cb done, void *arg) {
  world_t *w = ctx;
  assert_true(w->n_rec < W_MAX && w->n_pending < W_MAX);
  assert_true(r->at_ms == w->now); /* records carry the business time */
  w_rec_t *x = &w->rec[w->n_rec++];
  memset(x, 0, sizeof *x);
  x->kind = r->kind;
  nirc_strlcpy(x->action, r->action ? r->action : "", sizeof x->action);
  nirc_strlcpy(x->site, r->site ? r->site : (r->target ? r->target : ""), sizeof x->site);
  nirc_strlcpy(x->detail, r->detail ? r->detail : "", sizeof x->detail);
  switch (r->kind) {
  case ENGINE_REC_CUTOVER_NEW:
    w->cut[w->n_cut++] = *r->cutover;
    if (r->cutover->id > w->max_id) w->max_id = r->cutover->id;
    break;
  case ENGINE_REC_CUTOVER_SOURCES:
    w_find_cut(w, r->cutover->id)->sources = r->cutover->sources;
    break;
  case ENGINE_REC_CUTOVER_END: w_find_cut(w, r->id)->state = r->cutover_state; break;
  case ENGINE_REC_SCHEDULE_NEW:
    w->sch[w->n_sch++] = *r->schedule;
    if (r->schedule->id > w->max_id) w->max_id = r->schedule->id;
    break;
  default: break;
  }
  if (done) {
    w->pending[w->n_pending].done = done;
    w->pending[w->n_pending++].arg = arg;
  }
  return 0;
}

/* The database commits everything queued so far. */
static void w_flush(world_t *w) {
  size_t n = w->n_pending;
  w->n_pending = 0;
  for (size_t k = 0; k < n; k++)
    w->pending[k].done(w->pending[k].arg, 0, NULL);
}

static engine_t *w_engine(world_t *w) {
  engine_io_t io = {.ctx = w,
                    .mono_ms = w_mono,
                    .now_ms = w_now,
                    .may_issue = w_may_issue,
                    .send_directive = w_directive,
                    .send_reply = w_reply,
                    .send_progress = w_progress,
                    .store = w_store};
  engine_opts_t o = {.ack_timeout_ms = 2000,
                     .max_resends = 3,
                     .verify_window_ms = 10000,
                     .sl_target = 0.8,
                     .sl_threshold_s = 20};
  engine_t *e = NULL;
  assert_int_equal(engine_new(&io, w->sites, &o, &e), 0);
  return e;
}

/* ---- the sites ---- */

static const char *const w_sources[] = {"hubei", "guangdong", "hainan", "hunan"};
static const char *const w_hubs[] = {"shaanxi", "henan", "sichuan"};

/* A site answers: one call a minute, `agents` staffed, 3-minute calls. */
static void w_report(world_t *w, site_t *s, unsigned agents) {
  Nirc__LoadReport r = NIRC__LOAD_REPORT__INIT;
  r.site = s->slug;
  r.timestamp_ms = w->now;
  r.interval_ms = 60000;
  r.calls_offered = 1;
  r.calls_answered = 1;
  r.answered_within_threshold = 1;
  r.sl_threshold_s = 20;
  r.agents_logged_in = agents;
  r.agents_ready = agents;
  r.aht_ms = 180000;
  site_minute_t flushed;
  sites_on_report(s, &r, w->now, w->now, &flushed);
}

static sites_t *w_sites_new(world_t *w) {
  sites_t *s = calloc(1, sizeof *s);
  assert_non_null(s);
  sites_init(s, 3000);
  for (size_t k = 0; k < 4; k++)
    assert_int_equal(sites_add(s, w_sources[k], w_sources[k], "", false), 0);
  for (size_t k = 0; k < 3; k++)
    assert_int_equal(sites_add(s, w_hubs[k], w_hubs[k], "", true), 0);
  return s;
}

static size_t w_index(world_t *w, const char *slug) {
  site_t *s = sites_find(w->sites, slug);
  assert_non_null(s);
  return (size_t)(s - w->sites->v);
}

/* Every site connects, says Hello (routing as `applied` says, or home)
 * and reports; a site's conn only needs to be non-NULL here. */
static void w_connect_all(world_t *w, engine_t *e, const route_t *applied) {
  for (size_t i = 0; i < w->sites->n; i++) {
    site_t *s = &w->sites->v[i];
    sites_on_hello(s, w->now);
    s->conn = w;
    w_report(w, s, s->is_hub ? 30 : 5);
    engine_on_hello(e, i, applied ? &applied[i] : NULL);
  }
}

static void w_init(world_t *w) {
  memset(w, 0, sizeof *w);
  log_set_level(LOG_LVL_ERROR);
  w->mono = 1000;
  w->now = T0_MS;
  w->leading = true;
  w->sites = w_sites_new(w);
}

static void w_done(world_t *w, engine_t *e) {
  engine_free(e);
  sites_free(w->sites);
  free(w->sites);
}

/* The newest directive sent to `slug`, or NULL. */
static const route_t *w_last(world_t *w, const char *slug) {
  size_t i = w_index(w, slug);
  for (size_t k = w->n_sent; k-- > 0;)
    if (w->sent[k].site == i) return &w->sent[k].route;
  return NULL;
}

static size_t w_count_rec(world_t *w, engine_rec_kind_t kind, const char *action) {
  size_t n = 0;
  for (size_t k = 0; k < w->n_rec; k++)
    if (w->rec[k].kind == kind && (!action || strcmp(w->rec[k].action, action) == 0)) n++;
  return n;
}

/* Each site answers the newest directive it was sent, from `from` on. */
static void w_ack(world_t *w, engine_t *e, size_t from, const char *fail_slug) {
  size_t upto = w->n_sent;
  for (size_t k = from; k < upto; k++) {
    bool newest = true;
    for (size_t j = k + 1; j < upto; j++)
      newest &= w->sent[j].site != w->sent[k].site;
    if (!newest) continue;
    const char *slug = w->sites->v[w->sent[k].site].slug;
    Nirc__DirectiveAck a = NIRC__DIRECTIVE_ACK__INIT;
    a.site = (char *)slug;
    a.epoch = w->sent[k].route.epoch;
    a.version = w->sent[k].route.version;
    bool fail = fail_slug && strcmp(slug, fail_slug) == 0;
    a.result = fail ? NIRC__ACK_RESULT__ACK_RESULT_FAILED : NIRC__ACK_RESULT__ACK_RESULT_APPLIED;
    a.detail = fail ? "pbx refused the route" : "ok";
    w->mono += 5;
    engine_on_ack(e, w->sent[k].site, &a);
  }
}

static void w_tick(world_t *w, engine_t *e, uint64_t ms) {
  w->mono += ms;
  w->now += (int64_t)ms;
  engine_tick(e);
}

static void w_cutover(world_t *w, engine_t *e, uint64_t rid, const char *const *src, size_t ns,
                      const char *const *hubs, size_t nh, uint32_t share) {
  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  c.sources = (char **)src;
  c.n_sources = ns;
  c.hubs = (char **)hubs;
  c.n_hubs = nh;
  c.reason = "test";
  c.share_permille = share;
  engine_req_t rq = {
      .client = w, .request_id = rid, .operator_name = "operator:alice", .label = "test"};
  engine_op_cutover(e, &rq, &c);
}

/* ---- tests ---- */

/* A cutover is sent to the source and its hub, acknowledged, audited and
 * answered only once the audit record is durable. */
static void test_cutover_applied_and_answered(void **state) {
  world_t w;
  w_init(&w);
  engine_t *e = w_engine(&w);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  w_connect_all(&w, e, NULL);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  w_cutover(&w, e, 41, src, 1, hub, 1, 0);
  assert_int_equal(w.n_sent, 2);
  assert_int_equal(route_share_of(w_last(&w, "hubei"), "shaanxi"), 1000);
  assert_int_equal(w_last(&w, "hubei")->epoch, 5);
  assert_int_equal(w_last(&w, "shaanxi")->n_inbound, 1);
  assert_int_equal(w_count_rec(&w, ENGINE_REC_CUTOVER_NEW, NULL), 1);
  assert_int_equal(w_count_rec(&w, ENGINE_REC_DIRECTIVE, NULL), 2);
  assert_int_equal(w_count_rec(&w, ENGINE_REC_AUDIT, "cutover"), 1);
  w_ack(&w, e, 0, NULL);
  /* Both applied, but the audit row is not durable yet: no answer. */
  assert_int_equal(w.n_rep, 0);
  w_flush(&w);
  assert_int_equal(w.n_rep, 1);
  assert_int_equal(w.rep[0].request_id, 41);
  assert_true(w.rep[0].ok);
  assert_int_equal(w.rep[0].body, NIRC__OPERATOR_REPLY__BODY_MOVE);
  assert_int_equal(w.rep[0].applied, 2);
  assert_int_equal(w.rep[0].failed, 0);
  assert_int_equal(w.rep[0].code, 0);
  assert_int_equal(w_count_rec(&w, ENGINE_REC_ACK, NULL), 2);
  assert_true(route_same(&engine_site_dir(e, w_index(&w, "hubei"))->acked, w_last(&w, "hubei")));
  w_done(&w, e);
}

/* A schedule moves its sources in waves of wave_size: the next wave starts
 * only once the previous one is acknowledged and verified. */
static void test_schedule_moves_in_waves(void **state) {
  world_t w;
  w_init(&w);
  engine_t *e = w_engine(&w);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  w_connect_all(&w, e, NULL);
  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  sp.name = "night";
  sp.sources = (char **)w_sources;
  sp.n_sources = 4;
  char *hub[] = {"shaanxi"};
  sp.hubs = hub;
  sp.n_hubs = 1;
  sp.start = "00:00";
  sp.end = "23:59";
  sp.wave_size = 2;
  Nirc__ScheduleRequest rq = NIRC__SCHEDULE_REQUEST__INIT;
  rq.op = NIRC__RULE_OP__RULE_OP_ADD;
  rq.spec = &sp;
  engine_req_t r = {.client = &w, .request_id = 7, .operator_name = "admin:bob", .label = "t"};
  engine_op_schedule(e, &r, &rq);
  assert_int_equal(w.n_rep, 1);
  assert_true(w.rep[0].ok);
  assert_int_equal(w.n_sch, 1);

  w_tick(&w, e, 200);
  unsigned away = 0;
  for (size_t k = 0; k < 4; k++)
    away += w_last(&w, w_sources[k]) != NULL;
  assert_int_equal(away, 2); /* the first wave */
  assert_int_equal(w_count_rec(&w, ENGINE_REC_AUDIT, "move"), 1);
  size_t seen = w.n_sent;
  w_ack(&w, e, 0, NULL);
  w_tick(&w, e, 200);
  assert_int_equal(w.n_sent, seen); /* acknowledged, not yet verified */
  w_tick(&w, e, 10000);
  away = 0;
  for (size_t k = 0; k < 4; k++)
    away += w_last(&w, w_sources[k]) != NULL;
  assert_int_equal(away, 4); /* the second wave, after the window */
  assert_int_equal(w_count_rec(&w, ENGINE_REC_AUDIT, "move"), 2);
  w_done(&w, e);
}

/* A source whose PBX fails the move goes home, is audited as a rollback,
 * and the operator hears one applied and one failed. */
static void test_failed_move_rolls_back(void **state) {
  world_t w;
  w_init(&w);
  engine_t *e = w_engine(&w);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  w_connect_all(&w, e, NULL);
  const char *src[] = {"guangdong", "hainan"}, *hub[] = {"sichuan"};
  w_cutover(&w, e, 9, src, 2, hub, 1, 0);
  assert_int_equal(route_share_of(w_last(&w, "guangdong"), "sichuan"), 1000);
  w_ack(&w, e, 0, "guangdong");
  w_flush(&w);
  assert_int_equal(w.n_rep, 1);
  assert_int_equal(w.rep[0].applied, 2); /* hainan and the hub */
  assert_int_equal(w.rep[0].failed, 1);
  assert_int_equal(w_count_rec(&w, ENGINE_REC_AUDIT, "rollback"), 1);
  assert_int_equal(w_count_rec(&w, ENGINE_REC_EVENT, "directive_failed"), 1);
  w_tick(&w, e, 200);
  assert_int_equal(route_share_of(w_last(&w, "guangdong"), "guangdong"), 1000);
  assert_int_equal(route_share_of(w_last(&w, "hainan"), "sichuan"), 1000);
  assert_true(engine_site_dir(e, w_index(&w, "guangdong"))->excluded_rule != 0);
  w_done(&w, e);
}

/* The first hub goes offline: its sources move to the next hub of the
 * rule, and the lost hub is told nothing (it has no link). */
static void test_hub_loss_moves_to_next_hub(void **state) {
  world_t w;
  w_init(&w);
  engine_t *e = w_engine(&w);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  w_connect_all(&w, e, NULL);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi", "henan"};
  w_cutover(&w, e, 3, src, 1, hub, 2, 0);
  assert_int_equal(route_share_of(w_last(&w, "hubei"), "shaanxi"), 1000);
  w_ack(&w, e, 0, NULL);
  site_t *x = sites_find(w.sites, "shaanxi");
  sites_on_link_down(x, w.now);
  x->conn = NULL;
  engine_on_link_down(e, w_index(&w, "shaanxi"));
  size_t before = w.n_sent;
  w_tick(&w, e, 200);
  assert_int_equal(route_share_of(w_last(&w, "hubei"), "henan"), 1000);
  assert_int_equal(route_share_of(w_last(&w, "henan"), "henan"), 1000);
  assert_int_equal(w_last(&w, "henan")->n_inbound, 1);
  for (size_t k = before; k < w.n_sent; k++)
    assert_int_not_equal(w.sent[k].site, w_index(&w, "shaanxi"));
  w_done(&w, e);
}

/* A new leader loads the rules the old one stored, hears from the agents
 * what they route by, and routes exactly as the old leader did: the same
 * targets, and not one directive. Without the stored rules it would send
 * the sources home, which is what makes this test able to fail. */
static void test_failover_reload_routes_the_same(void **state) {
  world_t w;
  w_init(&w);
  engine_t *a = w_engine(&w);
  assert_int_equal(engine_load_rules(a, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(a, 5000);
  w_connect_all(&w, a, NULL);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  w_cutover(&w, a, 1, src, 1, hub, 1, 300);
  const char *src2[] = {"guangdong", "hainan"}, *hub2[] = {"sichuan", "henan"};
  w_cutover(&w, a, 2, src2, 2, hub2, 2, 0);
  w_ack(&w, a, 0, NULL);
  w_flush(&w);
  assert_int_equal(route_share_of(w_last(&w, "hubei"), "shaanxi"), 300);
  size_t n = w.sites->n;
  route_t *acked = calloc(n, sizeof *acked);
  assert_non_null(acked);
  for (size_t i = 0; i < n; i++)
    acked[i] = engine_site_dir(a, i)->acked;
  engine_free(a); /* the old leader is gone */

  for (int with_rules = 1; with_rules >= 0; with_rules--) {
    for (size_t i = 0; i < n; i++) {
      sites_on_link_down(&w.sites->v[i], w.now);
      w.sites->v[i].conn = NULL;
    }
    w.n_sent = 0;
    engine_t *b = w_engine(&w);
    assert_int_equal(engine_load_rules(b, 6, w.cut, with_rules ? w.n_cut : 0, w.sch,
                                       with_rules ? w.n_sch : 0, NULL, 0, w.max_id),
                     0);
    engine_start_leading(b, 5000);
    w_connect_all(&w, b, acked);
    w_tick(&w, b, 200);
    w_tick(&w, b, 200);
    if (with_rules) {
      assert_int_equal(w.n_sent, 0);
      for (size_t i = 0; i < n; i++)
        assert_true(route_same(&engine_site_dir(b, i)->target, &acked[i]));
    } else {
      assert_true(w.n_sent > 0);
      assert_int_equal(route_share_of(w_last(&w, "hubei"), "hubei"), 1000);
    }
    engine_free(b);
  }
  free(acked);
  sites_free(w.sites);
  free(w.sites);
}

/* A standby, or a leader whose lease is unconfirmed, sends nothing. */
static void test_no_directive_without_leadership(void **state) {
  world_t w;
  w_init(&w);
  engine_t *e = w_engine(&w);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  w_connect_all(&w, e, NULL);
  w.leading = false;
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  w_cutover(&w, e, 5, src, 1, hub, 1, 0);
  assert_int_equal(w.n_sent, 0);
  assert_int_equal(w_count_rec(&w, ENGINE_REC_DIRECTIVE, NULL), 0);
  w_done(&w, e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cutover_applied_and_answered),
      cmocka_unit_test(test_schedule_moves_in_waves),
      cmocka_unit_test(test_failed_move_rolls_back),
      cmocka_unit_test(test_hub_loss_moves_to_next_hub),
      cmocka_unit_test(test_failover_reload_routes_the_same),
      cmocka_unit_test(test_no_directive_without_leadership),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
