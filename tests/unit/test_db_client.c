/* test_db_client: the asynchronous db client against a real PostgreSQL
 * (no mocks): arguments, the bounded queue, backoff while unreachable, name
 * resolution, order of results, errors, reconnection after the server
 * ended the session, closing with queries queued and in flight, host
 * lists and a socket replaced during the connection.
 *
 *   NIRC_TEST_PG="host=127.0.0.1 port=54330 user=nirc dbname=postgres" \
 *   NIRC_SOURCE_DIR=/path/to/nirc ./test_db_client
 *
 * The fixtures (a database of its own, the schema, the loop and client of
 * each test) are in support/pgtest.h, shared with the other test_db_*
 * programs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"
#include "err.h"
#include "log.h"
#include "support/pgtest.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

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
  pgtest_actx_t a;
  uv_loop_t l;
  db_t *bad = NULL;
  assert_int_equal(uv_loop_init(&l), 0);
  assert_int_equal(db_open(&l, "not a conninfo", &bad), NIRC_EINVAL);
  assert_null(bad);
  assert_int_equal(uv_loop_close(&l), 0);

  pgtest_actx_open(&a, PGTEST_UNREACHABLE);
  const char *p[DB_MAX_PARAMS + 1] = {0};
  assert_int_equal(db_exec(a.db, NULL, 0, NULL, NULL, NULL), NIRC_EINVAL);
  assert_int_equal(db_exec(a.db, "select 1", -1, NULL, NULL, NULL), NIRC_EINVAL);
  assert_int_equal(db_exec(a.db, "select 1", DB_MAX_PARAMS + 1, p, NULL, NULL), NIRC_EINVAL);
  assert_int_equal(db_exec(a.db, "select $1", 1, NULL, NULL, NULL), NIRC_EINVAL);
  assert_int_equal(db_queue_depth(a.db), 0);
  assert_string_equal(db_state_name(DB_BACKOFF), "backoff");
  pgtest_actx_close(&a);
}

static void test_queue_full(void **state) {
  (void)state;
  pgtest_actx_t a;
  pgtest_actx_open(&a, PGTEST_UNREACHABLE);
  int calls = 0;
  count_closed = 0;
  for (int i = 0; i < DB_QUEUE_MAX; i++) {
    if (db_exec(a.db, "select 1", 0, NULL, count_cb, &calls) != 0) fail_msg("exec %d failed", i);
  }
  assert_int_equal(db_queue_depth(a.db), DB_QUEUE_MAX);
  assert_int_equal(db_exec(a.db, "select 1", 0, NULL, count_cb, &calls), NIRC_EFULL);
  assert_int_equal(calls, 0);
  db_close(a.db, pgtest_on_closed, &a.closed);
  /* Every queued query completed, with NIRC_ECLOSED, inside db_close. */
  assert_int_equal(calls, DB_QUEUE_MAX);
  assert_int_equal(count_closed, DB_QUEUE_MAX);
  pgtest_actx_closed(&a);
}

/* A refused connection goes to BACKOFF and keeps retrying; the queue
 * waits and is completed with NIRC_ECLOSED on close. */
static void test_unreachable_backoff(void **state) {
  (void)state;
  pgtest_actx_t a;
  pgtest_actx_open(&a, PGTEST_UNREACHABLE);
  pgtest_rec_t *r = pgtest_rec_new();
  pgtest_q(a.db, r, 0, "select 1", 0, NULL);
  assert_true(pgtest_run_until_state(&a.loop, a.db, DB_BACKOFF));
  /* Through one more full retry. */
  assert_true(pgtest_run_until_state(&a.loop, a.db, DB_CONNECTING));
  assert_true(pgtest_run_until_state(&a.loop, a.db, DB_BACKOFF));
  assert_int_equal(r->ncalls, 0);
  assert_int_equal(db_queue_depth(a.db), 1);
  db_close(a.db, pgtest_on_closed, &a.closed);
  assert_int_equal(r->ncalls, 1);
  assert_int_equal(r->err[0], NIRC_ECLOSED);
  pgtest_actx_closed(&a);
  free(r);
}

/* A name that does not resolve is a connection failure like any other;
 * closing while the resolver still runs releases everything once the
 * abandoned request comes back. */
