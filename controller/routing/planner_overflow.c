/* planner_overflow: the overflow phase of the planner (planner.c runs it
 * after the cutovers and schedules, on the sources they left free).
 *
 * Overflow keeps state between runs (planner_overflow_state_t, matched by
 * rule_id). A rule engages when any used trigger is crossed (wait_s >=
 * trigger_wait_s, queue >= trigger_queue, sl < trigger_sl; a zero
 * threshold is unused). It releases only once it has been engaged for
 * min_hold_s and every used metric is past its release threshold (wait_s
 * <= release_wait_s, queue <= release_queue, sl >= release_sl); in between
 * the state is kept, so a metric hovering around the trigger cannot make
 * the route flap. While the source is not online its metrics are stale and
 * the state is frozen. An engaged rule moves the smallest multiple of 50
 * per mille (at most the share cap) that brings the source's predicted
 * service level, for the load it keeps on its own staffed agents, to the
 * target, or the cap; and never less than it moved in the previous run
 * while still engaged, so the share does not wobble with the demand. To
 * start spilling, the hub must also answer faster: its predicted ASA after
 * the move plus margin_s must not exceed the source's current longest
 * wait. A rule that already moved traffic in the previous run is not held
 * to the margin again (the move itself lowers the source's wait); the
 * capacity check still applies on every run.
 *
 * The load ahead. An overflow spills at the peak, where the load is
 * rising, so a spill that starts, or grows its share, must also fit the
 * hub on the load of the next half hour: every load the hub would carry
 * raised to its forecast where that is higher (plan_site_t.ahead_cps,
 * filled by the caller): its own, the spilled share, and every source
 * it takes already, whatever rule moved it (a night schedule's 22
 * provinces, another spill), above the load booked for it (a schedule's
 * may be booked on its forecast already). Before, only the spilling
 * share was raised, and a hub whose schedule sources rise into the
 * evening peak took a spill it would not hold 20 minutes later. Each
 * placement books its source's raise on its hub (planner_overflow_book),
 * round by round like the loads. A hub that fails it is refused for
 * capacity like a live failure ("would need N agents for the load
 * forecast for the next half hour"), and the next hub is tried. A spill
 * that only keeps its share is not checked ahead: it is withdrawn on the
 * live check alone (with its hold), never on a forecast, which would send
 * calls home on a prediction and back when the live load says otherwise,
 * every tick. A growth that fails ahead falls back to the share already
 * moved, kept on the live check, for the same reason. A site with no
 * forecast is checked on its live load and the plan says the rise could
 * not be checked (unknown is not zero, and not a refusal either: the live
 * check still holds). */
#include "planner-int.h"

#include "err.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The used triggers of `o` that site `s` does not measure now, for
 * people ("" when it measures them all). */
static void planner_overflow_blind(const overflow_rule_t *o, const plan_site_t *s, char *buf,
                                   size_t len) {
  buf[0] = '\0';
  if (o->trigger_wait_s && s->wait_unknown) planner_append(buf, len, "longest wait");
  if (o->trigger_queue && s->queue_unknown) planner_append(buf, len, "calls in queue");
  if (o->trigger_sl > 0 && s->sl_unknown) planner_append(buf, len, "service level");
}

/* Any used trigger crossed, among those measured now. */
static bool planner_overflow_triggered(const overflow_rule_t *o, const plan_site_t *s) {
  if (o->trigger_wait_s && !s->wait_unknown && s->wait_s >= (double)o->trigger_wait_s) return true;
  if (o->trigger_queue && !s->queue_unknown && s->queue >= (double)o->trigger_queue) return true;
  if (o->trigger_sl > 0 && !s->sl_unknown && s->sl < o->trigger_sl) return true;
  return false;
}

/* Every used metric past its release threshold. */
static bool planner_overflow_released(const overflow_rule_t *o, const plan_site_t *s) {
  /* A figure not measured now is not seen to fall: the spill holds. */
  if (o->trigger_wait_s && (s->wait_unknown || !(s->wait_s <= (double)o->release_wait_s)))
    return false;
  if (o->trigger_queue && (s->queue_unknown || !(s->queue <= (double)o->release_queue)))
    return false;
  if (o->trigger_sl > 0 && (s->sl_unknown || !(s->sl >= o->release_sl))) return false;
  return true;
}

/* The state of overflow rule `o` after this snapshot (see the top
 * comment); `prev` is what the previous run returned, or NULL. */
