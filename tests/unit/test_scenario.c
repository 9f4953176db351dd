/* Unit tests for the scenario module.
 *
 * The first group checks that the shipped scenario/provinces.json loads and
 * still tells the story the product is built around (22 provinces whose
 * 210 night agents became 40 at the Xi'an hub). The second group writes
 * broken variants of a small valid file to temporary files and checks that
 * each is refused with a message naming the file, the line or the site.
 *
 * The repository root comes from NIRC_SOURCE_DIR, which CTest sets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "scenario.h"

/* ---- helpers ---------------------------------------------------------- */

static const char *const consolidated_required[] = {"hubei", "guizhou", "fujian", "shanxi",
                                                    "shanghai"};
static const char *const own_nights_required[] = {"guangdong", "jiangsu", "zhejiang", "shandong",
                                                  "beijing",   "sichuan", "henan",    "hebei"};

static void shipped_path(char *buf, size_t len) {
  const char *root = getenv("NIRC_SOURCE_DIR");
  if (!root || !*root)
    fail_msg("NIRC_SOURCE_DIR is not set; run the test with NIRC_SOURCE_DIR=<repository root>");
  int n = snprintf(buf, len, "%s/scenario/provinces.json", root);
  assert_true(n > 0 && (size_t)n < len);
}

static void load_shipped(scenario_t *sc) {
  char path[4096], err[512];
  shipped_path(path, sizeof path);
  int rc = scenario_load(path, sc, err, sizeof err);
  if (rc != 0) fail_msg("loading %s failed (%s): %s", path, nirc_errname(rc), err);
}

static bool is_day(int h) {
  return h >= 8 && h < 22;
}

static double period_sum(const scenario_t *sc, bool day) {
  double s = 0;
  for (int h = 0; h < 24; h++)
    if (is_day(h) == day) s += sc->hourly_weight[h];
  return s;
}

/* Offered load in Erlangs of one site in local hour h. */
static double site_erlangs(const scenario_t *sc, const scenario_site_t *s, int h) {
  return scenario_rate_per_s(sc, s, h + 0.5) * s->aht_s;
}

/* Share of calls answered within t seconds by n agents offered A Erlangs
 * with mean handle time aht (Erlang C). Erlang B is computed by its stable
 * recursion and converted, which avoids overflowing factorials. */
static double erlang_c_service_level(double A, unsigned n, double aht, double t) {
  if (A <= 0) return 1.0;
  if (A >= n) return 0.0;
  double b = 1.0;
  for (unsigned k = 1; k <= n; k++)
    b = A * b / (k + A * b);
  double pw = n * b / (n - A * (1.0 - b));
  return 1.0 - pw * exp(-(n - A) * t / aht);
}

/* The primary hub's night traffic plus that of every consolidated site:
 * what the hub's night shift answers after consolidation. */
static double hub_night_erlangs(const scenario_t *sc, int h) {
  double a = 0;
  for (size_t i = 0; i < sc->count; i++) {
    const scenario_site_t *s = &sc->sites[i];
    if (s->night_consolidated || strcmp(s->slug, sc->primary_hub) == 0) a += site_erlangs(sc, s, h);
  }
  return a;
}

/* ---- the shipped scenario --------------------------------------------- */

