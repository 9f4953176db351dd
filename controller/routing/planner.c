/* planner: every site's desired route from a snapshot and the rules.
 *
 * The plan is built in one pass over three phases of falling precedence,
 * each deciding a set of "candidates" (a source and the rule that wants to
 * move it), then the routes are written out:
 *
 *  a. The sites are indexed by slug. A rule that names a site missing from
 *     the snapshot raises PLAN_ALARM_UNKNOWN_SITE; that site is skipped
 *     (as a source it is not moved, as a hub it is never chosen).
 *  b. Emergency: the ACTIVE cutovers that have not expired (expires_ms of
 *     0, or later than now), in order of id, their sources in list order.
 *     A source named by two cutovers follows the one with the lower id.
 *  c. Schedules in force (rules_schedule_window), in order of id, for the
 *     sources not already moved away by a cutover.
 *  d. Overflow rules that are engaged (see below), in order of id, for the
 *     sources not moved by anything else and not receiving traffic.
 *
 * Within a phase every candidate source is first marked "pending": a
 * pending site is treated as moved away, so it is no hub for anyone (a
 * cutover of shaanxi makes shaanxi ineligible for every schedule and every
 * other cutover). Each candidate then takes the first hub of its rule, in
 * the rule's order, that is in the snapshot, a hub, online, not excluded,
 * not moved away, not pending, not already receiving from RULES_MAX_SITES
 * sources, and that passes the capacity check below. Sites that received
 * traffic in an earlier phase stay eligible hubs; sites moved away in an
 * earlier phase never are.
 *
 * When some candidates find no hub, one of them is dropped (it stays home
 * and stops being pending, so it may become a hub for the others) and the
 * phase is decided again from the loads it started with. The dropped one
 * is the last failing candidate that failed for a lasting reason (offline
 * hubs, capacity...) or, when every failure is only due to hubs that are
 * pending sources themselves, the last failing candidate: with cutovers
 * a->b and b->a, b is dropped and a moves to b, so only the first decided
 * move happens. The set of pending sites only shrinks, so this ends after
 * at most one round per candidate. Afterwards each dropped candidate gets
 * a second chance against the final loads (a site that now receives
 * traffic cannot move: routes never chain); if that fails too it stays
 * home with PLAN_ALARM_NO_HUB or PLAN_ALARM_CAPACITY, whose message names
 * the rule and the reason for every hub ("cutover 7: no eligible hub for
 * hubei: shaanxi is moved away, henan is offline").
 *
 * Capacity (Erlang C): each hub accumulates its offered load, its own
 * demand (cps x AHT) plus the share of every source assigned to it so far,
 * in any phase; schedules count a source's forecast_cps when it is set.
 * A move is checked against that cumulative load on the hub's staffed
 * agents, with the load-weighted handle time: if the queue would be
 * unstable or the service level below sl_target, the hub refuses and the
 * next one is tried. A forced cutover skips the refusal, and its hub is
 * marked forced when the move fails the check. Each refusal is recorded
 * (hub, source, load) for the round, like the loads, so the rounds thrown
 * away leave none. plan_capacity_t has one entry per hub that takes
 * sources or turned one down (before: its own load; after: with
 * everything it takes; with_refused: that plus the largest source it
 * turned down, named with the others in refused_sources).
 *
 * Overflow rules are planned in planner_overflow.c (see there).
 *
 * Routes: home is {self: 1000}; a moved source gets {hub: permille} and,
 * when the move is partial, {self: 1000 - permille}. revert_at is the
 * cutover's expiry (0 when open-ended), the schedule window's end, or 0
 * for overflow. Hubs list their senders in snapshot order in inbound.
 *
 * By construction no site both sends and receives, every route sums to
 * 1000, and no route points at a non-hub, an offline or excluded site, or
 * a site that is moved away. Everything is iterated in a fixed order, so
 * the same input always gives the same plan. */
#include "planner-int.h"

#include "err.h"
#include "util.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

/* Smoothed figures can be missing; a negative or non-finite rate counts as
 * no demand rather than poisoning every sum it enters. */
double planner_rate(double x) {
  return isfinite(x) && x > 0 ? x : 0;
}

double planner_aht(const plan_site_t *s) {
  return planner_rate(s->aht_s);
}

/* Why site s's own load cannot be predicted, for people; NULL when it can
 * (plan_site_t.demand_unknown). */
const char *planner_load_unknown(const plan_site_t *s) {
  bool calls = planner_rate(s->demand_cps) > 0 || planner_rate(s->forecast_cps) > 0;
  if (s->demand_unknown && !(planner_rate(s->forecast_cps) > 0))
    return "its calls are not measured yet and no forecast covers them";
  if (calls && !(planner_aht(s) > 0))
    return "its handle time is not measured and no forecast gives one";
  return NULL;
}

/* Handle time of a mix of traffic: Erlangs per call per second. A hub
 * that answers nothing yet predicts with its own handle time. */
double planner_mix_aht(double erl, double cps, const plan_site_t *hub) {
  return cps > 0 ? erl / cps : planner_aht(hub);
}

