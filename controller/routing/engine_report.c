/* engine_report: `nircctl report staffing` and the forecast's accuracy
 * (issue 18). Part of the engine module (engine-int.h); no I/O.
 *
 * The report asks the engine's forecast (engine_forecast_demand, as
 * engine_forecast does: the stored history's, else the scenario file's;
 * the handle time from engine_forecast_staff where the history has none) for every
 * source and hub of a schedule's window, 30 minutes at a time, and hands
 * it to the pure staffing computation (staffing.h). For a window that has
 * ended, the owner reads the measured calls and the stored accuracy from
 * the database first and passes them in (engine_report_actual_t).
 *
 * Accuracy tracking: when a schedule's window starts (seen on the tick of
 * the leader that is running then), the engine records the forecast it
 * plans the window on, per site and interval (ENGINE_REC_FORECAST); two
 * business minutes after the window ends (so its last load minute has
 * been written), it asks the store to compare it with the load minutes
 * and keep each site's WAPE (ENGINE_REC_FORECAST_CLOSE). Both rows are
 * keyed by (schedule, window start, site), so a leader that takes over
 * within a window records nothing twice. */
#include "engine-int.h"

#include "err.h"
#include "staffing.h"
#include "tz.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Business time after a window's end before its accuracy is computed: the
 * last minute of the window is flushed once the clock passes it. */
#define ENGINE_FC_CLOSE_DELAY_MS (2 * 60 * 1000)
#define ENGINE_REPORT_DEMAND_MAX 200

/* ---- the window ---- */

static const schedule_t *engine_report_schedule(const engine_t *e, uint64_t id) {
  for (size_t k = 0; k < e->n_sch; k++)
    if (e->sch[k].id == id) return &e->sch[k];
  return NULL;
}

/* The window of `s` that starts on local date yyyymmdd. */
static int engine_report_window_on(const schedule_t *s, int32_t yyyymmdd, int64_t *from,
                                   int64_t *to) {
  tz_local_t lt = {.year = yyyymmdd / 10000,
                   .month = yyyymmdd / 100 % 100,
                   .day = yyyymmdd % 100,
                   .hour = s->start_min / 60,
                   .minute = s->start_min % 60};
  if (tz_from_local(s->tz, &lt, from) != 0) return NIRC_EINVAL;
  tz_local_t et = lt;
  /* A window across midnight ends on the next local date: the date a day
   * later (24 hours later is the next date even across a DST change). */
  if (s->end_min <= s->start_min && tz_to_local(s->tz, *from + 86400000LL, &et) != 0)
    return NIRC_EINVAL;
  et.hour = s->end_min / 60;
  et.minute = s->end_min % 60;
  et.second = 0;
  return tz_from_local(s->tz, &et, to);
}

