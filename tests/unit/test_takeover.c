/* Leader-change equivalence, in one process, against a real PostgreSQL.
 *
 * A seeded random sequence of operator commands (cutovers with shares and
 * expiry, amendments, restores, readmissions, schedules added, removed, enabled and disabled,
 * overflow rules added and removed) and events (applies that fail, hubs
 * lost and back, hubs' staffing changing so that capacity decides, with
 * the damping of nircd's defaults, business time passing) drives a leader
 * engine whose
 * records go through the real store (store/store.c, the asynchronous db
 * client) into PostgreSQL. At random points the leader goes away and a new
 * one takes over as nircd does: it loads the rules with admin_load_rules,
 * hears from every site what it routes by, and plans. After every takeover
 * the new leader must route every site exactly as the old one did and send
 * nothing the old one would not have sent.
 *
 *   NIRC_TAKEOVER_STEPS=N  steps (default 250)
 *   NIRC_TAKEOVER_SEED=S   the seed (default 2, whose 250 steps make every
 *                          kind of record); printed on failure
 *
 * The old leader stops between commands, after what it was told is
 * durable (its store drained): what an operator was answered for. A kill
 * in the middle of a write is the journal's business (test_db_journal). */
#include "admin.h"
#include "db.h"
#include "engine-int.h" /* ENGINE_RETURNS_HOLD */
#include "engine.h"
#include "err.h"
#include "log.h"
#include "route.h"
#include "store.h"
#include "support/tmpdir.h"
#include "support/world.h"
#include "util.h"

#include <libpq-fe.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

static struct {
  bool have_pg;
  char admin[512], ci[1024], dbname[64], schema_dir[512];
  uv_loop_t loop;
  db_t *db;
  int inflight;
  unsigned write_errors;
  char last_error[512];
  uint64_t seed;
  unsigned step;
} T;

/* ---- the real store behind the world ---- */

typedef struct {
  engine_stored_cb done;
  void *arg;
} tk_wait_t;

static void tk_stored(void *arg, int err, const char *msg) {
  tk_wait_t *x = arg;
  T.inflight--;
  if (err) {
    T.write_errors++;
    snprintf(T.last_error, sizeof T.last_error, "%s", msg ? msg : nirc_strerror(err));
  }
  if (x->done) x->done(x->arg, err, msg);
  free(x);
}

static int tk_store(void *ctx, const engine_rec_t *rec, engine_stored_cb done, void *arg) {
  tk_wait_t *x = malloc(sizeof *x);
  if (!x) return NIRC_ENOMEM;
  *x = (tk_wait_t){done, arg};
  int rc = store_engine_record(T.db, rec, tk_stored, x);
  if (rc != 0) {
    free(x);
    return rc;
  }
  T.inflight++;
  return 0;
}

/* Runs the loop until every record written so far is committed. */
static void tk_drain(void) {
  while (T.inflight > 0)
    uv_run(&T.loop, UV_RUN_ONCE);
}

static void tk_barrier_done(void *arg, int err, const char *msg, PGresult *res) {
  (void)msg;
  (void)res;
  assert_int_equal(err, 0);
  *(bool *)arg = true;
}

/* Runs the loop until every statement queued on T.db so far, with or
 * without a callback, has been answered: a read is never overtaken and
 * the connection answers in order, so its answer comes after their
 * commits. (An empty queue is not enough: the last pipeline may still be
 * in flight, and a reader on another connection would not see it.) */
static void tk_barrier(void) {
  bool done = false;
  assert_int_equal(db_exec(T.db, "SELECT 1", 0, NULL, tk_barrier_done, &done), 0);
  while (!done)
    uv_run(&T.loop, UV_RUN_ONCE);
}

/* ---- PostgreSQL set-up ---- */

static int tk_exec(const char *ci, const char *sql) {
  PGconn *c = PQconnectdb(ci);
  int ok = PQstatus(c) == CONNECTION_OK;
  if (ok) {
    PGresult *r = PQexec(c, sql);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) fprintf(stderr, "test_takeover: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
  } else {
    fprintf(stderr, "test_takeover: %s", PQerrorMessage(c));
  }
  PQfinish(c);
  return ok ? 0 : -1;
}

/* A fresh database `name` with the schema and the world's sites; T.ci and
 * T.db point at it. */
static int tk_db_create(const char *name) {
  char sql[256], err[512];
  snprintf(T.dbname, sizeof T.dbname, "%s", name);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", T.dbname);
  if (tk_exec(T.admin, sql) != 0) return -1;
  /* Later keywords win in a conninfo string. */
  snprintf(T.ci, sizeof T.ci, "%s dbname=%s", T.admin, T.dbname);
  fflush(stdout);
  int out = dup(1), null = open("/dev/null", 1);
  dup2(null, 1); /* db_admin_migrate prints its progress */
  int rc = db_admin_migrate(T.ci, T.schema_dir, err, sizeof err);
  fflush(stdout);
  dup2(out, 1);
  close(out);
  close(null);
  if (rc != 0) {
    fprintf(stderr, "test_takeover: migrate: %s\n", err);
    return -1;
  }
  world_t *w = world_new(); /* for the site list only */
  for (size_t i = 0; i < w->sites->n; i++) {
    snprintf(sql, sizeof sql,
             "INSERT INTO sites (slug, name_en, name_zh, is_hub) VALUES ('%s', '%s', '', %s)",
             w->sites->v[i].slug, w->sites->v[i].slug, w->sites->v[i].is_hub ? "true" : "false");
    if (tk_exec(T.ci, sql) != 0) return -1;
  }
  world_free(w);
  return db_open(&T.loop, T.ci, &T.db) != 0 ? -1 : 0;
}

static int tk_setup(void **state) {
  const char *pg = getenv("NIRC_TEST_PG");
  const char *src = getenv("NIRC_SOURCE_DIR");
  if (!pg || !*pg) return 0;
  snprintf(T.schema_dir, sizeof T.schema_dir, "%s/schema", src && *src ? src : ".");
  snprintf(T.admin, sizeof T.admin, "%s", pg);
  if (uv_loop_init(&T.loop) != 0) return -1;
  char name[64];
  snprintf(name, sizeof name, "nirc_takeover_%ld", (long)getpid());
  if (tk_db_create(name) != 0) return -1;
  T.have_pg = true;
  return 0;
}

static void tk_closed(void *arg) {
  *(int *)arg = 1;
}

/* Closes T.db and drops T.dbname. */
static void tk_db_drop(void) {
  int closed = 0;
  db_close(T.db, tk_closed, &closed);
  while (!closed)
    uv_run(&T.loop, UV_RUN_ONCE);
  char sql[128];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", T.dbname);
  tk_exec(T.admin, sql);
}

static int tk_teardown(void **state) {
  if (!T.have_pg) return 0;
  tk_db_drop();
  uv_run(&T.loop, UV_RUN_DEFAULT);
  uv_loop_close(&T.loop);
  return 0;
}

/* ---- the random sequence ---- */

static uint64_t tk_rand_state;

