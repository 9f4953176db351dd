#include "elect.h"

#include "util.h"

#include <stdio.h>
#include <string.h>

uint64_t elect_retry_delay_ms(unsigned failures, uint64_t period_ms) {
  uint64_t cap = period_ms > ELECT_RETRY_MAX_MS ? period_ms : ELECT_RETRY_MAX_MS;
  uint64_t d = period_ms ? period_ms : 1;
  /* Doubled one failure at a time, so no shift overflows. */
  for (unsigned i = 0; i < failures && d < cap; i++)
    d *= 2;
  return d < cap ? d : cap;
}

bool elect_retry_failed(elect_retry_t *r, uint64_t now, uint64_t period_ms, const char *reason) {
  if (r->failures < UINT32_MAX) r->failures++;
  r->next_ms = now + elect_retry_delay_ms(r->failures, period_ms);
  r->failed_ms = now;
  r->marked = false;
  char cut[sizeof r->told]; /* compared as it would be kept */
  nirc_strlcpy(cut, reason, sizeof cut);
  bool tell =
      r->failures == 1 || strcmp(cut, r->told) != 0 || now - r->told_ms >= ELECT_TELL_EVERY_MS;
  if (tell) {
    r->told_ms = now;
    memcpy(r->told, cut, sizeof r->told);
  }
  return tell;
}

void elect_retry_mark(elect_retry_t *r, uint64_t fingerprint) {
  r->marked = true;
  r->mark = fingerprint;
}

bool elect_retry_changed(elect_retry_t *r, uint64_t now, uint64_t fingerprint) {
  if (!r->marked || fingerprint == r->mark) return false;
  r->marked = false;
  uint64_t soonest = r->failed_ms + ELECT_CHANGED_MIN_MS;
  if (soonest < now) soonest = now;
  if (soonest < r->next_ms) r->next_ms = soonest;
  return true;
}

bool elect_retry_due(const elect_retry_t *r, uint64_t now) {
  return now >= r->next_ms;
}

void elect_retry_reset(elect_retry_t *r) {
  memset(r, 0, sizeof *r);
}

void elect_stuck_words(const elect_stuck_t *s, char *out, size_t n) {
  if (!n) return;
  out[0] = '\0';
  if (!s->pid) return;
  snprintf(out, n,
           "rule load backend pid %d holds SHARE locks on %s: writes to them wait. On the "
           "database host: kill -CONT %d if stopped (ps state T), else restart PostgreSQL",
           s->pid, s->tables[0] ? s->tables : "the rule tables", s->pid);
}
