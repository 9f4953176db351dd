/* checkjson: the ScheduleCheck document of docs/CLI-JSON.md from its
 * protobuf form, one builder for both of its readers: nircctl's replies
 * and refusals (ctl_rules.c) and the engine's audit entries
 * (engine_schedule_check_json). Pure; no I/O. */
#ifndef NIRC_CHECKJSON_H
#define NIRC_CHECKJSON_H

#include "nirc.pb-c.h"

#include <jansson.h>

/* A new reference: figures only for hubs predicted, null otherwise
 * (unknown is not zero). */
json_t *checkjson_schedule(const Nirc__ScheduleCheck *c);

#endif
