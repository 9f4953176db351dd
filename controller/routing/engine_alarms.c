/* engine_alarms: the engine's alarms (alarm.h) — what it observes on every
 * evaluation (sources no hub can take, rules that cannot run, failed
 * directives, sites down), the records and notifications of each raise,
 * clear and acknowledgement, and the operator's `nircctl alarms`. Part of
 * the engine module (engine-int.h); no I/O: records leave through
 * engine_store, notifications through engine_io_t.on_alarm. */
#include "engine-int.h"

#include "clock.h"
#include "err.h"
#include "log.h"
#include "tz.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An evaluation older than this did not observe the current conditions:
 * the sweep waits (a planner out of memory must not clear every alarm). */
#define ENGINE_ALARM_FRESH_MS      1000
#define ENGINE_ALARM_TICK_QUIET_MS 2000
/* How long a source sent home as no rule's (ROUTE_CAUSE_NO_RULE) keeps its routing alarm. */
#define ENGINE_NO_RULE_ALARM_MS 600000u

void engine_alarm_event(void *arg, alarm_event_t ev, const alarm_t *a, int64_t wall_ms) {
  (void)wall_ms;
  engine_t *e = arg;
  /* Durable like every statement NIRC makes: the raise, the clear and the
   * acknowledgement are rows of `alarms`, journaled while the database is
   * away (then replayed in order: a clear never lands before its raise). */
  engine_rec_t rec = {.kind = ENGINE_REC_ALARM, .alarm = a, .alarm_event = ev};
  if (engine_store(e, &rec) != 0)
    log_error(LOG_DB, ENGINE_OBJ, "alarm %llu %s not stored", (unsigned long long)a->id,
              alarm_event_name(ev));
  if (e->io.on_alarm) e->io.on_alarm(e->io.ctx, ev, a);
}

static void engine_observe(engine_t *e, alarm_kind_t kind, const char *subject,
                           const char *message) {
  alarm_observe(&e->alarms, kind, subject, message, engine_mono(e), e->io.wall_ms(e->io.ctx),
                engine_now(e));
}

void engine_alarm_observe(engine_t *e, alarm_kind_t kind, const char *subject,
                          const char *message) {
  engine_observe(e, kind, subject, message);
}

void engine_alarm_observe_sev(engine_t *e, alarm_kind_t kind, const char *subject,
                              const char *message, bool critical) {
  alarm_observe_sev(&e->alarms, kind, subject, message, critical, engine_mono(e),
                    e->io.wall_ms(e->io.ctx), engine_now(e));
}

/* A sighting `ago_ms` before now, standing `hold_ms` after it (wall and
 * business time: the business clock may run faster). */
static alarm_late_t engine_late(const engine_t *e, int64_t ago_ms, int64_t hold_ms,
                                const char *when) {
  double speed = e->opts.clock_speed >= 1 ? e->opts.clock_speed : 1;
  int64_t seen = e->io.wall_ms(e->io.ctx) - ago_ms;
  return (alarm_late_t){.seen_wall_ms = seen,
                        .seen_business_ms = engine_now(e) - (int64_t)((double)ago_ms * speed),
                        .held_wall_ms = seen + hold_ms,
                        .when = when};
}

void engine_alarm_observe_since(engine_t *e, alarm_kind_t kind, const char *subject,
                                const char *message, bool critical, int64_t ago_ms, int64_t hold_ms,
                                const char *when) {
  alarm_late_t late = engine_late(e, ago_ms, hold_ms, when);
  alarm_observe_late(&e->alarms, kind, subject, message, critical, engine_mono(e),
                     e->io.wall_ms(e->io.ctx), engine_now(e), ago_ms > 0 ? &late : NULL);
}

bool engine_alarm_active(const engine_t *e, alarm_kind_t kind, const char *subject) {
  return alarm_find(&e->alarms, kind, subject) != NULL;
}

const alarm_table_t *engine_alarms(const engine_t *e) {
  return &e->alarms;
}

/* Words every no-rule alarm has, as raised or reworded (engine_no_rule_reword). */
#define ENGINE_NO_RULE_MARK "under a rule the database does not have"

