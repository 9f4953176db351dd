/* engine: the routing core of the running controller — rules in memory,
 * the planner on every tick and event, directives, acks, resends and
 * rollbacks (see engine.h for the picture). Acknowledgements, Hellos and
 * timeouts are engine_ack.c; the tick itself (waves, expiry, when to
 * re-plan) is engine_tick.c; operator requests live in
 * engine_ops.c; the shared state in engine-int.h. No I/O here:
 * time, sends and records go through engine_io_t. */
#include "engine-int.h"

#include "err.h"
#include "log.h"
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double engine_latency_le_ms[ENGINE_LATENCY_BUCKETS - 1] = {1,   2,   5,   10,   20,  50,
                                                                 100, 200, 500, 1000, 2000};

const engine_stats_t *engine_stats(const engine_t *e) {
  return &e->stats;
}

uint64_t engine_mono(const engine_t *e) {
  return e->io.mono_ms(e->io.ctx);
}
int64_t engine_now(const engine_t *e) {
  return e->io.now_ms(e->io.ctx);
}
site_t *engine_site(engine_t *e, size_t i) {
  return &e->sites->v[i];
}
size_t engine_nsites(const engine_t *e) {
  return e->n_sites;
}

/* Removed sites have no index for rules, plans or operators: to them the
 * site does not exist (its own index stays, for its link's last events). */
long engine_index(engine_t *e, const char *slug) {
  site_t *s = sites_find_live(e->sites, slug);
  long i = s ? (long)(s - e->sites->v) : -1;
  return i >= 0 && (size_t)i < e->n_sites ? i : -1;
}

bool engine_site_exists(void *arg, const char *slug, bool *is_hub) {
  engine_t *e = arg;
  long i = engine_index(e, slug);
  site_t *s = i >= 0 ? engine_site(e, (size_t)i) : NULL;
  if (s && is_hub) *is_hub = s->is_hub;
  return s != NULL;
}

bool engine_site_at(void *arg, size_t i, const char **slug, bool *is_hub) {
  engine_t *e = arg;
  if (i >= engine_nsites(e)) return false;
  *slug = e->sites->v[i].slug;
  /* A removed site is offered as nothing a rule can name as a hub. */
  *is_hub = e->sites->v[i].is_hub && e->sites->v[i].life == SITE_LIVE;
  return true;
}

const site_dir_t *engine_site_dir(const engine_t *e, size_t i) {
  return i < engine_nsites(e) ? &e->dirs[i] : NULL;
}

engine_route_seen_t engine_route_seen(const engine_t *e, size_t i) {
  const site_dir_t *d = e ? engine_site_dir(e, i) : NULL;
  /* Unheard first: a route_unknown kept from before is not news either. */
  if (!d || !d->known) return ENGINE_ROUTE_UNHEARD;
  return d->route_unknown ? ENGINE_ROUTE_UNKNOWN : ENGINE_ROUTE_KNOWN;
}

const char *engine_active_reason(const engine_t *e, size_t i) {
  if (i >= engine_nsites(e)) return "";
  const site_dir_t *d = &e->dirs[i];
  /* Home because a move failed: say which rule, why and what ends it. */
  if (d->excluded_rule && d->excluded_why[0] && strncmp(d->target.reason, "default", 7) == 0)
    return d->excluded_why;
  return d->target.reason[0] ? d->target.reason : "default";
}

/* The text status shows for an excluded site. */
void engine_exclusion_text(engine_t *e, size_t i, const char *why) {
  site_dir_t *d = &e->dirs[i];
  char cut[91]; /* whole characters: status shows it as JSON too */
  nirc_strlcpy_utf8(cut, why, sizeof cut);
  snprintf(d->excluded_why, sizeof d->excluded_why,
           "default (excluded after a failed move in %s %llu: %s; nircctl readmit %s)",
           rules_kind_name(d->excluded_kind), (unsigned long long)d->excluded_rule, cut,
           engine_site(e, i)->slug);
}

/* ---- creation ---- */

int engine_new(const engine_io_t *io, sites_t *sites, const engine_opts_t *opts, engine_t **out) {
  engine_t *e = calloc(1, sizeof *e);
  if (!e) return NIRC_ENOMEM;
  e->io = *io;
  e->sites = sites;
  e->opts = *opts;
  alarm_table_init(&e->alarms, opts->alarm_clear_ms ? opts->alarm_clear_ms : 30000,
                   engine_alarm_event, e);
  if (engine_sites_grown(e) != 0) {
    engine_free(e);
    return NIRC_ENOMEM;
  }
  /* Rule ids are unique across controller runs: the epoch is in them (0
   * until engine_load_rules). */
  e->next_rule_id = 1;
  *out = e;
  return 0;
}

static void engine_free_waves(engine_t *e) {
  while (e->waves) {
    wave_t *n = e->waves->next;
    free(e->waves->sources);
    free(e->waves->base);
    free(e->waves);
    e->waves = n;
  }
}

void engine_free_waiter(engine_t *e, waiter_t *w) {
  engine_group_release(e, w->group);
  engine_forced_free(&w->forced);
  free(w->sites);
  free(w);
}

