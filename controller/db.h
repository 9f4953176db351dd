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
 * The schema version the code expects is DB_SCHEMA_VERSION; migrations live
 * in schema/NNN_name.sql and are applied in order by db_admin_migrate(). */
#ifndef NIRC_DB_H
#define NIRC_DB_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define DB_SCHEMA_VERSION 2
#define DB_QUEUE_MAX      65536 /* queued queries before db_exec returns NIRC_EFULL */
#define DB_MAX_PARAMS     16

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
 * committed); it completes with NIRC_EDB. */
typedef void (*db_result_cb)(void *arg, int err, const char *msg, PGresult *res);

/* Creates the client and starts connecting. conninfo is copied. */
int db_open(uv_loop_t *loop, const char *conninfo, db_t **out);
/* Queues one parameterised statement ($1..$n, text format; NULL param =
 * SQL NULL). sql and params are copied. cb may be NULL. Returns 0,
 * NIRC_EFULL when DB_QUEUE_MAX queries wait, or NIRC_EINVAL. */
int db_exec(db_t *db, const char *sql, int nparams, const char *const *params, db_result_cb cb,
            void *arg);
/* Completes every queued query with NIRC_ECLOSED (callbacks run), closes
 * the connection and handles; `done` runs once everything is released and
 * the db_t has been freed. */
void db_close(db_t *db, void (*done)(void *arg), void *arg);
db_state_t db_state(const db_t *db);
const char *db_state_name(db_state_t s);
size_t db_queue_depth(const db_t *db);

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

#endif