int engine_load_alarms(engine_t *e, const alarm_t *a, size_t n) {
  int rc = alarm_adopt(&e->alarms, a, n, engine_mono(e));
  /* A no-rule alarm is stored with the words it was raised with ("is
   * being sent home"): the site's state then, not now. */
  for (size_t k = 0; rc == 0 && k < n; k++) {
    long i = a[k].kind == ALARM_ROUTING && strstr(a[k].message, ENGINE_NO_RULE_MARK)
                 ? engine_index(e, a[k].subject)
                 : -1;
    if (i >= 0) e->dirs[i].no_rule_adopted = true;
  }
  return rc;
}

/* An earlier leader's no-rule alarm for site i, reworded by what this
 * leader knows: the site's route as its agent said it at its Hello, or
 * that it has not said it yet. The hub and epochs come from the stored
 * words and the alarm's id (epoch * ALARM_ID_EPOCH + sequence). */
static void engine_no_rule_reword(engine_t *e, size_t i) {
  site_dir_t *d = &e->dirs[i];
  const char *slug = engine_site(e, i)->slug;
  const alarm_t *a = alarm_find(&e->alarms, ALARM_ROUTING, slug);
  if (!a || !strstr(a->message, ENGINE_NO_RULE_MARK)) {
    d->no_rule_adopted = false; /* cleared, or another condition's now */
    return;
  }
  char hub[32] = "a hub";
  unsigned long long from = 0;
  const char *t = strstr(a->message, ": its route to ");
  if (!t || sscanf(t, ": its route to %31s came from the leader of epoch %llu", hub, &from) != 2) {
    snprintf(hub, sizeof hub, "a hub"); /* words this version did not write: said generally */
    from = 0;
  }
  bool home = d->known && route_share_of(&d->acked, slug) >= 1000;
  char msg[ALARM_MESSAGE_MAX], of[48] = "";
  if (from) snprintf(of, sizeof of, " of epoch %llu", from);
  snprintf(msg, sizeof msg,
           "%s %s at the takeover of epoch %llu (%s): its route to %s came from the "
           "leader%s " ENGINE_NO_RULE_MARK "; make it again if still wanted",
           slug,
           !d->known ? "was to be sent home"
           : home    ? "was sent home"
                     : "was not sent home",
           (unsigned long long)(a->id / ALARM_ID_EPOCH),
           !d->known ? "not known if it went: no Hello here yet"
           : home    ? "its agent says it is home"
                     : "its agent says it is still away",
           hub, of);
  alarm_reword(&e->alarms, ALARM_ROUTING, slug, msg);
}

static const char *engine_down_words(site_state_t s) {
  switch (s) {
  case SITE_NEVER_SEEN: return "has not connected to this controller";
  case SITE_STALE: return "sends no reports";
  case SITE_OFFLINE: return "is offline";
  case SITE_ONLINE: break;
  }
  return "is down";
}

/* How long a site has been down, in words whose last unit is the one
 * that changes: seconds for two minutes, then minutes for two hours, then
 * hours (rounded down, so never more than it was). Returns a key that
 * changes exactly when the words do (0 is never returned), and writes the
 * words only when buf is not NULL: the message of 20,000 sites down is
 * formatted again once a minute, not on every plan. */
uint32_t engine_down_for(uint64_t down_ms, char *buf, size_t len) {
  uint64_t s = down_ms / 1000;
  if (s < 120) {
    if (buf) snprintf(buf, len, "%llu s", (unsigned long long)s);
    return (uint32_t)s + 1;
  }
  if (s < 7200) {
    if (buf) snprintf(buf, len, "%llu min", (unsigned long long)(s / 60));
    return 1000000u + (uint32_t)(s / 60);
  }
  uint64_t h = s / 3600 < 1000000 ? s / 3600 : 999999;
  if (buf) snprintf(buf, len, "%llu h", (unsigned long long)h);
  return 2000000u + (uint32_t)h;
}

/* The Hello's count and its queued ROUTE_UNCONFIRMED's place one failure
 * a few ms apart (each counted as it is sent, each arrival on this clock):
 * within this a report is not older than the newest word. */
#define ENGINE_SAME_SIGHTING_MS 2000

/* Observed as a directive alarm in engine_alarms_observe. */
void engine_on_route_known(engine_t *e, size_t i, bool known, const char *why) {
  engine_on_route_known_late(e, i, known, why, 0, "");
}

