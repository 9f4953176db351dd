/* test_db: the db module against a real PostgreSQL (no mocks).
 *
 *   NIRC_TEST_PG="host=127.0.0.1 port=54330 user=nirc dbname=postgres" \
 *   NIRC_SOURCE_DIR=/path/to/nirc ./test_db
 *
 * NIRC_TEST_PG must name a role that may create databases and terminate its
 * own backends. The tests create their own databases (nirc_test_<pid>,
 * nirc_test_empty_<pid>, nirc_test_scratch_<pid>) and drop them at the end,
 * so the database named in NIRC_TEST_PG is never modified. Without
 * NIRC_TEST_PG the tests that need a server are skipped; the ones that only
 * need an unreachable address still run.
 *
 * Nothing sleeps to synchronise: the loop runs (UV_RUN_ONCE) until the
 * condition holds, bounded by a deadline timer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"
#include "err.h"
#include "log.h"

#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define DEADLINE_MS 20000
#define MAXCALLS    1100
#define APP_NAME    "nirc-test-db"
/* Nothing listens on port 1, so connecting there is refused at once. */
#define UNREACHABLE "host=127.0.0.1 port=1 user=nirc dbname=nirc connect_timeout=2"

static struct {
  int have_pg;
  int migrated;
  char admin[1024];    /* NIRC_TEST_PG as given */
  char main_ci[1024];  /* the migrated test database */
  char empty_ci[1024]; /* never migrated */
  char main_db[64], empty_db[64], scratch_db[64];
  char schema_dir[PATH_MAX];
} T;

/* ---- conninfo and blocking admin helpers (tests may block) ---- */

static void ci_append(char *out, size_t n, const char *kw, const char *val) {
  size_t len = strlen(out);
  int w = snprintf(out + len, n - len, "%s%s='", len ? " " : "", kw);
  assert_true(w > 0 && (size_t)w < n - len);
  len += (size_t)w;
  for (const char *s = val; *s; s++) {
    assert_true(len + 3 < n);
    if (*s == '\'' || *s == '\\') out[len++] = '\\';
    out[len++] = *s;
  }
  assert_true(len + 2 < n);
  out[len++] = '\'';
  out[len] = '\0';
}

/* Builds a key=value conninfo from NIRC_TEST_PG (key=value or URI) with
 * some keys replaced; NULL values leave a key as it is. */
static void ci_build(char *out, size_t n, const char *dbname, const char *host, const char *port,
                     const char *app) {
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(T.admin, &perr);
  assert_non_null(opts);
  out[0] = '\0';
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val) continue;
    if ((dbname && strcmp(o->keyword, "dbname") == 0) ||
        (host && (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0)) ||
        (port && strcmp(o->keyword, "port") == 0) ||
        (app && strcmp(o->keyword, "application_name") == 0)) {
      continue;
    }
    ci_append(out, n, o->keyword, o->val);
  }
  PQconninfoFree(opts);
  if (dbname) ci_append(out, n, "dbname", dbname);
  if (host) ci_append(out, n, "host", host);
  if (port) ci_append(out, n, "port", port);
  if (app) ci_append(out, n, "application_name", app);
}

static void quiet_notices(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

/* Runs one statement on a fresh blocking connection; copies the first
 * value (if any) into val. Returns 0 or -1 (message printed). */
static int admin_sql(const char *ci, const char *sql, char *val, size_t n) {
  PGconn *c = PQconnectdb(ci);
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "admin connect: %s", PQerrorMessage(c));
    PQfinish(c);
    return -1;
  }
  PQsetNoticeProcessor(c, quiet_notices, NULL);
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok) fprintf(stderr, "admin %s: %s", sql, PQresultErrorMessage(r));
  if (ok && val && n) {
    snprintf(val, n, "%s",
             PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
  }
  PQclear(r);
  PQfinish(c);
  return ok ? 0 : -1;
}

static int create_db(const char *name) {
  char sql[256];
  snprintf(sql, sizeof sql, "drop database if exists %s with (force)", name);
  if (admin_sql(T.admin, sql, NULL, 0) != 0) return -1;
  snprintf(sql, sizeof sql, "create database %s", name);
  return admin_sql(T.admin, sql, NULL, 0);
}

static void drop_db(const char *name) {
  char sql[256];
  snprintf(sql, sizeof sql, "drop database if exists %s with (force)", name);
  (void)admin_sql(T.admin, sql, NULL, 0);
}

/* ---- stdout capture (db_admin_migrate prints its progress) ---- */

static FILE *cap_file;
static int cap_saved = -1;

static void capture_start(void) {
  fflush(stdout);
  cap_file = tmpfile();
  assert_non_null(cap_file);
  cap_saved = dup(STDOUT_FILENO);
  assert_true(cap_saved >= 0);
  assert_true(dup2(fileno(cap_file), STDOUT_FILENO) >= 0);
}

/* No assertions between start and stop: a failing one would leave stdout
 * pointing at the temporary file. */
