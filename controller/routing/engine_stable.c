/* engine_stable.c: what keeps automatic routing from flapping, and what
 * says why a route changed. Part of the engine module (engine-int.h).
 *
 * - The hub health gate (hub_gate_t): a hub not healthy for less than
 *   hub_grace keeps the sources it answers; after that they re-home; a hub
 *   back from a loss takes sources again only once healthy for its return
 *   window, which doubles with each further loss in the hour.
 * - The note per site: what the engine is holding back and why (a held
 *   placement, a waiting return, a hub in its grace period, a refusal).
 * - The cause of every route change (route_cause_t): counted per site for
 *   nirc_route_changes_total and written to the audit trail.
 *
 * The capacity hysteresis itself is in the planner (planner.h, Damping);
 * this file only keeps its state between runs (engine_t.holds). */
#include "engine-int.h"

#include "clock.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *engine_route_cause_name(route_cause_t c) {
  static const char *const names[ROUTE_CAUSE_COUNT] = {
      [ROUTE_CAUSE_CUTOVER] = "cutover",           [ROUTE_CAUSE_SCHEDULE] = "schedule",
      [ROUTE_CAUSE_OVERFLOW] = "overflow",         [ROUTE_CAUSE_CUTOVER_END] = "cutover-end",
      [ROUTE_CAUSE_SCHEDULE_END] = "schedule-end", [ROUTE_CAUSE_OVERFLOW_END] = "overflow-end",
      [ROUTE_CAUSE_CAPACITY] = "capacity",         [ROUTE_CAUSE_HUB_LOST] = "hub-lost",
      [ROUTE_CAUSE_HUB_RETURN] = "hub-return",     [ROUTE_CAUSE_HUB_SWITCH] = "hub-switch",
      [ROUTE_CAUSE_ROLLBACK] = "rollback",         [ROUTE_CAUSE_SENDERS] = "senders",
      [ROUTE_CAUSE_NO_RULE] = "no-rule",           [ROUTE_CAUSE_AGENT_RETURN] = "agent-return",
  };
  return c < ROUTE_CAUSE_COUNT ? names[c] : "?";
}

uint64_t engine_route_changes(const engine_t *e, size_t i, route_cause_t cause) {
  return i < engine_nsites(e) && cause < ROUTE_CAUSE_COUNT ? e->changes[i][cause] : 0;
}

/* ---- hub health gate (see hub_gate_t) ---- */

/* Whether hub i can answer calls, as far as the controller can tell. */
static bool engine_hub_up(engine_t *e, size_t i) {
  const site_t *s = engine_site(e, i);
  return s->state == SITE_ONLINE && s->has_report && !s->last.pbx_unreadable;
}

/* How long a hub back from a loss must stay up: hub_return_ms, doubled
 * for each earlier loss within the hour, at most an hour. A hub that
 * keeps failing is trusted ever more slowly, so a flapping hub drags its
 * sources at most a few times an hour. */
static uint64_t engine_return_window(const engine_t *e, const hub_gate_t *g) {
  uint64_t w = e->opts.hub_return_ms;
  for (unsigned k = 1; k < g->losses && w < 3600000; k++)
    w *= 2;
  return w < 3600000 ? w : 3600000;
}

static void engine_gate_set(engine_t *e, size_t i, hub_gate_state_t to) {
  e->eval_dirty |= e->gate[i].state != to; /* planned on this tick */
  e->gate[i].state = to;
  e->gate[i].since_mono = engine_mono(e);
}

static void engine_gate_event(engine_t *e, size_t i, const char *action, const char *detail) {
  const site_t *s = engine_site(e, i);
  log_info(LOG_SITE, s->slug, "hub %s: %s", action, detail);
  engine_rec_t rec = {
      .kind = ENGINE_REC_EVENT, .site = s->slug, .peer = "-", .action = action, .detail = detail};
  engine_store(e, &rec);
}

/* Moves every hub's gate on by what the registry shows now. */
void engine_gate_update(engine_t *e) {
  uint64_t now = engine_mono(e);
  bool listed = e->hub_idx_valid;
  size_t n = listed ? e->n_hub_idx : engine_nsites(e);
  for (size_t k = 0; k < n; k++) {
    size_t i = listed ? e->hub_idx[k] : k;
    if (i >= engine_nsites(e) || !engine_site(e, i)->is_hub) continue;
    hub_gate_t *g = &e->gate[i];
    bool up = engine_hub_up(e, i);
    char why[200];
    /* One pass in state order, so zero grace or window acts at once. */
    if (g->state == HUB_UNSEEN && up) engine_gate_set(e, i, HUB_UP);
    if (g->state == HUB_UP && !up) engine_gate_set(e, i, HUB_FAILING);
    if (g->state == HUB_FAILING && up) engine_gate_set(e, i, HUB_UP);
    if (g->state == HUB_UP) g->never_up = false;
    if (g->state == HUB_FAILING && g->never_up && now - g->since_mono >= e->opts.hub_grace_ms) {
      /* Not back since this leader took over: no loss this leader saw. */
      g->never_up = false;
      engine_gate_set(e, i, HUB_UNSEEN);
    }
    if (g->state == HUB_FAILING && now - g->since_mono >= e->opts.hub_grace_ms) {
      if (!g->last_loss_mono || now - g->last_loss_mono >= 3600000) g->losses = 0;
      g->losses++;
      g->last_loss_mono = now;
      engine_gate_set(e, i, HUB_LOST);
      snprintf(why, sizeof why,
               "down for %u s: its sources go to their next hub or home; it takes sources "
               "again once healthy for %llu s (loss %u this hour)",
               e->opts.hub_grace_ms / 1000, (unsigned long long)(engine_return_window(e, g) / 1000),
               g->losses);
      engine_gate_event(e, i, "hub_lost", why);
    }
    if (g->state == HUB_LOST && up) engine_gate_set(e, i, HUB_RECOVERING);
    if (g->state == HUB_RECOVERING && !up) engine_gate_set(e, i, HUB_LOST);
    if (g->state == HUB_RECOVERING && now - g->since_mono >= engine_return_window(e, g)) {
      engine_gate_set(e, i, HUB_UP);
      snprintf(why, sizeof why, "healthy for %llu s after a loss: it takes sources again",
               (unsigned long long)(engine_return_window(e, g) / 1000));
      engine_gate_event(e, i, "hub_verified", why);
    }
  }
}

