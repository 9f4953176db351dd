/* engine_rules: the operator's schedule and overflow rule requests — list,
 * add, remove, enable, disable — and their replies, which wait until the
 * change is durable (deferred replies). Part of the engine module
 * (engine-int.h); no I/O: replies leave through engine_io_t. */
#include "engine-int.h"

#include "err.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* What a `schedule set` changed and what that does to the routes, told
 * with its reply (and in its audit entry). Flat: freed with free(). */
#define ENGINE_CHANGE_FIELDS 8
typedef struct {
  char site[SCENARIO_SLUG_MAX];
  char from[160], to[160]; /* route_format's words: "home", "shaanxi" */
} engine_change_move_t;
typedef struct engine_change {
  char name[RULES_NAME_MAX];
  char changed[ENGINE_CHANGE_FIELDS][320]; /* "end 08:00 -> 08:30" */
  unsigned n_changed;
  engine_change_move_t moves[2 * RULES_MAX_SITES];
  unsigned n_moves;
  unsigned kept; /* sources away before and after, by the same shares */
  bool dry_run;
  bool add;       /* a schedule add: no change to tell, only the check */
  bool has_check; /* a schedule add or set: check holds its capacity check */
  engine_sched_check_t check;
  bool has_rule; /* an overflow add or set: the rule, planned as engaged */
  overflow_rule_t rule;
} engine_change_t;

static Nirc__ScheduleSpec *engine_schedule_spec(engine_t *e, engine_arena_t *a,
                                                const schedule_t *s) {
  Nirc__ScheduleSpec *sp = engine_arena_alloc(a, sizeof *sp);
  if (!sp) return NULL;
  nirc__schedule_spec__init(sp);
  sp->id = s->id;
  sp->name = engine_arena_str(a, s->name);
  sp->sources = engine_arena_alloc(a, (s->sources.n + 1) * sizeof(char *));
  sp->hubs = engine_arena_alloc(a, (s->hubs.n + 1) * sizeof(char *));
  sp->exceptions = engine_arena_alloc(a, (s->n_exceptions + 1) * sizeof(char *));
  if (!sp->sources || !sp->hubs || !sp->exceptions) return NULL;
  for (unsigned k = 0; k < s->sources.n; k++)
    sp->sources[sp->n_sources++] = engine_arena_str(a, s->sources.v[k]);
  for (unsigned k = 0; k < s->hubs.n; k++)
    sp->hubs[sp->n_hubs++] = engine_arena_str(a, s->hubs.v[k]);
  for (unsigned k = 0; k < s->n_exceptions; k++) {
    char d[16];
    int32_t x = s->exceptions[k];
    snprintf(d, sizeof d, "%04d-%02d-%02d", x / 10000, (x / 100) % 100, x % 100);
    sp->exceptions[sp->n_exceptions++] = engine_arena_str(a, d);
  }
  char t[16], days[64];
  snprintf(t, sizeof t, "%02d:%02d", s->start_min / 60, s->start_min % 60);
  sp->start = engine_arena_str(a, t);
  snprintf(t, sizeof t, "%02d:%02d", s->end_min / 60, s->end_min % 60);
  sp->end = engine_arena_str(a, t);
  engine_days_text(s->days, days, sizeof days);
  sp->days = engine_arena_str(a, days);
  sp->tz = engine_arena_str(a, s->tz);
  sp->wave_size = s->wave_size;
  sp->enabled = s->enabled;
  int64_t st, en;
  sp->in_force = rules_schedule_window(s, engine_now(e), &st, &en);
  sp->next_start_ms = rules_schedule_next_start(s, engine_now(e));
  /* What it does, not only whether its window is open: the sources that
   * route by it now, as they acknowledged. A source whose route is not
   * known here (not heard, or unknown at its PBX) is neither: counted
   * apart, never as home (its acked may be only the default). */
  for (size_t i = 0; i < engine_nsites(e); i++) {
    const site_dir_t *d = &e->dirs[i];
    if (d->kind == RULE_SCHEDULE && d->rule_id == s->id &&
        engine_route_seen(e, i) == ENGINE_ROUTE_KNOWN &&
        route_share_of(&d->acked, engine_site(e, i)->slug) < 1000)
      sp->sources_moved++;
  }
  for (unsigned k = 0; k < s->sources.n; k++) {
    long i = engine_index(e, s->sources.v[k]);
    if (i >= 0 && engine_route_seen(e, (size_t)i) != ENGINE_ROUTE_KNOWN) sp->sources_not_known++;
  }
  return sp;
}

/* Sends a reply built in arena `a` (then frees it); `built` says whether
 * every allocation succeeded. Out of memory is answered, never silent. */
