/* test_db_admin: the blocking side of the db module against a real
 * PostgreSQL (no mocks): migrations from empty, again, a broken file and a
 * gap; the schema check against an empty database and a newer one; an
 * unreachable server; database text shown escaped (start-up refusals,
 * nircd import-sites).
 *
 *   NIRC_TEST_PG="host=127.0.0.1 port=54330 user=nirc dbname=postgres" \
 *   NIRC_SOURCE_DIR=/path/to/nirc ./test_db_admin
 *
 * The fixtures (a database of its own, the schema, the loop and client of
 * each test) are in support/pgtest.h, shared with the other test_db_*
 * programs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "admin.h"
#include "conninfo.h"
#include "db.h"
#include "err.h"
#include "log.h"
#include "support/pgtest.h"

#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- admin tests ---- */

static void test_migrate_from_empty(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  char err[512] = "", out[1024];
  int v = -1;
  assert_int_equal(db_admin_schema_version(pgtest_env.main_ci, &v, err, sizeof err), 0);
  assert_int_equal(v, 0);

  int rc = pgtest_migrate_quiet(pgtest_env.main_ci, pgtest_env.schema_dir, err, sizeof err, out,
                                sizeof out);
  if (rc != 0) fail_msg("migrate: %s", err);
  assert_non_null(strstr(out, "applied 001_foundation\n"));
  pgtest_env.migrated = 1;

  assert_int_equal(db_admin_check_schema(pgtest_env.main_ci, err, sizeof err), 0);
  assert_int_equal(db_admin_schema_version(pgtest_env.main_ci, &v, err, sizeof err), 0);
  assert_int_equal(v, DB_SCHEMA_VERSION);

  /* Again: nothing to do, nothing applied. */
  rc = pgtest_migrate_quiet(pgtest_env.main_ci, pgtest_env.schema_dir, err, sizeof err, out,
                            sizeof out);
  if (rc != 0) fail_msg("migrate again: %s", err);
  char expect[128], n[32];
  snprintf(expect, sizeof expect, "schema is at version %d, nothing to do\n", DB_SCHEMA_VERSION);
  assert_string_equal(out, expect);
  assert_int_equal(
      pgtest_sql(pgtest_env.main_ci, "select count(*) from schema_version", n, sizeof n), 0);
  /* One row per migration. */
  snprintf(expect, sizeof expect, "%d", DB_SCHEMA_VERSION);
  assert_string_equal(n, expect);
  assert_int_equal(pgtest_sql(pgtest_env.main_ci,
                              "select name from schema_version where version = 1", n, sizeof n),
                   0);
  assert_string_equal(n, "foundation");
}

static void test_check_schema_empty_db(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  char err[512] = "";
  assert_int_equal(db_admin_check_schema(pgtest_env.empty_ci, err, sizeof err), NIRC_ESCHEMA);
  char expect[256];
  snprintf(expect, sizeof expect,
           "database schema is version 0, this nircd needs %d: run `nircd -c "
           "/etc/nirc/nircd.conf migrate`",
           DB_SCHEMA_VERSION);
  assert_string_equal(err, expect);
}

