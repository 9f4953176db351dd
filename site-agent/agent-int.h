/* agent-int: the agent's internal parts, shared by agent.c and
 * agent_pbx.c, the agent's side of "the PBX is the truth":
 *
 * - Verified applies: agent_pbx_apply() runs the adapter's apply and, when
 *   the PBX says it took the route, reads the PBX back (adapter verify);
 *   only a match counts as applied. An adapter that cannot read back says
 *   so and the apply counts as applied *unverified*, with those words.
 * - Drift repair: once the route in force is known (agent_route_state_t:
 *   applied since start; until then agent.c applies it again with
 *   backoff), a timer compares the
 *   PBX with it every [agent] pbx_check_interval, and at once when the PBX
 *   restarted (its uptime went back, for adapters that know it). On a
 *   mismatch the agent applies its route again (APPLY_REPAIR), with or
 *   without a controller.
 * - What it found goes to the controller as PbxEvents, queued while there
 *   is no link (AGENT_PBX_EVENTS_MAX: when full, the first of the outage
 *   and the newest are kept; those between are dropped, counted and said
 *   on the next link as an EVENTS_DROPPED PbxEvent).
 *
 * State lives in agent_t (agent.h); this file only reads and changes the
 * fields documented there as the PBX read-back's. */
#ifndef NIRC_AGENT_INT_H
#define NIRC_AGENT_INT_H

#include "agent.h"

/* Applies a->applying_route through the adapter, then verifies it; `done`
 * gets (a, rc, detail) exactly once: rc 0 (detail empty when verified, or
 * saying it is unverified), NIRC_EUNKNOWN_SITE, or another code with what
 * the PBX did or showed. */
void agent_pbx_apply(agent_t *a, adapter_apply_cb done);
/* After an apply of any purpose finished (rc as given to the agent):
 * notes when the PBX was last read back, reports the outcome of a repair,
 * and tells the controller of a revert the agent made on its own (a
 * REVERTED PbxEvent naming the route's (epoch, version)): also of one the
 * PBX did not take (home is the route in force, unknown), and again once
 * the PBX takes it. Call it before the route state is set, so the
 * controller hears the route before whether it is known. Whether the
 * route is known is the agent's (route_state). */
void agent_pbx_applied(agent_t *a, agent_apply_purpose_t purpose, const route_t *r, int rc,
                       const char *why);
/* Queues an event and sends what is queued if a link is up. */
void agent_pbx_event(agent_t *a, Nirc__PbxEventKind kind, const char *found, const char *expected,
                     const char *detail);
/* Sends the queued events (call when a link reaches REPORTING). */
void agent_pbx_flush(agent_t *a);
/* Fills `ev` from the queued event `e` as it is sent at monotonic time
 * `now_mono` (clock_mono_ms): seen_ago_ms counts from when it was queued.
 * The strings stay `e`'s (borrowed: send before `e` changes). */
void agent_pbx_fill(const agent_t *a, const agent_pbx_event_t *e, uint64_t now_mono,
                    Nirc__PbxEvent *ev);
/* Fills `ev` with what agent_pbx_queue dropped since the last flush
 * (EVENTS_DROPPED), as sent at `now_mono`; false (ev untouched) when
 * nothing was. */
bool agent_pbx_fill_lost(const agent_t *a, uint64_t now_mono, Nirc__PbxEvent *ev);
/* Publishes the agent's /metrics now (agent.c): after every apply of any
 * purpose, every link state change, and every second. */
void agent_publish_metrics(agent_t *a);
/* Starts the drift timer; `repair` applies a route with APPLY_REPAIR. */
void agent_pbx_start(agent_t *a, void (*repair)(agent_t *a, const route_t *r));
void agent_pbx_stop(agent_t *a);

#endif
