#include "rules.h"

#include "err.h"
#include "safetext.h"
#include "tz.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Sites a refusal's hint looks through (the scenario has 31; past this
 * many the suggestion may miss a name). */
#define RULES_HINT_MAX 1024
#include <string.h>
#include <strings.h>

#define RULES_ALL_DAYS     0x7fu
#define RULES_WEEKDAYS     0x1fu
#define RULES_WEEKENDS     0x60u
#define RULES_MIN_PER_DAY  1440
#define RULES_MIN_PER_WEEK (7 * RULES_MIN_PER_DAY)
#define RULES_WAVE_MAX     100u
#define RULES_HOLD_MAX_S   86400u
#define RULES_SCAN_DAYS    400
#define RULES_SHOW_MAX     40 /* characters of a bad item quoted back in a message */
/* 9999-12-31T23:59:59.999Z: the last instant a date in NIRC may name. */
#define RULES_LAST_MS 253402300799999LL

static const char *const rules_day_names[7] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

static const char *const rules_kind_names[] = {
    [RULE_NONE] = "default",
    [RULE_OVERFLOW] = "overflow",
    [RULE_SCHEDULE] = "schedule",
    [RULE_CUTOVER] = "cutover",
};

static const char *const rules_state_names[] = {
    [CUTOVER_ACTIVE] = "active",
    [CUTOVER_RESTORED] = "restored",
    [CUTOVER_EXPIRED] = "expired",
};

/* Writes the message (if the caller wants one) and hands back `code`, so
 * every refusal is one line. */
