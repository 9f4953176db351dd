/* pbxrecent: each site's recent PBX events as stored in link_events (the
 * rows server_pbx.c writes for a PbxEvent), read back by a new leader so
 * `nircctl site SLUG` still lists what a PBX did before a restart or a
 * failover.
 *
 * One asynchronous query for every site (20,000 sites are not 20,000
 * queries): the newest `keep` rows since from_ms of each site in the
 * sites table, each site's by a walk of the partial index link_events_pbx
 * (schema 014) that stops after `keep`. Rows are handed over
 * unparsed: at_ms is the stored time (when the agent saw it, as placed),
 * detail the stored text (with when it was seen, as server_pbx.c words
 * it). Both come from the database: the caller escapes them
 * (safetext) before they reach a terminal.
 *
 * Ownership: pbxrecent_load copies its arguments; the PGresult given to
 * the callback, and the strings pbxrecent_row points into, are borrowed
 * for the duration of the callback. */
#ifndef NIRC_PBXRECENT_H
#define NIRC_PBXRECENT_H

#include "db.h"

#include <stddef.h>
#include <stdint.h>

/* The statement: $1 from (Unix ms), $2 rows per site. Columns: site,
 * at in Unix ms, event, detail. For its test (EXPLAIN). */
extern const char PBXRECENT_SQL[];

typedef struct {
  const char *site, *event, *detail; /* borrowed from the result, raw */
  int64_t at_ms;
} pbxrecent_row_t;

/* Called once: err 0 and res (rows: PQntuples), or err < 0, res NULL and
 * msg saying why (as db_result_cb). */
typedef void (*pbxrecent_cb)(void *arg, int err, const char *msg, PGresult *res);

/* Queues the query on `db` (a read connection). 0 (cb runs later) or a
 * db_exec error (cb never runs). */
int pbxrecent_load(db_t *db, int64_t from_ms, unsigned keep, pbxrecent_cb cb, void *arg);
/* Row i of a result: 0, or NIRC_EINVAL when it is not what the query
 * returns (a NULL site, a time that is not a number). */
int pbxrecent_row(const PGresult *res, int i, pbxrecent_row_t *out);

#endif
