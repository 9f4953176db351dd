/* `nircctl schedule set` and `overflow set` while PostgreSQL is
 * unreachable, through the engine, the real store (store.c) and the
 * outage journal, against the shared PostgreSQL (a database of this
 * process's own, support/pgtest.h).
 *
 * The database "goes down" by pointing the store at a client that reaches
 * no server and journals every write, as nircd's does in an outage; it
 * "comes back" by replaying that journal, blocking as nircd does at
 * start-up (db_admin_replay_journal) or on a client that connects, as a
 * running leader does. What an operator was told must then be true: a
 * change answered "recorded only in the leader's outage journal" is
 * in the rule table and its audit row once, with before and after; a
 * change refused for want of room is nowhere, not even in the engine's
 * memory; a dry run is nowhere either, even one refused. An alarm a
 * deposed leader journaled is not left active for ever. */
#include "admin.h"
#include "db.h"
#include "engine-int.h" /* the engine's rules, to check what it routes on */
#include "engine.h"
#include "err.h"
#include "journal.h"
#include "log.h"
#include "store.h"
#include "support/pgtest.h"
#include "support/tmpdir.h"
#include "support/world.h"

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
  uv_loop_t loop;
  db_t *live; /* on the test database */
  db_t *db;   /* where the store writes now: live, or a client in an outage */
  int inflight;
  unsigned write_errors;
  char dir[64], path[128]; /* the outage journal */
} S;

/* ---- the real store behind the world ---- */

typedef struct {
  engine_stored_cb done;
  void *arg;
} sc_wait_t;

static void sc_stored(void *arg, int err, const char *msg) {
  sc_wait_t *x = arg;
  S.inflight--;
  if (err) S.write_errors++;
  if (x->done) x->done(x->arg, err, msg);
  free(x);
}

static int sc_store(void *ctx, const engine_rec_t *rec, engine_stored_cb done, void *arg) {
  (void)ctx;
  sc_wait_t *x = malloc(sizeof *x);
  if (!x) return NIRC_ENOMEM;
  *x = (sc_wait_t){done, arg};
  int rc = store_engine_record(S.db, rec, sc_stored, x);
  if (rc != 0) {
    free(x);
    return rc;
  }
  S.inflight++;
  return 0;
}

/* Runs the loop until every record stored so far is committed or synced
 * in the journal (and the replies waiting for them are sent). */
static void sc_drain(void) {
  while (S.inflight > 0)
    uv_run(&S.loop, UV_RUN_ONCE);
}

/* What nircd's store_ready says (server_io_store_ready), for the world. */
static void sc_ready(world_t *w) {
  w->store_refuse = db_once_ready(S.db, w->store_why, sizeof w->store_why);
}

static void sc_closed(void *arg) {
  *(int *)arg = 1;
}

static void sc_close(db_t *db) {
  if (S.db == db) S.db = S.live; /* the store's client is gone: back to the live one */
  int closed = 0;
  db_close(db, sc_closed, &closed);
  while (!closed)
    uv_run(&S.loop, UV_RUN_ONCE);
}

/* The database goes away: from here on the store writes to a client that
 * reaches no server, with the outage journal at S.path (max bytes; 0: the
 * default). */
static db_t *sc_outage(uint64_t max) {
  db_opts_t o = {.journal = S.path, .journal_max = max};
  db_t *down = NULL;
  assert_int_equal(db_open_opts(&S.loop, PGTEST_UNREACHABLE, &o, &down), 0);
  S.db = down;
  return down;
}

static uint64_t sc_jrecords(const db_t *db) {
  db_journal_stats_t st;
  db_journal_stats(db, &st);
  return st.records;
}

static long sc_long(const char *sql) {
  char v[64] = "";
  assert_int_equal(pgtest_sql(pgtest_env.main_ci, sql, v, sizeof v), 0);
  return strtol(v, NULL, 10);
}

static void sc_text(const char *sql, char *out, size_t n) {
  out[0] = '\0';
  assert_int_equal(pgtest_sql(pgtest_env.main_ci, sql, out, n), 0);
}

/* ---- operator requests ---- */

static uint64_t sc_rid;

static engine_req_t sc_req(world_t *w) {
  return (engine_req_t){
      .client = w, .request_id = ++sc_rid, .operator_name = "admin:bob", .label = "t"};
}

/* A schedule request (NULL: a field not given). */
typedef struct {
  Nirc__RuleOp op;
  const char *name, *source, *hub, *start, *end;
  bool dry_run;
  char **except; /* n_except dates */
  size_t n_except;
} sc_sched_t;