/* A new leader: every hub starts FAILING (see hub_gate_t), except those
 * the store says were lost and not verified since. */
void engine_gate_start(engine_t *e) {
  for (size_t i = 0; i < engine_nsites(e); i++) {
    hub_gate_t *g = &e->gate[i];
    if (!engine_site(e, i)->is_hub || g->state == HUB_LOST) continue;
    engine_gate_set(e, i, HUB_FAILING);
    g->never_up = true;
  }
}

void engine_load_hub_history(engine_t *e, const engine_hub_history_t *h, size_t n) {
  uint64_t now = engine_mono(e);
  int64_t wall = e->io.wall_ms(e->io.ctx);
  for (size_t k = 0; k < n; k++) {
    long i = engine_index(e, h[k].site);
    if (i < 0 || !engine_site(e, (size_t)i)->is_hub || !h[k].last_lost_wall_ms) continue;
    int64_t ago = wall - h[k].last_lost_wall_ms;
    if (ago < 0) ago = 0;
    hub_gate_t *g = &e->gate[i];
    if (ago < 3600000) {
      g->losses = h[k].losses_in_hour ? h[k].losses_in_hour : 1;
      g->last_loss_mono = (uint64_t)ago < now ? now - (uint64_t)ago : 1;
    }
    if (h[k].lost) {
      /* Lost and not verified since: its window starts again here. */
      if (!g->losses) g->losses = 1;
      if (!g->last_loss_mono) g->last_loss_mono = now ? now : 1;
      engine_gate_set(e, (size_t)i, HUB_LOST);
    }
  }
}

/* ---- capacity damping state, kept for the next leader ---- */

void engine_load_holds(engine_t *e, const engine_hold_t *h, size_t n) {
  for (size_t k = 0; k < n; k++) {
    long i = engine_index(e, h[k].site);
    if (i >= 0) e->holds[i] = h[k].hold;
  }
}

/* Stores the holds that differ from the engine's, then takes them. */
void engine_holds_update(engine_t *e, const planner_hold_t *next) {
  for (size_t i = 0; i < engine_nsites(e); i++) {
    if (memcmp(&e->holds[i], &next[i], sizeof next[i]) == 0) continue;
    e->holds[i] = next[i];
    engine_rec_t rec = {.kind = ENGINE_REC_HOLD, .site = engine_site(e, i)->slug, .hold = &next[i]};
    engine_store(e, &rec);
  }
}

/* The main hub of a route (the largest share not at home), or NULL. */
const char *engine_main_hub(const route_t *r, const char *self) {
  const char *hub = NULL;
  uint32_t best = 0;
  for (unsigned k = 0; k < r->n_share; k++)
    if (strcmp(r->share[k].site, self) != 0 && r->share[k].permille > best) {
      best = r->share[k].permille;
      hub = r->share[k].site;
    }
  return hub;
}

/* Whether site i must leave its hub now: the hub was lost (past its
 * grace), has not been seen in this leadership, is moved away or is
 * excluded. Such a move to the next
 * hub is not held back by its rule's wave: the calls have nowhere else. */
bool engine_hub_gone(const engine_t *e, size_t i) {
  const char *cur = engine_main_hub(&e->dirs[i].target, e->sites->v[i].slug);
  long h = cur ? engine_index((engine_t *)e, cur) : -1;
  if (h < 0) return false;
  hub_gate_state_t st = e->gate[h].state;
  if (st == HUB_LOST || st == HUB_RECOVERING || st == HUB_UNSEEN) return true;
  /* Moved away itself (an operator's emergency cutover of the hub) or
   * excluded: no hub any more, at once. */
  if (e->dirs[h].excluded_rule) return true;
  const plan_route_t *hp = e->have_plan ? &e->plan.routes[h] : NULL;
  return hp && hp->n_route > 0 && !(hp->n_route == 1 && strcmp(hp->route[0].site, cur) == 0);
}

/* The hubs of the rule behind a route, or NULL. */
static const slug_list_t *engine_rule_hubs(const engine_t *e, rule_kind_t kind, uint64_t id) {
  for (size_t k = 0; kind == RULE_CUTOVER && k < e->n_cut; k++)
    if (e->cut[k].id == id) return &e->cut[k].hubs;
  for (size_t k = 0; kind == RULE_SCHEDULE && k < e->n_sch; k++)
    if (e->sch[k].id == id) return &e->sch[k].hubs;
  for (size_t k = 0; kind == RULE_OVERFLOW && k < e->n_ovf; k++)
    if (e->ovf[k].id == id) return &e->ovf[k].hubs;
  return NULL;
}