void engine_send_built_reply(engine_t *e, void *c, uint64_t rid, engine_arena_t *a, bool built,
                             Nirc__OperatorReply *rep, const char *warning) {
  if (!built || a->failed) {
    engine_arena_free(a);
    engine_reply_error(e, c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
    return;
  }
  rep->request_id = rid;
  rep->ok = 1;
  Nirc__Error err = NIRC__ERROR__INIT;
  if (warning) {
    err.code = NIRC__ERROR_CODE__ERROR_CODE_UNAVAILABLE;
    err.message = (char *)warning;
    rep->error = &err;
  }
  engine_send_reply(e, c, rep);
  engine_arena_free(a);
}

static void engine_reply_schedules(engine_t *e, void *c, uint64_t rid, const char *warning,
                                   const engine_change_t *change);
static void engine_reply_overflows(engine_t *e, void *c, uint64_t rid, const char *warning,
                                   const engine_change_t *change);

/* ---- replies that wait for the change to be durable ---- */

/* The rule list answers the change once its records are durable; it takes
 * the current group's claim. Without memory it answers now. */
void engine_defer(engine_t *e, const engine_req_t *rq, defer_kind_t kind, const char *what) {
  engine_defer_on(e, rq, kind, what, "");
}

void engine_defer_on(engine_t *e, const engine_req_t *rq, defer_kind_t kind, const char *what,
                     const char *subject) {
  deferred_t *d = calloc(1, sizeof *d);
  group_t *g = e->group;
  if (!d || !g) {
    free(d);
    engine_group_release(e, g);
    if (kind == DEFER_SCHEDULES)
      engine_reply_schedules(e, rq->client, rq->request_id, "the record is not followed", NULL);
    else if (kind == DEFER_ALARMS)
      engine_reply_alarms(e, rq->client, rq->request_id, "the record is not followed");
    else if (kind == DEFER_CAPACITY)
      engine_reply_capacity(e, rq->client, rq->request_id, NULL, "the record is not followed");
    else if (kind == DEFER_SITE)
      engine_reply_site_deferred(e, rq->client, rq->request_id, subject,
                                 "the record is not followed");
    else
      engine_reply_overflows(e, rq->client, rq->request_id, "the record is not followed", NULL);
    return;
  }
  *d = (deferred_t){.client = rq->client, .request_id = rq->request_id, .kind = kind, .group = g};
  snprintf(d->what, sizeof d->what, "%s", what);
  snprintf(d->subject, sizeof d->subject, "%s", subject);
  deferred_t **pp = &e->deferred;
  while (*pp)
    pp = &(*pp)->next;
  *pp = d; /* answered in order */
}

void engine_deferred_check(engine_t *e) {
  deferred_t **pp = &e->deferred;
  while (*pp) {
    deferred_t *d = *pp;
    if (!engine_group_done(d->group)) {
      pp = &d->next;
      continue;
    }
    *pp = d->next;
    if (d->kind == DEFER_SITE && !d->client)
      engine_reply_site_deferred(e, NULL, d->request_id, d->subject, NULL);
    if (d->client) {
      char msg[600];
      const char *warn = NULL;
      if (d->group->err) {
        snprintf(msg, sizeof msg,
                 "%s, but NOT recorded durably (a new leader will not know it): %s", d->what,
                 d->group->why);
        warn = msg;
      } else if (d->group->journaled) {
        char only[480];
        engine_journal_only(e, only, sizeof only);
        snprintf(msg, sizeof msg, "%s, but %s", d->what, only);
        warn = msg;
      }
      if (d->kind == DEFER_SCHEDULES)
        engine_reply_schedules(e, d->client, d->request_id, warn, d->change);
      else if (d->kind == DEFER_ALARMS)
        engine_reply_alarms(e, d->client, d->request_id, warn);
      else if (d->kind == DEFER_CAPACITY)
        engine_reply_capacity(e, d->client, d->request_id, NULL, warn);
      else if (d->kind == DEFER_SITE)
        engine_reply_site_deferred(e, d->client, d->request_id, d->subject, warn);
      else
        engine_reply_overflows(e, d->client, d->request_id, warn, d->change);
    }
    engine_group_release(e, d->group);
    free(d->change);
    free(d);
  }
}

/* Hands c (owned from here) to the reply just deferred for rq. */
static void engine_defer_attach(engine_t *e, const engine_req_t *rq, engine_change_t *c) {
  deferred_t *last = NULL;
  for (deferred_t *d = e->deferred; d; d = d->next)
    last = d;
  if (last && last->client == rq->client && last->request_id == rq->request_id && !last->change)
    last->change = c;
  else
    free(c); /* answered already (out of memory): without the change */
}

/* What a SET changed, for its reply (in arena a); NULL without memory. */
static Nirc__RuleChange *engine_change_reply(engine_arena_t *a, const engine_change_t *c) {
  Nirc__RuleChange *rc = engine_arena_alloc(a, sizeof *rc);
  if (!rc) return NULL;
  nirc__rule_change__init(rc);
  rc->name = engine_arena_str(a, c->name);
  rc->kept = c->kept;
  rc->dry_run = c->dry_run;
  rc->changed = engine_arena_alloc(a, (c->n_changed + 1) * sizeof *rc->changed);
  rc->moves = engine_arena_alloc(a, (c->n_moves + 1) * sizeof *rc->moves);
  if (!rc->changed || !rc->moves) return NULL;
  for (unsigned k = 0; k < c->n_changed; k++)
    rc->changed[rc->n_changed++] = engine_arena_str(a, c->changed[k]);
  for (unsigned k = 0; k < c->n_moves; k++) {
    Nirc__RuleChangeMove *m = engine_arena_alloc(a, sizeof *m);
    if (!m) return NULL;
    nirc__rule_change_move__init(m);
    m->site = engine_arena_str(a, c->moves[k].site);
    m->from = engine_arena_str(a, c->moves[k].from);
    m->to = engine_arena_str(a, c->moves[k].to);
    rc->moves[rc->n_moves++] = m;
  }
  return rc;
}

/* The schedule list; `warning` (may be NULL) says the change it answers
 * is not durable; `change` (may be NULL) what a SET changed. */
static void engine_reply_schedules(engine_t *e, void *c, uint64_t rid, const char *warning,
                                   const engine_change_t *change) {
  engine_arena_t a = {0};
  Nirc__ScheduleReply *sr = engine_arena_alloc(&a, sizeof *sr);
  if (sr) {
    nirc__schedule_reply__init(sr);
    sr->schedules = engine_arena_alloc(&a, (e->n_sch + 1) * sizeof *sr->schedules);
    if (change && !change->add) sr->change = engine_change_reply(&a, change);
    if (change && change->has_check && !(sr->check = engine_check_reply(&a, &change->check)))
      a.failed = true;
  }
  for (size_t k = 0; sr && sr->schedules && k < e->n_sch; k++) {
    Nirc__ScheduleSpec *sp = engine_schedule_spec(e, &a, &e->sch[k]);
    if (sp) sr->schedules[sr->n_schedules++] = sp;
  }
  if (sr && change && !change->add && !sr->change) a.failed = true;
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_SCHEDULE;
  rep.schedule = sr;
  engine_send_built_reply(e, c, rid, &a, sr && sr->schedules, &rep, warning);
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

static int engine_persist_schedule(engine_t *e, const schedule_t *s, const char *who) {
  engine_rec_t rec = {.kind = ENGINE_REC_SCHEDULE_NEW, .schedule = s, .actor = who};
  return engine_store(e, &rec);
}

/* Refuses a schedule that would move calls in a circle with the enabled
 * ones (rules_schedule_cycle): the planner could keep only part of it, so
 * it is refused before anything is stored. true: refused. */
static bool engine_schedule_cycle(engine_t *e, const engine_req_t *rq, const schedule_t *s,
                                  const char *prefix, const char *target) {
  char why[512];
  int rc = rules_schedule_cycle(s, e->sch, e->n_sch, why, sizeof why);
  if (rc == 0) return false;
  if (rc < 0)
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL,
                       "out of memory");
  else
    engine_refuse(e, rq, "schedule", target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED, "%s%s", prefix,
                  why);
  return true;
}

/* The capacity check of schedule s, added, changed from `old` (NULL: not
 * a change) or enabled (verb: "added", "changed", "enabled"), into
 * c->check: a schedule whose next window misses the floor is refused
 * unless forced (SPEC: capacity check before any move), or, for a
 * change, unless the change makes it no worse (engine_schedule_no_worse:
 * then c->check.no_worse says so); a dry run only shows it. false:
 * answered (refused, or out of memory). */
static bool engine_schedule_checked(engine_t *e, const engine_req_t *rq, const schedule_t *s,
                                    const schedule_t *old, bool force, const char *verb,
                                    const char *target, engine_change_t *c) {
  if (engine_schedule_check(e, s, &c->check) != 0) {
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL,
                       "out of memory");
    return false;
  }
  c->has_check = true;
  c->check.dry_run = c->dry_run;
  char why[320] = "";
  if (c->check.refused && old && !force &&
      engine_schedule_no_worse(e, old, s, &c->check, why, sizeof why)) {
    c->check.no_worse = true;
    return true;
  }
  c->check.forced = force && c->check.refused && !c->dry_run;
  if (why[0] && c->check.refused) { /* said in the reply and the refusal */
    size_t u = strlen(c->check.refusal);
    snprintf(c->check.refusal + u, sizeof c->check.refusal - u, "; %s", why);
  }
  if (!c->check.refused || force || c->dry_run) return true;
  /* The refusal carries the check, as a cutover's carries its plan: the
   * figures in --json, not only in the words. */
  engine_arena_t a = {0};
  Nirc__ScheduleReply *sr = engine_arena_alloc(&a, sizeof *sr);
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  if (sr) {
    nirc__schedule_reply__init(sr);
    sr->check = engine_check_reply(&a, &c->check);
  }
  if (sr && sr->check && !a.failed) {
    rep.body_case = NIRC__OPERATOR_REPLY__BODY_SCHEDULE;
    rep.schedule = sr;
  }
  engine_refuse_with(e, rq, "schedule", target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED, &rep,
                     "schedule '%s' not %s: %s; add agents there, give it fewer sources or "
                     "another hub, or use --force to have it %s anyway",
                     s->name, verb, c->check.refusal, verb);
  engine_arena_free(&a);
  return false;
}

