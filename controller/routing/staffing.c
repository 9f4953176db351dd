#include "staffing.h"

#include "erlang.h"
#include "err.h"

#include <math.h>
#include <string.h>

unsigned staff_intervals(int64_t from_ms, int64_t to_ms, int64_t *first_ms) {
  int64_t f = from_ms - (((from_ms % STAFF_INTERVAL_MS) + STAFF_INTERVAL_MS) % STAFF_INTERVAL_MS);
  if (first_ms) *first_ms = f;
  if (to_ms <= from_ms) return 0;
  int64_t n = (to_ms - f + STAFF_INTERVAL_MS - 1) / STAFF_INTERVAL_MS;
  return n > STAFF_MAX_INTERVALS ? 0 : (unsigned)n;
}

/* Sums calls/s and Erlangs of a pool; `aht_calls` collects calls x
 * handle time for the pool's calls-weighted handle time. */
typedef struct {
  double cps, erl;
  bool any_known, any_unknown;
} staff_pool_t;

static void staff_pool_add(staff_pool_t *p, const staff_site_in_t *s, unsigned k) {
  if (!s->known[k] || !(s->aht_s[k] > 0) || !(s->cps[k] >= 0)) {
    p->any_unknown = true;
    return;
  }
  p->any_known = true;
  p->cps += s->cps[k];
  p->erl += s->cps[k] * s->aht_s[k];
}

static void staff_pool_cell(const staff_pool_t *p, double target, double thr, staff_cell_t *c) {
  memset(c, 0, sizeof *c);
  c->known = p->any_known && !p->any_unknown;
  c->partial = p->any_known && p->any_unknown;
  if (!p->any_known) return;
  c->calls = p->cps * STAFF_INTERVAL_MS / 1000.0;
  c->erlangs = p->erl;
  double aht = p->cps > 0 ? p->erl / p->cps : 0;
  c->agents = p->erl > 0 ? erlang_agents_needed(p->erl, aht, thr, target) : 0;
}

/* Adds one interval's cell to a total (agents add: separate queues). */
static void staff_total_add(staff_cell_t *t, const staff_cell_t *c, bool *seen_known,
                            bool *seen_unknown) {
  if (!c->known && !c->partial) {
    *seen_unknown = true;
    return;
  }
  if (c->partial) *seen_unknown = true;
  *seen_known = true;
  t->calls += c->calls;
  t->erlangs += c->erlangs;
  t->agents += c->agents;
}

/* The window's figure of a series: agents and Erlangs at their peak
 * interval, calls summed. */
static void staff_peak(const staff_cell_t *v, unsigned n, staff_cell_t *peak) {
  memset(peak, 0, sizeof *peak);
  bool known = false, unknown = false;
  for (unsigned k = 0; k < n; k++) {
    if (!v[k].known && !v[k].partial) {
      unknown = true;
      continue;
    }
    if (v[k].partial) unknown = true;
    known = true;
    peak->calls += v[k].calls;
    if (v[k].agents > peak->agents) peak->agents = v[k].agents;
    if (v[k].erlangs > peak->erlangs) peak->erlangs = v[k].erlangs;
  }
  peak->known = known && !unknown;
  peak->partial = known && unknown;
}

int staff_compute(const staff_site_in_t *sites, size_t n_sites, unsigned n_intervals,
                  double sl_target, double sl_threshold_s, staff_result_t *out) {
  if (!sites || !out || n_intervals == 0 || n_intervals > STAFF_MAX_INTERVALS ||
      n_sites > STAFF_MAX_SITES || !(sl_target > 0 && sl_target < 1) || !(sl_threshold_s > 0))
    return NIRC_EINVAL;
  long first = -1;
  bool any_source = false;
  for (size_t i = 0; i < n_sites; i++) {
    if (sites[i].role == STAFF_HUB && sites[i].first_hub) {
      if (first >= 0) return NIRC_EINVAL;
      first = (long)i;
    }
    if (sites[i].role == STAFF_SOURCE) any_source = true;
  }
  if (any_source && first < 0) return NIRC_EINVAL;
  memset(out, 0, sizeof *out);
  out->n_intervals = n_intervals;
  for (unsigned k = 0; k < n_intervals; k++) {
    bool ak = false, au = false, ck = false, cu = false;
    for (size_t i = 0; i < n_sites; i++) {
      staff_pool_t own = {0};
      staff_pool_add(&own, &sites[i], k);
      staff_pool_cell(&own, sl_target, sl_threshold_s, &out->site[i].alone[k]);
      staff_total_add(&out->total_alone[k], &out->site[i].alone[k], &ak, &au);
      if (sites[i].role != STAFF_HUB) continue;
      staff_pool_t pool = {0};
      staff_pool_add(&pool, &sites[i], k);
      for (size_t j = 0; sites[i].first_hub && j < n_sites; j++)
        if (sites[j].role == STAFF_SOURCE) staff_pool_add(&pool, &sites[j], k);
      staff_pool_cell(&pool, sl_target, sl_threshold_s, &out->site[i].pool[k]);
      staff_total_add(&out->total_consolidated[k], &out->site[i].pool[k], &ck, &cu);
    }
    out->total_alone[k].known = ak && !au;
    out->total_alone[k].partial = ak && au;
    out->total_consolidated[k].known = ck && !cu;
    out->total_consolidated[k].partial = ck && cu;
  }
  for (size_t i = 0; i < n_sites; i++) {
    staff_peak(out->site[i].alone, n_intervals, &out->site[i].alone_peak);
    if (sites[i].role == STAFF_HUB)
      staff_peak(out->site[i].pool, n_intervals, &out->site[i].pool_peak);
  }
  staff_peak(out->total_alone, n_intervals, &out->total_alone_peak);
  staff_peak(out->total_consolidated, n_intervals, &out->total_consolidated_peak);
  return 0;
}
