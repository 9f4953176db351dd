/* pbxrecent: see pbxrecent.h. */
#include "pbxrecent.h"

#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* The events server_pbx.c stores for a PbxEvent (the kinds `nircctl site`
 * lists): a new kind stored there belongs here too. The range scan uses
 * link_events_at; the rows per site are numbered newest first (id breaks
 * a tie of times), so only `keep` of each cross the wire. */
const char PBXRECENT_SQL[] =
    "SELECT site, (extract(epoch FROM at) * 1000)::bigint, event, detail FROM ("
    " SELECT site, at, event, detail,"
    "  row_number() OVER (PARTITION BY site ORDER BY at DESC, id DESC) AS n"
    " FROM link_events"
    " WHERE at >= to_timestamp($1::bigint / 1000.0) AND kind = 'site' AND site IS NOT NULL"
    "  AND event IN ('pbx_drift_repaired', 'pbx_drift_not_repaired', 'pbx_verify_failed',"
    "   'route_unconfirmed', 'route_confirmed', 'agent_reverted', 'agent_state_not_saved',"
    "   'agent_state_saved')) e "
    "WHERE n <= $2::int";

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