static void capture_stop(char *buf, size_t n) {
  fflush(stdout);
  dup2(cap_saved, STDOUT_FILENO);
  close(cap_saved);
  cap_saved = -1;
  rewind(cap_file);
  size_t k = fread(buf, 1, n - 1, cap_file);
  buf[k] = '\0';
  fclose(cap_file);
  cap_file = NULL;
}

static int migrate_quiet(const char *ci, const char *dir, char *err, size_t errlen, char *out,
                         size_t outlen) {
  char sink[1024];
  capture_start();
  int rc = db_admin_migrate(ci, dir, err, errlen);
  capture_stop(out ? out : sink, out ? outlen : sizeof sink);
  return rc;
}

/* ---- running the loop until something is true ---- */

typedef int (*cond_fn)(const void *arg);

static void on_deadline(uv_timer_t *t) {
  *(int *)t->data = 1;
}

typedef struct {
  cond_fn cond;
  const void *arg;
} prepare_ctx_t;

/* A turn of the loop can run a timer that changes the state and then block
 * in poll; checking the condition just before poll and stopping the loop
 * returns control the moment the condition holds. */
static void on_prepare(uv_prepare_t *p) {
  const prepare_ctx_t *c = p->data;
  if (c->cond(c->arg)) uv_stop(p->loop);
}

/* Runs the loop one turn at a time until cond holds or DEADLINE_MS pass. */
static int run_until(uv_loop_t *loop, cond_fn cond, const void *arg) {
  uv_timer_t t;
  uv_prepare_t p;
  int expired = 0;
  prepare_ctx_t pc = {cond, arg};
  assert_int_equal(uv_timer_init(loop, &t), 0);
  t.data = &expired;
  assert_int_equal(uv_timer_start(&t, on_deadline, DEADLINE_MS, 0), 0);
  assert_int_equal(uv_prepare_init(loop, &p), 0);
  p.data = &pc;
  assert_int_equal(uv_prepare_start(&p, on_prepare), 0);
  while (!cond(arg) && !expired)
    uv_run(loop, UV_RUN_ONCE);
  int ok = cond(arg);
  uv_close((uv_handle_t *)&t, NULL);
  uv_close((uv_handle_t *)&p, NULL);
  uv_run(loop, UV_RUN_NOWAIT); /* runs the closes before `t` and `p` go away */
  return ok;
}

typedef struct {
  const int *counter;
  int want;
} count_cond_t;

static int c_count(const void *arg) {
  const count_cond_t *c = arg;
  return *c->counter >= c->want;
}

static int run_until_count(uv_loop_t *loop, const int *counter, int want) {
  count_cond_t c = {counter, want};
  return run_until(loop, c_count, &c);
}

typedef struct {
  const db_t *db;
  db_state_t state;
  int negate;
} state_cond_t;

static int c_state(const void *arg) {
  const state_cond_t *c = arg;
  return (db_state(c->db) == c->state) != c->negate;
}

static int run_until_state(uv_loop_t *loop, const db_t *db, db_state_t s) {
  state_cond_t c = {db, s, 0};
  return run_until(loop, c_state, &c);
}

static int run_until_not_state(uv_loop_t *loop, const db_t *db, db_state_t s) {
  state_cond_t c = {db, s, 1};
  return run_until(loop, c_state, &c);
}

/* ---- recording callbacks ---- */

typedef struct rec rec_t;
typedef struct {
  rec_t *rec;
  int seq;
} slot_t;

struct rec {
  int ncalls;
  int out_of_order;
  int err[MAXCALLS];
  int had_res[MAXCALLS];
  char val[MAXCALLS][64];
  char msg[MAXCALLS][256];
  slot_t slot[MAXCALLS];
};

static rec_t *rec_new(void) {
  rec_t *r = calloc(1, sizeof *r);
  assert_non_null(r);
  for (int i = 0; i < MAXCALLS; i++)
    r->slot[i] = (slot_t){r, i};
  return r;
}

static void rec_cb(void *arg, int err, const char *msg, PGresult *res) {
  slot_t *s = arg;
  rec_t *r = s->rec;
  if (s->seq != r->ncalls) r->out_of_order++;
  r->err[s->seq] = err;
  r->had_res[s->seq] = res != NULL;
  snprintf(r->msg[s->seq], sizeof r->msg[s->seq], "%s", msg ? msg : "(null)");
  if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0) {
    snprintf(r->val[s->seq], sizeof r->val[s->seq], "%s",
             PQgetisnull(res, 0, 0) ? "(null)" : PQgetvalue(res, 0, 0));
  }
  r->ncalls++;
}

static void q(db_t *db, rec_t *r, int seq, const char *sql, int n, const char *const *p) {
  assert_int_equal(db_exec(db, sql, n, p, rec_cb, &r->slot[seq]), 0);
}

/* ---- one loop + one client per async test ---- */

typedef struct {
  uv_loop_t loop;
  db_t *db;
  int closed;
  int fds; /* open descriptors before the loop existed */
} actx_t;

