/* engine_sites: the site lifecycle while nircd runs - `nircctl site add |
 * set | remove`. Like a capacity change it is an operator change: refused
 * unless it can be recorded, stored exactly once with its audit entry,
 * answered when both are durable. The registry only grows: a removed site
 * keeps its index (site_life_t), so nothing indexed by site shifts.
 *
 * A removal is refused while anything routes to or from the site or a rule
 * names it; the refusal lists what to change first. The link of a removed
 * site's agent is closed by the owner (it sees the site REMOVED after the
 * call: the engine does no I/O). */
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

/* ---- the per-site arrays grow with the registry ---- */

/* Grows one per-site array from e->cap_sites to `cap` entries of `size`,
 * zeroing the new ones. */
static int engine_grow_site_array(void **v, size_t old, size_t cap, size_t size) {
  void *p = realloc(*v, cap * size);
  if (!p) return NIRC_ENOMEM;
  memset((char *)p + old * size, 0, (cap - old) * size);
  *v = p;
  return 0;
}

int engine_sites_grown(engine_t *e) {
  size_t n = e->sites->n;
  if (n > e->cap_sites) {
    /* Doubling: a site added now and then (nircctl site add) and a file of
     * thousands (import-sites) both cost amortised O(1) per site. One more
     * entry than sites in the scratch arrays, as before (never 0 bytes). */
    /* The first growth (the registry loaded at start) takes exactly n:
     * the new entries are zeroed, so every spare one is resident, and
     * doubling 20,031 sites to 32,768 held 126 MB (~10 KB a site) that no
     * site used. */
    size_t cap = e->cap_sites ? e->cap_sites : n;
    while (cap < n)
      cap *= 2;
    size_t old = e->cap_sites;
    if (engine_grow_site_array((void **)&e->dirs, old, cap, sizeof *e->dirs) ||
        engine_grow_site_array((void **)&e->psites, old, cap, sizeof *e->psites) ||
        engine_grow_site_array((void **)&e->alarm, old, cap, sizeof *e->alarm) ||
        engine_grow_site_array((void **)&e->gate, old, cap, sizeof *e->gate) ||
        engine_grow_site_array((void **)&e->holds, old, cap, sizeof *e->holds) ||
        engine_grow_site_array((void **)&e->changes, old, cap, sizeof *e->changes) ||
        engine_grow_site_array((void **)&e->down_since, old, cap, sizeof *e->down_since) ||
        engine_grow_site_array((void **)&e->next_scratch, old ? old + 1 : 0, cap + 1,
                               sizeof *e->next_scratch) ||
        engine_grow_site_array((void **)&e->down_said_s, old ? old + 1 : 0, cap + 1,
                               sizeof *e->down_said_s))
      return NIRC_ENOMEM; /* the arrays grown so far are valid, only bigger */
    e->cap_sites = cap;
  }
  for (size_t i = e->n_sites; i < n; i++)
    engine_site_reset(e, i);
  e->n_sites = n;
  return 0;
}

void engine_site_reset(engine_t *e, size_t i) {
  const site_t *s = &e->sites->v[i];
  e->eval_dirty = true; /* a site came or went: plan again on the next tick */
  memset(&e->dirs[i], 0, sizeof e->dirs[i]);
  route_home(&e->dirs[i].target, s->slug);
  route_home(&e->dirs[i].acked, s->slug);
  memset(&e->psites[i], 0, sizeof e->psites[i]);
  e->alarm[i][0] = '\0';
  memset(&e->gate[i], 0, sizeof e->gate[i]);
  memset(&e->holds[i], 0, sizeof e->holds[i]);
  e->down_since[i] = 0;
  e->down_said_s[i] = 0;
  /* A hub added while leading starts as UNSEEN (zeroed): it takes no
   * sources until it has been up; changes[] (counters) are kept. */
}

