#include "server.h"

#include "err.h"
#include "frame.h"
#include "admit.h"
#include "hold.h"
#include "guard.h"
#include "httpd.h"
#include "leader.h"
#include "log.h"
#include "safetext.h"
#include "route.h"
#include "store.h"
#include "util.h"
#include "watchdog.h"
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#define NIRC_PROTOCOL_VERSION 1
/* Freshness is checked this often; stale detection is accurate to it. */
#define SERVER_TICK_MS 200
/* Longest wait for queued records at shutdown. */
#define SERVER_DRAIN_MS 5000
/* How long a stop waits for closing links to finish (their offline events
 * are records too) before the final database drain. */
#define SERVER_LINGER_MS 1000
/* A CRL this close to its next update is warned about at every load. */
#define SERVER_CRL_WARN_DAYS 30
/* Failed handshakes: addresses tracked at once, and distinct failures
 * per address stored one by one per interval (guard.h). */
#define SERVER_HS_ADDRS 1024
#define SERVER_HS_SHOWN 5
/* Longest Hello.software_version accepted. */
#define SERVER_HELLO_VERSION_MAX 64

/* At most this many held links (or two per configured site, if more):
 * beyond, a link is sent away at once as before. */
#define SERVER_HOLD_MIN_CAP 1024u

static const char *const conn_state_names[] = {
    [CONN_PENDING] = "pending", [CONN_AWAIT_HELLO] = "await-hello", [CONN_HELD] = "held",
    [CONN_SITE] = "site",       [CONN_OPERATOR] = "operator",       [CONN_CLOSED] = "closed",
};

const char *server_conn_state_name(conn_state_t s) {
  return (unsigned)s <= CONN_CLOSED ? conn_state_names[s] : "?";
}

static int64_t server_now(void) {
  return clock_real_ms();
}

/* Puts c at the end of the queue of unauthenticated links, its place
 * counted from now (server_expire_unauthenticated). */
static void server_enqueue(server_t *srv, conn_t *c) {
  c->accepted_ms = server_now();
  c->queued = 1;
  c->uprev = srv->unauth_tail;
  c->unext = NULL;
  if (srv->unauth_tail)
    srv->unauth_tail->unext = c;
  else
    srv->unauth_head = c;
  srv->unauth_tail = c;
  srv->nunauth++;
}

/* Takes c off the queue of unauthenticated links (if it is on it). */
static void server_unqueue(server_t *srv, conn_t *c) {
  if (!c->queued) return;
  if (c->uprev)
    c->uprev->unext = c->unext;
  else
    srv->unauth_head = c->unext;
  if (c->unext)
    c->unext->uprev = c->uprev;
  else
    srv->unauth_tail = c->uprev;
  c->uprev = c->unext = NULL;
  c->queued = 0;
  srv->nunauth--;
}

static void conn_set_state(conn_t *c, conn_state_t to) {
  log_debug(LOG_LINK, link_label(c->link), "conn %s -> %s", server_conn_state_name(c->state),
            server_conn_state_name(to));
  if (c->state == CONN_HELD && to != CONN_HELD) c->srv->nheld--;
  if (to == CONN_HELD && c->state != CONN_HELD) {
    c->srv->nheld++;
    c->srv->held_total++;
  }
  c->state = to;
  /* Authenticated (Hello accepted, or an operator), held (its certificate
   * is a site's: bounded by SERVER_HOLD_MIN_CAP, not by that queue) or
   * refused: the link no longer holds one of the max_unauthenticated
   * places. */
  if (to != CONN_PENDING && to != CONN_AWAIT_HELLO) {
    /* A handshake completed: admission waits for more while they do (a
     * held link completed its handshake too: a standby electing through a
     * storm is no half-open flood). */
    if (c->queued && (to == CONN_SITE || to == CONN_OPERATOR || to == CONN_HELD))
      c->srv->last_auth_ms = server_now();
    server_unqueue(c->srv, c);
  }
}

/* ---- database records ---- */

/* Counts a record the store could not take (the journal is full or
 * unwritable: db.c logs why and the fix); never silent. */
void server_dropped(server_t *srv, int rc) {
  srv->db_dropped++;
  log_error(LOG_DB, "db", "cannot queue a record (%s); %llu dropped so far", nirc_strerror(rc),
            (unsigned long long)srv->db_dropped);
}

static void server_store_minute(void *arg, const site_t *site, const site_minute_t *m) {
  server_t *srv = arg;
  if (!srv->db) return;
  int rc = store_load_minute(srv->db, site->slug, m);
  if (rc != 0) server_dropped(srv, rc);
}

static void server_send_welcome(server_t *srv, conn_t *c) {
  Nirc__Welcome w = NIRC__WELCOME__INIT;
  w.controller_node = (char *)srv->conf->node;
  w.epoch = srv->epoch;
  w.report_interval_ms = (uint32_t)srv->conf->report_interval_ms;
  w.server_time_ms = clock_now_ms(&srv->clock);
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_WELCOME;
  env.welcome = &w;
  link_send(c->link, &env);
}

/* Refuses the link: error frame to the peer, log line, stored event. */
static void server_refuse(server_t *srv, conn_t *c, Nirc__ErrorCode code, int err,
                          const char *reason) {
  const peer_identity_t *id = link_peer(c->link);
  log_warn(LOG_LINK, link_label(c->link), "refused: %s", reason);
  server_record_event(srv, tls_kind_name(id->kind), id->subject,
                      id->kind == PEER_SITE ? id->name : NULL, link_peer_addr(c->link), "refused",
                      reason);
  conn_set_state(c, CONN_CLOSED);
  link_fail(c->link, code, err, "%s", reason);
}

/* A standby sends agents and operators to the leader. Not stored as a link
 * event: every agent retrying the standby would flood the table. */
static void server_redirect(server_t *srv, conn_t *c) {
  log_debug(LOG_LINK, link_label(c->link), "standby: redirected to %s",
            srv->leader_hint[0] ? srv->leader_hint : "(leader unknown)");
  conn_set_state(c, CONN_CLOSED);
  char quiet[ALARM_MESSAGE_MAX];
  const char *blocked = NULL;
  if (srv->leading && !srv->lost && server_quiet_words(srv, quiet, sizeof quiet, &blocked)) {
    /* Not "in a few seconds" once it has lasted a lease: why, and the fix
     * (the leadership alarm's words). */
    link_fail_hint(c->link, NIRC__ERROR_CODE__ERROR_CODE_NOT_LEADER, NIRC_ENOT_LEADER, "", 0,
                   blocked, "controller %s is %s; nothing was changed", srv->conf->node, quiet);
    return;
  }
  if (srv->leading && !srv->lost) {
    /* The leader itself, between a late renewal of its lease and the next
     * one: it says so, it is no standby. */
    link_fail_hint(c->link, NIRC__ERROR_CODE__ERROR_CODE_NOT_LEADER, NIRC_ENOT_LEADER, "", 0, NULL,
                   "controller %s leads epoch %llu but cannot confirm its lease right now; "
                   "nothing was changed: try again in a few seconds",
                   srv->conf->node, (unsigned long long)srv->epoch);
    return;
  }
  /* A standby has no alarm table: its own stuck rule load is said here. */
  char also[300];
  server_stuck_note(srv, also, sizeof also);
  /* Without a hint the lease stood still or is absent: the election is
   * running, and nobody can be named yet. */
  if (srv->leader_hint[0])
    link_fail_hint(c->link, NIRC__ERROR_CODE__ERROR_CODE_NOT_LEADER, NIRC_ENOT_LEADER,
                   srv->leader_hint, srv->leader_epoch, NULL,
                   "standby controller %s: the leader is %s (epoch %llu)%s", srv->conf->node,
                   srv->leader_hint, (unsigned long long)srv->leader_epoch, also);
  else if (srv->leader_why[0])
    /* The reason by name too: nircctl stops asking instead of waiting
     * for an election that is not running. */
    link_fail_hint(c->link, NIRC__ERROR_CODE__ERROR_CODE_NOT_LEADER, NIRC_ENOT_LEADER, "", 0,
                   srv->leader_blocked ? leader_block_name((leader_block_t)srv->leader_blocked)
                                       : NULL,
                   "%s is a standby and %s%s", srv->conf->node, srv->leader_why, also);
  else
    link_fail_hint(c->link, NIRC__ERROR_CODE__ERROR_CODE_NOT_LEADER, NIRC_ENOT_LEADER, "", 0, NULL,
                   "%s is a standby and no leader is known: an election is running%s",
                   srv->conf->node, also);
}

