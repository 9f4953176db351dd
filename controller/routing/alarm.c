#include "alarm.h"

#include "err.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const alarm_kind_names[ALARM_KIND_COUNT] = {
    [ALARM_CAPACITY] = "capacity",     [ALARM_ROUTING] = "routing",
    [ALARM_DIRECTIVE] = "directive",   [ALARM_SITE_DOWN] = "site_down",
    [ALARM_DATABASE] = "database",     [ALARM_JOURNAL] = "journal",
    [ALARM_IDENTITY] = "identity",     [ALARM_PBX] = "pbx",
    [ALARM_REPORT] = "report",         [ALARM_MOVED] = "moved",
    [ALARM_NOTIFY] = "notify",         [ALARM_SUPERSEDED] = "superseded",
    [ALARM_CLOCK] = "clock",           [ALARM_RULE_LOAD] = "rule_load",
    [ALARM_LEADERSHIP] = "leadership", [ALARM_SITES_LOAD] = "sites_load",
    [ALARM_AGENT] = "agent",
};

const char *alarm_kind_name(alarm_kind_t k) {
  return (unsigned)k < ALARM_KIND_COUNT ? alarm_kind_names[k] : "unknown";
}

int alarm_kind_parse(const char *name) {
  for (int k = 0; name && k < ALARM_KIND_COUNT; k++)
    if (strcmp(name, alarm_kind_names[k]) == 0) return k;
  return -1;
}

/* Critical: a statement NIRC made may not hold (a move not carried out,
 * a record not durable). Major: an operator must look within minutes (a
 * source kept home for capacity, a rule that cannot run, a site down).
 * Two agents on one certificate are critical: one of them may be a thief.
 * deploy/prometheus/nirc-alerts.yml pages on the same split. */
const char *alarm_severity(alarm_kind_t k) {
  switch (k) {
  case ALARM_DIRECTIVE:
  case ALARM_DATABASE:
  case ALARM_JOURNAL:
  case ALARM_IDENTITY:
  /* An operator was told a change was in force; it is not. */
  case ALARM_SUPERSEDED:
  /* Calls do not go where status says they go. */
  case ALARM_MOVED:
  /* No directive goes out: a move asked for, a return due, are not made. */
  case ALARM_LEADERSHIP: return "critical";
  /* A PBX that drifted and was repaired routes right again: worth a look
   * (why did it drift?), not a page. Not repaired: observed critical. */
  case ALARM_PBX: return "warning";
  default: return "major";
  }
}

const char *alarm_entry_severity(const alarm_t *a) {
  return a->critical ? "critical" : alarm_severity(a->kind);
}

const char *alarm_event_name(alarm_event_t ev) {
  switch (ev) {
  case ALARM_EV_RAISED: return "raised";
  case ALARM_EV_CLEARED: return "cleared";
  case ALARM_EV_ACKED: return "acknowledged";
  case ALARM_EV_BACKDATED: return "backdated";
  }
  return "unknown";
}

void alarm_table_init(alarm_table_t *t, uint32_t clear_after_ms, alarm_cb cb, void *arg) {
  memset(t, 0, sizeof *t);
  t->clear_after_ms = clear_after_ms;
  t->cb = cb;
  t->cb_arg = arg;
  t->next_seq = 1;
}

void alarm_table_free(alarm_table_t *t) {
  free(t->v);
  free(t->slots);
  t->v = NULL;
  t->slots = NULL;
  t->n = t->cap = t->nslots = 0;
}

void alarm_set_epoch(alarm_table_t *t, uint64_t epoch, uint64_t seq_floor) {
  t->epoch = epoch;
  t->next_seq = seq_floor + 1;
}

static size_t alarm_hash(alarm_kind_t kind, const char *subject) {
  uint64_t h = 1469598103934665603ULL ^ (uint64_t)kind; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)subject; *p; p++)
    h = (h ^ *p) * 1099511628211ULL;
  return (size_t)h;
}

/* Rebuilds the index for the entries in v; false when out of memory
 * (the old index, if any, is dropped: lookups then scan). */
static bool alarm_reindex(alarm_table_t *t) {
  size_t want = 16;
  while (want < 2 * t->cap)
    want *= 2;
  if (want != t->nslots) {
    size_t *slots = realloc(t->slots, want * sizeof *slots);
    if (!slots) {
      free(t->slots);
      t->slots = NULL;
      t->nslots = 0;
      return false;
    }
    t->slots = slots;
    t->nslots = want;
  }
  memset(t->slots, 0, t->nslots * sizeof *t->slots);
  for (size_t i = 0; i < t->n; i++) {
    size_t h = alarm_hash(t->v[i].kind, t->v[i].subject) & (t->nslots - 1);
    while (t->slots[h])
      h = (h + 1) & (t->nslots - 1);
    t->slots[h] = i + 1;
  }
  return true;
}