/* Appends "; " and a formatted reason to why (cut at len, whole bytes). */
static void engine_sites_why(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void engine_sites_why(char *why, size_t len, const char *fmt, ...) {
  size_t used = strlen(why);
  if (used + 3 >= len) return;
  if (used) {
    memcpy(why + used, "; ", 3);
    used += 2;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why + used, len - used, fmt, ap);
  va_end(ap);
}

/* Sources this controller has not heard since it took over whose last
 * directive in the database (an older leader's move, e->prior) sends
 * calls to `slug`: their PBX may still do so (nobody here knows whether
 * the agent went home at its revert_at), so the hub is in use. Their
 * target and acked are only the default home until their Hello, which
 * is why the check above does not see them. */
static void engine_unheard_takers(engine_t *e, const char *slug, char *why, size_t len) {
  char names[200] = "";
  unsigned n = 0;
  for (size_t k = 0; k < e->n_prior; k++) {
    const engine_prior_t *p = &e->prior[k];
    if (!p->d.newest || route_share_of(&p->d.route, slug) == 0 ||
        engine_route_seen(e, p->site) != ENGINE_ROUTE_UNHEARD ||
        engine_site(e, p->site)->life == SITE_REMOVED)
      continue;
    if (n++ < 5) {
      size_t u = strlen(names);
      snprintf(names + u, sizeof names - u, "%s%s", u ? "," : "", engine_site(e, p->site)->slug);
    }
  }
  if (n)
    engine_sites_why(why, len,
                     "the last directive on record of %s%s (not heard since this controller took "
                     "over) sends calls to it: %s PBX may still do so (start %s agent so that its "
                     "route is known here, or remove a site that is gone first)",
                     names, n > 5 ? ",..." : "", n == 1 ? "its" : "their", n == 1 ? "its" : "each");
}

bool engine_site_in_use(engine_t *e, size_t i, bool hub_only, char *why, size_t len) {
  why[0] = '\0';
  if (i >= engine_nsites(e)) return false;
  const char *slug = engine_site(e, i)->slug;
  const site_dir_t *d = &e->dirs[i];
  /* Its own route, as sent and as acknowledged: a source that still
   * sends calls elsewhere has to come home first. */
  if (!hub_only && (route_share_of(&d->target, slug) < 1000 ||
                    (d->known && route_share_of(&d->acked, slug) < 1000))) {
    char r[160];
    route_format(route_share_of(&d->target, slug) < 1000 ? &d->target : &d->acked, slug, r,
                 sizeof r);
    engine_sites_why(why, len, "it routes %s (nircctl restore %s, or end the rule below)", r, slug);
  }
  /* Sources routed to it (sent or acknowledged). */
  char takers[200] = "";
  unsigned n_takers = 0;
  for (size_t k = 0; k < engine_nsites(e); k++) {
    if (k == i) continue;
    const site_dir_t *o = &e->dirs[k];
    if (route_share_of(&o->target, slug) == 0 && !(o->known && route_share_of(&o->acked, slug)))
      continue;
    if (n_takers++ < 5) {
      size_t u = strlen(takers);
      snprintf(takers + u, sizeof takers - u, "%s%s", u ? "," : "", engine_site(e, k)->slug);
    }
  }
  if (n_takers)
    engine_sites_why(why, len, "it takes calls of %s%s (restore them or move them elsewhere)",
                     takers, n_takers > 5 ? ",..." : "");
  engine_unheard_takers(e, slug, why, len);
  for (size_t k = 0; k < e->n_cut; k++) {
    const cutover_t *c = &e->cut[k];
    if (c->state != CUTOVER_ACTIVE) continue;
    bool src = rules_list_has(&c->sources, slug), hub = rules_list_has(&c->hubs, slug);
    if (hub || (src && !hub_only))
      engine_sites_why(why, len, "cutover %llu names it as a %s (nircctl restore %s)",
                       (unsigned long long)c->id, hub ? "hub" : "source",
                       hub ? "--cutover ID" : slug);
  }
  for (size_t k = 0; k < e->n_sch; k++) {
    const schedule_t *s = &e->sch[k];
    bool src = rules_list_has(&s->sources, slug), hub = rules_list_has(&s->hubs, slug);
    if (hub || (src && !hub_only))
      engine_sites_why(why, len, "schedule '%s' names it as a %s (nircctl schedule remove %s)",
                       s->name, hub ? "hub" : "source", s->name);
  }
  for (size_t k = 0; k < e->n_ovf; k++) {
    const overflow_rule_t *o = &e->ovf[k];
    bool src = strcmp(o->source, slug) == 0, hub = rules_list_has(&o->hubs, slug);
    if (hub || (src && !hub_only))
      engine_sites_why(why, len, "overflow rule '%s' names it as a %s (nircctl overflow remove %s)",
                       o->name, hub ? "hub" : "source", o->name);
  }
  return why[0] != '\0';
}

/* ---- the reply ---- */

static void engine_reply_site(engine_t *e, void *c, uint64_t rid, const char *action,
                              const char *slug, const char *warning) {
  site_t *s = sites_find(e->sites, slug);
  if (!s) {
    engine_reply_error(e, c, rid, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL, "site '%.40s' vanished",
                       slug);
    return;
  }
  engine_arena_t a = {0};
  Nirc__SiteChangeReply *r = engine_arena_alloc(&a, sizeof *r);
  Nirc__CapacitySpec *cap = engine_arena_alloc(&a, sizeof *cap);
  if (r && cap) {
    nirc__site_change_reply__init(r);
    nirc__capacity_spec__init(cap);
    r->action = engine_arena_str(&a, action);
    r->site = engine_arena_str(&a, s->slug);
    r->name_en = engine_arena_str(&a, s->name_en);
    r->name_zh = engine_arena_str(&a, s->name_zh);
    r->hub = s->is_hub;
    r->lat = s->lat;
    r->lon = s->lon;
    cap->site = r->site;
    cap->configured = s->cap.configured;
    cap->seats = s->cap.seats;
    char roster[CAPACITY_ROSTER_TEXT_MAX];
    capacity_format_roster(&s->cap, roster, sizeof roster);
    cap->roster = engine_arena_str(&a, roster);
    cap->utc_offset_min = s->cap.utc_offset_min;
    cap->source_now = "";
    cap->note_now = "";
    r->capacity = cap;
    r->removed = s->life == SITE_REMOVED;
    r->removed_at_ms = s->removed_ms;
    r->removed_by = engine_arena_str(&a, s->removed_by);
  }
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_SITE_CHANGE;
  rep.site_change = r;
  engine_send_built_reply(e, c, rid, &a, r && cap && !a.failed, &rep, warning);
}

void engine_reply_site_deferred(engine_t *e, void *c, uint64_t rid, const char *subject,
                                const char *warning) {
  /* subject is "action:slug" (engine_op_site_change). */
  char action[16] = "";
  const char *colon = strchr(subject, ':');
  if (colon && (size_t)(colon - subject) < sizeof action) {
    memcpy(action, subject, (size_t)(colon - subject));
    action[colon - subject] = '\0';
  }
  const char *slug = colon ? colon + 1 : subject;
  site_t *s = sites_find(e->sites, slug);
  /* The change is durable (or failed for good): a snapshot of the database
   * may speak for the site again (engine_sites_sync_ok). */
  if (s && s->change_pending) {
    s->change_pending--;
    s->local_change_mono = engine_mono(e);
  }
  if (c) engine_reply_site(e, c, rid, action, slug, warning);
}

/* ---- the change ---- */

static json_t *engine_site_json(const site_t *s) {
  char roster[CAPACITY_ROSTER_TEXT_MAX];
  capacity_format_roster(&s->cap, roster, sizeof roster);
  return json_pack("{s:s, s:s, s:b, s:f, s:f, s:I, s:s, s:i, s:s}", "name_en", s->name_en,
                   "name_zh", s->name_zh, "hub", s->is_hub, "lat", s->lat, "lon", s->lon, "seats",
                   (json_int_t)s->cap.seats, "roster", roster, "utc_offset_min",
                   (int)s->cap.utc_offset_min, "life", sites_life_name(s->life));
}

/* The site as the request would make it, validated: 0, or NIRC_EINVAL
 * with a message that names the fix. `next` starts as the current site
 * (set) or a fresh one (add). */
static int engine_site_apply_request(const Nirc__SiteChangeRequest *req, site_t *next, bool adding,
                                     char *err, size_t errlen) {
  const char *en = req->name_en ? req->name_en : "", *zh = req->name_zh ? req->name_zh : "";
  if (adding && !*en) {
    snprintf(err, errlen, "a new site needs a name: --name 'Hubei' (and --name-zh)");
    return NIRC_EINVAL;
  }
  if (strlen(en) >= sizeof next->name_en || strlen(zh) >= sizeof next->name_zh) {
    snprintf(err, errlen, "a name is at most %zu bytes", sizeof next->name_en - 1);
    return NIRC_EINVAL;
  }
  if (!safetext_check(en, "name", err, errlen) || !safetext_check(zh, "name-zh", err, errlen))
    return NIRC_EINVAL;
  if (*en) nirc_strlcpy(next->name_en, en, sizeof next->name_en);
  if (*zh) nirc_strlcpy(next->name_zh, zh, sizeof next->name_zh);
  if (adding && !*zh) nirc_strlcpy(next->name_zh, en, sizeof next->name_zh);
  if (req->has_hub) next->is_hub = req->hub;
  if (req->has_position) {
    if (!isfinite(req->lat) || !isfinite(req->lon) || fabs(req->lat) > 90 || fabs(req->lon) > 180) {
      snprintf(err, errlen, "--lat is -90..90 and --lon -180..180 (degrees)");
      return NIRC_EINVAL;
    }
    next->lat = req->lat;
    next->lon = req->lon;
  }
  capacity_t cap = next->cap;
  if (req->seats) cap.seats = req->seats;
  char why[200];
  if (req->roster && *req->roster &&
      capacity_parse_roster(strcmp(req->roster, "none") == 0 ? "" : req->roster, &cap, why,
                            sizeof why) != 0) {
    snprintf(err, errlen, "%s", why);
    return NIRC_EINVAL;
  }
  if (req->has_utc_offset) {
    if (req->utc_offset_min < -840 || req->utc_offset_min > 840) {
      snprintf(err, errlen, "--utc-offset is minutes east of UTC, -840..840 (480: China)");
      return NIRC_EINVAL;
    }
    cap.utc_offset_min = req->utc_offset_min;
  }
  cap.configured = cap.seats > 0 || cap.n_shift > 0;
  if (cap.configured && capacity_validate(&cap, why, sizeof why) != 0) {
    snprintf(err, errlen, "%s", why);
    return NIRC_EINVAL;
  }
  next->cap = cap;
  return 0;
}

static void engine_site_record(const site_t *s, const char *city, bool removed, const char *who,
                               engine_rec_t *rec, engine_site_rec_t *sr) {
  *sr = (engine_site_rec_t){.slug = s->slug,
                            .name_en = s->name_en,
                            .name_zh = s->name_zh,
                            .city_en = city,
                            .is_hub = s->is_hub,
                            .lat = s->lat,
                            .lon = s->lon,
                            .cap = &s->cap,
                            .removed = removed,
                            .removed_by = who};
  *rec = (engine_rec_t){.kind = ENGINE_REC_SITE, .site = s->slug, .site_rec = sr};
}

static void engine_site_done(engine_t *e, const engine_req_t *rq, site_t *s, const char *action,
                             json_t *detail) {
  engine_audit(e, rq->operator_name, action, s->slug, detail);
  char what[96], subject[16 + SCENARIO_SLUG_MAX];
  snprintf(what, sizeof what, "%s of site %s", action, s->slug);
  snprintf(subject, sizeof subject, "%s:%s", action + 5 /* "site-" */, s->slug);
  s->change_pending++;
  engine_defer_on(e, rq, DEFER_SITE, what, subject);
  engine_group_end(e);
}

void engine_op_site_change(engine_t *e, const engine_req_t *rq,
                           const Nirc__SiteChangeRequest *req) {
  const char *act = req && req->action ? req->action : "";
  const char *slug = req && req->site ? req->site : "";
  char err[400];
  bool add = strcmp(act, "add") == 0, set = strcmp(act, "set") == 0,
       rm = strcmp(act, "remove") == 0;
  if (!add && !set && !rm) {
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                       "site: the change is add, set or remove");
    return;
  }
  if (!nirc_slug_valid(slug)) {
    char esc[96];
    safetext_escape(slug, esc, sizeof esc);
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                       "'%s' is not a site slug: a lowercase letter, then up to 30 lowercase "
                       "letters, digits or '-' (e.g. hubei, xian-2)",
                       esc);
    return;
  }
  site_t *s = sites_find(e->sites, slug);
  long idx = s ? (long)(s - e->sites->v) : -1;
  if ((set || rm) && (!s || s->life == SITE_REMOVED)) {
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                       "no site %s%s (nircctl status lists the sites; nircctl site add %s ... "
                       "adds it)",
                       slug, s ? " (it was removed)" : "", slug);
    return;
  }
  if (add && s && s->life == SITE_LIVE) {
    engine_refuse(e, rq, "site-add", slug, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "site %s already exists: change it with nircctl site set %s ...", slug, slug);
    return;
  }
  const char *city = req->city_en && *req->city_en ? req->city_en : NULL;
  if (city &&
      (strlen(city) >= SCENARIO_NAME_MAX || !safetext_check(city, "city", err, sizeof err))) {
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                       "--city is at most %d bytes of text%s%s", SCENARIO_NAME_MAX - 1,
                       strlen(city) >= SCENARIO_NAME_MAX ? "" : ": ",
                       strlen(city) >= SCENARIO_NAME_MAX ? "" : err);
    return;
  }
  if (rm) {
    if (engine_site_in_use(e, (size_t)idx, false, err, sizeof err)) {
      engine_refuse(e, rq, "site-remove", slug, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                    "site %s is in use; change this first: %s", slug, err);
      return;
    }
    if (!engine_can_record(e, rq, "site-remove", slug)) return;
    engine_group_begin(e);
    json_t *before = engine_site_json(s);
    int64_t at = e->io.wall_ms(e->io.ctx);
    engine_rec_t rec;
    engine_site_rec_t sr;
    engine_site_record(s, NULL, true, rq->operator_name, &rec, &sr);
    sr.removed_wall_ms = at;
    if (engine_store(e, &rec) != 0) {
      json_decref(before);
      engine_refuse_unrecorded(e, rq, "site-remove", slug, "the removal");
      return;
    }
    sites_remove(s, at, rq->operator_name);
    engine_site_reset(e, (size_t)idx);
    engine_site_done(e, rq, s, "site-remove",
                     json_pack("{s:o, s:s}", "before", before, "note", req->note ? req->note : ""));
    return;
  }
  /* add (new, or a removed slug again) or set */
  site_t next;
  if (s) {
    next = *s;
  } else {
    memset(&next, 0, sizeof next);
    nirc_strlcpy(next.slug, slug, sizeof next.slug);
  }
  if (add && s) { /* a removed site comes back: its old names do not */
    next.name_en[0] = next.name_zh[0] = '\0';
    next.is_hub = false;
  }
  if (engine_site_apply_request(req, &next, add, err, sizeof err) != 0) {
    engine_refuse(e, rq, add ? "site-add" : "site-set", slug, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                  "%s", err);
    return;
  }
  if (set && s->is_hub && !next.is_hub &&
      engine_site_in_use(e, (size_t)idx, true, err, sizeof err)) {
    engine_refuse(e, rq, "site-set", slug, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "%s is used as a hub; before it becomes a source: %s", slug, err);
    return;
  }
  const char *op = add ? "site-add" : "site-set";
  if (!engine_can_record(e, rq, op, slug)) return;
  engine_group_begin(e);
  engine_rec_t rec;
  engine_site_rec_t sr;
  engine_site_record(&next, city, false, NULL, &rec, &sr);
  if (engine_store(e, &rec) != 0) {
    engine_refuse_unrecorded(e, rq, op, slug, add ? "the new site" : "the change");
    return;
  }
  json_t *before = s ? engine_site_json(s) : json_null();
  if (!s) {
    if (sites_add(e->sites, slug, next.name_en, next.name_zh, next.is_hub) != 0 ||
        engine_sites_grown(e) != 0) {
      /* Stored but not in memory: the next snapshot of the database (or
       * a restart) brings it in; the operator hears it. */
      json_decref(before);
      engine_group_end(e);
      engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL,
                         "site %s stored, but out of memory adding it here: it is picked up "
                         "from the database on the next change or restart",
                         slug);
      return;
    }
    s = sites_find(e->sites, slug);
    idx = (long)(s - e->sites->v);
  } else if (s->life == SITE_REMOVED) {
    sites_revive(s, next.name_en, next.name_zh, next.is_hub);
    engine_site_reset(e, (size_t)idx);
  }
  nirc_strlcpy(s->name_en, next.name_en, sizeof s->name_en);
  nirc_strlcpy(s->name_zh, next.name_zh, sizeof s->name_zh);
  s->is_hub = next.is_hub;
  s->lat = next.lat;
  s->lon = next.lon;
  s->cap = next.cap;
  engine_site_done(e, rq, s, op,
                   json_pack("{s:o, s:o, s:s}", "before", before, "after", engine_site_json(s),
                             "note", req->note ? req->note : ""));
}

