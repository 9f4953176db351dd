/* server_pbx: what the sites' agents report of their PBXs (PbxEvent,
 * issue 14): a link event, a `pbx` alarm (warning when the agent repaired a
 * drift, critical when not or when the PBX did not take an apply) and the
 * nirc_pbx_drift_repairs_total counter. Part of the server module. */
#include "server.h"

#include "clock.h"
#include "err.h"
#include "log.h"
#include "safetext.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

/* A site's pbx alarm stands this long after its agent's last PbxEvent: a
 * repaired drift is over at once, but an operator must still see that the
 * PBX changed behind NIRC's back. An unrepaired drift is re-sent at every
 * check of the agent ([agent] pbx_check_interval), so it holds. */
#define SERVER_PBX_ALARM_MS (10 * 60000)
/* Observes site s's `agent` alarm when its agent has said something of
 * its host (server_pbx_agent_words). */
static void server_pbx_agent_observe(server_t *srv, const site_t *s, int64_t now) {
  char words[ALARM_MESSAGE_MAX];
  bool critical;
  if (srv->engine && server_pbx_agent_words(s, now, words, sizeof words, &critical))
    engine_alarm_observe_sev(srv->engine, ALARM_AGENT, s->slug, words, critical);
}

void server_pbx_observe(server_t *srv) {
  int64_t now = clock_real_ms();
  bool pbx = srv->last_pbx_event_ms && now - srv->last_pbx_event_ms < SERVER_PBX_ALARM_MS;
  for (size_t i = 0; srv->engine && i < srv->sites.n; i++) {
    site_t *s = &srv->sites.v[i];
    /* Since when its reports say its PBX is unreadable (to the tick). */
    bool unread = s->conn && s->state == SITE_ONLINE && s->has_report && s->last.pbx_unreadable;
    if (!unread)
      s->pbx_unreadable_since_ms = 0;
    else if (!s->pbx_unreadable_since_ms)
      s->pbx_unreadable_since_ms = now;
    /* Said by the agent on this link: a link that is down has its own
     * alarm, and the next Hello says it again (or that it is over). */
    if (s->conn) server_pbx_agent_observe(srv, s, now);
    if (!pbx || !s->pbx_event_ms || now - s->pbx_event_ms >= SERVER_PBX_ALARM_MS) continue;
    engine_alarm_observe_sev(srv->engine, ALARM_PBX, s->slug, s->pbx_alarm, s->pbx_critical);
  }
}

void server_pbx_state_words(const char *why, char *buf, size_t len) {
  /* What it means first: a message cut at its end keeps it. */
  snprintf(buf, len,
           "its agent cannot write its state file: a route sent to it fails until it can (the "
           "route in force stays): %s",
           why);
}

bool server_pbx_agent_words(const site_t *s, int64_t now_ms, char *buf, size_t len,
                            bool *critical) {
  char cert[200] = "";
  *critical = s->agent_state_why[0] != '\0';
  int64_t left = s->agent_cert_not_after_ms - now_ms;
  if (s->agent_cert_not_after_ms > 0 && left < (int64_t)SERVER_CERT_WARN_DAYS * 86400000) {
    char end[40], in[40];
    clock_format_iso(s->agent_cert_not_after_ms, 0, end, sizeof end);
    if (left <= 0)
      snprintf(in, sizeof in, "has expired");
    else if (left < 86400000)
      snprintf(in, sizeof in, "expires in %lld hours", (long long)(left / 3600000));
    else
      snprintf(in, sizeof in, "expires in %lld days", (long long)(left / 86400000));
    /* The link it is on keeps it: a renewed one is seen on the next. */
    snprintf(cert, sizeof cert,
             "its agent's certificate %s (%s): issue a new one (deploy/pki.sh) and send the agent "
             "SIGHUP; cleared once it reconnects with it",
             in, end);
    if (left < (int64_t)SERVER_CERT_CRITICAL_DAYS * 86400000) *critical = true;
  }
  /* Its reports say its PBX cannot be read (their figures are unknown,
   * never zeros): for a minute, that is no passing hiccup. */
  char pbx[300] = "";
  int64_t unread = s->pbx_unreadable_since_ms ? now_ms - s->pbx_unreadable_since_ms : 0;
  if (s->pbx_unreadable_since_ms && unread >= SERVER_PBX_UNREADABLE_MS) {
    char err[160];
    safetext_escape(s->last.pbx_error, err, sizeof err);
    snprintf(pbx, sizeof pbx,
             "its agent cannot read its PBX for %lld s (its load is unknown): %s; check the PBX "
             "and the agent's adapter",
             (long long)(unread / 1000), err[0] ? err : "(no reason given)");
  }
  if (!cert[0] && !pbx[0] && !s->agent_state_why[0]) return false;
  char state[ALARM_MESSAGE_MAX] = "";
  if (s->agent_state_why[0]) server_pbx_state_words(s->agent_state_why, state, sizeof state);
  /* The shorter first: the message is cut at its end. */
  snprintf(buf, len, "%s%s%s%s%s", cert, cert[0] && (pbx[0] || state[0]) ? "; " : "", pbx,
           pbx[0] && state[0] ? "; " : "", state);
  return true;
}

