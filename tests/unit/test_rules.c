/* Unit tests for the routing rules (controller/routing/rules.c) and time zones
 * (controller/routing/tz.c).
 *
 * These are the checks that stand between an operator's command and a
 * move of live traffic: parsing what was typed, refusing rules that would
 * misroute calls (with a message that says what to fix), spotting rules
 * that fight over a site, and deciding when a schedule is in force —
 * including across midnight, daylight saving changes and exception dates.
 * Expected instants are computed with timegm(), independently of tz.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "err.h"
#include "rules.h"
#include "tz.h"

#define HOUR_MS (3600 * 1000LL)
#define MIN_MS  (60 * 1000LL)

/* ---- helpers ---------------------------------------------------------- */

/* Unix ms of a UTC calendar time. */
static int64_t utc(int y, int mo, int d, int h, int mi) {
  struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
  return (int64_t)timegm(&tm) * 1000;
}

/* Unix ms of a China Standard Time (UTC+8, no DST since 1991) wall time. */
static int64_t cst(int y, int mo, int d, int h, int mi) {
  return utc(y, mo, d, h, mi) - 8 * HOUR_MS;
}

/* The site table the validators consult: two hubs, three plain sites. */
typedef struct {
  const char *slug;
  bool hub;
} stub_site_t;

static const stub_site_t stub_sites[] = {
    {"hubei", false}, {"henan", false}, {"guizhou", false}, {"shaanxi", true}, {"sichuan", true},
};

static bool stub_exists(void *arg, const char *slug, bool *is_hub) {
  (void)arg;
  for (size_t i = 0; i < sizeof stub_sites / sizeof stub_sites[0]; i++) {
    if (strcmp(stub_sites[i].slug, slug) == 0) {
      *is_hub = stub_sites[i].hub;
      return true;
    }
  }
  return false;
}

static bool stub_at(void *arg, size_t i, const char **slug, bool *is_hub) {
  (void)arg;
  if (i >= sizeof stub_sites / sizeof stub_sites[0]) return false;
  *slug = stub_sites[i].slug;
  *is_hub = stub_sites[i].hub;
  return true;
}

static const rules_env_t stub_env = {.site_exists = stub_exists, .arg = NULL};
/* With the site list: refusals suggest names and list the hubs. */
static const rules_env_t listing_env = {
    .site_exists = stub_exists, .arg = NULL, .site_at = stub_at};

static void list(slug_list_t *l, const char *csv) {
  char err[256] = "";
  if (rules_parse_slug_list(csv, l, err, sizeof err) != 0) fail_msg("list '%s': %s", csv, err);
}

/* Hard-codes everything but the lists, so each test changes one thing. */
static void good_cutover(cutover_t *c) {
  memset(c, 0, sizeof *c);
  list(&c->sources, "hubei");
  list(&c->hubs, "shaanxi,sichuan");
  snprintf(c->reason, sizeof c->reason, "Wuhan lockdown 武汉封城");
  snprintf(c->operator_name, sizeof c->operator_name, "duty-officer");
  c->created_ms = cst(2020, 1, 23, 10, 0);
}

static void schedule(schedule_t *s, const char *name, const char *sources, const char *start,
                     const char *end, uint8_t days, const char *tz) {
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  list(&s->sources, sources);
  list(&s->hubs, "shaanxi");
  assert_int_equal(rules_parse_hhmm(start, &s->start_min), 0);
  assert_int_equal(rules_parse_hhmm(end, &s->end_min), 0);
  s->days = days;
  snprintf(s->tz, sizeof s->tz, "%s", tz);
  s->wave_size = 5;
  s->enabled = true;
}

static void good_overflow(overflow_rule_t *o) {
  memset(o, 0, sizeof *o);
  snprintf(o->name, sizeof o->name, "hubei-peak");
  snprintf(o->source, sizeof o->source, "hubei");
  list(&o->hubs, "shaanxi");
  o->trigger_wait_s = 60;
  o->release_wait_s = 20;
  o->trigger_queue = 30;
  o->release_queue = 10;
  o->trigger_sl = 0.6;
  o->release_sl = 0.8;
  o->share_cap_permille = 300;
  o->min_hold_s = 600;
  o->margin_s = 10;
  o->enabled = true;
}

