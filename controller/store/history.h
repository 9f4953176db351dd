/* history: the load history the demand forecast reads, from load_minute.
 *
 * One asynchronous query aggregates a site's per-minute rows into local
 * half-hours of the business day (site, local date, slot, minutes with a
 * readable report, own offered calls, calls-weighted handle time where
 * measured) over the last `weeks` weeks before business time now_ms. The
 * aggregation is in SQL so only 48 rows per site and day cross the wire.
 *
 * Ownership: history_load copies its arguments; the callback gets a
 * malloc'ed array it owns (free()), or an error and NULL. */
#ifndef NIRC_HISTORY_H
#define NIRC_HISTORY_H

#include "db.h"
#include "engine.h"

#include <stddef.h>
#include <stdint.h>

/* The statement: $1 zone (IANA), $2 weeks, $3 business now in Unix ms.
 * Columns: site, date (YYYYMMDD), slot, minutes, calls, aht_s (0: not
 * measured). Rows sorted by site. Shared with tools/forecast_compare.c. */
extern const char HISTORY_SQL[];

/* Parses a result of HISTORY_SQL into rows (malloc'ed, *out; *n rows).
 * 0, NIRC_ENOMEM, or NIRC_EINVAL with why (a row that is not what the
 * query returns). */
int history_parse(PGresult *res, engine_history_row_t **out, size_t *n, char *why, size_t len);

/* Called once: err 0 with rows (owned by the callee, may be NULL when
 * n == 0), or err < 0, rows NULL and msg saying why. */
typedef void (*history_cb)(void *arg, int err, const char *msg, engine_history_row_t *rows,
                           size_t n);

/* Queues the query. 0 (cb runs later) or a db_exec error (cb never runs). */
int history_load(db_t *db, const char *tz, unsigned weeks, int64_t now_ms, history_cb cb,
                 void *arg);

#endif