static int planner_cmp_slug(const void *a, const void *b) {
  const planner_slug_t *x = a, *y = b;
  int c = strcmp(x->slug, y->slug);
  if (c) return c;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int planner_cmp_order(const void *a, const void *b) {
  const planner_order_t *x = a, *y = b;
  if (x->id != y->id) return x->id < y->id ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Index of the first site called `slug`, or PLANNER_NONE. */
size_t planner_find(const planner_ctx_t *ctx, const char *slug) {
  size_t lo = 0, hi = ctx->in->n_sites;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(ctx->by_slug[mid].slug, slug) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < ctx->in->n_sites && strcmp(ctx->by_slug[lo].slug, slug) == 0)
    return ctx->by_slug[lo].idx;
  return PLANNER_NONE;
}

/* Raises an alarm; returns it (for its hub verdicts), or NULL when out
 * of memory. */
plan_alarm_t *planner_alarm(planner_ctx_t *ctx, plan_alarm_kind_t kind, const char *site,
                            rule_kind_t rule_kind, uint64_t rule_id, const char *fmt, ...) {
  if (ctx->n_alarms == ctx->cap_alarms) {
    size_t cap = ctx->cap_alarms ? ctx->cap_alarms * 2 : 16;
    plan_alarm_t *v = realloc(ctx->alarms, cap * sizeof *v);
    if (!v) {
      ctx->nomem = true;
      return NULL;
    }
    ctx->alarms = v;
    ctx->cap_alarms = cap;
  }
  plan_alarm_t *a = &ctx->alarms[ctx->n_alarms++];
  memset(a, 0, sizeof *a);
  a->kind = kind;
  nirc_strlcpy(a->site, site, sizeof a->site);
  a->rule_kind = rule_kind;
  a->rule_id = rule_id;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->message, sizeof a->message, fmt, ap);
  va_end(ap);
  return a;
}

/* "cutover 7" or, for a rule not made yet, "cutover"; with the name in
 * brackets when given: "schedule 3 (night)". */
void planner_label(char *buf, size_t len, const char *kind, uint64_t id, const char *name) {
  char num[24] = "";
  if (id != PLAN_DRAFT_ID) snprintf(num, sizeof num, " %" PRIu64, id);
  snprintf(buf, len, "%s%s%s%s%s", kind, num, name ? " (" : "", name ? name : "", name ? ")" : "");
}

/* Appends ", text" (or "text" to an empty buffer), truncating quietly: the
 * message is for people and the first reasons matter most. */
void planner_append(char *buf, size_t len, const char *fmt, ...) {
  size_t used = strlen(buf);
  if (used + 1 >= len) return;
  if (used > 0) {
    snprintf(buf + used, len - used, ", ");
    used = strlen(buf);
    if (used + 1 >= len) return;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + used, len - used, fmt, ap);
  va_end(ap);
}

/* Alarms for every site a rule names that the snapshot does not have. */
void planner_unknown_sites(planner_ctx_t *ctx, const slug_list_t *list, rule_kind_t kind,
                           uint64_t id, const char *label, const char *role) {
  for (unsigned i = 0; i < list->n && i < RULES_MAX_SITES; i++)
    if (planner_find(ctx, list->v[i]) == PLANNER_NONE)
      planner_alarm(ctx, PLAN_ALARM_UNKNOWN_SITE, list->v[i], kind, id,
                    "%s names unknown %s %s; it is skipped", label, role, list->v[i]);
}

/* "a, b, c": the sites that send their traffic to `hub`. */
static void planner_senders(const planner_ctx_t *ctx, size_t hub, char *buf, size_t len) {
  buf[0] = '\0';
  for (size_t j = 0; j < ctx->in->n_sites; j++)
    if (ctx->st[j].away && ctx->st[j].hub == hub)
      planner_append(buf, len, "%s", ctx->in->sites[j].slug);
}

/* ---- rounds ------------------------------------------------------------- */

static void planner_round_reset(planner_ctx_t *ctx) {
  for (size_t i = 0; i < ctx->in->n_sites; i++) {
    planner_site_t *s = &ctx->st[i];
    s->r_erl = s->erl;
    s->r_cps = s->cps;
    s->r_n_in = s->n_in;
    s->r_forced = s->forced;
    s->r_unknown = s->unknown;
    s->r_in_raise_erl = s->in_raise_erl;
    s->r_in_raise_cps = s->in_raise_cps;
    s->r_in_blind = s->in_blind;
  }
  ctx->n_refusals = ctx->n_refusals_kept;
}

static void planner_round_commit(planner_ctx_t *ctx) {
  for (size_t i = 0; i < ctx->in->n_sites; i++) {
    planner_site_t *s = &ctx->st[i];
    s->erl = s->r_erl;
    s->cps = s->r_cps;
    s->n_in = s->r_n_in;
    s->forced = s->r_forced;
    s->unknown = s->r_unknown;
    s->in_raise_erl = s->r_in_raise_erl;
    s->in_raise_cps = s->r_in_raise_cps;
    s->in_blind = s->r_in_blind;
  }
  ctx->n_refusals_kept = ctx->n_refusals;
}

/* Records, for the round, that hub h turned candidate c down. */
static void planner_refused(planner_ctx_t *ctx, size_t h, const planner_cand_t *c) {
  if (ctx->n_refusals == ctx->cap_refusals) {
    size_t cap = ctx->cap_refusals ? ctx->cap_refusals * 2 : 16;
    planner_refusal_t *v = realloc(ctx->refusals, cap * sizeof *v);
    if (!v) {
      ctx->nomem = true;
      return;
    }
    ctx->refusals = v;
    ctx->cap_refusals = cap;
  }
  ctx->refusals[ctx->n_refusals++] = (planner_refusal_t){h, c->src, c->erl, c->cps};
}

/* Predicts hub `h` answering its round load plus `erl`/`cps`. */
static void planner_predict_with(const planner_ctx_t *ctx, size_t h, double erl, double cps,
                                 erlang_prediction_t *p) {
  const planner_site_t *s = &ctx->st[h];
  double a = s->r_erl + erl, c = s->r_cps + cps;
  erlang_predict(ctx->in->sites[h].staffed, a, planner_mix_aht(a, c, &ctx->in->sites[h]),
                 ctx->sl_threshold_s, p);
}

/* ---- damping ------------------------------------------------------------ */

