/* One return home recorded by two leaders (controller/store/store.c,
 * STORE_ROUTE_RETURN_SQL), against the shared PostgreSQL: the old
 * leader's own entry (it ended the move) waited in its outage journal
 * while a new leader, which did not find it, recorded the agent's own
 * return late; or the old entry reached the database and the directive
 * home did not. The entry that arrives second says it is the same return
 * as the first. A journal replays the statement as written, so it is
 * evaluated when it reaches the database, as here. Also what a site's
 * removal takes with it (store_site). */
#include "db.h"
#include "engine.h"
#include "log.h"
#include "once.h"
#include "store.h"
#include "support/pgtest.h"

#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static int stored;

static void on_stored(void *arg, int err, const char *msg) {
  (void)arg;
  if (err) fail_msg("audit row not stored: %s", msg ? msg : "?");
  stored++;
}

/* The detail of a return's route entry naming the directive whose move it
 * ends: `late` for a late entry (reverted_*), else the ending leader's own
 * (left_*). */
static void detail_of(char *detail, size_t n, bool late, long epoch, long version) {
  snprintf(detail, n,
           "{\"cause\":\"schedule-end\",\"before\":\"shaanxi\",\"after\":\"home\",\"why\":\"%s\","
           "\"%s_epoch\":%ld,\"%s_version\":%ld}",
           late ? "went home on its own, recorded late" : "its window ended",
           late ? "reverted" : "left", epoch, late ? "reverted" : "left", version);
}

/* The route entry of `site` written by the leader of `leader` (see
 * detail_of), through store_engine_record. */
static void entry(pgtest_actx_t *a, const char *site, uint64_t leader, bool late, long epoch,
                  long version) {
  char detail[400];
  detail_of(detail, sizeof detail, late, epoch, version);
  engine_rec_t r = {.kind = ENGINE_REC_AUDIT,
                    .actor = "engine",
                    .action = "route",
                    .target = site,
                    .detail = detail,
                    .wall_ms = 1796440320000LL,
                    .at_ms = 1579752000000LL,
                    .leader_epoch = leader};
  int want = stored + 1;
  assert_int_equal(store_engine_record(a->db, &r, on_stored, NULL), 0);
  assert_true(pgtest_run_until_count(&a->loop, &stored, want));
}

/* The `duplicates` of site's route entries in order, "-" for none. */
static void marks(const char *site, char *out, size_t n) {
  char sql[300];
  snprintf(sql, sizeof sql,
           "SELECT string_agg(m, ',' ORDER BY id) FROM (SELECT id, coalesce(((detail->>"
           "'duplicates')::bigint - min(id) OVER () + 1)::text, '-') AS m FROM audit_log WHERE "
           "target = '%s') x",
           site);
  assert_int_equal(pgtest_sql(pgtest_env.main_ci, sql, out, n), 0);
}

/* Two new leaders' epochs: `old` (since replaced) and `cur` (the newest). */
static void two_epochs(uint64_t *old, uint64_t *cur) {
  char e1[32], e2[32];
  assert_int_equal(pgtest_sql(pgtest_env.main_ci,
                              "INSERT INTO epochs (node) VALUES ('old') RETURNING epoch", e1,
                              sizeof e1),
                   0);
  assert_int_equal(pgtest_sql(pgtest_env.main_ci,
                              "INSERT INTO epochs (node) VALUES ('new') RETURNING epoch", e2,
                              sizeof e2),
                   0);
  *old = strtoull(e1, NULL, 10);
  *cur = strtoull(e2, NULL, 10);
}