/* The call must fail with `code` and a message that contains `needle`. */
#define assert_refused(call, code, needle)                                                         \
  do {                                                                                             \
    err[0] = '\0';                                                                                 \
    int rc_ = (call);                                                                              \
    if (rc_ != (code))                                                                             \
      fail_msg("%s: got %s ('%s'), want %s", #call, nirc_errname(rc_), err, nirc_errname(code));   \
    if (!strstr(err, (needle))) fail_msg("%s: message '%s' lacks '%s'", #call, err, (needle));     \
  } while (0)

#define assert_accepted(call)                                                                      \
  do {                                                                                             \
    err[0] = '\0';                                                                                 \
    int rc_ = (call);                                                                              \
    if (rc_ != 0) fail_msg("%s: refused with %s: %s", #call, nirc_errname(rc_), err);              \
  } while (0)

/* ---- parse helpers ---------------------------------------------------- */

static void test_parse_slug_list(void **state) {
  (void)state;
  char err[256];
  slug_list_t l;
  assert_accepted(rules_parse_slug_list("hubei,henan", &l, err, sizeof err));
  assert_int_equal(l.n, 2);
  assert_string_equal(l.v[0], "hubei");
  assert_string_equal(l.v[1], "henan");
  assert_accepted(rules_parse_slug_list("  hubei ,\thenan  , guizhou", &l, err, sizeof err));
  assert_int_equal(l.n, 3);
  assert_string_equal(l.v[1], "henan");
  assert_string_equal(l.v[2], "guizhou");

  assert_refused(rules_parse_slug_list("", &l, err, sizeof err), NIRC_EINVAL, "no sites");
  assert_int_equal(l.n, 0);
  assert_refused(rules_parse_slug_list("   ", &l, err, sizeof err), NIRC_EINVAL, "no sites");
  assert_refused(rules_parse_slug_list(NULL, &l, err, sizeof err), NIRC_EINVAL, "no sites");
  assert_refused(rules_parse_slug_list("hubei,,henan", &l, err, sizeof err), NIRC_EINVAL,
                 "empty site name");
  assert_int_equal(l.n, 0); /* nothing half-parsed is left behind */
  assert_refused(rules_parse_slug_list("hubei,", &l, err, sizeof err), NIRC_EINVAL, "empty");
  assert_refused(rules_parse_slug_list(",hubei", &l, err, sizeof err), NIRC_EINVAL, "empty");
  assert_refused(rules_parse_slug_list("hubei, ,henan", &l, err, sizeof err), NIRC_EINVAL, "empty");
  assert_refused(rules_parse_slug_list("hubei,Henan", &l, err, sizeof err), NIRC_EINVAL,
                 "'Henan' is not a site name");
  assert_refused(rules_parse_slug_list("hu bei", &l, err, sizeof err), NIRC_EINVAL,
                 "'hu bei' is not a site name");
  assert_refused(rules_parse_slug_list("1hubei", &l, err, sizeof err), NIRC_EINVAL,
                 "not a site name");
  assert_refused(rules_parse_slug_list("hubei;henan", &l, err, sizeof err), NIRC_EINVAL,
                 "not a site name");
  assert_refused(rules_parse_slug_list("abcdefghijabcdefghijabcdefghijab", &l, err, sizeof err),
                 NIRC_EINVAL, "at most 31 characters");
  assert_accepted(rules_parse_slug_list("abcdefghijabcdefghijabcdefghija", &l, err, sizeof err));
  assert_refused(rules_parse_slug_list("hubei,henan,hubei", &l, err, sizeof err), NIRC_EINVAL,
                 "hubei is listed twice");

  /* RULES_MAX_SITES items fit, one more does not. */
  char csv[RULES_MAX_SITES * 8 + 16] = "";
  size_t off = 0;
  for (int i = 0; i < RULES_MAX_SITES; i++)
    off += (size_t)snprintf(csv + off, sizeof csv - off, "%ss%d", i ? "," : "", i);
  assert_accepted(rules_parse_slug_list(csv, &l, err, sizeof err));
  assert_int_equal(l.n, RULES_MAX_SITES);
  assert_string_equal(l.v[RULES_MAX_SITES - 1], "s63");
  snprintf(csv + off, sizeof csv - off, ",extra");
  assert_refused(rules_parse_slug_list(csv, &l, err, sizeof err), NIRC_EINVAL, "too many sites");

  /* No message buffer is fine too. */
  assert_int_equal(rules_parse_slug_list("", &l, NULL, 0), NIRC_EINVAL);
}

static void test_parse_hhmm(void **state) {
  (void)state;
  int m = -1;
  assert_int_equal(rules_parse_hhmm("00:00", &m), 0);
  assert_int_equal(m, 0);
  assert_int_equal(rules_parse_hhmm("22:00", &m), 0);
  assert_int_equal(m, 1320);
  assert_int_equal(rules_parse_hhmm("08:05", &m), 0);
  assert_int_equal(m, 485);
  assert_int_equal(rules_parse_hhmm("23:59", &m), 0);
  assert_int_equal(m, 1439);

  static const char *const bad[] = {"24:00",  "7:5",    "07:5",   "7:05",   "23:60",   "",
                                    "12:345", " 12:34", "12:34 ", "12-34",  "ab:cd",   "1234",
                                    "-1:00",  "12:3a",  "99:99",  "12::34", "12:34:00"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    m = 777;
    if (rules_parse_hhmm(bad[i], &m) != NIRC_EINVAL) fail_msg("'%s' accepted as a time", bad[i]);
    assert_int_equal(m, 777); /* untouched on error */
  }
  assert_int_equal(rules_parse_hhmm(NULL, &m), NIRC_EINVAL);
}

static void test_parse_days(void **state) {
  (void)state;
  char err[256];
  static const struct {
    const char *text;
    uint8_t bits;
  } good[] = {
      {"daily", 0x7f},
      {"weekdays", 0x1f},
      {"weekends", 0x60},
      {"mon", 0x01},
      {"sun", 0x40},
      {"MON", 0x01},
      {"Wed", 0x04},
      {"mon-fri", 0x1f},
      {"Mon-Fri", 0x1f},
      {"fri-mon", 0x71},
      {"sun-mon", 0x41},
      {"sat-sun", 0x60},
      {"mon,wed,sat-sun", 0x65},
      {" tue , thu ", 0x0a},
      {"mon - wed", 0x07},
      {"mon,mon", 0x01},
      {"weekdays,sat", 0x3f},
      {"DAILY", 0x7f},
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    uint8_t d = 0;
    if (rules_parse_days(good[i].text, &d, err, sizeof err) != 0)
      fail_msg("'%s' refused: %s", good[i].text, err);
    if (d != good[i].bits) fail_msg("'%s' gave 0x%02x, want 0x%02x", good[i].text, d, good[i].bits);
  }

  uint8_t d = 0x55;
  assert_refused(rules_parse_days("", &d, err, sizeof err), NIRC_EINVAL, "no days");
  assert_refused(rules_parse_days(" ", &d, err, sizeof err), NIRC_EINVAL, "no days");
  assert_refused(rules_parse_days(NULL, &d, err, sizeof err), NIRC_EINVAL, "no days");
  assert_refused(rules_parse_days("funday", &d, err, sizeof err), NIRC_EINVAL,
                 "'funday' is not a day");
  assert_refused(rules_parse_days("monday", &d, err, sizeof err), NIRC_EINVAL, "'monday'");
  assert_refused(rules_parse_days("mon,,tue", &d, err, sizeof err), NIRC_EINVAL, "empty item");
  assert_refused(rules_parse_days("mon,", &d, err, sizeof err), NIRC_EINVAL, "empty item");
  assert_refused(rules_parse_days("mon-", &d, err, sizeof err), NIRC_EINVAL, "'mon-'");
  assert_refused(rules_parse_days("-fri", &d, err, sizeof err), NIRC_EINVAL, "'-fri'");
  assert_refused(rules_parse_days("mon-xyz", &d, err, sizeof err), NIRC_EINVAL, "'mon-xyz'");
  assert_refused(rules_parse_days("mon-tue-wed", &d, err, sizeof err), NIRC_EINVAL, "not a day");
  assert_refused(rules_parse_days("mon;tue", &d, err, sizeof err), NIRC_EINVAL, "not a day");
  assert_refused(rules_parse_days("weekday", &d, err, sizeof err), NIRC_EINVAL, "not a day");
  assert_int_equal(d, 0x55); /* untouched on error */
}

static void test_parse_date(void **state) {
  (void)state;
  int32_t v = 0;
  assert_int_equal(rules_parse_date("2020-01-24", &v), 0);
  assert_int_equal(v, 20200124);
  assert_int_equal(rules_parse_date("2024-02-29", &v), 0); /* leap year */
  assert_int_equal(v, 20240229);
  assert_int_equal(rules_parse_date("2000-02-29", &v), 0); /* divisible by 400 */
  assert_int_equal(rules_parse_date("2020-12-31", &v), 0);
  assert_int_equal(v, 20201231);
  assert_int_equal(rules_parse_date("1970-01-01", &v), 0);

  static const char *const bad[] = {
      "2023-02-29", "2100-02-29", "2020-02-30", "2020-04-31", "2020-13-01",  "2020-00-10",
      "2020-01-00", "2020-01-32", "2020-1-24",  "20200124",   "2020/01/24",  "2020-01-24x",
      "",           "1969-12-31", "0000-01-01", "2020-0a-01", " 2020-01-24", "2020-01-2",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    v = 7;
    if (rules_parse_date(bad[i], &v) != NIRC_EINVAL) fail_msg("'%s' accepted as a date", bad[i]);
    assert_int_equal(v, 7);
  }
  assert_int_equal(rules_parse_date(NULL, &v), NIRC_EINVAL);
}

/* ---- validators ------------------------------------------------------- */

static void test_validate_cutover(void **state) {
  (void)state;
  char err[256];
  int64_t now = cst(2020, 1, 23, 11, 30);
  cutover_t c;

  good_cutover(&c);
  assert_accepted(rules_validate_cutover(&c, &stub_env, now, err, sizeof err));
  c.expires_ms = now + 1; /* a future expiry is fine */
  assert_accepted(rules_validate_cutover(&c, &stub_env, now, err, sizeof err));

  good_cutover(&c);
  list(&c.hubs, "shaanxi,atlantis");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EUNKNOWN_SITE,
                 "unknown site 'atlantis'");

  good_cutover(&c);
  list(&c.sources, "hubei,atlantis");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EUNKNOWN_SITE,
                 "unknown site 'atlantis'");

  good_cutover(&c);
  list(&c.hubs, "henan");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "henan is not a hub");

  good_cutover(&c);
  list(&c.hubs, "shaanxi,hubei");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "hubei is listed as its own hub");

  /* A hub site moved onto itself is the same mistake. */
  good_cutover(&c);
  list(&c.sources, "shaanxi");
  list(&c.hubs, "shaanxi");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "shaanxi is listed as its own hub");

  good_cutover(&c);
  c.expires_ms = now - 3600 * 1000;
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "expiry is in the past (3600 s ago)");
  c.expires_ms = now; /* expiring right now is already too late */
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "in the past");

  good_cutover(&c);
  c.reason[0] = '\0';
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "reason is required");
  snprintf(c.reason, sizeof c.reason, "   ");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "reason is required");
  snprintf(c.reason, sizeof c.reason, "lockdown\nrm -rf");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "the reason contains a control character (U+000A at byte 9); remove it");
  snprintf(c.reason, sizeof c.reason, "lockdown\x1b[31m");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "control character (U+001B at byte 9)");
  /* C1 and bidirectional controls too: a CSI, a right-to-left override. */
  snprintf(c.reason, sizeof c.reason,
           "peak \xc2\x9b"
           "31m");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "control character (U+009B at byte 6)");
  snprintf(c.reason, sizeof c.reason, "peak\xe2\x80\xae");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "the reason contains a control character (U+202E at byte 5); remove it");
  snprintf(c.reason, sizeof c.reason, "武汉封城 — Wuhan lockdown");
  assert_accepted(rules_validate_cutover(&c, &stub_env, now, err, sizeof err));
  memset(c.reason, 'x', sizeof c.reason); /* no terminator within 256 bytes */
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "longer than 255 bytes");
  memset(c.reason, 'x', sizeof c.reason - 1);
  c.reason[sizeof c.reason - 1] = '\0'; /* exactly 255 bytes is fine */
  assert_accepted(rules_validate_cutover(&c, &stub_env, now, err, sizeof err));

  good_cutover(&c);
  c.sources.n = 0;
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "no sources");
  good_cutover(&c);
  c.hubs.n = 0;
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "no hubs");

  /* Lists built without the parser still get checked for duplicates. */
  good_cutover(&c);
  snprintf(c.hubs.v[1], sizeof c.hubs.v[1], "shaanxi");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "shaanxi is listed twice as a hub");
  good_cutover(&c);
  c.sources.n = 2;
  snprintf(c.sources.v[1], sizeof c.sources.v[1], "hubei");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "hubei is listed twice as a source");
  good_cutover(&c);
  snprintf(c.sources.v[0], sizeof c.sources.v[0], "Hubei");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "not a valid site name");

  good_cutover(&c);
  assert_refused(rules_validate_cutover(&c, NULL, now, err, sizeof err), NIRC_EINVAL,
                 "no site table");
}

