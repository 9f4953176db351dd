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
#include "store.h"
#include "support/pgtest.h"

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

/* The route entry of `site` written by the leader of `leader`, and the
 * directive whose move it ends: `late` for a late entry (reverted_*),
 * else the ending leader's own (left_*). */
static void entry(pgtest_actx_t *a, const char *site, uint64_t leader, bool late, long epoch,
                  long version) {
  char detail[400];
  snprintf(detail, sizeof detail,
           "{\"cause\":\"schedule-end\",\"before\":\"shaanxi\",\"after\":\"home\",\"why\":\"%s\","
           "\"%s_epoch\":%ld,\"%s_version\":%ld}",
           late ? "went home on its own, recorded late" : "its window ended",
           late ? "reverted" : "left", epoch, late ? "reverted" : "left", version);
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

static void test_a_return_recorded_twice_says_so_the_second_time(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  char e1[32], e2[32];
  assert_int_equal(pgtest_sql(pgtest_env.main_ci,
                              "INSERT INTO epochs (node) VALUES ('old') RETURNING epoch", e1,
                              sizeof e1),
                   0);
  assert_int_equal(pgtest_sql(pgtest_env.main_ci,
                              "INSERT INTO epochs (node) VALUES ('new') RETURNING epoch", e2,
                              sizeof e2),
                   0);
  uint64_t old = strtoull(e1, NULL, 10), cur = strtoull(e2, NULL, 10);
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

/* The lookup of an earlier entry for the same return reads the partial
 * index audit_log_route_return (schema/011), not the whole audit trail:
 * the statement as store.c writes it, planned with sequential scans
 * discouraged (a plan that cannot use the index still scans). Before the
 * index, the plan read audit_log by a sequential scan. */
static void test_the_lookup_of_an_earlier_return_uses_its_index(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  const char *sql = store_route_return_sql();
  const char *late = "{\"why\":\"w\",\"reverted_epoch\":1,\"reverted_version\":2}";
  const char *own = "{\"why\":\"w\",\"left_epoch\":1,\"left_version\":2}";
  const char *each[] = {late, own};
  for (size_t k = 0; k < 2; k++) {
    size_t n = strlen(sql) + 600;
    char *q = malloc(n), plan[16384];
    assert_non_null(q);
    /* The leader's epoch 0: older than any, so the lookup runs for both. */
    snprintf(q, n,
             "SET enable_seqscan = off; PREPARE q AS %s; EXPLAIN (FORMAT JSON) EXECUTE "
             "q('engine', 'route', 'hubei', '%s', '2026-12-07T12:00:00Z', "
             "'2020-01-23T04:00:00Z', 1, 2, 0)",
             sql, each[k]);
    assert_int_equal(pgtest_sql(pgtest_env.main_ci, q, plan, sizeof plan), 0);
    free(q);
    if (!strstr(plan, "\"Index Name\": \"audit_log_route_return\""))
      fail_msg("the lookup does not use audit_log_route_return: %s", plan);
  }
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
      cmocka_unit_test_setup(test_the_lookup_of_an_earlier_return_uses_its_index,
                             pgtest_need_schema),
      cmocka_unit_test_setup(test_a_removed_site_takes_its_exclusion_and_holds_with_it,
                             pgtest_need_schema),
  };
  return cmocka_run_group_tests(tests, pgtest_group_setup, pgtest_group_teardown);
}
