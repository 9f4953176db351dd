/* test_db_journal: exactly-once writes (db_exec_once) and the on-disk
 * journal against a real PostgreSQL (no mocks): once-writes while
 * connected, a journal replayed at open and at start-up, torn and damaged
 * journals, a full one, duplicates skipped, spilling when the connection
 * breaks; and outages of a private PostgreSQL the tests stop, kill and
 * restart (never the shared one).
 *
 *   NIRC_TEST_PG="host=127.0.0.1 port=54330 user=nirc dbname=postgres" \
 *   NIRC_SOURCE_DIR=/path/to/nirc ./test_db_journal
 *
 * The outage tests start their private PostgreSQL on
 * NIRC_TEST_PG_PRIVATE_PORT if set, else on a port the kernel reports free.
 *
 * The fixtures (a database of its own, the schema, the loop and client of
 * each test) are in support/pgtest.h, shared with the other test_db_*
 * programs. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"
#include "err.h"
#include "log.h"
#include "support/pgtest.h"
#include "support/tmpdir.h"

#include <dirent.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

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

static void qo(db_t *db, pgtest_rec_t *r, int seq, const char *sql, int n, const char *const *p) {
  int rc = db_exec_once(db, sql, n, p, pgtest_rec_cb, &r->slot[seq]);
  if (rc != 0) fail_msg("db_exec_once %d: %s", seq, nirc_strerror(rc));
}

/* Queues link event number i of peer as a once-write. */
static void event_once(db_t *db, pgtest_rec_t *r, int seq, const char *peer, int i) {
  char d[16];
  snprintf(d, sizeof d, "%d", i);
  const char *p[2] = {peer, d};
  qo(db, r, seq, EVENT_SQL, 2, p);
}

/* Queues one load minute of hubei (16 parameters, the most there are: the
 * key is $17) adding `reports` reports. */
static void load_once(db_t *db, pgtest_rec_t *r, int seq, const char *minute, const char *reports) {
  const char *p[16] = {"hubei", minute, reports, "10",   "8",    "1",    "7", "0",
                       "4",     "5000", "10.00", "2.00", "6.00", "1800", "0", "0"};
  qo(db, r, seq, LOAD_SQL, 16, p);
}

/* Queues a cutover's two once-writes: its row (id, by peer) at seq, then
 * update_sql ($1 the id, $2 'restored') at seq + 1. */
static void cutover_once(db_t *db, pgtest_rec_t *r, int seq, const char *id, const char *peer,
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
  if (pgtest_sql(ci, sql, v, sizeof v) != 0) return -1;
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
  if (pgtest_sql(ci, sql, v, sizeof v) != 0) return 0;
  if (strcmp(v, "t") != 0) {
    char got[1024] = "";
    snprintf(sql, sizeof sql,
             "select string_agg(detail, ',' order by id) from link_events where peer = '%s'", peer);
    (void)pgtest_sql(ci, sql, got, sizeof got);
    fprintf(stderr, "events of %s: [%s], expected 0..%d once each, in order\n", peer, got, n - 1);
  }
  return strcmp(v, "t") == 0;
}

static void ensure_site(const char *ci) {
  assert_int_equal(pgtest_sql(ci,
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

static void actx_open_j(pgtest_actx_t *a, const char *ci, const char *journal, uint64_t max) {
  db_opts_t o = {journal, max};
  pgtest_actx_open_opts(a, ci, &o);
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
  return pgtest_run_until(loop, c_jrecords, &c);
}

static int c_offline(const void *arg) {
  db_state_t s = db_state(arg);
  return s != DB_READY && s != DB_BUSY;
}

/* Checks that writes seq from..to-1 of r were journaled. */
static void assert_journaled(const pgtest_rec_t *r, int from, int to) {
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
  pgtest_actx_t a;
  actx_open_j(&a, PGTEST_UNREACHABLE, path, max);
  pgtest_rec_t *r = pgtest_rec_new();
  for (int i = 0; i < n; i++) {
    event_once(a.db, r, i, peer, from + i);
    if (sizes) sizes[i] = JNL_HEADER_SIZE + (long)jstats(a.db).bytes;
  }
  assert_int_equal(r->ncalls, 0); /* never inside db_exec_once */
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, n));
  assert_int_equal(r->out_of_order, 0);
  assert_journaled(r, 0, n);
  db_journal_stats_t st = jstats(a.db);
  assert_int_equal(st.records, n);
  assert_int_equal(st.journaled_total, n);
  assert_int_equal(file_size(path), JNL_HEADER_SIZE + (long)st.bytes);
  pgtest_actx_close(&a);
  free(r);
}

/* Opens a client on ci with journal path and runs it until the journal is
 * empty; returns its counters. */
static db_journal_stats_t replay_journal(const char *ci, const char *path) {
  pgtest_actx_t a;
  actx_open_j(&a, ci, path, 0);
  assert_true(run_until_jrecords(&a.loop, a.db, 0));
  db_journal_stats_t st = jstats(a.db);
  pgtest_actx_close(&a);
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
  PGTEST_NEED_PG();
  ensure_site(pgtest_env.main_ci);
  pgtest_actx_t a;
  pgtest_actx_open(&a, pgtest_env.main_ci);
  pgtest_rec_t *r = pgtest_rec_new();
  char peer[64], minute[32], id[32], sql[512];
  snprintf(peer, sizeof peer, "once-%ld", (long)getpid());
  unique_minute(minute, sizeof minute, 0);
  snprintf(id, sizeof id, "%ld", 900000000L + (long)getpid());
  long keys0 = sql_long(pgtest_env.main_ci, "select count(*) from journal_keys");

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
  pgtest_q(a.db, r, 8, "select count(*) from journal_keys", 0, NULL);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 9));
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
  assert_int_equal(sql_long(pgtest_env.main_ci, sql), 3);
  snprintf(sql, sizeof sql, "select count(*) from cutovers where id = %s and state = 'restored'",
           id);
  assert_int_equal(sql_long(pgtest_env.main_ci, sql), 1);
  snprintf(sql, sizeof sql, "select count(*) from link_events where peer = '%s'", peer);
  assert_int_equal(sql_long(pgtest_env.main_ci, sql), 2);
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
  assert_int_equal(pgtest_sql(pgtest_env.main_ci, sql, NULL, 0), 0);
  assert_int_equal(db_prune_keys(a.db), 0);
  snprintf(sql, sizeof sql,
           "select string_agg(key, ',') from journal_keys where key in ('%s', '%s')", old_key,
           new_key);
  pgtest_q(a.db, r, 9, sql, 0, NULL);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 10));
  assert_string_equal(r->val[9], new_key);
  pgtest_actx_close(&a);
  free(r);
}

