/* engine_ops: the operator's requests to the routing engine — cutover,
 * restore, plan (dry runs), schedule and overflow rules — and the replies
 * to them, including the requests that wait for their moves to be
 * acknowledged (waiters). Part of the engine module (engine-int.h); like
 * the rest of the engine it does no I/O: replies leave through
 * engine_io_t. */
#include "engine-int.h"

#include "err.h"
#include "log.h"
#include "safetext.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a small arena for building protobuf replies ---- */

void *engine_arena_alloc(engine_arena_t *a, size_t n) {
  engine_arena_blk_t *b = calloc(1, sizeof *b + (n ? n : 1));
  if (!b) {
    a->failed = 1;
    return NULL;
  }
  b->next = a->head;
  a->head = b;
  return b->data;
}

char *engine_arena_str(engine_arena_t *a, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = engine_arena_alloc(a, n);
  if (p) memcpy(p, s, n);
  return p ? p : "";
}

void engine_arena_free(engine_arena_t *a) {
  while (a->head) {
    engine_arena_blk_t *n = a->head->next;
    free(a->head);
    a->head = n;
  }
}

/* ---- operator replies ---- */

void engine_send_reply(engine_t *e, void *client, Nirc__OperatorReply *rep) {
  if (client) e->io.send_reply(e->io.ctx, client, rep);
}

void engine_reply_error(engine_t *e, void *c, uint64_t request_id, Nirc__ErrorCode code,
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
  engine_send_reply(e, c, &rep);
}

void engine_join(char **v, size_t n, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && used + 1 < len; i++) {
    int k = snprintf(buf + used, len - used, "%s%s", i ? "," : "", v[i] ? v[i] : "");
    if (k < 0) break;
    used += (size_t)k;
  }
}

void engine_journal_only(const engine_t *e, char *buf, size_t len) {
  /* "this controller" read through a standby would name the standby. */
  char whose[128];
  if (e->opts.node[0])
    snprintf(whose, sizeof whose, "the outage journal of controller %s, the leader that took it",
             e->opts.node);
  else
    snprintf(whose, sizeof whose, "the leader's outage journal");
  snprintf(buf, len,
           "recorded only in %s, as the database is unreachable: it is written there when the "
           "database is back. Until then a standby that takes over does not know this change "
           "and routes without it (the change is then recorded as superseded, not applied): "
           "check `nircctl history` after a failover",
           whose);
}

/* Refuses an operator request: the reason goes to the operator, the log
 * and the audit trail (every operator action is audited, refusals too;
 * a dry run is not an action and writes nothing). */
static void engine_refuse_v(engine_t *e, const engine_req_t *rq, const char *op, const char *target,
                            Nirc__ErrorCode code, Nirc__OperatorReply *rep, const char *fmt,
                            va_list ap) __attribute__((format(printf, 7, 0)));

static void engine_refuse_v(engine_t *e, const engine_req_t *rq, const char *op, const char *target,
                            Nirc__ErrorCode code, Nirc__OperatorReply *rep, const char *fmt,
                            va_list ap) {
  char raw[512], msg[512], tgt[256];
  vsnprintf(raw, sizeof raw, fmt, ap);
  /* A refusal may quote what it refuses (a name, a stored reason): shown
   * escaped to the operator and in the audit trail. */
  safetext_escape(raw, msg, sizeof msg);
  safetext_escape(target && *target ? target : op, tgt, sizeof tgt);
  if (!rq->dry_run && (code == NIRC__ERROR_CODE__ERROR_CODE_REFUSED ||
                       code == NIRC__ERROR_CODE__ERROR_CODE_INVALID)) {
    char action[48];
    snprintf(action, sizeof action, "%s-refused", op);
    log_warn(LOG_OPS, rq->label, "%s refused: %s", op, msg);
    engine_audit(e, rq->operator_name, action, tgt, json_pack("{s:s}", "refusal", msg));
  }
  if (!rep) {
    engine_reply_error(e, rq->client, rq->request_id, code, "%s", msg);
    return;
  }
  Nirc__Error err = NIRC__ERROR__INIT;
  err.code = code;
  err.message = msg;
  rep->request_id = rq->request_id;
  rep->ok = 0;
  rep->error = &err;
  engine_send_reply(e, rq->client, rep);
  rep->error = NULL; /* err was this frame's */
}

void engine_refuse(engine_t *e, const engine_req_t *rq, const char *op, const char *target,
                   Nirc__ErrorCode code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  engine_refuse_v(e, rq, op, target, code, NULL, fmt, ap);
  va_end(ap);
}