void engine_free(engine_t *e) {
  if (!e) return;
  engine_free_waves(e);
  while (e->waiters) {
    waiter_t *n = e->waiters->next;
    engine_free_waiter(e, e->waiters);
    e->waiters = n;
  }
  while (e->deferred) {
    deferred_t *n = e->deferred->next;
    free(e->deferred->change);
    free(e->deferred);
    e->deferred = n;
  }
  /* The owner frees the engine once every store callback has run (nircd:
   * after the database client closed), so no group is waited for now. */
  while (e->groups) {
    group_t *n = e->groups->next;
    free(e->groups);
    e->groups = n;
  }
  if (e->have_plan) planner_free(&e->plan);
  free(e->dirs);
  free(e->psites);
  free(e->alarm);
  free(e->gate);
  free(e->hub_idx);
  free(e->holds);
  free(e->changes);
  free(e->down_since);
  free(e->next_scratch);
  free(e->down_said_s);
  alarm_table_free(&e->alarms);
  free(e->cut);
  free(e->sch);
  free(e->ovf);
  free(e->ovf_state);
  engine_hist_free(e->hist);
  free(e->scen_site);
  free(e->prior);
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

int engine_add_cutover(engine_t *e, const cutover_t *c) {
  if (engine_grow((void **)&e->cut, &e->cap_cut, e->n_cut, sizeof *e->cut)) return NIRC_ENOMEM;
  e->cut[e->n_cut++] = *c;
  return 0;
}

int engine_add_schedule(engine_t *e, const schedule_t *s) {
  if (engine_grow((void **)&e->sch, &e->cap_sch, e->n_sch, sizeof *e->sch)) return NIRC_ENOMEM;
  e->sch[e->n_sch++] = *s;
  return 0;
}

int engine_add_overflow(engine_t *e, const overflow_rule_t *o) {
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

/* The audit detail of a hold starting or ending (hold-home,
 * hold-home-end): the sentence for people, and the figures for scripts. */
static json_t *engine_returns_detail(const engine_returns_t *r, const char *why) {
  return json_pack("{s:s, s:I, s:s, s:I, s:I, s:s}", "why", why, "returns", (json_int_t)r->n,
                   "rule", rules_kind_name(r->kind), "rule_id", (json_int_t)r->rule_id, "early_ms",
                   (json_int_t)r->early.ms, "early_measured", engine_early_how_name(r->early.how));
}

void engine_returns_record(engine_t *e, size_t i, bool started) {
  site_dir_t *d = &e->dirs[i];
  if (d->returns.state != ENGINE_RETURNS_HELD) return;
  const char *slug = engine_site(e, i)->slug;
  /* Kept (and its count while held updated) for the next leader, which
   * would otherwise count afresh and let the site bounce again. */
  engine_rec_t rec = {.kind = ENGINE_REC_RETURNS_HOLD, .site = slug, .returns = &d->returns};
  engine_store(e, &rec);
  if (!started) return;
  char words[ALARM_MESSAGE_MAX];
  engine_returns_words(e, i, words, sizeof words);
  engine_audit(e, "engine", "hold-home", slug, engine_returns_detail(&d->returns, words));
}

void engine_returns_release(engine_t *e, size_t i, const char *who, const char *why) {
  site_dir_t *d = &e->dirs[i];
  if (d->returns.state == ENGINE_RETURNS_HELD) {
    const char *slug = engine_site(e, i)->slug;
    char words[320];
    snprintf(words, sizeof words,
             "readmitted by %s (%s): moves with an end are sent to it again after %u early "
             "returns of its agent",
             who ? who : "?", why ? why : "", d->returns.n);
    log_info(LOG_SITE, slug, "%s", words);
    engine_rec_t rec = {
        .kind = ENGINE_REC_RETURNS_RELEASE, .site = slug, .actor = who, .detail = why};
    engine_store(e, &rec);
    engine_audit(e, who ? who : "?", "hold-home-end", slug,
                 engine_returns_detail(&d->returns, words));
    e->eval_dirty = true;
  }
  /* The count starts again (a count below the hold is kept in memory only). */
  memset(&d->returns, 0, sizeof d->returns);
}

void engine_load_return_holds(engine_t *e, const engine_return_hold_t *h, size_t n) {
  uint64_t mono = engine_mono(e);
  for (size_t k = 0; k < n; k++) {
    long i = engine_index(e, h[k].site);
    if (i < 0) continue;
    /* Held, as at the leader that held it. Monotonic times are this
     * process's own, and only their difference is read while held (the
     * span, engine_returns_words): unsigned arithmetic keeps it exact even
     * where this process's clock is younger than the span. */
    engine_returns_t *r = &e->dirs[i].returns;
    *r = (engine_returns_t){
        .state = ENGINE_RETURNS_HELD,
        .n = h[k].returns,
        .last_mono = mono,
        .first_mono = mono - h[k].span_ms,
        .kind = h[k].rule_kind,
        .rule_id = h[k].rule_id,
        .early = {.ms = h[k].early_ms,
                  .how = h[k].early_ms ? ENGINE_EARLY_NOT_KEPT : ENGINE_EARLY_NO_END}};
    e->eval_dirty = true;
  }
}

void engine_readmit(engine_t *e, size_t i, const char *who, const char *why) {
  site_dir_t *d = &e->dirs[i];
  if (!d->excluded_rule) return;
  d->excluded_rule = 0;
  d->excluded_why[0] = '\0';
  engine_rec_t rec = {
      .kind = ENGINE_REC_READMIT, .site = engine_site(e, i)->slug, .actor = who, .detail = why};
  engine_store(e, &rec);
}

void engine_end_waves(engine_t *e, rule_kind_t kind, uint64_t rule_id) {
  for (wave_t *w = e->waves; w; w = w->next)
    if (w->kind == kind && w->rule_id == rule_id) w->done = true;
}

void engine_load_overflow_state(engine_t *e, const planner_overflow_state_t *st, size_t n) {
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < e->n_ovf; k++)
      if (e->ovf_state[k].rule_id == st[i].rule_id) e->ovf_state[k] = st[i];
}

void engine_load_exclusions(engine_t *e, const engine_exclusion_t *x, size_t n) {
  for (size_t k = 0; k < n; k++) {
    long i = engine_index(e, x[k].site);
    if (i < 0) continue;
    e->dirs[i].excluded_rule = x[k].rule_id ? x[k].rule_id : 1;
    e->dirs[i].excluded_kind = x[k].rule_kind;
    e->dirs_excluded = true;
    engine_exclusion_text(e, (size_t)i, x[k].reason[0] ? x[k].reason : "reason not recorded");
  }
}

uint64_t engine_epoch(const engine_t *e) {
  return e->epoch;
}

int engine_load_rules(engine_t *e, uint64_t epoch, const cutover_t *c, size_t nc,
                      const schedule_t *s, size_t ns, const overflow_rule_t *o, size_t no,
                      uint64_t max_rule_id) {
  e->epoch = epoch;
  alarm_set_epoch(&e->alarms, epoch, 0);
  for (size_t i = 0; i < nc; i++)
    if (engine_add_cutover(e, &c[i])) return NIRC_ENOMEM;
  for (size_t i = 0; i < ns; i++)
    if (engine_add_schedule(e, &s[i])) return NIRC_ENOMEM;
  for (size_t i = 0; i < no; i++)
    if (engine_add_overflow(e, &o[i])) return NIRC_ENOMEM;
  if (e->epoch * 1000000ull + 1 > e->next_rule_id) e->next_rule_id = e->epoch * 1000000ull + 1;
  if (max_rule_id >= e->next_rule_id) e->next_rule_id = max_rule_id + 1;
  e->loaded_below_id = e->next_rule_id; /* rules made from here on are this leader's */
  return 0;
}

/* ---- records ---- */

static void engine_stored(void *arg, int err, const char *msg) {
  if (err) log_warn(LOG_DB, ENGINE_OBJ, "write failed: %s", msg && *msg ? msg : nirc_strerror(err));
}

/* Directives, acks and rule changes are the record of what the engine did:
 * each lands exactly once (the store journals them on disk while the
 * database is unreachable). `rec` is stamped with the business time. */
/* ---- groups: the durability of one operator change ---- */

static void engine_group_maybe_free(engine_t *e, group_t *g) {
  if (g->open || g->held || g->pending || g->busy) return;
  for (group_t **pp = &e->groups; *pp; pp = &(*pp)->next)
    if (*pp == g) {
      *pp = g->next;
      break;
    }
  free(g);
}

group_t *engine_group_begin(engine_t *e) {
  group_t *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->open = true;
  g->held = true;
  g->next = e->groups;
  e->groups = g;
  e->group = g;
  return g;
}

void engine_group_end(engine_t *e) {
  group_t *g = e->group;
  e->group = NULL;
  if (!g) return;
  g->open = false;
  engine_waiters_check(e);
  engine_deferred_check(e);
}

bool engine_group_done(const group_t *g) {
  return !g->open && g->pending == 0;
}

void engine_group_release(engine_t *e, group_t *g) {
  if (!g) return;
  g->held = false;
  engine_group_maybe_free(e, g);
}

typedef struct {
  engine_t *e;
  group_t *g;
} group_ref_t;

static void engine_group_stored(void *arg, int err, const char *msg) {
  group_ref_t *r = arg;
  engine_t *e = r->e;
  group_t *g = r->g;
  free(r);
  g->pending--;
  if (!err && msg && strcmp(msg, "journaled") == 0) g->journaled++;
  if (err) {
    log_error(LOG_DB, ENGINE_OBJ, "an operator change's record failed: %s",
              msg && *msg ? msg : nirc_strerror(err));
    if (!g->err) {
      g->err = err;
      snprintf(g->why, sizeof g->why, "%s", msg && *msg ? msg : nirc_strerror(err));
    }
  }
  if (engine_group_done(g)) {
    /* The answers below may release the group: keep it until they are
     * done with it. */
    g->busy = true;
    engine_waiters_check(e);
    engine_deferred_check(e);
    g->busy = false;
  }
  engine_group_maybe_free(e, g);
}

bool engine_can_record(engine_t *e, const engine_req_t *rq, const char *op, const char *target) {
  char why[400] = "";
  int rc = e->io.store_ready(e->io.ctx, why, sizeof why);
  if (rc == 0) return true;
  log_warn(LOG_OPS, rq->label, "%s refused: %s", op, why);
  Nirc__Error err = NIRC__ERROR__INIT;
  char msg[512];
  snprintf(msg, sizeof msg, "nothing was changed: %s", why[0] ? why : nirc_strerror(rc));
  err.code = NIRC__ERROR_CODE__ERROR_CODE_REFUSED;
  err.message = msg;
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.request_id = rq->request_id;
  rep.error = &err;
  if (rq->client) e->io.send_reply(e->io.ctx, rq->client, &rep);
  (void)target;
  return false;
}

/* Real time as much as business_ms of the business clock (accelerated in
 * demos) takes. */
static int64_t engine_real_span(const engine_t *e, int64_t business_ms) {
  double speed = e->opts.clock_speed >= 1 ? e->opts.clock_speed : 1;
  return (int64_t)((double)business_ms / speed);
}

/* Directives, acks and rule changes are the record of what the engine did:
 * each lands exactly once (the store journals them on disk while the
 * database is unreachable). `rec` is stamped with the business and real
 * times. During an operator change the record joins its group. Returns 0,
 * or the store's refusal (logged; the group remembers it). */
int engine_store(engine_t *e, engine_rec_t *rec) {
  int64_t now = engine_now(e);
  rec->at_ms = now;
  rec->wall_ms = e->io.wall_ms(e->io.ctx);
  if (rec->happened_ms > 0 && rec->happened_ms < now) {
    /* An event told late (engine_stable.c checked the time): stamped
     * when it happened, in real time as much earlier as the business
     * clock says. */
    rec->at_ms = rec->happened_ms;
    rec->wall_ms -= engine_real_span(e, now - rec->happened_ms);
  }
  rec->leader_epoch = e->epoch;
  group_t *g = e->group;
  group_ref_t *ref = NULL;
  if (g) {
    ref = malloc(sizeof *ref);
    if (!ref) {
      if (!g->err) {
        g->err = NIRC_ENOMEM;
        snprintf(g->why, sizeof g->why, "out of memory");
      }
      return NIRC_ENOMEM;
    }
    *ref = (group_ref_t){e, g};
    g->pending++; /* before the call: a store may complete at once */
  }
  int rc = e->io.store(e->io.ctx, rec, ref ? engine_group_stored : engine_stored, ref);
  if (rc != 0) {
    log_error(LOG_DB, ENGINE_OBJ, "cannot queue a routing record: %s", nirc_strerror(rc));
    if (g) {
      g->pending--;
      free(ref);
      if (!g->err) {
        g->err = rc;
        char why[200] = "";
        e->io.store_ready(e->io.ctx, why, sizeof why);
        snprintf(g->why, sizeof g->why, "%s", why[0] ? why : nirc_strerror(rc));
      }
    }
  }
  return rc;
}

char *engine_json_text(json_t *j) {
  char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return t;
}

/* "a,b,c": a slug list as an audit target. */
void engine_slugs_text(const slug_list_t *l, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < l->n && used + 1 < len; i++) {
    int k = snprintf(buf + used, len - used, "%s%s", i ? "," : "", l->v[i]);
    if (k < 0) break;
    used += (size_t)k;
  }
}