static void sc_schedule(world_t *w, engine_t *e, const sc_sched_t *q) {
  char *src[] = {(char *)q->source}, *hub[] = {(char *)q->hub};
  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  sp.name = (char *)q->name;
  sp.sources = src;
  sp.n_sources = q->source ? 1 : 0;
  sp.hubs = hub;
  sp.n_hubs = q->hub ? 1 : 0;
  sp.start = (char *)q->start;
  sp.end = (char *)q->end;
  sp.exceptions = q->except;
  sp.n_exceptions = q->n_except;
  Nirc__ScheduleRequest rq = NIRC__SCHEDULE_REQUEST__INIT;
  rq.op = q->op;
  rq.name = (char *)q->name;
  rq.spec = &sp;
  rq.dry_run = q->dry_run;
  rq.force = q->op == NIRC__RULE_OP__RULE_OP_ADD; /* the capacity check is not the point */
  engine_req_t r = sc_req(w);
  engine_op_schedule(e, &r, &rq);
}

/* An overflow rule's request: name, source and hub (NULL: not given). */
static void sc_overflow(world_t *w, engine_t *e, Nirc__RuleOp op, const char *name,
                        const char *source, const char *hub, bool dry_run) {
  char *hubs[] = {(char *)hub};
  Nirc__OverflowSpec sp = NIRC__OVERFLOW_SPEC__INIT;
  sp.name = (char *)name;
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
  rq.name = (char *)name;
  rq.spec = &sp;
  rq.dry_run = dry_run;
  engine_req_t r = sc_req(w);
  engine_op_overflow(e, &r, &rq);
}

static const world_reply_t *sc_last(world_t *w) {
  assert_true(w->n_rep > 0);
  return &w->rep[w->n_rep - 1];
}

/* The last reply says the change is done but only in the journal. */
static void sc_assert_journal_only(world_t *w) {
  const world_reply_t *r = sc_last(w);
  if (!r->ok || !strstr(r->msg, "only in the leader's outage journal"))
    fail_msg("reply ok %d: %s", r->ok, r->msg);
  assert_int_equal(r->code, NIRC__ERROR_CODE__ERROR_CODE_UNAVAILABLE); /* exit 4 */
}

static const schedule_t *sc_engine_sch(engine_t *e, const char *name) {
  for (size_t k = 0; k < e->n_sch; k++)
    if (strcmp(e->sch[k].name, name) == 0) return &e->sch[k];
  return NULL;
}

static const overflow_rule_t *sc_engine_ovf(engine_t *e, const char *name) {
  for (size_t k = 0; k < e->n_ovf; k++)
    if (strcmp(e->ovf[k].name, name) == 0) return &e->ovf[k];
  return NULL;
}

/* A leader of epoch 5 whose records go through the real store to the
 * live database; its new rules take ids after those in the database. */
static engine_t *sc_leader(world_t *w) {
  w->store_next = sc_store;
  S.db = S.live;
  long max = sc_long("SELECT greatest((SELECT coalesce(max(id), 0) FROM schedules), (SELECT "
                     "coalesce(max(id), 0) FROM overflow_rules))");
  engine_t *e = world_engine(w);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, (uint64_t)max), 0);
  engine_start_leading(e, 5000);
  world_connect_all(w, e, NULL);
  return e;
}

/* Rules made while the database is up: schedule `name` (source to hub,
 * start to end) and overflow rule `ovf` (ovf_source to ovf_hub), both
 * answered. */
static void sc_add_rules(world_t *w, engine_t *e, const char *const sch[5],
                         const char *const ovf[3]) {
  sc_schedule(w, e,
              &(sc_sched_t){.op = NIRC__RULE_OP__RULE_OP_ADD,
                            .name = sch[0],
                            .source = sch[1],
                            .hub = sch[2],
                            .start = sch[3],
                            .end = sch[4]});
  sc_overflow(w, e, NIRC__RULE_OP__RULE_OP_ADD, ovf[0], ovf[1], ovf[2], false);
  sc_drain();
  assert_true(w->n_rep >= 2 && w->rep[w->n_rep - 2].ok && w->rep[w->n_rep - 1].ok);
}

/* The controller in an outage stops (its client closes, the journal
 * stays) and the database comes back before it starts again: the
 * start-up replay (nircd's server_start) empties the journal. */
static void sc_restart(db_t *down) {
  char err[512];
  sc_close(down);
  if (db_admin_replay_journal(pgtest_env.main_ci, S.path, err, sizeof err) != 0)
    fail_msg("replay: %s", err);
}

/* ---- set-up ---- */

