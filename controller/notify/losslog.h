/* losslog: what a webhook URL lost (notifications dropped from a full
 * queue or given up) and when to say so in the log, without flooding it.
 * Sans I/O: the caller feeds each loss and the time in, and is told what
 * to write and when; nothing here logs, reads a clock or starts a timer,
 * so the rules are unit-tested step by step (tests/unit/test_webhook.c).
 *
 * The rules, per URL:
 *  - a loss with no loss line in the last window is logged at once, on a
 *    line of its own with its reason (the caller's words);
 *  - later losses within the window are held, and said together in one
 *    summary line when the window ends (losslog_due says when; the caller
 *    arms a timer and calls losslog_flush): at most one line per window
 *    while losses continue, and none is left unsaid once they stop;
 *  - when the receiver answers again after failing, the recovery line
 *    says how many were lost since it last answered (losslog_answered),
 *    which also says whatever was held;
 *  - at close, whatever is held is said (losslog_flush with force).
 * Every line names the counts (given up, dropped) and the first and last
 * event ids lost. */
#ifndef NIRC_LOSSLOG_H
#define NIRC_LOSSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest event id kept (webhook.h's WEBHOOK_ID_MAX); longer ones are cut. */
#define LOSSLOG_ID_MAX 128

typedef enum {
  LOSSLOG_DROPPED = 0, /* pushed out of a full queue, or still queued at close */
  LOSSLOG_GIVEN_UP,    /* older than the give-up age, or refused for its content */
} losslog_kind_t;

/* A run of losses: how many, of which kind, and the ids of the first and
 * the last (in the order they were lost). */
typedef struct {
  uint64_t given_up, dropped;
  char first[LOSSLOG_ID_MAX + 1], last[LOSSLOG_ID_MAX + 1];
} losslog_span_t;

typedef struct {
  uint64_t window_ms;  /* at most one loss line per window */
  bool said;           /* a loss line was ever written */
  uint64_t said_ms;    /* when the last one was */
  losslog_span_t held; /* lost since the last loss line: not said yet */
  losslog_span_t run;  /* lost since the receiver last answered */
} losslog_t;

/* Starts with nothing lost; window_ms > 0. */
void losslog_init(losslog_t *l, uint64_t window_ms);

/* Number of losses in a span. */
uint64_t losslog_count(const losslog_span_t *s);

/* Counts the loss of notification `id` at now_ms. Returns true when it is
 * to be logged now on a line of its own (no loss line in the last
 * window); then *unsaid holds what was held before it (count 0: nothing),
 * to be named on the same line, and the window restarts. False: it is held
 * for a summary line at losslog_due. */
bool losslog_lost(losslog_t *l, losslog_kind_t kind, const char *id, uint64_t now_ms,
                  losslog_span_t *unsaid);

/* True when losses are held; *at_ms is then when the summary line is due
 * (the end of the window of the last loss line). */
bool losslog_due(const losslog_t *l, uint64_t *at_ms);

/* Takes the held losses for a summary line written at now_ms, if any are
 * held and the line is due (or `force`, at close). Returns true with *out
 * filled and the window restarted; false: nothing to write yet. */
bool losslog_flush(losslog_t *l, uint64_t now_ms, bool force, losslog_span_t *out);

/* The receiver answered at now_ms. With `recovering` (it was failing, and
 * a recovery line is to be written), *run gets what was lost since it
 * last answered, to be said on that line, and *unsaid the held losses if
 * they go back further than the run (count 0: the run covers them), to be
 * said just before; nothing is held afterwards. Without `recovering`,
 * only the run restarts: held losses wait for their summary line. */
void losslog_answered(losslog_t *l, bool recovering, uint64_t now_ms, losslog_span_t *run,
                      losslog_span_t *unsaid);

/* Writes "N notification(s) (G given up, D dropped), ids FIRST to LAST"
 * ("id X" for one) into buf; returns buf. */
const char *losslog_format(const losslog_span_t *s, char *buf, size_t len);

#endif