/* Regressions (fuzz_operator): values an operator's request can carry that
 * the checks once let through or overflowed on. */
static void test_cutover_hostile_values(void **state) {
  (void)state;
  char err[256];
  int64_t now = cst(2020, 1, 23, 11, 30);
  cutover_t c;

  /* A reason typed in a GBK terminal: the audit trail, the cutovers table
   * and every directive need UTF-8. */
  good_cutover(&c);
  snprintf(c.reason, sizeof c.reason, "\xce\xe4\xba\xba lockdown");
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "a byte that is not UTF-8 (0xCE at byte 1)");

  /* Expiries at either end of 64 bits: refused, without overflow. */
  good_cutover(&c);
  c.expires_ms = INT64_MIN + 1;
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "in the past");
  c.expires_ms = INT64_MAX;
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "after the year 9999");
  c.expires_ms = 253402300799999LL; /* 9999-12-31T23:59:59.999Z is still a date */
  assert_accepted(rules_validate_cutover(&c, &stub_env, now, err, sizeof err));

  /* --for past the end of time saturates instead of overflowing. */
  char *srcs[] = {"hubei"}, *hubs[] = {"shaanxi"};
  Nirc__CutoverRequest req = NIRC__CUTOVER_REQUEST__INIT;
  req.sources = srcs;
  req.n_sources = 1;
  req.hubs = hubs;
  req.n_hubs = 1;
  req.reason = "drill";
  req.expires_in_ms = INT64_MAX;
  assert_accepted(engine_cutover_from_request(&req, "operator:alice", now, &c, err, sizeof err));
  assert_true(c.expires_ms == INT64_MAX);
  assert_refused(rules_validate_cutover(&c, &stub_env, now, err, sizeof err), NIRC_EINVAL,
                 "after the year 9999");
  req.expires_in_ms = 72LL * HOUR_MS;
  assert_accepted(engine_cutover_from_request(&req, "operator:alice", now, &c, err, sizeof err));
  assert_true(c.expires_ms == now + 72LL * HOUR_MS);
  assert_string_equal(c.operator_name, "operator:alice");
  assert_accepted(rules_validate_cutover(&c, &stub_env, now, err, sizeof err));
}

static void test_validate_schedule(void **state) {
  (void)state;
  char err[256];
  schedule_t s;

  schedule(&s, "night", "hubei,guizhou", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  assert_accepted(rules_validate_schedule(&s, &stub_env, err, sizeof err));
  s.wave_size = 0; /* means the default of 5 */
  assert_accepted(rules_validate_schedule(&s, &stub_env, err, sizeof err));
  s.wave_size = 100;
  assert_accepted(rules_validate_schedule(&s, &stub_env, err, sizeof err));
  s.wave_size = 101;
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "wave size 101");

  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "Mars/Olympus");
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "unknown time zone 'Mars/Olympus'");
  snprintf(s.tz, sizeof s.tz, "../etc/passwd");
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "unknown time zone '../etc/passwd'");
  snprintf(s.tz, sizeof s.tz, "%s", "");
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "unknown time zone");
  /* A control character is named, never quoted back. */
  snprintf(s.tz, sizeof s.tz, "Asia/\x1b[2JShanghai");
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "the time zone contains a control character (U+001B at byte 6); remove it");
  assert_null(strchr(err, 0x1b));
  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  snprintf(s.name, sizeof s.name, "night\xe2\x80\xae");
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "the schedule name contains a control character (U+202E at byte 6); remove it");
  snprintf(s.name, sizeof s.name, "night\n");
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "(U+000A at byte 6)");
  assert_null(strchr(err, '\n'));

  /* "24:00" and "7:5" never get past the parser... */
  int m = 0;
  assert_int_equal(rules_parse_hhmm("24:00", &m), NIRC_EINVAL);
  assert_int_equal(rules_parse_hhmm("7:5", &m), NIRC_EINVAL);
  /* ...and a stored rule with out-of-range minutes is refused as well. */
  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  s.start_min = 1440;
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "start time (1440 minutes) is outside 00:00-23:59");
  s.start_min = 1320;
  s.end_min = -1;
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL, "end time");

  schedule(&s, "night", "hubei", "22:00", "22:00", 0x7f, "Asia/Shanghai");
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "start and end are both 22:00");

  schedule(&s, "night", "hubei", "22:00", "08:00", 0, "Asia/Shanghai");
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "no days selected");
  s.days = 0x80;
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL, "days");

  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  s.n_exceptions = 2;
  s.exceptions[0] = 20200124;
  s.exceptions[1] = 20230229;
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "exception 20230229 is not a real date");
  s.exceptions[1] = 20240229;
  assert_accepted(rules_validate_schedule(&s, &stub_env, err, sizeof err));
  s.n_exceptions = RULES_MAX_EXCEPTIONS + 1;
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "too many exception dates");

  schedule(&s, "", "hubei", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "name is empty");
  schedule(&s, "Night!", "hubei", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "name 'Night!'");
  schedule(&s, "night shift_2-b", "hubei", "22:00", "08:00", 0x7f, "UTC");
  assert_accepted(rules_validate_schedule(&s, &stub_env, err, sizeof err));

  /* The site checks are shared with cutovers. */
  schedule(&s, "night", "hubei,atlantis", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EUNKNOWN_SITE,
                 "unknown site 'atlantis'");
  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  list(&s.hubs, "henan");
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "henan is not a hub");
  list(&s.hubs, "hubei");
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "hubei is listed as its own hub");
  s.hubs.n = 0;
  assert_refused(rules_validate_schedule(&s, &stub_env, err, sizeof err), NIRC_EINVAL, "no hubs");
}

