#include "map-int.h"

#include <stdio.h>

/* The label's word for a route nobody confirmed: a site's "route unknown"
 * (no arrow leaves it: the map does not know where its calls go); a
 * group's counts, unverified ones included, since its arrows sum sites
 * that differ. A single site's unverified route shows in its dashed arrows
 * (a dashed ring when it has none) and its tooltip. A site held home says
 * so: why no arrow leaves it while its rule would move it. */
void map_route_word(char *out, size_t cap, const map_site_t *m) {
  out[0] = '\0';
  if (!m->is_group) {
    if (m->route_unknown)
      snprintf(out, cap, "%s%s", m->route_unheard ? "not heard" : "route unknown",
               m->held_home ? ", held home" : "");
    else if (m->held_home)
      snprintf(out, cap, "held home");
    return;
  }
  int n = 0;
  if (m->route_unknown)
    n = snprintf(out, cap, "%u route%s unknown", m->route_unknown,
                 m->route_unknown == 1 ? "" : "s");
  if (m->route_unknown && m->route_unheard && n >= 0 && (size_t)n < cap)
    n += snprintf(out + n, cap - (size_t)n, " (%u not heard)", m->route_unheard);
  if (m->route_unverified && n >= 0 && (size_t)n < cap)
    n += snprintf(out + n, cap - (size_t)n, "%s%u unverified", n ? ", " : "", m->route_unverified);
  if (m->held_home && n >= 0 && (size_t)n < cap)
    snprintf(out + n, cap - (size_t)n, "%s%u held home", n ? ", " : "", m->held_home);
}

/* What the tooltip adds about the route in force: nothing when it is
 * known and read back. */
void map_route_tip(char *out, size_t cap, const map_site_t *m) {
  int n = 0;
  out[0] = '\0';
  if (m->is_group && m->route_unknown && m->route_unheard)
    n = snprintf(out, cap,
                 "; %u route%s unknown (%u not heard from since this controller took over)",
                 m->route_unknown, m->route_unknown == 1 ? "" : "s", m->route_unheard);
  else if (m->is_group && m->route_unknown)
    n = snprintf(out, cap, "; %u route%s unknown (not confirmed at the PBX)", m->route_unknown,
                 m->route_unknown == 1 ? "" : "s");
  else if (m->route_unknown && m->route_unheard)
    n = snprintf(out, cap,
                 "; route unknown: its agent has not said Hello to this controller since it "
                 "took over (check the agent)");
  else if (m->route_unknown)
    n = snprintf(out, cap, "; route unknown: its agent has not confirmed a route at the PBX");
  if (n < 0 || (size_t)n >= cap) return;
  int k = 0;
  if (m->is_group && m->route_unverified)
    k = snprintf(out + n, cap - (size_t)n, "; %u route%s applied, not read back from the PBX",
                 m->route_unverified, m->route_unverified == 1 ? "" : "s");
  else if (m->route_unverified && !m->route_unknown)
    k = snprintf(out + n, cap - (size_t)n, "; route applied, not read back from the PBX");
  if (k < 0 || (size_t)(n + k) >= cap) return;
  n += k;
  /* Held: the engine sends no move with an end until an operator acts. */
  if (m->is_group && m->held_home)
    snprintf(out + n, cap - (size_t)n,
             "; %u held home after their agents' early returns (nircctl status --problems)",
             m->held_home);
  else if (m->held_home)
    snprintf(out + n, cap - (size_t)n,
             "; held home: its agent keeps going home early (its clock runs ahead); fix its "
             "clock (NTP), then nircctl readmit");
}