/* The clock of the damping: business time, like the load it judges,
 * unless the caller gives another. */
static int64_t planner_damp_now(const planner_ctx_t *ctx) {
  return ctx->in->real_ms ? ctx->in->real_ms : ctx->in->now_ms;
}

/* Seconds source `src` waits after its latest withdrawal: reentry_s,
 * doubled for each earlier one within the hour, at most an hour. */
static uint32_t planner_reentry_s(const planner_ctx_t *ctx, size_t src) {
  unsigned k = ctx->in->holds ? ctx->in->holds[src].withdrawals : 0;
  uint64_t w = ctx->in->reentry_s;
  for (unsigned i = 1; i < k && w < 3600; i++)
    w *= 2;
  return (uint32_t)(w < 3600 ? w : 3600);
}

/* Whether `src` is still inside its re-entry wait. */
static bool planner_waiting(const planner_ctx_t *ctx, size_t src) {
  if (!ctx->in->holds || !ctx->in->holds[src].withdrawn_ms) return false;
  return planner_damp_now(ctx) - ctx->in->holds[src].withdrawn_ms <
         (int64_t)planner_reentry_s(ctx, src) * 1000;
}

/* Whether an established move below its keep floor may stay: its hold
 * time has not run out (it starts now when it was not strained before). */
static bool planner_hold_runs(const planner_ctx_t *ctx, size_t src) {
  if (ctx->in->hold_s == 0) return false;
  int64_t since = ctx->in->holds ? ctx->in->holds[src].strain_since_ms : 0;
  return since == 0 || planner_damp_now(ctx) - since < (int64_t)ctx->in->hold_s * 1000;
}

/* The damping state candidate `c` leaves for the next run. */
static void planner_hold_update(planner_ctx_t *ctx, const planner_cand_t *c) {
  planner_hold_t *h = &ctx->holds[c->src];
  int64_t now = planner_damp_now(ctx);
  if (c->placed && c->strained) {
    if (!h->strain_since_ms) h->strain_since_ms = now;
  } else {
    h->strain_since_ms = 0;
  }
  if (c->cap_refused && !h->withdrawn_ms) {
    if (now - h->last_withdrawn_ms >= 3600 * 1000) h->withdrawals = 0;
    h->withdrawals++;
    h->withdrawn_ms = h->last_withdrawn_ms = now;
  } else if (c->placed && !c->cap_refused && !c->held_back) {
    h->withdrawn_ms = 0; /* placed with no hub turning it down: the wait is over */
  }
}

/* Decides whether hub slug `slug` can take candidate `c` in the current
 * round; on PLANNER_HUB_CAPACITY the refused load is recorded on the hub
 * and *needed says how many agents it would take. */
static planner_verdict_t planner_judge(planner_ctx_t *ctx, planner_cand_t *c, const char *slug,
                                       size_t *hub_out, erlang_prediction_t *pred,
                                       unsigned *needed) {
  size_t h = planner_find(ctx, slug);
  *hub_out = h;
  c->ahead_refused = false; /* of this hub's check */
  if (h == PLANNER_NONE) return PLANNER_HUB_UNKNOWN;
  if (h == c->src) return PLANNER_HUB_SELF;
  const plan_site_t *site = &ctx->in->sites[h];
  planner_site_t *s = &ctx->st[h];
  if (!site->is_hub) return PLANNER_HUB_NOT_HUB;
  if (site->excluded) return PLANNER_HUB_EXCLUDED;
  /* A hub within its grace period keeps the sources it answers, no more. */
  bool established = ctx->st[c->src].cur == h;
  if (!(site->online || (site->hub_grace && established))) return PLANNER_HUB_OFFLINE;
  if (site->hub_waiting) return PLANNER_HUB_RECOVERING;
  if (s->away || s->pending) return PLANNER_HUB_AWAY;
  if (s->r_n_in >= RULES_MAX_SITES) return PLANNER_HUB_FULL;
  if (!established && !c->force && planner_waiting(ctx, c->src)) return PLANNER_HUB_WAITING;
  /* Never predict on agents nobody measured or configured: a zero there
   * is not a count. Only a forced move goes (the operator knows). */
  if (site->cap_source == CAPACITY_UNKNOWN && !c->force) return PLANNER_HUB_UNMEASURED;
  /* The same for the load: a new move is not judged on a zero nobody
   * measured. An established one stays (its load was known when it was
   * placed; withdrawing it on a gap in the figures would be a guess too). */
  if (s->r_unknown && !established && !c->force) return PLANNER_HUB_LOAD_UNKNOWN;
  /* Forced past an unknown: the operator is warned, as for a failed check. */
  if (c->force && !established &&
      (site->cap_source == CAPACITY_UNKNOWN || s->r_unknown || ctx->st[c->src].own_unknown))
    s->r_forced = true;
  planner_predict_with(ctx, h, c->erl, c->cps, pred);
  double floor = ctx->sl_target;
  if (established)
    floor -= ctx->in->keep_margin;
  else if (ctx->in->holds && ctx->in->holds[c->src].withdrawn_ms)
    floor += ctx->in->enter_margin;
  /* No agent answers no call, however few are offered (0 Erlangs predict
   * an SL of 100%): a hub with nobody staffed takes nothing unforced. */
  bool fits = pred->stable && pred->service_level >= floor && site->staffed > 0;
  if (!fits && c->force) s->r_forced = true; /* taken: force skips the check */
  if (!fits && established && !c->force && planner_hold_runs(ctx, c->src)) {
    c->strained = true; /* kept for the hold time: the dip may pass */
    c->strained_sl = pred->stable ? pred->service_level : 0;
    fits = true;
  }
  c->judged_floor = floor;
  if (!c->force && !fits) {
    double a = s->r_erl + c->erl, cps = s->r_cps + c->cps;
    *needed = erlang_agents_needed(a, planner_mix_aht(a, cps, site), ctx->sl_threshold_s, floor);
    if (*needed == 0) *needed = 1;
    planner_refused(ctx, h, c);
    return PLANNER_HUB_CAPACITY;
  }
  if (c->check_ahead && !planner_overflow_ahead(ctx, c, h, floor, needed)) {
    planner_refused(ctx, h, c);
    return PLANNER_HUB_CAPACITY;
  }
  if (c->check_asa) {
    double wait = ctx->in->sites[c->src].wait_s;
    if (!(pred->asa_s + (double)c->margin_s <= wait)) return PLANNER_HUB_SLOWER;
  }
  return PLANNER_HUB_OK;
}

