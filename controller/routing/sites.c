#include "sites.h"

#include "err.h"
#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every bit of LoadReport.not_measured this controller knows, and the
 * agent counts among them. */
#define SITES_NM_ALL    0x1ffu
#define SITES_NM_AGENTS 0xfu

static const char *const site_state_names[] = {
    [SITE_NEVER_SEEN] = "never-seen",
    [SITE_ONLINE] = "online",
    [SITE_STALE] = "stale",
    [SITE_OFFLINE] = "offline",
};

/* allowed[from][to] */
static const bool site_allowed[4][4] = {
    [SITE_NEVER_SEEN] = {[SITE_ONLINE] = true},
    [SITE_ONLINE] = {[SITE_STALE] = true, [SITE_OFFLINE] = true},
    [SITE_STALE] = {[SITE_ONLINE] = true, [SITE_OFFLINE] = true},
    [SITE_OFFLINE] = {[SITE_ONLINE] = true},
};

const char *sites_state_name(site_state_t st) {
  return (unsigned)st < 4 ? site_state_names[st] : "?";
}

/* Changes to any registry's sites (state, reports, load seeds, credits),
 * for the engine's "did anything change since the last plan" test
 * (sites_change_count). Process-wide rather than per registry because
 * the mutators take a site, not its registry; a controller has one
 * registry, and a test with several only re-plans more often. The loop
 * is single-threaded, as is everything here. */
static uint64_t sites_changes;

uint64_t sites_change_count(void) {
  return sites_changes;
}

int sites_set_state(site_t *site, site_state_t to, int64_t now_ms) {
  sites_changes++;
  if ((unsigned)to >= 4 || !site_allowed[site->state][to]) {
    log_error(LOG_SITE, site->slug, "refused state change %s -> %s", sites_state_name(site->state),
              sites_state_name(to));
    return NIRC_EINVAL;
  }
  log_info(LOG_SITE, site->slug, "%s -> %s", sites_state_name(site->state), sites_state_name(to));
  site->state = to;
  site->state_since_ms = now_ms;
  return 0;
}

void sites_init(sites_t *s, uint32_t stale_after_ms) {
  memset(s, 0, sizeof *s);
  s->stale_after_ms = stale_after_ms;
}

void sites_free(sites_t *s) {
  free(s->v);
  free(s->idx);
  memset(s, 0, sizeof *s);
}

/* FNV-1a: slugs are short lowercase names; it spreads them well enough
 * and needs no seed (the set of slugs is the operator's, not a peer's:
 * a slug a peer sends is only ever looked up, never inserted). */
static size_t sites_hash(const char *slug) {
  uint64_t h = 1469598103934665603ULL;
  for (const unsigned char *p = (const unsigned char *)slug; *p; p++)
    h = (h ^ *p) * 1099511628211ULL;
  return (size_t)h;
}

static void sites_idx_put(uint32_t *idx, size_t cap, const char *slug, size_t pos) {
  size_t i = sites_hash(slug) & (cap - 1);
  while (idx[i])
    i = (i + 1) & (cap - 1);
  idx[i] = (uint32_t)(pos + 1);
}

/* Makes room for one more site in the index (rebuilt at double size). */
static int sites_idx_reserve(sites_t *s) {
  if ((s->n + 1) * 2 <= s->idx_cap) return 0;
  size_t cap = s->idx_cap ? s->idx_cap * 2 : 64;
  while ((s->n + 1) * 2 > cap)
    cap *= 2;
  uint32_t *idx = calloc(cap, sizeof *idx);
  if (!idx) return NIRC_ENOMEM;
  for (size_t k = 0; k < s->n; k++)
    sites_idx_put(idx, cap, s->v[k].slug, k);
  free(s->idx);
  s->idx = idx;
  s->idx_cap = cap;
  return 0;
}

/* A site as sites_add makes it: NEVER_SEEN, LIVE, routing home. */
static void sites_fresh(site_t *site, const char *slug, const char *name_en, const char *name_zh,
                        bool is_hub) {
  memset(site, 0, sizeof *site);
  nirc_strlcpy(site->slug, slug, sizeof site->slug);
  nirc_strlcpy(site->name_en, name_en, sizeof site->name_en);
  nirc_strlcpy(site->name_zh, name_zh, sizeof site->name_zh);
  site->is_hub = is_hub;
  site->state = SITE_NEVER_SEEN;
  nirc_strlcpy(site->route[0].site, slug, sizeof site->route[0].site);
  site->route[0].permille = 1000;
  site->route_len = 1;
  nirc_strlcpy(site->active_rule, "default", sizeof site->active_rule);
}

