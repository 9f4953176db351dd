/* engine_verify: wave verification by moved calls. Part of the engine
 * module (engine-int.h); no I/O.
 *
 * A wave of moves is verified when every source acknowledged, its hubs
 * stayed online for the verification window (engine.c), and - for a source
 * that measures where its calls go (LoadReport.routing_measured: its edge
 * counted every call it sent to each other site) - the calls it sent to
 * each hub during the window match the share its acknowledged route gives
 * that hub. An acknowledgement says the agent configured its PBX (and,
 * with a read-back, that the PBX holds that configuration); only the
 * counts say the calls actually go there.
 *
 * The window's counts start at the source's first report received after
 * the window started (its baseline), because that report's interval may
 * still hold calls sent before the apply. With N calls arriving at the
 * source after it and a share p to hub h, the calls sent to h are
 * Binomial(N, p) if each call is sent independently (Kamailio's weighted
 * dispatcher spreads calls more evenly than that, so this bounds the
 * spread from above). The source is judged not to move its calls when
 *
 *   |sent - N p| > ENGINE_VERIFY_Z * sqrt(N p (1 - p)) + ENGINE_VERIFY_SLACK
 *   and max(sent, N p) >= ENGINE_VERIFY_MIN_CALLS
 *
 * Four standard deviations: a correct route fails a window with
 * probability about 6e-5 per hub (normal approximation), while a route the
 * PBX ignores (0 calls sent where N p are expected) fails as soon as N p
 * exceeds the slack and the minimum. The slack covers rounding of shares
 * to the PBX's weights (1 % steps for Kamailio); the minimum keeps a
 * handful of calls from ever failing a wave (small counts prove nothing).
 *
 * Sources that do not measure routing (sim, exec without per-destination
 * counts, older agents), and windows with no calls at all, are verified on
 * acknowledgements and hub health as before, and their text says so:
 * "routing not measured", "no moved calls seen yet". */
#include "engine-int.h"

#include "log.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENGINE_VERIFY_Z         4.0
#define ENGINE_VERIFY_SLACK     2.0
#define ENGINE_VERIFY_MIN_CALLS 5.0

/* Appends to buf (always terminated; cut when full). */
static void engine_verify_cat(char *buf, size_t len, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void engine_verify_cat(char *buf, size_t len, size_t *used, const char *fmt, ...) {
  if (*used >= len) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf + *used, len - *used, fmt, ap);
  va_end(ap);
  if (n > 0) *used += (size_t)n < len - *used ? (size_t)n : len - *used;
}

void engine_verify_start(engine_t *e, wave_t *w) {
  if (!w->base) return;
  for (unsigned k = 0; k < w->n; k++) {
    const site_t *s = engine_site(e, w->sources[k]);
    const route_t *r = &e->dirs[w->sources[k]].target;
    w->base[k].start_reports = s->reports_total;
    w->base[k].based = false;
    w->base[k].epoch = r->epoch;
    w->base[k].version = r->version;
  }
}

/* Source k's baseline: its totals now. */
static void engine_verify_base(engine_t *e, wave_t *w, unsigned k) {
  wave_base_t *b = &w->base[k];
  const site_t *s = engine_site(e, w->sources[k]);
  const route_t *r = &e->dirs[w->sources[k]].target;
  b->based = true;
  b->reports = s->reports_total;
  b->measured = s->routing_measured_total;
  b->own = s->own_calls_total;
  b->n_share = r->n_share < ROUTE_MAX_SHARES ? r->n_share : ROUTE_MAX_SHARES;
  for (unsigned h = 0; h < b->n_share; h++) {
    nirc_strlcpy(b->site[h], r->share[h].site, sizeof b->site[h]);
    b->sent[h] = sites_sent_to(s, r->share[h].site, s->reports_total, &b->sent_known[h]);
  }
}

void engine_verify_sample(engine_t *e, wave_t *w) {
  if (!w->base || !w->all_acked) return;
  for (unsigned k = 0; k < w->n; k++) {
    const site_t *s = engine_site(e, w->sources[k]);
    if (!w->base[k].based && s->reports_total > w->base[k].start_reports)
      engine_verify_base(e, w, k);
  }
}

/* Judges source k of wave w: writes its text into d->verify and returns
 * false when its calls demonstrably do not go where its route sends them. */