static void test_shipped_loads(void **state) {
  (void)state;
  scenario_t sc;
  load_shipped(&sc);
  assert_int_equal(sc.count, 31);
  assert_true(sc.name[0] != '\0');
  assert_string_equal(sc.primary_hub, "shaanxi");
  assert_string_equal(sc.backup_hub, "henan");
  assert_int_equal(sc.utc_offset_min, 480);
  assert_int_equal(sc.hub_night_agents, 40);
  assert_int_equal(sc.patience_s, 90);
  assert_int_equal(sc.sl_threshold_s, 20);
  for (size_t i = 0; i < sc.count; i++) {
    const scenario_site_t *s = &sc.sites[i];
    assert_true(s->name_en[0] && s->name_zh[0] && s->city_en[0]);
    /* Every centre lies inside China's bounding box. */
    assert_true(s->lat > 18.0 && s->lat < 54.0);
    assert_true(s->lon > 73.0 && s->lon < 135.0);
    assert_true(s->aht_s >= 180 && s->aht_s <= 300);
    assert_ptr_equal(scenario_find(&sc, s->slug), s);
  }
  const scenario_site_t *hubei = scenario_find(&sc, "hubei");
  assert_non_null(hubei);
  assert_string_equal(hubei->name_zh, "湖北");
  assert_string_equal(hubei->city_en, "Wuhan");
  const scenario_site_t *shaanxi = scenario_find(&sc, "shaanxi");
  assert_non_null(shaanxi);
  assert_string_equal(shaanxi->city_en, "Xi'an");
  assert_string_equal(shaanxi->name_zh, "陕西");
  assert_non_null(scenario_find(&sc, "shanxi"));
  assert_ptr_not_equal(scenario_find(&sc, "shanxi"), shaanxi);
  assert_null(scenario_find(&sc, "hongkong"));
  assert_null(scenario_find(&sc, "taiwan"));
  assert_null(scenario_find(&sc, "macau"));
  assert_null(scenario_find(&sc, NULL));
  scenario_free(&sc);
  assert_null(sc.sites);
  assert_int_equal(sc.count, 0);
}

static void test_shipped_hubs(void **state) {
  (void)state;
  scenario_t sc;
  load_shipped(&sc);
  const scenario_site_t *primary = scenario_find(&sc, sc.primary_hub);
  const scenario_site_t *backup = scenario_find(&sc, sc.backup_hub);
  assert_non_null(primary);
  assert_non_null(backup);
  assert_true(primary->is_hub);
  assert_true(backup->is_hub);
  assert_false(primary->night_consolidated);
  assert_false(backup->night_consolidated);
  for (size_t i = 0; i < sc.count; i++) {
    const scenario_site_t *s = &sc.sites[i];
    if (s->is_hub)
      assert_true(strcmp(s->slug, "shaanxi") == 0 || strcmp(s->slug, "henan") == 0 ||
                  strcmp(s->slug, "sichuan") == 0);
  }
  scenario_free(&sc);
}

static void test_shipped_night_consolidation(void **state) {
  (void)state;
  scenario_t sc;
  load_shipped(&sc);
  unsigned consolidated = 0, night_agents = 0;
  for (size_t i = 0; i < sc.count; i++) {
    const scenario_site_t *s = &sc.sites[i];
    if (!s->night_consolidated) continue;
    consolidated++;
    night_agents += s->agents_night;
    /* Each small site could still staff a night on its own. */
    assert_true(s->agents_night >= 4);
    /* Nights are sparse: dozens of calls, a few hundred at most. */
    assert_true(s->night_calls > 0 && s->night_calls < 300);
  }
  assert_int_equal(consolidated, 22);
  assert_int_equal(night_agents, 210);
  for (size_t i = 0; i < sizeof consolidated_required / sizeof *consolidated_required; i++) {
    const scenario_site_t *s = scenario_find(&sc, consolidated_required[i]);
    assert_non_null(s);
    assert_true(s->night_consolidated);
  }
  for (size_t i = 0; i < sizeof own_nights_required / sizeof *own_nights_required; i++) {
    const scenario_site_t *s = scenario_find(&sc, own_nights_required[i]);
    assert_non_null(s);
    assert_false(s->night_consolidated);
  }
  const scenario_site_t *xizang = scenario_find(&sc, "xizang");
  assert_non_null(xizang);
  assert_true(xizang->night_calls >= 20 && xizang->night_calls <= 40);

  /* 22:00-23:00 is the busiest night hour at the hub, and the hub's 40
   * night agents serve it at 80% within 20 s: staffed to the load, not
   * padded (below 95%), so callers do queue at the hub once the provinces
   * are consolidated into it. */
  double a22 = hub_night_erlangs(&sc, 22);
  for (int h = 0; h < 24; h++)
    if (!is_day(h) && h != 22) assert_true(hub_night_erlangs(&sc, h) < a22);
  assert_true(a22 >= 30.0 && a22 <= 36.0);
  double calls = 0, weighted_aht = 0;
  for (size_t i = 0; i < sc.count; i++) {
    const scenario_site_t *s = &sc.sites[i];
    if (s->night_consolidated || s == scenario_find(&sc, sc.primary_hub)) {
      calls += s->night_calls;
      weighted_aht += s->night_calls * s->aht_s;
    }
  }
  double sl =
      erlang_c_service_level(a22, sc.hub_night_agents, weighted_aht / calls, sc.sl_threshold_s);
  assert_true(sl >= 0.80 && sl <= 0.95);
  scenario_free(&sc);
}