int server_may_issue(const server_t *srv) {
  return srv->leading && !srv->lost && !srv->stopping && leader_may_issue(srv->leader);
}

/* A site link on the leader: refused if its site is not configured or
 * removed, else it waits for its Hello. 0, or -1 when refused. */
static int server_admit_site(server_t *srv, conn_t *c) {
  const peer_identity_t *id = link_peer(c->link);
  char why[200];
  const site_t *known = sites_find(&srv->sites, id->name);
  if (!known) {
    snprintf(why, sizeof why, "certificate names site '%s', which is not configured", id->name);
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_UNKNOWN_SITE, NIRC_EUNKNOWN_SITE, why);
    return -1;
  }
  if (known->life == SITE_REMOVED) {
    server_site_removed_text(known, why, sizeof why);
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_UNKNOWN_SITE, NIRC_EUNKNOWN_SITE, why);
    return -1;
  }
  conn_set_state(c, CONN_AWAIT_HELLO);
  return 0;
}

/* What the hold decision (net/hold.h) needs to know now. */
static hold_view_t server_hold_view(const server_t *srv) {
  hold_view_t v = {.leading = srv->leading && !srv->lost,
                   .stopping = srv->lost || srv->stopping,
                   .leader_named = srv->leader_hint[0] != '\0',
                   .suspect = srv->leader_suspect != 0,
                   .renewals = srv->leader_renewals};
  return v;
}

/* Whether a site link reaching a controller that does not lead may wait
 * on its link until the controller knows where it belongs (net/hold.h):
 * within the cap, and not when it stops. */
static int server_may_hold(const server_t *srv) {
  if (srv->lost || srv->stopping) return 0;
  size_t cap = 2 * srv->sites.n > SERVER_HOLD_MIN_CAP ? 2 * srv->sites.n : SERVER_HOLD_MIN_CAP;
  return srv->nheld < cap;
}

static void server_on_open(link_t *l) {
  conn_t *c = link_data(l);
  server_t *srv = c->srv;
  const peer_identity_t *id = link_peer(l);
  char why[200];
  /* The blocklist, and a CRL newer than the context this handshake ran
   * on (a reload while it was in progress), apply before anything else. */
  if (tls_revocation_check(srv->revocation, link_peer_cert(l), why, sizeof why)) {
    srv->refusals.revoked++;
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_FORBIDDEN, NIRC_EIDENTITY, why);
    return;
  }
  if (!srv->leading && id->kind == PEER_SITE && server_may_hold(srv)) {
    conn_set_state(c, CONN_HELD);
    c->held_ms = server_now();
    c->held_renewals = srv->leader_renewals;
    hold_view_t v = server_hold_view(srv);
    log_debug(LOG_LINK, link_label(l), "held: %s",
              v.leader_named && !v.suspect ? "until the leader is seen renewing its lease"
                                           : "electing (no leader known, or its lease unrenewed)");
    return;
  }
  if (!srv->leading && (id->kind == PEER_SITE || id->kind == PEER_OPERATOR)) {
    server_redirect(srv, c);
    return;
  }
  switch (id->kind) {
  case PEER_SITE: server_admit_site(srv, c); return;
  case PEER_OPERATOR:
    /* One identity may not hold the controller's descriptors: beyond its
     * cap a link is refused before it may send anything. */
    if (guard_op_open(srv->guard, id->subject, server_now()) != 0) {
      srv->refusals.op_link_cap++;
      snprintf(why, sizeof why,
               "%s already has %u links open, the most one operator may hold ([ops] "
               "max_links_per_operator): close one and retry",
               id->subject, guard_op_links(srv->guard, id->subject));
      server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_RATE_LIMITED, NIRC_EFULL, why);
      return;
    }
    c->op_counted = 1;
    conn_set_state(c, CONN_OPERATOR);
    /* Replies may be large (the status of 20,000 sites); what the
     * operator sends stays under FRAME_MAX_PAYLOAD. */
    link_allow_large_sends(l, FRAME_MAX_REPLY);
    log_info(LOG_OPS, link_label(l), "operator connected (role %s)", tls_role_name(id->role));
    c->op_connected_ms = clock_real_ms(); /* recorded with its first request (server.h) */
    return;
  default:
    snprintf(why, sizeof why, "certificate '%s' is neither a site nor an operator", id->subject);
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_FORBIDDEN, NIRC_EFORBIDDEN, why);
    return;
  }
}

/* Whether every site a route names (shares and inbound sources) is one
 * this controller knows: what an agent says it routes by is believed
 * only if the controller could have sent it. */
static int server_route_known(server_t *srv, const route_t *r, char *why, size_t len) {
  for (unsigned i = 0; i < r->n_share + r->n_inbound; i++) {
    const char *slug = i < r->n_share ? r->share[i].site : r->inbound[i - r->n_share].site;
    if (!sites_find_live(&srv->sites, slug)) {
      snprintf(why, len, "it names site '%s', which is not configured", slug);
      return NIRC_EUNKNOWN_SITE;
    }
  }
  return 0;
}