/* ---- nircctl schedule set: a change in place ---- */

static void engine_list_text(const slug_list_t *l, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (unsigned k = 0; k < l->n && used < len; k++)
    used += (size_t)snprintf(buf + used, len - used, "%s%s", k ? "," : "", l->v[k]);
}

static json_t *engine_exceptions_json(const schedule_t *s) {
  json_t *ex = json_array();
  for (unsigned k = 0; k < s->n_exceptions; k++) {
    char d[16];
    int32_t x = s->exceptions[k];
    snprintf(d, sizeof d, "%04d-%02d-%02d", x / 10000, (x / 100) % 100, x % 100);
    json_array_append_new(ex, json_string(d));
  }
  return ex;
}

/* The schedule `old` with what the spec of a SET gives: an empty string,
 * an empty list or 0 keeps the field; --except none clears the dates. */
static int engine_schedule_merge(const schedule_t *old, const Nirc__ScheduleSpec *sp, schedule_t *s,
                                 char *err, size_t errlen) {
  *s = *old;
  if (!sp) {
    snprintf(err, errlen, "no change given");
    return NIRC_EINVAL;
  }
  if ((sp->n_sources &&
       engine_copy_slugs(&s->sources, sp->sources, sp->n_sources, "sources", err, errlen)) ||
      (sp->n_hubs && engine_copy_slugs(&s->hubs, sp->hubs, sp->n_hubs, "hubs", err, errlen)))
    return NIRC_EINVAL;
  if (sp->start && *sp->start && rules_parse_hhmm(sp->start, &s->start_min) != 0) {
    snprintf(err, errlen, "start time '%s' is not HH:MM (00:00-23:59)", sp->start);
    return NIRC_EINVAL;
  }
  if (sp->end && *sp->end && rules_parse_hhmm(sp->end, &s->end_min) != 0) {
    snprintf(err, errlen, "end time '%s' is not HH:MM (00:00-23:59)", sp->end);
    return NIRC_EINVAL;
  }
  if (sp->days && *sp->days && rules_parse_days(sp->days, &s->days, err, errlen) != 0)
    return NIRC_EINVAL;
  if (sp->tz && *sp->tz) nirc_strlcpy(s->tz, sp->tz, sizeof s->tz);
  if (sp->n_exceptions) {
    s->n_exceptions = 0;
    bool none = sp->n_exceptions == 1 && strcmp(sp->exceptions[0], "none") == 0;
    for (size_t k = 0; k < sp->n_exceptions && !none; k++) {
      if (s->n_exceptions == RULES_MAX_EXCEPTIONS ||
          rules_parse_date(sp->exceptions[k], &s->exceptions[s->n_exceptions]) != 0) {
        snprintf(err, errlen, "exception date '%s' is not YYYY-MM-DD (or 'none')",
                 sp->exceptions[k]);
        return NIRC_EINVAL;
      }
      s->n_exceptions++;
    }
  }
  if (sp->wave_size) s->wave_size = sp->wave_size;
  return 0;
}

/* The fields that differ, said for the operator in c->changed and as
 * before/after objects for the audit entry (both own their values). */