/* Which service level a refusal's agents are for, when it is not the
 * target: " to re-enter at SL 85% after a capacity withdrawal", " to keep
 * SL 75%"; "" at the target. Formatted into the candidate's buffer. */
static const char *planner_floor_words(const planner_ctx_t *ctx, planner_cand_t *c) {
  double d = c->judged_floor - ctx->sl_target;
  c->floor_words[0] = '\0';
  if (d > 1e-9)
    snprintf(c->floor_words, sizeof c->floor_words,
             " to re-enter at SL %.0f%% after a capacity withdrawal", 100.0 * c->judged_floor);
  else if (d < -1e-9)
    snprintf(c->floor_words, sizeof c->floor_words, " to keep SL %.0f%%", 100.0 * c->judged_floor);
  return c->floor_words;
}

/* Tries the hubs of `c` in the rule's order against the round's loads and
 * books the load on the first that takes it. *soft is set when some hub
 * was turned down only because it is a pending source of this phase (the
 * candidate may succeed once that source is dropped); *capacity when some
 * hub refused for capacity. When `alarm` is given it receives the reason
 * for every hub, as its message's tail `why` ("shaanxi would need 41
 * agents (has 30), henan is offline") and as verdicts. */
static bool planner_try(planner_ctx_t *ctx, planner_cand_t *c, bool *soft, bool *capacity,
                        char *why, size_t whylen, plan_alarm_t *alarm) {
  *soft = false;
  *capacity = false;
  c->placed = false;
  c->strained = false;
  c->cap_refused = false;
  c->held_back = false;
  if (c->check_ahead) planner_overflow_unsize(ctx, c);
  if (why) why[0] = '\0';
  if (alarm) alarm->n_hubs = 0;
  const slug_list_t *hubs = c->hubs;
  unsigned n = hubs->n < RULES_MAX_SITES ? hubs->n : RULES_MAX_SITES;
  if (n == 0 && why) planner_append(why, whylen, "the rule names no hub");
  bool unknown = ctx->st[c->src].own_unknown;
  if (unknown && !c->force && ctx->st[c->src].cur == PLANNER_NONE) {
    if (why)
      planner_append(why, whylen, "its load is not known: %s",
                     planner_load_unknown(&ctx->in->sites[c->src]));
    return false;
  }
  for (unsigned i = 0; i < n; i++) {
    const char *slug = hubs->v[i];
    size_t h;
    erlang_prediction_t pred;
    unsigned needed = 0;
    planner_verdict_t v = planner_judge(ctx, c, slug, &h, &pred, &needed);
    if (v == PLANNER_HUB_OK) {
      planner_site_t *s = &ctx->st[h];
      s->r_erl += c->erl;
      s->r_cps += c->cps;
      s->r_n_in++;
      s->r_unknown |= unknown;
      planner_overflow_book(ctx, c, h);
      c->placed = true;
      c->hub = h;
      return true;
    }
    if (v == PLANNER_HUB_AWAY && !ctx->st[h].away) *soft = true;
    if (v == PLANNER_HUB_CAPACITY) *capacity = c->cap_refused = true;
    if (v == PLANNER_HUB_WAITING) *capacity = c->held_back = true;
    if (!why) continue;
    char one[160];
    const char *sep = " "; /* between the hub's name and why */
    switch (v) {
    case PLANNER_HUB_UNKNOWN: snprintf(one, sizeof one, "is not a known site"); break;
    case PLANNER_HUB_SELF: snprintf(one, sizeof one, "is the source itself"); break;
    case PLANNER_HUB_NOT_HUB: snprintf(one, sizeof one, "is not a hub"); break;
    case PLANNER_HUB_EXCLUDED: snprintf(one, sizeof one, "is excluded after a failed move"); break;
    case PLANNER_HUB_OFFLINE: {
      static const char *const words[] = {"is offline", "sends no fresh report",
                                          "has not connected to this controller",
                                          "has not reported yet", "cannot read its PBX"};
      unsigned d = (unsigned)ctx->in->sites[h].down_why;
      snprintf(one, sizeof one, "%s", words[d < sizeof words / sizeof *words ? d : 0]);
      break;
    }
    case PLANNER_HUB_RECOVERING:
      snprintf(one, sizeof one, "is back after a loss but not yet verified healthy");
      break;
    case PLANNER_HUB_AWAY: snprintf(one, sizeof one, "is moved away"); break;
    case PLANNER_HUB_FULL:
      snprintf(one, sizeof one, "already receives from %u sites", ctx->st[h].r_n_in);
      break;
    case PLANNER_HUB_CAPACITY:
      snprintf(one, sizeof one, "would need %u agents%s%s (has %u)", needed,
               c->ahead_refused ? " for the load forecast for the next half hour" : "",
               planner_floor_words(ctx, c), ctx->in->sites[h].staffed);
      break;
    case PLANNER_HUB_SLOWER:
      snprintf(one, sizeof one, "would answer in %.0f s, not %" PRIu32 " s faster than %.0f s",
               pred.asa_s, c->margin_s, ctx->in->sites[c->src].wait_s);
      break;
    case PLANNER_HUB_WAITING:
      sep = ": ";
      snprintf(one, sizeof one,
               "waiting %" PRIu32 " s after a capacity withdrawal, then it needs SL %.0f%%",
               planner_reentry_s(ctx, c->src), 100.0 * (ctx->sl_target + ctx->in->enter_margin));
      break;
    case PLANNER_HUB_UNMEASURED:
      /* Only an operator's cutover can be forced; a schedule or an
       * overflow rule cannot. */
      snprintf(one, sizeof one,
               "is not measured: configure it (nircctl capacity %s --seats N "
               "--roster ...)%s",
               slug, c->kind == RULE_CUTOVER ? " or use --force" : "");
      break;
    case PLANNER_HUB_LOAD_UNKNOWN: {
      const char *w = planner_load_unknown(&ctx->in->sites[h]);
      sep = ": ";
      snprintf(one, sizeof one, "the load it answers is not known (%s)",
               w ? w : "a source it takes was placed unknown");
      break;
    }
    case PLANNER_HUB_OK: one[0] = '\0'; break;
    }
    if (v == PLANNER_HUB_UNMEASURED)
      planner_append(why, whylen, "capacity of %s %s", slug, one);
    else
      planner_append(why, whylen, "%s%s%s", slug, sep, one);
    if (alarm && alarm->n_hubs < PLAN_ALARM_HUBS) {
      plan_hub_verdict_t *hv = &alarm->hubs[alarm->n_hubs++];
      memset(hv, 0, sizeof *hv);
      nirc_strlcpy(hv->hub, slug, sizeof hv->hub);
      nirc_strlcpy(hv->why, one, sizeof hv->why);
      hv->capacity = v == PLANNER_HUB_CAPACITY;
      hv->agents_needed = hv->capacity ? needed : 0;
      hv->agents = h != PLANNER_NONE ? ctx->in->sites[h].staffed : 0;
      hv->cap_source = h != PLANNER_NONE ? ctx->in->sites[h].cap_source : CAPACITY_UNKNOWN;
      hv->unmeasured = v == PLANNER_HUB_UNMEASURED;
    }
  }
  return false;
}