/* What a stopped controller left in its journal is replayed, in order, by
 * the next client that opens it, and by the blocking start-up replay; a
 * database still down leaves the journal as it was. */
static void test_journal_replayed_at_open(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  jfile_t j;
  jfile_new(&j);
  char peer[64];
  snprintf(peer, sizeof peer, "jnl-open-%ld", (long)getpid());

  /* A queued ordinary query is not journaled: it completes with ECLOSED. */
  pgtest_actx_t a;
  actx_open_j(&a, PGTEST_UNREACHABLE, j.path, 0);
  assert_int_equal(file_size(j.path), JNL_HEADER_SIZE);
  pgtest_rec_t *r = pgtest_rec_new();
  for (int i = 0; i < 20; i++)
    event_once(a.db, r, i, peer, i);
  pgtest_q(a.db, r, 20, "select 1", 0, NULL);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 20));
  assert_journaled(r, 0, 20);
  assert_int_equal(db_queue_depth(a.db), 1);
  db_close(a.db, pgtest_on_closed, &a.closed);
  assert_int_equal(r->ncalls, 21);
  assert_int_equal(r->err[20], NIRC_ECLOSED);
  pgtest_actx_closed(&a);

  actx_open_j(&a, pgtest_env.main_ci, j.path, 0);
  assert_int_equal(jstats(a.db).records, 20); /* counted when opened */
  assert_true(run_until_jrecords(&a.loop, a.db, 0));
  db_journal_stats_t st = jstats(a.db);
  assert_int_equal(st.replayed_total, 20);
  assert_int_equal(st.duplicates_total, 0);
  assert_int_equal(st.failed_total, 0);
  pgtest_actx_close(&a);
  assert_int_equal(file_size(j.path), JNL_HEADER_SIZE);
  assert_true(events_in_order(pgtest_env.main_ci, peer, 20));

  /* The blocking replay nircd runs at start-up. */
  char peer2[64], err[512] = "";
  snprintf(peer2, sizeof peer2, "jnl-admin-%ld", (long)getpid());
  journal_events(j.path, 0, peer2, 0, 5, NULL);
  long size = file_size(j.path);
  assert_int_equal(db_admin_replay_journal(PGTEST_UNREACHABLE, j.path, err, sizeof err), NIRC_EDB);
  assert_non_null(strstr(err, "is PostgreSQL running?"));
  assert_int_equal(file_size(j.path), size);
  if (db_admin_replay_journal(pgtest_env.main_ci, j.path, err, sizeof err) != 0)
    fail_msg("%s", err);
  assert_int_equal(file_size(j.path), JNL_HEADER_SIZE);
  assert_true(events_in_order(pgtest_env.main_ci, peer2, 5));
  assert_int_equal(db_admin_replay_journal(pgtest_env.main_ci, j.path, err, sizeof err), 0);
  assert_int_equal(db_admin_replay_journal(pgtest_env.main_ci, "", err, sizeof err), 0);
  assert_true(events_in_order(pgtest_env.main_ci, peer2, 5));
  free(r);
  jfile_free(&j);
}

/* A crash while a record was being written leaves a torn last record: cut
 * short, an incomplete header, or a bad CRC. It is dropped with a warning
 * and the records before it are replayed. */
