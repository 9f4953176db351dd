/* Unit tests for INI configuration loading (common/config.c).
 *
 * A small local option table covers every config_type_t. Each test writes
 * a temporary file (mkstemp), loads it, and checks either the values or
 * that the first problem is reported as "path:LINE: reason" with the line
 * an operator has to fix. The real nircd table is tested in test_sites,
 * which links the controller library. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "err.h"

/* ---- the option table under test -------------------------------------- */

typedef struct {
  char name[16];
  uint32_t port;
  char token[64];
  char path[256];
  uint64_t interval_ms, timeout_ms, window_ms;
  bool verbose, quiet;
  double ratio;
  config_list_t peers;
  uint64_t limit;
} test_conf_t;

#define O(f) offsetof(test_conf_t, f)
#define S(f) sizeof(((test_conf_t *)0)->f)
static const config_opt_t opts[] = {
    {"server", "name", CFG_STRING, O(name), S(name), 0, 0, "nirc", 0, "instance name"},
    {"server", "port", CFG_UINT, O(port), 0, 1, 65535, "7443", 0, "TCP port"},
    {"server", "token", CFG_STRING, O(token), S(token), 0, 0, NULL, 1, "shared secret"},
    {"server", "path", CFG_STRING, O(path), S(path), 0, 0, "/var/lib/nirc", 0, "data dir"},
    {"timing", "interval", CFG_DURATION, O(interval_ms), 0, 100, 600000, "1s", 0, "report"},
    {"timing", "timeout", CFG_DURATION, O(timeout_ms), 0, 100, 600000, "5s", 0, "timeout"},
    {"timing", "window", CFG_DURATION, O(window_ms), 0, 0, 3600000, "250ms", 0, "window"},
    {"features", "verbose", CFG_BOOL, O(verbose), 0, 0, 0, "no", 0, "chatty"},
    {"features", "quiet", CFG_BOOL, O(quiet), 0, 0, 0, "yes", 0, "hush"},
    {"features", "ratio", CFG_DOUBLE, O(ratio), 0, 0, 1, "0.25", 0, "fraction"},
    {"features", "peers", CFG_LIST, O(peers), 0, 0, 0, "alpha,beta", 0, "peer list"},
    {"features", "limit", CFG_SIZE, O(limit), 0, 4096, 1099511627776.0, "64MiB", 0, "disk bound"},
    {0},
};

/* ---- helpers ---------------------------------------------------------- */

typedef struct {
  char path[64];
} tmpfile_t;

static void write_tmp(tmpfile_t *t, const char *text) {
  strcpy(t->path, "/tmp/nirc-test-config-XXXXXX");
  int fd = mkstemp(t->path);
  assert_true(fd >= 0);
  size_t n = strlen(text);
  assert_int_equal(write(fd, text, n), (ssize_t)n);
  assert_int_equal(close(fd), 0);
}

static int load_text(const char *text, test_conf_t *c, char *err, size_t errlen, tmpfile_t *t) {
  write_tmp(t, text);
  memset(c, 0x5A, sizeof *c); /* garbage: defaults must overwrite it */
  err[0] = '\0';
  return config_load(t->path, opts, c, err, errlen);
}

static void load_ok(const char *text, test_conf_t *c) {
  tmpfile_t t;
  char err[512];
  int rc = load_text(text, c, err, sizeof err, &t);
  unlink(t.path);
  if (rc != 0) fail_msg("expected %s to load, got %s: %s", text, nirc_errname(rc), err);
}

/* Loads `text` and expects NIRC_ECONFIG with "path:line: " prefix and
 * `needle` somewhere in the message. */
static void expect_error_at(const char *text, int line, const char *needle) {
  tmpfile_t t;
  test_conf_t c;
  char err[512];
  int rc = load_text(text, &c, err, sizeof err, &t);
  char prefix[128];
  snprintf(prefix, sizeof prefix, "%s:%d: ", t.path, line);
  unlink(t.path);
  if (rc != NIRC_ECONFIG) fail_msg("expected NIRC_ECONFIG for:\n%s\ngot %d (%s)", text, rc, err);
  if (strncmp(err, prefix, strlen(prefix)) != 0)
    fail_msg("error should start with '%s', got '%s'", prefix, err);
  if (needle && !strstr(err, needle)) fail_msg("error should mention '%s', got '%s'", needle, err);
}

