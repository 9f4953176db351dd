/* losslog: loss accounting and the pace of loss lines; see losslog.h.
 *
 * Both spans kept are suffixes of one sequence of losses: `held` is what
 * came after the last loss line, `run` what came after the receiver last
 * answered. So the shorter one is contained in the longer, which is what
 * lets losslog_answered say everything with at most two lines. */
#include "losslog.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void losslog_init(losslog_t *l, uint64_t window_ms) {
  memset(l, 0, sizeof *l);
  l->window_ms = window_ms;
}

uint64_t losslog_count(const losslog_span_t *s) {
  return s->given_up + s->dropped;
}

static void losslog_add(losslog_span_t *s, losslog_kind_t kind, const char *id) {
  if (losslog_count(s) == 0) snprintf(s->first, sizeof s->first, "%s", id);
  snprintf(s->last, sizeof s->last, "%s", id);
  if (kind == LOSSLOG_GIVEN_UP)
    s->given_up++;
  else
    s->dropped++;
}

/* Moves `from` into *to (if given) and empties it. */
static void losslog_take(losslog_span_t *from, losslog_span_t *to) {
  if (to) *to = *from;
  memset(from, 0, sizeof *from);
}

static void losslog_said(losslog_t *l, uint64_t now_ms) {
  l->said = true;
  l->said_ms = now_ms;
}

bool losslog_lost(losslog_t *l, losslog_kind_t kind, const char *id, uint64_t now_ms,
                  losslog_span_t *unsaid) {
  losslog_add(&l->run, kind, id);
  if (l->said && now_ms - l->said_ms < l->window_ms) {
    losslog_add(&l->held, kind, id);
    return false;
  }
  /* A summary that was due but not flushed yet (its timer runs late)
   * goes on this line rather than after it. */
  losslog_take(&l->held, unsaid);
  losslog_said(l, now_ms);
  return true;
}

bool losslog_due(const losslog_t *l, uint64_t *at_ms) {
  if (losslog_count(&l->held) == 0) return false;
  *at_ms = l->said_ms + l->window_ms;
  return true;
}

bool losslog_flush(losslog_t *l, uint64_t now_ms, bool force, losslog_span_t *out) {
  uint64_t at;
  if (!losslog_due(l, &at) || (!force && now_ms < at)) return false;
  losslog_take(&l->held, out);
  losslog_said(l, now_ms);
  return true;
}

void losslog_answered(losslog_t *l, bool recovering, uint64_t now_ms, losslog_span_t *run,
                      losslog_span_t *unsaid) {
  if (!recovering) {
    losslog_take(&l->run, NULL);
    return;
  }
  /* Held losses beyond the run happened before the receiver last
   * answered: the recovery line would not cover them. */
  memset(unsaid, 0, sizeof *unsaid);
  losslog_take(&l->held, losslog_count(&l->held) > losslog_count(&l->run) ? unsaid : NULL);
  losslog_take(&l->run, run);
  if (losslog_count(run) || losslog_count(unsaid)) losslog_said(l, now_ms);
}

const char *losslog_format(const losslog_span_t *s, char *buf, size_t len) {
  uint64_t n = losslog_count(s);
  if (n == 1)
    snprintf(buf, len, "1 notification (%" PRIu64 " given up, %" PRIu64 " dropped), id %s",
             s->given_up, s->dropped, s->first);
  else
    snprintf(buf, len,
             "%" PRIu64 " notifications (%" PRIu64 " given up, %" PRIu64 " dropped), ids %s to %s",
             n, s->given_up, s->dropped, s->first, s->last);
  return buf;
}