static void test_journal_torn_last_record(void **state) {
  (void)state;
  PGTEST_NEED_PG();
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
    pgtest_actx_t a;
    actx_open_j(&a, pgtest_env.main_ci, j.path, 0);
    db_journal_stats_t st = jstats(a.db);
    assert_int_equal(st.torn_total, 1);
    assert_int_equal(st.corrupt_total, 0);
    assert_int_equal(st.records, keep);
    assert_true(run_until_jrecords(&a.loop, a.db, 0));
    assert_int_equal(jstats(a.db).replayed_total, keep);
    pgtest_actx_close(&a);
    assert_true(events_in_order(pgtest_env.main_ci, peer, keep));
    assert_int_equal(jfile_count(&j, "nircd.journal.corrupt"), 0);
  }
  jfile_free(&j);
}

/* Damage before the last record, or a file that is not a journal, does not
 * stop the client: the file is renamed aside, the intact records before the
 * damage are replayed, and the journal works on. */
static void test_journal_damage_set_aside(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  jfile_t j;
  jfile_new(&j);
  char peer[64];
  snprintf(peer, sizeof peer, "jnl-damage-%ld", (long)getpid());
  long sizes[3];
  journal_events(j.path, 0, peer, 0, 3, sizes);
  flip_byte(j.path, sizes[0] + 12); /* inside the second record */
  db_journal_stats_t st = replay_journal(pgtest_env.main_ci, j.path);
  assert_int_equal(st.corrupt_total, 1);
  assert_int_equal(st.replayed_total, 1);
  assert_int_equal(jfile_count(&j, "nircd.journal.corrupt-"), 1);
  assert_true(events_in_order(pgtest_env.main_ci, peer, 1));

  /* Not a journal at all. */
  pgtest_write_file(j.path, "this is not a journal, but it is long enough\n");
  pgtest_actx_t a;
  actx_open_j(&a, PGTEST_UNREACHABLE, j.path, 0);
  st = jstats(a.db);
  assert_int_equal(st.corrupt_total, 1);
  assert_int_equal(st.records, 0);
  assert_int_equal(jfile_count(&j, "nircd.journal.corrupt-"), 2);
  pgtest_rec_t *r = pgtest_rec_new();
  event_once(a.db, r, 0, peer, 1);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 1));
  assert_journaled(r, 0, 1);

  /* One journal, one process: a second client may not share it. */
  uv_loop_t l;
  db_t *second = NULL;
  db_opts_t o = {j.path, 0};
  assert_int_equal(uv_loop_init(&l), 0);
  assert_int_equal(db_open_opts(&l, PGTEST_UNREACHABLE, &o, &second), NIRC_EIO);
  assert_null(second);
  /* A directory that does not exist is refused at open. */
  o.journal = "/nonexistent-nirc-dir/nircd.journal";
  assert_int_equal(db_open_opts(&l, PGTEST_UNREACHABLE, &o, &second), NIRC_EIO);
  char err[512] = "";
  assert_int_equal(db_admin_replay_journal(pgtest_env.main_ci, o.journal, err, sizeof err),
                   NIRC_EIO);
  assert_non_null(strstr(err, "set [database] journal"));
  assert_int_equal(uv_loop_close(&l), 0);
  pgtest_actx_close(&a);
  st = replay_journal(pgtest_env.main_ci, j.path);
  assert_int_equal(st.replayed_total, 1);
  assert_true(events_in_order(pgtest_env.main_ci, peer, 2));
  free(r);
  jfile_free(&j);
}

/* journal_max bounds the file: a write that would pass it is refused with
 * NIRC_EFULL and counted, and what is in the journal stays intact. */
typedef int (*once_write_fn)(db_t *db, const char *sql, int nparams, const char *const *params,
                             db_result_cb cb, void *arg);

/* A link event's detail of 299 bytes: a few fill a small journal. */
static const char *long_detail(void) {
  static char detail[300];
  memset(detail, 'd', sizeof detail - 1);
  detail[sizeof detail - 1] = '\0';
  return detail;
}

/* Journals link events of `peer` with `write`, their results from slot
 * `from` on, until one is refused; returns how many went in (the refusal
 * must be NIRC_EFULL). */
static int fill_journal(db_t *db, once_write_fn write, const char *peer, pgtest_rec_t *r,
                        int from) {
  const char *p[2] = {peer, long_detail()};
  int n = 0, rc;
  while ((rc = write(db, EVENT_SQL, 2, p, pgtest_rec_cb, &r->slot[from + n])) == 0) {
    n++;
    assert_true(n < 20);
  }
  assert_int_equal(rc, NIRC_EFULL);
  return n;
}

/* A journal whose file cannot grow though journal_max has room (a full
 * file system; here the process's file-size limit, EFBIG): the write is
 * refused, and the stats say the file could not be written, so the alarm
 * names freeing space, not journal_max (found from outside: a journal on
 * a full tmpfs was told to raise journal_max). */
