/* ctl_capacity: how nircctl shows `nircctl capacity`: each site's
 * configured seats and roster, and what the planner uses now and where it
 * comes from (measured, configured, unknown). Pure output. */
#ifndef NIRC_CTL_CAPACITY_H
#define NIRC_CTL_CAPACITY_H

#include "nirc.pb-c.h"

#include <jansson.h>
#include <stdio.h>

/* The table; `only` (may be NULL or "") keeps one site's row. */
void ctl_capacity_print(FILE *out, const Nirc__CapacityReply *r, const char *only);
/* The Capacity document of docs/CLI-JSON.md (new reference). */
json_t *ctl_capacity_json(const Nirc__CapacityReply *r, const char *only);

#endif