static void server_on_hello(server_t *srv, conn_t *c, const Nirc__Hello *h) {
  const peer_identity_t *id = link_peer(c->link);
  char why[256];
  /* Identity comes from the certificate; the Hello's claim must agree. */
  if (!h->site || strcmp(h->site, id->name) != 0) {
    snprintf(why, sizeof why, "certificate is %s but Hello claims site '%.64s'", id->subject,
             h->site ? h->site : "");
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_IDENTITY, NIRC_EIDENTITY, why);
    return;
  }
  if (h->protocol_version != NIRC_PROTOCOL_VERSION) {
    snprintf(why, sizeof why, "protocol version %u not supported (this controller speaks %u)",
             h->protocol_version, NIRC_PROTOCOL_VERSION);
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_VERSION, NIRC_EPROTOCOL, why);
    return;
  }
  /* The other strings are only stored and shown: a peer does not get to
   * make them kilobytes long, nor to have them cut without a word. */
  size_t alen = h->adapter ? strlen(h->adapter) : 0;
  size_t vlen = h->software_version ? strlen(h->software_version) : 0;
  if (alen >= sizeof(((site_t *)0)->adapter) || vlen > SERVER_HELLO_VERSION_MAX) {
    snprintf(why, sizeof why,
             "Hello strings too long: adapter %zu bytes (at most %zu), software_version %zu "
             "bytes (at most %d)",
             alen, sizeof(((site_t *)0)->adapter) - 1, vlen, SERVER_HELLO_VERSION_MAX);
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_MALFORMED, NIRC_ERANGE, why);
    return;
  }
  site_t *site = sites_find(&srv->sites, id->name);
  if (!site) { /* the registry does not shrink at run time; defensive */
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_UNKNOWN_SITE, NIRC_EUNKNOWN_SITE,
                  "site is not configured");
    return;
  }
  if (site->life == SITE_REMOVED) { /* removed between the handshake and its Hello */
    server_site_removed_text(site, why, sizeof why);
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_UNKNOWN_SITE, NIRC_EUNKNOWN_SITE, why);
    return;
  }
  int64_t now = server_now();
  if (site->conn && site->state == SITE_ONLINE &&
      now - site->last_seen_ms < (int64_t)srv->sites.stale_after_ms) {
    /* One site, one live agent link: a second one with the same
     * certificate (a stolen or copied key, or an old agent host left
     * running after a migration) is refused while the first is healthy,
     * so it cannot take the site over; the first is never displaced by it. */
    conn_t *live = site->conn;
    char detail[200];
    snprintf(detail, sizeof detail,
             "second agent link from %s refused: %s already has a live link "
             "from %s",
             link_peer_addr(c->link), site->slug, link_peer_addr(live->link));
    server_record_event(srv, "site", id->subject, site->slug, link_peer_addr(c->link), "duplicate",
                        detail);
    site->duplicate_ms = now;
    srv->last_duplicate_ms = now;
    nirc_strlcpy(site->duplicate_addr, link_peer_addr(c->link), sizeof site->duplicate_addr);
    snprintf(why, sizeof why,
             "site %s already has a live agent link from %s (heard %lld ms ago); a second agent "
             "with its certificate is refused while that one is healthy (if it is gone, its "
             "link goes stale within %u ms: retry then)",
             site->slug, link_peer_addr(live->link), (long long)(now - site->last_seen_ms),
             srv->sites.stale_after_ms);
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_IDENTITY, NIRC_EIDENTITY, why);
    return;
  }
  if (site->conn) {
    /* The old link is stale: its agent is gone, or reconnected before we
     * noticed its old link die (half-open TCP). The new link speaks for
     * the site: a deliberate replacement works. */
    conn_t *old = site->conn;
    log_warn(LOG_SITE, site->slug, "new link replaces %s (stale)", link_label(old->link));
    old->site = NULL;
    conn_set_state(old, CONN_CLOSED);
    link_fail(old->link, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_ECLOSED,
              "replaced by a newer link from the same site");
    site->conn = NULL;
  }
  site->conn = c;
  c->site = site;
  nirc_strlcpy(site->peer_addr, link_peer_addr(c->link), sizeof site->peer_addr);
  nirc_strlcpy(site->adapter, h->adapter ? h->adapter : "", sizeof site->adapter);
  sites_on_hello(site, now);
  conn_set_state(c, CONN_SITE);
  char detail[160];
  snprintf(detail, sizeof detail, "adapter=%.15s version=%.40s", site->adapter,
           h->software_version ? h->software_version : "");
  server_record_event(srv, "site", id->subject, site->slug, link_peer_addr(c->link), "online",
                      detail);
  server_send_welcome(srv, c);
  route_t applied;
  const route_t *ap = NULL;
  if (h->applied && route_from_directive(h->applied, &applied, why, sizeof why) == 0 &&
      route_validate(&applied, why, sizeof why) == 0 &&
      server_route_known(srv, &applied, why, sizeof why) == 0) {
    ap = &applied;
  } else if (h->applied) {
    /* Believed, it would be shown and planned from as the site's route:
     * it is checked as a directive is, and ignored (the link stays, the
     * controller sends its own route) when it is not one. */
    char ignored[320];
    snprintf(ignored, sizeof ignored, "applied route in Hello ignored: %s", why);
    log_warn(LOG_SITE, site->slug, "%s", ignored);
    server_record_event(srv, "site", id->subject, site->slug, link_peer_addr(c->link),
                        "route_ignored", ignored);
  }
  /* When the agent went home on its own (a newer agent says): the engine
   * checks the number before it believes it. */
  engine_went_home_t went = {.at_ms = h->went_home_at_ms,
                             .clock = h->went_home_clock,
                             .ago_ms = h->went_home_ago_ms,
                             .ago_said = h->went_home_ago_said};
  if (srv->engine)
    engine_on_hello(srv->engine, (size_t)(site - srv->sites.v), ap, h->route_unverified, &went);
  server_pbx_on_hello(srv, site, h, id->not_after_ms); /* its host: state file, certificate */
  /* Whether it has that route (home when none) in force at its PBX (older agents: unsaid, has). */
  char unknown_why[200];
  safetext_escape(h->route_unconfirmed_why ? h->route_unconfirmed_why : "", unknown_why,
                  sizeof unknown_why);
  if (h->route_unconfirmed)
    log_warn(LOG_SITE, site->slug, "the agent has not confirmed its route at the PBX: %s",
             unknown_why);
  /* Since when, counted by the agent: its directive alarm, raised on a
   * tick that may come before the ROUTE_UNCONFIRMED it queued, is raised
   * since then. */
  server_pbx_seen_t seen = server_pbx_seen_ago(
      h->route_unconfirmed && h->route_unconfirmed_ago_said, h->route_unconfirmed_ago_ms, now);
  char when[160];
  server_pbx_hello_words(&seen, when, sizeof when);
  if (srv->engine)
    engine_on_route_known_late(srv->engine, (size_t)(site - srv->sites.v), !h->route_unconfirmed,
                               unknown_why, seen.state == SERVER_PBX_SEEN_LATE ? seen.late_ms : 0,
                               when);
}