/* Records a placed candidate as its source's route. */
static void planner_assign(planner_ctx_t *ctx, const planner_cand_t *c) {
  planner_site_t *s = &ctx->st[c->src];
  s->away = true;
  s->hub = c->hub;
  s->permille = c->permille;
  s->kind = c->kind;
  s->rule_id = c->rule_id;
  s->revert_at_ms = c->revert_at_ms;
  s->wave_size = c->wave_size;
  nirc_strlcpy_utf8(s->reason, c->reason, sizeof s->reason);
  s->note[0] = '\0';
  if (c->strained)
    snprintf(s->note, sizeof s->note,
             "held at %s: predicted SL %.0f%% is below the keep floor %.0f%%; withdrawn after "
             "%" PRIu32 " s below it",
             ctx->in->sites[c->hub].slug, 100.0 * c->strained_sl,
             100.0 * (ctx->sl_target - ctx->in->keep_margin), ctx->in->hold_s);
}

/* The last attempt for a dropped candidate, against the final loads of
 * its phase; raises the alarm when it fails. */
static void planner_retry(planner_ctx_t *ctx, planner_cand_t *c) {
  const char *src = ctx->in->sites[c->src].slug;
  if (ctx->st[c->src].n_in > 0) {
    char senders[160];
    planner_senders(ctx, c->src, senders, sizeof senders);
    planner_alarm(ctx, PLAN_ALARM_NO_HUB, src, c->kind, c->rule_id,
                  "%s cannot move %s: it receives traffic from %s", c->label, src, senders);
    return;
  }
  char why[200];
  bool soft, capacity;
  plan_alarm_t verdicts; /* the hubs' verdicts, for the alarm */
  planner_round_reset(ctx);
  bool ok = planner_try(ctx, c, &soft, &capacity, why, sizeof why, &verdicts);
  /* Commit even on failure: the refusals belong in the plan. */
  planner_round_commit(ctx);
  if (ok) {
    planner_assign(ctx, c);
    return;
  }
  plan_alarm_t *a;
  if (capacity && !c->cap_refused)
    a = planner_alarm(ctx, PLAN_ALARM_WAITING, src, c->kind, c->rule_id,
                      "%s: %s waits before moving again: %s", c->label, src, why);
  else if (capacity)
    a = planner_alarm(ctx, PLAN_ALARM_CAPACITY, src, c->kind, c->rule_id,
                      "%s: no hub has the capacity for %s: %s", c->label, src, why);
  else
    a = planner_alarm(ctx, PLAN_ALARM_NO_HUB, src, c->kind, c->rule_id,
                      "%s: no eligible hub for %s: %s", c->label, src, why);
  if (a) {
    memcpy(a->hubs, verdicts.hubs, verdicts.n_hubs * sizeof a->hubs[0]);
    a->n_hubs = verdicts.n_hubs;
  }
}