/* A late report of site i's route as known (or not) at `at`, older than
 * the newest word the engine has and saying otherwise, is an episode over
 * before this controller heard of it: its link event keeps it; the route
 * is what the newer word says, and no alarm stands for it. A ROUTE_
 * CONFIRMED after the start the engine keeps for the stretch now unknown
 * says that start was an earlier stretch's (the ROUTE_UNCONFIRMED of the
 * episode, flushed just before it): the start is not known then. */
static void engine_route_history(engine_t *e, size_t i, bool known, int64_t at) {
  site_dir_t *d = &e->dirs[i];
  if (known && d->route_unknown_wall_ms && d->route_unknown_wall_ms <= at) {
    d->route_unknown_wall_ms = d->route_unknown_business_ms = 0;
    d->route_unknown_when[0] = '\0';
    e->eval_dirty = true; /* its alarm's words */
  }
  log_info(LOG_SITE, engine_site(e, i)->slug,
           "route %s as of %lld s ago, reported late: its agent said otherwise since; an "
           "episode over before this controller heard of it (its link event keeps it)",
           known ? "confirmed" : "unknown", (long long)((e->io.wall_ms(e->io.ctx) - at) / 1000));
}

bool engine_on_route_known_late(engine_t *e, size_t i, bool known, const char *why, int64_t ago_ms,
                                const char *when) {
  if (i >= engine_nsites(e)) return false;
  site_dir_t *d = &e->dirs[i];
  if (ago_ms < 0) ago_ms = 0;
  alarm_late_t seen = engine_late(e, ago_ms, 0, when);
  int64_t at = seen.seen_wall_ms;
  bool newest =
      !ago_ms || !d->route_said_wall_ms || at >= d->route_said_wall_ms - ENGINE_SAME_SIGHTING_MS;
  if (!newest && known == d->route_unknown) {
    engine_route_history(e, i, known, at);
    return false;
  }
  bool change = d->route_unknown != !known;
  /* Reported late: the stretch began before this controller heard. Its
   * agent counts a stretch from its first failure and reports it once
   * (one ROUTE_UNCONFIRMED; each Hello counts from it): a start once
   * said is the stretch's, and an earlier sighting is an earlier
   * stretch's (a later one, or a few ms apart, the same). Only a start
   * heard without its count (an older agent's Hello) moves back. */
  bool earlier = !known && ago_ms > 0 && when && *when && (change || !d->route_unknown_wall_ms);
  /* The newest word on the route: a late report older than it is history. */
  if (at > d->route_said_wall_ms) d->route_said_wall_ms = at;
  /* Every Hello says it: only a change is news (and re-plans, for the alarm). */
  if (!change && !earlier && (known || strcmp(d->route_unknown_why, why) == 0)) return newest;
  if (change)
    log_info(LOG_SITE, engine_site(e, i)->slug, "route %s%s%s",
             known ? "confirmed by the agent" : "unknown: ",
             known ? "" : "not confirmed at the PBX: ", known ? "" : why);
  if (change || known) {
    d->route_unknown_wall_ms = d->route_unknown_business_ms = 0;
    d->route_unknown_when[0] = '\0';
  }
  if (earlier) {
    d->route_unknown_wall_ms = at;
    d->route_unknown_business_ms = seen.seen_business_ms;
    nirc_strlcpy_utf8(d->route_unknown_when, when, sizeof d->route_unknown_when);
  }
  d->route_unknown = !known;
  /* A late report's reason is older than the one the engine has: the
   * agent sends what it queued after the Hello that said the latest. */
  bool late = !known && ago_ms > 0 && !change && d->route_unknown_why[0];
  if (!late) nirc_strlcpy_utf8(d->route_unknown_why, known ? "" : why, sizeof d->route_unknown_why);
  e->eval_dirty = true; /* its alarm */
  return newest;
}

