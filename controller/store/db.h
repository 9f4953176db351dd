/* db: PostgreSQL for the controller.
 *
 * Two halves with different rules:
 *  - db_admin_*: blocking libpq calls for start-up and one-shot commands
 *    (nircd migrate, schema check, seeding sites). Never called once the
 *    event loop runs.
 *  - db_*: an asynchronous client on the libuv loop. One connection driven
 *    by a uv_poll_t as a state machine (PQconnectStart/PQconnectPoll, then
 *    non-blocking PQsendQueryParams with the documented PQflush loop,
 *    results drained with PQgetResult to NULL). Queries are queued (bounded)
 *    and run in order; when the connection drops, it reconnects with
 *    exponential backoff and the queued queries wait and are then sent.
 *
 * Writes that form the audit trail and the history go through
 * db_exec_once(): each carries an idempotency key that the database records
 * in the same statement (table journal_keys), so such a write can be sent
 * again whenever its outcome is unknown and still lands exactly once. While
 * the database is unreachable these writes go to an on-disk journal
 * (bounded, CRC per record, see docs/ARCHITECTURE.md) and are replayed in
 * order, with their keys, when it returns, also by the next nircd if this
 * one stops first.
 *
 * The schema version the code expects is DB_SCHEMA_VERSION; migrations live
 * in schema/NNN_name.sql and are applied in order by db_admin_migrate(). */
#ifndef NIRC_DB_H
#define NIRC_DB_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "db-t.h"

/* Creates the client and starts connecting. conninfo is copied. */
int db_open(uv_loop_t *loop, const char *conninfo, db_t **out);
/* The same with options. With a journal, the file is opened (created if
 * absent, locked against a second process) before this returns, and the
 * records a previous run left in it are replayed first once connected.
 * Returns 0, NIRC_EINVAL, NIRC_ENOMEM or NIRC_EIO (journal unusable,
 * logged with the fix). */
int db_open_opts(uv_loop_t *loop, const char *conninfo, const db_opts_t *opts, db_t **out);
/* Queues one parameterised statement ($1..$n, text format; NULL param =
 * SQL NULL). sql and params are copied. cb may be NULL. Returns 0,
 * NIRC_EFULL when DB_QUEUE_MAX queries wait, or NIRC_EINVAL. */
int db_exec(db_t *db, const char *sql, int nparams, const char *const *params, db_result_cb cb,
            void *arg);
/* Queues one INSERT or UPDATE that must land exactly once (the audit trail,
 * link events, directives and acks, rules, load history). It is sent as
 *   WITH nirc_w AS (<sql>) INSERT INTO journal_keys (key) VALUES ($n+1)
 * with a fresh key, so `sql` is one data-modifying statement without a
 * trailing semicolon, a RETURNING clause or a reliance on the row count
 * (the result is that of the key's INSERT). While the database is
 * unreachable, and until the journal has drained (to keep the order), the
 * write goes to the journal; a write in flight when the connection breaks
 * is sent again (or journaled). Returns 0, NIRC_EINVAL, NIRC_ERANGE (larger
 * than DB_JOURNAL_RECORD_MAX), NIRC_ECLOSED, NIRC_EFULL (DB_QUEUE_MAX
 * queued, or the journal is at journal_max: logged with the fix and
 * counted in refused_total) or NIRC_EIO (the journal cannot be written). */
int db_exec_once(db_t *db, const char *sql, int nparams, const char *const *params, db_result_cb cb,
                 void *arg);
/* A statement that has had no answer for this long means the database is
 * hung (a frozen server, a storage stall, a path that drops packets): the
 * connection is dropped and treated as lost, so once-writes go to the
 * journal instead of waiting on it, and other queries fail with a reason. */
#define DB_QUERY_TIMEOUT_MS 5000u
/* An operator waits for the answer to a change, and nircctl gives up after
 * its --timeout (5 s by default): a change accepted while connected
 * (db_once_ready) gives the database this long to answer its writes, and
 * a statement that has then had no answer for DB_CHANGE_WAIT_MS or more
 * means the database is hung, as above, so the change is journaled and
 * answered within about this bound instead of DB_QUERY_TIMEOUT_MS. */
#define DB_CHANGE_ANSWER_MS 1500u
#define DB_CHANGE_WAIT_MS   1000u

/* The share of journal_max that bulk once-writes (link events, load
 * minutes, acks) may fill; the rest is kept for operator changes, rules,
 * directives and the audit trail. */
#define DB_JOURNAL_BULK_PCT 75
/* Room an operator change needs in the journal to be accepted. */
#define DB_JOURNAL_CHANGE_ROOM (4u * 1024u)
/* A change accepted (db_once_ready) may take more than that room: a
 * schedule set with its exception dates before and after takes over
 * 4 KiB, a cutover one directive per source. Its writes, queued in the
 * same turn of the loop, are journaled whole, past journal_max by up to
 * this much if need be: a change half journaled (its rule row without its
 * audit entry, say) would be in force and not on record. */