/* Decides one phase (see the top comment). */
void planner_phase(planner_ctx_t *ctx, planner_cand_t *cands, size_t n) {
  /* Established moves first, in their order, then the others: a hub's
   * capacity goes to the sources it already answers, so a source is never
   * pushed out by one that is not there yet (and a new leader, which
   * learns the established routes from the agents, keeps the same ones). */
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (ctx->st[cands[i].src].cur != PLANNER_NONE) {
      planner_cand_t c = cands[i];
      memmove(&cands[k + 1], &cands[k], (i - k) * sizeof *cands);
      cands[k++] = c;
    }
  for (size_t i = 0; i < n; i++) {
    ctx->st[cands[i].src].pending = true;
    ctx->st[cands[i].src].candidate = true;
  }
  for (;;) {
    planner_round_reset(ctx);
    size_t drop = PLANNER_NONE;
    bool drop_soft = true;
    for (size_t i = 0; i < n; i++) {
      planner_cand_t *c = &cands[i];
      if (c->dropped) continue;
      bool soft, capacity;
      if (planner_try(ctx, c, &soft, &capacity, NULL, 0, NULL)) continue;
      if (!soft) {
        drop = i;
        drop_soft = false;
      } else if (drop_soft) {
        drop = i;
      }
    }
    if (drop == PLANNER_NONE) break;
    cands[drop].dropped = true;
    cands[drop].placed = false;
    ctx->st[cands[drop].src].pending = false;
  }
  planner_round_commit(ctx);
  for (size_t i = 0; i < n; i++) {
    if (cands[i].placed) planner_assign(ctx, &cands[i]);
    ctx->st[cands[i].src].pending = false;
  }
  for (size_t i = 0; i < n; i++)
    if (cands[i].dropped) planner_retry(ctx, &cands[i]);
  for (size_t i = 0; i < n; i++)
    planner_hold_update(ctx, &cands[i]);
}

/* Fills the fields every candidate shares. */
void planner_cand_init(planner_cand_t *c, size_t src, rule_kind_t kind, uint64_t id,
                       const slug_list_t *hubs) {
  memset(c, 0, sizeof *c);
  c->src = src;
  c->kind = kind;
  c->rule_id = id;
  c->hubs = hubs;
  c->hub = PLANNER_NONE;
  c->overflow_slot = PLANNER_NONE;
}

/* Whether a rule may take `idx` as a source in this phase; raises the
 * alarm for a source that cannot move because it receives traffic. */
bool planner_source_free(planner_ctx_t *ctx, size_t idx, rule_kind_t kind, uint64_t id,
                         const char *label) {
  const planner_site_t *s = &ctx->st[idx];
  /* pending doubles as "already claimed by a rule of this phase". */
  if (s->away || s->pending || ctx->in->sites[idx].excluded) return false;
  if (s->n_in > 0) {
    char senders[160];
    planner_senders(ctx, idx, senders, sizeof senders);
    planner_alarm(ctx, PLAN_ALARM_NO_HUB, ctx->in->sites[idx].slug, kind, id,
                  "%s cannot move %s: it receives traffic from %s", label, ctx->in->sites[idx].slug,
                  senders);
    return false;
  }
  return true;
}

/* ---- the three phases ---------------------------------------------------- */

static bool planner_cutover_active(const cutover_t *c, int64_t now_ms) {
  if (c->state != CUTOVER_ACTIVE) return false;
  return c->expires_ms == 0 || c->expires_ms > now_ms;
}

static int planner_cutovers(planner_ctx_t *ctx) {
  const plan_input_t *in = ctx->in;
  size_t n_order = 0, n_src = 0;
  planner_order_t *order = calloc(in->n_cutovers + 1, sizeof *order);
  if (!order) return NIRC_ENOMEM;
  for (size_t i = 0; i < in->n_cutovers; i++) {
    if (!planner_cutover_active(&in->cutovers[i], in->now_ms)) continue;
    order[n_order++] = (planner_order_t){in->cutovers[i].id, i};
    n_src += in->cutovers[i].sources.n;
  }
  qsort(order, n_order, sizeof *order, planner_cmp_order);
  planner_cand_t *cands = calloc(n_src + 1, sizeof *cands);
  if (!cands) {
    free(order);
    return NIRC_ENOMEM;
  }
  size_t n = 0;
  for (size_t k = 0; k < n_order; k++) {
    const cutover_t *co = &in->cutovers[order[k].idx];
    char label[96];
    planner_label(label, sizeof label, "cutover", co->id, NULL);
    planner_unknown_sites(ctx, &co->sources, RULE_CUTOVER, co->id, label, "source");
    planner_unknown_sites(ctx, &co->hubs, RULE_CUTOVER, co->id, label, "hub");
    for (unsigned j = 0; j < co->sources.n && j < RULES_MAX_SITES; j++) {
      size_t idx = planner_find(ctx, co->sources.v[j]);
      if (idx == PLANNER_NONE || !planner_source_free(ctx, idx, RULE_CUTOVER, co->id, label))
        continue;
      const plan_site_t *site = &in->sites[idx];
      planner_cand_t *c = &cands[n++];
      planner_cand_init(c, idx, RULE_CUTOVER, co->id, &co->hubs);
      nirc_strlcpy(c->label, label, sizeof c->label);
      char full[RULES_REASON_MAX + 32];
      snprintf(full, sizeof full, "%s%s%s", label, co->reason[0] ? ": " : "", co->reason);
      nirc_strlcpy_utf8(c->reason, full, sizeof c->reason); /* whole characters only */
      /* A partial cutover moves share_permille of the calls (0 means all). */
      c->permille = co->share_permille ? co->share_permille : 1000;
      c->cps = planner_rate(site->demand_cps) * (double)c->permille / 1000.0;
      c->erl = c->cps * planner_aht(site);
      c->force = co->force;
      c->revert_at_ms = co->expires_ms;
      ctx->st[idx].pending = true;
    }
  }
  planner_phase(ctx, cands, n);
  free(cands);
  free(order);
  return 0;
}

