/* leader: which of the nircd instances sharing one PostgreSQL leads.
 *
 * Leadership is a session-level advisory lock (LEADER_LOCK_KEY) held on a
 * dedicated connection with short TCP keepalives, plus a lease row
 * (leader_lease: node, address, epoch, renewed_at) that the leader renews
 * every lease_timeout / 4. The lock makes two leaders impossible while the
 * database sees both sessions. The lease covers what the lock cannot see:
 * a leader whose session is alive but whose process is not running
 * (SIGSTOP, a hung host). A standby that has watched the lease go
 * unrenewed for lease_timeout terminates the holder's session and takes
 * the lock; the old leader learns it lost when it runs again and steps
 * down.
 *
 * A standby only takes the lock when there is no lease, when the lease
 * names this node (this is the same instance restarted), or when it has
 * itself watched the lease stand still for lease_timeout since it
 * connected. So after a database restart, when every lock is free, the
 * incumbent (which reconnects and renews within a period) keeps leading
 * instead of losing a race to a standby.
 *
 * Each new leader takes a new epoch from epoch_seq and loads the rules.
 * When another session holds a lock on a rule table for longer than the
 * load waits (a DBA's transaction left open), the winner gives the lock
 * and the lease back, names that session in its log (once per set of
 * holders) and in its view (why, which its standby answers carry), and
 * takes no new epoch until those sessions let go. The load has its own
 * connection and at most three quarters of a lease, connecting included,
 * so a database that does not answer cannot hold this thread while the
 * lease it wrote runs out; a load that fails for any other reason is
 * tried again after a back-off (store/elect.h), not every period.
 * A leader that cannot reach the database at all keeps leading (it routes
 * on memory, SPEC 7); when the database returns it must get the lock back
 * with the lease still on its own epoch, or it has lost; it renews nothing
 * before its new session holds the lock, however long its old session
 * (a stopped backend, say) goes on holding it. A leader whose
 * last renewal is older than lease_timeout while the database has not been
 * seen down may have been paused: leader_may_issue() is false until the
 * next renewal decides, so a resumed old leader issues nothing. So is one
 * whose loop did not run for a lease (it asks every tick), even with the
 * database down since: leading on memory is for an outage seen while
 * running, not for one found on waking up, when a standby may have taken
 * over before it.
 *
 * The database work runs on its own thread with blocking libpq calls, so
 * the event loop never waits on it; changes reach the loop through a
 * uv_async_t, which calls on_change on the loop thread.
 *
 * The same connection listens on nirc_sites: every write to the sites
 * table (schema 010's trigger) makes the thread load the table and hand
 * the snapshot to the loop (on_sites), so sites added, changed or removed
 * by any writer reach the leader and the standbys without a restart,
 * within one period (lease_timeout / 4).
 *
 * Ownership: leader_t is owned by its creator (leader_start/leader_stop);
 * the rules handed over with LEADER_LEADING belong to the callback. */
#ifndef NIRC_LEADER_H
#define NIRC_LEADER_H

#include "admin.h"
#include "elect.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* "NIRC" in ASCII: the single-bigint advisory lock of the leader. */
#define LEADER_LOCK_KEY 1313428035LL

typedef enum {
  LEADER_STARTING = 0, /* no answer from the database yet */
  LEADER_STANDBY,      /* another instance leads, or nobody may yet */
  LEADER_LEADING,      /* this instance holds the lock and an epoch */
  LEADER_LOST,         /* led, then lost the lock or the lease: must stop */
  LEADER_STOPPED,
} leader_state_t;

typedef struct leader leader_t;

/* STANDBY: why this controller does not lead although it won the
 * election (the view's `why` says it in words). */
typedef enum {
  LEADER_BLOCK_NONE = 0,
  LEADER_BLOCK_RULES_LOCKED, /* sessions lock the rule tables; tried again once they let go */
  LEADER_BLOCK_RULES_LOAD,   /* the rules could not be loaded otherwise; tried again later */
  /* the lock's holder, whose lease stood still, was asked to end a lease
   * ago and still holds it (a backend that does not run): nobody leads */
  LEADER_BLOCK_LEADER_LOCK,
} leader_block_t;
#define LEADER_BLOCK_COUNT 4