int engine_report_window(engine_t *e, const Nirc__ReportRequest *req, engine_report_window_t *w,
                         char *err, size_t errlen) {
  memset(w, 0, sizeof *w);
  int64_t now = engine_now(e);
  const schedule_t *s = NULL;
  if (req && req->schedule_id) {
    s = engine_report_schedule(e, req->schedule_id);
    if (!s) {
      snprintf(err, errlen, "no schedule %llu (nircctl schedule list shows them)",
               (unsigned long long)req->schedule_id);
      return NIRC_ENOTFOUND;
    }
  } else {
    /* Tonight's: the enabled schedule in force now, else the one whose
     * window starts first. */
    int64_t best = 0;
    for (size_t k = 0; k < e->n_sch; k++) {
      const schedule_t *x = &e->sch[k];
      int64_t st, en;
      if (!x->enabled) continue;
      if (rules_schedule_window(x, now, &st, &en)) {
        if (!s || best > now) s = x, best = st;
        continue;
      }
      int64_t next = rules_schedule_next_start(x, now);
      if (next && (!s || (best > now && next < best))) s = x, best = next;
    }
    if (!s) {
      snprintf(err, errlen,
               "no enabled schedule: name one with --schedule ID (nircctl schedule list), or add "
               "one with nircctl schedule add");
      return NIRC_ENOTFOUND;
    }
  }
  w->schedule = s;
  if (req && (req->from_ms || req->to_ms)) {
    if (req->to_ms <= req->from_ms) {
      snprintf(err, errlen, "--to must be after --from");
      return NIRC_EINVAL;
    }
    w->from_ms = req->from_ms;
    w->to_ms = req->to_ms;
  } else if (req && req->date) {
    if (engine_report_window_on(s, req->date, &w->from_ms, &w->to_ms) != 0) {
      snprintf(err, errlen, "--date %04d-%02d-%02d: not a date (YYYY-MM-DD)",
               (int)req->date / 10000, (int)req->date / 100 % 100, (int)req->date % 100);
      return NIRC_EINVAL;
    }
  } else {
    int64_t st, en;
    schedule_t on = *s;
    on.enabled = true; /* a named disabled schedule still has windows to plan */
    if (rules_schedule_window(&on, now, &st, &en)) {
      w->from_ms = st;
      w->to_ms = en;
    } else {
      int64_t next = rules_schedule_next_start(&on, now);
      tz_local_t lt;
      if (!next || tz_to_local(on.tz, next, &lt) != 0 ||
          engine_report_window_on(&on, lt.year * 10000 + lt.month * 100 + lt.day, &w->from_ms,
                                  &w->to_ms) != 0) {
        snprintf(err, errlen, "schedule '%s' has no window in the next 400 days", s->name);
        return NIRC_ENOTFOUND;
      }
    }
  }
  w->n_intervals = staff_intervals(w->from_ms, w->to_ms, &w->first_ms);
  if (w->n_intervals == 0) {
    snprintf(err, errlen, "the window is longer than 24 hours: give a shorter --from/--to");
    return NIRC_EINVAL;
  }
  w->ended = w->to_ms <= now;
  return 0;
}

/* ---- the forecast of a window ---- */

/* Fills the staffing input of the window's sources, then hubs, from the
 * engine's forecast (engine_forecast_demand: the stored history's, else
 * the scenario file's); returns how many sites. A site the forecast falls
 * back to live load for, or whose handle time it does not know, is not
 * forecast in that interval. `demand` (may be NULL) gets each site's
 * source in words for the first interval ("forecast from 8 weeks of
 * history", "no history: scenario file"). */
static size_t engine_report_input(engine_t *e, const schedule_t *s, int64_t first_ms, unsigned n_iv,
                                  staff_site_in_t *in, char (*demand)[ENGINE_REPORT_DEMAND_MAX]) {
  size_t n = 0;
  for (int pass = 0; pass < 2; pass++) {
    const slug_list_t *l = pass == 0 ? &s->sources : &s->hubs;
    for (unsigned j = 0; j < l->n && n < STAFF_MAX_SITES; j++) {
      staff_site_in_t *x = &in[n];
      memset(x, 0, sizeof *x);
      nirc_strlcpy(x->site, l->v[j], sizeof x->site);
      x->role = pass == 0 ? STAFF_SOURCE : STAFF_HUB;
      x->first_hub = pass == 1 && j == 0;
      for (unsigned k = 0; k < n_iv; k++) {
        int64_t at = first_ms + (int64_t)k * STAFF_INTERVAL_MS;
        engine_demand_t d;
        engine_forecast_demand(e, x->site, at, &d);
        if (k == 0 && demand) nirc_strlcpy(demand[n], d.text, ENGINE_REPORT_DEMAND_MAX);
        if (d.kind == ENGINE_DEMAND_LIVE) continue; /* live load is no forecast */
        double aht = d.aht_s;
        unsigned agents;
        if (!(aht > 0) && !engine_forecast_staff(e, x->site, at, &agents, &aht)) continue;
        if (!(aht > 0)) continue;
        x->known[k] = true;
        x->cps[k] = d.cps;
        x->aht_s[k] = aht;
      }
      n++;
    }
  }
  return n;
}

/* ---- the reply ---- */

static Nirc__StaffingFigure *engine_report_fig(engine_arena_t *a, const staff_cell_t *c) {
  Nirc__StaffingFigure *f = engine_arena_alloc(a, sizeof *f);
  if (!f) return NULL;
  nirc__staffing_figure__init(f);
  f->known = c->known;
  f->partial = c->partial;
  f->calls = c->calls;
  f->erlangs = c->erlangs;
  f->agents = c->agents;
  return f;
}

