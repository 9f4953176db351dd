#include "capacity.h"

#include "err.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *capacity_source_name(capacity_source_t s) {
  switch (s) {
  case CAPACITY_MEASURED: return "measured";
  case CAPACITY_CONFIGURED: return "configured";
  case CAPACITY_UNKNOWN: return "unknown";
  }
  return "unknown";
}

/* "HH:MM" at *p (24:00 allowed as an end); advances *p. */
static bool capacity_parse_time(const char **p, bool end, uint16_t *out) {
  const char *s = *p;
  if (!(s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] == ':' && s[3] >= '0' &&
        s[3] <= '9' && s[4] >= '0' && s[4] <= '9'))
    return false;
  unsigned h = (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
  unsigned m = (unsigned)(s[3] - '0') * 10 + (unsigned)(s[4] - '0');
  if (m > 59 || h > 24 || (h == 24 && (m != 0 || !end))) return false;
  *out = (uint16_t)((h * 60 + m) % 1440);
  *p = s + 5;
  return true;
}

/* Whether minute m of the day falls in the shift. */
static bool capacity_in(const capacity_shift_t *s, unsigned m) {
  if (s->start_min < s->end_min) return m >= s->start_min && m < s->end_min;
  return m >= s->start_min || m < s->end_min; /* past midnight, or the whole day */
}

/* Whether two shifts share a minute: one of them starts inside the other. */
static bool capacity_overlap(const capacity_shift_t *a, const capacity_shift_t *b) {
  return capacity_in(a, b->start_min) || capacity_in(b, a->start_min);
}

int capacity_parse_roster(const char *text, capacity_t *cap, char *err, size_t errlen) {
  capacity_shift_t v[CAPACITY_SHIFTS_MAX];
  unsigned n = 0;
  const char *p = text ? text : "";
  while (*p == ' ')
    p++;
  while (*p) {
    if (n == CAPACITY_SHIFTS_MAX) {
      snprintf(err, errlen, "a roster has at most %d windows", CAPACITY_SHIFTS_MAX);
      return NIRC_EINVAL;
    }
    capacity_shift_t s = {0};
    const char *at = p;
    if (!capacity_parse_time(&p, false, &s.start_min) || *p++ != '-' ||
        !capacity_parse_time(&p, true, &s.end_min) || *p++ != '=') {
      snprintf(err, errlen, "roster window '%.24s' is not HH:MM-HH:MM=AGENTS", at);
      return NIRC_EINVAL;
    }
    if (*p < '0' || *p > '9') {
      snprintf(err, errlen, "roster window '%.24s' has no number of agents", at);
      return NIRC_EINVAL;
    }
    char *end;
    unsigned long a = strtoul(p, &end, 10);
    if (a > CAPACITY_AGENTS_MAX) {
      snprintf(err, errlen, "roster window '%.24s' names more than %d agents", at,
               CAPACITY_AGENTS_MAX);
      return NIRC_EINVAL;
    }
    s.agents = (uint32_t)a;
    p = end;
    for (unsigned k = 0; k < n; k++)
      if (capacity_overlap(&v[k], &s)) {
        snprintf(err, errlen, "roster windows %02u:%02u-%02u:%02u and %02u:%02u-%02u:%02u overlap",
                 v[k].start_min / 60u, v[k].start_min % 60u, v[k].end_min / 60u, v[k].end_min % 60u,
                 s.start_min / 60u, s.start_min % 60u, s.end_min / 60u, s.end_min % 60u);
        return NIRC_EINVAL;
      }
    v[n++] = s;
    while (*p == ' ')
      p++;
    if (*p == ',') {
      p++;
      while (*p == ' ')
        p++;
      if (!*p) {
        snprintf(err, errlen, "roster ends with a comma");
        return NIRC_EINVAL;
      }
    } else if (*p) {
      snprintf(err, errlen, "roster: unexpected '%c' after a window (windows are separated by ,)",
               *p);
      return NIRC_EINVAL;
    }
  }
  memcpy(cap->shift, v, n * sizeof v[0]);
  cap->n_shift = n;
  return 0;
}

void capacity_format_roster(const capacity_t *cap, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (unsigned k = 0; k < cap->n_shift && used + 1 < len; k++) {
    const capacity_shift_t *s = &cap->shift[k];
    int w = snprintf(buf + used, len - used, "%s%02u:%02u-%02u:%02u=%" PRIu32, k ? "," : "",
                     s->start_min / 60u, s->start_min % 60u, s->end_min / 60u, s->end_min % 60u,
                     s->agents);
    if (w < 0) break;
    used += (size_t)w;
  }
}

int capacity_validate(const capacity_t *cap, char *err, size_t errlen) {
  if (cap->utc_offset_min < -14 * 60 || cap->utc_offset_min > 14 * 60) {
    snprintf(err, errlen, "UTC offset %" PRId32 " min is outside -840..840", cap->utc_offset_min);
    return NIRC_EINVAL;
  }
  if (cap->seats > CAPACITY_AGENTS_MAX) {
    snprintf(err, errlen, "%" PRIu32 " seats is more than %d", cap->seats, CAPACITY_AGENTS_MAX);
    return NIRC_EINVAL;
  }
  for (unsigned k = 0; cap->seats && k < cap->n_shift; k++)
    if (cap->shift[k].agents > cap->seats) {
      snprintf(err, errlen,
               "the roster puts %" PRIu32 " agents at %02u:%02u but the site has %" PRIu32 " seats",
               cap->shift[k].agents, cap->shift[k].start_min / 60u, cap->shift[k].start_min % 60u,
               cap->seats);
      return NIRC_EINVAL;
    }
  return 0;
}

bool capacity_agents_at(const capacity_t *cap, int64_t at_ms, uint32_t *agents, char *note,
                        size_t notelen) {
  if (!cap->configured || (cap->seats == 0 && cap->n_shift == 0)) return false;
  int64_t local = at_ms / 60000 + cap->utc_offset_min;
  unsigned m = (unsigned)(((local % 1440) + 1440) % 1440);
  if (cap->n_shift == 0) {
    *agents = cap->seats;
    if (note) snprintf(note, notelen, "configured seats, %" PRIu32 " agents", cap->seats);
    return true;
  }
  *agents = 0;
  for (unsigned k = 0; k < cap->n_shift; k++)
    if (capacity_in(&cap->shift[k], m)) *agents = cap->shift[k].agents;
  if (note)
    snprintf(note, notelen, "configured roster, %" PRIu32 " agents at %02u:%02u", *agents, m / 60,
             m % 60);
  return true;
}

uint32_t capacity_report_limit(const capacity_t *cap) {
  if (!cap->configured) return 0;
  uint64_t most = cap->seats;
  for (unsigned k = 0; k < cap->n_shift; k++)
    if (cap->shift[k].agents > most) most = cap->shift[k].agents;
  if (most == 0) return 0;
  return (uint32_t)((most * CAPACITY_HEADROOM_PCT + 99) / 100 + CAPACITY_HEADROOM_ADD);
}
