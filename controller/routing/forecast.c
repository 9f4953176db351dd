/* forecast: see forecast.h. */
#include "forecast.h"

#include "err.h"

#include <math.h>

/* ---- calendar (proleptic Gregorian, H. Hinnant's days_from_civil) ---- */

bool forecast_day_number(int32_t date, int64_t *days) {
  int y = date / 10000, m = date / 100 % 100, d = date % 100;
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1900 || y > 9999 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) return false;
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (m == 2 && d == 29 && !leap) return false;
  y -= m <= 2;
  int64_t era = y / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  *days = era * 146097 + doe - 719468;
  return true;
}

static int32_t forecast_civil(int64_t z) {
  z += 719468;
  int64_t era = z / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
  return (int32_t)(y * 10000 + m * 100 + d);
}

int32_t forecast_date_add(int32_t date, int days) {
  int64_t z;
  if (!forecast_day_number(date, &z)) return 0;
  return forecast_civil(z + days);
}

int forecast_weekday(int32_t date) {
  int64_t z;
  if (!forecast_day_number(date, &z)) return -1;
  /* 1970-01-01 was a Thursday (3 with Monday = 0). */
  return (int)(((z + 3) % 7 + 7) % 7);
}

/* ---- the forecast ---- */

forecast_opts_t forecast_defaults(unsigned weeks) {
  return (forecast_opts_t){FORECAST_WEIGHTED, weeks, FORECAST_MIN_WEEKS, FORECAST_DECAY};
}

static bool forecast_is_exception(const int32_t *exc, size_t n_exc, int32_t date) {
  for (size_t k = 0; k < n_exc; k++)
    if (exc[k] == date) return true;
  return false;
}

int forecast_at(const forecast_sample_t *v, size_t n, const int32_t *exc, size_t n_exc,
                int32_t date, int slot, const forecast_opts_t *o, forecast_cell_t *out) {
  int64_t target;
  if (!out || !o || slot < 0 || slot >= FORECAST_SLOTS || !forecast_day_number(date, &target) ||
      o->weeks < 1 || o->weeks > FORECAST_WEEKS_MAX || !(o->decay > 0 && o->decay <= 1) ||
      (n && !v))
    return NIRC_EINVAL;
  bool special = forecast_is_exception(exc, n_exc, date);
  /* Ordinary day: the same weekday 1..weeks weeks back, exception dates
   * left out. Exception date: the same month-day in earlier years (any
   * weekday), each year counted as one "week" of weight 1. */
  double wsum = 0, rate = 0, aw = 0, aht = 0;
  unsigned used = 0;
  unsigned best_age = 0; /* LAST_WEEK: the nearest sample's age in weeks */
  double last_rate = 0, last_aht = 0;
  for (size_t i = 0; i < n; i++) {
    const forecast_sample_t *s = &v[i];
    if (s->slot != slot || s->minutes < FORECAST_MIN_MINUTES || s->minutes > FORECAST_SLOT_MIN ||
        !(s->calls >= 0) || !isfinite(s->calls))
      continue;
    int64_t day;
    if (!forecast_day_number(s->date, &day) || day >= target) continue;
    unsigned age;
    if (special) {
      if (s->date % 10000 != date % 10000 || !forecast_is_exception(exc, n_exc, s->date)) continue;
      age = 1;
    } else {
      int64_t diff = target - day;
      if (diff % 7 != 0 || diff / 7 > (int64_t)o->weeks) continue;
      if (forecast_is_exception(exc, n_exc, s->date)) continue;
      age = (unsigned)(diff / 7);
    }
    double r = s->calls / (60.0 * s->minutes);
    double a = s->aht_s > 0 && isfinite(s->aht_s) ? s->aht_s : 0;
    if (o->method == FORECAST_LAST_WEEK) {
      if (!best_age || age < best_age) {
        best_age = age;
        last_rate = r;
        last_aht = a;
      }
      used = 1;
      continue;
    }
    double w = o->method == FORECAST_WEIGHTED ? pow(o->decay, (double)(age - 1)) : 1.0;
    wsum += w;
    rate += w * r;
    if (a > 0 && s->calls > 0) {
      aw += w * s->calls;
      aht += w * s->calls * a;
    }
    used++;
  }
  *out = (forecast_cell_t){FORECAST_OK, 0, 0, used};
  if (o->method == FORECAST_LAST_WEEK) {
    /* Seasonal naive: one week back only (an older one is not "last week"). */
    if (special ? !used : best_age != 1) {
      out->status = special ? FORECAST_NO_EXCEPTION : FORECAST_TOO_SHORT;
      out->weeks = 0;
      return 0;
    }
    out->cps = last_rate;
    out->aht_s = last_aht;
    return 0;
  }
  unsigned need = special ? 1 : (o->min_weeks ? o->min_weeks : 1);
  if (used < need || wsum <= 0) {
    out->status = special ? FORECAST_NO_EXCEPTION : FORECAST_TOO_SHORT;
    return 0;
  }
  out->cps = rate / wsum;
  out->aht_s = aw > 0 ? aht / aw : 0;
  return 0;
}

const char *forecast_method_name(forecast_method_t m) {
  switch (m) {
  case FORECAST_WEIGHTED: return "weighted";
  case FORECAST_MEAN: return "mean";
  case FORECAST_LAST_WEEK: return "last-week";
  }
  return "?";
}

const char *forecast_status_name(forecast_status_t s) {
  switch (s) {
  case FORECAST_OK: return "ok";
  case FORECAST_TOO_SHORT: return "too short";
  case FORECAST_NO_EXCEPTION: return "no history for exception date";
  }
  return "?";
}
