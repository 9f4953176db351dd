/* ctl_plan: how nircctl shows what a move would do (plan, a dry run, the
 * plan a capacity refusal carries) and what --force overrode, for people
 * and as the JSON of docs/CLI-JSON.md (Plan, Capacity, RefusedLoad,
 * RefusedSource, HubNeed, ForcedOver). Formatting only: replies in, text
 * out; nircctl.c does the rest.
 *
 * Every text from the controller goes through ctl_escn(): control
 * characters, bidirectional controls and bytes that are not UTF-8 show
 * escaped (common/safetext.h) instead of acting on the terminal. JSON
 * strings are escaped by jansson. */
#ifndef NIRC_CTL_PLAN_H
#define NIRC_CTL_PLAN_H

#include "nirc.pb-c.h"

#include <jansson.h>
#include <stddef.h>

/* `s` escaped, cut to at most `max` bytes between characters (a column's
 * width). Returns one of a few static buffers, used in turn, so one printf
 * may take up to 12 of them. ctl_esc: no width. */
const char *ctl_escn(const char *s, size_t max);
const char *ctl_esc(const char *s);

/* The plan for people, on standard output: the moves, one line per hub
 * (what it takes, together; below it what it turned down), the sources
 * that would not move with each hub's need, and the planner's alarms. */
void ctl_plan_print(const Nirc__PlanReply *p, const char *tz);
/* The Plan document (null for NULL). */
json_t *ctl_plan_json(const Nirc__PlanReply *p);
/* An array of ForcedOver: the predictions --force overrode. */
json_t *ctl_forced_json(Nirc__CapacityPrediction *const *v, size_t n);

#endif
