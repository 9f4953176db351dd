#include "ctl_report.h"

#include "ctl_history.h"
#include "ctl_plan.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* A figure is unknown when it is neither known nor partly known. */
static bool ctl_report_has(const Nirc__StaffingFigure *f) {
  return f && (f->known || f->partial);
}

/* "14", "14*" (partial: counts only what was forecast), "?" (unknown). */
static const char *ctl_report_agents(const Nirc__StaffingFigure *f, char *buf, size_t len) {
  if (!ctl_report_has(f)) return "?";
  snprintf(buf, len, "%u%s", f->agents, f->known ? "" : "*");
  return buf;
}

static const char *ctl_report_num(const Nirc__StaffingFigure *f, bool erl, char *buf, size_t len) {
  if (!ctl_report_has(f)) return "?";
  snprintf(buf, len, erl ? "%.1f%s" : "%.0f%s", erl ? f->erlangs : f->calls, f->known ? "" : "*");
  return buf;
}

static const char *ctl_report_wape(const Nirc__StaffingSite *s, char *buf, size_t len) {
  const Nirc__ForecastAccuracy *a = s->accuracy;
  if (!a || !a->state || !*a->state) return "?";
  if (strcmp(a->state, "stored") == 0) {
    snprintf(buf, len, "%.1f%%", 100.0 * a->wape);
    return buf;
  }
  return a->state;
}

/* "22:00" in the schedule's zone (the window's date is in the header). */
static void ctl_report_hhmm(int64_t ms, const char *tz, char *buf, size_t len) {
  char t[40];
  ctl_history_time(ms, tz, t, sizeof t);
  snprintf(buf, len, "%.5s", strlen(t) >= 16 ? t + 11 : t);
}

void ctl_report_print(FILE *out, const Nirc__ReportReply *r) {
  const char *tz = r->tz && *r->tz ? r->tz : "UTC";
  char from[40], to[40];
  ctl_history_time(r->from_ms, tz, from, sizeof from);
  ctl_history_time(r->to_ms, tz, to, sizeof to);
  fprintf(out, "Night staffing for %.0f%% in %.0f s: schedule %llu '%s', %.16s to %.16s %s%s\n",
          100.0 * r->sl_target, r->sl_threshold_s, (unsigned long long)r->schedule_id,
          ctl_escn(r->schedule_name, 64), from, to, ctl_escn(tz, 64), r->ended ? " (ended)" : "");
  fprintf(out, "%u intervals of 30 min; consolidated: every source at %s.\n", r->n_intervals,
          ctl_escn(r->first_hub, 32));
  /* Where each site's demand comes from, sites with the same source together. */
  for (size_t i = 0; i < r->n_sites; i++) {
    const char *d = r->sites[i]->demand ? r->sites[i]->demand : "";
    bool seen = false;
    for (size_t j = 0; j < i && !seen; j++)
      seen = strcmp(r->sites[j]->demand ? r->sites[j]->demand : "", d) == 0;
    if (seen) continue;
    fprintf(out, "Demand: %s:", *d ? ctl_escn(d, 120) : "unknown");
    for (size_t j = i; j < r->n_sites; j++)
      if (strcmp(r->sites[j]->demand ? r->sites[j]->demand : "", d) == 0)
        fprintf(out, " %s", ctl_escn(r->sites[j]->site, 32));
    fputc('\n', out);
  }
  fputc('\n', out);
  fprintf(out, "%-12s %-6s %9s %8s %7s %13s", "SITE", "ROLE", "CALLS", "PEAK ERL", "ALONE",
          "CONSOLIDATED");
  if (r->ended) fprintf(out, " %12s %8s", "ACTUAL CALLS", "WAPE");
  fputc('\n', out);
  for (size_t i = 0; i < r->n_sites; i++) {
    const Nirc__StaffingSite *s = r->sites[i];
    char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];
    const char *cons = "-";
    if (strcmp(s->role, "hub") == 0)
      cons = ctl_report_agents(s->consolidated_window, b4, sizeof b4);
    fprintf(out, "%-12s %-6s %9s %8s %7s %13s", ctl_escn(s->site, 12), s->role,
            ctl_report_num(s->alone_window, false, b1, sizeof b1),
            ctl_report_num(s->alone_window, true, b2, sizeof b2),
            ctl_report_agents(s->alone_window, b3, sizeof b3), cons);
    if (r->ended)
      fprintf(out, " %12s %8s", ctl_report_num(s->actual_window, false, b5, sizeof b5),
              ctl_report_wape(s, b6, sizeof b6));
    fputc('\n', out);
  }
  char a1[32], a2[32], a3[32];
  fprintf(out, "%-12s %-6s %9s %8s %7s %13s\n\n", "TOTAL", "",
          ctl_report_num(r->total_alone_window, false, a1, sizeof a1), "",
          ctl_report_agents(r->total_alone_window, a2, sizeof a2),
          ctl_report_agents(r->total_consolidated_window, a3, sizeof a3));
  fprintf(out, "Agents per interval (each alone / consolidated):\n");
  for (unsigned k = 0; k < r->n_intervals && k < r->n_total_alone; k++) {
    char at[16], x[32], y[32];
    ctl_report_hhmm(r->first_interval_ms + (int64_t)k * r->interval_ms, tz, at, sizeof at);
    fprintf(out, "  %s %5s / %s\n", at, ctl_report_agents(r->total_alone[k], x, sizeof x),
            k < r->n_total_consolidated ? ctl_report_agents(r->total_consolidated[k], y, sizeof y)
                                        : "?");
  }
  fprintf(out,
          "\nALONE: the site answers its own calls; CONSOLIDATED: a hub answers its own calls\n"
          "and, at %s, every source's. Agents at the busiest interval; CALLS for the window.\n"
          "? not forecast (or not measured), never 0; * counts only the sites that were.\n",
          ctl_escn(r->first_hub, 32));
  if (r->ended)
    fprintf(out, "WAPE: sum |actual - forecast| / sum actual over the window's 30-minute "
                 "intervals, as stored when it ended.\n");
}