/* What status says the engine is holding back for site i (d->note). */
void engine_site_note(engine_t *e, size_t i, const plan_route_t *pr, const char *alarm) {
  site_dir_t *d = &e->dirs[i];
  const char *self = engine_site(e, i)->slug;
  uint64_t now = engine_mono(e);
  d->note[0] = '\0';
  if (engine_undelivered(e, i)) {
    engine_undelivered_words(e, i, d->note, sizeof d->note);
    return;
  }
  if (engine_returns_withheld(e, i, pr)) { /* the move planned is not sent */
    engine_returns_words(e, i, d->note, sizeof d->note);
    return;
  }
  if (pr->note[0]) {
    nirc_strlcpy_utf8(d->note, pr->note, sizeof d->note);
    return;
  }
  if (alarm && *alarm) {
    nirc_strlcpy_utf8(d->note, alarm, sizeof d->note);
    return;
  }
  const hub_gate_t *g = &e->gate[i];
  if (engine_site(e, i)->is_hub && g->state == HUB_FAILING) {
    snprintf(d->note, sizeof d->note,
             "not healthy for %llu s: keeps the sources it answers for up to %u s, takes no new "
             "ones",
             (unsigned long long)((now - g->since_mono) / 1000), e->opts.hub_grace_ms / 1000);
    return;
  }
  if (engine_site(e, i)->is_hub && (g->state == HUB_LOST || g->state == HUB_RECOVERING)) {
    snprintf(d->note, sizeof d->note,
             "lost %llu s ago; takes sources again once healthy for %llu s%s",
             (unsigned long long)((now - g->last_loss_mono) / 1000),
             (unsigned long long)(engine_return_window(e, g) / 1000),
             g->state == HUB_RECOVERING ? " (healthy now, counting)" : "");
    return;
  }
  /* A source kept from its rule's first hub while that hub recovers. */
  const slug_list_t *hubs = engine_rule_hubs(e, pr->kind, pr->rule_id);
  const char *cur = engine_main_hub(&d->target, self);
  for (unsigned k = 0; hubs && k < hubs->n; k++) {
    if (cur && strcmp(hubs->v[k], cur) == 0) break;
    long h = engine_index(e, hubs->v[k]);
    if (h < 0) continue;
    const hub_gate_t *hg = &e->gate[h];
    if (hg->state == HUB_RECOVERING) {
      uint64_t w = engine_return_window(e, hg), up = now - hg->since_mono;
      snprintf(d->note, sizeof d->note,
               "returns to %s once it has been healthy for %llu s (%llu s to go)", hubs->v[k],
               (unsigned long long)(w / 1000),
               (unsigned long long)((w - (up < w ? up : w)) / 1000));
      return;
    }
  }
  /* Calls no route sends here, measured at their sources' proxies: the
   * operator sees the load its capacity checks count. */
  const plan_site_t *ps = &e->psites[i];
  if (engine_site(e, i)->is_hub && ps->inflow_unrouted_cps > 0 && ps->inflow_from[0]) {
    snprintf(d->note, sizeof d->note,
             "receives %.2f calls/s no route sends here (most from %s, measured at its proxy): "
             "counted in its capacity checks, not in its own demand",
             ps->inflow_unrouted_cps, ps->inflow_from);
    return;
  }
  /* A move its rule's wave in progress holds back. */
  engine_verify_waiting_note(e, i, pr, d->note, sizeof d->note);
}

/* Why site i's route changes from `old` to `want` (see route_cause_t). */
route_cause_t engine_cause(engine_t *e, size_t i, const route_t *old, const route_t *want,
                           rule_kind_t old_kind, rule_kind_t new_kind, int alarm_kind) {
  const char *self = engine_site(e, i)->slug;
  route_t a = *old, b = *want;
  a.n_inbound = b.n_inbound = 0;
  if (route_same(&a, &b) && old->revert_at_ms == want->revert_at_ms) return ROUTE_CAUSE_SENDERS;
  const char *oh = engine_main_hub(old, self), *nh = engine_main_hub(want, self);
  if (!nh) {
    if (e->dirs[i].excluded_rule) return ROUTE_CAUSE_ROLLBACK;
    /* Away by an older leader's directive, and this leader has no rule for
     * it: not the end of any rule it knows of (its rules come from the
     * database, and that leader's change never reached it). */
    if (oh && old_kind == RULE_NONE && old->epoch && old->epoch < e->epoch)
      return ROUTE_CAUSE_NO_RULE;
    /* Its hub was lost: that is why it moves, even when the next hub then
     * has no room for it. */
    if (oh && engine_hub_gone(e, i) && alarm_kind) return ROUTE_CAUSE_HUB_LOST;
    if (alarm_kind == PLAN_ALARM_CAPACITY || alarm_kind == PLAN_ALARM_WAITING)
      return ROUTE_CAUSE_CAPACITY;
    return old_kind == RULE_CUTOVER    ? ROUTE_CAUSE_CUTOVER_END
           : old_kind == RULE_OVERFLOW ? ROUTE_CAUSE_OVERFLOW_END
                                       : ROUTE_CAUSE_SCHEDULE_END;
  }
  if (oh && strcmp(oh, nh) != 0 && old_kind == new_kind) {
    long n = engine_index(e, nh);
    if (engine_hub_gone(e, i)) return ROUTE_CAUSE_HUB_LOST;
    for (size_t k = 0; e->have_plan && k < e->plan.n_capacity; k++)
      if (e->plan.capacity[k].refused && strcmp(e->plan.capacity[k].hub, oh) == 0)
        return ROUTE_CAUSE_CAPACITY;
    if (n >= 0 && e->gate[n].losses && engine_mono(e) - e->gate[n].last_loss_mono < 3600000)
      return ROUTE_CAUSE_HUB_RETURN;
    return ROUTE_CAUSE_HUB_SWITCH;
  }
  return new_kind == RULE_CUTOVER    ? ROUTE_CAUSE_CUTOVER
         : new_kind == RULE_OVERFLOW ? ROUTE_CAUSE_OVERFLOW
                                     : ROUTE_CAUSE_SCHEDULE;
}

/* Why a schedule's or an overflow rule's move of site i ends. Its route
 * carries the time the rule's move ends (revert_at: a window's end); past
 * it, that is when the rule ended, and the entry, stamped when the engine
 * sees it, says so, and how late when the controller did not run then
 * (the same rule as a cutover's expiry, engine_seen_late). A cutover's
 * expiry has its own entry (engine_expire). */
static void engine_end_why(engine_t *e, size_t i, rule_kind_t kind, uint64_t rule_id, char *buf,
                           size_t len) {
  const char *rule = rules_kind_name(kind);
  int64_t end = e->dirs[i].target.revert_at_ms;
  if (!end || end > engine_now(e)) {
    snprintf(buf, len, "%s %llu no longer moves it (ended, removed, disabled or released): home",
             rule, (unsigned long long)rule_id);
    return;
  }
  char at[100];
  engine_business_time(e, end, at, sizeof at);
  const char *what = kind == RULE_SCHEDULE ? "its window ended" : "its move ended";
  uint64_t late_ms = 0;
  switch (engine_seen_late(e, end, &late_ms)) {
  case ENGINE_SEEN_BEFORE_LEAD:
    snprintf(buf, len,
             "%s %llu no longer moves it: %s at %s, before this controller "
             "led: recorded when it took the lead: home",
             rule, (unsigned long long)rule_id, what, at);
    break;
  case ENGINE_SEEN_LATE:
    snprintf(buf, len,
             "%s %llu no longer moves it: %s at %s, recorded %llu s (real "
             "time) later: the controller did not run meanwhile: home",
             rule, (unsigned long long)rule_id, what, at, (unsigned long long)(late_ms / 1000));
    break;
  case ENGINE_SEEN_IN_TIME:
    snprintf(buf, len, "%s %llu no longer moves it: %s at %s: home", rule,
             (unsigned long long)rule_id, what, at);
    break;
  }
}