void server_pbx_agent_state(server_t *srv, site_t *site, const char *why) {
  char esc[sizeof site->agent_state_why];
  safetext_escape(why ? why : "", esc, sizeof esc);
  if (strcmp(esc, site->agent_state_why) == 0) return;
  if (esc[0])
    log_error(LOG_SITE, site->slug, "its agent cannot write its state file: %s", esc);
  else
    log_info(LOG_SITE, site->slug, "its agent writes its state file again");
  nirc_strlcpy_utf8(site->agent_state_why, esc, sizeof site->agent_state_why);
  /* At once, not at the next tick: the alarm's words are the latest. */
  server_pbx_agent_observe(srv, site, clock_real_ms());
}

void server_pbx_on_hello(server_t *srv, site_t *site, const Nirc__Hello *h, int64_t cert_end_ms) {
  site->agent_cert_not_after_ms = cert_end_ms;
  int64_t left = cert_end_ms - clock_real_ms();
  if (cert_end_ms > 0 && left < (int64_t)SERVER_CERT_WARN_DAYS * 86400000)
    log_warn(LOG_SITE, site->slug, "its agent's certificate ends in %.1f days", left / 86400000.0);
  server_pbx_agent_state(srv, site, h->state_not_saved_why); /* "" from an older agent: can */
  server_pbx_agent_observe(srv, site, clock_real_ms());
}

server_pbx_seen_t server_pbx_seen(const Nirc__PbxEvent *ev, int64_t arrival_ms) {
  return server_pbx_seen_ago(ev->seen_ago_said, ev->seen_ago_ms, arrival_ms);
}

server_pbx_seen_t server_pbx_seen_ago(bool said, uint64_t ago_ms, int64_t arrival_ms) {
  server_pbx_seen_t s = {.state = SERVER_PBX_SEEN_UNSAID, .at_ms = arrival_ms};
  switch (clock_place_ago(said, ago_ms, arrival_ms, &s.at_ms)) {
  case CLOCK_AGO_UNSAID: return s;
  case CLOCK_AGO_IMPLAUSIBLE: s.state = SERVER_PBX_SEEN_IMPLAUSIBLE; return s;
  case CLOCK_AGO_PLACED: break;
  }
  s.late_ms = (int64_t)ago_ms;
  s.state = s.late_ms > SERVER_PBX_TRIP_MS ? SERVER_PBX_SEEN_LATE : SERVER_PBX_SEEN_ON_TIME;
  return s;
}

void server_pbx_seen_words(const server_pbx_seen_t *s, char *buf, size_t len) {
  char at[40];
  switch (s->state) {
  case SERVER_PBX_SEEN_LATE:
    clock_format_iso(s->at_ms, 0, at, sizeof at);
    snprintf(buf, len, "seen by the agent at %s, reported %lld s later (its link was down)", at,
             (long long)(s->late_ms / 1000));
    return;
  case SERVER_PBX_SEEN_UNSAID:
    snprintf(buf, len,
             "seen at or before it was reported (an agent older than this controller "
             "does not say when)");
    return;
  case SERVER_PBX_SEEN_IMPLAUSIBLE:
    snprintf(buf, len, "seen at or before it was reported (the agent's count of when cannot be)");
    return;
  case SERVER_PBX_SEEN_ON_TIME: break;
  }
  if (len) buf[0] = '\0';
}