int sites_add(sites_t *s, const char *slug, const char *name_en, const char *name_zh, bool is_hub) {
  sites_changes++;
  if (!nirc_slug_valid(slug)) return NIRC_EINVAL;
  if (sites_find(s, slug)) return NIRC_EEXISTS;
  if (s->n >= UINT32_MAX - 1 || sites_idx_reserve(s) != 0) return NIRC_ENOMEM;
  bool moved = false;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 32;
    site_t *v = realloc(s->v, cap * sizeof *v);
    if (!v) return NIRC_ENOMEM;
    moved = v != s->v && s->n > 0;
    s->v = v;
    s->cap = cap;
  }
  site_t *site = &s->v[s->n++];
  sites_fresh(site, slug, name_en, name_zh, is_hub);
  sites_idx_put(s->idx, s->idx_cap, site->slug, s->n - 1);
  if (s->on_grow) s->on_grow(s->on_grow_arg, s, moved);
  return 0;
}

site_t *sites_find_live(sites_t *s, const char *slug) {
  site_t *site = sites_find(s, slug);
  return site && site->life == SITE_LIVE ? site : NULL;
}

const char *sites_life_name(site_life_t l) {
  return l == SITE_LIVE ? "live" : l == SITE_REMOVED ? "removed" : "?";
}

int sites_remove(site_t *site, int64_t now_ms, const char *who) {
  if (site->life != SITE_LIVE) return NIRC_EINVAL;
  log_info(LOG_SITE, site->slug, "%s -> %s by %s", sites_life_name(site->life),
           sites_life_name(SITE_REMOVED), who);
  sites_changes++; /* the engine plans again: the site is gone */
  site->life = SITE_REMOVED;
  site->removed_ms = now_ms;
  nirc_strlcpy(site->removed_by, who, sizeof site->removed_by);
  return 0;
}

int sites_revive(site_t *site, const char *name_en, const char *name_zh, bool is_hub) {
  if (site->life != SITE_REMOVED) return NIRC_EINVAL;
  char slug[SCENARIO_SLUG_MAX];
  nirc_strlcpy(slug, site->slug, sizeof slug);
  capacity_t cap = site->cap;
  double lat = site->lat, lon = site->lon;
  sites_changes++;
  sites_fresh(site, slug, name_en, name_zh, is_hub);
  site->cap = cap;
  site->lat = lat;
  site->lon = lon;
  log_info(LOG_SITE, slug, "%s -> %s", sites_life_name(SITE_REMOVED), sites_life_name(SITE_LIVE));
  return 0;
}

size_t sites_live(const sites_t *s) {
  size_t n = 0;
  for (size_t i = 0; i < s->n; i++)
    n += s->v[i].life == SITE_LIVE;
  return n;
}

site_t *sites_find(sites_t *s, const char *slug) {
  if (!s->idx_cap) return NULL;
  for (size_t i = sites_hash(slug) & (s->idx_cap - 1); s->idx[i]; i = (i + 1) & (s->idx_cap - 1)) {
    site_t *site = &s->v[s->idx[i] - 1];
    if (strcmp(site->slug, slug) == 0) return site;
  }
  return NULL;
}

void sites_on_hello(site_t *site, int64_t now_ms) {
  sites_changes++;
  if (site->state != SITE_ONLINE) sites_set_state(site, SITE_ONLINE, now_ms);
  site->last_seen_ms = now_ms;
}

#define SITES_NM(r, bit) (((r)->not_measured & NIRC__LOAD_FIGURE__LOAD_FIGURE_##bit) != 0)

