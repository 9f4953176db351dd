/* nircctl: the operators' command-line tool. It talks only to the
 * controller, over the same mutual-TLS link type as the agents, with an
 * operator certificate: every change is attributed to that certificate.
 *
 * Exit codes (SPEC section 9): 0 done, 1 refused, 2 usage, 3 controller
 * unreachable, 4 partially applied. */
#include "config.h"
#include "err.h"
#include "link.h"
#include "log.h"
#include "map.h"
#include "report.h"
#include "util.h"
#include "clock.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { EXIT_DONE = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_PARTIAL = 4 };

typedef struct {
  config_list_t controllers;
  char ca[CONFIG_STR_MAX], cert[CONFIG_STR_MAX], key[CONFIG_STR_MAX];
  uint64_t timeout_ms;
} ctl_conf_t;

#define O(f) offsetof(ctl_conf_t, f)
#define S(f) sizeof(((ctl_conf_t *)0)->f)
static const config_opt_t ctl_opts[] = {
    {"ctl", "controllers", CFG_LIST, O(controllers), 0, 0, 0, "127.0.0.1:7443", 0,
     "controller addresses, tried in order"},
    {"ctl", "timeout", CFG_DURATION, O(timeout_ms), 0, 100, 600000, "5s", 0,
     "how long to wait for the controller"},
    {"tls", "ca", CFG_STRING, O(ca), S(ca), 0, 0, "", 0, "the private CA certificate"},
    {"tls", "cert", CFG_STRING, O(cert), S(cert), 0, 0, "", 0, "your operator certificate"},
    {"tls", "key", CFG_STRING, O(key), S(key), 0, 0, "", 0, "your operator private key"},
    {0},
};

typedef struct {
  uv_loop_t *loop;
  ctl_conf_t *conf;
  SSL_CTX *tls;
  struct sockaddr_storage addrs[CONFIG_LIST_MAX];
  unsigned naddrs, idx;
  link_t *link;
  uv_timer_t deadline;
  Nirc__OperatorRequest *req; /* borrowed */
  Nirc__OperatorReply *reply; /* owned once received: the unpacked envelope */
  Nirc__Envelope *reply_env;
  char errors[1024]; /* why each controller failed */
  int done;
  int exit_code;
  int json;
  uint64_t wait_ms; /* how long the answer may take once connected */
} ctl_t;

static void ctl_try_next(ctl_t *c);

static void ctl_note(ctl_t *c, const char *addr, const char *why) {
  size_t used = strlen(c->errors);
  snprintf(c->errors + used, sizeof c->errors - used, "%s  %s: %s", used ? "\n" : "", addr, why);
}

static void ctl_on_open(link_t *l) {
  ctl_t *c = link_data(l);
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REQUEST;
  env.operator_request = c->req;
  link_send(l, &env);
}

static void ctl_on_message(link_t *l, Nirc__Envelope *env) {
  ctl_t *c = link_data(l);
  if (env->msg_case == NIRC__ENVELOPE__MSG_OPERATOR_REPLY &&
      env->operator_reply->request_id == c->req->request_id) {
    /* The link frees `env` when we return; keep our own copy by
     * re-encoding it (one small reply per nircctl run). */
    size_t n = nirc__envelope__get_packed_size(env);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf) {
      nirc__envelope__pack(env, buf);
      c->reply_env = nirc__envelope__unpack(NULL, n, buf);
      free(buf);
    }
    c->reply = c->reply_env ? c->reply_env->operator_reply : NULL;
    c->done = 1;
    link_close(l, 0, "done");
  } else if (env->msg_case == NIRC__ENVELOPE__MSG_PROGRESS &&
             env->progress->request_id == c->req->request_id) {
    /* Progress is for people; with --json it goes to stderr so stdout
     * stays one JSON document. */
    fprintf(c->json ? stderr : stdout, "  %s\n", env->progress->line ? env->progress->line : "");
    fflush(c->json ? stderr : stdout);
  } else if (env->msg_case == NIRC__ENVELOPE__MSG_ERROR) {
    ctl_note(c, link_peer_addr(l), env->error->message ? env->error->message : "error");
    c->done = 1;
    c->exit_code = EXIT_REFUSED;
    link_close(l, 0, "refused");
  }
}

static void ctl_on_close(link_t *l, int err, const char *why, int was_open) {
  ctl_t *c = link_data(l);
  c->link = NULL;
  if (c->done) {
    uv_close((uv_handle_t *)&c->deadline, NULL);
    return;
  }
  ctl_note(c, c->conf->controllers.item[c->idx], why && *why ? why : nirc_strerror(err));
  c->idx++;
  ctl_try_next(c);
}

static const link_cbs_t ctl_cbs = {ctl_on_open, ctl_on_message, ctl_on_close};

static void ctl_try_next(ctl_t *c) {
  if (c->idx >= c->naddrs) {
    c->exit_code = EXIT_UNREACHABLE;
    c->done = 1;
    uv_close((uv_handle_t *)&c->deadline, NULL);
    return;
  }
  link_opts_t o;
  link_opts_default(&o);
  o.handshake_timeout_ms = (uint32_t)c->conf->timeout_ms;
  /* The controller pings idle links; this only catches a dead one. */
  o.idle_timeout_ms = (uint32_t)(c->conf->timeout_ms > 5000 ? c->conf->timeout_ms : 5000);
  o.expect_kind = PEER_CONTROLLER;
  link_connect(c->loop, (struct sockaddr *)&c->addrs[c->idx], c->tls, &o, &ctl_cbs, c, &c->link);
}

static void ctl_on_deadline(uv_timer_t *t) {
  ctl_t *c = t->data;
  if (c->link) link_close(c->link, NIRC_ETIMEOUT, "no answer in time");
}

/* Runs one request against the first controller that answers. Returns the
 * exit code; on success *reply points into c->reply_env. */
static int ctl_request(ctl_t *c, Nirc__OperatorRequest *req) {
  c->req = req;
  uv_timer_init(c->loop, &c->deadline);
  c->deadline.data = c;
  uv_timer_start(&c->deadline, ctl_on_deadline, c->conf->timeout_ms * (c->naddrs + 1) + c->wait_ms,
                 0);
  ctl_try_next(c);
  uv_run(c->loop, UV_RUN_DEFAULT);
  if (!c->reply && c->exit_code == 0) c->exit_code = EXIT_UNREACHABLE;
  return c->exit_code;
}

/* ---- output ---- */

static int use_colour;

static const char *link_word(Nirc__LinkState s) {
  switch (s) {
  case NIRC__LINK_STATE__LINK_STATE_ONLINE: return "online";
  case NIRC__LINK_STATE__LINK_STATE_STALE: return "stale";
  case NIRC__LINK_STATE__LINK_STATE_OFFLINE: return "offline";
  case NIRC__LINK_STATE__LINK_STATE_NEVER_SEEN: return "never-seen";
  default: return "unknown";
  }
}

static const char *link_colour(Nirc__LinkState s) {
  if (!use_colour) return "";
  switch (s) {
  case NIRC__LINK_STATE__LINK_STATE_ONLINE: return "\033[32m";
  case NIRC__LINK_STATE__LINK_STATE_STALE: return "\033[33m";
  case NIRC__LINK_STATE__LINK_STATE_OFFLINE: return "\033[31m";
  default: return "\033[2m";
  }
}

static void fmt_route(const Nirc__SiteStatus *s, char *buf, size_t len) {
  buf[0] = '\0';
  size_t used = 0;
  for (size_t i = 0; i < s->n_route; i++) {
    const Nirc__RouteShare *r = s->route[i];
    int n;
    if (s->n_route == 1 && r->permille == 1000)
      n = snprintf(buf + used, len - used, "%s", strcmp(r->site, s->slug) == 0 ? "home" : r->site);
    else
      n = snprintf(buf + used, len - used, "%s%s %u‰", i ? ", " : "", r->site, r->permille);
    if (n < 0 || (size_t)n >= len - used) break;
    used += (size_t)n;
  }
}