static int sc_setup(void **state) {
  if (pgtest_need_schema(state) != 0) return -1;
  if (!pgtest_env.have_pg) return 0;
  world_t *w = world_new(); /* the sites, for the directives' foreign key */
  for (size_t i = 0; i < w->sites->n; i++) {
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO sites (slug, name_en, name_zh, is_hub) VALUES ('%s', '%s', '', %s) ON "
             "CONFLICT DO NOTHING",
             w->sites->v[i].slug, w->sites->v[i].slug, w->sites->v[i].is_hub ? "true" : "false");
    if (pgtest_sql(pgtest_env.main_ci, sql, NULL, 0) != 0) return -1;
  }
  world_free(w);
  if (uv_loop_init(&S.loop) != 0) return -1;
  if (db_open(&S.loop, pgtest_env.main_ci, &S.live) != 0) return -1;
  snprintf(S.dir, sizeof S.dir, "/tmp/nirc-store-changes-XXXXXX");
  if (!mkdtemp(S.dir)) return -1;
  snprintf(S.path, sizeof S.path, "%s/nircd.journal", S.dir);
  S.write_errors = 0;
  return 0;
}

static int sc_teardown(void **state) {
  (void)state;
  if (!pgtest_env.have_pg) return 0;
  if (S.db && S.db != S.live) sc_close(S.db); /* a test that failed in an outage */
  S.db = NULL;
  sc_close(S.live);
  uv_run(&S.loop, UV_RUN_DEFAULT);
  uv_loop_close(&S.loop);
  tmpdir_remove(S.dir);
  return 0;
}

/* ---- the tests ---- */

/* Set during an outage: answered as done, in the journal only (exit 4);
 * a dry run beside it writes nothing. The controller is restarted before
 * the database is back: the start-up replay puts the changed rows and
 * their audit entries in once, and a new leader loads the changed rules,
 * not the rows as they were before. */
static void test_set_in_an_outage_survives_a_restart(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  world_t *w = world_new();
  engine_t *e = sc_leader(w);
  sc_add_rules(w, e, (const char *const[]){"night", "hubei", "shaanxi", "10:00", "13:00"},
               (const char *const[]){"hunan-ovf", "hunan", "henan"});
  assert_int_equal(sc_long("SELECT count(*) FROM schedules WHERE name = 'night'"), 1);

  db_t *down = sc_outage(0);
  sc_ready(w);
  assert_int_equal(w->store_refuse, 0);
  /* Dry runs: answered, and nothing anywhere. */
  size_t recs = w->n_rec;
  sc_schedule(w, e,
              &(sc_sched_t){.op = NIRC__RULE_OP__RULE_OP_SET,
                            .name = "night",
                            .hub = "henan",
                            .end = "14:00",
                            .dry_run = true});
  assert_true(sc_last(w)->ok);
  sc_overflow(w, e, NIRC__RULE_OP__RULE_OP_SET, "hunan-ovf", NULL, "sichuan", true);
  assert_true(sc_last(w)->ok);
  /* Refused dry runs (nothing to change, no such rule, a bad date):
   * answered, and nothing written either, not even the refusal. */
  sc_schedule(
      w, e,
      &(sc_sched_t){
          .op = NIRC__RULE_OP__RULE_OP_SET, .name = "night", .end = "13:00", .dry_run = true});
  assert_false(sc_last(w)->ok);
  assert_non_null(strstr(sc_last(w)->msg, "nothing to change"));
  char *bad[] = {"2020-13-45"};
  sc_schedule(w, e,
              &(sc_sched_t){.op = NIRC__RULE_OP__RULE_OP_SET,
                            .name = "night",
                            .except = bad,
                            .n_except = 1,
                            .dry_run = true});
  assert_int_equal(sc_last(w)->code, NIRC__ERROR_CODE__ERROR_CODE_INVALID);
  sc_overflow(w, e, NIRC__RULE_OP__RULE_OP_SET, "no-such-ovf", NULL, "sichuan", true);
  assert_false(sc_last(w)->ok);
  sc_drain();
  assert_int_equal(w->n_rec, recs);
  assert_int_equal(sc_jrecords(down), 0);
  assert_string_equal(sc_engine_sch(e, "night")->hubs.v[0], "shaanxi");
  assert_string_equal(sc_engine_ovf(e, "hunan-ovf")->hubs.v[0], "henan");

  size_t replies = w->n_rep;
  sc_schedule(
      w, e,
      &(sc_sched_t){
          .op = NIRC__RULE_OP__RULE_OP_SET, .name = "night", .hub = "henan", .end = "14:00"});
  assert_int_equal(w->n_rep, replies); /* answered once it is in the journal */
  sc_drain();
  sc_assert_journal_only(w);
  sc_overflow(w, e, NIRC__RULE_OP__RULE_OP_SET, "hunan-ovf", NULL, "sichuan", false);
  sc_drain();
  sc_assert_journal_only(w);
  assert_int_equal(S.write_errors, 0);
  assert_int_equal(sc_jrecords(down), 4); /* each: its row and its audit entry */
  assert_int_equal(sc_long("SELECT count(*) FROM audit_log WHERE action LIKE '%-change'"), 0);
  assert_int_equal(sc_engine_sch(e, "night")->end_min, 14 * 60); /* in force here */

  /* nircd stops (its journal stays) and starts again: the start-up replay
   * comes before the rules are loaded. */
  engine_free(e);
  sc_restart(down);
  char err[512], v[512];
  sc_text("SELECT hubs::text || ' ' || end_min FROM schedules WHERE name = 'night'", v, sizeof v);
  assert_string_equal(v, "{henan} 840");
  sc_text("SELECT hubs::text FROM overflow_rules WHERE name = 'hunan-ovf'", v, sizeof v);
  assert_string_equal(v, "{sichuan}");
  sc_text("SELECT string_agg((detail->'before'->>'end') || '>' || (detail->'after'->>'end') || "
          "' ' || (detail->'before'->'hubs'->>0) || '>' || (detail->'after'->'hubs'->>0), ',') "
          "FROM audit_log WHERE action = 'schedule-change' AND target = 'night'",
          v, sizeof v);
  assert_string_equal(v, "13:00>14:00 shaanxi>henan");
  sc_text(
      "SELECT string_agg((detail->'before'->'hubs'->>0) || '>' || (detail->'after'->'hubs'->>0), "
      "',') FROM audit_log WHERE action = 'overflow-change' AND target = 'hunan-ovf'",
      v, sizeof v);
  assert_string_equal(v, "henan>sichuan");
  assert_int_equal(sc_long("SELECT count(*) FROM audit_log WHERE action = 'superseded'"), 0);
  /* A second start finds nothing to replay: still once. */
  assert_int_equal(db_admin_replay_journal(pgtest_env.main_ci, S.path, err, sizeof err), 0);
  assert_int_equal(sc_long("SELECT count(*) FROM audit_log WHERE action LIKE '%-change'"), 2);

  /* The next leader loads the changed rows. */
  admin_rules_t rules;
  if (admin_load_rules(pgtest_env.main_ci, &rules, err, sizeof err) != 0)
    fail_msg("load rules: %s", err);
  engine_t *b = world_engine(w);
  assert_int_equal(engine_load_rules(b, 6, rules.cutovers, rules.n_cutovers, rules.schedules,
                                     rules.n_schedules, rules.overflows, rules.n_overflows,
                                     rules.max_id),
                   0);
  admin_rules_free(&rules);
  assert_int_equal(sc_engine_sch(b, "night")->end_min, 14 * 60);
  assert_string_equal(sc_engine_sch(b, "night")->hubs.v[0], "henan");
  assert_string_equal(sc_engine_ovf(b, "hunan-ovf")->hubs.v[0], "sichuan");
  engine_free(b);
  world_flush(w);
  world_free(w);
}