/* Counts this process's open descriptors, so a test can see that closing
 * the client closed its socket too. */
static int count_fds(void) {
  int n = 0;
  for (int fd = 0; fd < 1024; fd++) {
    struct stat st;
    if (fstat(fd, &st) == 0) n++;
  }
  return n;
}

static void on_closed(void *arg) {
  (*(int *)arg)++;
}

static void actx_open(actx_t *a, const char *ci) {
  memset(a, 0, sizeof *a);
  a->fds = count_fds();
  assert_int_equal(uv_loop_init(&a->loop), 0);
  assert_int_equal(db_open(&a->loop, ci, &a->db), 0);
  assert_non_null(a->db);
}

/* Closes the client and checks that every handle went away with it. */
static void actx_close(actx_t *a) {
  db_close(a->db, on_closed, &a->closed);
  assert_int_equal(a->closed, 0); /* done never runs inside db_close */
  assert_true(run_until_count(&a->loop, &a->closed, 1));
  assert_int_equal(a->closed, 1);
  assert_int_equal(uv_loop_close(&a->loop), 0);
  assert_int_equal(count_fds(), a->fds);
}

/* ---- group setup ---- */

static int group_setup(void **state) {
  (void)state;
  const char *pg = getenv("NIRC_TEST_PG");
  const char *src = getenv("NIRC_SOURCE_DIR");
  snprintf(T.schema_dir, sizeof T.schema_dir, "%s/schema", src && *src ? src : ".");
  if (getenv("NIRC_TEST_DEBUG")) log_set_level(LOG_LVL_DEBUG);
  if (!pg || !*pg) return 0;
  snprintf(T.admin, sizeof T.admin, "%s", pg);
  snprintf(T.main_db, sizeof T.main_db, "nirc_test_%ld", (long)getpid());
  snprintf(T.empty_db, sizeof T.empty_db, "nirc_test_empty_%ld", (long)getpid());
  snprintf(T.scratch_db, sizeof T.scratch_db, "nirc_test_scratch_%ld", (long)getpid());
  if (create_db(T.main_db) != 0 || create_db(T.empty_db) != 0) return -1;
  ci_build(T.main_ci, sizeof T.main_ci, T.main_db, NULL, NULL, APP_NAME);
  ci_build(T.empty_ci, sizeof T.empty_ci, T.empty_db, NULL, NULL, APP_NAME);
  T.have_pg = 1;
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  if (!T.have_pg) return 0;
  drop_db(T.main_db);
  drop_db(T.empty_db);
  drop_db(T.scratch_db);
  return 0;
}

#define NEED_PG()                                                                                  \
  do {                                                                                             \
    if (!T.have_pg) skip();                                                                        \
  } while (0)

/* Async tests need the schema; normally the first test put it there. */
static int need_schema(void **state) {
  (void)state;
  if (!T.have_pg || T.migrated) return 0;
  char err[512];
  if (migrate_quiet(T.main_ci, T.schema_dir, err, sizeof err, NULL, 0) != 0) {
    fprintf(stderr, "migrate: %s\n", err);
    return -1;
  }
  T.migrated = 1;
  return 0;
}

/* ---- admin tests ---- */

static void test_migrate_from_empty(void **state) {
  (void)state;
  NEED_PG();
  char err[512] = "", out[1024];
  int v = -1;
  assert_int_equal(db_admin_schema_version(T.main_ci, &v, err, sizeof err), 0);
  assert_int_equal(v, 0);

  int rc = migrate_quiet(T.main_ci, T.schema_dir, err, sizeof err, out, sizeof out);
  if (rc != 0) fail_msg("migrate: %s", err);
  assert_non_null(strstr(out, "applied 001_foundation\n"));
  T.migrated = 1;

  assert_int_equal(db_admin_check_schema(T.main_ci, err, sizeof err), 0);
  assert_int_equal(db_admin_schema_version(T.main_ci, &v, err, sizeof err), 0);
  assert_int_equal(v, DB_SCHEMA_VERSION);

  /* Again: nothing to do, nothing applied. */
  rc = migrate_quiet(T.main_ci, T.schema_dir, err, sizeof err, out, sizeof out);
  if (rc != 0) fail_msg("migrate again: %s", err);
  char expect[128], n[32];
  snprintf(expect, sizeof expect, "schema is at version %d, nothing to do\n", DB_SCHEMA_VERSION);
  assert_string_equal(out, expect);
  assert_int_equal(admin_sql(T.main_ci, "select count(*) from schema_version", n, sizeof n), 0);
  snprintf(expect, sizeof expect, "%d", DB_SCHEMA_VERSION);
  assert_string_equal(n, expect);
  assert_int_equal(
      admin_sql(T.main_ci, "select name from schema_version where version = 1", n, sizeof n), 0);
  assert_string_equal(n, "foundation");
}

