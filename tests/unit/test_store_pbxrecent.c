/* A new leader's read-back of the sites' recent PBX events
 * (controller/store/pbxrecent.c, PBXRECENT_SQL) against the shared
 * PostgreSQL: exactly each site's newest `keep` PBX events since the
 * window's start, newest first with id breaking a tie of times, and
 * nothing else (other kinds of link event, rows older than the window,
 * rows not of a site's link). The rows are inserted out of time order.
 * And the query walks the partial index link_events_pbx (schema 014)
 * rather than the day's whole traffic: a kind added to the query and not
 * to the index's predicate would lose it. */
#include "db.h"
#include "log.h"
#include "pbxrecent.h"
#include "support/pgtest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* 2026-12-05 03:00:00 +08:00; the window starts a day earlier. */
#define T0        1796410800000LL
#define FROM_MS   (T0 - 24 * 3600000LL)
#define KEEP      8
#define MAX_ROWS  64
#define ROW_WORDS 48

typedef struct {
  const char *site, *kind, *event;
  int min_ago; /* minutes before T0 */
  const char *label;
} ev_t;

/* In insertion (id) order, which is not time order. */
static const ev_t events[] = {
    {"pa", "site", "route_confirmed", 50, "a50"},
    {"pa", "site", "pbx_drift_repaired", 10, "a10"},
    {"pa", "site", "online", 1, "x1"},
    {"pa", "site", "pbx_verify_failed", 70, "a70"},
    {"pa", "site", "agent_state_saved", 30, "a30"},
    {"pa", "site", "pbx_events_dropped", 20, "a20"},
    {"pa", "site", "pbx_drift_not_repaired", 90, "a90"},
    {"pa", "operator", "route_unconfirmed", 2, "op"},
    {"pa", "site", "route_unconfirmed", 60, "a60"},
    {"pa", "site", "agent_reverted", 40, "a40"},
    {"pa", "site", "agent_state_not_saved", 80, "a80x"}, /* same time as a80y, older id */
    {"pa", "site", "report", 3, "x3"},
    {"pa", "site", "pbx_drift_repaired", 80, "a80y"},
    {"pa", "site", "pbx_verify_failed", 100, "a100"},
    {"pa", "site", "route_confirmed", 25 * 60, "a-old"},
    {"pa", "site", "offline", 5, "x5"},
    {"pb", "site", "agent_state_saved", 5, "b5"},
    {"pb", "site", "online", 2, "y2"},
    {"pb", "site", "pbx_verify_failed", 24 * 60 + 1, "b-old"},
    {"pb", "site", "route_confirmed", 24 * 60, "b-edge"}, /* exactly at the window's start */
    {"pc", "site", "offline", 1, "z1"},
    {"pc", "site", "pbx_drift_repaired", 30 * 60, "c-old"},
    {"pc", "unknown", "agent_reverted", 4, "c-unknown"},
};

/* Sorted "site/label@minutes-ago": pa's newest 8 (a80y, not a80x: the
 * newer id wins the tie at the cut), pb's two in the window, none of pc. */
static const char expected[] = "pa/a10@10 pa/a20@20 pa/a30@30 pa/a40@40 pa/a50@50 pa/a60@60 "
                               "pa/a70@70 pa/a80y@80 pb/b-edge@1440 pb/b5@5";

typedef struct {
  int done, err, bad, n;
  char row[MAX_ROWS][ROW_WORDS];
} got_t;

static void on_rows(void *arg, int err, const char *msg, PGresult *res) {
  got_t *g = arg;
  g->err = err;
  if (err) fprintf(stderr, "pbxrecent: %s\n", msg ? msg : "?");
  for (int i = 0; !err && i < PQntuples(res); i++) {
    pbxrecent_row_t r;
    if (pbxrecent_row(res, i, &r) != 0 || g->n == MAX_ROWS) {
      g->bad++;
      continue;
    }
    snprintf(g->row[g->n++], ROW_WORDS, "%s/%s@%lld", r.site, r.detail,
             (long long)((T0 - r.at_ms) / 60000));
  }
  g->done++;
}

