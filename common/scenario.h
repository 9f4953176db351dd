/* scenario: the reference 31-province network, loaded from JSON
 * (scenario/provinces.json) with jansson.
 *
 * The scenario is data every process shares: the controller seeds its
 * sites table from it, the simulator takes call volumes, handle times and
 * staffing from it, the demo reads hub names from it. */
#ifndef NIRC_SCENARIO_H
#define NIRC_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>

#define SCENARIO_SLUG_MAX 32
#define SCENARIO_NAME_MAX 64

typedef struct {
  char slug[SCENARIO_SLUG_MAX];    /* "hubei": [a-z][a-z0-9-]*, < 32 chars */
  char name_en[SCENARIO_NAME_MAX]; /* "Hubei" */
  char name_zh[SCENARIO_NAME_MAX]; /* "湖北", UTF-8 */
  char city_en[SCENARIO_NAME_MAX]; /* centre's city: "Wuhan" */
  double lat, lon;                 /* of the centre, for the routing map */
  double day_calls;                /* calls offered 08:00-22:00 local, a typical day */
  double night_calls;              /* calls offered 22:00-08:00 local */
  unsigned aht_s;                  /* average handle time, seconds */
  unsigned agents_day;             /* agents logged in on the day shift */
  unsigned agents_night;           /* agents on its own night shift (before consolidation) */
  bool is_hub;                     /* may receive other sites' traffic */
  bool night_consolidated;         /* one of the provinces moved to the hub at night */
} scenario_site_t;

typedef struct {
  char name[SCENARIO_NAME_MAX];
  char primary_hub[SCENARIO_SLUG_MAX]; /* "shaanxi" */
  char backup_hub[SCENARIO_SLUG_MAX];
  int utc_offset_min; /* local time of every site (China: 480) */
  /* Relative weight of each local hour 0..23; within the day period
   * (08-22) and the night period (22-08) weights are normalised
   * separately, so day_calls/night_calls stay the period totals. */
  double hourly_weight[24];
  unsigned hub_night_agents; /* agents at the primary hub at night after consolidation */
  unsigned patience_s;       /* mean caller patience before abandoning */
  unsigned sl_threshold_s;   /* service-level threshold, e.g. 20 */
  scenario_site_t *sites;    /* owned, `count` entries, file order */
  size_t count;
} scenario_t;

/* Loads and validates `path`. On failure returns NIRC_ECONFIG (or
 * NIRC_EIO/NIRC_ENOMEM) and writes "file:line: reason" into err. */
int scenario_load(const char *path, scenario_t *out, char *err, size_t errlen);
void scenario_free(scenario_t *sc);
/* Borrowed pointer into sc, or NULL. */
const scenario_site_t *scenario_find(const scenario_t *sc, const char *slug);
/* Expected arrival rate (calls per second) of `site` at local time
 * `local_hour` (0.0 <= h < 24.0, fractional). */
double scenario_rate_per_s(const scenario_t *sc, const scenario_site_t *site, double local_hour);
/* Agents logged in at local hour h: agents_day from 08:00 to 22:00,
 * agents_night otherwise. */
unsigned scenario_agents_at(const scenario_site_t *site, double local_hour);

#endif