static alarm_t *alarm_lookup(const alarm_table_t *t, alarm_kind_t kind, const char *subject) {
  if (!t->nslots) { /* no index (out of memory): scan */
    for (size_t i = 0; i < t->n; i++)
      if (t->v[i].kind == kind && strcmp(t->v[i].subject, subject) == 0) return &t->v[i];
    return NULL;
  }
  for (size_t h = alarm_hash(kind, subject) & (t->nslots - 1); t->slots[h];
       h = (h + 1) & (t->nslots - 1)) {
    alarm_t *a = &t->v[t->slots[h] - 1];
    if (a->kind == kind && strcmp(a->subject, subject) == 0) return a;
  }
  return NULL;
}

const alarm_t *alarm_find(const alarm_table_t *t, alarm_kind_t kind, const char *subject) {
  return alarm_lookup(t, kind, subject);
}

/* A new entry at the end of v, indexed by the caller's kind and subject
 * once they are filled in (alarm_index_last). */
static alarm_t *alarm_append(alarm_table_t *t) {
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    alarm_t *v = realloc(t->v, cap * sizeof *v);
    if (!v) return NULL;
    t->v = v;
    t->cap = cap;
  }
  alarm_t *a = &t->v[t->n++];
  memset(a, 0, sizeof *a);
  return a;
}

static void alarm_index_last(alarm_table_t *t) {
  if (t->nslots < 2 * t->cap) { /* grown: a bigger index, with every entry */
    alarm_reindex(t);
    return;
  }
  alarm_t *a = &t->v[t->n - 1];
  size_t h = alarm_hash(a->kind, a->subject) & (t->nslots - 1);
  while (t->slots[h])
    h = (h + 1) & (t->nslots - 1);
  t->slots[h] = t->n;
}

const alarm_t *alarm_observe(alarm_table_t *t, alarm_kind_t kind, const char *subject,
                             const char *message, uint64_t now_mono, int64_t wall_ms,
                             int64_t business_ms) {
  return alarm_observe_sev(t, kind, subject, message, false, now_mono, wall_ms, business_ms);
}

const alarm_t *alarm_observe_sev(alarm_table_t *t, alarm_kind_t kind, const char *subject,
                                 const char *message, bool critical, uint64_t now_mono,
                                 int64_t wall_ms, int64_t business_ms) {
  return alarm_observe_late(t, kind, subject, message, critical, now_mono, wall_ms, business_ms,
                            NULL);
}

/* The newest words, after the words saying its since was reported late
 * unless they say them: an operator reads the since beside them. */
static void alarm_set_message(alarm_t *a, const char *message) {
  if (!a->since_when[0] || strstr(message, a->since_when)) {
    nirc_strlcpy_utf8(a->message, message, sizeof a->message);
    return;
  }
  char both[ALARM_WHEN_MAX + ALARM_MESSAGE_MAX + 16];
  snprintf(both, sizeof both, "%s; latest: %s", a->since_when, message);
  nirc_strlcpy_utf8(a->message, both, sizeof a->message);
}

/* Whether a late sighting moves active alarm a's since back: earlier, and
 * heard on time it would have been this alarm (its condition held until
 * within clear_after of a's since). */
static bool alarm_backdates(const alarm_table_t *t, const alarm_t *a, const alarm_late_t *late) {
  return late && late->seen_wall_ms < a->raised_wall_ms &&
         late->held_wall_ms + (int64_t)t->clear_after_ms >= a->raised_wall_ms;
}

const alarm_t *alarm_observe_late(alarm_table_t *t, alarm_kind_t kind, const char *subject,
                                  const char *message, bool critical, uint64_t now_mono,
                                  int64_t wall_ms, int64_t business_ms, const alarm_late_t *late) {
  const char *when = late && late->when ? late->when : "";
  alarm_t *a = alarm_lookup(t, kind, subject);
  if (a) {
    if (critical) a->critical = true;
    a->last_seen_mono = now_mono;
    a->observations++;
    bool back = alarm_backdates(t, a, late);
    if (back) {
      a->raised_wall_ms = late->seen_wall_ms;
      a->raised_business_ms = late->seen_business_ms;
      nirc_strlcpy_utf8(a->since_when, when, sizeof a->since_when);
    }
    if (message) alarm_set_message(a, message);
    if (back && t->cb) t->cb(t->cb_arg, ALARM_EV_BACKDATED, a, wall_ms);
    return a;
  }
  if (!message) return NULL; /* "seen again" of an alarm that is not raised */
  a = alarm_append(t);
  if (!a) return NULL;
  a->id = t->epoch * ALARM_ID_EPOCH + t->next_seq++;
  a->kind = kind;
  a->critical = critical;
  nirc_strlcpy_utf8(a->subject, subject, sizeof a->subject);
  /* Raised since the sighting: when the condition began, not when heard. */
  a->raised_wall_ms = late ? late->seen_wall_ms : wall_ms;
  a->raised_business_ms = late ? late->seen_business_ms : business_ms;
  if (late) nirc_strlcpy_utf8(a->since_when, when, sizeof a->since_when);
  alarm_set_message(a, message);
  a->last_seen_mono = now_mono;
  a->observations = 1;
  alarm_index_last(t);
  t->raised_total[kind]++;
  if (t->cb) t->cb(t->cb_arg, ALARM_EV_RAISED, a, wall_ms);
  return a;
}