static void print_status_table(const Nirc__StatusReply *st) {
  size_t online = 0, stale = 0, offline = 0;
  printf("%-12s %-14s %-10s %6s %6s %8s %12s %6s  %s\n", "SITE", "NAME", "LINK", "AGE", "QUEUE",
         "WAIT", "AGENTS in/rdy", "SL", "ROUTE");
  for (size_t i = 0; i < st->n_sites; i++) {
    const Nirc__SiteStatus *s = st->sites[i];
    const Nirc__LoadReport *r = s->last_report;
    char age[16] = "-", queue[16] = "-", wait[16] = "-", agents[24] = "-", sl[16] = "-";
    char route[160];
    if (s->report_age_ms >= 0) {
      if (s->report_age_ms < 100000)
        snprintf(age, sizeof age, "%.1fs", s->report_age_ms / 1000.0);
      else
        snprintf(age, sizeof age, "%llds", (long long)(s->report_age_ms / 1000));
    }
    if (r && r->pbx_unreadable) {
      snprintf(queue, sizeof queue, "PBX?");
      snprintf(wait, sizeof wait, "PBX?");
      snprintf(agents, sizeof agents, "PBX?");
    } else if (r) {
      snprintf(queue, sizeof queue, "%u", r->calls_in_queue);
      snprintf(wait, sizeof wait, "%.0fs", r->longest_wait_ms / 1000.0);
      snprintf(agents, sizeof agents, "%u/%u", r->agents_logged_in, r->agents_ready);
      if (r->calls_offered > 0)
        snprintf(sl, sizeof sl, "%.0f%%", 100.0 * r->answered_within_threshold / r->calls_offered);
    }
    fmt_route(s, route, sizeof route);
    printf("%-12s %-14.14s %s%-10s%s %6s %6s %8s %12s %6s  %s\n", s->slug, s->name_en,
           link_colour(s->link_state), link_word(s->link_state), use_colour ? "\033[0m" : "", age,
           queue, wait, agents, sl, route);
    if (s->link_state == NIRC__LINK_STATE__LINK_STATE_ONLINE)
      online++;
    else if (s->link_state == NIRC__LINK_STATE__LINK_STATE_STALE)
      stale++;
    else
      offline++;
  }
  printf("\n%zu sites: %zu online, %zu stale, %zu offline or never seen  (controller %s, epoch "
         "%llu)\n",
         st->n_sites, online, stale, offline, st->controller_node, (unsigned long long)st->epoch);
}

/* Status as JSON; `flags` chooses indented (one document) or compact (one
 * line per refresh for `watch --json`). */
static void print_status_json_flags(const Nirc__StatusReply *st, size_t flags) {
  json_t *sites = json_array();
  for (size_t i = 0; i < st->n_sites; i++) {
    const Nirc__SiteStatus *s = st->sites[i];
    json_t *route = json_array();
    for (size_t j = 0; j < s->n_route; j++)
      json_array_append_new(route, json_pack("{s:s, s:I}", "site", s->route[j]->site, "permille",
                                             (json_int_t)s->route[j]->permille));
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:s, s:I, s:I, s:s, s:s, s:o, s:o}", "slug",
                          s->slug, "name_en", s->name_en, "name_zh", s->name_zh, "is_hub",
                          s->is_hub, "link", link_word(s->link_state), "state_since_ms",
                          (json_int_t)s->state_since_ms, "report_age_ms",
                          (json_int_t)s->report_age_ms, "peer", s->peer_address, "active_rule",
                          s->active_rule, "route", route, "load", report_to_json(s->last_report));
    json_array_append_new(sites, o);
  }
  json_t *top = json_pack("{s:s, s:I, s:I, s:o}", "controller", st->controller_node, "epoch",
                          (json_int_t)st->epoch, "server_time_ms", (json_int_t)st->server_time_ms,
                          "sites", sites);
  json_dumpf(top, stdout, flags | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(6));
  putchar('\n');
  json_decref(top);
}

static void print_status_json(const Nirc__StatusReply *st) {
  print_status_json_flags(st, JSON_INDENT(2));
}

/* ---- moves, plans, history: output ---- */

static const char *ack_word(Nirc__AckResult r) {
  switch (r) {
  case NIRC__ACK_RESULT__ACK_RESULT_APPLIED: return "applied";
  case NIRC__ACK_RESULT__ACK_RESULT_REJECTED: return "rejected";
  case NIRC__ACK_RESULT__ACK_RESULT_FAILED: return "failed";
  default: return "unknown";
  }
}

static void fmt_shares(Nirc__RouteShare **r, size_t n, const char *self, char *buf, size_t len) {
  buf[0] = '\0';
  size_t used = 0;
  for (size_t i = 0; i < n; i++) {
    int k;
    if (n == 1 && r[i]->permille == 1000)
      k = snprintf(buf, len, "%s", strcmp(r[i]->site, self) == 0 ? "home" : r[i]->site);
    else
      k = snprintf(buf + used, len - used, "%s%s %u‰", i ? ", " : "", r[i]->site, r[i]->permille);
    if (k < 0 || (size_t)k >= len - used) break;
    used += (size_t)k;
  }
}

static void print_plan_human(const Nirc__PlanReply *p) {
  for (size_t i = 0; i < p->n_moves; i++) {
    char r[200];
    fmt_shares(p->moves[i]->route, p->moves[i]->n_route, p->moves[i]->site, r, sizeof r);
    printf("  move  %-12s -> %-28s %s\n", p->moves[i]->site, r, p->moves[i]->reason);
  }
  for (size_t i = 0; i < p->n_capacity; i++) {
    const Nirc__CapacityPrediction *c = p->capacity[i];
    char asa[32];
    if (c->stable_after)
      snprintf(asa, sizeof asa, "ASA %.1fs", c->asa_after_s);
    else
      snprintf(asa, sizeof asa, "UNSTABLE");
    printf("  hub   %-12s load %.1f -> %.1f Erl on %u agents: SL(%.0fs) %.0f%% -> %.0f%%, %s, "
           "occupancy %.0f%%; needs %u agents for %.0f%%%s\n",
           c->hub, c->traffic_before_erl, c->traffic_after_erl, c->agents, c->sl_threshold_s,
           100 * c->sl_before, 100 * c->sl_after, asa, 100 * c->occupancy_after, c->agents_needed,
           100 * c->sl_target, c->refused ? "  [REFUSED]" : "");
  }
  for (size_t i = 0; i < p->n_alarms; i++)
    printf("  alarm %s\n", p->alarms[i]);
}

static json_t *shares_json(Nirc__RouteShare **r, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(
        a, json_pack("{s:s, s:I}", "site", r[i]->site, "permille", (json_int_t)r[i]->permille));
  return a;
}

static json_t *plan_json(const Nirc__PlanReply *p) {
  if (!p) return json_null();
  json_t *moves = json_array(), *cap = json_array(), *alarms = json_array();
  for (size_t i = 0; i < p->n_moves; i++)
    json_array_append_new(moves,
                          json_pack("{s:s, s:o, s:s, s:I}", "site", p->moves[i]->site, "route",
                                    shares_json(p->moves[i]->route, p->moves[i]->n_route), "reason",
                                    p->moves[i]->reason, "revert_at_ms",
                                    (json_int_t)p->moves[i]->revert_at_ms));
  for (size_t i = 0; i < p->n_capacity; i++) {
    const Nirc__CapacityPrediction *c = p->capacity[i];
    json_array_append_new(
        cap, json_pack("{s:s, s:f, s:f, s:I, s:f, s:f, s:o, s:f, s:I, s:b, s:b, s:f, s:f}", "hub",
                       c->hub, "traffic_before_erl", c->traffic_before_erl, "traffic_after_erl",
                       c->traffic_after_erl, "agents", (json_int_t)c->agents, "sl_before",
                       c->sl_before, "sl_after", c->sl_after, "asa_after_s",
                       c->stable_after ? json_real(c->asa_after_s) : json_null(), "occupancy_after",
                       c->occupancy_after, "agents_needed", (json_int_t)c->agents_needed,
                       "stable_after", c->stable_after, "refused", c->refused, "sl_target",
                       c->sl_target, "sl_threshold_s", c->sl_threshold_s));
  }
  for (size_t i = 0; i < p->n_alarms; i++)
    json_array_append_new(alarms, json_string(p->alarms[i]));
  return json_pack("{s:o, s:o, s:o, s:b, s:s}", "moves", moves, "capacity", cap, "alarms", alarms,
                   "refused", p->refused, "refusal", p->refusal ? p->refusal : "");
}

static void print_json_line(json_t *j) {
  json_dumpf(j, stdout, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(6));
  putchar('\n');
  json_decref(j);
}

static void print_json(json_t *j) {
  json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(6));
  putchar('\n');
  json_decref(j);
}

/* Refusals carry the plan that explains them: show it. */
static int print_refusal(const Nirc__OperatorReply *rep, int json) {
  const Nirc__PlanReply *plan = NULL;
  if (rep->body_case == NIRC__OPERATOR_REPLY__BODY_MOVE && rep->move) plan = rep->move->plan;
  if (rep->body_case == NIRC__OPERATOR_REPLY__BODY_PLAN) plan = rep->plan;
  const char *why = rep->error && rep->error->message ? rep->error->message : "no reason given";
  if (json) {
    print_json(json_pack("{s:b, s:s, s:o}", "ok", 0, "error", why, "plan", plan_json(plan)));
  } else {
    fprintf(stderr, "nircctl: refused: %s\n", why);
    if (plan) print_plan_human(plan);
  }
  return rep->error && rep->error->code == NIRC__ERROR_CODE__ERROR_CODE_FORBIDDEN ? EXIT_REFUSED
                                                                                  : EXIT_REFUSED;
}

