/* elect: when a controller that won the election but could not load the
 * rules tries to lead again, and when it says so. Pure: no I/O, the time
 * is fed in, so the schedule is unit-tested (tests/unit/test_elect.c).
 *
 * Each try takes a new epoch before the load (the epoch fences an older
 * leader's late rule writes: docs/ARCHITECTURE.md), so a load that fails
 * for a reason that stays (a corrupt row, a database that does not answer)
 * and is tried every period fills the epochs table and the log. Tries
 * after failures are spaced out instead, doubling from one period up to
 * ELECT_RETRY_MAX_MS; the failure is logged once, again when its reason
 * changes, and every ELECT_TELL_EVERY_MS while it stands. The wait for
 * sessions that lock the rule tables is store/leader.c's own: it ends as
 * soon as they let go. */
#ifndef NIRC_ELECT_H
#define NIRC_ELECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ELECT_RETRY_MAX_MS  30000u
#define ELECT_TELL_EVERY_MS 600000u
/* A try woken by a change to the rule tables comes no sooner than this
 * after the failed one: a writer that keeps changing them while the load
 * fails costs an epoch per 2 s at most, not one per period. */
#define ELECT_CHANGED_MIN_MS 2000u

typedef struct {
  unsigned failures;  /* consecutive failed tries (0: the last one led, or none yet) */
  uint64_t next_ms;   /* monotonic ms before which no new try is made */
  uint64_t told_ms;   /* when a failure was last logged */
  char told[256];     /* its reason, as logged */
  uint64_t failed_ms; /* when the last try failed */
  /* The rule tables' fingerprint read after the last failure (a load
   * that answered: a row it cannot read may be mended); valid if marked. */
  bool marked;
  uint64_t mark;
} elect_retry_t;

/* The wait after the n-th consecutive failure (n >= 1): period_ms << n,
 * at most ELECT_RETRY_MAX_MS (or period_ms, if that is longer). */
uint64_t elect_retry_delay_ms(unsigned failures, uint64_t period_ms);
/* A try failed at `now` for `reason` (copied): schedules the next one.
 * True when this failure is to be logged: the first, one with another
 * reason than the one last logged, then every ELECT_TELL_EVERY_MS. */
bool elect_retry_failed(elect_retry_t *r, uint64_t now, uint64_t period_ms, const char *reason);
/* After a failure: the rule tables' fingerprint as they are now (any
 * function of every row's identity and version: a mended row changes it). */
void elect_retry_mark(elect_retry_t *r, uint64_t fingerprint);
/* While waiting: the fingerprint read at `now`. True when it differs from
 * the mark (a row was mended, or any other change): the next try is then
 * due at once, but no sooner than ELECT_CHANGED_MIN_MS after the failed
 * one; the mark is spent (the next failure sets a new one). Before, a
 * mended row was noticed on the back-off's schedule, up to 30 s later. */
bool elect_retry_changed(elect_retry_t *r, uint64_t now, uint64_t fingerprint);
/* True when a new try may be made at `now`. */
bool elect_retry_due(const elect_retry_t *r, uint64_t now);
/* The cause is gone (a try led, another controller leads, the sessions
 * locking the rule tables let go): the next try is made at once. */
void elect_retry_reset(elect_retry_t *r);

/* The leader_lease row as the election reads it. node and addr are the
 * row's text, which anyone who may write the table can set to any bytes:
 * they are kept escaped (safetext_escape), because they reach the log,
 * systemd's STATUS= line (where a newline would forge another field), a
 * standby's answers to agents and nircctl, and /metrics. A clean name is
 * kept as it is, so comparing it with our own node ([controller] node is
 * a slug) still tells whether the lease is ours. renewed is PostgreSQL's
 * own timestamptz text, only compared. */
typedef struct {
  bool present;
  char node[64], addr[128], renewed[64];
  uint64_t epoch;
} elect_lease_t;

