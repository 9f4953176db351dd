/* server_retention: the leader's upkeep of the stored history (issue 18):
 * load_minute retention ([database] history_days), pruned in bounded
 * batches, and each site's latest forecast accuracy read back for
 * /metrics (nirc_forecast_wape_ratio). Both run from the leader's tick,
 * never on an operator's request, on the server's read connection
 * (db_read) where there is one: a prune waiting on a lock of load_minute
 * must not hold up the writes an operator's reply waits for. Part of the
 * server module. */
#include "server.h"

#include "clock.h"
#include "err.h"
#include "log.h"
#include "safetext.h"

#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

/* ---- forecast accuracy for /metrics ---- */

#define SERVER_WAPE_READ_MS 5000

static void server_wape_done(void *arg, int err, const char *msg, PGresult *res) {
  server_t *srv = arg;
  srv->fc_wape_busy = 0;
  (void)msg;
  if (err || !res || !srv->fc_wape) return; /* kept: the next read tries again */
  for (size_t i = 0; i < srv->fc_wape_n; i++)
    srv->fc_wape[i] = -1;
  for (int r = 0; r < PQntuples(res); r++) {
    const site_t *s = sites_find(&srv->sites, PQgetvalue(res, r, 0));
    size_t i = s ? (size_t)(s - srv->sites.v) : SIZE_MAX;
    if (i < srv->fc_wape_n) srv->fc_wape[i] = strtod(PQgetvalue(res, r, 1), NULL);
  }
}

/* Each site's newest stored WAPE; the engine decides when windows close,
 * this only reads what the store wrote. */
/* Long or lock-prone work goes on the read connection (server.h). */
static db_t *server_retention_db(server_t *srv) {
  return srv->db_read ? srv->db_read : srv->db;
}

void server_read_wape(server_t *srv) {
  uint64_t now = uv_now(srv->loop);
  db_t *db = server_retention_db(srv);
  if (!db || srv->fc_wape_busy ||
      (srv->fc_wape && now - srv->fc_wape_read_mono < SERVER_WAPE_READ_MS))
    return;
  /* One figure per site index; sites added while nircd runs grow it. */
  if (!srv->fc_wape || srv->fc_wape_n < srv->sites.n) {
    double *v = realloc(srv->fc_wape, (srv->sites.n + 1) * sizeof *v);
    if (!v) return;
    for (size_t i = srv->fc_wape ? srv->fc_wape_n : 0; i < srv->sites.n; i++)
      v[i] = -1;
    srv->fc_wape = v;
    srv->fc_wape_n = srv->sites.n;
  }
  srv->fc_wape_read_mono = now;
  if (db_unreachable_ms(db)) return;
  if (db_exec(db,
              "SELECT DISTINCT ON (site) site, wape FROM forecast_accuracy WHERE wape IS NOT NULL "
              "ORDER BY site, window_end DESC",
              0, NULL, server_wape_done, srv) == 0)
    srv->fc_wape_busy = 1;
}

/* ---- changes an older leader made that were not applied ---- */

#define SERVER_SUPERSEDED_READ_MS 5000

/* What the last read found: the entries of the alarm's window, by the
 * database's clock. Each read replaces it, so the alarm clears 30 minutes
 * after the newest entry, on whichever controller leads then. */
static void server_superseded_done(void *arg, int err, const char *msg, PGresult *res) {
  server_t *srv = arg;
  srv->sup_busy = 0;
  (void)msg;
  if (err || !res) return; /* the last figures stand; the next read tries again */
  int n = PQntuples(res);
  srv->sup_count = (uint64_t)n;
  srv->sup_change[0] = '\0';
  if (n > 0) safetext_escape(PQgetvalue(res, 0, 0), srv->sup_change, sizeof srv->sup_change);
}

/* The window is read whole every time rather than from the last entry this
 * leader saw: an entry written before this leader's first read, or while
 * no controller led, counts as much as one written under it (the partial
 * index of schema 010 holds only these entries). */
