/* swarm_report: what nirc-swarm run counts and says: tallies by reason,
 * latency distributions, the RSS, and the JSON it prints (progress lines,
 * the summary). */
#include "swarm.h"

#include "util.h"

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Latency samples kept per distribution (8 MiB of doubles); more are
 * counted but not kept. */
#define SW_SAMPLES_MAX (1u << 20)

void sw_tally(sw_tally_t *t, const char *name) {
  t->total++;
  for (unsigned i = 0; i < t->n; i++) {
    if (strcmp(t->name[i], name) == 0) {
      t->count[i]++;
      return;
    }
  }
  /* The last slot collects whatever does not fit. */
  if (t->n == SW_TALLY_MAX - 1) name = "other";
  if (t->n == SW_TALLY_MAX) {
    t->count[SW_TALLY_MAX - 1]++;
    return;
  }
  nirc_strlcpy(t->name[t->n], name, sizeof t->name[0]);
  t->count[t->n++] = 1;
}

static json_t *sw_tally_json(const sw_tally_t *t) {
  json_t *by = json_object();
  for (unsigned i = 0; i < t->n; i++)
    json_object_set_new(by, t->name[i], json_integer((json_int_t)t->count[i]));
  return json_pack("{s:I, s:o}", "total", (json_int_t)t->total, "by_reason", by);
}

void sw_sample(sw_samples_t *s, double ms) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 1024;
    double *v = cap <= SW_SAMPLES_MAX ? realloc(s->v, cap * sizeof *v) : NULL;
    if (!v) {
      s->not_kept++;
      return;
    }
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = ms;
}

static int sw_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted values. */
static double sw_pct(const double *v, size_t n, double p) {
  size_t r = (size_t)ceil(p / 100.0 * (double)n);
  return v[r ? r - 1 : 0];
}

double sw_round1(double ms) {
  return round(ms * 10.0) / 10.0;
}

/* Upper bounds (ms) of the reconnect histogram; the last bucket is open. */
static const double sw_hist_le[] = {10,   25,   50,   100,  250,   500,   750,   1000,
                                    1500, 2000, 3000, 5000, 10000, 20000, 30000, 60000};
#define SW_HIST_N (sizeof sw_hist_le / sizeof sw_hist_le[0])

/* Most samples within any `win` ms: a herd that retries in lockstep shows
 * as most of them; full jitter as a small share. `v` is sorted. */
static size_t sw_densest(const double *v, size_t n, double win) {
  size_t best = 0;
  for (size_t lo = 0, hi = 0; hi < n; hi++) {
    while (v[hi] - v[lo] > win)
      lo++;
    if (hi - lo + 1 > best) best = hi - lo + 1;
  }
  return best;
}

/* {count, min, p10, p50, p90, p99, max, mean} and, with `hist`, the count
 * per bucket and the densest 50 ms: full jitter shows as counts spread
 * over many buckets, a herd as one tall bucket. */
static json_t *sw_samples_json(const sw_samples_t *s, bool hist) {
  if (s->n == 0) return json_pack("{s:i}", "count", 0);
  double *v = malloc(s->n * sizeof *v);
  if (!v) return json_null();
  memcpy(v, s->v, s->n * sizeof *v);
  qsort(v, s->n, sizeof *v, sw_cmp_double);
  double sum = 0;
  for (size_t i = 0; i < s->n; i++)
    sum += v[i];
  json_t *o = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "count", (json_int_t)s->n,
                        "min", sw_round1(v[0]), "p10", sw_round1(sw_pct(v, s->n, 10)), "p50",
                        sw_round1(sw_pct(v, s->n, 50)), "p90", sw_round1(sw_pct(v, s->n, 90)),
                        "p99", sw_round1(sw_pct(v, s->n, 99)), "max", sw_round1(v[s->n - 1]),
                        "mean", sw_round1(sum / (double)s->n));
  if (s->not_kept) json_object_set_new(o, "not_kept", json_integer((json_int_t)s->not_kept));
  if (hist) {
    json_t *h = json_array();
    size_t k = 0;
    for (size_t b = 0; b <= SW_HIST_N; b++) {
      size_t c = 0;
      while (k < s->n && (b == SW_HIST_N || v[k] <= sw_hist_le[b]))
        k++, c++;
      json_array_append_new(h, json_pack("{s:o, s:I}", "le_ms",
                                         b < SW_HIST_N ? json_real(sw_hist_le[b]) : json_null(),
                                         "count", (json_int_t)c));
    }
    json_object_set_new(o, "histogram", h);
    json_object_set_new(o, "max_in_50ms", json_integer((json_int_t)sw_densest(v, s->n, 50.0)));
  }
  free(v);
  return o;
}

/* Resident set size of this process, KiB, from /proc/self/statm. */
long sw_rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return -1;
  long size, resident;
  int n = fscanf(f, "%ld %ld", &size, &resident);
  fclose(f);
  return n == 2 ? resident * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

