/* swarm_retry.h: where a simulated agent's next connection attempt goes
 * (nirc-swarm's swarm_agent.c; pure, so tests/unit/test_swarm_retry.c
 * checks it without a loop). */
#ifndef NIRC_SWARM_RETRY_H
#define NIRC_SWARM_RETRY_H

#include <stdbool.h>

/* A redirect (NOT_LEADER with a hint) is followed at once this many times
 * in a row; after that the agent backs off as after any failure, so two
 * standbys naming each other cannot make it spin. */
#define SW_MAX_REDIRECTS 2

typedef struct {
  unsigned idx;      /* controller address of the next attempt */
  bool use_redirect; /* the attempt goes to the hinted address */
  bool at_once;      /* no backoff before it */
  unsigned redirects;
} sw_retry_t;

/* The next attempt after a link ended or failed to open. redirect: the
 * controller named a leader (hint_idx is that address in the list, or
 * naddrs when the hint is an address outside it); redirects: redirects
 * followed at once since the last Welcome; idx: the address just tried.
 * A fresh redirect is followed at once; once the agent has used its
 * redirects it still goes to the leader it was told about, but after a
 * backoff: rotating on from the hinted address would send an agent whose
 * list starts with the standby back to that standby, which names the
 * leader again, for ever (issue 15, point 7). Without a hint the list
 * rotates, so a dead controller does not keep the agent from a live one. */
sw_retry_t sw_retry_next(bool redirect, unsigned hint_idx, unsigned redirects, unsigned idx,
                         unsigned naddrs);

#endif