/* One sentence for people: why site i's route changes ("shaanxi lost
 * (not healthy for 15 s): re-homed to henan"). */
static void engine_cause_why(engine_t *e, size_t i, route_cause_t cause, const route_t *next,
                             rule_kind_t kind, uint64_t rule_id, char *buf, size_t len) {
  const char *self = engine_site(e, i)->slug;
  const char *oh = engine_main_hub(&e->dirs[i].target, self), *nh = engine_main_hub(next, self);
  char to[80];
  snprintf(to, sizeof to, "%s", nh ? nh : "home");
  const char *rule = rules_kind_name(kind);
  switch (cause) {
  case ROUTE_CAUSE_CUTOVER:
  case ROUTE_CAUSE_SCHEDULE:
  case ROUTE_CAUSE_OVERFLOW: snprintf(buf, len, "%s: to %s", next->reason, to); break;
  case ROUTE_CAUSE_CUTOVER_END:
    snprintf(buf, len, "%s %llu no longer moves it (ended, restored, expired or released): home",
             rule, (unsigned long long)rule_id);
    break;
  case ROUTE_CAUSE_SCHEDULE_END:
  case ROUTE_CAUSE_OVERFLOW_END: engine_end_why(e, i, kind, rule_id, buf, len); break;
  case ROUTE_CAUSE_NO_RULE:
    snprintf(buf, len,
             "its route to %s (epoch %llu) is no rule's in the database: home. A change the "
             "leader of epoch %llu made while the database was unreachable is kept in that "
             "controller's outage journal and is not applied when it arrives",
             oh ? oh : "a hub", (unsigned long long)e->dirs[i].target.epoch,
             (unsigned long long)e->dirs[i].target.epoch);
    break;
  case ROUTE_CAUSE_CAPACITY:
    snprintf(buf, len, "%s lacks the capacity (%s): to %s", oh ? oh : "its hub",
             e->alarm[i][0] ? e->alarm[i] : "see the capacity alarm", to);
    break;
  case ROUTE_CAUSE_HUB_LOST: {
    long h = oh ? engine_index(e, oh) : -1;
    bool away = h >= 0 && e->gate[h].state != HUB_LOST && e->gate[h].state != HUB_RECOVERING;
    if (away)
      snprintf(buf, len, "%s is moved away or excluded: re-homed to %s", oh, to);
    else
      snprintf(buf, len, "%s lost (not healthy for %u s): re-homed to %s", oh ? oh : "its hub",
               e->opts.hub_grace_ms / 1000, to);
    break;
  }
  case ROUTE_CAUSE_HUB_RETURN:
    snprintf(buf, len, "%s healthy again for its return window: back from %s", to,
             oh ? oh : "home");
    break;
  case ROUTE_CAUSE_HUB_SWITCH:
    snprintf(buf, len, "%s prefers %s now: from %s", next->reason, to, oh ? oh : "home");
    break;
  case ROUTE_CAUSE_ROLLBACK: snprintf(buf, len, "its move failed and was rolled back: home"); break;
  case ROUTE_CAUSE_SENDERS: snprintf(buf, len, "the sites it answers for changed"); break;
  case ROUTE_CAUSE_AGENT_RETURN: /* written by engine_early_return alone */
  case ROUTE_CAUSE_COUNT: buf[0] = '\0'; break;
  }
}

/* Counts and audits one route change of site i from `before` to `next`,
 * sent as directive (e->epoch, version): the entry names it, so that the
 * trail can say whether the site acknowledged it (ops.c, history). */
static void engine_route_entry(engine_t *e, size_t i, const route_t *from, const route_t *next,
                               uint64_t version, route_cause_t cause, rule_kind_t kind,
                               uint64_t rule_id, const char *why) {
  site_dir_t *d = &e->dirs[i];
  const char *self = engine_site(e, i)->slug;
  e->changes[i][cause]++;
  char before[200], after[200];
  route_format(from, self, before, sizeof before);
  route_format(next, self, after, sizeof after);
  json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "cause", engine_route_cause_name(cause),
                        "before", before, "after", after, "reason", next->reason, "why", why);
  if (j && rule_id) {
    json_object_set_new(j, "rule", json_string(rules_kind_name(kind)));
    json_object_set_new(j, "rule_id", json_integer((json_int_t)rule_id));
  }
  if (j && d->note[0]) json_object_set_new(j, "note", json_string(d->note));
  if (j) {
    json_object_set_new(j, "epoch", json_integer((json_int_t)e->epoch));
    json_object_set_new(j, "version", json_integer((json_int_t)version));
  }
  /* A return home names the directive whose move it ends: another
   * leader may record the same return late (reverted_epoch/version), and
   * the store marks whichever entry comes second (store.c). */
  if (j && from->epoch && engine_is_away(from, self) && !engine_is_away(next, self)) {
    json_object_set_new(j, "left_epoch", json_integer((json_int_t)from->epoch));
    json_object_set_new(j, "left_version", json_integer((json_int_t)from->version));
  }
  engine_audit(e, "engine", "route", self, j);
}

/* One route change of site i, before d->target moves to `next`. */
void engine_route_changed(engine_t *e, size_t i, const route_t *next, uint64_t version,
                          route_cause_t cause, rule_kind_t kind, uint64_t rule_id) {
  char why[400];
  engine_cause_why(e, i, cause, next, kind, rule_id, why, sizeof why);
  engine_route_entry(e, i, &e->dirs[i].target, next, version, cause, kind, rule_id, why);
}

/* ---- a return home no controller saw ---- */

static int engine_prior_cmp(const void *a, const void *b) {
  size_t x = ((const engine_prior_t *)a)->site, y = ((const engine_prior_t *)b)->site;
  return x < y ? -1 : x > y;
}

