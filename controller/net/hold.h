/* hold: what a controller that does not lead does with a site link whose
 * handshake is done (issue 15, point 6).
 *
 * Sending an agent to a leader that is dead costs it a refused connect, a
 * backoff and a second full handshake here. A standby cannot tell a dead
 * leader from a live one until it has read the lease again: right after
 * a SIGKILL the lease still looks fresh for half a lease: 732 NOT_LEADER
 * answers sent integration.swarm's 1,000 agents to the dead leader in that
 * time (in bench/storm.py's 10,000, failovers of 23-30 s instead of 13-14:
 * docs/PERFORMANCE.md). So every site link is held, its Hello kept, until
 * the standby knows:
 *  - it leads: the link is answered as by a leader (a Welcome);
 *  - the lease names a leader that is alive: the standby saw that lease
 *    renewed twice since the link arrived. One renewal seen is not
 *    enough: it may have been committed before the link arrived and only
 *    read after (the standby reads every lease/4, the leader renews as
 *    often), and its leader may have died in between. The second was
 *    committed after the first was read, so after the link arrived. The
 *    link is then sent there (NOT_LEADER with its address), ~1-2 lease/4
 *    periods after it arrived;
 *  - nothing, for 1.5 x lease_timeout + 2 s (hold_expire_after_ms: the
 *    standby cannot read the lease, or the election does not end): sent
 *    away as before.
 *
 * Sans-I/O: the caller passes what it knows and acts. */
#ifndef NIRC_HOLD_H
#define NIRC_HOLD_H

#include <stdbool.h>
#include <stdint.h>

/* Renewals of the lease a standby must see after a link arrived before it
 * believes the named leader alive (see above). */
#define HOLD_PROOF_RENEWALS 2

typedef enum {
  HOLD_KEEP = 0, /* not known yet: keep holding */
  HOLD_ADMIT,    /* this controller leads: answer as the leader */
  HOLD_SEND,     /* another leads and is alive, or this one stops: send it away */
} hold_verdict_t;

/* What the controller knows of the election now. */
typedef struct {
  bool leading;      /* this controller leads */
  bool stopping;     /* it stops, or led and lost: it will never answer */
  bool leader_named; /* the lease names a leader (its address is known) */
  bool suspect;      /* that lease has gone unrenewed for half a lease */
  uint64_t renewals; /* renewals of the lease this controller has seen so far */
} hold_view_t;

/* For a link held since the view showed `held_renewals`. */
hold_verdict_t hold_decide(const hold_view_t *v, uint64_t held_renewals);

/* Time to take the lock and load the rules once the lease has run out:
 * the margin of hold_expire_after_ms. */
#define HOLD_ELECTION_WORK_MS 2000
/* How long a link is held at most: then it is sent away as before
 * (NOT_LEADER, with the address known, if any). A dead leader's election
 * ends a lease after the standby read its last renewal, at its next read
 * (a lease/4 period); that read of the last renewal may come up to a
 * period after the link did (a leader killed just after renewing, read
 * just before its next renewal). So two periods more than a lease, and
 * the work of taking over. */
uint64_t hold_expire_after_ms(uint64_t lease_ms);

#endif