static bool engine_verify_source(engine_t *e, wave_t *w, unsigned k) {
  size_t i = w->sources[k];
  site_dir_t *d = &e->dirs[i];
  const site_t *s = engine_site(e, i);
  const wave_base_t *b = &w->base[k];
  const route_t *r = &d->target;
  /* Routed anew since the window started (it went home, its rule ended or
   * changed): the wave's move is no longer what it routes by, and a newer
   * wave (or none) speaks for it. */
  if (r->epoch != b->epoch || r->version != b->version) return true;
  size_t len = sizeof d->verify, used = 0;
  char *buf = d->verify;
  buf[0] = '\0';
  uint64_t reports = b->based ? s->reports_total - b->reports : 0;
  uint64_t measured = b->based ? s->routing_measured_total - b->measured : 0;
  if ((!b->based || reports == 0) && b->mismatch) {
    /* Found not moving, and no report since: it still is, as far as the
     * controller knows (its text stays). */
    return false;
  }
  if (!b->based || reports == 0) {
    /* No full report interval since the apply: nothing was counted. */
    engine_verify_cat(buf, len, &used, "verified on acknowledgement and hub health; %s",
                      s->routing_measured ? "no moved calls seen yet (no report since it applied)"
                                          : "routing not measured");
    return true;
  }
  if (measured != reports) {
    engine_verify_cat(buf, len, &used,
                      "verified on acknowledgement and hub health; routing not measured (%s)",
                      measured ? "not in every report of the window"
                               : "its agent does not count "
                                 "calls per destination");
    return true;
  }
  uint64_t n = s->own_calls_total - b->own;
  if (n == 0) {
    engine_verify_cat(buf, len, &used,
                      "verified on acknowledgement and hub health; no moved calls seen yet (no "
                      "calls arrived at %s in the window)",
                      s->slug);
    return true;
  }
  /* Judge every share that is not home. */
  char got[160] = "";
  size_t gused = 0;
  bool ok = true, judged = false;
  for (unsigned h = 0; h < r->n_share && h < ROUTE_MAX_SHARES; h++) {
    const route_share_t *sh = &r->share[h];
    if (strcmp(sh->site, s->slug) == 0 || sh->permille == 0) continue;
    bool known = true;
    uint64_t now = sites_sent_to(s, sh->site, b->reports, &known);
    unsigned j = 0; /* the share's baseline, by name: the route may have changed since */
    while (j < b->n_share && strcmp(b->site[j], sh->site) != 0)
      j++;
    if (j == b->n_share || !b->sent_known[j] || !known || now < b->sent[j]) {
      engine_verify_cat(got, sizeof got, &gused, "%s%s: count lost", gused ? ", " : "", sh->site);
      continue;
    }
    uint64_t x = now - b->sent[j];
    double p = sh->permille / 1000.0, expect = (double)n * p;
    double tol = ENGINE_VERIFY_Z * sqrt((double)n * p * (1.0 - p)) + ENGINE_VERIFY_SLACK;
    double big = (double)x > expect ? (double)x : expect;
    bool bad = fabs((double)x - expect) > tol && big >= ENGINE_VERIFY_MIN_CALLS;
    judged |= big >= ENGINE_VERIFY_MIN_CALLS;
    if (bad && ok) {
      /* The first hub that fails names the condition: alarm and status. */
      used = 0;
      engine_verify_cat(
          buf, len, &used,
          "NOT verified: of %llu calls at %s since v%llu was applied, %llu went to %s "
          "(route %u.%u%%, expected %.0f +- %.0f)",
          (unsigned long long)n, s->slug, (unsigned long long)r->version, (unsigned long long)x,
          sh->site, sh->permille / 10, sh->permille % 10, expect, tol);
      ok = false;
    }
    engine_verify_cat(got, sizeof got, &gused, "%s%llu to %s (route %u.%u%%)", gused ? ", " : "",
                      (unsigned long long)x, sh->site, sh->permille / 10, sh->permille % 10);
  }
  if (!ok) {
    engine_verify_cat(buf, len, &used,
                      ": its PBX does not route as told; check its dispatcher (nircctl site %s, "
                      "docs/KAMAILIO.md)",
                      s->slug);
    return false;
  }
  engine_verify_cat(buf, len, &used, "%s: of %llu calls since it applied v%llu, %s",
                    judged ? "verified by moved calls"
                           : "verified on acknowledgement and hub health; too few moved calls to "
                             "judge",
                    (unsigned long long)n, (unsigned long long)r->version, got);
  return true;
}

bool engine_verify_judge(engine_t *e, wave_t *w) {
  if (!w->base) return true;
  bool ok = true;
  for (unsigned k = 0; k < w->n; k++) {
    site_t *s = engine_site(e, w->sources[k]);
    bool was = w->base[k].mismatch, good = engine_verify_source(e, w, k);
    w->base[k].mismatch = !good;
    /* Logged when it starts and when it ends, not every window between
     * (the alarm carries the latest counts). */
    if (!good && !was) log_error(LOG_SITE, s->slug, "%s", e->dirs[w->sources[k]].verify);
    if (good && was)
      log_info(LOG_SITE, s->slug, "calls move again: %s", e->dirs[w->sources[k]].verify);
    if (!good) {
      ok = false;
      engine_alarm_observe(e, ALARM_MOVED, s->slug, e->dirs[w->sources[k]].verify);
    }
  }
  bool was_held = w->mismatch;
  w->mismatch = !ok;
  if (!ok && !was_held) {
    log_error(LOG_MAIN, ENGINE_OBJ,
              "%s %llu: wave not verified: calls did not move; its next wave waits, and this "
              "one is judged again over each new window",
              rules_kind_name(w->kind), (unsigned long long)w->rule_id);
  }
  if (!ok) {
    /* The new window counts from now: every report from here on is
     * entirely after the apply. */
    for (unsigned k = 0; k < w->n; k++)
      engine_verify_base(e, w, k);
  }
  return ok;
}