static Nirc__StaffingFigure **engine_report_figs(engine_arena_t *a, const staff_cell_t *v,
                                                 unsigned n, size_t *out_n) {
  Nirc__StaffingFigure **p = engine_arena_alloc(a, (n + 1) * sizeof *p);
  for (unsigned k = 0; p && k < n; k++)
    p[k] = engine_report_fig(a, &v[k]);
  *out_n = p ? n : 0;
  return p;
}

/* The measured calls of site `i` of the input and its stored accuracy. */
static void engine_report_actual(engine_arena_t *a, const engine_report_actual_t *act,
                                 const char *slug, unsigned n_iv, Nirc__StaffingSite *ss,
                                 bool ended) {
  Nirc__ForecastAccuracy *fa = engine_arena_alloc(a, sizeof *fa);
  if (!fa) return;
  nirc__forecast_accuracy__init(fa);
  ss->accuracy = fa;
  if (!ended) {
    fa->state = "not-ended";
    return;
  }
  const engine_report_site_actual_t *x = NULL;
  for (size_t k = 0; act && act->available && k < act->n_sites; k++)
    if (strcmp(act->sites[k].site, slug) == 0) x = &act->sites[k];
  staff_cell_t cells[STAFF_MAX_INTERVALS], win = {0};
  memset(cells, 0, sizeof cells);
  bool any = false, missing = false;
  for (unsigned k = 0; k < n_iv; k++) {
    unsigned mins = x ? x->minutes[k] : 0;
    /* An interval with at least one load minute is measured, as the
     * stored accuracy counts it: at an accelerated clock one report spans
     * several business minutes, so minutes without a row are normal. */
    cells[k].known = mins > 0;
    cells[k].calls = mins ? x->calls[k] : 0;
    if (mins) {
      any = true;
      win.calls += cells[k].calls;
    }
    if (!cells[k].known) missing = true;
  }
  win.known = any && !missing;
  win.partial = any && missing;
  ss->actual = engine_report_figs(a, cells, n_iv, &ss->n_actual);
  ss->actual_window = engine_report_fig(a, &win);
  if (!act || !act->available) {
    fa->state = "unavailable";
    return;
  }
  fa->state = x && x->acc_state[0] ? engine_arena_str(a, x->acc_state) : "not-tracked";
  if (x) {
    fa->wape = x->wape;
    fa->forecast_calls = x->forecast_calls;
    fa->actual_calls = x->actual_calls;
    fa->abs_error_calls = x->abs_error_calls;
    fa->intervals = x->intervals;
  }
}

