#include "store.h"

#include "clock.h"
#include "err.h"
#include "log.h"

#include <jansson.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

/* ---- text forms of values ---- */

/* PostgreSQL text[] literal for a slug list (slugs need no quoting). */
static void store_pg_array(const slug_list_t *l, char *buf, size_t len) {
  size_t used = (size_t)snprintf(buf, len, "{");
  for (unsigned i = 0; i < l->n && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "", l->v[i]);
  if (used < len) snprintf(buf + used, len - used, "}");
}

static void store_iso(int64_t ms, char *buf, size_t len) {
  clock_format_iso(ms, 0, buf, (unsigned)len);
}

static char *store_json_text(json_t *j) {
  char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return t;
}

/* ---- completion: db_result_cb -> engine_stored_cb ---- */

typedef struct {
  engine_stored_cb done;
  void *arg;
} store_done_t;

static void store_done(void *arg, int err, const char *msg, PGresult *res) {
  store_done_t *d = arg;
  d->done(d->arg, err, msg);
  free(d);
}

/* How a write is queued (db.h): urgent (rules, directives, the audit
 * trail: ahead of queued history and records), history (may be shed), in
 * order (never shed, but after the history it reads), or a record (the
 * alarms: never shed, overtaken by urgent writes like history). */
typedef enum { STORE_URGENT, STORE_HISTORY, STORE_IN_ORDER, STORE_RECORD } store_class_t;

/* db_exec_once, db_exec_once_bulk or db_exec_once_in_order with an
 * engine-style callback. */
static int store_write(db_t *db, store_class_t cls, const char *sql, int n, const char *const *p,
                       engine_stored_cb done, void *arg) {
  store_done_t *d = NULL;
  if (done) {
    d = malloc(sizeof *d);
    if (!d) return NIRC_ENOMEM;
    *d = (store_done_t){done, arg};
  }
  db_result_cb cb = d ? store_done : NULL;
  int rc = cls == STORE_HISTORY    ? db_exec_once_bulk(db, sql, n, p, cb, d)
           : cls == STORE_IN_ORDER ? db_exec_once_in_order(db, sql, n, p, cb, d)
           : cls == STORE_RECORD   ? db_exec_once_record(db, sql, n, p, cb, d)
                                   : db_exec_once(db, sql, n, p, cb, d);
  if (rc != 0) free(d);
  return rc;
}

/* Rules, directives and the audit trail: never shed. */
static int store_once(db_t *db, const char *sql, int n, const char *const *p, engine_stored_cb done,
                      void *arg) {
  return store_write(db, STORE_URGENT, sql, n, p, done, arg);
}

/* The alarm record: never shed, but an operator's change goes first. */
static int store_record(db_t *db, const char *sql, int n, const char *const *p,
                        engine_stored_cb done, void *arg) {
  return store_write(db, STORE_RECORD, sql, n, p, done, arg);
}

/* Link events, load minutes and acks: history, shed first when the
 * journal runs short (db.h, DB_JOURNAL_BULK_PCT). */
static int store_bulk(db_t *db, const char *sql, int n, const char *const *p, engine_stored_cb done,
                      void *arg) {
  return store_write(db, STORE_HISTORY, sql, n, p, done, arg);
}

/* ---- rule state: written only while its leader's epoch is the newest ----
 *
 * A rule change (cutover, schedule, overflow rule, exclusion, damping
 * state) is decided by the leader of one epoch and lives in that leader's
 * memory at once; its row may reach the database much later, from the
 * outage journal, even after that leader died and restarted. By then a
 * newer leader may have loaded the rules without it and routed without it:
 * writing the row then would make the database say what no controller does,
 * and the next leader would carry out a change nobody asked of it. So each
 * such write carries its leader's epoch and is applied only if no newer
 * epoch exists (`epochs`); otherwise it is not applied, and an operator's
 * change says so in the audit trail, in the same statement (one snapshot:
 * the two cannot disagree). The other half is admin_load_rules, which locks
 * the rule tables before it reads them: a write either commits before a new
 * leader's load (which sees it) or runs after it (and sees the new epoch).
 * History (audit, directives, acks, events, load) is what happened and is
 * always written. */
#define STORE_NOT_FENCED(e) " $" e "::bigint >= (SELECT coalesce(max(epoch), 0) FROM epochs)"

/* The statement for a fenced operator change: `sql` (its epoch is
 * parameter n+1, in its own condition) and the audit row written instead
 * when it is fenced (parameters n+2 .. n+4: target, what changed, business
 * time). once.c sends a statement as a data-modifying CTE (`WITH nirc_w AS
 * (...)`), so "sql), name AS (audit" makes the audit row a second CTE of the
 * same statement; the name is unique within one process run, and a batch
 * holds writes of one run only. Returns a malloc'ed string or NULL. */
static char *store_fenced_sql(const char *sql, int n) {
  static unsigned seq, run;
  if (!run) run = (unsigned)((uint64_t)clock_real_ms() ^ (uint64_t)getpid()) | 1u;
  static const char audit[] =
      "%s), nirc_fenced_%x_%u AS (INSERT INTO audit_log (actor, action, target, detail, at, "
      "business_at) SELECT 'nircd', 'superseded', $%d, jsonb_build_object('change', $%d::text, "
      "'epoch', $%d::bigint, 'newer_epoch', x.cur, 'why', 'decided by the leader of epoch ' || "
      "$%d::bigint || ' and written to the database only after the leader of epoch ' || x.cur || "
      "' had taken over without it (the change waited in a controller''s outage journal): not "
      "applied; the leaders since route without it. Make the change again if it is still "
      "wanted'), now(), $%d::timestamptz FROM (SELECT coalesce(max(epoch), 0) AS cur FROM "
      "epochs) x WHERE $%d::bigint < x.cur";
  size_t cap = strlen(sql) + sizeof audit + 64;
  char *out = malloc(cap);
  if (!out) return NULL;
  seq++;
  snprintf(out, cap, audit, sql, run, seq, n + 2, n + 3, n + 1, n + 1, n + 4, n + 1);
  return out;
}

/* An operator's rule change: p holds n parameters and room for four more
 * (the epoch, then the audit row's target, change and business time). */
static int store_fenced(db_t *db, const engine_rec_t *r, const char *sql, int n, const char **p,
                        const char *target, const char *change, engine_stored_cb done, void *arg) {
  char epoch[24], biz[40];
  snprintf(epoch, sizeof epoch, "%llu", (unsigned long long)r->leader_epoch);
  store_iso(r->at_ms, biz, sizeof biz);
  p[n] = epoch;
  p[n + 1] = target;
  p[n + 2] = change;
  p[n + 3] = biz;
  char *q = store_fenced_sql(sql, n);
  if (!q) return NIRC_ENOMEM;
  int rc = store_once(db, q, n + 4, p, done, arg);
  free(q);
  return rc;
}