static uint64_t tk_rand(void) {
  uint64_t x = tk_rand_state; /* xorshift64*: small, seeded, the same everywhere */
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  tk_rand_state = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static unsigned tk_pick(unsigned n) {
  return (unsigned)(tk_rand() % n);
}

/* A failure message that says how to run this exact sequence again. */
#define TK_FAIL(...)                                                                               \
  do {                                                                                             \
    char m_[600];                                                                                  \
    snprintf(m_, sizeof m_, __VA_ARGS__);                                                          \
    fail_msg("%s (seed %llu, step %u: NIRC_TAKEOVER_SEED=%llu)", m_, (unsigned long long)T.seed,   \
             T.step, (unsigned long long)T.seed);                                                  \
  } while (0)

static uint64_t tk_rid;

static engine_req_t tk_req(world_t *w, const char *who) {
  return (engine_req_t){
      .client = w, .request_id = ++tk_rid, .operator_name = who, .label = "takeover"};
}

/* Up to `max` distinct names out of v[n]. */
static size_t tk_some(const char *const *v, size_t n, size_t max, const char **out) {
  size_t k = 1 + tk_pick((unsigned)max);
  size_t got = 0;
  for (size_t tries = 0; got < k && tries < 20; tries++) {
    const char *c = v[tk_pick((unsigned)n)];
    bool dup = false;
    for (size_t j = 0; j < got; j++)
      dup |= strcmp(out[j], c) == 0;
    if (!dup) out[got++] = c;
  }
  return got;
}

static void tk_op_cutover(world_t *w, engine_t *e) {
  const char *src[2], *hubs[3];
  size_t ns = tk_some(world_sources, 4, 2, src), nh = tk_some(world_hubs, 3, 3, hubs);
  static const uint32_t shares[] = {0, 300, 500, 1000};
  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  c.sources = (char **)src;
  c.n_sources = ns;
  c.hubs = (char **)hubs;
  c.n_hubs = nh;
  c.reason = "takeover test";
  c.share_permille = shares[tk_pick(4)];
  if (tk_pick(2)) c.expires_in_ms = (int64_t)(1 + tk_pick(90)) * 60000;
  /* Forced or not: a new leader must keep a forced move where the
   * capacity check would refuse it, and check an unforced one. */
  c.force = tk_pick(3) == 0;
  engine_req_t rq = tk_req(w, "operator:alice");
  engine_op_cutover(e, &rq, &c);
}

/* An amendment of an active cutover: another share, hubs or expiry. */
static void tk_op_amend(world_t *w, engine_t *e) {
  const cutover_t *active[256];
  size_t n = 0;
  for (size_t k = 0; k < w->n_cut; k++)
    if (w->cut[k].state == CUTOVER_ACTIVE) active[n++] = &w->cut[k];
  if (n == 0) return;
  const cutover_t *cut = active[tk_pick((unsigned)n)];
  const char *hubs[3];
  static const uint32_t shares[] = {0, 250, 600, 1000};
  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  c.amend_id = cut->id;
  c.reason = "takeover test";
  unsigned what = tk_pick(3);
  if (what == 0) {
    c.n_hubs = tk_some(world_hubs, 3, 3, hubs);
    c.hubs = (char **)hubs;
  } else if (what == 1) {
    c.share_permille = shares[1 + tk_pick(3)];
  } else {
    c.expires_in_ms = (int64_t)(1 + tk_pick(90)) * 60000;
  }
  /* An amendment forces (or stops forcing) independently of how the
   * cutover was made: a forced amendment that a new leader re-checked
   * without --force would send the sources home after a failover. */
  c.force = tk_pick(2) == 0;
  engine_req_t rq = tk_req(w, "operator:alice");
  engine_op_cutover(e, &rq, &c);
}

static void tk_op_restore(world_t *w, engine_t *e) {
  const char *src[1] = {world_sources[tk_pick(4)]};
  Nirc__RestoreRequest r = NIRC__RESTORE_REQUEST__INIT;
  r.sources = (char **)src;
  r.n_sources = 1;
  r.reason = "takeover test";
  r.readmit = tk_pick(3) == 0; /* or: back into its rules after a failed move */
  engine_req_t rq = tk_req(w, "operator:alice");
  engine_op_restore(e, &rq, &r);
}

static void tk_op_schedule(world_t *w, engine_t *e) {
  static const char *const names[] = {"night", "lunch", "peak"};
  Nirc__ScheduleRequest r = NIRC__SCHEDULE_REQUEST__INIT;
  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  const char *src[2], *hubs[2];
  char start[8], end[8];
  unsigned op = tk_pick(4);
  r.name = (char *)names[tk_pick(3)];
  if (op == 0) {
    r.op = NIRC__RULE_OP__RULE_OP_ADD;
    sp.name = r.name;
    sp.n_sources = tk_some(world_sources, 4, 2, src);
    sp.sources = (char **)src;
    sp.n_hubs = tk_some(world_hubs, 3, 2, hubs);
    sp.hubs = (char **)hubs;
    unsigned a = tk_pick(48), b = (a + 1 + tk_pick(46)) % 48;
    snprintf(start, sizeof start, "%02u:%02u", a / 2, a % 2 * 30);
    snprintf(end, sizeof end, "%02u:%02u", b / 2, b % 2 * 30);
    sp.start = start;
    sp.end = end;
    sp.wave_size = 1 + tk_pick(3);
    r.spec = &sp;
  } else {
    r.op = op == 1   ? NIRC__RULE_OP__RULE_OP_REMOVE
           : op == 2 ? NIRC__RULE_OP__RULE_OP_ENABLE
                     : NIRC__RULE_OP__RULE_OP_DISABLE;
  }
  engine_req_t rq = tk_req(w, "admin:bob");
  engine_op_schedule(e, &rq, &r);
}

static void tk_op_overflow(world_t *w, engine_t *e) {
  Nirc__OverflowRequest r = NIRC__OVERFLOW_REQUEST__INIT;
  Nirc__OverflowSpec sp = NIRC__OVERFLOW_SPEC__INIT;
  const char *hubs[2];
  char name[32];
  const char *source = world_sources[tk_pick(4)];
  snprintf(name, sizeof name, "%s-overflow", source);
  r.name = name;
  if (tk_pick(2)) {
    r.op = NIRC__RULE_OP__RULE_OP_ADD;
    sp.name = name;
    sp.source = (char *)source;
    sp.n_hubs = tk_some(world_hubs, 3, 2, hubs);
    sp.hubs = (char **)hubs;
    sp.trigger_queue = 50;
    sp.release_queue = 5;
    sp.share_cap_permille = 500;
    sp.min_hold_s = 300;
    r.spec = &sp;
  } else {
    r.op = NIRC__RULE_OP__RULE_OP_REMOVE;
  }
  engine_req_t rq = tk_req(w, "admin:bob");
  engine_op_overflow(e, &rq, &r);
}

/* Lets the engine finish what it started: acks (one source may fail),
 * ticks past the verification window so every wave has run. */
static void tk_settle(world_t *w, engine_t *e, size_t from, const char *fail) {
  for (int round = 0; round < 12; round++) {
    world_ack(w, e, from, round == 0 ? fail : NULL);
    from = w->n_sent;
    tk_drain();
    w->mono += 10200; /* waves: verified after 10 s of monotonic time */
    w->wall += 10200;
    engine_tick(e);
    if (w->n_sent == from) break;
  }
  tk_drain();
}

/* nircd's damping defaults (controller/conf.c), so a new leader must also
 * carry over held placements, re-entry waits and hub losses. */
static engine_t *tk_engine(world_t *w) {
  engine_opts_t o = world_opts(true);
  return world_engine_with(w, &o);
}

/* The old leader goes; a new one takes over from the database. Returns the
 * new engine, after checking it routes as the old one did. */
static engine_t *tk_takeover(world_t *w, engine_t *a, uint64_t epoch) {
  tk_drain();
  size_t n = w->sites->n;
  route_t before[16];
  char note[16][256];
  for (size_t i = 0; i < n; i++) {
    before[i] = engine_site_dir(a, i)->target;
    snprintf(note[i], sizeof note[i], "%s", engine_site_dir(a, i)->note);
  }
  engine_free(a);
  for (size_t i = 0; i < n; i++) {
    if (w->down[i]) continue;
    sites_on_link_down(&w->sites->v[i], w->now);
    w->sites->v[i].conn = NULL;
  }
  admin_rules_t rules;
  char err[512];
  if (admin_load_rules(T.ci, &rules, err, sizeof err) != 0) TK_FAIL("load rules: %s", err);
  engine_t *b = tk_engine(w);
  assert_int_equal(engine_load_rules(b, epoch, rules.cutovers, rules.n_cutovers, rules.schedules,
                                     rules.n_schedules, rules.overflows, rules.n_overflows,
                                     rules.max_id),
                   0);
  engine_load_exclusions(b, rules.exclusions, rules.n_exclusions);
  engine_load_overflow_state(b, rules.overflow_states, rules.n_overflows);
  engine_load_holds(b, rules.holds, rules.n_holds);
  engine_load_return_holds(b, rules.return_holds, rules.n_return_holds);
  engine_load_hub_history(b, rules.hubs, rules.n_hubs);
  admin_rules_free(&rules);
  engine_start_leading(b, 0);
  size_t sent = w->n_sent;
  world_connect_all(w, b, w->applied);
  engine_tick(b); /* the same instant: no rule boundary in between */
  for (size_t i = 0; i < n; i++) {
    const route_t *now = &engine_site_dir(b, i)->target;
    if (!route_same(now, &before[i])) {
      char x[256], y[256];
      route_format(&before[i], w->sites->v[i].slug, x, sizeof x);
      route_format(now, w->sites->v[i].slug, y, sizeof y);
      TK_FAIL("after the takeover %s routes %s; the old leader routed %s (old note: '%s'; new "
              "note: '%s')",
              w->sites->v[i].slug, y, x, note[i], engine_site_dir(b, i)->note);
    }
  }
  if (w->n_sent != sent) {
    char y[256];
    route_format(&w->sent[sent].route, w->sites->v[w->sent[sent].site].slug, y, sizeof y);
    TK_FAIL("the new leader sent %s a directive the old one would not have: %s",
            w->sites->v[w->sent[sent].site].slug, y);
  }
  return b;
}

static void test_leader_change_routes_the_same(void **state) {
  if (!T.have_pg) skip();
  const char *s = getenv("NIRC_TAKEOVER_SEED"), *n = getenv("NIRC_TAKEOVER_STEPS");
  T.seed = s && *s ? strtoull(s, NULL, 10) : 2;
  unsigned steps = n && *n ? (unsigned)strtoul(n, NULL, 10) : 250;
  tk_rand_state = T.seed * 0x9E3779B97F4A7C15ULL + 1;
  world_t *w = world_new();
  w->store_next = tk_store;
  uint64_t epoch = 1;
  engine_t *e = tk_engine(w);
  assert_int_equal(engine_load_rules(e, epoch, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 0);
  world_connect_all(w, e, NULL);
  unsigned takeovers = 0;
  /* What the sequence exercised, counted from the records: a run that never
   * amended, excluded or readmitted would prove little about those. */
  static const engine_rec_kind_t kinds[] = {
      ENGINE_REC_CUTOVER_NEW,     ENGINE_REC_CUTOVER_AMEND, ENGINE_REC_CUTOVER_END,
      ENGINE_REC_EXCLUDE,         ENGINE_REC_READMIT,       ENGINE_REC_SCHEDULE_NEW,
      ENGINE_REC_SCHEDULE_REMOVE, ENGINE_REC_OVERFLOW_NEW,  ENGINE_REC_HOLD};
  size_t seen[sizeof kinds / sizeof kinds[0]] = {0};
  for (T.step = 1; T.step <= steps; T.step++) {
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
      seen[k] += world_count_rec(w, kinds[k], NULL);
    w->n_sent = w->n_rec = w->n_rep = 0; /* the world's logs hold one step */
    size_t from = 0;
    const char *fail = NULL;
    unsigned what = tk_pick(100);
    if (what < 16) {
      tk_op_cutover(w, e);
    } else if (what < 22) {
      tk_op_amend(w, e);
    } else if (what < 34) {
      tk_op_restore(w, e);
    } else if (what < 46) {
      tk_op_schedule(w, e);
    } else if (what < 52) {
      tk_op_overflow(w, e);
    } else if (what < 62) {
      /* The next apply of one source fails at its PBX. */
      fail = world_sources[tk_pick(4)];
      tk_op_cutover(w, e);
    } else if (what < 72) {
      const char *hub = world_hubs[tk_pick(3)];
      if (w->down[world_index(w, hub)])
        world_link_up(w, e, hub);
      else
        world_link_down(w, e, hub);
    } else if (what < 84) {
      /* A hub's staffing changes, between too few for its own calls and
       * enough for about two sources (each brings 3 Erlangs), so capacity
       * decides, with its holds and re-entry waits. */
      const char *hub = world_hubs[tk_pick(3)];
      if (!w->down[world_index(w, hub)]) world_staff(w, hub, 3 + tk_pick(12));
      for (size_t k = 0; k < 4; k++) /* fresh demand: a call a minute each */
        if (!w->down[world_index(w, world_sources[k])]) world_staff(w, world_sources[k], 5);
      w->mono += 200;
      engine_tick(e);
    } else if (what < 90) {
      /* Business time passes (accelerated: minutes in a tick). */
      w->now += (int64_t)(1 + tk_pick(120)) * 60000;
      w->mono += 200;
      engine_tick(e);
    } else {
      e = tk_takeover(w, e, ++epoch);
      takeovers++;
      continue;
    }
    tk_settle(w, e, from, fail);
    if (T.write_errors) TK_FAIL("the database refused a record: %s", T.last_error);
  }
  e = tk_takeover(w, e, ++epoch);
  takeovers++;
  print_message("%u steps, %u takeovers (seed %llu); cutovers %zu, amended %zu, ended %zu, "
                "excluded %zu, readmitted %zu, schedules %zu added %zu removed, overflow rules "
                "%zu, capacity holds changed %zu\n",
                steps, takeovers, (unsigned long long)T.seed, seen[0], seen[1], seen[2], seen[3],
                seen[4], seen[5], seen[6], seen[7], seen[8]);
  if (steps >= 200)
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
      if (seen[k] == 0) TK_FAIL("the sequence never made a record of kind %d", (int)kinds[k]);
  engine_free(e);
  world_free(w);
}

/* ---- rows carry the time of their event ---- */

static int tk_query_ms(const char *sql, int64_t *ms) {
  PGconn *c = PQconnectdb(T.ci);
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0);
  if (ok)
    *ms = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  else
    fprintf(stderr, "test_takeover: %s: %s (%d rows)\n", sql, PQerrorMessage(c), PQntuples(r));
  PQclear(r);
  PQfinish(c);
  return ok ? 0 : -1;
}

static void tk_counted(void *arg, int err, const char *msg) {
  int *n = arg;
  if (err) fail_msg("a journaled record failed: %s", msg ? msg : nirc_strerror(err));
  (*n)++;
}

/* Written while the database is unreachable, replayed 40 minutes later:
 * every row says when its event happened, on both clocks, not when it was
 * replayed. */
static void test_journaled_rows_keep_event_time(void **state) {
  if (!T.have_pg) skip();
  char dir[] = "/tmp/nirc-takeover-XXXXXX", path[128], err[512];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/nircd.journal", dir);
  db_opts_t o = {.journal = path};
  db_t *down = NULL;
  /* Nothing listens on port 1: the client journals what it is given. */
  assert_int_equal(db_open_opts(&T.loop,
                                "host=127.0.0.1 port=1 user=nirc dbname=nirc connect_timeout=2", &o,
                                &down),
                   0);
  const int64_t wall = WORLD_WALL0_MS, biz = WORLD_T0_MS; /* 03:12 real, 12:00 business */
  route_t rt;
  route_home(&rt, "hubei");
  rt.epoch = 9;
  rt.version = 1;
  engine_rec_t recs[] = {
      {.kind = ENGINE_REC_AUDIT,
       .at_ms = biz,
       .wall_ms = wall,
       .actor = "operator:eve",
       .action = "cutover",
       .target = "hubei",
       .detail = "{}"},
      {.kind = ENGINE_REC_DIRECTIVE,
       .at_ms = biz,
       .wall_ms = wall,
       .site = "hubei",
       .route = &rt,
       .rule_kind = RULE_CUTOVER,
       .rule_id = 9000001},
      {.kind = ENGINE_REC_ACK,
       .at_ms = biz,
       .wall_ms = wall,
       .site = "hubei",
       .epoch = 9,
       .version = 1,
       .result = "applied",
       .detail = "ok",
       .latency_ms = 40},
      {.kind = ENGINE_REC_EVENT,
       .at_ms = biz,
       .wall_ms = wall,
       .site = "hubei",
       .peer = "-",
       .action = "alarm",
       .detail = "event-time test"},
  };
  int done = 0;
  for (size_t k = 0; k < sizeof recs / sizeof recs[0]; k++)
    assert_int_equal(store_engine_record(down, &recs[k], tk_counted, &done), 0);
  int closed = 0;
  db_close(down, tk_closed, &closed);
  while (!closed)
    uv_run(&T.loop, UV_RUN_ONCE);
  assert_int_equal(done, 4); /* each was journaled */
  if (db_admin_replay_journal(T.ci, path, err, sizeof err) != 0) fail_msg("replay: %s", err);
  int64_t ms = 0;
  static const char *const real[] = {
      "SELECT (extract(epoch from at) * 1000)::bigint FROM audit_log WHERE actor = 'operator:eve'",
      "SELECT (extract(epoch from sent_at) * 1000)::bigint FROM directives WHERE epoch = 9",
      "SELECT (extract(epoch from at) * 1000)::bigint FROM directive_acks WHERE epoch = 9",
      "SELECT (extract(epoch from at) * 1000)::bigint FROM link_events "
      "WHERE detail = 'event-time test'"};
  for (size_t k = 0; k < 4; k++) {
    assert_int_equal(tk_query_ms(real[k], &ms), 0);
    if (ms != wall)
      fail_msg("%s: %lld, not the event's %lld", real[k], (long long)ms, (long long)wall);
  }
  static const char *const business[] = {
      "SELECT (extract(epoch from business_at) * 1000)::bigint FROM audit_log "
      "WHERE actor = 'operator:eve'",
      "SELECT (extract(epoch from business_at) * 1000)::bigint FROM directives WHERE epoch = 9",
      "SELECT (extract(epoch from business_at) * 1000)::bigint FROM directive_acks WHERE epoch = "
      "9"};
  for (size_t k = 0; k < 3; k++) {
    assert_int_equal(tk_query_ms(business[k], &ms), 0);
    assert_int_equal(ms, biz);
  }
  tmpdir_remove(dir);
}

/* An overflow rule's engagement goes through the real store and comes back
 * with the rules, as a new leader loads them; an `overflow set` of its hubs
 * and cap keeps it. */
static void test_overflow_state_round_trip(void **state) {
  if (!T.have_pg) skip();
  overflow_rule_t o = {.id = 77000001,
                       .trigger_queue = 20,
                       .release_queue = 5,
                       .share_cap_permille = 500,
                       .min_hold_s = 300,
                       .enabled = true};
  snprintf(o.name, sizeof o.name, "round-trip");
  snprintf(o.source, sizeof o.source, "hunan");
  snprintf(o.hubs.v[0], sizeof o.hubs.v[0], "henan");
  o.hubs.n = 1;
  int done = 0;
  engine_rec_t add = {.kind = ENGINE_REC_OVERFLOW_NEW,
                      .at_ms = WORLD_T0_MS,
                      .wall_ms = WORLD_WALL0_MS,
                      .overflow = &o,
                      .actor = "admin:bob"};
  engine_rec_t st = {.kind = ENGINE_REC_OVERFLOW_STATE,
                     .at_ms = WORLD_T0_MS,
                     .wall_ms = WORLD_WALL0_MS,
                     .id = o.id,
                     .enabled = true,
                     .since_ms = WORLD_T0_MS - 60000,
                     .permille = 350};
  /* nircctl overflow set: new hubs and cap, the engagement kept. */
  overflow_rule_t changed = o;
  snprintf(changed.hubs.v[0], sizeof changed.hubs.v[0], "sichuan");
  changed.share_cap_permille = 300;
  engine_rec_t set = {.kind = ENGINE_REC_OVERFLOW_CHANGE,
                      .at_ms = WORLD_T0_MS,
                      .wall_ms = WORLD_WALL0_MS,
                      .overflow = &changed,
                      .actor = "admin:bob"};
  assert_int_equal(store_engine_record(T.db, &add, tk_counted, &done), 0);
  assert_int_equal(store_engine_record(T.db, &st, tk_counted, &done), 0);
  assert_int_equal(store_engine_record(T.db, &set, tk_counted, &done), 0);
  while (done < 3)
    uv_run(&T.loop, UV_RUN_ONCE);
  admin_rules_t rules;
  char err[512];
  if (admin_load_rules(T.ci, &rules, err, sizeof err) != 0) fail_msg("load rules: %s", err);
  bool found = false;
  for (size_t k = 0; k < rules.n_overflows; k++) {
    if (rules.overflows[k].id != o.id) continue;
    found = true;
    assert_string_equal(rules.overflows[k].hubs.v[0], "sichuan");
    assert_int_equal(rules.overflows[k].share_cap_permille, 300);
    assert_int_equal(rules.overflows[k].trigger_queue, 20);
    assert_int_equal(rules.overflow_states[k].rule_id, o.id);
    assert_true(rules.overflow_states[k].engaged);
    assert_int_equal(rules.overflow_states[k].permille, 350);
    assert_int_equal(rules.overflow_states[k].since_ms, WORLD_T0_MS - 60000);
  }
  admin_rules_free(&rules);
  assert_true(found);
  /* Removed again, so the random sequence starts without it. */
  engine_rec_t rm = {.kind = ENGINE_REC_OVERFLOW_REMOVE,
                     .at_ms = WORLD_T0_MS,
                     .wall_ms = WORLD_WALL0_MS,
                     .id = o.id};
  assert_int_equal(store_engine_record(T.db, &rm, tk_counted, &done), 0);
  while (done < 4)
    uv_run(&T.loop, UV_RUN_ONCE);
}

/* nircctl schedule set: the changed schedule goes through the real store
 * (one row updated, same id) and comes back with the rules as a new
 * leader loads them. */
static void test_schedule_change_round_trip(void **state) {
  if (!T.have_pg) skip();
  schedule_t s = {.id = 77000002,
                  .start_min = 22 * 60,
                  .end_min = 8 * 60,
                  .days = 0x7f,
                  .wave_size = 5,
                  .enabled = true};
  snprintf(s.name, sizeof s.name, "night-change");
  snprintf(s.tz, sizeof s.tz, "Asia/Shanghai");
  snprintf(s.sources.v[0], sizeof s.sources.v[0], "hubei");
  snprintf(s.hubs.v[0], sizeof s.hubs.v[0], "shaanxi");
  s.sources.n = s.hubs.n = 1;
  schedule_t changed = s;
  changed.end_min = 8 * 60 + 30;
  snprintf(changed.hubs.v[0], sizeof changed.hubs.v[0], "henan");
  snprintf(changed.sources.v[1], sizeof changed.sources.v[1], "hunan");
  changed.sources.n = 2;
  changed.exceptions[changed.n_exceptions++] = 20200124;
  changed.wave_size = 2;
  /* An epoch no leader had yet: not fenced whatever the sequence left. */
  engine_rec_t add = {.kind = ENGINE_REC_SCHEDULE_NEW,
                      .at_ms = WORLD_T0_MS,
                      .wall_ms = WORLD_WALL0_MS,
                      .schedule = &s,
                      .actor = "admin:bob",
                      .leader_epoch = 1u << 30};
  engine_rec_t set = add;
  set.kind = ENGINE_REC_SCHEDULE_CHANGE;
  set.schedule = &changed;
  int done = 0;
  assert_int_equal(store_engine_record(T.db, &add, tk_counted, &done), 0);
  assert_int_equal(store_engine_record(T.db, &set, tk_counted, &done), 0);
  while (done < 2)
    uv_run(&T.loop, UV_RUN_ONCE);
  admin_rules_t rules;
  char err[512];
  if (admin_load_rules(T.ci, &rules, err, sizeof err) != 0) fail_msg("load rules: %s", err);
  bool found = false;
  for (size_t k = 0; k < rules.n_schedules; k++) {
    const schedule_t *x = &rules.schedules[k];
    if (x->id != s.id) continue;
    found = true;
    assert_string_equal(x->name, "night-change");
    assert_int_equal(x->start_min, 22 * 60);
    assert_int_equal(x->end_min, 8 * 60 + 30);
    assert_int_equal(x->sources.n, 2);
    assert_string_equal(x->sources.v[1], "hunan");
    assert_int_equal(x->hubs.n, 1);
    assert_string_equal(x->hubs.v[0], "henan");
    assert_int_equal(x->n_exceptions, 1);
    assert_int_equal(x->exceptions[0], 20200124);
    assert_int_equal(x->wave_size, 2);
    assert_true(x->enabled);
  }
  admin_rules_free(&rules);
  assert_true(found);
  /* Removed again, so the random sequence starts without it. */
  engine_rec_t rm = {.kind = ENGINE_REC_SCHEDULE_REMOVE,
                     .at_ms = WORLD_T0_MS,
                     .wall_ms = WORLD_WALL0_MS,
                     .id = s.id,
                     .leader_epoch = 1u << 30};
  assert_int_equal(store_engine_record(T.db, &rm, tk_counted, &done), 0);
  while (done < 3)
    uv_run(&T.loop, UV_RUN_ONCE);
}

/* ---- a new leader starts from the load the old one measured ---- */

static void tk_minute(void *arg, const site_t *site, const site_minute_t *m) {
  (void)arg;
  assert_int_equal(store_load_minute(T.db, site->slug, m), 0);
}

/* The old leader hears forty minutes of hunan's reports (a rising load
 * and a handle time that drifts) and stores them as load_minute rows, as
 * nircd does; a new leader's fresh registry, seeded from those rows by
 * admin_load_rules, estimates the same demand and handle time (within a
 * few per cent: the rows are per minute, the reports need not be). Without
 * the seed it would know nothing and plan on the forecast alone. */
static void test_load_estimate_carries_over(void **state) {
  if (!T.have_pg) skip();
  sites_t old;
  sites_init(&old, 3000);
  assert_int_equal(sites_add(&old, "hunan", "hunan", "", false), 0);
  site_t *s = &old.v[0];
  int64_t t = WORLD_T0_MS + 3 * 3600000;
  for (int k = 0; k < 40; k++, t += 60000) {
    Nirc__LoadReport r = NIRC__LOAD_REPORT__INIT;
    r.site = "hunan";
    r.timestamp_ms = t;
    r.interval_ms = 60000;
    r.calls_offered = (uint32_t)(2 + k / 8);
    r.calls_answered = r.calls_offered;
    r.aht_ms = (uint32_t)(150000 + 1000 * k);
    r.agents_logged_in = r.agents_ready = 10;
    site_minute_t flushed;
    if (sites_on_report(s, &r, t, t, &flushed)) tk_minute(NULL, s, &flushed);
  }
  sites_flush_minutes(&old, t, true, tk_minute, NULL);
  tk_barrier();
  admin_rules_t rules;
  char err[512];
  if (admin_load_rules(T.ci, &rules, err, sizeof err) != 0) fail_msg("load rules: %s", err);
  sites_t fresh;
  sites_init(&fresh, 3000);
  assert_int_equal(sites_add(&fresh, "hunan", "hunan", "", false), 0);
  assert_true(sites_demand_cps(&fresh.v[0], 0, 60) == 0); /* nothing heard yet */
  bool found = false;
  for (size_t k = 0; k < rules.n_load; k++)
    if (strcmp(rules.load[k].slug, "hunan") == 0) {
      found = true;
      sites_seed_load(&fresh.v[0], &rules.load[k], t - 60000); /* at the last report */
    }
  admin_rules_free(&rules);
  double want = sites_demand_cps(s, 0, 60), got = sites_demand_cps(&fresh.v[0], 0, 60);
  double aht_old = s->aht_s, aht_new = fresh.v[0].aht_s;
  sites_free(&old);
  sites_free(&fresh);
  if (!found) fail_msg("no stored load for hunan after its minutes were committed");
  if (!(fabs(got - want) <= 0.05 * want))
    fail_msg("demand: the old leader had %.4f calls/s, the new one %.4f", want, got);
  if (!(fabs(aht_new - aht_old) <= 0.05 * aht_old))
    fail_msg("handle time: the old leader had %.1f s, the new one %.1f s", aht_old, aht_new);
}

/* ---- a forced amendment is durable ---- */

/* An amendment with --force makes a move the capacity check refuses; a new
 * leader must keep it. The process-level takeover test once saw the new
 * leader send hubei home from a forced 25 % share to a small hub: the
 * amendment's force flag lived in memory only (the UPDATE left the
 * creation's flag in the table). In a database of its own, so that the
 * random sequence's rules do not interfere. */
/* The shared database, put aside while a test runs on one of its own. */
typedef struct {
  db_t *db;
  char ci[sizeof T.ci], dbname[sizeof T.dbname];
} tk_saved_t;

/* A fresh database nirc_takeover_WHAT_PID for one test: T.db, T.ci and
 * T.dbname point at it until tk_db_done. */
static void tk_db_own(const char *what, tk_saved_t *keep) {
  keep->db = T.db;
  memcpy(keep->ci, T.ci, sizeof keep->ci);
  memcpy(keep->dbname, T.dbname, sizeof keep->dbname);
  char name[64];
  snprintf(name, sizeof name, "nirc_takeover_%s_%ld", what, (long)getpid());
  assert_int_equal(tk_db_create(name), 0);
}

/* Drops the test's database and puts the shared one back. */
static void tk_db_done(const tk_saved_t *keep) {
  tk_db_drop();
  T.db = keep->db;
  memcpy(T.ci, keep->ci, sizeof T.ci);
  memcpy(T.dbname, keep->dbname, sizeof T.dbname);
}

/* The leader of epoch 1, recording through the real store, every site
 * connected and home. */
static engine_t *tk_first_leader(world_t *w) {
  w->store_next = tk_store;
  engine_t *e = tk_engine(w);
  assert_int_equal(engine_load_rules(e, 1, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 0);
  world_connect_all(w, e, NULL);
  return e;
}

static void test_forced_amendment_survives_takeover(void **state) {
  if (!T.have_pg) skip();
  tk_saved_t keep;
  tk_db_own("force", &keep);

  world_t *w = world_new();
  engine_t *e = tk_first_leader(w);
  /* hubei brings about 3 Erlangs (a call a minute, as in the random
   * sequence); shaanxi's 14 agents take it, henan's 2 cannot. */
  for (size_t k = 0; k < 4; k++)
    world_staff(w, world_sources[k], 5);
  world_staff(w, "shaanxi", 14);
  world_staff(w, "henan", 2);
  w->mono += 200;
  engine_tick(e);
  tk_settle(w, e, 0, NULL);
  const char *src[] = {"hubei"}, *to_shaanxi[] = {"shaanxi"}, *to_henan[] = {"henan"};
  world_cutover(w, e, 1, src, 1, to_shaanxi, 1, 0);
  tk_settle(w, e, 0, NULL);
  const route_t *r = &engine_site_dir(e, world_index(w, "hubei"))->target;
  assert_true(route_share_of(r, "shaanxi") == 1000);
  uint64_t id = 0;
  for (size_t k = 0; k < w->n_cut; k++)
    if (w->cut[k].state == CUTOVER_ACTIVE) id = w->cut[k].id;
  assert_true(id != 0);

  /* Unforced, the amendment to henan is refused; forced, it is made. */
  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  c.amend_id = id;
  c.hubs = (char **)to_henan;
  c.n_hubs = 1;
  c.reason = "henan takes hubei, whatever the check says";
  engine_req_t rq = tk_req(w, "operator:alice");
  engine_op_cutover(e, &rq, &c);
  tk_settle(w, e, 0, NULL);
  r = &engine_site_dir(e, world_index(w, "hubei"))->target;
  if (route_share_of(r, "henan") != 0)
    fail_msg("the unforced amendment to a hub of 2 agents was not refused: the test shows "
             "nothing about --force");
  c.force = true;
  rq = tk_req(w, "operator:alice");
  engine_op_cutover(e, &rq, &c);
  tk_settle(w, e, 0, NULL);
  r = &engine_site_dir(e, world_index(w, "hubei"))->target;
  assert_true(route_share_of(r, "henan") == 1000);

  /* tk_takeover fails the test if the new leader routes hubei otherwise
   * at once. An unforced placement that fails the check is kept for its
   * hold time, so the difference shows only later: two business hours
   * pass (reports keep the load measured), and hubei stays at henan, as
   * it does at a leader that never changed. */
  e = tk_takeover(w, e, 2);
  for (int k = 0; k < 24; k++) {
    for (size_t j = 0; j < 4; j++)
      world_staff(w, world_sources[j], 5);
    world_staff(w, "shaanxi", 14);
    world_staff(w, "henan", 2);
    w->now += 5 * 60000;
    w->mono += 5 * 60000;
    w->wall += 5 * 60000;
    engine_tick(e);
    tk_settle(w, e, w->n_sent, NULL);
    r = &engine_site_dir(e, world_index(w, "hubei"))->target;
    if (route_share_of(r, "henan") != 1000) {
      char y[256];
      route_format(r, "hubei", y, sizeof y);
      fail_msg("%d minutes after the takeover, the new leader routes hubei %s: it re-checked "
               "the forced amendment to henan (note: '%s')",
               5 * (k + 1), y, engine_site_dir(e, world_index(w, "hubei"))->note);
    }
  }
  engine_free(e);
  world_free(w);

  tk_db_done(&keep);
}

/* ---- a rule change of an older leader is not written after a newer one ----
 *
 * A cutover journaled by a leader during a database outage reaches the
 * database later, maybe after that leader died and another took over
 * without it (and after the first restarted). It must not become an active
 * cutover then (the next leader would carry it out); the audit trail says
 * it was superseded. The same for its end. Both pairs are queued before
 * the loop runs, so they may share one batched statement. */
__attribute__((format(printf, 1, 2))) static int64_t tk_count(const char *fmt, ...) {
  char sql[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sql, sizeof sql, fmt, ap);
  va_end(ap);
  int64_t n = -1;
  assert_int_equal(tk_query_ms(sql, &n), 0);
  return n;
}

static void test_older_leaders_rule_write_is_superseded(void **state) {
  if (!T.have_pg) skip();
  tk_saved_t keep;
  tk_db_own("fence", &keep);
  /* Two leaders have led: epochs 1 and 2. */
  assert_int_equal(tk_exec(T.ci, "INSERT INTO epochs (epoch, node) VALUES "
                                 "(nextval('epoch_seq'), 'nircd-1'), (nextval('epoch_seq'), "
                                 "'nircd-2')"),
                   0);
  int64_t newest = 0;
  assert_int_equal(tk_query_ms("SELECT max(epoch) FROM epochs", &newest), 0);
  uint64_t old_epoch = (uint64_t)newest - 1, new_epoch = (uint64_t)newest;

  cutover_t old = {.id = 1000001, .created_ms = WORLD_T0_MS}, cur = old;
  cur.id = 2000001;
  cutover_t *both[] = {&old, &cur};
  for (int k = 0; k < 2; k++) {
    cutover_t *c = both[k];
    snprintf(c->sources.v[0], sizeof c->sources.v[0], "hubei");
    snprintf(c->hubs.v[0], sizeof c->hubs.v[0], "shaanxi");
    c->sources.n = c->hubs.n = 1;
    snprintf(c->reason, sizeof c->reason, "Wuhan lockdown");
    snprintf(c->operator_name, sizeof c->operator_name, "operator:alice");
  }
  int done = 0;
  engine_rec_t add_old = {.kind = ENGINE_REC_CUTOVER_NEW,
                          .at_ms = WORLD_T0_MS,
                          .wall_ms = WORLD_WALL0_MS,
                          .cutover = &old,
                          .leader_epoch = old_epoch};
  engine_rec_t add_new = add_old;
  add_new.cutover = &cur;
  add_new.leader_epoch = new_epoch;
  assert_int_equal(store_engine_record(T.db, &add_old, tk_counted, &done), 0);
  assert_int_equal(store_engine_record(T.db, &add_new, tk_counted, &done), 0);
  while (done < 2)
    uv_run(&T.loop, UV_RUN_ONCE);
  assert_int_equal(tk_count("SELECT count(*) FROM cutovers WHERE id = %d", 1000001), 0);
  assert_int_equal(
      tk_count("SELECT count(*) FROM cutovers WHERE id = %d AND state = 'active'", 2000001), 1);
  assert_int_equal(tk_count("SELECT count(*) FROM audit_log WHERE action = 'superseded' AND "
                            "target = 'cutover %d' AND (detail->>'epoch')::bigint = 1 AND "
                            "(detail->>'newer_epoch')::bigint = 2",
                            1000001),
                   1);

  /* The older leader's end of the newer leader's cutover: not applied. */
  engine_rec_t end_old = {.kind = ENGINE_REC_CUTOVER_END,
                          .at_ms = WORLD_T0_MS + 60000,
                          .wall_ms = WORLD_WALL0_MS + 60000,
                          .id = cur.id,
                          .cutover_state = CUTOVER_RESTORED,
                          .actor = "operator:alice",
                          .leader_epoch = old_epoch};
  engine_rec_t amend_old = {.kind = ENGINE_REC_CUTOVER_AMEND,
                            .at_ms = WORLD_T0_MS + 60000,
                            .wall_ms = WORLD_WALL0_MS + 60000,
                            .cutover = &cur,
                            .leader_epoch = old_epoch};
  /* and its restore of some of the sources (the cutover keeps the rest) */
  cutover_t fewer = cur;
  snprintf(fewer.sources.v[0], sizeof fewer.sources.v[0], "henan");
  engine_rec_t sources_old = {.kind = ENGINE_REC_CUTOVER_SOURCES,
                              .at_ms = WORLD_T0_MS + 60000,
                              .wall_ms = WORLD_WALL0_MS + 60000,
                              .cutover = &fewer,
                              .leader_epoch = old_epoch};
  assert_int_equal(store_engine_record(T.db, &amend_old, tk_counted, &done), 0);
  assert_int_equal(store_engine_record(T.db, &end_old, tk_counted, &done), 0);
  assert_int_equal(store_engine_record(T.db, &sources_old, tk_counted, &done), 0);
  while (done < 5)
    uv_run(&T.loop, UV_RUN_ONCE);
  assert_int_equal(tk_count("SELECT count(*) FROM audit_log WHERE action = 'superseded' AND "
                            "detail->>'change' LIKE '%%keeps only the sources%%'"),
                   1);
  assert_int_equal(
      tk_count("SELECT count(*) FROM cutovers WHERE id = %d AND sources = '{hubei}'", 2000001), 1);
  assert_int_equal(
      tk_count("SELECT count(*) FROM cutovers WHERE id = %d AND state = 'active'", 2000001), 1);
  assert_int_equal(tk_count("SELECT count(*) FROM audit_log WHERE action = 'superseded' AND "
                            "target = 'cutover %d'",
                            2000001),
                   3);
  /* The newest leader's end is applied, and nothing is said of it. */
  engine_rec_t end_new = end_old;
  end_new.leader_epoch = new_epoch;
  assert_int_equal(store_engine_record(T.db, &end_new, tk_counted, &done), 0);
  while (done < 6)
    uv_run(&T.loop, UV_RUN_ONCE);
  assert_int_equal(
      tk_count("SELECT count(*) FROM cutovers WHERE id = %d AND state = 'restored'", 2000001), 1);
  assert_int_equal(tk_count("SELECT count(*) FROM audit_log WHERE action = 'superseded' AND "
                            "target = 'cutover %d'",
                            2000001),
                   3);
  /* A new leader's load sees none of the older leader's cutovers. */
  admin_rules_t rules;
  char err[512];
  if (admin_load_rules(T.ci, &rules, err, sizeof err) != 0) fail_msg("load rules: %s", err);
  assert_int_equal(rules.n_cutovers, 0);
  admin_rules_free(&rules);

  tk_db_done(&keep);
}

/* ---- a site held home after its agent's early returns ----
 *
 * hubei's agent keeps going home before its cutover's end (its clock runs
 * ahead): the third return holds it home at leader 1. Leader 2 takes over
 * from the database and must keep it held: sending the move again would
 * start the loop anew (tk_takeover fails on any directive the old leader
 * would not have sent), as it did when the hold lived in memory only. A
 * readmit at leader 2 ends it durably: leader 3 does not hold it, and the
 * audit trail has the hold's start and end, with who ended it. */
static void tk_home_early(world_t *w, engine_t *e, size_t i) {
  route_t left = engine_site_dir(e, i)->acked;
  assert_true(left.revert_at_ms > w->now);
  engine_on_agent_reverted(e, i, left.epoch, left.version, NULL, false);
  w->applied[i] = engine_site_dir(e, i)->acked; /* home: what its next Hello says */
  tk_settle(w, e, w->n_sent, NULL);
}

static void test_early_return_hold_survives_takeover(void **state) {
  if (!T.have_pg) skip();
  tk_saved_t keep;
  tk_db_own("held", &keep);

  world_t *w = world_new();
  engine_t *e = tk_first_leader(w);
  size_t i = world_index(w, "hubei");
  world_cutover_for(w, e, 1, "hubei", "shaanxi", 3 * 3600000);
  tk_settle(w, e, 0, NULL);
  assert_int_equal(route_share_of(&engine_site_dir(e, i)->acked, "shaanxi"), 1000);
  for (unsigned k = 1; k <= ENGINE_RETURNS_HOLD; k++) {
    tk_home_early(w, e, i);
    bool moved = route_share_of(&engine_site_dir(e, i)->acked, "shaanxi") == 1000;
    if (moved != (k < ENGINE_RETURNS_HOLD))
      fail_msg("early return %u: hubei %s", k, moved ? "moved again" : "not moved again");
  }
  assert_int_equal(engine_site_dir(e, i)->returns.state, ENGINE_RETURNS_HELD);

  e = tk_takeover(w, e, 2);
  const site_dir_t *d = engine_site_dir(e, i);
  if (d->returns.state != ENGINE_RETURNS_HELD)
    fail_msg("leader 2 does not hold hubei home (state %s)",
             engine_returns_state_name(d->returns.state));
  if (!strstr(d->note, "its agent went home early 3 times"))
    fail_msg("leader 2's note for hubei: '%s'", d->note);
  size_t sent = world_sent_count(w, "hubei");
  for (int k = 0; k < 5; k++) {
    w->now += 60000;
    w->mono += 60000;
    w->wall += 60000;
    engine_tick(e);
    tk_settle(w, e, w->n_sent, NULL);
  }
  assert_int_equal(world_sent_count(w, "hubei"), sent);

  char *names[] = {"hubei"};
  Nirc__RestoreRequest r = NIRC__RESTORE_REQUEST__INIT;
  r.sources = names;
  r.n_sources = 1;
  r.readmit = 1;
  r.reason = "ntp fixed";
  engine_req_t rq = tk_req(w, "operator:olga");
  engine_op_restore(e, &rq, &r);
  tk_settle(w, e, 0, NULL);
  assert_int_equal(route_share_of(&engine_site_dir(e, i)->acked, "shaanxi"), 1000);

  e = tk_takeover(w, e, 3); /* routes hubei to shaanxi, as leader 2 did */
  assert_int_equal(engine_site_dir(e, i)->returns.state, ENGINE_RETURNS_NONE);
  assert_int_equal(tk_count("SELECT count(*) FROM route_return_holds WHERE site = 'hubei' AND "
                            "cleared_by = 'operator:olga' AND cleared_why = 'ntp fixed' AND "
                            "returns = 3 AND rule_kind = 'cutover'"),
                   1);
  assert_int_equal(
      tk_count("SELECT count(*) FROM audit_log WHERE action = 'hold-home' AND "
               "actor = 'engine' AND target = 'hubei' AND (detail->>'returns')::int = 3"),
      1);
  assert_int_equal(tk_count("SELECT count(*) FROM audit_log WHERE action = 'hold-home-end' AND "
                            "actor = 'operator:olga' AND target = 'hubei'"),
                   1);
  engine_free(e);
  world_free(w);

  tk_db_done(&keep);
}

/* ---- a rule load that is stopped, or given up without an answer ---- */

static uint64_t tk_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits (5 s at most) for a rule load's session to wait on a lock, keeps
 * its pid in *arg, then stops the load (writes to the pipe in arg[1]). */
static void tk_stop_when_waiting(void *arg) {
  int *a = arg;
  PGconn *c = PQconnectdb(T.ci);
  for (int i = 0; i < 250 && PQstatus(c) == CONNECTION_OK && !a[0]; i++) {
    PGresult *r = PQexec(c, "SELECT pid FROM pg_stat_activity WHERE application_name = "
                            "'nircd-rule-load' AND wait_event_type = 'Lock'");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) a[0] = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!a[0]) usleep(20000);
  }
  PQfinish(c);
  if (write(a[1], "s", 1) != 1) a[0] = -1;
}