static void test_shipped_daytime(void **state) {
  (void)state;
  scenario_t sc;
  load_shipped(&sc);
  double day_calls = 0;
  unsigned agents_day = 0;
  int peak = 8;
  for (int h = 8; h < 22; h++)
    if (sc.hourly_weight[h] > sc.hourly_weight[peak]) peak = h;
  /* The peak falls in the late morning or the afternoon. */
  assert_true(peak >= 9 && peak <= 16);
  for (size_t i = 0; i < sc.count; i++) {
    const scenario_site_t *s = &sc.sites[i];
    day_calls += s->day_calls;
    agents_day += s->agents_day;
    /* Day staffing covers the site's own peak with room to spare. */
    double a = site_erlangs(&sc, s, peak);
    if (!(a < 0.9 * s->agents_day))
      fail_msg("site %s: peak load %.1f Erl against %u day agents", s->slug, a, s->agents_day);
    assert_true(erlang_c_service_level(a, s->agents_day, s->aht_s, sc.sl_threshold_s) >= 0.80);
  }
  assert_true(day_calls >= 120000 && day_calls <= 180000);
  assert_true(agents_day >= 1800 && agents_day <= 2200);
  /* The diurnal shape: quiet small hours, still busy late in the evening. */
  assert_true(sc.hourly_weight[3] < sc.hourly_weight[22]);
  assert_true(sc.hourly_weight[23] < sc.hourly_weight[22]);
  assert_true(sc.hourly_weight[3] < sc.hourly_weight[peak] / 10);
  scenario_free(&sc);
}

static void test_rate_integrates_to_daily_total(void **state) {
  (void)state;
  scenario_t sc;
  load_shipped(&sc);
  const int steps_per_hour = 60;
  for (size_t i = 0; i < sc.count; i++) {
    const scenario_site_t *s = &sc.sites[i];
    double calls = 0, day = 0;
    for (int k = 0; k < 24 * steps_per_hour; k++) {
      double h = (k + 0.5) / steps_per_hour;
      double c = scenario_rate_per_s(&sc, s, h) * 3600.0 / steps_per_hour;
      calls += c;
      if (h >= 8 && h < 22) day += c;
    }
    double want = s->day_calls + s->night_calls;
    if (fabs(calls - want) > 0.005 * want)
      fail_msg("site %s: rate integrates to %.1f calls, want %.1f", s->slug, calls, want);
    assert_true(fabs(day - s->day_calls) <= 0.005 * s->day_calls);
  }
  scenario_free(&sc);
}