json_t *engine_slugs_json(const slug_list_t *l) {
  json_t *a = json_array();
  for (unsigned i = 0; i < l->n; i++)
    json_array_append_new(a, json_string(l->v[i]));
  return a;
}

/* Appends one audit record (exactly once, journaled while the database is
 * unreachable); `detail` is consumed. During an operator change it joins
 * the change's group, so the operator hears "done" only once it is
 * durable. */
void engine_audit(engine_t *e, const char *actor, const char *action, const char *target,
                  json_t *detail) {
  engine_audit_at(e, actor, action, target, detail, 0);
}

void engine_audit_at(engine_t *e, const char *actor, const char *action, const char *target,
                     json_t *detail, int64_t happened_ms) {
  /* Stamped when it happened (engine_store), ENGINE_LATE_MS or more
   * before it is written, the entry is listed by id among later ones with
   * an earlier time: it keeps when this controller recorded it too (the
   * evidence needs both), which nircctl history shows as "recorded late".
   * A return heard at once, a few ms after the agent's word, is not. */
  int64_t now = engine_now(e);
  if (detail && happened_ms > 0 && happened_ms < now &&
      engine_real_span(e, now - happened_ms) >= ENGINE_LATE_MS) {
    json_object_set_new(detail, "recorded_at_ms",
                        json_integer((json_int_t)e->io.wall_ms(e->io.ctx)));
    json_object_set_new(detail, "recorded_business_at_ms", json_integer((json_int_t)now));
  }
  char *text = engine_json_text(detail);
  engine_rec_t rec = {.kind = ENGINE_REC_AUDIT,
                      .actor = actor,
                      .action = action,
                      .target = target,
                      .detail = text ? text : "{}",
                      .happened_ms = happened_ms};
  if (engine_store(e, &rec) != 0)
    log_error(LOG_DB, ENGINE_OBJ, "audit record %s %s not stored", action, target);
  free(text);
}