static void test_journal_unwritable_is_said_so(void **state) {
  (void)state;
  jfile_t j;
  jfile_new(&j);
  pgtest_actx_t a;
  actx_open_j(&a, PGTEST_UNREACHABLE, j.path, 1 << 20);
  struct rlimit old;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
  void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = (rlim_t)file_size(j.path); /* not one byte more */
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  const char *p[2] = {"jnl-nospace", long_detail()};
  int rc = db_exec_once(a.db, EVENT_SQL, 2, p, NULL, NULL);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, was);
  assert_int_not_equal(rc, 0);
  assert_int_not_equal(rc, NIRC_EFULL);
  db_journal_stats_t st = jstats(a.db);
  assert_int_equal(st.refused_total, 1);
  assert_true(st.refused_unwritable);
  pgtest_actx_close(&a);
  jfile_free(&j);
}

/* A small journal: history fills it to 75 % and is then shed; the alarm
 * record (db_exec_once_record) is never shed, so it still goes in; changes
 * fill it to the end and are then refused. */
static void test_journal_full(void **state) {
  (void)state;
  jfile_t j;
  jfile_new(&j);
  pgtest_actx_t a;
  actx_open_j(&a, PGTEST_UNREACHABLE, j.path, 4096);
  pgtest_rec_t *r = pgtest_rec_new();
  const char *p[2] = {"jnl-full", long_detail()};
  int bulk = fill_journal(a.db, db_exec_once_bulk, "jnl-full", r, 0);
  assert_true(bulk >= 3);
  assert_int_equal(jstats(a.db).shed_total, 1);
  assert_int_equal(db_exec_once_record(a.db, EVENT_SQL, 2, p, pgtest_rec_cb, &r->slot[bulk]), 0);
  int n = bulk + 1;
  n += fill_journal(a.db, db_exec_once, "jnl-full", r, n);
  db_journal_stats_t st = jstats(a.db);
  assert_true(n > bulk + 1);
  assert_int_equal(st.refused_total, 1);
  assert_false(st.refused_unwritable); /* no room under journal_max: that is the fix */
  assert_int_equal(st.shed_total, 1);
  assert_int_equal(st.records, n);
  /* Journaled: every record counts, whatever its kind (an upper bound). */
  assert_int_equal(db_unsaved_changes(a.db, DB_UNSAVED_URGENT), n);
  assert_int_equal(db_unsaved_changes(a.db, DB_UNSAVED_RECORDS), n);
  assert_true(JNL_HEADER_SIZE + st.bytes <= 4096);
  assert_int_equal(db_exec_once(a.db, EVENT_SQL, 2, p, NULL, NULL), NIRC_EFULL);
  assert_int_equal(jstats(a.db).refused_total, 2);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, n));
  assert_journaled(r, 0, n);
  assert_int_equal(file_size(j.path), JNL_HEADER_SIZE + (long)st.bytes);
  pgtest_actx_close(&a);

  actx_open_j(&a, PGTEST_UNREACHABLE, j.path, 4096);
  assert_int_equal(jstats(a.db).records, n);
  assert_int_equal(jstats(a.db).torn_total + jstats(a.db).corrupt_total, 0);
  pgtest_actx_close(&a);
  free(r);
  jfile_free(&j);
}

/* Once-writes queued together go to the database as one statement, one
 * commit (issue 15: a move's 34 rows were 34 commits). A batch the
 * database refuses is sent again write by write: the good ones land once,
 * in order, and only the bad one fails. */
static void test_once_batched(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  pgtest_actx_t a;
  pgtest_actx_open(&a, pgtest_env.main_ci);
  pgtest_rec_t *r = pgtest_rec_new();
  char peer[64];
  snprintf(peer, sizeof peer, "batch-%ld", (long)getpid());
  /* Connected first: while connecting, once-writes go to the journal and
   * its replay sends them one by one. */
  pgtest_q(a.db, r, 0, "select 1", 0, NULL);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 1));
  r->ncalls = 0;
  db_journal_stats_t st0 = jstats(a.db);
  /* As many as a move of 64 sources writes: its cutover row, a directive
   * and an event per source, its audit row (at a cap of 64 a move of 31
   * sources sent its audit row in a second commit, which the operator's
   * reply waited for). */
  enum { MOVE = 1 + 2 * 64 + 1 };
  for (int i = 0; i < MOVE; i++)
    event_once(a.db, r, i, peer, i);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, MOVE));
  assert_int_equal(r->out_of_order, 0);
  for (int i = 0; i < MOVE; i++)
    if (r->err[i] != 0 || !r->had_res[i]) fail_msg("once-write %d: %s", i, r->msg[i]);
  assert_true(events_in_order(pgtest_env.main_ci, peer, MOVE));
  db_journal_stats_t st1 = jstats(a.db);
  /* All were queued before the loop ran: one statement. */
  assert_int_equal(st1.batches_total - st0.batches_total, 1);

  /* One refused write in the middle of a batch. */
  for (int i = 0; i < 20; i++)
    event_once(a.db, r, MOVE + i, peer, MOVE + i);
  qo(a.db, r, MOVE + 20, "INSERT INTO sites (slug, name_en, name_zh) VALUES ('Bad Slug', 'x', 'y')",
     0, NULL);
  for (int i = 0; i < 20; i++)
    event_once(a.db, r, MOVE + 21 + i, peer, MOVE + 20 + i);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, MOVE + 41));
  assert_int_equal(r->out_of_order, 0);
  for (int i = MOVE; i < MOVE + 41; i++) {
    if (i == MOVE + 20) continue;
    if (r->err[i] != 0 || !r->had_res[i]) fail_msg("once-write %d: %s", i, r->msg[i]);
  }
  assert_int_equal(r->err[MOVE + 20], NIRC_EDB);
  assert_non_null(strstr(r->msg[MOVE + 20], "check constraint"));
  assert_true(events_in_order(pgtest_env.main_ci, peer, MOVE + 40));
  db_journal_stats_t st2 = jstats(a.db);
  assert_int_equal(st2.failed_total - st1.failed_total, 1);
  pgtest_actx_close(&a);
  free(r);
}