typedef struct {
  leader_state_t state;
  uint64_t epoch;  /* LEADING/LOST: this instance's epoch */
  char hint[128];  /* STANDBY: the leader's advertised address, or "" */
  char holder[64]; /* STANDBY/LOST: the leading node, or "" */
  uint64_t holder_epoch;
  /* STANDBY: the lease named in hint has not been renewed for half a
   * lease (two renewals missed): its leader may be gone, and an election
   * may follow. Site links are then held rather than sent to it. */
  bool suspect;
  /* STANDBY: how many times this standby has read the lease and found it
   * renewed since its previous read (net/hold.h: a leader is believed
   * alive once renewed twice after a link arrived). Only grows. */
  uint64_t renewals;
  bool db_down; /* LEADING: the database cannot be reached now */
  /* LEADING: the database is back, but this instance's old session still
   * holds the lock (its backend has not ended yet): the lease is not
   * renewed until the new session holds the lock, so this instance issues
   * nothing once its last renewal is a lease old (leader_may_issue). */
  bool lock_pending;
  /* LOST: what happened. STANDBY: why no controller leads although this
   * one won the election: a session holds a lock on a rule table, so the
   * rules cannot be loaded (who, and how to end it); "" otherwise. */
  char why[512];
  leader_block_t blocked; /* STANDBY: what `why` is about (NONE when why is "") */
} leader_view_t;

typedef struct {
  const char *conninfo;  /* copied */
  const char *node;      /* copied */
  const char *advertise; /* copied: the address standbys redirect to */
  uint64_t lease_timeout_ms;
  /* The sites table changed (a NOTIFY on nirc_sites from any writer, a
   * reconnect, or this instance taking the lead): called on the loop
   * thread with a fresh snapshot, borrowed for the call, before the
   * leadership callback of the same wake-up. NULL: not followed. */
  void (*on_sites)(void *arg, sites_t *snapshot);
} leader_opts_t;

/* Called on the loop thread after every change of state or hint. With
 * LEADER_LEADING, *rules holds the rules loaded for the new epoch and the
 * callback takes them (admin_rules_free). */
typedef void (*leader_cb)(void *arg, const leader_view_t *v, admin_rules_t *rules);

int leader_start(uv_loop_t *loop, const leader_opts_t *o, leader_cb cb, void *arg, leader_t **out);
/* Stops the thread (joins it; the lock is released with the session) and
 * closes the async handle; `done` runs once the handle is closed and the
 * leader_t freed. */
void leader_stop(leader_t *l, void (*done)(void *arg), void *arg);
void leader_view(leader_t *l, leader_view_t *out);
/* Asks for a new snapshot of the sites table on the next period (the
 * loop could not trust one it was given: server_sites_sync). */
void leader_reload_sites(leader_t *l);
/* True while this instance may send directives (see the header comment).
 * Loop thread only, and asked regularly while leading: a gap of a lease
 * between two calls counts as a pause. */
bool leader_may_issue(leader_t *l);
/* A rule load of this controller given up without an answer whose backend
 * still holds SHARE locks on the rule tables (told in the log once), until
 * it ends: true and *out filled; false and *out zeroed when none (or l is
 * NULL). Loop thread; a copy, taken under the lock. */
bool leader_stuck(leader_t *l, elect_stuck_t *out);
/* What the election found that an operator must be woken for (elect.h:
 * elect_alarm_words decides): a copy, taken under the lock, with the
 * view's state and epoch; zeroed when l is NULL. Loop thread. */
void leader_health(leader_t *l, elect_health_t *out);
const char *leader_state_name(leader_state_t s);
/* "none", "rules_locked", "rules_load", "leader_lock": the metric's reason label. */
const char *leader_block_name(leader_block_t b);

#endif
