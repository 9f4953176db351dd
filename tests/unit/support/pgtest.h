/* pgtest: what the PostgreSQL tests (test_db_admin, test_db_client,
 * test_db_journal) share: a test database per program, conninfo strings,
 * blocking admin statements, a loop and an asynchronous client per test,
 * recording callbacks, and a private PostgreSQL for the outage tests.
 *
 * NIRC_TEST_PG must name a role that may create databases and terminate its
 * own backends. pgtest_group_setup creates the program's databases
 * (nirc_test_<pid>, nirc_test_empty_<pid>; the tests may make
 * nirc_test_scratch_<pid>) and pgtest_group_teardown drops them, so the
 * database named in NIRC_TEST_PG is never modified and programs running at
 * the same time do not meet. Without NIRC_TEST_PG the tests that need a
 * server are skipped (PGTEST_NEED_PG); the ones that only need an
 * unreachable address still run.
 *
 * The outage tests stop, kill and restart PostgreSQL, so they never touch
 * the shared server: pgtest_need_private_pg starts a private one with
 * deploy/pg-private.sh on NIRC_TEST_PG_PRIVATE_PORT (default: a port the
 * kernel reports free) in /tmp/nirc-test-db-pg-<uid>-<port>, and
 * pgtest_group_teardown removes it.
 *
 * Nothing sleeps to synchronise: the loop runs (UV_RUN_ONCE) until the
 * condition holds, bounded by a deadline timer; a short repeating timer
 * wakes the loop so that conditions outside it (a server's state) are
 * checked too.
 *
 * Failures are cmocka assertions, so this is for cmocka tests only. */
#ifndef NIRC_TEST_PGTEST_H
#define NIRC_TEST_PGTEST_H

#include "db.h"

#include <libpq-fe.h>
#include <limits.h>
#include <stddef.h>
#include <uv.h>

#define PGTEST_MAXCALLS 1100
#define PGTEST_APP_NAME "nirc-test-db"
/* Nothing listens on port 1, so connecting there is refused at once. */
#define PGTEST_UNREACHABLE "host=127.0.0.1 port=1 user=nirc dbname=nirc connect_timeout=2"

/* The shared server, as pgtest_group_setup found it. */
typedef struct {
  int have_pg;
  int migrated;
  char admin[1024];    /* NIRC_TEST_PG as given */
  char main_ci[1024];  /* the migrated test database */
  char empty_ci[1024]; /* never migrated */
  char main_db[64], empty_db[64], scratch_db[64];
  char schema_dir[PATH_MAX];
} pgtest_env_t;

extern pgtest_env_t pgtest_env;

#define PGTEST_NEED_PG()                                                                           \
  do {                                                                                             \
    if (!pgtest_env.have_pg) skip();                                                               \
  } while (0)

/* ---- conninfo and blocking admin helpers (tests may block) ---- */

/* Appends kw='val' (quoted) to the conninfo in out. */
void pgtest_ci_append(char *out, size_t n, const char *kw, const char *val);
/* Builds a key=value conninfo from NIRC_TEST_PG with some keys replaced;
 * NULL values leave a key as it is. */
void pgtest_ci_build(char *out, size_t n, const char *dbname, const char *host, const char *port,
                     const char *app);
/* The value of keyword kw in conninfo ci ("" if it has none). */
void pgtest_ci_get(const char *ci, const char *kw, char *out, size_t n);
/* Runs one statement on a fresh blocking connection; copies the first
 * value (if any) into val. Returns 0 or -1 (message printed). */
int pgtest_sql(const char *ci, const char *sql, char *val, size_t n);
/* (Re)creates database name on the shared server; 0 or -1. */
int pgtest_create_db(const char *name);
void pgtest_drop_db(const char *name);
/* db_admin_migrate with its progress (stdout) copied to out, if given. */
int pgtest_migrate_quiet(const char *ci, const char *dir, char *err, size_t errlen, char *out,
                         size_t outlen);
/* Terminates the server processes of the sessions that match `where` (a
 * condition on pg_stat_activity); their number goes to n, as text.
 * Returns what pgtest_sql returns. */
int pgtest_terminate_backends(const char *ci, const char *where, char *n, size_t len);

/* ---- files ---- */

void pgtest_write_file(const char *path, const char *text);
void pgtest_copy_file(const char *from, const char *to);

