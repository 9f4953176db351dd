/* history: see history.h. */
#include "history.h"

#include "err.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A minute counts when at least one of its reports could read the PBX
 * (unreadable minutes are missing data, not quiet ones). offered is the
 * site's own calls (answered there or routed away; never credited
 * inbound). Handle time: avg_aht_ms weighted by the calls answered, over
 * the minutes that measured it (NULL or 0: not measured, left out).
 * Minutes are binned into half-hours from a local midnight (date_bin on
 * the stored instant), so a zone at +05:45 is still cut at :00 and :30 of
 * its own clock; only the half-hours are then turned into local dates and
 * slots (not measurably faster than converting every minute: the scan
 * and the sort dominate, docs/FORECAST.md). The hour a DST change repeats becomes one
 * half-hour of up to 60 minutes, which the forecast leaves out. */
const char HISTORY_SQL[] =
    "SELECT site, to_char(l, 'YYYYMMDD')::int, "
    " (extract(hour from l)::int * 60 + extract(minute from l)::int) / 30, "
    " sum(n), sum(calls), coalesce(sum(aht_w) / nullif(sum(ans_w), 0) / 1000.0, 0) "
    "FROM (SELECT site, b AT TIME ZONE $1 AS l, count(*) AS n, sum(offered) AS calls, "
    "  sum(avg_aht_ms * answered) FILTER (WHERE avg_aht_ms > 0 AND answered > 0) AS aht_w, "
    "  sum(answered) FILTER (WHERE avg_aht_ms > 0 AND answered > 0) AS ans_w "
    " FROM (SELECT site, offered, answered, avg_aht_ms, "
    "   date_bin('30 minutes', minute, '2000-01-01'::timestamp AT TIME ZONE $1) AS b "
    "  FROM load_minute "
    "  WHERE minute >= to_timestamp($3::bigint / 1000.0) - make_interval(days => 7 * $2::int + 1) "
    "   AND minute < to_timestamp($3::bigint / 1000.0) AND unreadable_reports < reports) m "
    " GROUP BY site, b) h "
    "GROUP BY site, l ORDER BY site, l";

static bool history_num(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
  *out = v;
  return true;
}

int history_parse(PGresult *res, engine_history_row_t **out, size_t *n, char *why, size_t len) {
  *out = NULL;
  *n = 0;
  if (PQnfields(res) != 6) {
    snprintf(why, len, "load history: %d columns, expected 6", PQnfields(res));
    return NIRC_EINVAL;
  }
  int rows = PQntuples(res);
  engine_history_row_t *v = calloc(rows ? (size_t)rows : 1, sizeof *v);
  if (!v) {
    snprintf(why, len, "out of memory reading %d half-hours of load history", rows);
    return NIRC_ENOMEM;
  }
  for (int r = 0; r < rows; r++) {
    double date, slot, minutes, calls, aht;
    const char *site = PQgetvalue(res, r, 0);
    if (strlen(site) >= sizeof v[r].site ||
        !history_num(PQgetvalue(res, r, 1), 19000101, 99991231, &date) ||
        !history_num(PQgetvalue(res, r, 2), 0, 47, &slot) ||
        !history_num(PQgetvalue(res, r, 3), 0, 60, &minutes) ||
        !history_num(PQgetvalue(res, r, 4), 0, 1e12, &calls) ||
        !history_num(PQgetvalue(res, r, 5), 0, 1e9, &aht)) {
      snprintf(why, len, "load history: row %d is not a site's half-hour", r + 1);
      free(v);
      return NIRC_EINVAL;
    }
    nirc_strlcpy(v[r].site, site, sizeof v[r].site);
    v[r].s = (forecast_sample_t){(int32_t)date, (uint8_t)slot, (uint16_t)minutes, calls, aht};
  }
  *out = v;
  *n = (size_t)rows;
  return 0;
}

typedef struct {
  history_cb cb;
  void *arg;
} history_req_t;

static void history_done(void *arg, int err, const char *msg, PGresult *res) {
  history_req_t *q = arg;
  engine_history_row_t *rows = NULL;
  size_t n = 0;
  char why[200];
  if (!err && res) {
    err = history_parse(res, &rows, &n, why, sizeof why);
    if (err) msg = why;
  } else if (!err) {
    err = NIRC_EDB;
  }
  if (err) {
    char text[240];
    snprintf(text, sizeof text, "%s", msg && *msg ? msg : "database unavailable");
    q->cb(q->arg, err, text, NULL, 0);
  } else {
    q->cb(q->arg, 0, NULL, rows, n);
  }
  free(q);
}

int history_load(db_t *db, const char *tz, unsigned weeks, int64_t now_ms, history_cb cb,
                 void *arg) {
  history_req_t *q = malloc(sizeof *q);
  if (!q) return NIRC_ENOMEM;
  *q = (history_req_t){cb, arg};
  char w[16], now[32];
  snprintf(w, sizeof w, "%u", weeks);
  snprintf(now, sizeof now, "%lld", (long long)now_ms);
  const char *p[] = {tz && *tz ? tz : "UTC", w, now};
  int rc = db_exec(db, HISTORY_SQL, 3, p, history_done, q);
  if (rc) free(q);
  return rc;
}