static int print_move(const Nirc__OperatorReply *rep, int json) {
  const Nirc__MoveReply *m = rep->move;
  if (!m) return EXIT_REFUSED;
  int code = m->failed > 0 ? EXIT_PARTIAL : EXIT_DONE;
  if (json) {
    json_t *outs = json_array();
    for (size_t i = 0; i < m->n_outcomes; i++)
      json_array_append_new(
          outs, json_pack("{s:s, s:s, s:s, s:I, s:I}", "site", m->outcomes[i]->site, "result",
                          ack_word(m->outcomes[i]->result), "detail", m->outcomes[i]->detail,
                          "version", (json_int_t)m->outcomes[i]->version, "latency_ms",
                          (json_int_t)m->outcomes[i]->latency_ms));
    json_t *j = json_pack("{s:b, s:I, s:b, s:I, s:I, s:I, s:o, s:o}", "ok", code == EXIT_DONE,
                          "cutover_id", (json_int_t)m->cutover_id, "dry_run", m->dry_run, "applied",
                          (json_int_t)m->applied, "failed", (json_int_t)m->failed, "elapsed_ms",
                          (json_int_t)m->elapsed_ms, "outcomes", outs, "plan", plan_json(m->plan));
    if (rep->error && rep->error->message)
      json_object_set_new(j, "warning", json_string(rep->error->message));
    print_json(j);
    return code;
  }
  if (m->dry_run) {
    printf("dry run: nothing moved\n");
    if (m->plan) print_plan_human(m->plan);
    return EXIT_DONE;
  }
  for (size_t i = 0; i < m->n_outcomes; i++) {
    const Nirc__SiteOutcome *o = m->outcomes[i];
    if (o->result != NIRC__ACK_RESULT__ACK_RESULT_APPLIED)
      printf("  %-12s %s: %s\n", o->site, ack_word(o->result), o->detail);
  }
  if (m->cutover_id) printf("cutover %llu: ", (unsigned long long)m->cutover_id);
  printf("%u applied, %u failed in %lld ms\n", m->applied, m->failed, (long long)m->elapsed_ms);
  if (rep->error && rep->error->message) fprintf(stderr, "warning: %s\n", rep->error->message);
  if (code == EXIT_PARTIAL)
    fprintf(stderr, "nircctl: partially applied: check `nircctl status` and the alarms\n");
  return code;
}

static int print_plan(const Nirc__OperatorReply *rep, int json) {
  const Nirc__PlanReply *p = rep->plan;
  if (!p) return EXIT_REFUSED;
  if (json)
    print_json(plan_json(p));
  else {
    print_plan_human(p);
    if (!p->n_moves && !p->n_capacity) printf("nothing would change\n");
  }
  if (p->refused) {
    if (!json) fprintf(stderr, "nircctl: this move would be refused: %s\n", p->refusal);
    return EXIT_REFUSED;
  }
  return EXIT_DONE;
}

static int print_history(const Nirc__OperatorReply *rep, int json) {
  const Nirc__HistoryReply *h = rep->history;
  if (!h) return EXIT_REFUSED;
  if (json) {
    json_t *a = json_array();
    for (size_t i = 0; i < h->n_entries; i++) {
      const Nirc__AuditEntry *e = h->entries[i];
      json_t *detail = json_loads(e->detail_json, 0, NULL);
      json_array_append_new(a, json_pack("{s:I, s:I, s:s, s:s, s:s, s:o}", "id", (json_int_t)e->id,
                                         "at_ms", (json_int_t)e->at_ms, "actor", e->actor, "action",
                                         e->action, "target", e->target, "detail",
                                         detail ? detail : json_null()));
    }
    print_json(json_pack("{s:o}", "entries", a));
    return EXIT_DONE;
  }
  printf("%-24s %-22s %-16s %-24s %s\n", "TIME (UTC)", "ACTOR", "ACTION", "TARGET", "DETAIL");
  for (size_t i = 0; i < h->n_entries; i++) {
    const Nirc__AuditEntry *e = h->entries[i];
    char when[40];
    clock_format_iso(e->at_ms, 0, when, sizeof when);
    json_t *d = json_loads(e->detail_json, 0, NULL);
    const char *reason = d ? json_string_value(json_object_get(d, "reason")) : NULL;
    printf("%-24s %-22.22s %-16s %-24.24s %s\n", when, e->actor, e->action, e->target,
           reason ? reason : "");
    json_decref(d);
  }
  if (h->n_entries == 0) printf("(no audit records match)\n");
  return EXIT_DONE;
}

/* ---- command line ---- */

#define CTL_MAX_LIST 64

/* Storage for what the builders point the request at. */
typedef struct {
  char *sources[CTL_MAX_LIST], *hubs[CTL_MAX_LIST];
  char listbuf[2][4096];
  Nirc__StatusRequest status;
  Nirc__CutoverRequest cutover;
  Nirc__RestoreRequest restore;
  Nirc__PlanRequest plan;
  Nirc__HistoryRequest history;
  Nirc__ScheduleRequest schedule;
  Nirc__ScheduleSpec sched_spec;
  Nirc__OverflowRequest overflow;
  Nirc__OverflowSpec ovf_spec;
  char *exceptions[64];
  char exbuf[2048];
  uint32_t share; /* --share, permille */
} ctl_args_t;

typedef struct {
  const char *name;
  const char *summary;
  const char *help; /* full help with examples */
  int (*build)(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a);
  int (*print)(const Nirc__OperatorReply *rep, int json);
  uint64_t wait_ms; /* how long the answer may take */
} ctl_cmd_t;

/* Splits "a,b,c" into `out` (pointers into buf). Returns the count or -1. */
static int split_list(const char *csv, char *buf, size_t len, char **out, const char *what) {
  if (nirc_strlcpy(buf, csv, len) >= len) {
    fprintf(stderr, "nircctl: %s list too long\n", what);
    return -1;
  }
  int n = 0;
  char *save = NULL;
  for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    while (*t == ' ')
      t++;
    if (!nirc_slug_valid(t)) {
      fprintf(stderr, "nircctl: '%s' is not a site slug (lowercase, e.g. hubei)\n", t);
      return -1;
    }
    if (n == CTL_MAX_LIST) {
      fprintf(stderr, "nircctl: at most %d %s\n", CTL_MAX_LIST, what);
      return -1;
    }
    out[n++] = t;
  }
  if (n == 0) fprintf(stderr, "nircctl: no %s given\n", what);
  return n ? n : -1;
}

static uint64_t watch_interval_ms = 2000;

static int build_status(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a);

static int build_watch(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  if (argc == 3 && strcmp(argv[1], "--interval") == 0) {
    if (nirc_parse_duration_ms(argv[2], &watch_interval_ms) != 0 || watch_interval_ms < 200) {
      fprintf(stderr, "nircctl: --interval '%s': a duration of at least 200ms\n", argv[2]);
      return EXIT_USAGE;
    }
  } else if (argc != 1) {
    fprintf(stderr, "nircctl: usage: watch [--interval DURATION]\n");
    return EXIT_USAGE;
  }
  char *none[] = {argv[0]};
  return build_status(1, none, req, a);
}

static int build_status(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  argc--; /* skip the command name */
  argv++;
  if (argc > 1) {
    fprintf(stderr, "nircctl: status takes at most one site\n");
    return EXIT_USAGE;
  }
  if (argc == 1 && !nirc_slug_valid(argv[0])) {
    fprintf(stderr, "nircctl: '%s' is not a site slug (lowercase, e.g. hubei)\n", argv[0]);
    return EXIT_USAGE;
  }
  nirc__status_request__init(&a->status);
  a->status.site = argc == 1 ? argv[0] : "";
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_STATUS;
  req->status = &a->status;
  return 0;
}

static int build_site(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  if (argc != 2) {
    fprintf(stderr, "nircctl: usage: site SLUG\n");
    return EXIT_USAGE;
  }
  return build_status(argc, argv, req, a);
}

/* One site, every figure on its own line: for the 3 a.m. question "what is
 * hubei doing right now?". */
