/* guard: the controller's limits per peer identity and per source address
 * that no single link can enforce on its own (issue 16).
 *
 *  - Operators: at most max_links links open per operator identity
 *    (certificate subject), and a token bucket on the requests of all its
 *    links together, so a viewer cannot hold hundreds of links or make the
 *    controller build status replies faster than it serves agents. The
 *    bucket outlives the links: nircctl opens one link per command, and a
 *    loop of commands must draw on the same budget.
 *  - Failed handshakes: counted per source address (without the port) and
 *    per interval. The first few distinct failures of an address in an
 *    interval are stored one by one (they are evidence: which certificate,
 *    which cause); the rest are counted and summarised once, when the
 *    interval ends, so a flood of 400 bad handshakes is a handful of rows,
 *    not 400 (each of them a journal record during a database outage).
 *
 * Sans-I/O: the caller passes the time in and stores what it is told to.
 * Memory is bounded: operator entries exist only for identities with a
 * verified certificate and are dropped once idle with a full bucket;
 * address entries are at most hs_max_addrs, beyond which failures share
 * one "other addresses" entry. */
#ifndef NIRC_GUARD_H
#define NIRC_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct guard guard_t;

typedef struct {
  uint32_t max_links;         /* operator links per identity; 0: no cap */
  uint32_t requests_per_s;    /* operator requests per identity; 0: no limit */
  uint32_t request_burst;     /* at once above that rate (>= 1) */
  uint64_t hs_interval_ms;    /* failed handshakes are aggregated over this */
  uint32_t hs_max_addrs;      /* addresses tracked at once */
  uint32_t hs_shown_per_addr; /* distinct failures stored one by one per interval */
} guard_opts_t;

/* Entry kept for failures from addresses beyond hs_max_addrs. */
#define GUARD_OTHER_ADDRS "(other addresses)"

/* 0 and *out, or NIRC_ENOMEM. */
int guard_new(const guard_opts_t *opts, guard_t **out);
void guard_free(guard_t *g);

/* A new operator link of `identity` is authenticated: 0 (counted; call
 * guard_op_close when it closes) or NIRC_EFULL (at the cap: not counted,
 * refuse it). */
int guard_op_open(guard_t *g, const char *identity, int64_t now_ms);
void guard_op_close(guard_t *g, const char *identity, int64_t now_ms);
/* Links `identity` holds now. */
unsigned guard_op_links(const guard_t *g, const char *identity);
/* Takes one request token of `identity`: false when it is over its rate. */
bool guard_op_take(guard_t *g, const char *identity, int64_t now_ms);

/* A handshake from `addr` ("ip" or "ip:port"; the port is ignored)
 * failed with `reason`. True: store this one now. False: it is counted
 * and will be in the address's summary. */
bool guard_hs_failed(guard_t *g, const char *addr, const char *reason, int64_t now_ms);
/* The summary of one address's interval: `count` failures not stored one
 * by one since `since_ms`, the last with `last_reason`. */
typedef void (*guard_hs_summary_cb)(void *arg, const char *addr, uint64_t count,
                                    const char *last_reason, int64_t since_ms);
/* Calls `cb` for every address whose interval has ended (all of them
 * when `all`: at shutdown) with failures left to summarise, and forgets
 * addresses quiet for an interval. */
void guard_hs_flush(guard_t *g, int64_t now_ms, bool all, guard_hs_summary_cb cb, void *arg);
/* Failed handshakes counted and not stored one by one, since start. */
uint64_t guard_hs_aggregated(const guard_t *g);

#endif
