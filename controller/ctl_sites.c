/* ctl_sites: nircctl site add|set|remove, shown (see ctl_sites.h). Text
 * from the controller is escaped before it reaches a terminal. */
#include "ctl_sites.h"

#include "ctl_history.h"
#include "safetext.h"

#include <string.h>
#include <time.h>

static void ctl_sites_iso(int64_t ms, char *buf, size_t len) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  if (!ms || !gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(buf, len, "?");
}

static const char *ctl_sites_esc(const char *s, char *buf, size_t len) {
  safetext_escape(s ? s : "", buf, len);
  return buf;
}

void ctl_site_change_print(FILE *out, const Nirc__SiteChangeReply *r) {
  char slug[96], en[256], zh[256], by[160], roster[400];
  ctl_sites_esc(r->site, slug, sizeof slug);
  if (r->removed) {
    char at[40];
    ctl_sites_iso(r->removed_at_ms, at, sizeof at);
    fprintf(out,
            "site %s removed at %s by %s: its history is kept, its agent is refused\n"
            "(nircctl site add %s ... brings it back)\n",
            slug, at, ctl_sites_esc(r->removed_by, by, sizeof by), slug);
    return;
  }
  const char *verb = r->action && strcmp(r->action, "add") == 0 ? "added" : "changed";
  fprintf(out, "site %s %s: %s \"%s\" (%s)\n", slug, verb, r->hub ? "hub" : "source",
          ctl_sites_esc(r->name_en, en, sizeof en), ctl_sites_esc(r->name_zh, zh, sizeof zh));
  const Nirc__CapacitySpec *c = r->capacity;
  if (c && c->configured) {
    int off = c->utc_offset_min < 0 ? -c->utc_offset_min : c->utc_offset_min;
    fprintf(out, "  capacity: %u seats, roster %s (UTC%c%02d:%02d)\n", c->seats,
            c->roster && *c->roster ? ctl_sites_esc(c->roster, roster, sizeof roster) : "all day",
            c->utc_offset_min < 0 ? '-' : '+', off / 60, off % 60);
  } else {
    fprintf(out, "  capacity: not configured (unknown until its agent measures it)\n");
  }
  if (r->lat != 0 || r->lon != 0) fprintf(out, "  position: %.4f, %.4f\n", r->lat, r->lon);
  if (strcmp(verb, "added") == 0)
    fprintf(out, "  its agent (certificate CN site:%s) may connect now\n", slug);
}

json_t *ctl_site_change_json(const Nirc__SiteChangeReply *r) {
  const Nirc__CapacitySpec *c = r->capacity;
  json_t *cap = json_pack("{s:b, s:I, s:s, s:i}", "configured", c && c->configured, "seats",
                          (json_int_t)(c ? c->seats : 0), "roster", c && c->roster ? c->roster : "",
                          "utc_offset_min", (int)(c ? c->utc_offset_min : 0));
  char at[40];
  ctl_sites_iso(r->removed_at_ms, at, sizeof at);
  return json_pack("{s:s, s:s, s:s, s:s, s:b, s:f, s:f, s:o, s:b, s:o, s:o}", "action",
                   r->action ? r->action : "", "site", r->site ? r->site : "", "name_en",
                   r->name_en ? r->name_en : "", "name_zh", r->name_zh ? r->name_zh : "", "hub",
                   r->hub, "lat", r->lat, "lon", r->lon, "capacity", cap, "removed", r->removed,
                   "removed_at", r->removed ? json_string(at) : json_null(), "removed_by",
                   r->removed ? json_string(r->removed_by ? r->removed_by : "") : json_null());
}

/* A PBX event's kind for people; a kind from a newer controller as sent. */
static const char *ctl_site_pbx_kind(const char *event) {
  static const struct {
    const char *event, *words;
  } kinds[] = {
      {"pbx_drift_repaired", "drift repaired"},
      {"pbx_drift_not_repaired", "drift NOT repaired"},
      {"pbx_verify_failed", "PBX did not take a route"},
      {"route_unconfirmed", "route unconfirmed (not applied at the PBX)"},
      {"route_confirmed", "route confirmed at the PBX"},
      {"agent_reverted", "agent went home on its own (revert_at)"},
      {"agent_state_not_saved", "agent cannot write its state file"},
      {"agent_state_saved", "agent writes its state file again"},
      {"pbx_events_dropped", "PBX events lost (the agent's queue was full)"},
  };
  for (size_t i = 0; event && i < sizeof kinds / sizeof kinds[0]; i++)
    if (strcmp(event, kinds[i].event) == 0) return kinds[i].words;
  return NULL;
}

/* Since when the list goes back, and where the rest are, in words:
 * `scope` ("since T" or "received since this controller started at T")
 * and `rest`. From a controller older than pbx_events_from (UNSAID): as
 * RECEIVED, which is what it kept. */
