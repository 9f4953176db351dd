/* engine_forecast: a site's expected demand for a business time, and
 * where it comes from. In order: the forecast from the stored load history
 * (forecast.h, rows handed over by engine_set_history), the scenario file
 * ([routing] forecast), the live load. Every answer says which one it is,
 * and why the better ones were not used ("history too short"). */
#include "engine-int.h"

#include "err.h"
#include "log.h"
#include "tz.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One site's history and its forecasts for the dates and half-hours asked
 * lately (one per half-hour of the day: the live path asks for now, a plan
 * for its window's start; they rarely share a half-hour on another date). */
typedef struct {
  forecast_sample_t *v; /* owned */
  size_t n;
  int32_t cache_date[FORECAST_SLOTS]; /* 0: nothing cached */
  forecast_cell_t cache[FORECAST_SLOTS];
} engine_site_hist_t;

/* A business minute turned into its local date and half-hour. */
typedef struct {
  int64_t minute; /* at_ms / 60000; INT64_MIN: empty */
  int32_t date;
  int slot;
} engine_local_t;

struct engine_hist {
  bool loaded;              /* false: only why it is not (failing) */
  engine_site_hist_t *site; /* one per site of the registry */
  size_t n_sites;
  unsigned weeks;
  int64_t loaded_at_ms; /* business time of the last successful load */
  uint64_t loaded_mono; /* and when it arrived */
  size_t n_rows;        /* half-hours held */
  char failing[200];    /* why the last reload failed; "": it did not */
  int32_t *exc;         /* the schedules' exception dates (owned) */
  size_t n_exc;
  uint64_t exc_fp;       /* their fingerprint: a change empties the caches */
  engine_local_t clk[2]; /* the last two minutes converted */
  unsigned clk_next;
};

void engine_hist_free(struct engine_hist *h) {
  if (!h) return;
  for (size_t i = 0; i < h->n_sites; i++)
    free(h->site[i].v);
  free(h->site);
  free(h->exc);
  free(h);
}

static void engine_hist_clear_caches(struct engine_hist *h) {
  for (size_t i = 0; i < h->n_sites; i++)
    memset(h->site[i].cache_date, 0, sizeof h->site[i].cache_date);
}

/* The exception dates of every schedule (enabled or not: a holiday is a
 * holiday), refreshed when they change. */
static void engine_hist_sync_exceptions(const engine_t *e, struct engine_hist *h) {
  uint64_t fp = 1469598103934665603ull;
  size_t n = 0;
  for (size_t k = 0; k < e->n_sch; k++)
    for (unsigned j = 0; j < e->sch[k].n_exceptions; j++) {
      fp = (fp ^ (uint32_t)e->sch[k].exceptions[j]) * 1099511628211ull;
      n++;
    }
  if (fp == h->exc_fp && n == h->n_exc) return;
  int32_t *v = n ? malloc(n * sizeof *v) : NULL;
  if (n && !v) return; /* keeps the old set; tried again next minute */
  size_t m = 0;
  for (size_t k = 0; k < e->n_sch; k++)
    for (unsigned j = 0; j < e->sch[k].n_exceptions; j++)
      v[m++] = e->sch[k].exceptions[j];
  free(h->exc);
  h->exc = v;
  h->n_exc = n;
  h->exc_fp = fp;
  engine_hist_clear_caches(h);
}

/* Local date and half-hour of business time at_ms in [routing]
 * forecast_tz. tz_to_local switches TZ: done once per business minute
 * asked, not once per site and tick. */
static bool engine_hist_local(const engine_t *e, struct engine_hist *h, int64_t at_ms,
                              int32_t *date, int *slot) {
  /* Before the minute's cache: a schedule added or changed since the
   * minute was last asked (a schedule add's own capacity check asks its
   * start, then the add) must not be forecast on the old exception dates.
   * A pass over the schedules' dates, a few hundred at most. */
  engine_hist_sync_exceptions(e, h);
  int64_t minute = at_ms >= 0 ? at_ms / 60000 : -((-at_ms + 59999) / 60000);
  for (unsigned k = 0; k < 2; k++)
    if (h->clk[k].minute == minute) {
      *date = h->clk[k].date;
      *slot = h->clk[k].slot;
      return true;
    }
  tz_local_t l;
  const char *zone = e->opts.forecast_tz[0] ? e->opts.forecast_tz : "UTC";
  if (tz_to_local(zone, at_ms, &l) != 0) return false;
  engine_local_t *c = &h->clk[h->clk_next++ % 2];
  c->minute = minute;
  c->date = l.year * 10000 + l.month * 100 + l.day;
  c->slot = (l.hour * 60 + l.minute) / FORECAST_SLOT_MIN;
  *date = c->date;
  *slot = c->slot;
  return true;
}

int engine_set_history(engine_t *e, const engine_history_row_t *rows, size_t n, unsigned weeks,
                       int64_t loaded_at_ms) {
  size_t ns = engine_nsites(e);
  struct engine_hist *h = calloc(1, sizeof *h);
  if (!h) return NIRC_ENOMEM;
  h->site = calloc(ns ? ns : 1, sizeof *h->site);
  size_t *count = calloc(ns ? ns : 1, sizeof *count);
  long *idx = calloc(n ? n : 1, sizeof *idx);
  bool ok = h->site && count && idx;
  /* Rows come sorted by site: look each name up once. */
  for (size_t r = 0; ok && r < n; r++) {
    idx[r] = r && strcmp(rows[r].site, rows[r - 1].site) == 0 ? idx[r - 1]
                                                              : engine_index(e, rows[r].site);
    if (idx[r] >= 0) count[idx[r]]++;
  }
  h->n_sites = ns;
  for (size_t i = 0; ok && i < ns; i++)
    if (count[i] && !(h->site[i].v = malloc(count[i] * sizeof *h->site[i].v))) ok = false;
  for (size_t r = 0; ok && r < n; r++)
    if (idx[r] >= 0) {
      engine_site_hist_t *sh = &h->site[idx[r]];
      sh->v[sh->n++] = rows[r].s;
      h->n_rows++;
    }
  free(count);
  free(idx);
  if (!ok) {
    if (!h->site) h->n_sites = 0;
    engine_hist_free(h);
    log_error(LOG_MAIN, ENGINE_OBJ, "out of memory taking %zu half-hours of load history", n);
    return NIRC_ENOMEM;
  }
  h->loaded = true;
  h->weeks = weeks;
  h->loaded_at_ms = loaded_at_ms;
  h->loaded_mono = engine_mono(e);
  for (unsigned k = 0; k < 2; k++)
    h->clk[k].minute = INT64_MIN;
  engine_hist_sync_exceptions(e, h);
  size_t with = 0;
  for (size_t i = 0; i < ns; i++)
    with += h->site[i].n > 0;
  bool first = !e->hist || !e->hist->loaded;
  engine_hist_free(e->hist);
  e->hist = h;
  if (first)
    log_info(LOG_MAIN, ENGINE_OBJ,
             "load history: %zu half-hours of %zu sites over the last %u weeks", h->n_rows, with,
             weeks);
  return 0;
}

void engine_history_failed(engine_t *e, const char *why) {
  struct engine_hist *h = e->hist;
  if (!h) { /* an empty history that remembers why it is empty */
    h = e->hist = calloc(1, sizeof *h);
    if (!h) return;
    for (unsigned k = 0; k < 2; k++)
      h->clk[k].minute = INT64_MIN;
  }
  if (strcmp(h->failing, why) != 0) {
    if (h->loaded)
      log_warn(LOG_MAIN, ENGINE_OBJ,
               "load history not reloaded (%s): keeping the one loaded %llu s ago", why,
               (unsigned long long)((engine_mono(e) - h->loaded_mono) / 1000));
    else
      log_warn(LOG_MAIN, ENGINE_OBJ, "load history not loaded (%s): forecasts fall back", why);
  }
  nirc_strlcpy(h->failing, why, sizeof h->failing);
}

const char *engine_demand_kind_name(engine_demand_kind_t k) {
  switch (k) {
  case ENGINE_DEMAND_HISTORY: return "history";
  case ENGINE_DEMAND_SCENARIO: return "scenario";
  case ENGINE_DEMAND_LIVE: return "live";
  }
  return "?";
}

/* "12 min", "3 h", "2 days". */
static void engine_age(uint64_t ms, char *buf, size_t len) {
  uint64_t s = ms / 1000;
  if (s < 120)
    snprintf(buf, len, "%llu s", (unsigned long long)s);
  else if (s < 7200)
    snprintf(buf, len, "%llu min", (unsigned long long)(s / 60));
  else if (s < 172800)
    snprintf(buf, len, "%llu h", (unsigned long long)(s / 3600));
  else
    snprintf(buf, len, "%llu days", (unsigned long long)(s / 86400));
}

/* why (NULL: not wanted, as on every tick) gets the reason text. */
#define WHY(...)                                                                                   \
  do {                                                                                             \
    if (why) snprintf(why, len, __VA_ARGS__);                                                      \
  } while (0)

/* The history's answer for site i at at_ms: true with the cell when it has
 * one; else false and why not in `why`. */
static bool engine_hist_cell(const engine_t *e, size_t i, int64_t at_ms, forecast_cell_t *cell,
                             int32_t *date, char *why, size_t len) {
  struct engine_hist *h = e->hist;
  if (!h || !h->loaded) {
    WHY("no history loaded");
    return false;
  }
  int slot;
  if (i >= h->n_sites || !engine_hist_local(e, h, at_ms, date, &slot)) {
    WHY("no history");
    return false;
  }
  engine_site_hist_t *sh = &h->site[i];
  if (!sh->n) {
    WHY("no history");
    return false;
  }
  if (sh->cache_date[slot] != *date) {
    forecast_opts_t o = forecast_defaults(h->weeks);
    if (forecast_at(sh->v, sh->n, h->exc, h->n_exc, *date, slot, &o, &sh->cache[slot]) != 0) {
      WHY("no history");
      return false;
    }
    sh->cache_date[slot] = *date;
  }
  *cell = sh->cache[slot];
  if (cell->status == FORECAST_TOO_SHORT) {
    if (cell->weeks)
      WHY("history too short (%u of %u weeks)", cell->weeks, (unsigned)FORECAST_MIN_WEEKS);
    else /* history of other days or hours only */
      WHY("no history");
    return false;
  }
  if (cell->status == FORECAST_NO_EXCEPTION) {
    WHY("no history for exception date %04d-%02d-%02d", *date / 10000, *date / 100 % 100,
        *date % 100);
    return false;
  }
  return true;
}

/* Marks "looked up: not in the scenario" in engine_t.scen_site. */
static const scenario_site_t engine_scen_absent;

/* The scenario's entry for `slug` (NULL: none), through the per-index
 * cache when the site is in the registry (i: its index, -1: not in it). */
static const scenario_site_t *engine_scen_site(const engine_t *e, long i, const char *slug) {
  const scenario_t *sc = e->opts.forecast;
  if (!sc) return NULL;
  if (i < 0) return scenario_find(sc, slug);
  engine_t *m = (engine_t *)e; /* the cache only; nothing the caller sees */
  if ((size_t)i >= m->n_scen_site) {
    size_t n = engine_nsites(m);
    const scenario_site_t **v = realloc(m->scen_site, (n + 1) * sizeof *v);
    if (!v) return scenario_find(sc, slug);
    for (size_t k = m->n_scen_site; k <= n; k++)
      v[k] = NULL;
    m->scen_site = v;
    m->n_scen_site = n + 1;
  }
  if (!m->scen_site[i]) {
    const scenario_site_t *s = scenario_find(sc, slug);
    m->scen_site[i] = s ? s : &engine_scen_absent;
  }
  return m->scen_site[i] == &engine_scen_absent ? NULL : m->scen_site[i];
}

void engine_forecast_demand_text(const engine_t *e, const char *slug, int64_t at_ms,
                                 engine_demand_t *out, bool text) {
  /* engine_index only reads the registry. */
  engine_forecast_demand_at(e, engine_index((engine_t *)e, slug), slug, at_ms, out, text);
}

void engine_forecast_demand_at(const engine_t *e, long i, const char *slug, int64_t at_ms,
                               engine_demand_t *out, bool text) {
  memset(out, 0, sizeof *out);
  char why[120];
  forecast_cell_t cell;
  int32_t date = 0;
  why[0] = '\0';
  if (i >= 0 &&
      engine_hist_cell(e, (size_t)i, at_ms, &cell, &date, text ? why : NULL, sizeof why)) {
    const struct engine_hist *h = e->hist;
    out->kind = ENGINE_DEMAND_HISTORY;
    out->cps = cell.cps;
    out->aht_s = cell.aht_s;
    out->weeks = cell.weeks;
    if (!text) return;
    bool special = false;
    for (size_t k = 0; k < h->n_exc; k++)
      special |= h->exc[k] == date;
    int k = special ? snprintf(out->text, sizeof out->text,
                               "forecast from %u earlier year%s of exception date %04d-%02d-%02d",
                               cell.weeks, cell.weeks == 1 ? "" : "s", date / 10000,
                               date / 100 % 100, date % 100)
                    : snprintf(out->text, sizeof out->text, "forecast from %u week%s of history",
                               cell.weeks, cell.weeks == 1 ? "" : "s");
    /* A history that could not be reloaded says how old it is. */
    if (h->failing[0] && k > 0 && (size_t)k < sizeof out->text) {
      char age[32];
      engine_age(engine_mono(e) - h->loaded_mono, age, sizeof age);
      snprintf(out->text + k, sizeof out->text - (size_t)k, " (loaded %s ago; reload failing)",
               age);
    }
    return;
  }
  if (i < 0 && text) snprintf(why, sizeof why, "no history");
  const scenario_t *sc = e->opts.forecast;
  const scenario_site_t *s = engine_scen_site(e, i, slug);
  if (s) {
    int64_t local = at_ms / 1000 + (int64_t)sc->utc_offset_min * 60;
    double hour = (double)(((local % 86400) + 86400) % 86400) / 3600.0;
    out->kind = ENGINE_DEMAND_SCENARIO;
    out->cps = scenario_rate_per_s(sc, s, hour);
    out->aht_s = s->aht_s;
    if (text) snprintf(out->text, sizeof out->text, "%s: scenario file", why);
    return;
  }
  out->kind = ENGINE_DEMAND_LIVE;
  if (text) snprintf(out->text, sizeof out->text, "%s: live load", why);
}

void engine_forecast_demand(const engine_t *e, const char *slug, int64_t at_ms,
                            engine_demand_t *out) {
  engine_forecast_demand_text(e, slug, at_ms, out, true);
}

engine_demand_kind_t engine_forecast_source(const engine_t *e, const char *slug, int64_t at_ms,
                                            char *buf, size_t len) {
  engine_demand_t d;
  engine_forecast_demand(e, slug, at_ms, &d);
  if (buf && len) nirc_strlcpy(buf, d.text, len);
  return d.kind;
}

/* Expected own demand of `slug` at business time at_ms: the history's
 * forecast, else the scenario's; 0 when neither knows (the planner then
 * uses live demand). */
double engine_forecast(const engine_t *e, const char *slug, int64_t at_ms) {
  engine_demand_t d;
  engine_forecast_demand_text(e, slug, at_ms, &d, false);
  return d.cps;
}

/* Agents the forecast scenario rosters at `slug` at business time at_ms,
 * and the handle time expected then (the history's where it measured one,
 * else the scenario's); false when the scenario does not know the site:
 * the history knows calls, not rosters. */
bool engine_forecast_staff(const engine_t *e, const char *slug, int64_t at_ms, unsigned *agents,
                           double *aht_s) {
  const scenario_t *sc = e->opts.forecast;
  const scenario_site_t *s = engine_scen_site(e, engine_index((engine_t *)e, slug), slug);
  if (!s) return false;
  int64_t local = at_ms / 1000 + (int64_t)sc->utc_offset_min * 60;
  double hour = (double)(((local % 86400) + 86400) % 86400) / 3600.0;
  *agents = scenario_agents_at(s, hour);
  engine_demand_t d; /* on every tick for a site that does not measure AHT: no text */
  engine_forecast_demand_text(e, slug, at_ms, &d, false);
  *aht_s = d.kind == ENGINE_DEMAND_HISTORY && d.aht_s > 0 ? d.aht_s : s->aht_s;
  return true;
}

json_t *engine_wave_demand_json(const engine_t *e, const size_t *idx, unsigned n, int64_t at_ms) {
  json_t *o = json_object();
  for (unsigned k = 0; o && k < n; k++) {
    const plan_site_t *p = &e->psites[idx[k]];
    engine_demand_t d;
    engine_forecast_demand(e, p->slug, at_ms, &d);
    /* What the planner used: the forecast when it expects calls, else
     * the live load (planner.c, schedules), with why when it had none. */
    bool fc = p->forecast_cps > 0;
    json_object_set_new(o, p->slug,
                        json_pack("{s:f, s:s, s:s}", "calls_per_s",
                                  fc ? p->forecast_cps : p->demand_cps, "source",
                                  fc ? engine_demand_kind_name(d.kind) : "live", "note",
                                  fc || d.kind == ENGINE_DEMAND_LIVE ? d.text : "live load"));
  }
  return o;
}

/* Minute of the local day of at_ms in the forecast's time: the scenario's
 * fixed offset, else [routing] forecast_tz (the history's); -1 when the
 * zone cannot say. */
static int engine_forecast_minute(const engine_t *e, engine_demand_kind_t kind, int64_t at_ms) {
  if (kind == ENGINE_DEMAND_SCENARIO && e->opts.forecast) {
    int64_t local = at_ms / 60000 + e->opts.forecast->utc_offset_min;
    return (int)(((local % 1440) + 1440) % 1440);
  }
  tz_local_t l;
  const char *zone = e->opts.forecast_tz[0] ? e->opts.forecast_tz : "UTC";
  if (tz_to_local(zone, at_ms, &l) != 0) return -1;
  return l.hour * 60 + l.minute;
}

void engine_forecast_span(const engine_t *e, engine_demand_kind_t kind, int64_t from_ms,
                          int64_t to_ms, char *buf, size_t len) {
  int a = engine_forecast_minute(e, kind, from_ms), b = engine_forecast_minute(e, kind, to_ms);
  if (a < 0 || b < 0) {
    snprintf(buf, len, "the next half hour");
    return;
  }
  a -= a % FORECAST_SLOT_MIN;
  b = (b - b % FORECAST_SLOT_MIN + FORECAST_SLOT_MIN) % 1440;
  snprintf(buf, len, "%02d:%02d-%02d:%02d", a / 60, a % 60, b / 60, b % 60);
}