/* Fills the journal of db (at most max bytes) with urgent writes until
 * `room` bytes are left, give or take the few bytes a key's length
 * varies by. */
static void sc_fill(db_t *db, uint64_t max, uint64_t room) {
  static const char sql[] = "INSERT INTO link_events (kind, peer, event, detail) VALUES "
                            "('unknown', 'sc-fill', 'fill', $1)";
  char *pad = malloc(2048);
  assert_non_null(pad);
  for (;;) {
    db_journal_stats_t st;
    db_journal_stats(db, &st);
    uint64_t used = 16 + st.bytes; /* the header, then the records */
    assert_true(used + room <= max);
    uint64_t left = max - used - room;
    if (left < 64) break;
    const char *p0[] = {""};
    size_t base = journal_record_size("0123456789abcdef-99", sql, 1, p0);
    size_t len = left - base > 2000 ? 1500 : left - base;
    memset(pad, 'x', len);
    pad[len] = '\0';
    const char *p[] = {pad};
    assert_int_equal(db_exec_once(db, sql, 1, p, NULL, NULL), 0);
  }
  free(pad);
}

/* The journal is full (PostgreSQL down): a set is refused with the cause
 * and the fix, and nothing of it is anywhere: not in the journal, not in
 * the engine's memory (it does not route on it), not in the database
 * once it is back. */