static void test_validate_overflow(void **state) {
  (void)state;
  char err[256];
  overflow_rule_t o;

  good_overflow(&o);
  assert_accepted(rules_validate_overflow(&o, &stub_env, err, sizeof err));
  snprintf(o.name, sizeof o.name,
           "gd\xc2\x9b"
           "2J");
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "the overflow name contains a control character (U+009B at byte 3); remove it");
  good_overflow(&o);
  /* One trigger alone is enough. */
  o.trigger_queue = o.release_queue = 0;
  o.trigger_sl = o.release_sl = 0;
  assert_accepted(rules_validate_overflow(&o, &stub_env, err, sizeof err));

  good_overflow(&o);
  o.trigger_wait_s = o.release_wait_s = 0;
  o.trigger_queue = o.release_queue = 0;
  o.trigger_sl = o.release_sl = 0;
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "no trigger set");

  good_overflow(&o);
  o.release_wait_s = 60;
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "release wait (60 s) must be below the trigger wait (60 s)");
  good_overflow(&o);
  o.release_wait_s = 0;
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "trigger wait (60 s) has no release threshold");
  good_overflow(&o);
  o.release_queue = 31;
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "release queue (31 calls) must be below");
  good_overflow(&o);
  o.trigger_queue = 0;
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "release queue is set but no trigger queue");
  good_overflow(&o);
  o.release_sl = 0.6;
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "release service level (0.6) must be above the trigger service level (0.6)");
  good_overflow(&o);
  o.release_sl = 0.5;
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "must be above");
  good_overflow(&o);
  o.release_sl = 1.2;
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "release service level 1.2 is not in (0, 1]");
  good_overflow(&o);
  o.trigger_sl = -0.1;
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "trigger service level -0.1 is not in (0, 1]");
  good_overflow(&o);
  o.release_sl = 0; /* a used SL trigger with no release */
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "release service level 0 is not in (0, 1]");
  good_overflow(&o);
  o.trigger_sl = 0; /* a release with no trigger */
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "no trigger service level");
  good_overflow(&o);
  o.trigger_sl = 0.9;
  o.release_sl = 1.0; /* 100% is a valid release level */
  assert_accepted(rules_validate_overflow(&o, &stub_env, err, sizeof err));

  good_overflow(&o);
  o.share_cap_permille = 0;
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "share cap 0 is out of range");
  o.share_cap_permille = 1001;
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "share cap 1001 is out of range");
  o.share_cap_permille = 1;
  assert_accepted(rules_validate_overflow(&o, &stub_env, err, sizeof err));
  o.share_cap_permille = 1000;
  assert_accepted(rules_validate_overflow(&o, &stub_env, err, sizeof err));

  good_overflow(&o);
  o.min_hold_s = 86400;
  assert_accepted(rules_validate_overflow(&o, &stub_env, err, sizeof err));
  o.min_hold_s = 86401;
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "minimum hold 86401 s");

  good_overflow(&o);
  list(&o.hubs, "sichuan,hubei");
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "hubei is listed as its own hub");
  good_overflow(&o);
  snprintf(o.source, sizeof o.source, "atlantis");
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EUNKNOWN_SITE,
                 "unknown site 'atlantis'");
  good_overflow(&o);
  list(&o.hubs, "guizhou");
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "guizhou is not a hub");
  good_overflow(&o);
  o.hubs.n = 0;
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL, "no hubs");
  good_overflow(&o);
  o.name[0] = '\0';
  assert_refused(rules_validate_overflow(&o, &stub_env, err, sizeof err), NIRC_EINVAL,
                 "name is empty");
}

/* ---- conflicts -------------------------------------------------------- */