int engine_load_last_directives(engine_t *e, const engine_last_directive_t *x, size_t n) {
  free(e->prior);
  e->prior = NULL;
  e->n_prior = 0;
  if (n == 0) return 0;
  e->prior = calloc(n, sizeof *e->prior);
  if (!e->prior) return NIRC_ENOMEM;
  for (size_t k = 0; k < n; k++) {
    long i = engine_index(e, x[k].site);
    /* Only an older leader's move away. */
    if (i < 0 || x[k].epoch == 0 || x[k].epoch >= e->epoch ||
        route_share_of(&x[k].route, x[k].site) >= 1000)
      continue;
    e->prior[e->n_prior].site = (size_t)i;
    e->prior[e->n_prior++].d = x[k];
  }
  qsort(e->prior, e->n_prior, sizeof *e->prior, engine_prior_cmp);
  return 0;
}

bool engine_prior_rule(const engine_t *e, size_t i, const route_t *r, rule_kind_t *kind,
                       uint64_t *id) {
  if (!e->n_prior || !r->epoch || r->epoch >= e->epoch) return false;
  engine_prior_t key = {.site = i};
  const engine_prior_t *p = bsearch(&key, e->prior, e->n_prior, sizeof *e->prior, engine_prior_cmp);
  /* The directive the database has is the one the site still routes by:
   * the rule it names is the database's too (it is stored first). */
  if (!p || p->d.epoch != r->epoch || p->d.version != r->version || p->d.rule_kind == RULE_NONE)
    return false;
  *kind = p->d.rule_kind;
  *id = p->d.rule_id;
  return true;
}

/* Whether this leader's expiry entry of cutover `id` speaks for its
 * sources' return: it says they went home at its expiry by their own
 * revert_at. Written on this leader's first tick for a cutover it loaded
 * active and past its expiry (engine_tick.c), which may come after the
 * Hello. A cutover the database had as expired is not loaded here at all
 * (store/admin.c leaves its directives out). */
static bool engine_expiry_recorded(const engine_t *e, uint64_t id) {
  for (size_t k = 0; k < e->n_cut; k++) {
    const cutover_t *c = &e->cut[k];
    if (c->id != id) continue;
    return c->state == CUTOVER_EXPIRED ||
           (c->state == CUTOVER_ACTIVE && c->expires_ms && c->expires_ms <= engine_now(e));
  }
  return false;
}

/* The route entry of a return home site i's agent made on its own at the
 * revert_at of directive (rev_epoch, rev_version), which was `before`
 * (`applied` is home under that epoch and version) and which no
 * controller recorded then: stamped now, its why saying when it was and
 * why it is late. revert_at_ms 0: when is not known here (the key is left
 * out). No epoch and version: no directive of a controller carried this
 * change, so the trail joins no acknowledgement to it (net/ops.c).
 * rule_id 0: no rule is named (the rule keys are left out). */
/* ---- the agent's own time of its return home ---- */

static const char *engine_agent_clock_name(Nirc__AgentClock c) {
  switch (c) {
  case NIRC__AGENT_CLOCK__AGENT_CLOCK_MEASURED: return "measured";
  case NIRC__AGENT_CLOCK__AGENT_CLOCK_REMEMBERED: return "remembered";
  case NIRC__AGENT_CLOCK__AGENT_CLOCK_HOST: return "host";
  default: return "unsaid"; /* a newer agent's reading this controller does not know */
  }
}

const engine_went_home_t *engine_went_home_settle(const engine_t *e, const engine_went_home_t *in,
                                                  engine_went_home_t *out) {
  if (!in) return NULL;
  *out = *in;
  out->elapsed = false; /* the engine's own conclusion, never a caller's */
  /* A peer's number: checked before it is used (clock_place_ago). */
  int64_t at;
  if (clock_place_ago(in->ago_said, in->ago_ms, engine_now(e), &at) == CLOCK_AGO_PLACED) {
    out->at_ms = at;
    out->elapsed = true;
  }
  return out;
}

engine_home_at_t engine_home_at_judge(const engine_t *e, const engine_went_home_t *w,
                                      int64_t revert_at_ms) {
  if (!w || w->at_ms <= 0) return ENGINE_HOME_AT_UNSAID;
  /* This controller's now less the agent's monotonic count: no reading of
   * a clock that may be off is in it (engine_went_home_settle). */
  if (w->elapsed) return ENGINE_HOME_AT_BELIEVED;
  /* The agent reads this clock through an offset measured a one-way trip
   * late, so it goes late rather than early: a time after now here, or
   * well before the revert_at it went by, is a clock (or a bug) to look
   * at, not the time of the return. */
  if (w->at_ms > engine_now(e)) return ENGINE_HOME_AT_FUTURE;
  if (revert_at_ms && w->at_ms < revert_at_ms - ENGINE_WENT_HOME_SLACK_MS)
    return ENGINE_HOME_AT_EARLY;
  return ENGINE_HOME_AT_BELIEVED;
}

/* The agent's time of its return for an entry's why, into `said`:
 * believed, "at <time> (agent's clock, offset measured)"; doubted, what
 * it said and why it is not used; nothing when it said nothing. Returns
 * the time to stamp the entry with (0: when it is recorded). */
static int64_t engine_home_at_said(const engine_t *e, const engine_went_home_t *w,
                                   int64_t revert_at_ms, engine_home_at_t *verdict, char *said,
                                   size_t len) {
  *verdict = engine_home_at_judge(e, w, revert_at_ms);
  said[0] = '\0';
  if (*verdict == ENGINE_HOME_AT_UNSAID) return 0;
  char at[100], how[160];
  engine_business_time(e, w->at_ms, at, sizeof at);
  switch (w->elapsed ? NIRC__AGENT_CLOCK__AGENT_CLOCK_UNSAID : w->clock) {
  case NIRC__AGENT_CLOCK__AGENT_CLOCK_MEASURED:
    snprintf(how, sizeof how, "agent's clock, offset measured");
    break;
  case NIRC__AGENT_CLOCK__AGENT_CLOCK_REMEMBERED:
    snprintf(how, sizeof how, "agent's clock, offset remembered from its previous run");
    break;
  case NIRC__AGENT_CLOCK__AGENT_CLOCK_HOST:
    snprintf(how, sizeof how,
             "agent's host clock only: it knew no offset to this controller's clock, so this is "
             "off by as much as that host's clock is");
    break;
  default:
    snprintf(how, sizeof how,
             w->elapsed ? "this controller's clock less the time its agent counted since: no "
                          "clock offset in it"
                        : "agent's clock, reading not said");
    break;
  }
  switch (*verdict) {
  case ENGINE_HOME_AT_BELIEVED: snprintf(said, len, "at %s (%s)", at, how); return w->at_ms;
  case ENGINE_HOME_AT_FUTURE:
    snprintf(said, len,
             "its agent says it went at %s (%s), %lld s after this controller's now: not "
             "believed (check that host's clock and NTP)",
             at, how, (long long)((w->at_ms - engine_now(e) + 999) / 1000));
    return 0;
  default:
    snprintf(said, len,
             "its agent says it went at %s (%s), %lld s before that revert_at: not believed "
             "(check that host's clock and NTP)",
             at, how, (long long)((revert_at_ms - w->at_ms) / 1000));
    return 0;
  }
}

