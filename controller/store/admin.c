#include "admin.h"

#include "conninfo.h"
#include "err.h"
#include "route.h"
#include "safetext.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static PGconn *admin_connect(const char *conninfo, char *err, size_t errlen) {
  PGconn *c = PQconnectdb(conninfo);
  if (PQstatus(c) != CONNECTION_OK) {
    char m[512]; /* libpq's words, escaped: they may quote a server's bytes */
    conninfo_msg_trim(PQerrorMessage(c), 0, m, sizeof m);
    snprintf(err, errlen, "cannot connect to the database (%s): %s; is PostgreSQL running?",
             conninfo, m);
    PQfinish(c);
    return NULL;
  }
  return c;
}

static int admin_fail(PGconn *c, PGresult *r, const char *what, char *err, size_t errlen) {
  char m[512]; /* PostgreSQL's words, escaped: they may quote a row's bytes */
  conninfo_msg_trim(r ? PQresultErrorMessage(r) : PQerrorMessage(c), 0, m, sizeof m);
  snprintf(err, errlen, "%s: %s", what, m);
  PQclear(r);
  return NIRC_EDB;
}

int admin_import_sites(const char *conninfo, const scenario_t *sc, const char *actor,
                       const char *file, const int64_t *business_ms, admin_import_t *st, char *err,
                       size_t errlen) {
  memset(st, 0, sizeof *st);
  PGconn *c = admin_connect(conninfo, err, errlen);
  if (!c) return NIRC_EDB;
  PGresult *r = PQexec(c, "BEGIN");
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    int rc = admin_fail(c, r, "begin", err, errlen);
    PQfinish(c);
    return rc;
  }
  PQclear(r);
  /* The file's slugs as a text[] literal, for the sites it does not name. */
  size_t alen = 3;
  for (size_t i = 0; i < sc->count; i++)
    alen += strlen(sc->sites[i].slug) + 1;
  char *arr = malloc(alen);
  if (!arr) {
    PQfinish(c);
    snprintf(err, errlen, "out of memory");
    return NIRC_ENOMEM;
  }
  size_t used = 0;
  arr[used++] = '{';
  for (size_t i = 0; i < sc->count; i++)
    used += (size_t)sprintf(arr + used, "%s%s", i ? "," : "", sc->sites[i].slug);
  arr[used++] = '}';
  arr[used] = '\0';
  int rc = 0;
  for (size_t i = 0; i < sc->count && rc == 0; i++) {
    const scenario_site_t *s = &sc->sites[i];
    char lat[32], lon[32];
    snprintf(lat, sizeof lat, "%.6f", s->lat);
    snprintf(lon, sizeof lon, "%.6f", s->lon);
    /* The configured capacity: the scenario's day and night shifts
     * (scenario.h: day 08:00-22:00 local) on as many seats as the larger
     * of them. A site with no agents in either has none configured. */
    char seats[16], roster[96], off[16];
    unsigned most = s->agents_day > s->agents_night ? s->agents_day : s->agents_night;
    snprintf(seats, sizeof seats, "%u", most);
    snprintf(roster, sizeof roster, "08:00-22:00=%u,22:00-08:00=%u", s->agents_day,
             s->agents_night);
    snprintf(off, sizeof off, "%d", sc->utc_offset_min);
    const char *p[] = {s->slug,
                       s->name_en,
                       s->name_zh,
                       s->city_en,
                       lat,
                       lon,
                       s->is_hub ? "true" : "false",
                       most ? seats : NULL,
                       most ? roster : NULL,
                       off};
    /* A site an operator removed stays removed: the file may be the one
     * it was first imported from (nircctl site add brings it back). */
    r = PQexecParams(
        c,
        "INSERT INTO sites (slug, name_en, name_zh, city_en, lat, lon, is_hub, seats, roster, "
        "capacity_utc_offset_min) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (slug) DO "
        "UPDATE SET name_en=EXCLUDED.name_en, name_zh=EXCLUDED.name_zh, "
        "city_en=EXCLUDED.city_en, lat=EXCLUDED.lat, lon=EXCLUDED.lon, is_hub=EXCLUDED.is_hub, "
        "seats=EXCLUDED.seats, roster=EXCLUDED.roster, "
        "capacity_utc_offset_min=EXCLUDED.capacity_utc_offset_min, updated_at=now() "
        "WHERE sites.removed_at IS NULL RETURNING xmax = 0",
        10, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      char what[96];
      snprintf(what, sizeof what, "site '%s'", s->slug);
      rc = admin_fail(c, r, what, err, errlen);
      break;
    }
    if (PQntuples(r) == 0) {
      st->skipped_removed++;
      size_t u = strlen(st->removed);
      if (u + strlen(s->slug) + 2 < sizeof st->removed)
        snprintf(st->removed + u, sizeof st->removed - u, "%s%s", u ? "," : "", s->slug);
    } else if (PQgetvalue(r, 0, 0)[0] == 't') {
      st->added++;
    } else {
      st->updated++;
    }
    PQclear(r);
  }
  if (rc == 0) {
    const char *p[] = {arr};
    r = PQexecParams(
        c,
        "SELECT slug FROM sites WHERE removed_at IS NULL AND NOT (slug = ANY($1::text[])) "
        "ORDER BY slug",
        1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      rc = admin_fail(c, r, "sites not in the file", err, errlen);
    } else {
      st->missing = (size_t)PQntuples(r);
      for (int i = 0; i < PQntuples(r); i++) {
        size_t u = strlen(st->missing_list);
        /* As stored: the schema's check keeps slugs plain, but a database
         * whose check was dropped or edited may hold any bytes, and nircd
         * prints this list on the operator's terminal. */
        char slug[160];
        safetext_escape(PQgetvalue(r, i, 0), slug, sizeof slug);
        if (u + strlen(slug) + 2 < sizeof st->missing_list)
          snprintf(st->missing_list + u, sizeof st->missing_list - u, "%s%s", u ? "," : "", slug);
      }
      PQclear(r);
    }
  }
  if (rc == 0) {
    /* Audited like an operator's change, in the same transaction. */
    char n[5][24];
    snprintf(n[0], sizeof n[0], "%zu", sc->count);
    snprintf(n[1], sizeof n[1], "%zu", st->added);
    snprintf(n[2], sizeof n[2], "%zu", st->updated);
    snprintf(n[3], sizeof n[3], "%zu", st->skipped_removed);
    snprintf(n[4], sizeof n[4], "%zu", st->missing);
    char bt[24];
    if (business_ms) snprintf(bt, sizeof bt, "%lld", (long long)*business_ms);
    const char *p[] = {actor,       file,
                       n[0],        n[1],
                       n[2],        n[3],
                       n[4],        st->missing_list,
                       st->removed, business_ms ? bt : NULL};
    /* Its business time: history filters and shows the trail by it. */
    r = PQexecParams(c,
                     "INSERT INTO audit_log (actor, action, target, detail, business_at) VALUES "
                     "($1, 'import-sites', $2, jsonb_build_object('file', $2::text, "
                     "'sites_in_file', $3::int, 'added', $4::int, 'updated', $5::int, "
                     "'skipped_removed', $6::int, 'kept_not_in_file', $7::int, 'not_in_file', "
                     "$8::text, 'removed_skipped', $9::text), to_timestamp($10::bigint / 1000.0))",
                     10, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
      rc = admin_fail(c, r, "audit", err, errlen);
    else
      PQclear(r);
  }
  free(arr);
  if (rc == 0) {
    r = PQexec(c, "COMMIT");
    rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : admin_fail(c, r, "commit", err, errlen);
    if (rc == 0) PQclear(r);
  }
  PQfinish(c);
  return rc;
}

