/* once: once-writes (db_exec_once): the statement each is sent as, what
 * its result means, and the durable side of the asynchronous client (the
 * journal and the callbacks that wait for its sync). See once.c for who
 * owns what. */
#ifndef NIRC_ONCE_H
#define NIRC_ONCE_H

#include "conninfo.h"
#include "db-t.h"
#include "journal.h"
#include "query.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* What a once-write's result means. */
typedef enum {
  ONCE_APPLIED = 0, /* committed now */
  ONCE_DUPLICATE,   /* its key was there: applied before, nothing done now */
  ONCE_FAILED,      /* refused by the database for good: not retried */
  ONCE_RETRY,       /* outcome unknown or a passing condition: send it again */
} once_outcome_t;

/* The durable side of one client. Zeroed, then jnl set up with
 * journal_init (and journal_open when there is a journal); db.c reads jnl
 * for its messages and decisions and changes it only through once_* and
 * journal_open/journal_close. */
typedef struct {
  journal_t jnl;
  query_t *jdone_head, *jdone_tail; /* journaled, told after the next sync */
  uint64_t last_refused_log;        /* uv_now() of the last "journal full" error */
  uint64_t refused_unlogged;        /* refusals since that error */
  uint64_t last_shed_log;           /* uv_now() of the last "shedding" alarm */
  uint64_t shed_unlogged;           /* bulk writes shed since that alarm */
  db_journal_stats_t st;            /* the counters; depth is read from jnl */
  uint64_t replay_applied, replay_dups, replay_failed; /* this drain, for its summary */
} once_t;

/* The statement a once-write with nparams parameters is sent as; the key
 * is parameter nparams+1. Returns a malloc'ed string or NULL. */
char *once_sql(const char *sql, int nparams);
/* Several once-writes (INSERTs) as one statement, so they commit together:
 *   WITH nirc_w1 AS (<sql 1>), ..., nirc_wN AS (<sql N>)
 *   INSERT INTO journal_keys (key) VALUES ($k1), ..., ($kN)
 * with each statement's $i renumbered after the parameters of those before
 * it, and the N keys last. *params (malloc'ed, *nparams entries, borrowed
 * from the records) is what to send with it. Returns a malloc'ed string,
 * or NULL when out of memory or a statement holds a quote or a dollar sign
 * that is not a parameter (not batched then). */
char *once_batch_sql(query_t *const *qs, size_t n, const char ***params, int *nparams);
/* Classifies a once-write's first result (NULL: none arrived). */
once_outcome_t once_outcome(const PGresult *res);

/* A once-write now sits in the journal (q is transferred): its callback
 * runs in once_flush, after the next fdatasync. The caller makes sure
 * once_flush runs on the next turn of the loop, never inside the call
 * that journaled it. */
void once_journaled(once_t *once, query_t *q);
/* Syncs the journal once for everything appended since the last sync, then
 * tells the writers. A callback may close the client; db_close then runs
 * the rest of the list itself. */
void once_flush(once_t *once);
/* Counts and logs a once-write the journal refused (rc from
 * journal_append). The log is an error that names the fix (target: where
 * the database is), repeated at most once a minute; now is uv_now(). */
void once_refused(once_t *once, int rc, uint64_t now, const char *target);
/* A bulk once-write was shed to keep journal room for changes: counted,
 * and raised as an alarm in the log at most once a minute. */
void once_shed(once_t *once, uint64_t now, const char *target);
/* The connection is gone, or the client closes: the once-write that was in
 * flight (`inflight`, already unlinked, or NULL) and the ones queued in qq
 * move to the journal in order, so they survive a restart and keep their
 * place before newer writes. Whatever the journal cannot take stays in
 * memory, in front. Returns how many were journaled (once_journaled). */
size_t once_spill(once_t *once, query_queue_t *qq, query_t *inflight, const char *target);
/* A once-write is settled (not ONCE_RETRY): count it, move the journal on
 * if it came from there, run the callback, free it. */
void once_done(once_t *once, query_t *q, once_outcome_t o, PGresult *res, const char *msg);
/* The oldest journaled write to send, or NULL when it cannot be read back:
 * the file was damaged under us, so it is set aside (logged) with what it
 * still held, or journaling stops if even that fails. */
query_t *once_next(once_t *once);
/* Fills out with the counters and the journal's depth. */
void once_stats(const once_t *once, db_journal_stats_t *out);

#endif