void server_read_superseded(server_t *srv) {
  uint64_t now = uv_now(srv->loop);
  if (srv->sup_count > 0) {
    char m[ALARM_MESSAGE_MAX];
    snprintf(m, sizeof m,
             "%llu rule change%s of an earlier leader, kept in its outage journal, reached the "
             "database after a newer leader had taken over and %s not applied, in the last 30 "
             "minutes (newest: %s); `nircctl history --action superseded` lists them: make "
             "again those still wanted",
             (unsigned long long)srv->sup_count, srv->sup_count == 1 ? "" : "s",
             srv->sup_count == 1 ? "was" : "were", srv->sup_change);
    /* About the rules in the database, not about this node: the next
     * leader adopts the same alarm and keeps it standing. */
    engine_alarm_observe(srv->engine, ALARM_SUPERSEDED, "rules", m);
  }
  db_t *db = server_retention_db(srv);
  if (!db || srv->sup_busy ||
      (srv->sup_read_mono && now - srv->sup_read_mono < SERVER_SUPERSEDED_READ_MS))
    return;
  srv->sup_read_mono = now;
  if (db_unreachable_ms(db)) return;
  if (db_exec(db,
              "SELECT coalesce(detail->>'change', target) FROM audit_log WHERE action = "
              "'superseded' AND at > now() - interval '30 minutes' ORDER BY at DESC, id DESC",
              0, NULL, server_superseded_done, srv) == 0)
    srv->sup_busy = 1;
}

/* ---- load history retention ---- */

/* Bounded batches, so one prune never holds the database (or the FIFO the
 * routing records share) for long: a full batch is followed by the next a
 * second later, otherwise the leader looks again in an hour. */
#define SERVER_PRUNE_BATCH    10000
#define SERVER_PRUNE_FIRST_MS 5000
#define SERVER_PRUNE_EVERY_MS 3600000
#define SERVER_PRUNE_AGAIN_MS 1000

static void server_prune_done(void *arg, int err, const char *msg, PGresult *res) {
  server_t *srv = arg;
  srv->prune_busy = 0;
  if (err) {
    log_warn(LOG_DB, "history", "pruning load history failed (tried again in an hour): %s",
             msg ? msg : nirc_strerror(err));
    return;
  }
  long n = res ? strtol(PQcmdTuples(res), NULL, 10) : 0;
  if (n > 0)
    log_info(LOG_DB, "history", "pruned %ld load minutes older than %u days", n,
             srv->conf->history_days);
  if (n >= SERVER_PRUNE_BATCH) srv->prune_next_mono = uv_now(srv->loop) + SERVER_PRUNE_AGAIN_MS;
}

/* The leader only (called from the leader's tick), off the operator path.
 * The cut-off is on the business clock, as load_minute.minute is. */
void server_prune_history(server_t *srv) {
  uint64_t now = uv_now(srv->loop);
  db_t *db = server_retention_db(srv);
  if (!db || srv->prune_busy || srv->conf->history_days == 0) return;
  if (srv->prune_next_mono == 0) srv->prune_next_mono = now + SERVER_PRUNE_FIRST_MS;
  if (now < srv->prune_next_mono || db_unreachable_ms(db)) return;
  srv->prune_next_mono = now + SERVER_PRUNE_EVERY_MS;
  char cut[24], lim[16];
  snprintf(cut, sizeof cut, "%lld",
           (long long)(clock_now_ms(&srv->clock) - (int64_t)srv->conf->history_days * 86400000));
  snprintf(lim, sizeof lim, "%d", SERVER_PRUNE_BATCH);
  const char *p[] = {cut, lim};
  if (db_exec(db,
              "DELETE FROM load_minute WHERE ctid = ANY (ARRAY (SELECT ctid FROM load_minute "
              "WHERE minute < to_timestamp($1::bigint / 1000.0) LIMIT $2::int))",
              2, p, server_prune_done, srv) == 0)
    srv->prune_busy = 1;
}