void engine_verify_hold(engine_t *e, wave_t *w) {
  if (!w->mismatch || !w->base) return;
  for (unsigned k = 0; k < w->n; k++)
    if (w->base[k].mismatch)
      engine_alarm_observe(e, ALARM_MOVED, engine_site(e, w->sources[k])->slug,
                           e->dirs[w->sources[k]].verify);
}

const char *engine_verify_held_by(const engine_t *e, rule_kind_t kind, uint64_t rule_id) {
  for (const wave_t *w = e->waves; w; w = w->next) {
    if (w->done || w->kind != kind || w->rule_id != rule_id || !w->base) continue;
    for (unsigned k = 0; k < w->n; k++)
      if (w->base[k].mismatch) return e->sites->v[w->sources[k]].slug;
  }
  return NULL;
}

void engine_verify_waiting_note(engine_t *e, size_t i, const plan_route_t *pr, char *buf,
                                size_t len) {
  buf[0] = '\0';
  if (pr->kind == RULE_NONE) return;
  const char *self = engine_site(e, i)->slug;
  route_t want;
  engine_route_from_plan(pr, &want);
  if (engine_shares_same(&want, &e->dirs[i].target)) return;
  if (route_share_of(&want, self) >= route_share_of(&e->dirs[i].target, self)) return;
  for (const wave_t *w = e->waves; w; w = w->next) {
    if (w->done || w->kind != pr->kind || w->rule_id != pr->rule_id) continue;
    for (unsigned k = 0; k < w->n; k++)
      if (w->sources[k] == i) return; /* in the wave itself */
    const char *bad = engine_verify_held_by(e, w->kind, w->rule_id);
    if (bad)
      snprintf(buf, len,
               "waits for the wave before it (%s %llu): %s's calls did not go where its route "
               "sends them (alarm moved)",
               rules_kind_name(w->kind), (unsigned long long)w->rule_id, bad);
    else
      snprintf(buf, len, "waits for the wave before it (%s %llu) to be verified",
               rules_kind_name(w->kind), (unsigned long long)w->rule_id);
    return;
  }
}

/* ---- the measured inflow no route explains ---- */

void engine_inflow_acked(engine_t *e, size_t i, const route_t *was, const route_t *now) {
  site_t *s = engine_site(e, i);
  for (unsigned k = 0; k < was->n_share; k++)
    if (was->share[k].permille > 0 && strcmp(was->share[k].site, s->slug) != 0 &&
        route_share_of(now, was->share[k].site) == 0)
      sites_flow_forget(s, was->share[k].site);
}

/* A hub's load in capacity checks is its own demand plus the demand of
 * the sources the plan gives it (their demand x share: for a source behind
 * Kamailio, the same proxy counters that credit the hub). What that model
 * cannot see is a source whose proxy sends calls to the hub while NIRC
 * routes it elsewhere (target and acknowledged route both give the hub
 * nothing): those calls are measured load at the hub all the same, so they
 * are added to it - never to its own demand or forecast. */
void engine_inflow_input(engine_t *e) {
  size_t n = engine_nsites(e);
  for (size_t i = 0; i < n; i++) {
    const site_t *s = engine_site(e, i);
    if (!s->routing_measured || s->state != SITE_ONLINE) continue;
    const site_dir_t *d = &e->dirs[i];
    for (unsigned k = 0; k < s->n_sent; k++) {
      double cps = sites_flow_cps(s, &s->sent[k]);
      if (cps <= 0) continue;
      const char *hub = s->sent[k].site;
      /* An acked route not known to hold (its agent unsure of its PBX)
       * explains nothing: its calls measured at the hub are load there. */
      bool acked_known = engine_route_seen(e, i) == ENGINE_ROUTE_KNOWN;
      if (route_share_of(&d->target, hub) > 0 ||
          (acked_known && route_share_of(&d->acked, hub) > 0))
        continue;
      long h = engine_index(e, hub);
      if (h < 0 || (size_t)h == i) continue;
      plan_site_t *p = &e->psites[h];
      p->inflow_unrouted_cps += cps;
      if (cps > p->inflow_from_cps) {
        p->inflow_from_cps = cps;
        nirc_strlcpy(p->inflow_from, s->slug, sizeof p->inflow_from);
      }
    }
  }
}