static const char *const MINIMAL = "[server]\ntoken = s3cret\n";

/* ---- values ----------------------------------------------------------- */

static void test_defaults_when_absent(void **state) {
  (void)state;
  test_conf_t c;
  load_ok(MINIMAL, &c);
  assert_string_equal(c.name, "nirc");
  assert_int_equal(c.port, 7443);
  assert_string_equal(c.token, "s3cret");
  assert_string_equal(c.path, "/var/lib/nirc");
  assert_int_equal(c.interval_ms, 1000);
  assert_int_equal(c.timeout_ms, 5000);
  assert_int_equal(c.window_ms, 250);
  assert_false(c.verbose);
  assert_true(c.quiet);
  assert_true(c.ratio == 0.25);
  assert_int_equal(c.peers.count, 2);
  assert_string_equal(c.peers.item[0], "alpha");
  assert_string_equal(c.peers.item[1], "beta");
  assert_int_equal(c.limit, 64u * 1024 * 1024);

  /* config_defaults alone gives the same values. */
  test_conf_t d;
  char err[256];
  memset(&d, 0x5A, sizeof d);
  assert_int_equal(config_defaults(opts, &d, err, sizeof err), 0);
  assert_int_equal(d.port, 7443);
  assert_int_equal(d.interval_ms, 1000);
  assert_true(d.quiet);
  assert_int_equal(d.peers.count, 2);
}

static void test_values_parsed(void **state) {
  (void)state;
  test_conf_t c;
  load_ok("; a comment\n"
          "# another comment\n"
          "\n"
          "[server]\n"
          "name = nircd-2\n"
          "port = 8443 ; inline comment\n"
          "token=abc\n"
          "\n"
          "[timing]\n"
          "interval = 500ms\n"
          "timeout = 3s\n"
          "window = 2m\n"
          "[features]\n"
          "verbose = YES\n"
          "quiet = off\n"
          "ratio = 0.75\n"
          "peers = a, b,c\n",
          &c);
  assert_string_equal(c.name, "nircd-2");
  assert_int_equal(c.port, 8443);
  assert_string_equal(c.token, "abc");
  assert_int_equal(c.interval_ms, 500);
  assert_int_equal(c.timeout_ms, 3000);
  assert_int_equal(c.window_ms, 120000);
  assert_true(c.verbose);
  assert_false(c.quiet);
  assert_true(c.ratio == 0.75);
  assert_int_equal(c.peers.count, 3);
  assert_string_equal(c.peers.item[0], "a");
  assert_string_equal(c.peers.item[1], "b");
  assert_string_equal(c.peers.item[2], "c");
}

static void test_bool_spellings(void **state) {
  (void)state;
  static const char *const yes[] = {"yes", "true", "on", "1", "Yes", "TRUE", "On"};
  static const char *const no[] = {"no", "false", "off", "0", "NO", "False", "OFF"};
  char text[128];
  test_conf_t c;
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    snprintf(text, sizeof text, "[server]\ntoken=x\n[features]\nverbose = %s\nquiet = %s\n", yes[i],
             no[i]);
    load_ok(text, &c);
    assert_true(c.verbose);
    assert_false(c.quiet);
  }
}

static void test_list_edges(void **state) {
  (void)state;
  test_conf_t c;
  /* Empty entries and surrounding blanks are dropped. */
  load_ok("[server]\ntoken=x\n[features]\npeers = ,  one ,, two three ,\n", &c);
  assert_int_equal(c.peers.count, 2);
  assert_string_equal(c.peers.item[0], "one");
  assert_string_equal(c.peers.item[1], "two three");

  /* Sixteen entries fit, seventeen do not. */
  char text[256] = "[server]\ntoken=x\n[features]\npeers = ";
  for (int i = 0; i < CONFIG_LIST_MAX; i++)
    strcat(text, i ? ",p" : "p");
  strcat(text, "\n");
  load_ok(text, &c);
  assert_int_equal(c.peers.count, CONFIG_LIST_MAX);
  text[strlen(text) - 1] = '\0';
  strcat(text, ",p\n");
  expect_error_at(text, 4, "more than 16");
}