static void test_set_refused_when_the_journal_is_full(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  world_t *w = world_new();
  engine_t *e = sc_leader(w);
  sc_add_rules(w, e, (const char *const[]){"full", "guangdong", "sichuan", "10:00", "13:00"},
               (const char *const[]){"hainan-ovf", "hainan", "henan"});
  world_tick(w, e, 200);
  world_ack(w, e, 0, NULL);
  sc_drain();
  const uint64_t max = 64 * 1024;
  db_t *down = sc_outage(max);
  sc_fill(down, max, 2000);
  sc_drain();
  uint64_t held = sc_jrecords(down);
  size_t recs = w->n_rec, sent = w->n_sent;
  sc_ready(w);
  assert_int_equal(w->store_refuse, NIRC_EFULL);
  sc_schedule(w, e,
              &(sc_sched_t){.op = NIRC__RULE_OP__RULE_OP_SET, .name = "full", .hub = "henan"});
  const world_reply_t *r = sc_last(w);
  assert_false(r->ok);
  assert_int_equal(r->code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED); /* exit 1 */
  if (!strstr(r->msg, "nothing was changed") || !strstr(r->msg, S.path) ||
      !strstr(r->msg, "no room for another change"))
    fail_msg("refusal: %s", r->msg);
  char why[400]; /* the world keeps the first 200 bytes; nircd all of them */
  assert_int_equal(db_once_ready(down, why, sizeof why), NIRC_EFULL);
  assert_non_null(strstr(why, "bring the database back, or raise [database] journal_max"));
  sc_overflow(w, e, NIRC__RULE_OP__RULE_OP_SET, "hainan-ovf", NULL, "shaanxi", false);
  r = sc_last(w);
  assert_false(r->ok);
  assert_non_null(strstr(r->msg, "nothing was changed"));
  sc_drain();
  assert_string_equal(sc_engine_sch(e, "full")->hubs.v[0], "sichuan");
  assert_string_equal(sc_engine_ovf(e, "hainan-ovf")->hubs.v[0], "henan");
  world_tick(w, e, 200);
  world_tick(w, e, 200);
  assert_int_equal(w->n_sent, sent); /* guangdong stays at sichuan */
  assert_int_equal(w->n_rec, recs);
  assert_int_equal(sc_jrecords(down), held);
  /* The database back: the rows as they were, no change audited. */
  sc_restart(down);
  char v[128];
  sc_text("SELECT hubs::text FROM schedules WHERE name = 'full'", v, sizeof v);
  assert_string_equal(v, "{sichuan}");
  sc_text("SELECT hubs::text FROM overflow_rules WHERE name = 'hainan-ovf'", v, sizeof v);
  assert_string_equal(v, "{henan}");
  assert_int_equal(sc_long("SELECT count(*) FROM audit_log WHERE action LIKE '%-change' AND "
                           "target IN ('full', 'hainan-ovf')"),
                   0);
  engine_free(e);
  world_flush(w);
  world_free(w);
}

/* A change accepted with the room a change needs (4 KiB) may take more:
 * this set, with 64 exception dates before and 64 others after, takes
 * 4,249 bytes (its row, then its audit entry). Its row went in and its
 * audit entry was refused for want of room: the change was in force,
 * half journaled, and the operator told it was "NOT recorded durably (a
 * new leader will not know it)", which was false too (the row was in the
 * journal). A change that was accepted is journaled whole. */
static void test_an_accepted_change_is_journaled_whole(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  world_t *w = world_new();
  engine_t *e = sc_leader(w);
  static char d1[64][16], d2[64][16];
  char *x1[64], *x2[64];
  for (int k = 0; k < 64; k++) {
    snprintf(d1[k], 16, "2021-%02d-%02d", 1 + k / 28, 1 + k % 28);
    snprintf(d2[k], 16, "2022-%02d-%02d", 1 + k / 28, 1 + k % 28);
    x1[k] = d1[k];
    x2[k] = d2[k];
  }
  sc_schedule(w, e,
              &(sc_sched_t){.op = NIRC__RULE_OP__RULE_OP_ADD,
                            .name = "dates",
                            .source = "hunan",
                            .hub = "shaanxi",
                            .start = "01:00",
                            .end = "02:00",
                            .except = x1,
                            .n_except = 64});
  sc_drain();
  assert_true(sc_last(w)->ok);
  const uint64_t max = 64 * 1024;
  db_t *down = sc_outage(max);
  sc_fill(down, max, DB_JOURNAL_CHANGE_ROOM + 8);
  sc_drain();
  uint64_t held = sc_jrecords(down);
  sc_ready(w);
  assert_int_equal(w->store_refuse, 0);
  sc_schedule(w, e,
              &(sc_sched_t){
                  .op = NIRC__RULE_OP__RULE_OP_SET, .name = "dates", .except = x2, .n_except = 64});
  sc_drain();
  sc_assert_journal_only(w);
  assert_int_equal(S.write_errors, 0);
  assert_int_equal(sc_jrecords(down), held + 2);
  assert_int_equal(sc_engine_sch(e, "dates")->exceptions[0], 20220101);
  /* And now the journal is full: the next change is refused. */
  sc_ready(w);
  assert_int_equal(w->store_refuse, NIRC_EFULL);
  engine_free(e);
  sc_restart(down);
  char v[64];
  sc_text("SELECT exceptions[1]::text FROM schedules WHERE name = 'dates'", v, sizeof v);
  assert_string_equal(v, "2022-01-01");
  sc_text("SELECT count(*)::text || ' ' || min(detail->'after'->'exceptions'->>0) FROM audit_log "
          "WHERE action = 'schedule-change' AND target = 'dates'",
          v, sizeof v);
  assert_string_equal(v, "1 2022-01-01");
  world_flush(w);
  world_free(w);
}

