/* ctl_alarms: nircctl's alarm output (see ctl_alarms.h). */
#include "ctl_alarms.h"

#include "alarm.h"
#include "ctl_history.h"
#include "safetext.h"

#include <jansson.h>
#include <string.h>

/* An accelerated clock (the demo, a drill) puts business time minutes or
 * days away from real time; within a minute they are one clock. */
static bool ctl_alarm_clocks_differ(const Nirc__Alarm *a) {
  int64_t d = a->raised_business_ms - a->raised_ms;
  return a->raised_business_ms && (d > 60000 || d < -60000);
}

/* " (condition not seen for 12 s: clears in 18 s unless seen again)", or
 * "" while its condition is observed: an alarm whose condition ended stays
 * active for [alarms] clear_after and must not read as ongoing. */
static void ctl_alarm_quiet(const Nirc__Alarm *a, char *buf, size_t len) {
  char w[200];
  alarm_seen_words(a->quiet && !a->cleared_ms, a->adopted_unseen, a->quiet_ms, a->clears_in_ms, w,
                   sizeof w);
  snprintf(buf, len, w[0] ? " (%s)" : "%s", w);
}

void ctl_alarm_since(const Nirc__Alarm *a, const char *tz, char *buf, size_t len) {
  char raised[40];
  ctl_history_time(a->raised_ms, tz, raised, sizeof raised);
  if (!ctl_alarm_clocks_differ(a)) {
    snprintf(buf, len, "%s (%s)", raised, tz);
    return;
  }
  char business[40];
  ctl_history_time(a->raised_business_ms, tz, business, sizeof business);
  snprintf(buf, len, "%s (%s, real time; business time %s)", raised, tz, business);
}

void ctl_alarms_print(FILE *out, Nirc__Alarm *const *v, size_t n, bool record, const char *tz) {
  if (n == 0) {
    fprintf(out, record ? "no alarms recorded\n" : "no active alarms\n");
    return;
  }
  fprintf(out, "%-10s %-9s %-9s %-14s %-19s %-19s%s %s\n", "ID", "SEVERITY", "KIND", "SUBJECT",
          "RAISED", "ACKNOWLEDGED", record ? " CLEARED            " : "", "MESSAGE");
  for (size_t i = 0; i < n; i++) {
    const Nirc__Alarm *a = v[i];
    char raised[32], acked[96] = "no", cleared[32] = "active", subject[64], msg[1100], by[64];
    ctl_history_time(a->raised_ms, tz, raised, sizeof raised);
    if (a->acked_ms) {
      char t[32];
      ctl_history_time(a->acked_ms, tz, t, sizeof t);
      safetext_escape(a->acked_by, by, sizeof by);
      snprintf(acked, sizeof acked, "%s", t);
    }
    if (a->cleared_ms) ctl_history_time(a->cleared_ms, tz, cleared, sizeof cleared);
    safetext_escape(a->subject, subject, sizeof subject);
    safetext_escape(a->message, msg, sizeof msg);
    fprintf(out, "%-10llu %-9s %-9s %-14s %-19s %-19s", (unsigned long long)a->id, a->severity,
            a->kind, subject, raised, acked);
    if (record) fprintf(out, " %-19s", cleared);
    char quiet[220];
    ctl_alarm_quiet(a, quiet, sizeof quiet);
    fprintf(out, " %s%s", msg, quiet);
    if (a->acked_ms) fprintf(out, " [ack: %s]", by);
    fputc('\n', out);
  }
  bool differ = false;
  for (size_t i = 0; i < n; i++)
    differ |= ctl_alarm_clocks_differ(v[i]);
  /* The RULE column of status is on the business clock: when it runs
   * apart, say these are not. */
  fprintf(out, "\ntimes in %s%s; acknowledge with `nircctl alarms ack ID`\n", tz,
          differ ? ", real time (the business clock differs; --json has raised_business_ms)" : "");
}

/* One alarm as a line of the summary, its peer-supplied texts escaped. */
static void ctl_alarm_line(FILE *out, const Nirc__Alarm *a, const char *tz) {
  char raised[160], subject[64], msg[600], quiet[220];
  ctl_alarm_since(a, tz, raised, sizeof raised);
  ctl_alarm_quiet(a, quiet, sizeof quiet);
  safetext_escape(a->subject, subject, sizeof subject);
  safetext_escape(a->message, msg, sizeof msg);
  fprintf(out, "  %llu %s %s %s since %s: %s%s\n", (unsigned long long)a->id, a->severity, a->kind,
          subject, raised, msg, quiet);
}

void ctl_alarms_summary(FILE *out, Nirc__Alarm *const *v, size_t n, size_t total, size_t max_lines,
                        const char *tz) {
  if (total > n) { /* a reply carries some of many: say so, not a smaller number */
    fprintf(out, "ALARMS: %zu active (nircctl alarms lists them)\n", total);
    for (size_t i = 0; i < n && i < max_lines; i++) {
      ctl_alarm_line(out, v[i], tz);
    }
    fprintf(out, "  ... and %zu more\n", total - (n < max_lines ? n : max_lines));
    return;
  }
  if (n == 0) {
    fprintf(out, "ALARMS: none active\n");
    return;
  }
  size_t unacked = 0;
  for (size_t i = 0; i < n; i++)
    if (!v[i]->acked_ms) unacked++;
  fprintf(out, "ALARMS: %zu active, %zu not acknowledged (nircctl alarms)\n", n, unacked);
  for (size_t i = 0; i < n && i < max_lines; i++) {
    ctl_alarm_line(out, v[i], tz);
  }
  if (n > max_lines) fprintf(out, "  ... and %zu more\n", n - max_lines);
}

json_t *ctl_alarm_json(const Nirc__Alarm *a) {
  json_t *o =
      json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:b}", "id", (json_int_t)a->id, "kind", a->kind,
                "subject", a->subject, "severity", a->severity, "message", a->message, "raised_ms",
                (json_int_t)a->raised_ms, "active", a->cleared_ms == 0);
  if (!o) return NULL;
  if (a->raised_business_ms)
    json_object_set_new(o, "raised_business_ms", json_integer((json_int_t)a->raised_business_ms));
  json_object_set_new(o, "cleared_ms",
                      a->cleared_ms ? json_integer((json_int_t)a->cleared_ms) : json_null());
  json_object_set_new(o, "acked_ms",
                      a->acked_ms ? json_integer((json_int_t)a->acked_ms) : json_null());
  json_object_set_new(o, "acked_by", a->acked_ms ? json_string(a->acked_by) : json_null());
  /* Said only of an active alarm whose condition is not observed now. */
  bool quiet = a->quiet && !a->cleared_ms;
  json_object_set_new(o, "quiet_ms", quiet ? json_integer((json_int_t)a->quiet_ms) : json_null());
  json_object_set_new(o, "clears_in_ms",
                      quiet ? json_integer((json_int_t)a->clears_in_ms) : json_null());
  return o;
}
