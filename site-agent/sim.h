/* sim: a call-centre simulator for one site (pure code, no I/O, no libuv).
 *
 * It models one ACD queue: Poisson arrivals whose rate follows the
 * scenario's diurnal profile, a pool of agents that changes with the
 * shift, exponential handle times around the site's AHT, first-come
 * first-served queueing, and callers who abandon after an exponential
 * patience. Routing: a share of the site's own arrivals leaves (is answered
 * elsewhere) according to its route; a hub additionally receives the
 * traffic that its inbound sources send to it, computed from the same
 * scenario and clock, so no message between agents is needed.
 *
 * Time is business time (see clock.h); the caller advances it with
 * sim_advance() in steps of any size (the agent uses its report interval
 * times the clock speed). All randomness comes from one seeded PRNG so a
 * test can replay a run exactly. */
#ifndef NIRC_SIM_H
#define NIRC_SIM_H

#include "scenario.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sim sim_t;

/* One inbound flow into a hub: `permille` of source `slug`'s arrivals. */
typedef struct {
  char slug[SCENARIO_SLUG_MAX];
  unsigned permille;
} sim_inflow_t;

/* Counters since the last sim_take_report(), plus instantaneous state. */
typedef struct {
  uint32_t offered; /* arrivals that reached this site's queue, own + inbound */
  uint32_t answered;
  uint32_t abandoned;
  uint32_t answered_within;  /* answered within sc->sl_threshold_s */
  uint32_t from_other_sites; /* of `offered`, how many came from inbound sources */
  uint32_t routed_away;      /* own arrivals sent elsewhere by the route */
  uint32_t in_queue;
  uint32_t queue_peak; /* most callers waiting at once since the last report */
  uint32_t longest_wait_ms;
  uint32_t agents_logged_in;
  uint32_t agents_ready; /* logged in, idle */
  uint32_t agents_talking;
  uint32_t agents_not_ready; /* logged in, in wrap-up/break: 0 in this model unless set */
  uint32_t aht_ms;           /* mean handle time of calls completed in the interval,
                                or the site's configured AHT if none completed */
} sim_report_t;

/* Creates a simulator for `slug` (must be in sc; sc is borrowed and must
 * outlive the sim). `start_ms` is the business time of the first step.
 * Returns NULL if slug is unknown or memory runs out. */
sim_t *sim_new(const scenario_t *sc, const char *slug, int64_t start_ms, uint64_t seed);
void sim_free(sim_t *s);

/* Fraction of own arrivals kept at home, in permille (1000 = all home,
 * 0 = all moved away). Default 1000. */
void sim_set_home_share(sim_t *s, unsigned permille);
/* Replaces the inbound flows (hub side). Copies `n` entries; unknown
 * slugs are ignored. */
void sim_set_inflows(sim_t *s, const sim_inflow_t *in, unsigned n);
/* What the simulator routes by now (for the sim adapter's read-back): the
 * home share, and the permille `slug` sends here (0: none). */
unsigned sim_home_share(const sim_t *s);
unsigned sim_inflow_of(const sim_t *s, const char *slug);
/* Overrides the shift staffing (e.g. the hub's consolidated night
 * staff); 0 returns to the scenario's schedule. */
void sim_set_agents_override(sim_t *s, unsigned agents);

/* Advances the simulation to business time `now_ms` (monotonic; earlier
 * values are ignored). Internally steps in at most 1 s of business time
 * so queue dynamics stay correct at high clock speeds. */
void sim_advance(sim_t *s, int64_t now_ms);
/* Fills `out` and resets the interval counters. */
void sim_take_report(sim_t *s, sim_report_t *out);

#endif