static void test_check_schema_empty_db(void **state) {
  (void)state;
  NEED_PG();
  char err[512] = "";
  assert_int_equal(db_admin_check_schema(T.empty_ci, err, sizeof err), NIRC_ESCHEMA);
  char expect[256];
  snprintf(expect, sizeof expect,
           "database schema is version 0, this nircd needs %d: run `nircd -c "
           "/etc/nirc/nircd.conf migrate`",
           DB_SCHEMA_VERSION);
  assert_string_equal(err, expect);
}

static void test_database_newer_than_nircd(void **state) {
  (void)state;
  NEED_PG();
  assert_int_equal(create_db(T.scratch_db), 0);
  char ci[1024], err[512] = "";
  ci_build(ci, sizeof ci, T.scratch_db, NULL, NULL, NULL);
  assert_int_equal(admin_sql(ci,
                             "create table schema_version (version int primary key, name text not "
                             "null, applied_at timestamptz not null default now());"
                             "insert into schema_version (version, name) values (1, 'foundation'),"
                             " (2, 'two'), (3, 'three'), (99, 'future')",
                             NULL, 0),
                   0);
  assert_int_equal(db_admin_check_schema(ci, err, sizeof err), NIRC_ESCHEMA);
  char expect[256];
  snprintf(expect, sizeof expect,
           "database schema is version 99, newer than this nircd (%d): upgrade nircd",
           DB_SCHEMA_VERSION);
  assert_string_equal(err, expect);
  assert_int_equal(migrate_quiet(ci, T.schema_dir, err, sizeof err, NULL, 0), NIRC_ESCHEMA);
  assert_non_null(strstr(err, "this nircd is older than the database"));
  drop_db(T.scratch_db);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  assert_true(fputs(text, f) >= 0);
  assert_int_equal(fclose(f), 0);
}

static void copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb");
  assert_non_null(in);
  FILE *o = fopen(to, "wb");
  assert_non_null(o);
  char buf[8192];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, in)) > 0)
    assert_int_equal(fwrite(buf, 1, k, o), k);
  fclose(in);
  assert_int_equal(fclose(o), 0);
}

static void test_migrate_broken_file_rolls_back(void **state) {
  (void)state;
  NEED_PG();
  assert_int_equal(create_db(T.scratch_db), 0);
  char ci[1024], err[512] = "", out[1024];
  ci_build(ci, sizeof ci, T.scratch_db, NULL, NULL, NULL);

  char dir[] = "/tmp/nirc-test-schema-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char p1[PATH_MAX], p2[PATH_MAX], p3[PATH_MAX], src[PATH_MAX + 32];
  snprintf(src, sizeof src, "%s/001_foundation.sql", T.schema_dir);
  snprintf(p1, sizeof p1, "%s/001_foundation.sql", dir);
  snprintf(p2, sizeof p2, "%s/002_broken.sql", dir);
  snprintf(p3, sizeof p3, "%s/README.txt", dir); /* not a migration: ignored */
  copy_file(src, p1);
  write_file(p2, "create table nirc_broken_probe (x int);\n\nselec 1;\n");
  write_file(p3, "not sql\n");

  int rc = migrate_quiet(ci, dir, err, sizeof err, out, sizeof out);
  assert_int_equal(rc, NIRC_EDB);
  assert_string_equal(out, "applied 001_foundation\n");
  char want[PATH_MAX + 64];
  snprintf(want, sizeof want, "%s: line 3: ERROR: syntax error", p2);
  if (strncmp(err, want, strlen(want)) != 0) fail_msg("unexpected error: %s", err);

  /* 001 stayed, 002 left nothing behind. */
  int v = -1;
  assert_int_equal(db_admin_schema_version(ci, &v, err, sizeof err), 0);
  assert_int_equal(v, 1);
  char n[32];
  assert_int_equal(admin_sql(ci, "select to_regclass('nirc_broken_probe') is null", n, sizeof n),
                   0);
  assert_string_equal(n, "t");

  /* A gap is refused before anything is touched. */
  unlink(p2);
  snprintf(p2, sizeof p2, "%s/003_gap.sql", dir);
  write_file(p2, "select 1;\n");
  assert_int_equal(migrate_quiet(ci, dir, err, sizeof err, NULL, 0), NIRC_ENOTFOUND);
  assert_non_null(strstr(err, "migration 002 is missing"));

  unlink(p1);
  unlink(p2);
  unlink(p3);
  rmdir(dir);
  drop_db(T.scratch_db);
}

static void test_admin_unreachable(void **state) {
  (void)state;
  char err[512] = "";
  int v = -1;
  assert_int_equal(db_admin_schema_version(UNREACHABLE, &v, err, sizeof err), NIRC_EDB);
  assert_non_null(strstr(err, "host=127.0.0.1 port=1"));
  assert_non_null(strstr(err, "is PostgreSQL running?"));
  assert_int_equal(db_admin_check_schema(UNREACHABLE, err, sizeof err), NIRC_EDB);
  assert_non_null(strstr(err, "is PostgreSQL running?"));
  assert_int_equal(db_admin_check_schema("this is not a conninfo", err, sizeof err), NIRC_EDB);
  assert_non_null(strstr(err, "invalid conninfo"));
}