void engine_note(engine_t *e, const char *actor, const char *action, const char *target,
                 const char *why) {
  engine_audit(e, actor, action, target, json_pack("{s:s}", "why", why ? why : ""));
}

json_t *engine_route_json(const engine_t *e, size_t i) {
  const site_dir_t *d = &e->dirs[i];
  json_t *j = route_to_json(&d->target);
  json_object_set_new(j, "site", json_string(e->sites->v[i].slug));
  return j;
}

/* ---- sending directives ---- */

/* Why a directive goes out: send_why_t (engine-int.h). */
void engine_send(engine_t *e, size_t i, send_why_t why) {
  /* Last line of the leadership gate (engine_io_t.may_issue): a controller
   * resumed after a pause sends nothing until its lease is confirmed. */
  if (!e->io.may_issue(e->io.ctx)) return;
  site_t *s = engine_site(e, i);
  site_dir_t *d = &e->dirs[i];
  uint64_t now = engine_mono(e);
  if (why == SEND_NEW) {
    e->stats.directives_sent++;
    d->sent_mono_ms = now;
    d->resends = 0;
    d->state = DIR_PENDING;
    e->dirs_unsettled = true;
    char route_txt[2048];
    engine_rec_t rec = {.kind = ENGINE_REC_DIRECTIVE,
                        .site = s->slug,
                        .route = &d->target,
                        .rule_kind = d->kind,
                        .rule_id = d->rule_id};
    engine_store(e, &rec);
    route_format(&d->target, s->slug, route_txt, sizeof route_txt);
    log_info(LOG_SITE, s->slug, "directive v%llu: %s (%s)", (unsigned long long)d->target.version,
             route_txt, d->target.reason[0] ? d->target.reason : "default");
  } else if (why == SEND_AFTER_FAILURE) {
    d->resends = 0;
    log_info(LOG_SITE, s->slug,
             "directive v%llu sent again: it failed, and the site's agent has since said it went "
             "home on its own at revert_at",
             (unsigned long long)d->target.version);
  } else if (why == SEND_AT_HELLO) {
    d->resends = 0;
    log_info(LOG_SITE, s->slug, "directive v%llu sent again: the site connected without it",
             (unsigned long long)d->target.version);
  } else if (why == SEND_RETRY_FAILED) {
    /* d->failed_why: "directive vN failed: <the site's answer, or no
     * acknowledgement after N resends>" (engine_fail). */
    e->stats.resends++;
    d->resends++;
    log_warn(LOG_SITE, s->slug,
             "directive v%llu sent again %llu ms after its last send, the slow retry of a "
             "failed directive (%s): resend %u/%u",
             (unsigned long long)d->target.version,
             (unsigned long long)(now - d->last_send_mono_ms),
             d->failed_why[0] ? d->failed_why : "its failure is not known here", d->resends,
             e->opts.max_resends);
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
  route_pb_t pb;
  route_to_directive(&d->target, &pb, &dir);
  dir.site = s->slug;
  dir.issued_at_ms = engine_now(e);
  e->io.send_directive(e->io.ctx, i, &dir);
}

bool engine_undelivered(const engine_t *e, size_t i) {
  const site_dir_t *d = &e->dirs[i];
  const site_t *s = &e->sites->v[i];
  return d->state == DIR_PENDING && !s->conn && s->life != SITE_REMOVED &&
         d->target.epoch == e->epoch && d->target.version > 0 &&
         engine_mono(e) - d->last_send_mono_ms >= e->opts.ack_timeout_ms;
}

void engine_undelivered_words(const engine_t *e, size_t i, char *buf, size_t len) {
  const site_dir_t *d = &e->dirs[i];
  const char *slug = e->sites->v[i].slug;
  char route[120];
  route_format(&d->target, slug, route, sizeof route);
  snprintf(buf, len,
           "directive v%llu not delivered: %s is offline and routes by its last route until its "
           "agent connects and gets it (%s)",
           (unsigned long long)d->target.version, slug, route);
}

/* ---- progress to waiting operators ---- */

void engine_progress(engine_t *e, void *client, uint64_t request_id, const char *fmt, ...) {
  if (!client) return;
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  Nirc__Progress p = NIRC__PROGRESS__INIT;
  p.request_id = request_id;
  p.line = line;
  e->io.send_progress(e->io.ctx, client, &p);
}

void engine_progress_site(engine_t *e, size_t i, const char *fmt, ...) {
  char line[240];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  for (waiter_t *w = e->waiters; w; w = w->next)
    for (unsigned k = 0; k < w->n; k++)
      if (w->sites[k].site == i && !w->sites[k].resolved)
        engine_progress(e, w->client, w->request_id, "%s", line);
}

/* ---- planning ---- */

/* A site's staffing for the planner and where it comes from: its report
 * when it measures agents, else its configured roster or seats, else
 * unknown (the planner refuses to predict on it). A site that measures
 * nothing of handle time takes the forecast's. */
/* The figures site s's last report does not measure (LoadReport
 * not_measured): all of them without a report, or when its PBX could not
 * be read (its zeros, with nothing flagged, measure nothing). */
static uint32_t engine_unmeasured(const site_t *s) {
  return s->has_report && !s->last.pbx_unreadable ? s->last.not_measured : UINT32_MAX;
}

static void engine_staffing(const engine_t *e, const site_t *s, int64_t now, plan_site_t *p) {
  uint32_t nm = engine_unmeasured(s);
  bool measured = !(nm & NIRC__LOAD_FIGURE__LOAD_FIGURE_AGENTS_LOGGED_IN);
  if (measured) {
    p->cap_source = CAPACITY_MEASURED;
    bool nr = !(nm & NIRC__LOAD_FIGURE__LOAD_FIGURE_AGENTS_NOT_READY);
    uint32_t away = nr ? s->last.not_ready : 0;
    p->staffed = s->last.logged_in >= away ? s->last.logged_in - away : 0;
    /* A site not online has a last measurement, not a current one: the
     * planner keeps using it through a hub's grace, and says how old. */
    if (s->state == SITE_ONLINE)
      snprintf(p->cap_note, sizeof p->cap_note, "measured, %u agents", p->staffed);
    else
      snprintf(p->cap_note, sizeof p->cap_note, "last measured (now %s), %u agents",
               sites_state_name(s->state), p->staffed);
  } else {
    uint32_t agents;
    if (capacity_agents_at(&s->cap, now, &agents, p->cap_note, sizeof p->cap_note)) {
      p->cap_source = CAPACITY_CONFIGURED;
      p->staffed = agents;
    } else {
      p->cap_source = CAPACITY_UNKNOWN;
      p->staffed = 0;
      snprintf(p->cap_note, sizeof p->cap_note, "not measured, not configured");
    }
  }
  /* No handle time measured (not reported, not measured, no call answered
   * yet): the forecast's, if it has one; else 0, which the planner takes
   * as unknown. */
  if (!(p->aht_s > 0)) {
    unsigned a;
    double aht;
    if (engine_forecast_staff(e, s->slug, now, &a, &aht)) p->aht_s = aht;
  }
}

void engine_build_input(engine_t *e, plan_input_t *in, const cutover_t *extra_cut,
                        size_t n_extra_cut) {
  size_t n = engine_nsites(e);
  int64_t now = engine_now(e);
  /* Sized for every site, so that it never fails halfway: a list that
   * could not be made leaves the gate update scanning every site. */
  uint32_t *hubs = realloc(e->hub_idx, (n + 1) * sizeof *hubs);
  if (hubs) e->hub_idx = hubs;
  e->hub_idx_valid = hubs != NULL;
  e->n_hub_idx = 0;
  for (size_t i = 0; i < n; i++) {
    site_t *s = engine_site(e, i);
    plan_site_t *p = &e->psites[i];
    if (hubs && s->is_hub) hubs[e->n_hub_idx++] = (uint32_t)i;
    memset(p, 0, sizeof *p);
    nirc_strlcpy(p->slug, s->slug, sizeof p->slug);
    if (s->life == SITE_REMOVED) {
      /* Nothing routes to or from it (removal is refused until then), and
       * it has no demand: a home-routed non-hub, offline, that takes
       * nothing (no rule may name it). */
      continue;
    }
    p->is_hub = s->is_hub;
    /* A site without a report yet is not known to be able to take calls. */
    p->online = s->state == SITE_ONLINE && s->has_report && !s->last.pbx_unreadable;
    p->down_why = s->state == SITE_STALE        ? PLAN_DOWN_STALE
                  : s->state == SITE_NEVER_SEEN ? PLAN_DOWN_NEVER_SEEN
                  : s->state == SITE_OFFLINE    ? PLAN_DOWN_OFFLINE
                  : !s->has_report              ? PLAN_DOWN_NO_REPORT
                                                : PLAN_DOWN_PBX;
    /* Until five minutes of calls are seen, the forecast fills the gap; one
     * call in the first second must not read as a flood. */
    engine_demand_t fc;
    engine_forecast_demand_at(e, (long)i, s->slug, now, &fc, false);
    p->forecast_cps = fc.cps;
    double evidence_s = e->opts.forecast || fc.kind == ENGINE_DEMAND_HISTORY ? 300.0 : 60.0;
    p->demand_cps = sites_demand_cps(s, p->forecast_cps, evidence_s);
    /* Without a forecast, a minute of reports before its calls count as
     * its demand (planner.h). */
    p->demand_unknown = fc.kind == ENGINE_DEMAND_LIVE && s->demand_secs < evidence_s;
    p->aht_s = s->aht_s > 0 ? s->aht_s : (s->has_report ? s->last.aht_ms / 1000.0 : 0);
    engine_staffing(e, s, now, p);
    p->wait_s = s->wait_s;
    p->queue = s->queue;
    p->sl = s->has_ewma ? s->sl : 1.0;
    uint32_t nm = engine_unmeasured(s);
    p->wait_unknown = (nm & NIRC__LOAD_FIGURE__LOAD_FIGURE_LONGEST_WAIT) != 0;
    p->queue_unknown = (nm & NIRC__LOAD_FIGURE__LOAD_FIGURE_CALLS_IN_QUEUE) != 0;
    /* A proxy (threshold 0) says nothing of service level either. */
    p->sl_unknown = (nm & NIRC__LOAD_FIGURE__LOAD_FIGURE_SERVICE_LEVEL) != 0 ||
                    (s->has_report && s->last.sl_threshold_s == 0);
    p->excluded = e->dirs[i].excluded_rule != 0;
    const char *cur = engine_main_hub(&e->dirs[i].target, s->slug);
    if (cur) nirc_strlcpy(p->cur_hub, cur, sizeof p->cur_hub);
    if (s->is_hub) {
      p->hub_grace = e->gate[i].state == HUB_FAILING;
      p->hub_waiting = e->gate[i].state == HUB_RECOVERING;
    }
  }
  engine_inflow_input(e);
  engine_ahead_overflow_input(e, extra_cut ? extra_cut : e->cut,
                              extra_cut ? n_extra_cut : e->n_cut);
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
  in->keep_margin = e->opts.keep_margin;
  in->enter_margin = e->opts.enter_margin;
  in->hold_s = e->opts.hold_s;
  in->reentry_s = e->opts.reentry_s;
  in->holds = e->holds;
}

static bool engine_wave_active(const engine_t *e, rule_kind_t kind, uint64_t id) {
  for (const wave_t *w = e->waves; w; w = w->next)
    if (!w->done && w->kind == kind && w->rule_id == id) return true;
  return false;
}

bool engine_is_away(const route_t *r, const char *self) {
  return route_share_of(r, self) < 1000;
}

/* The routing part of a plan route, as a route_t without inbound. */
void engine_route_from_plan(const plan_route_t *p, route_t *r) {
  /* Not the 2.7 KB of the whole route: the header and the shares (the
   * inbound entries are unused with n_inbound 0). */
  r->epoch = r->version = 0;
  r->n_inbound = 0;
  memset(r->share, 0, sizeof r->share);
  for (unsigned k = 0; k < p->n_route && k < ROUTE_MAX_SHARES; k++) {
    nirc_strlcpy(r->share[k].site, p->route[k].site, sizeof r->share[k].site);
    r->share[k].permille = p->route[k].permille;
  }
  r->n_share = p->n_route < ROUTE_MAX_SHARES ? p->n_route : ROUTE_MAX_SHARES;
  r->revert_at_ms = p->revert_at_ms;
  _Static_assert(sizeof r->reason >= sizeof p->reason, "a plan's reason fits a route's");
  memcpy(r->reason, p->reason, sizeof p->reason);
}

bool engine_shares_same(const route_t *a, const route_t *b) {
  return route_shares_same(a, b) && a->revert_at_ms == b->revert_at_ms;
}

static bool engine_adds_load(const route_t *want, const route_t *cur, const char *self);

bool engine_returns_withheld(engine_t *e, size_t i, const plan_route_t *pr) {
  const site_dir_t *d = &e->dirs[i];
  /* Held sites are few: the state first, before any route is built. An
   * open-ended move (no revert_at) is sent: its agent never ends it. */
  if (d->returns.state != ENGINE_RETURNS_HELD || !pr->revert_at_ms) return false;
  route_t want;
  engine_route_from_plan(pr, &want);
  return engine_adds_load(&want, &d->target, engine_site(e, i)->slug);
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
bool engine_settling(engine_t *e) {
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
  e->resume_mono = now + e->opts.verify_window_ms;
  return false;
}

void engine_start_leading(engine_t *e, uint32_t settle_ms) {
  engine_gate_start(e);
  e->tick_mono = 0;    /* no tick of this leadership yet */
  e->fc_swept = false; /* windows the old leader left unclosed: engine_report.c */
  e->settle_from_mono = engine_mono(e);
  e->settle_until_mono = e->settle_from_mono + settle_ms;
  /* Decided now, on the rules just loaded: with none in force there is
   * nothing to wait for, and rules added later do not start a wait. */
  (void)engine_settling(e);
}

/* Whether `want` sends more of the calls to some other site than `cur`
 * does: a move that loads a hub, which goes in its rule's waves. A return
 * home, or a smaller share, is never held back. */
static bool engine_adds_load(const route_t *want, const route_t *cur, const char *self) {
  for (unsigned k = 0; k < want->n_share; k++)
    if (strcmp(want->share[k].site, self) != 0 &&
        want->share[k].permille > route_share_of(cur, want->share[k].site))
      return true;
  return false;
}

/* Whether the rule of plan route `pr`, one the old leader made, already
 * has a move in place (a source routed as the plan says, away from home)
 * while the engine is within its resume window after taking over: its
 * next wave then waits for that window, as it would have waited for the
 * old leader's wave to be verified. */
static bool engine_resume_hold(engine_t *e, const plan_t *plan, const plan_route_t *pr) {
  if (!e->resume_mono || engine_mono(e) >= e->resume_mono || pr->kind == RULE_NONE) return false;
  if (pr->rule_id >= e->loaded_below_id) return false; /* this leader's own rule */
  for (size_t j = 0; j < plan->n_routes; j++) {
    const plan_route_t *q = &plan->routes[j];
    if (q->kind != pr->kind || q->rule_id != pr->rule_id) continue;
    route_t r;
    engine_route_from_plan(q, &r);
    if (engine_shares_same(&r, &e->dirs[j].target) && engine_is_away(&r, engine_site(e, j)->slug))
      return true;
  }
  return false;
}

void engine_evaluate(engine_t *e, size_t *changed, unsigned *n_changed) {
  if (n_changed) *n_changed = 0;
  engine_gate_update(e);
  if (engine_settling(e)) return;
  e->eval_mono = engine_mono(e);
  e->eval_now = engine_now(e);
  e->eval_done = true;
  e->eval_dirty = false;
  e->stats.plans++;
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
  for (size_t k = 0; k < e->n_ovf && plan.overflow_state; k++) {
    const planner_overflow_state_t *was = &e->ovf_state[k], *now = &plan.overflow_state[k];
    if (was->engaged != now->engaged || (now->engaged && was->permille != now->permille)) {
      /* Stored, so a new leader neither releases a spill this one holds
       * nor starts one it released (the hysteresis lives in this state). */
      engine_rec_t rec = {.kind = ENGINE_REC_OVERFLOW_STATE,
                          .id = now->rule_id,
                          .enabled = now->engaged,
                          .since_ms = now->since_ms,
                          .permille = now->permille};
      engine_store(e, &rec);
    }
    e->ovf_state[k] = *now;
  }
  engine_alarms_observe(e, &plan);

  size_t n = engine_nsites(e);
  engine_holds_update(e, plan.holds);
  /* Every entry of next is written below before it is read. A nested
   * evaluation (an I/O callback that answers at once) gets its own. */
  bool nested = e->next_busy;
  route_t *next = nested ? calloc(n + 1, sizeof *next) : e->next_scratch;
  int *alarm_kind = calloc(n, sizeof *alarm_kind);
  rule_kind_t *old_kind = calloc(n, sizeof *old_kind);
  uint64_t *old_rule = calloc(n, sizeof *old_rule);
  if (!next || !alarm_kind || !old_kind || !old_rule) {
    if (nested) free(next);
    free(alarm_kind);
    free(old_kind);
    free(old_rule);
    return;
  }
  e->next_busy = true;
  for (size_t k = 0; k < plan.n_alarms; k++) {
    long i = engine_index(e, plan.alarms[k].site);
    if (i >= 0 && !alarm_kind[i]) alarm_kind[i] = (int)plan.alarms[k].kind;
  }
  for (size_t i = 0; i < n; i++) {
    old_kind[i] = e->dirs[i].kind;
    old_rule[i] = e->dirs[i].rule_id;
    /* Away by an older leader's directive the database has: its end is that rule's. */
    if (old_kind[i] == RULE_NONE)
      engine_prior_rule(e, i, &e->dirs[i].target, &old_kind[i], &old_rule[i]);
    engine_site_note(e, i, &plan.routes[i], e->alarm[i]);
  }
  /* 1. Sources: returns and changes of hub are applied at once; new moves
   * away wait for their rule's wave. */
  for (size_t i = 0; i < n; i++) {
    site_dir_t *d = &e->dirs[i];
    const plan_route_t *pr = &plan.routes[i];
    route_copy(&next[i], &d->target);
    route_t want;
    engine_route_from_plan(pr, &want);
    if (engine_shares_same(&want, &d->target)) {
      memcpy(next[i].reason, want.reason, sizeof next[i].reason); /* same size */
      /* The rule behind a route it keeps: a new leader learned the route
       * from the agent's Hello, not the rule, and the cause of the route's
       * next change (its end) is told by it. */
      if (engine_is_away(&want, engine_site(e, i)->slug)) {
        d->kind = pr->kind;
        d->rule_id = pr->rule_id;
      }
      continue;
    }
    const char *self = engine_site(e, i)->slug;
    if (engine_returns_withheld(e, i, pr)) continue; /* its agent keeps going home early */
    bool advance = engine_adds_load(&want, &d->target, self) && !engine_hub_gone(e, i);
    if (advance && engine_wave_active(e, pr->kind, pr->rule_id)) continue; /* next wave */
    if (advance && engine_resume_hold(e, &plan, pr)) continue;             /* verified anew first */
    next[i].n_share = want.n_share;
    memcpy(next[i].share, want.share, sizeof want.share);
    next[i].revert_at_ms = want.revert_at_ms;
    memcpy(next[i].reason, want.reason, sizeof next[i].reason); /* same size */
    d->kind = pr->kind;
    d->rule_id = pr->rule_id;
  }
  /* 2. Waves: per rule, at most wave_size new moves start together. */
  for (size_t i = 0; i < n; i++) {
    const plan_route_t *pr = &plan.routes[i];
    const char *self = engine_site(e, i)->slug;
    bool advance = engine_adds_load(&next[i], &e->dirs[i].target, self) && !engine_hub_gone(e, i);
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
      if (engine_adds_load(&next[j], &e->dirs[j].target, sj) && !engine_hub_gone(e, j))
        w->sources[w->n++] = j;
    }
    /* Without it (out of memory) the wave is verified as before: on
     * acknowledgements and hub health. */
    w->base = w->n ? calloc(w->n, sizeof *w->base) : NULL;
    for (unsigned k = 0; k < w->n; k++)
      e->dirs[w->sources[k]].verify[0] = '\0';
    /* Sources beyond the wave keep their current target for now. */
    for (size_t j = i; j < n; j++) {
      const plan_route_t *pj = &plan.routes[j];
      const char *sj = engine_site(e, j)->slug;
      if (pj->kind != w->kind || pj->rule_id != w->rule_id) continue;
      bool in_wave = false;
      for (unsigned k = 0; k < w->n; k++)
        in_wave |= w->sources[k] == j;
      if (!in_wave && engine_adds_load(&next[j], &e->dirs[j].target, sj) &&
          !engine_hub_gone(e, j)) {
        char keep_reason[128];
        nirc_strlcpy(keep_reason, next[j].reason, sizeof keep_reason);
        route_copy(&next[j], &e->dirs[j].target);
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
      json_t *detail = json_pack("{s:s, s:I, s:o, s:s}", "rule", rules_kind_name(w->kind),
                                 "rule_id", (json_int_t)w->rule_id, "sources", srcs, "reason",
                                 plan.routes[w->sources[0]].reason);
      /* A schedule's move was sized on a forecast: the record says which. */
      if (detail && w->kind == RULE_SCHEDULE)
        json_object_set_new(detail, "demand",
                            engine_wave_demand_json(e, w->sources, w->n, engine_now(e)));
      engine_audit(e, "engine", "move", rules_kind_name(w->kind), detail);
    }
  }
  /* 3. Hubs: inbound follows the sources' targets, never the plan, so a
   * hub takes calls exactly from the sources that were told to send them.
   * Walked from the sources' side (each route has at most ROUTE_MAX_SHARES
   * shares, looked up by index), so it costs O(sites), not O(sites^2):
   * every hub's list still comes out in source order. */
  for (size_t h = 0; h < n; h++)
    next[h].n_inbound = 0;
  for (size_t s = 0; s < n; s++) {
    for (unsigned k = 0; k < next[s].n_share; k++) {
      const route_share_t *sh = &next[s].share[k];
      long h = sh->permille ? engine_index(e, sh->site) : -1;
      if (h < 0 || (size_t)h == s || next[h].n_inbound >= ROUTE_MAX_INBOUND) continue;
      route_share_t *ib = &next[h].inbound[next[h].n_inbound++];
      nirc_strlcpy(ib->site, engine_site(e, s)->slug, sizeof ib->site);
      ib->permille = sh->permille;
    }
  }
  /* 4. Send what changed. */
  for (size_t i = 0; i < n; i++) {
    site_dir_t *d = &e->dirs[i];
    if (route_same(&next[i], &d->target) && next[i].revert_at_ms == d->target.revert_at_ms) {
      nirc_strlcpy(d->target.reason, next[i].reason, sizeof d->target.reason);
      continue;
    }
    uint64_t version = d->target.epoch == e->epoch ? d->target.version + 1 : 1;
    if (version == 1) d->ack_stored = 0; /* versions start again in a new epoch */
    {
      const char *self = engine_site(e, i)->slug;
      bool home = !engine_is_away(&next[i], self);
      route_cause_t cause =
          engine_cause(e, i, &d->target, &next[i], old_kind[i], plan.routes[i].kind, alarm_kind[i]);
      d->senders_only = cause == ROUTE_CAUSE_SENDERS;
      if (cause == ROUTE_CAUSE_NO_RULE) {
        const char *hub = engine_main_hub(&d->target, engine_site(e, i)->slug);
        d->no_rule_mono = engine_mono(e);
        d->no_rule_epoch = d->target.epoch;
        d->no_rule_version = version;
        nirc_strlcpy(d->no_rule_hub, hub ? hub : "a hub", sizeof d->no_rule_hub);
      }
      engine_route_changed(e, i, &next[i], version, cause, home ? old_kind[i] : d->kind,
                           home ? old_rule[i] : d->rule_id);
    }
    route_copy(&d->target, &next[i]);
    if (!engine_is_away(&d->target, engine_site(e, i)->slug)) d->verify[0] = '\0';
    d->target.epoch = e->epoch;
    d->target.version = version;
    if (!engine_is_away(&d->target, engine_site(e, i)->slug) && d->target.n_inbound == 0) {
      d->kind = RULE_NONE;
      d->rule_id = 0;
    }
    engine_send(e, i, SEND_NEW);
    if (changed) changed[(*n_changed)++] = i;
  }
  if (nested)
    free(next);
  else
    e->next_busy = false;
  free(alarm_kind);
  free(old_kind);
  free(old_rule);
}