static void test_a_return_recorded_twice_says_so_the_second_time(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  uint64_t old, cur;
  two_epochs(&old, &cur);
  pgtest_actx_t a;
  pgtest_actx_open(&a, pgtest_env.main_ci);
  char s1[40], s2[40], s3[40], got[200];
  snprintf(s1, sizeof s1, "late-first-%ld", (long)getpid());
  snprintf(s2, sizeof s2, "old-first-%ld", (long)getpid());
  snprintf(s3, sizeof s3, "two-returns-%ld", (long)getpid());

  /* The new leader's late entry, then the old leader's from its journal. */
  entry(&a, s1, cur, true, (long)old, 1);
  entry(&a, s1, old, false, (long)old, 1);
  marks(s1, got, sizeof got);
  assert_string_equal(got, "-,1");
  char sql[300], why[300];
  snprintf(sql, sizeof sql,
           "SELECT detail->>'why' FROM audit_log WHERE target = '%s' ORDER BY id DESC LIMIT 1", s1);
  assert_int_equal(pgtest_sql(pgtest_env.main_ci, sql, why, sizeof why), 0);
  if (!strstr(why, "its window ended; the same return as audit entry ") ||
      !strstr(why, ", recorded by another leader"))
    fail_msg("why: %s", why);

  /* The old leader's entry first (its directive home did not arrive). */
  entry(&a, s2, old, false, (long)old, 1);
  entry(&a, s2, cur, true, (long)old, 1);
  marks(s2, got, sizeof got);
  assert_string_equal(got, "-,1");

  /* Two returns of one leader from two moves: not the same return. */
  entry(&a, s3, cur, false, (long)cur, 1);
  entry(&a, s3, cur, false, (long)cur, 3);
  entry(&a, s3, old, false, (long)old, 2);
  marks(s3, got, sizeof got);
  assert_string_equal(got, "-,-,-");
  pgtest_actx_close(&a);
}

/* ---- two leaders at the same moment, each on its own connection ---- */

static PGconn *connect_main(void) {
  PGconn *c = PQconnectdb(pgtest_env.main_ci);
  if (PQstatus(c) != CONNECTION_OK) fail_msg("connect: %s", PQerrorMessage(c));
  return c;
}

static void exec_ok(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
}

/* Sends the route entry of detail_of on c as store.c sends it (once_sql
 * around the statement, with its key), without waiting for its result. */
static void send_entry(PGconn *c, const char *site, uint64_t leader, bool late, long epoch,
                       long version) {
  static unsigned seq;
  char detail[400], le[24], lv[24], we[24], key[64];
  detail_of(detail, sizeof detail, late, epoch, version);
  snprintf(le, sizeof le, "%ld", epoch);
  snprintf(lv, sizeof lv, "%ld", version);
  snprintf(we, sizeof we, "%llu", (unsigned long long)leader);
  snprintf(key, sizeof key, "returns-%ld-%u", (long)getpid(), ++seq);
  const char *p[] = {
      "engine", "route", site, detail, "2026-12-07T12:00:00Z", "2020-01-23T04:00:00Z",
      le,       lv,      we,   key};
  char *sql = once_sql(store_route_return_sql(), 9);
  assert_non_null(sql);
  assert_int_equal(PQsendQueryParams(c, sql, 10, NULL, p, NULL, NULL, 0), 1);
  free(sql);
}

/* Reads what was sent on c to its end: every result must be a success. */
static void result_ok(PGconn *c) {
  char msg[400] = "";
  PGresult *r;
  while ((r = PQgetResult(c)) != NULL) {
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !msg[0])
      snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
    PQclear(r);
  }
  if (msg[0]) fail_msg("route entry not stored: %s", msg);
}

/* Waits (10 s at most) until what was sent on c has its result, or its
 * backend waits for a lock (seen from `watch`): the statement has gone as
 * far as it can while the other transaction is open. */
static void until_done_or_waiting(PGconn *c, PGconn *watch) {
  char pid[16];
  snprintf(pid, sizeof pid, "%d", PQbackendPID(c));
  const char *p[] = {pid};
  for (int i = 0; i < 500; i++) {
    if (PQconsumeInput(c) != 1) fail_msg("%s", PQerrorMessage(c));
    if (!PQisBusy(c)) return;
    PGresult *r =
        PQexecParams(watch, "SELECT count(*) FROM pg_locks WHERE pid = $1::int AND NOT granted", 1,
                     NULL, p, NULL, NULL, 0);
    bool waits = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "0") != 0;
    PQclear(r);
    if (waits) return;
    struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
    (void)poll(&pfd, 1, 20); /* its result, or the next look at pg_locks */
  }
  fail_msg("the second route entry neither finished nor waited for a lock in 10 s");
}

