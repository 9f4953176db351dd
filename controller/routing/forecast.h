/* forecast: a site's expected own demand and handle time for a half-hour
 * of a given local date, from the history NIRC stores (load_minute,
 * aggregated to half-hours by controller/store/history.c). Pure code: no
 * I/O, no clock; dates are local YYYYMMDD of the business clock.
 *
 * Method (FORECAST_WEIGHTED, the one the controller uses): the expected
 * call rate for a weekday and half-hour is the average of the same
 * weekday and half-hour over the last `weeks` weeks, week k back weighted
 * decay^(k-1), so recent weeks count most. Exception dates (holidays, the
 * schedules' exceptions[]) are never averaged with ordinary days: a
 * forecast for an ordinary day skips them, and one for an exception date
 * uses only the same month-day of earlier years within the history.
 *
 * Two simpler methods exist to defend it (tools/forecast_compare.c
 * backtests all three): FORECAST_MEAN (the same average, unweighted) and
 * FORECAST_LAST_WEEK (the same weekday and half-hour one week back).
 *
 * A half-hour sample counts only when at least FORECAST_MIN_MINUTES of its
 * 30 minutes were reported: a gap is missing data, never zero calls. Handle
 * time is averaged only over samples that measured it (aht_s > 0), weighted
 * by their calls; none measured: unknown (0). */
#ifndef NIRC_FORECAST_H
#define NIRC_FORECAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FORECAST_SLOTS       48 /* half-hours of a local day */
#define FORECAST_SLOT_MIN    30
#define FORECAST_MIN_MINUTES 15 /* of a half-hour, for its sample to count */
#define FORECAST_WEEKS_MAX   52
#define FORECAST_MIN_WEEKS   3 /* weighted/mean: fewer samples of the cell = too short */
#define FORECAST_DECAY       0.8

/* One site's half-hour of history. */
typedef struct {
  int32_t date;     /* local YYYYMMDD */
  uint8_t slot;     /* 0..47: minutes-of-day / 30 */
  uint16_t minutes; /* minutes of the half-hour with a readable report */
  double calls;     /* own offered calls in those minutes */
  double aht_s;     /* calls-weighted handle time measured then; 0: not measured */
} forecast_sample_t;

typedef enum {
  FORECAST_WEIGHTED = 0, /* recency-weighted seasonal average (used) */
  FORECAST_MEAN,         /* unweighted seasonal average */
  FORECAST_LAST_WEEK,    /* seasonal naive: one week back */
} forecast_method_t;

typedef struct {
  forecast_method_t method;
  unsigned weeks;     /* look back this many weeks, 1..FORECAST_WEEKS_MAX */
  unsigned min_weeks; /* fewer usable samples: too short (LAST_WEEK needs 1) */
  double decay;       /* WEIGHTED: weight of week k back = decay^(k-1), 0 < decay <= 1 */
} forecast_opts_t;

typedef enum {
  FORECAST_OK = 0,
  FORECAST_TOO_SHORT,    /* fewer than min_weeks samples of that weekday and slot */
  FORECAST_NO_EXCEPTION, /* an exception date with no same-date history */
} forecast_status_t;

typedef struct {
  forecast_status_t status;
  double cps;     /* expected own calls per second; valid when OK */
  double aht_s;   /* expected handle time; 0: not measured in the samples used */
  unsigned weeks; /* samples used (weeks, or years for an exception date) */
} forecast_cell_t;

/* The defaults the controller uses: weighted, `weeks`, FORECAST_MIN_WEEKS,
 * FORECAST_DECAY. */
forecast_opts_t forecast_defaults(unsigned weeks);

/* Forecast for local `date`, half-hour `slot`, from samples v[0..n) (any
 * order; only those strictly before `date` are used), with the exception
 * dates exc[0..n_exc) (YYYYMMDD, any order). Returns 0, or NIRC_EINVAL for
 * a bad date, slot or options. */
int forecast_at(const forecast_sample_t *v, size_t n, const int32_t *exc, size_t n_exc,
                int32_t date, int slot, const forecast_opts_t *o, forecast_cell_t *out);

/* Calendar helpers. Days since 1970-01-01 of a YYYYMMDD date (false when it
 * is not a date); the date `days` later; weekday 0 = Monday .. 6 = Sunday. */
bool forecast_day_number(int32_t date, int64_t *days);
int32_t forecast_date_add(int32_t date, int days);
int forecast_weekday(int32_t date);

const char *forecast_method_name(forecast_method_t m);
const char *forecast_status_name(forecast_status_t s);

#endif