static void test_schedule_conflicts(void **state) {
  (void)state;
  char why[512];
  schedule_t a, b;

  /* Same windows, a shared source: conflict, and the reason names it. */
  schedule(&a, "night", "hubei,guizhou", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  schedule(&b, "night-2", "henan,guizhou", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  why[0] = '\0';
  assert_true(rules_schedules_conflict(&a, &b, why, sizeof why));
  assert_non_null(strstr(why, "guizhou"));
  assert_non_null(strstr(why, "'night'"));
  assert_non_null(strstr(why, "'night-2'"));

  /* Same windows, disjoint sources: no conflict. */
  list(&b.sources, "henan");
  assert_false(rules_schedules_conflict(&a, &b, why, sizeof why));

  /* Mon 22:00-08:00 runs into Tuesday morning. */
  schedule(&a, "night", "hubei", "22:00", "08:00", 0x01, "Asia/Shanghai");
  schedule(&b, "maint", "hubei", "09:00", "10:00", 0x02, "Asia/Shanghai");
  assert_false(rules_schedules_conflict(&a, &b, why, sizeof why));
  assert_false(rules_schedules_conflict(&b, &a, why, sizeof why));
  schedule(&b, "maint", "hubei", "07:00", "09:00", 0x02, "Asia/Shanghai");
  why[0] = '\0';
  assert_true(rules_schedules_conflict(&a, &b, why, sizeof why));
  assert_non_null(strstr(why, "overlap from tue 07:00 to tue 08:00"));
  assert_true(rules_schedules_conflict(&b, &a, why, sizeof why));
  /* Touching is not overlapping: 08:00 is when the night window ends. */
  schedule(&b, "maint", "hubei", "08:00", "09:00", 0x02, "Asia/Shanghai");
  assert_false(rules_schedules_conflict(&a, &b, why, sizeof why));

  /* Sunday night crosses the end of the week into Monday morning. */
  schedule(&a, "night", "hubei", "22:00", "08:00", 0x40, "Asia/Shanghai");
  schedule(&b, "maint", "hubei", "06:00", "07:00", 0x01, "Asia/Shanghai");
  why[0] = '\0';
  assert_true(rules_schedules_conflict(&a, &b, why, sizeof why));
  assert_non_null(strstr(why, "mon 06:00 to mon 07:00"));
  assert_true(rules_schedules_conflict(&b, &a, why, sizeof why));
  b.days = 0x02; /* Tuesday 06:00 is clear of it */
  assert_false(rules_schedules_conflict(&a, &b, why, sizeof why));

  /* Same days, disjoint hours. */
  schedule(&a, "night", "hubei", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  schedule(&b, "lunch", "hubei", "12:00", "13:00", 0x7f, "Asia/Shanghai");
  assert_false(rules_schedules_conflict(&a, &b, why, sizeof why));

  /* A disabled schedule cannot be in force, so it conflicts with nothing. */
  schedule(&b, "night-2", "hubei", "23:00", "01:00", 0x7f, "Asia/Shanghai");
  assert_true(rules_schedules_conflict(&a, &b, why, sizeof why));
  b.enabled = false;
  assert_false(rules_schedules_conflict(&a, &b, why, sizeof why));

  /* Different zones cannot be compared on the weekly clock: refused. */
  schedule(&b, "lunch", "hubei", "12:00", "13:00", 0x7f, "UTC");
  why[0] = '\0';
  assert_true(rules_schedules_conflict(&a, &b, why, sizeof why));
  assert_non_null(strstr(why, "different time zones"));

  /* A rule compared with itself (an edit) is not a conflict. */
  schedule(&b, "night", "hubei", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  a.id = b.id = 7;
  assert_false(rules_schedules_conflict(&a, &b, why, sizeof why));
  b.id = 8;
  assert_true(rules_schedules_conflict(&a, &b, NULL, 0));
}

static void test_overflow_conflicts(void **state) {
  (void)state;
  char why[256];
  overflow_rule_t a, b;
  good_overflow(&a);
  good_overflow(&b);
  snprintf(b.name, sizeof b.name, "hubei-peak-2");
  list(&b.hubs, "sichuan");
  why[0] = '\0';
  assert_true(rules_overflows_conflict(&a, &b, why, sizeof why));
  assert_non_null(strstr(why, "both watch hubei"));
  snprintf(b.source, sizeof b.source, "henan");
  assert_false(rules_overflows_conflict(&a, &b, why, sizeof why));
  snprintf(b.source, sizeof b.source, "hubei");
  b.enabled = false;
  assert_false(rules_overflows_conflict(&a, &b, why, sizeof why));
}

/* ---- schedule calendar ------------------------------------------------ */

static void assert_window(const schedule_t *s, int64_t now, int64_t want_start, int64_t want_end) {
  int64_t start = 0, end = 0;
  if (!rules_schedule_window(s, now, &start, &end))
    fail_msg("'%s' not in force at %lld", s->name, (long long)now);
  assert_int_equal(start, want_start);
  assert_int_equal(end, want_end);
}

static void assert_no_window(const schedule_t *s, int64_t now) {
  int64_t start = 0, end = 0;
  if (rules_schedule_window(s, now, &start, &end))
    fail_msg("'%s' in force at %lld (window %lld-%lld)", s->name, (long long)now, (long long)start,
             (long long)end);
}

static void test_night_window_shanghai(void **state) {
  (void)state;
  schedule_t s;
  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  int64_t start = cst(2020, 1, 23, 22, 0), end = cst(2020, 1, 24, 8, 0);
  assert_window(&s, cst(2020, 1, 23, 23, 30), start, end);
  assert_window(&s, cst(2020, 1, 24, 7, 59), start, end);
  assert_window(&s, start, start, end); /* the start itself is inside */
  assert_window(&s, end - 1, start, end);
  assert_no_window(&s, end); /* the end is not */
  assert_no_window(&s, cst(2020, 1, 24, 21, 59));
  assert_no_window(&s, cst(2020, 1, 23, 21, 59));
  assert_window(&s, cst(2020, 1, 24, 22, 0), cst(2020, 1, 24, 22, 0), cst(2020, 1, 25, 8, 0));
  /* A NULL out-pointer is allowed. */
  assert_true(rules_schedule_window(&s, cst(2020, 1, 24, 3, 0), NULL, NULL));

  /* A day window that does not cross midnight. */
  schedule(&s, "day", "hubei", "08:00", "22:00", 0x7f, "Asia/Shanghai");
  assert_window(&s, cst(2020, 1, 24, 12, 0), cst(2020, 1, 24, 8, 0), cst(2020, 1, 24, 22, 0));
  assert_no_window(&s, cst(2020, 1, 24, 22, 0));
  assert_no_window(&s, cst(2020, 1, 24, 7, 59));
}

static void test_window_across_dst(void **state) {
  (void)state;
  schedule_t s;
  /* Paris springs forward at 02:00 on 2026-03-29 and falls back at 03:00
   * on 2026-10-25: those nights are 9 and 11 hours long, others 10. */
  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "Europe/Paris");
  int64_t start = 0, end = 0;
  assert_true(rules_schedule_window(&s, utc(2026, 3, 28, 23, 0), &start, &end));
  assert_int_equal(start, utc(2026, 3, 28, 21, 0)); /* 22:00 CET */
  assert_int_equal(end, utc(2026, 3, 29, 6, 0));    /* 08:00 CEST */
  assert_int_equal(end - start, 9 * HOUR_MS);
  assert_no_window(&s, utc(2026, 3, 29, 6, 0));

  assert_true(rules_schedule_window(&s, utc(2026, 10, 25, 3, 0), &start, &end));
  assert_int_equal(start, utc(2026, 10, 24, 20, 0)); /* 22:00 CEST */
  assert_int_equal(end, utc(2026, 10, 25, 7, 0));    /* 08:00 CET */
  assert_int_equal(end - start, 11 * HOUR_MS);
  /* 06:30 UTC is 07:30 CET, still inside; a fixed +2 would say 08:30. */
  assert_true(rules_schedule_window(&s, utc(2026, 10, 25, 6, 30), NULL, NULL));

  assert_true(rules_schedule_window(&s, utc(2026, 3, 26, 0, 0), &start, &end));
  assert_int_equal(end - start, 10 * HOUR_MS);

  /* New York, the same the American way (2026-03-08 and 2026-11-01). */
  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "America/New_York");
  assert_true(rules_schedule_window(&s, utc(2026, 3, 8, 8, 0), &start, &end));
  assert_int_equal(start, utc(2026, 3, 8, 3, 0)); /* 22:00 EST on the 7th */
  assert_int_equal(end, utc(2026, 3, 8, 12, 0));  /* 08:00 EDT */
  assert_int_equal(end - start, 9 * HOUR_MS);
  assert_true(rules_schedule_window(&s, utc(2026, 11, 1, 8, 0), &start, &end));
  assert_int_equal(end - start, 11 * HOUR_MS);

  /* A window that starts in the skipped hour begins when the clocks jump. */
  schedule(&s, "maint", "hubei", "02:30", "04:00", 0x7f, "Europe/Paris");
  assert_true(rules_schedule_window(&s, utc(2026, 3, 29, 1, 30), &start, &end));
  assert_int_equal(start, utc(2026, 3, 29, 1, 0)); /* 03:00 CEST */
  assert_int_equal(end, utc(2026, 3, 29, 2, 0));   /* 04:00 CEST */
  assert_no_window(&s, utc(2026, 3, 29, 0, 59));
  /* In the repeated hour it begins at the first 02:30 and ends at 04:00 CET. */
  assert_true(rules_schedule_window(&s, utc(2026, 10, 25, 1, 0), &start, &end));
  assert_int_equal(start, utc(2026, 10, 25, 0, 30));
  assert_int_equal(end, utc(2026, 10, 25, 3, 0));
}

/* A window wholly in the hour the clocks skip (Berlin, 2026-03-29
 * 02:00 -> 03:00): its start and end are one instant, so that day has no
 * window at all: not in force, not a next start, and the next window says
 * why in words, not as an exception that does not exist. */
static void test_window_in_dst_gap(void **state) {
  (void)state;
  schedule_t s;
  schedule(&s, "gapwin", "hubei", "02:10", "02:50", 0x7f, "Europe/Berlin");
  for (int m = -60; m <= 120; m += 10)
    assert_no_window(&s, utc(2026, 3, 29, 1, 0) + m * 60000LL);
  assert_int_equal(rules_schedule_next_start(&s, utc(2026, 3, 28, 12, 0)),
                   utc(2026, 3, 30, 0, 10)); /* 02:10 CEST the day after */
  rules_window_t w;
  char why[RULES_REASON_MAX];
  assert_true(rules_schedule_next_window(&s, utc(2026, 3, 28, 12, 0), &w));
  assert_int_equal(w.fate, RULES_WINDOW_NO_TIME);
  assert_int_equal(w.start_ms, utc(2026, 3, 29, 1, 0)); /* where it would be: 03:00 CEST */
  rules_window_reason(&s, &w, why, sizeof why);
  assert_string_equal(why,
                      "02:10-02:50 does not exist on 2026-03-29 in Europe/Berlin (DST change)");
  /* An exception on that date is the reason given: it matches. */
  s.n_exceptions = 1;
  s.exceptions[0] = 20260329;
  assert_true(rules_schedule_next_window(&s, utc(2026, 3, 28, 12, 0), &w));
  rules_window_reason(&s, &w, why, sizeof why);
  assert_string_equal(why, "exception 2026-03-29");
  assert_true(rules_schedule_next_window(&s, w.start_ms, &w));
  assert_int_equal(w.fate, RULES_WINDOW_RUNS);
  assert_int_equal(w.end_ms - w.start_ms, 40 * 60000);
}

static void test_exception_dates(void **state) {
  (void)state;
  schedule_t s;
  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  s.n_exceptions = 1;
  s.exceptions[0] = 20200124;
  /* The window that started the evening before runs to its end... */
  assert_window(&s, cst(2020, 1, 24, 7, 0), cst(2020, 1, 23, 22, 0), cst(2020, 1, 24, 8, 0));
  /* ...the one of the exception date never starts... */
  assert_no_window(&s, cst(2020, 1, 24, 22, 0));
  assert_no_window(&s, cst(2020, 1, 24, 23, 30));
  assert_no_window(&s, cst(2020, 1, 25, 7, 0));
  /* ...and the next evening is back to normal. */
  assert_window(&s, cst(2020, 1, 25, 23, 0), cst(2020, 1, 25, 22, 0), cst(2020, 1, 26, 8, 0));
  assert_int_equal(rules_schedule_next_start(&s, cst(2020, 1, 24, 9, 0)), cst(2020, 1, 25, 22, 0));
}

static void test_weekday_schedule(void **state) {
  (void)state;
  schedule_t s;
  char err[256];
  uint8_t days = 0;
  assert_int_equal(rules_parse_days("mon-fri", &days, err, sizeof err), 0);
  /* 2020-01-24 was a Friday. */
  schedule(&s, "night", "hubei", "22:00", "08:00", days, "Asia/Shanghai");
  assert_window(&s, cst(2020, 1, 25, 7, 0), cst(2020, 1, 24, 22, 0), cst(2020, 1, 25, 8, 0));
  assert_no_window(&s, cst(2020, 1, 25, 8, 0));
  assert_no_window(&s, cst(2020, 1, 25, 22, 0)); /* Saturday evening */
  assert_no_window(&s, cst(2020, 1, 26, 23, 0)); /* Sunday evening */
  assert_no_window(&s, cst(2020, 1, 27, 7, 0));  /* Monday morning: Sunday never started */
  assert_window(&s, cst(2020, 1, 27, 23, 0), cst(2020, 1, 27, 22, 0), cst(2020, 1, 28, 8, 0));
  assert_int_equal(rules_schedule_next_start(&s, cst(2020, 1, 25, 9, 0)), cst(2020, 1, 27, 22, 0));

  /* Weekends only, a day window. */
  schedule(&s, "weekend", "hubei", "09:00", "17:00", 0x60, "Asia/Shanghai");
  assert_window(&s, cst(2020, 1, 26, 10, 0), cst(2020, 1, 26, 9, 0), cst(2020, 1, 26, 17, 0));
  assert_no_window(&s, cst(2020, 1, 24, 10, 0));
}

static void test_disabled_and_invalid_schedules(void **state) {
  (void)state;
  schedule_t s;
  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  s.enabled = false;
  for (int h = 0; h < 48; h++)
    assert_no_window(&s, cst(2020, 1, 23, 0, 0) + h * HOUR_MS);
  assert_int_equal(rules_schedule_next_start(&s, cst(2020, 1, 23, 12, 0)), 0);

  /* Rules that would not validate are never in force either. */
  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "Mars/Olympus");
  assert_no_window(&s, cst(2020, 1, 23, 23, 0));
  assert_int_equal(rules_schedule_next_start(&s, cst(2020, 1, 23, 12, 0)), 0);
  schedule(&s, "night", "hubei", "22:00", "08:00", 0, "Asia/Shanghai");
  assert_no_window(&s, cst(2020, 1, 23, 23, 0));
  assert_int_equal(rules_schedule_next_start(&s, cst(2020, 1, 23, 12, 0)), 0);
  assert_false(rules_schedule_window(NULL, 0, NULL, NULL));
}

static void test_next_start(void **state) {
  (void)state;
  schedule_t s;
  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "Asia/Shanghai");
  assert_int_equal(rules_schedule_next_start(&s, cst(2020, 1, 23, 12, 0)), cst(2020, 1, 23, 22, 0));
  /* Strictly after: at the start itself, the next one is tomorrow's. */
  assert_int_equal(rules_schedule_next_start(&s, cst(2020, 1, 23, 22, 0)), cst(2020, 1, 24, 22, 0));
  assert_int_equal(rules_schedule_next_start(&s, cst(2020, 1, 23, 22, 0) - 1),
                   cst(2020, 1, 23, 22, 0));
  assert_int_equal(rules_schedule_next_start(&s, cst(2020, 1, 23, 23, 30)),
                   cst(2020, 1, 24, 22, 0));

  /* Sundays only, asked on a Monday: six days ahead. */
  schedule(&s, "sunday", "hubei", "06:00", "07:00", 0x40, "Asia/Shanghai");
  assert_int_equal(rules_schedule_next_start(&s, cst(2020, 1, 27, 12, 0)), cst(2020, 2, 2, 6, 0));

  /* Every Sunday but the next one is an exception: a week later. */
  s.n_exceptions = 1;
  s.exceptions[0] = 20200202;
  assert_int_equal(rules_schedule_next_start(&s, cst(2020, 1, 27, 12, 0)), cst(2020, 2, 9, 6, 0));

  /* Across the leap day and a DST change. */
  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "Europe/Paris");
  assert_int_equal(rules_schedule_next_start(&s, utc(2026, 3, 29, 12, 0)),
                   utc(2026, 3, 29, 20, 0)); /* 22:00 CEST */
  assert_int_equal(rules_schedule_next_start(&s, utc(2026, 3, 28, 12, 0)),
                   utc(2026, 3, 28, 21, 0)); /* 22:00 CET */
  schedule(&s, "leap", "hubei", "01:00", "02:00", 0x7f, "UTC");
  s.n_exceptions = 0;
  assert_int_equal(rules_schedule_next_start(&s, utc(2024, 2, 28, 12, 0)), utc(2024, 2, 29, 1, 0));
  assert_int_equal(rules_schedule_next_start(&s, utc(2024, 2, 29, 12, 0)), utc(2024, 3, 1, 1, 0));
}