/* ---- a route the site's agent changed on its own ---- */

/* A failed directive sent again now rather than at its slow retry
 * (engine_check_timeouts): the agent just said its PBX answers. */
static void engine_resend_failed_now(engine_t *e, size_t i) {
  site_dir_t *d = &e->dirs[i];
  if (d->state != DIR_FAILED || !engine_site(e, i)->conn) return;
  d->state = DIR_PENDING;
  e->dirs_unsettled = true;
  e->eval_dirty = true;
  engine_send(e, i, SEND_AFTER_FAILURE);
}

static const char *const engine_revert_case_names[] = {
    [ENGINE_REVERT_NOTHING] = "nothing",     [ENGINE_REVERT_RESEND_END] = "resend-end",
    [ENGINE_REVERT_AFTER_END] = "after-end", [ENGINE_REVERT_ON_TIME] = "on-time",
    [ENGINE_REVERT_EARLY] = "early",
};

const char *engine_revert_case_name(engine_revert_case_t c) {
  return (unsigned)c <= ENGINE_REVERT_EARLY ? engine_revert_case_names[c] : "?";
}

engine_revert_case_t engine_revert_classify(const site_dir_t *d, const route_t *home, int64_t now,
                                            int64_t went, int64_t slack_ms) {
  /* Everything below compares with the route the site acknowledged: one
   * not known here (no Hello this epoch) says nothing the report can be
   * checked against. */
  if (!d->known || route_compare_version(&d->acked, home) != 0) return ENGINE_REVERT_NOTHING;
  bool newer_target = route_compare_version(&d->target, &d->acked) > 0;
  if (route_same(&d->acked, home))
    return newer_target ? ENGINE_REVERT_RESEND_END : ENGINE_REVERT_NOTHING;
  int64_t revert_at = d->acked.revert_at_ms;
  /* The end carried out here (and audited, naming the directive it left:
   * a second entry for it would be taken by the store for the same return
   * recorded by another leader) stands, whenever the agent went. */
  if (revert_at && revert_at <= now && newer_target) return ENGINE_REVERT_AFTER_END;
  /* revert_at 0: the move had no end, so any return is before it. A word
   * before revert_at here is early; one at or after it only by a time of
   * the return too early for the agent's reading errors (slack_ms). */
  if (!revert_at || now < revert_at || went < revert_at - slack_ms) return ENGINE_REVERT_EARLY;
  return ENGINE_REVERT_ON_TIME;
}