static void sites_minute_add(site_minute_t *m, const site_report_t *r) {
  m->reports++;
  if (r->pbx_unreadable) {
    /* Unreadable intervals carry no numbers: count them, add nothing. */
    m->unreadable++;
    return;
  }
  m->offered += r->offered;
  m->answered += r->answered;
  m->abandoned += r->abandoned;
  m->answered_within += r->answered_within;
  m->from_other_sites += r->from_other_sites;
  m->routed_away += r->routed_away;
  /* A figure not measured adds nothing: its zero is not a zero. */
  if (!SITES_NM(r, CALLS_IN_QUEUE)) {
    m->queue_reports++;
    if (r->in_queue > m->max_queue) m->max_queue = r->in_queue;
    if (!SITES_NM(r, CALLS_IN_QUEUE_PEAK) && r->queue_peak > m->max_queue)
      m->max_queue = r->queue_peak;
  }
  if (!SITES_NM(r, LONGEST_WAIT) && r->longest_wait_ms > m->max_wait_ms)
    m->max_wait_ms = r->longest_wait_ms;
  if (!SITES_NM(r, AGENTS_LOGGED_IN)) {
    m->agents_reports++;
    m->sum_logged_in += r->logged_in;
    m->sum_ready += r->ready;
    m->sum_talking += r->talking;
  }
  if (!SITES_NM(r, AHT)) {
    m->aht_reports++;
    m->sum_aht_ms += r->aht_ms;
  }
}

/* The source-side totals wave verification takes differences of. */
static void sites_count_routed(site_t *site, const Nirc__LoadReport *r) {
  site->reports_total++;
  site->routing_measured = r->routing_measured && !r->pbx_unreadable;
  if (r->pbx_unreadable || !site->routing_measured) {
    /* No rate is known: none is shown or used (unknown, not zero). */
    for (unsigned k = 0; k < site->n_sent; k++)
      site->sent[k].flow_calls = 0;
    site->flow_secs = 0;
  }
  if (r->pbx_unreadable) return;
  if (site->routing_measured) {
    site->routing_measured_total++;
    double secs = r->interval_ms / 1000.0, wd = exp(-secs / SITES_METRIC_TAU_S);
    for (unsigned k = 0; k < site->n_sent; k++)
      site->sent[k].flow_calls *= wd;
    site->flow_secs = site->flow_secs * wd + secs;
  }
  int64_t own = (int64_t)r->calls_offered - r->calls_from_other_sites + r->calls_routed_away;
  if (own > 0) site->own_calls_total += (uint64_t)own;
  for (size_t i = 0; i < r->n_routed_to; i++) {
    const Nirc__SiteCount *c = r->routed_to[i];
    if (c->calls == 0 || !c->site) continue;
    sites_sent_t *e = NULL;
    for (unsigned k = 0; k < site->n_sent && !e; k++)
      if (strcmp(site->sent[k].site, c->site) == 0) e = &site->sent[k];
    if (!e && site->n_sent < SITES_SENT_MAX) {
      e = &site->sent[site->n_sent++];
      memset(e, 0, sizeof *e);
      nirc_strlcpy(e->site, c->site, sizeof e->site);
    }
    if (!e) {
      /* Full: the destination it sent nothing to for longest makes room;
       * its new total starts after this report (sites_sent_to says so). */
      e = &site->sent[0];
      for (unsigned k = 1; k < site->n_sent; k++)
        if (site->sent[k].last_report < e->last_report) e = &site->sent[k];
      nirc_strlcpy(e->site, c->site, sizeof e->site);
      e->calls = 0;
      e->flow_calls = 0;
      e->first_report = site->reports_total;
    }
    e->calls += c->calls;
    e->last_report = site->reports_total;
    if (site->routing_measured && site->reports_total > e->quiet_until) e->flow_calls += c->calls;
  }
}

double sites_flow_cps(const site_t *src, const sites_sent_t *e) {
  /* Less than a second of evidence says nothing of a rate. */
  return src->flow_secs >= 1.0 ? e->flow_calls / src->flow_secs : 0;
}

void sites_flow_forget(site_t *src, const char *hub) {
  for (unsigned k = 0; k < src->n_sent; k++)
    if (strcmp(src->sent[k].site, hub) == 0) {
      src->sent[k].flow_calls = 0;
      /* The next report's interval may straddle the change: its calls to
       * the hub were sent before it. */
      src->sent[k].quiet_until = src->reports_total + 1;
    }
}