static void engine_schedule_diff(const schedule_t *a, const schedule_t *b, engine_change_t *c,
                                 json_t *before, json_t *after) {
  char x[1200], y[1200];
#define ENGINE_DIFF(key, ja, jb)                                                                   \
  do {                                                                                             \
    if (c->n_changed < ENGINE_CHANGE_FIELDS)                                                       \
      snprintf(c->changed[c->n_changed++], sizeof c->changed[0], "%s %s -> %s", key,               \
               x[0] ? x : "(none)", y[0] ? y : "(none)");                                          \
    json_object_set_new(before, key, ja);                                                          \
    json_object_set_new(after, key, jb);                                                           \
  } while (0)
  if (!rules_lists_equal(&a->sources, &b->sources)) {
    engine_list_text(&a->sources, x, sizeof x);
    engine_list_text(&b->sources, y, sizeof y);
    ENGINE_DIFF("sources", engine_slugs_json(&a->sources), engine_slugs_json(&b->sources));
  }
  if (!rules_lists_equal(&a->hubs, &b->hubs)) {
    engine_list_text(&a->hubs, x, sizeof x);
    engine_list_text(&b->hubs, y, sizeof y);
    ENGINE_DIFF("hubs", engine_slugs_json(&a->hubs), engine_slugs_json(&b->hubs));
  }
  if (a->start_min != b->start_min) {
    snprintf(x, sizeof x, "%02d:%02d", a->start_min / 60, a->start_min % 60);
    snprintf(y, sizeof y, "%02d:%02d", b->start_min / 60, b->start_min % 60);
    ENGINE_DIFF("start", json_string(x), json_string(y));
  }
  if (a->end_min != b->end_min) {
    snprintf(x, sizeof x, "%02d:%02d", a->end_min / 60, a->end_min % 60);
    snprintf(y, sizeof y, "%02d:%02d", b->end_min / 60, b->end_min % 60);
    ENGINE_DIFF("end", json_string(x), json_string(y));
  }
  if (a->days != b->days) {
    engine_days_text(a->days, x, sizeof x);
    engine_days_text(b->days, y, sizeof y);
    ENGINE_DIFF("days", json_string(x), json_string(y));
  }
  if (strcmp(a->tz, b->tz) != 0) {
    snprintf(x, sizeof x, "%s", a->tz);
    snprintf(y, sizeof y, "%s", b->tz);
    ENGINE_DIFF("tz", json_string(x), json_string(y));
  }
  bool same_ex = a->n_exceptions == b->n_exceptions;
  for (unsigned k = 0; same_ex && k < a->n_exceptions; k++)
    same_ex = a->exceptions[k] == b->exceptions[k];
  if (!same_ex) {
    json_t *ja = engine_exceptions_json(a), *jb = engine_exceptions_json(b);
    char *ta = json_dumps(ja, JSON_COMPACT), *tb = json_dumps(jb, JSON_COMPACT);
    snprintf(x, sizeof x, "%s", ta && strcmp(ta, "[]") ? ta : "");
    snprintf(y, sizeof y, "%s", tb && strcmp(tb, "[]") ? tb : "");
    free(ta);
    free(tb);
    ENGINE_DIFF("exceptions", ja, jb);
  }
  if (a->wave_size != b->wave_size) {
    snprintf(x, sizeof x, "%u", a->wave_size);
    snprintf(y, sizeof y, "%u", b->wave_size);
    ENGINE_DIFF("wave_size", json_integer(a->wave_size), json_integer(b->wave_size));
  }
#undef ENGINE_DIFF
}

/* The sources of lists a and b whose route in `trial` differs from the
 * one they were last sent: each a move in c; those away by the same
 * shares before and after are kept (a later end only sends them their new
 * revert_at). A move onto a hub waits for its rule's wave. */
static void engine_change_compare(engine_t *e, const plan_t *trial, const slug_list_t *a,
                                  const slug_list_t *b, engine_change_t *c) {
  for (size_t i = 0; i < engine_nsites(e) && i < trial->n_routes; i++) {
    const char *slug = engine_site(e, i)->slug;
    if (!rules_list_has(a, slug) && !rules_list_has(b, slug)) continue;
    const route_t *cur = &e->dirs[i].target;
    route_t want;
    engine_route_from_plan(&trial->routes[i], &want);
    if (route_shares_same(&want, cur)) {
      c->kept += engine_is_away(cur, slug);
      continue;
    }
    if (c->n_moves == sizeof c->moves / sizeof c->moves[0]) continue;
    engine_change_move_t *m = &c->moves[c->n_moves++];
    nirc_strlcpy(m->site, slug, sizeof m->site);
    route_format(cur, slug, m->from, sizeof m->from);
    route_format(&want, slug, m->to, sizeof m->to);
    if (!m->from[0]) snprintf(m->from, sizeof m->from, "home");
    if (!m->to[0]) snprintf(m->to, sizeof m->to, "home");
    /* Its target is not what it routes by while its agent has not
     * confirmed a route here (engine_route_seen): say so, as status does.
     * Not heard: what this controller holds is only the default. */
    engine_route_seen_t seen = engine_route_seen(e, i);
    if (seen == ENGINE_ROUTE_UNHEARD) {
      snprintf(m->from, sizeof m->from, "not known (not heard)");
    } else if (seen != ENGINE_ROUTE_KNOWN) {
      size_t n = strlen(m->from);
      snprintf(m->from + n, sizeof m->from - n, " (not confirmed: its route is not known)");
    }
  }
}

/* What the changed schedule does to the routes now: the engine plans with
 * `changed` in the place of its old self (as the next tick will) and
 * compares the old and new sources' routes (engine_change_compare).
 * 0 or NIRC_ENOMEM. */
static int engine_change_moves(engine_t *e, schedule_t *old, const schedule_t *changed,
                               engine_change_t *c) {
  schedule_t keep = *old;
  *old = *changed;
  plan_t trial;
  int rc = engine_trial_plan(e, NULL, NULL, &trial);
  *old = keep;
  if (rc != 0) return rc;
  engine_change_compare(e, &trial, &keep.sources, &changed->sources, c);
  planner_free(&trial);
  return 0;
}

static json_t *engine_change_moves_json(const engine_change_t *c) {
  json_t *a = json_array();
  for (unsigned k = 0; k < c->n_moves; k++)
    json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "site", c->moves[k].site, "from",
                                       c->moves[k].from, "to", c->moves[k].to));
  return a;
}

/* A SET (kind: DEFER_SCHEDULES or DEFER_OVERFLOWS) after its checks: a
 * dry run is answered with the change; otherwise rec is stored in a new
 * group. false: answered (c, before and after freed); true: the caller
 * applies the change and calls engine_change_finish. */
static bool engine_change_begin(engine_t *e, const engine_req_t *rq, defer_kind_t kind,
                                const char *target, engine_rec_t *rec, engine_change_t *c,
                                json_t *before, json_t *after) {
  const char *op = kind == DEFER_SCHEDULES ? "schedule" : "overflow";
  bool go = false;
  if (c->dry_run) {
    if (kind == DEFER_SCHEDULES)
      engine_reply_schedules(e, rq->client, rq->request_id, NULL, c);
    else
      engine_reply_overflows(e, rq->client, rq->request_id, NULL, c);
  } else if (engine_can_record(e, rq, op, target)) {
    engine_group_begin(e); /* NULL: the records are not followed */
    go = engine_store(e, rec) == 0;
    if (!go) engine_refuse_unrecorded(e, rq, op, target, "the change");
  }
  if (!go) {
    free(c);
    json_decref(before);
    json_decref(after);
  }
  return go;
}

/* The audit entry (schedule-change, overflow-change) and the reply once
 * durable, which owns c from here; ends the group. */
static void engine_change_finish(engine_t *e, const engine_req_t *rq, defer_kind_t kind,
                                 const char *name, uint64_t id, engine_change_t *c, json_t *before,
                                 json_t *after) {
  const char *op = kind == DEFER_SCHEDULES ? "schedule" : "overflow";
  char action[32], what[96];
  snprintf(action, sizeof action, "%s-change", op);
  snprintf(what, sizeof what, "%s '%s' changed",
           kind == DEFER_SCHEDULES ? "schedule" : "overflow rule", name);
  e->eval_dirty = true; /* the moves: planned on the next tick */
  json_t *detail =
      json_pack("{s:I, s:o, s:o, s:o, s:I}", "id", (json_int_t)id, "before", before, "after", after,
                "moves", engine_change_moves_json(c), "kept", (json_int_t)c->kept);
  if (detail && c->has_check)
    json_object_set_new(detail, "check", engine_schedule_check_json(&c->check));
  engine_audit(e, rq->operator_name, action, name, detail);
  engine_defer(e, rq, kind, what);
  engine_defer_attach(e, rq, c);
  engine_group_end(e);
}