/* ---- errors with their line ------------------------------------------- */

static void test_unknown_key(void **state) {
  (void)state;
  expect_error_at("[server]\n"
                  "token = x\n"
                  "\n"
                  "; comment\n"
                  "colour = blue\n",
                  5, "unknown option 'colour'");
}

static void test_unknown_section(void **state) {
  (void)state;
  /* Reported at the section header itself. */
  expect_error_at("[server]\n"
                  "token = x\n"
                  "[bogus]\n"
                  "port = 1\n",
                  3, "unknown section [bogus]");
  /* Even when nothing follows it. */
  expect_error_at("[server]\ntoken = x\n[unused]\n", 3, "unknown section [unused]");
  /* A known key in the wrong section is not silently accepted either. */
  expect_error_at("[server]\ntoken = x\n[timing]\nport = 1\n", 4, "'port'");
}

static void test_value_out_of_range(void **state) {
  (void)state;
  expect_error_at("[server]\ntoken = x\nport = 70000\n", 3, "'port'");
  expect_error_at("[server]\ntoken = x\nport = 0\n", 3, "'port'");
  expect_error_at("[server]\ntoken = x\nport = -1\n", 3, "'port'");
  expect_error_at("[server]\ntoken = x\nport = 80x\n", 3, "'port'");
  expect_error_at("[server]\ntoken = x\n[timing]\ninterval = 50ms\n", 4, "'interval'");
  expect_error_at("[server]\ntoken = x\n[timing]\ntimeout = 11m\n", 4, "'timeout'");
  expect_error_at("[server]\ntoken = x\n[features]\nratio = 1.5\n", 4, "'ratio'");
  /* NaN compares false with every bound: it must still be refused. */
  expect_error_at("[server]\ntoken = x\n[features]\nratio = nan\n", 4, "'ratio'");
  expect_error_at("[server]\ntoken = x\n[features]\nratio = inf\n", 4, "'ratio'");
  expect_error_at("[server]\ntoken = x\n[features]\nratio = half\n", 4, "'ratio'");
  /* The bounds themselves are inclusive. */
  test_conf_t c;
  load_ok("[server]\ntoken=x\nport=65535\n[timing]\ninterval=100ms\ntimeout=10m\n", &c);
  assert_int_equal(c.port, 65535);
  assert_int_equal(c.interval_ms, 100);
  assert_int_equal(c.timeout_ms, 600000);
}

/* Sizes are bytes with optional binary suffixes; the bounds are bytes. */
static void test_sizes(void **state) {
  (void)state;
  static const struct {
    const char *text;
    uint64_t bytes;
  } ok[] = {{"4096", 4096},
            {"512k", 512u * 1024},
            {"512 KiB", 512u * 1024},
            {"64MiB", 64u * 1024 * 1024},
            {"64m", 64u * 1024 * 1024},
            {"2G", 2ull << 30},
            {"1TiB", 1ull << 40},
            {"8192B", 8192}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    char text[128];
    snprintf(text, sizeof text, "%s[features]\nlimit = %s\n", MINIMAL, ok[i].text);
    test_conf_t c;
    load_ok(text, &c);
    if (c.limit != ok[i].bytes) fail_msg("%s: got %llu", ok[i].text, (unsigned long long)c.limit);
  }
  const char *const bad[] = {
      "-1k",         "64 MB", "64kB", "lots", "", "1.5M", "2048", "2TiB", "99999999999999999999",
      "17179869184T"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char text[128];
    snprintf(text, sizeof text, "[server]\ntoken = x\n[features]\nlimit = %s\n", bad[i]);
    expect_error_at(text, 4, "'limit' must be a size");
  }
}