static planner_overflow_state_t planner_overflow_step(const planner_ctx_t *ctx,
                                                      const overflow_rule_t *o,
                                                      const planner_overflow_state_t *prev) {
  planner_overflow_state_t st = {.rule_id = o->id};
  if (prev) st = *prev;
  st.rule_id = o->id;
  int64_t now = ctx->in->now_ms;
  size_t idx = planner_find(ctx, o->source);
  if (!o->enabled || idx == PLANNER_NONE) {
    if (st.engaged) {
      st.engaged = false;
      st.since_ms = now;
    }
    st.permille = 0;
    return st;
  }
  const plan_site_t *s = &ctx->in->sites[idx];
  if (o->id == ctx->in->overflow_trial_id && !st.engaged) { /* tried: engages now */
    st.engaged = true;
    st.since_ms = now;
    st.permille = 0;
    return st;
  }
  if (!s->online) return st;
  if (!st.engaged) {
    if (planner_overflow_triggered(o, s)) {
      st.engaged = true;
      st.since_ms = now;
      st.permille = 0;
    }
  } else if (now - st.since_ms >= (int64_t)o->min_hold_s * 1000 &&
             planner_overflow_released(o, s)) {
    st.engaged = false;
    st.since_ms = now;
    st.permille = 0;
  }
  return st;
}

/* The share an engaged rule moves: the smallest step that lets the source
 * meet the target with the load it keeps, else the cap; never below what
 * it already moves. */
static uint32_t planner_overflow_share(const planner_ctx_t *ctx, const plan_site_t *s, uint32_t cap,
                                       uint32_t prev) {
  if (cap > 1000) cap = 1000;
  if (cap == 0) return 0;
  /* Its agents or its load not known: no prediction to size the share
   * on (a zero would say "move the cap"). It keeps what it moves, or
   * starts with the smallest step. */
  if (s->cap_source == CAPACITY_UNKNOWN || planner_load_unknown(s)) {
    uint32_t keep = prev ? prev : PLANNER_OVERFLOW_STEP;
    return keep < cap ? keep : cap;
  }
  double erl = planner_rate(s->demand_cps) * planner_aht(s);
  uint32_t p = PLANNER_OVERFLOW_STEP;
  for (; p < cap; p += PLANNER_OVERFLOW_STEP) {
    erlang_prediction_t pred;
    erlang_predict(s->staffed, erl * (double)(1000 - p) / 1000.0, planner_aht(s),
                   ctx->sl_threshold_s, &pred);
    if (pred.stable && pred.service_level >= ctx->sl_target) break;
  }
  if (p > cap) p = cap;
  if (prev > p) p = prev > cap ? cap : prev;
  return p;
}

/* ---- the load ahead ------------------------------------------------------ */

void planner_overflow_unsize(const planner_ctx_t *ctx, planner_cand_t *c) {
  const plan_site_t *s = &ctx->in->sites[c->src];
  c->permille = c->want_permille;
  c->cps = planner_rate(s->demand_cps) * (double)c->permille / 1000.0;
  c->erl = c->cps * planner_aht(s);
  c->ahead_kept = false;
}

/* Site s's own load ahead above its live load (Erlangs and calls per
 * second, inflow NIRC does not route included), 0 when the forecast is
 * not higher; false when no forecast covers it. */
static bool planner_overflow_raise(const plan_site_t *s, double *erl, double *cps) {
  *erl = *cps = 0;
  if (!s->ahead_known) return false;
  double live_cps = planner_rate(s->demand_cps) + planner_rate(s->inflow_unrouted_cps);
  double live = live_cps * planner_aht(s);
  double ahead_cps = planner_rate(s->ahead_cps) + planner_rate(s->inflow_unrouted_cps);
  double ahead = ahead_cps * planner_rate(s->ahead_aht_s);
  if (ahead > live) {
    *erl = ahead - live;
    *cps = ahead_cps > live_cps ? ahead_cps - live_cps : 0;
  }
  return true;
}

/* How far candidate c's share of its source's calls rises ahead above
 * the load booked for it (c->erl, c->cps: a schedule's may be its
 * forecast already), 0 when not; false when no forecast covers it. */
static bool planner_overflow_src_raise(const planner_ctx_t *ctx, const planner_cand_t *c,
                                       double *erl, double *cps) {
  const plan_site_t *s = &ctx->in->sites[c->src];
  *erl = *cps = 0;
  if (!s->ahead_known) return false;
  double share = (double)c->permille / 1000.0;
  double ahead_cps = planner_rate(s->ahead_cps) * share;
  double ahead = ahead_cps * planner_rate(s->ahead_aht_s);
  if (ahead > c->erl) {
    *erl = ahead - c->erl;
    *cps = ahead_cps > c->cps ? ahead_cps - c->cps : 0;
  }
  return true;
}