void engine_alarms_observe(engine_t *e, const plan_t *p) {
  size_t n = engine_nsites(e);
  uint64_t now = engine_mono(e);
  e->alarms_observed_mono = now;
  /* Each site's first plan alarm is of its highest rule (phases run in
   * precedence order): the one that says why it is where it is. Its text
   * is kept as the site's note and the cause of a capacity move, and it is
   * the condition observed. */
  for (size_t i = 0; i < n; i++)
    e->alarm[i][0] = '\0';
  for (size_t k = 0; k < p->n_alarms; k++) {
    const plan_alarm_t *pa = &p->alarms[k];
    long i = engine_index(e, pa->site);
    if (i >= 0 && e->alarm[i][0]) continue;
    if (i >= 0) nirc_strlcpy(e->alarm[i], pa->message, sizeof e->alarm[i]);
    alarm_kind_t kind = pa->kind == PLAN_ALARM_CAPACITY || pa->kind == PLAN_ALARM_WAITING
                            ? ALARM_CAPACITY
                            : ALARM_ROUTING;
    engine_observe(e, kind, pa->site, pa->message);
  }
  for (size_t i = 0; i < n; i++) {
    const site_t *s = engine_site(e, i);
    const site_dir_t *d = &e->dirs[i];
    /* Sent home at a takeover from a route no rule in the database
     * explains: likely an operator's change the old leader made while the
     * database was unreachable, now undone. The audit entry says it once;
     * the alarm makes it seen for ENGINE_NO_RULE_ALARM_MS. */
    if (d->no_rule_mono && now - d->no_rule_mono < ENGINE_NO_RULE_ALARM_MS && !e->alarm[i][0]) {
      char msg[ALARM_MESSAGE_MAX];
      /* "Was sent home" only once the site acknowledged it: a directive
       * may be pending or fail (then its directive alarm says why). */
      bool home = d->known && d->acked.epoch == e->epoch && d->acked.version >= d->no_rule_version;
      snprintf(msg, sizeof msg,
               "%s %s at the takeover%s: its route to %s came from the leader of epoch "
               "%llu " ENGINE_NO_RULE_MARK
               " (a change made while the database was unreachable?); make "
               "it again if still wanted",
               s->slug,
               home                     ? "was sent home"
               : d->state == DIR_FAILED ? "could not be sent home"
                                        : "is being sent home",
               home                     ? ""
               : d->state == DIR_FAILED ? " (its directive failed: see its directive alarm)"
                                        : " (not acknowledged yet)",
               d->no_rule_hub, (unsigned long long)d->no_rule_epoch);
      engine_observe(e, ALARM_ROUTING, s->slug, msg);
    } else if (d->no_rule_adopted && !d->no_rule_mono) {
      engine_no_rule_reword(e, i);
    }
    /* A site held home after its agent's early returns, while a rule
     * would move it: that rule cannot be carried out there. Only with no
     * plan alarm of its own (which says why it is not moved anyway). */
    if (!e->alarm[i][0] && engine_returns_withheld(e, i, &p->routes[i])) {
      char msg[ALARM_MESSAGE_MAX];
      engine_returns_words(e, i, msg, sizeof msg);
      engine_observe(e, ALARM_ROUTING, s->slug, msg);
    }
    /* A failed directive stands until the site acknowledges one again; a
     * rolled-back move until the site is readmitted (an operator's act). */
    if (d->excluded_rule && d->excluded_why[0])
      engine_observe(e, ALARM_DIRECTIVE, s->slug, d->excluded_why);
    else if (d->state == DIR_FAILED)
      engine_observe(e, ALARM_DIRECTIVE, s->slug,
                     d->failed_why[0] ? d->failed_why : "a directive failed");
    else if (engine_undelivered(e, i)) {
      /* What the operator asked of this site is not carried out: say so
       * for as long as it is true (cleared by its acknowledgement). */
      char msg[ALARM_MESSAGE_MAX];
      engine_undelivered_words(e, i, msg, sizeof msg);
      engine_observe(e, ALARM_DIRECTIVE, s->slug, msg);
    } else if (d->route_unknown) {
      /* Unknown is not home: the agent could not apply the route it holds
       * and keeps trying; until it says it did, nobody knows. */
      char route[200], msg[ALARM_MESSAGE_MAX];
      route_format(&d->acked, s->slug, route, sizeof route);
      /* When it was seen goes first: a message cut at its end keeps it. */
      snprintf(msg, sizeof msg,
               "%s's route is unknown%s%s: its agent has not confirmed %s at the PBX (%s); it "
               "keeps trying",
               s->slug, d->route_unknown_when[0] ? ", " : "", d->route_unknown_when, route,
               d->route_unknown_why[0] ? d->route_unknown_why : "no reason given");
      /* Since its agent saw it when it was reported late: raised since
       * then, or an active alarm (raised when first heard, or for the
       * directive before) moved back to then: the stretch holds to now. */
      alarm_late_t late = {.seen_wall_ms = d->route_unknown_wall_ms,
                           .seen_business_ms = d->route_unknown_business_ms,
                           .held_wall_ms = e->io.wall_ms(e->io.ctx),
                           .when = d->route_unknown_when};
      alarm_observe_late(&e->alarms, ALARM_DIRECTIVE, s->slug, msg, false, now,
                         e->io.wall_ms(e->io.ctx), engine_now(e),
                         d->route_unknown_wall_ms ? &late : NULL);
    }
    if (s->state == SITE_ONLINE || s->life == SITE_REMOVED) {
      /* A removed site is not down: it is gone on purpose, and its alarm
       * clears as it is no longer observed. */
      e->down_since[i] = 0;
      e->down_said_s[i] = 0;
      continue;
    }
    if (!e->down_since[i]) e->down_since[i] = now;
    /* Down for the hub grace (a reconnect, a stale report and an agent's
     * first back-offs fit in it), or already alarmed (a new leader keeps
     * the alarm its predecessor raised instead of clearing and raising). */
    uint64_t down_ms = now - e->down_since[i];
    if (down_ms >= e->opts.hub_grace_ms || engine_alarm_active(e, ALARM_SITE_DOWN, s->slug)) {
      uint32_t said = engine_down_for(down_ms, NULL, 0);
      if (said == e->down_said_s[i] && engine_alarm_active(e, ALARM_SITE_DOWN, s->slug)) {
        /* Same words as last time: seen again, nothing to format (20,000
         * sites without agents are 20,000 alarms observed on every plan). */
        engine_observe(e, ALARM_SITE_DOWN, s->slug, NULL);
        continue;
      }
      char dur[32], msg[ALARM_MESSAGE_MAX];
      engine_down_for(down_ms, dur, sizeof dur);
      /* Stale because its reports are refused (implausible figures), not
       * because none come: say so, the report alarm says why. */
      bool refused = s->state == SITE_STALE && engine_alarm_active(e, ALARM_REPORT, s->slug);
      snprintf(msg, sizeof msg, "%s %s (for %s by this controller's count)%s", s->slug,
               refused ? "sends no report this controller can use (they are refused: see its "
                         "report alarm)"
                       : engine_down_words(s->state),
               dur, s->is_hub ? ": a hub: the sources it answers for are re-homed" : "");
      e->down_said_s[i] = said;
      engine_observe(e, ALARM_SITE_DOWN, s->slug, msg);
    }
  }
}

