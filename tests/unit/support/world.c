#include "world.h"

#include "err.h"
#include "log.h"
#include "util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

const char *const world_sources[4] = {"hubei", "guangdong", "hainan", "hunan"};
const char *const world_hubs[3] = {"shaanxi", "henan", "sichuan"};

/* ---- engine_io_t over the world ---- */

static uint64_t world_io_mono(void *ctx) {
  return ((world_t *)ctx)->mono;
}
static int64_t world_io_now(void *ctx) {
  return ((world_t *)ctx)->now;
}
static int64_t world_io_wall(void *ctx) {
  return ((world_t *)ctx)->wall;
}
static bool world_io_may_issue(void *ctx) {
  return ((world_t *)ctx)->leading;
}

static void world_io_directive(void *ctx, size_t site, const Nirc__Directive *d) {
  world_t *w = ctx;
  char err[128];
  assert_true(w->n_sent < WORLD_MAX);
  world_sent_t *s = &w->sent[w->n_sent++];
  s->site = site;
  assert_int_equal(route_from_directive(d, &s->route, err, sizeof err), 0);
}

static void world_io_reply(void *ctx, void *client, const Nirc__OperatorReply *r) {
  world_t *w = ctx;
  assert_non_null(client);
  assert_true(w->n_rep < WORLD_MAX);
  world_reply_t *x = &w->rep[w->n_rep++];
  /* A test may empty the log (n_rep = 0): the slot's old copy goes. */
  if (x->full) nirc__operator_reply__free_unpacked(x->full, NULL);
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
    x->pending = r->move->pending;
  }
  /* A copy through the wire format, as nircctl would receive it. */
  size_t len = nirc__operator_reply__get_packed_size(r);
  uint8_t *buf = malloc(len ? len : 1);
  assert_non_null(buf);
  nirc__operator_reply__pack(r, buf);
  x->full = nirc__operator_reply__unpack(NULL, len, buf);
  free(buf);
  assert_non_null(x->full);
}

static void world_io_progress(void *ctx, void *client, const Nirc__Progress *p) {
  world_t *w = ctx;
  w->n_progress++;
  size_t used = strlen(w->progress);
  snprintf(w->progress + used, sizeof w->progress - used, "%s\n", p->line ? p->line : "");
}

static cutover_t *world_find_cut(world_t *w, uint64_t id) {
  for (size_t k = 0; k < w->n_cut; k++)
    if (w->cut[k].id == id) return &w->cut[k];
  fail_msg("the engine changed cutover %llu, which it never stored", (unsigned long long)id);
  return NULL;
}

static schedule_t *world_find_sch(world_t *w, uint64_t id) {
  for (size_t k = 0; k < w->n_sch; k++)
    if (w->sch[k].id == id) return &w->sch[k];
  fail_msg("the engine changed schedule %llu, which it never stored", (unsigned long long)id);
  return NULL;
}

