/* scenario: loads and validates the reference network (scenario.h).
 *
 * Every process trusts the scenario it loads, so this module checks all of
 * it once, up front, and says exactly what is wrong and where: syntax errors
 * carry the line jansson reports ("provinces.json:12: ..."), semantic errors
 * name the site ("provinces.json: site 'hubei': ..."). Keys are not
 * silently ignored: a misspelt optional key would otherwise go unnoticed.
 * Keys that begin with '_' are the one exception, so a file can carry
 * comments such as "_source". */
#include "scenario.h"

#include "err.h"
#include "jsonio.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The day shift runs over local hours [8, 22); the rest is night. */
#define DAY_START_H 8
#define DAY_END_H   22

/* Bounds on counts that are far above anything real but keep arithmetic on
 * them (sums, products with AHT) well inside double and unsigned range. */
#define MAX_COUNT_VALUE 1000000u
#define MAX_CALLS_VALUE 1e9
/* Time zones on Earth span UTC-12:00 to UTC+14:00. */
#define MIN_UTC_OFFSET (-12 * 60)
#define MAX_UTC_OFFSET (14 * 60)
/* Error prefixes are truncated to this many bytes of a user's string. */
#define SHOW_MAX 40

/* Where the parser is, so every helper can build a complete message. */
typedef struct {
  const char *path;
  char *err;
  size_t errlen;
  /* "site 'hubei': " or "sites[3]: " or "" at the top level. */
  char where[SCENARIO_SLUG_MAX + SHOW_MAX + 16];
} ctx_t;

__attribute__((format(printf, 2, 3))) static int fail(ctx_t *c, const char *fmt, ...) {
  if (c->err && c->errlen > 0) {
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: %s%s", c->path, c->where, reason);
  }
  return NIRC_ECONFIG;
}

/* Copies a user-supplied string for display in an error message: control
 * bytes become '?' so a hostile or broken file cannot garble the terminal,
 * and the copy is cut at SHOW_MAX bytes with "..." appended. */
static void show(char *dst, size_t dstlen, const char *src) {
  size_t n = 0;
  for (; src[n] && n < SHOW_MAX && n + 4 < dstlen; n++) {
    unsigned char ch = (unsigned char)src[n];
    dst[n] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
  }
  dst[n] = '\0';
  if (src[n] && n + 4 <= dstlen) memcpy(dst + n, "...", 4);
}

static bool slug_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= SCENARIO_SLUG_MAX) return false;
  if (s[0] < 'a' || s[0] > 'z') return false;
  for (size_t i = 1; i < n; i++) {
    char ch = s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) return false;
  }
  return true;
}

/* Rejects keys outside `allowed` (NULL-terminated), except '_' comments. */
static int check_keys(ctx_t *c, json_t *obj, const char *const *allowed, const char *what) {
  const char *key;
  json_t *val;
  json_object_foreach(obj, key, val) {
    (void)val;
    if (key[0] == '_') continue;
    bool known = false;
    for (const char *const *a = allowed; *a; a++) {
      if (strcmp(*a, key) == 0) {
        known = true;
        break;
      }
    }
    if (!known) {
      char shown[SHOW_MAX + 4];
      show(shown, sizeof shown, key);
      return fail(c, "unknown key '%s' in %s (keys starting with '_' are comments)", shown, what);
    }
  }
  return 0;
}

static int get_member(ctx_t *c, json_t *obj, const char *key, json_t **out) {
  *out = json_object_get(obj, key);
  if (!*out) return fail(c, "missing required key '%s'", key);
  return 0;
}

/* Copies a non-empty string member into dst, refusing (not truncating)
 * values that do not fit, because a cut name would compare unequal later. */
static int get_string(ctx_t *c, json_t *obj, const char *key, char *dst, size_t dstlen) {
  json_t *v;
  int rc = get_member(c, obj, key, &v);
  if (rc) return rc;
  if (!json_is_string(v)) return fail(c, "key '%s' must be a string", key);
  size_t n = json_string_length(v);
  const char *s = json_string_value(v);
  if (n == 0) return fail(c, "key '%s' must not be empty", key);
  if (memchr(s, '\0', n)) return fail(c, "key '%s' must not contain NUL characters", key);
  if (n >= dstlen)
    return fail(c, "key '%s' is %zu bytes long; the limit is %zu", key, n, dstlen - 1);
  memcpy(dst, s, n + 1);
  return 0;
}