static void test_bad_duration(void **state) {
  (void)state;
  expect_error_at("[server]\ntoken = x\n[timing]\n\ninterval = fast\n", 5, "'interval'");
  expect_error_at("[server]\ntoken = x\n[timing]\ninterval = 3 parsecs\n", 4, "duration");
  expect_error_at("[server]\ntoken = x\n[timing]\ninterval = -2s\n", 4, "'interval'");
  /* Found by fuzz_rules: "nan" parsed as a number and overflowed the cast. */
  expect_error_at("[server]\ntoken = x\n[timing]\ninterval = nan\n", 4, "'interval'");
  expect_error_at("[server]\ntoken = x\n[timing]\ninterval = infs\n", 4, "'interval'");
}

static void test_bad_bool(void **state) {
  (void)state;
  expect_error_at("[server]\ntoken = x\n[features]\nverbose = maybe\n", 4, "'verbose'");
}

static void test_duplicate_key(void **state) {
  (void)state;
  expect_error_at("[server]\n"
                  "port = 1000\n"
                  "token = x\n"
                  "port = 2000\n",
                  4, "set twice");
  /* Also when the section is reopened later in the file. */
  expect_error_at("[server]\ntoken = x\n[timing]\ninterval = 1s\n[server]\ntoken = y\n", 6,
                  "'token'");
}

static void test_syntax_error(void **state) {
  (void)state;
  expect_error_at("[server]\n"
                  "token = x\n"
                  "garbage without equals\n",
                  3, "syntax");
  /* A broken section header is a syntax error on its own line. */
  expect_error_at("[server\n", 1, "syntax");
}

/* The first problem in the file is the one reported: a syntax error must
 * not be hidden behind a complaint about a later line. */
static void test_first_problem_is_reported(void **state) {
  (void)state;
  expect_error_at("[server]\n"
                  "token = x\n"
                  "garbage without equals\n"
                  "colour = blue\n",
                  3, "syntax");
  /* "[server" without its bracket: the key after it must not be blamed as
   * being in an unknown section "[]". */
  expect_error_at("[server\ntoken = x\n", 1, "syntax");
}

/* Indentation is for people: an indented key is a key, not the
 * continuation of the previous value (Debian's inih default). */
static void test_indented_keys_are_keys(void **state) {
  (void)state;
  expect_error_at("[server]\n  token = x\n  token = y\n", 3, "set twice");
  expect_error_at("[server]\ntoken = x\n    bogus = 1\n", 3, "unknown option 'bogus'");
}

static void test_string_too_long_for_field(void **state) {
  (void)state;
  expect_error_at("[server]\ntoken = x\nname = a-name-that-is-too-long\n", 3, "'name'");
}

/* inih reads at most 199 characters a line; a longer line would be split
 * into two bogus lines, so it is refused with its line number. */
static void test_long_line(void **state) {
  (void)state;
  char text[1024];
  char value[512];

  /* "path = " is 7 characters: a 193-character value makes a 200-char line. */
  memset(value, 'p', 193);
  value[193] = '\0';
  snprintf(text, sizeof text, "[server]\ntoken = x\n\npath = /%s\n", value + 1);
  expect_error_at(text, 4, "too long");

  /* A long comment line is refused too (it would be split the same way). */
  memset(value, 'c', 300);
  value[300] = '\0';
  snprintf(text, sizeof text, "[server]\n;%s\ntoken = x\n", value);
  expect_error_at(text, 2, "too long");
}

/* The message promises at most 199 characters a line, so a line of exactly
 * 199 characters must load, also as the last line without a newline. */
