/* server_events: link events (connects, refusals, closes) written to
 * link_events exactly once, within a budget per site so that a reconnect
 * loop cannot flood the table. Part of the server module (server.h). */
#include "server.h"

#include "clock.h"
#include "log.h"
#include "store.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Link events and load minutes are history: written exactly once, and
 * journaled on disk while the database is unreachable (store.h). The
 * load minute in particular adds to what is stored, so applying it twice
 * would double the counts. */
/* What one site's links may write to link_events: SERVER_EVENTS_BURST at
 * once, then one every SERVER_EVENT_REFILL_MS. A site whose links come and
 * go faster (a reconnect loop, two agents fighting over one certificate)
 * has the rest counted, not stored; its next stored event is preceded by
 * one that says how many were left out. An event the site has not had in
 * the last minute (a new reason: a rate limit, a refusal) is evidence the
 * repeats must not hide: it draws on a second budget of the same kind
 * (SERVER_NEW_EVENTS_BURST, then one every SERVER_NEW_EVENT_REFILL_MS).
 * So one site adds at most 50 rows, then 40 a minute, however often it
 * reconnects. */
#define SERVER_EVENTS_BURST        20.0
#define SERVER_EVENT_REFILL_MS     6000.0
#define SERVER_NEW_EVENTS_BURST    30.0
#define SERVER_NEW_EVENT_REFILL_MS 2000.0
#define SERVER_EVENTS_RECENT       8 /* distinct events remembered per site */

struct server_evbudget {
  double tokens, new_tokens;
  int64_t last_ms, warned_ms;
  uint64_t suppressed;
  bool used;
  struct {
    uint64_t hash;
    int64_t at_ms;
  } recent[SERVER_EVENTS_RECENT];
};

size_t server_evbudget_size(void) {
  return sizeof(struct server_evbudget);
}

/* FNV-1a of the event and its detail: "the same event again". */
static uint64_t server_event_hash(const char *event, const char *detail) {
  uint64_t h = 1469598103934665603ull;
  for (const char *p = event; p && *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ull;
  h = (h ^ 0xff) * 1099511628211ull;
  for (const char *p = detail; p && *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ull;
  return h;
}

/* Whether the site had this event in the last minute; remembers it. */
static bool server_event_seen(struct server_evbudget *b, uint64_t h, int64_t now) {
  size_t oldest = 0;
  for (size_t k = 0; k < SERVER_EVENTS_RECENT; k++) {
    if (b->recent[k].hash == h && now - b->recent[k].at_ms < 60000) {
      b->recent[k].at_ms = now;
      return true;
    }
    if (b->recent[k].at_ms < b->recent[oldest].at_ms) oldest = k;
  }
  b->recent[oldest].hash = h;
  b->recent[oldest].at_ms = now;
  return false;
}

/* Whether an event of site `site` may be stored now; writes the summary of
 * those left out before it when some were. */
static bool server_event_budget(server_t *srv, const char *kind, const char *site, const char *peer,
                                const char *event, const char *detail, int64_t now) {
  if (strcmp(kind, "site") != 0 || !site) return true;
  if (!srv->evbudget) {
    srv->evbudget = calloc(srv->sites.n + 1, sizeof *srv->evbudget);
    srv->evbudget_n = srv->evbudget ? srv->sites.n + 1 : 0;
  }
  if (!srv->evbudget) return true;
  site_t *s = sites_find(&srv->sites, site);
  /* The last entry is for names that are no site (server_sites_on_grow). */
  size_t at = s ? (size_t)(s - srv->sites.v) : srv->evbudget_n - 1;
  if (at >= srv->evbudget_n) at = srv->evbudget_n - 1;
  struct server_evbudget *b = &srv->evbudget[at];
  if (!b->used) {
    b->used = true;
    b->tokens = SERVER_EVENTS_BURST;
    b->new_tokens = SERVER_NEW_EVENTS_BURST;
    b->last_ms = now;
  }
  b->tokens += (double)(now - b->last_ms) / SERVER_EVENT_REFILL_MS;
  if (b->tokens > SERVER_EVENTS_BURST) b->tokens = SERVER_EVENTS_BURST;
  b->new_tokens += (double)(now - b->last_ms) / SERVER_NEW_EVENT_REFILL_MS;
  if (b->new_tokens > SERVER_NEW_EVENTS_BURST) b->new_tokens = SERVER_NEW_EVENTS_BURST;
  b->last_ms = now;
  bool fresh = !server_event_seen(b, server_event_hash(event, detail), now);
  double *pool = b->tokens >= 1.0 ? &b->tokens : fresh ? &b->new_tokens : NULL;
  if (!pool || *pool < 1.0) {
    b->suppressed++;
    srv->link_events_suppressed++;
    if (now - b->warned_ms >= 60000) {
      b->warned_ms = now;
      log_warn(LOG_SITE, s ? s->slug : "?",
               "links come and go too often: repeated link events beyond 10 a minute are "
               "counted (nirc_link_events_suppressed_total), not stored");
    }
    return false;
  }
  *pool -= 1.0;
  if (b->suppressed) {
    char summary[160];
    snprintf(summary, sizeof summary,
             "%llu link events of this site left out: its links came and went faster than 10 "
             "a minute",
             (unsigned long long)b->suppressed);
    b->suppressed = 0;
    int rc = store_link_event(srv->db, now, "site", NULL, site, peer ? peer : "-", "suppressed",
                              summary);
    if (rc != 0) server_dropped(srv, rc);
  }
  return true;
}

void server_record_event(server_t *srv, const char *kind, const char *identity, const char *site,
                         const char *peer, const char *event, const char *detail) {
  server_record_event_at(srv, clock_real_ms(), kind, identity, site, peer, event, detail);
}

void server_record_event_at(server_t *srv, int64_t at_ms, const char *kind, const char *identity,
                            const char *site, const char *peer, const char *event,
                            const char *detail) {
  if (!srv->db) return;
  /* The budget counts writes as they come, now: at_ms may be earlier (an
   * event an agent reports late, an operator's kept-back connect). */
  if (!server_event_budget(srv, kind, site, peer, event, detail, clock_real_ms())) return;
  int rc = store_link_event(srv->db, at_ms, kind, identity, site, peer, event, detail);
  if (rc != 0) server_dropped(srv, rc);
}

void server_record_op_connected(server_t *srv, conn_t *c) {
  if (!c->op_connected_ms) return;
  const peer_identity_t *id = link_peer(c->link);
  server_record_event_at(srv, c->op_connected_ms, "operator", id->subject, NULL,
                         link_peer_addr(c->link), "connected", tls_role_name(id->role));
  c->op_connected_ms = 0;
}