static void test_database_newer_than_nircd(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  assert_int_equal(pgtest_create_db(pgtest_env.scratch_db), 0);
  char ci[1024], err[512] = "";
  pgtest_ci_build(ci, sizeof ci, pgtest_env.scratch_db, NULL, NULL, NULL);
  assert_int_equal(pgtest_sql(ci,
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
  assert_int_equal(pgtest_migrate_quiet(ci, pgtest_env.schema_dir, err, sizeof err, NULL, 0),
                   NIRC_ESCHEMA);
  assert_non_null(strstr(err, "this nircd is older than the database"));
  pgtest_drop_db(pgtest_env.scratch_db);
}

static void test_migrate_broken_file_rolls_back(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  assert_int_equal(pgtest_create_db(pgtest_env.scratch_db), 0);
  char ci[1024], err[512] = "", out[1024];
  pgtest_ci_build(ci, sizeof ci, pgtest_env.scratch_db, NULL, NULL, NULL);

  char dir[] = "/tmp/nirc-test-schema-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char p1[PATH_MAX], p2[PATH_MAX], p3[PATH_MAX], src[PATH_MAX + 32];
  snprintf(src, sizeof src, "%s/001_foundation.sql", pgtest_env.schema_dir);
  snprintf(p1, sizeof p1, "%s/001_foundation.sql", dir);
  snprintf(p2, sizeof p2, "%s/002_broken.sql", dir);
  snprintf(p3, sizeof p3, "%s/README.txt", dir); /* not a migration: ignored */
  pgtest_copy_file(src, p1);
  pgtest_write_file(p2, "create table nirc_broken_probe (x int);\n\nselec 1;\n");
  pgtest_write_file(p3, "not sql\n");

  int rc = pgtest_migrate_quiet(ci, dir, err, sizeof err, out, sizeof out);
  assert_int_equal(rc, NIRC_EDB);
  assert_string_equal(out, "applied 001_foundation\n");
  char want[PATH_MAX + 64];
  snprintf(want, sizeof want, "%s: line 3: ERROR: syntax error", p2);
  if (strncmp(err, want, strlen(want)) != 0) fail_msg("unexpected error: %s", err);

  /* PostgreSQL's words quote the statement's bytes: escaped, on one line
   * (the quoted newline is white space, which collapses to one space). */
  pgtest_write_file(p2, "select E'\\x1b[31mred\\nline'::int;\n");
  assert_int_equal(pgtest_migrate_quiet(ci, dir, err, sizeof err, NULL, 0), NIRC_EDB);
  if (!strstr(err, "\\x1b[31mred line") || strchr(err, '\x1b') || strchr(err, '\n'))
    fail_msg("not escaped: %s", err);

  /* 001 stayed, 002 left nothing behind. */
  int v = -1;
  assert_int_equal(db_admin_schema_version(ci, &v, err, sizeof err), 0);
  assert_int_equal(v, 1);
  char n[32];
  assert_int_equal(pgtest_sql(ci, "select to_regclass('nirc_broken_probe') is null", n, sizeof n),
                   0);
  assert_string_equal(n, "t");

  /* A gap is refused before anything is touched. */
  unlink(p2);
  snprintf(p2, sizeof p2, "%s/003_gap.sql", dir);
  pgtest_write_file(p2, "select 1;\n");
  assert_int_equal(pgtest_migrate_quiet(ci, dir, err, sizeof err, NULL, 0), NIRC_ENOTFOUND);
  assert_non_null(strstr(err, "migration 002 is missing"));

  unlink(p1);
  unlink(p2);
  unlink(p3);
  rmdir(dir);
  pgtest_drop_db(pgtest_env.scratch_db);
}

static void test_admin_unreachable(void **state) {
  (void)state;
  char err[512] = "";
  int v = -1;
  assert_int_equal(db_admin_schema_version(PGTEST_UNREACHABLE, &v, err, sizeof err), NIRC_EDB);
  assert_non_null(strstr(err, "host=127.0.0.1 port=1"));
  assert_non_null(strstr(err, "is PostgreSQL running?"));
  assert_int_equal(db_admin_check_schema(PGTEST_UNREACHABLE, err, sizeof err), NIRC_EDB);
  assert_non_null(strstr(err, "is PostgreSQL running?"));
  assert_int_equal(db_admin_check_schema("this is not a conninfo", err, sizeof err), NIRC_EDB);
  assert_non_null(strstr(err, "invalid conninfo"));
}

/* Text read from the database never reaches a log line or a terminal raw
 * (a row edited by hand, a message quoting one): a site's slug with an
 * ANSI escape and a newline in the sites rows nircd reads, and
 * PostgreSQL's own error message quoting such bytes, as the leader's
 * connection and nircd's admin commands say it (conninfo_msg_trim: one
 * line, so the quoted newline becomes a space, the escape is shown). */
static void test_database_text_is_escaped(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  PGconn *c = PQconnectdb(pgtest_env.main_ci);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PGresult *r = PQexec(c, "SELECT E'evil\\x1b[31m\\nslug', 'Evil', '', false, 0, 0, 0, '', 0, "
                          "false, 0, ''");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  sites_t sites;
  sites_init(&sites, 0);
  char err[512] = "";
  assert_int_not_equal(admin_sites_from_result(r, &sites, err, sizeof err), 0);
  PQclear(r);
  sites_free(&sites);
  if (!strstr(err, "site 'evil\\x1b[31m\\nslug'") || strchr(err, '\x1b') || strchr(err, '\n'))
    fail_msg("slug not escaped: %s", err);

  /* A stored roster edited by hand: the parser's refusal quotes it, and
   * nircd prints that refusal on its terminal when it starts. */
  r = PQexec(c, "SELECT 'henan', 'Henan', '', false, 0, 0, 5, E'\\x1b[31m\\n', 0, true, 0, ''");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  sites_init(&sites, 0);
  err[0] = '\0';
  assert_int_not_equal(admin_sites_from_result(r, &sites, err, sizeof err), 0);
  PQclear(r);
  sites_free(&sites);
  if (!strstr(err, "site 'henan': stored capacity is invalid") || !strstr(err, "\\x1b[31m\\n") ||
      strchr(err, '\x1b') || strchr(err, '\n'))
    fail_msg("roster not escaped: %s", err);

  r = PQexec(c, "SELECT E'\\x1b[31mred\\nline'::int");
  assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
  char m[512];
  conninfo_msg_trim(PQresultErrorMessage(r), 0, m, sizeof m);
  PQclear(r);
  PQfinish(c);
  if (!strstr(m, "\\x1b[31mred line") || strchr(m, '\x1b') || strchr(m, '\n'))
    fail_msg("message not escaped: %s", m);
}

/* nircd import-sites prints the sites the database has and the file does
 * not name. The schema's check keeps a slug plain; one dropped (or a
 * database edited by hand) lets any bytes in, and the list must come out
 * escaped all the same. */
static void test_import_sites_escapes_database_slugs(void **state) {
  (void)state;
  PGTEST_NEED_PG();
  assert_true(pgtest_env.migrated);
  const char *ci = pgtest_env.main_ci;
  assert_int_equal(pgtest_sql(ci,
                              "ALTER TABLE sites DROP CONSTRAINT sites_slug_check;"
                              "INSERT INTO sites (slug, name_en, name_zh) VALUES "
                              "(E'evil\\x1b[31m\\n' || chr(127) || chr(155), 'Evil', '')",
                              NULL, 0),
                   0);
  scenario_site_t site = {.slug = "henan", .name_en = "Henan", .name_zh = "河南"};
  scenario_t sc = {.sites = &site, .count = 1, .utc_offset_min = 480};
  admin_import_t st;
  memset(&st, 0, sizeof st);
  char err[512] = "";
  int rc =
      admin_import_sites(ci, &sc, "import-sites:test", "test.json", NULL, &st, err, sizeof err);
  assert_int_equal(pgtest_sql(ci,
                              "DELETE FROM sites WHERE slug IN ('henan') OR slug LIKE 'evil%';"
                              "ALTER TABLE sites ADD CONSTRAINT sites_slug_check CHECK (slug ~ "
                              "'^[a-z][a-z0-9-]{0,30}$')",
                              NULL, 0),
                   0);
  if (rc != 0) fail_msg("import: %s", err);
  assert_int_equal(st.missing, 1);
  assert_string_equal(st.missing_list, "evil\\x1b[31m\\n\\x7f\\u{9b}");
}

int main(void) {
  log_set_program("test_db_admin");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_migrate_from_empty),
      cmocka_unit_test(test_check_schema_empty_db),
      cmocka_unit_test(test_database_newer_than_nircd),
      cmocka_unit_test(test_migrate_broken_file_rolls_back),
      cmocka_unit_test(test_admin_unreachable),
      cmocka_unit_test(test_database_text_is_escaped),
      cmocka_unit_test(test_import_sites_escapes_database_slugs),
  };
  return cmocka_run_group_tests(tests, pgtest_group_setup, pgtest_group_teardown);
}