/* Keeps the rule tables as the SQL of store/store.c changes them. */
static void world_keep_rules(world_t *w, const engine_rec_t *r) {
  switch (r->kind) {
  case ENGINE_REC_CUTOVER_NEW:
    assert_true(w->n_cut < sizeof w->cut / sizeof w->cut[0]);
    w->cut[w->n_cut++] = *r->cutover;
    if (r->cutover->id > w->max_id) w->max_id = r->cutover->id;
    break;
  case ENGINE_REC_CUTOVER_SOURCES:
    world_find_cut(w, r->cutover->id)->sources = r->cutover->sources;
    break;
  case ENGINE_REC_CUTOVER_END: world_find_cut(w, r->id)->state = r->cutover_state; break;
  case ENGINE_REC_CUTOVER_AMEND: {
    cutover_t *c = world_find_cut(w, r->cutover->id);
    c->hubs = r->cutover->hubs;
    c->share_permille = r->cutover->share_permille;
    c->expires_ms = r->cutover->expires_ms;
    break;
  }
  case ENGINE_REC_SCHEDULE_NEW:
    assert_true(w->n_sch < sizeof w->sch / sizeof w->sch[0]);
    w->sch[w->n_sch++] = *r->schedule;
    if (r->schedule->id > w->max_id) w->max_id = r->schedule->id;
    break;
  case ENGINE_REC_SCHEDULE_REMOVE: {
    schedule_t *s = world_find_sch(w, r->id);
    *s = w->sch[--w->n_sch];
    break;
  }
  case ENGINE_REC_SCHEDULE_ENABLE: world_find_sch(w, r->id)->enabled = r->enabled; break;
  case ENGINE_REC_SCHEDULE_CHANGE: {
    /* The row keeps its enabled flag (the enable record's), as the SQL. */
    schedule_t *s = world_find_sch(w, r->schedule->id);
    bool on = s->enabled;
    *s = *r->schedule;
    s->enabled = on;
    break;
  }
  case ENGINE_REC_OVERFLOW_NEW:
    assert_true(w->n_ovf < sizeof w->ovf / sizeof w->ovf[0]);
    memset(&w->ovf_state[w->n_ovf], 0, sizeof w->ovf_state[0]);
    w->ovf_state[w->n_ovf].rule_id = r->overflow->id;
    w->ovf[w->n_ovf++] = *r->overflow;
    if (r->overflow->id > w->max_id) w->max_id = r->overflow->id;
    break;
  case ENGINE_REC_OVERFLOW_CHANGE:
    for (size_t k = 0; k < w->n_ovf; k++)
      if (w->ovf[k].id == r->overflow->id) w->ovf[k] = *r->overflow; /* its state stays */
    break;
  case ENGINE_REC_OVERFLOW_REMOVE:
    for (size_t k = 0; k < w->n_ovf; k++)
      if (w->ovf[k].id == r->id) {
        w->ovf[k] = w->ovf[--w->n_ovf];
        w->ovf_state[k] = w->ovf_state[w->n_ovf];
      }
    break;
  case ENGINE_REC_OVERFLOW_STATE:
    for (size_t k = 0; k < w->n_ovf; k++)
      if (w->ovf[k].id == r->id)
        w->ovf_state[k] = (planner_overflow_state_t){.rule_id = r->id,
                                                     .engaged = r->enabled,
                                                     .since_ms = r->since_ms,
                                                     .permille = r->permille};
    break;
  default: break;
  }
}

static int world_io_store_ready(void *ctx, char *why, size_t whylen) {
  world_t *w = ctx;
  if (w->store_refuse) snprintf(why, whylen, "%s", w->store_why);
  return w->store_refuse;
}

static int world_io_store(void *ctx, const engine_rec_t *r, engine_stored_cb done, void *arg) {
  world_t *w = ctx;
  if (w->store_fail_in == 1) return w->store_fail_rc; /* this record is refused */
  if (w->store_fail_in > 1) w->store_fail_in--;
  assert_true(w->n_rec < WORLD_MAX && w->n_pending < WORLD_MAX);
  /* Records carry the business time and the real time of the event: now,
   * or as much earlier as an agent's word of when it happened says. */
  int64_t before = r->happened_ms && r->happened_ms < w->now ? w->now - r->happened_ms : 0;
  assert_true(r->at_ms == w->now - before);
  assert_true(r->wall_ms == w->wall - before);
  world_rec_t *x = &w->rec[w->n_rec++];
  memset(x, 0, sizeof *x);
  x->kind = r->kind;
  nirc_strlcpy(x->action, r->action ? r->action : "", sizeof x->action);
  nirc_strlcpy(x->site, r->site ? r->site : (r->target ? r->target : ""), sizeof x->site);
  nirc_strlcpy(x->detail, r->detail ? r->detail : "", sizeof x->detail);
  x->at_ms = r->at_ms;
  x->wall_ms = r->wall_ms;
  if (r->kind == ENGINE_REC_ALARM) x->alarm_event = r->alarm_event;
  world_keep_rules(w, r);
  if (w->store_next) return w->store_next(w->store_ctx, r, done, arg);
  if (done) {
    w->pending[w->n_pending].done = done;
    w->pending[w->n_pending++].arg = arg;
  }
  return 0;
}

void world_flush(world_t *w) {
  size_t n = w->n_pending;
  w->n_pending = 0;
  for (size_t k = 0; k < n; k++)
    w->pending[k].done(w->pending[k].arg, 0, NULL);
}

engine_opts_t world_opts(bool damped) {
  engine_opts_t o = {.ack_timeout_ms = 2000,
                     .max_resends = 3,
                     .verify_window_ms = 10000,
                     .sl_target = 0.8,
                     .sl_threshold_s = 20};
  if (damped) { /* nircd's defaults (controller/conf.c) */
    o.hub_grace_ms = 15000;
    o.hub_return_ms = 60000;
    o.keep_margin = o.enter_margin = 0.05;
    o.hold_s = 60;
    o.reentry_s = 120;
  }
  return o;
}

engine_t *world_engine(world_t *w) {
  engine_opts_t o = world_opts(false);
  return world_engine_with(w, &o);
}