void server_pbx_hello_words(const server_pbx_seen_t *s, char *buf, size_t len) {
  char at[40];
  if (s->state != SERVER_PBX_SEEN_LATE) {
    if (len) buf[0] = '\0';
    return;
  }
  clock_format_iso(s->at_ms, 0, at, sizeof at);
  snprintf(buf, len, "seen by the agent at %s, %lld s before its Hello to this controller", at,
           (long long)(s->late_ms / 1000));
}

/* The agent's queue while its link is down (site-agent/agent.h
 * AGENT_PBX_EVENTS_MAX), named in the words below. */
#define SERVER_PBX_AGENT_QUEUE 16

void server_pbx_dropped_words(const Nirc__PbxEvent *ev, int64_t arrival_ms, char *buf, size_t len) {
  server_pbx_seen_t first = server_pbx_seen(ev, arrival_ms);
  server_pbx_seen_t last =
      server_pbx_seen_ago(ev->seen_ago_said, ev->dropped_last_ago_ms, arrival_ms);
  bool placed = (first.state == SERVER_PBX_SEEN_LATE || first.state == SERVER_PBX_SEEN_ON_TIME) &&
                (last.state == SERVER_PBX_SEEN_LATE || last.state == SERVER_PBX_SEEN_ON_TIME);
  char span[120], t1[40], t2[40];
  clock_format_iso(first.at_ms, 0, t1, sizeof t1);
  clock_format_iso(last.at_ms, 0, t2, sizeof t2);
  if (!placed)
    snprintf(span, sizeof span, "seen before it was reported (the agent does not say when)");
  else if (ev->dropped == 1 || first.at_ms == last.at_ms)
    snprintf(span, sizeof span, "seen at %s", t1);
  else
    snprintf(span, sizeof span, "seen between %s and %s", t1, t2);
  snprintf(buf, len,
           "%u PBX event%s %s %s not kept by the agent (its queue of %d was full while its link "
           "was down): see the agent host's log",
           (unsigned)ev->dropped, ev->dropped == 1 ? "" : "s", span,
           ev->dropped == 1 ? "was" : "were", SERVER_PBX_AGENT_QUEUE);
}

/* "detail; seen ..." (or detail alone when it came on time). */
static void server_pbx_with_seen(const char *detail, const char *seen, char *buf, size_t len) {
  snprintf(buf, len, "%s%s%s", detail, *seen && *detail ? "; " : "", seen);
}

/* Stores the link event (`stored`: the text with when it was seen) and
 * keeps it for `nircctl site` (`shown`: without it; the time goes beside). */
static void server_pbx_record(server_t *srv, conn_t *c, const server_pbx_seen_t *seen,
                              const char *event, const char *stored, const char *shown) {
  site_t *site = c->site;
  server_record_event_at(srv, seen->at_ms, "site", link_peer(c->link)->subject, site->slug,
                         link_peer_addr(c->link), event, stored);
  pbxlog_event_t ev = {.at_ms = seen->at_ms,
                       .late_ms = seen->state == SERVER_PBX_SEEN_LATE ? seen->late_ms : 0,
                       .at_or_before = seen->state == SERVER_PBX_SEEN_UNSAID ||
                                       seen->state == SERVER_PBX_SEEN_IMPLAUSIBLE};
  nirc_strlcpy_utf8(ev.event, event, sizeof ev.event);
  nirc_strlcpy_utf8(ev.detail, shown, sizeof ev.detail);
  if (pbxlog_add(&srv->pbx_log, (size_t)(site - srv->sites.v), &ev) != 0)
    log_error(LOG_SITE, site->slug, "out of memory keeping its PBX event for nircctl site");
}

/* The agent's route in force became unknown (an apply at start, at
 * revert_at or putting a route back failed) or known again: the engine
 * shows it and keeps a directive alarm while it is unknown; a link event
 * records each. Not a pbx alarm: that one says the PBX routed otherwise,
 * and here nobody knows how it routes. */