/* ---- async tests without a server ---- */

static int count_closed;
static void count_cb(void *arg, int err, const char *msg, PGresult *res) {
  (void)msg;
  (void)res;
  if (err == NIRC_ECLOSED) count_closed++;
  (*(int *)arg)++;
}

static void test_exec_invalid(void **state) {
  (void)state;
  actx_t a;
  uv_loop_t l;
  db_t *bad = NULL;
  assert_int_equal(uv_loop_init(&l), 0);
  assert_int_equal(db_open(&l, "not a conninfo", &bad), NIRC_EINVAL);
  assert_null(bad);
  assert_int_equal(uv_loop_close(&l), 0);

  actx_open(&a, UNREACHABLE);
  const char *p[DB_MAX_PARAMS + 1] = {0};
  assert_int_equal(db_exec(a.db, NULL, 0, NULL, NULL, NULL), NIRC_EINVAL);
  assert_int_equal(db_exec(a.db, "select 1", -1, NULL, NULL, NULL), NIRC_EINVAL);
  assert_int_equal(db_exec(a.db, "select 1", DB_MAX_PARAMS + 1, p, NULL, NULL), NIRC_EINVAL);
  assert_int_equal(db_exec(a.db, "select $1", 1, NULL, NULL, NULL), NIRC_EINVAL);
  assert_int_equal(db_queue_depth(a.db), 0);
  assert_string_equal(db_state_name(DB_BACKOFF), "backoff");
  actx_close(&a);
}

static void test_queue_full(void **state) {
  (void)state;
  actx_t a;
  actx_open(&a, UNREACHABLE);
  int calls = 0;
  count_closed = 0;
  for (int i = 0; i < DB_QUEUE_MAX; i++) {
    if (db_exec(a.db, "select 1", 0, NULL, count_cb, &calls) != 0) fail_msg("exec %d failed", i);
  }
  assert_int_equal(db_queue_depth(a.db), DB_QUEUE_MAX);
  assert_int_equal(db_exec(a.db, "select 1", 0, NULL, count_cb, &calls), NIRC_EFULL);
  assert_int_equal(calls, 0);
  db_close(a.db, on_closed, &a.closed);
  /* Every queued query completed, with NIRC_ECLOSED, inside db_close. */
  assert_int_equal(calls, DB_QUEUE_MAX);
  assert_int_equal(count_closed, DB_QUEUE_MAX);
  assert_true(run_until_count(&a.loop, &a.closed, 1));
  assert_int_equal(uv_loop_close(&a.loop), 0);
  assert_int_equal(count_fds(), a.fds);
}

/* A refused connection goes to BACKOFF and keeps retrying; the queue
 * waits and is completed with NIRC_ECLOSED on close. */
static void test_unreachable_backoff(void **state) {
  (void)state;
  actx_t a;
  actx_open(&a, UNREACHABLE);
  rec_t *r = rec_new();
  q(a.db, r, 0, "select 1", 0, NULL);
  assert_true(run_until_state(&a.loop, a.db, DB_BACKOFF));
  /* Through one more full retry. */
  assert_true(run_until_state(&a.loop, a.db, DB_CONNECTING));
  assert_true(run_until_state(&a.loop, a.db, DB_BACKOFF));
  assert_int_equal(r->ncalls, 0);
  assert_int_equal(db_queue_depth(a.db), 1);
  db_close(a.db, on_closed, &a.closed);
  assert_int_equal(r->ncalls, 1);
  assert_int_equal(r->err[0], NIRC_ECLOSED);
  assert_true(run_until_count(&a.loop, &a.closed, 1));
  assert_int_equal(uv_loop_close(&a.loop), 0);
  assert_int_equal(count_fds(), a.fds);
  free(r);
}

/* A name that does not resolve is a connection failure like any other;
 * closing while the resolver still runs releases everything once the
 * abandoned request comes back. */
static void test_resolve_failure_and_close_while_resolving(void **state) {
  (void)state;
  actx_t a;
  actx_open(&a, "host=nirc-test.invalid port=5432 user=nirc dbname=nirc");
  assert_int_equal(db_state(a.db), DB_CONNECTING);
  assert_true(run_until_state(&a.loop, a.db, DB_BACKOFF));
  actx_close(&a);

  actx_open(&a, "host=nirc-test.invalid port=5432 user=nirc dbname=nirc");
  rec_t *r = rec_new();
  q(a.db, r, 0, "select 1", 0, NULL);
  db_close(a.db, on_closed, &a.closed); /* the lookup is still pending */
  assert_int_equal(r->ncalls, 1);
  assert_int_equal(r->err[0], NIRC_ECLOSED);
  assert_true(run_until_count(&a.loop, &a.closed, 1));
  assert_int_equal(uv_loop_close(&a.loop), 0);
  assert_int_equal(count_fds(), a.fds);
  free(r);
}

