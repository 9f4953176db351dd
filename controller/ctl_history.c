/* ctl_history: nircctl's audit trail output (see ctl_history.h). */
#include "ctl_history.h"

#include "safetext.h"
#include "util.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* TZ as it was before a run of rows set it: restored after. */
typedef struct {
  bool had;
  char value[128];
} ctl_history_tz_t;

/* Sets TZ to tz and reads it (tzset). The C library converts: nircctl is
 * short-lived and single-threaded, so setting TZ is safe. */
static void ctl_history_tz_enter(const char *tz, ctl_history_tz_t *saved) {
  const char *old = getenv("TZ");
  saved->had = old != NULL;
  if (old) nirc_strlcpy(saved->value, old, sizeof saved->value);
  setenv("TZ", tz, 1);
  tzset();
}

static void ctl_history_tz_leave(const ctl_history_tz_t *saved) {
  if (saved->had)
    setenv("TZ", saved->value, 1);
  else
    unsetenv("TZ");
  tzset();
}

/* "2020-01-23 03:12:05" in zone tz. Where TZ is already tz (a run of rows
 * entered it once: ctl_history_row's callers) it is not set again: two
 * tzset() a time, each reading the zone file, tripled the time of 100,000
 * rows of history --all. */
void ctl_history_time(int64_t ms, const char *tz, char *buf, size_t len) {
  const char *cur = getenv("TZ");
  bool set = !cur || strcmp(cur, tz) != 0;
  ctl_history_tz_t saved;
  if (set) ctl_history_tz_enter(tz, &saved);
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  if (!localtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
    snprintf(buf, len, "?");
  if (set) ctl_history_tz_leave(&saved);
}

static const char *ctl_history_str(json_t *d, const char *key) {
  const char *s = d ? json_string_value(json_object_get(d, key)) : NULL;
  return s ? s : "";
}

/* When an entry stamped with the time its event happened was recorded,
 * real time (detail recorded_at_ms, written by the engine only when that
 * was 2 s or more later: controller/routing/engine.c engine_audit_at);
 * 0: it was recorded when it happened. */
static int64_t ctl_history_recorded_ms(json_t *d) {
  json_t *v = d ? json_object_get(d, "recorded_at_ms") : NULL;
  return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
}

/* "(recorded late, at 12:45:00) ": the mark an entry listed after later
 * ones gets before its detail, from `recorded` (its recording time as
 * shown; "": not late); the date is said when it is not the entry's own
 * (`when`; both "YYYY-MM-DD HH:MM:SS" in the same zone). */
static void ctl_history_late_mark(const char *recorded, const char *when, char *buf, size_t len) {
  buf[0] = '\0';
  if (!*recorded) return;
  bool same_day = strlen(recorded) == 19 && strncmp(recorded, when, 11) == 0;
  snprintf(buf, len, "(recorded late, at %s) ", same_day ? recorded + 11 : recorded);
}

void ctl_history_detail(const char *action, const char *detail_json, char *buf, size_t len) {
  json_t *d = json_loads(detail_json ? detail_json : "", 0, NULL);
  char raw[1024];
  raw[0] = '\0';
  if (strcmp(action, "route") == 0) {
    /* "guangdong 1000‰ -> shaanxi 1000‰: hub-lost: shaanxi lost (...)" */
    snprintf(raw, sizeof raw, "%s -> %s: %s: %s", ctl_history_str(d, "before"),
             ctl_history_str(d, "after"), ctl_history_str(d, "cause"), ctl_history_str(d, "why"));
    /* The entry is the decision; what the site made of it follows. */
    json_t *o = json_object_get(d, "outcome");
    size_t u = strlen(raw);
    if (o && json_is_null(o)) {
      snprintf(raw + u, sizeof raw - u,
               " [v%" JSON_INTEGER_FORMAT ": no acknowledgement on record]",
               json_integer_value(json_object_get(d, "version")));
    } else if (json_is_object(o)) {
      const char *res = ctl_history_str(o, "result"), *det = ctl_history_str(o, "detail");
      json_t *lat = json_object_get(o, "latency_ms");
      if (strcmp(res, "applied") == 0 && json_is_integer(lat))
        snprintf(raw + u, sizeof raw - u, " [applied in %" JSON_INTEGER_FORMAT " ms]",
                 json_integer_value(lat));
      else
        snprintf(raw + u, sizeof raw - u, " [%s%s%s]", res, *det ? ": " : "", det);
    }
  } else if (*ctl_history_str(d, "reason")) {
    snprintf(raw, sizeof raw, "%s", ctl_history_str(d, "reason"));
  } else if (*ctl_history_str(d, "why")) {
    snprintf(raw, sizeof raw, "%s", ctl_history_str(d, "why"));
  } else if (d) {
    char *t = json_dumps(d, JSON_COMPACT);
    snprintf(raw, sizeof raw, "%s", t ? t : "");
    free(t);
  }
  json_decref(d);
  safetext_escape(raw, buf, len);
}

/* One CSV field: quoted when it holds a comma, a quote or a space at an
 * end (RFC 4180); the text is already escaped, so it has no newline. A
 * field that begins with = + - @ (a reason, an actor: operator text) gets
 * a leading single quote: a spreadsheet opens "=HYPERLINK(...)" as a
 * formula, and the audit trail must not run what an operator typed on the
 * reader's machine (OWASP's CSV injection rule). Tab and CR, the rule's
 * other two, never reach here raw: safetext escaped them. */
static void ctl_history_csv_field(FILE *out, const char *s, bool last) {
  bool formula = s[0] && strchr("=+-@", s[0]) != NULL;
  bool quote =
      formula || strpbrk(s, ",\"") != NULL || (*s && (s[0] == ' ' || s[strlen(s) - 1] == ' '));
  if (quote) {
    fputc('"', out);
    if (formula) fputc('\'', out);
    for (const char *p = s; *p; p++) {
      if (*p == '"') fputc('"', out);
      fputc(*p, out);
    }
    fputc('"', out);
  } else {
    fputs(s, out);
  }
  fputc(last ? '\n' : ',', out);
}

/* The business clock is shown only where it differs from the real one
 * (an accelerated clock, as in the demo): otherwise it says nothing. */
bool ctl_history_two_clocks(const Nirc__HistoryReply *h) {
  for (size_t i = 0; i < h->n_entries; i++) {
    int64_t b = h->entries[i]->business_at_ms, d = b - h->entries[i]->at_ms;
    if (b && (d > 60000 || d < -60000)) return true;
  }
  return false;
}

/* One entry, as a table row or a CSV record; `business`: the table shows
 * the business time column. Returns whether it was recorded late. */
static bool ctl_history_row(FILE *out, const Nirc__AuditEntry *e, ctl_history_fmt_t fmt,
                            const char *tz, bool business) {
  char when[32], bwhen[32] = "", actor[80], action[48], target[120], detail[600], cause[40];
  char recorded[32] = "", mark[64];
  ctl_history_time(e->at_ms, tz, when, sizeof when);
  if (e->business_at_ms) ctl_history_time(e->business_at_ms, tz, bwhen, sizeof bwhen);
  safetext_escape(e->actor, actor, sizeof actor);
  safetext_escape(e->action, action, sizeof action);
  safetext_escape(e->target, target, sizeof target);
  ctl_history_detail(e->action, e->detail_json, detail, sizeof detail);
  json_t *d = json_loads(e->detail_json, 0, NULL);
  safetext_escape(ctl_history_str(d, "cause"), cause, sizeof cause);
  int64_t rec = ctl_history_recorded_ms(d);
  json_decref(d);
  if (rec) ctl_history_time(rec, tz, recorded, sizeof recorded);
  ctl_history_late_mark(recorded, when, mark, sizeof mark);
  if (fmt == CTL_HISTORY_CSV) {
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)e->id);
    ctl_history_csv_field(out, id, false);
    ctl_history_csv_field(out, when, false);
    ctl_history_csv_field(out, bwhen, false);
    ctl_history_csv_field(out, tz, false);
    ctl_history_csv_field(out, actor, false);
    ctl_history_csv_field(out, action, false);
    ctl_history_csv_field(out, target, false);
    ctl_history_csv_field(out, cause, false);
    ctl_history_csv_field(out, detail, false);
    ctl_history_csv_field(out, recorded, true);
  } else {
    fprintf(out, "%-19s %s%s%-22.22s %-14.14s %-16.16s %s%s\n", when, business ? bwhen : "",
            business ? " " : "", actor, action, target, mark, detail);
  }
  return rec != 0;
}

