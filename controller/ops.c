#include "ops.h"

#include "err.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*ops_handler_t)(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req,
                              Nirc__OperatorReply *rep, void **scratch);

typedef struct {
  Nirc__OperatorRequest__BodyCase body;
  const char *name;   /* for logs and refusals */
  op_role_t min_role; /* least role allowed */
  ops_handler_t handler;
  /* Frees what the handler allocated for the reply. */
  void (*cleanup)(void *scratch);
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
} ops_status_t;

static void ops_status_cleanup(void *p) {
  ops_status_t *st = p;
  if (!st) return;
  free(st->rows);
  free(st->row_ptrs);
  free(st->reports);
  free(st->shares);
  free(st->share_ptrs);
  free(st);
}

static void ops_status(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req,
                       Nirc__OperatorReply *rep, void **scratch) {
  const char *only =
      req->status && req->status->site && *req->status->site ? req->status->site : NULL;
  size_t n = srv->sites.n;
  ops_status_t *st = calloc(1, sizeof *st);
  if (!st) goto nomem;
  *scratch = st;
  st->rows = calloc(n ? n : 1, sizeof *st->rows);
  st->row_ptrs = calloc(n ? n : 1, sizeof *st->row_ptrs);
  st->reports = calloc(n ? n : 1, sizeof *st->reports);
  st->shares = calloc(n * SITE_ROUTE_MAX + 1, sizeof *st->shares);
  st->share_ptrs = calloc(n * SITE_ROUTE_MAX + 1, sizeof *st->share_ptrs);
  if (!st->rows || !st->row_ptrs || !st->reports || !st->shares || !st->share_ptrs) goto nomem;

  if (only && !sites_find(&srv->sites, only)) {
    static Nirc__Error e = NIRC__ERROR__INIT;
    e.code = NIRC__ERROR_CODE__ERROR_CODE_UNKNOWN_SITE;
    e.message = "no such site";
    rep->ok = 0;
    rep->error = &e;
    return;
  }
  int64_t now = clock_real_ms();
  nirc__status_reply__init(&st->reply);
  st->reply.controller_node = (char *)srv->conf->node;
  st->reply.epoch = srv->epoch;
  st->reply.server_time_ms = clock_now_ms(&srv->clock);
  size_t k = 0, sh = 0;
  for (size_t i = 0; i < n; i++) {
    site_t *s = &srv->sites.v[i];
    if (only && strcmp(only, s->slug) != 0) continue;
    Nirc__SiteStatus *row = &st->rows[k];
    nirc__site_status__init(row);
    row->slug = s->slug;
    row->name_en = s->name_en;
    row->name_zh = s->name_zh;
    row->is_hub = s->is_hub;
    row->link_state = ops_link_state(s->state);
    row->state_since_ms = s->state_since_ms;
    row->peer_address = s->peer_addr;
    row->active_rule = s->active_rule;
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
      r->longest_wait_ms = l->longest_wait_ms;
      r->agents_logged_in = l->logged_in;
      r->agents_ready = l->ready;
      r->agents_talking = l->talking;
      r->agents_not_ready = l->not_ready;
      r->aht_ms = l->aht_ms;
      r->answered_within_threshold = l->answered_within;
      r->sl_threshold_s = l->sl_threshold_s;
      r->calls_from_other_sites = l->from_other_sites;
      r->pbx_unreadable = l->pbx_unreadable;
      r->pbx_error = (char *)l->pbx_error;
      row->last_report = r;
    }
    row->route = &st->share_ptrs[sh];
    for (unsigned j = 0; j < s->route_len; j++, sh++) {
      nirc__route_share__init(&st->shares[sh]);
      st->shares[sh].site = s->route[j].site;
      st->shares[sh].permille = s->route[j].permille;
      st->share_ptrs[sh] = &st->shares[sh];
    }
    row->n_route = s->route_len;
    st->row_ptrs[k] = row;
    k++;
  }
  st->reply.sites = st->row_ptrs;
  st->reply.n_sites = k;
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

static const ops_cmd_t ops_cmds[] = {
    {NIRC__OPERATOR_REQUEST__BODY_STATUS, "status", ROLE_VIEWER, ops_status, ops_status_cleanup},
};

void ops_dispatch(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req) {
  const peer_identity_t *id = link_peer(c->link);
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.request_id = req->request_id;
  Nirc__Error e = NIRC__ERROR__INIT;
  char msg[200];
  const ops_cmd_t *cmd = NULL;
  for (size_t i = 0; i < sizeof ops_cmds / sizeof ops_cmds[0]; i++)
    if (ops_cmds[i].body == req->body_case) cmd = &ops_cmds[i];

  if (!cmd) {
    /* Unknown request types are answered, not fatal: a newer nircctl may
     * ask for something this controller does not have yet. */
    snprintf(msg, sizeof msg, "unknown operator request %d (controller too old?)", req->body_case);
    e.code = NIRC__ERROR_CODE__ERROR_CODE_UNKNOWN_MESSAGE;
    e.message = msg;
    rep.error = &e;
  } else if (id->role < cmd->min_role) {
    snprintf(msg, sizeof msg, "'%s' needs role %s; %s has role %s", cmd->name,
             tls_role_name(cmd->min_role), id->subject, tls_role_name(id->role));
    e.code = NIRC__ERROR_CODE__ERROR_CODE_FORBIDDEN;
    e.message = msg;
    rep.error = &e;
    log_warn(LOG_OPS, link_label(c->link), "refused: %s", msg);
    server_record_event(srv, "operator", id->subject, NULL, link_peer_addr(c->link), "refused",
                        msg);
  }
  void *scratch = NULL;
  if (!rep.error) {
    log_debug(LOG_OPS, link_label(c->link), "request %s", cmd->name);
    cmd->handler(srv, c, req, &rep, &scratch);
  }
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REPLY;
  env.operator_reply = &rep;
  int rc = link_send(c->link, &env);
  if (rc == NIRC_EFRAME_TOO_BIG)
    log_error(LOG_OPS, link_label(c->link), "reply to %s exceeds the frame limit",
              cmd ? cmd->name : "?");
  if (cmd && cmd->cleanup) cmd->cleanup(scratch);
}
