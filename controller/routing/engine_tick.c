/* engine_tick: what the engine does on every server tick - expiry of
 * cutovers and the exclusions they caused, directive timeouts, wave
 * verification, and whether to re-plan at all (an idle registry of 20,000
 * sites is planned once a second, not five times). Part of the engine
 * module (engine-int.h); no I/O. */
#include "engine-int.h"

#include "clock.h"
#include "log.h"
#include "tz.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* With no input changed, a tick re-plans once a second (engine_tick). */
#define ENGINE_IDLE_EVAL_MS 1000

void engine_check_waves(engine_t *e) {
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
          site_t *hub = sites_find(e->sites, d->target.share[h].site);
          if (hub && hub != engine_site(e, w->sources[k]) && hub->state != SITE_ONLINE)
            hubs_ok = false;
        }
      }
      if (acked && hubs_ok && !w->all_acked) {
        w->all_acked = true;
        w->all_acked_mono = now;
        engine_verify_start(e, w);
      }
      engine_verify_sample(e, w);
      engine_verify_hold(e, w);
      if (failed) {
        w->done = true;
        log_error(LOG_MAIN, ENGINE_OBJ,
                  "%s %llu: wave not verified (a source failed and was rolled back)",
                  rules_kind_name(w->kind), (unsigned long long)w->rule_id);
      } else if (!hubs_ok) {
        /* Not verified yet: the window starts again once the hub is back
         * (or its sources were re-homed), so the next wave never follows a
         * hub that failed under this one. */
        if (w->all_acked)
          log_info(
              LOG_MAIN, ENGINE_OBJ,
              "%s %llu: a hub of the wave is not healthy; verification starts again when it is",
              rules_kind_name(w->kind), (unsigned long long)w->rule_id);
        w->all_acked = false;
      } else if (w->all_acked && now - w->all_acked_mono >= e->opts.verify_window_ms) {
        /* Acknowledged and healthy: and did the calls move? */
        if (!engine_verify_judge(e, w)) {
          w->all_acked_mono = now; /* judged again over a new window */
          pp = &w->next;
          continue;
        }
        w->done = true;
        log_info(LOG_MAIN, ENGINE_OBJ, "%s %llu: wave of %u verified", rules_kind_name(w->kind),
                 (unsigned long long)w->rule_id, w->n);
      }
    }
    /* Keep finished waves briefly for nothing: free them. */
    if (w->done) {
      *pp = w->next;
      free(w->sources);
      free(w->base);
      free(w);
    } else {
      pp = &w->next;
    }
  }
}

/* ---- tick ---- */

void engine_business_time(const engine_t *e, int64_t at_ms, char *buf, size_t len) {
  const char *want = e->opts.ops_tz[0] ? e->opts.ops_tz : e->opts.forecast_tz;
  char iso[40];
  const char *zone = tz_format_iso(want, at_ms, iso, sizeof iso);
  snprintf(buf, len, "%s (%s business time)", iso, zone);
}

engine_seen_t engine_seen_late(const engine_t *e, int64_t at_ms, uint64_t *late_ms) {
  *late_ms = 0;
  if (!e->tick_mono) return ENGINE_SEEN_BEFORE_LEAD;
  /* Late only by real time: at an accelerated clock a tick spans many
   * business seconds. And only for what fell due after the previous tick:
   * what fell due before it was seen then (or by a leader before). */
  uint64_t gap = engine_mono(e) - e->tick_mono;
  if (gap <= ENGINE_LATE_MS || at_ms <= e->tick_now) return ENGINE_SEEN_IN_TIME;
  *late_ms = gap;
  return ENGINE_SEEN_LATE;
}

/* What an expiry seen late says of the sources' return. Their agents go
 * home by their own revert_at; one that could not (it cannot save its
 * route) still says it is away when it connects, and is named (the
 * plan of this tick decides its route). One not connected to this
 * leader yet has said nothing: named too. */
static void engine_expiry_went(engine_t *e, const cutover_t *cut, char *buf, size_t len) {
  char away[160] = "", unheard[160] = "";
  size_t n_away = 0, n_unheard = 0;
  for (unsigned k = 0; k < cut->sources.n; k++) {
    const char *slug = cut->sources.v[k];
    long i = engine_index(e, slug);
    if (i < 0) continue;
    const site_dir_t *d = &e->dirs[i];
    if (!d->known && n_unheard < sizeof unheard)
      n_unheard += (size_t)snprintf(unheard + n_unheard, sizeof unheard - n_unheard, "%s%s",
                                    n_unheard ? "," : "", slug);
    else if (d->known && route_share_of(&d->acked, slug) < 1000 && n_away < sizeof away)
      n_away +=
          (size_t)snprintf(away + n_away, sizeof away - n_away, "%s%s", n_away ? "," : "", slug);
  }
  if (!away[0] && !unheard[0]) {
    snprintf(buf, len, "the sources went home at that time by their own revert_at");
    return;
  }
  snprintf(buf, len,
           "the sources' agents were to go home at that time by their own revert_at%s%s%s%s",
           away[0] ? "; still away by their agents' word: " : "", away,
           unheard[0] ? "; not heard from yet: " : "", unheard);
}