/* Appends the agent's time (engine_home_at_said) to a why that guesses
 * or does not say when: believed, "; it went <said>"; doubted, "; <said>,
 * so this entry keeps its guess". */
static void engine_home_at_append(char *why, size_t len, engine_home_at_t verdict,
                                  const char *said) {
  size_t n = strlen(why);
  if (verdict == ENGINE_HOME_AT_UNSAID || n >= len) return;
  snprintf(why + n, len - n, verdict == ENGINE_HOME_AT_BELIEVED ? "; it went %s" : "; %s", said);
}

static void engine_own_return(engine_t *e, size_t i, const char *before, const route_t *applied,
                              route_cause_t cause, rule_kind_t kind, uint64_t rule_id,
                              int64_t revert_at_ms, const char *why, const engine_went_home_t *w,
                              int64_t happened_ms, const engine_early_t *early) {
  const char *self = engine_site(e, i)->slug;
  char after[200];
  route_format(applied, self, after, sizeof after);
  e->changes[i][cause]++;
  json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "cause",
                        engine_route_cause_name(cause), "before", before, "after", after, "reason",
                        applied->reason, "why", why, "reverted_epoch", (json_int_t)applied->epoch,
                        "reverted_version", (json_int_t)applied->version);
  if (j && rule_id) {
    json_object_set_new(j, "rule", json_string(rules_kind_name(kind)));
    json_object_set_new(j, "rule_id", json_integer((json_int_t)rule_id));
  }
  if (j && revert_at_ms)
    json_object_set_new(j, "reverted_at_ms", json_integer((json_int_t)revert_at_ms));
  if (j && w && w->at_ms > 0) {
    /* The agent's word as it gave it, and whether the entry's time is it. */
    json_object_set_new(j, "went_home_at_ms", json_integer((json_int_t)w->at_ms));
    json_object_set_new(j, "went_home_clock",
                        json_string(w->elapsed ? "elapsed" : engine_agent_clock_name(w->clock)));
    json_object_set_new(j, "went_home_believed", json_boolean(happened_ms > 0));
  }
  if (j && early && early->how != ENGINE_EARLY_NO_END) {
    /* How early (agent-return), and what it is measured by. */
    json_object_set_new(j, "early_ms", json_integer((json_int_t)early->ms));
    json_object_set_new(j, "early_measured", json_string(engine_early_how_name(early->how)));
  }
  engine_audit_at(e, "engine", "route", self, j, happened_ms);
}

void engine_early_return(engine_t *e, size_t i, const route_t *home,
                         const engine_went_home_t *went_home, const engine_early_t *early,
                         bool held) {
  const site_dir_t *d = &e->dirs[i];
  const route_t *left = &d->acked;
  const char *self = engine_site(e, i)->slug;
  /* The rule of the directive the agent left, not the target's (a newer
   * directive may be another rule's). */
  bool named = d->acked_kind != RULE_NONE;
  char end[160], why[1024], before[200], said[400], then[200];
  engine_home_at_t verdict;
  int64_t happened =
      engine_home_at_said(e, went_home, left->revert_at_ms, &verdict, said, sizeof said);
  if (held)
    snprintf(then, sizeof then,
             "held home now, after %u such returns: no move with an end is sent to it until "
             "readmitted (nircctl readmit %s)",
             d->returns.n, self);
  else
    snprintf(then, sizeof then, "while it is in force the next plan moves the site again");
  if (named)
    snprintf(end, sizeof end, "the end of %s %llu", rules_kind_name(d->acked_kind),
             (unsigned long long)d->acked_rule_id);
  else
    snprintf(end, sizeof end, "the end of the rule that moved it (the rule is not known here)");
  if (left->revert_at_ms) {
    char at[100], n[32];
    engine_business_time(e, left->revert_at_ms, at, sizeof at);
    engine_early_figure(early->ms, n, sizeof n);
    /* Its word may come after the revert_at (queued while its link was
     * down): the move's end is then past here, though not by this
     * return. */
    const char *ended = left->revert_at_ms <= engine_now(e)
                            ? "that revert_at has passed here since its return"
                            : "the rule did not end here";
    if (early->how == ENGINE_EARLY_AGENT)
      /* By its own time of it (said below): early on the agent's reading
       * of this controller's clock, which an agent keeping to its
       * revert_at never is. */
      snprintf(why, sizeof why,
               "its agent went home on its own %s before %s, %s, by its agent's own time of "
               "it: the agent did not keep to that revert_at on its reading of this "
               "controller's clock; %s, and %s",
               n, end, at, ended, then);
    else
      /* Said when the agent's word arrives: it went no later than that,
       * so at least this much early. */
      snprintf(why, sizeof why,
               "its agent went home on its own at its revert_at, at least %s before %s on this "
               "controller's clock, %s: the agent's clock runs ahead of this controller's; %s, "
               "and %s",
               n, end, at, ended, then);
  } else {
    snprintf(why, sizeof why,
             "its agent went home on its own, before %s on this controller's clock: the rule "
             "did not end here, and %s",
             end, then);
  }
  engine_home_at_append(why, sizeof why, verdict, said);
  route_format(left, self, before, sizeof before);
  route_t applied = *home; /* with the reason the agent gives its route (site-agent/agent.c) */
  nirc_strlcpy(applied.reason, ROUTE_REASON_REVERTED, sizeof applied.reason);
  engine_own_return(e, i, before, &applied, ROUTE_CAUSE_AGENT_RETURN, d->acked_kind,
                    d->acked_rule_id, left->revert_at_ms, why, went_home, happened, early);
}

