#include "engine.h"

#include "err.h"
#include "log.h"
#include "server.h"
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENGINE_OBJ "engine"
/* A FAILED directive whose site still differs is retried this much later. */
#define ENGINE_FAILED_RETRY_FACTOR 5

/* ---- a small arena for building protobuf replies ---- */

typedef struct arena_blk {
  struct arena_blk *next;
  max_align_t data[];
} arena_blk_t;

typedef struct {
  arena_blk_t *head;
  int failed;
} arena_t;

static void *arena_alloc(arena_t *a, size_t n) {
  arena_blk_t *b = calloc(1, sizeof *b + (n ? n : 1));
  if (!b) {
    a->failed = 1;
    return NULL;
  }
  b->next = a->head;
  a->head = b;
  return b->data;
}

static char *arena_str(arena_t *a, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = arena_alloc(a, n);
  if (p) memcpy(p, s, n);
  return p ? p : "";
}

static void arena_free(arena_t *a) {
  while (a->head) {
    arena_blk_t *n = a->head->next;
    free(a->head);
    a->head = n;
  }
}

/* ---- waves and waiting operator requests ---- */

typedef struct wave {
  rule_kind_t kind;
  uint64_t rule_id;
  size_t *sources; /* site indices */
  unsigned n;
  uint64_t started_mono, all_acked_mono;
  bool all_acked, done;
  struct wave *next;
} wave_t;

typedef struct {
  size_t site;
  uint64_t version; /* resolved once acked at this version, or failed */
  bool resolved, applied;
  char detail[160];
  int64_t latency_ms;
} waiter_site_t;

typedef struct waiter {
  conn_t *conn; /* borrowed; NULL once the operator went away */
  uint64_t request_id;
  uint64_t started_mono, deadline_mono;
  uint64_t cutover_id;
  waiter_site_t *sites;
  unsigned n;
  bool audit_done;
  char audit_error[160];
  struct waiter *next;
} waiter_t;

struct engine {
  server_t *srv; /* borrowed owner */
  engine_opts_t opts;
  site_dir_t *dirs; /* one per site */
  plan_site_t *psites;
  cutover_t *cut;
  size_t n_cut, cap_cut;
  schedule_t *sch;
  size_t n_sch, cap_sch;
  overflow_rule_t *ovf;
  planner_overflow_state_t *ovf_state;
  size_t n_ovf, cap_ovf;
  uint64_t next_rule_id;
  wave_t *waves;
  waiter_t *waiters;
  plan_t plan;
  bool have_plan;
  uint64_t settle_from_mono, settle_until_mono; /* after taking over; 0 = settled */
  char (*alarm)[256];                           /* last alarm text per site, to log changes only */
  engine_stats_t stats;
};

const double engine_latency_le_ms[ENGINE_LATENCY_BUCKETS - 1] = {1,   2,   5,   10,   20,  50,
                                                                 100, 200, 500, 1000, 2000};

const engine_stats_t *engine_stats(const engine_t *e) {
  return &e->stats;
}

static uint64_t engine_mono(const engine_t *e) {
  return uv_now(e->srv->loop);
}
static int64_t engine_now(const engine_t *e) {
  return clock_now_ms(&e->srv->clock);
}
static site_t *engine_site(engine_t *e, size_t i) {
  return &e->srv->sites.v[i];
}
static size_t engine_nsites(const engine_t *e) {
  return e->srv->sites.n;
}

static long engine_index(engine_t *e, const char *slug) {
  site_t *s = sites_find(&e->srv->sites, slug);
  return s ? (long)(s - e->srv->sites.v) : -1;
}

static bool engine_site_exists(void *arg, const char *slug, bool *is_hub) {
  engine_t *e = arg;
  site_t *s = sites_find(&e->srv->sites, slug);
  if (s && is_hub) *is_hub = s->is_hub;
  return s != NULL;
}

const site_dir_t *engine_site_dir(const engine_t *e, size_t i) {
  return i < engine_nsites(e) ? &e->dirs[i] : NULL;
}

const char *engine_active_reason(const engine_t *e, size_t i) {
  if (i >= engine_nsites(e)) return "";
  const site_dir_t *d = &e->dirs[i];
  return d->target.reason[0] ? d->target.reason : "default";
}

/* ---- creation ---- */

int engine_new(server_t *srv, const engine_opts_t *opts, engine_t **out) {
  engine_t *e = calloc(1, sizeof *e);
  if (!e) return NIRC_ENOMEM;
  e->srv = srv;
  e->opts = *opts;
  size_t n = srv->sites.n ? srv->sites.n : 1;
  e->dirs = calloc(n, sizeof *e->dirs);
  e->psites = calloc(n, sizeof *e->psites);
  e->alarm = calloc(n, sizeof *e->alarm);
  if (!e->dirs || !e->psites || !e->alarm) {
    engine_free(e);
    return NIRC_ENOMEM;
  }
  for (size_t i = 0; i < srv->sites.n; i++) {
    route_home(&e->dirs[i].target, srv->sites.v[i].slug);
    route_home(&e->dirs[i].acked, srv->sites.v[i].slug);
  }
  /* Rule ids are unique across controller runs: the epoch is in them. */
  e->next_rule_id = srv->epoch * 1000000ull + 1;
  *out = e;
  return 0;
}

static void engine_free_waves(engine_t *e) {
  while (e->waves) {
    wave_t *n = e->waves->next;
    free(e->waves->sources);
    free(e->waves);
    e->waves = n;
  }
}

static void engine_free_waiter(waiter_t *w) {
  free(w->sites);
  free(w);
}

void engine_free(engine_t *e) {
  if (!e) return;
  engine_free_waves(e);
  while (e->waiters) {
    waiter_t *n = e->waiters->next;
    engine_free_waiter(e->waiters);
    e->waiters = n;
  }
  if (e->have_plan) planner_free(&e->plan);
  free(e->dirs);
  free(e->psites);
  free(e->alarm);
  free(e->cut);
  free(e->sch);
  free(e->ovf);
  free(e->ovf_state);
  free(e);
}

static int engine_grow(void **v, size_t *cap, size_t n, size_t size) {
  if (n < *cap) return 0;
  size_t c = *cap ? *cap * 2 : 8;
  void *p = realloc(*v, c * size);
  if (!p) return NIRC_ENOMEM;
  *v = p;
  *cap = c;
  return 0;
}

static int engine_add_cutover(engine_t *e, const cutover_t *c) {
  if (engine_grow((void **)&e->cut, &e->cap_cut, e->n_cut, sizeof *e->cut)) return NIRC_ENOMEM;
  e->cut[e->n_cut++] = *c;
  return 0;
}

static int engine_add_schedule(engine_t *e, const schedule_t *s) {
  if (engine_grow((void **)&e->sch, &e->cap_sch, e->n_sch, sizeof *e->sch)) return NIRC_ENOMEM;
  e->sch[e->n_sch++] = *s;
  return 0;
}

static int engine_add_overflow(engine_t *e, const overflow_rule_t *o) {
  size_t cap = e->cap_ovf;
  if (engine_grow((void **)&e->ovf, &e->cap_ovf, e->n_ovf, sizeof *e->ovf)) return NIRC_ENOMEM;
  if (cap != e->cap_ovf) {
    planner_overflow_state_t *st = realloc(e->ovf_state, e->cap_ovf * sizeof *st);
    if (!st) return NIRC_ENOMEM;
    e->ovf_state = st;
  }
  memset(&e->ovf_state[e->n_ovf], 0, sizeof e->ovf_state[0]);
  e->ovf_state[e->n_ovf].rule_id = o->id;
  e->ovf[e->n_ovf++] = *o;
  return 0;
}

int engine_load_rules(engine_t *e, const cutover_t *c, size_t nc, const schedule_t *s, size_t ns,
                      const overflow_rule_t *o, size_t no, uint64_t max_rule_id) {
  for (size_t i = 0; i < nc; i++)
    if (engine_add_cutover(e, &c[i])) return NIRC_ENOMEM;
  for (size_t i = 0; i < ns; i++)
    if (engine_add_schedule(e, &s[i])) return NIRC_ENOMEM;
  for (size_t i = 0; i < no; i++)
    if (engine_add_overflow(e, &o[i])) return NIRC_ENOMEM;
  /* Loaded when this instance becomes leader: its epoch is set by now. */
  if (e->srv->epoch * 1000000ull + 1 > e->next_rule_id)
    e->next_rule_id = e->srv->epoch * 1000000ull + 1;
  if (max_rule_id >= e->next_rule_id) e->next_rule_id = max_rule_id + 1;
  return 0;
}

/* ---- database records ---- */

static void engine_db_done(void *arg, int err, const char *msg, PGresult *res) {
  if (err) log_warn(LOG_DB, ENGINE_OBJ, "write failed: %s", msg && *msg ? msg : nirc_strerror(err));
}

/* Directives, acks and rule changes are the record of what the engine did:
 * each lands exactly once, through the on-disk journal while the database
 * is unreachable (db_exec_once). */
static void engine_db(engine_t *e, const char *sql, int n, const char *const *p) {
  int rc = e->srv->db ? db_exec_once(e->srv->db, sql, n, p, engine_db_done, NULL) : NIRC_ECLOSED;
  if (rc != 0)
    log_error(LOG_DB, ENGINE_OBJ, "cannot queue a routing record: %s", nirc_strerror(rc));
}

static char *engine_json_text(json_t *j) {
  char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return t;
}

static json_t *engine_slugs_json(const slug_list_t *l) {
  json_t *a = json_array();
  for (unsigned i = 0; i < l->n; i++)
    json_array_append_new(a, json_string(l->v[i]));
  return a;
}

/* PostgreSQL text[] literal for a slug list (slugs need no quoting). */
static void engine_pg_array(const slug_list_t *l, char *buf, size_t len) {
  size_t used = (size_t)snprintf(buf, len, "{");
  for (unsigned i = 0; i < l->n && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "", l->v[i]);
  if (used < len) snprintf(buf + used, len - used, "}");
}

static void engine_iso(int64_t ms, char *buf, size_t len) {
  clock_format_iso(ms, 0, buf, (unsigned)len);
}

typedef struct {
  engine_t *e;
  uint64_t request_id;
  conn_t *conn;
} audit_ctx_t;

static void engine_waiters_check(engine_t *e);
static void engine_check_waves(engine_t *e);

static void engine_audit_done(void *arg, int err, const char *msg, PGresult *res) {
  audit_ctx_t *a = arg;
  for (waiter_t *w = a->e->waiters; w; w = w->next) {
    if (w->conn == a->conn && w->request_id == a->request_id) {
      w->audit_done = true;
      if (err) snprintf(w->audit_error, sizeof w->audit_error, "%s", msg ? msg : "db error");
    }
  }
  if (err) log_error(LOG_DB, ENGINE_OBJ, "audit write failed: %s", msg ? msg : "");
  engine_waiters_check(a->e);
  free(a);
}

/* Appends one audit record (exactly once, journaled while the database is
 * unreachable); `detail` is consumed. If conn is given, the waiter for
 * (conn, request_id) is told when the row is committed or journaled. */