/* Queues a thousand writes of one class, then an urgent one (a rule, a
 * directive, the audit trail): the urgent one goes in the first pipeline,
 * not after them; the others keep their own order. `records`: whether
 * they are alarm records, which a read of the alarm record would miss
 * (db_unsaved_changes counts them as DB_UNSAVED_RECORDS; history it never
 * counts). */
static void urgent_overtakes(once_write_fn write, const char *what, bool records) {
  pgtest_actx_t a;
  pgtest_actx_open(&a, pgtest_env.main_ci);
  pgtest_rec_t *rb = pgtest_rec_new(), *ru = pgtest_rec_new();
  char peer[64];
  snprintf(peer, sizeof peer, "%s-%ld", what, (long)getpid());
  pgtest_q(a.db, ru, 0, "select 1", 0, NULL);
  assert_true(pgtest_run_until_count(&a.loop, &ru->ncalls, 1));
  ru->ncalls = 0;
  enum { QUEUED = 1030 };
  for (int i = 0; i < QUEUED; i++) {
    char d[16];
    snprintf(d, sizeof d, "%d", i);
    const char *p[2] = {peer, d};
    if (write(a.db, EVENT_SQL, 2, p, pgtest_rec_cb, &rb->slot[i]) != 0)
      fail_msg("%s write %d refused", what, i);
  }
  qo(a.db, ru, 0,
     "INSERT INTO sites (slug, name_en, name_zh) VALUES ('urgent-site', 'U', 'U') "
     "ON CONFLICT DO NOTHING",
     0, NULL);
  /* What an operator's read cannot see yet: a read of the audit trail
   * the urgent write, a read of the alarm record the records. */
  assert_int_equal(db_unsaved_changes(a.db, DB_UNSAVED_URGENT), 1);
  assert_int_equal(db_unsaved_changes(a.db, DB_UNSAVED_RECORDS), records ? QUEUED : 0);
  assert_int_equal(db_unsaved_changes(a.db, DB_UNSAVED_URGENT | DB_UNSAVED_RECORDS),
                   records ? QUEUED + 1 : 1);
  assert_true(pgtest_run_until_count(&a.loop, &ru->ncalls, 1));
  if (ru->err[0] != 0) fail_msg("urgent write: %s", ru->msg[0]);
  if (rb->ncalls >= QUEUED)
    fail_msg("the urgent write finished after all %d %s writes queued before it", QUEUED, what);
  assert_true(pgtest_run_until_count(&a.loop, &rb->ncalls, QUEUED));
  assert_int_equal(rb->out_of_order, 0);
  assert_true(events_in_order(pgtest_env.main_ci, peer, QUEUED));
  assert_int_equal(db_unsaved_changes(a.db, DB_UNSAVED_URGENT | DB_UNSAVED_RECORDS), 0);
  pgtest_actx_close(&a);
  free(rb);
  free(ru);
}

/* Behind a thousand history writes (at 20,000 sites a minute's load rows
 * are 40 pipelines, and an operator's cutover waited for all of them). */
static void test_urgent_write_overtakes_history(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  urgent_overtakes(db_exec_once_bulk, "history", false);
}

/* Behind a thousand alarm records (20,000 site_down rows raised at once
 * held a cutover's reply for over a second). */
static void test_urgent_write_overtakes_records(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  urgent_overtakes(db_exec_once_record, "record", true);
}

/* A journal replayed again (a crash after the writes were applied but
 * before the file was emptied) changes nothing: every record is found by
 * its key, counted as a duplicate and skipped, including an additive load
 * minute and an INSERT whose table has a primary key of its own. */
