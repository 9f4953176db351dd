/* kam_counts: the per-destination call counters of the shipped
 * kamailio.cfg (htable "nirc", items "sent::<site>", read with the
 * htable.dump RPC), parsed and turned into the counts of one interval.
 * Pure: no I/O; used by adapter_kamailio.c and unit-tested on its own.
 *
 * Kamailio's answer is the peer's bytes: every name is checked (a site
 * slug or "unknown"), every value is a non-negative integer in range, and
 * at most KAMCOUNTS_MAX sites are kept; anything else makes the whole dump
 * "not understood", never a partial count. */
#ifndef NIRC_KAM_COUNTS_H
#define NIRC_KAM_COUNTS_H

#include "scenario.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KAMCOUNTS_MAX 64

typedef struct {
  char site[SCENARIO_SLUG_MAX];
  uint64_t sent; /* cumulative since Kamailio started */
} kamcounts_entry_t;

typedef struct {
  kamcounts_entry_t v[KAMCOUNTS_MAX];
  unsigned n;
  uint64_t unknown; /* calls to a line whose duid is not a site name */
} kamcounts_t;

/* Reads htable.dump's result (an array of {"entry", "size", "slot": [{"name",
 * "value", "type"}]}) into *out. Items not named "sent::..." are ignored.
 * 0, or NIRC_EPROTOCOL with a reason that quotes nothing of the answer. */
int kamcounts_parse(const json_t *result, kamcounts_t *out, char *err, size_t errlen);

/* Most other sites one interval reports (as adapter.h's ADAPTER_ROUTED_MAX). */
#define KAMCOUNTS_ROUTED_MAX 16

/* The counts of one interval. */
typedef struct {
  uint32_t home;                              /* sent to this site's own PBX */
  uint32_t away;                              /* sent anywhere else, unknown included */
  kamcounts_entry_t to[KAMCOUNTS_ROUTED_MAX]; /* sent: calls to that site */
  unsigned n_to;
} kamcounts_delta_t;

/* Calls sent to `site` so far (0 if none yet). */
uint64_t kamcounts_get(const kamcounts_t *c, const char *site);

/* The interval between `base` and `now`: calls sent to `self`, and to
 * each other site with a non-zero count (`away` also counts "unknown").
 * A counter that went back means Kamailio restarted: then everything in
 * `now` is new. Returns true in that case. Sites beyond
 * KAMCOUNTS_ROUTED_MAX are counted in `away` only. */
bool kamcounts_interval(const kamcounts_t *base, const kamcounts_t *now, const char *self,
                        kamcounts_delta_t *d);

#endif