static int print_site(const Nirc__OperatorReply *rep, int json) {
  const Nirc__StatusReply *st = rep->status;
  if (!st || st->n_sites != 1) return EXIT_REFUSED;
  if (json) {
    print_status_json(st);
    return EXIT_DONE;
  }
  const Nirc__SiteStatus *s = st->sites[0];
  const Nirc__LoadReport *r = s->last_report;
  char route[200];
  fmt_route(s, route, sizeof route);
  printf("%s — %s %s%s\n", s->slug, s->name_en, s->name_zh, s->is_hub ? " (hub)" : "");
  printf("  link          %s%s%s (since %lld s)\n", link_colour(s->link_state),
         link_word(s->link_state), use_colour ? "\033[0m" : "",
         s->state_since_ms ? (long long)((clock_real_ms() - s->state_since_ms) / 1000) : 0LL);
  printf("  peer          %s\n", s->peer_address && *s->peer_address ? s->peer_address : "-");
  printf("  route         %s\n", route);
  printf("  rule          %s\n", s->active_rule);
  if (!r) {
    printf("  load          no report yet\n");
    return EXIT_DONE;
  }
  if (r->pbx_unreadable) {
    printf("  load          PBX UNREADABLE: %s\n", r->pbx_error);
    return EXIT_DONE;
  }
  printf("  report age    %.1f s (interval %.0f s business time)\n", s->report_age_ms / 1000.0,
         r->interval_ms / 1000.0);
  printf("  calls         %u offered, %u answered, %u abandoned in the interval\n",
         r->calls_offered, r->calls_answered, r->calls_abandoned);
  printf("  from others   %u   sent away %u\n", r->calls_from_other_sites, r->calls_routed_away);
  printf("  queue         %u waiting, longest %.0f s\n", r->calls_in_queue,
         r->longest_wait_ms / 1000.0);
  printf("  agents        %u logged in: %u ready, %u talking, %u not ready\n", r->agents_logged_in,
         r->agents_ready, r->agents_talking, r->agents_not_ready);
  printf("  handle time   %.0f s average\n", r->aht_ms / 1000.0);
  if (r->calls_offered)
    printf("  service level %.0f%% within %u s\n",
           100.0 * r->answered_within_threshold / r->calls_offered, r->sl_threshold_s);
  return EXIT_DONE;
}

static const char *map_output; /* -o FILE for `map`; NULL: stdout */

static int build_map(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  if (argc == 3 && strcmp(argv[1], "-o") == 0)
    map_output = argv[2];
  else if (argc != 1) {
    fprintf(stderr, "nircctl: usage: map [-o FILE.svg]\n");
    return EXIT_USAGE;
  }
  char *none[] = {argv[0]};
  return build_status(1, none, req, a);
}

/* The routing map as SVG, drawn here from the status reply with the same
 * renderer as the controller's status page. */
static int print_map(const Nirc__OperatorReply *rep, int json) {
  const Nirc__StatusReply *st = rep->status;
  if (!st) return EXIT_REFUSED;
  map_site_t *ms = calloc(st->n_sites + 1, sizeof *ms);
  map_move_t *mv = calloc(st->n_sites * 8 + 1, sizeof *mv);
  size_t nm = 0;
  if (!ms || !mv) {
    free(ms);
    free(mv);
    return EXIT_REFUSED;
  }
  for (size_t i = 0; i < st->n_sites; i++) {
    const Nirc__SiteStatus *s = st->sites[i];
    const Nirc__LoadReport *r = s->last_report;
    ms[i] = (map_site_t){
        .slug = s->slug,
        .name_en = s->name_en,
        .name_zh = s->name_zh,
        .lat = s->lat,
        .lon = s->lon,
        .link = link_word(s->link_state),
        .occupancy = r && r->agents_logged_in && !r->pbx_unreadable
                         ? (double)r->agents_talking / r->agents_logged_in
                         : -1,
        .in_queue = r && !r->pbx_unreadable ? r->calls_in_queue : 0,
        .is_hub = s->is_hub,
    };
    for (size_t k = 0; k < s->n_route && nm < st->n_sites * 8; k++)
      if (strcmp(s->route[k]->site, s->slug) != 0)
        mv[nm++] = (map_move_t){s->slug, s->route[k]->site, s->route[k]->permille};
  }
  char when[40], title[160];
  clock_format_iso(st->server_time_ms, 480, when, sizeof when);
  snprintf(title, sizeof title, "NIRC routing — %s (controller %s)", when, st->controller_node);
  char *svg = map_render_svg(ms, st->n_sites, mv, nm, title);
  free(ms);
  free(mv);
  if (!svg) {
    fprintf(stderr, "nircctl: cannot draw the map (out of memory)\n");
    return EXIT_REFUSED;
  }
  int rc = EXIT_DONE;
  if (json && !map_output) {
    print_json(json_pack("{s:s}", "svg", svg));
    free(svg);
    return EXIT_DONE;
  }
  FILE *f = map_output ? fopen(map_output, "w") : stdout;
  if (!f || fputs(svg, f) == EOF) {
    fprintf(stderr, "nircctl: cannot write %s: %s\n", map_output ? map_output : "stdout",
            strerror(errno));
    rc = EXIT_USAGE;
  }
  if (f && f != stdout) fclose(f);
  if (rc == EXIT_DONE && map_output) {
    if (json)
      print_json(json_pack("{s:s}", "written", map_output));
    else
      printf("map written to %s\n", map_output);
  }
  free(svg);
  return rc;
}

static int print_status(const Nirc__OperatorReply *rep, int json) {
  if (!rep->status) return EXIT_REFUSED;
  if (json)
    print_status_json(rep->status);
  else
    print_status_table(rep->status);
  return EXIT_DONE;
}

static int parse_uint(const char *what, const char *v, uint32_t max, uint32_t *out);

/* Parses the options shared by cutover and plan. */
static int parse_move(int argc, char **argv, ctl_args_t *a, int *nsrc, int *nhub,
                      const char **reason, const char **dur, const char **until, int *dry,
                      int *force, const char **schedule) {
  static const struct option o[] = {
      {"to", required_argument, NULL, 't'},
      {"reason", required_argument, NULL, 'r'},
      {"for", required_argument, NULL, 'f'},
      {"until", required_argument, NULL, 'u'},
      {"dry-run", no_argument, NULL, 'n'},
      {"force", no_argument, NULL, 'F'},
      {"schedule", required_argument, NULL, 's'},
      {"share", required_argument, NULL, 'p'},
      {NULL, 0, NULL, 0},
  };
  const char *to = NULL;
  int ch;
  optind = 0;
  /* Permuting getopt: options may come before or after the sources. */
  while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
    switch (ch) {
    case 't': to = optarg; break;
    case 'r': *reason = optarg; break;
    case 'f': *dur = optarg; break;
    case 'u': *until = optarg; break;
    case 'n': *dry = 1; break;
    case 'F': *force = 1; break;
    case 's': *schedule = optarg; break;
    case 'p':
      /* The range (1-1000) is the controller's to refuse, with the reason;
       * here only "is it a number". */
      if (parse_uint("--share (permille)", optarg, 1000000, &a->share) || a->share == 0) {
        fprintf(stderr, "nircctl: --share must be a number of permille, 1-1000\n");
        return EXIT_USAGE;
      }
      break;
    default: return EXIT_USAGE;
    }
  }
  /* Options may come after the sources too: collect the non-options. */
  int rest = argc - optind;
  if (rest > 1) {
    fprintf(stderr, "nircctl: give the sources as one comma-separated list\n");
    return EXIT_USAGE;
  }
  *nsrc = 0;
  if (rest == 1 && (*nsrc = split_list(argv[optind], a->listbuf[0], sizeof a->listbuf[0],
                                       a->sources, "sources")) < 0)
    return EXIT_USAGE;
  *nhub = 0;
  if (to && (*nhub = split_list(to, a->listbuf[1], sizeof a->listbuf[1], a->hubs, "hubs")) < 0)
    return EXIT_USAGE;
  return 0;
}

static int build_cutover(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  int nsrc, nhub, dry = 0, force = 0;
  const char *reason = NULL, *dur = NULL, *until = NULL, *schedule = NULL;
  if (parse_move(argc, argv, a, &nsrc, &nhub, &reason, &dur, &until, &dry, &force, &schedule))
    return EXIT_USAGE;
  if (nsrc == 0 || nhub == 0 || !reason || !*reason || schedule) {
    fprintf(stderr, "nircctl: usage: cutover SRC[,SRC...] --to HUB[,HUB...] --reason TEXT "
                    "[--for DURATION|--until TIME] [--dry-run] [--force]\n");
    return EXIT_USAGE;
  }
  if (dur && until) {
    fprintf(stderr, "nircctl: give --for or --until, not both\n");
    return EXIT_USAGE;
  }
  nirc__cutover_request__init(&a->cutover);
  if (dur) {
    uint64_t ms;
    if (nirc_parse_duration_ms(dur, &ms) != 0 || ms == 0) {
      fprintf(stderr, "nircctl: --for '%s': expected a duration such as 90m, 6h\n", dur);
      return EXIT_USAGE;
    }
    a->cutover.expires_in_ms = (int64_t)ms;
  }
  if (until) {
    int64_t ms;
    if (clock_parse_iso(until, &ms) != 0) {
      fprintf(stderr, "nircctl: --until '%s': expected ISO 8601, e.g. 2020-01-23T18:00:00+08:00\n",
              until);
      return EXIT_USAGE;
    }
    a->cutover.expires_ms = ms;
  }
  a->cutover.sources = a->sources;
  a->cutover.n_sources = (size_t)nsrc;
  a->cutover.hubs = a->hubs;
  a->cutover.n_hubs = (size_t)nhub;
  a->cutover.reason = (char *)reason;
  a->cutover.dry_run = dry;
  a->cutover.force = force;
  a->cutover.share_permille = a->share;
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_CUTOVER;
  req->cutover = &a->cutover;
  return 0;
}

