/* map: the routing map as SVG — sites placed by geography, arrows for the
 * current moves with their shares, colour for load and freshness (pure
 * code; used by `nircctl map` and the controller's status page). */
#ifndef NIRC_MAP_H
#define NIRC_MAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
  const char *slug;    /* "hubei" */
  const char *name_en; /* "Hubei" */
  const char *name_zh; /* "湖北" (UTF-8) */
  double lat, lon;     /* of the centre */
  const char *link;    /* "online", "stale", "offline", "never-seen" */
  double occupancy;    /* busy agents / logged in, 0..1; < 0 unknown */
  unsigned in_queue;   /* calls waiting now */
  bool queue_unknown;  /* no figure for the queue (see unknown_why): in_queue means nothing */
  /* A group of sites (mapgroup.c) some of which measure no queue: in_queue
   * is the sum over those that do, a lower bound ("12+ in queue"). */
  bool queue_partial;
  /* Why the load is unknown, in the tooltip: "no load report", "PBX
   * unreadable", "agents not measured", "no agents logged in". NULL: the
   * occupancy, or "no load report" when it is unknown. */
  const char *unknown_why;
  bool is_hub;
  /* The route in force, as its agent confirmed it. route_unknown: not
   * confirmed at the PBX, so nobody knows where its calls go: no arrow
   * leaves it (an empty route is not home) and its label says "route
   * unknown". route_unverified: applied by an adapter that cannot read the
   * PBX back: its arrows are dashed (a site with none, all calls home, gets
   * a dashed ring) and its tooltip says so. 0 or 1 for a
   * site; for a group (is_group, mapgroup.c), how many of its sites are so,
   * and its label counts them ("3 unverified"). */
  unsigned route_unknown, route_unverified;
  /* Of route_unknown: its agent has not said Hello to this controller
   * since it took over (not heard from), so its label says "not heard"
   * rather than "route unknown", and the legend says what to check. */
  unsigned route_unheard;
  /* Held home after its agent's early returns (its clock runs ahead): no
   * move with an end is sent to it until nircctl readmit, so no arrow
   * leaves it whatever its rule says. Its label says "held home", its
   * tooltip the fix; a group counts them. */
  unsigned held_home;
  bool is_group;
} map_site_t;

typedef struct {
  const char *from, *to; /* slugs */
  unsigned permille;     /* share of `from`'s calls answered at `to` */
  /* Applied, not read back from the PBX (from's route_unverified); between
   * groups: true of at least one of the moves it sums. Drawn dashed. */
  bool unverified;
} map_move_t;

/* The load fields of a site (occupancy, in_queue, queue_unknown,
 * unknown_why) from its last report, the same for the status page and
 * `nircctl map`. Unknown is not zero: without a report, with its PBX
 * unreadable, or with the figure in the report's not_measured bits
 * (NIRC__LOAD_FIGURE__*), the figure is unknown and the tooltip says why. */
void map_site_load(map_site_t *m, bool has_report, bool pbx_unreadable, unsigned not_measured,
                   unsigned logged_in, unsigned talking, unsigned in_queue);

/* Renders a standalone SVG document (UTF-8, with a legend and `title`).
 * Unknown slugs in moves are skipped. Returns a malloc'd string the caller
 * frees, or NULL when out of memory. Deterministic for the same input. */
char *map_render_svg(const map_site_t *sites, size_t n_sites, const map_move_t *moves,
                     size_t n_moves, const char *title);

/* The same, with `summary` (escaped here) in place of the line of counts
 * under the title; NULL: the counts of `sites`. */
char *map_render_svg_summary(const map_site_t *sites, size_t n_sites, const map_move_t *moves,
                             size_t n_moves, const char *title, const char *summary);
/* What map_render_svg draws when it is given more than it can place
 * (mapgroup.c). */
#define MAP_SITES_MAX 1000

#endif