/* ---- async tests against the server ---- */

static void test_async_1000_inserts(void **state) {
  (void)state;
  NEED_PG();
  actx_t a;
  actx_open(&a, T.main_ci);
  rec_t *r = rec_new();
  char peer[64];
  snprintf(peer, sizeof peer, "test-1000-%ld", (long)getpid());
  for (int i = 0; i < 1000; i++) {
    char detail[32];
    snprintf(detail, sizeof detail, "%d", i);
    const char *p[3] = {peer, i % 2 ? "hubei" : NULL, detail};
    q(a.db, r, i,
      "insert into link_events (kind, site, peer, event, detail) "
      "values ('site', $2, $1, 'hello', $3)",
      3, p);
  }
  assert_int_equal(db_queue_depth(a.db), 1000);
  assert_true(run_until_count(&a.loop, &r->ncalls, 1000));
  assert_int_equal(r->out_of_order, 0);
  for (int i = 0; i < 1000; i++) {
    if (r->err[i] != 0) fail_msg("insert %d: %s", i, r->msg[i]);
  }
  const char *p[1] = {peer};
  q(a.db, r, 1000, "select count(*) from link_events where peer = $1", 1, p);
  q(a.db, r, 1001, "select count(*) from link_events where peer = $1 and site is null", 1, p);
  q(a.db, r, 1002, "select max(detail::int) from link_events where peer = $1", 1, p);
  assert_true(run_until_count(&a.loop, &r->ncalls, 1003));
  assert_int_equal(r->err[1000], 0);
  assert_string_equal(r->val[1000], "1000");
  assert_string_equal(r->val[1001], "500");
  assert_string_equal(r->val[1002], "999");
  assert_int_equal(db_state(a.db), DB_READY);
  assert_int_equal(db_queue_depth(a.db), 0);
  actx_close(&a);
  free(r);
}

static void test_async_bad_sql_then_ok(void **state) {
  (void)state;
  NEED_PG();
  actx_t a;
  actx_open(&a, T.main_ci);
  rec_t *r = rec_new();
  const char *two[2] = {"2", "3"};
  const char *null1[1] = {NULL};
  q(a.db, r, 0, "selec 1", 0, NULL);
  q(a.db, r, 1, "select $1::int + $2::int", 2, two);
  q(a.db, r, 2, "select $1::text is null", 1, null1);
  q(a.db, r, 3, "insert into sites (slug, name_en, name_zh) values ('Bad Slug', 'x', 'y')", 0,
    NULL);
  q(a.db, r, 4, "select 'still fine'", 0, NULL);
  assert_true(run_until_count(&a.loop, &r->ncalls, 5));
  assert_int_equal(r->out_of_order, 0);
  assert_int_equal(r->err[0], NIRC_EDB);
  assert_non_null(strstr(r->msg[0], "syntax error"));
  assert_true(r->had_res[0]); /* the error result, for SQLSTATE */
  assert_int_equal(r->err[1], 0);
  assert_string_equal(r->val[1], "5");
  assert_int_equal(r->err[2], 0);
  assert_string_equal(r->val[2], "t");
  assert_int_equal(r->err[3], NIRC_EDB); /* the slug check constraint */
  assert_non_null(strstr(r->msg[3], "check constraint"));
  assert_int_equal(r->err[4], 0);
  assert_string_equal(r->val[4], "still fine");
  actx_close(&a);
  free(r);
}

static void test_async_audit_append_only(void **state) {
  (void)state;
  NEED_PG();
  actx_t a;
  actx_open(&a, T.main_ci);
  rec_t *r = rec_new();
  const char *p[2] = {"test", "{\"why\": \"unit test\"}"};
  q(a.db, r, 0, "insert into audit_log (actor, action, detail) values ($1, 'probe', $2::jsonb)", 2,
    p);
  q(a.db, r, 1, "update audit_log set actor = 'someone else' where actor = 'test'", 0, NULL);
  q(a.db, r, 2, "delete from audit_log where actor = 'test'", 0, NULL);
  q(a.db, r, 3, "truncate audit_log", 0, NULL);
  q(a.db, r, 4, "select count(*) from audit_log where actor = 'test'", 0, NULL);
  assert_true(run_until_count(&a.loop, &r->ncalls, 5));
  assert_int_equal(r->err[0], 0);
  for (int i = 1; i <= 3; i++) {
    assert_int_equal(r->err[i], NIRC_EDB);
    if (!strstr(r->msg[i], "append-only")) fail_msg("query %d: %s", i, r->msg[i]);
  }
  assert_int_equal(r->err[4], 0);
  assert_string_equal(r->val[4], "1");
  actx_close(&a);
  free(r);
}

static int terminate_client_backend(void) {
  char n[32] = "";
  if (admin_sql(T.main_ci,
                "select count(pg_terminate_backend(pid)) from pg_stat_activity where "
                "application_name = '" APP_NAME "' and datname = current_database() and "
                "pid <> pg_backend_pid()",
                n, sizeof n) != 0) {
    return -1;
  }
  return atoi(n);
}

