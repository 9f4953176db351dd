/* ctl_plan: see ctl_plan.h. */
#include "ctl_plan.h"

#include "ctl_history.h"
#include "ctl_status.h"

#include "safetext.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* ---- text from elsewhere, made safe to print ---- */

#define ESC_SLOTS 12 /* strings one printf may take */
#define ESC_LEN   1024

const char *ctl_escn(const char *s, size_t max) {
  static char ring[ESC_SLOTS][ESC_LEN];
  static unsigned next;
  char *b = ring[next++ % ESC_SLOTS];
  safetext_escape(s ? s : "", b, max < ESC_LEN ? max + 1 : ESC_LEN);
  return b;
}

const char *ctl_esc(const char *s) {
  return ctl_escn(s, ESC_LEN);
}

/* ---- for people ---- */

/* "home", "shaanxi", or "shaanxi 300‰, hubei 700‰". */
static void fmt_shares(Nirc__RouteShare **r, size_t n, const char *self, char *buf, size_t len) {
  buf[0] = '\0';
  size_t used = 0;
  for (size_t i = 0; i < n; i++) {
    int k;
    if (n == 1 && r[i]->permille == 1000)
      k = snprintf(buf, len, "%s", strcmp(r[i]->site, self) == 0 ? "home" : ctl_esc(r[i]->site));
    else
      k = snprintf(buf + used, len - used, "%s%s %u‰", i ? ", " : "", ctl_esc(r[i]->site),
                   r[i]->permille);
    if (k < 0 || (size_t)k >= len - used) break;
    used += (size_t)k;
  }
}

/* "a, b, c", escaped, cut short at len. */
static void fmt_list(char **v, size_t n, char *buf, size_t len) {
  buf[0] = '\0';
  size_t used = 0;
  for (size_t i = 0; i < n; i++) {
    int k = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", ctl_esc(v[i]));
    if (k < 0 || (size_t)k >= len - used) break;
    used += (size_t)k;
  }
}

/* A figure predicted on the hub's agents: null when they are not known. */
static json_t *ctl_plan_on_agents(const Nirc__CapacityPrediction *c, json_t *v) {
  if (ctl_agents_known(c->capacity_source)) return v;
  json_decref(v);
  return json_null();
}

/* One hub: its load before and after everything it takes, and what it
 * takes; on a second line the sources it turned down, with its
 * prediction had it taken the largest of them as well. */
static void print_hub(const Nirc__CapacityPrediction *c) {
  char asa[32], takes[512];
  if (c->stable_after)
    snprintf(asa, sizeof asa, "ASA %.1fs", c->asa_after_s);
  else
    snprintf(asa, sizeof asa, "UNSTABLE");
  if (c->n_sources)
    fmt_list(c->sources, c->n_sources, takes, sizeof takes);
  else
    snprintf(takes, sizeof takes, "no source");
  bool known = ctl_agents_known(c->capacity_source);
  if (known)
    printf("  hub   %-12s load %.1f -> %.1f Erl on %u agents: SL(%.0fs) %.0f%% -> %.0f%%, %s, "
           "occupancy %.0f%%; needs %u agents for %.0f%%; takes %s%s\n",
           ctl_esc(c->hub), c->traffic_before_erl, c->traffic_after_erl, c->agents,
           c->sl_threshold_s, 100 * c->sl_before, 100 * c->sl_after, asa, 100 * c->occupancy_after,
           c->agents_needed, 100 * c->sl_target, takes,
           c->forced ? "  [FORCED past the capacity check]" : "");
  else /* "on 0 agents: SL 0%" was a prediction on agents nobody counted */
    printf("  hub   %-12s load %.1f -> %.1f Erl on agents not known: no service level "
           "predicted; needs %u agents for %.0f%%; takes %s%s\n",
           ctl_esc(c->hub), c->traffic_before_erl, c->traffic_after_erl, c->agents_needed,
           100 * c->sl_target, takes, c->forced ? "  [FORCED past the capacity check]" : "");
  /* Where its agents come from: a prediction on a configured roster, or
   * on nothing at all (forced), must say so. */
  const char *src = c->capacity_source ? c->capacity_source : "";
  if (strcmp(src, "configured") == 0 || strcmp(src, "measured") == 0)
    printf("        capacity of %s: %s\n", ctl_esc(c->hub), ctl_esc(c->capacity_note));
  else if (strcmp(src, "unknown") == 0)
    printf("        capacity of %s: NOT MEASURED and not configured: the prediction means nothing "
           "(nircctl capacity %s --seats N ...)\n",
           ctl_esc(c->hub), ctl_esc(c->hub));
  /* What the load was: a check on a rising forecast, or one that could not
   * look ahead, must say so (an older controller says nothing). */
  if (c->load_basis && *c->load_basis) {
    char fc[48];
    if (c->traffic_after_forecast_erl >= 0)
      snprintf(fc, sizeof fc, "%.1f Erl", c->traffic_after_forecast_erl);
    else
      snprintf(fc, sizeof fc, "not known");
    printf("        load of %s: %s (live %.1f Erl, forecast %s)\n", ctl_esc(c->hub),
           ctl_esc(c->load_note), c->traffic_after_live_erl, fc);
  }
  const Nirc__RefusedLoad *w = c->with_refused;
  if (!c->refused || !w) return;
  char names[512];
  fmt_list(c->refused_sources, c->n_refused_sources, names, sizeof names);
  if (w->stable)
    snprintf(asa, sizeof asa, "ASA %.1fs", w->asa_s);
  else
    snprintf(asa, sizeof asa, "UNSTABLE");
  char has[32] = "not known";
  if (known) snprintf(has, sizeof has, "%u", c->agents);
  printf("        [REFUSED] %s: with %s%s: %.1f Erl, SL(%.0fs) %.0f%%, %s; needs %u agents (has "
         "%s)\n",
         names, ctl_esc(w->source), c->n_sources ? " too" : "", w->traffic_erl, c->sl_threshold_s,
         100 * w->sl, asa, w->agents_needed, has);
}

