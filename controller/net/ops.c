#include "ops.h"

#include "err.h"
#include "frame.h"
#include "guard.h"
#include "log.h"
#include "msgtext.h"
#include "route.h"
#include "safetext.h"
#include "statusq.h"
#include "tz.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*ops_handler_t)(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req,
                              Nirc__OperatorReply *rep, void **scratch);

/* Commands that answer later (a move waits for acknowledgements, history
 * for the database) send their own reply. */
typedef void (*ops_async_t)(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req);

typedef struct {
  Nirc__OperatorRequest__BodyCase body;
  const char *name;      /* for logs and refusals */
  op_role_t min_role;    /* least role allowed */
  ops_handler_t handler; /* synchronous: fills the reply */
  /* Frees what the handler allocated for the reply. */
  void (*cleanup)(void *scratch);
  ops_async_t async;
} ops_cmd_t;

static Nirc__LinkState ops_link_state(site_state_t s) {
  switch (s) {
  case SITE_NEVER_SEEN: return NIRC__LINK_STATE__LINK_STATE_NEVER_SEEN;
  case SITE_ONLINE: return NIRC__LINK_STATE__LINK_STATE_ONLINE;
  case SITE_STALE: return NIRC__LINK_STATE__LINK_STATE_STALE;
  case SITE_OFFLINE: return NIRC__LINK_STATE__LINK_STATE_OFFLINE;
  }
  return NIRC__LINK_STATE__LINK_STATE_UNSPECIFIED;
}

/* Everything the status reply points to, freed in one place. */
typedef struct {
  Nirc__StatusReply reply;
  Nirc__SiteStatus *rows;
  Nirc__SiteStatus **row_ptrs;
  Nirc__LoadReport *reports;
  Nirc__RouteShare *shares;
  Nirc__RouteShare **share_ptrs;
  Nirc__Alarm *alarms;
  Nirc__Alarm **alarm_ptrs;
  engine_rule_view_t *views; /* one per row: the rule texts the rows borrow */
  statusq_site_t *facts;     /* one per site: what the filters saw */
  statusq_result_t q;        /* the rows to send, the counts */
  uint32_t *senders;         /* one per row */
  Nirc__HubState hubs[ROUTE_MAX_SHARES], *hub_ptrs[ROUTE_MAX_SHARES];
  Nirc__SitePbxEvent pbx[PBXLOG_KEEP], *pbx_ptrs[PBXLOG_KEEP]; /* borrow srv->pbx_log */
  char pbx_why[80];
} ops_status_t;

static void ops_status_cleanup(void *p) {
  ops_status_t *st = p;
  if (!st) return;
  free(st->rows);
  free(st->row_ptrs);
  free(st->reports);
  free(st->shares);
  free(st->share_ptrs);
  free(st->alarms);
  free(st->alarm_ptrs);
  free(st->views);
  free(st->facts);
  free(st->senders);
  statusq_result_free(&st->q);
  free(st);
}

/* For one site: the hubs its acknowledged route sends calls to, with
 * their state, so `nircctl site` can say whether the hub is well. */
static void ops_status_hubs(server_t *srv, ops_status_t *st, const site_t *s, const site_dir_t *dir,
                            Nirc__SiteStatus *row) {
  int64_t now = clock_real_ms();
  row->hubs = st->hub_ptrs;
  for (unsigned j = 0; j < dir->acked.n_share && row->n_hubs < ROUTE_MAX_SHARES; j++) {
    const route_share_t *sh = &dir->acked.share[j];
    const site_t *h = sites_find(&srv->sites, sh->site);
    if (!h || h == s) continue;
    Nirc__HubState *hs = &st->hubs[row->n_hubs];
    nirc__hub_state__init(hs);
    hs->slug = (char *)h->slug;
    hs->permille = sh->permille;
    hs->link_state = ops_link_state(h->state);
    hs->report_age_ms = h->has_report ? now - h->last_report_ms : -1;
    hs->pbx_unreadable = h->has_report && h->last.pbx_unreadable;
    const site_dir_t *hd = engine_site_dir(srv->engine, (size_t)(h - srv->sites.v));
    hs->note = hd ? (char *)hd->note : "";
    st->hub_ptrs[row->n_hubs++] = hs;
  }
}

/* For one site: its recent PBX events (borrowed from srv->pbx_log until
 * the reply is packed) and since when they are kept. */
static void ops_status_pbx(server_t *srv, ops_status_t *st, size_t idx, Nirc__SiteStatus *row) {
  const pbxlog_event_t *ev;
  size_t n = pbxlog_get(&srv->pbx_log, idx, &ev);
  row->pbx_events_since_ms = srv->pbx_log.since_ms;
  static const Nirc__PbxEventsFrom from[] = {
      [PBXLOG_RECEIVED] = NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_RECEIVED,
      [PBXLOG_LOADING] = NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_LOADING,
      [PBXLOG_LOADED] = NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_DATABASE,
      [PBXLOG_LOAD_FAILED] = NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_LOAD_FAILED};
  row->pbx_events_from = from[srv->pbx_log.state];
  row->pbx_events_asked_ms = srv->pbx_log.asked_ms;
  row->pbx_events_load_error =
      srv->pbx_log.state == PBXLOG_LOAD_FAILED ? srv->pbx_log.why : (char *)"";
  /* Read while it waits for the database to come back: say so. */
  uint64_t down = srv->db_read ? db_unreachable_ms(srv->db_read) : 0;
  if (srv->pbx_log.state == PBXLOG_LOADING && down) {
    snprintf(st->pbx_why, sizeof st->pbx_why, "the database has been unreachable for %llu s",
             (unsigned long long)(down / 1000));
    row->pbx_events_load_error = st->pbx_why;
  }
  row->pbx_events = st->pbx_ptrs;
  for (size_t k = 0; k < n && k < PBXLOG_KEEP; k++) {
    Nirc__SitePbxEvent *p = &st->pbx[k];
    nirc__site_pbx_event__init(p);
    p->at_ms = ev[k].at_ms;
    p->late_ms = ev[k].late_ms;
    p->at_or_before = ev[k].at_or_before;
    p->event = (char *)ev[k].event;
    p->detail = (char *)ev[k].detail;
    st->pbx_ptrs[row->n_pbx_events++] = p;
  }
}

#define OPS_STATUS_ALARMS 100 /* alarms a status reply carries besides its rows' */

/* statusq's lookup: the registry's hash. */
size_t ops_status_find(void *ctx, const char *slug) {
  sites_t *sites = ctx;
  const site_t *s = sites_find(sites, slug);
  return s ? (size_t)(s - sites->v) : SIZE_MAX;
}

/* Every site as the status filters see it (controller/routing/statusq.h),
 * into v (n entries). */