static void test_resolve_failure_and_close_while_resolving(void **state) {
  (void)state;
  pgtest_actx_t a;
  pgtest_actx_open(&a, "host=nirc-test.invalid port=5432 user=nirc dbname=nirc");
  assert_int_equal(db_state(a.db), DB_CONNECTING);
  assert_true(pgtest_run_until_state(&a.loop, a.db, DB_BACKOFF));
  pgtest_actx_close(&a);

  pgtest_actx_open(&a, "host=nirc-test.invalid port=5432 user=nirc dbname=nirc");
  pgtest_rec_t *r = pgtest_rec_new();
  pgtest_q(a.db, r, 0, "select 1", 0, NULL);
  db_close(a.db, pgtest_on_closed, &a.closed); /* the lookup is still pending */
  assert_int_equal(r->ncalls, 1);
  assert_int_equal(r->err[0], NIRC_ECLOSED);
  pgtest_actx_closed(&a);
  free(r);
}

/* ---- async tests against the server ---- */

static void test_async_1000_inserts(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  pgtest_actx_t a;
  pgtest_actx_open(&a, pgtest_env.main_ci);
  pgtest_rec_t *r = pgtest_rec_new();
  char peer[64];
  snprintf(peer, sizeof peer, "test-1000-%ld", (long)getpid());
  for (int i = 0; i < 1000; i++) {
    char detail[32];
    snprintf(detail, sizeof detail, "%d", i);
    const char *p[3] = {peer, i % 2 ? "hubei" : NULL, detail};
    pgtest_q(a.db, r, i,
             "insert into link_events (kind, site, peer, event, detail) "
             "values ('site', $2, $1, 'hello', $3)",
             3, p);
  }
  assert_int_equal(db_queue_depth(a.db), 1000);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 1000));
  assert_int_equal(r->out_of_order, 0);
  for (int i = 0; i < 1000; i++) {
    if (r->err[i] != 0) fail_msg("insert %d: %s", i, r->msg[i]);
  }
  const char *p[1] = {peer};
  pgtest_q(a.db, r, 1000, "select count(*) from link_events where peer = $1", 1, p);
  pgtest_q(a.db, r, 1001, "select count(*) from link_events where peer = $1 and site is null", 1,
           p);
  pgtest_q(a.db, r, 1002, "select max(detail::int) from link_events where peer = $1", 1, p);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 1003));
  assert_int_equal(r->err[1000], 0);
  assert_string_equal(r->val[1000], "1000");
  assert_string_equal(r->val[1001], "500");
  assert_string_equal(r->val[1002], "999");
  assert_int_equal(db_state(a.db), DB_READY);
  assert_int_equal(db_queue_depth(a.db), 0);
  pgtest_actx_close(&a);
  free(r);
}

static void test_async_bad_sql_then_ok(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  pgtest_actx_t a;
  pgtest_actx_open(&a, pgtest_env.main_ci);
  pgtest_rec_t *r = pgtest_rec_new();
  const char *two[2] = {"2", "3"};
  const char *null1[1] = {NULL};
  pgtest_q(a.db, r, 0, "selec 1", 0, NULL);
  pgtest_q(a.db, r, 1, "select $1::int + $2::int", 2, two);
  pgtest_q(a.db, r, 2, "select $1::text is null", 1, null1);
  pgtest_q(a.db, r, 3, "insert into sites (slug, name_en, name_zh) values ('Bad Slug', 'x', 'y')",
           0, NULL);
  pgtest_q(a.db, r, 4, "select 'still fine'", 0, NULL);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 5));
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
  pgtest_actx_close(&a);
  free(r);
}

static void test_async_audit_append_only(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  pgtest_actx_t a;
  pgtest_actx_open(&a, pgtest_env.main_ci);
  pgtest_rec_t *r = pgtest_rec_new();
  const char *p[2] = {"test", "{\"why\": \"unit test\"}"};
  pgtest_q(a.db, r, 0,
           "insert into audit_log (actor, action, detail) values ($1, 'probe', $2::jsonb)", 2, p);
  pgtest_q(a.db, r, 1, "update audit_log set actor = 'someone else' where actor = 'test'", 0, NULL);
  pgtest_q(a.db, r, 2, "delete from audit_log where actor = 'test'", 0, NULL);
  pgtest_q(a.db, r, 3, "truncate audit_log", 0, NULL);
  pgtest_q(a.db, r, 4, "select count(*) from audit_log where actor = 'test'", 0, NULL);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 5));
  assert_int_equal(r->err[0], 0);
  for (int i = 1; i <= 3; i++) {
    assert_int_equal(r->err[i], NIRC_EDB);
    if (!strstr(r->msg[i], "append-only")) fail_msg("query %d: %s", i, r->msg[i]);
  }
  assert_int_equal(r->err[4], 0);
  assert_string_equal(r->val[4], "1");
  pgtest_actx_close(&a);
  free(r);
}