/* Reads a finite number (integer or real) within [lo, hi]. */
static int get_number(ctx_t *c, json_t *obj, const char *key, double lo, double hi, double *out) {
  json_t *v;
  int rc = get_member(c, obj, key, &v);
  if (rc) return rc;
  if (!json_is_number(v)) return fail(c, "key '%s' must be a number", key);
  double d = json_number_value(v);
  if (!isfinite(d) || d < lo || d > hi)
    return fail(c, "key '%s' is %g; it must be between %g and %g", key, d, lo, hi);
  *out = d;
  return 0;
}

/* Reads an integer within [lo, hi]; reals such as 240.0 are refused so a
 * count is never silently rounded. */
static int get_int(ctx_t *c, json_t *obj, const char *key, long long lo, long long hi,
                   long long *out) {
  json_t *v;
  int rc = get_member(c, obj, key, &v);
  if (rc) return rc;
  if (!json_is_integer(v)) return fail(c, "key '%s' must be an integer", key);
  json_int_t i = json_integer_value(v);
  if (i < lo || i > hi)
    return fail(c, "key '%s' is %" JSON_INTEGER_FORMAT "; it must be between %lld and %lld", key, i,
                lo, hi);
  *out = (long long)i;
  return 0;
}

static int get_unsigned(ctx_t *c, json_t *obj, const char *key, unsigned lo, unsigned *out) {
  long long v;
  int rc = get_int(c, obj, key, lo, MAX_COUNT_VALUE, &v);
  if (rc == 0) *out = (unsigned)v;
  return rc;
}

static int get_bool(ctx_t *c, json_t *obj, const char *key, bool *out) {
  json_t *v;
  int rc = get_member(c, obj, key, &v);
  if (rc) return rc;
  if (!json_is_boolean(v)) return fail(c, "key '%s' must be true or false", key);
  *out = json_is_true(v);
  return 0;
}

static bool is_day_hour(int h) {
  return h >= DAY_START_H && h < DAY_END_H;
}

/* Sums the weights of the period (day or night) that hour h belongs to. */
static double period_weight_sum(const double *w, bool day) {
  double sum = 0.0;
  for (int h = 0; h < 24; h++)
    if (is_day_hour(h) == day) sum += w[h];
  return sum;
}

static int parse_hourly(ctx_t *c, json_t *root, double *w) {
  json_t *arr;
  int rc = get_member(c, root, "hourly_weight", &arr);
  if (rc) return rc;
  if (!json_is_array(arr) || json_array_size(arr) != 24)
    return fail(c, "key 'hourly_weight' must be an array of 24 numbers, one per local hour 0..23");
  for (size_t h = 0; h < 24; h++) {
    json_t *v = json_array_get(arr, h);
    if (!json_is_number(v)) return fail(c, "hourly_weight[%zu] must be a number", h);
    double d = json_number_value(v);
    if (!isfinite(d) || d < 0 || d > MAX_CALLS_VALUE)
      return fail(c, "hourly_weight[%zu] is %g; weights must be between 0 and %g", h, d,
                  MAX_CALLS_VALUE);
    w[h] = d;
  }
  /* Each period is normalised on its own, so each needs some weight;
   * otherwise its calls would have no hour to arrive in. */
  if (!(period_weight_sum(w, true) > 0))
    return fail(c, "hourly_weight: the day hours 8..21 must not all be zero");
  if (!(period_weight_sum(w, false) > 0))
    return fail(c, "hourly_weight: the night hours 22..23 and 0..7 must not all be zero");
  return 0;
}