static void test_journal_duplicates_skipped(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  ensure_site(pgtest_env.main_ci);
  jfile_t j;
  jfile_new(&j);
  char peer[64], minute[32], id[32], copy[160], sql[256];
  snprintf(peer, sizeof peer, "jnl-dup-%ld", (long)getpid());
  unique_minute(minute, sizeof minute, 1);
  snprintf(id, sizeof id, "%ld", 910000000L + (long)getpid());
  snprintf(copy, sizeof copy, "%s.copy", j.path);

  pgtest_actx_t a;
  actx_open_j(&a, PGTEST_UNREACHABLE, j.path, 0);
  pgtest_rec_t *r = pgtest_rec_new();
  event_once(a.db, r, 0, peer, 0);
  load_once(a.db, r, 1, minute, "5");
  cutover_once(a.db, r, 2, id, peer, "UPDATE cutovers SET state = $2 WHERE id = $1");
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 4));
  assert_journaled(r, 0, 4);
  pgtest_actx_close(&a);
  pgtest_copy_file(j.path, copy);

  db_journal_stats_t st = replay_journal(pgtest_env.main_ci, j.path);
  assert_int_equal(st.replayed_total, 4);
  assert_int_equal(st.duplicates_total, 0);
  assert_int_equal(rename(copy, j.path), 0);
  st = replay_journal(pgtest_env.main_ci, j.path);
  assert_int_equal(st.replayed_total, 0);
  assert_int_equal(st.duplicates_total, 4);
  assert_int_equal(st.failed_total, 0);

  assert_true(events_in_order(pgtest_env.main_ci, peer, 1));
  snprintf(sql, sizeof sql,
           "select reports from load_minute where site = 'hubei' and minute = '%s'", minute);
  assert_int_equal(sql_long(pgtest_env.main_ci, sql), 5);
  snprintf(sql, sizeof sql, "select count(*) from cutovers where id = %s and state = 'restored'",
           id);
  assert_int_equal(sql_long(pgtest_env.main_ci, sql), 1);
  free(r);
  jfile_free(&j);
}

/* Once-writes queued in memory when the connection breaks move to the
 * journal in order; those the journal cannot take (journal_max) stay in
 * memory, behind it. After the reconnection all land once, in order. */
static void test_journal_spill_when_connection_breaks(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  jfile_t j;
  jfile_new(&j);
  char peer[320];
  int k = snprintf(peer, sizeof peer, "jnl-spill-%ld-", (long)getpid());
  memset(peer + k, 'p', sizeof peer - (size_t)k - 1); /* big records: the journal fills */
  peer[sizeof peer - 1] = '\0';
  char ci[1024];
  pgtest_ci_build(ci, sizeof ci, pgtest_env.main_db, NULL, NULL, "nirc-test-spill");
  pgtest_actx_t a;
  actx_open_j(&a, ci, j.path, 4096);
  pgtest_rec_t *r = pgtest_rec_new();
  pgtest_settle(&a, r, 0);
  pgtest_q(a.db, r, 1, "select pg_sleep(60)", 0, NULL);
  for (int i = 0; i < 20; i++)
    event_once(a.db, r, 2 + i, peer, i);
  assert_true(pgtest_run_until_state(&a.loop, a.db, DB_BUSY));
  assert_int_equal(db_queue_depth(a.db), 20);
  char n[16] = "";
  assert_int_equal(pgtest_terminate_backends(pgtest_env.main_ci,
                                             "application_name = 'nirc-test-spill'", n, sizeof n),
                   0);
  assert_string_equal(n, "1");
  assert_true(pgtest_run_until(&a.loop, c_offline, a.db));
  db_journal_stats_t st = jstats(a.db);
  int spilled = (int)st.records;
  assert_true(spilled > 0 && spilled < 20);
  assert_int_equal(db_queue_depth(a.db), 20 - spilled);
  assert_int_equal(st.refused_total, 0); /* nothing was refused to a writer */

  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 22));
  assert_true(run_until_jrecords(&a.loop, a.db, 0));
  assert_int_equal(r->err[1], NIRC_EDB); /* an ordinary query is not sent again */
  assert_journaled(r, 2, 2 + spilled);
  for (int i = 2 + spilled; i < 22; i++) {
    if (r->err[i] != 0 || !r->had_res[i]) fail_msg("write %d: %s", i, r->msg[i]);
  }
  st = jstats(a.db);
  assert_int_equal(st.replayed_total, spilled);
  assert_int_equal(st.duplicates_total, 0);
  pgtest_actx_close(&a);
  assert_true(events_in_order(pgtest_env.main_ci, peer, 20));
  free(r);
  jfile_free(&j);
}

/* ---- outages: a private PostgreSQL to stop, kill and start ---- */

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