static void server_pbx_route_known(server_t *srv, conn_t *c, const Nirc__PbxEvent *ev,
                                   const server_pbx_seen_t *seen, const char *when) {
  site_t *site = c->site;
  bool known = ev->kind == NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_ROUTE_CONFIRMED;
  char expected[200], detail[200], words[400], stored[600];
  safetext_escape(ev->expected ? ev->expected : "", expected, sizeof expected);
  safetext_escape(ev->detail ? ev->detail : "", detail, sizeof detail);
  if (known)
    snprintf(words, sizeof words, "the agent confirmed its route %s at the PBX", expected);
  else
    snprintf(words, sizeof words, "the agent could not apply its route %s: %s", expected, detail);
  /* With when: one flushed late may be an episode long over. */
  server_pbx_with_seen(words, when, stored, sizeof stored);
  if (known)
    log_info(LOG_SITE, site->slug, "%s", stored);
  else
    log_error(LOG_SITE, site->slug, "route unknown: %s", stored);
  server_pbx_record(srv, c, seen, known ? "route_confirmed" : "route_unconfirmed", stored, words);
  /* Late: its directive alarm says since when the agent saw it, and so;
   * older than the engine's newest word on the route, it is history. */
  bool newest = srv->engine && engine_on_route_known_late(
                                   srv->engine, (size_t)(site - srv->sites.v), known, detail,
                                   seen->state == SERVER_PBX_SEEN_LATE ? seen->late_ms : 0, when);
  /* Confirmed, but perhaps unread: the Hello that said "unknown" could
   * not say so (a newer word said what it says now). */
  if (newest && known)
    engine_on_route_unverified(srv->engine, (size_t)(site - srv->sites.v), ev->unverified);
}

/* What an agent found reading its PBX back. The site is the certificate's;
 * every text is the agent's (and through it the PBX's) and is escaped
 * before it is logged, stored or shown. */
