/* db-t: the types and limits of the database client (db.h), apart from
 * its functions so that the modules db.c is built from (query.c, once.c,
 * journal.c) can use them without including db.h, which includes them in
 * turn. Callers include db.h, which brings all of this. No functions. */
#ifndef NIRC_DB_T_H
#define NIRC_DB_T_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#define DB_SCHEMA_VERSION 14
#define DB_QUEUE_MAX      65536 /* queued queries before db_exec returns NIRC_EFULL */
#define DB_MAX_PARAMS     24
/* The journal's size unless db_opts_t says otherwise. */
#define DB_JOURNAL_MAX_DEFAULT (64ull * 1024 * 1024)
/* Largest once-write (statement, parameters and key as journaled). */
#define DB_JOURNAL_RECORD_MAX (1024u * 1024u)
/* Idempotency keys are kept this long (pruned hourly): a journal replayed
 * later than that could apply a write twice. */
#define DB_KEY_RETENTION "7 days"

typedef enum {
  DB_DISCONNECTED = 0, /* not started, or closed */
  DB_CONNECTING,       /* PQconnectPoll in progress */
  DB_READY,            /* connected, nothing in flight */
  DB_BUSY,             /* one query in flight */
  DB_BACKOFF,          /* connection lost or refused; waiting to retry */
  DB_CLOSING,
} db_state_t;

typedef struct db db_t;

/* Called once per db_exec, in order. `res` is borrowed (valid only during
 * the callback) and is NULL when the query could not run (then `err` is a
 * negative NIRC_E* code and `msg` says why). For a successful command
 * err == 0 and res has status PGRES_COMMAND_OK or PGRES_TUPLES_OK. A query
 * whose connection dropped while in flight is NOT retried (it may have
 * committed); it completes with NIRC_EDB.
 *
 * For db_exec_once the callback runs once the write is durable, which may
 * be before the callbacks of earlier db_exec queries:
 *  - err == 0, res != NULL: committed now;
 *  - err == 0, res == NULL, msg "already applied": its key was already in
 *    the database (a resend after a lost connection), nothing was done;
 *  - err == 0, res == NULL, msg "journaled": written and fdatasync'ed to the
 *    journal; it is applied exactly once when the database returns;
 *  - err < 0: the database refused the statement (NIRC_EDB, res is the
 *    error), the journal could not be synced (NIRC_EIO), or, without a
 *    journal, the client closed first (NIRC_ECLOSED). */
typedef void (*db_result_cb)(void *arg, int err, const char *msg, PGresult *res);

typedef struct {
  /* Path of the on-disk journal (copied); NULL or "": none, and once-writes
   * then wait in memory only while the database is unreachable. */
  const char *journal;
  uint64_t journal_max; /* bytes the file may grow to; 0: DB_JOURNAL_MAX_DEFAULT */
} db_opts_t;

typedef struct {
  uint64_t records;          /* journaled writes not yet applied */
  uint64_t bytes;            /* their size in the file */
  uint64_t journaled_total;  /* once-writes written to the journal */
  uint64_t replayed_total;   /* journal records applied to the database */
  uint64_t duplicates_total; /* once-writes found already applied, so skipped */
  uint64_t failed_total;     /* once-writes the database refused (logged, dropped) */
  uint64_t refused_total;    /* once-writes refused: journal full or unwritable */
  /* The last refusal was not for room under journal_max but a failed write
   * of the file (no space left on its file system, an I/O error): raising
   * journal_max does not help then. */
  bool refused_unwritable;
  uint64_t shed_total;    /* bulk once-writes refused to keep room for changes */
  uint64_t torn_total;    /* torn last records dropped when the journal was opened */
  uint64_t corrupt_total; /* corrupt journals renamed aside */
  uint64_t batches_total; /* statements that committed several once-writes together */
} db_journal_stats_t;

#endif
