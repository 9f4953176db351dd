/* server_pbxload: a new leader reads each site's recent PBX events back
 * from link_events into the server's pbxlog, so `nircctl site SLUG` after
 * a restart or a failover still lists what the PBX did tonight instead of
 * sending the operator to SQL. Part of the server module.
 *
 * When: from the leader's tick, so the takeover's own work (rules,
 * directives: nircd_on_leader, then the engine's tick) goes first. One
 * query for every site (store/pbxrecent.h) on the read connection
 * (db_read), asynchronous: the loop never waits for it. Events received
 * while it is in flight are kept as they come and are not kept twice
 * (pbxlog_merge). A read that fails is said (nircctl site) and tried
 * again SERVER_PBX_LOAD_RETRY_MS later. */
#include "server.h"

#include "clock.h"
#include "err.h"
#include "log.h"
#include "pbxrecent.h"
#include "safetext.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

/* How far back: "tonight" with a margin. Said in nircctl site's words. */
#define SERVER_PBX_LOAD_WINDOW_MS (24 * 3600000LL)
#define SERVER_PBX_LOAD_RETRY_MS  30000

/* The words server_pbx_seen_words (server_pbx.c) gives when an event was
 * not on time; the stored text carries them (server_pbx_record). */
#define SPL_LATE_HEAD   "seen by the agent at "
#define SPL_LATE_MID    ", reported "
#define SPL_LATE_TAIL   " s later (its link was down)"
#define SPL_UNSAID_HEAD "seen at or before it was reported ("

static bool spl_starts(const char *s, size_t len, const char *head) {
  size_t h = strlen(head);
  return len >= h && memcmp(s, head, h) == 0;
}

/* Whether w[0..len) is the whole of such words; what they say goes to ev. */
static bool spl_when(const char *w, size_t len, pbxlog_event_t *ev) {
  if (spl_starts(w, len, SPL_UNSAID_HEAD) && w[len - 1] == ')') {
    ev->at_or_before = true;
    return true;
  }
  if (!spl_starts(w, len, SPL_LATE_HEAD)) return false;
  const char *mid = strstr(w, SPL_LATE_MID);
  if (!mid || mid >= w + len) return false;
  const char *d = mid + strlen(SPL_LATE_MID), *end = w + len;
  long long s = 0;
  if (d >= end || *d < '0' || *d > '9') return false;
  for (; d < end && *d >= '0' && *d <= '9' && s < 100000000; d++)
    s = s * 10 + (*d - '0');
  if ((size_t)(end - d) != strlen(SPL_LATE_TAIL) || memcmp(d, SPL_LATE_TAIL, end - d) != 0)
    return false;
  ev->late_ms = s * 1000;
  return true;
}

static void spl_detail(pbxlog_event_t *ev, const char *from, size_t len) {
  char buf[PBXLOG_DETAIL_MAX * 2];
  if (len >= sizeof buf) len = sizeof buf - 1;
  memcpy(buf, from, len);
  buf[len] = '\0';
  nirc_strlcpy_utf8(ev->detail, buf, sizeof ev->detail);
}

void server_pbx_load_detail(const char *stored, pbxlog_event_t *ev) {
  ev->late_ms = 0;
  ev->at_or_before = false;
  size_t len = strlen(stored);
  /* "detail; <when>": the last "; seen " whose rest is the whole words. */
  const char *cut = NULL;
  for (const char *p = strstr(stored, "; seen "); p; p = strstr(p + 1, "; seen "))
    cut = p;
  pbxlog_event_t t = *ev;
  if (cut && spl_when(cut + 2, len - (size_t)(cut + 2 - stored), &t)) {
    *ev = t;
    spl_detail(ev, stored, (size_t)(cut - stored));
    return;
  }
  /* A drift without the agent's detail: "<kind>[, <when>]: the PBX
   * routed F, the agent's route is E"; shown from "the PBX routed". */
  static const char *const kinds[] = {"PBX drift repaired", "PBX drift NOT repaired",
                                      "PBX did not take a route"};
  const char *routed = strstr(stored, ": the PBX routed ");
  for (size_t k = 0; routed && k < sizeof kinds / sizeof kinds[0]; k++) {
    size_t h = strlen(kinds[k]), head = (size_t)(routed - stored);
    if (head < h || memcmp(stored, kinds[k], h) != 0) continue;
    t = *ev;
    if (head == h || (head > h + 2 && memcmp(stored + h, ", ", 2) == 0 &&
                      spl_when(stored + h + 2, head - h - 2, &t))) {
      *ev = t;
      spl_detail(ev, routed + 2, len - head - 2);
      return;
    }
  }
  /* On time: the detail as stored. */
  spl_detail(ev, stored, len);
}