/* The controller's own rule state (an overflow's engagement, exclusions,
 * damping): fenced the same way, silently: a newer leader keeps its own. */
static int store_fenced_state(db_t *db, const engine_rec_t *r, const char *sql, int n,
                              const char **p, engine_stored_cb done, void *arg) {
  char epoch[24];
  snprintf(epoch, sizeof epoch, "%llu", (unsigned long long)r->leader_epoch);
  p[n] = epoch;
  return store_once(db, sql, n + 1, p, done, arg);
}

/* ---- the engine's records ---- */

/* A return home's route entry names the directive whose move it ends:
 * `left_epoch`/`left_version` (the leader that ended it saw it) or
 * `reverted_epoch`/`reverted_version` (a leader recorded late the agent's
 * own return). Two leaders may record one return: the old leader's entry
 * waited in its outage journal while a new leader, not finding it, wrote
 * the late one; or the other way round. The entry that reaches the
 * database second says it is the same return as the first (`duplicates`,
 * and its why), in the same statement. Looked for only where a second
 * entry can be: a late entry, or an entry written after a newer leader
 * took over (a one-time filter, the CASE: the others take no lock and read
 * nothing more than before), through the partial index
 * audit_log_route_return (schema/011), never a scan of the audit trail.
 *
 * The lookup is audit_log_route_return_first (schema/013), not a subquery
 * here: two live leaders writing at the same moment both missed each other
 * when it was, as this statement sees only what committed before it
 * started. The function takes an advisory lock on the return for the
 * writer's transaction and then looks with a snapshot of its own, so the
 * second writer waits for the first to commit and finds its entry.
 * OFFSET 0 keeps `f` a subquery evaluated once (one lock, one lookup). */
#define STORE_ROUTE_RETURN_SQL                                                                     \
  "INSERT INTO audit_log (actor, action, target, detail, at, business_at) SELECT $1, $2, $3, "     \
  "$4::jsonb || CASE WHEN f.id IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('duplicates', "    \
  "f.id, 'why', ($4::jsonb->>'why') || '; the same return as audit entry ' || f.id || ', "         \
  "recorded by another leader') END, $5, $6 FROM (SELECT CASE WHEN $9::bigint < (SELECT "          \
  "coalesce(max(epoch), 0) FROM epochs) OR $4::jsonb ? 'reverted_epoch' THEN "                     \
  "audit_log_route_return_first($3, $7::bigint, $8::bigint) END AS id OFFSET 0) f"

const char *store_route_return_sql(void) {
  return STORE_ROUTE_RETURN_SQL;
}