static void server_on_report(server_t *srv, conn_t *c, const Nirc__LoadReport *r) {
  site_t *site = c->site;
  char why[256];
  if (r->site && *r->site && strcmp(r->site, site->slug) != 0) {
    snprintf(why, sizeof why, "certificate is site:%s but LoadReport claims site '%.64s'",
             site->slug, r->site);
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_IDENTITY, NIRC_EIDENTITY, why);
    return;
  }
  if (sites_validate_report(r, why, sizeof why) != 0) {
    char msg[300];
    snprintf(msg, sizeof msg, "invalid LoadReport: %s", why);
    srv->refusals.reports_invalid++;
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_MALFORMED, NIRC_ERANGE, msg);
    return;
  }
  /* Implausible against the site's configuration or its last report: not
   * the site's load (the planner never sees it), counted and alarmed. The
   * link stays: directives must still reach the site, and with no report
   * stored it goes stale, so it takes no sources meanwhile. */
  sites_refusal_t kind;
  if (sites_check_plausible(site, r, &kind, why, sizeof why) != 0) {
    srv->refusals.reports_implausible[kind]++;
    if (server_now() - site->refused_ms >= 10000)
      log_warn(LOG_SITE, site->slug, "report refused (%s): %s", sites_refusal_name(kind), why);
    site->refused_ms = server_now();
    srv->last_refused_ms = site->refused_ms;
    nirc_strlcpy(site->refused_why, why, sizeof site->refused_why);
    return;
  }
  /* The agent's clock, whatever the report's figures are worth. */
  int64_t offset = r->timestamp_ms - clock_now_ms(&srv->clock);
  double speed = srv->clock.speed > 1 ? srv->clock.speed : 1;
  if (r->timestamp_ms > 0 && (double)llabs(offset) >= SERVER_CLOCK_OFFSET_MS * speed) {
    site->clock_offset_ms = offset;
    site->clock_offset_seen_ms = srv->last_clock_offset_ms = clock_real_ms();
  }
  site_minute_t done;
  sites_credit_routed(&srv->sites, site, r);
  if (sites_on_report(site, r, server_now(), clock_now_ms(&srv->clock), &done))
    server_store_minute(srv, site, &done);
}

/* A site link sent something else than its Hello first. */
static void server_refuse_before_hello(server_t *srv, conn_t *c, const Nirc__Envelope *env) {
  if (env->msg_case == NIRC__ENVELOPE__MSG_OPERATOR_REQUEST) {
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_FORBIDDEN, NIRC_EFORBIDDEN,
                  "a site certificate may not send operator requests");
    return;
  }
  char why[80];
  snprintf(why, sizeof why, "expected Hello, got message type %d", env->msg_case);
  server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_EPROTOCOL, why);
}

/* Answers a held link as if it had just arrived: on the leader, its site
 * is admitted and its kept Hello (if it came) handled; elsewhere it is
 * sent to the leader now known, or away with "no leader known" once held
 * too long. */
static void server_unhold(server_t *srv, conn_t *c) {
  uint8_t *hello = c->held_hello;
  size_t len = c->held_hello_len;
  c->held_hello = NULL;
  c->held_hello_len = 0;
  if (!srv->leading || srv->lost) {
    free(hello);
    server_redirect(srv, c);
    return;
  }
  if (server_admit_site(srv, c) != 0) {
    free(hello);
    return;
  }
  if (!hello) {
    /* Its Hello is still on the way: it gets a fresh place in the queue
     * and the usual handshake_timeout to send it. */
    server_enqueue(srv, c);
    return;
  }
  Nirc__Hello *h = nirc__hello__unpack(frame_allocator, len, hello);
  free(hello);
  if (!h) {
    link_close(c->link, NIRC_ENOMEM, "out of memory reading a kept Hello");
    return;
  }
  server_on_hello(srv, c, h);
  nirc__hello__free_unpacked(h, frame_allocator);
}

void server_election_changed(server_t *srv) {
  if (!srv->nheld) return;
  hold_view_t v = server_hold_view(srv);
  unsigned answered = 0;
  for (conn_t *c = srv->conns, *next; c; c = next) {
    next = c->next;
    if (c->state != CONN_HELD) continue;
    hold_verdict_t verdict = hold_decide(&v, c->held_renewals);
    if (verdict == HOLD_KEEP) continue;
    server_unhold(srv, c);
    answered++;
  }
  if (!answered) return;
  if (v.leading)
    log_info(LOG_LINK, srv->conf->node,
             "%u site link%s held through the election: answered as leader", answered,
             answered == 1 ? "" : "s");
  else if (v.leader_named && !v.stopping)
    log_info(LOG_LINK, srv->conf->node,
             "%u site link%s held until the leader was seen renewing its lease: sent to %s",
             answered, answered == 1 ? "" : "s", srv->leader_hint);
  else
    log_info(LOG_LINK, srv->conf->node, "%u held site link%s sent away: this controller stops",
             answered, answered == 1 ? "" : "s");
}

/* Held links kept for hold_expire_after_ms: sent away as before (NOT_LEADER, with the leader's
 * address if one is named), to retry. */
static void server_expire_held(server_t *srv) {
  int64_t deadline = server_now() - (int64_t)hold_expire_after_ms(srv->conf->lease_timeout_ms);
  for (conn_t *c = srv->conns, *next; c && srv->nheld; c = next) {
    next = c->next;
    if (c->state == CONN_HELD && c->held_ms <= deadline) server_unhold(srv, c);
  }
}

static void server_on_message(link_t *l, Nirc__Envelope *env) {
  conn_t *c = link_data(l);
  server_t *srv = c->srv;
  char why[160];
  switch (c->state) {
  case CONN_HELD:
    /* Kept, packed, for the controller the election makes leader. */
    if (env->msg_case == NIRC__ENVELOPE__MSG_HELLO && !c->held_hello) {
      size_t n = nirc__hello__get_packed_size(env->hello);
      c->held_hello = malloc(n ? n : 1);
      if (!c->held_hello) {
        link_close(l, NIRC_ENOMEM, "out of memory keeping a Hello through an election");
        return;
      }
      c->held_hello_len = nirc__hello__pack(env->hello, c->held_hello);
      return;
    }
    if (env->msg_case == NIRC__ENVELOPE__MSG_HELLO) {
      server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_EPROTOCOL,
                    "a second Hello on one link");
      return;
    }
    server_refuse_before_hello(srv, c, env);
    return;
  case CONN_AWAIT_HELLO:
    if (env->msg_case == NIRC__ENVELOPE__MSG_HELLO) {
      server_on_hello(srv, c, env->hello);
      return;
    }
    server_refuse_before_hello(srv, c, env);
    return;
  case CONN_SITE:
    switch (env->msg_case) {
    case NIRC__ENVELOPE__MSG_LOAD_REPORT: server_on_report(srv, c, env->load_report); return;
    case NIRC__ENVELOPE__MSG_PBX_EVENT:
      if (server_pbx_event(srv, c, env->pbx_event, why, sizeof why) != 0)
        server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_IDENTITY, NIRC_EIDENTITY, why);
      return;
    case NIRC__ENVELOPE__MSG_DIRECTIVE_ACK: {
      const Nirc__DirectiveAck *ack = env->directive_ack;
      if (ack->site && *ack->site && strcmp(ack->site, c->site->slug) != 0) {
        snprintf(why, sizeof why, "certificate is site:%s but DirectiveAck claims site '%.40s'",
                 c->site->slug, ack->site);
        server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_IDENTITY, NIRC_EIDENTITY, why);
        return;
      }
      if (srv->engine) engine_on_ack(srv->engine, (size_t)(c->site - srv->sites.v), ack);
      return;
    }
    case NIRC__ENVELOPE__MSG_ERROR:
      log_warn(LOG_SITE, c->site->slug, "agent reports error %d: %.200s", env->error->code,
               env->error->message ? env->error->message : "");
      return;
    case NIRC__ENVELOPE__MSG_OPERATOR_REQUEST:
      server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_FORBIDDEN, NIRC_EFORBIDDEN,
                    "a site certificate may not send operator requests");
      return;
    default:
      snprintf(why, sizeof why, "message type %d is not valid on a site link", env->msg_case);
      server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_EPROTOCOL, why);
      return;
    }
  case CONN_OPERATOR:
    if (env->msg_case == NIRC__ENVELOPE__MSG_OPERATOR_REQUEST) {
      /* Leadership unconfirmed (resumed after a pause, or lost): nothing
       * may be decided here; nircctl tries the other controllers. */
      if (!server_may_issue(srv)) {
        server_redirect(srv, c);
        return;
      }
      srv->on_operator(srv, c, env->operator_request);
      return;
    }
    if (env->msg_case == NIRC__ENVELOPE__MSG_HELLO) {
      server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_FORBIDDEN, NIRC_EFORBIDDEN,
                    "an operator certificate may not act as a site agent");
      return;
    }
    snprintf(why, sizeof why, "message type %d is not valid on an operator link", env->msg_case);
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_EPROTOCOL, why);
    return;
  default: return; /* closing: ignore */
  }
}