static int build_restore(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  static const struct option o[] = {{"cutover", required_argument, NULL, 'c'},
                                    {"reason", required_argument, NULL, 'r'},
                                    {NULL, 0, NULL, 0}};
  const char *id = NULL, *reason = "";
  int ch;
  optind = 0;
  while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
    if (ch == 'c')
      id = optarg;
    else if (ch == 'r')
      reason = optarg;
    else
      return EXIT_USAGE;
  }
  nirc__restore_request__init(&a->restore);
  int n = 0;
  if (argc - optind > 1) {
    fprintf(stderr, "nircctl: give the sources as one comma-separated list\n");
    return EXIT_USAGE;
  }
  if (optind < argc && (n = split_list(argv[optind], a->listbuf[0], sizeof a->listbuf[0],
                                       a->sources, "sources")) < 0)
    return EXIT_USAGE;
  if ((n == 0) == (id == NULL)) {
    fprintf(stderr, "nircctl: usage: restore SRC[,SRC...] | restore --cutover ID\n");
    return EXIT_USAGE;
  }
  if (id) {
    char *end;
    a->restore.cutover_id = strtoull(id, &end, 10);
    if (!*id || *end || a->restore.cutover_id == 0) {
      fprintf(stderr, "nircctl: --cutover '%s' is not a cutover id\n", id);
      return EXIT_USAGE;
    }
  }
  a->restore.sources = a->sources;
  a->restore.n_sources = (size_t)n;
  a->restore.reason = (char *)reason;
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_RESTORE;
  req->restore = &a->restore;
  return 0;
}

static int build_plan(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  int nsrc, nhub, dry = 0, force = 0;
  const char *reason = NULL, *dur = NULL, *until = NULL, *schedule = NULL;
  if (parse_move(argc, argv, a, &nsrc, &nhub, &reason, &dur, &until, &dry, &force, &schedule))
    return EXIT_USAGE;
  nirc__plan_request__init(&a->plan);
  if (schedule && (nsrc || nhub)) {
    fprintf(stderr, "nircctl: plan either a move (SRC --to HUB) or --schedule NAME\n");
    return EXIT_USAGE;
  }
  if (!schedule && (nsrc == 0 || nhub == 0)) {
    fprintf(stderr, "nircctl: usage: plan SRC[,SRC...] --to HUB[,HUB...] | plan --schedule NAME\n");
    return EXIT_USAGE;
  }
  a->plan.sources = a->sources;
  a->plan.n_sources = (size_t)nsrc;
  a->plan.hubs = a->hubs;
  a->plan.n_hubs = (size_t)nhub;
  a->plan.schedule_name = (char *)(schedule ? schedule : "");
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_PLAN;
  req->plan = &a->plan;
  return 0;
}

static int build_history(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  static const struct option o[] = {
      {"site", required_argument, NULL, 's'},   {"actor", required_argument, NULL, 'a'},
      {"action", required_argument, NULL, 'x'}, {"since", required_argument, NULL, 'S'},
      {"limit", required_argument, NULL, 'l'},  {NULL, 0, NULL, 0},
  };
  nirc__history_request__init(&a->history);
  a->history.site = a->history.actor = a->history.action = "";
  int ch;
  optind = 0;
  while ((ch = getopt_long(argc, argv, "+", o, NULL)) != -1) {
    switch (ch) {
    case 's': a->history.site = optarg; break;
    case 'a': a->history.actor = optarg; break;
    case 'x': a->history.action = optarg; break;
    case 'S': {
      uint64_t ms;
      if (nirc_parse_duration_ms(optarg, &ms) != 0) {
        fprintf(stderr, "nircctl: --since '%s': expected a duration such as 2h or 7d\n", optarg);
        return EXIT_USAGE;
      }
      a->history.since_ms = clock_real_ms() - (int64_t)ms;
      break;
    }
    case 'l': {
      char *end;
      unsigned long v = strtoul(optarg, &end, 10);
      if (!*optarg || *end || v == 0 || v > 500) {
        fprintf(stderr, "nircctl: --limit must be 1-500\n");
        return EXIT_USAGE;
      }
      a->history.limit = (uint32_t)v;
      break;
    }
    default: return EXIT_USAGE;
    }
  }
  if (optind != argc) {
    fprintf(stderr, "nircctl: history takes only options (see nircctl history --help)\n");
    return EXIT_USAGE;
  }
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_HISTORY;
  req->history = &a->history;
  return 0;
}

static int rule_op(const char *w, Nirc__RuleOp *op) {
  static const struct {
    const char *w;
    Nirc__RuleOp op;
  } ops[] = {{"list", NIRC__RULE_OP__RULE_OP_LIST},
             {"add", NIRC__RULE_OP__RULE_OP_ADD},
             {"rm", NIRC__RULE_OP__RULE_OP_REMOVE},
             {"enable", NIRC__RULE_OP__RULE_OP_ENABLE},
             {"disable", NIRC__RULE_OP__RULE_OP_DISABLE}};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (strcmp(ops[i].w, w) == 0) {
      *op = ops[i].op;
      return 0;
    }
  return -1;
}

static int parse_uint(const char *what, const char *v, uint32_t max, uint32_t *out) {
  char *end;
  unsigned long x = strtoul(v, &end, 10);
  if (!*v || *end || x > max) {
    fprintf(stderr, "nircctl: %s must be a whole number up to %u\n", what, max);
    return -1;
  }
  *out = (uint32_t)x;
  return 0;
}

static int parse_secs(const char *what, const char *v, uint32_t *out) {
  uint64_t ms;
  if (nirc_parse_duration_ms(v, &ms) != 0 || ms > 86400000ull) {
    fprintf(stderr, "nircctl: %s: expected a duration such as 30s or 5m\n", what);
    return -1;
  }
  *out = (uint32_t)(ms / 1000);
  return 0;
}

static int parse_frac(const char *what, const char *v, double *out) {
  char *end;
  double x = strtod(v, &end);
  if (!*v || *end || !isfinite(x) || x <= 0 || x > 1) {
    fprintf(stderr, "nircctl: %s must be a fraction in (0, 1], e.g. 0.8\n", what);
    return -1;
  }
  *out = x;
  return 0;
}

static int build_schedule(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  nirc__schedule_request__init(&a->schedule);
  if (argc < 2 || rule_op(argv[1], &a->schedule.op) != 0) {
    fprintf(stderr, "nircctl: usage: schedule list|add|rm|enable|disable ... (see --help)\n");
    return EXIT_USAGE;
  }
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_SCHEDULE;
  req->schedule = &a->schedule;
  if (a->schedule.op == NIRC__RULE_OP__RULE_OP_LIST) return argc == 2 ? 0 : EXIT_USAGE;
  if (argc < 3) {
    fprintf(stderr, "nircctl: schedule %s needs a NAME\n", argv[1]);
    return EXIT_USAGE;
  }
  a->schedule.name = argv[2];
  if (a->schedule.op != NIRC__RULE_OP__RULE_OP_ADD) return argc == 3 ? 0 : EXIT_USAGE;
  static const struct option o[] = {
      {"sources", required_argument, NULL, 's'},
      {"to", required_argument, NULL, 't'},
      {"start", required_argument, NULL, 'b'},
      {"end", required_argument, NULL, 'e'},
      {"days", required_argument, NULL, 'd'},
      {"tz", required_argument, NULL, 'z'},
      {"except", required_argument, NULL, 'x'},
      {"wave-size", required_argument, NULL, 'w'},
      {NULL, 0, NULL, 0},
  };
  Nirc__ScheduleSpec *sp = &a->sched_spec;
  nirc__schedule_spec__init(sp);
  sp->name = argv[2];
  sp->days = "daily";
  sp->tz = "Asia/Shanghai";
  const char *srcs = NULL, *to = NULL;
  int ch, n;
  /* getopt over "NAME --opt ...": NAME plays argv[0]; optind 0 resets GNU
   * getopt's state after the global options were parsed. */
  argc -= 2;
  argv += 2;
  optind = 0;
  while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
    switch (ch) {
    case 's': srcs = optarg; break;
    case 't': to = optarg; break;
    case 'b': sp->start = optarg; break;
    case 'e': sp->end = optarg; break;
    case 'd': sp->days = optarg; break;
    case 'z': sp->tz = optarg; break;
    case 'x': {
      if (nirc_strlcpy(a->exbuf, optarg, sizeof a->exbuf) >= sizeof a->exbuf) return EXIT_USAGE;
      char *save = NULL;
      for (char *t = strtok_r(a->exbuf, ",", &save); t && sp->n_exceptions < 64;
           t = strtok_r(NULL, ",", &save))
        a->exceptions[sp->n_exceptions++] = t;
      sp->exceptions = a->exceptions;
      break;
    }
    case 'w':
      if (parse_uint("--wave-size", optarg, 100, &sp->wave_size)) return EXIT_USAGE;
      break;
    default: return EXIT_USAGE;
    }
  }
  if (optind != argc || !srcs || !to || !sp->start || !sp->end) {
    fprintf(stderr, "nircctl: usage: schedule add NAME --sources A,B --to HUB[,HUB] --start HH:MM "
                    "--end HH:MM [--days daily] [--tz ZONE] [--except DATES] [--wave-size N]\n");
    return EXIT_USAGE;
  }
  if ((n = split_list(srcs, a->listbuf[0], sizeof a->listbuf[0], a->sources, "sources")) < 0)
    return EXIT_USAGE;
  sp->sources = a->sources;
  sp->n_sources = (size_t)n;
  if ((n = split_list(to, a->listbuf[1], sizeof a->listbuf[1], a->hubs, "hubs")) < 0)
    return EXIT_USAGE;
  sp->hubs = a->hubs;
  sp->n_hubs = (size_t)n;
  a->schedule.spec = sp;
  return 0;
}

