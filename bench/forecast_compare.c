/* forecast_compare: backtests the demand forecast methods of
 * controller/routing/forecast.c on the load_minute rows of a database.
 *
 *   forecast_compare CONNINFO [--tz ZONE] [--weeks N] [--except YYYYMMDD]...
 *
 * It reads the history with the controller's own query (HISTORY_SQL, over
 * the last 52 weeks before the newest row) and parser, then, rolling the
 * origin forward, forecasts every site's every half-hour from the samples
 * before its date (so week k is forecast from weeks < k) with each method,
 * and prints each method's WAPE = sum |forecast - actual| / sum actual
 * over the half-hours every method could forecast (the same set for all),
 * and the ratios to the weighted method's. Exception dates are given with
 * --except, as the schedules carry them; a half-hour on one is left out of
 * the comparison when some method has no forecast for it. Blocking libpq:
 * a tool, not the controller. */
#include "err.h"
#include "forecast.h"
#include "history.h"

#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METHODS 3

typedef struct {
  double abs_err, actual;
  size_t n;
} score_t;

static int usage(void) {
  fprintf(stderr,
          "usage: forecast_compare CONNINFO [--tz ZONE] [--weeks N] [--except YYYYMMDD]...\n"
          "  e.g. forecast_compare 'host=127.0.0.1 port=15560 user=nirc dbname=fc' "
          "--tz Asia/Shanghai\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2 || argv[1][0] == '-') return usage();
  const char *conninfo = argv[1], *tz = "Asia/Shanghai";
  unsigned weeks = 8;
  int32_t exc[64];
  size_t n_exc = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--tz") == 0 && i + 1 < argc) {
      tz = argv[++i];
    } else if (strcmp(argv[i], "--weeks") == 0 && i + 1 < argc) {
      weeks = (unsigned)atoi(argv[++i]);
      if (weeks < 1 || weeks > FORECAST_WEEKS_MAX) return usage();
    } else if (strcmp(argv[i], "--except") == 0 && i + 1 < argc && n_exc < 64) {
      int64_t z;
      exc[n_exc] = (int32_t)atol(argv[++i]);
      if (!forecast_day_number(exc[n_exc], &z)) return usage();
      n_exc++;
    } else {
      return usage();
    }
  }
  PGconn *pg = PQconnectdb(conninfo);
  if (PQstatus(pg) != CONNECTION_OK) {
    fprintf(stderr, "forecast_compare: cannot connect: %s", PQerrorMessage(pg));
    PQfinish(pg);
    return 1;
  }
  PGresult *r = PQexec(pg, "SELECT coalesce((extract(epoch from max(minute)) * 1000)::bigint + "
                           "60000, 0) FROM load_minute");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    fprintf(stderr, "forecast_compare: %s", PQerrorMessage(pg));
    return 1;
  }
  char now[32], wk[8];
  snprintf(now, sizeof now, "%s", PQgetvalue(r, 0, 0));
  snprintf(wk, sizeof wk, "%d", FORECAST_WEEKS_MAX);
  PQclear(r);
  const char *p[] = {tz, wk, now};
  r = PQexecParams(pg, HISTORY_SQL, 3, NULL, p, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    fprintf(stderr, "forecast_compare: %s", PQerrorMessage(pg));
    return 1;
  }
  engine_history_row_t *rows;
  size_t n;
  char why[200];
  if (history_parse(r, &rows, &n, why, sizeof why) != 0) {
    fprintf(stderr, "forecast_compare: %s\n", why);
    return 1;
  }
  PQclear(r);
  PQfinish(pg);
  forecast_sample_t *v = malloc((n ? n : 1) * sizeof *v);
  if (!v) return 1;
  score_t sc[METHODS] = {{0}};
  size_t sites = 0, skipped_gap = 0, skipped_short = 0;
  for (size_t a = 0; a < n;) {
    size_t b = a;
    while (b < n && strcmp(rows[b].site, rows[a].site) == 0) {
      v[b - a] = rows[b].s;
      b++;
    }
    size_t m = b - a;
    sites++;
    for (size_t k = 0; k < m; k++) {
      const forecast_sample_t *t = &v[k];
      if (t->minutes < FORECAST_MIN_MINUTES || t->minutes > FORECAST_SLOT_MIN) {
        skipped_gap++;
        continue;
      }
      double actual = t->calls / (60.0 * t->minutes);
      double f[METHODS];
      bool all = true;
      for (int meth = 0; meth < METHODS && all; meth++) {
        forecast_opts_t o = forecast_defaults(weeks);
        o.method = (forecast_method_t)meth;
        forecast_cell_t c;
        if (forecast_at(v, m, exc, n_exc, t->date, t->slot, &o, &c) != 0 || c.status != FORECAST_OK)
          all = false;
        f[meth] = c.cps;
      }
      if (!all) {
        skipped_short++;
        continue;
      }
      for (int meth = 0; meth < METHODS; meth++) {
        sc[meth].abs_err += fabs(f[meth] - actual);
        sc[meth].actual += actual;
        sc[meth].n++;
      }
    }
    a = b;
  }
  printf("history: %zu half-hours of %zu sites; forecast over %u weeks, %zu exception dates\n", n,
         sites, weeks, n_exc);
  printf("compared: %zu half-hours (left out: %zu partly reported, %zu without a forecast from "
         "every method)\n",
         sc[0].n, skipped_gap, skipped_short);
  if (!sc[0].n || sc[0].actual <= 0) {
    printf("nothing to compare: at least %u weeks of history are needed\n", FORECAST_MIN_WEEKS + 1);
    return 1;
  }
  double w0 = sc[0].abs_err / sc[0].actual;
  for (int meth = 0; meth < METHODS; meth++) {
    double w = sc[meth].abs_err / sc[meth].actual;
    printf("%-10s WAPE %6.2f%%   ratio to weighted %.3f\n",
           forecast_method_name((forecast_method_t)meth), 100 * w, w0 > 0 ? w / w0 : 0);
  }
  free(v);
  free(rows);
  return 0;
}