__attribute__((format(printf, 4, 5))) static int rules_fail(int code, char *err, size_t errlen,
                                                            const char *fmt, ...) {
  if (err && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

static bool rules_is_blank(char c) {
  return c == ' ' || c == '\t';
}

/* Narrows [*b, *e) to drop surrounding blanks. */
static void rules_trim(const char **b, const char **e) {
  while (*b < *e && rules_is_blank(**b))
    (*b)++;
  while (*e > *b && rules_is_blank((*e)[-1]))
    (*e)--;
}

/* How many characters of an item to quote back: enough to recognise it,
 * never enough to flood a message. */
static int rules_show(size_t len) {
  return len > RULES_SHOW_MAX ? RULES_SHOW_MAX : (int)len;
}

/* ---- calendar arithmetic ------------------------------------------------
 * Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's
 * algorithms). Schedules step over local dates, which is plain calendar
 * arithmetic independent of any time zone. */

static int64_t rules_days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static void rules_civil_from_days(int64_t z, int *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t dd = doy - (153 * mp + 2) / 5 + 1;
  int64_t mm = mp < 10 ? mp + 3 : mp - 9;
  *y = (int)(yoe + era * 400 + (mm <= 2));
  *m = (int)mm;
  *d = (int)dd;
}

/* 0 = Monday; 1970-01-01 was a Thursday. */
static int rules_weekday(int64_t day) {
  return (int)(((day % 7) + 7 + 3) % 7);
}

static bool rules_is_leap(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int rules_days_in_month(int y, int m) {
  static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && rules_is_leap(y) ? 29 : dim[m - 1];
}

/* Years outside this range are typing mistakes, not dates anyone means. */
static bool rules_ymd_valid(int y, int m, int d) {
  return y >= 1970 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 && d <= rules_days_in_month(y, m);
}

static bool rules_date_valid(int32_t ymd) {
  return ymd > 0 && rules_ymd_valid(ymd / 10000, ymd / 100 % 100, ymd % 100);
}

/* ---- parse helpers ------------------------------------------------------ */

int rules_parse_slug_list(const char *csv, slug_list_t *out, char *err, size_t errlen) {
  if (!out) return rules_fail(NIRC_EINVAL, err, errlen, "no list to fill");
  out->n = 0;
  if (!csv) return rules_fail(NIRC_EINVAL, err, errlen, "no sites given");
  const char *b = csv, *e = csv + strlen(csv);
  rules_trim(&b, &e);
  if (b == e) return rules_fail(NIRC_EINVAL, err, errlen, "no sites given");

  for (const char *p = csv;;) {
    const char *comma = strchr(p, ',');
    const char *ib = p, *ie = comma ? comma : p + strlen(p);
    rules_trim(&ib, &ie);
    size_t len = (size_t)(ie - ib);
    int rc = 0;
    if (len == 0) {
      rc = rules_fail(NIRC_EINVAL, err, errlen,
                      "empty site name in '%s' (two commas in a row, or a comma at an end?)", csv);
    } else if (len >= SCENARIO_SLUG_MAX) {
      rc = rules_fail(NIRC_EINVAL, err, errlen, "'%.*s' is not a site name: at most %d characters",
                      rules_show(len), ib, SCENARIO_SLUG_MAX - 1);
    } else if (out->n == RULES_MAX_SITES) {
      rc = rules_fail(NIRC_EINVAL, err, errlen, "too many sites: at most %d in one rule",
                      RULES_MAX_SITES);
    }
    if (rc != 0) {
      out->n = 0;
      return rc;
    }
    char slug[SCENARIO_SLUG_MAX];
    memcpy(slug, ib, len);
    slug[len] = '\0';
    if (!nirc_slug_valid(slug)) {
      out->n = 0;
      return rules_fail(NIRC_EINVAL, err, errlen,
                        "'%s' is not a site name: use lowercase letters, digits and '-', "
                        "starting with a letter",
                        slug);
    }
    for (unsigned i = 0; i < out->n; i++) {
      if (strcmp(out->v[i], slug) == 0) {
        out->n = 0;
        return rules_fail(NIRC_EINVAL, err, errlen, "%s is listed twice", slug);
      }
    }
    memcpy(out->v[out->n++], slug, len + 1);
    if (!comma) break;
    p = comma + 1;
  }
  return 0;
}

static bool rules_is_digit(char c) {
  return c >= '0' && c <= '9';
}

int rules_parse_hhmm(const char *s, int *minutes) {
  /* Exactly "HH:MM": "7:5" or "07:5" are more likely typos than intent. */
  if (!s || !minutes || strnlen(s, 6) != 5 || s[2] != ':' || !rules_is_digit(s[0]) ||
      !rules_is_digit(s[1]) || !rules_is_digit(s[3]) || !rules_is_digit(s[4]))
    return NIRC_EINVAL;
  int h = (s[0] - '0') * 10 + (s[1] - '0');
  int m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 23 || m > 59) return NIRC_EINVAL;
  *minutes = h * 60 + m;
  return 0;
}

/* Index 0..6 of a three-letter English day name, any case, or -1. */
static int rules_day_index(const char *b, size_t len) {
  if (len != 3) return -1;
  for (int d = 0; d < 7; d++)
    if (strncasecmp(b, rules_day_names[d], 3) == 0) return d;
  return -1;
}

static bool rules_word_is(const char *b, size_t len, const char *word) {
  return len == strlen(word) && strncasecmp(b, word, len) == 0;
}

/* Bits of one comma-separated item: a word, a day or a range of days. */
static int rules_days_item(const char *b, const char *e, uint8_t *bits) {
  size_t len = (size_t)(e - b);
  if (rules_word_is(b, len, "daily")) {
    *bits = RULES_ALL_DAYS;
    return 0;
  }
  if (rules_word_is(b, len, "weekdays")) {
    *bits = RULES_WEEKDAYS;
    return 0;
  }
  if (rules_word_is(b, len, "weekends")) {
    *bits = RULES_WEEKENDS;
    return 0;
  }
  const char *dash = memchr(b, '-', len);
  if (!dash) {
    int d = rules_day_index(b, len);
    if (d < 0) return NIRC_EINVAL;
    *bits = (uint8_t)(1u << d);
    return 0;
  }
  const char *fb = b, *fe = dash, *tb = dash + 1, *te = e;
  rules_trim(&fb, &fe);
  rules_trim(&tb, &te);
  int from = rules_day_index(fb, (size_t)(fe - fb));
  int to = rules_day_index(tb, (size_t)(te - tb));
  if (from < 0 || to < 0) return NIRC_EINVAL;
  /* Ranges wrap around the week: fri-mon is fri, sat, sun, mon. */
  uint8_t v = 0;
  for (int d = from;; d = (d + 1) % 7) {
    v |= (uint8_t)(1u << d);
    if (d == to) break;
  }
  *bits = v;
  return 0;
}

int rules_parse_days(const char *s, uint8_t *days, char *err, size_t errlen) {
  static const char help[] = "use mon..sun, ranges like mon-fri, lists like mon,wed,sat-sun, "
                             "or daily / weekdays / weekends";
  if (!s || !days) return rules_fail(NIRC_EINVAL, err, errlen, "no days given: %s", help);
  const char *b = s, *e = s + strlen(s);
  rules_trim(&b, &e);
  if (b == e) return rules_fail(NIRC_EINVAL, err, errlen, "no days given: %s", help);

  uint8_t all = 0;
  for (const char *p = s;;) {
    const char *comma = strchr(p, ',');
    const char *ib = p, *ie = comma ? comma : p + strlen(p);
    rules_trim(&ib, &ie);
    size_t len = (size_t)(ie - ib);
    if (len == 0)
      return rules_fail(NIRC_EINVAL, err, errlen,
                        "empty item in days '%s' (two commas in a row, or a comma at an end?)", s);
    uint8_t bits = 0;
    if (rules_days_item(ib, ie, &bits) != 0)
      return rules_fail(NIRC_EINVAL, err, errlen, "'%.*s' is not a day or range of days: %s",
                        rules_show(len), ib, help);
    all |= bits;
    if (!comma) break;
    p = comma + 1;
  }
  *days = all;
  return 0;
}

int rules_parse_date(const char *s, int32_t *yyyymmdd) {
  if (!s || !yyyymmdd || strnlen(s, 11) != 10 || s[4] != '-' || s[7] != '-') return NIRC_EINVAL;
  int v[8], k = 0;
  for (int i = 0; i < 10; i++) {
    if (i == 4 || i == 7) continue;
    if (!rules_is_digit(s[i])) return NIRC_EINVAL;
    v[k++] = s[i] - '0';
  }
  int y = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3];
  int m = v[4] * 10 + v[5];
  int d = v[6] * 10 + v[7];
  if (!rules_ymd_valid(y, m, d)) return NIRC_EINVAL;
  *yyyymmdd = y * 10000 + m * 100 + d;
  return 0;
}

/* ---- validators --------------------------------------------------------- */

/* A fixed-size text field copied from the database or the wire is only
 * trusted once it is known to end inside its buffer. */
static bool rules_terminated(const char *s, size_t size) {
  return memchr(s, '\0', size) != NULL;
}

static int rules_check_name(const char *name, const char *kind, char *err, size_t errlen) {
  if (!rules_terminated(name, RULES_NAME_MAX))
    return rules_fail(NIRC_EINVAL, err, errlen, "%s name is longer than %d characters", kind,
                      RULES_NAME_MAX - 1);
  if (name[0] == '\0')
    return rules_fail(NIRC_EINVAL, err, errlen, "%s name is empty: give it a name such as 'night'",
                      kind);
  /* Named first, so the message below never quotes a control character. */
  char what[32];
  snprintf(what, sizeof what, "%s name", kind);
  if (!safetext_check(name, what, err, errlen)) return NIRC_EINVAL;
  for (const char *p = name; *p; p++) {
    char c = *p;
    if (!((c >= 'a' && c <= 'z') || rules_is_digit(c) || c == '-' || c == '_' || c == ' '))
      return rules_fail(NIRC_EINVAL, err, errlen,
                        "%s name '%s' may contain only lowercase letters, digits, '-', '_' and "
                        "spaces",
                        kind, name);
  }
  return 0;
}

/* Structure of one list: not empty, well-formed names, no duplicates. */
static int rules_check_list(const slug_list_t *l, const char *role, char *err, size_t errlen) {
  if (l->n == 0) return rules_fail(NIRC_EINVAL, err, errlen, "no %ss given", role);
  if (l->n > RULES_MAX_SITES)
    return rules_fail(NIRC_EINVAL, err, errlen, "too many %ss: at most %d in one rule", role,
                      RULES_MAX_SITES);
  for (unsigned i = 0; i < l->n; i++) {
    if (!rules_terminated(l->v[i], SCENARIO_SLUG_MAX) || !nirc_slug_valid(l->v[i]))
      return rules_fail(NIRC_EINVAL, err, errlen, "%s %u is not a valid site name", role, i + 1);
    for (unsigned j = 0; j < i; j++)
      if (strcmp(l->v[i], l->v[j]) == 0)
        return rules_fail(NIRC_EINVAL, err, errlen, "%s is listed twice as a %s", l->v[i], role);
  }
  return 0;
}

bool rules_list_has(const slug_list_t *l, const char *slug) {
  for (unsigned i = 0; i < l->n && i < RULES_MAX_SITES; i++)
    if (strcmp(l->v[i], slug) == 0) return true;
  return false;
}

bool rules_lists_equal(const slug_list_t *a, const slug_list_t *b) {
  if (a->n != b->n) return false;
  for (unsigned k = 0; k < a->n && k < RULES_MAX_SITES; k++)
    if (strcmp(a->v[k], b->v[k]) != 0) return false;
  return true;
}

/* "; did you mean hubei?" for an unknown name, or "; the hubs are
 * shaanxi, henan" for a site that is no hub: what the operator types next. */
static void rules_hint(const char *slug, bool want_hubs, const rules_env_t *env, char *buf,
                       size_t len) {
  buf[0] = '\0';
  if (!env->site_at) return;
  const char *cands[RULES_HINT_MAX];
  size_t n = 0;
  const char *s;
  bool hub;
  for (size_t i = 0; n < RULES_HINT_MAX && env->site_at(env->arg, i, &s, &hub); i++)
    if (!want_hubs || hub) cands[n++] = s;
  if (want_hubs) {
    size_t used = (size_t)snprintf(buf, len, "; the hubs are ");
    for (size_t k = 0; k < n && used < len; k++)
      used += (size_t)snprintf(buf + used, len - used, "%s%s", k ? ", " : "", cands[k]);
    if (!n) snprintf(buf, len, "; no site is configured as a hub");
    return;
  }
  const char *near = nirc_closest(slug, cands, n);
  if (near) snprintf(buf, len, "; did you mean %s?", near);
}

/* The site must be configured and, as a hub, be allowed to take traffic. */
static int rules_check_site(const char *slug, const char *role, bool want_hub,
                            const rules_env_t *env, char *err, size_t errlen) {
  bool is_hub = false;
  char hint[256];
  if (!env->site_exists(env->arg, slug, &is_hub)) {
    rules_hint(slug, false, env, hint, sizeof hint);
    return rules_fail(NIRC_EUNKNOWN_SITE, err, errlen, "unknown site '%s' (given as a %s)%s%s",
                      slug, role, hint,
                      hint[0] ? "" : ": check the spelling against `nircctl status`");
  }
  if (want_hub && !is_hub) {
    rules_hint(slug, true, env, hint, sizeof hint);
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "%s is not a hub site: it cannot receive other sites' traffic%s", slug, hint);
  }
  return 0;
}

