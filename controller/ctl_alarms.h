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
/* When alarm `a` was raised, labelled with its zone `tz`: "2026-12-05
 * 11:12:00 (Asia/Shanghai)"; when the business clock runs apart from the
 * real one (an accelerated clock), which clock it is and the business
 * time beside it: "... (Asia/Shanghai, real time; business time
 * 2020-01-23 02:00:00)". */
void ctl_alarm_since(const Nirc__Alarm *a, const char *tz, char *buf, size_t len);
/* One alarm as JSON (new reference). */
struct json_t;
struct json_t *ctl_alarm_json(const Nirc__Alarm *a);

#endif
