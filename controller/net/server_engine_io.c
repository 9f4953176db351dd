/* server_engine_io: the routing engine's I/O (engine_io_t) as the
 * controller does it: clocks, directives, replies and progress to links,
 * records to the store, alarms to the log and the webhook; and the
 * observations the engine is fed before each tick (duplicate agents,
 * refused reports, the database's state). Part of the server module
 * (server.h). */
#include "server.h"

#include "err.h"
#include "jsonio.h"
#include "leader.h"
#include "log.h"
#include "store.h"
#include "util.h"
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t server_io_mono(void *ctx) {
  server_t *srv = ctx;
  return uv_now(srv->loop);
}

static int64_t server_io_now(void *ctx) {
  server_t *srv = ctx;
  return clock_now_ms(&srv->clock);
}

static int64_t server_io_wall(void *ctx) {
  return clock_real_ms();
}

static bool server_io_may_issue(void *ctx) {
  return server_may_issue(ctx) != 0;
}

static void server_io_directive(void *ctx, size_t site_index, const Nirc__Directive *d) {
  server_t *srv = ctx;
  conn_t *c = srv->sites.v[site_index].conn;
  if (!c) return;
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_DIRECTIVE;
  env.directive = (Nirc__Directive *)d;
  link_send(c->link, &env);
}

/* An operator client is the conn_t of its link; the engine only holds it
 * until engine_on_client_closed (server_on_close). */
static void server_io_reply(void *ctx, void *client, const Nirc__OperatorReply *rep) {
  conn_t *c = client;
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REPLY;
  env.operator_reply = (Nirc__OperatorReply *)rep;
  link_send(c->link, &env);
}

static void server_io_progress(void *ctx, void *client, const Nirc__Progress *p) {
  conn_t *c = client;
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_PROGRESS;
  env.progress = (Nirc__Progress *)p;
  link_send(c->link, &env);
}

static int server_io_store_ready(void *ctx, char *why, size_t whylen) {
  server_t *srv = ctx;
  if (!srv->db) {
    snprintf(why, whylen, "the controller has no database client");
    return NIRC_ECLOSED;
  }
  return db_once_ready(srv->db, why, whylen);
}

/* Alarm notifications: one JSON POST per raise, clear and acknowledgement
 * to every [notify] webhook URL (notify/webhook.h: in order per URL, never
 * blocking the loop, retried with backoff). The event id lets a receiver
 * drop the duplicate a retry after a lost answer can bring. */
static void server_notify_alarm(server_t *srv, alarm_event_t ev, const alarm_t *a) {
  if (!srv->webhook) return;
  char raised[40], now[40], acked[40] = "", id[64];
  clock_format_iso(a->raised_wall_ms, 0, raised, sizeof raised);
  clock_format_iso(clock_real_ms(), 0, now, sizeof now);
  if (a->acked_wall_ms) clock_format_iso(a->acked_wall_ms, 0, acked, sizeof acked);
  json_t *alarm = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "id", (json_int_t)a->id, "kind",
                            alarm_kind_name(a->kind), "subject", a->subject, "severity",
                            alarm_entry_severity(a), "message", a->message, "raised_at", raised);
  if (alarm && a->acked_wall_ms) {
    json_object_set_new(alarm, "acked_at", json_string(acked));
    json_object_set_new(alarm, "acked_by", json_string(a->acked_by));
  }
  json_t *body = json_pack("{s:s, s:s, s:s, s:I, s:o}", "event", alarm_event_name(ev), "at", now,
                           "controller", srv->conf->node, "epoch", (json_int_t)srv->epoch, "alarm",
                           alarm ? alarm : json_null());
  char *text = body ? jsonio_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
  snprintf(id, sizeof id, "alarm-%llu-%s", (unsigned long long)a->id, alarm_event_name(ev));
  int rc = text ? webhook_post(srv->webhook, id, text) : NIRC_ENOMEM;
  if (rc != 0)
    log_error(LOG_MAIN, a->subject, "alarm %llu %s: not queued for the webhooks: %s",
              (unsigned long long)a->id, alarm_event_name(ev), nirc_strerror(rc));
  free(text);
  json_decref(body);
}

/* One line per raise, clear and acknowledgement (not one per check while
 * a condition lasts), and the webhooks. */