void engine_refuse_with(engine_t *e, const engine_req_t *rq, const char *op, const char *target,
                        Nirc__ErrorCode code, Nirc__OperatorReply *rep, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  engine_refuse_v(e, rq, op, target, code, rep, fmt, ap);
  va_end(ap);
}

void engine_refuse_unrecorded(engine_t *e, const engine_req_t *rq, const char *op,
                              const char *target, const char *what) {
  group_t *g = e->group;
  char why[300];
  snprintf(why, sizeof why, "%s", g && g->err ? g->why : "out of memory");
  engine_group_end(e);
  engine_group_release(e, g);
  engine_refuse(e, rq, op, target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                "nothing was changed: %s could not be recorded: %s", what, why);
}

void engine_waiters_check(engine_t *e) {
  uint64_t now = engine_mono(e);
  waiter_t **pp = &e->waiters;
  while (*pp) {
    waiter_t *w = *pp;
    bool all = true;
    for (unsigned k = 0; k < w->n; k++) {
      if (w->sites[k].resolved) continue;
      if (now >= w->deadline_mono) {
        /* Not failed: the directive stands and is still being delivered
         * (resent to a connected site, sent to an offline one when its
         * agent says Hello). The operator hears it is pending, and why. */
        w->sites[k].resolved = true;
        w->sites[k].pending = true;
        site_t *s = engine_site(e, w->sites[k].site);
        snprintf(w->sites[k].detail, sizeof w->sites[k].detail,
                 s->conn ? "no acknowledgement in time: still being resent; rolled back home if "
                           "it fails"
                         : "not delivered: the site is offline and routes by its last route; "
                           "its agent gets the directive when it connects (alarm raised)");
      } else {
        all = false;
      }
    }
    if (w->client == NULL) all = true; /* nobody to tell; drop it */
    bool durable = !w->group || engine_group_done(w->group);
    if (!all || (!durable && now < w->deadline_mono)) {
      pp = &w->next;
      continue;
    }
    *pp = w->next;
    if (w->client) {
      engine_arena_t a = {0};
      Nirc__MoveReply *mv = engine_arena_alloc(&a, sizeof *mv);
      Nirc__SiteOutcome **outs = engine_arena_alloc(&a, (w->n + 1) * sizeof *outs);
      if (mv && outs) {
        nirc__move_reply__init(mv);
        mv->cutover_id = w->cutover_id;
        /* Its end as it stands now: an amend while the sites acked wins,
         * and a restore or expiry meanwhile is said, not an end (or
         * "open-ended") it no longer has. */
        for (size_t k = 0; w->cutover_id && k < e->n_cut; k++) {
          if (e->cut[k].id != w->cutover_id) continue;
          if (e->cut[k].state != CUTOVER_RESTORED) mv->expires_ms = e->cut[k].expires_ms;
          if (e->cut[k].state != CUTOVER_ACTIVE)
            mv->cutover_ended = (char *)rules_cutover_state_name(e->cut[k].state);
        }
        for (unsigned k = 0; k < w->n; k++) {
          Nirc__SiteOutcome *o = engine_arena_alloc(&a, sizeof *o);
          if (!o) break;
          nirc__site_outcome__init(o);
          o->site = engine_site(e, w->sites[k].site)->slug;
          o->pending = w->sites[k].pending;
          o->hub = w->sites[k].hub;
          o->result = w->sites[k].applied   ? NIRC__ACK_RESULT__ACK_RESULT_APPLIED
                      : w->sites[k].pending ? NIRC__ACK_RESULT__ACK_RESULT_UNSPECIFIED
                                            : NIRC__ACK_RESULT__ACK_RESULT_FAILED;
          o->detail = engine_arena_str(&a, w->sites[k].detail);
          o->version = w->sites[k].version;
          o->latency_ms = w->sites[k].latency_ms;
          o->unverified = w->sites[k].unverified;
          o->outcome_unknown = w->sites[k].outcome_unknown;
          outs[mv->n_outcomes++] = o;
          if (w->sites[k].applied)
            mv->applied++;
          else if (w->sites[k].pending)
            mv->pending++;
          else
            mv->failed++;
        }
        mv->outcomes = outs;
        mv->elapsed_ms = (int64_t)(now - w->started_mono);
        mv->force_warning = w->forced.warning;
        mv->forced_over = engine_arena_alloc(&a, (w->forced.n + 1) * sizeof *mv->forced_over);
        for (unsigned k = 0; mv->forced_over && k < w->forced.n; k++) {
          Nirc__CapacityPrediction *cp = engine_arena_alloc(&a, sizeof *cp);
          if (!cp) break;
          engine_fill_prediction(&a, e, NULL, &w->forced.hubs[k], cp);
          mv->forced_over[mv->n_forced_over++] = cp;
        }
        Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
        rep.request_id = w->request_id;
        rep.ok = 1;
        Nirc__Error err = NIRC__ERROR__INIT;
        char msg[600];
        if (w->group && (w->group->err || !durable)) {
          /* The move happened, but its record is not durable: a new
           * leader may not know it. Say so; nircctl exits 4. */
          snprintf(msg, sizeof msg,
                   "the change is in force, but NOT recorded durably (a new leader may not route "
                   "this way): %s",
                   w->group->err ? w->group->why : "the record is not yet committed or journaled");
          err.code = NIRC__ERROR_CODE__ERROR_CODE_UNAVAILABLE;
          err.message = msg;
          rep.error = &err;
        } else if (w->group && w->group->journaled) {
          /* Durable on this controller's disk, not yet where a standby
           * reads the rules: "done" holds only if this controller lives
           * until the database is back. nircctl exits 4. */
          char only[480];
          engine_journal_only(e, only, sizeof only);
          snprintf(msg, sizeof msg, "the change is in force, but %s", only);
          err.code = NIRC__ERROR_CODE__ERROR_CODE_UNAVAILABLE;
          err.message = msg;
          rep.error = &err;
        }
        rep.body_case = NIRC__OPERATOR_REPLY__BODY_MOVE;
        rep.move = mv;
        engine_send_reply(e, w->client, &rep);
      }
      engine_arena_free(&a);
    }
    engine_free_waiter(e, w);
  }
}