void sw_emit(json_t *o) {
  if (!o) return;
  json_dumpf(o, stdout, SW_JSON_FLAGS);
  putchar('\n');
  fflush(stdout);
  json_decref(o);
}

json_t *sw_progress_json(swarm_t *sw) {
  return json_pack(
      "{s:s, s:f, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
      "s:i}",
      "event", "progress", "t_ms", sw_round1(sw_now(sw)), "connected", sw->connected, "agents",
      sw->n, "attempts", (json_int_t)sw->attempts, "handshakes", (json_int_t)sw->handshakes,
      "welcomes", (json_int_t)sw->welcomes, "failed_connects", (json_int_t)sw->failed.total,
      "drops", (json_int_t)sw->drops.total, "reports_sent", (json_int_t)sw->reports, "directives",
      (json_int_t)sw->directives, "acks_applied", (json_int_t)sw->applied, "acks_rejected",
      (json_int_t)sw->rejected, "errors", (json_int_t)sw->errors.total, "protocol_errors",
      (json_int_t)sw->protocol_errors, "rss_kb", (int)sw_rss_kb());
}

json_t *sw_summary_json(swarm_t *sw, double now) {
  json_t *ctl = json_array();
  for (unsigned i = 0; i < sw->naddrs; i++)
    json_array_append_new(ctl, json_string(sw->addr_str[i]));
  json_t *rec = json_array();
  for (unsigned i = 0; i < sw->nrecoveries; i++)
    json_array_append_new(rec,
                          json_pack("{s:f, s:I, s:f}", "at_ms", sw_round1(sw->recoveries[i].at_ms),
                                    "drops", (json_int_t)sw->recoveries[i].drops, "all_back_ms",
                                    sw_round1(sw->recoveries[i].all_back_ms)));
  json_t *samples = json_array();
  long first = -1, last = -1, max = -1;
  for (unsigned i = 0; i < sw->nrss; i++) {
    json_array_append_new(samples, json_pack("[f, i]", sw->rss_t_s[i], (int)sw->rss_kb[i]));
    if (first < 0) first = sw->rss_kb[i];
    last = sw->rss_kb[i];
    if (sw->rss_kb[i] > max) max = sw->rss_kb[i];
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
  double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  bool all = sw->connected == sw->n;
  json_t *rej = sw_tally_json(&sw->rejections);
  json_t *o = json_pack(
      "{s:s, s:s, s:b, s:i, s:o, s:f, s:i, s:b, s:o, s:I, s:I, s:I, s:o, s:o, s:I, s:I, s:I, "
      "s:o, s:o, s:o, s:o, s:o}",
      "event", "summary", "stopped_by", sw->stop_reason, "ok", all && sw->protocol_errors == 0,
      "agents", sw->n, "controllers", ctl, "duration_ms", sw_round1(now), "connected",
      sw->connected, "all_connected", all, "first_all_connected_ms",
      sw->first_all_ms >= 0 ? json_real(sw_round1(sw->first_all_ms)) : json_null(),
      "connect_attempts", (json_int_t)sw->attempts, "handshakes", (json_int_t)sw->handshakes,
      "welcomes", (json_int_t)sw->welcomes, "failed_connects", sw_tally_json(&sw->failed), "drops",
      sw_tally_json(&sw->drops), "redirects_followed", (json_int_t)sw->redirects, "reports_sent",
      (json_int_t)sw->reports, "protocol_errors", (json_int_t)sw->protocol_errors, "errors",
      sw_tally_json(&sw->errors), "directives",
      json_pack("{s:I, s:I, s:I, s:O}", "received", (json_int_t)sw->directives, "acked_applied",
                (json_int_t)sw->applied, "acked_rejected", (json_int_t)sw->rejected,
                "rejected_by_reason", json_object_get(rej, "by_reason")),
      "connect_ms", sw_samples_json(&sw->connect_ms, false), "reconnect_ms",
      sw_samples_json(&sw->reconnect_ms, true), "recoveries", rec);
  json_decref(rej);
  json_object_set_new(o, "recoveries_total", json_integer((json_int_t)sw->recoveries_total));
  json_object_set_new(o, "rss_kb",
                      json_pack("{s:i, s:i, s:i, s:i, s:o}", "after_setup", (int)sw->rss_setup_kb,
                                "first", (int)first, "last", (int)last, "max", (int)max, "samples",
                                samples));
  json_object_set_new(o, "setup_ms", json_real(sw_round1(sw->setup_ms)));
  json_object_set_new(
      o, "cpu_s",
      json_pack("{s:f, s:f}", "user", round(user * 100) / 100, "sys", round(sys * 100) / 100));
  json_object_set_new(o, "fd_limit", json_integer((json_int_t)sw->fd_limit));
  return o;
}