int64_t engine_revert_slack(const engine_t *e) {
  double speed = e->opts.clock_speed >= 1 ? e->opts.clock_speed : 1;
  return (int64_t)(1000.0 * speed);
}

int64_t engine_return_early(const engine_t *e, size_t i, const engine_went_home_t *went_home,
                            engine_early_t *early) {
  const route_t *left = &e->dirs[i].acked;
  bool believed = engine_home_at_judge(e, went_home, left->revert_at_ms) == ENGINE_HOME_AT_BELIEVED;
  int64_t went = believed ? went_home->at_ms : engine_now(e);
  *early =
      (engine_early_t){.how = ENGINE_EARLY_NO_END, .clock = NIRC__AGENT_CLOCK__AGENT_CLOCK_UNSAID};
  if (left->revert_at_ms) {
    early->ms = left->revert_at_ms - went;
    early->how = believed ? ENGINE_EARLY_AGENT : ENGINE_EARLY_AT_LEAST;
    if (believed) {
      early->clock = went_home->clock;
      early->elapsed = went_home->elapsed;
    }
  }
  return went;
}

void engine_on_agent_reverted(engine_t *e, size_t i, uint64_t epoch, uint64_t version,
                              const engine_went_home_t *went_home, bool unverified) {
  if (i >= engine_nsites(e)) return;
  engine_went_home_t settled;
  went_home = engine_went_home_settle(e, went_home, &settled);
  site_dir_t *d = &e->dirs[i];
  site_t *s = engine_site(e, i);
  route_t home;
  route_home(&home, s->slug);
  home.epoch = epoch;
  home.version = version;
  /* When it went: its own time where believed, else when its word
   * arrives (it went no later: a word held back while its link was down
   * would otherwise make an early return look on time). */
  engine_early_t early;
  int64_t went = engine_return_early(e, i, went_home, &early);
  switch (engine_revert_classify(d, &home, engine_now(e), went, engine_revert_slack(e))) {
  case ENGINE_REVERT_RESEND_END:
    /* Home by the agent's word already (it said so when the PBX did not
     * take home, and now that it did): the failed end of the rule goes
     * again now. Whether the PBX was read back is this event's. */
    engine_on_route_unverified(e, i, unverified);
    engine_resend_failed_now(e, i);
    return;
  case ENGINE_REVERT_NOTHING:
    log_info(LOG_SITE, s->slug,
             "agent's own return home from (%llu, %llu) changes nothing here: the site's route "
             "known here is (%llu, %llu)",
             (unsigned long long)epoch, (unsigned long long)version,
             (unsigned long long)d->acked.epoch, (unsigned long long)d->acked.version);
    return;
  case ENGINE_REVERT_AFTER_END:
    /* This controller has already carried out the rule's end (a newer
     * directive, recorded when it was made), but the site has not
     * acknowledged it: the agent's own return came first, or the PBX took
     * neither (the agent reports a return the PBX did not take, then again
     * once it took it). The site routes home by the agent's word: that is
     * its route here, so status does not keep the route it left (shown as
     * known once the agent confirms home); a failed directive is sent
     * again now rather than at its slow retry. */
    engine_inflow_acked(e, i, &d->acked, &home);
    d->acked = home;
    engine_on_route_unverified(e, i, unverified); /* home's mark, not the route left's */
    e->eval_dirty = true;
    engine_resend_failed_now(e, i);
    log_warn(LOG_SITE, s->slug,
             "agent went home on its own at revert_at of (%llu, %llu), before directive v%llu",
             (unsigned long long)epoch, (unsigned long long)version,
             (unsigned long long)d->target.version);
    return;
  case ENGINE_REVERT_ON_TIME:
    /* The rule's end, which this controller carries out and audits itself
     * (schedule-end, cutover-end) at its next tick. Taking the route here
     * first would leave that return home out of the trail. An agent whose
     * offset is measured reverts late rather than early (the Welcome's
     * time is a one-way trip old), so only a skewed clock gets past this. */
    log_info(LOG_SITE, s->slug,
             "agent's own return home from (%llu, %llu) at its revert_at: the rule's end, "
             "carried out here",
             (unsigned long long)epoch, (unsigned long long)version);
    return;
  case ENGINE_REVERT_EARLY: break;
  }
  /* Early on this controller's clock (when its word came, or by its own
   * believed time of it): no tick here records this return. Counted (an
   * agent that keeps doing it is held home), and audited now, as what it
   * is, under the rule of the directive the agent left
   * (site_dir_t.acked_kind), not the target's: a newer target may be
   * another rule's. */
  bool held =
      engine_returns_count(&d->returns, d->acked_kind, d->acked_rule_id, engine_mono(e), &early);
  engine_early_return(e, i, &home, went_home, &early, held);
  engine_returns_record(e, i, held); /* held: stored, and audited when it starts */
  e->eval_dirty = true;
  engine_inflow_acked(e, i, &d->acked, &home);
  d->acked = home;
  engine_on_route_unverified(e, i, unverified); /* home's mark, not the route left's */
  if (route_compare_version(&d->target, &home) == 0) {
    /* The target is the route the agent left. Its rule may still be in
     * force on this controller's clock (the agent's clock ran ahead of
     * what it measured, or the two crossed at revert_at): taking the
     * agent's route as the target lets the next plan decide as for any
     * site at home. A rule still in force moves it again under a new
     * version (a route change, audited); an ended one leaves it home. */
    d->target = home;
    d->state = DIR_IDLE;
    d->verify[0] = '\0';
    if (d->target.n_inbound == 0) {
      d->kind = RULE_NONE;
      d->rule_id = 0;
    }
  }
  log_warn(LOG_SITE, s->slug, "agent went home on its own at revert_at of (%llu, %llu)",
           (unsigned long long)epoch, (unsigned long long)version);
  if (held) {
    char words[ALARM_MESSAGE_MAX];
    engine_returns_words(e, i, words, sizeof words);
    log_error(LOG_SITE, s->slug, "%s", words);
  }
}

