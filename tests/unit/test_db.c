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
 * The outage tests stop, kill and restart PostgreSQL, so they never touch
 * the shared server: they start a private one with deploy/pg-private.sh on
 * NIRC_TEST_PG_PRIVATE_PORT (default: a port the kernel reports free) in
 * /tmp/nirc-test-db-pg-<uid>-<port>, and remove it at the end.
 *
 * Nothing sleeps to synchronise: the loop runs (UV_RUN_ONCE) until the
 * condition holds, bounded by a deadline timer; a short repeating timer
 * wakes the loop so that conditions outside it (a server's state) are
 * checked too. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"
#include "err.h"
#include "log.h"
#include "support/tmpdir.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <libpq-fe.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

/* The value of keyword kw in conninfo ci ("" if it has none). */
static void ci_get(const char *ci, const char *kw, char *out, size_t n) {
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(ci, &perr);
  assert_non_null(opts);
  out[0] = '\0';
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (strcmp(o->keyword, kw) == 0 && o->val) snprintf(out, n, "%s", o->val);
  }
  PQconninfoFree(opts);
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

static void on_wake(uv_timer_t *t) {
  (void)t;
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
  uv_timer_t t, wake;
  uv_prepare_t p;
  int expired = 0;
  prepare_ctx_t pc = {cond, arg};
  assert_int_equal(uv_timer_init(loop, &t), 0);
  t.data = &expired;
  assert_int_equal(uv_timer_start(&t, on_deadline, DEADLINE_MS, 0), 0);
  assert_int_equal(uv_timer_init(loop, &wake), 0);
  assert_int_equal(uv_timer_start(&wake, on_wake, 20, 20), 0);
  assert_int_equal(uv_prepare_init(loop, &p), 0);
  p.data = &pc;
  assert_int_equal(uv_prepare_start(&p, on_prepare), 0);
  while (!cond(arg) && !expired)
    uv_run(loop, UV_RUN_ONCE);
  int ok = cond(arg);
  uv_close((uv_handle_t *)&t, NULL);
  uv_close((uv_handle_t *)&wake, NULL);
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

/* A loop and a client on ci: with db_open, or with db_open_opts if o. */
static void actx_open_opts(actx_t *a, const char *ci, const db_opts_t *o) {
  memset(a, 0, sizeof *a);
  a->fds = count_fds();
  assert_int_equal(uv_loop_init(&a->loop), 0);
  assert_int_equal(o ? db_open_opts(&a->loop, ci, o, &a->db) : db_open(&a->loop, ci, &a->db), 0);
  assert_non_null(a->db);
}

static void actx_open(actx_t *a, const char *ci) {
  actx_open_opts(a, ci, NULL);
}

/* After db_close: waits for its done callback, then checks that every
 * handle and the client's socket went away with it. */
static void actx_closed(actx_t *a) {
  assert_true(run_until_count(&a->loop, &a->closed, 1));
  assert_int_equal(uv_loop_close(&a->loop), 0);
  assert_int_equal(count_fds(), a->fds);
}

/* Closes the client and checks that every handle went away with it. */
static void actx_close(actx_t *a) {
  db_close(a->db, on_closed, &a->closed);
  assert_int_equal(a->closed, 0); /* done never runs inside db_close */
  actx_closed(a);
  assert_int_equal(a->closed, 1);
}

/* Waits until the client is READY with nothing queued. */
static void settle(actx_t *a, rec_t *r, int seq) {
  q(a->db, r, seq, "select 1", 0, NULL);
  assert_true(run_until_count(&a->loop, &r->ncalls, seq + 1));
  assert_int_equal(r->err[seq], 0);
  assert_int_equal(db_state(a->db), DB_READY);
}

/* Runs sql alone on a new client on ci, and closes it; returns what came
 * back (free it). */
static rec_t *query_alone(const char *ci, const char *sql) {
  actx_t a;
  actx_open(&a, ci);
  rec_t *r = rec_new();
  q(a.db, r, 0, sql, 0, NULL);
  assert_true(run_until_count(&a.loop, &r->ncalls, 1));
  actx_close(&a);
  return r;
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

static void pgp_remove(void);

static int group_teardown(void **state) {
  (void)state;
  pgp_remove();
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
  actx_closed(&a);
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
  actx_closed(&a);
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
  actx_closed(&a);
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

/* Terminates the server processes of the sessions that match `where` (a
 * condition on pg_stat_activity); their number goes to n, as text.
 * Returns what admin_sql returns. */
static int terminate_backends(const char *ci, const char *where, char *n, size_t len) {
  char sql[512];
  snprintf(sql, sizeof sql,
           "select count(pg_terminate_backend(pid)) from pg_stat_activity where %s", where);
  return admin_sql(ci, sql, n, len);
}

static int terminate_client_backend(void) {
  char n[32] = "";
  if (terminate_backends(T.main_ci,
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
  settle(&a, r, 0);

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
  actx_closed(&a);
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
  char ci[1024], port[16], host[240];
  ci_get(T.main_ci, "port", port, sizeof port);
  if (!port[0]) snprintf(port, sizeof port, "5432");
  ci_get(T.main_ci, "host", host, sizeof host);
  if (!host[0] || host[0] == '/' || strchr(host, ','))
    skip(); /* needs a single TCP host in NIRC_TEST_PG */
  char hosts[512], ports[64];
  snprintf(hosts, sizeof hosts, "%s,%s", host, host);
  snprintf(ports, sizeof ports, "1,%s", port);
  ci_build(ci, sizeof ci, T.main_db, hosts, ports, APP_NAME);

  rec_t *r = query_alone(ci, "select current_database()");
  if (r->err[0] != 0) fail_msg("%s", r->msg[0]);
  assert_string_equal(r->val[0], T.main_db);
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
  rec_t *r = query_alone(ci, "select pg_is_in_recovery()");
  if (r->err[0] != 0) fail_msg("%s", r->msg[0]);
  assert_string_equal(r->val[0], "f");
  free(r);
}

/* A host name (not an IP literal) goes through the asynchronous resolver. */
static void test_async_resolve_name(void **state) {
  (void)state;
  NEED_PG();
  char ci[1024], host[64];
  ci_get(T.main_ci, "host", host, sizeof host);
  if (strcmp(host, "127.0.0.1") != 0) skip(); /* "localhost" may mean another address */
  ci_build(ci, sizeof ci, T.main_db, "localhost", NULL, APP_NAME);
  rec_t *r = query_alone(ci, "select 42");
  if (r->err[0] != 0) fail_msg("%s", r->msg[0]);
  assert_string_equal(r->val[0], "42");
  free(r);
}

/* ==== exactly-once writes and the journal ==== */

/* The journal's fixed header (journal.c JNL_HDR): an empty journal is this big. */
#define JNL_HEADER_SIZE 16

static const char EVENT_SQL[] = "INSERT INTO link_events (kind, peer, event, detail) "
                                "VALUES ('unknown', $1, 'journal-test', $2)";

static const char LOAD_SQL[] =
    "INSERT INTO load_minute (site, minute, reports, offered, answered, abandoned, "
    "answered_within, from_other_sites, max_queue, max_wait_ms, avg_logged_in, avg_ready, "
    "avg_talking, avg_aht_ms, unreadable_reports, routed_away) VALUES "
    "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16) "
    "ON CONFLICT (site, minute) DO UPDATE SET reports = load_minute.reports + EXCLUDED.reports, "
    "offered = load_minute.offered + EXCLUDED.offered, "
    "max_queue = greatest(load_minute.max_queue, EXCLUDED.max_queue)";

static void qo(db_t *db, rec_t *r, int seq, const char *sql, int n, const char *const *p) {
  int rc = db_exec_once(db, sql, n, p, rec_cb, &r->slot[seq]);
  if (rc != 0) fail_msg("db_exec_once %d: %s", seq, nirc_strerror(rc));
}

/* Queues link event number i of peer as a once-write. */
static void event_once(db_t *db, rec_t *r, int seq, const char *peer, int i) {
  char d[16];
  snprintf(d, sizeof d, "%d", i);
  const char *p[2] = {peer, d};
  qo(db, r, seq, EVENT_SQL, 2, p);
}

/* Queues one load minute of hubei (16 parameters, the most there are: the
 * key is $17) adding `reports` reports. */
static void load_once(db_t *db, rec_t *r, int seq, const char *minute, const char *reports) {
  const char *p[16] = {"hubei", minute, reports, "10",   "8",    "1",    "7", "0",
                       "4",     "5000", "10.00", "2.00", "6.00", "1800", "0", "0"};
  qo(db, r, seq, LOAD_SQL, 16, p);
}

/* Queues a cutover's two once-writes: its row (id, by peer) at seq, then
 * update_sql ($1 the id, $2 'restored') at seq + 1. */
static void cutover_once(db_t *db, rec_t *r, int seq, const char *id, const char *peer,
                         const char *update_sql) {
  const char *cut[6] = {id, "{hubei}", "{shaanxi}", "test", peer, "2020-01-22T22:00:00Z"};
  qo(db, r, seq,
     "INSERT INTO cutovers (id, sources, hubs, reason, operator, created_at) "
     "VALUES ($1,$2,$3,$4,$5,$6)",
     6, cut);
  const char *upd[2] = {id, "restored"};
  qo(db, r, seq + 1, update_sql, 2, upd);
}

/* A minute no other test (or process) uses. */
static void unique_minute(char *out, size_t n, int k) {
  time_t t = (time_t)978307200 + ((time_t)getpid() * 100 + k) * 60;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, "%Y-%m-%dT%H:%M:00Z", &tm);
}

static long sql_long(const char *ci, const char *sql) {
  char v[64] = "";
  if (admin_sql(ci, sql, v, sizeof v) != 0) return -1;
  return strtol(v, NULL, 10);
}

/* Whether peer has exactly n events numbered 0..n-1 in id order: each
 * applied once, in the order written. */
static int events_in_order(const char *ci, const char *peer, int n) {
  char sql[1024], v[64] = "";
  snprintf(sql, sizeof sql,
           "select count(*) = %d and coalesce(bool_and(d = rn - 1), true) from (select "
           "detail::int d, row_number() over (order by id) rn from link_events where peer = "
           "'%s') t",
           n, peer);
  if (admin_sql(ci, sql, v, sizeof v) != 0) return 0;
  if (strcmp(v, "t") != 0) {
    char got[1024] = "";
    snprintf(sql, sizeof sql,
             "select string_agg(detail, ',' order by id) from link_events where peer = '%s'", peer);
    (void)admin_sql(ci, sql, got, sizeof got);
    fprintf(stderr, "events of %s: [%s], expected 0..%d once each, in order\n", peer, got, n - 1);
  }
  return strcmp(v, "t") == 0;
}

static void ensure_site(const char *ci) {
  assert_int_equal(admin_sql(ci,
                             "insert into sites (slug, name_en, name_zh) values ('hubei', "
                             "'Hubei', 'Hubei') on conflict do nothing",
                             NULL, 0),
                   0);
}

typedef struct {
  char dir[64];
  char path[128];
} jfile_t;

static void jfile_new(jfile_t *j) {
  snprintf(j->dir, sizeof j->dir, "/tmp/nirc-test-jnl-XXXXXX");
  assert_non_null(mkdtemp(j->dir));
  snprintf(j->path, sizeof j->path, "%s/nircd.journal", j->dir);
}

/* Files in the journal's directory whose names start with prefix. */
static int jfile_count(const jfile_t *j, const char *prefix) {
  int n = 0;
  DIR *d = opendir(j->dir);
  assert_non_null(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
  }
  closedir(d);
  return n;
}

static void jfile_free(jfile_t *j) {
  tmpdir_remove(j->dir);
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Inverts one byte of a file. */
static void flip_byte(const char *path, long off) {
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  assert_int_equal(fseek(f, off, SEEK_SET), 0);
  int c = fgetc(f);
  assert_true(c != EOF);
  assert_int_equal(fseek(f, off, SEEK_SET), 0);
  assert_int_equal(fputc(c ^ 0xff, f), c ^ 0xff);
  assert_int_equal(fclose(f), 0);
}

static void actx_open_j(actx_t *a, const char *ci, const char *journal, uint64_t max) {
  db_opts_t o = {journal, max};
  actx_open_opts(a, ci, &o);
}

static db_journal_stats_t jstats(const db_t *db) {
  db_journal_stats_t s;
  db_journal_stats(db, &s);
  return s;
}

typedef struct {
  const db_t *db;
  uint64_t records;
} jrec_cond_t;

static int c_jrecords(const void *arg) {
  const jrec_cond_t *c = arg;
  return jstats(c->db).records == c->records;
}

static int run_until_jrecords(uv_loop_t *loop, const db_t *db, uint64_t n) {
  jrec_cond_t c = {db, n};
  return run_until(loop, c_jrecords, &c);
}

static int c_offline(const void *arg) {
  db_state_t s = db_state(arg);
  return s != DB_READY && s != DB_BUSY;
}

/* Checks that writes seq from..to-1 of r were journaled. */
static void assert_journaled(const rec_t *r, int from, int to) {
  for (int i = from; i < to; i++) {
    if (r->err[i] != 0 || r->had_res[i] || strcmp(r->msg[i], "journaled") != 0)
      fail_msg("write %d: err %d, msg %s: expected journaled", i, r->err[i], r->msg[i]);
  }
}

/* Journals events from..from+n-1 of peer through a client that reaches no
 * database, then closes it: what a controller leaves when it stops during
 * an outage. sizes[i] (if given) is the journal's size after event i. */
static void journal_events(const char *path, uint64_t max, const char *peer, int from, int n,
                           long *sizes) {
  actx_t a;
  actx_open_j(&a, UNREACHABLE, path, max);
  rec_t *r = rec_new();
  for (int i = 0; i < n; i++) {
    event_once(a.db, r, i, peer, from + i);
    if (sizes) sizes[i] = JNL_HEADER_SIZE + (long)jstats(a.db).bytes;
  }
  assert_int_equal(r->ncalls, 0); /* never inside db_exec_once */
  assert_true(run_until_count(&a.loop, &r->ncalls, n));
  assert_int_equal(r->out_of_order, 0);
  assert_journaled(r, 0, n);
  db_journal_stats_t st = jstats(a.db);
  assert_int_equal(st.records, n);
  assert_int_equal(st.journaled_total, n);
  assert_int_equal(file_size(path), JNL_HEADER_SIZE + (long)st.bytes);
  actx_close(&a);
  free(r);
}

/* Opens a client on ci with journal path and runs it until the journal is
 * empty; returns its counters. */
static db_journal_stats_t replay_journal(const char *ci, const char *path) {
  actx_t a;
  actx_open_j(&a, ci, path, 0);
  assert_true(run_until_jrecords(&a.loop, a.db, 0));
  db_journal_stats_t st = jstats(a.db);
  actx_close(&a);
  assert_int_equal(file_size(path), JNL_HEADER_SIZE);
  return st;
}

/* Connected, with an empty journal: once-writes run from memory, in order,
 * with the forms the controller converts (untyped text parameters and
 * NULLs, ::jsonb, an additive upsert with 16 parameters, INSERT and UPDATE
 * of a table with its own key, a statement of its own starting with WITH).
 * Each leaves one key; a refused one leaves none. */
static void test_once_connected(void **state) {
  (void)state;
  NEED_PG();
  ensure_site(T.main_ci);
  actx_t a;
  actx_open(&a, T.main_ci);
  rec_t *r = rec_new();
  char peer[64], minute[32], id[32], sql[512];
  snprintf(peer, sizeof peer, "once-%ld", (long)getpid());
  unique_minute(minute, sizeof minute, 0);
  snprintf(id, sizeof id, "%ld", 900000000L + (long)getpid());
  long keys0 = sql_long(T.main_ci, "select count(*) from journal_keys");

  const char *ev[3] = {peer, NULL, "first"};
  qo(a.db, r, 0,
     "INSERT INTO link_events (kind, identity, peer, event, detail) "
     "VALUES ('unknown', $2, $1, 'once', $3)",
     3, ev);
  const char *au[2] = {peer, "{\"n\": 1}"};
  qo(a.db, r, 1, "INSERT INTO audit_log (actor, action, detail) VALUES ($1, 'once', $2::jsonb)", 2,
     au);
  load_once(a.db, r, 2, minute, "1");
  load_once(a.db, r, 3, minute, "2");
  cutover_once(a.db, r, 4, id, peer,
               "UPDATE cutovers SET state = $2, ended_at = now() WHERE id = $1");
  qo(a.db, r, 6,
     "WITH x AS (SELECT $1::text AS p) INSERT INTO link_events (kind, peer, event) "
     "SELECT 'unknown', p, 'with' FROM x;\n",
     1, ev);
  qo(a.db, r, 7, "INSERT INTO sites (slug, name_en, name_zh) VALUES ('Bad Slug', 'x', 'y')", 0,
     NULL);
  q(a.db, r, 8, "select count(*) from journal_keys", 0, NULL);
  assert_true(run_until_count(&a.loop, &r->ncalls, 9));
  assert_int_equal(r->out_of_order, 0);
  for (int i = 0; i <= 6; i++) {
    if (r->err[i] != 0 || !r->had_res[i]) fail_msg("once-write %d: %s", i, r->msg[i]);
  }
  assert_int_equal(r->err[7], NIRC_EDB);
  assert_true(r->had_res[7]);
  assert_non_null(strstr(r->msg[7], "check constraint"));
  assert_int_equal(strtol(r->val[8], NULL, 10), keys0 + 7);

  snprintf(sql, sizeof sql,
           "select reports from load_minute where site = 'hubei' and minute = '%s'", minute);
  assert_int_equal(sql_long(T.main_ci, sql), 3);
  snprintf(sql, sizeof sql, "select count(*) from cutovers where id = %s and state = 'restored'",
           id);
  assert_int_equal(sql_long(T.main_ci, sql), 1);
  snprintf(sql, sizeof sql, "select count(*) from link_events where peer = '%s'", peer);
  assert_int_equal(sql_long(T.main_ci, sql), 2);
  db_journal_stats_t st = jstats(a.db);
  assert_int_equal(st.failed_total, 1);
  assert_int_equal(st.journaled_total + st.duplicates_total + st.replayed_total + st.records, 0);

  /* Arguments. */
  const char *p[DB_MAX_PARAMS + 1] = {0};
  assert_int_equal(db_exec_once(a.db, NULL, 0, NULL, NULL, NULL), NIRC_EINVAL);
  assert_int_equal(db_exec_once(a.db, "", 0, NULL, NULL, NULL), NIRC_EINVAL);
  assert_int_equal(db_exec_once(a.db, EVENT_SQL, DB_MAX_PARAMS + 1, p, NULL, NULL), NIRC_EINVAL);
  assert_int_equal(db_exec_once(a.db, EVENT_SQL, 2, NULL, NULL, NULL), NIRC_EINVAL);
  assert_int_equal(db_exec_once(NULL, EVENT_SQL, 0, NULL, NULL, NULL), NIRC_EINVAL);
  char *big = malloc(DB_JOURNAL_RECORD_MAX + 1);
  assert_non_null(big);
  memset(big, 'x', DB_JOURNAL_RECORD_MAX);
  big[DB_JOURNAL_RECORD_MAX] = '\0';
  const char *bp[2] = {peer, big};
  assert_int_equal(db_exec_once(a.db, EVENT_SQL, 2, bp, NULL, NULL), NIRC_ERANGE);
  free(big);
  assert_int_equal(db_queue_depth(a.db), 0);

  /* Pruning removes keys older than the retention, and only those. */
  char old_key[64], new_key[64];
  snprintf(old_key, sizeof old_key, "test-old-%ld", (long)getpid());
  snprintf(new_key, sizeof new_key, "test-new-%ld", (long)getpid());
  snprintf(sql, sizeof sql,
           "insert into journal_keys (key, created_at) values ('%s', now() - interval '8 days'), "
           "('%s', now() - interval '6 days')",
           old_key, new_key);
  assert_int_equal(admin_sql(T.main_ci, sql, NULL, 0), 0);
  assert_int_equal(db_prune_keys(a.db), 0);
  snprintf(sql, sizeof sql,
           "select string_agg(key, ',') from journal_keys where key in ('%s', '%s')", old_key,
           new_key);
  q(a.db, r, 9, sql, 0, NULL);
  assert_true(run_until_count(&a.loop, &r->ncalls, 10));
  assert_string_equal(r->val[9], new_key);
  actx_close(&a);
  free(r);
}

/* What a stopped controller left in its journal is replayed, in order, by
 * the next client that opens it, and by the blocking start-up replay; a
 * database still down leaves the journal as it was. */
static void test_journal_replayed_at_open(void **state) {
  (void)state;
  NEED_PG();
  jfile_t j;
  jfile_new(&j);
  char peer[64];
  snprintf(peer, sizeof peer, "jnl-open-%ld", (long)getpid());

  /* A queued ordinary query is not journaled: it completes with ECLOSED. */
  actx_t a;
  actx_open_j(&a, UNREACHABLE, j.path, 0);
  assert_int_equal(file_size(j.path), JNL_HEADER_SIZE);
  rec_t *r = rec_new();
  for (int i = 0; i < 20; i++)
    event_once(a.db, r, i, peer, i);
  q(a.db, r, 20, "select 1", 0, NULL);
  assert_true(run_until_count(&a.loop, &r->ncalls, 20));
  assert_journaled(r, 0, 20);
  assert_int_equal(db_queue_depth(a.db), 1);
  db_close(a.db, on_closed, &a.closed);
  assert_int_equal(r->ncalls, 21);
  assert_int_equal(r->err[20], NIRC_ECLOSED);
  actx_closed(&a);

  actx_open_j(&a, T.main_ci, j.path, 0);
  assert_int_equal(jstats(a.db).records, 20); /* counted when opened */
  assert_true(run_until_jrecords(&a.loop, a.db, 0));
  db_journal_stats_t st = jstats(a.db);
  assert_int_equal(st.replayed_total, 20);
  assert_int_equal(st.duplicates_total, 0);
  assert_int_equal(st.failed_total, 0);
  actx_close(&a);
  assert_int_equal(file_size(j.path), JNL_HEADER_SIZE);
  assert_true(events_in_order(T.main_ci, peer, 20));

  /* The blocking replay nircd runs at start-up. */
  char peer2[64], err[512] = "";
  snprintf(peer2, sizeof peer2, "jnl-admin-%ld", (long)getpid());
  journal_events(j.path, 0, peer2, 0, 5, NULL);
  long size = file_size(j.path);
  assert_int_equal(db_admin_replay_journal(UNREACHABLE, j.path, err, sizeof err), NIRC_EDB);
  assert_non_null(strstr(err, "is PostgreSQL running?"));
  assert_int_equal(file_size(j.path), size);
  if (db_admin_replay_journal(T.main_ci, j.path, err, sizeof err) != 0) fail_msg("%s", err);
  assert_int_equal(file_size(j.path), JNL_HEADER_SIZE);
  assert_true(events_in_order(T.main_ci, peer2, 5));
  assert_int_equal(db_admin_replay_journal(T.main_ci, j.path, err, sizeof err), 0);
  assert_int_equal(db_admin_replay_journal(T.main_ci, "", err, sizeof err), 0);
  assert_true(events_in_order(T.main_ci, peer2, 5));
  free(r);
  jfile_free(&j);
}

/* A crash while a record was being written leaves a torn last record: cut
 * short, an incomplete header, or a bad CRC. It is dropped with a warning
 * and the records before it are replayed. */
static void test_journal_torn_last_record(void **state) {
  (void)state;
  NEED_PG();
  jfile_t j;
  jfile_new(&j);
  for (int k = 0; k < 3; k++) {
    char peer[64];
    snprintf(peer, sizeof peer, "jnl-torn%d-%ld", k, (long)getpid());
    long sizes[3];
    journal_events(j.path, 0, peer, 0, 3, sizes);
    int keep = 2;
    if (k == 0) {
      assert_int_equal(truncate(j.path, sizes[2] - 5), 0); /* cut short */
    } else if (k == 1) {
      FILE *f = fopen(j.path, "ab"); /* half a record header after three records */
      assert_non_null(f);
      assert_int_equal(fwrite("\x10\x00\x00", 1, 3, f), 3);
      assert_int_equal(fclose(f), 0);
      keep = 3;
    } else {
      flip_byte(j.path, sizes[2] - 1); /* the last record's CRC no longer matches */
    }
    actx_t a;
    actx_open_j(&a, T.main_ci, j.path, 0);
    db_journal_stats_t st = jstats(a.db);
    assert_int_equal(st.torn_total, 1);
    assert_int_equal(st.corrupt_total, 0);
    assert_int_equal(st.records, keep);
    assert_true(run_until_jrecords(&a.loop, a.db, 0));
    assert_int_equal(jstats(a.db).replayed_total, keep);
    actx_close(&a);
    assert_true(events_in_order(T.main_ci, peer, keep));
    assert_int_equal(jfile_count(&j, "nircd.journal.corrupt"), 0);
  }
  jfile_free(&j);
}

/* Damage before the last record, or a file that is not a journal, does not
 * stop the client: the file is renamed aside, the intact records before the
 * damage are replayed, and the journal works on. */
static void test_journal_damage_set_aside(void **state) {
  (void)state;
  NEED_PG();
  jfile_t j;
  jfile_new(&j);
  char peer[64];
  snprintf(peer, sizeof peer, "jnl-damage-%ld", (long)getpid());
  long sizes[3];
  journal_events(j.path, 0, peer, 0, 3, sizes);
  flip_byte(j.path, sizes[0] + 12); /* inside the second record */
  db_journal_stats_t st = replay_journal(T.main_ci, j.path);
  assert_int_equal(st.corrupt_total, 1);
  assert_int_equal(st.replayed_total, 1);
  assert_int_equal(jfile_count(&j, "nircd.journal.corrupt-"), 1);
  assert_true(events_in_order(T.main_ci, peer, 1));

  /* Not a journal at all. */
  write_file(j.path, "this is not a journal, but it is long enough\n");
  actx_t a;
  actx_open_j(&a, UNREACHABLE, j.path, 0);
  st = jstats(a.db);
  assert_int_equal(st.corrupt_total, 1);
  assert_int_equal(st.records, 0);
  assert_int_equal(jfile_count(&j, "nircd.journal.corrupt-"), 2);
  rec_t *r = rec_new();
  event_once(a.db, r, 0, peer, 1);
  assert_true(run_until_count(&a.loop, &r->ncalls, 1));
  assert_journaled(r, 0, 1);

  /* One journal, one process: a second client may not share it. */
  uv_loop_t l;
  db_t *second = NULL;
  db_opts_t o = {j.path, 0};
  assert_int_equal(uv_loop_init(&l), 0);
  assert_int_equal(db_open_opts(&l, UNREACHABLE, &o, &second), NIRC_EIO);
  assert_null(second);
  /* A directory that does not exist is refused at open. */
  o.journal = "/nonexistent-nirc-dir/nircd.journal";
  assert_int_equal(db_open_opts(&l, UNREACHABLE, &o, &second), NIRC_EIO);
  char err[512] = "";
  assert_int_equal(db_admin_replay_journal(T.main_ci, o.journal, err, sizeof err), NIRC_EIO);
  assert_non_null(strstr(err, "set [database] journal"));
  assert_int_equal(uv_loop_close(&l), 0);
  actx_close(&a);
  st = replay_journal(T.main_ci, j.path);
  assert_int_equal(st.replayed_total, 1);
  assert_true(events_in_order(T.main_ci, peer, 2));
  free(r);
  jfile_free(&j);
}

/* journal_max bounds the file: a write that would pass it is refused with
 * NIRC_EFULL and counted, and what is in the journal stays intact. */
static void test_journal_full(void **state) {
  (void)state;
  jfile_t j;
  jfile_new(&j);
  actx_t a;
  actx_open_j(&a, UNREACHABLE, j.path, 4096);
  rec_t *r = rec_new();
  char detail[300];
  memset(detail, 'd', sizeof detail - 1);
  detail[sizeof detail - 1] = '\0';
  const char *p[2] = {"jnl-full", detail};
  int n = 0, rc;
  while ((rc = db_exec_once(a.db, EVENT_SQL, 2, p, rec_cb, &r->slot[n])) == 0) {
    n++;
    assert_true(n < 20);
  }
  assert_int_equal(rc, NIRC_EFULL);
  assert_true(n >= 5);
  db_journal_stats_t st = jstats(a.db);
  assert_int_equal(st.refused_total, 1);
  assert_int_equal(st.records, n);
  assert_true(JNL_HEADER_SIZE + st.bytes <= 4096);
  assert_int_equal(db_exec_once(a.db, EVENT_SQL, 2, p, NULL, NULL), NIRC_EFULL);
  assert_int_equal(jstats(a.db).refused_total, 2);
  assert_true(run_until_count(&a.loop, &r->ncalls, n));
  assert_journaled(r, 0, n);
  assert_int_equal(file_size(j.path), JNL_HEADER_SIZE + (long)st.bytes);
  actx_close(&a);

  actx_open_j(&a, UNREACHABLE, j.path, 4096);
  assert_int_equal(jstats(a.db).records, n);
  assert_int_equal(jstats(a.db).torn_total + jstats(a.db).corrupt_total, 0);
  actx_close(&a);
  free(r);
  jfile_free(&j);
}

/* A journal replayed again (a crash after the writes were applied but
 * before the file was emptied) changes nothing: every record is found by
 * its key, counted as a duplicate and skipped, including an additive load
 * minute and an INSERT whose table has a primary key of its own. */
static void test_journal_duplicates_skipped(void **state) {
  (void)state;
  NEED_PG();
  ensure_site(T.main_ci);
  jfile_t j;
  jfile_new(&j);
  char peer[64], minute[32], id[32], copy[160], sql[256];
  snprintf(peer, sizeof peer, "jnl-dup-%ld", (long)getpid());
  unique_minute(minute, sizeof minute, 1);
  snprintf(id, sizeof id, "%ld", 910000000L + (long)getpid());
  snprintf(copy, sizeof copy, "%s.copy", j.path);

  actx_t a;
  actx_open_j(&a, UNREACHABLE, j.path, 0);
  rec_t *r = rec_new();
  event_once(a.db, r, 0, peer, 0);
  load_once(a.db, r, 1, minute, "5");
  cutover_once(a.db, r, 2, id, peer, "UPDATE cutovers SET state = $2 WHERE id = $1");
  assert_true(run_until_count(&a.loop, &r->ncalls, 4));
  assert_journaled(r, 0, 4);
  actx_close(&a);
  copy_file(j.path, copy);

  db_journal_stats_t st = replay_journal(T.main_ci, j.path);
  assert_int_equal(st.replayed_total, 4);
  assert_int_equal(st.duplicates_total, 0);
  assert_int_equal(rename(copy, j.path), 0);
  st = replay_journal(T.main_ci, j.path);
  assert_int_equal(st.replayed_total, 0);
  assert_int_equal(st.duplicates_total, 4);
  assert_int_equal(st.failed_total, 0);

  assert_true(events_in_order(T.main_ci, peer, 1));
  snprintf(sql, sizeof sql,
           "select reports from load_minute where site = 'hubei' and minute = '%s'", minute);
  assert_int_equal(sql_long(T.main_ci, sql), 5);
  snprintf(sql, sizeof sql, "select count(*) from cutovers where id = %s and state = 'restored'",
           id);
  assert_int_equal(sql_long(T.main_ci, sql), 1);
  free(r);
  jfile_free(&j);
}

/* Once-writes queued in memory when the connection breaks move to the
 * journal in order; those the journal cannot take (journal_max) stay in
 * memory, behind it. After the reconnection all land once, in order. */
static void test_journal_spill_when_connection_breaks(void **state) {
  (void)state;
  NEED_PG();
  jfile_t j;
  jfile_new(&j);
  char peer[320];
  int k = snprintf(peer, sizeof peer, "jnl-spill-%ld-", (long)getpid());
  memset(peer + k, 'p', sizeof peer - (size_t)k - 1); /* big records: the journal fills */
  peer[sizeof peer - 1] = '\0';
  char ci[1024];
  ci_build(ci, sizeof ci, T.main_db, NULL, NULL, "nirc-test-spill");
  actx_t a;
  actx_open_j(&a, ci, j.path, 4096);
  rec_t *r = rec_new();
  settle(&a, r, 0);
  q(a.db, r, 1, "select pg_sleep(60)", 0, NULL);
  for (int i = 0; i < 20; i++)
    event_once(a.db, r, 2 + i, peer, i);
  assert_true(run_until_state(&a.loop, a.db, DB_BUSY));
  assert_int_equal(db_queue_depth(a.db), 20);
  char n[16] = "";
  assert_int_equal(
      terminate_backends(T.main_ci, "application_name = 'nirc-test-spill'", n, sizeof n), 0);
  assert_string_equal(n, "1");
  assert_true(run_until(&a.loop, c_offline, a.db));
  db_journal_stats_t st = jstats(a.db);
  int spilled = (int)st.records;
  assert_true(spilled > 0 && spilled < 20);
  assert_int_equal(db_queue_depth(a.db), 20 - spilled);
  assert_int_equal(st.refused_total, 0); /* nothing was refused to a writer */

  assert_true(run_until_count(&a.loop, &r->ncalls, 22));
  assert_true(run_until_jrecords(&a.loop, a.db, 0));
  assert_int_equal(r->err[1], NIRC_EDB); /* an ordinary query is not sent again */
  assert_journaled(r, 2, 2 + spilled);
  for (int i = 2 + spilled; i < 22; i++) {
    if (r->err[i] != 0 || !r->had_res[i]) fail_msg("write %d: %s", i, r->msg[i]);
  }
  st = jstats(a.db);
  assert_int_equal(st.replayed_total, spilled);
  assert_int_equal(st.duplicates_total, 0);
  actx_close(&a);
  assert_true(events_in_order(T.main_ci, peer, 20));
  free(r);
  jfile_free(&j);
}

/* ---- outages: a private PostgreSQL to stop, kill and start ---- */

static struct {
  int made;   /* the directory may exist: remove it at the end */
  int failed; /* setting it up failed: the tests that need it fail too */
  int port;
  char src[PATH_MAX];
  char dir[PATH_MAX];
  char log[PATH_MAX + 8];
  char admin[256];   /* blocking helpers: database nirc */
  char ci[512];      /* clients under test */
  char sync_ci[512]; /* clients whose commits wait for a standby that never comes */
} P;

__attribute__((format(printf, 1, 2))) static int sh(const char *fmt, ...) {
  char cmd[4 * PATH_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int rc = system(cmd);
  return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Starts the private server (and waits until it accepts connections; after
 * a kill this includes crash recovery). */
static int pgp_start(void) {
  int rc = sh("NIRC_PG_FAST=1 '%s/deploy/pg-private.sh' start '%s' %d >>'%s' 2>&1", P.src, P.dir,
              P.port, P.log);
  if (rc != 0) {
    fprintf(stderr, "private PostgreSQL on port %d did not start:\n", P.port);
    sh("tail -n 20 '%s' >&2", P.log);
  }
  return rc;
}

/* Fast shutdown: clients are told and disconnected. */
static int pgp_stop(void) {
  return sh("'%s/deploy/pg-private.sh' stop '%s' >>'%s' 2>&1", P.src, P.dir, P.log);
}

static long pgp_postmaster_pid(void) {
  char path[PATH_MAX + 32], line[32] = "";
  snprintf(path, sizeof path, "%s/data/postmaster.pid", P.dir);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  if (!fgets(line, sizeof line, f)) line[0] = '\0';
  fclose(f);
  return strtol(line, NULL, 10);
}

/* Whether a process has exited (gone, or a zombie nobody reaped); arg
 * points to its pid (a long). */
static int c_proc_gone(const void *arg) {
  long pid = *(const long *)arg;
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *rp = strrchr(buf, ')');
  return rp && rp[1] == ' ' && rp[2] == 'Z';
}

/* A loopback port nothing listens on now, as the kernel picks one for a
 * socket bound to port 0; 0 on failure. */
static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int port = 0;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
      getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
    port = ntohs(sa.sin_port);
  }
  close(fd);
  return port;
}

static int need_private_pg(void **state) {
  (void)state;
  if (P.failed) return -1;
  if (!T.have_pg || P.made) return 0;
  P.failed = 1; /* until it is all set up */
  const char *port = getenv("NIRC_TEST_PG_PRIVATE_PORT");
  P.port = port && *port ? atoi(port) : free_port();
  if (P.port < 1024 || P.port > 65535) {
    fprintf(stderr, "no port for the private PostgreSQL: set NIRC_TEST_PG_PRIVATE_PORT\n");
    return -1;
  }
  const char *src = getenv("NIRC_SOURCE_DIR");
  snprintf(P.src, sizeof P.src, "%s", src && *src ? src : ".");
  snprintf(P.dir, sizeof P.dir, "/tmp/nirc-test-db-pg-%ld-%d", (long)getuid(), P.port);
  snprintf(P.log, sizeof P.log, "%s.log", P.dir);
  snprintf(P.admin, sizeof P.admin, "host=127.0.0.1 port=%d user=nirc dbname=nirc", P.port);
  snprintf(P.ci, sizeof P.ci, "%s application_name=nirc-test-db connect_timeout=2", P.admin);
  snprintf(P.sync_ci, sizeof P.sync_ci,
           "%s application_name=nirc-test-sync connect_timeout=2 "
           "options='-c synchronous_commit=on'",
           P.admin);
  /* A cluster left by an interrupted run is discarded. */
  sh("'%s/deploy/pg-private.sh' stop '%s' >/dev/null 2>&1; rm -rf '%s' '%s'", P.src, P.dir, P.dir,
     P.log);
  P.made = 1;
  if (pgp_start() != 0) return -1;
  /* Synchronous replication to a standby that never connects: a commit is
   * then written to the WAL but not acknowledged, for clients that ask for
   * it (synchronous_commit=on); everyone else commits locally. Set before a
   * restart, so that every server process has it from the start. */
  if (admin_sql(P.admin, "alter system set synchronous_standby_names = 'nirc_test_no_standby'",
                NULL, 0) != 0 ||
      admin_sql(P.admin, "alter system set synchronous_commit = 'local'", NULL, 0) != 0 ||
      pgp_stop() != 0 || pgp_start() != 0) {
    return -1;
  }
  char err[512];
  if (migrate_quiet(P.admin, T.schema_dir, err, sizeof err, NULL, 0) != 0) {
    fprintf(stderr, "migrate the private PostgreSQL: %s\n", err);
    return -1;
  }
  if (admin_sql(P.admin,
                "insert into sites (slug, name_en, name_zh) values ('hubei', 'Hubei', 'Hubei')",
                NULL, 0) != 0) {
    return -1;
  }
  P.failed = 0;
  return 0;
}

static void pgp_remove(void) {
  if (!P.made) return;
  sh("'%s/deploy/pg-private.sh' stop '%s' >/dev/null 2>&1; rm -rf '%s' '%s'", P.src, P.dir, P.dir,
     P.log);
  P.made = 0;
}

static int c_syncrep_wait(const void *arg) {
  (void)arg;
  char v[16] = "";
  (void)admin_sql(P.admin,
                  "select count(*) from pg_stat_activity where application_name = "
                  "'nirc-test-sync' and wait_event = 'SyncRep'",
                  v, sizeof v);
  return strcmp(v, "1") == 0;
}

/* The acceptance scenario in small: writes made while PostgreSQL is down
 * are journaled and land exactly once, in order, when it is back; an
 * ordinary query queued meanwhile runs after the journal has drained. */
static void test_outage_journaled_in_order(void **state) {
  (void)state;
  NEED_PG();
  jfile_t j;
  jfile_new(&j);
  char peer[64], minute[32], sql[256];
  snprintf(peer, sizeof peer, "outage-%ld", (long)getpid());
  unique_minute(minute, sizeof minute, 2);
  actx_t a;
  actx_open_j(&a, P.ci, j.path, 0);
  rec_t *r = rec_new();
  settle(&a, r, 0);
  for (int i = 0; i < 3; i++)
    event_once(a.db, r, 1 + i, peer, i);
  assert_true(run_until_count(&a.loop, &r->ncalls, 4));
  for (int i = 1; i < 4; i++)
    assert_true(r->err[i] == 0 && r->had_res[i]); /* applied at once, not journaled */

  assert_int_equal(pgp_stop(), 0);
  assert_true(run_until(&a.loop, c_offline, a.db));
  int seq = 4;
  for (int i = 3; i < 43; i++) {
    event_once(a.db, r, seq++, peer, i);
    if (i % 8 == 0) load_once(a.db, r, seq++, minute, "1");
  }
  snprintf(sql, sizeof sql, "select count(*) from link_events where peer = '%s'", peer);
  q(a.db, r, seq, sql, 0, NULL);
  assert_true(run_until_count(&a.loop, &r->ncalls, seq));
  assert_journaled(r, 4, seq);
  db_journal_stats_t st = jstats(a.db);
  assert_int_equal(st.records, seq - 4);
  assert_true(st.bytes > 0);
  assert_int_equal(file_size(j.path), JNL_HEADER_SIZE + (long)st.bytes);

  assert_int_equal(pgp_start(), 0);
  assert_true(run_until_count(&a.loop, &r->ncalls, seq + 1));
  assert_int_equal(r->err[seq], 0);
  assert_string_equal(r->val[seq], "43"); /* the journal went first */
  st = jstats(a.db);
  assert_int_equal(st.records, 0);
  assert_int_equal(st.replayed_total, seq - 4);
  assert_int_equal(st.duplicates_total, 0);
  assert_int_equal(st.failed_total, 0);
  assert_int_equal(file_size(j.path), JNL_HEADER_SIZE);
  actx_close(&a);
  assert_true(events_in_order(P.admin, peer, 43));
  snprintf(sql, sizeof sql,
           "select reports from load_minute where site = 'hubei' and minute = '%s'", minute);
  assert_int_equal(sql_long(P.admin, sql), 5);
  free(r);
  jfile_free(&j);
}

/* A write in flight when the server is killed (pg_ctl stop -m immediate
 * sends the postmaster SIGQUIT) had committed locally but was never
 * acknowledged (its commit waited for a standby). The client journals it
 * with its key, and after crash recovery the replay finds the key: the
 * write exists exactly once. */
static void test_outage_inflight_killed_lands_once(void **state) {
  (void)state;
  NEED_PG();
  jfile_t j;
  jfile_new(&j);
  char peer[64], sql[256];
  snprintf(peer, sizeof peer, "killed-%ld", (long)getpid());
  snprintf(sql, sizeof sql, "select count(*) from link_events where peer = '%s'", peer);
  actx_t a;
  actx_open_j(&a, P.sync_ci, j.path, 0);
  rec_t *r = rec_new();
  settle(&a, r, 0);
  event_once(a.db, r, 1, peer, 0);
  assert_true(run_until(&a.loop, c_syncrep_wait, NULL));
  assert_int_equal(db_state(a.db), DB_BUSY);
  assert_int_equal(sql_long(P.admin, sql), 0); /* not visible yet */

  long pid = pgp_postmaster_pid();
  assert_true(pid > 1);
  assert_int_equal(kill((pid_t)pid, SIGQUIT), 0);
  assert_true(run_until_count(&a.loop, &r->ncalls, 2));
  assert_journaled(r, 1, 2); /* moved to the journal when the connection broke */
  assert_true(run_until(&a.loop, c_offline, a.db));
  assert_int_equal(jstats(a.db).records, 1);
  assert_true(run_until(&a.loop, c_proc_gone, &pid)); /* before a new one may start */

  assert_int_equal(pgp_start(), 0);
  assert_int_equal(sql_long(P.admin, sql), 1); /* crash recovery kept the commit */
  assert_true(run_until_jrecords(&a.loop, a.db, 0));
  db_journal_stats_t st = jstats(a.db);
  assert_int_equal(st.duplicates_total, 1);
  assert_int_equal(st.replayed_total, 0);
  assert_int_equal(st.failed_total, 0);
  actx_close(&a);
  assert_int_equal(sql_long(P.admin, sql), 1);
  free(r);
  jfile_free(&j);
}

/* Without a journal, a once-write whose connection broke after it had
 * committed is sent again on the next connection, found by its key, and
 * reported as applied; it is neither lost nor applied twice. */
static void test_inflight_resent_without_journal(void **state) {
  (void)state;
  NEED_PG();
  char peer[64], sql[256];
  snprintf(peer, sizeof peer, "resent-%ld", (long)getpid());
  snprintf(sql, sizeof sql, "select count(*) from link_events where peer = '%s'", peer);
  actx_t a;
  actx_open(&a, P.sync_ci);
  rec_t *r = rec_new();
  settle(&a, r, 0);
  event_once(a.db, r, 1, peer, 0);
  assert_true(run_until(&a.loop, c_syncrep_wait, NULL));
  char n[16] = "";
  assert_int_equal(terminate_backends(P.admin,
                                      "application_name = 'nirc-test-sync' and wait_event = "
                                      "'SyncRep'",
                                      n, sizeof n),
                   0);
  assert_string_equal(n, "1");
  assert_true(run_until_count(&a.loop, &r->ncalls, 2));
  assert_int_equal(r->err[1], 0);
  assert_string_equal(r->msg[1], "already applied");
  assert_false(r->had_res[1]);
  db_journal_stats_t st = jstats(a.db);
  assert_int_equal(st.duplicates_total, 1);
  assert_int_equal(st.journaled_total, 0);
  actx_close(&a);
  assert_int_equal(sql_long(P.admin, sql), 1);
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
      cmocka_unit_test_setup(test_once_connected, need_schema),
      cmocka_unit_test_setup(test_journal_replayed_at_open, need_schema),
      cmocka_unit_test_setup(test_journal_torn_last_record, need_schema),
      cmocka_unit_test_setup(test_journal_damage_set_aside, need_schema),
      cmocka_unit_test(test_journal_full),
      cmocka_unit_test_setup(test_journal_duplicates_skipped, need_schema),
      cmocka_unit_test_setup(test_journal_spill_when_connection_breaks, need_schema),
      cmocka_unit_test_setup(test_outage_journaled_in_order, need_private_pg),
      cmocka_unit_test_setup(test_outage_inflight_killed_lands_once, need_private_pg),
      cmocka_unit_test_setup(test_inflight_resent_without_journal, need_private_pg),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
