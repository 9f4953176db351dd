/* admit: what the controller does with a new connection when the
 * unauthenticated links are at [controller] max_unauthenticated (issue 15,
 * point 6).
 *
 * A reconnect storm and a flood of half-open connections both fill the
 * cap, and want opposite answers:
 *  - In a storm every place holds a handshake that is making progress, and
 *    handshakes complete at the rate the core allows. Closing newcomers at
 *    once only sends them into a growing backoff (the server idles between
 *    waves), and evicting a handshake that is merely slow (each loop turn is
 *    slow under a storm) throws its work away: 256 places evicted after a
 *    second each, again and again, was a livelock. So newcomers wait in the
 *    kernel's listen backlog (the listener is not read) until a place frees.
 *  - In a flood the places are held by peers that send nothing: a link
 *    silent for ADMIT_STALLED_MS gives its place to a newcomer, and while
 *    nothing has moved for ADMIT_FLOOD_MS (no byte, no completion) the
 *    listener sheds (accepts and closes at once) instead of waiting, so the
 *    backlog does not queue agents behind thousands of half-open sockets.
 *    Not while bytes still arrive on the queued links: slow handshakes
 *    are progress too, and shedding then only feeds the agents' backoff.
 *
 * Sans-I/O: the caller passes the state and the time in and acts. */
#ifndef NIRC_ADMIT_H
#define NIRC_ADMIT_H

#include <stdbool.h>
#include <stdint.h>

/* Silence after which an unauthenticated link that never sent a byte is
 * stalled (a half-open connection), and the time without a completed
 * authentication after which a full cap sheds newcomers. */
#define ADMIT_STALLED_MS 1000
/* Silence after which a link in the middle of its handshake (it sent its
 * ClientHello) is stalled: a peer on a loaded machine may take over a
 * second per flight, and evicting it throws away work both sides did
 * (20,000 agents from two swarm processes on 2 cores: 256 such links
 * evicted a second). The handshake timeout still bounds it. */
#define ADMIT_SLOW_MS 3000
/* A full cap whose links have sent nothing for this long, with no
 * handshake completed meanwhile, is a flood: newcomers are shed instead of
 * waiting. Longer than a loop turn or two (agents send their ClientHello
 * at once), short enough that the backlog is drained before the
 * flooders' SYNs are retransmitted (1 s), or they and the agents behind
 * them are dropped again until 3 s. */
#define ADMIT_FLOOD_MS 250

typedef enum {
  ADMIT_ACCEPT = 0, /* a place is free: accept and start the handshake */
  ADMIT_EVICT,      /* close the oldest stalled link, then accept */
  ADMIT_WAIT,       /* leave it in the listen backlog until a place frees */
  ADMIT_SHED,       /* accept and close at once */
} admit_action_t;

/* The state a decision needs. Times are milliseconds of one clock. */
typedef struct {
  unsigned nunauth; /* unauthenticated links now */
  unsigned cap;     /* max_unauthenticated */
  bool stalled;     /* some unauthenticated link is stalled (admit_stalled) */
  int64_t now_ms;
  int64_t last_auth_ms;  /* last time a link left the cap authenticated; 0: never */
  int64_t full_since_ms; /* since when the cap has been full with newcomers waiting; 0: not */
  /* Some unauthenticated link is in its handshake and not stalled
   * (admit_in_progress): handshakes are moving, if slowly (peers on a
   * loaded machine). */
  bool queue_active;
} admit_state_t;

admit_action_t admit_decide(const admit_state_t *s);
/* Whether an unauthenticated link may give its place to a newcomer:
 * got_bytes, it has sent something; idle_ms, since its last byte (or its
 * accept). */
bool admit_stalled(bool got_bytes, uint64_t idle_ms);
/* Whether an unauthenticated link counts as a handshake making progress,
 * which makes newcomers wait rather than be shed: it has sent its
 * ClientHello and is not yet stalled. Its silence since then is the
 * peer's turn, and a peer on a loaded machine may take seconds for it:
 * 10,000 agents in one process answered their server flights over 1-3 s,
 * and a 1 s bound shed 9,700 of them in a cold start (bench/storm.py),
 * sending them into their backoff. The same ADMIT_SLOW_MS as eviction,
 * so a link counts as progress exactly until it may be evicted. */
bool admit_in_progress(bool got_bytes, uint64_t idle_ms);
const char *admit_action_name(admit_action_t a);

#endif
