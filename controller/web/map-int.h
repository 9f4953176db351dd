/* map's own parts (map.c, map_route.c): not for other modules. */
#ifndef NIRC_MAP_INT_H
#define NIRC_MAP_INT_H

#include "map.h"

#include <stddef.h>

/* The second line of a site's label for its route marks (map_route.c):
 * "route unknown", "not heard", "held home", a group's counts; "" when its route is
 * known and read back (a single site's unverified route shows in its
 * dashed arrows, or a dashed ring). */
void map_route_word(char *out, size_t cap, const map_site_t *m);
/* What a site's tooltip adds after its load ("; route unknown: ..."), or "". */
void map_route_tip(char *out, size_t cap, const map_site_t *m);

#endif
