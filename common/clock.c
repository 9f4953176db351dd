#include "clock.h"

#include "err.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void clock_init_real(nirc_clock_t *c) {
  c->speed = 1.0;
  c->anchor_ms = 0;
  c->start_ms = 0;
}

void clock_setup(nirc_clock_t *c, double speed, const char *start, const char *anchor) {
  clock_init_real(c);
  if (!(start && *start) && speed <= 1.0) return;
  c->speed = speed < 1.0 ? 1.0 : speed;
  c->anchor_ms = c->start_ms = clock_real_ms();
  if (anchor && *anchor) clock_parse_iso(anchor, &c->anchor_ms);
  if (start && *start) clock_parse_iso(start, &c->start_ms);
}

bool clock_reproducible(double speed, const char *start, const char *anchor) {
  bool real = !(start && *start) && speed <= 1.0; /* as clock_setup decides */
  return real || (anchor && *anchor);
}

int64_t clock_real_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t clock_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t clock_now_ms(const nirc_clock_t *c) {
  int64_t real = clock_real_ms();
  if (c->speed <= 1.0 && c->start_ms == 0) return real;
  return c->start_ms + (int64_t)((double)(real - c->anchor_ms) * c->speed);
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (Howard Hinnant's algorithm); avoids timegm() and the TZ variable. */
static int64_t clock_days_from_civil(int y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = (unsigned)(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

int clock_parse_iso(const char *s, int64_t *out_ms) {
  int y, mo, d, h, mi, sec, n = 0;
  if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
    return NIRC_EINVAL;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || h < 0 || mi < 0 ||
      sec < 0)
    return NIRC_EINVAL;
  const char *tz = s + n;
  int off_min = 0;
  if (*tz == 'Z' && tz[1] == '\0') {
    off_min = 0;
  } else if ((*tz == '+' || *tz == '-') && strlen(tz) == 6 && tz[3] == ':') {
    int oh, om;
    if (sscanf(tz + 1, "%2d:%2d", &oh, &om) != 2 || oh > 14 || om > 59) return NIRC_EINVAL;
    off_min = (oh * 60 + om) * (*tz == '-' ? -1 : 1);
  } else {
    return NIRC_EINVAL;
  }
  int64_t days = clock_days_from_civil(y, (unsigned)mo, (unsigned)d);
  int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off_min * 60;
  *out_ms = secs * 1000;
  return 0;
}

void clock_format_iso(int64_t ms, int utc_offset_min, char *buf, unsigned len) {
  time_t t = (time_t)((ms / 1000) + (int64_t)utc_offset_min * 60);
  struct tm tm;
  gmtime_r(&t, &tm);
  int off = utc_offset_min < 0 ? -utc_offset_min : utc_offset_min;
  if (utc_offset_min == 0) {
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  } else {
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, utc_offset_min < 0 ? '-' : '+', off / 60,
             off % 60);
  }
}

clock_ago_t clock_place_ago(bool said, uint64_t ago_ms, int64_t now_ms, int64_t *at_ms) {
  if (!said) return CLOCK_AGO_UNSAID;
  if (ago_ms >= (uint64_t)CLOCK_AGO_MAX_MS || (int64_t)ago_ms > now_ms)
    return CLOCK_AGO_IMPLAUSIBLE;
  *at_ms = now_ms - (int64_t)ago_ms;
  return CLOCK_AGO_PLACED;
}