static int build_overflow(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  nirc__overflow_request__init(&a->overflow);
  if (argc < 2 || rule_op(argv[1], &a->overflow.op) != 0 ||
      a->overflow.op == NIRC__RULE_OP__RULE_OP_ENABLE ||
      a->overflow.op == NIRC__RULE_OP__RULE_OP_DISABLE) {
    fprintf(stderr, "nircctl: usage: overflow list|add|rm ... (see --help)\n");
    return EXIT_USAGE;
  }
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_OVERFLOW;
  req->overflow = &a->overflow;
  if (a->overflow.op == NIRC__RULE_OP__RULE_OP_LIST) return argc == 2 ? 0 : EXIT_USAGE;
  if (argc < 3) {
    fprintf(stderr, "nircctl: overflow %s needs a NAME\n", argv[1]);
    return EXIT_USAGE;
  }
  a->overflow.name = argv[2];
  if (a->overflow.op == NIRC__RULE_OP__RULE_OP_REMOVE) return argc == 3 ? 0 : EXIT_USAGE;
  static const struct option o[] = {
      {"source", required_argument, NULL, 's'},
      {"to", required_argument, NULL, 't'},
      {"trigger-wait", required_argument, NULL, 'W'},
      {"release-wait", required_argument, NULL, 'w'},
      {"trigger-queue", required_argument, NULL, 'Q'},
      {"release-queue", required_argument, NULL, 'q'},
      {"trigger-sl", required_argument, NULL, 'L'},
      {"release-sl", required_argument, NULL, 'l'},
      {"cap", required_argument, NULL, 'c'},
      {"hold", required_argument, NULL, 'h'},
      {"margin", required_argument, NULL, 'm'},
      {NULL, 0, NULL, 0},
  };
  Nirc__OverflowSpec *sp = &a->ovf_spec;
  nirc__overflow_spec__init(sp);
  sp->name = argv[2];
  sp->min_hold_s = 300;
  const char *to = NULL;
  int ch, n;
  argc -= 2; /* as in build_schedule */
  argv += 2;
  optind = 0;
  while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
    int bad = 0;
    switch (ch) {
    case 's': sp->source = optarg; break;
    case 't': to = optarg; break;
    case 'W': bad = parse_secs("--trigger-wait", optarg, &sp->trigger_wait_s); break;
    case 'w': bad = parse_secs("--release-wait", optarg, &sp->release_wait_s); break;
    case 'Q': bad = parse_uint("--trigger-queue", optarg, 1000000, &sp->trigger_queue); break;
    case 'q': bad = parse_uint("--release-queue", optarg, 1000000, &sp->release_queue); break;
    case 'L': bad = parse_frac("--trigger-sl", optarg, &sp->trigger_sl); break;
    case 'l': bad = parse_frac("--release-sl", optarg, &sp->release_sl); break;
    case 'c': bad = parse_uint("--cap (permille)", optarg, 1000, &sp->share_cap_permille); break;
    case 'h': bad = parse_secs("--hold", optarg, &sp->min_hold_s); break;
    case 'm': bad = parse_secs("--margin", optarg, &sp->margin_s); break;
    default: return EXIT_USAGE;
    }
    if (bad) return EXIT_USAGE;
  }
  if (optind != argc || !sp->source || !to || !sp->share_cap_permille) {
    fprintf(stderr, "nircctl: usage: overflow add NAME --source SITE --to HUB[,HUB] --cap PERMILLE "
                    "[--trigger-wait D --release-wait D] [--trigger-queue N --release-queue N] "
                    "[--trigger-sl F --release-sl F] [--hold D] [--margin D]\n");
    return EXIT_USAGE;
  }
  if ((n = split_list(to, a->listbuf[1], sizeof a->listbuf[1], a->hubs, "hubs")) < 0)
    return EXIT_USAGE;
  sp->hubs = a->hubs;
  sp->n_hubs = (size_t)n;
  a->overflow.spec = sp;
  return 0;
}

static int print_schedules(const Nirc__OperatorReply *rep, int json) {
  const Nirc__ScheduleReply *r = rep->schedule;
  if (!r) return EXIT_REFUSED;
  if (json) {
    json_t *arr = json_array();
    for (size_t i = 0; i < r->n_schedules; i++) {
      const Nirc__ScheduleSpec *s = r->schedules[i];
      json_t *src = json_array(), *hub = json_array(), *ex = json_array();
      for (size_t k = 0; k < s->n_sources; k++)
        json_array_append_new(src, json_string(s->sources[k]));
      for (size_t k = 0; k < s->n_hubs; k++)
        json_array_append_new(hub, json_string(s->hubs[k]));
      for (size_t k = 0; k < s->n_exceptions; k++)
        json_array_append_new(ex, json_string(s->exceptions[k]));
      json_array_append_new(arr,
                            json_pack("{s:I, s:s, s:o, s:o, s:s, s:s, s:s, s:s, s:o, s:I, s:b, "
                                      "s:b, s:I}",
                                      "id", (json_int_t)s->id, "name", s->name, "sources", src,
                                      "hubs", hub, "start", s->start, "end", s->end, "days",
                                      s->days, "tz", s->tz, "exceptions", ex, "wave_size",
                                      (json_int_t)s->wave_size, "enabled", s->enabled, "in_force",
                                      s->in_force, "next_start_ms", (json_int_t)s->next_start_ms));
    }
    print_json(json_pack("{s:o}", "schedules", arr));
    return EXIT_DONE;
  }
  printf("%-14s %-11s %-14s %-6s %-14s %-5s %-8s %-9s %s\n", "NAME", "WINDOW", "DAYS", "WAVE", "TZ",
         "ON", "IN FORCE", "SOURCES", "HUBS");
  for (size_t i = 0; i < r->n_schedules; i++) {
    const Nirc__ScheduleSpec *s = r->schedules[i];
    char win[16];
    snprintf(win, sizeof win, "%s-%s", s->start, s->end);
    printf("%-14s %-11s %-14s %-6u %-14s %-5s %-8s %-9zu", s->name, win, s->days, s->wave_size,
           s->tz, s->enabled ? "yes" : "no", s->in_force ? "YES" : "no", s->n_sources);
    for (size_t k = 0; k < s->n_hubs; k++)
      printf("%s%s", k ? "," : "", s->hubs[k]);
    printf("\n");
  }
  if (r->n_schedules == 0) printf("(no schedules)\n");
  return EXIT_DONE;
}