static void engine_audit(engine_t *e, const char *actor, const char *action, const char *target,
                         json_t *detail, conn_t *conn, uint64_t request_id) {
  char *text = engine_json_text(detail);
  const char *p[] = {actor, action, target, text ? text : "{}"};
  audit_ctx_t *a = NULL;
  if (conn) {
    a = malloc(sizeof *a);
    if (a) *a = (audit_ctx_t){e, request_id, conn};
  }
  int rc = e->srv->db ? db_exec_once(e->srv->db,
                                     "INSERT INTO audit_log (actor, action, target, detail) "
                                     "VALUES ($1,$2,$3,$4::jsonb)",
                                     4, p, a ? engine_audit_done : engine_db_done, a)
                      : NIRC_ECLOSED;
  if (rc != 0) {
    log_error(LOG_DB, ENGINE_OBJ, "cannot queue audit record %s %s: %s", action, target,
              nirc_strerror(rc));
    if (a) {
      for (waiter_t *w = e->waiters; w; w = w->next)
        if (w->conn == conn && w->request_id == request_id) {
          w->audit_done = true;
          snprintf(w->audit_error, sizeof w->audit_error, "audit not queued: %s",
                   nirc_strerror(rc));
        }
      free(a);
    }
  }
  free(text);
}

void engine_note(engine_t *e, const char *actor, const char *action, const char *target,
                 const char *why) {
  engine_audit(e, actor, action, target, json_pack("{s:s}", "why", why ? why : ""), NULL, 0);
}

static json_t *engine_route_json(const engine_t *e, size_t i) {
  const site_dir_t *d = &e->dirs[i];
  json_t *j = route_to_json(&d->target);
  json_object_set_new(j, "site", json_string(e->srv->sites.v[i].slug));
  return j;
}

/* ---- sending directives ---- */

static void engine_send(engine_t *e, size_t i, bool resend) {
  /* Last line of the leadership gate (server_may_issue): a controller
   * resumed after a pause sends nothing until its lease is confirmed. */
  if (!server_may_issue(e->srv)) return;
  site_t *s = engine_site(e, i);
  site_dir_t *d = &e->dirs[i];
  uint64_t now = engine_mono(e);
  if (!resend) {
    e->stats.directives_sent++;
    d->sent_mono_ms = now;
    d->resends = 0;
    d->state = DIR_PENDING;
    char v[3][24], revert[40] = "", route_txt[2048], *rj = NULL, *ij = NULL;
    json_t *j = route_to_json(&d->target);
    rj = engine_json_text(json_incref(json_object_get(j, "route")));
    ij = engine_json_text(json_incref(json_object_get(j, "inbound")));
    json_decref(j);
    snprintf(v[0], 24, "%llu", (unsigned long long)d->target.epoch);
    snprintf(v[1], 24, "%llu", (unsigned long long)d->target.version);
    snprintf(v[2], 24, "%llu", (unsigned long long)d->rule_id);
    if (d->target.revert_at_ms) engine_iso(d->target.revert_at_ms, revert, sizeof revert);
    const char *p[] = {s->slug,
                       v[0],
                       v[1],
                       rj ? rj : "[]",
                       ij ? ij : "[]",
                       revert[0] ? revert : NULL,
                       d->target.reason[0] ? d->target.reason : "default",
                       rules_kind_name(d->kind),
                       d->rule_id ? v[2] : NULL};
    engine_db(e,
              "INSERT INTO directives (site, epoch, version, route, inbound, revert_at, reason, "
              "rule_kind, rule_id) VALUES ($1,$2,$3,$4::jsonb,$5::jsonb,$6,$7,$8,$9) "
              "ON CONFLICT DO NOTHING",
              9, p);
    route_format(&d->target, s->slug, route_txt, sizeof route_txt);
    log_info(LOG_SITE, s->slug, "directive v%llu: %s (%s)", (unsigned long long)d->target.version,
             route_txt, d->target.reason[0] ? d->target.reason : "default");
    free(rj);
    free(ij);
  } else {
    e->stats.resends++;
    d->resends++;
    log_warn(LOG_SITE, s->slug, "no ack for directive v%llu after %u ms: resend %u/%u",
             (unsigned long long)d->target.version, e->opts.ack_timeout_ms, d->resends,
             e->opts.max_resends);
  }
  d->last_send_mono_ms = now;
  if (!s->conn) return; /* sent when the site says Hello again */

  Nirc__Directive dir = NIRC__DIRECTIVE__INIT;
  Nirc__RouteShare sh[ROUTE_MAX_SHARES], *shp[ROUTE_MAX_SHARES];
  Nirc__RouteShare in[ROUTE_MAX_INBOUND], *inp[ROUTE_MAX_INBOUND];
  char *names[ROUTE_MAX_INBOUND];
  dir.site = s->slug;
  dir.epoch = d->target.epoch;
  dir.version = d->target.version;
  dir.revert_at_ms = d->target.revert_at_ms;
  dir.reason = d->target.reason;
  dir.issued_at_ms = engine_now(e);
  for (unsigned k = 0; k < d->target.n_share; k++) {
    nirc__route_share__init(&sh[k]);
    sh[k].site = d->target.share[k].site;
    sh[k].permille = d->target.share[k].permille;
    shp[k] = &sh[k];
  }
  dir.route = shp;
  dir.n_route = d->target.n_share;
  for (unsigned k = 0; k < d->target.n_inbound; k++) {
    nirc__route_share__init(&in[k]);
    in[k].site = d->target.inbound[k].site;
    in[k].permille = d->target.inbound[k].permille;
    inp[k] = &in[k];
    names[k] = d->target.inbound[k].site;
  }
  dir.inbound = inp;
  dir.n_inbound = d->target.n_inbound;
  dir.inbound_sources = names;
  dir.n_inbound_sources = d->target.n_inbound;
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_DIRECTIVE;
  env.directive = &dir;
  conn_t *c = s->conn;
  link_send(c->link, &env);
}

/* ---- progress to waiting operators ---- */