/* A running leader's database comes back: its client replays the journal
 * in order. One rule added, changed and removed in the outage ends
 * removed with the change (the removal does not bring the old row back,
 * and the change does not miss the row added before it); an overflow rule
 * added and changed ends changed; each audit entry once. */
static void test_journal_order_add_change_remove(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  world_t *w = world_new();
  engine_t *e = sc_leader(w);
  db_t *down = sc_outage(0);
  sc_ready(w);
  sc_schedule(w, e,
              &(sc_sched_t){.op = NIRC__RULE_OP__RULE_OP_ADD,
                            .name = "order",
                            .source = "hainan",
                            .hub = "sichuan",
                            .start = "03:00",
                            .end = "04:00"});
  sc_drain();
  sc_assert_journal_only(w);
  sc_ready(w);
  sc_schedule(w, e,
              &(sc_sched_t){.op = NIRC__RULE_OP__RULE_OP_SET, .name = "order", .end = "05:00"});
  sc_drain();
  sc_assert_journal_only(w);
  sc_ready(w);
  sc_overflow(w, e, NIRC__RULE_OP__RULE_OP_ADD, "order-ovf", "guangdong", "shaanxi", false);
  sc_drain();
  sc_ready(w);
  sc_overflow(w, e, NIRC__RULE_OP__RULE_OP_SET, "order-ovf", NULL, "henan", false);
  sc_drain();
  sc_assert_journal_only(w);
  sc_ready(w);
  sc_schedule(w, e, &(sc_sched_t){.op = NIRC__RULE_OP__RULE_OP_REMOVE, .name = "order"});
  sc_drain();
  sc_assert_journal_only(w);
  assert_int_equal(S.write_errors, 0);
  assert_int_equal(sc_jrecords(down), 10);
  assert_int_equal(sc_long("SELECT count(*) FROM schedules WHERE name = 'order'"), 0);
  sc_close(down);

  /* The database is back for the leader that journaled them. */
  db_opts_t o = {.journal = S.path};
  db_t *up = NULL;
  assert_int_equal(db_open_opts(&S.loop, pgtest_env.main_ci, &o, &up), 0);
  while (sc_jrecords(up) > 0)
    uv_run(&S.loop, UV_RUN_ONCE);
  db_journal_stats_t st;
  db_journal_stats(up, &st);
  assert_int_equal(st.replayed_total, 10);
  assert_int_equal(st.failed_total, 0);
  sc_close(up);
  char v[256];
  sc_text("SELECT end_min || ' ' || (removed_at IS NOT NULL) FROM schedules WHERE name = 'order'",
          v, sizeof v);
  assert_string_equal(v, "300 true");
  sc_text("SELECT hubs::text FROM overflow_rules WHERE name = 'order-ovf'", v, sizeof v);
  assert_string_equal(v, "{henan}");
  sc_text("SELECT string_agg(action, ',' ORDER BY id) FROM audit_log WHERE target IN ('order', "
          "'order-ovf')",
          v, sizeof v);
  assert_string_equal(v, "schedule-add,schedule-change,overflow-add,overflow-change,schedule-rm");
  admin_rules_t rules;
  char err[512];
  if (admin_load_rules(pgtest_env.main_ci, &rules, err, sizeof err) != 0)
    fail_msg("load rules: %s", err);
  for (size_t k = 0; k < rules.n_schedules; k++)
    assert_string_not_equal(rules.schedules[k].name, "order");
  admin_rules_free(&rules);
  engine_free(e);
  world_flush(w);
  world_free(w);
}

/* The leader that journaled a set died and a standby took over (a newer
 * epoch) before the database was back: the set reaches the database after
 * it and is not applied. The row stays as the new leader loaded it, and
 * the trail says so in a superseded entry, as the operator was told it
 * would be. Last: it leaves a newer epoch behind. */
