/* staffing: agents a window needs, each province staffing its own night
 * versus consolidated at the hubs (pure, no I/O; `nircctl report
 * staffing`).
 *
 * The window is cut into 30-minute intervals (STAFF_INTERVAL_MS, the
 * forecast's slot). For every site and interval the caller gives the
 * forecast demand (calls/s) and handle time, or says it could not forecast
 * them. Per interval:
 *   Erlangs          = demand x handle time
 *   agents alone     = Erlang C agents for the site's own calls at the
 *                      service-level target (erlang_agents_needed)
 *   agents at a hub  = the same for the pool the hub answers when the
 *                      window's sources are consolidated: its own calls
 *                      plus, for the schedule's FIRST hub, every source's
 *                      (the hub the planner prefers; later hubs are the
 *                      fallback and answer only their own). The pool's
 *                      handle time is the calls-weighted mean.
 * Totals per interval: alone = the sum over every site; consolidated = the
 * sum over the hubs. The window's figure for a site or a total is its
 * peak interval (agents are staffed for the busiest half hour).
 *
 * Unknown is not zero: a cell the caller could not forecast stays unknown,
 * and every total, pool and peak it would be part of is marked incomplete
 * (the figure then counts only the known cells, and says so). */
#ifndef NIRC_STAFFING_H
#define NIRC_STAFFING_H

#include "scenario.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STAFF_INTERVAL_MS   (30 * 60 * 1000)
#define STAFF_MAX_INTERVALS 48  /* a window of at most 24 hours */
#define STAFF_MAX_SITES     129 /* a schedule's sources and hubs (2 x RULES_MAX_SITES) + 1 */

typedef enum { STAFF_SOURCE = 0, STAFF_HUB } staff_role_t;

/* One site's forecast for the window, from the caller. */
typedef struct {
  char site[SCENARIO_SLUG_MAX];
  staff_role_t role;
  bool first_hub;                    /* the hub the sources consolidate at */
  bool known[STAFF_MAX_INTERVALS];   /* demand and handle time forecast for that interval */
  double cps[STAFF_MAX_INTERVALS];   /* forecast own calls per second */
  double aht_s[STAFF_MAX_INTERVALS]; /* forecast handle time, > 0 where known */
} staff_site_in_t;

/* One figure of one interval (or a window's peak). */
typedef struct {
  bool known;      /* every part of it was forecast */
  bool partial;    /* some parts were not: the figures count only the known ones */
  double calls;    /* in the interval (a peak: the window's total calls) */
  double erlangs;  /* offered load */
  unsigned agents; /* for the service-level target */
} staff_cell_t;

typedef struct {
  staff_cell_t alone[STAFF_MAX_INTERVALS]; /* the site answers its own calls */
  staff_cell_t pool[STAFF_MAX_INTERVALS];  /* hubs: what it answers consolidated */
  staff_cell_t alone_peak, pool_peak;      /* agents and Erlangs at the peak; calls: window total */
} staff_site_out_t;

typedef struct {
  unsigned n_intervals;
  staff_site_out_t site[STAFF_MAX_SITES]; /* in the input's order */
  staff_cell_t total_alone[STAFF_MAX_INTERVALS];
  staff_cell_t total_consolidated[STAFF_MAX_INTERVALS];
  staff_cell_t total_alone_peak, total_consolidated_peak;
} staff_result_t;

/* Computes the window. 0, or NIRC_EINVAL (n_intervals 0 or past
 * STAFF_MAX_INTERVALS, too many sites, no first hub with sources, a bad
 * target or threshold). */
int staff_compute(const staff_site_in_t *sites, size_t n_sites, unsigned n_intervals,
                  double sl_target, double sl_threshold_s, staff_result_t *out);

/* The intervals of the window [from_ms, to_ms): from is floored to a
 * 30-minute boundary of UTC (every zone NIRC schedules in is a whole or
 * half hour from UTC except a few at :45, whose slots then start 15
 * minutes off); 0 when the window is empty or longer than 24 hours. */
unsigned staff_intervals(int64_t from_ms, int64_t to_ms, int64_t *first_ms);

#endif
