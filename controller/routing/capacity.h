/* capacity: a site's configured capacity (pure code, no I/O).
 *
 * A site that does not measure its agents (a Kamailio proxy in front of a
 * call centre knows calls, not people) is still planned on: from what an
 * operator configured for it, seats and a roster by time of day, imported
 * with the sites (nircd import-sites) and changed with `nircctl capacity`.
 * The same configuration bounds what a site may claim in its reports
 * (sites_check_plausible), so a lying agent cannot invent a call centre.
 *
 * A roster is a list of windows in the site's local time (a fixed UTC
 * offset), "08:00-22:00=72,22:00-08:00=28": each window gives the agents
 * on duty from its start (included) to its end (excluded); a window may
 * run past midnight, windows may not overlap, and a time no window covers
 * has no agents (the centre is closed). Seats without a roster mean that
 * many agents all day. */
#ifndef NIRC_CAPACITY_H
#define NIRC_CAPACITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAPACITY_SHIFTS_MAX 8
#define CAPACITY_AGENTS_MAX 100000
/* What a report may claim beyond the configured seats: agents log in on
 * spare positions, supervisors take calls, a roster is rounded. 20 % and
 * five more is loose enough for a real centre and still refuses a claim of
 * a second call centre (docs/SECURITY.md). */
#define CAPACITY_HEADROOM_PCT    120
#define CAPACITY_HEADROOM_ADD    5
#define CAPACITY_ROSTER_TEXT_MAX 160

typedef struct {
  uint16_t start_min, end_min; /* minutes of the local day; end < start runs past midnight */
  uint32_t agents;
} capacity_shift_t;

typedef struct {
  bool configured;
  uint32_t seats; /* 0: not configured (a roster alone bounds by its largest window) */
  capacity_shift_t shift[CAPACITY_SHIFTS_MAX];
  unsigned n_shift;
  int32_t utc_offset_min;
} capacity_t;

/* Where the planner's agents for a site come from. */
typedef enum {
  CAPACITY_MEASURED = 0, /* the site's last report */
  CAPACITY_CONFIGURED,   /* its roster or seats */
  CAPACITY_UNKNOWN,      /* neither: no prediction may be made */
} capacity_source_t;
const char *capacity_source_name(capacity_source_t s);

/* Parses a roster ("" clears it) into cap->shift; the rest of cap is
 * untouched. 0, or NIRC_EINVAL with the reason in err (nothing changed). */
int capacity_parse_roster(const char *text, capacity_t *cap, char *err, size_t errlen);
/* The canonical text of cap's roster ("" when none). */
void capacity_format_roster(const capacity_t *cap, char *buf, size_t len);
/* Checks a whole configuration (roster within seats, offset within a day);
 * 0 or NIRC_EINVAL with the reason. */
int capacity_validate(const capacity_t *cap, char *err, size_t errlen);

/* The agents configured at business time at_ms (Unix ms) and, in note, the
 * planner's words for it ("configured roster, 28 agents at 22:00").
 * False when nothing is configured. */
bool capacity_agents_at(const capacity_t *cap, int64_t at_ms, uint32_t *agents, char *note,
                        size_t notelen);
/* The most agents a report from this site may claim (seats or the largest
 * roster window, with the headroom); 0 when nothing is configured. */
uint32_t capacity_report_limit(const capacity_t *cap);

#endif