/* The capacity columns of a sites row (seats, roster, offset, configured)
 * from column `col` on. A stored roster that does not parse (edited by
 * hand) is refused, as a bad configuration is: planning on a guess is
 * worse. */
static int admin_capacity_row(PGresult *r, int i, int col, capacity_t *cap, char *err,
                              size_t errlen) {
  char why[200];
  memset(cap, 0, sizeof *cap);
  cap->seats = (uint32_t)strtoul(PQgetvalue(r, i, col), NULL, 10);
  cap->utc_offset_min = (int32_t)strtol(PQgetvalue(r, i, col + 2), NULL, 10);
  cap->configured = PQgetvalue(r, i, col + 3)[0] == 't';
  if (capacity_parse_roster(PQgetvalue(r, i, col + 1), cap, why, sizeof why) != 0 ||
      capacity_validate(cap, why, sizeof why) != 0) {
    /* As stored: a row edited by hand may hold any bytes, and the parser's
     * words quote the roster's (nircd prints this at start, raw). */
    char slug[160], said[sizeof why * 4];
    safetext_escape(PQgetvalue(r, i, 0), slug, sizeof slug);
    safetext_escape(why, said, sizeof said);
    snprintf(err, errlen,
             "site '%s': stored capacity is invalid: %s (fix it with nircctl capacity or nircd "
             "import-sites)",
             slug, said);
    return NIRC_EINVAL;
  }
  return 0;
}

#define ADMIN_CAPACITY_COLS                                                                        \
  "coalesce(seats, 0), coalesce(roster, ''), capacity_utc_offset_min, "                            \
  "seats IS NOT NULL OR roster IS NOT NULL"

const char *const admin_sites_sql =
    "SELECT slug, name_en, name_zh, is_hub, coalesce(lat, 0), coalesce(lon, "
    "0), " ADMIN_CAPACITY_COLS
    ", coalesce((extract(epoch from removed_at) * 1000)::bigint, 0), coalesce(removed_by, '') "
    "FROM sites ORDER BY slug";