/* Two live leaders record one return at the same moment: each entry's
 * INSERT runs while the other's transaction is still open (the old
 * leader's entry from its journal, the new leader's late one; both
 * orders). Under READ COMMITTED a statement sees only what committed
 * before it started, so before, neither found the other: both entries
 * claimed to be the return ("-,-") and `nircctl history` counted it twice.
 * Now the second waits for the first to commit and says it duplicates it. */
static void test_two_leaders_recording_one_return_at_once_find_each_other(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  uint64_t old, cur;
  two_epochs(&old, &cur);
  PGconn *c1 = connect_main(), *c2 = connect_main(), *watch = connect_main();
  for (int k = 0; k < 2; k++) {
    bool late_first = k == 0;
    char site[40], got[200];
    snprintf(site, sizeof site, "at-once-%d-%ld", k, (long)getpid());
    exec_ok(c1, "BEGIN");
    exec_ok(c2, "BEGIN");
    send_entry(c1, site, late_first ? cur : old, late_first, (long)old, 1);
    result_ok(c1);
    send_entry(c2, site, late_first ? old : cur, !late_first, (long)old, 1);
    until_done_or_waiting(c2, watch);
    exec_ok(c1, "COMMIT");
    result_ok(c2);
    exec_ok(c2, "COMMIT");
    marks(site, got, sizeof got);
    assert_string_equal(got, "-,1");
  }
  PQfinish(c1);
  PQfinish(c2);
  PQfinish(watch);
}

/* The first value of sql's result on c, as text. */
static void value_of(PGconn *c, const char *sql, char *out, size_t n) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
    fail_msg("%s: %s", sql, PQresultErrorMessage(r));
  snprintf(out, n, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
}

/* The lookup of an earlier entry for the same return reads the partial
 * index audit_log_route_return (schema/011), not the whole audit trail,
 * and runs only where a second entry can be: the statement as store.c
 * sends it, with sequential scans discouraged (a plan that cannot use the
 * index still scans). The lookup is in audit_log_route_return_first
 * (schema/013), whose plan EXPLAIN does not show: the index's scan count
 * says it (flushed at once by pg_stat_force_next_flush), and pg_locks
 * shows the lock it takes (class 0x4e495252). A leader's own entry while
 * it is the newest (the usual return) takes no lock and reads no index.
 * Before the index, the lookup read audit_log by a sequential scan. */
static void test_the_lookup_of_an_earlier_return_uses_its_index(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  uint64_t old, cur;
  two_epochs(&old, &cur);
  PGconn *c = connect_main();
  exec_ok(c, "SET enable_seqscan = off");
  static const char scans[] =
      "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'audit_log_route_return'";
  const struct {
    bool late;
    uint64_t leader;
    bool looks;
  } each[] = {{true, cur, true}, {false, old, true}, {false, cur, false}};
  for (size_t k = 0; k < sizeof each / sizeof each[0]; k++) {
    char before[24], after[24], locks[24];
    value_of(c, scans, before, sizeof before);
    exec_ok(c, "BEGIN");
    send_entry(c, "hubei", each[k].leader, each[k].late, (long)old, 2);
    result_ok(c);
    value_of(c,
             "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = "
             "'advisory' AND classid = 1313428050",
             locks, sizeof locks);
    exec_ok(c, "ROLLBACK");
    exec_ok(c, "SELECT pg_stat_force_next_flush()");
    value_of(c, scans, after, sizeof after);
    bool read = strtoull(after, NULL, 10) > strtoull(before, NULL, 10);
    if (read != each[k].looks || strcmp(locks, each[k].looks ? "1" : "0") != 0)
      fail_msg("entry %zu (%s, leader %s): audit_log_route_return scans %s -> %s, advisory "
               "locks %s; expected %s",
               k, each[k].late ? "late" : "own", each[k].leader == cur ? "newest" : "replaced",
               before, after, locks, each[k].looks ? "a scan and one lock" : "neither");
  }
  PQfinish(c);
}