void engine_late_revert(engine_t *e, size_t i, const route_t *applied,
                        const engine_went_home_t *went_home) {
  engine_prior_t key = {.site = i};
  engine_prior_t *p =
      e->n_prior ? bsearch(&key, e->prior, e->n_prior, sizeof *e->prior, engine_prior_cmp) : NULL;
  /* Only a return by the revert_at of the newest directive's move (or
   * of an older one of its leader: below), and none a cutover's expiry
   * entry in the database already stands for. */
  if (!p || p->seen || !p->d.newest || p->d.expiry_recorded) return;
  p->seen = true;
  engine_last_directive_t pd = p->d;
  site_dir_t *d = &e->dirs[i];
  const char *self = engine_site(e, i)->slug;
  /* The agent keeps the (epoch, version) of the directive it reverted and
   * says why in its route's reason (site-agent/agent.c): nothing else
   * changes its route without a newer version. A site still away, or
   * home under a newer directive, has nothing unrecorded to tell.
   *
   * Only sources come here: a hub's own directive (its inbound list)
   * never carries a revert_at (the planner gives one only to a move
   * away, and a hub's route is home plus the sources that send to it), so
   * its agent never changes it on its own; the sources' returns change
   * its inbound list at the next plan, recorded then (cause senders). */
  if (applied->epoch != pd.epoch || applied->version > pd.version ||
      route_share_of(applied, self) < 1000 || strcmp(applied->reason, ROUTE_REASON_REVERTED) != 0)
    return;
  /* Home by an older directive of that leader than the newest on record:
   * the newest (its rule changed: a cutover extended while the site's
   * link was down) never reached the agent, and no route entry records
   * the return from the older one, unless that leader sent the site home
   * in between (then the store marks this entry as the same return as
   * that one: store.c). This leader loaded only the newest directive:
   * when and from where the agent went home are not known here. */
  bool older = applied->version < pd.version;
  if (!older && pd.revert_at_ms == 0) return;
  route_cause_t cause;
  char end[96];
  switch (pd.rule_kind) {
  case RULE_SCHEDULE:
    cause = ROUTE_CAUSE_SCHEDULE_END;
    snprintf(end, sizeof end, "the end of schedule %llu's window", (unsigned long long)pd.rule_id);
    break;
  case RULE_OVERFLOW:
    cause = ROUTE_CAUSE_OVERFLOW_END;
    snprintf(end, sizeof end, "the end of overflow rule %llu", (unsigned long long)pd.rule_id);
    break;
  case RULE_CUTOVER:
    if (engine_expiry_recorded(e, pd.rule_id)) {
      log_info(LOG_SITE, self,
               "went home by its own revert_at under directive (%llu, %llu): the expiry of "
               "cutover %llu records it",
               (unsigned long long)applied->epoch, (unsigned long long)applied->version,
               (unsigned long long)pd.rule_id);
      return;
    }
    cause = ROUTE_CAUSE_CUTOVER_END;
    snprintf(end, sizeof end, "the expiry of cutover %llu", (unsigned long long)pd.rule_id);
    break;
  default: return; /* no rule sets a revert_at on anything else */
  }
  char before[200], at[400], why[1024], said[400];
  engine_home_at_t verdict;
  /* An older directive's revert_at is not known here: only the future is
   * checked then. */
  int64_t happened =
      engine_home_at_said(e, went_home, older ? 0 : pd.revert_at_ms, &verdict, said, sizeof said);
  if (older) {
    snprintf(before, sizeof before, "away by directive v%llu (its route is not known here)",
             (unsigned long long)applied->version);
    if (verdict == ENGINE_HOME_AT_BELIEVED)
      snprintf(at, sizeof at, "%s", said);
    else
      snprintf(at, sizeof at, "before it connected (when is not known here)");
    snprintf(why, sizeof why,
             "its agent went home on its own at the revert_at of directive v%llu, %s; the newest "
             "directive on record, v%llu under %s %llu, had not reached it (its rule changed "
             "while its link was down): recorded late, when the agent connected to this leader "
             "(epoch %llu): the leader of epoch %llu recorded no later directive for it",
             (unsigned long long)applied->version, at, (unsigned long long)pd.version,
             rules_kind_name(pd.rule_kind), (unsigned long long)pd.rule_id,
             (unsigned long long)e->epoch, (unsigned long long)pd.epoch);
    if (verdict != ENGINE_HOME_AT_BELIEVED) engine_home_at_append(why, sizeof why, verdict, said);
  } else {
    route_format(&pd.route, self, before, sizeof before);
    engine_business_time(e, pd.revert_at_ms, at, sizeof at);
    /* When it went: the agent's word (by its revert_at, or when it
     * started again past it), stamped then; else (an older agent, or a
     * time not believed) at its revert_at if it ran then, else when it
     * started again, said so and stamped when this leader learnt of it. */
    char went[900];
    if (verdict == ENGINE_HOME_AT_BELIEVED)
      snprintf(went, sizeof went, "%s, by its directive's revert_at, %s", said, at);
    else
      snprintf(went, sizeof went,
               "at its directive's revert_at, %s (later if the agent itself was not running "
               "then)",
               at);
    snprintf(why, sizeof why,
             "its agent went home on its own %s, %s; recorded late, when the agent connected "
             "to this leader (epoch %llu): the leader of epoch %llu that sent the move (v%llu) "
             "recorded no later directive for it (it was not running, or not leading, then)",
             went, end, (unsigned long long)e->epoch, (unsigned long long)pd.epoch,
             (unsigned long long)pd.version);
    if (verdict != ENGINE_HOME_AT_BELIEVED) engine_home_at_append(why, sizeof why, verdict, said);
  }
  engine_own_return(e, i, before, applied, cause, pd.rule_kind, pd.rule_id,
                    older ? 0 : pd.revert_at_ms, why, went_home, happened, NULL);
  log_warn(LOG_SITE, self,
           "went home by its own revert_at (%s) under directive (%llu, %llu) "
           "while no controller recorded it: recorded now",
           at, (unsigned long long)applied->epoch, (unsigned long long)applied->version);
  /* Confirmed with a directive of this epoch, home as it is: the newest
   * directive on record is then home, and the next leader does not
   * record this return a second time. */
  d->target.epoch = e->epoch;
  d->target.version = 1;
  d->ack_stored = 0;
  d->kind = RULE_NONE;
  d->rule_id = 0;
  engine_send(e, i, SEND_NEW);
}

