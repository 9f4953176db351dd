/* pbxrecent: see pbxrecent.h. */
#include "pbxrecent.h"

#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* The events server_pbx.c stores for a PbxEvent (the kinds `nircctl site`
 * lists): a new kind stored there belongs in the one list below, and in
 * the predicate of the index link_events_pbx (a new migration), or the
 * index no longer serves the query (test_store_pbxrecent checks the plan).
 *
 * Per site in the sites table, newest first (id breaks a tie of times),
 * `keep` rows at most: each site's walk of link_events_pbx stops at the
 * keep-th row or the window's start, so the cost follows the sites and
 * `keep`, not the day's traffic, and nothing is sorted (the old window
 * function over the (at) range read and sorted the whole day). A site no
 * longer in the table is not read (the caller had no use for it). */
const char PBXRECENT_SQL[] =
    "SELECT s.slug, (extract(epoch FROM e.at) * 1000)::bigint, e.event, e.detail FROM sites s"
    " CROSS JOIN LATERAL (SELECT at, event, detail FROM link_events"
    "  WHERE site = s.slug AND kind = 'site' AND at >= to_timestamp($1::bigint / 1000.0)"
    "   AND event IN ('pbx_drift_repaired', 'pbx_drift_not_repaired', 'pbx_verify_failed',"
    "    'route_unconfirmed', 'route_confirmed', 'agent_reverted', 'agent_state_not_saved',"
    "    'agent_state_saved', 'pbx_events_dropped')"
    "  ORDER BY at DESC, id DESC LIMIT $2::int) e";

int pbxrecent_load(db_t *db, int64_t from_ms, unsigned keep, pbxrecent_cb cb, void *arg) {
  char from[24], k[16];
  snprintf(from, sizeof from, "%lld", (long long)from_ms);
  snprintf(k, sizeof k, "%u", keep);
  const char *p[] = {from, k};
  return db_exec(db, PBXRECENT_SQL, 2, p, cb, arg);
}

int pbxrecent_row(const PGresult *res, int i, pbxrecent_row_t *out) {
  if (PQnfields(res) != 4 || i < 0 || i >= PQntuples(res) || PQgetisnull(res, i, 0) ||
      PQgetisnull(res, i, 1))
    return NIRC_EINVAL;
  char *end;
  errno = 0;
  long long at = strtoll(PQgetvalue(res, i, 1), &end, 10);
  if (errno || *end) return NIRC_EINVAL;
  *out = (pbxrecent_row_t){.site = PQgetvalue(res, i, 0),
                           .at_ms = at,
                           .event = PQgetvalue(res, i, 2),
                           .detail = PQgetvalue(res, i, 3)};
  return 0;
}
