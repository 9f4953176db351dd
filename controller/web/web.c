#include "web.h"

#include "err.h"
#include "guard.h"
#include "jsonio.h"
#include "leader.h"
#include "log.h"
#include "mapgroup.h"
#include "ops.h"
#include "util.h"
#include "webrow.h"
#include "webstatus.h"
#include "report.h"
#include "safetext.h"
#include "tz.h"
#include "webhook.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A bounded text buffer for the metrics and the page. */
typedef struct {
  char *p;
  size_t len, cap;
  int failed;
} web_buf_t;

/* /metrics at 20,000 sites with an alarm each is ~5 MB. */
#define WEB_BUF_MAX (16u << 20)
/* Alarms listed on the page; the rest are counted (nircctl alarms). */
#define WEB_PAGE_ALARMS 50

static void web_printf(web_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void web_printf(web_buf_t *b, const char *fmt, ...) {
  if (b->failed) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = 1;
      return;
    }
    if (b->p && b->len + (size_t)n < b->cap) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap ? b->cap * 2 : 16384;
    while (cap < b->len + (size_t)n + 1)
      cap *= 2;
    char *np = cap <= WEB_BUF_MAX ? realloc(b->p, cap) : NULL;
    if (!np) {
      b->failed = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
}

/* A Prometheus label value: backslash, quote and newline escaped as the
 * exposition format wants, other control characters as safetext does. */
static void web_label(const char *in, char *out, size_t outlen) {
  char tmp[600];
  safetext_escape(in, tmp, sizeof tmp);
  size_t o = 0;
  for (const char *p = tmp; *p && o + 3 < outlen; p++) {
    /* 0x5c backslash, 0x22 double quote (as numbers: a quote character
     * here would confuse the checks that read metric names from this file) */
    if (*p == 0x5c || *p == 0x22) out[o++] = 0x5c;
    out[o++] = *p;
  }
  out[o] = '\0';
}

/* The route a site acknowledged (what it does); NULL when nobody knows
 * (its agent has not confirmed it at the PBX, or has not said Hello to
 * this controller: shown as unknown, engine_route_seen). */
static const route_t *web_route(const server_t *srv, size_t i) {
  if (engine_route_seen(srv->engine, i) != ENGINE_ROUTE_KNOWN) return NULL;
  return &engine_site_dir(srv->engine, i)->acked;
}

/* This controller leads: it routes, and its registry is the network's live
 * state. A standby (or one still electing, or one stepping down) has no
 * live view at all: the agents report to the leader only. */
static int web_leading(const server_t *srv) {
  return srv->leading && !srv->lost;
}

/* Who leads, as this node knows it: its own advertise address and epoch
 * when it leads; on a standby the lease's address (escaped: it comes from
 * the database) and epoch. addr is "" while no leader is known (the lease
 * stood still or is absent: an election is running); the epoch is then
 * the last one seen leading (0: none). */
typedef struct {
  char addr[200];
  char node[100];
  uint64_t epoch;
} web_leader_t;

static void web_leader(const server_t *srv, web_leader_t *out) {
  int lead = web_leading(srv);
  const char *addr = lead ? srv->conf->advertise : srv->leader_hint;
  safetext_escape(addr, out->addr, sizeof out->addr);
  safetext_escape(lead      ? srv->conf->node
                  : addr[0] ? srv->leader_node
                            : "",
                  out->node, sizeof out->node);
  out->epoch = lead ? srv->epoch : srv->leader_epoch;
}

/* Text from elsewhere for the page: escaped for HTML (webrow.h). */
static void web_html(const char *in, char *out, size_t outlen) {
  webrow_escape(in, out, outlen);
}

/* "08:00" (within a day of now) or "01-24 08:00", business time `ms` in
 * the page's zone ([http] tz). */
static void web_when(const server_t *srv, int64_t ms, char *buf, size_t len) {
  tz_local_t lt;
  if (tz_to_local(srv->conf->http_tz, ms, &lt) != 0) {
    snprintf(buf, len, "?");
    return;
  }
  int64_t ahead = ms - clock_now_ms(&srv->clock);
  if (ahead > -86400000 && ahead < 86400000)
    snprintf(buf, len, "%02d:%02d", lt.hour, lt.minute);
  else
    snprintf(buf, len, "%02d-%02d %02d:%02d", lt.month, lt.day, lt.hour, lt.minute);
}

/* The rule column, as nircctl status shows it: the schedule by its name
 * (not its internal id), a cutover by id with its reason, the end, and
 * why the site is not at the rule's first hub. Raw text: the caller
 * escapes it for HTML. */
/* senders: live sites whose known route sends calls to site i (statusq),
 * as nircctl status counts them. True when the text is "hub for N sites". */
static bool web_rule_text(const server_t *srv, size_t i, uint32_t senders, char *buf, size_t len) {
  if (!srv->engine) {
    snprintf(buf, len, "default");
    return false;
  }
  engine_rule_view_t v;
  engine_rule_view(srv->engine, i, &v);
  if (v.kind == RULE_NONE) {
    webrow_idle_text(engine_active_reason(srv->engine, i), senders, buf, len);
    return senders > 0;
  }
  char name[160], until[48] = "";
  if (v.name[0])
    snprintf(name, sizeof name, "%s %s", rules_kind_name(v.kind), v.name);
  else
    snprintf(name, sizeof name, "%s %llu", rules_kind_name(v.kind), (unsigned long long)v.rule_id);
  if (v.excluded) {
    snprintf(buf, len, "excluded from %s after a failed move: nircctl readmit %s", name,
             srv->sites.v[i].slug);
    return false;
  }
  if (v.end_ms > 0) {
    char when[32];
    web_when(srv, v.end_ms, when, sizeof when);
    snprintf(until, sizeof until, " until %s", when);
  }
  snprintf(buf, len, "%s%s%s%s%s%s", name, until, v.reason[0] ? ": " : "", v.reason,
           v.detail[0] ? ", " : "", v.detail);
  return false;
}

/* One site of /status.json (a new reference, or NULL). */
static json_t *web_status_site(server_t *srv, size_t i, int64_t now_real) {
  webrow_site_t w;
  webrow_facts(srv->engine, &srv->sites.v[i], i, &w);
  return webrow_json(&w, now_real);
}

/* Publishes the snapshot /status.json is answered from (webstatus.c):
 * each site's JSON rendered once, what the filters need, the members
 * around the sites. A standby lists no sites: its registry is empty by
 * construction, and 31 "never-seen" entries would read as the network's
 * state; "role" and "leader" say where that state is. */
static void web_publish_status(server_t *srv, int64_t now_real) {
  size_t n = web_leading(srv) ? srv->sites.n : 0, nsh = 0;
  statusq_site_t *facts = calloc(n ? n : 1, sizeof *facts);
  if (!facts) return;
  ops_status_facts(srv, facts, n);
  for (size_t i = 0; i < n; i++)
    nsh += facts[i].n_share;
  webstatus_t *w = webstatus_new(n, nsh);
  if (!w) {
    free(facts);
    return;
  }
  /* Copies: the registry and the engine change after this returns. */
  for (size_t i = 0, k = 0; i < n; i++) {
    w->facts[i] = facts[i];
    nirc_strlcpy(w->slug[i], facts[i].slug, sizeof w->slug[i]);
    w->facts[i].slug = w->slug[i];
    /* No shares (a route not known: share is NULL) copies nothing. */
    if (facts[i].n_share)
      memcpy(&w->shares[k], facts[i].share, facts[i].n_share * sizeof *w->shares);
    w->facts[i].share = &w->shares[k];
    k += facts[i].n_share;
    if (!facts[i].removed) {
      json_t *x = web_status_site(srv, i, now_real);
      w->rows[i] = x ? jsonio_dumps(x, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
      json_decref(x);
    }
  }
  free(facts);
  webstatus_ready(w);
  /* Active alarms, oldest first (a standby has none: it routes nothing). */
  const alarm_table_t *at = srv->engine && web_leading(srv) ? engine_alarms(srv->engine) : NULL;
  size_t na = at ? alarm_count(at) : 0;
  w->alarm = calloc(na ? na : 1, sizeof *w->alarm);
  w->alarm_site = calloc(na ? na : 1, sizeof *w->alarm_site);
  for (size_t k = 0; w->alarm && w->alarm_site && k < na; k++) {
    const alarm_t *a = alarm_at(at, k);
    alarm_seen_t seen = engine_alarm_seen(srv->engine, a);
    json_t *x = (json_pack(
        "{s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:o, s:o}", "id", (json_int_t)a->id, "kind",
        alarm_kind_name(a->kind), "subject", a->subject, "severity", alarm_entry_severity(a),
        "message", a->message, "raised_ms", (json_int_t)a->raised_wall_ms, "raised_business_ms",
        (json_int_t)a->raised_business_ms, "acked_ms", (json_int_t)a->acked_wall_ms, "acked_by",
        a->acked_by, "quiet_ms", seen.quiet ? json_integer((json_int_t)seen.ago_ms) : json_null(),
        "clears_in_ms", seen.quiet ? json_integer((json_int_t)seen.clears_in_ms) : json_null()));
    char *text = x ? jsonio_dumps(x, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(x);
    if (!text) continue;
    w->alarm[w->n_alarms] = text;
    w->alarm_site[w->n_alarms++] = ops_status_find(&srv->sites, a->subject);
  }
  web_leader_t ld;
  web_leader(srv, &ld);
  json_t *head = json_pack(
      "{s:s, s:I, s:I, s:s, s:o, s:o, s:I}", "controller", srv->conf->node, "epoch",
      (json_int_t)srv->epoch, "server_time_ms", (json_int_t)clock_now_ms(&srv->clock), "role",
      web_leading(srv) ? "leader" : "standby", "leader",
      ld.addr[0] ? json_string(ld.addr) : json_null(), "leader_node",
      ld.node[0] ? json_string(ld.node) : json_null(), "leader_epoch", (json_int_t)ld.epoch);
  /* A standby that won the election and does not lead says why. */
  if (head && !web_leading(srv) && srv->leader_why[0]) {
    char why[1200];
    safetext_escape(srv->leader_why, why, sizeof why);
    json_object_set_new(head, "leader_blocked",
                        json_string(leader_block_name((leader_block_t)srv->leader_blocked)));
    json_object_set_new(head, "leader_why", json_string(why));
  } else if (head) {
    json_object_set_new(head, "leader_blocked", json_null());
    json_object_set_new(head, "leader_why", json_null());
  }
  /* The members without their braces: the sites follow them. */
  w->head =
      head ? jsonio_dumps(head, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER) : NULL;
  if (w->head && strlen(w->head) >= 2) {
    memmove(w->head, w->head + 1, strlen(w->head));
    w->head[strlen(w->head) - 1] = '\0';
  }
  json_decref(head);
  httpd_publish_dynamic(srv->http, "/status.json", "application/json", w, webstatus_free,
                        webstatus_render);
}

static void web_metrics(const server_t *srv, int64_t now_real, web_buf_t *b) {
  web_printf(b,
             "# HELP nirc_up 1 while this controller runs.\n# TYPE nirc_up gauge\n"
             "nirc_up{node=\"%s\"} 1\n",
             srv->conf->node);
  web_printf(b,
             "# HELP nirc_epoch Leadership epoch of this controller.\n# TYPE nirc_epoch "
             "gauge\nnirc_epoch %llu\n",
             (unsigned long long)srv->epoch);
  web_leader_t ld;
  web_leader(srv, &ld);
  int lead = web_leading(srv);
  web_printf(b,
             "# HELP nirc_leader 1 while this controller leads (routes, serves agents and "
             "operators), 0 on a standby.\n# TYPE nirc_leader gauge\nnirc_leader %d\n"
             "# HELP nirc_leader_epoch Epoch this controller leads, or on a standby the epoch it "
             "last saw leading (0: none seen).\n# TYPE nirc_leader_epoch gauge\n"
             "nirc_leader_epoch %llu\n",
             lead, (unsigned long long)ld.epoch);
  /* Every reason listed (0 too), so an alert has a series to watch. */
  web_printf(b, "# HELP nirc_leader_blocked 1 on a standby that won the election but does not "
                "lead, by reason (rules_locked: sessions lock the rule tables; rules_load: the "
                "rules cannot be loaded otherwise; leader_lock: the lock's holder, its lease "
                "standing still, was asked to end and has not).\n# TYPE nirc_leader_blocked "
                "gauge\n");
  for (int k = LEADER_BLOCK_NONE + 1; k < LEADER_BLOCK_COUNT; k++)
    web_printf(b, "nirc_leader_blocked{reason=\"%s\"} %d\n", leader_block_name((leader_block_t)k),
               !lead && srv->leader_why[0] && srv->leader_blocked == k);
  /* On a standby too, which has no alarm table (a leader also raises the
   * rule_load alarm): the pid, so an alert can name it. */
  {
    elect_stuck_t st;
    (void)leader_stuck(srv->leader, &st);
    web_printf(b,
               "# HELP nirc_rule_load_stuck_backend The PostgreSQL backend pid of a rule load "
               "this controller gave up that still holds SHARE locks on the rule tables (every "
               "write to them waits; the log and the rule_load alarm say how to end it), 0: "
               "none.\n# TYPE nirc_rule_load_stuck_backend gauge\nnirc_rule_load_stuck_backend "
               "%d\n",
               st.pid);
  }
  /* Alarms (alarm.h): active ones by kind, every kind listed (0 too, so an
   * alert on a kind has a series to watch), one info sample per active
   * alarm, and raises by kind since start. A standby raises none. */
  {
    const alarm_table_t *at = srv->engine && lead ? engine_alarms(srv->engine) : NULL;
    web_printf(b, "# HELP nirc_alarms_active Active alarms by kind (nircctl alarms lists them).\n"
                  "# TYPE nirc_alarms_active gauge\n");
    for (int k = 0; k < ALARM_KIND_COUNT; k++)
      web_printf(b, "nirc_alarms_active{kind=\"%s\"} %zu\n", alarm_kind_name((alarm_kind_t)k),
                 at ? alarm_count_kind(at, (alarm_kind_t)k) : 0);
    web_printf(b, "# HELP nirc_alarms_raised_total Alarms raised by this controller, by kind.\n"
                  "# TYPE nirc_alarms_raised_total counter\n");
    for (int k = 0; k < ALARM_KIND_COUNT; k++)
      web_printf(b, "nirc_alarms_raised_total{kind=\"%s\"} %llu\n",
                 alarm_kind_name((alarm_kind_t)k),
                 at ? (unsigned long long)at->raised_total[k] : 0ULL);
    web_printf(b, "# HELP nirc_alarm_info One sample per active alarm (value 1), labelled with "
                  "its id, kind, subject and severity.\n# TYPE nirc_alarm_info gauge\n");
    for (size_t k = 0; at && k < alarm_count(at); k++) {
      const alarm_t *a = alarm_at(at, k);
      char subject[2 * ALARM_SUBJECT_MAX];
      safetext_escape(a->subject, subject, sizeof subject);
      web_printf(b, "nirc_alarm_info{id=\"%llu\",kind=\"%s\",subject=\"%s\",severity=\"%s\"} 1\n",
                 (unsigned long long)a->id, alarm_kind_name(a->kind), subject,
                 alarm_entry_severity(a));
    }
  }
  /* Alarm notifications per webhook URL (credentials hidden). */
  if (srv->webhook && webhook_url_count(srv->webhook)) {
    static const char *const names[] = {
        "nirc_webhook_delivered_total", "nirc_webhook_failed_attempts_total",
        "nirc_webhook_given_up_total", "nirc_webhook_dropped_total", "nirc_webhook_pending"};
    static const char *const help[] = {
        "Alarm notifications a webhook URL accepted (2xx).",
        "Attempts that failed (an error, a timeout or a non-2xx answer) and were retried.",
        ("Notifications given up: refused as content (400, 413, 415, 422) or older than "
         "[notify] webhook_give_up."),
        "Notifications dropped because the URL's queue was full (the oldest goes first).",
        "Notifications waiting for a URL, the one being sent included."};
    for (size_t m = 0; m < sizeof names / sizeof names[0]; m++) {
      web_printf(b, "# HELP %s %s\n# TYPE %s %s\n", names[m], help[m], names[m],
                 m == 4 ? "gauge" : "counter");
      for (size_t u = 0; u < webhook_url_count(srv->webhook); u++) {
        webhook_stats_t ws;
        webhook_stats(srv->webhook, u, &ws);
        uint64_t v[] = {ws.delivered, ws.attempts_failed, ws.given_up, ws.dropped, ws.pending};
        char url[600];
        web_label(webhook_url(srv->webhook, u), url, sizeof url);
        web_printf(b, "%s{url=\"%s\"} %llu\n", names[m], url, (unsigned long long)v[m]);
      }
    }
  }
  /* Per-site series only from the leader: a standby's registry is empty
   * (agents report to the leader), and its 31 "never seen" samples would
   * add up with the leader's in every dashboard and alert. */
  web_printf(b, "# HELP nirc_site_link Link state per site: 0 never seen, 1 online, 2 stale, "
                "3 offline. Leader only.\n# TYPE nirc_site_link gauge\n");
  for (size_t i = 0; lead && i < srv->sites.n; i++)
    if (srv->sites.v[i].life == SITE_LIVE)
      web_printf(b, "nirc_site_link{site=\"%s\"} %d\n", srv->sites.v[i].slug,
                 (int)srv->sites.v[i].state);
  /* Per-site gauges: a sample only where the figure is known
   * (webrow_gauge: absent, never 0, for a site that has not reported here,
   * a figure it does not measure, an old figure of a site not online). */
  static const struct {
    const char *name, *help;
  } gauges[WEBROW_GAUGES] = {
      {"nirc_site_calls_in_queue", "Calls waiting at the site (last report)."},
      {"nirc_site_longest_wait_seconds", "Longest current wait at the site."},
      {"nirc_site_agents_logged_in", "Agents logged in."},
      {"nirc_site_agents_ready", "Agents logged in and idle."},
      {"nirc_site_service_level", "Answered within threshold / offered, last interval."},
      {"nirc_site_report_age_seconds", "Seconds since the last report."},
      {"nirc_site_demand_erlangs", "Smoothed own demand in Erlangs (calls/s x AHT); absent "
                                   "before a minute of reports."},
      {"nirc_site_pbx_unreadable", "1 when the site's adapter cannot read its PBX (its last "
                                   "report); absent before its first report. Leader only."},
  };
  for (size_t g = 0; g < WEBROW_GAUGES; g++) {
    web_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g].name, gauges[g].help,
               gauges[g].name);
    for (size_t i = 0; lead && i < srv->sites.n; i++) {
      double v;
      if (webrow_gauge(&srv->sites.v[i], (webrow_gauge_t)g, now_real, &v))
        web_printf(b, "%s{site=\"%s\"} %g\n", gauges[g].name, srv->sites.v[i].slug, v);
    }
  }
  web_printf(b, "# HELP nirc_site_inbound_credited_calls_total Calls other sites reported "
                "sending to the site (their routed_to), since the controller started. Leader "
                "only.\n# TYPE nirc_site_inbound_credited_calls_total counter\n");
  for (size_t i = 0; lead && i < srv->sites.n; i++)
    if (srv->sites.v[i].life == SITE_LIVE)
      web_printf(b, "nirc_site_inbound_credited_calls_total{site=\"%s\"} %llu\n",
                 srv->sites.v[i].slug, (unsigned long long)srv->sites.v[i].inbound_credited);
  web_printf(b, "# HELP nirc_forecast_wape_ratio The forecast's weighted absolute percentage "
                "error over the site's last ended schedule window (sum |actual - forecast| / sum "
                "actual, per 30-minute interval); absent: none stored. Leader only.\n# TYPE "
                "nirc_forecast_wape_ratio gauge\n");
  for (size_t i = 0; lead && srv->fc_wape && i < srv->fc_wape_n && i < srv->sites.n; i++)
    if (srv->sites.v[i].life == SITE_LIVE && srv->fc_wape[i] >= 0)
      web_printf(b, "nirc_forecast_wape_ratio{site=\"%s\"} %.4f\n", srv->sites.v[i].slug,
                 srv->fc_wape[i]);
  if (srv->engine) {
    const engine_stats_t *st = engine_stats(srv->engine);
    web_printf(b,
               "# HELP nirc_directives_sent_total Directives sent (first sends).\n"
               "# TYPE nirc_directives_sent_total counter\nnirc_directives_sent_total %llu\n"
               "# HELP nirc_directive_resends_total Directives resent after an ack timeout.\n"
               "# TYPE nirc_directive_resends_total counter\nnirc_directive_resends_total %llu\n"
               "# HELP nirc_directive_acks_total Acknowledgements by result.\n"
               "# TYPE nirc_directive_acks_total counter\n"
               "nirc_directive_acks_total{result=\"applied\"} %llu\n"
               "nirc_directive_acks_total{result=\"rejected\"} %llu\n"
               "nirc_directive_acks_total{result=\"failed\"} %llu\n"
               "nirc_directive_acks_total{result=\"timeout\"} %llu\n"
               "# HELP nirc_directive_failures_total Directives that failed (alarmed).\n"
               "# TYPE nirc_directive_failures_total counter\n"
               "nirc_directive_failures_total %llu\n"
               "# HELP nirc_rollbacks_total Moves rolled back after a failure.\n"
               "# TYPE nirc_rollbacks_total counter\nnirc_rollbacks_total %llu\n"
               "# HELP nirc_directive_acks_refused_total Acks not stored: for a directive never "
               "sent, or one already acknowledged.\n"
               "# TYPE nirc_directive_acks_refused_total counter\n"
               "nirc_directive_acks_refused_total %llu\n",
               (unsigned long long)st->directives_sent, (unsigned long long)st->resends,
               (unsigned long long)st->acks_applied, (unsigned long long)st->acks_rejected,
               (unsigned long long)st->acks_failed, (unsigned long long)st->timeouts,
               (unsigned long long)(st->acks_rejected + st->acks_failed + st->timeouts),
               (unsigned long long)st->rollbacks, (unsigned long long)st->acks_refused);
    web_printf(b,
               "# HELP nirc_engine_plans_total Plans computed: on a tick when a report, link, "
               "ack or rule changed, else once a second, and on every operator change.\n"
               "# TYPE nirc_engine_plans_total counter\nnirc_engine_plans_total %llu\n",
               (unsigned long long)st->plans);
    web_printf(b, "# HELP nirc_directive_latency_ms Directive sent to applied ack.\n"
                  "# TYPE nirc_directive_latency_ms histogram\n");
    for (unsigned k = 0; k < ENGINE_LATENCY_BUCKETS; k++) {
      if (k + 1 < ENGINE_LATENCY_BUCKETS)
        web_printf(b, "nirc_directive_latency_ms_bucket{le=\"%g\"} %llu\n", engine_latency_le_ms[k],
                   (unsigned long long)st->latency_bucket[k]);
      else
        web_printf(b, "nirc_directive_latency_ms_bucket{le=\"+Inf\"} %llu\n",
                   (unsigned long long)st->latency_bucket[k]);
    }
    web_printf(b, "nirc_directive_latency_ms_sum %g\nnirc_directive_latency_ms_count %llu\n",
               st->latency_sum_ms, (unsigned long long)st->latency_count);
    web_printf(b, "# HELP nirc_route_changes_total Route changes sent to a site, by cause.\n"
                  "# TYPE nirc_route_changes_total counter\n");
    for (size_t i = 0; i < srv->sites.n; i++)
      for (unsigned c = 0; c < ROUTE_CAUSE_COUNT; c++) {
        uint64_t v = engine_route_changes(srv->engine, i, (route_cause_t)c);
        if (v)
          web_printf(b, "nirc_route_changes_total{site=\"%s\",cause=\"%s\"} %llu\n",
                     srv->sites.v[i].slug, engine_route_cause_name((route_cause_t)c),
                     (unsigned long long)v);
      }
  }
  web_printf(b,
             "# HELP nirc_db_queue_depth Records waiting for the database.\n"
             "# TYPE nirc_db_queue_depth gauge\nnirc_db_queue_depth %zu\n"
             "# HELP nirc_db_dropped_total Records that could not be queued.\n"
             "# TYPE nirc_db_dropped_total counter\nnirc_db_dropped_total %llu\n"
             "# HELP nirc_links Live links.\n# TYPE nirc_links gauge\nnirc_links %u\n"
             "# HELP nirc_link_events_suppressed_total Link events of sites left out over their "
             "budget (20 and 30 new ones at once, then 10 and 30 a minute).\n"
             "# TYPE nirc_link_events_suppressed_total counter\n"
             "nirc_link_events_suppressed_total %llu\n"
             "# HELP nirc_pbx_drift_repairs_total PBX drifts the sites' agents found and "
             "repaired (each also raises a pbx alarm).\n"
             "# TYPE nirc_pbx_drift_repairs_total counter\n"
             "nirc_pbx_drift_repairs_total %llu\n",
             srv->db ? db_queue_depth(srv->db) : 0, (unsigned long long)srv->db_dropped,
             srv->nconns, (unsigned long long)srv->link_events_suppressed,
             (unsigned long long)srv->pbx_drift_repairs);
  web_printf(b,
             "# HELP nirc_links_held Site links a controller that does not lead keeps open "
             "until it knows where they belong: it leads, or it saw the leader alive since they "
             "came.\n"
             "# TYPE nirc_links_held gauge\nnirc_links_held %u\n"
             "# HELP nirc_links_held_total Site links ever held so.\n"
             "# TYPE nirc_links_held_total counter\nnirc_links_held_total %llu\n",
             srv->nheld, (unsigned long long)srv->held_total);
  /* Built on demand (web_publish): a document nobody reads is not built. */
  static const char *const doc_path[WEB_DOC_COUNT] = {"/status.json", "/metrics", "/map.svg", "/"};
  web_printf(b, "# HELP nirc_http_documents_built_total Documents built because a client asked "
                "for one older than its maximum age.\n"
                "# TYPE nirc_http_documents_built_total counter\n");
  for (unsigned k = 0; k < WEB_DOC_COUNT; k++)
    web_printf(b, "nirc_http_documents_built_total{document=\"%s\"} %llu\n", doc_path[k],
               (unsigned long long)srv->web_built[k]);
  db_journal_stats_t js;
  db_journal_stats(srv->db, &js);
  web_printf(b,
             "# HELP nirc_db_journal_records Writes in the on-disk journal, waiting for the "
             "database.\n"
             "# TYPE nirc_db_journal_records gauge\nnirc_db_journal_records %llu\n"
             "# HELP nirc_db_journal_bytes Size of those writes in the journal.\n"
             "# TYPE nirc_db_journal_bytes gauge\nnirc_db_journal_bytes %llu\n"
             "# HELP nirc_db_replayed_total Journaled writes applied once the database returned.\n"
             "# TYPE nirc_db_replayed_total counter\nnirc_db_replayed_total %llu\n"
             "# HELP nirc_db_duplicates_total Writes found already applied when sent again, so "
             "skipped.\n"
             "# TYPE nirc_db_duplicates_total counter\nnirc_db_duplicates_total %llu\n"
             "# HELP nirc_db_journal_refused_total Writes refused because the journal was full or "
             "unwritable.\n"
             "# TYPE nirc_db_journal_refused_total counter\nnirc_db_journal_refused_total %llu\n"
             "# HELP nirc_db_journal_shed_total History writes (link events, load minutes, "
             "acks) shed to keep journal room for operator changes.\n"
             "# TYPE nirc_db_journal_shed_total counter\nnirc_db_journal_shed_total %llu\n",
             (unsigned long long)js.records, (unsigned long long)js.bytes,
             (unsigned long long)js.replayed_total, (unsigned long long)js.duplicates_total,
             (unsigned long long)js.refused_total, (unsigned long long)js.shed_total);
  const server_refusals_t *rf = &srv->refusals;
  web_printf(b,
             "# HELP nirc_links_unauthenticated Links in the TLS handshake or waiting for Hello.\n"
             "# TYPE nirc_links_unauthenticated gauge\nnirc_links_unauthenticated %u\n"
             "# HELP nirc_links_refused_total Connections refused or links closed, by reason.\n"
             "# TYPE nirc_links_refused_total counter\n"
             "nirc_links_refused_total{reason=\"unauthenticated_cap\"} %llu\n"
             "nirc_links_refused_total{reason=\"evicted\"} %llu\n"
             "nirc_links_refused_total{reason=\"tls_failed\"} %llu\n"
             "nirc_links_refused_total{reason=\"revoked\"} %llu\n"
             "nirc_links_refused_total{reason=\"rate_limited\"} %llu\n"
             "nirc_links_refused_total{reason=\"operator_link_cap\"} %llu\n"
             "# HELP nirc_links_waited_at_cap_total New connections left in the listen backlog "
             "while every unauthenticated place held a handshake in progress.\n"
             "# TYPE nirc_links_waited_at_cap_total counter\nnirc_links_waited_at_cap_total %llu\n"
             "# HELP nirc_operator_requests_rate_limited_total Operator requests answered "
             "'rate limited' ([ops] max_requests_per_s).\n"
             "# TYPE nirc_operator_requests_rate_limited_total counter\n"
             "nirc_operator_requests_rate_limited_total %llu\n"
             "# HELP nirc_handshake_failures_aggregated_total Failed TLS handshakes counted in "
             "a per-address summary instead of a link event each.\n"
             "# TYPE nirc_handshake_failures_aggregated_total counter\n"
             "nirc_handshake_failures_aggregated_total %llu\n"
             "# HELP nirc_tls_reloads_total Certificate and revocation list reloads (SIGHUP).\n"
             "# TYPE nirc_tls_reloads_total counter\n"
             "nirc_tls_reloads_total{result=\"ok\"} %llu\n"
             "nirc_tls_reloads_total{result=\"failed\"} %llu\n",
             srv->nunauth, (unsigned long long)rf->cap_refused, (unsigned long long)rf->evicted,
             (unsigned long long)rf->tls_failed, (unsigned long long)rf->revoked,
             (unsigned long long)rf->rate_limited, (unsigned long long)rf->op_link_cap,
             (unsigned long long)rf->cap_waited, (unsigned long long)rf->op_rate_limited,
             (unsigned long long)(srv->guard ? guard_hs_aggregated(srv->guard) : 0),
             (unsigned long long)rf->reloads_ok, (unsigned long long)rf->reloads_failed);
  web_printf(b,
             "# HELP nirc_reports_refused_total Load reports refused: invalid (the link is "
             "closed), or implausible against the site's configured seats or its own figures "
             "(not stored, alarmed).\n"
             "# TYPE nirc_reports_refused_total counter\n"
             "nirc_reports_refused_total{reason=\"invalid\"} %llu\n",
             (unsigned long long)rf->reports_invalid);
  for (int k = 0; k < SITES_REFUSED_COUNT; k++)
    web_printf(b, "nirc_reports_refused_total{reason=\"%s\"} %llu\n",
               sites_refusal_name((sites_refusal_t)k),
               (unsigned long long)rf->reports_implausible[k]);
}

static char *web_map(const server_t *srv) {
  size_t n = srv->sites.n;
  map_site_t *ms = calloc(n ? n : 1, sizeof *ms);
  map_move_t *mv = calloc(n * ROUTE_MAX_SHARES + 1, sizeof *mv);
  size_t nm = 0, ns = 0;
  char *svg = NULL;
  if (!ms || !mv) goto out;
  for (size_t i = 0; i < n; i++) {
    const site_t *s = &srv->sites.v[i];
    if (s->life == SITE_REMOVED) continue; /* not on the map; nothing routes there */
    ms[ns++] = (map_site_t){
        .slug = s->slug,
        .name_en = s->name_en,
        .name_zh = s->name_zh,
        .lat = s->lat,
        .lon = s->lon,
        .link = webrow_link_word(s->state),
        .is_hub = s->is_hub,
    };
    map_site_load(&ms[ns - 1], s->has_report, s->last.pbx_unreadable, s->last.not_measured,
                  s->last.logged_in, s->last.talking, s->last.in_queue);
    /* As /status.json says it: unknown (no route, never home), or
     * applied and not read back (its arrows dashed). */
    const route_t *r = web_route(srv, i);
    const site_dir_t *dir = srv->engine ? engine_site_dir(srv->engine, i) : NULL;
    ms[ns - 1].route_unknown = !r;
    ms[ns - 1].route_unheard = engine_route_seen(srv->engine, i) == ENGINE_ROUTE_UNHEARD;
    ms[ns - 1].route_unverified = r && dir->unverified;
    ms[ns - 1].held_home = dir && dir->returns.state == ENGINE_RETURNS_HELD;
    for (unsigned k = 0; r && k < r->n_share; k++)
      if (strcmp(r->share[k].site, s->slug) != 0)
        mv[nm++] = (map_move_t){s->slug, r->share[k].site, r->share[k].permille,
                                ms[ns - 1].route_unverified};
  }
  char title[128];
  clock_format_iso(clock_now_ms(&srv->clock), 480, title, sizeof title);
  char full[200];
  snprintf(full, sizeof full, "NIRC routing — %s (business time, UTC+8)", title);
  svg = mapgroup_render(ms, ns, mv, nm, full);
out:
  free(ms);
  free(mv);
  return svg;
}

/* The page of a controller that does not lead. Its registry is empty by
 * construction (agents report to the leader only), so it has nothing true
 * to say about any site. A table of 31 "never connected" rows, or of 31
 * "unknown" rows, still reads at a glance as a network-wide outage, and at
 * 3 a.m. people act on the glance. So a standby shows no site table and no
 * map: a banner that says it is a standby and who leads (or that nobody
 * does yet, which is worth waking up for), and one line saying where the
 * network's state is. The page refreshes every 2 s, so it turns into the
 * full page as soon as this controller takes over. */
static void web_standby_page(const server_t *srv, web_buf_t *b) {
  web_leader_t ld;
  web_leader(srv, &ld);
  char node[200], addr[300], last[200];
  web_html(srv->conf->node, node, sizeof node);
  web_html(ld.addr, addr, sizeof addr);
  web_html(srv->leader_node, last, sizeof last);
  char why[2600];
  web_html(srv->leader_why, why, sizeof why);
  if (ld.addr[0])
    web_printf(b,
               "<div id=\"standby\" class=\"banner\" role=\"alert\">STANDBY — this controller "
               "is not routing; the leader is %s (epoch %llu)</div>\n",
               addr, (unsigned long long)ld.epoch);
  else if (why[0])
    web_printf(b,
               "<div id=\"standby\" class=\"banner noleader\" role=\"alert\">STANDBY — this "
               "controller is not routing, and %s</div>\n",
               why);
  else if (ld.epoch)
    web_printf(b,
               "<div id=\"standby\" class=\"banner noleader\" role=\"alert\">STANDBY — this "
               "controller is not routing, and no leader is known right now: an election is "
               "running (the last leader was %s, epoch %llu)</div>\n",
               last[0] ? last : "unknown", (unsigned long long)ld.epoch);
  else
    web_printf(b, "<div id=\"standby\" class=\"banner noleader\" role=\"alert\">STANDBY — this "
                  "controller is not routing, and no leader is known yet: an election is "
                  "running</div>\n");
  web_printf(b,
             "<p id=\"standby-note\">Controller %s has no view of the %zu sites: their agents "
             "report to the leader, so none is listed here. For the network's state open the "
             "leader's status page, or run <code>nircctl status</code> (it follows the standby "
             "to the leader). Read-only; refreshes every 2 s.</p>\n</body></html>\n",
             node, srv->sites.n);
}

/* The alarm banner: what needs a person, above everything else. */
static void web_alarms_html(const server_t *srv, web_buf_t *b) {
  const alarm_table_t *at = srv->engine ? engine_alarms(srv->engine) : NULL;
  size_t n = at ? alarm_count(at) : 0, unacked = 0;
  for (size_t k = 0; k < n; k++)
    if (!alarm_at(at, k)->acked_wall_ms) unacked++;
  if (!n) {
    web_printf(b, "<p id=\"alarms-none\">No active alarms.</p>\n");
    return;
  }
  web_printf(b,
             "<div id=\"alarms\" class=\"banner noleader\" role=\"alert\">%zu ACTIVE ALARM%s "
             "(%zu not acknowledged) — <code>nircctl alarms</code></div>\n"
             "<table id=\"alarm-list\"><tr><th>id</th><th>kind</th><th>subject</th>"
             "<th>raised</th><th>ack</th><th>message</th></tr>\n",
             n, n == 1 ? "" : "S", unacked);
  for (size_t k = 0; k < n && k < WEB_PAGE_ALARMS; k++) {
    const alarm_t *a = alarm_at(at, k);
    char subject[200], msg[1200], raised[40], by[200], quiet[200];
    alarm_seen_t seen = engine_alarm_seen(srv->engine, a);
    alarm_seen_words(seen.quiet, seen.adopted_unseen, seen.ago_ms, seen.clears_in_ms, quiet,
                     sizeof quiet);
    web_html(a->subject, subject, sizeof subject);
    web_html(a->message, msg, sizeof msg);
    web_html(a->acked_by, by, sizeof by);
    clock_format_iso(a->raised_wall_ms, 0, raised, sizeof raised);
    web_printf(b,
               "<tr class=\"alarm %s\" data-id=\"%llu\"><td>%llu</td><td>%s</td><td>%s</td>"
               "<td>%s</td><td>%s</td><td>%s%s%s%s</td></tr>\n",
               alarm_entry_severity(a), (unsigned long long)a->id, (unsigned long long)a->id,
               alarm_kind_name(a->kind), subject, raised, a->acked_wall_ms ? by : "no", msg,
               quiet[0] ? " <em class=\"quiet\">(" : "", quiet, quiet[0] ? ")</em>" : "");
  }
  if (n > WEB_PAGE_ALARMS)
    web_printf(b,
               "<tr id=\"alarms-more\"><td colspan=\"6\">and %zu more, not listed here: "
               "<code>nircctl alarms</code> lists them all</td></tr>\n",
               n - WEB_PAGE_ALARMS);
  web_printf(b, "</table>\n");
}

/* "hubei, guizhou, fujian +19 more" (raw: the caller escapes it). */
static void web_slugs(const slug_list_t *l, size_t show, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (unsigned k = 0; k < l->n && k < show && used < len; k++)
    used += (size_t)snprintf(buf + used, len - used, "%s%s", k ? ", " : "", l->v[k]);
  if (l->n > show && used < len) snprintf(buf + used, len - used, " +%zu more", l->n - show);
}

/* What comes next, as `nircctl next` lists it: the next 24 business hours
 * of schedule starts (with the capacity the plan path predicts at each
 * hub), ends, skipped windows and cutover expiries. */
#define WEB_NEXT_MAX 64
static void web_next_html(server_t *srv, web_buf_t *b) {
  engine_t *e = srv->engine;
  if (!e) return;
  static engine_next_t ev[WEB_NEXT_MAX];
  int64_t now = clock_now_ms(&srv->clock);
  size_t n = engine_next_events(e, now + 24 * 3600000LL, ev, WEB_NEXT_MAX);
  web_printf(b, "<h2>Next 24 h <small>(%s)</small></h2>\n", srv->conf->http_tz);
  if (!n) {
    web_printf(b, "<p id=\"next-none\">Nothing in the next 24 h: no schedule starts or ends, no "
                  "cutover expires.</p>\n");
    return;
  }
  web_printf(b, "<table id=\"next\"><tr><th>when</th><th>rule</th><th>event</th><th>what</th>"
                "<th>predicted at the hubs</th></tr>\n");
  for (size_t k = 0; k < n; k++) {
    char when[32], rule[200], what[600], pred[600] = "", h_rule[400], h_what[1200];
    web_when(srv, ev[k].at_ms, when, sizeof when);
    const schedule_t *s = engine_next_schedule(e, &ev[k]);
    const cutover_t *c = engine_next_cutover(e, &ev[k]);
    char src[300] = "", hubs[300] = "";
    if (s) {
      snprintf(rule, sizeof rule, "schedule %s", s->name);
      web_slugs(&s->sources, 6, src, sizeof src);
      web_slugs(&s->hubs, 4, hubs, sizeof hubs);
    } else if (c) {
      snprintf(rule, sizeof rule, "cutover %llu", (unsigned long long)c->id);
      web_slugs(&c->sources, 6, src, sizeof src);
      web_slugs(&c->hubs, 4, hubs, sizeof hubs);
    } else {
      continue;
    }
    const char *word = "";
    switch (ev[k].kind) {
    case ENGINE_NEXT_START: {
      word = "starts";
      unsigned waves =
          s->wave_size ? (unsigned)((s->sources.n + s->wave_size - 1) / s->wave_size) : 1;
      char end[32] = "";
      if (ev[k].end_ms) web_when(srv, ev[k].end_ms, end, sizeof end);
      snprintf(what, sizeof what, "%u sources (%s) to %s, %u wave%s, until %s", s->sources.n, src,
               hubs, waves, waves == 1 ? "" : "s", end);
      engine_next_hub_t hp[8];
      size_t nh = engine_next_predict_hubs(e, &ev[k], hp, 8);
      webrow_next_text(hp, nh, pred, sizeof pred);
      break;
    }
    case ENGINE_NEXT_END:
      word = "ends";
      snprintf(what, sizeof what, "%u sources (%s) go home from %s", s->sources.n, src, hubs);
      break;
    case ENGINE_NEXT_SKIP: {
      word = "skipped";
      char why[RULES_REASON_MAX];
      rules_window_reason(s, &ev[k].window, why, sizeof why);
      snprintf(what, sizeof what, "the window does not run: %s", why);
      break;
    }
    case ENGINE_NEXT_EXPIRY:
      word = "expires";
      snprintf(what, sizeof what, "%s back from %s: %s", src, hubs, c->reason);
      break;
    }
    /* Names and reasons are operators' text: escaped for HTML. */
    web_html(rule, h_rule, sizeof h_rule);
    web_html(what, h_what, sizeof h_what);
    web_printf(b,
               "<tr class=\"next\" data-kind=\"%s\" data-at=\"%lld\"><td>%s</td><td>%s</td>"
               "<td>%s</td><td>%s</td><td>%s</td></tr>\n",
               engine_next_kind_name(ev[k].kind), (long long)ev[k].at_ms, when, h_rule, word,
               h_what, pred);
  }
  web_printf(b, "</table>\n");
}

#define WEB_PAGE_SITES    200 /* above, the page lists the problem sites only */
#define WEB_PAGE_PROBLEMS 50

static void web_page(server_t *srv, const char *svg, int64_t now_real, web_buf_t *b) {
  web_printf(b,
             "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             "<meta http-equiv=\"refresh\" content=\"2\"><title>NIRC status%s</title>"
             "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
             "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}"
             ".online{color:#196127}.stale{color:#b36b00}.offline,.never-seen{color:#b00020}"
             ".banner{padding:.6em 1em;font-size:1.4em;font-weight:bold;background:#fff3cd;"
             "border:2px solid #b36b00}.noleader{background:#fde2e1;border-color:#b00020}"
             "span.held{color:#b00020;font-weight:bold}"
             "</style></head><body>\n<h1>NIRC status</h1>\n",
             web_leading(srv) ? "" : " — STANDBY");
  if (!web_leading(srv)) {
    web_standby_page(srv, b);
    return;
  }
  size_t online = 0, stale = 0, other = 0;
  for (size_t i = 0; i < srv->sites.n; i++) {
    site_state_t st = srv->sites.v[i].state;
    if (srv->sites.v[i].life == SITE_REMOVED) continue;
    if (st == SITE_ONLINE)
      online++;
    else if (st == SITE_STALE)
      stale++;
    else
      other++;
  }
  web_printf(b,
             "<p id=\"summary\">controller %s leads, epoch %llu: %zu sites, <b>%zu online</b>, %zu "
             "stale, %zu offline or never seen. Read-only; refreshes every 2 s.</p>\n",
             srv->conf->node, (unsigned long long)srv->epoch, sites_live(&srv->sites), online,
             stale, other);
  web_alarms_html(srv, b);
  if (svg) {
    /* Inline, after the XML declaration if any, so the page is one file. */
    const char *start = strstr(svg, "<svg");
    web_printf(b, "<div id=\"map\">%s</div>\n", start ? start : svg);
  }
  web_next_html(srv, b);
  /* Up to WEB_PAGE_SITES sites, a row each; beyond, the sites that need
   * a look (at most WEB_PAGE_PROBLEMS) and where the rest are. */
  size_t live = sites_live(&srv->sites), n = srv->sites.n;
  statusq_result_t q = {0};
  bool big = live > WEB_PAGE_SITES;
  /* Every page: the senders of each hub are statusq's, as status counts
   * them (a big page also takes its problem rows from it). */
  statusq_site_t *facts = calloc(n ? n : 1, sizeof *facts);
  if (facts) ops_status_facts(srv, facts, n);
  statusq_filter_t f = {.problems = big, .limit = big ? WEB_PAGE_PROBLEMS : 0};
  if (!facts || statusq_run(facts, n, ops_status_find, &srv->sites, &f, &q) != 0) {
    free(facts);
    web_printf(b, "<p>out of memory for the site table</p></body></html>\n");
    return;
  }
  if (big) {
    web_printf(b,
               "<p id=\"paging\"><b>%zu sites: too many for a row each.</b> The %zu of %zu "
               "problem sites first (not online, PBX unreadable, a note, excluded or alarmed); "
               "the rest: <a href=\"/status.json?problems=1&amp;limit=100&amp;offset=%zu\">"
               "/status.json?problems=1&amp;limit=100&amp;offset=%zu</a>, every site a page at a "
               "time: <a href=\"/status.json?limit=1000&amp;offset=0\">/status.json?limit=1000"
               "&amp;offset=0</a> (filters: state, problems, moved, hub, match).</p>\n",
               live, q.n_rows, q.matched, q.n_rows, q.n_rows);
  }
  web_printf(b, "<table id=\"sites\"><tr><th>site</th><th>name</th><th>link</th><th>queue</th>"
                "<th>agents in/ready</th><th>route</th><th>rule</th></tr>\n");
  bool hub_rows = false; /* a row says "hub for N sites" */
  for (size_t k = 0; k < (big ? q.n_rows : n); k++) {
    size_t i = big ? q.rows[k] : k;
    const site_t *s = &srv->sites.v[i];
    if (s->life == SITE_REMOVED) continue;
    webrow_site_t w;
    char rule_text[600], row[WEBROW_HTML_MAX];
    webrow_facts(srv->engine, s, i, &w);
    if (web_rule_text(srv, i, q.senders[i], rule_text, sizeof rule_text)) hub_rows = true;
    w.rule_text = rule_text;
    w.now_real = now_real;
    webrow_html(&w, row, sizeof row);
    web_printf(b, "%s", row);
  }
  web_printf(b, "</table>\n");
  char said[300], esc[600];
  webrow_not_known_text(q.route_unknown, hub_rows, said, sizeof said);
  if (said[0]) {
    webrow_escape(said, esc, sizeof esc);
    web_printf(b, "<p id=\"not-known\">%s</p>\n", esc);
  }
  web_printf(b, "</body></html>\n");
  statusq_result_free(&q);
  free(facts);
}

/* A document that could not be built (out of memory, or past
 * WEB_BUF_MAX): its readers are told so with a 500, never served the old
 * copy as if it were current, and the log says it once per failure. */
static void web_failed(server_t *srv, const char *path) {
  char why[200];
  snprintf(why, sizeof why,
           "nircd could not build %s: out of memory or larger than %u MiB. See nircd's log; "
           "nircctl status and nircctl alarms ask it directly.\n",
           path, WEB_BUF_MAX >> 20);
  log_error(LOG_MAIN, srv->conf->node, "could not build %s (out of memory or larger than %u MiB)",
            path, WEB_BUF_MAX >> 20);
  httpd_publish_failed(srv->http, path, why);
}

/* Publishes what b holds at path, or that it could not be built; frees b. */
static void web_publish_buf(server_t *srv, const char *path, const char *type, web_buf_t *b) {
  if (!b->failed && b->p)
    httpd_publish(srv->http, path, type, b->p, b->len);
  else
    web_failed(srv, path);
  free(b->p);
  b->p = NULL;
}

void web_publish(server_t *srv) {
  httpd_t *h = srv->http;
  if (!h) return;
  /* The map's label layout is quadratic in the sites: at 31 it is nothing,
   * at 1,000 it was most of nircd's CPU when drawn every second. It may be
   * n/50 s old (1 s up to 50 sites); beyond MAPGROUP_DETAIL_MAX sites it is
   * aggregated (one marker per group) and its cost no longer grows. The
   * page embeds the map, so it is as old. */
  size_t drawn = srv->sites.n < MAPGROUP_DETAIL_MAX ? srv->sites.n : MAPGROUP_DETAIL_MAX;
  unsigned map_age_ms = (unsigned)(drawn / 50 + 1) * WEB_FRESH_MS;
  httpd_set_max_age(h, "/status.json", WEB_FRESH_MS);
  httpd_set_max_age(h, "/metrics", WEB_FRESH_MS);
  /* A standby's /map.svg stays unpublished (404) until it leads. */
  httpd_set_max_age(h, "/map.svg", web_leading(srv) ? map_age_ms : 0);
  httpd_set_max_age(h, "/", map_age_ms);
  int64_t now_real = clock_real_ms();
  if (httpd_take_wanted(h, "/status.json")) {
    srv->web_built[WEB_DOC_STATUS]++;
    web_publish_status(srv, now_real);
  }
  if (httpd_take_wanted(h, "/metrics")) {
    srv->web_built[WEB_DOC_METRICS]++; /* this copy counts itself */
    web_buf_t m = {0};
    web_metrics(srv, now_real, &m);
    web_publish_buf(srv, "/metrics", "text/plain; version=0.0.4; charset=utf-8", &m);
  }
  /* Both or neither: the page shows the map it was drawn with. */
  int want_map = httpd_take_wanted(h, "/map.svg");
  if (!httpd_take_wanted(h, "/") && !want_map) return;
  /* A standby draws no map: every site would show as never seen, with no
   * move (web_standby_page says why); /map.svg stays absent until it leads. */
  char *svg = web_leading(srv) ? web_map(srv) : NULL;
  if (svg) srv->web_built[WEB_DOC_MAP]++;
  srv->web_built[WEB_DOC_PAGE]++;
  if (svg) httpd_publish(h, "/map.svg", "image/svg+xml", svg, strlen(svg));
  web_buf_t page = {0};
  web_page(srv, svg, now_real, &page);
  web_publish_buf(srv, "/", "text/html; charset=utf-8", &page);
  free(svg);
}