/* recorded_at last: a reader of the columns before it by position reads
 * them as before. */
void ctl_history_csv_head(FILE *out) {
  fprintf(out, "id,time,business_time,time_zone,actor,action,target,cause,detail,recorded_at\n");
}

void ctl_history_csv_rows(FILE *out, const Nirc__HistoryReply *h, const char *tz,
                          bool newest_first) {
  ctl_history_tz_t saved;
  ctl_history_tz_enter(tz, &saved);
  for (size_t i = 0; i < h->n_entries; i++)
    ctl_history_row(out, h->entries[newest_first ? h->n_entries - 1 - i : i], CTL_HISTORY_CSV, tz,
                    false);
  ctl_history_tz_leave(&saved);
}

void ctl_history_print(FILE *out, const Nirc__HistoryReply *h, ctl_history_fmt_t fmt,
                       const char *tz) {
  bool business = ctl_history_two_clocks(h);
  if (fmt == CTL_HISTORY_CSV) {
    ctl_history_csv_head(out);
  } else {
    char head[64];
    snprintf(head, sizeof head, "TIME (%s)", tz);
    fprintf(out, "%-19s %s%-22s %-14s %-16s %s\n", head, business ? "BUSINESS TIME       " : "",
            "ACTOR", "ACTION", "TARGET", "DETAIL");
  }
  ctl_history_tz_t saved;
  ctl_history_tz_enter(tz, &saved);
  bool late = false;
  for (size_t i = 0; i < h->n_entries; i++) {
    late |= ctl_history_row(out, h->entries[i], fmt, tz, business);
  }
  ctl_history_tz_leave(&saved);
  if (fmt == CTL_HISTORY_TABLE && h->n_entries == 0) fprintf(out, "(no audit records match)\n");
  /* The table is read as a timeline: say why a time goes back. */
  if (fmt == CTL_HISTORY_TABLE && late)
    fprintf(out, "note: entries are listed in the order they were recorded; one marked "
                 "\"recorded late\" is timed when it happened, so its time may be earlier than "
                 "those above it: the controller learnt of it only at the time in the mark\n");
}