/* ---- an agent that keeps going home early ---- */

static const char *const engine_returns_state_names[] = {
    [ENGINE_RETURNS_NONE] = "none",
    [ENGINE_RETURNS_COUNTING] = "counting",
    [ENGINE_RETURNS_HELD] = "held",
};

const char *engine_returns_state_name(engine_returns_state_t s) {
  return (unsigned)s <= ENGINE_RETURNS_HELD ? engine_returns_state_names[s] : "?";
}

bool engine_returns_count(engine_returns_t *r, rule_kind_t kind, uint64_t rule_id, uint64_t mono,
                          const engine_early_t *early) {
  /* A held site stays held (the count goes on for the words): only an
   * operator ends it. Otherwise the window starts at the first return
   * counted, and one outside it starts a new count. */
  if (r->state == ENGINE_RETURNS_COUNTING && mono - r->first_mono <= ENGINE_RETURNS_WINDOW_MS) {
    r->n++;
  } else if (r->state != ENGINE_RETURNS_HELD) {
    r->state = ENGINE_RETURNS_COUNTING;
    r->n = 1;
    r->first_mono = mono;
  } else {
    r->n++;
  }
  r->last_mono = mono;
  r->early = *early;
  if (kind != RULE_NONE) { /* a return whose rule is not known here keeps the last known */
    r->kind = kind;
    r->rule_id = rule_id;
  }
  if (r->state == ENGINE_RETURNS_COUNTING && r->n >= ENGINE_RETURNS_HOLD) {
    r->state = ENGINE_RETURNS_HELD;
    return true;
  }
  return false;
}