static int c_syncrep_wait(const void *arg) {
  (void)arg;
  char v[16] = "";
  (void)pgtest_sql(pgtest_pgp.admin,
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
  PGTEST_NEED_PG();
  jfile_t j;
  jfile_new(&j);
  char peer[64], minute[32], sql[256];
  snprintf(peer, sizeof peer, "outage-%ld", (long)getpid());
  unique_minute(minute, sizeof minute, 2);
  pgtest_actx_t a;
  actx_open_j(&a, pgtest_pgp.ci, j.path, 0);
  pgtest_rec_t *r = pgtest_rec_new();
  pgtest_settle(&a, r, 0);
  for (int i = 0; i < 3; i++)
    event_once(a.db, r, 1 + i, peer, i);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 4));
  for (int i = 1; i < 4; i++)
    assert_true(r->err[i] == 0 && r->had_res[i]); /* applied at once, not journaled */

  assert_int_equal(pgtest_pgp_stop(), 0);
  assert_true(pgtest_run_until(&a.loop, c_offline, a.db));
  int seq = 4;
  for (int i = 3; i < 43; i++) {
    event_once(a.db, r, seq++, peer, i);
    if (i % 8 == 0) load_once(a.db, r, seq++, minute, "1");
  }
  snprintf(sql, sizeof sql, "select count(*) from link_events where peer = '%s'", peer);
  pgtest_q(a.db, r, seq, sql, 0, NULL);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, seq));
  assert_journaled(r, 4, seq);
  db_journal_stats_t st = jstats(a.db);
  assert_int_equal(st.records, seq - 4);
  /* Journaled, not in the database: all of them count (an upper bound). */
  assert_int_equal(db_unsaved_changes(a.db, DB_UNSAVED_URGENT), seq - 4);
  assert_true(st.bytes > 0);
  assert_int_equal(file_size(j.path), JNL_HEADER_SIZE + (long)st.bytes);

  assert_int_equal(pgtest_pgp_start(), 0);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, seq + 1));
  assert_int_equal(r->err[seq], 0);
  assert_string_equal(r->val[seq], "43"); /* the journal went first */
  st = jstats(a.db);
  assert_int_equal(st.records, 0);
  assert_int_equal(st.replayed_total, seq - 4);
  assert_int_equal(db_unsaved_changes(a.db, DB_UNSAVED_URGENT | DB_UNSAVED_RECORDS), 0);
  assert_int_equal(st.duplicates_total, 0);
  assert_int_equal(st.failed_total, 0);
  assert_int_equal(file_size(j.path), JNL_HEADER_SIZE);
  pgtest_actx_close(&a);
  assert_true(events_in_order(pgtest_pgp.admin, peer, 43));
  snprintf(sql, sizeof sql,
           "select reports from load_minute where site = 'hubei' and minute = '%s'", minute);
  assert_int_equal(sql_long(pgtest_pgp.admin, sql), 5);
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
  PGTEST_NEED_PG();
  jfile_t j;
  jfile_new(&j);
  char peer[64], sql[256];
  snprintf(peer, sizeof peer, "killed-%ld", (long)getpid());
  snprintf(sql, sizeof sql, "select count(*) from link_events where peer = '%s'", peer);
  pgtest_actx_t a;
  actx_open_j(&a, pgtest_pgp.sync_ci, j.path, 0);
  pgtest_rec_t *r = pgtest_rec_new();
  pgtest_settle(&a, r, 0);
  event_once(a.db, r, 1, peer, 0);
  assert_true(pgtest_run_until(&a.loop, c_syncrep_wait, NULL));
  assert_int_equal(db_state(a.db), DB_BUSY);
  assert_int_equal(sql_long(pgtest_pgp.admin, sql), 0); /* not visible yet */

  long pid = pgtest_pgp_postmaster_pid();
  assert_true(pid > 1);
  assert_int_equal(kill((pid_t)pid, SIGQUIT), 0);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 2));
  assert_journaled(r, 1, 2); /* moved to the journal when the connection broke */
  assert_true(pgtest_run_until(&a.loop, c_offline, a.db));
  assert_int_equal(jstats(a.db).records, 1);
  assert_true(pgtest_run_until(&a.loop, c_proc_gone, &pid)); /* before a new one may start */

  assert_int_equal(pgtest_pgp_start(), 0);
  assert_int_equal(sql_long(pgtest_pgp.admin, sql), 1); /* crash recovery kept the commit */
  assert_true(run_until_jrecords(&a.loop, a.db, 0));
  db_journal_stats_t st = jstats(a.db);
  assert_int_equal(st.duplicates_total, 1);
  assert_int_equal(st.replayed_total, 0);
  assert_int_equal(st.failed_total, 0);
  pgtest_actx_close(&a);
  assert_int_equal(sql_long(pgtest_pgp.admin, sql), 1);
  free(r);
  jfile_free(&j);
}

/* Without a journal, a once-write whose connection broke after it had
 * committed is sent again on the next connection, found by its key, and
 * reported as applied; it is neither lost nor applied twice. */