void ops_status_facts(server_t *srv, statusq_site_t *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const site_t *s = &srv->sites.v[i];
    const site_dir_t *dir = srv->engine ? engine_site_dir(srv->engine, i) : NULL;
    /* A route not known here is not its acked (for an unheard site only
     * the default home): the filters see no shares, and that it is not
     * known. */
    bool known = engine_route_seen(srv->engine, i) == ENGINE_ROUTE_KNOWN;
    v[i] = (statusq_site_t){.slug = s->slug,
                            .state = s->state,
                            .removed = s->life == SITE_REMOVED,
                            .pbx_unreadable = s->has_report && s->last.pbx_unreadable,
                            .excluded = dir && dir->excluded_rule != 0,
                            .has_note = dir && dir->note[0],
                            .share = dir && known ? dir->acked.share : NULL,
                            .n_share = dir && known ? dir->acked.n_share : 0,
                            .route_unknown = !known};
  }
  const alarm_table_t *at = srv->engine ? engine_alarms(srv->engine) : NULL;
  for (size_t j = 0; at && j < alarm_count(at); j++) {
    size_t k = ops_status_find(&srv->sites, alarm_at(at, j)->subject);
    if (k < n) v[k].alarmed = true;
  }
}

static void ops_status(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req,
                       Nirc__OperatorReply *rep, void **scratch) {
  const Nirc__StatusRequest *q = req->status;
  const char *only = q && q->site && *q->site ? q->site : NULL;
  size_t n = srv->sites.n;
  ops_status_t *st = calloc(1, sizeof *st);
  if (!st) goto nomem;
  *scratch = st;
  const site_t *asked = only ? sites_find(&srv->sites, only) : NULL;
  if (only && (!asked || asked->life == SITE_REMOVED)) {
    static Nirc__Error e = NIRC__ERROR__INIT;
    e.code = NIRC__ERROR_CODE__ERROR_CODE_UNKNOWN_SITE;
    static char unknown[400];
    if (asked) {
      char gone[300];
      server_site_removed_text(asked, gone, sizeof gone);
      snprintf(unknown, sizeof unknown,
               "no site '%s': %s; nircctl history --site %s shows its "
               "history",
               only, gone, only);
    } else {
      snprintf(unknown, sizeof unknown, "no site '%.40s' (see nircctl status)", only);
    }
    e.message = unknown;
    rep->ok = 0;
    rep->error = &e;
    return;
  }
  /* The filters and the page, evaluated here: a page of 50 rows out of
   * 20,000 sites is a small reply, and the counts are of every site. */
  statusq_filter_t f = {.only = only};
  if (q) {
    for (size_t j = 0; j < q->n_states; j++)
      switch (q->states[j]) {
      case NIRC__LINK_STATE__LINK_STATE_NEVER_SEEN: f.states |= 1u << SITE_NEVER_SEEN; break;
      case NIRC__LINK_STATE__LINK_STATE_ONLINE: f.states |= 1u << SITE_ONLINE; break;
      case NIRC__LINK_STATE__LINK_STATE_STALE: f.states |= 1u << SITE_STALE; break;
      case NIRC__LINK_STATE__LINK_STATE_OFFLINE: f.states |= 1u << SITE_OFFLINE; break;
      default: break;
      }
    f.problems = q->problems;
    f.moved = q->moved;
    f.hub = q->hub;
    f.prefix = q->match;
    f.offset = q->offset;
    f.limit = q->limit;
  }
  st->facts = calloc(n ? n : 1, sizeof *st->facts);
  if (!st->facts) goto nomem;
  ops_status_facts(srv, st->facts, n);
  if (statusq_run(st->facts, n, ops_status_find, &srv->sites, &f, &st->q) != 0) goto nomem;
  size_t nr = st->q.n_rows;
  st->rows = calloc(nr ? nr : 1, sizeof *st->rows);
  st->row_ptrs = calloc(nr ? nr : 1, sizeof *st->row_ptrs);
  st->reports = calloc(nr ? nr : 1, sizeof *st->reports);
  st->shares = calloc(nr * ROUTE_MAX_SHARES + 1, sizeof *st->shares);
  st->share_ptrs = calloc(nr * ROUTE_MAX_SHARES + 1, sizeof *st->share_ptrs);
  st->views = calloc(nr ? nr : 1, sizeof *st->views);
  st->senders = calloc(nr ? nr : 1, sizeof *st->senders);
  if (!st->rows || !st->row_ptrs || !st->reports || !st->shares || !st->share_ptrs || !st->views ||
      !st->senders)
    goto nomem;

  int64_t now = clock_real_ms();
  nirc__status_reply__init(&st->reply);
  st->reply.controller_node = (char *)srv->conf->node;
  st->reply.epoch = srv->epoch;
  st->reply.server_time_ms = clock_now_ms(&srv->clock);
  st->reply.matched = (uint32_t)st->q.matched;
  st->reply.count_online = (uint32_t)st->q.count[SITE_ONLINE];
  st->reply.count_stale = (uint32_t)st->q.count[SITE_STALE];
  st->reply.count_offline = (uint32_t)st->q.count[SITE_OFFLINE];
  st->reply.count_never_seen = (uint32_t)st->q.count[SITE_NEVER_SEEN];
  st->reply.route_not_known = (uint32_t)st->q.route_unknown;
  size_t k = 0, sh = 0;
  for (size_t ri = 0; ri < nr; ri++) {
    size_t i = st->q.rows[ri];
    site_t *s = &srv->sites.v[i];
    st->senders[k] = st->q.senders[i];
    Nirc__SiteStatus *row = &st->rows[k];
    nirc__site_status__init(row);
    row->slug = s->slug;
    row->name_en = s->name_en;
    row->name_zh = s->name_zh;
    row->is_hub = s->is_hub;
    row->link_state = ops_link_state(s->state);
    row->state_since_ms = s->state_since_ms;
    row->lat = s->lat;
    row->lon = s->lon;
    row->peer_address = s->peer_addr;
    size_t idx = (size_t)(s - srv->sites.v);
    const site_dir_t *dir = srv->engine ? engine_site_dir(srv->engine, idx) : NULL;
    row->active_rule =
        srv->engine ? (char *)engine_active_reason(srv->engine, idx) : s->active_rule;
    row->note = dir ? (char *)dir->note : "";
    row->verification = dir ? (char *)dir->verify : "";
    row->held_home = dir && dir->returns.state == ENGINE_RETURNS_HELD;
    if (srv->engine) {
      /* What it routes by and until when, as data: nircctl and scripts
       * format the end in their own zone. */
      engine_rule_view_t *v = &st->views[k];
      engine_rule_view(srv->engine, idx, v);
      row->rule_kind = v->kind == RULE_NONE ? "" : (char *)rules_kind_name(v->kind);
      row->rule_id = v->rule_id;
      row->rule_name = (char *)v->name;
      row->rule_reason = (char *)v->reason;
      row->rule_end_ms = v->end_ms;
      row->rule_detail = v->detail;
      row->excluded = v->excluded;
    }
    if (only && dir) ops_status_hubs(srv, st, s, dir, row);
    if (only) ops_status_pbx(srv, st, idx, row);
    row->inbound_credited_total = s->inbound_credited;
    row->last_report_ms = s->has_report ? s->last_report_ms : 0;
    row->report_age_ms = s->has_report ? now - s->last_report_ms : -1;
    if (s->has_report) {
      Nirc__LoadReport *r = &st->reports[k];
      nirc__load_report__init(r);
      const site_report_t *l = &s->last;
      r->site = s->slug;
      r->timestamp_ms = l->timestamp_ms;
      r->interval_ms = l->interval_ms;
      r->calls_offered = l->offered;
      r->calls_answered = l->answered;
      r->calls_abandoned = l->abandoned;
      r->calls_in_queue = l->in_queue;
      r->calls_in_queue_peak = l->queue_peak;
      r->longest_wait_ms = l->longest_wait_ms;
      r->agents_logged_in = l->logged_in;
      r->agents_ready = l->ready;
      r->agents_talking = l->talking;
      r->agents_not_ready = l->not_ready;
      r->aht_ms = l->aht_ms;
      r->answered_within_threshold = l->answered_within;
      r->sl_threshold_s = l->sl_threshold_s;
      r->calls_from_other_sites = l->from_other_sites;
      r->calls_routed_away = l->routed_away;
      r->not_measured = l->not_measured;
      r->routing_measured = l->routing_measured;
      r->pbx_unreadable = l->pbx_unreadable;
      r->pbx_error = (char *)l->pbx_error;
      row->last_report = r;
    }
    /* The route shown is the one the site acknowledged: what it does, not
     * what we wish; and only one this controller heard of. */
    row->route = &st->share_ptrs[sh];
    engine_route_seen_t seen = engine_route_seen(srv->engine, idx);
    if (seen != ENGINE_ROUTE_KNOWN) {
      /* Its agent has not confirmed it at the PBX, or has not said Hello
       * here since this controller took over (its acked is then only the
       * default home): unknown, never "home". */
      row->route_unknown = 1;
      row->route_unheard = seen == ENGINE_ROUTE_UNHEARD;
      row->n_route = 0;
    } else {
      /* Accepted by the PBX, never read back: say so beside the route. */
      row->route_unverified = dir->unverified;
      for (unsigned j = 0; j < dir->acked.n_share; j++, sh++) {
        nirc__route_share__init(&st->shares[sh]);
        st->shares[sh].site = (char *)dir->acked.share[j].site;
        st->shares[sh].permille = dir->acked.share[j].permille;
        st->share_ptrs[sh] = &st->shares[sh];
      }
      row->n_route = dir->acked.n_share;
    }
    st->row_ptrs[k] = row;
    k++;
  }
  st->reply.sites = st->row_ptrs;
  st->reply.n_sites = k;
  st->reply.senders = st->senders;
  st->reply.n_senders = k;
  /* Every status carries the active alarms: the summary line leads with
   * them, whatever the sites asked for. With 20,000 sites down that is
   * 20,000 alarms in every page (8 MB): the oldest OPS_STATUS_ALARMS and
   * those about the rows sent go, and how many there are in all. */
  const alarm_table_t *at = srv->engine ? engine_alarms(srv->engine) : NULL;
  size_t na = at ? alarm_count(at) : 0, sent = 0;
  st->alarms = calloc(na + 1, sizeof *st->alarms);
  st->alarm_ptrs = calloc(na + 1, sizeof *st->alarm_ptrs);
  bool *listed = calloc(n ? n : 1, sizeof *listed);
  if (!st->alarms || !st->alarm_ptrs || !listed) {
    free(listed);
    goto nomem;
  }
  for (size_t r = 0; r < nr; r++)
    listed[st->q.rows[r]] = true;
  for (size_t j = 0; j < na; j++) {
    const alarm_t *a = alarm_at(at, j);
    size_t about = ops_status_find(&srv->sites, a->subject);
    if (j >= OPS_STATUS_ALARMS && !(about < n && listed[about])) continue;
    engine_alarm_to_pb(srv->engine, a, &st->alarms[sent]);
    st->alarm_ptrs[sent] = &st->alarms[sent];
    sent++;
  }
  free(listed);
  st->reply.alarms = st->alarm_ptrs;
  st->reply.n_alarms = sent;
  st->reply.alarms_total = (uint32_t)na;
  rep->ok = 1;
  rep->body_case = NIRC__OPERATOR_REPLY__BODY_STATUS;
  rep->status = &st->reply;
  return;
nomem : {
  static Nirc__Error e = NIRC__ERROR__INIT;
  e.code = NIRC__ERROR_CODE__ERROR_CODE_INTERNAL;
  e.message = "controller out of memory";
  rep->ok = 0;
  rep->error = &e;
}
}