static void server_on_close(link_t *l, int err, const char *why, int was_open) {
  conn_t *c = link_data(l);
  server_t *srv = c->srv;
  const peer_identity_t *id = link_peer(l);
  server_unqueue(srv, c);
  if (c->state == CONN_HELD) {
    log_debug(LOG_LINK, link_label(l), "held link closed: %s", why);
    conn_set_state(c, CONN_CLOSED);
  }
  free(c->held_hello);
  if (c->op_counted) guard_op_close(srv->guard, id->subject, server_now());
  if (err == NIRC_ERATE_LIMITED) srv->refusals.rate_limited++;
  if (c->evicted) {
    /* Made room for a newer connection: counted and summarised by
     * server_log_cap, not a line and a row each in a flood. */
  } else if (!was_open) {
    /* Refused at the TLS layer: no certificate, another CA, expired,
     * revoked, or no handshake within handshake_timeout. */
    srv->refusals.tls_failed++;
    /* Anyone can fail a handshake as often as they can connect: the
     * first few distinct failures of an address are stored (evidence),
     * the rest counted and summarised per interval (server_hs_summary). */
    if (guard_hs_failed(srv->guard, link_peer_addr(l), why, server_now())) {
      log_warn(LOG_TLS, link_label(l), "closed before authentication: %s", why);
      server_record_event(srv, "unknown", NULL, NULL, link_peer_addr(l), "tls_failed", why);
    }
  } else if (c->site) {
    site_t *site = c->site;
    log_info(LOG_SITE, site->slug, "link closed: %s", why && *why ? why : nirc_strerror(err));
    sites_on_link_down(site, server_now());
    if (srv->engine) engine_on_link_down(srv->engine, (size_t)(site - srv->sites.v));
    server_record_event(srv, "site", id->subject, site->slug, link_peer_addr(l), "offline", why);
  } else if (c->state == CONN_OPERATOR) {
    log_info(LOG_OPS, link_label(l), "closed: %s", why);
    server_record_op_connected(srv, c);
    server_record_event(srv, "operator", id->subject, NULL, link_peer_addr(l), "closed", why);
  } else if (c->state == CONN_AWAIT_HELLO) {
    log_warn(LOG_LINK, link_label(l), "closed before Hello: %s", why);
    server_record_event(srv, "site", id->subject, id->name, link_peer_addr(l), "closed", why);
  }
  if (srv->engine) engine_on_client_closed(srv->engine, c);
  /* unlink and free */
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  srv->nconns--;
  free(c);
}

static const link_cbs_t server_link_cbs = {
    .on_open = server_on_open,
    .on_message = server_on_message,
    .on_close = server_on_close,
};

/* Says what the unauthenticated cap refused since it last said so, at
 * most once a second: a flood must not write a line per connection.
 * Called on every refusal and from the tick, which writes the last line
 * of a burst. */
static void server_log_cap(server_t *srv) {
  const server_refusals_t *rf = &srv->refusals;
  int64_t now = server_now();
  if ((rf->cap_refused == srv->cap_logged_refused && rf->evicted == srv->cap_logged_evicted) ||
      now - srv->cap_logged_ms < 1000)
    return;
  log_warn(LOG_LINK, "listen",
           "unauthenticated links at the cap of %u ([controller] max_unauthenticated): %llu new "
           "connections closed at once, %llu stalled links evicted for newer ones",
           srv->conf->max_unauthenticated,
           (unsigned long long)(rf->cap_refused - srv->cap_logged_refused),
           (unsigned long long)(rf->evicted - srv->cap_logged_evicted));
  srv->cap_logged_ms = now;
  srv->cap_logged_refused = rf->cap_refused;
  srv->cap_logged_evicted = rf->evicted;
}

/* The oldest unauthenticated link that admit_stalled says may give way,
 * or NULL. Measured from its last byte, not from its accept: a handshake
 * in progress under a storm (slow loop turns, slow peers) is not taken
 * for a stalled one, whatever its age. The queue holds at most
 * max_unauthenticated links. */
static conn_t *server_stalled_oldest(server_t *srv, bool *active) {
  conn_t *stalled = NULL;
  *active = false;
  for (conn_t *c = srv->unauth_head; c && (!stalled || !*active); c = c->unext) {
    uint64_t idle = link_rx_idle_ms(c->link);
    bool got = link_rx_bytes(c->link) > 0;
    if (admit_in_progress(got, idle)) *active = true;
    if (!stalled && admit_stalled(got, idle)) stalled = c;
  }
  return stalled;
}

/* Closes a stalled link to make room for a new connection. */
static void server_evict(server_t *srv, conn_t *old) {
  old->evicted = 1;
  srv->refusals.evicted++;
  conn_set_state(old, CONN_CLOSED);
  link_close(old->link, NIRC_ETIMEOUT, "evicted: stalled at the unauthenticated cap");
}

static void server_rejected_closed(uv_handle_t *h) {
  free(h);
}

/* Shedding at the cap: the connection is accepted only to be closed at
 * once. */
static void server_reject(server_t *srv, uv_stream_t *listener) {
  uv_tcp_t *t = malloc(sizeof *t);
  if (!t) {
    log_error(LOG_LINK, "listen", "out of memory refusing a connection");
    return;
  }
  uv_tcp_init(srv->loop, t);
  if (uv_accept(listener, (uv_stream_t *)t) == 0) srv->refusals.cap_refused++;
  uv_close((uv_handle_t *)t, server_rejected_closed);
}

/* A site link that finished TLS but has not said Hello within
 * handshake_timeout of connecting is refused: answering pings would
 * otherwise keep its unauthenticated place for ever. The queue is in
 * arrival order, so only its expired head is walked; links still in the
 * TLS handshake are closed by their own timer. */
static void server_expire_unauthenticated(server_t *srv) {
  int64_t deadline = server_now() - (int64_t)srv->conf->handshake_timeout_ms;
  char why[96];
  snprintf(why, sizeof why, "no Hello within %llu ms of connecting",
           (unsigned long long)srv->conf->handshake_timeout_ms);
  for (conn_t *c = srv->unauth_head, *next; c && c->accepted_ms <= deadline; c = next) {
    next = c->unext;
    if (c->state == CONN_AWAIT_HELLO)
      server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_ETIMEOUT, why);
  }
}

