/* ctl_alarms: how nircctl shows alarms — the `nircctl alarms` table and
 * the alarm lines under `nircctl status`. Pure output: the reply in, text
 * out (JSON is nircctl's, like every command's). */
#ifndef NIRC_CTL_ALARMS_H
#define NIRC_CTL_ALARMS_H

#include "nirc.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* The alarms as a table, times in zone `tz`; `record` (alarms --all) adds
 * when each cleared. Every text from the controller is escaped. */
void ctl_alarms_print(FILE *out, Nirc__Alarm *const *v, size_t n, bool record, const char *tz);
/* The status summary's alarm line ("ALARMS: 2 active, 1 not acknowledged")
 * and at most `max_lines` of them, one line each; "no active alarms"
 * when there are none. */
void ctl_alarms_summary(FILE *out, Nirc__Alarm *const *v, size_t n, size_t total, size_t max_lines,
                        const char *tz);
/* One alarm as JSON (new reference). */
struct json_t;
struct json_t *ctl_alarm_json(const Nirc__Alarm *a);

#endif