static json_t *ctl_report_fig(const Nirc__StaffingFigure *f) {
  if (!f) return json_null();
  bool has = ctl_report_has(f);
  return json_pack("{s:b, s:b, s:o, s:o, s:o}", "known", f->known, "partial", f->partial, "calls",
                   has ? json_real(f->calls) : json_null(), "erlangs",
                   has ? json_real(f->erlangs) : json_null(), "agents",
                   has ? json_integer(f->agents) : json_null());
}

static json_t *ctl_report_figs(Nirc__StaffingFigure *const *v, size_t n) {
  json_t *a = json_array();
  for (size_t k = 0; a && k < n; k++)
    json_array_append_new(a, ctl_report_fig(v[k]));
  return a;
}

/* Actual figures carry calls only: Erlangs and agents are forecast. */
static json_t *ctl_report_actual(const Nirc__StaffingFigure *f) {
  if (!f) return json_null();
  bool has = ctl_report_has(f);
  return json_pack("{s:b, s:b, s:o}", "known", f->known, "partial", f->partial, "calls",
                   has ? json_real(f->calls) : json_null());
}

static json_t *ctl_report_accuracy(const Nirc__ForecastAccuracy *a) {
  if (!a) return json_null();
  bool stored = a->state && strcmp(a->state, "stored") == 0;
  bool counted = stored || (a->state && strcmp(a->state, "no-calls") == 0);
  return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o}", "state", a->state ? a->state : "", "wape",
                   stored ? json_real(a->wape) : json_null(), "forecast_calls",
                   counted ? json_real(a->forecast_calls) : json_null(), "actual_calls",
                   counted ? json_real(a->actual_calls) : json_null(), "abs_error_calls",
                   counted ? json_real(a->abs_error_calls) : json_null(), "intervals",
                   counted ? json_integer(a->intervals) : json_null());
}