/* Accepts the listener's next connection as an unauthenticated link. */
static void server_accept(server_t *srv, uv_stream_t *listener) {
  conn_t *c = calloc(1, sizeof *c);
  if (!c) {
    log_error(LOG_LINK, "listen", "out of memory accepting a link");
    return;
  }
  c->srv = srv;
  if (link_accept(listener, srv->tls, &srv->link_opts, &server_link_cbs, c, &c->link) != 0) {
    free(c);
    return;
  }
  c->next = srv->conns;
  if (srv->conns) srv->conns->prev = c;
  srv->conns = c;
  srv->nconns++;
  /* Unauthenticated until its Hello (or operator certificate) is accepted. */
  server_enqueue(srv, c);
}

/* Decides what happens to the listener's next connection (admit.h) and
 * does it. Leaving it unaccepted is how it waits: libuv keeps the one
 * connection it took and stops reading the listener, so the rest queue in
 * the kernel's backlog, until server_on_admit_check accepts it. */
static void server_admit(server_t *srv, uv_stream_t *listener, unsigned li) {
  conn_t *stalled = NULL;
  bool active = false;
  if (srv->nunauth >= srv->conf->max_unauthenticated) {
    stalled = server_stalled_oldest(srv, &active);
    if (!srv->cap_full_since_ms) srv->cap_full_since_ms = server_now();
  } else {
    srv->cap_full_since_ms = 0;
  }
  admit_state_t st = {
      .nunauth = srv->nunauth,
      .cap = srv->conf->max_unauthenticated,
      .stalled = stalled != NULL,
      .now_ms = server_now(),
      .last_auth_ms = srv->last_auth_ms,
      .full_since_ms = srv->cap_full_since_ms,
      .queue_active = active,
  };
  admit_action_t act = admit_decide(&st);
  srv->listen_waiting[li] = act == ADMIT_WAIT;
  switch (act) {
  case ADMIT_WAIT: srv->refusals.cap_waited++; return;
  case ADMIT_SHED:
    server_reject(srv, listener);
    server_log_cap(srv);
    return;
  case ADMIT_EVICT:
    server_evict(srv, stalled);
    server_log_cap(srv);
    server_accept(srv, listener);
    return;
  case ADMIT_ACCEPT: server_accept(srv, listener); return;
  }
}

static void server_on_connection(uv_stream_t *listener, int status) {
  server_t *srv = listener->data;
  if (status < 0) {
    log_warn(LOG_LINK, "listen", "accept error: %s", uv_strerror(status));
    return;
  }
  if (srv->stopping) return;
  unsigned li = (unsigned)((uv_tcp_t *)listener - srv->listeners);
  server_admit(srv, listener, li);
}

/* After every loop turn's I/O (so every link's received bytes have been
 * read and their silence is real): a connection waiting at the cap is
 * taken as soon as a place frees, a link stalls or shedding begins.
 * Accepting it makes libuv read the listener again. */
static void server_on_admit_check(uv_check_t *h) {
  server_t *srv = h->data;
  if (srv->stopping) return;
  for (unsigned i = 0; i < srv->nlisten; i++)
    if (srv->listen_waiting[i]) server_admit(srv, (uv_stream_t *)&srv->listeners[i], i);
}

/* ---- timers and signals ---- */

static void server_on_stale(void *arg, site_t *site) {
  server_t *srv = arg;
  char detail[96];
  snprintf(detail, sizeof detail, "no report for %u ms", srv->sites.stale_after_ms);
  server_record_event(srv, "site", NULL, site->slug, site->peer_addr, "stale", detail);
}

/* One row and one line for an address's failed handshakes of an interval
 * that were not stored one by one. */
static void server_hs_summary(void *arg, const char *addr, uint64_t count, const char *last,
                              int64_t since_ms) {
  server_t *srv = arg;
  char detail[512];
  snprintf(detail, sizeof detail,
           "%llu more failed TLS handshakes from %s in %lld s (counted, not stored one by "
           "one); last: %.300s",
           (unsigned long long)count, addr, (long long)((server_now() - since_ms + 999) / 1000),
           last);
  log_warn(LOG_TLS, "listen", "%s", detail);
  server_record_event(srv, "unknown", NULL, NULL, addr, "tls_failed", detail);
}

static void server_on_tick(uv_timer_t *t) {
  server_t *srv = t->data;
  if (srv->stopping) return;
  /* Scans of every site that need no finer resolution than a second run
   * once a second: at 20,000 configured sites each scan is ~0.1 % of a
   * core per run. A link is stale after seconds of silence, and a minute
   * left open by a silent site is flushed within a second of its end. */
  bool second = ++srv->ticks % (1000 / SERVER_TICK_MS) == 0;
  guard_hs_flush(srv->guard, server_now(), false, server_hs_summary, srv);
  if (second) sites_check_stale(&srv->sites, server_now(), server_on_stale, srv);
  server_expire_unauthenticated(srv);
  if (second && srv->nheld) server_expire_held(srv);
  server_log_cap(srv);
  if (srv->engine && server_may_issue(srv)) {
    server_observe_store(srv);
    server_history_tick(srv);
    engine_tick(srv->engine);
    server_pbx_load_tick(srv); /* after the routes: nircctl site's history of the PBXs */
    server_read_wape(srv);
    server_read_superseded(srv);
    server_prune_history(srv);
  } else if (srv->engine && srv->leading && !srv->lost) {
    server_observe_leadership(srv); /* why it issues nothing: an alarm */
  }
  if (second)
    sites_flush_minutes(&srv->sites, clock_now_ms(&srv->clock), false, server_store_minute, srv);
}

/* In an HTTP thread, httpd's lock held: only signals the loop. */
static void server_web_wake(void *arg) {
  server_t *srv = arg;
  uv_async_send(&srv->web_wake);
}

static void server_on_web_wake(uv_async_t *a) {
  server_t *srv = a->data;
  if (!srv->stopping) srv->on_publish(srv);
}

static void server_on_signal(uv_signal_t *s, int signum) {
  server_t *srv = s->data;
  log_info(LOG_MAIN, srv->conf->node, "signal %d: shutting down", signum);
  server_stop(srv);
}

int server_tls_load(const nircd_conf_t *conf, SSL_CTX **ctx, tls_revocation_t **rev, char *err,
                    size_t errlen) {
  int rc = tls_ctx_new(TLS_SERVER, conf->ca, conf->cert, conf->key, ctx, err, errlen);
  if (rc) return rc;
  rc = tls_revocation_load(conf->ca, conf->crl, conf->blocklist, rev, err, errlen);
  if (rc == 0) {
    rc = tls_revocation_install(*rev, *ctx, err, errlen);
    if (rc) tls_revocation_free(*rev);
  }
  if (rc) {
    SSL_CTX_free(*ctx);
    *ctx = NULL;
    *rev = NULL;
    return rc;
  }
  int days = tls_revocation_crl_days_left(*rev);
  if (days >= 0 && days < SERVER_CRL_WARN_DAYS)
    log_warn(LOG_TLS, conf->node,
             "%s needs its next update in %d days, after which every certificate of its CA is "
             "refused: publish a fresh CRL (deploy/pki.sh DIR) and send nircd SIGHUP",
             conf->crl, days);
  return 0;
}