static int terminate_client_backend(void) {
  char n[32] = "";
  if (pgtest_terminate_backends(pgtest_env.main_ci,
                                "application_name = '" PGTEST_APP_NAME
                                "' and datname = current_database() and "
                                "pid <> pg_backend_pid()",
                                n, sizeof n) != 0) {
    return -1;
  }
  return atoi(n);
}

static void test_async_reconnect(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  pgtest_actx_t a;
  pgtest_actx_open(&a, pgtest_env.main_ci);
  pgtest_rec_t *r = pgtest_rec_new();
  pgtest_settle(&a, r, 0);

  /* Kill the idle connection; the client notices from the socket. */
  assert_int_equal(terminate_client_backend(), 1);
  assert_true(pgtest_run_until_not_state(&a.loop, a.db, DB_READY));

  char peer[64];
  snprintf(peer, sizeof peer, "test-reconnect-%ld", (long)getpid());
  const char *p[1] = {peer};
  for (int i = 1; i <= 10; i++) {
    pgtest_q(a.db, r, i,
             "insert into link_events (kind, peer, event) values ('unknown', $1, 'online')", 1, p);
  }
  pgtest_q(a.db, r, 11, "select count(*) from link_events where peer = $1", 1, p);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 12));
  assert_int_equal(r->out_of_order, 0);
  for (int i = 1; i <= 11; i++) {
    if (r->err[i] != 0) fail_msg("query %d after reconnect: %s", i, r->msg[i]);
  }
  assert_string_equal(r->val[11], "10");

  /* Kill it while a query is in flight: that one fails (it is never
   * retried), the ones queued behind it run on the next connection. */
  pgtest_q(a.db, r, 12, "select pg_sleep(60)", 0, NULL);
  for (int i = 13; i <= 15; i++) {
    pgtest_q(a.db, r, i,
             "insert into link_events (kind, peer, event) values ('unknown', $1, 'offline')", 1, p);
  }
  assert_true(pgtest_run_until_state(&a.loop, a.db, DB_BUSY));
  assert_int_equal(terminate_client_backend(), 1);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 16));
  assert_int_equal(r->out_of_order, 0);
  assert_int_equal(r->err[12], NIRC_EDB);
  for (int i = 13; i <= 15; i++) {
    if (r->err[i] != 0) fail_msg("query %d after reconnect: %s", i, r->msg[i]);
  }
  pgtest_actx_close(&a);
  free(r);
}

static void test_close_with_queued_and_inflight(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  pgtest_actx_t a;
  pgtest_actx_open(&a, pgtest_env.main_ci);
  pgtest_rec_t *r = pgtest_rec_new();
  pgtest_q(a.db, r, 0, "select 1", 0, NULL);
  assert_true(pgtest_run_until_count(&a.loop, &r->ncalls, 1));
  pgtest_q(a.db, r, 1, "select pg_sleep(0.5)", 0, NULL);
  for (int i = 2; i < 50; i++)
    pgtest_q(a.db, r, i, "select 1", 0, NULL);
  assert_true(pgtest_run_until_state(&a.loop, a.db, DB_BUSY));
  assert_int_equal(db_queue_depth(a.db), 48);
  db_close(a.db, pgtest_on_closed, &a.closed);
  assert_int_equal(r->ncalls, 50);
  assert_int_equal(r->out_of_order, 0);
  for (int i = 1; i < 50; i++)
    assert_int_equal(r->err[i], NIRC_ECLOSED);
  /* A closing client takes nothing new. */
  assert_int_equal(db_exec(a.db, "select 1", 0, NULL, NULL, NULL), NIRC_ECLOSED);
  assert_int_equal(a.closed, 0);
  pgtest_actx_closed(&a);
  free(r);
}

/* db_close from inside a result callback: the remaining queries complete
 * with NIRC_ECLOSED and the client is released after the callback. */
typedef struct {
  pgtest_actx_t *a;
  pgtest_rec_t *r;
} close_in_cb_t;

static void close_in_cb(void *arg, int err, const char *msg, PGresult *res) {
  close_in_cb_t *c = arg;
  pgtest_rec_cb(&c->r->slot[0], err, msg, res);
  db_close(c->a->db, pgtest_on_closed, &c->a->closed);
}