uint64_t sites_sent_to(const site_t *src, const char *hub, uint64_t since_report, bool *known) {
  *known = true;
  for (unsigned k = 0; k < src->n_sent; k++)
    if (strcmp(src->sent[k].site, hub) == 0) {
      /* Counted from a report after `since_report`: earlier calls are lost. */
      if (src->sent[k].first_report > since_report) *known = false;
      return src->sent[k].calls;
    }
  return 0;
}

bool sites_on_report(site_t *site, const Nirc__LoadReport *r, int64_t now_ms, int64_t business_ms,
                     site_minute_t *flushed) {
  site_report_t *l = &site->last;
  /* A site's first report and a PBX that became (un)readable change what
   * the plan may use at once. Its figures change the plan's demand and
   * capacity, which the engine plans on at least once a second anyway: at
   * 20,000 sites reporting every second, a plan on every 200 ms tick for
   * them cost a fifth of a core. */
  if (!site->has_report || l->pbx_unreadable != r->pbx_unreadable) sites_changes++;
  l->timestamp_ms = r->timestamp_ms;
  l->interval_ms = r->interval_ms;
  l->offered = r->calls_offered;
  l->answered = r->calls_answered;
  l->abandoned = r->calls_abandoned;
  l->in_queue = r->calls_in_queue;
  l->queue_peak = r->calls_in_queue_peak;
  l->longest_wait_ms = r->longest_wait_ms;
  l->logged_in = r->agents_logged_in;
  l->ready = r->agents_ready;
  l->talking = r->agents_talking;
  l->not_ready = r->agents_not_ready;
  l->aht_ms = r->aht_ms;
  l->answered_within = r->answered_within_threshold;
  l->sl_threshold_s = r->sl_threshold_s;
  l->from_other_sites = r->calls_from_other_sites;
  l->routed_away = r->calls_routed_away;
  l->pbx_unreadable = r->pbx_unreadable;
  /* Only the bits the protocol defines: a newer agent's extra bits say
   * nothing this controller can show. */
  l->not_measured = r->not_measured & SITES_NM_ALL;
  /* A threshold of 0 s measures no service level (a proxy, an older agent
   * or an exec collect_cmd that does not flag it): its answered-within
   * count is a zero nobody counted, and every view of this report
   * (/metrics, /status.json, nircctl) would show SL 0%. Flagged here, once,
   * as the planner already takes it (engine_build_input). */
  if (r->sl_threshold_s == 0) l->not_measured |= NIRC__LOAD_FIGURE__LOAD_FIGURE_SERVICE_LEVEL;
  l->routing_measured = r->routing_measured;
  /* The text goes to the status page and nircctl as JSON: cut between
   * characters and with any byte that is not UTF-8 replaced, or the whole
   * site would drop out of their JSON. */
  nirc_strlcpy_utf8(l->pbx_error, r->pbx_error ? r->pbx_error : "", sizeof l->pbx_error);
  sites_count_routed(site, r);
  site->has_report = true;
  site->last_report_ms = now_ms;
  site->last_seen_ms = now_ms;
  if (site->state == SITE_STALE) sites_set_state(site, SITE_ONLINE, now_ms);

  if (!r->pbx_unreadable && r->interval_ms > 0) {
    double secs = r->interval_ms / 1000.0;
    double own = (double)r->calls_offered - r->calls_from_other_sites + r->calls_routed_away;
    double wd = exp(-secs / SITES_DEMAND_TAU_S);
    site->demand_calls = site->demand_calls * wd + (own > 0 ? own : 0);
    site->demand_secs = site->demand_secs * wd + secs;
    /* Handle time weighted by the calls it describes. */
    /* Handle time not measured: the calls say nothing of it (the planner
     * then uses the forecast's). */
    if (!SITES_NM(l, AHT)) {
      site->aht_calls = site->aht_calls * wd + r->calls_answered;
      site->aht_sum_s = site->aht_sum_s * wd + (double)r->calls_answered * r->aht_ms / 1000.0;
      if (site->aht_calls >= 1.0)
        site->aht_s = site->aht_sum_s / site->aht_calls;
      else if (r->aht_ms > 0 && !(site->aht_s > 0))
        /* Only as a first figure: a report that answered no call
         * describes none. A source whose calls all go to a hub answers
         * none, yet its PBX still reports the calls that end there: the
         * last ones it answered before the move, the longest of them
         * (0 answered, 694 s, at a 230 s site). Taken as its handle
         * time, that one report tripled its Erlangs at the hub for a
         * report period and withdrew a source from a hub that had the
         * agents (integration.stable at 60x, where one report period is
         * the whole capacity hold). Without new calls the estimate stays
         * what the calls it measured said. */
        site->aht_s = r->aht_ms / 1000.0;
    }
    double wait = r->longest_wait_ms / 1000.0, queue = r->calls_in_queue;
    if (!site->has_ewma) {
      site->wait_s = wait;
      site->queue = queue;
      site->sl = 1.0;
      site->has_ewma = true;
    }
    double am = 1.0 - exp(-secs / SITES_METRIC_TAU_S);
    /* Unmeasured wait and queue keep their last smoothed value (0 at a
     * site that never measured them, so no overflow triggers on them). */
    if (!SITES_NM(l, LONGEST_WAIT)) site->wait_s += am * (wait - site->wait_s);
    if (!SITES_NM(l, CALLS_IN_QUEUE)) site->queue += am * (queue - site->queue);
    /* A proxy (sl_threshold_s 0, or service level not measured) knows calls
     * but not agents: it says nothing about service level, so it must not
     * drag it to zero. */
    if (r->calls_offered > 0 && r->sl_threshold_s > 0 && !SITES_NM(l, SERVICE_LEVEL)) {
      double sl = (double)r->answered_within_threshold / r->calls_offered;
      site->sl += am * (sl - site->sl);
    }
  }

  int64_t minute = business_ms - (business_ms % 60000);
  bool out = false;
  if (site->minute.reports > 0 && site->minute.minute_ms != minute) {
    *flushed = site->minute;
    out = true;
    memset(&site->minute, 0, sizeof site->minute);
  }
  if (site->minute.reports == 0) site->minute.minute_ms = minute;
  sites_minute_add(&site->minute, l);
  return out;
}