engine_t *world_engine_with(world_t *w, const engine_opts_t *o) {
  engine_io_t io = {.ctx = w,
                    .mono_ms = world_io_mono,
                    .now_ms = world_io_now,
                    .wall_ms = world_io_wall,
                    .may_issue = world_io_may_issue,
                    .send_directive = world_io_directive,
                    .send_reply = world_io_reply,
                    .send_progress = world_io_progress,
                    .store = world_io_store,
                    .store_ready = world_io_store_ready};
  engine_t *e = NULL;
  assert_int_equal(engine_new(&io, w->sites, o, &e), 0);
  return e;
}

/* ---- the sites ---- */

/* One report of site s: one call a minute of 3 minutes, `agents` staffed,
 * this queue and longest wait. */
static void world_send_report(world_t *w, site_t *s, unsigned agents, unsigned queue,
                              unsigned wait_ms) {
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
  r.calls_in_queue = queue;
  r.calls_in_queue_peak = queue;
  r.longest_wait_ms = wait_ms;
  site_minute_t flushed;
  sites_on_report(s, &r, w->now, w->now, &flushed);
}

void world_staff(world_t *w, const char *slug, unsigned agents) {
  site_t *s = sites_find(w->sites, slug);
  assert_non_null(s);
  w->agents[s - w->sites->v] = agents;
  world_send_report(w, s, agents, 0, 0);
}

void world_load(world_t *w, const char *slug, unsigned queue, unsigned wait_ms) {
  site_t *s = sites_find(w->sites, slug);
  assert_non_null(s);
  world_send_report(w, s, 10, queue, wait_ms);
}

world_t *world_new(void) {
  world_t *w = calloc(1, sizeof *w);
  assert_non_null(w);
  log_set_level(LOG_LVL_ERROR);
  w->mono = 1000;
  w->now = WORLD_T0_MS;
  w->wall = WORLD_WALL0_MS;
  w->leading = true;
  w->sites = calloc(1, sizeof *w->sites);
  assert_non_null(w->sites);
  sites_init(w->sites, 3000);
  for (size_t k = 0; k < 4; k++)
    assert_int_equal(sites_add(w->sites, world_sources[k], world_sources[k], "", false), 0);
  for (size_t k = 0; k < 3; k++)
    assert_int_equal(sites_add(w->sites, world_hubs[k], world_hubs[k], "", true), 0);
  assert_true(w->sites->n <= sizeof w->applied / sizeof w->applied[0]);
  for (size_t i = 0; i < w->sites->n; i++) {
    route_home(&w->applied[i], w->sites->v[i].slug);
    w->agents[i] = w->sites->v[i].is_hub ? 30 : 5;
  }
  return w;
}

void world_free(world_t *w) {
  for (size_t k = 0; k < WORLD_MAX; k++) /* n_rep may have been reset */
    if (w->rep[k].full) nirc__operator_reply__free_unpacked(w->rep[k].full, NULL);
  sites_free(w->sites);
  free(w->sites);
  free(w);
}

size_t world_index(world_t *w, const char *slug) {
  site_t *s = sites_find(w->sites, slug);
  assert_non_null(s);
  return (size_t)(s - w->sites->v);
}

static void world_hello(world_t *w, engine_t *e, size_t i, const route_t *applied) {
  site_t *s = &w->sites->v[i];
  sites_on_hello(s, w->now);
  s->conn = w; /* any non-NULL pointer: the link is up */
  w->down[i] = false;
  world_send_report(w, s, w->agents[i], 0, 0);
  engine_on_hello(e, i, applied, w->hello_unverified[i],
                  w->went_home[i].at_ms ? &w->went_home[i] : NULL);
}

void world_connect_all(world_t *w, engine_t *e, const route_t *applied) {
  for (size_t i = 0; i < w->sites->n; i++)
    if (!w->down[i]) world_hello(w, e, i, applied ? &applied[i] : NULL);
}

void world_link_down(world_t *w, engine_t *e, const char *slug) {
  size_t i = world_index(w, slug);
  site_t *s = &w->sites->v[i];
  if (s->state == SITE_ONLINE || s->state == SITE_STALE) sites_on_link_down(s, w->now);
  s->conn = NULL;
  w->down[i] = true;
  engine_on_link_down(e, i);
}

void world_link_up(world_t *w, engine_t *e, const char *slug) {
  size_t i = world_index(w, slug);
  world_hello(w, e, i, &w->applied[i]);
}

const route_t *world_last(world_t *w, const char *slug) {
  size_t i = world_index(w, slug);
  for (size_t k = w->n_sent; k-- > 0;)
    if (w->sent[k].site == i) return &w->sent[k].route;
  return NULL;
}

