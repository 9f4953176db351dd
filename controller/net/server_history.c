/* server_history: feeds the routing engine the load history its demand
 * forecast reads (controller/store/history.h), as the leader, without
 * blocking the loop. A load that fails keeps the engine's last history,
 * which then says its age. Part of the server module.
 *
 * When: at leader start, then once per local business day. A forecast
 * for a date uses only the days before it (the same weekday, 1..N weeks
 * back), so rows written today change no forecast until tomorrow; reading
 * 8 weeks of minutes costs about 1.8 s of database time for 8 sites
 * (docs/FORECAST.md), so it is not repeated every half-hour for nothing,
 * and it runs on the server's read connection (db_read), never in front
 * of the writes an operator's reply waits for. The date is checked at each
 * business half-hour boundary. */
#include "server.h"

#include "history.h"
#include "log.h"
#include "tz.h"

#include <stdlib.h>

#define SERVER_HISTORY_SLOT_MS  (30 * 60000) /* the date is checked each half-hour */
#define SERVER_HISTORY_MIN_MS   10000        /* an accelerated clock: not more often */
#define SERVER_HISTORY_RETRY_MS 30000        /* after a failure */

typedef struct {
  server_t *srv;
  int64_t at_ms;
  unsigned weeks;
  int32_t date; /* the local business date it was loaded on */
} server_history_req_t;

static void server_history_done(void *arg, int err, const char *msg, engine_history_row_t *rows,
                                size_t n) {
  server_history_req_t *q = arg;
  server_t *srv = q->srv;
  srv->history_busy = 0;
  if (srv->engine && !srv->stopping) {
    if (err) {
      srv->history_retry_mono = uv_now(srv->loop) + SERVER_HISTORY_RETRY_MS;
      engine_history_failed(srv->engine, msg ? msg : "database unavailable");
    } else if (engine_set_history(srv->engine, rows, n, q->weeks, q->at_ms) != 0) {
      srv->history_retry_mono = uv_now(srv->loop) + SERVER_HISTORY_RETRY_MS;
      engine_history_failed(srv->engine, "out of memory");
    } else {
      srv->history_retry_mono = 0;
      srv->history_date = q->date;
    }
  }
  free(rows);
  free(q);
}

void server_history_tick(server_t *srv) {
  if (srv->history_busy || !srv->db_read) return;
  uint64_t mono = uv_now(srv->loop);
  int64_t now = clock_now_ms(&srv->clock);
  int64_t slot = now / SERVER_HISTORY_SLOT_MS;
  bool retry = srv->history_retry_mono && mono >= srv->history_retry_mono;
  if (!(srv->history_slot == 0 || slot != srv->history_slot || retry)) return;
  if (srv->history_mono && mono - srv->history_mono < SERVER_HISTORY_MIN_MS) return;
  /* A new half-hour: a new local date, or a load still owed? */
  tz_local_t l;
  const char *zone = srv->conf->forecast_tz[0] ? srv->conf->forecast_tz : "UTC";
  int32_t date = tz_to_local(zone, now, &l) == 0 ? l.year * 10000 + l.month * 100 + l.day : 0;
  srv->history_slot = slot;
  if (date && date == srv->history_date && !retry) return;
  server_history_req_t *q = malloc(sizeof *q);
  if (!q) return;
  *q = (server_history_req_t){srv, now, srv->conf->forecast_weeks ? srv->conf->forecast_weeks : 8,
                              date};
  srv->history_mono = mono;
  int rc =
      history_load(srv->db_read, srv->conf->forecast_tz, q->weeks, now, server_history_done, q);
  if (rc) {
    free(q);
    srv->history_retry_mono = mono + SERVER_HISTORY_RETRY_MS;
    engine_history_failed(srv->engine, "database queue full");
    return;
  }
  srv->history_busy = 1;
}