/* pbxlog_set_state with the transition logged (a refused one is a bug). */
static void server_pbx_load_set(server_t *srv, pbxlog_state_t to) {
  pbxlog_state_t from = srv->pbx_log.state;
  if (pbxlog_set_state(&srv->pbx_log, to))
    log_debug(LOG_DB, srv->conf->node, "recent PBX events: %s -> %s", pbxlog_state_name(from),
              pbxlog_state_name(to));
  else
    log_error(LOG_DB, srv->conf->node, "recent PBX events: %s -> %s refused",
              pbxlog_state_name(from), pbxlog_state_name(to));
}

static void server_pbx_load_done(void *arg, int err, const char *msg, PGresult *res) {
  server_t *srv = arg;
  pbxlog_t *l = &srv->pbx_log;
  const char *node = srv->conf->node;
  if (srv->stopping) return;
  if (err) {
    char why[sizeof l->why];
    safetext_escape(msg ? msg : nirc_strerror(err), why, sizeof why);
    nirc_strlcpy_utf8(l->why, why, sizeof l->why);
    l->retry_ms = clock_real_ms() + SERVER_PBX_LOAD_RETRY_MS;
    server_pbx_load_set(srv, PBXLOG_LOAD_FAILED);
    log_warn(LOG_DB, node,
             "could not read the sites' recent PBX events from link_events (%s): nircctl site "
             "lists only those received since; tried again in %d s",
             l->why, SERVER_PBX_LOAD_RETRY_MS / 1000);
    return;
  }
  uint64_t t0 = uv_hrtime();
  int rows = PQntuples(res);
  size_t merged = 0, bad = 0, unknown = 0, nomem = 0;
  for (int i = 0; i < rows; i++) {
    pbxrecent_row_t r;
    if (pbxrecent_row(res, i, &r) != 0) {
      bad++;
      continue;
    }
    const site_t *s = sites_find(&srv->sites, r.site);
    if (!s) {
      unknown++; /* a site deleted from the table since: nobody asks for it */
      continue;
    }
    pbxlog_event_t ev = {.at_ms = r.at_ms};
    char text[PBXLOG_DETAIL_MAX * 2];
    safetext_escape(r.event, ev.event, sizeof ev.event);
    safetext_escape(r.detail, text, sizeof text);
    server_pbx_load_detail(text, &ev);
    if (pbxlog_merge(l, (size_t)(s - srv->sites.v), &ev) != 0)
      nomem++;
    else
      merged++;
  }
  server_pbx_load_set(srv, PBXLOG_LOADED);
  char from[40];
  clock_format_iso(l->from_ms, 0, from, sizeof from);
  log_info(LOG_DB, node,
           "read %d recent PBX events of the sites since %s from link_events in %lld ms, merged "
           "in %llu ms (%zu for nircctl site, %zu of sites no longer known, %zu unreadable, "
           "%zu out of memory)",
           rows, from, (long long)(clock_real_ms() - l->sent_ms),
           (unsigned long long)((uv_hrtime() - t0) / 1000000u), merged, unknown, bad, nomem);
}

void server_pbx_load_tick(server_t *srv) {
  pbxlog_t *l = &srv->pbx_log;
  if (!srv->leading || !srv->db_read) return;
  if (l->state == PBXLOG_LOADING || l->state == PBXLOG_LOADED) return;
  int64_t now = clock_real_ms();
  if (l->state == PBXLOG_LOAD_FAILED && now < l->retry_ms) return;
  if (!l->asked_ms) l->asked_ms = now; /* when it took the lead: a retry reads the same window */
  l->from_ms = l->asked_ms - SERVER_PBX_LOAD_WINDOW_MS;
  l->sent_ms = now;
  int rc = pbxrecent_load(srv->db_read, l->from_ms, PBXLOG_KEEP, server_pbx_load_done, srv);
  if (rc != 0) {
    snprintf(l->why, sizeof l->why, "%s", nirc_strerror(rc));
    l->retry_ms = now + SERVER_PBX_LOAD_RETRY_MS;
    if (l->state == PBXLOG_RECEIVED) server_pbx_load_set(srv, PBXLOG_LOADING);
    server_pbx_load_set(srv, PBXLOG_LOAD_FAILED);
    return;
  }
  server_pbx_load_set(srv, PBXLOG_LOADING);
}
