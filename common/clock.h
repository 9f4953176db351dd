/* clock: NIRC's notion of "now", which can run faster than real time.
 *
 * The demo and tests run a night in minutes: every process is given the
 * same anchor (a real Unix time), the simulated time at that anchor, and a
 * speed. Then now = start + (real_now - anchor) * speed, identical in the
 * controller and every agent without any synchronisation. With speed 1 and
 * no start, the clock is the real clock. Link timers (reports, staleness,
 * pings) always run on real time: only business time (schedules, the
 * simulator's diurnal profile, revert_at) is accelerated. */
#ifndef NIRC_CLOCK_H
#define NIRC_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
  double speed;      /* >= 1 */
  int64_t anchor_ms; /* real Unix ms at which business time == start_ms */
  int64_t start_ms;  /* business Unix ms at the anchor */
} nirc_clock_t;

/* Real clock: speed 1, now == real time. */
void clock_init_real(nirc_clock_t *c);
/* Sets up the clock from configuration values: with speed 1 and no start,
 * the real clock; otherwise anchored at `anchor` (default: now) reading
 * `start` (default: now). Strings must have passed clock_parse_iso. */
void clock_setup(nirc_clock_t *c, double speed, const char *start, const char *anchor);
/* Whether another process given the same values (clock_setup's) reads
 * the same business time: the real clock, or an anchored one. Without an
 * anchor an accelerated or shifted clock is anchored at each process's
 * own start, which no other process knows (nircd import-sites). */
bool clock_reproducible(double speed, const char *start, const char *anchor);
/* Parses "2020-01-22T21:50:00+08:00" into Unix ms; 0 or NIRC_EINVAL. */
int clock_parse_iso(const char *s, int64_t *out_ms);
/* Formats Unix ms as "2020-01-22T21:50:00+08:00" in the given offset. */
void clock_format_iso(int64_t ms, int utc_offset_min, char *buf, unsigned len);
/* Real wall-clock Unix ms. */
int64_t clock_real_ms(void);
/* Business time now, Unix ms. */
int64_t clock_now_ms(const nirc_clock_t *c);
/* Monotonic ms for timeouts (never jumps). */
uint64_t clock_mono_ms(void);

/* A peer's count of how long ago something happened (its monotonic clock:
 * no reading of a clock that may be off), placed on `now_ms`. A count of
 * CLOCK_AGO_MAX_MS or more, or reaching back before 1970, is not believed:
 * it is a peer's number, and more likely broken than a month old. */
#define CLOCK_AGO_MAX_MS (31LL * 24 * 3600 * 1000)
typedef enum {
  CLOCK_AGO_UNSAID = 0,  /* the peer did not say (an older one) */
  CLOCK_AGO_IMPLAUSIBLE, /* said, but not a count this clock can place */
  CLOCK_AGO_PLACED,      /* *at_ms = now_ms - ago_ms */
} clock_ago_t;
clock_ago_t clock_place_ago(bool said, uint64_t ago_ms, int64_t now_ms, int64_t *at_ms);

#endif