static void test_set_journaled_by_a_deposed_leader_is_superseded(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  world_t *w = world_new();
  engine_t *e = sc_leader(w);
  sc_add_rules(w, e, (const char *const[]){"late", "hubei", "henan", "05:00", "06:00"},
               (const char *const[]){"late-ovf", "hunan", "shaanxi"});
  db_t *down = sc_outage(0);
  sc_ready(w);
  sc_schedule(w, e,
              &(sc_sched_t){.op = NIRC__RULE_OP__RULE_OP_SET, .name = "late", .end = "07:00"});
  sc_drain();
  const world_reply_t *r = sc_last(w);
  sc_assert_journal_only(w);
  assert_non_null(strstr(r->msg, "superseded"));
  sc_ready(w);
  sc_overflow(w, e, NIRC__RULE_OP__RULE_OP_SET, "late-ovf", NULL, "sichuan", false);
  sc_drain();
  sc_assert_journal_only(w);
  engine_free(e);
  /* A standby took over meanwhile: a newer epoch. */
  assert_int_equal(pgtest_sql(pgtest_env.main_ci,
                              "INSERT INTO epochs (epoch, node) VALUES (1000, 'standby')", NULL, 0),
                   0);
  sc_restart(down);
  char v[512];
  sc_text("SELECT end_min FROM schedules WHERE name = 'late'", v, sizeof v);
  assert_string_equal(v, "360");
  sc_text("SELECT hubs::text FROM overflow_rules WHERE name = 'late-ovf'", v, sizeof v);
  assert_string_equal(v, "{shaanxi}");
  sc_text("SELECT string_agg(target || ': ' || (detail->>'change'), '; ' ORDER BY id) FROM "
          "audit_log WHERE action = 'superseded'",
          v, sizeof v);
  if (!strstr(v, "schedule late: schedule 'late' (") || !strstr(v, ") changed by admin:bob") ||
      !strstr(v, "overflow late-ovf: overflow rule 'late-ovf' ("))
    fail_msg("superseded entries: %s", v);
  world_flush(w);
  world_free(w);
}

/* ---- alarms a deposed leader journaled ---- */

/* One alarm event through the real store, to wherever S.db writes now. */
static void sc_alarm(const alarm_t *a, alarm_event_t ev, int64_t wall_ms) {
  engine_rec_t rec = {.kind = ENGINE_REC_ALARM,
                      .alarm = a,
                      .alarm_event = ev,
                      .wall_ms = wall_ms,
                      .leader_epoch = a->id / ALARM_ID_EPOCH};
  assert_int_equal(sc_store(NULL, &rec, NULL, NULL), 0);
}

/* Whether the rule load (what a new leader adopts) lists alarm `id`. */
static bool sc_adopts(uint64_t id) {
  admin_rules_t rules;
  char err[512];
  if (admin_load_rules(pgtest_env.main_ci, &rules, err, sizeof err) != 0)
    fail_msg("load rules: %s", err);
  bool found = false;
  for (size_t k = 0; k < rules.n_alarms; k++)
    if (rules.alarms[k].id == id) found = true;
  admin_rules_free(&rules);
  return found;
}

/* A leader (epoch `old`) raised the database alarm while the database was
 * down, and cleared its leadership alarm, raised before the outage; both
 * wait in its journal while a standby takes over (old + 1) and adopts what
 * is active then. When the journal reaches the database after that
 * takeover, the raise must not stand active for ever (nobody would clear
 * it, and the next leader would adopt a deposed controller's condition):
 * it is stored closed as of the takeover, saying why. The clear of the
 * alarm the new leader adopted still applies, and the new leader's own
 * raises stay active. */