static int by_text(const void *a, const void *b) {
  return strcmp(a, b);
}

static void insert_events(void) {
  char sql[8192] = "INSERT INTO sites (slug, name_en, name_zh) VALUES ('pa', 'a', 'a'), "
                   "('pb', 'b', 'b'), ('pc', 'c', 'c'), ('pd', 'd', 'd'); ";
  for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
    const ev_t *e = &events[i];
    size_t len = strlen(sql);
    int w = snprintf(sql + len, sizeof sql - len,
                     "INSERT INTO link_events (at, kind, identity, site, peer, event, detail) "
                     "VALUES (to_timestamp(%lld / 1000.0), '%s', '%s', '%s', '127.0.0.1:1', "
                     "'%s', '%s'); ",
                     (long long)(T0 - e->min_ago * 60000LL), e->kind, e->site, e->site, e->event,
                     e->label);
    assert_true(w > 0 && (size_t)w < sizeof sql - len);
  }
  assert_int_equal(pgtest_sql(pgtest_env.main_ci, sql, NULL, 0), 0);
}

static void test_each_site_gets_its_newest_pbx_events_in_the_window(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  insert_events();
  pgtest_actx_t a;
  pgtest_actx_open(&a, pgtest_env.main_ci);
  static got_t g;
  memset(&g, 0, sizeof g);
  assert_int_equal(pbxrecent_load(a.db, FROM_MS, KEEP, on_rows, &g), 0);
  assert_true(pgtest_run_until_count(&a.loop, &g.done, 1));
  pgtest_actx_close(&a);
  assert_int_equal(g.err, 0);
  assert_int_equal(g.bad, 0);
  qsort(g.row, (size_t)g.n, sizeof g.row[0], by_text);
  char all[MAX_ROWS * ROW_WORDS] = "";
  for (int i = 0; i < g.n; i++) {
    size_t len = strlen(all);
    snprintf(all + len, sizeof all - len, "%s%s", i ? " " : "", g.row[i]);
  }
  assert_string_equal(all, expected);
}

/* The plan, with sequential scans priced out so that the tiny test table
 * does not hide the choice: the partial index, no sort, a walk that stops
 * (Limit). A query kind that the index's predicate lacks makes PostgreSQL
 * fall back to link_events_site_at and read every event of every site; the
 * old window function read every PBX event ever stored. */
static void test_the_read_back_walks_its_partial_index(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  PGconn *c = PQconnectdb(pgtest_env.main_ci);
  if (PQstatus(c) != CONNECTION_OK) fail_msg("connect: %s", PQerrorMessage(c));
  PQclear(PQexec(c, "SET enable_seqscan = off"));
  char sql[2048], from[24], keep[8];
  int w = snprintf(sql, sizeof sql, "EXPLAIN %s", PBXRECENT_SQL);
  assert_true(w > 0 && (size_t)w < sizeof sql);
  snprintf(from, sizeof from, "%lld", FROM_MS);
  snprintf(keep, sizeof keep, "%d", KEEP);
  const char *p[] = {from, keep};
  PGresult *r = PQexecParams(c, sql, 2, NULL, p, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) fail_msg("EXPLAIN: %s", PQresultErrorMessage(r));
  char plan[4096] = "";
  for (int i = 0; i < PQntuples(r); i++) {
    size_t len = strlen(plan);
    snprintf(plan + len, sizeof plan - len, "%s\n", PQgetvalue(r, i, 0));
  }
  PQclear(r);
  PQfinish(c);
  if (!strstr(plan, "link_events_pbx") || strstr(plan, "Sort") || !strstr(plan, "Limit"))
    fail_msg("PBXRECENT_SQL does not walk link_events_pbx without a sort, stopping after %d rows "
             "per site:\n%s",
             KEEP, plan);
}

int main(void) {
  log_set_program("test_store_pbxrecent");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_each_site_gets_its_newest_pbx_events_in_the_window,
                             pgtest_need_schema),
      cmocka_unit_test_setup(test_the_read_back_walks_its_partial_index, pgtest_need_schema),
  };
  return cmocka_run_group_tests(tests, pgtest_group_setup, pgtest_group_teardown);
}
