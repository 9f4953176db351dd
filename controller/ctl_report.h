/* ctl_report: how nircctl shows `nircctl report staffing`: agents a
 * schedule's window needs at the service-level target, each site alone
 * versus consolidated at the first hub, per 30-minute interval and at the
 * window's peak, with the measured calls and the forecast's accuracy for a
 * window that has ended. A table for people, the Report document of
 * docs/CLI-JSON.md, and CSV. A figure the controller could not forecast
 * or did not measure is shown as such ("?", null, an empty CSV field),
 * never as 0. Pure output: replies in, text out. */
#ifndef NIRC_CTL_REPORT_H
#define NIRC_CTL_REPORT_H

#include "nirc.pb-c.h"

#include <jansson.h>
#include <stdio.h>

void ctl_report_print(FILE *out, const Nirc__ReportReply *r);
json_t *ctl_report_json(const Nirc__ReportReply *r);
/* One row per site and interval, then per site for the window
 * ("window"), then TOTAL rows. */
void ctl_report_csv(FILE *out, const Nirc__ReportReply *r);

#endif
