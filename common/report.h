/* report: LoadReport helpers every binary shares. */
#ifndef NIRC_REPORT_H
#define NIRC_REPORT_H

#include "nirc.pb-c.h"

#include <jansson.h>

/* The report as a JSON object with the protocol's field names, plus
 * "service_level" (answered within threshold / offered, or null when
 * nothing was offered) and "pbx_error" when the PBX was unreadable.
 * Returns a new reference (json_null() for r == NULL), or NULL on OOM. */
json_t *report_to_json(const Nirc__LoadReport *r);

#endif