static void test_inflight_resent_without_journal(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  char peer[64], sql[256];
  snprintf(peer, sizeof peer, "resent-%ld", (long)getpid());
  snprintf(sql, sizeof sql, "select count(*) from link_events where peer = '%s'", peer);
  pgtest_actx_t a;
  pgtest_actx_open(&a, pgtest_pgp.sync_ci);
  pgtest_rec_t *r = pgtest_rec_new();
  pgtest_settle(&a, r, 0);
  event_once(a.db, r, 1, peer, 0);
  assert_true(pgtest_run_until(&a.loop, c_syncrep_wait, NULL));
  char n[16] = "";
  assert_int_equal(pgtest_terminate_backends(pgtest_pgp.admin,
                                             "application_name = 'nirc-test-sync' and wait_event = "
                                             "'SyncRep'",
                                             n, sizeof n),
                   0);
  assert_string_equal(n, "1");
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 2));
  assert_int_equal(r->err[1], 0);
  assert_string_equal(r->msg[1], "already applied");
  assert_false(r->had_res[1]);
  db_journal_stats_t st = jstats(a.db);
  assert_int_equal(st.duplicates_total, 1);
  assert_int_equal(st.journaled_total, 0);
  pgtest_actx_close(&a);
  assert_int_equal(sql_long(pgtest_pgp.admin, sql), 1);
  free(r);
}

/* Stops (SIGSTOP) or resumes (SIGCONT) the private server's postmaster
 * and every backend: a storage stall, or a path that drops packets, looks
 * like this to the client, not like a server that is down. */
static void pgp_signal(int sig) {
  long pm = pgtest_pgp_postmaster_pid();
  assert_true(pm > 1);
  char cmd[64], line[32];
  snprintf(cmd, sizeof cmd, "pgrep -P %ld", pm);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  while (fgets(line, sizeof line, p))
    (void)kill((pid_t)strtol(line, NULL, 10), sig);
  pclose(p);
  assert_int_equal(kill((pid_t)pm, sig), 0);
}

/* The writes of an operator change accepted (db_once_ready) while the
 * database hangs, with nothing in flight and behind a write in flight:
 * answered "journaled" within DB_CHANGE_ANSWER_MS and a little, not after
 * DB_QUERY_TIMEOUT_MS (5 s: nircctl's default --timeout, so the operator
 * heard nothing), and in the database once, in order, when it wakes. */
static void test_change_answered_soon_when_the_database_hangs(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  jfile_t j;
  jfile_new(&j);
  char peer[64], why[400];
  snprintf(peer, sizeof peer, "hung-%ld", (long)getpid());
  pgtest_actx_t a;
  actx_open_j(&a, pgtest_pgp.ci, j.path, 0);
  pgtest_rec_t *r = pgtest_rec_new();
  int seq = 0, events = 0;
  for (int behind = 0; behind < 2; behind++) {
    pgtest_settle(&a, r, seq++);
    int first = seq;
    pgp_signal(SIGSTOP);
    if (behind) { /* a write sent before the change, unanswered */
      event_once(a.db, r, seq++, peer, events++);
      assert_true(pgtest_run_until_state(&a.loop, a.db, DB_BUSY));
    }
    uint64_t t0 = uv_hrtime();
    assert_int_equal(db_once_ready(a.db, why, sizeof why), 0);
    event_once(a.db, r, seq++, peer, events++);
    bool ok = pgtest_run_until_count(&a.loop, &r->ncalls, seq);
    uint64_t ms = (uv_hrtime() - t0) / 1000000u;
    pgp_signal(SIGCONT);
    assert_true(ok);
    assert_journaled(r, first, seq);
    if (ms > DB_CHANGE_ANSWER_MS + 1000)
      fail_msg("the change's write was answered after %llu ms", (unsigned long long)ms);
    assert_true(run_until_jrecords(&a.loop, a.db, 0));
  }
  pgtest_actx_close(&a);
  assert_true(events_in_order(pgtest_pgp.admin, peer, events));
  free(r);
  jfile_free(&j);
}

int main(void) {
  log_set_program("test_db_journal");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_once_connected, pgtest_need_schema),
      cmocka_unit_test_setup(test_once_batched, pgtest_need_schema),
      cmocka_unit_test_setup(test_urgent_write_overtakes_history, pgtest_need_schema),
      cmocka_unit_test_setup(test_urgent_write_overtakes_records, pgtest_need_schema),
      cmocka_unit_test_setup(test_journal_replayed_at_open, pgtest_need_schema),
      cmocka_unit_test_setup(test_journal_torn_last_record, pgtest_need_schema),
      cmocka_unit_test_setup(test_journal_damage_set_aside, pgtest_need_schema),
      cmocka_unit_test(test_journal_full),
      cmocka_unit_test(test_journal_unwritable_is_said_so),
      cmocka_unit_test_setup(test_journal_duplicates_skipped, pgtest_need_schema),
      cmocka_unit_test_setup(test_journal_spill_when_connection_breaks, pgtest_need_schema),
      cmocka_unit_test_setup(test_outage_journaled_in_order, pgtest_need_private_pg),
      cmocka_unit_test_setup(test_outage_inflight_killed_lands_once, pgtest_need_private_pg),
      cmocka_unit_test_setup(test_inflight_resent_without_journal, pgtest_need_private_pg),
      cmocka_unit_test_setup(test_change_answered_soon_when_the_database_hangs,
                             pgtest_need_private_pg),
  };
  return cmocka_run_group_tests(tests, pgtest_group_setup, pgtest_group_teardown);
}