static void test_async_reconnect(void **state) {
  (void)state;
  NEED_PG();
  actx_t a;
  actx_open(&a, T.main_ci);
  rec_t *r = rec_new();
  q(a.db, r, 0, "select 1", 0, NULL);
  assert_true(run_until_count(&a.loop, &r->ncalls, 1));
  assert_int_equal(r->err[0], 0);
  assert_int_equal(db_state(a.db), DB_READY);

  /* Kill the idle connection; the client notices from the socket. */
  assert_int_equal(terminate_client_backend(), 1);
  assert_true(run_until_not_state(&a.loop, a.db, DB_READY));

  char peer[64];
  snprintf(peer, sizeof peer, "test-reconnect-%ld", (long)getpid());
  const char *p[1] = {peer};
  for (int i = 1; i <= 10; i++) {
    q(a.db, r, i, "insert into link_events (kind, peer, event) values ('unknown', $1, 'online')", 1,
      p);
  }
  q(a.db, r, 11, "select count(*) from link_events where peer = $1", 1, p);
  assert_true(run_until_count(&a.loop, &r->ncalls, 12));
  assert_int_equal(r->out_of_order, 0);
  for (int i = 1; i <= 11; i++) {
    if (r->err[i] != 0) fail_msg("query %d after reconnect: %s", i, r->msg[i]);
  }
  assert_string_equal(r->val[11], "10");

  /* Kill it while a query is in flight: that one fails (it is never
   * retried), the ones queued behind it run on the next connection. */
  q(a.db, r, 12, "select pg_sleep(60)", 0, NULL);
  for (int i = 13; i <= 15; i++) {
    q(a.db, r, i, "insert into link_events (kind, peer, event) values ('unknown', $1, 'offline')",
      1, p);
  }
  assert_true(run_until_state(&a.loop, a.db, DB_BUSY));
  assert_int_equal(terminate_client_backend(), 1);
  assert_true(run_until_count(&a.loop, &r->ncalls, 16));
  assert_int_equal(r->out_of_order, 0);
  assert_int_equal(r->err[12], NIRC_EDB);
  for (int i = 13; i <= 15; i++) {
    if (r->err[i] != 0) fail_msg("query %d after reconnect: %s", i, r->msg[i]);
  }
  actx_close(&a);
  free(r);
}

static void test_close_with_queued_and_inflight(void **state) {
  (void)state;
  NEED_PG();
  actx_t a;
  actx_open(&a, T.main_ci);
  rec_t *r = rec_new();
  q(a.db, r, 0, "select 1", 0, NULL);
  assert_true(run_until_count(&a.loop, &r->ncalls, 1));
  q(a.db, r, 1, "select pg_sleep(0.5)", 0, NULL);
  for (int i = 2; i < 50; i++)
    q(a.db, r, i, "select 1", 0, NULL);
  assert_true(run_until_state(&a.loop, a.db, DB_BUSY));
  assert_int_equal(db_queue_depth(a.db), 48);
  db_close(a.db, on_closed, &a.closed);
  assert_int_equal(r->ncalls, 50);
  assert_int_equal(r->out_of_order, 0);
  for (int i = 1; i < 50; i++)
    assert_int_equal(r->err[i], NIRC_ECLOSED);
  /* A closing client takes nothing new. */
  assert_int_equal(db_exec(a.db, "select 1", 0, NULL, NULL, NULL), NIRC_ECLOSED);
  assert_int_equal(a.closed, 0);
  assert_true(run_until_count(&a.loop, &a.closed, 1));
  assert_int_equal(uv_loop_close(&a.loop), 0);
  assert_int_equal(count_fds(), a.fds);
  free(r);
}

/* db_close from inside a result callback: the remaining queries complete
 * with NIRC_ECLOSED and the client is released after the callback. */
typedef struct {
  actx_t *a;
  rec_t *r;
} close_in_cb_t;

static void close_in_cb(void *arg, int err, const char *msg, PGresult *res) {
  close_in_cb_t *c = arg;
  rec_cb(&c->r->slot[0], err, msg, res);
  db_close(c->a->db, on_closed, &c->a->closed);
}

static void test_close_from_callback(void **state) {
  (void)state;
  NEED_PG();
  actx_t a;
  actx_open(&a, T.main_ci);
  rec_t *r = rec_new();
  close_in_cb_t c = {&a, r};
  assert_int_equal(db_exec(a.db, "select 1", 0, NULL, close_in_cb, &c), 0);
  q(a.db, r, 1, "select 2", 0, NULL);
  assert_true(run_until_count(&a.loop, &a.closed, 1));
  assert_int_equal(r->ncalls, 2);
  assert_int_equal(r->err[0], 0);
  assert_int_equal(r->err[1], NIRC_ECLOSED);
  assert_int_equal(uv_loop_close(&a.loop), 0);
  assert_int_equal(count_fds(), a.fds);
  free(r);
}