static int rules_check_env(const rules_env_t *env, char *err, size_t errlen) {
  if (!env || !env->site_exists)
    return rules_fail(NIRC_EINVAL, err, errlen, "no site table to check the rule against");
  return 0;
}

static int rules_check_self_hub(const char *source, const slug_list_t *hubs, char *err,
                                size_t errlen) {
  if (rules_list_has(hubs, source))
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "%s is listed as its own hub: a site cannot take over its own traffic; "
                      "remove it from the hubs",
                      source);
  return 0;
}

/* Sources and hubs of a cutover or schedule. Shape and the source/hub
 * overlap come first, so the most specific mistake is the one reported. */
static int rules_check_move(const slug_list_t *sources, const slug_list_t *hubs,
                            const rules_env_t *env, char *err, size_t errlen) {
  int rc;
  if ((rc = rules_check_env(env, err, errlen)) != 0) return rc;
  if ((rc = rules_check_list(sources, "source", err, errlen)) != 0) return rc;
  if ((rc = rules_check_list(hubs, "hub", err, errlen)) != 0) return rc;
  for (unsigned i = 0; i < sources->n; i++)
    if ((rc = rules_check_self_hub(sources->v[i], hubs, err, errlen)) != 0) return rc;
  for (unsigned i = 0; i < sources->n; i++)
    if ((rc = rules_check_site(sources->v[i], "source", false, env, err, errlen)) != 0) return rc;
  for (unsigned i = 0; i < hubs->n; i++)
    if ((rc = rules_check_site(hubs->v[i], "hub", true, env, err, errlen)) != 0) return rc;
  return 0;
}