void ctl_plan_print(const Nirc__PlanReply *p, const char *tz) {
  if (p->window_start_ms) {
    char st[32], en[32] = "";
    ctl_history_time(p->window_start_ms, tz, st, sizeof st);
    if (p->window_end_ms) ctl_history_time(p->window_end_ms, tz, en, sizeof en);
    printf("  schedule %s: window %s%s%s (%s), %u wave%s of %u; predicted for its start\n",
           ctl_esc(p->schedule_name), st, en[0] ? " to " : "", en, tz, p->waves,
           p->waves == 1 ? "" : "s", p->wave_size);
    if (p->schedule_disabled)
      printf("  schedule %s is disabled: this is what its next window would do once enabled "
             "(nircctl schedule enable %s)\n",
             ctl_esc(p->schedule_name), ctl_esc(p->schedule_name));
  }
  /* Where each site's demand came from: a forecast of the stored
   * history, the scenario file, or only the live load. */
  for (size_t i = 0; i < p->n_demand; i++) {
    const Nirc__PlanDemand *d = p->demand[i];
    char aht[32] = "AHT unknown";
    if (d->aht_s > 0) snprintf(aht, sizeof aht, "AHT %.0fs", d->aht_s);
    char cps[32] = "unknown";
    if (!d->calls_per_s_unknown) snprintf(cps, sizeof cps, "%7.3f", d->calls_per_s);
    printf("  demand %-5s %-12s %7s calls/s, %-11s  %s\n", d->hub ? "hub" : "src", ctl_esc(d->site),
           cps, aht, ctl_esc(d->note));
  }
  for (size_t i = 0; i < p->n_moves; i++) {
    char r[200], until[64] = "";
    fmt_shares(p->moves[i]->route, p->moves[i]->n_route, p->moves[i]->site, r, sizeof r);
    if (p->moves[i]->revert_at_ms) {
      char t[32];
      ctl_history_time(p->moves[i]->revert_at_ms, tz, t, sizeof t);
      snprintf(until, sizeof until, " until %s", t);
    }
    printf("  move  %-12s -> %-28s %s%s\n", ctl_esc(p->moves[i]->site), r,
           ctl_esc(p->moves[i]->reason), until);
  }
  for (size_t i = 0; i < p->n_capacity; i++)
    print_hub(p->capacity[i]);
  for (size_t i = 0; i < p->n_refused_sources; i++)
    printf("  refused %s: %s\n", ctl_esc(p->refused_sources[i]->source),
           ctl_esc(p->refused_sources[i]->why));
  for (size_t i = 0; i < p->n_alarms; i++)
    printf("  alarm %s\n", ctl_esc(p->alarms[i]));
  if (p->route_not_known) {
    /* Unknown is not home: the figures count these sites' calls where
     * the plan sends them, and they may be elsewhere now. */
    char names[400];
    ctl_route_not_known_names(p->route_not_known_sites, p->n_route_not_known_sites,
                              p->route_not_known, names, sizeof names);
    printf("  note  route not known at %u site%s (%s): not heard since this controller took "
           "over, or unknown at the PBX; the figures count their calls where this plan sends "
           "them, but their PBX may send them elsewhere now, to a hub above too (nircctl status "
           "--problems)\n",
           p->route_not_known, p->route_not_known == 1 ? "" : "s", names);
  }
}