void sites_seed_load(site_t *site, const sites_load_t *l, int64_t now_ms) {
  sites_changes++;
  double ago = now_ms > l->at_ms ? (double)(now_ms - l->at_ms) / 1000.0 : 0;
  double wd = exp(-ago / SITES_DEMAND_TAU_S);
  if (l->demand_secs * wd > site->demand_secs) {
    site->demand_calls = l->demand_calls * wd;
    site->demand_secs = l->demand_secs * wd;
  }
  if (l->aht_calls * wd > site->aht_calls) {
    site->aht_calls = l->aht_calls * wd;
    site->aht_sum_s = l->aht_sum_s * wd;
    if (site->aht_calls >= 1.0) site->aht_s = site->aht_sum_s / site->aht_calls;
  }
}

double sites_demand_cps(const site_t *site, double prior_cps, double min_evidence_s) {
  double calls = site->demand_calls, secs = site->demand_secs;
  if (secs < min_evidence_s) {
    calls += prior_cps * (min_evidence_s - secs);
    secs = min_evidence_s;
  }
  return secs > 0 ? calls / secs : 0;
}

uint64_t sites_credit_routed(sites_t *s, const site_t *src, const Nirc__LoadReport *r) {
  sites_changes++;
  uint64_t credited = 0, refused = 0;
  const char *first = NULL;
  if (r->pbx_unreadable) return 0;
  for (size_t i = 0; i < r->n_routed_to; i++) {
    const Nirc__SiteCount *c = r->routed_to[i];
    if (c->calls == 0) continue;
    site_t *hub = sites_find(s, c->site);
    if (!hub || hub == src) {
      refused += c->calls;
      if (!first) first = c->site;
      continue;
    }
    hub->inbound_credited += c->calls;
    credited += c->calls;
  }
  /* One line per report, however many names it has. The names passed
   * sites_validate_report: slugs, safe to log. */
  if (refused)
    log_warn(LOG_SITE, src->slug,
             "%llu calls reported sent to sites it cannot credit (e.g. %s: itself or unknown)",
             (unsigned long long)refused, first);
  return credited;
}

void sites_on_link_down(site_t *site, int64_t now_ms) {
  sites_changes++;
  if (site->state == SITE_ONLINE || site->state == SITE_STALE)
    sites_set_state(site, SITE_OFFLINE, now_ms);
  site->conn = NULL;
}