int rules_validate_cutover(const cutover_t *c, const rules_env_t *env, int64_t now_ms, char *err,
                           size_t errlen) {
  if (!c) return rules_fail(NIRC_EINVAL, err, errlen, "no cutover given");
  if (c->share_permille > 1000) {
    snprintf(err, errlen, "share %u permille is more than the whole (1000); give 1-1000",
             c->share_permille);
    return NIRC_EINVAL;
  }
  int rc = rules_check_move(&c->sources, &c->hubs, env, err, errlen);
  if (rc != 0) return rc;

  /* The reason goes into the audit trail and onto operators' screens: one
   * readable line of UTF-8 (the audit trail's JSON, the cutovers table and
   * every directive take nothing else), often Chinese. No control
   * characters, no bidirectional controls that would show it reordered. */
  if (!rules_terminated(c->reason, sizeof c->reason))
    return rules_fail(NIRC_EINVAL, err, errlen, "the reason is longer than %d bytes; shorten it",
                      RULES_REASON_MAX - 1);
  if (!safetext_check(c->reason, "reason", err, errlen)) return NIRC_EINVAL;
  if (c->reason[strspn(c->reason, " ")] == '\0')
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "a reason is required: say why the traffic moves (it goes into the audit "
                      "trail)");

  /* In seconds before subtracting: an expiry from the wire may be any
   * 64-bit value, and the difference in ms could overflow. */
  if (c->expires_ms != 0 && c->expires_ms <= now_ms)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "the expiry is in the past (%lld s ago): give a later --until or a --for "
                      "duration",
                      (long long)(now_ms / 1000 - c->expires_ms / 1000));
  /* Beyond year 9999 no timestamp (ISO text, PostgreSQL) can hold it. */
  if (c->expires_ms > RULES_LAST_MS)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "the expiry is after the year 9999: give a nearer --until or a shorter "
                      "--for");
  if ((unsigned)c->state > CUTOVER_EXPIRED)
    return rules_fail(NIRC_EINVAL, err, errlen, "invalid cutover state %d", (int)c->state);
  return 0;
}

int rules_validate_schedule(const schedule_t *s, const rules_env_t *env, char *err, size_t errlen) {
  if (!s) return rules_fail(NIRC_EINVAL, err, errlen, "no schedule given");
  int rc = rules_check_name(s->name, "schedule", err, errlen);
  if (rc != 0) return rc;
  if ((rc = rules_check_move(&s->sources, &s->hubs, env, err, errlen)) != 0) return rc;

  if (rules_terminated(s->tz, sizeof s->tz) && !safetext_check(s->tz, "time zone", err, errlen))
    return NIRC_EINVAL;
  if (!rules_terminated(s->tz, sizeof s->tz) || !tz_valid(s->tz))
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "schedule '%s': unknown time zone '%.*s'; use an IANA name such as "
                      "Asia/Shanghai",
                      s->name, RULES_TZ_MAX - 1, s->tz);
  if (s->start_min < 0 || s->start_min >= RULES_MIN_PER_DAY)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "schedule '%s': start time (%d minutes) is outside 00:00-23:59", s->name,
                      s->start_min);
  if (s->end_min < 0 || s->end_min >= RULES_MIN_PER_DAY)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "schedule '%s': end time (%d minutes) is outside 00:00-23:59", s->name,
                      s->end_min);
  if (s->start_min == s->end_min)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "schedule '%s': start and end are both %02d:%02d, so the window is empty "
                      "(a night window is e.g. 22:00-08:00)",
                      s->name, s->start_min / 60, s->start_min % 60);
  if ((s->days & RULES_ALL_DAYS) == 0)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "schedule '%s': no days selected; give days such as daily or mon-fri",
                      s->name);
  if (s->days & ~RULES_ALL_DAYS)
    return rules_fail(NIRC_EINVAL, err, errlen, "schedule '%s': invalid days (0x%02x)", s->name,
                      (unsigned)s->days);
  if (s->n_exceptions > RULES_MAX_EXCEPTIONS)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "schedule '%s': too many exception dates (at most %d)", s->name,
                      RULES_MAX_EXCEPTIONS);
  for (unsigned i = 0; i < s->n_exceptions; i++)
    if (!rules_date_valid(s->exceptions[i]))
      return rules_fail(NIRC_EINVAL, err, errlen,
                        "schedule '%s': exception %d is not a real date (YYYY-MM-DD)", s->name,
                        (int)s->exceptions[i]);
  /* 0 is accepted: it stands for the default of 5 sources per wave. */
  if (s->wave_size > RULES_WAVE_MAX)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "schedule '%s': wave size %u is out of range (1-%u sources per wave)",
                      s->name, s->wave_size, RULES_WAVE_MAX);
  return 0;
}

/* One load metric of an overflow rule: a used trigger needs a release
 * threshold on the calm side of it, or the rule would flap. */
static int rules_check_threshold(const char *name, const char *metric, const char *unit,
                                 uint32_t trigger, uint32_t release, char *err, size_t errlen) {
  if (trigger == 0 && release != 0)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "overflow '%s': a release %s is set but no trigger %s", name, metric, metric);
  if (trigger == 0) return 0;
  if (release == 0)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "overflow '%s': the trigger %s (%u%s) has no release threshold", name, metric,
                      trigger, unit);
  if (release >= trigger)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "overflow '%s': the release %s (%u%s) must be below the trigger %s "
                      "(%u%s), or the rule would flap",
                      name, metric, release, unit, metric, trigger, unit);
  return 0;
}