static void server_io_alarm(void *ctx, alarm_event_t ev, const alarm_t *a) {
  server_t *srv = ctx;
  const char *kind = alarm_kind_name(a->kind);
  switch (ev) {
  case ALARM_EV_RAISED:
    log_error(LOG_MAIN, a->subject, "ALARM %llu raised (%s, %s): %s", (unsigned long long)a->id,
              kind, alarm_entry_severity(a), a->message);
    break;
  case ALARM_EV_CLEARED:
    log_info(LOG_MAIN, a->subject, "alarm %llu cleared (%s, raised %llu s ago): last: %s",
             (unsigned long long)a->id, kind,
             (unsigned long long)((clock_real_ms() - a->raised_wall_ms) / 1000), a->message);
    break;
  case ALARM_EV_ACKED:
    log_info(LOG_MAIN, a->subject, "alarm %llu (%s) acknowledged by %s", (unsigned long long)a->id,
             kind, a->acked_by);
    break;
  case ALARM_EV_BACKDATED: {
    /* Not a new condition: the receivers heard its raise, and its clear
     * carries the since as it is then. */
    char since[40];
    clock_format_iso(a->raised_wall_ms, 0, since, sizeof since);
    log_warn(LOG_MAIN, a->subject,
             "alarm %llu (%s) since %s: an earlier sighting reported late: %s",
             (unsigned long long)a->id, kind, since, a->message);
    return;
  }
  }
  server_notify_alarm(srv, ev, a);
}

/* The controller's own conditions, observed on every tick while it leads:
 * the database unreachable (past a query timeout: a blip is not an
 * alarm), and the journal over 80 % of its size or refusing writes. */
#define SERVER_DB_ALARM_AFTER_MS 5000
#define SERVER_JOURNAL_ALARM_PCT 80
/* Two agents claiming one site: the alarm stands for a minute after the
 * last refused claim (the second agent retries within its backoff). */
#define SERVER_DUPLICATE_ALARM_MS 60000
static void server_observe_duplicates(server_t *srv) {
  int64_t now = clock_real_ms();
  /* No site's duplicate is recent enough: nothing to scan for (the scans
   * below ran over every site five times a second, which at 20,000
   * configured sites cost more than the rest of an idle controller). */
  if (!srv->last_duplicate_ms || now - srv->last_duplicate_ms >= SERVER_DUPLICATE_ALARM_MS) return;
  for (size_t i = 0; srv->engine && i < srv->sites.n; i++) {
    const site_t *s = &srv->sites.v[i];
    if (!s->duplicate_ms || now - s->duplicate_ms >= SERVER_DUPLICATE_ALARM_MS) continue;
    char msg[ALARM_MESSAGE_MAX];
    snprintf(msg, sizeof msg,
             "two agents claim %s: %s (live) and %s (refused, last %lld s ago): a copied "
             "certificate or an old agent host still running; stop the wrong one, and revoke "
             "the certificate if it was not ours",
             s->slug, s->peer_addr, s->duplicate_addr, (long long)((now - s->duplicate_ms) / 1000));
    engine_alarm_observe(srv->engine, ALARM_IDENTITY, s->slug, msg);
  }
}

/* Reports refused as implausible: the alarm stands for a minute after the
 * last one (an agent reports every few seconds, so a liar keeps it up). */
#define SERVER_REPORT_ALARM_MS 60000
static void server_observe_reports(server_t *srv) {
  int64_t now = clock_real_ms();
  if (!srv->last_refused_ms || now - srv->last_refused_ms >= SERVER_REPORT_ALARM_MS) return;
  for (size_t i = 0; srv->engine && i < srv->sites.n; i++) {
    const site_t *s = &srv->sites.v[i];
    if (!s->refused_ms || now - s->refused_ms >= SERVER_REPORT_ALARM_MS) continue;
    char msg[ALARM_MESSAGE_MAX];
    snprintf(msg, sizeof msg, "%s; its reports are refused (not its load, never planned on)",
             s->refused_why);
    engine_alarm_observe(srv->engine, ALARM_REPORT, s->slug, msg);
  }
}

/* Agents on a wrong clock: the alarm stands for a minute after the last
 * report that showed it (one a second while it lasts). */
