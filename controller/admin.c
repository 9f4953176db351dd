#include "admin.h"

#include "err.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PGconn *admin_connect(const char *conninfo, char *err, size_t errlen) {
  PGconn *c = PQconnectdb(conninfo);
  if (PQstatus(c) != CONNECTION_OK) {
    const char *m = PQerrorMessage(c);
    size_t n = strlen(m);
    while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
      n--;
    snprintf(err, errlen, "cannot connect to the database (%s): %.*s; is PostgreSQL running?",
             conninfo, (int)n, m);
    PQfinish(c);
    return NULL;
  }
  return c;
}

static int admin_fail(PGconn *c, PGresult *r, const char *what, char *err, size_t errlen) {
  const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
  size_t n = strlen(m);
  while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
    n--;
  snprintf(err, errlen, "%s: %.*s", what, (int)n, m);
  PQclear(r);
  return NIRC_EDB;
}

int admin_import_sites(const char *conninfo, const scenario_t *sc, char *err, size_t errlen) {
  PGconn *c = admin_connect(conninfo, err, errlen);
  if (!c) return NIRC_EDB;
  PGresult *r = PQexec(c, "BEGIN");
  if (PQresultStatus(r) != PGRES_COMMAND_OK) return admin_fail(c, r, "begin", err, errlen);
  PQclear(r);
  for (size_t i = 0; i < sc->count; i++) {
    const scenario_site_t *s = &sc->sites[i];
    char lat[32], lon[32];
    snprintf(lat, sizeof lat, "%.6f", s->lat);
    snprintf(lon, sizeof lon, "%.6f", s->lon);
    const char *p[] = {
        s->slug, s->name_en, s->name_zh, s->city_en, lat, lon, s->is_hub ? "true" : "false"};
    r = PQexecParams(
        c,
        "INSERT INTO sites (slug, name_en, name_zh, city_en, lat, lon, is_hub) "
        "VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (slug) DO UPDATE SET "
        "name_en=EXCLUDED.name_en, name_zh=EXCLUDED.name_zh, city_en=EXCLUDED.city_en, "
        "lat=EXCLUDED.lat, lon=EXCLUDED.lon, is_hub=EXCLUDED.is_hub, updated_at=now()",
        7, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      char what[96];
      snprintf(what, sizeof what, "site '%s'", s->slug);
      int rc = admin_fail(c, r, what, err, errlen);
      PQfinish(c);
      return rc;
    }
    PQclear(r);
  }
  r = PQexec(c, "COMMIT");
  int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : admin_fail(c, r, "commit", err, errlen);
  if (rc == 0) PQclear(r);
  PQfinish(c);
  return rc;
}

int admin_load_sites(const char *conninfo, sites_t *sites, char *err, size_t errlen) {
  PGconn *c = admin_connect(conninfo, err, errlen);
  if (!c) return NIRC_EDB;
  PGresult *r = PQexec(c, "SELECT slug, name_en, name_zh, is_hub FROM sites ORDER BY slug");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    int rc = admin_fail(c, r, "loading sites", err, errlen);
    PQfinish(c);
    return rc;
  }
  int rc = 0;
  for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
    rc = sites_add(sites, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                   PQgetvalue(r, i, 3)[0] == 't');
    if (rc) snprintf(err, errlen, "site '%s': %s", PQgetvalue(r, i, 0), nirc_strerror(rc));
  }
  PQclear(r);
  PQfinish(c);
  return rc;
}

int admin_new_epoch(const char *conninfo, const char *node, uint64_t *epoch, char *err,
                    size_t errlen) {
  PGconn *c = admin_connect(conninfo, err, errlen);
  if (!c) return NIRC_EDB;
  const char *p[] = {node};
  PGresult *r = PQexecParams(c,
                             "INSERT INTO epochs (epoch, node) VALUES (nextval('epoch_seq'), $1) "
                             "RETURNING epoch",
                             1, NULL, p, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    int rc = admin_fail(c, r, "taking a new epoch", err, errlen);
    PQfinish(c);
    return rc;
  }
  *epoch = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  PQfinish(c);
  return 0;
}