static void test_rate_and_agents_by_hour(void **state) {
  (void)state;
  scenario_t sc;
  load_shipped(&sc);
  const scenario_site_t *s = scenario_find(&sc, "hubei");
  assert_non_null(s);
  double ds = period_sum(&sc, true), ns = period_sum(&sc, false);
  assert_true(ds > 0 && ns > 0);
  /* The rate is constant within an hour and follows that hour's weight. */
  double r10 = s->day_calls * sc.hourly_weight[10] / ds / 3600.0;
  assert_float_equal(scenario_rate_per_s(&sc, s, 10.0), r10, 1e-12);
  assert_float_equal(scenario_rate_per_s(&sc, s, 10.99), r10, 1e-12);
  double r23 = s->night_calls * sc.hourly_weight[23] / ns / 3600.0;
  assert_float_equal(scenario_rate_per_s(&sc, s, 23.5), r23, 1e-12);
  /* Hours outside [0, 24) wrap around the clock. */
  assert_float_equal(scenario_rate_per_s(&sc, s, 47.5), r23, 1e-12);
  assert_float_equal(scenario_rate_per_s(&sc, s, -0.5), r23, 1e-12);
  assert_float_equal(scenario_rate_per_s(NULL, s, 10.0), 0.0, 0.0);

  assert_int_equal(scenario_agents_at(s, 7.99), s->agents_night);
  assert_int_equal(scenario_agents_at(s, 8.0), s->agents_day);
  assert_int_equal(scenario_agents_at(s, 21.99), s->agents_day);
  assert_int_equal(scenario_agents_at(s, 22.0), s->agents_night);
  assert_int_equal(scenario_agents_at(s, 0.0), s->agents_night);
  assert_int_equal(scenario_agents_at(NULL, 12.0), 0);
  scenario_free(&sc);
}

/* ---- broken files ----------------------------------------------------- */

/* A small valid scenario. Line numbers matter: the malformed-JSON tests
 * break line 8 ("patience_s") and line 9 ("sl_threshold_s"). */
static const char base_json[] =
    "{\n"
    "  \"name\": \"test network\",\n"
    "  \"primary_hub\": \"alpha\",\n"
    "  \"backup_hub\": \"beta\",\n"
    "  \"utc_offset_min\": 480,\n"
    "  \"hourly_weight\": [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, "
    "1],\n"
    "  \"hub_night_agents\": 4,\n"
    "  \"patience_s\": 90,\n"
    "  \"sl_threshold_s\": 20,\n"
    "  \"sites\": [\n"
    "    {\"slug\": \"alpha\", \"name_en\": \"Alpha\", \"name_zh\": \"甲\", \"city_en\": \"A\", "
    "\"lat\": 34.3, "
    "\"lon\": 108.9, \"day_calls\": 1000, \"night_calls\": 50, \"aht_s\": 240, \"agents_day\": 20, "
    "\"agents_night\": 5, \"is_hub\": true, \"night_consolidated\": false},\n"
    "    {\"slug\": \"beta\", \"name_en\": \"Beta\", \"name_zh\": \"乙\", \"city_en\": \"B\", "
    "\"lat\": 34.7, "
    "\"lon\": 113.6, \"day_calls\": 900, \"night_calls\": 40, \"aht_s\": 230, \"agents_day\": 18, "
    "\"agents_night\": 5, \"is_hub\": true, \"night_consolidated\": false},\n"
    "    {\"slug\": \"gamma\", \"name_en\": \"Gamma\", \"name_zh\": \"丙\", \"city_en\": \"C\", "
    "\"lat\": 30.6, "
    "\"lon\": 114.3, \"day_calls\": 500, \"night_calls\": 20, \"aht_s\": 200, \"agents_day\": 10, "
    "\"agents_night\": 4, \"is_hub\": false, \"night_consolidated\": true}\n"
    "  ]\n"
    "}\n";

typedef struct {
  char path[4096];
  char err[512];
  scenario_t sc;
} fixture_t;

static int fixture_setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  if (!f) return -1;
  const char *tmp = getenv("TMPDIR");
  snprintf(f->path, sizeof f->path, "%s/nirc-test-scenario-XXXXXX.json",
           tmp && *tmp ? tmp : "/tmp");
  int fd = mkstemps(f->path, 5);
  if (fd < 0) {
    free(f);
    return -1;
  }
  close(fd);
  *state = f;
  return 0;
}

static int fixture_teardown(void **state) {
  fixture_t *f = *state;
  unlink(f->path);
  scenario_free(&f->sc);
  free(f);
  return 0;
}

static void write_text(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  assert_int_equal(fputs(text, fp) >= 0, 1);
  assert_int_equal(fclose(fp), 0);
}

