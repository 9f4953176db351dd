/* pgtest: the fixtures and helpers the PostgreSQL tests share (see
 * pgtest.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support/pgtest.h"

#include "db.h"
#include "log.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#define DEADLINE_MS 20000

pgtest_env_t pgtest_env;
pgtest_pgp_t pgtest_pgp;

/* ---- conninfo and blocking admin helpers (tests may block) ---- */

void pgtest_ci_append(char *out, size_t n, const char *kw, const char *val) {
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
void pgtest_ci_build(char *out, size_t n, const char *dbname, const char *host, const char *port,
                     const char *app) {
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(pgtest_env.admin, &perr);
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
    pgtest_ci_append(out, n, o->keyword, o->val);
  }
  PQconninfoFree(opts);
  if (dbname) pgtest_ci_append(out, n, "dbname", dbname);
  if (host) pgtest_ci_append(out, n, "host", host);
  if (port) pgtest_ci_append(out, n, "port", port);
  if (app) pgtest_ci_append(out, n, "application_name", app);
}

/* The value of keyword kw in conninfo ci ("" if it has none). */
void pgtest_ci_get(const char *ci, const char *kw, char *out, size_t n) {
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
int pgtest_sql(const char *ci, const char *sql, char *val, size_t n) {
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

int pgtest_create_db(const char *name) {
  char sql[256];
  snprintf(sql, sizeof sql, "drop database if exists %s with (force)", name);
  if (pgtest_sql(pgtest_env.admin, sql, NULL, 0) != 0) return -1;
  snprintf(sql, sizeof sql, "create database %s", name);
  return pgtest_sql(pgtest_env.admin, sql, NULL, 0);
}

void pgtest_drop_db(const char *name) {
  char sql[256];
  snprintf(sql, sizeof sql, "drop database if exists %s with (force)", name);
  (void)pgtest_sql(pgtest_env.admin, sql, NULL, 0);
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

int pgtest_migrate_quiet(const char *ci, const char *dir, char *err, size_t errlen, char *out,
                         size_t outlen) {
  char sink[1024];
  capture_start();
  int rc = db_admin_migrate(ci, dir, err, errlen);
  capture_stop(out ? out : sink, out ? outlen : sizeof sink);
  return rc;
}

/* ---- running the loop until something is true ---- */

static void on_deadline(uv_timer_t *t) {
  *(int *)t->data = 1;
}

static void on_wake(uv_timer_t *t) {
  (void)t;
}

typedef struct {
  pgtest_cond_fn cond;
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
int pgtest_run_until(uv_loop_t *loop, pgtest_cond_fn cond, const void *arg) {
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

int pgtest_run_until_count(uv_loop_t *loop, const int *counter, int want) {
  count_cond_t c = {counter, want};
  return pgtest_run_until(loop, c_count, &c);
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

int pgtest_run_until_state(uv_loop_t *loop, const db_t *db, db_state_t s) {
  state_cond_t c = {db, s, 0};
  return pgtest_run_until(loop, c_state, &c);
}

int pgtest_run_until_not_state(uv_loop_t *loop, const db_t *db, db_state_t s) {
  state_cond_t c = {db, s, 1};
  return pgtest_run_until(loop, c_state, &c);
}

/* ---- recording callbacks ---- */

pgtest_rec_t *pgtest_rec_new(void) {
  pgtest_rec_t *r = calloc(1, sizeof *r);
  assert_non_null(r);
  for (int i = 0; i < PGTEST_MAXCALLS; i++)
    r->slot[i] = (pgtest_slot_t){r, i};
  return r;
}

void pgtest_rec_cb(void *arg, int err, const char *msg, PGresult *res) {
  pgtest_slot_t *s = arg;
  pgtest_rec_t *r = s->rec;
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

void pgtest_q(db_t *db, pgtest_rec_t *r, int seq, const char *sql, int n, const char *const *p) {
  assert_int_equal(db_exec(db, sql, n, p, pgtest_rec_cb, &r->slot[seq]), 0);
}

/* ---- one loop + one client per async test ---- */

/* Counts this process's open descriptors, so a test can see that closing
 * the client closed its socket too. */
int pgtest_count_fds(void) {
  int n = 0;
  for (int fd = 0; fd < 1024; fd++) {
    struct stat st;
    if (fstat(fd, &st) == 0) n++;
  }
  return n;
}

void pgtest_on_closed(void *arg) {
  (*(int *)arg)++;
}

/* A loop and a client on ci: with db_open, or with db_open_opts if o. */
void pgtest_actx_open_opts(pgtest_actx_t *a, const char *ci, const db_opts_t *o) {
  memset(a, 0, sizeof *a);
  a->fds = pgtest_count_fds();
  assert_int_equal(uv_loop_init(&a->loop), 0);
  assert_int_equal(o ? db_open_opts(&a->loop, ci, o, &a->db) : db_open(&a->loop, ci, &a->db), 0);
  assert_non_null(a->db);
}

void pgtest_actx_open(pgtest_actx_t *a, const char *ci) {
  pgtest_actx_open_opts(a, ci, NULL);
}

/* After db_close: waits for its done callback, then checks that every
 * handle and the client's socket went away with it. */
void pgtest_actx_closed(pgtest_actx_t *a) {
  assert_true(pgtest_run_until_count(&a->loop, &a->closed, 1));
  assert_int_equal(uv_loop_close(&a->loop), 0);
  assert_int_equal(pgtest_count_fds(), a->fds);
}

/* Closes the client and checks that every handle went away with it. */
void pgtest_actx_close(pgtest_actx_t *a) {
  db_close(a->db, pgtest_on_closed, &a->closed);
  assert_int_equal(a->closed, 0); /* done never runs inside db_close */
  pgtest_actx_closed(a);
  assert_int_equal(a->closed, 1);
}

/* Waits until the client is READY with nothing queued. */
void pgtest_settle(pgtest_actx_t *a, pgtest_rec_t *r, int seq) {
  pgtest_q(a->db, r, seq, "select 1", 0, NULL);
  assert_true(pgtest_run_until_count(&a->loop, &r->ncalls, seq + 1));
  assert_int_equal(r->err[seq], 0);
  assert_int_equal(db_state(a->db), DB_READY);
}

/* Runs sql alone on a new client on ci, and closes it; returns what came
 * back (free it). */
pgtest_rec_t *pgtest_query_alone(const char *ci, const char *sql) {
  pgtest_actx_t a;
  pgtest_actx_open(&a, ci);
  pgtest_rec_t *r = pgtest_rec_new();
  pgtest_q(a.db, r, 0, sql, 0, NULL);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 1));
  pgtest_actx_close(&a);
  return r;
}

/* ---- group setup ---- */

int pgtest_group_setup(void **state) {
  (void)state;
  /* The first loop of a process opens descriptors libuv keeps until exit
   * (its signal pipe); open one here, so that pgtest_actx_closed counts
   * the same descriptors before and after in whichever test comes first. */
  uv_loop_t first;
  if (uv_loop_init(&first) != 0 || uv_loop_close(&first) != 0) return -1;
  const char *pg = getenv("NIRC_TEST_PG");
  const char *src = getenv("NIRC_SOURCE_DIR");
  snprintf(pgtest_env.schema_dir, sizeof pgtest_env.schema_dir, "%s/schema",
           src && *src ? src : ".");
  if (getenv("NIRC_TEST_DEBUG")) log_set_level(LOG_LVL_DEBUG);
  if (!pg || !*pg) return 0;
  snprintf(pgtest_env.admin, sizeof pgtest_env.admin, "%s", pg);
  snprintf(pgtest_env.main_db, sizeof pgtest_env.main_db, "nirc_test_%ld", (long)getpid());
  snprintf(pgtest_env.empty_db, sizeof pgtest_env.empty_db, "nirc_test_empty_%ld", (long)getpid());
  snprintf(pgtest_env.scratch_db, sizeof pgtest_env.scratch_db, "nirc_test_scratch_%ld",
           (long)getpid());
  if (pgtest_create_db(pgtest_env.main_db) != 0 || pgtest_create_db(pgtest_env.empty_db) != 0)
    return -1;
  pgtest_ci_build(pgtest_env.main_ci, sizeof pgtest_env.main_ci, pgtest_env.main_db, NULL, NULL,
                  PGTEST_APP_NAME);
  pgtest_ci_build(pgtest_env.empty_ci, sizeof pgtest_env.empty_ci, pgtest_env.empty_db, NULL, NULL,
                  PGTEST_APP_NAME);
  pgtest_env.have_pg = 1;
  return 0;
}

int pgtest_group_teardown(void **state) {
  (void)state;
  pgtest_pgp_remove();
  if (!pgtest_env.have_pg) return 0;
  pgtest_drop_db(pgtest_env.main_db);
  pgtest_drop_db(pgtest_env.empty_db);
  pgtest_drop_db(pgtest_env.scratch_db);
  return 0;
}

/* Async tests need the schema; normally the first test put it there. */
int pgtest_need_schema(void **state) {
  (void)state;
  if (!pgtest_env.have_pg || pgtest_env.migrated) return 0;
  char err[512];
  if (pgtest_migrate_quiet(pgtest_env.main_ci, pgtest_env.schema_dir, err, sizeof err, NULL, 0) !=
      0) {
    fprintf(stderr, "migrate: %s\n", err);
    return -1;
  }
  pgtest_env.migrated = 1;
  return 0;
}

/* ---- files ---- */

void pgtest_write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  assert_true(fputs(text, f) >= 0);
  assert_int_equal(fclose(f), 0);
}

void pgtest_copy_file(const char *from, const char *to) {
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

/* ---- sessions ---- */

/* Terminates the server processes of the sessions that match `where` (a
 * condition on pg_stat_activity); their number goes to n, as text.
 * Returns what pgtest_sql returns. */
int pgtest_terminate_backends(const char *ci, const char *where, char *n, size_t len) {
  char sql[512];
  snprintf(sql, sizeof sql,
           "select count(pg_terminate_backend(pid)) from pg_stat_activity where %s", where);
  return pgtest_sql(ci, sql, n, len);
}

/* ---- outages: a private PostgreSQL to stop, kill and start ---- */

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
int pgtest_pgp_start(void) {
  int rc = sh("NIRC_PG_FAST=1 '%s/deploy/pg-private.sh' start '%s' %d >>'%s' 2>&1", pgtest_pgp.src,
              pgtest_pgp.dir, pgtest_pgp.port, pgtest_pgp.log);
  if (rc != 0) {
    fprintf(stderr, "private PostgreSQL on port %d did not start:\n", pgtest_pgp.port);
    sh("tail -n 20 '%s' >&2", pgtest_pgp.log);
  }
  return rc;
}

/* Fast shutdown: clients are told and disconnected. */
int pgtest_pgp_stop(void) {
  return sh("'%s/deploy/pg-private.sh' stop '%s' >>'%s' 2>&1", pgtest_pgp.src, pgtest_pgp.dir,
            pgtest_pgp.log);
}

long pgtest_pgp_postmaster_pid(void) {
  char path[PATH_MAX + 32], line[32] = "";
  snprintf(path, sizeof path, "%s/data/postmaster.pid", pgtest_pgp.dir);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  if (!fgets(line, sizeof line, f)) line[0] = '\0';
  fclose(f);
  return strtol(line, NULL, 10);
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

int pgtest_need_private_pg(void **state) {
  (void)state;
  if (pgtest_pgp.failed) return -1;
  if (!pgtest_env.have_pg || pgtest_pgp.made) return 0;
  pgtest_pgp.failed = 1; /* until it is all set up */
  const char *port = getenv("NIRC_TEST_PG_PRIVATE_PORT");
  pgtest_pgp.port = port && *port ? atoi(port) : free_port();
  if (pgtest_pgp.port < 1024 || pgtest_pgp.port > 65535) {
    fprintf(stderr, "no port for the private PostgreSQL: set NIRC_TEST_PG_PRIVATE_PORT\n");
    return -1;
  }
  const char *src = getenv("NIRC_SOURCE_DIR");
  snprintf(pgtest_pgp.src, sizeof pgtest_pgp.src, "%s", src && *src ? src : ".");
  snprintf(pgtest_pgp.dir, sizeof pgtest_pgp.dir, "/tmp/nirc-test-db-pg-%ld-%d", (long)getuid(),
           pgtest_pgp.port);
  snprintf(pgtest_pgp.log, sizeof pgtest_pgp.log, "%s.log", pgtest_pgp.dir);
  snprintf(pgtest_pgp.admin, sizeof pgtest_pgp.admin,
           "host=127.0.0.1 port=%d user=nirc dbname=nirc", pgtest_pgp.port);
  snprintf(pgtest_pgp.ci, sizeof pgtest_pgp.ci,
           "%s application_name=nirc-test-db connect_timeout=2", pgtest_pgp.admin);
  snprintf(pgtest_pgp.sync_ci, sizeof pgtest_pgp.sync_ci,
           "%s application_name=nirc-test-sync connect_timeout=2 "
           "options='-c synchronous_commit=on'",
           pgtest_pgp.admin);
  /* A cluster left by an interrupted run is discarded. */
  sh("'%s/deploy/pg-private.sh' stop '%s' >/dev/null 2>&1; rm -rf '%s' '%s'", pgtest_pgp.src,
     pgtest_pgp.dir, pgtest_pgp.dir, pgtest_pgp.log);
  pgtest_pgp.made = 1;
  if (pgtest_pgp_start() != 0) return -1;
  /* Synchronous replication to a standby that never connects: a commit is
   * then written to the WAL but not acknowledged, for clients that ask for
   * it (synchronous_commit=on); everyone else commits locally. Set before a
   * restart, so that every server process has it from the start. */
  if (pgtest_sql(pgtest_pgp.admin,
                 "alter system set synchronous_standby_names = 'nirc_test_no_standby'", NULL,
                 0) != 0 ||
      pgtest_sql(pgtest_pgp.admin, "alter system set synchronous_commit = 'local'", NULL, 0) != 0 ||
      pgtest_pgp_stop() != 0 || pgtest_pgp_start() != 0) {
    return -1;
  }
  char err[512];
  if (pgtest_migrate_quiet(pgtest_pgp.admin, pgtest_env.schema_dir, err, sizeof err, NULL, 0) !=
      0) {
    fprintf(stderr, "migrate the private PostgreSQL: %s\n", err);
    return -1;
  }
  if (pgtest_sql(pgtest_pgp.admin,
                 "insert into sites (slug, name_en, name_zh) values ('hubei', 'Hubei', 'Hubei')",
                 NULL, 0) != 0) {
    return -1;
  }
  pgtest_pgp.failed = 0;
  return 0;
}

void pgtest_pgp_remove(void) {
  if (!pgtest_pgp.made) return;
  sh("'%s/deploy/pg-private.sh' stop '%s' >/dev/null 2>&1; rm -rf '%s' '%s'", pgtest_pgp.src,
     pgtest_pgp.dir, pgtest_pgp.dir, pgtest_pgp.log);
  pgtest_pgp.made = 0;
}