void engine_op_report(engine_t *e, const engine_req_t *rq, const Nirc__ReportRequest *req,
                      const engine_report_actual_t *act) {
  if (req && req->kind && *req->kind && strcmp(req->kind, "staffing") != 0) {
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                       "no report '%.40s': the reports are: staffing", req->kind);
    return;
  }
  engine_report_window_t w;
  char err[240];
  int rc = engine_report_window(e, req, &w, err, sizeof err);
  if (rc != 0) {
    engine_reply_error(e, rq->client, rq->request_id,
                       rc == NIRC_EINVAL || (req && req->schedule_id)
                           ? NIRC__ERROR_CODE__ERROR_CODE_INVALID
                           : NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                       "%s", err);
    return;
  }
  engine_report_actual_t stale = {.available = false};
  if (act && act->available && (act->first_ms != w.first_ms || act->n_intervals != w.n_intervals)) {
    snprintf(stale.why, sizeof stale.why,
             "the schedule changed while its measured load was read: ask again");
    act = &stale;
  }
  staff_site_in_t *in = calloc(STAFF_MAX_SITES, sizeof *in);
  staff_result_t *res = calloc(1, sizeof *res);
  char(*demand)[ENGINE_REPORT_DEMAND_MAX] = calloc(STAFF_MAX_SITES, sizeof *demand);
  size_t n =
      in && demand ? engine_report_input(e, w.schedule, w.first_ms, w.n_intervals, in, demand) : 0;
  if (!in || !res || !demand ||
      staff_compute(in, n, w.n_intervals, e->opts.sl_target, e->opts.sl_threshold_s, res) != 0) {
    free(in);
    free(res);
    free(demand);
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL,
                       "the staffing report could not be computed (out of memory or a bad "
                       "service-level target)");
    return;
  }
  engine_arena_t a = {0};
  Nirc__ReportReply *r = engine_arena_alloc(&a, sizeof *r);
  bool built = r != NULL;
  if (r) {
    nirc__report_reply__init(r);
    r->kind = "staffing";
    r->schedule_id = w.schedule->id;
    r->schedule_name = engine_arena_str(&a, w.schedule->name);
    r->tz = engine_arena_str(&a, w.schedule->tz);
    r->from_ms = w.from_ms;
    r->to_ms = w.to_ms;
    r->first_interval_ms = w.first_ms;
    r->interval_ms = STAFF_INTERVAL_MS;
    r->n_intervals = w.n_intervals;
    r->sl_target = e->opts.sl_target;
    r->sl_threshold_s = e->opts.sl_threshold_s;
    r->ended = w.ended;
    r->now_ms = engine_now(e);
    r->first_hub = w.schedule->hubs.n ? engine_arena_str(&a, w.schedule->hubs.v[0]) : "";
    r->sites = engine_arena_alloc(&a, (n + 1) * sizeof *r->sites);
    built = r->sites != NULL;
    for (size_t i = 0; built && i < n; i++) {
      Nirc__StaffingSite *ss = engine_arena_alloc(&a, sizeof *ss);
      if (!ss) {
        built = false;
        break;
      }
      nirc__staffing_site__init(ss);
      ss->site = engine_arena_str(&a, in[i].site);
      ss->role = in[i].role == STAFF_HUB ? "hub" : "source";
      ss->first_hub = in[i].first_hub;
      ss->demand = engine_arena_str(&a, demand[i]);
      ss->alone = engine_report_figs(&a, res->site[i].alone, w.n_intervals, &ss->n_alone);
      ss->alone_window = engine_report_fig(&a, &res->site[i].alone_peak);
      if (in[i].role == STAFF_HUB) {
        ss->consolidated =
            engine_report_figs(&a, res->site[i].pool, w.n_intervals, &ss->n_consolidated);
        ss->consolidated_window = engine_report_fig(&a, &res->site[i].pool_peak);
      }
      engine_report_actual(&a, act, in[i].site, w.n_intervals, ss, w.ended);
      r->sites[r->n_sites++] = ss;
    }
    r->total_alone = engine_report_figs(&a, res->total_alone, w.n_intervals, &r->n_total_alone);
    r->total_consolidated =
        engine_report_figs(&a, res->total_consolidated, w.n_intervals, &r->n_total_consolidated);
    r->total_alone_window = engine_report_fig(&a, &res->total_alone_peak);
    r->total_consolidated_window = engine_report_fig(&a, &res->total_consolidated_peak);
  }
  free(in);
  free(res);
  free(demand);
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_REPORT;
  rep.report = r;
  engine_send_built_reply(e, rq->client, rq->request_id, &a, built, &rep,
                          act && w.ended && !act->available ? act->why : NULL);
}

/* ---- accuracy tracking ---- */

static engine_fc_mark_t *engine_fc_mark_find(engine_t *e, uint64_t id, int64_t start) {
  for (unsigned k = 0; k < ENGINE_FC_MARKS; k++)
    if (e->fc_marks[k].used && e->fc_marks[k].schedule_id == id && e->fc_marks[k].start_ms == start)
      return &e->fc_marks[k];
  return NULL;
}

/* A free slot, else the oldest closed one; NULL when every slot holds an
 * open window (more schedules in force at once than ENGINE_FC_MARKS). */
static engine_fc_mark_t *engine_fc_mark_new(engine_t *e) {
  engine_fc_mark_t *best = NULL;
  for (unsigned k = 0; k < ENGINE_FC_MARKS; k++) {
    engine_fc_mark_t *m = &e->fc_marks[k];
    if (!m->used) return m;
    if (m->closed && (!best || m->end_ms < best->end_ms)) best = m;
  }
  return best;
}

/* "{12.5,NULL,...}": one site's forecast calls per interval as a
 * PostgreSQL array literal (NULL: not forecast). */