void ctl_history_notes(FILE *out, const Nirc__HistoryReply *h, bool window) {
  if (h->limit == 0) {
    /* A controller older than HistoryReply.more: it read at most the
     * limit and cannot say whether that was all. */
    fprintf(out,
            "note: this controller does not say whether older entries match (it is older "
            "than this nircctl); with %zu shown, read more with a higher --limit or a "
            "narrower --until\n",
            h->n_entries);
  } else if (h->more && h->n_entries) {
    /* The same command with --before-id ID reads on, whether or not it
     * already had one; a higher --limit is offered only while there is one. */
    fprintf(out,
            "note: showing the newest %zu matching entries; older ones match too: --before-id "
            "%llu reads the page before (or narrow --until%s)\n",
            h->n_entries, (unsigned long long)h->entries[0]->id,
            h->limit < 500 ? ", or raise --limit, at most 500" : "");
  }
  /* On an accelerated clock the two columns differ: say which one the
   * window was compared with. */
  if (window && ctl_history_two_clocks(h))
    fprintf(out, "note: --since/--until were compared with the %s time\n",
            h->business_clock ? "BUSINESS" : "real (TIME column; this controller is older)");
}

json_t *ctl_history_json(const Nirc__HistoryReply *h) {
  json_t *a = json_array();
  for (size_t i = 0; i < h->n_entries; i++) {
    const Nirc__AuditEntry *e = h->entries[i];
    json_t *detail = json_loads(e->detail_json, 0, NULL);
    json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:s, s:o}", "id", (json_int_t)e->id, "at_ms",
                          (json_int_t)e->at_ms, "actor", e->actor, "action", e->action, "target",
                          e->target, "detail", detail ? detail : json_null());
    if (o && e->business_at_ms)
      json_object_set_new(o, "business_at_ms", json_integer((json_int_t)e->business_at_ms));
    /* Recorded late: when, beside the time it happened (at_ms), whatever
     * its action; the detail has them too. */
    int64_t rec = o ? ctl_history_recorded_ms(detail) : 0; /* o owns detail */
    json_t *rb = rec ? json_object_get(detail, "recorded_business_at_ms") : NULL;
    if (o && rec) json_object_set_new(o, "recorded_at_ms", json_integer((json_int_t)rec));
    if (o && rec && json_is_integer(rb))
      json_object_set_new(o, "recorded_business_at_ms", json_integer(json_integer_value(rb)));
    json_array_append_new(a, o);
  }
  /* complete is null from a controller that does not report it (limit
   * 0): not knowing is not "complete". */
  bool known = h->limit != 0;
  json_t *doc =
      json_pack("{s:o, s:I}", "entries", a, "unsaved_changes", (json_int_t)h->unsaved_changes);
  if (!doc) return NULL;
  json_object_set_new(doc, "complete", known ? json_boolean(!h->more) : json_null());
  json_object_set_new(doc, "next_before_id",
                      known && h->more && h->n_entries ? json_integer((json_int_t)h->entries[0]->id)
                                                       : json_null());
  json_object_set_new(doc, "window_clock",
                      json_string(known && h->business_clock ? "business" : "real"));
  return doc;
}
void ctl_history_pager_init(ctl_history_pager_t *p, Nirc__HistoryRequest *hq, uint32_t want,
                            bool stream) {
  *p = (ctl_history_pager_t){.want = want, .stream = stream};
  hq->count = true;
  hq->limit = want && want < CTL_HISTORY_PAGE ? want : CTL_HISTORY_PAGE;
}