static int planner_schedules(planner_ctx_t *ctx) {
  const plan_input_t *in = ctx->in;
  size_t n_order = 0, n_src = 0;
  planner_order_t *order = calloc(in->n_schedules + 1, sizeof *order);
  int64_t *ends = calloc(in->n_schedules + 1, sizeof *ends);
  if (!order || !ends) {
    free(order);
    free(ends);
    return NIRC_ENOMEM;
  }
  for (size_t i = 0; i < in->n_schedules; i++) {
    int64_t start = 0, end = 0;
    const schedule_t *s = &in->schedules[i];
    if (!s->enabled || !rules_schedule_window(s, in->now_ms, &start, &end)) continue;
    ends[i] = end;
    order[n_order++] = (planner_order_t){s->id, i};
    n_src += s->sources.n;
  }
  qsort(order, n_order, sizeof *order, planner_cmp_order);
  planner_cand_t *cands = calloc(n_src + 1, sizeof *cands);
  if (!cands) {
    free(order);
    free(ends);
    return NIRC_ENOMEM;
  }
  size_t n = 0;
  for (size_t k = 0; k < n_order; k++) {
    const schedule_t *sc = &in->schedules[order[k].idx];
    char label[96];
    planner_label(label, sizeof label, "schedule", sc->id, sc->name);
    planner_unknown_sites(ctx, &sc->sources, RULE_SCHEDULE, sc->id, label, "source");
    planner_unknown_sites(ctx, &sc->hubs, RULE_SCHEDULE, sc->id, label, "hub");
    for (unsigned j = 0; j < sc->sources.n && j < RULES_MAX_SITES; j++) {
      size_t idx = planner_find(ctx, sc->sources.v[j]);
      if (idx == PLANNER_NONE || !planner_source_free(ctx, idx, RULE_SCHEDULE, sc->id, label))
        continue;
      const plan_site_t *site = &in->sites[idx];
      planner_cand_t *c = &cands[n++];
      planner_cand_init(c, idx, RULE_SCHEDULE, sc->id, &sc->hubs);
      nirc_strlcpy(c->label, label, sizeof c->label);
      nirc_strlcpy(c->reason, label, sizeof c->reason);
      c->permille = 1000;
      /* A schedule is planned for the demand expected when it starts. */
      double fc = planner_rate(site->forecast_cps);
      c->cps = fc > 0 ? fc : planner_rate(site->demand_cps);
      c->erl = c->cps * planner_aht(site);
      c->revert_at_ms = ends[order[k].idx];
      c->wave_size = sc->wave_size;
      ctx->st[idx].pending = true;
    }
  }
  planner_phase(ctx, cands, n);
  free(cands);
  free(order);
  free(ends);
  return 0;
}

/* ---- output ------------------------------------------------------------- */

static void planner_write_routes(const planner_ctx_t *ctx, plan_t *out) {
  const plan_input_t *in = ctx->in;
  for (size_t i = 0; i < in->n_sites; i++) {
    plan_route_t *r = &out->routes[i];
    const planner_site_t *s = &ctx->st[i];
    memset(r, 0, sizeof *r);
    nirc_strlcpy(r->slug, in->sites[i].slug, sizeof r->slug);
    if (s->away) {
      nirc_strlcpy(r->route[0].site, in->sites[s->hub].slug, sizeof r->route[0].site);
      r->route[0].permille = s->permille;
      r->n_route = 1;
      if (s->permille < 1000) {
        nirc_strlcpy(r->route[1].site, in->sites[i].slug, sizeof r->route[1].site);
        r->route[1].permille = 1000 - s->permille;
        r->n_route = 2;
      }
      r->revert_at_ms = s->revert_at_ms;
      r->kind = s->kind;
      r->rule_id = s->rule_id;
      r->wave_size = s->wave_size;
      nirc_strlcpy_utf8(r->reason, s->reason, sizeof r->reason);
      nirc_strlcpy(r->note, s->note, sizeof r->note);
    } else {
      nirc_strlcpy(r->route[0].site, in->sites[i].slug, sizeof r->route[0].site);
      r->route[0].permille = 1000;
      r->n_route = 1;
      r->kind = RULE_NONE;
      nirc_strlcpy(r->reason,
                   in->sites[i].excluded ? "default (excluded after a failed move)" : "default",
                   sizeof r->reason);
    }
  }
  for (size_t j = 0; j < in->n_sites; j++) {
    const planner_site_t *s = &ctx->st[j];
    if (!s->away) continue;
    plan_route_t *hub = &out->routes[s->hub];
    if (hub->n_inbound < RULES_MAX_SITES) hub->inbound[hub->n_inbound++] = (uint32_t)j;
  }
}

/* One entry per hub that takes sources or turned one down (see the top
 * comment). */