void engine_alarms_sweep(engine_t *e) {
  uint64_t now = engine_mono(e);
  if (!e->alarms_observed_mono || now - e->alarms_observed_mono > ENGINE_ALARM_FRESH_MS) return;
  alarm_sweep(&e->alarms, now, e->io.wall_ms(e->io.ctx));
}

/* ---- nircctl alarms ---- */

alarm_seen_t engine_alarm_seen(const engine_t *e, const alarm_t *a) {
  uint64_t now = engine_mono(e), pass;
  switch (a->kind) {
  case ALARM_CAPACITY:
  case ALARM_ROUTING:
  case ALARM_DIRECTIVE:
  case ALARM_SITE_DOWN:
    /* Observed by engine_alarms_observe on every plan, which runs at
     * least once a second: not seen in the latest is not seen now. */
    pass = e->alarms_observed_mono;
    break;
  default:
    /* The others are observed on every tick (200 ms) while they hold (the
     * owner's checks, the verification hold): two seconds of silence is
     * ten ticks without them. */
    pass = now > ENGINE_ALARM_TICK_QUIET_MS ? now - ENGINE_ALARM_TICK_QUIET_MS : 0;
    break;
  }
  return alarm_seen(&e->alarms, a, now, pass);
}

void engine_alarm_to_pb(const engine_t *e, const alarm_t *a, Nirc__Alarm *pb) {
  nirc__alarm__init(pb);
  pb->id = a->id;
  pb->kind = (char *)alarm_kind_name(a->kind);
  pb->subject = (char *)a->subject;
  pb->severity = (char *)alarm_entry_severity(a);
  pb->message = (char *)a->message;
  pb->raised_ms = a->raised_wall_ms;
  pb->raised_business_ms = a->raised_business_ms;
  pb->acked_ms = a->acked_wall_ms;
  pb->acked_by = (char *)a->acked_by;
  alarm_seen_t seen = engine_alarm_seen(e, a);
  pb->quiet = seen.quiet;
  pb->quiet_ms = seen.ago_ms;
  pb->clears_in_ms = seen.clears_in_ms;
  pb->adopted_unseen = seen.adopted_unseen;
}