static int print_overflows(const Nirc__OperatorReply *rep, int json) {
  const Nirc__OverflowReply *r = rep->overflow;
  if (!r) return EXIT_REFUSED;
  if (json) {
    json_t *arr = json_array();
    for (size_t i = 0; i < r->n_rules; i++) {
      const Nirc__OverflowSpec *o = r->rules[i];
      json_t *hub = json_array();
      for (size_t k = 0; k < o->n_hubs; k++)
        json_array_append_new(hub, json_string(o->hubs[k]));
      json_array_append_new(
          arr, json_pack("{s:I, s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:I, s:b, "
                         "s:b}",
                         "id", (json_int_t)o->id, "name", o->name, "source", o->source, "hubs", hub,
                         "trigger_wait_s", (json_int_t)o->trigger_wait_s, "release_wait_s",
                         (json_int_t)o->release_wait_s, "trigger_queue",
                         (json_int_t)o->trigger_queue, "release_queue",
                         (json_int_t)o->release_queue, "trigger_sl", o->trigger_sl, "release_sl",
                         o->release_sl, "share_cap_permille", (json_int_t)o->share_cap_permille,
                         "min_hold_s", (json_int_t)o->min_hold_s, "margin_s",
                         (json_int_t)o->margin_s, "enabled", o->enabled, "engaged", o->engaged));
    }
    print_json(json_pack("{s:o}", "rules", arr));
    return EXIT_DONE;
  }
  printf("%-16s %-10s %-6s %-12s %-12s %-12s %-6s %s\n", "NAME", "SOURCE", "CAP", "WAIT trg/rel",
         "QUEUE trg/rel", "SL trg/rel", "HOLD", "ENGAGED  HUBS");
  for (size_t i = 0; i < r->n_rules; i++) {
    const Nirc__OverflowSpec *o = r->rules[i];
    char w[24], q[24], sl[24];
    snprintf(w, sizeof w, "%us/%us", o->trigger_wait_s, o->release_wait_s);
    snprintf(q, sizeof q, "%u/%u", o->trigger_queue, o->release_queue);
    snprintf(sl, sizeof sl, "%.2f/%.2f", o->trigger_sl, o->release_sl);
    printf("%-16s %-10s %-6u %-12s %-12s %-12s %-6u %-8s ", o->name, o->source,
           o->share_cap_permille, w, q, sl, o->min_hold_s, o->engaged ? "YES" : "no");
    for (size_t k = 0; k < o->n_hubs; k++)
      printf("%s%s", k ? "," : "", o->hubs[k]);
    printf("\n");
  }
  if (r->n_rules == 0) printf("(no overflow rules)\n");
  return EXIT_DONE;
}

static const ctl_cmd_t ctl_cmds[] = {
    {"site", "one site in detail: link, route, rule, queue, agents, SL",
     "usage: nircctl site SLUG\n\n"
     "Every figure the controller has for one site, one per line.\n\n"
     "Examples:\n  nircctl site hubei\n  nircctl --json site shaanxi\n",
     build_site, print_site, 0},
    {"map", "the routing map as SVG: sites, moves with shares, load and freshness",
     "usage: nircctl map [-o FILE.svg]\n\n"
     "Draws the network as the controller sees it now: sites placed by geography,\n"
     "arrows for current moves with their shares, colours for load and freshness.\n"
     "Writes SVG to stdout, or to FILE with -o. The controller's status page shows\n"
     "the same map live.\n\n"
     "Examples:\n  nircctl map -o network.svg\n  nircctl map > now.svg\n",
     build_map, print_map, 0},
    {"watch", "live view of status, refreshed in place (Ctrl-C ends)",
     "usage: nircctl watch [--interval DURATION]\n\n"
     "The status table, redrawn every interval (default 2s) until Ctrl-C. On a\n"
     "terminal the screen is redrawn in place; otherwise each refresh is appended.\n\n"
     "Examples:\n  nircctl watch\n  nircctl watch --interval 5s\n",
     build_watch, print_status, 0},
    {"status", "every site: link, freshness, queue, wait, agents, SL, route",
     "usage: nircctl status [SITE]\n\n"
     "Shows every site (or one): link state, age of the last report, calls in queue,\n"
     "longest wait, agents logged in/ready, service level of the last interval and\n"
     "the route the site has acknowledged.\n\n"
     "Examples:\n  nircctl status\n  nircctl --json status hubei\n",
     build_status, print_status, 0},
    {"cutover", "emergency move of sources to hubs (audited)",
     "usage: nircctl cutover SRC[,SRC...] --to HUB[,HUB...] --reason TEXT\n"
     "                       [--share PERMILLE] [--for DURATION | --until TIME]\n"
     "                       [--dry-run] [--force]\n\n"
     "Moves the sources' calls (all, or --share permille of them) to the first\n"
     "eligible hub, after checking with\n"
     "Erlang C that the hub can answer them. Refused (exit 1) if the hub would be\n"
     "overloaded, with the agents it would need; --force moves anyway. Waits until\n"
     "every site acknowledged; exit 4 if some did not.\n\n"
     "Examples:\n"
     "  nircctl cutover hubei --to shaanxi --reason 'Wuhan lockdown'\n"
     "  nircctl cutover shaanxi --to henan --reason 'Xi'\"'\"'an lockdown' --for 72h\n"
     "  nircctl cutover hubei --to shaanxi,henan --reason drill --dry-run\n"
     "  nircctl cutover hubei --to shaanxi --share 300 --reason 'peak: 30% to Xi'\"'\"'an'\n",
     build_cutover, print_move, 60000},
    {"restore", "end a cutover: sources go home (audited)",
     "usage: nircctl restore SRC[,SRC...] [--reason TEXT] | nircctl restore --cutover ID\n\n"
     "Ends the emergency cutover of the sources (or the whole cutover ID); they route\n"
     "by their schedule, overflow rule or home again. Waits for acknowledgements.\n\n"
     "Examples:\n  nircctl restore hubei\n  nircctl restore --cutover 2000001\n",
     build_restore, print_move, 60000},
    {"plan", "capacity prediction for a move or a schedule, nothing moves",
     "usage: nircctl plan SRC[,SRC...] --to HUB[,HUB...] | nircctl plan --schedule NAME\n\n"
     "Predicts with Erlang C what the move would do at each hub: load before and\n"
     "after, service level, ASA, occupancy and the agents needed. Exit 1 if the\n"
     "move would be refused.\n\n"
     "Examples:\n  nircctl plan hubei,henan --to shaanxi\n  nircctl plan --schedule night\n",
     build_plan, print_plan, 0},
    {"history", "the audit trail, newest last",
     "usage: nircctl history [--site SITE] [--actor NAME] [--action ACTION]\n"
     "                       [--since DURATION] [--limit N]\n\n"
     "Every operator action and automatic move, with who, what and why.\n\n"
     "Examples:\n  nircctl history --site hubei\n  nircctl history --action cutover --since 24h\n"
     "  nircctl --json history --limit 500\n",
     build_history, print_history, 0},
    {"schedule", "time-of-day moves: list, add, rm, enable, disable (admin)",
     "usage: nircctl schedule list\n"
     "       nircctl schedule add NAME --sources A,B,... --to HUB[,HUB] --start HH:MM --end HH:MM\n"
     "                            [--days daily|mon-fri|...] [--tz ZONE] [--except DATES]\n"
     "                            [--wave-size N]\n"
     "       nircctl schedule rm|enable|disable NAME\n\n"
     "A window may cross midnight (22:00 to 08:00). Sources move in waves of --wave-size\n"
     "(default 5); each wave is verified before the next. Exception dates (YYYY-MM-DD)\n"
     "skip the window that starts that day. Changes need the admin role.\n\n"
     "Examples:\n"
     "  nircctl schedule add night --sources hubei,guizhou,fujian --to shaanxi,henan \\\n"
     "      --start 22:00 --end 08:00 --tz Asia/Shanghai --except 2020-01-24\n"
     "  nircctl schedule disable night\n",
     build_schedule, print_schedules, 0},
    {"overflow", "automatic spill on overload: list, add, rm (admin)",
     "usage: nircctl overflow list\n"
     "       nircctl overflow add NAME --source SITE --to HUB[,HUB] --cap PERMILLE\n"
     "              [--trigger-wait D --release-wait D] [--trigger-queue N --release-queue N]\n"
     "              [--trigger-sl F --release-sl F] [--hold D] [--margin D]\n"
     "       nircctl overflow rm NAME\n\n"
     "Moves at most --cap permille of SITE's calls while a smoothed trigger is crossed,\n"
     "and releases only past the release thresholds after --hold (default 5m).\n\n"
     "Example:\n"
     "  nircctl overflow add gd-peak --source guangdong --to sichuan,henan --cap 300 \\\n"
     "      --trigger-wait 60s --release-wait 15s --hold 10m\n",
     build_overflow, print_overflows, 0},
};
#define CTL_NCMDS (sizeof ctl_cmds / sizeof ctl_cmds[0])

static void usage(FILE *f) {
  fprintf(f, "usage: nircctl [OPTIONS] COMMAND [ARGS]\n\nCommands:\n");
  for (size_t i = 0; i < CTL_NCMDS; i++)
    fprintf(f, "  %-10s %s\n", ctl_cmds[i].name, ctl_cmds[i].summary);
  fprintf(f, "  %-10s %s\n", "help", "this help; `nircctl COMMAND --help` for one command");
  fprintf(f,
          "\nOptions:\n"
          "  --controller ADDR     controller address (repeatable; tried in order)\n"
          "  --config FILE         config file (default: $NIRCCTL_CONFIG, ~/.config/nirc/"
          "nircctl.conf,\n"
          "                        /etc/nirc/nircctl.conf)\n"
          "  --ca FILE --cert FILE --key FILE   TLS files (override the config)\n"
          "  --json                machine-readable output\n"
          "  --timeout DURATION    per controller (default 5s)\n"
          "  --help, --version     this help; the version\n"
          "\n"
          "Exit codes: 0 done, 1 refused, 2 usage, 3 controller unreachable, 4 partially applied\n"
          "\n"
          "Examples:\n"
          "  nircctl status\n"
          "  nircctl cutover hubei --to shaanxi --reason 'Wuhan lockdown'\n"
          "  nircctl --controller 10.0.0.1:7443 --controller 10.0.0.2:7443 status\n");
}