static void engine_expire(engine_t *e) {
  int64_t now = engine_now(e);
  for (size_t k = 0; k < e->n_cut; k++) {
    cutover_t *cut = &e->cut[k];
    if (cut->state != CUTOVER_ACTIVE || cut->expires_ms == 0 || cut->expires_ms > now) continue;
    log_info(LOG_MAIN, ENGINE_OBJ, "cutover %llu expired", (unsigned long long)cut->id);
    engine_end_cutover(e, cut, CUTOVER_EXPIRED, "expiry");
    /* The row is stamped when the engine sees the expiry; the cutover
     * ended at its expiry, when each source's agent went home by its own
     * revert_at. Seen late (the controller did not run, or had no
     * leadership), the entry says when it really ended. */
    char at[100], why[460], went[240];
    engine_business_time(e, cut->expires_ms, at, sizeof at);
    uint64_t late_ms = 0;
    engine_seen_t seen = engine_seen_late(e, cut->expires_ms, &late_ms);
    /* Said only of an expiry seen late: in time, the engine sends them home now. */
    if (seen != ENGINE_SEEN_IN_TIME) engine_expiry_went(e, cut, went, sizeof went);
    switch (seen) {
    case ENGINE_SEEN_BEFORE_LEAD:
      snprintf(why, sizeof why,
               "expired at %s, before this controller led: recorded when it "
               "took the lead; %s",
               at, went);
      break;
    case ENGINE_SEEN_LATE:
      snprintf(why, sizeof why,
               "expired at %s, recorded %llu s (real time) later: the controller "
               "did not run meanwhile; %s",
               at, (unsigned long long)(late_ms / 1000), went);
      break;
    case ENGINE_SEEN_IN_TIME: snprintf(why, sizeof why, "expired at %s", at); break;
    }
    engine_audit(e, "engine", "expire", cut->sources.v[0],
                 json_pack("{s:I, s:o, s:I, s:s}", "cutover_id", (json_int_t)cut->id, "sources",
                           engine_slugs_json(&cut->sources), "expires_at_ms",
                           (json_int_t)cut->expires_ms, "why", why));
  }
  /* Exclusions end with the rule that caused them. No site excluded (the
   * flag is set wherever one is): no scan of every directive. */
  if (!e->dirs_excluded) return;
  bool excluded = false;
  for (size_t i = 0; i < engine_nsites(e); i++) {
    site_dir_t *d = &e->dirs[i];
    excluded |= d->excluded_rule != 0;
    if (!d->excluded_rule || d->excluded_kind != RULE_CUTOVER) continue;
    bool active = false;
    for (size_t k = 0; k < e->n_cut; k++)
      active |= e->cut[k].id == d->excluded_rule && e->cut[k].state == CUTOVER_ACTIVE;
    if (!active) {
      e->eval_dirty = true;
      engine_readmit(e, i, "engine", "the cutover it failed in has ended");
    }
  }
  e->dirs_excluded = excluded;
}

/* What a plan depends on besides the rules and time, folded into one
 * number: the sites' changes (reports, links: sites_change_count), the
 * waves in progress and the rules' states. Changes of the directives'
 * state (acks, resends, failures, hub gates) set eval_dirty where they
 * happen instead: a scan of 20,000 directives per tick would cost more
 * than the evaluations it saves. */
static uint64_t engine_inputs_fp(const engine_t *e) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a offset, mixed per word */
#define ENGINE_FP_MIX(x) (h = (h ^ (uint64_t)(x)) * 1099511628211ULL)
  ENGINE_FP_MIX(sites_change_count());
  ENGINE_FP_MIX(engine_nsites(e));
  for (const wave_t *w = e->waves; w; w = w->next)
    ENGINE_FP_MIX(w->rule_id ^ (uint64_t)w->all_acked << 63);
  for (size_t k = 0; k < e->n_cut; k++)
    ENGINE_FP_MIX(e->cut[k].state ^ (uint64_t)e->cut[k].expires_ms << 4);
  ENGINE_FP_MIX(e->n_sch);
  ENGINE_FP_MIX(e->n_ovf);
#undef ENGINE_FP_MIX
  return h;
}

static bool engine_eval_due(const engine_t *e, uint64_t fp) {
  if (!e->eval_done || e->eval_dirty || fp != e->eval_fp) return true;
  uint64_t mono = engine_mono(e);
  int64_t now = engine_now(e);
  /* Either clock: business time runs fast in tests and the demo, and may
   * be set back by an operator's clock change. */
  return mono - e->eval_mono >= ENGINE_IDLE_EVAL_MS || now - e->eval_now >= ENGINE_IDLE_EVAL_MS ||
         now < e->eval_now;
}

void engine_tick(engine_t *e) {
  engine_expire(e);
  engine_check_timeouts(e);
  /* Waves first: a wave verified now lets the evaluation below start the
   * next one in this same tick. */
  engine_check_waves(e);
  /* The hub gate's timers (grace, return window) on every tick, so that a
   * hub lost or verified again is planned at once, not a second later. */
  engine_gate_update(e);
  if (engine_eval_due(e, engine_inputs_fp(e))) engine_evaluate(e, NULL, NULL);
  engine_waiters_check(e);
  engine_alarms_sweep(e);
  engine_forecast_track(e);         /* the forecast's accuracy (engine_report.c) */
  e->eval_fp = engine_inputs_fp(e); /* what this tick leaves behind */
  e->tick_mono = engine_mono(e);
  e->tick_now = engine_now(e);
}