json_t *ctl_report_json(const Nirc__ReportReply *r) {
  json_t *sites = json_array();
  for (size_t i = 0; sites && i < r->n_sites; i++) {
    const Nirc__StaffingSite *s = r->sites[i];
    bool hub = strcmp(s->role, "hub") == 0;
    json_t *acts = json_array();
    for (size_t k = 0; acts && k < s->n_actual; k++)
      json_array_append_new(acts, ctl_report_actual(s->actual[k]));
    json_array_append_new(
        sites,
        json_pack("{s:s, s:s, s:b, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "site", s->site,
                  "role", s->role, "first_hub", s->first_hub, "demand", s->demand ? s->demand : "",
                  "alone", ctl_report_figs(s->alone, s->n_alone), "alone_window",
                  ctl_report_fig(s->alone_window), "consolidated",
                  hub ? ctl_report_figs(s->consolidated, s->n_consolidated) : json_null(),
                  "consolidated_window", hub ? ctl_report_fig(s->consolidated_window) : json_null(),
                  "actual", r->ended ? acts : (json_decref(acts), json_null()), "actual_window",
                  r->ended ? ctl_report_actual(s->actual_window) : json_null(), "accuracy",
                  ctl_report_accuracy(s->accuracy)));
  }
  json_t *starts = json_array();
  for (unsigned k = 0; starts && k < r->n_intervals; k++)
    json_array_append_new(starts, json_integer(r->first_interval_ms + (int64_t)k * r->interval_ms));
  return json_pack(
      "{s:s, s:{s:I, s:s, s:s}, s:I, s:I, s:I, s:i, s:o, s:f, s:f, s:b, s:s, s:I, s:o, s:{s:o, "
      "s:o, s:o, s:o}}",
      "kind", r->kind ? r->kind : "staffing", "schedule", "id", (json_int_t)r->schedule_id, "name",
      r->schedule_name ? r->schedule_name : "", "tz", r->tz ? r->tz : "", "from_ms",
      (json_int_t)r->from_ms, "to_ms", (json_int_t)r->to_ms, "first_interval_ms",
      (json_int_t)r->first_interval_ms, "interval_s", (int)(r->interval_ms / 1000),
      "interval_starts_ms", starts, "sl_target", r->sl_target, "sl_threshold_s", r->sl_threshold_s,
      "ended", r->ended, "first_hub", r->first_hub ? r->first_hub : "", "now_ms",
      (json_int_t)r->now_ms, "sites", sites, "totals", "alone",
      ctl_report_figs(r->total_alone, r->n_total_alone), "consolidated",
      ctl_report_figs(r->total_consolidated, r->n_total_consolidated), "alone_window",
      ctl_report_fig(r->total_alone_window), "consolidated_window",
      ctl_report_fig(r->total_consolidated_window));
}

/* CSV fields: empty for unknown. Slugs are [a-z0-9_-] (no quoting). */
static void ctl_report_csv_fig(FILE *out, const Nirc__StaffingFigure *f, bool calls, bool erl,
                               bool agents) {
  bool has = ctl_report_has(f);
  if (calls) has ? fprintf(out, ",%.3f", f->calls) : fputs(",", out);
  if (erl) has ? fprintf(out, ",%.3f", f->erlangs) : fputs(",", out);
  if (agents) has ? fprintf(out, ",%u", f->agents) : fputs(",", out);
}

static void ctl_report_csv_row(FILE *out, const char *site, const char *role, const char *when,
                               const Nirc__StaffingFigure *alone, const Nirc__StaffingFigure *cons,
                               const Nirc__StaffingFigure *actual) {
  fprintf(out, "%s,%s,%s", ctl_esc(site), role, when);
  ctl_report_csv_fig(out, alone, true, true, true);
  ctl_report_csv_fig(out, cons, false, true, true);
  ctl_report_csv_fig(out, actual, true, false, false);
  bool partial =
      (alone && alone->partial) || (cons && cons->partial) || (actual && actual->partial);
  fprintf(out, ",%s\n", partial ? "partial" : "");
}

/* "2020-01-22T14:00:00Z" */
static void ctl_report_utc(int64_t ms, char *buf, size_t len) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  if (!gmtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(buf, len, "?");
}

void ctl_report_csv(FILE *out, const Nirc__ReportReply *r) {
  fprintf(out, "site,role,interval_start,forecast_calls,forecast_erlangs,agents_alone,"
               "consolidated_erlangs,agents_consolidated,actual_calls,note\n");
  char when[40];
  for (size_t i = 0; i < r->n_sites; i++) {
    const Nirc__StaffingSite *s = r->sites[i];
    for (size_t k = 0; k < s->n_alone; k++) {
      ctl_report_utc(r->first_interval_ms + (int64_t)k * r->interval_ms, when, sizeof when);
      ctl_report_csv_row(out, s->site, s->role, when, s->alone[k],
                         k < s->n_consolidated ? s->consolidated[k] : NULL,
                         k < s->n_actual ? s->actual[k] : NULL);
    }
    ctl_report_csv_row(out, s->site, s->role, "window", s->alone_window, s->consolidated_window,
                       r->ended ? s->actual_window : NULL);
  }
  for (size_t k = 0; k < r->n_total_alone; k++) {
    ctl_report_utc(r->first_interval_ms + (int64_t)k * r->interval_ms, when, sizeof when);
    ctl_report_csv_row(out, "TOTAL", "", when, r->total_alone[k],
                       k < r->n_total_consolidated ? r->total_consolidated[k] : NULL, NULL);
  }
  ctl_report_csv_row(out, "TOTAL", "", "window", r->total_alone_window,
                     r->total_consolidated_window, NULL);
}