static int parse_site(ctx_t *c, json_t *obj, size_t index, scenario_site_t *s) {
  static const char *const keys[] = {"slug",
                                     "name_en",
                                     "name_zh",
                                     "city_en",
                                     "lat",
                                     "lon",
                                     "day_calls",
                                     "night_calls",
                                     "aht_s",
                                     "agents_day",
                                     "agents_night",
                                     "is_hub",
                                     "night_consolidated",
                                     NULL};
  int rc;
  snprintf(c->where, sizeof c->where, "sites[%zu]: ", index);
  if (!json_is_object(obj)) return fail(c, "each site must be a JSON object");

  /* The slug names the site in every later message, so it comes first. */
  json_t *slug = json_object_get(obj, "slug");
  if (!slug) return fail(c, "missing required key 'slug'");
  if (!json_is_string(slug)) return fail(c, "key 'slug' must be a string");
  char shown[SHOW_MAX + 4];
  show(shown, sizeof shown, json_string_value(slug));
  snprintf(c->where, sizeof c->where, "site '%s': ", shown);
  if (json_string_length(slug) != strlen(json_string_value(slug)) ||
      !slug_valid(json_string_value(slug)))
    return fail(c, "invalid slug: it must match [a-z][a-z0-9-]* and be at most %d characters",
                SCENARIO_SLUG_MAX - 1);

  if ((rc = check_keys(c, obj, keys, "a site"))) return rc;
  if ((rc = get_string(c, obj, "slug", s->slug, sizeof s->slug))) return rc;
  if ((rc = get_string(c, obj, "name_en", s->name_en, sizeof s->name_en))) return rc;
  if ((rc = get_string(c, obj, "name_zh", s->name_zh, sizeof s->name_zh))) return rc;
  if ((rc = get_string(c, obj, "city_en", s->city_en, sizeof s->city_en))) return rc;
  if ((rc = get_number(c, obj, "lat", -90.0, 90.0, &s->lat))) return rc;
  if ((rc = get_number(c, obj, "lon", -180.0, 180.0, &s->lon))) return rc;
  if ((rc = get_number(c, obj, "day_calls", 0.0, MAX_CALLS_VALUE, &s->day_calls))) return rc;
  if ((rc = get_number(c, obj, "night_calls", 0.0, MAX_CALLS_VALUE, &s->night_calls))) return rc;
  /* A zero handle time would make every Erlang figure zero. */
  if ((rc = get_unsigned(c, obj, "aht_s", 1, &s->aht_s))) return rc;
  if ((rc = get_unsigned(c, obj, "agents_day", 0, &s->agents_day))) return rc;
  if ((rc = get_unsigned(c, obj, "agents_night", 0, &s->agents_night))) return rc;
  if ((rc = get_bool(c, obj, "is_hub", &s->is_hub))) return rc;
  if ((rc = get_bool(c, obj, "night_consolidated", &s->night_consolidated))) return rc;
  return 0;
}

/* Checks that `slug` (the value of top-level `key`) names a hub that can
 * actually take traffic. */
static int check_hub(ctx_t *c, const scenario_t *sc, const char *key, const char *slug) {
  if (!slug_valid(slug)) {
    char shown[SHOW_MAX + 4];
    show(shown, sizeof shown, slug);
    return fail(c, "%s '%s' is not a valid slug; use the slug of a site", key, shown);
  }
  const scenario_site_t *hub = scenario_find(sc, slug);
  if (!hub) return fail(c, "%s '%s' is not one of the sites; use the slug of a site", key, slug);
  if (!hub->is_hub) return fail(c, "%s '%s' must have \"is_hub\": true", key, slug);
  if (hub->night_consolidated)
    return fail(
        c, "%s '%s' has \"night_consolidated\": true; a hub cannot move its own nights to a hub",
        key, slug);
  return 0;
}

static int parse_root(ctx_t *c, json_t *root, scenario_t *sc) {
  static const char *const keys[] = {"name",          "primary_hub",
                                     "backup_hub",    "utc_offset_min",
                                     "hourly_weight", "hub_night_agents",
                                     "patience_s",    "sl_threshold_s",
                                     "sites",         NULL};
  int rc;
  long long off;
  c->where[0] = '\0';
  if (!json_is_object(root)) return fail(c, "the top level must be a JSON object");
  if ((rc = check_keys(c, root, keys, "the top-level object"))) return rc;
  if ((rc = get_string(c, root, "name", sc->name, sizeof sc->name))) return rc;
  if ((rc = get_string(c, root, "primary_hub", sc->primary_hub, sizeof sc->primary_hub))) return rc;
  if ((rc = get_string(c, root, "backup_hub", sc->backup_hub, sizeof sc->backup_hub))) return rc;
  if ((rc = get_int(c, root, "utc_offset_min", MIN_UTC_OFFSET, MAX_UTC_OFFSET, &off))) return rc;
  sc->utc_offset_min = (int)off;
  if ((rc = parse_hourly(c, root, sc->hourly_weight))) return rc;
  if ((rc = get_unsigned(c, root, "hub_night_agents", 0, &sc->hub_night_agents))) return rc;
  /* Callers with no patience never reach an agent; the simulator draws
   * patience from an exponential with this mean, which must be positive. */
  if ((rc = get_unsigned(c, root, "patience_s", 1, &sc->patience_s))) return rc;
  if ((rc = get_unsigned(c, root, "sl_threshold_s", 0, &sc->sl_threshold_s))) return rc;

  json_t *sites;
  if ((rc = get_member(c, root, "sites", &sites))) return rc;
  if (!json_is_array(sites) || json_array_size(sites) < 2)
    return fail(c,
                "key 'sites' must be an array of at least two sites (a primary and a backup hub)");
  size_t n = json_array_size(sites);
  sc->sites = calloc(n, sizeof *sc->sites);
  if (!sc->sites) {
    if (c->err && c->errlen)
      snprintf(c->err, c->errlen, "%s: out of memory for %zu sites", c->path, n);
    return NIRC_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    if ((rc = parse_site(c, json_array_get(sites, i), i, &sc->sites[i]))) return rc;
    /* Quadratic, but scenarios have dozens of sites, not thousands. */
    for (size_t j = 0; j < i; j++) {
      if (strcmp(sc->sites[j].slug, sc->sites[i].slug) == 0)
        return fail(c, "duplicate slug (sites[%zu] and sites[%zu]); every slug must be unique", j,
                    i);
    }
    sc->count = i + 1;
  }

  c->where[0] = '\0';
  if (strcmp(sc->primary_hub, sc->backup_hub) == 0)
    return fail(c, "backup_hub must differ from primary_hub ('%s')", sc->primary_hub);
  if ((rc = check_hub(c, sc, "primary_hub", sc->primary_hub))) return rc;
  if ((rc = check_hub(c, sc, "backup_hub", sc->backup_hub))) return rc;
  return 0;
}