/* ---- a return home by a revert_at its rule moved on from ---- */

/* The cause of the end of a move of rule kind `k` (ROUTE_CAUSE_COUNT:
 * none; only rules end moves). */
static route_cause_t engine_end_cause(rule_kind_t k) {
  return k == RULE_CUTOVER    ? ROUTE_CAUSE_CUTOVER_END
         : k == RULE_SCHEDULE ? ROUTE_CAUSE_SCHEDULE_END
         : k == RULE_OVERFLOW ? ROUTE_CAUSE_OVERFLOW_END
                              : ROUTE_CAUSE_COUNT;
}

void engine_hello_reverted(engine_t *e, size_t i, const route_t *applied,
                           const engine_went_home_t *went_home) {
  site_dir_t *d = &e->dirs[i];
  const char *self = engine_site(e, i)->slug;
  const route_t *left = &d->acked;
  int64_t now = engine_now(e);
  /* Home by the revert_at of the move it acknowledged here, passed on
   * this controller's clock too (an agent's clock ahead of it is
   * engine_on_agent_reverted's case), while the move still stands here
   * under a newer directive of this rule (the rule changed after the
   * link dropped: a cutover amended to end later) that never reached the
   * agent. A target home, or the same directive, was or will be recorded
   * by what ends the move (an expiry, a window's end, a restore). */
  if (!d->known || strcmp(applied->reason, ROUTE_REASON_REVERTED) != 0 ||
      route_share_of(applied, self) < 1000 || route_compare_version(applied, left) != 0 ||
      route_share_of(left, self) >= 1000 || !left->revert_at_ms || left->revert_at_ms > now ||
      !engine_is_away(&d->target, self) || route_compare_version(&d->target, left) <= 0 ||
      d->target.epoch != e->epoch || (d->target.revert_at_ms && d->target.revert_at_ms <= now))
    return;
  rule_kind_t kind = d->kind; /* the target's: the move back */
  uint64_t rule_id = d->rule_id;
  if (engine_end_cause(kind) == ROUTE_CAUSE_COUNT) return; /* no rule explains it: sent home */
  /* The return ended the move of the directive it left, under its own
   * rule (site_dir_t.acked_kind): another rule than the target's when one
   * ended and another moved the site since. Not known here, the entry
   * says so, names no rule and takes the end of the target's kind. */
  rule_kind_t left_kind = d->acked_kind;
  uint64_t left_id = d->acked_rule_id;
  route_cause_t end = engine_end_cause(left_kind != RULE_NONE ? left_kind : kind);
  char rule[96], now_rule[64];
  if (left_kind != RULE_NONE)
    snprintf(rule, sizeof rule, "%s %llu", rules_kind_name(left_kind), (unsigned long long)left_id);
  else
    snprintf(rule, sizeof rule, "its rule (the rule is not known here)");
  snprintf(now_rule, sizeof now_rule, "%s %llu", rules_kind_name(kind),
           (unsigned long long)rule_id);
  char at[100], until[100], why[1024], said[400];
  engine_home_at_t verdict;
  int64_t happened =
      engine_home_at_said(e, went_home, left->revert_at_ms, &verdict, said, sizeof said);
  engine_business_time(e, left->revert_at_ms, at, sizeof at);
  if (d->target.revert_at_ms)
    engine_business_time(e, d->target.revert_at_ms, until, sizeof until);
  else
    snprintf(until, sizeof until, "no end");
  if (verdict == ENGINE_HOME_AT_BELIEVED)
    snprintf(why, sizeof why,
             "its agent went home on its own %s, by the revert_at of directive v%llu (epoch "
             "%llu), %s: the end %s had when it was sent; directive v%llu, of %s, which moves "
             "it until %s, had not reached it (its link was down); recorded late, when the "
             "agent connected again",
             said, (unsigned long long)left->version, (unsigned long long)left->epoch, at, rule,
             (unsigned long long)d->target.version, now_rule, until);
  else {
    snprintf(why, sizeof why,
             "its agent went home on its own at the revert_at of directive v%llu (epoch %llu), "
             "%s (later if the agent itself was not running then): the end %s had when it was "
             "sent; directive v%llu, of %s, which moves it until %s, had not reached it (its "
             "link was down); recorded late, when the agent connected again",
             (unsigned long long)left->version, (unsigned long long)left->epoch, at, rule,
             (unsigned long long)d->target.version, now_rule, until);
    engine_home_at_append(why, sizeof why, verdict, said);
  }
  char before[200];
  route_format(left, self, before, sizeof before);
  engine_own_return(e, i, before, applied, end, left_kind, left_id, left->revert_at_ms, why,
                    went_home, happened, NULL);
  log_warn(LOG_SITE, self,
           "went home by the revert_at (%s) of directive (%llu, %llu) while its link was down; "
           "its rule still moves it: recorded now, and sent back (v%llu)",
           at, (unsigned long long)left->epoch, (unsigned long long)left->version,
           (unsigned long long)d->target.version);
  /* The move back is the Hello's resend of the target (engine_on_hello):
   * not a new directive, so no plan records it. Recorded here, from home,
   * under the target's version (its acknowledgement joins it). The target
   * is this leader's: one newer than the route the site acknowledged is
   * never an older leader's (that is kept only as the route a first
   * Hello reports, equal to it). */
  const route_t *to = &d->target;
  const char *hub = engine_main_hub(to, self);
  snprintf(why, sizeof why,
           "%s: to %s again, sent when its agent connected: it had gone home by the revert_at of "
           "directive v%llu",
           to->reason, hub ? hub : "its hub", (unsigned long long)left->version);
  engine_route_entry(e, i, applied, to, to->version,
                     kind == RULE_CUTOVER    ? ROUTE_CAUSE_CUTOVER
                     : kind == RULE_SCHEDULE ? ROUTE_CAUSE_SCHEDULE
                                             : ROUTE_CAUSE_OVERFLOW,
                     kind, rule_id, why);
}