int admin_sites_from_result(PGresult *r, sites_t *sites, char *err, size_t errlen) {
  int rc = 0;
  for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
    rc = sites_add(sites, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                   PQgetvalue(r, i, 3)[0] == 't');
    if (rc) {
      char slug[160]; /* as stored: a row edited by hand may hold any bytes */
      safetext_escape(PQgetvalue(r, i, 0), slug, sizeof slug);
      snprintf(err, errlen, "site '%s': %s", slug, nirc_strerror(rc));
    } else {
      site_t *s = &sites->v[sites->n - 1];
      s->lat = atof(PQgetvalue(r, i, 4));
      s->lon = atof(PQgetvalue(r, i, 5));
      rc = admin_capacity_row(r, i, 6, &s->cap, err, errlen);
      int64_t removed = strtoll(PQgetvalue(r, i, 10), NULL, 10);
      if (rc == 0 && removed) sites_remove(s, removed, PQgetvalue(r, i, 11));
    }
  }
  return rc;
}

int admin_load_sites(const char *conninfo, sites_t *sites, char *err, size_t errlen) {
  PGconn *c = admin_connect(conninfo, err, errlen);
  if (!c) return NIRC_EDB;
  PGresult *r = PQexec(c, admin_sites_sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    int rc = admin_fail(c, r, "loading sites", err, errlen);
    PQfinish(c);
    return rc;
  }
  int rc = admin_sites_from_result(r, sites, err, errlen);
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

/* "{a,b,c}" (PostgreSQL text[] of slugs or dates) into a slug list. */
static int admin_parse_array(const char *text, slug_list_t *out) {
  memset(out, 0, sizeof *out);
  if (text[0] != '{') return NIRC_EINVAL;
  const char *p = text + 1;
  while (*p && *p != '}') {
    const char *end = p + strcspn(p, ",}");
    size_t n = (size_t)(end - p);
    if (n == 0 || n >= sizeof out->v[0] || out->n == RULES_MAX_SITES) return NIRC_EINVAL;
    memcpy(out->v[out->n], p, n);
    out->v[out->n][n] = '\0';
    out->n++;
    p = *end == ',' ? end + 1 : end;
  }
  return 0;
}

static int64_t admin_ms(const char *v) {
  return v && *v ? strtoll(v, NULL, 10) : 0;
}

static uint64_t admin_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits until the socket of `c` is ready for `events` or `deadline`
 * (monotonic ms, 0: none) passes: 1 ready, 0 timed out, -1 broken, -2
 * `stop_fd` (NULL: none) became readable: the caller is stopping. */
static int admin_wait(PGconn *c, short events, uint64_t deadline, const int *stop_fd) {
  for (;;) {
    int ms = -1;
    if (deadline) {
      uint64_t now = admin_mono_ms();
      if (now >= deadline) return 0;
      ms = (int)(deadline - now);
    }
    struct pollfd pfd[2] = {{.fd = PQsocket(c), .events = events},
                            {.fd = stop_fd ? *stop_fd : -1, .events = POLLIN}};
    if (pfd[0].fd < 0) return -1;
    int rc = poll(pfd, 2, ms); /* a negative fd is skipped by poll */
    if (rc > 0 && pfd[1].revents) return -2;
    if (rc > 0) return 1;
    if (rc == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

/* One load's connection and its deadline (monotonic ms, 0: none). */
typedef struct {
  PGconn *c;
  uint64_t deadline, budget_ms;
  const int *stop_fd;
  bool timed_out;
  bool stopped; /* given up at once: the caller is stopping (stop_fd) */
} admin_load_t;

static const char admin_stopped_text[] = "given up: the controller is stopping";

/* A load's own connection, made within the load's budget: a database that
 * accepts the connection and never answers (a stopped postmaster) holds
 * PQconnectdb for ever, and connect_timeout counts whole seconds, 2 at
 * least. Statements are bounded on the server too (statement_timeout),
 * so a load given up by the client does not go on running there. */
static PGconn *admin_connect_within(const char *conninfo, const admin_load_opts_t *o,
                                    admin_load_t *ld, char *err, size_t errlen) {
  char opts[64], user_timeout[24];
  snprintf(opts, sizeof opts, "-c statement_timeout=%llu", (unsigned long long)o->budget_ms);
  snprintf(user_timeout, sizeof user_timeout, "%llu", (unsigned long long)o->budget_ms);
  const char *kw[] = {"dbname",
                      "keepalives",
                      "keepalives_idle",
                      "keepalives_interval",
                      "keepalives_count",
                      "tcp_user_timeout",
                      "application_name",
                      "options",
                      NULL};
  const char *val[] = {conninfo, "1", "1", "1", "2", user_timeout, "nircd-rule-load", opts, NULL};
  PGconn *c = PQconnectStartParams(kw, val, 1);
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (c && PQstatus(c) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
         st != PGRES_POLLING_FAILED) {
    int ready =
        admin_wait(c, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, ld->deadline, ld->stop_fd);
    if (ready == -2) {
      ld->stopped = true;
      snprintf(err, errlen, "connecting: %s", admin_stopped_text);
      PQfinish(c);
      return NULL;
    }
    if (ready == 0) {
      snprintf(err, errlen,
               "connecting: no answer within %llu ms: the database is hung or out of reach",
               (unsigned long long)o->budget_ms);
      PQfinish(c);
      return NULL;
    }
    st = ready > 0 ? PQconnectPoll(c) : PGRES_POLLING_FAILED;
  }
  if (c && PQstatus(c) == CONNECTION_OK) return c;
  char m[512];
  conninfo_msg_trim(c ? PQerrorMessage(c) : "out of memory", 0, m, sizeof m);
  snprintf(err, errlen, "cannot connect to the database: %s", m);
  PQfinish(c);
  return NULL;
}

/* Runs `sql` (one or more statements) within the load's deadline: its
 * first failed result, else its last one; NULL (timed_out set) when the
 * database did not answer in time, or the connection broke. */
static PGresult *admin_exec(admin_load_t *ld, const char *sql) {
  if (!ld->deadline) return PQexec(ld->c, sql);
  if (!PQsendQuery(ld->c, sql)) return NULL;
  PGresult *keep = NULL;
  for (;;) {
    while (PQisBusy(ld->c)) {
      int ready = admin_wait(ld->c, POLLIN, ld->deadline, ld->stop_fd);
      if (ready == 0) ld->timed_out = true;
      if (ready == -2) ld->stopped = true;
      if (ready <= 0 || !PQconsumeInput(ld->c)) {
        PQclear(keep);
        return NULL;
      }
    }
    PGresult *r = PQgetResult(ld->c);
    if (!r) break;
    /* A failure ends the statements after it: it is the one to say. */
    bool kept_failed =
        keep && PQresultStatus(keep) != PGRES_COMMAND_OK && PQresultStatus(keep) != PGRES_TUPLES_OK;
    if (kept_failed) {
      PQclear(r);
      continue;
    }
    PQclear(keep);
    keep = r;
  }
  return keep;
}

/* As admin_fail, for a statement of a load: NIRC_ETIMEOUT for a lock
 * wait that ran out, and says when the database did not answer within the
 * load's budget. */
static int admin_load_fail(admin_load_t *ld, PGresult *r, const char *what, char *err,
                           size_t errlen) {
  /* 55P03 lock_not_available: another session held a conflicting lock
   * for the whole lock_timeout (on a rule table, or ACCESS EXCLUSIVE on
   * another table read). The caller can find and name it. */
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  if (state && strcmp(state, "55P03") == 0) {
    admin_fail(ld->c, r, what, err, errlen);
    return NIRC_ETIMEOUT;
  }
  if (!r && ld->stopped) {
    snprintf(err, errlen, "%s: %s", what, admin_stopped_text);
    return NIRC_ECLOSED;
  }
  if (!r && ld->timed_out) {
    snprintf(err, errlen,
             "%s: no answer within the load's %llu ms from its session (pid %d): the database is "
             "hung or out of reach, or that backend is stuck",
             what, (unsigned long long)ld->budget_ms, PQbackendPID(ld->c));
    return NIRC_EDB;
  }
  return admin_fail(ld->c, r, what, err, errlen);
}

int admin_load_rules(const char *conninfo, admin_rules_t *out, char *err, size_t errlen) {
  admin_load_opts_t o = {.budget_ms = 0, .lock_wait_ms = 2000};
  return admin_load_rules_within(conninfo, &o, out, err, errlen);
}

int admin_load_rules_within(const char *conninfo, const admin_load_opts_t *opts, admin_rules_t *out,
                            char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  admin_load_t ld = {.budget_ms = opts->budget_ms,
                     .deadline = opts->budget_ms ? admin_mono_ms() + opts->budget_ms : 0,
                     .stop_fd = opts->stop_fd};
  if (opts->pid) *opts->pid = 0;
  if (opts->answered) *opts->answered = false;
  ld.c = ld.deadline ? admin_connect_within(conninfo, opts, &ld, err, errlen)
                     : admin_connect(conninfo, err, errlen);
  if (!ld.c) return ld.stopped ? NIRC_ECLOSED : NIRC_EDB;
  PGconn *c = ld.c;
  int rc = 0;
  /* One snapshot for everything a new leader decides on, taken after the
   * rule tables are locked against writers: a rule write of an older
   * leader still in flight (from its outage journal, say) commits before
   * this load, which then sees it, or waits and then finds this leader's
   * newer epoch and is not applied (store.c, "written only while its
   * leader's epoch is the newest"). A writer that holds its lock for
   * longer than lock_timeout fails this load: the election is tried again. */
  char begin[320];
  snprintf(
      begin, sizeof begin,
      "BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL lock_timeout = %llu; LOCK TABLE "
      "cutovers, schedules, overflow_rules, route_exclusions, route_holds, route_return_holds IN "
      "SHARE MODE",
      (unsigned long long)opts->lock_wait_ms);
  PGresult *r = admin_exec(&ld, begin);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    rc = admin_load_fail(&ld, r, "locking the rule tables", err, errlen);
    goto done;
  }
  PQclear(r);
  r = admin_exec(&ld,
                 "SELECT id, sources, hubs, reason, operator, force, "
                 "(extract(epoch from created_at) * 1000)::bigint, "
                 "coalesce((extract(epoch from expires_at) * 1000)::bigint, 0), share_permille "
                 "FROM cutovers WHERE state = 'active' ORDER BY id");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = admin_load_fail(&ld, r, "loading cutovers", err, errlen);
    goto done;
  }
  out->cutovers = calloc((size_t)PQntuples(r) + 1, sizeof *out->cutovers);
  for (int i = 0; out->cutovers && i < PQntuples(r); i++) {
    cutover_t *cu = &out->cutovers[out->n_cutovers];
    cu->id = strtoull(PQgetvalue(r, i, 0), NULL, 10);
    if (admin_parse_array(PQgetvalue(r, i, 1), &cu->sources) ||
        admin_parse_array(PQgetvalue(r, i, 2), &cu->hubs)) {
      snprintf(err, errlen, "cutover %llu has unreadable site lists", (unsigned long long)cu->id);
      rc = NIRC_EDB;
      PQclear(r);
      goto done;
    }
    snprintf(cu->reason, sizeof cu->reason, "%s", PQgetvalue(r, i, 3));
    snprintf(cu->operator_name, sizeof cu->operator_name, "%s", PQgetvalue(r, i, 4));
    cu->force = PQgetvalue(r, i, 5)[0] == 't';
    cu->created_ms = admin_ms(PQgetvalue(r, i, 6));
    cu->expires_ms = admin_ms(PQgetvalue(r, i, 7));
    cu->share_permille = (uint32_t)atoi(PQgetvalue(r, i, 8));
    cu->state = CUTOVER_ACTIVE;
    out->n_cutovers++;
  }
  PQclear(r);

  r = admin_exec(&ld, "SELECT id, name, sources, hubs, start_min, end_min, days, tz, "
                      "coalesce(array_to_string(exceptions, ','), ''), wave_size, enabled "
                      "FROM schedules WHERE removed_at IS NULL ORDER BY id");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = admin_load_fail(&ld, r, "loading schedules", err, errlen);
    goto done;
  }
  out->schedules = calloc((size_t)PQntuples(r) + 1, sizeof *out->schedules);
  for (int i = 0; out->schedules && i < PQntuples(r); i++) {
    schedule_t *s = &out->schedules[out->n_schedules];
    s->id = strtoull(PQgetvalue(r, i, 0), NULL, 10);
    snprintf(s->name, sizeof s->name, "%s", PQgetvalue(r, i, 1));
    if (admin_parse_array(PQgetvalue(r, i, 2), &s->sources) ||
        admin_parse_array(PQgetvalue(r, i, 3), &s->hubs)) {
      char name[200];
      safetext_escape(s->name, name, sizeof name);
      snprintf(err, errlen, "schedule '%s' has unreadable site lists", name);
      rc = NIRC_EDB;
      PQclear(r);
      goto done;
    }
    s->start_min = atoi(PQgetvalue(r, i, 4));
    s->end_min = atoi(PQgetvalue(r, i, 5));
    s->days = (uint8_t)atoi(PQgetvalue(r, i, 6));
    snprintf(s->tz, sizeof s->tz, "%s", PQgetvalue(r, i, 7));
    char ex[4096];
    snprintf(ex, sizeof ex, "%s", PQgetvalue(r, i, 8));
    char *save = NULL;
    for (char *t = strtok_r(ex, ",", &save); t && s->n_exceptions < RULES_MAX_EXCEPTIONS;
         t = strtok_r(NULL, ",", &save))
      if (rules_parse_date(t, &s->exceptions[s->n_exceptions]) == 0) s->n_exceptions++;
    s->wave_size = (unsigned)atoi(PQgetvalue(r, i, 9));
    s->enabled = PQgetvalue(r, i, 10)[0] == 't';
    out->n_schedules++;
  }
  PQclear(r);

  r = admin_exec(&ld,
                 "SELECT id, name, source, hubs, trigger_wait_s, release_wait_s, trigger_queue, "
                 "release_queue, trigger_sl, release_sl, share_cap_permille, min_hold_s, margin_s, "
                 "enabled, engaged, "
                 "coalesce((extract(epoch from engaged_since) * 1000)::bigint, 0), "
                 "engaged_permille FROM overflow_rules WHERE removed_at IS NULL ORDER BY id");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = admin_load_fail(&ld, r, "loading overflow rules", err, errlen);
    goto done;
  }
  out->overflows = calloc((size_t)PQntuples(r) + 1, sizeof *out->overflows);
  out->overflow_states = calloc((size_t)PQntuples(r) + 1, sizeof *out->overflow_states);
  for (int i = 0; out->overflows && out->overflow_states && i < PQntuples(r); i++) {
    overflow_rule_t *o = &out->overflows[out->n_overflows];
    o->id = strtoull(PQgetvalue(r, i, 0), NULL, 10);
    snprintf(o->name, sizeof o->name, "%s", PQgetvalue(r, i, 1));
    snprintf(o->source, sizeof o->source, "%s", PQgetvalue(r, i, 2));
    if (admin_parse_array(PQgetvalue(r, i, 3), &o->hubs)) {
      char name[200];
      safetext_escape(o->name, name, sizeof name);
      snprintf(err, errlen, "overflow rule '%s' has an unreadable hub list", name);
      rc = NIRC_EDB;
      PQclear(r);
      goto done;
    }
    o->trigger_wait_s = (uint32_t)atoi(PQgetvalue(r, i, 4));
    o->release_wait_s = (uint32_t)atoi(PQgetvalue(r, i, 5));
    o->trigger_queue = (uint32_t)atoi(PQgetvalue(r, i, 6));
    o->release_queue = (uint32_t)atoi(PQgetvalue(r, i, 7));
    o->trigger_sl = atof(PQgetvalue(r, i, 8));
    o->release_sl = atof(PQgetvalue(r, i, 9));
    o->share_cap_permille = (uint32_t)atoi(PQgetvalue(r, i, 10));
    o->min_hold_s = (uint32_t)atoi(PQgetvalue(r, i, 11));
    o->margin_s = (uint32_t)atoi(PQgetvalue(r, i, 12));
    o->enabled = PQgetvalue(r, i, 13)[0] == 't';
    planner_overflow_state_t *st = &out->overflow_states[out->n_overflows];
    st->rule_id = o->id;
    st->engaged = PQgetvalue(r, i, 14)[0] == 't';
    st->since_ms = strtoll(PQgetvalue(r, i, 15), NULL, 10);
    st->permille = (uint32_t)atoi(PQgetvalue(r, i, 16));
    out->n_overflows++;
  }
  PQclear(r);

  r = admin_exec(&ld, "SELECT site, rule_kind, rule_id, reason FROM route_exclusions "
                      "WHERE cleared_at IS NULL ORDER BY id");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = admin_load_fail(&ld, r, "loading exclusions", err, errlen);
    goto done;
  }
  out->exclusions = calloc((size_t)PQntuples(r) + 1, sizeof *out->exclusions);
  for (int i = 0; out->exclusions && i < PQntuples(r); i++) {
    engine_exclusion_t *x = &out->exclusions[out->n_exclusions++];
    snprintf(x->site, sizeof x->site, "%s", PQgetvalue(r, i, 0));
    x->rule_kind = rules_kind_parse(PQgetvalue(r, i, 1));
    x->rule_id = strtoull(PQgetvalue(r, i, 2), NULL, 10);
    snprintf(x->reason, sizeof x->reason, "%s", PQgetvalue(r, i, 3));
  }
  PQclear(r);

  r = admin_exec(&ld, "SELECT site, strain_since_ms, withdrawn_ms, last_withdrawn_ms, withdrawals "
                      "FROM route_holds ORDER BY site");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = admin_load_fail(&ld, r, "loading capacity holds", err, errlen);
    goto done;
  }
  out->holds = calloc((size_t)PQntuples(r) + 1, sizeof *out->holds);
  for (int i = 0; out->holds && i < PQntuples(r); i++) {
    engine_hold_t *h = &out->holds[out->n_holds++];
    snprintf(h->site, sizeof h->site, "%s", PQgetvalue(r, i, 0));
    h->hold.strain_since_ms = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    h->hold.withdrawn_ms = strtoll(PQgetvalue(r, i, 2), NULL, 10);
    h->hold.last_withdrawn_ms = strtoll(PQgetvalue(r, i, 3), NULL, 10);
    h->hold.withdrawals = (unsigned)strtoul(PQgetvalue(r, i, 4), NULL, 10);
  }
  PQclear(r);

  r = admin_exec(&ld, "SELECT site, returns, span_ms, rule_kind, rule_id, early_ms "
                      "FROM route_return_holds WHERE cleared_at IS NULL ORDER BY id");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = admin_load_fail(&ld, r, "loading sites held home", err, errlen);
    goto done;
  }
  out->return_holds = calloc((size_t)PQntuples(r) + 1, sizeof *out->return_holds);
  for (int i = 0; out->return_holds && i < PQntuples(r); i++) {
    engine_return_hold_t *h = &out->return_holds[out->n_return_holds++];
    snprintf(h->site, sizeof h->site, "%s", PQgetvalue(r, i, 0));
    h->returns = (unsigned)strtoul(PQgetvalue(r, i, 1), NULL, 10);
    h->span_ms = strtoull(PQgetvalue(r, i, 2), NULL, 10);
    h->rule_kind = rules_kind_parse(PQgetvalue(r, i, 3));
    h->rule_id = strtoull(PQgetvalue(r, i, 4), NULL, 10);
    h->early_ms = strtoll(PQgetvalue(r, i, 5), NULL, 10);
  }
  PQclear(r);

  /* Per hub: its last loss, its last verification, and the losses in the
   * hour up to the last loss (the return window's backoff). */
  r = admin_exec(&ld,
                 "SELECT site, "
                 "coalesce((extract(epoch FROM max(at) FILTER (WHERE event = 'hub_lost')) * 1000)"
                 "::bigint, 0), "
                 "(array_agg(event ORDER BY id DESC))[1] = 'hub_lost', "
                 "(SELECT count(*) FROM link_events l2 WHERE l2.site = l.site AND l2.event = "
                 "'hub_lost' AND l2.at > max(l.at) FILTER (WHERE l.event = 'hub_lost') - "
                 "interval '1 hour') "
                 "FROM link_events l WHERE event IN ('hub_lost', 'hub_verified') AND site IS NOT "
                 "NULL GROUP BY site ORDER BY site");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = admin_load_fail(&ld, r, "loading hub losses", err, errlen);
    goto done;
  }
  out->hubs = calloc((size_t)PQntuples(r) + 1, sizeof *out->hubs);
  for (int i = 0; out->hubs && i < PQntuples(r); i++) {
    engine_hub_history_t *h = &out->hubs[out->n_hubs++];
    snprintf(h->site, sizeof h->site, "%s", PQgetvalue(r, i, 0));
    h->last_lost_wall_ms = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    h->lost = PQgetvalue(r, i, 2)[0] == 't';
    h->losses_in_hour = (unsigned)strtoul(PQgetvalue(r, i, 3), NULL, 10);
  }
  PQclear(r);

  /* Each site's last hour of per-minute load, as the decayed sums the
   * registry keeps (time constant SITES_DEMAND_TAU_S), as of its latest
   * minute. A row covers the business time since the site's previous row
   * (a minute, or more on an accelerated clock, where one report spans
   * several minutes), at most the time constant: a longer gap is an
   * outage, not a quiet spell. Minutes whose PBX was unreadable say
   * nothing about demand. */
  {
    char q[1600];
    snprintf(q, sizeof q,
             "WITH latest AS (SELECT site, max(minute) AS m FROM load_minute GROUP BY site), "
             "rows AS (SELECT l.*, x.m, least(coalesce(extract(epoch FROM l.minute - "
             "lag(l.minute) OVER (PARTITION BY l.site ORDER BY l.minute)), 60), %.1f) AS secs "
             "FROM load_minute l JOIN latest x USING (site) "
             "WHERE l.minute > x.m - interval '2 hours'), "
             "w AS (SELECT *, exp(-extract(epoch FROM m - minute) / %.1f) AS wd FROM rows "
             "WHERE minute > m - interval '1 hour' AND unreadable_reports < reports) "
             "SELECT site, (extract(epoch FROM m) * 1000)::bigint, "
             "sum(greatest(offered - from_other_sites + routed_away, 0) * wd), sum(secs * wd), "
             "coalesce(sum(answered * wd) FILTER (WHERE avg_aht_ms IS NOT NULL), 0), "
             "coalesce(sum(answered * avg_aht_ms / 1000.0 * wd), 0) "
             "FROM w GROUP BY site, m ORDER BY site",
             SITES_DEMAND_TAU_S, SITES_DEMAND_TAU_S);
    r = admin_exec(&ld, q);
  }
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = admin_load_fail(&ld, r, "loading recent load", err, errlen);
    goto done;
  }
  out->load = calloc((size_t)PQntuples(r) + 1, sizeof *out->load);
  for (int i = 0; out->load && i < PQntuples(r); i++) {
    sites_load_t *l = &out->load[out->n_load++];
    snprintf(l->slug, sizeof l->slug, "%s", PQgetvalue(r, i, 0));
    l->at_ms = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    l->demand_calls = strtod(PQgetvalue(r, i, 2), NULL);
    l->demand_secs = strtod(PQgetvalue(r, i, 3), NULL);
    l->aht_calls = strtod(PQgetvalue(r, i, 4), NULL);
    l->aht_sum_s = strtod(PQgetvalue(r, i, 5), NULL);
  }
  PQclear(r);

  /* Alarms the old leader left active: adopted, so they are cleared with
   * their own ids instead of being raised a second time. */
  r = admin_exec(
      &ld, "SELECT id, kind, subject, message, (extract(epoch FROM raised_at) * 1000)::bigint, "
           "coalesce((extract(epoch FROM raised_business_at) * 1000)::bigint, 0), "
           "coalesce((extract(epoch FROM acked_at) * 1000)::bigint, 0), coalesce(acked_by, ''), "
           "severity FROM alarms WHERE cleared_at IS NULL ORDER BY id");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = admin_load_fail(&ld, r, "loading active alarms", err, errlen);
    goto done;
  }
  out->alarms = calloc((size_t)PQntuples(r) + 1, sizeof *out->alarms);
  for (int i = 0; out->alarms && i < PQntuples(r); i++) {
    int kind = alarm_kind_parse(PQgetvalue(r, i, 1));
    if (kind < 0) continue; /* a kind this version does not know: left to its writer */
    alarm_t *a = &out->alarms[out->n_alarms++];
    a->id = strtoull(PQgetvalue(r, i, 0), NULL, 10);
    a->kind = (alarm_kind_t)kind;
    snprintf(a->subject, sizeof a->subject, "%s", PQgetvalue(r, i, 2));
    nirc_strlcpy_utf8(a->message, PQgetvalue(r, i, 3), sizeof a->message);
    a->raised_wall_ms = strtoll(PQgetvalue(r, i, 4), NULL, 10);
    a->raised_business_ms = strtoll(PQgetvalue(r, i, 5), NULL, 10);
    a->acked_wall_ms = strtoll(PQgetvalue(r, i, 6), NULL, 10);
    snprintf(a->acked_by, sizeof a->acked_by, "%s", PQgetvalue(r, i, 7));
    /* Raised critical although its kind is not (a PBX drift not repaired). */
    a->critical = strcmp(PQgetvalue(r, i, 8), "critical") == 0;
  }
  PQclear(r);

  /* Each site's newest directive under a rule (a move away), whether
   * any directive came after it, and whether its cutover's expiry entry
   * already stands for the return: the engine records a return home by
   * its revert_at which no controller saw (engine_load_last_directives),
   * and tells a route of a rule the database has and that ended from one
   * of a rule it does not have. One index walk per site (the primary
   * key, newest first), not a scan of every directive ever sent. */
  r = admin_exec(&ld,
                 "SELECT s.slug, jsonb_build_object('epoch', d.epoch, 'version', d.version, "
                 "'route', d.route, 'inbound', d.inbound, 'revert_at_ms', "
                 "(extract(epoch FROM d.revert_at) * 1000)::bigint, 'reason', d.reason)::text, "
                 "d.rule_kind, coalesce(d.rule_id, 0), "
                 "NOT EXISTS (SELECT 1 FROM directives y WHERE y.site = d.site AND "
                 "(y.epoch, y.version) > (d.epoch, d.version)), "
                 "(d.rule_kind = 'cutover' AND EXISTS (SELECT 1 FROM cutovers k WHERE "
                 "k.id = d.rule_id AND k.state = 'expired')) "
                 "FROM sites s CROSS JOIN LATERAL "
                 "(SELECT * FROM directives x WHERE x.site = s.slug AND x.rule_kind <> 'default' "
                 "ORDER BY x.epoch DESC, x.version DESC LIMIT 1) d ORDER BY s.slug");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = admin_load_fail(&ld, r, "loading the last directives", err, errlen);
    goto done;
  }
  out->last_dirs = calloc((size_t)PQntuples(r) + 1, sizeof *out->last_dirs);
  for (int i = 0; out->last_dirs && i < PQntuples(r); i++) {
    engine_last_directive_t *x = &out->last_dirs[out->n_last_dirs];
    char rerr[160];
    json_t *j = json_loads(PQgetvalue(r, i, 1), 0, NULL);
    int jrc = j ? route_from_json(j, &x->route, rerr, sizeof rerr) : NIRC_EINVAL;
    json_decref(j);
    /* A row that is no valid route records nothing late: skipped. */
    if (jrc != 0) continue;
    nirc_strlcpy(x->site, PQgetvalue(r, i, 0), sizeof x->site);
    x->epoch = x->route.epoch;
    x->version = x->route.version;
    x->revert_at_ms = x->route.revert_at_ms;
    x->rule_kind = rules_kind_parse(PQgetvalue(r, i, 2));
    x->rule_id = strtoull(PQgetvalue(r, i, 3), NULL, 10);
    x->newest = PQgetvalue(r, i, 4)[0] == 't';
    x->expiry_recorded = PQgetvalue(r, i, 5)[0] == 't';
    out->n_last_dirs++;
  }
  PQclear(r);

  r = admin_exec(&ld, "SELECT slug, " ADMIN_CAPACITY_COLS " FROM sites ORDER BY slug");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = admin_load_fail(&ld, r, "loading capacity", err, errlen);
    goto done;
  }
  out->capacity = calloc((size_t)PQntuples(r) + 1, sizeof *out->capacity);
  for (int i = 0; out->capacity && i < PQntuples(r); i++) {
    admin_capacity_t *k = &out->capacity[out->n_capacity++];
    nirc_strlcpy(k->slug, PQgetvalue(r, i, 0), sizeof k->slug);
    if ((rc = admin_capacity_row(r, i, 1, &k->cap, err, errlen)) != 0) {
      PQclear(r);
      goto done;
    }
  }
  PQclear(r);

  r = admin_exec(&ld, "SELECT greatest((SELECT coalesce(max(id), 0) FROM cutovers),"
                      " (SELECT coalesce(max(id), 0) FROM schedules),"
                      " (SELECT coalesce(max(id), 0) FROM overflow_rules))");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = admin_load_fail(&ld, r, "reading rule ids", err, errlen);
    goto done;
  }
  out->max_id = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  if (!out->cutovers || !out->schedules || !out->overflows || !out->overflow_states ||
      !out->exclusions || !out->holds || !out->return_holds || !out->hubs || !out->load ||
      !out->alarms || !out->capacity || !out->last_dirs) {
    snprintf(err, errlen, "out of memory loading rules");
    rc = NIRC_ENOMEM;
  }
done:
  if (opts->pid) *opts->pid = ld.timed_out || ld.stopped ? PQbackendPID(c) : 0;
  if (opts->answered)
    *opts->answered = rc != 0 && !ld.timed_out && !ld.stopped && PQstatus(c) == CONNECTION_OK;
  PQfinish(c);
  if (rc) admin_rules_free(out);
  return rc;
}

void admin_rules_free(admin_rules_t *r) {
  free(r->cutovers);
  free(r->schedules);
  free(r->overflows);
  free(r->overflow_states);
  free(r->exclusions);
  free(r->holds);
  free(r->return_holds);
  free(r->hubs);
  free(r->load);
  free(r->alarms);
  free(r->capacity);
  free(r->last_dirs);
  memset(r, 0, sizeof *r);
}