/* A stop (stop_fd readable) ends a load at once, as NIRC_ECLOSED, not as
 * a failure to try again: before it connected, and while it waits for a
 * lock, when it hands back its backend pid (that backend may keep its
 * SHARE locks if it does not run: store/leader.c ends it). A load that
 * failed with an answer (its own lock_timeout) hands back none. */
static void test_rule_load_stop_and_abandoned_backend(void **state) {
  if (!T.have_pg) skip();
  admin_rules_t rules;
  char err[512];
  int stop[2], pid = -1;
  assert_int_equal(pipe(stop), 0);
  assert_int_equal(write(stop[1], "s", 1), 1);
  admin_load_opts_t o = {.budget_ms = 5000, .lock_wait_ms = 5000, .stop_fd = &stop[0], .pid = &pid};
  uint64_t t = tk_mono_ms();
  assert_int_equal(admin_load_rules_within(T.ci, &o, &rules, err, sizeof err), NIRC_ECLOSED);
  assert_true(tk_mono_ms() - t < 1000);
  assert_non_null(strstr(err, "connecting: given up: the controller is stopping"));
  assert_int_equal(pid, 0);
  close(stop[0]);
  close(stop[1]);

  /* A writer's transaction holds cutovers against the load's SHARE lock. */
  PGconn *dba = PQconnectdb(T.ci);
  assert_int_equal(PQstatus(dba), CONNECTION_OK);
  PQclear(PQexec(dba, "BEGIN"));
  PQclear(PQexec(dba, "LOCK TABLE cutovers IN ROW EXCLUSIVE MODE"));
  assert_int_equal(pipe(stop), 0);
  int arg[2] = {0, stop[1]};
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, tk_stop_when_waiting, arg), 0);
  t = tk_mono_ms();
  assert_int_equal(admin_load_rules_within(T.ci, &o, &rules, err, sizeof err), NIRC_ECLOSED);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_true(tk_mono_ms() - t < 4000); /* not the lock's 5 s */
  assert_non_null(strstr(err, "locking the rule tables: given up: the controller is stopping"));
  assert_true(arg[0] > 0);
  assert_int_equal(pid, arg[0]);
  close(stop[0]);
  close(stop[1]);

  o = (admin_load_opts_t){.budget_ms = 5000, .lock_wait_ms = 100, .pid = &pid};
  assert_int_equal(admin_load_rules_within(T.ci, &o, &rules, err, sizeof err), NIRC_ETIMEOUT);
  assert_int_equal(pid, 0);
  PQclear(PQexec(dba, "ROLLBACK"));
  PQfinish(dba);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load_estimate_carries_over),
      cmocka_unit_test(test_journaled_rows_keep_event_time),
      cmocka_unit_test(test_overflow_state_round_trip),
      cmocka_unit_test(test_schedule_change_round_trip),
      cmocka_unit_test(test_leader_change_routes_the_same),
      cmocka_unit_test(test_forced_amendment_survives_takeover),
      cmocka_unit_test(test_older_leaders_rule_write_is_superseded),
      cmocka_unit_test(test_early_return_hold_survives_takeover),
      cmocka_unit_test(test_rule_load_stop_and_abandoned_backend),
  };
  return cmocka_run_group_tests(tests, tk_setup, tk_teardown);
}