/* A site removed (nircctl site remove) takes with it what a new leader
 * would load about it: a live exclusion after a failed move, a hold home
 * after its agent's early returns, its capacity damping. Before, those
 * rows stayed live, and the site added again under its slug came back
 * excluded or held at the next takeover. Another site's rows stay. */
static void test_a_removed_site_takes_its_exclusion_and_holds_with_it(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  char gone[40], kept[40], sql[1200], got[200];
  snprintf(gone, sizeof gone, "gone-%ld", (long)getpid() % 100000);
  snprintf(kept, sizeof kept, "kept-%ld", (long)getpid() % 100000);
  const char *both[] = {gone, kept};
  for (size_t k = 0; k < 2; k++) {
    snprintf(sql, sizeof sql,
             "INSERT INTO sites (slug, name_en, name_zh) VALUES ('%s', 'x', 'x'); "
             "INSERT INTO route_exclusions (site, rule_kind, rule_id, reason, excluded_at) VALUES "
             "('%s', 'cutover', 7, 'rolled back', now()); INSERT INTO route_return_holds (site, "
             "returns, span_ms, rule_kind, rule_id, early_ms, held_at) VALUES ('%s', 3, 60000, "
             "'cutover', 7, 42000, now()); INSERT INTO route_holds (site, updated_at) VALUES "
             "('%s', now()); SELECT 1",
             both[k], both[k], both[k], both[k]);
    assert_int_equal(pgtest_sql(pgtest_env.main_ci, sql, got, sizeof got), 0);
  }
  engine_site_rec_t sr = {.slug = gone,
                          .removed = true,
                          .removed_wall_ms = 1796440320000LL,
                          .removed_by = "operator:olga"};
  engine_rec_t r = {.kind = ENGINE_REC_SITE,
                    .site = gone,
                    .site_rec = &sr,
                    .wall_ms = 1796440320000LL,
                    .at_ms = 1579752000000LL,
                    .leader_epoch = 1};
  pgtest_actx_t a;
  pgtest_actx_open(&a, pgtest_env.main_ci);
  int want = stored + 1;
  assert_int_equal(store_engine_record(a.db, &r, on_stored, NULL), 0);
  assert_true(pgtest_run_until_count(&a.loop, &stored, want));
  pgtest_actx_close(&a);
  for (size_t k = 0; k < 2; k++) {
    snprintf(sql, sizeof sql,
             "SELECT (SELECT removed_by IS NOT NULL FROM sites WHERE slug = '%s')::text || ',' || "
             "(SELECT count(*) FROM route_exclusions WHERE site = '%s' AND cleared_at IS NULL) || "
             "',' || (SELECT count(*) FROM route_return_holds WHERE site = '%s' AND cleared_at "
             "IS NULL) || ',' || (SELECT count(*) FROM route_holds WHERE site = '%s') || ',' || "
             "coalesce((SELECT cleared_by || '/' || cleared_why FROM route_return_holds WHERE "
             "site = '%s'), '')",
             both[k], both[k], both[k], both[k], both[k]);
    assert_int_equal(pgtest_sql(pgtest_env.main_ci, sql, got, sizeof got), 0);
    assert_string_equal(got, k == 0 ? "true,0,0,0,operator:olga/site removed" : "false,1,1,1,");
  }
}

int main(void) {
  log_set_program("test_store_returns");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_a_return_recorded_twice_says_so_the_second_time,
                             pgtest_need_schema),
      cmocka_unit_test_setup(test_two_leaders_recording_one_return_at_once_find_each_other,
                             pgtest_need_schema),
      cmocka_unit_test_setup(test_the_lookup_of_an_earlier_return_uses_its_index,
                             pgtest_need_schema),
      cmocka_unit_test_setup(test_a_removed_site_takes_its_exclusion_and_holds_with_it,
                             pgtest_need_schema),
  };
  return cmocka_run_group_tests(tests, pgtest_group_setup, pgtest_group_teardown);
}