/* The engine's view of the request: the link is an opaque client to it,
 * the certificate names the operator. */
static engine_req_t ops_req(conn_t *c, const Nirc__OperatorRequest *req) {
  return (engine_req_t){.client = c,
                        .request_id = req->request_id,
                        .operator_name = link_peer(c->link)->subject,
                        .label = link_label(c->link)};
}

static void ops_cutover(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  engine_req_t rq = ops_req(c, req);
  engine_op_cutover(srv->engine, &rq, req->cutover);
}
static void ops_restore(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  engine_req_t rq = ops_req(c, req);
  engine_op_restore(srv->engine, &rq, req->restore);
}
static void ops_plan(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  engine_req_t rq = ops_req(c, req);
  engine_op_plan(srv->engine, &rq, req->plan);
}
static void ops_schedule(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  engine_req_t rq = ops_req(c, req);
  engine_op_schedule(srv->engine, &rq, req->schedule);
}
static void ops_overflow(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  engine_req_t rq = ops_req(c, req);
  engine_op_overflow(srv->engine, &rq, req->overflow);
}
static void ops_capacity(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  engine_req_t rq = ops_req(c, req);
  engine_op_capacity(srv->engine, &rq, req->capacity);
}
/* nircctl site add|set|remove: the engine changes the registry; a site it
 * removed has its open link closed here (the engine does no I/O). */
static void ops_site_change(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  engine_req_t rq = ops_req(c, req);
  engine_op_site_change(srv->engine, &rq, req->site_change);
  const char *slug = req->site_change && req->site_change->site ? req->site_change->site : "";
  site_t *s = *slug ? sites_find(&srv->sites, slug) : NULL;
  if (s && s->life == SITE_REMOVED) server_site_close_removed(srv, s);
}
static void ops_next(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  engine_req_t rq = ops_req(c, req);
  engine_op_next(srv->engine, &rq, req->next);
}

/* ---- history: the audit trail, read asynchronously ---- */