int server_pbx_event(server_t *srv, conn_t *c, const Nirc__PbxEvent *ev, char *why, size_t whylen) {
  site_t *site = c->site;
  if (ev->site && *ev->site && strcmp(ev->site, site->slug) != 0) {
    snprintf(why, whylen, "certificate is site:%s but PbxEvent claims site '%.40s'", site->slug,
             ev->site);
    return NIRC_EIDENTITY;
  }
  /* Recorded when the agent saw it, by this controller's clock: an event
   * queued while the link was down happened before it arrived. */
  server_pbx_seen_t seen = server_pbx_seen(ev, clock_real_ms());
  char when[160];
  server_pbx_seen_words(&seen, when, sizeof when);
  const char *event;
  bool critical = true;
  switch (ev->kind) {
  case NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_REVERTED: {
    /* Not the PBX's doing: the agent ended its route at revert_at on its
     * own. Stored, and the engine takes the site's route as home, so
     * status says what the site does (it may send the rule's route again
     * if the rule is still in force here). No pbx alarm: nothing drifted. */
    char detail[400], stored[600];
    safetext_escape(ev->detail ? ev->detail : "", detail, sizeof detail);
    server_pbx_with_seen(detail, when, stored, sizeof stored);
    log_warn(LOG_SITE, site->slug, "agent went home on its own at revert_at of (%llu, %llu): %s",
             (unsigned long long)ev->epoch, (unsigned long long)ev->version, stored);
    server_pbx_record(srv, c, &seen, "agent_reverted", stored, detail);
    engine_went_home_t went = {.at_ms = ev->went_home_at_ms,
                               .clock = ev->went_home_clock,
                               .ago_ms = ev->went_home_ago_ms,
                               .ago_said = ev->went_home_ago_said};
    if (srv->engine)
      engine_on_agent_reverted(srv->engine, (size_t)(site - srv->sites.v), ev->epoch, ev->version,
                               &went, ev->unverified);
    return 0;
  }
  case NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_DRIFT_REPAIRED:
    event = "pbx_drift_repaired";
    critical = false;
    srv->pbx_drift_repairs++;
    break;
  case NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_DRIFT_NOT_REPAIRED:
    event = "pbx_drift_not_repaired";
    break;
  case NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_VERIFY_FAILED: event = "pbx_verify_failed"; break;
  case NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_ROUTE_UNCONFIRMED:
  case NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_ROUTE_CONFIRMED:
    server_pbx_route_known(srv, c, ev, &seen, when);
    return 0;
  case NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_STATE_NOT_SAVED:
  case NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_STATE_SAVED: {
    /* Not the PBX's doing either: the agent's host. An `agent` alarm
     * while it lasts (server_pbx_observe), and a link event for each. */
    bool saved = ev->kind == NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_STATE_SAVED;
    char detail[256], words[ALARM_MESSAGE_MAX], stored[600];
    safetext_escape(ev->detail ? ev->detail : "", detail, sizeof detail);
    if (saved)
      snprintf(words, sizeof words, "its agent writes its state file again");
    else
      server_pbx_state_words(detail[0] ? detail : "(no reason given)", words, sizeof words);
    server_pbx_with_seen(words, when, stored, sizeof stored);
    server_pbx_record(srv, c, &seen, saved ? "agent_state_saved" : "agent_state_not_saved", stored,
                      words);
    server_pbx_agent_state(srv, site,
                           saved                       ? ""
                           : ev->detail && *ev->detail ? ev->detail
                                                       : "(no reason given)");
    return 0;
  }
  case NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_EVENTS_DROPPED: {
    /* Not the PBX either: what is missing from the events that follow,
     * recorded where the gap begins. No alarm: the events kept (the first
     * of the outage and the newest) raise their own. */
    char words[400];
    server_pbx_dropped_words(ev, clock_real_ms(), words, sizeof words);
    log_warn(LOG_SITE, site->slug, "%s", words);
    server_pbx_record(srv, c, &seen, "pbx_events_dropped", words, words);
    return 0;
  }
  default:
    /* A kind from a newer agent: said, not acted on. */
    log_warn(LOG_SITE, site->slug, "PbxEvent of unknown kind %d ignored", (int)ev->kind);
    return 0;
  }
  char found[200], expected[200], detail[400], words[ALARM_MESSAGE_MAX], stored[600], shown[600];
  safetext_escape(ev->found ? ev->found : "", found, sizeof found);
  safetext_escape(ev->expected ? ev->expected : "", expected, sizeof expected);
  safetext_escape(ev->detail ? ev->detail : "", detail, sizeof detail);
  /* When it was seen goes before the routes: a message cut at its end
   * keeps it. */
  snprintf(words, sizeof words, "%s%s%s: the PBX routed %s, the agent's route is %s",
           critical ? (ev->kind == NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_VERIFY_FAILED
                           ? "PBX did not take a route"
                           : "PBX drift NOT repaired")
                    : "PBX drift repaired",
           when[0] ? ", " : "", when, found[0] ? found : "?", expected[0] ? expected : "?");
  if (critical)
    log_error(LOG_SITE, site->slug, "%s (%s)", words, detail);
  else
    log_warn(LOG_SITE, site->slug, "%s (%s)", words, detail);
  server_pbx_with_seen(detail[0] ? detail : words, detail[0] ? when : "", stored, sizeof stored);
  /* The agent's detail names both routes; an older agent's may be empty. */
  snprintf(shown, sizeof shown, "%s", detail);
  if (!detail[0])
    snprintf(shown, sizeof shown, "the PBX routed %s, the agent's route is %s",
             found[0] ? found : "?", expected[0] ? expected : "?");
  server_pbx_record(srv, c, &seen, event, stored, shown);
  /* The alarm stands SERVER_PBX_ALARM_MS from when it was heard: a drift
   * reported late must still be seen. */
  site->pbx_event_ms = clock_real_ms();
  srv->last_pbx_event_ms = site->pbx_event_ms;
  site->pbx_critical = critical;
  nirc_strlcpy_utf8(site->pbx_alarm, words, sizeof site->pbx_alarm);
  /* Raised as of when the agent saw it: its "since" is when the PBX did
   * it. One already active (an event heard on time) moves back to it if,
   * heard on time, this event's alarm would have stood until then. */
  if (srv->engine)
    engine_alarm_observe_since(srv->engine, ALARM_PBX, site->slug, words, critical,
                               seen.state == SERVER_PBX_SEEN_LATE ? seen.late_ms : 0,
                               SERVER_PBX_ALARM_MS, when);
  return 0;
}