/* ---- JSON ---- */

static json_t *shares_json(Nirc__RouteShare **r, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(
        a, json_pack("{s:s, s:I}", "site", r[i]->site, "permille", (json_int_t)r[i]->permille));
  return a;
}

static json_t *strings_json(char **v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(a, json_string(v[i]));
  return a;
}

/* A number, or null when there is none (-1: an unstable queue). */
static json_t *asa_json(bool stable, double asa_s) {
  return stable && asa_s >= 0 && isfinite(asa_s) ? json_real(asa_s) : json_null();
}

/* What the load was; null when not asked (a schedule's plan: see
 * "demand") or from a controller that does not say. */
static json_t *load_on_json(const Nirc__CapacityPrediction *c) {
  if (!c->load_basis || !*c->load_basis) return json_null();
  return json_pack("{s:s, s:f, s:o, s:s}", "basis", c->load_basis, "live_erl",
                   c->traffic_after_live_erl, "forecast_erl",
                   c->traffic_after_forecast_erl >= 0 ? json_real(c->traffic_after_forecast_erl)
                                                      : json_null(),
                   "note", c->load_note ? c->load_note : "");
}

static json_t *capacity_json(const Nirc__CapacityPrediction *c) {
  const Nirc__RefusedLoad *w = c->refused ? c->with_refused : NULL;
  json_t *with = w ? json_pack("{s:s, s:f, s:f, s:o, s:f, s:I, s:b}", "source", w->source,
                               "traffic_erl", w->traffic_erl, "sl", w->sl, "asa_s",
                               asa_json(w->stable, w->asa_s), "occupancy", w->occupancy,
                               "agents_needed", (json_int_t)w->agents_needed, "stable", w->stable)
                   : json_null();
  json_t *o = json_pack(
      "{s:s, s:f, s:f, s:o, s:o, s:o, s:o, s:o, s:I, s:b, s:b, s:f, s:f, s:o, "
      "s:o, s:o, s:b}",
      "hub", c->hub, "traffic_before_erl", c->traffic_before_erl, "traffic_after_erl",
      c->traffic_after_erl, "agents", ctl_plan_on_agents(c, json_integer((json_int_t)c->agents)),
      "sl_before", ctl_plan_on_agents(c, json_real(c->sl_before)), "sl_after",
      ctl_plan_on_agents(c, json_real(c->sl_after)), "asa_after_s",
      ctl_plan_on_agents(c, asa_json(c->stable_after, c->asa_after_s)), "occupancy_after",
      ctl_plan_on_agents(c, json_real(c->occupancy_after)), "agents_needed",
      (json_int_t)c->agents_needed, "stable_after", c->stable_after, "refused", c->refused,
      "sl_target", c->sl_target, "sl_threshold_s", c->sl_threshold_s, "sources",
      strings_json(c->sources, c->n_sources), "refused_sources",
      strings_json(c->refused_sources, c->n_refused_sources), "with_refused", with, "forced",
      c->forced);
  /* Where "agents" comes from; null from a controller that does not say. */
  if (o) {
    const char *src = c->capacity_source && *c->capacity_source ? c->capacity_source : NULL;
    json_object_set_new(o, "capacity_source", src ? json_string(src) : json_null());
    json_object_set_new(o, "capacity_note",
                        src ? json_string(c->capacity_note ? c->capacity_note : "") : json_null());
    json_object_set_new(o, "load_on", load_on_json(c));
  }
  return o;
}