int scenario_load(const char *path, scenario_t *out, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!out) return NIRC_EINVAL;
  memset(out, 0, sizeof *out);
  if (!path) {
    if (err && errlen) snprintf(err, errlen, "scenario: no file given");
    return NIRC_EINVAL;
  }

  /* The file is opened here rather than by json_load_file() so that a
   * missing file or a directory gets a message of its own instead of
   * jansson's generic parse error; the parser and flags are the same. */
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    int e = errno;
    if (err && errlen) snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
    return e == ENOMEM ? NIRC_ENOMEM : NIRC_EIO;
  }
  struct stat st;
  if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
    if (err && errlen)
      snprintf(err, errlen, "%s: not a regular file; give the path of a scenario JSON file", path);
    fclose(fp);
    return NIRC_EIO;
  }
  json_error_t jerr;
  /* Duplicate keys are refused: with two "agents_night" in one site, the
   * last would silently win. */
  json_t *root = jsonio_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
  fclose(fp);
  if (!root) {
    if (json_error_code(&jerr) == json_error_out_of_memory) {
      if (err && errlen) snprintf(err, errlen, "%s: out of memory", path);
      return NIRC_ENOMEM;
    }
    if (err && errlen) {
      if (jerr.line > 0)
        snprintf(err, errlen, "%s:%d: %s", path, jerr.line, jerr.text);
      else
        snprintf(err, errlen, "%s: %s", path, jerr.text);
    }
    return NIRC_ECONFIG;
  }

  ctx_t c = {.path = path, .err = err, .errlen = errlen};
  scenario_t sc;
  memset(&sc, 0, sizeof sc);
  int rc = parse_root(&c, root, &sc);
  json_decref(root);
  if (rc) {
    scenario_free(&sc);
    return rc;
  }
  *out = sc;
  return 0;
}

void scenario_free(scenario_t *sc) {
  if (!sc) return;
  free(sc->sites);
  memset(sc, 0, sizeof *sc);
}

const scenario_site_t *scenario_find(const scenario_t *sc, const char *slug) {
  if (!sc || !slug) return NULL;
  for (size_t i = 0; i < sc->count; i++)
    if (strcmp(sc->sites[i].slug, slug) == 0) return &sc->sites[i];
  return NULL;
}

/* Maps any hour onto [0, 24) so callers adding offsets need not wrap, and
 * returns the whole hour it falls in. NaN and infinities map to hour 0. */
static int hour_index(double local_hour) {
  if (!isfinite(local_hour)) return 0;
  double h = fmod(local_hour, 24.0);
  if (h < 0) h += 24.0;
  /* Adding 24 to a tiny negative remainder can round up to exactly 24.0,
   * hence the clamp. */
  double whole = floor(h);
  int i = (int)whole;
  return i < 0 ? 0 : (i > 23 ? 23 : i);
}

double scenario_rate_per_s(const scenario_t *sc, const scenario_site_t *site, double local_hour) {
  if (!sc || !site) return 0.0;
  int h = hour_index(local_hour);
  bool day = is_day_hour(h);
  double sum = period_weight_sum(sc->hourly_weight, day);
  /* A loaded scenario always has a positive sum; a hand-built one might
   * not, and a rate of zero is the only sensible answer then. */
  if (!(sum > 0)) return 0.0;
  double total = day ? site->day_calls : site->night_calls;
  return total * sc->hourly_weight[h] / sum / 3600.0;
}

unsigned scenario_agents_at(const scenario_site_t *site, double local_hour) {
  if (!site) return 0;
  return is_day_hour(hour_index(local_hour)) ? site->agents_day : site->agents_night;
}