void planner_overflow_book(planner_ctx_t *ctx, const planner_cand_t *c, size_t h) {
  planner_site_t *hub = &ctx->st[h];
  double erl, cps;
  if (!planner_overflow_src_raise(ctx, c, &erl, &cps)) {
    if (hub->r_in_blind == PLANNER_NONE) hub->r_in_blind = c->src;
    return;
  }
  hub->r_in_raise_erl += erl;
  hub->r_in_raise_cps += cps;
}

/* The load ahead hub h would answer with candidate c at its share: the
 * round's load, the hub's own raise, the raise of every source it takes
 * already (a night schedule's, another spill's) and the share's. */
static void planner_overflow_load(const planner_ctx_t *ctx, const planner_cand_t *c, size_t h,
                                  double *erl, double *cps) {
  const planner_site_t *st = &ctx->st[h];
  double her, hcps, ser, scps;
  planner_overflow_raise(&ctx->in->sites[h], &her, &hcps);
  planner_overflow_src_raise(ctx, c, &ser, &scps);
  *erl = st->r_erl + her + st->r_in_raise_erl + c->erl + ser;
  *cps = st->r_cps + hcps + st->r_in_raise_cps + c->cps + scps;
}

bool planner_overflow_ahead(planner_ctx_t *ctx, planner_cand_t *c, size_t h, double floor,
                            unsigned *needed) {
  const plan_site_t *hub = &ctx->in->sites[h];
  double erl, cps;
  planner_overflow_load(ctx, c, h, &erl, &cps);
  double aht = planner_mix_aht(erl, cps, hub);
  erlang_prediction_t pred;
  erlang_predict(hub->staffed, erl, aht, ctx->sl_threshold_s, &pred);
  if (pred.stable && pred.service_level >= floor) return true;
  if (c->keep_permille > 0 && c->keep_permille < c->permille) {
    /* The growth does not fit ahead: keep what moves (it passed the live
     * check at the larger share, so it passes at this one). */
    const plan_site_t *s = &ctx->in->sites[c->src];
    c->permille = c->keep_permille;
    c->cps = planner_rate(s->demand_cps) * (double)c->permille / 1000.0;
    c->erl = c->cps * planner_aht(s);
    c->ahead_kept = true;
    return true;
  }
  *needed = erlang_agents_needed(erl, aht, ctx->sl_threshold_s, floor);
  if (*needed == 0) *needed = 1;
  c->ahead_refused = true;
  return false;
}

/* What the hub of placed candidate c was checked on ahead, for its
 * capacity row: the forecast where some site it answers for rises, the
 * live load where none does, unchecked where one has no forecast. */
static void planner_overflow_mark(planner_ctx_t *ctx, const planner_cand_t *c) {
  planner_site_t *h = &ctx->st[c->hub];
  const plan_site_t *hub = &ctx->in->sites[c->hub];
  double her, hcps;
  bool hk = planner_overflow_raise(hub, &her, &hcps);
  /* Every source it takes was booked with its raise (committed), this
   * candidate's too. */
  h->ahead_raise_erl = her + h->in_raise_erl;
  h->ahead_unknown[0] = '\0';
  if (!hk)
    nirc_strlcpy(h->ahead_unknown, hub->slug, sizeof h->ahead_unknown);
  else if (h->in_blind != PLANNER_NONE)
    nirc_strlcpy(h->ahead_unknown, ctx->in->sites[h->in_blind].slug, sizeof h->ahead_unknown);
  bool rising = h->ahead_raise_erl > 0;
  h->ahead_basis = rising                ? PLAN_LOAD_FORECAST
                   : h->ahead_unknown[0] ? PLAN_LOAD_UNCHECKED
                                         : PLAN_LOAD_LIVE;
}

void planner_overflow_load_on(const planner_site_t *h, const plan_capacity_t *pc,
                              plan_load_on_t *lo) {
  lo->basis = h->ahead_basis;
  lo->live_erl = pc->after.traffic_erl;
  lo->forecast_erl = h->ahead_unknown[0] ? -1 : pc->after.traffic_erl + h->ahead_raise_erl;
  char tail[96] = "";
  if (h->ahead_unknown[0])
    snprintf(tail, sizeof tail, "%s (%s: no forecast)",
             lo->basis == PLAN_LOAD_FORECAST ? "; a rise could not be checked" : "",
             h->ahead_unknown);
  switch (lo->basis) {
  case PLAN_LOAD_FORECAST:
    snprintf(lo->note, sizeof lo->note,
             "overflow checked on the forecast for the next half hour: %.1f Erl vs %.1f Erl "
             "live%s",
             lo->live_erl + h->ahead_raise_erl, lo->live_erl, tail);
    break;
  case PLAN_LOAD_LIVE:
    snprintf(lo->note, sizeof lo->note,
             "overflow checked on the live load: the forecast for the next half hour is not "
             "higher");
    break;
  case PLAN_LOAD_UNCHECKED:
    snprintf(lo->note, sizeof lo->note,
             "overflow checked on the live load: a rise could not be "
             "checked%s",
             tail);
    break;
  case PLAN_LOAD_GIVEN: break;
  }
}