/* A host list whose first entry refuses: libpq moves to the next one on a
 * new socket (often with the same descriptor number) in the middle of
 * PQconnectPoll, and the poll handle must follow it. */
static void test_async_host_fallback(void **state) {
  (void)state;
  NEED_PG();
  char ci[1024], port[16] = "5432";
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(T.main_ci, &perr);
  assert_non_null(opts);
  const char *host = NULL;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (strcmp(o->keyword, "port") == 0 && o->val) snprintf(port, sizeof port, "%s", o->val);
    if (strcmp(o->keyword, "host") == 0 && o->val) host = o->val;
  }
  if (!host || host[0] == '/' || strchr(host, ',')) {
    PQconninfoFree(opts);
    skip(); /* needs a single TCP host in NIRC_TEST_PG */
  }
  char hosts[512], ports[64];
  snprintf(hosts, sizeof hosts, "%s,%s", host, host);
  snprintf(ports, sizeof ports, "1,%s", port);
  PQconninfoFree(opts);
  ci_build(ci, sizeof ci, T.main_db, hosts, ports, APP_NAME);

  actx_t a;
  actx_open(&a, ci);
  rec_t *r = rec_new();
  q(a.db, r, 0, "select current_database()", 0, NULL);
  assert_true(run_until_count(&a.loop, &r->ncalls, 1));
  if (r->err[0] != 0) fail_msg("%s", r->msg[0]);
  assert_string_equal(r->val[0], T.main_db);
  actx_close(&a);
  free(r);
}

/* prefer-standby against a primary: libpq connects, finds no standby,
 * closes that socket and connects again "in any mode" on a new one, all
 * without an error event in between, and the new socket usually reuses the
 * descriptor number. The client must notice (by inode) and watch the new
 * socket. (libuv 1.44 happens to re-register the descriptor whenever the
 * polled events change, so this passes even without the inode check; it
 * guards the HA path, not that particular line.) */
static void test_async_socket_replaced_without_error(void **state) {
  (void)state;
  NEED_PG();
  char ci[1100];
  snprintf(ci, sizeof ci, "%s", T.main_ci);
  ci_append(ci, sizeof ci, "target_session_attrs", "prefer-standby");
  actx_t a;
  actx_open(&a, ci);
  rec_t *r = rec_new();
  q(a.db, r, 0, "select pg_is_in_recovery()", 0, NULL);
  assert_true(run_until_count(&a.loop, &r->ncalls, 1));
  if (r->err[0] != 0) fail_msg("%s", r->msg[0]);
  assert_string_equal(r->val[0], "f");
  actx_close(&a);
  free(r);
}

/* A host name (not an IP literal) goes through the asynchronous resolver. */
static void test_async_resolve_name(void **state) {
  (void)state;
  NEED_PG();
  char ci[1024], host[64] = "";
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(T.main_ci, &perr);
  assert_non_null(opts);
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (strcmp(o->keyword, "host") == 0 && o->val) snprintf(host, sizeof host, "%s", o->val);
  }
  PQconninfoFree(opts);
  if (strcmp(host, "127.0.0.1") != 0) skip(); /* "localhost" may mean another address */
  ci_build(ci, sizeof ci, T.main_db, "localhost", NULL, APP_NAME);
  actx_t a;
  actx_open(&a, ci);
  rec_t *r = rec_new();
  q(a.db, r, 0, "select 42", 0, NULL);
  assert_true(run_until_count(&a.loop, &r->ncalls, 1));
  if (r->err[0] != 0) fail_msg("%s", r->msg[0]);
  assert_string_equal(r->val[0], "42");
  actx_close(&a);
  free(r);
}

int main(void) {
  log_set_program("test_db");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_migrate_from_empty),
      cmocka_unit_test(test_check_schema_empty_db),
      cmocka_unit_test(test_database_newer_than_nircd),
      cmocka_unit_test(test_migrate_broken_file_rolls_back),
      cmocka_unit_test(test_admin_unreachable),
      cmocka_unit_test(test_exec_invalid),
      cmocka_unit_test(test_queue_full),
      cmocka_unit_test(test_unreachable_backoff),
      cmocka_unit_test(test_resolve_failure_and_close_while_resolving),
      cmocka_unit_test_setup(test_async_1000_inserts, need_schema),
      cmocka_unit_test_setup(test_async_bad_sql_then_ok, need_schema),
      cmocka_unit_test_setup(test_async_audit_append_only, need_schema),
      cmocka_unit_test_setup(test_async_reconnect, need_schema),
      cmocka_unit_test_setup(test_close_with_queued_and_inflight, need_schema),
      cmocka_unit_test_setup(test_close_from_callback, need_schema),
      cmocka_unit_test_setup(test_async_host_fallback, need_schema),
      cmocka_unit_test_setup(test_async_socket_replaced_without_error, need_schema),
      cmocka_unit_test_setup(test_async_resolve_name, need_schema),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