/* nircctl schedule set NAME ...: the schedule changed in place, checked
 * like an add (validation, conflicts, cycles), recorded (one row updated)
 * before it takes effect, and audited as schedule-change with before and
 * after. It keeps its id, so the next tick moves only the sources whose
 * route changes: a later end sends the same route with the new revert_at,
 * a new hub moves sources from the old hub to the new one directly, a
 * source dropped goes home, one added moves (engine_evaluate). A rm and
 * an add would send every source home and back. */
static void engine_op_schedule_set(engine_t *e, const engine_req_t *rq,
                                   const Nirc__ScheduleRequest *req, const char *target) {
  char err[512], why[256];
  schedule_t *old = engine_find_schedule(e, req->name, req->id);
  if (!old) {
    engine_refuse(e, rq, "schedule", target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "no schedule '%s' (see nircctl schedule list)", req->name ? req->name : "");
    return;
  }
  rules_env_t env = {engine_site_exists, e, engine_site_at};
  schedule_t s;
  if (engine_schedule_merge(old, req->spec, &s, err, sizeof err) != 0 ||
      rules_validate_schedule(&s, &env, err, sizeof err) != 0) {
    engine_refuse(e, rq, "schedule", target, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", err);
    return;
  }
  engine_change_t *c = calloc(1, sizeof *c);
  json_t *before = json_object(), *after = json_object();
  if (!c || !before || !after) {
    free(c);
    json_decref(before);
    json_decref(after);
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL,
                       "out of memory");
    return;
  }
  nirc_strlcpy(c->name, s.name, sizeof c->name);
  c->dry_run = req->dry_run;
  engine_schedule_diff(old, &s, c, before, after);
  const char *refusal = NULL;
  if (c->n_changed == 0)
    refusal = "nothing to change: give --sources, --to, --start, --end, --days, --tz, "
              "--except or --wave-size with a new value";
  for (size_t k = 0; !refusal && k < e->n_sch; k++) {
    if (rules_schedules_conflict(&s, &e->sch[k], why, sizeof why)) { /* skips itself (id) */
      snprintf(err, sizeof err, "conflicts with schedule '%s': %s", e->sch[k].name, why);
      refusal = err;
    }
  }
  if (refusal) {
    free(c);
    json_decref(before);
    json_decref(after);
    engine_refuse(e, rq, "schedule", target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED, "%s", refusal);
    return;
  }
  /* Its old self is not one of the others: a circle with it would be a
   * circle with a rule that no longer exists. */
  bool was_on = old->enabled;
  old->enabled = false;
  bool cycle = engine_schedule_cycle(e, rq, &s, "", target);
  old->enabled = was_on;
  int moved = cycle ? 0 : engine_change_moves(e, old, &s, c);
  if (cycle || moved != 0 ||
      !engine_schedule_checked(e, rq, &s, old, req->force, "changed", target, c)) {
    if (moved != 0)
      engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL,
                         "out of memory");
    free(c);
    json_decref(before);
    json_decref(after);
    return;
  }
  engine_rec_t rec = {
      .kind = ENGINE_REC_SCHEDULE_CHANGE, .schedule = &s, .actor = rq->operator_name};
  if (!engine_change_begin(e, rq, DEFER_SCHEDULES, target, &rec, c, before, after)) return;
  *old = s;
  engine_change_finish(e, rq, DEFER_SCHEDULES, s.name, s.id, c, before, after);
}