#define DB_JOURNAL_CHANGE_GRANT (64u * 1024u)

/* db_exec_once for a write that reads history (load minutes, link events,
 * acks) and so must not overtake history queued before it: never shed,
 * but not urgent (an urgent write goes ahead of queued history). */
int db_exec_once_in_order(db_t *db, const char *sql, int nparams, const char *const *params,
                          db_result_cb cb, void *arg);

/* db_exec_once for history that may be shed under pressure: while
 * journaling, it is refused (NIRC_EFULL, counted in shed_total, logged as
 * an alarm once a minute) when the journal would pass
 * DB_JOURNAL_BULK_PCT of journal_max. */
int db_exec_once_bulk(db_t *db, const char *sql, int nparams, const char *const *params,
                      db_result_cb cb, void *arg);
/* db_exec_once for a record that must not be shed but need not go first
 * (the alarm record): urgent writes overtake it like history, it never
 * overtakes history, and such records keep their order among themselves
 * (an alarm's clear or ack after its raise). */
int db_exec_once_record(db_t *db, const char *sql, int nparams, const char *const *params,
                        db_result_cb cb, void *arg);
/* Whether an operator change can be made durable now: committed to the
 * database, or written and synced in the journal with
 * DB_JOURNAL_CHANGE_ROOM to spare. 0, or NIRC_ECLOSED, NIRC_EFULL or
 * NIRC_EIO with a message for the operator naming the cause and the fix.
 * After 0 while journaling, the urgent once-writes (db_exec_once) made
 * before the loop turns again are the change's: they may pass journal_max
 * by DB_JOURNAL_CHANGE_GRANT. */
int db_once_ready(db_t *db, char *why, size_t whylen);
/* Completes every queued query with NIRC_ECLOSED (callbacks run), closes
 * the connection and handles; `done` runs once everything is released and
 * the db_t has been freed. Once-writes still queued or in flight are first
 * written to the journal (their callbacks say "journaled") so the next
 * start replays them; without a journal they complete with NIRC_ECLOSED. */
void db_close(db_t *db, void (*done)(void *arg), void *arg);
db_state_t db_state(const db_t *db);
/* How long the database has been unreachable, in ms (0: connected, or no
 * outage seen yet). */
uint64_t db_unreachable_ms(const db_t *db);
const char *db_state_name(db_state_t s);
/* Queries waiting in memory (the journal is counted by db_journal_stats). */
size_t db_queue_depth(const db_t *db);
/* Which writes db_unsaved_changes counts. */
typedef enum {
  DB_UNSAVED_URGENT = 1,  /* rules, directives, the audit trail */
  DB_UNSAVED_RECORDS = 2, /* the alarm record (db_exec_once_record) */
} db_unsaved_t;
/* Writes of the kinds in `which` (DB_UNSAVED_* or'ed) queued or in flight
 * and not yet committed, plus every journaled write not yet applied (the
 * journal does not say which kind a record is, so this is an upper bound).
 * A read on another connection does not see them yet: an operator's read
 * of the audit trail or the alarm record says so (controller/net/ops.c).
 * 0 without a client. */
size_t db_unsaved_changes(const db_t *db, unsigned which);
/* Journal depth and counters; all zero without a client. */
void db_journal_stats(const db_t *db, db_journal_stats_t *out);
/* Queues the deletion of idempotency keys older than DB_KEY_RETENTION. The
 * client does this by itself a minute after it opens and hourly after
 * that; the call is for tests and maintenance. Returns as db_exec. */
int db_prune_keys(db_t *db);

/* ---- start-up only (blocking) ---- */

/* The configuration path to name in fix-it messages (borrowed). */
void db_admin_set_conf_path(const char *path);

/* Reads the schema version. Returns 0 and sets *version (0 when the
 * schema_version table does not exist), or NIRC_EDB with a message. */
int db_admin_schema_version(const char *conninfo, int *version, char *err, size_t errlen);
/* Applies every schema/NNN_*.sql in schema_dir whose NNN is above the
 * current version, each in its own transaction together with the
 * schema_version row. Prints one line per migration to stdout. */
int db_admin_migrate(const char *conninfo, const char *schema_dir, char *err, size_t errlen);
/* Checks the version equals DB_SCHEMA_VERSION; on mismatch returns
 * NIRC_ESCHEMA and an err that names the fix (run `nircd -c FILE migrate`). */
int db_admin_check_schema(const char *conninfo, char *err, size_t errlen);
/* Replays the journal at `path` (creating it if absent, which also proves
 * it is writable) on a blocking connection and empties it, so that state
 * read at start-up includes the writes a previous run journaled. Returns 0,
 * NIRC_EDB when the database could not take them all (the rest stay in the
 * journal for the asynchronous client), or NIRC_EIO when the journal is
 * unusable; err names the file and the fix. */
int db_admin_replay_journal(const char *conninfo, const char *path, char *err, size_t errlen);

#endif