/* Fills *out from one row's columns (NULL: ""), escaping node and addr. */
void elect_lease_from_row(elect_lease_t *out, const char *node, const char *addr, const char *epoch,
                          const char *renewed);

/* The words a standby logs when it asks PostgreSQL to end the session(s)
 * `pids` holding the leader lock after a lease of `lease_ms` stood still,
 * and the words of its answers (`blocked`) when they have not ended a
 * lease later. *ls is the lease it read: with none (present false), no
 * leader stopped renewing; a session took the lock and never wrote one,
 * and "leader  (epoch 0)" named nobody. */
void elect_evict_words(const elect_lease_t *ls, uint64_t lease_ms, const char *pids, char *out,
                       size_t n);
void elect_evict_blocked_words(const elect_lease_t *ls, const char *pids, char *out, size_t n);

/* A rule load given up without an answer whose backend still holds SHARE
 * locks on the rule tables (store/leader.c watches it until it ends):
 * every write to those tables waits on it, an operator's change too. */
typedef struct {
  int pid;         /* the backend; 0: none known */
  char tables[96]; /* the rule tables it holds, "cutovers, schedules" */
} elect_stuck_t;

/* The words for the alarm (rule_load), a standby's answers and the log's
 * summary: the pid, the tables, that writes wait, and the fix, within
 * `n` bytes (the alarm keeps ALARM_MESSAGE_MAX, 256). "" when pid is 0. */
void elect_stuck_words(const elect_stuck_t *s, char *out, size_t n);

/* ---- leadership conditions an operator must be woken for ----
 *
 * The election thread (and leader_may_issue on the loop) find conditions
 * that their log alone used to say; the loop raises alarms on them from a
 * copy of this (leader_health, server_observe_store), every tick, and the
 * alarm table clears each once it is no longer observed. What raises, and
 * the words, are decided here, free of I/O (tests/unit/test_elect.c).
 * Times are monotonic ms; text from the database is escaped already. */
typedef struct {
  bool leading; /* the election's state is LEADING */
  uint64_t epoch;
  /* Since when leader_may_issue has said no while leading (nothing is
   * issued: no move, no return); 0: it says yes. */
  uint64_t quiet_since_ms;
  uint64_t paused_ms; /* the loop's last gap of a lease or more while quiet (it did not run) */
  bool db_down;       /* leading on memory: the election connection finds no database */
  /* Leading, but this controller's old session (pid) still holds the
   * leader lock after it was asked to end: the lease is not renewed. */
  int old_pid;
  char renew_err[160]; /* the database's refusal of the last renewal, "" */
  /* Reading the sites table fails (a row the controller cannot take, or
   * an error answer) since then; 0: it reads. Its words. */
  uint64_t sites_failed_since_ms;
  char sites_err[200];
  /* A given-up rule load's backend holding SHARE locks on the rule
   * tables: this controller's own, or, leading, any controller's. */
  elect_stuck_t stuck;
} elect_health_t;

typedef enum {
  ELECT_ALARM_QUIET = 0, /* leading, but issuing nothing for a lease: alarm leadership */
  ELECT_ALARM_SITES,     /* the sites table cannot be read for a lease: alarm sites_load */
  ELECT_ALARM_RULE_LOAD, /* a given-up load's backend holds the rule tables: alarm rule_load */
  ELECT_ALARM_COUNT,
} elect_alarm_t;

/* True when alarm `a` holds at `now` (lease_ms: the controller's lease),
 * with its words in `out` (fitted to `n`, ALARM_MESSAGE_MAX for an alarm:
 * the fix comes before any text from the database, which may be cut);
 * false and "" otherwise. Only a leader raises alarms (a standby has no
 * alarm table): false unless h->leading. */
bool elect_alarm_words(const elect_health_t *h, elect_alarm_t a, uint64_t now, uint64_t lease_ms,
                       char *out, size_t n);

#endif