static bool rules_sl_in_range(double v) {
  return v > 0.0 && v <= 1.0;
}

int rules_validate_overflow(const overflow_rule_t *o, const rules_env_t *env, char *err,
                            size_t errlen) {
  if (!o) return rules_fail(NIRC_EINVAL, err, errlen, "no overflow rule given");
  int rc = rules_check_name(o->name, "overflow", err, errlen);
  if (rc != 0) return rc;
  if ((rc = rules_check_env(env, err, errlen)) != 0) return rc;
  if (!rules_terminated(o->source, sizeof o->source) || !nirc_slug_valid(o->source))
    return rules_fail(NIRC_EINVAL, err, errlen, "overflow '%s': the source is not a site name",
                      o->name);
  if ((rc = rules_check_list(&o->hubs, "hub", err, errlen)) != 0) return rc;
  if ((rc = rules_check_self_hub(o->source, &o->hubs, err, errlen)) != 0) return rc;
  if ((rc = rules_check_site(o->source, "source", false, env, err, errlen)) != 0) return rc;
  for (unsigned i = 0; i < o->hubs.n; i++)
    if ((rc = rules_check_site(o->hubs.v[i], "hub", true, env, err, errlen)) != 0) return rc;

  bool sl_used = o->trigger_sl != 0.0;
  if (o->trigger_wait_s == 0 && o->trigger_queue == 0 && !sl_used)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "overflow '%s': no trigger set; give a longest-wait, queue-length or "
                      "service-level trigger",
                      o->name);
  if ((rc = rules_check_threshold(o->name, "wait", " s", o->trigger_wait_s, o->release_wait_s, err,
                                  errlen)) != 0)
    return rc;
  if ((rc = rules_check_threshold(o->name, "queue", " calls", o->trigger_queue, o->release_queue,
                                  err, errlen)) != 0)
    return rc;
  /* Service level is the other way round: low is bad, so the release
   * level must be above the trigger. The negations also catch NaN. */
  if (!sl_used && o->release_sl != 0.0)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "overflow '%s': a release service level is set but no trigger service "
                      "level",
                      o->name);
  if (sl_used) {
    if (!rules_sl_in_range(o->trigger_sl))
      return rules_fail(NIRC_EINVAL, err, errlen,
                        "overflow '%s': the trigger service level %g is not in (0, 1] "
                        "(0.6 means 60%%)",
                        o->name, o->trigger_sl);
    if (!rules_sl_in_range(o->release_sl))
      return rules_fail(NIRC_EINVAL, err, errlen,
                        "overflow '%s': the release service level %g is not in (0, 1] "
                        "(0.8 means 80%%)",
                        o->name, o->release_sl);
    if (!(o->release_sl > o->trigger_sl))
      return rules_fail(NIRC_EINVAL, err, errlen,
                        "overflow '%s': the release service level (%g) must be above the "
                        "trigger service level (%g), or the rule would flap",
                        o->name, o->release_sl, o->trigger_sl);
  }
  if (o->share_cap_permille < 1 || o->share_cap_permille > 1000)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "overflow '%s': share cap %u is out of range (1-1000 per mille of the "
                      "source's calls)",
                      o->name, o->share_cap_permille);
  if (o->min_hold_s > RULES_HOLD_MAX_S)
    return rules_fail(NIRC_EINVAL, err, errlen,
                      "overflow '%s': minimum hold %u s is longer than a day (%u s)", o->name,
                      o->min_hold_s, RULES_HOLD_MAX_S);
  return 0;
}

/* ---- conflicts ---------------------------------------------------------- */

static const char *rules_shared_source(const slug_list_t *a, const slug_list_t *b) {
  for (unsigned i = 0; i < a->n && i < RULES_MAX_SITES; i++)
    if (rules_list_has(b, a->v[i])) return a->v[i];
  return NULL;
}

static bool rules_window_shape_ok(const schedule_t *s) {
  return s->start_min >= 0 && s->start_min < RULES_MIN_PER_DAY && s->end_min >= 0 &&
         s->end_min < RULES_MIN_PER_DAY && s->start_min != s->end_min;
}

static int rules_window_len(const schedule_t *s) {
  return s->end_min > s->start_min ? s->end_min - s->start_min
                                   : s->end_min + RULES_MIN_PER_DAY - s->start_min;
}

/* "tue 07:00" for minute m of the week (0 = Monday 00:00). */
static void rules_format_week_min(int m, char *buf, size_t len) {
  m = ((m % RULES_MIN_PER_WEEK) + RULES_MIN_PER_WEEK) % RULES_MIN_PER_WEEK;
  int in_day = m % RULES_MIN_PER_DAY;
  snprintf(buf, len, "%s %02d:%02d", rules_day_names[m / RULES_MIN_PER_DAY], in_day / 60,
           in_day % 60);
}

/* Disabled schedules cannot be in force, so they conflict with nothing;
 * enabling one must therefore check it again. Exception dates are ignored:
 * they only remove single nights, and a clash on every other week is
 * still a clash. */