void engine_on_client_closed(engine_t *e, void *client) {
  for (waiter_t *w = e->waiters; w; w = w->next)
    if (w->client == client) w->client = NULL;
  for (deferred_t *d = e->deferred; d; d = d->next)
    if (d->client == client) d->client = NULL;
}

static waiter_t *engine_new_waiter(engine_t *e, void *c, uint64_t request_id, const size_t *sites,
                                   unsigned n) {
  waiter_t *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->sites = calloc(n ? n : 1, sizeof *w->sites);
  if (!w->sites) {
    free(w);
    return NULL;
  }
  w->client = c;
  w->request_id = request_id;
  w->started_mono = engine_mono(e);
  /* Long enough for every resend, then the operator hears what happened. */
  w->deadline_mono = w->started_mono + (uint64_t)e->opts.ack_timeout_ms * (e->opts.max_resends + 2);
  for (unsigned k = 0; k < n; k++) {
    w->sites[k].site = sites[k];
    w->sites[k].version = e->dirs[sites[k]].target.version;
    w->sites[k].hub = e->dirs[sites[k]].senders_only;
  }
  w->n = n;
  w->next = e->waiters;
  e->waiters = w;
  return w;
}

/* Adds source i to w as an outcome already known: the rule stands but
 * the engine does not move the source now (`why`: its alarm or note).
 * Nothing is sent to it, so no acknowledgement will come; the operator
 * hears it is pending and why, not "nothing to change". */
static void engine_waiter_add_held(waiter_t *w, size_t i, uint64_t version, const char *why) {
  waiter_site_t *v = realloc(w->sites, (w->n + 1) * sizeof *v);
  if (!v) return; /* out of memory: the reply lacks this line; the alarm stands */
  w->sites = v;
  waiter_site_t *x = &w->sites[w->n++];
  memset(x, 0, sizeof *x);
  x->site = i;
  x->version = version;
  x->resolved = x->pending = true;
  snprintf(x->detail, sizeof x->detail,
           "not moved now: %s; the cutover stands and moves it when it can", why);
}

/* ---- operator requests ---- */

