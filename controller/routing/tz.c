#include "tz.h"

#include "clock.h"
#include "err.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TZ_NAME_MAX     64 /* names must be shorter: RULES_TZ_MAX in rules.h */
#define TZ_DIR          "/usr/share/zoneinfo/"
#define TZ_SECS_PER_DAY 86400
/* The previous TZ value is put back after every call. A value longer than
 * this (":" plus a path) is not something the C library could use either,
 * so such an environment is refused rather than silently altered. */
#define TZ_SAVED_MAX (PATH_MAX + 2)

/* Seconds before 1970 and after 2038 must both work. */
_Static_assert(sizeof(time_t) >= 8, "time_t must be 64 bits");

typedef struct {
  bool was_set;
  char value[TZ_SAVED_MAX];
} tz_saved_t;

static bool tz_name_chars_ok(const char *name) {
  for (const char *p = name; *p; p++) {
    char c = *p;
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '+' || c == '/' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool tz_valid(const char *name) {
  if (!name) return false;
  size_t len = strnlen(name, TZ_NAME_MAX);
  if (len == 0 || len >= TZ_NAME_MAX) return false;
  /* The name becomes part of a path: nothing may climb out of the zone
   * directory or point at an absolute file. */
  if (name[0] == '/' || strstr(name, "..") || !tz_name_chars_ok(name)) return false;
  /* Files of the zone directory that are not a civil zone: the host's own
   * zone (two controllers of one HA pair could differ), the default
   * rules, "Factory", and the leap-second and POSIX trees (right/ runs 27 s
   * from civil time). A rule names a place's zone or UTC. */
  if (strcmp(name, "localtime") == 0 || strcmp(name, "posixrules") == 0 ||
      strcmp(name, "Factory") == 0 || strncmp(name, "right/", 6) == 0 ||
      strncmp(name, "posix/", 6) == 0)
    return false;
  /* glibc treats an unknown ":UTC" as UTC anyway, so UTC stays usable even
   * on a system whose zone database lacks the file. */
  if (strcmp(name, "UTC") == 0) return true;

  char path[sizeof TZ_DIR + TZ_NAME_MAX];
  memcpy(path, TZ_DIR, sizeof TZ_DIR - 1);
  memcpy(path + sizeof TZ_DIR - 1, name, len + 1);
  /* O_NONBLOCK so that a FIFO planted in the directory cannot hang the
   * controller; the type is checked on the open descriptor, not the path. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return false;
  struct stat st;
  char magic[4];
  bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            read(fd, magic, sizeof magic) == (ssize_t)sizeof magic &&
            memcmp(magic, "TZif", sizeof magic) == 0;
  close(fd);
  return ok;
}

/* Switches the process to zone `name`, keeping what TZ was so that
 * tz_leave() can put it back exactly (including "unset"). */
static int tz_enter(const char *name, tz_saved_t *saved) {
  if (!tz_valid(name)) return NIRC_EINVAL;
  const char *prev = getenv("TZ");
  saved->was_set = prev != NULL;
  saved->value[0] = '\0';
  if (prev) {
    size_t n = strnlen(prev, sizeof saved->value);
    if (n == sizeof saved->value) return NIRC_EINVAL;
    memcpy(saved->value, prev, n + 1);
  }
  char value[TZ_NAME_MAX + 1];
  value[0] = ':';
  memcpy(value + 1, name, strlen(name) + 1);
  if (setenv("TZ", value, 1) != 0) return NIRC_ENOMEM;
  tzset();
  return 0;
}

static void tz_leave(const tz_saved_t *saved) {
  /* If putting the old value back fails (out of memory), the environment
   * keeps the zone just used; there is nothing better to fall back to. */
  if (saved->was_set)
    (void)setenv("TZ", saved->value, 1);
  else
    (void)unsetenv("TZ");
  tzset();
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), so local wall times can be compared as plain numbers
 * without timegm(), which is not standard C. */
static int64_t tz_days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int64_t tz_wall_seconds(const struct tm *tm) {
  return tz_days_from_civil((int64_t)tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday) *
             TZ_SECS_PER_DAY +
         tm->tm_hour * 3600 + tm->tm_min * 60 + tm->tm_sec;
}

/* UTC offset in seconds in force at instant t in the current TZ. Computed
 * from the broken-down time rather than tm_gmtoff, which is an extension. */
static int tz_offset_at(int64_t t, int64_t *off) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (!localtime_r(&tt, &tm)) return NIRC_EINVAL;
  *off = tz_wall_seconds(&tm) - t;
  return 0;
}

static int tz_days_in_month(int y, int m) {
  static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : dim[m - 1];
}

int tz_to_local(const char *name, int64_t utc_ms, tz_local_t *out) {
  if (!out) return NIRC_EINVAL;
  /* Floor, not truncation: -1 ms is 23:59:59.999 of the day before. */
  int64_t secs = utc_ms / 1000 - (utc_ms % 1000 < 0 ? 1 : 0);
  tz_saved_t saved;
  int rc = tz_enter(name, &saved);
  if (rc != 0) return rc;
  time_t tt = (time_t)secs;
  struct tm tm;
  bool ok = localtime_r(&tt, &tm) != NULL;
  tz_leave(&saved);
  if (!ok) return NIRC_EINVAL;
  out->year = tm.tm_year + 1900;
  out->month = tm.tm_mon + 1;
  out->day = tm.tm_mday;
  out->hour = tm.tm_hour;
  out->minute = tm.tm_min;
  out->second = tm.tm_sec;
  out->wday = (tm.tm_wday + 6) % 7; /* C counts from Sunday, NIRC from Monday */
  return 0;
}

/* The instant whose wall time in the current TZ is `wall` (seconds as if
 * the wall clock were UTC). Any answer t satisfies t + offset(t) == wall.
 * Offsets are within a day of zero, so the offsets in force a day before
 * and a day after bracket every candidate; with at most one transition in
 * between there are at most two candidates. mktime() is not used: glibc
 * resolves ambiguous times with tm_isdst = -1 from a cached guess, so its
 * answer in an overlap depends on earlier calls, and in a gap it moves
 * forward by the size of the jump instead of to the jump itself. */
static int tz_resolve(int64_t wall, int64_t *out, tz_fold_t *fold, int64_t *second) {
  *fold = TZ_FOLD_NONE;
  int64_t off_before, off_after, off;
  if (tz_offset_at(wall - TZ_SECS_PER_DAY, &off_before) != 0 ||
      tz_offset_at(wall + TZ_SECS_PER_DAY, &off_after) != 0)
    return NIRC_EINVAL;
  int64_t c_before = wall - off_before, c_after = wall - off_after;
  bool ok_before = tz_offset_at(c_before, &off) == 0 && off == off_before;
  bool ok_after = tz_offset_at(c_after, &off) == 0 && off == off_after;
  if (ok_before && ok_after && c_before != c_after) {
    /* Ambiguous (clocks went back): the first occurrence. */
    *out = c_before < c_after ? c_before : c_after;
    *second = c_before < c_after ? c_after : c_before;
    *fold = TZ_FOLD_REPEATED;
    return 0;
  }
  if (ok_before || ok_after) {
    *out = *second = ok_before ? c_before : c_after;
    return 0;
  }
  /* Skipped (clocks went forward): the wall time lies in the gap, and the
   * first valid instant after it is the transition itself, which lies
   * between the two candidates. Binary search for it to the second. */
  int64_t lo = c_before < c_after ? c_before : c_after;
  int64_t hi = c_before < c_after ? c_after : c_before;
  int64_t off_lo;
  if (lo == hi || tz_offset_at(lo, &off_lo) != 0) return NIRC_EINVAL;
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    if (tz_offset_at(mid, &off) != 0) return NIRC_EINVAL;
    if (off == off_lo)
      lo = mid;
    else
      hi = mid;
  }
  *out = *second = hi;
  *fold = TZ_FOLD_SKIPPED;
  return 0;
}

int tz_from_local(const char *name, const tz_local_t *local, int64_t *utc_ms) {
  return tz_from_local_fold(name, local, utc_ms, NULL, NULL);
}

int tz_from_local_fold(const char *name, const tz_local_t *local, int64_t *utc_ms, tz_fold_t *fold,
                       int64_t *second_ms) {
  if (!local || !utc_ms) return NIRC_EINVAL;
  /* wday is ignored: the date says which day it is. */
  if (local->year < 1 || local->year > 9999 || local->month < 1 || local->month > 12 ||
      local->day < 1 || local->day > tz_days_in_month(local->year, local->month) ||
      local->hour < 0 || local->hour > 23 || local->minute < 0 || local->minute > 59 ||
      local->second < 0 || local->second > 59)
    return NIRC_EINVAL;
  int64_t wall = tz_days_from_civil(local->year, local->month, local->day) * TZ_SECS_PER_DAY +
                 local->hour * 3600 + local->minute * 60 + local->second;
  tz_saved_t saved;
  int rc = tz_enter(name, &saved);
  if (rc != 0) return rc;
  int64_t t = 0, t2 = 0;
  tz_fold_t f = TZ_FOLD_NONE;
  rc = tz_resolve(wall, &t, &f, &t2);
  tz_leave(&saved);
  if (rc != 0) return rc;
  *utc_ms = t * 1000;
  if (fold) *fold = f;
  if (second_ms) *second_ms = t2 * 1000;
  return 0;
}

const char *tz_format_iso(const char *name, int64_t ms, char *buf, size_t len) {
  tz_local_t lt;
  int64_t secs = ms / 1000 - (ms % 1000 < 0 ? 1 : 0);
  bool zoned = name && name[0] && tz_valid(name) && tz_to_local(name, ms, &lt) == 0;
  /* The offset is the local wall time minus the instant, both in seconds. */
  int64_t off = zoned ? tz_days_from_civil(lt.year, lt.month, lt.day) * TZ_SECS_PER_DAY +
                            lt.hour * 3600 + lt.minute * 60 + lt.second - secs
                      : 0;
  if (buf && len) clock_format_iso(ms, (int)(off / 60), buf, (unsigned)len);
  return zoned ? name : "UTC";
}