bool rules_schedules_conflict(const schedule_t *a, const schedule_t *b, char *why, size_t len) {
  if (!a || !b || !a->enabled || !b->enabled) return false;
  if (a->id != 0 && a->id == b->id) return false; /* the same rule, e.g. being edited */
  const char *src = rules_shared_source(&a->sources, &b->sources);
  if (!src || !rules_window_shape_ok(a) || !rules_window_shape_ok(b)) return false;
  if (strncmp(a->tz, b->tz, sizeof a->tz) != 0) {
    /* Local times in two zones cannot be compared on the weekly clock, and
     * a site has one local time anyway: refuse rather than guess. */
    if (why && len)
      snprintf(why, len,
               "schedules '%s' (%.*s) and '%s' (%.*s) both move %s but use different time "
               "zones; put them in one zone so their windows can be compared",
               a->name, RULES_TZ_MAX - 1, a->tz, b->name, RULES_TZ_MAX - 1, b->tz, src);
    return true;
  }
  /* Lay both schedules' windows on the weekly clock (minute 0 = Monday
   * 00:00). A window may run past the end of the week (Sunday night into
   * Monday), so each pair is also compared one week shifted either way. */
  int alen = rules_window_len(a), blen = rules_window_len(b);
  for (int da = 0; da < 7; da++) {
    if (!(a->days & (1u << da))) continue;
    int as = da * RULES_MIN_PER_DAY + a->start_min, ae = as + alen;
    for (int db = 0; db < 7; db++) {
      if (!(b->days & (1u << db))) continue;
      for (int k = -1; k <= 1; k++) {
        int bs = db * RULES_MIN_PER_DAY + b->start_min + k * RULES_MIN_PER_WEEK, be = bs + blen;
        int s = as > bs ? as : bs, e = ae < be ? ae : be;
        if (s >= e) continue;
        if (why && len) {
          char from[16], to[16];
          rules_format_week_min(s, from, sizeof from);
          rules_format_week_min(e, to, sizeof to);
          snprintf(why, len,
                   "schedules '%s' (%s %02d:%02d-%02d:%02d) and '%s' (%s %02d:%02d-%02d:%02d) "
                   "both move %s and overlap from %s to %s (%.*s)",
                   a->name, rules_day_names[da], a->start_min / 60, a->start_min % 60,
                   a->end_min / 60, a->end_min % 60, b->name, rules_day_names[db],
                   b->start_min / 60, b->start_min % 60, b->end_min / 60, b->end_min % 60, src,
                   from, to, RULES_TZ_MAX - 1, a->tz);
        }
        return true;
      }
    }
  }
  return false;
}

bool rules_overflows_conflict(const overflow_rule_t *a, const overflow_rule_t *b, char *why,
                              size_t len) {
  if (!a || !b || !a->enabled || !b->enabled) return false;
  if (a->id != 0 && a->id == b->id) return false;
  if (strncmp(a->source, b->source, sizeof a->source) != 0) return false;
  if (why && len)
    snprintf(why, len,
             "overflow rules '%s' and '%s' both watch %.*s; keep one overflow rule per source",
             a->name, b->name, SCENARIO_SLUG_MAX - 1, a->source);
  return true;
}

/* ---- cycles ------------------------------------------------------------- */

/* The window of `s` that holds minute t of the week (0 = Monday 00:00), as
 * [*from, *to) on that clock: a window begun on Sunday night holds Monday
 * morning, and is then placed a week earlier. */
static bool rules_week_window(const schedule_t *s, int t, int *from, int *to) {
  int len = rules_window_len(s);
  for (int d = 0; d < 7; d++) {
    if (!(s->days & (1u << d))) continue;
    for (int k = 0; k >= -1; k--) {
      int st = d * RULES_MIN_PER_DAY + s->start_min + k * RULES_MIN_PER_WEEK;
      if (t >= st && t < st + len) {
        *from = st;
        *to = st + len;
        return true;
      }
    }
  }
  return false;
}

static int rules_cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

/* The search's state: the sites reached (node), how (from parent, by
 * others[via]), and which other schedules are in force at the instant. */
typedef struct {
  const schedule_t *s, *others;
  size_t n;
  bool *active;
  const char **node;
  int *parent, *via;
  size_t nn, max;
} rules_cycle_t;

static int rules_cycle_node(rules_cycle_t *c, const char *slug, int parent, int via) {
  for (size_t i = 0; i < c->nn; i++)
    if (strncmp(c->node[i], slug, SCENARIO_SLUG_MAX) == 0) return -1; /* reached already */
  if (c->nn == c->max) return -1;
  c->node[c->nn] = slug;
  c->parent[c->nn] = parent;
  c->via[c->nn] = via;
  return (int)c->nn++;
}

/* Breadth first from s's hubs along the moves of the schedules in force
 * (each source to each of its hubs, any of which it may use): the first of
 * s's sources reached closes a circle, as s moves it to the hub the search
 * started from. Returns that node, or -1. */
static int rules_cycle_search(rules_cycle_t *c) {
  c->nn = 0;
  for (unsigned h = 0; h < c->s->hubs.n && h < RULES_MAX_SITES; h++)
    rules_cycle_node(c, c->s->hubs.v[h], -1, -1);
  for (size_t q = 0; q < c->nn; q++) {
    if (rules_list_has(&c->s->sources, c->node[q])) return (int)q;
    for (size_t j = 0; j < c->n; j++) {
      const schedule_t *o = &c->others[j];
      if (!c->active[j] || !rules_list_has(&o->sources, c->node[q])) continue;
      for (unsigned h = 0; h < o->hubs.n && h < RULES_MAX_SITES; h++)
        rules_cycle_node(c, o->hubs.v[h], (int)q, (int)j);
    }
  }
  return -1;
}

__attribute__((format(printf, 4, 5))) static void rules_add(char *buf, size_t len, size_t *used,
                                                            const char *fmt, ...) {
  if (*used >= len) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf + *used, len - *used, fmt, ap);
  va_end(ap);
  *used = n < 0 ? len : *used + (size_t)n;
}

/* The refusal: the other schedules, the circle site by site, when they are
 * all in force, and the fix. `path` has room for every node. */