/* The directive a return home's entry ends (see above): false if none. */
static bool store_return_of(const engine_rec_t *r, char *epoch, char *version, size_t len) {
  if (!r->action || strcmp(r->action, "route") != 0 || !r->detail) return false;
  json_t *j = json_loads(r->detail, 0, NULL);
  json_t *e = json_object_get(j, "left_epoch"), *v = json_object_get(j, "left_version");
  if (!e || !v) {
    e = json_object_get(j, "reverted_epoch");
    v = json_object_get(j, "reverted_version");
  }
  bool ok = json_is_integer(e) && json_is_integer(v);
  if (ok) {
    snprintf(epoch, len, "%" JSON_INTEGER_FORMAT, json_integer_value(e));
    snprintf(version, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
  }
  json_decref(j);
  return ok;
}

static int store_audit(db_t *db, const engine_rec_t *r, engine_stored_cb done, void *arg) {
  char at[40], biz[40], le[24], lv[24], we[24];
  store_iso(r->wall_ms, at, sizeof at);
  store_iso(r->at_ms, biz, sizeof biz);
  const char *p[] = {r->actor, r->action, r->target, r->detail ? r->detail : "{}", at, biz,
                     le,       lv,        we};
  if (store_return_of(r, le, lv, sizeof le)) {
    snprintf(we, sizeof we, "%llu", (unsigned long long)r->leader_epoch);
    return store_once(db, STORE_ROUTE_RETURN_SQL, 9, p, done, arg);
  }
  return store_once(db,
                    "INSERT INTO audit_log (actor, action, target, detail, at, business_at) "
                    "VALUES ($1,$2,$3,$4::jsonb,$5,$6)",
                    6, p, done, arg);
}

static int store_directive(db_t *db, const engine_rec_t *r, engine_stored_cb done, void *arg) {
  const route_t *t = r->route;
  char v[3][24], revert[40] = "", at[40], biz[40], *rj = NULL, *ij = NULL;
  json_t *j = route_to_json(t);
  rj = store_json_text(json_incref(json_object_get(j, "route")));
  ij = store_json_text(json_incref(json_object_get(j, "inbound")));
  json_decref(j);
  snprintf(v[0], 24, "%llu", (unsigned long long)t->epoch);
  snprintf(v[1], 24, "%llu", (unsigned long long)t->version);
  snprintf(v[2], 24, "%llu", (unsigned long long)r->rule_id);
  if (t->revert_at_ms) store_iso(t->revert_at_ms, revert, sizeof revert);
  store_iso(r->wall_ms, at, sizeof at);
  store_iso(r->at_ms, biz, sizeof biz);
  const char *p[] = {r->site,
                     v[0],
                     v[1],
                     rj ? rj : "[]",
                     ij ? ij : "[]",
                     revert[0] ? revert : NULL,
                     t->reason[0] ? t->reason : "default",
                     rules_kind_name(r->rule_kind),
                     r->rule_id ? v[2] : NULL,
                     at,
                     biz};
  int rc = store_once(db,
                      "INSERT INTO directives (site, epoch, version, route, inbound, revert_at, "
                      "reason, rule_kind, rule_id, sent_at, business_at) "
                      "VALUES ($1,$2,$3,$4::jsonb,$5::jsonb,$6,$7,$8,$9,$10,$11) "
                      "ON CONFLICT DO NOTHING",
                      11, p, done, arg);
  free(rj);
  free(ij);
  return rc;
}

static int store_ack(db_t *db, const engine_rec_t *r, engine_stored_cb done, void *arg) {
  char v[3][24], at[40], biz[40];
  store_iso(r->wall_ms, at, sizeof at);
  store_iso(r->at_ms, biz, sizeof biz);
  snprintf(v[0], 24, "%llu", (unsigned long long)r->epoch);
  snprintf(v[1], 24, "%llu", (unsigned long long)r->version);
  snprintf(v[2], 24, "%lld", (long long)r->latency_ms);
  const char *p[] = {
      r->site, v[0], v[1], r->result, r->detail ? r->detail : "", r->latency_ms >= 0 ? v[2] : NULL,
      at,      biz};
  return store_bulk(db,
                    "INSERT INTO directive_acks (site, epoch, version, result, detail, latency_ms, "
                    "at, business_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                    8, p, done, arg);
}

static int store_cutover_new(db_t *db, const engine_rec_t *r, engine_stored_cb done, void *arg) {
  const cutover_t *cut = r->cutover;
  char id[24], srcs[1024], hubs[1024], created[40], expires[40] = "", share[16];
  snprintf(id, sizeof id, "%llu", (unsigned long long)cut->id);
  /* 0 means all of the calls; the table says so as 1000. */
  snprintf(share, sizeof share, "%u", cut->share_permille ? cut->share_permille : 1000);
  store_pg_array(&cut->sources, srcs, sizeof srcs);
  store_pg_array(&cut->hubs, hubs, sizeof hubs);
  store_iso(cut->created_ms, created, sizeof created);
  if (cut->expires_ms) store_iso(cut->expires_ms, expires, sizeof expires);
  const char *p[9 + 4] = {id,
                          srcs,
                          hubs,
                          cut->reason,
                          cut->operator_name,
                          cut->force ? "true" : "false",
                          created,
                          expires[0] ? expires : NULL,
                          share};
  char target[40], change[1200];
  snprintf(target, sizeof target, "cutover %llu", (unsigned long long)cut->id);
  snprintf(change, sizeof change, "cutover %llu of %s to %s by %s", (unsigned long long)cut->id,
           srcs, hubs, cut->operator_name);
  return store_fenced(db, r,
                      "INSERT INTO cutovers (id, sources, hubs, reason, operator, force, "
                      "created_at, expires_at, share_permille) SELECT $1::bigint, $2::text[], "
                      "$3::text[], $4::text, $5::text, $6::bool, $7::timestamptz, $8::timestamptz, "
                      "$9::int WHERE" STORE_NOT_FENCED("10"),
                      9, p, target, change, done, arg);
}

static int store_cutover_sources(db_t *db, const engine_rec_t *r, engine_stored_cb done,
                                 void *arg) {
  const cutover_t *cut = r->cutover;
  char id[24], srcs[1024];
  snprintf(id, sizeof id, "%llu", (unsigned long long)cut->id);
  store_pg_array(&cut->sources, srcs, sizeof srcs);
  const char *p[2 + 4] = {id, srcs};
  char target[40], change[1200];
  snprintf(target, sizeof target, "cutover %llu", (unsigned long long)cut->id);
  snprintf(change, sizeof change, "cutover %llu keeps only the sources %s (the others restored)",
           (unsigned long long)cut->id, srcs);
  /* A restore of some of its sources: an operator's change, said when it
   * is not applied, like the others. */
  return store_fenced(db, r,
                      "UPDATE cutovers SET sources = $2 WHERE id = $1 AND" STORE_NOT_FENCED("3"), 2,
                      p, target, change, done, arg);
}

static int store_cutover_amend(db_t *db, const engine_rec_t *r, engine_stored_cb done, void *arg) {
  const cutover_t *cut = r->cutover;
  char id[24], hubs[1024], expires[40] = "", share[16];
  snprintf(id, sizeof id, "%llu", (unsigned long long)cut->id);
  store_pg_array(&cut->hubs, hubs, sizeof hubs);
  if (cut->expires_ms) store_iso(cut->expires_ms, expires, sizeof expires);
  snprintf(share, sizeof share, "%u", cut->share_permille ? cut->share_permille : 1000);
  /* force too: an amendment forces (or stops forcing) the whole cutover,
   * and a new leader that loaded the creation's flag would re-check a
   * forced move and send its sources home after a failover. */
  const char *p[5 + 4] = {id, hubs, share, expires[0] ? expires : NULL,
                          cut->force ? "true" : "false"};
  char target[40], change[1200];
  snprintf(target, sizeof target, "cutover %llu", (unsigned long long)cut->id);
  snprintf(change, sizeof change, "cutover %llu amended: to %s, %s permille%s",
           (unsigned long long)cut->id, hubs, share, cut->force ? ", forced" : "");
  return store_fenced(db, r,
                      "UPDATE cutovers SET hubs = $2, share_permille = $3, expires_at = $4, "
                      "force = $5 WHERE id = $1 AND" STORE_NOT_FENCED("6"),
                      5, p, target, change, done, arg);
}

static int store_cutover_end(db_t *db, const engine_rec_t *r, engine_stored_cb done, void *arg) {
  char id[24], at[40];
  snprintf(id, sizeof id, "%llu", (unsigned long long)r->id);
  store_iso(r->at_ms, at, sizeof at);
  const char *p[4 + 4] = {id, rules_cutover_state_name(r->cutover_state), at, r->actor};
  char target[40], change[200];
  snprintf(target, sizeof target, "cutover %llu", (unsigned long long)r->id);
  snprintf(change, sizeof change, "cutover %llu %s by %s", (unsigned long long)r->id,
           rules_cutover_state_name(r->cutover_state), r->actor ? r->actor : "?");
  return store_fenced(db, r,
                      "UPDATE cutovers SET state = $2, ended_at = $3, ended_by = $4 WHERE id = $1 "
                      "AND" STORE_NOT_FENCED("5"),
                      4, p, target, change, done, arg);
}

/* A schedule's columns as text parameters (schedules table). */
typedef struct {
  char id[24], srcs[1024], hubs[1024], st[8], en[8], days[8], ws[8], ex[1024];
} store_sched_text_t;

static void store_schedule_text(const schedule_t *s, store_sched_text_t *t) {
  snprintf(t->id, sizeof t->id, "%llu", (unsigned long long)s->id);
  store_pg_array(&s->sources, t->srcs, sizeof t->srcs);
  store_pg_array(&s->hubs, t->hubs, sizeof t->hubs);
  snprintf(t->st, sizeof t->st, "%d", s->start_min);
  snprintf(t->en, sizeof t->en, "%d", s->end_min);
  snprintf(t->days, sizeof t->days, "%u", s->days);
  snprintf(t->ws, sizeof t->ws, "%u", s->wave_size);
  snprintf(t->ex, sizeof t->ex, "{");
  for (unsigned k = 0; k < s->n_exceptions; k++) {
    int32_t x = s->exceptions[k];
    size_t u = strlen(t->ex);
    snprintf(t->ex + u, sizeof t->ex - u, "%s%04d-%02d-%02d", k ? "," : "", x / 10000,
             (x / 100) % 100, x % 100);
  }
  strncat(t->ex, "}", sizeof t->ex - strlen(t->ex) - 1);
}

static int store_schedule_new(db_t *db, const engine_rec_t *r, engine_stored_cb done, void *arg) {
  const schedule_t *s = r->schedule;
  const char *who = r->actor;
  char at[40];
  store_iso(r->wall_ms, at, sizeof at);
  store_sched_text_t t;
  store_schedule_text(s, &t);
  const char *p[13 + 4] = {t.id,
                           s->name,
                           t.srcs,
                           t.hubs,
                           t.st,
                           t.en,
                           t.days,
                           s->tz,
                           t.ex,
                           t.ws,
                           s->enabled ? "true" : "false",
                           who,
                           at};
  char target[200], change[300];
  snprintf(target, sizeof target, "schedule %s", s->name);
  snprintf(change, sizeof change, "schedule '%s' (%llu) added by %s", s->name,
           (unsigned long long)s->id, who ? who : "?");
  return store_fenced(db, r,
                      "INSERT INTO schedules (id, name, sources, hubs, start_min, end_min, days, "
                      "tz, exceptions, wave_size, enabled, created_by, created_at) SELECT "
                      "$1::bigint, $2::text, $3::text[], $4::text[], $5::int, $6::int, $7::int, "
                      "$8::text, $9::date[], $10::int, $11::bool, $12::text, $13::timestamptz "
                      "WHERE" STORE_NOT_FENCED("14"),
                      13, p, target, change, done, arg);
}

/* nircctl schedule set: the row keeps its id and name; every other rule
 * column is written as the engine now has it (enabled is the enable
 * record's). Fenced like the others: a deposed leader's change is
 * recorded as superseded, not applied. */
static int store_schedule_change(db_t *db, const engine_rec_t *r, engine_stored_cb done,
                                 void *arg) {
  const schedule_t *s = r->schedule;
  store_sched_text_t t;
  store_schedule_text(s, &t);
  const char *p[9 + 4] = {t.id, t.srcs, t.hubs, t.st, t.en, t.days, s->tz, t.ex, t.ws};
  char target[200], change[300];
  snprintf(target, sizeof target, "schedule %s", s->name);
  snprintf(change, sizeof change, "schedule '%s' (%llu) changed by %s", s->name,
           (unsigned long long)s->id, r->actor ? r->actor : "?");
  return store_fenced(db, r,
                      "UPDATE schedules SET sources = $2::text[], hubs = $3::text[], start_min = "
                      "$4::int, end_min = $5::int, days = $6::int, tz = $7::text, exceptions = "
                      "$8::date[], wave_size = $9::int WHERE id = $1::bigint AND removed_at IS "
                      "NULL AND" STORE_NOT_FENCED("10"),
                      9, p, target, change, done, arg);
}

/* An overflow rule's id and thresholds (v[0..9]) and hubs as text. */
static void store_overflow_text(const overflow_rule_t *o, char v[10][24], char *hubs,
                                size_t hubslen) {
  snprintf(v[0], 24, "%llu", (unsigned long long)o->id);
  snprintf(v[1], 24, "%u", o->trigger_wait_s);
  snprintf(v[2], 24, "%u", o->release_wait_s);
  snprintf(v[3], 24, "%u", o->trigger_queue);
  snprintf(v[4], 24, "%u", o->release_queue);
  snprintf(v[5], 24, "%.4f", o->trigger_sl);
  snprintf(v[6], 24, "%.4f", o->release_sl);
  snprintf(v[7], 24, "%u", o->share_cap_permille);
  snprintf(v[8], 24, "%u", o->min_hold_s);
  snprintf(v[9], 24, "%u", o->margin_s);
  store_pg_array(&o->hubs, hubs, hubslen);
}

/* nircctl overflow set: the row keeps its id, name, source and engaged
 * state (ENGINE_REC_OVERFLOW_STATE's); its hubs and thresholds are
 * written as the engine now has them. Fenced like the others. */
static int store_overflow_change(db_t *db, const engine_rec_t *r, engine_stored_cb done,
                                 void *arg) {
  const overflow_rule_t *o = r->overflow;
  char v[10][24], hubs[1024];
  store_overflow_text(o, v, hubs, sizeof hubs);
  const char *p[11 + 4] = {v[0], hubs, v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]};
  char target[200], change[300];
  snprintf(target, sizeof target, "overflow %s", o->name);
  snprintf(change, sizeof change, "overflow rule '%s' (%llu) changed by %s", o->name,
           (unsigned long long)o->id, r->actor ? r->actor : "?");
  return store_fenced(db, r,
                      "UPDATE overflow_rules SET hubs = $2::text[], trigger_wait_s = $3::int, "
                      "release_wait_s = $4::int, trigger_queue = $5::int, release_queue = "
                      "$6::int, trigger_sl = $7::float8, release_sl = $8::float8, "
                      "share_cap_permille = $9::int, min_hold_s = $10::int, margin_s = $11::int "
                      "WHERE id = $1::bigint AND removed_at IS NULL AND" STORE_NOT_FENCED("12"),
                      11, p, target, change, done, arg);
}

static int store_overflow_new(db_t *db, const engine_rec_t *r, engine_stored_cb done, void *arg) {
  const overflow_rule_t *o = r->overflow;
  const char *who = r->actor;
  int64_t wall_ms = r->wall_ms;
  char v[10][24], hubs[1024], at[40];
  store_iso(wall_ms, at, sizeof at);
  store_overflow_text(o, v, hubs, sizeof hubs);
  const char *p[15 + 4] = {v[0], o->name, o->source, hubs, v[1], v[2], v[3], v[4],
                           v[5], v[6],    v[7],      v[8], v[9], who,  at};
  char target[200], change[300];
  snprintf(target, sizeof target, "overflow %s", o->name);
  snprintf(change, sizeof change, "overflow rule '%s' (%llu) added by %s", o->name,
           (unsigned long long)o->id, who ? who : "?");
  return store_fenced(db, r,
                      "INSERT INTO overflow_rules (id, name, source, hubs, trigger_wait_s, "
                      "release_wait_s, trigger_queue, release_queue, trigger_sl, release_sl, "
                      "share_cap_permille, min_hold_s, margin_s, created_by, created_at) SELECT "
                      "$1::bigint, $2::text, $3::text, $4::text[], $5::int, $6::int, $7::int, "
                      "$8::int, $9::float8, $10::float8, $11::int, $12::int, $13::int, $14::text, "
                      "$15::timestamptz WHERE" STORE_NOT_FENCED("16"),
                      15, p, target, change, done, arg);
}

/* An alarm's raise is its row; its acknowledgement and its clear update
 * that row. Times are the event's, never the row's arrival. */
/* A site added, changed or removed (nircctl site). A removal is a soft
 * delete: the row stays, so load_minute and link_events keep pointing at
 * it; removed_at says since when it is gone. Every write fires the
 * nirc_sites notification (schema 010), which other controllers follow. */
static int store_site(db_t *db, const engine_rec_t *r, const char *wall, engine_stored_cb done,
                      void *arg) {
  const engine_site_rec_t *s = r->site_rec;
  if (!s || !s->slug) return NIRC_EINVAL;
  if (s->removed) {
    char at[40];
    store_iso(s->removed_wall_ms, at, sizeof at);
    const char *p[] = {s->slug, at, s->removed_by ? s->removed_by : ""};
    /* What a leader loads about the site at takeover ends with it: a live
     * exclusion after a failed move, a hold home after early returns, its
     * capacity damping. Left live, they came back with the slug when the
     * site was added again, at the next takeover, though the running
     * leader had dropped them (engine_site_reset). Separate once-writes
     * (a once-write cannot hold data-modifying CTEs of its own: once.c),
     * queued before the removal that the operator's reply waits for. */
    static const struct {
      const char *sql;
      int n; /* of p: the slug, then when and by whom */
    } clears[] = {
        {"UPDATE route_exclusions SET cleared_at = $2, cleared_by = $3 WHERE site = $1 AND "
         "cleared_at IS NULL",
         3},
        {"UPDATE route_return_holds SET cleared_at = $2, cleared_by = $3, cleared_why = 'site "
         "removed' WHERE site = $1 AND cleared_at IS NULL",
         3},
        {"DELETE FROM route_holds WHERE site = $1", 1},
    };
    for (size_t k = 0; k < sizeof clears / sizeof *clears; k++) {
      int rc = store_once(db, clears[k].sql, clears[k].n, p, NULL, NULL);
      if (rc != 0) return rc;
    }
    return store_once(db, "UPDATE sites SET removed_at = $2, removed_by = $3 WHERE slug = $1", 3, p,
                      done, arg);
  }
  (void)wall;
  const capacity_t *cap = s->cap;
  char seats[16], roster[CAPACITY_ROSTER_TEXT_MAX], off[16], lat[32], lon[32];
  snprintf(seats, sizeof seats, "%" PRIu32, cap->seats);
  capacity_format_roster(cap, roster, sizeof roster);
  snprintf(off, sizeof off, "%" PRId32, cap->utc_offset_min);
  snprintf(lat, sizeof lat, "%.6f", s->lat);
  snprintf(lon, sizeof lon, "%.6f", s->lon);
  const char *p[] = {s->slug,
                     s->name_en,
                     s->name_zh,
                     s->city_en,
                     lat,
                     lon,
                     s->is_hub ? "true" : "false",
                     cap->configured && cap->seats ? seats : NULL,
                     cap->configured && roster[0] ? roster : NULL,
                     off};
  return store_once(
      db,
      "INSERT INTO sites (slug, name_en, name_zh, city_en, lat, lon, is_hub, seats, roster, "
      "capacity_utc_offset_min) VALUES ($1, $2, $3, coalesce($4, ''), $5::float8, $6::float8, "
      "$7::bool, $8::int, $9, $10::int) ON CONFLICT (slug) DO UPDATE SET name_en = $2, "
      "name_zh = $3, city_en = coalesce($4, sites.city_en), lat = $5::float8, lon = $6::float8, "
      "is_hub = $7::bool, seats = $8::int, roster = $9, capacity_utc_offset_min = $10::int, "
      "removed_at = NULL, removed_by = NULL",
      10, p, done, arg);
}

static int store_alarm(db_t *db, const engine_rec_t *r, engine_stored_cb done, void *arg) {
  const alarm_t *a = r->alarm;
  if (!a) return NIRC_EINVAL;
  char id[24], at[40], biz[40] = "";
  snprintf(id, sizeof id, "%llu", (unsigned long long)a->id);
  switch (r->alarm_event) {
  case ALARM_EV_RAISED: {
    char epoch[24];
    snprintf(epoch, sizeof epoch, "%llu", (unsigned long long)(a->id / ALARM_ID_EPOCH));
    store_iso(a->raised_wall_ms, at, sizeof at);
    if (a->raised_business_ms) store_iso(a->raised_business_ms, biz, sizeof biz);
    const char *p[] = {
        id, alarm_kind_name(a->kind), a->subject, alarm_entry_severity(a), a->message,
        at, biz[0] ? biz : NULL,      epoch};
    /* A raise that reaches the database after a newer leader took over
     * (it waited in a deposed leader's outage journal) is written closed
     * as of that takeover, with why: the new leader did not adopt it (it
     * was not there when it loaded, or is closed before it loads), so
     * left open nobody would clear it, and the leader after would adopt a
     * condition seen by a controller that no longer leads. Its epoch is
     * its id's (ALARM_ID_EPOCH); the first newer epoch is the takeover. */
    return store_record(
        db,
        "INSERT INTO alarms (id, kind, subject, severity, message, raised_at, "
        "raised_business_at, cleared_at, last_message) SELECT $1::bigint, $2::text, $3::text, "
        "$4::text, $5::text, $6::timestamptz, $7::timestamptz, CASE WHEN n.epoch IS NOT NULL "
        "THEN greatest($6::timestamptz, n.started_at) END, CASE WHEN n.epoch IS NOT NULL THEN "
        "'raised by the leader of epoch ' || $8::bigint || "
        "' and written to the database only after the leader of epoch ' || n.epoch || ' had "
        "taken over (it waited in a controller''s outage journal): closed as of that takeover, "
        "not adopted; the leader now in charge raises its own alarm if it sees the condition. "
        "Raised as: ' || $5::text END FROM (SELECT 1) x LEFT JOIN LATERAL (SELECT epoch, "
        "started_at "
        "FROM epochs WHERE epoch > $8::bigint ORDER BY epoch LIMIT 1) n ON true ON CONFLICT (id) "
        "DO NOTHING",
        8, p, done, arg);
  }
  case ALARM_EV_ACKED: {
    store_iso(a->acked_wall_ms, at, sizeof at);
    const char *p[] = {id, at, a->acked_by};
    return store_record(db, "UPDATE alarms SET acked_at = $2, acked_by = $3 WHERE id = $1", 3, p,
                        done, arg);
  }
  case ALARM_EV_BACKDATED: {
    /* An earlier sighting reported late: the row says since then too
     * (never later: replayed out of order, the earlier stands). */
    store_iso(a->raised_wall_ms, at, sizeof at);
    if (a->raised_business_ms) store_iso(a->raised_business_ms, biz, sizeof biz);
    const char *p[] = {id, at, biz[0] ? biz : NULL};
    return store_record(db,
                        "UPDATE alarms SET raised_at = $2::timestamptz, raised_business_at = "
                        "coalesce($3::timestamptz, raised_business_at) WHERE id = $1 AND "
                        "raised_at > $2::timestamptz",
                        3, p, done, arg);
  }
  case ALARM_EV_CLEARED: {
    store_iso(r->wall_ms, at, sizeof at);
    const char *p[] = {id, at, a->message};
    return store_record(db,
                        "UPDATE alarms SET cleared_at = $2, last_message = $3 WHERE id = $1 AND "
                        "cleared_at IS NULL",
                        3, p, done, arg);
  }
  }
  return NIRC_EINVAL;
}

/* A window's accuracy per site (schema/009): its recorded forecast per
 * 30-minute interval against the site's own calls in the load minutes of
 * that interval (offered - from other sites + routed away). Only
 * intervals both forecast and measured (at least one load minute: at an
 * accelerated clock one report spans several minutes) are compared; a
 * site with none keeps a row with intervals 0 ("not measured"), one with
 * no calls a NULL wape ("no calls": undefined, not 0). */
#define STORE_ACCURACY_SQL                                                                         \
  "INSERT INTO forecast_accuracy (schedule_id, window_start, window_end, site, forecast_calls, "   \
  "actual_calls, abs_error_calls, wape, intervals) "                                               \
  "SELECT f.schedule_id, f.window_start, f.window_end, f.site, "                                   \
  "coalesce(sum(u.fc) FILTER (WHERE a.mins > 0), 0), "                                             \
  "coalesce(sum(a.calls) FILTER (WHERE a.mins > 0), 0), "                                          \
  "coalesce(sum(abs(a.calls - u.fc)) FILTER (WHERE a.mins > 0), 0), "                              \
  "CASE WHEN sum(a.calls) FILTER (WHERE a.mins > 0) > 0 THEN "                                     \
  "sum(abs(a.calls - u.fc)) FILTER (WHERE a.mins > 0) / sum(a.calls) FILTER (WHERE a.mins > 0) "   \
  "END, count(*) FILTER (WHERE a.mins > 0) "                                                       \
  "FROM forecast_used f "                                                                          \
  "LEFT JOIN LATERAL unnest(f.calls) WITH ORDINALITY AS u(fc, k) ON u.fc IS NOT NULL "             \
  "LEFT JOIN LATERAL (SELECT coalesce(sum(m.offered - m.from_other_sites + m.routed_away), "       \
  "0)::double precision AS calls, count(*) AS mins FROM load_minute m WHERE m.site = f.site AND "  \
  "m.minute >= f.first_interval + (u.k - 1) * f.interval_s * interval '1 second' AND "             \
  "m.minute < f.first_interval + u.k * f.interval_s * interval '1 second') a ON true "             \
  "WHERE f.schedule_id = $1::bigint AND f.window_start = to_timestamp($2::bigint / 1000.0) "       \
  "GROUP BY f.schedule_id, f.window_start, f.window_end, f.site ON CONFLICT DO NOTHING"

int store_engine_record(db_t *db, const engine_rec_t *r, engine_stored_cb done, void *arg) {
  char id[24], wall[40];
  snprintf(id, sizeof id, "%llu", (unsigned long long)r->id);
  store_iso(r->wall_ms, wall, sizeof wall);
  switch (r->kind) {
  case ENGINE_REC_AUDIT: return store_audit(db, r, done, arg);
  case ENGINE_REC_DIRECTIVE: return store_directive(db, r, done, arg);
  case ENGINE_REC_ACK: return store_ack(db, r, done, arg);
  case ENGINE_REC_EVENT: {
    /* Site events from the engine (alarms, failed directives) are link
     * events of that site, like the network side's. */
    const char *p[] = {"site", NULL, r->site, r->peer, r->action, r->detail ? r->detail : "", wall};
    return store_bulk(db,
                      "INSERT INTO link_events (kind, identity, site, peer, event, detail, at) "
                      "VALUES ($1,$2,$3,$4,$5,$6,$7)",
                      7, p, done, arg);
  }
  case ENGINE_REC_CUTOVER_NEW: return store_cutover_new(db, r, done, arg);
  case ENGINE_REC_CUTOVER_SOURCES: return store_cutover_sources(db, r, done, arg);
  case ENGINE_REC_CUTOVER_END: return store_cutover_end(db, r, done, arg);
  case ENGINE_REC_CUTOVER_AMEND: return store_cutover_amend(db, r, done, arg);
  case ENGINE_REC_SCHEDULE_NEW: return store_schedule_new(db, r, done, arg);
  case ENGINE_REC_SCHEDULE_CHANGE: return store_schedule_change(db, r, done, arg);
  case ENGINE_REC_SCHEDULE_REMOVE: {
    const char *p[2 + 4] = {id, wall};
    char target[200], change[240];
    snprintf(target, sizeof target, "schedule %s", r->target ? r->target : id);
    snprintf(change, sizeof change, "schedule '%s' (%s) removed", r->target ? r->target : "", id);
    return store_fenced(
        db, r, "UPDATE schedules SET removed_at = $2 WHERE id = $1 AND" STORE_NOT_FENCED("3"), 2, p,
        target, change, done, arg);
  }
  case ENGINE_REC_SCHEDULE_ENABLE: {
    const char *p[2 + 4] = {id, r->enabled ? "true" : "false"};
    char target[200], change[240];
    snprintf(target, sizeof target, "schedule %s", r->target ? r->target : id);
    snprintf(change, sizeof change, "schedule '%s' (%s) %s", r->target ? r->target : "", id,
             r->enabled ? "enabled" : "disabled");
    return store_fenced(db, r,
                        "UPDATE schedules SET enabled = $2 WHERE id = $1 AND" STORE_NOT_FENCED("3"),
                        2, p, target, change, done, arg);
  }
  case ENGINE_REC_OVERFLOW_NEW: return store_overflow_new(db, r, done, arg);
  case ENGINE_REC_OVERFLOW_CHANGE: return store_overflow_change(db, r, done, arg);
  case ENGINE_REC_OVERFLOW_REMOVE: {
    const char *p[2 + 4] = {id, wall};
    char target[200], change[240];
    snprintf(target, sizeof target, "overflow %s", r->target ? r->target : id);
    snprintf(change, sizeof change, "overflow rule '%s' (%s) removed", r->target ? r->target : "",
             id);
    return store_fenced(
        db, r, "UPDATE overflow_rules SET removed_at = $2 WHERE id = $1 AND" STORE_NOT_FENCED("3"),
        2, p, target, change, done, arg);
  }
  case ENGINE_REC_OVERFLOW_STATE: {
    char since[40] = "", pm[16];
    if (r->since_ms) store_iso(r->since_ms, since, sizeof since);
    snprintf(pm, sizeof pm, "%u", r->permille);
    const char *p[4 + 1] = {id, r->enabled ? "true" : "false", since[0] ? since : NULL, pm};
    return store_fenced_state(db, r,
                              "UPDATE overflow_rules SET engaged = $2, engaged_since = $3, "
                              "engaged_permille = $4 WHERE id = $1 AND" STORE_NOT_FENCED("5"),
                              4, p, done, arg);
  }
  case ENGINE_REC_EXCLUDE: {
    /* One live exclusion per site: a newer one replaces it. */
    char rid[24];
    snprintf(rid, sizeof rid, "%llu", (unsigned long long)r->rule_id);
    const char *p[5 + 1] = {r->site, rules_kind_name(r->rule_kind), rid, r->detail ? r->detail : "",
                            wall};
    return store_fenced_state(
        db, r,
        "INSERT INTO route_exclusions (site, rule_kind, rule_id, reason, "
        "excluded_at) SELECT $1::text, $2::text, $3::bigint, $4::text, "
        "$5::timestamptz WHERE" STORE_NOT_FENCED(
            "6") " ON CONFLICT (site) WHERE cleared_at IS NULL DO UPDATE SET "
                 "rule_kind = EXCLUDED.rule_kind, rule_id = EXCLUDED.rule_id, "
                 "reason = EXCLUDED.reason, excluded_at = EXCLUDED.excluded_at",
        5, p, done, arg);
  }
  case ENGINE_REC_READMIT: {
    const char *p[3 + 4] = {r->site, wall, r->actor ? r->actor : ""};
    char target[80], change[200];
    snprintf(target, sizeof target, "%s", r->site);
    snprintf(change, sizeof change, "%s readmitted by %s", r->site, r->actor ? r->actor : "?");
    return store_fenced(db, r,
                        "UPDATE route_exclusions SET cleared_at = $2, cleared_by = $3 "
                        "WHERE site = $1 AND cleared_at IS NULL AND" STORE_NOT_FENCED("4"),
                        3, p, target, change, done, arg);
  }
  case ENGINE_REC_HOLD: {
    if (!r->hold) return NIRC_EINVAL;
    char a[24], b[24], c[24], d[16];
    snprintf(a, sizeof a, "%lld", (long long)r->hold->strain_since_ms);
    snprintf(b, sizeof b, "%lld", (long long)r->hold->withdrawn_ms);
    snprintf(c, sizeof c, "%lld", (long long)r->hold->last_withdrawn_ms);
    snprintf(d, sizeof d, "%u", r->hold->withdrawals);
    const char *p[6 + 1] = {r->site, a, b, c, d, wall};
    return store_fenced_state(
        db, r,
        "INSERT INTO route_holds (site, strain_since_ms, withdrawn_ms, last_withdrawn_ms, "
        "withdrawals, updated_at) SELECT $1::text, $2::bigint, $3::bigint, $4::bigint, $5::int, "
        "$6::timestamptz WHERE" STORE_NOT_FENCED(
            "7") " "
                 "ON CONFLICT (site) DO UPDATE SET strain_since_ms = EXCLUDED.strain_since_ms, "
                 "withdrawn_ms = EXCLUDED.withdrawn_ms, last_withdrawn_ms = "
                 "EXCLUDED.last_withdrawn_ms, withdrawals = EXCLUDED.withdrawals, "
                 "updated_at = EXCLUDED.updated_at",
        6, p, done, arg);
  }
  case ENGINE_REC_RETURNS_HOLD: {
    /* One live hold per site: a later return while held updates its count. */
    const engine_returns_t *h = r->returns;
    if (!h || !r->site) return NIRC_EINVAL;
    char n[16], span[24], rid[24], early[24];
    snprintf(n, sizeof n, "%u", h->n);
    snprintf(
        span, sizeof span, "%llu",
        (unsigned long long)(h->last_mono >= h->first_mono ? h->last_mono - h->first_mono : 0));
    snprintf(rid, sizeof rid, "%llu", (unsigned long long)h->rule_id);
    snprintf(early, sizeof early, "%lld", (long long)h->early.ms);
    const char *p[7 + 1] = {r->site, n, span, rules_kind_name(h->kind), rid, early, wall};
    return store_fenced_state(
        db, r,
        "INSERT INTO route_return_holds (site, returns, span_ms, rule_kind, rule_id, early_ms, "
        "held_at) SELECT $1::text, $2::int, $3::bigint, $4::text, $5::bigint, $6::bigint, "
        "$7::timestamptz WHERE" STORE_NOT_FENCED(
            "8") " ON CONFLICT (site) WHERE cleared_at IS NULL DO UPDATE SET "
                 "returns = EXCLUDED.returns, span_ms = EXCLUDED.span_ms, "
                 "rule_kind = EXCLUDED.rule_kind, rule_id = EXCLUDED.rule_id, "
                 "early_ms = EXCLUDED.early_ms",
        7, p, done, arg);
  }
  case ENGINE_REC_RETURNS_RELEASE: {
    const char *p[4 + 4] = {r->site, wall, r->actor ? r->actor : "", r->detail ? r->detail : ""};
    char target[80], change[200];
    snprintf(target, sizeof target, "%s", r->site);
    snprintf(change, sizeof change, "%s's hold home ended by %s", r->site,
             r->actor ? r->actor : "?");
    return store_fenced(
        db, r,
        "UPDATE route_return_holds SET cleared_at = $2, cleared_by = $3, "
        "cleared_why = $4 WHERE site = $1 AND cleared_at IS NULL AND" STORE_NOT_FENCED("5"),
        4, p, target, change, done, arg);
  }
  case ENGINE_REC_ALARM: return store_alarm(db, r, done, arg);
  case ENGINE_REC_CAPACITY: {
    const capacity_t *cap = r->capacity;
    if (!cap || !r->site) return NIRC_EINVAL;
    char seats[16], roster[CAPACITY_ROSTER_TEXT_MAX], off[16];
    snprintf(seats, sizeof seats, "%" PRIu32, cap->seats);
    capacity_format_roster(cap, roster, sizeof roster);
    snprintf(off, sizeof off, "%" PRId32, cap->utc_offset_min);
    const char *p[] = {r->site, cap->configured && cap->seats ? seats : NULL,
                       cap->configured && roster[0] ? roster : NULL, off};
    return store_once(db,
                      "UPDATE sites SET seats = $2::int, roster = $3, "
                      "capacity_utc_offset_min = $4::int WHERE slug = $1",
                      4, p, done, arg);
  }
  case ENGINE_REC_SITE: return store_site(db, r, wall, done, arg);
  case ENGINE_REC_FORECAST: {
    if (!r->site || !r->detail) return NIRC_EINVAL;
    char from[24], to[24], first[24];
    snprintf(from, sizeof from, "%lld", (long long)r->win_from_ms);
    snprintf(to, sizeof to, "%lld", (long long)r->win_to_ms);
    snprintf(first, sizeof first, "%lld", (long long)r->win_first_ms);
    const char *p[] = {id, from, to, r->site, first, r->detail};
    /* The first leader to see the window start keeps its forecast. */
    return store_once(db,
                      "INSERT INTO forecast_used (schedule_id, window_start, window_end, site, "
                      "first_interval, interval_s, calls) VALUES ($1::bigint, "
                      "to_timestamp($2::bigint / 1000.0), to_timestamp($3::bigint / 1000.0), $4, "
                      "to_timestamp($5::bigint / 1000.0), 1800, $6::double precision[]) "
                      "ON CONFLICT DO NOTHING",
                      6, p, done, arg);
  }
  case ENGINE_REC_FORECAST_CLOSE: {
    char from[24];
    snprintf(from, sizeof from, "%lld", (long long)r->win_from_ms);
    const char *p[] = {id, from};
    /* It reads the window's load minutes: after those still queued. */
    return store_write(db, STORE_IN_ORDER, STORE_ACCURACY_SQL, 2, p, done, arg);
  }
  }
  log_error(LOG_DB, "store", "unknown record kind %d: not stored", (int)r->kind);
  return NIRC_EINVAL;
}

/* ---- the network side's history ---- */

/* History rows nobody waits for: a failure is logged, never silent. */
static void store_logged(void *arg, int err, const char *msg) {
  if (err) log_warn(LOG_DB, "db", "write failed: %s", msg ? msg : nirc_strerror(err));
}

int store_link_event(db_t *db, int64_t wall_ms, const char *kind, const char *identity,
                     const char *site, const char *peer, const char *event, const char *detail) {
  char at[40];
  store_iso(wall_ms, at, sizeof at);
  const char *p[] = {kind,
                     identity && *identity ? identity : NULL,
                     site && *site ? site : NULL,
                     peer,
                     event,
                     detail ? detail : "",
                     at};
  return store_bulk(db,
                    "INSERT INTO link_events (kind, identity, site, peer, event, detail, at) "
                    "VALUES ($1,$2,$3,$4,$5,$6,$7)",
                    7, p, store_logged, NULL);
}

int store_load_minute(db_t *db, const char *site, const site_minute_t *m) {
  char minute[40], v[15][24];
  clock_format_iso(m->minute_ms, 0, minute, sizeof minute);
  uint32_t good = m->reports - m->unreadable;
  double d = good ? (double)good : 1.0;
  snprintf(v[0], 24, "%u", m->reports);
  snprintf(v[1], 24, "%llu", (unsigned long long)m->offered);
  snprintf(v[2], 24, "%llu", (unsigned long long)m->answered);
  snprintf(v[3], 24, "%llu", (unsigned long long)m->abandoned);
  snprintf(v[4], 24, "%llu", (unsigned long long)m->answered_within);
  snprintf(v[5], 24, "%llu", (unsigned long long)m->from_other_sites);
  /* Averages over the reports that measured them; NULL when none did
   * (schema 007): a proxy's minute has no agents, not zero agents. */
  (void)d;
  double da = m->agents_reports, dh = m->aht_reports;
  snprintf(v[6], 24, "%u", m->max_queue);
  snprintf(v[7], 24, "%u", m->max_wait_ms);
  snprintf(v[8], 24, "%.2f", da ? m->sum_logged_in / da : 0);
  snprintf(v[9], 24, "%.2f", da ? m->sum_ready / da : 0);
  snprintf(v[10], 24, "%.2f", da ? m->sum_talking / da : 0);
  snprintf(v[11], 24, "%.1f", dh ? m->sum_aht_ms / dh : 0);
  snprintf(v[12], 24, "%u", m->unreadable);
  snprintf(v[13], 24, "%llu", (unsigned long long)m->routed_away);
  bool q = m->queue_reports > 0, ag = m->agents_reports > 0, ah = m->aht_reports > 0;
  const char *p[] = {site,
                     minute,
                     v[0],
                     v[1],
                     v[2],
                     v[3],
                     v[4],
                     v[5],
                     q ? v[6] : NULL,
                     q ? v[7] : NULL,
                     ag ? v[8] : NULL,
                     ag ? v[9] : NULL,
                     ag ? v[10] : NULL,
                     ah ? v[11] : NULL,
                     v[12],
                     v[13]};
  /* A minute can arrive in two parts (a flush on shutdown, then the rest
   * after a restart): merge instead of failing on the primary key. */
  return store_bulk(
      db,
      "INSERT INTO load_minute (site, minute, reports, offered, answered, abandoned, "
      "answered_within, from_other_sites, max_queue, max_wait_ms, avg_logged_in, avg_ready, "
      "avg_talking, avg_aht_ms, unreadable_reports, routed_away) VALUES "
      "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16) "
      "ON CONFLICT (site, minute) DO UPDATE SET reports = load_minute.reports + EXCLUDED.reports, "
      "offered = load_minute.offered + EXCLUDED.offered, "
      "answered = load_minute.answered + EXCLUDED.answered, "
      "abandoned = load_minute.abandoned + EXCLUDED.abandoned, "
      "answered_within = load_minute.answered_within + EXCLUDED.answered_within, "
      "from_other_sites = load_minute.from_other_sites + EXCLUDED.from_other_sites, "
      "max_queue = greatest(load_minute.max_queue, EXCLUDED.max_queue), "
      "max_wait_ms = greatest(load_minute.max_wait_ms, EXCLUDED.max_wait_ms), "
      "unreadable_reports = load_minute.unreadable_reports + EXCLUDED.unreadable_reports, "
      "routed_away = load_minute.routed_away + EXCLUDED.routed_away",
      16, p, store_logged, NULL);
}