int engine_copy_slugs(slug_list_t *l, char **v, size_t n, const char *what, char *err,
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

/* The change is in force: plans, sends what changed, and leaves a waiter
 * that answers the operator once every site acknowledged and the change's
 * records (the current group, which the waiter takes) are durable. Returns
 * the directives sent, as JSON for the audit record (owned), and *w, NULL
 * when memory ran out: then the group is released and the operator told. */
static json_t *engine_move(engine_t *e, const engine_req_t *rq, uint64_t cutover_id,
                           unsigned *n_changed, waiter_t **w) {
  size_t n = engine_nsites(e);
  size_t *changed = calloc(n ? n : 1, sizeof *changed);
  *n_changed = 0;
  if (changed) engine_evaluate(e, changed, n_changed);
  *w = changed ? engine_new_waiter(e, rq->client, rq->request_id, changed, *n_changed) : NULL;
  if (*w) {
    (*w)->cutover_id = cutover_id;
    (*w)->group = e->group;
  } else {
    engine_group_release(e, e->group);
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL,
                       "out of memory");
  }
  json_t *dirs = json_array();
  for (unsigned k = 0; k < *n_changed; k++)
    json_array_append_new(dirs, engine_route_json(e, changed[k]));
  free(changed);
  return dirs;
}

/* A forced move is made: its warning is logged, and kept in the waiter
 * `w` (may be NULL: then released) to be told with the outcome. */