static void rules_cycle_why(const rules_cycle_t *c, int end, int t, int *path, char *why,
                            size_t len) {
  int np = 0;
  for (int v = end; v >= 0; v = c->parent[v])
    path[np++] = v; /* from `end` back to the hub s moves it to */
  /* The other schedules of the circle, each once, in its order. */
  int *sch = path + np, ns = 0;
  for (int i = np - 2; i >= 0; i--) {
    bool seen = false;
    for (int k = 0; k < ns; k++)
      seen |= sch[k] == c->via[path[i]];
    if (!seen) sch[ns++] = c->via[path[i]];
  }
  size_t used = 0;
  rules_add(why, len, &used, "would move calls in a circle with schedule%s", ns > 1 ? "s" : "");
  int from, to;
  rules_week_window(c->s, t, &from, &to);
  const schedule_t *zone = NULL; /* one of them in another zone */
  for (int k = 0; k < ns; k++) {
    const schedule_t *o = &c->others[sch[k]];
    rules_add(why, len, &used, "%s '%s'", k ? "," : "", o->name);
    int f, e;
    if (strncmp(o->tz, c->s->tz, sizeof o->tz) != 0) {
      zone = o;
    } else if (rules_week_window(o, t, &f, &e)) {
      from = f > from ? f : from;
      to = e < to ? e : to;
    }
  }
  rules_add(why, len, &used, ": %s -> %s ('%s')", c->node[end], c->node[path[np - 1]], c->s->name);
  for (int i = np - 2; i >= 0; i--)
    rules_add(why, len, &used, ", %s -> %s ('%s')", c->node[path[i + 1]], c->node[path[i]],
              c->others[c->via[path[i]]].name);
  char a[16], b[16];
  rules_format_week_min(from, a, sizeof a);
  rules_format_week_min(to, b, sizeof b);
  rules_add(why, len, &used, ", all in force from %s to %s (%.*s)", a, b, RULES_TZ_MAX - 1,
            c->s->tz);
  if (zone)
    rules_add(why, len, &used,
              " if '%s' (%.*s) is then too: windows in two zones cannot be compared, so put "
              "them in one zone",
              zone->name, RULES_TZ_MAX - 1, zone->tz);
  rules_add(why, len, &used,
            "; a site cannot send its calls away and take another's at once: drop one of these "
            "hubs, or move a window so that they do not overlap");
}

int rules_schedule_cycle(const schedule_t *s, const schedule_t *others, size_t n, char *why,
                         size_t len) {
  if (why && len) why[0] = '\0';
  if (!s || !s->enabled || !rules_window_shape_ok(s)) return 0;
  /* Most schedules share no site with s's hubs: no circle, no search. */
  bool linked = false;
  for (size_t j = 0; j < n && !linked; j++)
    for (unsigned h = 0; h < s->hubs.n && h < RULES_MAX_SITES && !linked; h++)
      linked = others[j].enabled && rules_list_has(&others[j].sources, s->hubs.v[h]);
  if (!linked) return 0;
  rules_cycle_t c = {.s = s, .others = others, .n = n, .max = (n + 1) * 2 * RULES_MAX_SITES};
  size_t nt = 0;
  int *t = malloc((n + 1) * 7 * sizeof *t);
  c.active = calloc(n + 1, sizeof *c.active);
  bool *last = calloc(n + 1, sizeof *last);
  c.node = malloc(c.max * sizeof *c.node);
  c.parent = malloc(c.max * sizeof *c.parent);
  c.via = malloc(c.max * sizeof *c.via);
  int *path = malloc(2 * c.max * sizeof *path);
  int rc = NIRC_ENOMEM;
  if (!t || !c.active || !last || !c.node || !c.parent || !c.via || !path) goto out;
  /* A circle needs its schedules in force together: from the latest of
   * their window starts on. So the instants to look at are the starts of
   * s's windows and of the others' in its zone. One in another zone cannot
   * be laid on this clock: it counts as in force whenever s is, as a
   * conflict between zones is refused rather than guessed. */
  for (size_t j = 0; j <= n; j++) {
    const schedule_t *x = j < n ? &others[j] : s;
    if (!x->enabled || !rules_window_shape_ok(x) || strncmp(x->tz, s->tz, sizeof s->tz) != 0)
      continue;
    for (int d = 0; d < 7; d++)
      if (x->days & (1u << d))
        t[nt++] = (d * RULES_MIN_PER_DAY + x->start_min) % RULES_MIN_PER_WEEK;
  }
  qsort(t, nt, sizeof *t, rules_cmp_int);
  rc = 0;
  for (size_t k = 0; k < nt && rc == 0; k++) {
    int f, e;
    if ((k && t[k] == t[k - 1]) || !rules_week_window(s, t[k], &f, &e)) continue;
    for (size_t j = 0; j < n; j++) {
      const schedule_t *o = &others[j];
      c.active[j] =
          o->enabled && !(s->id != 0 && o->id == s->id) && rules_window_shape_ok(o) &&
          (strncmp(o->tz, s->tz, sizeof s->tz) != 0 || rules_week_window(o, t[k], &f, &e));
    }
    if (k && memcmp(c.active, last, n * sizeof *last) == 0) continue; /* searched already */
    memcpy(last, c.active, n * sizeof *last);
    int end = rules_cycle_search(&c);
    if (end >= 0) {
      if (why && len) rules_cycle_why(&c, end, t[k], path, why, len);
      rc = 1;
    }
  }
out:
  free(t);
  free(c.active);
  free(last);
  free(c.node);
  free(c.parent);
  free(c.via);
  free(path);
  return rc;
}

/* ---- calendar ----------------------------------------------------------- */