int planner_overflows(planner_ctx_t *ctx, plan_t *out) {
  const plan_input_t *in = ctx->in;
  size_t n_order = 0;
  for (size_t i = 0; i < in->n_overflows; i++) {
    const overflow_rule_t *o = &in->overflows[i];
    const planner_overflow_state_t *prev = NULL;
    for (size_t k = 0; in->overflow_state && k < in->n_overflows; k++)
      if (in->overflow_state[k].rule_id == o->id) {
        prev = &in->overflow_state[k];
        break;
      }
    out->overflow_state[i] = planner_overflow_step(ctx, o, prev);
  }
  planner_order_t *order = calloc(in->n_overflows + 1, sizeof *order);
  planner_cand_t *cands = calloc(in->n_overflows + 1, sizeof *cands);
  if (!order || !cands) {
    free(order);
    free(cands);
    return NIRC_ENOMEM;
  }
  for (size_t i = 0; i < in->n_overflows; i++)
    if (in->overflows[i].enabled) order[n_order++] = (planner_order_t){in->overflows[i].id, i};
  qsort(order, n_order, sizeof *order, planner_cmp_order);
  size_t n = 0;
  for (size_t k = 0; k < n_order; k++) {
    size_t slot = order[k].idx;
    const overflow_rule_t *o = &in->overflows[slot];
    planner_overflow_state_t *st = &out->overflow_state[slot];
    char label[96];
    planner_label(label, sizeof label, "overflow", o->id, o->name);
    size_t idx = planner_find(ctx, o->source);
    if (idx == PLANNER_NONE)
      planner_alarm(ctx, PLAN_ALARM_UNKNOWN_SITE, o->source, RULE_OVERFLOW, o->id,
                    "%s names unknown source %s; it is skipped", label, o->source);
    planner_unknown_sites(ctx, &o->hubs, RULE_OVERFLOW, o->id, label, "hub");
    if (idx != PLANNER_NONE && in->sites[idx].online) {
      char blind[96];
      planner_overflow_blind(o, &in->sites[idx], blind, sizeof blind);
      if (blind[0])
        planner_alarm(ctx, PLAN_ALARM_NO_HUB, o->source, RULE_OVERFLOW, o->id,
                      "%s: %s does not measure its %s now: the rule does not engage on it%s", label,
                      o->source, blind,
                      st->engaged ? ", and it holds its spill until the figure is measured again"
                                  : "");
    }
    if (!st->engaged) continue;
    if (idx == PLANNER_NONE || !planner_source_free(ctx, idx, RULE_OVERFLOW, o->id, label)) {
      st->permille = 0;
      continue;
    }
    const plan_site_t *site = &in->sites[idx];
    uint32_t p = planner_overflow_share(ctx, site, o->share_cap_permille, st->permille);
    if (p == 0) continue;
    planner_cand_t *c = &cands[n++];
    planner_cand_init(c, idx, RULE_OVERFLOW, o->id, &o->hubs);
    nirc_strlcpy(c->label, label, sizeof c->label);
    nirc_strlcpy(c->reason, label, sizeof c->reason);
    c->want_permille = p;
    /* Engaging, or growing the share: checked on the load ahead too. */
    c->check_ahead = p > st->permille;
    c->keep_permille = st->permille;
    planner_overflow_unsize(ctx, c);
    /* The margin is a condition for starting to spill, not for going on:
     * once traffic moves, the source's wait falls because of the move, and
     * re-testing it would send the traffic home and back on alternate runs. */
    c->check_asa = st->permille == 0 && o->id != in->overflow_trial_id;
    c->margin_s = o->margin_s;
    c->overflow_slot = slot;
    ctx->st[idx].pending = true;
  }
  planner_phase(ctx, cands, n);
  /* The state remembers what actually moved, so a move that found no hub
   * does not ratchet the share up. */
  for (size_t i = 0; i < n; i++) {
    out->overflow_state[cands[i].overflow_slot].permille = cands[i].placed ? cands[i].permille : 0;
    if (cands[i].placed && cands[i].check_ahead) planner_overflow_mark(ctx, &cands[i]);
  }
  free(cands);
  free(order);
  return 0;
}