void server_reload(server_t *srv) {
  const nircd_conf_t *conf = srv->conf;
  SSL_CTX *ctx;
  tls_revocation_t *rev;
  char err[768];
  if (server_tls_load(conf, &ctx, &rev, err, sizeof err) != 0) {
    srv->refusals.reloads_failed++;
    log_error(LOG_TLS, conf->node, "reload failed, the previous certificates stay in use: %s", err);
    return;
  }
  /* Each live link's SSL holds a reference to the context it was made
   * from, so freeing ours drops no link. */
  SSL_CTX_free(srv->tls);
  tls_revocation_free(srv->revocation);
  srv->tls = ctx;
  srv->revocation = rev;
  srv->refusals.reloads_ok++;
  /* A link authenticated before the reload keeps its session; only a
   * certificate revoked since is a reason to end it. Closing does not
   * free anything, so walking the list meanwhile is safe. */
  unsigned live = 0, closed = 0;
  for (conn_t *c = srv->conns; c; c = c->next) {
    if (c->state == CONN_CLOSED || link_state(c->link) != LINK_OPEN) continue;
    live++;
    char why[200], reason[240];
    if (!tls_revocation_check(rev, link_peer_cert(c->link), why, sizeof why)) continue;
    closed++;
    srv->refusals.revoked++;
    snprintf(reason, sizeof reason, "%s (link closed on reload)", why);
    server_refuse(srv, c, NIRC__ERROR_CODE__ERROR_CODE_FORBIDDEN, NIRC_EIDENTITY, reason);
  }
  log_info(LOG_TLS, conf->node,
           "reloaded: CA %s, certificate %s, CRL %s (%zu revoked), blocklist %s (%zu "
           "fingerprints); %u of %u live links closed as revoked",
           conf->ca, conf->cert, conf->crl[0] ? conf->crl : "none", tls_revocation_crl_entries(rev),
           conf->blocklist[0] ? conf->blocklist : "none", tls_revocation_blocked(rev), closed,
           live);
}

static void server_on_sighup(uv_signal_t *s, int signum) {
  server_t *srv = s->data;
  log_info(LOG_MAIN, srv->conf->node, "SIGHUP: reloading certificates and revocation lists");
  server_reload(srv);
}

static void server_db_closed(void *arg) {
  server_t *srv = arg;
  srv->db = NULL;
}

static void server_db_read_closed(void *arg) {
  server_t *srv = arg;
  srv->db_read = NULL;
}

static void server_db_ops_closed(void *arg) {
  server_t *srv = arg;
  srv->db_ops = NULL;
}

static void server_webhook_closed(void *arg) {
  server_t *srv = arg;
  srv->webhook = NULL;
}

static void server_finish_stop(server_t *srv) {
  if (!uv_is_closing((uv_handle_t *)&srv->drain)) uv_close((uv_handle_t *)&srv->drain, NULL);
  /* Notifications still queued are dropped (and counted): the alarms
   * themselves are in the database. */
  if (srv->webhook && !srv->webhook_closing) {
    srv->webhook_closing = 1;
    webhook_close(srv->webhook, server_webhook_closed, srv);
  }
  if (srv->db && !srv->db_closing) {
    srv->db_closing = 1;
    size_t left = db_queue_depth(srv->db);
    if (left) log_error(LOG_DB, "db", "%zu records not written at shutdown", left);
    db_close(srv->db, server_db_closed, srv);
  }
  if (srv->db_read && !srv->db_read_closing) {
    srv->db_read_closing = 1;
    db_close(srv->db_read, server_db_read_closed, srv);
  }
  if (srv->db_ops && !srv->db_ops_closing) {
    srv->db_ops_closing = 1;
    db_close(srv->db_ops, server_db_ops_closed, srv);
  }
}

static void server_on_drained(void *arg, int err, const char *msg, PGresult *res) {
  server_finish_stop(arg);
}

static void server_on_drain_timeout(uv_timer_t *t) {
  log_warn(LOG_DB, "db", "database did not drain within %d ms", SERVER_DRAIN_MS);
  server_finish_stop(t->data);
}

static void server_on_linger(uv_timer_t *t) {
  server_t *srv = t->data;
  if (srv->nconns > 0 && uv_now(srv->loop) - srv->stop_started_ms < SERVER_LINGER_MS) return;
  uv_timer_stop(t);
  sites_flush_minutes(&srv->sites, clock_now_ms(&srv->clock), true, server_store_minute, srv);
  /* The database queue is FIFO, so a final no-op statement completes only
   * after every record queued before it: close the client then. The drain
   * timer bounds the wait when the database is down. */
  uv_timer_start(&srv->drain, server_on_drain_timeout, SERVER_DRAIN_MS, 0);
  if (!srv->db || db_exec(srv->db, "SELECT 1", 0, NULL, server_on_drained, srv) != 0)
    server_finish_stop(srv);
}

/* Closes a handle that server_start got as far as initialising (server_t
 * is zeroed, so an untouched handle has no loop). */
static void server_close_if_open(uv_handle_t *h) {
  if (h->loop && !uv_is_closing(h)) uv_close(h, NULL);
}

void server_stop(server_t *srv) {
  if (srv->stopping) return;
  srv->stopping = 1;
  sd_notify(0, "STOPPING=1");
  if (srv->guard) guard_hs_flush(srv->guard, server_now(), true, server_hs_summary, srv);
  for (unsigned i = 0; i < srv->nlisten; i++)
    server_close_if_open((uv_handle_t *)&srv->listeners[i]);
  server_close_if_open((uv_handle_t *)&srv->watchdog);
  server_close_if_open((uv_handle_t *)&srv->tick);
  server_close_if_open((uv_handle_t *)&srv->admit_check);
  /* No HTTP thread may signal the handle once it is closing. */
  httpd_on_demand(srv->http, NULL, NULL);
  server_close_if_open((uv_handle_t *)&srv->web_wake);
  server_close_if_open((uv_handle_t *)&srv->sig_int);
  server_close_if_open((uv_handle_t *)&srv->sig_term);
  server_close_if_open((uv_handle_t *)&srv->sig_hup);
  /* Joins the election thread; a leader hands the lease over on the way. */
  leader_stop(srv->leader, NULL, NULL);
  srv->leader = NULL;
  for (conn_t *c = srv->conns; c; c = c->next)
    link_close(c->link, 0, "controller shutting down");
  /* Links close asynchronously and record their offline events as they go:
   * drain the database only once they are gone (or SERVER_LINGER_MS
   * passed), so those records are written, not left in the queue. */
  uv_timer_init(srv->loop, &srv->drain);
  srv->drain.data = srv;
  srv->stop_started_ms = uv_now(srv->loop);
  uv_timer_start(&srv->drain, server_on_linger, 0, 10);
}