size_t sites_check_stale(sites_t *s, int64_t now_ms, void (*cb)(void *arg, site_t *site),
                         void *arg) {
  size_t changed = 0;
  for (size_t i = 0; i < s->n; i++) {
    site_t *site = &s->v[i];
    if (site->state != SITE_ONLINE) continue;
    if (now_ms - site->last_seen_ms < (int64_t)s->stale_after_ms) continue;
    if (sites_set_state(site, SITE_STALE, now_ms) == 0) {
      changed++;
      if (cb) cb(arg, site);
    }
  }
  return changed;
}

void sites_flush_minutes(sites_t *s, int64_t business_ms, bool force,
                         void (*cb)(void *arg, const site_t *site, const site_minute_t *m),
                         void *arg) {
  int64_t minute = business_ms - (business_ms % 60000);
  for (size_t i = 0; i < s->n; i++) {
    site_t *site = &s->v[i];
    if (site->minute.reports == 0) continue;
    if (!force && site->minute.minute_ms >= minute) continue;
    site_minute_t m = site->minute;
    memset(&site->minute, 0, sizeof site->minute);
    cb(arg, site, &m);
  }
}

int sites_validate_report(const Nirc__LoadReport *r, char *err, size_t errlen) {
  /* Counts are unsigned on the wire; what can still be impossible is their
   * relation to each other and to the interval. Limits are generous: they
   * catch corruption and hostile peers, not busy days. */
  const uint32_t big = 1000000;
  /* Intervals are business time: at a demo's 600x clock one real second
   * is ten minutes. A day is the most any clock makes of one report. */
  if (r->interval_ms == 0 || r->interval_ms > 86400000u) {
    snprintf(err, errlen, "interval_ms %u is outside 1..86400000", r->interval_ms);
    return NIRC_ERANGE;
  }
  if (r->calls_offered > big || r->calls_in_queue > big || r->calls_in_queue_peak > big ||
      r->agents_logged_in > big) {
    snprintf(err, errlen, "a count exceeds %u", big);
    return NIRC_ERANGE;
  }
  if (r->calls_answered > big || r->calls_abandoned > big || r->calls_routed_away > big) {
    snprintf(err, errlen, "a count exceeds %u", big);
    return NIRC_ERANGE;
  }
  /* Agent counts the report does not measure are not compared. */
  if (!(r->not_measured & SITES_NM_AGENTS) &&
      (r->agents_ready > r->agents_logged_in || r->agents_talking > r->agents_logged_in ||
       r->agents_not_ready > r->agents_logged_in)) {
    snprintf(err, errlen, "agents ready/talking/not-ready (%u/%u/%u) exceed logged in (%u)",
             r->agents_ready, r->agents_talking, r->agents_not_ready, r->agents_logged_in);
    return NIRC_ERANGE;
  }
  if (r->answered_within_threshold > r->calls_answered) {
    snprintf(err, errlen, "answered within threshold (%u) exceeds answered (%u)",
             r->answered_within_threshold, r->calls_answered);
    return NIRC_ERANGE;
  }
  if (r->calls_from_other_sites > r->calls_offered) {
    snprintf(err, errlen, "calls from other sites (%u) exceed offered (%u)",
             r->calls_from_other_sites, r->calls_offered);
    return NIRC_ERANGE;
  }
  /* Per-destination counts: a bounded list of distinct site names whose
   * calls add up to no more than the calls routed away. */
  if (r->n_routed_to > SITES_ROUTED_MAX) {
    snprintf(err, errlen, "routed_to names more than %d sites", SITES_ROUTED_MAX);
    return NIRC_ERANGE;
  }
  uint64_t routed = 0;
  for (size_t i = 0; i < r->n_routed_to; i++) {
    const Nirc__SiteCount *c = r->routed_to[i];
    if (!c || !c->site || !nirc_slug_valid(c->site)) {
      snprintf(err, errlen, "routed_to[%zu] does not name a site", i);
      return NIRC_ERANGE;
    }
    for (size_t j = 0; j < i; j++) {
      if (strcmp(r->routed_to[j]->site, c->site) == 0) {
        snprintf(err, errlen, "routed_to names %s twice", c->site);
        return NIRC_ERANGE;
      }
    }
    routed += c->calls;
  }
  if (routed > r->calls_routed_away) {
    snprintf(err, errlen, "routed_to adds up to %llu calls, more than routed away (%u)",
             (unsigned long long)routed, r->calls_routed_away);
    return NIRC_ERANGE;
  }
  if (r->longest_wait_ms > 86400000u || r->aht_ms > 86400000u) {
    snprintf(err, errlen, "wait or handle time over a day");
    return NIRC_ERANGE;
  }
  if (r->pbx_error && strlen(r->pbx_error) > 512) {
    snprintf(err, errlen, "pbx_error longer than 512 bytes");
    return NIRC_ERANGE;
  }
  return 0;
}