static const char *const engine_early_how_names[] = {
    [ENGINE_EARLY_NOT_KEPT] = "not-kept",
    [ENGINE_EARLY_NO_END] = "no-revert-at",
    [ENGINE_EARLY_AT_LEAST] = "at-least",
    [ENGINE_EARLY_AGENT] = "agent",
};

const char *engine_early_how_name(engine_early_how_t h) {
  return (unsigned)h <= ENGINE_EARLY_AGENT ? engine_early_how_names[h] : "?";
}

void engine_early_figure(int64_t ms, char *buf, size_t len) {
  if (ms >= 1000) /* whole seconds, rounded down: never more than it was */
    snprintf(buf, len, "%lld s", (long long)(ms / 1000));
  else
    snprintf(buf, len, "%lld ms", (long long)ms);
}

void engine_early_words(const engine_early_t *x, char *buf, size_t len) {
  char n[32];
  engine_early_figure(x->ms, n, sizeof n);
  const char *clock = x->clock == NIRC__AGENT_CLOCK__AGENT_CLOCK_MEASURED     ? "offset measured"
                      : x->clock == NIRC__AGENT_CLOCK__AGENT_CLOCK_REMEMBERED ? "offset remembered"
                      : x->clock == NIRC__AGENT_CLOCK__AGENT_CLOCK_HOST       ? "host clock only"
                                                                              : "reading not said";
  switch (x->how) {
  case ENGINE_EARLY_NO_END: snprintf(buf, len, "a move without a revert_at"); break;
  case ENGINE_EARLY_AT_LEAST: /* when its word arrived here: it went no later */
    snprintf(buf, len, "at least %s before revert_at by this controller's clock", n);
    break;
  case ENGINE_EARLY_AGENT:
    if (x->elapsed)
      snprintf(buf, len, "%s before revert_at by its agent's count since (no clock offset in it)",
               n);
    else
      snprintf(buf, len, "%s before revert_at by its agent's time (%s)", n, clock);
    break;
  case ENGINE_EARLY_NOT_KEPT:
  default: snprintf(buf, len, "%s before revert_at (the holding leader's figure)", n); break;
  }
}

void engine_returns_words(engine_t *e, size_t i, char *buf, size_t len) {
  const engine_returns_t *r = &e->dirs[i].returns;
  char span[32], early[96], rule[48];
  engine_down_for(r->last_mono - r->first_mono, span, sizeof span);
  engine_early_words(&r->early, early, sizeof early);
  if (r->kind != RULE_NONE)
    snprintf(rule, sizeof rule, "%s %llu", rules_kind_name(r->kind),
             (unsigned long long)r->rule_id);
  else
    snprintf(rule, sizeof rule, "its rule");
  /* Under ALARM_MESSAGE_MAX with a 31-byte slug, ten-digit ids, up to
   * 999 returns and an early figure of six digits. */
  snprintf(buf, len,
           "held home: its agent went home early %u times in %s (last: %s, %s): its clock runs "
           "ahead; fix the host's clock (NTP), then nircctl readmit %s",
           r->n, span, rule, early, engine_site(e, i)->slug);
}