static void engine_progress(engine_t *e, conn_t *c, uint64_t request_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void engine_progress(engine_t *e, conn_t *c, uint64_t request_id, const char *fmt, ...) {
  if (!c) return;
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  Nirc__Progress p = NIRC__PROGRESS__INIT;
  p.request_id = request_id;
  p.line = line;
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_PROGRESS;
  env.progress = &p;
  link_send(c->link, &env);
}

static void engine_progress_site(engine_t *e, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void engine_progress_site(engine_t *e, size_t i, const char *fmt, ...) {
  char line[240];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  for (waiter_t *w = e->waiters; w; w = w->next)
    for (unsigned k = 0; k < w->n; k++)
      if (w->sites[k].site == i && !w->sites[k].resolved)
        engine_progress(e, w->conn, w->request_id, "%s", line);
}

/* ---- planning ---- */

/* Expected own demand of `slug` at business time at_ms, from the forecast
 * scenario; 0 when there is none (the planner then uses live demand). */
static double engine_forecast(const engine_t *e, const char *slug, int64_t at_ms) {
  const scenario_t *sc = e->opts.forecast;
  if (!sc) return 0;
  const scenario_site_t *s = scenario_find(sc, slug);
  if (!s) return 0;
  int64_t local = at_ms / 1000 + (int64_t)sc->utc_offset_min * 60;
  double hour = (double)(((local % 86400) + 86400) % 86400) / 3600.0;
  return scenario_rate_per_s(sc, s, hour);
}

/* Agents the forecast scenario rosters at `slug` at business time at_ms,
 * and its handle time; false when there is no forecast or it does not know
 * the site. */
static bool engine_forecast_staff(const engine_t *e, const char *slug, int64_t at_ms,
                                  unsigned *agents, double *aht_s) {
  const scenario_t *sc = e->opts.forecast;
  const scenario_site_t *s = sc ? scenario_find(sc, slug) : NULL;
  if (!s) return false;
  int64_t local = at_ms / 1000 + (int64_t)sc->utc_offset_min * 60;
  double hour = (double)(((local % 86400) + 86400) % 86400) / 3600.0;
  *agents = scenario_agents_at(s, hour);
  *aht_s = s->aht_s;
  return true;
}

static void engine_build_input(engine_t *e, plan_input_t *in, const cutover_t *extra_cut,
                               size_t n_extra_cut) {
  size_t n = engine_nsites(e);
  int64_t now = engine_now(e);
  for (size_t i = 0; i < n; i++) {
    site_t *s = engine_site(e, i);
    plan_site_t *p = &e->psites[i];
    memset(p, 0, sizeof *p);
    nirc_strlcpy(p->slug, s->slug, sizeof p->slug);
    p->is_hub = s->is_hub;
    /* A site without a report yet is not known to be able to take calls. */
    p->online = s->state == SITE_ONLINE && s->has_report && !s->last.pbx_unreadable;
    /* Until five minutes of calls are seen, the forecast fills the gap; one
     * call in the first second must not read as a flood. */
    p->forecast_cps = engine_forecast(e, s->slug, now);
    p->demand_cps = sites_demand_cps(s, p->forecast_cps, e->opts.forecast ? 300.0 : 60.0);
    p->aht_s = s->aht_s > 0 ? s->aht_s : (s->has_report ? s->last.aht_ms / 1000.0 : 0);
    if (s->has_report && s->last.logged_in >= s->last.not_ready)
      p->staffed = s->last.logged_in - s->last.not_ready;
    p->wait_s = s->wait_s;
    p->queue = s->queue;
    p->sl = s->has_ewma ? s->sl : 1.0;
    p->excluded = e->dirs[i].excluded_rule != 0;
  }
  memset(in, 0, sizeof *in);
  in->sites = e->psites;
  in->n_sites = n;
  in->cutovers = extra_cut ? extra_cut : e->cut;
  in->n_cutovers = extra_cut ? n_extra_cut : e->n_cut;
  in->schedules = e->sch;
  in->n_schedules = e->n_sch;
  in->overflows = e->ovf;
  in->n_overflows = e->n_ovf;
  in->overflow_state = e->ovf_state;
  in->now_ms = engine_now(e);
  in->sl_target = e->opts.sl_target;
  in->sl_threshold_s = e->opts.sl_threshold_s;
}

static bool engine_wave_active(const engine_t *e, rule_kind_t kind, uint64_t id) {
  for (const wave_t *w = e->waves; w; w = w->next)
    if (!w->done && w->kind == kind && w->rule_id == id) return true;
  return false;
}

static bool engine_is_away(const route_t *r, const char *self) {
  return route_share_of(r, self) < 1000;
}

/* The routing part of a plan route, as a route_t without inbound. */
static void engine_route_from_plan(const plan_route_t *p, route_t *r) {
  memset(r, 0, sizeof *r);
  for (unsigned k = 0; k < p->n_route && k < ROUTE_MAX_SHARES; k++) {
    nirc_strlcpy(r->share[k].site, p->route[k].site, sizeof r->share[k].site);
    r->share[k].permille = p->route[k].permille;
  }
  r->n_share = p->n_route < ROUTE_MAX_SHARES ? p->n_route : ROUTE_MAX_SHARES;
  r->revert_at_ms = p->revert_at_ms;
  nirc_strlcpy_utf8(r->reason, p->reason, sizeof r->reason);
}

static bool engine_shares_same(const route_t *a, const route_t *b) {
  route_t x = *a, y = *b;
  x.n_inbound = y.n_inbound = 0;
  return route_same(&x, &y) && a->revert_at_ms == b->revert_at_ms;
}

static void engine_log_alarms(engine_t *e, const plan_t *p) {
  size_t n = engine_nsites(e);
  char *now = calloc(n, 256);
  if (!now) return;
  for (size_t k = 0; k < p->n_alarms; k++) {
    long i = engine_index(e, p->alarms[k].site);
    if (i >= 0) nirc_strlcpy(now + (size_t)i * 256, p->alarms[k].message, 256);
  }
  for (size_t i = 0; i < n; i++) {
    const char *msg = now + i * 256;
    if (strcmp(msg, e->alarm[i]) == 0) continue;
    if (*msg) {
      log_error(LOG_SITE, engine_site(e, i)->slug, "ALARM: %s", msg);
      server_record_event(e->srv, "site", NULL, engine_site(e, i)->slug, "-", "alarm", msg);
    } else {
      log_info(LOG_SITE, engine_site(e, i)->slug, "alarm cleared");
    }
    nirc_strlcpy(e->alarm[i], msg, sizeof e->alarm[i]);
  }
  free(now);
}

/* Re-plans and moves targets towards the plan. Indices of sites whose
 * target changed are appended to changed (capacity n_sites) if given. */
/* Counts the sites of `l` that are not online with a report. */
static unsigned engine_missing(engine_t *e, const slug_list_t *l) {
  unsigned missing = 0;
  for (unsigned k = 0; k < l->n; k++) {
    long i = engine_index(e, l->v[k]);
    /* The planner takes a site as a hub only once it reported (online in
     * engine_build_input): so wait for a report, not just the Hello. */
    const site_t *s = i >= 0 ? engine_site(e, (size_t)i) : NULL;
    if (s && !(s->state == SITE_ONLINE && s->has_report)) missing++;
  }
  return missing;
}

/* A new leader knows the rules but not yet where the sites are: agents
 * reconnect over a second or two, hubs included. Planning on that half
 * picture would send sources home from hubs that are merely not back yet
 * (routing changing during a failover). So until every source and hub of
 * an active cutover or a schedule in force has said Hello, or the settle
 * window has passed, nothing is planned or moved. With no such rule (a
 * first start) every site routes home anyway and there is nothing to wait
 * for. */
static bool engine_settling(engine_t *e) {
  if (!e->settle_until_mono) return false;
  uint64_t now = engine_mono(e);
  unsigned missing = 0;
  for (size_t k = 0; k < e->n_cut; k++)
    if (e->cut[k].state == CUTOVER_ACTIVE)
      missing += engine_missing(e, &e->cut[k].sources) + engine_missing(e, &e->cut[k].hubs);
  int64_t start, end;
  for (size_t k = 0; k < e->n_sch; k++)
    if (rules_schedule_window(&e->sch[k], engine_now(e), &start, &end))
      missing += engine_missing(e, &e->sch[k].sources) + engine_missing(e, &e->sch[k].hubs);
  if (now < e->settle_until_mono && missing > 0) return true;
  log_info(LOG_MAIN, ENGINE_OBJ,
           "settled %llu ms after taking over (%u site(s) of the rules in "
           "force not back)",
           (unsigned long long)(now - e->settle_from_mono), missing);
  e->settle_until_mono = 0;
  return false;
}

void engine_start_leading(engine_t *e, uint32_t settle_ms) {
  e->settle_from_mono = engine_mono(e);
  e->settle_until_mono = e->settle_from_mono + settle_ms;
  /* Decided now, on the rules just loaded: with none in force there is
   * nothing to wait for, and rules added later do not start a wait. */
  (void)engine_settling(e);
}

static void engine_evaluate(engine_t *e, size_t *changed, unsigned *n_changed) {
  if (n_changed) *n_changed = 0;
  if (engine_settling(e)) return;
  plan_input_t in;
  engine_build_input(e, &in, NULL, 0);
  plan_t plan;
  if (planner_run(&in, &plan) != 0) {
    log_error(LOG_MAIN, ENGINE_OBJ, "planner out of memory: routing unchanged");
    return;
  }
  if (e->have_plan) planner_free(&e->plan);
  e->plan = plan;
  e->have_plan = true;
  for (size_t k = 0; k < e->n_ovf && plan.overflow_state; k++)
    e->ovf_state[k] = plan.overflow_state[k];
  engine_log_alarms(e, &plan);

  size_t n = engine_nsites(e);
  route_t *next = calloc(n, sizeof *next);
  if (!next) return;
  /* 1. Sources: returns and changes of hub are applied at once; new moves
   * away wait for their rule's wave. */
  for (size_t i = 0; i < n; i++) {
    site_dir_t *d = &e->dirs[i];
    const plan_route_t *pr = &plan.routes[i];
    next[i] = d->target;
    route_t want;
    engine_route_from_plan(pr, &want);
    if (engine_shares_same(&want, &d->target)) {
      nirc_strlcpy_utf8(next[i].reason, want.reason, sizeof next[i].reason);
      continue;
    }
    const char *self = engine_site(e, i)->slug;
    bool advance = route_share_of(&want, self) < route_share_of(&d->target, self);
    if (advance && engine_wave_active(e, pr->kind, pr->rule_id)) continue; /* next wave */
    next[i].n_share = want.n_share;
    memcpy(next[i].share, want.share, sizeof want.share);
    next[i].revert_at_ms = want.revert_at_ms;
    nirc_strlcpy_utf8(next[i].reason, want.reason, sizeof next[i].reason);
    d->kind = pr->kind;
    d->rule_id = pr->rule_id;
  }
  /* 2. Waves: per rule, at most wave_size new moves start together. */
  for (size_t i = 0; i < n; i++) {
    const plan_route_t *pr = &plan.routes[i];
    const char *self = engine_site(e, i)->slug;
    bool advance = route_share_of(&next[i], self) < route_share_of(&e->dirs[i].target, self);
    if (!advance || engine_wave_active(e, pr->kind, pr->rule_id)) continue;
    wave_t *w = calloc(1, sizeof *w);
    if (w) w->sources = calloc(n, sizeof *w->sources);
    if (!w || !w->sources) {
      free(w);
      break;
    }
    w->kind = pr->kind;
    w->rule_id = pr->rule_id;
    w->started_mono = engine_mono(e);
    unsigned limit = pr->wave_size ? pr->wave_size : (unsigned)n;
    for (size_t j = i; j < n && w->n < limit; j++) {
      const plan_route_t *pj = &plan.routes[j];
      const char *sj = engine_site(e, j)->slug;
      if (pj->kind != w->kind || pj->rule_id != w->rule_id) continue;
      if (route_share_of(&next[j], sj) < route_share_of(&e->dirs[j].target, sj))
        w->sources[w->n++] = j;
    }
    /* Sources beyond the wave keep their current target for now. */
    for (size_t j = i; j < n; j++) {
      const plan_route_t *pj = &plan.routes[j];
      const char *sj = engine_site(e, j)->slug;
      if (pj->kind != w->kind || pj->rule_id != w->rule_id) continue;
      bool in_wave = false;
      for (unsigned k = 0; k < w->n; k++)
        in_wave |= w->sources[k] == j;
      if (!in_wave && route_share_of(&next[j], sj) < route_share_of(&e->dirs[j].target, sj)) {
        char keep_reason[128];
        nirc_strlcpy(keep_reason, next[j].reason, sizeof keep_reason);
        next[j] = e->dirs[j].target;
        nirc_strlcpy(next[j].reason, e->dirs[j].target.reason, sizeof next[j].reason);
      }
    }
    w->next = e->waves;
    e->waves = w;
    char list[512] = "";
    size_t used = 0;
    for (unsigned k = 0; k < w->n; k++)
      used += (size_t)snprintf(list + used, used < sizeof list ? sizeof list - used : 0, "%s%s",
                               k ? "," : "", engine_site(e, w->sources[k])->slug);
    log_info(LOG_MAIN, ENGINE_OBJ, "%s %llu: wave of %u source(s): %s", rules_kind_name(w->kind),
             (unsigned long long)w->rule_id, w->n, list);
    if (w->kind == RULE_SCHEDULE || w->kind == RULE_OVERFLOW) {
      json_t *srcs = json_array();
      for (unsigned k = 0; k < w->n; k++)
        json_array_append_new(srcs, json_string(engine_site(e, w->sources[k])->slug));
      engine_audit(e, "engine", "move", rules_kind_name(w->kind),
                   json_pack("{s:s, s:I, s:o, s:s}", "rule", rules_kind_name(w->kind), "rule_id",
                             (json_int_t)w->rule_id, "sources", srcs, "reason",
                             plan.routes[w->sources[0]].reason),
                   NULL, 0);
    }
  }
  /* 3. Hubs: inbound follows the sources' targets, never the plan, so a
   * hub takes calls exactly from the sources that were told to send them. */
  for (size_t h = 0; h < n; h++) {
    const char *hub = engine_site(e, h)->slug;
    next[h].n_inbound = 0;
    for (size_t s = 0; s < n; s++) {
      if (s == h) continue;
      uint32_t pm = route_share_of(&next[s], hub);
      if (pm == 0 || next[h].n_inbound >= ROUTE_MAX_INBOUND) continue;
      route_share_t *ib = &next[h].inbound[next[h].n_inbound++];
      nirc_strlcpy(ib->site, engine_site(e, s)->slug, sizeof ib->site);
      ib->permille = pm;
    }
  }
  /* 4. Send what changed. */
  for (size_t i = 0; i < n; i++) {
    site_dir_t *d = &e->dirs[i];
    if (route_same(&next[i], &d->target) && next[i].revert_at_ms == d->target.revert_at_ms) {
      nirc_strlcpy(d->target.reason, next[i].reason, sizeof d->target.reason);
      continue;
    }
    uint64_t version = d->target.epoch == e->srv->epoch ? d->target.version + 1 : 1;
    d->target = next[i];
    d->target.epoch = e->srv->epoch;
    d->target.version = version;
    if (!engine_is_away(&d->target, engine_site(e, i)->slug) && d->target.n_inbound == 0) {
      d->kind = RULE_NONE;
      d->rule_id = 0;
    }
    engine_send(e, i, false);
    if (changed) changed[(*n_changed)++] = i;
  }
  free(next);
}

/* ---- acknowledgements, timeouts, waves ---- */

static void engine_record_ack(engine_t *e, size_t i, uint64_t epoch, uint64_t version,
                              const char *result, const char *detail, int64_t latency) {
  char v[3][24];
  snprintf(v[0], 24, "%llu", (unsigned long long)epoch);
  snprintf(v[1], 24, "%llu", (unsigned long long)version);
  snprintf(v[2], 24, "%lld", (long long)latency);
  const char *p[] = {engine_site(e, i)->slug,   v[0], v[1], result, detail ? detail : "",
                     latency >= 0 ? v[2] : NULL};
  engine_db(e,
            "INSERT INTO directive_acks (site, epoch, version, result, detail, latency_ms) "
            "VALUES ($1,$2,$3,$4,$5,$6)",
            6, p);
}

static void engine_fail(engine_t *e, size_t i, const char *why) {
  site_t *s = engine_site(e, i);
  site_dir_t *d = &e->dirs[i];
  d->state = DIR_FAILED;
  log_error(LOG_SITE, s->slug, "ALARM: directive v%llu failed: %s",
            (unsigned long long)d->target.version, why);
  server_record_event(e->srv, "site", NULL, s->slug, s->peer_addr, "directive_failed", why);
  engine_progress_site(e, i, "%s: FAILED: %s", s->slug, why);
  if (engine_is_away(&d->target, s->slug)) {
    /* Roll back: the source goes home and this rule leaves it alone until
     * the rule changes or an operator names the site again. */
    e->stats.rollbacks++;
    d->excluded_rule = d->rule_id ? d->rule_id : 1;
    d->excluded_kind = d->kind;
    engine_audit(e, "engine", "rollback", s->slug,
                 json_pack("{s:s, s:s, s:I, s:s}", "reason", why, "rule", rules_kind_name(d->kind),
                           "rule_id", (json_int_t)d->rule_id, "site", s->slug),
                 NULL, 0);
  }
  for (waiter_t *w = e->waiters; w; w = w->next)
    for (unsigned k = 0; k < w->n; k++)
      if (w->sites[k].site == i && !w->sites[k].resolved) {
        w->sites[k].resolved = true;
        w->sites[k].applied = false;
        nirc_strlcpy(w->sites[k].detail, why, sizeof w->sites[k].detail);
      }
}

void engine_on_ack(engine_t *e, size_t i, const Nirc__DirectiveAck *ack) {
  site_dir_t *d = &e->dirs[i];
  site_t *s = engine_site(e, i);
  int64_t latency = (int64_t)(engine_mono(e) - d->sent_mono_ms);
  const char *result = ack->result == NIRC__ACK_RESULT__ACK_RESULT_APPLIED    ? "applied"
                       : ack->result == NIRC__ACK_RESULT__ACK_RESULT_REJECTED ? "rejected"
                                                                              : "failed";
  bool current = ack->epoch == d->target.epoch && ack->version == d->target.version;
  engine_record_ack(e, i, ack->epoch, ack->version, result, ack->detail, current ? latency : -1);
  if (!current) {
    log_debug(LOG_SITE, s->slug, "ack for superseded directive (%llu, %llu) ignored",
              (unsigned long long)ack->epoch, (unsigned long long)ack->version);
    return;
  }
  if (d->state != DIR_PENDING) return; /* a duplicate ack after a resend */
  if (ack->result == NIRC__ACK_RESULT__ACK_RESULT_APPLIED) {
    e->stats.acks_applied++;
    unsigned b = 0;
    while (b < ENGINE_LATENCY_BUCKETS - 1 && (double)latency > engine_latency_le_ms[b])
      b++;
    for (unsigned k = b; k < ENGINE_LATENCY_BUCKETS; k++)
      e->stats.latency_bucket[k]++;
    e->stats.latency_sum_ms += (double)latency;
    e->stats.latency_count++;
    d->acked = d->target;
    d->known = true;
    d->state = DIR_IDLE;
    log_info(LOG_SITE, s->slug, "directive v%llu applied in %lld ms",
             (unsigned long long)ack->version, (long long)latency);
    engine_progress_site(e, i, "%s: applied v%llu in %lld ms", s->slug,
                         (unsigned long long)ack->version, (long long)latency);
    for (waiter_t *w = e->waiters; w; w = w->next)
      for (unsigned k = 0; k < w->n; k++)
        if (w->sites[k].site == i && !w->sites[k].resolved && ack->version >= w->sites[k].version) {
          w->sites[k].resolved = true;
          w->sites[k].applied = true;
          w->sites[k].latency_ms = latency;
          nirc_strlcpy(w->sites[k].detail, ack->detail ? ack->detail : "",
                       sizeof w->sites[k].detail);
        }
  } else {
    if (ack->result == NIRC__ACK_RESULT__ACK_RESULT_REJECTED)
      e->stats.acks_rejected++;
    else
      e->stats.acks_failed++;
    char why[220];
    snprintf(why, sizeof why, "agent %s: %.180s", result, ack->detail ? ack->detail : "");
    engine_fail(e, i, why);
  }
  /* The verification window starts at the last acknowledgement, not at
   * the next tick. */
  engine_check_waves(e);
  engine_waiters_check(e);
}

void engine_on_hello(engine_t *e, size_t i, const route_t *applied) {
  site_dir_t *d = &e->dirs[i];
  site_t *s = engine_site(e, i);
  if (!d->known) {
    /* First contact in this epoch: start from what the agent routes by. */
    if (applied) {
      d->acked = *applied;
      d->target = *applied;
    }
    d->known = true;
    d->state = DIR_IDLE;
    if (applied) {
      char desc[200];
      route_format(applied, s->slug, desc, sizeof desc);
      log_info(LOG_SITE, s->slug, "agent routes by (%llu, %llu): %s",
               (unsigned long long)applied->epoch, (unsigned long long)applied->version, desc);
    }
    return;
  }
  if (applied) d->acked = *applied;
  /* Reconnected: if it does not have our target, send it again. */
  if (!applied || !route_same(applied, &d->target) ||
      route_compare_version(applied, &d->target) != 0) {
    if (d->target.epoch == e->srv->epoch && d->target.version > 0) {
      d->state = DIR_PENDING;
      d->resends = 0;
      engine_send(e, i, true);
    }
  } else {
    d->state = DIR_IDLE;
  }
}

void engine_on_link_down(engine_t *e, size_t i) {
  (void)e, (void)i;
}

static void engine_check_timeouts(engine_t *e) {
  uint64_t now = engine_mono(e);
  for (size_t i = 0; i < engine_nsites(e); i++) {
    site_dir_t *d = &e->dirs[i];
    site_t *s = engine_site(e, i);
    if (d->state == DIR_PENDING && s->conn &&
        now - d->last_send_mono_ms >= e->opts.ack_timeout_ms) {
      if (d->resends < e->opts.max_resends) {
        engine_send(e, i, true);
      } else {
        char why[160];
        snprintf(why, sizeof why, "no acknowledgement after %u resends", d->resends);
        e->stats.timeouts++;
        engine_record_ack(e, i, d->target.epoch, d->target.version, "timeout", why, -1);
        engine_fail(e, i, why);
      }
    } else if (d->state == DIR_FAILED && s->conn && !route_same(&d->target, &d->acked) &&
               now - d->last_send_mono_ms >=
                   (uint64_t)e->opts.ack_timeout_ms * ENGINE_FAILED_RETRY_FACTOR) {
      /* Keep trying, slowly: the alarm stands until it works. */
      d->state = DIR_PENDING;
      d->resends = 0;
      engine_send(e, i, true);
    }
  }
}

static void engine_check_waves(engine_t *e) {
  uint64_t now = engine_mono(e);
  wave_t **pp = &e->waves;
  while (*pp) {
    wave_t *w = *pp;
    if (!w->done) {
      bool acked = true, failed = false, hubs_ok = true;
      for (unsigned k = 0; k < w->n; k++) {
        site_dir_t *d = &e->dirs[w->sources[k]];
        if (d->state == DIR_FAILED) failed = true;
        if (d->state != DIR_IDLE) acked = false;
        for (unsigned h = 0; h < d->target.n_share; h++) {
          site_t *hub = sites_find(&e->srv->sites, d->target.share[h].site);
          if (hub && hub != engine_site(e, w->sources[k]) && hub->state != SITE_ONLINE)
            hubs_ok = false;
        }
      }
      if (acked && !w->all_acked) {
        w->all_acked = true;
        w->all_acked_mono = now;
      }
      if (failed || !hubs_ok) {
        w->done = true;
        log_error(LOG_MAIN, ENGINE_OBJ, "%s %llu: wave not verified (%s)", rules_kind_name(w->kind),
                  (unsigned long long)w->rule_id,
                  failed ? "a source failed and was rolled back" : "a hub is not healthy");
      } else if (w->all_acked && now - w->all_acked_mono >= e->opts.verify_window_ms) {
        w->done = true;
        log_info(LOG_MAIN, ENGINE_OBJ, "%s %llu: wave of %u verified", rules_kind_name(w->kind),
                 (unsigned long long)w->rule_id, w->n);
      }
    }
    /* Keep finished waves briefly for nothing: free them. */
    if (w->done) {
      *pp = w->next;
      free(w->sources);
      free(w);
    } else {
      pp = &w->next;
    }
  }
}

/* ---- operator replies ---- */

static void engine_send_reply(conn_t *c, Nirc__OperatorReply *rep) {
  if (!c) return;
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REPLY;
  env.operator_reply = rep;
  link_send(c->link, &env);
}

static void engine_reply_error(conn_t *c, uint64_t request_id, Nirc__ErrorCode code,
                               const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void engine_reply_error(conn_t *c, uint64_t request_id, Nirc__ErrorCode code,
                               const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  Nirc__Error err = NIRC__ERROR__INIT;
  err.code = code;
  err.message = msg;
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.request_id = request_id;
  rep.ok = 0;
  rep.error = &err;
  engine_send_reply(c, &rep);
}

static void engine_audit(engine_t *e, const char *actor, const char *action, const char *target,
                         json_t *detail, conn_t *conn, uint64_t request_id);
static const char *engine_operator(conn_t *c);

/* "a,b,c" from a request's list of names, for audit targets. */
static void engine_join(char **v, size_t n, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && used + 1 < len; i++) {
    int k = snprintf(buf + used, len - used, "%s%s", i ? "," : "", v[i] ? v[i] : "");
    if (k < 0) break;
    used += (size_t)k;
  }
}

/* Refuses an operator request: the reason goes to the operator, the log
 * and the audit trail (every operator action is audited, refusals too). */
static void engine_refuse(engine_t *e, conn_t *c, uint64_t request_id, const char *op,
                          const char *target, Nirc__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void engine_refuse(engine_t *e, conn_t *c, uint64_t request_id, const char *op,
                          const char *target, Nirc__ErrorCode code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (code == NIRC__ERROR_CODE__ERROR_CODE_REFUSED) {
    char action[48];
    snprintf(action, sizeof action, "%s-refused", op);
    log_warn(LOG_OPS, link_label(c->link), "%s refused: %s", op, msg);
    engine_audit(e, engine_operator(c), action, target && *target ? target : op,
                 json_pack("{s:s}", "refusal", msg), NULL, 0);
  }
  engine_reply_error(c, request_id, code, "%s", msg);
}

static void engine_waiters_check(engine_t *e) {
  uint64_t now = engine_mono(e);
  waiter_t **pp = &e->waiters;
  while (*pp) {
    waiter_t *w = *pp;
    bool all = true;
    for (unsigned k = 0; k < w->n; k++) {
      if (w->sites[k].resolved) continue;
      if (now >= w->deadline_mono) {
        w->sites[k].resolved = true;
        site_t *s = engine_site(e, w->sites[k].site);
        snprintf(w->sites[k].detail, sizeof w->sites[k].detail,
                 s->conn ? "no acknowledgement in time"
                         : "site is offline: directive not delivered");
      } else {
        all = false;
      }
    }
    if (w->conn == NULL) all = true; /* nobody to tell; drop it */
    if (!all || (!w->audit_done && now < w->deadline_mono)) {
      pp = &w->next;
      continue;
    }
    *pp = w->next;
    if (w->conn) {
      arena_t a = {0};
      Nirc__MoveReply *mv = arena_alloc(&a, sizeof *mv);
      Nirc__SiteOutcome **outs = arena_alloc(&a, (w->n + 1) * sizeof *outs);
      if (mv && outs) {
        nirc__move_reply__init(mv);
        mv->cutover_id = w->cutover_id;
        for (unsigned k = 0; k < w->n; k++) {
          Nirc__SiteOutcome *o = arena_alloc(&a, sizeof *o);
          if (!o) break;
          nirc__site_outcome__init(o);
          o->site = engine_site(e, w->sites[k].site)->slug;
          o->result = w->sites[k].applied ? NIRC__ACK_RESULT__ACK_RESULT_APPLIED
                                          : NIRC__ACK_RESULT__ACK_RESULT_FAILED;
          o->detail = arena_str(&a, w->sites[k].detail);
          o->version = w->sites[k].version;
          o->latency_ms = w->sites[k].latency_ms;
          outs[mv->n_outcomes++] = o;
          if (w->sites[k].applied)
            mv->applied++;
          else
            mv->failed++;
        }
        mv->outcomes = outs;
        mv->elapsed_ms = (int64_t)(now - w->started_mono);
        Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
        rep.request_id = w->request_id;
        rep.ok = 1;
        Nirc__Error err = NIRC__ERROR__INIT;
        if (w->audit_error[0] || !w->audit_done) {
          /* The move happened, but its audit row is not confirmed: say so. */
          err.code = NIRC__ERROR_CODE__ERROR_CODE_UNAVAILABLE;
          err.message = w->audit_done ? w->audit_error : "audit record not yet committed";
          rep.error = &err;
        }
        rep.body_case = NIRC__OPERATOR_REPLY__BODY_MOVE;
        rep.move = mv;
        engine_send_reply(w->conn, &rep);
      }
      arena_free(&a);
    }
    engine_free_waiter(w);
  }
}

void engine_on_conn_closed(engine_t *e, conn_t *c) {
  for (waiter_t *w = e->waiters; w; w = w->next)
    if (w->conn == c) w->conn = NULL;
}

static waiter_t *engine_new_waiter(engine_t *e, conn_t *c, uint64_t request_id, const size_t *sites,
                                   unsigned n) {
  waiter_t *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->sites = calloc(n ? n : 1, sizeof *w->sites);
  if (!w->sites) {
    free(w);
    return NULL;
  }
  w->conn = c;
  w->request_id = request_id;
  w->started_mono = engine_mono(e);
  /* Long enough for every resend, then the operator hears what happened. */
  w->deadline_mono = w->started_mono + (uint64_t)e->opts.ack_timeout_ms * (e->opts.max_resends + 2);
  for (unsigned k = 0; k < n; k++) {
    w->sites[k].site = sites[k];
    w->sites[k].version = e->dirs[sites[k]].target.version;
  }
  w->n = n;
  w->next = e->waiters;
  e->waiters = w;
  return w;
}

/* ---- plan replies ---- */

static void engine_fill_prediction(arena_t *a, const plan_capacity_t *pc, const engine_t *e,
                                   Nirc__CapacityPrediction *cp) {
  nirc__capacity_prediction__init(cp);
  cp->hub = arena_str(a, pc->hub);
  cp->traffic_before_erl = pc->before.traffic_erl;
  cp->traffic_after_erl = pc->after.traffic_erl;
  cp->agents = pc->after.agents;
  cp->sl_before = pc->before.service_level;
  cp->sl_after = pc->after.service_level;
  cp->asa_after_s = pc->after.stable && isfinite(pc->after.asa_s) ? pc->after.asa_s : -1;
  cp->occupancy_after = pc->after.occupancy;
  cp->agents_needed = pc->agents_needed;
  cp->stable_after = pc->after.stable;
  cp->refused = pc->refused;
  cp->sl_target = e->opts.sl_target;
  cp->sl_threshold_s = e->opts.sl_threshold_s;
}

/* Fills a PlanReply for the sites in `focus` (indices; NULL = all). */
static Nirc__PlanReply *engine_plan_reply(engine_t *e, arena_t *a, const plan_t *p,
                                          const bool *focus) {
  Nirc__PlanReply *pr = arena_alloc(a, sizeof *pr);
  if (!pr) return NULL;
  nirc__plan_reply__init(pr);
  size_t n = engine_nsites(e);
  pr->capacity = arena_alloc(a, (p->n_capacity + 1) * sizeof *pr->capacity);
  pr->moves = arena_alloc(a, (n + 1) * sizeof *pr->moves);
  pr->alarms = arena_alloc(a, (p->n_alarms + 1) * sizeof *pr->alarms);
  if (!pr->capacity || !pr->moves || !pr->alarms) return NULL;
  for (size_t k = 0; k < p->n_capacity; k++) {
    Nirc__CapacityPrediction *cp = arena_alloc(a, sizeof *cp);
    if (!cp) return NULL;
    engine_fill_prediction(a, &p->capacity[k], e, cp);
    pr->capacity[pr->n_capacity++] = cp;
  }
  for (size_t i = 0; i < n; i++) {
    route_t want;
    engine_route_from_plan(&p->routes[i], &want);
    /* Only changes are moves; `focus` narrows them to the request's sites. */
    if (engine_shares_same(&want, &e->dirs[i].target)) continue;
    if (focus && !focus[i]) continue;
    Nirc__PlannedMove *m = arena_alloc(a, sizeof *m);
    if (!m) return NULL;
    nirc__planned_move__init(m);
    m->site = engine_site(e, i)->slug;
    m->reason = arena_str(a, want.reason);
    m->revert_at_ms = want.revert_at_ms;
    m->route = arena_alloc(a, (want.n_share + 1) * sizeof *m->route);
    if (!m->route) return NULL;
    for (unsigned k = 0; k < want.n_share; k++) {
      Nirc__RouteShare *rs = arena_alloc(a, sizeof *rs);
      if (!rs) return NULL;
      nirc__route_share__init(rs);
      rs->site = arena_str(a, want.share[k].site);
      rs->permille = want.share[k].permille;
      m->route[m->n_route++] = rs;
    }
    pr->moves[pr->n_moves++] = m;
  }
  for (size_t k = 0; k < p->n_alarms; k++) {
    long i = engine_index(e, p->alarms[k].site);
    if (focus && i >= 0 && !focus[i]) continue;
    pr->alarms[pr->n_alarms++] = arena_str(a, p->alarms[k].message);
    if (p->alarms[k].kind == PLAN_ALARM_CAPACITY || p->alarms[k].kind == PLAN_ALARM_NO_HUB) {
      if (!pr->refused) pr->refusal = arena_str(a, p->alarms[k].message);
      pr->refused = 1;
    }
  }
  return pr;
}

/* ---- operator requests ---- */

static int engine_copy_slugs(slug_list_t *l, char **v, size_t n, const char *what, char *err,
                             size_t errlen) {
  memset(l, 0, sizeof *l);
  if (n > RULES_MAX_SITES) {
    snprintf(err, errlen, "at most %d %s", RULES_MAX_SITES, what);
    return NIRC_EINVAL;
  }
  for (size_t i = 0; i < n; i++) {
    if (!v[i] || nirc_strlcpy(l->v[l->n], v[i], sizeof l->v[0]) >= sizeof l->v[0]) {
      snprintf(err, errlen, "a %s name is too long", what);
      return NIRC_EINVAL;
    }
    l->n++;
  }
  return 0;
}

static bool engine_list_has(const slug_list_t *l, const char *slug) {
  for (unsigned i = 0; i < l->n; i++)
    if (strcmp(l->v[i], slug) == 0) return true;
  return false;
}

/* Runs the planner on the live state with `extra` added to the active
 * cutovers, for a dry run or a refusal check. */
static int engine_trial_plan(engine_t *e, const cutover_t *extra, plan_t *out) {
  cutover_t *all = calloc(e->n_cut + 1, sizeof *all);
  if (!all) return NIRC_ENOMEM;
  if (e->n_cut) memcpy(all, e->cut, e->n_cut * sizeof *all); /* e->cut may be NULL */
  size_t n = e->n_cut;
  if (extra) all[n++] = *extra;
  plan_input_t in;
  engine_build_input(e, &in, all, n);
  int rc = planner_run(&in, out);
  free(all);
  return rc;
}

static const char *engine_operator(conn_t *c) {
  static char who[96];
  snprintf(who, sizeof who, "%s", link_peer(c->link)->subject);
  return who;
}

int engine_cutover_from_request(const Nirc__CutoverRequest *req, const char *operator_name,
                                int64_t now_ms, cutover_t *cut, char *err, size_t errlen) {
  memset(cut, 0, sizeof *cut);
  if (engine_copy_slugs(&cut->sources, req->sources, req->n_sources, "sources", err, errlen) ||
      engine_copy_slugs(&cut->hubs, req->hubs, req->n_hubs, "hubs", err, errlen))
    return NIRC_EINVAL;
  if (req->reason && strlen(req->reason) >= sizeof cut->reason) {
    snprintf(err, errlen, "the reason is longer than %zu bytes; say it shorter",
             sizeof cut->reason - 1);
    return NIRC_EINVAL;
  }
  nirc_strlcpy(cut->reason, req->reason ? req->reason : "", sizeof cut->reason);
  nirc_strlcpy(cut->operator_name, operator_name, sizeof cut->operator_name);
  cut->created_ms = now_ms;
  /* --for is relative; a duration past the end of time saturates (and is
   * then refused by the validator) instead of overflowing. */
  if (req->expires_in_ms > 0)
    cut->expires_ms = now_ms > 0 && req->expires_in_ms > INT64_MAX - now_ms
                          ? INT64_MAX
                          : now_ms + req->expires_in_ms;
  else
    cut->expires_ms = req->expires_ms;
  cut->force = req->force;
  cut->share_permille = req->share_permille;
  cut->state = CUTOVER_ACTIVE;
  return 0;
}

void engine_op_cutover(engine_t *e, conn_t *c, uint64_t rid, const Nirc__CutoverRequest *req) {
  char target_[256];
  engine_join(req->sources, req->n_sources, target_, sizeof target_);
  if (engine_settling(e)) {
    engine_refuse(e, c, rid, "cutover", target_, NIRC__ERROR_CODE__ERROR_CODE_UNAVAILABLE,
                  "this controller took over %llu ms ago and is still hearing from the sites; "
                  "nothing was changed: try again in a few seconds",
                  (unsigned long long)(engine_mono(e) - e->settle_from_mono));
    return;
  }
  char err[512];
  cutover_t cut;
  if (engine_cutover_from_request(req, link_peer(c->link)->subject, engine_now(e), &cut, err,
                                  sizeof err) != 0) {
    engine_refuse(e, c, rid, "cutover", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED, "%s", err);
    return;
  }
  cut.id = e->next_rule_id;
  rules_env_t env = {engine_site_exists, e};
  if (rules_validate_cutover(&cut, &env, cut.created_ms, err, sizeof err) != 0) {
    engine_refuse(e, c, rid, "cutover", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED, "%s", err);
    return;
  }
  /* Equal precedence on the same source would be ambiguous: refuse. */
  for (size_t k = 0; k < e->n_cut; k++) {
    if (e->cut[k].state != CUTOVER_ACTIVE) continue;
    for (unsigned s = 0; s < cut.sources.n; s++) {
      if (engine_list_has(&e->cut[k].sources, cut.sources.v[s])) {
        engine_refuse(e, c, rid, "cutover", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                      "%s is already cut over (cutover %llu: %s); restore it first",
                      cut.sources.v[s], (unsigned long long)e->cut[k].id, e->cut[k].reason);
        return;
      }
      if (engine_list_has(&e->cut[k].sources, cut.hubs.v[0]) && cut.hubs.n == 1) {
        engine_refuse(e, c, rid, "cutover", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                      "hub %s is itself cut over (cutover %llu)", cut.hubs.v[0],
                      (unsigned long long)e->cut[k].id);
        return;
      }
    }
  }
  bool any_online = false;
  char offline[256] = "";
  for (unsigned h = 0; h < cut.hubs.n; h++) {
    site_t *hs = sites_find(&e->srv->sites, cut.hubs.v[h]);
    if (hs && hs->state == SITE_ONLINE)
      any_online = true;
    else
      snprintf(offline + strlen(offline), sizeof offline - strlen(offline), "%s%s (%s)",
               offline[0] ? ", " : "", cut.hubs.v[h], hs ? site_state_name(hs->state) : "?");
  }
  if (!any_online) {
    engine_refuse(e, c, rid, "cutover", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "no hub is online: %s; choose another hub with --to", offline);
    return;
  }
  for (unsigned s = 0; s < cut.sources.n; s++) {
    long i = engine_index(e, cut.sources.v[s]);
    if (i >= 0) e->dirs[i].excluded_rule = 0; /* an operator names it: try again */
  }

  /* Trial: what would happen, and would the capacity check refuse it? */
  plan_t trial;
  cutover_t check = cut;
  /* Without --force the trial shows whether the check refuses; with it,
   * a dry run shows the move the forced cutover would make. */
  check.force = req->dry_run && req->force;
  if (engine_trial_plan(e, &check, &trial) != 0) {
    engine_reply_error(c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
    return;
  }
  size_t n = engine_nsites(e);
  bool *focus = calloc(n, sizeof *focus);
  for (unsigned s = 0; focus && s < cut.sources.n; s++) {
    long i = engine_index(e, cut.sources.v[s]);
    if (i >= 0) focus[i] = true;
  }
  for (unsigned h = 0; focus && h < cut.hubs.n; h++) {
    long i = engine_index(e, cut.hubs.v[h]);
    if (i >= 0) focus[i] = true;
  }
  arena_t a = {0};
  Nirc__PlanReply *pr = engine_plan_reply(e, &a, &trial, focus);
  planner_free(&trial);
  free(focus);
  if (!pr) {
    arena_free(&a);
    engine_reply_error(c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
    return;
  }
  Nirc__MoveReply mv = NIRC__MOVE_REPLY__INIT;
  mv.plan = pr;
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.request_id = rid;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_MOVE;
  rep.move = &mv;
  Nirc__Error er = NIRC__ERROR__INIT;
  if (pr->refused && !req->force) {
    er.code = NIRC__ERROR_CODE__ERROR_CODE_REFUSED;
    char msg[400];
    snprintf(msg, sizeof msg, "%s (use --force to move anyway)", pr->refusal);
    er.message = msg;
    rep.ok = 0;
    rep.error = &er;
    engine_audit(e, engine_operator(c), "cutover-refused", cut.sources.v[0],
                 json_pack("{s:o, s:o, s:s, s:s}", "sources", engine_slugs_json(&cut.sources),
                           "hubs", engine_slugs_json(&cut.hubs), "reason", cut.reason, "refusal",
                           pr->refusal),
                 NULL, 0);
    engine_send_reply(c, &rep);
    arena_free(&a);
    return;
  }
  if (req->dry_run) {
    mv.dry_run = 1;
    rep.ok = 1;
    engine_send_reply(c, &rep);
    arena_free(&a);
    return;
  }
  arena_free(&a);

  /* Real move. */
  e->next_rule_id++;
  if (engine_add_cutover(e, &cut) != 0) {
    engine_reply_error(c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
    return;
  }
  char id[24], srcs[1024], hubs[1024], created[40], expires[40] = "";
  snprintf(id, sizeof id, "%llu", (unsigned long long)cut.id);
  engine_pg_array(&cut.sources, srcs, sizeof srcs);
  engine_pg_array(&cut.hubs, hubs, sizeof hubs);
  engine_iso(cut.created_ms, created, sizeof created);
  if (cut.expires_ms) engine_iso(cut.expires_ms, expires, sizeof expires);
  const char *p[] = {id,
                     srcs,
                     hubs,
                     cut.reason,
                     cut.operator_name,
                     cut.force ? "true" : "false",
                     created,
                     expires[0] ? expires : NULL};
  engine_db(e,
            "INSERT INTO cutovers (id, sources, hubs, reason, operator, force, created_at, "
            "expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
            8, p);
  size_t *changed = calloc(n, sizeof *changed);
  unsigned n_changed = 0;
  if (!changed) return;
  engine_evaluate(e, changed, &n_changed);
  waiter_t *w = engine_new_waiter(e, c, rid, changed, n_changed);
  if (w) w->cutover_id = cut.id;
  json_t *dirs = json_array();
  for (unsigned k = 0; k < n_changed; k++)
    json_array_append_new(dirs, engine_route_json(e, changed[k]));
  char target[1024];
  nirc_strlcpy(target, srcs + 1, sizeof target); /* "{a,b}" -> "a,b" */
  target[strcspn(target, "}")] = '\0';
  engine_audit(e, engine_operator(c), "cutover", target,
               json_pack("{s:I, s:o, s:o, s:s, s:b, s:I, s:I, s:o}", "cutover_id",
                         (json_int_t)cut.id, "sources", engine_slugs_json(&cut.sources), "hubs",
                         engine_slugs_json(&cut.hubs), "reason", cut.reason, "force", cut.force,
                         "expires_ms", (json_int_t)cut.expires_ms, "share_permille",
                         (json_int_t)(cut.share_permille ? cut.share_permille : 1000), "directives",
                         dirs),
               w ? c : NULL, rid);
  if (!w)
    engine_reply_error(c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
  else if (n_changed == 0)
    engine_progress(e, c, rid, "nothing to change: the sources already route as planned");
  else
    engine_progress(e, c, rid, "cutover %llu: %u directive(s) sent", (unsigned long long)cut.id,
                    n_changed);
  free(changed);
  engine_waiters_check(e);
}

static void engine_end_cutover(engine_t *e, cutover_t *cut, cutover_state_t st, const char *by) {
  cut->state = st;
  char id[24], now[40];
  snprintf(id, sizeof id, "%llu", (unsigned long long)cut->id);
  engine_iso(engine_now(e), now, sizeof now);
  const char *p[] = {id, rules_cutover_state_name(st), now, by};
  engine_db(e, "UPDATE cutovers SET state = $2, ended_at = $3, ended_by = $4 WHERE id = $1", 4, p);
}

void engine_op_restore(engine_t *e, conn_t *c, uint64_t rid, const Nirc__RestoreRequest *req) {
  char target_[256];
  engine_join(req->sources, req->n_sources, target_, sizeof target_);
  if (engine_settling(e)) {
    engine_refuse(e, c, rid, "restore", target_, NIRC__ERROR_CODE__ERROR_CODE_UNAVAILABLE,
                  "this controller took over %llu ms ago and is still hearing from the sites; "
                  "nothing was changed: try again in a few seconds",
                  (unsigned long long)(engine_mono(e) - e->settle_from_mono));
    return;
  }
  size_t n = engine_nsites(e);
  const char *who = engine_operator(c);
  json_t *ended = json_array();
  if (req->cutover_id) {
    cutover_t *cut = NULL;
    for (size_t k = 0; k < e->n_cut; k++)
      if (e->cut[k].id == req->cutover_id && e->cut[k].state == CUTOVER_ACTIVE) cut = &e->cut[k];
    if (!cut) {
      json_decref(ended);
      engine_refuse(e, c, rid, "restore", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                    "no active cutover %llu (see nircctl status or history)",
                    (unsigned long long)req->cutover_id);
      return;
    }
    engine_end_cutover(e, cut, CUTOVER_RESTORED, who);
    json_array_append_new(ended, json_integer((json_int_t)cut->id));
  } else {
    if (req->n_sources == 0) {
      json_decref(ended);
      engine_refuse(e, c, rid, "restore", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                    "name the sources to restore or --cutover ID");
      return;
    }
    for (size_t s = 0; s < req->n_sources; s++) {
      bool found = false;
      for (size_t k = 0; k < e->n_cut && !found; k++)
        found = e->cut[k].state == CUTOVER_ACTIVE &&
                engine_list_has(&e->cut[k].sources, req->sources[s]);
      if (!found) {
        long i = engine_index(e, req->sources[s]);
        json_decref(ended);
        if (i < 0)
          engine_refuse(e, c, rid, "restore", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                        "unknown site '%.40s'", req->sources[s]);
        else if (e->dirs[i].kind == RULE_SCHEDULE || e->dirs[i].kind == RULE_OVERFLOW)
          engine_refuse(e, c, rid, "restore", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                        "%s is moved by %s (%s), not by a cutover; disable that rule",
                        req->sources[s], rules_kind_name(e->dirs[i].kind),
                        e->dirs[i].target.reason);
        else
          engine_refuse(e, c, rid, "restore", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                        "%s is not cut over", req->sources[s]);
        return;
      }
    }
    /* Remove each source from its cutover; a cutover left empty ends. */
    for (size_t s = 0; s < req->n_sources; s++) {
      for (size_t k = 0; k < e->n_cut; k++) {
        cutover_t *cut = &e->cut[k];
        if (cut->state != CUTOVER_ACTIVE || !engine_list_has(&cut->sources, req->sources[s]))
          continue;
        slug_list_t keep = {0};
        for (unsigned j = 0; j < cut->sources.n; j++) {
          if (strcmp(cut->sources.v[j], req->sources[s]) == 0) continue;
          nirc_strlcpy(keep.v[keep.n++], cut->sources.v[j], sizeof keep.v[0]);
        }
        cut->sources = keep;
        char id[24], srcs[1024];
        snprintf(id, sizeof id, "%llu", (unsigned long long)cut->id);
        engine_pg_array(&cut->sources, srcs, sizeof srcs);
        if (keep.n == 0) {
          engine_end_cutover(e, cut, CUTOVER_RESTORED, who);
          json_array_append_new(ended, json_integer((json_int_t)cut->id));
        } else {
          const char *p[] = {id, srcs};
          engine_db(e, "UPDATE cutovers SET sources = $2 WHERE id = $1", 2, p);
        }
      }
    }
  }
  for (size_t s = 0; s < req->n_sources; s++) {
    long i = engine_index(e, req->sources[s]);
    if (i >= 0) e->dirs[i].excluded_rule = 0;
  }
  size_t *changed = calloc(n, sizeof *changed);
  unsigned n_changed = 0;
  if (!changed) {
    json_decref(ended);
    return;
  }
  engine_evaluate(e, changed, &n_changed);
  waiter_t *w = engine_new_waiter(e, c, rid, changed, n_changed);
  json_t *dirs = json_array();
  for (unsigned k = 0; k < n_changed; k++)
    json_array_append_new(dirs, engine_route_json(e, changed[k]));
  json_t *srcs = json_array();
  for (size_t s = 0; s < req->n_sources; s++)
    json_array_append_new(srcs, json_string(req->sources[s]));
  engine_audit(e, who, "restore", req->n_sources ? req->sources[0] : "cutover",
               json_pack("{s:o, s:o, s:s, s:o}", "sources", srcs, "ended_cutovers", ended, "reason",
                         req->reason ? req->reason : "", "directives", dirs),
               w ? c : NULL, rid);
  if (!w)
    engine_reply_error(c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
  else
    engine_progress(e, c, rid, "restore: %u directive(s) sent", n_changed);
  free(changed);
  engine_waiters_check(e);
}

void engine_op_plan(engine_t *e, conn_t *c, uint64_t rid, const Nirc__PlanRequest *req) {
  char target_[256];
  engine_join(req->sources, req->n_sources, target_, sizeof target_);
  char err[512];
  size_t n = engine_nsites(e);
  plan_t trial;
  bool *focus = calloc(n ? n : 1, sizeof *focus);
  if (!focus) return;
  int rc;
  if (req->schedule_id || (req->schedule_name && *req->schedule_name)) {
    schedule_t *s = NULL;
    for (size_t k = 0; k < e->n_sch; k++)
      if (e->sch[k].id == req->schedule_id ||
          (req->schedule_name && strcmp(e->sch[k].name, req->schedule_name) == 0))
        s = &e->sch[k];
    if (!s) {
      free(focus);
      engine_refuse(e, c, rid, "plan", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                    "no schedule '%s' (see nircctl schedule list)",
                    req->schedule_name ? req->schedule_name : "");
      return;
    }
    /* The schedule at its next start, on today's smoothed load. */
    int64_t start = 0, end = 0;
    int64_t at = rules_schedule_window(s, engine_now(e), &start, &end)
                     ? engine_now(e)
                     : rules_schedule_next_start(s, engine_now(e)) + 60000;
    schedule_t one = *s;
    one.enabled = true;
    plan_input_t in;
    engine_build_input(e, &in, NULL, 0);
    for (size_t i = 0; i < n; i++) {
      plan_site_t *p = &e->psites[i];
      p->forecast_cps = engine_forecast(e, p->slug, at);
      /* A window that has not started yet is judged on its own hour: the
       * forecast's demand, roster and handle time then, not this
       * afternoon's load and day shift. Without a forecast only the live
       * load is known. */
      unsigned staff;
      double aht;
      if (at != engine_now(e) && engine_forecast_staff(e, p->slug, at, &staff, &aht)) {
        p->staffed = staff;
        p->demand_cps = p->forecast_cps;
        p->aht_s = aht;
      }
    }
    in.cutovers = NULL;
    in.n_cutovers = 0;
    in.schedules = &one;
    in.n_schedules = 1;
    in.overflows = NULL;
    in.n_overflows = 0;
    in.now_ms = at;
    rc = planner_run(&in, &trial);
    for (unsigned k = 0; k < s->sources.n; k++) {
      long i = engine_index(e, s->sources.v[k]);
      if (i >= 0) focus[i] = true;
    }
  } else {
    cutover_t cut;
    memset(&cut, 0, sizeof cut);
    if (engine_copy_slugs(&cut.sources, req->sources, req->n_sources, "sources", err, sizeof err) ||
        engine_copy_slugs(&cut.hubs, req->hubs, req->n_hubs, "hubs", err, sizeof err)) {
      free(focus);
      engine_refuse(e, c, rid, "plan", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED, "%s", err);
      return;
    }
    snprintf(cut.reason, sizeof cut.reason, "plan");
    cut.id = e->next_rule_id;
    cut.state = CUTOVER_ACTIVE;
    rules_env_t env = {engine_site_exists, e};
    if (rules_validate_cutover(&cut, &env, engine_now(e), err, sizeof err) != 0) {
      free(focus);
      engine_refuse(e, c, rid, "plan", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED, "%s", err);
      return;
    }
    rc = engine_trial_plan(e, &cut, &trial);
    for (unsigned k = 0; k < cut.sources.n; k++) {
      long i = engine_index(e, cut.sources.v[k]);
      if (i >= 0) focus[i] = true;
    }
  }
  if (rc != 0) {
    free(focus);
    engine_reply_error(c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
    return;
  }
  arena_t a = {0};
  Nirc__PlanReply *pr = engine_plan_reply(e, &a, &trial, focus);
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.request_id = rid;
  rep.ok = pr != NULL;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_PLAN;
  rep.plan = pr;
  if (pr)
    engine_send_reply(c, &rep);
  else
    engine_reply_error(c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
  arena_free(&a);
  planner_free(&trial);
  free(focus);
}

static void engine_days_text(uint8_t days, char *buf, size_t len) {
  static const char *names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
  if (days == 0x7f) {
    snprintf(buf, len, "daily");
    return;
  }
  size_t used = 0;
  buf[0] = '\0';
  for (int d = 0; d < 7; d++)
    if (days & (1u << d))
      used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%s", used ? "," : "",
                               names[d]);
}

static Nirc__ScheduleSpec *engine_schedule_spec(engine_t *e, arena_t *a, const schedule_t *s) {
  Nirc__ScheduleSpec *sp = arena_alloc(a, sizeof *sp);
  if (!sp) return NULL;
  nirc__schedule_spec__init(sp);
  sp->id = s->id;
  sp->name = arena_str(a, s->name);
  sp->sources = arena_alloc(a, (s->sources.n + 1) * sizeof(char *));
  sp->hubs = arena_alloc(a, (s->hubs.n + 1) * sizeof(char *));
  sp->exceptions = arena_alloc(a, (s->n_exceptions + 1) * sizeof(char *));
  if (!sp->sources || !sp->hubs || !sp->exceptions) return NULL;
  for (unsigned k = 0; k < s->sources.n; k++)
    sp->sources[sp->n_sources++] = arena_str(a, s->sources.v[k]);
  for (unsigned k = 0; k < s->hubs.n; k++)
    sp->hubs[sp->n_hubs++] = arena_str(a, s->hubs.v[k]);
  for (unsigned k = 0; k < s->n_exceptions; k++) {
    char d[16];
    int32_t x = s->exceptions[k];
    snprintf(d, sizeof d, "%04d-%02d-%02d", x / 10000, (x / 100) % 100, x % 100);
    sp->exceptions[sp->n_exceptions++] = arena_str(a, d);
  }
  char t[16], days[64];
  snprintf(t, sizeof t, "%02d:%02d", s->start_min / 60, s->start_min % 60);
  sp->start = arena_str(a, t);
  snprintf(t, sizeof t, "%02d:%02d", s->end_min / 60, s->end_min % 60);
  sp->end = arena_str(a, t);
  engine_days_text(s->days, days, sizeof days);
  sp->days = arena_str(a, days);
  sp->tz = arena_str(a, s->tz);
  sp->wave_size = s->wave_size;
  sp->enabled = s->enabled;
  int64_t st, en;
  sp->in_force = rules_schedule_window(s, engine_now(e), &st, &en);
  sp->next_start_ms = rules_schedule_next_start(s, engine_now(e));
  return sp;
}

/* Sends a reply built in arena `a` (then frees it); `built` says whether
 * every allocation succeeded. Out of memory is answered, never silent. */
static void engine_send_built_reply(conn_t *c, uint64_t rid, arena_t *a, bool built,
                                    Nirc__OperatorReply *rep) {
  if (!built || a->failed) {
    arena_free(a);
    engine_reply_error(c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
    return;
  }
  rep->request_id = rid;
  rep->ok = 1;
  engine_send_reply(c, rep);
  arena_free(a);
}

static void engine_reply_schedules(engine_t *e, conn_t *c, uint64_t rid) {
  arena_t a = {0};
  Nirc__ScheduleReply *sr = arena_alloc(&a, sizeof *sr);
  if (sr) {
    nirc__schedule_reply__init(sr);
    sr->schedules = arena_alloc(&a, (e->n_sch + 1) * sizeof *sr->schedules);
  }
  for (size_t k = 0; sr && sr->schedules && k < e->n_sch; k++) {
    Nirc__ScheduleSpec *sp = engine_schedule_spec(e, &a, &e->sch[k]);
    if (sp) sr->schedules[sr->n_schedules++] = sp;
  }
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_SCHEDULE;
  rep.schedule = sr;
  engine_send_built_reply(c, rid, &a, sr && sr->schedules, &rep);
}

static schedule_t *engine_find_schedule(engine_t *e, const char *name, uint64_t id) {
  for (size_t k = 0; k < e->n_sch; k++)
    if ((id && e->sch[k].id == id) || (name && *name && strcmp(e->sch[k].name, name) == 0))
      return &e->sch[k];
  return NULL;
}

int engine_schedule_from_spec(const Nirc__ScheduleSpec *sp, schedule_t *s, char *err,
                              size_t errlen) {
  memset(s, 0, sizeof *s);
  if (!sp) {
    snprintf(err, errlen, "no schedule given");
    return NIRC_EINVAL;
  }
  nirc_strlcpy(s->name, sp->name ? sp->name : "", sizeof s->name);
  if (engine_copy_slugs(&s->sources, sp->sources, sp->n_sources, "sources", err, errlen) ||
      engine_copy_slugs(&s->hubs, sp->hubs, sp->n_hubs, "hubs", err, errlen))
    return NIRC_EINVAL;
  if (!sp->start || rules_parse_hhmm(sp->start, &s->start_min) != 0) {
    snprintf(err, errlen, "start time '%s' is not HH:MM (00:00-23:59)", sp->start ? sp->start : "");
    return NIRC_EINVAL;
  }
  if (!sp->end || rules_parse_hhmm(sp->end, &s->end_min) != 0) {
    snprintf(err, errlen, "end time '%s' is not HH:MM (00:00-23:59)", sp->end ? sp->end : "");
    return NIRC_EINVAL;
  }
  if (rules_parse_days(sp->days && *sp->days ? sp->days : "daily", &s->days, err, errlen) != 0)
    return NIRC_EINVAL;
  nirc_strlcpy(s->tz, sp->tz && *sp->tz ? sp->tz : "Asia/Shanghai", sizeof s->tz);
  for (size_t k = 0; k < sp->n_exceptions; k++) {
    if (s->n_exceptions == RULES_MAX_EXCEPTIONS ||
        rules_parse_date(sp->exceptions[k], &s->exceptions[s->n_exceptions]) != 0) {
      snprintf(err, errlen, "exception date '%s' is not YYYY-MM-DD", sp->exceptions[k]);
      return NIRC_EINVAL;
    }
    s->n_exceptions++;
  }
  s->wave_size = sp->wave_size ? sp->wave_size : 5;
  s->enabled = true;
  return 0;
}

static void engine_persist_schedule(engine_t *e, const schedule_t *s, const char *who) {
  char id[24], srcs[1024], hubs[1024], st[8], en[8], days[8], ws[8], ex[1024] = "{";
  snprintf(id, sizeof id, "%llu", (unsigned long long)s->id);
  engine_pg_array(&s->sources, srcs, sizeof srcs);
  engine_pg_array(&s->hubs, hubs, sizeof hubs);
  snprintf(st, sizeof st, "%d", s->start_min);
  snprintf(en, sizeof en, "%d", s->end_min);
  snprintf(days, sizeof days, "%u", s->days);
  snprintf(ws, sizeof ws, "%u", s->wave_size);
  for (unsigned k = 0; k < s->n_exceptions; k++) {
    int32_t x = s->exceptions[k];
    size_t u = strlen(ex);
    snprintf(ex + u, sizeof ex - u, "%s%04d-%02d-%02d", k ? "," : "", x / 10000, (x / 100) % 100,
             x % 100);
  }
  strncat(ex, "}", sizeof ex - strlen(ex) - 1);
  const char *p[] = {
      id, s->name, srcs, hubs, st, en, days, s->tz, ex, ws, s->enabled ? "true" : "false", who};
  engine_db(e,
            "INSERT INTO schedules (id, name, sources, hubs, start_min, end_min, days, tz, "
            "exceptions, wave_size, enabled, created_by) VALUES "
            "($1,$2,$3,$4,$5,$6,$7,$8,$9::date[],$10,$11,$12)",
            12, p);
}

void engine_op_schedule(engine_t *e, conn_t *c, uint64_t rid, const Nirc__ScheduleRequest *req) {
  char target_[256];
  snprintf(target_, sizeof target_, "%s", req->name ? req->name : "");
  char err[512], why[256];
  const char *who = engine_operator(c);
  rules_env_t env = {engine_site_exists, e};
  switch (req->op) {
  case NIRC__RULE_OP__RULE_OP_LIST: engine_reply_schedules(e, c, rid); return;
  case NIRC__RULE_OP__RULE_OP_ADD: {
    schedule_t s;
    if (engine_schedule_from_spec(req->spec, &s, err, sizeof err) != 0 ||
        rules_validate_schedule(&s, &env, err, sizeof err) != 0) {
      engine_refuse(e, c, rid, "schedule", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED, "%s",
                    err);
      return;
    }
    if (engine_find_schedule(e, s.name, 0)) {
      engine_refuse(e, c, rid, "schedule", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                    "a schedule named '%s' exists; remove it first or pick another name", s.name);
      return;
    }
    for (size_t k = 0; k < e->n_sch; k++) {
      if (rules_schedules_conflict(&s, &e->sch[k], why, sizeof why)) {
        engine_refuse(e, c, rid, "schedule", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                      "conflicts with schedule '%s': %s", e->sch[k].name, why);
        return;
      }
    }
    s.id = e->next_rule_id++;
    if (engine_add_schedule(e, &s) != 0) {
      engine_reply_error(c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
      return;
    }
    engine_persist_schedule(e, &s, who);
    json_t *ex = json_array();
    for (unsigned k = 0; k < s.n_exceptions; k++) {
      char d[16];
      int32_t x = s.exceptions[k];
      snprintf(d, sizeof d, "%04d-%02d-%02d", x / 10000, (x / 100) % 100, x % 100);
      json_array_append_new(ex, json_string(d));
    }
    engine_audit(e, who, "schedule-add", s.name,
                 json_pack("{s:I, s:o, s:o, s:i, s:i, s:i, s:s, s:i, s:o}", "id", (json_int_t)s.id,
                           "sources", engine_slugs_json(&s.sources), "hubs",
                           engine_slugs_json(&s.hubs), "start_min", s.start_min, "end_min",
                           s.end_min, "days", s.days, "tz", s.tz, "wave_size", (int)s.wave_size,
                           "exceptions", ex),
                 NULL, 0);
    engine_reply_schedules(e, c, rid);
    return;
  }
  case NIRC__RULE_OP__RULE_OP_REMOVE:
  case NIRC__RULE_OP__RULE_OP_ENABLE:
  case NIRC__RULE_OP__RULE_OP_DISABLE: {
    schedule_t *s = engine_find_schedule(e, req->name, req->id);
    if (!s) {
      engine_refuse(e, c, rid, "schedule", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                    "no schedule '%s' (see nircctl schedule list)", req->name ? req->name : "");
      return;
    }
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)s->id);
    const char *action;
    if (req->op == NIRC__RULE_OP__RULE_OP_REMOVE) {
      action = "schedule-rm";
      const char *p[] = {id};
      engine_db(e, "UPDATE schedules SET removed_at = now() WHERE id = $1", 1, p);
      engine_audit(e, who, action, s->name, json_pack("{s:I}", "id", (json_int_t)s->id), NULL, 0);
      *s = e->sch[--e->n_sch]; /* order does not matter */
    } else {
      bool on = req->op == NIRC__RULE_OP__RULE_OP_ENABLE;
      if (on) {
        schedule_t trial = *s;
        trial.enabled = true;
        for (size_t k = 0; k < e->n_sch; k++) {
          if (&e->sch[k] == s) continue;
          if (rules_schedules_conflict(&trial, &e->sch[k], why, sizeof why)) {
            engine_refuse(e, c, rid, "schedule", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                          "cannot enable: conflicts with schedule '%s': %s", e->sch[k].name, why);
            return;
          }
        }
      }
      s->enabled = on;
      action = on ? "schedule-enable" : "schedule-disable";
      const char *p[] = {id, on ? "true" : "false"};
      engine_db(e, "UPDATE schedules SET enabled = $2 WHERE id = $1", 2, p);
      engine_audit(e, who, action, s->name, json_pack("{s:I}", "id", (json_int_t)s->id), NULL, 0);
    }
    engine_reply_schedules(e, c, rid);
    return;
  }
  default:
    engine_refuse(e, c, rid, "schedule", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "unknown schedule operation");
  }
}

static Nirc__OverflowSpec *engine_overflow_spec(engine_t *e, arena_t *a, size_t k) {
  const overflow_rule_t *o = &e->ovf[k];
  Nirc__OverflowSpec *sp = arena_alloc(a, sizeof *sp);
  if (!sp) return NULL;
  nirc__overflow_spec__init(sp);
  sp->id = o->id;
  sp->name = arena_str(a, o->name);
  sp->source = arena_str(a, o->source);
  sp->hubs = arena_alloc(a, (o->hubs.n + 1) * sizeof(char *));
  if (!sp->hubs) return NULL;
  for (unsigned h = 0; h < o->hubs.n; h++)
    sp->hubs[sp->n_hubs++] = arena_str(a, o->hubs.v[h]);
  sp->trigger_wait_s = o->trigger_wait_s;
  sp->release_wait_s = o->release_wait_s;
  sp->trigger_queue = o->trigger_queue;
  sp->release_queue = o->release_queue;
  sp->trigger_sl = o->trigger_sl;
  sp->release_sl = o->release_sl;
  sp->share_cap_permille = o->share_cap_permille;
  sp->min_hold_s = o->min_hold_s;
  sp->margin_s = o->margin_s;
  sp->enabled = o->enabled;
  sp->engaged = e->ovf_state[k].engaged;
  return sp;
}

static void engine_reply_overflows(engine_t *e, conn_t *c, uint64_t rid) {
  arena_t a = {0};
  Nirc__OverflowReply *orp = arena_alloc(&a, sizeof *orp);
  if (orp) {
    nirc__overflow_reply__init(orp);
    orp->rules = arena_alloc(&a, (e->n_ovf + 1) * sizeof *orp->rules);
  }
  for (size_t k = 0; orp && orp->rules && k < e->n_ovf; k++) {
    Nirc__OverflowSpec *sp = engine_overflow_spec(e, &a, k);
    if (sp) orp->rules[orp->n_rules++] = sp;
  }
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_OVERFLOW;
  rep.overflow = orp;
  engine_send_built_reply(c, rid, &a, orp && orp->rules, &rep);
}

int engine_overflow_from_spec(const Nirc__OverflowSpec *sp, overflow_rule_t *o, char *err,
                              size_t errlen) {
  memset(o, 0, sizeof *o);
  if (!sp) {
    snprintf(err, errlen, "no rule given");
    return NIRC_EINVAL;
  }
  nirc_strlcpy(o->name, sp->name ? sp->name : "", sizeof o->name);
  nirc_strlcpy(o->source, sp->source ? sp->source : "", sizeof o->source);
  if (engine_copy_slugs(&o->hubs, sp->hubs, sp->n_hubs, "hubs", err, errlen)) return NIRC_EINVAL;
  o->trigger_wait_s = sp->trigger_wait_s;
  o->release_wait_s = sp->release_wait_s;
  o->trigger_queue = sp->trigger_queue;
  o->release_queue = sp->release_queue;
  o->trigger_sl = sp->trigger_sl;
  o->release_sl = sp->release_sl;
  o->share_cap_permille = sp->share_cap_permille;
  o->min_hold_s = sp->min_hold_s;
  o->margin_s = sp->margin_s;
  o->enabled = true;
  if (!o->name[0]) snprintf(o->name, sizeof o->name, "%s-overflow", o->source);
  return 0;
}

void engine_op_overflow(engine_t *e, conn_t *c, uint64_t rid, const Nirc__OverflowRequest *req) {
  char target_[256];
  snprintf(target_, sizeof target_, "%s", req->name ? req->name : "");
  char err[512], why[256];
  const char *who = engine_operator(c);
  rules_env_t env = {engine_site_exists, e};
  if (req->op == NIRC__RULE_OP__RULE_OP_LIST) {
    engine_reply_overflows(e, c, rid);
    return;
  }
  if (req->op == NIRC__RULE_OP__RULE_OP_ADD) {
    overflow_rule_t o;
    if (engine_overflow_from_spec(req->spec, &o, err, sizeof err) != 0) {
      engine_refuse(e, c, rid, "overflow", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED, "%s",
                    err);
      return;
    }
    if (rules_validate_overflow(&o, &env, err, sizeof err) != 0) {
      engine_refuse(e, c, rid, "overflow", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED, "%s",
                    err);
      return;
    }
    for (size_t k = 0; k < e->n_ovf; k++) {
      if (strcmp(e->ovf[k].name, o.name) == 0 ||
          rules_overflows_conflict(&o, &e->ovf[k], why, sizeof why)) {
        engine_refuse(e, c, rid, "overflow", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                      "conflicts with overflow rule '%s': %s", e->ovf[k].name,
                      strcmp(e->ovf[k].name, o.name) == 0 ? "same name" : why);
        return;
      }
    }
    o.id = e->next_rule_id++;
    if (engine_add_overflow(e, &o) != 0) {
      engine_reply_error(c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
      return;
    }
    char v[10][24], hubs[1024];
    snprintf(v[0], 24, "%llu", (unsigned long long)o.id);
    snprintf(v[1], 24, "%u", o.trigger_wait_s);
    snprintf(v[2], 24, "%u", o.release_wait_s);
    snprintf(v[3], 24, "%u", o.trigger_queue);
    snprintf(v[4], 24, "%u", o.release_queue);
    snprintf(v[5], 24, "%.4f", o.trigger_sl);
    snprintf(v[6], 24, "%.4f", o.release_sl);
    snprintf(v[7], 24, "%u", o.share_cap_permille);
    snprintf(v[8], 24, "%u", o.min_hold_s);
    snprintf(v[9], 24, "%u", o.margin_s);
    engine_pg_array(&o.hubs, hubs, sizeof hubs);
    const char *p[] = {v[0], o.name, o.source, hubs, v[1], v[2], v[3],
                       v[4], v[5],   v[6],     v[7], v[8], v[9], who};
    engine_db(e,
              "INSERT INTO overflow_rules (id, name, source, hubs, trigger_wait_s, "
              "release_wait_s, trigger_queue, release_queue, trigger_sl, release_sl, "
              "share_cap_permille, min_hold_s, margin_s, created_by) VALUES "
              "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
              14, p);
    engine_audit(e, who, "overflow-add", o.name,
                 json_pack("{s:I, s:s, s:o, s:I}", "id", (json_int_t)o.id, "source", o.source,
                           "hubs", engine_slugs_json(&o.hubs), "share_cap_permille",
                           (json_int_t)o.share_cap_permille),
                 NULL, 0);
    engine_reply_overflows(e, c, rid);
    return;
  }
  if (req->op == NIRC__RULE_OP__RULE_OP_REMOVE) {
    for (size_t k = 0; k < e->n_ovf; k++) {
      if ((req->id && e->ovf[k].id == req->id) ||
          (req->name && *req->name && strcmp(e->ovf[k].name, req->name) == 0)) {
        char id[24];
        snprintf(id, sizeof id, "%llu", (unsigned long long)e->ovf[k].id);
        const char *p[] = {id};
        engine_db(e, "UPDATE overflow_rules SET removed_at = now() WHERE id = $1", 1, p);
        engine_audit(e, who, "overflow-rm", e->ovf[k].name,
                     json_pack("{s:I}", "id", (json_int_t)e->ovf[k].id), NULL, 0);
        e->ovf[k] = e->ovf[e->n_ovf - 1];
        e->ovf_state[k] = e->ovf_state[e->n_ovf - 1];
        e->n_ovf--;
        engine_reply_overflows(e, c, rid);
        return;
      }
    }
    engine_refuse(e, c, rid, "overflow", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "no overflow rule '%s' (see nircctl overflow list)", req->name ? req->name : "");
    return;
  }
  engine_refuse(e, c, rid, "overflow", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                "overflow rules support list, add and rm");
}

/* ---- tick ---- */

static void engine_expire(engine_t *e) {
  int64_t now = engine_now(e);
  for (size_t k = 0; k < e->n_cut; k++) {
    cutover_t *cut = &e->cut[k];
    if (cut->state != CUTOVER_ACTIVE || cut->expires_ms == 0 || cut->expires_ms > now) continue;
    log_info(LOG_MAIN, ENGINE_OBJ, "cutover %llu expired", (unsigned long long)cut->id);
    engine_end_cutover(e, cut, CUTOVER_EXPIRED, "expiry");
    engine_audit(e, "engine", "expire", cut->sources.v[0],
                 json_pack("{s:I, s:o}", "cutover_id", (json_int_t)cut->id, "sources",
                           engine_slugs_json(&cut->sources)),
                 NULL, 0);
  }
  /* Exclusions end with the rule that caused them. */
  for (size_t i = 0; i < engine_nsites(e); i++) {
    site_dir_t *d = &e->dirs[i];
    if (!d->excluded_rule || d->excluded_kind != RULE_CUTOVER) continue;
    bool active = false;
    for (size_t k = 0; k < e->n_cut; k++)
      active |= e->cut[k].id == d->excluded_rule && e->cut[k].state == CUTOVER_ACTIVE;
    if (!active) d->excluded_rule = 0;
  }
}

void engine_tick(engine_t *e) {
  engine_expire(e);
  engine_check_timeouts(e);
  /* Waves first: a wave verified now lets the evaluation below start the
   * next one in this same tick. */
  engine_check_waves(e);
  engine_evaluate(e, NULL, NULL);
  engine_waiters_check(e);
}
