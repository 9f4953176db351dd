/* leader-int.h: the election's state, shared by the files of the leader
 * module and by nothing else. leader.c holds the election (the lock, the
 * lease, taking and keeping the lead) and the hand-over to the loop;
 * leader_rules.c what stands in the way of a new leader's rule load (the
 * sessions locking the rule tables, a given-up load's backend, the
 * failures and their retries) and how it is said. Include it only from
 * those files: everyone else goes through leader.h. */
#ifndef NIRC_LEADER_INT_H
#define NIRC_LEADER_INT_H

#include "leader.h"

#include <libpq-fe.h>

#define LEADER_OBJ "leader"

struct leader {
  uv_loop_t *loop;
  uv_async_t async;
  uv_thread_t thread;
  uv_mutex_t mu;
  uv_cond_t cond;
  leader_cb cb;
  void *arg;
  void (*done)(void *);
  void *done_arg;
  char *conninfo, *node, *advertise;
  uint64_t lease_ms, period_ms;
  bool thread_started;
  /* A pipe: leader_stop writes to wake[1]; the thread polls wake[0] with
   * its database sockets, so a stop ends a wait for a hung database or a
   * lock (the rule load's too) at once. -1: not open. */
  int wake[2];

  /* Shared with the thread, under mu. */
  bool stop;
  leader_view_t view;
  bool rules_ready;
  admin_rules_t rules;
  sites_t *sites;   /* a snapshot of the sites table for the loop, or NULL */
  bool sites_asked; /* the loop asks for a new snapshot (leader_reload_sites) */
  void (*on_sites)(void *arg, sites_t *snapshot);
  uint64_t last_ok_ms; /* monotonic ms of the last acquire or renewal */
  elect_stuck_t stuck; /* the rule-load backend told as stuck, for the loop (leader_stuck) */
  /* What the loop raises alarms on (leader_health): written by the thread,
   * and by leader_may_issue for quiet_since_ms and paused_ms. */
  elect_health_t health;

  /* Loop only (leader_may_issue). */
  uint64_t asked_ms;       /* monotonic ms of the loop's last leader_may_issue, 0: none */
  uint64_t unconfirmed_ms; /* the loop found it had not run for a lease at this time */

  /* Thread only. */
  /* Monotonic ms by which the thread's statements end, once it saw the
   * stop (LEADER_STOP_GRACE_MS after it); 0: not stopping. */
  uint64_t stop_by_ms;
  PGconn *conn;
  char seen_renewed[64]; /* the lease's renewed_at as last read */
  uint64_t watch_since_ms;
  uint64_t last_read_ms; /* standby: monotonic ms of its last successful lease read */
  bool timed_out;        /* the last statement had no answer in time (hung database) */
  char last_err[160];    /* the last statement's failure, escaped ("" after a success) */
  /* The backend pid of this connection once pg_try_advisory_lock returned
   * true on it (0: this session does not hold the lock). Only such a
   * session writes the lease (leader_reclaim says why). */
  int lock_pid;
  /* A session of ours that held the lock and was given up (a statement
   * without an answer, a broken connection): it may still hold the lock,
   * until PostgreSQL ends it. 0: none, or it no longer holds it. */
  int old_pid;
  bool old_asked;      /* pg_terminate_backend was asked for old_pid */
  bool evict_told;     /* standby: its eviction of the standing lease's holder was logged */
  uint64_t evict_ms;   /* standby: monotonic ms of that first eviction; 0: none */
  bool connected_once; /* the sites were loaded by nircd before the first connect */
  bool sites_dirty;    /* the sites table changed (or may have): load it */
  /* The last election this controller won ended with the rules unloaded
   * because sessions held locks on rule tables (locked_epoch: the epoch it
   * took then): no new epoch is taken while such a session stands. The
   * holders last logged, as "pid:tables;..." (logged once per set). */
  bool rules_locked;
  uint64_t locked_epoch;
  char locked_told[256];
  /* Tries after a rule load that failed for another reason (elect.h). */
  elect_retry_t retry;
  /* The backend of a rule load given up without its answer
   * (admin_load_opts_t.pid), which may go on holding the SHARE locks on
   * the rule tables (leader_watch_stuck); 0: none. The epoch it loaded
   * for; whether its locks were logged. */
  int stuck_pid;
  uint64_t stuck_epoch;
  bool stuck_told;
};

/* ---- leader.c ---- */

uint64_t leader_mono_ms(void);
/* How long the rule load waits for the rule tables' locks. */
uint64_t leader_lock_wait_ms(const leader_t *l);
/* Runs one statement on the election connection, bounded by half a lease
 * (thread only): the result with status `want`, or NULL with the reason
 * logged (the connection dropped when it broke or did not answer). */
PGresult *leader_exec(leader_t *l, const char *sql, int n, const char *const *p,
                      ExecStatusType want);

/* ---- leader_rules.c (thread only) ---- */

/* Who holds (or waits for) locks in the way of the rule load: how many
 * sessions (0: none now, -1: no answer); the words in `out`, the set as
 * "pid:tables;..." in `sig`. */
int leader_rule_holders(leader_t *l, char *out, size_t n, char *sig, size_t sn);
/* Watches the backend of a rule load given up without an answer
 * (stuck_pid) until it ends; leading, also any other controller's. */
void leader_watch_stuck(leader_t *l, bool leading);
void leader_tell_locked(leader_t *l, leader_view_t *v, const char *holders, const char *sig);
void leader_tell_failed(leader_t *l, leader_view_t *v, uint64_t epoch, const char *err);
/* The rule tables' fingerprint (elect_retry_changed); false without an answer. */
bool leader_rules_print(leader_t *l, uint64_t *out);
/* True while the sessions that kept this controller from loading the rules
 * on its last win still lock the rule tables. */
bool leader_rules_blocked(leader_t *l, leader_view_t *next);

#endif