int server_start(server_t *srv, uv_loop_t *loop, const nircd_conf_t *conf, char *err,
                 size_t errlen) {
  srv->loop = loop;
  srv->conf = conf;
  srv->pbx_log.since_ms = clock_real_ms();
  srv->sites.stale_after_ms = (uint32_t)conf->stale_after_ms;
  link_opts_default(&srv->link_opts);
  srv->link_opts.idle_timeout_ms = (uint32_t)conf->idle_timeout_ms;
  srv->link_opts.handshake_timeout_ms = (uint32_t)conf->handshake_timeout_ms;
  srv->link_opts.max_msgs_per_s = conf->max_messages_per_s;
  srv->link_opts.msg_burst = conf->msg_burst;

  int rc = server_tls_load(conf, &srv->tls, &srv->revocation, err, errlen);
  if (rc) return rc;
  guard_opts_t go = {.max_links = conf->max_links_per_operator,
                     .requests_per_s = conf->max_requests_per_s,
                     .request_burst = conf->request_burst,
                     .hs_interval_ms = conf->hs_interval_ms,
                     .hs_max_addrs = SERVER_HS_ADDRS,
                     .hs_shown_per_addr = SERVER_HS_SHOWN};
  if (!srv->guard && guard_new(&go, &srv->guard) != 0) {
    snprintf(err, errlen, "out of memory starting the controller");
    return NIRC_ENOMEM;
  }
  if (!srv->engine) {
    engine_opts_t eo = {
        .ack_timeout_ms = (uint32_t)conf->ack_timeout_ms,
        .max_resends = conf->max_resends,
        .verify_window_ms = (uint32_t)conf->verify_window_ms,
        .sl_target = conf->sl_target,
        .sl_threshold_s = conf->sl_threshold_s,
        .hub_grace_ms = (uint32_t)conf->hub_grace_ms,
        .hub_return_ms = (uint32_t)conf->hub_return_ms,
        .keep_margin = conf->keep_margin,
        .enter_margin = conf->enter_margin,
        .hold_s = (uint32_t)(conf->capacity_hold_ms / 1000),
        .reentry_s = (uint32_t)(conf->capacity_reentry_ms / 1000),
        .forecast = srv->forecast_loaded ? &srv->forecast : NULL,
        .alarm_clear_ms = (uint32_t)conf->alarm_clear_ms,
    };
    nirc_strlcpy(eo.forecast_tz, conf->forecast_tz, sizeof eo.forecast_tz);
    nirc_strlcpy(eo.ops_tz, conf->http_tz, sizeof eo.ops_tz);
    nirc_strlcpy(eo.node, conf->node, sizeof eo.node);
    eo.clock_speed = srv->clock.speed;
    engine_io_t io;
    server_engine_io(srv, &io);
    rc = engine_new(&io, &srv->sites, &eo, &srv->engine);
    if (rc) {
      snprintf(err, errlen, "cannot start the routing engine: %s", nirc_strerror(rc));
      return rc;
    }
    /* Sites added while running (server_sites.c). */
    srv->sites.on_grow = server_sites_on_grow;
    srv->sites.on_grow_arg = srv;
  }
  if (conf->webhook.count && !srv->webhook) {
    const char *urls[CONFIG_LIST_MAX];
    for (unsigned i = 0; i < conf->webhook.count; i++)
      urls[i] = conf->webhook.item[i];
    webhook_opts_t wo = {.urls = urls,
                         .n_urls = conf->webhook.count,
                         .timeout_ms = (uint32_t)conf->webhook_timeout_ms,
                         .backoff_max_ms = (uint32_t)conf->webhook_retry_max_ms,
                         .max_age_ms = (uint32_t)conf->webhook_give_up_ms,
                         .queue_max = conf->webhook_queue};
    rc = webhook_new(loop, &wo, &srv->webhook, err, errlen);
    if (rc) return rc;
  }
  /* Writes a previous run journaled are applied before the rules are read
   * (nircd loads them right after this), so a cutover made during an
   * outage is not forgotten by a restart. A database that is down again
   * leaves them to the asynchronous client. */
  if (conf->journal[0]) {
    rc = db_admin_replay_journal(conf->conninfo, conf->journal, err, errlen);
    if (rc == NIRC_EDB) {
      log_warn(LOG_DB, "db", "%s; the rest is replayed once the database is reachable", err);
    } else if (rc) {
      return rc;
    }
  } else {
    log_warn(LOG_DB, "db",
             "no [database] journal: writes made while the database is unreachable wait in "
             "memory only and are lost if nircd stops before it returns");
  }
  db_opts_t dbo = {.journal = conf->journal, .journal_max = conf->journal_max};
  rc = db_open_opts(loop, conf->conninfo, &dbo, &srv->db);
  if (rc == 0) rc = db_open(loop, conf->conninfo, &srv->db_read);
  if (rc == 0) rc = db_open(loop, conf->conninfo, &srv->db_ops);
  if (rc) {
    snprintf(err, errlen, "cannot start the database client: %s", nirc_strerror(rc));
    return rc;
  }
  for (unsigned i = 0; i < conf->listen.count; i++) {
    struct sockaddr_storage ss;
    if (nirc_parse_addr(conf->listen.item[i], &ss, err, errlen) != 0) return NIRC_ECONFIG;
    uv_tcp_t *t = &srv->listeners[srv->nlisten];
    uv_tcp_init(loop, t);
    t->data = srv;
    srv->nlisten++;
    int r = uv_tcp_bind(t, (struct sockaddr *)&ss, 0);
    if (r == 0) r = uv_listen((uv_stream_t *)t, 1024, server_on_connection);
    if (r != 0) {
      snprintf(err, errlen, "cannot listen on %s: %s (is another nircd running there?)",
               conf->listen.item[i], uv_strerror(r));
      return NIRC_EIO;
    }
    log_info(LOG_MAIN, conf->node, "listening on %s", conf->listen.item[i]);
  }
  if (conf->http_listen[0]) {
    if (httpd_start(conf->http_listen, &srv->http, err, errlen) != 0) return NIRC_EIO;
    uv_async_init(loop, &srv->web_wake, server_on_web_wake);
    srv->web_wake.data = srv;
    uv_unref((uv_handle_t *)&srv->web_wake);
    httpd_on_demand(srv->http, server_web_wake, srv);
    srv->on_publish(srv);
    log_info(LOG_MAIN, conf->node, "status page and metrics on http://%s/", conf->http_listen);
  }
  if (watchdog_start(loop, &srv->watchdog))
    log_info(LOG_MAIN, conf->node, "systemd watchdog enabled");
  uv_timer_init(loop, &srv->tick);
  srv->tick.data = srv;
  uv_timer_start(&srv->tick, server_on_tick, SERVER_TICK_MS, SERVER_TICK_MS);
  /* Runs after every turn's I/O; does not by itself keep the loop alive. */
  uv_check_init(loop, &srv->admit_check);
  srv->admit_check.data = srv;
  uv_check_start(&srv->admit_check, server_on_admit_check);
  uv_unref((uv_handle_t *)&srv->admit_check);
  uv_signal_init(loop, &srv->sig_int);
  uv_signal_init(loop, &srv->sig_term);
  srv->sig_int.data = srv->sig_term.data = srv;
  uv_signal_start(&srv->sig_int, server_on_signal, SIGINT);
  uv_signal_start(&srv->sig_term, server_on_signal, SIGTERM);
  uv_signal_init(loop, &srv->sig_hup);
  srv->sig_hup.data = srv;
  uv_signal_start(&srv->sig_hup, server_on_sighup, SIGHUP);
  return 0;
}