static void engine_fc_array(const staff_site_in_t *x, unsigned n_iv, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  used += (size_t)snprintf(buf, len, "{");
  for (unsigned k = 0; k < n_iv && used < len; k++) {
    if (x->known[k])
      used += (size_t)snprintf(buf + used, len - used, "%s%.4f", k ? "," : "",
                               x->cps[k] * STAFF_INTERVAL_MS / 1000.0);
    else
      used += (size_t)snprintf(buf + used, len - used, "%sNULL", k ? "," : "");
  }
  if (used < len) snprintf(buf + used, len - used, "}");
}

static void engine_fc_record(engine_t *e, const schedule_t *s, int64_t start, int64_t end) {
  engine_fc_mark_t *m = engine_fc_mark_new(e);
  if (!m) return;
  int64_t first;
  unsigned n_iv = staff_intervals(start, end, &first);
  *m = (engine_fc_mark_t){.used = true, .schedule_id = s->id, .start_ms = start, .end_ms = end};
  if (n_iv == 0) return;
  staff_site_in_t *in = calloc(STAFF_MAX_SITES, sizeof *in);
  if (!in) return;
  size_t n = engine_report_input(e, s, first, n_iv, in, NULL);
  char arr[STAFF_MAX_INTERVALS * 24 + 8];
  for (size_t i = 0; i < n; i++) {
    engine_fc_array(&in[i], n_iv, arr, sizeof arr);
    engine_rec_t rec = {.kind = ENGINE_REC_FORECAST,
                        .site = in[i].site,
                        .id = s->id,
                        .win_from_ms = start,
                        .win_to_ms = end,
                        .win_first_ms = first,
                        .detail = arr};
    engine_store(e, &rec);
  }
  free(in);
}

/* How far back a new leader looks for windows whose accuracy the old one
 * may not have asked for (it died between the end and the close). */
#define ENGINE_FC_SWEEP_MS (6 * 3600 * 1000LL)

/* Once per leadership: every enabled schedule's windows that ended in the
 * last ENGINE_FC_SWEEP_MS get a mark still to close. Closing is idempotent
 * (the store keeps the first accuracy of a window, and a window with no
 * recorded forecast has nothing to compare), so asking again for one the
 * old leader closed costs one statement and changes nothing. */
static void engine_fc_sweep(engine_t *e, int64_t now) {
  e->fc_swept = true;
  for (size_t k = 0; k < e->n_sch; k++) {
    const schedule_t *s = &e->sch[k];
    int64_t start = rules_schedule_next_start(s, now - ENGINE_FC_SWEEP_MS - 86400000LL);
    for (unsigned guard = 0; start && start <= now && guard < 8; guard++) {
      int64_t from, to;
      tz_local_t lt;
      if (tz_to_local(s->tz, start, &lt) == 0 &&
          engine_report_window_on(s, lt.year * 10000 + lt.month * 100 + lt.day, &from, &to) == 0 &&
          to + ENGINE_FC_CLOSE_DELAY_MS <= now && to > now - ENGINE_FC_SWEEP_MS &&
          !engine_fc_mark_find(e, s->id, from)) {
        engine_fc_mark_t *m = engine_fc_mark_new(e);
        if (m)
          *m = (engine_fc_mark_t){
              .used = true, .schedule_id = s->id, .start_ms = from, .end_ms = to};
      }
      start = rules_schedule_next_start(s, start);
    }
  }
}

void engine_forecast_track(engine_t *e) {
  int64_t now = engine_now(e);
  if (!e->fc_swept) engine_fc_sweep(e, now);
  for (size_t k = 0; k < e->n_sch; k++) {
    int64_t st, en;
    if (!rules_schedule_window(&e->sch[k], now, &st, &en)) continue;
    if (!engine_fc_mark_find(e, e->sch[k].id, st)) engine_fc_record(e, &e->sch[k], st, en);
  }
  for (unsigned k = 0; k < ENGINE_FC_MARKS; k++) {
    engine_fc_mark_t *m = &e->fc_marks[k];
    if (!m->used || m->closed || now < m->end_ms + ENGINE_FC_CLOSE_DELAY_MS) continue;
    m->closed = true;
    engine_rec_t rec = {.kind = ENGINE_REC_FORECAST_CLOSE,
                        .id = m->schedule_id,
                        .win_from_ms = m->start_ms,
                        .win_to_ms = m->end_ms};
    engine_store(e, &rec);
  }
}
