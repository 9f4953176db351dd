/* ctl_sites: nircctl site add|set|remove, shown (see ctl_sites.h). Text
 * from the controller is escaped before it reaches a terminal. */
#include "ctl_sites.h"

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