static void engine_keep_forced(const engine_req_t *rq, waiter_t *w, engine_forced_t *f) {
  if (f->n) log_warn(LOG_OPS, rq->label, "%s", f->warning);
  if (w)
    w->forced = *f;
  else
    free(f->hubs);
  memset(f, 0, sizeof *f);
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

/* nircctl cutover --amend ID: new hubs, share or expiry for an active
 * cutover, checked like a new one (validation, an online hub, capacity),
 * recorded before it takes effect, and applied without sending the
 * sources home first (a change of hub is immediate). */
static void engine_op_amend(engine_t *e, const engine_req_t *rq, const Nirc__CutoverRequest *req) {
  char target[32], err[512];
  snprintf(target, sizeof target, "%llu", (unsigned long long)req->amend_id);
  cutover_t *old = NULL;
  for (size_t k = 0; k < e->n_cut; k++)
    if (e->cut[k].id == req->amend_id && e->cut[k].state == CUTOVER_ACTIVE) old = &e->cut[k];
  if (!old) {
    engine_refuse(e, rq, "amend", target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "no active cutover %llu to amend (see nircctl status or history)",
                  (unsigned long long)req->amend_id);
    return;
  }
  if (req->n_sources) {
    engine_refuse(e, rq, "amend", target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "an amendment keeps the cutover's sources; to move others, make a new cutover, "
                  "to send some home, restore them");
    return;
  }
  cutover_t amended = *old;
  if (req->n_hubs &&
      engine_copy_slugs(&amended.hubs, req->hubs, req->n_hubs, "hubs", err, sizeof err) != 0) {
    engine_refuse(e, rq, "amend", target, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", err);
    return;
  }
  int64_t now = engine_now(e);
  if (req->share_permille) amended.share_permille = req->share_permille;
  if (req->expires_in_ms > 0)
    amended.expires_ms =
        now > 0 && req->expires_in_ms > INT64_MAX - now ? INT64_MAX : now + req->expires_in_ms;
  else if (req->expires_ms)
    amended.expires_ms = req->expires_ms;
  amended.force = req->force;
  bool same_hubs = amended.hubs.n == old->hubs.n;
  for (unsigned h = 0; same_hubs && h < amended.hubs.n; h++)
    same_hubs = strcmp(amended.hubs.v[h], old->hubs.v[h]) == 0;
  if (same_hubs && amended.share_permille == old->share_permille &&
      amended.expires_ms == old->expires_ms) {
    engine_refuse(e, rq, "amend", target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "nothing to amend: give --to, --share, --for or --until");
    return;
  }
  rules_env_t env = {engine_site_exists, e, engine_site_at};
  if (rules_validate_cutover(&amended, &env, now, err, sizeof err) != 0) {
    engine_refuse(e, rq, "amend", target, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", err);
    return;
  }
  bool any_online = false;
  for (unsigned h = 0; h < amended.hubs.n; h++) {
    site_t *hs = sites_find(e->sites, amended.hubs.v[h]);
    any_online |= hs && hs->state == SITE_ONLINE;
  }
  if (!any_online) {
    engine_refuse(e, rq, "amend", target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "none of the hubs is online; choose another hub with --to");
    return;
  }
  /* Trial on the amended cutover in place of the old one. */
  cutover_t before = *old;
  *old = amended;
  /* Forced, the trial makes the move the forced amendment makes, and
   * marks the hubs whose check it overrides. */
  old->force = req->force;
  plan_t trial;
  int trc = engine_trial_plan(e, NULL, &amended, &trial);
  *old = before;
  if (trc != 0) {
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL,
                       "out of memory");
    return;
  }
  engine_forced_t forced;
  if (!engine_judge_trial(e, rq, &trial, &amended, req->dry_run, req->force, "amend-refused",
                          &forced))
    return;
  if (!engine_can_record(e, rq, "amend", target)) {
    engine_forced_free(&forced);
    return;
  }
  engine_group_begin(e); /* NULL: the records are not followed */
  engine_rec_t rec = {.kind = ENGINE_REC_CUTOVER_AMEND, .cutover = &amended};
  if (engine_store(e, &rec) != 0) {
    engine_forced_free(&forced);
    engine_refuse_unrecorded(e, rq, "amend", target, "the amendment");
    return;
  }
  *old = amended;
  engine_end_waves(e, RULE_CUTOVER, amended.id);
  unsigned n_changed;
  waiter_t *w;
  json_t *dirs = engine_move(e, rq, amended.id, &n_changed, &w);
  json_t *over = engine_forced_json(&forced);
  engine_keep_forced(rq, w, &forced);
  engine_audit(e, rq->operator_name, "cutover-amend", target,
               json_pack("{s:I, s:{s:o, s:I, s:I}, s:{s:o, s:I, s:I}, s:s, s:b, s:o, s:o}",
                         "cutover_id", (json_int_t)amended.id, "before", "hubs",
                         engine_slugs_json(&before.hubs), "share_permille",
                         (json_int_t)(before.share_permille ? before.share_permille : 1000),
                         "expires_ms", (json_int_t)before.expires_ms, "after", "hubs",
                         engine_slugs_json(&amended.hubs), "share_permille",
                         (json_int_t)(amended.share_permille ? amended.share_permille : 1000),
                         "expires_ms", (json_int_t)amended.expires_ms, "reason",
                         req->reason ? req->reason : "", "force", (int)req->force, "forced_over",
                         over, "directives", dirs));
  if (w)
    engine_progress(e, rq->client, rq->request_id, "cutover %llu amended: %u directive(s) sent",
                    (unsigned long long)amended.id, n_changed);
  engine_group_end(e);
}

void engine_op_cutover(engine_t *e, const engine_req_t *rq_, const Nirc__CutoverRequest *req) {
  engine_req_t dry = *rq_; /* a dry run's refusals write nothing (engine_refuse) */
  dry.dry_run = req->dry_run;
  const engine_req_t *rq = &dry;
  void *c = rq->client;
  uint64_t rid = rq->request_id;
  char target_[256];
  engine_join(req->sources, req->n_sources, target_, sizeof target_);
  if (engine_settling(e)) {
    engine_refuse(e, rq, "cutover", target_, NIRC__ERROR_CODE__ERROR_CODE_UNAVAILABLE,
                  "this controller took over %llu ms ago and is still hearing from the sites; "
                  "nothing was changed: try again in a few seconds",
                  (unsigned long long)(engine_mono(e) - e->settle_from_mono));
    return;
  }
  if (req->amend_id) {
    engine_op_amend(e, rq, req);
    return;
  }
  char err[512];
  cutover_t cut;
  if (engine_cutover_from_request(req, rq->operator_name, engine_now(e), &cut, err, sizeof err) !=
      0) {
    engine_refuse(e, rq, "cutover", target_, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", err);
    return;
  }
  cut.id = e->next_rule_id;
  rules_env_t env = {engine_site_exists, e, engine_site_at};
  if (rules_validate_cutover(&cut, &env, cut.created_ms, err, sizeof err) != 0) {
    engine_refuse(e, rq, "cutover", target_, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", err);
    return;
  }
  /* Equal precedence on the same source would be ambiguous: refuse. */
  for (size_t k = 0; k < e->n_cut; k++) {
    if (e->cut[k].state != CUTOVER_ACTIVE) continue;
    for (unsigned s = 0; s < cut.sources.n; s++) {
      if (rules_list_has(&e->cut[k].sources, cut.sources.v[s])) {
        engine_refuse(e, rq, "cutover", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                      "%s is already cut over (cutover %llu: %s); restore it first",
                      cut.sources.v[s], (unsigned long long)e->cut[k].id, e->cut[k].reason);
        return;
      }
      if (rules_list_has(&e->cut[k].sources, cut.hubs.v[0]) && cut.hubs.n == 1) {
        engine_refuse(e, rq, "cutover", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                      "hub %s is itself cut over (cutover %llu)", cut.hubs.v[0],
                      (unsigned long long)e->cut[k].id);
        return;
      }
    }
  }
  bool any_online = false;
  char offline[256] = "";
  for (unsigned h = 0; h < cut.hubs.n; h++) {
    site_t *hs = sites_find(e->sites, cut.hubs.v[h]);
    if (hs && hs->state == SITE_ONLINE)
      any_online = true;
    else
      snprintf(offline + strlen(offline), sizeof offline - strlen(offline), "%s%s (%s)",
               offline[0] ? ", " : "", cut.hubs.v[h], hs ? sites_state_name(hs->state) : "?");
  }
  if (!any_online) {
    engine_refuse(e, rq, "cutover", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "no hub is online: %s; choose another hub with --to", offline);
    return;
  }
  /* An operator naming an excluded site tries it again: the trial runs
   * without its exclusion, which ends for good only with the real move (a
   * dry run or a refusal changes nothing). */
  uint64_t kept[RULES_MAX_SITES] = {0};
  for (unsigned s = 0; s < cut.sources.n; s++) {
    long i = engine_index(e, cut.sources.v[s]);
    if (i < 0) continue;
    kept[s] = e->dirs[i].excluded_rule;
    e->dirs[i].excluded_rule = 0;
  }

  /* Trial: what would happen, and would the capacity check refuse it?
   * Without --force the trial shows whether the check refuses; with it,
   * the move the forced cutover makes and the hubs whose check it
   * overrides. It has no id yet (a refused one never gets one). */
  plan_t trial;
  cutover_t check = cut;
  check.id = PLAN_DRAFT_ID;
  int trc = engine_trial_plan(e, &check, &check, &trial);
  for (unsigned s = 0; s < cut.sources.n; s++) {
    long i = engine_index(e, cut.sources.v[s]);
    if (i >= 0) e->dirs[i].excluded_rule = kept[s];
    if (kept[s]) e->dirs_excluded = true;
  }
  if (trc != 0) {
    engine_reply_error(e, c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
    return;
  }
  engine_forced_t forced;
  if (!engine_judge_trial(e, rq, &trial, &check, req->dry_run, req->force, "cutover-refused",
                          &forced))
    return;

  /* Real move: only if it can be recorded (committed, or journaled with
   * room to spare), and its rule is stored before anything is sent. */
  if (!engine_can_record(e, rq, "cutover", target_)) {
    engine_forced_free(&forced);
    return;
  }
  group_t *g = engine_group_begin(e);
  if (!g) {
    engine_forced_free(&forced);
    engine_reply_error(e, c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
    return;
  }
  e->next_rule_id++;
  engine_rec_t crec = {.kind = ENGINE_REC_CUTOVER_NEW, .cutover = &cut};
  if (engine_add_cutover(e, &cut) != 0 || engine_store(e, &crec) != 0) {
    /* Not recorded: forget it and route nothing. */
    if (e->n_cut && e->cut[e->n_cut - 1].id == cut.id) e->n_cut--;
    engine_forced_free(&forced);
    engine_refuse_unrecorded(e, rq, "cutover", target_, "the cutover");
    return;
  }
  for (unsigned s = 0; s < cut.sources.n; s++) {
    long i = engine_index(e, cut.sources.v[s]);
    if (i < 0) continue;
    engine_readmit(e, (size_t)i, rq->operator_name, "named in a cutover");
    engine_returns_release(e, (size_t)i, rq->operator_name, "named in a cutover");
  }
  unsigned n_changed;
  waiter_t *w;
  json_t *dirs = engine_move(e, rq, cut.id, &n_changed, &w);
  json_t *over = engine_forced_json(&forced);
  engine_keep_forced(rq, w, &forced);
  char target[1024];
  engine_slugs_text(&cut.sources, target, sizeof target);
  /* forced_over: the predictions --force overrode (empty when none). */
  engine_audit(e, rq->operator_name, "cutover", target,
               json_pack("{s:I, s:o, s:o, s:s, s:b, s:I, s:I, s:o, s:o}", "cutover_id",
                         (json_int_t)cut.id, "sources", engine_slugs_json(&cut.sources), "hubs",
                         engine_slugs_json(&cut.hubs), "reason", cut.reason, "force", cut.force,
                         "expires_ms", (json_int_t)cut.expires_ms, "share_permille",
                         (json_int_t)(cut.share_permille ? cut.share_permille : 1000),
                         "forced_over", over, "directives", dirs));
  /* A source the plan keeps from every hub of the cutover (a hub not yet
   * eligible, its load unknown, a re-entry wait): the cutover is made and
   * will move it, but not now. Said as such, not as done. */
  unsigned held = 0;
  for (unsigned s = 0; w && s < cut.sources.n; s++) {
    long i = engine_index(e, cut.sources.v[s]);
    if (i < 0) continue;
    const site_dir_t *d = &e->dirs[i];
    bool at_hub = false;
    for (unsigned h = 0; h < cut.hubs.n; h++)
      at_hub |= route_share_of(&d->target, cut.hubs.v[h]) > 0;
    if (at_hub) continue;
    const char *why = e->alarm[i][0] ? e->alarm[i] : d->note[0] ? d->note : "the engine keeps it";
    engine_waiter_add_held(w, (size_t)i, d->target.version, why);
    held++;
  }
  if (w && n_changed == 0 && held == 0) {
    engine_progress(e, c, rid, "nothing to change: the sources already route as planned");
  } else if (w) {
    engine_progress(e, c, rid, "cutover %llu: %u directive(s) sent%s", (unsigned long long)cut.id,
                    n_changed, held ? "; some sources are not moved now (below)" : "");
  }
  engine_group_end(e);
}

void engine_end_cutover(engine_t *e, cutover_t *cut, cutover_state_t st, const char *by) {
  cut->state = st;
  engine_rec_t rec = {
      .kind = ENGINE_REC_CUTOVER_END, .id = cut->id, .cutover_state = st, .actor = by};
  engine_store(e, &rec);
}

/* nircctl readmit: sites excluded after a failed move, or held home after
 * their agents' early returns, go back into their rules; no rule ends.
 * Refused (nothing changed) if any named site is unknown or neither. */
static void engine_op_readmit(engine_t *e, const engine_req_t *rq, const Nirc__RestoreRequest *req,
                              const char *target) {
  if (req->n_sources == 0) {
    engine_refuse(e, rq, "readmit", target, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                  "name the sites to readmit");
    return;
  }
  for (size_t s = 0; s < req->n_sources; s++) {
    long i = engine_index(e, req->sources[s]);
    if (i < 0) {
      engine_refuse(e, rq, "readmit", target, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                    "unknown site '%.40s'", req->sources[s]);
      return;
    }
    if (!e->dirs[i].excluded_rule && e->dirs[i].returns.state != ENGINE_RETURNS_HELD) {
      engine_refuse(e, rq, "readmit", target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                    "%s is not excluded after a failed move, nor held home after its agent's "
                    "early returns: nothing to readmit",
                    req->sources[s]);
      return;
    }
  }
  if (!engine_can_record(e, rq, "readmit", target)) return;
  engine_group_begin(e); /* NULL: the records are not followed */
  json_t *sites = json_array(), *rules = json_array();
  for (size_t s = 0; s < req->n_sources; s++) {
    size_t i = (size_t)engine_index(e, req->sources[s]);
    const site_dir_t *d = &e->dirs[i];
    /* Held only: the rule whose move its agent left last. */
    bool ex = d->excluded_rule != 0;
    json_array_append_new(sites, json_string(req->sources[s]));
    json_array_append_new(
        rules,
        json_pack("{s:s, s:I}", "rule", rules_kind_name(ex ? d->excluded_kind : d->returns.kind),
                  "rule_id", (json_int_t)(ex ? d->excluded_rule : d->returns.rule_id)));
    const char *why = req->reason && *req->reason ? req->reason : "readmit";
    engine_readmit(e, i, rq->operator_name, why);
    engine_returns_release(e, i, rq->operator_name, why);
  }
  unsigned n_changed;
  waiter_t *w;
  json_t *dirs = engine_move(e, rq, 0, &n_changed, &w);
  engine_audit(e, rq->operator_name, "readmit", target,
               json_pack("{s:o, s:o, s:s, s:o}", "sites", sites, "excluded_from", rules, "reason",
                         req->reason ? req->reason : "", "directives", dirs));
  if (w) engine_progress(e, rq->client, rq->request_id, "readmit: %u directive(s) sent", n_changed);
  engine_group_end(e);
}

void engine_op_restore(engine_t *e, const engine_req_t *rq, const Nirc__RestoreRequest *req) {
  void *c = rq->client;
  uint64_t rid = rq->request_id;
  char target_[256];
  engine_join(req->sources, req->n_sources, target_, sizeof target_);
  if (engine_settling(e)) {
    engine_refuse(e, rq, "restore", target_, NIRC__ERROR_CODE__ERROR_CODE_UNAVAILABLE,
                  "this controller took over %llu ms ago and is still hearing from the sites; "
                  "nothing was changed: try again in a few seconds",
                  (unsigned long long)(engine_mono(e) - e->settle_from_mono));
    return;
  }
  if (req->readmit) {
    engine_op_readmit(e, rq, req, target_);
    return;
  }
  const char *who = rq->operator_name;
  if (!engine_can_record(e, rq, "restore", target_)) return;
  json_t *ended = json_array();
  if (req->cutover_id) {
    cutover_t *cut = NULL;
    for (size_t k = 0; k < e->n_cut; k++)
      if (e->cut[k].id == req->cutover_id && e->cut[k].state == CUTOVER_ACTIVE) cut = &e->cut[k];
    if (!cut) {
      json_decref(ended);
      engine_refuse(e, rq, "restore", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                    "no active cutover %llu (see nircctl status or history)",
                    (unsigned long long)req->cutover_id);
      return;
    }
    engine_group_begin(e); /* NULL (out of memory): records are not followed */
    engine_end_cutover(e, cut, CUTOVER_RESTORED, who);
    json_array_append_new(ended, json_integer((json_int_t)cut->id));
  } else {
    if (req->n_sources == 0) {
      json_decref(ended);
      engine_refuse(e, rq, "restore", target_, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                    "name the sources to restore or --cutover ID");
      return;
    }
    for (size_t s = 0; s < req->n_sources; s++) {
      bool found = false;
      for (size_t k = 0; k < e->n_cut && !found; k++)
        found = e->cut[k].state == CUTOVER_ACTIVE &&
                rules_list_has(&e->cut[k].sources, req->sources[s]);
      if (!found) {
        long i = engine_index(e, req->sources[s]);
        json_decref(ended);
        if (i < 0)
          engine_refuse(e, rq, "restore", target_, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                        "unknown site '%.40s'", req->sources[s]);
        else if (e->dirs[i].kind == RULE_SCHEDULE || e->dirs[i].kind == RULE_OVERFLOW)
          engine_refuse(e, rq, "restore", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                        "%s is moved by %s (%s), not by a cutover; disable that rule",
                        req->sources[s], rules_kind_name(e->dirs[i].kind),
                        e->dirs[i].target.reason);
        else
          engine_refuse(e, rq, "restore", target_, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                        "%s is not cut over", req->sources[s]);
        return;
      }
    }
    /* Remove each source from its cutover; a cutover left empty ends. */
    engine_group_begin(e);
    for (size_t s = 0; s < req->n_sources; s++) {
      for (size_t k = 0; k < e->n_cut; k++) {
        cutover_t *cut = &e->cut[k];
        if (cut->state != CUTOVER_ACTIVE || !rules_list_has(&cut->sources, req->sources[s]))
          continue;
        slug_list_t keep = {0};
        for (unsigned j = 0; j < cut->sources.n; j++) {
          if (strcmp(cut->sources.v[j], req->sources[s]) == 0) continue;
          nirc_strlcpy(keep.v[keep.n++], cut->sources.v[j], sizeof keep.v[0]);
        }
        cut->sources = keep;
        if (keep.n == 0) {
          engine_end_cutover(e, cut, CUTOVER_RESTORED, who);
          json_array_append_new(ended, json_integer((json_int_t)cut->id));
        } else {
          engine_rec_t rec = {.kind = ENGINE_REC_CUTOVER_SOURCES, .cutover = cut};
          engine_store(e, &rec);
        }
      }
    }
  }
  for (size_t s = 0; s < req->n_sources; s++) {
    long i = engine_index(e, req->sources[s]);
    if (i >= 0) engine_readmit(e, (size_t)i, who, "restored");
  }
  unsigned n_changed;
  waiter_t *w;
  json_t *dirs = engine_move(e, rq, 0, &n_changed, &w);
  json_t *srcs = json_array();
  for (size_t s = 0; s < req->n_sources; s++)
    json_array_append_new(srcs, json_string(req->sources[s]));
  engine_audit(e, who, "restore", req->n_sources ? req->sources[0] : "cutover",
               json_pack("{s:o, s:o, s:s, s:o}", "sources", srcs, "ended_cutovers", ended, "reason",
                         req->reason ? req->reason : "", "directives", dirs));
  if (w) engine_progress(e, c, rid, "restore: %u directive(s) sent", n_changed);
  engine_group_end(e);
}