static void ctl_site_pbx_scope(const Nirc__SiteStatus *s, const char *tz, char *scope,
                               size_t scopelen, char *rest, size_t restlen) {
  char since[40], asked[40], why[300];
  ctl_history_time(s->pbx_events_since_ms, tz, since, sizeof since);
  ctl_history_time(s->pbx_events_asked_ms, tz, asked, sizeof asked);
  snprintf(scope, scopelen, "received since this controller started at %s", since);
  switch (s->pbx_events_from) {
  case NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_DATABASE: {
    long long h = (s->pbx_events_asked_ms - s->pbx_events_since_ms + 1800000) / 3600000;
    snprintf(scope, scopelen, "since %s", since);
    snprintf(rest, restlen,
             "the %lld h before this controller took the lead at %s read from the database, and "
             "those received since; older ones are in its link_events table",
             h, asked);
    return;
  }
  case NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_LOADING:
    if (s->pbx_events_load_error && *s->pbx_events_load_error) {
      snprintf(rest, restlen,
               "earlier ones are not read from the database yet: %s; they are read when it "
               "answers (this controller took the lead at %s), and are in its link_events table",
               ctl_sites_esc(s->pbx_events_load_error, why, sizeof why), asked);
      return;
    }
    snprintf(rest, restlen,
             "earlier ones are still being read from the database (this controller took the "
             "lead at %s): ask again in a few seconds",
             asked);
    return;
  case NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_LOAD_FAILED:
    snprintf(rest, restlen,
             "reading the earlier ones from the database failed (%s): they are in its "
             "link_events table; this controller tries again every 30 s",
             ctl_sites_esc(s->pbx_events_load_error, why, sizeof why));
    return;
  default:
    snprintf(rest, restlen, "earlier ones are in the database (its link_events table)");
    return;
  }
}

void ctl_site_pbx_print(FILE *out, const Nirc__SiteStatus *s, const char *tz) {
  char at[40], kind[64], detail[512], scope[96], rest[600];
  if (!s->pbx_events_since_ms) {
    fprintf(out, "PBX events: not sent by this controller (older than nircctl); its link_events "
                 "table in the database has them\n");
    return;
  }
  ctl_site_pbx_scope(s, tz, scope, sizeof scope, rest, sizeof rest);
  if (!s->n_pbx_events) {
    fprintf(out, "PBX events: none %s (%s); %s\n", scope, tz, rest);
    return;
  }
  fprintf(out, "PBX events (last %zu, newest first, times in %s; %s; %s)\n", s->n_pbx_events, tz,
          scope, rest);
  for (size_t k = 0; k < s->n_pbx_events; k++) {
    const Nirc__SitePbxEvent *e = s->pbx_events[k];
    const char *words = ctl_site_pbx_kind(e->event);
    ctl_history_time(e->at_ms, tz, at, sizeof at);
    char late[64] = "";
    if (e->at_or_before)
      snprintf(late, sizeof late, " (at or before: its agent did not say when)");
    else if (e->late_ms > 0)
      snprintf(late, sizeof late, " (reported %lld s later)", (long long)(e->late_ms / 1000));
    fprintf(out, "  %s  %s%s: %s\n", at, words ? words : ctl_sites_esc(e->event, kind, sizeof kind),
            late, ctl_sites_esc(e->detail, detail, sizeof detail));
  }
}

json_t *ctl_site_pbx_json(const Nirc__SiteStatus *s) {
  json_t *a = json_array();
  for (size_t k = 0; k < s->n_pbx_events; k++) {
    const Nirc__SitePbxEvent *e = s->pbx_events[k];
    json_array_append_new(a, json_pack("{s:I, s:I, s:b, s:s, s:s}", "at_ms", (json_int_t)e->at_ms,
                                       "late_ms", (json_int_t)e->late_ms, "at_or_before",
                                       e->at_or_before, "event", e->event ? e->event : "", "detail",
                                       e->detail ? e->detail : ""));
  }
  return a;
}

void ctl_site_pbx_json_set(json_t *x, const Nirc__SiteStatus *s) {
  /* `site` only (a controller older than the keys sends no since). */
  if (!s->pbx_events_since_ms) return;
  static const char *const from[] = {[NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_UNSAID] = "received",
                                     [NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_RECEIVED] = "received",
                                     [NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_LOADING] = "loading",
                                     [NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_DATABASE] = "database",
                                     [NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_LOAD_FAILED] =
                                         "load_failed"};
  unsigned f = (unsigned)s->pbx_events_from;
  json_object_set_new(x, "pbx_events", ctl_site_pbx_json(s));
  json_object_set_new(x, "pbx_events_since_ms", json_integer(s->pbx_events_since_ms));
  /* A newer controller's source: "unknown" (nircctl is older). */
  json_object_set_new(x, "pbx_events_from",
                      json_string(f < sizeof from / sizeof from[0] ? from[f] : "unknown"));
  json_object_set_new(x, "pbx_events_asked_ms",
                      s->pbx_events_asked_ms ? json_integer(s->pbx_events_asked_ms) : json_null());
  if (s->pbx_events_load_error && *s->pbx_events_load_error)
    json_object_set_new(x, "pbx_events_load_error", json_string(s->pbx_events_load_error));
}