static void test_line_of_199_chars_loads(void **state) {
  (void)state;
  char text[1024];
  char value[512];
  test_conf_t c;
  memset(value, 'q', 192);
  value[192] = '\0';

  /* 198 characters. */
  snprintf(text, sizeof text, "[server]\ntoken = x\npath = /%s\n", value + 2);
  assert_int_equal(strlen(strchr(text, 'p')) - 1, 198);
  load_ok(text, &c);
  assert_int_equal(strlen(c.path), 191);

  /* 199 characters, then a newline. */
  snprintf(text, sizeof text, "[server]\ntoken = x\npath = /%s\n", value + 1);
  assert_int_equal(strlen(strchr(text, 'p')) - 1, 199);
  load_ok(text, &c);
  assert_int_equal(strlen(c.path), 192);

  /* 199 characters as the last line, no newline. */
  snprintf(text, sizeof text, "[server]\ntoken = x\npath = /%s", value + 1);
  load_ok(text, &c);
  assert_int_equal(strlen(c.path), 192);
}

static void test_missing_required(void **state) {
  (void)state;
  tmpfile_t t;
  test_conf_t c;
  char err[512];
  int rc = load_text("[server]\nport = 1000\n", &c, err, sizeof err, &t);
  unlink(t.path);
  assert_int_equal(rc, NIRC_ECONFIG);
  assert_non_null(strstr(err, t.path));
  assert_non_null(strstr(err, "'token'"));
  assert_non_null(strstr(err, "[server]"));

  /* An empty file is missing it too. */
  rc = load_text("", &c, err, sizeof err, &t);
  unlink(t.path);
  assert_int_equal(rc, NIRC_ECONFIG);
  assert_non_null(strstr(err, "'token'"));
}

static void test_missing_file(void **state) {
  (void)state;
  test_conf_t c;
  char err[512];
  const char *path = "/nonexistent-nirc-dir/nircd.conf";
  assert_int_equal(config_load(path, opts, &c, err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, path));
}

static void test_config_set(void **state) {
  (void)state;
  test_conf_t c;
  char err[256];
  assert_int_equal(config_defaults(opts, &c, err, sizeof err), 0);
  assert_int_equal(config_set(opts, &c, "server", "port", "8080", err, sizeof err), 0);
  assert_int_equal(c.port, 8080);
  assert_int_equal(config_set(opts, &c, "timing", "interval", "750ms", err, sizeof err), 0);
  assert_int_equal(c.interval_ms, 750);
  assert_int_equal(config_set(opts, &c, "features", "verbose", "on", err, sizeof err), 0);
  assert_true(c.verbose);
  assert_int_equal(config_set(opts, &c, "features", "peers", "x,y", err, sizeof err), 0);
  assert_int_equal(c.peers.count, 2);

  /* Unknown keys and sections are refused and named. */
  err[0] = '\0';
  assert_int_equal(config_set(opts, &c, "server", "colour", "blue", err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, "colour"));
  assert_int_equal(config_set(opts, &c, "nope", "port", "1", err, sizeof err), NIRC_ECONFIG);
  /* Bad values are refused and leave the old value. */
  assert_int_equal(config_set(opts, &c, "server", "port", "99999", err, sizeof err), NIRC_ECONFIG);
  assert_int_equal(c.port, 8080);
  assert_int_equal(config_set(opts, &c, "timing", "interval", "soon", err, sizeof err),
                   NIRC_ECONFIG);
  assert_int_equal(c.interval_ms, 750);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_when_absent),
      cmocka_unit_test(test_values_parsed),
      cmocka_unit_test(test_bool_spellings),
      cmocka_unit_test(test_list_edges),
      cmocka_unit_test(test_unknown_key),
      cmocka_unit_test(test_unknown_section),
      cmocka_unit_test(test_value_out_of_range),
      cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_bad_duration),
      cmocka_unit_test(test_bad_bool),
      cmocka_unit_test(test_duplicate_key),
      cmocka_unit_test(test_syntax_error),
      cmocka_unit_test(test_first_problem_is_reported),
      cmocka_unit_test(test_indented_keys_are_keys),
      cmocka_unit_test(test_string_too_long_for_field),
      cmocka_unit_test(test_long_line),
      cmocka_unit_test(test_line_of_199_chars_loads),
      cmocka_unit_test(test_missing_required),
      cmocka_unit_test(test_missing_file),
      cmocka_unit_test(test_config_set),
  };
  return cmocka_run_group_tests(tests, 0, NULL);
}
