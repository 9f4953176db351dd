/* server_sites: the network side of the site lifecycle while nircd runs.
 *
 * The registry grows (a site added by nircctl site through the engine, or
 * found in a snapshot of the sites table): links hold site_t pointers, so
 * they are re-pointed when the array moves, and the per-site budgets grow.
 * Snapshots come from the election thread (store/leader.c) whenever the
 * sites table changes, on the leader and on every standby alike, so a new
 * leader after a failover routes on the set the database has. A removed
 * site's open link is closed with the reason, and its agent is refused at
 * the next connection with the same reason (server.c). */
#include "server.h"

#include "err.h"
#include "leader.h"
#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long after a change of its own became durable a snapshot is not
 * trusted for that site: the loop's clock (uv_now) is cached per turn,
 * and a snapshot read just before the commit must not undo the change. */
#define SERVER_SITES_SETTLE_MS 1000

void server_sites_on_grow(void *arg, sites_t *s, bool moved) {
  server_t *srv = arg;
  if (moved) {
    /* site->conn and conn->site point at each other: re-point the links. */
    for (size_t i = 0; i < s->n; i++)
      if (s->v[i].conn) ((conn_t *)s->v[i].conn)->site = &s->v[i];
  }
  if (srv->evbudget && srv->evbudget_n < s->n + 1) {
    /* One more than sites: the last entry is for names that are no site;
     * it moves to the end (its state restarts, a budget, not a record). */
    size_t n = s->n + 1 + s->n / 2;
    struct server_evbudget *b = realloc(srv->evbudget, n * server_evbudget_size());
    if (b) {
      memset((char *)b + (srv->evbudget_n - 1) * server_evbudget_size(), 0,
             (n - srv->evbudget_n + 1) * server_evbudget_size());
      srv->evbudget = b;
      srv->evbudget_n = n;
    } else {
      /* Without room the budgets start again, all of them: better than
       * indexing past the end. */
      free(srv->evbudget);
      srv->evbudget = NULL;
      srv->evbudget_n = 0;
    }
  }
  if (srv->engine && engine_sites_grown(srv->engine) != 0)
    log_error(LOG_MAIN, srv->conf->node,
              "out of memory taking in a new site: it is routed once memory allows");
}

void server_site_removed_text(const site_t *s, char *buf, size_t len) {
  char at[40] = "?";
  time_t t = (time_t)(s->removed_ms / 1000);
  struct tm tm;
  if (gmtime_r(&t, &tm)) strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
  snprintf(buf, len,
           "site %s was removed at %s by %s: its agent is refused (nircctl site add %s ... "
           "brings it back)",
           s->slug, at, s->removed_by[0] ? s->removed_by : "?", s->slug);
}

void server_site_close_removed(server_t *srv, site_t *s) {
  if (!s->conn) return;
  conn_t *c = s->conn;
  char why[300];
  server_site_removed_text(s, why, sizeof why);
  log_warn(LOG_SITE, s->slug, "closing its link: %s", why);
  /* The link's close does the rest (offline, link event, engine). */
  link_fail(c->link, NIRC__ERROR_CODE__ERROR_CODE_UNKNOWN_SITE, NIRC_EUNKNOWN_SITE, "%s", why);
}

/* Copies what a snapshot row says of a site onto the registry's. */
static bool server_site_update(site_t *s, const site_t *row) {
  bool changed = strcmp(s->name_en, row->name_en) != 0 || strcmp(s->name_zh, row->name_zh) != 0 ||
                 s->is_hub != row->is_hub || s->lat != row->lat || s->lon != row->lon ||
                 memcmp(&s->cap, &row->cap, sizeof s->cap) != 0;
  nirc_strlcpy(s->name_en, row->name_en, sizeof s->name_en);
  nirc_strlcpy(s->name_zh, row->name_zh, sizeof s->name_zh);
  s->is_hub = row->is_hub;
  s->lat = row->lat;
  s->lon = row->lon;
  s->cap = row->cap;
  return changed;
}

void server_sites_sync(server_t *srv, const sites_t *snap) {
  size_t added = 0, changed = 0, removed = 0, revived = 0;
  bool again = false;
  const char *node = srv->conf ? srv->conf->node : "nircd";
  for (size_t k = 0; k < snap->n; k++) {
    const site_t *row = &snap->v[k];
    site_t *s = sites_find(&srv->sites, row->slug);
    if (!s) {
      if (sites_add(&srv->sites, row->slug, row->name_en, row->name_zh, row->is_hub) != 0) {
        log_error(LOG_MAIN, node, "cannot add site %s: out of memory", row->slug);
        continue;
      }
      s = sites_find(&srv->sites, row->slug);
      server_site_update(s, row);
      if (row->life == SITE_REMOVED) {
        /* Added and removed elsewhere: known as removed, so its agent is
         * told when and by whom, as at a controller that saw it. */
        sites_remove(s, row->removed_ms, row->removed_by);
        continue;
      }
      /* One line a site for a few; an import of thousands is the summary. */
      if (added++ < 10)
        log_info(LOG_SITE, s->slug, "added from the database (%s)", s->is_hub ? "hub" : "source");
      continue;
    }
    /* A change made here and not yet durable, or durable only since
     * about when this snapshot was read, may be newer than the snapshot:
     * the site is left as it is and a new snapshot asked for. */
    if (s->change_pending || (snap->taken_mono && s->local_change_mono &&
                              snap->taken_mono < s->local_change_mono + SERVER_SITES_SETTLE_MS)) {
      again = true;
      continue;
    }
    size_t i = (size_t)(s - srv->sites.v);
    char why[400];
    if (row->life == SITE_REMOVED && s->life == SITE_LIVE) {
      if (srv->engine && engine_site_in_use(srv->engine, i, false, why, sizeof why))
        log_warn(LOG_SITE, s->slug,
                 "removed in the database while in use here (%s): sent home and forgotten", why);
      sites_remove(s, row->removed_ms, row->removed_by);
      server_site_close_removed(srv, s);
      if (srv->engine) engine_site_reset(srv->engine, i);
      removed++;
      continue;
    }
    if (row->life == SITE_REMOVED) continue;
    if (s->life == SITE_REMOVED) {
      sites_revive(s, row->name_en, row->name_zh, row->is_hub);
      server_site_update(s, row);
      if (srv->engine) engine_site_reset(srv->engine, i);
      revived++;
      continue;
    }
    if (s->is_hub && !row->is_hub && srv->engine &&
        engine_site_in_use(srv->engine, i, true, why, sizeof why))
      log_warn(LOG_SITE, s->slug, "made a source in the database while used as a hub (%s)", why);
    if (server_site_update(s, row)) changed++;
  }
  if (again) leader_reload_sites(srv->leader);
  /* Rows deleted from the table (by hand): kept, said. */
  size_t gone = 0;
  for (size_t i = 0; i < srv->sites.n; i++)
    if (srv->sites.v[i].life == SITE_LIVE && !sites_find((sites_t *)snap, srv->sites.v[i].slug))
      gone++;
  if (added || changed || removed || revived || gone)
    log_info(LOG_MAIN, node,
             "sites from the database: %zu added, %zu changed, %zu removed, %zu added again; "
             "%zu live in all%s",
             added, changed, removed, revived, sites_live(&srv->sites),
             gone ? " (rows deleted from the table are kept here until restart: remove sites "
                    "with nircctl site remove)"
                  : "");
}
