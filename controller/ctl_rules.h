/* ctl_rules: how nircctl shows schedules and overflow rules (`schedule
 * list`, `overflow list` and the replies of their changes). Pure output. */
#ifndef NIRC_CTL_RULES_H
#define NIRC_CTL_RULES_H

#include "nirc.pb-c.h"

#include <jansson.h>
#include <stdio.h>

/* The Schedules document of docs/CLI-JSON.md (new reference). */
json_t *ctl_schedules_json(const Nirc__ScheduleReply *r);
/* The table; NEXT START in zone `tz`, each WINDOW in its schedule's. */
void ctl_schedules_print(FILE *out, const Nirc__ScheduleReply *r, const char *tz);
/* The OverflowRules document of docs/CLI-JSON.md (new reference). */
json_t *ctl_overflows_json(const Nirc__OverflowReply *r);
void ctl_overflows_print(FILE *out, const Nirc__OverflowReply *r);
/* The Refusal document of docs/CLI-JSON.md: `why`, `plan` (a new
 * reference, taken; json null when none) and, for a schedule refused by
 * its capacity check, that check (from rep's body). */
json_t *ctl_refusal_json(const char *why, json_t *plan, const Nirc__OperatorReply *rep);

#endif