static void test_alarm_journaled_by_a_deposed_leader_is_closed(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  long old = sc_long("SELECT coalesce(max(epoch), 0) + 1 FROM epochs");
  char sql[256];
  snprintf(sql, sizeof sql, "INSERT INTO epochs (epoch, node) VALUES (%ld, 'deposed')", old);
  assert_int_equal(pgtest_sql(pgtest_env.main_ci, sql, NULL, 0), 0);
  int64_t t0 = (int64_t)sc_long("SELECT (extract(epoch FROM now()) * 1000)::bigint");
  alarm_t lead = {.id = (uint64_t)old * ALARM_ID_EPOCH + 1,
                  .kind = ALARM_LEADERSHIP,
                  .subject = "nircd-a",
                  .message = "leading but issuing nothing",
                  .raised_wall_ms = t0 - 60000};
  alarm_t dbal = {.id = (uint64_t)old * ALARM_ID_EPOCH + 2,
                  .kind = ALARM_DATABASE,
                  .subject = "nircd-a",
                  .message = "database unreachable",
                  .raised_wall_ms = t0 - 30000};
  S.db = S.live;
  sc_alarm(&lead, ALARM_EV_RAISED, lead.raised_wall_ms);
  sc_drain();
  db_t *down = sc_outage(0);
  sc_alarm(&dbal, ALARM_EV_RAISED, dbal.raised_wall_ms);
  snprintf(lead.message, sizeof lead.message, "%s", "issuing again");
  sc_alarm(&lead, ALARM_EV_CLEARED, t0 - 20000);
  sc_drain();
  assert_int_equal(sc_jrecords(down), 2);

  /* The standby takes over: it adopts the leadership alarm, active then,
   * and raises one of its own. */
  snprintf(sql, sizeof sql, "INSERT INTO epochs (epoch, node) VALUES (%ld, 'standby')", old + 1);
  assert_int_equal(pgtest_sql(pgtest_env.main_ci, sql, NULL, 0), 0);
  assert_true(sc_adopts(lead.id));
  alarm_t mine = {.id = (uint64_t)(old + 1) * ALARM_ID_EPOCH + 1,
                  .kind = ALARM_SITE_DOWN,
                  .subject = "hubei",
                  .message = "link down",
                  .raised_wall_ms = t0};
  S.db = S.live;
  sc_alarm(&mine, ALARM_EV_RAISED, t0);
  sc_drain();

  sc_restart(down);
  assert_int_equal(S.write_errors, 0);
  char v[1024];
  snprintf(sql, sizeof sql,
           "SELECT (cleared_at >= raised_at AND cleared_at >= (SELECT started_at FROM epochs "
           "WHERE epoch = %ld)) || ' ' || last_message FROM alarms WHERE id = %llu",
           old + 1, (unsigned long long)dbal.id);
  sc_text(sql, v, sizeof v);
  char want[160];
  snprintf(want, sizeof want,
           "true raised by the leader of epoch %ld and written to the database only after the "
           "leader of epoch %ld had taken over",
           old, old + 1);
  if (strncmp(v, want, strlen(want)) != 0 || !strstr(v, "Raised as: database unreachable"))
    fail_msg("the deposed leader's raise: %s", v);
  assert_false(sc_adopts(dbal.id));
  snprintf(sql, sizeof sql,
           "SELECT last_message FROM alarms WHERE id = %llu AND cleared_at IS NOT NULL",
           (unsigned long long)lead.id);
  sc_text(sql, v, sizeof v);
  assert_string_equal(v, "issuing again");
  assert_false(sc_adopts(lead.id));
  assert_true(sc_adopts(mine.id));
}

/* Brief s21A: an active alarm moved back to an earlier sighting reported
 * late (ALARM_EV_BACKDATED): its row says since then, real and business
 * time; replayed out of order, a later since does not move it forward. */
static void test_a_backdated_alarm_row_says_the_earlier_since(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  long epoch = sc_long("SELECT coalesce(max(epoch), 0) FROM epochs");
  /* Whole seconds: the store writes times to the second. */
  int64_t t0 = (int64_t)sc_long("SELECT extract(epoch FROM now())::bigint * 1000");
  alarm_t a = {.id = (uint64_t)epoch * ALARM_ID_EPOCH + 900,
               .kind = ALARM_PBX,
               .subject = "hubei",
               .message = "PBX drift repaired",
               .raised_wall_ms = t0,
               .raised_business_ms = t0};
  S.db = S.live;
  sc_alarm(&a, ALARM_EV_RAISED, t0);
  a.raised_wall_ms = t0 - 600000;
  a.raised_business_ms = t0 - 600000;
  sc_alarm(&a, ALARM_EV_BACKDATED, t0 + 1000);
  a.raised_wall_ms = t0 - 300000;
  a.raised_business_ms = t0 - 300000;
  sc_alarm(&a, ALARM_EV_BACKDATED, t0 + 2000);
  sc_drain();
  assert_int_equal(S.write_errors, 0);
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT (extract(epoch FROM raised_at) * 1000)::bigint - %lld FROM alarms WHERE id = "
           "%llu AND raised_business_at = raised_at AND cleared_at IS NULL",
           (long long)t0, (unsigned long long)a.id);
  assert_int_equal(sc_long(sql), -600000);
}

int main(void) {
  log_set_program("test_store_changes");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_set_in_an_outage_survives_a_restart, sc_setup,
                                      sc_teardown),
      cmocka_unit_test_setup_teardown(test_set_refused_when_the_journal_is_full, sc_setup,
                                      sc_teardown),
      cmocka_unit_test_setup_teardown(test_an_accepted_change_is_journaled_whole, sc_setup,
                                      sc_teardown),
      cmocka_unit_test_setup_teardown(test_journal_order_add_change_remove, sc_setup, sc_teardown),
      cmocka_unit_test_setup_teardown(test_a_backdated_alarm_row_says_the_earlier_since, sc_setup,
                                      sc_teardown),
      /* Last two: they leave newer epochs than the others' leaders. */
      cmocka_unit_test_setup_teardown(test_set_journaled_by_a_deposed_leader_is_superseded,
                                      sc_setup, sc_teardown),
      cmocka_unit_test_setup_teardown(test_alarm_journaled_by_a_deposed_leader_is_closed, sc_setup,
                                      sc_teardown),
  };
  return cmocka_run_group_tests(tests, pgtest_group_setup, pgtest_group_teardown);
}
