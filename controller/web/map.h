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
  bool queue_unknown;  /* the site does not measure its queue: in_queue means nothing */
  bool is_hub;
} map_site_t;

typedef struct {
  const char *from, *to; /* slugs */
  unsigned permille;     /* share of `from`'s calls answered at `to` */
} map_move_t;

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