const alarm_t *alarm_reword(alarm_table_t *t, alarm_kind_t kind, const char *subject,
                            const char *message) {
  alarm_t *a = alarm_lookup(t, kind, subject);
  if (a && message) alarm_set_message(a, message);
  return a;
}

size_t alarm_sweep(alarm_table_t *t, uint64_t now_mono, int64_t wall_ms) {
  size_t cleared = 0, keep = 0;
  for (size_t i = 0; i < t->n; i++) {
    alarm_t *a = &t->v[i];
    if (now_mono >= a->last_seen_mono + t->clear_after_ms) {
      t->cleared_total[a->kind]++;
      if (t->cb) t->cb(t->cb_arg, ALARM_EV_CLEARED, a, wall_ms);
      cleared++;
      continue;
    }
    /* Order kept: alarm_at lists them as they were raised. */
    if (keep != i) t->v[keep] = *a;
    keep++;
  }
  t->n = keep;
  if (cleared) alarm_reindex(t);
  return cleared;
}

int alarm_adopt(alarm_table_t *t, const alarm_t *a, size_t n, uint64_t now_mono) {
  for (size_t k = 0; k < n; k++) {
    if ((unsigned)a[k].kind >= ALARM_KIND_COUNT || alarm_lookup(t, a[k].kind, a[k].subject))
      continue;
    alarm_t *x = alarm_append(t);
    if (!x) return NIRC_ENOMEM;
    *x = a[k];
    x->last_seen_mono = now_mono;
    x->observations = 0;
    alarm_index_last(t);
  }
  return 0;
}

int alarm_ack(alarm_table_t *t, uint64_t id, const char *who, int64_t wall_ms) {
  for (size_t i = 0; i < t->n; i++) {
    alarm_t *a = &t->v[i];
    if (a->id != id) continue;
    if (a->acked_wall_ms) return NIRC_EEXISTS;
    a->acked_wall_ms = wall_ms;
    nirc_strlcpy_utf8(a->acked_by, who ? who : "", sizeof a->acked_by);
    if (t->cb) t->cb(t->cb_arg, ALARM_EV_ACKED, a, wall_ms);
    return 0;
  }
  return NIRC_ENOTFOUND;
}

size_t alarm_count(const alarm_table_t *t) {
  return t->n;
}

const alarm_t *alarm_at(const alarm_table_t *t, size_t i) {
  return i < t->n ? &t->v[i] : NULL;
}

size_t alarm_count_kind(const alarm_table_t *t, alarm_kind_t kind) {
  size_t c = 0;
  for (size_t i = 0; i < t->n; i++)
    if (t->v[i].kind == kind) c++;
  return c;
}

alarm_seen_t alarm_seen(const alarm_table_t *t, const alarm_t *a, uint64_t now_mono,
                        uint64_t pass_mono) {
  alarm_seen_t s = {0};
  if (a->last_seen_mono >= pass_mono) return s;
  s.quiet = true;
  s.adopted_unseen = a->observations == 0;
  s.ago_ms = now_mono > a->last_seen_mono ? now_mono - a->last_seen_mono : 0;
  /* The sweep runs only while observations are fresh: a late one clears
   * it at its next run, not before. */
  s.clears_in_ms = s.ago_ms < t->clear_after_ms ? t->clear_after_ms - s.ago_ms : 0;
  return s;
}

void alarm_seen_words(bool quiet, bool adopted_unseen, uint64_t ago_ms, uint64_t clears_in_ms,
                      char *buf, size_t len) {
  if (!quiet) {
    snprintf(buf, len, "%s", "");
    return;
  }
  unsigned long long ago = ago_ms / 1000, left = (clears_in_ms + 999) / 1000;
  char when[64];
  if (adopted_unseen)
    snprintf(when, sizeof when, "by this leader in the %llu s since it took the alarm over", ago);
  else if (ago == 0)
    snprintf(when, sizeof when, "%s", "in the latest check");
  else
    snprintf(when, sizeof when, "for %llu s", ago);
  snprintf(buf, len, "condition not seen %s: clears in %llu s unless seen again", when, left);
}