typedef struct {
  server_t *srv;
  conn_t *conn;
  uint64_t request_id;
  uint64_t conn_serial;
  /* Changes the write connection had not committed when the read was
   * asked for: the read cannot see them, and its reply says so. */
  uint64_t unsaved;
  /* history: the limit asked for (one row more is read, to know whether
   * older entries match) and whether the window was on business time. */
  unsigned limit;
  bool business;
  /* The window as compared (durations resolved), and whether the reply
   * counts every match (the SQL's eighth column): both go back to nircctl. */
  int64_t since_ms, until_ms;
  bool count;
} ops_history_t;

/* The connection for a read an operator waits for (server.h, db_ops):
 * behind nothing but other operator reads. */
static db_t *ops_read_db(server_t *srv) {
  return srv->db_ops ? srv->db_ops : srv->db;
}

/* Whether the database is unreachable now; if so, msg says since when and
 * `consequence`. Reads then answer at once with it, instead of waiting in
 * the queue until nircctl gives up on "this controller". */
static bool ops_db_down(server_t *srv, const char *consequence, char *msg, size_t len) {
  uint64_t down = srv->db ? db_unreachable_ms(srv->db) : 0;
  if (down == 0) return false;
  char from[40];
  clock_format_iso(clock_real_ms() - (int64_t)down, 0, from, sizeof from);
  snprintf(msg, len, "the database has been unreachable since %s (%llu s); %s", from,
           (unsigned long long)(down / 1000), consequence);
  return true;
}

/* The operator's link, if it is still there: it may have gone while the
 * database answered. */
static conn_t *ops_live_conn(const ops_history_t *h) {
  for (conn_t *x = h->srv->conns; x; x = x->next)
    if (x == h->conn) return x;
  return NULL;
}

/* Sends a reply read from the database; `err` (with msg) says the read
 * failed: the operator is told the database is unavailable, and why. */
static void ops_send_db_reply(conn_t *c, Nirc__OperatorReply *rep, int err, const char *msg,
                              const char *what) {
  Nirc__Error e = NIRC__ERROR__INIT;
  if (err) {
    e.code = NIRC__ERROR_CODE__ERROR_CODE_UNAVAILABLE;
    e.message = (char *)(msg && *msg ? msg : "database unavailable: try again");
    rep->error = &e;
    rep->ok = 0;
    rep->body_case = NIRC__OPERATOR_REPLY__BODY__NOT_SET;
  } else {
    rep->ok = 1;
  }
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REPLY;
  env.operator_reply = rep;
  if (link_send(c->link, &env) == NIRC_EFRAME_TOO_BIG)
    log_warn(LOG_OPS, link_label(c->link), "%s reply too big: ask for fewer (--limit)", what);
}

static void ops_history_done(void *arg, int err, const char *msg, PGresult *res) {
  ops_history_t *h = arg;
  conn_t *c = ops_live_conn(h);
  if (c) {
    Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
    rep.request_id = h->request_id;
    Nirc__HistoryReply hr = NIRC__HISTORY_REPLY__INIT;
    int n = res && !err ? PQntuples(res) : 0;
    /* One row more than the limit was read, oldest first: if it came,
     * older entries match, and it is left out. */
    int skip = h->limit && n > (int)h->limit ? n - (int)h->limit : 0;
    Nirc__AuditEntry *ents = calloc((size_t)n + 1, sizeof *ents);
    Nirc__AuditEntry **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
    if (!err && (!ents || !ptrs)) {
      err = NIRC_ENOMEM;
      msg = "controller out of memory";
    }
    for (int i = skip; !err && i < n; i++) {
      Nirc__AuditEntry *e = &ents[i - skip];
      nirc__audit_entry__init(e);
      e->id = strtoull(PQgetvalue(res, i, 0), NULL, 10);
      e->at_ms = strtoll(PQgetvalue(res, i, 1), NULL, 10);
      e->actor = PQgetvalue(res, i, 2);
      e->action = PQgetvalue(res, i, 3);
      e->target = PQgetvalue(res, i, 4);
      e->detail_json = PQgetvalue(res, i, 5);
      e->business_at_ms = strtoll(PQgetvalue(res, i, 6), NULL, 10);
      ptrs[i - skip] = e;
    }
    hr.entries = ptrs;
    hr.n_entries = (size_t)(n - skip);
    hr.unsaved_changes = h->unsaved;
    hr.more = skip > 0;
    hr.limit = h->limit;
    hr.business_clock = h->business;
    hr.window_known = true;
    hr.since_ms = h->since_ms;
    hr.until_ms = h->until_ms;
    hr.counted = h->count && !err;
    hr.matching = h->count && n > 0 ? strtoull(PQgetvalue(res, 0, 7), NULL, 10) : 0;
    rep.body_case = NIRC__OPERATOR_REPLY__BODY_HISTORY;
    rep.history = &hr;
    ops_send_db_reply(c, &rep, err, msg, "history");
    free(ents);
    free(ptrs);
  }
  free(h);
}

/* Answers request `request_id` on c with a refusal: ok false, `code`, and
 * the message made from fmt, which says what was refused and what to do.
 * The link stays open. Text an operator or a peer sent that the message
 * quotes is shown escaped (safetext), whatever the caller checked: no peer
 * bytes reach nircctl's reader raw. Everything is copied out before it
 * returns. */
__attribute__((format(printf, 4, 5))) static void
ops_refuse(conn_t *c, uint64_t request_id, Nirc__ErrorCode code, const char *fmt, ...) {
  char raw[640], shown[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(raw, sizeof raw, fmt, ap);
  va_end(ap);
  safetext_escape(raw, shown, sizeof shown);
  Nirc__Error e = NIRC__ERROR__INIT;
  e.code = code;
  e.message = shown;
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.request_id = request_id;
  rep.ok = 0;
  rep.error = &e;
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REPLY;
  env.operator_reply = &rep;
  (void)link_send(c->link, &env);
}

/* "no site hubie; did you mean hubei?": an unknown site is an input
 * error, not an empty history. */
static bool ops_history_site_known(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req,
                                   const char *site) {
  if (!site || !*site || sites_find(&srv->sites, site)) return true;
  const char **slugs = calloc(srv->sites.n + 1, sizeof *slugs);
  for (size_t i = 0; slugs && i < srv->sites.n; i++)
    slugs[i] = srv->sites.v[i].slug;
  const char *near = slugs ? nirc_closest(site, slugs, srv->sites.n) : NULL;
  char msg[200], shown[80];
  safetext_escape(site, shown, sizeof shown);
  snprintf(msg, sizeof msg, "no site %s%s%s%s", shown, near ? "; did you mean " : "",
           near ? near : "", near ? "?" : " (nircctl status lists them)");
  free(slugs);
  ops_refuse(c, req->request_id, NIRC__ERROR_CODE__ERROR_CODE_UNKNOWN_SITE, "%s", msg);
  return false;
}

/* "2020-01-23 03:00:00 Asia/Shanghai": an end of the window in the zone
 * nircctl shows (tz, the operator's text: named only once it is known to
 * be a zone), else in UTC. */
static void ops_history_when(int64_t ms, const char *tz, char *buf, size_t len) {
  tz_local_t l;
  if (tz && *tz && tz_valid(tz) && tz_to_local(tz, ms, &l) == 0) {
    snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d %s", l.year, l.month, l.day, l.hour, l.minute,
             l.second, tz);
  } else {
    clock_format_iso(ms, 0, buf, (unsigned)len);
  }
}