#define SERVER_CLOCK_ALARM_MS 60000
static void server_observe_clocks(server_t *srv) {
  int64_t now = clock_real_ms();
  if (!srv->last_clock_offset_ms || now - srv->last_clock_offset_ms >= SERVER_CLOCK_ALARM_MS)
    return;
  for (size_t i = 0; srv->engine && i < srv->sites.n; i++) {
    const site_t *s = &srv->sites.v[i];
    if (!s->clock_offset_seen_ms || now - s->clock_offset_seen_ms >= SERVER_CLOCK_ALARM_MS)
      continue;
    char msg[ALARM_MESSAGE_MAX];
    snprintf(msg, sizeof msg,
             "%s's agent clock is %.0f s %s this controller's (its reports' timestamps): its "
             "agent keeps revert_at on the controller's clock while it runs, but restarted "
             "without a controller it would end moves %s; fix the host's clock (NTP)",
             s->slug, (double)llabs(s->clock_offset_ms) / 1000.0,
             s->clock_offset_ms > 0 ? "ahead of" : "behind",
             s->clock_offset_ms > 0 ? "early" : "late");
    engine_alarm_observe(srv->engine, ALARM_CLOCK, s->slug, msg);
  }
}

/* Alarm notifications a webhook gave up: their receivers (a pager, a
 * chat) did not hear of some alarms, and nothing else would tell the
 * people who rely on them. Observed for 10 minutes after the last loss,
 * like the other "in the last ..." alarms; lost notifications are not
 * re-sent (docs/OPERATIONS.md). */
#define SERVER_NOTIFY_ALARM_MS 600000u

static void server_observe_notify(server_t *srv, uint64_t now) {
  if (!srv->webhook) return;
  webhook_stats_t ws;
  webhook_stats_total(srv->webhook, &ws);
  uint64_t lost = ws.given_up + ws.dropped;
  if (lost > srv->notify_lost_seen) {
    srv->notify_lost_seen = lost;
    srv->notify_lost_ms = now;
  }
  if (!srv->notify_lost_ms || now - srv->notify_lost_ms >= SERVER_NOTIFY_ALARM_MS) return;
  char msg[ALARM_MESSAGE_MAX];
  snprintf(msg, sizeof msg,
           "%llu alarm notification%s to the webhooks lost (given up or dropped) since this "
           "controller started, the last within 10 minutes: their receivers missed some "
           "alarms; `nircctl alarms` lists them all, the log says which were lost",
           (unsigned long long)lost, lost == 1 ? "" : "s");
  engine_alarm_observe(srv->engine, ALARM_NOTIFY, srv->conf->node, msg);
}

/* Leadership conditions the election thread finds (store/leader.c),
 * decided in elect.c: leading but issuing nothing (leadership), the sites
 * table unreadable (sites_load), a given-up rule load's backend holding
 * the rule tables, this controller's or another's (rule_load). Also
 * called while the leader may issue nothing (server.c's tick), which is
 * when the first of them holds. A standby has no alarm table: /metrics
 * (nirc_rule_load_stuck_backend) and its answers say its own stuck load
 * (server_stuck_note). */
void server_observe_leadership(server_t *srv) {
  static const alarm_kind_t kinds[ELECT_ALARM_COUNT] = {
      [ELECT_ALARM_QUIET] = ALARM_LEADERSHIP,
      [ELECT_ALARM_SITES] = ALARM_SITES_LOAD,
      [ELECT_ALARM_RULE_LOAD] = ALARM_RULE_LOAD,
  };
  elect_health_t health;
  leader_health(srv->leader, &health);
  uint64_t mono = uv_hrtime() / 1000000u; /* the election thread's clock (leader_mono_ms) */
  for (int a = 0; srv->engine && a < ELECT_ALARM_COUNT; a++) {
    char words[ALARM_MESSAGE_MAX];
    if (elect_alarm_words(&health, (elect_alarm_t)a, mono, srv->conf->lease_timeout_ms, words,
                          sizeof words))
      engine_alarm_observe(srv->engine, kinds[a], srv->conf->node, words);
  }
}