static void test_names(void **state) {
  (void)state;
  assert_string_equal(rules_kind_name(RULE_NONE), "default");
  assert_string_equal(rules_kind_name(RULE_OVERFLOW), "overflow");
  assert_string_equal(rules_kind_name(RULE_SCHEDULE), "schedule");
  assert_string_equal(rules_kind_name(RULE_CUTOVER), "cutover");
  assert_string_equal(rules_kind_name((rule_kind_t)9), "?");
  assert_string_equal(rules_cutover_state_name(CUTOVER_ACTIVE), "active");
  assert_string_equal(rules_cutover_state_name(CUTOVER_RESTORED), "restored");
  assert_string_equal(rules_cutover_state_name(CUTOVER_EXPIRED), "expired");
  assert_string_equal(rules_cutover_state_name((cutover_state_t)-1), "?");
}

/* ---- tz ---------------------------------------------------------------- */

static tz_local_t local(int y, int mo, int d, int h, int mi, int s) {
  tz_local_t l = {.year = y, .month = mo, .day = d, .hour = h, .minute = mi, .second = s};
  return l;
}

static void test_tz_valid(void **state) {
  (void)state;
  assert_true(tz_valid("Asia/Shanghai"));
  assert_true(tz_valid("UTC"));
  assert_true(tz_valid("Europe/Paris"));
  assert_true(tz_valid("America/New_York"));
  assert_true(tz_valid("Etc/GMT+5"));
  assert_true(tz_valid("America/Port-au-Prince"));

  static const char *const bad[] = {
      "Mars/Olympus",
      "../etc/passwd",
      "/etc/localtime",
      "/usr/share/zoneinfo/UTC",
      "Asia/../Asia/Tokyo",
      "",
      "Asia",
      "Asia/",
      "zone.tab",
      "tzdata.zi",
      "Asia/Shanghai ",
      "asia/shanghai",
      "Asia\\Shanghai",
      "UTC;ls",
      /* In the zone directory, but not a place's civil zone. */
      "localtime",
      "posixrules",
      "Factory",
      "right/Asia/Shanghai",
      "posix/Asia/Shanghai",
      "Asia/Shang*",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (tz_valid(bad[i])) fail_msg("'%s' accepted as a time zone", bad[i]);
  assert_false(tz_valid(NULL));
  /* tzdata ships this text file beside the zones; its name is well-formed,
   * so only the "TZif" magic keeps it out. */
  assert_false(tz_valid("leapseconds"));
  /* 63 characters is the limit; the name need not exist to be too long. */
  char name[80];
  memset(name, 'A', sizeof name);
  name[64] = '\0';
  assert_false(tz_valid(name));

  tz_local_t l;
  int64_t ms;
  assert_int_equal(tz_to_local("Mars/Olympus", 0, &l), NIRC_EINVAL);
  assert_int_equal(tz_to_local("../etc/passwd", 0, &l), NIRC_EINVAL);
  l = local(2020, 1, 1, 0, 0, 0);
  assert_int_equal(tz_from_local("Mars/Olympus", &l, &ms), NIRC_EINVAL);
}

static void test_tz_to_local(void **state) {
  (void)state;
  tz_local_t l;
  /* 2020-01-23 11:30 in Wuhan, a Thursday. */
  assert_int_equal(tz_to_local("Asia/Shanghai", utc(2020, 1, 23, 3, 30) + 999, &l), 0);
  assert_int_equal(l.year, 2020);
  assert_int_equal(l.month, 1);
  assert_int_equal(l.day, 23);
  assert_int_equal(l.hour, 11);
  assert_int_equal(l.minute, 30);
  assert_int_equal(l.second, 0);
  assert_int_equal(l.wday, 3);
  /* Sunday is 6. */
  assert_int_equal(tz_to_local("UTC", utc(2020, 1, 26, 12, 0), &l), 0);
  assert_int_equal(l.wday, 6);
  /* Milliseconds before 1970 round down, not towards zero. */
  assert_int_equal(tz_to_local("UTC", -1, &l), 0);
  assert_int_equal(l.year, 1969);
  assert_int_equal(l.month, 12);
  assert_int_equal(l.day, 31);
  assert_int_equal(l.hour, 23);
  assert_int_equal(l.second, 59);
  /* Summer and winter in Paris. */
  assert_int_equal(tz_to_local("Europe/Paris", utc(2026, 7, 1, 12, 0), &l), 0);
  assert_int_equal(l.hour, 14);
  assert_int_equal(tz_to_local("Europe/Paris", utc(2026, 1, 1, 12, 0), &l), 0);
  assert_int_equal(l.hour, 13);
  assert_int_equal(tz_to_local("UTC", 0, NULL), NIRC_EINVAL);
}

static void test_tz_round_trip(void **state) {
  (void)state;
  static const char *const zones[] = {"Asia/Shanghai",    "UTC",
                                      "Europe/Paris",     "America/New_York",
                                      "Australia/Sydney", "Asia/Kolkata"};
  /* Every 37 minutes through 2026 (crossing every DST change): instant ->
   * local -> instant gives back the instant, except in the repeated hour
   * where it gives the first occurrence. */
  for (size_t z = 0; z < sizeof zones / sizeof zones[0]; z++) {
    for (int64_t t = utc(2026, 1, 1, 0, 0); t < utc(2027, 1, 1, 0, 0); t += 37 * MIN_MS) {
      tz_local_t l;
      int64_t back = 0;
      assert_int_equal(tz_to_local(zones[z], t, &l), 0);
      assert_int_equal(tz_from_local(zones[z], &l, &back), 0);
      if (back != t) {
        /* Only allowed for an ambiguous time, whose first occurrence is
         * earlier and shows the same wall clock. */
        tz_local_t l2;
        assert_int_equal(tz_to_local(zones[z], back, &l2), 0);
        if (!(back < t && l2.hour == l.hour && l2.minute == l.minute && l2.day == l.day))
          fail_msg("%s: %lld -> %04d-%02d-%02d %02d:%02d -> %lld", zones[z], (long long)t, l.year,
                   l.month, l.day, l.hour, l.minute, (long long)back);
      }
    }
  }
  int64_t ms = 0;
  tz_local_t l = local(2020, 1, 23, 11, 30, 15);
  assert_int_equal(tz_from_local("Asia/Shanghai", &l, &ms), 0);
  assert_int_equal(ms, utc(2020, 1, 23, 3, 30) + 15000);
}

static void test_tz_gap_and_overlap(void **state) {
  (void)state;
  int64_t ms = 0;
  /* 02:30 does not exist in Paris on 2026-03-29: the clocks jump from
   * 02:00 CET to 03:00 CEST at 01:00 UTC, the first valid instant after. */
  tz_local_t l = local(2026, 3, 29, 2, 30, 0);
  assert_int_equal(tz_from_local("Europe/Paris", &l, &ms), 0);
  assert_int_equal(ms, utc(2026, 3, 29, 1, 0));
  l = local(2026, 3, 29, 2, 0, 0);
  assert_int_equal(tz_from_local("Europe/Paris", &l, &ms), 0);
  assert_int_equal(ms, utc(2026, 3, 29, 1, 0));
  l = local(2026, 3, 29, 1, 59, 59);
  assert_int_equal(tz_from_local("Europe/Paris", &l, &ms), 0);
  assert_int_equal(ms, utc(2026, 3, 29, 1, 0) - 1000);
  l = local(2026, 3, 29, 3, 0, 0);
  assert_int_equal(tz_from_local("Europe/Paris", &l, &ms), 0);
  assert_int_equal(ms, utc(2026, 3, 29, 1, 0));

  /* 02:30 happens twice on 2026-10-25: first at 00:30 UTC (CEST). */
  l = local(2026, 10, 25, 2, 30, 0);
  assert_int_equal(tz_from_local("Europe/Paris", &l, &ms), 0);
  assert_int_equal(ms, utc(2026, 10, 25, 0, 30));
  /* The same answer however the C library was primed by earlier calls. */
  tz_local_t after;
  assert_int_equal(tz_to_local("Europe/Paris", utc(2026, 10, 25, 1, 45), &after), 0);
  assert_int_equal(after.hour, 2); /* 02:45 CET, the second pass */
  l = local(2026, 10, 25, 2, 30, 0);
  assert_int_equal(tz_from_local("Europe/Paris", &l, &ms), 0);
  assert_int_equal(ms, utc(2026, 10, 25, 0, 30));
  l = local(2026, 10, 25, 3, 0, 0); /* after the overlap: CET only */
  assert_int_equal(tz_from_local("Europe/Paris", &l, &ms), 0);
  assert_int_equal(ms, utc(2026, 10, 25, 2, 0));

  /* New York: 02:30 skipped on 2026-03-08, repeated on 2026-11-01. */
  l = local(2026, 3, 8, 2, 30, 0);
  assert_int_equal(tz_from_local("America/New_York", &l, &ms), 0);
  assert_int_equal(ms, utc(2026, 3, 8, 7, 0)); /* 03:00 EDT */
  l = local(2026, 11, 1, 1, 30, 0);
  assert_int_equal(tz_from_local("America/New_York", &l, &ms), 0);
  assert_int_equal(ms, utc(2026, 11, 1, 5, 30)); /* 01:30 EDT, not EST */

  /* Impossible fields are refused, not normalised. */
  static const tz_local_t bad[] = {
      {2026, 2, 29, 0, 0, 0, 0}, {2026, 13, 1, 0, 0, 0, 0}, {2026, 0, 1, 0, 0, 0, 0},
      {2026, 1, 0, 0, 0, 0, 0},  {2026, 1, 1, 24, 0, 0, 0}, {2026, 1, 1, 0, 60, 0, 0},
      {2026, 1, 1, 0, 0, 60, 0}, {2026, 1, 1, -1, 0, 0, 0}, {0, 1, 1, 0, 0, 0, 0},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(tz_from_local("UTC", &bad[i], &ms), NIRC_EINVAL);
  l = local(2024, 2, 29, 0, 0, 0);
  assert_int_equal(tz_from_local("UTC", &l, &ms), 0);
  assert_int_equal(ms, utc(2024, 2, 29, 0, 0));
}

static void test_tz_env_restored(void **state) {
  (void)state;
  tz_local_t l;
  int64_t ms;
  schedule_t s;
  schedule(&s, "night", "hubei", "22:00", "08:00", 0x7f, "Europe/Paris");

  assert_int_equal(setenv("TZ", "UTC", 1), 0);
  tzset();
  assert_int_equal(tz_to_local("Asia/Shanghai", 0, &l), 0);
  assert_string_equal(getenv("TZ"), "UTC");
  l = local(2026, 3, 29, 2, 30, 0);
  assert_int_equal(tz_from_local("Europe/Paris", &l, &ms), 0);
  assert_string_equal(getenv("TZ"), "UTC");
  (void)rules_schedule_window(&s, utc(2026, 3, 29, 3, 0), NULL, NULL);
  (void)rules_schedule_next_start(&s, utc(2026, 3, 29, 3, 0));
  assert_string_equal(getenv("TZ"), "UTC");
  assert_int_equal(tz_to_local("Mars/Olympus", 0, &l), NIRC_EINVAL);
  assert_string_equal(getenv("TZ"), "UTC");
  /* And the C library's own idea of local time is back to UTC. */
  time_t t = 0;
  struct tm tm;
  assert_non_null(localtime_r(&t, &tm));
  assert_int_equal(tm.tm_hour, 0);

  /* Another value comes back verbatim. */
  assert_int_equal(setenv("TZ", ":America/New_York", 1), 0);
  tzset();
  assert_int_equal(tz_to_local("Asia/Shanghai", 0, &l), 0);
  assert_string_equal(getenv("TZ"), ":America/New_York");
  assert_non_null(localtime_r(&t, &tm));
  assert_int_equal(tm.tm_hour, 19); /* 1969-12-31 19:00 EST */

  /* Unset stays unset. */
  assert_int_equal(unsetenv("TZ"), 0);
  tzset();
  assert_int_equal(tz_to_local("Asia/Shanghai", 0, &l), 0);
  assert_null(getenv("TZ"));
  l = local(2026, 10, 25, 2, 30, 0);
  assert_int_equal(tz_from_local("Europe/Paris", &l, &ms), 0);
  assert_null(getenv("TZ"));

  assert_int_equal(setenv("TZ", "UTC", 1), 0);
  tzset();
}

/* "--to shanxi" (a province, not a hub) names the hubs; "hubie" suggests
 * hubei: what the operator types next, at 3 a.m. (issue 12, point 7). */
static void test_refusals_name_the_alternatives(void **state) {
  (void)state;
  cutover_t c;
  char err[256];
  good_cutover(&c);
  list(&c.hubs, "guizhou");
  assert_int_equal(rules_validate_cutover(&c, &listing_env, 0, err, sizeof err), NIRC_EINVAL);
  assert_non_null(strstr(err, "guizhou is not a hub site"));
  assert_non_null(strstr(err, "the hubs are shaanxi, sichuan"));
  good_cutover(&c);
  list(&c.sources, "hubie");
  assert_int_equal(rules_validate_cutover(&c, &listing_env, 0, err, sizeof err),
                   NIRC_EUNKNOWN_SITE);
  assert_non_null(strstr(err, "unknown site 'hubie' (given as a source); did you mean hubei?"));
  /* Without the list: the old words, no invented alternative. */
  assert_int_equal(rules_validate_cutover(&c, &stub_env, 0, err, sizeof err), NIRC_EUNKNOWN_SITE);
  assert_non_null(strstr(err, "check the spelling"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_slug_list),
      cmocka_unit_test(test_parse_hhmm),
      cmocka_unit_test(test_parse_days),
      cmocka_unit_test(test_parse_date),
      cmocka_unit_test(test_validate_cutover),
      cmocka_unit_test(test_cutover_hostile_values),
      cmocka_unit_test(test_validate_schedule),
      cmocka_unit_test(test_validate_overflow),
      cmocka_unit_test(test_schedule_conflicts),
      cmocka_unit_test(test_overflow_conflicts),
      cmocka_unit_test(test_night_window_shanghai),
      cmocka_unit_test(test_window_across_dst),
      cmocka_unit_test(test_window_in_dst_gap),
      cmocka_unit_test(test_exception_dates),
      cmocka_unit_test(test_weekday_schedule),
      cmocka_unit_test(test_disabled_and_invalid_schedules),
      cmocka_unit_test(test_next_start),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_tz_valid),
      cmocka_unit_test(test_tz_to_local),
      cmocka_unit_test(test_tz_round_trip),
      cmocka_unit_test(test_tz_gap_and_overlap),
      cmocka_unit_test(test_tz_env_restored),
      cmocka_unit_test(test_refusals_name_the_alternatives),
  };
  return cmocka_run_group_tests(tests, 0, NULL);
}