size_t world_count_rec(world_t *w, engine_rec_kind_t kind, const char *action) {
  size_t n = 0;
  for (size_t k = 0; k < w->n_rec; k++)
    if (w->rec[k].kind == kind && (!action || strcmp(w->rec[k].action, action) == 0)) n++;
  return n;
}

void world_ack(world_t *w, engine_t *e, size_t from, const char *fail_slug) {
  size_t upto = w->n_sent;
  for (size_t k = from; k < upto; k++) {
    bool newest = true;
    for (size_t j = k + 1; j < upto; j++)
      newest &= w->sent[j].site != w->sent[k].site;
    if (!newest) continue;
    const char *slug = w->sites->v[w->sent[k].site].slug;
    if (!w->sites->v[w->sent[k].site].conn) continue; /* offline: never arrived */
    Nirc__DirectiveAck a = NIRC__DIRECTIVE_ACK__INIT;
    a.site = (char *)slug;
    a.epoch = w->sent[k].route.epoch;
    a.version = w->sent[k].route.version;
    bool fail = fail_slug && strcmp(slug, fail_slug) == 0;
    a.result = fail ? NIRC__ACK_RESULT__ACK_RESULT_FAILED : NIRC__ACK_RESULT__ACK_RESULT_APPLIED;
    a.detail = !fail ? "ok" : w->fail_detail ? (char *)w->fail_detail : "pbx refused the route";
    a.unverified = !fail && w->ack_unverified;
    a.outcome_unknown = fail && w->fail_outcome_unknown;
    if (!fail) w->applied[w->sent[k].site] = w->sent[k].route;
    if (!fail) w->hello_unverified[w->sent[k].site] = a.unverified;
    w->mono += 5;
    engine_on_ack(e, w->sent[k].site, &a);
  }
}

void world_tick(world_t *w, engine_t *e, uint64_t ms) {
  w->mono += ms;
  w->now += (int64_t)ms;
  w->wall += (int64_t)ms;
  engine_tick(e);
}

void world_cutover(world_t *w, engine_t *e, uint64_t rid, const char *const *src, size_t ns,
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

static void world_cutover_one(world_t *w, engine_t *e, uint64_t rid, const char *src,
                              const char *hub, bool dry, int64_t expires_in_ms) {
  const char *s[] = {src}, *h[] = {hub};
  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  c.sources = (char **)s;
  c.n_sources = 1;
  c.hubs = (char **)h;
  c.n_hubs = 1;
  c.reason = "forced";
  c.force = true;
  c.dry_run = dry;
  c.expires_in_ms = expires_in_ms;
  engine_req_t rq = {.client = w, .request_id = rid, .operator_name = "operator:alice"};
  engine_op_cutover(e, &rq, &c);
}

void world_cutover_forced(world_t *w, engine_t *e, uint64_t rid, const char *src, const char *hub,
                          bool dry) {
  world_cutover_one(w, e, rid, src, hub, dry, 0);
}

void world_cutover_for(world_t *w, engine_t *e, uint64_t rid, const char *src, const char *hub,
                       int64_t ms) {
  world_cutover_one(w, e, rid, src, hub, false, ms);
}

void world_schedule_all_day(world_t *w, engine_t *e, uint64_t rid, const char *src,
                            const char *hub) {
  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  char *ss[] = {(char *)src}, *sh[] = {(char *)hub};
  sp.name = "night";
  sp.sources = ss;
  sp.n_sources = 1;
  sp.hubs = sh;
  sp.n_hubs = 1;
  sp.start = "00:00";
  sp.end = "23:59";
  Nirc__ScheduleRequest rq = NIRC__SCHEDULE_REQUEST__INIT;
  rq.op = NIRC__RULE_OP__RULE_OP_ADD;
  rq.spec = &sp;
  engine_req_t r = {.client = w, .request_id = rid, .operator_name = "admin:bob", .label = "t"};
  engine_op_schedule(e, &r, &rq);
}

engine_t *world_leading(world_t *w) {
  engine_opts_t o = world_opts(false);
  return world_leading_with(w, &o);
}

engine_t *world_leading_with(world_t *w, const engine_opts_t *o) {
  engine_t *e = world_engine_with(w, o);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  world_connect_all(w, e, NULL);
  return e;
}

size_t world_sent_count(world_t *w, const char *slug) {
  size_t n = 0, i = world_index(w, slug);
  for (size_t k = 0; k < w->n_sent; k++)
    n += w->sent[k].site == i;
  return n;
}
