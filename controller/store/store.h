/* store: what the controller writes to PostgreSQL, as SQL.
 *
 * Every row the running controller adds is built here: the routing
 * engine's records (engine_rec_t: audit entries, directives, acks, rule
 * changes, site events) and the network side's link events and load
 * minutes. Each becomes one exactly-once write through db_exec_once, so it
 * lands once even across a lost connection, and goes to the on-disk
 * journal while the database is unreachable (db.h).
 *
 * Ownership: nothing is kept; the record and its strings are borrowed for
 * the call and copied into the query. */
#ifndef NIRC_STORE_H
#define NIRC_STORE_H

#include "db.h"
#include "engine.h"
#include "sites.h"

/* Queues `rec` as its INSERT or UPDATE. Rows carry the record's times
 * (wall_ms, and at_ms as business time), never the time the row reaches
 * the database: a write replayed from the journal keeps its event time. 0 when queued (done, if
 * given, runs once the write is durable or failed), or a negative NIRC_E* code as db_exec_once
 * returns it (done never runs). */
int store_engine_record(db_t *db, const engine_rec_t *rec, engine_stored_cb done, void *arg);
/* The statement a return home's route entry is written with ($1..$9, as
 * store_engine_record binds them): for its test, which checks that the
 * lookup of an earlier entry uses its index (schema/011). Static text. */
const char *store_route_return_sql(void);

/* A link event that happened at wall_ms (real clock): kind "site",
 * "operator" or "unknown"; identity and site may be NULL or "". Returns as
 * db_exec_once. */
int store_link_event(db_t *db, int64_t wall_ms, const char *kind, const char *identity,
                     const char *site, const char *peer, const char *event, const char *detail);

/* One finished load minute of `site`, merged into an existing row of the
 * same minute (a minute can arrive in two parts across a restart). */
int store_load_minute(db_t *db, const char *site, const site_minute_t *m);

#endif