static const char *default_config(void) {
  const char *env = getenv("NIRCCTL_CONFIG");
  if (env && *env) return env;
  static char home[512];
  const char *h = getenv("HOME");
  if (h) {
    snprintf(home, sizeof home, "%s/.config/nirc/nircctl.conf", h);
    if (access(home, R_OK) == 0) return home;
  }
  if (access("/etc/nirc/nircctl.conf", R_OK) == 0) return "/etc/nirc/nircctl.conf";
  return NULL;
}

int main(int argc, char **argv) {
  log_set_program("nircctl");
  log_set_level(LOG_LVL_ERROR);
  signal(SIGPIPE, SIG_IGN);
  static const struct option longopts[] = {
      {"controller", required_argument, NULL, 'C'}, {"config", required_argument, NULL, 'f'},
      {"ca", required_argument, NULL, 'a'},         {"cert", required_argument, NULL, 'e'},
      {"key", required_argument, NULL, 'k'},        {"json", no_argument, NULL, 'j'},
      {"timeout", required_argument, NULL, 'T'},    {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},          {NULL, 0, NULL, 0},
  };
  const char *config_path = NULL, *ca = NULL, *cert = NULL, *key = NULL, *timeout = NULL;
  const char *controllers[CONFIG_LIST_MAX];
  unsigned ncontrollers = 0;
  int json = 0, ch;
  /* '+': stop at the first non-option, so command arguments stay the
   * command's. */
  while ((ch = getopt_long(argc, argv, "+hV", longopts, NULL)) != -1) {
    switch (ch) {
    case 'C':
      if (ncontrollers == CONFIG_LIST_MAX) {
        fprintf(stderr, "nircctl: at most %d --controller options\n", CONFIG_LIST_MAX);
        return EXIT_USAGE;
      }
      controllers[ncontrollers++] = optarg;
      break;
    case 'f': config_path = optarg; break;
    case 'a': ca = optarg; break;
    case 'e': cert = optarg; break;
    case 'k': key = optarg; break;
    case 'j': json = 1; break;
    case 'T': timeout = optarg; break;
    case 'h': usage(stdout); return EXIT_DONE;
    case 'V': printf("nircctl " NIRC_VERSION "\n"); return EXIT_DONE;
    default: usage(stderr); return EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *name = argv[optind];
  int cargc = argc - optind - 1;
  char **cargv = argv + optind + 1;
  if (strcmp(name, "help") == 0) {
    usage(stdout);
    return EXIT_DONE;
  }
  const ctl_cmd_t *cmd = NULL;
  for (size_t i = 0; i < CTL_NCMDS; i++)
    if (strcmp(ctl_cmds[i].name, name) == 0) cmd = &ctl_cmds[i];
  if (!cmd) {
    fprintf(stderr, "nircctl: unknown command '%s' (try: nircctl help)\n", name);
    return EXIT_USAGE;
  }
  for (int i = 0; i < cargc; i++) {
    if (strcmp(cargv[i], "--help") == 0 || strcmp(cargv[i], "-h") == 0) {
      fputs(cmd->help, stdout);
      return EXIT_DONE;
    }
  }
  /* Builders get the command's own argv: argv[0] is the command name, as
   * getopt_long expects. */
  static ctl_args_t args;
  Nirc__OperatorRequest req = NIRC__OPERATOR_REQUEST__INIT;
  req.request_id = (uint64_t)getpid();
  if (cmd->build(cargc + 1, cargv - 1, &req, &args) != 0) return EXIT_USAGE;

  ctl_conf_t conf;
  char err[1024];
  if (!config_path) config_path = default_config();
  if (config_path) {
    if (config_load(config_path, ctl_opts, &conf, err, sizeof err) != 0) {
      fprintf(stderr, "nircctl: %s\n", err);
      return EXIT_USAGE;
    }
  } else {
    config_defaults(ctl_opts, &conf, err, sizeof err);
  }
  if (ncontrollers) {
    conf.controllers.count = 0;
    for (unsigned i = 0; i < ncontrollers; i++)
      nirc_strlcpy(conf.controllers.item[conf.controllers.count++], controllers[i],
                   sizeof conf.controllers.item[0]);
  }
  if (ca) nirc_strlcpy(conf.ca, ca, sizeof conf.ca);
  if (cert) nirc_strlcpy(conf.cert, cert, sizeof conf.cert);
  if (key) nirc_strlcpy(conf.key, key, sizeof conf.key);
  if (timeout && config_set(ctl_opts, &conf, "ctl", "timeout", timeout, err, sizeof err) != 0) {
    fprintf(stderr, "nircctl: --timeout: %s\n", err);
    return EXIT_USAGE;
  }
  if (!conf.ca[0] || !conf.cert[0] || !conf.key[0]) {
    fprintf(stderr, "nircctl: no operator certificate: give --ca, --cert and --key, or a config "
                    "file with [tls] ca/cert/key (see --config)\n");
    return EXIT_USAGE;
  }

  ctl_t c;
  memset(&c, 0, sizeof c);
  c.conf = &conf;
  c.json = json;
  c.wait_ms = cmd->wait_ms;
  c.loop = uv_default_loop();
  for (unsigned i = 0; i < conf.controllers.count; i++) {
    if (nirc_parse_addr(conf.controllers.item[i], &c.addrs[i], err, sizeof err) != 0) {
      fprintf(stderr, "nircctl: --controller %s\n", err);
      return EXIT_USAGE;
    }
  }
  c.naddrs = conf.controllers.count;
  if (tls_ctx_new(TLS_CLIENT, conf.ca, conf.cert, conf.key, &c.tls, err, sizeof err) != 0) {
    fprintf(stderr, "nircctl: %s\n", err);
    return EXIT_USAGE;
  }
  use_colour = !json && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");

  if (cmd->build == build_watch) {
    /* A new request every interval: the view is as fresh as the controller,
     * and a controller that goes away is shown, not hidden. */
    int tty = isatty(STDOUT_FILENO);
    for (;;) {
      ctl_t w = c;
      w.reply = NULL;
      w.reply_env = NULL;
      w.done = 0;
      w.exit_code = 0;
      w.idx = 0;
      w.errors[0] = '\0';
      int wrc = ctl_request(&w, &req);
      if (json) {
        /* JSON Lines: one Status document per refresh, nothing else. */
        if (wrc == EXIT_DONE && w.reply && w.reply->ok && w.reply->status)
          print_status_json_flags(w.reply->status, JSON_COMPACT);
        else
          print_json_line(json_pack("{s:b, s:s}", "ok", 0, "error", w.errors));
        fflush(stdout);
        if (w.reply_env) nirc__envelope__free_unpacked(w.reply_env, NULL);
        usleep((useconds_t)(watch_interval_ms * 1000));
        continue;
      }
      if (tty) printf("\033[H\033[2J");
      char now[40];
      clock_format_iso(clock_real_ms(), 0, now, sizeof now);
      printf("nircctl watch — %s — every %.1f s, Ctrl-C to stop\n\n", now,
             watch_interval_ms / 1000.0);
      if (wrc == EXIT_DONE && w.reply && w.reply->ok && w.reply->status)
        print_status_table(w.reply->status);
      else
        printf("cannot reach a controller:\n%s\n", w.errors);
      fflush(stdout);
      if (w.reply_env) nirc__envelope__free_unpacked(w.reply_env, NULL);
      usleep((useconds_t)(watch_interval_ms * 1000));
    }
  }
  int rc = ctl_request(&c, &req);
  if (rc == EXIT_UNREACHABLE) {
    fprintf(stderr,
            "nircctl: cannot reach a controller:\n%s\nIs nircd running? Check --controller or "
            "[ctl] controllers in %s.\n",
            c.errors, config_path ? config_path : "your config");
  } else if (rc == EXIT_REFUSED && !c.reply) {
    /* The controller closed the link with an Error (e.g. a site
     * certificate used here): scripts still get JSON. */
    if (json) print_json(json_pack("{s:b, s:s, s:n}", "ok", 0, "error", c.errors, "plan"));
    fprintf(stderr, "nircctl: refused by the controller:\n%s\n", c.errors);
  } else if (c.reply && !c.reply->ok) {
    rc = print_refusal(c.reply, json);
  } else if (c.reply) {
    rc = cmd->print(c.reply, json);
  }
  if (c.reply_env) nirc__envelope__free_unpacked(c.reply_env, NULL);
  SSL_CTX_free(c.tls);
  uv_loop_close(c.loop);
  return rc;
}
