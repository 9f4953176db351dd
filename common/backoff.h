/* backoff: exponential reconnect delays with full jitter.
 *
 * delay(n) = uniform(min_ms, min(max_ms, min_ms * 2^n)). Full jitter spreads
 * thousands of agents that lost the same controller at the same moment
 * over the whole window instead of letting them retry in lockstep (the
 * thundering herd after a failover). The lower bound min_ms keeps a
 * flapping link from spinning. */
#ifndef NIRC_BACKOFF_H
#define NIRC_BACKOFF_H

#include <stdint.h>

typedef struct {
  uint32_t min_ms;
  uint32_t max_ms;
  uint32_t attempt; /* times the ceiling was raised since the last success */
  uint32_t round;   /* backoff_next_rotating: failures in this round of the list */
  uint64_t rng;     /* xorshift state; never 0 */
} backoff_t;

/* min_ms >= 1, max_ms >= min_ms; seed 0 picks a seed from the clock and pid. */
void backoff_init(backoff_t *b, uint32_t min_ms, uint32_t max_ms, uint64_t seed);
/* Next delay; advances the attempt counter. */
uint32_t backoff_next(backoff_t *b);
/* Next delay of a client that rotates through naddrs servers on failure:
 * the ceiling doubles once per round through the list, not once per
 * server. A definite "nobody there" from a dead controller (a refused
 * connect, in microseconds) then costs the same as one try of a live
 * one. Doubled per failure, agents' windows reached 16-30 s within three
 * rounds of a failover (the dead leader refused, the busy new leader
 * timed out) and the new leader idled while they waited them out
 * (docs/PERFORMANCE.md). With naddrs <= 1 it is backoff_next. */
uint32_t backoff_next_rotating(backoff_t *b, unsigned naddrs);
/* Upper bound of the window the next backoff_next() draws from. */
uint32_t backoff_ceiling(const backoff_t *b);
/* Call after a successful connection. */
void backoff_reset(backoff_t *b);

#endif