static json_t *refused_source_json(const Nirc__RefusedSource *r) {
  json_t *hubs = json_array();
  for (size_t k = 0; k < r->n_hubs; k++) {
    const Nirc__HubNeed *h = r->hubs[k];
    json_array_append_new(
        hubs,
        json_pack("{s:s, s:o, s:o, s:s, s:o}", "hub", h->hub, "agents_needed",
                  h->capacity ? json_integer((json_int_t)h->agents_needed) : json_null(), "agents",
                  ctl_agents_known(h->capacity_source) ? json_integer((json_int_t)h->agents)
                                                       : json_null(),
                  "why", h->why, "capacity_source",
                  h->capacity_source && *h->capacity_source ? json_string(h->capacity_source)
                                                            : json_null()));
  }
  return json_pack("{s:s, s:s, s:o}", "source", r->source, "why", r->why, "hubs", hubs);
}

json_t *ctl_plan_json(const Nirc__PlanReply *p) {
  if (!p) return json_null();
  json_t *moves = json_array(), *cap = json_array(), *alarms = json_array(),
         *refused = json_array();
  for (size_t i = 0; i < p->n_moves; i++)
    json_array_append_new(moves,
                          json_pack("{s:s, s:o, s:s, s:I}", "site", p->moves[i]->site, "route",
                                    shares_json(p->moves[i]->route, p->moves[i]->n_route), "reason",
                                    p->moves[i]->reason, "revert_at_ms",
                                    (json_int_t)p->moves[i]->revert_at_ms));
  for (size_t i = 0; i < p->n_capacity; i++)
    json_array_append_new(cap, capacity_json(p->capacity[i]));
  for (size_t i = 0; i < p->n_alarms; i++)
    json_array_append_new(alarms, json_string(p->alarms[i]));
  for (size_t i = 0; i < p->n_refused_sources; i++)
    json_array_append_new(refused, refused_source_json(p->refused_sources[i]));
  json_t *o = json_pack("{s:o, s:o, s:o, s:b, s:s, s:o}", "moves", moves, "capacity", cap, "alarms",
                        alarms, "refused", p->refused, "refusal", p->refusal ? p->refusal : "",
                        "refused_sources", refused);
  if (o) {
    json_t *unk = json_array();
    for (size_t i = 0; i < p->n_route_not_known_sites; i++)
      json_array_append_new(unk, json_string(p->route_not_known_sites[i]));
    json_object_set_new(o, "route_not_known", json_integer((json_int_t)p->route_not_known));
    json_object_set_new(o, "route_not_known_sites", unk);
  }
  if (o && p->window_start_ms)
    json_object_set_new(o, "window",
                        json_pack("{s:s, s:I, s:I, s:I, s:I, s:b}", "schedule",
                                  p->schedule_name ? p->schedule_name : "", "start_ms",
                                  (json_int_t)p->window_start_ms, "end_ms",
                                  (json_int_t)p->window_end_ms, "wave_size",
                                  (json_int_t)p->wave_size, "waves", (json_int_t)p->waves,
                                  "disabled", p->schedule_disabled));
  if (o && p->window_start_ms) {
    json_t *dem = json_array();
    for (size_t i = 0; i < p->n_demand; i++) {
      const Nirc__PlanDemand *d = p->demand[i];
      json_array_append_new(
          dem,
          json_pack("{s:s, s:b, s:o, s:o, s:s, s:s, s:o}", "site", d->site, "hub", d->hub,
                    "calls_per_s", d->calls_per_s_unknown ? json_null() : json_real(d->calls_per_s),
                    "aht_s", d->aht_s > 0 ? json_real(d->aht_s) : json_null(), "source", d->source,
                    "note", d->note, "weeks",
                    strcmp(d->source, "history") == 0 ? json_integer((json_int_t)d->weeks)
                                                      : json_null()));
    }
    json_object_set_new(o, "demand", dem);
  }
  return o;
}

json_t *ctl_forced_json(Nirc__CapacityPrediction *const *v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(
        a, json_pack("{s:s, s:f, s:o, s:I, s:o, s:o, s:b, s:o}", "hub", v[i]->hub,
                     "traffic_after_erl", v[i]->traffic_after_erl, "agents",
                     ctl_plan_on_agents(v[i], json_integer((json_int_t)v[i]->agents)),
                     "agents_needed", (json_int_t)v[i]->agents_needed, "sl_after",
                     ctl_plan_on_agents(v[i], json_real(v[i]->sl_after)), "asa_after_s",
                     ctl_plan_on_agents(v[i], asa_json(v[i]->stable_after, v[i]->asa_after_s)),
                     "stable_after", v[i]->stable_after, "load_on", load_on_json(v[i])));
  return a;
}