void engine_op_schedule(engine_t *e, const engine_req_t *rq_, const Nirc__ScheduleRequest *req) {
  engine_req_t dry = *rq_; /* a dry run's refusals write nothing (engine_refuse) */
  dry.dry_run = req->dry_run;
  const engine_req_t *rq = &dry;
  e->eval_dirty = true; /* a rule may change: planned on the next tick */
  void *c = rq->client;
  uint64_t rid = rq->request_id;
  char target_[256];
  snprintf(target_, sizeof target_, "%s", req->name ? req->name : "");
  char err[512], why[256];
  const char *who = rq->operator_name;
  rules_env_t env = {engine_site_exists, e, engine_site_at};
  switch (req->op) {
  case NIRC__RULE_OP__RULE_OP_LIST: engine_reply_schedules(e, c, rid, NULL, NULL); return;
  case NIRC__RULE_OP__RULE_OP_SET: engine_op_schedule_set(e, rq, req, target_); return;
  case NIRC__RULE_OP__RULE_OP_ADD: {
    schedule_t s;
    if (engine_schedule_from_spec(req->spec, &s, err, sizeof err) != 0 ||
        rules_validate_schedule(&s, &env, err, sizeof err) != 0) {
      engine_refuse(e, rq, "schedule", target_, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", err);
      return;
    }
    if (engine_find_schedule(e, s.name, 0)) {
      engine_refuse(e, rq, "schedule", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                    "a schedule named '%s' exists; remove it first or pick another name", s.name);
      return;
    }
    for (size_t k = 0; k < e->n_sch; k++) {
      if (rules_schedules_conflict(&s, &e->sch[k], why, sizeof why)) {
        engine_refuse(e, rq, "schedule", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                      "conflicts with schedule '%s': %s", e->sch[k].name, why);
        return;
      }
    }
    if (engine_schedule_cycle(e, rq, &s, "", target_)) return;
    engine_change_t *chk = calloc(1, sizeof *chk);
    if (!chk) {
      engine_reply_error(e, c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
      return;
    }
    chk->add = true;
    chk->dry_run = req->dry_run;
    nirc_strlcpy(chk->name, s.name, sizeof chk->name);
    if (!engine_schedule_checked(e, rq, &s, NULL, req->force, "added", target_, chk)) {
      free(chk);
      return;
    }
    if (chk->dry_run) { /* the list as it is, and the check: nothing added */
      engine_reply_schedules(e, c, rid, NULL, chk);
      free(chk);
      return;
    }
    if (!engine_can_record(e, rq, "schedule", target_)) {
      free(chk);
      return;
    }
    group_t *g = engine_group_begin(e);
    s.id = e->next_rule_id++;
    if (!g || engine_add_schedule(e, &s) != 0) {
      free(chk);
      engine_group_end(e);
      engine_group_release(e, g);
      engine_reply_error(e, c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
      return;
    }
    if (engine_persist_schedule(e, &s, who) != 0) {
      free(chk);
      e->n_sch--; /* not recorded: forget it */
      engine_refuse_unrecorded(e, rq, "schedule", target_, "the schedule");
      return;
    }
    json_t *ex = engine_exceptions_json(&s);
    engine_audit(e, who, "schedule-add", s.name,
                 json_pack("{s:I, s:o, s:o, s:i, s:i, s:i, s:s, s:i, s:o, s:o}", "id",
                           (json_int_t)s.id, "sources", engine_slugs_json(&s.sources), "hubs",
                           engine_slugs_json(&s.hubs), "start_min", s.start_min, "end_min",
                           s.end_min, "days", s.days, "tz", s.tz, "wave_size", (int)s.wave_size,
                           "exceptions", ex, "check", engine_schedule_check_json(&chk->check)));
    char what[96];
    snprintf(what, sizeof what, "schedule '%s' added", s.name);
    engine_defer(e, rq, DEFER_SCHEDULES, what);
    engine_defer_attach(e, rq, chk);
    engine_group_end(e);
    return;
  }
  case NIRC__RULE_OP__RULE_OP_REMOVE:
  case NIRC__RULE_OP__RULE_OP_ENABLE:
  case NIRC__RULE_OP__RULE_OP_DISABLE: {
    schedule_t *s = engine_find_schedule(e, req->name, req->id);
    if (!s) {
      engine_refuse(e, rq, "schedule", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                    "no schedule '%s' (see nircctl schedule list)", req->name ? req->name : "");
      return;
    }
    const char *action;
    char what[96];
    engine_change_t *chk = NULL; /* enable's capacity check, for its reply */
    if (req->op == NIRC__RULE_OP__RULE_OP_REMOVE) {
      if (!engine_can_record(e, rq, "schedule", target_)) return;
      engine_group_begin(e); /* NULL: the records are not followed */
      action = "schedule-rm";
      engine_rec_t rec = {.kind = ENGINE_REC_SCHEDULE_REMOVE, .id = s->id, .target = s->name};
      if (engine_store(e, &rec) != 0) {
        engine_refuse_unrecorded(e, rq, "schedule", target_, "the removal");
        return;
      }
      engine_audit(e, who, action, s->name, json_pack("{s:I}", "id", (json_int_t)s->id));
      snprintf(what, sizeof what, "schedule '%s' removed", s->name);
      *s = e->sch[--e->n_sch]; /* order does not matter */
    } else {
      bool on = req->op == NIRC__RULE_OP__RULE_OP_ENABLE;
      if (on) {
        schedule_t trial = *s;
        trial.enabled = true;
        for (size_t k = 0; k < e->n_sch; k++) {
          if (&e->sch[k] == s) continue;
          if (rules_schedules_conflict(&trial, &e->sch[k], why, sizeof why)) {
            engine_refuse(e, rq, "schedule", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                          "cannot enable: conflicts with schedule '%s': %s", e->sch[k].name, why);
            return;
          }
        }
        if (engine_schedule_cycle(e, rq, &trial, "cannot enable: ", target_)) return;
        /* Enabling moves its sources as an add would (22 of them, for
         * the night schedule inside its window): the same check, refused
         * unless --force. An enabled one moves nothing new: no check. */
        if (!s->enabled) {
          if (!(chk = calloc(1, sizeof *chk))) {
            engine_reply_error(e, c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
            return;
          }
          chk->add = true; /* the reply has the check, not a change */
          nirc_strlcpy(chk->name, s->name, sizeof chk->name);
          if (!engine_schedule_checked(e, rq, &trial, NULL, req->force, "enabled", target_, chk)) {
            free(chk);
            return;
          }
        }
      }
      if (!engine_can_record(e, rq, "schedule", target_)) {
        free(chk);
        return;
      }
      engine_group_begin(e); /* NULL: the records are not followed */
      action = on ? "schedule-enable" : "schedule-disable";
      engine_rec_t rec = {
          .kind = ENGINE_REC_SCHEDULE_ENABLE, .id = s->id, .enabled = on, .target = s->name};
      if (engine_store(e, &rec) != 0) {
        free(chk);
        engine_refuse_unrecorded(e, rq, "schedule", target_, "the change");
        return;
      }
      s->enabled = on;
      json_t *detail = json_pack("{s:I}", "id", (json_int_t)s->id);
      if (chk) json_object_set_new(detail, "check", engine_schedule_check_json(&chk->check));
      engine_audit(e, who, action, s->name, detail);
      snprintf(what, sizeof what, "schedule '%s' %s", s->name, on ? "enabled" : "disabled");
    }
    engine_defer(e, rq, DEFER_SCHEDULES, what);
    if (chk) engine_defer_attach(e, rq, chk);
    engine_group_end(e);
    return;
  }
  default:
    engine_refuse(e, rq, "schedule", target_, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                  "unknown schedule operation");
  }
}

static Nirc__OverflowSpec *engine_overflow_spec(engine_t *e, engine_arena_t *a, size_t k) {
  const overflow_rule_t *o = &e->ovf[k];
  Nirc__OverflowSpec *sp = engine_arena_alloc(a, sizeof *sp);
  if (!sp) return NULL;
  nirc__overflow_spec__init(sp);
  sp->id = o->id;
  sp->name = engine_arena_str(a, o->name);
  sp->source = engine_arena_str(a, o->source);
  sp->hubs = engine_arena_alloc(a, (o->hubs.n + 1) * sizeof(char *));
  if (!sp->hubs) return NULL;
  for (unsigned h = 0; h < o->hubs.n; h++)
    sp->hubs[sp->n_hubs++] = engine_arena_str(a, o->hubs.v[h]);
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
  sp->triggered = e->ovf_state[k].engaged;
  /* Engaged means it moves calls: the share its source acknowledged
   * sending away by this rule (0 when no hub took them, or they were
   * withdrawn for capacity). */
  long i = engine_index(e, o->source);
  const site_dir_t *d = i >= 0 ? &e->dirs[i] : NULL;
  /* Its source's route not known here (not heard, or unknown at its PBX):
   * what it moves is not known either, not 0. */
  sp->route_not_known = d && engine_route_seen(e, (size_t)i) != ENGINE_ROUTE_KNOWN;
  if (d && !sp->route_not_known && d->kind == RULE_OVERFLOW && d->rule_id == o->id)
    sp->moved_permille = 1000 - route_share_of(&d->acked, o->source);
  sp->engaged = sp->moved_permille > 0;
  return sp;
}

static void engine_reply_overflows(engine_t *e, void *c, uint64_t rid, const char *warning,
                                   const engine_change_t *change) {
  engine_arena_t a = {0};
  Nirc__OverflowReply *orp = engine_arena_alloc(&a, sizeof *orp);
  if (orp) {
    nirc__overflow_reply__init(orp);
    orp->rules = engine_arena_alloc(&a, (e->n_ovf + 1) * sizeof *orp->rules);
    if (change && !change->add) orp->change = engine_change_reply(&a, change);
    if (change && change->has_rule && !(orp->check = engine_overflow_check(e, &a, &change->rule)))
      a.failed = true;
  }
  for (size_t k = 0; orp && orp->rules && k < e->n_ovf; k++) {
    Nirc__OverflowSpec *sp = engine_overflow_spec(e, &a, k);
    if (sp) orp->rules[orp->n_rules++] = sp;
  }
  if (orp && change && !change->add && !orp->change) a.failed = true;
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_OVERFLOW;
  rep.overflow = orp;
  engine_send_built_reply(e, c, rid, &a, orp && orp->rules, &rep, warning);
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

/* ---- nircctl overflow set ---- */

/* The rule `old` with what the spec of a SET gives: 0 and an empty hub
 * list keep the field (a threshold cannot be turned off here: rm and add
 * for that). The source is the rule's: its engaged state is that
 * source's load. */
static int engine_overflow_merge(const overflow_rule_t *old, const Nirc__OverflowSpec *sp,
                                 overflow_rule_t *o, char *err, size_t errlen) {
  *o = *old;
  if (!sp) {
    snprintf(err, errlen, "no change given");
    return NIRC_EINVAL;
  }
  if (sp->source && *sp->source && strcmp(sp->source, old->source) != 0) {
    snprintf(err, errlen,
             "an overflow rule keeps its source (%s): to spill %s, add a rule for it and remove "
             "this one",
             old->source, sp->source);
    return NIRC_EINVAL;
  }
  if (sp->n_hubs && engine_copy_slugs(&o->hubs, sp->hubs, sp->n_hubs, "hubs", err, errlen))
    return NIRC_EINVAL;
#define ENGINE_KEEP(f)                                                                             \
  if (sp->f) o->f = sp->f
  ENGINE_KEEP(trigger_wait_s);
  ENGINE_KEEP(release_wait_s);
  ENGINE_KEEP(trigger_queue);
  ENGINE_KEEP(release_queue);
  ENGINE_KEEP(trigger_sl);
  ENGINE_KEEP(release_sl);
  ENGINE_KEEP(share_cap_permille);
  ENGINE_KEEP(min_hold_s);
  ENGINE_KEEP(margin_s);
#undef ENGINE_KEEP
  return 0;
}

/* The overflow fields that differ, as engine_schedule_diff says them. */
static void engine_overflow_diff(const overflow_rule_t *a, const overflow_rule_t *b,
                                 engine_change_t *c, json_t *before, json_t *after) {
  char x[1200], y[1200];
  if (!rules_lists_equal(&a->hubs, &b->hubs)) {
    engine_list_text(&a->hubs, x, sizeof x);
    engine_list_text(&b->hubs, y, sizeof y);
    if (c->n_changed < ENGINE_CHANGE_FIELDS)
      snprintf(c->changed[c->n_changed++], sizeof c->changed[0], "hubs %s -> %s", x, y);
    json_object_set_new(before, "hubs", engine_slugs_json(&a->hubs));
    json_object_set_new(after, "hubs", engine_slugs_json(&b->hubs));
  }
  const struct {
    const char *key;
    double was, is;
    bool frac;
  } f[] = {
      {"trigger_wait_s", a->trigger_wait_s, b->trigger_wait_s, false},
      {"release_wait_s", a->release_wait_s, b->release_wait_s, false},
      {"trigger_queue", a->trigger_queue, b->trigger_queue, false},
      {"release_queue", a->release_queue, b->release_queue, false},
      {"trigger_sl", a->trigger_sl, b->trigger_sl, true},
      {"release_sl", a->release_sl, b->release_sl, true},
      {"share_cap_permille", a->share_cap_permille, b->share_cap_permille, false},
      {"min_hold_s", a->min_hold_s, b->min_hold_s, false},
      {"margin_s", a->margin_s, b->margin_s, false},
  };
  for (size_t k = 0; k < sizeof f / sizeof f[0]; k++) {
    if (f[k].was == f[k].is) continue;
    if (c->n_changed < ENGINE_CHANGE_FIELDS)
      snprintf(c->changed[c->n_changed++], sizeof c->changed[0],
               f[k].frac ? "%s %.2f -> %.2f" : "%s %.0f -> %.0f", f[k].key, f[k].was, f[k].is);
    json_object_set_new(before, f[k].key,
                        f[k].frac ? json_real(f[k].was) : json_integer((json_int_t)f[k].was));
    json_object_set_new(after, f[k].key,
                        f[k].frac ? json_real(f[k].is) : json_integer((json_int_t)f[k].is));
  }
}

/* nircctl overflow set NAME ...: the rule changed in place, validated like
 * an add, recorded (one row updated), audited as overflow-change. It keeps
 * its id and its engaged state: an engaged rule goes on spilling, to its
 * new hubs directly and within its new cap (the planner clamps the share),
 * and releases by its new thresholds after its hold. */
static void engine_op_overflow_set(engine_t *e, const engine_req_t *rq,
                                   const Nirc__OverflowRequest *req, const char *target) {
  char err[512], why[256];
  size_t k = 0;
  while (k < e->n_ovf && !((req->id && e->ovf[k].id == req->id) ||
                           (req->name && *req->name && strcmp(e->ovf[k].name, req->name) == 0)))
    k++;
  if (k == e->n_ovf) {
    engine_refuse(e, rq, "overflow", target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "no overflow rule '%s' (see nircctl overflow list)", req->name ? req->name : "");
    return;
  }
  overflow_rule_t *old = &e->ovf[k], o;
  rules_env_t env = {engine_site_exists, e, engine_site_at};
  if (engine_overflow_merge(old, req->spec, &o, err, sizeof err) != 0 ||
      rules_validate_overflow(&o, &env, err, sizeof err) != 0) {
    engine_refuse(e, rq, "overflow", target, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", err);
    return;
  }
  engine_change_t *c = calloc(1, sizeof *c);
  json_t *before = json_object(), *after = json_object();
  const char *refusal = NULL;
  if (c) {
    nirc_strlcpy(c->name, o.name, sizeof c->name);
    c->dry_run = req->dry_run;
    engine_overflow_diff(old, &o, c, before, after);
    if (c->n_changed == 0)
      refusal = "nothing to change: give --to, a threshold, --cap, --hold or --margin with a new "
                "value";
  }
  for (size_t j = 0; c && !refusal && j < e->n_ovf; j++) {
    if (rules_overflows_conflict(&o, &e->ovf[j], why, sizeof why)) { /* skips itself (id) */
      snprintf(err, sizeof err, "conflicts with overflow rule '%s': %s", e->ovf[j].name, why);
      refusal = err;
    }
  }
  plan_t trial;
  int trc = NIRC_ENOMEM;
  if (c && before && after && !refusal) {
    overflow_rule_t keep = *old;
    *old = o;
    trc = engine_trial_plan(e, NULL, NULL, &trial);
    *old = keep;
  }
  if (refusal || trc != 0) {
    free(c);
    json_decref(before);
    json_decref(after);
    if (refusal)
      engine_refuse(e, rq, "overflow", target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED, "%s", refusal);
    else
      engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL,
                         "out of memory");
    return;
  }
  slug_list_t src = {.n = 1};
  nirc_strlcpy(src.v[0], o.source, sizeof src.v[0]);
  engine_change_compare(e, &trial, &src, &src, c);
  planner_free(&trial);
  c->has_rule = true;
  c->rule = o;
  engine_rec_t rec = {
      .kind = ENGINE_REC_OVERFLOW_CHANGE, .overflow = &o, .actor = rq->operator_name};
  if (!engine_change_begin(e, rq, DEFER_OVERFLOWS, target, &rec, c, before, after)) return;
  *old = o; /* e->ovf_state[k] stays: engaged, since and share */
  engine_change_finish(e, rq, DEFER_OVERFLOWS, o.name, o.id, c, before, after);
}

void engine_op_overflow(engine_t *e, const engine_req_t *rq_, const Nirc__OverflowRequest *req) {
  engine_req_t dry = *rq_; /* a dry run's refusals write nothing (engine_refuse) */
  dry.dry_run = req->dry_run;
  const engine_req_t *rq = &dry;
  e->eval_dirty = true; /* a rule may change: planned on the next tick */
  void *c = rq->client;
  uint64_t rid = rq->request_id;
  char target_[256];
  snprintf(target_, sizeof target_, "%s", req->name ? req->name : "");
  char err[512], why[256];
  const char *who = rq->operator_name;
  rules_env_t env = {engine_site_exists, e, engine_site_at};
  if (req->op == NIRC__RULE_OP__RULE_OP_LIST) {
    engine_reply_overflows(e, c, rid, NULL, NULL);
    return;
  }
  if (req->op == NIRC__RULE_OP__RULE_OP_SET) {
    engine_op_overflow_set(e, rq, req, target_);
    return;
  }
  if (req->op == NIRC__RULE_OP__RULE_OP_ADD) {
    overflow_rule_t o;
    if (engine_overflow_from_spec(req->spec, &o, err, sizeof err) != 0) {
      engine_refuse(e, rq, "overflow", target_, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", err);
      return;
    }
    if (rules_validate_overflow(&o, &env, err, sizeof err) != 0) {
      engine_refuse(e, rq, "overflow", target_, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", err);
      return;
    }
    for (size_t k = 0; k < e->n_ovf; k++) {
      if (strcmp(e->ovf[k].name, o.name) == 0 ||
          rules_overflows_conflict(&o, &e->ovf[k], why, sizeof why)) {
        engine_refuse(e, rq, "overflow", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                      "conflicts with overflow rule '%s': %s", e->ovf[k].name,
                      strcmp(e->ovf[k].name, o.name) == 0 ? "same name" : why);
        return;
      }
    }
    if (!engine_can_record(e, rq, "overflow", target_)) return;
    group_t *g = engine_group_begin(e);
    o.id = e->next_rule_id++;
    if (!g || engine_add_overflow(e, &o) != 0) {
      engine_group_end(e);
      engine_group_release(e, g);
      engine_reply_error(e, c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
      return;
    }
    engine_rec_t rec = {.kind = ENGINE_REC_OVERFLOW_NEW, .overflow = &o, .actor = who};
    if (engine_store(e, &rec) != 0) {
      e->n_ovf--; /* not recorded: forget it */
      engine_refuse_unrecorded(e, rq, "overflow", target_, "the overflow rule");
      return;
    }
    engine_audit(e, who, "overflow-add", o.name,
                 json_pack("{s:I, s:s, s:o, s:I}", "id", (json_int_t)o.id, "source", o.source,
                           "hubs", engine_slugs_json(&o.hubs), "share_cap_permille",
                           (json_int_t)o.share_cap_permille));
    char what[96];
    snprintf(what, sizeof what, "overflow rule '%s' added", o.name);
    engine_defer(e, rq, DEFER_OVERFLOWS, what);
    engine_change_t *chk = calloc(1, sizeof *chk); /* the reply says where it would spill */
    if (chk) {
      chk->add = chk->has_rule = true;
      chk->rule = o;
      engine_defer_attach(e, rq, chk);
    }
    engine_group_end(e);
    return;
  }
  if (req->op == NIRC__RULE_OP__RULE_OP_REMOVE) {
    for (size_t k = 0; k < e->n_ovf; k++) {
      if ((req->id && e->ovf[k].id == req->id) ||
          (req->name && *req->name && strcmp(e->ovf[k].name, req->name) == 0)) {
        if (!engine_can_record(e, rq, "overflow", target_)) return;
        engine_group_begin(e); /* NULL: the records are not followed */
        engine_rec_t rec = {
            .kind = ENGINE_REC_OVERFLOW_REMOVE, .id = e->ovf[k].id, .target = e->ovf[k].name};
        if (engine_store(e, &rec) != 0) {
          engine_refuse_unrecorded(e, rq, "overflow", target_, "the removal");
          return;
        }
        engine_audit(e, who, "overflow-rm", e->ovf[k].name,
                     json_pack("{s:I}", "id", (json_int_t)e->ovf[k].id));
        char what[96];
        snprintf(what, sizeof what, "overflow rule '%s' removed", e->ovf[k].name);
        e->ovf[k] = e->ovf[e->n_ovf - 1];
        e->ovf_state[k] = e->ovf_state[e->n_ovf - 1];
        e->n_ovf--;
        engine_defer(e, rq, DEFER_OVERFLOWS, what);
        engine_group_end(e);
        return;
      }
    }
    engine_refuse(e, rq, "overflow", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "no overflow rule '%s' (see nircctl overflow list)", req->name ? req->name : "");
    return;
  }
  engine_refuse(e, rq, "overflow", target_, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                "overflow rules support list, add, set and rm");
}
