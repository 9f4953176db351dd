/* tz: IANA time zones for schedules ("22:00 to 08:00 in Asia/Shanghai").
 *
 * Implemented with the C library's zone database (TZ + tzset + localtime_r
 * / mktime) and restored afterwards, so it is correct across daylight
 * saving changes; the process is single-threaded, which makes the brief
 * change of TZ safe. */
#ifndef NIRC_TZ_H
#define NIRC_TZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  int year, month, day; /* month 1-12, day 1-31 */
  int hour, minute, second;
  int wday; /* 0 = Monday ... 6 = Sunday */
} tz_local_t;

/* True if `name` is a zone in /usr/share/zoneinfo (e.g. "Asia/Shanghai",
 * "UTC"); refuses names with "..", leading '/', or that are not TZif files. */
bool tz_valid(const char *name);
/* Local calendar time in zone `name` at Unix ms `utc_ms`. 0 or NIRC_EINVAL. */
int tz_to_local(const char *name, int64_t utc_ms, tz_local_t *out);
/* Unix ms of a local wall-clock time in zone `name`. A time that does not
 * exist (skipped by a DST jump) resolves to the first valid instant after
 * it; an ambiguous one to its first occurrence. 0 or NIRC_EINVAL. */
int tz_from_local(const char *name, const tz_local_t *local, int64_t *utc_ms);

/* How a local time maps to instants: once; not at all (skipped by a jump
 * forward: resolved to the jump); or twice (clocks went back: resolved to
 * the first). Callers that talk to people say which, rather than let a
 * guess pass for the time they meant. */
typedef enum { TZ_FOLD_NONE = 0, TZ_FOLD_SKIPPED, TZ_FOLD_REPEATED } tz_fold_t;
/* tz_from_local, also saying which case it was (fold, may be NULL) and
 * the second occurrence of a repeated time (second_ms, may be NULL; the
 * same as *utc_ms otherwise). */
int tz_from_local_fold(const char *name, const tz_local_t *local, int64_t *utc_ms, tz_fold_t *fold,
                       int64_t *second_ms);

/* Unix ms as ISO 8601 with the offset zone `name` has then, as operators
 * are shown times ("2020-01-23T23:59:00+08:00"). Returns the zone used,
 * to be named beside it: `name`, or "UTC" for "" or a zone not known. */
const char *tz_format_iso(const char *name, int64_t ms, char *buf, size_t len);

#endif
