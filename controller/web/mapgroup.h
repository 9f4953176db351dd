/* mapgroup: the routing map of a network larger than one map can place
 * (map.c draws at most MAP_SITES_MAX sites, and its label layout is
 * quadratic). Beyond MAPGROUP_DETAIL_MAX sites, the sites are grouped by
 * a latitude/longitude grid cell into one marker per group, named after
 * its first hub (or site) with the count ("Hubei +36") and coloured by the
 * worst link state in it; moves become arrows between groups; the line
 * under the title says it is aggregated ("20,031 sites in 187 groups").
 * Nothing is dropped silently: moves within a group and any beyond what
 * the map draws are counted on that line. Pure: used by nircctl map and
 * the controller's /map.svg. */
#ifndef NIRC_MAPGROUP_H
#define NIRC_MAPGROUP_H

#include "map.h"

#define MAPGROUP_DETAIL_MAX 300 /* up to this many sites, one marker each */
#define MAPGROUP_GROUPS_MAX 250 /* the grid is coarsened until the groups fit */

/* As map_render_svg, aggregated when n_sites > MAPGROUP_DETAIL_MAX or the
 * moves do not fit. A malloc'd SVG document, or NULL when out of memory. */
char *mapgroup_render(const map_site_t *sites, size_t n_sites, const map_move_t *moves,
                      size_t n_moves, const char *title);

#endif
