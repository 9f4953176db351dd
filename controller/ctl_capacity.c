#include "ctl_capacity.h"

#include "ctl_plan.h"

#include <stdbool.h>
#include <string.h>

static bool ctl_capacity_keep(const Nirc__CapacitySpec *s, const char *only) {
  return !only || !*only || strcmp(s->site, only) == 0;
}

/* "+08:00" */
static void ctl_capacity_offset(int32_t min, char *buf, size_t len) {
  int32_t a = min < 0 ? -min : min;
  snprintf(buf, len, "%c%02d:%02d", min < 0 ? '-' : '+', (int)(a / 60), (int)(a % 60));
}

void ctl_capacity_print(FILE *out, const Nirc__CapacityReply *r, const char *only) {
  fprintf(out, "%-12s %-6s %-34s %-7s %-11s %s\n", "SITE", "SEATS", "ROSTER (local time)", "UTC",
          "SOURCE NOW", "AGENTS NOW");
  for (size_t i = 0; i < r->n_sites; i++) {
    const Nirc__CapacitySpec *s = r->sites[i];
    if (!ctl_capacity_keep(s, only)) continue;
    char seats[16] = "-", off[16] = "-", now[96];
    if (s->configured && s->seats) snprintf(seats, sizeof seats, "%u", s->seats);
    if (s->configured) ctl_capacity_offset(s->utc_offset_min, off, sizeof off);
    const char *src = s->source_now && *s->source_now ? s->source_now : "unknown";
    if (strcmp(src, "unknown") == 0)
      snprintf(now, sizeof now, "not measured, not configured");
    else
      snprintf(now, sizeof now, "%s", ctl_esc(s->note_now));
    fprintf(out, "%-12s %-6s %-34s %-7s %-11s %s\n", ctl_escn(s->site, 12), seats,
            s->roster && *s->roster ? ctl_escn(s->roster, 34) : (s->configured ? "(all day)" : "-"),
            off, src, now);
  }
}

json_t *ctl_capacity_json(const Nirc__CapacityReply *r, const char *only) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < r->n_sites; i++) {
    const Nirc__CapacitySpec *s = r->sites[i];
    if (!ctl_capacity_keep(s, only)) continue;
    const char *src = s->source_now && *s->source_now ? s->source_now : "unknown";
    bool known = strcmp(src, "unknown") != 0;
    json_array_append_new(
        a, json_pack(
               "{s:s, s:b, s:o, s:o, s:o, s:s, s:o, s:s}", "site", s->site, "configured",
               s->configured, "seats",
               s->configured && s->seats ? json_integer(s->seats) : json_null(), "roster",
               s->configured && s->roster && *s->roster ? json_string(s->roster) : json_null(),
               "utc_offset_min", s->configured ? json_integer(s->utc_offset_min) : json_null(),
               "source_now", src, "agents_now", known ? json_integer(s->agents_now) : json_null(),
               "note_now", s->note_now ? s->note_now : ""));
  }
  return json_pack("{s:o}", "sites", a);
}