ctl_history_page_t ctl_history_pager_take(ctl_history_pager_t *p, Nirc__HistoryRequest *hq,
                                          const Nirc__HistoryReply *h) {
  /* Without the window or the count the pages could not be made to
   * agree: refused rather than guessed. */
  if (!h || !h->window_known || h->limit == 0 || (p->pages == 0 && !h->counted))
    return CTL_HISTORY_PAGE_OLD;
  if (p->pages == 0) {
    p->matching = h->matching;
    p->unsaved = h->unsaved_changes;
    p->business = h->business_clock;
    if (!p->want && !p->stream && p->matching > CTL_HISTORY_ALL_MAX)
      return CTL_HISTORY_PAGE_TOO_MANY;
    hq->since_ms = h->since_ms;
    hq->until_ms = h->until_ms;
    hq->since_ago_ms = hq->until_ago_ms = 0;
    hq->count = false;
  }
  p->pages++;
  p->n += h->n_entries;
  p->more = h->more;
  p->two |= ctl_history_two_clocks(h);
  if (h->n_entries) p->oldest = h->entries[0]->id;
  if (!h->more || h->n_entries == 0 || (p->want && p->n >= p->want)) return CTL_HISTORY_PAGE_DONE;
  hq->before_id = p->oldest;
  size_t left = p->want ? p->want - p->n : CTL_HISTORY_PAGE;
  hq->limit = left < CTL_HISTORY_PAGE ? (uint32_t)left : CTL_HISTORY_PAGE;
  return CTL_HISTORY_PAGE_MORE;
}

void ctl_history_pager_progress(FILE *out, const ctl_history_pager_t *p) {
  /* "~": entries written meanwhile are not read (they are newer than the
   * first page), and the count is the first page's. */
  uint64_t of = p->want && p->want < p->matching ? p->want : p->matching;
  if (p->n > CTL_HISTORY_ALL_MAX && p->pages % 20 != 0) return;
  fprintf(out, "nircctl: read %zu of ~%llu entries...\n", p->n, (unsigned long long)of);
  fflush(out);
}

void ctl_history_pager_refusal(char *buf, size_t len, const ctl_history_pager_t *p,
                               ctl_history_page_t st) {
  if (st == CTL_HISTORY_PAGE_TOO_MANY)
    snprintf(buf, len,
             "history --all: %llu entries match, more than it holds for a table or JSON "
             "(%u): --csv streams them all; or narrow --since/--until and read window by "
             "window, or give --limit N for the newest N",
             (unsigned long long)p->matching, CTL_HISTORY_ALL_MAX);
  else
    snprintf(buf, len,
             "this controller is older than history --all: read it page by page with "
             "--before-id, or upgrade it");
}

Nirc__AuditEntry **ctl_history_pager_merge(const ctl_history_pager_t *p,
                                           const Nirc__HistoryReply **pages, size_t n,
                                           Nirc__HistoryReply *out) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += pages[i]->n_entries;
  Nirc__AuditEntry **all = calloc(total + 1, sizeof *all);
  if (!all) return NULL;
  size_t k = 0;
  for (size_t i = n; i-- > 0;)
    for (size_t j = 0; j < pages[i]->n_entries; j++)
      all[k++] = pages[i]->entries[j];
  nirc__history_reply__init(out);
  out->entries = all;
  out->n_entries = k;
  out->unsaved_changes = p->unsaved;
  out->more = p->more;
  out->limit = CTL_HISTORY_PAGE; /* not one page's: the note names --before-id alone */
  out->business_clock = p->business;
  return all;
}

void ctl_history_pager_csv_notes(FILE *out, const ctl_history_pager_t *p, bool window) {
  if (p->more && p->n)
    fprintf(out,
            "note: these are the newest %zu matching entries (--limit); older ones match too: "
            "--before-id %llu reads on\n",
            p->n, (unsigned long long)p->oldest);
  if (window && p->two)
    fprintf(out, "note: --since/--until were compared with the %s time\n",
            p->business ? "BUSINESS" : "real (TIME column; this controller is older)");
}