static void test_close_from_callback(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  pgtest_actx_t a;
  pgtest_actx_open(&a, pgtest_env.main_ci);
  pgtest_rec_t *r = pgtest_rec_new();
  close_in_cb_t c = {&a, r};
  assert_int_equal(db_exec(a.db, "select 1", 0, NULL, close_in_cb, &c), 0);
  pgtest_q(a.db, r, 1, "select 2", 0, NULL);
  assert_true(pgtest_run_until_count(&a.loop, &a.closed, 1));
  assert_int_equal(r->ncalls, 2);
  assert_int_equal(r->err[0], 0);
  assert_int_equal(r->err[1], NIRC_ECLOSED);
  assert_int_equal(uv_loop_close(&a.loop), 0);
  assert_int_equal(pgtest_count_fds(), a.fds);
  free(r);
}

/* A host list whose first entry refuses: libpq moves to the next one on a
 * new socket (often with the same descriptor number) in the middle of
 * PQconnectPoll, and the poll handle must follow it. */
static void test_async_host_fallback(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  char ci[1024], port[16], host[240];
  pgtest_ci_get(pgtest_env.main_ci, "port", port, sizeof port);
  if (!port[0]) snprintf(port, sizeof port, "5432");
  pgtest_ci_get(pgtest_env.main_ci, "host", host, sizeof host);
  if (!host[0] || host[0] == '/' || strchr(host, ','))
    skip(); /* needs a single TCP host in NIRC_TEST_PG */
  char hosts[512], ports[64];
  snprintf(hosts, sizeof hosts, "%s,%s", host, host);
  snprintf(ports, sizeof ports, "1,%s", port);
  pgtest_ci_build(ci, sizeof ci, pgtest_env.main_db, hosts, ports, PGTEST_APP_NAME);

  pgtest_rec_t *r = pgtest_query_alone(ci, "select current_database()");
  if (r->err[0] != 0) fail_msg("%s", r->msg[0]);
  assert_string_equal(r->val[0], pgtest_env.main_db);
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
  PGTEST_NEED_PG();
  char ci[1100];
  snprintf(ci, sizeof ci, "%s", pgtest_env.main_ci);
  pgtest_ci_append(ci, sizeof ci, "target_session_attrs", "prefer-standby");
  pgtest_rec_t *r = pgtest_query_alone(ci, "select pg_is_in_recovery()");
  if (r->err[0] != 0) fail_msg("%s", r->msg[0]);
  assert_string_equal(r->val[0], "f");
  free(r);
}

/* A host name (not an IP literal) goes through the asynchronous resolver. */
static void test_async_resolve_name(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  char ci[1024], host[64];
  pgtest_ci_get(pgtest_env.main_ci, "host", host, sizeof host);
  if (strcmp(host, "127.0.0.1") != 0) skip(); /* "localhost" may mean another address */
  pgtest_ci_build(ci, sizeof ci, pgtest_env.main_db, "localhost", NULL, PGTEST_APP_NAME);
  pgtest_rec_t *r = pgtest_query_alone(ci, "select 42");
  if (r->err[0] != 0) fail_msg("%s", r->msg[0]);
  assert_string_equal(r->val[0], "42");
  free(r);
}

int main(void) {
  log_set_program("test_db_client");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exec_invalid),
      cmocka_unit_test(test_queue_full),
      cmocka_unit_test(test_unreachable_backoff),
      cmocka_unit_test(test_resolve_failure_and_close_while_resolving),
      cmocka_unit_test_setup(test_async_1000_inserts, pgtest_need_schema),
      cmocka_unit_test_setup(test_async_bad_sql_then_ok, pgtest_need_schema),
      cmocka_unit_test_setup(test_async_audit_append_only, pgtest_need_schema),
      cmocka_unit_test_setup(test_async_reconnect, pgtest_need_schema),
      cmocka_unit_test_setup(test_close_with_queued_and_inflight, pgtest_need_schema),
      cmocka_unit_test_setup(test_close_from_callback, pgtest_need_schema),
      cmocka_unit_test_setup(test_async_host_fallback, pgtest_need_schema),
      cmocka_unit_test_setup(test_async_socket_replaced_without_error, pgtest_need_schema),
      cmocka_unit_test_setup(test_async_resolve_name, pgtest_need_schema),
  };
  return cmocka_run_group_tests(tests, pgtest_group_setup, pgtest_group_teardown);
}