const char *sites_refusal_name(sites_refusal_t r) {
  switch (r) {
  case SITES_REFUSED_SEATS: return "seats";
  case SITES_REFUSED_CONSISTENCY: return "consistency";
  case SITES_REFUSED_COUNT: break;
  }
  return "?";
}

int sites_check_plausible(const site_t *site, const Nirc__LoadReport *r, sites_refusal_t *kind,
                          char *err, size_t errlen) {
  if (r->pbx_unreadable) return 0; /* carries no numbers */
  uint32_t nm = r->not_measured;
  bool agents = !(nm & NIRC__LOAD_FIGURE__LOAD_FIGURE_AGENTS_LOGGED_IN);
  /* What the site is configured to have, with the documented headroom
   * (capacity.h): a claim past it would make the planner send a province
   * to a call centre that does not exist. */
  uint32_t limit = capacity_report_limit(&site->cap);
  if (limit && agents && r->agents_logged_in > limit) {
    *kind = SITES_REFUSED_SEATS;
    uint32_t seats = site->cap.seats;
    if (seats)
      snprintf(err, errlen,
               "%s reported %" PRIu32 " agents logged in; it has %" PRIu32
               " seats configured (at most %" PRIu32 " accepted)",
               site->slug, r->agents_logged_in, seats, limit);
    else
      snprintf(err, errlen,
               "%s reported %" PRIu32 " agents logged in; its roster has at most %" PRIu32
               " (with headroom)",
               site->slug, r->agents_logged_in, limit);
    return NIRC_ERANGE;
  }
  if (agents && !(nm & SITES_NM_AGENTS) &&
      (uint64_t)r->agents_ready + r->agents_talking + r->agents_not_ready > r->agents_logged_in) {
    *kind = SITES_REFUSED_CONSISTENCY;
    snprintf(err, errlen,
             "%s reported %" PRIu32 " ready + %" PRIu32 " talking + %" PRIu32
             " not ready agents, more than the %" PRIu32 " logged in",
             site->slug, r->agents_ready, r->agents_talking, r->agents_not_ready,
             r->agents_logged_in);
    return NIRC_ERANGE;
  }
  /* Calls that end in an interval arrived in it, waited in the queue at
   * its start, or were ringing at an agent then (at most one each). Only
   * checked where the queue and the agents are measured and the previous
   * report is known, with a few calls of slack for rounding at the PBX. */
  const site_report_t *p = &site->last;
  if (site->has_report && !p->pbx_unreadable &&
      !(nm & NIRC__LOAD_FIGURE__LOAD_FIGURE_CALLS_IN_QUEUE) &&
      !(p->not_measured & NIRC__LOAD_FIGURE__LOAD_FIGURE_CALLS_IN_QUEUE)) {
    uint64_t ringing = !(p->not_measured & NIRC__LOAD_FIGURE__LOAD_FIGURE_AGENTS_LOGGED_IN)
                           ? p->logged_in
                           : site->cap.seats;
    uint64_t could = (uint64_t)r->calls_offered + p->in_queue + ringing + 5;
    if ((uint64_t)r->calls_answered + r->calls_abandoned > could) {
      *kind = SITES_REFUSED_CONSISTENCY;
      snprintf(err, errlen,
               "%s reported %" PRIu32 " answered + %" PRIu32 " abandoned calls; at most %" PRIu64
               " could end (%" PRIu32 " offered, %" PRIu32 " queued before, %" PRIu64 " at agents)",
               site->slug, r->calls_answered, r->calls_abandoned, could - 5, r->calls_offered,
               p->in_queue, ringing);
      return NIRC_ERANGE;
    }
  }
  return 0;
}