/* Writes base_json with the single occurrence of `from` replaced by `to`;
 * the test fails if `from` is absent or ambiguous, so edits to base_json
 * cannot silently turn a negative test into a positive one. */
static void write_variant(const char *path, const char *from, const char *to) {
  const char *at = strstr(base_json, from);
  if (!at) fail_msg("'%s' is not in the base scenario", from);
  if (strstr(at + 1, from)) fail_msg("'%s' occurs more than once in the base scenario", from);
  size_t head = (size_t)(at - base_json);
  size_t len = strlen(base_json) - strlen(from) + strlen(to) + 1;
  char *text = malloc(len);
  assert_non_null(text);
  snprintf(text, len, "%.*s%s%s", (int)head, base_json, to, at + strlen(from));
  write_text(path, text);
  free(text);
}

/* Loads f->path, expects `want`, and checks that the message starts with
 * `prefix` (after the path) and contains each of the NULL-terminated
 * `needles`. A failed load must leave the output zeroed. */
static void expect_failure(fixture_t *f, int want, const char *prefix, ...) {
  int rc = scenario_load(f->path, &f->sc, f->err, sizeof f->err);
  if (rc != want)
    fail_msg("got %s, want %s; message: %s", nirc_errname(rc), nirc_errname(want), f->err);
  assert_null(f->sc.sites);
  assert_int_equal(f->sc.count, 0);
  size_t plen = strlen(f->path);
  if (strncmp(f->err, f->path, plen) != 0)
    fail_msg("message does not start with the path: %s", f->err);
  if (strncmp(f->err + plen, prefix, strlen(prefix)) != 0)
    fail_msg("message does not continue with '%s': %s", prefix, f->err);
  va_list ap;
  va_start(ap, prefix);
  for (const char *n = va_arg(ap, const char *); n; n = va_arg(ap, const char *)) {
    if (!strstr(f->err, n)) {
      va_end(ap);
      fail_msg("message lacks '%s': %s", n, f->err);
    }
  }
  va_end(ap);
}

static void test_base_is_valid(void **state) {
  fixture_t *f = *state;
  write_text(f->path, base_json);
  int rc = scenario_load(f->path, &f->sc, f->err, sizeof f->err);
  if (rc) fail_msg("base scenario refused: %s", f->err);
  assert_int_equal(f->sc.count, 3);
  assert_string_equal(f->sc.sites[0].name_zh, "甲");
  assert_true(f->sc.sites[2].night_consolidated);
  assert_string_equal(f->err, "");
}

static void test_comment_keys_are_ignored(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"name\": \"test network\",",
                "\"_comment\": \"why\", \"name\": \"test network\",");
  int rc = scenario_load(f->path, &f->sc, f->err, sizeof f->err);
  if (rc) fail_msg("comment key refused: %s", f->err);
}

static void test_malformed_json_reports_line(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"patience_s\": 90,", "\"patience_s\": 90 oops,");
  expect_failure(f, NIRC_ECONFIG, ":8: ", NULL);
}

static void test_truncated_json_reports_line(void **state) {
  fixture_t *f = *state;
  write_text(f->path, "{\n  \"name\": \"x\",\n  \"sites\": [\n");
  /* The file ends after its third newline, so the end of input is on line 4. */
  expect_failure(f, NIRC_ECONFIG, ":4: ", "expected", NULL);
}

static void test_duplicate_key_reports_line(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"sl_threshold_s\": 20,",
                "\"sl_threshold_s\": 20, \"sl_threshold_s\": 30,");
  expect_failure(f, NIRC_ECONFIG, ":9: ", "duplicate", NULL);
}

static void test_duplicate_slug(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"slug\": \"gamma\"", "\"slug\": \"beta\"");
  expect_failure(f, NIRC_ECONFIG, ": site 'beta': ", "duplicate slug", "sites[1]", "sites[2]",
                 NULL);
}

static void test_unknown_hub(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"primary_hub\": \"alpha\"", "\"primary_hub\": \"omega\"");
  expect_failure(f, NIRC_ECONFIG, ": ", "primary_hub", "'omega'", "not one of the sites", NULL);
}