static void planner_write_capacity(const planner_ctx_t *ctx, plan_t *out) {
  const plan_input_t *in = ctx->in;
  for (size_t i = 0; i < in->n_sites; i++) {
    const planner_site_t *s = &ctx->st[i];
    const plan_site_t *site = &in->sites[i];
    /* The refusals at this hub: how many sources, and the largest. */
    unsigned n_refused = 0;
    const planner_refusal_t *largest = NULL;
    char names[sizeof out->capacity[0].refused_sources] = "";
    for (size_t k = 0; k < ctx->n_refusals_kept; k++) {
      const planner_refusal_t *r = &ctx->refusals[k];
      if (r->hub != i) continue;
      bool seen = false; /* a source turned down in two phases counts once */
      for (size_t j = 0; j < k && !seen; j++)
        seen = ctx->refusals[j].hub == i && ctx->refusals[j].src == r->src;
      if (!largest || r->erl > largest->erl) largest = r;
      if (seen) continue;
      n_refused++;
      planner_append(names, sizeof names, "%s", in->sites[r->src].slug);
    }
    if (s->n_in == 0 && n_refused == 0) continue;
    plan_capacity_t *c = &out->capacity[out->n_capacity++];
    memset(c, 0, sizeof *c);
    nirc_strlcpy(c->hub, site->slug, sizeof c->hub);
    erlang_predict(site->staffed, s->own_erl, planner_mix_aht(s->own_erl, s->own_cps, site),
                   ctx->sl_threshold_s, &c->before);
    double aht = planner_mix_aht(s->erl, s->cps, site);
    erlang_predict(site->staffed, s->erl, aht, ctx->sl_threshold_s, &c->after);
    c->agents_needed = erlang_agents_needed(s->erl, aht, ctx->sl_threshold_s, ctx->sl_target);
    c->n_sources = s->n_in;
    c->forced = s->forced;
    c->load_unknown = s->unknown;
    c->cap_source = site->cap_source;
    nirc_strlcpy(c->cap_note, site->cap_note, sizeof c->cap_note);
    if (s->ahead_basis != PLAN_LOAD_GIVEN) planner_overflow_load_on(s, c, &c->load_on);
    if (n_refused == 0) continue;
    c->refused = true;
    c->n_refused = n_refused;
    nirc_strlcpy(c->refused_sources, names, sizeof c->refused_sources);
    nirc_strlcpy(c->largest_refused, in->sites[largest->src].slug, sizeof c->largest_refused);
    double erl = s->erl + largest->erl, cps = s->cps + largest->cps;
    aht = planner_mix_aht(erl, cps, site);
    erlang_predict(site->staffed, erl, aht, ctx->sl_threshold_s, &c->with_refused);
    c->with_refused_needed = erlang_agents_needed(erl, aht, ctx->sl_threshold_s, ctx->sl_target);
    /* As the check says (planner_judge): a source needs someone there. */
    if (c->with_refused_needed == 0) c->with_refused_needed = 1;
  }
}

/* ---- API ---------------------------------------------------------------- */

int planner_run(const plan_input_t *in, plan_t *out) {
  memset(out, 0, sizeof *out);
  planner_ctx_t ctx = {.in = in};
  /* Zero means "not set": a zeroed input gets the product defaults. */
  ctx.sl_target = in->sl_target > 0 ? in->sl_target : PLANNER_DEFAULT_SL_TARGET;
  ctx.sl_threshold_s = in->sl_threshold_s > 0 ? in->sl_threshold_s : PLANNER_DEFAULT_SL_THRESHOLD_S;
  size_t n = in->n_sites;
  int rc = NIRC_ENOMEM;

  ctx.by_slug = calloc(n + 1, sizeof *ctx.by_slug);
  ctx.st = calloc(n + 1, sizeof *ctx.st);
  out->routes = calloc(n + 1, sizeof *out->routes);
  out->capacity = calloc(n + 1, sizeof *out->capacity); /* at most one per hub */
  out->overflow_state = calloc(in->n_overflows + 1, sizeof *out->overflow_state);
  out->holds = ctx.holds = calloc(n + 1, sizeof *out->holds);
  if (!ctx.by_slug || !ctx.st || !out->routes || !out->capacity || !out->overflow_state ||
      !out->holds)
    goto done;
  if (in->holds) memcpy(out->holds, in->holds, n * sizeof *out->holds);

  for (size_t i = 0; i < n; i++) {
    const plan_site_t *site = &in->sites[i];
    planner_site_t *s = &ctx.st[i];
    ctx.by_slug[i] = (planner_slug_t){site->slug, i};
    /* The inflow is answered with the hub's handle time: the calls' own is
     * not known here (their sources' proxies do not measure it). */
    s->own_cps = planner_rate(site->demand_cps) + planner_rate(site->inflow_unrouted_cps);
    s->own_erl = s->own_cps * planner_aht(site);
    s->erl = s->own_erl;
    s->cps = s->own_cps;
    s->own_unknown = s->unknown = planner_load_unknown(site) != NULL;
    s->hub = PLANNER_NONE;
    s->in_blind = PLANNER_NONE;
  }
  qsort(ctx.by_slug, n, sizeof *ctx.by_slug, planner_cmp_slug);
  for (size_t i = 0; i < n; i++)
    ctx.st[i].cur =
        in->sites[i].cur_hub[0] ? planner_find(&ctx, in->sites[i].cur_hub) : PLANNER_NONE;

  if ((rc = planner_cutovers(&ctx)) != 0) goto done;
  if ((rc = planner_schedules(&ctx)) != 0) goto done;
  if ((rc = planner_overflows(&ctx, out)) != 0) goto done;
  rc = NIRC_ENOMEM;
  if (ctx.nomem) goto done;

  /* No rule wants these sources now: nothing to hold, nothing to wait for
   * (the count of withdrawals stays for the backoff). */
  for (size_t i = 0; i < n; i++)
    if (!ctx.st[i].candidate) out->holds[i].strain_since_ms = out->holds[i].withdrawn_ms = 0;
  out->n_routes = n;
  planner_write_routes(&ctx, out);
  planner_write_capacity(&ctx, out);
  out->alarms = ctx.alarms;
  out->n_alarms = ctx.n_alarms;
  ctx.alarms = NULL;
  rc = 0;

done:
  free(ctx.by_slug);
  free(ctx.st);
  free(ctx.alarms);
  free(ctx.refusals);
  if (rc != 0) planner_free(out);
  return rc;
}

void planner_free(plan_t *p) {
  if (!p) return;
  free(p->routes);
  free(p->capacity);
  free(p->alarms);
  free(p->overflow_state);
  free(p->holds);
  memset(p, 0, sizeof *p);
}

const plan_route_t *planner_route(const plan_t *p, const char *slug) {
  for (size_t i = 0; i < p->n_routes; i++)
    if (strcmp(p->routes[i].slug, slug) == 0) return &p->routes[i];
  return NULL;
}