bool server_quiet_words(server_t *srv, char *out, size_t n, const char **blocked) {
  elect_health_t health;
  leader_health(srv->leader, &health);
  /* Its old session holding the lock is what a standby names leader_lock
   * (the same fix): nircctl then stops asking and says the fix. */
  *blocked = health.old_pid ? leader_block_name(LEADER_BLOCK_LEADER_LOCK) : NULL;
  return elect_alarm_words(&health, ELECT_ALARM_QUIET, uv_hrtime() / 1000000u,
                           srv->conf->lease_timeout_ms, out, n);
}

void server_observe_store(server_t *srv) {
  server_observe_duplicates(srv);
  server_pbx_observe(srv);
  server_observe_reports(srv);
  server_observe_clocks(srv);
  server_observe_leadership(srv);
  if (!srv->engine || !srv->db) return;
  const char *node = srv->conf->node;
  db_journal_stats_t js;
  db_journal_stats(srv->db, &js);
  uint64_t down = db_unreachable_ms(srv->db);
  char msg[ALARM_MESSAGE_MAX];
  uint64_t now = clock_real_ms();
  if (js.refused_total + js.shed_total != srv->journal_refused_seen) {
    srv->journal_refused_seen = js.refused_total + js.shed_total;
    srv->journal_refused_mono = (uint64_t)now;
  }
  if (down >= SERVER_DB_ALARM_AFTER_MS ||
      (down > 0 && engine_alarm_active(srv->engine, ALARM_DATABASE, node))) {
    /* Not "writes wait" when some could not: those are lost (counted). */
    snprintf(msg, sizeof msg,
             "the database has been unreachable for %llu s: routing continues on memory; "
             "writes wait in the journal (%llu records, %llu bytes)%s",
             (unsigned long long)(down / 1000), (unsigned long long)js.records,
             (unsigned long long)js.bytes,
             js.refused_total + js.shed_total ? "; some were refused or shed: see the journal alarm"
                                              : "");
    engine_alarm_observe(srv->engine, ALARM_DATABASE, node, msg);
  }
  uint64_t max = srv->conf->journal_max;
  bool filling = srv->conf->journal[0] && max && js.bytes * 100 >= max * SERVER_JOURNAL_ALARM_PCT;
  bool refusing = srv->journal_refused_mono && (uint64_t)now - srv->journal_refused_mono < 60000;
  if (filling || refusing) {
    /* The fix named is the one that helps: room under journal_max does
     * nothing for a file its file system cannot write. */
    snprintf(msg, sizeof msg,
             "the outage journal holds %llu of %llu bytes (%llu%%); %llu writes refused and %llu "
             "history writes shed so far: %s",
             (unsigned long long)js.bytes, (unsigned long long)max,
             (unsigned long long)(max ? js.bytes * 100 / max : 0),
             (unsigned long long)js.refused_total, (unsigned long long)js.shed_total,
             refusing && js.refused_unwritable
                 ? "its file cannot be written (the log says why): free space on its file "
                   "system, or restore the database"
                 : "restore the database or give [database] journal_max more room");
    engine_alarm_observe(srv->engine, ALARM_JOURNAL, node, msg);
  }
  server_observe_notify(srv, now);
}

void server_stuck_note(server_t *srv, char *out, size_t n) {
  elect_stuck_t st;
  if (!n) return;
  out[0] = '\0';
  if (!leader_stuck(srv->leader, &st)) return;
  char words[ALARM_MESSAGE_MAX];
  elect_stuck_words(&st, words, sizeof words);
  snprintf(out, n, "; also: %s", words);
}

static int server_io_store(void *ctx, const engine_rec_t *rec, engine_stored_cb done, void *arg) {
  server_t *srv = ctx;
  if (!srv->db) return NIRC_ECLOSED;
  int rc = store_engine_record(srv->db, rec, done, arg);
  if (rc != 0) server_dropped(srv, rc);
  return rc;
}

void server_engine_io(server_t *srv, engine_io_t *io) {
  *io = (engine_io_t){
      .ctx = srv,
      .mono_ms = server_io_mono,
      .now_ms = server_io_now,
      .wall_ms = server_io_wall,
      .may_issue = server_io_may_issue,
      .send_directive = server_io_directive,
      .send_reply = server_io_reply,
      .send_progress = server_io_progress,
      .store = server_io_store,
      .store_ready = server_io_store_ready,
      .on_alarm = server_io_alarm,
  };
}