static void test_unknown_backup_hub(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"backup_hub\": \"beta\"", "\"backup_hub\": \"delta\"");
  expect_failure(f, NIRC_ECONFIG, ": ", "backup_hub", "'delta'", NULL);
}

static void test_hub_without_is_hub(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"backup_hub\": \"beta\"", "\"backup_hub\": \"gamma\"");
  expect_failure(f, NIRC_ECONFIG, ": ", "backup_hub", "'gamma'", "is_hub", NULL);
}

static void test_hub_not_a_slug(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"primary_hub\": \"alpha\"", "\"primary_hub\": \"Xi'an\\n\"");
  expect_failure(f, NIRC_ECONFIG, ": ", "primary_hub 'Xi'an?'", "not a valid slug", NULL);
}

static void test_same_primary_and_backup(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"backup_hub\": \"beta\"", "\"backup_hub\": \"alpha\"");
  expect_failure(f, NIRC_ECONFIG, ": ", "must differ", NULL);
}

static void test_bad_slug(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"slug\": \"gamma\"", "\"slug\": \"Gamma_1\"");
  expect_failure(f, NIRC_ECONFIG, ": site 'Gamma_1': ", "invalid slug", "[a-z][a-z0-9-]*", NULL);
}

static void test_slug_too_long(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"slug\": \"gamma\"", "\"slug\": \"abcdefghijklmnopqrstuvwxyz0123456\"");
  expect_failure(f, NIRC_ECONFIG, ": site 'abcdefghijklmnopqrstuvwxyz0123456': ", "invalid slug",
                 NULL);
}

static void test_missing_site_key(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"aht_s\": 200, ", "");
  expect_failure(f, NIRC_ECONFIG, ": site 'gamma': ", "missing", "'aht_s'", NULL);
}

static void test_missing_slug(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"slug\": \"gamma\", ", "");
  expect_failure(f, NIRC_ECONFIG, ": sites[2]: ", "missing", "'slug'", NULL);
}

static void test_missing_top_key(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "  \"hub_night_agents\": 4,\n", "");
  expect_failure(f, NIRC_ECONFIG, ": ", "missing", "'hub_night_agents'", NULL);
}

static void test_unknown_key(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"agents_night\": 4,", "\"agents_nite\": 4, \"agents_night\": 4,");
  expect_failure(f, NIRC_ECONFIG, ": site 'gamma': ", "unknown key 'agents_nite'", NULL);
}

static void test_wrong_types(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"is_hub\": false", "\"is_hub\": \"no\"");
  expect_failure(f, NIRC_ECONFIG, ": site 'gamma': ", "'is_hub'", "true or false", NULL);
  write_variant(f->path, "\"agents_day\": 10,", "\"agents_day\": 10.5,");
  expect_failure(f, NIRC_ECONFIG, ": site 'gamma': ", "'agents_day'", "integer", NULL);
  write_variant(f->path, "\"name_en\": \"Gamma\"", "\"name_en\": 7");
  expect_failure(f, NIRC_ECONFIG, ": site 'gamma': ", "'name_en'", "string", NULL);
  write_variant(f->path, "\"sites\": [", "\"sites\": 5, \"_rest\": [");
  expect_failure(f, NIRC_ECONFIG, ": ", "'sites'", "array", NULL);
  write_text(f->path, "[1, 2]\n");
  expect_failure(f, NIRC_ECONFIG, ": ", "top level", NULL);
}