/* engine_alarm_to_pb with its strings copied into the reply's arena. */
static Nirc__Alarm *engine_alarm_pb(engine_t *e, engine_arena_t *ar, const alarm_t *a) {
  Nirc__Alarm *pb = engine_arena_alloc(ar, sizeof *pb);
  if (!pb) return NULL;
  engine_alarm_to_pb(e, a, pb);
  pb->kind = engine_arena_str(ar, pb->kind);
  pb->subject = engine_arena_str(ar, pb->subject);
  pb->severity = engine_arena_str(ar, pb->severity);
  pb->message = engine_arena_str(ar, pb->message);
  pb->acked_by = engine_arena_str(ar, pb->acked_by);
  return pb;
}

void engine_reply_alarms(engine_t *e, void *c, uint64_t rid, const char *warning) {
  engine_arena_t ar = {0};
  size_t n = alarm_count(&e->alarms);
  Nirc__AlarmReply *r = engine_arena_alloc(&ar, sizeof *r);
  if (r) {
    nirc__alarm_reply__init(r);
    r->alarms = engine_arena_alloc(&ar, (n + 1) * sizeof *r->alarms);
  }
  for (size_t k = 0; r && r->alarms && k < n; k++) {
    Nirc__Alarm *pb = engine_alarm_pb(e, &ar, alarm_at(&e->alarms, k));
    if (pb) r->alarms[r->n_alarms++] = pb;
  }
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_ALARMS;
  rep.alarms = r;
  engine_send_built_reply(e, c, rid, &ar, r && r->alarms, &rep, warning);
}

void engine_op_alarms(engine_t *e, const engine_req_t *rq, const Nirc__AlarmRequest *req) {
  if (!req || !req->ack_id) {
    engine_reply_alarms(e, rq->client, rq->request_id, NULL);
    return;
  }
  char target[32];
  snprintf(target, sizeof target, "alarm %llu", (unsigned long long)req->ack_id);
  const alarm_t *a = NULL;
  for (size_t k = 0; k < alarm_count(&e->alarms); k++)
    if (alarm_at(&e->alarms, k)->id == req->ack_id) a = alarm_at(&e->alarms, k);
  if (!a) {
    engine_refuse(e, rq, "alarm-ack", target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "no active alarm %llu: it was cleared or never raised (nircctl alarms --all "
                  "lists the record)",
                  (unsigned long long)req->ack_id);
    return;
  }
  if (a->acked_wall_ms) {
    char when[40];
    const char *zone = tz_format_iso(e->opts.ops_tz[0] ? e->opts.ops_tz : e->opts.forecast_tz,
                                     a->acked_wall_ms, when, sizeof when);
    engine_refuse(e, rq, "alarm-ack", target, NIRC__ERROR_CODE__ERROR_CODE_REFUSED,
                  "alarm %llu was acknowledged already, by %s at %s (%s)",
                  (unsigned long long)req->ack_id, a->acked_by, when, zone);
    return;
  }
  if (!engine_can_record(e, rq, "alarm-ack", target)) return;
  engine_group_begin(e); /* NULL: the records are not followed */
  json_t *detail = json_pack("{s:I, s:s, s:s, s:s, s:s}", "id", (json_int_t)a->id, "kind",
                             alarm_kind_name(a->kind), "subject", a->subject, "message", a->message,
                             "note", req->note ? req->note : "");
  /* The callback stores the acknowledgement and notifies. */
  alarm_ack(&e->alarms, req->ack_id, rq->operator_name, e->io.wall_ms(e->io.ctx));
  engine_audit(e, rq->operator_name, "alarm-ack", target, detail);
  char what[96];
  snprintf(what, sizeof what, "%s acknowledged", target);
  engine_defer(e, rq, DEFER_ALARMS, what);
  engine_group_end(e);
}