/* ---- running the loop until something is true ---- */

typedef int (*pgtest_cond_fn)(const void *arg);

/* Runs the loop one turn at a time until cond holds or the deadline
 * (20 s) passes; whether it held. */
int pgtest_run_until(uv_loop_t *loop, pgtest_cond_fn cond, const void *arg);
int pgtest_run_until_count(uv_loop_t *loop, const int *counter, int want);
int pgtest_run_until_state(uv_loop_t *loop, const db_t *db, db_state_t s);
int pgtest_run_until_not_state(uv_loop_t *loop, const db_t *db, db_state_t s);

/* ---- recording callbacks ---- */

typedef struct pgtest_rec pgtest_rec_t;
typedef struct {
  pgtest_rec_t *rec;
  int seq;
} pgtest_slot_t;

/* What came back to the queries of one test, by their sequence number. */
struct pgtest_rec {
  int ncalls;
  int out_of_order;
  int err[PGTEST_MAXCALLS];
  int had_res[PGTEST_MAXCALLS];
  char val[PGTEST_MAXCALLS][64];
  char msg[PGTEST_MAXCALLS][256];
  pgtest_slot_t slot[PGTEST_MAXCALLS];
};

/* A zeroed record (free it). */
pgtest_rec_t *pgtest_rec_new(void);
/* A db_cb recording into the slot (a pgtest_slot_t) it is given. */
void pgtest_rec_cb(void *arg, int err, const char *msg, PGresult *res);
/* Queues sql with pgtest_rec_cb recording as number seq of r. */
void pgtest_q(db_t *db, pgtest_rec_t *r, int seq, const char *sql, int n, const char *const *p);

/* ---- one loop + one client per async test ---- */

typedef struct {
  uv_loop_t loop;
  db_t *db;
  int closed;
  int fds; /* open descriptors before the loop existed */
} pgtest_actx_t;

/* This process's open descriptors. */
int pgtest_count_fds(void);
/* A db_close done callback: increments the int arg points to. */
void pgtest_on_closed(void *arg);
/* A loop and a client on ci: with db_open, or with db_open_opts if o. */
void pgtest_actx_open_opts(pgtest_actx_t *a, const char *ci, const db_opts_t *o);
void pgtest_actx_open(pgtest_actx_t *a, const char *ci);
/* After db_close: waits for its done callback, then checks that every
 * handle and the client's socket went away with it. */
void pgtest_actx_closed(pgtest_actx_t *a);
/* Closes the client and checks that every handle went away with it. */
void pgtest_actx_close(pgtest_actx_t *a);
/* Waits until the client is READY with nothing queued. */
void pgtest_settle(pgtest_actx_t *a, pgtest_rec_t *r, int seq);
/* Runs sql alone on a new client on ci, and closes it; returns what came
 * back (free it). */
pgtest_rec_t *pgtest_query_alone(const char *ci, const char *sql);

/* ---- cmocka group setup and teardown, test setups ---- */

int pgtest_group_setup(void **state);
int pgtest_group_teardown(void **state);
/* Migrates the test database unless a test did. */
int pgtest_need_schema(void **state);

/* ---- outages: a private PostgreSQL to stop, kill and start ---- */

typedef struct {
  int made;   /* the directory may exist: remove it at the end */
  int failed; /* setting it up failed: the tests that need it fail too */
  int port;
  char src[PATH_MAX];
  char dir[PATH_MAX];
  char log[PATH_MAX + 8];
  char admin[256];   /* blocking helpers: database nirc */
  char ci[512];      /* clients under test */
  char sync_ci[512]; /* clients whose commits wait for a standby that never comes */
} pgtest_pgp_t;

extern pgtest_pgp_t pgtest_pgp;

/* A test setup: starts the private server the first time (migrated, with
 * site hubei; commits of sync_ci clients wait for a standby that never
 * comes). */
int pgtest_need_private_pg(void **state);
/* Starts the private server and waits until it accepts connections. */
int pgtest_pgp_start(void);
/* Fast shutdown: clients are told and disconnected. */
int pgtest_pgp_stop(void);
long pgtest_pgp_postmaster_pid(void);
/* Stops and removes the private server, if it was made. */
void pgtest_pgp_remove(void);

#endif