static void test_negative_and_out_of_range(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "\"day_calls\": 500,", "\"day_calls\": -1,");
  expect_failure(f, NIRC_ECONFIG, ": site 'gamma': ", "'day_calls'", NULL);
  write_variant(f->path, "\"agents_night\": 4,", "\"agents_night\": -4,");
  expect_failure(f, NIRC_ECONFIG, ": site 'gamma': ", "'agents_night'", NULL);
  write_variant(f->path, "\"aht_s\": 200,", "\"aht_s\": 0,");
  expect_failure(f, NIRC_ECONFIG, ": site 'gamma': ", "'aht_s'", NULL);
  write_variant(f->path, "\"lat\": 30.6,", "\"lat\": 91,");
  expect_failure(f, NIRC_ECONFIG, ": site 'gamma': ", "'lat'", "-90", NULL);
  write_variant(f->path, "\"lon\": 114.3,", "\"lon\": -180.5,");
  expect_failure(f, NIRC_ECONFIG, ": site 'gamma': ", "'lon'", NULL);
  write_variant(f->path, "\"utc_offset_min\": 480,", "\"utc_offset_min\": 1000,");
  expect_failure(f, NIRC_ECONFIG, ": ", "'utc_offset_min'", NULL);
  write_variant(f->path, "\"patience_s\": 90,", "\"patience_s\": 0,");
  expect_failure(f, NIRC_ECONFIG, ": ", "'patience_s'", NULL);
}

static void test_hourly_weights(void **state) {
  fixture_t *f = *state;
  write_variant(f->path, "2, 2, 1, 1],", "2, 1, 1],");
  expect_failure(f, NIRC_ECONFIG, ": ", "hourly_weight", "24", NULL);
  write_variant(f->path, "[1, 1, 1, 1, 1, 1, 1, 1, 2,", "[1, 1, 1, 1, 1, 1, 1, -1, 2,");
  expect_failure(f, NIRC_ECONFIG, ": ", "hourly_weight[7]", NULL);
  write_variant(f->path, "[1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1]",
                "[0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0]");
  expect_failure(f, NIRC_ECONFIG, ": ", "night hours", NULL);
  write_variant(f->path, "[1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1]",
                "[1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]");
  expect_failure(f, NIRC_ECONFIG, ": ", "day hours", NULL);
}

static void test_missing_file(void **state) {
  fixture_t *f = *state;
  unlink(f->path);
  expect_failure(f, NIRC_EIO, ": ", NULL);
  /* A NULL message buffer is allowed. */
  assert_int_equal(scenario_load(f->path, &f->sc, NULL, 0), NIRC_EIO);
  assert_int_equal(scenario_load(NULL, &f->sc, f->err, sizeof f->err), NIRC_EINVAL);
  /* A directory opens but is not a scenario. */
  const char *tmp = getenv("TMPDIR");
  assert_int_equal(scenario_load(tmp && *tmp ? tmp : "/tmp", &f->sc, f->err, sizeof f->err),
                   NIRC_EIO);
  assert_non_null(strstr(f->err, "not a regular file"));
}

static void test_small_error_buffer(void **state) {
  fixture_t *f = *state;
  char small[8];
  write_variant(f->path, "\"slug\": \"gamma\"", "\"slug\": \"beta\"");
  assert_int_equal(scenario_load(f->path, &f->sc, small, sizeof small), NIRC_ECONFIG);
  assert_int_equal(strlen(small), sizeof small - 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shipped_loads),
      cmocka_unit_test(test_shipped_hubs),
      cmocka_unit_test(test_shipped_night_consolidation),
      cmocka_unit_test(test_shipped_daytime),
      cmocka_unit_test(test_rate_integrates_to_daily_total),
      cmocka_unit_test(test_rate_and_agents_by_hour),
      cmocka_unit_test_setup_teardown(test_base_is_valid, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_comment_keys_are_ignored, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_malformed_json_reports_line, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_truncated_json_reports_line, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_duplicate_key_reports_line, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_duplicate_slug, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_unknown_hub, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_unknown_backup_hub, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_hub_without_is_hub, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_hub_not_a_slug, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_same_primary_and_backup, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_bad_slug, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_slug_too_long, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_missing_site_key, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_missing_slug, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_missing_top_key, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_unknown_key, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_wrong_types, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_negative_and_out_of_range, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_hourly_weights, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_missing_file, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_small_error_buffer, fixture_setup, fixture_teardown),
  };
  return cmocka_run_group_tests_name("scenario", tests, NULL, NULL);
}