/* Whether the window [since, until) can hold an entry; if not, the
 * operator is told both ends as compared (a duration resolved on this
 * controller's business clock, which nircctl cannot know: it checks only
 * two dates or two durations itself). An empty window is an input error,
 * never an empty table. */
static bool ops_history_window_ok(conn_t *c, const Nirc__OperatorRequest *req, int64_t since_ms,
                                  int64_t until_ms, int64_t now_ms) {
  const Nirc__HistoryRequest *hq = req->history;
  if (until_ms == 0 || until_ms > since_ms) return true;
  char s[80], u[80], n[80], msg[400];
  ops_history_when(since_ms, hq->tz, s, sizeof s);
  ops_history_when(until_ms, hq->tz, u, sizeof u);
  ops_history_when(now_ms, hq->tz, n, sizeof n);
  snprintf(msg, sizeof msg,
           "--until must be later than --since: on the %s clock the entries are filtered on, "
           "--since is %s and --until %s (a duration counts back from the controller's now, %s)",
           hq->business_clock ? "business" : "real", s, u, n);
  ops_refuse(c, req->request_id, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", msg);
  return false;
}

/* A route entry is the engine's decision, written when the directive goes
 * out; whether the site carried it out is its acknowledgement, a history
 * row of its own. The trail joins the two: a route entry that names its
 * directive (epoch, version) gets "outcome", the site's last answer to it
 * or null when none is on record (not acknowledged yet, never delivered,
 * superseded by a newer route before it answered, or its row shed while
 * the database was out of reach). */
#define OPS_ROUTE_OUTCOME_SQL                                                                      \
  "CASE WHEN t.action = 'route' AND t.detail ? 'version' THEN (t.detail || "                       \
  "jsonb_build_object('outcome', (SELECT jsonb_build_object('result', a.result, 'detail', "        \
  "a.detail, 'latency_ms', a.latency_ms, 'at_ms', (extract(epoch from a.at) * 1000)::bigint) "     \
  "FROM directive_acks a WHERE a.site = t.target AND a.epoch = (t.detail->>'epoch')::bigint AND "  \
  "a.version = (t.detail->>'version')::bigint ORDER BY a.at DESC, a.id DESC LIMIT 1)))::text "     \
  "ELSE t.detail::text END"

/* The audit trail's read: the newest $5 entries matching the filters,
 * oldest first. `count` adds a column, the same in every row: how many
 * match in all (a window function, computed before the LIMIT, so it reads
 * every match: only for --all, which reads them anyway). */
#define OPS_HISTORY_SQL(outer, inner)                                                              \
  "SELECT id, (extract(epoch from at) * 1000)::bigint, actor, action, "                            \
  "target, " OPS_ROUTE_OUTCOME_SQL ", "                                                            \
  "coalesce((extract(epoch from business_at) * 1000)::bigint, 0)" outer " FROM ("                  \
  " SELECT *" inner " FROM audit_log WHERE "                                                       \
  " ($1::text IS NULL OR target LIKE '%' || $1 || '%' OR "                                         \
  "  detail::text LIKE '%\"' || $1 || '\"%') AND"                                                  \
  " ($2::text IS NULL OR actor = $2 OR actor = 'operator:' || $2) AND"                             \
  " ($3::text IS NULL OR action = $3) AND"                                                         \
  " ($6::text IS NULL OR detail->>'cause' = $6) AND"                                               \
  " ($8::bigint = 0 OR id < $8::bigint) AND"                                                       \
  " CASE WHEN $9::boolean THEN coalesce(business_at, at) ELSE at END"                              \
  "  >= to_timestamp($4::bigint / 1000.0) AND"                                                     \
  " ($7::bigint = 0 OR CASE WHEN $9::boolean THEN coalesce(business_at, at)"                       \
  "  ELSE at END < to_timestamp($7::bigint / 1000.0))"                                             \
  " ORDER BY id DESC LIMIT $5::int) t ORDER BY id"

static void ops_history(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  const Nirc__HistoryRequest *hq = req->history;
  if (!ops_history_site_known(srv, c, req, hq->site)) return;
  char limit[16], since[32], until[32], before[24];
  unsigned lim = hq->limit ? hq->limit : 50;
  if (lim > 500) lim = 500;
  snprintf(limit, sizeof limit, "%u", lim + 1);
  /* The window is on the clock the entries are shown by (business time;
   * nircctl shows the real time beside it only where the two differ), and
   * a duration counts back from this controller's business now. An older
   * nircctl sends real times: they are compared with the real time. */
  int64_t since_ms = hq->since_ms, until_ms = hq->until_ms;
  int64_t now = hq->business_clock ? clock_now_ms(&srv->clock) : clock_real_ms();
  if (hq->business_clock) {
    if (hq->since_ago_ms) since_ms = now - (int64_t)hq->since_ago_ms;
    if (hq->until_ago_ms) until_ms = now - (int64_t)hq->until_ago_ms;
  }
  if (!ops_history_window_ok(c, req, since_ms, until_ms, now)) return;
  snprintf(since, sizeof since, "%lld", (long long)since_ms);
  snprintf(until, sizeof until, "%lld", (long long)until_ms);
  snprintf(before, sizeof before, "%llu", (unsigned long long)hq->before_id);
  const char *p[] = {hq->site && *hq->site ? hq->site : NULL,
                     hq->actor && *hq->actor ? hq->actor : NULL,
                     hq->action && *hq->action ? hq->action : NULL,
                     since,
                     limit,
                     hq->cause && *hq->cause ? hq->cause : NULL,
                     until,
                     before,
                     hq->business_clock ? "true" : "false"};
  ops_history_t *h = calloc(1, sizeof *h);
  if (!h) return;
  *h = (ops_history_t){srv,
                       c,
                       req->request_id,
                       0,
                       db_unsaved_changes(srv->db, DB_UNSAVED_URGENT),
                       lim,
                       hq->business_clock,
                       since_ms,
                       until_ms,
                       hq->count};
  char down[300];
  if (ops_db_down(srv, "history is unavailable; routing continues", down, sizeof down)) {
    ops_history_done(h, NIRC_EDB, down, NULL);
    return;
  }
  db_t *rdb = ops_read_db(srv);
  /* An entry without a business time (written before it was kept, or by
   * an import-sites whose [clock] it could not reproduce: store/admin.h) is
   * placed by its real time: the business clock is the real one outside
   * an accelerated demo. */
  int rc = rdb ? db_exec(rdb,
                         hq->count ? OPS_HISTORY_SQL(", matching", ", count(*) OVER () AS matching")
                                   : OPS_HISTORY_SQL("", ""),
                         9, p, ops_history_done, h)
               : NIRC_ECLOSED;
  if (rc != 0) {
    ops_history_done(h, rc, "database unavailable: the audit trail cannot be read now", NULL);
  }
}

/* ---- alarms: the active ones from the engine, the record from the
 * database (--all), acknowledgements through the engine ---- */

static void ops_alarms_done(void *arg, int err, const char *msg, PGresult *res) {
  ops_history_t *h = arg;
  conn_t *c = ops_live_conn(h);
  if (c) {
    Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
    rep.request_id = h->request_id;
    Nirc__AlarmReply ar = NIRC__ALARM_REPLY__INIT;
    int n = res && !err ? PQntuples(res) : 0;
    Nirc__Alarm *v = calloc((size_t)n + 1, sizeof *v);
    Nirc__Alarm **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
    if (!err && (!v || !ptrs)) {
      err = NIRC_ENOMEM;
      msg = "controller out of memory";
    }
    for (int i = 0; !err && i < n; i++) {
      nirc__alarm__init(&v[i]);
      v[i].id = strtoull(PQgetvalue(res, i, 0), NULL, 10);
      v[i].kind = PQgetvalue(res, i, 1);
      v[i].subject = PQgetvalue(res, i, 2);
      v[i].severity = PQgetvalue(res, i, 3);
      v[i].message = PQgetvalue(res, i, 4);
      v[i].raised_ms = strtoll(PQgetvalue(res, i, 5), NULL, 10);
      v[i].raised_business_ms = strtoll(PQgetvalue(res, i, 6), NULL, 10);
      v[i].cleared_ms = strtoll(PQgetvalue(res, i, 7), NULL, 10);
      v[i].acked_ms = strtoll(PQgetvalue(res, i, 8), NULL, 10);
      v[i].acked_by = PQgetvalue(res, i, 9);
      ptrs[i] = &v[i];
    }
    ar.alarms = ptrs;
    ar.n_alarms = (size_t)n;
    ar.from_database = 1;
    ar.unsaved_changes = h->unsaved;
    rep.body_case = NIRC__OPERATOR_REPLY__BODY_ALARMS;
    rep.alarms = &ar;
    ops_send_db_reply(c, &rep, err, msg, "alarms");
    free(v);
    free(ptrs);
  }
  free(h);
}

static void ops_alarms(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  const Nirc__AlarmRequest *aq = req->alarms;
  if (!aq || !aq->all) {
    engine_req_t rq = ops_req(c, req);
    engine_op_alarms(srv->engine, &rq, aq);
    return;
  }
  ops_history_t *h = calloc(1, sizeof *h);
  if (!h) return;
  *h = (ops_history_t){.srv = srv,
                       .conn = c,
                       .request_id = req->request_id,
                       .unsaved = db_unsaved_changes(srv->db, DB_UNSAVED_RECORDS)};
  char down[300];
  if (ops_db_down(srv,
                  "the alarm record cannot be read now; `nircctl alarms` (without --all) shows "
                  "the active ones",
                  down, sizeof down)) {
    ops_alarms_done(h, NIRC_EDB, down, NULL);
    return;
  }
  char limit[16];
  snprintf(limit, sizeof limit, "%u", aq->limit ? (aq->limit > 500 ? 500 : aq->limit) : 50);
  const char *p[] = {limit};
  db_t *rdb = ops_read_db(srv);
  int rc = rdb ? db_exec(rdb,
                         "SELECT id, kind, subject, severity, coalesce(last_message, message), "
                         "(extract(epoch FROM raised_at) * 1000)::bigint, "
                         "coalesce((extract(epoch FROM raised_business_at) * 1000)::bigint, 0), "
                         "coalesce((extract(epoch FROM cleared_at) * 1000)::bigint, 0), "
                         "coalesce((extract(epoch FROM acked_at) * 1000)::bigint, 0), "
                         "coalesce(acked_by, '') FROM alarms ORDER BY raised_at DESC, id DESC "
                         "LIMIT $1::int",
                         1, p, ops_alarms_done, h)
               : NIRC_ECLOSED;
  if (rc != 0)
    ops_alarms_done(h, rc, "database unavailable: the alarm record cannot be read now", NULL);
}

/* ---- report staffing: the engine's forecast, and for an ended window
 * the measured load and stored accuracy read first ---- */

typedef struct {
  server_t *srv;
  conn_t *conn;
  Nirc__OperatorRequest req; /* copies of what the engine reads */
  Nirc__ReportRequest rr;
  char kind[16];
  int64_t first_ms;
  unsigned n_intervals;
} ops_report_t;

static void ops_report_done(void *arg, int err, const char *msg, PGresult *res) {
  ops_report_t *h = arg;
  conn_t *c = NULL;
  for (conn_t *x = h->srv->conns; x; x = x->next)
    if (x == h->conn) c = x;
  engine_report_site_actual_t *sites = NULL;
  engine_report_actual_t act = {.first_ms = h->first_ms, .n_intervals = h->n_intervals};
  int n = res && !err ? PQntuples(res) : 0;
  if (c && !err) sites = calloc((size_t)n + 1, sizeof *sites);
  if (c && !err && !sites) {
    err = NIRC_ENOMEM;
    msg = "controller out of memory";
  }
  /* Rows: site, state, wape, forecast, actual, abs error, intervals,
   * interval index, calls, minutes; ordered by site then interval. */
  for (int i = 0; c && !err && i < n; i++) {
    const char *slug = PQgetvalue(res, i, 0);
    if (act.n_sites == 0 || strcmp(sites[act.n_sites - 1].site, slug) != 0) {
      engine_report_site_actual_t *x = &sites[act.n_sites++];
      nirc_strlcpy(x->site, slug, sizeof x->site);
      nirc_strlcpy(x->acc_state, PQgetvalue(res, i, 1), sizeof x->acc_state);
      x->wape = strtod(PQgetvalue(res, i, 2), NULL);
      x->forecast_calls = strtod(PQgetvalue(res, i, 3), NULL);
      x->actual_calls = strtod(PQgetvalue(res, i, 4), NULL);
      x->abs_error_calls = strtod(PQgetvalue(res, i, 5), NULL);
      x->intervals = (unsigned)strtoul(PQgetvalue(res, i, 6), NULL, 10);
    }
    engine_report_site_actual_t *x = &sites[act.n_sites - 1];
    long k = strtol(PQgetvalue(res, i, 7), NULL, 10);
    if (k < 0 || k >= STAFF_MAX_INTERVALS) continue;
    x->calls[k] = strtod(PQgetvalue(res, i, 8), NULL);
    x->minutes[k] = (unsigned)strtoul(PQgetvalue(res, i, 9), NULL, 10);
  }
  if (c) {
    act.available = !err;
    act.sites = sites;
    if (err)
      snprintf(act.why, sizeof act.why,
               "the measured load and accuracy could not be read (%s): shown as unknown",
               msg && *msg ? msg : "database unavailable");
    engine_req_t rq = ops_req(c, &h->req);
    engine_op_report(h->srv->engine, &rq, &h->rr, &act);
  }
  free(sites);
  free(h);
}

static void ops_report(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  engine_req_t rq = ops_req(c, req);
  engine_report_window_t w;
  char why[240];
  if (!req->report || engine_report_window(srv->engine, req->report, &w, why, sizeof why) != 0 ||
      !w.ended) {
    engine_op_report(srv->engine, &rq, req->report, NULL); /* answers, or refuses with why */
    return;
  }
  ops_report_t *h = calloc(1, sizeof *h);
  if (!h) return;
  h->srv = srv;
  h->conn = c;
  nirc__operator_request__init(&h->req);
  h->req.request_id = req->request_id;
  nirc__report_request__init(&h->rr);
  nirc_strlcpy(h->kind, req->report->kind ? req->report->kind : "", sizeof h->kind);
  h->rr.kind = h->kind;
  h->rr.schedule_id = req->report->schedule_id;
  h->rr.date = req->report->date;
  h->rr.from_ms = req->report->from_ms;
  h->rr.to_ms = req->report->to_ms;
  h->first_ms = w.first_ms;
  h->n_intervals = w.n_intervals;
  char down[300];
  if (ops_db_down(srv, "the measured load cannot be read now", down, sizeof down)) {
    ops_report_done(h, NIRC_EDB, down, NULL);
    return;
  }
  /* The window's sites as an array literal: slugs are [a-z0-9_-]. */
  char slugs[2 * RULES_MAX_SITES * (SCENARIO_SLUG_MAX + 1) + 4] = "{";
  size_t used = 1;
  for (int pass = 0; pass < 2; pass++) {
    const slug_list_t *l = pass == 0 ? &w.schedule->sources : &w.schedule->hubs;
    for (unsigned j = 0; j < l->n && used < sizeof slugs; j++)
      used +=
          (size_t)snprintf(slugs + used, sizeof slugs - used, "%s%s", used > 1 ? "," : "", l->v[j]);
  }
  if (used < sizeof slugs) snprintf(slugs + used, sizeof slugs - used, "}");
  char first[24], niv[16], sid[24], start[24];
  snprintf(first, sizeof first, "%lld", (long long)w.first_ms);
  snprintf(niv, sizeof niv, "%u", w.n_intervals);
  snprintf(sid, sizeof sid, "%llu", (unsigned long long)w.schedule->id);
  snprintf(start, sizeof start, "%lld", (long long)w.from_ms);
  const char *p[] = {slugs, first, niv, sid, start};
  /* An operator's read: it never queues the writes an operator's reply
   * waits for, nor behind them or the forecast's load. */
  db_t *rdb = ops_read_db(srv);
  int rc =
      rdb ? db_exec(rdb,
                    "WITH iv AS (SELECT k, to_timestamp($2::bigint / 1000.0) + k * interval "
                    "'30 minutes' AS t FROM generate_series(0, $3::int - 1) k), "
                    "acc AS (SELECT s.site, CASE WHEN a.site IS NOT NULL THEN CASE WHEN "
                    "a.intervals = 0 THEN 'not-measured' WHEN a.wape IS NULL THEN 'no-calls' "
                    "ELSE 'stored' END WHEN u.site IS NOT NULL THEN 'pending' ELSE '' END AS st, "
                    "coalesce(a.wape, 0) AS wape, coalesce(a.forecast_calls, 0) AS fc, "
                    "coalesce(a.actual_calls, 0) AS ac, coalesce(a.abs_error_calls, 0) AS ae, "
                    "coalesce(a.intervals, 0) AS n FROM unnest($1::text[]) s(site) "
                    "LEFT JOIN forecast_used u ON u.site = s.site AND u.schedule_id = "
                    "$4::bigint AND u.window_start = to_timestamp($5::bigint / 1000.0) "
                    "LEFT JOIN forecast_accuracy a ON a.site = s.site AND a.schedule_id = "
                    "$4::bigint AND a.window_start = to_timestamp($5::bigint / 1000.0)) "
                    "SELECT acc.site, acc.st, acc.wape, acc.fc, acc.ac, acc.ae, acc.n, iv.k, "
                    "l.calls, l.mins FROM acc CROSS JOIN iv CROSS JOIN LATERAL (SELECT "
                    "coalesce(sum(m.offered - m.from_other_sites + m.routed_away), 0) AS calls, "
                    "count(*) AS mins FROM load_minute m WHERE m.site = acc.site AND m.minute "
                    ">= iv.t AND m.minute < iv.t + interval '30 minutes') l ORDER BY acc.site, "
                    "iv.k",
                    5, p, ops_report_done, h)
          : NIRC_ECLOSED;
  if (rc != 0) ops_report_done(h, rc, "database unavailable", NULL);
}

static const ops_cmd_t ops_cmds[] = {
    {NIRC__OPERATOR_REQUEST__BODY_STATUS, "status", ROLE_VIEWER, ops_status, ops_status_cleanup,
     NULL},
    {NIRC__OPERATOR_REQUEST__BODY_CUTOVER, "cutover", ROLE_OPERATOR, NULL, NULL, ops_cutover},
    {NIRC__OPERATOR_REQUEST__BODY_RESTORE, "restore", ROLE_OPERATOR, NULL, NULL, ops_restore},
    {NIRC__OPERATOR_REQUEST__BODY_PLAN, "plan", ROLE_VIEWER, NULL, NULL, ops_plan},
    {NIRC__OPERATOR_REQUEST__BODY_SCHEDULE, "schedule", ROLE_VIEWER, NULL, NULL, ops_schedule},
    {NIRC__OPERATOR_REQUEST__BODY_OVERFLOW, "overflow", ROLE_VIEWER, NULL, NULL, ops_overflow},
    {NIRC__OPERATOR_REQUEST__BODY_HISTORY, "history", ROLE_VIEWER, NULL, NULL, ops_history},
    {NIRC__OPERATOR_REQUEST__BODY_ALARMS, "alarms", ROLE_VIEWER, NULL, NULL, ops_alarms},
    {NIRC__OPERATOR_REQUEST__BODY_NEXT, "next", ROLE_VIEWER, NULL, NULL, ops_next},
    {NIRC__OPERATOR_REQUEST__BODY_CAPACITY, "capacity", ROLE_VIEWER, NULL, NULL, ops_capacity},
    {NIRC__OPERATOR_REQUEST__BODY_SITE_CHANGE, "site", ROLE_ADMIN, NULL, NULL, ops_site_change},
    {NIRC__OPERATOR_REQUEST__BODY_REPORT, "report", ROLE_VIEWER, NULL, NULL, ops_report},
};

/* Over its identity's request rate: answered with an error the operator
 * can read (not dropped, not disconnected), before any work is done for
 * it, so a flood costs the controller one small reply per request and
 * agents' reports keep being served. Logged as a summary at most once in
 * 10 s. */
static bool ops_rate_limited(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  const peer_identity_t *id = link_peer(c->link);
  int64_t now = clock_real_ms();
  if (guard_op_take(srv->guard, id->subject, now)) return false;
  const nircd_conf_t *conf = srv->conf;
  srv->refusals.op_rate_limited++;
  if (now - srv->op_limit_logged_ms >= 10000) {
    log_warn(LOG_OPS, link_label(c->link),
             "over [ops] max_requests_per_s = %u (burst %u): %llu requests answered 'rate "
             "limited' since the last such line",
             conf->max_requests_per_s, conf->request_burst,
             (unsigned long long)(srv->refusals.op_rate_limited - srv->op_limit_logged));
    srv->op_limit_logged_ms = now;
    srv->op_limit_logged = srv->refusals.op_rate_limited;
  }
  ops_refuse(c, req->request_id, NIRC__ERROR_CODE__ERROR_CODE_RATE_LIMITED,
             "rate limited: %u requests/s per operator (burst %u); %s sent more: wait a moment "
             "and retry",
             conf->max_requests_per_s, conf->request_burst, id->subject);
  return true;
}

/* The role a request needs beyond its command's, when it changes what
 * the command otherwise only lists, and in *what the words for it:
 * schedules and overflow rules are changed by admins (a rule moves calls
 * every night); an alarm's acknowledgement and a site's configured
 * capacity (what the planner may send there) by operators. ROLE_VIEWER
 * when it needs nothing more. */
static op_role_t ops_change_role(const Nirc__OperatorRequest *req, const ops_cmd_t *cmd, char *what,
                                 size_t whatlen) {
  switch (req->body_case) {
  case NIRC__OPERATOR_REQUEST__BODY_SCHEDULE:
    if (!req->schedule || req->schedule->op == NIRC__RULE_OP__RULE_OP_LIST) break;
    snprintf(what, whatlen, "changing %s rules", cmd->name);
    return ROLE_ADMIN;
  case NIRC__OPERATOR_REQUEST__BODY_OVERFLOW:
    if (!req->overflow || req->overflow->op == NIRC__RULE_OP__RULE_OP_LIST) break;
    snprintf(what, whatlen, "changing %s rules", cmd->name);
    return ROLE_ADMIN;
  case NIRC__OPERATOR_REQUEST__BODY_ALARMS:
    if (!req->alarms || !req->alarms->ack_id) break;
    snprintf(what, whatlen, "acknowledging an alarm");
    return ROLE_OPERATOR;
  case NIRC__OPERATOR_REQUEST__BODY_CAPACITY:
    if (!req->capacity || !req->capacity->set) break;
    snprintf(what, whatlen, "changing a site's capacity");
    return ROLE_OPERATOR;
  default: break;
  }
  what[0] = '\0';
  return ROLE_VIEWER;
}

void ops_dispatch(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  const peer_identity_t *id = link_peer(c->link);
  server_record_op_connected(srv, c); /* before anything this request writes */
  if (ops_rate_limited(srv, c, req)) return;
  char msg[300];
  const ops_cmd_t *cmd = NULL;
  for (size_t i = 0; i < sizeof ops_cmds / sizeof ops_cmds[0]; i++)
    if (ops_cmds[i].body == req->body_case) cmd = &ops_cmds[i];

  if (!cmd) {
    /* Unknown request types are answered, not fatal: a newer nircctl may
     * ask for something this controller does not have yet. */
    ops_refuse(c, req->request_id, NIRC__ERROR_CODE__ERROR_CODE_UNKNOWN_MESSAGE,
               "unknown operator request %d (controller too old?)", req->body_case);
    return;
  }
  if (id->role < cmd->min_role) {
    snprintf(msg, sizeof msg, "'%s' needs role %s; %s has role %s", cmd->name,
             tls_role_name(cmd->min_role), id->subject, tls_role_name(id->role));
    log_warn(LOG_OPS, link_label(c->link), "refused: %s", msg);
    server_record_event(srv, "operator", id->subject, NULL, link_peer_addr(c->link), "refused",
                        msg);
    ops_refuse(c, req->request_id, NIRC__ERROR_CODE__ERROR_CODE_FORBIDDEN, "%s", msg);
    return;
  }
  /* Some requests change what others only list: that needs more. */
  char what[64];
  op_role_t need = ops_change_role(req, cmd, what, sizeof what);
  if (id->role < need) {
    snprintf(msg, sizeof msg, "%s needs role %s; %s has role %s", what, tls_role_name(need),
             id->subject, tls_role_name(id->role));
    server_record_event(srv, "operator", id->subject, NULL, link_peer_addr(c->link), "refused",
                        msg);
    ops_refuse(c, req->request_id, NIRC__ERROR_CODE__ERROR_CODE_FORBIDDEN, "%s", msg);
    return;
  }
  /* The trust boundary for operators' text: a control character, a
   * bidirectional control or a byte that is not UTF-8 in any string of the
   * request refuses it whole, before anything acts on it or records it.
   * The message names the field, the code point and the byte. */
  if (!msgtext_check(&req->base, msg, sizeof msg)) {
    log_warn(LOG_OPS, link_label(c->link), "%s refused: %s", cmd->name, msg);
    ops_refuse(c, req->request_id, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", msg);
    return;
  }
  if (cmd->async) {
    log_info(LOG_OPS, link_label(c->link), "request %s", cmd->name);
    cmd->async(srv, c, req);
    return;
  }
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.request_id = req->request_id;
  void *scratch = NULL;
  log_debug(LOG_OPS, link_label(c->link), "request %s", cmd->name);
  cmd->handler(srv, c, req, &rep, &scratch);
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REPLY;
  env.operator_reply = &rep;
  if (link_send(c->link, &env) == NIRC_EFRAME_TOO_BIG) {
    /* Say so to the operator instead of leaving nircctl to time out and
     * blame the link. */
    log_error(LOG_OPS, link_label(c->link), "reply to %s exceeds the reply limit of %u bytes",
              cmd->name, FRAME_MAX_REPLY);
    ops_refuse(c, rep.request_id, NIRC__ERROR_CODE__ERROR_CODE_INTERNAL,
               "the reply to %s is larger than %u MiB: ask for less (one site, or --limit)",
               cmd->name, FRAME_MAX_REPLY >> 20);
  }
  if (cmd->cleanup) cmd->cleanup(scratch);
}