static bool rules_schedule_usable(const schedule_t *s) {
  return s && s->enabled && rules_window_shape_ok(s) && (s->days & RULES_ALL_DAYS) != 0 &&
         rules_terminated(s->tz, sizeof s->tz);
}

/* Unix ms of minute `min` of local day `day` in the schedule's zone. */
static int rules_local_ms(const schedule_t *s, int64_t day, int min, int64_t *ms) {
  tz_local_t l = {0};
  rules_civil_from_days(day, &l.year, &l.month, &l.day);
  l.hour = min / 60;
  l.minute = min % 60;
  return tz_from_local(s->tz, &l, ms);
}

/* The window of local day `day` (days since 1970-01-01) on the clock, and
 * whether it runs: false when no window belongs to that day (not one of
 * its days, or the zone cannot be read). The one place that decides. */
static bool rules_day_window(const schedule_t *s, int64_t day, rules_window_t *w) {
  if (!(s->days & (1u << rules_weekday(day)))) return false;
  int y, m, d;
  rules_civil_from_days(day, &y, &m, &d);
  w->date = y * 10000 + m * 100 + d;
  int64_t end_day = s->end_min > s->start_min ? day : day + 1;
  if (rules_local_ms(s, day, s->start_min, &w->start_ms) != 0 ||
      rules_local_ms(s, end_day, s->end_min, &w->end_ms) != 0)
    return false;
  w->fate = RULES_WINDOW_RUNS;
  /* A skipped wall time resolves to the instant the clocks jump to: a
   * window wholly in the skipped hour starts and ends there, with no time
   * between. That is no window, not an empty one that "starts". */
  if (w->start_ms >= w->end_ms) w->fate = RULES_WINDOW_NO_TIME;
  unsigned n = s->n_exceptions < RULES_MAX_EXCEPTIONS ? s->n_exceptions : RULES_MAX_EXCEPTIONS;
  for (unsigned i = 0; i < n; i++)
    if (s->exceptions[i] == w->date) w->fate = RULES_WINDOW_EXCEPTION;
  return true;
}

static int rules_local_today(const schedule_t *s, int64_t now_ms, int64_t *day) {
  tz_local_t now;
  int rc = tz_to_local(s->tz, now_ms, &now);
  if (rc != 0) return rc;
  *day = rules_days_from_civil(now.year, now.month, now.day);
  return 0;
}

bool rules_schedule_window(const schedule_t *s, int64_t now_ms, int64_t *start_ms,
                           int64_t *end_ms) {
  if (!rules_schedule_usable(s)) return false;
  int64_t today;
  if (rules_local_today(s, now_ms, &today) != 0) return false;
  /* A window is shorter than a day, so only the one that started today
   * and one that started yesterday and crosses midnight can hold now. */
  for (int64_t day = today - 1; day <= today; day++) {
    rules_window_t w;
    if (!rules_day_window(s, day, &w) || w.fate != RULES_WINDOW_RUNS) continue;
    if (w.start_ms <= now_ms && now_ms < w.end_ms) {
      if (start_ms) *start_ms = w.start_ms;
      if (end_ms) *end_ms = w.end_ms;
      return true;
    }
  }
  return false;
}

/* The first window after now_ms, of any fate (runs_only: only one that
 * runs). */
static bool rules_next(const schedule_t *s, int64_t now_ms, bool runs_only, rules_window_t *w) {
  if (!rules_schedule_usable(s)) return false;
  int64_t today;
  if (rules_local_today(s, now_ms, &today) != 0) return false;
  /* A start on an earlier local date is before now; today's may be too. */
  for (int64_t day = today; day <= today + RULES_SCAN_DAYS; day++) {
    if (!rules_day_window(s, day, w) || w->start_ms <= now_ms) continue;
    if (!runs_only || w->fate == RULES_WINDOW_RUNS) return true;
  }
  return false;
}

int64_t rules_schedule_next_start(const schedule_t *s, int64_t now_ms) {
  rules_window_t w;
  return rules_next(s, now_ms, true, &w) ? w.start_ms : 0;
}

bool rules_schedule_next_window(const schedule_t *s, int64_t now_ms, rules_window_t *w) {
  return s && w && rules_next(s, now_ms, false, w);
}

void rules_window_reason(const schedule_t *s, const rules_window_t *w, char *buf, size_t len) {
  if (!buf || len == 0) return;
  buf[0] = '\0';
  if (!s || !w) return;
  int y = w->date / 10000, m = w->date / 100 % 100, d = w->date % 100;
  if (w->fate == RULES_WINDOW_EXCEPTION)
    snprintf(buf, len, "exception %04d-%02d-%02d", y, m, d);
  else if (w->fate == RULES_WINDOW_NO_TIME)
    snprintf(buf, len, "%02d:%02d-%02d:%02d does not exist on %04d-%02d-%02d in %.*s (DST change)",
             s->start_min / 60, s->start_min % 60, s->end_min / 60, s->end_min % 60, y, m, d,
             RULES_TZ_MAX - 1, s->tz);
}

const char *rules_kind_name(rule_kind_t k) {
  return (unsigned)k <= RULE_CUTOVER ? rules_kind_names[k] : "?";
}

rule_kind_t rules_kind_parse(const char *name) {
  for (unsigned k = RULE_OVERFLOW; k <= RULE_CUTOVER; k++)
    if (name && strcmp(name, rules_kind_names[k]) == 0) return (rule_kind_t)k;
  return RULE_NONE;
}

const char *rules_cutover_state_name(cutover_state_t s) {
  return (unsigned)s <= CUTOVER_EXPIRED ? rules_state_names[s] : "?";
}
